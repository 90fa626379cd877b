"""Signature AUTH data: RFC 7427 Digital Signature (method 14) and the classic methods.

Method 14's AUTH data is a one-octet length, an ASN.1 AlgorithmIdentifier (DER) and the
signature (RFC 7427 section 3; ECDSA signatures DER-encoded). The classic methods are 1
(RSA with PKCS#1 v1.5 and SHA-1, RFC 7296 section 3.8) and 9-11 (ECDSA with P-256/SHA-256,
P-384/SHA-384, P-521/SHA-512, signature ``r | s``, RFC 4754). We sign with method 14 when
the peer announced SIGNATURE_HASH_ALGORITHMS (RFC 7427 section 4), else with the classic
method of our key, and verify every one of them.
"""

from __future__ import annotations

from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)

from twisted_rserpool.ike.constants import AuthMethod

__all__ = [
    "HASH_SHA1",
    "HASH_SHA256",
    "HASH_SHA384",
    "HASH_SHA512",
    "OUR_HASHES",
    "SCHEMES",
    "AuthDataError",
    "PrivateKey",
    "PublicKey",
    "SignatureScheme",
    "decode_hash_algorithms",
    "decode_signature_data",
    "describe",
    "encode_hash_algorithms",
    "parse_algorithm",
    "sign",
    "verify",
]

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
PublicKey = rsa.RSAPublicKey | ec.EllipticCurvePublicKey

# Hash Algorithm Identifiers of SIGNATURE_HASH_ALGORITHMS (RFC 7427 section 7, IANA).
HASH_SHA1 = 1
HASH_SHA256 = 2
HASH_SHA384 = 3
HASH_SHA512 = 4
OUR_HASHES = (HASH_SHA256, HASH_SHA384, HASH_SHA512)
"""The hashes we announce: SHA-1 is left out (RFC 8247 says MUST NOT for signatures)."""

_HASHES: dict[int, type[hashes.HashAlgorithm]] = {
    HASH_SHA1: hashes.SHA1,
    HASH_SHA256: hashes.SHA256,
    HASH_SHA384: hashes.SHA384,
    HASH_SHA512: hashes.SHA512,
}


class AuthDataError(ValueError):
    """AUTH data, an AlgorithmIdentifier or a hash list that cannot be decoded."""


@dataclass(frozen=True)
class SignatureScheme:
    """A signature algorithm of RFC 7427: key kind, hash and (RSA) padding."""

    name: str
    kind: str
    """``"rsa"``, ``"rsa-pss"`` or ``"ecdsa"``."""
    hash_id: int
    algorithm_identifier: bytes
    """The DER AlgorithmIdentifier of RFC 7427 appendix A."""

    def hash(self) -> hashes.HashAlgorithm:
        """A fresh instance of the scheme's hash."""
        return _HASHES[self.hash_id]()


# --- a few DER octets -------------------------------------------------------------------


def _tlv(tag: int, body: bytes) -> bytes:
    n = len(body)
    if n < 0x80:
        return bytes((tag, n)) + body
    size = (n.bit_length() + 7) // 8
    return bytes((tag, 0x80 | size)) + n.to_bytes(size, "big") + body


def _read(data: bytes, offset: int) -> tuple[int, bytes, int]:
    """(tag, body, next offset) of the DER TLV at ``offset``."""
    if offset + 2 > len(data):
        raise AuthDataError("truncated DER")
    tag, first = data[offset], data[offset + 1]
    offset += 2
    if first & 0x80:
        size = first & 0x7F
        if size == 0 or size > 2 or offset + size > len(data):
            raise AuthDataError("bad DER length")
        length = int.from_bytes(data[offset : offset + size], "big")
        offset += size
    else:
        length = first
    if offset + length > len(data):
        raise AuthDataError("truncated DER")
    return tag, data[offset : offset + length], offset + length


_SEQUENCE, _OID, _NULL, _INTEGER = 0x30, 0x06, 0x05, 0x02

