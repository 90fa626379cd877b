"""Tests for the RSerPool TCP mapping chunk codec (draft-ietf-rserpool-tcpmapping-03)."""

from __future__ import annotations

import itertools
import struct
import time
from collections.abc import Iterable, Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from twisted_rserpool.wire.errors import CauseCode, MalformedMessage
from twisted_rserpool.wire.tcpmapping import (
    ASAP_PPID,
    ENRP_PPID,
    MAX_CHUNK_LENGTH,
    Ack,
    Chunk,
    ChunkDecoder,
    ChunkEncoder,
    Data,
    DataFormat,
    Heartbeat,
    HeartbeatAck,
    Init,
    decode_chunk,
)

ALL_FORMATS = [
    DataFormat(t, s, p) for t in (True, False) for s in (True, False) for p in (True, False)
]

formats = st.builds(DataFormat, st.booleans(), st.booleans(), st.booleans())
u16 = st.integers(0, 0xFFFF)
u32 = st.integers(0, 0xFFFFFFFF)
small_bytes = st.binary(max_size=64)


@st.composite
def data_chunks(draw: st.DrawFn, fmt: DataFormat) -> Data:
    has_stream = fmt.has_stream
    return Data(
        user_data=draw(small_bytes),
        tsn=draw(u32) if fmt.has_tsn else None,
        stream_identifier=draw(u16) if has_stream else None,
        stream_sequence_number=draw(u16) if has_stream else None,
        ppid=draw(u32) if fmt.has_ppid else None,
        unordered=draw(st.booleans()),
    )


def header(chunk_type: int, flags: int, length: int) -> bytes:
    return struct.pack("!BBH", chunk_type, flags, length)


def decode_all(pieces: Iterable[bytes], decoder: ChunkDecoder | None = None) -> list[Chunk]:
    """Feed ``pieces`` to a decoder, draining it after each, and return every chunk."""
    decoder = ChunkDecoder() if decoder is None else decoder
    chunks: list[Chunk] = []
    for piece in pieces:
        decoder.receive_data(piece)
        while (chunk := decoder.next_chunk()) is not None:
            chunks.append(chunk)
    return chunks


def split_at(data: bytes, cuts: Sequence[int]) -> list[bytes]:
    points = sorted({0, len(data), *(c % (len(data) + 1) for c in cuts)})
    return [data[a:b] for a, b in itertools.pairwise(points)]


# -- chunk values -------------------------------------------------------------------------


def test_ppid_constants() -> None:
    """ASAP and ENRP use their IANA SCTP payload protocol identifiers, 11 and 12."""
    assert (ASAP_PPID, ENRP_PPID) == (11, 12)


def test_chunk_types() -> None:
    """Each chunk value carries the draft's chunk type as TYPE."""
    assert (Data.TYPE, Init.TYPE, Ack.TYPE, Heartbeat.TYPE, HeartbeatAck.TYPE) == (0, 1, 3, 4, 5)


@pytest.mark.parametrize("fmt", ALL_FORMATS)
def test_init_round_trip_every_flag_combination(fmt: DataFormat) -> None:
    """INIT encodes as type 1, flags T=0x01 S=0x02 P=0x04, length 4, and decodes back."""
    init = fmt.init()
    flags = (not fmt.has_tsn) * 1 | (not fmt.has_stream) * 2 | (not fmt.has_ppid) * 4
    assert init.flags == flags
    assert init.encode() == bytes([1, flags, 0, 4])
    assert decode_chunk(init.encode()) == init
    assert init.data_format == fmt


def test_init_reserved_flags_ignored() -> None:
    """The five high INIT flag bits are reserved and ignored on receipt."""
    assert decode_chunk(bytes([1, 0xFA, 0, 4])) == Init(omit_tsn=False, omit_stream=True)


@given(fmt=formats, data=st.data())
@settings(max_examples=150)
def test_data_round_trip(fmt: DataFormat, data: st.DataObject) -> None:
    """DATA in any format encodes padded to 4 bytes with zeros, its length field excluding
    the padding, and decodes back to the same value with the peer's format."""
    chunk = data.draw(data_chunks(fmt))
    encoded = chunk.encode()
    length = fmt.header_length + len(chunk.user_data)
    assert len(encoded) % 4 == 0
    assert len(encoded) - length < 4
    assert encoded[length:] == bytes(len(encoded) - length)
    assert encoded[0] == 0
    assert encoded[1] == (0x04 if chunk.unordered else 0)
    assert struct.unpack_from("!H", encoded, 2)[0] == length
    assert chunk.data_format == fmt
    assert decode_chunk(encoded, fmt) == chunk
    assert decode_chunk(encoded[:length], fmt) == chunk


