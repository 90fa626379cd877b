"""The ESP ciphers against published vectors (RFC 7634 appendix A, RFC 4868 2.7.2) and, where
no RFC has a vector (RFC 4106, AES-CBC with HMAC), against `cryptography` and `hmac` used
directly on the packet layout of RFC 4303."""

from __future__ import annotations

import hmac
import struct

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305

from twisted_rserpool.esp import CbcHmacCipher, InboundSa, OutboundSa, make_cipher
from twisted_rserpool.ike.crypto import EncryptionId, IntegrityId
from twisted_rserpool.ike.proposals import ChildSuite

from .support import ipv4


def _hex(text: str) -> bytes:
    """Octets from an RFC hex dump (offsets and the ASCII column removed)."""
    out = bytearray()
    for line in text.strip().splitlines():
        fields = line.split()[1:17]
        out += bytes(int(f, 16) for f in fields if len(f) == 2)
    return bytes(out)


# RFC 7634 appendix A.
RFC7634_SOURCE = _hex("""
000  45 00 00 54 a6 f2 00 00 40 01 e7 78 c6 33 64 05
016  c0 00 02 05 08 00 5b 7a 3a 08 00 00 55 3b ec 10
032  00 07 36 27 08 09 0a 0b 0c 0d 0e 0f 10 11 12 13
048  14 15 16 17 18 19 1a 1b 1c 1d 1e 1f 20 21 22 23
064  24 25 26 27 28 29 2a 2b 2c 2d 2e 2f 30 31 32 33
080  34 35 36 37
""")
RFC7634_ESP_PACKET = _hex("""
000  45 00 00 8c 23 45 00 00 40 32 de 5b cb 00 71 99
016  cb 00 71 05 01 02 03 04 00 00 00 05 10 11 12 13
032  14 15 16 17 24 03 94 28 b9 7f 41 7e 3c 13 75 3a
048  4f 05 08 7b 67 c3 52 e6 a7 fa b1 b9 82 d4 66 ef
064  40 7a e5 c6 14 ee 80 99 d5 28 44 eb 61 aa 95 df
080  ab 4c 02 f7 2a a7 1e 7c 4c 4f 64 c9 be fe 2f ac
096  c6 38 e8 f3 cb ec 16 3f ac 46 9b 50 27 73 f6 fb
112  94 e6 64 da 91 65 b8 28 29 f6 41 e0 76 aa a8 26
128  6b 7f b0 f7 b1 1b 36 99 07 e1 ad 43
""")
RFC7634_KEYMAT = bytes(range(0x80, 0xA4))  # key 0x80..0x9f, salt a0 a1 a2 a3
SPI = bytes.fromhex("01020304")
CHACHA = ChildSuite(EncryptionId.CHACHA20_POLY1305, 256, None)


def _iv_mask(iv: int, sequence: int) -> bytes:
    """The per-SA mask that makes the IV of ``sequence`` equal ``iv`` (IV = seq XOR mask)."""
    return struct.pack(">Q", iv ^ sequence)


def test_rfc7634_appendix_a_seal() -> None:
    """The fifth packet of a ChaCha20-Poly1305 SA (next sequence number 5, IV 10..17) is the
    RFC's ESP packet octet for octet (after its 20-octet outer IPv4 header)."""
    cipher = make_cipher(CHACHA, RFC7634_KEYMAT, b"", lambda n: _iv_mask(0x1011121314151617, 5))
    sa = OutboundSa(SPI, cipher)
    for _ in range(4):
        sa.seal(RFC7634_SOURCE, 0.0)
    assert sa.seal(RFC7634_SOURCE, 0.0) == RFC7634_ESP_PACKET[20:]


def test_rfc7634_appendix_a_open() -> None:
    """The RFC's ESP packet opens to its ICMP packet; the padding 01 02 was checked."""
    sa = InboundSa(SPI, make_cipher(CHACHA, RFC7634_KEYMAT, b"", bytes))
    assert sa.open(RFC7634_ESP_PACKET[20:], 0.0) == RFC7634_SOURCE
    assert sa.counters.packets_in == 1 and sa.counters.bytes_in == 84
    assert sa.window.highest == 5


@pytest.mark.parametrize(
    ("integrity", "key", "expected"),
    [
        # RFC 4868 2.7.2.1-3, test cases AUTH256-1, AUTH384-1 and AUTH512-1 ("Hi There").
        (IntegrityId.HMAC_SHA2_256_128, b"\x0b" * 32, "198a607eb44bfbc69903a0f1cf2bbdc5"),
        (
            IntegrityId.HMAC_SHA2_384_192,
            b"\x0b" * 48,
            "b6a8d5636f5c6a7224f9977dcf7ee6c7fb6d0c48cbdee973",
        ),
        (
            IntegrityId.HMAC_SHA2_512_256,
            b"\x0b" * 64,
            "637edc6e01dce7e6742a99451aae82df23da3e92439e590e43e761b33e910fb8",
        ),
    ],
)
def test_rfc4868_truncated_icv(integrity: IntegrityId, key: bytes, expected: str) -> None:
    """The ICV is HMAC-SHA2 truncated to half its length, as RFC 4868's vectors show."""
    cipher = CbcHmacCipher(bytes(16), integrity, key, esn=False, random=bytes)
    assert cipher.icv(b"Hi There", 1).hex() == expected
    assert cipher.icv_length == len(expected) // 2


