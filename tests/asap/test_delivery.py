"""Delivery across failover and the send options (RFC 5352 6.5-6.7) with real pool elements
and a real pool user on a Clock, over in-memory connections the tests break at will."""

from __future__ import annotations

from ipaddress import IPv4Address

from twisted.internet.defer import Deferred
from twisted.internet.protocol import Factory
from twisted.python.failure import Failure

from tests.asap.delivery_support import POOL, Client, Lab, Observer, fired
from twisted_rserpool.asap import (
    AsapError,
    DeliveryFailed,
    FailoverRefused,
    NoPoolElementAvailable,
    PoolElement,
    PoolElementHandle,
    SendOptions,
    Session,
)
from twisted_rserpool.handlespace import CacheState
from twisted_rserpool.transport.connection import MappingConfig
from twisted_rserpool.wire.parameters import PoolElementParameter, TcpTransport


def ended(client: Client, kind: type[AsapError]) -> AsapError:
    """The error the session of ``client`` ended with, which must be a ``kind``."""
    reason = client.reason
    assert reason is not None, "the session did not end"
    error = reason.value
    assert isinstance(error, kind), reason
    return error


def session(client: Client) -> Session:
    assert isinstance(client.transport, Session)
    return client.transport


def onPe(lab: Lab, s: Session, *elements: PoolElement) -> tuple[PoolElement, list[PoolElement]]:
    """The session's PE and the others."""
    assert s.poolElement is not None
    [mine] = [e for e in elements if e.peIdentifier == s.poolElement.pe_identifier]
    return mine, [e for e in elements if e is not mine]


def test_processed_then_died_before_acknowledging_new_pe_sees_them_marked() -> None:
    """Issue 16 1: PE1 processes two messages and dies before its ACKs leave. The session
    fails over and sends both again (at least once), and the new PE receives them marked
    ``resent`` (ASAP_COOKIE_ECHO's count), so it can tell possible duplicates; a message
    written after the failover is not marked."""
    lab = Lab()
    a, b = lab.pe(0xA), lab.pe(0xB)
    user = lab.pu()
    client = lab.connect(user, POOL)
    s = session(client)
    s.write(b"first")
    lab.network.run()
    first, [second] = onPe(lab, s, a, b)
    lab.hold(first)
    s.write(b"one")
    s.write(b"two")
    lab.network.run()
    assert lab.worker(first.peIdentifier).received == [b"first", b"one", b"two"]
    lab.kill(first)
    s.write(b"three")
    lab.network.run()
    worker = lab.worker(second.peIdentifier)
    assert [(m.data, m.resent) for m in worker.messages] == [
        (b"one", True),
        (b"two", True),
        (b"three", False),
    ]
    assert worker.cookies == []  # no cookie was ever sent: the echo only carried the count
    [event] = s.failovers
    assert event.resend == 2 and "reset" in event.reason
    assert client.answers == [b"done first", b"done one", b"done two", b"done three"]
    assert lab.registry.unreachable == [first.peIdentifier]


def test_cookie_is_echoed_before_the_resent_messages() -> None:
    """The last cookie reaches the new PE before any data (3.8), together with the
    count of resent messages."""
    lab = Lab()
    a, b = lab.pe(0xA), lab.pe(0xB)
    user = lab.pu()
    client = lab.connect(user, POOL)
    s = session(client)
    s.write(b"x")
    lab.network.run()
    first, [second] = onPe(lab, s, a, b)
    transport = lab.worker(first.peIdentifier).transport
    transport.sendCookie(b"state-1")  # type: ignore[union-attr]
    lab.network.run()
    assert s.cookie == b"state-1"
    lab.hold(first)
    s.write(b"y")
    lab.network.run()
    lab.kill(first)
    worker = lab.worker(second.peIdentifier)
    assert worker.cookies == [b"state-1"]
    assert [(m.data, m.resent) for m in worker.messages] == [(b"y", True)]
    assert second.counters["cookie_echoes"] == 1


