"""IKE fragmentation (RFC 7383) on the in-memory pair of endpoints, and its parts.

A 3,000-octet identity makes IKE_AUTH about 3,100 octets each way: at the IPv4 default
threshold of 576 octets it goes as seven IKE Fragment messages.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.python import usage

from tests.ike.test_gateway import FakeReactor
from tests.ike.test_sa import CL, GW, Forged, Pair, config, of
from tests.ike.test_tap import parse
from twisted_rserpool._tap import vpngw
from twisted_rserpool.ike import crypto
from twisted_rserpool.ike.codec import (
    EncryptedFragmentPayload,
    IkeMessage,
    VendorIdPayload,
    decode_message,
    split_chunks,
)
from twisted_rserpool.ike.constants import ExchangeType, NotifyType, PayloadType
from twisted_rserpool.ike.errors import InvalidIkeMessage
from twisted_rserpool.ike.events import IkeSaEstablished, IkeSaFailed
from twisted_rserpool.ike.fragments import (
    DEFAULT_FRAGMENT_SIZE_IPV4,
    DEFAULT_FRAGMENT_SIZE_IPV6,
    FragmentLimits,
    Reassembler,
    Verdict,
    chunk_size,
    datagram_overhead,
    fragment_message,
)
from twisted_rserpool.ike.gateway import IkeGatewayProtocol
from twisted_rserpool.ike.proposals import parse_ike_suites
from twisted_rserpool.ike.sa import IkeSa

LONG_CLIENT = "client." + "c" * 3000
LONG_GATEWAY = "gateway." + "g" * 3000
OVERHEAD4 = datagram_overhead(False)


def skf(data: bytes) -> EncryptedFragmentPayload | None:
    """The SKF payload of a datagram, or None when it is a whole message."""
    last = decode_message(data).payloads[-1]
    return last if isinstance(last, EncryptedFragmentPayload) else None


def big_pair(**gw: object) -> Pair:
    """A pair whose IKE_AUTH request and response are both about 3,100 octets."""
    return Pair(config(LONG_GATEWAY, **gw), config(LONG_CLIENT))


def start(pair: Pair) -> list[bytes]:
    """Run IKE_SA_INIT; return the client's IKE_AUTH datagrams, not yet delivered."""
    pair.cl.initiate(GW, 0.0)
    ((init, _),) = pair.cl.datagrams_to_send()
    pair.gw.receive_datagram(init, CL, 0.0)
    ((answer, _),) = pair.gw.datagrams_to_send()
    pair.cl_events += pair.cl.receive_datagram(answer, GW, 0.0)
    return [d for d, _ in pair.cl.datagrams_to_send()]


def deliver_to_gw(pair: Pair, datagrams: list[bytes], now: float = 0.0) -> list[bytes]:
    """Give the gateway these datagrams; return what it sent back."""
    for data in datagrams:
        pair.gw_events += pair.gw.receive_datagram(data, CL, now)
    return [d for d, _ in pair.gw.datagrams_to_send()]


def deliver_to_cl(pair: Pair, datagrams: list[bytes], now: float = 0.0) -> list[bytes]:
    for data in datagrams:
        pair.cl_events += pair.cl.receive_datagram(data, GW, now)
    return [d for d, _ in pair.cl.datagrams_to_send()]


def gateway_sa(pair: Pair) -> IkeSa:
    (sa,) = (s for s in pair.gw._sas.values())
    return sa


def established(pair: Pair) -> bool:
    return bool(of(pair.gw_events, IkeSaEstablished)) and bool(of(pair.cl_events, IkeSaEstablished))


# --- the whole exchange --------------------------------------------------------------------


