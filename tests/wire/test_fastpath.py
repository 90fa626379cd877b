"""The TCP mapping's fast path against the checked codec (wire/fastpath.py and
ChunkDecoder.read_chunks / ChunkEncoder.append_data): the same bytes out, the same chunks
and the same errors in, whatever the stream and however it is split; and a fuzzed fast
decoder either decodes or raises a clean MalformedMessage."""

from __future__ import annotations

import itertools
import struct
from collections.abc import Iterable
from typing import NamedTuple

from hypothesis import given, settings
from hypothesis import strategies as st

from tests.wire.test_tcpmapping import conversations, formats, small_bytes, split_at
from twisted_rserpool.wire.errors import CauseCode, MalformedMessage
from twisted_rserpool.wire.fastpath import ACK_WITHOUT_TSN, AckRun, ack_chunks, data_header
from twisted_rserpool.wire.tcpmapping import (
    Ack,
    Chunk,
    ChunkDecoder,
    ChunkEncoder,
    Data,
    DataFormat,
    Heartbeat,
    HeartbeatAck,
    Init,
)

U32_MAX = 0xFFFFFFFF
ALL_FORMATS = [
    DataFormat(t, s, p) for t in (True, False) for s in (True, False) for p in (True, False)
]
u32 = st.integers(0, U32_MAX)
cut_lists = st.lists(st.integers(0, 10_000), max_size=20)


class Record(NamedTuple):
    """What read_chunks makes of a DATA chunk."""

    tsn: int
    user_data: bytes
    ppid: int
    stream_identifier: int
    unordered: bool


Item = Record | int | Chunk


def read_all(
    pieces: Iterable[bytes],
    *,
    fast: bool,
    outstanding: int = 0,
    outstanding_tsn: int = 0,
    verify: bool = True,
    max_chunk_length: int = 0xFFFF,
) -> tuple[list[Item], tuple[str, int] | None]:
    """Everything read_chunks passes on for ``pieces``, and the error that ended it."""
    decoder = ChunkDecoder(fast=fast, verify_sequence=verify, max_chunk_length=max_chunk_length)
    items: list[Item] = []
    try:
        for piece in pieces:
            decoder.receive_data(piece)
            seen = len(items)
            decoder.read_chunks(items.append, Record, outstanding, outstanding_tsn)
            # What the connection retires: the runs, and the single ACKs it accepts.
            for item in items[seen:]:
                if type(item) is AckRun:
                    step = int(item)
                elif isinstance(item, int) and outstanding and item in (-1, outstanding_tsn):
                    step = 1
                else:
                    continue
                outstanding -= step
                outstanding_tsn = (outstanding_tsn + step) & U32_MAX
    except MalformedMessage as error:
        return items, (error.reason, error.cause)
    return items, None


def as_items(chunks: list[Chunk]) -> list[Item]:
    """The chunks next_chunk returns, in read_chunks' terms (TSNs counted by position)."""
    items: list[Item] = []
    tsn = 0
    for chunk in chunks:
        if isinstance(chunk, Data):
            items.append(
                Record(
                    tsn,
                    chunk.user_data,
                    chunk.effective_ppid,
                    chunk.effective_stream_identifier,
                    chunk.unordered,
                )
            )
            tsn += 1
        elif isinstance(chunk, Ack):
            items.append(-1 if chunk.tsn is None else chunk.tsn)
        else:
            items.append(chunk)
    return items


@st.composite
def corruptions(draw: st.DrawFn, wire: bytes) -> bytes:
    """``wire`` unchanged, with one byte after the INIT replaced, cut short, or followed by
    arbitrary bytes."""
    kind = draw(st.sampled_from(["none", "byte", "cut", "tail"]))
    if kind == "byte" and len(wire) > 4:
        position = draw(st.integers(4, len(wire) - 1))
        return wire[:position] + bytes([draw(st.integers(0, 255))]) + wire[position + 1 :]
    if kind == "cut":
        return wire[: draw(st.integers(0, len(wire)))]
    if kind == "tail":
        return wire + draw(st.binary(min_size=1, max_size=40))
    return wire


# -- encoding -----------------------------------------------------------------------------


