"""The pool user (RFC 5352 sections 3.3, 3.5-3.7 and 6.5): handle resolution with a cache,
selection by the pool's policy, unreachable reports, and sessions with failover."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from cryptography import x509
from twisted.application.service import Service
from twisted.internet.defer import Deferred, fail, gatherResults, succeed
from twisted.internet.interfaces import (
    IListeningPort,
    IProtocol,
    IProtocolFactory,
    IReactorTime,
    IStreamClientEndpoint,
)
from twisted.logger import Logger
from twisted.python.failure import Failure

from twisted_rserpool.asap.delivery import PoolElementHandle, SendOptions
from twisted_rserpool.asap.errors import (
    AsapError,
    NoPoolElementAvailable,
    PlaintextRefused,
    RequestTimedOut,
    ResolutionFailed,
    ServerHuntFailed,
    SessionClosed,
)
from twisted_rserpool.asap.fanout import FanOutReport, addressElement, sendToAll
from twisted_rserpool.asap.link import EnrpServerConnection, HomeServerLink
from twisted_rserpool.asap.notifier import FailoverEvent, IFailoverObserver, describePE
from twisted_rserpool.asap.requests import GiveUp, PendingRequests, Retransmit
from twisted_rserpool.asap.session import Session, SessionConnection
from twisted_rserpool.asap.timers import AsapTimers
from twisted_rserpool.deadline import DeadlineTimer
from twisted_rserpool.describe import handleText
from twisted_rserpool.handlespace import CacheState, PoolUserCache, UnknownPoolHandle
from twisted_rserpool.security.context import SecurityContext
from twisted_rserpool.security.ratelimit import Rate, RateLimiter
from twisted_rserpool.transport.connection import MappingConfig
from twisted_rserpool.wire import asap
from twisted_rserpool.wire.errors import CauseCode
from twisted_rserpool.wire.parameters import (
    OperationError,
    PoolElementParameter,
    RoundRobinPolicy,
    SelectionPolicy,
    TcpTransport,
)

if TYPE_CHECKING:
    from twisted_rserpool.asap.element import PoolElement

__all__ = ["DEFAULT_SESSION_MAPPING", "PoolUser", "clientEndpoints"]

log = Logger()

#: Heartbeats of session connections: a silent pool element is declared dead after 1 + 2 s.
DEFAULT_SESSION_MAPPING = MappingConfig(heartbeat_interval=1.0, heartbeat_timeout=2.0)


def _reactor(reactor: Any) -> Any:
    if reactor is None:
        from twisted.internet import reactor as global_reactor  # noqa: PLC0415

        return global_reactor
    return reactor


def clientEndpoints(
    reactor: Any, servers: Iterable[IStreamClientEndpoint | str]
) -> list[IStreamClientEndpoint]:
    """Endpoints for ``servers`` given as endpoints or client strings (``tlspsk:...``)."""
    from twisted.internet.endpoints import clientFromString  # noqa: PLC0415

    return [
        clientFromString(_reactor(reactor), s) if isinstance(s, str) else s  # type: ignore[no-untyped-call]
        for s in servers
    ]


def _listenAnnouncements(
    reactor: Any, description: str | None, link: HomeServerLink
) -> IListeningPort | None:
    """Listen for ASAP_SERVER_ANNOUNCE as ``description`` says (``None``: not at all)."""
    if description is None:
        return None
    from twisted_rserpool.asap.announcements import (  # noqa: PLC0415
        AnnouncementReceiver,
        listenForAnnouncements,
        parseAnnounceListen,
    )

    receiver = AnnouncementReceiver(link.announcementReceived)
    return listenForAnnouncements(_reactor(reactor), parseAnnounceListen(description), receiver)


def overallPolicy(
    elements: Iterable[PoolElementParameter], overall: SelectionPolicy | None
) -> list[PoolElementParameter]:
    """A handle resolution response's PEs under its overall policy (RFC 5352 2.2.6): absent,
    round robin is assumed; a PE's policy of another type is ignored (replaced by the
    overall one), one of that type keeps its values (load, weight)."""
    policy = overall if overall is not None else RoundRobinPolicy()
    return [
        pe if pe.policy.policy_type == policy.policy_type else replace(pe, policy=policy)
        for pe in elements
    ]


class PoolUser(Service):
    """Resolves pool handles at a home ENRP server and connects sessions to pool elements.

    ``enrpServers``: the configured ENRP servers (endpoints or client strings), hunted in
    order; the server must authenticate (a certificate that verifies, or a PSK) unless
    ``requireAuthenticatedServer`` is false. Pool elements are reached through
    ``peEndpoint(element)``; by default TLS verifying the pool element's certificate against
    ``peTrustRoots`` (for its IP address). Without roots (and without ``peEndpoint``)
    ``connect`` fails with :class:`~twisted_rserpool.asap.errors.PlaintextRefused` unless
    ``insecure=True`` asks for plain TCP.

    Failover observers (:class:`~twisted_rserpool.asap.notifier.IFailoverObserver`) hear of
    every failover and may veto it; a failover to weaker security is refused unless
    ``refuseWeakerFailover`` is false. Observers that have not answered within
    ``failoverDecisionTimeout`` seconds veto (failing closed). A pool element's connection
    must be ready within ``connectTimeout`` seconds, else the next one is tried (up to
    ``maxFailoverAttempts``). ENDPOINT_UNREACHABLE reports are sent at most once
    per pool element per ``unreachableInterval`` seconds and within ``unreachableRate``.

    ASAP_SERVER_ANNOUNCE messages are hints: with ``announcedServer(transport)`` (an endpoint
    with our credentials, or ``None`` to ignore it) an announced server joins the hunt's
    candidates for T7-ENRPoutdate and, like any other, is used only once it authenticates.
    They arrive on the home connection, and over UDP with ``announceListen``
    (``[ADDRESS:]PORT``; a multicast ADDRESS such as ``224.0.1.185:3863`` is joined; IPv6 in
    brackets, ``[ff02::133]:3863:eth0`` joining on an interface).

    Override :meth:`choosePoolElement` to pick among the candidates the policy ordered.
    """

    log = Logger()

    def __init__(
        self,
        enrpServers: Sequence[IStreamClientEndpoint | str],
        *,
        peEndpoint: Callable[[PoolElementParameter], IStreamClientEndpoint] | None = None,
        peTrustRoots: Sequence[x509.Certificate] | None = None,
        timers: AsapTimers | None = None,
        clock: IReactorTime | None = None,
        reactor: Any = None,
        failoverObservers: Iterable[IFailoverObserver] = (),
        refuseWeakerFailover: bool = True,
        unreachableInterval: float = 5.0,
        unreachableRate: Rate | None = None,
        sessionMappingConfig: MappingConfig | None = None,
        mappingConfig: MappingConfig | None = None,
        connectTimeout: float = 5.0,
        maxFailoverAttempts: int = 5,
        failoverDecisionTimeout: float = 10.0,
        requireAuthenticatedServer: bool = True,
        resolutionItems: int | None = None,
        announcedServer: Callable[[TcpTransport], IStreamClientEndpoint | None] | None = None,
        rng: random.Random | None = None,
        announceListen: str | None = None,
        insecure: bool = False,
    ) -> None:
        self.insecure = insecure
        self.reactor = reactor
        self.clock: IReactorTime = clock if clock is not None else _reactor(reactor)
        self.timers = timers if timers is not None else AsapTimers()
        self._servers = list(enrpServers)
        self._peEndpoint = peEndpoint
        self.peTrustRoots = list(peTrustRoots) if peTrustRoots is not None else None
        self.failoverObservers: list[IFailoverObserver] = list(failoverObservers)
        self.refuseWeakerFailover = refuseWeakerFailover
        self.unreachableInterval = unreachableInterval
        self.sessionMappingConfig = (
            sessionMappingConfig if sessionMappingConfig is not None else DEFAULT_SESSION_MAPPING
        )
        self.mappingConfig = mappingConfig
        self.connectTimeout = connectTimeout
        self.maxFailoverAttempts = maxFailoverAttempts
        if not failoverDecisionTimeout > 0:
            raise ValueError("failoverDecisionTimeout must be positive")
        self.failoverDecisionTimeout = failoverDecisionTimeout
        self.requireAuthenticatedServer = requireAuthenticatedServer
        self.resolutionItems = resolutionItems
        self.announcedServer = announcedServer
        self.announceListen = announceListen
        self.announcements: IListeningPort | None = None
        self.cache = PoolUserCache(
            self.timers.stale_cache_value,
            discard_timeout=max(60.0, self.timers.stale_cache_value),
            rng=rng,
        )
        self._requests: PendingRequests[bytes] = PendingRequests(
            self.timers.t1_enrp_request, self.timers.max_request_retransmit
        )
        self._waiting: dict[bytes, list[Deferred[list[PoolElementParameter]]]] = {}
        self._reported: dict[tuple[bytes, int], float] = {}
        self._unreachableLimiter: RateLimiter[str] = RateLimiter(
            unreachableRate if unreachableRate is not None else Rate(1.0, 5.0)
        )
        self._timer = DeadlineTimer(self._timerFired)
        self.link: HomeServerLink | None = None
        self.sessions: set[Session] = set()
        #: Our own pool elements when this pool user is part of a PU/PE combination: their
        #: business card goes to each PE a session reaches (3.9), and ASAP_SEND_TO_ALL
        #: skips them unless SEND_TO_SELF.
        self.ownPoolElements: list[PoolElement] = []
        self._stopped = False
        self._connections: set[SessionConnection] = set()
        self._pendingHolders: list[list[SessionConnection]] = []
        #: Counts of what happened, for tests, benchmarks and the admin's curiosity.
        self.counters: dict[str, int] = {
            "resolutions_sent": 0,
            "resolutions_from_cache": 0,
            "unreachable_sent": 0,
            "unreachable_suppressed": 0,
            "failovers": 0,
            "asap_errors": 0,
            "cache_discards": 0,
        }
        self.failoverTimes: list[float] = []
        #: The latest Operational Errors of ASAP_ERROR messages from ENRP servers (at most 16).
        self.asapErrors: list[OperationError] = []

    def __repr__(self) -> str:
        home = "not started" if self.link is None else self.link.homeText
        return f"<PoolUser {home}, {len(self.sessions)} session(s)>"

    # ------------------------------------------------------------------ service

    def startService(self) -> None:
        """Begin the server hunt."""
        super().startService()  # type: ignore[no-untyped-call]
        self.link = HomeServerLink(
            clientEndpoints(self.reactor, self._servers),
            self.clock,
            self.timers,
            onReady=self._homeReady,
            onMessage=self._homeMessage,
            onLost=self._homeLost,
            requireAuthentication=self.requireAuthenticatedServer,
            mappingConfig=self.mappingConfig,
            announcedEndpoint=self.announcedServer,
            role="pool user",
            onHuntFailed=self._huntFailed,
        )
        self.link.start()
        self.announcements = _listenAnnouncements(self.reactor, self.announceListen, self.link)

    def stopService(self) -> Deferred[None]:
        """Close every session and the ENRP server connection; fires when the pool element
        connections and the ENRP server connection are closed."""
        super().stopService()  # type: ignore[no-untyped-call]
        self._stopped = True
        for session in list(self.sessions):
            session.abortConnection()
        waits: list[Deferred[None]] = []
        if self.link is not None:
            waits.append(self.link.stop())
        if self.announcements is not None:
            self.announcements.stopListening()
            self.announcements = None
        self._cancelTimer()
        for handle in list(self._waiting):
            self._fail(handle, RequestTimedOut("the pool user stopped"))
        for handle in self._requests:
            self._requests.answered(handle)
        for connection in list(self._openConnections):
            connection.close()
            waits.append(connection.whenLost)
        return gatherResults(waits).addCallback(lambda _: None)

    def _connectionOpened(self, holder: list[SessionConnection]) -> None:
        self._pendingHolders.append(holder)

    def _connectionClosed(self, connection: SessionConnection) -> None:
        self._openConnections.discard(connection)

    @property
    def _openConnections(self) -> set[SessionConnection]:
        for holder in self._pendingHolders:
            self._connections.update(c for c in holder if not c.whenLost.called)
        self._pendingHolders.clear()
        return self._connections

    def _ensureRunning(self) -> None:
        if self._stopped:
            raise SessionClosed("the pool user stopped")
        if not self.running:
            self.startService()

    # ------------------------------------------------------------------ ENRP

    def _homeReady(self, connection: EnrpServerConnection, context: SecurityContext) -> None:
        # A new home (at start, after a loss, or found by a hunt in parallel): the pending
        # requests go to it (RFC 5352 3.7.2: adopt the server that responds).
        now = self.clock.seconds()
        for handle in self._requests:
            self._sendResolution(handle)
            self._requests.resent(handle, now)
        self._armTimer()

    def _huntFailed(self, error: ServerHuntFailed) -> None:
        # No home after timers.max_hunt_rounds rounds: waiting resolutions fail with the
        # servers' reasons (the hunt goes on; a later resolve tries again).
        for handle in list(self._waiting):
            self._fail(handle, error)

    def _homeLost(self, connection: EnrpServerConnection) -> None:
        if self.link is not None:
            self.link.huntFor("the home ENRP server connection closed")

    def _homeMessage(self, connection: EnrpServerConnection, message: asap.AsapMessage) -> None:
        # Answers count from the home and from servers hunted away from (a slow server's
        # late answer is still an answer).
        if isinstance(message, asap.HandleResolutionResponse):
            self._resolutionResponse(message)
        elif isinstance(message, asap.ErrorMessage):
            self.counters["asap_errors"] += 1
            self.asapErrors.append(message.error)
            del self.asapErrors[:-16]
            self.log.warn(
                "Pool user: ASAP_ERROR from ENRP server {peer}: causes {causes}",
                peer=getattr(connection, "peer", None),
                causes=[c.code for c in message.error.causes],
            )

    def _sendResolution(self, handle: bytes) -> None:
        if self.link is not None and self.link.send(
            asap.HandleResolution(handle, items=self.resolutionItems)
        ):
            self.counters["resolutions_sent"] += 1

    def _resolutionResponse(self, message: asap.HandleResolutionResponse) -> None:
        handle = message.pool_handle
        now = self.clock.seconds()
        self._requests.answered(handle)
        if message.error is not None:
            self.cache.invalidate(handle)
            self._fail(handle, ResolutionFailed(handle, message.error))
        else:
            elements = overallPolicy(message.pool_elements, message.policy)
            self.cache.update(handle, elements, now=now)
            waiters = self._waiting.pop(handle, [])
            cached = self._cached(handle)
            for waiter in waiters:
                waiter.callback(cached)
        if not len(self._requests) and self.link is not None:
            # Nothing waits for an answer: no other server is needed, nor the ones a hunt
            # in parallel moved away from.
            self.link.endHunt()
            self.link.releasePrevious()
        self._armTimer()

    def _fail(self, handle: bytes, error: Exception) -> None:
        self._requests.answered(handle)
        for waiter in self._waiting.pop(handle, []):
            waiter.errback(Failure(error))  # type: ignore[no-untyped-call]

    def businessCardReceived(self, card: asap.BusinessCard) -> None:
        """BC1 (RFC 5352 3.9): a business card names a pool the cache has no entry for:
        resolve it (the answer fills the cache; failures are only logged)."""
        if self._stopped or self.cache.state(card.pool_handle, self.clock.seconds()) is not (
            CacheState.MISSING
        ):
            return
        resolving = self.resolve(card.pool_handle)

        def failed(failure: Failure) -> None:
            self.log.info(
                "Pool user: resolving business card pool {pool} failed: {error}",
                pool=handleText(card.pool_handle),
                error=failure.getErrorMessage(),
            )

        resolving.addCallbacks(lambda _: None, failed)

    def purgeCache(self, poolHandle: bytes | None = None) -> None:
        """CachePurgeRequest (RFC 5352 6.4): forget what the cache holds for
        ``poolHandle`` (every pool when ``None``); the next use resolves it again."""
        handles = (
            [poolHandle]
            if poolHandle is not None
            else [pool.handle for pool in self.cache.handlespace.pools()]
        )
        for handle in handles:
            self.cache.invalidate(handle)
        self._armTimer()

    def populateCache(self, poolHandle: bytes) -> Deferred[list[PoolElementParameter]]:
        """CachePopulateRequest (RFC 5352 6.3): resolve ``poolHandle`` now, whatever the
        cache holds, and store the answer."""
        return self.resolve(poolHandle, refresh=True)

    def _cached(self, handle: bytes) -> list[PoolElementParameter]:
        pool = self.cache.handlespace.find_pool(handle)
        return [] if pool is None else [entry.element for entry in pool]

    # ------------------------------------------------------------------ resolution

    def resolve(
        self, poolHandle: bytes, *, refresh: bool = False
    ) -> Deferred[list[PoolElementParameter]]:
        """The pool's elements: from the cache while fresh (C4); a stale entry is returned
        at once and refreshed in parallel (C2, C3); otherwise a handle resolution is sent
        and awaited (T1, MAX-REQUEST-RETRANSMIT). Errbacks with
        :class:`~twisted_rserpool.asap.errors.ResolutionFailed` or
        :class:`~twisted_rserpool.asap.errors.RequestTimedOut`."""
        try:
            self._ensureRunning()
        except SessionClosed as e:
            return fail(e)
        now = self.clock.seconds()
        state = self.cache.state(poolHandle, now)
        if state is CacheState.FRESH and not refresh:
            self.counters["resolutions_from_cache"] += 1
            return succeed(self._cached(poolHandle))
        waiter: Deferred[list[PoolElementParameter]] = Deferred()
        self._request(poolHandle, now)
        if state is CacheState.STALE and not refresh:
            self.counters["resolutions_from_cache"] += 1
            return succeed(self._cached(poolHandle))
        self._waiting.setdefault(poolHandle, []).append(waiter)
        return waiter

    def _request(self, handle: bytes, now: float) -> None:
        if handle in self._requests:
            return
        self._requests.sent(handle, now)
        self._sendResolution(handle)
        self._armTimer()

    async def _select(
        self, poolHandle: bytes, exclude: set[int], preferred: Sequence[PoolElementParameter]
    ) -> PoolElementParameter:
        # BC2: a business card's order comes first, whether or not the cache lists those
        # PEs (answers carry only some of a pool's PEs); the card carries their transports.
        for element in preferred:
            if element.pe_identifier not in exclude and self._reachable(element):
                cached = self.cache.handlespace.get(poolHandle, element.pe_identifier)
                return cached.element if cached is not None else element
        for attempt in range(2):
            try:
                await self.resolve(poolHandle, refresh=attempt > 0)
            except ResolutionFailed as e:
                if e.error is not None and e.error.code == CauseCode.UNKNOWN_POOL_HANDLE:
                    # The pool is gone: for whoever wants one of its PEs, none is left.
                    raise NoPoolElementAvailable(
                        poolHandle, "the ENRP server knows no such pool"
                    ) from e
                raise
            candidates = self._ordered(poolHandle, exclude)
            if candidates:
                return self.choosePoolElement(poolHandle, candidates)
        raise NoPoolElementAvailable(poolHandle)

    def _reachable(self, element: PoolElementParameter) -> bool:
        return self._peEndpoint is not None or isinstance(element.user_transport, TcpTransport)

    def _ordered(self, poolHandle: bytes, exclude: set[int]) -> list[PoolElementParameter]:
        pool = self.cache.handlespace.find_pool(poolHandle)
        if pool is None:
            return []
        try:
            entries = self.cache.select(poolHandle, len(pool))
        except UnknownPoolHandle:
            return []
        return [
            e.element
            for e in entries
            if e.pe_identifier not in exclude and self._reachable(e.element)
        ]

    def selectPoolElement(
        self,
        poolHandle: bytes,
        exclude: Iterable[int] = (),
        preferred: Sequence[PoolElementParameter] = (),
    ) -> Deferred[PoolElementParameter]:
        """One pool element by the pool's policy (RFC 5356 pool user rules), skipping
        ``exclude``d identifiers and preferring a business card's ``preferred`` order (BC2)."""
        return Deferred.fromCoroutine(self._select(poolHandle, set(exclude), preferred))

    def choosePoolElement(
        self, poolHandle: bytes, candidates: list[PoolElementParameter]
    ) -> PoolElementParameter:
        """Pick one of ``candidates`` (never empty, in the policy's order); the first by default."""
        return candidates[0]

    def forgetPoolElement(self, poolHandle: bytes, peIdentifier: int) -> None:
        """Drop a pool element from the cache (it failed)."""
        if self.cache.handlespace.get(poolHandle, peIdentifier) is not None:
            self.cache.remove(poolHandle, peIdentifier)

    def reportUnreachable(self, poolHandle: bytes, peIdentifier: int) -> bool:
        """Send ASAP_ENDPOINT_UNREACHABLE for a pool element (RFC 5352 3.5), at most once per
        pool element per ``unreachableInterval`` and within the global rate (RFC 5355 2.13).
        Returns whether a report went out."""
        now = self.clock.seconds()
        key = (poolHandle, peIdentifier)
        last = self._reported.get(key)
        if last is not None and now - last < self.unreachableInterval:
            self.counters["unreachable_suppressed"] += 1
            return False
        if not self._unreachableLimiter.allow("all", now):
            self.counters["unreachable_suppressed"] += 1
            return False
        if len(self._reported) > 4096:
            self._reported = {
                k: t for k, t in self._reported.items() if now - t < self.unreachableInterval
            }
        self._reported[key] = now
        if self.link is None or not self.link.send(asap.EndpointUnreachable(*key)):
            return False
        self.counters["unreachable_sent"] += 1
        self.log.info(
            "Reported PE 0x{pe:08x} of pool {pool} unreachable",
            pe=peIdentifier,
            pool=handleText(poolHandle),
        )
        return True

    # ------------------------------------------------------------------ sessions

    def endpointForPoolElement(self, element: PoolElementParameter) -> IStreamClientEndpoint:
        """Where to reach a pool element's user transport (TLS when trust roots are set)."""
        if self._peEndpoint is not None:
            return self._peEndpoint(element)
        transport = element.user_transport
        if not isinstance(transport, TcpTransport):
            raise NoPoolElementAvailable(b"", f"PE 0x{element.pe_identifier:08x} is not on TCP")
        from twisted.internet.endpoints import TCP4ClientEndpoint  # noqa: PLC0415

        host = str(transport.address)
        tcp = TCP4ClientEndpoint(
            _reactor(self.reactor), host, transport.port, timeout=self.connectTimeout
        )
        if self.peTrustRoots is None:
            return tcp
        from twisted_rserpool.endpoints import TlsClientEndpoint  # noqa: PLC0415
        from twisted_rserpool.security.tls import certificateClientCreator  # noqa: PLC0415

        return TlsClientEndpoint(tcp, certificateClientCreator(host, self.peTrustRoots))

    def connect(
        self,
        destination: bytes | PoolElementHandle | TcpTransport,
        protocolFactory: IProtocolFactory,
        *,
        ppid: int = 0,
        streaming: bool = False,
        options: SendOptions = SendOptions.SEND_FAILOVER,
    ) -> Deferred[IProtocol]:
        """A session to ``destination``: fires with the application protocol (built by
        ``protocolFactory``) connected through a
        :class:`~twisted_rserpool.asap.session.Session`.

        ``destination`` is a pool handle (a PE chosen by the pool's policy, 6.5.1), a
        :class:`~twisted_rserpool.asap.delivery.PoolElementHandle` (that PE, 6.5.3; with
        SEND_FAILOVER another of its pool if it cannot be reached or fails), or a
        ``TcpTransport`` (that address, 6.5.4: no failover, the session is
        SEND_NO_FAILOVER). ``options`` is the session's delivery default: SEND_FAILOVER
        (at least once across failovers) or SEND_NO_FAILOVER (the session ends when its PE
        fails, its error report carrying what was not delivered).

        Each ``write`` is one application message unless ``streaming``: then writes made in
        one reactor turn are merged into messages of up to 60 000 bytes, as TCP would merge
        them (right for byte-stream protocols, far fewer chunks and ACKs)."""
        try:
            self._ensureRunning()
        except SessionClosed as e:
            return fail(e)
        if self._peEndpoint is None and self.peTrustRoots is None and not self.insecure:
            return fail(
                PlaintextRefused(
                    "a session to a pool element would be plaintext and unauthenticated "
                    "(no peTrustRoots): give peTrustRoots (or peEndpoint), or pass "
                    "insecure=True to allow it"
                )
            )
        return Deferred.fromCoroutine(
            self._connect(destination, protocolFactory, ppid, streaming, SendOptions(options))
        )

    async def _connect(
        self,
        destination: bytes | PoolElementHandle | TcpTransport,
        protocolFactory: IProtocolFactory,
        ppid: int,
        streaming: bool,
        options: SendOptions,
    ) -> IProtocol:
        fixed: PoolElementParameter | None = None
        if isinstance(destination, TcpTransport):
            poolHandle, fixed = b"", addressElement(destination)
            options = SendOptions.SEND_NO_FAILOVER
        elif isinstance(destination, PoolElementHandle):
            poolHandle = destination.pool_handle
            fixed = await self._elementFor(destination)
        else:
            poolHandle = destination
        tried: set[int] = set()
        for _ in range(self.maxFailoverAttempts):
            if fixed is not None:
                element, fixed = fixed, None
            else:
                if not poolHandle or (tried and options & SendOptions.SEND_NO_FAILOVER):
                    break
                element = await self.selectPoolElement(poolHandle, tried)
            tried.add(element.pe_identifier)
            protocol = protocolFactory.buildProtocol(None)  # type: ignore[arg-type]
            if protocol is None:
                raise NoPoolElementAvailable(poolHandle, "the protocol factory built nothing")
            session = Session(
                self,
                poolHandle,
                protocol,
                ppid,
                streaming,
                options=options,
                canFailOver=bool(poolHandle),
            )
            try:
                connection = await session._open(element)
            except Exception as e:
                self.log.info(
                    "Pool {pool}: {pe} unreachable: {error}",
                    pool=handleText(poolHandle),
                    pe=describePE(element),
                    error=str(e),
                )
                if poolHandle:
                    self.reportUnreachable(poolHandle, element.pe_identifier)
                    self.forgetPoolElement(poolHandle, element.pe_identifier)
                continue
            self.sessions.add(session)
            session._attach(connection)
            protocol.makeConnection(session)
            session._started()
            context = session.securityContext
            self.log.info(
                "Session to pool {pool} on {pe} ("
                + (context.logFormat() if context is not None else "security not known")
                + ")",
                pool=handleText(poolHandle),
                pe=describePE(element),
                **(context.logFields() if context is not None else {}),
            )
            return protocol
        raise NoPoolElementAvailable(poolHandle, f"{len(tried)} pool element(s) tried")

    async def _elementFor(self, handle: PoolElementHandle) -> PoolElementParameter:
        """The cached PE of ``handle`` (resolved when absent or stale, 6.5.3 B), or one built
        from the handle's TCP transport."""
        for refresh in (False, True):
            try:
                await self.resolve(handle.pool_handle, refresh=refresh)
            except AsapError:
                if handle.transport is None:
                    raise
                break
            entry = self.cache.handlespace.get(handle.pool_handle, handle.pe_identifier)
            if entry is not None:
                return entry.element
        if isinstance(handle.transport, TcpTransport):
            return addressElement(handle.transport, handle.pe_identifier)
        raise NoPoolElementAvailable(
            handle.pool_handle, f"PE 0x{handle.pe_identifier:08x} is not in the pool"
        )

    def sendToAll(
        self,
        poolHandle: bytes,
        data: bytes,
        options: SendOptions = SendOptions.SEND_TO_ALL,
        *,
        ppid: int = 0,
    ) -> Deferred[FanOutReport]:
        """Send a copy of ``data`` to every PE of ``poolHandle`` (ASAP_SEND_TO_ALL, 6.5.5),
        except our own PEs (:attr:`ownPoolElements`) unless ``options`` has SEND_TO_SELF;
        fires with a :class:`~twisted_rserpool.asap.fanout.FanOutReport` once each copy
        was acknowledged or failed (copies are never failed over)."""
        return Deferred.fromCoroutine(sendToAll(self, poolHandle, data, SendOptions(options), ppid))

    def failoverCompleted(self, event: FailoverEvent, seconds: float) -> None:
        """A session resumed on a new pool element ``seconds`` after leaving the old one."""
        self.counters["failovers"] += 1
        self.failoverTimes.append(seconds)

    def _sessionEnded(self, session: Session) -> None:
        self.sessions.discard(session)

    # ------------------------------------------------------------------ timers

    def _armTimer(self) -> None:
        deadlines = [
            d for d in (self._requests.next_deadline(), self.cache.next_deadline()) if d is not None
        ]
        self._timer.arm(self.clock, None if self._stopped or not deadlines else min(deadlines))

    def _cancelTimer(self) -> None:
        self._timer.cancel()

    def _timerFired(self, now: float) -> None:
        discarded = {event.pool_handle for event in self.cache.expire(now)}
        for handle in sorted(discarded):
            # Stale for the discard timeout with nobody refreshing it: forgotten.
            self.counters["cache_discards"] += 1
            self.log.debug(
                "Pool user: stale cache entry of {pool} discarded", pool=handleText(handle)
            )
        for action in self._requests.handle_timer(now):
            if isinstance(action, Retransmit):
                self.log.info(
                    "No answer to the handle resolution of {pool} within T1: "
                    "retransmission {count} to the same server, hunting for another in "
                    "parallel",
                    pool=handleText(action.key),
                    count=action.count,
                )
                # RFC 5352 3.7.2: send again and hunt in parallel; the home connection
                # stays, so its late answer still counts.
                self._sendResolution(action.key)
                if self.link is not None:
                    self.link.huntInParallel("T1-ENRPrequest expired")
            elif isinstance(action, GiveUp):
                self._fail(
                    action.key,
                    RequestTimedOut(
                        f"no answer to the handle resolution of {action.key!r} after "
                        f"{self.timers.max_request_retransmit} retransmissions"
                    ),
                )
        self._armTimer()
