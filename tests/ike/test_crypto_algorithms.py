"""Known-answer tests of the algorithms added for real clients: ChaCha20-Poly1305 (RFC 7634
appendices A and B), the MODP 3072 and 4096 groups (RFC 3526), ECP 256/384/521 (RFC 5114
appendix A vectors, RFC 5903 encoding), and HMAC-SHA1 as PRF and 96-bit integrity (RFC 2202,
RFC 2404)."""

from __future__ import annotations

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
from twisted_rserpool.ike.proposals import ChildSuite, parse_child_suites, parse_ike_suites

# --- ChaCha20-Poly1305 -------------------------------------------------------------------

CHACHA_KEY = bytes(range(0x80, 0xA0))
CHACHA_SALT = bytes.fromhex("a0a1a2a3")
CHACHA_IV = bytes.fromhex("1011121314151617")


def test_chacha20_poly1305_esp_rfc7634_appendix_a() -> None:
    """The ESP example: 36 octets of KEYMAT (key, salt), the 8-octet IV and the SPI |
    sequence number AAD give the RFC's ciphertext and tag."""
    source_packet = bytes.fromhex(
        "45000054a6f200004001e778c6336405c000020508005b7a3a080000553bec10"
        "0007362708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f20212223"
        "2425262728292a2b2c2d2e2f3031323334353637"
    )
    plaintext = source_packet + bytes([1, 2, 2, 4])  # padding 1 2, pad length 2, IPv4
    aad = bytes.fromhex("0102030400000005")
    expected = bytes.fromhex(
        "24039428b97f417e3c13753a4f05087b67c352e6a7fab1b982d466ef407ae5c6"
        "14ee8099d52844eb61aa95dfab4c02f72aa71e7c4c4f64c9befe2facc638e8f3"
        "cbec163fac469b502773f6fb94e664da9165b82829f641e0"
        "76aaa8266b7fb0f7b11b369907e1ad43"
    )
    chacha = crypto.encryption(EncryptionId.CHACHA20_POLY1305, None)
    (suite,) = parse_child_suites("chacha20poly1305")
    assert suite == ChildSuite(EncryptionId.CHACHA20_POLY1305, 256, None)
    assert suite.keymat_length == 36 and chacha.key_material_length == 36
    sealed = crypto.aead_seal(chacha, CHACHA_KEY + CHACHA_SALT, CHACHA_IV, plaintext, aad)
    assert sealed == expected
    opened = crypto.aead_open(chacha, CHACHA_KEY + CHACHA_SALT, CHACHA_IV, sealed, aad)
    assert opened == plaintext
    with pytest.raises(crypto.IcvMismatchError):
        crypto.aead_open(chacha, CHACHA_KEY + CHACHA_SALT, CHACHA_IV, sealed, aad[:-1] + b"\x06")


# Appendix B: INFORMATIONAL request 9 with N(SET_WINDOW_SIZE, 10), no padding.
IKE_MESSAGE = bytes.fromhex(
    "c0c1c2c3c4c5c6c7d0d1d2d3d4d5d6d72e202500000000090000004529000029"
    "1011121314151617610394701f8d017f7c129248896b71bfe25236efd7cdc670"
    "66906315b2"
)
NOTIFY = bytes.fromhex("0000000c000040010000000a")


def test_chacha20_poly1305_ike_rfc7634_appendix_b() -> None:
    """The SK payload with ChaCha20-Poly1305: sealing the Notify with the RFC's IV gives the
    RFC's message byte for byte (no padding, pad length 0), and it opens again."""
    chacha = crypto.encryption(EncryptionId.CHACHA20_POLY1305, None)
    assert chacha.aead and chacha.iv_length == 8 and chacha.key_length_attribute is None
    cipher = crypto.SkCipher(chacha, None, CHACHA_KEY + CHACHA_SALT, b"")
    assert cipher.seal(IKE_MESSAGE[:28], 41, NOTIFY, iv=CHACHA_IV) == IKE_MESSAGE
    assert cipher.open(IKE_MESSAGE, 28) == NOTIFY
    tampered = IKE_MESSAGE[:-1] + bytes([IKE_MESSAGE[-1] ^ 1])
    with pytest.raises(crypto.IcvMismatchError):
        cipher.open(tampered, 28)


