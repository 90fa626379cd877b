"""The SA payload: proposals, transforms and their attributes (RFC 7296 section 3.3)."""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import ClassVar

from twisted_rserpool.ike.codec.base import (
    _U16U16,
    DecodeLimits,
    _check_uint,
    _fail,
    _freeze,
    _named,
    _PayloadBase,
)
from twisted_rserpool.ike.constants import (
    TRANSFORM_ID_ENUMS,
    PayloadType,
    ProtocolId,
    TransformAttributeType,
    TransformType,
)

__all__ = [
    "Proposal",
    "SecurityAssociationPayload",
    "Transform",
    "TransformAttribute",
]

_PROPOSAL = struct.Struct("!BBHBBBB")
_TRANSFORM = struct.Struct("!BBHBBH")
_MORE_PROPOSALS = 2
_MORE_TRANSFORMS = 3
_ATTRIBUTE_TV = 0x8000


# --- Security Association (RFC 7296 section 3.3) ---------------------------------------


@dataclass(frozen=True, slots=True)
class TransformAttribute:
    """A transform attribute: an int ``value`` is encoded TV (16 bits), bytes are TLV."""

    attribute_type: int
    value: int | bytes

    def __post_init__(self) -> None:
        _check_uint("attribute type", self.attribute_type, 15)
        if isinstance(self.value, int):
            _check_uint("TV attribute value", self.value, 16)
        elif len(self.value) > 0xFFFF:
            raise ValueError("TLV attribute value longer than 65535 octets")

    @classmethod
    def key_length(cls, bits: int) -> TransformAttribute:
        """The Key Length attribute (type 14, TV) for a key of ``bits`` bits."""
        return cls(TransformAttributeType.KEY_LENGTH, bits)

    def encode(self) -> bytes:
        """The attribute's octets (TV or TLV format)."""
        if isinstance(self.value, int):
            return _U16U16.pack(_ATTRIBUTE_TV | self.attribute_type, self.value)
        return _U16U16.pack(self.attribute_type, len(self.value)) + self.value


@dataclass(frozen=True, slots=True)
class Transform:
    """A transform substructure: a transform type, its ID, and attributes (key length)."""

    transform_type: int
    transform_id: int
    attributes: tuple[TransformAttribute, ...] = ()

    def __post_init__(self) -> None:
        _check_uint("transform type", self.transform_type, 8)
        _check_uint("transform ID", self.transform_id, 16)
        _freeze(self, "attributes")

    @property
    def key_length(self) -> int | None:
        """The value of the Key Length attribute, or None when there is none."""
        for attribute in self.attributes:
            if attribute.attribute_type == TransformAttributeType.KEY_LENGTH and isinstance(
                attribute.value, int
            ):
                return attribute.value
        return None

    def encode(self, last: bool = True) -> bytes:
        """The transform substructure; ``last`` sets the Last Substruc field."""
        attributes = b"".join(a.encode() for a in self.attributes)
        length = 8 + len(attributes)
        if length > 0xFFFF:
            raise ValueError("transform longer than 65535 octets")
        return (
            _TRANSFORM.pack(
                0 if last else _MORE_TRANSFORMS,
                0,
                length,
                self.transform_type,
                0,
                self.transform_id,
            )
            + attributes
        )


@dataclass(frozen=True, slots=True)
class Proposal:
    """A proposal substructure: number, protocol, SPI (empty for an initial IKE SA), transforms."""

    number: int
    protocol_id: int
    spi: bytes = b""
    transforms: tuple[Transform, ...] = ()

    def __post_init__(self) -> None:
        _check_uint("proposal number", self.number, 8)
        _freeze(self, "transforms")
        _check_uint("protocol ID", self.protocol_id, 8)
        if len(self.spi) > 0xFF:
            raise ValueError("SPI longer than 255 octets")
        if len(self.transforms) > 0xFF:
            raise ValueError("more than 255 transforms in a proposal")

    def transforms_of(self, transform_type: int) -> tuple[Transform, ...]:
        """The transforms of one type, in the order proposed."""
        return tuple(t for t in self.transforms if t.transform_type == transform_type)

    def encode(self, last: bool = True) -> bytes:
        """The proposal substructure; ``last`` sets the Last Substruc field."""
        count = len(self.transforms)
        transforms = b"".join(t.encode(i == count - 1) for i, t in enumerate(self.transforms))
        length = 8 + len(self.spi) + len(transforms)
        if length > 0xFFFF:
            raise ValueError("proposal longer than 65535 octets")
        head = _PROPOSAL.pack(
            0 if last else _MORE_PROPOSALS,
            0,
            length,
            self.number,
            self.protocol_id,
            len(self.spi),
            count,
        )
        return head + self.spi + transforms


