"""Our IKEv2 initiator as a VPN client with a data plane, for the real-tunnel tests.

Usage: python -m tests.interop.vpn_client LOCAL_HOST GATEWAY PSK SUBNET TUN [raw-esp]

Run inside the client's network namespace. It opens an IKE SA with ``GATEWAY`` (UDP 500,
ESP over UDP 4500 as RFC 3948 frames it), follows redirects, asks for a virtual IPv4
address (CP(CFG_REQUEST)) and a CHILD_SA for ``SUBNET``, installs that CHILD_SA into a
``DataPlaneInstaller`` and carries it through the TUN device ``TUN`` configured with the
leased address and a route to ``SUBNET``. Outcomes are printed as JSON lines; it runs until
SIGTERM.
"""

from __future__ import annotations

import ipaddress
import json
import sys
from typing import Any

from twisted.internet import reactor as _reactor
from twisted.internet.defer import ensureDeferred

from twisted_rserpool.esp.dataplane import DataPlaneInstaller
from twisted_rserpool.esp.service import TunnelService, endpoint_resolver
from twisted_rserpool.ike.child import any_selector, selector_from_network
from twisted_rserpool.ike.config import Identity, IkeConfig, PskTable
from twisted_rserpool.ike.endpoint import IkeEndpoint
from twisted_rserpool.ike.events import ChildSaEstablished, IkeEvent
from twisted_rserpool.ike.initiator import IkeInitiatorProtocol

reactor: Any = _reactor


def say(**fields: object) -> None:
    print(json.dumps(fields), flush=True)


class Client(IkeInitiatorProtocol):
    """Reports every CHILD_SA it gets."""

    def ikeEventReceived(self, event: IkeEvent) -> None:
        super().ikeEventReceived(event)
        if isinstance(event, ChildSaEstablished):
            host = event.child.peer_address
            say(event="child_sa", peer=host, inbound=event.child.inbound_spi.hex())


async def main(argv: list[str]) -> None:
    local_host, gateway, psk, subnet, tun, *flags = argv
    config = IkeConfig(
        Identity.parse("client@test"),
        PskTable(default=psk.encode()),
        remote_id=Identity.parse("gw@test"),
        local_ts=(any_selector(4),),
        remote_ts=(selector_from_network(subnet),),
        childless="never",
        request_addresses=(ipaddress.IPv4Address("0.0.0.0"),),
        retransmit_timeout=1.0,
        retransmit_tries=3,
    )
    plane = DataPlaneInstaller()
    endpoint = IkeEndpoint(config, (local_host, 500), installer=plane)
    plane.resolve = endpoint_resolver(endpoint)
    protocol = Client(endpoint, reactor)
    reactor.listenUDP(500, protocol, interface=local_host)
    protocol.listenNatTraversal(reactor, 4500, interface=local_host)
    up = await protocol.initiate((gateway, 500))
    (vip,) = up.virtual_ips
    host, port = up.peer_address
    say(event="established", peer=f"{host}:{port}", virtual_ip=str(vip), children=len(plane))
    tunnel = TunnelService(
        tun,
        [(protocol, plane)],
        reactor,
        addresses=[f"{vip}/32"],
        routes=[subnet],
        raw_esp="raw-esp" in flags,  # ESP over IP (protocol 50) while IKE stays on port 500
    )
    tunnel.startService()
    say(event="tunnel", device=tunnel.deviceName)

    def report() -> None:
        children = [status for sa in endpoint for c in sa.children.values()
                    if (status := plane.child_status(c)) is not None]  # fmt: skip
        say(
            event="counters",
            plane=plane.counters,
            children=children,
            esp_in_udp=endpoint.counters["esp_received"],
            raw=[dict(raw.counters) for raw in tunnel.raw.values()],
        )

    reactor.addSystemEventTrigger("before", "shutdown", report)


def run() -> None:
    def failed(failure: Any) -> None:
        say(event="failed", error=str(failure.value))
        reactor.stop()

    d = ensureDeferred(main(sys.argv[1:]))
    d.addErrback(failed)
    timeout = reactor.callLater(30, d.cancel)
    d.addBoth(lambda _: timeout.active() and timeout.cancel())
    reactor.run()


if __name__ == "__main__":
    run()