def test_large_ike_auth_fragmented_and_reassembled_both_ways() -> None:
    """Both sides announce N(IKEV2_FRAGMENTATION_SUPPORTED); the 3,100-octet IKE_AUTH
    request and response each go as IKE Fragment messages of at most 576 octets as IP
    datagrams, and each side reassembles the other's and establishes."""
    pair = big_pair()
    pair.establish()
    assert established(pair)
    init_request, init_response = (decode_message(d) for _, d in pair.sent[:2])
    for init in (init_request, init_response):
        assert init.notify(NotifyType.IKEV2_FRAGMENTATION_SUPPORTED) is not None
    for side in ("cl", "gw"):
        auth = [d for n, d in pair.sent[2:] if n == side]
        fragments = [skf(d) for d in auth]
        assert len(auth) == 7 and all(f is not None for f in fragments)
        assert [(f.fragment_number, f.total_fragments) for f in fragments if f] == [
            (n, 7) for n in range(1, 8)
        ]
        assert [f.first_payload_type for f in fragments if f] == [PayloadType.IDI] * (
            side == "cl"
        ) + [PayloadType.IDR] * (side == "gw") + [0] * 6
        assert all(len(d) + OVERHEAD4 <= DEFAULT_FRAGMENT_SIZE_IPV4 for d in auth)
        # Packed: every fragment but the last within one cipher block of the threshold.
        assert all(len(d) + OVERHEAD4 > DEFAULT_FRAGMENT_SIZE_IPV4 - 17 for d in auth[:-1])
    for endpoint in (pair.cl, pair.gw):
        (sa,) = endpoint._sas.values()
        assert sa.fragmentation
        assert str(sa.peer_id) in (LONG_CLIENT, LONG_GATEWAY)


def test_small_messages_go_whole() -> None:
    """A default IKE_AUTH (about 300 octets) is not fragmented: fragmentation is only for
    messages above the threshold (RFC 7383 2.4)."""
    pair = Pair()
    pair.establish()
    assert established(pair)
    assert all(skf(d) is None for _, d in pair.sent)


@pytest.mark.parametrize("side", ["client", "gateway"])
def test_not_fragmented_unless_both_announce(side: str) -> None:
    """With fragmentation off on either side, nobody announces... or uses it: the large
    IKE_AUTH goes whole (RFC 7383 2.4: MUST NOT be used unless both indicated support)."""
    off = {"fragmentation": False}
    pair = Pair(
        config(LONG_GATEWAY, **(off if side == "gateway" else {})),
        config(LONG_CLIENT, **(off if side == "client" else {})),
    )
    pair.establish()
    assert established(pair)
    init_response = decode_message(pair.sent[1][1])
    assert init_response.notify(NotifyType.IKEV2_FRAGMENTATION_SUPPORTED) is None
    auth = [d for _, d in pair.sent[2:]]
    assert len(auth) == 2 and all(skf(d) is None and len(d) > 3000 for d in auth)


def test_ipv6_threshold_and_configured_size() -> None:
    """Over IPv6 the default threshold is 1280; a configured fragment_size wins."""
    gw6, cl6 = ("::2", 500), ("::1", 1500)
    pair = Pair(config(LONG_GATEWAY), config(LONG_CLIENT), gw6, cl6)
    pair.cl.initiate(gw6, 0.0)
    pair.pump()
    assert established(pair)
    auth = [d for n, d in pair.sent[2:] if n == "cl"]
    assert len(auth) == 3
    assert all(len(d) + datagram_overhead(True) <= DEFAULT_FRAGMENT_SIZE_IPV6 for d in auth)
    pair = Pair(config(LONG_GATEWAY, fragment_size=1500), config(LONG_CLIENT, fragment_size=1000))
    pair.establish()
    assert established(pair)
    cl = [d for n, d in pair.sent[2:] if n == "cl"]
    gw = [d for n, d in pair.sent[2:] if n == "gw"]
    assert max(len(d) for d in cl) + OVERHEAD4 <= 1000 and len(cl) == 4
    assert max(len(d) for d in gw) + OVERHEAD4 <= 1500 and len(gw) == 3


