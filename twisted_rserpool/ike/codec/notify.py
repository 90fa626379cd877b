"""Notify, Delete and Vendor ID payloads (RFC 7296 sections 3.10-3.12)."""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import ClassVar

from twisted_rserpool.ike.codec.base import (
    DecodeLimits,
    _check_uint,
    _fail,
    _freeze,
    _named,
    _OpaquePayload,
    _PayloadBase,
)
from twisted_rserpool.ike.constants import (
    NotifyType,
    PayloadType,
    ProtocolId,
)

__all__ = [
    "DeletePayload",
    "NotifyPayload",
    "VendorIdPayload",
]

_NOTIFY = struct.Struct("!BBH")
_DELETE = struct.Struct("!BBH")
_DERIVED = -1


# --- Notify and Delete (RFC 7296 sections 3.10, 3.11) --------------------------------------


@dataclass(frozen=True, slots=True)
class NotifyPayload(_PayloadBase):
    """N: a notify message type with optional protocol, SPI and data (RFC 7296 section 3.10)."""

    payload_type: ClassVar[PayloadType] = PayloadType.NOTIFY
    notify_type: int
    data: bytes = b""
    protocol_id: int = ProtocolId.NONE
    spi: bytes = b""
    critical: bool = False

    def __post_init__(self) -> None:
        _check_uint("notify type", self.notify_type, 16)
        _check_uint("protocol ID", self.protocol_id, 8)
        if len(self.spi) > 0xFF:
            raise ValueError("SPI longer than 255 octets")

    @property
    def is_error(self) -> bool:
        """True for error notify types (below 16384)."""
        return self.notify_type < 16384

    def encode_body(self) -> bytes:
        return (
            _NOTIFY.pack(self.protocol_id, len(self.spi), self.notify_type) + self.spi + self.data
        )


def _decode_notify(body: bytes, critical: bool, limits: DecodeLimits) -> NotifyPayload:
    if len(body) < 4:
        raise _fail("truncated Notify payload")
    protocol, spi_size, ntype = _NOTIFY.unpack_from(body)
    if 4 + spi_size > len(body):
        raise _fail("Notify SPI size exceeds the payload")
    return NotifyPayload(
        _named(NotifyType, ntype),
        body[4 + spi_size :],
        _named(ProtocolId, protocol),
        body[4 : 4 + spi_size],
        critical,
    )


@dataclass(frozen=True, slots=True)
class DeletePayload(_PayloadBase):
    """D: SAs to delete; no SPIs and ``spi_size`` 0 for the IKE SA (RFC 7296 section 3.11).

    ``spi_size`` defaults to the size of the SPIs given (4 for AH and ESP, 0 for IKE).
    """

    payload_type: ClassVar[PayloadType] = PayloadType.DELETE
    protocol_id: int
    spis: tuple[bytes, ...] = ()
    spi_size: int = -1
    critical: bool = False

    def __post_init__(self) -> None:
        _check_uint("protocol ID", self.protocol_id, 8)
        _freeze(self, "spis")
        if self.spi_size == _DERIVED:
            # Every SPI has the size that the protocol defines (RFC 7296 section 3.11).
            if self.spis:
                size = len(self.spis[0])
            elif self.protocol_id in (ProtocolId.AH, ProtocolId.ESP):
                size = 4
            else:
                size = 0
            object.__setattr__(self, "spi_size", size)
        _check_uint("SPI size", self.spi_size, 8)
        _check_uint("number of SPIs", len(self.spis), 16)
        if any(len(spi) != self.spi_size for spi in self.spis):
            raise ValueError(f"every SPI must be spi_size={self.spi_size} octets")
        if self.spi_size == 0 and self.spis:
            raise ValueError("SPIs of size 0 cannot be listed")

    @classmethod
    def ike_sa(cls) -> DeletePayload:
        """The Delete payload that deletes the IKE SA the message belongs to."""
        return cls(ProtocolId.IKE)

    @classmethod
    def child_sas(cls, protocol_id: int, spis: tuple[bytes, ...]) -> DeletePayload:
        """The Delete payload for ESP or AH SAs with these 4-octet SPIs."""
        return cls(protocol_id, spis, 4)

    def encode_body(self) -> bytes:
        return _DELETE.pack(self.protocol_id, self.spi_size, len(self.spis)) + b"".join(self.spis)


def _decode_delete(body: bytes, critical: bool, limits: DecodeLimits) -> DeletePayload:
    if len(body) < 4:
        raise _fail("truncated Delete payload")
    protocol, spi_size, count = _DELETE.unpack_from(body)
    if spi_size == 0 and count:
        raise _fail("Delete payload lists SPIs of size 0")
    if count > limits.max_delete_spis:
        raise _fail(f"{count} SPIs in a Delete payload exceed the limit")
    if 4 + spi_size * count != len(body):
        raise _fail("Delete payload length does not match its SPIs")
    spis = tuple(body[4 + i * spi_size : 4 + (i + 1) * spi_size] for i in range(count))
    return DeletePayload(_named(ProtocolId, protocol), spis, spi_size, critical)


@dataclass(frozen=True, slots=True)
class VendorIdPayload(_OpaquePayload):
    """V: an opaque vendor identifier (RFC 7296 section 3.12)."""

    payload_type: ClassVar[PayloadType] = PayloadType.VENDOR_ID