def test_data_wire_layout_full() -> None:
    """With INIT flags 0x00 (draft example 1) DATA carries TSN, stream word and PPID."""
    chunk = Data(b"abcde", tsn=7, stream_identifier=2, stream_sequence_number=9, ppid=ASAP_PPID)
    assert chunk.encode() == (
        bytes([0, 0, 0, 21]) + bytes([0, 0, 0, 7, 0, 2, 0, 9, 0, 0, 0, 11]) + b"abcde\0\0\0"
    )


def test_data_wire_layout_examples() -> None:
    """The draft's examples 2-4: flags 0x01, 0x05 and 0x07 drop the words they name."""
    stream_and_ppid = Data(b"x", stream_identifier=1, stream_sequence_number=2, ppid=3)
    assert stream_and_ppid.encode() == bytes([0, 0, 0, 13, 0, 1, 0, 2, 0, 0, 0, 3]) + b"x\0\0\0"
    assert decode_chunk(stream_and_ppid.encode(), Init(omit_tsn=True).data_format) == (
        stream_and_ppid
    )
    stream_only = Data(b"x", stream_identifier=1, stream_sequence_number=2, unordered=True)
    assert stream_only.encode() == bytes([0, 4, 0, 9, 0, 1, 0, 2]) + b"x\0\0\0"
    bare = Data(b"abcd")
    assert bare.encode() == bytes([0, 0, 0, 8]) + b"abcd"
    assert decode_chunk(bare.encode(), DataFormat(False, False, False)) == bare


def test_data_implicit_values() -> None:
    """An absent stream word means stream 0, an absent PPID means PPID 0."""
    assert Data(b"").effective_stream_identifier == 0
    assert Data(b"").effective_ppid == 0
    full = Data(b"", stream_identifier=5, stream_sequence_number=0, ppid=ENRP_PPID)
    assert (full.effective_stream_identifier, full.effective_ppid) == (5, 12)


def test_data_reserved_flags_ignored() -> None:
    """DATA flag bits other than U are reserved and ignored on receipt."""
    encoded = bytes([0, 0xFB, 0, 5]) + b"z\0\0\0"
    assert decode_chunk(encoded, DataFormat(False, False, False)) == Data(b"z")


@pytest.mark.parametrize(
    "kwargs",
    [
        {"tsn": -1},
        {"tsn": 2**32},
        {"ppid": 2**32},
        {"stream_identifier": 1},
        {"stream_sequence_number": 1},
        {"stream_identifier": 65536, "stream_sequence_number": 0},
        {"stream_identifier": 0, "stream_sequence_number": -1},
    ],
)
def test_data_refuses_bad_values(kwargs: dict[str, int]) -> None:
    """A DATA value with a field out of range, or half a stream word, is refused."""
    with pytest.raises(ValueError):
        Data(b"", **kwargs)  # type: ignore[arg-type]


def test_data_size_limit() -> None:
    """The largest DATA fills the 16-bit length exactly; one byte more is refused."""
    fmt = DataFormat()
    biggest = Data(
        bytes(MAX_CHUNK_LENGTH - 16), tsn=0, stream_identifier=0, stream_sequence_number=0, ppid=0
    )
    assert decode_chunk(biggest.encode(), fmt) == biggest
    with pytest.raises(ValueError, match="exceeds"):
        Data(
            bytes(MAX_CHUNK_LENGTH - 15),
            tsn=0,
            stream_identifier=0,
            stream_sequence_number=0,
            ppid=0,
        )
    assert len(Data(bytes(MAX_CHUNK_LENGTH - 4)).encode()) == MAX_CHUNK_LENGTH + 1


@given(tsn=st.none() | u32)
def test_ack_round_trip(tsn: int | None) -> None:
    """ACK is 4 bytes without a TSN and 8 with one, and decodes back."""
    ack = Ack(tsn)
    encoded = ack.encode()
    assert encoded[:2] == bytes([3, 0])
    assert len(encoded) == (4 if tsn is None else 8)
    assert struct.unpack_from("!H", encoded, 2)[0] == len(encoded)
    assert decode_chunk(encoded) == ack


