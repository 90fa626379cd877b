"""Suite names, proposal selection, traffic selector narrowing, identities and PSK files."""

from __future__ import annotations

from ipaddress import IPv4Address

import pytest

from twisted_rserpool.ike.child import (
    any_selector,
    covers,
    intersect,
    narrow,
    selector_from_network,
    split_keymat,
)
from twisted_rserpool.ike.config import Identity, IkeConfig, PskTable
from twisted_rserpool.ike.constants import IdType
from twisted_rserpool.ike.crypto import DhGroupId, EncryptionId, IntegrityId, PrfId
from twisted_rserpool.ike.payloads import TrafficSelector
from twisted_rserpool.ike.proposals import (
    DH,
    ENCR,
    ESN,
    INTEG,
    PRF,
    PROTO_ESP,
    PROTO_IKE,
    ChildSuite,
    IkeSuite,
    OfferedProposal,
    OfferedTransform,
    ProposalError,
    child_suite_from_proposal,
    parse_child_suites,
    parse_ike_suites,
    select_child,
    select_ike,
    suite_from_proposal,
)


def test_parse_ike_suite_names() -> None:
    """strongSwan-style names map to suites and print back the same way."""
    (cbc, gcm) = parse_ike_suites("aes128-sha256-modp2048, AES256GCM16-prfsha384-x25519")
    assert cbc == IkeSuite(
        EncryptionId.AES_CBC,
        128,
        PrfId.HMAC_SHA2_256,
        IntegrityId.HMAC_SHA2_256_128,
        DhGroupId.MODP_2048,
    )
    assert gcm == IkeSuite(
        EncryptionId.AES_GCM_16, 256, PrfId.HMAC_SHA2_384, None, DhGroupId.CURVE25519
    )
    assert str(cbc) == "aes128-sha256-modp2048"
    assert str(gcm) == "aes256gcm16-prfsha384-x25519"
    (mixed,) = parse_ike_suites("aes256-sha512-prfsha256-ecp384")
    assert mixed.prf == PrfId.HMAC_SHA2_256 and mixed.integrity == IntegrityId.HMAC_SHA2_512_256
    assert parse_ike_suites(str(mixed)) == (mixed,)


@pytest.mark.parametrize(
    "text", ["", "des-sha1-modp1024", "aes128-sha256", "aes128-modp2048", "aes128-sha256-foo"]
)
def test_bad_ike_suite_names(text: str) -> None:
    """Unknown algorithms and incomplete suites raise ProposalError."""
    with pytest.raises(ProposalError):
        parse_ike_suites(text)


def test_parse_child_suites() -> None:
    """ESP names: CBC needs an integrity algorithm, GCM has none, esn is optional."""
    assert parse_child_suites("aes128gcm16, aes256-sha384-esn") == (
        ChildSuite(EncryptionId.AES_GCM_16, 128, None),
        ChildSuite(EncryptionId.AES_CBC, 256, IntegrityId.HMAC_SHA2_384_192, True),
    )
    with pytest.raises(ProposalError):
        parse_child_suites("aes128")
    with pytest.raises(ProposalError):
        parse_child_suites("aes128gcm16-modp2048")


def _ike(*transforms: OfferedTransform, number: int = 1) -> OfferedProposal:
    return OfferedProposal(number, PROTO_IKE, b"", transforms)


def test_select_from_multi_transform_proposal() -> None:
    """A proposal offering several transforms per type yields exactly our suite's ones."""
    offered = _ike(
        OfferedTransform(ENCR, 12, 256),
        OfferedTransform(ENCR, 12, 128),
        OfferedTransform(INTEG, 14),
        OfferedTransform(INTEG, 12),
        OfferedTransform(PRF, 7),
        OfferedTransform(PRF, 5),
        OfferedTransform(DH, 19),
        OfferedTransform(DH, 31),
    )
    ours = parse_ike_suites("aes128-sha256-x25519")
    result = select_ike([offered], ours)
    assert result is not None
    chosen, suite = result
    assert suite == ours[0] and chosen.number == 1
    assert suite_from_proposal(chosen) == suite


def test_select_requires_every_offered_type() -> None:
    """Missing types, other protocols and unoffered key lengths do not match."""
    ours = parse_ike_suites("aes128-sha256-x25519")
    no_dh = _ike(
        OfferedTransform(ENCR, 12, 128), OfferedTransform(INTEG, 12), OfferedTransform(PRF, 5)
    )
    assert select_ike([no_dh], ours) is None
    wrong_len = _ike(
        OfferedTransform(ENCR, 12, 192),
        OfferedTransform(INTEG, 12),
        OfferedTransform(PRF, 5),
        OfferedTransform(DH, 31),
    )
    assert select_ike([wrong_len], ours) is None
    esp = OfferedProposal(1, PROTO_ESP, b"1234", ours[0].transforms())
    assert select_ike([esp], ours) is None


def test_select_aead_with_integ_none() -> None:
    """An AEAD proposal may list INTEG NONE; it still matches a suite without integrity."""
    (gcm,) = parse_ike_suites("aes128gcm16-prfsha256-ecp256")
    offered = _ike(*gcm.transforms(), OfferedTransform(INTEG, 0), number=3)
    result = select_ike([offered], [gcm])
    assert result is not None and result[0].number == 3


