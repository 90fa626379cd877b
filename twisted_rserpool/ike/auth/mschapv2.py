"""MS-CHAP-V2 (RFC 2759) and its master keys (RFC 3079 section 3), for EAP-MSCHAPv2.

MD4 is written out here because OpenSSL 3 no longer offers it by default; DES is
single-key Triple DES (K1 = K2 = K3), which is DES.
"""

from __future__ import annotations

import hashlib
import hmac
import struct

from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
from cryptography.hazmat.primitives.ciphers import Cipher, modes

__all__ = [
    "asymmetric_start_key",
    "authenticator_response",
    "challenge_hash",
    "check_authenticator_response",
    "generate_nt_response",
    "master_key",
    "md4",
    "msk",
    "nt_password_hash",
]

_MASK = 0xFFFFFFFF


def _rotl(x: int, n: int) -> int:
    return ((x << n) | (x >> (32 - n))) & _MASK


def md4(data: bytes) -> bytes:
    """MD4 (RFC 1320) of ``data``."""
    length = len(data) * 8
    data += b"\x80" + bytes((55 - len(data)) % 64) + struct.pack("<Q", length)
    a, b, c, d = 0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476
    for offset in range(0, len(data), 64):
        x = struct.unpack("<16I", data[offset : offset + 64])
        aa, bb, cc, dd = a, b, c, d
        for i in (0, 4, 8, 12):
            a = _rotl((a + ((b & c) | (~b & d)) + x[i]) & _MASK, 3)
            d = _rotl((d + ((a & b) | (~a & c)) + x[i + 1]) & _MASK, 7)
            c = _rotl((c + ((d & a) | (~d & b)) + x[i + 2]) & _MASK, 11)
            b = _rotl((b + ((c & d) | (~c & a)) + x[i + 3]) & _MASK, 19)
        for i in (0, 1, 2, 3):
            a = _rotl((a + ((b & c) | (b & d) | (c & d)) + x[i] + 0x5A827999) & _MASK, 3)
            d = _rotl((d + ((a & b) | (a & c) | (b & c)) + x[i + 4] + 0x5A827999) & _MASK, 5)
            c = _rotl((c + ((d & a) | (d & b) | (a & b)) + x[i + 8] + 0x5A827999) & _MASK, 9)
            b = _rotl((b + ((c & d) | (c & a) | (d & a)) + x[i + 12] + 0x5A827999) & _MASK, 13)
        for i in (0, 2, 1, 3):
            a = _rotl((a + (b ^ c ^ d) + x[i] + 0x6ED9EBA1) & _MASK, 3)
            d = _rotl((d + (a ^ b ^ c) + x[i + 8] + 0x6ED9EBA1) & _MASK, 9)
            c = _rotl((c + (d ^ a ^ b) + x[i + 4] + 0x6ED9EBA1) & _MASK, 11)
            b = _rotl((b + (c ^ d ^ a) + x[i + 12] + 0x6ED9EBA1) & _MASK, 15)
        a, b, c, d = (a + aa) & _MASK, (b + bb) & _MASK, (c + cc) & _MASK, (d + dd) & _MASK
    return struct.pack("<4I", a, b, c, d)


def nt_password_hash(password: str) -> bytes:
    """NtPasswordHash: MD4 of the password in UTF-16LE (RFC 2759 section 8.3)."""
    return md4(password.encode("utf-16-le"))


def challenge_hash(peer_challenge: bytes, authenticator_challenge: bytes, username: bytes) -> bytes:
    """ChallengeHash: the first 8 octets of SHA-1 over both challenges and the user name (8.2)."""
    return hashlib.sha1(peer_challenge + authenticator_challenge + username).digest()[:8]


def _des_key(seven: bytes) -> bytes:
    """56 key bits spread over 8 octets with odd parity (RFC 2759 section 9.3)."""
    bits = int.from_bytes(seven, "big")
    out = bytearray()
    for i in range(8):
        byte = ((bits >> (49 - 7 * i)) & 0x7F) << 1
        out.append(byte | (bin(byte).count("1") % 2 == 0))
    return bytes(out)


