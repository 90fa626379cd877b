"""The TCP mapping's fast path: DATA and ACK chunks without a chunk value per message.

Every message over the TCP mapping (draft-ietf-rserpool-tcpmapping-03) costs one DATA
chunk one way and one ACK chunk back. :mod:`twisted_rserpool.wire.tcpmapping` builds and
checks a frozen value for each; this module does the same work with precompiled
:class:`struct.Struct` objects and plain tuples:

- :func:`data_header` packs the header of DATA chunks of one format (which optional words
  the INIT kept) with one precompiled ``pack`` call per chunk;
- :func:`ack_chunks` writes the ACKs of a run of consecutive TSNs at once (without TSNs
  they are a constant 4-byte chunk repeated; with TSNs one precompiled struct per run
  length packs them);
- :func:`scan_chunks` decodes every complete DATA and ACK chunk of a buffer in one pass,
  and recognises a run of ACKs for the DATA chunks outstanding in order by comparing the
  bytes with the run it expects (:class:`AckRun`). A run of DATA chunks of one length
  (messages of one size) is decoded in bulk: found by strided slices of the chunk
  headers, unpacked by one struct per chunk (header words and user data), its sequence
  numbers compared as tuples with those they must have, its records built by map/zip,
  without a Python frame per chunk; other DATA chunks one by one.

The scan accepts only what the checked decoder accepts with the same outcome and stops at
anything else (another chunk type, a length that is wrong or over the limit, a sequence
number out of order, an incomplete chunk), leaving that chunk to the checked decoder,
which returns it or raises the error it describes. Pure codec: no Twisted, no I/O.
"""

from __future__ import annotations

import operator
import struct
from collections import deque
from collections.abc import Callable, Iterable
from itertools import repeat
from operator import itemgetter
from typing import TYPE_CHECKING, Any, Final, TypeAlias, TypeVar

if TYPE_CHECKING:
    from _typeshed import IdentityFunction

try:
    from mypy_extensions import mypyc_attr
except ImportError:  # only a mypyc build (scripts/compile) reads it: the package runs without

    def mypyc_attr(*attrs: str, **kwattrs: object) -> IdentityFunction:
        return lambda cls: cls


__all__ = [
    "ACK_WITHOUT_TSN",
    "PADDING",
    "AckRun",
    "FastLayout",
    "HeaderPacker",
    "ack_chunks",
    "data_header",
    "mypyc_attr",  # for the other codec modules, with the same fallback
    "new_record",
    "scan_chunks",
]

_DATA: Final = 0
_ACK: Final = 3
_U32_MAX: Final = 0xFFFFFFFF
_U16_MAX: Final = 0xFFFF
_UNORDERED: Final = 0x04
#: Padding after a chunk, indexed by its length modulo 4.
PADDING: Final = (b"", b"\x00\x00\x00", b"\x00\x00", b"\x00")

_CHUNK_HEADER = struct.Struct("!BBH")
_ACK_WITH_TSN = struct.Struct("!BBHI")
#: An ACK chunk without TSN: type 3, no flags, length 4. Every one is the same.
ACK_WITHOUT_TSN: Final = b"\x03\x00\x00\x04"
# An ACK chunk with a TSN read as one big-endian 64-bit word: this prefix, then the TSN.
_ACK_PREFIX: Final = 0x03000008 << 32
#: ``tuple.__new__``, to build a record (a tuple subclass) without running its own
#: ``__new__``. Typed as a plain callable: mypyc would otherwise build a plain tuple.
new_record: Final[Callable[[type[Any], tuple[object, ...]], Any]] = tuple.__new__


def ack_chunks(first_tsn: int, count: int, with_tsn: bool) -> bytes:
    """The ACK chunks for ``count`` DATA chunks with consecutive TSNs from ``first_tsn``
    (wrapping after 2**32 - 1), with or without their TSN."""
    if not with_tsn:
        return ACK_WITHOUT_TSN * count
    if count == 1:
        return _ACK_WITH_TSN.pack(_ACK, 0, 8, first_tsn)
    end = first_tsn + count
    if end > _U32_MAX + 1:  # the TSN wraps inside the run
        head = _U32_MAX + 1 - first_tsn
        return ack_chunks(first_tsn, head, True) + ack_chunks(0, count - head, True)
    # Each chunk is one big-endian 64-bit word (_ACK_PREFIX + TSN): one precompiled pack
    # of the run's words.
    packer = _ACK_STRUCTS.get(count)
    if packer is None:
        packer = _ack_run_struct(count)
    return packer.pack(*range(_ACK_PREFIX + first_tsn, _ACK_PREFIX + end))


