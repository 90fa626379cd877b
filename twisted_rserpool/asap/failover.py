"""The failover core of a pool user's session, sans-IO (RFC 5352 3.7, 6.5.5 and 6.7; RFC 5355
section 2.9).

A :class:`FailoverCore` decides what a session does when its pool element fails: which
messages go to the next pool element (marked as sent before), which go back to the
application (``ASAP_SEND_NO_FAILOVER``), which pool elements to try, when to ask the failover
observers, and how the session ends when nothing is left. Its inputs are the events of the
session (the pool element was lost, a candidate was selected or none is left, a connection
came up or failed, the observers decided, and the time); its outputs are :class:`Action`
values that the Twisted adapter (:class:`~twisted_rserpool.asap.session.Session`) carries
out. It never touches a socket, a Deferred or a clock: its two timers (a candidate's
connection must be ready within ``connect_timeout``, the observers must answer within
``decision_timeout``) are deadlines the adapter reads with :meth:`FailoverCore.next_deadline`
and reports with :meth:`FailoverCore.handle_timer`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from enum import Enum
from typing import TypeAlias

from twisted_rserpool.asap.delivery import PoolElementHandle, SendOptions, UndeliveredMessage
from twisted_rserpool.asap.errors import (
    AsapError,
    DeliveryFailed,
    FailoverRefused,
    NoPoolElementAvailable,
)
from twisted_rserpool.asap.notifier import FailoverEvent
from twisted_rserpool.security.context import SecurityContext
from twisted_rserpool.wire import asap
from twisted_rserpool.wire.parameters import PoolElementParameter

__all__ = [
    "Abandon",
    "Action",
    "AskObservers",
    "Connect",
    "End",
    "FailoverCore",
    "FailoverState",
    "ReportUnreachable",
    "Resume",
    "ReturnUndelivered",
    "Select",
    "TimedOut",
]


class FailoverState(Enum):
    """Where a session's failover stands."""

    ATTACHED = "attached"  # on a pool element, sending
    SELECTING = "selecting"  # waiting for a candidate
    CONNECTING = "connecting"  # waiting for the candidate's connection
    DECIDING = "deciding"  # waiting for the failover observers
    CLOSED = "closed"


@dataclass(frozen=True, slots=True)
class ReportUnreachable:
    """Send ASAP_ENDPOINT_UNREACHABLE for ``element`` and drop it from the cache (3.5)."""

    element: PoolElementParameter


@dataclass(frozen=True, slots=True)
class Select:
    """Select a pool element of the pool, none of ``exclude``, ``preferred`` first (BC2);
    answer :meth:`FailoverCore.candidate` or :meth:`FailoverCore.no_candidate`."""

    exclude: frozenset[int]
    preferred: tuple[PoolElementParameter, ...]


@dataclass(frozen=True, slots=True)
class Connect:
    """Connect to ``element``; answer :meth:`FailoverCore.connected` or
    :meth:`FailoverCore.connect_failed`."""

    element: PoolElementParameter


@dataclass(frozen=True, slots=True)
class Abandon:
    """Close the connection (or the attempt) to ``element`` and ignore what it does next:
    the core has moved on."""

    element: PoolElementParameter


@dataclass(frozen=True, slots=True)
class TimedOut:
    """A failover timer expired: ``what`` (``"connect"``: ``element``'s connection was not
    ready in time; ``"decision"``: the observers did not answer about ``element``) after
    ``seconds``. For the log; the actions that follow say what happens."""

    what: str
    element: PoolElementParameter
    seconds: float


@dataclass(frozen=True, slots=True)
class AskObservers:
    """Ask the failover observers about ``event``; answer :meth:`FailoverCore.decided`.
    Nothing flows to the new pool element before."""

    event: FailoverEvent


