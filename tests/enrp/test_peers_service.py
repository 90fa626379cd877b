"""Several ENRPServer adapters joined in memory (StringTransports, one Clock): replication,
takeover with H keep-alives, refusals, admin status, and the twistd options."""

from __future__ import annotations

import random
from ipaddress import IPv4Address
from typing import Any

import pytest
from twisted.internet.address import IPv4Address as TwistedAddress
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransportWithDisconnection
from twisted.python import usage

from twisted_rserpool._tap.enrp import Options, makeService
from twisted_rserpool.enrp.admin import status
from twisted_rserpool.enrp.peers import HomeKeepAlive, PeerConfig, PeerCore
from twisted_rserpool.enrp.registrar import Registrar, RegistrarConfig
from twisted_rserpool.enrp.service import ENRPPeerFactory, ENRPServer, _HomeKeepAliveFactory
from twisted_rserpool.enrp.takeover import TakeoverRegistrar
from twisted_rserpool.handlespace import Handlespace
from twisted_rserpool.security.authorization import AuthorizationPolicy, Role, policy_granting
from twisted_rserpool.security.context import INSECURE, SecurityContext
from twisted_rserpool.transport.protocol import RSerPoolProtocol
from twisted_rserpool.wire import asap, enrp
from twisted_rserpool.wire.message import Message
from twisted_rserpool.wire.parameters import (
    PoolElementParameter,
    RoundRobinPolicy,
    ServerInformation,
    TcpTransport,
)

POOL = b"echo"


def tls(identity: str) -> SecurityContext:
    return SecurityContext(True, "TLSv1.3", "TLS_AES_128_GCM_SHA256", psk_identity=identity)


