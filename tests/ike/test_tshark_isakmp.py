"""Wireshark's ISAKMP dissector reads what our IKEv2 encoder writes, field by field.

The messages go into a pcap file as UDP 127.0.0.1:500 -> 127.0.0.2:500 (one also framed for
port 4500); tshark dissects the file once per test module and nothing is sent anywhere.
"""

from __future__ import annotations

import datetime
import functools
import json
import random
import subprocess
from collections.abc import Callable, Iterator
from ipaddress import IPv4Address, IPv6Address
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.conftest import requireTool
from tests.tools.tshark import ike_packet, write_pcap
from twisted_rserpool.ike.constants import (
    AuthMethod,
    CertEncoding,
    CfgType,
    ConfigAttributeType,
    DhGroup,
    EncrId,
    ExchangeType,
    IdType,
    IntegId,
    NotifyType,
    PayloadType,
    PrfId,
    ProtocolId,
    TransformType,
    TsType,
)
from twisted_rserpool.ike.payloads import (
    AuthenticationPayload,
    CertificatePayload,
    CertificateRequestPayload,
    ConfigurationAttribute,
    ConfigurationPayload,
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
    SecurityAssociationPayload,
    TrafficSelector,
    Transform,
    TransformAttribute,
    TsInitiatorPayload,
    TsResponderPayload,
    UnknownPayload,
    VendorIdPayload,
    add_non_esp_marker,
    parse_redirect,
    redirect_notify,
    redirect_supported_notify,
    redirected_from_notify,
)

pytestmark = pytest.mark.interop

Pairs = list[tuple[str, Any]]
"""A JSON object as tshark wrote it: members in order, duplicate keys kept."""

_TRANSFORM_ID_FIELD = {1: "encr", 2: "prf", 3: "integ", 4: "dh", 5: "esn"}


def certificate_der() -> bytes:
    """A real self-signed X.509 certificate, so that Wireshark's X.509 dissector is content."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "gw.test")])
    now = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    return certificate.public_bytes(serialization.Encoding.DER)


def spis(index: int) -> tuple[bytes, bytes]:
    """Distinct SPIs per message, so that a mix-up between packets shows."""
    return bytes([0xA0, index]) + bytes(range(6)), bytes([0xB0, index]) + bytes(range(6, 12))


def full_proposals() -> tuple[Proposal, ...]:
    """An IKE proposal with the project's algorithms and an ESP proposal with an SPI."""
    return (
        Proposal(
            1,
            ProtocolId.IKE,
            b"",
            (
                Transform(1, EncrId.ENCR_AES_CBC, (TransformAttribute.key_length(128),)),
                Transform(1, EncrId.ENCR_AES_GCM_16, (TransformAttribute.key_length(256),)),
                Transform(2, PrfId.PRF_HMAC_SHA2_256),
                Transform(2, PrfId.PRF_HMAC_SHA2_384),
                Transform(2, PrfId.PRF_HMAC_SHA2_512),
                Transform(3, IntegId.AUTH_HMAC_SHA2_256_128),
                Transform(3, IntegId.AUTH_HMAC_SHA2_384_192),
                Transform(3, IntegId.AUTH_HMAC_SHA2_512_256),
                Transform(4, DhGroup.MODP_2048),
                Transform(4, DhGroup.ECP_256),
                Transform(4, DhGroup.ECP_384),
                Transform(4, DhGroup.CURVE25519),
            ),
        ),
        Proposal(
            2,
            ProtocolId.ESP,
            b"\x12\x34\x56\x78",
            (
                Transform(1, EncrId.ENCR_AES_GCM_16, (TransformAttribute.key_length(256),)),
                Transform(5, 0),
            ),
        ),
    )


