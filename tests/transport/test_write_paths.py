"""How RSerPoolProtocol writes: what a read or timer gathered goes past the TLS layer's
aggregation of small writes (after whatever that holds), and gatheredWrites makes sends
from outside the protocols' callbacks wait for one write per connection."""

from __future__ import annotations

import socket
from typing import ClassVar, cast

import pytest
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import (
    TCP4ClientEndpoint,
    TCP4ServerEndpoint,
    wrapClientTLS,
)
from twisted.internet.interfaces import IStreamClientEndpoint, IStreamServerEndpoint
from twisted.internet.protocol import connectionDone
from twisted.protocols.tls import TLSMemoryBIOFactory, TLSMemoryBIOProtocol
from twisted.python.failure import Failure
from twisted.trial import unittest

from tests.transport.test_loopback import portOf
from tests.transport.test_protocol import Peer, Recorder, Transport, ready
from twisted_rserpool.security.context import SecurityContext
from twisted_rserpool.security.tls import PskClientCreator, pskServerCreator
from twisted_rserpool.transport import (
    ConnectionNotReady,
    RSerPoolFactory,
    RSerPoolProtocol,
    SentData,
)
from twisted_rserpool.transport.protocol import gatheredWrites
from twisted_rserpool.wire.tcpmapping import Data

#: More than the loopback socket takes at once (part of it waits in Twisted's buffer),
#: within the mapping's bound on unacknowledged bytes (1 MiB).
BURST = [bytes([n % 251]) * 16_000 for n in range(60)]
KEY = bytes(range(32))
FIRST = b"first"


class Sender(RSerPoolProtocol):
    """Sends BURST once ready, from outside any callback of its own, in one block."""

    instances: ClassVar[list[Sender]] = []

    def __init__(self) -> None:
        super().__init__()
        self.acknowledged: list[SentData] = []
        self.done: Deferred[None] = Deferred()
        self.lost: Deferred[None] = Deferred()
        Sender.instances.append(self)

    def connectionReady(self, securityContext: SecurityContext) -> None:
        # A small send buffer: the socket takes part of the burst, Twisted keeps the rest.
        tcp = self.transport
        if isinstance(tcp, TLSMemoryBIOProtocol):
            tcp = tcp.transport
        tcp.socket.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)  # type: ignore[union-attr]
        reactor.callLater(0, self.burst)

    def burst(self) -> None:
        # Outside the block: over TLS this waits in Twisted's aggregation of small writes,
        # which the block's write must let out first.
        self.sendApplicationData(FIRST, 7)
        with gatheredWrites():
            for data in BURST:
                self.sendApplicationData(data, 7)

    def messagesAcknowledged(self, sent: tuple[SentData, ...]) -> None:
        self.acknowledged += sent
        if len(self.acknowledged) == len(BURST) + 1 and not self.done.called:
            self.done.callback(None)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        super().connectionLost(reason)
        self.lost.callback(None)


class Receiver(RSerPoolProtocol):
    def __init__(self) -> None:
        super().__init__()
        self.received: list[bytes] = []
        self.lost: Deferred[None] = Deferred()

    def applicationDataReceived(self, ppid: int, data: bytes) -> None:
        self.received.append(data)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        super().connectionLost(reason)
        self.lost.callback(None)


class Aborting(Receiver):
    """Resets the connection at the first message."""

    def applicationDataReceived(self, ppid: int, data: bytes) -> None:
        assert self.transport is not None
        self.transport.abortConnection()  # type: ignore[attr-defined]


