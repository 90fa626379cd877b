"""Certificate authentication in IKE_AUTH (RFC 7296 3.6-3.8, RFC 7427, RFC 4754) on the
in-memory pair: the gateway signs with RSA or ECDSA, clients sign too, every failure ends
in AUTHENTICATION_FAILED on both sides; the signature AUTH data and the certificate checks
on their own."""

from __future__ import annotations

import dataclasses
import datetime
import ipaddress
from collections.abc import Sequence

import pytest
from cryptography.hazmat.primitives.serialization import Encoding
from hypothesis import given
from hypothesis import strategies as st

from tests.ike.pki import NOW, IkePki, key
from tests.ike.test_sa import PSK, Pair, config, of
from tests.ike.test_sa_hostile import failure
from twisted_rserpool.ike.auth import signature
from twisted_rserpool.ike.auth.certificates import (
    Credentials,
    TrustAnchors,
    identity_in_certificate,
    identity_of_certificate,
    spki_sha1,
)
from twisted_rserpool.ike.config import Identity, IkeConfig, PskTable
from twisted_rserpool.ike.constants import AuthMethod, CertEncoding, IdType, NotifyType
from twisted_rserpool.ike.events import IkeSaEstablished
from twisted_rserpool.ike.payloads import (
    CertificateRequestPayload,
    Payload,
    decode_message,
)
from twisted_rserpool.ike.sa import IkeSa
from twisted_rserpool.ike.tasks import ike_init

PKI = IkePki()
OTHER = IkePki("another CA")


def gateway(credentials: Credentials | None = None, **kw: object) -> IkeConfig:
    creds = credentials or PKI.issue("gw", dns=["gw.test"])
    return config("@gw.test", credentials=creds, **kw)


def client(**kw: object) -> IkeConfig:
    kw.setdefault("trust", PKI.trust())
    kw.setdefault("peer_auth", "certificate")
    return config("client@test", **kw)


def established(events: list[object]) -> IkeSaEstablished:
    (up,) = of(events, IkeSaEstablished)  # type: ignore[arg-type]
    assert isinstance(up, IkeSaEstablished)
    return up


@pytest.mark.parametrize(
    ("kind", "scheme"),
    [
        ("p256", "ecdsa-with-sha256"),
        ("p384", "ecdsa-with-sha384"),
        ("p521", "ecdsa-with-sha512"),
        ("rsa2048", "sha256WithRSAEncryption"),
    ],
)
def test_gateway_certificate(kind: str, scheme: str) -> None:
    """A client with the CA file establishes with a gateway that signs with its RSA or ECDSA
    key (RFC 7427 method 14, as both announced SIGNATURE_HASH_ALGORITHMS) and sends its
    certificate because the client's CERTREQ asked; the client authenticates by PSK."""
    pair = Pair(gateway(PKI.issue("gw", dns=["gw.test"], key_kind=kind)), client())
    pair.establish()
    up = established(pair.cl_events)  # type: ignore[arg-type]
    assert up.peer_id == Identity.parse("@gw.test")
    assert up.authentication is not None
    assert up.authentication.startswith("certificate CN=gw,O=twisted-rserpool tests")
    assert scheme in up.authentication
    assert str(established(pair.gw_events).authentication).startswith("PSK")  # type: ignore[arg-type]
    (gw_sa,) = list(pair.gw)
    assert gw_sa.peer_certreq and gw_sa.peer_signature_hashes == frozenset(signature.OUR_HASHES)


def test_rsa_pss() -> None:
    """With rsa_pss an RSA key signs with RSASSA-PSS (RFC 7427 A.4.3 parameters)."""
    creds = PKI.issue("gw", dns=["gw.test"], key_kind="rsa2048")
    pair = Pair(gateway(creds, rsa_pss=True), client())
    pair.establish()
    assert "rsassa-pss-sha256" in str(established(pair.cl_events).authentication)  # type: ignore[arg-type]


