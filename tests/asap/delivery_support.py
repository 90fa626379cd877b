"""An in-memory network on a ``Clock`` for the delivery tests: real pool elements, a real pool
user and a small ENRP server written from RFC 5352, connected by pipes the test controls
(hold one direction, freeze a link silently, reset it)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.error import ConnectionDone, ConnectionLost, ConnectionRefusedError
from twisted.internet.interfaces import (
    IProtocol,
    IProtocolFactory,
    IStreamClientEndpoint,
    ITransport,
)
from twisted.internet.protocol import Factory, Protocol, connectionDone
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from zope.interface import implementer

from twisted_rserpool.asap import (
    AsapTimers,
    FailoverEvent,
    IFailoverObserver,
    PoolElement,
    PoolUser,
    ReceivedMessage,
)
from twisted_rserpool.transport.protocol import RSerPoolFactory, RSerPoolProtocol
from twisted_rserpool.wire import asap
from twisted_rserpool.wire.errors import CauseCode
from twisted_rserpool.wire.parameters import (
    ErrorCause,
    OperationError,
    PoolElementParameter,
    TcpTransport,
)

POOL = b"work"
HOST = "127.0.0.1"
#: Every selection refreshes the cache (a stale entry is used while the answer comes).
TIMERS = AsapTimers(stale_cache_value=0.0)


@implementer(ITransport)
class End:
    """One side of an in-memory connection (an ``ITransport`` for the protocols)."""

    disconnecting = False

    def __init__(self, link: Link, protocol: IProtocol, host: int, peer: int) -> None:
        self.link = link
        self.protocol = protocol
        self.host = IPv4Address("TCP", HOST, host)
        self.peer = IPv4Address("TCP", HOST, peer)
        self.outgoing = bytearray()

    def write(self, data: bytes) -> None:
        if not self.disconnecting and not self.link.closed:
            self.outgoing += data

    def writeSequence(self, data: Iterable[bytes]) -> None:
        self.write(b"".join(data))

    def loseConnection(self) -> None:
        if not self.link.closed:
            self.disconnecting = True
            self.link.closing = True

    def abortConnection(self) -> None:
        self.link.reset()

    def getPeer(self) -> IPv4Address:
        return self.peer

    def getHost(self) -> IPv4Address:
        return self.host


class Link:
    """An in-memory TCP connection between a client and a server protocol."""

    def __init__(self, network: MemoryNetwork, client: IProtocol, server: IProtocol, port: int):
        self.network = network
        local = network.nextPort()
        self.client = End(self, client, local, port)
        self.server = End(self, server, port, local)
        self.closed = False
        self.closing = False
        #: While true, nothing moves in either direction and no FIN comes (a silent peer).
        self.frozen = False
        #: While true, what the server writes stays in its buffer (lost if the link resets).
        self.holdServer = False

    def pump(self) -> bool:
        """Move buffered bytes (and a pending graceful close); whether anything moved."""
        if self.closed or self.frozen:
            return False
        moved = False
        for source, sink, held in (
            (self.client, self.server, False),
            (self.server, self.client, self.holdServer),
        ):
            if source.outgoing and not held:
                data, source.outgoing = bytes(source.outgoing), bytearray()
                sink.protocol.dataReceived(data)
                moved = True
        if not moved and self.closing and not self.client.outgoing and not self.server.outgoing:
            self._close(Failure(ConnectionDone("closed")))  # type: ignore[no-untyped-call]
            moved = True
        return moved

    def reset(self) -> None:
        """The connection breaks: buffers are lost, both sides see it closed."""
        self._close(Failure(ConnectionLost("reset")))  # type: ignore[no-untyped-call]

    def _close(self, reason: Failure) -> None:
        if self.closed:
            return
        self.closed = True
        self.client.outgoing.clear()
        self.server.outgoing.clear()
        self.client.protocol.connectionLost(reason)
        self.server.protocol.connectionLost(reason)


class Listening:
    """A fake listening port."""

    def __init__(self, network: MemoryNetwork, port: int) -> None:
        self.network = network
        self.port = port

    def getHost(self) -> IPv4Address:
        return IPv4Address("TCP", HOST, self.port)

    def stopListening(self) -> None:
        self.network.listeners.pop(self.port, None)


class ServerEndpoint:
    """Listens on a new port of the network."""

    def __init__(self, network: MemoryNetwork) -> None:
        self.network = network

    def listen(self, factory: IProtocolFactory) -> Deferred[Listening]:
        port = self.network.nextPort()
        self.network.listeners[port] = factory
        return succeed(Listening(self.network, port))


@implementer(IStreamClientEndpoint)
class ClientEndpoint:
    """Connects to a port of the network (refused when nobody listens)."""

    def __init__(self, network: MemoryNetwork, port: int) -> None:
        self.network = network
        self.port = port

    def connect(self, factory: IProtocolFactory) -> Deferred[Any]:
        server = self.network.listeners.get(self.port)
        if server is None:
            return fail(ConnectionRefusedError(HOST, self.port))  # type: ignore[no-untyped-call]
        address = IPv4Address("TCP", HOST, self.port)
        clientProtocol = factory.buildProtocol(address)
        serverProtocol = server.buildProtocol(address)
        assert clientProtocol is not None and serverProtocol is not None
        link = Link(self.network, clientProtocol, serverProtocol, self.port)
        self.network.links.append(link)
        serverProtocol.makeConnection(link.server)
        clientProtocol.makeConnection(link.client)
        return succeed(clientProtocol)


class MemoryNetwork:
    """Every in-memory connection of one test, driven by ``clock``."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.listeners: dict[int, IProtocolFactory] = {}
        self.links: list[Link] = []
        self._port = 20000

    def nextPort(self) -> int:
        self._port += 1
        return self._port

    def run(self) -> None:
        """Deliver everything that can move now (and the calls due now)."""
        for _ in range(10_000):
            self.clock.advance(0)
            moved = False
            for link in list(self.links):
                moved = link.pump() or moved
            if not moved and not any(
                c.getTime() <= self.clock.seconds() for c in self.clock.getDelayedCalls()
            ):
                return
        raise AssertionError("the network never went quiet")

    def advance(self, seconds: float, step: float = 0.05) -> None:
        """Let ``seconds`` pass in steps, delivering as it goes."""
        self.run()
        end = self.clock.seconds() + seconds
        while self.clock.seconds() < end - 1e-9:
            self.clock.advance(min(step, end - self.clock.seconds()))
            self.run()

    def linksTo(self, port: int) -> list[Link]:
        """The open links to ``port``."""
        return [link for link in self.links if not link.closed and link.server.host.port == port]


