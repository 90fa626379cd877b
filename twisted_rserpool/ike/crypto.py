"""IKEv2 cryptographic transforms (RFC 7296 sections 2.13-2.15, 3.14; RFC 5282; RFC 5903;
RFC 7634; RFC 3526; RFC 4868; RFC 2404).

Pure functions and small value objects over ``cryptography``: Diffie-Hellman groups 14, 15
and 16 (MODP 2048, 3072, 4096), 19, 20 and 21 (ECP 256, 384, 521) and 31 (Curve25519); the
HMAC-SHA2 PRFs and integrity transforms, and HMAC-SHA1 (PRF_HMAC_SHA1, AUTH_HMAC_SHA1_96)
as legacy algorithms; AES-CBC, AES-GCM with a 16-octet ICV and ChaCha20-Poly1305; SKEYSEED
and prf+, the SK payload (encryption, integrity check, decryption), the PSK AUTH value, NAT
detection hashes and the stateless cookie of section 2.6. Nothing here keeps state between
calls or touches the network.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import ipaddress
import os
import struct
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from enum import IntEnum
from typing import Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.asymmetric import dh, ec, x25519
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305

__all__ = [
    "DH_GROUPS",
    "ENCRYPTION_ALGORITHMS",
    "INTEGRITY_ALGORITHMS",
    "PRF_ALGORITHMS",
    "CryptoError",
    "DhGroup",
    "DhGroupId",
    "DhPrivateKey",
    "Encryption",
    "EncryptionId",
    "IcvMismatchError",
    "IkeKeys",
    "Integrity",
    "IntegrityId",
    "InvalidPublicValueError",
    "Prf",
    "PrfId",
    "SkCipher",
    "UnsupportedTransformError",
    "aead_open",
    "aead_seal",
    "aes_gcm_open",
    "aes_gcm_seal",
    "cookie_value",
    "derive_child_keymat",
    "derive_ike_keys",
    "derive_ike_keys_from_skeyseed",
    "encryption",
    "nat_detection_hash",
    "psk_auth",
    "signed_octets",
]


class CryptoError(Exception):
    """A cryptographic operation rejected its input."""


class UnsupportedTransformError(CryptoError):
    """A transform ID (or key length) we do not implement."""


class InvalidPublicValueError(CryptoError):
    """A peer's Diffie-Hellman public value is not a valid group element."""


class IcvMismatchError(CryptoError):
    """An SK payload whose integrity check value (or AEAD tag) does not verify."""


class DhGroupId(IntEnum):
    """Transform type 4 IDs we implement (IANA IKEv2 registry)."""

    MODP_2048 = 14
    MODP_3072 = 15
    MODP_4096 = 16
    ECP_256 = 19
    ECP_384 = 20
    ECP_521 = 21
    CURVE25519 = 31


class PrfId(IntEnum):
    """Transform type 2 IDs we implement (HMAC_SHA1 is legacy: RFC 8247 MUST-)."""

    HMAC_SHA1 = 2
    HMAC_SHA2_256 = 5
    HMAC_SHA2_384 = 6
    HMAC_SHA2_512 = 7


class IntegrityId(IntEnum):
    """Transform type 3 IDs we implement (HMAC_SHA1_96 is legacy: RFC 8247 MUST-)."""

    NONE = 0
    HMAC_SHA1_96 = 2
    HMAC_SHA2_256_128 = 12
    HMAC_SHA2_384_192 = 13
    HMAC_SHA2_512_256 = 14


class EncryptionId(IntEnum):
    """Transform type 1 IDs we implement."""

    AES_CBC = 12
    AES_GCM_16 = 20
    CHACHA20_POLY1305 = 28


