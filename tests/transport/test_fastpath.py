"""The TCP mapping's fast path through MappingConnection and RSerPoolProtocol, against the
checked path (``MappingConnection(fast=False)``: every chunk through the checked decoder):
for hypothesis-generated message exchanges, the same bytes and the same events, however
the reads are split and whatever damage or limit ends them; fuzzed bytes never raise; and
the protocol acknowledges all DATA of one read in one write."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet.task import Clock

from tests.transport.test_protocol import Peer, Recorder, Transport, attach, ready
from tests.wire.test_tcpmapping import split_at
from twisted_rserpool.transport.connection import (
    LocalProtocolError,
    MappingConfig,
    MappingConnection,
    SendBufferFull,
)
from twisted_rserpool.transport.events import (
    DataAcknowledged,
    DataReceived,
    Event,
    ProtocolError,
    SentData,
    SentRun,
)
from twisted_rserpool.wire.fastpath import ack_chunks
from twisted_rserpool.wire.tcpmapping import (
    Ack,
    ChunkDecoder,
    ChunkEncoder,
    Data,
    DataFormat,
    Heartbeat,
    HeartbeatAck,
    Init,
)

formats = st.builds(DataFormat, st.booleans(), st.booleans(), st.booleans())
cut_lists = st.lists(st.integers(0, 20_000), max_size=12)


@dataclass
class Scenario:
    """A's messages to B, B's answers to A, how the reads split, and what goes wrong."""

    config_a: MappingConfig
    config_b: MappingConfig
    to_b: list[tuple[bytes, int, int, bool]]
    to_a: list[tuple[bytes, int, int, bool]]
    cuts_to_b: list[int]
    cuts_to_a: list[int]
    heartbeat: bool
    damage: tuple[int, int] | None  # (position, byte) in A's bytes after its INIT


@st.composite
def messages(draw: st.DrawFn, fmt: DataFormat) -> list[tuple[bytes, int, int, bool]]:
    result = []
    for _ in range(draw(st.integers(0, 25))):
        size = draw(st.sampled_from([0, 1, 2, 3, 100, 1000]) | st.integers(0, 300))
        result.append(
            (
                draw(st.binary(min_size=size, max_size=size)),
                draw(st.integers(0, 20)) if fmt.has_ppid else 0,
                draw(st.integers(0, 3)) if fmt.has_stream else 0,
                draw(st.booleans()),
            )
        )
    return result


@st.composite
def scenarios(draw: st.DrawFn) -> Scenario:
    fmt_a, fmt_b = draw(formats), draw(formats)
    # Now and then a limit the exchange exceeds: the same message must trip it.
    undelivered = draw(st.sampled_from([256 * 1024, 256 * 1024, 3000]))
    config_a = MappingConfig(data_format=fmt_a, max_unacknowledged_bytes=1 << 24)
    config_b = MappingConfig(
        data_format=fmt_b, max_undelivered_bytes=undelivered, max_unacknowledged_bytes=1 << 24
    )
    to_b = draw(messages(fmt_a))
    damage = None
    if draw(st.integers(0, 3)) == 0:
        damage = (draw(st.integers(0, 5000)), draw(st.integers(0, 255)))
    return Scenario(
        config_a,
        config_b,
        to_b,
        draw(messages(fmt_b)),
        draw(cut_lists),
        draw(cut_lists),
        draw(st.booleans()),
        damage,
    )


def pair(
    config_a: MappingConfig, config_b: MappingConfig, fast: bool
) -> tuple[MappingConnection, MappingConnection]:
    a = MappingConnection(config_a, fast=fast)
    b = MappingConnection(config_b, fast=fast)
    b.receive_data(a.data_to_send(), 0)
    a.receive_data(b.data_to_send(), 0)
    return a, b


def comparable(events: list[Event]) -> list[object]:
    """The events, a ProtocolError as its reason and cause (errors compare by identity)."""
    return [
        ("protocol error", e.reason, int(e.error.cause)) if isinstance(e, ProtocolError) else e
        for e in events
    ]


def deliver(
    connection: MappingConnection,
    piece: bytes,
    now: float,
    fast: bool,
    answer: tuple[bytes, int, int, bool] | None,
    reported: list[list[object]],
) -> bytes:
    """One read: report its events, acknowledge what it delivered (the fast way once per
    read, as the protocol does; the checked way one by one), send ``answer``; what that
    wrote."""
    events = connection.receive_data(piece, now)
    reported.append(comparable(events))
    delivered = [e for e in events if isinstance(e, DataReceived)]
    if delivered and not connection.closed:
        if fast:
            connection.acknowledge_through(delivered[-1])
        else:
            for event in delivered:
                connection.acknowledge(event)
    if answer is not None and not connection.closed:
        user_data, ppid, stream, unordered = answer
        connection.send_data(user_data, ppid=ppid, stream_identifier=stream, unordered=unordered)
    reported.append(
        [len(connection.unacknowledged()), connection.unacknowledged_bytes, connection.unread_bytes]
    )
    return connection.data_to_send()


def send_runs(connection: MappingConnection, batch: list[tuple[bytes, int, int, bool]]) -> None:
    """Send ``batch`` with send_messages, one call per run of messages that share PPID,
    stream and U flag (as the outbox does)."""
    for (ppid, stream, unordered), run in itertools.groupby(batch, key=lambda m: m[1:]):
        messages = [m[0] for m in run]
        assert connection.send_messages(
            messages, ppid, stream_identifier=stream, unordered=unordered
        ) == len(messages)


def run(
    scenario: Scenario, fast: bool, batched: bool = False
) -> tuple[list[bytes], list[list[object]], object]:
    """Play the scenario on connections with or without the fast path, in two rounds (A
    sends half its messages, B reads, acknowledges and answers, A reads and acknowledges):
    every piece of bytes written, every list of events and the counters after each read,
    and what A still has unacknowledged at the end. ``batched``: A sends each round's
    messages with send_messages instead of send_data."""
    a, b = pair(scenario.config_a, scenario.config_b, fast)
    written: list[bytes] = []
    reported: list[list[object]] = []
    answers = iter(scenario.to_a)
    half = len(scenario.to_b) // 2
    for number, batch in enumerate((scenario.to_b[:half], scenario.to_b[half:])):
        if batched and not a.closed:
            send_runs(a, batch)
        for user_data, ppid, stream, unordered in [] if batched else batch:
            if not a.closed:
                a.send_data(user_data, ppid=ppid, stream_identifier=stream, unordered=unordered)
        wire = a.data_to_send()
        if number == 1 and scenario.heartbeat:
            wire += Heartbeat(b"are you there").encode()
        if number == 1 and scenario.damage is not None and wire:
            position, byte = scenario.damage
            position %= len(wire)
            wire = wire[:position] + bytes([byte]) + wire[position + 1 :]
        written.append(wire)
        back = b"".join(
            deliver(b, piece, 1.0, fast, next(answers, None), reported)
            for piece in split_at(wire, scenario.cuts_to_b)
        )
        written.append(back)
        written += [
            deliver(a, piece, 2.0, fast, None, reported)
            for piece in split_at(back, scenario.cuts_to_a)
        ]
    state = (a.unacknowledged(), a.unacknowledged_bytes, a.unread_bytes, b.undelivered, a.closed)
    return written, reported, state


@given(scenario=scenarios())
@settings(max_examples=200)
def test_fast_and_checked_connections_agree(scenario: Scenario) -> None:
    """For generated exchanges both ways (messages of every size and padding on every
    format, a HEARTBEAT among them, damage, a limit the peer exceeds, reads split
    anywhere), the fast path writes the same bytes and reports the same events as the
    checked path, and keeps the same unacknowledged messages for failover; so does the
    fast path sending each round's runs of messages at once (send_messages), and the
    checked path too."""
    checked = run(scenario, fast=False)
    assert run(scenario, fast=True) == checked
    assert run(scenario, fast=True, batched=True) == checked
    assert run(scenario, fast=False, batched=True) == checked


def flattened(events: list[list[object]]) -> list[object]:
    """The events with every DataAcknowledged taken apart, message by message (and the
    counters run() records after each read left out)."""
    result: list[object] = []
    for batch in events:
        for event in batch:
            if isinstance(event, int):
                continue
            if isinstance(event, DataAcknowledged):
                result += [("acknowledged", sent) for sent in event.sent]
            else:
                result.append(event)
    return result


@given(scenario=scenarios(), cuts=cut_lists)
@settings(max_examples=60)
def test_how_reads_split_changes_only_how_acks_are_grouped(
    scenario: Scenario, cuts: list[int]
) -> None:
    """Undamaged and within the limits, the same exchange split differently reports the
    same messages and acknowledgements (only the grouping of ACK runs depends on reads)."""
    scenario.damage = None
    scenario.heartbeat = False
    scenario.to_a = []  # B answers once per read: how many depends on the split
    scenario.config_b = MappingConfig(
        data_format=scenario.config_b.data_format, max_unacknowledged_bytes=1 << 24
    )
    _, one, _ = run(scenario, fast=True)
    scenario.cuts_to_a, scenario.cuts_to_b = cuts, list(reversed(cuts))
    _, other, _ = run(scenario, fast=True)
    assert flattened(one) == flattened(other)
    acknowledged = [e[1] for e in flattened(one) if type(e) is tuple]
    # Each message acknowledged once, in order.
    assert [sent.tsn for sent in acknowledged] == list(range(len(scenario.to_b)))


@given(
    garbage=st.binary(max_size=400),
    prefix=st.sampled_from([b"", Init().encode(), Init(omit_tsn=True).encode()]),
    cuts=cut_lists,
    sent=st.integers(0, 4),
)
@settings(max_examples=300)
def test_fuzzed_connection_reports_events_or_one_protocol_error(
    garbage: bytes, prefix: bytes, cuts: list[int], sent: int
) -> None:
    """Arbitrary bytes from the peer (after its INIT or not, with DATA of ours
    outstanding) give events or end with one ProtocolError, never an exception, and the
    same on both paths."""
    results = []
    for fast in (True, False):
        connection = MappingConnection(fast=fast)
        connection.receive_data(Init().encode(), 0)
        for number in range(sent):
            connection.send_data(bytes([number]))
        events: list[Event] = []
        for piece in split_at(prefix + garbage, cuts):
            events += connection.receive_data(piece, 0)
        errors = [e for e in events if isinstance(e, ProtocolError)]
        assert len(errors) <= 1 and (not errors or events[-1] is errors[0])
        results.append(
            (flattened([comparable(events)]), connection.data_to_send(), connection.closed)
        )
    assert results[0] == results[1]


def test_a_read_of_acks_retires_its_messages_together() -> None:
    """A hundred ACKs in one read retire a hundred messages as one event."""
    a, _ = pair(MappingConfig(), MappingConfig(), True)
    sent = [a.send_data(bytes([n])) for n in range(100)]
    a.data_to_send()
    events = a.receive_data(ack_chunks(0, 100, True), 0)
    assert events == [DataAcknowledged(tuple(sent))]
    assert a.unacknowledged() == () and a.unacknowledged_bytes == 0


def test_acknowledge_through_writes_the_acks_in_one_piece() -> None:
    """acknowledge_through the last of three delivered chunks writes three ACKs, with the
    TSN or, when the sender's INIT omitted TSNs, the constant 4-byte chunk."""
    for fmt, expected in (
        (DataFormat(), b"".join(Ack(t).encode() for t in range(3))),
        (DataFormat(has_tsn=False), Ack(None).encode() * 3),
    ):
        a, b = pair(MappingConfig(data_format=fmt), MappingConfig(), True)
        for n in range(3):
            a.send_data(bytes([n]))
        events = b.receive_data(a.data_to_send(), 0)
        last = events[-1]
        assert isinstance(last, DataReceived)
        b.acknowledge_through(last)
        assert b.data_to_send() == expected
        assert b.undelivered == 0


