"""Raw ESP (IP protocol 50, RFC 4303 without UDP encapsulation) through a real tunnel:
``twistd vpngw --tun --raw-esp`` and our own client (tests/interop/vpn_client.py with
``raw-esp``), no NAT between them, so the IKE SA stays on port 500 and both ends send ESP
straight over IP. strongSwan's kernel-libipsec cannot be the client: it always uses UDP
encapsulation. The namespaces and gateway are those of test_tunnel_redirect.py (gateway B
only)."""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

import pytest

from tests.interop.test_tunnel_redirect import (
    B_VIP,
    CLIENT,
    PSK,
    SUBNET,
    B,
    Gateway,
    Network,
    ping,
)
from tests.interop.tunnel_support import Process, require_tunnel_tools

pytestmark = pytest.mark.interop


def test_ping_through_raw_esp_both_ways() -> None:
    """Pings through the tunnel arrive and return while neither end receives a single ESP
    datagram in UDP: every ESP packet went over IP protocol 50, counted on both raw sockets."""
    require_tunnel_tools()
    with tempfile.TemporaryDirectory(prefix="e6-raw-esp-") as tmp, Network() as net:
        work = Path(tmp)
        processes: list[Process] = []
        try:
            gw = Gateway(work, net.b, "b", B, "10.98.0.0/24", "--raw-esp")
            processes.append(gw.process)
            gw.ready()
            gw.process.wait_for_log(f"Raw ESP (IP protocol 50) on {B}")
            client = Process(
                net.client,
                [sys.executable, "-m", "tests.interop.vpn_client", CLIENT, B, PSK, SUBNET,
                 "vpnclient", "raw-esp"],
                work / "client.log",
            )  # fmt: skip
            processes.append(client)
            client.wait_for_log('"event": "tunnel"')
            ping(net.client)
            status = gw.status()
            (endpoint,) = status["endpoints"]
            (ike_sa,) = endpoint["sas"]
            (child,) = ike_sa["child_sas"]
            assert ike_sa["virtual_ips"] == [B_VIP]
            assert child["esp"]["packets_in"] >= 3 and child["esp"]["packets_out"] >= 3, child
            assert endpoint["counters"].get("esp_received", 0) == 0, endpoint["counters"]
            client.stop()
            (final,) = [
                json.loads(line)
                for line in client.log.splitlines()
                if line.startswith("{") and '"counters"' in line
            ]
            assert final["esp_in_udp"] == 0, final
            (raw,) = final["raw"]
            assert raw["read"] >= 3 and raw["written"] >= 3, final
        finally:
            for process in reversed(processes):
                process.stop()
