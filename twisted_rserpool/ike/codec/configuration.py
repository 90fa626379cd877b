"""The CP payload (RFC 7296 section 3.15) and the values of its attributes (3.15.1).

``ConfigurationAttribute`` keeps an attribute's octets; ``attribute_value`` reads the value
of the attributes a remote access gateway uses (addresses, netmask, DNS servers, subnets,
the application version) and the ``internal_*`` functions build them.
"""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Interface, IPv6Network
from typing import ClassVar

from twisted_rserpool.ike.codec.base import (
    _U16U16,
    DecodeLimits,
    _check_uint,
    _fail,
    _freeze,
    _named,
    _PayloadBase,
)
from twisted_rserpool.ike.constants import (
    CfgType,
    ConfigAttributeType,
    PayloadType,
)

__all__ = [
    "AttributeValue",
    "ConfigurationAttribute",
    "ConfigurationPayload",
    "application_version",
    "attribute_value",
    "internal_address",
    "internal_dns",
    "internal_netmask",
    "internal_subnet",
]


# --- Configuration (RFC 7296 section 3.15) ---------------------------------------------------


@dataclass(frozen=True, slots=True)
class ConfigurationAttribute:
    """A configuration attribute: a 15-bit type and a value (empty in a request)."""

    attribute_type: int
    value: bytes = b""

    def __post_init__(self) -> None:
        _check_uint("configuration attribute type", self.attribute_type, 15)
        _check_uint("configuration attribute length", len(self.value), 16)

    def encode(self) -> bytes:
        """The attribute's octets."""
        return _U16U16.pack(self.attribute_type, len(self.value)) + self.value


@dataclass(frozen=True, slots=True)
class ConfigurationPayload(_PayloadBase):
    """CP: a request, reply, set or ack of configuration attributes (RFC 7296 section 3.15)."""

    payload_type: ClassVar[PayloadType] = PayloadType.CP
    cfg_type: int
    attributes: tuple[ConfigurationAttribute, ...] = ()
    critical: bool = False

    def __post_init__(self) -> None:
        _check_uint("CFG type", self.cfg_type, 8)
        _freeze(self, "attributes")

    def encode_body(self) -> bytes:
        return bytes((self.cfg_type, 0, 0, 0)) + b"".join(a.encode() for a in self.attributes)


def _decode_cp(body: bytes, critical: bool, limits: DecodeLimits) -> ConfigurationPayload:
    if len(body) < 4:
        raise _fail("truncated CP payload")
    attributes: list[ConfigurationAttribute] = []
    offset = 4
    end = len(body)
    while offset < end:
        if len(attributes) >= limits.max_config_attributes:
            raise _fail("too many configuration attributes")
        if end - offset < 4:
            raise _fail("truncated configuration attribute")
        kind, length = _U16U16.unpack_from(body, offset)
        offset += 4
        if end - offset < length:
            raise _fail("configuration attribute length exceeds the payload")
        attributes.append(
            ConfigurationAttribute(
                _named(ConfigAttributeType, kind & 0x7FFF), body[offset : offset + length]
            )
        )
        offset += length
    return ConfigurationPayload(_named(CfgType, body[0]), tuple(attributes), critical)


# --- attribute values (RFC 7296 section 3.15.1) ------------------------------------------

AttributeValue = IPv4Address | IPv6Address | IPv6Interface | IPv4Network | IPv6Network | str | None
"""What ``attribute_value`` reads: None for an empty attribute (a request for the value)."""

_T = ConfigAttributeType
_IP4_SINGLE = frozenset((_T.INTERNAL_IP4_ADDRESS, _T.INTERNAL_IP4_DNS, _T.INTERNAL_IP4_NETMASK))
_IP4_SERVERS = frozenset((_T.INTERNAL_IP4_NBNS, _T.INTERNAL_IP4_DHCP))
_IP6_SERVERS = frozenset((_T.INTERNAL_IP6_DNS, _T.INTERNAL_IP6_DHCP))


