"""IKEv2 gateway cost: ``twistd vpngw`` beside strongSwan's charon, same load generator.

Run as root (charon needs a mount namespace) with ``.venv/bin/python -m benchmarks.ike``
(about 3 minutes) or ``--quick`` (under a minute, noisier). For each gateway it measures,
with the same generator process, the rate (operations per second of wall time) and the
gateway's own CPU time per operation (user + system time of the gateway process, all
threads, from /proc: this does not depend on how busy the rest of the machine is, nor on
the generator keeping up):

- **IKE_SA_INIT responses/s** (X25519 and MODP2048): the generator keeps ``--window``
  IKE_SA_INIT requests in flight (each with a new SPIi; the KE value and nonce are
  precomputed, so the generator does no Diffie-Hellman work) and counts full responses
  (SA, KE, Nr). Every response costs the gateway a DH key pair (and charon the shared
  secret and the keys).
- **handshakes/s**: full IKE_SA_INIT + IKE_AUTH (childless) handshakes completed per
  second, ``--window`` at a time, made by our sans-IO initiator (``IkeEndpoint``) over one
  UDP socket, for each authentication method (``METHODS``): pre-shared keys (X25519 and
  MODP2048); the gateway's and the client's certificates, both ECDSA P-256 or both
  RSA-2048 (RFC 7427 signatures, CERTREQ and CERT both ways, the chain verified against
  the CA by both sides); the gateway's ECDSA P-256 certificate and the client's
  EAP-MSCHAPv2 (EAP-Identity, MS-CHAPv2 challenge and success, EAP-Success, MSK-based
  AUTHs: five IKE_AUTH exchanges instead of one). The generator does as much
  cryptography as the gateway here, so on a small machine it can be the limit: compare
  the CPU columns, and read absolute rates with care. Each run prints what was verified:
  the client's authentication from vpngw's log, the gateway's from our initiator's
  ``IkeSaEstablished`` (charon's configuration demands the client's method).

Both gateways listen on 127.0.0.61 with non-500 ports (so every datagram carries the RFC
3948 non-ESP marker for both), accept exactly the suite under test (``SUITES``: vpngw
``--proposals aes128-sha256-x25519, aes128-sha256-modp2048``, charon ``proposals`` the
same), have cookies and half-open limits raised out of the way, and log little (charon:
logging off; vpngw: one line per SA to a file). The generator and each
gateway are separate processes; on a 2-core machine they share the cores. Each
measurement alternates the gateways ``--rounds`` times, each time freshly started, and
keeps the best rate and the lowest CPU cost. The script prints a Markdown table with the
ratios vpngw / charon (for rates, above 1 means vpngw is faster; for CPU per operation,
above 1 means vpngw spends more).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import re
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from tests.ike.pki import IkePki
from tests.interop.charon import PLUGINS, Charon, free_udp_port
from twisted_rserpool.ike.auth.certificates import Credentials, TrustAnchors
from twisted_rserpool.ike.config import Identity, IkeConfig, PskTable
from twisted_rserpool.ike.constants import ExchangeType
from twisted_rserpool.ike.crypto import DH_GROUPS
from twisted_rserpool.ike.endpoint import IkeEndpoint
from twisted_rserpool.ike.events import IkeEvent, IkeSaEstablished, IkeSaFailed
from twisted_rserpool.ike.payloads import (
    IkeMessage,
    KeyExchangePayload,
    NoncePayload,
    SecurityAssociationPayload,
)
from twisted_rserpool.ike.proposals import ike_proposal, parse_ike_suites
from twisted_rserpool.ike.sa import to_payload

ROOT = Path(__file__).resolve().parents[1]
PSK = "bench-psk"
EAP_USER = "alice"
EAP_PASSWORD = "Correct horse 7"
SUITES = "aes128-sha256-x25519, aes128-sha256-modp2048"
GATEWAY_HOST = "127.0.0.61"
GATEWAY_ID = "gw.bench"  # FQDN: a dNSName of the gateway certificate
CLIENT_ID = "client@bench"  # RFC 822: an rfc822Name of the client certificate
EAP_PLUGINS = PLUGINS + " eap-identity eap-mschapv2 md4 des fips-prf"

Address = tuple[str, int]


@dataclass(frozen=True)
class Method:
    """An authentication method: the gateway's key (None: PSK) and how the client
    authenticates (``psk``, ``certificate`` or ``eap-mschapv2``)."""

    name: str
    gateway_key: str | None
    client: str


PSK_METHOD = Method("PSK", None, "psk")
METHODS = (
    PSK_METHOD,
    Method("ECDSA P-256 certificates", "p256", "certificate"),
    Method("RSA-2048 certificates", "rsa2048", "certificate"),
    Method("ECDSA P-256 certificate + EAP-MSCHAPv2", "p256", "eap-mschapv2"),
)


class Pki:
    """One CA per key kind (its own key of that kind), a gateway and a client certificate
    from each, as files for the gateways and objects for the generator."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.cas: dict[str, IkePki] = {}
        self.files: dict[str, dict[str, str]] = {}
        self.clients: dict[str, Credentials] = {}
        self.users = directory / "eap-users"
        self.users.write_text(f'{EAP_USER} : EAP "{EAP_PASSWORD}"\n')
        self.users.chmod(0o600)  # vpngw refuses a key file others may read

    def kind(self, kind: str) -> dict[str, str]:
        """Paths of ``ca``, ``cert`` and ``key`` (the gateway's) for key ``kind``."""
        if kind not in self.files:
            ca = self.cas[kind] = IkePki(f"bench {kind} CA", key_kind=kind)
            cert, key = ca.write(
                self.directory, f"gw-{kind}", ca.issue("gw", dns=[GATEWAY_ID], key_kind=kind)
            )
            self.clients[kind] = ca.issue("client", emails=[CLIENT_ID], key_kind=kind)
            ca_path = ca.write_ca(self.directory, f"ca-{kind}.pem")
            self.files[kind] = {"ca": ca_path, "cert": cert, "key": key}
        return self.files[kind]

    def trust(self, kind: str) -> TrustAnchors:
        self.kind(kind)
        return self.cas[kind].trust()

    def client(self, kind: str) -> Credentials:
        self.kind(kind)
        return self.clients[kind]


