"""TCP listening endpoints whose connections send at once when nothing waits to be sent.

Twisted's TCP transport queues every write and sends it when the reactor next reports
the socket writable: two ``epoll_ctl`` calls and one more reactor wake-up per write, even
when the socket could take the bytes at once. An ENRP server holding thousands of PEs
writes one small TLS record per connection per keep-alive, so that detour is a large
part of its keep-alive work. These transports try ``send`` first when their buffer is
empty and queue only what the kernel does not take; everything else (ordering, producers,
half-close, loss) is Twisted's.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from twisted.internet import tcp
from twisted.internet.abstract import FileDescriptor
from twisted.internet.endpoints import TCP4ServerEndpoint, TCP6ServerEndpoint
from twisted.internet.posixbase import PosixReactorBase

if TYPE_CHECKING:
    from twisted.internet.defer import Deferred
    from twisted.internet.interfaces import IListeningPort, IProtocolFactory


class WriteThroughServer(tcp.Server):
    """An accepted TCP connection that sends a write at once if nothing is queued before it."""

    def write(self, data: bytes) -> None:
        """Send ``data`` now as far as the socket takes it; queue the rest as Twisted does."""
        if (
            not data
            or self._tempDataBuffer
            or self.dataBuffer
            or not self.connected
            or self._writeDisconnected
            or not isinstance(data, bytes)
            or self.TLS
        ):
            # Twisted's path: its checks, its errors, its queue, startTLS's layer.
            super().write(data)  # type: ignore[no-untyped-call]
            return
        sent = self.writeSomeData(data)
        if isinstance(sent, Exception):
            # Let the reactor find the loss on its next write, as it would have.
            FileDescriptor.write(self, data)
        elif sent < len(data):
            FileDescriptor.write(self, data[sent:])


class WriteThroughPort(tcp.Port):
    """A TCP listening port whose connections are :class:`WriteThroughServer`."""

    transport = WriteThroughServer


def _listen(
    endpoint: TCP4ServerEndpoint | TCP6ServerEndpoint, protocolFactory: IProtocolFactory
) -> Deferred[IListeningPort]:
    from twisted.internet.defer import execute  # noqa: PLC0415

    reactor = endpoint._reactor
    if not isinstance(reactor, PosixReactorBase):
        # Not a reactor built on Twisted's TCP transport (IOCP, a test's memory reactor).
        return execute(
            reactor.listenTCP,
            endpoint._port,
            protocolFactory,
            backlog=endpoint._backlog,
            interface=endpoint._interface,
        )

    def start() -> IListeningPort:
        port = WriteThroughPort(
            endpoint._port, protocolFactory, endpoint._backlog, endpoint._interface, reactor
        )
        port.startListening()
        return port

    return execute(start)


class WriteThroughTCP4ServerEndpoint(TCP4ServerEndpoint):
    """:class:`~twisted.internet.endpoints.TCP4ServerEndpoint` with write-through connections."""

    def listen(self, protocolFactory: IProtocolFactory) -> Deferred[IListeningPort]:
        """Listen on the port; connections send at once when their buffer is empty."""
        return _listen(self, protocolFactory)


class WriteThroughTCP6ServerEndpoint(TCP6ServerEndpoint):
    """:class:`~twisted.internet.endpoints.TCP6ServerEndpoint` with write-through connections."""

    def listen(self, protocolFactory: IProtocolFactory) -> Deferred[IListeningPort]:
        """Listen on the port; connections send at once when their buffer is empty."""
        return _listen(self, protocolFactory)


__all__ = [
    "WriteThroughPort",
    "WriteThroughServer",
    "WriteThroughTCP4ServerEndpoint",
    "WriteThroughTCP6ServerEndpoint",
]