def built_messages() -> list[IkeMessage]:
    """Messages that together hold every payload type and the RFC 5685 notifies."""
    ni = bytes(range(100, 132))
    init = IkeMessage(
        *spis(1),
        ExchangeType.IKE_SA_INIT,
        0,
        (
            SecurityAssociationPayload(full_proposals()),
            KeyExchangePayload(DhGroup.CURVE25519, bytes(range(32))),
            NoncePayload(ni),
            NotifyPayload(NotifyType.NAT_DETECTION_SOURCE_IP, bytes(range(20))),
            NotifyPayload(NotifyType.NAT_DETECTION_DESTINATION_IP, bytes(range(20, 40))),
            NotifyPayload(NotifyType.IKEV2_FRAGMENTATION_SUPPORTED),
            NotifyPayload(NotifyType.SIGNATURE_HASH_ALGORITHMS, bytes.fromhex("000200030004")),
            redirect_supported_notify(),
            VendorIdPayload(b"twisted-rserpool"),
        ),
        initiator=True,
    )
    redirect = IkeMessage(
        spis(2)[0],
        bytes(8),
        ExchangeType.IKE_SA_INIT,
        0,
        (redirect_notify("gw2.test", ni),),
        response=True,
    )
    redirected = IkeMessage(
        *spis(3),
        ExchangeType.IKE_SA_INIT,
        0,
        (
            redirected_from_notify(IPv4Address("127.0.0.2")),
            redirected_from_notify(IPv6Address("::1")),
            redirect_notify(IPv4Address("127.0.0.3"), ni),
            redirect_notify(IPv6Address("::3")),
            NotifyPayload(NotifyType.COOKIE, bytes(range(16))),
        ),
        initiator=True,
    )
    auth_plaintext = IkeMessage(
        *spis(4),
        ExchangeType.IKE_AUTH,
        1,
        (
            IdInitiatorPayload(IdType.ID_FQDN, b"client.test"),
            IdResponderPayload(IdType.ID_IPV4_ADDR, IPv4Address("127.0.0.2").packed),
            CertificatePayload(CertEncoding.X509_SIGNATURE, certificate_der()),
            CertificateRequestPayload(CertEncoding.X509_SIGNATURE, bytes(range(20))),
            AuthenticationPayload(AuthMethod.SHARED_KEY_MIC, bytes(range(32))),
            ConfigurationPayload(
                CfgType.CFG_REQUEST,
                (
                    ConfigurationAttribute(ConfigAttributeType.INTERNAL_IP4_ADDRESS),
                    ConfigurationAttribute(
                        ConfigAttributeType.INTERNAL_IP4_DNS, IPv4Address("10.1.2.3").packed
                    ),
                ),
            ),
            SecurityAssociationPayload((full_proposals()[1],)),
            TsInitiatorPayload(
                (
                    TrafficSelector(IPv4Address("10.0.0.0"), IPv4Address("10.0.0.255")),
                    TrafficSelector(
                        IPv6Address("2001:db8::1"), IPv6Address("2001:db8::ff"), 17, 500, 4500
                    ),
                )
            ),
            TsResponderPayload(
                (TrafficSelector(IPv4Address("0.0.0.0"), IPv4Address("255.255.255.255"), 6),)
            ),
            NotifyPayload(NotifyType.INITIAL_CONTACT),
            NotifyPayload(NotifyType.REKEY_SA, b"", ProtocolId.ESP, b"\x00\x00\x10\x01"),
            EapPayload(bytes.fromhex("0201000a01") + b"alice"),
        ),
        initiator=True,
    )
    informational = IkeMessage(
        *spis(5),
        ExchangeType.INFORMATIONAL,
        7,
        (
            DeletePayload.child_sas(ProtocolId.ESP, (b"\x00\x00\x00\x01", b"\x00\x00\x00\x02")),
            DeletePayload.ike_sa(),
            UnknownPayload(200, b"opaque"),
        ),
        response=True,
        initiator=True,
    )
    encrypted = IkeMessage(
        *spis(6),
        ExchangeType.IKE_AUTH,
        1,
        (EncryptedPayload(PayloadType.IDI, bytes(range(80))),),
        initiator=True,
    )
    fragment = IkeMessage(
        *spis(7),
        ExchangeType.IKE_AUTH,
        1,
        (EncryptedFragmentPayload(1, 3, PayloadType.IDI, bytes(range(64))),),
        initiator=True,
    )
    return [init, redirect, redirected, auth_plaintext, informational, encrypted, fragment]


