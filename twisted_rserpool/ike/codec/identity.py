"""Identification, certificates, AUTH and EAP payloads (RFC 7296 sections 3.5-3.8, 3.16)."""

from __future__ import annotations

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
    AuthMethod,
    CertEncoding,
    IdType,
    PayloadType,
)

__all__ = [
    "AuthenticationPayload",
    "CertificatePayload",
    "CertificateRequestPayload",
    "EapPayload",
    "IdInitiatorPayload",
    "IdResponderPayload",
]


# --- identity and authentication (RFC 7296 sections 3.5 - 3.8, 3.16) ---------------------


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
class EapPayload(_OpaquePayload):
    """EAP: one opaque EAP message (RFC 7296 section 3.16)."""

    payload_type: ClassVar[PayloadType] = PayloadType.EAP