def test_flags_of_ack_and_heartbeats_ignored() -> None:
    """ACK, HEARTBEAT and HEARTBEAT ACK flags are ignored on receipt."""
    assert decode_chunk(header(3, 0xFF, 8) + bytes([0, 0, 0, 9])) == Ack(9)
    heartbeat = header(4, 0x80, 8) + struct.pack("!HH", 1, 4)
    assert decode_chunk(heartbeat) == Heartbeat(b"")
    assert decode_chunk(b"\x05" + heartbeat[1:]) == HeartbeatAck(b"")


@pytest.mark.parametrize("fmt", [DataFormat(), DataFormat(has_tsn=False)])
def test_ack_answers_data(fmt: DataFormat) -> None:
    """Ack(data.tsn) carries the TSN of the DATA it answers, or none when the data sender's
    INIT suppressed TSNs."""
    encoder = ChunkEncoder(fmt)
    data = decode_all([encoder.send_init(), encoder.send_data(b"m")])[1]
    assert isinstance(data, Data)
    assert len(Ack(data.tsn).encode()) == (8 if fmt.has_tsn else 4)


def test_ack_refuses_bad_tsn() -> None:
    """An ACK TSN outside 32 bits is refused."""
    with pytest.raises(ValueError, match="tsn"):
        Ack(2**32)


@given(info=small_bytes, kind=st.sampled_from([Heartbeat, HeartbeatAck]))
@settings(max_examples=100)
def test_heartbeat_round_trip(info: bytes, kind: type[Heartbeat | HeartbeatAck]) -> None:
    """HEARTBEAT and HEARTBEAT ACK carry one Heartbeat Info TLV (type 1, length counting
    its 4-byte header) holding the sender's bytes unchanged, and decode back."""
    chunk = kind(info)
    encoded = chunk.encode()
    assert encoded[0] == kind.TYPE
    assert struct.unpack_from("!HHH", encoded, 2) == (8 + len(info), 1, 4 + len(info))
    assert encoded[8 : 8 + len(info)] == info
    assert encoded[8 + len(info) :] == bytes(-len(info) % 4)
    assert decode_chunk(encoded) == chunk


def test_heartbeat_acknowledge_echoes_info() -> None:
    """The HEARTBEAT ACK answering a HEARTBEAT carries the same Heartbeat Info."""
    assert Heartbeat(b"\x01\x02\x03").acknowledge() == HeartbeatAck(b"\x01\x02\x03")


def test_heartbeat_length_may_count_tlv_padding() -> None:
    """A chunk length that counts the Heartbeat Info parameter's padding is accepted and the
    padding is not part of the info."""
    encoded = header(4, 0, 12) + struct.pack("!HH", 1, 5) + b"a\0\0\0"
    assert decode_chunk(encoded) == Heartbeat(b"a")


def test_heartbeat_size_limit() -> None:
    """Heartbeat info that would overflow the 16-bit chunk length is refused."""
    Heartbeat(bytes(MAX_CHUNK_LENGTH - 8))
    with pytest.raises(ValueError, match="exceeds"):
        HeartbeatAck(bytes(MAX_CHUNK_LENGTH - 7))


@pytest.mark.parametrize(
    ("encoded", "reason"),
    [
        (header(4, 0, 8) + struct.pack("!HH", 2, 4), "parameter type 2"),
        (header(5, 0, 8) + struct.pack("!HH", 1, 3), "Heartbeat Info length 3"),
        (header(4, 0, 8) + struct.pack("!HH", 1, 5), "Heartbeat Info length 5"),
        (header(4, 0, 16) + struct.pack("!HH", 1, 4) + bytes(8), "Heartbeat Info length 4"),
        (header(4, 0, 4), "no room"),
    ],
)
def test_heartbeat_malformed_info(encoded: bytes, reason: str) -> None:
    """A HEARTBEAT (ACK) without exactly one well-formed Heartbeat Info TLV is malformed."""
    with pytest.raises(MalformedMessage, match=reason) as caught:
        decode_chunk(encoded + bytes(-len(encoded) % 4))
    assert caught.value.cause == CauseCode.INVALID_VALUES
    assert not caught.value.report