# RFC 3526 section 3: the 2048-bit MODP group, generator 2.
_MODP_2048_P = int(
    "FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD129024E088A67CC74"
    "020BBEA63B139B22514A08798E3404DDEF9519B3CD3A431B302B0A6DF25F1437"
    "4FE1356D6D51C245E485B576625E7EC6F44C42E9A637ED6B0BFF5CB6F406B7ED"
    "EE386BFB5A899FA5AE9F24117C4B1FE649286651ECE45B3DC2007CB8A163BF05"
    "98DA48361C55D39A69163FA8FD24CF5F83655D23DCA3AD961C62F356208552BB"
    "9ED529077096966D670C354E4ABC9804F1746C08CA18217C32905E462E36CE3B"
    "E39E772C180E86039B2783A2EC07A28FB5C55DF06F4C52C9DE2BCBF695581718"
    "3995497CEA956AE515D2261898FA051015728E5A8AACAA68FFFFFFFFFFFFFFFF",
    16,
)
# RFC 3526 section 4: the 3072-bit MODP group, generator 2.
_MODP_3072_P = int(
    "FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD129024E088A67CC74"
    "020BBEA63B139B22514A08798E3404DDEF9519B3CD3A431B302B0A6DF25F1437"
    "4FE1356D6D51C245E485B576625E7EC6F44C42E9A637ED6B0BFF5CB6F406B7ED"
    "EE386BFB5A899FA5AE9F24117C4B1FE649286651ECE45B3DC2007CB8A163BF05"
    "98DA48361C55D39A69163FA8FD24CF5F83655D23DCA3AD961C62F356208552BB"
    "9ED529077096966D670C354E4ABC9804F1746C08CA18217C32905E462E36CE3B"
    "E39E772C180E86039B2783A2EC07A28FB5C55DF06F4C52C9DE2BCBF695581718"
    "3995497CEA956AE515D2261898FA051015728E5A8AAAC42DAD33170D04507A33"
    "A85521ABDF1CBA64ECFB850458DBEF0A8AEA71575D060C7DB3970F85A6E1E4C7"
    "ABF5AE8CDB0933D71E8C94E04A25619DCEE3D2261AD2EE6BF12FFA06D98A0864"
    "D87602733EC86A64521F2B18177B200CBBE117577A615D6C770988C0BAD946E2"
    "08E24FA074E5AB3143DB5BFCE0FD108E4B82D120A93AD2CAFFFFFFFFFFFFFFFF",
    16,
)
# RFC 3526 section 5: the 4096-bit MODP group, generator 2.
_MODP_4096_P = int(
    "FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD129024E088A67CC74"
    "020BBEA63B139B22514A08798E3404DDEF9519B3CD3A431B302B0A6DF25F1437"
    "4FE1356D6D51C245E485B576625E7EC6F44C42E9A637ED6B0BFF5CB6F406B7ED"
    "EE386BFB5A899FA5AE9F24117C4B1FE649286651ECE45B3DC2007CB8A163BF05"
    "98DA48361C55D39A69163FA8FD24CF5F83655D23DCA3AD961C62F356208552BB"
    "9ED529077096966D670C354E4ABC9804F1746C08CA18217C32905E462E36CE3B"
    "E39E772C180E86039B2783A2EC07A28FB5C55DF06F4C52C9DE2BCBF695581718"
    "3995497CEA956AE515D2261898FA051015728E5A8AAAC42DAD33170D04507A33"
    "A85521ABDF1CBA64ECFB850458DBEF0A8AEA71575D060C7DB3970F85A6E1E4C7"
    "ABF5AE8CDB0933D71E8C94E04A25619DCEE3D2261AD2EE6BF12FFA06D98A0864"
    "D87602733EC86A64521F2B18177B200CBBE117577A615D6C770988C0BAD946E2"
    "08E24FA074E5AB3143DB5BFCE0FD108E4B82D120A92108011A723C12A787E6D7"
    "88719A10BDBA5B2699C327186AF4E23C1A946834B6150BDA2583E9CA2AD44CE8"
    "DBBBC2DB04DE8EF92E8EFC141FBECAA6287C59474E6BC05D99B2964FA090C3A2"
    "233BA186515BE7ED1F612970CEE2D7AFB81BDD762170481CD0069127D5B05AA9"
    "93B4EA988D8FDDC186FFB7DC90A6C08F4DF435C934063199FFFFFFFFFFFFFFFF",
    16,
)


