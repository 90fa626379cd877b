"""Captures for Wireshark's command-line dissector, tshark, and a capture reader.

Build classic pcap files from application payloads (ASAP, ENRP and IKE messages) wrapped in
synthetic Ethernet, IPv4 or IPv6, and UDP, TCP or SCTP headers with correct lengths and
checksums, then let tshark dissect them: as JSON trees for tests that compare our codecs with
Wireshark's, or as tshark's human-readable detail text for demonstrations. Read the UDP
datagrams of a pcap or pcapng capture back (:func:`read_udp_datagrams`), for the recorded
test vectors.

tshark 4.0 dissects ASAP on SCTP payload protocol identifier 11 and on SCTP, UDP and TCP
port 3863, and ENRP on SCTP payload protocol identifier 12 and on SCTP and UDP port 9901;
it has no ENRP-over-TCP dissector at all (``-d tcp.port==9901,enrp`` is refused).

This module uses no reactor; it runs tshark synchronously with :mod:`subprocess`.
"""

from __future__ import annotations

import ipaddress
import json
import os
import shutil
import struct
import subprocess
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

__all__ = [
    "ASAP_PORT",
    "ASAP_PPID",
    "ENRP_PORT",
    "ENRP_PPID",
    "IKE_PORT",
    "Packet",
    "Tree",
    "TsharkError",
    "UdpDatagram",
    "asap_packet",
    "describe",
    "dissect",
    "enrp_packet",
    "field_values",
    "fields",
    "find_tshark",
    "ike_packet",
    "pcap_bytes",
    "problems",
    "read_udp_datagrams",
    "write_pcap",
]

Transport = Literal["udp", "tcp", "sctp"]

ASAP_PORT = 3863
"""The IANA port of ASAP (SCTP, TCP and UDP)."""
ENRP_PORT = 9901
"""The IANA port of ENRP (SCTP and UDP)."""
ASAP_PPID = 11
"""The SCTP payload protocol identifier of ASAP."""
ENRP_PPID = 12
"""The SCTP payload protocol identifier of ENRP."""
IKE_PORT = 500
"""The IANA port of IKE (UDP)."""

_LINKTYPE_ETHERNET = 1
_LINKTYPE_RAW = 101
_PCAP_MAGIC_USEC = 0xA1B2C3D4
_PCAP_MAGIC_NSEC = 0xA1B23C4D
_PCAPNG_SHB = 0x0A0D0D0A
_PCAPNG_IDB = 0x00000001
_PCAPNG_SPB = 0x00000003
_PCAPNG_EPB = 0x00000006
_PCAPNG_BYTE_ORDER = 0x1A2B3C4D
_ETHERTYPE_IPV4 = 0x0800
_ETHERTYPE_IPV6 = 0x86DD
_PROTOCOL_NUMBERS: dict[str, int] = {"tcp": 6, "udp": 17, "sctp": 132}
_MAX_IP_PAYLOAD = 0xFFFF - 60
_BASE_TIME = 1_700_000_000
_TIMEOUT = 120.0
_MAX_COMPLAINT = 1000


class TsharkError(RuntimeError):
    """tshark is missing, failed, or printed output this module cannot read."""


@dataclass(frozen=True)
class Packet:
    """One application payload carried in one IP packet.

    ``src`` and ``dst`` are IPv4 or IPv6 address strings of the same family. ``ppid`` is the
    SCTP payload protocol identifier of the DATA chunk and only matters for ``"sctp"``.
    """

    payload: bytes
    transport: Transport
    src: str = "192.0.2.1"
    dst: str = "192.0.2.2"
    sport: int = ASAP_PORT
    dport: int = ASAP_PORT
    ppid: int = 0

    def __post_init__(self) -> None:
        if self.transport not in _PROTOCOL_NUMBERS:
            raise ValueError(f"unknown transport {self.transport!r}")
        source = ipaddress.ip_address(self.src)
        destination = ipaddress.ip_address(self.dst)
        if source.version != destination.version:
            raise ValueError("src and dst must be addresses of the same IP version")
        for port in (self.sport, self.dport):
            if not 0 <= port <= 0xFFFF:
                raise ValueError(f"port {port} out of range")
        if not 0 <= self.ppid <= 0xFFFFFFFF:
            raise ValueError(f"payload protocol identifier {self.ppid} out of range")
        if len(self.payload) > _MAX_IP_PAYLOAD - 32:
            raise ValueError("payload too large for one IP packet")


