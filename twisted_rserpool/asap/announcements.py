"""Receiving ASAP_SERVER_ANNOUNCE over UDP (RFC 5352 section 3.6): unicast or multicast.

An ENRP server may announce itself to the ASAP multicast group (224.0.1.185 or FF0X::133,
port 3863) or to a unicast address (``twistd enrp --announce``). A pool element or pool
user listening with ``announceListen`` hands every announcement to its home server link,
where the announced TCP transports become hints for T7-ENRPoutdate. A hint is used only
through the owner's ``announcedServer`` factory (our credentials) and only once the server
authenticates over TLS like any configured one (RFC 5355 2.12): a forged announcement costs
a failed connection attempt, never trust.

Announcements without transport parameters mean SCTP at the sender's address (RFC 5352
3.6); with no SCTP here they are ignored, as are the SCTP transports of an announcement.
"""

from __future__ import annotations

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
    "AnnounceAddress",
    "AnnouncementReceiver",
    "listenForAnnouncements",
    "parseAnnounceListen",
]

log = Logger()

#: RFC 5352 section 8.4: the ASAP announcement group (IPv4) and port.
ASAP_MULTICAST_GROUP = "224.0.1.185"
ASAP_ANNOUNCE_PORT = 3863


@dataclass(frozen=True, slots=True)
class AnnounceAddress:
    """Where to listen: ``port`` on ``interface``; with ``group``, join that multicast group
    (on ``interface`` when given)."""

    port: int
    interface: str = ""
    group: str | None = None


def parseAnnounceListen(description: str) -> AnnounceAddress:
    """``[ADDRESS:]PORT`` (IPv4). A multicast ADDRESS (e.g. ``224.0.1.185:3863``) is joined;
    a unicast one is the interface bound; ``PORT`` alone listens on every interface.
    ``GROUP:PORT:INTERFACE`` joins GROUP on INTERFACE."""
    parts = description.split(":")
    try:
        if len(parts) == 1:
            return AnnounceAddress(_port(parts[0]))
        if len(parts) == 2:
            address = ip_address(parts[0])
            if address.is_multicast:
                return AnnounceAddress(_port(parts[1]), group=str(address))
            return AnnounceAddress(_port(parts[1]), interface=str(address))
        if len(parts) == 3:
            group, interface = ip_address(parts[0]), ip_address(parts[2])
            if not group.is_multicast:
                raise ValueError(f"{group} is not a multicast group")
            return AnnounceAddress(_port(parts[1]), interface=str(interface), group=str(group))
    except ValueError as e:
        raise ValueError(f"bad announcement address {description!r}: {e}") from e
    raise ValueError(f"bad announcement address {description!r}: use [ADDRESS:]PORT")


def _port(text: str) -> int:
    number = int(text)
    if not 0 <= number < 65536:
        raise ValueError(f"port {number} out of range")
    return number


class AnnouncementReceiver(DatagramProtocol):
    """Decodes ASAP_SERVER_ANNOUNCE datagrams and hands them to ``onAnnounce``; anything
    else (other messages, malformed datagrams) is counted and dropped."""

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
        port: IListeningPort = reactor.listenUDP(address.port, receiver, address.interface)
        return port
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
