"""What the exchange tasks share: payload lookups, proposal conversion, keys from ``random``."""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from twisted_rserpool.ike import crypto
from twisted_rserpool.ike.codec import (
    NotifyPayload,
    Payload,
    Proposal,
    Transform,
    TransformAttribute,
)
from twisted_rserpool.ike.constants import NotifyType, TransformAttributeType
from twisted_rserpool.ike.crypto import DhGroupId
from twisted_rserpool.ike.proposals import ENCR, OfferedProposal, OfferedTransform

__all__ = [
    "MAX_NONCE",
    "MIN_NONCE",
    "UNACCEPTABLE_KEY_LENGTH",
    "ZERO_SPI",
    "Refusal",
    "find",
    "from_payload",
    "has_notify",
    "key_pair",
    "notifies",
    "notify_name",
    "to_payload",
    "valid_nonce",
]

ZERO_SPI = bytes(8)
MIN_NONCE = 16
"""Nonce lengths RFC 7296 section 2.10 allows (at least 16 octets, at most 256)."""
MAX_NONCE = 256

_P = TypeVar("_P")


@dataclass(frozen=True)
class Refusal:
    """Why a request is refused, and the notify that says so."""

    notify_type: int
    reason: str
    data: bytes = b""


def valid_nonce(nonce: bytes) -> bool:
    """Whether a peer's nonce has a length RFC 7296 allows."""
    return MIN_NONCE <= len(nonce) <= MAX_NONCE


def find(payloads: Sequence[Payload], kind: type[_P]) -> _P | None:
    """The first payload of type ``kind``, or None."""
    for payload in payloads:
        if isinstance(payload, kind):
            return payload
    return None


def notifies(payloads: Sequence[Payload]) -> list[NotifyPayload]:
    """The Notify payloads, in order."""
    return [p for p in payloads if isinstance(p, NotifyPayload)]


def has_notify(payloads: Sequence[Payload], notify_type: int) -> bool:
    """Whether a Notify of ``notify_type`` is among ``payloads``."""
    return any(n.notify_type == notify_type for n in notifies(payloads))


def notify_name(notify_type: int) -> str:
    """The RFC name of a notify type (its number when unknown)."""
    try:
        return NotifyType(notify_type).name
    except ValueError:
        return str(notify_type)


@functools.lru_cache(maxsize=256)
def to_payload(proposal: OfferedProposal) -> Proposal:
    """A codec Proposal from a proposal of ``proposals`` (values are cached: both immutable)."""
    return Proposal(
        proposal.number,
        proposal.protocol,
        proposal.spi,
        tuple(
            Transform(
                t.type,
                t.id,
                (TransformAttribute.key_length(t.key_length),) if t.key_length else (),
            )
            for t in proposal.transforms
        ),
    )


UNACCEPTABLE_KEY_LENGTH = -1
"""Key Length of an offered transform we must consider unacceptable (RFC 7296 3.3.6): it
matches none of ours, yet its type still counts as offered."""


def _offered_transform(transform: Transform) -> OfferedTransform:
    """A transform as offered; an attribute we do not understand, or a Key Length on a
    transform type that takes none (PRF, INTEG, DH, ESN: RFC 7296 3.3.5), makes it
    unacceptable, while other transforms of its type are processed as usual (3.3.6)."""
    key_length: int | None = None
    for attribute in transform.attributes:
        if (
            attribute.attribute_type != TransformAttributeType.KEY_LENGTH
            or not isinstance(attribute.value, int)  # Key Length is TV only
            or key_length is not None
            or transform.transform_type != ENCR
        ):
            key_length = UNACCEPTABLE_KEY_LENGTH
            break
        key_length = attribute.value
    return OfferedTransform(transform.transform_type, transform.transform_id, key_length)


@functools.lru_cache(maxsize=1024)
def from_payload(proposal: Proposal) -> OfferedProposal:
    """A proposal of ``proposals`` from a decoded codec Proposal (cached: both immutable).

    Transforms RFC 7296 3.3.6 makes unacceptable keep ``UNACCEPTABLE_KEY_LENGTH``.
    """
    return OfferedProposal(
        proposal.number,
        proposal.protocol_id,
        proposal.spi,
        tuple(_offered_transform(t) for t in proposal.transforms),
    )


# Bits of a private value drawn from an injected source: the order's size for the curves,
# twice the strength of the largest MODP group for MODP (RFC 3526 section 8).
_PRIVATE_BITS: dict[int, int] = {
    DhGroupId.ECP_256: 256,
    DhGroupId.ECP_384: 384,
    DhGroupId.ECP_521: 521,
    DhGroupId.CURVE25519: 256,
}
_MODP_PRIVATE_BITS = 512


def key_pair(group_id: int, random: Callable[[int], bytes]) -> crypto.DhPrivateKey:
    """An ephemeral key pair of ``group_id`` whose private value comes from ``random``.

    With the default ``os.urandom`` the library generates the key itself.
    """
    group = crypto.DH_GROUPS[group_id]
    if random is os.urandom:
        return group.generate()
    bits = _PRIVATE_BITS.get(group_id, _MODP_PRIVATE_BITS)
    size = (bits + 7) // 8
    while True:
        value = int.from_bytes(random(size), "big") & ((1 << bits) - 1)
        try:
            return group.load(value.to_bytes(size, "big"))
        except ValueError:  # zero, or not below the curve's order: draw again
            continue
