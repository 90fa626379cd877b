"""Tests for twisted_rserpool.ike.crypto against published vectors and RFC 7296 definitions."""

from __future__ import annotations

import hashlib
import hmac
import struct

import pytest

from twisted_rserpool.ike import crypto
from twisted_rserpool.ike.crypto import (
    DH_GROUPS,
    INTEGRITY_ALGORITHMS,
    PRF_ALGORITHMS,
    DhGroupId,
    EncryptionId,
    IntegrityId,
    PrfId,
)

# RFC 4231 test cases 1, 2 and 6 (full output) and 5 (truncated to 128 bits).
RFC4231 = [
    (
        b"\x0b" * 20,
        b"Hi There",
        {
            PrfId.HMAC_SHA2_256: "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7",
            PrfId.HMAC_SHA2_384: "afd03944d84895626b0825f4ab46907f15f9dadbe4101ec682aa034c7cebc59c"
            "faea9ea9076ede7f4af152e8b2fa9cb6",
            PrfId.HMAC_SHA2_512: "87aa7cdea5ef619d4ff0b4241a1d6cb02379f4e2ce4ec2787ad0b30545e17cde"
            "daa833b7d6b8a702038b274eaea3f4e4be9d914eeb61f1702e696c203a126854",
        },
    ),
    (
        b"Jefe",
        b"what do ya want for nothing?",
        {
            PrfId.HMAC_SHA2_256: "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843",
            PrfId.HMAC_SHA2_384: "af45d2e376484031617f78d2b58a6b1b9c7ef464f5a01b47e42ec3736322445e"
            "8e2240ca5e69e2c78b3239ecfab21649",
            PrfId.HMAC_SHA2_512: "164b7a7bfcf819e2e395fbe73b56e0a387bd64222e831fd610270cd7ea250554"
            "9758bf75c05a994a6d034f65f8f0e6fdcaeab1a34d4a6b4b636e070a38bce737",
        },
    ),
    (
        b"\xaa" * 131,
        b"Test Using Larger Than Block-Size Key - Hash Key First",
        {
            PrfId.HMAC_SHA2_256: "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54",
            PrfId.HMAC_SHA2_384: "4ece084485813e9088d2c63a041bc5b44f9ef1012a2b588f3cd11f05033ac4c6"
            "0c2ef6ab4030fe8296248df163f44952",
            PrfId.HMAC_SHA2_512: "80b24263c7c1a3ebb71493c1dd7be8b49b46d1f41b4aeec1121b013783f8f352"
            "6b56d037e05f2598bd0fd2215d6a1e5295e64f73f63f0aec8b915a985d786598",
        },
    ),
]

RFC4231_TRUNCATED = (
    b"\x0c" * 20,
    b"Test With Truncation",
    {
        "sha256": "a3b6167473100ee06e0c796c2955552b",
        "sha384": "3abf34c3503b2a23a46efc619baef897",
        "sha512": "415fad6271580a531d4179bc891d87a6",
    },
)


@pytest.mark.parametrize("key,data,expected", RFC4231)
def test_prf_rfc4231(key: bytes, data: bytes, expected: dict[PrfId, str]) -> None:
    """Every HMAC-SHA2 PRF gives the RFC 4231 output for test cases 1, 2 and 6."""
    for prf_id, digest in expected.items():
        assert PRF_ALGORITHMS[prf_id](key, data).hex() == digest


def test_integrity_truncates_rfc4231() -> None:
    """Integrity transforms are RFC 4231 HMACs truncated to the RFC 4868 ICV length."""
    key, data, prefixes = RFC4231_TRUNCATED
    lengths = {
        IntegrityId.HMAC_SHA2_256_128: 16,
        IntegrityId.HMAC_SHA2_384_192: 24,
        IntegrityId.HMAC_SHA2_512_256: 32,
    }
    for integ_id, length in lengths.items():
        integ = INTEGRITY_ALGORITHMS[integ_id]
        icv = integ.compute(key, data)
        assert len(icv) == length
        assert icv.hex().startswith(prefixes[integ.hash_name])
        assert integ.verify(key, data, icv)
        assert not integ.verify(key, data + b"x", icv)


