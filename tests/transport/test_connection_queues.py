"""MappingConnection's queues (sent DATA awaiting ACKs, received DATA awaiting the upper
layer, the answers the peer has shown it read) against a plain model, for long runs of
messages acknowledged in groups of any size: the queues are lists read from a head index
and compacted now and then, so what they hold must never depend on where the head is."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from twisted_rserpool.transport.connection import MappingConfig, MappingConnection
from twisted_rserpool.transport.events import DataAcknowledged, DataReceived, InitReceived
from twisted_rserpool.wire.tcpmapping import DataFormat

formats = st.builds(DataFormat, st.booleans(), st.booleans(), st.booleans())


def pair(fmt_a: DataFormat, fmt_b: DataFormat) -> tuple[MappingConnection, MappingConnection]:
    def config(fmt: DataFormat) -> MappingConfig:
        return MappingConfig(
            data_format=fmt, heartbeat_interval=None, max_unacknowledged_bytes=1 << 24
        )

    a, b = MappingConnection(config(fmt_a)), MappingConnection(config(fmt_b))
    assert isinstance(b.receive_data(a.data_to_send(), 0)[0], InitReceived)
    assert isinstance(a.receive_data(b.data_to_send(), 0)[0], InitReceived)
    return a, b


def payload(number: int) -> bytes:
    return number.to_bytes(4, "big")[: number % 5]


@settings(max_examples=80, deadline=None)
@given(
    formats,
    formats,
    st.lists(
        st.tuples(st.integers(0, 90), st.integers(0, 120), st.integers(1, 40), st.booleans()),
        max_size=12,
    ),
)
def test_queues_follow_the_model(
    fmt_a: DataFormat, fmt_b: DataFormat, rounds: list[tuple[int, int, int, bool]]
) -> None:
    """Each round A sends ``sent`` messages and B one; B acknowledges ``taking`` of those
    waiting (any left wait for later rounds) ``group`` at a time (one by one with
    ``single``, else through the last), and A reads the ACKs after each group. At every
    step A's unacknowledged messages and bytes, B's undelivered messages and bytes, and
    A's unread answer bytes agree with the model; A learns of every message once, in
    order."""
    a, b = pair(fmt_a, fmt_b)
    header_a = fmt_a.header_length
    # The model: what A sent that B has not acknowledged, with the answer bytes A had
    # written when it sent each; the answers B has shown it read.
    outstanding: list[bytes] = []
    marks: list[int] = []
    written = read = 0
    answer = 8 if fmt_b.has_tsn else 4  # A's ACK of B's DATA carries a TSN unless B omits it
    waiting: list[DataReceived] = []  # at B
    retired: list[bytes] = []
    number = 0
    for sent, taking, group, single in rounds:
        for _ in range(sent):
            a.send_data(payload(number))
            outstanding.append(payload(number))
            marks.append(written)
            number += 1
        waiting += [e for e in b.receive_data(a.data_to_send(), 0) if isinstance(e, DataReceived)]
        b.send_data(b"b")  # for A to answer
        taken, waiting = waiting[:taking], waiting[taking:]
        while taken:
            now, taken = taken[:group], taken[group:]
            if single:
                for event in now:
                    b.acknowledge(event)
            else:
                b.acknowledge_through(now[-1])
            left = len(taken) + len(waiting)
            assert b.undelivered == left
            assert b.undelivered_bytes == sum(len(e.user_data) + header_a for e in taken + waiting)
            for answered in a.receive_data(b.data_to_send(), 0):
                if isinstance(answered, DataAcknowledged):
                    retired += [s.user_data for s in answered.sent]
                elif isinstance(answered, DataReceived):
                    a.acknowledge(answered)
                    written += answer
            read = max(read, marks[len(now) - 1])
            del outstanding[: len(now)], marks[: len(now)]
            assert [s.user_data for s in a.unacknowledged()] == outstanding
            assert a.unacknowledged_bytes == sum(len(p) + header_a for p in outstanding)
            assert a.unread_bytes == written - read
        for late in a.receive_data(b.data_to_send(), 0):  # B's message, if not yet read
            assert isinstance(late, DataReceived)
            a.acknowledge(late)
            written += answer
        b.receive_data(a.data_to_send(), 0)  # A's ACKs of B's messages
        assert b.unacknowledged_bytes == 0
    assert retired + [s.user_data for s in a.unacknowledged()] == [
        payload(n) for n in range(number)
    ]
    assert not a.closed and not b.closed


def test_unread_answers_confirmed_by_acks_of_later_data() -> None:
    """A writes ACKs (answers) for B's messages; an ACK from B for DATA that A sent after
    those answers shows B read them, also when that DATA sits deep in a long queue."""
    a, b = pair(DataFormat(), DataFormat())
    for _ in range(100):
        a.send_data(b"x")
    first = b.receive_data(a.data_to_send(), 0)  # B holds 100 messages, unacknowledged
    for _ in range(10):
        b.send_data(b"y")
    for event in a.receive_data(b.data_to_send(), 0):
        assert isinstance(event, DataReceived)
        a.acknowledge(event)
    a.data_to_send()
    assert a.unread_bytes == 10 * 8  # ten ACKs with TSNs
    a.send_data(b"after")  # marks the ten answers
    received = [e for e in first if isinstance(e, DataReceived)]
    received += [e for e in b.receive_data(a.data_to_send(), 0) if isinstance(e, DataReceived)]
    assert len(received) == 101
    for event in received[:100]:  # one by one: the head moves, the lists get compacted
        b.acknowledge(event)
        a.receive_data(b.data_to_send(), 0)
        assert a.unread_bytes == 80
    assert len(a.unacknowledged()) == 1
    b.acknowledge(received[100])
    a.receive_data(b.data_to_send(), 0)
    assert a.unread_bytes == 0 and a.unacknowledged() == ()
