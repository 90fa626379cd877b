"""A real tunnel: strongSwan 5.9.8 with kernel-libipsec reaches a protected host through
``twistd -n vpngw --tun``.

The test builds three network namespaces whose names carry the pid, as in
../shared/interop/strongswan-libipsec/run.sh: "client" (charon with kernel-libipsec, its
userspace ESP on TUN ipsec0; 192.0.2.2) -- veth -- "gateway" (vpngw on 192.0.2.1, ports
500 and 4500, TUN vpngw0, address pool 10.99.0.0/24; 198.51.100.1) -- veth -- "server"
(198.51.100.2 and 2001:db8:100::2, an HTTP server, default routes via the gateway). The
client's only route to the protected network (198.51.100.0/24, or 2001:db8:100::/64 with an
IPv6 virtual IP from fd00:99::/64) is charon's through the tunnel. charon gets its virtual
IP, pings the server and fetches a file whose digest must match; the server must have seen
the virtual IP; then vpngw's per-CHILD_SA counters (admin status) must equal charon's, in
both directions. Processes are stopped by PID and the namespaces deleted whatever happens.
"""

from __future__ import annotations

import atexit
import hashlib
import itertools
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest

from tests.interop.tunnel_support import (
    LibipsecCharon,
    Process,
    client_counters,
    require_tunnel_tools,
    wait_for,
)
from tests.interop.tunnel_support import run as _run

pytestmark = pytest.mark.interop

PSK = "libipsec-test-psk"
CLIENT, GATEWAY, GATEWAY_INSIDE, SERVER = "192.0.2.2", "192.0.2.1", "198.51.100.1", "198.51.100.2"
SERVER6, GATEWAY_INSIDE6 = "2001:db8:100::2", "2001:db8:100::1"


class Family:
    """What the inner packets are: the pool, the protected network and the server."""

    def __init__(self, version: int) -> None:
        self.version = version
        six = version == 6
        self.pool = "fd00:99::/64" if six else "10.99.0.0/24"
        self.virtual_ip = "fd00:99::1" if six else "10.99.0.1"
        self.subnet = "2001:db8:100::/64" if six else "198.51.100.0/24"
        self.server = SERVER6 if six else SERVER
        self.url_host = f"[{SERVER6}]" if six else SERVER
        self.vips = "::" if six else "0.0.0.0"


_serial = itertools.count()


def client_conf(esp: str, family: Family) -> str:
    return f"""connections {{ home {{
  version = 2
  mobike = no
  encap = yes
  local_addrs = {CLIENT}
  remote_addrs = {GATEWAY}
  vips = {family.vips}
  proposals = aes128-sha256-x25519
  local {{ auth = psk
    id = client@test }}
  remote {{ auth = psk
    id = gw@test }}
  children {{ net {{ remote_ts = {family.subnet}
    esp_proposals = {esp} }} }}
}} }}
secrets {{ ike-gw {{ id = gw@test
  secret = "{PSK}" }} }}
"""


class Network:
    """client -- gateway -- server namespaces, deleted on exit (and at exit)."""

    def __init__(self) -> None:
        tag = f"{os.getpid() % 100000}{next(_serial)}"
        self.client, self.gateway, self.server = (f"e3{r}{tag}" for r in "cgs")
        self._made: list[str] = []

    def __enter__(self) -> Network:
        atexit.register(self.remove)
        try:
            for ns in (self.client, self.gateway, self.server):
                _run("ip", "netns", "add", ns)
                self._made.append(ns)
                _run("ip", "-n", ns, "link", "set", "lo", "up")
            # Created inside the namespaces: the names never exist in the host's.
            _run("ip", "link", "add", "c-gw", "netns", self.client, "type", "veth",
                 "peer", "name", "gw-c", "netns", self.gateway)  # fmt: skip
            _run("ip", "link", "add", "gw-s", "netns", self.gateway, "type", "veth",
                 "peer", "name", "s-gw", "netns", self.server)  # fmt: skip
            for ns, device, address in (
                (self.client, "c-gw", CLIENT),
                (self.gateway, "gw-c", GATEWAY),
                (self.gateway, "gw-s", GATEWAY_INSIDE),
                (self.server, "s-gw", SERVER),
            ):
                _run("ip", "-n", ns, "addr", "add", f"{address}/24", "dev", device)
                _run("ip", "-n", ns, "link", "set", device, "up")
            _run("ip", "-n", self.server, "route", "add", "default", "via", GATEWAY_INSIDE)
            # IPv6 inner packets: no duplicate address detection to wait for.
            for ns, device, address in (
                (self.gateway, "gw-s", GATEWAY_INSIDE6),
                (self.server, "s-gw", SERVER6),
            ):
                _run("ip", "-n", ns, "addr", "add", f"{address}/64", "dev", device, "nodad")
            _run("ip", "-n", self.server, "route", "add", "default", "via", GATEWAY_INSIDE6)
            _run("ip", "netns", "exec", self.gateway, "sysctl", "-qw", "net.ipv4.ip_forward=1")
            _run("ip", "netns", "exec", self.gateway, "sysctl", "-qw",
                 "net.ipv6.conf.all.forwarding=1")  # fmt: skip
        except BaseException:
            self.remove()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()

    def remove(self) -> None:
        while self._made:
            ns = self._made.pop()
            subprocess.run(["ip", "netns", "del", ns], check=False, capture_output=True)