def test_silent_death_is_found_by_the_heartbeat() -> None:
    """A PE that goes silent (no FIN, no bytes) is declared dead by the mapping's
    heartbeat (interval + timeout on the clock) and its unacknowledged message resent."""
    lab = Lab()
    a, b = lab.pe(0xA), lab.pe(0xB)
    user = lab.pu(sessionMappingConfig=MappingConfig(heartbeat_interval=1.0, heartbeat_timeout=2.0))
    client = lab.connect(user, POOL)
    s = session(client)
    first, [second] = onPe(lab, s, a, b)
    lab.silence(first)
    s.write(b"lost?")
    lab.network.advance(2.5)
    assert not s.failovers
    lab.network.advance(1.0)
    [event] = s.failovers
    assert "heartbeat" in event.reason and event.resend == 1
    assert [(m.data, m.resent) for m in lab.worker(second.peIdentifier).messages] == [
        (b"lost?", True)
    ]


def test_observer_veto_closes_with_the_messages() -> None:
    """A vetoed failover ends the session with FailoverRefused carrying the messages the
    failed PE had not acknowledged and those written since; nothing reached the new PE."""
    lab = Lab()
    a, b = lab.pe(0xA), lab.pe(0xB)
    user = lab.pu(failoverObservers=[Observer(False)])
    client = lab.connect(user, POOL)
    s = session(client)
    first, [second] = onPe(lab, s, a, b)
    lab.hold(first)
    s.write(b"pending")
    lab.network.run()
    lab.kill(first)
    error = ended(client, FailoverRefused)
    assert [(m.data, m.sent) for m in error.undelivered] == [(b"pending", True)]
    assert s.undelivered == error.undelivered
    assert lab.workers.get(second.peIdentifier, []) == []


def test_pending_observer_holds_everything_then_resumes() -> None:
    """While an observer's Deferred is pending, nothing flows to the new PE and writes
    queue; its yes resumes in order."""
    lab = Lab()
    a, b = lab.pe(0xA), lab.pe(0xB)
    answer: Deferred[bool] = Deferred()
    user = lab.pu(failoverObservers=[Observer(answer)])
    client = lab.connect(user, POOL)
    s = session(client)
    first, [second] = onPe(lab, s, a, b)
    lab.hold(first)
    s.write(b"one")
    lab.network.run()
    lab.kill(first)
    s.write(b"two")
    lab.network.run()
    assert s.failingOver and lab.workers.get(second.peIdentifier, []) == []
    assert s.pending() == 2  # one held by the failover, one written during it
    answer.callback(True)
    lab.network.run()
    assert [(m.data, m.resent) for m in lab.worker(second.peIdentifier).messages] == [
        (b"one", True),
        (b"two", False),
    ]


def test_no_pe_left_report_carries_unsent_and_unacknowledged() -> None:
    """RFC 5352 6.7: when nothing is left to fail over to, the error report
    (NoPoolElementAvailable) carries the unacknowledged and the unsent messages."""
    lab = Lab()
    only = lab.pe(0xA)
    user = lab.pu()
    client = lab.connect(user, POOL)
    s = session(client)
    lab.hold(only)
    s.write(b"one")
    lab.network.run()
    lab.kill(only)
    s.write(b"late")  # written after the end: refused, the session is closed
    error = ended(client, NoPoolElementAvailable)
    assert [(m.data, m.sent) for m in error.undelivered] == [(b"one", True)]
    assert [m.data for m in s.undelivered] == [b"one"]