# -- the protocol -------------------------------------------------------------------------


class Writes(Transport):
    """A StringTransport that counts its writes."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.writes.append(data)
        super().write(data)  # type: ignore[no-untyped-call]


def chunks(data: bytes, fmt: DataFormat | None = None) -> list[object]:
    decoder = ChunkDecoder(verify_sequence=False)
    decoder.receive_data((fmt or DataFormat()).init().encode() + data)
    found: list[object] = []
    while (chunk := decoder.next_chunk()) is not None:
        found.append(chunk)
    return found[1:]


class Echo(Recorder):
    """Answers every application message with one of its own."""

    def applicationDataReceived(self, ppid: int, data: bytes) -> None:
        super().applicationDataReceived(ppid, data)
        self.sendApplicationData(b"re: " + data, ppid)


def test_the_acks_of_one_read_leave_in_one_write_after_the_answers() -> None:
    """Five DATA chunks in one read: each reaches the hook, and their five ACKs leave in
    the one write that ends the read, after what the hooks sent meanwhile."""
    clock = Clock()
    protocol = Echo(clock)
    transport = Writes()
    attach(protocol, transport)
    peer = Peer()
    protocol.dataReceived(peer.init())
    transport.writes.clear()
    transport.clear()
    protocol.dataReceived(b"".join(peer.data(b"m%d" % n, 99) for n in range(5)))
    assert [call for call in protocol.calls if call[0] == "app"] == [
        ("app", (99, b"m%d" % n)) for n in range(5)
    ]
    [write] = transport.writes
    found = chunks(write)
    assert [c.user_data for c in found if isinstance(c, Data)] == [b"re: m%d" % n for n in range(5)]
    assert found[5:] == [Ack(n) for n in range(5)]


def test_a_read_larger_than_a_slice_is_decoded_whole() -> None:
    """Without an admitData of its own a protocol decodes a 40 KiB read in one pass: every
    message is delivered within that dataReceived and acknowledged in one write."""
    protocol, transport, _, peer = ready()
    count = 40 * 1024 // 116
    transport.clear()
    protocol.dataReceived(b"".join(peer.data(bytes(100), 7) for _ in range(count)))
    assert len([c for c in protocol.calls if c[0] == "app"]) == count
    assert chunks(transport.value()) == [Ack(n) for n in range(count)]
    assert protocol.mapping is not None and protocol.mapping.undelivered == 0


def test_messages_acknowledged_defaults_to_data_acknowledged_per_message() -> None:
    """The ACKs of one read reach messagesAcknowledged together; by default it calls
    dataAcknowledged once per message, oldest first."""
    protocol, _, _, _ = ready()
    sent = [protocol.sendApplicationData(bytes([n]), 5) for n in range(3)]
    protocol.dataReceived(b"".join(Ack(s.tsn).encode() for s in sent))
    assert protocol.calls == [("acked", s) for s in sent]

    class Together(Recorder):
        def messagesAcknowledged(self, sent: Sequence[SentData]) -> None:
            self.calls.append(("together", sent))

    together = Together(Clock())
    attach(together, Transport())
    together.dataReceived(Peer().init())
    together.calls.clear()
    sent = [together.sendApplicationData(bytes([n]), 5) for n in range(3)]
    together.dataReceived(b"".join(Ack(s.tsn).encode() for s in sent))
    assert together.calls == [("together", tuple(sent))]


def test_answers_are_read_in_any_format() -> None:
    """HEARTBEAT ACKs, ACKs and DATA come back in any order and any format: the checked
    codec reads what the fast path wrote (a round trip through a peer with every format)."""
    for fmt in (
        DataFormat(t, s, p) for t in (True, False) for s in (True, False) for p in (True, False)
    ):
        sender = MappingConnection(MappingConfig(data_format=fmt))
        sender.receive_data(Init().encode(), 0)
        encoder = ChunkEncoder(fmt)
        encoder.send_init()
        sender.data_to_send()
        expected = b""
        for n in range(5):
            payload = bytes(range(n * 7))
            sender.send_data(payload, ppid=n if fmt.has_ppid else 0)
            expected += encoder.send_data(payload, ppid=n if fmt.has_ppid else 0)
        sender.receive_data(Heartbeat(b"x").encode(), 0)
        assert sender.data_to_send() == expected + HeartbeatAck(b"x").encode()


# -- many messages at once ----------------------------------------------------------------


def one_by_one(
    connection: MappingConnection, messages: list[bytes], ppid: int, stream: int, unordered: bool
) -> int:
    """What send_messages promises, with send_data: the messages that fit, in order; the
    first one's error if it cannot be sent at all."""
    config = connection.config
    header = config.data_format.header_length
    for number, data in enumerate(messages):
        size = len(data) + header
        if number and (
            size > config.max_chunk_length
            or connection.unacknowledged_bytes + size > config.max_unacknowledged_bytes
        ):
            return number
        if (
            not number
            and connection.unacknowledged_bytes + size > config.max_unacknowledged_bytes
            and size <= config.max_unacknowledged_bytes
            and size <= config.max_chunk_length
            and not connection.closed
        ):
            return 0  # waits for the peer's ACKs
        connection.send_data(data, ppid=ppid, stream_identifier=stream, unordered=unordered)
    return len(messages)


