"""Shared builders for the ESP core tests: CHILD_SA pairs as IKE negotiates them, and inner
IPv4/IPv6 packets."""

from __future__ import annotations

import hashlib
import struct
from ipaddress import IPv4Address, IPv6Address, ip_address

from twisted_rserpool.esp import EspSa
from twisted_rserpool.ike.child import ChildSa, selector_from_network, split_keymat
from twisted_rserpool.ike.codec import TrafficSelector
from twisted_rserpool.ike.crypto import EncryptionId, IntegrityId
from twisted_rserpool.ike.proposals import ESP_ALGORITHMS, ChildSuite

SPI_I = bytes.fromhex("c0000001")  # the initiator's inbound SPI
SPI_R = bytes.fromhex("c0000002")  # the responder's inbound SPI

# Every suite the IKE layer negotiates by default (AEAD and CBC+HMAC, with and without ESN).
SUITES: tuple[ChildSuite, ...] = ESP_ALGORITHMS
GCM128 = ChildSuite(EncryptionId.AES_GCM_16, 128, None)
CHACHA = ChildSuite(EncryptionId.CHACHA20_POLY1305, 256, None)
CBC256_SHA512 = ChildSuite(EncryptionId.AES_CBC, 256, IntegrityId.HMAC_SHA2_512_256)

# The client (initiator) side: 10.1.0.0/16 and 2001:db8:1::/48; the gateway's: 10.2.0.0/16
# and 2001:db8:2::/48.
CLIENT_TS = (selector_from_network("10.1.0.0/16"), selector_from_network("2001:db8:1::/48"))
GATEWAY_TS = (selector_from_network("10.2.0.0/16"), selector_from_network("2001:db8:2::/48"))


def child_pair(
    suite: ChildSuite,
    ts_i: tuple[TrafficSelector, ...] = CLIENT_TS,
    ts_r: tuple[TrafficSelector, ...] = GATEWAY_TS,
    seed: bytes = b"keymat",
    spis: tuple[bytes, bytes] = (SPI_I, SPI_R),
) -> tuple[ChildSa, ChildSa]:
    """The initiator's and the responder's view of one negotiated CHILD_SA."""
    keymat = hashlib.shake_256(seed + str(suite).encode()).digest(2 * suite.keymat_length)
    ei, ai, er, ar = split_keymat(keymat, suite)
    common = {
        "ike_spi_i": bytes(8),
        "ike_spi_r": bytes(range(8)),
        "suite": suite,
        "ts_i": ts_i,
        "ts_r": ts_r,
        "transport_mode": False,
        "encryption_key_i": ei,
        "integrity_key_i": ai,
        "encryption_key_r": er,
        "integrity_key_r": ar,
    }
    initiator = ChildSa(
        initiator=True,
        local_address="192.0.2.2",
        peer_address="192.0.2.1",
        inbound_spi=spis[0],
        outbound_spi=spis[1],
        **common,  # type: ignore[arg-type]
    )
    responder = ChildSa(
        initiator=False,
        local_address="192.0.2.1",
        peer_address="192.0.2.2",
        inbound_spi=spis[1],
        outbound_spi=spis[0],
        **common,  # type: ignore[arg-type]
    )
    return initiator, responder


def esp_pair(suite: ChildSuite, replay_window: int = 64) -> tuple[EspSa, EspSa]:
    """(client, gateway) ESP SAs of one CHILD_SA."""
    client, gateway = child_pair(suite)
    return (
        EspSa.from_child(client, replay_window=replay_window),
        EspSa.from_child(gateway, replay_window=replay_window),
    )


def _checksum(header: bytes) -> int:
    total: int = sum(struct.unpack(f">{len(header) // 2}H", header))
    while total > 0xFFFF:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def ipv4(
    source: str = "10.1.0.5",
    destination: str = "10.2.0.7",
    protocol: int = 17,
    payload: bytes = b"\x30\x39\x00\x35\x00\x0c\x00\x00data",
    flags_fragment: int = 0,
) -> bytes:
    """An IPv4 packet (UDP 12345 -> 53 by default)."""
    header = struct.pack(
        ">BBHHHBBH4s4s",
        0x45,
        0,
        20 + len(payload),
        0x1234,
        flags_fragment,
        64,
        protocol,
        0,
        IPv4Address(source).packed,
        IPv4Address(destination).packed,
    )
    header = header[:10] + struct.pack(">H", _checksum(header)) + header[12:]
    return header + payload


def ipv6(
    source: str = "2001:db8:1::5",
    destination: str = "2001:db8:2::7",
    next_header: int = 6,
    payload: bytes = b"\x30\x39\x00\x50" + bytes(16),
) -> bytes:
    """An IPv6 packet (TCP 12345 -> 80 by default)."""
    return (
        struct.pack(">LHBB", 0x60000000, len(payload), next_header, 64)
        + IPv6Address(source).packed
        + IPv6Address(destination).packed
        + payload
    )


def address(text: str) -> int:
    """An address as the integer the selector checks use."""
    return int(ip_address(text))
