"""The connection of an ASAP endpoint (pool element or pool user) to its home ENRP server.

:class:`HomeServerLink` keeps one connection to an ENRP server, over the TCP mapping and
TLS, and runs the server hunt (:class:`~twisted_rserpool.asap.hunt.ServerHunt`) on the
clock it is given: at start, when the connection closes, and when its owner asks (a request
timed out). A connection counts only once the server authenticated (RFC 5355 2.6: a PSK it
knows, or a certificate that verified); until then nothing is sent on it.

When a request times out the owner sends it again to the same server and calls
:meth:`HomeServerLink.huntInParallel` (RFC 5352 3.7.2): the home connection stays up while
another server is looked for. If one is found it becomes the home; the old one is kept as a
*previous* connection (at most three connections in all, SH1) whose answers still reach the
owner, until the owner releases it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from twisted.internet.defer import Deferred, gatherResults, succeed
from twisted.internet.interfaces import IDelayedCall, IReactorTime, IStreamClientEndpoint
from twisted.logger import Logger
from twisted.python.failure import Failure

from twisted_rserpool.asap.errors import ServerHuntFailed
from twisted_rserpool.asap.hunt import HuntStep, ServerHunt
from twisted_rserpool.asap.timers import AsapTimers
from twisted_rserpool.deadline import DeadlineTimer
from twisted_rserpool.describe import endpointAddress, endpointText, hostPort
from twisted_rserpool.security.context import SecurityContext
from twisted_rserpool.transport.connection import MappingConfig
from twisted_rserpool.transport.protocol import RSerPoolFactory, RSerPoolProtocol
from twisted_rserpool.wire import asap, enrp
from twisted_rserpool.wire.parameters import TcpTransport

__all__ = ["EnrpServerConnection", "HomeServerLink"]

log = Logger()

#: Seconds a clean close waits for the ENRP server to close its side (its TLS close_notify
#: and the TCP close) before the connection is aborted.
CLOSE_TIMEOUT = 2.0


def describeServer(server: object) -> str:
    """An ENRP server's client endpoint as ``host:port`` (else as :func:`endpointText`)."""
    address = endpointAddress(getattr(server, "wrappedEndpoint", server))
    if address is not None and address[0]:
        return hostPort(*address)
    return endpointText(server)


def describeFailure(reason: Failure | None) -> str:
    """Why a connection attempt failed, readably: the TLS alert or verify error if any."""
    if reason is None:
        return "closed by the server"
    args = getattr(reason.value, "args", ())
    # OpenSSL.SSL.Error carries [(library, function, reason), ...].
    if (
        args
        and isinstance(args[0], list)
        and all(isinstance(entry, tuple) and len(entry) == 3 for entry in args[0])
    ):
        text = "; ".join(str(entry[2]) for entry in args[0]) or "TLS handshake failed"
        if "certificate verify failed" in text:
            text += (
                " (the server's certificate did not verify against our trust roots; "
                "with a PSK endpoint: the server did not accept our PSK identity)"
            )
        elif "alert" in text:
            text += " (the server refused the TLS handshake)"
        return f"TLS: {text}"
    return reason.getErrorMessage()


class EnrpServerConnection(RSerPoolProtocol):
    """One connection from an ASAP endpoint to an ENRP server."""

    def __init__(self, link: HomeServerLink, server: IStreamClientEndpoint) -> None:
        super().__init__(link.clock)
        self.link = link
        self.server = server
        self.lostReason: Failure | None = None
        self._lostWaiters: list[Deferred[None]] = []
        self._closeTimeout: IDelayedCall | None = None

    def connectionReady(self, securityContext: SecurityContext) -> None:
        """Tell the link; it decides whether the server is trusted."""
        self.link._ready(self, securityContext)

    def asapMessageReceived(self, message: asap.AsapMessage) -> None:
        """ASAP from the ENRP server goes to the link's owner."""
        self.link._message(self, message)

    def enrpMessageReceived(self, message: enrp.EnrpMessage) -> None:
        """An ENRP server speaks ASAP to endpoints: ENRP here is dropped."""
        log.warn("ENRP message from {peer} on an ASAP connection: dropped", peer=self.peer)

    def applicationDataReceived(self, ppid: int, data: bytes) -> None:
        """An ENRP server sends no application data: dropped."""
        log.warn("Application data from ENRP server {peer}: dropped", peer=self.peer)

    def connectionLost(self, reason: Failure | None = None) -> None:
        """Tell the link."""
        if reason is None:
            super().connectionLost()
        else:
            super().connectionLost(reason)
        self.lostReason = reason
        if self._closeTimeout is not None and self._closeTimeout.active():
            self._closeTimeout.cancel()
        self._closeTimeout = None
        waiters, self._lostWaiters = self._lostWaiters, []
        for waiter in waiters:
            waiter.callback(None)
        self.link._lost(self)

    def close(self) -> None:
        """Close the connection (abortively: the server is being given up on)."""
        if self.transport is not None:
            abort = getattr(self.transport, "abortConnection", None)
            if abort is not None:
                abort()
            else:
                self.transport.loseConnection()

    def closeCleanly(self) -> Deferred[None]:
        """Close after what was sent, TLS with close_notify (RFC 8446 section 6.1), so the
        server sees an orderly end; abort if the server has not closed its side within
        :data:`CLOSE_TIMEOUT` seconds. Fires once the connection is lost."""
        if self.transport is None or self._lost:
            return succeed(None)
        lost: Deferred[None] = Deferred()
        self._lostWaiters.append(lost)
        if self._closeTimeout is None:
            self._close()
            self._closeTimeout = self.link.clock.callLater(CLOSE_TIMEOUT, self.close)
        return lost