class RecordingServer(ENRPServer):
    """Records the H keep-alives instead of connecting to PEs."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.homeKeepAlives: list[HomeKeepAlive] = []

    def sendHomeKeepAlive(self, action: HomeKeepAlive) -> None:
        self.homeKeepAlives.append(action)


class Wire:
    """Moves bytes between pairs of StringTransports until nothing is left to move."""

    def __init__(self) -> None:
        self.pairs: list[
            tuple[StringTransportWithDisconnection, StringTransportWithDisconnection]
        ] = []

    def join(self, a: Any, b: Any, sa: SecurityContext, sb: SecurityContext) -> tuple[Any, Any]:
        ta = StringTransportWithDisconnection(  # type: ignore[no-untyped-call]
            peerAddress=TwistedAddress("TCP", "127.0.0.1", 40000 + len(self.pairs))
        )
        tb = StringTransportWithDisconnection(  # type: ignore[no-untyped-call]
            peerAddress=TwistedAddress("TCP", "127.0.0.1", 50000 + len(self.pairs))
        )
        a.buildSecurityContext = lambda: sa
        b.buildSecurityContext = lambda: sb
        ta.protocol, tb.protocol = a, b
        a.makeConnection(ta)
        b.makeConnection(tb)
        self.pairs.append((ta, tb))
        self.pump()
        return ta, tb

    def pump(self) -> None:
        for _ in range(10_000):
            moved = False
            for ta, tb in list(self.pairs):
                for src, dst in ((ta, tb), (tb, ta)):
                    data = src.value()  # type: ignore[no-untyped-call]
                    if data:
                        src.clear()  # type: ignore[no-untyped-call]
                        if dst.connected:
                            dst.protocol.dataReceived(data)
                        moved = True
                if not ta.connected or not tb.connected:
                    # One side closed: the other sees the connection end.
                    for t in (ta, tb):
                        if t.connected:
                            t.loseConnection()  # type: ignore[no-untyped-call]
                    self.pairs.remove((ta, tb))
                    moved = True
            if not moved:
                return
        raise AssertionError("the wire never went quiet")


def make(server: int, clock: Clock, **peer: Any) -> RecordingServer:
    handlespace = Handlespace(rng=random.Random(server))
    policy = AuthorizationPolicy()
    registrar = Registrar(RegistrarConfig(server), handlespace, policy, rng=random.Random(server))
    core = PeerCore(PeerConfig(server, **peer), handlespace, policy)
    result = RecordingServer(registrar, clock, peering=core)
    result.startService()
    return result


def link(wire: Wire, a: ENRPServer, b: ENRPServer, sa: SecurityContext | None = None) -> Any:
    pa = ENRPPeerFactory(a, outgoing=True).buildProtocol(None)
    pb = ENRPPeerFactory(b, outgoing=False).buildProtocol(None)
    ident_a = sa if sa is not None else tls(f"enrp-{b.serverIdentifier}")
    return wire.join(pa, pb, ident_a, tls(f"enrp-{a.serverIdentifier}"))


class AsapClient:
    """A PE or PU speaking ASAP to one server by hand (authenticated as ``identity``)."""

    def __init__(self, wire: Wire, server: ENRPServer, identity: str | None = "pe") -> None:
        protocol = server.factory.buildProtocol(TwistedAddress("TCP", "127.0.0.1", 41000))
        assert protocol is not None
        self.far = StringTransportWithDisconnection()  # type: ignore[no-untyped-call]
        self.near = _Raw()
        context = tls(identity) if identity is not None else INSECURE
        wire.join(self.near, protocol, INSECURE, context)
        self.wire = wire

    def send(self, message: Message) -> list[Message]:
        self.near.send(message)
        self.wire.pump()
        return self.near.take()


class _Raw(RSerPoolProtocol):
    def __init__(self) -> None:
        super().__init__(Clock())
        self.received: list[Message] = []

    def send(self, message: Message) -> None:
        self.sendAsap(message)  # type: ignore[arg-type]

    def asapMessageReceived(self, message: asap.AsapMessage) -> None:
        self.received.append(message)

    def take(self) -> list[Message]:
        out, self.received = self.received, []
        return out


def registration(pe: int) -> asap.Registration:
    address = IPv4Address("127.0.0.1")
    return asap.Registration(
        POOL,
        PoolElementParameter(
            pe, 0, 60, TcpTransport(7000, address), RoundRobinPolicy(), TcpTransport(7000, address)
        ),
    )


def resolve(wire: Wire, server: ENRPServer) -> set[int]:
    answer = AsapClient(wire, server, "pu").send(asap.HandleResolution(POOL, items=10))
    (response,) = answer
    assert isinstance(response, asap.HandleResolutionResponse)
    return {pe.pe_identifier for pe in response.pool_elements}


def cluster(clock: Clock, wire: Wire, **peer: Any) -> list[RecordingServer]:
    servers = [make(s, clock, **peer) for s in (0x11, 0x22, 0x33)]
    for i, a in enumerate(servers):
        for b in servers[i + 1 :]:
            link(wire, a, b)
    return servers


def advance(clock: Clock, wire: Wire, seconds: float, step: float = 0.1) -> None:
    for _ in range(round(seconds / step)):
        clock.advance(step)
        wire.pump()


def test_registration_at_one_server_resolves_at_every_server() -> None:
    """A PE registered at one server is resolvable at every server; its deregistration
    disappears everywhere."""
    clock, wire = Clock(), Wire()
    a, b, c = cluster(clock, wire)
    pe = AsapClient(wire, a)
    (response,) = pe.send(registration(42))
    assert isinstance(response, asap.RegistrationResponse) and not response.reject
    assert resolve(wire, a) == resolve(wire, b) == resolve(wire, c) == {42}
    pe.send(asap.Deregistration(POOL, 42))
    for server in (b, c):
        assert len(server.registrar.handlespace) == 0


def test_home_death_is_taken_over_and_pe_stays_resolvable() -> None:
    """When the home server dies one survivor takes its PE over (H keep-alive sent) and
    the PE stays resolvable at every survivor."""
    clock, wire = Clock(), Wire()
    a, b, c = cluster(clock, wire, max_time_last_heard=2.0, max_time_no_response=1.0)
    AsapClient(wire, c).send(registration(42))
    # c dies: all its connections drop.
    for ta, tb in list(wire.pairs):
        for t in (ta, tb):
            if t.protocol in c.openPeerConnections or t.protocol in c.openConnections:
                t.loseConnection()  # type: ignore[no-untyped-call]
    c.stopService()  # a dead server runs no more timers
    wire.pump()
    advance(clock, wire, 3.0)
    # RFC 5353 3.5.1 rule 2: the smaller identifier aborts, so the higher one wins.
    assert [k.pe_identifier for k in b.homeKeepAlives] == [42]
    assert a.homeKeepAlives == []
    b.homeKeepAliveAcknowledged(POOL, 42)
    assert resolve(wire, a) == resolve(wire, b) == {42}
    entry = a.registrar.handlespace.get(POOL, 42)
    assert entry is not None and entry.home_server_identifier == 0x22
    advance(clock, wire, 10.0)
    assert resolve(wire, a) == resolve(wire, b) == {42}


def test_unauthenticated_peer_connection_is_refused() -> None:
    """RFC 5355 2.15: a peer without TLS gets ENRP_ERROR and is disconnected."""
    clock, wire = Clock(), Wire()
    a = make(1, clock)
    rogue = _RawEnrp()
    server_side = ENRPPeerFactory(a, outgoing=False).buildProtocol(None)
    wire.join(rogue, server_side, INSECURE, INSECURE)
    errors = [m for m in rogue.received if isinstance(m, enrp.ErrorMessage)]
    assert errors and errors[0].error.code == 0xA
    assert a.peerStatus() == []
    assert not server_side.transport.connected  # type: ignore[union-attr]


class _RawEnrp(RSerPoolProtocol):
    def __init__(self) -> None:
        super().__init__(Clock())
        self.received: list[Message] = []

    def enrpMessageReceived(self, message: enrp.EnrpMessage) -> None:
        self.received.append(message)


def test_asap_on_enrp_connection_is_answered_with_error() -> None:
    """ASAP on a peer connection is answered with ASAP_ERROR (Unrecognized Message)."""
    clock, wire = Clock(), Wire()
    a = make(1, clock)
    client = _Raw()
    server_side = ENRPPeerFactory(a, outgoing=False).buildProtocol(None)
    wire.join(client, server_side, INSECURE, tls("enrp-9"))
    client.send(asap.HandleResolution(POOL))
    wire.pump()
    assert any(isinstance(m, asap.ErrorMessage) for m in client.take())


def test_admin_status_lists_peers() -> None:
    """The admin JSON lists every peer with its state and checksums."""
    clock, wire = Clock(), Wire()
    a, b, _ = cluster(clock, wire)
    AsapClient(wire, b).send(registration(5))
    advance(clock, wire, 3.0)
    peers = {row["server"]: row for row in status(a)["peers"]}
    assert set(peers) == {"0x00000022", "0x00000033"}
    assert peers["0x00000022"]["checksum"] == peers["0x00000022"]["local_checksum"]
    assert peers["0x00000022"]["pool_elements"] == 1


def test_server_without_peering_refuses_enrp_listener() -> None:
    """listenENRP and addPeer need a PeerCore."""
    server = ENRPServer(
        Registrar(RegistrarConfig(1), Handlespace(), AuthorizationPolicy()), Clock()
    )
    with pytest.raises(RuntimeError):
        server.listenENRP(None)  # type: ignore[arg-type]
    assert server.peerStatus() == []


# ---------------------------------------------------------------------- twistd options


def test_options_without_peering_are_unchanged(tmp_path: Any) -> None:
    """With no ENRP options the service has no peering, as before."""
    options = Options()
    options.parseOptions(["--state-dir", str(tmp_path)])  # type: ignore[no-untyped-call]
    assert options["enrp"] == [] and options["peer"] == []
    service = makeService(options, reactor=_FakeReactor())
    assert isinstance(service, ENRPServer) and service.peering is None


def test_options_refuse_plain_peers_on_a_secure_server() -> None:
    """RFC 5355 2.15: --enrp and --peer must be TLS unless --insecure."""
    with pytest.raises(usage.UsageError):
        Options().parseOptions(["--enrp", "tcp:9902"])  # type: ignore[no-untyped-call]
    with pytest.raises(usage.UsageError):
        Options().parseOptions(["--peer", "tcp:host=127.0.0.1:port=9902"])  # type: ignore[no-untyped-call]
    options = Options()
    options.parseOptions(["--insecure", "--enrp", "tcp:9902", "--peer", "tcp:127.0.0.1:9903"])  # type: ignore[no-untyped-call]
    assert options["enrp"] == ["tcp:9902"]


def test_options_timers(tmp_path: Any) -> None:
    """The RFC 5353 thresholds are options and reach the peer core."""
    options = Options()
    options.parseOptions(  # type: ignore[no-untyped-call]
        [
            "--state-dir",
            str(tmp_path),
            "--insecure",
            "--asap",
            "tcp:0:interface=127.0.0.1",
            "--enrp",
            "tcp:0:interface=127.0.0.1",
            "--peer-heartbeat-cycle",
            "0.5",
            "--max-time-last-heard",
            "1.5",
            "--max-time-no-response",
            "0.7",
            "--takeover-expiry",
            "2",
            "--server-id",
            "0x42",
        ]
    )
    service = makeService(options, reactor=_FakeReactor())
    assert isinstance(service, ENRPServer) and service.peering is not None
    config = service.peering.config
    assert (config.peer_heartbeat_cycle, config.max_time_last_heard) == (0.5, 1.5)
    assert (config.max_time_no_response, config.takeover_expiry) == (0.7, 2.0)
    with pytest.raises(usage.UsageError):
        Options().parseOptions(["--max-time-last-heard", "0"])  # type: ignore[no-untyped-call]


def test_peer_given_means_default_tls_enrp_listener(tmp_path: Any) -> None:
    """--peer without --enrp listens with tlspsk on 9902 (127.0.0.1)."""
    options = Options()
    options.parseOptions(  # type: ignore[no-untyped-call]
        [
            "--state-dir",
            str(tmp_path),
            "--peer",
            "tlspsk:host=127.0.0.1:port=9903:identity=enrp:pskFile=x.psk",
        ]
    )
    assert options.enrpListeners(str(tmp_path / "keys.psk"))[0].startswith("tlspsk:9902:")


class _FakeReactor(Clock):
    """Enough of a reactor for makeService (endpoints are parsed, never listened on)."""


def test_malformed_enrp_from_a_peer_is_answered_with_enrp_error() -> None:
    """A peer's ENRP message that does not decode is answered with ENRP_ERROR."""
    clock, wire = Clock(), Wire()
    a = make(1, clock)
    client = _RawEnrp()
    server_side = ENRPPeerFactory(a, outgoing=False).buildProtocol(None)
    wire.join(client, server_side, INSECURE, tls("enrp-9"))
    # An ENRP_HANDLE_UPDATE whose length field promises more than it carries.
    client._send(b"\x04\x00\x00\x40" + b"\x00" * 12, 12)
    wire.pump()
    assert any(isinstance(m, enrp.ErrorMessage) for m in client.received)


