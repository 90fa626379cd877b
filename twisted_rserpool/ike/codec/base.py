"""What every payload module of the codec shares: decode limits, struct layouts, the
generic payload header and checks.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import IntEnum
from typing import TypeVar

from twisted_rserpool.ike.constants import (
    GENERIC_PAYLOAD_HEADER_SIZE,
    NotifyType,
    PayloadType,
)
from twisted_rserpool.ike.errors import InvalidIkeMessage

__all__ = [
    "DEFAULT_LIMITS",
    "MAX_CONFIG_ATTRIBUTES",
    "MAX_DELETE_SPIS",
    "MAX_ELEMENTS",
    "MAX_MESSAGE_SIZE",
    "MAX_PAYLOADS",
    "MAX_PROPOSALS",
    "MAX_SA_TRANSFORMS",
    "MAX_TRAFFIC_SELECTORS",
    "MAX_TRANSFORMS",
    "MAX_TRANSFORM_ATTRIBUTES",
    "DecodeLimits",
]


# Bounds on untrusted input. The message size bound is the largest UDP payload. The counts
# are well above what real peers send, and keep the decoding cost per octet of a hostile
# datagram close to that of an ordinary IKE_SA_INIT (docs/ike-codec.md has measurements).
MAX_MESSAGE_SIZE = 65535
MAX_PAYLOADS = 128
MAX_ELEMENTS = 1024
MAX_PROPOSALS = 64
MAX_TRANSFORMS = 128
MAX_SA_TRANSFORMS = 256
MAX_DELETE_SPIS = 512
MAX_TRANSFORM_ATTRIBUTES = 4
# The Number of TSs field is one octet: the decoder takes all it can carry, so a long list
# never tears down an IKE SA. The CHILD_SA policy bounds what we accept
# (IkeConfig.max_traffic_selectors: narrowed, RFC 7296 section 2.9).
MAX_TRAFFIC_SELECTORS = 255
MAX_CONFIG_ATTRIBUTES = 128


@dataclass(frozen=True, slots=True)
class DecodeLimits:
    """Bounds the decoder enforces on untrusted input; beyond them it raises INVALID_SYNTAX.

    ``max_elements`` bounds the decoded items of one payload chain together: payloads,
    proposals, transforms, transform attributes, traffic selectors, configuration attributes
    and Delete SPIs.
    """

    max_message_size: int = MAX_MESSAGE_SIZE
    max_payloads: int = MAX_PAYLOADS
    max_elements: int = MAX_ELEMENTS
    max_proposals: int = MAX_PROPOSALS
    max_transforms: int = MAX_TRANSFORMS
    max_sa_transforms: int = MAX_SA_TRANSFORMS
    max_delete_spis: int = MAX_DELETE_SPIS
    max_transform_attributes: int = MAX_TRANSFORM_ATTRIBUTES
    max_traffic_selectors: int = MAX_TRAFFIC_SELECTORS
    max_config_attributes: int = MAX_CONFIG_ATTRIBUTES


DEFAULT_LIMITS = DecodeLimits()
"""The limits :func:`decode_message` uses unless given others."""

_HEADER = struct.Struct("!8s8sBBBBII")
_GENERIC = struct.Struct("!BBH")
_U16U16 = struct.Struct("!HH")

_CRITICAL = 0x80

_E = TypeVar("_E", bound=IntEnum)


def _named(enum: type[_E], value: int) -> int:
    """The enum member for a known value (readable reprs), the plain int otherwise."""
    member: int = enum._value2member_map_.get(value, value)  # type: ignore[assignment]
    return member


def _fail(reason: str) -> InvalidIkeMessage:
    return InvalidIkeMessage(reason, NotifyType.INVALID_SYNTAX)


def _check_uint(name: str, value: int, bits: int) -> None:
    if not 0 <= value < (1 << bits):
        raise ValueError(f"{name} must fit in {bits} bits, got {value!r}")


def _freeze(value: object, name: str) -> None:
    """Turn a list given for a tuple field into a tuple, so values stay hashable and equal."""
    if not isinstance(getattr(value, name), tuple):
        object.__setattr__(value, name, tuple(getattr(value, name)))


def _generic_header(next_payload: int, critical: bool, body_length: int) -> bytes:
    length = GENERIC_PAYLOAD_HEADER_SIZE + body_length
    if length > 0xFFFF:
        raise ValueError(f"payload of {length} octets exceeds the 16-bit Payload Length")
    return _GENERIC.pack(next_payload, _CRITICAL if critical else 0, length)


class _PayloadBase:
    """Shared encoding of the generic payload header."""

    __slots__ = ()

    critical: bool

    def encode_body(self) -> bytes:
        """The payload's octets after the generic payload header."""
        raise NotImplementedError

    def encode(self, next_payload: int = PayloadType.NO_NEXT_PAYLOAD) -> bytes:
        """The payload with its generic header, whose Next Payload field is ``next_payload``."""
        body = self.encode_body()
        return _generic_header(next_payload, self.critical, len(body)) + body


@dataclass(frozen=True, slots=True)
class _OpaquePayload(_PayloadBase):
    """Shared shape of the payloads whose body is one opaque octet string."""

    data: bytes
    critical: bool = False

    def encode_body(self) -> bytes:
        return self.data