_OID_RSA = {
    HASH_SHA1: bytes.fromhex("2a864886f70d010105"),
    HASH_SHA256: bytes.fromhex("2a864886f70d01010b"),
    HASH_SHA384: bytes.fromhex("2a864886f70d01010c"),
    HASH_SHA512: bytes.fromhex("2a864886f70d01010d"),
}
_OID_ECDSA = {
    HASH_SHA1: bytes.fromhex("2a8648ce3d0401"),
    HASH_SHA256: bytes.fromhex("2a8648ce3d040302"),
    HASH_SHA384: bytes.fromhex("2a8648ce3d040303"),
    HASH_SHA512: bytes.fromhex("2a8648ce3d040304"),
}
_OID_PSS = bytes.fromhex("2a864886f70d01010a")
_OID_MGF1 = bytes.fromhex("2a864886f70d010108")
_OID_HASH = {
    HASH_SHA1: bytes.fromhex("2b0e03021a"),
    HASH_SHA256: bytes.fromhex("608648016503040201"),
    HASH_SHA384: bytes.fromhex("608648016503040202"),
    HASH_SHA512: bytes.fromhex("608648016503040203"),
}
_HASH_BY_OID = {oid: hash_id for hash_id, oid in _OID_HASH.items()}
_HASH_SIZE = {HASH_SHA1: 20, HASH_SHA256: 32, HASH_SHA384: 48, HASH_SHA512: 64}
_NAMES = {HASH_SHA1: "sha1", HASH_SHA256: "sha256", HASH_SHA384: "sha384", HASH_SHA512: "sha512"}


def _pss_identifier(hash_id: int) -> bytes:
    hash_algorithm = _tlv(_SEQUENCE, _tlv(_OID, _OID_HASH[hash_id]) + b"\x05\x00")
    params = (
        _tlv(0xA0, hash_algorithm)
        + _tlv(0xA1, _tlv(_SEQUENCE, _tlv(_OID, _OID_MGF1) + hash_algorithm))
        + _tlv(0xA2, _tlv(_INTEGER, bytes((_HASH_SIZE[hash_id],))))
        + _tlv(0xA3, _tlv(_INTEGER, b"\x01"))  # trailerField, as RFC 7427 A.4.3 writes it
    )
    return _tlv(_SEQUENCE, _tlv(_OID, _OID_PSS) + _tlv(_SEQUENCE, params))


def _schemes() -> dict[tuple[str, int], SignatureScheme]:
    found: dict[tuple[str, int], SignatureScheme] = {}
    for hash_id, name in _NAMES.items():
        found["rsa", hash_id] = SignatureScheme(
            f"{name}WithRSAEncryption",
            "rsa",
            hash_id,
            _tlv(_SEQUENCE, _tlv(_OID, _OID_RSA[hash_id]) + b"\x05\x00"),
        )
        found["ecdsa", hash_id] = SignatureScheme(
            f"ecdsa-with-{name}", "ecdsa", hash_id, _tlv(_SEQUENCE, _tlv(_OID, _OID_ECDSA[hash_id]))
        )
        found["rsa-pss", hash_id] = SignatureScheme(
            f"rsassa-pss-{name}", "rsa-pss", hash_id, _pss_identifier(hash_id)
        )
    return found


SCHEMES = _schemes()
"""Every scheme by (kind, hash ID)."""


def parse_algorithm(der: bytes) -> SignatureScheme:
    """The scheme of an AlgorithmIdentifier (RFC 7427 appendix A forms; PSS parameters read)."""
    tag, body, end = _read(der, 0)
    if tag != _SEQUENCE or end != len(der):
        raise AuthDataError("AlgorithmIdentifier is not one SEQUENCE")
    tag, oid, offset = _read(body, 0)
    if tag != _OID:
        raise AuthDataError("AlgorithmIdentifier lacks its OID")
    rest = body[offset:]
    for hash_id, known in _OID_RSA.items():
        if oid == known:
            if rest not in (b"", b"\x05\x00"):
                raise AuthDataError("RSA AlgorithmIdentifier with parameters")
            return SCHEMES["rsa", hash_id]
    for hash_id, known in _OID_ECDSA.items():
        if oid == known:
            if rest not in (b"", b"\x05\x00"):
                raise AuthDataError("ECDSA AlgorithmIdentifier with parameters")
            return SCHEMES["ecdsa", hash_id]
    if oid != _OID_PSS:
        raise AuthDataError(f"unsupported signature algorithm {oid.hex()}")
    return _parse_pss(rest)


def _hash_of(algorithm: bytes) -> int:
    tag, body, _ = _read(algorithm, 0)
    if tag != _SEQUENCE:
        raise AuthDataError("hash AlgorithmIdentifier is not a SEQUENCE")
    tag, oid, offset = _read(body, 0)
    if tag != _OID or oid not in _HASH_BY_OID or body[offset:] not in (b"", b"\x05\x00"):
        raise AuthDataError("unsupported PSS hash")
    return _HASH_BY_OID[oid]