@pytest.mark.parametrize(
    "suite",
    [
        "aes128-sha256-x25519",
        "aes256-sha512-x25519",
        "aes256-sha1-x25519",
        "aes128gcm16-prfsha256-x25519",
        "chacha20poly1305-prfsha256-x25519",
    ],
)
def test_every_cipher_fits_the_threshold(suite: str) -> None:
    """For CBC with each ICV length and for the AEAD ciphers, the fragments reassemble and
    each datagram stays within the threshold."""
    suites = parse_ike_suites(suite)
    pair = Pair(config(LONG_GATEWAY, ike_suites=suites), config(LONG_CLIENT, ike_suites=suites))
    pair.establish()
    assert established(pair)
    auth = [d for _, d in pair.sent[2:]]
    assert all(skf(d) is not None for d in auth)
    assert all(len(d) + OVERHEAD4 <= DEFAULT_FRAGMENT_SIZE_IPV4 for d in auth)


# --- the reassembly on the gateway -----------------------------------------------------------


def test_no_answer_before_the_set_is_complete_and_out_of_order() -> None:
    """Fragments delivered last to first: nothing is answered, nothing parsed, until the
    last one arrives; then the one response (fragmented) goes out."""
    pair = big_pair()
    fragments = start(pair)
    assert len(fragments) == 7
    for data in reversed(fragments[1:]):
        assert deliver_to_gw(pair, [data]) == []
    sa = gateway_sa(pair)
    assert sa.inbound.request_fragments.pending == 6 and not of(pair.gw_events, IkeSaEstablished)
    response = deliver_to_gw(pair, [fragments[0]])
    assert len(response) == 7 and all(skf(d) is not None for d in response)
    assert of(pair.gw_events, IkeSaEstablished)
    assert deliver_to_cl(pair, response) == []
    assert established(pair)


def test_duplicates_are_dropped() -> None:
    """Each fragment delivered twice: the copies are discarded as replays, one answer."""
    pair = big_pair()
    fragments = start(pair)
    answers = deliver_to_gw(pair, [f for data in fragments[:-1] for f in (data, data)])
    assert answers == []
    assert gateway_sa(pair).fragment_verdicts[Verdict.DUPLICATE.value] == 6
    assert len(deliver_to_gw(pair, [fragments[-1]])) == 7
    assert len(of(pair.gw_events, IkeSaEstablished)) == 1


def _flip_icv(data: bytes) -> bytes:
    return data[:-1] + bytes([data[-1] ^ 1])


def test_forged_fragment_is_dropped_without_disturbing_the_set() -> None:
    """A fragment whose ICV does not verify is not stored; arriving first under the same
    number it does not block the genuine one, and arriving with a larger Total Fragments
    it does not restart the set (RFC 7383 2.6: ICV checked before anything else)."""
    pair = big_pair()
    fragments = start(pair)
    message = decode_message(fragments[2])
    fragment = skf(fragments[2])
    assert fragment is not None
    bigger_total = dataclasses.replace(fragment, total_fragments=9)
    forged_restart = IkeMessage(
        message.spi_i, message.spi_r, message.exchange_type, message.message_id,
        (bigger_total,), initiator=True,
    ).encode()  # fmt: skip
    assert deliver_to_gw(pair, [fragments[0], _flip_icv(fragments[2]), forged_restart]) == []
    sa = gateway_sa(pair)
    assert sa.fragment_verdicts[Verdict.FORGED.value] == 2
    assert sa.inbound.request_fragments.pending == 1
    assert len(deliver_to_gw(pair, fragments[1:])) == 7
    assert established(pair) or of(pair.gw_events, IkeSaEstablished)


def test_fragment_fields_are_integrity_protected() -> None:
    """Fragment Number and Total Fragments are covered by the ICV (CBC) or the AEAD's
    associated data: a fragment whose number was changed fails as forged."""
    for suite in ("aes128-sha256-x25519", "aes128gcm16-prfsha256-x25519"):
        suites = parse_ike_suites(suite)
        pair = Pair(config(LONG_GATEWAY, ike_suites=suites), config(LONG_CLIENT, ike_suites=suites))
        fragments = start(pair)
        renumbered = bytearray(fragments[3])
        renumbered[28 + 4 : 28 + 6] = (2).to_bytes(2, "big")
        assert deliver_to_gw(pair, [fragments[0], bytes(renumbered)]) == []
        assert gateway_sa(pair).fragment_verdicts[Verdict.FORGED.value] == 1


