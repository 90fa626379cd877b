"""The ENRP server as Twisted services around the sans-IO core.

:class:`~twisted_rserpool.enrp.core.EnrpCore` is the core. ASAP listeners feed its
registrar; when peering is enabled, ENRP listeners and outgoing peer connections feed its
:class:`~twisted_rserpool.enrp.peers.PeerCore`. What remains here is I/O: protocols,
factories, listeners and clients, and the one timer that runs the core at its deadline
and carries out the actions it returns.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from ipaddress import ip_address
from typing import Any

from twisted.application.internet import ClientService, StreamServerEndpointService, backoffPolicy
from twisted.application.service import MultiService
from twisted.internet.interfaces import (
    IReactorTime,
    ISSLTransport,
    IStreamClientEndpoint,
    IStreamServerEndpoint,
)
from twisted.logger import Logger
from twisted.python.failure import Failure

from twisted_rserpool.deadline import COALESCE, DeadlineTimer, generation
from twisted_rserpool.describe import handleText
from twisted_rserpool.enrp.core import CoreAction, EnrpCore
from twisted_rserpool.enrp.peers import (
    CloseLink,
    HomeKeepAlive,
    PeerCore,
    PeerHint,
    SendEnrp,
)
from twisted_rserpool.enrp.registrar import Close, Registrar, Send
from twisted_rserpool.security.context import SecurityContext
from twisted_rserpool.transport.admission import ConnectionCap, RefusingFactory
from twisted_rserpool.transport.connection import MappingConfig
from twisted_rserpool.transport.events import DataReceived
from twisted_rserpool.transport.protocol import RSerPoolFactory, RSerPoolProtocol
from twisted_rserpool.wire import asap, enrp
from twisted_rserpool.wire.errors import CauseCode
from twisted_rserpool.wire.limits import Limits
from twisted_rserpool.wire.parameters import OperationError, ServerInformation, TcpTransport

#: Builds a client endpoint to ``(host, port)``: for peers named in hints and for PEs.
EndpointFactory = Callable[[str, int], IStreamClientEndpoint]

log = Logger()


class ASAPServerProtocol(RSerPoolProtocol):
    """One ASAP connection (a pool element or a pool user) to the ENRP server."""

    factory: ASAPServerFactory
    connectionNumber: int | None = None

    def buildSecurityContext(self) -> SecurityContext:
        """What the TLS layer proved (PSK identity or certificate), via security.tls."""
        if self.transport is None or not ISSLTransport.providedBy(self.transport):
            return super().buildSecurityContext()
        from twisted_rserpool.security.tls import securityContextOf  # noqa: PLC0415

        return securityContextOf(self.transport)

    def connectionReady(self, securityContext: SecurityContext) -> None:
        """Hand the connection to the registrar with its security context."""
        self.connectionNumber = self.factory.server.connectionReady(self, securityContext)

    def admitData(self, event: DataReceived, now: float) -> float:
        """The registrar's request limits, asked before a chunk is decoded: over them,
        reading from this connection pauses until its next request is due."""
        if self.connectionNumber is None:
            return 0.0
        return self.factory.server.registrar.admit_request(self.connectionNumber, now)

    def asapMessageReceived(self, message: asap.AsapMessage) -> None:
        """Every ASAP message goes to the registrar."""
        if self.connectionNumber is not None:
            self.factory.server.messageReceived(self.connectionNumber, message)

    def enrpMessageReceived(self, message: enrp.EnrpMessage) -> None:
        """ENRP belongs on the peer listener, not here: answer with ENRP_ERROR."""
        log.warn("ENRP message on an ASAP listener from {peer}: refused", peer=self.peer)
        self.sendOperationError(
            12, OperationError.single(CauseCode.UNRECOGNIZED_MESSAGE, message.encode()[:1024])
        )

    def applicationDataReceived(self, ppid: int, data: bytes) -> None:
        """An ENRP server carries no application data: log and drop."""
        log.warn(
            "Application data (PPID {ppid}) on an ASAP listener from {peer}: dropped",
            ppid=ppid,
            peer=self.peer,
        )

    def connectionLost(self, reason: Failure | None = None) -> None:
        """Tell the registrar: the PEs registered over this connection are unreachable."""
        if reason is None:
            super().connectionLost()
        else:
            super().connectionLost(reason)
        self.factory.connectionLost(self)


class ASAPServerFactory(RSerPoolFactory[ASAPServerProtocol]):
    """Builds :class:`ASAPServerProtocol` for one :class:`ENRPServer`, within its ASAP
    connection cap (``server.connectionCap``) and with its handshake deadline
    (``server.handshakeTimeout``); refusals and timeouts are counted in the registrar's
    counters. The connections we open ourselves (``outgoing``) are not capped."""

    outgoing = False

    def __init__(
        self,
        server: ENRPServer,
        *,
        mappingConfig: MappingConfig | None = None,
        messageLimits: Limits | None = None,
    ) -> None:
        super().__init__(
            ASAPServerProtocol,
            server.clock,
            mappingConfig=mappingConfig,
            messageLimits=messageLimits,
            handshakeTimeout=server.handshakeTimeout,
            cap=None if self.outgoing else server.connectionCap,
        )
        self.server = server

    def buildProtocol(self, addr: Any) -> ASAPServerProtocol | None:
        """A protocol, or ``None`` over the connection cap (the listener closes the socket)."""
        protocol = super().buildProtocol(addr)
        if protocol is None:
            self.server.registrar.counters["connections_refused_cap"] += 1
            return None
        self.server.openConnections.add(protocol)
        return protocol

    def handshakeTimedOut(self, protocol: RSerPoolProtocol, cause: str) -> None:
        """Count and log a connection that missed the handshake deadline."""
        super().handshakeTimedOut(protocol, cause)
        self.server.registrar.counters["handshake_timeouts"] += 1

    def connectionLost(self, protocol: ASAPServerProtocol) -> None:
        """Forget a closed connection."""
        self.server.openConnections.discard(protocol)
        if protocol.connectionNumber is not None:
            self.server.connectionLost(protocol.connectionNumber)


def _securityContextOf(protocol: RSerPoolProtocol) -> SecurityContext | None:
    if protocol.transport is None or not ISSLTransport.providedBy(protocol.transport):
        return None
    from twisted_rserpool.security.tls import securityContextOf  # noqa: PLC0415

    return securityContextOf(protocol.transport)


class ENRPPeerProtocol(RSerPoolProtocol):
    """One ENRP connection to a peer ENRP server (either direction)."""

    factory: ENRPPeerFactory
    connectionNumber: int | None = None

    def buildSecurityContext(self) -> SecurityContext:
        """What the TLS layer proved (PSK identity or certificate), via security.tls."""
        context = _securityContextOf(self)
        return context if context is not None else super().buildSecurityContext()

    def connectionReady(self, securityContext: SecurityContext) -> None:
        """Hand the connection to the peer core with its security context."""
        self.enrpServerIdentifier = self.factory.server.serverIdentifier
        self.connectionNumber = self.factory.server.peerConnectionReady(
            self, securityContext, outgoing=self.factory.outgoing
        )

    def enrpMessageReceived(self, message: enrp.EnrpMessage) -> None:
        """Every ENRP message goes to the peer core."""
        if self.connectionNumber is not None:
            self.factory.server.peerMessageReceived(self.connectionNumber, message)

    def asapMessageReceived(self, message: asap.AsapMessage) -> None:
        """ASAP belongs on the ASAP listener: answer with ASAP_ERROR."""
        log.warn("ASAP message on an ENRP connection with {peer}: refused", peer=self.peer)
        self.sendOperationError(
            11, OperationError.single(CauseCode.UNRECOGNIZED_MESSAGE, message.encode()[:1024])
        )

    def applicationDataReceived(self, ppid: int, data: bytes) -> None:
        """ENRP peers carry no application data: log and drop."""
        log.warn(
            "Application data (PPID {ppid}) on an ENRP connection with {peer}: dropped",
            ppid=ppid,
            peer=self.peer,
        )

    def close(self) -> None:
        """Close after what is queued (an ENRP_ERROR, say) went out."""
        self._close()

    def connectionLost(self, reason: Failure | None = None) -> None:
        """Tell the peer core."""
        if reason is None:
            super().connectionLost()
        else:
            super().connectionLost(reason)
        self.factory.server.peerConnectionLost(self)


class ENRPPeerFactory(RSerPoolFactory[ENRPPeerProtocol]):
    """Builds :class:`ENRPPeerProtocol` for one :class:`ENRPServer`; ``outgoing`` if we dial.

    Incoming connections share the server's ENRP connection cap
    (``server.peerConnectionCap``); all have its handshake deadline. Refusals and timeouts
    are counted in the registrar's counters.
    """

    def __init__(self, server: ENRPServer, *, outgoing: bool) -> None:
        super().__init__(
            ENRPPeerProtocol,
            server.clock,
            mappingConfig=server.factory.mappingConfig,
            messageLimits=server.factory.messageLimits,
            handshakeTimeout=server.handshakeTimeout,
            cap=None if outgoing else server.peerConnectionCap,
        )
        self.server = server
        self.outgoing = outgoing

    def buildProtocol(self, addr: Any) -> ENRPPeerProtocol | None:
        """A protocol, or ``None`` over the ENRP connection cap."""
        protocol = super().buildProtocol(addr)
        if protocol is None:
            self.server.registrar.counters["peer_connections_refused_cap"] += 1
        return protocol

    def handshakeTimedOut(self, protocol: RSerPoolProtocol, cause: str) -> None:
        """Count and log a peer connection that missed the handshake deadline."""
        super().handshakeTimedOut(protocol, cause)
        self.server.registrar.counters["peer_handshake_timeouts"] += 1


class HomeKeepAliveProtocol(ASAPServerProtocol):
    """The connection a new home server opens to a PE it took over (RFC 5353 3.5.2).

    The PE listens with the TCP mapping on its ASAP transport (data and control
    multiplexed, RFC 5355 2.16). Over TLS-PSK with our outgoing identity we send
    ASAP_ENDPOINT_KEEP_ALIVE with the H flag; the PE answers ASAP_ENDPOINT_KEEP_ALIVE_ACK
    and, having authenticated us, adopts this connection as its home connection and
    re-registers over it. So once ready this is an ASAP connection of the registrar like
    any other, with the per-PE identity of :func:`~twisted_rserpool.enrp.takeover.takeover_security`
    (as TLS client the PSK identity is our own); a
    :class:`~twisted_rserpool.enrp.takeover.TakeoverRegistrar` admits that PE's
    re-registration over it whatever the policy says.
    """

    factory: _HomeKeepAliveFactory

    def connectionReady(self, securityContext: SecurityContext) -> None:
        """Hand the connection to the core, which sends the keep-alive (or closes it)."""
        self.connectionNumber = self.factory.server.homeConnectionReady(
            self, securityContext, self.factory.action
        )


class _HomeKeepAliveFactory(ASAPServerFactory):
    protocol: Any
    outgoing = True

    def __init__(self, server: ENRPServer, action: HomeKeepAlive) -> None:
        super().__init__(
            server,
            mappingConfig=server.factory.mappingConfig,
            messageLimits=server.factory.messageLimits,
        )
        self.protocol = HomeKeepAliveProtocol
        self.action = action


class ENRPServer(MultiService):
    """An ENRP server: ASAP listeners for PEs and PUs, the registrar, its timers.

    Add listeners with :meth:`listenASAP` (before or after the service starts). Subclass
    :class:`~twisted_rserpool.enrp.registrar.Registrar` to own registration and resolution
    decisions, and pass it in.

    With a :class:`~twisted_rserpool.enrp.peers.PeerCore` (``peering``) the server also
    takes part in an ENRP server pool: :meth:`listenENRP` for peers that connect to us,
    :meth:`addPeer` for peers we connect to (reconnecting with backoff).
    ``peerEndpointFactory`` builds client endpoints for servers peers tell us about (none:
    hints are only logged); ``peEndpointFactory`` those for the H keep-alives to the PEs
    we take over (none: they are not sent, and those PEs time out).

    At most ``maxConnections`` ASAP and ``maxPeerConnections`` incoming ENRP connections
    are open at once (more are closed at accept), and each must be ready (TLS handshake
    and INIT) within ``handshakeTimeout`` seconds or is aborted (RFC 5355 section 2.1).
    """

    def __init__(
        self,
        registrar: Registrar,
        clock: IReactorTime,
        *,
        maxConnections: int = 10_000,
        maxPeerConnections: int = 64,
        handshakeTimeout: float | None = 5.0,
        mappingConfig: MappingConfig | None = None,
        messageLimits: Limits | None = None,
        peering: PeerCore | None = None,
        peerEndpointFactory: EndpointFactory | None = None,
        peEndpointFactory: EndpointFactory | None = None,
    ) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.core = EnrpCore(registrar, peering)
        self.peerEndpointFactory = peerEndpointFactory
        self.peEndpointFactory = peEndpointFactory
        self.openPeerConnections: set[ENRPPeerProtocol] = set()
        self._peerProtocols: dict[int, ENRPPeerProtocol] = {}
        self._enrpListeners: list[StreamServerEndpointService] = []
        self.clock = clock
        self.handshakeTimeout = handshakeTimeout
        self.connectionCap = ConnectionCap(maxConnections, clock, listener="ASAP")
        self.peerConnectionCap = ConnectionCap(maxPeerConnections, clock, listener="ENRP")
        self.openConnections: set[ASAPServerProtocol] = set()
        self.factory = ASAPServerFactory(
            self, mappingConfig=mappingConfig, messageLimits=messageLimits
        )
        self._protocols: dict[int, ASAPServerProtocol] = {}
        self._numbers = itertools.count(1)
        # The core's one timer: keep-alives, expiries, peer heartbeats, takeovers. Those
        # due within a few milliseconds of each other run in one callback.
        self._timer = DeadlineTimer(self._timerFired, slack=COALESCE)
        #: The deadline queues' generation when the timer was last armed (None: ask the
        #: core next time).
        self._armedAt: int | None = None

    @property
    def registrar(self) -> Registrar:
        """The core's registrar (the ASAP side)."""
        return self.core.registrar

    @property
    def peering(self) -> PeerCore | None:
        """The core's ENRP side, if this server peers."""
        return self.core.peers

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<ENRPServer 0x{self.serverIdentifier:08x} {state}>"

    @property
    def serverIdentifier(self) -> int:
        """This server's 32-bit identifier."""
        return self.registrar.config.server_identifier

    def listenASAP(self, endpoint: IStreamServerEndpoint) -> StreamServerEndpointService:
        """Serve ASAP on ``endpoint`` (a child service: it listens while this one runs)."""
        # RefusingFactory: a refusal over the cap must also close cleanly behind wrappers
        # that cannot take None (Twisted's TLS factory of ssl: endpoints).
        service = StreamServerEndpointService(endpoint, RefusingFactory(self.factory))  # type: ignore[no-untyped-call]
        service._raiseSynchronously = True
        service.setServiceParent(self)  # type: ignore[no-untyped-call]
        return service

    def _requirePeering(self) -> PeerCore:
        if self.peering is None:
            raise RuntimeError("this ENRP server was built without peering (no PeerCore)")
        return self.peering

    def listenENRP(self, endpoint: IStreamServerEndpoint) -> StreamServerEndpointService:
        """Serve ENRP peers on ``endpoint`` (a child service)."""
        self._requirePeering()
        service = StreamServerEndpointService(  # type: ignore[no-untyped-call]
            endpoint, RefusingFactory(ENRPPeerFactory(self, outgoing=False))
        )
        service._raiseSynchronously = True
        self._enrpListeners.append(service)
        service.setServiceParent(self)  # type: ignore[no-untyped-call]
        return service

    def addPeer(self, endpoint: IStreamClientEndpoint) -> ClientService:
        """Keep a connection to the peer at ``endpoint``, reconnecting with backoff."""
        peering = self._requirePeering()
        service = ClientService(
            endpoint,
            ENRPPeerFactory(self, outgoing=True),
            retryPolicy=backoffPolicy(
                initialDelay=0.2, maxDelay=max(1.0, peering.config.max_time_last_heard / 2)
            ),
            clock=self.clock,
        )
        service.setServiceParent(self)  # type: ignore[no-untyped-call]
        return service

    def startService(self) -> None:
        """Start listening and log how to reach this server."""
        super().startService()  # type: ignore[no-untyped-call]
        log.info(
            "ENRP server 0x{server:08x} started ({mode})",
            server=self.serverIdentifier,
            mode="secure" if self.registrar.config.secure else "INSECURE",
        )
        if self.peering is not None:
            for service in self._enrpListeners:
                waiting = getattr(service, "_waitingForPort", None)
                if waiting is not None:
                    waiting.addCallback(self._enrpListening)
        self._execute(self.core.start(self.clock.seconds()))

    def _enrpListening(self, port: Any) -> Any:
        """Announce the first ENRP listener's address in our server information."""
        peering = self.peering
        host = port.getHost()
        if peering is not None and peering.server_information is None and hasattr(host, "port"):
            try:
                address = ip_address(host.host)
            except ValueError:
                return port
            peering.server_information = ServerInformation(
                self.serverIdentifier, TcpTransport(host.port, address)
            )
        return port

    def stopService(self) -> Any:
        """Stop listening, close every connection, stop the timer."""
        self._timer.cancel()
        self._armedAt = None
        for protocol in list(self.openConnections):
            if protocol.transport is not None:
                protocol.transport.loseConnection()
        for peer in list(self.openPeerConnections):
            if peer.transport is not None:
                peer.transport.loseConnection()
        self.core.close()
        return super().stopService()  # type: ignore[no-untyped-call]

    # ------------------------------------------------------------------ ASAP connections

    def _register(self, protocol: ASAPServerProtocol, security: SecurityContext) -> tuple[int, Any]:
        number = next(self._numbers)
        self._protocols[number] = protocol
        peer: Any = protocol.transport.getPeer() if protocol.transport is not None else None
        address = (peer.host, peer.port) if hasattr(peer, "host") else None
        log.info(
            "ASAP connection {number} from {peer}: " + security.logFormat(),
            number=number,
            peer=protocol.peer,
            **security.logFields(),
        )
        return number, address

    def connectionReady(self, protocol: ASAPServerProtocol, security: SecurityContext) -> int:
        """Hand a ready ASAP connection to the core; returns its number."""
        number, address = self._register(protocol, security)
        self._execute(self.core.asap_connection_ready(number, security, address))
        return number

    def homeConnectionReady(
        self, protocol: ASAPServerProtocol, security: SecurityContext, action: HomeKeepAlive
    ) -> int:
        """Hand our ready connection to a PE taken over to the core; returns its number."""
        number, address = self._register(protocol, security)
        self._execute(
            self.core.home_connection_ready(number, security, address, action, self.clock.seconds())
        )
        return number

    def messageReceived(self, number: int, message: asap.AsapMessage) -> None:
        """Pass an ASAP message to the core and carry out what it says."""
        self._execute(self.core.asap_message_received(number, message, self.clock.seconds()))

    def connectionLost(self, number: int) -> None:
        """An ASAP connection closed."""
        self._protocols.pop(number, None)
        self._execute(self.core.asap_connection_lost(number, self.clock.seconds()))

    def peerStatus(self) -> list[dict[str, Any]]:
        """The ENRP peers for the admin interface (none until peering is configured)."""
        return [] if self.peering is None else self.peering.status()

    def flush(self) -> None:
        """Carry out actions caused by handlespace changes made outside the core."""
        self._execute(self.core.take_actions())

    # ------------------------------------------------------------------ peer connections

    def peerConnectionReady(
        self, protocol: ENRPPeerProtocol, security: SecurityContext, *, outgoing: bool
    ) -> int:
        """Hand a ready peer connection to the core; returns its number."""
        self._requirePeering()
        number = next(self._numbers)
        self._peerProtocols[number] = protocol
        self.openPeerConnections.add(protocol)
        log.info(
            "ENRP connection {number} {direction} {peer}: " + security.logFormat(),
            number=number,
            direction="to" if outgoing else "from",
            peer=protocol.peer,
            **security.logFields(),
        )
        self._execute(
            self.core.enrp_connection_ready(
                number, security, outgoing=outgoing, now=self.clock.seconds()
            )
        )
        return number

    def peerMessageReceived(self, number: int, message: enrp.EnrpMessage) -> None:
        """Pass an ENRP message to the core and carry out what it says."""
        self._execute(self.core.enrp_message_received(number, message, self.clock.seconds()))

    def peerConnectionLost(self, protocol: ENRPPeerProtocol) -> None:
        """A peer connection closed."""
        self.openPeerConnections.discard(protocol)
        number = protocol.connectionNumber
        if number is None:
            return
        self._peerProtocols.pop(number, None)
        self._execute(self.core.enrp_connection_lost(number, self.clock.seconds()))

    def homeKeepAliveAcknowledged(self, poolHandle: bytes, peIdentifier: int) -> None:
        """A PE we took over answered our H keep-alive."""
        self._execute(self.core.home_keep_alive_acknowledged(poolHandle, peIdentifier))

    # ------------------------------------------------------------------ new connections

    def sendHomeKeepAlive(self, action: HomeKeepAlive) -> None:
        """Connect to a PE taken over; the core sends the H keep-alive once it is ready.

        Override to reach PEs some other way. The default connects to the PE's ASAP
        transport with ``peEndpointFactory`` (TLS-PSK with our own identity).
        """
        transport = action.transport
        if self.peEndpointFactory is None or not isinstance(transport, TcpTransport):
            log.warn(
                "Cannot send an H keep-alive to PE 0x{pe:08x} of pool {pool}"
                " (no PE endpoint factory or no TCP ASAP transport)",
                pe=action.pe_identifier,
                pool=handleText(action.pool_handle),
            )
            return
        endpoint = self.peEndpointFactory(str(transport.address), transport.port)

        def failed(reason: Failure) -> None:
            log.info(
                "H keep-alive to PE 0x{pe:08x} at {address}:{port} failed: {error}",
                pe=action.pe_identifier,
                address=str(transport.address),
                port=transport.port,
                error=reason.getErrorMessage(),
            )

        endpoint.connect(_HomeKeepAliveFactory(self, action)).addErrback(failed)

    def peerHint(self, hint: PeerHint) -> None:
        """Connect to a server a peer named (it must still authenticate like any peer)."""
        information = hint.server_information
        transport = information.server_transport
        if self.peerEndpointFactory is None or not isinstance(transport, TcpTransport):
            log.info(
                "Not connecting to ENRP server 0x{server:08x} named by a peer"
                " (no peer endpoint factory or no TCP transport)",
                server=information.server_identifier,
            )
            return
        log.info(
            "Connecting to ENRP server 0x{server:08x} at {address}:{port} (named by a peer)",
            server=information.server_identifier,
            address=str(transport.address),
            port=transport.port,
        )
        self.addPeer(self.peerEndpointFactory(str(transport.address), transport.port))

    # ------------------------------------------------------------------ actions and timer

    def _execute(self, actions: list[CoreAction]) -> None:
        """Carry out the core's actions, then set the timer to its next deadline."""
        protocols = self._protocols
        for action in actions:
            try:
                if type(action) is Send:
                    # _carryOut's first case inlined: nearly every action is a Send.
                    protocol = protocols.get(action.connection)
                    if protocol is not None and protocol.ready:
                        protocol.sendAsap(action.message)  # type: ignore[arg-type]
                else:
                    self._carryOut(action)
            except Exception:
                log.failure("Could not carry out {action}", action=type(action).__name__)
        self._armTimer()

    def _carryOut(self, action: CoreAction) -> None:
        if isinstance(action, Send | Close):
            protocol = self._protocols.get(action.connection)
            if protocol is None or not protocol.ready:
                return
            if isinstance(action, Send):
                protocol.sendAsap(action.message)  # type: ignore[arg-type]
            elif protocol.transport is not None:
                log.info("Closing {peer}: {reason}", peer=protocol.peer, reason=action.reason)
                protocol.transport.loseConnection()
        elif isinstance(action, SendEnrp):
            peer = self._peerProtocols.get(action.connection)
            if peer is not None and peer.ready:
                peer.sendEnrp(action.message)
        elif isinstance(action, CloseLink):
            peer = self._peerProtocols.get(action.connection)
            if peer is not None and peer.transport is not None:
                log.info("Closing {peer}: {reason}", peer=peer.peer, reason=action.reason)
                peer.close()
        elif isinstance(action, HomeKeepAlive):
            self.sendHomeKeepAlive(action)
        else:
            self.peerHint(action)

    def _armTimer(self) -> None:
        if not self.running:
            return
        # Without peers the core's deadlines are all in deadline queues, but for those
        # only its timer changes: while no queue changed (a handle resolution changes
        # none), the deadline the timer has is the core's.
        armedAt, self._armedAt = self._armedAt, generation()
        if armedAt == self._armedAt and self.core.peers is None:
            return
        # Costs little when the deadline did not move, or moved later (as after most
        # registrations): the timer then stays where it is.
        self._timer.arm(self.clock, self.core.next_deadline())

    def _timerFired(self, now: float) -> None:
        self._armedAt = None  # the core's own state moves in handle_timer
        try:
            actions = self.core.handle_timer(now)
        except Exception:
            log.failure("ENRP server timer failed")
            actions = []
        self._execute(actions)
