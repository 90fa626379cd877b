"""The fast scan's bulk path (wire/fastpath.py): runs of DATA chunks of one length decoded
at once, and runs of ACK chunks packed by one struct, against the checked codec.

The generated streams are made of runs of equal-length DATA chunks (from a few to more
than the scan's look-ahead), on one stream or several, ordered, unordered or both, with
any other flag bits, now and then a TSN or stream sequence number off inside a run, a
length that differs, or damage; they start anywhere in the TSN and stream sequence
number spaces, so that runs cross both wraps. However the reads split, the fast path
passes on the same chunks and fails with the same error at the same point as the checked
path."""

from __future__ import annotations

import struct
from collections.abc import Iterable

from hypothesis import given, settings
from hypothesis import strategies as st

from tests.wire.test_fastpath import Item, Record, corruptions, normalized
from tests.wire.test_tcpmapping import split_at
from twisted_rserpool.wire import fastpath
from twisted_rserpool.wire.errors import CauseCode, MalformedMessage
from twisted_rserpool.wire.fastpath import ACK_WITHOUT_TSN, AckRun, FastLayout, ack_chunks
from twisted_rserpool.wire.tcpmapping import (
    _FAST_LAYOUTS,
    Ack,
    ChunkDecoder,
    ChunkEncoder,
    Data,
    DataFormat,
    Heartbeat,
)

U32_MAX = 0xFFFFFFFF
U16_MAX = 0xFFFF
formats = st.builds(DataFormat, st.booleans(), st.booleans(), st.booleans())
#: Where the TSNs and stream sequence numbers start: 0, anywhere, or just before the wrap.
tsn_starts = st.sampled_from([0, U32_MAX - 20, U32_MAX]) | st.integers(0, U32_MAX)
ssn_starts = st.sampled_from([0, U16_MAX - 20, U16_MAX]) | st.integers(0, U16_MAX)
cut_lists = st.lists(st.integers(0, 20_000), max_size=12)


class Start:
    """Where a decoder's numbering starts: the next TSN and each stream's next number."""

    def __init__(self, tsn: int, ssn: dict[int, int]) -> None:
        self.tsn = tsn
        self.ssn = ssn


def read_all(
    pieces: Iterable[bytes],
    start: Start,
    *,
    fast: bool,
    verify: bool = True,
    max_chunk_length: int = 0xFFFF,
    outstanding: int = 0,
    outstanding_tsn: int = 0,
) -> tuple[list[Item], tuple[str, int] | None, int]:
    """What read_chunks passes on, the error that ended it, and the next TSN after."""
    decoder = ChunkDecoder(fast=fast, verify_sequence=verify, max_chunk_length=max_chunk_length)
    # The numbering so far, as if the stream had carried that many chunks before.
    decoder._next_tsn = start.tsn
    decoder._next_ssn = dict(start.ssn)
    items: list[Item] = []
    try:
        for piece in pieces:
            decoder.receive_data(piece)
            seen = len(items)
            decoder.read_chunks(items.append, Record, outstanding, outstanding_tsn)
            for item in items[seen:]:
                if type(item) is Record:
                    # bytes, not a bytearray of the decoder's buffer (it compares equal)
                    assert type(item.user_data) is bytes
                if type(item) is AckRun:
                    step = int(item)
                elif isinstance(item, int) and outstanding and item in (-1, outstanding_tsn):
                    step = 1
                else:
                    continue
                outstanding -= step
                outstanding_tsn = (outstanding_tsn + step) & U32_MAX
    except MalformedMessage as error:
        return items, (error.reason, error.cause), decoder.next_tsn
    return items, None, decoder.next_tsn


