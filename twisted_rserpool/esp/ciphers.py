"""The ESP transforms of one direction: AEAD (RFC 4106, RFC 7634) and AES-CBC with HMAC-SHA2
(RFC 3602, RFC 4868), each sealing or opening a whole ESP packet in one `cryptography` call.

A cipher is built once per SA direction; the AEAD and HMAC objects (key schedules) are kept,
so a packet costs no key setup:

- AEAD (AES-GCM-16, ChaCha20-Poly1305): the nonce is the SA's 4-octet salt and the packet's
  8-octet IV; the IV is the 64-bit sequence number XOR a per-SA random mask, unique for the
  key because the sequence number never repeats (RFC 4106 3.1 asks for uniqueness only).
  The AAD is SPI | Sequence Number, or SPI | ESN high | ESN low with ESN (RFC 4106 5,
  RFC 7634 2.1).
- AES-CBC: the IV must be unpredictable (RFC 3602). A single CBC context is kept; each packet
  is encrypted behind one random block, whose ciphertext E(random XOR previous block) becomes
  the packet's IV (unpredictable without the key), so one `update` call does IV and payload.
  Decryption feeds IV and ciphertext to one kept CBC context and drops the first block.
  The ICV is HMAC over SPI | Sequence Number | IV | ciphertext [| ESN high], truncated to
  half the hash (RFC 4868 2.3; RFC 4303 3.3.2.1 for the ESN high bits).
"""

from __future__ import annotations

import hmac as _stdlib_hmac
import struct
from collections.abc import Callable
from typing import Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives import hmac as crypto_hmac
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305

from twisted_rserpool.ike.crypto import (
    INTEGRITY_ALGORITHMS,
    EncryptionId,
    IntegrityId,
    UnsupportedTransformError,
)
from twisted_rserpool.ike.proposals import ChildSuite

__all__ = ["AeadCipher", "CbcHmacCipher", "EspCipher", "Randomness", "make_cipher"]

Randomness = Callable[[int], bytes]
"""A source of random octets, ``os.urandom`` by default (injected for tests)."""

_Q = struct.Struct(">Q")
_L = struct.Struct(">L")
_HEADER = 8  # SPI and Sequence Number
_SALT = 4
_HASHES: dict[str, Callable[[], hashes.HashAlgorithm]] = {
    "sha1": hashes.SHA1,
    "sha256": hashes.SHA256,
    "sha384": hashes.SHA384,
    "sha512": hashes.SHA512,
}


class EspCipher(Protocol):
    """Seals and opens the ESP packets of one SA direction."""

    @property
    def iv_length(self) -> int:
        """Octets of IV after the ESP header."""
        ...

    @property
    def icv_length(self) -> int:
        """Octets of ICV at the end of the packet."""
        ...

    @property
    def block_size(self) -> int:
        """What the plaintext (payload, padding, Pad Length, Next Header) is a multiple of."""
        ...

    def seal(self, header: bytes, sequence: int, plaintext: bytes) -> bytes:
        """The ESP packet: ``header`` (SPI and low Sequence Number), IV, ciphertext, ICV."""
        ...

    def open(self, packet: bytes, sequence: int) -> bytes | None:
        """The plaintext of ``packet`` under the full ``sequence``; None if the ICV fails."""
        ...


class AeadCipher:
    """AES-GCM with a 16-octet ICV (RFC 4106) or ChaCha20-Poly1305 (RFC 7634)."""

    iv_length = 8
    icv_length = 16
    block_size = 4  # no cipher block: only the 4-octet alignment of RFC 4303 2.4

    def __init__(
        self, transform: EncryptionId, key_and_salt: bytes, esn: bool, iv_mask: int
    ) -> None:
        key, self._salt = key_and_salt[:-_SALT], key_and_salt[-_SALT:]
        if transform == EncryptionId.AES_GCM_16:
            if len(key) not in (16, 32):
                raise ValueError(f"AES-GCM key of {len(key)} octets")
            self._aead: AESGCM | ChaCha20Poly1305 = AESGCM(key)
        elif transform == EncryptionId.CHACHA20_POLY1305:
            if len(key) != 32:
                raise ValueError(f"ChaCha20-Poly1305 key of {len(key)} octets")
            self._aead = ChaCha20Poly1305(key)
        else:
            raise UnsupportedTransformError(f"encryption transform {transform} is not AEAD")
        self._esn = esn
        self._iv_mask = iv_mask & 0xFFFFFFFFFFFFFFFF

    def _aad(self, header: bytes, sequence: int) -> bytes:
        if self._esn:
            return header[:4] + _Q.pack(sequence)
        return header

    def seal(self, header: bytes, sequence: int, plaintext: bytes) -> bytes:
        """The ESP packet for ``plaintext`` (already padded) at ``sequence``."""
        iv = _Q.pack(sequence ^ self._iv_mask)
        sealed = self._aead.encrypt(self._salt + iv, plaintext, self._aad(header, sequence))
        return header + iv + sealed

    def open(self, packet: bytes, sequence: int) -> bytes | None:
        """The plaintext, or None when the tag does not verify."""
        try:
            return self._aead.decrypt(
                self._salt + packet[8:16], packet[16:], self._aad(packet[:8], sequence)
            )
        except InvalidTag:
            return None


