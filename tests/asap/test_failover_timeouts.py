"""The failover core's timers (asap/failover.py): observers that never answer veto at the
decision timeout (failing closed, the undelivered messages in the report), and a candidate
whose connection is never ready is abandoned at the connect timeout. First the core alone
(``now`` in, actions out), then a real pool user and real pool elements on a Clock."""

from __future__ import annotations

from ipaddress import IPv4Address
from typing import Any

import pytest
from twisted.internet.defer import Deferred
from twisted.internet.protocol import Factory, Protocol
from twisted.logger import capturedLogs
from twisted.python.failure import Failure

from tests.asap.delivery_support import POOL, Lab, Observer
from tests.asap.test_delivery import ended, onPe, session
from twisted_rserpool.asap import (
    FailoverRefused,
    NoPoolElementAvailable,
    PoolUser,
    UndeliveredMessage,
)
from twisted_rserpool.asap.failover import (
    Abandon,
    AskObservers,
    Connect,
    End,
    FailoverCore,
    FailoverState,
    ReportUnreachable,
    Resume,
    Select,
    TimedOut,
)
from twisted_rserpool.security.context import SecurityContext
from twisted_rserpool.wire.parameters import PoolElementParameter, RoundRobinPolicy, TcpTransport

CONTEXT = SecurityContext(authenticated=True, tls_version="TLSv1.3")
SENT = [UndeliveredMessage(b"one", 0)]
QUEUED = [UndeliveredMessage(b"two", 0)]


def element(identifier: int) -> PoolElementParameter:
    return PoolElementParameter(
        identifier,
        0,
        60,
        TcpTransport(7000 + identifier, IPv4Address("127.0.0.1")),
        RoundRobinPolicy(),
    )


A, B, C = element(1), element(2), element(3)


def failing(**timeouts: Any) -> FailoverCore:
    """A core attached to A whose PE just failed with one unacknowledged and one queued
    message: it asks for a candidate."""
    core = FailoverCore(b"pool", **timeouts)
    core.attached(A, CONTEXT)
    actions = core.lost("reset", SENT, QUEUED)
    assert isinstance(actions[-1], Select)
    return core


def state(core: FailoverCore) -> FailoverState:
    return core.state


# ---------------------------------------------------------------------- the core


def test_observers_that_never_answer_veto_at_the_decision_timeout() -> None:
    """The decision deadline runs from AskObservers; before it nothing happens, at it the
    failover is refused (fail closed): the candidate abandoned, FailoverRefused carrying
    every undelivered message, and a late answer changes nothing."""
    core = failing(decision_timeout=10.0)
    assert core.candidate(B, now=100.0) == [Connect(B)]
    assert core.next_deadline() is None  # no connect timeout configured
    [ask] = core.connected(B, CONTEXT, now=101.0)
    assert isinstance(ask, AskObservers)
    assert core.next_deadline() == 111.0
    assert core.handle_timer(110.9) == []
    assert state(core) is FailoverState.DECIDING
    timedOut, abandon, end = core.handle_timer(111.0)
    assert timedOut == TimedOut("decision", B, 10.0)
    assert abandon == Abandon(B)
    assert isinstance(end, End) and isinstance(end.error, FailoverRefused)
    assert "did not answer within 10 s" in str(end.error)
    assert [(m.data, m.sent) for m in end.error.undelivered] == [(b"one", True), (b"two", False)]
    assert state(core) is FailoverState.CLOSED and core.next_deadline() is None
    assert core.decided(True) == []  # the observer woke up too late


def test_a_decision_in_time_clears_the_deadline() -> None:
    """Observers answering before the deadline resume the session; the timer is gone."""
    core = failing(decision_timeout=10.0, connect_timeout=5.0)
    core.candidate(B, now=0.0)
    core.connected(B, CONTEXT, now=1.0)
    [resume] = core.decided(True)
    assert isinstance(resume, Resume)
    assert core.next_deadline() is None and core.handle_timer(1000.0) == []


