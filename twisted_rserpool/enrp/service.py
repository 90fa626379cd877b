"""The ENRP server as Twisted services: ASAP listeners around the sans-IO :class:`Registrar`,
and, when peering is enabled, ENRP listeners and outgoing peer connections around the sans-IO
:class:`~twisted_rserpool.enrp.peers.PeerCore`."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable
from ipaddress import ip_address
from typing import Any

from twisted.application.internet import ClientService, StreamServerEndpointService, backoffPolicy
from twisted.application.service import MultiService
from twisted.internet.interfaces import (
    IDelayedCall,
    IReactorTime,
    ISSLTransport,
    IStreamClientEndpoint,
    IStreamServerEndpoint,
)
from twisted.logger import Logger
from twisted.python.failure import Failure

from twisted_rserpool.enrp.peers import (
    CloseLink,
    HomeKeepAlive,
    PeerAction,
    PeerCore,
    PeerHint,
    SendEnrp,
)
from twisted_rserpool.enrp.registrar import Action, Close, Registrar, Send
from twisted_rserpool.enrp.takeover import TakeoverRegistrar, takeover_security
from twisted_rserpool.security.context import SecurityContext
from twisted_rserpool.transport.connection import MappingConfig
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
    """Builds :class:`ASAPServerProtocol` for one :class:`ENRPServer`, within a connection cap."""

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
        )
        self.server = server
        self.open: set[ASAPServerProtocol] = set()

    def buildProtocol(self, addr: Any) -> ASAPServerProtocol | None:
        """A protocol, or ``None`` (the connection is closed) beyond the connection cap."""
        if len(self.server.openConnections) >= self.server.maxConnections:
            self.server.registrar.counters["connections_refused_cap"] += 1
            log.warn(
                "Refusing connection from {peer}: {count} connections open (cap)",
                peer=addr,
                count=len(self.server.openConnections),
            )
            return None
        protocol = super().buildProtocol(addr)
        if protocol is not None:
            self.server.openConnections.add(protocol)
        return protocol

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
    """Builds :class:`ENRPPeerProtocol` for one :class:`ENRPServer`; ``outgoing`` if we dial."""

    def __init__(self, server: ENRPServer, *, outgoing: bool) -> None:
        super().__init__(
            ENRPPeerProtocol,
            server.clock,
            mappingConfig=server.factory.mappingConfig,
            messageLimits=server.factory.messageLimits,
        )
        self.server = server
        self.outgoing = outgoing


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
        """Send the keep-alive once TLS authenticated both ends (or the server is insecure)."""
        server = self.factory.server
        if server.registrar.config.secure and not securityContext.authenticated:
            log.warn("PE {peer} for an H keep-alive did not authenticate", peer=self.peer)
            self._close()
            return
        action = self.factory.action
        super().connectionReady(takeover_security(securityContext, action.pe_identifier))
        registrar = server.registrar
        if self.connectionNumber is not None and isinstance(registrar, TakeoverRegistrar):
            registrar.grant_takeover(
                self.connectionNumber, action.pool_handle, action.pe_identifier
            )
        self.sendAsap(
            asap.EndpointKeepAlive(
                action.server_identifier,
                action.pool_handle,
                home=True,
                pe_identifier=action.pe_identifier,
            )
        )

    def asapMessageReceived(self, message: asap.AsapMessage) -> None:
        """The acknowledgement keeps the PE; everything goes to the registrar as well."""
        action = self.factory.action
        if (
            isinstance(message, asap.EndpointKeepAliveAck)
            and message.pool_handle == action.pool_handle
            and message.pe_identifier == action.pe_identifier
        ):
            self.factory.server.homeKeepAliveAcknowledged(
                message.pool_handle, message.pe_identifier
            )
        super().asapMessageReceived(message)


class _HomeKeepAliveFactory(ASAPServerFactory):
    protocol: Any

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
    """

    def __init__(
        self,
        registrar: Registrar,
        clock: IReactorTime,
        *,
        maxConnections: int = 10_000,
        mappingConfig: MappingConfig | None = None,
        messageLimits: Limits | None = None,
        peering: PeerCore | None = None,
        peerEndpointFactory: EndpointFactory | None = None,
        peEndpointFactory: EndpointFactory | None = None,
    ) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.registrar = registrar
        self.peering = peering
        self.peerEndpointFactory = peerEndpointFactory
        self.peEndpointFactory = peEndpointFactory
        self.openPeerConnections: set[ENRPPeerProtocol] = set()
        self._peerProtocols: dict[int, ENRPPeerProtocol] = {}
        self._hinted: set[int] = set()
        self._enrpListeners: list[StreamServerEndpointService] = []
        self.clock = clock
        self.maxConnections = maxConnections
        self.openConnections: set[ASAPServerProtocol] = set()
        self.factory = ASAPServerFactory(
            self, mappingConfig=mappingConfig, messageLimits=messageLimits
        )
        self._protocols: dict[int, ASAPServerProtocol] = {}
        self._numbers = itertools.count(1)
        self._timer: IDelayedCall | None = None
        self._timerDeadline = 0.0

    @property
    def serverIdentifier(self) -> int:
        """This server's 32-bit identifier."""
        return self.registrar.config.server_identifier

    def listenASAP(self, endpoint: IStreamServerEndpoint) -> StreamServerEndpointService:
        """Serve ASAP on ``endpoint`` (a child service: it listens while this one runs)."""
        service = StreamServerEndpointService(endpoint, self.factory)  # type: ignore[no-untyped-call]
        service._raiseSynchronously = True
        service.setServiceParent(self)  # type: ignore[no-untyped-call]
        return service

    def listeningServices(self) -> Iterable[StreamServerEndpointService]:
        """The ASAP listener services."""
        return [
            s
            for s in self
            if isinstance(s, StreamServerEndpointService) and s not in self._enrpListeners
        ]

    def _requirePeering(self) -> PeerCore:
        if self.peering is None:
            raise RuntimeError("this ENRP server was built without peering (no PeerCore)")
        return self.peering

    def listenENRP(self, endpoint: IStreamServerEndpoint) -> StreamServerEndpointService:
        """Serve ENRP peers on ``endpoint`` (a child service)."""
        self._requirePeering()
        service = StreamServerEndpointService(  # type: ignore[no-untyped-call]
            endpoint, ENRPPeerFactory(self, outgoing=False)
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
            self._performPeer(self.peering.start(self.clock.seconds()))
        self._armTimer()

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
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        for protocol in list(self.openConnections):
            if protocol.transport is not None:
                protocol.transport.loseConnection()
        for peer in list(self.openPeerConnections):
            if peer.transport is not None:
                peer.transport.loseConnection()
        self.registrar.close()
        if self.peering is not None:
            self.peering.close()
        return super().stopService()  # type: ignore[no-untyped-call]

    # ------------------------------------------------------------------ registrar plumbing

    def connectionReady(self, protocol: ASAPServerProtocol, security: SecurityContext) -> int:
        """Register a ready connection with the registrar; returns its number."""
        number = next(self._numbers)
        self._protocols[number] = protocol
        peer: Any = protocol.transport.getPeer() if protocol.transport is not None else None
        address = (peer.host, peer.port) if hasattr(peer, "host") else None
        log.info(
            "ASAP connection {number} from {peer}: {security}",
            number=number,
            peer=protocol.peer,
            security=security.describe(),
        )
        self._perform(self.registrar.connection_ready(number, security, address))
        return number

    def messageReceived(self, number: int, message: asap.AsapMessage) -> None:
        """Pass a message to the registrar and carry out what it says."""
        self._perform(self.registrar.message_received(number, message, self.clock.seconds()))

    def connectionLost(self, number: int) -> None:
        """A connection closed."""
        self._protocols.pop(number, None)
        self._perform(self.registrar.connection_lost(number, self.clock.seconds()))

    def peerStatus(self) -> list[dict[str, Any]]:
        """The ENRP peers for the admin interface (none until peering is configured)."""
        return [] if self.peering is None else self.peering.status()

    def flush(self) -> None:
        """Carry out actions caused by handlespace changes made elsewhere (ENRP peers)."""
        self._perform(self.registrar.take_actions())

    # ------------------------------------------------------------------ peer plumbing

    def peerConnectionReady(
        self, protocol: ENRPPeerProtocol, security: SecurityContext, *, outgoing: bool
    ) -> int:
        """Register a ready peer connection with the peer core; returns its number."""
        peering = self._requirePeering()
        number = next(self._numbers)
        self._peerProtocols[number] = protocol
        self.openPeerConnections.add(protocol)
        log.info(
            "ENRP connection {number} {direction} {peer}: {security}",
            number=number,
            direction="to" if outgoing else "from",
            peer=protocol.peer,
            security=security.describe(),
        )
        self._performPeer(
            peering.connection_ready(number, security, outgoing=outgoing, now=self.clock.seconds())
        )
        return number

    def peerMessageReceived(self, number: int, message: enrp.EnrpMessage) -> None:
        """Pass an ENRP message to the peer core and carry out what it says."""
        peering = self._requirePeering()
        self._performPeer(peering.message_received(number, message, self.clock.seconds()))

    def peerConnectionLost(self, protocol: ENRPPeerProtocol) -> None:
        """A peer connection closed."""
        self.openPeerConnections.discard(protocol)
        number = protocol.connectionNumber
        if number is None or self.peering is None:
            return
        self._peerProtocols.pop(number, None)
        self._performPeer(self.peering.connection_lost(number, self.clock.seconds()))

    def homeKeepAliveAcknowledged(self, poolHandle: bytes, peIdentifier: int) -> None:
        """A PE we took over answered our H keep-alive."""
        if self.peering is not None:
            self.peering.home_keep_alive_acknowledged(poolHandle, peIdentifier)
            self._performPeer([])

    def sendHomeKeepAlive(self, action: HomeKeepAlive) -> None:
        """Connect to a PE taken over and send it ASAP_ENDPOINT_KEEP_ALIVE with the H flag.

        Override to reach PEs some other way. The default connects to the PE's ASAP
        transport with ``peEndpointFactory`` (TLS-PSK with our own identity).
        """
        transport = action.transport
        if self.peEndpointFactory is None or not isinstance(transport, TcpTransport):
            log.warn(
                "Cannot send an H keep-alive to PE 0x{pe:08x} of pool {pool!r}"
                " (no PE endpoint factory or no TCP ASAP transport)",
                pe=action.pe_identifier,
                pool=action.pool_handle,
            )
            return
        endpoint = self.peEndpointFactory(str(transport.address), transport.port)
        timeout = self.registrar.config.keep_alive_timeout

        def connected(protocol: HomeKeepAliveProtocol) -> None:
            def idle() -> None:
                # No PE re-registered over it: nothing keeps this connection.
                number = protocol.connectionNumber
                state = None if number is None else self.registrar.connections.get(number)
                if (state is None or not state.pool_elements) and protocol.transport is not None:
                    protocol.transport.loseConnection()

            self.clock.callLater(2 * timeout, idle)

        def failed(reason: Failure) -> None:
            log.info(
                "H keep-alive to PE 0x{pe:08x} at {address}:{port} failed: {error}",
                pe=action.pe_identifier,
                address=str(transport.address),
                port=transport.port,
                error=reason.getErrorMessage(),
            )

        deferred = endpoint.connect(_HomeKeepAliveFactory(self, action))
        deferred.addCallbacks(connected, failed)

    def peerHint(self, hint: PeerHint) -> None:
        """A peer named a server we do not know: connect (it must still authenticate)."""
        information = hint.server_information
        server = information.server_identifier
        transport = information.server_transport
        if server in self._hinted or self.peerEndpointFactory is None:
            return
        if not isinstance(transport, TcpTransport) or transport.address.is_unspecified:
            return
        self._hinted.add(server)
        log.info(
            "Connecting to ENRP server 0x{server:08x} at {address}:{port} (named by a peer)",
            server=server,
            address=str(transport.address),
            port=transport.port,
        )
        self.addPeer(self.peerEndpointFactory(str(transport.address), transport.port))

    def _performPeer(self, actions: list[PeerAction]) -> None:
        while True:
            for action in actions:
                if isinstance(action, SendEnrp):
                    protocol = self._peerProtocols.get(action.connection)
                    if protocol is None or not protocol.ready:
                        continue
                    try:
                        protocol.sendEnrp(action.message)
                    except Exception:
                        log.failure("Could not send to {peer}", peer=protocol.peer)
                elif isinstance(action, CloseLink):
                    protocol = self._peerProtocols.get(action.connection)
                    if protocol is not None and protocol.transport is not None:
                        log.info(
                            "Closing {peer}: {reason}", peer=protocol.peer, reason=action.reason
                        )
                        protocol.close()
                elif isinstance(action, HomeKeepAlive):
                    try:
                        self.sendHomeKeepAlive(action)
                    except Exception:
                        log.failure("Could not send an H keep-alive")
                elif isinstance(action, PeerHint):
                    self.peerHint(action)
            # Handlespace changes made by the peer core concern the registrar's subscribers.
            self._perform(self.registrar.take_actions(), peer=False)
            if self.peering is None:
                return
            actions = self.peering.take_actions()
            if not actions:
                return

    def _perform(self, actions: list[Action], *, peer: bool = True) -> None:
        for action in actions:
            protocol = self._protocols.get(action.connection)
            if protocol is None or not protocol.ready:
                continue
            if isinstance(action, Send):
                try:
                    protocol.sendAsap(action.message)  # type: ignore[arg-type]
                except Exception:
                    log.failure("Could not send to {peer}", peer=protocol.peer)
            elif isinstance(action, Close) and protocol.transport is not None:
                log.info("Closing {peer}: {reason}", peer=protocol.peer, reason=action.reason)
                protocol.transport.loseConnection()
        if peer and self.peering is not None:
            # Registrations, de-registrations and expiries are announced to the peers.
            self._performPeer(self.peering.take_actions())
        self._armTimer()

    def _armTimer(self) -> None:
        if not self.running:
            return
        deadlines = [self.registrar.next_deadline()]
        if self.peering is not None:
            deadlines.append(self.peering.next_deadline())
        deadline = min((d for d in deadlines if d is not None), default=None)
        if deadline is None:
            if self._timer is not None and self._timer.active():
                self._timer.cancel()
            self._timer = None
            return
        delay = max(0.0, deadline - self.clock.seconds())
        if self._timer is not None and self._timer.active():
            if abs(self._timer.getTime() - deadline) < 1e-6:
                return
            self._timer.cancel()
        self._timerDeadline = deadline
        self._timer = self.clock.callLater(delay, self._timerFired)

    def _timerFired(self) -> None:
        self._timer = None
        # A call scheduled for `deadline` may run a rounding error before it; the cores
        # must see the deadline reached, or they would ask for the same timer forever.
        now = max(self.clock.seconds(), self._timerDeadline)
        try:
            actions = self.registrar.handle_timer(now)
        except Exception:
            log.failure("Registrar timer failed")
            actions = []
        self._perform(actions)
        if self.peering is not None:
            try:
                peerActions = self.peering.handle_timer(now)
            except Exception:
                log.failure("ENRP peer timer failed")
                peerActions = []
            self._performPeer(peerActions)
            self._armTimer()