@pytest.mark.parametrize("esn", [False, True])
@pytest.mark.parametrize(
    ("transform", "key_bits"),
    [
        (EncryptionId.AES_GCM_16, 128),
        (EncryptionId.AES_GCM_16, 256),
        (EncryptionId.CHACHA20_POLY1305, 256),
    ],
)
def test_aead_layout(esn: bool, transform: EncryptionId, key_bits: int) -> None:
    """RFC 4106 / RFC 7634 by hand: nonce = salt | IV, AAD = SPI | Seq (or SPI | ESN high |
    ESN low), plaintext = packet | padding 1, 2, ... to 4 octets | pad length | 4."""
    suite = ChildSuite(transform, key_bits, None, esn)
    keymat = bytes(range(key_bits // 8 + 4))
    key, salt = keymat[:-4], keymat[-4:]
    sequence = (7 << 32) + 3 if esn else 3
    cipher = make_cipher(suite, keymat, b"", bytes)
    sa = OutboundSa(SPI, cipher, esn=esn)
    sa.sequence = sequence - 1
    inner = ipv4(payload=b"x" * 11)  # 31 octets: 31 + 2 -> pad 3
    packet = sa.seal(inner, 0.0)
    assert isinstance(packet, bytes)
    iv = struct.pack(">Q", sequence)  # the mask is zero here
    assert packet[:16] == SPI + struct.pack(">L", sequence & 0xFFFFFFFF) + iv
    aad = SPI + struct.pack(">Q", sequence) if esn else packet[:8]
    aead = AESGCM(key) if transform == EncryptionId.AES_GCM_16 else ChaCha20Poly1305(key)
    plaintext = aead.decrypt(salt + iv, packet[16:], aad)
    assert plaintext == inner + b"\x01\x02\x03\x03\x04"
    receiver = InboundSa(SPI, make_cipher(suite, keymat, b"", bytes), esn=esn)
    receiver.window.highest = sequence - 1
    assert receiver.open(packet, 0.0) == inner


@pytest.mark.parametrize("esn", [False, True])
@pytest.mark.parametrize(
    ("integrity", "hash_name", "icv_length"),
    [
        (IntegrityId.HMAC_SHA2_256_128, "sha256", 16),
        (IntegrityId.HMAC_SHA2_384_192, "sha384", 24),
        (IntegrityId.HMAC_SHA2_512_256, "sha512", 32),
        (IntegrityId.HMAC_SHA1_96, "sha1", 12),
    ],
)
def test_cbc_hmac_layout(
    esn: bool, integrity: IntegrityId, hash_name: str, icv_length: int
) -> None:
    """RFC 4303 3.3.2.1 by hand: SPI | Seq | IV | AES-CBC(packet | padding to 16 | pad length
    | 41) | ICV, the ICV being HMAC over all before it with the ESN high bits appended (not
    sent), truncated; two packets get different IVs."""
    suite = ChildSuite(EncryptionId.AES_CBC, 256, integrity, esn)
    key = bytes(range(32))
    integrity_key = bytes(range(100, 100 + {"sha1": 20}.get(hash_name, icv_length * 2)))
    sequence = (9 << 32) + 1 if esn else 1
    sa = OutboundSa(SPI, make_cipher(suite, key, integrity_key, lambda n: b"\x5a" * n), esn=esn)
    sa.sequence = sequence - 1
    inner = bytes.fromhex("6000000000000000") + bytes(32)  # an IPv6 header, no payload
    packet = sa.seal(inner, 0.0)
    again = sa.seal(inner, 0.0)
    assert isinstance(packet, bytes) and isinstance(again, bytes)
    body, icv = packet[:-icv_length], packet[-icv_length:]
    high = struct.pack(">L", sequence >> 32) if esn else b""
    assert icv == hmac.digest(integrity_key, body + high, hash_name)[:icv_length]
    iv, ciphertext = body[8:24], body[24:]
    assert iv != again[8:24]
    plaintext = Cipher(algorithms.AES(key), modes.CBC(iv)).decryptor().update(ciphertext)
    assert plaintext == inner + bytes(range(1, 7)) + b"\x06\x29"  # 40 + 6 + 2 = 48
    receiver = InboundSa(SPI, make_cipher(suite, key, integrity_key, bytes), esn=esn)
    receiver.window.highest = sequence - 1
    assert receiver.open(packet, 0.0) == inner
    assert receiver.open(again, 0.0) == inner
