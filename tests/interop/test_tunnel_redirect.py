"""Redirects move the tunnel: strongSwan 5.9.8 with kernel-libipsec, configured for gateway A
(``twistd -n vpngw --tun``), ends with its traffic flowing through gateway B.

Four network namespaces whose names carry the pid: "client" (charon with kernel-libipsec,
192.0.2.2 on a bridge) -- veth -- "A" (vpngw on 192.0.2.1, TUN vpngwa, pool 10.99.0.0/24;
198.51.100.1) and -- veth -- "B" (vpngw on 192.0.2.3, TUN vpngwb, pool 10.98.0.0/24;
198.51.100.3) -- veth -- "server" (198.51.100.2 on a bridge, an HTTP server; the route back to
each pool goes via the gateway that owns it). A redirects the client to B in IKE_SA_INIT
(``--redirect-always``) or, once the tunnel through A carried a ping, with a
gateway-initiated INFORMATIONAL ordered through A's admin ``POST /redirect``. Then the
client holds B's virtual IP, pings the server and fetches a file through the tunnel, B's
CHILD_SA counters equal charon's, and A holds no IKE or CHILD_SA and its data plane counts
nothing more. (The IKE_AUTH form is in test_tunnel_redirect_auth.py, with our own initiator
as the client: strongSwan 5.9.8 accepts the redirect in IKE_AUTH but never sends the new
IKE_SA_INIT to B; see test_redirect_strongswan.py.)
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
    run,
    wait_for,
)

pytestmark = pytest.mark.interop

PSK = "libipsec-redirect-psk"
CLIENT, SERVER, SUBNET = "192.0.2.2", "198.51.100.2", "198.51.100.0/24"
A, A_INSIDE, A_POOL, A_VIP = "192.0.2.1", "198.51.100.1", "10.99.0.0/24", "10.99.0.1"
B, B_INSIDE, B_POOL, B_VIP = "192.0.2.3", "198.51.100.3", "10.98.0.0/24", "10.98.0.1"

_serial = itertools.count()


class Network:
    """client -- {A, B} -- server namespaces, deleted on exit (and at exit)."""

    def __init__(self) -> None:
        tag = f"{os.getpid() % 100000}{next(_serial)}"
        self.client, self.a, self.b, self.server = (f"e4{r}{tag}" for r in "cabs")
        self._made: list[str] = []

    def __enter__(self) -> Network:
        atexit.register(self.remove)
        try:
            for ns in (self.client, self.a, self.b, self.server):
                run("ip", "netns", "add", ns)
                self._made.append(ns)
                run("ip", "-n", ns, "link", "set", "lo", "up")
            # One segment outside (the client's bridge) and one inside (the server's).
            for ns in (self.client, self.server):
                run("ip", "-n", ns, "link", "add", "br0", "type", "bridge")
                run("ip", "-n", ns, "link", "set", "br0", "up")
            for gw, name, outer, inner in ((self.a, "a", A, A_INSIDE), (self.b, "b", B, B_INSIDE)):
                # Created inside the namespaces: the names never exist in the host's.
                run("ip", "link", "add", f"c-{name}", "netns", self.client, "type", "veth",
                    "peer", "name", "out", "netns", gw)  # fmt: skip
                run("ip", "link", "add", f"s-{name}", "netns", self.server, "type", "veth",
                    "peer", "name", "in", "netns", gw)  # fmt: skip
                for ns, port in ((self.client, f"c-{name}"), (self.server, f"s-{name}")):
                    run("ip", "-n", ns, "link", "set", port, "master", "br0")
                    run("ip", "-n", ns, "link", "set", port, "up")
                for device, address in (("out", outer), ("in", inner)):
                    run("ip", "-n", gw, "addr", "add", f"{address}/24", "dev", device)
                    run("ip", "-n", gw, "link", "set", device, "up")
                run("ip", "netns", "exec", gw, "sysctl", "-qw", "net.ipv4.ip_forward=1")
            run("ip", "-n", self.client, "addr", "add", f"{CLIENT}/24", "dev", "br0")
            run("ip", "-n", self.server, "addr", "add", f"{SERVER}/24", "dev", "br0")
            run("ip", "-n", self.server, "route", "add", A_POOL, "via", A_INSIDE)
            run("ip", "-n", self.server, "route", "add", B_POOL, "via", B_INSIDE)
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


def client_conf() -> str:
    return f"""connections {{ home {{
  version = 2
  mobike = no
  encap = yes
  local_addrs = {CLIENT}
  remote_addrs = {A}
  vips = 0.0.0.0
  proposals = aes128-sha256-x25519
  local {{ auth = psk
    id = client@test }}
  remote {{ auth = psk
    id = gw@test }}
  children {{ net {{ remote_ts = {SUBNET}
    esp_proposals = aes128gcm16 }} }}
}} }}
secrets {{ ike-gw {{ id = gw@test
  secret = "{PSK}" }} }}