def test_client_certificate_and_certreq() -> None:
    """The gateway demands client certificates: its IKE_SA_INIT response carries CERTREQ
    with the CA's SPKI SHA-1 (RFC 7296 3.7), the client sends its CERT and signs, and the
    gateway checks the chain and that IDi (an RFC 822 address) is in the certificate."""
    cl_creds = PKI.issue("client", emails=["client@test"], key_kind="rsa2048")
    gw = gateway(peer_auth="certificate", trust=PKI.trust(), psks=PskTable())
    pair = Pair(gw, client(credentials=cl_creds, psks=PskTable()))
    pair.establish()
    up = established(pair.gw_events)  # type: ignore[arg-type]
    assert up.peer_id == Identity.parse("client@test")
    assert "certificate CN=client,O=twisted-rserpool tests" in str(up.authentication)
    init_response = decode_message(pair.sent[1][1])
    (certreq,) = init_response.find_all(CertificateRequestPayload)
    assert certreq.encoding == CertEncoding.X509_SIGNATURE
    assert certreq.data == spki_sha1(PKI.ca)


def test_intermediate_ca_chain() -> None:
    """A certificate issued by an intermediate CA verifies when the intermediate is sent as
    a second CERT payload."""
    chained = IkePki("chained CA", intermediate=True)
    creds = chained.issue("gw", dns=["gw.test"])
    assert creds.intermediates
    pair = Pair(gateway(creds), client(trust=chained.trust()))
    pair.establish()
    assert "CN=gw" in str(established(pair.cl_events).authentication)  # type: ignore[arg-type]


def _both_failed(pair: Pair, reason: str) -> None:
    assert not of(pair.cl_events, IkeSaEstablished) and not of(pair.gw_events, IkeSaEstablished)
    failed = [failure(pair.cl_events), failure(pair.gw_events)]
    assert any(reason in f.reason for f in failed), [f.reason for f in failed]
    assert all(f.notify_type == NotifyType.AUTHENTICATION_FAILED for f in failed)
    assert not pair.cl_installer.installed and not pair.gw_installer.installed


def test_client_certificate_of_another_ca() -> None:
    pair = Pair(
        gateway(peer_auth="certificate", trust=PKI.trust()),
        client(credentials=OTHER.issue("client", emails=["client@test"])),
    )
    pair.establish()
    _both_failed(pair, "certificate of CN=client,O=twisted-rserpool tests")


def test_gateway_certificate_of_another_ca() -> None:
    """The client refuses a gateway whose certificate does not chain to its CA file."""
    pair = Pair(gateway(OTHER.issue("gw", dns=["gw.test"])), client())
    pair.establish()
    cl_failed = failure(pair.cl_events)
    assert "certificate of CN=gw,O=twisted-rserpool tests" in cl_failed.reason
    assert cl_failed.notify_type == NotifyType.AUTHENTICATION_FAILED
    assert not of(pair.cl_events, IkeSaEstablished) and not pair.cl_installer.installed


def test_identity_not_in_certificate() -> None:
    """IDi client@test, certificate for someone@else: refused (the key alone proves nothing)."""
    pair = Pair(
        gateway(peer_auth="certificate", trust=PKI.trust()),
        client(credentials=PKI.issue("client", emails=["someone@else"])),
    )
    pair.establish()
    _both_failed(pair, "identity client@test is not in the certificate")


@pytest.mark.parametrize(
    ("not_before", "not_after"),
    [
        (NOW - datetime.timedelta(days=10), NOW - datetime.timedelta(days=1)),
        (NOW + datetime.timedelta(days=1), NOW + datetime.timedelta(days=2)),
    ],
    ids=["expired", "not-yet-valid"],
)
def test_certificate_outside_its_validity(
    not_before: datetime.datetime, not_after: datetime.datetime
) -> None:
    creds = PKI.issue("client", emails=["client@test"], not_before=not_before, not_after=not_after)
    pair = Pair(gateway(peer_auth="certificate", trust=PKI.trust()), client(credentials=creds))
    pair.establish()
    _both_failed(pair, "certificate of")