def test_prf_plus_definition() -> None:
    """prf+ is T1 | T2 | ... with Tn = prf(K, Tn-1 | S | n), cut to the asked length."""
    prf = PRF_ALGORITHMS[PrfId.HMAC_SHA2_256]
    key, seed = b"k" * 32, b"seed"
    t1 = hmac.digest(key, seed + b"\x01", "sha256")
    t2 = hmac.digest(key, t1 + seed + b"\x02", "sha256")
    t3 = hmac.digest(key, t2 + seed + b"\x03", "sha256")
    assert prf.plus(key, seed, 80) == (t1 + t2 + t3)[:80]
    assert prf.plus(key, seed, 5) == t1[:5]
    with pytest.raises(crypto.CryptoError):
        prf.plus(key, seed, 255 * 32 + 1)


# McGrew and Viega, "The Galois/Counter Mode of Operation", test cases 4 (AES-128) and 16
# (AES-256); the 12-octet IV is split into RFC 5282's 4-octet salt and 8-octet IV.
GCM_PLAINTEXT = bytes.fromhex(
    "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a72"
    "1c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b39"
)
GCM_AAD = bytes.fromhex("feedfacedeadbeeffeedfacedeadbeefabaddad2")
GCM_VECTORS = [
    (
        "feffe9928665731c6d6a8f9467308308",
        "42831ec2217774244b7221b784d0d49ce3aa212f2c02a4e035c17e2329aca12e"
        "21d514b25466931c7d8f6a5aac84aa051ba30b396a0aac973d58e091",
        "5bc94fbc3221a5db94fae95ae7121a47",
    ),
    (
        "feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308",
        "522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa"
        "8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662",
        "76fc6ece0f4e1768cddf8853bb2d551b",
    ),
]


@pytest.mark.parametrize("key,ciphertext,tag", GCM_VECTORS)
def test_aes_gcm_vectors(key: str, ciphertext: str, tag: str) -> None:
    """AES-GCM with salt | IV as the nonce reproduces the GCM specification's vectors."""
    key_and_salt = bytes.fromhex(key) + bytes.fromhex("cafebabe")
    iv = bytes.fromhex("facedbaddecaf888")
    sealed = crypto.aes_gcm_seal(key_and_salt, iv, GCM_PLAINTEXT, GCM_AAD)
    assert sealed.hex() == ciphertext + tag
    assert crypto.aes_gcm_open(key_and_salt, iv, sealed, GCM_AAD) == GCM_PLAINTEXT
    with pytest.raises(crypto.IcvMismatchError):
        crypto.aes_gcm_open(key_and_salt, iv, sealed, GCM_AAD + b"\x00")


@pytest.mark.parametrize("group_id", list(DhGroupId))
def test_dh_agreement(group_id: DhGroupId) -> None:
    """Two key pairs of a group compute the same shared secret of the RFC length."""
    group = DH_GROUPS[group_id]
    a, b = group.generate(), group.generate()
    assert len(a.public_value) == group.public_value_length
    secret = a.shared_secret(b.public_value)
    assert secret == b.shared_secret(a.public_value)
    expected = {14: 256, 15: 384, 16: 512, 19: 32, 20: 48, 21: 66, 31: 32}[group_id]
    assert len(secret) == expected