@pytest.mark.parametrize(
    ("encoded", "reason"),
    [
        (b"\x01\x00", "too short"),
        (header(1, 0, 8) + bytes(4), "INIT chunk length 8"),
        (header(3, 0, 6) + bytes(4), "ACK chunk length 6"),
        (header(3, 0, 12) + bytes(8), "ACK chunk length 12"),
        (header(3, 0, 2), "shorter than the chunk header"),
        (header(3, 0, 8) + bytes(8), "does not match"),
        (header(3, 0, 8), "does not match"),
        (header(0, 0, 8) + bytes(4), "before the peer's INIT"),
    ],
)
def test_decode_chunk_malformed(encoded: bytes, reason: str) -> None:
    """Bad lengths, truncation and DATA without a known format are malformed."""
    with pytest.raises(MalformedMessage, match=reason):
        decode_chunk(encoded)


def test_decode_chunk_data_shorter_than_format() -> None:
    """A DATA chunk shorter than the header the peer's format requires is malformed."""
    with pytest.raises(MalformedMessage, match="shorter than the 16-byte header"):
        decode_chunk(header(0, 0, 12) + bytes(8), DataFormat())


@pytest.mark.parametrize("chunk_type", [2, 6, 64, 128, 254, 255])
def test_reserved_chunk_types_unrecognized(chunk_type: int) -> None:
    """Chunk types 2 and 6-255 are reserved: decoding refuses them as unrecognized."""
    with pytest.raises(MalformedMessage, match="reserved") as caught:
        decode_chunk(header(chunk_type, 0, 4))
    assert caught.value.cause == CauseCode.UNRECOGNIZED_MESSAGE


# -- stream decoder -----------------------------------------------------------------------


@st.composite
def conversations(draw: st.DrawFn) -> tuple[bytes, list[Chunk]]:
    """A peer's byte stream from ChunkEncoder and the chunks it holds, in order."""
    fmt = draw(formats)
    encoder = ChunkEncoder(fmt)
    wire = [encoder.send_init()]
    expected: list[Chunk] = [fmt.init()]
    next_ssn: dict[int, int] = {}
    for index in range(draw(st.integers(0, 12))):
        kind = draw(st.sampled_from(["data", "data", "ack", "heartbeat", "heartbeat_ack"]))
        if kind == "data":
            user_data = draw(small_bytes)
            stream = draw(st.integers(0, 3)) if fmt.has_stream else 0
            ppid = draw(st.sampled_from([0, ASAP_PPID, ENRP_PPID])) if fmt.has_ppid else 0
            unordered = draw(st.booleans())
            ssn = 0 if unordered else next_ssn.get(stream, 0)
            if not unordered:
                next_ssn[stream] = ssn + 1
            tsn = sum(isinstance(c, Data) for c in expected)
            wire.append(
                encoder.send_data(
                    user_data, ppid=ppid, stream_identifier=stream, unordered=unordered
                )
            )
            expected.append(
                Data(
                    user_data,
                    tsn if fmt.has_tsn else None,
                    stream if fmt.has_stream else None,
                    ssn if fmt.has_stream else None,
                    ppid if fmt.has_ppid else None,
                    unordered,
                )
            )
        else:
            chunk: Chunk
            if kind == "ack":
                chunk = Ack(draw(st.none() | u32))
            elif kind == "heartbeat":
                chunk = Heartbeat(draw(small_bytes))
            else:
                chunk = HeartbeatAck(index.to_bytes(2, "big"))
            wire.append(chunk.encode())
            expected.append(chunk)
    return b"".join(wire), expected


@given(conversation=conversations())
@settings(max_examples=60)
def test_stream_whole_input(conversation: tuple[bytes, list[Chunk]]) -> None:
    """The decoder yields the encoder's chunks, numbered from 0, from the whole stream."""
    wire, expected = conversation
    decoder = ChunkDecoder()
    assert decode_all([wire], decoder) == expected
    assert decoder.buffered == 0
    assert decoder.data_format == expected[0].data_format  # type: ignore[union-attr]


@given(conversation=conversations())
@settings(max_examples=40)
def test_stream_one_byte_at_a_time(conversation: tuple[bytes, list[Chunk]]) -> None:
    """Fed one byte at a time, the decoder yields the same chunks as from whole input."""
    wire, expected = conversation
    assert decode_all(wire[i : i + 1] for i in range(len(wire))) == expected


