"""Backpressure against floods (RFC 5355 2.1, 2.2, 2.13): RSerPoolProtocol.admitData pauses
reading from the transport and holds DATA chunks undecoded until their time; the ASAP
server asks the registrar's request limits before decoding; nothing is dropped."""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

import pytest
from twisted.internet.address import IPv4Address as TwistedAddress
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransportWithDisconnection
from twisted.logger import capturedLogs

from twisted_rserpool.enrp.registrar import Registrar, RegistrarConfig
from twisted_rserpool.enrp.service import ASAPServerProtocol, ENRPServer
from twisted_rserpool.handlespace import Handlespace
from twisted_rserpool.security.authorization import AuthorizationPolicy
from twisted_rserpool.security.context import SecurityContext
from twisted_rserpool.security.ratelimit import Rate, RequestLimiter
from twisted_rserpool.transport import MappingConfig, RSerPoolProtocol
from twisted_rserpool.transport.events import DataReceived
from twisted_rserpool.wire import asap
from twisted_rserpool.wire.errors import CauseCode
from twisted_rserpool.wire.tcpmapping import (
    ASAP_PPID,
    Ack,
    Chunk,
    ChunkDecoder,
    ChunkEncoder,
    Data,
    Heartbeat,
    HeartbeatAck,
    Init,
)

RESOLUTION = asap.HandleResolution(b"pool")


class Transport(StringTransportWithDisconnection):
    """A StringTransport whose loseConnection reaches the protocol, typed."""

    def __init__(self) -> None:
        super().__init__(peerAddress=TwistedAddress("TCP", "127.0.0.1", 41000))  # type: ignore[no-untyped-call]

    def take(self) -> bytes:
        data: bytes = self.value()  # type: ignore[no-untyped-call]
        self.clear()  # type: ignore[no-untyped-call]
        return data


class Limited(RSerPoolProtocol):
    """Admits DATA through one connection bucket; records what reached the hooks."""

    def __init__(self, clock: Clock, rate: Rate) -> None:
        super().__init__(clock)
        self.limiter: RequestLimiter[int] = RequestLimiter(rate, rate, rate, now=clock.seconds())
        self.asked: list[tuple[int, float]] = []
        self.messages: list[asap.AsapMessage] = []

    def admitData(self, event: DataReceived, now: float) -> float:
        self.asked.append((event.tsn, now))
        return self.limiter.admit(0, "peer", now)

    def asapMessageReceived(self, message: asap.AsapMessage) -> None:
        self.messages.append(message)


class Peer:
    """The far end, speaking the TCP mapping by hand."""

    def __init__(self, protocol: RSerPoolProtocol, transport: Transport) -> None:
        self.protocol = protocol
        self.transport = transport
        self.encoder = ChunkEncoder()
        self.decoder = ChunkDecoder()
        transport.protocol = protocol
        protocol.makeConnection(transport)  # type: ignore[no-untyped-call]
        assert self.read() == [Init()]
        protocol.dataReceived(self.encoder.send_init())

    def send(self, *messages: asap.AsapMessage) -> None:
        """All of ``messages`` in one read, as one TCP segment would bring them."""
        data = b"".join(self.encoder.send_data(m.encode(), ppid=ASAP_PPID) for m in messages)
        self.protocol.dataReceived(data)

    def read(self) -> list[Chunk]:
        data = self.transport.take()
        if data:
            self.decoder.receive_data(data)
        chunks: list[Chunk] = []
        while (chunk := self.decoder.next_chunk()) is not None:
            chunks.append(chunk)
        return chunks


def acks(chunks: list[Chunk]) -> int:
    return sum(isinstance(chunk, Ack) for chunk in chunks)


