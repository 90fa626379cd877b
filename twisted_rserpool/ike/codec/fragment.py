"""The Encrypted Fragment payload, SKF (RFC 7383 section 2.5), kept opaque for the crypto layer.

An IKE message with an SK payload may be sent as IKE Fragment messages instead: the SK
payload's plaintext is cut into chunks regardless of the inner payloads' boundaries, and
each chunk becomes the content of one SKF payload, encrypted and integrity-protected on its
own. The codec keeps Fragment Number and Total Fragments as found; the checks of RFC 7383
section 2.6 (non-zero, number at most total, ...) are the reassembler's
(``twisted_rserpool.ike.fragments``), which silently discards what fails them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from twisted_rserpool.ike.codec.base import (
    _U16U16,
    _check_uint,
    _fail,
    _generic_header,
    _named,
    _PayloadBase,
)
from twisted_rserpool.ike.constants import PayloadType

__all__ = [
    "SKF_FIELDS_SIZE",
    "EncryptedFragmentPayload",
    "split_chunks",
]

SKF_FIELDS_SIZE = 4
"""Octets of Fragment Number and Total Fragments, between the generic header and the IV."""


@dataclass(frozen=True, slots=True)
class EncryptedFragmentPayload(_PayloadBase):
    """SKF: one fragment of an encrypted message (RFC 7383 section 2.5).

    ``first_payload_type`` is the first inner payload's type in fragment 1 and 0 in others;
    ``data`` is the opaque IV, ciphertext and ICV of this fragment's chunk.
    """

    payload_type: ClassVar[PayloadType] = PayloadType.SKF
    fragment_number: int
    total_fragments: int
    first_payload_type: int
    data: bytes
    critical: bool = False

    def __post_init__(self) -> None:
        _check_uint("fragment number", self.fragment_number, 16)
        _check_uint("total fragments", self.total_fragments, 16)
        _check_uint("first payload type", self.first_payload_type, 8)

    def encode_body(self) -> bytes:
        return _U16U16.pack(self.fragment_number, self.total_fragments) + self.data

    def encode(self, next_payload: int = PayloadType.NO_NEXT_PAYLOAD) -> bytes:
        """The payload; its Next Payload field is the first inner payload's type (or 0)."""
        body = self.encode_body()
        return _generic_header(self.first_payload_type, self.critical, len(body)) + body


def _decode_skf(body: bytes, following: int, critical: bool) -> EncryptedFragmentPayload:
    """The SKF payload whose body (after the generic header) is ``body``."""
    if len(body) < SKF_FIELDS_SIZE:
        raise _fail("truncated SKF payload")
    number, total = _U16U16.unpack_from(body)
    return EncryptedFragmentPayload(
        number, total, _named(PayloadType, following), body[SKF_FIELDS_SIZE:], critical
    )


def split_chunks(plaintext: bytes, chunk_size: int) -> list[bytes]:
    """``plaintext`` (an SK payload's inner chain) cut into chunks of at most ``chunk_size``.

    Every chunk but the last is full; an empty plaintext gives one empty chunk, so a message
    always has at least one fragment.
    """
    if chunk_size < 1:
        raise ValueError("chunks hold at least one octet")
    if not plaintext:
        return [b""]
    return [plaintext[i : i + chunk_size] for i in range(0, len(plaintext), chunk_size)]