@pytest.mark.parametrize("group_id", list(DhGroupId))
def test_dh_rejects_invalid_public_values(group_id: DhGroupId) -> None:
    """Wrong lengths and values outside the group raise InvalidPublicValueError."""
    group = DH_GROUPS[group_id]
    key = group.generate()
    with pytest.raises(crypto.InvalidPublicValueError):
        key.shared_secret(key.public_value + b"\x00")
    bad = {
        14: (1).to_bytes(256, "big"),
        15: b"\xff" * 384,  # above p - 1
        16: (1).to_bytes(512, "big"),
        19: b"\x00" * 63 + b"\x01",  # not on the curve
        20: b"\x00" * 95 + b"\x01",
        21: b"\x00" * 131 + b"\x01",
        31: b"\x00" * 32,  # small-order point: all-zero shared secret
    }[group_id]
    with pytest.raises(crypto.InvalidPublicValueError):
        key.shared_secret(bad)


SUITES = [
    (EncryptionId.AES_CBC, 128, IntegrityId.HMAC_SHA2_256_128),
    (EncryptionId.AES_CBC, 256, IntegrityId.HMAC_SHA2_512_256),
    (EncryptionId.AES_CBC, 256, IntegrityId.HMAC_SHA2_384_192),
    (EncryptionId.AES_GCM_16, 128, None),
    (EncryptionId.AES_GCM_16, 256, None),
    (EncryptionId.CHACHA20_POLY1305, 256, None),
    (EncryptionId.AES_CBC, 128, IntegrityId.HMAC_SHA1_96),
]


def _keys(encr: EncryptionId, bits: int, integ: IntegrityId | None) -> crypto.IkeKeys:
    return crypto.derive_ike_keys(
        PRF_ALGORITHMS[PrfId.HMAC_SHA2_256],
        crypto.encryption(encr, bits),
        INTEGRITY_ALGORITHMS[integ] if integ is not None else None,
        shared_secret=b"s" * 32,
        nonce_i=b"i" * 32,
        nonce_r=b"r" * 32,
        spi_i=b"I" * 8,
        spi_r=b"R" * 8,
    )[1]


HEADER = b"I" * 8 + b"R" * 8 + bytes([46, 0x20, 35, 0x08]) + struct.pack("!II", 1, 0)


@pytest.mark.parametrize("encr,bits,integ", SUITES)
def test_sk_payload_round_trip(encr: EncryptionId, bits: int, integ: IntegrityId | None) -> None:
    """A sealed SK payload opens to the same inner payloads with the same direction's keys."""
    keys = _keys(encr, bits, integ)
    for inner in (b"", b"x" * 15, b"y" * 16, b"z" * 100):
        message = keys.cipher(True).seal(HEADER, 41, inner)
        assert struct.unpack_from("!I", message, 24)[0] == len(message)
        assert message[16] == 46 and message[28] == 41
        assert keys.cipher(True).open(message, 28) == inner


@pytest.mark.parametrize("encr,bits,integ", SUITES)
def test_sk_payload_tampering(encr: EncryptionId, bits: int, integ: IntegrityId | None) -> None:
    """A changed header, ciphertext or ICV, or the other direction's keys, fails the check."""
    keys = _keys(encr, bits, integ)
    message = keys.cipher(True).seal(HEADER, 41, b"payload")
    for index in (5, 20, 40, len(message) - 1):
        changed = bytearray(message)
        changed[index] ^= 1
        with pytest.raises(crypto.IcvMismatchError):
            keys.cipher(True).open(bytes(changed), 28)
    with pytest.raises(crypto.IcvMismatchError):
        keys.cipher(False).open(message, 28)
    with pytest.raises(crypto.CryptoError):
        keys.cipher(True).open(message[:-1], 28)