def random_payload(rng: random.Random) -> Payload:
    """A random payload whose data tshark treats as opaque or checks only loosely."""

    def blob(low: int, high: int) -> bytes:
        return rng.randbytes(rng.randint(low, high))

    def selector() -> TrafficSelector:
        if rng.random() < 0.5:
            return TrafficSelector(
                IPv4Address(rng.getrandbits(32)),
                IPv4Address(rng.getrandbits(32)),
                rng.randint(0, 255),
                rng.randint(0, 65535),
                rng.randint(0, 65535),
            )
        return TrafficSelector(IPv6Address(rng.getrandbits(128)), IPv6Address(rng.getrandbits(128)))

    def proposal(number: int) -> Proposal:
        transforms = []
        for _ in range(rng.randint(0, 5)):
            kind = rng.randint(1, 5)
            attributes = (TransformAttribute.key_length(rng.choice([128, 192, 256])),)
            transforms.append(Transform(kind, rng.randint(0, 30), attributes if kind == 1 else ()))
        spi = rng.choice([b"", rng.randbytes(4), rng.randbytes(8)])
        return Proposal(number, rng.randint(1, 3), spi, tuple(transforms))

    def address() -> IPv4Address | IPv6Address:
        if rng.random() < 0.5:
            return IPv4Address(rng.getrandbits(32))
        return IPv6Address(rng.getrandbits(128))

    def gateway() -> IPv4Address | IPv6Address | str:
        if rng.random() < 0.3:
            return "".join(rng.choice("abcdefghij.-0123") for _ in range(rng.randint(1, 30)))
        return address()

    builders: list[Callable[[], Payload]] = [
        lambda: SecurityAssociationPayload(tuple(proposal(i) for i in range(1, rng.randint(2, 4)))),
        lambda: KeyExchangePayload(rng.randint(0, 40), blob(0, 64)),
        lambda: NoncePayload(blob(16, 64)),
        lambda: NotifyPayload(
            rng.choice([NotifyType.COOKIE, NotifyType.NAT_DETECTION_SOURCE_IP, 40000]),
            blob(0, 24),
        ),
        lambda: NotifyPayload(
            rng.choice([NotifyType.INITIAL_CONTACT, NotifyType.NO_PROPOSAL_CHOSEN])
        ),
        lambda: redirect_notify(gateway(), rng.choice([b"", blob(16, 64)])),
        lambda: redirected_from_notify(address()),
        lambda: DeletePayload.child_sas(
            ProtocolId.ESP, tuple(rng.randbytes(4) for _ in range(rng.randint(0, 4)))
        ),
        lambda: VendorIdPayload(blob(1, 24)),
        lambda: TsInitiatorPayload(tuple(selector() for _ in range(rng.randint(0, 3)))),
        lambda: TsResponderPayload(tuple(selector() for _ in range(rng.randint(0, 3)))),
        lambda: AuthenticationPayload(AuthMethod.SHARED_KEY_MIC, blob(20, 64)),
        lambda: UnknownPayload(rng.randint(60, 255), blob(0, 16)),
    ]
    return rng.choice(builders)()


def random_messages(count: int, seed: int = 7296) -> list[IkeMessage]:
    """Reproducible random messages, some ending with an SK payload."""
    rng = random.Random(seed)
    messages = []
    for _ in range(count):
        payloads = [random_payload(rng) for _ in range(rng.randint(1, 6))]
        if rng.random() < 0.2:
            payloads.append(EncryptedPayload(rng.choice([0, 35, 41, 42]), rng.randbytes(48)))
        messages.append(
            IkeMessage(
                rng.randbytes(8),
                rng.randbytes(8),
                rng.choice(list(ExchangeType)[:4]),
                rng.getrandbits(32),
                tuple(payloads),
                initiator=rng.random() < 0.5,
                response=rng.random() < 0.5,
            )
        )
    return messages


# --- tshark JSON access --------------------------------------------------------------------


def first(pairs: Pairs, key: str) -> Any:
    """The first member named ``key``."""
    for name, value in pairs:
        if name == key:
            return value
    raise KeyError(key)