# ---------------------------------------------------------------------------- gateways


class VpnGw:
    """``twistd -n vpngw`` with limits raised, in a subprocess, authenticating by ``method``
    (certificates from ``pki``); ``extra`` adds options (benchmarks/redirect.py)."""

    name = "vpngw"

    def __init__(
        self,
        tmp: Path,
        host: str = GATEWAY_HOST,
        *extra: str,
        method: Method = PSK_METHOD,
        pki: Pki | None = None,
    ) -> None:
        self.port = free_udp_port()
        self.logfile = tmp / f"vpngw-{host}.log"
        # twistd appends: an old run's "IKEv2 on udp" would pass for this one's start.
        self.logfile.unlink(missing_ok=True)
        auth: list[str]
        if method.gateway_key is None:
            secrets = tmp / "secrets"
            secrets.write_text(f'* : "{PSK}"\n')
            secrets.chmod(0o600)  # vpngw refuses a key file others may read
            auth = ["--identity", "gw@bench", "--secrets", str(secrets)]
        else:
            assert pki is not None, "certificates need a Pki"
            files = pki.kind(method.gateway_key)
            auth = ["--certificate", files["cert"], "--private-key", files["key"]]
            auth += ["--identity", f"@{GATEWAY_ID}", "--client-auth", method.client]
            if method.client == "certificate":
                auth += ["--ca", files["ca"]]
            elif method.client == "eap-mschapv2":
                auth += ["--eap-users", str(pki.users)]
        twistd = Path(sys.executable).parent / "twistd"
        self.process = subprocess.Popen(
            [
                str(twistd), "-n", "--pidfile=", f"--logfile={self.logfile}", "vpngw",
                "--listen", host, "--port", str(self.port),
                "--nat-t-port", str(free_udp_port()), *auth,
                "--proposals", SUITES,
                "--cookie-threshold", "10000000", "--max-sas", "10000000",
                "--max-half-open", "10000000", "--half-open-timeout", "30", *extra,
            ],
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 15
        while "IKEv2 on udp" not in self.log:
            if time.monotonic() > deadline or self.process.poll() is not None:
                self.stop()
                raise RuntimeError(f"vpngw did not start:\n{self.log}")
            time.sleep(0.05)
        self.address = (host, self.port)
        self.pid = self.process.pid

    @property
    def log(self) -> str:
        return self.logfile.read_text(errors="replace") if self.logfile.exists() else ""

    def verified(self) -> set[str]:
        """How vpngw verified its clients (from its "established ... verified by" lines)."""
        return set(re.findall(r"verified by (.+) \([^()]*\)$", self.log, re.MULTILINE))

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


class StrongSwan:
    """charon as a gateway authenticating by ``method``, with DoS protection and cookies
    out of the way, logging off."""

    name = "charon"

    def __init__(self, tmp: Path, method: Method = PSK_METHOD, pki: Pki | None = None) -> None:
        key: str | None = None
        if method.gateway_key is None:
            local = "auth = psk\n    id = gw@bench"
            remote = "auth = psk"
            secrets = f'ike-any {{ secret = "{PSK}" }}'
        else:
            assert pki is not None, "certificates need a Pki"
            files = pki.kind(method.gateway_key)
            key = files["key"]
            local = f"auth = pubkey\n    id = {GATEWAY_ID}\n    certs = {files['cert']}"
            if method.client == "certificate":
                remote = f"auth = pubkey\n    cacerts = {files['ca']}"
                secrets = ""
            else:  # EAP-Identity first, as vpngw asks
                remote = "auth = eap-mschapv2\n    eap_id = %any"
                secrets = f'eap-{EAP_USER} {{ id = {EAP_USER}\n    secret = "{EAP_PASSWORD}" }}'
        conf = f"""connections {{ gw {{
  version = 2
  mobike = no
  local_addrs = {GATEWAY_HOST}
  proposals = {SUITES}
  local {{ {local} }}
  remote {{ {remote} }}
}} }}
secrets {{ {secrets} }}
"""
        extra = (
            "dos_protection = no\n  cookie_threshold = 10000000\n"
            "  init_limit_half_open = 0\n  block_threshold = 10000000\n"
            "  half_open_timeout = 30\n  ikesa_table_size = 4096"
        )
        self.charon = Charon(conf, extra=extra, log_level=-1, ike_level=-1)
        if key is not None:  # swanctl loads it from pkcs8/ beside swanctl.conf
            (self.charon.dir / "pkcs8").mkdir()
            (self.charon.dir / "pkcs8" / "key.pem").write_bytes(Path(key).read_bytes())
        if method.client == "eap-mschapv2":
            text = self.charon.conf.read_text()
            self.charon.conf.write_text(text.replace(f"load = {PLUGINS}", f"load = {EAP_PLUGINS}"))
        self.charon.start()
        self.address = (GATEWAY_HOST, self.charon.port)
        assert self.charon.process is not None
        self.pid = self.charon.process.pid

    def verified(self) -> set[str]:
        """Nothing: charon logs nothing here (its configuration demands the method)."""
        return set()

    def stop(self) -> None:
        self.charon.stop()


# ------------------------------------------------------------------------ load generator


@dataclass
class Outcome:
    """What one measurement run did: operations completed, handshakes failed, seconds, and
    how our initiator verified the gateway (``IkeSaEstablished.authentication``)."""

    count: int
    failed: int
    elapsed: float
    verified: set[str] = dataclasses.field(default_factory=set)


def framed(data: bytes) -> bytes:
    return b"\x00\x00\x00\x00" + data


def init_responses(
    target: Address, group: str, method: Method, pki: Pki, duration: float, window: int
) -> Outcome:
    """Full IKE_SA_INIT responses, with ``window`` requests in flight (``method`` does not
    matter before IKE_AUTH)."""
    (suite,) = parse_ike_suites(f"aes128-sha256-{group}")
    key = DH_GROUPS[suite.dh].generate()
    template = IkeMessage(
        b"\x01" * 8,
        bytes(8),
        ExchangeType.IKE_SA_INIT,
        0,
        (
            SecurityAssociationPayload(tuple(to_payload(p) for p in ike_proposal([suite]))),
            KeyExchangePayload(suite.dh, key.public_value),
            NoncePayload(os.urandom(32)),
        ),
        initiator=True,
    ).encode()
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(0.2)
    counter = 0
    in_flight: dict[bytes, float] = {}

    def send_one() -> None:
        nonlocal counter
        counter += 1
        spi = counter.to_bytes(8, "big")
        in_flight[spi] = time.monotonic()
        sock.sendto(framed(spi + template[8:]), target)

    answered = 0
    start = time.monotonic()
    end = start + duration
    for _ in range(window):
        send_one()
    while (now := time.monotonic()) < end:
        try:
            data = sock.recv(65535)
        except TimeoutError:
            data = b""
        if data:
            spi = data[4:12]
            if in_flight.pop(spi, None) is not None:
                if len(data) > 100:  # SA, KE and Nr, not a notify
                    answered += 1
                send_one()
        for spi, sent in list(in_flight.items()):
            if now - sent > 1.0:  # lost: replace it
                del in_flight[spi]
                send_one()
    sock.close()
    return Outcome(answered, 0, time.monotonic() - start)


def initiator_config(group: str, method: Method, pki: Pki) -> IkeConfig:
    """Our initiator's configuration for ``method`` with the one suite of ``group``."""
    config = IkeConfig(
        Identity.parse(CLIENT_ID),
        PskTable(default=PSK.encode()),
        ike_suites=parse_ike_suites(f"aes128-sha256-{group}"),
        childless="force",
        retransmit_timeout=1.0,
        retransmit_tries=2,
        liveness_interval=None,
        initial_contact=False,  # charon would delete every older SA of this identity
    )
    if method.gateway_key is None:
        return config
    kind = method.gateway_key
    return dataclasses.replace(
        config,
        trust=pki.trust(kind),
        peer_auth="certificate",
        credentials=pki.client(kind) if method.client == "certificate" else None,
        eap_peer=(EAP_USER.encode(), EAP_PASSWORD) if method.client == "eap-mschapv2" else None,
    )


def handshakes(
    target: Address, group: str, method: Method, pki: Pki, duration: float, window: int
) -> Outcome:
    """Complete handshakes (IKE_SA_INIT + IKE_AUTH, childless) and failed ones."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    sock.bind(("127.0.0.1", 0))
    sock.setblocking(False)
    endpoint = IkeEndpoint(initiator_config(group, method, pki), sock.getsockname())
    done = failed = 0
    verified: set[str] = set()
    start = time.monotonic()
    end = start + duration
    for _ in range(window):
        endpoint.initiate(target, start)

    def settle(events: list[IkeEvent], now: float) -> None:
        nonlocal done, failed
        for event in events:
            if isinstance(event, IkeSaEstablished):
                done += 1
                verified.add((event.authentication or "none").rsplit(", ", 1)[0])
                endpoint.initiate(target, now)
            elif isinstance(event, IkeSaFailed):
                failed += 1
                endpoint.initiate(target, now)

    while (now := time.monotonic()) < end:
        for data, address in endpoint.datagrams_to_send():
            sock.sendto(data, address)
        try:
            while True:
                data, address = sock.recvfrom(65535)
                settle(endpoint.receive_datagram(data, address, time.monotonic()), now)
                for out, out_address in endpoint.datagrams_to_send():
                    sock.sendto(out, out_address)
        except BlockingIOError:
            pass
        timer = endpoint.next_deadline()
        if timer is not None and timer <= now:
            settle(endpoint.handle_timer(now), now)
        else:
            time.sleep(0.0002)
    sock.close()
    return Outcome(done, failed, time.monotonic() - start, verified)


# ---------------------------------------------------------------------------------- main


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (all its threads) so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


Measure = Callable[[Address, str, Method, Pki, float, int], Outcome]


@dataclass(frozen=True)
class Case:
    """One row of the table: what is measured, with which method and DH group."""

    label: str
    measure: Measure
    method: Method
    group: str


CASES = (
    Case("IKE_SA_INIT responses", init_responses, PSK_METHOD, "x25519"),
    Case("IKE_SA_INIT responses", init_responses, PSK_METHOD, "modp2048"),
    Case("handshakes", handshakes, PSK_METHOD, "x25519"),
    Case("handshakes", handshakes, PSK_METHOD, "modp2048"),
    *(Case("handshakes", handshakes, m, "x25519") for m in METHODS[1:]),
)


@dataclass
class Result:
    """The best of the rounds of one case for one gateway."""

    rate: float = 0.0
    cost: float = float("inf")  # gateway CPU µs per operation
    failed: int = 0
    verified: set[str] = dataclasses.field(default_factory=set)  # of the client, the gateway


def run(
    cases: Sequence[Case], duration: float, warmup: float, window: int, rounds: int
) -> dict[tuple[str, Case], Result]:
    """Measure every case ``rounds`` times per gateway, alternating; keyed by gateway name."""
    results: dict[tuple[str, Case], Result] = {}
    with tempfile.TemporaryDirectory(prefix="ikebench-pki-") as pki_dir:
        pki = Pki(Path(pki_dir))
        for case in cases:
            for _ in range(rounds):
                for gateway_class in (VpnGw, StrongSwan):
                    # A fresh gateway for every run: no half-open SAs left over.
                    with tempfile.TemporaryDirectory(prefix="ikebench-") as tmp:
                        gateway = gateway_class(Path(tmp), method=case.method, pki=pki)
                        try:
                            args = (gateway.address, case.group, case.method, pki)
                            case.measure(*args, warmup, window)
                            cpu = cpu_seconds(gateway.pid)
                            outcome = case.measure(*args, duration, window)
                            cpu = cpu_seconds(gateway.pid) - cpu
                        finally:
                            gateway.stop()
                        verified = gateway.verified() | outcome.verified
                    result = results.setdefault((gateway.name, case), Result())
                    count, failed = outcome.count, outcome.failed
                    rate = count / outcome.elapsed
                    cost = cpu / count * 1e6 if count else float("inf")
                    result.rate = max(result.rate, rate)
                    result.cost = min(result.cost, cost)
                    result.failed += failed
                    result.verified |= verified
                    print(
                        f"  {gateway.name:6} {case.label:21} {case.method.name:38} "
                        f"{case.group:8} {rate:6.0f}/s {cost:6.0f} us CPU each"
                        + (f" ({failed} failed)" if failed else "")
                        + "".join(f"\n    verified: {v}" for v in sorted(verified)),
                        file=sys.stderr,
                    )
    return results


def table(cases: Sequence[Case], results: dict[tuple[str, Case], Result]) -> str:
    """The Markdown table of ``results``."""
    lines = [
        "| measurement | authentication | DH group | vpngw /s | charon /s | ratio | "
        "vpngw CPU µs | charon CPU µs | CPU ratio |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for case in cases:
        ours, theirs = results[("vpngw", case)], results[("charon", case)]
        method = "-" if case.measure is init_responses else case.method.name
        rate_ratio = ours.rate / theirs.rate if theirs.rate else float("inf")
        cost_ratio = ours.cost / theirs.cost if theirs.cost else float("inf")
        lines.append(
            f"| {case.label} | {method} | {case.group} | {ours.rate:.0f} | {theirs.rate:.0f} | "
            f"{rate_ratio:.2f} | {ours.cost:.0f} | {theirs.cost:.0f} | {cost_ratio:.2f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--duration", type=float, default=4.0, help="seconds per measurement")
    parser.add_argument("--window", type=int, default=32, help="requests/handshakes in flight")
    parser.add_argument(
        "--rounds", type=int, default=2, help="alternating runs per gateway; the best is kept"
    )
    parser.add_argument(
        "--quick", action="store_true", help="1 s per measurement, one round (noisier)"
    )
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("run as root: charon needs its own mount namespace")
    duration, rounds = (1.0, 1) if args.quick else (args.duration, args.rounds)
    warmup = min(0.5 if args.quick else 1.0, duration)
    results = run(CASES, duration, warmup, args.window, rounds)
    print(
        f"\nPython {platform.python_version()}, {os.cpu_count()} CPUs, "
        f"{duration:g} s per run, window {args.window}, best of {rounds} rounds, "
        f"suites {SUITES} on both\n"
    )
    print(table(CASES, results))
    failed = {k: r.failed for k, r in results.items() if r.failed}
    if failed:
        print(
            "\nfailed handshakes: "
            + ", ".join(f"{g} {c.method.name} {c.group}: {n}" for (g, c), n in failed.items()),
            file=sys.stderr,
        )


if __name__ == "__main__":
    main()
