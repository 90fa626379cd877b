"""ESP SAs built from negotiated CHILD_SAs: round trips for every suite, every kind of bad
packet dropped and counted by reason (never an exception), dummy and TFC padding, ESN across
2^32, sequence-number exhaustion, and the SA database."""

from __future__ import annotations

import struct

import pytest

from twisted_rserpool.esp import (
    Dropped,
    DropReason,
    EspSa,
    EspSad,
    Received,
    RekeyRequired,
    Sealed,
    SequenceExhausted,
)
from twisted_rserpool.ike.proposals import ChildSuite

from .support import CBC256_SHA512, CHACHA, GCM128, SUITES, child_pair, esp_pair, ipv4, ipv6

M32 = 1 << 32


def sealed(sa: EspSa, packet: bytes, **kwargs: int) -> bytes:
    """``sa.seal`` that must succeed."""
    result = sa.seal(packet, 1.0, **kwargs)
    assert isinstance(result, bytes), result
    return result


def dropped(result: object, reason: DropReason) -> None:
    """``result`` is a drop for ``reason``."""
    assert isinstance(result, Dropped), result
    assert result.reason is reason


@pytest.mark.parametrize("suite", SUITES, ids=str)
def test_round_trip_every_suite(suite: ChildSuite) -> None:
    """IPv4 and IPv6 packets of many lengths go both ways; counters count inner octets."""
    client, gateway = esp_pair(suite)
    packets = [ipv4(payload=b"\x30\x39\x00\x35" + bytes(n)) for n in range(0, 40)]
    packets += [ipv6(payload=b"\x30\x39\x00\x50" + bytes(n)) for n in (0, 1, 15, 16, 1300)]
    for packet in packets:
        assert gateway.open(sealed(client, packet), 2.0) == packet
        reply = packet[:12] + packet[16:20] + packet[12:16] + packet[20:]
        if packet[0] >> 4 == 6:
            reply = packet[:8] + packet[24:40] + packet[8:24] + packet[40:]
            reply = reply[:40] + b"\x00\x50\x30\x39" + reply[44:]
        else:
            reply = reply[:20] + b"\x00\x35\x30\x39" + reply[24:]
        assert client.open(sealed(gateway, reply), 2.0) == reply
    total = sum(map(len, packets))
    assert client.counters.packets_out == gateway.counters.packets_in == len(packets)
    assert client.counters.bytes_out == gateway.counters.bytes_in == total
    assert gateway.counters.last_in == 2.0 and client.counters.last_out == 1.0
    assert gateway.counters.drops == {}


@pytest.mark.parametrize("suite", [GCM128, CHACHA, CBC256_SHA512], ids=str)
def test_keys_and_spis_follow_the_exchange_roles(suite: ChildSuite) -> None:
    """The initiator sends with the responder's SPI and the ``*_i`` keys: a packet the
    client sealed opens only on the gateway, not looped back to the client."""
    client, gateway = esp_pair(suite)
    packet = sealed(client, ipv4())
    assert packet[:4] == gateway.inbound.spi == client.outbound.spi
    assert client.inbound.spi != gateway.inbound.spi
    other = EspSa.from_child(child_pair(suite)[1])
    reflected = client.inbound.spi + packet[4:]
    dropped(client.open(reflected, 0.0), DropReason.ICV)
    assert isinstance(other.open(packet, 0.0), bytes)


