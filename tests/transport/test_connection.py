"""Tests for the sans-IO TCP mapping connection: INIT, DATA/ACK, heartbeats, limits."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from twisted_rserpool.transport.connection import (
    ConnectionState,
    LocalProtocolError,
    MappingConfig,
    MappingConnection,
    SendBufferFull,
)
from twisted_rserpool.transport.events import (
    DataAcknowledged,
    DataReceived,
    Event,
    HeartbeatTimeout,
    InitReceived,
    ProtocolError,
    SentData,
)
from twisted_rserpool.wire.errors import CauseCode
from twisted_rserpool.wire.tcpmapping import (
    ASAP_PPID,
    Ack,
    Chunk,
    ChunkDecoder,
    ChunkEncoder,
    DataFormat,
    Heartbeat,
    HeartbeatAck,
    Init,
)


def chunks_of(data: bytes, fmt: DataFormat | None = None) -> list[Chunk]:
    """Decode what a connection sent after its INIT, as if that INIT announced ``fmt``."""
    fmt = DataFormat() if fmt is None else fmt
    decoder = ChunkDecoder(verify_sequence=False)
    decoder.receive_data(fmt.init().encode())
    assert decoder.next_chunk() == fmt.init()
    decoder.receive_data(data)
    chunks: list[Chunk] = []
    while (chunk := decoder.next_chunk()) is not None:
        chunks.append(chunk)
    return chunks


def pair(
    a: MappingConfig | None = None, b: MappingConfig | None = None
) -> tuple[MappingConnection, MappingConnection]:
    """Two connections that have exchanged their INITs."""
    left, right = MappingConnection(a), MappingConnection(b)
    assert isinstance(right.receive_data(left.data_to_send(), 0)[0], InitReceived)
    assert isinstance(left.receive_data(right.data_to_send(), 0)[0], InitReceived)
    return left, right


def test_init_is_sent_first() -> None:
    """A new connection's first bytes are its INIT, announcing the configured format."""
    fmt = DataFormat(has_tsn=False, has_stream=True, has_ppid=True)
    connection = MappingConnection(MappingConfig(data_format=fmt))
    assert connection.data_to_send() == Init(omit_tsn=True).encode()
    assert connection.state is ConnectionState.AWAITING_INIT


def test_peer_init_establishes() -> None:
    """The peer's INIT establishes the connection and reports the peer's format."""
    connection = MappingConnection()
    events = connection.receive_data(Init(omit_ppid=True).encode(), 0)
    assert events == [InitReceived(DataFormat(has_ppid=False))]
    assert connection.state is ConnectionState.ESTABLISHED
    assert connection.peer_data_format == DataFormat(has_ppid=False)


@pytest.mark.parametrize("first", [Ack(0), Heartbeat(b"x"), HeartbeatAck(b"x")])
def test_peer_must_start_with_init(first: Chunk) -> None:
    """Any chunk before the peer's INIT is a protocol error that closes the connection."""
    connection = MappingConnection()
    [event] = connection.receive_data(first.encode(), 0)
    assert isinstance(event, ProtocolError)
    assert "before the peer's INIT" in event.reason
    assert connection.closed


def test_data_delivered_and_acknowledged_with_tsn() -> None:
    """Each DATA chunk becomes one event; acknowledging it sends one ACK with its TSN."""
    left, right = pair()
    left.send_data(b"one", ppid=ASAP_PPID)
    left.send_data(b"two", ppid=99)
    events = right.receive_data(left.data_to_send(), 1)
    assert [(e.tsn, e.ppid, e.user_data) for e in events if isinstance(e, DataReceived)] == [
        (0, ASAP_PPID, b"one"),
        (1, 99, b"two"),
    ]
    for event in events:
        assert isinstance(event, DataReceived)
        right.acknowledge(event)
    assert chunks_of(right.data_to_send()) == [Ack(0), Ack(1)]


