"""Configuration payloads: virtual IPs, DNS servers and subnets (RFC 7296 2.19, 3.15).

The gateway answers a CP(CFG_REQUEST) of the request that creates the first CHILD_SA
(IKE_AUTH) with a CP(CFG_REPLY): an address of each family the client asks for, leased from
``IkeConfig.address_pool`` (``twisted_rserpool.ike.addresspool``), the DNS servers of those
families (``dns_servers``), the protected subnets (``local_ts`` that are networks short of
the whole family) and, when asked, the netmask of the address's pool network. An
APPLICATION_VERSION request gets an empty string (RFC 7296 2.20 allows declining: the
version helps attackers more than clients). Unknown or malformed attributes are ignored
(3.15.1); CFG_SET is accepted for nothing (no CFG_ACK is sent, 3.15.1), CFG_REPLY and CFG_ACK
in a request are ignored. When the client asks for addresses and none can be assigned (the
pool is exhausted, or has no address of the families asked for), the CHILD_SA is refused with
INTERNAL_ADDRESS_FAILURE and the IKE SA stays (3.15.4). With a pool configured, a CHILD_SA of
an IKE SA holding no address is refused with FAILED_CP_REQUIRED (2.19): its traffic selectors
could otherwise claim another client's address. A CP(CFG_REQUEST) in an INFORMATIONAL
request is answered the same way (``answer_informational``, 3.15.4's retry and 2.20).

Our initiator asks for ``IkeConfig.request_addresses`` and keeps what the reply assigns.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Hashable, Sequence
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Interface, IPv6Network
from typing import TYPE_CHECKING

from twisted.logger import Logger

from twisted_rserpool.ike.codec import NotifyPayload, Payload, TrafficSelector
from twisted_rserpool.ike.codec.configuration import (
    ConfigurationAttribute,
    ConfigurationPayload,
    application_version,
    attribute_value,
    internal_address,
    internal_dns,
    internal_netmask,
    internal_subnet,
)
from twisted_rserpool.ike.constants import CfgType, ConfigAttributeType, NotifyType
from twisted_rserpool.ike.tasks.common import Refusal

if TYPE_CHECKING:
    from twisted_rserpool.ike.sa import IkeSa

__all__ = [
    "address_request",
    "answer_informational",
    "answer_request",
    "apply_reply",
    "lease_identity",
]

log = Logger()

IPAddress = IPv4Address | IPv6Address
_T = ConfigAttributeType
_ADDRESS = {_T.INTERNAL_IP4_ADDRESS: 4, _T.INTERNAL_IP6_ADDRESS: 6}
_DNS = {_T.INTERNAL_IP4_DNS: 4, _T.INTERNAL_IP6_DNS: 6}


def _value(attribute: ConfigurationAttribute) -> object:
    """The attribute's value, or None when it is empty, unknown or malformed (ignored)."""
    try:
        return attribute_value(attribute)
    except ValueError:
        return None


def _request(payloads: Sequence[Payload]) -> ConfigurationPayload | None:
    return next(
        (
            p
            for p in payloads
            if isinstance(p, ConfigurationPayload) and p.cfg_type == CfgType.CFG_REQUEST
        ),
        None,
    )


def lease_identity(sa: IkeSa, eap_identity: bytes = b"") -> Hashable:
    """Whom a lease belongs to: the EAP identity after EAP, else the IDi."""
    if eap_identity:
        return f"EAP {eap_identity.decode('utf-8', 'replace')}"
    return sa.peer_id


def _subnets(selectors: Sequence[TrafficSelector]) -> list[IPv4Network | IPv6Network]:
    """The protected networks among our selectors (ranges that are one network, not /0)."""
    found: list[IPv4Network | IPv6Network] = []
    for ts in selectors:
        if (ts.start_port, ts.end_port) != (0, 65535) or ts.ip_protocol:
            continue
        networks: list[IPv4Network | IPv6Network] = list(
            ipaddress.summarize_address_range(ts.start_address, ts.end_address)
        )
        if len(networks) == 1 and networks[0].prefixlen > 0:
            found.append(networks[0])
    return found


