"""Receiving ASAP_SERVER_ANNOUNCE over UDP (RFC 5352 section 3.6): unicast or multicast.

An ENRP server may announce itself to the ASAP multicast group (224.0.1.185 or FF0X::133,
port 3863) or to a unicast address (``twistd enrp --announce``), over IPv4 or IPv6. A pool
element or pool user listening with ``announceListen`` hands every announcement to its home
server link, where the announced TCP transports become hints for T7-ENRPoutdate. A hint is
used only through the owner's ``announcedServer`` factory (our credentials) and only once
the server authenticates over TLS like any configured one (RFC 5355 2.12): a forged
announcement costs a failed connection attempt, never trust.

Announcements without transport parameters mean SCTP at the sender's address (RFC 5352
3.6); with no SCTP here they are ignored, as are the SCTP transports of an announcement.
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Callable
from dataclasses import dataclass
from ipaddress import ip_address
from typing import Any

from twisted.internet.interfaces import IListeningPort
from twisted.internet.protocol import DatagramProtocol
from twisted.logger import Logger

from twisted_rserpool.wire import asap
from twisted_rserpool.wire.errors import MalformedMessage

__all__ = [
    "ASAP_ANNOUNCE_PORT",
    "ASAP_MULTICAST_GROUP",
    "ASAP_MULTICAST_GROUP6",
    "AnnounceAddress",
    "AnnouncementReceiver",
    "asapMulticastGroup6",
    "interfaceIndex",
    "listenForAnnouncements",
    "parseAnnounceListen",
]

log = Logger()

#: RFC 5352 section 8.4: the ASAP announcement group (IPv4) and port.
ASAP_MULTICAST_GROUP = "224.0.1.185"
ASAP_ANNOUNCE_PORT = 3863


def asapMulticastGroup6(scope: int = 2) -> str:
    """The IPv6 ASAP group FF0X::133 (RFC 5352 section 3.6) of multicast scope ``scope``
    (RFC 4291 2.7: 2 link-local, 5 site-local, 8 organisation-local, 0xE global)."""
    if not 1 <= scope <= 0xF:
        raise ValueError(f"IPv6 multicast scope {scope} out of range")
    return f"ff0{scope:x}::133"


#: The IPv6 group used by default: link-local scope, because announcements are sent with
#: a hop limit of 1 (as the IPv4 ones with TTL 1) and so never leave the link anyway.
ASAP_MULTICAST_GROUP6 = asapMulticastGroup6(2)


def interfaceIndex(interface: str) -> int:
    """The index of the network interface named ``interface`` (a name such as ``eth0``, or
    the index as digits; ``""`` is 0, the kernel's choice). IPv6 multicast names interfaces
    by index (IPV6_JOIN_GROUP, IPV6_MULTICAST_IF)."""
    if not interface:
        return 0
    if interface.isdigit():
        return int(interface)
    try:
        return socket.if_nametoindex(interface)
    except OSError as e:
        raise ValueError(f"no network interface {interface!r}") from e


@dataclass(frozen=True, slots=True)
class AnnounceAddress:
    """Where to listen: ``port`` on ``interface``; with ``group``, join that multicast group
    (on ``interface`` when given). ``ipv6`` selects the address family; an IPv6 group's
    ``interface`` is an interface name or index (IPv6 joins name interfaces so), any other
    ``interface`` a local address."""

    port: int
    interface: str = ""
    group: str | None = None
    ipv6: bool = False


def parseAnnounceListen(description: str) -> AnnounceAddress:
    """``[ADDRESS:]PORT``, an IPv6 ADDRESS in brackets (``[::1]:3863``). A multicast ADDRESS
    (``224.0.1.185:3863``, ``[ff02::133]:3863``) is joined; a unicast one is the address
    bound; ``PORT`` alone listens on every IPv4 interface (``[::]:PORT`` on every IPv6 one).
    ``GROUP:PORT:INTERFACE`` joins GROUP on INTERFACE: a local IPv4 address for an IPv4
    group, an interface name or index for an IPv6 one (``[ff02::133]:3863:eth0``)."""
    try:
        host, rest = _splitHost(description)
        if host is None:
            return AnnounceAddress(_port(rest))
        port, _, interface = rest.partition(":")
        address = ip_address(host)
        ipv6 = address.version == 6
        if not interface:
            if address.is_multicast:
                return AnnounceAddress(_port(port), group=str(address), ipv6=ipv6)
            return AnnounceAddress(_port(port), interface=str(address), ipv6=ipv6)
        if not address.is_multicast:
            raise ValueError(f"{address} is not a multicast group")
        if ipv6:
            interfaceIndex(interface)  # an unknown interface fails here, not at the join
        elif ip_address(interface).version != 4:
            raise ValueError(f"{interface} is not an IPv4 interface address")
        return AnnounceAddress(_port(port), interface=interface, group=str(address), ipv6=ipv6)
    except ValueError as e:
        raise ValueError(f"bad announcement address {description!r}: {e}") from e


def _splitHost(description: str) -> tuple[str | None, str]:
    """``(host, rest)`` of ``HOST:rest`` or ``[HOST6]:rest``; ``(None, PORT)`` for a port."""
    if description.startswith("["):
        host, bracket, rest = description[1:].partition("]")
        if not bracket or not rest.startswith(":"):
            raise ValueError("use [IPV6-ADDRESS]:PORT")
        return host, rest[1:]
    if ":" not in description:
        return None, description
    host, _, rest = description.partition(":")
    return host, rest


def _port(text: str) -> int:
    number = int(text)
    if not 0 <= number < 65536:
        raise ValueError(f"port {number} out of range")
    return number


class AnnouncementReceiver(DatagramProtocol):
    """Decodes ASAP_SERVER_ANNOUNCE datagrams and hands them to ``onAnnounce``; anything
    else (other messages, malformed datagrams) is counted and dropped."""

    noisy = False

    def __init__(self, onAnnounce: Callable[[asap.ServerAnnounce], None]) -> None:
        self.onAnnounce = onAnnounce
        self.counters: dict[str, int] = {"announcements": 0, "dropped": 0}

    def datagramReceived(self, datagram: bytes, addr: Any) -> None:
        """One datagram: an announcement, or dropped (logged once per kind of fault)."""
        try:
            message = asap.decode(datagram)
        except MalformedMessage as e:
            self._drop(addr, f"malformed: {e}")
            return
        if not isinstance(message, asap.ServerAnnounce):
            self._drop(addr, f"{type(message).__name__} is not an announcement")
            return
        self.counters["announcements"] += 1
        self.onAnnounce(message)

    def _drop(self, addr: Any, reason: str) -> None:
        self.counters["dropped"] += 1
        if self.counters["dropped"] <= 10 or self.counters["dropped"] % 1000 == 0:
            log.info(
                "Datagram from {peer} on the announcement port dropped ({reason}); {count} so far",
                peer=addr,
                reason=reason,
                count=self.counters["dropped"],
            )


def listenForAnnouncements(
    reactor: Any, address: AnnounceAddress, receiver: AnnouncementReceiver
) -> IListeningPort:
    """Listen as ``address`` says (joining its multicast group, sharing the port with other
    listeners on this host)."""
    if address.group is None:
        interface = address.interface or ("::" if address.ipv6 else "")
        port: IListeningPort = reactor.listenUDP(address.port, receiver, interface)
        return port
    if address.ipv6:
        return _listenMulticast6(reactor, address, receiver)
    port = reactor.listenMulticast(address.port, receiver, listenMultiple=True)
    joined = port.joinGroup(address.group, address.interface or "0.0.0.0")  # type: ignore[attr-defined]

    def failed(failure: Any) -> None:
        log.warn(
            "Could not join the announcement group {group} on {interface}: {error}",
            group=address.group,
            interface=address.interface or "any interface",
            error=failure.getErrorMessage(),
        )

    joined.addErrback(failed)
    return port


def _listenMulticast6(
    reactor: Any, address: AnnounceAddress, receiver: AnnouncementReceiver
) -> IListeningPort:
    """Listen on ``[::]:port`` and join the IPv6 group with IPV6_JOIN_GROUP on the interface
    (Twisted's joinGroup packs an address where struct ipv6_mreq has an interface index)."""
    assert address.group is not None
    port: IListeningPort = reactor.listenMulticast(
        address.port, receiver, "::", listenMultiple=True
    )
    try:
        request = socket.inet_pton(socket.AF_INET6, address.group) + struct.pack(
            "@I", interfaceIndex(address.interface)
        )
        port.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_JOIN_GROUP, request)  # type: ignore[attr-defined]
    except (OSError, ValueError) as e:
        log.warn(
            "Could not join the announcement group {group} on {interface}: {error}",
            group=address.group,
            interface=address.interface or "any interface",
            error=str(e),
        )
    else:
        log.info(
            "Joined the announcement group {group} on {interface}, port {port}",
            group=address.group,
            interface=address.interface or "the kernel's choice of interface",
            port=address.port,
        )
    return port
