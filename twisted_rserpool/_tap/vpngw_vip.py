"""``twistd vpngw`` options for virtual IPs: --address-pool, --subnet and --dns.

Each is repeatable. ``--address-pool`` networks (IPv4 and IPv6) give clients that ask with
CP(CFG_REQUEST) an address (RFC 7296 2.19); ``--subnet`` networks are what the gateway
protects (the CHILD_SAs' TSr, and INTERNAL_IP4/6_SUBNET in the reply; default every
address); ``--dns`` servers go into the reply.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from twisted.python import usage

from twisted_rserpool.ike.addresspool import AddressPool, parse_pool
from twisted_rserpool.ike.child import selector_from_network

__all__ = ["VIP_HELP", "check_vip", "vip_config", "vip_hint"]

VIP_HELP = {
    "address-pool": (
        "Lease virtual IPs from this network (such as 10.8.0.0/24 or fd00:8::/64; repeatable, "
        "IPv4 and IPv6) to clients that ask for an address (CP(CFG_REQUEST), strongSwan's "
        "vips = 0.0.0.0 or ::). One address per family and client identity, released when its "
        "last IKE SA goes; a client's TSi is narrowed to its address, and a client that asks "
        "for none gets FAILED_CP_REQUIRED for its CHILD_SA. An exhausted pool answers "
        "INTERNAL_ADDRESS_FAILURE (the IKE SA stays)."
    ),
    "subnet": (
        "A network behind the gateway (repeatable): the CHILD_SAs' TSr is narrowed to these, "
        "and clients with a virtual IP are told them (INTERNAL_IP4/6_SUBNET). "
        "Default: 0.0.0.0/0 and ::/0."
    ),
    "dns": "A DNS server for clients with a virtual IP (INTERNAL_IP4/6_DNS; repeatable).",
}


def check_vip(options: Any) -> None:
    """Parse the virtual IP options into ``options["vip"]`` (a dict of IkeConfig fields)."""
    try:
        pools = [parse_pool(text) for text in options.get("address-pool", [])]
        subnets = [ipaddress.ip_network(t.strip(), strict=True) for t in options.get("subnet", [])]
        dns = tuple(ipaddress.ip_address(t.strip()) for t in options.get("dns", []))
        pool = AddressPool(pools) if pools else None
    except ValueError as e:
        raise usage.UsageError(f"virtual IP options: {e}") from None
    fields: dict[str, Any] = {"address_pool": pool, "dns_servers": dns}
    if subnets:
        fields["local_ts"] = tuple(selector_from_network(str(n)) for n in subnets)
    options["vip"] = fields


def vip_config(options: Any) -> dict[str, Any]:
    """The IkeConfig fields of the virtual IP options."""
    return dict(options["vip"])


def vip_hint(options: Any) -> dict[str, str]:
    """The swanctl.conf settings a client of these options needs for virtual IPs:
    ``vips`` for the pool's families and ``remote_ts`` from --subnet (none without a pool)."""
    pool: AddressPool | None = options["vip"]["address_pool"]
    if pool is None:
        return {}
    settings = {"vips": ", ".join("0.0.0.0" if v == 4 else "::" for v in sorted(pool.families()))}
    subnets = options.get("subnet", [])
    if subnets:
        settings["remote_ts"] = ", ".join(t.strip() for t in subnets)
    return settings