def outcome(call: Callable[[], int]) -> object:
    try:
        return call()
    except Exception as error:
        return (type(error), str(error))


@given(
    fmt=formats,
    rounds=st.lists(
        st.tuples(
            st.lists(st.integers(0, 300), max_size=40),
            st.integers(0, 20),
            st.integers(0, 3),
            st.booleans(),
            st.integers(0, 30),  # ACKs from the peer after the round
        ),
        max_size=6,
    ),
    max_chunk=st.sampled_from([70_000, 200, 64]),
    max_unacknowledged=st.sampled_from([1 << 20, 2000, 300, 0]),
    close_after=st.integers(0, 8),
)
@settings(max_examples=200)
def test_send_messages_matches_send_data(
    fmt: DataFormat,
    rounds: list[tuple[list[int], int, int, bool, int]],
    max_chunk: int,
    max_unacknowledged: int,
    close_after: int,
) -> None:
    """Runs of messages of any size under any chunk and unacknowledged-data limit, with
    any PPID, stream and U flag (some the format cannot carry), ACKs between rounds and
    the connection closed at some point: send_messages queues what send_data would, one
    by one, up to the first message that does not fit, and the checked path agrees."""
    max_chunk = max(max_chunk, fmt.header_length) if max_chunk < 70_000 else 0xFFFF
    config = MappingConfig(
        data_format=fmt,
        max_chunk_length=max_chunk,
        max_buffer_size=max(max_chunk + 3, 1024),
        max_unacknowledged_bytes=max_unacknowledged,
    )
    results = []
    for fast, batched in ((True, True), (False, True), (True, False), (False, False)):
        a = MappingConnection(config, fast=fast)
        a.receive_data(Init().encode(), 0)
        a.data_to_send()
        seen: list[object] = []
        acknowledged = 0
        for number, (sizes, ppid, stream, unordered, acks) in enumerate(rounds):
            if number == close_after:
                a.close()
            messages = [bytes([n % 251]) * size for n, size in enumerate(sizes)]
            send: Callable[[], int] = (
                partial(
                    a.send_messages, messages, ppid, stream_identifier=stream, unordered=unordered
                )
                if batched
                else partial(one_by_one, a, messages, ppid, stream, unordered)
            )
            seen.append(outcome(send))
            seen += [a.data_to_send(), a.unacknowledged(), a.unacknowledged_bytes, a.next_tsn]
            count = min(acks, len(a.unacknowledged()))
            if count and not a.closed:
                seen.append(comparable(a.receive_data(ack_chunks(acknowledged, count, True), 0)))
                acknowledged += count
        results.append(seen)
    assert results[0] == results[1] == results[2] == results[3]


