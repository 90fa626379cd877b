"""Tests for the IKEv2 message codec: round trips, malformed input, RFC 5685 data, framing."""

from __future__ import annotations

import contextlib
import struct
import time
import typing
from ipaddress import IPv4Address, IPv6Address

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.ike.strategies import messages, payload_chains, redirect_data, unknown_payload_types
from twisted_rserpool.ike.constants import (
    AuthMethod,
    CertEncoding,
    CfgType,
    ConfigAttributeType,
    DhGroup,
    EncrId,
    ExchangeType,
    GatewayIdentityType,
    IdType,
    IntegId,
    NotifyType,
    PayloadType,
    PrfId,
    ProtocolId,
    TransformType,
    TsType,
)
from twisted_rserpool.ike.errors import InvalidIkeMessage
from twisted_rserpool.ike.payloads import (
    AuthenticationPayload,
    CertificatePayload,
    CertificateRequestPayload,
    ConfigurationAttribute,
    ConfigurationPayload,
    DecodeLimits,
    DeletePayload,
    EapPayload,
    EncryptedFragmentPayload,
    EncryptedPayload,
    IdInitiatorPayload,
    IdResponderPayload,
    IkeMessage,
    KeyExchangePayload,
    NoncePayload,
    NotifyPayload,
    Payload,
    Proposal,
    RedirectData,
    SecurityAssociationPayload,
    TrafficSelector,
    Transform,
    TransformAttribute,
    TsInitiatorPayload,
    TsResponderPayload,
    UnknownPayload,
    UnknownTrafficSelector,
    VendorIdPayload,
    add_non_esp_marker,
    decode_header,
    decode_message,
    decode_payload_chain,
    encode_payload_chain,
    is_nat_keepalive,
    parse_redirect,
    parse_redirected_from,
    redirect_notify,
    redirect_supported_notify,
    redirected_from_notify,
    strip_non_esp_marker,
)

SPI_I = bytes.fromhex("0102030405060708")
SPI_R = bytes.fromhex("1112131415161718")

IKE_PROPOSAL = Proposal(
    1,
    ProtocolId.IKE,
    b"",
    (
        Transform(TransformType.ENCR, EncrId.ENCR_AES_CBC, (TransformAttribute.key_length(256),)),
        Transform(
            TransformType.ENCR, EncrId.ENCR_AES_GCM_16, (TransformAttribute.key_length(128),)
        ),
        Transform(TransformType.PRF, PrfId.PRF_HMAC_SHA2_256),
        Transform(TransformType.PRF, PrfId.PRF_HMAC_SHA2_384),
        Transform(TransformType.PRF, PrfId.PRF_HMAC_SHA2_512),
        Transform(TransformType.INTEG, IntegId.AUTH_HMAC_SHA2_256_128),
        Transform(TransformType.INTEG, IntegId.AUTH_HMAC_SHA2_384_192),
        Transform(TransformType.INTEG, IntegId.AUTH_HMAC_SHA2_512_256),
        Transform(TransformType.DH, DhGroup.MODP_2048),
        Transform(TransformType.DH, DhGroup.ECP_256),
        Transform(TransformType.DH, DhGroup.ECP_384),
        Transform(TransformType.DH, DhGroup.CURVE25519),
    ),
)

ESP_PROPOSAL = Proposal(
    2,
    ProtocolId.ESP,
    b"\xca\xfe\xba\xbe",
    (
        Transform(
            TransformType.ENCR, EncrId.ENCR_AES_GCM_16, (TransformAttribute.key_length(256),)
        ),
        Transform(TransformType.ESN, 0),
        Transform(TransformType.ESN, 1),
    ),
)

