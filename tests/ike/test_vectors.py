"""The codec against real IKEv2 captures from other implementations (data only, never contacted)."""

from __future__ import annotations

import struct
from ipaddress import IPv4Address
from pathlib import Path

import pytest

from tests.tools.tshark import UdpDatagram, read_udp_datagrams
from twisted_rserpool.ike.constants import (
    NAT_T_PORT,
    DhGroup,
    EncrId,
    ExchangeType,
    GatewayIdentityType,
    NotifyType,
    PayloadType,
    PrfId,
    ProtocolId,
    TransformType,
)
from twisted_rserpool.ike.errors import InvalidIkeMessage
from twisted_rserpool.ike.payloads import (
    EncryptedPayload,
    IkeMessage,
    KeyExchangePayload,
    NoncePayload,
    SecurityAssociationPayload,
    decode_message,
    is_nat_keepalive,
    parse_redirect,
    parse_redirected_from,
    strip_non_esp_marker,
)

VECTORS = Path(__file__).parent / "vectors"  # copied from shared/interop/vectors
REDIRECT_PCAP = VECTORS / "ikev2_notify_redirect.pcap"
NAT_T_PCAPNG = VECTORS / "ikev2_nat_t.pcapng"


def vector(path: Path) -> Path:
    """The capture file, carried in the repository beside this test."""
    assert path.exists(), f"{path} is missing from the repository"
    return path


def ike_messages(path: Path) -> list[tuple[UdpDatagram, bytes]]:
    """Every IKE message in a capture with its datagram; ESP and keepalives are left out."""
    found = []
    for datagram in read_udp_datagrams(vector(path)):
        payload = datagram.payload
        if NAT_T_PORT in (datagram.source_port, datagram.destination_port):
            if is_nat_keepalive(payload) or payload[:4] != b"\x00\x00\x00\x00":
                continue
            payload = strip_non_esp_marker(payload)
        found.append((datagram, payload))
    return found


@pytest.fixture(scope="module")
def redirect_exchange() -> list[IkeMessage]:
    """The four decoded messages of the RFC 5685 redirect capture."""
    return [decode_message(data) for _, data in ike_messages(REDIRECT_PCAP)]


def test_redirect_capture_round_trips_byte_exactly() -> None:
    """All four packets of the redirect capture decode and re-encode to the same octets."""
    messages = ike_messages(REDIRECT_PCAP)
    assert len(messages) == 4
    for _, data in messages:
        assert decode_message(data).encode() == data


def test_redirect_request_offers_redirect(redirect_exchange: list[IkeMessage]) -> None:
    """Packet 1 is an IKE_SA_INIT request with SA, KE, Ni and the notifies the README lists."""
    request = redirect_exchange[0]
    assert request.exchange_type == ExchangeType.IKE_SA_INIT
    assert request.initiator and not request.response and request.message_id == 0
    assert request.spi_i == bytes.fromhex("88694881497528ad") and request.spi_r == bytes(8)
    assert [n.notify_type for n in request.notifies] == [
        NotifyType.NAT_DETECTION_DESTINATION_IP,
        NotifyType.NAT_DETECTION_SOURCE_IP,
        NotifyType.IKEV2_FRAGMENTATION_SUPPORTED,
        NotifyType.REDIRECT_SUPPORTED,
        NotifyType.SIGNATURE_HASH_ALGORITHMS,
    ]
    sa = request.find(SecurityAssociationPayload)
    assert sa is not None
    (proposal,) = sa.proposals
    assert proposal.protocol_id == ProtocolId.IKE and proposal.spi == b""
    assert [(t.transform_type, t.transform_id, t.key_length) for t in proposal.transforms] == [
        (TransformType.ENCR, EncrId.ENCR_AES_GCM_16, 256),
        (TransformType.PRF, PrfId.PRF_HMAC_SHA2_256, None),
        (TransformType.DH, DhGroup.BRAINPOOL_P256, None),
    ]
    ke = request.find(KeyExchangePayload)
    assert ke is not None and ke.dh_group == DhGroup.BRAINPOOL_P256 and len(ke.data) == 64
    hashes = request.notify(NotifyType.SIGNATURE_HASH_ALGORITHMS)
    assert hashes is not None and hashes.data == bytes.fromhex("0001000200030004")


def test_redirect_response_carries_fqdn_and_initiator_nonce(
    redirect_exchange: list[IkeMessage],
) -> None:
    """Packet 2 holds only N(REDIRECT): FQDN gateway and Nonce Data equal to packet 1's Ni."""
    request, response = redirect_exchange[0], redirect_exchange[1]
    assert response.response and not response.initiator
    assert response.spi_i == request.spi_i and response.spi_r == bytes(8)
    (notify,) = response.notifies
    assert response.payloads == (notify,)
    assert notify.notify_type == NotifyType.REDIRECT
    # The capture's peer puts Protocol ID 1 although RFC 5685 says 0; we keep what we read.
    assert notify.protocol_id == ProtocolId.IKE
    redirect = parse_redirect(notify)
    assert redirect.gateway == "moneybin.duckburg.disney.com"
    assert redirect.gateway_identity_type == GatewayIdentityType.FQDN
    ni = request.find(NoncePayload)
    assert ni is not None and redirect.nonce == ni.data and len(ni.data) == 40
    assert redirect.encode() == notify.data