@given(conversation=conversations(), cuts=st.lists(st.integers(0, 10_000), max_size=20))
@settings(max_examples=60)
def test_stream_random_splits(conversation: tuple[bytes, list[Chunk]], cuts: list[int]) -> None:
    """Fed in random pieces, the decoder yields the same chunks as from whole input."""
    wire, expected = conversation
    assert decode_all(split_at(wire, cuts)) == expected


def test_stream_end_after_complete_chunks() -> None:
    """After the peer closes at a chunk boundary, next_chunk returns None."""
    decoder = ChunkDecoder()
    assert decode_all([Init().encode(), Ack(None).encode(), b""], decoder) == [Init(), Ack()]
    assert decoder.eof_received
    assert decoder.next_chunk() is None


def test_stream_end_without_final_padding() -> None:
    """A stream that closes right after a chunk, before its padding, loses nothing."""
    encoded = Heartbeat(b"a").encode()
    chunks = decode_all([Init().encode(), encoded[:9], b""])
    assert chunks == [Init(), Heartbeat(b"a")]


@pytest.mark.parametrize("cut", [1, 3, 5, 9])
def test_stream_end_inside_chunk(cut: int) -> None:
    """A stream that closes inside a chunk is malformed."""
    wire = Init().encode() + Heartbeat(b"abcd").encode()
    decoder = ChunkDecoder()
    decode_all([wire[: 4 + cut]], decoder)
    decoder.receive_data(b"")
    with pytest.raises(MalformedMessage, match="stream ended inside"):
        decoder.next_chunk()


def test_receive_after_end_refused() -> None:
    """Bytes after the end of the stream are a caller error."""
    decoder = ChunkDecoder()
    decoder.receive_data(b"")
    with pytest.raises(RuntimeError):
        decoder.receive_data(b"\x01")


def test_padding_content_ignored() -> None:
    """Padding bytes are skipped whatever their value."""
    wire = Init().encode() + header(4, 0, 9) + struct.pack("!HH", 1, 5) + b"a\xff\xee\xdd"
    assert decode_all([wire + Ack(1).encode()]) == [Init(), Heartbeat(b"a"), Ack(1)]


def test_padding_arrives_later() -> None:
    """Padding that arrives in a later piece than its chunk is still skipped."""
    encoded = Heartbeat(b"a").encode()
    decoder = ChunkDecoder()
    assert decode_all([Init().encode() + encoded[:9]], decoder) == [Init(), Heartbeat(b"a")]
    assert decode_all([encoded[9:10], encoded[10:] + Ack(None).encode()], decoder) == [Ack()]


@given(fmt=formats, flags=st.integers(0, 255))
@settings(max_examples=30)
def test_decoder_learns_format_from_init(fmt: DataFormat, flags: int) -> None:
    """The peer's INIT, reserved bits and all, fixes how its DATA chunks are decoded."""
    init_flags = fmt.init().flags | (flags & 0xF8)
    decoder = ChunkDecoder()
    assert decoder.data_format is None
    encoder = ChunkEncoder(fmt)
    encoder.send_init()
    wire = bytes([1, init_flags, 0, 4]) + encoder.send_data(b"payload")
    chunks = decode_all([wire], decoder)
    assert decoder.data_format == fmt
    assert isinstance(chunks[1], Data)
    assert chunks[1].user_data == b"payload"


@pytest.mark.parametrize(
    "first", [Data(b"x").encode(), Ack(None).encode(), Heartbeat(b"").encode()]
)
def test_chunk_before_init(first: bytes) -> None:
    """The peer's first chunk must be its INIT; any other first chunk is malformed."""
    decoder = ChunkDecoder()
    decoder.receive_data(first[:4])
    with pytest.raises(MalformedMessage, match="before the peer's INIT") as caught:
        decoder.next_chunk()
    assert caught.value.cause == CauseCode.INVALID_VALUES
    assert not caught.value.report


def test_second_init() -> None:
    """An INIT after the first one is malformed."""
    decoder = ChunkDecoder()
    decoder.receive_data(Init().encode() + Init(omit_tsn=True).encode())
    assert decoder.next_chunk() == Init()
    with pytest.raises(MalformedMessage, match="second INIT"):
        decoder.next_chunk()