def test_fragment_count_limit() -> None:
    """More fragments than ``max_fragments``: each is discarded unopened, nothing stored."""
    pair = big_pair(fragment_limits=FragmentLimits(max_fragments=6))
    fragments = start(pair)
    assert deliver_to_gw(pair, fragments) == []
    sa = gateway_sa(pair)
    assert sa.fragment_verdicts[Verdict.INVALID.value] == 7
    assert sa.inbound.request_fragments.pending == 0 and not of(pair.gw_events, IkeSaEstablished)


def test_size_limit_drops_the_half_open_sa() -> None:
    """Authentic fragments whose contents exceed ``max_size``: the set is discarded and
    the half-open SA dropped (RFC 7383 section 5), before anything is parsed or answered."""
    pair = big_pair(fragment_limits=FragmentLimits(max_size=2000))
    fragments = start(pair)
    assert deliver_to_gw(pair, fragments) == []
    (failed,) = of(pair.gw_events, IkeSaFailed)
    assert isinstance(failed, IkeSaFailed) and "exceed 2000 octets" in failed.reason
    assert pair.gw._sas == {}


def test_incomplete_set_times_out_then_the_retransmission_completes() -> None:
    """One fragment lost: the set is discarded after the reassembly timeout (memory freed,
    the half-open SA kept), and the initiator's retransmission of all fragments, which
    arrives later, is reassembled."""
    pair = big_pair(fragment_limits=FragmentLimits(timeout=1.5))
    fragments = start(pair)
    assert deliver_to_gw(pair, fragments[:-1]) == []
    sa = gateway_sa(pair)
    assert sa.inbound.request_fragments.pending == 6
    assert pair.gw.next_deadline() == 1.5
    pair.gw_events += pair.gw.handle_timer(1.5)
    assert sa.inbound.request_fragments.pending == 0 and sa.fragment_verdicts["timed out"] == 1
    # The lost fragment alone, late: a new incomplete set of one.
    assert deliver_to_gw(pair, [fragments[-1]], 1.6) == []
    assert sa.inbound.request_fragments.pending == 1
    pair.cl_events += pair.cl.handle_timer(2.0)
    resent = [d for d, _ in pair.cl.datagrams_to_send()]
    assert resent == fragments
    response = deliver_to_gw(pair, resent, 2.0)
    assert len(response) == 7
    deliver_to_cl(pair, response, 2.0)
    assert established(pair)


def test_retransmitted_request_answered_from_cache() -> None:
    """The response's fragments are lost: the initiator resends its fragments; fragment 1
    makes the gateway resend the cached response fragments, byte for byte; the other
    fragments are ignored (RFC 7383 2.6.1); nothing is processed twice."""
    pair = big_pair()
    fragments = start(pair)
    first_answer = deliver_to_gw(pair, fragments)
    assert len(first_answer) == 7
    pair.cl_events += pair.cl.handle_timer(2.0)
    resent = [d for d, _ in pair.cl.datagrams_to_send()]
    assert resent == fragments
    assert deliver_to_gw(pair, resent[1:], 2.0) == []
    assert deliver_to_gw(pair, resent[:1], 2.0) == first_answer
    assert len(of(pair.gw_events, IkeSaEstablished)) == 1
    # Out of order and with one response fragment duplicated, the client reassembles.
    deliver_to_cl(
        pair, [*reversed(first_answer[3:]), first_answer[3], *reversed(first_answer[:3])], 2.0
    )
    assert established(pair)
    (sa,) = pair.cl._sas.values()
    assert sa.fragment_verdicts[Verdict.DUPLICATE.value] == 1


def test_refragmented_retransmission_answered_only_when_authentic() -> None:
    """A retransmission cut anew (other octets: RFC 7383 2.5.2) is answered from the cache
    when its fragment 1 is authentic; a forged fragment 1 and later fragments are not."""
    pair = big_pair()
    fragments = start(pair)
    first_answer = deliver_to_gw(pair, fragments)
    (cl_sa,) = pair.cl._sas.values()
    assert cl_sa.cipher_out is not None
    cut_anew = fragment_message(
        cl_sa.cipher_out, fragments[0][:28], PayloadType.IDI, b"x" * 900, 400, bytes
    )
    assert len(cut_anew) == 3 and cut_anew[0] != fragments[0]
    assert deliver_to_gw(pair, [_flip_icv(cut_anew[0]), cut_anew[1], cut_anew[2]], 2.0) == []
    assert deliver_to_gw(pair, [cut_anew[0]], 2.0) == first_answer
    assert len(of(pair.gw_events, IkeSaEstablished)) == 1