EXAMPLES: list[Payload] = [
    SecurityAssociationPayload((IKE_PROPOSAL, ESP_PROPOSAL)),
    KeyExchangePayload(DhGroup.CURVE25519, bytes(range(32))),
    IdInitiatorPayload(IdType.ID_FQDN, b"client.example"),
    IdResponderPayload(IdType.ID_IPV4_ADDR, bytes([127, 0, 0, 2])),
    CertificatePayload(CertEncoding.X509_SIGNATURE, b"0\x82\x01\x00fake-der"),
    CertificateRequestPayload(CertEncoding.X509_SIGNATURE, bytes(20) + bytes(range(20))),
    AuthenticationPayload(AuthMethod.SHARED_KEY_MIC, bytes(32)),
    NoncePayload(bytes(range(32))),
    NotifyPayload(NotifyType.NAT_DETECTION_SOURCE_IP, bytes(20)),
    NotifyPayload(NotifyType.REKEY_SA, b"", ProtocolId.ESP, b"\x00\x00\x10\x01"),
    DeletePayload.child_sas(ProtocolId.ESP, (b"\x00\x00\x00\x01", b"\x00\x00\x00\x02")),
    DeletePayload.ike_sa(),
    VendorIdPayload(b"twisted-rserpool"),
    TsInitiatorPayload(
        (
            TrafficSelector(IPv4Address("10.0.0.0"), IPv4Address("10.0.0.255")),
            TrafficSelector(IPv6Address("2001:db8::"), IPv6Address("2001:db8::ffff"), 17, 53, 53),
        )
    ),
    TsResponderPayload((TrafficSelector(IPv4Address("0.0.0.0"), IPv4Address("255.255.255.255")),)),
    ConfigurationPayload(
        CfgType.CFG_REQUEST,
        (
            ConfigurationAttribute(ConfigAttributeType.INTERNAL_IP4_ADDRESS),
            ConfigurationAttribute(ConfigAttributeType.INTERNAL_IP4_DNS, bytes([10, 0, 0, 1])),
        ),
    ),
    EapPayload(bytes.fromhex("0201000901") + b"user"),
    UnknownPayload(PayloadType.GSPM, b"opaque"),
    EncryptedPayload(PayloadType.IDI, bytes(16) + bytes(range(48)) + bytes(16)),
    EncryptedFragmentPayload(1, 3, PayloadType.IDI, bytes(40)),
]


def message_with(*payloads: Payload, exchange: int = ExchangeType.IKE_AUTH) -> IkeMessage:
    """An initiator's request carrying these payloads."""
    return IkeMessage(SPI_I, SPI_R, exchange, 1, payloads, initiator=True)


def decodes_or_fails_cleanly(data: bytes) -> IkeMessage | None:
    """Decode, allowing only a message or InvalidIkeMessage as outcome."""
    try:
        return decode_message(data)
    except InvalidIkeMessage as error:
        assert isinstance(error.notify_type, int)
        return None


def with_length(data: bytes) -> bytes:
    """The message with its header Length field set to its size."""
    return data[:24] + struct.pack("!I", len(data)) + data[28:]


# --- round trips -------------------------------------------------------------------------


def test_examples_cover_every_payload_class() -> None:
    """The examples include every class of the Payload union."""
    assert {type(p) for p in EXAMPLES} == set(typing.get_args(Payload))


@pytest.mark.parametrize("payload", EXAMPLES, ids=lambda p: type(p).__name__)
def test_payload_round_trip(payload: Payload) -> None:
    """Each payload type decodes to an equal value and re-encodes to the same octets."""
    message = message_with(payload)
    data = message.encode()
    decoded = decode_message(data)
    assert decoded == message
    assert decoded.encode() == data
    assert decoded.payloads[0].encode_body() == payload.encode_body()


def test_all_examples_in_one_message() -> None:
    """A message chaining every payload type (SK last) round-trips byte-exactly."""
    plain = [p for p in EXAMPLES if not isinstance(p, EncryptedPayload | EncryptedFragmentPayload)]
    message = message_with(*plain, EncryptedPayload(PayloadType.NOTIFY, bytes(64)))
    data = message.encode()
    assert decode_message(data) == message
    assert decode_message(data).encode() == data
    assert decode_header(data).length == len(data)


@settings(max_examples=300)
@given(messages)
def test_message_round_trip(message: IkeMessage) -> None:
    """decode(encode(m)) == m, and the canonical octets re-encode identically."""
    data = message.encode()
    decoded = decode_message(data)
    assert decoded == message
    assert decoded.encode() == data


@settings(max_examples=200)
@given(payload_chains(encrypted=False))
def test_inner_chain_round_trip(chain: tuple[Payload, ...]) -> None:
    """The SK plaintext helpers round-trip a payload chain and name its first type."""
    first, data = encode_payload_chain(chain)
    assert first == (chain[0].payload_type if chain else 0)
    assert decode_payload_chain(first, data) == chain


@settings(max_examples=200)
@given(redirect_data)
def test_redirect_data_round_trip(data: RedirectData) -> None:
    """REDIRECT notify data decodes to the gateway and nonce it was built from."""
    assert RedirectData.decode(data.encode()) == data
    assert parse_redirect(redirect_notify(data.gateway, data.nonce)) == data


def test_decoded_values_are_named() -> None:
    """Known numbers decode to their enum members, which keeps reprs readable."""
    decoded = decode_message(message_with(*EXAMPLES[:9]).encode())
    assert decoded.exchange_type is ExchangeType.IKE_AUTH
    sa = decoded.find(SecurityAssociationPayload)
    assert sa is not None
    transform = sa.proposals[0].transforms[0]
    assert transform.transform_type is TransformType.ENCR
    assert transform.transform_id is EncrId.ENCR_AES_CBC
    assert transform.key_length == 256
    assert (
        sa.proposals[0].transforms_of(TransformType.PRF)[0].transform_id is PrfId.PRF_HMAC_SHA2_256
    )
    notify = decoded.notify(NotifyType.NAT_DETECTION_SOURCE_IP)
    assert notify is not None and notify.notify_type is NotifyType.NAT_DETECTION_SOURCE_IP