class DhPrivateKey(Protocol):
    """One ephemeral Diffie-Hellman key pair of a group."""

    @property
    def public_value(self) -> bytes:
        """The KE payload's Key Exchange Data."""
        ...

    def shared_secret(self, peer_public_value: bytes) -> bytes:
        """g^ir as RFC 7296 and RFC 5903 encode it; raises InvalidPublicValueError."""
        ...


class _ModpKey:
    def __init__(self, parameters: dh.DHParameters, private: int | None = None) -> None:
        numbers = parameters.parameter_numbers()
        self._numbers = numbers
        self._size = (numbers.p.bit_length() + 7) // 8
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # FFDH deprecation, see _modp_parameters
            if private is None:
                self._key = parameters.generate_private_key()
            else:
                public = dh.DHPublicNumbers(pow(numbers.g, private, numbers.p), numbers)
                self._key = dh.DHPrivateNumbers(private, public).private_key()
        y = self._key.public_key().public_numbers().y
        self.public_value = y.to_bytes(self._size, "big")

    def shared_secret(self, peer_public_value: bytes) -> bytes:
        if len(peer_public_value) != self._size:
            raise InvalidPublicValueError(f"MODP public value of {len(peer_public_value)} octets")
        y = int.from_bytes(peer_public_value, "big")
        if not 1 < y < self._numbers.p - 1:
            raise InvalidPublicValueError("MODP public value out of range")
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # FFDH deprecation, see _modp_parameters
                peer = dh.DHPublicNumbers(y, self._numbers).public_key()
            secret = self._key.exchange(peer)
        except ValueError as e:
            raise InvalidPublicValueError(str(e)) from e
        return secret.rjust(self._size, b"\x00")


class _EcpKey:
    def __init__(self, curve: ec.EllipticCurve, private: int | None = None) -> None:
        self._curve = curve
        self._size = (curve.key_size + 7) // 8
        if private is None:
            self._key = ec.generate_private_key(curve)
        else:
            self._key = ec.derive_private_key(private, curve)
        numbers = self._key.public_key().public_numbers()
        size = self._size
        self.public_value = numbers.x.to_bytes(size, "big") + numbers.y.to_bytes(size, "big")

    def shared_secret(self, peer_public_value: bytes) -> bytes:
        if len(peer_public_value) != 2 * self._size:
            raise InvalidPublicValueError(f"ECP public value of {len(peer_public_value)} octets")
        try:
            peer = ec.EllipticCurvePublicKey.from_encoded_point(
                self._curve, b"\x04" + peer_public_value
            )
            return self._key.exchange(ec.ECDH(), peer).rjust(self._size, b"\x00")
        except ValueError as e:
            raise InvalidPublicValueError(str(e)) from e


class _X25519Key:
    def __init__(self, private: bytes | None = None) -> None:
        if private is None:
            self._key = x25519.X25519PrivateKey.generate()
        else:
            self._key = x25519.X25519PrivateKey.from_private_bytes(private)
        self.public_value = self._key.public_key().public_bytes_raw()

    def shared_secret(self, peer_public_value: bytes) -> bytes:
        if len(peer_public_value) != 32:
            raise InvalidPublicValueError(
                f"Curve25519 public value of {len(peer_public_value)} octets"
            )
        try:
            peer = x25519.X25519PublicKey.from_public_bytes(peer_public_value)
            secret = self._key.exchange(peer)
        except ValueError as e:  # all-zero result (small-order point)
            raise InvalidPublicValueError(str(e)) from e
        return secret


@dataclass(frozen=True)
class DhGroup:
    """A Diffie-Hellman group: its ID, the length of its public value, and key generation.

    ``_factory`` takes None for a fresh random key, or the private value as octets (an
    exponent or scalar in network byte order; the raw key for Curve25519).
    """

    id: DhGroupId
    public_value_length: int
    _factory: Callable[[bytes | None], DhPrivateKey]

    def generate(self) -> DhPrivateKey:
        """A fresh ephemeral key pair."""
        return self._factory(None)

    def load(self, private_value: bytes) -> DhPrivateKey:
        """The key pair of a given private value (known-answer tests, deterministic replay)."""
        return self._factory(private_value)


