"""The Twisted side of the IKE core: a UDP ``DatagramProtocol`` around an ``IkeEndpoint``.

``IkeDatagramProtocol`` maps the sans-IO endpoint onto a UDP port and a clock: datagrams
in, datagrams out, one :class:`~twisted_rserpool.deadline.DeadlineTimer` at the endpoint's
``next_deadline()``. ``IkeGatewayProtocol`` is the responder (the VPN gateway);
``twisted_rserpool.ike.initiator`` has the initiator.
A second UDP port for NAT traversal (4500, RFC 7296 section 2.23) feeds the same endpoint
through ``IkeNatTraversalProtocol`` (``IkeDatagramProtocol.listenNatTraversal``).
"""

from __future__ import annotations

from typing import Any

from twisted.application.service import Service
from twisted.internet.defer import gatherResults, maybeDeferred
from twisted.internet.interfaces import IListeningPort, IReactorTime, IReactorUDP
from twisted.internet.protocol import DatagramProtocol
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from twisted_rserpool.deadline import DeadlineTimer
from twisted_rserpool.ike.constants import NAT_T_PORT
from twisted_rserpool.ike.endpoint import IkeEndpoint
from twisted_rserpool.ike.events import (
    ChildSaEstablished,
    IkeEvent,
    IkeSaDeleted,
    IkeSaEstablished,
    IkeSaFailed,
)

__all__ = [
    "IkeDatagramProtocol",
    "IkeGatewayProtocol",
    "IkeNatTraversalProtocol",
    "IkeUdpService",
]


class IkeDatagramProtocol(DatagramProtocol):
    """Feeds UDP datagrams and timer expiry to an ``IkeEndpoint`` and sends its output.

    Subclasses (or users) override ``ikeEventReceived`` to act on events.
    """

    log = Logger()
    # The service logs what it listens on; no "Starting protocol <... at 0x...>" line.
    noisy = False

    def __init__(self, endpoint: IkeEndpoint, clock: IReactorTime) -> None:
        self.endpoint = endpoint
        self.clock = clock
        self._timer = DeadlineTimer(self._fire)
        self.natTraversal: IkeNatTraversalProtocol | None = None
        """The socket on the endpoint's ``nat_t_port``, once listening."""
        endpoint.on_wake = self.flush

    def datagramReceived(self, datagram: bytes, addr: tuple[str, int]) -> None:
        """Hand a datagram that arrived on the main port to the endpoint."""
        self.receive(datagram, addr, None)

    def receive(self, datagram: bytes, addr: tuple[str, int], localPort: int | None) -> None:
        """Hand a datagram that arrived on ``localPort`` (None: the main port) to the endpoint."""
        events = self.endpoint.receive_datagram(datagram, addr, self.clock.seconds(), localPort)
        self.flush(events)

    def listenNatTraversal(
        self, reactor: IReactorUDP, port: int = NAT_T_PORT, interface: str = ""
    ) -> IListeningPort:
        """Listen on UDP ``port`` for NAT traversal (RFC 3948 framing) for this endpoint."""
        protocol = IkeNatTraversalProtocol(self)
        listening = reactor.listenUDP(port, protocol, interface=interface, maxPacketSize=65535)
        self.endpoint.nat_t_port = listening.getHost().port  # type: ignore[attr-defined]
        self.natTraversal = protocol
        return listening

    def flush(self, events: list[IkeEvent] | None = None) -> None:
        """Send queued datagrams, deliver events and re-arm the timer."""
        for event in (events or []) + self.endpoint.events():
            self.ikeEventReceived(event)
        natTraversal, natPort = self.natTraversal, self.endpoint.nat_t_port
        if natTraversal is not None and natTraversal.transport is not None and natPort is not None:
            for data, address in self.endpoint.datagrams_to_send(natPort):
                natTraversal.transport.write(data, address)
        if self.transport is not None:
            for data, address in self.endpoint.datagrams_to_send():
                self.transport.write(data, address)
        else:
            self.endpoint.datagrams_to_send()
        self._arm()

    def _arm(self) -> None:
        self._timer.arm(self.clock, self.endpoint.next_deadline())

    def _fire(self, now: float) -> None:
        self.flush(self.endpoint.handle_timer(now))

    def stopProtocol(self) -> None:
        """Cancel the timer when the port closes."""
        self._timer.cancel()

    def ikeEventReceived(self, event: IkeEvent) -> None:
        """Log an event (at debug level: the IKE SA logs the main ones); override to act."""
        if isinstance(event, IkeSaEstablished):
            self.log.debug(
                "IKE SA {spi_i}/{spi_r} up with {peer_id} at {host}:{port} ({suite})",
                spi_i=event.spi_i.hex(),
                spi_r=event.spi_r.hex(),
                peer_id=str(event.peer_id),
                host=event.peer_address[0],
                port=event.peer_address[1],
                suite=str(event.suite),
            )
            if event.suite.legacy:
                self.log.warn(
                    "IKE SA {spi_i}/{spi_r} with {peer_id} uses legacy SHA-1 ({suite}), "
                    "which RFC 8247 downgrades to MUST-; --proposals can exclude it",
                    spi_i=event.spi_i.hex(),
                    spi_r=event.spi_r.hex(),
                    peer_id=str(event.peer_id),
                    suite=str(event.suite),
                )
        elif isinstance(event, IkeSaDeleted | IkeSaFailed):
            self.log.debug(
                "IKE SA {spi_i}/{spi_r} with {host}:{port} gone: {reason}",
                spi_i=event.spi_i.hex(),
                spi_r=event.spi_r.hex(),
                host=event.peer_address[0],
                port=event.peer_address[1],
                reason=event.reason,
            )
        elif isinstance(event, ChildSaEstablished):
            self.log.debug(
                "CHILD_SA {spi} negotiated ({suite})",
                spi=event.child.inbound_spi.hex(),
                suite=str(event.child.suite),
            )
            if event.child.suite.legacy:
                self.log.warn(
                    "CHILD_SA {spi} uses legacy SHA-1 ({suite}), which RFC 8221 downgrades "
                    "to MUST-; --esp-proposals can exclude it",
                    spi=event.child.inbound_spi.hex(),
                    suite=str(event.child.suite),
                )