class CbcHmacCipher:
    """AES-CBC (RFC 3602) with a truncated HMAC (RFC 4868, or HMAC-SHA1-96, RFC 2404)."""

    iv_length = 16
    block_size = 16

    def __init__(
        self,
        encryption_key: bytes,
        integrity: IntegrityId,
        integrity_key: bytes,
        esn: bool,
        random: Randomness,
    ) -> None:
        if len(encryption_key) not in (16, 32):
            raise ValueError(f"AES-CBC key of {len(encryption_key)} octets")
        transform = INTEGRITY_ALGORITHMS.get(integrity)
        if transform is None:
            raise UnsupportedTransformError(f"integrity transform {integrity}")
        if len(integrity_key) != transform.key_length:
            raise ValueError(f"{integrity.name} key of {len(integrity_key)} octets")
        self.icv_length = transform.icv_length
        cipher = Cipher(algorithms.AES(encryption_key), modes.CBC(bytes(16)))
        # Kept for the SA's life: the chaining state is reset by the leading block of each
        # packet, so no per-packet context or key schedule is needed.
        self._encryptor = cipher.encryptor()
        self._decryptor = cipher.decryptor()
        self._mac = crypto_hmac.HMAC(integrity_key, _HASHES[transform.hash_name]())
        self._esn = esn
        self._random = random

    def icv(self, data: bytes, sequence: int) -> bytes:
        """The truncated ICV of ``data`` (ESP header to the end of the ciphertext)."""
        mac = self._mac.copy()
        mac.update(data)
        if self._esn:
            mac.update(_L.pack(sequence >> 32))
        return mac.finalize()[: self.icv_length]

    def seal(self, header: bytes, sequence: int, plaintext: bytes) -> bytes:
        """The ESP packet for ``plaintext`` (a multiple of 16 octets) at ``sequence``."""
        body = header + self._encryptor.update(self._random(16) + plaintext)
        return body + self.icv(body, sequence)

    def open(self, packet: bytes, sequence: int) -> bytes | None:
        """The plaintext, or None when the ICV does not verify (then nothing is decrypted)."""
        end = len(packet) - self.icv_length
        body = packet[:end]
        if not _stdlib_hmac.compare_digest(self.icv(body, sequence), packet[end:]):
            return None
        return self._decryptor.update(body[_HEADER:])[16:]


def make_cipher(
    suite: ChildSuite,
    encryption_key: bytes,
    integrity_key: bytes,
    random: Randomness,
) -> EspCipher:
    """The cipher of one direction of an SA negotiated with ``suite``.

    ``encryption_key`` is the direction's encryption KEYMAT (with the 4-octet salt at its
    end for an AEAD suite), ``integrity_key`` its integrity KEYMAT (empty for AEAD).
    """
    if suite.encryption_transform.aead:
        if suite.integrity not in (None, IntegrityId.NONE):
            raise UnsupportedTransformError("an AEAD cipher takes no integrity transform")
        mask = int.from_bytes(random(8), "big")
        return AeadCipher(suite.encryption, encryption_key, suite.esn, mask)
    integrity = suite.integrity
    if suite.encryption != EncryptionId.AES_CBC or integrity is None or not integrity:
        raise UnsupportedTransformError(f"ESP suite {suite} (encryption without integrity)")
    return CbcHmacCipher(encryption_key, integrity, integrity_key, suite.esn, random)