def test_message_helpers() -> None:
    """find, find_all, notify, notifies and encrypted select payloads from a message."""
    sk = EncryptedPayload(PayloadType.AUTH, bytes(32))
    message = message_with(
        NotifyPayload(NotifyType.COOKIE, b"c" * 16),
        NoncePayload(b"n" * 16),
        redirect_supported_notify(),
        sk,
    )
    assert message.find(NoncePayload) == NoncePayload(b"n" * 16)
    assert message.find(KeyExchangePayload) is None
    assert [n.notify_type for n in message.notifies] == [
        NotifyType.COOKIE,
        NotifyType.REDIRECT_SUPPORTED,
    ]
    assert message.notify(NotifyType.REDIRECT) is None
    assert message.encrypted == sk
    assert message_with(NoncePayload(b"x")).encrypted is None
    assert message.flags == 0x08


def test_header_fields_and_flags() -> None:
    """The header carries SPIs, exchange type, flags I/R/V, message ID and the total length."""
    message = IkeMessage(
        SPI_I,
        SPI_R,
        ExchangeType.INFORMATIONAL,
        0xDEADBEEF,
        (),
        initiator=False,
        response=True,
        higher_version=True,
    )
    data = message.encode()
    assert data == SPI_I + SPI_R + bytes([0, 0x20, 37, 0x30]) + bytes.fromhex("deadbeef0000001c")
    header = decode_header(data)
    assert (header.response, header.initiator, header.higher_version) == (True, False, True)
    assert header.encode() == data
    assert decode_message(data) == message


def test_reserved_bits_are_ignored() -> None:
    """Set RESERVED bits and unknown flags decode like zeros and re-encode canonically."""
    canonical = message_with(NoncePayload(b"n" * 16), VendorIdPayload(b"v")).encode()
    noisy = bytearray(canonical)
    noisy[19] |= 0x47  # unknown flag bits
    noisy[29] |= 0x7F  # RESERVED bits of the first payload's generic header
    decoded = decode_message(bytes(noisy))
    assert decoded == decode_message(canonical)
    assert decoded.encode() == canonical


def test_reserved_fields_in_payload_bodies_are_ignored() -> None:
    """RESERVED octets inside KE, IDi, AUTH, TS, CP, proposals and transforms are ignored."""
    payloads: list[Payload] = [
        SecurityAssociationPayload((ESP_PROPOSAL,)),
        KeyExchangePayload(DhGroup.ECP_256, bytes(64)),
        IdInitiatorPayload(IdType.ID_FQDN, b"a.example"),
        AuthenticationPayload(AuthMethod.SHARED_KEY_MIC, bytes(32)),
        TsInitiatorPayload((TrafficSelector(IPv4Address("1.1.1.1"), IPv4Address("1.1.1.2")),)),
        ConfigurationPayload(CfgType.CFG_REPLY, (ConfigurationAttribute(1, bytes(4)),)),
    ]
    canonical = message_with(*payloads).encode()
    noisy = bytearray(canonical)
    offset = 28
    for payload in payloads:
        if isinstance(payload, SecurityAssociationPayload):
            proposal = offset + 4
            noisy[proposal + 1] = 0xFF
            transform = proposal + 8 + len(ESP_PROPOSAL.spi)
            noisy[transform + 1] = noisy[transform + 5] = 0xFF
        elif isinstance(payload, KeyExchangePayload):
            noisy[offset + 6 : offset + 8] = b"\xff\xff"
        else:
            noisy[offset + 5 : offset + 8] = b"\xff\xff\xff"
        offset += len(payload.encode())
    assert bytes(noisy) != canonical
    decoded = decode_message(bytes(noisy))
    assert decoded == decode_message(canonical)
    assert decoded.encode() == canonical


def test_critical_bit_of_known_payload_is_kept() -> None:
    """A known payload with the critical bit set decodes, and the bit survives re-encoding."""
    message = message_with(NoncePayload(b"n" * 16, critical=True))
    data = message.encode()
    assert data[29] == 0x80
    assert decode_message(data) == message


def test_delete_spi_size_follows_protocol() -> None:
    """A Delete payload's SPI size defaults to the SPI length, 4 for ESP/AH and 0 for IKE."""
    assert DeletePayload(ProtocolId.ESP, (b"abcd",)).spi_size == 4
    assert DeletePayload(ProtocolId.ESP).spi_size == 4
    assert DeletePayload(ProtocolId.IKE).spi_size == 0
    assert DeletePayload(ProtocolId.ESP).encode_body() == bytes([3, 4, 0, 0])