def test_fragments_not_negotiated_are_dropped() -> None:
    """A peer that never announced fragmentation cannot make us store fragments."""
    pair = Pair(config(LONG_GATEWAY, fragmentation=False), config(LONG_CLIENT))
    big = big_pair()
    fragments = start(big)
    # The client of `pair` never saw support announced: fragments it gets are dropped.
    whole = start(pair)
    assert len(whole) == 1 and skf(whole[0]) is None
    (cl_sa,) = pair.cl._sas.values()
    assert not cl_sa.fragmentation
    cl_sa.receive(decode_message(fragments[0]), fragments[0], 0.0)
    assert cl_sa.fragment_verdicts == {}


def test_fragmented_informational_on_an_established_sa_both_ways() -> None:
    """After IKE_AUTH, a large request of either side (here INFORMATIONAL with a 3,000-octet
    Vendor ID) is fragmented, reassembled and answered."""
    pair = Pair()
    pair.establish()
    (cl_sa,) = pair.cl._sas.values()
    gw_sa = gateway_sa(pair)
    for sa in (cl_sa, gw_sa):
        before = len(pair.sent)
        task = Forged(sa, ExchangeType.INFORMATIONAL, (VendorIdPayload(b"v" * 3000),))
        sa.queue(task, 1.0)
        pair.pump(1.0)
        requests = [d for _, d in pair.sent[before:-1]]
        assert len(requests) == 7 and all(skf(d) is not None for d in requests)
        assert task.answers == [()]


def test_rekeyed_ike_sa_keeps_fragmentation() -> None:
    """The IKE SA made by a rekey inherits the negotiated support (no new IKE_SA_INIT)."""
    pair = Pair()
    spi = pair.establish()
    assert pair.cl.rekey_ike_sa(spi, 1.0)
    pair.pump(1.0)
    (new,) = (sa for sa in pair.cl._sas.values() if sa.local_spi != spi)
    assert new.fragmentation
    before = len(pair.sent)
    task = Forged(new, ExchangeType.INFORMATIONAL, (VendorIdPayload(b"v" * 3000),))
    new.queue(task, 2.0)
    pair.pump(2.0)
    assert all(skf(d) is not None for _, d in pair.sent[before:-1])
    assert task.answers == [()]


# --- the reassembler alone -----------------------------------------------------------------


def _fragment(number: int, total: int, first: int = 0) -> EncryptedFragmentPayload:
    return EncryptedFragmentPayload(number, total, first, b"")


def test_reassembler_validity_checks() -> None:
    """RFC 7383 2.6's checks, before any ICV work: zero fields, number above total, a
    smaller total than the stored set's, and more than max_fragments are discarded."""
    r = Reassembler(FragmentLimits(max_fragments=10))
    opened: list[int] = []

    def opener(content: bytes) -> Callable[[], bytes | None]:
        def open_() -> bytes | None:
            opened.append(1)
            return content

        return open_

    for number, total in [(0, 3), (1, 0), (4, 3), (1, 11)]:
        outcome = r.add(5, _fragment(number, total), b"", opener(b"x"), 0.0)
        assert outcome.verdict == Verdict.INVALID
    assert opened == []
    assert r.add(5, _fragment(2, 4), b"", opener(b"b"), 0.0).verdict == Verdict.STORED
    assert r.add(5, _fragment(1, 3), b"", opener(b"a"), 0.0).verdict == Verdict.INVALID
    # A larger Total Fragments (a set cut smaller, RFC 7383 2.5.2) starts over.
    assert r.add(5, _fragment(1, 5, 41), b"r1", opener(b"A"), 0.0).verdict == Verdict.STORED
    assert r.pending == 1
    # Another Message ID replaces the set: one set at a time.
    assert r.add(6, _fragment(2, 2), b"", opener(b"B"), 0.0).verdict == Verdict.STORED
    outcome = r.add(6, _fragment(1, 2, 35), b"first", opener(b"A"), 0.0)
    assert outcome.verdict == Verdict.COMPLETE and outcome.message is not None
    assert outcome.message.plaintext == b"AB" and outcome.message.first_payload_type == 35
    assert outcome.message.first_fragment == b"first" and r.pending == 0


