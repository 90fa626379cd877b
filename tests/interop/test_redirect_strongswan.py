"""RFC 5685 redirects between strongSwan 5.9.8 and us, on loopback (see
/work/shared/interop/strongswan/README.md).

- A strongSwan initiator is redirected by our gateway A during IKE_SA_INIT, establishes its
  IKE SA with our gateway B (which sees REDIRECTED_FROM A), and is then moved from B to our
  gateway C by a gateway-initiated redirect ordered through B's admin interface; tshark,
  capturing on lo, decodes the REDIRECT and REDIRECTED_FROM notifies of IKE_SA_INIT.
- Our gateway redirects a strongSwan initiator in IKE_AUTH (strongSwan accepts it).
- Our initiator is moved from a strongSwan gateway to our gateway C by
  ``swanctl --redirect``; it builds the new IKE SA before deleting the old one and reports
  the move to its failover observer.

This module is also the client process of the second test
(``python -m tests.interop.test_redirect_strongswan client ...``).
"""

from __future__ import annotations

import json
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import requireTool
from tests.interop.charon import Charon, free_loopback_500, running
from tests.interop.test_strongswan import ROOT, gateway_conf, initiator_conf, require_strongswan

pytestmark = pytest.mark.interop

PSK = "interop-psk"


def loopback_hosts(wanted: tuple[str, ...] = ("127.0.0.2", "127.0.0.3", "127.0.0.4")) -> list[str]:
    """The wanted 127.0.0.x addresses where port 500 is free, others where it is not."""
    hosts: list[str] = []
    for wanted_host in wanted:
        host = wanted_host
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            try:
                s.bind((host, 500))
            except OSError:
                host = free_loopback_500(160 + len(hosts) * 10)
        hosts.append(host)
    return hosts


def free_tcp_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class VpnGw:
    """``twistd -n vpngw`` on ``host`` port 500; always stopped by its PID."""

    def __init__(self, tmp: Path, host: str, *extra: str) -> None:
        self.host = host
        self.logfile = tmp / f"vpngw-{host}.log"
        self.state = tmp / f"state-{host}"
        secrets = tmp / "secrets"
        secrets.write_text(f'client@test : "{PSK}"\n')
        secrets.chmod(0o600)  # vpngw refuses a key file others may read
        twistd = Path(sys.executable).parent / "twistd"
        self.process = subprocess.Popen(
            [
                str(twistd), "-n", "--pidfile=", f"--logfile={self.logfile}", "vpngw",
                "--listen", host, "--port", "500", "--secrets", str(secrets),
                "--identity", "gw@test", "--state-dir", str(self.state), *extra,
            ],
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
        )  # fmt: skip

    @property
    def log(self) -> str:
        return self.logfile.read_text(errors="replace") if self.logfile.exists() else ""

    @property
    def token(self) -> str:
        """The admin bearer token (``--admin`` generates it into the state directory)."""
        return (self.state / "admin.token").read_text().strip()

    def wait_for_log(self, text: str, timeout: float = 15.0) -> str:
        deadline = time.monotonic() + timeout
        while text not in (log := self.log):
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"{text!r} not in the vpngw log:\n{log}")
            time.sleep(0.05)
        return log

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)


@pytest.fixture
def gateways() -> Iterator[list[VpnGw]]:
    started: list[VpnGw] = []
    yield started
    for gw in started:
        gw.stop()


def admin(
    port: int, path: str, body: dict[str, Any] | None = None, token: str = ""
) -> dict[str, Any]:
    """One admin request (GET without a body, POST with one as JSON, with the token)."""
    data = json.dumps(body).encode() if body is not None else None
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {token}"}
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=data, headers=headers)
    with urllib.request.urlopen(request, timeout=10) as answer:
        result: dict[str, Any] = json.loads(answer.read())
        return result


