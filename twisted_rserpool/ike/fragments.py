"""IKE fragmentation (RFC 7383) without I/O: our large messages cut into IKE Fragment
messages, and the peer's reassembled within limits.

Sending (``fragment_message``): the plaintext of the SK payload is cut into chunks so that
each IKE Fragment message, in an IP datagram with its UDP header and a non-ESP marker, is at
most the fragmentation threshold (``datagram_limit``: the configured size, else RFC 7383
2.5.1's 576 octets for IPv4 and 1280 for IPv6); each chunk is encrypted and protected on its
own in an SKF payload.

Receiving (``Reassembler``): one set of fragments at a time (the caller passes only
fragments of the one Message ID it expects), checked in RFC 7383 2.6's order: the fields'
validity, replays, then the ICV, before anything is stored. Limits bound what an
authenticated but hostile peer can make us keep (section 5): the number of fragments, the
sum of their decrypted contents, and the time an incomplete set is kept (``now`` in, never a
clock). Nothing is parsed before the set is complete.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass, field

from twisted_rserpool.ike.codec import SKF_FIELDS_SIZE, EncryptedFragmentPayload, split_chunks
from twisted_rserpool.ike.constants import GENERIC_PAYLOAD_HEADER_SIZE, IKE_HEADER_SIZE
from twisted_rserpool.ike.crypto import SkCipher

__all__ = [
    "DEFAULT_FRAGMENT_SIZE_IPV4",
    "DEFAULT_FRAGMENT_SIZE_IPV6",
    "MIN_FRAGMENT_SIZE",
    "FragmentLimits",
    "FragmentOutcome",
    "Reassembled",
    "Reassembler",
    "Verdict",
    "chunk_size",
    "datagram_limit",
    "datagram_overhead",
    "fragment_message",
]

DEFAULT_FRAGMENT_SIZE_IPV4 = 576
"""RFC 7383 2.5.1: the IP datagram size to keep to over IPv4 when nothing better is known."""
DEFAULT_FRAGMENT_SIZE_IPV6 = 1280
"""RFC 7383 2.5.1: the IP datagram size to keep to over IPv6 (the IPv6 minimum MTU)."""
MIN_FRAGMENT_SIZE = 200
"""The smallest threshold accepted: every cipher still fits a chunk in an IPv6 datagram."""

_UDP_HEADER = 8
_NON_ESP_MARKER = 4
_BLOCK = 16


def datagram_overhead(ipv6: bool) -> int:
    """Octets of an IP datagram that are not the IKE message: IP and UDP headers, and the
    non-ESP marker (counted always: the message may go to port 4500)."""
    return (40 if ipv6 else 20) + _UDP_HEADER + _NON_ESP_MARKER


def datagram_limit(configured: int | None, ipv6: bool) -> int:
    """The fragmentation threshold: ``configured``, else the RFC 7383 default of the family."""
    if configured is not None:
        return configured
    return DEFAULT_FRAGMENT_SIZE_IPV6 if ipv6 else DEFAULT_FRAGMENT_SIZE_IPV4


def chunk_size(cipher: SkCipher, limit: int, ipv6: bool) -> int:
    """The largest chunk whose IKE Fragment message fits an IP datagram of ``limit`` octets."""
    space = (
        limit
        - datagram_overhead(ipv6)
        - IKE_HEADER_SIZE
        - GENERIC_PAYLOAD_HEADER_SIZE
        - SKF_FIELDS_SIZE
        - cipher.encryption.iv_length
    )
    if cipher.encryption.aead:
        size = space - 16 - 1  # the tag, then the Pad Length octet (no padding)
    else:
        assert cipher.integrity is not None
        # Chunk, padding and Pad Length fill whole cipher blocks.
        size = (space - cipher.integrity.icv_length) // _BLOCK * _BLOCK - 1
    if size < 1:
        raise ValueError(f"a fragment size of {limit} octets leaves no room for content")
    return size


def fragment_message(
    cipher: SkCipher,
    header: bytes,
    first_payload_type: int,
    plaintext: bytes,
    size: int,
    random: Callable[[int], bytes],
) -> tuple[bytes, ...]:
    """The IKE Fragment messages of one message (RFC 7383 2.5).

    ``header`` is the message's 28-octet IKE header (its Next Payload and Length are
    replaced), ``plaintext`` the inner payload chain its SK payload would carry, cut into
    chunks of at most ``size`` octets; ``random`` gives each fragment its IV.
    """
    chunks = split_chunks(plaintext, size)
    total = len(chunks)
    if total > 0xFFFF:
        raise ValueError(f"{total} fragments exceed Total Fragments")
    iv_length = cipher.encryption.iv_length
    return tuple(
        cipher.seal(
            header,
            first_payload_type if number == 1 else 0,
            chunk,
            random(iv_length),
            fragment=(number, total),
        )
        for number, chunk in enumerate(chunks, start=1)
    )


@dataclass(frozen=True)
class FragmentLimits:
    """What one set of the peer's fragments may hold (RFC 7383 section 5).

    ``max_fragments`` bounds Total Fragments, ``max_size`` the sum of the decrypted
    contents (RFC 7383 advises no more than 64 KB; strongSwan accepts 10,000-octet messages
    by default), ``timeout`` the seconds an incomplete set is kept after its first fragment.
    """

    max_fragments: int = 64
    max_size: int = 16384
    timeout: float = 30.0

    def __post_init__(self) -> None:
        if not 1 <= self.max_fragments <= 0xFFFF or self.max_size < 1 or self.timeout <= 0:
            raise ValueError("fragment limits must be positive (at most 65535 fragments)")


class Verdict(enum.Enum):
    """What became of one fragment (``Reassembler.add``)."""

    STORED = "stored"
    """Authentic and kept: the set is not complete yet."""
    COMPLETE = "complete"
    """It completed the set: the message is reassembled."""
    INVALID = "invalid"
    """Bad Fragment Number or Total Fragments, or an older set's: silently discarded."""
    DUPLICATE = "duplicate"
    """Already stored (a retransmission or a replay): silently discarded."""
    FORGED = "forged"
    """Its ICV did not verify: silently discarded, the set is untouched."""
    OVER_LIMIT = "over limit"
    """Authentic, but the set would exceed ``max_size``: the whole set is discarded."""


