"""Write-through TCP server connections over real loopback sockets.

Each test checks what Twisted's own transport guarantees (order, every byte, producers
paused on a full buffer, data before a close, a lost peer reported by the reactor) and
that a write on an idle connection leaves the reactor's writer set alone.
"""

from __future__ import annotations

import socket
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.interfaces import IListeningPort, IPushProducer
from twisted.internet.protocol import Factory, Protocol, connectionDone
from twisted.internet.testing import MemoryReactor
from twisted.python.failure import Failure
from twisted.trial import unittest
from zope.interface import implementer

from twisted_rserpool.transport.writethrough import (
    WriteThroughServer,
    WriteThroughTCP4ServerEndpoint,
    WriteThroughTCP6ServerEndpoint,
)

REACTOR: Any = reactor


class Collector(Protocol):
    """Keeps what it receives; ``done`` fires with all of it when the connection ends."""

    def __init__(self) -> None:
        self.received = bytearray()
        self.done: Deferred[bytes] = Deferred()
        self.reason: Failure | None = None

    def dataReceived(self, data: bytes) -> None:
        self.received += data

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.reason = reason
        self.done.callback(bytes(self.received))


class Accepting(Protocol):
    """The server side: ``connected`` fires with the protocol when the connection is made."""

    def __init__(self, connected: Deferred[Accepting]) -> None:
        self.whenConnected = connected
        self.lost: Deferred[None] = Deferred()
        self.reason: Failure | None = None

    def connectionMade(self) -> None:
        self.whenConnected.callback(self)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.reason = reason
        self.lost.callback(None)


@implementer(IPushProducer)
class CountingProducer:
    """Counts the pauses and resumes its consumer asks for."""

    def __init__(self) -> None:
        self.paused = 0
        self.resumed = 0

    def pauseProducing(self) -> None:
        self.paused += 1

    def resumeProducing(self) -> None:
        self.resumed += 1

    def stopProducing(self) -> None:
        pass


class WriteThroughTests(unittest.TestCase):
    """A real listening port on 127.0.0.1, a plain Twisted client."""

    async def _pair(self) -> tuple[Accepting, Collector]:
        connected: Deferred[Accepting] = Deferred()
        factory = Factory.forProtocol(lambda: Accepting(connected))
        port: IListeningPort = await WriteThroughTCP4ServerEndpoint(  # type: ignore[no-untyped-call]
            reactor, 0, interface="127.0.0.1"
        ).listen(factory)
        self.addCleanup(port.stopListening)
        client = Collector()
        await connectProtocol(  # type: ignore[no-untyped-call]
            TCP4ClientEndpoint(reactor, "127.0.0.1", port.getHost().port),  # type: ignore[attr-defined]
            client,
        )
        server = await connected
        assert isinstance(server.transport, WriteThroughServer)
        return server, client

    async def _idleWriteGoesOut(self) -> None:
        server, client = await self._pair()
        transport: Any = server.transport
        transport.write(b"one")
        # Sent by the write itself: the reactor was never asked to watch for writability.
        assert transport not in REACTOR.getWriters()
        assert transport.dataBuffer == b"" and transport._tempDataBuffer == []
        transport.write(b"two")
        transport.loseConnection()
        assert await client.done == b"onetwo"

    def test_idleWriteGoesOut(self) -> Deferred[None]:
        """A write on a connection with nothing queued is sent at once, in order."""
        return Deferred.fromCoroutine(self._idleWriteGoesOut())

    async def _bigWritesQueueInOrder(self) -> None:
        server, client = await self._pair()
        transport: Any = server.transport
        producer = CountingProducer()
        transport.registerProducer(producer, True)
        first = bytes(range(256)) * 64 * 1024  # 16 MiB: more than the socket takes at once
        transport.write(first)
        # What the kernel did not take waits in Twisted's queue, the writer registered,
        # and the streaming producer was paused, as Twisted does for a full buffer.
        assert transport in REACTOR.getWriters()
        assert producer.paused == 1
        transport.write(b"after")  # behind the queued rest, never before it
        transport.unregisterProducer()
        transport.loseConnection()
        received = await client.done
        assert received == first + b"after"

    def test_bigWritesQueueInOrder(self) -> Deferred[None]:
        """A write the socket cannot take whole is queued; later writes follow it."""
        return Deferred.fromCoroutine(self._bigWritesQueueInOrder())

    async def _writeToLostPeer(self) -> None:
        server, client = await self._pair()
        transport: Any = server.transport
        assert client.transport is not None
        clientSocket: socket.socket = client.transport.getHandle()  # type: ignore[attr-defined]
        # An abortive close: the server's next sends fail with a reset.
        clientSocket.setsockopt(
            socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00"
        )
        client.transport.abortConnection()  # type: ignore[attr-defined]
        await client.done
        for _ in range(50):
            transport.write(b"x" * 1000)  # never raises, whatever the socket says
            if not transport.connected:
                break
        await server.lost
        assert server.reason is not None and not transport.connected

    def test_writeToLostPeer(self) -> Deferred[None]:
        """Writes to a peer that reset raise nothing; the reactor reports the loss."""
        return Deferred.fromCoroutine(self._writeToLostPeer())


class FallbackTests(unittest.SynchronousTestCase):
    """A reactor without Twisted's TCP transport listens its own way."""

    def test_memoryReactor(self) -> None:
        """On a memory reactor the endpoints call listenTCP with their arguments."""
        memory = MemoryReactor()  # type: ignore[no-untyped-call]
        factory = Factory.forProtocol(Protocol)
        WriteThroughTCP4ServerEndpoint(memory, 3864, 7, "127.0.0.1").listen(factory)  # type: ignore[no-untyped-call]
        WriteThroughTCP6ServerEndpoint(memory, 3865, 9, "::1").listen(factory)  # type: ignore[no-untyped-call]
        assert [call[:4] for call in memory.tcpServers] == [
            (3864, factory, 7, "127.0.0.1"),
            (3865, factory, 9, "::1"),
        ]
