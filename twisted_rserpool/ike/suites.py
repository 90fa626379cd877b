"""The transforms we implement, as suites (RFC 7296 3.3): what each type and protocol is
numbered, which transforms we prefer, and the algorithm sets built from them.

A *suite* is one complete choice of transforms (what both sides end up using); a
*proposal* is what travels in an SA payload, possibly offering several transforms of each
type. An *algorithm set* is every combination of some transforms of each type, as a tuple
of suites in our order of preference (``ike_suite_set``, ``child_suite_set``); the defaults
(``IKE_ALGORITHMS``, ``ESP_ALGORITHMS``) are everything we implement, strong first.
``parse_ike_suites`` and ``parse_child_suites`` read strongSwan-style names into suites.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from twisted_rserpool.ike.crypto import (
    INTEGRITY_ALGORITHMS,
    PRF_ALGORITHMS,
    DhGroupId,
    Encryption,
    EncryptionId,
    Integrity,
    IntegrityId,
    Prf,
    PrfId,
    encryption,
)
from twisted_rserpool.ike.suite_names import (
    NameParts,
    ProposalError,
    name_parts,
    split_names,
    suite_name,
)

__all__ = [
    "DH",
    "DH_PREFERENCE",
    "ENCR",
    "ENCRYPTION_PREFERENCE",
    "ESN",
    "ESN_PREFERENCE",
    "ESP_ALGORITHMS",
    "ESP_TRANSFORM_TYPES",
    "IKE_ALGORITHMS",
    "IKE_TRANSFORM_TYPES",
    "INTEG",
    "INTEGRITY_PREFERENCE",
    "LEGACY_TRANSFORMS",
    "NEEDS_KEY_LENGTH",
    "PRF",
    "PRF_PREFERENCE",
    "PROTO_ESP",
    "PROTO_IKE",
    "ChildSuite",
    "IkeSuite",
    "OfferedProposal",
    "OfferedTransform",
    "child_suite_set",
    "ike_suite_set",
    "parse_child_suites",
    "parse_ike_suites",
]

# Transform types and protocol IDs (RFC 7296 section 3.3).
ENCR, PRF, INTEG, DH, ESN = 1, 2, 3, 4, 5
PROTO_IKE, PROTO_ESP = 1, 3

IKE_TRANSFORM_TYPES = frozenset((ENCR, PRF, INTEG, DH))
"""The transform types an IKE proposal may carry (RFC 7296 3.3.3); a proposal with any
other type is unacceptable (3.3.6)."""
ESP_TRANSFORM_TYPES = frozenset((ENCR, INTEG, DH, ESN))
"""The transform types an ESP proposal may carry (RFC 7296 3.3.3)."""
NEEDS_KEY_LENGTH = frozenset((EncryptionId.AES_CBC, EncryptionId.AES_GCM_16))
"""Transforms whose Key Length attribute is mandatory (RFC 7296 3.3.5): without it the
proposal MUST be rejected."""


@dataclass(frozen=True)
class OfferedTransform:
    """One transform of a proposal: type, ID and the Key Length attribute (or None)."""

    type: int
    id: int
    key_length: int | None = None


@dataclass(frozen=True)
class OfferedProposal:
    """One proposal substructure of an SA payload."""

    number: int
    protocol: int
    spi: bytes
    transforms: tuple[OfferedTransform, ...]


class _BaseSuite:
    """What the suites of both protocols share: the cipher, and their transforms."""

    encryption: EncryptionId
    key_bits: int

    @property
    def encryption_transform(self) -> Encryption:
        """The Encryption value object."""
        return encryption(self.encryption, self.key_bits)

    @property
    def legacy(self) -> bool:
        """Whether the suite uses a transform documented as weak (SHA-1)."""
        return bool(LEGACY_TRANSFORMS & set(self.transforms()))

    def transforms(self) -> tuple[OfferedTransform, ...]:
        """This suite as the transforms of a proposal."""
        return _transforms(self)

    def _encryption_transform(self) -> OfferedTransform:
        key_length = self.encryption_transform.key_length_attribute
        return OfferedTransform(ENCR, self.encryption, key_length)

    def _build_transforms(self) -> tuple[OfferedTransform, ...]:
        raise NotImplementedError


@functools.lru_cache(maxsize=2048)
def _transforms(suite: _BaseSuite) -> tuple[OfferedTransform, ...]:
    return suite._build_transforms()


@dataclass(frozen=True)
class IkeSuite(_BaseSuite):
    """The transforms of an IKE SA."""

    encryption: EncryptionId
    key_bits: int
    prf: PrfId
    integrity: IntegrityId | None
    dh: DhGroupId

    @property
    def prf_transform(self) -> Prf:
        """The Prf value object."""
        return PRF_ALGORITHMS[self.prf]

    @property
    def integrity_transform(self) -> Integrity | None:
        """The Integrity value object (None with an AEAD cipher)."""
        return INTEGRITY_ALGORITHMS[self.integrity] if self.integrity is not None else None

    def _build_transforms(self) -> tuple[OfferedTransform, ...]:
        out = [self._encryption_transform(), OfferedTransform(PRF, self.prf)]
        if self.integrity is not None:
            out.append(OfferedTransform(INTEG, self.integrity))
        out.append(OfferedTransform(DH, self.dh))
        return tuple(out)

    def __str__(self) -> str:
        return suite_name(self.encryption, self.key_bits, self.integrity, self.prf, self.dh)


@dataclass(frozen=True)
class ChildSuite(_BaseSuite):
    """The transforms of an ESP CHILD_SA (no DH: the initial CHILD_SA uses the IKE SA's)."""

    encryption: EncryptionId
    key_bits: int
    integrity: IntegrityId | None
    esn: bool = False

    @property
    def keymat_length(self) -> int:
        """Octets of KEYMAT for one direction (encryption key, salt, integrity key)."""
        integ = INTEGRITY_ALGORITHMS[self.integrity].key_length if self.integrity else 0
        return self.encryption_transform.key_material_length + integ

    def _build_transforms(self) -> tuple[OfferedTransform, ...]:
        out = [self._encryption_transform()]
        if self.integrity is not None:
            out.append(OfferedTransform(INTEG, self.integrity))
        out.append(OfferedTransform(ESN, 1 if self.esn else 0))
        return tuple(out)

    def __str__(self) -> str:
        name = suite_name(self.encryption, self.key_bits, self.integrity, None, None)
        return name + ("-esn" if self.esn else "")


# --- preference orders -------------------------------------------------------------------
# Strong first: larger keys, hashes and groups before smaller ones; at equal strength AEAD
# before encrypt-then-MAC, and the faster group first. SHA-1 (RFC 8247 and RFC 8221:
# MUST-) comes last and is accepted for old clients only. docs/ike.md has the table.

ENCRYPTION_PREFERENCE: tuple[tuple[EncryptionId, int], ...] = (
    (EncryptionId.AES_GCM_16, 256),
    (EncryptionId.CHACHA20_POLY1305, 256),
    (EncryptionId.AES_CBC, 256),
    (EncryptionId.AES_GCM_16, 128),
    (EncryptionId.AES_CBC, 128),
)
"""Encryption transforms (ID, key bits), most preferred first; the same for IKE and ESP."""

PRF_PREFERENCE: tuple[PrfId, ...] = (
    PrfId.HMAC_SHA2_512,
    PrfId.HMAC_SHA2_384,
    PrfId.HMAC_SHA2_256,
    PrfId.HMAC_SHA1,
)
"""PRFs, most preferred first (PRF_HMAC_SHA1 is legacy)."""

INTEGRITY_PREFERENCE: tuple[IntegrityId, ...] = (
    IntegrityId.HMAC_SHA2_512_256,
    IntegrityId.HMAC_SHA2_384_192,
    IntegrityId.HMAC_SHA2_256_128,
    IntegrityId.HMAC_SHA1_96,
)
"""Integrity transforms for the non-AEAD ciphers, most preferred first (SHA1_96 is legacy)."""

DH_PREFERENCE: tuple[DhGroupId, ...] = (
    DhGroupId.ECP_521,
    DhGroupId.ECP_384,
    DhGroupId.MODP_4096,
    DhGroupId.CURVE25519,
    DhGroupId.ECP_256,
    DhGroupId.MODP_3072,
    DhGroupId.MODP_2048,
)
"""Diffie-Hellman groups, strongest first. A responder takes the initiator's KE group
whenever an offered proposal allows it (no INVALID_KE_PAYLOAD round trip); this order
decides only which group INVALID_KE_PAYLOAD asks for, and what our initiator guesses."""

ESN_PREFERENCE: tuple[bool, ...] = (True, False)
"""Extended Sequence Numbers before 32-bit ones (RFC 4303: no rekey forced at 2^32 packets)."""

LEGACY_TRANSFORMS: frozenset[OfferedTransform] = frozenset(
    (OfferedTransform(PRF, PrfId.HMAC_SHA1), OfferedTransform(INTEG, IntegrityId.HMAC_SHA1_96))
)
"""Transforms accepted by default for old clients but weak (RFC 8247, RFC 8221: MUST-)."""


# --- algorithm sets ----------------------------------------------------------------------


def ike_suite_set(
    encryptions: Iterable[tuple[EncryptionId, int]] = ENCRYPTION_PREFERENCE,
    prfs: Iterable[PrfId] = PRF_PREFERENCE,
    integrities: Iterable[IntegrityId] = INTEGRITY_PREFERENCE,
    groups: Iterable[DhGroupId] = DH_PREFERENCE,
) -> tuple[IkeSuite, ...]:
    """Every IKE suite combining the given transforms, in preference order.

    The order is lexicographic in (encryption, PRF, integrity, group), so for an offered
    proposal the most preferred suite it contains has, type by type, our most preferred
    offered transform. AEAD ciphers combine with no integrity transform.
    """
    prf_list, integ_list, group_list = tuple(prfs), tuple(integrities), tuple(groups)
    suites: list[IkeSuite] = []
    for encr, bits in encryptions:
        aead = encryption(encr, bits).aead
        for prf in prf_list:
            for integ in (None,) if aead else integ_list:
                suites.extend(IkeSuite(encr, bits, prf, integ, dh) for dh in group_list)
    return tuple(suites)


def child_suite_set(
    encryptions: Iterable[tuple[EncryptionId, int]] = ENCRYPTION_PREFERENCE,
    integrities: Iterable[IntegrityId] = INTEGRITY_PREFERENCE,
    esn: Iterable[bool] = ESN_PREFERENCE,
) -> tuple[ChildSuite, ...]:
    """Every ESP suite combining the given transforms, in preference order."""
    integ_list, esn_list = tuple(integrities), tuple(esn)
    suites: list[ChildSuite] = []
    for encr, bits in encryptions:
        aead = encryption(encr, bits).aead
        for integ in (None,) if aead else integ_list:
            suites.extend(ChildSuite(encr, bits, integ, e) for e in esn_list)
    return tuple(suites)


IKE_ALGORITHMS: tuple[IkeSuite, ...] = ike_suite_set()
"""Every IKE suite we implement, most preferred first (the gateway's default)."""

ESP_ALGORITHMS: tuple[ChildSuite, ...] = child_suite_set()
"""Every ESP suite we negotiate, most preferred first (the gateway's default)."""


# --- suites from names -------------------------------------------------------------------

_AnySuite = TypeVar("_AnySuite", IkeSuite, ChildSuite)


def _parse(
    text: str,
    *,
    esp: bool,
    default: tuple[_AnySuite, ...],
    combine: Callable[[str, NameParts], Sequence[_AnySuite]],
) -> tuple[_AnySuite, ...]:
    """The suites of every name in ``text`` (``default`` for ``default``), each once."""
    suites: list[_AnySuite] = []
    for name in split_names(text):
        suites.extend(default if name == "default" else combine(name, name_parts(name, esp=esp)))
    return tuple(dict.fromkeys(suites))


def _ike_suites_of(name: str, parts: NameParts) -> tuple[IkeSuite, ...]:
    hashes = parts.hashes
    prfs = parts.prfs or [prf for _, prf in hashes]
    if encryption(*parts.encryptions[0]).aead:
        integs: list[IntegrityId] = []
    else:
        integs = [integ for integ, _ in hashes]
        if not integs:
            raise ProposalError(f"{name!r} needs an integrity algorithm with AES-CBC")
    if not prfs or not parts.groups:
        raise ProposalError(f"{name!r} needs a PRF (or hash) and a DH group")
    return ike_suite_set(parts.encryptions, prfs, integs, parts.groups)


def _child_suites_of(name: str, parts: NameParts) -> tuple[ChildSuite, ...]:
    aead = encryption(*parts.encryptions[0]).aead
    if aead and parts.hashes:
        raise ProposalError(f"{name!r}: an AEAD cipher takes no integrity algorithm")
    if not aead and not parts.hashes:
        raise ProposalError(f"{name!r} needs an integrity algorithm with AES-CBC")
    integs = [integ for integ, _ in parts.hashes]
    return child_suite_set(parts.encryptions, integs, parts.esn or [False])


def parse_ike_suites(text: str) -> tuple[IkeSuite, ...]:
    """IKE suites from a comma-separated list of strongSwan-style names.

    Each name is ``encryption-[integrity]-[prfHASH]-dhgroup``, for example
    ``aes128-sha256-modp2048`` or ``aes256gcm16-prfsha384-x25519``: exactly one suite. With
    AES-CBC the hash names both the integrity transform and (unless ``prf...`` is given)
    the PRF; with an AEAD cipher a plain hash name is taken as the PRF. As in strongSwan a
    name may list several algorithms of a type (``aes128-aes256-sha256-x25519-ecp256``):
    every combination, in the order written. ``default`` is every suite we implement.
    """
    return _parse(text, esp=False, default=IKE_ALGORITHMS, combine=_ike_suites_of)


def parse_child_suites(text: str) -> tuple[ChildSuite, ...]:
    """ESP suites from strongSwan-style names such as ``aes128-sha256`` or ``aes256gcm16``.

    ``-esn`` asks for Extended Sequence Numbers, ``-noesn`` (the default) for 32-bit ones,
    both for either; several algorithms of a type give every combination, and ``default``
    is every suite we negotiate.
    """
    return _parse(text, esp=True, default=ESP_ALGORITHMS, combine=_child_suites_of)
