"""The sans-IO cores and adapters of ASAP endpoints on an injected clock: T1-T5, T7,
MAX-REQUEST-RETRANSMIT, MAX-REG-ATTEMPT, RETRAN-MAX, keep-alive rules, the notifier's
decision and the unreachable-report limits."""

from __future__ import annotations

from dataclasses import replace
from ipaddress import IPv4Address
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import Clock
from zope.interface import implementer

from tests.transport.test_protocol import ready
from twisted_rserpool.asap import AsapTimers, FailoverEvent, IFailoverObserver, PoolUser
from twisted_rserpool.asap.errors import RequestTimedOut
from twisted_rserpool.asap.hunt import HuntStep, ServerHunt
from twisted_rserpool.asap.link import HomeServerLink
from twisted_rserpool.asap.notifier import decide
from twisted_rserpool.asap.outbox import UNORDERED, Outbox
from twisted_rserpool.asap.registration import (
    AdoptHome,
    Deregistered,
    HuntForServer,
    HuntInParallel,
    Refused,
    Registered,
    RegistrationCore,
    RegistrationState,
    ReportFailure,
    SendToHome,
    SendToPeer,
)
from twisted_rserpool.asap.requests import GiveUp, PendingRequests, Retransmit
from twisted_rserpool.security.context import SecurityContext
from twisted_rserpool.transport.connection import MappingConfig
from twisted_rserpool.wire import asap
from twisted_rserpool.wire.errors import CauseCode
from twisted_rserpool.wire.fastpath import ack_chunks
from twisted_rserpool.wire.parameters import (
    OperationError,
    PoolElementParameter,
    RoundRobinPolicy,
    TcpTransport,
)
from twisted_rserpool.wire.tcpmapping import Data

TIMERS = AsapTimers()
POOL = b"pool"
ELEMENT = PoolElementParameter(
    0x1234, 0, 300, TcpTransport(7000, IPv4Address("127.0.0.1")), RoundRobinPolicy()
)
TLS13 = SecurityContext(True, "TLSv1.3", "TLS_AES_256_GCM_SHA384", certificate_subject="CN=a")
TLS12 = SecurityContext(
    True, "TLSv1.2", "ECDHE-ECDSA-AES256-GCM-SHA384", certificate_subject="CN=b"
)


# ---------------------------------------------------------------------- timers


def test_t4_is_life_less_20_s_capped_at_10_minutes() -> None:
    """T4-reregistration: min(10 min, life - 20 s); half the life for short lives."""
    assert TIMERS.reregistration_delay(3600) == 600.0
    assert TIMERS.reregistration_delay(300) == 280.0
    assert TIMERS.reregistration_delay(30) == 15.0
    assert TIMERS.reregistration_delay(-1) == 600.0


def test_rfc_defaults() -> None:
    """The defaults are RFC 5352 section 7's values."""
    assert (TIMERS.t1_enrp_request, TIMERS.t2_registration, TIMERS.t3_deregistration) == (
        15.0,
        30.0,
        30.0,
    )
    assert (TIMERS.t5_server_hunt, TIMERS.t7_enrp_outdate, TIMERS.retran_max) == (10.0, 5.0, 60.0)
    assert (TIMERS.max_request_retransmit, TIMERS.max_reg_attempt) == (2, 2)
    with pytest.raises(ValueError):
        AsapTimers(t1_enrp_request=0)


# ---------------------------------------------------------------------- T5, T7


def test_t5_doubles_up_to_retran_max_and_abandons_the_attempt() -> None:
    """SH5: each expiry of T5 doubles it (capped at RETRAN-MAX), cancels the attempt under
    way and tries the next server."""
    hunt = ServerHunt(["a", "b"], AsapTimers(t5_server_hunt=10, retran_max=30))
    assert hunt.begin(0.0) == HuntStep(attempt="a")
    assert hunt.next_deadline() == 10.0
    assert hunt.handle_timer(9.9) == HuntStep()
    assert hunt.handle_timer(10.0) == HuntStep(cancel="a", attempt="b")
    assert hunt.next_deadline() == 30.0  # T5 = 20
    assert hunt.handle_timer(30.0) == HuntStep(cancel="b", attempt="a")
    assert hunt.t5 == 30.0 and hunt.next_deadline() == 60.0
    hunt.handle_timer(60.0)
    assert hunt.t5 == 30.0  # RETRAN-MAX
    assert hunt.rounds == 4


