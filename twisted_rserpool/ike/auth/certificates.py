"""Certificates in IKE_AUTH (RFC 7296 sections 3.6, 3.7): our chain, the CAs we trust.

A peer's end-entity certificate and the intermediates it sent are verified against the CA
file with ``cryptography.x509.verification`` (path building, validity times, CA basic
constraints and key usage as the Web PKI profile has them; any end-entity extensions are
accepted since IKE certificates seldom carry the TLS extended key usages), and its IKE
identity must be in it: ID_FQDN as a dNSName, ID_RFC822_ADDR as an rfc822Name,
ID_IPV4_ADDR/ID_IPV6_ADDR as an iPAddress subjectAltName, ID_DER_ASN1_DN as the subject.
"""

from __future__ import annotations

import datetime
import hashlib
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    PublicFormat,
    load_pem_private_key,
)
from cryptography.x509 import verification

from twisted_rserpool.ike.auth.signature import PrivateKey
from twisted_rserpool.ike.config import Identity
from twisted_rserpool.ike.constants import IdType

__all__ = [
    "Credentials",
    "TrustAnchors",
    "identity_in_certificate",
    "identity_of_certificate",
    "load_certificates",
    "spki_sha1",
]


def load_certificates(data: bytes) -> list[x509.Certificate]:
    """Every certificate of a PEM file (or the one certificate of a DER file)."""
    if b"-----BEGIN" in data:
        return x509.load_pem_x509_certificates(data)
    return [x509.load_der_x509_certificate(data)]


def spki_sha1(certificate: x509.Certificate) -> bytes:
    """SHA-1 of the subjectPublicKeyInfo: a CA's entry in CERTREQ (RFC 7296 section 3.7)."""
    spki = certificate.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha1(spki).digest()


@dataclass(frozen=True)
class Credentials:
    """Our end-entity certificate, the intermediates sent after it, and its private key."""

    certificate: x509.Certificate
    private_key: PrivateKey
    intermediates: tuple[x509.Certificate, ...] = ()

    def __post_init__(self) -> None:
        ours = self.private_key.public_key().public_bytes(
            Encoding.DER, PublicFormat.SubjectPublicKeyInfo
        )
        theirs = self.certificate.public_key().public_bytes(
            Encoding.DER, PublicFormat.SubjectPublicKeyInfo
        )
        if ours != theirs:
            raise ValueError("the private key does not belong to the certificate")

    @classmethod
    def load(cls, certificate_pem: bytes, key_pem: bytes) -> Credentials:
        """From a PEM certificate file (end entity first, then intermediates) and a PEM key."""
        chain = load_certificates(certificate_pem)
        if not chain:
            raise ValueError("no certificate in the certificate file")
        key = load_pem_private_key(key_pem, password=None)
        if not isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
            raise ValueError("the private key must be RSA or ECDSA")
        return cls(chain[0], key, tuple(chain[1:]))

    @property
    def chain_der(self) -> tuple[bytes, ...]:
        """The certificates to send as CERT payloads, end entity first (DER)."""
        return tuple(c.public_bytes(Encoding.DER) for c in (self.certificate, *self.intermediates))


@dataclass(frozen=True)
class TrustAnchors:
    """The CA certificates that may issue our peers' certificates."""

    certificates: tuple[x509.Certificate, ...]

    def __post_init__(self) -> None:
        if not self.certificates:
            raise ValueError("no CA certificate")

    @classmethod
    def load(cls, pem: bytes) -> TrustAnchors:
        """From a PEM file of one or more CA certificates."""
        return cls(tuple(load_certificates(pem)))

    def certreq_data(self) -> bytes:
        """The Certification Authority field of our CERTREQ: concatenated SPKI SHA-1s."""
        return b"".join(spki_sha1(c) for c in self.certificates)

    def verify(
        self, end_entity: bytes, intermediates: Sequence[bytes], when: datetime.datetime
    ) -> x509.Certificate:
        """The verified end-entity certificate (DER in); raises ValueError saying why not."""
        try:
            leaf = x509.load_der_x509_certificate(end_entity)
            others = [x509.load_der_x509_certificate(c) for c in intermediates]
        except ValueError as e:
            raise ValueError(f"undecodable certificate: {e}") from None
        verifier = (
            verification.PolicyBuilder()
            .store(verification.Store(list(self.certificates)))
            .time(when)
            .extension_policies(
                ca_policy=verification.ExtensionPolicy.webpki_defaults_ca(),
                ee_policy=verification.ExtensionPolicy.permit_all(),
            )
            .build_client_verifier()
        )
        try:
            verifier.verify(leaf, others)
        except verification.VerificationError as e:
            raise ValueError(f"certificate of {leaf.subject.rfc4514_string()}: {e}") from None
        return leaf


def _alt_names(certificate: x509.Certificate) -> x509.SubjectAlternativeName | None:
    try:
        return certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return None


def identity_in_certificate(identity: Identity, certificate: x509.Certificate) -> bool:
    """Whether the IKE identity is the certificate's subject or one of its subjectAltNames."""
    if identity.id_type == IdType.ID_DER_ASN1_DN:
        return identity.data == certificate.subject.public_bytes()
    names = _alt_names(certificate)
    if names is None:
        return False
    if identity.id_type == IdType.ID_FQDN:
        wanted = identity.data.decode("ascii", "replace").lower().rstrip(".")
        return any(n.lower().rstrip(".") == wanted for n in names.get_values_for_type(x509.DNSName))
    if identity.id_type == IdType.ID_RFC822_ADDR:
        wanted = identity.data.decode("utf-8", "replace").lower()
        return any(n.lower() == wanted for n in names.get_values_for_type(x509.RFC822Name))
    if identity.id_type in (IdType.ID_IPV4_ADDR, IdType.ID_IPV6_ADDR):
        try:
            address = ipaddress.ip_address(identity.data)
        except ValueError:
            return False
        return address in names.get_values_for_type(x509.IPAddress)
    return False


def identity_of_certificate(certificate: x509.Certificate) -> Identity:
    """The identity a certificate proves best: its first dNSName, else its subject DN."""
    names = _alt_names(certificate)
    if names is not None:
        dns = names.get_values_for_type(x509.DNSName)
        if dns:
            return Identity(IdType.ID_FQDN, dns[0].encode("ascii"))
    return Identity(IdType.ID_DER_ASN1_DN, certificate.subject.public_bytes())