def every(pairs: Pairs, key: str) -> list[Any]:
    """Every member named ``key``, in order."""
    return [value for name, value in pairs if name == key]


def subtrees(pairs: Pairs) -> list[tuple[int, Pairs]]:
    """(payload type, tree) for each payload dissected directly inside ``pairs``."""
    found = []
    current: int | None = None
    for name, value in pairs:
        if name == "isakmp.typepayload":
            current = int(value)
        elif name == "isakmp.typepayload_tree":
            assert current is not None
            found.append((current, value))
            current = None
    return found


def walk(value: Any) -> Iterator[tuple[str, Any]]:
    """Every member anywhere below a JSON value."""
    if isinstance(value, list):
        for item in value:
            if isinstance(item, tuple):
                yield item
                yield from walk(item[1])
            else:
                yield from walk(item)


def colon_hex(data: bytes) -> str:
    """Bytes the way tshark's JSON shows them."""
    return ":".join(f"{octet:02x}" for octet in data)


def dissect(tshark: str, path: Path) -> list[Pairs]:
    """The isakmp layer of each packet in the file, members in document order."""
    result = subprocess.run(
        [tshark, "-n", "-r", str(path), "-T", "json", "-d", "udp.port==4500,udpencap"],
        capture_output=True,
        check=True,
        timeout=60,
    )
    packets = json.loads(result.stdout, object_pairs_hook=list)
    layers = []
    for packet in packets:
        source = first(packet, "_source")
        layer = first(source, "layers")
        layers.append(layer)
    return layers


# --- field-by-field comparison -------------------------------------------------------------


def check_transform(transform: Transform, tree: Pairs) -> None:
    """Transform type, ID and key length as tshark reads them."""
    assert int(first(tree, "isakmp.tf.type")) == transform.transform_type
    kind = _TRANSFORM_ID_FIELD[transform.transform_type]
    assert int(first(tree, f"isakmp.tf.id.{kind}")) == transform.transform_id
    attributes = every(tree, "isakmp.ike2.attr")
    assert len(attributes) == len(transform.attributes)
    if transform.key_length is not None:
        assert int(first(attributes[0], "isakmp.ike2.attr.key_length")) == transform.key_length


def check_proposal(proposal: Proposal, tree: Pairs) -> None:
    """Proposal number, protocol, SPI and transforms as tshark reads them."""
    assert int(first(tree, "isakmp.prop.number")) == proposal.number
    assert int(first(tree, "isakmp.prop.protoid")) == proposal.protocol_id
    assert int(first(tree, "isakmp.spisize")) == len(proposal.spi)
    assert int(first(tree, "isakmp.prop.transforms")) == len(proposal.transforms)
    if proposal.spi:
        assert first(tree, "isakmp.spi") == colon_hex(proposal.spi)
    transforms = subtrees(tree)
    assert [kind for kind, _ in transforms] == [3] * len(proposal.transforms)
    for transform, (_, sub) in zip(proposal.transforms, transforms, strict=True):
        check_transform(transform, sub)


def check_selector(selector: TrafficSelector, tree: Pairs) -> None:
    """One traffic selector as tshark reads it."""
    assert int(first(tree, "isakmp.ts.type")) == selector.ts_type
    assert int(first(tree, "isakmp.ts.protoid")) == selector.ip_protocol
    assert int(first(tree, "isakmp.ts.start_port")) == selector.start_port
    assert int(first(tree, "isakmp.ts.end_port")) == selector.end_port
    family = "ipv4" if selector.ts_type == TsType.TS_IPV4_ADDR_RANGE else "ipv6"
    assert first(tree, f"isakmp.ts.start_{family}") == str(selector.start_address)
    assert first(tree, f"isakmp.ts.end_{family}") == str(selector.end_address)