#: Packers of runs of ACK chunks with TSN, by how many (at most _ACK_STRUCTS counts kept).
_ACK_STRUCTS: Final[dict[int, struct.Struct]] = {}
_ACK_STRUCTS_KEPT: Final = 256


def _ack_run_struct(count: int) -> struct.Struct:
    """A new packer of ``count`` ACK chunks with TSN, kept in _ACK_STRUCTS."""
    if len(_ACK_STRUCTS) >= _ACK_STRUCTS_KEPT:
        _ACK_STRUCTS.clear()  # a peer's odd run lengths cost a rebuild, not memory
    packer = _ACK_STRUCTS[count] = struct.Struct(f"!{count}Q")
    return packer


#: The arguments of a DATA header packer: every word of the full format, in wire order.
HeaderPacker: TypeAlias = Callable[[int, int, int, int, int, int, int], bytes]


def data_header(has_tsn: bool, has_stream: bool, has_ppid: bool) -> tuple[int, HeaderPacker]:
    """The header length of DATA chunks with these optional words, and the function that
    packs their header from ``(type, flags, length, tsn, stream identifier, stream
    sequence number, ppid)``, ignoring the words the format omits.

    For the full format that function is the precompiled ``Struct.pack`` itself. It trusts
    its caller for the ranges (TSN and PPID 32 bits, stream identifier and sequence number
    16 bits): the encoder that numbers the chunks checks what it was given once.
    """
    words = ("I" if has_tsn else "") + ("HH" if has_stream else "") + ("I" if has_ppid else "")
    layout = struct.Struct("!BBH" + words)
    pack = layout.pack
    if has_tsn and has_stream and has_ppid:
        return layout.size, pack
    # The words kept, as positions in the full argument list (type, flags, length first).
    kept = (0, 1, 2, *((3,) if has_tsn else ()), *((4, 5) if has_stream else ()))
    select = itemgetter(*kept, *((6,) if has_ppid else ()))

    def header(*arguments: int) -> bytes:
        return pack(*select(arguments))

    return layout.size, header


_R = TypeVar("_R", bound=tuple[int, bytes, int, int, bool])


class FastLayout:
    """How the peer's DATA chunks are laid out (from its INIT), for :func:`scan_chunks`."""

    __slots__ = (
        "_formats",
        "_runs",
        "data",
        "has_ppid",
        "has_stream",
        "has_tsn",
        "header_length",
        "ppid_index",
        "stream_index",
    )

    def __init__(self, has_tsn: bool, has_stream: bool, has_ppid: bool) -> None:
        words = ("I" if has_tsn else "") + ("HH" if has_stream else "") + ("I" if has_ppid else "")
        #: The chunk header and every optional word, unpacked by one call.
        self.data = struct.Struct("!BBH" + words)
        self.header_length = self.data.size
        self.has_tsn = has_tsn
        self.has_stream = has_stream
        self.has_ppid = has_ppid
        # In the unpacked words, after type, flags and length (and the TSN).
        self.stream_index = 3 + has_tsn
        self.ppid_index = 3 + has_tsn + 2 * has_stream
        self._formats = "!BBH" + words
        # Chunk structs by chunk length (see whole_chunk), at most _RUN_STRUCTS_KEPT.
        self._runs: dict[int, struct.Struct] = {}

    def whole_chunk(self, length: int) -> struct.Struct:
        """The struct that unpacks a whole DATA chunk of ``length`` bytes (at least the
        header) in one call: the header words, then the user data as ``bytes``."""
        runs = self._runs
        chunk = runs.get(length)
        if chunk is None:
            if len(runs) >= _RUN_STRUCTS_KEPT:
                runs.clear()  # a peer's many lengths cost rebuilding a struct, not memory
            chunk = runs[length] = struct.Struct(f"{self._formats}{length - self.header_length}s")
        return chunk


