"""Self-signed certificates for a first start (``twistd -n enrp`` with no options)."""

from __future__ import annotations

import datetime
import ipaddress
import os
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


def createSelfSignedCertificate(
    certificatePath: str | os.PathLike[str],
    privateKeyPath: str | os.PathLike[str],
    *,
    commonName: str = "localhost",
    dnsNames: tuple[str, ...] = ("localhost",),
    ipAddresses: tuple[str, ...] = ("127.0.0.1", "::1"),
    days: int = 825,
) -> x509.Certificate:
    """Write a new ECDSA P-256 key (mode 0600) and a self-signed certificate for it.

    The certificate names ``dnsNames`` and ``ipAddresses`` as subject alternative names, so
    clients that verify with service_identity accept it for those names when they trust
    the certificate itself (it is its own CA).
    """
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, commonName)])
    now = datetime.datetime.now(datetime.UTC)
    alternatives: list[x509.GeneralName] = [x509.DNSName(n) for n in dnsNames]
    alternatives += [x509.IPAddress(ipaddress.ip_address(a)) for a in ipAddresses]
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName(alternatives), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(key, hashes.SHA256())
    )
    keyBytes = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    descriptor = os.open(privateKeyPath, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "wb") as f:
        f.write(keyBytes)
    Path(certificatePath).write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    return certificate
