"""Malformed and mutated datagrams never raise out of the IKE endpoint (hypothesis)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from tests.ike.test_sa import CL, GW, Pair
from twisted_rserpool.ike.payloads import decode_message


def _recorded() -> tuple[Pair, list[tuple[str, bytes]]]:
    pair = Pair()
    spi = pair.establish()
    pair.cl.check_liveness(spi, 1.0)
    pair.pump(1.0)
    (child,) = pair.cl_installer.installed
    pair.cl.delete_child_sa(spi, child, 2.0)
    pair.pump(2.0)
    return pair, list(pair.sent)


PAIR, SENT = _recorded()
MESSAGES = [data for _, data in SENT]


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(MESSAGES)))
    for _ in range(draw(st.integers(1, 6))):
        kind = draw(st.sampled_from(["flip", "cut", "grow", "set"]))
        position = draw(st.integers(0, len(data) - 1)) if data else 0
        if kind == "flip" and data:
            data[position] ^= 1 << draw(st.integers(0, 7))
        elif kind == "cut":
            del data[position:]
        elif kind == "grow":
            data[position:position] = draw(st.binary(min_size=1, max_size=40))
        elif data:
            data[position] = draw(st.integers(0, 255))
    return bytes(data)


@settings(max_examples=400)
@given(datagram=st.one_of(mutated(), st.binary(max_size=200)))
def test_mutated_datagrams_never_raise(datagram: bytes) -> None:
    """A fresh gateway, an established gateway and an established initiator take any
    datagram without raising; whatever they send back is a well-formed IKE message."""
    fresh = Pair()
    fresh.gw.receive_datagram(datagram, CL, 0.0)
    PAIR.gw.receive_datagram(datagram, CL, 3.0)
    PAIR.cl.receive_datagram(datagram, GW, 3.0)
    for endpoint in (fresh.gw, PAIR.gw, PAIR.cl):
        for data, _address in endpoint.datagrams_to_send():
            decode_message(data)
        endpoint.handle_timer(100.0)
        endpoint.datagrams_to_send()