def test_ack_omits_tsn_when_peer_init_suppressed_it() -> None:
    """When the data sender's INIT omitted TSNs, its ACKs carry none."""
    left, right = pair(MappingConfig(data_format=DataFormat(has_tsn=False)))
    left.send_data(b"x")
    [event] = right.receive_data(left.data_to_send(), 0)
    assert isinstance(event, DataReceived) and event.tsn == 0
    right.acknowledge(event)
    assert chunks_of(right.data_to_send()) == [Ack(None)]
    [acked] = left.receive_data(Ack(None).encode(), 0)
    assert acked == DataAcknowledged((SentData(0, b"x"),))


def test_acknowledge_in_order_only() -> None:
    """Acknowledging out of arrival order is a local error (ACKs are positional)."""
    left, right = pair()
    left.send_data(b"a")
    left.send_data(b"b")
    _, second = right.receive_data(left.data_to_send(), 0)
    assert isinstance(second, DataReceived)
    with pytest.raises(LocalProtocolError):
        right.acknowledge(second)


def test_unacknowledged_kept_until_acked() -> None:
    """Sent DATA stays in unacknowledged() until the peer's ACK for it arrives."""
    left, right = pair()
    sent = [left.send_data(bytes([i]), ppid=7, stream_identifier=i) for i in range(3)]
    assert left.unacknowledged() == tuple(sent)
    events = right.receive_data(left.data_to_send(), 0)
    assert isinstance(events[0], DataReceived)
    right.acknowledge(events[0])
    assert left.receive_data(right.data_to_send(), 0) == [DataAcknowledged((sent[0],))]
    assert left.unacknowledged() == tuple(sent[1:])
    left.close()
    assert left.unacknowledged() == tuple(sent[1:])  # still there for failover


@pytest.mark.parametrize(
    ("ack", "reason"),
    [(Ack(5), "expected 0"), (None, "no DATA chunk is outstanding")],
)
def test_bogus_ack_is_protocol_error(ack: Ack | None, reason: str) -> None:
    """An ACK for the wrong TSN, or with nothing outstanding, ends the connection."""
    left, _ = pair()
    if ack is not None:
        left.send_data(b"x")
    [event] = left.receive_data((ack or Ack(0)).encode(), 0)
    assert isinstance(event, ProtocolError)
    assert reason in event.reason
    assert left.closed


def test_heartbeat_answered() -> None:
    """Every HEARTBEAT gets a HEARTBEAT ACK echoing its information."""
    left, _ = pair()
    assert left.receive_data(Heartbeat(b"hello").encode(), 0) == []
    assert chunks_of(left.data_to_send()) == [HeartbeatAck(b"hello")]


def test_heartbeat_after_silence_then_timeout() -> None:
    """After the interval without received bytes a HEARTBEAT goes out; silence for the
    timeout after it ends the connection."""
    config = MappingConfig(heartbeat_interval=30, heartbeat_timeout=10)
    left, _ = pair(config)
    assert left.next_deadline() == 30
    assert left.handle_timer(29.9) == []
    assert left.data_to_send() == b""
    assert left.handle_timer(30) == []
    [heartbeat] = chunks_of(left.data_to_send())
    assert isinstance(heartbeat, Heartbeat)
    assert left.next_deadline() == 40
    assert left.handle_timer(39) == []
    assert left.handle_timer(40) == [HeartbeatTimeout(10)]
    assert left.closed and left.next_deadline() is None


def test_heartbeat_ack_keeps_connection() -> None:
    """The HEARTBEAT ACK (any received byte) clears the pending heartbeat."""
    config = MappingConfig(heartbeat_interval=30, heartbeat_timeout=10)
    left, right = pair(config)
    left.handle_timer(30)
    right.receive_data(left.data_to_send(), 31)
    assert left.receive_data(right.data_to_send(), 32) == []
    assert not left.heartbeat_outstanding
    assert left.handle_timer(40) == []
    assert not left.closed
    assert left.next_deadline() == 62


def test_no_heartbeat_when_disabled() -> None:
    """heartbeat_interval=None disables heartbeats."""
    left, _ = pair(MappingConfig(heartbeat_interval=None))
    assert left.next_deadline() is None
    assert left.handle_timer(1e9) == []


