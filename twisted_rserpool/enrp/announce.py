"""ASAP_SERVER_ANNOUNCE over UDP (RFC 5352 section 3.6): optional, off by default.

An ENRP server may announce itself every T6-Serverannounce seconds to the ASAP multicast
group (224.0.1.185 or FF0X::133, port 3863) so that PEs and PUs learn where to reach it.
Announcements are hints only: a PE or PU uses an announced server only after it
authenticated over TLS (RFC 5355 2.12), so an attacker's announcement gains nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from ipaddress import ip_address

from twisted.application.service import Service
from twisted.internet.interfaces import IReactorTime, IReactorUDP
from twisted.internet.protocol import DatagramProtocol
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from twisted_rserpool.wire import asap
from twisted_rserpool.wire.parameters import TcpTransport

log = Logger()

#: RFC 5352 section 8.4: the ASAP announcement group and port.
ASAP_MULTICAST_GROUP = "224.0.1.185"
ASAP_ANNOUNCE_PORT = 3863


def parseAnnounceAddress(description: str) -> tuple[str, int]:
    """``HOST[:PORT]`` (an IPv4 address; the port defaults to 3863) as a (host, port) pair."""
    host, _, port = description.partition(":")
    try:
        ip_address(host)
        number = int(port) if port else ASAP_ANNOUNCE_PORT
    except ValueError as e:
        raise ValueError(f"bad announce address {description!r}: {e}") from e
    if not 0 < number < 65536:
        raise ValueError(f"bad announce port in {description!r}")
    return host, number


class ServerAnnouncer(Service):
    """Sends ASAP_SERVER_ANNOUNCE with this server's ASAP transports every ``interval`` s.

    ``destination`` is a multicast group (sent with TTL 1, on ``interface`` when given) or a
    unicast address. Counts what it sent in ``sent``.
    """

    def __init__(
        self,
        reactor: IReactorUDP,
        clock: IReactorTime,
        serverIdentifier: int,
        transports: Sequence[TcpTransport],
        destination: tuple[str, int],
        *,
        interval: float = 2.0,
        interface: str = "",
    ) -> None:
        self.reactor = reactor
        self.clock = clock
        self.message = asap.ServerAnnounce(serverIdentifier, tuple(transports))
        self.destination = destination
        self.interval = interval
        self.interface = interface
        self.sent = 0
        self._protocol = DatagramProtocol()
        self._port: object = None
        self._loop: LoopingCall | None = None

    def startService(self) -> None:
        """Open the socket and start announcing."""
        super().startService()  # type: ignore[no-untyped-call]
        if ip_address(self.destination[0]).is_multicast:
            # A multicast port (a plain UDP port has no TTL or outgoing interface to set).
            port = self.reactor.listenMulticast(  # type: ignore[attr-defined]
                0, self._protocol, self.interface, 8192
            )
            port.setTTL(1)
            if self.interface:
                port.setOutgoingInterface(self.interface)
        else:
            port = self.reactor.listenUDP(0, self._protocol, self.interface, 8192)
        self._port = port
        loop = LoopingCall(self.announce)
        loop.clock = self.clock
        self._loop = loop
        loop.start(self.interval, now=True)
        log.info(
            "Announcing ENRP server to {host}:{port} every {interval} s",
            host=self.destination[0],
            port=self.destination[1],
            interval=self.interval,
        )

    def announce(self) -> None:
        """Send one announcement."""
        transport = self._protocol.transport
        if transport is None:
            return
        try:
            transport.write(self.message.encode(), self.destination)
            self.sent += 1
        except OSError as e:
            log.warn("Server announcement failed: {error}", error=str(e))

    def stopService(self) -> None:
        """Stop announcing and close the socket."""
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        self._loop = None
        port = self._port
        self._port = None
        if port is not None:
            port.stopListening()  # type: ignore[attr-defined]
        super().stopService()  # type: ignore[no-untyped-call]