@st.composite
def runs(draw: st.DrawFn) -> tuple[bytes, Start]:
    """An INIT, then runs of DATA chunks of one length each (ACKs and HEARTBEATs between
    some), numbered from a drawn start, with now and then a number off, a length that
    differs or another chunk type inside a run."""
    fmt = draw(formats)
    start = Start(draw(tsn_starts), {})
    for stream in range(3):
        if draw(st.booleans()):
            start.ssn[stream] = draw(ssn_starts)
    next_ssn = dict(start.ssn)
    tsn = start.tsn
    wire = [fmt.init().encode()]
    for _ in range(draw(st.integers(1, 5))):
        count = draw(st.sampled_from([1, 3, 4, 5, 15, 16, 17, 40]) | st.integers(1, 70))
        size = draw(st.sampled_from([0, 1, 2, 3, 4, 100]) | st.integers(0, 40))
        streams = draw(st.sampled_from(["one", "two", "three"]))
        unordered = draw(st.sampled_from(["none", "none", "all", "some"]))
        # Other flag bits: reserved, ignored on receipt.
        extra = draw(st.sampled_from([0, 0, 0, 0x01, 0x08, 0xFB]))
        ppid = draw(st.integers(0, U32_MAX)) if fmt.has_ppid else None
        fault = draw(st.sampled_from([None, None, None, "tsn", "ssn", "length", "type"]))
        where = draw(st.integers(0, count - 1))
        first_stream = draw(st.integers(0, 2))
        for index in range(count):
            stream = {"one": first_stream, "two": index % 2, "three": (index * 7) % 3}[streams]
            chunk_unordered = unordered == "all" or (unordered == "some" and index % 3 == 1)
            ssn = 0 if chunk_unordered else next_ssn.get(stream, 0)
            chunk_tsn, chunk_ssn, user_data = tsn, ssn, bytes([index & 0xFF]) * size
            if fault is not None and index == where:
                if fault == "tsn":
                    chunk_tsn = (tsn + draw(st.sampled_from([1, -1, 1 << 16]))) & U32_MAX
                elif fault == "ssn":
                    chunk_ssn = (ssn + draw(st.sampled_from([1, -1]))) & U16_MAX
                elif fault == "length":
                    user_data += b"x"
            encoded = bytearray(
                Data(
                    user_data,
                    chunk_tsn if fmt.has_tsn else None,
                    stream if fmt.has_stream else None,
                    chunk_ssn if fmt.has_stream else None,
                    ppid,
                    chunk_unordered,
                ).encode()
            )
            encoded[1] |= extra
            if fault == "type" and index == where:
                # Another chunk of the run's length in its place (a HEARTBEAT, an ACK, a
                # reserved type...): the run ends before it.
                encoded[0] = draw(st.sampled_from([1, 2, 3, 4, 5, 6, 255]))
            wire.append(bytes(encoded))
            tsn = (tsn + 1) & U32_MAX
            if not chunk_unordered:
                next_ssn[stream] = (ssn + 1) & U16_MAX
        between = draw(st.sampled_from(["nothing", "nothing", "ack", "heartbeat"]))
        if between == "ack":
            wire.append(Ack(draw(st.none() | st.integers(0, 3))).encode())
        elif between == "heartbeat":
            wire.append(Heartbeat(b"hb").encode())
    return b"".join(wire), start


@given(stream=runs(), cuts=cut_lists, data=st.data())
@settings(max_examples=400)
def test_runs_of_one_length_are_decoded_as_the_checked_path_does(
    stream: tuple[bytes, Start], cuts: list[int], data: st.DataObject
) -> None:
    """Runs of equal-length DATA chunks, whole or split anywhere, damaged or not, numbered
    across the TSN and stream sequence number wraps: the same records, the same error at
    the same chunk, the same next TSN."""
    wire, start = stream
    pieces = split_at(data.draw(corruptions(wire)), cuts)
    fast = read_all(pieces, start, fast=True)
    checked = read_all(pieces, start, fast=False)
    assert fast == checked


@given(stream=runs(), cuts=cut_lists, limit=st.integers(8, 130))
@settings(max_examples=200)
def test_runs_agree_without_sequence_checks_and_under_a_lower_limit(
    stream: tuple[bytes, Start], cuts: list[int], limit: int
) -> None:
    """Without verify_sequence the numbers inside a run are not looked at (the TSNs are
    counted, across the wrap); under a chunk limit a run of longer chunks is refused at
    its first chunk: on both paths alike."""
    wire, start = stream
    pieces = split_at(wire, cuts)
    assert read_all(pieces, start, fast=True, verify=False) == read_all(
        pieces, start, fast=False, verify=False
    )
    assert read_all(pieces, start, fast=True, max_chunk_length=limit) == read_all(
        pieces, start, fast=False, max_chunk_length=limit
    )


def test_a_long_run_is_decoded_in_bulk_across_the_tsn_wrap() -> None:
    """A read of 200 DATA chunks of 100 bytes from TSN 2**32 - 100, stream 0's numbers
    from 65,500: all decoded, numbered across both wraps; the bulk path ran."""
    fmt = DataFormat()
    start = Start(U32_MAX - 99, {0: 65_500})
    chunks = [
        Data(bytes([i]) * 100, (start.tsn + i) & U32_MAX, 0, (65_500 + i) & U16_MAX, 11).encode()
        for i in range(200)
    ]
    wire = fmt.init().encode() + b"".join(chunks)
    layout = _FAST_LAYOUTS[7]  # the full format's, shared
    layout._runs.clear()
    items, error, next_tsn = read_all([wire], start, fast=True)
    assert error is None
    assert 116 in layout._runs  # the chunks after the first were decoded as a run
    assert items[1:] == [
        Record((start.tsn + i) & U32_MAX, bytes([i]) * 100, 11, 0, False) for i in range(200)
    ]
    assert next_tsn == 100
    assert read_all([wire], start, fast=False) == (items, None, 100)


