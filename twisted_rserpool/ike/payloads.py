"""The IKEv2 message codec: the IKE header, every RFC 7296 payload, and RFC 5685 notify data.

Pure Python, no I/O: ``decode_message(bytes) -> IkeMessage`` and ``IkeMessage.encode() ->
bytes``. Every payload is an immutable value with ``encode()``; malformed input raises
:class:`~twisted_rserpool.ike.errors.InvalidIkeMessage` and nothing else.

The Encrypted payload (SK) keeps its IV, ciphertext and ICV as opaque bytes; the crypto layer
decrypts them and decodes the plaintext with :func:`decode_payload_chain`.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass
from enum import IntEnum
from ipaddress import IPv4Address, IPv6Address
from typing import ClassVar, TypeVar

from twisted_rserpool.ike.constants import (
    GENERIC_PAYLOAD_HEADER_SIZE,
    IKE_HEADER_SIZE,
    IKE_MAJOR_VERSION,
    NAT_KEEPALIVE,
    NON_ESP_MARKER,
    TRANSFORM_ID_ENUMS,
    AuthMethod,
    CertEncoding,
    CfgType,
    ConfigAttributeType,
    ExchangeType,
    GatewayIdentityType,
    HeaderFlag,
    IdType,
    NotifyType,
    PayloadType,
    ProtocolId,
    TransformAttributeType,
    TransformType,
    TsType,
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
    "AuthenticationPayload",
    "CertificatePayload",
    "CertificateRequestPayload",
    "ConfigurationAttribute",
    "ConfigurationPayload",
    "DecodeLimits",
    "DeletePayload",
    "EapPayload",
    "EncryptedFragmentPayload",
    "EncryptedPayload",
    "GatewayIdentity",
    "IdInitiatorPayload",
    "IdResponderPayload",
    "IkeHeader",
    "IkeMessage",
    "KeyExchangePayload",
    "NoncePayload",
    "NotifyPayload",
    "Payload",
    "Proposal",
    "RedirectData",
    "SecurityAssociationPayload",
    "TrafficSelector",
    "Transform",
    "TransformAttribute",
    "TsInitiatorPayload",
    "TsResponderPayload",
    "UnknownPayload",
    "UnknownTrafficSelector",
    "VendorIdPayload",
    "add_non_esp_marker",
    "decode_header",
    "decode_message",
    "decode_payload_chain",
    "encode_payload_chain",
    "is_nat_keepalive",
    "parse_redirect",
    "parse_redirected_from",
    "redirect_notify",
    "redirect_supported_notify",
    "redirected_from_notify",
    "strip_non_esp_marker",
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
MAX_TRAFFIC_SELECTORS = 64
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
_U16 = struct.Struct("!H")
_U16U16 = struct.Struct("!HH")
_PROPOSAL = struct.Struct("!BBHBBBB")
_TRANSFORM = struct.Struct("!BBHBBH")
_NOTIFY = struct.Struct("!BBH")
_DELETE = struct.Struct("!BBH")
_TS_HEAD = struct.Struct("!BBH")
_TS_PORTS = struct.Struct("!HH")
_KE = struct.Struct("!HH")

_CRITICAL = 0x80
_MORE_PROPOSALS = 2
_MORE_TRANSFORMS = 3
_ATTRIBUTE_TV = 0x8000
_DERIVED = -1

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


# --- simple payloads (RFC 7296 sections 3.4 - 3.9, 3.12, 3.16) ----------------------------


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
class IdInitiatorPayload(_PayloadBase):
    """IDi: the initiator's identity (RFC 7296 section 3.5)."""

    payload_type: ClassVar[PayloadType] = PayloadType.IDI
    id_type: int
    data: bytes
    critical: bool = False

    def __post_init__(self) -> None:
        _check_uint("ID type", self.id_type, 8)

    def encode_body(self) -> bytes:
        """ID Type, RESERVED and the identification data: RestOfInitIDPayload of RFC 7296 2.15."""
        return bytes((self.id_type, 0, 0, 0)) + self.data