def _parse_pss(params_der: bytes) -> SignatureScheme:
    tag, params, end = _read(params_der, 0)
    if tag != _SEQUENCE or end != len(params_der):
        raise AuthDataError("RSASSA-PSS needs its parameters")
    hash_id, mgf_hash, salt, trailer = HASH_SHA1, HASH_SHA1, 20, 1
    offset = 0
    while offset < len(params):
        tag, body, offset = _read(params, offset)
        if tag == 0xA0:
            hash_id = _hash_of(body)
        elif tag == 0xA1:
            inner_tag, mgf, _ = _read(body, 0)
            if inner_tag != _SEQUENCE:
                raise AuthDataError("bad maskGenAlgorithm")
            mgf_tag, mgf_oid, mgf_offset = _read(mgf, 0)
            if mgf_tag != _OID or mgf_oid != _OID_MGF1:
                raise AuthDataError("maskGenAlgorithm is not MGF1")
            mgf_hash = _hash_of(mgf[mgf_offset:])
        elif tag == 0xA2:
            int_tag, value, _ = _read(body, 0)
            if int_tag != _INTEGER or not value or len(value) > 2:
                raise AuthDataError("bad saltLength")
            salt = int.from_bytes(value, "big")
        elif tag == 0xA3:
            int_tag, value, _ = _read(body, 0)
            trailer = int.from_bytes(value, "big") if int_tag == _INTEGER else 0
        else:
            raise AuthDataError("unknown RSASSA-PSS parameter")
    if mgf_hash != hash_id or trailer != 1 or salt != _HASH_SIZE[hash_id]:
        # Other combinations exist, but no IKE implementation sends them.
        raise AuthDataError("RSASSA-PSS parameters other than MGF1 of the hash, salt = hash size")
    return SCHEMES["rsa-pss", hash_id]


def decode_signature_data(data: bytes) -> tuple[bytes, bytes]:
    """(AlgorithmIdentifier, signature) of method-14 AUTH data (RFC 7427 section 3)."""
    if not data:
        raise AuthDataError("empty Digital Signature AUTH data")
    length = data[0]
    if length == 0 or len(data) < 1 + length + 1:
        raise AuthDataError("truncated Digital Signature AUTH data")
    return data[1 : 1 + length], data[1 + length :]


def encode_hash_algorithms(hash_ids: tuple[int, ...] = OUR_HASHES) -> bytes:
    """The Notification Data of SIGNATURE_HASH_ALGORITHMS: 16-bit hash identifiers."""
    return b"".join(h.to_bytes(2, "big") for h in hash_ids)


def decode_hash_algorithms(data: bytes) -> frozenset[int]:
    """The hash identifiers a peer announced (unknown ones included)."""
    if len(data) % 2:
        raise AuthDataError("SIGNATURE_HASH_ALGORITHMS of odd length")
    return frozenset(int.from_bytes(data[i : i + 2], "big") for i in range(0, len(data), 2))


_CLASSIC_CURVES: dict[str, tuple[int, int, int]] = {
    # curve name: (AUTH method, hash ID, octets of r and of s)
    "secp256r1": (AuthMethod.ECDSA_SHA256_P256, HASH_SHA256, 32),
    "secp384r1": (AuthMethod.ECDSA_SHA384_P384, HASH_SHA384, 48),
    "secp521r1": (AuthMethod.ECDSA_SHA512_P521, HASH_SHA512, 66),
}
_CLASSIC_BY_METHOD = {method: (curve, h, n) for curve, (method, h, n) in _CLASSIC_CURVES.items()}


def _ecdsa_hash(key: ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey) -> int:
    size = key.curve.key_size
    return HASH_SHA256 if size <= 256 else HASH_SHA384 if size <= 384 else HASH_SHA512