def test_a_run_stops_at_the_chunk_out_of_sequence() -> None:
    """A stream sequence number off in the middle of a run: the chunks before it are
    passed on, and the checked path refuses it with its own reason."""
    fmt = DataFormat()
    chunks = [Data(b"abcd", i, 1, i if i != 9 else 3, 0).encode() for i in range(20)]
    wire = fmt.init().encode() + b"".join(chunks)
    items, error, next_tsn = read_all([wire], Start(0, {}), fast=True)
    assert items[1:] == [Record(i, b"abcd", 0, 1, False) for i in range(9)]
    assert error == (
        "DATA chunk on stream 1 has stream sequence number 3, expected 9",
        CauseCode.INVALID_VALUES,
    )
    assert (items, error, next_tsn) == read_all([wire], Start(0, {}), fast=False)


def test_the_chunk_structs_kept_are_bounded() -> None:
    """A peer sending runs of many lengths makes the layout rebuild structs, not keep one
    per length."""
    layout = FastLayout(True, True, True)
    for length in range(16, 16 + 3 * fastpath._RUN_STRUCTS_KEPT):
        chunk = layout.whole_chunk(length)
        assert chunk.size == length
        assert chunk.unpack(bytes(length))[-1] == bytes(length - 16)
    assert len(layout._runs) <= fastpath._RUN_STRUCTS_KEPT


# -- ACK runs -----------------------------------------------------------------------------


@given(
    first=st.integers(0, U32_MAX) | st.integers(U32_MAX - 700, U32_MAX),
    count=st.integers(0, 1500) | st.sampled_from([1, 2, 255, 256, 257]),
)
@settings(max_examples=300)
def test_long_ack_runs_are_the_ack_chunks_of_the_run(first: int, count: int) -> None:
    """ack_chunks packs each ACK of a run of any length, across the TSN wrap, as
    Ack(tsn).encode() does; without TSNs, the constant chunk repeated."""
    tsns = [(first + i) & U32_MAX for i in range(count)]
    assert ack_chunks(first, count, True) == b"".join(Ack(t).encode() for t in tsns)
    assert ack_chunks(first, count, False) == ACK_WITHOUT_TSN * count
    assert len(fastpath._ACK_STRUCTS) <= fastpath._ACK_STRUCTS_KEPT


def test_the_ack_structs_kept_are_bounded() -> None:
    """Runs of many different lengths do not keep a struct each."""
    for count in range(1, 3 * fastpath._ACK_STRUCTS_KEPT):
        assert ack_chunks(5, count, True)[-4:] == struct.pack("!I", 5 + count - 1)
    assert len(fastpath._ACK_STRUCTS) <= fastpath._ACK_STRUCTS_KEPT


@st.composite
def ack_runs(draw: st.DrawFn) -> tuple[bytes, int, int]:
    """An INIT, then long runs of ACKs, with and without TSN mixed, now and then one with
    flags, a wrong TSN or one too many; how many DATA chunks are outstanding, and the
    oldest one's TSN (often just before the wrap)."""
    fmt = draw(formats)
    first = draw(st.integers(0, U32_MAX) | st.integers(U32_MAX - 300, U32_MAX))
    outstanding = draw(st.integers(0, 400))
    encoder = ChunkEncoder(fmt)
    wire = [encoder.send_init()]
    acked = 0
    for _ in range(draw(st.integers(1, 6))):
        kind = draw(st.sampled_from(["with", "with", "without", "flagged", "wrong", "data"]))
        count = draw(st.integers(1, 150))
        if kind in ("with", "without"):
            wire.append(ack_chunks((first + acked) & U32_MAX, count, kind == "with"))
            acked += count
        elif kind == "flagged":
            wire.append(b"\x03\x01\x00\x08" + struct.pack("!I", (first + acked) & U32_MAX))
            acked += 1
        elif kind == "wrong":
            wire.append(Ack((first + acked + draw(st.sampled_from([1, -1]))) & U32_MAX).encode())
        else:
            wire.append(encoder.send_data(b"x" * draw(st.integers(0, 5))))
    return b"".join(wire), outstanding, first


@given(stream=ack_runs(), cuts=cut_lists)
@settings(max_examples=300)
def test_long_ack_runs_are_judged_as_the_checked_path_does(
    stream: tuple[bytes, int, int], cuts: list[int]
) -> None:
    """Long runs of in-order ACKs, with and without TSNs mixed, across the wrap, split
    anywhere: judged as the connection judges them, the fast path's runs and the checked
    path's single ACKs are the same, and a run never goes beyond what is outstanding."""
    wire, outstanding, first = stream
    pieces = split_at(wire, cuts)
    start = Start(0, {})
    fast, fast_error, _ = read_all(
        pieces, start, fast=True, outstanding=outstanding, outstanding_tsn=first
    )
    checked, checked_error, _ = read_all(
        pieces, start, fast=False, outstanding=outstanding, outstanding_tsn=first
    )
    assert fast_error == checked_error
    assert normalized(fast, outstanding, first) == normalized(checked, outstanding, first)