def test_split_chunks() -> None:
    assert split_chunks(b"", 5) == [b""]
    assert split_chunks(b"abcdefg", 3) == [b"abc", b"def", b"g"]
    with pytest.raises(ValueError):
        split_chunks(b"x", 0)


def test_too_small_a_fragment_size_is_refused() -> None:
    with pytest.raises(ValueError):
        config("gw@test", fragment_size=100)
    keys = _keys()
    with pytest.raises(ValueError):
        chunk_size(keys.cipher(True), 60, True)


def _keys() -> crypto.IkeKeys:
    (suite,) = parse_ike_suites("aes128-sha256-x25519")
    _, keys = crypto.derive_ike_keys(
        suite.prf_transform,
        suite.encryption_transform,
        suite.integrity_transform,
        shared_secret=b"s" * 32,
        nonce_i=b"i" * 32,
        nonce_r=b"r" * 32,
        spi_i=b"I" * 8,
        spi_r=b"R" * 8,
    )
    return keys


# --- fuzzing -------------------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(
    head=st.binary(min_size=0, max_size=8),
    body=st.binary(max_size=80),
    next_payload=st.integers(0, 255),
)
def test_skf_decoder_fuzz(head: bytes, body: bytes, next_payload: int) -> None:
    """Any octets in an SKF payload decode to an SKF payload that re-encodes to the same
    octets, or raise InvalidIkeMessage (and nothing else)."""
    payload = head + body
    length = 4 + len(payload)
    message = (
        b"I" * 8 + b"R" * 8 + bytes([PayloadType.SKF, 0x20, ExchangeType.IKE_AUTH, 0x08])
        + (1).to_bytes(4, "big") + (28 + length).to_bytes(4, "big")
        + bytes([next_payload, 0]) + length.to_bytes(2, "big") + payload
    )  # fmt: skip
    try:
        decoded = decode_message(message)
    except InvalidIkeMessage:
        assert len(payload) < 4
        return
    (fragment,) = decoded.payloads
    assert isinstance(fragment, EncryptedFragmentPayload)
    assert fragment.first_payload_type == next_payload
    assert decoded.encode() == message


_fragment_ops = st.lists(
    st.tuples(
        st.integers(0, 3),  # message ID
        st.integers(0, 9),  # Fragment Number
        st.integers(0, 9),  # Total Fragments
        st.booleans(),  # authentic
        st.binary(max_size=40),  # content
        st.floats(0, 3),  # time step
    ),
    max_size=60,
)