@given(first=st.one_of(u32, st.integers(U32_MAX - 5, U32_MAX)), count=st.integers(1, 40))
def test_ack_runs_are_the_ack_chunks_of_the_run(first: int, count: int) -> None:
    """ack_chunks makes the bytes of Ack(tsn).encode() for each TSN of the run (wrapping
    after 2**32 - 1), or the constant 4-byte chunk without TSNs."""
    tsns = [(first + i) & U32_MAX for i in range(count)]
    assert ack_chunks(first, count, True) == b"".join(Ack(t).encode() for t in tsns)
    assert ack_chunks(first, count, False) == Ack(None).encode() * count
    assert Ack(None).encode() == ACK_WITHOUT_TSN


@given(fmt=formats, data=st.data())
def test_data_header_packs_the_header_of_data_encode(fmt: DataFormat, data: st.DataObject) -> None:
    """data_header's packer writes the header Data.encode() writes, for every format."""
    length, pack = data_header(fmt.has_tsn, fmt.has_stream, fmt.has_ppid)
    assert length == fmt.header_length
    user_data = data.draw(small_bytes)
    tsn, ppid = data.draw(u32), data.draw(u32)
    sid, ssn = data.draw(st.integers(0, 0xFFFF)), data.draw(st.integers(0, 0xFFFF))
    unordered = data.draw(st.booleans())
    chunk = Data(
        user_data,
        tsn if fmt.has_tsn else None,
        sid if fmt.has_stream else None,
        ssn if fmt.has_stream else None,
        ppid if fmt.has_ppid else None,
        unordered,
    )
    header = pack(0, 4 if unordered else 0, length + len(user_data), tsn, sid, ssn, ppid)
    assert chunk.encode().startswith(header)
    assert len(header) == length


@st.composite
def message_lists(draw: st.DrawFn, fmt: DataFormat) -> list[tuple[bytes, int, int, bool]]:
    return draw(
        st.lists(
            st.tuples(
                small_bytes,
                st.integers(0, 20) if fmt.has_ppid else st.just(0),
                st.integers(0, 3) if fmt.has_stream else st.just(0),
                st.booleans(),
            ),
            max_size=12,
        )
    )


@given(fmt=formats, data=st.data())
def test_encoder_writes_what_data_values_encode(fmt: DataFormat, data: st.DataObject) -> None:
    """ChunkEncoder (send_data and append_data, without Data values) writes exactly the
    bytes of the Data values the draft's numbering gives: TSN from 0, stream sequence
    numbers per stream from 0, none for unordered chunks."""
    messages = data.draw(message_lists(fmt))
    one, pieces = ChunkEncoder(fmt), ChunkEncoder(fmt)
    one.send_init()
    pieces.send_init()
    out: list[bytes] = []
    expected: list[bytes] = []
    next_ssn: dict[int, int] = {}
    for tsn, (user_data, ppid, stream, unordered) in enumerate(messages):
        ssn = 0 if unordered else next_ssn.get(stream, 0)
        if not unordered:
            next_ssn[stream] = ssn + 1
        expected.append(
            Data(
                user_data,
                tsn if fmt.has_tsn else None,
                stream if fmt.has_stream else None,
                ssn if fmt.has_stream else None,
                ppid if fmt.has_ppid else None,
                unordered,
            ).encode()
        )
        sent = one.send_data(user_data, ppid=ppid, stream_identifier=stream, unordered=unordered)
        assert sent == expected[-1]
        assert pieces.append_data(out, user_data, ppid, stream, unordered) == tsn
    assert b"".join(out) == b"".join(expected)


# -- decoding -----------------------------------------------------------------------------


@given(conversation=conversations(), cuts=cut_lists, data=st.data())
@settings(max_examples=150)
def test_fast_and_checked_decoders_agree(
    conversation: tuple[bytes, list[Chunk]], cuts: list[int], data: st.DataObject
) -> None:
    """For generated chunk streams, whole, damaged, or split at arbitrary boundaries, the
    fast path passes on the same chunks and fails with the same error at the same point as
    the checked path; undamaged, both give what next_chunk decodes."""
    wire, chunks = conversation
    damaged = data.draw(corruptions(wire))
    pieces = split_at(damaged, cuts)
    fast = read_all(pieces, fast=True)
    assert fast == read_all(pieces, fast=False)
    if damaged == wire:
        assert fast == (as_items(chunks), None)