#: Chunk lengths whose struct a FastLayout keeps (shared by every connection of its format).
_RUN_STRUCTS_KEPT: Final = 64
#: DATA chunks of one length in a row from which the scan decodes them in bulk; a shorter
#: run takes the per-chunk loop.
_BULK: Final = 12
#: The most chunks the scan decodes one by one before it looks for a run again.
_MAX_BACKOFF: Final = 64
#: How many chunks ahead the scan first looks for a run of one length (then all of them).
_LOOK_AHEAD: Final = 16
#: b"\x00", b"\x01", ... b"\xff".
_BYTES: Final = tuple(bytes((value,)) for value in range(256))
#: Consumes an iterator at C speed (a deque that keeps nothing).
_drain: Final[Callable[[Iterable[object]], None]] = deque[object](maxlen=0).extend
_truth = operator.truth
_and = operator.and_


def _same_length_chunks(
    buffer: bytes | bytearray, position: int, step: int, length: int, count: int
) -> int:
    """How many of the ``count`` places ``step`` bytes apart from ``position`` hold, in a
    row, the header of a DATA chunk of ``length`` bytes (type 0, any flags); the first is
    known to. Three strided slices, no loop per chunk."""
    stop = position + (count - 1) * step + 1
    types = buffer[position:stop:step]
    high = buffer[position + 2 : stop + 2 : step]
    low = buffer[position + 3 : stop + 3 : step]
    high_byte, low_byte = _BYTES[length >> 8], _BYTES[length & 0xFF]
    if types == bytes(count) and high == high_byte * count and low == low_byte * count:
        return count
    return min(
        count - len(types.lstrip(b"\x00")),
        count - len(high.lstrip(high_byte)),
        count - len(low.lstrip(low_byte)),
    )


def _first_difference(found: tuple[int, ...], expected: tuple[int, ...]) -> int:
    """The index of the first item where ``found`` and ``expected`` differ."""
    for index, (item, wanted) in enumerate(zip(found, expected, strict=False)):
        if item != wanted:
            return index
    return min(len(found), len(expected))


def _numbered(start: int, count: int, mask: int) -> tuple[int, ...]:
    """``count`` numbers from ``start``, wrapping after ``mask`` (``2**n - 1``)."""
    end = start + count
    if end <= mask + 1:
        return tuple(range(start, end))
    return (*range(start, mask + 1), *range(end - mask - 1))


def _data_run(
    buffer: bytes | bytearray,
    position: int,
    layout: FastLayout,
    length: int,
    count: int,
    next_tsn: int,
    next_ssn: dict[int, int] | None,
    record: type[_R],
    append: Callable[[_R | int], object],
) -> int:
    """Decode the ``count`` DATA chunks of ``length`` bytes in a row from ``position``
    (their headers checked: type, length, all in ``buffer``), checking their sequence
    numbers as the per-chunk loop does, and pass them on; how many were, up to the first
    one out of sequence."""
    step = (length + 3) & -4
    words = list(
        map(
            layout.whole_chunk(length).unpack_from,
            repeat(buffer),
            range(position, position + count * step, step),
        )
    )
    columns = list(zip(*words, strict=False))  # the words of each, all of one length
    flags: tuple[int, ...] = columns[1]
    plain = flags.count(0) == count  # no flag set (no U flag): the usual
    has_stream = layout.has_stream
    tsns: Iterable[int] | None = None
    if next_ssn is not None:
        if layout.has_tsn:
            found: tuple[int, ...] = columns[3]
            expected = _numbered(next_tsn, count, _U32_MAX)
            if found == expected:
                tsns = found  # the records share its numbers
            else:
                count = _first_difference(found, expected)
        if has_stream and count:
            streams: tuple[int, ...] = columns[layout.stream_index]
            numbers: tuple[int, ...] = columns[layout.stream_index + 1]
            if count < len(streams):
                streams, numbers, flags = streams[:count], numbers[:count], flags[:count]
            stream = streams[0]
            if streams.count(stream) == count and (
                plain or not any(map(_and, flags, repeat(_UNORDERED)))
            ):
                # Ordered, all on one stream: its numbers follow on from the next one.
                ssn = next_ssn.get(stream, 0)
                expected = _numbered(ssn, count, _U16_MAX)
                if numbers != expected:
                    count = _first_difference(numbers, expected)
                if count:
                    next_ssn[stream] = (ssn + count) & _U16_MAX
            else:
                for index in range(count):
                    if flags[index] & _UNORDERED:
                        continue
                    stream = streams[index]
                    ssn = next_ssn.get(stream, 0)
                    if numbers[index] != ssn:
                        count = index
                        break
                    next_ssn[stream] = (ssn + 1) & _U16_MAX
    if not count:
        return 0
    if tsns is None or count < len(columns[3]):
        tsns = (
            range(next_tsn, next_tsn + count)
            if next_tsn + count <= _U32_MAX + 1
            else _numbered(next_tsn, count, _U32_MAX)
        )
    _drain(
        map(
            append,
            map(
                new_record,
                repeat(record),
                zip(
                    tsns,
                    columns[-1],
                    columns[layout.ppid_index] if layout.has_ppid else repeat(0),
                    columns[layout.stream_index] if has_stream else repeat(0),
                    repeat(False) if plain else map(_truth, map(_and, flags, repeat(_UNORDERED))),
                    strict=False,  # the TSNs count the chunks taken: the shortest
                ),
            ),
        )
    )
    return count


