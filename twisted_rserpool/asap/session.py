"""The pool user's side of the RSerPool session layer (RFC 5352 sections 3.8, 3.9 and 6.9).

A :class:`Session` is the transport an application protocol gets from
:meth:`~twisted_rserpool.asap.user.PoolUser.connect`. Application messages and ASAP
control (cookies, business cards) share one TCP mapping connection to a pool element
(RFC 5355 2.16). When that pool element fails (the connection is lost, the mapping's
heartbeat times out, or the application calls :meth:`Session.failover`), the session
reports the pool element unreachable, selects another one, connects, lets the failover
observers decide, sends ASAP_COOKIE_ECHO with the last cookie, sends again the
application messages the old pool element had not acknowledged, then resumes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectionDone
from twisted.internet.interfaces import IAddress, IDelayedCall, IProtocol, ITransport
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from twisted_rserpool.asap.errors import (
    AsapError,
    FailoverRefused,
    NoPoolElementAvailable,
    SessionClosed,
)
from twisted_rserpool.asap.notifier import (
    FailoverEvent,
    IPoolUserSession,
    decide,
    describePE,
)
from twisted_rserpool.asap.outbox import Outbox
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

    def attach(self) -> None:
        """Deliver what was held back and everything from now on to the session."""
        self.attached = True
        pending, self._pendingCalls = self._pendingCalls, []
        for call in pending:
            call()

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

    def applicationDataReceived(self, ppid: int, data: bytes) -> None:
        """Application data goes to the application protocol."""
        self._route(lambda: self.session._dataReceived(self, data))

    def dataAcknowledged(self, sent: SentData) -> None:
        """Room for more queued messages."""
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
    sent with PPID :attr:`ppid`. Writes made while the session fails over are queued and
    sent, in order, once it resumes.
    """

    disconnecting = False

    def __init__(
        self,
        user: PoolUser,
        poolHandle: bytes,
        protocol: IProtocol,
        ppid: int = 0,
        streaming: bool = False,
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
        self.cookie: bytes | None = None
        self.businessCard: asap.BusinessCard | None = None
        self.failovers: list[FailoverEvent] = []
        self.closed = False
        self.closeReason: Failure | None = None
        self._outbox = Outbox(streaming)
        self._pumpCall: IDelayedCall | None = None
        self._failingOver = False
        self._waiters: list[Deferred[None]] = []
        self._closing = False

    # ------------------------------------------------------------------ ITransport

    def write(self, data: bytes) -> None:
        """Send one application message (queued while failing over)."""
        if self.closed or self._closing:
            return
        self._outbox.put(bytes(data), self.ppid)
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
        """Close the session now, dropping queued messages."""
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
    def failingOver(self) -> bool:
        """Whether a failover is under way."""
        return self._failingOver

    def failover(self) -> Deferred[None]:
        """Leave the current pool element (the application's Transport.Failure) and resume
        on another; fires when the session resumed (or errbacks if it closed instead)."""
        if self.closed:
            return Deferred.fromCoroutine(self._raiseClosed())
        waiter: Deferred[None] = Deferred()
        self._waiters.append(waiter)
        if not self._failingOver:
            self._startFailover("the application asked for a failover", close=True)
        return waiter

    def sendBusinessCard(
        self, elements: tuple[PoolElementParameter, ...] = (), policy: SelectionPolicy | None = None
    ) -> None:
        """Send an ASAP_BUSINESS_CARD (RFC 5352 3.9: only when the PU is also a PE)."""
        if self.connection is not None and self.connection.ready:
            self.connection.sendAsap(asap.BusinessCard(self.poolHandle, elements, policy))

    def pending(self) -> int:
        """Application messages queued and not yet handed to a connection."""
        return len(self._outbox)

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
        if connection is None or self._failingOver or not connection.ready:
            return
        self._outbox.pump(connection)
        self._maybeFinishClosing()

    def _maybeFinishClosing(self) -> None:
        if not self._closing or self.closed or len(self._outbox):
            return
        if self._failingOver:
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

    def _attach(self, connection: SessionConnection) -> None:
        self.connection = connection
        self.poolElement = connection.element
        self.securityContext = connection.securityContext
        connection.attach()

    def _asapReceived(self, connection: SessionConnection, message: asap.AsapMessage) -> None:
        if isinstance(message, asap.Cookie):
            self.cookie = message.cookie
            _call(self.protocol, "cookieReceived", message.cookie)
        elif isinstance(message, asap.BusinessCard):
            self.businessCard = message
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

    def _dataReceived(self, connection: SessionConnection, data: bytes) -> None:
        if not self.closed:
            self.protocol.dataReceived(data)

    def _acknowledged(self, connection: SessionConnection) -> None:
        if connection is self.connection and len(self._outbox):
            self._schedulePump()

    def _connectionLost(self, connection: SessionConnection) -> None:
        if connection is not self.connection or self.closed:
            return
        if self._closing and not len(self._outbox) and not connection.unacknowledged():
            self._end(Failure(ConnectionDone("session closed")))  # type: ignore[no-untyped-call]
            return
        if not self.user.running:
            self._end(Failure(ConnectionDone("the pool user stopped")))  # type: ignore[no-untyped-call]
            return
        self._startFailover(connection.lossReason, close=False)

    def _startFailover(self, reason: str, *, close: bool) -> None:
        self._failingOver = True

        def finished(result: object) -> None:
            self._failingOver = False
            waiters, self._waiters = self._waiters, []
            if isinstance(result, Failure):
                self._end(result)
                for waiter in waiters:
                    waiter.errback(result)
            else:
                self._pump()
                for waiter in waiters:
                    waiter.callback(None)

        Deferred.fromCoroutine(self._failover(reason, close)).addBoth(finished)

    async def _failover(self, reason: str, close: bool) -> None:
        user = self.user
        old, self.connection = self.connection, None
        oldElement = self.poolElement
        oldContext = self.securityContext
        assert old is not None and oldElement is not None and oldContext is not None
        old.attached = False
        if close:
            old.close()
        resend = [
            (sent.user_data, sent.ppid)
            for sent in old.unacknowledged()
            if sent.ppid not in (ASAP_PPID, ENRP_PPID)
        ]
        self._outbox.put_first(resend)
        started = user.clock.seconds()
        log.info(
            "Session to pool {pool!r}: leaving {pe} ({reason}); {count} unacknowledged "
            "message(s) to send again",
            pool=self.poolHandle,
            pe=describePE(oldElement),
            reason=reason,
            count=len(resend),
        )
        user.reportUnreachable(self.poolHandle, oldElement.pe_identifier)
        user.forgetPoolElement(self.poolHandle, oldElement.pe_identifier)
        tried = {oldElement.pe_identifier}
        preferred = self.businessCard.pool_elements if self.businessCard is not None else ()
        for _ in range(user.maxFailoverAttempts):
            element = await user.selectPoolElement(self.poolHandle, tried, preferred)
            tried.add(element.pe_identifier)
            try:
                connection = await self._open(element)
            except Exception as e:
                log.info(
                    "Session to pool {pool!r}: {pe} unreachable: {error}",
                    pool=self.poolHandle,
                    pe=describePE(element),
                    error=str(e),
                )
                user.reportUnreachable(self.poolHandle, element.pe_identifier)
                user.forgetPoolElement(self.poolHandle, element.pe_identifier)
                continue
            if not user.running:
                connection.close()
                raise SessionClosed("the pool user stopped")
            assert connection.securityContext is not None
            event = FailoverEvent(
                pool_handle=self.poolHandle,
                old_element=oldElement,
                new_element=element,
                old_context=oldContext,
                new_context=connection.securityContext,
                reason=reason,
                number=len(self.failovers) + 1,
                cookie=self.cookie,
                resend=len(resend),
            )
            decision = await decide(event, user.failoverObservers, user.refuseWeakerFailover)
            if not decision.allowed:
                connection.close()
                log.warn(
                    "Session to pool {pool!r}: {event}: REFUSED ({why})",
                    pool=self.poolHandle,
                    event=event.describe(),
                    why=decision.reason,
                )
                raise FailoverRefused(event, decision.reason)
            if not connection.ready:
                log.info(
                    "Session to pool {pool!r}: {pe} went away during the decision",
                    pool=self.poolHandle,
                    pe=describePE(element),
                )
                continue
            self.failovers.append(event)
            self._attach(connection)
            if self.cookie is not None:
                connection.sendAsap(asap.CookieEcho(self.cookie))
            user.failoverCompleted(event, user.clock.seconds() - started)
            log.info(
                "Session to pool {pool!r}: {event}", pool=self.poolHandle, event=event.describe()
            )
            return
        raise NoPoolElementAvailable(self.poolHandle, f"{len(tried)} pool element(s) tried")

    def _open(self, element: PoolElementParameter) -> Deferred[SessionConnection]:
        """Connect to ``element`` and wait until the connection is ready."""
        user = self.user
        endpoint = user.endpointForPoolElement(element)
        holder: list[SessionConnection] = []

        def build() -> SessionConnection:
            connection = SessionConnection(self, element)
            holder.append(connection)
            return connection

        factory = RSerPoolFactory(build, user.clock, mappingConfig=user.sessionMappingConfig)
        user._connectionOpened(holder)
        result: Deferred[SessionConnection] = Deferred()
        timeout = user.clock.callLater(user.connectTimeout, lambda: giveUp("timed out"))

        def giveUp(why: str) -> None:
            if timeout.active():
                timeout.cancel()
            if result.called:
                return
            if holder:
                holder[0].close()
            result.errback(ConnectFailed(f"connecting to {describePE(element)} {why}"))

        def connected(protocol: object) -> None:
            if result.called:
                if holder:
                    holder[0].close()
                return
            holder[0].whenReady.addCallbacks(ready, lambda f: giveUp(f.getErrorMessage()))

        def ready(connection: SessionConnection) -> None:
            if timeout.active():
                timeout.cancel()
            if not result.called:
                result.callback(connection)
            else:
                connection.close()

        def failed(reason: Failure) -> None:
            if timeout.active():
                timeout.cancel()
            giveUp(f"failed: {reason.getErrorMessage()}")

        endpoint.connect(factory).addCallbacks(connected, failed)
        return result

    def _end(self, reason: Failure) -> None:
        if self.closed:
            return
        self.closed = True
        self.disconnecting = True
        self.closeReason = reason
        call, self._pumpCall = self._pumpCall, None
        if call is not None and call.active():
            call.cancel()
        connection, self.connection = self.connection, None
        if connection is not None:
            connection.attached = False
            if not self._closing:
                connection.close()
        self.user._sessionEnded(self)
        if not reason.check(ConnectionDone):  # type: ignore[no-untyped-call]
            log.warn(
                "Session to pool {pool!r} closed: {reason}",
                pool=self.poolHandle,
                reason=reason.getErrorMessage(),
            )
        try:
            self.protocol.connectionLost(reason)
        except Exception:
            log.failure("connectionLost of {protocol!r} raised", protocol=self.protocol)


def _call(target: object, name: str, *args: object) -> None:
    method = getattr(target, name, None)
    if callable(method):
        try:
            method(*args)
        except Exception:
            log.failure("{name} of {target!r} raised", name=name, target=target)
