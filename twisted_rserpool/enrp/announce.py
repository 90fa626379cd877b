"""ASAP_SERVER_ANNOUNCE over UDP (RFC 5352 section 3.6): optional, off by default.

An ENRP server may announce itself every T6-Serverannounce seconds to the ASAP multicast
group (224.0.1.185 or FF0X::133, port 3863) or a unicast address, over IPv4 or IPv6, so
that PEs and PUs learn where to reach it. Multicast goes with TTL / hop limit 1: it stays
on the link, which is why ff02::133 (link-local scope) is the IPv6 group to use.
Announcements are hints only: a PE or PU uses an announced server only after it
authenticated over TLS (RFC 5355 2.12), so an attacker's announcement gains nothing.
"""

from __future__ import annotations

import socket
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


def parseAnnounceAddress(
    description: str, defaultPort: int | None = ASAP_ANNOUNCE_PORT
) -> tuple[str, int]:
    """``HOST[:PORT]`` as a (host, port) pair: an IPv4 address, or an IPv6 one bare
    (``ff02::133``) or in brackets (``[::1]:4000``). Without a port, ``defaultPort`` (the
    ASAP announcement port 3863; ``None``: the port is required)."""
    if description.startswith("["):
        host, bracket, rest = description[1:].partition("]")
        port = rest[1:] if bracket and rest.startswith(":") else None
        if not bracket or (rest and port is None):
            raise ValueError(f"bad announce address {description!r}: use [IPV6-ADDRESS]:PORT")
    elif description.count(":") > 1:
        host, port = description, ""  # a bare IPv6 address
    else:
        host, _, port = description.partition(":")
    try:
        ip_address(host)
        if not port and defaultPort is None:
            raise ValueError("a port is required")
        number = int(port) if port else defaultPort
    except ValueError as e:
        raise ValueError(f"bad announce address {description!r}: {e}") from e
    assert number is not None
    if not 0 < number < 65536:
        raise ValueError(f"bad announce port in {description!r}")
    return host, number


def _interfaceIndex(interface: str) -> int:
    """The index of the interface named ``interface`` (or given as digits)."""
    if interface.isdigit():
        return int(interface)
    try:
        return socket.if_nametoindex(interface)
    except OSError as e:
        raise ValueError(f"no network interface {interface!r}") from e


class ServerAnnouncer(Service):
    """Sends ASAP_SERVER_ANNOUNCE with this server's ASAP transports every ``interval`` s.

    ``destination`` is a multicast group (sent with TTL or hop limit 1, from ``interface``
    when given) or a unicast address, IPv4 or IPv6. ``interface`` is the local address to
    send from; for an IPv6 group it may instead be an interface name or index (IPv6 names
    the outgoing interface so; a link-local group such as ff02::133 needs one when the
    host has several). Counts what it sent in ``sent``.
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
        if interface and ip_address(destination[0]).version == 6:
            try:
                ip_address(interface)
            except ValueError:
                _interfaceIndex(interface)  # an unknown interface fails here, not at start
        self.sent = 0
        self._protocol = DatagramProtocol()
        self._protocol.noisy = False
        self._port: object = None
        self._loop: LoopingCall | None = None

    def startService(self) -> None:
        """Open the socket and start announcing."""
        super().startService()  # type: ignore[no-untyped-call]
        destination = ip_address(self.destination[0])
        if destination.version == 6:
            self._port = self._listen6(destination.is_multicast)
        elif destination.is_multicast:
            # A multicast port (a plain UDP port has no TTL or outgoing interface to set).
            port = self.reactor.listenMulticast(  # type: ignore[attr-defined]
                0, self._protocol, self.interface, 8192
            )
            port.setTTL(1)
            if self.interface:
                port.setOutgoingInterface(self.interface)
            self._port = port
        else:
            self._port = self.reactor.listenUDP(0, self._protocol, self.interface, 8192)
        loop = LoopingCall(self.announce)
        loop.clock = self.clock
        self._loop = loop
        loop.start(self.interval, now=True)
        host, port = self.destination
        log.info(
            "Announcing ENRP server to {destination} every {interval} s",
            destination=f"[{host}]:{port}" if destination.version == 6 else f"{host}:{port}",
            interval=self.interval,
        )

    def _listen6(self, multicast: bool) -> object:
        """An IPv6 socket bound to ``interface`` when it is an address, else to ``::``; for
        a group, with hop limit 1 and the named outgoing interface."""
        try:
            bind = str(ip_address(self.interface)) if self.interface else "::"
            outgoing = 0
        except ValueError:
            bind, outgoing = "::", _interfaceIndex(self.interface)
        if not multicast:
            return self.reactor.listenUDP(0, self._protocol, bind, 8192)
        port = self.reactor.listenMulticast(  # type: ignore[attr-defined]
            0, self._protocol, bind, 8192
        )
        # Twisted's setTTL sets the IPv4 option only.
        port.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, 1)
        if outgoing:
            port.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_IF, outgoing)
        return port

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
