"""The ENRP server as Twisted services: ASAP listeners around the sans-IO :class:`Registrar`."""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from typing import Any

from twisted.application.internet import StreamServerEndpointService
from twisted.application.service import MultiService
from twisted.internet.interfaces import (
    IDelayedCall,
    IReactorTime,
    ISSLTransport,
    IStreamServerEndpoint,
)
from twisted.logger import Logger
from twisted.python.failure import Failure

from twisted_rserpool.enrp.registrar import Action, Close, Registrar, Send
from twisted_rserpool.security.context import SecurityContext
from twisted_rserpool.transport.connection import MappingConfig
from twisted_rserpool.transport.protocol import RSerPoolFactory, RSerPoolProtocol
from twisted_rserpool.wire import asap, enrp
from twisted_rserpool.wire.errors import CauseCode
from twisted_rserpool.wire.limits import Limits
from twisted_rserpool.wire.parameters import OperationError

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


class ENRPServer(MultiService):
    """An ENRP server: ASAP listeners for PEs and PUs, the registrar, its timers.

    Add listeners with :meth:`listenASAP` (before or after the service starts). Subclass
    :class:`~twisted_rserpool.enrp.registrar.Registrar` to own registration and resolution
    decisions, and pass it in.
    """

    def __init__(
        self,
        registrar: Registrar,
        clock: IReactorTime,
        *,
        maxConnections: int = 10_000,
        mappingConfig: MappingConfig | None = None,
        messageLimits: Limits | None = None,
    ) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.registrar = registrar
        self.clock = clock
        self.maxConnections = maxConnections
        self.openConnections: set[ASAPServerProtocol] = set()
        self.factory = ASAPServerFactory(
            self, mappingConfig=mappingConfig, messageLimits=messageLimits
        )
        self._protocols: dict[int, ASAPServerProtocol] = {}
        self._numbers = itertools.count(1)
        self._timer: IDelayedCall | None = None

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
        return [s for s in self if isinstance(s, StreamServerEndpointService)]

    def startService(self) -> None:
        """Start listening and log how to reach this server."""
        super().startService()  # type: ignore[no-untyped-call]
        log.info(
            "ENRP server 0x{server:08x} started ({mode})",
            server=self.serverIdentifier,
            mode="secure" if self.registrar.config.secure else "INSECURE",
        )
        self._armTimer()

    def stopService(self) -> Any:
        """Stop listening, close every connection, stop the timer."""
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        for protocol in list(self.openConnections):
            if protocol.transport is not None:
                protocol.transport.loseConnection()
        self.registrar.close()
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
        return []

    def flush(self) -> None:
        """Carry out actions caused by handlespace changes made elsewhere (ENRP peers)."""
        self._perform(self.registrar.take_actions())

    def _perform(self, actions: list[Action]) -> None:
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
        self._armTimer()

    def _armTimer(self) -> None:
        if not self.running:
            return
        deadline = self.registrar.next_deadline()
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
        self._timer = self.clock.callLater(delay, self._timerFired)

    def _timerFired(self) -> None:
        self._timer = None
        try:
            actions = self.registrar.handle_timer(self.clock.seconds())
        except Exception:
            log.failure("Registrar timer failed")
            actions = []
        self._perform(actions)
