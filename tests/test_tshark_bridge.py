"""Tests of the tshark bridge with hand-built ASAP and ENRP bytes (no codec involved)."""

from __future__ import annotations

import shutil
import struct
from pathlib import Path

import pytest

from tests.tools import tshark
from tests.tools.tshark import (
    Packet,
    Tree,
    TsharkError,
    asap_packet,
    describe,
    dissect,
    enrp_packet,
    field_values,
    find_tshark,
    ike_packet,
    pcap_bytes,
    problems,
    read_udp_datagrams,
    write_pcap,
)

# Let tshark check every checksum it can, so a wrong one shows up as a bad status.
CHECK_CHECKSUMS = (
    "sctp.checksum:CRC-32C",
    "ip.check_checksum:TRUE",
    "udp.check_checksum:TRUE",
    "tcp.check_checksum:TRUE",
)
GOOD = "1"  # PROTO_CHECKSUM_E_GOOD


def tlv(parameterType: int, value: bytes) -> bytes:
    """A padded RFC 5354 TLV."""
    encoded = struct.pack("!HH", parameterType, 4 + len(value)) + value
    return encoded + b"\x00" * (-len(encoded) % 4)


def message(messageType: int, flags: int, body: bytes) -> bytes:
    """An ASAP or ENRP message header followed by body."""
    return struct.pack("!BBH", messageType, flags, 4 + len(body)) + body


POOL_HANDLE = tlv(0x9, b"echo")
PE_ID = tlv(0xE, struct.pack("!I", 0x1234))


def poolElement(identifier: int) -> bytes:
    """A pool element: UDP user transport on 192.0.2.10 port 7, round robin."""
    user = tlv(0x6, struct.pack("!HH", 7, 0) + tlv(0x1, bytes([192, 0, 2, 10])))
    return tlv(0xA, struct.pack("!IIi", identifier, 0x55, 30) + user + tlv(0x8, b"\0\0\0\x01"))


# ASAP_DEREGISTRATION
DEREGISTRATION = message(0x02, 0, POOL_HANDLE + PE_ID)
# ASAP_HANDLE_RESOLUTION_RESPONSE with two pool elements
RESOLUTION = message(0x06, 0, POOL_HANDLE + poolElement(0x1111) + poolElement(0x2222))
# ENRP_LIST_REQUEST
LIST_REQUEST = message(0x05, 0, struct.pack("!II", 0x11, 0x22))

BATCH = [
    asap_packet(DEREGISTRATION, "sctp"),
    asap_packet(DEREGISTRATION, "udp"),
    asap_packet(DEREGISTRATION, "tcp"),
    asap_packet(RESOLUTION, "tcp"),
    enrp_packet(LIST_REQUEST, "sctp", src="2001:db8::1", dst="2001:db8::2"),
    enrp_packet(LIST_REQUEST, "udp", src="2001:db8::1", dst="2001:db8::2"),
    asap_packet(DEREGISTRATION[:-2], "udp"),
]


@pytest.fixture(scope="module")
def dissected() -> list[Tree]:
    """The BATCH, dissected by tshark once for this module."""
    from tests.conftest import requireTool

    return dissect(BATCH, tshark=requireTool("tshark"), options=CHECK_CHECKSUMS)


def test_pcapLayout(tmp_path: Path) -> None:
    """A classic pcap holds one Ethernet/IPv4/UDP frame per packet with consistent lengths."""
    payload = b"\x05\x00\x00\x0c" + tlv(0x9, b"echo")
    data = pcap_bytes([Packet(payload, "udp", sport=1000, dport=3863)])
    magic, major, minor, _, _, snaplen, linktype = struct.unpack_from("<IHHiIII", data)
    assert (magic, major, minor, snaplen, linktype) == (0xA1B2C3D4, 2, 4, 0xFFFF, 1)
    _, _, included, original = struct.unpack_from("<IIII", data, 24)
    frame = data[40:]
    assert included == original == len(frame) == 14 + 20 + 8 + len(payload)
    assert frame[12:14] == b"\x08\x00"
    ip = frame[14:34]
    assert struct.unpack("!H", ip[2:4])[0] == 20 + 8 + len(payload)
    assert sum(struct.unpack("!10H", ip)) % 0xFFFF == 0  # the header checksum verifies
    assert struct.unpack("!HHH", frame[34:40]) == (1000, 3863, 8 + len(payload))
    assert frame.endswith(payload)
    write_pcap(tmp_path / "one.pcap", [Packet(payload, "udp")])
    assert (tmp_path / "one.pcap").read_bytes() == pcap_bytes([Packet(payload, "udp")])