def test_traffic_selector_types() -> None:
    """IPv4 selectors are type 7 (16 octets), IPv6 selectors type 8 (40 octets)."""
    v4 = TrafficSelector(IPv4Address("10.0.0.1"), IPv4Address("10.0.0.9"), 6, 80, 443)
    v6 = TrafficSelector(IPv6Address("::1"), IPv6Address("::2"))
    assert v4.ts_type == TsType.TS_IPV4_ADDR_RANGE and len(v4.encode()) == 16
    assert v6.ts_type == TsType.TS_IPV6_ADDR_RANGE and len(v6.encode()) == 40
    assert v4.encode() == bytes.fromhex("07060010005001bb0a0000010a000009")


# --- unknown payloads (RFC 7296 section 2.5) ---------------------------------------------


def test_unknown_noncritical_payload_is_kept_and_skipped() -> None:
    """An unknown payload with the critical bit clear becomes UnknownPayload; the rest decodes."""
    message = message_with(
        NoncePayload(b"n" * 16), UnknownPayload(200, b"xyz"), VendorIdPayload(b"v")
    )
    decoded = decode_message(message.encode())
    assert decoded.payloads[1] == UnknownPayload(200, b"xyz")
    assert decoded.find(VendorIdPayload) == VendorIdPayload(b"v")


def test_unknown_critical_payload_fails_with_unsupported_critical_payload() -> None:
    """An unknown payload with the critical bit set fails with notify 1 and its type."""
    data = message_with(
        NoncePayload(b"n" * 16), UnknownPayload(200, b"xyz", critical=True)
    ).encode()
    with pytest.raises(InvalidIkeMessage) as caught:
        decode_message(data)
    error = caught.value
    assert error.notify_type == NotifyType.UNSUPPORTED_CRITICAL_PAYLOAD
    assert int(NotifyType.UNSUPPORTED_CRITICAL_PAYLOAD) == 1
    assert error.payload_type == 200
    assert error.notify_data == bytes([200])
    assert "UNSUPPORTED_CRITICAL_PAYLOAD" in repr(NotifyType(error.notify_type))


def test_unknown_critical_payload_inside_sk_plaintext() -> None:
    """The inner-chain decoder applies the same critical-bit rule."""
    _, data = encode_payload_chain([UnknownPayload(99, b"", critical=True)])
    with pytest.raises(InvalidIkeMessage) as caught:
        decode_payload_chain(99, data)
    assert caught.value.notify_type == NotifyType.UNSUPPORTED_CRITICAL_PAYLOAD
    assert caught.value.payload_type == 99


# --- malformed input -----------------------------------------------------------------------


def expect_invalid(data: bytes, notify_type: int = NotifyType.INVALID_SYNTAX) -> InvalidIkeMessage:
    """Decoding fails with InvalidIkeMessage carrying this notify type."""
    with pytest.raises(InvalidIkeMessage) as caught:
        decode_message(data)
    assert caught.value.notify_type == notify_type
    return caught.value


def test_short_header() -> None:
    """Fewer than 28 octets is INVALID_SYNTAX."""
    error = expect_invalid(bytes(27))
    assert "27 octets are shorter than the IKE header" in error.reason


@pytest.mark.parametrize("version", [0x10, 0x30, 0xF0])
def test_wrong_major_version(version: int) -> None:
    """A major version other than 2 is INVALID_MAJOR_VERSION, naming the version."""
    data = bytearray(message_with(NoncePayload(b"n" * 16)).encode())
    data[17] = version
    error = expect_invalid(bytes(data), NotifyType.INVALID_MAJOR_VERSION)
    assert f"major version {version >> 4} is not 2" in error.reason


def test_length_field_must_match() -> None:
    """A Length field larger or smaller than the datagram is INVALID_SYNTAX."""
    data = message_with(NoncePayload(b"n" * 16)).encode()
    expect_invalid(data + b"\x00")
    expect_invalid(data[:-1])
    expect_invalid(data[:24] + struct.pack("!I", len(data) + 1) + data[28:])


def test_payload_length_out_of_bounds() -> None:
    """A payload length below 4 or past the message end is INVALID_SYNTAX."""
    data = bytearray(message_with(NoncePayload(b"n" * 16)).encode())
    for bad in (0, 3, 100):
        data[30:32] = struct.pack("!H", bad)
        expect_invalid(bytes(data))


def test_trailing_octets_after_last_payload() -> None:
    """Octets after the payload whose Next Payload is 0 are INVALID_SYNTAX."""
    data = with_length(message_with(NoncePayload(b"n" * 16)).encode() + b"\x00" * 4)
    expect_invalid(data)


