"""Inner packets: lengths, selector fields (ports, ICMP type/code, IPv6 extension headers,
OPAQUE fragments), and the traffic-selector checks both ways."""

from __future__ import annotations

import struct

from twisted_rserpool.esp import Selectors, inner_length, parse_inner
from twisted_rserpool.ike.child import selector_from_network
from twisted_rserpool.ike.codec import TrafficSelector

from .support import CLIENT_TS, GATEWAY_TS, address, ipv4, ipv6


def test_lengths() -> None:
    """IPv4 Total Length; 40 + IPv6 Payload Length; None for what is not an IP header."""
    assert inner_length(ipv4()) == 32
    assert inner_length(ipv6()) == 60
    assert inner_length(ipv4()[:19]) is None
    assert inner_length(b"\x45\x00\x00\x10" + bytes(16)) is None  # shorter than its header
    assert inner_length(b"\x70" + bytes(40)) is None


def test_ipv4_fields() -> None:
    """Addresses, protocol and ports of UDP/TCP; ICMP type/code as one port; a non-initial
    fragment has OPAQUE ports."""
    udp = parse_inner(ipv4())
    assert udp is not None
    assert (udp.version, udp.source, udp.destination, udp.protocol) == (
        4,
        address("10.1.0.5"),
        address("10.2.0.7"),
        17,
    )
    assert (udp.source_port, udp.destination_port) == (12345, 53)
    icmp = parse_inner(ipv4(protocol=1, payload=b"\x08\x00\x00\x00\x00\x01\x00\x01"))
    assert icmp is not None and icmp.source_port == icmp.destination_port == 0x0800
    fragment = parse_inner(ipv4(flags_fragment=0x2000 | 185))
    assert fragment is not None and fragment.source_port is None
    first = parse_inner(ipv4(flags_fragment=0x2000))  # more fragments, offset 0: ports known
    assert first is not None and first.source_port == 12345
    assert parse_inner(ipv4(payload=b"\x00")) is not None
    assert parse_inner(ipv4(payload=b"\x00")).source_port is None  # type: ignore[union-attr]
    assert parse_inner(b"\x00" * 40) is None


def test_ipv6_extension_headers() -> None:
    """Hop-by-Hop and Destination Options are walked to the TCP header; a non-initial
    Fragment header makes ports OPAQUE, an initial one does not."""
    tcp = b"\x01\xbb\x00\x50" + bytes(16)
    hop_by_hop = bytes((60, 0)) + bytes(6)  # next: Destination Options
    destination = bytes((6, 0)) + bytes(6)  # next: TCP
    packet = parse_inner(ipv6(next_header=0, payload=hop_by_hop + destination + tcp))
    assert packet is not None
    assert (packet.protocol, packet.source_port, packet.destination_port) == (6, 443, 80)
    later = parse_inner(
        ipv6(next_header=44, payload=bytes((6, 0)) + struct.pack(">H", 8 << 3) + bytes(4) + tcp)
    )
    assert later is not None and later.protocol == 6 and later.source_port is None
    initial = parse_inner(ipv6(next_header=44, payload=bytes((6, 0, 0, 1)) + bytes(4) + tcp))
    assert initial is not None and initial.source_port == 443
    cut = parse_inner(ipv6(next_header=0, payload=b"\x06\x00"))
    assert cut is not None and cut.source_port is None


def test_selectors_both_ways() -> None:
    """Outbound from the client: source in its selectors, destination in the gateway's;
    inbound at the gateway the same packet is checked the other way round."""
    client = Selectors(CLIENT_TS, GATEWAY_TS)
    gateway = Selectors(GATEWAY_TS, CLIENT_TS)
    for raw in (ipv4(), ipv6()):
        packet = parse_inner(raw)
        assert packet is not None
        assert client.outbound(packet) and gateway.inbound(packet)
        assert not client.inbound(packet) and not gateway.outbound(packet)
    stray = parse_inner(ipv4(destination="192.168.1.1"))
    assert stray is not None and not client.outbound(stray)


def test_protocol_and_port_ranges() -> None:
    """A selector for UDP port 53 only: the DNS query matches, TCP or another port does not;
    an OPAQUE fragment matches only an all-ports selector; ICMP echo requests match a
    selector for type 8 (any code) only."""
    gateway_net = selector_from_network("10.2.0.0/16")
    dns = TrafficSelector(gateway_net.start_address, gateway_net.end_address, 17, 53, 53)
    selectors = Selectors(CLIENT_TS, (dns,))
    assert selectors.outbound(parse_inner(ipv4()))  # type: ignore[arg-type]
    assert not selectors.outbound(parse_inner(ipv4(protocol=6)))  # type: ignore[arg-type]
    other_port = ipv4(payload=b"\x30\x39\x00\x36" + bytes(8))
    assert not selectors.outbound(parse_inner(other_port))  # type: ignore[arg-type]
    fragment = parse_inner(ipv4(flags_fragment=100))
    assert fragment is not None and not selectors.outbound(fragment)
    assert Selectors(CLIENT_TS, GATEWAY_TS).outbound(fragment)
    echo = TrafficSelector(dns.start_address, dns.end_address, 1, 0x0800, 0x08FF)
    icmp = Selectors(CLIENT_TS, (echo,))
    request = parse_inner(ipv4(protocol=1, payload=b"\x08\x00" + bytes(6)))
    reply = parse_inner(ipv4(protocol=1, payload=b"\x00\x00" + bytes(6)))
    assert request is not None and reply is not None
    assert icmp.outbound(request) and not icmp.outbound(reply)