def test_unreachable_candidates_are_skipped_and_reported() -> None:
    """A candidate that refuses the connection is reported and skipped; the session goes
    on with the next one."""
    lab = Lab()
    a, b, c = lab.pe(0xA), lab.pe(0xB), lab.pe(0xC)
    user = lab.pu()
    client = lab.connect(user, POOL)
    s = session(client)
    first, others = onPe(lab, s, a, b, c)
    dead = min(others, key=lambda e: e.peIdentifier)
    alive = max(others, key=lambda e: e.peIdentifier)

    def deadFirst(
        poolHandle: bytes, candidates: list[PoolElementParameter]
    ) -> PoolElementParameter:
        """The next candidate is dead too, though still registered."""
        return min(candidates, key=lambda e: e.pe_identifier)

    user.choosePoolElement = deadFirst  # type: ignore[method-assign]
    lab.network.listeners.pop(lab.portOf(dead))
    lab.hold(first)
    s.write(b"m")
    lab.network.run()
    lab.kill(first)
    assert s.poolElement is not None and s.poolElement.pe_identifier == alive.peIdentifier
    assert sorted(lab.registry.unreachable) == sorted([first.peIdentifier, dead.peIdentifier])
    assert [m.data for m in lab.worker(alive.peIdentifier).messages] == [b"m"]


def test_no_failover_session_returns_the_data() -> None:
    """ASAP_SEND_NO_FAILOVER: when the PE fails the session ends with DeliveryFailed,
    which names the PE and returns the unacknowledged (possibly processed) and the queued
    messages; no other PE receives anything."""
    lab = Lab()
    a, b = lab.pe(0xA), lab.pe(0xB)
    user = lab.pu()
    client = lab.connect(user, POOL, options=SendOptions.SEND_NO_FAILOVER)
    s = session(client)
    first, [second] = onPe(lab, s, a, b)
    lab.hold(first)
    s.write(b"one")
    lab.network.run()
    s.write(b"two")  # queued, not yet sent: the PE dies in this reactor turn
    lab.kill(first)
    error = ended(client, DeliveryFailed)
    assert isinstance(error, DeliveryFailed)
    assert error.destination.pe_identifier == first.peIdentifier
    assert [(m.data, m.sent) for m in error.undelivered] == [(b"one", True), (b"two", False)]
    assert not s.failovers and lab.workers.get(second.peIdentifier, []) == []


def test_per_message_no_failover_comes_back_and_the_rest_fails_over() -> None:
    """In a failover session a message sent with SEND_NO_FAILOVER is handed back
    (``deliveryFailed``) when its PE fails; the other unacknowledged one is resent."""
    lab = Lab()
    a, b = lab.pe(0xA), lab.pe(0xB)
    user = lab.pu()
    client = lab.connect(user, POOL)
    s = session(client)
    first, [second] = onPe(lab, s, a, b)
    lab.hold(first)
    s.send(b"once", SendOptions.SEND_NO_FAILOVER)
    s.write(b"again")
    lab.network.run()
    lab.kill(first)
    [returned] = client.returned
    assert isinstance(returned, DeliveryFailed)
    assert [(m.data, m.options & SendOptions.SEND_NO_FAILOVER) for m in returned.undelivered] == [
        (b"once", SendOptions.SEND_NO_FAILOVER)
    ]
    assert [(m.data, m.resent) for m in lab.worker(second.peIdentifier).messages] == [
        (b"again", True)
    ]


def test_send_to_a_pe_handle() -> None:
    """Sending to a PE handle (6.5.3) reaches that PE; with SEND_FAILOVER the session fails
    over to another PE of its pool, with NO_FAILOVER its failure returns the data."""
    lab = Lab()
    lab.pe(0xA)
    b = lab.pe(0xB)
    user = lab.pu()
    handle = PoolElementHandle(POOL, 0xB)
    client = lab.connect(user, handle)
    s = session(client)
    assert s.peHandle is not None and s.peHandle.pe_identifier == 0xB
    s.write(b"to b")
    lab.network.run()
    assert lab.worker(0xB).received == [b"to b"]
    assert client.received[0].sender == PoolElementHandle.of(POOL, s.poolElement)  # type: ignore[arg-type]
    lab.hold(b)
    s.write(b"moved")
    lab.network.run()
    lab.kill(b)
    assert s.poolElement is not None and s.poolElement.pe_identifier == 0xA
    assert [(m.data, m.resent) for m in lab.worker(0xA).messages] == [(b"moved", True)]


