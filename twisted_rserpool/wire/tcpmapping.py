"""Chunks of the RSerPool TCP mapping (draft-ietf-rserpool-tcpmapping-03, section 3).

Over TCP every ASAP/ENRP message and every piece of application data that goes through
the RSerPool data channel travels in a DATA chunk; INIT opens each direction of a
connection, ACK confirms delivery of a DATA chunk to the upper layer, and HEARTBEAT /
HEARTBEAT ACK detect a dead connection.

Each chunk is an immutable value with ``encode() -> bytes``. Which optional words a DATA
chunk carries (TSN, stream identifier and stream sequence number, PPID) is fixed for the
lifetime of a connection by the INIT its sender announced, expressed here as a
:class:`DataFormat`. :class:`ChunkDecoder` decodes the peer's byte stream incrementally
and learns the peer's format from its INIT; :class:`ChunkEncoder` numbers outgoing DATA
chunks. Both have a fast path for the chunks of every message (DATA and ACK, see
:mod:`twisted_rserpool.wire.fastpath`): :meth:`ChunkDecoder.read_chunks` and
:meth:`ChunkEncoder.append_data`. Pure codec: no Twisted, no I/O.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass
from enum import IntEnum
from typing import ClassVar, Final, NoReturn, TypeAlias, TypeVar

from twisted_rserpool.wire.errors import CauseCode, MalformedMessage
from twisted_rserpool.wire.fastpath import (
    PADDING,
    FastLayout,
    data_header,
    new_record,
    scan_chunks,
)

__all__ = [
    "ASAP_PPID",
    "DEFAULT_MAX_BUFFER_SIZE",
    "DEFAULT_MAX_CHUNK_LENGTH",
    "ENRP_PPID",
    "HEARTBEAT_INFO_TYPE",
    "MAX_CHUNK_LENGTH",
    "Ack",
    "Chunk",
    "ChunkDecoder",
    "ChunkEncoder",
    "ChunkType",
    "Data",
    "DataFormat",
    "Heartbeat",
    "HeartbeatAck",
    "Init",
    "check_data_words",
    "decode_chunk",
]

#: IANA SCTP payload protocol identifier of ASAP; the draft requires it for ASAP messages.
ASAP_PPID: Final = 11
#: IANA SCTP payload protocol identifier of ENRP.
ENRP_PPID: Final = 12

#: Largest chunk the 16-bit length field can describe (header included, padding not).
MAX_CHUNK_LENGTH: Final = 0xFFFF
#: A :class:`ChunkDecoder` accepts chunks up to this length unless told otherwise.
DEFAULT_MAX_CHUNK_LENGTH: Final = MAX_CHUNK_LENGTH
#: A :class:`ChunkDecoder` holds at most this many received, not yet decoded bytes.
DEFAULT_MAX_BUFFER_SIZE: Final = 256 * 1024

#: Parameter type of the Heartbeat Info TLV inside HEARTBEAT and HEARTBEAT ACK.
HEARTBEAT_INFO_TYPE: Final = 1

_HEADER_LENGTH: Final = 4
_U32_MAX: Final = 0xFFFFFFFF
_U16_MAX: Final = 0xFFFF

_HEADER = struct.Struct("!BBH")
_U32 = struct.Struct("!I")
_TLV_HEADER = struct.Struct("!HH")


class ChunkType(IntEnum):
    """Chunk types of the draft, section 3.1; 2 and 6-255 are reserved."""

    DATA = 0
    INIT = 1
    ACK = 3
    HEARTBEAT = 4
    HEARTBEAT_ACK = 5


_KNOWN_TYPES: Final = frozenset(ChunkType)

# INIT flags (section 3.3): each suppresses one optional word of later DATA chunks.
_INIT_OMIT_TSN: Final = 0x01
_INIT_OMIT_STREAM: Final = 0x02
_INIT_OMIT_PPID: Final = 0x04
# DATA flags "Reserved|U|R R" (section 3.2): U is the third-lowest bit, as in SCTP.
_DATA_UNORDERED: Final = 0x04
_DATA_TYPE: Final = int(ChunkType.DATA)  # a plain int packs faster than the enum member


def _pad(length: int) -> bytes:
    return b"\x00" * (-length % 4)


def _check_uint(name: str, value: int | None, maximum: int) -> None:
    if value is not None and not 0 <= value <= maximum:
        raise ValueError(f"{name} {value} is outside 0..{maximum}")


class _TypedChunk:
    """Where a chunk class's ``TYPE`` is declared: outside the dataclass bodies, because
    mypyc hands every class attribute of a dataclass's body to ``@dataclass`` as a field
    (mypyc issue 1122). Each chunk class sets its ``TYPE`` right after its body."""

    __slots__ = ()
    TYPE: ClassVar[ChunkType]


@dataclass(frozen=True, slots=True)
class DataFormat:
    """Which optional words the DATA chunks of one direction of a connection carry.

    Fixed by the INIT that the sender of those DATA chunks sent first. A word that is
    absent is implicit: the TSN and stream sequence number from the chunk's position in
    the byte stream, the stream identifier and PPID as zero.
    """

    has_tsn: bool = True
    has_stream: bool = True
    has_ppid: bool = True

    @property
    def header_length(self) -> int:
        """Bytes of a DATA chunk in front of its user data."""
        return _HEADER_LENGTH + 4 * (self.has_tsn + self.has_stream + self.has_ppid)

    def init(self) -> Init:
        """The INIT chunk that announces this format."""
        return Init(
            omit_tsn=not self.has_tsn,
            omit_stream=not self.has_stream,
            omit_ppid=not self.has_ppid,
        )


@dataclass(frozen=True, slots=True)
class Init(_TypedChunk):
    """INIT (section 3.3): sent once, first, and says which DATA words the sender omits.

    ``omit_tsn`` also asks the receiver to leave the TSN out of its ACK chunks.
    """

    omit_tsn: bool = False
    omit_stream: bool = False
    omit_ppid: bool = False

    @property
    def data_format(self) -> DataFormat:
        """The format of the DATA chunks that follow this INIT in the same direction."""
        return DataFormat(
            has_tsn=not self.omit_tsn,
            has_stream=not self.omit_stream,
            has_ppid=not self.omit_ppid,
        )

    @property
    def flags(self) -> int:
        """The chunk flags byte."""
        return (
            (_INIT_OMIT_TSN if self.omit_tsn else 0)
            | (_INIT_OMIT_STREAM if self.omit_stream else 0)
            | (_INIT_OMIT_PPID if self.omit_ppid else 0)
        )

    def encode(self) -> bytes:
        """The chunk on the wire."""
        return _HEADER.pack(self.TYPE, self.flags, _HEADER_LENGTH)


Init.TYPE = ChunkType.INIT


@dataclass(frozen=True, slots=True)
class Data(_TypedChunk):
    """DATA (section 3.2): one ASAP/ENRP message or one application message.

    ``None`` marks an optional word that is absent on the wire because the sender's INIT
    suppressed it; ``stream_identifier`` and ``stream_sequence_number`` share one word, so
    they are both present or both absent. The PPID says what ``user_data`` holds
    (:data:`ASAP_PPID`, :data:`ENRP_PPID`, or an application's own). An ``unordered`` chunk
    has no stream sequence number; its receiver ignores that field.
    """

    user_data: bytes
    tsn: int | None = None
    stream_identifier: int | None = None
    stream_sequence_number: int | None = None
    ppid: int | None = None
    unordered: bool = False

    def __post_init__(self) -> None:
        if (self.stream_identifier is None) != (self.stream_sequence_number is None):
            raise ValueError(
                "stream_identifier and stream_sequence_number are one word: give both or neither"
            )
        # Inline rather than via data_format: every decoded DATA chunk passes through here.
        length = _HEADER_LENGTH + len(self.user_data)
        if self.tsn is not None:
            _check_uint("tsn", self.tsn, _U32_MAX)
            length += 4
        if self.stream_identifier is not None:
            _check_uint("stream_identifier", self.stream_identifier, _U16_MAX)
            _check_uint("stream_sequence_number", self.stream_sequence_number, _U16_MAX)
            length += 4
        if self.ppid is not None:
            _check_uint("ppid", self.ppid, _U32_MAX)
            length += 4
        if length > MAX_CHUNK_LENGTH:
            raise ValueError(f"DATA chunk of {length} bytes exceeds {MAX_CHUNK_LENGTH}")

    @property
    def data_format(self) -> DataFormat:
        """The format this chunk is in: which optional words it carries."""
        return DataFormat(
            has_tsn=self.tsn is not None,
            has_stream=self.stream_identifier is not None,
            has_ppid=self.ppid is not None,
        )

    @property
    def effective_stream_identifier(self) -> int:
        """The stream this chunk belongs to: stream 0 when the word is absent."""
        return 0 if self.stream_identifier is None else self.stream_identifier

    @property
    def effective_ppid(self) -> int:
        """The payload protocol identifier, 0 (unspecified) when the word is absent."""
        return 0 if self.ppid is None else self.ppid

    def encode(self) -> bytes:
        """The chunk on the wire, with the words that are not ``None``."""
        fmt = self.data_format
        length = fmt.header_length + len(self.user_data)
        parts = [_HEADER.pack(self.TYPE, _DATA_UNORDERED if self.unordered else 0, length)]
        if self.tsn is not None:
            parts.append(_U32.pack(self.tsn))
        if self.stream_identifier is not None and self.stream_sequence_number is not None:
            parts.append(_TLV_HEADER.pack(self.stream_identifier, self.stream_sequence_number))
        if self.ppid is not None:
            parts.append(_U32.pack(self.ppid))
        parts.append(self.user_data)
        parts.append(_pad(length))
        return b"".join(parts)


Data.TYPE = ChunkType.DATA


@dataclass(frozen=True, slots=True)
class Ack(_TypedChunk):
    """ACK (section 3.4): one DATA chunk was delivered to the upper layer.

    ``tsn`` is that chunk's TSN, or ``None`` when the data sender's INIT suppressed TSNs
    (the TSN is then implicit from the ACK's position in the stream): ``Ack(data.tsn)``
    answers a received ``data``.
    """

    tsn: int | None = None

    def __post_init__(self) -> None:
        _check_uint("tsn", self.tsn, _U32_MAX)

    def encode(self) -> bytes:
        """The chunk on the wire: 4 bytes without a TSN, 8 with one."""
        if self.tsn is None:
            return _HEADER.pack(self.TYPE, 0, _HEADER_LENGTH)
        return _HEADER.pack(self.TYPE, 0, _HEADER_LENGTH + 4) + _U32.pack(self.tsn)


Ack.TYPE = ChunkType.ACK


def _encode_heartbeat(chunk_type: int, info: bytes) -> bytes:
    tlv_length = _HEADER_LENGTH + len(info)
    length = _HEADER_LENGTH + tlv_length
    return b"".join(
        (
            _HEADER.pack(chunk_type, 0, length),
            _TLV_HEADER.pack(HEARTBEAT_INFO_TYPE, tlv_length),
            info,
            _pad(length),
        )
    )


def _check_heartbeat_info(info: bytes) -> None:
    length = 2 * _HEADER_LENGTH + len(info)
    if length > MAX_CHUNK_LENGTH:
        raise ValueError(f"heartbeat chunk of {length} bytes exceeds {MAX_CHUNK_LENGTH}")


@dataclass(frozen=True, slots=True)
class Heartbeat(_TypedChunk):
    """HEARTBEAT (section 3.5): asks the peer to echo ``info`` in a HEARTBEAT ACK.

    ``info`` is the sender-specific content of the Heartbeat Info parameter (type 1),
    opaque to everyone but the sender.
    """

    info: bytes

    def __post_init__(self) -> None:
        _check_heartbeat_info(self.info)

    def acknowledge(self) -> HeartbeatAck:
        """The HEARTBEAT ACK that answers this HEARTBEAT."""
        return HeartbeatAck(self.info)

    def encode(self) -> bytes:
        """The chunk on the wire: header, Heartbeat Info TLV, padding."""
        return _encode_heartbeat(self.TYPE, self.info)


Heartbeat.TYPE = ChunkType.HEARTBEAT


@dataclass(frozen=True, slots=True)
class HeartbeatAck(_TypedChunk):
    """HEARTBEAT ACK (section 3.6): echoes the ``info`` of the HEARTBEAT it answers."""

    info: bytes

    def __post_init__(self) -> None:
        _check_heartbeat_info(self.info)

    def encode(self) -> bytes:
        """The chunk on the wire: header, Heartbeat Info TLV, padding."""
        return _encode_heartbeat(self.TYPE, self.info)


HeartbeatAck.TYPE = ChunkType.HEARTBEAT_ACK


Chunk: TypeAlias = Init | Data | Ack | Heartbeat | HeartbeatAck


# -- decoding ---------------------------------------------------------------------------


def _malformed(reason: str, offending: bytes = b"") -> MalformedMessage:
    # The TCP mapping has no error chunk: a receiver can only drop the connection.
    return MalformedMessage(reason, CauseCode.INVALID_VALUES, report=False, offending=offending)


@dataclass(frozen=True, slots=True)
class _DataLayout:
    """How to unpack the optional words of a DATA chunk in one format, in one call."""

    words: struct.Struct
    has_tsn: bool
    has_stream: bool
    has_ppid: bool
    header_length: int


def _make_layout(has_tsn: bool, has_stream: bool, has_ppid: bool) -> _DataLayout:
    words = struct.Struct(
        "!" + ("I" if has_tsn else "") + ("HH" if has_stream else "") + ("I" if has_ppid else "")
    )
    return _DataLayout(words, has_tsn, has_stream, has_ppid, _HEADER_LENGTH + words.size)


# Indexed by has_tsn + 2 * has_stream + 4 * has_ppid.
_DATA_LAYOUTS: Final = tuple(_make_layout(bool(i & 1), bool(i & 2), bool(i & 4)) for i in range(8))


def _layout_of(fmt: DataFormat) -> _DataLayout:
    return _DATA_LAYOUTS[_format_index(fmt)]


def _format_index(fmt: DataFormat) -> int:
    return fmt.has_tsn + 2 * fmt.has_stream + 4 * fmt.has_ppid


# The fast path's layouts and header packers, one per format and shared by every
# connection (a connection of its own would cost two Struct objects, 656 bytes).
_DATA_FORMATS: Final = tuple(DataFormat(bool(i & 1), bool(i & 2), bool(i & 4)) for i in range(8))
_FAST_LAYOUTS: Final = tuple(FastLayout(bool(i & 1), bool(i & 2), bool(i & 4)) for i in range(8))
_HEADER_PACKERS: Final = tuple(data_header(bool(i & 1), bool(i & 2), bool(i & 4)) for i in range(8))


def _check_header(chunk_type: int, length: int, layout: _DataLayout | None) -> None:
    """Refuse a chunk header whose type is reserved or whose length cannot be right."""
    if chunk_type not in _KNOWN_TYPES:
        # Types 2 and 6-255 are reserved, and the draft gives no rule for skipping unknown
        # chunks (unlike SCTP's high type bits): what follows cannot be trusted.
        raise MalformedMessage(
            f"chunk type {chunk_type} is reserved (not DATA, INIT, ACK, HEARTBEAT or "
            "HEARTBEAT ACK)",
            CauseCode.UNRECOGNIZED_MESSAGE,
            report=False,
        )
    if length < _HEADER_LENGTH:
        raise _malformed(f"chunk length {length} is shorter than the chunk header")
    if chunk_type == ChunkType.DATA:
        if layout is None:
            raise _malformed("DATA chunk before the peer's INIT chunk")
        if length < layout.header_length:
            raise _malformed(
                f"DATA chunk length {length} is shorter than the {layout.header_length}-byte "
                "header the peer's INIT announced"
            )
    elif chunk_type == ChunkType.INIT:
        if length != _HEADER_LENGTH:
            raise _malformed(f"INIT chunk length {length}, must be 4")
    elif chunk_type == ChunkType.ACK:
        if length not in (4, 8):
            raise _malformed(f"ACK chunk length {length}, must be 4 or 8")
    elif length < 2 * _HEADER_LENGTH:
        raise _malformed(
            f"{ChunkType(chunk_type).name} chunk length {length} leaves no room for the "
            "mandatory Heartbeat Info parameter"
        )


def _decode_data(
    buffer: bytes | bytearray, start: int, flags: int, length: int, layout: _DataLayout
) -> Data:
    words = layout.words.unpack_from(buffer, start + _HEADER_LENGTH)
    user_data = bytes(buffer[start + layout.header_length : start + length])
    tsn = sid = ssn = ppid = None
    i = 0
    if layout.has_tsn:
        tsn = words[0]
        i = 1
    if layout.has_stream:
        sid = words[i]
        ssn = words[i + 1]
        i += 2
    if layout.has_ppid:
        ppid = words[i]
    return Data(user_data, tsn, sid, ssn, ppid, bool(flags & _DATA_UNORDERED))


def _decode_heartbeat(
    buffer: bytes | bytearray, start: int, chunk_type: int, length: int
) -> Heartbeat | HeartbeatAck:
    # Exactly one Heartbeat Info TLV fills the value.
    value_start = start + _HEADER_LENGTH
    value_length = length - _HEADER_LENGTH
    tlv_type, tlv_length = _TLV_HEADER.unpack_from(buffer, value_start)
    name = ChunkType(chunk_type).name
    if tlv_type != HEARTBEAT_INFO_TYPE:
        raise _malformed(
            f"{name} carries parameter type {tlv_type}, not Heartbeat Info (1)",
            bytes(buffer[value_start : start + length]),
        )
    # The chunk length may count the parameter's own padding (at most 3 bytes) or not.
    if not _HEADER_LENGTH <= tlv_length <= value_length <= tlv_length + 3:
        raise _malformed(
            f"{name} Heartbeat Info length {tlv_length} does not fit the chunk's "
            f"{value_length}-byte value",
            bytes(buffer[value_start : start + length]),
        )
    info = bytes(buffer[value_start + _HEADER_LENGTH : value_start + tlv_length])
    if chunk_type == ChunkType.HEARTBEAT:
        return Heartbeat(info)
    return HeartbeatAck(info)


def _decode_body(
    buffer: bytes | bytearray, start: int, header: tuple[int, int, int], layout: _DataLayout | None
) -> Chunk:
    """Decode one chunk whose header passed :func:`_check_header` and whose bytes are all
    in ``buffer`` from ``start``."""
    chunk_type, flags, length = header
    if chunk_type == ChunkType.DATA:
        assert layout is not None  # _check_header refused DATA without a format
        return _decode_data(buffer, start, flags, length, layout)
    if chunk_type == ChunkType.INIT:
        # The five high flag bits are reserved: ignored on receipt.
        return Init(
            omit_tsn=bool(flags & _INIT_OMIT_TSN),
            omit_stream=bool(flags & _INIT_OMIT_STREAM),
            omit_ppid=bool(flags & _INIT_OMIT_PPID),
        )
    if chunk_type == ChunkType.ACK:
        if length == _HEADER_LENGTH:
            return Ack(None)
        return Ack(_U32.unpack_from(buffer, start + _HEADER_LENGTH)[0])
    return _decode_heartbeat(buffer, start, chunk_type, length)


def decode_chunk(data: bytes, fmt: DataFormat | None = None) -> Chunk:
    """Decode ``data`` holding exactly one chunk, optionally followed by its padding.

    ``fmt`` is the format the peer's INIT announced; without it a DATA chunk is refused.
    This is for single chunks taken out of a stream; use :class:`ChunkDecoder` for the
    stream itself, which also enforces the order of chunks.
    """
    if len(data) < _HEADER_LENGTH:
        raise _malformed(f"{len(data)} bytes are too short for a chunk header", data)
    header = _HEADER.unpack_from(data, 0)
    chunk_type, _, length = header
    layout = None if fmt is None else _layout_of(fmt)
    _check_header(chunk_type, length, layout)
    if not length <= len(data) <= length + (-length % 4):
        raise _malformed(f"chunk length {length} does not match the {len(data)} bytes given", data)
    return _decode_body(data, 0, header, layout)


_R = TypeVar("_R", bound=tuple[int, bytes, int, int, bool])


class ChunkDecoder:
    """Incremental decoder of the chunks one peer sends on one TCP connection.

    Feed received bytes to :meth:`receive_data` and call :meth:`next_chunk` until it
    returns ``None``. The first chunk must be the peer's INIT, which fixes the format of
    its DATA chunks; TSNs and stream sequence numbers, when present, are checked to
    follow on from 0 (``verify_sequence``). Padding is skipped, whatever its content.

    The decoder is bounded: a chunk longer than ``max_chunk_length`` is refused as soon as
    its header arrives, and holding more than ``max_buffer_size`` undecoded bytes is
    refused in :meth:`receive_data` (so drain :meth:`next_chunk` after each piece; the
    limit must cover an incomplete chunk plus the largest piece received at once); both
    raise :class:`MalformedMessage` with cause LACK_OF_RESOURCES. Any
    :class:`MalformedMessage` is final: the connection cannot be resynchronised, and every
    later call raises the same error.

    :meth:`read_chunks` decodes everything buffered at once, DATA and ACK chunks in one
    pass without a chunk value each (``fast``; with ``fast=False`` it takes every chunk
    through :meth:`next_chunk`, the reference the fast path is tested against).
    """

    # One per connection: no instance dictionary.
    __slots__ = (
        "_buffer",
        "_eof",
        "_error",
        "_fast",
        "_fast_layout",
        "_format",
        "_layout",
        "_next_ssn",
        "_next_tsn",
        "_padding",
        "_position",
        "_wanted",
        "max_buffer_size",
        "max_chunk_length",
        "verify_sequence",
    )

    def __init__(
        self,
        *,
        max_chunk_length: int = DEFAULT_MAX_CHUNK_LENGTH,
        max_buffer_size: int = DEFAULT_MAX_BUFFER_SIZE,
        verify_sequence: bool = True,
        fast: bool = True,
    ) -> None:
        if not 8 <= max_chunk_length <= MAX_CHUNK_LENGTH:
            raise ValueError(f"max_chunk_length must be within 8..{MAX_CHUNK_LENGTH}")
        if max_buffer_size < max_chunk_length + 3:
            raise ValueError("max_buffer_size must hold a chunk of max_chunk_length and padding")
        self.max_chunk_length = max_chunk_length
        self.max_buffer_size = max_buffer_size
        self.verify_sequence = verify_sequence
        # A read that finds nothing left undecoded is decoded where it is, without a copy;
        # what a later read must join is copied into a bytearray.
        self._buffer: bytes | bytearray = b""
        self._position = 0  # start of the undecoded bytes in _buffer
        self._padding = 0  # padding bytes of the last chunk not yet skipped
        self._wanted = 0  # bytes the incomplete chunk at _position needs, once its header is in
        self._format: DataFormat | None = None
        self._layout: _DataLayout | None = None
        self._eof = False
        self._error: MalformedMessage | None = None
        self._next_tsn = 0
        self._next_ssn: dict[int, int] = {}
        self._fast = fast
        self._fast_layout: FastLayout | None = None

    @property
    def data_format(self) -> DataFormat | None:
        """The format of the peer's DATA chunks; ``None`` until its INIT is decoded."""
        return self._format

    @property
    def buffered(self) -> int:
        """Received bytes not yet decoded."""
        return len(self._buffer) - self._position

    @property
    def next_tsn(self) -> int:
        """The TSN of the next DATA chunk, explicit or implied by its position."""
        return self._next_tsn

    @property
    def eof_received(self) -> bool:
        """Whether :meth:`receive_data` was told that the peer closed the stream."""
        return self._eof

    def receive_data(self, data: bytes) -> None:
        """Add bytes received from the peer; ``b""`` means the peer closed the stream."""
        if self._error is not None:
            raise self._error
        if not data:
            self._eof = True
            return
        if self._eof:
            raise RuntimeError("receive_data called after the end of the stream")
        if self.buffered + len(data) > self.max_buffer_size:
            self._fail(
                MalformedMessage(
                    f"more than {self.max_buffer_size} undecoded bytes received",
                    CauseCode.LACK_OF_RESOURCES,
                    report=False,
                )
            )
        buffer = self._buffer
        if self._position >= len(buffer) and type(data) is bytes:
            self._buffer = data
            self._position = 0
            return
        if not isinstance(buffer, bytearray):
            self._buffer = buffer = bytearray(buffer[self._position :])
            self._position = 0
        # Drop the decoded prefix once it is at least half the buffer, so that many small
        # pieces cost amortised linear time rather than a copy each.
        elif self._position and self._position * 2 >= len(buffer):
            del buffer[: self._position]
            self._position = 0
        buffer += data

    def next_chunk(self) -> Chunk | None:
        """The next complete chunk, or ``None`` when more bytes are needed (or, after the
        end of the stream, when there are no more chunks)."""
        if self._error is not None:
            raise self._error
        try:
            return self._next_chunk()
        except MalformedMessage as error:
            self._fail(error)

    def read_chunks(
        self,
        append: Callable[[_R | int | Chunk], object],
        record: type[_R],
        outstanding: int = 0,
        outstanding_tsn: int = 0,
    ) -> None:
        """Decode every complete chunk buffered now, passing each to ``append`` in order.

        A DATA chunk comes as a ``record`` (a tuple subclass) of ``(tsn, user_data, ppid,
        stream_identifier, unordered)``: its TSN counted by position, PPID and stream 0
        where the peer's format omits them. ACK chunks for the ``outstanding`` DATA chunks
        we sent from TSN ``outstanding_tsn``, in order, come as one
        :class:`~twisted_rserpool.wire.fastpath.AckRun` (an ``int``, their number) per run
        on the fast path; any other ACK as its TSN (``-1`` when it has none), every other
        chunk as its value. Errors are those of :meth:`next_chunk`, raised once the chunks
        before the fault have been passed on.
        """
        if self._error is not None:
            raise self._error
        if self.buffered - self._padding < self._wanted and not self._eof:
            return  # the chunk whose header came last time is still incomplete
        layout = self._fast_layout
        new = new_record
        while True:
            if layout is not None:
                position = self._skip_padding()
                after, padding, self._next_tsn, acknowledged = scan_chunks(
                    self._buffer,
                    position,
                    layout,
                    self.max_chunk_length,
                    self._next_tsn,
                    self._next_ssn if self.verify_sequence else None,
                    outstanding,
                    outstanding_tsn,
                    record,
                    append,
                )
                outstanding -= acknowledged
                outstanding_tsn = (outstanding_tsn + acknowledged) & _U32_MAX
                if after != position:
                    self._position = after
                    self._padding = padding
                    self._wanted = 0
            # The checked path: a rare chunk, an incomplete one, or the error it makes.
            chunk = self.next_chunk()
            if chunk is None:
                return
            if isinstance(chunk, Data):
                tsn = (self._next_tsn - 1) & _U32_MAX
                append(
                    new(
                        record,
                        (
                            tsn,
                            chunk.user_data,
                            chunk.effective_ppid,
                            chunk.effective_stream_identifier,
                            chunk.unordered,
                        ),
                    )
                )
            elif isinstance(chunk, Ack):
                append(-1 if chunk.tsn is None else chunk.tsn)
                if outstanding:  # it acknowledges the oldest, unless it is refused
                    outstanding -= 1
                    outstanding_tsn = (outstanding_tsn + 1) & _U32_MAX
            else:
                append(chunk)
                layout = self._fast_layout

    def _fail(self, error: MalformedMessage) -> NoReturn:
        self._error = error
        raise error

    def _skip_padding(self) -> int:
        """Skip what has arrived of the last chunk's padding; the new position."""
        position = self._position
        if self._padding:
            skipped = min(self._padding, len(self._buffer) - position)
            self._padding -= skipped
            position += skipped
            self._position = position
        return position

    def _next_chunk(self) -> Chunk | None:
        buffer = self._buffer
        position = self._skip_padding()
        available = len(buffer) - position
        if available < self._wanted and not self._eof:
            return None  # the header seen last time is still incomplete: skip re-checking it
        if available < _HEADER_LENGTH:
            # Padding missing at the very end is harmless: the chunk before it is complete.
            if self._eof and available:
                raise _malformed(
                    f"stream ended inside a chunk header ({available} bytes)",
                    bytes(buffer[position:]),
                )
            return None
        header = _HEADER.unpack_from(buffer, position)
        chunk_type, _, length = header
        layout = self._layout
        if layout is None and chunk_type != ChunkType.INIT and chunk_type in _KNOWN_TYPES:
            raise _malformed(
                f"{ChunkType(chunk_type).name} chunk before the peer's INIT chunk",
                bytes(buffer[position : position + _HEADER_LENGTH]),
            )
        _check_header(chunk_type, length, layout)
        if chunk_type == ChunkType.INIT and layout is not None:
            raise _malformed("second INIT chunk on the connection")
        if length > self.max_chunk_length:
            raise MalformedMessage(
                f"chunk of {length} bytes exceeds the limit of {self.max_chunk_length}",
                CauseCode.LACK_OF_RESOURCES,
                report=False,
                offending=bytes(buffer[position : position + _HEADER_LENGTH]),
            )
        if available < length:
            if self._eof:
                raise _malformed(
                    f"stream ended inside a chunk of {length} bytes ({available} received)"
                )
            self._wanted = length
            return None
        self._wanted = 0
        chunk = _decode_body(buffer, position, header, layout)
        self._position = position + length
        self._padding = -length % 4
        if chunk_type == ChunkType.INIT:
            assert isinstance(chunk, Init)
            # The shared value of this format, not one per connection.
            self._format = fmt = _DATA_FORMATS[_format_index(chunk.data_format)]
            self._layout = _layout_of(fmt)
            if self._fast:
                self._fast_layout = _FAST_LAYOUTS[_format_index(fmt)]
        elif chunk_type == ChunkType.DATA:
            assert isinstance(chunk, Data)
            self._check_sequence(chunk)
        return chunk

    def _check_sequence(self, chunk: Data) -> None:
        tsn = self._next_tsn
        self._next_tsn = (tsn + 1) & _U32_MAX
        if not self.verify_sequence:
            return
        if chunk.tsn is not None and chunk.tsn != tsn:
            raise _malformed(f"DATA chunk has TSN {chunk.tsn}, expected {tsn}")
        if chunk.stream_identifier is None or chunk.unordered:
            return
        ssn = self._next_ssn.get(chunk.stream_identifier, 0)
        if chunk.stream_sequence_number != ssn:
            raise _malformed(
                f"DATA chunk on stream {chunk.stream_identifier} has stream sequence "
                f"number {chunk.stream_sequence_number}, expected {ssn}"
            )
        self._next_ssn[chunk.stream_identifier] = (ssn + 1) & _U16_MAX


def check_data_words(ppid: int, stream_identifier: int, has_ppid: bool, has_stream: bool) -> None:
    """Refuse (``ValueError``) a PPID or stream identifier that is out of range, or that the
    data format the peer's INIT chose omits (``has_ppid``, ``has_stream``)."""
    if ppid and not has_ppid:
        raise ValueError(f"PPID {ppid} cannot be sent: the INIT omitted PPIDs")
    if not 0 <= ppid <= _U32_MAX:
        raise ValueError(f"ppid {ppid} is outside 0..{_U32_MAX}")
    if stream_identifier and not has_stream:
        raise ValueError(
            f"stream {stream_identifier} cannot be used: the INIT omitted stream numbers"
        )
    if not 0 <= stream_identifier <= _U16_MAX:
        raise ValueError(f"stream_identifier {stream_identifier} is outside 0..{_U16_MAX}")


class ChunkEncoder:
    """Encoder of the chunks one side sends on one TCP connection.

    Send :meth:`send_init` first, then DATA chunks from :meth:`send_data`, which numbers them: the
    TSN from 0 per connection, the stream sequence number from 0 per stream (unordered
    chunks take none). Words that ``fmt`` omits are left out; their numbers still advance,
    since the peer infers them from the chunks' order.
    """

    # One per connection: no instance dictionary.
    __slots__ = (
        "_has_ppid",
        "_has_stream",
        "_header",
        "_header_length",
        "_init_sent",
        "_next_ssn",
        "_next_tsn",
        "_stream_zero_ssn",
        "fmt",
    )

    def __init__(self, fmt: DataFormat | None = None) -> None:
        self.fmt = fmt = DataFormat() if fmt is None else fmt
        self._header_length, self._header = _HEADER_PACKERS[_format_index(fmt)]
        self._has_ppid = fmt.has_ppid
        self._has_stream = fmt.has_stream
        self._init_sent = False
        self._next_tsn = 0
        # The next stream sequence number of stream 0, where nearly every message goes, and
        # of the other streams used (a dictionary only once one is: 224 bytes each).
        self._stream_zero_ssn = 0
        self._next_ssn: dict[int, int] | None = None

    @property
    def next_tsn(self) -> int:
        """The TSN the next DATA chunk gets, on the wire or implicitly."""
        return self._next_tsn

    def send_init(self) -> bytes:
        """The INIT chunk announcing ``fmt``: the first bytes of the connection."""
        if self._init_sent:
            raise RuntimeError("INIT was already sent on this connection")
        self._init_sent = True
        return self.fmt.init().encode()

    def send_data(
        self,
        user_data: bytes,
        *,
        ppid: int = 0,
        stream_identifier: int = 0,
        unordered: bool = False,
    ) -> bytes:
        """The next DATA chunk carrying ``user_data``."""
        out: list[bytes] = []
        self.append_data(out, user_data, ppid, stream_identifier, unordered)
        return b"".join(out)

    def append_data(
        self,
        out: list[bytes],
        user_data: bytes,
        ppid: int = 0,
        stream_identifier: int = 0,
        unordered: bool = False,
    ) -> int:
        """Append the pieces of the next DATA chunk carrying ``user_data`` to ``out`` (to be
        joined); its TSN.

        The same chunk as :meth:`send_data` (and as ``Data(...).encode()``), checked
        once and packed in one call, without a :class:`Data` value.
        """
        if not self._init_sent:
            raise RuntimeError("INIT must be sent before any DATA chunk")
        check_data_words(ppid, stream_identifier, self._has_ppid, self._has_stream)
        length = self._header_length + len(user_data)
        if length > MAX_CHUNK_LENGTH:
            raise ValueError(f"DATA chunk of {length} bytes exceeds {MAX_CHUNK_LENGTH}")
        tsn = self._next_tsn
        if unordered:
            ssn = 0
        elif not stream_identifier:
            ssn = self._stream_zero_ssn
            self._stream_zero_ssn = (ssn + 1) & _U16_MAX
        else:
            streams = self._next_ssn
            if streams is None:
                streams = self._next_ssn = {}
            ssn = streams.get(stream_identifier, 0)
            streams[stream_identifier] = (ssn + 1) & _U16_MAX
        out.append(
            self._header(
                _DATA_TYPE,
                _DATA_UNORDERED if unordered else 0,
                length,
                tsn,
                stream_identifier,
                ssn,
                ppid,
            )
        )
        out.append(user_data)
        if length & 3:
            out.append(PADDING[length & 3])
        self._next_tsn = (tsn + 1) & _U32_MAX
        return tsn