def test_send_messages_numbers_across_the_wraps() -> None:
    """TSNs wrap after 2**32 - 1 and stream sequence numbers after 65535 inside one call
    as send_data numbers them (the checked decoder accepts the chunks in order)."""
    for fmt in (DataFormat(), DataFormat(has_tsn=False)):
        results = []
        for batched in (True, False):
            config = MappingConfig(data_format=fmt, max_unacknowledged_bytes=1 << 24)
            a = MappingConnection(config, fast=True)
            a.receive_data(Init().encode(), 0)
            a.data_to_send()
            for stream in (0, 2):
                if batched:
                    assert a.send_messages([b"m"] * 70_000, 5, stream_identifier=stream) == 70_000
                else:
                    for _ in range(70_000):
                        a.send_data(b"m", ppid=5, stream_identifier=stream)
                a.receive_data(ack_chunks(a.next_tsn - 70_000, 70_000, True), 0)
            a._next_tsn = 0xFFFFFFFF - 2  # as if 2**32 - 3 messages had gone before
            if batched:
                assert a.send_messages([b"x"] * 6, 5) == 6
            else:
                for _ in range(6):
                    a.send_data(b"x", ppid=5)
            results.append((a.data_to_send(), [s.tsn for s in a.unacknowledged()]))
        assert results[0] == results[1]
        tsns = results[0][1]
        assert tsns == [0xFFFFFFFD, 0xFFFFFFFE, 0xFFFFFFFF, 0, 1, 2]
    decoder = ChunkDecoder(verify_sequence=True, max_buffer_size=1 << 22)
    a = MappingConnection(MappingConfig(max_unacknowledged_bytes=1 << 24), fast=True)
    decoder.receive_data(a.data_to_send())
    assert a.send_messages([b"m"] * 70_000, 5, stream_identifier=1) == 70_000
    decoder.receive_data(a.data_to_send())
    found: list[object] = []
    decoder.read_chunks(found.append, DataReceived)
    assert len(found) == 70_001 and found[-1] == DataReceived(69_999, b"m", 5, 1, False)


