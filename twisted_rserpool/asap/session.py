"""The pool user's side of the RSerPool session layer (RFC 5352 sections 3.8, 3.9, 6.5-6.7
and 6.9): the Twisted adapter of the sans-IO :mod:`~twisted_rserpool.asap.failover` core.

A :class:`Session` is the transport an application protocol gets from
:meth:`~twisted_rserpool.asap.user.PoolUser.connect`. Application messages and ASAP
control (cookies, business cards) share one TCP mapping connection to a pool element
(RFC 5355 2.16). When that pool element fails (the connection is lost, the mapping's
heartbeat times out, or the application calls :meth:`Session.failover`), the core decides
and the session carries out: report the pool element unreachable, select another one,
connect, let the failover observers decide, send ASAP_COOKIE_ECHO (the last cookie and the
count of messages sent before), send again the messages the old pool element had not
acknowledged, then resume; or end, the error report carrying what was not delivered.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectionDone
from twisted.internet.interfaces import IAddress, IDelayedCall, IProtocol, ITransport
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from twisted_rserpool.asap.delivery import (
    PoolElementHandle,
    ReceivedMessage,
    SendOptions,
    UndeliveredMessage,
)
from twisted_rserpool.asap.errors import AsapError, SessionClosed
from twisted_rserpool.asap.failover import (
    Abandon,
    Action,
    AskObservers,
    Connect,
    End,
    FailoverCore,
    FailoverState,
    ReportUnreachable,
    Resume,
    ReturnUndelivered,
    Select,
    TimedOut,
)
from twisted_rserpool.asap.notifier import (
    FailoverDecision,
    FailoverEvent,
    IPoolUserSession,
    decide,
    describePE,
)
from twisted_rserpool.asap.outbox import MAX_MESSAGE, Outbox
from twisted_rserpool.deadline import DeadlineTimer
from twisted_rserpool.describe import handleText, objectText
from twisted_rserpool.security.context import SecurityContext
from twisted_rserpool.transport.events import HeartbeatTimeout, SentData
from twisted_rserpool.transport.protocol import RSerPoolFactory, RSerPoolProtocol
from twisted_rserpool.wire import asap
from twisted_rserpool.wire.parameters import PoolElementParameter, SelectionPolicy
from twisted_rserpool.wire.tcpmapping import ASAP_PPID, ENRP_PPID

if TYPE_CHECKING:
    from twisted_rserpool.asap.user import PoolUser

__all__ = ["ConnectFailed", "Session", "SessionConnection"]

log = Logger()


class ConnectFailed(AsapError):
    """The connection to a pool element could not be made ready."""


class SessionConnection(RSerPoolProtocol):
    """One TCP mapping connection from a session to a pool element.

    Until the session attaches it (after the failover observers agreed), what arrives is
    held back.
    """

    def __init__(self, session: Session, element: PoolElementParameter) -> None:
        super().__init__(session.user.clock)
        self.session = session
        self.element = element
        self.whenReady: Deferred[SessionConnection] = Deferred()
        self.whenLost: Deferred[None] = Deferred()
        self.attached = False
        self.lossReason = "connection lost"
        self._pendingCalls: list[Callable[[], None]] = []
        #: The outbox meta (send options, resent) of unacknowledged messages, by TSN.
        self._meta: dict[int, int] = {}
        # What every received message names, made once: the pool element's handle and
        # its address (neither changes while the connection lasts).
        self._handle: PoolElementHandle | None = None
        self._peerAddress: IAddress | None = None

    def senderHandle(self) -> PoolElementHandle:
        """The pool element's handle (its pool and PE identifier)."""
        handle = self._handle
        if handle is None:
            handle = self._handle = PoolElementHandle.of(self.session.poolHandle, self.element)
        return handle

    def peerAddress(self) -> IAddress | None:
        """The pool element's address, once connected."""
        if self._peerAddress is None and self.transport is not None:
            self._peerAddress = self.transport.getPeer()
        return self._peerAddress

    def attach(self) -> None:
        """Deliver what was held back and everything from now on to the session."""
        self.attached = True
        pending, self._pendingCalls = self._pendingCalls, []
        for call in pending:
            call()

    def undelivered(self) -> list[UndeliveredMessage]:
        """The application messages sent and not acknowledged, oldest first."""
        meta = self._meta
        return [
            _undelivered(sent.user_data, sent.ppid, meta.get(sent.tsn, 0), sent=True)
            for sent in self.unacknowledged()
            if sent.ppid not in (ASAP_PPID, ENRP_PPID)
        ]

    def _sentWithMeta(self, tsn: int, meta: int) -> None:
        self._meta[tsn] = meta

    def close(self) -> None:
        """Close the connection; what it had not delivered stays in :meth:`unacknowledged`."""
        if self.transport is not None:
            abort = getattr(self.transport, "abortConnection", None)
            (abort or self.transport.loseConnection)()

    def _route(self, call: Callable[[], None]) -> None:
        if self.attached:
            call()
        else:
            self._pendingCalls.append(call)

    def connectionReady(self, securityContext: SecurityContext) -> None:
        """The pool element is reachable: the session may consider it."""
        if not self.whenReady.called:
            self.whenReady.callback(self)

    def asapMessageReceived(self, message: asap.AsapMessage) -> None:
        """Cookies, business cards and errors go to the session."""
        self._route(lambda: self.session._asapReceived(self, message))

    def applicationMessageReceived(self, ppid: int, data: bytes, unordered: bool) -> None:
        """Application data goes to the application protocol (with the U flag)."""
        if self.attached:
            self.session._dataReceived(self, ppid, data, unordered)
        else:
            self._pendingCalls.append(
                lambda: self.session._dataReceived(self, ppid, data, unordered)
            )

    def applicationDataReceived(self, ppid: int, data: bytes) -> None:
        """Application data without the U flag goes to the application protocol."""
        self.applicationMessageReceived(ppid, data, False)

    def messagesAcknowledged(self, sent: Sequence[SentData]) -> None:
        """Room for more queued messages; the acknowledged ones are forgotten together."""
        meta = self._meta
        if meta:
            for one in sent:
                meta.pop(one.tsn, None)
        if self.attached:
            self.session._acknowledged(self)

    def _heartbeatTimedOut(self, event: HeartbeatTimeout) -> None:
        self.lossReason = f"heartbeat timeout ({event.reason})"
        super()._heartbeatTimedOut(event)

    def connectionLost(self, reason: Failure | None = None) -> None:
        """Before readiness, the attempt failed; after, the pool element is gone."""
        if reason is None:
            super().connectionLost()
        else:
            super().connectionLost(reason)
            if self.lossReason == "connection lost":
                self.lossReason = f"connection lost: {reason.getErrorMessage()}"
        self.session.user._connectionClosed(self)
        if not self.whenLost.called:
            self.whenLost.callback(None)
        if not self.whenReady.called:
            self.whenReady.errback(ConnectFailed(self.lossReason))
        elif self.attached:
            self.session._connectionLost(self)