def test_connect_timeout_abandons_the_candidate_and_selects_the_next() -> None:
    """A candidate not ready connect_timeout after Connect is abandoned, reported
    unreachable and excluded; its late readiness is ignored and the next candidate gets a
    deadline of its own."""
    core = failing(connect_timeout=5.0)
    core.candidate(B, now=10.0)
    assert core.next_deadline() == 15.0
    assert core.handle_timer(14.0) == []
    actions = core.handle_timer(15.0)
    assert actions == [
        TimedOut("connect", B, 5.0),
        Abandon(B),
        ReportUnreachable(B),
        Select(frozenset({A.pe_identifier, B.pe_identifier}), ()),
    ]
    assert core.next_deadline() is None  # selecting has no timer of its own
    assert core.connected(B, CONTEXT, now=16.0) == []
    assert core.candidate(C, now=20.0) == [Connect(C)]
    assert core.next_deadline() == 25.0
    [ask] = core.connected(C, CONTEXT, now=21.0)
    assert isinstance(ask, AskObservers) and ask.event.new_element == C


def test_connect_timeouts_up_to_max_attempts_end_with_the_messages() -> None:
    """Every candidate timing out uses up max_attempts: the session ends with
    NoPoolElementAvailable carrying the messages."""
    core = failing(connect_timeout=1.0, max_attempts=2)
    core.candidate(B, now=0.0)
    core.handle_timer(1.0)
    core.candidate(C, now=1.0)
    actions = core.handle_timer(2.0)
    assert actions[:3] == [TimedOut("connect", C, 1.0), Abandon(C), ReportUnreachable(C)]
    end = actions[-1]
    assert isinstance(end, End) and isinstance(end.error, NoPoolElementAvailable)
    assert [m.data for m in end.error.undelivered] == [b"one", b"two"]


def test_timeouts_must_be_positive() -> None:
    for bad in (0.0, -1.0):
        with pytest.raises(ValueError):
            FailoverCore(b"pool", decision_timeout=bad)
        with pytest.raises(ValueError):
            FailoverCore(b"pool", connect_timeout=bad)
    with pytest.raises(ValueError):
        PoolUser([], failoverDecisionTimeout=0.0)


# ---------------------------------------------------------------------- the adapter


def test_an_observer_that_never_answers_ends_the_session_at_the_decision_timeout() -> None:
    """A pool user whose observer returns a Deferred that never fires (it used to hold the
    session, its messages and the new PE's connection forever): at failoverDecisionTimeout
    the session ends with FailoverRefused carrying the unacknowledged and the queued
    messages, the candidate's connection is closed, nothing reached the new PE, and the
    log says why."""
    lab = Lab()
    a, b = lab.pe(0xA), lab.pe(0xB)
    never: Deferred[bool] = Deferred()
    user = lab.pu(failoverObservers=[Observer(never)], failoverDecisionTimeout=3.0)
    client = lab.connect(user, POOL)
    s = session(client)
    first, [second] = onPe(lab, s, a, b)
    lab.hold(first)
    s.write(b"one")
    lab.network.run()
    with capturedLogs() as events:
        lab.kill(first)
        s.write(b"two")
        lab.network.advance(2.5)
        assert s.failingOver and client.reason is None
        lab.network.advance(1.0)
    error = ended(client, FailoverRefused)
    assert "did not answer within 3 s" in str(error)
    assert [(m.data, m.sent) for m in error.undelivered] == [(b"one", True), (b"two", False)]
    assert s.undelivered == error.undelivered
    assert lab.workers.get(second.peIdentifier, []) == []
    assert lab.network.linksTo(lab.portOf(second)) == []  # the candidate was closed
    [timeout] = [e for e in events if e.get("timeout") == "decision"]
    assert "refused (failing closed)" in timeout["outcome"] and timeout["seconds"] == 3.0
    never.callback(True)  # far too late: nothing happens
    lab.network.run()
    assert lab.workers.get(second.peIdentifier, []) == []


