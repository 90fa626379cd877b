"""NAT traversal framing on UDP port 4500 (RFC 3948, RFC 7296 section 2.23)."""

from __future__ import annotations

from twisted_rserpool.ike.codec.base import _fail
from twisted_rserpool.ike.constants import (
    NAT_KEEPALIVE,
    NON_ESP_MARKER,
)

__all__ = [
    "add_non_esp_marker",
    "is_nat_keepalive",
    "strip_non_esp_marker",
]


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