@implementer(ITransport, IPoolUserSession)
class Session:
    """The transport of one application protocol talking to a pool through failovers.

    Each :meth:`write` is one application message (longer ones are split at 60 000 bytes)
    sent with PPID :attr:`ppid`; :meth:`send` takes RFC 5352 6.5.5 options for one
    message. Writes made while the session fails over are queued and sent, in order, once
    it resumes.

    ``options`` is the session's delivery default: ``SEND_FAILOVER`` (at least once: what
    the failed pool element had not acknowledged is sent again, marked, to the next) or
    ``SEND_NO_FAILOVER`` (the session ends when its pool element fails, and the error
    report carries what was not delivered). ``canFailOver`` is false for a session to a
    transport address (6.5.4).
    """

    disconnecting = False

    def __init__(
        self,
        user: PoolUser,
        poolHandle: bytes,
        protocol: IProtocol,
        ppid: int = 0,
        streaming: bool = False,
        *,
        options: SendOptions = SendOptions.SEND_FAILOVER,
        canFailOver: bool = True,
    ):
        if ppid in (ASAP_PPID, ENRP_PPID):
            raise ValueError(f"PPID {ppid} is reserved for ASAP/ENRP")
        self.user = user
        self.poolHandle = poolHandle
        self.protocol = protocol
        self.ppid = ppid
        self.connection: SessionConnection | None = None
        self.poolElement: PoolElementParameter | None = None
        self.securityContext: SecurityContext | None = None
        self.businessCard: asap.BusinessCard | None = None
        self.failovers: list[FailoverEvent] = []
        self.closed = False
        self.closeReason: Failure | None = None
        #: Once closed: the application messages the session did not deliver (RFC 5352
        #: 6.7), also in the closing error's ``undelivered``.
        self.undelivered: tuple[UndeliveredMessage, ...] = ()
        self._core = FailoverCore(
            poolHandle,
            default=options,
            can_fail_over=canFailOver,
            max_attempts=user.maxFailoverAttempts,
            connect_timeout=user.connectTimeout,
            decision_timeout=user.failoverDecisionTimeout,
        )
        self._timer = DeadlineTimer(self._timerFired)
        #: The failover's connection attempt under way (the core times it out).
        self._attempt: Deferred[SessionConnection] | None = None
        self._outbox = Outbox(streaming)
        self._pumpCall: IDelayedCall | None = None
        self._waiters: list[Deferred[None]] = []
        self._closing = False
        self._candidate: SessionConnection | None = None
        self._failoverStarted = 0.0
        # The application's messageReceived (None: it has only dataReceived), looked up
        # when a message first came for it.
        self._receiverOf: IProtocol | None = None
        self._receiver: Callable[[ReceivedMessage], object] | None = None

    def __repr__(self) -> str:
        where = "closed" if self.closed else describePE(self.poolElement)
        return f"<Session pool={handleText(self.poolHandle)} {where}>"

    # ------------------------------------------------------------------ ITransport

    def write(self, data: bytes) -> None:
        """Send one application message with the session's default options (queued while
        failing over)."""
        if self.closed or self._closing:
            return
        outbox = self._outbox
        if type(data) is bytes and outbox.tailPpid == self.ppid and len(data) <= MAX_MESSAGE:
            # Outbox.put, inlined for a message that joins the last run (nearly all do).
            outbox.tail.append(data)
        else:
            outbox.put(bytes(data), self.ppid)
        if self._pumpCall is None:  # _schedulePump, inlined: every message comes here
            self._pumpCall = self.user.clock.callLater(0, self._pump)

    def send(self, data: bytes, options: SendOptions = SendOptions.USE_DEFAULT) -> None:
        """Send one application message with RFC 5352 6.5.5 ``options``: SEND_FAILOVER or
        SEND_NO_FAILOVER (for this message), SCTP_UNORDER (the TCP mapping's U flag);
        SEND_TO_LAST is what a session always does. SEND_TO_ALL and SEND_TO_SELF are for
        :meth:`~twisted_rserpool.asap.user.PoolUser.sendToAll`."""
        # Plain ints: IntFlag arithmetic costs microseconds per message.
        meta = int(options)
        if meta & _FAN_OUT:
            raise ValueError("SEND_TO_ALL and SEND_TO_SELF are PoolUser.sendToAll's")
        if meta & _EITHER == _EITHER:
            raise ValueError("SEND_FAILOVER and SEND_NO_FAILOVER exclude each other")
        if self.closed or self._closing:
            return
        self._outbox.put(bytes(data), self.ppid, meta & ~_TO_LAST)
        self._schedulePump()

    def writeSequence(self, data: Any) -> None:
        """Send the pieces as one application message."""
        self.write(b"".join(data))

    def loseConnection(self) -> None:
        """Close the session once the queued messages are sent."""
        if self.closed or self._closing:
            return
        self._closing = True
        self.disconnecting = True
        self._maybeFinishClosing()

    def abortConnection(self) -> None:
        """Close the session now; what was not delivered is left in :attr:`undelivered`."""
        self._end(Failure(ConnectionDone("session aborted by the application")))  # type: ignore[no-untyped-call]

    def getPeer(self) -> IAddress:
        """The current pool element's address (its connection's peer)."""
        if self.connection is not None and self.connection.transport is not None:
            return self.connection.transport.getPeer()
        raise SessionClosed("the session has no pool element connection")

    def getHost(self) -> IAddress:
        """Our side of the current connection."""
        if self.connection is not None and self.connection.transport is not None:
            return self.connection.transport.getHost()
        raise SessionClosed("the session has no pool element connection")

    # ------------------------------------------------------------------ session API

    @property
    def cookie(self) -> bytes | None:
        """The last cookie received from a pool element, or None."""
        return self._core.cookie

    @property
    def options(self) -> SendOptions:
        """The session's delivery default (SEND_FAILOVER or SEND_NO_FAILOVER)."""
        return self._core.default

    @property
    def peHandle(self) -> PoolElementHandle | None:
        """The current pool element's handle (6.5.1: for later sends to the same PE)."""
        element = self.poolElement
        return None if element is None else PoolElementHandle.of(self.poolHandle, element)

    @property
    def failingOver(self) -> bool:
        """Whether a failover is under way."""
        return self._core.state in (
            FailoverState.SELECTING,
            FailoverState.CONNECTING,
            FailoverState.DECIDING,
        )

    def failover(self) -> Deferred[None]:
        """Leave the current pool element (the application's Transport.Failure) and resume
        on another; fires when the session resumed (or errbacks if it closed instead)."""
        if self.closed:
            return Deferred.fromCoroutine(self._raiseClosed())
        waiter: Deferred[None] = Deferred()
        self._waiters.append(waiter)
        if not self.failingOver:
            old = self.connection
            if old is not None:
                old.attached = False
                old.close()
            self._startFailover(old, "the application asked for a failover", asked=True)
        return waiter

    def sendBusinessCard(
        self,
        elements: tuple[PoolElementParameter, ...] = (),
        policy: SelectionPolicy | None = None,
        *,
        poolHandle: bytes | None = None,
    ) -> None:
        """Send an ASAP_BUSINESS_CARD with a new failover order (RFC 5352 3.9: only a PU
        that is also a PE sends one). It names our own pool: that of the pool user's first
        own PE (``PoolUser.ownPoolElements``), or ``poolHandle`` when our PE lives
        elsewhere; ``elements`` default to our own PEs."""
        if poolHandle is None:
            own = [pe for pe in self.user.ownPoolElements if pe.element is not None]
            if not own:
                raise ValueError(
                    "RFC 5352 3.9: a pool user sends a business card only as part of a PU/PE "
                    "combination (add the PE to PoolUser.ownPoolElements, or name its pool)"
                )
            poolHandle = own[0].poolHandle
            if not elements:
                elements = tuple(
                    pe.element for pe in own if pe.poolHandle == poolHandle and pe.element
                )
        if self.connection is not None and self.connection.ready:
            self.connection.sendAsap(asap.BusinessCard(poolHandle, elements, policy))

    def pending(self) -> int:
        """Application messages queued and not yet handed to a connection (during a
        failover: also those it will send to the next pool element)."""
        return len(self._outbox) + self._core.held

    async def _raiseClosed(self) -> None:
        raise SessionClosed("the session is closed")

    # ------------------------------------------------------------------ internals

    def _schedulePump(self) -> None:
        if self._pumpCall is None:
            self._pumpCall = self.user.clock.callLater(0, self._pump)

    def _pump(self) -> None:
        call, self._pumpCall = self._pumpCall, None
        if call is not None and call.active():
            call.cancel()
        connection = self.connection
        if connection is None or self.failingOver or not connection.ready:
            return
        self._outbox.pump(connection, connection._sentWithMeta)
        self._maybeFinishClosing()

    def _maybeFinishClosing(self) -> None:
        if not self._closing or self.closed or len(self._outbox):
            return
        if self.failingOver:
            return
        connection = self.connection
        if (
            connection is not None
            and connection.mapping is not None
            and connection.mapping.unacknowledged()
        ):
            return  # closed once the pool element has everything
        if connection is not None and connection.transport is not None:
            connection.transport.loseConnection()
        self._end(Failure(ConnectionDone("session closed")))  # type: ignore[no-untyped-call]

    def _started(self) -> None:
        """The session's first connection is attached: a PU/PE sends its card (3.9)."""
        self._sendOwnCard()

    def _sendOwnCard(self) -> None:
        """RFC 5352 3.9: a PU that is part of a PU/PE combination sends a business card with
        its own pool handle, its own PE first, so that the PE learns who it serves (6.6)."""
        connection = self.connection
        own = [
            (pe.poolHandle, pe.element, pe.failoverOrder)
            for pe in self.user.ownPoolElements
            if pe.element is not None
        ]
        if not own or connection is None or not connection.ready:
            return
        pool, _, order = own[0]
        elements = tuple(element for handle, element, _ in own if handle == pool)
        connection.sendAsap(asap.BusinessCard(pool, (*elements, *order)))

    def _attach(self, connection: SessionConnection) -> None:
        self.connection = connection
        self.poolElement = connection.element
        self.securityContext = connection.securityContext
        if self._core.state is FailoverState.CLOSED and not self.closed:
            assert connection.securityContext is not None
            self._core.attached(connection.element, connection.securityContext)
        connection.attach()

    def _asapReceived(self, connection: SessionConnection, message: asap.AsapMessage) -> None:
        if isinstance(message, asap.Cookie):
            self._core.cookie = message.cookie
            _call(self.protocol, "cookieReceived", message.cookie)
        elif isinstance(message, asap.BusinessCard):
            self.businessCard = message
            self._core.preferred = message.pool_elements
            self.user.businessCardReceived(message)  # BC1
            _call(self.protocol, "businessCardReceived", message)
        elif isinstance(message, asap.ErrorMessage):
            log.warn(
                "ASAP_ERROR from {pe}: causes {causes}",
                pe=describePE(connection.element),
                causes=[c.code for c in message.error.causes],
            )
        else:
            log.info(
                "Unexpected {message} from {pe}: ignored",
                message=type(message).__name__,
                pe=describePE(connection.element),
            )

    def _dataReceived(
        self, connection: SessionConnection, ppid: int, data: bytes, unordered: bool = False
    ) -> None:
        if self.closed:
            return
        protocol = self.protocol
        if protocol is not self._receiverOf:
            # Which hook the application has, looked up once, not for every message.
            receive = getattr(protocol, "messageReceived", None)
            self._receiverOf = protocol
            self._receiver = receive if callable(receive) else None
        receive = self._receiver
        if receive is not None:
            receive(
                ReceivedMessage(
                    data,
                    ppid,
                    connection.senderHandle(),
                    connection.peerAddress(),
                    unordered=unordered,
                )
            )
        else:
            protocol.dataReceived(data)

    def _acknowledged(self, connection: SessionConnection) -> None:
        if connection is not self.connection:
            return
        if len(self._outbox):
            self._schedulePump()
        elif self._closing:
            self._maybeFinishClosing()  # the last ACK a graceful close waited for

    def _connectionLost(self, connection: SessionConnection) -> None:
        if connection is not self.connection or self.closed:
            return
        if self._closing and not len(self._outbox) and not connection.unacknowledged():
            self._end(Failure(ConnectionDone("session closed")))  # type: ignore[no-untyped-call]
            return
        if not self.user.running:
            self._end(Failure(ConnectionDone("the pool user stopped")))  # type: ignore[no-untyped-call]
            return
        connection.attached = False
        self._startFailover(connection, connection.lossReason, asked=False)

    def _startFailover(self, old: SessionConnection | None, reason: str, *, asked: bool) -> None:
        self.connection = None
        self._failoverStarted = self.user.clock.seconds()
        unacknowledged = old.undelivered() if old is not None else []
        queued = [_undelivered(d, p, m) for d, p, m in self._outbox.drain()]
        log.info(
            "Session to pool {pool}: leaving {pe} ({reason}); {count} unacknowledged "
            "message(s), {queued} queued",
            pool=handleText(self.poolHandle),
            pe=describePE(self.poolElement),
            reason=reason,
            count=len(unacknowledged),
            queued=len(queued),
        )
        self._perform(self._core.lost(reason, unacknowledged, queued, asked=asked))

    def _timerFired(self, now: float) -> None:
        if not self.closed:
            self._perform(self._core.handle_timer(now))

    def _perform(self, actions: list[Action]) -> None:
        for action in actions:
            self._carryOut(action)
        if not self.closed:
            self._timer.arm(self.user.clock, self._core.next_deadline())

    def _carryOut(self, action: Action) -> None:
        if isinstance(action, ReportUnreachable):
            self.user.reportUnreachable(self.poolHandle, action.element.pe_identifier)
            self.user.forgetPoolElement(self.poolHandle, action.element.pe_identifier)
        elif isinstance(action, Select):
            self._select(action)
        elif isinstance(action, Connect):
            self._connect(action.element)
        elif isinstance(action, Abandon):
            self._abandon(action.element)
        elif isinstance(action, TimedOut):
            log.warn(
                "Session to pool {pool}: {what} within {seconds:g} s: {outcome}",
                pool=handleText(self.poolHandle),
                what=(
                    f"the failover observers did not decide about {describePE(action.element)}"
                    if action.what == "decision"
                    else f"{describePE(action.element)} was not ready"
                ),
                seconds=action.seconds,
                outcome=(
                    "refused (failing closed)"
                    if action.what == "decision"
                    else "abandoned, trying another"
                ),
                timeout=action.what,
            )
        elif isinstance(action, AskObservers):
            self._ask(action.event)
        elif isinstance(action, Resume):
            self._resume(action)
        elif isinstance(action, ReturnUndelivered):
            log.warn(
                "Session to pool {pool}: {count} message(s) sent with "
                "ASAP_SEND_NO_FAILOVER returned to the application: {error}",
                pool=handleText(self.poolHandle),
                count=len(action.error.undelivered),
                error=str(action.error),
            )
            _call(self.protocol, "deliveryFailed", action.error)
        elif isinstance(action, End):
            self._fail(action.error)

    def _select(self, action: Select) -> None:
        if self.closed:
            return
        if not self.user.running:
            self._perform(self._core.stop(SessionClosed("the pool user stopped")))
            return

        def found(element: PoolElementParameter) -> None:
            if not self.closed:
                self._perform(self._core.candidate(element, self.user.clock.seconds()))

        def none(failure: Failure) -> None:
            if not self.closed:
                error = failure.value
                if not isinstance(error, Exception):
                    error = AsapError(failure.getErrorMessage())
                self._perform(self._core.no_candidate(error))

        self.user.selectPoolElement(self.poolHandle, action.exclude, action.preferred).addCallbacks(
            found, none
        )

    def _connect(self, element: PoolElementParameter) -> None:
        def ready(connection: SessionConnection) -> None:
            if self.closed:
                connection.close()
                return
            if not self.user.running:
                connection.close()
                self._perform(self._core.stop(SessionClosed("the pool user stopped")))
                return
            self._candidate = connection
            assert connection.securityContext is not None
            self._perform(
                self._core.connected(element, connection.securityContext, self.user.clock.seconds())
            )

        def failed(failure: Failure) -> None:
            log.info(
                "Session to pool {pool}: {pe} unreachable: {error}",
                pool=handleText(self.poolHandle),
                pe=describePE(element),
                error=failure.getErrorMessage(),
            )
            if not self.closed:
                self._perform(self._core.connect_failed(element, failure.getErrorMessage()))

        attempt = self._attempt = self._open(element, timed=False)

        def done(result: object) -> object:
            if self._attempt is attempt:
                self._attempt = None
            return result

        attempt.addBoth(done).addCallbacks(ready, failed)

    def _abandon(self, element: PoolElementParameter) -> None:
        """The core gave up on ``element``: stop the attempt, or close its connection."""
        attempt, self._attempt = self._attempt, None
        if attempt is not None and not attempt.called:
            attempt.cancel()
        candidate = self._candidate
        if candidate is not None and candidate.element == element:
            self._candidate = None
            candidate.close()

    def _ask(self, event: FailoverEvent) -> None:
        user = self.user

        def answered(decision: FailoverDecision) -> None:
            connection = self._candidate
            if self.closed:
                if connection is not None:
                    connection.close()
                return
            if not decision.allowed:
                self._candidate = None
                if connection is not None:
                    connection.close()
                log.warn(
                    "Session to pool {pool}: {event}: REFUSED ({why})",
                    pool=handleText(self.poolHandle),
                    event=event.describe(),
                    why=decision.reason,
                )
            elif connection is None or not connection.ready:
                log.info(
                    "Session to pool {pool}: {pe} went away during the decision",
                    pool=handleText(self.poolHandle),
                    pe=describePE(event.new_element),
                )
                self._candidate = None
                self._perform(self._core.connect_failed(event.new_element, "gone"))
                return
            self._perform(self._core.decided(decision.allowed, decision.reason))

        decide(event, user.failoverObservers, user.refuseWeakerFailover).addCallback(answered)

    def _resume(self, action: Resume) -> None:
        connection, self._candidate = self._candidate, None
        assert connection is not None
        event = action.event
        self.failovers.append(event)
        self._attach(connection)
        if action.cookie_echo is not None:
            connection.sendAsap(action.cookie_echo)
        self._outbox.put_first(
            (m.data, m.ppid, int(m.options) | (_RESENT if m.resent else 0)) for m in action.resend
        )
        self._sendOwnCard()
        self.user.failoverCompleted(event, self.user.clock.seconds() - self._failoverStarted)
        log.info(
            "Session to pool {pool}: {event}",
            pool=handleText(self.poolHandle),
            event=event.describe(),
            **event.new_context.logFields(),
        )
        self._pump()
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            waiter.callback(None)

    def _fail(self, error: AsapError) -> None:
        candidate, self._candidate = self._candidate, None
        if candidate is not None:
            candidate.close()
        error.undelivered = (
            *error.undelivered,
            *(_undelivered(d, p, m) for d, p, m in self._outbox.drain()),
        )
        self._end(Failure(error))  # type: ignore[no-untyped-call]

    def _open(
        self, element: PoolElementParameter, *, timed: bool = True
    ) -> Deferred[SessionConnection]:
        """Connect to ``element`` and wait until the connection is ready; cancelling gives
        up. ``timed``: give up after the pool user's ``connectTimeout`` (the first
        connection; a failover's attempts are timed by the core)."""
        user = self.user
        endpoint = user.endpointForPoolElement(element)
        holder: list[SessionConnection] = []

        def build() -> SessionConnection:
            connection = SessionConnection(self, element)
            holder.append(connection)
            return connection

        factory = RSerPoolFactory(build, user.clock, mappingConfig=user.sessionMappingConfig)
        user._connectionOpened(holder)
        result: Deferred[SessionConnection] = Deferred(lambda _: giveUp("abandoned"))
        timeout = (
            user.clock.callLater(user.connectTimeout, lambda: giveUp("timed out"))
            if timed
            else None
        )

        def giveUp(why: str) -> None:
            if timeout is not None and timeout.active():
                timeout.cancel()
            if result.called:
                return
            # Fail first: closing the connection comes back here through whenReady.
            result.errback(ConnectFailed(f"connecting to {describePE(element)} {why}"))
            if holder:
                abandon(holder[0])

        def abandon(connection: SessionConnection) -> None:
            # Nobody waits for its readiness any more: its failure is expected, not unhandled.
            connection.whenReady.addErrback(lambda _: None)
            connection.close()

        def connected(protocol: object) -> None:
            if result.called:
                if holder:
                    abandon(holder[0])
                return
            holder[0].whenReady.addCallbacks(ready, lambda f: giveUp(f.getErrorMessage()))

        def ready(connection: SessionConnection) -> None:
            if timeout is not None and timeout.active():
                timeout.cancel()
            if not result.called:
                result.callback(connection)
            else:
                connection.close()

        def failed(reason: Failure) -> None:
            giveUp(f"failed: {reason.getErrorMessage()}")

        endpoint.connect(factory).addCallbacks(connected, failed)
        return result

    def _end(self, reason: Failure) -> None:
        if self.closed:
            return
        self.closed = True
        self.disconnecting = True
        self.closeReason = reason
        self._timer.cancel()
        attempt, self._attempt = self._attempt, None
        if attempt is not None and not attempt.called:
            attempt.cancel()
        call, self._pumpCall = self._pumpCall, None
        if call is not None and call.active():
            call.cancel()
        connection, self.connection = self.connection, None
        candidate, self._candidate = self._candidate, None
        if candidate is not None:
            candidate.close()
        held = self._core.close()
        if isinstance(reason.value, AsapError):
            self.undelivered = reason.value.undelivered
        else:
            # Closed by the application or the pool user: still say what did not arrive.
            self.undelivered = (
                *held,
                *(connection.undelivered() if connection is not None else ()),
                *(_undelivered(d, p, m) for d, p, m in self._outbox.drain()),
            )
        if connection is not None:
            connection.attached = False
            if not self._closing:
                connection.close()
        self.user._sessionEnded(self)
        if not reason.check(ConnectionDone):  # type: ignore[no-untyped-call]
            log.warn(
                "Session to pool {pool} closed: {reason}",
                pool=handleText(self.poolHandle),
                reason=reason.getErrorMessage(),
            )
        try:
            self.protocol.connectionLost(reason)
        except Exception:
            log.failure("connectionLost of {protocol} raised", protocol=objectText(self.protocol))
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            waiter.errback(reason)  # failover() callers learn it closed instead


def _call(target: object, name: str, *args: object) -> None:
    method = getattr(target, name, None)
    if callable(method):
        try:
            method(*args)
        except Exception:
            log.failure("{name} of {target} raised", name=name, target=objectText(target))


#: A private bit of an outbox message's meta: it was sent before to a failed pool element.
_RESENT = 1 << 24
_OPTIONS = 0xFFFF
_FAN_OUT = int(SendOptions.SEND_TO_ALL | SendOptions.SEND_TO_SELF)
_EITHER = int(SendOptions.SEND_FAILOVER | SendOptions.SEND_NO_FAILOVER)
_TO_LAST = int(SendOptions.SEND_TO_LAST)


def _undelivered(data: bytes, ppid: int, meta: int, sent: bool = False) -> UndeliveredMessage:
    return UndeliveredMessage(data, ppid, SendOptions(meta & _OPTIONS), sent, bool(meta & _RESENT))
