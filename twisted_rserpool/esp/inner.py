"""Inner (tunnel-mode) IP packets: their length, their selector fields, and whether a CHILD_SA's
traffic selectors cover them (RFC 4301 4.4.1, RFC 7296 2.9 and 3.13.1), without I/O.

``inner_length`` is what lets a receiver drop TFC padding (RFC 4303 2.7): the IPv4 Total
Length or 40 plus the IPv6 Payload Length. ``parse_inner`` reads the selector fields: source
and destination address, the upper-layer protocol (after IPv6 extension headers), and the
ports for TCP, UDP, SCTP and UDP-Lite, or ICMP's type and code as one 16-bit "port" (type in
the high octet, RFC 4301 4.4.1.1 and RFC 7296 3.13.1). Non-initial fragments and headers cut
short have OPAQUE ports: they match only selectors allowing every port (RFC 4301 4.4.1.1, 7).

``Selectors`` holds a CHILD_SA's local and remote selectors as integer ranges; outbound a
packet must come from a local selector and go to a remote one, inbound the reverse. For
ICMP, whose type/code is one selector, both sides' port ranges must allow it.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from typing import NamedTuple

from twisted_rserpool.ike.codec import TrafficSelector

__all__ = ["InnerPacket", "Selectors", "inner_length", "parse_inner"]

_H = struct.Struct(">H")
_PORTS = struct.Struct(">HH")
# IPv4: flags and fragment offset, protocol, source, destination (one unpack per packet).
_IPV4 = struct.Struct(">6xH1xB2xLL")
# IPv6: next header, then each address as two 64-bit halves.
_IPV6 = struct.Struct(">6xB1xQQQQ")
# Upper-layer protocols whose first four octets are source and destination port.
_PORT_PROTOCOLS = frozenset((6, 17, 132, 136))
_ICMP = frozenset((1, 58))
# IPv6 extension headers walked to find the upper-layer protocol (RFC 8200 4.1): Hop-by-Hop,
# Routing, Destination Options; Fragment (44) is handled apart.
_IPV6_EXTENSIONS = frozenset((0, 43, 60))
_IPV6_FRAGMENT = 44
_MAX_EXTENSIONS = 8


def inner_length(packet: bytes) -> int | None:
    """The length the IPv4 or IPv6 header of ``packet`` claims, or None if it has none."""
    if len(packet) < 20:
        return None
    version = packet[0] >> 4
    if version == 4:
        length = packet[2] << 8 | packet[3]
        return length if length >= 20 and length >= (packet[0] & 0xF) * 4 else None
    if version == 6 and len(packet) >= 40:
        # (A jumbogram's zero Payload Length reads as no payload: none fits in ESP anyway.)
        return 40 + (packet[4] << 8 | packet[5])
    return None


class InnerPacket(NamedTuple):
    """The selector fields of an inner packet; ports are None when OPAQUE."""

    version: int
    source: int
    destination: int
    protocol: int
    source_port: int | None
    destination_port: int | None


def parse_inner(packet: bytes) -> InnerPacket | None:
    """The selector fields of an IPv4 or IPv6 packet, or None if it is not one."""
    length = len(packet)
    if length < 20:
        return None
    version = packet[0] >> 4
    if version == 4:
        header = (packet[0] & 0xF) * 4
        if header < 20 or header > length:
            return None
        fragment, protocol, source, destination = _IPV4.unpack_from(packet)
        offset = header if fragment & 0x1FFF == 0 else None
    elif version == 6:
        if length < 40:
            return None
        next_header, s_high, s_low, d_high, d_low = _IPV6.unpack_from(packet)
        source = s_high << 64 | s_low
        destination = d_high << 64 | d_low
        protocol, offset = _upper_layer(packet, next_header, 40)
    else:
        return None
    source_port = destination_port = None
    if offset is not None and offset + 4 <= length:
        if protocol in _PORT_PROTOCOLS:
            source_port, destination_port = _PORTS.unpack_from(packet, offset)
        elif protocol in _ICMP:
            source_port = destination_port = _H.unpack_from(packet, offset)[0]
    return InnerPacket(version, source, destination, protocol, source_port, destination_port)


def _upper_layer(packet: bytes, next_header: int, offset: int) -> tuple[int, int | None]:
    """(upper-layer protocol, its offset or None when OPAQUE) after IPv6 extension headers."""
    length = len(packet)
    for _ in range(_MAX_EXTENSIONS):
        if next_header in _IPV6_EXTENSIONS:
            if offset + 8 > length:
                return next_header, None
            next_header, offset = packet[offset], offset + (packet[offset + 1] + 1) * 8
        elif next_header == _IPV6_FRAGMENT:
            if offset + 8 > length:
                return next_header, None
            fragment = _H.unpack_from(packet, offset + 2)[0] >> 3
            next_header, offset = packet[offset], offset + 8
            if fragment:
                return next_header, None
        else:
            return next_header, offset
    return next_header, None


# (version, first address, last address, protocol or 0, first port, last port)
_Range = tuple[int, int, int, int, int, int]


def _ranges(selectors: Iterable[TrafficSelector]) -> tuple[_Range, ...]:
    return tuple(
        (
            ts.start_address.version,
            int(ts.start_address),
            int(ts.end_address),
            ts.ip_protocol,
            ts.start_port,
            ts.end_port,
        )
        for ts in selectors
        if isinstance(ts, TrafficSelector)
    )


def _allows(
    ranges: tuple[_Range, ...], version: int, address: int, protocol: int, port: int | None
) -> bool:
    for v, first, last, proto, low, high in ranges:
        if v != version or not first <= address <= last or (proto and proto != protocol):
            continue
        if port is None:
            if low == 0 and high == 65535:
                return True
        elif low <= port <= high:
            return True
    return False


class Selectors:
    """A CHILD_SA's traffic selectors, ready for per-packet checks."""

    __slots__ = ("local", "remote")

    def __init__(self, local: Iterable[TrafficSelector], remote: Iterable[TrafficSelector]) -> None:
        self.local = _ranges(local)
        self.remote = _ranges(remote)

    def outbound(self, packet: InnerPacket) -> bool:
        """Whether ``packet`` (from our side) may leave through this CHILD_SA."""
        return _allows(
            self.local, packet.version, packet.source, packet.protocol, packet.source_port
        ) and _allows(
            self.remote,
            packet.version,
            packet.destination,
            packet.protocol,
            packet.destination_port,
        )

    def inbound(self, packet: InnerPacket) -> bool:
        """Whether ``packet`` (from the peer's side) may arrive through this CHILD_SA."""
        return _allows(
            self.remote, packet.version, packet.source, packet.protocol, packet.source_port
        ) and _allows(
            self.local,
            packet.version,
            packet.destination,
            packet.protocol,
            packet.destination_port,
        )