def asap_packet(
    payload: bytes,
    transport: Transport = "sctp",
    *,
    src: str = "192.0.2.1",
    dst: str = "192.0.2.2",
    sport: int = ASAP_PORT,
    dport: int = ASAP_PORT,
) -> Packet:
    """A packet that tshark dissects as ASAP: PPID 11 on SCTP, port 3863 on UDP and TCP."""
    ppid = ASAP_PPID if transport == "sctp" else 0
    return Packet(payload, transport, src, dst, sport, dport, ppid)


def enrp_packet(
    payload: bytes,
    transport: Transport = "sctp",
    *,
    src: str = "192.0.2.1",
    dst: str = "192.0.2.2",
    sport: int = ENRP_PORT,
    dport: int = ENRP_PORT,
) -> Packet:
    """A packet that tshark dissects as ENRP: PPID 12 on SCTP, port 9901 on UDP."""
    ppid = ENRP_PPID if transport == "sctp" else 0
    return Packet(payload, transport, src, dst, sport, dport, ppid)


def ike_packet(
    payload: bytes,
    *,
    src: str = "127.0.0.1",
    dst: str = "127.0.0.2",
    sport: int = IKE_PORT,
    dport: int = IKE_PORT,
) -> Packet:
    """A UDP packet that tshark dissects as IKE: port 500, or 4500 with the non-ESP marker."""
    return Packet(payload, "udp", src, dst, sport, dport)


# Checksums ---------------------------------------------------------------------------------


def _internet_checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\x00"
    total: int = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total > 0xFFFF:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def _crc32c_table() -> tuple[int, ...]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
        table.append(crc)
    return tuple(table)


_CRC32C_TABLE = _crc32c_table()


