"""The RFC 5353 section 3.6.2 PE checksum, kept incrementally per owning ENRP server.

Each PE contributes the byte block "pool handle, zero-padded to a multiple of four bytes,
then the 32-bit PE identifier"; the checksum is the 16-bit Internet checksum (RFC 1071) over
the blocks of all PEs a server owns. The ones'-complement sum is commutative and
associative, so a server adds or subtracts one PE's block (RFC 5353's implementation note)
instead of summing everything again. This module keeps the exact integer sum of all 16-bit
words, so subtraction is exact, and folds it only when the checksum is read.

The result equals RSPLIB's ``handlespaceChecksumFinish``: for an empty set it is 0xffff.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable


def pe_block(pool_handle: bytes, pe_identifier: int) -> bytes:
    """The byte block one PE contributes to its owner's checksum."""
    padding = -len(pool_handle) % 4
    return pool_handle + b"\x00" * padding + pe_identifier.to_bytes(4, "big")


def word_sum(data: bytes) -> int:
    """The plain (unfolded) sum of the big-endian 16-bit words of ``data``.

    An odd final byte counts as the high byte of a word, as RFC 1071 pads it.
    """
    if len(data) & 1:
        data += b"\x00"
    return sum(struct.unpack(f">{len(data) >> 1}H", data))


def pe_contribution(pool_handle: bytes, pe_identifier: int) -> int:
    """The unfolded word sum of one PE's block (what is added or subtracted)."""
    return handle_contribution(pool_handle) + (pe_identifier >> 16) + (pe_identifier & 0xFFFF)


def handle_contribution(pool_handle: bytes) -> int:
    """The unfolded word sum of a zero-padded pool handle (cached per pool by callers)."""
    return word_sum(pool_handle)


def finish(total: int) -> int:
    """Fold an unfolded word sum into the 16-bit ones'-complement checksum."""
    if total < 0:
        raise ValueError("a word sum cannot be negative")
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def compute(elements: Iterable[tuple[bytes, int]]) -> int:
    """The PE checksum of ``(pool handle, PE identifier)`` pairs, computed from scratch."""
    total = 0
    for pool_handle, pe_identifier in elements:
        total += word_sum(pe_block(pool_handle, pe_identifier))
    return finish(total)