def test_key_split_lengths_and_order() -> None:
    """SK_d, SK_ai, SK_ar, SK_ei, SK_er, SK_pi, SK_pr are consecutive slices of prf+ output."""
    prf = PRF_ALGORITHMS[PrfId.HMAC_SHA2_384]
    integ = INTEGRITY_ALGORITHMS[IntegrityId.HMAC_SHA2_384_192]
    enc = crypto.encryption(EncryptionId.AES_CBC, 256)
    skeyseed, keys = crypto.derive_ike_keys(
        prf,
        enc,
        integ,
        shared_secret=b"g" * 48,
        nonce_i=b"n" * 32,
        nonce_r=b"m" * 32,
        spi_i=b"a" * 8,
        spi_r=b"b" * 8,
    )
    assert skeyseed == hmac.digest(b"n" * 32 + b"m" * 32, b"g" * 48, "sha384")
    stream = prf.plus(skeyseed, b"n" * 32 + b"m" * 32 + b"a" * 8 + b"b" * 8, 48 * 5 + 32 * 2)
    assert keys.sk_d == stream[:48]
    assert keys.sk_ai + keys.sk_ar == stream[48:144]
    assert keys.sk_ei + keys.sk_er == stream[144:208]
    assert keys.sk_pi + keys.sk_pr == stream[208:304]
    gcm = crypto.encryption(EncryptionId.AES_GCM_16, 128)
    assert gcm.key_material_length == 20
    _, gcm_keys = crypto.derive_ike_keys(
        prf,
        gcm,
        None,
        shared_secret=b"g",
        nonce_i=b"n",
        nonce_r=b"m",
        spi_i=b"a" * 8,
        spi_r=b"b" * 8,
    )
    assert gcm_keys.sk_ai == b"" and len(gcm_keys.sk_ei) == 20


def test_unsupported_encryption() -> None:
    """Unknown encryption IDs and key lengths raise UnsupportedTransformError."""
    with pytest.raises(crypto.UnsupportedTransformError):
        crypto.encryption(3, 128)
    with pytest.raises(crypto.UnsupportedTransformError):
        crypto.encryption(EncryptionId.AES_CBC, 192)
    with pytest.raises(crypto.UnsupportedTransformError):
        crypto.encryption(EncryptionId.AES_CBC, None)


def test_psk_auth_definition() -> None:
    """PSK AUTH is prf(prf(secret, "Key Pad for IKEv2"), message | nonce | prf(SK_p, ID))."""
    prf = PRF_ALGORITHMS[PrfId.HMAC_SHA2_256]
    octets = crypto.signed_octets(prf, b"message", b"nonce", b"skp", b"\x02\x00\x00\x00id")
    assert octets == b"messagenonce" + hmac.digest(b"skp", b"\x02\x00\x00\x00id", "sha256")
    pad = hmac.digest(b"secret", b"Key Pad for IKEv2", "sha256")
    assert crypto.psk_auth(prf, b"secret", octets) == hmac.digest(pad, octets, "sha256")


def test_child_keymat() -> None:
    """CHILD_SA KEYMAT is prf+(SK_d, Ni | Nr)."""
    prf = PRF_ALGORITHMS[PrfId.HMAC_SHA2_256]
    keymat = crypto.derive_child_keymat(prf, b"d", nonce_i=b"i", nonce_r=b"r", length=40)
    assert keymat == prf.plus(b"d", b"ir", 40)


def test_nat_detection_and_cookie() -> None:
    """NAT detection hashes SPIs, address and port with SHA-1; cookies depend on all inputs."""
    digest = crypto.nat_detection_hash(b"a" * 8, b"\x00" * 8, "127.0.0.1", 500)
    expected = hashlib.sha1(b"a" * 8 + b"\x00" * 8 + bytes([127, 0, 0, 1]) + b"\x01\xf4")
    assert digest == expected.digest()
    cookie = crypto.cookie_value(b"secret", 7, b"nonce", "127.0.0.1", b"a" * 8)
    assert cookie[:4] == b"\x00\x00\x00\x07" and len(cookie) == 36
    assert cookie != crypto.cookie_value(b"secret", 7, b"nonce", "127.0.0.2", b"a" * 8)
    assert cookie != crypto.cookie_value(b"other", 7, b"nonce", "127.0.0.1", b"a" * 8)
