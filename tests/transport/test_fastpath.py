"""The TCP mapping's fast path through MappingConnection and RSerPoolProtocol, against the
checked path (``MappingConnection(fast=False)``: every chunk through the checked decoder):
for hypothesis-generated message exchanges, the same bytes and the same events, however
the reads are split and whatever damage or limit ends them; fuzzed bytes never raise; and
the protocol acknowledges all DATA of one read in one write."""

from __future__ import annotations

from dataclasses import dataclass

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet.task import Clock

from tests.transport.test_protocol import Peer, Recorder, Transport, attach, ready
from tests.wire.test_tcpmapping import split_at
from twisted_rserpool.transport.connection import MappingConfig, MappingConnection
from twisted_rserpool.transport.events import (
    DataAcknowledged,
    DataReceived,
    Event,
    ProtocolError,
    SentData,
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


def run(scenario: Scenario, fast: bool) -> tuple[list[bytes], list[list[object]], object]:
    """Play the scenario on connections with or without the fast path, in two rounds (A
    sends half its messages, B reads, acknowledges and answers, A reads and acknowledges):
    every piece of bytes written, every list of events and the counters after each read,
    and what A still has unacknowledged at the end."""
    a, b = pair(scenario.config_a, scenario.config_b, fast)
    written: list[bytes] = []
    reported: list[list[object]] = []
    answers = iter(scenario.to_a)
    half = len(scenario.to_b) // 2
    for number, batch in enumerate((scenario.to_b[:half], scenario.to_b[half:])):
        for user_data, ppid, stream, unordered in batch:
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
    checked path, and keeps the same unacknowledged messages for failover."""
    assert run(scenario, fast=True) == run(scenario, fast=False)


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
        def messagesAcknowledged(self, sent: tuple[SentData, ...]) -> None:
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