def test_wall_time_decides_validity() -> None:
    """Validity is checked at ``wall_time()``: a gateway whose clock is 20 days ahead sees
    the client's 10-day certificate as expired."""
    later = (NOW + datetime.timedelta(days=20)).timestamp()
    pair = Pair(
        gateway(peer_auth="certificate", trust=PKI.trust(), wall_time=lambda: later),
        client(credentials=PKI.issue("client", emails=["client@test"])),
    )
    pair.establish()
    _both_failed(pair, "certificate of")


def test_no_certificate_sent() -> None:
    """A client whose certificate is never sent (send_cert never) is refused."""
    pair = Pair(
        gateway(peer_auth="certificate", trust=PKI.trust()),
        client(credentials=PKI.issue("client", emails=["client@test"]), send_cert="never"),
    )
    pair.establish()
    _both_failed(pair, "sent no X.509 certificate")


def test_psk_where_a_certificate_is_demanded() -> None:
    pair = Pair(gateway(peer_auth="certificate", trust=PKI.trust()), client())
    pair.establish()
    _both_failed(pair, "must authenticate with a certificate")


def test_key_not_of_the_certificate() -> None:
    """Credentials refuse a key that is not the certificate's; a gateway signing with another
    key anyway (forced here) is refused by the client: the signature does not verify."""
    creds = PKI.issue("gw", dns=["gw.test"])
    with pytest.raises(ValueError, match="does not belong"):
        dataclasses.replace(creds, private_key=key("p256:other"))
    forged = object.__new__(Credentials)
    for name, value in (
        ("certificate", creds.certificate),
        ("private_key", key("p256:other")),
        ("intermediates", ()),
    ):
        object.__setattr__(forged, name, value)
    pair = Pair(gateway(forged), client())
    pair.establish()
    assert "AUTH of gw.test: signature does not verify" in failure(pair.cl_events).reason
    assert not of(pair.cl_events, IkeSaEstablished)


def test_cert_sent_only_when_asked() -> None:
    """send_cert 'ifasked': a gateway that verifies no certificates sends no CERTREQ, so the
    client's IKE_AUTH carries no CERT; with 'always' it does (either way the PSK gateway
    refuses the signature)."""
    certificate_octets = len(
        PKI.issue("client", emails=["client@test"]).certificate.public_bytes(Encoding.DER)
    )
    sizes = {}
    for send_cert in ("ifasked", "always"):
        creds = PKI.issue("client", emails=["client@test"])
        pair = Pair(config("gw@test"), client(credentials=creds, send_cert=send_cert))
        pair.establish()
        assert "cannot verify AUTH method 9 of client@test" in failure(pair.gw_events).reason
        # The IKE_AUTH request (maybe in RFC 7383 fragments): what the client sent after INIT.
        sizes[send_cert] = sum(len(d) for name, d in pair.sent[1:] if name == "cl")
    assert sizes["always"] - sizes["ifasked"] >= certificate_octets


def test_classic_methods_when_the_peer_announces_no_hashes() -> None:
    """Without SIGNATURE_HASH_ALGORITHMS from the peer we sign with methods 1 and 9-11."""
    octets = b"signed octets"
    for kind, method in (
        ("rsa2048", AuthMethod.RSA_DIGITAL_SIGNATURE),
        ("p256", AuthMethod.ECDSA_SHA256_P256),
        ("p384", AuthMethod.ECDSA_SHA384_P384),
        ("p521", AuthMethod.ECDSA_SHA512_P521),
    ):
        private = key(kind)
        got, data = signature.sign(private, octets, None)
        assert got == method
        assert signature.verify(private.public_key(), got, data, octets) is None
        assert signature.verify(private.public_key(), got, data, octets + b"x") is not None
        if method != AuthMethod.RSA_DIGITAL_SIGNATURE:
            assert signature.verify(private.public_key(), got, data[:-1], octets) is not None


