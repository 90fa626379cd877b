"""NAT traversal (RFC 7296 2.23, RFC 3948) with strongSwan 5.9.8 behind a real NAT.

The test builds the network itself, from three network namespaces whose names carry the
pid: "client" (charon, 10.10.0.2) -- veth -- "nat" (10.10.0.1 inside, 192.0.2.1 outside,
iptables MASQUERADE of UDP to source ports 20000-20999) -- veth -- "gateway"
(``twistd -n vpngw`` on 192.0.2.2, ports 500 and 4500). All addresses live only inside
these namespaces; charon and twistd are stopped by their PIDs and the namespaces deleted
whatever happens. A rebinding is made by moving the masquerade to other source ports and
flushing the NAT's connection tracking. Without the NAT, the client namespace is joined
to the gateway's directly (strongSwan's ``encap = yes`` case).

This kernel has no ESP: strongSwan negotiates the CHILD_SA and then fails to install it
("unable to install"); the IKE SA stays up, so the assertions are on both logs.
"""

from __future__ import annotations

import atexit
import contextlib
import itertools
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.conftest import requireTool
from tests.interop.test_fragments import NamespacedCharon
from tests.interop.test_strongswan import require_strongswan

pytestmark = pytest.mark.interop

ROOT = Path(__file__).resolve().parents[2]
PSK = "nat-traversal-psk"
CLIENT = "10.10.0.2"
NAT_INSIDE = "10.10.0.1"
NAT_OUTSIDE = "192.0.2.1"
GATEWAY = "192.0.2.2"
_serial = itertools.count()


def _run(*args: str, check: bool = True) -> str:
    return subprocess.run(args, check=check, capture_output=True, text=True, timeout=20).stdout


class Network:
    """client -- nat -- gateway namespaces (or client -- gateway without the NAT)."""

    def __init__(self, *, nat: bool) -> None:
        tag = f"{os.getpid() % 100000}{next(_serial)}"
        self.client = f"n1c{tag}"
        self.nat = f"n1n{tag}" if nat else None
        self.gateway = f"n1g{tag}"
        self.ports = "20000-20999"
        self._made: list[str] = []

    def _link(self, a: str, a_address: str, b: str, b_address: str) -> None:
        _run("ip", "link", "add", f"v{a}", "type", "veth", "peer", "name", f"w{b}")
        for ns, device, address in ((a, f"v{a}", a_address), (b, f"w{b}", b_address)):
            _run("ip", "link", "set", device, "netns", ns)
            _run("ip", "-n", ns, "addr", "add", f"{address}/24", "dev", device)
            _run("ip", "-n", ns, "link", "set", device, "up")

    def __enter__(self) -> Network:
        atexit.register(self.remove)
        try:
            for ns in (self.client, self.nat, self.gateway):
                if ns is not None:
                    _run("ip", "netns", "add", ns)
                    self._made.append(ns)
                    _run("ip", "-n", ns, "link", "set", "lo", "up")
            if self.nat is None:
                self._link(self.client, NAT_OUTSIDE, self.gateway, GATEWAY)
                return self
            self._link(self.client, CLIENT, self.nat, NAT_INSIDE)
            self._link(self.nat, NAT_OUTSIDE, self.gateway, GATEWAY)
            _run("ip", "-n", self.client, "route", "add", "default", "via", NAT_INSIDE)
            _run("ip", "netns", "exec", self.nat, "sysctl", "-qw", "net.ipv4.ip_forward=1")
            self._masquerade("-A", self.ports)
        except BaseException:
            self.remove()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()

    def _masquerade(self, action: str, ports: str) -> None:
        assert self.nat is not None
        rule = ("-o", f"v{self.nat}", "-p", "udp", "-j", "MASQUERADE", "--to-ports", ports)
        _run("ip", "netns", "exec", self.nat, "iptables", "-t", "nat", action, "POSTROUTING", *rule)

    def rebind(self) -> None:
        """The NAT forgets its mappings and maps the client to other source ports."""
        assert self.nat is not None
        self._masquerade("-D", self.ports)
        self.ports = "21000-21999"
        self._masquerade("-A", self.ports)
        _run("ip", "netns", "exec", self.nat, "conntrack", "-F", check=False)

    def remove(self) -> None:
        """Delete the namespaces (the veth pairs go with them)."""
        while self._made:
            ns = self._made.pop()
            subprocess.run(["ip", "netns", "del", ns], check=False, capture_output=True)


class Gateway:
    """``twistd -n vpngw`` in the gateway namespace (ports 500 and 4500); stopped by PID."""

    def __init__(self, tmp: Path, ns: str, *extra: str) -> None:
        self.logfile = tmp / "vpngw.log"
        secrets = tmp / "secrets"
        secrets.write_text(f'client@test : "{PSK}"\n')
        secrets.chmod(0o600)  # vpngw refuses a key file others may read
        twistd = Path(sys.executable).parent / "twistd"
        self.process = subprocess.Popen(
            ["ip", "netns", "exec", ns, str(twistd), "-n", "--pidfile=",
             f"--logfile={self.logfile}", "vpngw", "--listen", GATEWAY, "--port", "500",
             "--secrets", str(secrets), "--identity", "gw@test", *extra],
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
        self.wait_for_log("NAT traversal (RFC 3948 framing) on udp")

    @property
    def log(self) -> str:
        return self.logfile.read_text(errors="replace") if self.logfile.exists() else ""

    def wait_for_log(self, text: str, timeout: float = 20.0) -> str:
        deadline = time.monotonic() + timeout
        while text not in (log := self.log):
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"{text!r} not in the vpngw log:\n{log}")
            time.sleep(0.05)
        return log

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)