def test_encrypted_payload_must_be_last() -> None:
    """Octets after an SK payload are INVALID_SYNTAX; encoding refuses SK before others."""
    data = message_with(EncryptedPayload(0, bytes(32))).encode()
    # Make SK shorter than the rest of the message.
    patched = bytearray(data)
    patched[30:32] = struct.pack("!H", 20)
    expect_invalid(bytes(patched))
    with pytest.raises(ValueError, match="last"):
        message_with(EncryptedPayload(0, b""), NoncePayload(b"n")).encode()


def test_nested_encrypted_payload_is_refused() -> None:
    """SK inside SK plaintext is INVALID_SYNTAX, and the encoder refuses to nest."""
    sk = EncryptedPayload(0, bytes(8))
    plain = sk.encode()
    with pytest.raises(InvalidIkeMessage):
        decode_payload_chain(PayloadType.SK, plain)
    with pytest.raises(ValueError, match="nested"):
        encode_payload_chain([sk])


def test_sa_structure_errors() -> None:
    """Proposal/transform counts, lengths and Last Substruc values are checked."""
    good = message_with(SecurityAssociationPayload((IKE_PROPOSAL, ESP_PROPOSAL))).encode()
    decode_message(good)
    sa = 32  # first proposal starts after the header and the SA generic header

    def patched(offset: int, value: bytes) -> bytes:
        data = bytearray(good)
        data[offset : offset + len(value)] = value
        return bytes(data)

    expect_invalid(patched(sa, b"\x00"))  # first proposal says "last" but more follow
    expect_invalid(patched(sa, b"\x03"))  # not a proposal Last Substruc value
    expect_invalid(patched(sa + 7, b"\x0b"))  # 11 transforms announced, 12 present
    expect_invalid(patched(sa + 7, b"\x0d"))  # 13 transforms announced
    expect_invalid(patched(sa + 8, b"\x00"))  # first transform says "last"
    expect_invalid(patched(sa + 6, b"\x08"))  # SPI size 8 eats into the transforms
    expect_invalid(patched(sa + 2, b"\x00\x07"))  # proposal length shorter than its header
    bare = bytearray(message_with(VendorIdPayload(b"")).encode())
    bare[16] = PayloadType.SA
    expect_invalid(bytes(bare))  # an SA payload without proposals


def test_attribute_length_past_transform() -> None:
    """A TLV transform attribute longer than its transform is INVALID_SYNTAX."""
    proposal = Proposal(
        1, ProtocolId.IKE, b"", (Transform(1, 12, (TransformAttribute(1, b"ab"),)),)
    )
    data = bytearray(message_with(SecurityAssociationPayload((proposal,))).encode())
    attr = 32 + 8 + 8
    data[attr + 2 : attr + 4] = b"\x00\x09"
    expect_invalid(bytes(data))


def test_notify_spi_size_past_payload() -> None:
    """A Notify SPI size beyond the payload is INVALID_SYNTAX."""
    data = bytearray(message_with(NotifyPayload(NotifyType.COOKIE, b"ab")).encode())
    data[33] = 9
    expect_invalid(bytes(data))


def test_delete_count_mismatch() -> None:
    """A Delete payload whose SPI count and size disagree with its length is INVALID_SYNTAX."""
    data = bytearray(message_with(DeletePayload.child_sas(3, (b"abcd",))).encode())
    data[34:36] = b"\x00\x02"
    expect_invalid(bytes(data))
    data[33] = 0
    expect_invalid(bytes(data))


def test_traffic_selector_errors() -> None:
    """TS counts and per-type selector lengths are checked."""
    ts = TsInitiatorPayload((TrafficSelector(IPv4Address("1.2.3.4"), IPv4Address("1.2.3.5")),))
    good = message_with(ts).encode()
    data = bytearray(good)
    data[32] = 2  # two selectors announced, one present
    expect_invalid(bytes(data))
    data = bytearray(good)
    data[32] = 0  # none announced, one present
    expect_invalid(bytes(data))
    data = bytearray(good)
    data[38:40] = b"\x00\x28"  # IPv4 selector claiming the IPv6 length
    expect_invalid(bytes(data))
    data = bytearray(good)
    data[36] = 8  # IPv6 type with an IPv4 length
    expect_invalid(bytes(data))


def test_unknown_traffic_selector_type_is_kept() -> None:
    """A selector of an unknown TS type is kept as raw octets and re-encoded."""
    ts = TsResponderPayload((UnknownTrafficSelector(9, 0, b"fibrechannel"),))
    message = message_with(ts)
    assert decode_message(message.encode()) == message