@pytest.mark.parametrize("suite", [GCM128, CBC256_SHA512], ids=str)
def test_every_truncation_and_every_bit_flip_is_dropped(suite: ChildSuite) -> None:
    """Each prefix of a packet, and the packet with any one bit flipped, is dropped and
    counted (too short, bad ICV, replay or too old for a flipped Sequence Number); the
    untouched packet still opens afterwards."""
    client, gateway = esp_pair(suite)
    packet = sealed(client, ipv4())
    for cut in range(len(packet)):
        result = gateway.inbound.open(packet[:cut], 0.0)
        assert isinstance(result, Dropped)
        assert result.reason in (DropReason.TRUNCATED, DropReason.ICV)
    for position in range(4, len(packet)):
        for bit in range(8):
            forged = bytearray(packet)
            forged[position] ^= 1 << bit
            result = gateway.open(bytes(forged), 0.0)
            assert isinstance(result, Dropped)
            assert result.reason in (DropReason.ICV, DropReason.TOO_OLD, DropReason.REPLAY)
    drops = gateway.counters.drops
    assert sum(drops.values()) == len(packet) + (len(packet) - 4) * 8
    assert drops["icv"] > 0 and drops["truncated"] > 0
    before = drops.get("replay", 0)  # the flip of sequence number 1 to 0
    assert gateway.open(packet, 0.0) == ipv4()
    dropped(gateway.open(packet, 0.0), DropReason.REPLAY)
    assert gateway.counters.drops["replay"] == before + 1


def _forge(sa: EspSa, plaintext: bytes) -> bytes:
    """An authentic packet from ``sa``'s side whose plaintext (padding and trailer included)
    is chosen freely: what a buggy or hostile peer holding the keys could send."""
    sequence = sa.outbound.sequence = sa.outbound.sequence + 1
    header = sa.outbound.spi + struct.pack(">L", sequence)
    return sa.outbound.cipher.seal(header, sequence, plaintext)


@pytest.mark.parametrize("suite", [GCM128, CHACHA], ids=str)
def test_authentic_but_malformed_payloads(suite: ChildSuite) -> None:
    """After a verified ICV: wrong padding octets, a Pad Length beyond the plaintext, a
    transport-mode Next Header, a Next Header that does not match the inner version, an
    inner length beyond the payload: each dropped and counted by its reason, and the window
    moved (RFC 4303 3.4.3)."""
    client, gateway = esp_pair(suite)
    inner = ipv4()  # 32 octets: + 2 -> pad 2
    cases = [
        (inner + b"\x01\x03\x02\x04", DropReason.BAD_PADDING),
        (inner + b"\x00\x00\x02\x04", DropReason.BAD_PADDING),
        (inner[:2] + b"\xff\x04", DropReason.BAD_PADDING),
        (inner + b"\x01\x02\x02\x06", DropReason.NEXT_HEADER),
        (inner + b"\x01\x02\x02\x29", DropReason.BAD_INNER),
        (inner[:2] + b"\x0f\xff" + inner[4:] + b"\x01\x02\x02\x04", DropReason.BAD_INNER),
        (b"\x01\x02\x02\x04", DropReason.BAD_INNER),  # padding only, no packet
        (b"\x00\x04", DropReason.BAD_INNER),
    ]
    for plaintext, reason in cases:
        dropped(gateway.open(_forge(client, plaintext), 0.0), reason)
    assert gateway.inbound.window.highest == len(cases)
    assert gateway.counters.packets_in == 0
    assert sum(gateway.counters.drops.values()) == len(cases)


@pytest.mark.parametrize("suite", [GCM128, CBC256_SHA512], ids=str)
def test_dummy_packets_are_dropped_and_counted(suite: ChildSuite) -> None:
    """Next Header 59 packets (any length, also with a random-looking payload) are
    discarded without error, counted as dummies, not as drops (RFC 4303 2.6)."""
    client, gateway = esp_pair(suite)
    for length in (0, 1, 100):
        dummy = client.outbound.seal_dummy(1.0, length)
        assert isinstance(dummy, bytes)
        dropped(gateway.open(dummy, 2.0), DropReason.DUMMY)
    # A dummy's payload need not be well-formed (2.6): 30 octets, pad length 0, 59.
    dropped(gateway.open(_forge(client, b"\xa5" * 30 + b"\x00\x3b"), 2.0), DropReason.DUMMY)
    assert gateway.counters.dummy_in == 4 and client.counters.dummy_out == 3
    assert gateway.counters.drops == {} and gateway.counters.packets_in == 0
    assert gateway.open(sealed(client, ipv4()), 2.0) == ipv4()