# ---------------------------------------------------------------------- ENRP server


@dataclass
class Registry:
    """What the fake ENRP server knows: the pools, and who reported whom unreachable."""

    pools: dict[bytes, dict[int, PoolElementParameter]] = field(default_factory=dict)
    unreachable: list[int] = field(default_factory=list)


class EnrpServer(RSerPoolProtocol):
    """The ASAP side of an ENRP server, as RFC 5352 sections 3.1-3.5 describe it."""

    def __init__(self, registry: Registry) -> None:
        super().__init__()
        self.registry = registry

    def asapMessageReceived(self, message: asap.AsapMessage) -> None:
        registry = self.registry
        if isinstance(message, asap.Registration):
            element = message.pool_element
            registry.pools.setdefault(message.pool_handle, {})[element.pe_identifier] = element
            self.sendAsap(asap.RegistrationResponse(message.pool_handle, element.pe_identifier))
        elif isinstance(message, asap.Deregistration):
            registry.pools.get(message.pool_handle, {}).pop(message.pe_identifier, None)
            self.sendAsap(asap.DeregistrationResponse(message.pool_handle, message.pe_identifier))
        elif isinstance(message, asap.HandleResolution):
            elements = tuple(registry.pools.get(message.pool_handle, {}).values())
            if elements:
                self.sendAsap(asap.HandleResolutionResponse(message.pool_handle, elements))
            else:
                error = OperationError(
                    (ErrorCause(CauseCode.UNKNOWN_POOL_HANDLE, message.pool_handle),)
                )
                self.sendAsap(asap.HandleResolutionResponse(message.pool_handle, error=error))
        elif isinstance(message, asap.EndpointUnreachable):
            registry.unreachable.append(message.pe_identifier)
            registry.pools.get(message.pool_handle, {}).pop(message.pe_identifier, None)


# ---------------------------------------------------------------------- applications


class Worker(Protocol):
    """A pool element's application: records each message with its marks and answers it."""

    def __init__(self) -> None:
        self.messages: list[ReceivedMessage] = []
        self.cookies: list[bytes] = []
        self.cards: list[asap.BusinessCard] = []
        self.answer = True

    def messageReceived(self, message: ReceivedMessage) -> None:
        self.messages.append(message)
        if self.answer:
            assert self.transport is not None
            self.transport.write(b"done " + message.data)

    def cookieEchoReceived(self, cookie: bytes) -> None:
        self.cookies.append(cookie)

    def businessCardReceived(self, card: asap.BusinessCard) -> None:
        self.cards.append(card)

    @property
    def received(self) -> list[bytes]:
        return [m.data for m in self.messages]