@pytest.mark.parametrize("scheme", sorted(signature.SCHEMES), ids=str)
def test_every_method_14_scheme(scheme: tuple[str, int]) -> None:
    """Every AlgorithmIdentifier we know verifies, parses back to itself, and refuses a key
    of the other kind."""
    kind, hash_id = scheme
    known = signature.SCHEMES[scheme]
    assert signature.parse_algorithm(known.algorithm_identifier) == known
    rsa_key, ec_key = key("rsa2048"), key("p256")
    peer = frozenset({hash_id})
    octets = b"octets"
    if hash_id == signature.HASH_SHA1:
        return  # we never sign with SHA-1 (RFC 8247), we only parse it
    if kind == "ecdsa":
        method, data = signature.sign(ec_key, octets, peer)
        right, wrong = ec_key.public_key(), rsa_key.public_key()
    else:
        method, data = signature.sign(rsa_key, octets, peer, rsa_pss=kind == "rsa-pss")
        right, wrong = rsa_key.public_key(), ec_key.public_key()
    assert method == AuthMethod.DIGITAL_SIGNATURE
    assert signature.decode_signature_data(data)[0] == known.algorithm_identifier
    assert signature.verify(right, method, data, octets) is None
    assert signature.verify(wrong, method, data, octets) is not None


def test_rfc7427_identifiers() -> None:
    """The AlgorithmIdentifiers of RFC 7427 appendix A, octet for octet."""
    assert signature.SCHEMES["rsa", 2].algorithm_identifier.hex() == (
        "300d06092a864886f70d01010b0500"
    )
    assert signature.SCHEMES["ecdsa", 3].algorithm_identifier.hex() == "300a06082a8648ce3d040303"
    assert signature.SCHEMES["rsa-pss", 2].algorithm_identifier == bytes.fromhex(
        "3046 0609 2a86 4886 f70d 0101 0a30 39a0 0f30 0d06 0960 8648 0165 0304 0201 0500"
        "a11c 301a 0609 2a86 4886 f70d 0101 0830 0d06 0960 8648 0165 0304 0201 0500 a203"
        "0201 20a3 0302 0101"
    )
    # A.4.2, default parameters: SHA-1, parsed (never used for signing).
    default = bytes.fromhex(
        "303e06092a864886f70d01010a3031a00b300906052b0e03021a0500a118301606092a864886f70d"
        "010108300906052b0e03021a0500a203020114a303020101"
    )
    assert signature.parse_algorithm(default) == signature.SCHEMES["rsa-pss", 1]


@pytest.mark.parametrize(
    ("identity", "found"),
    [
        (Identity.parse("@gw.test"), True),
        (Identity.parse("GW.Test"), True),
        (Identity.parse("@other.test"), False),
        (Identity.parse("admin@gw.test"), True),
        (Identity.parse("root@gw.test"), False),
        (Identity.parse("192.0.2.7"), True),
        (Identity.parse("2001:db8::7"), True),
        (Identity.parse("192.0.2.8"), False),
        (Identity(IdType.ID_KEY_ID, b"gw"), False),
    ],
    ids=str,
)
def test_identity_in_certificate(identity: Identity, found: bool) -> None:
    creds = PKI.issue(
        "gw", dns=["gw.test"], emails=["admin@gw.test"], ips=["192.0.2.7", "2001:db8::7"]
    )
    assert identity_in_certificate(identity, creds.certificate) is found


def test_identity_by_subject_dn() -> None:
    creds = PKI.issue("gw")
    dn = Identity(IdType.ID_DER_ASN1_DN, creds.certificate.subject.public_bytes())
    assert identity_in_certificate(dn, creds.certificate)
    assert identity_of_certificate(creds.certificate) == dn
    assert not identity_in_certificate(
        Identity(IdType.ID_DER_ASN1_DN, PKI.ca.subject.public_bytes()), creds.certificate
    )
    assert identity_of_certificate(PKI.issue("x", dns=["x.test"]).certificate) == Identity.parse(
        "@x.test"
    )
    assert ipaddress.ip_address("192.0.2.1")  # the module is used for SAN building above


