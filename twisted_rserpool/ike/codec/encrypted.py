"""The SK payload, kept opaque for the crypto layer (RFC 7296 3.14; SKF is in ``fragment``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from twisted_rserpool.ike.codec.base import _check_uint, _generic_header, _PayloadBase
from twisted_rserpool.ike.constants import (
    PayloadType,
)

__all__ = [
    "EncryptedPayload",
]


# --- Encrypted payload (RFC 7296 section 3.14) ------------------------------------


@dataclass(frozen=True, slots=True)
class EncryptedPayload(_PayloadBase):
    """SK: the type of the first inner payload and the opaque IV, ciphertext and ICV.

    It is always the last payload of a message. The octets of the message before ``data``
    (header, earlier payloads, SK's generic header) are the associated data of AEAD ciphers.
    """

    payload_type: ClassVar[PayloadType] = PayloadType.SK
    first_payload_type: int
    data: bytes
    critical: bool = False

    def __post_init__(self) -> None:
        _check_uint("first payload type", self.first_payload_type, 8)

    def encode_body(self) -> bytes:
        return self.data

    def encode(self, next_payload: int = PayloadType.NO_NEXT_PAYLOAD) -> bytes:
        """The payload; its Next Payload field is the first inner payload's type."""
        return _generic_header(self.first_payload_type, self.critical, len(self.data)) + self.data