def test_failed_attempt_moves_on_then_waits_for_t5() -> None:
    """SH4: a failed attempt tries another server; when all failed, T5 starts a new round."""
    hunt = ServerHunt(["a", "b"], TIMERS)
    hunt.begin(0.0)
    assert hunt.failed("a", 1.0) == HuntStep(attempt="b")
    assert hunt.failed("b", 2.0) == HuntStep()
    assert hunt.current is None
    assert hunt.handle_timer(10.0).attempt == "a"


def test_success_resets_t5() -> None:
    """SH3: an established connection ends the hunt and resets T5 to its initial value."""
    hunt = ServerHunt(["a"], TIMERS)
    hunt.begin(0.0)
    hunt.handle_timer(10.0)
    assert hunt.t5 == 20.0
    hunt.succeeded("a")
    assert not hunt.hunting and hunt.t5 == 10.0 and hunt.next_deadline() is None


def test_announced_servers_are_hints_that_expire_after_t7() -> None:
    """An announced server joins the candidates for T7-ENRPoutdate seconds."""
    hunt = ServerHunt(["a"], TIMERS)
    hunt.announced("x", 0.0)
    assert hunt.candidates(4.9) == ["a", "x"]
    assert hunt.next_deadline() == 5.0
    hunt.handle_timer(5.0)
    assert hunt.candidates(5.0) == ["a"]
    hunt.announced("a", 6.0)  # a configured server is no hint
    assert hunt.next_deadline() is None


# ---------------------------------------------------------------------- T1


def test_t1_retransmits_max_request_retransmit_times_then_gives_up() -> None:
    """T1-ENRPrequest: the request is sent again up to MAX-REQUEST-RETRANSMIT times."""
    pending: PendingRequests[str] = PendingRequests(15.0, 2)
    pending.sent("r", 0.0)
    assert pending.handle_timer(14.9) == []
    assert pending.handle_timer(15.0) == [Retransmit("r", 1)]
    assert pending.handle_timer(30.0) == [Retransmit("r", 2)]
    assert pending.handle_timer(45.0) == [GiveUp("r")]
    assert "r" not in pending and pending.next_deadline() is None


def test_answer_stops_t1() -> None:
    """An answer stops the timer; a late or unknown answer is not pending."""
    pending: PendingRequests[str] = PendingRequests(15.0, 2)
    pending.sent("r", 0.0)
    assert pending.answered("r")
    assert not pending.answered("r")
    assert pending.handle_timer(100.0) == []


# ---------------------------------------------------------------------- T2, T3, T4


def registered_core(now: float = 0.0) -> RegistrationCore:
    core = RegistrationCore(POOL, ELEMENT, TIMERS)
    core.home_connected(now)
    core.message_from_home(asap.RegistrationResponse(POOL, ELEMENT.pe_identifier), now)
    return core


def test_registration_sends_and_starts_t2() -> None:
    """R2-R4: the registration carries the PE; T2 runs until the response."""
    core = RegistrationCore(POOL, ELEMENT, TIMERS)
    [send] = core.home_connected(0.0)
    assert isinstance(send, SendToHome)
    assert send.message == asap.Registration(POOL, ELEMENT)
    assert core.next_deadline() == 30.0
    actions = core.message_from_home(asap.RegistrationResponse(POOL, ELEMENT.pe_identifier), 1.0)
    assert actions == [Registered(300, None)]
    assert core.state is RegistrationState.REGISTERED
    assert core.next_deadline() == 1.0 + 280.0  # T4


def test_t2_expiry_hunts_and_reports_after_max_reg_attempt() -> None:
    """T2 expiry sends the registration again to the same server and hunts in parallel
    (RFC 5352 3.7.2); at MAX-REG-ATTEMPT the failure is reported once."""
    core = RegistrationCore(POOL, ELEMENT, TIMERS)
    core.home_connected(0.0)
    hunt = HuntInParallel("no ASAP_REGISTRATION_RESPONSE within T2-registration")
    send = SendToHome(asap.Registration(POOL, ELEMENT))
    assert core.handle_timer(30.0) == [send, hunt]
    assert core.handle_timer(60.0) == [ReportFailure(2), send, hunt]
    assert core.handle_timer(core.next_deadline() or 0.0) == [send, hunt]  # reported once