@dataclass(frozen=True, slots=True)
class IdResponderPayload(_PayloadBase):
    """IDr: the responder's identity (RFC 7296 section 3.5)."""

    payload_type: ClassVar[PayloadType] = PayloadType.IDR
    id_type: int
    data: bytes
    critical: bool = False

    def __post_init__(self) -> None:
        _check_uint("ID type", self.id_type, 8)

    def encode_body(self) -> bytes:
        """ID Type, RESERVED and the identification data: RestOfRespIDPayload of RFC 7296 2.15."""
        return bytes((self.id_type, 0, 0, 0)) + self.data


def _decode_idi(body: bytes, critical: bool, limits: DecodeLimits) -> IdInitiatorPayload:
    if len(body) < 4:
        raise _fail("truncated IDi payload")
    return IdInitiatorPayload(_named(IdType, body[0]), body[4:], critical)


def _decode_idr(body: bytes, critical: bool, limits: DecodeLimits) -> IdResponderPayload:
    if len(body) < 4:
        raise _fail("truncated IDr payload")
    return IdResponderPayload(_named(IdType, body[0]), body[4:], critical)


@dataclass(frozen=True, slots=True)
class CertificatePayload(_PayloadBase):
    """CERT: a certificate or related data in some encoding (RFC 7296 section 3.6)."""

    payload_type: ClassVar[PayloadType] = PayloadType.CERT
    encoding: int
    data: bytes
    critical: bool = False

    def __post_init__(self) -> None:
        _check_uint("certificate encoding", self.encoding, 8)

    def encode_body(self) -> bytes:
        return bytes((self.encoding,)) + self.data


@dataclass(frozen=True, slots=True)
class CertificateRequestPayload(_PayloadBase):
    """CERTREQ: wanted encoding and concatenated CA key hashes (RFC 7296 section 3.7)."""

    payload_type: ClassVar[PayloadType] = PayloadType.CERTREQ
    encoding: int
    data: bytes = b""
    critical: bool = False

    def __post_init__(self) -> None:
        _check_uint("certificate encoding", self.encoding, 8)

    def encode_body(self) -> bytes:
        return bytes((self.encoding,)) + self.data


def _decode_cert(body: bytes, critical: bool, limits: DecodeLimits) -> CertificatePayload:
    if len(body) < 1:
        raise _fail("truncated CERT payload")
    return CertificatePayload(_named(CertEncoding, body[0]), body[1:], critical)


def _decode_certreq(body: bytes, critical: bool, limits: DecodeLimits) -> CertificateRequestPayload:
    if len(body) < 1:
        raise _fail("truncated CERTREQ payload")
    return CertificateRequestPayload(_named(CertEncoding, body[0]), body[1:], critical)


@dataclass(frozen=True, slots=True)
class AuthenticationPayload(_PayloadBase):
    """AUTH: the authentication method and its data (RFC 7296 section 3.8)."""

    payload_type: ClassVar[PayloadType] = PayloadType.AUTH
    method: int
    data: bytes
    critical: bool = False

    def __post_init__(self) -> None:
        _check_uint("auth method", self.method, 8)

    def encode_body(self) -> bytes:
        return bytes((self.method, 0, 0, 0)) + self.data


def _decode_auth(body: bytes, critical: bool, limits: DecodeLimits) -> AuthenticationPayload:
    if len(body) < 4:
        raise _fail("truncated AUTH payload")
    return AuthenticationPayload(_named(AuthMethod, body[0]), body[4:], critical)


@dataclass(frozen=True, slots=True)
class _OpaquePayload(_PayloadBase):
    """Shared shape of the payloads whose body is one opaque octet string."""

    data: bytes
    critical: bool = False

    def encode_body(self) -> bytes:
        return self.data


@dataclass(frozen=True, slots=True)
class NoncePayload(_OpaquePayload):
    """Ni or Nr: the nonce (RFC 7296 section 3.9; 16 to 256 octets, checked by the SA layer)."""

    payload_type: ClassVar[PayloadType] = PayloadType.NONCE


