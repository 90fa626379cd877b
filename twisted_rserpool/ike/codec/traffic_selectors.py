"""TSi and TSr payloads (RFC 7296 section 3.13)."""

from __future__ import annotations

import struct
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address
from typing import ClassVar

from twisted_rserpool.ike.codec.base import (
    DecodeLimits,
    _check_uint,
    _fail,
    _freeze,
    _PayloadBase,
)
from twisted_rserpool.ike.constants import (
    PayloadType,
    TsType,
)

__all__ = [
    "AnyTrafficSelector",
    "IPAddress",
    "TrafficSelector",
    "TsInitiatorPayload",
    "TsResponderPayload",
    "UnknownTrafficSelector",
]

_TS_HEAD = struct.Struct("!BBH")
_TS_PORTS = struct.Struct("!HH")


# --- Traffic selectors (RFC 7296 section 3.13) ----------------------------------------------

IPAddress = IPv4Address | IPv6Address


@dataclass(frozen=True, slots=True)
class TrafficSelector:
    """An address range with protocol and port range; IPv4 makes type 7, IPv6 type 8."""

    start_address: IPAddress
    end_address: IPAddress
    ip_protocol: int = 0
    start_port: int = 0
    end_port: int = 65535

    def __post_init__(self) -> None:
        if self.start_address.version != self.end_address.version:
            raise ValueError("start and end address of a traffic selector differ in family")
        _check_uint("IP protocol", self.ip_protocol, 8)
        _check_uint("start port", self.start_port, 16)
        _check_uint("end port", self.end_port, 16)

    @property
    def ts_type(self) -> TsType:
        """TS_IPV4_ADDR_RANGE or TS_IPV6_ADDR_RANGE, from the address family."""
        if self.start_address.version == 4:
            return TsType.TS_IPV4_ADDR_RANGE
        return TsType.TS_IPV6_ADDR_RANGE

    def encode(self) -> bytes:
        """The traffic selector substructure."""
        addresses = self.start_address.packed + self.end_address.packed
        return (
            _TS_HEAD.pack(self.ts_type, self.ip_protocol, 8 + len(addresses))
            + _TS_PORTS.pack(self.start_port, self.end_port)
            + addresses
        )


@dataclass(frozen=True, slots=True)
class UnknownTrafficSelector:
    """A traffic selector of a type this codec does not interpret, kept as its raw octets."""

    ts_type: int
    second_octet: int
    data: bytes

    def __post_init__(self) -> None:
        _check_uint("TS type", self.ts_type, 8)
        _check_uint("TS octet", self.second_octet, 8)

    def encode(self) -> bytes:
        """The traffic selector substructure."""
        length = 4 + len(self.data)
        if length > 0xFFFF:
            raise ValueError("traffic selector longer than 65535 octets")
        return _TS_HEAD.pack(self.ts_type, self.second_octet, length) + self.data


AnyTrafficSelector = TrafficSelector | UnknownTrafficSelector


def _encode_selectors(selectors: tuple[AnyTrafficSelector, ...]) -> bytes:
    if len(selectors) > 0xFF:
        raise ValueError("more than 255 traffic selectors")
    return bytes((len(selectors), 0, 0, 0)) + b"".join(s.encode() for s in selectors)


@dataclass(frozen=True, slots=True)
class TsInitiatorPayload(_PayloadBase):
    """TSi: the initiator's traffic selectors (RFC 7296 section 3.13)."""

    payload_type: ClassVar[PayloadType] = PayloadType.TSI
    selectors: tuple[AnyTrafficSelector, ...]
    critical: bool = False

    def __post_init__(self) -> None:
        _freeze(self, "selectors")

    def encode_body(self) -> bytes:
        return _encode_selectors(self.selectors)


@dataclass(frozen=True, slots=True)
class TsResponderPayload(_PayloadBase):
    """TSr: the responder's traffic selectors (RFC 7296 section 3.13)."""

    payload_type: ClassVar[PayloadType] = PayloadType.TSR
    selectors: tuple[AnyTrafficSelector, ...]
    critical: bool = False

    def __post_init__(self) -> None:
        _freeze(self, "selectors")

    def encode_body(self) -> bytes:
        return _encode_selectors(self.selectors)


_ADDRESS_SIZES = {TsType.TS_IPV4_ADDR_RANGE: 4, TsType.TS_IPV6_ADDR_RANGE: 16}


def _decode_selectors(body: bytes, limits: DecodeLimits) -> tuple[AnyTrafficSelector, ...]:
    if len(body) < 4:
        raise _fail("truncated traffic selector payload")
    count = body[0]
    if count > limits.max_traffic_selectors:
        raise _fail(f"{count} traffic selectors exceed the limit")
    selectors: list[AnyTrafficSelector] = []
    offset = 4
    end = len(body)
    for _ in range(count):
        if end - offset < 4:
            raise _fail("truncated traffic selector")
        ts_type, octet, length = _TS_HEAD.unpack_from(body, offset)
        if length < 4 or offset + length > end:
            raise _fail("traffic selector length out of bounds")
        size = _ADDRESS_SIZES.get(ts_type)
        if size is None:
            selectors.append(
                UnknownTrafficSelector(ts_type, octet, body[offset + 4 : offset + length])
            )
        else:
            if length != 8 + 2 * size:
                raise _fail("traffic selector length does not match its type")
            start_port, end_port = _TS_PORTS.unpack_from(body, offset + 4)
            first = body[offset + 8 : offset + 8 + size]
            last = body[offset + 8 + size : offset + length]
            if size == 4:
                start: IPAddress = IPv4Address(first)
                stop: IPAddress = IPv4Address(last)
            else:
                start = IPv6Address(first)
                stop = IPv6Address(last)
            selectors.append(TrafficSelector(start, stop, octet, start_port, end_port))
        offset += length
    if offset != end:
        raise _fail("traffic selector payload length does not match its selectors")
    return tuple(selectors)


def _decode_tsi(body: bytes, critical: bool, limits: DecodeLimits) -> TsInitiatorPayload:
    return TsInitiatorPayload(_decode_selectors(body, limits), critical)


def _decode_tsr(body: bytes, critical: bool, limits: DecodeLimits) -> TsResponderPayload:
    return TsResponderPayload(_decode_selectors(body, limits), critical)