def test_t4_reregisters_with_the_same_identifier() -> None:
    """T4 expiry re-registers with the same PE identifier, restarting T2."""
    core = registered_core()
    [send] = core.handle_timer(280.0)
    assert isinstance(send, SendToHome) and isinstance(send.message, asap.Registration)
    assert send.message.pool_element.pe_identifier == ELEMENT.pe_identifier
    assert core.next_deadline() == 310.0


def test_policy_update_reregisters_at_once() -> None:
    """Updating the policy (e.g. the load) re-registers immediately."""
    core = registered_core()
    policy = RoundRobinPolicy()
    [send] = core.update(5.0, policy)
    assert isinstance(send, SendToHome) and isinstance(send.message, asap.Registration)


def test_rejection_stops_registering() -> None:
    """An R-flag response is a refusal: no retry until the application corrects it."""
    core = RegistrationCore(POOL, ELEMENT, TIMERS)
    core.home_connected(0.0)
    error = OperationError.single(CauseCode.REJECTED_DUE_TO_SECURITY_CONSIDERATIONS)
    actions = core.message_from_home(
        asap.RegistrationResponse(POOL, ELEMENT.pe_identifier, reject=True, error=error), 1.0
    )
    assert actions == [Refused(error)]
    assert core.next_deadline() is None
    assert core.home_connected(2.0) == []


def test_t3_deregistration() -> None:
    """D4: T3 bounds the wait for the deregistration response."""
    core = registered_core()
    [send] = core.deregister(10.0)
    assert isinstance(send, SendToHome)
    assert send.message == asap.Deregistration(POOL, ELEMENT.pe_identifier)
    assert core.next_deadline() == 40.0
    # T3 expiry: sent again to the same server, hunting in parallel, MAX-REQUEST-RETRANSMIT
    # times; then given up.
    hunt = HuntInParallel("no ASAP_DEREGISTRATION_RESPONSE within T3-deregistration")
    assert core.handle_timer(40.0) == [send, hunt]
    assert core.handle_timer(70.0) == [send, hunt]
    assert core.handle_timer(100.0) == [Deregistered(False)]
    core = registered_core()
    core.deregister(10.0)
    answer = asap.DeregistrationResponse(POOL, ELEMENT.pe_identifier)
    assert core.message_from_home(answer, 11.0) == [Deregistered(True)]


def test_expiry_notice_reregisters() -> None:
    """An unsolicited deregistration response (registration expired) registers again."""
    core = registered_core()
    [send] = core.message_from_home(asap.DeregistrationResponse(POOL, ELEMENT.pe_identifier), 5)
    assert isinstance(send, SendToHome) and isinstance(send.message, asap.Registration)


def test_home_lost_hunts() -> None:
    """Losing the home connection starts the hunt."""
    core = registered_core()
    [hunt] = core.home_lost(5.0)
    assert isinstance(hunt, HuntForServer)
    assert core.state is RegistrationState.HUNTING


# ---------------------------------------------------------------------- keep-alives


def test_keep_alive_for_another_pool_is_discarded() -> None:
    """KA1: a keep-alive naming another pool handle is silently discarded."""
    core = registered_core()
    alive = asap.EndpointKeepAlive(7, b"other")
    assert core.keep_alive(alive, 1.0, trusted=True, from_home=True) == []


def test_keep_alive_is_acknowledged() -> None:
    """KA2: the answer names our pool handle and PE identifier."""
    core = registered_core()
    actions = core.keep_alive(asap.EndpointKeepAlive(7, POOL), 1.0, trusted=True, from_home=True)
    assert actions == [SendToPeer(asap.EndpointKeepAliveAck(POOL, ELEMENT.pe_identifier))]
    assert core.home_server == 7


def test_h_flag_adopts_an_authenticated_server_and_reregisters() -> None:
    """KA2.4: an H-flag keep-alive from another authenticated server makes it the home
    server, and the PE registers there."""
    core = registered_core()
    core.keep_alive(asap.EndpointKeepAlive(7, POOL), 1.0, trusted=True, from_home=True)
    actions = core.keep_alive(
        asap.EndpointKeepAlive(9, POOL, home=True), 2.0, trusted=True, from_home=False
    )
    assert actions[0] == SendToPeer(asap.EndpointKeepAliveAck(POOL, ELEMENT.pe_identifier))
    assert actions[1] == AdoptHome(9)
    assert isinstance(actions[2], SendToHome)
    registration = actions[2].message
    assert isinstance(registration, asap.Registration)
    assert registration.pool_element.home_server_identifier == 9
    assert core.home_server == 9