def test_limits_are_enforced() -> None:
    """Counts beyond the configured DecodeLimits are INVALID_SYNTAX."""
    many = message_with(*[VendorIdPayload(b"v")] * 5).encode()
    decode_message(many)
    with pytest.raises(InvalidIkeMessage):
        decode_message(many, DecodeLimits(max_payloads=4))
    with pytest.raises(InvalidIkeMessage):
        decode_message(many, DecodeLimits(max_message_size=len(many) - 1))
    sa = message_with(SecurityAssociationPayload((IKE_PROPOSAL, ESP_PROPOSAL))).encode()
    for limits in (
        DecodeLimits(max_proposals=1),
        DecodeLimits(max_transforms=11),
        DecodeLimits(max_transform_attributes=0),
    ):
        with pytest.raises(InvalidIkeMessage):
            decode_message(sa, limits)
    with pytest.raises(InvalidIkeMessage):
        decode_message(sa, DecodeLimits(max_sa_transforms=14))
    decode_message(sa, DecodeLimits(max_sa_transforms=15))
    delete = message_with(DeletePayload.child_sas(3, (b"abcd",) * 3)).encode()
    with pytest.raises(InvalidIkeMessage):
        decode_message(delete, DecodeLimits(max_delete_spis=2))
    ts = message_with(
        TsInitiatorPayload((TrafficSelector(IPv4Address("1.1.1.1"), IPv4Address("1.1.1.1")),) * 3)
    ).encode()
    with pytest.raises(InvalidIkeMessage):
        decode_message(ts, DecodeLimits(max_traffic_selectors=2))
    cp = message_with(ConfigurationPayload(1, (ConfigurationAttribute(1),) * 3)).encode()
    with pytest.raises(InvalidIkeMessage):
        decode_message(cp, DecodeLimits(max_config_attributes=2))
    decode_message(cp, DecodeLimits(max_elements=4))
    with pytest.raises(InvalidIkeMessage):
        decode_message(cp, DecodeLimits(max_elements=3))


RICH = message_with(
    *[p for p in EXAMPLES if not isinstance(p, EncryptedPayload | EncryptedFragmentPayload)],
    EncryptedPayload(PayloadType.IDI, bytes(48)),
).encode()


def test_worst_case_datagrams_are_cheap() -> None:
    """The largest datagrams that pass the default limits decode within a few milliseconds."""
    transforms = tuple(Transform(1, 12) for _ in range(128))
    sa = SecurityAssociationPayload(
        (Proposal(1, 1, b"", transforms), Proposal(2, 1, b"", transforms))
    )
    deletes = (DeletePayload.child_sas(3, (b"abcd",) * 500),) * 2
    for message in (message_with(sa), message_with(*deletes)):
        data = message.encode()
        started = time.perf_counter()
        assert decode_message(data) == message
        assert time.perf_counter() - started < 0.05
    too_many = message_with(SecurityAssociationPayload((Proposal(1, 1, b"", transforms),) * 3))
    expect_invalid(too_many.encode())
    # Small items spread over many payloads hit the per-chain element budget.
    cp = ConfigurationPayload(1, (ConfigurationAttribute(1),) * 100)
    expect_invalid(message_with(*[cp] * 11).encode())
    decode_message(message_with(*[cp] * 10).encode())
    expect_invalid(message_with(*deletes * 2).encode())
    for items in (
        (ConfigurationPayload(1, (ConfigurationAttribute(1),) * 128),) * 128,
        (DeletePayload.child_sas(3, (b"abcd",) * 512),) * 31,
        (TsInitiatorPayload((TrafficSelector(IPv4Address(1), IPv4Address(2)),) * 64),) * 60,
    ):
        data = message_with(*items).encode()
        started = time.perf_counter()
        expect_invalid(data)
        # A rejected 64 KB datagram costs no more per octet than an ordinary IKE_SA_INIT.
        assert time.perf_counter() - started < 0.05


def test_truncation_at_every_offset() -> None:
    """Every prefix of a message fails with InvalidIkeMessage, also with a fixed-up Length."""
    for end in range(len(RICH)):
        expect_invalid(RICH[:end])
        if end >= 28:
            expect_invalid(with_length(RICH[:end]))


def test_single_octet_corruption_never_crashes() -> None:
    """Changing any one octet gives a message or InvalidIkeMessage, never another exception."""
    for offset in range(len(RICH)):
        for value in (0x00, 0x01, 0x7F, 0x80, 0xFF):
            data = bytearray(RICH)
            data[offset] = value
            decodes_or_fails_cleanly(bytes(data))


@settings(max_examples=500)
@given(st.binary(max_size=200))
def test_random_bytes(data: bytes) -> None:
    """Random octets decode to a message or raise InvalidIkeMessage."""
    decodes_or_fails_cleanly(data)


