"""Heartbeats of many connections run on the clock's one shared timer (no DelayedCall each)."""

from __future__ import annotations

import random

from twisted.internet.task import Clock

from twisted_rserpool.transport.connection import MappingConfig
from twisted_rserpool.transport.protocol import RSerPoolProtocol
from twisted_rserpool.wire.tcpmapping import ChunkDecoder, ChunkEncoder, Heartbeat

from .test_protocol import Transport, attach

HB = MappingConfig(heartbeat_interval=30, heartbeat_timeout=10)


def heartbeats(transport: Transport) -> int:
    """HEARTBEATs the protocol wrote since the last call."""
    decoder = ChunkDecoder()
    # What the protocol wrote after its INIT (already cleared), behind an INIT of its own.
    decoder.receive_data(ChunkEncoder().send_init() + transport.value())
    transport.clear()
    decoder.next_chunk()
    found = 0
    while (chunk := decoder.next_chunk()) is not None:
        found += isinstance(chunk, Heartbeat)
    return found


def connections(clock: Clock, count: int) -> list[tuple[RSerPoolProtocol, Transport]]:
    """``count`` ready connections on ``clock``, opened a second apart at random."""
    rng = random.Random(3)
    opened = []
    for _ in range(count):
        clock.advance(rng.uniform(0, 0.01))
        protocol = RSerPoolProtocol(clock)
        protocol.mappingConfig = HB
        transport = Transport()
        attach(protocol, transport)
        protocol.dataReceived(ChunkEncoder().send_init())
        assert protocol.ready
        transport.clear()
        opened.append((protocol, transport))
    return opened


def test_a_thousand_connections_share_one_delayed_call() -> None:
    """Each connection sends its HEARTBEAT after 30 s of silence, yet the clock never
    holds more than one DelayedCall for all of them; those due within the same few
    milliseconds are sent in one callback."""
    clock = Clock()
    opened = connections(clock, 1000)  # opened within about 5 s
    assert len(clock.getDelayedCalls()) == 1
    callbacks = 0
    while clock.seconds() < 40:
        call = min(clock.getDelayedCalls(), key=lambda c: c.getTime())
        clock.advance(max(0.0, call.getTime() - clock.seconds()))
        callbacks += 1
        assert len(clock.getDelayedCalls()) <= 1
        if all(t.value() for _, t in opened):
            break
    assert sorted(heartbeats(t) for _, t in opened) == [1] * 1000
    # About 5 s of openings on a grid of 1/128 s: far fewer callbacks than connections.
    assert callbacks <= 5 * 128 + 2


def test_traffic_moves_the_heartbeat_without_touching_the_reactor() -> None:
    """Reads postpone the heartbeat; the shared call is not rescheduled for each read."""
    clock = Clock()
    [(protocol, transport)] = connections(clock, 1)
    [call] = clock.getDelayedCalls()
    for _ in range(100):
        clock.advance(0.1)
        protocol.dataReceived(Heartbeat(b"x").encode())  # any byte is life
    assert clock.getDelayedCalls() == [call]  # the same call, not one per read
    transport.clear()
    clock.advance(call.getTime() - clock.seconds())
    assert heartbeats(transport) == 0  # it came early and moved on
    clock.advance(30)
    assert heartbeats(transport) == 1


def test_silent_peers_time_out_and_live_ones_stay() -> None:
    """Of many connections, those whose peer answers nothing are aborted at interval +
    timeout; those that answer stay, all on the one shared call."""
    clock = Clock()
    opened = connections(clock, 50)
    clock.advance(30.1)
    for n, (protocol, transport) in enumerate(opened):
        assert heartbeats(transport) == 1
        if n % 2:
            protocol.dataReceived(Heartbeat(b"alive").encode())
    clock.advance(10.5)
    assert [t.disconnecting for _, t in opened] == [n % 2 == 0 for n in range(50)]
    for protocol, _ in opened:
        protocol.connectionLost()
    assert clock.getDelayedCalls() == []