class Client(Protocol):
    """A pool user's application: records answers, returned messages and the end."""

    def __init__(self) -> None:
        self.received: list[ReceivedMessage] = []
        self.returned: list[Any] = []
        self.reason: Failure | None = None

    def messageReceived(self, message: ReceivedMessage) -> None:
        self.received.append(message)

    def deliveryFailed(self, error: Any) -> None:
        self.returned.append(error)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.reason = reason

    @property
    def answers(self) -> list[bytes]:
        return [m.data for m in self.received]


@implementer(IFailoverObserver)
class Observer:
    """Records failovers; answers ``answer`` (or a Deferred the test fires)."""

    def __init__(self, answer: Any = True) -> None:
        self.events: list[FailoverEvent] = []
        self.answer = answer

    def failoverOccurred(self, event: FailoverEvent) -> Any:
        self.events.append(event)
        return self.answer


class Lab:
    """A fake ENRP server, pool elements and pool users on one clock and network."""

    def __init__(self) -> None:
        self.clock = Clock()
        self.network = MemoryNetwork(self.clock)
        self.registry = Registry()
        registry = self.registry
        self.enrpPort = self.network.nextPort()
        self.network.listeners[self.enrpPort] = RSerPoolFactory(
            lambda: EnrpServer(registry), self.clock
        )
        self.elements: list[PoolElement] = []
        self.workers: dict[int, list[Worker]] = {}

    def enrp(self) -> ClientEndpoint:
        return ClientEndpoint(self.network, self.enrpPort)

    def pe(self, peIdentifier: int, pool: bytes = POOL, **options: Any) -> PoolElement:
        """A registered pool element whose applications are :class:`Worker` instances."""
        workers = self.workers.setdefault(peIdentifier, [])

        def build() -> Worker:
            worker = Worker()
            workers.append(worker)
            return worker

        element = PoolElement(
            pool,
            Factory.forProtocol(build),
            [self.enrp()],
            ServerEndpoint(self.network),  # type: ignore[arg-type]
            peIdentifier=peIdentifier,
            clock=self.clock,
            timers=TIMERS,
            requireAuthenticatedServer=False,
            advertise=HOST,
            **options,
        )
        element.startService()
        self.network.advance(0.5)
        assert element.registered, "the pool element did not register"
        self.elements.append(element)
        return element

    def pu(self, **options: Any) -> PoolUser:
        """A started pool user reaching the PEs through the network."""
        network = self.network

        def endpoint(element: PoolElementParameter) -> IStreamClientEndpoint:
            transport = element.user_transport
            assert isinstance(transport, TcpTransport)
            return ClientEndpoint(network, transport.port)

        user = PoolUser(
            [self.enrp()],
            peEndpoint=endpoint,
            clock=self.clock,
            timers=TIMERS,
            requireAuthenticatedServer=False,
            **options,
        )
        user.startService()
        self.network.run()
        return user

    def worker(self, peIdentifier: int) -> Worker:
        """The (only) application of a PE."""
        [worker] = self.workers[peIdentifier]
        return worker

    def portOf(self, element: PoolElement) -> int:
        assert isinstance(element.port, Listening)
        return element.port.port

    def kill(self, element: PoolElement) -> None:
        """The PE's host resets every connection and nobody listens on its port."""
        port = self.portOf(element)
        self.network.listeners.pop(port, None)
        for link in self.network.linksTo(port):
            link.reset()
        self.network.run()

    def silence(self, element: PoolElement) -> None:
        """The PE stops (SIGSTOP): its connections stay open and carry nothing."""
        port = self.portOf(element)
        for link in self.network.linksTo(port):
            link.frozen = True

    def hold(self, element: PoolElement) -> None:
        """What the PE writes (answers, ACKs) stays with it, as if it never left."""
        for link in self.network.linksTo(self.portOf(element)):
            link.holdServer = True

    def connect(self, user: PoolUser, destination: Any, **options: Any) -> Client:
        """A session's application, connected."""
        result: list[Any] = []
        user.connect(destination, Factory.forProtocol(Client), **options).addBoth(result.append)
        self.network.run()
        [client] = result
        if isinstance(client, Failure):
            client.raiseException()
        assert isinstance(client, Client)
        return client


def fired(deferred: Deferred[Any]) -> Any:
    """The result of a Deferred that has fired (a Failure raises)."""
    result: list[Any] = []
    deferred.addBoth(result.append)
    assert result, "the Deferred has not fired"
    if isinstance(result[0], Failure):
        result[0].raiseException()
    return result[0]