def attribute_value(attribute: ConfigurationAttribute) -> AttributeValue:
    """The value of an attribute of a known type; None when it is empty.

    IPv4 addresses (address, netmask, DNS, NBNS, DHCP) are ``IPv4Address``; an
    INTERNAL_IP6_ADDRESS is an ``IPv6Interface`` (address and prefix length), the IPv6
    servers ``IPv6Address``; subnets are networks (host bits of INTERNAL_IP4_SUBNET's
    address dropped, an INTERNAL_IP6_SUBNET's too); APPLICATION_VERSION is text. Raises
    ValueError for an unknown type or a value of the wrong length or form (the caller
    ignores such an attribute, RFC 7296 3.15.1).
    """
    kind, value = attribute.attribute_type, attribute.value
    if not value:
        if kind not in set(_T) or kind == _T.INTERNAL_IP6_SUBNET:
            raise ValueError(f"configuration attribute {kind} has no value to read")
        return None
    if kind in _IP4_SINGLE or kind in _IP4_SERVERS:
        if len(value) != 4:
            raise ValueError(f"{_T(kind).name} of {len(value)} octets")
        return IPv4Address(value)
    if kind in _IP6_SERVERS:
        if len(value) != 16:
            raise ValueError(f"{_T(kind).name} of {len(value)} octets")
        return IPv6Address(value)
    if kind in (_T.INTERNAL_IP6_ADDRESS, _T.INTERNAL_IP6_SUBNET):
        if len(value) != 17 or value[16] > 128:
            raise ValueError(f"{_T(kind).name} of {len(value)} octets or prefix over 128")
        address = IPv6Address(value[:16])
        if kind == _T.INTERNAL_IP6_ADDRESS:
            return IPv6Interface((address, value[16]))
        return IPv6Network((address, value[16]), strict=False)
    if kind == _T.INTERNAL_IP4_SUBNET:
        if len(value) != 8:
            raise ValueError(f"INTERNAL_IP4_SUBNET of {len(value)} octets")
        netmask = IPv4Address(value[4:])
        return IPv4Network((IPv4Address(value[:4]), str(netmask)), strict=False)
    if kind == _T.APPLICATION_VERSION:
        text = value.decode("ascii", "strict")
        if not text.isprintable():
            raise ValueError("APPLICATION_VERSION is not printable ASCII")
        return text
    raise ValueError(f"configuration attribute {kind} is not read")


def internal_address(
    address: IPv4Address | IPv6Address | None, prefix_length: int = 128, *, version: int = 4
) -> ConfigurationAttribute:
    """INTERNAL_IP4_ADDRESS or INTERNAL_IP6_ADDRESS (with ``prefix_length``); None is the
    empty attribute of a request for any address of ``version``."""
    if address is None:
        kind = _T.INTERNAL_IP4_ADDRESS if version == 4 else _T.INTERNAL_IP6_ADDRESS
        return ConfigurationAttribute(kind)
    if isinstance(address, IPv4Address):
        return ConfigurationAttribute(_T.INTERNAL_IP4_ADDRESS, address.packed)
    if not 0 <= prefix_length <= 128:
        raise ValueError("an IPv6 prefix length is 0 to 128")
    return ConfigurationAttribute(_T.INTERNAL_IP6_ADDRESS, address.packed + bytes((prefix_length,)))


def internal_netmask(prefix_length: int) -> ConfigurationAttribute:
    """INTERNAL_IP4_NETMASK of a /``prefix_length`` network."""
    mask = IPv4Network((0, prefix_length)).netmask
    return ConfigurationAttribute(_T.INTERNAL_IP4_NETMASK, mask.packed)


def internal_dns(address: IPv4Address | IPv6Address) -> ConfigurationAttribute:
    """INTERNAL_IP4_DNS or INTERNAL_IP6_DNS."""
    kind = _T.INTERNAL_IP4_DNS if address.version == 4 else _T.INTERNAL_IP6_DNS
    return ConfigurationAttribute(kind, address.packed)


def internal_subnet(network: IPv4Network | IPv6Network) -> ConfigurationAttribute:
    """INTERNAL_IP4_SUBNET (address and netmask) or INTERNAL_IP6_SUBNET (address, prefix)."""
    if isinstance(network, IPv4Network):
        return ConfigurationAttribute(
            _T.INTERNAL_IP4_SUBNET, network.network_address.packed + network.netmask.packed
        )
    return ConfigurationAttribute(
        _T.INTERNAL_IP6_SUBNET,
        network.network_address.packed + bytes((network.prefixlen,)),
    )


def application_version(text: str) -> ConfigurationAttribute:
    """APPLICATION_VERSION: printable ASCII, not NUL terminated (RFC 7296 3.15.1)."""
    if not (text.isascii() and (text.isprintable() or not text)):
        raise ValueError("APPLICATION_VERSION must be printable ASCII")
    return ConfigurationAttribute(_T.APPLICATION_VERSION, text.encode("ascii"))