def test_h_flag_from_an_unauthenticated_sender_is_ignored() -> None:
    """A keep-alive from a sender that did not authenticate changes nothing and is not
    answered."""
    core = registered_core()
    alive = asap.EndpointKeepAlive(9, POOL, home=True)
    assert core.keep_alive(alive, 2.0, trusted=False, from_home=False) == []
    assert core.home_server is None


# ---------------------------------------------------------------------- notifier


def event(old: SecurityContext, new: SecurityContext) -> FailoverEvent:
    other = replace(ELEMENT, pe_identifier=0x99)
    return FailoverEvent(POOL, ELEMENT, other, old, new, "test", 1)


@implementer(IFailoverObserver)
class Answer:
    def __init__(self, answer: Any) -> None:
        self.answer = answer
        self.calls = 0

    def failoverOccurred(self, event: FailoverEvent) -> Any:
        self.calls += 1
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer


def result(d: Deferred[Any]) -> Any:
    out: list[Any] = []
    d.addBoth(out.append)
    assert out, "not fired"
    return out[0]


def test_weaker_failover_is_refused_by_default() -> None:
    """A move to an older TLS version is weaker and refused unless allowed."""
    e = event(TLS13, TLS12)
    assert e.weaker and e.changed
    assert not result(decide(e, [], refuseWeaker=True)).allowed
    assert result(decide(e, [], refuseWeaker=False)).allowed


def test_every_observer_hears_and_any_may_veto() -> None:
    """All observers are called even after a veto; False, a Deferred firing False or an
    exception vetoes."""
    e = event(TLS13, TLS13)
    assert not e.changed and not e.weaker
    observers = [Answer(True), Answer(succeed(False)), Answer(None)]
    decision = result(decide(e, observers, refuseWeaker=True))
    assert not decision.allowed and "vetoed" in decision.reason
    assert [o.calls for o in observers] == [1, 1, 1]
    assert not result(decide(e, [Answer(RuntimeError("boom"))], refuseWeaker=True)).allowed
    assert result(decide(e, [Answer(True), Answer(None)], refuseWeaker=True)).allowed


def test_pending_observer_holds_the_decision() -> None:
    """The decision waits for an observer's Deferred."""
    answer: Deferred[bool] = Deferred()
    decision = decide(event(TLS13, TLS13), [Answer(answer)], refuseWeaker=True)
    assert not decision.called
    answer.callback(True)
    assert result(decision).allowed


# ---------------------------------------------------------------------- adapters on a Clock


class FakeLink:
    """Stands for the home server link: records what is sent and hunts asked for."""

    ready = True

    def __init__(self) -> None:
        self.sent: list[asap.AsapMessage] = []
        self.hunts: list[str] = []

    def send(self, message: asap.AsapMessage) -> bool:
        self.sent.append(message)
        return True

    def huntFor(self, reason: str) -> None:
        self.hunts.append(reason)

    def huntInParallel(self, reason: str) -> None:
        self.hunts.append(f"in parallel: {reason}")

    def endHunt(self) -> None:
        pass

    def releasePrevious(self) -> None:
        pass

    def stop(self) -> None:
        pass


def offline_user(clock: Clock, **options: Any) -> tuple[PoolUser, FakeLink]:
    user = PoolUser([], clock=clock, timers=AsapTimers(), **options)
    user.running = True
    link = FakeLink()
    user.link = link  # type: ignore[assignment]
    return user, link


def test_pool_user_t1_retransmits_via_hunt_then_fails() -> None:
    """A resolution unanswered for T1 is sent again to the same server and a hunt starts
    in parallel; after MAX-REQUEST-RETRANSMIT more T1 periods it fails with
    RequestTimedOut."""
    clock = Clock()
    user, link = offline_user(clock)
    d = user.resolve(POOL)
    assert link.sent == [asap.HandleResolution(POOL)]
    clock.advance(15.0)
    assert link.hunts == ["in parallel: T1-ENRPrequest expired"]
    assert link.sent == [asap.HandleResolution(POOL)] * 2
    clock.advance(15.0)
    assert not d.called
    clock.advance(15.0)
    failure = result(d)
    assert failure.check(RequestTimedOut)