def test_send_messages_refuses_only_what_can_never_be_sent() -> None:
    """A first message too long for a chunk or for the unacknowledged-data limit raises;
    a first message that waits for ACKs returns 0; a later one ends the run."""
    config = MappingConfig(max_chunk_length=116, max_unacknowledged_bytes=300)
    a = MappingConnection(config)
    a.receive_data(Init().encode(), 0)
    assert a.send_messages([b"a" * 100, b"b" * 101, b"c"]) == 1
    assert a.send_messages([b"b" * 100, b"d" * 100]) == 1  # 232 of 300, the next exceeds
    assert a.send_messages([b"e" * 60]) == 0  # 76 more would make 308
    try:
        a.send_messages([b"f" * 101])
    except LocalProtocolError as error:
        assert "chunk limit" in str(error)
    else:
        raise AssertionError("a message longer than a chunk was accepted")
    a.close()
    try:
        a.send_messages([b"g"])
    except LocalProtocolError as error:
        assert "closed" in str(error)
    else:
        raise AssertionError("a closed connection sent")
    small = MappingConnection(MappingConfig(max_unacknowledged_bytes=100))
    small.receive_data(Init().encode(), 0)
    try:
        small.send_messages([b"h" * 90])
    except SendBufferFull:
        pass
    else:
        raise AssertionError("a message over the whole limit was accepted")