@settings(max_examples=500)
@given(
    st.sampled_from([int(t) for t in PayloadType] + [1, 99, 255]),
    st.binary(max_size=300),
)
def test_random_payload_chain_behind_a_valid_header(first: int, tail: bytes) -> None:
    """Random payload octets behind a well-formed header never raise anything else."""
    header = SPI_I + SPI_R + bytes([first, 0x20, 34, 0x08]) + struct.pack("!II", 0, 28 + len(tail))
    decodes_or_fails_cleanly(header + tail)
    with contextlib.suppress(InvalidIkeMessage):
        decode_payload_chain(first, tail)


@settings(max_examples=300)
@given(messages, st.data())
def test_mutated_messages(message: IkeMessage, data: st.DataObject) -> None:
    """Valid messages with a few octets overwritten decode or raise InvalidIkeMessage."""
    octets = bytearray(message.encode())
    for _ in range(data.draw(st.integers(1, 4))):
        position = data.draw(st.integers(28, max(28, len(octets) - 1)))
        if position < len(octets):
            octets[position] = data.draw(st.integers(0, 255))
    decoded = decodes_or_fails_cleanly(bytes(octets))
    if decoded is not None:
        assert decode_message(decoded.encode()) == decoded


# --- encoding validation -------------------------------------------------------------------


def test_values_are_validated_on_construction() -> None:
    """Out-of-range fields raise ValueError when a value is built, not when it is sent."""
    with pytest.raises(ValueError):
        IkeMessage(b"short", SPI_R, 34, 0)
    with pytest.raises(ValueError):
        IkeMessage(SPI_I, SPI_R, 34, 2**32)
    with pytest.raises(ValueError):
        NotifyPayload(70000)
    with pytest.raises(ValueError):
        TransformAttribute(14, 70000)
    with pytest.raises(ValueError):
        TrafficSelector(IPv4Address("1.1.1.1"), IPv6Address("::1"))
    with pytest.raises(ValueError):
        DeletePayload(3, (b"abcd", b"ab"))
    with pytest.raises(ValueError):
        SecurityAssociationPayload(())
    with pytest.raises(ValueError):
        VendorIdPayload(bytes(70000)).encode()


# --- RFC 5685 ------------------------------------------------------------------------------


def test_redirect_notify_ipv4_ipv6_fqdn() -> None:
    """REDIRECT data is GW Ident Type, GW Ident Len, the identity, then the nonce."""
    nonce = bytes(range(16))
    v4 = redirect_notify(IPv4Address("127.0.0.3"), nonce)
    assert v4.notify_type == NotifyType.REDIRECT and v4.protocol_id == 0 and v4.spi == b""
    assert v4.data == bytes([1, 4, 127, 0, 0, 3]) + nonce
    v6 = redirect_notify(IPv6Address("::1"))
    assert v6.data == bytes([2, 16]) + IPv6Address("::1").packed
    fqdn = redirect_notify("gw.example")
    assert fqdn.data == bytes([3, 10]) + b"gw.example"
    assert parse_redirect(fqdn) == RedirectData("gw.example")
    assert parse_redirect(fqdn).gateway_identity_type == GatewayIdentityType.FQDN
    assert (
        RedirectData(IPv4Address("1.2.3.4")).gateway_identity_type
        == GatewayIdentityType.IPV4_ADDRESS
    )


def test_redirected_from_notify() -> None:
    """REDIRECTED_FROM carries only an address, without nonce."""
    notify = redirected_from_notify(IPv4Address("127.0.0.2"))
    assert notify.notify_type == NotifyType.REDIRECTED_FROM
    assert notify.data == bytes([1, 4, 127, 0, 0, 2])
    assert parse_redirected_from(notify) == IPv4Address("127.0.0.2")
    v6 = redirected_from_notify(IPv6Address("fe80::1"))
    assert parse_redirected_from(v6) == IPv6Address("fe80::1")


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x01",
        b"\x01\x05\x01\x02\x03\x04",  # length past the data
        b"\x01\x03\x01\x02\x03",  # IPv4 of 3 octets
        b"\x02\x04\x01\x02\x03\x04",  # IPv6 of 4 octets
        b"\x03\x00",  # empty FQDN
        b"\x03\x02\xc3\xa9",  # non-ASCII FQDN
        b"\x03\x02a b"[:5],  # space is not in an FQDN
        b"\x00\x00",  # reserved type
        b"\x04\x01x",  # unassigned type
    ],
)
def test_malformed_redirect_data(data: bytes) -> None:
    """Malformed REDIRECT data raises InvalidIkeMessage (INVALID_SYNTAX)."""
    with pytest.raises(InvalidIkeMessage) as caught:
        parse_redirect(NotifyPayload(NotifyType.REDIRECT, data))
    assert caught.value.notify_type == NotifyType.INVALID_SYNTAX