def test_pool_user_cache_fresh_then_stale() -> None:
    """A fresh cache answers without a request (C4); a stale one answers at once and is
    refreshed in parallel (C2, C3)."""
    clock = Clock()
    user, link = offline_user(clock)
    d = user.resolve(POOL)
    user._homeMessage(None, asap.HandleResolutionResponse(POOL, (ELEMENT,)))  # type: ignore[arg-type]
    assert [e.pe_identifier for e in result(d)] == [ELEMENT.pe_identifier]
    clock.advance(1.0)
    assert [e.pe_identifier for e in result(user.resolve(POOL))] == [ELEMENT.pe_identifier]
    assert len(link.sent) == 1
    clock.advance(5.0)  # stale_cache_value
    assert result(user.resolve(POOL))
    assert len(link.sent) == 2


def test_unreachable_reports_are_rate_limited() -> None:
    """A PE is reported at most once per interval, and all reports within the global rate."""
    clock = Clock()
    user, link = offline_user(clock, unreachableInterval=5.0)
    assert user.reportUnreachable(POOL, 1)
    assert not user.reportUnreachable(POOL, 1)
    clock.advance(5.0)
    assert user.reportUnreachable(POOL, 1)
    sent = sum(user.reportUnreachable(POOL, pe) for pe in range(2, 100))
    assert sent <= 5  # the burst of the default rate
    assert user.counters["unreachable_suppressed"] >= 94
    assert all(isinstance(m, asap.EndpointUnreachable) for m in link.sent)


class NeverConnects:
    """A client endpoint whose connection attempts never complete."""

    def __init__(self) -> None:
        self.attempts: list[Deferred[Any]] = []

    def connect(self, factory: Any) -> Deferred[Any]:
        d: Deferred[Any] = Deferred()
        self.attempts.append(d)
        return d


def test_link_abandons_attempts_when_t5_expires() -> None:
    """The link gives each round T5, cancels the attempt under way and moves on."""
    clock = Clock()
    a, b = NeverConnects(), NeverConnects()
    link = HomeServerLink(
        [a, b],  # type: ignore[list-item]
        clock,
        AsapTimers(t5_server_hunt=1.0, retran_max=4.0),
        onReady=lambda c, s: None,
        onMessage=lambda c, m: None,
        onLost=lambda c: None,
    )
    link.start()
    assert len(a.attempts) == 1 and not b.attempts
    clock.advance(1.0)
    assert a.attempts[0].called  # cancelled
    assert len(b.attempts) == 1
    clock.advance(2.0)
    assert len(a.attempts) == 2
    link.stop()
    assert not clock.getDelayedCalls()


# ---------------------------------------------------------------------- outbox


def test_outbox_keeps_messages_apart_unless_streaming() -> None:
    """Each write is one message; streaming merges writes up to 60 000 bytes, never into
    or across a control message, and splits longer writes."""
    from twisted_rserpool.asap.outbox import MAX_MESSAGE, Outbox

    messages = Outbox()
    messages.put(b"a", 0)
    messages.put(b"b", 0)
    assert [bytes(d) for d, _, _ in messages.entries()] == [b"a", b"b"]
    stream = Outbox(streaming=True)
    stream.put(b"a", 0)
    stream.put(b"b", 0)
    stream.put_control(b"cookie", 11)
    stream.put(b"c", 0)
    stream.put(b"x" * MAX_MESSAGE, 0)
    stream.put(b"y" * (MAX_MESSAGE + 1), 0)
    stream.put(b"z", 0)
    stream.put(b"z", 0)
    sizes = [len(d) for d, _, _ in stream.entries()]
    assert [bytes(d) for d, _, _ in stream.entries()[:3]] == [b"ab", b"cookie", b"c"]
    assert sizes[3:] == [MAX_MESSAGE, MAX_MESSAGE, 1, 2]


class Ready:
    """Stands for a ready home connection."""

    ready = True


def test_announcements_become_hints_for_t7() -> None:
    """An ASAP_SERVER_ANNOUNCE on the home connection adds the server (made into an
    endpoint by the owner's factory) to the hunt's candidates until T7 expires."""
    clock = Clock()
    made: list[TcpTransport] = []

    def endpoint(transport: TcpTransport) -> Any:
        made.append(transport)
        return ("announced", transport.port)

    link = HomeServerLink(
        [],
        clock,
        AsapTimers(),
        onReady=lambda c, s: None,
        onMessage=lambda c, m: None,
        onLost=lambda c: None,
        announcedEndpoint=endpoint,
    )
    link.connection = Ready()  # type: ignore[assignment]
    announce = asap.ServerAnnounce(9, (TcpTransport(3864, IPv4Address("127.0.0.2")),))
    link._message(link.connection, announce)  # type: ignore[arg-type]
    candidates: list[Any] = link.hunt.candidates(clock.seconds())
    assert candidates == [("announced", 3864)]
    assert made == [TcpTransport(3864, IPv4Address("127.0.0.2"))]
    clock.advance(5.0)
    assert link.hunt.candidates(clock.seconds()) == []