@pytest.mark.parametrize("suite", [GCM128, CBC256_SHA512], ids=str)
def test_tfc_padding_is_ignored(suite: ChildSuite) -> None:
    """TFC padding after the inner packet is cut off by the inner packet's own length."""
    client, gateway = esp_pair(suite)
    for inner in (ipv4(), ipv6()):
        plain = sealed(client, inner)
        padded = sealed(client, inner, tfc_padding=500)
        assert len(padded) - len(plain) > 500 - 16  # less the padding it replaces
        assert gateway.open(padded, 0.0) == inner
    assert gateway.counters.bytes_in == len(ipv4()) + len(ipv6())


def test_outbound_refuses_what_is_not_ip() -> None:
    """An empty or non-IP packet is not sealed (counted), and uses no sequence number."""
    client, _ = esp_pair(GCM128)
    dropped(client.seal(b"", 0.0), DropReason.BAD_INNER)
    dropped(client.seal(b"\x10" * 40, 0.0), DropReason.BAD_INNER)
    assert client.outbound.sequence == 0 and client.counters.drops == {"bad_inner": 2}


@pytest.mark.parametrize("suite", [GCM128, CBC256_SHA512], ids=str)
def test_esn_across_2_32(suite: ChildSuite) -> None:
    """With ESN, a sender crossing 2^32 keeps going; the receiver infers the high bits (its
    window a few packets behind, as after that much traffic), including a late packet from
    below 2^32 that arrives after the crossing."""
    esn = ChildSuite(suite.encryption, suite.key_bits, suite.integrity, esn=True)
    client, gateway = esp_pair(esn)
    client.outbound.sequence = M32 - 4
    gateway.inbound.window.accept(M32 - 4)
    packets = [sealed(client, ipv4()) for _ in range(8)]  # M32 - 3 .. M32 + 4
    assert [struct.unpack(">L", p[4:8])[0] for p in packets[2:5]] == [M32 - 1, 0, 1]
    late = packets.pop(1)  # sequence M32 - 2
    for packet in packets:
        assert gateway.open(packet, 0.0) == ipv4()
    assert gateway.inbound.window.highest == M32 + 4
    assert gateway.open(late, 0.0) == ipv4()
    dropped(gateway.open(late, 0.0), DropReason.REPLAY)
    # The same low 32 bits one subspace later fail the ICV: the high bits are authenticated.
    replayed = packets[3]  # low bits 0 at 2^32
    gateway.inbound.window.accept(2 * M32 - 10)
    dropped(gateway.open(replayed, 0.0), DropReason.ICV)


def test_without_esn_the_sender_stops_at_2_32_minus_1() -> None:
    """The soft limit queues RekeyRequired once; 2^32 - 1 is the last number sent; after it
    every packet is refused and counted, SequenceExhausted queued once."""
    client, gateway = esp_pair(GCM128)
    out = client.outbound
    assert out.hard_limit == M32 - 1 and out.soft_limit == M32 - 1 - (M32 - 1) // 16
    out.sequence = out.soft_limit - 2
    sealed(client, ipv4())
    assert client.take_events() == []
    sealed(client, ipv4())
    sealed(client, ipv4())
    assert client.take_events() == [RekeyRequired(out.spi, out.soft_limit)]
    out.sequence = M32 - 2
    last = sealed(client, ipv4())
    assert last[4:8] == b"\xff\xff\xff\xff"
    for _ in range(3):
        dropped(client.seal(ipv4(), 0.0), DropReason.SEQUENCE_EXHAUSTED)
    dropped(client.outbound.seal_dummy(0.0), DropReason.SEQUENCE_EXHAUSTED)
    assert client.take_events() == [SequenceExhausted(out.spi, M32 - 1)]
    assert client.counters.drops == {"sequence_exhausted": 4}
    gateway.inbound.window.accept(M32 - 3)
    assert gateway.open(last, 0.0) == ipv4()


def test_soft_limit_is_configurable() -> None:
    """``EspSa.from_child(soft_limit=n)``: the rekey request comes at packet n."""
    client_child, _ = child_pair(CHACHA)
    sa = EspSa.from_child(client_child, soft_limit=3)
    for _ in range(2):
        sealed(sa, ipv4())
    assert sa.take_events() == []
    sealed(sa, ipv4())
    assert sa.take_events() == [RekeyRequired(sa.outbound.spi, 3)]
    with pytest.raises(ValueError, match="soft limit"):
        EspSa.from_child(client_child, soft_limit=0)