def answer_request(
    sa: IkeSa, payloads: Sequence[Payload], eap_identity: bytes = b""
) -> tuple[ConfigurationPayload | None, Refusal | None]:
    """Gateway: the CP(CFG_REPLY) for the CP(CFG_REQUEST) in ``payloads`` (None: none to
    send), or the Refusal of the CHILD_SA; leases land in ``sa.virtual_ips``."""
    config = sa.config
    request = _request(payloads)
    if request is None:
        return None, None
    wanted: dict[int, IPAddress | None] = {}
    dns_wanted: set[int] = set()
    netmask = version = False
    for attribute in request.attributes:
        kind = attribute.attribute_type
        value = _value(attribute)
        if kind in _ADDRESS:
            family = _ADDRESS[_T(kind)]
            requested = value.ip if isinstance(value, IPv6Interface) else value
            if family not in wanted or wanted[family] is None:
                wanted[family] = (
                    requested if isinstance(requested, IPv4Address | IPv6Address) else None
                )
        elif kind in _DNS:
            dns_wanted.add(_DNS[_T(kind)])
        elif kind == _T.INTERNAL_IP4_NETMASK:
            netmask = True
        elif kind == _T.APPLICATION_VERSION:
            version = True
    pool = config.address_pool
    leased: list[IPAddress] = []
    if pool is not None and wanted:
        owner = sa.lease_owner if sa.lease_owner is not None else lease_identity(sa, eap_identity)
        sa.lease_owner = owner
        for family, requested in sorted(wanted.items()):
            if family not in pool.families():
                continue  # RFC 7296 3.15.4: a family we do not serve is ignored
            address = pool.acquire(sa, owner, family, requested)
            if address is not None:
                leased.append(address)
                log.info(
                    "virtual IP {address} leased to {identity} at {peer}{asked}",
                    address=str(address),
                    identity=str(owner),
                    peer=sa.peer_address,
                    asked=f" (asked for {requested})" if requested is not None else "",
                )
        if not leased:
            return None, Refusal(
                NotifyType.INTERNAL_ADDRESS_FAILURE,
                f"no virtual IP for {owner}: the address pool has none left of IPv"
                + "/".join(str(f) for f in sorted(wanted)),
            )
    sa.virtual_ips = pool.held_by(sa) if pool is not None else ()
    families = {a.version for a in leased} | dns_wanted
    attributes: list[ConfigurationAttribute] = []
    for address in leased:
        network = pool.network_of(address) if pool is not None else None
        prefix = network.prefixlen if network is not None else address.max_prefixlen
        attributes.append(internal_address(address, prefix))
        if address.version == 4 and netmask and network is not None:
            attributes.append(internal_netmask(prefix))
    attributes += [internal_dns(d) for d in config.dns_servers if d.version in families]
    if leased:
        attributes += [internal_subnet(n) for n in _subnets(config.local_ts)]
    if version:
        attributes.append(application_version(""))
    if not attributes:
        return None, None
    return ConfigurationPayload(CfgType.CFG_REPLY, tuple(attributes)), None


def answer_informational(sa: IkeSa, payloads: Sequence[Payload]) -> list[Payload]:
    """Gateway: what answers a CP(CFG_REQUEST) in an INFORMATIONAL request (RFC 7296 2.20,
    3.15.4): the CFG_REPLY (an address leased now if the client had none, its addresses
    otherwise; an empty APPLICATION_VERSION), or N(INTERNAL_ADDRESS_FAILURE); [] without
    a request, or on the client side."""
    if sa.client or _request(payloads) is None:
        return []
    reply, refusal = answer_request(sa, payloads)
    if refusal is not None:
        log.info("{reason}", reason=refusal.reason)
        return [NotifyPayload(refusal.notify_type)]
    return [reply] if reply is not None else []


def address_request(sa: IkeSa) -> ConfigurationPayload | None:
    """Initiator: the CP(CFG_REQUEST) for ``config.request_addresses`` (None: no request)."""
    wanted = sa.config.request_addresses
    if not wanted:
        return None
    attributes: list[ConfigurationAttribute] = []
    for address in wanted:
        if address.is_unspecified:
            attributes.append(internal_address(None, version=address.version))
        else:
            attributes.append(internal_address(address))
        attributes.append(
            ConfigurationAttribute(
                _T.INTERNAL_IP4_DNS if address.version == 4 else _T.INTERNAL_IP6_DNS
            )
        )
    return ConfigurationPayload(CfgType.CFG_REQUEST, tuple(attributes))


def apply_reply(sa: IkeSa, payloads: Sequence[Payload]) -> str | None:
    """Initiator: take the addresses and DNS servers of the CP(CFG_REPLY) in ``payloads``;
    None, or why the reply is wrong (we asked for an address and got none)."""
    reply = next(
        (
            p
            for p in payloads
            if isinstance(p, ConfigurationPayload) and p.cfg_type == CfgType.CFG_REPLY
        ),
        None,
    )
    addresses: list[IPAddress] = []
    dns: list[IPAddress] = []
    for attribute in reply.attributes if reply is not None else ():
        value = _value(attribute)
        if attribute.attribute_type in _ADDRESS:
            if isinstance(value, IPv6Interface):
                addresses.append(value.ip)
            elif isinstance(value, IPv4Address):
                addresses.append(value)
        elif attribute.attribute_type in _DNS and isinstance(value, IPv4Address | IPv6Address):
            dns.append(value)
    sa.virtual_ips = tuple(addresses)
    sa.dns_servers = tuple(dns)
    if sa.config.request_addresses and not addresses:
        return "the responder assigned no virtual IP"
    return None