@st.composite
def outbox_steps(draw: st.DrawFn) -> list[tuple[Any, ...]]:
    """Puts (PPID 0 or 5; no meta, the U flag or another option), control messages,
    messages put first, pumps and the peer's ACKs, in any order."""
    steps: list[tuple[Any, ...]] = []
    for _ in range(draw(st.integers(0, 40))):
        kind = draw(st.sampled_from(["put", "put", "put", "control", "first", "pump", "ack"]))
        data = bytes([len(steps) % 251]) * draw(st.sampled_from([0, 1, 50, 300]))
        if kind == "put":
            steps.append(
                ("put", data, draw(st.sampled_from([0, 5])), draw(st.sampled_from([0, 0x1000, 2])))
            )
        elif kind == "first":
            steps.append(("first", [(data, 5, 2), (data + b"!", 0)]))
        else:
            steps.append((kind, data))
    return steps


@given(steps=outbox_steps(), room=st.sampled_from([1 << 20, 700, 400]))
@settings(max_examples=150)
def test_outbox_sends_runs_in_order_within_the_room(
    steps: list[tuple[Any, ...]], room: int
) -> None:
    """Whatever is put, put first or put as control, and however the pumps meet the
    unacknowledged-data limit and the peer's ACKs: every message leaves once, in the
    order of a plain queue, as one DATA chunk with its PPID and U flag; the messages with
    meta are reported with their TSN; what is left queued is the rest of that queue."""
    protocol, transport, _, peer = ready(MappingConfig(max_unacknowledged_bytes=room))
    assert protocol.mapping is not None
    outbox = Outbox()
    model: list[tuple[bytes, int, int]] = []
    sent: list[tuple[bytes, int, int]] = []
    reported: list[tuple[int, int]] = []
    acknowledged = 0
    for step in [*steps, ("pump", b"")]:
        if step[0] == "put":
            outbox.put(step[1], step[2], step[3])
            model.append((step[1], step[2], step[3]))
        elif step[0] == "control":
            outbox.put_control(step[1], 11)
            model.append((step[1], 11, 0))
        elif step[0] == "first":
            outbox.put_first(step[1])
            model[:0] = [(m[0], m[1], m[2] if len(m) > 2 else 0) for m in step[1]]
        elif step[0] == "pump":
            count = outbox.pump(protocol, lambda tsn, meta: reported.append((tsn, meta)))
            sent += model[:count]
            del model[:count]
        else:
            outstanding = len(protocol.mapping.unacknowledged())
            if outstanding:
                protocol.dataReceived(ack_chunks(acknowledged, outstanding, True))
                acknowledged += outstanding
        assert outbox.entries() == model and len(outbox) == len(model)
        assert protocol.mapping.unacknowledged_bytes <= room
    chunks = [c for c in peer.read(transport) if isinstance(c, Data)]
    assert [(c.user_data, c.ppid, c.unordered) for c in chunks] == [
        (data, ppid, bool(meta & UNORDERED)) for data, ppid, meta in sent
    ]
    assert reported == [(tsn, meta) for tsn, (_, _, meta) in enumerate(sent) if meta]


def test_streaming_outbox_sends_merged_writes_as_bytes() -> None:
    """Streaming: the writes merged into one entry leave as one DATA chunk of bytes (not
    the bytearray they were merged in), and a later write starts a new entry."""
    protocol, transport, _, peer = ready()
    stream = Outbox(streaming=True)
    stream.put(b"a", 0)
    stream.put(b"b", 0)
    assert stream.pump(protocol) == 1
    stream.put(b"c", 0)
    assert stream.pump(protocol) == 1
    assert protocol.mapping is not None
    assert [type(s.user_data) for s in protocol.mapping.unacknowledged()] == [bytes, bytes]
    assert [c.user_data for c in peer.read(transport) if isinstance(c, Data)] == [b"ab", b"c"]