@pytest.mark.parametrize(
    ("esp", "version"), [("aes128gcm16", 4), ("chacha20poly1305", 4), ("aes128gcm16", 6)]
)
def test_strongswan_reaches_the_protected_host_through_vpngw(esp: str, version: int) -> None:
    """Virtual IP, ping and HTTP through the tunnel (IPv4 or IPv6 inside, IPv4 outside);
    vpngw's counters equal charon's."""
    require_tunnel_tools()
    family = Family(version)
    with tempfile.TemporaryDirectory(prefix="e3-tunnel-") as tmp, Network() as net:
        work = Path(tmp)
        www = work / "www"
        www.mkdir()
        blob = os.urandom(256 * 1024)
        (www / "blob.bin").write_bytes(blob)
        secrets = work / "secrets"
        secrets.write_text(f'client@test : "{PSK}"\n')
        secrets.chmod(0o600)  # vpngw refuses a key file others may read
        admin = work / "admin.sock"
        twistd = str(Path(sys.executable).parent / "twistd")
        processes: list[Process] = []
        charon = LibipsecCharon(net.client, client_conf(esp, family))
        try:
            http = Process(
                net.server,
                [sys.executable, "-m", "http.server", "8080", "--bind", family.server,
                 "--directory", str(www)],
                work / "http.log",
            )  # fmt: skip
            processes.append(http)
            gateway = Process(
                net.gateway,
                [twistd, "-n", "--pidfile=", f"--logfile={work / 'vpngw.log'}", "vpngw",
                 "--listen", GATEWAY, "--port", "500", "--secrets", str(secrets),
                 "--identity", "gw@test", "--address-pool", family.pool,
                 "--subnet", family.subnet, "--tun", "vpngw0", "--admin", f"unix:{admin}",
                 "--state-dir", str(work / "state")],
                work / "vpngw.stdout",
            )  # fmt: skip
            processes.append(gateway)
            gateway.logfile = work / "vpngw.log"
            gateway.wait_for_log("ESP data plane on TUN vpngw0")
            gateway.wait_for_log("NAT traversal (RFC 3948 framing) on udp")
            wait_for(
                lambda: bool(
                    _run("ip", "netns", "exec", net.server, "ss", "-Hltn", "sport = :8080")
                ),
                "the HTTP server",
            )
            charon.start()
            charon.swanctl("--initiate", "--child", "net", "--timeout", "20")
            charon.wait_for_log(f"installing new virtual IP {family.virtual_ip}")
            gateway.wait_for_log("installed in the ESP data plane")

            ping = subprocess.run(
                ["ip", "netns", "exec", net.client, "ping", "-c", "3", "-W", "5", family.server],
                capture_output=True, text=True, timeout=30, check=False,
            )  # fmt: skip
            assert ping.returncode == 0, ping.stdout + ping.stderr
            assert "3 received" in ping.stdout
            fetched = work / "got.bin"
            subprocess.run(
                ["ip", "netns", "exec", net.client, "curl", "-sf", "--max-time", "20",
                 "-o", str(fetched), f"http://{family.url_host}:8080/blob.bin"],
                check=True, timeout=30,
            )  # fmt: skip
            assert hashlib.sha256(fetched.read_bytes()).digest() == hashlib.sha256(blob).digest()
            assert re.search(rf"^{re.escape(family.virtual_ip)} .*GET /blob.bin", http.log, re.M), (
                http.log
            )

            # What charon sent is what vpngw received and the other way round, packet for
            # packet (3 pings each way and the TCP connection), once the last packets of
            # the connection's close have arrived.
            def counters() -> tuple[dict[str, Any], dict[str, int], dict[str, int]]:
                status = json.loads(
                    _run("curl", "-sf", "--unix-socket", str(admin), "http://vpngw/status")
                )
                theirs = client_counters(charon.swanctl("--list-sas"))
                ((ike_sa,),) = [e["sas"] for e in status["endpoints"]]
                (child,) = ike_sa["child_sas"]
                ours = child["esp"]
                seen = {
                    "packets_in": theirs["out"][1],
                    "bytes_in": theirs["out"][0],
                    "packets_out": theirs["in"][1],
                    "bytes_out": theirs["in"][0],
                }
                return status, {k: ours[k] for k in seen}, seen

            deadline = time.monotonic() + 10
            while True:
                status, ours, seen = counters()
                if ours == seen or time.monotonic() > deadline:
                    break
                time.sleep(0.2)
            assert ours == seen
            assert seen["packets_in"] >= 3 + 1
            assert seen["packets_out"] >= 3 + len(blob) // 1400
            ((ike_sa,),) = [e["sas"] for e in status["endpoints"]]
            assert ike_sa["virtual_ips"] == [family.virtual_ip]
            (child,) = ike_sa["child_sas"]
            assert child["installed"] and child["remote_ts"] == [family.virtual_ip]
            assert child["esp"]["peer"] == f"{CLIENT}:4500"
            assert child["esp"]["drops"] == {}
            (plane,) = [e["data_plane"] for e in status["endpoints"]]
            assert plane["counters"]["in_dropped"] == 0
        finally:
            charon.stop()
            for process in reversed(processes):
                process.stop()