def check_notify(notify: NotifyPayload, tree: Pairs) -> None:
    """Notify fields, and the RFC 5685 gateway identity and nonce where present."""
    assert int(first(tree, "isakmp.notify.protoid")) == notify.protocol_id
    assert int(first(tree, "isakmp.spisize")) == len(notify.spi)
    assert int(first(tree, "isakmp.notify.msgtype")) == notify.notify_type
    if notify.spi:
        assert first(tree, "isakmp.spi") == colon_hex(notify.spi)
    assert first(tree, "isakmp.notify.data") == colon_hex(notify.data)
    if notify.notify_type in (NotifyType.REDIRECT, NotifyType.REDIRECTED_FROM):
        redirect = parse_redirect(NotifyPayload(NotifyType.REDIRECT, notify.data))
        prefix = "isakmp.notify.data.redirect."
        assert int(first(tree, prefix + "gw_ident.type")) == redirect.gateway_identity_type
        family = {1: "ipv4", 2: "ipv6", 3: "fqdn"}[redirect.gateway_identity_type]
        role = "new_resp" if notify.notify_type == NotifyType.REDIRECT else "org_resp"
        assert first(tree, f"{prefix}{role}_gw_ident.{family}") == str(redirect.gateway)
        if redirect.nonce:
            assert first(tree, prefix + "nonce_data") == colon_hex(redirect.nonce)
        else:
            assert every(tree, prefix + "nonce_data") == []


def check_payload(payload: Payload, kind: int, tree: Pairs, next_type: int) -> None:
    """The generic header and the type-specific fields of one payload."""
    assert kind == payload.payload_type
    assert int(first(tree, "isakmp.payloadlength")) == len(payload.encode())
    assert int(first(tree, "isakmp.nextpayload")) == next_type
    if isinstance(payload, SecurityAssociationPayload):
        proposals = subtrees(tree)
        assert [k for k, _ in proposals] == [2] * len(payload.proposals)
        for proposal, (_, sub) in zip(payload.proposals, proposals, strict=True):
            check_proposal(proposal, sub)
    elif isinstance(payload, KeyExchangePayload):
        assert int(first(tree, "isakmp.key_exchange.dh_group")) == payload.dh_group
        assert first(tree, "isakmp.key_exchange.data") == colon_hex(payload.data)
    elif isinstance(payload, IdInitiatorPayload | IdResponderPayload):
        assert int(first(tree, "isakmp.id.type")) == payload.id_type
        data = first(tree, "isakmp.id.data")
        if payload.id_type == IdType.ID_FQDN:
            assert first(data, "isakmp.id.data.fqdn") == payload.data.decode()
        elif payload.id_type == IdType.ID_IPV4_ADDR:
            assert first(data, "isakmp.id.data.ipv4_addr") == str(IPv4Address(payload.data))
    elif isinstance(payload, CertificatePayload):
        assert int(first(tree, "isakmp.cert.encoding")) == payload.encoding
    elif isinstance(payload, CertificateRequestPayload):
        assert int(first(tree, "isakmp.certreq.type")) == payload.encoding
    elif isinstance(payload, AuthenticationPayload):
        assert int(first(tree, "isakmp.auth.method")) == payload.method
        assert first(tree, "isakmp.auth.data") == colon_hex(payload.data)
    elif isinstance(payload, NoncePayload):
        assert first(tree, "isakmp.nonce") == colon_hex(payload.data)
    elif isinstance(payload, NotifyPayload):
        check_notify(payload, tree)
    elif isinstance(payload, DeletePayload):
        assert int(first(tree, "isakmp.delete.protoid")) == payload.protocol_id
        assert int(first(tree, "isakmp.spisize")) == payload.spi_size
        assert int(first(tree, "isakmp.spinum")) == len(payload.spis)
        assert every(tree, "isakmp.delete.spi") == [colon_hex(s) for s in payload.spis]
    elif isinstance(payload, VendorIdPayload):
        assert first(tree, "isakmp.vid_bytes") == colon_hex(payload.data)
    elif isinstance(payload, TsInitiatorPayload | TsResponderPayload):
        assert int(first(tree, "isakmp.ts.number")) == len(payload.selectors)
        selectors = every(tree, "isakmp.ts.data")
        assert len(selectors) == len(payload.selectors)
        for selector, sub in zip(payload.selectors, selectors, strict=True):
            assert isinstance(selector, TrafficSelector)
            check_selector(selector, sub)
    elif isinstance(payload, ConfigurationPayload):
        assert int(first(tree, "isakmp.cfg.type")) == payload.cfg_type
        attributes = every(tree, "isakmp.cfg.attr")
        assert len(attributes) == len(payload.attributes)
        for attribute, sub in zip(payload.attributes, attributes, strict=True):
            assert int(first(sub, "isakmp.cfg.attr.type")) == attribute.attribute_type
            assert int(first(sub, "isakmp.cfg.attr.length")) == len(attribute.value)
    elif isinstance(payload, EapPayload):
        eap = first(tree, "eap")
        assert int(first(eap, "eap.code")) == payload.data[0]
        assert int(first(eap, "eap.len")) == len(payload.data)
    elif isinstance(payload, EncryptedFragmentPayload):
        assert int(first(tree, "isakmp.frag.number")) == payload.fragment_number
        assert int(first(tree, "isakmp.frag.total")) == payload.total_fragments
    elif isinstance(payload, UnknownPayload):
        assert first(tree, "isakmp.datapayload") == colon_hex(payload.data)