@dataclass(frozen=True)
class Reassembled:
    """A message made whole again: its SK payload's first inner type and plaintext."""

    message_id: int
    first_payload_type: int
    plaintext: bytes
    first_fragment: bytes
    """The octets of IKE Fragment message 1 (RFC 7383 2.6.1: only its retransmission is
    answered once the request was processed)."""
    fragments: int


@dataclass(frozen=True)
class FragmentOutcome:
    """The verdict on one fragment, why, and the message when it completed the set."""

    verdict: Verdict
    reason: str = ""
    message: Reassembled | None = None


@dataclass
class _Set:
    message_id: int
    total: int
    started: float
    chunks: dict[int, bytes] = field(default_factory=dict)
    size: int = 0
    first_payload_type: int = 0
    first_fragment: bytes = b""


class Reassembler:
    """The peer's IKE Fragment messages of one direction of an IKE SA, one set at a time."""

    def __init__(self, limits: FragmentLimits | None = None) -> None:
        self.limits = limits if limits is not None else FragmentLimits()
        self._set: _Set | None = None

    @property
    def pending(self) -> int:
        """How many fragments the incomplete set holds (0 when there is none)."""
        return len(self._set.chunks) if self._set is not None else 0

    @property
    def stored_octets(self) -> int:
        """The decrypted octets the incomplete set holds."""
        return self._set.size if self._set is not None else 0

    def next_deadline(self) -> float | None:
        """When the incomplete set must be discarded, or None."""
        return self._set.started + self.limits.timeout if self._set is not None else None

    def expire(self, now: float) -> bool:
        """Discard the incomplete set if its time is up at ``now``; True if one was."""
        if self._set is not None and now >= self._set.started + self.limits.timeout:
            self._set = None
            return True
        return False

    def clear(self) -> None:
        """Discard the incomplete set."""
        self._set = None

    def add(
        self,
        message_id: int,
        fragment: EncryptedFragmentPayload,
        raw: bytes,
        open_fragment: Callable[[], bytes | None],
        now: float,
    ) -> FragmentOutcome:
        """Take one IKE Fragment message (``raw``, its SKF payload ``fragment``).

        ``open_fragment`` verifies the fragment's ICV and returns its decrypted content, or
        None when it does not verify; it is called only for a valid, new fragment.
        """
        self.expire(now)
        number, total = fragment.fragment_number, fragment.total_fragments
        if number == 0 or total == 0 or number > total:
            return FragmentOutcome(Verdict.INVALID, f"fragment {number} of {total}")
        if total > self.limits.max_fragments:
            return FragmentOutcome(
                Verdict.INVALID, f"{total} fragments exceed {self.limits.max_fragments}"
            )
        current = self._set
        same = current is not None and current.message_id == message_id
        if current is not None and same and total < current.total:
            return FragmentOutcome(
                Verdict.INVALID, f"{total} fragments, fewer than the {current.total} stored"
            )
        if current is not None and same and total == current.total and number in current.chunks:
            return FragmentOutcome(Verdict.DUPLICATE, f"fragment {number} of {total} again")
        content = open_fragment()
        if content is None:
            return FragmentOutcome(Verdict.FORGED, f"fragment {number} of {total}: bad ICV")
        if current is None or not same or total > current.total:
            # A new message, or a new set of it cut smaller (RFC 7383 2.5.2): start over.
            current = self._set = _Set(message_id, total, now)
        if current.size + len(content) > self.limits.max_size:
            self._set = None
            return FragmentOutcome(
                Verdict.OVER_LIMIT,
                f"fragments of message {message_id} exceed {self.limits.max_size} octets",
            )
        current.chunks[number] = content
        current.size += len(content)
        if number == 1:
            current.first_payload_type = fragment.first_payload_type
            current.first_fragment = raw
        if len(current.chunks) < total:
            return FragmentOutcome(Verdict.STORED)
        self._set = None
        plaintext = b"".join(current.chunks[n] for n in range(1, total + 1))
        return FragmentOutcome(
            Verdict.COMPLETE,
            message=Reassembled(
                message_id, current.first_payload_type, plaintext, current.first_fragment, total
            ),
        )