def test_readBackWhatWasWritten(tmp_path: Path) -> None:
    """The capture reader finds every UDP datagram the writer framed, IPv4 and IPv6, and
    skips the TCP and SCTP packets between them."""
    written = [
        ike_packet(b"IKE_SA_INIT", src="127.0.0.1", dst="127.0.0.2", sport=500, dport=500),
        asap_packet(b"not UDP", "tcp"),
        ike_packet(b"\0\0\0\0marked", src="2001:db8::1", dst="2001:db8::2", dport=4500),
        enrp_packet(b"not UDP either", "sctp"),
    ]
    write_pcap(tmp_path / "mixed.pcap", written)
    found = read_udp_datagrams(tmp_path / "mixed.pcap")
    assert [(d.frame, str(d.source), str(d.destination)) for d in found] == [
        (1, "127.0.0.1", "127.0.0.2"),
        (3, "2001:db8::1", "2001:db8::2"),
    ]
    assert [(d.source_port, d.destination_port, d.payload) for d in found] == [
        (500, 500, b"IKE_SA_INIT"),
        (500, 4500, b"\0\0\0\0marked"),
    ]
    (tmp_path / "garbage.pcap").write_bytes(b"\x00" * 32)
    with pytest.raises(ValueError, match="not a pcap or pcapng file"):
        read_udp_datagrams(tmp_path / "garbage.pcap")


def test_sctpDataChunk() -> None:
    """An SCTP packet carries one complete, padded DATA chunk with the PPID, and a CRC32c."""
    payload = b"\x05\x00\x00\x0d" + b"x" * 9
    frame = pcap_bytes([Packet(payload, "sctp", ppid=11)])[40:]
    sctp = frame[14 + 20 :]
    chunkType, flags, length, tsn, stream, ssn, ppid = struct.unpack_from("!BBHIHHI", sctp, 12)
    assert (chunkType, flags, length, tsn, stream, ssn, ppid) == (0, 3, 16 + 13, 1, 0, 0, 11)
    assert sctp[28:] == payload + b"\x00" * 3
    # The CRC32c check value of RFC 3720 appendix B.4, as SCTP stores it.
    assert tshark._crc32c(b"123456789") == 0xE3069283
    assert sctp[8:12] == struct.pack("<I", tshark._crc32c(sctp[:8] + b"\0" * 4 + sctp[12:]))


def test_packetValidation() -> None:
    """Packets refuse mixed address families, bad ports, PPIDs and transports."""
    with pytest.raises(ValueError, match="same IP version"):
        Packet(b"", "udp", src="192.0.2.1", dst="2001:db8::1")
    with pytest.raises(ValueError, match="port"):
        Packet(b"", "udp", sport=70000)
    with pytest.raises(ValueError, match="payload protocol identifier"):
        Packet(b"", "sctp", ppid=-1)
    with pytest.raises(ValueError, match="transport"):
        Packet(b"", "dccp")  # type: ignore[arg-type]
    assert asap_packet(b"", "sctp").ppid == tshark.ASAP_PPID
    assert enrp_packet(b"", "udp").dport == tshark.ENRP_PORT