def client_conf(local: str, *, encap: bool = False) -> str:
    return f"""connections {{ nat {{
  version = 2
  mobike = no
  encap = {"yes" if encap else "no"}
  local_addrs = {local}
  remote_addrs = {GATEWAY}
  remote_port = 500
  proposals = aes128-sha256-x25519
  local {{ auth = psk
    id = client@test }}
  remote {{ auth = psk
    id = gw@test }}
  children {{ net {{ esp_proposals = aes128gcm16
    remote_ts = 10.1.0.0/16 }} }}
}} }}
secrets {{ ike-any {{ secret = "{PSK}" }} }}
"""


@contextlib.contextmanager
def peers(
    tmp: Path, net: Network, conf: str, *gateway_options: str
) -> Iterator[tuple[NamespacedCharon, Gateway]]:
    gateway = Gateway(tmp, net.gateway, *gateway_options)
    charon = NamespacedCharon(net.client, conf)
    try:
        charon.start()
        yield charon, gateway
    finally:
        charon.stop()
        gateway.stop()


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def require_nat_tools() -> None:
    require_strongswan()
    requireTool("ip")
    requireTool("iptables")
    requireTool("conntrack")


def test_strongswan_behind_nat_floats_and_survives_rebinding(tmp_path: Path) -> None:
    """strongSwan behind a masquerading NAT: both sides detect the NAT in IKE_SA_INIT, the
    client floats to 4500 for IKE_AUTH (the NAT maps it to a new source port), the gateway
    follows it there and negotiates the IKE SA and the CHILD_SA. Then the NAT forgets its
    mappings and uses other ports: the client's IKE SA rekey (CREATE_CHILD_SA) arrives from
    a new port, the gateway follows it (an authenticated new request), answers there, and
    its own liveness checks of the new IKE SA reach the client through the new mapping."""
    require_nat_tools()
    with (
        Network(nat=True) as net,
        peers(tmp_path, net, client_conf(CLIENT), "--liveness-interval", "3") as (charon, gateway),
    ):
        out = charon.swanctl("--initiate", "--child", "net", "--timeout", "15", check=False)
        assert "IKE_SA nat[1] established" in out, out
        clog = charon.log
        assert "local host is behind NAT, sending keep alives" in clog
        assert re.search(rf"sending packet: from {CLIENT}\[4500\] to {GATEWAY}\[4500\]", clog)
        log = gateway.wait_for_log("established with client@test")
        assert "peer behind a NAT: True, we are behind a NAT: False" in log
        first = re.search(
            rf"moved from \('{NAT_OUTSIDE}', (2\d{{4}})\) to \('{NAT_OUTSIDE}', (2\d{{4}})\) "
            r"\(local port 4500\): peer floated to NAT-T port",
            log,
        )
        assert first is not None and first.group(1) != first.group(2), log
        floated_port = int(first.group(2))
        assert 20000 <= floated_port < 21000
        gateway.wait_for_log("recorded (no ESP data plane installed)")
        assert "unable to install" in charon.log

        net.rebind()
        charon.swanctl("--rekey", "--ike", "nat")
        log = gateway.wait_for_log("NAT rebinding")
        moved = re.search(
            rf"moved from \('{NAT_OUTSIDE}', {floated_port}\) to \('{NAT_OUTSIDE}', (21\d{{3}})\) "
            r"\(local port 4500\): NAT rebinding",
            log,
        )
        assert moved is not None, log
        gateway.wait_for_log("rekeyed to")
        wait_for(lambda: "IKE_SA nat[2] rekeyed between" in charon.log, "the client's rekey")
        # The gateway's own liveness checks of the new SA reach the client at the new port.
        gateway.wait_for_log(f"answered by ('{NAT_OUTSIDE}', {moved.group(1)})")
        assert "parsed INFORMATIONAL request 0 [ ]" in charon.log
        assert "ESTABLISHED" in charon.swanctl("--list-sas")
        assert "peer unreachable" not in gateway.log


def test_strongswan_encap_yes_without_nat(tmp_path: Path) -> None:
    """strongSwan with ``encap = yes`` and no NAT fakes its NAT_DETECTION_SOURCE_IP: the
    gateway finds the client "behind a NAT", the client moves to 4500, the gateway follows
    it (same address, port 4500) and the IKE SA and the CHILD_SA are negotiated there."""
    require_nat_tools()
    with (
        Network(nat=False) as net,
        peers(tmp_path, net, client_conf(NAT_OUTSIDE, encap=True)) as (charon, gateway),
    ):
        out = charon.swanctl("--initiate", "--child", "net", "--timeout", "15", check=False)
        assert "IKE_SA nat[1] established" in out, out
        assert "faking NAT situation to enforce UDP encapsulation" in charon.log
        log = gateway.wait_for_log("established with client@test")
        assert "peer behind a NAT: True, we are behind a NAT: False" in log
        assert (
            f"moved from ('{NAT_OUTSIDE}', 500) to ('{NAT_OUTSIDE}', 4500) (local port 4500): "
            "peer floated to NAT-T port" in log
        )
        gateway.wait_for_log("recorded (no ESP data plane installed)")
        assert "NAT rebinding" not in log