@mypyc_attr(native_class=False)  # mypyc compiles no subclass of int
class AckRun(int):
    """This many ACK chunks in a row, one for each of the oldest DATA chunks outstanding,
    in order, their TSNs (where present) checked."""

    __slots__ = ()


def _ack_run(
    buffer: bytes | bytearray, position: int, size: int, limit: int, first_tsn: int
) -> int:
    """How many ACK chunks of ``size`` bytes from ``position`` (at most ``limit``) are the
    ACKs of consecutive TSNs from ``first_tsn``: the longest run of the expected bytes."""
    expected = ack_chunks(first_tsn, limit, size == 8)
    if buffer.startswith(expected, position):
        return limit
    # The run ends inside: the longest matching prefix, by bisection (memcmp each step).
    low, high = 0, limit - 1  # low chunks match; more than high do not
    while low < high:
        middle = (low + high + 1) // 2
        if buffer.startswith(memoryview(expected)[: middle * size], position):
            low = middle
        else:
            high = middle - 1
    return low


def scan_chunks(
    buffer: bytes | bytearray,
    position: int,
    layout: FastLayout,
    max_chunk_length: int,
    next_tsn: int,
    next_ssn: dict[int, int] | None,
    outstanding: int,
    outstanding_tsn: int,
    record: type[_R],
    append: Callable[[_R | int], object],
) -> tuple[int, int, int, int]:
    """Decode the complete DATA and ACK chunks of ``buffer`` from ``position`` in one pass.

    Each DATA chunk is passed to ``append`` as a ``record`` (a tuple subclass) of ``(tsn,
    user_data, ppid, stream_identifier, unordered)``: its TSN counted from ``next_tsn`` by
    position, the PPID and stream 0 where the format omits them. ``next_ssn`` holds the
    next stream sequence number per stream, checked and advanced for ordered chunks; with
    ``None`` neither TSNs nor stream sequence numbers are checked.

    ACK chunks that acknowledge, in order, the ``outstanding`` DATA chunks we sent from
    TSN ``outstanding_tsn`` are passed as one :class:`AckRun` per run; any other ACK chunk
    (one too many, or for another TSN) as its TSN (``-1`` without one), for the caller to
    refuse.

    Stops at the first chunk that is not a complete, valid DATA or ACK chunk. Returns the
    position of that chunk (or of the end), the padding bytes of the last chunk that were
    not yet in ``buffer``, the TSN of the next DATA chunk, and how many ACKs ran.
    """
    end = len(buffer)
    unpack_data = layout.data.unpack_from
    unpack_header = _CHUNK_HEADER.unpack_from
    header_length = layout.header_length
    has_tsn, has_stream, has_ppid = layout.has_tsn, layout.has_stream, layout.has_ppid
    stream_index = layout.stream_index
    ppid_index = layout.ppid_index
    new = new_record
    padding = 0
    acknowledged = 0
    no_run_before = 0  # no run is looked for before this position
    backoff = 1  # chunks until the next look, after one that found no run
    # A read decoded in place is bytes: a slice is the copy. A bytearray's slice would be
    # a second one; a memoryview's is not. (Made only then: a view costs 0.25 us.)
    view = None if type(buffer) is bytes else memoryview(buffer)
    try:
        while end - position >= 4:
            chunk_type = buffer[position]
            if chunk_type == _DATA:
                if end - position < header_length:
                    break
                # The header and every optional word in one call.
                words = unpack_data(buffer, position)
                length = words[2]
                if not header_length <= length <= max_chunk_length or end - position < length:
                    break
                if position >= no_run_before:
                    # Maybe a run of one length (messages of one size) starts here.
                    step = (length + 3) & -4
                    fit = (end - position - length) // step + 1  # how many would fit
                    run = 0
                    if fit >= _BULK:
                        last = position + (_BULK - 1) * step  # where a run's last would be
                        if (
                            buffer[last] == _DATA
                            and buffer[last + 3] == length & 0xFF
                            and buffer[last + 2] == length >> 8
                        ):
                            run = _same_length_chunks(
                                buffer, position, step, length, min(fit, _LOOK_AHEAD)
                            )
                            if run == _LOOK_AHEAD < fit:
                                run = _same_length_chunks(buffer, position, step, length, fit)
                    if run < _BULK:
                        # Not here: the next look is after twice as many chunks as the
                        # last (DATA of varied lengths, or between other chunks, costs
                        # next to nothing).
                        no_run_before = position + backoff * step
                        if backoff < _MAX_BACKOFF:
                            backoff *= 2
                    else:
                        taken = _data_run(
                            buffer,
                            position,
                            layout,
                            length,
                            run,
                            next_tsn,
                            next_ssn,
                            record,
                            append,
                        )
                        next_tsn = (next_tsn + taken) & _U32_MAX
                        if taken < run:  # the next is out of sequence: the checked path's
                            position += taken * step
                            break
                        # The last one's end and padding, as below.
                        position += (taken - 1) * step + length
                        pad = step - length
                        if pad:
                            if end - position < pad:
                                padding = pad - (end - position)
                                position = end
                                break
                            position += pad
                        backoff = 1
                        continue
                tsn = next_tsn
                flags = words[1]
                sid = words[stream_index] if has_stream else 0
                if next_ssn is not None:
                    if has_tsn and words[3] != tsn:
                        break
                    if has_stream and not flags & _UNORDERED:
                        ssn = next_ssn.get(sid, 0)
                        if words[stream_index + 1] != ssn:
                            break
                        next_ssn[sid] = (ssn + 1) & _U16_MAX
                start = position + header_length
                append(
                    new(
                        record,
                        (
                            tsn,
                            buffer[start : position + length]
                            if view is None
                            else bytes(view[start : position + length]),
                            words[ppid_index] if has_ppid else 0,
                            sid,
                            flags & _UNORDERED != 0,
                        ),
                    )
                )
                next_tsn = (tsn + 1) & _U32_MAX
            elif chunk_type == _ACK:
                length = unpack_header(buffer, position)[2]
                if length not in (4, 8):
                    break
                limit = min(outstanding - acknowledged, (end - position) // length)
                run = (
                    _ack_run(
                        buffer, position, length, limit, (outstanding_tsn + acknowledged) & _U32_MAX
                    )
                    if limit
                    else 0
                )
                if run:
                    append(AckRun(run))
                    acknowledged += run
                    position += run * length  # ACK chunks need no padding
                    continue
                if length == 8 and end - position < 8:
                    break
                tsn = -1 if length == 4 else _ACK_WITH_TSN.unpack_from(buffer, position)[3]
                if limit and (tsn < 0 or tsn == (outstanding_tsn + acknowledged) & _U32_MAX):
                    # A valid ACK the bytes did not match: its flags are not zero (ignored).
                    append(AckRun(1))
                    acknowledged += 1
                else:
                    append(tsn)  # for the caller to refuse
            else:
                break
            position += length
            pad = -length % 4
            if pad:
                if end - position < pad:
                    padding = pad - (end - position)
                    position = end
                    break
                position += pad
    finally:
        if view is not None:
            view.release()  # the decoder may resize its bytearray
    return position, padding, next_tsn, acknowledged