def test_inbound_selectors() -> None:
    """A decrypted packet from outside the peer's selectors, or to outside ours, is dropped
    and counted (RFC 4301 5.2); so is one that is not IP at all."""
    client, gateway = esp_pair(GCM128)
    outside = [
        ipv4(source="10.9.0.1"),
        ipv4(destination="10.1.0.9"),
        ipv6(source="2001:db8:9::1"),
    ]
    for packet in outside:
        # The client's outbound check would refuse them; a hostile client skips it.
        assert not client.covers(packet)
        dropped(gateway.open(sealed(client, packet), 0.0), DropReason.SELECTOR)
    assert gateway.counters.drops == {"selector": 3} and gateway.counters.packets_in == 0
    assert gateway.open(sealed(client, ipv4()), 0.0) == ipv4()


def test_transport_mode_is_refused() -> None:
    """Only tunnel mode is implemented."""
    client, _ = child_pair(GCM128)
    from dataclasses import replace

    with pytest.raises(ValueError, match="tunnel"):
        EspSa.from_child(replace(client, transport_mode=True))


def test_max_inner_length_fits_the_mtu() -> None:
    """The longest inner packet ``max_inner_length`` allows makes an outer packet of at most
    the MTU; one block more would not fit."""
    for suite in (GCM128, CBC256_SHA512):
        client, _ = esp_pair(suite)
        for ipv6_outer, udp in ((False, True), (True, False)):
            limit = client.outbound.max_inner_length(1500, ipv6=ipv6_outer, udp=udp)
            outer = (40 if ipv6_outer else 20) + (8 if udp else 0)
            fits = sealed(client, ipv4(payload=bytes(limit - 20)))
            assert len(fits) + outer <= 1500
            block = client.outbound.cipher.block_size
            over = sealed(client, ipv4(payload=bytes(limit - 20 + block)))
            assert len(over) + outer > 1500


def test_sad_demultiplexes_and_prefers_the_newest() -> None:
    """Inbound by SPI (unknown SPIs and runts counted by the database); outbound the newest
    SA whose selectors match (a rekeyed CHILD_SA takes over; the old one still receives);
    nothing matching is counted as no_sa."""
    sad = EspSad()
    client, gateway = esp_pair(GCM128)
    sad.add(gateway)
    received = sad.receive(sealed(client, ipv4()), 0.0)
    assert isinstance(received, Received) and received.sa is gateway
    dropped(sad.receive(b"\x99\x99\x99\x99" + bytes(40), 0.0), DropReason.UNKNOWN_SPI)
    dropped(sad.receive(b"\x01", 0.0), DropReason.TRUNCATED)
    with pytest.raises(ValueError, match="already installed"):
        sad.add(EspSa.from_child(child_pair(CHACHA)[1]))
    new_client, new_gateway = (
        EspSa.from_child(c)
        for c in child_pair(CHACHA, seed=b"rekeyed", spis=(b"\xd0\0\0\1", b"\xd0\0\0\2"))
    )
    sad.add(new_gateway)
    assert sad.get(new_gateway.inbound.spi) is new_gateway
    assert isinstance(sad.receive(sealed(client, ipv4()), 0.0), Received)  # old still receives
    reply = ipv4(source="10.2.0.7", destination="10.1.0.5")
    sent = sad.send(reply, 0.0)
    assert isinstance(sent, Sealed) and sent.sa is new_gateway
    assert new_client.open(sent.datagram, 0.0) == reply
    dropped(sad.send(ipv4(source="10.3.0.1", destination="10.1.0.5"), 0.0), DropReason.NO_SA)
    assert sad.counters == {"unknown_spi": 1, "truncated": 1, "no_sa": 1}
    assert list(sad) == [new_gateway, gateway] and len(sad) == 2
    sad.remove(gateway)
    assert list(sad) == [new_gateway] and sad.get(gateway.inbound.spi) is None