class BurstTests(unittest.TestCase):
    """A burst larger than the socket buffer, written in one piece at the end of a
    gatheredWrites block, arrives whole and in order, and every message is acknowledged,
    over TCP and over TLS."""

    timeout = 20

    async def burst(self, tls: bool) -> None:
        Sender.instances.clear()
        factory = RSerPoolFactory(Sender)
        server: IStreamServerEndpoint = TCP4ServerEndpoint(  # type: ignore[no-untyped-call]
            reactor, 0, interface="127.0.0.1"
        )
        port = await server.listen(
            TLSMemoryBIOFactory(pskServerCreator({"pe": KEY}), False, factory) if tls else factory
        )
        self.addCleanup(port.stopListening)
        endpoint: IStreamClientEndpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", portOf(port))
        if tls:
            endpoint = wrapClientTLS(PskClientCreator("pe", KEY), endpoint)
        receiver = Receiver()
        await endpoint.connect(RSerPoolFactory(lambda: receiver))
        while not Sender.instances:
            await _turn()
        sender = Sender.instances[0]
        await sender.done
        assert receiver.received == [FIRST, *BURST]
        assert [s.user_data for s in sender.acknowledged] == [FIRST, *BURST]
        assert sender.unacknowledged() == ()
        assert receiver.transport is not None
        receiver.transport.loseConnection()
        await receiver.lost
        await sender.lost

    async def test_tcp(self) -> None:
        await self.burst(tls=False)

    async def test_tls(self) -> None:
        await self.burst(tls=True)

    async def test_peer_gone(self) -> None:
        """A burst into a connection the peer resets raises nothing and logs no error;
        the loss comes through Twisted's write path as usual."""
        Sender.instances.clear()
        server: IStreamServerEndpoint = TCP4ServerEndpoint(  # type: ignore[no-untyped-call]
            reactor, 0, interface="127.0.0.1"
        )
        port = await server.listen(RSerPoolFactory(Aborting))
        self.addCleanup(port.stopListening)
        endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", portOf(port))
        sender = cast(Sender, await endpoint.connect(RSerPoolFactory(Sender)))
        await sender.lost
        assert not sender.done.called
        with gatheredWrites(), pytest.raises(ConnectionNotReady):  # refused after the loss
            sender.sendApplicationData(b"x", 7)


def _turn() -> Deferred[None]:
    d: Deferred[None] = Deferred()
    reactor.callLater(0.01, d.callback, None)
    return d


def two() -> tuple[tuple[Recorder, Transport, Peer], tuple[Recorder, Transport, Peer]]:
    """Two ready connections, what they wrote so far taken away."""
    pairs = []
    for _ in range(2):
        protocol, transport, _, peer = ready()
        transport.clear()
        pairs.append((protocol, transport, peer))
    return pairs[0], pairs[1]


def payloads(peer: Peer, transport: Transport) -> list[bytes]:
    """The user data of the DATA chunks the protocol wrote since the last look."""
    return [chunk.user_data for chunk in peer.read(transport) if isinstance(chunk, Data)]


def test_gathered_writes_wait_for_the_end_of_the_outermost_block() -> None:
    """Messages sent within the block are written once per connection at its end, in
    order; nested blocks do not write early; outside, each send writes at once."""
    (first, transport1, peer1), (second, transport2, peer2) = two()
    with gatheredWrites():
        first.sendApplicationData(b"a", 7)
        second.sendApplicationData(b"b", 7)
        with gatheredWrites():
            first.sendApplicationData(b"c", 7)
        assert transport1.value() == transport2.value() == b""
    assert payloads(peer1, transport1) == [b"a", b"c"]
    assert payloads(peer2, transport2) == [b"b"]
    first.sendApplicationData(b"d", 7)
    assert payloads(peer1, transport1) == [b"d"]


def test_gathered_writes_skip_closed_connections() -> None:
    """A connection lost before the block ends writes nothing; the others still do."""
    (first, transport1, _), (second, transport2, peer2) = two()
    with gatheredWrites():
        first.sendApplicationData(b"a", 7)
        second.sendApplicationData(b"b", 7)
        first.connectionLost(Failure(Exception("gone")))  # type: ignore[no-untyped-call]
    assert transport1.value() == b""
    assert payloads(peer2, transport2) == [b"b"]