def _crc32c(data: bytes) -> int:
    crc = 0xFFFFFFFF
    for byte in data:
        crc = _CRC32C_TABLE[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


# Headers -----------------------------------------------------------------------------------


def _pseudo_header(packet: Packet, length: int) -> bytes:
    source = ipaddress.ip_address(packet.src).packed
    destination = ipaddress.ip_address(packet.dst).packed
    protocol = _PROTOCOL_NUMBERS[packet.transport]
    if len(source) == 4:
        return source + destination + struct.pack("!BBH", 0, protocol, length)
    return source + destination + struct.pack("!I3xB", length, protocol)


def _transport_segment(packet: Packet, sequence: int) -> bytes:
    payload = packet.payload
    if packet.transport == "udp":
        length = 8 + len(payload)
        header = struct.pack("!HHHH", packet.sport, packet.dport, length, 0)
        checksum = _internet_checksum(_pseudo_header(packet, length) + header + payload) or 0xFFFF
        return header[:6] + struct.pack("!H", checksum) + payload
    if packet.transport == "tcp":
        # PSH+ACK, a 20-byte header, window 65535.
        header = struct.pack(
            "!HHIIBBHHH", packet.sport, packet.dport, sequence, 1, 5 << 4, 0x18, 0xFFFF, 0, 0
        )
        length = len(header) + len(payload)
        checksum = _internet_checksum(_pseudo_header(packet, length) + header + payload)
        return header[:16] + struct.pack("!H", checksum) + header[18:] + payload
    # SCTP: common header and one unfragmented DATA chunk (flags B and E).
    chunk_length = 16 + len(payload)
    chunk = struct.pack(
        "!BBHIHHI", 0, 0x03, chunk_length, sequence, 0, (sequence - 1) & 0xFFFF, packet.ppid
    )
    chunk += payload
    chunk += b"\x00" * (-len(chunk) % 4)
    common = struct.pack("!HHII", packet.sport, packet.dport, 1, 0)
    crc = _crc32c(common + chunk)
    return common[:8] + struct.pack("<I", crc) + chunk


def _ip_packet(packet: Packet, segment: bytes, identification: int) -> tuple[int, bytes]:
    source = ipaddress.ip_address(packet.src).packed
    destination = ipaddress.ip_address(packet.dst).packed
    protocol = _PROTOCOL_NUMBERS[packet.transport]
    if len(source) == 4:
        header = struct.pack(
            "!BBHHHBBH4s4s",
            0x45,
            0,
            20 + len(segment),
            identification & 0xFFFF,
            0x4000,  # don't fragment
            64,
            protocol,
            0,
            source,
            destination,
        )
        checksum = _internet_checksum(header)
        header = header[:10] + struct.pack("!H", checksum) + header[12:]
        return _ETHERTYPE_IPV4, header + segment
    header = struct.pack("!IHBB16s16s", 6 << 28, len(segment), protocol, 64, source, destination)
    return _ETHERTYPE_IPV6, header + segment


def _ethernet_frames(packets: Iterable[Packet]) -> Iterable[bytes]:
    sequences: dict[tuple[str, str, str, int, int], int] = {}
    for index, packet in enumerate(packets):
        flow = (packet.transport, packet.src, packet.dst, packet.sport, packet.dport)
        # TCP counts bytes, SCTP counts DATA chunks (TSN); UDP ignores the number.
        sequence = sequences.get(flow, 1)
        sequences[flow] = sequence + (len(packet.payload) if packet.transport == "tcp" else 1)
        segment = _transport_segment(packet, sequence)
        ether_type, ip = _ip_packet(packet, segment, index + 1)
        ethernet = b"\x02\x00\x00\x00\x00\x02" + b"\x02\x00\x00\x00\x00\x01"
        yield ethernet + struct.pack("!H", ether_type) + ip


def pcap_bytes(packets: Iterable[Packet]) -> bytes:
    """The contents of a classic (libpcap, microsecond) capture file holding ``packets``.

    Each packet becomes one Ethernet frame; TCP sequence numbers and SCTP TSNs continue
    within each flow, so consecutive packets of one flow form a clean stream.
    """
    parts = [struct.pack("<IHHiIII", _PCAP_MAGIC_USEC, 2, 4, 0, 0, 0xFFFF, _LINKTYPE_ETHERNET)]
    for index, frame in enumerate(_ethernet_frames(packets)):
        parts.append(struct.pack("<IIII", _BASE_TIME + index, 0, len(frame), len(frame)))
        parts.append(frame)
    return b"".join(parts)


def write_pcap(path: str | os.PathLike[str], packets: Iterable[Packet]) -> None:
    """Write ``packets`` to a classic pcap file at ``path`` (see :func:`pcap_bytes`)."""
    Path(path).write_bytes(pcap_bytes(packets))


# Reading captures --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class UdpDatagram:
    """One UDP datagram found in a capture, with its frame number (1-based)."""

    frame: int
    source: ipaddress.IPv4Address | ipaddress.IPv6Address
    destination: ipaddress.IPv4Address | ipaddress.IPv6Address
    source_port: int
    destination_port: int
    payload: bytes


def _captured_frames(data: bytes) -> list[tuple[int, bytes]]:
    """(link type, frame octets) of every packet in a pcap or pcapng file."""
    if struct.unpack_from("<I", data)[0] == _PCAPNG_SHB:
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
    if linktype == _LINKTYPE_ETHERNET:
        ether_type = struct.unpack_from("!H", frame, 12)[0]
        packet = frame[14:]
        if ether_type == 0x8100:  # an 802.1Q VLAN tag
            ether_type = struct.unpack_from("!H", frame, 16)[0]
            packet = frame[18:]
        if ether_type not in (_ETHERTYPE_IPV4, _ETHERTYPE_IPV6):
            return None
    elif linktype == _LINKTYPE_RAW:
        packet = frame
    else:
        return None
    version = packet[0] >> 4
    udp = _PROTOCOL_NUMBERS["udp"]
    if version == 4:
        header_length = (packet[0] & 0x0F) * 4
        if packet[9] != udp:
            return None
        total = struct.unpack_from("!H", packet, 2)[0]
        return packet[12:16], packet[16:20], packet[header_length:total]
    if version == 6:
        if packet[6] != udp:
            return None
        length = struct.unpack_from("!H", packet, 4)[0]
        return packet[8:24], packet[24:40], packet[40 : 40 + length]
    return None


def read_udp_datagrams(path: str | os.PathLike[str]) -> list[UdpDatagram]:
    """Every UDP datagram in a pcap or pcapng capture (Ethernet or raw IP), in capture order."""
    datagrams = []
    for number, (linktype, frame) in enumerate(_captured_frames(Path(path).read_bytes()), 1):
        found = _udp(linktype, frame)
        if found is None:
            continue
        source, destination, segment = found
        sport, dport, length = struct.unpack_from("!HHH", segment)
        datagrams.append(
            UdpDatagram(
                number,
                ipaddress.ip_address(source),
                ipaddress.ip_address(destination),
                sport,
                dport,
                segment[8:length],
            )
        )
    return datagrams


# Running tshark ----------------------------------------------------------------------------


def find_tshark() -> str | None:
    """The path of the tshark executable on ``PATH``, or None when it is not installed."""
    return shutil.which("tshark")


def _run(
    packets: Sequence[Packet],
    arguments: Sequence[str],
    tshark: str | None,
    decode_as: Iterable[str],
    options: Iterable[str],
) -> str:
    executable = tshark if tshark is not None else find_tshark()
    if executable is None:
        raise TsharkError("tshark is not installed")
    with tempfile.TemporaryDirectory(prefix="rserpool-tshark-") as directory:
        capture = Path(directory, "capture.pcap")
        write_pcap(capture, packets)
        configuration = Path(directory, "config")
        configuration.mkdir()
        command = [executable, "-n", "-r", str(capture)]
        for rule in decode_as:
            command += ["-d", rule]
        for option in options:
            command += ["-o", option]
        command += list(arguments)
        # An empty personal configuration keeps the user's preferences out of the result.
        environment = dict(os.environ, WIRESHARK_CONFIG_DIR=str(configuration))
        try:
            completed = subprocess.run(
                command,
                capture_output=True,
                check=False,
                env=environment,
                timeout=_TIMEOUT,
            )
        except (OSError, subprocess.TimeoutExpired) as e:
            raise TsharkError(f"could not run {executable}: {e}") from e
    if completed.returncode != 0:
        complaint = completed.stderr.decode("utf-8", "replace").strip()
        if len(complaint) > _MAX_COMPLAINT:
            complaint = complaint[:_MAX_COMPLAINT] + " [...]"
        raise TsharkError(f"{executable} exited with status {completed.returncode}: {complaint}")
    return completed.stdout.decode("utf-8", "replace")


class Tree(dict[str, Any]):
    """One object of tshark's JSON output: field and subtree names mapped to their values.

    A field value is a string and a subtree is another :class:`Tree`. A name that tshark
    repeats within one object (two parameters of one kind, say) maps to the list of its
    values; :attr:`members` keeps every member in document order.
    """

    __slots__ = ("members",)

    def __init__(self, members: Iterable[tuple[str, Any]] = ()) -> None:
        super().__init__()
        self.members: tuple[tuple[str, Any], ...] = tuple(members)
        for key, value in self.members:
            if key not in self:
                self[key] = value
            elif isinstance(self[key], _Repeated):
                self[key].append(value)
            else:
                self[key] = _Repeated([self[key], value])


class _Repeated(list[Any]):
    """The values of a name that tshark repeated within one JSON object."""


def dissect(
    packets: Sequence[Packet],
    *,
    tshark: str | None = None,
    decode_as: Iterable[str] = (),
    options: Iterable[str] = (),
) -> list[Tree]:
    """Dissect ``packets`` with tshark and return each packet's protocol layers.

    Each result is the ``layers`` object of ``tshark -T json`` for one packet, in order:
    a mapping from protocol name (``"frame"``, ``"ip"``, ``"sctp"``, ``"asap"``, ``"enrp"``,
    ``"_ws.malformed"``...) to that protocol's :class:`Tree`. ``decode_as`` entries are
    ``-d`` rules such as ``"udp.port==4000,asap"``; ``options`` entries are ``-o``
    preferences such as ``"sctp.checksum:CRC-32C"``. Raises :class:`TsharkError` when tshark fails.
    """
    if not packets:
        return []
    output = _run(packets, ["-T", "json"], tshark, decode_as, options)
    try:
        document = json.loads(output, object_pairs_hook=Tree)
        layers: list[Tree] = [entry["_source"]["layers"] for entry in document]
    except (ValueError, KeyError, TypeError) as e:
        raise TsharkError(f"unreadable tshark JSON output: {e}") from e
    if len(layers) != len(packets):
        raise TsharkError(f"tshark returned {len(layers)} packets for {len(packets)}")
    if not all(isinstance(layer, Tree) for layer in layers):
        raise TsharkError("unreadable tshark JSON output: a packet without layers")
    return layers


def describe(
    packets: Sequence[Packet],
    *,
    tshark: str | None = None,
    decode_as: Iterable[str] = (),
    options: Iterable[str] = (),
) -> str:
    """tshark's human-readable detail text (``-V``) of the ASAP and ENRP parts of ``packets``.

    Lower layers appear as one summary line each, so the text shows what Wireshark makes of
    the RSerPool messages. Raises :class:`TsharkError` when tshark fails.
    """
    if not packets:
        return ""
    return _run(packets, ["-O", "asap,enrp"], tshark, decode_as, options)


# Reading the JSON trees --------------------------------------------------------------------


def fields(tree: Any) -> list[tuple[str, str]]:
    """Every field of ``tree`` as a (name, value) pair, depth first, in document order.

    ``tree`` is a packet's layers from :func:`dissect` or any part of it. A field that has a
    subtree (such as ``asap.message_flags``) comes before the fields of its subtree.
    """
    found: list[tuple[str, str]] = []

    def visit(node: Any) -> None:
        for key, value in _members(node):
            if isinstance(value, str):
                found.append((key, value))
            else:
                visit(value)

    visit(tree)
    return found


def _members(node: Any) -> Iterable[tuple[str, Any]]:
    """The members of a JSON object in document order, a list's items under one name."""
    if isinstance(node, Tree):
        pairs: Iterable[tuple[str, Any]] = node.members
    elif isinstance(node, dict):
        pairs = node.items()
    elif isinstance(node, list):
        return (member for item in node for member in _members(item))
    else:
        return ()
    return (
        (key, item)
        for key, value in pairs
        for item in (value if isinstance(value, list) else [value])
    )


def field_values(tree: Any, name: str) -> list[str]:
    """Every value of the field ``name`` anywhere in ``tree``, in document order."""
    return [value for key, value in fields(tree) if key == name]


def problems(layers: dict[str, Any]) -> list[str]:
    """What tshark found wrong with one dissected packet, as readable lines.

    One line for each expert item of severity warning or error (a malformed packet is an
    error item) and one for a ``_ws.malformed`` mark without an expert item; an empty list
    means tshark dissected the packet cleanly.
    """
    found: list[str] = []
    malformed = False

    def visit(node: Any) -> None:
        nonlocal malformed
        for key, value in _members(node):
            if key == "_ws.malformed":
                malformed = True
            elif key == "_ws.expert":
                found.extend(_expert_problems(value))
            visit(value)

    visit(layers)
    if malformed and not any("Malformed" in line for line in found):
        found.append("Malformed Packet")
    return found


# Expert severities (epan/proto.h): PI_NOTE 0x00400000, PI_WARN 0x00600000, PI_ERROR 0x00800000.
_PI_WARN = 0x00600000


def _expert_problems(expert: Any) -> list[str]:
    if not isinstance(expert, dict):
        return []
    severities = field_values(expert, "_ws.expert.severity")
    messages = field_values(expert, "_ws.expert.message")
    found = []
    for severity, message in zip(severities, messages, strict=False):
        try:
            level = int(severity, 0)
        except ValueError:
            level = _PI_WARN
        if level >= _PI_WARN:
            found.append(message)
    return found