def test_chacha20_poly1305_ike_keys() -> None:
    """RFC 7634 section 3: 36 octets each for SK_ei and SK_er, none for SK_ai and SK_ar."""
    (suite,) = parse_ike_suites("chacha20poly1305-prfsha256-x25519")
    assert str(suite) == "chacha20poly1305-prfsha256-x25519"
    _, keys = crypto.derive_ike_keys(
        suite.prf_transform,
        suite.encryption_transform,
        suite.integrity_transform,
        shared_secret=b"g" * 32,
        nonce_i=b"n" * 32,
        nonce_r=b"m" * 32,
        spi_i=b"a" * 8,
        spi_r=b"b" * 8,
    )
    assert len(keys.sk_ei) == len(keys.sk_er) == 36 and keys.sk_ai == keys.sk_ar == b""
    message = keys.cipher(True).seal(IKE_MESSAGE[:28], 41, NOTIFY)
    assert keys.cipher(True).open(message, 28) == NOTIFY
    with pytest.raises(crypto.IcvMismatchError):
        keys.cipher(False).open(message, 28)


def test_chacha20_poly1305_key_length() -> None:
    """ChaCha20-Poly1305 has a fixed 256-bit key: no other size is accepted."""
    assert crypto.encryption(EncryptionId.CHACHA20_POLY1305, 256).key_bits == 256
    with pytest.raises(crypto.UnsupportedTransformError):
        crypto.encryption(EncryptionId.CHACHA20_POLY1305, 128)


# --- MODP 3072 and 4096 (RFC 3526) ------------------------------------------------------


