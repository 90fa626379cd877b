"""IKE fragmentation (RFC 7383) with strongSwan 5.9.8 on a path that drops IP fragments.

The test builds the path itself: two network namespaces (client and gateway, names with the
pid) joined by a veth pair with 192.0.2.1 and 192.0.2.2 (TEST-NET-1, only inside them), and
in each namespace an iptables rule in the raw PREROUTING chain, before reassembly, that drops
every IP fragment: ``-f`` the non-first ones, a u32 match on the MF flag the first ones.
charon runs in the client namespace, ``twistd -n vpngw`` in the gateway namespace. Both are
stopped by their PIDs and the namespaces deleted whatever happens.

Large IKE_AUTH messages, more than the veth's MTU of 1,500 octets (sent whole, IP fragments
them and the path drops them): strongSwan's request proposes a CHILD_SA with 48 IPv6
traffic selectors (about 2,300 octets, as large as the 2,240-octet IKE_AUTH of issue 13;
strongSwan cuts identities to 512 octets), and the gateway's answer repeats them; or the
gateway has a 2,400-octet identity (a childless IKE SA, so only the response is large).
This kernel has no ESP, so strongSwan fails to install the CHILD_SA after its IKE SA is up.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import itertools
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.conftest import requireTool
from tests.interop.charon import CHARON, Charon, free_loopback_500
from tests.interop.test_strongswan import require_strongswan
from twisted_rserpool.ike.config import Identity, IkeConfig, PskTable
from twisted_rserpool.ike.endpoint import IkeEndpoint
from twisted_rserpool.ike.events import IkeEvent, IkeSaEstablished

pytestmark = pytest.mark.interop

ROOT = Path(__file__).resolve().parents[2]
PSK = "fragments-psk"
CLIENT_ADDRESS = "192.0.2.1"
GATEWAY_ADDRESS = "192.0.2.2"
CLIENT_TS = ",".join(f"2001:db8:{n:x}::1/128" for n in range(48))
LONG_GATEWAY = "gateway." + "g" * 2400 + ".test"
_serial = itertools.count()


def _run(*args: str) -> str:
    return subprocess.run(args, check=True, capture_output=True, text=True, timeout=20).stdout


class FragmentDroppingPath:
    """client namespace -- veth -- gateway namespace; IP fragments dropped on arrival."""

    def __init__(self) -> None:
        tag = f"{os.getpid() % 100000}{next(_serial)}"
        self.client = f"n2c{tag}"
        self.gateway = f"n2g{tag}"
        self._made: list[str] = []

    def __enter__(self) -> FragmentDroppingPath:
        atexit.register(self.remove)
        try:
            for ns in (self.client, self.gateway):
                _run("ip", "netns", "add", ns)
                self._made.append(ns)
            _run("ip", "link", "add", f"v{self.client}", "type", "veth", "peer", "name",
                 f"v{self.gateway}")  # fmt: skip
            for ns, address in ((self.client, CLIENT_ADDRESS), (self.gateway, GATEWAY_ADDRESS)):
                device = f"v{ns}"
                _run("ip", "link", "set", device, "netns", ns)
                _run("ip", "-n", ns, "addr", "add", f"{address}/24", "dev", device)
                _run("ip", "-n", ns, "link", "set", device, "mtu", "1500", "up")
                _run("ip", "-n", ns, "link", "set", "lo", "up")
                # raw PREROUTING comes before the IP layer reassembles (ip_local_deliver).
                _run("ip", "netns", "exec", ns, "iptables", "-t", "raw", "-A", "PREROUTING",
                     "-f", "-j", "DROP")  # fmt: skip
                _run("ip", "netns", "exec", ns, "iptables", "-t", "raw", "-A", "PREROUTING",
                     "-m", "u32", "--u32", "3&0x20>>5=1", "-j", "DROP")  # fmt: skip
        except BaseException:
            self.remove()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()

    def remove(self) -> None:
        """Delete the namespaces (the veth pair goes with them)."""
        while self._made:
            ns = self._made.pop()
            subprocess.run(["ip", "netns", "del", ns], check=False, capture_output=True)

    def dropped(self, ns: str) -> int:
        """IP fragments dropped so far on arrival in namespace ``ns``."""
        out = _run("ip", "netns", "exec", ns, "iptables", "-t", "raw", "-L", "PREROUTING",
                   "-v", "-n", "-x")  # fmt: skip
        return sum(int(line.split()[0]) for line in out.splitlines() if "DROP" in line)


class NamespacedCharon(Charon):
    """charon in a network namespace (and, as always, its own mount namespace)."""

    def __init__(self, ns: str, swanctl_conf: str) -> None:
        super().__init__(swanctl_conf, port=500, port_nat_t=4500, ike_level=2)
        self.ns = ns

    def start(self, timeout: float = 10.0) -> None:
        script = f"mount --bind {self.dir}/run /run && exec {CHARON}"
        self.process = subprocess.Popen(
            ["ip", "netns", "exec", self.ns, "unshare", "--mount", "--propagation", "private",
             "--", "sh", "-c", script],
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )  # fmt: skip
        deadline = time.monotonic() + timeout
        while not (self.dir / "charon.vici").exists():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"charon did not start:\n{self.log}")
            time.sleep(0.05)
        self.swanctl("--load-all", "--file", str(self.dir / "swanctl.conf"))


class NamespacedGateway:
    """``twistd -n vpngw`` in the gateway namespace; stopped by its PID."""

    def __init__(self, tmp: Path, ns: str, *extra: str) -> None:
        self.logfile = tmp / "vpngw.log"
        secrets = tmp / "secrets"
        secrets.write_text(f'* : "{PSK}"\n')
        secrets.chmod(0o600)  # vpngw refuses a key file others may read
        twistd = Path(sys.executable).parent / "twistd"
        self.process = subprocess.Popen(
            ["ip", "netns", "exec", ns, str(twistd), "-n", "--pidfile=",
             f"--logfile={self.logfile}", "vpngw", "--listen", GATEWAY_ADDRESS, "--port", "500",
             "--secrets", str(secrets), *extra],
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
        self.wait_for_log("IKEv2 on udp")

    @property
    def log(self) -> str:
        return self.logfile.read_text(errors="replace") if self.logfile.exists() else ""

    def wait_for_log(self, text: str, timeout: float = 15.0) -> str:
        deadline = time.monotonic() + timeout
        while text not in (log := self.log):
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"{text!r} not in the vpngw log:\n{log}")
            time.sleep(0.05)
        return log

    def wait_for(self, done: Callable[[str], bool], timeout: float = 15.0) -> str:
        deadline = time.monotonic() + timeout
        while not done(log := self.log):
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"the vpngw log never got there:\n{log[-3000:]}")
            time.sleep(0.02)
        return log

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)


def client_conf(*, remote_id: str | None, fragmentation: str, many_ts: bool) -> str:
    remote = f"id = {remote_id}" if remote_id is not None else ""
    child = (
        f"children {{ net {{ local_ts = {CLIENT_TS}\n  remote_ts = 2001:db8:ffff::/48 }} }}"
        if many_ts
        else ""
    )
    return f"""connections {{ frag {{
  version = 2
  mobike = no
  childless = {"allow" if many_ts else "force"}
  fragmentation = {fragmentation}
  local_addrs = {CLIENT_ADDRESS}
  remote_addrs = {GATEWAY_ADDRESS}
  remote_port = 500
  proposals = aes128-sha256-x25519
  local {{ auth = psk
    id = client@test }}
  remote {{ auth = psk
    {remote} }}
  {child}
}} }}
secrets {{ ike-any {{ secret = "{PSK}" }} }}
"""


@pytest.fixture
def path() -> Iterator[FragmentDroppingPath]:
    require_strongswan()
    requireTool("ip")
    requireTool("iptables")
    with FragmentDroppingPath() as made:
        yield made


@contextlib.contextmanager
def peers(
    tmp: Path, path: FragmentDroppingPath, conf: str, *gateway_options: str
) -> Iterator[tuple[NamespacedCharon, NamespacedGateway]]:
    gateway = NamespacedGateway(tmp, path.gateway, *gateway_options)
    charon = NamespacedCharon(path.client, conf)
    try:
        charon.start()
        yield charon, gateway
    finally:
        charon.stop()
        gateway.stop()


def test_fragmented_ike_auth_request_establishes(
    tmp_path: Path, path: FragmentDroppingPath
) -> None:
    """strongSwan with ``fragmentation = yes`` and a 2,300-octet IKE_AUTH request: it goes
    as IKE Fragment messages (strongSwan's 1,280-octet default), the gateway reassembles it
    and answers as IKE Fragment messages of at most 576 octets, which strongSwan reassembles;
    no IP fragment is sent either way, and the IKE SA establishes."""
    conf = client_conf(remote_id="gw@test", fragmentation="yes", many_ts=True)
    with peers(tmp_path, path, conf, "--identity", "gw@test") as (charon, gateway):
        out = charon.swanctl("--initiate", "--child", "net", "--timeout", "15", check=False)
        assert "IKE_SA frag[1] established" in out
        log = gateway.wait_for_log("established with client@test")
        assert "reassembled message 1 from ('192.0.2.1', 500) out of 2 IKE fragments" in log
        assert "sending message 1 to ('192.0.2.1', 500) as" in log
        charon_log = charon.log
        assert "IKE_AUTH request 1 [ EF(1/2) ]" in charon_log  # sent as SKF payloads
        assert "reassembled fragmented IKE message" in charon_log
        assert "2001:db8:2f::1" in log  # the 48th selector reached the gateway
    assert path.dropped(path.gateway) == 0 and path.dropped(path.client) == 0


def test_unfragmented_ike_auth_request_is_lost(tmp_path: Path, path: FragmentDroppingPath) -> None:
    """The same client with ``fragmentation = no``: its IKE_AUTH is IP-fragmented, the
    path drops the fragments, and no IKE SA comes up."""
    conf = client_conf(remote_id="gw@test", fragmentation="no", many_ts=True)
    with peers(tmp_path, path, conf, "--identity", "gw@test") as (charon, gateway):
        out = charon.swanctl("--initiate", "--child", "net", "--timeout", "6", check=False)
        assert "initiate completed successfully" not in out
        assert "ESTABLISHED" not in charon.swanctl("--list-sas")
        assert "established with" not in gateway.log
    assert path.dropped(path.gateway) >= 2  # at least one IKE_AUTH, first fragment and rest


def test_gateway_fragments_a_large_response(tmp_path: Path, path: FragmentDroppingPath) -> None:
    """A gateway with a 2,400-octet identity: its 2,600-octet IKE_AUTH response goes as
    IKE Fragment messages of at most 576 octets; charon reassembles them and establishes."""
    conf = client_conf(remote_id=None, fragmentation="yes", many_ts=False)
    options = ("--identity", LONG_GATEWAY)
    with peers(tmp_path, path, conf, *options) as (charon, gateway):
        out = charon.swanctl("--initiate", "--ike", "frag", "--timeout", "15")
        assert "initiate completed successfully" in out
        log = gateway.wait_for_log("established with client@test")
        assert "sending message 1 to" in log and "IKE fragments" in log
        assert "reassembled fragmented IKE message" in charon.log
        assert "ESTABLISHED" in charon.swanctl("--list-sas")
        assert "authentication of 'gateway.gggg" in charon.log  # strongSwan prints 512 octets
    assert path.dropped(path.client) == 0


def test_gateway_without_fragmentation_loses_its_response(
    tmp_path: Path, path: FragmentDroppingPath
) -> None:
    """The same gateway with ``--fragment-size 0`` (fragmentation off): its response is
    IP-fragmented, dropped on the way to the client, and no IKE SA comes up at the client."""
    conf = client_conf(remote_id=None, fragmentation="yes", many_ts=False)
    options = ("--identity", LONG_GATEWAY, "--fragment-size", "0")
    with peers(tmp_path, path, conf, *options) as (charon, gateway):
        out = charon.swanctl("--initiate", "--ike", "frag", "--timeout", "6", check=False)
        assert "initiate completed successfully" not in out
        assert "ESTABLISHED" not in charon.swanctl("--list-sas")
        assert "IKE fragments" not in gateway.log
    assert path.dropped(path.client) >= 2


# --- a hostile peer against a real twistd vpngw (loopback, no namespaces) -------------------


class LoopbackGateway(NamespacedGateway):
    """``twistd -n vpngw`` on a free 127.0.0.x, port 500, any identity with the PSK."""

    def __init__(self, tmp: Path) -> None:
        self.host = free_loopback_500()
        self.logfile = tmp / "vpngw.log"
        secrets = tmp / "secrets"
        secrets.write_text(f'* : "{PSK}"\n')
        secrets.chmod(0o600)  # vpngw refuses a key file others may read
        twistd = Path(sys.executable).parent / "twistd"
        self.process = subprocess.Popen(
            [str(twistd), "-n", "--pidfile=", f"--logfile={self.logfile}", "vpngw", "--listen",
             self.host, "--port", "500", "--secrets", str(secrets), "--identity", "gw@test"],
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
        self.wait_for_log("IKEv2 on udp")


class SocketClient:
    """Our sans-IO endpoint as the initiator, on a real UDP socket; the test decides what
    of its output is sent."""

    def __init__(self, identity: str, gateway: str) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.gateway = (gateway, 500)
        config = IkeConfig(
            Identity.parse(identity), PskTable(default=PSK.encode()), childless="force"
        )
        self.endpoint = IkeEndpoint(config, self.sock.getsockname())
        self.events: list[IkeEvent] = []

    def output(self) -> list[bytes]:
        return [data for data, _ in self.endpoint.datagrams_to_send()]

    def send(self, datagrams: list[bytes]) -> None:
        for data in datagrams:
            self.sock.sendto(data, self.gateway)

    def receive(self, wait: float) -> list[bytes]:
        """Every datagram the gateway sends within ``wait`` seconds, fed to the endpoint."""
        got: list[bytes] = []
        deadline = time.monotonic() + wait
        while (left := deadline - time.monotonic()) > 0:
            self.sock.settimeout(left)
            try:
                data, _ = self.sock.recvfrom(65535)
            except TimeoutError:
                break
            got.append(data)
            self.events += self.endpoint.receive_datagram(data, self.gateway, time.monotonic())
        return got

    def ike_auth(self) -> list[bytes]:
        """Run IKE_SA_INIT; return our IKE_AUTH datagrams, not sent."""
        self.endpoint.initiate(self.gateway, time.monotonic())
        self.send(self.output())
        deadline = time.monotonic() + 10
        while not (auth := self.output()):
            assert time.monotonic() < deadline, "no IKE_SA_INIT response"
            self.receive(0.2)
        return auth

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def loopback_gateway(tmp_path: Path) -> Iterator[LoopbackGateway]:
    require_strongswan()  # root, for port 500
    gateway = LoopbackGateway(tmp_path)
    try:
        yield gateway
    finally:
        gateway.stop()


def test_hostile_fragments_against_vpngw(loopback_gateway: LoopbackGateway) -> None:
    """RFC 7383 section 5 against a real twistd vpngw: (1) a peer that completed IKE_SA_INIT
    sends authentic fragments of a 20,000-octet IKE_AUTH: past 16,384 octets the set is
    discarded and the half-open SA dropped, and nothing was answered; (2) 300 forged
    fragments (bad ICV; half with a larger Total Fragments, which would restart the set)
    amid a genuine fragmented IKE_AUTH: each forged one is dropped, the set is undisturbed,
    nothing is answered before the last genuine fragment, and then exactly one answer comes
    and the client is established."""
    gateway = loopback_gateway
    hostile = SocketClient("h" * 20000, gateway.host)
    try:
        fragments = hostile.ike_auth()
        assert len(fragments) > 36  # 20,000 octets at 576 per datagram
        hostile.send(fragments)
        log = gateway.wait_for_log("exceed 16384 octets")
        assert "failed: fragments of message 1 exceed 16384 octets" in log
        assert hostile.receive(1.0) == []  # no answer, per fragment or at all
    finally:
        hostile.close()
    genuine = SocketClient("client." + "c" * 3000, gateway.host)
    try:
        fragments = genuine.ike_auth()
        assert len(fragments) == 7
        forged: list[bytes] = []
        for n in range(300):
            data = bytearray(fragments[3 + n % 4])  # numbers 4 to 7, not stored yet
            data[-1] ^= 0x55  # the ICV
            if n % 2:
                data[34:36] = (9).to_bytes(2, "big")  # Total Fragments 9: would restart
            forged.append(bytes(data))
        genuine.send(fragments[:3])
        for start in range(0, 300, 20):
            genuine.send(forged[start : start + 20])
            # Paced by the gateway's log, so its socket buffer never overflows.
            gateway.wait_for(functools.partial(_logged, "bad ICV", start + 20))
        genuine.send(fragments[3:6])
        assert genuine.receive(0.5) == []  # nothing before the set is complete
        genuine.send(fragments[6:])
        answer = genuine.receive(3.0)
        assert len(answer) == 1 and of_type(genuine.events, IkeSaEstablished)
        log = gateway.wait_for_log("established with client.ccc")
        assert log.count("bad ICV") == 300
        assert "reassembled message 1 from" in log
    finally:
        genuine.close()


def _logged(text: str, count: int, log: str) -> bool:
    return log.count(text) >= count


def of_type(events: list[IkeEvent], kind: type[IkeEvent]) -> list[IkeEvent]:
    return [e for e in events if isinstance(e, kind)]
