"""Hypothesis against the inbound decoder: arbitrary datagrams never raise and are never
delivered; any change to a genuine packet is refused; round trips hold for every suite."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from twisted_rserpool.esp import Dropped, EspSad, Received
from twisted_rserpool.ike.proposals import ChildSuite

from .support import SPI_R, SUITES, esp_pair, ipv4, ipv6

suites = st.sampled_from(SUITES)


@settings(max_examples=300)
@given(suite=suites, body=st.binary(max_size=200), known_spi=st.booleans())
def test_arbitrary_datagrams_are_dropped(suite: ChildSuite, body: bytes, known_spi: bool) -> None:
    """Random octets (with the SA's SPI or without) are always a counted drop."""
    _, gateway = esp_pair(suite)
    sad = EspSad()
    sad.add(gateway)
    datagram = SPI_R + body if known_spi else body
    result = sad.receive(datagram, 0.0)
    assert isinstance(result, Dropped)
    assert sum(gateway.counters.drops.values()) + sum(sad.counters.values()) == 1


@settings(max_examples=300)
@given(
    suite=suites,
    data=st.data(),
    payload=st.binary(max_size=64),
)
def test_forgeries_are_never_accepted(
    suite: ChildSuite, data: st.DataObject, payload: bytes
) -> None:
    """A genuine packet with octets changed, cut or appended is refused; the genuine one is
    then still accepted (the forgery moved no window)."""
    client, gateway = esp_pair(suite)
    inner = ipv4(payload=b"\x30\x39\x00\x35" + payload)
    packet = client.seal(inner, 0.0)
    assert isinstance(packet, bytes)
    forged = bytearray(packet)
    for _ in range(data.draw(st.integers(min_value=1, max_value=4))):
        kind = data.draw(st.sampled_from(["flip", "cut", "append"]))
        if kind == "flip" and forged:
            position = data.draw(st.integers(min_value=0, max_value=len(forged) - 1))
            forged[position] ^= data.draw(st.integers(min_value=1, max_value=255))
        elif kind == "cut" and forged:
            forged = forged[: data.draw(st.integers(min_value=0, max_value=len(forged) - 1))]
        else:
            forged += data.draw(st.binary(min_size=1, max_size=20))
    if bytes(forged) == packet:
        return
    sad = EspSad()
    sad.add(gateway)
    assert isinstance(sad.receive(bytes(forged), 0.0), Dropped)
    received = sad.receive(packet, 0.0)
    assert isinstance(received, Received) and received.packet == inner


@settings(max_examples=100)
@given(
    suite=suites,
    payloads=st.lists(st.binary(max_size=300), min_size=1, max_size=5),
    tfc=st.integers(min_value=0, max_value=64),
    v6=st.booleans(),
)
def test_round_trips(suite: ChildSuite, payloads: list[bytes], tfc: int, v6: bool) -> None:
    """Whatever the suite, length and TFC padding, what one side seals the other opens."""
    client, gateway = esp_pair(suite)
    for payload in payloads:
        inner = ipv6(payload=payload) if v6 else ipv4(payload=payload)
        packet = client.seal(inner, 0.0, tfc_padding=tfc)
        assert isinstance(packet, bytes)
        assert gateway.open(packet, 0.0) == inner