def problems(layers: Pairs) -> list[tuple[str, Any]]:
    """What tshark flagged: malformed markers and expert messages, anywhere in the packet."""
    return [
        (name, value)
        for name, value in walk(layers)
        if name.startswith("_ws.malformed") or name == "_ws.expert.message"
    ]


def check_message(message: IkeMessage, layers: Pairs) -> None:
    """Header fields and every payload of one message agree with tshark's dissection."""
    assert problems(layers) == []
    layer = first(layers, "isakmp")
    assert first(layer, "isakmp.ispi") == colon_hex(message.spi_i)
    assert first(layer, "isakmp.rspi") == colon_hex(message.spi_r)
    assert int(first(layer, "isakmp.exchangetype")) == message.exchange_type
    assert int(first(layer, "isakmp.flags"), 16) == message.flags
    assert int(first(layer, "isakmp.messageid"), 16) == message.message_id
    assert int(first(layer, "isakmp.length")) == len(message.encode())
    found = subtrees(layer)
    assert [kind for kind, _ in found] == [p.payload_type for p in message.payloads]
    for index, (payload, (kind, tree)) in enumerate(zip(message.payloads, found, strict=True)):
        if isinstance(payload, EncryptedPayload | EncryptedFragmentPayload):
            following = payload.first_payload_type
        elif index + 1 < len(message.payloads):
            following = message.payloads[index + 1].payload_type
        else:
            following = 0
        check_payload(payload, kind, tree, following)


# --- tests ---------------------------------------------------------------------------------

MESSAGES = built_messages()


@pytest.fixture(scope="module")
def dissected(tmp_path_factory: pytest.TempPathFactory) -> list[Pairs]:
    """tshark's view of the built messages (the last one framed for port 4500)."""
    tshark = requireTool("tshark")
    packets = [ike_packet(m.encode()) for m in MESSAGES]
    packets.append(ike_packet(add_non_esp_marker(MESSAGES[3].encode()), sport=4500, dport=4500))
    path = tmp_path_factory.mktemp("isakmp") / "built.pcap"
    write_pcap(path, packets)
    return dissect(tshark, path)


def test_every_payload_type_is_covered() -> None:
    """The built messages hold every payload class of the codec."""
    classes = {type(p) for m in MESSAGES for p in m.payloads}
    assert classes == {
        SecurityAssociationPayload,
        KeyExchangePayload,
        IdInitiatorPayload,
        IdResponderPayload,
        CertificatePayload,
        CertificateRequestPayload,
        AuthenticationPayload,
        NoncePayload,
        NotifyPayload,
        DeletePayload,
        VendorIdPayload,
        TsInitiatorPayload,
        TsResponderPayload,
        EncryptedPayload,
        EncryptedFragmentPayload,
        ConfigurationPayload,
        EapPayload,
        UnknownPayload,
    }


@pytest.mark.parametrize("index", range(len(MESSAGES)))
def test_tshark_agrees(dissected: list[Pairs], index: int) -> None:
    """tshark reads the same header, payload types and field values, and nothing malformed."""
    check_message(MESSAGES[index], dissected[index])