@given(
    batches=st.lists(
        st.tuples(st.integers(0, 40), st.integers(0, 9), st.integers(0, 2), st.booleans()),
        max_size=8,
    ),
    acks=st.lists(st.integers(1, 50), max_size=10),
    start=st.sampled_from([0, 0xFFFFFFFF - 30]),
)
@settings(max_examples=150)
def test_acknowledged_runs_are_the_messages_sent(
    batches: list[tuple[int, int, int, bool]], acks: list[int], start: int
) -> None:
    """However messages were sent (one by one or in runs, with any PPID, stream and U flag)
    and however the ACKs retire them (runs of any length, past the queue's compaction and
    the TSN wrap), each DataAcknowledged holds exactly the SentData that send_data returned
    or send_messages numbered, in order, and unacknowledged() the rest."""
    a = MappingConnection(MappingConfig(max_unacknowledged_bytes=1 << 24))
    a.receive_data(Init().encode(), 0)
    a._next_tsn = start  # as if that many messages had gone before
    expected: list[SentData] = []
    for number, (count, ppid, stream, unordered) in enumerate(batches):
        messages = [bytes([number, n]) for n in range(count)]
        if number % 2:
            expected += [
                a.send_data(m, ppid=ppid, stream_identifier=stream, unordered=unordered)
                for m in messages
            ]
        else:
            first = a.next_tsn
            a.send_messages(messages, ppid, stream_identifier=stream, unordered=unordered)
            expected += [
                SentData((first + n) & 0xFFFFFFFF, m, ppid, stream, unordered)
                for n, m in enumerate(messages)
            ]
    a.data_to_send()
    assert a.unacknowledged() == tuple(expected)
    retired: list[SentData] = []
    for wanted in acks:
        count = min(wanted, len(expected) - len(retired))
        if not count:
            break
        first = (start + len(retired)) & 0xFFFFFFFF
        events = a.receive_data(ack_chunks(first, count, True), 0)
        assert len(events) == 1 and isinstance(events[0], DataAcknowledged)
        assert list(events[0].sent) == expected[len(retired) : len(retired) + count]
        assert events[0] == DataAcknowledged(tuple(expected[len(retired) : len(retired) + count]))
        retired += events[0].sent
        assert a.unacknowledged() == tuple(expected[len(retired) :])
        assert a.unacknowledged_bytes == sum(len(s.user_data) + 16 for s in a.unacknowledged())