def _pi_bits(bits: int) -> int:
    """floor(pi * 2**bits), by Machin's formula in integers (64 guard bits)."""
    guard = 64
    one = 1 << (bits + guard)

    def arctan_inverse(x: int) -> int:
        total = term = one // x
        n, sign = 1, -1
        while term:
            term //= x * x
            total += sign * (term // (2 * n + 1))
            n, sign = n + 1, -sign
        return total

    return (4 * (4 * arctan_inverse(5) - arctan_inverse(239))) >> guard


# RFC 3526: "The prime is: 2^N - 2^(N-64) - 1 + 2^64 * { [2^(N-130) pi] + k }".
RFC3526 = [(DhGroupId.MODP_2048, 2048, 124476), (DhGroupId.MODP_3072, 3072, 1690314)]
RFC3526 += [(DhGroupId.MODP_4096, 4096, 240904)]


@pytest.mark.parametrize("group_id,bits,k", RFC3526)
def test_modp_group_primes_rfc3526(group_id: DhGroupId, bits: int, k: int) -> None:
    """Each MODP group's prime is RFC 3526's formula with its k, and its generator is 2: a
    key's public value is 2^x mod p, a shared secret (y^x mod p) is left-padded to the
    prime's length."""
    p = 2**bits - 2 ** (bits - 64) - 1 + 2**64 * (_pi_bits(bits - 130) + k)
    group = DH_GROUPS[group_id]
    assert group.public_value_length == bits // 8
    x = int.from_bytes(b"\x5a" * 40, "big")
    y = int.from_bytes(b"\xa5" * 40, "big")
    ours = group.load(x.to_bytes(40, "big"))
    theirs = group.load(y.to_bytes(40, "big"))
    assert ours.public_value == pow(2, x, p).to_bytes(bits // 8, "big")
    secret = ours.shared_secret(theirs.public_value)
    assert secret == pow(2, x * y, p).to_bytes(bits // 8, "big")
    assert secret == theirs.shared_secret(ours.public_value)
    with pytest.raises(crypto.InvalidPublicValueError):
        ours.shared_secret((p - 1).to_bytes(bits // 8, "big"))  # order 2: rejected


# --- ECP (RFC 5903 encoding) ------------------------------------------------------------

# RFC 5114 appendix A test vectors for the NIST curves of groups 19, 20 and 21 (as carried
# by strongSwan's test_vectors plugin): i, r, g^i, g^r as x | y, and x of g^ir.
ECP_VECTORS = [
    (
        DhGroupId.ECP_256,
        ("814264145f2f56f2e96a8e337a1284993faf432a5abce59e867b7291d507a3af"),
        ("2ce1788ec197e096db95a200cc0ab26a19ce6bccad562b8eee1b593761cf7f41"),
        (
            "2af502f3be8952f2c9b5a8d4160d09e97165be50bc42ae4a5e8d3b4ba83aeb15"
            "eb0faf4ca986c4d38681a0f9872d79d56795bd4bff6e6de3c0f5015ece5efd85"
        ),
        (
            "b120de4aa36492795346e8de6c2c8646ae06aaea279fa775b3ab0715f6ce51b0"
            "9f1b7eece20d7b5ed8ec685fa3f071d83727027092a8411385c34dde5708b2b6"
        ),
        ("dd0f5396219d1ea393310412d19a08f1f5811e9dc8ec8eea7f80d21c820c2788"),
    ),
    (
        DhGroupId.ECP_384,
        (
            "d27335ea71664af244dd14e9fd1260715dfd8a7965571c48d709ee7a7962a156"
            "d706a90cbcb5df2986f05feadb9376f1"
        ),
        (
            "52d1791fdb4b70f89c0f00d456c2f7023b6125262c36a7df1f80231121cce3d3"
            "9be52e00c194a4132c4a6c768bcd94d2"
        ),
        (
            "793148f1787634d5da4c6d9074417d05e057ab62f82054d10ee6b0403d627954"
            "7e6a8ea9d1fd77427d016fe27a8b8c66c6c41294331d23e6f480f4fb4cd40504"
            "c947392e94f4c3f06b8f398bb29e42368f7a685923de3b67baced214a1a1d128"
        ),
        (
            "5cd42ab9c41b5347f74b8d4efb708b3d5b36db65915359b44abc17647b6b9999"
            "789d72a84865ae2f223f12b5a1abc120e171458feaa939aaa3a8bfac46b404bd"
            "8f6d5b348c0fa4d80ceca16356ca933240bde8723415a8ece035b0edf36755de"
        ),
        (
            "5ea1fc4af7256d2055981b110575e0a8cae53160137d904c59d926eb1b8456e4"
            "27aa8a4540884c37de159a58028abc0e"
        ),
    ),
    (
        DhGroupId.ECP_521,
        (
            "0113f82da825735e3d97276683b2b74277bad27335ea71664af2430cc4f33459"
            "b9669ee78b3ffb9b8683015d344dcbfef6fb9af4c6c470be254516cd3c1a1fb4"
            "7362"
        ),
        (
            "00cee3480d8645a17d249f2776d28bae616952d1791fdb4b70f7c3378732aa1b"
            "22928448bcd1dc2496d435b01048066ebe4f72903c361b1a9dc1193dc2c9d089"
            "1b96"
        ),
        (
            "01ebb34dd75721abf8adc9dbed17889cbb9765d90a7c60f2cef007bb0f2b26e1"
            "4881fd4442e689d61cb2dd046ee30e3ffd20f9a45bbdf6413d583a2dbf59924f"
            "d35c00f6b632d194c0388e22d8437e558c552ae195adfd153f92d74908351b2f"
            "8c4eda94edb0916d1b53c020b5eecaed1a5fc38a233e4830587bb2ee3489b3b4"
            "2a5a86a4"
        ),
        (
            "010ebfafc6e85e08d24bfffcc1a4511db0e634beeb1b6dec8c5939ae44766201"
            "af6200430ba97c8ac6a0e9f08b33ce7e9feeb5ba4ee5e0d81510c24295b8a08d"
            "023500a4a6ec300df9e257b0372b5e7abfef093436719a77887ebb0b18cf8099"
            "b9f4212b6e30a1419c18e029d36863cc9d448f4dba4d2a0e60711be572915fbd"
            "4fef2695"
        ),
        (
            "00cdea89621cfa46b132f9e4cfe2261cde2d4368eb5656634c7cc98c7a00cde5"
            "4ed1866a0dd3e6126c9d2f845daff82ceb1da08f5d87521bb0ebeca77911169c"
            "20cc"
        ),
    ),
]


@pytest.mark.parametrize(
    "group_id,i,r,pub_i,pub_r,shared", ECP_VECTORS, ids=[str(v[0].value) for v in ECP_VECTORS]
)
def test_ecp_groups_known_answers(
    group_id: DhGroupId, i: str, r: str, pub_i: str, pub_r: str, shared: str
) -> None:
    """Loading the private values gives the published public values (x | y, each the
    field's length, RFC 5903 section 7) and both sides the published shared x coordinate."""
    group = DH_GROUPS[group_id]
    key_i, key_r = group.load(bytes.fromhex(i)), group.load(bytes.fromhex(r))
    assert key_i.public_value.hex() == pub_i and key_r.public_value.hex() == pub_r
    assert len(key_i.public_value) == group.public_value_length
    assert key_i.shared_secret(bytes.fromhex(pub_r)).hex() == shared
    assert key_r.shared_secret(bytes.fromhex(pub_i)).hex() == shared


# --- HMAC-SHA1 (legacy) -----------------------------------------------------------------

RFC2202 = [
    (b"\x0b" * 20, b"Hi There", "b617318655057264e28bc0b6fb378c8ef146be00"),
    (b"Jefe", b"what do ya want for nothing?", "effcdf6ae5eb2fa2d27416d5f184df9c259a7c79"),
    (b"\x0c" * 20, b"Test With Truncation", "4c1a03424b55e07fe7f27be1d58bb9324a9a5a04"),
]


@pytest.mark.parametrize("key,data,digest", RFC2202)
def test_hmac_sha1_prf_and_integrity(key: bytes, data: bytes, digest: str) -> None:
    """PRF_HMAC_SHA1 is RFC 2202's HMAC-SHA1 (20-octet keys, used for SK_d etc.);
    AUTH_HMAC_SHA1_96 is it truncated to 96 bits (RFC 2404) with a 160-bit key."""
    prf = PRF_ALGORITHMS[PrfId.HMAC_SHA1]
    assert prf(key, data).hex() == digest and prf.key_length == 20
    integ = INTEGRITY_ALGORITHMS[IntegrityId.HMAC_SHA1_96]
    assert integ.compute(key, data).hex() == digest[:24]
    assert integ.key_length == 20 and integ.icv_length == 12
    assert integ.verify(key, data, bytes.fromhex(digest[:24]))


def test_sha1_suites_are_legacy() -> None:
    """SHA-1 suites parse and are marked legacy; SHA-2 suites are not."""
    (cbc,) = parse_ike_suites("aes128-sha1-modp2048")
    assert cbc.prf == PrfId.HMAC_SHA1 and cbc.integrity == IntegrityId.HMAC_SHA1_96
    assert cbc.legacy and str(cbc) == "aes128-sha1-modp2048"
    (esp,) = parse_child_suites("aes128-sha1")
    assert esp.legacy and esp.keymat_length == 16 + 20
    assert not parse_ike_suites("aes128-sha256-modp2048")[0].legacy
    (prf_only,) = parse_ike_suites("aes256gcm16-prfsha1-ecp521")
    assert prf_only.legacy and prf_only.integrity is None