def test_a_candidate_never_ready_is_abandoned_at_the_connect_timeout() -> None:
    """During a failover, a PE that accepts the connection and never answers the TCP
    mapping's INIT is abandoned after connectTimeout (the core's timer), reported
    unreachable, and the session resumes on the next PE with the message."""
    lab = Lab()
    a, b, c = lab.pe(0xA), lab.pe(0xB), lab.pe(0xC)
    user = lab.pu(connectTimeout=2.0)
    client = lab.connect(user, POOL)
    s = session(client)
    first, others = onPe(lab, s, a, b, c)
    mute = min(others, key=lambda e: e.peIdentifier)
    alive = max(others, key=lambda e: e.peIdentifier)

    def muteFirst(
        poolHandle: bytes, candidates: list[PoolElementParameter]
    ) -> PoolElementParameter:
        return min(candidates, key=lambda e: e.pe_identifier)

    user.choosePoolElement = muteFirst  # type: ignore[method-assign]
    lab.network.listeners[lab.portOf(mute)] = Factory.forProtocol(Protocol)  # accepts, mute
    lab.hold(first)
    s.write(b"m")
    lab.network.run()
    with capturedLogs() as events:
        lab.kill(first)
        lab.network.advance(1.5)
        assert s.failingOver and lab.network.linksTo(lab.portOf(mute))
        lab.network.advance(1.0)
    assert s.poolElement is not None and s.poolElement.pe_identifier == alive.peIdentifier
    assert mute.peIdentifier in lab.registry.unreachable
    assert lab.network.linksTo(lab.portOf(mute)) == []
    assert [(m.data, m.resent) for m in lab.worker(alive.peIdentifier).messages] == [(b"m", True)]
    assert [e["seconds"] for e in events if e.get("timeout") == "connect"] == [2.0]


def test_the_first_connection_to_a_mute_pe_times_out_too() -> None:
    """The session's first connection (before the core runs) keeps the adapter's
    connectTimeout: a mute PE is given up, reported, and the next PE serves."""
    lab = Lab()
    mute, alive = lab.pe(0xA), lab.pe(0xB)
    user = lab.pu(connectTimeout=2.0)

    def muteFirst(
        poolHandle: bytes, candidates: list[PoolElementParameter]
    ) -> PoolElementParameter:
        return min(candidates, key=lambda e: e.pe_identifier)

    user.choosePoolElement = muteFirst  # type: ignore[method-assign]
    lab.network.listeners[lab.portOf(mute)] = Factory.forProtocol(Protocol)
    result: list[object] = []
    user.connect(POOL, Factory.forProtocol(Protocol)).addBoth(result.append)
    lab.network.advance(1.5)
    assert result == []
    lab.network.advance(1.0)
    [protocol] = result
    assert isinstance(protocol, Protocol)
    assert protocol.transport is not None
    s = protocol.transport
    assert s.poolElement.pe_identifier == alive.peIdentifier  # type: ignore[attr-defined]
    assert mute.peIdentifier in lab.registry.unreachable
    assert lab.network.linksTo(lab.portOf(mute)) == []


def test_a_connection_given_up_before_its_endpoint_answers_fails_quietly() -> None:
    """A connection whose endpoint reports it only after connectTimeout (a slow TLS
    handshake) is closed when given up and again when the endpoint answers late; the
    failure of its readiness is consumed (no 'Unhandled error in Deferred' when it is
    collected), and the next PE serves."""
    lab = Lab()
    mute, alive = lab.pe(0xA), lab.pe(0xB)
    user = lab.pu(connectTimeout=2.0)

    def muteFirst(
        poolHandle: bytes, candidates: list[PoolElementParameter]
    ) -> PoolElementParameter:
        return min(candidates, key=lambda e: e.pe_identifier)

    user.choosePoolElement = muteFirst  # type: ignore[method-assign]
    lab.network.listeners[lab.portOf(mute)] = Factory.forProtocol(Protocol)
    late: list[tuple[Deferred[Any], Any]] = []
    direct = user.endpointForPoolElement

    class LateEndpoint:
        def __init__(self, inner: Any) -> None:
            self.inner = inner

        def connect(self, factory: Any) -> Deferred[Any]:
            answer: Deferred[Any] = Deferred()
            self.inner.connect(factory).addCallback(lambda p: late.append((answer, p)))
            return answer

    def endpointFor(element: PoolElementParameter) -> Any:
        endpoint = direct(element)
        return LateEndpoint(endpoint) if element.pe_identifier == mute.peIdentifier else endpoint

    user.endpointForPoolElement = endpointFor  # type: ignore[method-assign]
    result: list[object] = []
    user.connect(POOL, Factory.forProtocol(Protocol)).addBoth(result.append)
    lab.network.advance(2.5)
    [(answer, abandoned)] = late
    answer.callback(abandoned)  # the endpoint answers after the session gave up
    lab.network.advance(0.5)
    assert abandoned.whenReady.called
    assert not isinstance(abandoned.whenReady.result, Failure)  # consumed, not unhandled
    [served] = result
    assert isinstance(served, Protocol) and served.transport is not None
    assert served.transport.poolElement.pe_identifier == alive.peIdentifier  # type: ignore[attr-defined]