class HomeServerLink:
    """One trusted connection to an ENRP server, found by the server hunt.

    ``onReady(connection, context)``, ``onMessage(connection, message)`` and
    ``onLost(connection)`` tell the owner what happens; ``onLost`` only for a connection
    that was ready. ``announcedEndpoint(transport)`` turns an announced server's transport
    into a client endpoint with our credentials (``None``: announcements are ignored).
    """

    def __init__(
        self,
        servers: Sequence[IStreamClientEndpoint],
        clock: IReactorTime,
        timers: AsapTimers,
        *,
        onReady: Callable[[EnrpServerConnection, SecurityContext], None],
        onMessage: Callable[[EnrpServerConnection, asap.AsapMessage], None],
        onLost: Callable[[EnrpServerConnection], None],
        requireAuthentication: bool = True,
        mappingConfig: MappingConfig | None = None,
        announcedEndpoint: Callable[[TcpTransport], IStreamClientEndpoint | None] | None = None,
        role: str = "ASAP endpoint",
        onHuntFailed: Callable[[ServerHuntFailed], None] | None = None,
    ) -> None:
        self.clock = clock
        self.timers = timers
        self.hunt: ServerHunt[IStreamClientEndpoint] = ServerHunt(list(servers), timers)
        self.onReady = onReady
        self.onMessage = onMessage
        self.onLost = onLost
        self.requireAuthentication = requireAuthentication
        self.mappingConfig = mappingConfig
        self.announcedEndpoint = announcedEndpoint
        self.role = role
        self.connection: EnrpServerConnection | None = None
        #: Former home connections kept open after a hunt in parallel (their late answers
        #: still count), oldest first.
        self.previous: list[EnrpServerConnection] = []
        self._attempt: Deferred[Any] | None = None
        self._attemptProtocol: EnrpServerConnection | None = None
        self._timer = DeadlineTimer(self._timerFired)
        self._running = False
        self._announced: dict[tuple[str, int], IStreamClientEndpoint] = {}
        #: At most this many announced servers are hints at a time (RFC 5355 2.12).
        self.maxAnnouncedServers = 16
        self.announcementsIgnored = 0
        self.huntsStarted = 0
        #: Called at the end of every hunt round without a home after
        #: ``timers.max_hunt_rounds`` such rounds in a row (the hunt goes on).
        self.onHuntFailed = onHuntFailed
        #: Why each server tried since the last home could not be used.
        self.failures: dict[str, str] = {}
        #: Hunt rounds in a row that ended without a home.
        self.failedRounds = 0

    def __repr__(self) -> str:
        return f"<HomeServerLink of {self.role}: {self.homeText}>"

    @property
    def homeText(self) -> str:
        """The home server for reprs and status: ``home PEER``, or that there is none."""
        connection = self.connection
        return "no home ENRP server" if connection is None else f"home {connection.peer}"

    @property
    def ready(self) -> bool:
        """Whether a trusted home server connection is up."""
        return self.connection is not None and self.connection.ready

    def start(self) -> None:
        """Begin: hunt for a home server."""
        self._running = True
        self.huntFor("start")

    def stop(self) -> Deferred[None]:
        """Stop hunting and close every connection (cleanly, see
        :meth:`EnrpServerConnection.closeCleanly`); fires once they are closed."""
        self._running = False
        self._cancelTimer()
        self._abandonAttempt()
        connections, self.previous = self.previous, []
        if self.connection is not None:
            connections.append(self.connection)
            self.connection = None
        closed = [connection.closeCleanly() for connection in connections]
        return gatherResults(closed).addCallback(lambda _: None)

    def release(self) -> None:
        """Close the home connection without hunting (another connection took its role)."""
        connection, self.connection = self.connection, None
        if connection is not None:
            connection.close()
        self.releasePrevious()
        self.hunt.abandon()
        self._abandonAttempt()
        self._cancelTimer()

    def releasePrevious(self) -> None:
        """Close the former home connections a hunt in parallel left open."""
        previous, self.previous = self.previous, []
        for connection in previous:
            connection.close()

    def isHome(self, connection: object) -> bool:
        """Whether ``connection`` is the home connection (not a previous one)."""
        return connection is self.connection

    def send(self, message: asap.AsapMessage) -> bool:
        """Send to the home server; ``False`` if there is no ready home connection."""
        connection = self.connection
        if connection is None or not connection.ready:
            return False
        try:
            connection.sendAsap(message)
        except Exception as e:
            log.warn(
                "Could not send {message} to {peer}: {error}",
                message=type(message).__name__,
                peer=connection.peer,
                error=str(e),
            )
            return False
        return True

    def huntFailure(self) -> ServerHuntFailed:
        """The failure of the hunt so far: the rounds without a home and each server's reason."""
        return ServerHuntFailed(self.failedRounds, self.failures)

    def huntInParallel(self, reason: str) -> None:
        """Look for another server while keeping the home connection (RFC 5352 3.7.2); the
        server found becomes the home. Without a ready home this is :meth:`huntFor`."""
        if not self._running:
            return
        home = self.connection
        if home is None or not home.ready:
            self.huntFor(reason)
            return
        if self.hunt.hunting:
            return
        connected = [home.server, *(c.server for c in self.previous)]
        others = [s for s in self.hunt.candidates(self.clock.seconds()) if s not in connected]
        if not others:
            log.info(
                "{role}: {reason}; no other ENRP server to hunt for, waiting for {peer}",
                role=self.role,
                reason=reason,
                peer=home.peer,
            )
            return
        self.huntsStarted += 1
        log.info(
            "{role}: hunting for another ENRP server in parallel ({reason}); keeping {peer}",
            role=self.role,
            reason=reason,
            peer=home.peer,
        )
        self._step(self.hunt.begin(self.clock.seconds(), exclude=connected))

    def endHunt(self) -> None:
        """The home server answered: a hunt in parallel is no longer needed."""
        if self.hunt.hunting and self.ready:
            self._step(self.hunt.abandon())

    def huntFor(self, reason: str) -> None:
        """Drop the home connection (if any) and hunt for a server (again)."""
        if not self._running:
            return
        connection, self.connection = self.connection, None
        if connection is not None:
            connection.close()
        if self.hunt.hunting:
            self.hunt.include_all()
            return
        self.huntsStarted += 1
        log.info("{role}: hunting for an ENRP server ({reason})", role=self.role, reason=reason)
        self._step(self.hunt.begin(self.clock.seconds()))

    # ------------------------------------------------------------------ internals

    def _step(self, step: HuntStep[IStreamClientEndpoint]) -> None:
        if step.cancel is not None:
            self._abandonAttempt()
        if step.attempt is not None and self._running:
            self._connect(step.attempt)
        self._armTimer()

    def _connect(self, server: IStreamClientEndpoint) -> None:
        self._abandonAttempt()
        factory = RSerPoolFactory(
            lambda: EnrpServerConnection(self, server), self.clock, mappingConfig=self.mappingConfig
        )
        attempt = server.connect(factory)
        self._attempt = attempt

        def connected(protocol: Any) -> None:
            if self._attempt is attempt:
                self._attempt = None
                self._attemptProtocol = protocol

        def failed(reason: Failure) -> None:
            if self._attempt is not attempt:
                return
            self._attempt = None
            error = describeFailure(reason)
            self.failures[describeServer(server)] = error
            log.info(
                "{role}: could not reach ENRP server {server}: {error}",
                role=self.role,
                server=describeServer(server),
                error=error,
            )
            self._step(self.hunt.failed(server, self.clock.seconds()))

        attempt.addCallbacks(connected, failed)

    def _abandonAttempt(self) -> None:
        attempt, self._attempt = self._attempt, None
        if attempt is not None:
            attempt.addErrback(lambda _: None)
            attempt.cancel()
        protocol, self._attemptProtocol = self._attemptProtocol, None
        if protocol is not None and protocol is not self.connection:
            protocol.close()

    def _ready(self, connection: EnrpServerConnection, context: SecurityContext) -> None:
        if connection is not self._attemptProtocol or not self._running:
            connection.close()
            return
        self._attemptProtocol = None
        if self.requireAuthentication and not context.authenticated:
            self.failures[describeServer(connection.server)] = (
                f"did not authenticate ({context.describe()})"
            )
            log.warn(
                "{role}: ENRP server {peer} did not authenticate ("
                + context.logFormat()
                + "): not used",
                role=self.role,
                peer=connection.peer,
                **context.logFields(),
            )
            connection.close()
            self._step(self.hunt.failed(connection.server, self.clock.seconds()))
            return
        self.hunt.succeeded(connection.server)
        self.failures.clear()
        self.failedRounds = 0
        self._cancelTimer()
        self._armTimer()
        old = self.connection
        if old is not None:
            # Found by a hunt in parallel: the old home may still answer (SH1: at most
            # three connections, so the oldest previous one goes).
            self.previous.append(old)
            while len(self.previous) > 1:
                self.previous.pop(0).close()
        self.connection = connection
        log.info(
            "{role}: home ENRP server is {peer} (" + context.logFormat() + ")",
            role=self.role,
            peer=connection.peer,
            **context.logFields(),
        )
        self.onReady(connection, context)

    def _message(self, connection: EnrpServerConnection, message: asap.AsapMessage) -> None:
        if connection is not self.connection and connection not in self.previous:
            return
        if isinstance(message, asap.ServerAnnounce):
            self.announcementReceived(message)
            return
        self.onMessage(connection, message)

    def announcementReceived(self, message: asap.ServerAnnounce) -> None:
        """An ASAP_SERVER_ANNOUNCE (from the home connection or the announcement receiver):
        its TCP transports become hint candidates for T7-ENRPoutdate (RFC 5352 3.6), used
        only through ``announcedEndpoint`` and only once they authenticate."""
        if self.announcedEndpoint is None:
            return
        now = self.clock.seconds()
        for transport in message.transports:
            if not isinstance(transport, TcpTransport):
                continue  # SCTP, UDP, DCCP: nothing here speaks them
            key = (str(transport.address), transport.port)
            endpoint = self._announced.get(key)
            if endpoint is None and len(self._announced) >= self.maxAnnouncedServers:
                # Forget hints that expired; anyone may announce (RFC 5355 2.12), so the
                # number of servers we remember is bounded.
                live = self.hunt.candidates(now)
                self._announced = {k: e for k, e in self._announced.items() if e in live}
                if len(self._announced) >= self.maxAnnouncedServers:
                    self.announcementsIgnored += 1
                    if self.announcementsIgnored in (1, 10, 100) or not (
                        self.announcementsIgnored % 1000
                    ):
                        log.warn(
                            "{role}: {count} announced servers ignored: already "
                            "{limit} hints within T7-ENRPoutdate",
                            role=self.role,
                            count=self.announcementsIgnored,
                            limit=self.maxAnnouncedServers,
                        )
                    continue
            if endpoint is None:
                endpoint = self.announcedEndpoint(transport)
                if endpoint is None:
                    continue
                self._announced[key] = endpoint
            self.hunt.announced(endpoint, now)
        if self._running and self._attempt is None and self._attemptProtocol is None:
            self._step(self.hunt.retry(now))
            return
        self._armTimer()

    def _lost(self, connection: EnrpServerConnection) -> None:
        if connection in self.previous:
            self.previous.remove(connection)
            return
        if connection is self._attemptProtocol:
            self._attemptProtocol = None
            if self._running:
                # Closed before it was ready: the TLS handshake failed (a certificate that
                # did not verify, an unknown PSK) or the server went away.
                error = describeFailure(connection.lostReason)
                self.failures[describeServer(connection.server)] = error
                log.warn(
                    "{role}: connection to ENRP server {server} failed before it was ready: "
                    "{error}; trying another",
                    role=self.role,
                    server=describeServer(connection.server),
                    error=error,
                )
                self._step(self.hunt.failed(connection.server, self.clock.seconds()))
            return
        if connection is not self.connection:
            return
        self.connection = None
        self.onLost(connection)

    def _armTimer(self) -> None:
        self._timer.arm(self.clock, self.hunt.next_deadline() if self._running else None)

    def _cancelTimer(self) -> None:
        self._timer.cancel()

    def _timerFired(self, now: float) -> None:
        step = self.hunt.handle_timer(now)
        if step.cancel is not None or step.attempt is not None:
            log.info(
                "{role}: T5-Serverhunt expired; next round with T5 = {t5} s",
                role=self.role,
                t5=self.hunt.t5,
            )
            if not self.ready:
                self._roundFailed()
        self._step(step)

    def _roundFailed(self) -> None:
        self.failedRounds += 1
        if self.failedRounds < self.timers.max_hunt_rounds:
            return
        error = self.huntFailure()
        if self.failedRounds == self.timers.max_hunt_rounds:
            log.error("{role}: {error}; still hunting", role=self.role, error=str(error))
        if self.onHuntFailed is not None:
            self.onHuntFailed(error)
