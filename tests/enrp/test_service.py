"""The ENRP server's Twisted adapter: protocol, factory, timers and admin, without sockets."""

from __future__ import annotations

import json
import random
from ipaddress import IPv4Address

from twisted.internet.address import IPv4Address as TwistedAddress
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransportWithDisconnection

from twisted_rserpool.enrp.admin import status
from twisted_rserpool.enrp.registrar import Registrar, RegistrarConfig
from twisted_rserpool.enrp.service import ASAPServerProtocol, ENRPServer
from twisted_rserpool.handlespace import Handlespace
from twisted_rserpool.security.authorization import AuthorizationPolicy
from twisted_rserpool.wire import asap
from twisted_rserpool.wire.message import Message
from twisted_rserpool.wire.parameters import (
    PoolElementParameter,
    RoundRobinPolicy,
    TcpTransport,
)
from twisted_rserpool.wire.tcpmapping import ASAP_PPID, ChunkDecoder, ChunkEncoder, Data

SERVER = 0x0E0E0E0E


class Client:
    """The far end of one in-memory connection: speaks the TCP mapping by hand."""

    def __init__(self, server: ENRPServer, port: int = 41000) -> None:
        self.transport = StringTransportWithDisconnection(  # type: ignore[no-untyped-call]
            peerAddress=TwistedAddress("TCP", "127.0.0.1", port)
        )
        protocol = server.factory.buildProtocol(self.transport.getPeer())  # type: ignore[no-untyped-call]
        assert protocol is not None
        self.protocol: ASAPServerProtocol = protocol
        self.transport.protocol = protocol
        protocol.makeConnection(self.transport)  # type: ignore[no-untyped-call]
        self.encoder = ChunkEncoder()
        self.decoder = ChunkDecoder()
        protocol.dataReceived(self.encoder.send_init())

    def send(self, message: Message) -> None:
        self.protocol.dataReceived(self.encoder.send_data(message.encode(), ppid=ASAP_PPID))

    def received(self) -> list[Message]:
        self.decoder.receive_data(self.transport.value())  # type: ignore[no-untyped-call]
        self.transport.clear()  # type: ignore[no-untyped-call]
        messages: list[Message] = []
        while (chunk := self.decoder.next_chunk()) is not None:
            if isinstance(chunk, Data) and chunk.effective_ppid == ASAP_PPID:
                messages.append(asap.decode(chunk.user_data))
        return messages


def make_server(clock: Clock, **config: object) -> ENRPServer:
    registrar = Registrar(
        RegistrarConfig(SERVER, **config),  # type: ignore[arg-type]
        Handlespace(rng=random.Random(1)),
        AuthorizationPolicy(),
        rng=random.Random(2),
    )
    server = ENRPServer(registrar, clock)
    server.startService()
    return server


def registration(pe: int = 7) -> asap.Registration:
    return asap.Registration(
        b"echo",
        PoolElementParameter(
            pe, 0, 30, TcpTransport(7000, IPv4Address("127.0.0.1")), RoundRobinPolicy()
        ),
    )


def test_plain_connection_cannot_register_on_a_secure_server() -> None:
    """Over a connection without TLS the secure server refuses the registration."""
    clock = Clock()
    server = make_server(clock)
    client = Client(server)
    client.send(registration())
    [response] = client.received()
    assert isinstance(response, asap.RegistrationResponse) and response.reject
    assert len(server.registrar.handlespace) == 0


def test_insecure_server_registers_and_keeps_alive() -> None:
    """Registration, then the timer sends keep-alives and removes a silent PE."""
    clock = Clock()
    server = make_server(clock, secure=False, keep_alive_interval=4.0, keep_alive_timeout=2.0)
    client = Client(server)
    client.send(registration())
    assert client.received() == [asap.RegistrationResponse(b"echo", 7)]
    entry = server.registrar.handlespace.get(b"echo", 7)
    assert entry is not None
    assert entry.element.asap_transport == TcpTransport(41000, IPv4Address("127.0.0.1"))
    clock.advance(6.0)
    assert client.received() == [asap.EndpointKeepAlive(SERVER, b"echo", pe_identifier=7)]
    client.send(asap.EndpointKeepAliveAck(b"echo", 7))
    clock.advance(2.5)
    assert server.registrar.handlespace.get(b"echo", 7) is not None
    clock.advance(6.0)  # the next keep-alive goes unanswered
    clock.advance(2.5)
    assert server.registrar.handlespace.get(b"echo", 7) is None


def test_connection_lost_removes_pe() -> None:
    """Closing the PE's connection removes its PE."""
    clock = Clock()
    server = make_server(clock, secure=False)
    client = Client(server)
    client.send(registration())
    client.transport.loseConnection()  # type: ignore[no-untyped-call]
    assert len(server.registrar.handlespace) == 0
    assert server.openConnections == set()


def test_connection_cap() -> None:
    """Beyond maxConnections the factory builds no protocol and counts the refusal."""
    clock = Clock()
    server = make_server(clock, secure=False)
    server.connectionCap.limit = 2
    Client(server, 1)
    Client(server, 2)
    assert server.factory.buildProtocol(None) is None
    assert server.registrar.counters["connections_refused_cap"] == 1


def test_admin_status_lists_pools_and_counters() -> None:
    """The admin document shows the PE with its identity, owners and counters, as JSON."""
    clock = Clock()
    server = make_server(clock, secure=False)
    client = Client(server)
    client.send(registration())
    document = status(server)
    json.dumps(document)
    [pool] = document["pools"]
    assert pool["pool_handle"] == "echo"
    assert pool["pool_elements"][0]["pe_identifier"] == "0x00000007"
    assert document["owners"][f"0x{SERVER:08x}"]["pool_elements"] == 1
    assert document["counters"]["registrations"] == 1
    assert document["secure"] is False


def test_stop_service_closes_connections() -> None:
    """Stopping the server closes every connection and its timer."""
    clock = Clock()
    server = make_server(clock, secure=False)
    client = Client(server)
    client.send(registration())
    server.stopService()
    assert not client.transport.connected
    assert clock.getDelayedCalls() == [] or all(not c.active() for c in clock.getDelayedCalls())


def test_admin_summary_leaves_out_the_pool_elements() -> None:
    """/summary gives sizes and counters without listing PEs."""
    from twisted.web.test.requesthelper import DummyRequest

    from twisted_rserpool.enrp.admin import StatusResource

    clock = Clock()
    server = make_server(clock, secure=False)
    client = Client(server)
    client.send(registration())
    request = DummyRequest([b"summary"])
    document = json.loads(StatusResource(server).render_GET(request))  # type: ignore[arg-type]
    assert document["pool_element_count"] == 1
    assert document["pool_count"] == 1
    assert "pools" not in document
    request = DummyRequest([b""])
    assert len(json.loads(StatusResource(server).render_GET(request))["pools"]) == 1  # type: ignore[arg-type]
