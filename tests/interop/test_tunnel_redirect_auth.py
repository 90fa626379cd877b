"""The IKE_AUTH redirect moves a real tunnel: our own initiator (tests/interop/vpn_client.py,
with its own ESP data plane on a TUN device), configured for gateway A, ends with its
traffic flowing through gateway B.

The namespaces and gateways are those of test_tunnel_redirect.py. A is started with
``--redirect-to B --redirect-always --redirect-in-auth``: it authenticates the client and
answers IKE_AUTH with REDIRECT (RFC 5685 section 6) instead of a CHILD_SA. The client
follows, gets B's virtual IP, pings the server and fetches a file through B; B's CHILD_SA
counters equal the client's, and A holds no IKE or CHILD_SA and carried no ESP. (strongSwan
5.9.8 cannot be the client here: it accepts the redirect in IKE_AUTH and never contacts B.)
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from tests.interop.test_tunnel_redirect import (
    B_VIP,
    CLIENT,
    PSK,
    SERVER,
    SUBNET,
    A,
    B,
    Gateway,
    Network,
    ping,
    plane_counters,
)
from tests.interop.tunnel_support import Process, require_tunnel_tools, run, wait_for

pytestmark = pytest.mark.interop


def events(client: Process) -> list[dict[str, object]]:
    found: list[dict[str, object]] = []
    for line in client.log.splitlines():
        if line.startswith("{"):
            found.append(json.loads(line))
    return found


def test_ike_auth_redirect_moves_the_tunnel_to_gateway_b() -> None:
    """Our client redirected by A in IKE_AUTH ends with B's virtual IP and its ping and
    HTTP through B's tunnel (B's counters equal the client's); A holds no SA, carried no ESP."""
    require_tunnel_tools()
    with tempfile.TemporaryDirectory(prefix="e5-redirect-") as tmp, Network() as net:
        work = Path(tmp)
        www = work / "www"
        www.mkdir()
        blob = os.urandom(128 * 1024)
        (www / "blob.bin").write_bytes(blob)
        processes: list[Process] = []
        try:
            http = Process(
                net.server,
                [sys.executable, "-m", "http.server", "8080", "--bind", SERVER,
                 "--directory", str(www)],
                work / "http.log",
            )  # fmt: skip
            processes.append(http)
            auth = ["--redirect-to", B, "--redirect-always", "--redirect-in-auth"]
            gw_a = Gateway(work, net.a, "a", A, "10.99.0.0/24", *auth)
            processes.append(gw_a.process)
            gw_b = Gateway(work, net.b, "b", B, "10.98.0.0/24")
            processes.append(gw_b.process)
            gw_a.ready()
            gw_b.ready()
            wait_for(
                lambda: bool(
                    run("ip", "netns", "exec", net.server, "ss", "-Hltn", "sport = :8080")
                ),
                "the HTTP server",
            )
            before = plane_counters(gw_a)
            client = Process(
                net.client,
                [sys.executable, "-m", "tests.interop.vpn_client", CLIENT, A, PSK, SUBNET,
                 "vpnclient"],
                work / "client.log",
            )  # fmt: skip
            processes.append(client)
            client.wait_for_log('"event": "tunnel"')
            (up,) = [e for e in events(client) if e["event"] == "established"]
            assert up["peer"] == f"{B}:500" and up["virtual_ip"] == B_VIP, up
            gw_b.process.wait_for_log(f"redirected here from {A}")
            gw_b.process.wait_for_log("installed in the ESP data plane")
            wait_for(lambda: gw_a.status()["ike_sas"] == 0, "A to drop the client's SA")

            ping(net.client)
            fetched = work / "got.bin"
            subprocess.run(
                ["ip", "netns", "exec", net.client, "curl", "-sf", "--max-time", "20",
                 "-o", str(fetched), f"http://{SERVER}:8080/blob.bin"],
                check=True, timeout=30,
            )  # fmt: skip
            assert hashlib.sha256(fetched.read_bytes()).digest() == hashlib.sha256(blob).digest()
            assert re.search(rf"^{re.escape(B_VIP)} .*GET /blob.bin", http.log, re.M), http.log

            # A holds nothing for the client and carried none of its traffic.
            status_a = gw_a.status()
            assert status_a["ike_sas"] == 0
            assert [e["sas"] for e in status_a["endpoints"]] == [[]]
            assert status_a["redirects"] == {"static": 1}
            after = plane_counters(gw_a)
            for name in ("sealed", "opened", "in_dropped"):
                assert after[name] == before[name], (name, before, after)
            # The IKE_AUTH form: A verified the client's AUTH, then redirected it.
            assert f"redirecting authenticated client client@test at ('{CLIENT}', 500) to {B}" in (
                gw_a.process.log
            )
            assert "installed in the ESP data plane" not in gw_a.process.log
            assert not [e for e in events(client) if e.get("peer") == A]

            # B's CHILD_SA counters equal the client's, once the last packets are counted.
            client.stop()
            (final,) = [e for e in events(client) if e["event"] == "counters"]
            children = final["children"]
            assert isinstance(children, list)
            (theirs,) = children
            mirrored = {
                "packets_in": theirs["packets_out"],
                "bytes_in": theirs["bytes_out"],
                "packets_out": theirs["packets_in"],
                "bytes_out": theirs["bytes_in"],
            }
            deadline = time.monotonic() + 10
            while True:
                ((ike_sa,),) = [e["sas"] for e in gw_b.status()["endpoints"]]
                (child,) = ike_sa["child_sas"]
                ours = {k: child["esp"][k] for k in mirrored}
                if ours == mirrored or time.monotonic() > deadline:
                    break
                time.sleep(0.2)
            assert ours == mirrored
            assert mirrored["packets_out"] >= 3 + len(blob) // 1400
            assert ike_sa["virtual_ips"] == [B_VIP]
        finally:
            for process in reversed(processes):
                process.stop()