def _modp_parameters(p: int) -> dh.DHParameters:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # cryptography deprecates FFDH; IKEv2 still needs it
        return dh.DHParameterNumbers(p, 2).parameters()


def _modp(p: int) -> Callable[[bytes | None], DhPrivateKey]:
    parameters = _modp_parameters(p)

    def factory(private: bytes | None) -> DhPrivateKey:
        return _ModpKey(parameters, None if private is None else int.from_bytes(private, "big"))

    return factory


def _ecp(curve: ec.EllipticCurve) -> Callable[[bytes | None], DhPrivateKey]:
    def factory(private: bytes | None) -> DhPrivateKey:
        return _EcpKey(curve, None if private is None else int.from_bytes(private, "big"))

    return factory


DH_GROUPS: dict[int, DhGroup] = {
    DhGroupId.MODP_2048: DhGroup(DhGroupId.MODP_2048, 256, _modp(_MODP_2048_P)),
    DhGroupId.MODP_3072: DhGroup(DhGroupId.MODP_3072, 384, _modp(_MODP_3072_P)),
    DhGroupId.MODP_4096: DhGroup(DhGroupId.MODP_4096, 512, _modp(_MODP_4096_P)),
    DhGroupId.ECP_256: DhGroup(DhGroupId.ECP_256, 64, _ecp(ec.SECP256R1())),
    DhGroupId.ECP_384: DhGroup(DhGroupId.ECP_384, 96, _ecp(ec.SECP384R1())),
    DhGroupId.ECP_521: DhGroup(DhGroupId.ECP_521, 132, _ecp(ec.SECP521R1())),
    DhGroupId.CURVE25519: DhGroup(DhGroupId.CURVE25519, 32, _X25519Key),
}


@dataclass(frozen=True)
class Prf:
    """An HMAC pseudorandom function; ``key_length`` is its preferred key size."""

    id: PrfId
    hash_name: str
    key_length: int

    def __call__(self, key: bytes, data: bytes) -> bytes:
        """prf(key, data)."""
        return hmac.digest(key, data, self.hash_name)

    def plus(self, key: bytes, seed: bytes, length: int) -> bytes:
        """prf+ (RFC 7296 section 2.13): ``length`` octets of T1 | T2 | ...."""
        if length > 255 * self.key_length:
            raise CryptoError("prf+ cannot produce more than 255 blocks")
        out = bytearray()
        block = b""
        counter = 1
        while len(out) < length:
            block = hmac.digest(key, block + seed + bytes([counter]), self.hash_name)
            out += block
            counter += 1
        return bytes(out[:length])


PRF_ALGORITHMS: dict[int, Prf] = {
    PrfId.HMAC_SHA1: Prf(PrfId.HMAC_SHA1, "sha1", 20),
    PrfId.HMAC_SHA2_256: Prf(PrfId.HMAC_SHA2_256, "sha256", 32),
    PrfId.HMAC_SHA2_384: Prf(PrfId.HMAC_SHA2_384, "sha384", 48),
    PrfId.HMAC_SHA2_512: Prf(PrfId.HMAC_SHA2_512, "sha512", 64),
}


@dataclass(frozen=True)
class Integrity:
    """A truncated HMAC integrity transform (RFC 4868 for SHA-2, RFC 2404 for SHA-1)."""

    id: IntegrityId
    hash_name: str
    key_length: int
    icv_length: int

    def compute(self, key: bytes, data: bytes) -> bytes:
        """The truncated ICV of ``data``."""
        return hmac.digest(key, data, self.hash_name)[: self.icv_length]

    def verify(self, key: bytes, data: bytes, icv: bytes) -> bool:
        """Whether ``icv`` is the ICV of ``data`` (constant time)."""
        return hmac.compare_digest(self.compute(key, data), icv)