def test_select_child_esn_and_pfs() -> None:
    """ESN absent means no ESN; an ESP proposal that requires PFS (no DH NONE) is skipped."""
    ours = parse_child_suites("aes128-sha256")
    no_esn = OfferedProposal(
        1, PROTO_ESP, b"abcd", (OfferedTransform(ENCR, 12, 128), OfferedTransform(INTEG, 12))
    )
    result = select_child([no_esn], ours, b"wxyz")
    assert result is not None and result[0].spi == b"wxyz"
    pfs = OfferedProposal(1, PROTO_ESP, b"abcd", (*ours[0].transforms(), OfferedTransform(DH, 19)))
    assert select_child([pfs], ours, b"wxyz") is None
    optional = OfferedProposal(
        2,
        PROTO_ESP,
        b"abcd",
        (*ours[0].transforms(), OfferedTransform(DH, 19), OfferedTransform(DH, 0)),
    )
    result = select_child([pfs, optional], ours, b"wxyz")
    assert result is not None and result[0].number == 2
    bad_spi = OfferedProposal(1, PROTO_ESP, b"abc", ours[0].transforms())
    assert select_child([bad_spi], ours, b"wxyz") is None
    both_esn = OfferedProposal(
        1,
        PROTO_ESP,
        b"abcd",
        (*ours[0].transforms()[:2], OfferedTransform(ESN, 1), OfferedTransform(ESN, 0)),
    )
    result = select_child([both_esn], ours, b"wxyz")
    assert result is not None and child_suite_from_proposal(result[0]) == ours[0]


def test_suite_from_answer_rejects_ambiguity() -> None:
    """An answer with two transforms of a type, or AEAD with integrity, is not a suite."""
    (suite,) = parse_ike_suites("aes128-sha256-x25519")
    doubled = _ike(*suite.transforms(), OfferedTransform(DH, 19))
    assert suite_from_proposal(doubled) is None
    gcm_with_integ = _ike(
        OfferedTransform(ENCR, 20, 128),
        OfferedTransform(INTEG, 12),
        OfferedTransform(PRF, 5),
        OfferedTransform(DH, 31),
    )
    assert suite_from_proposal(gcm_with_integ) is None
    unknown_group = _ike(*suite.transforms()[:3], OfferedTransform(DH, 2))
    assert suite_from_proposal(unknown_group) is None
    assert suite.dh == DhGroupId.CURVE25519


def test_traffic_selector_intersection() -> None:
    """Intersections narrow addresses, ports and protocol; disjoint selectors give None."""
    a = TrafficSelector(IPv4Address("10.0.0.0"), IPv4Address("10.0.255.255"), 0, 0, 65535)
    b = TrafficSelector(IPv4Address("10.0.1.0"), IPv4Address("10.9.0.0"), 6, 80, 443)
    assert intersect(a, b) == TrafficSelector(
        IPv4Address("10.0.1.0"), IPv4Address("10.0.255.255"), 6, 80, 443
    )
    assert covers(a, intersect(a, b))  # type: ignore[arg-type]
    assert not covers(b, a)
    udp = TrafficSelector(IPv4Address("10.0.0.0"), IPv4Address("10.0.0.1"), 17)
    assert intersect(b, udp) is None
    assert intersect(any_selector(4), any_selector(6)) is None
    far = selector_from_network("192.168.0.0/16")
    assert intersect(a, far) is None
    assert narrow([a, far], [selector_from_network("10.0.0.0/24")]) == (
        selector_from_network("10.0.0.0/24"),
    )


def test_split_keymat() -> None:
    """KEYMAT splits into encryption then integrity key, initiator's direction first."""
    suite = ChildSuite(EncryptionId.AES_CBC, 128, IntegrityId.HMAC_SHA2_256_128)
    keymat = bytes(range(96))
    assert split_keymat(keymat, suite) == (keymat[:16], keymat[16:48], keymat[48:64], keymat[64:96])
    gcm = ChildSuite(EncryptionId.AES_GCM_16, 256, None)
    assert split_keymat(bytes(72), gcm)[1] == b""


def test_identity_parsing() -> None:
    """Identities follow strongSwan's notation."""
    assert Identity.parse("192.0.2.1") == Identity(IdType.ID_IPV4_ADDR, bytes([192, 0, 2, 1]))
    assert Identity.parse("user@example.org").id_type == IdType.ID_RFC822_ADDR
    assert Identity.parse("@gw.example.org") == Identity(IdType.ID_FQDN, b"gw.example.org")
    assert Identity.parse("gw.example.org").id_type == IdType.ID_FQDN
    assert str(Identity.parse("2001:db8::1")) == "2001:db8::1"
    with pytest.raises(ValueError):
        Identity.parse("  ")


def test_psk_file() -> None:
    """Secrets files: per-identity keys, a default, quotes, hex, comments; errors name the line."""
    table = PskTable.parse(
        '# comment\nalice@test : "s3cret"\n@gw.example : 0x0102\n\n* : fallback\n'
    )
    assert table.lookup(Identity.parse("alice@test")) == b"s3cret"
    assert table.lookup(Identity.parse("@gw.example")) == b"\x01\x02"
    assert table.lookup(Identity.parse("bob@test")) == b"fallback"
    assert PskTable.parse("alice@test : x").lookup(Identity.parse("bob@test")) is None
    with pytest.raises(ValueError, match="line 2"):
        PskTable.parse("a@b : x\nno separator\n")
    with pytest.raises(ValueError, match="line 1"):
        PskTable.parse('a@b : ""')


def test_config_validation() -> None:
    """Nonsense configuration is refused."""
    with pytest.raises(ValueError):
        IkeConfig(Identity.parse("a@b"), PskTable(), childless="sometimes")
    with pytest.raises(ValueError):
        IkeConfig(Identity.parse("a@b"), PskTable(), ike_suites=())
    with pytest.raises(ValueError):
        IkeConfig(Identity.parse("a@b"), PskTable(), retransmit_tries=0)