class Capture:
    """tshark capturing UDP port 500 of some loopback hosts; always stopped."""

    def __init__(self, tshark: str, path: Path, hosts: list[str]) -> None:
        self.tshark = tshark
        self.path = path
        where = " or ".join(f"host {h}" for h in hosts)
        self.errors = path.with_suffix(".stderr")
        with self.errors.open("w") as errors:
            self.process = subprocess.Popen(
                [tshark, "-i", "lo", "-f", f"udp port 500 and ({where})", "-w", str(path)],
                stdout=subprocess.DEVNULL,
                stderr=errors,
            )
        deadline = time.monotonic() + 15
        while "Capture started" not in self.errors.read_text() and time.monotonic() < deadline:
            time.sleep(0.05)
        self.host = hosts[0]
        self.sync()

    def sync(self, timeout: float = 15.0) -> None:
        """Wait until a probe datagram sent now is in the file (all before it are too)."""
        deadline = time.monotonic() + timeout
        marker = f"capture probe {time.monotonic()}".encode()
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            while time.monotonic() < deadline:
                probe.sendto(marker, (self.host, 500))
                time.sleep(0.2)
                result = subprocess.run(
                    [self.tshark, "-r", str(self.path), "-T", "fields", "-e", "udp.payload"],
                    capture_output=True,
                    text=True,
                    check=False,
                )
                if marker.hex() in result.stdout.replace(":", ""):
                    return

    def summary(self) -> str:
        """One line per captured packet (for failure messages)."""
        result = subprocess.run(
            [self.tshark, "-r", str(self.path)], capture_output=True, text=True, check=False
        )
        return result.stdout + result.stderr + self.errors.read_text()

    def stop(self, *options: str) -> str:
        """Stop capturing; the verbose decode of the ISAKMP packets (tshark ``options``)."""
        if self.process.poll() is None:
            self.sync()
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
        result = subprocess.run(
            [self.tshark, "-r", str(self.path), "-V", "-Y", "isakmp", *options],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        return result.stdout


def decryption_row(sas: str, log: str) -> str:
    """tshark's ikev2_decryption_table row for charon's first IKE SA (keys logged at
    ike = 4, SPIs from ``swanctl --list-sas``)."""
    spis = re.search(r"([0-9a-f]{16})_i\*? ([0-9a-f]{16})_r", sas)
    assert spis is not None, sas
    keys = {}
    lines = log.splitlines()
    for name in ("Sk_ei", "Sk_er", "Sk_ai", "Sk_ar"):
        start = next(i for i, line in enumerate(lines) if f"{name} secret =>" in line)
        size = int(lines[start].split("=> ")[1].split()[0])
        octets = ""
        for line in lines[start + 1 :]:
            match = re.search(r"\s+\d+: ((?:[0-9A-F]{2} ){1,16})", line)
            if match is None or len(octets) >= 2 * size:
                break
            octets += match.group(1).replace(" ", "")
        keys[name] = octets[: 2 * size].lower()
    return ",".join(
        [
            spis.group(1),
            spis.group(2),
            keys["Sk_ei"],
            keys["Sk_er"],
            '"AES-CBC-128 [RFC3602]"',
            keys["Sk_ai"],
            keys["Sk_ar"],
            '"HMAC_SHA2_256_128 [RFC4868]"',
        ]
    )


def test_strongswan_redirected_in_init_then_moved_by_admin(
    tmp_path: Path, gateways: list[VpnGw]
) -> None:
    """strongSwan, redirected by A in IKE_SA_INIT (N(REDIRECT, B, Ni), checked by
    strongSwan), establishes with B, which logs REDIRECTED_FROM A; B's admin command moves
    it to C with a protected INFORMATIONAL redirect; strongSwan builds the SA with C (which
    sees REDIRECTED_FROM B) and deletes the one with B. tshark decodes the notifies, the
    INFORMATIONAL one decrypted with the keys charon logs."""
    require_strongswan()
    tshark = requireTool("tshark")
    a, b, c = loopback_hosts()
    port = free_tcp_port()
    gateways.append(VpnGw(tmp_path, a, "--redirect-to", b, "--redirect-always"))
    listen = f"tcp:{port}:interface=127.0.0.1"
    gateways.append(VpnGw(tmp_path, b, "--redirect-to", c, "--admin", listen))
    gateways.append(VpnGw(tmp_path, c))
    gw_a, gw_b, gw_c = gateways
    for gw in gateways:
        gw.wait_for_log("IKEv2 on udp")
    row = ""
    capture = Capture(tshark, tmp_path / "redirect.pcapng", [a, b, c])
    try:
        conf = initiator_conf(a, "x25519", childless=True, dpd=False)
        with running(Charon(conf, ike_level=4)) as charon:
            out = charon.swanctl("--initiate", "--ike", "ini", "--timeout", "10")
            assert "initiate completed successfully" in out
            row = decryption_row(charon.swanctl("--list-sas"), charon.log)
            log = charon.wait_for_log(f"redirected to {b}")
            assert "parsed IKE_SA_INIT response 0 [ N(REDIR) ]" in log
            assert "N(REDIR_SUP) ]" in log and "N(REDIR_FROM) ]" in log
            assert f"established between 127.0.0.1[client@test]...{b}[gw@test]" in log
            gw_b.wait_for_log(f"redirected here from {a}")
            gw_b.wait_for_log("established with client@test")
            assert "established with" not in gw_a.log
            status = admin(port, "/status")
            assert status["ike_sas"] == 1 and status["endpoints"][0]["redirected_from"] == {a: 1}
            (sa,) = status["endpoints"][0]["sas"]
            assert sa["redirect_supported"] and sa["state"] == "ESTABLISHED"
            moved = admin(port, "/redirect", {"all": True, "target": c}, gw_b.token)
            assert moved == {"moved": 1}
            log = charon.wait_for_log(f"established between 127.0.0.1[client@test]...{c}[gw@test]")
            assert f"redirected to {c}" in log, log
            gw_c.wait_for_log(f"redirected here from {b}")
            gw_b.wait_for_log("deleted by peer")
            status = admin(port, "/status")
            assert status["ike_sas"] == 0 and status["redirects"] == {"admin": 1}
            sas = charon.swanctl("--list-sas")
            assert c in sas and f"{b}[" not in sas
    finally:
        decoded = capture.stop(*(["-o", f"uat:ikev2_decryption_table:{row}"] if row else []))
    redirects = [block for block in decoded.split("\nFrame ") if "REDIRECT (16407)" in block]
    assert len(redirects) == 2, decoded[-3000:] + capture.summary()
    redirect, informational = redirects
    assert "Exchange type: INFORMATIONAL (37)" in informational
    assert "Decrypted Data" in informational and "incorrect" not in informational
    assert f"New Responder Gateway Identity (IPv4): {c}" in informational
    assert "Redirect Nonce Data" not in informational
    assert f"New Responder Gateway Identity (IPv4): {b}" in redirect
    nonces = re.findall(r"Nonce DATA: ([0-9a-f]{32,})", decoded)
    assert nonces and f"Redirect Nonce Data: {nonces[0]}" in redirect
    assert "REDIRECT_SUPPORTED (16406)" in decoded
    assert f"Original Responder Gateway Identity (IPv4): {a}" in decoded
    assert f"Original Responder Gateway Identity (IPv4): {b}" in decoded


def test_strongswan_redirected_in_ike_auth(tmp_path: Path, gateways: list[VpnGw]) -> None:
    """Our gateway A redirects a strongSwan initiator in IKE_AUTH, after authenticating it:
    the response is IDr, AUTH, N(REDIRECT) (no CHILD_SA); strongSwan verifies A's AUTH and
    accepts the redirect to B. (strongSwan 5.9.8 then starts the IKE SA with B but sends
    nothing: its IKE_AUTH redirect stalls, so B is not reached.) A deletes the redirected
    SA after --redirect-delete-timeout and counts the redirect."""
    require_strongswan()
    a, b = loopback_hosts(("127.0.0.2", "127.0.0.3"))
    port = free_tcp_port()
    listen = f"tcp:{port}:interface=127.0.0.1"
    gw_a = VpnGw(
        tmp_path, a, "--redirect-to", b, "--redirect-always", "--redirect-in-auth",
        "--redirect-delete-timeout", "1", "--admin", listen,
    )  # fmt: skip
    gateways.append(gw_a)
    gw_a.wait_for_log("IKEv2 on udp")
    with running(Charon(initiator_conf(a, "x25519", childless=True, dpd=False))) as charon:
        charon.swanctl("--initiate", "--ike", "ini", "--timeout", "3", check=False)
        log = charon.wait_for_log(f"redirected to {b}")
        assert "parsed IKE_AUTH response 1 [ IDr AUTH N(REDIR) ]" in log, log
        assert "authentication of 'gw@test' with pre-shared key successful" in log
        gw_a.wait_for_log("redirecting authenticated client client@test")
        gw_a.wait_for_log("deleting IKE SA")
        deadline = time.monotonic() + 10
        while (status := admin(port, "/status"))["ike_sas"] and time.monotonic() < deadline:
            time.sleep(0.1)
        assert status["ike_sas"] == 0 and status["redirects"] == {"static": 1}
        assert "CHILD_SA" not in gw_a.log


def test_our_initiator_moved_by_strongswan_gateway(tmp_path: Path, gateways: list[VpnGw]) -> None:
    """A strongSwan gateway's ``swanctl --redirect`` moves our initiator to our gateway C:
    it answers the INFORMATIONAL, establishes with C (REDIRECTED_FROM the strongSwan
    gateway), then deletes the old IKE SA, and its failover observer hears of the move."""
    require_strongswan()
    (c,) = loopback_hosts(("127.0.0.4",))
    gateways.append(VpnGw(tmp_path, c))
    gateways[0].wait_for_log("IKEv2 on udp")
    with running(Charon(gateway_conf("aes128-sha256-x25519", dpd=False))) as charon:
        client = subprocess.Popen(
            [
                sys.executable, "-m", "tests.interop.test_redirect_strongswan", "client",
                "127.0.0.1", "127.0.0.3", str(charon.port),
            ],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )  # fmt: skip
        lines: list[dict[str, Any]] = []

        def next_line() -> dict[str, Any]:
            assert client.stdout is not None
            line = client.stdout.readline()
            assert line, f"client exited: {lines}"
            lines.append(json.loads(line))
            return lines[-1]

        try:
            up = next_line()
            assert up["event"] == "established" and up["peer"] == "127.0.0.3", lines
            charon.swanctl("--redirect", "--ike", "gw", "--gateway", c)
            moved = next_line()
            assert moved == {
                "event": "redirected",
                "exchange": "INFORMATIONAL",
                "gateway": c,
                "old_spi_i": up["spi_i"],
            }, lines
            failover = next_line()
            assert failover["event"] == "failover", lines
            assert failover["old_gateway"].startswith("127.0.0.3:")
            assert failover["new_gateway"] == f"{c}:500"
            assert failover["old_identity"] == failover["new_identity"] == "gw@test"
            deleted = next_line()
            assert deleted == {"event": "deleted", "spi_i": up["spi_i"], "reason": "deleted"}
            assert client.wait(timeout=20) == 0
        finally:
            if client.poll() is None:
                client.kill()
                client.wait(timeout=5)
        log = charon.wait_for_log("received DELETE for IKE_SA gw[1]")
        assert "N(REDIR)" in log, log
        gateways[0].wait_for_log("redirected here from 127.0.0.3")


# --- the client process of test_our_initiator_moved_by_strongswan_gateway -------------------


def client_main(local_host: str, peer_host: str, peer_port: str) -> int:  # pragma: no cover
    from twisted.internet import reactor as _reactor
    from twisted.internet.defer import Deferred
    from zope.interface import implementer

    from twisted_rserpool.asap.notifier import (
        IFailoverObserver,
    )
    from twisted_rserpool.ike.config import Identity, IkeConfig, PskTable
    from twisted_rserpool.ike.endpoint import IkeEndpoint
    from twisted_rserpool.ike.events import (
        IkeEvent,
        IkeSaDeleted,
        IkeSaEstablished,
        IkeSaRedirected,
    )
    from twisted_rserpool.ike.initiator import IkeInitiatorProtocol
    from twisted_rserpool.ike.proposals import parse_ike_suites

    reactor: Any = _reactor
    code = [1]

    def say(**fields: object) -> None:
        print(json.dumps(fields), flush=True)

    @implementer(IFailoverObserver)
    class Observer:
        def failoverOccurred(self, event: Any) -> bool:
            say(
                event="failover",
                old_gateway=event.old_gateway,
                new_gateway=event.new_gateway,
                old_identity=event.old_identity,
                new_identity=event.new_identity,
            )
            return True

    class Client(IkeInitiatorProtocol):
        def ikeEventReceived(self, event: IkeEvent) -> None:
            super().ikeEventReceived(event)
            if isinstance(event, IkeSaRedirected):
                say(
                    event="redirected",
                    exchange=event.exchange,
                    gateway=str(event.new_gateway),
                    old_spi_i=event.spi_i.hex(),
                )
            elif isinstance(event, IkeSaDeleted):
                say(event="deleted", spi_i=event.spi_i.hex(), reason=event.reason)
                code[0] = 0
                reactor.callLater(0.2, reactor.stop)

    config = IkeConfig(
        Identity.parse("client@test"),
        PskTable(default=PSK.encode()),
        ike_suites=parse_ike_suites("aes128-sha256-x25519"),
        remote_id=Identity.parse("gw@test"),
        childless="force",
        retransmit_timeout=1.0,
        retransmit_tries=3,
    )
    endpoint = IkeEndpoint(config, (local_host, 0))
    protocol = Client(endpoint, reactor, failoverObservers=[Observer()])
    port = reactor.listenUDP(0, protocol, interface=local_host)
    endpoint.local_address = (local_host, port.getHost().port)
    d: Deferred[IkeSaEstablished] = protocol.initiate((peer_host, int(peer_port)))

    def up(event: IkeSaEstablished) -> None:
        say(event="established", peer=event.peer_address[0], spi_i=event.spi_i.hex())

    def failed(failure: Any) -> None:
        say(event="failed", error=str(failure.value))
        reactor.stop()

    d.addCallbacks(up, failed)
    reactor.callLater(40, reactor.stop)
    reactor.run()
    return code[0]


if __name__ == "__main__" and sys.argv[1:2] == ["client"]:  # pragma: no cover
    sys.exit(client_main(*sys.argv[2:5]))