def test_transportsAndChecksums(dissected: list[Tree]) -> None:
    """tshark finds ASAP on SCTP, UDP and TCP, ENRP on SCTP and UDP over IPv6, checksums good."""
    expected = [
        ("ip", "sctp", "asap"),
        ("ip", "udp", "asap"),
        ("ip", "tcp", "asap"),
        ("ip", "tcp", "asap"),
        ("ipv6", "sctp", "enrp"),
        ("ipv6", "udp", "enrp"),
    ]
    for layers, (network, transport, protocol) in zip(dissected, expected, strict=False):
        assert [network, transport, protocol] == list(layers)[2:5]
        statuses = field_values(layers, "ip.checksum.status") + field_values(
            layers, f"{transport}.checksum.status"
        )
        assert statuses and set(statuses) == {GOOD}
        assert problems(layers) == []
    # The two TCP segments continue one stream.
    assert field_values(dissected[3], "tcp.seq") == [str(1 + len(DEREGISTRATION))]
    assert field_values(dissected[4], "enrp.sender_servers_id") == ["0x00000011"]


def test_fieldValuesRepeatedKeys(dissected: list[Tree]) -> None:
    """Repeated parameters of one type keep all their values, in order."""
    asap = dissected[3]["asap"]
    assert asap["asap.message_type"] == "6"
    assert field_values(asap, "asap.pool_element_pe_identifier") == ["0x00001111", "0x00002222"]
    assert field_values(asap, "asap.udp_transport_port") == ["7", "7"]
    assert field_values(asap, "asap.pool_handle_pool_handle") == ["65:63:68:6f"]


def test_problemsReportsMalformed(dissected: list[Tree]) -> None:
    """A message cut short is reported as malformed; a whole one is not."""
    assert problems(dissected[1]) == []
    assert any("Malformed" in line for line in problems(dissected[6]))


def test_describeShowsAsapDetail() -> None:
    """describe() gives tshark's detail text of the ASAP message and a summary of the rest."""
    from tests.conftest import requireTool

    text = describe([asap_packet(DEREGISTRATION)], tshark=requireTool("tshark"))
    assert "Aggregate Server Access Protocol" in text
    assert "Type: ASAP Deregistration (2)" in text
    assert "Pool Handle: 6563686f (echo)" in text
    assert "PE Identifier: 0x00001234" in text
    assert "Stream Control Transmission Protocol, Src Port: 3863" in text
    assert "Verification tag" not in text


def test_tsharkErrors(tmp_path: Path) -> None:
    """A missing tshark or a refused option raises TsharkError; no packets need no tshark."""
    missing = str(tmp_path / "no-tshark")
    assert dissect([], tshark=missing) == []
    assert describe([], tshark=missing) == ""
    with pytest.raises(TsharkError, match="could not run"):
        dissect([asap_packet(DEREGISTRATION)], tshark=missing)
    from tests.conftest import requireTool

    with pytest.raises(TsharkError, match="exited with status"):
        dissect(
            [enrp_packet(LIST_REQUEST, "tcp")],
            tshark=requireTool("tshark"),
            decode_as=["tcp.port==9901,enrp"],  # tshark 4.0 has no ENRP-over-TCP dissector
        )


def test_findTshark() -> None:
    """find_tshark() names the tshark on PATH, or None."""
    assert find_tshark() == shutil.which("tshark")


def test_fieldsKeepDocumentOrder() -> None:
    """fields() walks interleaved repeated names in document order; the mapping merges them."""
    from tests.tools.tshark import fields

    tree = Tree(
        [
            ("a.x", "1"),
            ("Sub", Tree([("a.y", "2")])),
            ("a.x", "3"),
            ("Sub", Tree([("a.y", "4"), ("Inner", Tree([("a.z", "5")]))])),
        ]
    )
    assert fields(tree) == [("a.x", "1"), ("a.y", "2"), ("a.x", "3"), ("a.y", "4"), ("a.z", "5")]
    assert tree["a.x"] == ["1", "3"]
    assert field_values(tree, "a.y") == ["2", "4"]
    assert field_values({"plain": [{"a.y": "6"}, {"a.y": "7"}]}, "a.y") == ["6", "7"]