def test_send_to_a_pe_handle_without_failover_fails_with_it() -> None:
    """A NO_FAILOVER session to a PE handle whose PE cannot be reached is not moved to
    another PE."""
    lab = Lab()
    lab.pe(0xA)
    b = lab.pe(0xB)
    user = lab.pu()
    lab.network.listeners.pop(lab.portOf(b))
    result: list[object] = []
    user.connect(
        PoolElementHandle(POOL, 0xB),
        Factory.forProtocol(Client),
        options=SendOptions.SEND_NO_FAILOVER,
    ).addBoth(result.append)
    lab.network.run()
    [failure] = result
    assert getattr(failure, "check", lambda _: False)(NoPoolElementAvailable)
    assert lab.workers.get(0xA, []) == []


def test_send_to_a_transport_address_never_fails_over() -> None:
    """Sending by transport address (6.5.4) bypasses ASAP: the session reaches that
    address; when it fails the data comes back and nobody is reported unreachable."""
    lab = Lab()
    a = lab.pe(0xA)
    lab.pe(0xB)
    user = lab.pu()
    client = lab.connect(user, TcpTransport(lab.portOf(a), IPv4Address("127.0.0.1")))
    s = session(client)
    lab.hold(a)
    s.write(b"direct")
    lab.network.run()
    assert lab.worker(0xA).received == [b"direct"]
    lab.kill(a)
    error = ended(client, DeliveryFailed)
    assert [m.data for m in error.undelivered] == [b"direct"]
    assert lab.registry.unreachable == [] and lab.workers.get(0xB, []) == []


def test_send_to_all_reaches_every_pe_and_reports_the_failed_copy() -> None:
    """ASAP_SEND_TO_ALL sends one copy to each PE of the pool; a copy that cannot be
    delivered is in the report with the message, never dropped silently."""
    lab = Lab()
    lab.pe(0xA)
    lab.pe(0xB)
    c = lab.pe(0xC)
    user = lab.pu()
    lab.network.listeners.pop(lab.portOf(c))  # still registered, no longer listening
    result = user.sendToAll(POOL, b"news")
    lab.network.run()
    report = fired(result)
    assert sorted(h.pe_identifier for h in report.delivered) == [0xA, 0xB]
    [failed] = report.failed
    assert failed.destination.pe_identifier == 0xC
    assert [m.data for m in failed.undelivered] == [b"news"]
    assert lab.worker(0xA).received == [b"news"] and lab.worker(0xB).received == [b"news"]


def test_send_to_all_skips_ourselves_unless_to_self() -> None:
    """A PU/PE's TO_ALL skips its own PE; with SEND_TO_SELF its own PE gets a copy too
    (a loop-back through its user transport)."""
    lab = Lab()
    mine = lab.pe(0xA)
    lab.pe(0xB)
    user = lab.pu()
    user.ownPoolElements.append(mine)
    report = user.sendToAll(POOL, b"all")
    lab.network.run()
    assert [h.pe_identifier for h in fired(report).delivered] == [0xB]
    assert lab.workers.get(0xA, []) == []
    report = user.sendToAll(POOL, b"me too", SendOptions.SEND_TO_ALL | SendOptions.SEND_TO_SELF)
    lab.network.run()
    assert sorted(h.pe_identifier for h in fired(report).delivered) == [0xA, 0xB]
    assert [w.received for w in lab.workers[0xA]] == [[b"me too"]]


def test_receiver_learns_the_senders_pe_handle() -> None:
    """RFC 5352 6.6: a PE receiving from a PU/PE learns the sender's PE handle from its
    business card (own pool, own PE first); the PU learns the PE's handle."""
    lab = Lab()
    lab.pe(0xA)
    mine = lab.pe(0x5E, pool=b"mine")
    user = lab.pu()
    user.ownPoolElements.append(mine)
    client = lab.connect(user, POOL)
    s = session(client)
    s.write(b"hello")
    lab.network.run()
    [message] = lab.worker(0xA).messages
    assert message.sender is not None
    assert (message.sender.pool_handle, message.sender.pe_identifier) == (b"mine", 0x5E)
    assert message.peer is not None and message.peer.host == "127.0.0.1"
    [card] = lab.worker(0xA).cards
    assert card.pool_handle == b"mine"
    [answer] = client.received
    assert answer.sender == PoolElementHandle(POOL, 0xA, s.poolElement.user_transport)  # type: ignore[union-attr]


