"""Builders shared by the handlespace tests."""

from __future__ import annotations

from ipaddress import IPv4Address

from twisted_rserpool.wire.parameters import (
    PoolElementParameter,
    SctpTransport,
    SelectionPolicy,
    TcpTransport,
    Transport,
    TransportUse,
    UdpTransport,
)

HOME = 0x11111111
PEER = 0x22222222


def tcp(port: int = 5000) -> TcpTransport:
    """A TCP user transport."""
    return TcpTransport(port, IPv4Address("192.0.2.1"))


def udp(port: int = 5000) -> UdpTransport:
    """A UDP user transport."""
    return UdpTransport(port, IPv4Address("192.0.2.1"))


def sctp(use: TransportUse = TransportUse.DATA_ONLY) -> SctpTransport:
    """An SCTP user transport with the given data/control use."""
    return SctpTransport(5000, (IPv4Address("192.0.2.1"), IPv4Address("198.51.100.1")), use)


def element(
    pe_identifier: int,
    policy: SelectionPolicy,
    *,
    home: int = HOME,
    life: int = 60,
    transport: Transport | None = None,
) -> PoolElementParameter:
    """A PE parameter with an ASAP transport, as a registrar stores it."""
    return PoolElementParameter(
        pe_identifier,
        home,
        life,
        transport if transport is not None else tcp(5000 + pe_identifier % 1000),
        policy,
        TcpTransport(3863, IPv4Address("192.0.2.1")),
    )
