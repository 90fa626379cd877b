"""The IKEv2 message codec, one module per payload family (docs/ike-codec.md).

Pure Python, no I/O: ``decode_message(bytes) -> IkeMessage`` and ``IkeMessage.encode() ->
bytes``. Every payload is an immutable value with ``encode()``; malformed input raises
:class:`~twisted_rserpool.ike.errors.InvalidIkeMessage` and nothing else.

    base                  decode limits, struct layouts, the generic payload header
    header                the IKE header (RFC 7296 3.1)
    security_association  SA, proposals, transforms, attributes (3.3)
    key_exchange          KE and Nonce (3.4, 3.9)
    identity              IDi, IDr, CERT, CERTREQ, AUTH, EAP (3.5-3.8, 3.16)
    notify                Notify, Delete, Vendor ID (3.10-3.12)
    traffic_selectors     TSi, TSr (3.13)
    configuration         CP (3.15)
    encrypted             SK, opaque (3.14)
    fragment              SKF, opaque, and the cutting of a plaintext into chunks (RFC 7383)
    chain                 payload chains, unknown payloads (2.5), the Payload union
    message               whole messages
    redirect              RFC 5685 notify data and the stateless IKE_SA_INIT redirect
    framing               the non-ESP marker and NAT keepalives (RFC 3948)

The Encrypted payload (SK) keeps its IV, ciphertext and ICV as opaque bytes; the crypto layer
decrypts them and decodes the plaintext with :func:`decode_payload_chain`.
"""

from __future__ import annotations

from twisted_rserpool.ike.codec.base import (
    DEFAULT_LIMITS,
    MAX_CONFIG_ATTRIBUTES,
    MAX_DELETE_SPIS,
    MAX_ELEMENTS,
    MAX_MESSAGE_SIZE,
    MAX_PAYLOADS,
    MAX_PROPOSALS,
    MAX_SA_TRANSFORMS,
    MAX_TRAFFIC_SELECTORS,
    MAX_TRANSFORM_ATTRIBUTES,
    MAX_TRANSFORMS,
    DecodeLimits,
)
from twisted_rserpool.ike.codec.chain import (
    Payload,
    UnknownPayload,
    decode_payload_chain,
    encode_payload_chain,
)
from twisted_rserpool.ike.codec.configuration import (
    AttributeValue,
    ConfigurationAttribute,
    ConfigurationPayload,
    application_version,
    attribute_value,
    internal_address,
    internal_dns,
    internal_netmask,
    internal_subnet,
)
from twisted_rserpool.ike.codec.encrypted import (
    EncryptedPayload,
)
from twisted_rserpool.ike.codec.fragment import (
    SKF_FIELDS_SIZE,
    EncryptedFragmentPayload,
    split_chunks,
)
from twisted_rserpool.ike.codec.framing import (
    add_non_esp_marker,
    is_nat_keepalive,
    strip_non_esp_marker,
)
from twisted_rserpool.ike.codec.header import (
    IkeHeader,
    decode_header,
)
from twisted_rserpool.ike.codec.identity import (
    AuthenticationPayload,
    CertificatePayload,
    CertificateRequestPayload,
    EapPayload,
    IdInitiatorPayload,
    IdResponderPayload,
)
from twisted_rserpool.ike.codec.key_exchange import (
    KeyExchangePayload,
    NoncePayload,
)
from twisted_rserpool.ike.codec.message import (
    IkeMessage,
    decode_message,
)
from twisted_rserpool.ike.codec.notify import (
    DeletePayload,
    NotifyPayload,
    VendorIdPayload,
)
from twisted_rserpool.ike.codec.redirect import (
    GatewayIdentity,
    RedirectData,
    init_redirect_response,
    parse_redirect,
    parse_redirected_from,
    redirect_notify,
    redirect_supported_notify,
    redirected_from_notify,
    scan_init_for_redirect,
)
from twisted_rserpool.ike.codec.security_association import (
    Proposal,
    SecurityAssociationPayload,
    Transform,
    TransformAttribute,
)
from twisted_rserpool.ike.codec.traffic_selectors import (
    AnyTrafficSelector,
    TrafficSelector,
    TsInitiatorPayload,
    TsResponderPayload,
    UnknownTrafficSelector,
)

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
    "SKF_FIELDS_SIZE",
    "AnyTrafficSelector",
    "AttributeValue",
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
    "application_version",
    "attribute_value",
    "decode_header",
    "decode_message",
    "decode_payload_chain",
    "encode_payload_chain",
    "init_redirect_response",
    "internal_address",
    "internal_dns",
    "internal_netmask",
    "internal_subnet",
    "is_nat_keepalive",
    "parse_redirect",
    "parse_redirected_from",
    "redirect_notify",
    "redirect_supported_notify",
    "redirected_from_notify",
    "scan_init_for_redirect",
    "split_chunks",
    "strip_non_esp_marker",
]