@dataclass(frozen=True, slots=True)
class Resume:
    """Attach the new connection, send ``cookie_echo`` first (when set), then ``resend``
    ahead of what the application wrote meanwhile."""

    event: FailoverEvent
    cookie_echo: asap.CookieEcho | None
    resend: tuple[UndeliveredMessage, ...]


@dataclass(frozen=True, slots=True)
class ReturnUndelivered:
    """Hand ``error`` (its ``undelivered`` messages, sent with SEND_NO_FAILOVER) to the
    application; the session goes on."""

    error: DeliveryFailed


@dataclass(frozen=True, slots=True)
class End:
    """Close the session with ``error``; ``error.undelivered`` holds what was not delivered
    (the adapter adds what the application wrote during the failover)."""

    error: AsapError


Action: TypeAlias = (
    ReportUnreachable
    | Select
    | Connect
    | Abandon
    | TimedOut
    | AskObservers
    | Resume
    | ReturnUndelivered
    | End
)


def _effective(options: SendOptions, default: SendOptions) -> SendOptions:
    if options & (SendOptions.SEND_FAILOVER | SendOptions.SEND_NO_FAILOVER):
        return options
    return options | default


class FailoverCore:
    """The failover decisions of one session to pool ``pool_handle``.

    ``default`` is the session's delivery option (SEND_FAILOVER or SEND_NO_FAILOVER);
    ``can_fail_over`` is false for a session to a transport address (6.5.4: no failover).
    At most ``max_attempts`` candidates are tried per failover.

    A candidate whose connection is not ready ``connect_timeout`` seconds after
    :class:`Connect` is abandoned, reported unreachable and the next one selected. Observers
    that have not answered ``decision_timeout`` seconds after :class:`AskObservers` count
    as a veto (failing closed, as an observer that raises): the session ends with
    :class:`FailoverRefused` carrying the undelivered messages. ``None`` disables a timer.
    """

    def __init__(
        self,
        pool_handle: bytes,
        *,
        default: SendOptions = SendOptions.SEND_FAILOVER,
        can_fail_over: bool = True,
        max_attempts: int = 5,
        connect_timeout: float | None = None,
        decision_timeout: float | None = None,
    ) -> None:
        if default & SendOptions.SEND_FAILOVER and default & SendOptions.SEND_NO_FAILOVER:
            raise ValueError("SEND_FAILOVER and SEND_NO_FAILOVER exclude each other")
        for name, value in (("connect", connect_timeout), ("decision", decision_timeout)):
            if value is not None and not value > 0:
                raise ValueError(f"the {name} timeout must be positive, not {value}")
        self.pool_handle = pool_handle
        self.default = (
            default if default & SendOptions.SEND_NO_FAILOVER else SendOptions.SEND_FAILOVER
        )
        self.can_fail_over = can_fail_over
        self.max_attempts = max_attempts
        self.connect_timeout = connect_timeout
        self.decision_timeout = decision_timeout
        self.state = FailoverState.CLOSED
        self.element: PoolElementParameter | None = None
        self.context: SecurityContext | None = None
        #: The last cookie from a pool element (echoed after a failover, 3.8).
        self.cookie: bytes | None = None
        #: The last business card's failover order (BC2).
        self.preferred: tuple[PoolElementParameter, ...] = ()
        #: Failovers completed so far.
        self.failovers = 0
        self._reason = ""
        self._tried: set[int] = set()
        self._attempts = 0
        self._candidate: PoolElementParameter | None = None
        self._candidate_context: SecurityContext | None = None
        self._resend: tuple[UndeliveredMessage, ...] = ()
        self._queued: tuple[UndeliveredMessage, ...] = ()
        self._event: FailoverEvent | None = None
        self._deadline: float | None = None

    @property
    def held(self) -> int:
        """Messages the failover under way holds for the next pool element."""
        return len(self._resend) + len(self._queued)

    # ------------------------------------------------------------------ inputs

    def attached(self, element: PoolElementParameter, context: SecurityContext) -> None:
        """The session's first connection is up on ``element``."""
        self.element, self.context = element, context
        self.state = FailoverState.ATTACHED

    def resolve(self, options: SendOptions) -> SendOptions:
        """``options`` with the session's default filled in."""
        return _effective(options, self.default)

    def lost(
        self,
        reason: str,
        unacknowledged: Sequence[UndeliveredMessage],
        queued: Sequence[UndeliveredMessage],
        *,
        asked: bool = False,
    ) -> list[Action]:
        """The pool element failed (``reason``), or the application asked to leave it
        (``asked``). ``unacknowledged`` were sent to it and not acknowledged (they may
        have been processed), ``queued`` were never sent, both oldest first."""
        if self.state is not FailoverState.ATTACHED:
            return []
        element = self.element
        assert element is not None
        self._reason = reason
        pending = [
            replace(m, options=self.resolve(m.options))
            for m in (*(replace(u, sent=True) for u in unacknowledged), *queued)
        ]
        keep = [m for m in pending if not m.options & SendOptions.SEND_NO_FAILOVER]
        refuse = [m for m in pending if m.options & SendOptions.SEND_NO_FAILOVER]
        # Asked or not, the PE failed for us (6.9.2 Transport.Failure reports it too); a
        # send by transport address bypasses ASAP (6.5.4): there is no pool to report to.
        actions: list[Action] = [ReportUnreachable(element)] if self.pool_handle else []
        explicit = any(m.options & SendOptions.SEND_FAILOVER for m in keep)
        failover = self.can_fail_over and (
            asked or self.default & SendOptions.SEND_FAILOVER or explicit
        )
        if not failover:
            self.state = FailoverState.CLOSED
            error = DeliveryFailed(
                PoolElementHandle.of(self.pool_handle, element),
                reason
                + (
                    "; sent by transport address, no failover"
                    if not self.can_fail_over
                    else "; the session does not fail over (ASAP_SEND_NO_FAILOVER)"
                ),
            )
            error.undelivered = tuple(pending)
            actions.append(End(error))
            return actions
        if refuse:
            error = DeliveryFailed(PoolElementHandle.of(self.pool_handle, element), reason)
            error.undelivered = tuple(refuse)
            actions.append(ReturnUndelivered(error))
        self._resend = tuple(m for m in keep if m.sent)
        self._queued = tuple(m for m in keep if not m.sent)
        self._tried = {element.pe_identifier}
        self._attempts = 0
        actions.extend(self._next())
        return actions

    def candidate(self, element: PoolElementParameter, now: float = 0.0) -> list[Action]:
        """The selection answered with ``element`` at ``now``."""
        if self.state is not FailoverState.SELECTING:
            return []
        self._tried.add(element.pe_identifier)
        self._candidate = element
        self.state = FailoverState.CONNECTING
        self._deadline = _after(now, self.connect_timeout)
        return [Connect(element)]

    def no_candidate(self, error: Exception) -> list[Action]:
        """The selection found no pool element (or the resolution failed with ``error``)."""
        if self.state is not FailoverState.SELECTING:
            return []
        detail = f"{len(self._tried)} pool element(s) tried"
        if not isinstance(error, NoPoolElementAvailable):
            detail += f"; {error}"
        return self._end(NoPoolElementAvailable(self.pool_handle, detail))

    def connected(
        self, element: PoolElementParameter, context: SecurityContext, now: float = 0.0
    ) -> list[Action]:
        """The connection to ``element`` is ready at ``now``: ask the observers."""
        if self.state is not FailoverState.CONNECTING or element != self._candidate:
            return []
        assert self.element is not None and self.context is not None
        self._candidate_context = context
        self._event = FailoverEvent(
            pool_handle=self.pool_handle,
            old_element=self.element,
            new_element=element,
            old_context=self.context,
            new_context=context,
            reason=self._reason,
            number=self.failovers + 1,
            cookie=self.cookie,
            resend=len(self._resend),
        )
        self.state = FailoverState.DECIDING
        self._deadline = _after(now, self.decision_timeout)
        return [AskObservers(self._event)]

    def connect_failed(self, element: PoolElementParameter, why: str) -> list[Action]:
        """The connection to ``element`` failed (or went away before it was used)."""
        if self.state not in (FailoverState.CONNECTING, FailoverState.DECIDING):
            return []
        if element != self._candidate:
            return []
        return [ReportUnreachable(element), *self._next()]

    def decided(self, allowed: bool, reason: str = "") -> list[Action]:
        """The observers (and the rule against weaker security) answered."""
        if self.state is not FailoverState.DECIDING:
            return []
        event = self._event
        assert event is not None and self._candidate is not None
        if not allowed:
            return self._end(FailoverRefused(event, reason))
        self._deadline = None
        self.element, self.context = self._candidate, self._candidate_context
        self.failovers += 1
        self.state = FailoverState.ATTACHED
        resend = tuple(replace(m, resent=True) for m in self._resend)
        self._resend = ()
        queued, self._queued = self._queued, ()
        echo = None
        if self.cookie is not None or resend:
            echo = asap.CookieEcho(
                self.cookie if self.cookie is not None else b"",
                len(resend) if resend else None,
            )
        return [Resume(event, echo, resend + queued)]

    def close(self) -> tuple[UndeliveredMessage, ...]:
        """The session closes for another reason (the application or the pool user ended
        it): forget the failover, returning the messages it held."""
        held = self._resend + self._queued
        self._resend = self._queued = ()
        self.state = FailoverState.CLOSED
        self._deadline = None
        return held

    def stop(self, error: AsapError) -> list[Action]:
        """The pool user stopped: end with ``error`` whatever the state."""
        if self.state is FailoverState.CLOSED:
            return []
        return self._end(error)

    # ------------------------------------------------------------------ time

    def next_deadline(self) -> float | None:
        """When :meth:`handle_timer` has work: the candidate's connect deadline or the
        observers' decision deadline."""
        return self._deadline

    def handle_timer(self, now: float) -> list[Action]:
        """The time is ``now``: a candidate not ready in time is abandoned, reported and the
        next selected; observers that did not answer in time veto (fail closed)."""
        if self._deadline is None or now < self._deadline:
            return []
        self._deadline = None
        candidate = self._candidate
        if candidate is None:
            return []
        if self.state is FailoverState.CONNECTING:
            assert self.connect_timeout is not None
            return [
                TimedOut("connect", candidate, self.connect_timeout),
                Abandon(candidate),
                ReportUnreachable(candidate),
                *self._next(),
            ]
        if self.state is FailoverState.DECIDING:
            assert self._event is not None and self.decision_timeout is not None
            seconds = self.decision_timeout
            return [
                TimedOut("decision", candidate, seconds),
                Abandon(candidate),
                *self._end(
                    FailoverRefused(
                        self._event, f"the failover observers did not answer within {seconds:g} s"
                    )
                ),
            ]
        return []

    # ------------------------------------------------------------------ internals

    def _next(self) -> list[Action]:
        if self._attempts >= self.max_attempts:
            return self._end(
                NoPoolElementAvailable(
                    self.pool_handle, f"{len(self._tried)} pool element(s) tried"
                )
            )
        self._attempts += 1
        self._candidate = None
        self._deadline = None
        self.state = FailoverState.SELECTING
        return [Select(frozenset(self._tried), self.preferred)]

    def _end(self, error: AsapError) -> list[Action]:
        self.state = FailoverState.CLOSED
        self._deadline = None
        error.undelivered = self._resend + self._queued
        self._resend = self._queued = ()
        return [End(error)]


def _after(now: float, timeout: float | None) -> float | None:
    return None if timeout is None else now + timeout
