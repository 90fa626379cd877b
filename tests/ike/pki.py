"""A throwaway PKI for IKE tests: a CA (optionally an intermediate) and end entities with
RSA or ECDSA keys, the subjectAltNames IKE identities are matched against, and any
validity window."""

from __future__ import annotations

import datetime
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
)
from cryptography.x509.oid import NameOID

from twisted_rserpool.ike.auth.certificates import Credentials, TrustAnchors
from twisted_rserpool.ike.auth.signature import PrivateKey

NOW = datetime.datetime.now(datetime.UTC)
_KEYS: dict[str, PrivateKey] = {}


def key(kind: str) -> PrivateKey:
    """A private key of ``kind`` (rsa2048, rsa3072, p256, p384, p521), cached per kind and
    name so the tests stay quick."""
    if kind not in _KEYS:
        _KEYS[kind] = _generate(kind.split(":", maxsplit=1)[0])
    return _KEYS[kind]


def _generate(kind: str) -> PrivateKey:
    if kind.startswith("rsa"):
        return rsa.generate_private_key(65537, int(kind[3:]))
    curves = {"p256": ec.SECP256R1(), "p384": ec.SECP384R1(), "p521": ec.SECP521R1()}
    return ec.generate_private_key(curves[kind])


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "twisted-rserpool tests"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _ca_extensions(builder: x509.CertificateBuilder, public: object) -> x509.CertificateBuilder:
    return (
        builder.add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)  # type: ignore[arg-type]
    )


@dataclass
class IkePki:
    """A CA that issues IKE certificates (``key_kind`` for its own key)."""

    name: str = "IKE test CA"
    key_kind: str = "p256"
    intermediate: bool = False
    ca_key: PrivateKey = field(init=False)
    ca: x509.Certificate = field(init=False)
    issuer_key: PrivateKey = field(init=False)
    issuer: x509.Certificate = field(init=False)

    def __post_init__(self) -> None:
        self.ca_key = key(f"{self.key_kind}:ca:{self.name}")
        builder = (
            x509.CertificateBuilder()
            .subject_name(_name(self.name))
            .issuer_name(_name(self.name))
            .public_key(self.ca_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(NOW - datetime.timedelta(days=1))
            .not_valid_after(NOW + datetime.timedelta(days=30))
        )
        self.ca = _ca_extensions(builder, self.ca_key.public_key()).sign(
            self.ca_key, hashes.SHA256()
        )
        self.issuer_key, self.issuer = self.ca_key, self.ca
        if self.intermediate:
            self.issuer_key = key(f"p256:intermediate:{self.name}")
            builder = (
                x509.CertificateBuilder()
                .subject_name(_name(self.name + " intermediate"))
                .issuer_name(self.ca.subject)
                .public_key(self.issuer_key.public_key())
                .serial_number(x509.random_serial_number())
                .not_valid_before(NOW - datetime.timedelta(days=1))
                .not_valid_after(NOW + datetime.timedelta(days=30))
                .add_extension(
                    x509.AuthorityKeyIdentifier.from_issuer_public_key(self.ca_key.public_key()),
                    critical=False,
                )
            )
            self.issuer = _ca_extensions(builder, self.issuer_key.public_key()).sign(
                self.ca_key, hashes.SHA256()
            )

    def trust(self) -> TrustAnchors:
        """The CA as trust anchors."""
        return TrustAnchors((self.ca,))

    def issue(
        self,
        common_name: str,
        *,
        dns: Sequence[str] = (),
        emails: Sequence[str] = (),
        ips: Sequence[str] = (),
        key_kind: str = "p256",
        not_before: datetime.datetime | None = None,
        not_after: datetime.datetime | None = None,
    ) -> Credentials:
        """An end-entity certificate and its key (the intermediate, if any, after it)."""
        private = key(f"{key_kind}:ee:{common_name}")
        names: list[x509.GeneralName] = [x509.DNSName(n) for n in dns]
        names += [x509.RFC822Name(e) for e in emails]
        names += [x509.IPAddress(ipaddress.ip_address(a)) for a in ips]
        builder = (
            x509.CertificateBuilder()
            .subject_name(_name(common_name))
            .issuer_name(self.issuer.subject)
            .public_key(private.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(not_before or NOW - datetime.timedelta(days=1))
            .not_valid_after(not_after or NOW + datetime.timedelta(days=10))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.issuer_key.public_key()),
                critical=False,
            )
        )
        if names:
            builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
        certificate = builder.sign(self.issuer_key, hashes.SHA256())
        chain = (self.issuer,) if self.intermediate else ()
        return Credentials(certificate, private, chain)

    def write(self, directory: Path, stem: str, credentials: Credentials) -> tuple[str, str]:
        """Write ``credentials`` as PEM files (certificate chain, key); returns their paths."""
        cert_path = directory / f"{stem}.pem"
        key_path = directory / f"{stem}.key"
        cert_path.write_bytes(
            b"".join(
                c.public_bytes(Encoding.PEM)
                for c in (credentials.certificate, *credentials.intermediates)
            )
        )
        key_path.write_bytes(
            credentials.private_key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
        )
        key_path.chmod(0o600)
        return str(cert_path), str(key_path)

    def write_ca(self, directory: Path, name: str = "ca.pem") -> str:
        """Write the CA certificate; returns its path."""
        path = directory / name
        path.write_bytes(self.ca.public_bytes(Encoding.PEM))
        return str(path)
