"""``twistd vpngw`` options for the ESP data plane: --tun, --tun-mtu, --tun-address,
--tun-route.

With ``--tun NAME`` the gateway installs its CHILD_SAs into a userspace ESP data plane
(``esp.dataplane.DataPlaneInstaller``) and carries their traffic between UDP 4500 and the
TUN device NAME, which it creates: MTU ``--tun-mtu`` (else from the path to the clients,
``esp.pathmtu``), the ``--tun-address`` addresses, and routes to the ``--address-pool``
networks and each ``--tun-route``.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from typing import Any

from twisted.python import usage

from twisted_rserpool.esp.dataplane import DataPlaneInstaller
from twisted_rserpool.esp.service import TunnelService, endpoint_resolver
from twisted_rserpool.ike.gateway import IkeDatagramProtocol

__all__ = ["TUN_FLAGS", "TUN_HELP", "TUN_PARAMETERS", "check_tun", "tun_installer", "tun_service"]

TUN_HELP = {
    "tun-address": (
        "An address of the TUN device with its prefix, such as 10.8.255.254/32 (repeatable; "
        "default none: the gateway only forwards). It must not be one a client may lease."
    ),
    "tun-route": (
        "A network routed to the TUN device besides the --address-pool networks, such as the "
        "clients' own subnets (repeatable)."
    ),
}

TUN_FLAGS: list[list[Any]] = [
    [
        "raw-esp",
        None,
        "With --tun, also carry ESP straight over IP (protocol 50, RFC 4303) on a raw socket "
        "per --listen address (needs CAP_NET_RAW; without it an info line and UDP only): the "
        "CHILD_SAs of an IKE SA that stayed on --port (no NAT detected, no float to 4500) "
        "send raw ESP. Off by default because clients such as strongSwan's kernel-libipsec "
        "accept ESP only in UDP 4500.",
    ],
]

TUN_PARAMETERS: list[list[Any]] = [
    [
        "tun",
        None,
        None,
        "Carry the CHILD_SAs' traffic (userspace ESP in UDP 4500, RFC 4303/3948) through "
        "this TUN device, created by the gateway (needs CAP_NET_ADMIN and --nat-t-port). "
        "Without it the CHILD_SAs are negotiated and only recorded.",
    ],
    [
        "tun-mtu",
        None,
        None,
        "MTU of the TUN device (inner packets). Default: from the path, the MTU of the "
        "interface of each --listen address less the overhead of ESP in UDP with the "
        "costliest ESP transform (1406 behind a 1500-octet IPv4 path), logged at start.",
        int,
    ],
]


def check_tun(options: Any) -> None:
    """Check the data plane options into ``options["tun_addresses"]`` and
    ``options["tun_routes"]``."""
    addresses = [t.strip() for t in options.get("tun-address", [])]
    routes = [t.strip() for t in options.get("tun-route", [])]
    try:
        for address in addresses:
            ipaddress.ip_interface(address)
        routes = [str(ipaddress.ip_network(r, strict=True)) for r in routes]
    except ValueError as e:
        raise usage.UsageError(f"TUN options: {e}") from None
    if options["tun"] is None:
        if addresses or routes or options["raw-esp"]:
            raise usage.UsageError("--tun-address, --tun-route and --raw-esp need --tun")
    else:
        if options["tun-mtu"] is not None and not 576 <= options["tun-mtu"] <= 65535:
            raise usage.UsageError("--tun-mtu must be 576 to 65535")
        if not options["nat-t-port"]:
            raise usage.UsageError(
                "--tun carries ESP in UDP on the NAT-T port: it needs --nat-t-port"
            )
    pool = options["vip"]["address_pool"]
    if pool is not None:
        routes = [str(n) for n in pool.networks] + [
            r for r in routes if r not in map(str, pool.networks)
        ]
    options["tun_addresses"] = addresses
    options["tun_routes"] = routes


def tun_installer(options: Any) -> DataPlaneInstaller | None:
    """A data plane installer for one endpoint, when --tun is given."""
    return DataPlaneInstaller() if options["tun"] is not None else None


def tun_service(
    options: Any, planes: Sequence[tuple[IkeDatagramProtocol, DataPlaneInstaller]], reactor: Any
) -> TunnelService:
    """The service that joins the endpoints' data planes to the TUN device."""
    for protocol, plane in planes:
        plane.resolve = endpoint_resolver(protocol.endpoint)
    return TunnelService(
        options["tun"],
        planes,
        reactor,
        mtu=options["tun-mtu"],
        listen=options["addresses"],
        raw_esp=bool(options["raw-esp"]),
        addresses=options["tun_addresses"],
        routes=options["tun_routes"],
    )