def test_malformed_redirected_from() -> None:
    """REDIRECTED_FROM with an FQDN or trailing octets raises InvalidIkeMessage."""
    for data in (b"\x03\x02gw", b"\x01\x04\x01\x02\x03\x04\x00"):
        with pytest.raises(InvalidIkeMessage):
            parse_redirected_from(NotifyPayload(NotifyType.REDIRECTED_FROM, data))


def test_redirect_helpers_check_notify_type_and_values() -> None:
    """The parse helpers refuse other notify types; builders refuse unencodable gateways."""
    with pytest.raises(ValueError):
        parse_redirect(NotifyPayload(NotifyType.COOKIE, b"\x03\x01x"))
    with pytest.raises(ValueError):
        parse_redirected_from(NotifyPayload(NotifyType.REDIRECT, b"\x01\x04abcd"))
    with pytest.raises(ValueError):
        redirect_notify("gätewäy.example")
    with pytest.raises(ValueError):
        redirect_notify("")
    with pytest.raises(ValueError):
        redirected_from_notify("gw.example")  # type: ignore[arg-type]
    assert redirect_supported_notify() == NotifyPayload(NotifyType.REDIRECT_SUPPORTED)


# --- NAT traversal framing -----------------------------------------------------------------


def test_non_esp_marker() -> None:
    """On port 4500 an IKE message follows four zero octets; ESP and keepalives do not."""
    message = message_with(NoncePayload(b"n" * 16)).encode()
    framed = add_non_esp_marker(message)
    assert framed == b"\x00\x00\x00\x00" + message
    assert decode_message(strip_non_esp_marker(framed)) == decode_message(message)
    with pytest.raises(InvalidIkeMessage):
        strip_non_esp_marker(b"\x00\x00\x10\x01" + bytes(40))  # ESP SPI 0x1001
    with pytest.raises(InvalidIkeMessage):
        strip_non_esp_marker(b"\xff")
    assert is_nat_keepalive(b"\xff")
    assert not is_nat_keepalive(framed)


def test_error_repr_and_data() -> None:
    """InvalidIkeMessage is a ValueError with a readable repr and empty data for syntax errors."""
    error = InvalidIkeMessage("bad")
    assert isinstance(error, ValueError)
    assert error.notify_type == NotifyType.INVALID_SYNTAX
    assert error.notify_data == b""
    assert "bad" in repr(error)


def test_lists_become_tuples() -> None:
    """Lists given for sequence fields are stored as tuples, so values compare and hash."""
    message = IkeMessage(SPI_I, SPI_R, 34, 0, [NoncePayload(b"n")])  # type: ignore[arg-type]
    assert message.payloads == (NoncePayload(b"n"),)
    sa = SecurityAssociationPayload([Proposal(1, 1, b"", [Transform(1, 12, [])])])  # type: ignore[arg-type]
    assert sa == SecurityAssociationPayload((Proposal(1, 1, b"", (Transform(1, 12, ()),)),))
    hash(sa)
    assert DeletePayload(3, [b"abcd"]).spis == (b"abcd",)  # type: ignore[arg-type]
    assert TsInitiatorPayload([]).selectors == ()  # type: ignore[arg-type]
    assert ConfigurationPayload(1, [ConfigurationAttribute(1)]).attributes == (  # type: ignore[arg-type]
        ConfigurationAttribute(1),
    )


@settings(max_examples=300)
@given(st.binary(max_size=80))
def test_random_redirect_data(data: bytes) -> None:
    """Random notify data parses as REDIRECT / REDIRECTED_FROM or raises InvalidIkeMessage."""
    for notify_type, parse in (
        (NotifyType.REDIRECT, parse_redirect),
        (NotifyType.REDIRECTED_FROM, parse_redirected_from),
    ):
        with contextlib.suppress(InvalidIkeMessage):
            parse(NotifyPayload(notify_type, data))


@settings(max_examples=200)
@given(payload_chains(), st.integers(0, 10), unknown_payload_types)
def test_critical_unknown_payload_anywhere(
    chain: tuple[Payload, ...], position: int, payload_type: int
) -> None:
    """A critical unknown payload at any place before SK makes the message fail with its type."""
    plain = [p for p in chain if not isinstance(p, EncryptedPayload | EncryptedFragmentPayload)]
    tail = list(chain[len(plain) :])
    position = min(position, len(plain))
    payloads = [
        *plain[:position],
        UnknownPayload(payload_type, b"x", critical=True),
        *plain[position:],
        *tail,
    ]
    error = expect_invalid(
        message_with(*payloads).encode(), NotifyType.UNSUPPORTED_CRITICAL_PAYLOAD
    )
    assert error.payload_type == payload_type
