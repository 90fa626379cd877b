"""RFC 3948 framing on the NAT-T port: IKE after the non-ESP marker, ESP as it is,
NAT-keepalives, runts."""

from __future__ import annotations

from twisted_rserpool.esp import NatTDatagram, classify_nat_t, encapsulate_ike

from .support import GCM128, esp_pair, ipv4


def test_classification() -> None:
    """The four zero octets mean IKE; a real ESP packet (non-zero SPI) is ESP; 0xFF alone is
    a keepalive; anything shorter than SPI and Sequence Number is invalid."""
    message = bytes(range(28))
    assert classify_nat_t(encapsulate_ike(message)) is NatTDatagram.IKE
    assert encapsulate_ike(message)[4:] == message
    client, _ = esp_pair(GCM128)
    packet = client.seal(ipv4(), 0.0)
    assert isinstance(packet, bytes)
    assert classify_nat_t(packet) is NatTDatagram.ESP
    assert classify_nat_t(b"\xff") is NatTDatagram.KEEPALIVE
    for runt in (b"", b"\xfe", b"\x01\x02\x03\x04\x05\x06\x07", b"\xff\xff"):
        assert classify_nat_t(runt) is NatTDatagram.INVALID
    assert classify_nat_t(b"\x00\x00\x00\x00") is NatTDatagram.IKE  # the IKE decoder refuses it