def _des(key7: bytes, block: bytes) -> bytes:
    encryptor = Cipher(TripleDES(_des_key(key7) * 3), modes.ECB()).encryptor()
    return encryptor.update(block) + encryptor.finalize()


def _challenge_response(challenge: bytes, password_hash: bytes) -> bytes:
    """ChallengeResponse: three DES encryptions of the challenge (RFC 2759 section 8.5)."""
    z = password_hash + bytes(5)
    return _des(z[0:7], challenge) + _des(z[7:14], challenge) + _des(z[14:21], challenge)


def generate_nt_response(
    authenticator_challenge: bytes, peer_challenge: bytes, username: bytes, password: str
) -> bytes:
    """GenerateNTResponse: the peer's 24-octet NT-Response (RFC 2759 section 8.1)."""
    challenge = challenge_hash(peer_challenge, authenticator_challenge, username)
    return _challenge_response(challenge, nt_password_hash(password))


def nt_response_from_hash(
    authenticator_challenge: bytes, peer_challenge: bytes, username: bytes, password_hash: bytes
) -> bytes:
    """GenerateNTResponse from the NtPasswordHash (a store may keep only that)."""
    challenge = challenge_hash(peer_challenge, authenticator_challenge, username)
    return _challenge_response(challenge, password_hash)


_MAGIC1 = b"Magic server to client signing constant"
_MAGIC2 = b"Pad to make it do more than one iteration"


def authenticator_response(
    password_hash: bytes,
    nt_response: bytes,
    peer_challenge: bytes,
    authenticator_challenge: bytes,
    username: bytes,
) -> bytes:
    """GenerateAuthenticatorResponse: ``S=`` and 40 upper-case hex digits (RFC 2759 8.7)."""
    hash_hash = md4(password_hash)
    digest = hashlib.sha1(hash_hash + nt_response + _MAGIC1).digest()
    challenge = challenge_hash(peer_challenge, authenticator_challenge, username)
    digest = hashlib.sha1(digest + challenge + _MAGIC2).digest()
    return b"S=" + digest.hex().upper().encode("ascii")


def check_authenticator_response(expected: bytes, received: bytes) -> bool:
    """CheckAuthenticatorResponse, in constant time (hex digits compared case-blind)."""
    return hmac.compare_digest(expected.upper(), received[:42].upper())


# RFC 3079 section 3.4.
_KEY_MAGIC1 = b"This is the MPPE Master Key"
_KEY_MAGIC2 = (
    b"On the client side, this is the send key; on the server side, it is the receive key."
)
_KEY_MAGIC3 = (
    b"On the client side, this is the receive key; on the server side, it is the send key."
)
_SHS_PAD1 = bytes(40)
_SHS_PAD2 = b"\xf2" * 40


def master_key(password_hash_hash: bytes, nt_response: bytes) -> bytes:
    """GetMasterKey: 16 octets from PasswordHashHash and the NT-Response (RFC 3079 3.4)."""
    return hashlib.sha1(password_hash_hash + nt_response + _KEY_MAGIC1).digest()[:16]


def asymmetric_start_key(master: bytes, *, send: bool, server: bool, length: int = 16) -> bytes:
    """GetAsymmetricStartKey (RFC 3079 section 3.4): one direction's master session key."""
    magic = _KEY_MAGIC3 if send == server else _KEY_MAGIC2
    return hashlib.sha1(master + _SHS_PAD1 + magic + _SHS_PAD2).digest()[:length]


def msk(password_hash: bytes, nt_response: bytes) -> bytes:
    """The 32-octet EAP-MSCHAPv2 MSK: the peer's send key, then its receive key.

    That is the server's MS-MPPE-Recv-Key then MS-MPPE-Send-Key (as hostapd and strongSwan
    compute it); used as the shared secret of the IKE AUTH (RFC 7296 section 2.16).
    """
    master = master_key(md4(password_hash), nt_response)
    return asymmetric_start_key(master, send=True, server=False) + asymmetric_start_key(
        master, send=False, server=False
    )