@settings(max_examples=300, deadline=None)
@given(ops=_fragment_ops)
def test_reassembler_fuzz(
    ops: list[tuple[int, int, int, bool, bytes, float]],
) -> None:
    """Whatever fragments arrive, in whatever order and time: the reassembler never holds
    more than its limits, never opens an invalid or already stored fragment, completes
    only from authentic fragments of one set (one Message ID, one Total Fragments, every
    number once) whose contents it joins in order, and keeps nothing past its timeout."""
    limits = FragmentLimits(max_fragments=8, max_size=100, timeout=5.0)
    r = Reassembler(limits)
    now = 0.0
    # Reference model: the authentic fragments of the current set.
    model: dict[int, bytes] = {}
    key: tuple[int, int] | None = None
    started = 0.0
    for message_id, number, total, authentic, content, step in ops:
        now += step
        if key is not None and now >= started + limits.timeout:
            model, key = {}, None
        opened: list[bool] = []

        def open_fragment(
            authentic: bool = authentic, content: bytes = content, opened: list[bool] = opened
        ) -> bytes | None:
            opened.append(True)
            return content if authentic else None

        outcome = r.add(message_id, _fragment(number, total), b"raw", open_fragment, now)
        valid = 0 < number <= total <= limits.max_fragments and not (
            key is not None and key[0] == message_id and total < key[1]
        )
        duplicate = valid and key == (message_id, total) and number in model
        assert bool(opened) == (valid and not duplicate)
        if not valid:
            assert outcome.verdict == Verdict.INVALID
        elif duplicate:
            assert outcome.verdict == Verdict.DUPLICATE
        elif not authentic:
            assert outcome.verdict == Verdict.FORGED
        else:
            if key != (message_id, total):
                model, key, started = {}, (message_id, total), now
            if sum(map(len, model.values())) + len(content) > limits.max_size:
                assert outcome.verdict == Verdict.OVER_LIMIT
                model, key = {}, None
            else:
                model[number] = content
                if len(model) == total:
                    assert outcome.verdict == Verdict.COMPLETE and outcome.message is not None
                    assert outcome.message.message_id == message_id
                    assert outcome.message.plaintext == b"".join(model[n] for n in sorted(model))
                    assert outcome.message.fragments == total
                    model, key = {}, None
                else:
                    assert outcome.verdict == Verdict.STORED
        assert r.pending == len(model) <= limits.max_fragments
        assert r.stored_octets == sum(map(len, model.values())) <= limits.max_size
        deadline = r.next_deadline()
        assert (deadline is None) == (key is None)


@settings(max_examples=100, deadline=None)
@given(plaintext=st.binary(max_size=3000), limit=st.integers(200, 1500), ipv6=st.booleans())
def test_fragment_message_round_trip(plaintext: bytes, limit: int, ipv6: bool) -> None:
    """Our fragments of any plaintext, at any threshold, fit it and open (in any order of
    checking) to chunks that join to the plaintext; a changed octet never opens."""
    keys = _keys()
    sender, receiver = keys.cipher(True), keys.cipher(True)
    header = b"I" * 8 + b"R" * 8 + bytes([46, 0x20, 35, 0x08]) + bytes(8)
    size = chunk_size(sender, limit, ipv6)
    fragments = fragment_message(sender, header, 41, plaintext, size, bytes)
    assert all(len(f) + datagram_overhead(ipv6) <= limit for f in fragments)
    chunks = []
    for number, data in enumerate(fragments, start=1):
        fragment = skf(data)
        assert fragment is not None and fragment.fragment_number == number
        assert fragment.total_fragments == len(fragments)
        assert fragment.first_payload_type == (41 if number == 1 else 0)
        chunks.append(receiver.open(data, 28, fragment=True))
    assert b"".join(chunks) == plaintext
    first = bytearray(fragments[0])
    first[40] ^= 0x80
    with pytest.raises(crypto.CryptoError):
        receiver.open(bytes(first), 28, fragment=True)


# --- twistd vpngw --fragment-size ------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "fragmentation", "size"),
    [
        ([], True, None),
        (["--fragment-size", "1400"], True, 1400),
        (["--fragment-size", "0"], False, None),
    ],
)
def test_vpngw_fragment_size(args: list[str], fragmentation: bool, size: int | None) -> None:
    """``--fragment-size`` sets the threshold; 0 turns fragmentation off; by default it is
    on with RFC 7383's per-family sizes; sizes below 200 are refused."""
    reactor = FakeReactor()
    service = vpngw.makeService(parse(*args), reactor)
    service.startService()  # type: ignore[no-untyped-call]
    try:
        ((_, protocol, _, _),) = reactor.listened
        assert isinstance(protocol, IkeGatewayProtocol)
        config = protocol.endpoint.config
        assert (config.fragmentation, config.fragment_size) == (fragmentation, size)
    finally:
        service.stopService()  # type: ignore[no-untyped-call]
    with pytest.raises(usage.UsageError):
        parse("--fragment-size", "199")
    assert "--fragment-size=" in str(vpngw.Options())  # type: ignore[no-untyped-call]
