"""The sans-IO failover core (asap/failover.py): every decision without a socket or a clock."""

from __future__ import annotations

from ipaddress import IPv4Address

import pytest

from twisted_rserpool.asap import (
    DeliveryFailed,
    FailoverRefused,
    NoPoolElementAvailable,
    PoolElementHandle,
    SendOptions,
    UndeliveredMessage,
)
from twisted_rserpool.asap.failover import (
    AskObservers,
    Connect,
    End,
    FailoverCore,
    FailoverState,
    ReportUnreachable,
    Resume,
    ReturnUndelivered,
    Select,
)
from twisted_rserpool.security.context import SecurityContext
from twisted_rserpool.wire import asap
from twisted_rserpool.wire.parameters import PoolElementParameter, RoundRobinPolicy, TcpTransport

POOL = b"pool"
CONTEXT = SecurityContext(authenticated=True, tls_version="TLSv1.3")


def element(identifier: int) -> PoolElementParameter:
    return PoolElementParameter(
        identifier,
        0,
        60,
        TcpTransport(7000 + identifier, IPv4Address("127.0.0.1")),
        RoundRobinPolicy(),
    )


A, B, C = element(1), element(2), element(3)
SENT = [UndeliveredMessage(b"one", 0), UndeliveredMessage(b"two", 0)]
QUEUED = [UndeliveredMessage(b"three", 0)]


def state(core: FailoverCore) -> FailoverState:
    """The core's state, read afresh (not narrowed by earlier asserts)."""
    return core.state


def attached(**options: object) -> FailoverCore:
    core = FailoverCore(POOL, **options)  # type: ignore[arg-type]
    core.attached(A, CONTEXT)
    return core


def test_failover_resends_the_unacknowledged_marked_after_the_cookie() -> None:
    """Loss reports the PE and selects another; once connected the observers are asked;
    their yes resumes with ASAP_COOKIE_ECHO (the cookie and the count of messages sent
    before) and the unacknowledged messages, marked resent, ahead of the queued ones."""
    core = attached()
    core.cookie = b"state"
    assert core.lost("reset", SENT, QUEUED) == [
        ReportUnreachable(A),
        Select(frozenset({1}), ()),
    ]
    assert core.state is FailoverState.SELECTING
    assert core.candidate(B) == [Connect(B)]
    [ask] = core.connected(B, CONTEXT)
    assert isinstance(ask, AskObservers)
    assert ask.event.resend == 2 and ask.event.cookie == b"state"
    assert ask.event.old_element == A and ask.event.new_element == B
    [resume] = core.decided(True)
    assert isinstance(resume, Resume)
    assert resume.cookie_echo == asap.CookieEcho(b"state", 2)
    assert [(m.data, m.sent, m.resent) for m in resume.resend] == [
        (b"one", True, True),
        (b"two", True, True),
        (b"three", False, False),
    ]
    assert state(core) is FailoverState.ATTACHED and core.element == B and core.failovers == 1


def test_no_cookie_and_nothing_resent_sends_no_cookie_echo() -> None:
    """Without a cookie and without resent messages nothing precedes the data; with
    resent messages and no cookie, an empty cookie carries the count."""
    core = attached()
    core.lost("reset", [], QUEUED)
    core.candidate(B)
    core.connected(B, CONTEXT)
    [resume] = core.decided(True)
    assert isinstance(resume, Resume) and resume.cookie_echo is None
    core.lost("reset", SENT[:1], [])
    core.candidate(C)
    core.connected(C, CONTEXT)
    [resume] = core.decided(True)
    assert isinstance(resume, Resume) and resume.cookie_echo == asap.CookieEcho(b"", 1)


def test_observer_veto_ends_with_the_messages() -> None:
    """A veto ends the session with FailoverRefused carrying every message not delivered."""
    core = attached()
    core.lost("reset", SENT, QUEUED)
    core.candidate(B)
    core.connected(B, CONTEXT)
    [end] = core.decided(False, "vetoed by Observer")
    assert isinstance(end, End) and isinstance(end.error, FailoverRefused)
    assert [m.data for m in end.error.undelivered] == [b"one", b"two", b"three"]
    assert [m.sent for m in end.error.undelivered] == [True, True, False]
    assert core.state is FailoverState.CLOSED


def test_unreachable_candidates_are_reported_until_max_attempts() -> None:
    """Each candidate that cannot be reached is reported and skipped; after max_attempts
    the session ends with NoPoolElementAvailable and the messages."""
    core = attached(max_attempts=2)
    core.lost("reset", SENT, [])
    core.candidate(B)
    assert core.connect_failed(B, "refused") == [
        ReportUnreachable(B),
        Select(frozenset({1, 2}), ()),
    ]
    core.candidate(C)
    [report, end] = core.connect_failed(C, "refused")
    assert report == ReportUnreachable(C)
    assert isinstance(end, End) and isinstance(end.error, NoPoolElementAvailable)
    assert [m.data for m in end.error.undelivered] == [b"one", b"two"]


def test_no_candidate_left_ends_with_the_messages() -> None:
    """When the selection finds nobody the error report carries the messages."""
    core = attached()
    core.lost("heartbeat timeout", SENT, QUEUED)
    [end] = core.no_candidate(NoPoolElementAvailable(POOL))
    assert isinstance(end, End) and isinstance(end.error, NoPoolElementAvailable)
    assert len(end.error.undelivered) == 3