def test_redirected_request_names_the_first_gateway(redirect_exchange: list[IkeMessage]) -> None:
    """Packet 3 goes to the new gateway with a new SPIi and N(REDIRECTED_FROM, 10.5.2.52)."""
    first, again = redirect_exchange[0], redirect_exchange[2]
    assert again.exchange_type == ExchangeType.IKE_SA_INIT and again.initiator
    assert again.spi_i != first.spi_i
    redirected_from = again.notify(NotifyType.REDIRECTED_FROM)
    assert redirected_from is not None
    assert parse_redirected_from(redirected_from) == IPv4Address("10.5.2.52")
    assert again.notify(NotifyType.REDIRECT_SUPPORTED) is None
    # This initiator starts afresh (new Ni and KE); strongSwan would keep both.
    first_ni, again_ni = first.find(NoncePayload), again.find(NoncePayload)
    assert first_ni is not None and again_ni is not None and first_ni != again_ni
    assert first.find(KeyExchangePayload) != again.find(KeyExchangePayload)


def test_new_gateway_answer(redirect_exchange: list[IkeMessage]) -> None:
    """Packet 4 is the new gateway's IKE_SA_INIT response: here N(NO_PROPOSAL_CHOSEN)."""
    answer = redirect_exchange[3]
    assert answer.response and answer.spi_i == redirect_exchange[2].spi_i
    assert answer.spi_r == bytes.fromhex("63cc9c1919de33e7")
    assert [n.notify_type for n in answer.notifies] == [NotifyType.NO_PROPOSAL_CHOSEN]


def test_nat_t_capture_round_trips_byte_exactly() -> None:
    """Every IKE message of the NAT-T capture (ports 500 and 4500) re-encodes byte-exactly."""
    messages = ike_messages(NAT_T_PCAPNG)
    assert len(messages) == 30
    exchanges = [decode_message(data).exchange_type for _, data in messages]
    assert exchanges.count(ExchangeType.IKE_SA_INIT) == 6
    assert exchanges.count(ExchangeType.IKE_AUTH) == 6
    assert exchanges.count(ExchangeType.INFORMATIONAL) == 18
    for _, data in messages:
        assert decode_message(data).encode() == data


def test_nat_t_encrypted_messages() -> None:
    """IKE_AUTH and INFORMATIONAL messages hold one SK payload that ends the datagram and names
    its first inner payload (IDi, IDr, Delete, or none in an empty response)."""
    for _, data in ike_messages(NAT_T_PCAPNG):
        message = decode_message(data)
        if message.exchange_type == ExchangeType.IKE_SA_INIT:
            assert message.encrypted is None
            continue
        sk = message.encrypted
        assert sk is not None and message.payloads == (sk,)
        assert isinstance(sk, EncryptedPayload)
        # The associated data of an AEAD cipher is everything before the IV.
        assert data.endswith(sk.data) and len(data) - len(sk.data) == 32
        if message.exchange_type == ExchangeType.IKE_AUTH:
            expected = PayloadType.IDR if message.response else PayloadType.IDI
        else:
            # Delete requests, answered by empty responses (RFC 7296 section 1.4.1).
            expected = PayloadType.NO_NEXT_PAYLOAD if message.response else PayloadType.DELETE
        assert sk.first_payload_type == expected


def test_nat_t_esp_is_not_ike() -> None:
    """ESP datagrams on port 4500 have no non-ESP marker and are refused as IKE."""
    esp = [
        d
        for d in read_udp_datagrams(vector(NAT_T_PCAPNG))
        if d.payload[:4] != b"\x00\x00\x00\x00" and not is_nat_keepalive(d.payload)
    ]
    assert esp
    for datagram in esp:
        with pytest.raises(InvalidIkeMessage):
            strip_non_esp_marker(datagram.payload)


def test_truncated_vectors() -> None:
    """Every prefix of every captured IKE message fails with InvalidIkeMessage, also when the
    header Length is patched to match, so payload parsers see the truncation."""
    for _, data in ike_messages(REDIRECT_PCAP) + ike_messages(NAT_T_PCAPNG)[:4]:
        for end in range(len(data)):
            prefix = data[:end]
            with pytest.raises(InvalidIkeMessage):
                decode_message(prefix)
            if end >= 28:
                with pytest.raises(InvalidIkeMessage):
                    decode_message(prefix[:24] + struct.pack("!I", end) + prefix[28:])