INTEGRITY_ALGORITHMS: dict[int, Integrity] = {
    IntegrityId.HMAC_SHA1_96: Integrity(IntegrityId.HMAC_SHA1_96, "sha1", 20, 12),
    IntegrityId.HMAC_SHA2_256_128: Integrity(IntegrityId.HMAC_SHA2_256_128, "sha256", 32, 16),
    IntegrityId.HMAC_SHA2_384_192: Integrity(IntegrityId.HMAC_SHA2_384_192, "sha384", 48, 24),
    IntegrityId.HMAC_SHA2_512_256: Integrity(IntegrityId.HMAC_SHA2_512_256, "sha512", 64, 32),
}


@dataclass(frozen=True)
class Encryption:
    """An encryption transform with a fixed key size in bits.

    ``key_material_length`` counts the octets taken from prf+: for the AEAD ciphers the key
    plus the 4-octet salt (RFC 5282 section 7.1, RFC 7634 section 3).
    """

    id: EncryptionId
    key_bits: int

    @property
    def aead(self) -> bool:
        """Whether this is a combined-mode cipher (no separate integrity transform)."""
        return self.id in (EncryptionId.AES_GCM_16, EncryptionId.CHACHA20_POLY1305)

    @property
    def key_length_attribute(self) -> int | None:
        """The Key Length attribute of its transform: AES has one, ChaCha20-Poly1305 none."""
        return None if self.id == EncryptionId.CHACHA20_POLY1305 else self.key_bits

    @property
    def key_material_length(self) -> int:
        """Octets of keying material for one direction."""
        return self.key_bits // 8 + (4 if self.aead else 0)

    @property
    def iv_length(self) -> int:
        """Length of the IV in the SK payload."""
        return 8 if self.aead else 16


def encryption(transform_id: int, key_bits: int | None) -> Encryption:
    """The Encryption for a transform ID and key size; raises UnsupportedTransformError.

    AES takes 128 or 256; ChaCha20-Poly1305 has a fixed 256-bit key and takes None or 256.
    """
    if transform_id == EncryptionId.CHACHA20_POLY1305:
        if key_bits not in (None, 256):
            raise UnsupportedTransformError(f"key length {key_bits} for ChaCha20-Poly1305")
        return Encryption(EncryptionId.CHACHA20_POLY1305, 256)
    if transform_id not in (EncryptionId.AES_CBC, EncryptionId.AES_GCM_16):
        raise UnsupportedTransformError(f"encryption transform {transform_id}")
    if key_bits not in (128, 256):
        raise UnsupportedTransformError(f"key length {key_bits} for encryption {transform_id}")
    return Encryption(EncryptionId(transform_id), key_bits)


ENCRYPTION_ALGORITHMS: tuple[Encryption, ...] = (
    *(
        Encryption(e, bits)
        for e in (EncryptionId.AES_CBC, EncryptionId.AES_GCM_16)
        for bits in (128, 256)
    ),
    Encryption(EncryptionId.CHACHA20_POLY1305, 256),
)


def aes_gcm_seal(key_and_salt: bytes, iv: bytes, plaintext: bytes, aad: bytes) -> bytes:
    """AES-GCM with a 16-octet ICV as RFC 5282 uses it: nonce = salt (4) | IV (8).

    ``key_and_salt`` is the keying material of one direction (key followed by the salt);
    the result is the ciphertext followed by the ICV.
    """
    key, salt = key_and_salt[:-4], key_and_salt[-4:]
    return AESGCM(key).encrypt(salt + iv, plaintext, aad)


def aes_gcm_open(key_and_salt: bytes, iv: bytes, sealed: bytes, aad: bytes) -> bytes:
    """The plaintext of ``aes_gcm_seal`` output; raises IcvMismatchError on a bad ICV."""
    key, salt = key_and_salt[:-4], key_and_salt[-4:]
    try:
        return AESGCM(key).decrypt(salt + iv, sealed, aad)
    except InvalidTag as e:
        raise IcvMismatchError("AES-GCM ICV does not verify") from e