@dataclass(frozen=True, slots=True)
class VendorIdPayload(_OpaquePayload):
    """V: an opaque vendor identifier (RFC 7296 section 3.12)."""

    payload_type: ClassVar[PayloadType] = PayloadType.VENDOR_ID


@dataclass(frozen=True, slots=True)
class EapPayload(_OpaquePayload):
    """EAP: one opaque EAP message (RFC 7296 section 3.16)."""

    payload_type: ClassVar[PayloadType] = PayloadType.EAP


def _decode_opaque(cls: type[_OpaquePayload]) -> Callable[[bytes, bool, DecodeLimits], Payload]:
    def decode(body: bytes, critical: bool, limits: DecodeLimits) -> Payload:
        return cls(body, critical)  # type: ignore[return-value]

    return decode


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


# --- Traffic selectors (RFC 7296 section 3.13) ----------------------------------------------

IPAddress = IPv4Address | IPv6Address


@dataclass(frozen=True, slots=True)
class TrafficSelector:
    """An address range with protocol and port range; IPv4 makes type 7, IPv6 type 8."""

    start_address: IPAddress
    end_address: IPAddress
    ip_protocol: int = 0
    start_port: int = 0
    end_port: int = 65535

    def __post_init__(self) -> None:
        if self.start_address.version != self.end_address.version:
            raise ValueError("start and end address of a traffic selector differ in family")
        _check_uint("IP protocol", self.ip_protocol, 8)
        _check_uint("start port", self.start_port, 16)
        _check_uint("end port", self.end_port, 16)

    @property
    def ts_type(self) -> TsType:
        """TS_IPV4_ADDR_RANGE or TS_IPV6_ADDR_RANGE, from the address family."""
        if self.start_address.version == 4:
            return TsType.TS_IPV4_ADDR_RANGE
        return TsType.TS_IPV6_ADDR_RANGE

    def encode(self) -> bytes:
        """The traffic selector substructure."""
        addresses = self.start_address.packed + self.end_address.packed
        return (
            _TS_HEAD.pack(self.ts_type, self.ip_protocol, 8 + len(addresses))
            + _TS_PORTS.pack(self.start_port, self.end_port)
            + addresses
        )


@dataclass(frozen=True, slots=True)
class UnknownTrafficSelector:
    """A traffic selector of a type this codec does not interpret, kept as its raw octets."""

    ts_type: int
    second_octet: int
    data: bytes

    def __post_init__(self) -> None:
        _check_uint("TS type", self.ts_type, 8)
        _check_uint("TS octet", self.second_octet, 8)

    def encode(self) -> bytes:
        """The traffic selector substructure."""
        length = 4 + len(self.data)
        if length > 0xFFFF:
            raise ValueError("traffic selector longer than 65535 octets")
        return _TS_HEAD.pack(self.ts_type, self.second_octet, length) + self.data


AnyTrafficSelector = TrafficSelector | UnknownTrafficSelector


def _encode_selectors(selectors: tuple[AnyTrafficSelector, ...]) -> bytes:
    if len(selectors) > 0xFF:
        raise ValueError("more than 255 traffic selectors")
    return bytes((len(selectors), 0, 0, 0)) + b"".join(s.encode() for s in selectors)


@dataclass(frozen=True, slots=True)
class TsInitiatorPayload(_PayloadBase):
    """TSi: the initiator's traffic selectors (RFC 7296 section 3.13)."""

    payload_type: ClassVar[PayloadType] = PayloadType.TSI
    selectors: tuple[AnyTrafficSelector, ...]
    critical: bool = False

    def __post_init__(self) -> None:
        _freeze(self, "selectors")

    def encode_body(self) -> bytes:
        return _encode_selectors(self.selectors)


@dataclass(frozen=True, slots=True)
class TsResponderPayload(_PayloadBase):
    """TSr: the responder's traffic selectors (RFC 7296 section 3.13)."""

    payload_type: ClassVar[PayloadType] = PayloadType.TSR
    selectors: tuple[AnyTrafficSelector, ...]
    critical: bool = False

    def __post_init__(self) -> None:
        _freeze(self, "selectors")

    def encode_body(self) -> bytes:
        return _encode_selectors(self.selectors)