def test_distinguished_name_identity_end_to_end() -> None:
    """A client identified by ID_DER_ASN1_DN (its certificate's subject, no SAN at all)."""
    creds = PKI.issue("dn client")
    dn = identity_of_certificate(creds.certificate)
    pair = Pair(
        gateway(peer_auth="certificate", trust=PKI.trust()),
        IkeConfig(dn, PSK, credentials=creds, trust=PKI.trust(), peer_auth="certificate"),
    )
    pair.establish()
    assert established(pair.gw_events).peer_id == dn  # type: ignore[arg-type]


def test_trust_anchors_load_and_refuse_garbage() -> None:
    pem = PKI.ca.public_bytes(Encoding.PEM) + OTHER.ca.public_bytes(Encoding.PEM)
    anchors = TrustAnchors.load(pem)
    assert anchors.certreq_data() == spki_sha1(PKI.ca) + spki_sha1(OTHER.ca)
    with pytest.raises(ValueError, match="undecodable"):
        anchors.verify(b"\x30\x03\x02\x01\x01", [], NOW)


@given(st.binary(max_size=300))
def test_signature_data_decoders_never_crash(data: bytes) -> None:
    """Any AUTH data: decoded, or AuthDataError; verification answers a reason, never raises."""
    try:
        identifier, _ = signature.decode_signature_data(data)
        signature.parse_algorithm(identifier)
    except signature.AuthDataError:
        pass
    for method in (1, 9, 10, 11, 14):
        assert signature.verify(key("p256").public_key(), method, data, b"o") is not None
    try:
        signature.decode_hash_algorithms(data)
    except signature.AuthDataError:
        assert len(data) % 2


@given(
    st.sampled_from(sorted(signature.SCHEMES)),
    st.integers(min_value=0, max_value=80),
    st.binary(min_size=1, max_size=4),
)
def test_mangled_algorithm_identifiers(scheme: tuple[str, int], position: int, junk: bytes) -> None:
    """Known AlgorithmIdentifiers with octets replaced: parsed to some scheme or refused."""
    der = bytearray(signature.SCHEMES[scheme].algorithm_identifier)
    position %= len(der)
    der[position : position + len(junk)] = junk
    try:
        parsed = signature.parse_algorithm(bytes(der))
    except signature.AuthDataError:
        return
    assert parsed in signature.SCHEMES.values()


@pytest.mark.parametrize(
    ("kind", "scheme"),
    [
        ("rsa2048", "RSA PKCS#1 v1.5 SHA-1 (method 1)"),
        ("p256", "ECDSA P-256 SHA-256 (method 9)"),
        ("p384", "ECDSA P-384 SHA-384 (method 10)"),
        ("p521", "ECDSA P-521 SHA-512 (method 11)"),
    ],
)
def test_classic_methods_end_to_end(
    kind: str, scheme: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A client that announces no SIGNATURE_HASH_ALGORITHMS (as older clients do): both
    sides sign with the classic method of their key and verify the other's."""
    offer = ike_init.offer_signatures

    def silent_client(sa: IkeSa, peer: Sequence[Payload] | None) -> list[Payload]:
        ours = offer(sa, peer)
        return [] if sa.initiator else ours

    monkeypatch.setattr(ike_init, "offer_signatures", silent_client)
    gw_creds = PKI.issue("gw", dns=["gw.test"], key_kind=kind)
    cl_creds = PKI.issue("client", emails=["client@test"], key_kind=kind)
    pair = Pair(
        gateway(gw_creds, peer_auth="certificate", trust=PKI.trust()),
        client(credentials=cl_creds),
    )
    pair.establish()
    assert scheme in str(established(pair.cl_events).authentication)  # type: ignore[arg-type]
    assert scheme in str(established(pair.gw_events).authentication)  # type: ignore[arg-type]


@given(st.binary(max_size=400), st.lists(st.binary(max_size=100), max_size=3))
def test_certificate_chains_from_the_wire_never_crash(leaf: bytes, others: list[bytes]) -> None:
    """Whatever a peer puts in its CERT payloads, verification ends in ValueError."""
    with pytest.raises(ValueError, match="certificate"):
        PKI.trust().verify(leaf, others, NOW)
