"""GatheringTLSProtocol: writes during a read go out at its end, others on the next turn.

Both ends run real TLS 1.3 PSK in memory (StringTransports pumped by hand); the server's
factory runs on a Clock, so "the next reactor turn" is ``clock.advance(0)``.
"""

from __future__ import annotations

from typing import Any, cast

from twisted.internet.protocol import Factory, Protocol, connectionDone
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.python.failure import Failure

from twisted_rserpool.security.tls import PskClientCreator, pskServerCreator
from twisted_rserpool.transport.admission import AdmittingTLSFactory
from twisted_rserpool.transport.tlsgather import (
    MAX_GATHERED,
    GatheringTLSFactory,
    GatheringTLSProtocol,
)

KEY = bytes(range(32))
#: Twisted's test doubles are untyped; through Any their calls type-check.
Wire: Any = StringTransport
APPLICATION_DATA = 23


class Echo(Protocol):
    """Answers every read with two writes: the data, then ``b"!"``."""

    def dataReceived(self, data: bytes) -> None:
        assert self.transport is not None
        self.transport.write(data)
        self.transport.write(b"!")


class Collector(Protocol):
    """Keeps what it receives and whether it lost its connection."""

    def __init__(self) -> None:
        self.received = b""
        self.lost = False

    def dataReceived(self, data: bytes) -> None:
        self.received += data

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.lost = True


def records(wire: bytes) -> list[int]:
    """The content types of the TLS records in ``wire``."""
    types = []
    while wire:
        assert len(wire) >= 5
        length = int.from_bytes(wire[3:5], "big")
        types.append(wire[0])
        wire = wire[5 + length :]
    return types


class Pair:
    """A TLS PSK client and a gathering server over two StringTransports."""

    def __init__(self, factory: GatheringTLSFactory | None = None) -> None:
        self.clock = Clock()
        self.factory = factory or GatheringTLSFactory(
            pskServerCreator({"pe": KEY}), False, Factory.forProtocol(Echo), self.clock
        )
        server = self.factory.buildProtocol(None)
        assert isinstance(server, GatheringTLSProtocol)
        self.server: Any = cast(Any, server)
        self.serverWire: Any = Wire()
        self.server.makeConnection(self.serverWire)
        self.application = Collector()
        self.clientClock = Clock()
        clientFactory = TLSMemoryBIOFactory(
            PskClientCreator("pe", KEY),
            True,
            Factory.forProtocol(lambda: self.application),
            self.clientClock,
        )
        client = clientFactory.buildProtocol(None)
        assert client is not None
        self.client: Any = cast(Any, client)
        self.clientWire: Any = Wire()
        self.client.makeConnection(self.clientWire)
        self.pump()
        self.clock.advance(0)
        self.pump()

    def pump(self) -> None:
        """Carry bytes both ways until both wires are quiet."""
        self.clientClock.advance(0)
        while self.clientWire.value() or self.serverWire.value():
            toServer, toClient = self.clientWire.value(), self.serverWire.value()
            self.clientWire.clear()
            self.serverWire.clear()
            if toServer:
                self.server.dataReceived(toServer)
            if toClient:
                self.client.dataReceived(toClient)
            self.clientClock.advance(0)


def test_writesDuringReadGoOutAtItsEnd() -> None:
    """Two writes while a read is handled: one TLS record, sent before the read returns."""
    pair = Pair()
    pair.client.write(b"hello")
    pair.clientClock.advance(0)  # the client's Twisted aggregation waits for a turn
    toServer = pair.clientWire.value()
    pair.clientWire.clear()
    pair.server.dataReceived(toServer)
    sent = pair.serverWire.value()
    assert records(sent) == [APPLICATION_DATA]
    assert pair.clock.getDelayedCalls() == []
    pair.pump()
    assert pair.application.received == b"hello!"


def test_writesOutsideReadWaitForTheNextTurn() -> None:
    """Writes from outside a read (a timer) wait for the next turn; all the factory's
    connections that wrote share one timed call, and each sends one record."""
    pair = Pair()
    other = Pair(pair.factory)
    for each in (pair, other):
        assert each.server.wrappedProtocol.transport is not None
        each.server.wrappedProtocol.transport.write(b"keep")
        each.server.wrappedProtocol.transport.write(b"-alive")
        assert each.serverWire.value() == b""
    assert len(pair.clock.getDelayedCalls()) == 1  # other's clock is its own, unused
    assert other.clock.getDelayedCalls() == []
    pair.clock.advance(0)
    for each in (pair, other):
        assert records(each.serverWire.value()) == [APPLICATION_DATA]
        each.pump()
        assert each.application.received == b"keep-alive"


def test_manyBytesGoAtOnce() -> None:
    """Once more than MAX_GATHERED bytes are gathered, they are handed to TLS at once."""
    pair = Pair()
    assert pair.server.wrappedProtocol.transport is not None
    pair.server.wrappedProtocol.transport.write(b"x" * (MAX_GATHERED + 1))
    assert pair.serverWire.value() != b""
    pair.pump()
    pair.clock.advance(0)
    pair.pump()
    assert pair.application.received == b"x" * (MAX_GATHERED + 1)


def test_loseConnectionSendsWhatIsGathered() -> None:
    """Bytes gathered before loseConnection reach the peer before the close."""
    pair = Pair()
    transport = pair.server.wrappedProtocol.transport
    assert transport is not None
    transport.write(b"last words")
    transport.loseConnection()
    transport.write(b"dropped")  # after loseConnection, as TLSMemoryBIOProtocol: dropped
    pair.pump()
    assert pair.application.received == b"last words"


def test_connectionLostForgetsWhatIsGathered() -> None:
    """A connection lost with bytes gathered sends nothing; the turn's flush skips it."""
    pair = Pair()
    transport = pair.server.wrappedProtocol.transport
    assert transport is not None
    transport.write(b"never")
    pair.server.connectionLost(Failure(ConnectionError("gone")))  # type: ignore[no-untyped-call]
    pair.clock.advance(0)
    assert b"never" not in pair.serverWire.value()
    assert pair.clock.getDelayedCalls() == []


def test_writeRefusesText() -> None:
    """Text is refused as Twisted's transports refuse it."""
    pair = Pair()
    transport = pair.server.wrappedProtocol.transport
    assert transport is not None
    try:
        transport.write("text")
    except TypeError:
        pass
    else:
        raise AssertionError("text was accepted")


def test_admittingFactoryGathers() -> None:
    """The ``tlspsk:`` listeners' factory builds gathering connections."""
    clock = Clock()
    factory = AdmittingTLSFactory(
        pskServerCreator({"pe": KEY}), False, Factory.forProtocol(Echo), clock
    )
    assert isinstance(factory.buildProtocol(None), GatheringTLSProtocol)
    assert factory.turnFlusher.clock is clock