def test_oversize_chunk_refused() -> None:
    """A chunk longer than max_chunk_length ends the connection with Lack of Resources."""
    config = MappingConfig(max_chunk_length=64, max_buffer_size=1024)
    left, right = pair(b=config)
    left.send_data(b"x" * 100)
    [event] = right.receive_data(left.data_to_send(), 0)
    assert isinstance(event, ProtocolError)
    assert event.error.cause == CauseCode.LACK_OF_RESOURCES
    with pytest.raises(LocalProtocolError):
        right.send_data(b"x" * 100)


def test_large_read_within_limits_is_fine() -> None:
    """Many small chunks arriving in one read beyond max_buffer_size are all decoded."""
    config = MappingConfig(max_chunk_length=64, max_buffer_size=128)
    left, right = pair(b=config)
    for i in range(100):
        left.send_data(bytes([i]) * 20)
    events = right.receive_data(left.data_to_send(), 0)
    assert len(events) == 100
    assert all(isinstance(e, DataReceived) for e in events)


def test_undelivered_bound() -> None:
    """DATA the upper layer does not take is bounded (empty chunks count their header)."""
    left, right = pair(b=MappingConfig(max_undelivered_bytes=160))
    for _ in range(11):
        left.send_data(b"")
    events = right.receive_data(left.data_to_send(), 0)
    assert sum(isinstance(e, DataReceived) for e in events) == 10
    assert isinstance(events[-1], ProtocolError)
    assert events[-1].error.cause == CauseCode.LACK_OF_RESOURCES


def test_send_buffer_full() -> None:
    """A peer that never ACKs cannot make us hold more than max_unacknowledged_bytes."""
    left, _ = pair(MappingConfig(max_unacknowledged_bytes=100))
    left.send_data(b"x" * 50)
    with pytest.raises(SendBufferFull):
        left.send_data(b"x" * 50)
    assert len(left.unacknowledged()) == 1


def test_one_byte_at_a_time() -> None:
    """Chunks split into single bytes decode exactly as when they arrive whole."""
    left, right = pair()
    left.send_data(b"abc", ppid=12)
    left.send_data(b"defgh", ppid=13)
    data = left.data_to_send() + Heartbeat(b"hb").encode()
    events: list[Event] = []
    for i in range(len(data)):
        events += right.receive_data(data[i : i + 1], 0)
    assert [(e.ppid, e.user_data) for e in events if isinstance(e, DataReceived)] == [
        (12, b"abc"),
        (13, b"defgh"),
    ]
    assert chunks_of(right.data_to_send()) == [HeartbeatAck(b"hb")]


def test_encoder_peer_interoperates() -> None:
    """A peer using the chunk encoder directly, with every DATA word omitted, is understood."""
    peer = ChunkEncoder(DataFormat(False, False, False))
    connection = MappingConnection()
    events = connection.receive_data(peer.send_init() + peer.send_data(b"raw"), 0)
    assert isinstance(events[1], DataReceived)
    assert (events[1].tsn, events[1].ppid, events[1].stream_identifier) == (0, 0, 0)


@settings(max_examples=200)
@given(st.lists(st.binary(max_size=40), max_size=8))
def test_fuzz_never_raises(pieces: list[bytes]) -> None:
    """Random bytes after a valid INIT give events or one final ProtocolError, never raise."""
    connection = MappingConnection(MappingConfig(max_chunk_length=256, max_buffer_size=512))
    events = connection.receive_data(Init().encode(), 0)
    for piece in pieces:
        new = connection.receive_data(piece, 0)
        for event in new:
            if isinstance(event, DataReceived):
                connection.acknowledge(event)
        events += new
    errors = [e for e in events if isinstance(e, ProtocolError)]
    assert len(errors) <= 1
    if errors:
        assert events[-1] is errors[0] and connection.closed