def sign(
    key: PrivateKey, octets: bytes, peer_hashes: frozenset[int] | None, *, rsa_pss: bool = False
) -> tuple[int, bytes]:
    """(AUTH method, AUTH data) signing ``octets`` (the signed octets of RFC 7296 2.15).

    ``peer_hashes`` is what the peer announced in SIGNATURE_HASH_ALGORITHMS (None: nothing,
    so a classic method). Raises ValueError when no method fits the key and the peer.
    """
    if peer_hashes is None:
        if isinstance(key, rsa.RSAPrivateKey):
            return AuthMethod.RSA_DIGITAL_SIGNATURE, key.sign(
                octets, padding.PKCS1v15(), hashes.SHA1()
            )
        classic = _CLASSIC_CURVES.get(key.curve.name)
        if classic is None:
            raise ValueError(f"no classic AUTH method for curve {key.curve.name}")
        method, hash_id, size = classic
        r, s = decode_dss_signature(key.sign(octets, ec.ECDSA(_HASHES[hash_id]())))
        return method, r.to_bytes(size, "big") + s.to_bytes(size, "big")
    if isinstance(key, rsa.RSAPrivateKey):
        usable = [h for h in OUR_HASHES if h in peer_hashes]
        if not usable:
            raise ValueError("the peer announced none of SHA-256/384/512")
        scheme = SCHEMES["rsa-pss" if rsa_pss else "rsa", usable[0]]
        pad: padding.AsymmetricPadding = (
            padding.PSS(padding.MGF1(scheme.hash()), _HASH_SIZE[scheme.hash_id])
            if rsa_pss
            else padding.PKCS1v15()
        )
        signature = key.sign(octets, pad, scheme.hash())
    else:
        preferred = _ecdsa_hash(key)
        usable = [preferred] if preferred in peer_hashes else []
        usable += [h for h in OUR_HASHES if h in peer_hashes and h != preferred]
        if not usable:
            raise ValueError("the peer announced none of SHA-256/384/512")
        scheme = SCHEMES["ecdsa", usable[0]]
        signature = key.sign(octets, ec.ECDSA(scheme.hash()))
    identifier = scheme.algorithm_identifier
    return AuthMethod.DIGITAL_SIGNATURE, bytes((len(identifier),)) + identifier + signature


_CLASSIC_NAMES: dict[int, str] = {
    AuthMethod.RSA_DIGITAL_SIGNATURE: "RSA PKCS#1 v1.5 SHA-1 (method 1)",
    AuthMethod.ECDSA_SHA256_P256: "ECDSA P-256 SHA-256 (method 9)",
    AuthMethod.ECDSA_SHA384_P384: "ECDSA P-384 SHA-384 (method 10)",
    AuthMethod.ECDSA_SHA512_P521: "ECDSA P-521 SHA-512 (method 11)",
}


def describe(method: int, data: bytes) -> str:
    """The signature scheme of AUTH data, for log lines (``?`` when undecodable)."""
    if method in _CLASSIC_NAMES:
        return _CLASSIC_NAMES[method]
    try:
        return parse_algorithm(decode_signature_data(data)[0]).name
    except AuthDataError:
        return "?"


def verify(public_key: object, method: int, data: bytes, octets: bytes) -> str | None:
    """None when ``data`` is a valid signature of ``octets`` by ``public_key``, else why not."""
    try:
        if method == AuthMethod.RSA_DIGITAL_SIGNATURE:
            if not isinstance(public_key, rsa.RSAPublicKey):
                return "RSA signature from a non-RSA key"
            public_key.verify(data, octets, padding.PKCS1v15(), hashes.SHA1())
            return None
        if method in _CLASSIC_BY_METHOD:
            curve, hash_id, size = _CLASSIC_BY_METHOD[method]
            if not isinstance(public_key, ec.EllipticCurvePublicKey):
                return "ECDSA signature from a non-ECDSA key"
            if public_key.curve.name != curve:
                return f"AUTH method {method} with a {public_key.curve.name} key"
            if len(data) != 2 * size:
                return "ECDSA signature of the wrong length"
            der = encode_dss_signature(
                int.from_bytes(data[:size], "big"), int.from_bytes(data[size:], "big")
            )
            public_key.verify(der, octets, ec.ECDSA(_HASHES[hash_id]()))
            return None
        if method != AuthMethod.DIGITAL_SIGNATURE:
            return f"AUTH method {method} is not a signature"
        identifier, signature = decode_signature_data(data)
        scheme = parse_algorithm(identifier)
        if scheme.kind == "ecdsa":
            if not isinstance(public_key, ec.EllipticCurvePublicKey):
                return f"{scheme.name} signature from a non-ECDSA key"
            public_key.verify(signature, octets, ec.ECDSA(scheme.hash()))
        else:
            if not isinstance(public_key, rsa.RSAPublicKey):
                return f"{scheme.name} signature from a non-RSA key"
            pad: padding.AsymmetricPadding = (
                padding.PSS(padding.MGF1(scheme.hash()), _HASH_SIZE[scheme.hash_id])
                if scheme.kind == "rsa-pss"
                else padding.PKCS1v15()
            )
            public_key.verify(signature, octets, pad, scheme.hash())
        return None
    except InvalidSignature:
        return "signature does not verify"
    except AuthDataError as e:
        return str(e)
    except ValueError as e:  # a malformed DER ECDSA signature
        return f"malformed signature: {e}"