def _aead(encr: Encryption, key: bytes) -> AESGCM | ChaCha20Poly1305:
    if encr.id == EncryptionId.CHACHA20_POLY1305:
        return ChaCha20Poly1305(key)
    if encr.id == EncryptionId.AES_GCM_16:
        return AESGCM(key)
    raise UnsupportedTransformError(f"encryption transform {encr.id} is not AEAD")


def aead_seal(
    encr: Encryption, key_and_salt: bytes, iv: bytes, plaintext: bytes, aad: bytes
) -> bytes:
    """AES-GCM (RFC 5282) or ChaCha20-Poly1305 (RFC 7634): nonce = salt (4) | IV (8).

    The result is the ciphertext followed by the 16-octet ICV.
    """
    key, salt = key_and_salt[:-4], key_and_salt[-4:]
    return _aead(encr, key).encrypt(salt + iv, plaintext, aad)


def aead_open(encr: Encryption, key_and_salt: bytes, iv: bytes, sealed: bytes, aad: bytes) -> bytes:
    """The plaintext of ``aead_seal`` output; raises IcvMismatchError on a bad ICV."""
    key, salt = key_and_salt[:-4], key_and_salt[-4:]
    try:
        return _aead(encr, key).decrypt(salt + iv, sealed, aad)
    except InvalidTag as e:
        raise IcvMismatchError(f"{encr.id.name} ICV does not verify") from e


# Payload type number of SK (RFC 7296 section 3.2).
_SK_PAYLOAD = 46
_SKF_PAYLOAD = 53
_IKE_HEADER_LENGTH = 28