@pytest.mark.parametrize(
    "kwargs",
    [
        {"max_chunk_length": 15},  # no room for the 16-byte DATA header
        {"max_chunk_length": 70000},
        {"max_chunk_length": 1000, "max_buffer_size": 1000},
        {"max_undelivered_bytes": -1},
        {"heartbeat_interval": 0},
        {"heartbeat_timeout": 0},
    ],
)
def test_config_refuses_impossible_limits(kwargs: dict[str, int]) -> None:
    """A MappingConfig that could never work is refused when it is made."""
    with pytest.raises(ValueError):
        MappingConfig(**kwargs)  # type: ignore[arg-type]


def flood(left: MappingConnection, right: MappingConnection, count: int, now: float) -> list[Event]:
    """``left`` sends ``count`` empty DATA chunks that ``right`` takes and acknowledges;
    ``left`` never reads what ``right`` writes."""
    for _ in range(count):
        left.send_data(b"")
    events = right.receive_data(left.data_to_send(), now)
    for event in events:
        if isinstance(event, DataReceived):
            right.acknowledge(event)
    return events


def unread_config() -> MappingConfig:
    return MappingConfig(max_unread_bytes=800, heartbeat_interval=None, heartbeat_timeout=10)


def test_peer_that_does_not_read_gets_a_probe_then_is_dropped() -> None:
    """A peer whose ACKs we write but who never reads them gets a HEARTBEAT once a quarter
    of max_unread_bytes is unread, and the connection ends beyond max_unread_bytes."""
    left, right = pair(MappingConfig(max_unacknowledged_bytes=10**6), unread_config())
    flood(left, right, 30, 0)  # 240 bytes of ACKs, more than 800 / 4
    right.receive_data(Heartbeat(b"?").encode(), 0)
    written = chunks_of(right.data_to_send())
    assert any(isinstance(c, Heartbeat) and c.info != b"?" for c in written)
    flood(left, right, 100, 1)  # 800 more bytes nobody reads
    events = right.receive_data(Heartbeat(b"more").encode(), 2)
    assert len(events) == 1 and isinstance(events[0], ProtocolError)
    assert events[0].error.cause == CauseCode.LACK_OF_RESOURCES
    assert "has not read" in events[0].reason


def test_unanswered_probe_times_out_despite_traffic() -> None:
    """The probe HEARTBEAT must be answered by its own HEARTBEAT ACK: other traffic from
    the peer does not stand in for it."""
    left, right = pair(MappingConfig(max_unacknowledged_bytes=10**6), unread_config())
    flood(left, right, 30, 0)
    right.receive_data(Heartbeat(b"x").encode(), 0)  # the probe goes out
    assert right.next_deadline() == 10
    right.receive_data(Heartbeat(b"y").encode(), 5)
    assert right.handle_timer(10) == [HeartbeatTimeout(10)]


def test_answered_probe_confirms_reading() -> None:
    """When the peer answers the probe, what it read no longer counts as unread."""
    left, right = pair(MappingConfig(max_unacknowledged_bytes=10**6), unread_config())
    flood(left, right, 30, 0)
    right.receive_data(Heartbeat(b"x").encode(), 0)
    assert right.unread_bytes > 200
    left.receive_data(right.data_to_send(), 1)  # left reads at last, answers the probe
    right.receive_data(left.data_to_send(), 1)
    assert right.unread_bytes == 0
    assert right.next_deadline() is None
    assert not right.closed


def test_acks_for_our_data_confirm_reading() -> None:
    """A peer that ACKs our DATA shows it read what we wrote before that DATA."""
    left, right = pair(MappingConfig(max_unacknowledged_bytes=10**6), unread_config())
    flood(left, right, 10, 0)
    right.send_data(b"reply")
    assert right.unread_bytes == 80  # ten ACKs of 8 bytes
    events = left.receive_data(right.data_to_send(), 0)
    [reply] = [e for e in events if isinstance(e, DataReceived)]
    left.acknowledge(reply)
    right.receive_data(left.data_to_send(), 0)
    assert right.unread_bytes == 0
