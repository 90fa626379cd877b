"""ESP straight over IP (protocol 50, RFC 4303) on a raw socket, for peers not behind a NAT.

``open_raw_esp(address)`` opens a non-blocking ``SOCK_RAW`` socket for protocol 50 bound to
one listen address (needs CAP_NET_RAW). ``RawEspSocket`` is its Twisted reader and writer:
each wakeup reads every datagram waiting (up to ``batch``), strips the IPv4 header (IPv4
raw sockets deliver it, IPv6 ones do not) and hands each ESP packet with its source to the
callback, as ``IkeEndpoint.esp_receiver`` takes them; ``write`` sends one ESP packet to a
peer and drops it (counted) when the socket cannot take it rather than block the reactor.
"""

from __future__ import annotations

import socket
from collections.abc import Callable

from twisted.internet.interfaces import IReadDescriptor
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

__all__ = ["IPPROTO_ESP", "RawEspSocket", "open_raw_esp"]

IPPROTO_ESP = 50

Receiver = Callable[[bytes, tuple[str, int], float], None]


def open_raw_esp(address: str) -> socket.socket:
    """A non-blocking raw socket for ESP bound to ``address`` (IPv4 or IPv6); raises
    ``PermissionError`` without CAP_NET_RAW."""
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_RAW, IPPROTO_ESP)
    try:
        sock.setblocking(False)
        sock.bind((address, 0))
    except OSError:
        sock.close()
        raise
    return sock


@implementer(IReadDescriptor)
class RawEspSocket:
    """Reads ESP packets from a raw socket into ``received(packet, (source, 0), now)`` and
    writes ESP packets to peers. ``ipv4_header``: the socket delivers the IPv4 header."""

    log = Logger()

    def __init__(
        self,
        sock: socket.socket,
        reactor: object,
        received: Receiver,
        *,
        ipv4_header: bool | None = None,
        batch: int = 64,
    ) -> None:
        self.sock = sock
        self.reactor = reactor
        self.received = received
        self.ipv4_header = sock.family == socket.AF_INET if ipv4_header is None else ipv4_header
        self.batch = batch
        self.counters = {"read": 0, "short": 0, "written": 0, "write_dropped": 0}
        self._reading = False

    def startReading(self) -> None:
        """Register with the reactor."""
        if not self._reading:
            self._reading = True
            self.reactor.addReader(self)  # type: ignore[attr-defined]

    def close(self) -> None:
        """Stop reading and close the socket."""
        if self._reading:
            self._reading = False
            self.reactor.removeReader(self)  # type: ignore[attr-defined]
        self.sock.close()

    def fileno(self) -> int:
        """The socket's descriptor."""
        return self.sock.fileno()

    def logPrefix(self) -> str:
        """For Twisted's logs."""
        return "raw-esp"

    def doRead(self) -> None:
        """Read the datagrams waiting (up to ``batch``) and hand over their ESP packets."""
        now: float = self.reactor.seconds()  # type: ignore[attr-defined]
        for _ in range(self.batch):
            try:
                datagram, address = self.sock.recvfrom(65535)
            except (BlockingIOError, InterruptedError):
                break
            except OSError as e:
                self.log.warn("raw ESP: read failed: {error}", error=str(e))
                break
            if self.ipv4_header:
                # The IHL field counts 32-bit words (RFC 791).
                length = (datagram[0] & 0x0F) * 4 if datagram else 0
                if length < 20 or len(datagram) < length:
                    self.counters["short"] += 1
                    continue
                datagram = datagram[length:]
            self.counters["read"] += 1
            self.received(datagram, (address[0], 0), now)

    def write(self, packet: bytes, address: tuple[str, int]) -> None:
        """Send one ESP packet to ``address[0]``; dropped and counted when it cannot go."""
        try:
            self.sock.sendto(packet, (address[0], 0))
        except OSError:
            self.counters["write_dropped"] += 1
            return
        self.counters["written"] += 1

    def connectionLost(self, reason: Failure) -> None:
        """The reactor gave up on the socket: stop reading."""
        self._reading = False