def test_unorder_sets_the_mapping_u_flag() -> None:
    """ASAP_SCTP_UNORDER maps onto the TCP mapping's U flag; the message still arrives
    (TCP delivers in order anyway)."""
    lab = Lab()
    a = lab.pe(0xA)
    user = lab.pu()
    client = lab.connect(user, POOL)
    s = session(client)
    lab.hold(a)
    s.send(b"u", SendOptions.SCTP_UNORDER)
    s.write(b"o")
    lab.network.run()
    assert s.connection is not None
    assert [(d.user_data, d.unordered) for d in s.connection.unacknowledged()] == [
        (b"u", True),
        (b"o", False),
    ]
    assert lab.worker(0xA).received == [b"u", b"o"]


def test_abort_leaves_what_was_not_delivered() -> None:
    """Even an abort by the application says what did not arrive (Session.undelivered)."""
    lab = Lab()
    a = lab.pe(0xA)
    user = lab.pu()
    client = lab.connect(user, POOL)
    s = session(client)
    lab.hold(a)
    s.write(b"sent")
    lab.network.run()
    s.write(b"queued")
    s.abortConnection()
    assert [(m.data, m.sent) for m in s.undelivered] == [(b"sent", True), (b"queued", False)]


def test_to_all_options_are_refused_on_a_session() -> None:
    """TO_ALL and TO_SELF belong to PoolUser.sendToAll, not to one session."""
    lab = Lab()
    lab.pe(0xA)
    user = lab.pu()
    s = session(lab.connect(user, POOL))
    try:
        s.send(b"x", SendOptions.SEND_TO_ALL)
    except ValueError as e:
        assert "sendToAll" in str(e)
    else:
        raise AssertionError("SEND_TO_ALL was accepted on a session")


def test_application_failover_moves_resends_and_reports() -> None:
    """``session.failover()`` (the application's Transport.Failure, 6.9.2) leaves the PE,
    reports it, resends what it had not acknowledged (marked) and fires once resumed."""
    lab = Lab()
    a, b = lab.pe(0xA), lab.pe(0xB)
    user = lab.pu()
    client = lab.connect(user, POOL)
    s = session(client)
    first, [second] = onPe(lab, s, a, b)
    lab.hold(first)
    s.write(b"x")
    lab.network.run()
    resumed = s.failover()
    lab.network.run()
    assert fired(resumed) is None
    assert s.poolElement is not None and s.poolElement.pe_identifier == second.peIdentifier
    assert lab.registry.unreachable == [first.peIdentifier]
    assert [(m.data, m.resent) for m in lab.worker(second.peIdentifier).messages] == [(b"x", True)]
    assert "application asked" in s.failovers[0].reason


def test_stopping_the_pool_user_during_a_failover_reports_the_messages() -> None:
    """The pool user stopping while an observer decides ends the session with the
    messages in its report."""
    lab = Lab()
    a, b = lab.pe(0xA), lab.pe(0xB)
    answer: Deferred[bool] = Deferred()
    user = lab.pu(failoverObservers=[Observer(answer)])
    client = lab.connect(user, POOL)
    s = session(client)
    first, _ = onPe(lab, s, a, b)
    lab.hold(first)
    s.write(b"held")
    lab.network.run()
    lab.kill(first)
    assert s.failingOver
    user.stopService()
    lab.network.run()
    answer.callback(True)
    lab.network.run()
    assert s.closed
    assert [(m.data, m.sent) for m in s.undelivered] == [(b"held", True)]