@dataclass(frozen=True)
class SkCipher:
    """Protects and opens SK payloads for one direction of an IKE SA.

    ``encryption_key`` is SK_e (with the salt appended for an AEAD cipher) and
    ``integrity_key`` is SK_a (empty for an AEAD cipher).
    """

    encryption: Encryption
    integrity: Integrity | None
    encryption_key: bytes
    integrity_key: bytes

    def _overhead(self, plaintext_length: int) -> tuple[int, int]:
        """(padding length, SK payload body length) for a plaintext of this length."""
        if self.encryption.aead:
            padding = 0
            icv = 16
        else:
            padding = (-(plaintext_length + 1)) % 16
            assert self.integrity is not None
            icv = self.integrity.icv_length
        body = self.encryption.iv_length + plaintext_length + padding + 1 + icv
        return padding, body

    def seal(
        self,
        header: bytes,
        inner_next_payload: int,
        inner_payloads: bytes,
        iv: bytes | None = None,
        *,
        fragment: tuple[int, int] | None = None,
    ) -> bytes:
        """A whole message: ``header`` (28 octets) followed by one SK payload.

        The header's Next Payload is set to SK and its Length to the final length; the SK
        payload's Next Payload is ``inner_next_payload``, the type of the first inner payload.
        ``iv`` is the IV to use (default: random; AEAD IVs must never repeat under one key).
        AEAD ciphers get no padding (RFC 7634 section 3 says SHOULD; RFC 5282 allows it).

        With ``fragment`` (Fragment Number, Total Fragments) the payload is an SKF instead
        (RFC 7383 2.5): its two fields precede the IV and are protected like the header.
        """
        if len(header) != _IKE_HEADER_LENGTH:
            raise CryptoError("IKE header must be 28 octets")
        padding, body = self._overhead(len(inner_payloads))
        fields = b"" if fragment is None else struct.pack("!HH", *fragment)
        sk_length = 4 + len(fields) + body
        total = _IKE_HEADER_LENGTH + sk_length
        head = (
            header[:16]
            + bytes([_SK_PAYLOAD if fragment is None else _SKF_PAYLOAD])
            + header[17:24]
            + struct.pack("!I", total)
            + struct.pack("!BBH", inner_next_payload, 0, sk_length)
            + fields
        )
        plaintext = inner_payloads + bytes(padding) + bytes([padding])
        if iv is None:
            iv = os.urandom(self.encryption.iv_length)
        elif len(iv) != self.encryption.iv_length:
            raise CryptoError(f"IV must be {self.encryption.iv_length} octets")
        if self.encryption.aead:
            return head + iv + aead_seal(self.encryption, self.encryption_key, iv, plaintext, head)
        encryptor = Cipher(algorithms.AES(self.encryption_key), modes.CBC(iv)).encryptor()
        ciphertext = encryptor.update(plaintext) + encryptor.finalize()
        assert self.integrity is not None
        protected = head + iv + ciphertext
        return protected + self.integrity.compute(self.integrity_key, protected)

    def open(self, message: bytes, sk_offset: int, *, fragment: bool = False) -> bytes:
        """The plaintext inner payload chain of the SK payload at ``sk_offset`` in ``message``.

        ``message`` is the whole IKE message (header first) and the SK payload must be its
        last payload (an SKF payload with ``fragment``: RFC 7383's two fields precede its
        IV). Raises IcvMismatchError when the ICV or tag does not verify, and CryptoError
        when the payload is too short or the padding is inconsistent.
        """
        fields = 4 if fragment else 0
        if sk_offset + 4 + fields > len(message):
            raise CryptoError("SK payload header truncated")
        (sk_length,) = struct.unpack_from("!H", message, sk_offset + 2)
        end = sk_offset + sk_length
        if end != len(message) or sk_length < 4 + fields:
            raise CryptoError("SK payload is not the last payload of the message")
        sk_length -= fields
        body_start = sk_offset + 4 + fields
        iv_length = self.encryption.iv_length
        if self.encryption.aead:
            if sk_length < 4 + iv_length + 16 + 1:
                raise CryptoError("SK payload too short")
            iv = message[body_start : body_start + iv_length]
            plaintext = aead_open(
                self.encryption,
                self.encryption_key,
                iv,
                message[body_start + iv_length : end],
                message[:body_start],
            )
        else:
            assert self.integrity is not None
            icv_length = self.integrity.icv_length
            ciphertext_length = sk_length - 4 - iv_length - icv_length
            if ciphertext_length < 16 or ciphertext_length % 16:
                raise CryptoError("SK payload ciphertext is not a whole number of blocks")
            if not self.integrity.verify(
                self.integrity_key, message[: end - icv_length], message[end - icv_length : end]
            ):
                raise IcvMismatchError("SK payload ICV does not verify")
            iv = message[body_start : body_start + iv_length]
            decryptor = Cipher(algorithms.AES(self.encryption_key), modes.CBC(iv)).decryptor()
            plaintext = (
                decryptor.update(message[body_start + iv_length : end - icv_length])
                + decryptor.finalize()
            )
        padding = plaintext[-1]
        if padding + 1 > len(plaintext):
            raise CryptoError("SK payload pad length exceeds the plaintext")
        return plaintext[: len(plaintext) - padding - 1]


@dataclass(frozen=True)
class IkeKeys:
    """The seven keys of an IKE SA (RFC 7296 section 2.14) and the transforms that use them."""

    prf: Prf
    encryption: Encryption
    integrity: Integrity | None
    sk_d: bytes
    sk_ai: bytes
    sk_ar: bytes
    sk_ei: bytes
    sk_er: bytes
    sk_pi: bytes
    sk_pr: bytes

    def cipher(self, initiator: bool) -> SkCipher:
        """The SK cipher for messages sent by the initiator (True) or the responder."""
        if initiator:
            return SkCipher(self.encryption, self.integrity, self.sk_ei, self.sk_ai)
        return SkCipher(self.encryption, self.integrity, self.sk_er, self.sk_ar)