def test_a_run_makes_no_sentdata_until_looked_at() -> None:
    """Retiring a run of messages makes no SentData: the run holds what the connection
    kept, and makes the values once when they are asked for."""
    a, _ = pair(MappingConfig(), MappingConfig(), True)
    a.send_messages([b"a", b"b", b"c"], 7)
    [event] = a.receive_data(ack_chunks(0, 3, True), 0)
    assert isinstance(event, DataAcknowledged) and isinstance(event.sent, SentRun)
    assert event.sent._sent is None and len(event.sent) == 3
    assert event.sent[1] == SentData(1, b"b", 7)
    assert event.sent.values() is event.sent.values()
    assert event.sent == [SentData(0, b"a", 7), SentData(1, b"b", 7), SentData(2, b"c", 7)]
    assert hash(event) == hash(DataAcknowledged(tuple(event.sent)))


class Watched(list[bytes]):
    """A list of messages that records how many of them each slice took."""

    def __init__(self, messages: list[bytes]) -> None:
        super().__init__(messages)
        self.taken: list[int] = []

    def __getitem__(self, index: Any) -> Any:
        found = super().__getitem__(index)
        if isinstance(index, slice):
            self.taken.append(len(found))
        return found


def test_send_messages_looks_at_about_as_many_as_fit() -> None:
    """With 10,000 messages queued and room for three, send_messages takes four of them
    (those that fit and the one after), not all 10,000: a queue that the peer's ACKs let
    through a few at a time costs that few per call; from ``start`` on, as the outbox
    resumes a run, and one by one when there is room for only a few."""
    config = MappingConfig(max_unacknowledged_bytes=3 * 116 + 50)
    a = MappingConnection(config)
    a.receive_data(Init().encode(), 0)
    messages = Watched([bytes(100)] * 10_000)
    assert a.send_messages(messages, 5) == 3
    assert messages.taken == [4]
    a.receive_data(ack_chunks(0, 2, True), 0)
    messages.taken.clear()
    assert a.send_messages(messages, 5, start=3) == 2
    assert messages.taken == []  # room for two: taken one by one, no window
    assert [s.tsn for s in a.unacknowledged()] == [2, 3, 4]
    # Shorter messages after the first: the window grows until one does not fit.
    mixed = MappingConnection(MappingConfig(max_unacknowledged_bytes=1000))
    mixed.receive_data(Init().encode(), 0)
    assert mixed.send_messages([bytes(400)] + [b"x"] * 100, 5) == 1 + (1000 - 416) // 17
