"""UDP encapsulation of ESP (RFC 3948), without I/O: what a datagram on the NAT-T port is.

On UDP port 4500 an ESP packet is the UDP payload as it is, starting with its non-zero SPI
(2.1); an IKE message follows the four-octet zero non-ESP marker (2.2); a single 0xFF octet
is a NAT-keepalive (2.3), to be ignored. ``classify_nat_t`` tells them apart, for the IKE
endpoint's NAT-T socket to hand ESP to the data plane and IKE to the IKE core.
"""

from __future__ import annotations

from enum import Enum

from twisted_rserpool.ike.constants import NAT_KEEPALIVE, NON_ESP_MARKER

__all__ = [
    "ESP_MIN_LENGTH",
    "UDP_HEADER_LENGTH",
    "NatTDatagram",
    "classify_nat_t",
    "encapsulate_ike",
]

UDP_HEADER_LENGTH = 8
"""What UDP encapsulation adds to an ESP packet (RFC 3948 2.1)."""

ESP_MIN_LENGTH = 8
"""SPI and Sequence Number: no shorter datagram can be ESP."""


class NatTDatagram(Enum):
    """What a UDP datagram on the NAT-T port carries."""

    IKE = "ike"
    """An IKE message after the non-ESP marker (strip four octets)."""
    ESP = "esp"
    """An ESP packet, the whole datagram."""
    KEEPALIVE = "keepalive"
    """A NAT-keepalive: ignore it."""
    INVALID = "invalid"
    """Too short to be either (drop it)."""


def classify_nat_t(datagram: bytes) -> NatTDatagram:
    """What ``datagram`` (a UDP payload received on port 4500) is."""
    if datagram[:4] == NON_ESP_MARKER:
        return NatTDatagram.IKE
    if len(datagram) >= ESP_MIN_LENGTH:
        return NatTDatagram.ESP
    if datagram == NAT_KEEPALIVE:
        return NatTDatagram.KEEPALIVE
    return NatTDatagram.INVALID


def encapsulate_ike(message: bytes) -> bytes:
    """An IKE message as the UDP payload on port 4500: the non-ESP marker, then the message."""
    return NON_ESP_MARKER + message