@pytest.mark.parametrize(
    ("chunk_header", "reason"),
    [
        (header(0, 0, 3), "shorter than the chunk header"),
        (header(0, 0, 15), "shorter than the 16-byte header"),
        (header(1, 0, 5), "INIT chunk length 5"),
        (header(3, 0, 5), "ACK chunk length 5"),
        (header(4, 0, 7), "no room"),
        (header(5, 0, 0), "shorter than the chunk header"),
    ],
)
def test_bad_length_refused_from_header(chunk_header: bytes, reason: str) -> None:
    """A chunk length impossible for its type is malformed as soon as the header arrives."""
    decoder = ChunkDecoder()
    decoder.receive_data(Init().encode() + chunk_header)
    assert decoder.next_chunk() == Init()
    with pytest.raises(MalformedMessage, match=reason):
        decoder.next_chunk()


@pytest.mark.parametrize("chunk_type", [2, 6, 200, 255])
def test_reserved_type_refused_from_header(chunk_type: int) -> None:
    """A reserved chunk type is refused as unrecognized without waiting for its value,
    before and after INIT."""
    for prefix in (b"", Init().encode()):
        with pytest.raises(MalformedMessage, match="reserved") as caught:
            decode_all([prefix + header(chunk_type, 0, 1000)])
        assert caught.value.cause == CauseCode.UNRECOGNIZED_MESSAGE


def test_oversize_chunk_refused_from_header() -> None:
    """A chunk longer than max_chunk_length is refused for lack of resources as soon as
    its header arrives."""
    decoder = ChunkDecoder(max_chunk_length=1024)
    decoder.receive_data(Init().encode() + header(0, 0, 1025))
    assert decoder.next_chunk() == Init()
    with pytest.raises(MalformedMessage, match="exceeds the limit of 1024") as caught:
        decoder.next_chunk()
    assert caught.value.cause == CauseCode.LACK_OF_RESOURCES


def test_chunk_at_size_limit_accepted() -> None:
    """A chunk exactly max_chunk_length long is accepted."""
    chunk = Heartbeat(bytes(1016))
    assert (
        decode_all([Init().encode(), chunk.encode()], ChunkDecoder(max_chunk_length=1024))[1]
        == chunk
    )


def test_overfull_buffer_refused() -> None:
    """Receiving more undecoded bytes than max_buffer_size is refused for lack of
    resources at once, and the decoder stays failed."""
    decoder = ChunkDecoder(max_chunk_length=100, max_buffer_size=200)
    decoder.receive_data(Init().encode() + bytes(150))
    with pytest.raises(MalformedMessage, match="more than 200") as caught:
        decoder.receive_data(bytes(100))
    assert caught.value.cause == CauseCode.LACK_OF_RESOURCES
    with pytest.raises(MalformedMessage, match="more than 200"):
        decoder.next_chunk()


def test_drained_buffer_stays_within_limit() -> None:
    """A decoder drained after each piece accepts any number of bytes under a small limit."""
    decoder = ChunkDecoder(max_chunk_length=100, max_buffer_size=200)
    chunks = decode_all([Init().encode()] + [Ack(i).encode() * 10 for i in range(1000)], decoder)
    assert len(chunks) == 10_001


def test_limits_validated() -> None:
    """Limits that would refuse every chunk, or a full chunk, are refused."""
    with pytest.raises(ValueError, match="max_chunk_length"):
        ChunkDecoder(max_chunk_length=4)
    with pytest.raises(ValueError, match="max_chunk_length"):
        ChunkDecoder(max_chunk_length=MAX_CHUNK_LENGTH + 1)
    with pytest.raises(ValueError, match="max_buffer_size"):
        ChunkDecoder(max_chunk_length=1000, max_buffer_size=1000)


def test_error_is_final() -> None:
    """After a malformed chunk every call raises the same error."""
    decoder = ChunkDecoder()
    decoder.receive_data(header(9, 0, 4))
    with pytest.raises(MalformedMessage) as first:
        decoder.next_chunk()
    with pytest.raises(MalformedMessage) as second:
        decoder.receive_data(Init().encode())
    assert second.value is first.value
    with pytest.raises(MalformedMessage) as third:
        decoder.next_chunk()
    assert third.value is first.value