@st.composite
def streams(draw: st.DrawFn) -> bytes:
    """A peer's byte stream with DATA chunks of up to 300 bytes of user data (of every
    padding), on several streams, ordered or not, between ACKs and heartbeats."""
    fmt = draw(formats)
    encoder = ChunkEncoder(fmt)
    wire = [encoder.send_init()]
    for _ in range(draw(st.integers(0, 20))):
        kind = draw(st.sampled_from(["data", "data", "data", "ack", "heartbeat", "answer"]))
        if kind == "data":
            size = draw(st.integers(0, 300))
            wire.append(
                encoder.send_data(
                    draw(st.binary(min_size=size, max_size=size)),
                    ppid=draw(st.integers(0, 20)) if fmt.has_ppid else 0,
                    stream_identifier=draw(st.integers(0, 3)) if fmt.has_stream else 0,
                    unordered=draw(st.booleans()),
                )
            )
        elif kind == "ack":
            wire.append(Ack(draw(st.none() | u32)).encode())
        else:
            kind_ = Heartbeat if kind == "heartbeat" else HeartbeatAck
            wire.append(kind_(draw(small_bytes)).encode())
    return b"".join(wire)


@given(wire=streams(), cuts=cut_lists, data=st.data())
@settings(max_examples=150)
def test_fast_and_checked_decoders_agree_on_longer_chunks(
    wire: bytes, cuts: list[int], data: st.DataObject
) -> None:
    """The same for streams with DATA chunks of up to 300 bytes, damaged or not."""
    pieces = split_at(data.draw(corruptions(wire)), cuts)
    assert read_all(pieces, fast=True) == read_all(pieces, fast=False)


@given(wire=streams(), cuts=cut_lists, limit=st.integers(8, 320))
@settings(max_examples=100)
def test_decoders_agree_without_sequence_checks_and_under_a_lower_limit(
    wire: bytes, cuts: list[int], limit: int
) -> None:
    """With verify_sequence off, and under a chunk limit the stream may exceed (refused
    with Lack of Resources), both paths still agree."""
    pieces = split_at(wire, cuts)
    assert read_all(pieces, fast=True, verify=False) == read_all(pieces, fast=False, verify=False)
    assert read_all(pieces, fast=True, max_chunk_length=limit) == read_all(
        pieces, fast=False, max_chunk_length=limit
    )


@st.composite
def numbered_streams(draw: st.DrawFn) -> bytes:
    """An INIT, then DATA chunks whose TSN and stream sequence number are mostly right and
    now and then one off (on up to three streams, ordered or not)."""
    fmt = draw(formats)
    wire = [fmt.init().encode()]
    next_ssn: dict[int, int] = {}
    for tsn in range(draw(st.integers(0, 12))):
        stream = draw(st.integers(0, 2))
        unordered = draw(st.booleans())
        ssn = next_ssn.get(stream, 0)
        if not unordered:
            next_ssn[stream] = (ssn + 1) & 0xFFFF
        off = draw(st.sampled_from([0, 0, 0, 0, 1, -1]))
        wire.append(
            Data(
                draw(small_bytes),
                (tsn + (off if draw(st.booleans()) else 0)) & U32_MAX if fmt.has_tsn else None,
                stream if fmt.has_stream else None,
                (ssn + off) & 0xFFFF if fmt.has_stream else None,
                0 if fmt.has_ppid else None,
                unordered,
            ).encode()
        )
    return b"".join(wire)


@given(wire=numbered_streams(), cuts=cut_lists, verify=st.booleans())
@settings(max_examples=150)
def test_sequence_numbers_are_checked_alike(wire: bytes, cuts: list[int], verify: bool) -> None:
    """A TSN or stream sequence number out of order is refused at the same chunk with the
    same reason on both paths (and both accept it without verify_sequence)."""
    pieces = split_at(wire, cuts)
    assert read_all(pieces, fast=True, verify=verify) == read_all(pieces, fast=False, verify=verify)


def normalized(items: list[Item], outstanding: int, first_tsn: int) -> list[object]:
    """ACKs as the connection judges them: each one that acknowledges the next outstanding
    DATA chunk is "ok" (a run counts as that many), any other is refused with its TSN."""
    result: list[object] = []
    done = 0
    for item in items:
        if type(item) is AckRun:
            assert done + item <= outstanding  # a run never goes beyond what is outstanding
            result += ["ok"] * item
            done += item
        elif isinstance(item, int):
            expected = (first_tsn + done) & U32_MAX
            if done < outstanding and item in (-1, expected):
                result.append("ok")
                done += 1
            else:
                result.append(("refused", item))
                break  # the connection ends here
        else:
            result.append(item)
    return result