_ADDRESS_SIZES = {TsType.TS_IPV4_ADDR_RANGE: 4, TsType.TS_IPV6_ADDR_RANGE: 16}


def _decode_selectors(body: bytes, limits: DecodeLimits) -> tuple[AnyTrafficSelector, ...]:
    if len(body) < 4:
        raise _fail("truncated traffic selector payload")
    count = body[0]
    if count > limits.max_traffic_selectors:
        raise _fail(f"{count} traffic selectors exceed the limit")
    selectors: list[AnyTrafficSelector] = []
    offset = 4
    end = len(body)
    for _ in range(count):
        if end - offset < 4:
            raise _fail("truncated traffic selector")
        ts_type, octet, length = _TS_HEAD.unpack_from(body, offset)
        if length < 4 or offset + length > end:
            raise _fail("traffic selector length out of bounds")
        size = _ADDRESS_SIZES.get(ts_type)
        if size is None:
            selectors.append(
                UnknownTrafficSelector(ts_type, octet, body[offset + 4 : offset + length])
            )
        else:
            if length != 8 + 2 * size:
                raise _fail("traffic selector length does not match its type")
            start_port, end_port = _TS_PORTS.unpack_from(body, offset + 4)
            first = body[offset + 8 : offset + 8 + size]
            last = body[offset + 8 + size : offset + length]
            if size == 4:
                start: IPAddress = IPv4Address(first)
                stop: IPAddress = IPv4Address(last)
            else:
                start = IPv6Address(first)
                stop = IPv6Address(last)
            selectors.append(TrafficSelector(start, stop, octet, start_port, end_port))
        offset += length
    if offset != end:
        raise _fail("traffic selector payload length does not match its selectors")
    return tuple(selectors)


def _decode_tsi(body: bytes, critical: bool, limits: DecodeLimits) -> TsInitiatorPayload:
    return TsInitiatorPayload(_decode_selectors(body, limits), critical)


def _decode_tsr(body: bytes, critical: bool, limits: DecodeLimits) -> TsResponderPayload:
    return TsResponderPayload(_decode_selectors(body, limits), critical)


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


# --- Encrypted payloads (RFC 7296 section 3.14, RFC 7383) ------------------------------------


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