def test_peer_hint_connects_once_with_the_endpoint_factory() -> None:
    """A server named in a peer's list response is dialled once (it must authenticate)."""
    clock = Clock()
    server = make(1, clock)
    dialled: list[tuple[str, int]] = []

    class _Endpoint:
        def connect(self, factory: Any) -> Any:

            return Deferred()

    def factory(host: str, port: int) -> Any:
        dialled.append((host, port))
        return _Endpoint()

    server.peerEndpointFactory = factory
    information = ServerInformation(9, TcpTransport(9902, IPv4Address("127.0.0.1")))
    assert server.peering is not None
    # The core names a server once, however many peers list it.
    server.peering.table.hint(information)
    server.peering.table.hint(information)
    server.flush()
    assert dialled == [("127.0.0.1", 9902)]


def test_pe_taken_over_reregisters_over_the_takeover_connection() -> None:
    """The connection to a PE taken over carries the H keep-alive; the PE's acknowledgement
    keeps it and its re-registration over that connection is admitted even by a policy
    that gives the server's identity no pool-element role (only that PE, under a per-PE
    identity)."""
    clock, wire = Clock(), Wire()
    policy = policy_granting(["pe"], [Role.POOL_ELEMENT])
    handlespace = Handlespace(rng=random.Random(1))
    registrar = TakeoverRegistrar(RegistrarConfig(1), handlespace, policy)
    server = ENRPServer(registrar, clock, peering=PeerCore(PeerConfig(1), handlespace, policy))
    server.startService()
    action = HomeKeepAlive(POOL, 42, TcpTransport(7000, IPv4Address("127.0.0.1")), 1)
    near = _HomeKeepAliveFactory(server, action).buildProtocol(None)
    pe = _Raw()
    wire.join(near, pe, tls("enrp"), tls("enrp"))
    (keep_alive,) = pe.take()
    assert isinstance(keep_alive, asap.EndpointKeepAlive) and keep_alive.home
    assert keep_alive.server_identifier == 1 and keep_alive.pe_identifier == 42
    pe.send(asap.EndpointKeepAliveAck(POOL, 42))
    pe.send(registration(42))
    wire.pump()
    # This handlespace never held PE 42 (it expired, say): the acknowledgement is answered
    # with ASAP_DEREGISTRATION_RESPONSE (RFC 5352 2.2.4), and the re-registration admitted.
    told, response = pe.take()
    assert told == asap.DeregistrationResponse(POOL, 42)
    assert isinstance(response, asap.RegistrationResponse) and not response.reject
    entry = handlespace.get(POOL, 42)
    assert entry is not None and entry.identity == "enrp#takeover-0000002a"
    pe.send(registration(43))
    wire.pump()
    (refused,) = pe.take()
    assert isinstance(refused, asap.RegistrationResponse) and refused.reject