@st.composite
def ack_streams(draw: st.DrawFn) -> tuple[bytes, int, int]:
    """An INIT, then ACKs (with or without TSN, now and then a wrong one) mixed with DATA
    chunks; how many DATA chunks we have outstanding, and the oldest one's TSN."""
    fmt = draw(formats)
    encoder = ChunkEncoder(fmt)
    wire = [encoder.send_init()]
    first = draw(st.one_of(u32, st.integers(U32_MAX - 3, U32_MAX)))
    outstanding = draw(st.integers(0, 30))
    acked = 0
    for _ in range(draw(st.integers(0, 40))):
        kind = draw(st.sampled_from(["ack", "ack", "ack", "bare ack", "data", "wrong"]))
        if kind == "data":
            wire.append(encoder.send_data(draw(small_bytes)))
        elif kind == "wrong":
            wire.append(Ack(draw(u32)).encode())
        else:
            tsn = (first + acked) & U32_MAX
            wire.append(Ack(None if kind == "bare ack" else tsn).encode())
            acked += 1
    return b"".join(wire), outstanding, first


@given(stream=ack_streams(), cuts=cut_lists)
@settings(max_examples=150)
def test_ack_runs_cover_exactly_the_acks_the_checked_path_accepts(
    stream: tuple[bytes, int, int], cuts: list[int]
) -> None:
    """Told which DATA chunks are outstanding, the fast path passes in-order ACKs on as
    runs; judged as the connection judges them, its ACKs and the checked path's are the
    same, and a run never covers a wrong TSN or more than is outstanding."""
    wire, outstanding, first = stream
    pieces = split_at(wire, cuts)
    fast, fast_error = read_all(pieces, fast=True, outstanding=outstanding, outstanding_tsn=first)
    checked, checked_error = read_all(
        pieces, fast=False, outstanding=outstanding, outstanding_tsn=first
    )
    assert fast_error == checked_error
    assert all(type(item) is not AckRun for item in checked)
    assert normalized(fast, outstanding, first) == normalized(checked, outstanding, first)


def test_an_ack_run_is_one_item() -> None:
    """A hundred ACKs for the hundred DATA chunks outstanding come as one AckRun, with or
    without TSNs; one more is passed on alone, for the caller to refuse."""
    for with_tsn in (True, False):
        wire = Init().encode() + ack_chunks(7, 101, with_tsn)
        items, error = read_all([wire], fast=True, outstanding=100, outstanding_tsn=7)
        assert error is None
        assert items == [Init(), 100, 107 if with_tsn else -1]
        assert type(items[1]) is AckRun


@st.composite
def chunkish(draw: st.DrawFn, most: int = 8) -> bytes:
    """Bytes that look like up to ``most`` chunks: mostly DATA and ACK, with lengths at and
    around the valid ones (or anything), any flags, and a body of any length."""
    pieces = []
    for _ in range(draw(st.integers(1, most))):
        chunk_type = draw(st.sampled_from([0, 3]) | st.sampled_from([1, 4, 5, 2, 6, 255]))
        lengths = [0, 4, 5, 8, 12, 16] if chunk_type == 3 else [0, 4, 8, 12, 15, 16, 17, 20, 0xFFFF]
        length = draw(st.sampled_from(lengths) | st.integers(0, 0xFFFF))
        flags = draw(st.sampled_from([0, 4]) | st.integers(0, 255))
        body = draw(st.binary(max_size=24))
        pieces.append(struct.pack("!BBH", chunk_type, flags, length) + body)
    return b"".join(pieces)


@given(
    garbage=chunkish() | st.binary(max_size=300),
    init=st.sampled_from(
        [
            b"",
            *(fmt.init().encode() for fmt in ALL_FORMATS),
        ]
    ),
    cuts=cut_lists,
    outstanding=st.integers(0, 5),
)
@settings(max_examples=500)
def test_fuzzed_fast_decoder_decodes_or_fails_cleanly(
    garbage: bytes, init: bytes, cuts: list[int], outstanding: int
) -> None:
    """Arbitrary bytes (after a valid INIT or not) give chunks or a MalformedMessage with an
    RFC cause, never another exception; and the same as the checked path."""
    pieces = split_at(init + garbage, cuts)
    fast, error = read_all(pieces, fast=True, outstanding=outstanding)
    checked, checked_error = read_all(pieces, fast=False, outstanding=outstanding)
    assert error == checked_error
    if outstanding:  # in-order ACKs come as runs on the fast path
        assert normalized(fast, outstanding, 0) == normalized(checked, outstanding, 0)
    else:
        assert fast == checked
    if error is not None:
        assert error[1] in set(CauseCode)


