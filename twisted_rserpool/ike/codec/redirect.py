"""RFC 5685 notify data (REDIRECT, REDIRECTED_FROM, REDIRECT_SUPPORTED) and the stateless
IKE_SA_INIT redirect: its response and the scan that decides it without a full decode.
"""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address

from twisted_rserpool.ike.codec.base import _fail
from twisted_rserpool.ike.codec.notify import NotifyPayload
from twisted_rserpool.ike.constants import (
    ExchangeType,
    GatewayIdentityType,
    NotifyType,
    PayloadType,
)

__all__ = [
    "GatewayIdentity",
    "RedirectData",
    "init_redirect_response",
    "parse_redirect",
    "parse_redirected_from",
    "redirect_notify",
    "redirect_supported_notify",
    "redirected_from_notify",
    "scan_init_for_redirect",
]

ZERO_SPI = bytes(8)


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


# --- the stateless IKE_SA_INIT redirect (RFC 5685 section 5) ---------------------------------


def init_redirect_response(spi_i: bytes, gateway: GatewayIdentity, nonce: bytes) -> bytes:
    """The octets of HDR(SPIi, 0, IKE_SA_INIT response, ID 0), N(REDIRECT, gateway, Ni).

    Built directly (it is the whole per-request work of a redirector); equal to encoding
    the same ``IkeMessage``.
    """
    data = redirect_notify(gateway, nonce).data
    length = 28 + 8 + len(data)
    return b"".join(
        (
            spi_i,
            ZERO_SPI,
            bytes((PayloadType.NOTIFY, 0x20, ExchangeType.IKE_SA_INIT, 0x20)),
            bytes(4),
            length.to_bytes(4, "big"),
            bytes((0, 0)),
            (8 + len(data)).to_bytes(2, "big"),
            bytes((0, 0)),
            NotifyType.REDIRECT.to_bytes(2, "big"),
            data,
        )
    )


_SCANNED = frozenset(
    (
        PayloadType.SA,
        PayloadType.KE,
        PayloadType.NONCE,
        PayloadType.NOTIFY,
        PayloadType.VENDOR_ID,
        PayloadType.CERTREQ,
    )
)


def scan_init_for_redirect(data: bytes) -> bytes | None:
    """Ni of an IKE_SA_INIT request that carries SA, KE, a valid Ni and
    N(REDIRECT_SUPPORTED), but no N(REDIRECTED_FROM) and no COOKIE; None otherwise.

    A walk over the generic payload headers only (the SA payload is not decoded): the cheap
    first step of a redirecting gateway. Anything unusual returns None and the request
    takes the full path.
    """
    next_type = data[16]
    offset = 28
    end = len(data)
    if int.from_bytes(data[24:28], "big") != end:
        return None
    nonce: bytes | None = None
    seen_sa = seen_ke = supported = False
    while next_type != PayloadType.NO_NEXT_PAYLOAD:
        if next_type not in _SCANNED or offset + 4 > end:
            return None
        length = int.from_bytes(data[offset + 2 : offset + 4], "big")
        if length < 4 or offset + length > end:
            return None
        if next_type == PayloadType.SA:
            seen_sa = True
        elif next_type == PayloadType.KE:
            seen_ke = True
        elif next_type == PayloadType.NONCE:
            nonce = data[offset + 4 : offset + length]
        elif next_type == PayloadType.NOTIFY:
            if length < 8:
                return None
            kind = int.from_bytes(data[offset + 6 : offset + 8], "big")
            if kind == NotifyType.REDIRECT_SUPPORTED:
                supported = True
            elif kind in (NotifyType.REDIRECTED_FROM, NotifyType.COOKIE):
                return None
        next_type = data[offset]
        offset += length
    if offset != end or not (seen_sa and seen_ke and supported) or nonce is None:
        return None
    return nonce if 16 <= len(nonce) <= 256 else None