@dataclass(frozen=True, slots=True)
class SecurityAssociationPayload(_PayloadBase):
    """SA: the proposals (RFC 7296 section 3.3)."""

    payload_type: ClassVar[PayloadType] = PayloadType.SA
    proposals: tuple[Proposal, ...]
    critical: bool = False

    def __post_init__(self) -> None:
        _freeze(self, "proposals")
        if not self.proposals:
            raise ValueError("an SA payload holds at least one proposal")

    def encode_body(self) -> bytes:
        count = len(self.proposals)
        return b"".join(p.encode(i == count - 1) for i, p in enumerate(self.proposals))


def _decode_attributes(data: bytes, limits: DecodeLimits) -> tuple[TransformAttribute, ...]:
    attributes: list[TransformAttribute] = []
    offset = 0
    end = len(data)
    while offset < end:
        if len(attributes) >= limits.max_transform_attributes:
            raise _fail("too many transform attributes")
        if end - offset < 4:
            raise _fail("truncated transform attribute")
        kind, value = _U16U16.unpack_from(data, offset)
        offset += 4
        if kind & _ATTRIBUTE_TV:
            attributes.append(
                TransformAttribute(_named(TransformAttributeType, kind & 0x7FFF), value)
            )
        else:
            if end - offset < value:
                raise _fail("transform attribute length exceeds its transform")
            attributes.append(TransformAttribute(kind, data[offset : offset + value]))
            offset += value
    return tuple(attributes)


def _decode_transforms(
    data: bytes, offset: int, count: int, limits: DecodeLimits
) -> tuple[Transform, ...]:
    if count > limits.max_transforms:
        raise _fail(f"{count} transforms in a proposal exceed the limit")
    transforms: list[Transform] = []
    end = len(data)
    for index in range(count):
        if end - offset < 8:
            raise _fail("truncated transform")
        more, _, length, ttype, _, tid = _TRANSFORM.unpack_from(data, offset)
        if length < 8 or offset + length > end:
            raise _fail("transform length out of bounds")
        last = index == count - 1
        if more != (0 if last else _MORE_TRANSFORMS):
            raise _fail("transform Last Substruc does not match the transform count")
        id_enum = TRANSFORM_ID_ENUMS.get(ttype)
        transforms.append(
            Transform(
                _named(TransformType, ttype),
                _named(id_enum, tid) if id_enum is not None else tid,
                _decode_attributes(data[offset + 8 : offset + length], limits),
            )
        )
        offset += length
    if offset != end:
        raise _fail("proposal length does not match its transforms")
    return tuple(transforms)


def _decode_sa(body: bytes, critical: bool, limits: DecodeLimits) -> SecurityAssociationPayload:
    proposals: list[Proposal] = []
    offset = 0
    end = len(body)
    total_transforms = 0
    if end == 0:
        raise _fail("SA payload without proposals")
    while offset < end:
        if len(proposals) >= limits.max_proposals:
            raise _fail("too many proposals")
        if end - offset < 8:
            raise _fail("truncated proposal")
        more, _, length, number, protocol, spi_size, count = _PROPOSAL.unpack_from(body, offset)
        if length < 8 + spi_size or offset + length > end:
            raise _fail("proposal length out of bounds")
        last = offset + length == end
        if more != (0 if last else _MORE_PROPOSALS):
            raise _fail("proposal Last Substruc does not match the SA payload length")
        total_transforms += count
        if total_transforms > limits.max_sa_transforms:
            raise _fail("too many transforms in the SA payload")
        chunk = body[offset : offset + length]
        proposals.append(
            Proposal(
                number,
                _named(ProtocolId, protocol),
                chunk[8 : 8 + spi_size],
                _decode_transforms(chunk, 8 + spi_size, count, limits),
            )
        )
        offset += length
    return SecurityAssociationPayload(tuple(proposals), critical)
