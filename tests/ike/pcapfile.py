"""A small pcap / pcapng reader and a classic pcap writer for the IKE codec tests.

Only what the tests need: Ethernet or raw IP link types, IPv4 or IPv6, UDP datagrams.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address, ip_address
from pathlib import Path

LINKTYPE_ETHERNET = 1
LINKTYPE_RAW = 101

_PCAP_MAGIC_USEC = 0xA1B2C3D4
_PCAP_MAGIC_NSEC = 0xA1B23C4D
_PCAPNG_SHB = 0x0A0D0D0A
_PCAPNG_IDB = 0x00000001
_PCAPNG_SPB = 0x00000003
_PCAPNG_EPB = 0x00000006
_PCAPNG_BYTE_ORDER = 0x1A2B3C4D


@dataclass(frozen=True, slots=True)
class UdpDatagram:
    """One UDP datagram found in a capture, with its frame number (1-based)."""

    frame: int
    source: IPv4Address | IPv6Address
    destination: IPv4Address | IPv6Address
    source_port: int
    destination_port: int
    payload: bytes


def _frames(data: bytes) -> list[tuple[int, bytes]]:
    """(link type, frame octets) of every packet in a pcap or pcapng file."""
    magic_le = struct.unpack_from("<I", data)[0]
    if magic_le == _PCAPNG_SHB:
        return _pcapng_frames(data)
    for order in "<>":
        magic = struct.unpack_from(order + "I", data)[0]
        if magic in (_PCAP_MAGIC_USEC, _PCAP_MAGIC_NSEC):
            linktype = struct.unpack_from(order + "I", data, 20)[0] & 0x0FFFFFFF
            frames = []
            offset = 24
            while offset + 16 <= len(data):
                captured = struct.unpack_from(order + "I", data, offset + 8)[0]
                offset += 16
                frames.append((linktype, data[offset : offset + captured]))
                offset += captured
            return frames
    raise ValueError("not a pcap or pcapng file")


def _pcapng_frames(data: bytes) -> list[tuple[int, bytes]]:
    frames: list[tuple[int, bytes]] = []
    interfaces: list[int] = []
    order = "<"
    offset = 0
    while offset + 12 <= len(data):
        block_type = struct.unpack_from(order + "I", data, offset)[0]
        if block_type == _PCAPNG_SHB:
            # The byte-order magic decides the endianness of this section.
            order = (
                "<" if struct.unpack_from("<I", data, offset + 8)[0] == _PCAPNG_BYTE_ORDER else ">"
            )
            interfaces = []
        length = struct.unpack_from(order + "I", data, offset + 4)[0]
        body = data[offset + 8 : offset + length - 4]
        if block_type == _PCAPNG_IDB:
            interfaces.append(struct.unpack_from(order + "H", body)[0])
        elif block_type == _PCAPNG_EPB:
            interface, _, _, captured, _ = struct.unpack_from(order + "IIIII", body)
            frames.append((interfaces[interface], body[20 : 20 + captured]))
        elif block_type == _PCAPNG_SPB:
            original = struct.unpack_from(order + "I", body)[0]
            frames.append((interfaces[0], body[4 : 4 + original]))
        offset += length
    return frames


def _udp(linktype: int, frame: bytes) -> tuple[bytes, bytes, bytes] | None:
    """(source, destination, UDP segment) of an IP/UDP frame, or None for anything else."""
    if linktype == LINKTYPE_ETHERNET:
        ethertype = struct.unpack_from("!H", frame, 12)[0]
        packet = frame[14:]
        if ethertype == 0x8100:
            ethertype = struct.unpack_from("!H", frame, 16)[0]
            packet = frame[18:]
        if ethertype not in (0x0800, 0x86DD):
            return None
    elif linktype == LINKTYPE_RAW:
        packet = frame
    else:
        return None
    version = packet[0] >> 4
    if version == 4:
        header_length = (packet[0] & 0x0F) * 4
        if packet[9] != 17:
            return None
        total = struct.unpack_from("!H", packet, 2)[0]
        return packet[12:16], packet[16:20], packet[header_length:total]
    if version == 6:
        if packet[6] != 17:
            return None
        length = struct.unpack_from("!H", packet, 4)[0]
        return packet[8:24], packet[24:40], packet[40 : 40 + length]
    return None


def read_udp_datagrams(path: str | Path) -> list[UdpDatagram]:
    """Every UDP datagram in a pcap or pcapng capture, in capture order."""
    datagrams = []
    for number, (linktype, frame) in enumerate(_frames(Path(path).read_bytes()), start=1):
        found = _udp(linktype, frame)
        if found is None:
            continue
        source, destination, segment = found
        sport, dport, length = struct.unpack_from("!HHH", segment)
        datagrams.append(
            UdpDatagram(
                number,
                ip_address(source),
                ip_address(destination),
                sport,
                dport,
                segment[8:length],
            )
        )
    return datagrams


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\x00"
    total: int = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def ipv4_udp_packet(
    payload: bytes,
    source: str = "127.0.0.1",
    destination: str = "127.0.0.2",
    source_port: int = 500,
    destination_port: int = 500,
) -> bytes:
    """An IPv4 packet carrying one UDP datagram, with correct checksums."""
    src = IPv4Address(source).packed
    dst = IPv4Address(destination).packed
    udp_length = 8 + len(payload)
    pseudo = src + dst + struct.pack("!BBH", 0, 17, udp_length)
    udp = struct.pack("!HHHH", source_port, destination_port, udp_length, 0) + payload
    udp_sum = _checksum(pseudo + udp) or 0xFFFF
    udp = udp[:6] + struct.pack("!H", udp_sum) + udp[8:]
    header = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + udp_length, 0, 0x4000, 64, 17, 0, src, dst)
    header = header[:10] + struct.pack("!H", _checksum(header)) + header[12:]
    return header + udp


def write_pcap(path: str | Path, packets: list[bytes], linktype: int = LINKTYPE_RAW) -> None:
    """Write packets into a classic (microsecond) pcap file, one second apart."""
    parts = [struct.pack("<IHHiIII", _PCAP_MAGIC_USEC, 2, 4, 0, 0, 65535, linktype)]
    for index, packet in enumerate(packets):
        parts.append(struct.pack("<IIII", 1_700_000_000 + index, 0, len(packet), len(packet)))
        parts.append(packet)
    Path(path).write_bytes(b"".join(parts))
