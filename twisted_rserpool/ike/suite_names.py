"""strongSwan-style names of transforms (``aes128``, ``sha256``, ``prfsha384``, ``x25519``,
``esn``): a suite's name, and the algorithms a name lists.

A name is a ``-``-separated list of algorithm keywords (``aes256gcm16-prfsha384-x25519``);
a list of names is separated by commas. The keywords are strongSwan's, with its aliases
(``aes128gcm128`` for ``aes128gcm16``, ``curve25519`` for ``x25519``). How a name's
algorithms combine into suites is ``twisted_rserpool.ike.suites``' business.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import NamedTuple, TypeVar

from twisted_rserpool.ike.crypto import DhGroupId, EncryptionId, IntegrityId, PrfId, encryption

__all__ = ["NameParts", "ProposalError", "name_parts", "split_names", "suite_name"]


class ProposalError(ValueError):
    """A suite name that does not describe a suite we implement."""


_ENCR_NAMES = {
    "aes128": (EncryptionId.AES_CBC, 128),
    "aes256": (EncryptionId.AES_CBC, 256),
    "aes128gcm16": (EncryptionId.AES_GCM_16, 128),
    "aes256gcm16": (EncryptionId.AES_GCM_16, 256),
    "aes128gcm128": (EncryptionId.AES_GCM_16, 128),
    "aes256gcm128": (EncryptionId.AES_GCM_16, 256),
    "chacha20poly1305": (EncryptionId.CHACHA20_POLY1305, 256),
}
_HASH_NAMES = {
    "sha1": (IntegrityId.HMAC_SHA1_96, PrfId.HMAC_SHA1),
    "sha256": (IntegrityId.HMAC_SHA2_256_128, PrfId.HMAC_SHA2_256),
    "sha384": (IntegrityId.HMAC_SHA2_384_192, PrfId.HMAC_SHA2_384),
    "sha512": (IntegrityId.HMAC_SHA2_512_256, PrfId.HMAC_SHA2_512),
}
_PRF_NAMES = {"prf" + name: prf for name, (_, prf) in _HASH_NAMES.items()}
_DH_NAMES = {
    "modp2048": DhGroupId.MODP_2048,
    "modp3072": DhGroupId.MODP_3072,
    "modp4096": DhGroupId.MODP_4096,
    "ecp256": DhGroupId.ECP_256,
    "ecp384": DhGroupId.ECP_384,
    "ecp521": DhGroupId.ECP_521,
    "curve25519": DhGroupId.CURVE25519,
    "x25519": DhGroupId.CURVE25519,
}
_ENCR_BY_VALUE = {
    (EncryptionId.AES_CBC, 128): "aes128",
    (EncryptionId.AES_CBC, 256): "aes256",
    (EncryptionId.AES_GCM_16, 128): "aes128gcm16",
    (EncryptionId.AES_GCM_16, 256): "aes256gcm16",
    (EncryptionId.CHACHA20_POLY1305, 256): "chacha20poly1305",
}
_HASH_BY_INTEG = {v[0]: k for k, v in _HASH_NAMES.items()}
_HASH_BY_PRF = {v[1]: k for k, v in _HASH_NAMES.items()}
_DH_BY_VALUE = {
    DhGroupId.MODP_2048: "modp2048",
    DhGroupId.MODP_3072: "modp3072",
    DhGroupId.MODP_4096: "modp4096",
    DhGroupId.ECP_256: "ecp256",
    DhGroupId.ECP_384: "ecp384",
    DhGroupId.ECP_521: "ecp521",
    DhGroupId.CURVE25519: "x25519",
}

_T = TypeVar("_T")


def suite_name(
    encr: EncryptionId,
    bits: int,
    integ: IntegrityId | None,
    prf: PrfId | None,
    dh: DhGroupId | None,
) -> str:
    """The name of a suite of these transforms (``prf...`` only where the hash does not
    name it already; ``None`` leaves a type out)."""
    parts = [_ENCR_BY_VALUE[(encr, bits)]]
    if integ is not None:
        parts.append(_HASH_BY_INTEG[integ])
        if prf is not None and _HASH_NAMES[_HASH_BY_INTEG[integ]][1] != prf:
            parts.append("prf" + _HASH_BY_PRF[prf])
    elif prf is not None:
        parts.append("prf" + _HASH_BY_PRF[prf])
    if dh is not None:
        parts.append(_DH_BY_VALUE[dh])
    return "-".join(parts)


def _unique(items: Iterable[_T]) -> list[_T]:
    return list(dict.fromkeys(items))


class NameParts(NamedTuple):
    """The algorithms one name lists, type by type, in the order written, each once."""

    encryptions: list[tuple[EncryptionId, int]]
    hashes: list[tuple[IntegrityId, PrfId]]
    """Each hash named (``sha256``): its integrity transform and its PRF."""
    prfs: list[PrfId]
    groups: list[DhGroupId]
    esn: list[bool]


def name_parts(name: str, *, esp: bool) -> NameParts:
    """The algorithms of one IKE (``esp`` False) or ESP suite name.

    Raises ProposalError for an unknown keyword or one of the other protocol (a PRF or a DH
    group in an ESP name, ``esn`` in an IKE name), for a name without encryption, and for
    one that mixes AEAD and non-AEAD ciphers (RFC 7296 3.3 keeps them in separate proposals).
    """
    encrs: list[tuple[EncryptionId, int]] = []
    hashes: list[tuple[IntegrityId, PrfId]] = []
    prfs: list[PrfId] = []
    groups: list[DhGroupId] = []
    esn: list[bool] = []
    for token in name.split("-"):
        if token in _ENCR_NAMES:
            encrs.append(_ENCR_NAMES[token])
        elif token in _HASH_NAMES:
            hashes.append(_HASH_NAMES[token])
        elif token in _PRF_NAMES and not esp:
            prfs.append(_PRF_NAMES[token])
        elif token in _DH_NAMES and not esp:
            groups.append(_DH_NAMES[token])
        elif token in ("esn", "noesn") and esp:
            esn.append(token == "esn")
        else:
            raise ProposalError(f"unknown algorithm {token!r} in {name!r}")
    if not encrs:
        raise ProposalError(f"no encryption algorithm in {name!r}")
    kinds = {encryption(e, bits).aead for e, bits in encrs}
    if len(kinds) > 1:
        raise ProposalError(f"{name!r} mixes AEAD and non-AEAD ciphers (RFC 7296 3.3)")
    return NameParts(_unique(encrs), _unique(hashes), _unique(prfs), _unique(groups), _unique(esn))


def split_names(text: str) -> list[str]:
    """The names of a comma-separated list, lower-cased; ProposalError when there are none."""
    names = [part.strip().lower() for part in text.split(",") if part.strip()]
    if not names:
        raise ProposalError("no proposals given")
    return names
