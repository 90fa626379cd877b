"""The fixed IKE header (RFC 7296 section 3.1)."""

from __future__ import annotations

from dataclasses import dataclass

from twisted_rserpool.ike.codec.base import _HEADER, _fail, _named
from twisted_rserpool.ike.constants import (
    IKE_HEADER_SIZE,
    ExchangeType,
    HeaderFlag,
    PayloadType,
)

__all__ = [
    "IkeHeader",
    "decode_header",
]


# --- header ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class IkeHeader:
    """The fixed IKE header as found on the wire (RFC 7296 section 3.1)."""

    spi_i: bytes
    spi_r: bytes
    next_payload: int
    major_version: int
    minor_version: int
    exchange_type: int
    flags: int
    message_id: int
    length: int

    @property
    def initiator(self) -> bool:
        """The I flag: the original initiator of the IKE SA sent this message."""
        return bool(self.flags & HeaderFlag.INITIATOR)

    @property
    def response(self) -> bool:
        """The R flag: this message answers a request with the same message ID."""
        return bool(self.flags & HeaderFlag.RESPONSE)

    @property
    def higher_version(self) -> bool:
        """The V flag: the sender can speak a higher major version."""
        return bool(self.flags & HeaderFlag.VERSION)

    def encode(self) -> bytes:
        """The 28 header octets."""
        return _HEADER.pack(
            self.spi_i,
            self.spi_r,
            self.next_payload,
            (self.major_version << 4) | self.minor_version,
            self.exchange_type,
            self.flags,
            self.message_id,
            self.length,
        )


def decode_header(data: bytes) -> IkeHeader:
    """Decode only the 28-octet IKE header, e.g. to find the IKE SA before decoding further.

    The version and length fields are returned as found; :func:`decode_message` checks them.
    """
    if len(data) < IKE_HEADER_SIZE:
        raise _fail(f"{len(data)} octets are shorter than the IKE header")
    spi_i, spi_r, next_payload, version, exchange, flags, message_id, length = _HEADER.unpack_from(
        data
    )
    return IkeHeader(
        spi_i,
        spi_r,
        _named(PayloadType, next_payload),
        version >> 4,
        version & 0x0F,
        _named(ExchangeType, exchange),
        flags,
        message_id,
        length,
    )
