"""The pool element (RFC 5352 sections 3.1, 3.2, 3.4, 3.6, 3.8, 3.9): a Twisted service that
registers with a home ENRP server, keeps the registration alive and serves the application
protocol on its user transport, where control (cookies, business cards, keep-alives from an
ENRP server that took it over) and data share the connection (RFC 5355 2.16)."""

from __future__ import annotations

import secrets
from collections.abc import Callable, Sequence
from ipaddress import ip_address
from typing import Any

from twisted.application.service import Service
from twisted.internet import endpoints
from twisted.internet.defer import Deferred, succeed
from twisted.internet.error import ConnectionDone
from twisted.internet.interfaces import (
    IAddress,
    IDelayedCall,
    IListeningPort,
    IProtocol,
    IProtocolFactory,
    IReactorTime,
    IStreamClientEndpoint,
    IStreamServerEndpoint,
    ITransport,
)
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from twisted_rserpool.asap.delivery import PoolElementHandle, ReceivedMessage
from twisted_rserpool.asap.errors import (
    AsapError,
    PlaintextRefused,
    RegistrationRefused,
    RequestTimedOut,
    ResolutionFailed,
    ServerHuntFailed,
)
from twisted_rserpool.asap.link import EnrpServerConnection, HomeServerLink
from twisted_rserpool.asap.outbox import MAX_MESSAGE, Outbox
from twisted_rserpool.asap.registration import (
    Action,
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
from twisted_rserpool.asap.timers import AsapTimers
from twisted_rserpool.asap.user import (
    _listenAnnouncements,
    _reactor,
    clientEndpoints,
    overallPolicy,
)
from twisted_rserpool.deadline import DeadlineTimer
from twisted_rserpool.describe import handleText, objectText
from twisted_rserpool.handlespace import CacheState, PoolUserCache
from twisted_rserpool.security.authorization import AuthorizationPolicy, Role
from twisted_rserpool.security.context import SecurityContext
from twisted_rserpool.transport.connection import MappingConfig
from twisted_rserpool.transport.events import SentData
from twisted_rserpool.transport.protocol import RSerPoolFactory, RSerPoolProtocol
from twisted_rserpool.wire import asap
from twisted_rserpool.wire.parameters import (
    PoolElementParameter,
    RoundRobinPolicy,
    SelectionPolicy,
    TcpTransport,
    Transport,
    TransportUse,
)
from twisted_rserpool.wire.tcpmapping import ASAP_PPID

__all__ = ["PoolElement", "PoolElementConnection", "PoolElementTransport"]

log = Logger()

#: Nobody may act as an ENRP server on the user transport unless configured.
NO_ENRP_SERVERS = AuthorizationPolicy({}, default=None)


def _call(target: object, name: str, *args: object) -> None:
    method = getattr(target, name, None)
    if callable(method):
        try:
            method(*args)
        except Exception:
            log.failure("{name} of {target} raised", name=name, target=objectText(target))


#: Endpoint string types that run TLS (a PE's user transport must be one of them).
TLS_ENDPOINT_TYPES = ("tlspsk", "ssl", "tls", "txtls")


#: Twisted's server endpoints that never wrap TLS around what they accept.
PLAINTEXT_ENDPOINTS = (
    endpoints.TCP4ServerEndpoint,
    endpoints.TCP6ServerEndpoint,
    endpoints.UNIXServerEndpoint,
    endpoints.AdoptedStreamServerEndpoint,
)


def _plaintext(listen: IStreamServerEndpoint | str) -> bool:
    """Whether a server endpoint (string or object) listens without TLS; an endpoint of
    another type is taken to secure what it accepts."""
    if isinstance(listen, str):
        return listen.split(":", 1)[0].strip().lower() not in TLS_ENDPOINT_TYPES
    return isinstance(listen, PLAINTEXT_ENDPOINTS)


def refusePlaintext(listen: IStreamServerEndpoint | str | None, insecure: bool) -> None:
    """Raise :class:`~twisted_rserpool.asap.errors.PlaintextRefused` for a pool element
    listening without TLS, unless the application passed ``insecure=True``."""
    if listen is not None and not insecure and _plaintext(listen):
        shown = listen if isinstance(listen, str) else type(listen).__name__
        raise PlaintextRefused(
            f"pool element user transport {shown!r} has no TLS: pool users would talk "
            "to it in plaintext, unauthenticated; listen with tlspsk: or ssl:, or pass "
            "insecure=True to allow it"
        )


@implementer(ITransport)
class PoolElementTransport:
    """The transport a pool element's application protocol writes to: each write is one
    application message to the pool user; :meth:`sendCookie` hands the pool user state for
    a later failover (ASAP_COOKIE)."""

    def __init__(
        self, connection: PoolElementConnection, ppid: int = 0, streaming: bool = False
    ) -> None:
        self.connection = connection
        self.ppid = ppid
        self.disconnecting = False
        self._outbox = Outbox(streaming)
        self._pumpCall: IDelayedCall | None = None

    @property
    def securityContext(self) -> SecurityContext | None:
        """The security of the pool user's connection."""
        return self.connection.securityContext

    def write(self, data: bytes) -> None:
        """Send one application message."""
        if self.disconnecting:
            return
        self._outbox.put(bytes(data), self.ppid)
        self._schedulePump()

    def queued(self) -> int:
        """Messages waiting for room under the unacknowledged-data limit."""
        return len(self._outbox)

    def _schedulePump(self) -> None:
        if self._pumpCall is None:
            self._pumpCall = self.connection.poolElement.clock.callLater(0, self.pump)

    def writeSequence(self, data: Any) -> None:
        """Send the pieces as one application message."""
        self.write(b"".join(data))

    def pump(self) -> None:
        """Send queued messages while the pool user's unacknowledged data leaves room."""
        call, self._pumpCall = self._pumpCall, None
        if call is not None and call.active():
            call.cancel()
        if self.connection.ready:
            self._outbox.pump(self.connection)
        if self.disconnecting and not len(self._outbox):
            self.connection.closeGracefully()

    def sendCookie(self, cookie: bytes) -> None:
        """Send ASAP_COOKIE: the pool user keeps the latest and echoes it to the next pool
        element after a failover (sign it if other pool elements must trust it). It follows
        the messages written before it."""
        self._control(asap.Cookie(bytes(cookie)))

    def sendBusinessCard(
        self, elements: tuple[PoolElementParameter, ...] = (), policy: SelectionPolicy | None = None
    ) -> None:
        """Send ASAP_BUSINESS_CARD with a preferred failover order."""
        self._control(asap.BusinessCard(self.connection.poolElement.poolHandle, elements, policy))

    def _control(self, message: asap.AsapMessage) -> None:
        if self.disconnecting:
            return
        encoded = message.encode()
        if len(encoded) > MAX_MESSAGE:
            raise ValueError(f"{type(message).__name__} of {len(encoded)} bytes is too long")
        self._outbox.put_control(encoded, ASAP_PPID)
        self._schedulePump()

    def loseConnection(self) -> None:
        """Close once queued messages are sent."""
        self.disconnecting = True
        self.pump()

    def abortConnection(self) -> None:
        """Close now."""
        self.disconnecting = True
        self.connection.close()

    def getPeer(self) -> IAddress:
        """The pool user's address."""
        assert self.connection.transport is not None
        return self.connection.transport.getPeer()

    def getHost(self) -> IAddress:
        """Our user transport address."""
        assert self.connection.transport is not None
        return self.connection.transport.getHost()


class PoolElementConnection(RSerPoolProtocol):
    """One connection to the pool element's user transport: a pool user's session, or an
    ENRP server sending keep-alives (after it took the pool element over).

    The application protocol is built when the pool user's first message arrives
    (application data, ASAP_COOKIE_ECHO or ASAP_BUSINESS_CARD), so that ENRP servers never
    reach the application; the pool element then sends its business card first.
    """

    def __init__(self, poolElement: PoolElement) -> None:
        super().__init__(poolElement.clock)
        self.poolElement = poolElement
        self.application: IProtocol | None = None
        self.appTransport: PoolElementTransport | None = None
        #: The pool user's own PE handle when it is also a PE and its business card named
        #: it (RFC 5352 3.9, 6.6); ``None`` otherwise.
        self.senderHandle: PoolElementHandle | None = None
        #: Application messages still to come that the pool user sent before to a PE that
        #: failed (ASAP_COOKIE_ECHO's resent count).
        self.resentRemaining = 0
        # The application's messageReceived (None: it has only dataReceived), found when
        # its first message came, and the pool user's address, asked once.
        self._receiverOf: IProtocol | None = None
        # The application when it has no messageReceived (its messages go to dataReceived);
        # () otherwise, which no application is.
        self._plain: object = ()
        self._receiver: Callable[[ReceivedMessage], object] | None = None
        self._peerAddress: IAddress | None = None

    def close(self) -> None:
        """Close now."""
        if self.transport is not None:
            abort = getattr(self.transport, "abortConnection", None)
            (abort or self.transport.loseConnection)()

    def closeGracefully(self) -> None:
        """Close after what was sent."""
        if self.transport is not None:
            self.transport.loseConnection()

    def _session(self) -> IProtocol | None:
        if self.application is None:
            self.application = self.poolElement.buildApplication(self)
            if self.application is None:
                self.close()
                return None
            self.appTransport = PoolElementTransport(
                self, self.poolElement.ppid, self.poolElement.streaming
            )
            card = self.poolElement.businessCard()
            if card is not None:
                self.sendAsap(card)
            self.application.makeConnection(self.appTransport)
        return self.application

    def connectionReady(self, securityContext: SecurityContext) -> None:
        """Count the connection."""
        self.poolElement.connections.add(self)

    def asapMessageReceived(self, message: asap.AsapMessage) -> None:
        """Control from the pool user, or from an ENRP server."""
        pe = self.poolElement
        if isinstance(message, asap.EndpointKeepAlive):
            pe._keepAliveOnUserTransport(self, message)
        elif isinstance(
            message,
            asap.RegistrationResponse
            | asap.DeregistrationResponse
            | asap.HandleResolutionResponse
            | asap.ErrorMessage,
        ) and pe._isHome(self):
            pe._fromHome(self, message)
        elif isinstance(message, asap.CookieEcho):
            application = self._session()
            if application is not None:
                pe.counters["cookie_echoes"] += 1
                self.resentRemaining = message.resent or 0
                if message.cookie:  # empty: the failed PE sent none, only the count came
                    _call(application, "cookieEchoReceived", message.cookie)
        elif isinstance(message, asap.BusinessCard):
            application = self._session()
            if application is not None:
                self.senderHandle = self._cardSender(message)
                pe.businessCardReceived(message)  # BC1
                _call(application, "businessCardReceived", message)
        elif isinstance(message, asap.ErrorMessage):
            log.warn(
                "ASAP_ERROR from {peer}: causes {causes}",
                peer=self.peer,
                causes=[c.code for c in message.error.causes],
            )
        else:
            log.info(
                "Unexpected {message} from {peer} on the user transport: ignored",
                message=type(message).__name__,
                peer=self.peer,
            )

    def _cardSender(self, card: asap.BusinessCard) -> PoolElementHandle | None:
        """The PE a PU/PE's card names first, if it is where the connection comes from
        (the card is the peer's claim: its address must at least match)."""
        if not card.pool_elements:
            return None
        first = card.pool_elements[0]
        address = getattr(first.user_transport, "address", None)
        peer = self.transport.getPeer() if self.transport is not None else None
        host = getattr(peer, "host", None)
        if address is not None and not address.is_unspecified and str(address) != host:
            log.info(
                "Business card from {peer} names PE 0x{pe:08x} at {address}: not its sender",
                peer=self.peer,
                pe=first.pe_identifier,
                address=str(address),
            )
            return None
        return PoolElementHandle.of(card.pool_handle, first)

    def applicationDataReceived(self, ppid: int, data: bytes) -> None:
        """An application message without the U flag (see applicationMessageReceived)."""
        self.applicationMessageReceived(ppid, data, False)

    def applicationMessageReceived(self, ppid: int, data: bytes, unordered: bool) -> None:
        """An application message from the pool user: to ``messageReceived`` (a
        :class:`~twisted_rserpool.asap.delivery.ReceivedMessage`, with the TCP mapping's U
        flag as ``unordered``) if the application has it, else to ``dataReceived``."""
        application = self.application
        if application is self._plain and not self.resentRemaining:
            # An application with dataReceived only, and nothing resent to count: the path
            # of nearly every message.
            application.dataReceived(data)  # type: ignore[union-attr]  # _plain is no None
            return
        if application is None:
            application = self._session()
            if application is None:
                return
        resent = self.resentRemaining > 0
        if resent:
            self.resentRemaining -= 1
        if application is not self._receiverOf:
            # Which hook the application has, looked up once, not for every message.
            receive = getattr(application, "messageReceived", None)
            self._receiverOf = application
            self._receiver = receive if callable(receive) else None
            self._plain = () if callable(receive) else application
        receive = self._receiver
        if receive is not None:
            peer = self._peerAddress
            if peer is None and self.transport is not None:
                # The pool user's address does not change while the connection lasts.
                peer = self._peerAddress = self.transport.getPeer()
            receive(ReceivedMessage(data, ppid, self.senderHandle, peer, resent, unordered))
        else:
            application.dataReceived(data)

    def messagesAcknowledged(self, sent: Sequence[SentData]) -> None:
        """Room for queued messages."""
        if self.appTransport is not None and self.appTransport.queued():
            self.appTransport._schedulePump()

    def connectionLost(self, reason: Failure | None = None) -> None:
        """Tell the application and the pool element."""
        if reason is None:
            super().connectionLost()
        else:
            super().connectionLost(reason)
        self.poolElement.connections.discard(self)
        if self.application is not None:
            try:
                self.application.connectionLost(
                    reason if reason is not None else Failure(ConnectionDone())  # type: ignore[no-untyped-call]
                )
            except Exception:
                log.failure("connectionLost of the application raised")
        self.poolElement._userTransportLost(self)


class PoolElement(Service):
    """A pool element of pool ``poolHandle`` serving ``factory``'s protocol.

    ``listen`` (an endpoint or server string, e.g.
    ``tlspsk:0:interface=127.0.0.1:certificate=pe.pem``) is the user transport; its address
    is registered (``advertise`` overrides it; ``0.0.0.0`` lets the ENRP server use the
    registration connection's address) as user and ASAP transport. ``enrpServers`` are
    hunted in order; each must authenticate (``tlspsk:...:identity=...:pskFile=...``).

    An ENRP server that took the pool element over may send ASAP_ENDPOINT_KEEP_ALIVE with
    the H flag on the user transport; it is answered and adopted as the new home only if it
    authenticated with an identity that ``authorizationPolicy`` gives the ``enrp-server``
    role (by default nobody: only the hunt finds new home servers).

    Announced ENRP servers are used as the pool user's are (``announcedServer``, and
    ``announceListen`` for announcements over UDP).

    A ``listen`` string or endpoint without TLS (``tcp:``, ``unix:``, a
    ``TCP4ServerEndpoint``...) is refused with
    :class:`~twisted_rserpool.asap.errors.PlaintextRefused` unless ``insecure=True``.

    A server this pool element does not serve itself (one in another process or language,
    such as an IKE gateway on UDP) is registered with ``userTransport`` instead of
    ``listen`` (and ``factory``, both ``None``): that RFC 5354 transport parameter (UDP,
    TCP, SCTP, ...) is registered as it is, nothing is listened on, and the ENRP server
    reaches this pool element's ASAP endpoint over the registration connection only
    (``0.0.0.0`` lets it take that connection's address).

    After MAX-REG-ATTEMPT registration timeouts in a row the failure is logged and
    ``whenRegistered()`` errbacks with ``RequestTimedOut``; the attempts go on with a
    back-off up to RETRAN-MAX unless ``stopAfterMaxRegAttempt``.
    """

    log = Logger()

    def __init__(
        self,
        poolHandle: bytes,
        factory: IProtocolFactory | None,
        enrpServers: Sequence[IStreamClientEndpoint | str],
        listen: IStreamServerEndpoint | str | None,
        *,
        userTransport: Transport | None = None,
        policy: SelectionPolicy | None = None,
        registrationLife: int = 300,
        peIdentifier: int | None = None,
        advertise: str | None = None,
        authorizationPolicy: AuthorizationPolicy | None = None,
        timers: AsapTimers | None = None,
        clock: IReactorTime | None = None,
        reactor: Any = None,
        mappingConfig: MappingConfig | None = None,
        userMappingConfig: MappingConfig | None = None,
        requireAuthenticatedServer: bool = True,
        failoverOrder: tuple[PoolElementParameter, ...] = (),
        ppid: int = 0,
        streaming: bool = False,
        announcedServer: Callable[[TcpTransport], IStreamClientEndpoint | None] | None = None,
        stopAfterMaxRegAttempt: bool = False,
        announceListen: str | None = None,
        insecure: bool = False,
    ) -> None:
        if (listen is None) == (userTransport is None):
            raise ValueError("a pool element has either a listen endpoint or a userTransport")
        refusePlaintext(listen, insecure)
        self.insecure = insecure
        self.poolHandle = poolHandle
        self.factory = factory
        self.reactor = reactor
        self.clock: IReactorTime = clock if clock is not None else _reactor(reactor)
        self.timers = timers if timers is not None else AsapTimers()
        self._servers = list(enrpServers)
        self._listen = listen
        self.userTransport = userTransport
        self.policy = policy if policy is not None else RoundRobinPolicy()
        self.registrationLife = registrationLife
        self.peIdentifier = (
            peIdentifier if peIdentifier is not None else secrets.randbelow(0xFFFFFFFE) + 1
        )
        self.advertise = advertise
        self.authorizationPolicy = (
            authorizationPolicy if authorizationPolicy is not None else NO_ENRP_SERVERS
        )
        self.mappingConfig = mappingConfig
        self.userMappingConfig = userMappingConfig
        self.requireAuthenticatedServer = requireAuthenticatedServer
        self.failoverOrder = failoverOrder
        self.ppid = ppid
        self.streaming = streaming
        self.announcedServer = announcedServer
        self.stopAfterMaxRegAttempt = stopAfterMaxRegAttempt
        self.announceListen = announceListen
        self.announcements: IListeningPort | None = None
        self.core: RegistrationCore | None = None
        self.link: HomeServerLink | None = None
        self.port: IListeningPort | None = None
        self.connections: set[PoolElementConnection] = set()
        self.counters: dict[str, int] = {
            "registrations": 0,
            "registrations_granted": 0,
            "keep_alive_acks": 0,
            "keep_alives_refused": 0,
            "home_adoptions": 0,
            "cookie_echoes": 0,
            "asap_errors": 0,
        }
        self._home: PoolElementConnection | None = None
        self._huntBesideTakeover = False
        #: Handle resolutions of this PE (RFC 5352 3.3: "a PE or PU may wish to resolve a
        #: handle"), cached as a pool user's are.
        self.cache = PoolUserCache(
            self.timers.stale_cache_value, discard_timeout=max(60.0, self.timers.stale_cache_value)
        )
        self._requests: PendingRequests[bytes] = PendingRequests(
            self.timers.t1_enrp_request, self.timers.max_request_retransmit
        )
        self._resolving: dict[bytes, list[Deferred[list[PoolElementParameter]]]] = {}
        self._timer = DeadlineTimer(self._timerFired)
        self._registeredWaiters: list[Deferred[None]] = []
        self._deregistered: Deferred[None] | None = None
        self._started: Deferred[None] | None = None

    def __repr__(self) -> str:
        state = "not started" if self.core is None else self.core.state.name.lower()
        return f"<PoolElement {handleText(self.poolHandle)}/0x{self.peIdentifier:08x} {state}>"

    # ------------------------------------------------------------------ public API

    @property
    def registered(self) -> bool:
        """Whether the home ENRP server granted the registration."""
        return self.core is not None and self.core.state is RegistrationState.REGISTERED

    @property
    def homeServer(self) -> int | None:
        """The home ENRP server's identifier, once known."""
        return None if self.core is None else self.core.home_server

    @property
    def element(self) -> PoolElementParameter | None:
        """The PE parameter this pool element registers (once listening)."""
        return None if self.core is None else self.core.element

    def whenRegistered(self) -> Deferred[None]:
        """Fires when the (next) registration is granted; errbacks with
        :class:`~twisted_rserpool.asap.errors.RegistrationRefused` on a rejection, and with
        :class:`~twisted_rserpool.asap.errors.ServerHuntFailed` (naming each server and why
        it could not be used, e.g. its TLS error) after ``timers.max_hunt_rounds`` rounds of
        the server hunt without a home server."""
        if self.registered:
            return succeed(None)
        waiter: Deferred[None] = Deferred()
        self._registeredWaiters.append(waiter)
        return waiter

    def updatePolicy(self, policy: SelectionPolicy) -> Deferred[None]:
        """Re-register at once with a new policy (e.g. another load or weight)."""
        self.policy = policy
        waiter = self.whenRegistered() if not self.registered else Deferred()
        if self.registered:
            self._registeredWaiters.append(waiter)
        if self.core is not None:
            self._perform(self.core.update(self.clock.seconds(), policy), None)
        return waiter

    def updateLoad(self, load: int) -> Deferred[None]:
        """Re-register with the current policy's load set to ``load`` (load policies only)."""
        from dataclasses import replace  # noqa: PLC0415

        if not hasattr(self.policy, "load"):
            raise ValueError(f"{type(self.policy).__name__} has no load")
        return self.updatePolicy(replace(self.policy, load=load))  # type: ignore[call-arg]

    def buildApplication(self, connection: PoolElementConnection) -> IProtocol | None:
        """The application protocol for a pool user's session (``None`` refuses it)."""
        assert connection.transport is not None
        if self.factory is None:
            return None
        return self.factory.buildProtocol(connection.transport.getPeer())

    def authorizeEnrpServer(self, context: SecurityContext) -> bool:
        """Whether a connection on the user transport is an ENRP server we trust: it
        authenticated and its identity has the ``enrp-server`` role."""
        return context.authenticated and self.authorizationPolicy.may(
            context.identity, Role.ENRP_SERVER
        )

    def resolve(
        self, poolHandle: bytes, *, refresh: bool = False
    ) -> Deferred[list[PoolElementParameter]]:
        """Resolve a pool handle at the home server, over the registration connection
        (RFC 5352 3.3 NR3), with the pool user's cache rules (C1-C4) and T1 (sent again
        and a hunt in parallel on expiry, 3.7.2). Errbacks with ``ResolutionFailed`` or
        ``RequestTimedOut``."""
        now = self.clock.seconds()
        state = self.cache.state(poolHandle, now)
        if state is CacheState.FRESH and not refresh:
            return succeed(self._cached(poolHandle))
        if poolHandle not in self._requests:
            self._requests.sent(poolHandle, now)
            self._sendHome(asap.HandleResolution(poolHandle))
            self._armTimer()
        if state is CacheState.STALE and not refresh:
            return succeed(self._cached(poolHandle))
        waiter: Deferred[list[PoolElementParameter]] = Deferred()
        self._resolving.setdefault(poolHandle, []).append(waiter)
        return waiter

    def businessCardReceived(self, card: asap.BusinessCard) -> None:
        """BC1 (RFC 5352 3.9): a card from a PU/PE combination names a pool the cache has no
        entry for: resolve it (failures are only logged)."""
        if self.cache.state(card.pool_handle, self.clock.seconds()) is not CacheState.MISSING:
            return
        resolving = self.resolve(card.pool_handle)

        def failed(failure: Failure) -> None:
            self.log.info(
                "Pool element 0x{pe:08x}: resolving business card pool {pool} failed: {error}",
                pe=self.peIdentifier,
                pool=handleText(card.pool_handle),
                error=failure.getErrorMessage(),
            )

        resolving.addCallbacks(lambda _: None, failed)

    def _cached(self, poolHandle: bytes) -> list[PoolElementParameter]:
        pool = self.cache.handlespace.find_pool(poolHandle)
        return [] if pool is None else [entry.element for entry in pool]

    def _resolutionResponse(self, message: asap.HandleResolutionResponse) -> None:
        handle = message.pool_handle
        if not self._requests.answered(handle) and handle not in self._resolving:
            return  # not asked (or given up): nothing to do
        waiters = self._resolving.pop(handle, [])
        if message.error is not None:
            self.cache.invalidate(handle)
            for waiter in waiters:
                waiter.errback(Failure(ResolutionFailed(handle, message.error)))  # type: ignore[no-untyped-call]
            return
        self.cache.update(
            handle, overallPolicy(message.pool_elements, message.policy), now=self.clock.seconds()
        )
        cached = self._cached(handle)
        for waiter in waiters:
            waiter.callback(cached)

    def _failResolutions(self, error: Exception, handles: list[bytes] | None = None) -> None:
        for handle in list(self._resolving) if handles is None else handles:
            self._requests.answered(handle)
            for waiter in self._resolving.pop(handle, []):
                waiter.errback(Failure(error))  # type: ignore[no-untyped-call]

    def businessCard(self) -> asap.BusinessCard | None:
        """What is sent to each new pool user (RFC 5352 3.9); ``None`` sends nothing."""
        return asap.BusinessCard(self.poolHandle, self.failoverOrder)

    # ------------------------------------------------------------------ service

    def startService(self) -> None:
        """Listen on the user transport, then hunt for a home ENRP server and register."""
        super().startService()  # type: ignore[no-untyped-call]
        self._started = Deferred.fromCoroutine(self._start())
        self._started.addErrback(self._startFailed)

    def _startFailed(self, failure: Failure) -> None:
        self.log.failure(
            "Pool element of pool {pool} could not start", failure, pool=handleText(self.poolHandle)
        )
        for waiter in self._takeWaiters():
            waiter.errback(failure)

    async def _start(self) -> None:
        if self.userTransport is not None:
            transport: Transport = self.userTransport
            asapTransport: TcpTransport | None = None
            self.log.info(
                "Pool element 0x{pe:08x} of pool {pool} registers {transport} {addresses} "
                "port {port}, served elsewhere",
                pe=self.peIdentifier,
                pool=handleText(self.poolHandle),
                transport=type(transport).__name__,
                addresses=",".join(str(a) for a in transport.addresses),
                port=getattr(transport, "port", None),
            )
        else:
            transport = asapTransport = await self._listenUserTransport()
        element = PoolElementParameter(
            pe_identifier=self.peIdentifier,
            home_server_identifier=0,
            registration_life=self.registrationLife,
            user_transport=transport,
            policy=self.policy,
            asap_transport=asapTransport,
        )
        self.core = RegistrationCore(
            self.poolHandle,
            element,
            self.timers,
            stop_after_max_reg_attempt=self.stopAfterMaxRegAttempt,
        )
        if not self.running:
            return
        self.link = HomeServerLink(
            clientEndpoints(self.reactor, self._servers),
            self.clock,
            self.timers,
            onReady=self._linkReady,
            onMessage=self._linkMessage,
            onLost=self._linkLost,
            requireAuthentication=self.requireAuthenticatedServer,
            mappingConfig=self.mappingConfig,
            announcedEndpoint=self.announcedServer,
            role=f"pool element 0x{self.peIdentifier:08x}",
            onHuntFailed=self._huntFailed,
        )
        self.link.start()
        self.announcements = _listenAnnouncements(self.reactor, self.announceListen, self.link)

    async def _listenUserTransport(self) -> TcpTransport:
        """Listen on ``listen``; the TCP transport (data and control) registered for it."""
        endpoint = self._listen
        if isinstance(endpoint, str):
            from twisted.internet.endpoints import serverFromString  # noqa: PLC0415

            endpoint = serverFromString(_reactor(self.reactor), endpoint)  # type: ignore[no-untyped-call]
        assert endpoint is not None and not isinstance(endpoint, str)
        factory = RSerPoolFactory(
            lambda: PoolElementConnection(self), self.clock, mappingConfig=self.userMappingConfig
        )
        self.port = await endpoint.listen(factory)
        host: Any = self.port.getHost()
        address = self.advertise if self.advertise is not None else host.host
        if address in ("", "::"):
            address = "0.0.0.0"
        self.log.info(
            "Pool element 0x{pe:08x} of pool {pool} serving on {address}:{port}",
            pe=self.peIdentifier,
            pool=handleText(self.poolHandle),
            address=address,
            port=host.port,
        )
        return TcpTransport(host.port, ip_address(address), TransportUse.DATA_PLUS_CONTROL)

    def stopService(self) -> Deferred[None]:
        """Deregister (waiting at most T3), then stop listening and close every session."""
        super().stopService()  # type: ignore[no-untyped-call]
        return Deferred.fromCoroutine(self._stop())

    async def _stop(self) -> None:
        if self._started is not None and not self._started.called:
            self._started.cancel()
        if self.core is not None:
            self._deregistered = Deferred()
            actions = self.core.deregister(self.clock.seconds())
            if not actions:
                self._deregistered = None
            self._perform(actions, None)
            pending = self._deregistered
            if pending is not None and not pending.called:
                await pending
        self._cancelTimer()
        linkClosed = self.link.stop() if self.link is not None else None
        if self.announcements is not None:
            self.announcements.stopListening()
            self.announcements = None
        self._failResolutions(RequestTimedOut("the pool element stopped"))
        home, self._home = self._home, None
        if home is not None:
            home.close()
        for connection in list(self.connections):
            connection.close()
        if self.port is not None:
            stopped = self.port.stopListening()
            if stopped is not None:
                await stopped
        if linkClosed is not None:
            await linkClosed
        for waiter in self._takeWaiters():
            waiter.errback(Failure(AsapError("the pool element stopped")))  # type: ignore[no-untyped-call]

    # ------------------------------------------------------------------ home server

    def _isHome(self, connection: PoolElementConnection) -> bool:
        return connection is self._home

    def _linkReady(self, connection: EnrpServerConnection, context: SecurityContext) -> None:
        if self.core is None:
            return
        if self._home is not None:
            if not self._huntBesideTakeover:
                # A takeover server already adopted us on the user transport; keep it.
                if self.link is not None:
                    self.link.release()
                return
            # The takeover server did not answer our registration: the server the hunt
            # found is the home now.
            self._home = None
        self._huntBesideTakeover = False
        now = self.clock.seconds()
        for handle in self._requests:
            # Pending resolutions go to the new home (RFC 5352 3.7.2).
            self._requests.resent(handle, now)
            connection.sendAsap(asap.HandleResolution(handle))
        self._perform(self.core.home_connected(self.clock.seconds()), connection)

    def _linkMessage(self, connection: EnrpServerConnection, message: asap.AsapMessage) -> None:
        if self.core is None:
            return
        home = self.link is not None and self.link.isHome(connection)
        if isinstance(message, asap.HandleResolutionResponse):
            self._resolutionResponse(message)
            self._armTimer()
            return
        if isinstance(message, asap.ErrorMessage):
            self._asapError(connection, message)
        self._perform(
            self.core.message_from_home(message, self.clock.seconds(), from_home=home),
            connection,
        )

    def _asapError(self, connection: RSerPoolProtocol, message: asap.ErrorMessage) -> None:
        self.counters["asap_errors"] += 1
        self.log.warn(
            "Pool element 0x{pe:08x}: ASAP_ERROR from ENRP server {peer}: causes {causes}",
            pe=self.peIdentifier,
            peer=connection.peer,
            causes=[c.code for c in message.error.causes],
        )

    def _huntFailed(self, error: ServerHuntFailed) -> None:
        # No home after timers.max_hunt_rounds rounds: the registration and resolutions
        # waiting for one fail with the servers' reasons (the hunt goes on).
        if self._home is not None:
            return
        for waiter in self._takeWaiters():
            waiter.errback(Failure(error))  # type: ignore[no-untyped-call]
        self._failResolutions(error)

    def _linkLost(self, connection: EnrpServerConnection) -> None:
        if self.core is not None and self._home is None:
            self._perform(self.core.home_lost(self.clock.seconds()), None)

    def _fromHome(self, connection: PoolElementConnection, message: asap.AsapMessage) -> None:
        if isinstance(message, asap.HandleResolutionResponse):
            self._resolutionResponse(message)
            self._armTimer()
            return
        if self.core is not None:
            if isinstance(message, asap.ErrorMessage):
                self._asapError(connection, message)
            self._perform(self.core.message_from_home(message, self.clock.seconds()), connection)

    def _keepAliveOnUserTransport(
        self, connection: PoolElementConnection, message: asap.EndpointKeepAlive
    ) -> None:
        if self.core is None:
            return
        context = connection.securityContext
        trusted = context is not None and self.authorizeEnrpServer(context)
        if not trusted:
            self.counters["keep_alives_refused"] += 1
            self.log.warn(
                "ASAP_ENDPOINT_KEEP_ALIVE from {peer} on the user transport ignored: "
                "not an authenticated ENRP server ("
                + (context.logFormat() if context is not None else "not ready")
                + ")",
                peer=connection.peer,
                **(context.logFields() if context is not None else {}),
            )
            return
        actions = self.core.keep_alive(
            message, self.clock.seconds(), trusted=True, from_home=connection is self._home
        )
        self._perform(actions, connection)

    def _userTransportLost(self, connection: PoolElementConnection) -> None:
        if connection is self._home:
            self._home = None
            if self.core is not None and self.running:
                self._perform(self.core.home_lost(self.clock.seconds()), None)

    def _sendHome(self, message: asap.AsapMessage) -> bool:
        home = self._home
        if home is not None and home.ready:
            home.sendAsap(message)
            return True
        return self.link is not None and self.link.send(message)

    def _perform(self, actions: list[Action], origin: RSerPoolProtocol | None) -> None:
        for action in actions:
            if isinstance(action, SendToHome):
                if isinstance(action.message, asap.Registration):
                    self.counters["registrations"] += 1
                self._sendHome(action.message)
            elif isinstance(action, SendToPeer):
                if origin is not None and origin.ready:
                    origin.sendAsap(action.message)
                    self.counters["keep_alive_acks"] += 1
            elif isinstance(action, AdoptHome):
                assert isinstance(origin, PoolElementConnection)
                self.counters["home_adoptions"] += 1
                self.log.info(
                    "Pool element 0x{pe:08x}: ENRP server 0x{server:08x} ({peer}, {identity}) "
                    "took us over: it is our home server now",
                    pe=self.peIdentifier,
                    server=action.server_identifier,
                    peer=origin.peer,
                    identity=origin.securityContext.identity if origin.securityContext else None,
                )
                self._home = origin
                self._huntBesideTakeover = False
                if self.link is not None:
                    self.link.release()
            elif isinstance(action, HuntForServer):
                self._home = None
                if self.link is not None and self.running:
                    self.link.huntFor(action.reason)
            elif isinstance(action, HuntInParallel):
                if self.link is not None and self.running:
                    # A takeover home on the user transport stays until the hunt finds a
                    # server; the link has no connection then, so this is a plain hunt.
                    self._huntBesideTakeover = self._home is not None
                    self.link.huntInParallel(action.reason)
            elif isinstance(action, Registered):
                self.counters["registrations_granted"] += 1
                self._registered(action, origin)
            elif isinstance(action, Refused):
                error = RegistrationRefused(self.poolHandle, action.error)
                if action.by_error:
                    self.log.error(
                        "Pool element 0x{pe:08x}: the ENRP server answered the registration "
                        "with ASAP_ERROR (cause {cause}); it cannot succeed as sent, so no "
                        "more attempts until the registration is corrected",
                        pe=self.peIdentifier,
                        cause=action.error.code if action.error is not None else None,
                    )
                else:
                    self.log.error(
                        "Pool element 0x{pe:08x}: {error}", pe=self.peIdentifier, error=str(error)
                    )
                for waiter in self._takeWaiters():
                    waiter.errback(Failure(error))  # type: ignore[no-untyped-call]
            elif isinstance(action, ReportFailure):
                self.log.error(
                    "Pool element 0x{pe:08x}: {attempts} registration attempts timed out "
                    "(MAX-REG-ATTEMPT); {next}",
                    pe=self.peIdentifier,
                    attempts=action.attempts,
                    next="no more attempts"
                    if action.stopped
                    else "still trying, backing off up to RETRAN-MAX",
                )
                timedOut = RequestTimedOut(
                    f"{action.attempts} registrations in pool {handleText(self.poolHandle)} "
                    "unanswered"
                )
                for waiter in self._takeWaiters():
                    waiter.errback(Failure(timedOut))  # type: ignore[no-untyped-call]
            elif isinstance(action, Deregistered):
                self.log.info(
                    "Pool element 0x{pe:08x} deregistered ({how})",
                    pe=self.peIdentifier,
                    how="answered" if action.answered else "without an answer",
                )
                done, self._deregistered = self._deregistered, None
                if done is not None and not done.called:
                    done.callback(None)
        self._armTimer()

    def _registered(self, action: Registered, origin: RSerPoolProtocol | None) -> None:
        if action.renewal:
            # Every T4 and every updateLoad that changed nothing: not worth an info line.
            self.log.debug(
                "Pool element 0x{pe:08x} re-registered in pool {pool} unchanged (life {life} s)",
                pe=self.peIdentifier,
                pool=handleText(self.poolHandle),
                life=action.life,
            )
        elif action.life_known:
            self.log.info(
                "Pool element 0x{pe:08x} registered in pool {pool} (life {life} s)",
                pe=self.peIdentifier,
                pool=handleText(self.poolHandle),
                life=action.life,
            )
        else:
            self.log.warn(
                "Pool element 0x{pe:08x} registered in pool {pool} with a warning (cause "
                "{cause}) that does not say the life granted: assuming {life} s",
                pe=self.peIdentifier,
                pool=handleText(self.poolHandle),
                cause=action.warning.code if action.warning is not None else None,
                life=action.life,
            )
        link = self.link
        if link is not None and origin is not None and link.isHome(origin):
            # The home answered: no other server is needed, nor the ones hunted away from
            # (the new home owns our registration now, RFC 5352 3.1 rule 4).
            link.endHunt()
            link.releasePrevious()
        for waiter in self._takeWaiters():
            waiter.callback(None)

    def _takeWaiters(self) -> list[Deferred[None]]:
        waiters, self._registeredWaiters = self._registeredWaiters, []
        return waiters

    # ------------------------------------------------------------------ timers

    def _armTimer(self) -> None:
        deadlines = [
            d
            for d in (
                None if self.core is None else self.core.next_deadline(),
                self._requests.next_deadline(),
                self.cache.next_deadline(),
            )
            if d is not None
        ]
        self._timer.arm(self.clock, min(deadlines) if deadlines else None)

    def _cancelTimer(self) -> None:
        self._timer.cancel()

    def _timerFired(self, now: float) -> None:
        self.cache.expire(now)
        for action in self._requests.handle_timer(now):
            if isinstance(action, Retransmit):
                self._sendHome(asap.HandleResolution(action.key))
                if self._home is None and self.link is not None and self.running:
                    self.link.huntInParallel("T1-ENRPrequest expired")
            elif isinstance(action, GiveUp):
                self._failResolutions(
                    RequestTimedOut(f"no answer to the handle resolution of {action.key!r}"),
                    [action.key],
                )
        if self.core is not None:
            self._perform(self.core.handle_timer(now), None)
        else:
            self._armTimer()
