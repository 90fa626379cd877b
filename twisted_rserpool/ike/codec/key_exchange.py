"""KE and Nonce payloads (RFC 7296 sections 3.4, 3.9)."""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import ClassVar

from twisted_rserpool.ike.codec.base import (
    DecodeLimits,
    _check_uint,
    _fail,
    _named,
    _OpaquePayload,
    _PayloadBase,
)
from twisted_rserpool.ike.constants import (
    TRANSFORM_ID_ENUMS,
    PayloadType,
    TransformType,
)

__all__ = [
    "KeyExchangePayload",
    "NoncePayload",
]

_U16 = struct.Struct("!H")
_KE = struct.Struct("!HH")


# --- Key Exchange and Nonce (RFC 7296 sections 3.4, 3.9) ----------------------------------


@dataclass(frozen=True, slots=True)
class KeyExchangePayload(_PayloadBase):
    """KE: the Diffie-Hellman group number and public value (RFC 7296 section 3.4)."""

    payload_type: ClassVar[PayloadType] = PayloadType.KE
    dh_group: int
    data: bytes
    critical: bool = False

    def __post_init__(self) -> None:
        _check_uint("DH group", self.dh_group, 16)

    def encode_body(self) -> bytes:
        return _KE.pack(self.dh_group, 0) + self.data


def _decode_ke(body: bytes, critical: bool, limits: DecodeLimits) -> KeyExchangePayload:
    if len(body) < 4:
        raise _fail("truncated KE payload")
    group = _U16.unpack_from(body)[0]
    return KeyExchangePayload(
        _named(TRANSFORM_ID_ENUMS[TransformType.DH], group), body[4:], critical
    )


@dataclass(frozen=True, slots=True)
class NoncePayload(_OpaquePayload):
    """Ni or Nr: the nonce (RFC 7296 section 3.9; 16 to 256 octets, checked by the SA layer)."""

    payload_type: ClassVar[PayloadType] = PayloadType.NONCE