def derive_ike_keys(
    prf: Prf,
    encryption: Encryption,
    integrity: Integrity | None,
    *,
    shared_secret: bytes,
    nonce_i: bytes,
    nonce_r: bytes,
    spi_i: bytes,
    spi_r: bytes,
) -> tuple[bytes, IkeKeys]:
    """SKEYSEED and the IKE SA keys for a new IKE SA (RFC 7296 section 2.14)."""
    skeyseed = prf(nonce_i + nonce_r, shared_secret)
    keys = derive_ike_keys_from_skeyseed(
        prf,
        encryption,
        integrity,
        skeyseed=skeyseed,
        nonce_i=nonce_i,
        nonce_r=nonce_r,
        spi_i=spi_i,
        spi_r=spi_r,
    )
    return skeyseed, keys


def derive_ike_keys_from_skeyseed(
    prf: Prf,
    encryption: Encryption,
    integrity: Integrity | None,
    *,
    skeyseed: bytes,
    nonce_i: bytes,
    nonce_r: bytes,
    spi_i: bytes,
    spi_r: bytes,
) -> IkeKeys:
    """The seven keys from SKEYSEED: prf+(SKEYSEED, Ni | Nr | SPIi | SPIr), split in order.

    For a rekeyed IKE SA, SKEYSEED is prf(SK_d (old), g^ir (new) | Ni | Nr) (section 2.18).
    """
    integ_length = integrity.key_length if integrity is not None else 0
    enc_length = encryption.key_material_length
    lengths = [prf.key_length, integ_length, integ_length, enc_length, enc_length]
    lengths += [prf.key_length, prf.key_length]
    material = prf.plus(skeyseed, nonce_i + nonce_r + spi_i + spi_r, sum(lengths))
    parts: list[bytes] = []
    offset = 0
    for length in lengths:
        parts.append(material[offset : offset + length])
        offset += length
    return IkeKeys(prf, encryption, integrity, *parts)


def derive_child_keymat(
    prf: Prf,
    sk_d: bytes,
    *,
    nonce_i: bytes,
    nonce_r: bytes,
    length: int,
    shared_secret: bytes = b"",
) -> bytes:
    """KEYMAT for a CHILD_SA (RFC 7296 section 2.17): prf+(SK_d, [g^ir (new) |] Ni | Nr)."""
    return prf.plus(sk_d, shared_secret + nonce_i + nonce_r, length)


_KEY_PAD = b"Key Pad for IKEv2"


def signed_octets(
    prf: Prf, real_message: bytes, peer_nonce: bytes, sk_p: bytes, id_body: bytes
) -> bytes:
    """InitiatorSignedOctets / ResponderSignedOctets (RFC 7296 section 2.15).

    ``real_message`` is the sender's first message (IKE_SA_INIT request or response) as sent,
    ``peer_nonce`` the other side's nonce data, ``sk_p`` the sender's SK_pi or SK_pr and
    ``id_body`` the sender's ID payload without its generic header.
    """
    return real_message + peer_nonce + prf(sk_p, id_body)


def psk_auth(prf: Prf, shared_secret: bytes, octets: bytes) -> bytes:
    """AUTH data for Shared Key Message Integrity Code authentication (method 2)."""
    return prf(prf(shared_secret, _KEY_PAD), octets)


@functools.lru_cache(maxsize=4096)
def _packed(address: str) -> bytes:
    return ipaddress.ip_address(address).packed


def nat_detection_hash(spi_i: bytes, spi_r: bytes, address: str, port: int) -> bytes:
    """NAT_DETECTION_*_IP data: SHA-1(SPIi | SPIr | IP | Port) (RFC 7296 section 2.23)."""
    packed = _packed(address)
    return hashlib.sha1(spi_i + spi_r + packed + struct.pack("!H", port)).digest()


def cookie_value(secret: bytes, version: int, nonce_i: bytes, address: str, spi_i: bytes) -> bytes:
    """A stateless cookie (RFC 7296 section 2.6): VersionID | SHA-256(Ni | IPi | SPIi | secret)."""
    packed = _packed(address)
    digest = hashlib.sha256(nonce_i + packed + spi_i + secret).digest()
    return struct.pack("!I", version) + digest