def test_abort_during_a_failover_fails_the_waiter_and_keeps_the_messages() -> None:
    """An abort while ``failover()`` is pending errbacks it and leaves the messages the
    failover held in ``undelivered``."""
    lab = Lab()
    a, b = lab.pe(0xA), lab.pe(0xB)
    answer: Deferred[bool] = Deferred()
    user = lab.pu(failoverObservers=[Observer(answer)])
    s = session(lab.connect(user, POOL))
    first, _ = onPe(lab, s, a, b)
    lab.hold(first)
    s.write(b"kept")
    lab.network.run()
    waiting = s.failover()
    lab.network.run()
    s.abortConnection()
    failures: list[object] = []
    waiting.addErrback(failures.append)
    assert len(failures) == 1
    assert [(m.data, m.sent, m.resent) for m in s.undelivered] == [(b"kept", True, False)]


def test_unknown_pe_handle_and_unknown_pool_fail_with_the_reason() -> None:
    """A PE handle whose PE is not in the pool (and gives no transport) fails with
    NoPoolElementAvailable; TO_ALL to an unknown pool fails carrying the message."""
    lab = Lab()
    lab.pe(0xA)
    user = lab.pu()
    result: list[object] = []
    user.connect(PoolElementHandle(POOL, 0xDEAD), Factory.forProtocol(Client)).addBoth(
        result.append
    )
    lab.network.run()
    [failure] = result
    assert isinstance(failure, Failure) and isinstance(failure.value, NoPoolElementAvailable)
    assert "0x0000dead" in failure.getErrorMessage()
    result.clear()
    user.sendToAll(b"nobody", b"lost?").addBoth(result.append)
    lab.network.run()
    [failure] = result
    assert isinstance(failure, Failure) and isinstance(failure.value, AsapError)
    assert [m.data for m in failure.value.undelivered] == [b"lost?"]


def test_business_card_names_our_own_pool() -> None:
    """RFC 5352 3.9: a PU/PE's card names its own pool and PE; a plain PU has none to
    send."""
    lab = Lab()
    lab.pe(0xA)
    mine = lab.pe(0x5E, pool=b"mine")
    user = lab.pu()
    s = session(lab.connect(user, POOL))
    try:
        s.sendBusinessCard()
    except ValueError as e:
        assert "PU/PE" in str(e)
    else:
        raise AssertionError("a plain pool user sent a business card")
    user.ownPoolElements.append(mine)
    s.sendBusinessCard()
    lab.network.run()
    [card] = lab.worker(0xA).cards
    assert card.pool_handle == b"mine"
    assert [pe.pe_identifier for pe in card.pool_elements] == [0x5E]


def test_unreachable_pe_handle_fails_over_within_its_pool() -> None:
    """SEND_FAILOVER to a PE handle whose PE does not answer: it is reported and the
    session starts on another PE of the same pool (6.5.5)."""
    lab = Lab()
    lab.pe(0xA)
    b = lab.pe(0xB)
    user = lab.pu()
    lab.network.listeners.pop(lab.portOf(b))
    s = session(lab.connect(user, PoolElementHandle(POOL, 0xB)))
    assert s.poolElement is not None and s.poolElement.pe_identifier == 0xA
    assert lab.registry.unreachable == [0xB]


def test_cache_populate_resolves_whatever_the_cache_holds() -> None:
    """6.3 CachePopulateRequest: each call sends a handle resolution and stores the
    answer, even while the cache entry is fresh."""
    lab = Lab()
    lab.pe(0xA)
    user = lab.pu()
    user.cache.stale_timeout = 60.0
    before = user.counters["resolutions_sent"]
    for count in (1, 2):
        answer = user.populateCache(POOL)
        lab.network.run()
        assert [pe.pe_identifier for pe in fired(answer)] == [0xA]
        assert user.counters["resolutions_sent"] == before + count
        assert user.cache.state(POOL, lab.clock.seconds()) is CacheState.FRESH