class IkeNatTraversalProtocol(DatagramProtocol):
    """The NAT traversal socket (UDP 4500) of an ``IkeDatagramProtocol``: its datagrams go
    to the same endpoint, with the port they arrived on; the owner sends through it."""

    noisy = False

    def __init__(self, owner: IkeDatagramProtocol) -> None:
        self.owner = owner

    def datagramReceived(self, datagram: bytes, addr: tuple[str, int]) -> None:
        """Hand a datagram that arrived on the NAT traversal port to the endpoint."""
        self.owner.receive(datagram, addr, self.owner.endpoint.nat_t_port)


class IkeGatewayProtocol(IkeDatagramProtocol):
    """The VPN gateway: answers IKE_SA_INIT/IKE_AUTH, INFORMATIONAL and liveness checks."""


class IkeUdpService(Service):
    """Listens on a UDP address with an ``IkeDatagramProtocol`` while the service runs.

    When started with port 0, the endpoint learns the port the system chose. With
    ``natTraversalPort`` (4500; 0 picks a free one) it listens there too, for NAT traversal.
    The cookie secret is replaced every ``cookieSecretLifetime`` seconds (RFC 7296 section
    2.6); a cookie stays valid for up to two lifetimes.
    """

    log = Logger()

    def __init__(
        self,
        protocol: IkeDatagramProtocol,
        interface: str,
        port: int,
        reactor: Any,
        cookieSecretLifetime: float = 300.0,
        natTraversalPort: int | None = None,
    ) -> None:
        self.protocol = protocol
        self.interface = interface
        self.port = port
        self.reactor = reactor
        self.cookieSecretLifetime = cookieSecretLifetime
        self.natTraversalPort = natTraversalPort
        self.listeningPort: IListeningPort | None = None
        self.natListeningPort: IListeningPort | None = None
        self._rotation: LoopingCall | None = None

    def startService(self) -> None:
        """Bind the UDP port."""
        super().startService()  # type: ignore[no-untyped-call]
        udp: IReactorUDP = self.reactor
        self.listeningPort = udp.listenUDP(
            self.port, self.protocol, interface=self.interface, maxPacketSize=65535
        )
        address = self.listeningPort.getHost()
        self.protocol.endpoint.local_address = (self.interface, address.port)  # type: ignore[attr-defined]
        self.log.info(
            "IKEv2 on udp {host}:{port}",
            host=self.interface,
            port=address.port,  # type: ignore[attr-defined]
        )
        if self.natTraversalPort is not None:
            self.natListeningPort = self.protocol.listenNatTraversal(
                udp, self.natTraversalPort, self.interface
            )
            self.log.info(
                "IKEv2 NAT traversal (RFC 3948 framing) on udp {host}:{port}",
                host=self.interface,
                port=self.protocol.endpoint.nat_t_port,
            )
        self._rotation = LoopingCall(self.protocol.endpoint.rotate_cookie_secret)
        self._rotation.clock = self.reactor
        self._rotation.start(self.cookieSecretLifetime, now=False)

    def stopService(self) -> Any:
        """Close the UDP port."""
        super().stopService()  # type: ignore[no-untyped-call]
        if self._rotation is not None and self._rotation.running:
            self._rotation.stop()
        self._rotation = None
        stopping = []
        for port in (self.natListeningPort, self.listeningPort):
            if port is not None:
                stopping.append(maybeDeferred(port.stopListening))
        self.natListeningPort = self.listeningPort = None
        self.protocol.natTraversal = None
        return gatherResults(stopping) if stopping else None