@pytest.fixture
def decodes(monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    """Every ASAP message the protocol decodes."""
    seen: list[bytes] = []
    original: Callable[..., Any] = asap.decode

    def counting(data: bytes, *args: Any, **kwargs: Any) -> Any:
        seen.append(data)
        return original(data, *args, **kwargs)

    monkeypatch.setattr(asap, "decode", counting)
    return seen


def limited(rate: Rate, config: MappingConfig | None = None) -> tuple[Limited, Peer, Clock]:
    clock = Clock()
    clock.advance(100.0)
    protocol = Limited(clock, rate)
    if config is not None:
        protocol.mappingConfig = config
    peer = Peer(protocol, Transport())
    return protocol, peer, clock


def test_over_rate_chunks_pause_reading_and_wait_undecoded(decodes: list[bytes]) -> None:
    """Beyond the burst, reading pauses; the held chunks are neither decoded nor
    acknowledged until their token is due, then delivered one by one; reading resumes
    when none is left."""
    protocol, peer, clock = limited(Rate(10.0, 2.0))
    transport = peer.transport
    peer.send(*[RESOLUTION] * 5)
    assert len(protocol.messages) == 2 and len(decodes) == 2
    assert acks(peer.read()) == 2
    assert transport.producerState == "paused"
    assert protocol.readingPauses == 1
    # Asked once per chunk: the third reserved its token (due at +0.1 s), the rest wait
    # behind it without being asked.
    assert [tsn for tsn, _ in protocol.asked] == [0, 1, 2]
    clock.advance(0.099)
    assert len(decodes) == 2 and acks(peer.read()) == 0
    clock.advance(0.001)
    assert len(protocol.messages) == 3 and acks(peer.read()) == 1
    assert transport.producerState == "paused"
    clock.advance(0.1)
    assert len(protocol.messages) == 4
    assert transport.producerState == "paused"
    clock.advance(0.1)
    assert len(protocol.messages) == 5 and len(decodes) == 5
    assert acks(peer.read()) == 2
    assert transport.producerState == "producing"
    assert [when - 100.0 for _, when in protocol.asked] == pytest.approx([0.0, 0.0, 0.0, 0.1, 0.2])
    assert protocol.readingPauses == 1


def test_chunks_read_while_paused_wait_in_order(decodes: list[bytes]) -> None:
    """What a read brings after the pause (the rest of a TLS record, say) queues behind
    the waiting chunks, in order."""
    protocol, peer, clock = limited(Rate(10.0, 1.0))
    first = [asap.HandleResolution(f"p{i}".encode()) for i in range(3)]
    later = [asap.HandleResolution(f"q{i}".encode()) for i in range(2)]
    peer.send(*first)
    peer.send(*later)
    assert protocol.messages == first[:1]
    clock.advance(10.0)
    # Each due in turn: one delivery per token, in arrival order.
    clock.pump([0.1] * 4)
    assert protocol.messages == first + later
    assert peer.transport.producerState == "producing"


def test_a_large_read_stays_raw_behind_a_waiting_chunk(decodes: list[bytes]) -> None:
    """A read of 40 KiB (one TCP read brings up to 64 KiB): once a chunk must wait, the
    rest of the read is not even split into chunks; it is taken a slice at a time as the
    waiting ones are delivered."""
    protocol, peer, clock = limited(Rate(1000.0, 1.0))
    sizing = ChunkEncoder()
    sizing.send_init()
    size = len(sizing.send_data(RESOLUTION.encode(), ppid=ASAP_PPID))
    count = 40 * 1024 // size
    peer.send(*[RESOLUTION] * count)
    assert protocol.mapping is not None
    assert len(protocol.messages) == 1
    # Chunks out of the first 4 KiB slice wait decoded; the other 36 KiB are bytes.
    assert protocol.mapping.undelivered <= 4096 // size < count // 9
    assert len(decodes) == 1
    clock.pump([0.001] * (count + 10))
    assert len(protocol.messages) == count
    assert peer.transport.producerState == "producing"


def test_within_the_rate_nothing_pauses(decodes: list[bytes]) -> None:
    """A client within its rate is delivered at once and never paused."""
    protocol, peer, clock = limited(Rate(10.0, 5.0))
    for _ in range(20):
        peer.send(RESOLUTION)
        clock.advance(0.1)
    assert len(protocol.messages) == 20
    assert protocol.readingPauses == 0
    assert peer.transport.producerState == "producing"
    assert clock.getDelayedCalls() and all(
        call.getTime() > clock.seconds() + 1 for call in clock.getDelayedCalls()
    )  # only the heartbeat timer


def test_paused_peer_is_not_declared_dead() -> None:
    """While we do not read, our HEARTBEATs still go out but no timeout closes the
    connection; after resuming, the peer has its full timeout again, and silence then
    does close it."""
    config = MappingConfig(heartbeat_interval=1.0, heartbeat_timeout=1.0)
    protocol, peer, clock = limited(Rate(0.1, 1.0), config)
    peer.send(RESOLUTION, RESOLUTION)  # the second waits 10 s
    assert peer.transport.producerState == "paused"
    peer.read()
    clock.pump([0.5] * 10)  # 5 s
    heartbeats = [c for c in peer.read() if isinstance(c, Heartbeat)]
    assert len(heartbeats) == 1
    assert not peer.transport.disconnecting and protocol.ready
    clock.pump([0.5] * 10)  # 10 s in all: the second request is due
    assert len(protocol.messages) == 2
    assert peer.transport.producerState == "producing"
    assert not peer.transport.disconnecting
    # The answer to our HEARTBEAT was in the socket all along: reading it now counts.
    protocol.dataReceived(HeartbeatAck(heartbeats[0].info).encode())
    clock.advance(0.9)
    assert protocol.ready
    # Silence now is the peer's: a HEARTBEAT after the interval, then the timeout.
    clock.pump([0.5] * 6)
    assert not protocol.ready


def test_overflow_while_paused_closes_with_a_logged_reason() -> None:
    """What may wait is bounded: past max_undelivered_bytes the connection is closed
    for Lack of Resources, and the log says why (never silence)."""
    config = MappingConfig(max_undelivered_bytes=256)
    protocol, peer, _ = limited(Rate(1.0, 1.0), config)
    with capturedLogs() as events:
        for _ in range(20):
            peer.send(RESOLUTION)
    assert not protocol.ready
    closing = [e for e in events if e.get("code") == CauseCode.LACK_OF_RESOURCES]
    assert closing and "TCP mapping failed" in closing[0]["log_format"]
    assert "wait for their rate" in closing[0]["cause"]


def test_a_raising_admit_hook_is_logged_and_delivers() -> None:
    """A bug in the hook does not stall the connection."""

    class Broken(Limited):
        def admitData(self, event: DataReceived, now: float) -> float:
            raise RuntimeError("bug")

    clock = Clock()
    protocol = Broken(clock, Rate(1.0, 1.0))
    with capturedLogs() as events:
        peer = Peer(protocol, Transport())
        peer.send(RESOLUTION, RESOLUTION)
    assert len(protocol.messages) == 2
    assert any(e.get("cause") == "exception in hook" for e in events)


# ------------------------------------------------------------------ the ASAP server


def asapServer(clock: Clock, **config: Any) -> ENRPServer:
    registrar = Registrar(
        RegistrarConfig(0x0E0E0E0E, **config),
        Handlespace(rng=random.Random(1)),
        AuthorizationPolicy(),
        rng=random.Random(2),
    )
    server = ENRPServer(registrar, clock)
    server.startService()
    return server


def serverPeer(server: ENRPServer) -> tuple[ASAPServerProtocol, Peer]:
    transport = Transport()
    protocol = server.factory.buildProtocol(transport.getPeer())  # type: ignore[no-untyped-call]
    assert protocol is not None
    return protocol, Peer(protocol, transport)


def answers(peer: Peer) -> list[asap.AsapMessage]:
    return [
        asap.decode(c.user_data)
        for c in peer.read()
        if isinstance(c, Data) and c.effective_ppid == ASAP_PPID
    ]


def test_asap_server_answers_every_request_of_a_flood_at_its_rate() -> None:
    """The registrar's request rate is asked before decoding: a flood of handle
    resolutions is paused and then answered at the rate, every one of them."""
    clock = Clock()
    clock.advance(1000.0)
    server = asapServer(clock, request_rate=Rate(10.0, 2.0))
    protocol, peer = serverPeer(server)
    peer.send(*[RESOLUTION] * 6)
    first = answers(peer)
    assert len(first) == 2
    assert all(isinstance(m, asap.HandleResolutionResponse) for m in first)
    assert peer.transport.producerState == "paused"
    clock.pump([0.1] * 4)
    rest = answers(peer)
    assert len(rest) == 4
    assert all(isinstance(m, asap.HandleResolutionResponse) for m in rest)
    assert peer.transport.producerState == "producing"
    assert protocol.readingPauses == 1
    counters = server.registrar.counters
    assert counters["requests_delayed"] == 4
    assert counters["rate_limited_connections"] == 1
    assert "rate_limited_requests" not in counters  # nothing dropped


def test_anonymous_connections_of_an_asap_server_share_one_rate() -> None:
    """A second unauthenticated connection gains nothing: the two share one rate (a
    burst, less the headroom of 1 kept for connections under their share, then 10/s)."""
    clock = Clock()
    clock.advance(1000.0)
    server = asapServer(
        clock, secure=False, request_rate=Rate(100.0, 100.0), anonymous_rate=Rate(10.0, 3.0)
    )
    (_, one), (_, two) = serverPeer(server), serverPeer(server)
    one.send(*[RESOLUTION] * 3)
    two.send(*[RESOLUTION] * 3)
    assert (len(answers(one)), len(answers(two))) == (2, 0)
    assert one.transport.producerState == two.transport.producerState == "paused"
    clock.advance(0.1)
    assert (len(answers(one)), len(answers(two))) == (1, 1)
    clock.pump([0.1] * 3)
    assert (len(answers(one)), len(answers(two))) == (0, 2)


def test_an_authenticated_connection_is_not_slowed_by_an_anonymous_flood() -> None:
    """Each identity has its own budget; the flood of anonymous peers does not use it."""

    class Authenticated(ASAPServerProtocol):
        def buildSecurityContext(self) -> SecurityContext:
            return SecurityContext(True, "TLSv1.3", "TLS_AES_128_GCM_SHA256", psk_identity="pu")

    clock = Clock()
    clock.advance(1000.0)
    server = asapServer(clock, request_rate=Rate(100.0, 100.0), anonymous_rate=Rate(1.0, 1.0))
    _, flood = serverPeer(server)
    flood.send(*[RESOLUTION] * 50)
    server.factory.protocol = Authenticated
    _, user = serverPeer(server)
    user.send(*[RESOLUTION] * 10)
    assert len(answers(user)) == 10
    assert len(answers(flood)) == 1
    assert flood.transport.producerState == "paused"


def test_init_and_a_large_first_read_keep_their_order() -> None:
    """A peer that sends its INIT and many messages in its first read (plain TCP) has
    them delivered in order, across the slices the read is decoded in."""
    clock = Clock()
    protocol = Limited(clock, Rate(1e6, 1e6))
    transport = Transport()
    transport.protocol = protocol
    protocol.makeConnection(transport)  # type: ignore[no-untyped-call]
    encoder = ChunkEncoder()
    sent = [asap.HandleResolution(f"pool-{i}".encode()) for i in range(1000)]
    data = encoder.send_init() + b"".join(
        encoder.send_data(m.encode(), ppid=ASAP_PPID) for m in sent
    )
    assert len(data) > 4 * 4096
    protocol.dataReceived(data)
    assert protocol.messages == sent
