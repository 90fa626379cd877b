"""The TCP mapping's fast path: DATA and ACK chunks without a chunk value per message.

Every message over the TCP mapping (draft-ietf-rserpool-tcpmapping-03) costs one DATA
chunk one way and one ACK chunk back. :mod:`twisted_rserpool.wire.tcpmapping` builds and
checks a frozen value for each; this module does the same work with precompiled
:class:`struct.Struct` objects and plain tuples:

- :func:`data_header` packs the header of DATA chunks of one format (which optional words
  the INIT kept) with one precompiled ``pack`` call per chunk;
- :func:`ack_chunks` writes the ACKs of a run of consecutive TSNs at once (without TSNs
  they are a constant 4-byte chunk repeated);
- :func:`scan_chunks` decodes every complete DATA and ACK chunk of a buffer in one pass,
  and recognises a run of ACKs for the DATA chunks outstanding in order by comparing the
  bytes with the run it expects (:class:`AckRun`).

The scan accepts only what the checked decoder accepts with the same outcome and stops at
anything else (another chunk type, a length that is wrong or over the limit, a sequence
number out of order, an incomplete chunk), leaving that chunk to the checked decoder,
which returns it or raises the error it describes. Pure codec: no Twisted, no I/O.
"""

from __future__ import annotations

import struct
import sys
from array import array
from collections.abc import Callable
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
_NATIVE_IS_BIG: Final = sys.byteorder == "big"
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
    words = array("Q", range(_ACK_PREFIX + first_tsn, _ACK_PREFIX + end))
    if not _NATIVE_IS_BIG:
        words.byteswap()
    return words.tobytes()


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


class FastLayout:
    """How the peer's DATA chunks are laid out (from its INIT), for :func:`scan_chunks`."""

    __slots__ = ("data", "has_ppid", "has_stream", "has_tsn", "header_length")

    def __init__(self, has_tsn: bool, has_stream: bool, has_ppid: bool) -> None:
        words = ("I" if has_tsn else "") + ("HH" if has_stream else "") + ("I" if has_ppid else "")
        #: The chunk header and every optional word, unpacked by one call.
        self.data = struct.Struct("!BBH" + words)
        self.header_length = self.data.size
        self.has_tsn = has_tsn
        self.has_stream = has_stream
        self.has_ppid = has_ppid


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


_R = TypeVar("_R", bound=tuple[int, bytes, int, int, bool])


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
    unpack_header = _CHUNK_HEADER.unpack_from
    unpack_data = layout.data.unpack_from
    header_length = layout.header_length
    has_tsn, has_stream, has_ppid = layout.has_tsn, layout.has_stream, layout.has_ppid
    ppid_index = 3 + has_tsn + 2 * has_stream  # in the unpacked words: after type, flags, length
    new = new_record
    padding = 0
    acknowledged = 0
    # A read decoded in place is bytes: a slice is the copy. A bytearray's slice would be
    # a second one; a memoryview's is not.
    in_place = type(buffer) is bytes
    with memoryview(buffer) as view:
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
                tsn = next_tsn
                sid = 0
                unordered = words[1] & _UNORDERED != 0
                if next_ssn is not None:
                    if has_tsn and words[3] != tsn:
                        break
                    if has_stream:
                        sid = words[3 + has_tsn]
                        if not unordered:
                            ssn = next_ssn.get(sid, 0)
                            if words[4 + has_tsn] != ssn:
                                break
                            next_ssn[sid] = (ssn + 1) & _U16_MAX
                elif has_stream:
                    sid = words[3 + has_tsn]
                start = position + header_length
                append(
                    new(
                        record,
                        (
                            tsn,
                            buffer[start : position + length]
                            if in_place
                            else bytes(view[start : position + length]),
                            words[ppid_index] if has_ppid else 0,
                            sid,
                            unordered,
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
    return position, padding, next_tsn, acknowledged