def test_business_card_order_is_preferred() -> None:
    """The last business card's order goes into the selection (BC2)."""
    core = attached()
    core.preferred = (C, B)
    assert core.lost("reset", [], [])[-1] == Select(frozenset({1}), (C, B))


def test_no_failover_session_ends_with_unsent_and_unacknowledged() -> None:
    """ASAP_SEND_NO_FAILOVER as the session's default: no failover; DeliveryFailed names
    the PE and returns every message (RFC 5352 6.5.5 'return any unsent data')."""
    core = attached(default=SendOptions.SEND_NO_FAILOVER)
    [report, end] = core.lost("reset", SENT, QUEUED)
    assert report == ReportUnreachable(A)
    assert isinstance(end, End) and isinstance(end.error, DeliveryFailed)
    assert end.error.destination == PoolElementHandle(POOL, 1, A.user_transport)
    assert [(m.data, m.sent) for m in end.error.undelivered] == [
        (b"one", True),
        (b"two", True),
        (b"three", False),
    ]


def test_per_message_no_failover_is_returned_and_the_rest_fails_over() -> None:
    """In a failover session, messages sent with SEND_NO_FAILOVER come back to the
    application at once; the others go to the next PE."""
    core = attached()
    refused = UndeliveredMessage(b"once", 0, SendOptions.SEND_NO_FAILOVER)
    actions = core.lost("reset", [SENT[0], refused], QUEUED)
    assert actions[0] == ReportUnreachable(A)
    returned = actions[1]
    assert isinstance(returned, ReturnUndelivered)
    assert [(m.data, m.sent) for m in returned.error.undelivered] == [(b"once", True)]
    assert isinstance(actions[2], Select)
    core.candidate(B)
    core.connected(B, CONTEXT)
    [resume] = core.decided(True)
    assert isinstance(resume, Resume)
    assert [m.data for m in resume.resend] == [b"one", b"three"]


def test_explicit_failover_message_makes_a_no_failover_session_fail_over() -> None:
    """A message sent with SEND_FAILOVER in a NO_FAILOVER session is failed over."""
    core = attached(default=SendOptions.SEND_NO_FAILOVER)
    wanted = UndeliveredMessage(b"must", 0, SendOptions.SEND_FAILOVER)
    actions = core.lost("reset", [SENT[0], wanted], [])
    assert isinstance(actions[1], ReturnUndelivered)
    assert [m.data for m in actions[1].error.undelivered] == [b"one"]
    assert isinstance(actions[2], Select)


def test_transport_address_session_never_fails_over_nor_reports() -> None:
    """A send by transport address (6.5.4) bypasses ASAP: no failover, no unreachable
    report; the messages come back."""
    core = FailoverCore(b"", default=SendOptions.SEND_NO_FAILOVER, can_fail_over=False)
    core.attached(A, CONTEXT)
    [end] = core.lost("reset", SENT, [])
    assert isinstance(end, End) and isinstance(end.error, DeliveryFailed)
    assert "no failover" in str(end.error)
    assert len(end.error.undelivered) == 2


def test_application_failover_is_reported_and_happens_without_failover_default() -> None:
    """A failover the application asked for (6.9.2 Transport.Failure) reports the PE and
    happens even in a NO_FAILOVER session."""
    core = attached(default=SendOptions.SEND_NO_FAILOVER)
    assert core.lost("asked", [], [], asked=True) == [
        ReportUnreachable(A),
        Select(frozenset({1}), ()),
    ]


def test_stale_answers_are_ignored() -> None:
    """Answers that do not fit the state (a late connection, a second decision) do
    nothing."""
    core = attached()
    assert core.candidate(B) == []
    assert core.decided(True) == []
    core.lost("reset", [], [])
    core.candidate(B)
    assert core.connected(C, CONTEXT) == []
    assert core.connect_failed(C, "late") == []
    assert core.lost("again", [], []) == []


def test_both_failover_options_are_refused() -> None:
    """SEND_FAILOVER and SEND_NO_FAILOVER together make no sense."""
    with pytest.raises(ValueError, match="exclude"):
        FailoverCore(POOL, default=SendOptions.SEND_FAILOVER | SendOptions.SEND_NO_FAILOVER)


def test_stop_ends_with_what_is_held() -> None:
    """The pool user stopping during a failover ends the session with the messages."""
    core = attached()
    core.lost("reset", SENT, [])
    [end] = core.stop(NoPoolElementAvailable(POOL, "stopped"))
    assert isinstance(end, End) and len(end.error.undelivered) == 2
    assert core.stop(NoPoolElementAvailable(POOL)) == []


def test_resent_count_travels_in_cookie_echo() -> None:
    """The private parameter 0x8e02 round-trips; a receiver that does not know it skips it
    (its top bits are 10) and a cookie echo without it decodes as before."""
    encoded = asap.CookieEcho(b"c", 7).encode()
    assert asap.decode(encoded) == asap.CookieEcho(b"c", 7)
    assert b"\x8e\x02" in encoded
    assert asap.decode(asap.CookieEcho(b"c").encode()) == asap.CookieEcho(b"c", None)


def test_close_returns_what_the_failover_held() -> None:
    """Closing the session mid-failover (abort, pool user stopped) hands back the held
    messages and ignores later answers."""
    core = attached()
    core.lost("reset", SENT, QUEUED)
    core.candidate(B)
    assert [m.data for m in core.close()] == [b"one", b"two", b"three"]
    assert core.connected(B, CONTEXT) == [] and state(core) is FailoverState.CLOSED