def test_wrong_tsn_refused() -> None:
    """A DATA chunk whose TSN does not follow on from 0 is malformed."""
    wire = Init().encode() + Data(b"a", 0, 0, 0, 0).encode() + Data(b"b", 2, 0, 1, 0).encode()
    decoder = ChunkDecoder()
    decoder.receive_data(wire)
    assert decoder.next_chunk() == Init()
    assert decoder.next_chunk() == Data(b"a", 0, 0, 0, 0)
    with pytest.raises(MalformedMessage, match="TSN 2, expected 1"):
        decoder.next_chunk()


def test_wrong_stream_sequence_number_refused() -> None:
    """An ordered DATA chunk whose stream sequence number does not follow on from 0 in its
    stream is malformed; unordered chunks are not checked."""
    fmt = DataFormat(has_tsn=False)
    good = [
        fmt.init().encode(),
        Data(b"a", None, 1, 0, 0).encode(),
        Data(b"b", None, 2, 0, 0).encode(),
        Data(b"c", None, 1, 7, 0, unordered=True).encode(),
        Data(b"d", None, 1, 1, 0).encode(),
    ]
    assert len(decode_all(good)) == 5
    bad = Data(b"e", None, 2, 5, 0).encode()
    with pytest.raises(MalformedMessage, match="stream 2 has stream sequence number 5"):
        decode_all([b"".join(good) + bad])


def test_sequence_check_can_be_disabled() -> None:
    """With verify_sequence off, TSNs and stream sequence numbers are passed through."""
    wire = Init().encode() + Data(b"a", 5, 0, 9, 0).encode()
    chunks = decode_all([wire], ChunkDecoder(verify_sequence=False))
    assert chunks[1] == Data(b"a", 5, 0, 9, 0)


# -- encoder ------------------------------------------------------------------------------


def test_encoder_numbers_data() -> None:
    """TSNs count from 0 per connection, stream sequence numbers from 0 per stream, and
    unordered chunks take no stream sequence number."""
    encoder = ChunkEncoder()
    assert encoder.send_init() == Init().encode()
    sent = [
        encoder.send_data(b"a", ppid=ASAP_PPID),
        encoder.send_data(b"b", stream_identifier=1),
        encoder.send_data(b"c", stream_identifier=1, unordered=True),
        encoder.send_data(b"d", stream_identifier=1, ppid=ENRP_PPID),
        encoder.send_data(b"e"),
    ]
    assert [decode_chunk(s, encoder.fmt) for s in sent] == [
        Data(b"a", 0, 0, 0, ASAP_PPID),
        Data(b"b", 1, 1, 0, 0),
        Data(b"c", 2, 1, 0, 0, unordered=True),
        Data(b"d", 3, 1, 1, ENRP_PPID),
        Data(b"e", 4, 0, 1, 0),
    ]
    assert encoder.next_tsn == 5


def test_encoder_counts_omitted_tsn() -> None:
    """With TSNs omitted on the wire the encoder still counts them (they are implicit)."""
    encoder = ChunkEncoder(DataFormat(has_tsn=False, has_stream=False, has_ppid=False))
    assert encoder.send_init() == bytes([1, 7, 0, 4])
    assert encoder.send_data(b"abc") == bytes([0, 0, 0, 7]) + b"abc\0"
    assert encoder.next_tsn == 1


def test_encoder_stream_sequence_wraps() -> None:
    """The stream sequence number wraps from 65535 to 0."""
    encoder = ChunkEncoder(DataFormat(has_tsn=False, has_ppid=False))
    encoder.send_init()
    for _ in range(65536):
        encoder.send_data(b"")
    assert decode_chunk(encoder.send_data(b""), encoder.fmt) == Data(b"", None, 0, 0)


def test_encoder_requires_init_first_and_once() -> None:
    """DATA before INIT, and a second INIT, are caller errors."""
    encoder = ChunkEncoder()
    with pytest.raises(RuntimeError, match="INIT must be sent"):
        encoder.send_data(b"")
    encoder.send_init()
    with pytest.raises(RuntimeError, match="already sent"):
        encoder.send_init()


