"""The request window (twisted_rserpool.ike.window): Message IDs, retransmission, the queue,
the response cache; and the same through an IKE SA on the in-memory pair."""

from __future__ import annotations

import pytest

from tests.ike.test_sa import Pair, config, exchange_of, of
from twisted_rserpool.ike.constants import ExchangeType
from twisted_rserpool.ike.events import IkeSaDeleted, LivenessConfirmed
from twisted_rserpool.ike.payloads import decode_message
from twisted_rserpool.ike.window import PeerRequest, RequestWindow

INFO = ExchangeType.INFORMATIONAL


def window(size: int = 1, timeout: float = 2.0, tries: int = 4) -> RequestWindow[str]:
    return RequestWindow(timeout=timeout, tries=tries, size=size)


def test_retransmission_schedule_doubles_then_gives_up() -> None:
    w = window()
    mid = w.allocate()
    w.sent(mid, INFO, b"req", "liveness", 10.0)
    assert w.next_deadline() == 12.0
    resent_at: list[float] = []
    now = 10.0
    while True:
        deadline = w.next_deadline()
        if deadline is None:
            break
        assert w.on_timer(deadline - 0.001) == ([], [])  # nothing early
        now = deadline
        resend, given_up = w.on_timer(now)
        if given_up:
            (gone,) = given_up
            assert gone.task == "liveness" and gone.tries == 4 and gone.first_sent_at == 10.0
            break
        (again,) = resend
        assert again.data == b"req" and again.sent_at == now
        resent_at.append(now)
    # Sent at 10, resent after 2, 4 and 8 s; given up 16 s after the last send.
    assert resent_at == [12.0, 16.0, 24.0]
    assert now == 40.0 and w.idle and w.next_deadline() is None


def test_answer_stops_retransmission() -> None:
    w = window()
    w.sent(w.allocate(), INFO, b"req", "a", 0.0)
    assert w.match(0, ExchangeType.CREATE_CHILD_SA) is None  # wrong exchange
    assert w.match(1, INFO) is None  # wrong message ID
    request = w.match(0, INFO)
    assert request is not None and request.task == "a"
    w.complete(0)
    assert w.idle and w.next_deadline() is None and w.on_timer(100.0) == ([], [])


@pytest.mark.parametrize("size", [1, 3])
def test_window_size_and_queue_order(size: int) -> None:
    w = window(size=size)
    for name in "abcde":
        w.queue(name)
    sent: list[str] = []
    while (task := w.next_queued()) is not None:
        w.sent(w.allocate(), INFO, task.encode(), task, 0.0)
        sent.append(task)
    assert sent == list("abcde"[:size]) and w.full
    assert list(w) == list("abcde")  # outstanding first, then waiting
    w.complete(0)
    assert not w.full
    task = w.next_queued()
    assert task == "abcde"[size]
    w.sent(w.allocate(), INFO, task.encode(), task, 0.0)
    assert w.full and w.next_queued() is None


def test_queue_admission() -> None:
    w = window()
    w.queue("blocked")
    assert w.next_queued(lambda task: False) is None
    assert w.next_queued(lambda task: True) == "blocked"


def test_abandon_forgets_everything() -> None:
    w = window()
    w.sent(w.allocate(), INFO, b"x", "a", 0.0)
    w.queue("b")
    w.abandon()
    assert w.idle and not list(w) and w.next_deadline() is None
    assert w.allocate() == 1  # Message IDs are never reused


def test_response_cache_answers_a_retransmission() -> None:
    w = window()
    assert w.classify(0, b"first") == PeerRequest.NEW
    w.answered(0, b"first", b"answer")
    assert w.classify(1, b"second") == PeerRequest.NEW
    assert w.classify(0, b"first") == PeerRequest.RETRANSMITTED
    assert w.cached_response() == b"answer"
    assert w.classify(0, b"forged under a used ID") == PeerRequest.DROP
    assert w.classify(2, b"ahead") == PeerRequest.DROP


def test_invalid_windows() -> None:
    for kw in ({"timeout": 0.0}, {"tries": 0}, {"size": 0}):
        with pytest.raises(ValueError):
            window(**kw)


def test_sa_resends_cached_bytes() -> None:
    """Through an IKE SA: a retransmitted request gets our first answer byte for byte."""
    pair = Pair()
    spi = pair.establish()
    pair.cl.check_liveness(spi, 1.0)
    ((request, _),) = pair.cl.datagrams_to_send()
    pair.gw.receive_datagram(request, pair.cl.local_address, 1.0)
    ((answer, _),) = pair.gw.datagrams_to_send()
    pair.gw.receive_datagram(request, pair.cl.local_address, 1.5)
    assert pair.gw.datagrams_to_send() == [(answer, pair.cl.local_address)]
    events = pair.cl.receive_datagram(answer, pair.gw.local_address, 1.5)
    (alive,) = of(events, LivenessConfirmed)
    assert isinstance(alive, LivenessConfirmed) and alive.round_trip == 0.5
    # The copy of the answer is a duplicate for the client: dropped, nothing new.
    assert pair.cl.receive_datagram(answer, pair.gw.local_address, 1.6) == []


def test_sa_retransmits_on_the_configured_schedule() -> None:
    """An IKE SA resends its request at the configured times, then gives up."""
    pair = Pair(cl_config=config("client@test", retransmit_timeout=1.0, retransmit_tries=3))
    spi = pair.establish()
    pair.cl.check_liveness(spi, 10.0)
    first = pair.cl.datagrams_to_send()
    assert [exchange_of(d) for d, _ in first] == [(INFO, False)]
    times = []
    while (deadline := pair.cl.next_deadline()) is not None:
        pair.cl_events += pair.cl.handle_timer(deadline)
        sent = pair.cl.datagrams_to_send()
        if not sent:
            break
        assert [d for d, _ in sent] == [d for d, _ in first]  # the same octets
        times.append(deadline)
    assert times == [11.0, 13.0]
    (gone,) = of(pair.cl_events, IkeSaDeleted)
    assert isinstance(gone, IkeSaDeleted) and gone.reason == "peer unreachable"
    assert decode_message(first[0][0]).message_id == 2