@dataclass(frozen=True, slots=True)
class EncryptedFragmentPayload(_PayloadBase):
    """SKF: one fragment of an encrypted message (RFC 7383 section 2.5).

    ``first_payload_type`` is the first inner payload's type in fragment 1 and 0 in others.
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


# --- Unknown payloads (RFC 7296 section 2.5) -------------------------------------------------


@dataclass(frozen=True, slots=True)
class UnknownPayload(_PayloadBase):
    """A payload of a type this codec does not know, whose critical bit is clear.

    It is kept (rather than dropped) so that a message re-encodes to the same bytes; a
    receiver ignores it. Unknown payloads with the critical bit set fail decoding.
    """

    payload_type: int
    data: bytes
    critical: bool = False

    def __post_init__(self) -> None:
        _check_uint("payload type", self.payload_type, 8)

    def encode_body(self) -> bytes:
        return self.data


Payload = (
    SecurityAssociationPayload
    | KeyExchangePayload
    | IdInitiatorPayload
    | IdResponderPayload
    | CertificatePayload
    | CertificateRequestPayload
    | AuthenticationPayload
    | NoncePayload
    | NotifyPayload
    | DeletePayload
    | VendorIdPayload
    | TsInitiatorPayload
    | TsResponderPayload
    | EncryptedPayload
    | EncryptedFragmentPayload
    | ConfigurationPayload
    | EapPayload
    | UnknownPayload
)
"""Any IKEv2 payload value."""

_Decoder = Callable[[bytes, bool, DecodeLimits], Payload]

_DECODERS: dict[int, _Decoder] = {
    PayloadType.SA: _decode_sa,
    PayloadType.KE: _decode_ke,
    PayloadType.IDI: _decode_idi,
    PayloadType.IDR: _decode_idr,
    PayloadType.CERT: _decode_cert,
    PayloadType.CERTREQ: _decode_certreq,
    PayloadType.AUTH: _decode_auth,
    PayloadType.NONCE: _decode_opaque(NoncePayload),
    PayloadType.NOTIFY: _decode_notify,
    PayloadType.DELETE: _decode_delete,
    PayloadType.VENDOR_ID: _decode_opaque(VendorIdPayload),
    PayloadType.TSI: _decode_tsi,
    PayloadType.TSR: _decode_tsr,
    PayloadType.CP: _decode_cp,
    PayloadType.EAP: _decode_opaque(EapPayload),
}

_LAST_ONLY = (PayloadType.SK, PayloadType.SKF)


def _elements(payload: Payload) -> int:
    """How many decoded items a payload holds, itself included."""
    if isinstance(payload, SecurityAssociationPayload):
        return 1 + sum(
            1 + sum(1 + len(t.attributes) for t in p.transforms) for p in payload.proposals
        )
    if isinstance(payload, TsInitiatorPayload | TsResponderPayload):
        return 1 + len(payload.selectors)
    if isinstance(payload, ConfigurationPayload):
        return 1 + len(payload.attributes)
    if isinstance(payload, DeletePayload):
        return 1 + len(payload.spis)
    return 1


# --- payload chains ------------------------------------------------------------------------


def _decode_chain(
    data: bytes,
    offset: int,
    first_type: int,
    limits: DecodeLimits,
    *,
    allow_encrypted: bool,
) -> tuple[Payload, ...]:
    payloads: list[Payload] = []
    next_type = first_type
    end = len(data)
    elements = 0
    while next_type != PayloadType.NO_NEXT_PAYLOAD:
        # Checked after each payload: the overshoot is at most one payload's own bounds.
        if elements > limits.max_elements:
            raise _fail("too many elements in the payload chain")
        if len(payloads) >= limits.max_payloads:
            raise _fail("too many payloads")
        if end - offset < GENERIC_PAYLOAD_HEADER_SIZE:
            raise _fail(f"truncated payload of type {next_type}")
        following, flags, length = _GENERIC.unpack_from(data, offset)
        if length < GENERIC_PAYLOAD_HEADER_SIZE or offset + length > end:
            raise _fail(f"payload of type {next_type} has length {length} out of bounds")
        critical = bool(flags & _CRITICAL)
        body = data[offset + GENERIC_PAYLOAD_HEADER_SIZE : offset + length]
        offset += length
        payload_type = next_type
        if payload_type in _LAST_ONLY:
            if not allow_encrypted:
                raise _fail("encrypted payload inside an encrypted payload")
            if offset != end:
                raise _fail("encrypted payload is not the last payload")
            if payload_type == PayloadType.SK:
                payloads.append(EncryptedPayload(_named(PayloadType, following), body, critical))
            else:
                if len(body) < 4:
                    raise _fail("truncated SKF payload")
                number, total = _U16U16.unpack_from(body)
                payloads.append(
                    EncryptedFragmentPayload(
                        number, total, _named(PayloadType, following), body[4:], critical
                    )
                )
            return tuple(payloads)
        decoder = _DECODERS.get(payload_type)
        if decoder is not None:
            payload = decoder(body, critical, limits)
            elements += _elements(payload)
            payloads.append(payload)
        elif critical:
            raise InvalidIkeMessage(
                f"unsupported critical payload type {payload_type}",
                NotifyType.UNSUPPORTED_CRITICAL_PAYLOAD,
                payload_type=payload_type,
            )
        else:
            elements += 1
            payloads.append(UnknownPayload(_named(PayloadType, payload_type), body, critical))
        next_type = following
    if elements > limits.max_elements:
        raise _fail("too many elements in the payload chain")
    if offset != end:
        raise _fail(f"{end - offset} octets after the last payload")
    return tuple(payloads)


def decode_payload_chain(
    first_payload_type: int, data: bytes, limits: DecodeLimits = DEFAULT_LIMITS
) -> tuple[Payload, ...]:
    """Decode a chain of payloads that starts with ``first_payload_type`` and fills ``data``.

    This is for the decrypted contents of an SK payload (padding and Pad Length removed):
    pass ``EncryptedPayload.first_payload_type``. Encrypted payloads may not nest.
    """
    return _decode_chain(bytes(data), 0, first_payload_type, limits, allow_encrypted=False)


def _encode_chain(payloads: tuple[Payload, ...] | list[Payload]) -> bytes:
    count = len(payloads)
    parts: list[bytes] = []
    for index, payload in enumerate(payloads):
        last = index == count - 1
        if isinstance(payload, EncryptedPayload | EncryptedFragmentPayload) and not last:
            raise ValueError("an encrypted payload must be the last payload of a message")
        following = payloads[index + 1].payload_type if not last else PayloadType.NO_NEXT_PAYLOAD
        parts.append(payload.encode(following))
    return b"".join(parts)


def encode_payload_chain(
    payloads: tuple[Payload, ...] | list[Payload],
) -> tuple[int, bytes]:
    """Encode payloads as a chain: the first payload's type and the chained octets.

    For the plaintext of an SK payload: encrypt the octets (after adding padding) and put the
    type into ``EncryptedPayload.first_payload_type``.
    """
    if any(isinstance(p, EncryptedPayload | EncryptedFragmentPayload) for p in payloads):
        raise ValueError("encrypted payloads cannot be nested")
    first = payloads[0].payload_type if payloads else PayloadType.NO_NEXT_PAYLOAD
    return first, _encode_chain(payloads)


# --- header and message --------------------------------------------------------------------


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


_P = TypeVar("_P", bound=_PayloadBase)


@dataclass(frozen=True, slots=True)
class IkeMessage:
    """An IKEv2 message: header fields and the chain of payloads.

    The header's Next Payload and Length fields follow from the payloads and are computed by
    :meth:`encode`. Unknown flag bits are not kept.
    """

    spi_i: bytes
    spi_r: bytes
    exchange_type: int
    message_id: int
    payloads: tuple[Payload, ...] = ()
    initiator: bool = False
    response: bool = False
    higher_version: bool = False
    minor_version: int = 0

    def __post_init__(self) -> None:
        if len(self.spi_i) != 8 or len(self.spi_r) != 8:
            raise ValueError("IKE SPIs are 8 octets")
        _freeze(self, "payloads")
        _check_uint("exchange type", self.exchange_type, 8)
        _check_uint("message ID", self.message_id, 32)
        _check_uint("minor version", self.minor_version, 4)

    @property
    def flags(self) -> int:
        """The Flags octet."""
        return (
            (HeaderFlag.INITIATOR if self.initiator else 0)
            | (HeaderFlag.RESPONSE if self.response else 0)
            | (HeaderFlag.VERSION if self.higher_version else 0)
        )

    def encode(self) -> bytes:
        """The message octets, ready to send on port 500 (add a non-ESP marker on 4500)."""
        chain = _encode_chain(self.payloads)
        first = self.payloads[0].payload_type if self.payloads else PayloadType.NO_NEXT_PAYLOAD
        header = _HEADER.pack(
            self.spi_i,
            self.spi_r,
            first,
            (IKE_MAJOR_VERSION << 4) | self.minor_version,
            self.exchange_type,
            self.flags,
            self.message_id,
            IKE_HEADER_SIZE + len(chain),
        )
        return header + chain

    def find(self, payload_class: type[_P]) -> _P | None:
        """The first payload of this class, or None."""
        for payload in self.payloads:
            if isinstance(payload, payload_class):
                return payload
        return None

    def find_all(self, payload_class: type[_P]) -> tuple[_P, ...]:
        """Every payload of this class, in message order."""
        return tuple(p for p in self.payloads if isinstance(p, payload_class))

    @property
    def notifies(self) -> tuple[NotifyPayload, ...]:
        """The Notify payloads, in message order."""
        return self.find_all(NotifyPayload)

    def notify(self, notify_type: int) -> NotifyPayload | None:
        """The first Notify payload of this type, or None."""
        for payload in self.payloads:
            if isinstance(payload, NotifyPayload) and payload.notify_type == notify_type:
                return payload
        return None

    @property
    def encrypted(self) -> EncryptedPayload | None:
        """The SK payload, when the message has one."""
        last = self.payloads[-1] if self.payloads else None
        return last if isinstance(last, EncryptedPayload) else None


def decode_message(data: bytes, limits: DecodeLimits = DEFAULT_LIMITS) -> IkeMessage:
    """Decode one IKEv2 message (the UDP payload on port 500, without a non-ESP marker).

    Raises :class:`InvalidIkeMessage` for anything malformed, including a Length field that
    differs from the size of ``data``.
    """
    data = bytes(data)
    if len(data) > limits.max_message_size:
        raise _fail(f"message of {len(data)} octets exceeds {limits.max_message_size}")
    header = decode_header(data)
    if header.major_version != IKE_MAJOR_VERSION:
        raise InvalidIkeMessage(
            f"IKE major version {header.major_version} is not 2",
            NotifyType.INVALID_MAJOR_VERSION,
            header=header,
        )
    if header.length != len(data):
        raise InvalidIkeMessage(
            f"header Length {header.length} differs from the {len(data)} octets received",
            header=header,
        )
    try:
        payloads = _decode_chain(
            data, IKE_HEADER_SIZE, header.next_payload, limits, allow_encrypted=True
        )
    except InvalidIkeMessage as error:
        error.header = header
        raise
    return IkeMessage(
        header.spi_i,
        header.spi_r,
        header.exchange_type,
        header.message_id,
        payloads,
        header.initiator,
        header.response,
        header.higher_version,
        header.minor_version,
    )


# --- RFC 5685 redirect notify data -----------------------------------------------------------

GatewayIdentity = IPv4Address | IPv6Address | str
"""A gateway identity of RFC 5685: an IPv4 or IPv6 address, or an FQDN."""


def _encode_gateway(gateway: GatewayIdentity) -> bytes:
    if isinstance(gateway, IPv4Address):
        kind, identity = GatewayIdentityType.IPV4_ADDRESS, gateway.packed
    elif isinstance(gateway, IPv6Address):
        kind, identity = GatewayIdentityType.IPV6_ADDRESS, gateway.packed
    else:
        try:
            identity = gateway.encode("ascii")
        except UnicodeEncodeError:
            raise ValueError("a gateway FQDN must be ASCII (A-labels)") from None
        if not 0 < len(identity) <= 0xFF:
            raise ValueError("a gateway FQDN must be 1 to 255 octets")
        kind = GatewayIdentityType.FQDN
    return bytes((kind, len(identity))) + identity


def _decode_gateway(data: bytes) -> tuple[GatewayIdentity, bytes]:
    if len(data) < 2:
        raise _fail("truncated gateway identity")
    kind, length = data[0], data[1]
    if 2 + length > len(data):
        raise _fail("gateway identity length exceeds the notify data")
    identity = data[2 : 2 + length]
    rest = data[2 + length :]
    gateway: GatewayIdentity
    if kind == GatewayIdentityType.IPV4_ADDRESS:
        if length != 4:
            raise _fail("IPv4 gateway identity is not 4 octets")
        gateway = IPv4Address(identity)
    elif kind == GatewayIdentityType.IPV6_ADDRESS:
        if length != 16:
            raise _fail("IPv6 gateway identity is not 16 octets")
        gateway = IPv6Address(identity)
    elif kind == GatewayIdentityType.FQDN:
        if length == 0 or not all(0x21 <= octet < 0x7F for octet in identity):
            raise _fail("gateway FQDN is empty or not printable ASCII")
        gateway = identity.decode("ascii")
    else:
        raise _fail(f"unknown gateway identity type {kind}")
    return gateway, rest


@dataclass(frozen=True, slots=True)
class RedirectData:
    """The data of a REDIRECT notify (RFC 5685 section 9.2): the new gateway and Nonce Data.

    ``nonce`` is the initiator's Ni in an IKE_SA_INIT response and empty elsewhere.
    """

    gateway: GatewayIdentity
    nonce: bytes = b""

    @property
    def gateway_identity_type(self) -> GatewayIdentityType:
        """The GW Ident Type the gateway is encoded with."""
        if isinstance(self.gateway, IPv4Address):
            return GatewayIdentityType.IPV4_ADDRESS
        if isinstance(self.gateway, IPv6Address):
            return GatewayIdentityType.IPV6_ADDRESS
        return GatewayIdentityType.FQDN

    def encode(self) -> bytes:
        """The notify data octets."""
        return _encode_gateway(self.gateway) + self.nonce

    @classmethod
    def decode(cls, data: bytes) -> RedirectData:
        """Decode REDIRECT notify data."""
        gateway, nonce = _decode_gateway(bytes(data))
        return cls(gateway, nonce)


def redirect_supported_notify() -> NotifyPayload:
    """N(REDIRECT_SUPPORTED), the initiator's offer to be redirected (RFC 5685 section 9.1)."""
    return NotifyPayload(NotifyType.REDIRECT_SUPPORTED)