def test_encoder_refuses_what_the_format_cannot_carry() -> None:
    """A PPID or a stream other than 0 cannot be sent when INIT omitted that word, and a
    refused chunk consumes no TSN."""
    encoder = ChunkEncoder(DataFormat(has_stream=False, has_ppid=False))
    encoder.send_init()
    with pytest.raises(ValueError, match="PPID"):
        encoder.send_data(b"", ppid=ASAP_PPID)
    with pytest.raises(ValueError, match="stream"):
        encoder.send_data(b"", stream_identifier=1)
    full = ChunkEncoder()
    full.send_init()
    with pytest.raises(ValueError, match="exceeds"):
        full.send_data(bytes(MAX_CHUNK_LENGTH))
    with pytest.raises(ValueError, match="stream_identifier"):
        full.send_data(b"", stream_identifier=65536)
    assert (encoder.next_tsn, full.next_tsn) == (0, 0)


# -- malformed input, fuzzed ----------------------------------------------------------------


def run_to_outcome(pieces: Iterable[bytes], decoder: ChunkDecoder) -> list[Chunk]:
    """Feed pieces then the end of the stream; only MalformedMessage may escape."""
    chunks = decode_all(pieces, decoder)
    decoder.receive_data(b"")
    while (chunk := decoder.next_chunk()) is not None:
        chunks.append(chunk)
    return chunks


@given(
    prefix=st.sampled_from([b""] + [f.init().encode() for f in ALL_FORMATS]),
    noise=st.binary(max_size=300),
    cuts=st.lists(st.integers(0, 400), max_size=8),
    max_chunk_length=st.sampled_from([8, 64, MAX_CHUNK_LENGTH]),
)
@settings(max_examples=400, deadline=2000)
def test_fuzz_random_bytes(
    prefix: bytes, noise: bytes, cuts: list[int], max_chunk_length: int
) -> None:
    """Random bytes, after an INIT or not, in any split, end in chunks or MalformedMessage,
    never another exception."""
    decoder = ChunkDecoder(max_chunk_length=max_chunk_length, max_buffer_size=max_chunk_length + 3)
    try:
        chunks = run_to_outcome(split_at(prefix + noise, cuts), decoder)
    except MalformedMessage as error:
        assert isinstance(error.cause, int)
    else:
        assert all(isinstance(c, Init | Data | Ack | Heartbeat | HeartbeatAck) for c in chunks)


@given(
    conversation=conversations(),
    flips=st.lists(st.tuples(st.integers(0, 10_000), st.integers(1, 255)), min_size=1, max_size=4),
    truncate=st.integers(0, 10_000),
    cuts=st.lists(st.integers(0, 10_000), max_size=8),
)
@settings(max_examples=300, deadline=2000)
def test_fuzz_mutated_stream(
    conversation: tuple[bytes, list[Chunk]],
    flips: list[tuple[int, int]],
    truncate: int,
    cuts: list[int],
) -> None:
    """A valid stream with bytes changed and possibly cut short ends in chunks or
    MalformedMessage, never another exception; what it decodes re-encodes to its input."""
    wire = bytearray(conversation[0])
    for offset, xor in flips:
        wire[offset % len(wire)] ^= xor
    wire = wire[: len(wire) - truncate % 8]
    decoder = ChunkDecoder(verify_sequence=False)
    try:
        chunks = run_to_outcome(split_at(bytes(wire), cuts), decoder)
    except MalformedMessage:
        return
    for chunk in chunks:
        assert decode_chunk(chunk.encode(), decoder.data_format) == chunk


def test_large_chunk_in_tiny_pieces_is_linear() -> None:
    """A maximal DATA chunk fed one byte at a time decodes in linear time: no copy of the
    buffer per piece."""
    chunk = Data(bytes(range(256)) * 255 + bytes(239))
    wire = DataFormat(False, False, False).init().encode() + chunk.encode()
    decoder = ChunkDecoder()
    started = time.perf_counter()
    chunks = decode_all((wire[i : i + 1] for i in range(len(wire))), decoder)
    elapsed = time.perf_counter() - started
    assert chunks[1] == chunk
    assert elapsed < 5.0  # linear is well under a second; a copy per byte takes minutes
    assert decoder.buffered == 0


def test_buffer_compacted() -> None:
    """Decoded bytes are dropped from the buffer as the stream goes on."""
    decoder = ChunkDecoder()
    decode_all([Init().encode()], decoder)
    for i in range(5000):
        decode_all([Ack(i).encode()[:3], Ack(i).encode()[3:]], decoder)
    assert len(decoder._buffer) < 64  # white box: the countermeasure itself