"""


class Gateway:
    """``twistd -n vpngw --tun`` in its namespace, with its admin interface on a unix socket."""

    def __init__(
        self, work: Path, ns: str, name: str, address: str, pool: str, *extra: str
    ) -> None:
        secrets = work / "secrets"
        secrets.write_text(f'client@test : "{PSK}"\n')
        secrets.chmod(0o600)  # vpngw refuses a key file others may read
        self.admin = work / f"admin-{name}.sock"
        self.token = work / f"state-{name}" / "admin.token"
        self.tun = f"vpngw{name}"
        twistd = str(Path(sys.executable).parent / "twistd")
        self.process = Process(
            ns,
            [twistd, "-n", "--pidfile=", f"--logfile={work / f'vpngw-{name}.log'}", "vpngw",
             "--listen", address, "--port", "500", "--secrets", str(secrets),
             "--identity", "gw@test", "--address-pool", pool, "--subnet", SUBNET,
             "--tun", self.tun, "--admin", f"unix:{self.admin}",
             "--state-dir", str(work / f"state-{name}"), *extra],
            work / f"vpngw-{name}.stdout",
        )  # fmt: skip
        self.process.logfile = work / f"vpngw-{name}.log"

    def ready(self) -> None:
        self.process.wait_for_log(f"ESP data plane on TUN {self.tun}")
        self.process.wait_for_log("NAT traversal (RFC 3948 framing) on udp")

    def status(self) -> dict[str, Any]:
        result: dict[str, Any] = json.loads(
            run("curl", "-sf", "--unix-socket", str(self.admin), "http://vpngw/status")
        )
        return result

    def post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        command = ["curl", "-sf", "--unix-socket", str(self.admin)]
        command += ["-H", "Content-Type: application/json", "--data", json.dumps(body)]
        command += ["-H", f"Authorization: Bearer {self.token.read_text().strip()}"]
        result: dict[str, Any] = json.loads(run(*command, f"http://vpngw{path}"))
        return result


def ping(ns: str) -> None:
    done = subprocess.run(
        ["ip", "netns", "exec", ns, "ping", "-c", "3", "-W", "5", SERVER],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert done.returncode == 0 and "3 received" in done.stdout, done.stdout + done.stderr


def plane_counters(gateway: Gateway) -> dict[str, int]:
    (plane,) = [e["data_plane"] for e in gateway.status()["endpoints"]]
    counters: dict[str, int] = plane["counters"]
    return counters


@pytest.mark.parametrize("form", ["ike_sa_init", "informational"])
def test_redirect_moves_the_tunnel_to_gateway_b(form: str) -> None:
    """A client configured for A ends with its traffic through B: B's virtual IP, ping and
    HTTP through B's tunnel (B's counters equal charon's), and A without any SA or traffic."""
    require_tunnel_tools()
    with tempfile.TemporaryDirectory(prefix="e4-redirect-") as tmp, Network() as net:
        work = Path(tmp)
        www = work / "www"
        www.mkdir()
        blob = os.urandom(128 * 1024)
        (www / "blob.bin").write_bytes(blob)
        processes: list[Process] = []
        charon = LibipsecCharon(net.client, client_conf())
        try:
            http = Process(
                net.server,
                [sys.executable, "-m", "http.server", "8080", "--bind", SERVER,
                 "--directory", str(www)],
                work / "http.log",
            )  # fmt: skip
            processes.append(http)
            static = ["--redirect-to", B, "--redirect-always"] if form == "ike_sa_init" else []
            gw_a = Gateway(work, net.a, "a", A, A_POOL, *static)
            processes.append(gw_a.process)
            gw_b = Gateway(work, net.b, "b", B, B_POOL)
            processes.append(gw_b.process)
            gw_a.ready()
            gw_b.ready()
            wait_for(
                lambda: bool(
                    run("ip", "netns", "exec", net.server, "ss", "-Hltn", "sport = :8080")
                ),
                "the HTTP server",
            )
            charon.start()
            charon.swanctl("--initiate", "--child", "net", "--timeout", "20")
            if form == "informational":
                # First the tunnel through A really carries traffic ...
                charon.wait_for_log(f"installing new virtual IP {A_VIP}")
                gw_a.process.wait_for_log("installed in the ESP data plane")
                ping(net.client)
                assert plane_counters(gw_a)["opened"] >= 3
                # ... then A's operator moves the client.
                assert gw_a.post("/redirect", {"all": True, "target": B}) == {"moved": 1}
                charon.wait_for_log(f"redirected to {B}")
                gw_a.process.wait_for_log("deleted by peer")
            else:
                charon.wait_for_log(f"redirected to {B}")
            charon.wait_for_log(f"installing new virtual IP {B_VIP}")
            gw_b.process.wait_for_log(f"redirected here from {A}")
            gw_b.process.wait_for_log("installed in the ESP data plane")
            wait_for(lambda: gw_a.status()["ike_sas"] == 0, "A to drop the client's SA")
            before = plane_counters(gw_a)

            ping(net.client)
            fetched = work / "got.bin"
            subprocess.run(
                ["ip", "netns", "exec", net.client, "curl", "-sf", "--max-time", "20",
                 "-o", str(fetched), f"http://{SERVER}:8080/blob.bin"],
                check=True, timeout=30,
            )  # fmt: skip
            assert hashlib.sha256(fetched.read_bytes()).digest() == hashlib.sha256(blob).digest()
            assert re.search(rf"^{re.escape(B_VIP)} .*GET /blob.bin", http.log, re.M), http.log

            def counters() -> tuple[dict[str, int], dict[str, int]]:
                status = gw_b.status()
                ((ike_sa,),) = [e["sas"] for e in status["endpoints"]]
                (child,) = ike_sa["child_sas"]
                theirs = client_counters(charon.swanctl("--list-sas"))
                seen = {
                    "packets_in": theirs["out"][1],
                    "bytes_in": theirs["out"][0],
                    "packets_out": theirs["in"][1],
                    "bytes_out": theirs["in"][0],
                }
                return {k: child["esp"][k] for k in seen}, seen

            deadline = time.monotonic() + 10
            while (now := counters())[0] != now[1] and time.monotonic() < deadline:
                time.sleep(0.2)
            ours, seen = now
            assert ours == seen
            assert seen["packets_out"] >= 3 + len(blob) // 1400
            ((ike_sa,),) = [e["sas"] for e in gw_b.status()["endpoints"]]
            assert ike_sa["virtual_ips"] == [B_VIP]

            # A holds nothing for the client and carried none of this traffic.
            status_a = gw_a.status()
            assert status_a["ike_sas"] == 0
            assert [e["sas"] for e in status_a["endpoints"]] == [[]]
            # Nothing sealed or opened, no ESP from the client; only out_dropped (packets on
            # A's TUN that no CHILD_SA lets out, such as the kernel's own IPv6 solicitations)
            # may move.
            after = plane_counters(gw_a)
            for name in ("sealed", "opened", "in_dropped"):
                assert after[name] == before[name], (name, before, after)
            expected = {"static": 1} if form == "ike_sa_init" else {"admin": 1}
            assert status_a["redirects"] == expected
            if form == "ike_sa_init":
                assert before["opened"] == 0
                assert "established with" not in gw_a.process.log
            sas = charon.swanctl("--list-sas")
            assert f"remote 'gw@test' @ {B}[" in sas and f"@ {A}[" not in sas, sas
        finally:
            charon.stop()
            for process in reversed(processes):
                process.stop()