@given(
    conversation=conversations(),
    odd=chunkish(most=1),
    tail=st.binary(max_size=30),
    cuts=cut_lists,
    outstanding=st.integers(0, 3),
)
@settings(max_examples=500)
def test_a_valid_stream_then_an_odd_chunk(
    conversation: tuple[bytes, list[Chunk]],
    odd: bytes,
    tail: bytes,
    cuts: list[int],
    outstanding: int,
) -> None:
    """A valid stream followed by one chunk-like piece (any type, flags, length and body)
    and anything: the fast path agrees with the checked path on it."""
    wire, _ = conversation
    pieces = split_at(wire + odd + tail, cuts)
    fast, error = read_all(pieces, fast=True, outstanding=outstanding)
    checked, checked_error = read_all(pieces, fast=False, outstanding=outstanding)
    assert error == checked_error
    assert normalized(fast, outstanding, 0) == normalized(checked, outstanding, 0)


def test_every_short_chunk_header_is_judged_alike() -> None:
    """Exhaustively, for short chunks: every type, flags 0 or 4, lengths 0 to 24 and
    bodies of 0 to 20 bytes, after the INIT of the full and the bare format, with nothing,
    one or two DATA chunks outstanding, alone or before an ACK: the fast and the checked
    path agree."""
    for fmt in (DataFormat(), DataFormat(False, False, False)):
        for chunk_type, flags, length, size in itertools.product(
            (0, 1, 2, 3, 4, 5, 6), (0, 4), range(25), range(21)
        ):
            odd = struct.pack("!BBH", chunk_type, flags, length) + bytes(range(size))
            trailers = (b"", ACK_WITHOUT_TSN) if size in (0, 4, 8) else (b"",)
            for trailer, outstanding in itertools.product(trailers, (0, 1, 2)):
                wire = fmt.init().encode() + odd + trailer
                fast = read_all([wire], fast=True, outstanding=outstanding)
                checked = read_all([wire], fast=False, outstanding=outstanding)
                assert fast[1] == checked[1], (wire, outstanding)
                assert normalized(fast[0], outstanding, 0) == normalized(
                    checked[0], outstanding, 0
                ), (wire, outstanding)


def test_an_ack_with_flags_counts_once() -> None:
    """An ACK whose (ignored) flags are not zero acknowledges one DATA chunk like any
    other: the run after it starts one later."""
    flagged = b"\x03\x04\x00\x04"
    wire = Init().encode() + flagged + ACK_WITHOUT_TSN * 2
    items, error = read_all([wire], fast=True, outstanding=2)
    assert error is None
    assert items == [Init(), 1, 1, -1]
    assert [type(item) for item in items[1:]] == [AckRun, AckRun, int]


def test_scan_stops_at_a_data_chunk_out_of_sequence() -> None:
    """A DATA chunk whose TSN is not the next one is left to the checked path, which
    refuses it with the reason it always gave."""
    wire = Init().encode() + Data(b"x", 0, 0, 0, 0).encode() + Data(b"y", 5, 0, 1, 0).encode()
    items, error = read_all([wire], fast=True)
    assert items == [Init(), Record(0, b"x", 0, 0, False)]
    assert error == ("DATA chunk has TSN 5, expected 1", CauseCode.INVALID_VALUES)


def test_a_read_is_decoded_in_place() -> None:
    """A read that finds nothing left over is decoded without a copy: a DATA chunk's user
    data is one slice of it."""
    encoder = ChunkEncoder()
    decoder = ChunkDecoder()
    decoder.receive_data(encoder.send_init())
    ignored: list[Item] = []
    decoder.read_chunks(ignored.append, Record)
    first = encoder.send_data(b"a" * 100)
    second = encoder.send_data(b"b" * 3)
    wire = first + second[:10]
    decoder.receive_data(wire)
    assert decoder._buffer is wire
    items: list[Item] = []
    decoder.read_chunks(items.append, Record)
    assert items == [Record(0, b"a" * 100, 0, 0, False)]
    assert decoder.buffered == 10  # the incomplete chunk waits
    decoder.receive_data(second[10:])
    assert isinstance(decoder._buffer, bytearray)  # the rest joined to it: a copy
    decoder.read_chunks(items.append, Record)
    assert items[1:] == [Record(1, b"bbb", 0, 0, False)]