def redirect_notify(gateway: GatewayIdentity, nonce: bytes = b"") -> NotifyPayload:
    """N(REDIRECT) to ``gateway``; pass the initiator's Ni as ``nonce`` in IKE_SA_INIT."""
    return NotifyPayload(NotifyType.REDIRECT, RedirectData(gateway, nonce).encode())


def redirected_from_notify(gateway: IPv4Address | IPv6Address) -> NotifyPayload:
    """N(REDIRECTED_FROM) naming the gateway that redirected us (RFC 5685 section 9.3)."""
    if not isinstance(gateway, IPv4Address | IPv6Address):
        raise ValueError("REDIRECTED_FROM carries an IPv4 or IPv6 address")
    return NotifyPayload(NotifyType.REDIRECTED_FROM, _encode_gateway(gateway))


def parse_redirect(notify: NotifyPayload) -> RedirectData:
    """The gateway and nonce of a REDIRECT notify; InvalidIkeMessage if malformed."""
    if notify.notify_type != NotifyType.REDIRECT:
        raise ValueError(f"notify type {notify.notify_type} is not REDIRECT")
    return RedirectData.decode(notify.data)


def parse_redirected_from(notify: NotifyPayload) -> IPv4Address | IPv6Address:
    """The original gateway address of a REDIRECTED_FROM notify; InvalidIkeMessage if malformed."""
    if notify.notify_type != NotifyType.REDIRECTED_FROM:
        raise ValueError(f"notify type {notify.notify_type} is not REDIRECTED_FROM")
    gateway, rest = _decode_gateway(bytes(notify.data))
    if rest:
        raise _fail("octets after the REDIRECTED_FROM gateway identity")
    if isinstance(gateway, str):
        raise _fail("REDIRECTED_FROM carries an FQDN; RFC 5685 allows only addresses")
    return gateway


# --- NAT traversal framing (RFC 3948, RFC 7296 section 2.23) --------------------------------


def add_non_esp_marker(message: bytes) -> bytes:
    """The datagram to send on port 4500: the non-ESP marker and the IKE message."""
    return NON_ESP_MARKER + message


def strip_non_esp_marker(datagram: bytes) -> bytes:
    """The IKE message inside a port-4500 datagram; InvalidIkeMessage if it carries none.

    Use :func:`is_nat_keepalive` first to recognise keepalives; a datagram whose first four
    octets are not zero is ESP, not IKE.
    """
    if len(datagram) < len(NON_ESP_MARKER) or datagram[:4] != NON_ESP_MARKER:
        raise _fail("datagram on port 4500 has no non-ESP marker (ESP or keepalive)")
    return bytes(datagram[4:])


def is_nat_keepalive(datagram: bytes) -> bool:
    """True for a one-octet 0xFF NAT-keepalive datagram."""
    return bytes(datagram) == NAT_KEEPALIVE