def test_tshark_reads_non_esp_marker_framing(dissected: list[Pairs]) -> None:
    """On port 4500, tshark finds the IKE message after our non-ESP marker."""
    check_message(MESSAGES[3], dissected[len(MESSAGES)])


def test_tshark_shows_redirect_gateway_and_nonce(dissected: list[Pairs]) -> None:
    """The REDIRECT response names the FQDN gateway and carries the request's Ni."""
    ((kind, tree),) = subtrees(first(dissected[1], "isakmp"))
    assert kind == PayloadType.NOTIFY
    prefix = "isakmp.notify.data.redirect."
    assert first(tree, prefix + "new_resp_gw_ident.fqdn") == "gw2.test"
    assert first(tree, prefix + "nonce_data") == colon_hex(bytes(range(100, 132)))


def test_tshark_agrees_on_random_messages(tmp_path: Path) -> None:
    """Seeded random messages dissect to the same structure and values, none malformed."""
    tshark = requireTool("tshark")
    messages = random_messages(60)
    path = tmp_path / "random.pcap"
    write_pcap(path, [ike_packet(m.encode()) for m in messages])
    for message, layers in zip(messages, dissect(tshark, path), strict=True):
        check_message(message, layers)


def test_problem_detector_sees_malformed_packets(tmp_path: Path) -> None:
    """The malformed check has teeth: a garbage certificate and a bad length are flagged."""
    tshark = requireTool("tshark")
    bad_cert = IkeMessage(
        *spis(9),
        ExchangeType.IKE_AUTH,
        1,
        (CertificatePayload(CertEncoding.X509_SIGNATURE, b"0\x82\x01\x00garbage"),),
    ).encode()
    good = MESSAGES[0].encode()
    bad_length = good[:-4] + b"\x00\x00\x00\x00"
    bad_length = bad_length[:24] + (len(good) + 40).to_bytes(4, "big") + bad_length[28:]
    path = tmp_path / "bad.pcap"
    write_pcap(path, [ike_packet(bad_cert), ike_packet(bad_length)])
    for layers in dissect(tshark, path):
        assert problems(layers) != []


@functools.cache
def wireshark_names(tshark: str) -> dict[str, dict[int, set[str]]]:
    """The value names of Wireshark's ISAKMP fields, from ``tshark -G values``."""
    result = subprocess.run([tshark, "-G", "values"], capture_output=True, check=True, timeout=60)
    names: dict[str, dict[int, set[str]]] = {}
    for line in result.stdout.decode(errors="replace").splitlines():
        parts = line.split("\t")
        if parts[0] == "V" and len(parts) == 4 and parts[1].startswith("isakmp."):
            names.setdefault(parts[1], {}).setdefault(int(parts[2], 0), set()).add(parts[3])
        elif (
            parts[0] == "R"
            and len(parts) == 5
            and parts[1].startswith("isakmp.")
            and parts[2] == parts[3]
        ):
            names.setdefault(parts[1], {}).setdefault(int(parts[2]), set()).add(parts[4])
    return names


@pytest.mark.parametrize(
    ("field", "enum"),
    [
        ("isakmp.notify.msgtype", NotifyType),
        ("isakmp.exchangetype", ExchangeType),
        ("isakmp.tf.id.integ", IntegId),
        ("isakmp.ts.type", TsType),
        ("isakmp.cfg.type", CfgType),
        ("isakmp.cfg.attr.type", ConfigAttributeType),
    ],
)
def test_enum_names_match_wireshark(field: str, enum: type[NotifyType]) -> None:
    """Our RFC names are the names Wireshark gives the same numbers (where it knows them)."""
    names = wireshark_names(requireTool("tshark"))[field]
    known = [member for member in enum if member.value in names]
    assert len(known) >= len(enum) * 3 // 4
    for member in known:
        assert member.name in names[member.value], (member, names[member.value])


def test_transform_type_numbers_match_wireshark() -> None:
    """Wireshark's transform type table has our five types at the same numbers."""
    names = wireshark_names(requireTool("tshark"))["isakmp.tf.type"]
    for member in TransformType:
        assert f"({member.name if member != TransformType.DH else 'D-H'})" in " ".join(
            names[member.value]
        )
