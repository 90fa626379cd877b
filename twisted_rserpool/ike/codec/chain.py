"""Payload chains: the Payload union, the decoder of each payload type, unknown payloads
(RFC 7296 section 2.5) and the limits on a whole chain.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from twisted_rserpool.ike.codec.base import (
    _CRITICAL,
    _GENERIC,
    DEFAULT_LIMITS,
    DecodeLimits,
    _check_uint,
    _fail,
    _named,
    _OpaquePayload,
    _PayloadBase,
)
from twisted_rserpool.ike.codec.configuration import ConfigurationPayload, _decode_cp
from twisted_rserpool.ike.codec.encrypted import EncryptedPayload
from twisted_rserpool.ike.codec.fragment import EncryptedFragmentPayload, _decode_skf
from twisted_rserpool.ike.codec.identity import (
    AuthenticationPayload,
    CertificatePayload,
    CertificateRequestPayload,
    EapPayload,
    IdInitiatorPayload,
    IdResponderPayload,
    _decode_auth,
    _decode_cert,
    _decode_certreq,
    _decode_idi,
    _decode_idr,
)
from twisted_rserpool.ike.codec.key_exchange import KeyExchangePayload, NoncePayload, _decode_ke
from twisted_rserpool.ike.codec.notify import (
    DeletePayload,
    NotifyPayload,
    VendorIdPayload,
    _decode_delete,
    _decode_notify,
)
from twisted_rserpool.ike.codec.security_association import SecurityAssociationPayload, _decode_sa
from twisted_rserpool.ike.codec.traffic_selectors import (
    TsInitiatorPayload,
    TsResponderPayload,
    _decode_tsi,
    _decode_tsr,
)
from twisted_rserpool.ike.constants import (
    GENERIC_PAYLOAD_HEADER_SIZE,
    NotifyType,
    PayloadType,
)
from twisted_rserpool.ike.errors import InvalidIkeMessage

__all__ = [
    "Payload",
    "UnknownPayload",
    "decode_payload_chain",
    "encode_payload_chain",
]


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


def _decode_opaque(cls: type[_OpaquePayload]) -> Callable[[bytes, bool, DecodeLimits], Payload]:
    def decode(body: bytes, critical: bool, limits: DecodeLimits) -> Payload:
        return cls(body, critical)  # type: ignore[return-value]

    return decode


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
                payloads.append(_decode_skf(body, following, critical))
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
