"""The CP payload (RFC 7296 section 3.15)."""

from __future__ import annotations

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
    CfgType,
    ConfigAttributeType,
    PayloadType,
)

__all__ = [
    "ConfigurationAttribute",
    "ConfigurationPayload",
]


# --- Configuration (RFC 7296 section 3.15) ---------------------------------------------------


@dataclass(frozen=True, slots=True)
class ConfigurationAttribute:
    """A configuration attribute: a 15-bit type and a value (empty in a request)."""

    attribute_type: int
    value: bytes = b""

    def __post_init__(self) -> None:
        _check_uint("configuration attribute type", self.attribute_type, 15)
        _check_uint("configuration attribute length", len(self.value), 16)

    def encode(self) -> bytes:
        """The attribute's octets."""
        return _U16U16.pack(self.attribute_type, len(self.value)) + self.value


@dataclass(frozen=True, slots=True)
class ConfigurationPayload(_PayloadBase):
    """CP: a request, reply, set or ack of configuration attributes (RFC 7296 section 3.15)."""

    payload_type: ClassVar[PayloadType] = PayloadType.CP
    cfg_type: int
    attributes: tuple[ConfigurationAttribute, ...] = ()
    critical: bool = False

    def __post_init__(self) -> None:
        _check_uint("CFG type", self.cfg_type, 8)
        _freeze(self, "attributes")

    def encode_body(self) -> bytes:
        return bytes((self.cfg_type, 0, 0, 0)) + b"".join(a.encode() for a in self.attributes)


def _decode_cp(body: bytes, critical: bool, limits: DecodeLimits) -> ConfigurationPayload:
    if len(body) < 4:
        raise _fail("truncated CP payload")
    attributes: list[ConfigurationAttribute] = []
    offset = 4
    end = len(body)
    while offset < end:
        if len(attributes) >= limits.max_config_attributes:
            raise _fail("too many configuration attributes")
        if end - offset < 4:
            raise _fail("truncated configuration attribute")
        kind, length = _U16U16.unpack_from(body, offset)
        offset += 4
        if end - offset < length:
            raise _fail("configuration attribute length exceeds the payload")
        attributes.append(
            ConfigurationAttribute(
                _named(ConfigAttributeType, kind & 0x7FFF), body[offset : offset + length]
            )
        )
        offset += length
    return ConfigurationPayload(_named(CfgType, body[0]), tuple(attributes), critical)
