"""Cryptographic suites, their strongSwan-style names, and SA proposal selection (RFC 7296 2.7,
3.3).

A *suite* is one complete choice of transforms (what both sides end up using); a
*proposal* is what travels in an SA payload, possibly offering several transforms of each
type. An *algorithm set* is every combination of some transforms of each type, as a tuple
of suites in our order of preference (``ike_suite_set``, ``child_suite_set``); the defaults
(``IKE_ALGORITHMS``, ``ESP_ALGORITHMS``) are everything we implement, strong first.

``select_ike`` and ``select_child`` pick, for a responder, the first offered proposal that
contains one of our suites, and within it our most preferred suite: one transform of each
type, answered unchanged (Key Length included). ``ike_proposal`` and ``child_proposal``
encode our suites compactly: an algorithm set becomes one proposal for its AEAD ciphers
and one for the others (RFC 7296 3.3 requires them apart), not one proposal per suite.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from twisted_rserpool.ike.crypto import (
    DH_GROUPS,
    INTEGRITY_ALGORITHMS,
    PRF_ALGORITHMS,
    DhGroupId,
    Encryption,
    EncryptionId,
    Integrity,
    IntegrityId,
    Prf,
    PrfId,
    UnsupportedTransformError,
    encryption,
)

__all__ = [
    "DH_PREFERENCE",
    "ENCRYPTION_PREFERENCE",
    "ESN_PREFERENCE",
    "ESP_ALGORITHMS",
    "IKE_ALGORITHMS",
    "INTEGRITY_PREFERENCE",
    "LEGACY_TRANSFORMS",
    "PRF_PREFERENCE",
    "ChildSuite",
    "IkeSuite",
    "OfferedProposal",
    "OfferedTransform",
    "ProposalError",
    "child_proposal",
    "child_suite_from_proposal",
    "child_suite_set",
    "ike_proposal",
    "ike_suite_set",
    "parse_child_suites",
    "parse_ike_suites",
    "select_child",
    "select_ike",
    "suite_from_proposal",
]

# Transform types and protocol IDs (RFC 7296 section 3.3).
ENCR, PRF, INTEG, DH, ESN = 1, 2, 3, 4, 5
PROTO_IKE, PROTO_ESP = 1, 3

# The transform types a proposal of each protocol may carry (RFC 7296 3.3.3); a proposal
# with any other type is unacceptable (3.3.6).
_IKE_TYPES = frozenset((ENCR, PRF, INTEG, DH))
_ESP_TYPES = frozenset((ENCR, INTEG, DH, ESN))
# Transforms whose Key Length attribute is mandatory (RFC 7296 3.3.5): without it the
# proposal MUST be rejected.
_NEEDS_KEY_LENGTH = frozenset((EncryptionId.AES_CBC, EncryptionId.AES_GCM_16))


class ProposalError(ValueError):
    """A suite name that does not describe a suite we implement."""


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


def _encr_transform(encr: EncryptionId, key_bits: int) -> OfferedTransform:
    return OfferedTransform(ENCR, encr, encryption(encr, key_bits).key_length_attribute)


@dataclass(frozen=True)
class IkeSuite:
    """The transforms of an IKE SA."""

    encryption: EncryptionId
    key_bits: int
    prf: PrfId
    integrity: IntegrityId | None
    dh: DhGroupId

    @property
    def encryption_transform(self) -> Encryption:
        """The Encryption value object."""
        return encryption(self.encryption, self.key_bits)

    @property
    def prf_transform(self) -> Prf:
        """The Prf value object."""
        return PRF_ALGORITHMS[self.prf]

    @property
    def integrity_transform(self) -> Integrity | None:
        """The Integrity value object (None with an AEAD cipher)."""
        return INTEGRITY_ALGORITHMS[self.integrity] if self.integrity is not None else None

    @property
    def legacy(self) -> bool:
        """Whether the suite uses a transform documented as weak (SHA-1)."""
        return bool(LEGACY_TRANSFORMS & set(self.transforms()))

    def transforms(self) -> tuple[OfferedTransform, ...]:
        """This suite as the transforms of a proposal."""
        return _ike_transforms(self)

    def _build_transforms(self) -> tuple[OfferedTransform, ...]:
        out = [_encr_transform(self.encryption, self.key_bits)]
        out.append(OfferedTransform(PRF, self.prf))
        if self.integrity is not None:
            out.append(OfferedTransform(INTEG, self.integrity))
        out.append(OfferedTransform(DH, self.dh))
        return tuple(out)

    def __str__(self) -> str:
        return _name(self.encryption, self.key_bits, self.integrity, self.prf, self.dh)


@dataclass(frozen=True)
class ChildSuite:
    """The transforms of an ESP CHILD_SA (no DH: the initial CHILD_SA uses the IKE SA's)."""

    encryption: EncryptionId
    key_bits: int
    integrity: IntegrityId | None
    esn: bool = False

    @property
    def encryption_transform(self) -> Encryption:
        """The Encryption value object."""
        return encryption(self.encryption, self.key_bits)

    @property
    def keymat_length(self) -> int:
        """Octets of KEYMAT for one direction (encryption key, salt, integrity key)."""
        integ = INTEGRITY_ALGORITHMS[self.integrity].key_length if self.integrity else 0
        return self.encryption_transform.key_material_length + integ

    @property
    def legacy(self) -> bool:
        """Whether the suite uses a transform documented as weak (SHA-1)."""
        return bool(LEGACY_TRANSFORMS & set(self.transforms()))

    def transforms(self) -> tuple[OfferedTransform, ...]:
        """This suite as the transforms of a proposal."""
        return _child_transforms(self)

    def _build_transforms(self) -> tuple[OfferedTransform, ...]:
        out = [_encr_transform(self.encryption, self.key_bits)]
        if self.integrity is not None:
            out.append(OfferedTransform(INTEG, self.integrity))
        out.append(OfferedTransform(ESN, 1 if self.esn else 0))
        return tuple(out)

    def __str__(self) -> str:
        name = _name(self.encryption, self.key_bits, self.integrity, None, None)
        return name + ("-esn" if self.esn else "")


_T = TypeVar("_T")
_Suite = TypeVar("_Suite", IkeSuite, ChildSuite)


@functools.lru_cache(maxsize=1024)
def _ike_transforms(suite: IkeSuite) -> tuple[OfferedTransform, ...]:
    return suite._build_transforms()


@functools.lru_cache(maxsize=1024)
def _child_transforms(suite: ChildSuite) -> tuple[OfferedTransform, ...]:
    return suite._build_transforms()


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


# --- names -------------------------------------------------------------------------------

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


def _name(
    encr: EncryptionId,
    bits: int,
    integ: IntegrityId | None,
    prf: PrfId | None,
    dh: DhGroupId | None,
) -> str:
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


def _name_parts(
    name: str, *, esp: bool
) -> tuple[list[tuple[EncryptionId, int]], list[str], list[PrfId], list[DhGroupId], list[bool]]:
    encrs: list[tuple[EncryptionId, int]] = []
    hashes: list[str] = []
    prfs: list[PrfId] = []
    groups: list[DhGroupId] = []
    esn: list[bool] = []
    for token in name.split("-"):
        if token in _ENCR_NAMES:
            encrs.append(_ENCR_NAMES[token])
        elif token in _HASH_NAMES:
            hashes.append(token)
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
    return _unique(encrs), _unique(hashes), _unique(prfs), _unique(groups), _unique(esn)


def parse_ike_suites(text: str) -> tuple[IkeSuite, ...]:
    """IKE suites from a comma-separated list of strongSwan-style names.

    Each name is ``encryption-[integrity]-[prfHASH]-dhgroup``, for example
    ``aes128-sha256-modp2048`` or ``aes256gcm16-prfsha384-x25519``: exactly one suite. With
    AES-CBC the hash names both the integrity transform and (unless ``prf...`` is given)
    the PRF; with an AEAD cipher a plain hash name is taken as the PRF. As in strongSwan a
    name may list several algorithms of a type (``aes128-aes256-sha256-x25519-ecp256``):
    every combination, in the order written. ``default`` is every suite we implement.
    """
    suites: list[IkeSuite] = []
    for name in _split(text):
        if name == "default":
            suites.extend(IKE_ALGORITHMS)
            continue
        encrs, hashes, prfs, groups, _ = _name_parts(name, esp=False)
        aead = encryption(*encrs[0]).aead
        if aead:
            prfs = prfs or [_HASH_NAMES[h][1] for h in hashes]
            integs: list[IntegrityId] = []
        else:
            integs = [_HASH_NAMES[h][0] for h in hashes]
            prfs = prfs or [_HASH_NAMES[h][1] for h in hashes]
            if not integs:
                raise ProposalError(f"{name!r} needs an integrity algorithm with AES-CBC")
        if not prfs or not groups:
            raise ProposalError(f"{name!r} needs a PRF (or hash) and a DH group")
        suites.extend(ike_suite_set(encrs, _unique(prfs), integs, groups))
    return tuple(_unique(suites))


def parse_child_suites(text: str) -> tuple[ChildSuite, ...]:
    """ESP suites from strongSwan-style names such as ``aes128-sha256`` or ``aes256gcm16``.

    ``-esn`` asks for Extended Sequence Numbers, ``-noesn`` (the default) for 32-bit ones,
    both for either; several algorithms of a type give every combination, and ``default``
    is every suite we negotiate.
    """
    suites: list[ChildSuite] = []
    for name in _split(text):
        if name == "default":
            suites.extend(ESP_ALGORITHMS)
            continue
        encrs, hashes, _, _, esn = _name_parts(name, esp=True)
        aead = encryption(*encrs[0]).aead
        if aead and hashes:
            raise ProposalError(f"{name!r}: an AEAD cipher takes no integrity algorithm")
        if not aead and not hashes:
            raise ProposalError(f"{name!r} needs an integrity algorithm with AES-CBC")
        integs = [_HASH_NAMES[h][0] for h in hashes]
        suites.extend(child_suite_set(encrs, integs, esn or [False]))
    return tuple(_unique(suites))


def _split(text: str) -> list[str]:
    names = [part.strip().lower() for part in text.split(",") if part.strip()]
    if not names:
        raise ProposalError("no proposals given")
    return names


# --- encoding our offers -----------------------------------------------------------------


def _compact(suites: Sequence[_Suite]) -> list[tuple[OfferedTransform, ...]] | None:
    """Transform lists of proposals equivalent to ``suites``, AEAD and others apart, or None.

    Possible when, for each of the two kinds, the suites are every combination of their
    transforms; each type then lists its transforms in order of first appearance, so the
    first suite's transforms come first.
    """
    kinds: dict[bool, list[_Suite]] = {}
    for suite in suites:
        kinds.setdefault(suite.encryption_transform.aead, []).append(suite)
    out: list[tuple[OfferedTransform, ...]] = []
    for members in kinds.values():
        by_type: dict[int, list[OfferedTransform]] = {}
        for suite in members:
            for transform in suite.transforms():
                choices = by_type.setdefault(transform.type, [])
                if transform not in choices:
                    choices.append(transform)
        combinations = 1
        for choices in by_type.values():
            combinations *= len(choices)
        if combinations != len(set(members)):
            return None
        out.append(tuple(itertools.chain.from_iterable(by_type.values())))
    return out


def ike_proposal(suites: Iterable[IkeSuite], spi: bytes = b"") -> tuple[OfferedProposal, ...]:
    """Our IKE SA payload for ``suites`` (most preferred first), proposals numbered from 1.

    An algorithm set becomes one proposal per kind of cipher; any other list one proposal
    per suite, so that exactly those suites are offered.
    """
    ordered = tuple(suites)
    groups = _compact(ordered) or [suite.transforms() for suite in ordered]
    return tuple(
        OfferedProposal(number, PROTO_IKE, spi, transforms)
        for number, transforms in enumerate(groups, start=1)
    )


def child_proposal(suites: Iterable[ChildSuite], spi: bytes) -> tuple[OfferedProposal, ...]:
    """Our ESP SA payload for ``suites``, encoded as ``ike_proposal`` encodes IKE suites."""
    ordered = tuple(suites)
    groups = _compact(ordered) or [suite.transforms() for suite in ordered]
    return tuple(
        OfferedProposal(number, PROTO_ESP, spi, transforms)
        for number, transforms in enumerate(groups, start=1)
    )


# --- choosing from an offer --------------------------------------------------------------
#
# The work per offered proposal is bounded by its transforms, not by the size of our set:
# an attacker can fill an IKE_SA_INIT with proposals we refuse, before any cookie. An
# algorithm set (every combination of some transforms, in lexicographic preference order,
# as ike_suite_set builds it) is chosen from type by type; any other list of suites is
# tried suite by suite, after a check that every type has a transform of ours.

_Choice = tuple[int, int | None]
_Choices = dict[int, frozenset[_Choice]]


@dataclass(frozen=True)
class _Index:
    """How to choose from ``ours``: its suites by their transforms; per kind of cipher
    (AEAD or not) and transform type the rank of each transform (its first appearance);
    and whether ``ours`` is an algorithm set in that lexicographic order."""

    suites: dict[tuple[OfferedTransform, ...], IkeSuite | ChildSuite]
    ranks: dict[bool, dict[int, dict[_Choice, int]]]
    encryption_rank: dict[_Choice, int]
    lexicographic: bool


def _build_index(ours: Sequence[_Suite]) -> _Index:
    suites: dict[tuple[OfferedTransform, ...], IkeSuite | ChildSuite] = {}
    ranks: dict[bool, dict[int, dict[_Choice, int]]] = {}
    encryption_rank: dict[_Choice, int] = {}
    members: dict[bool, int] = {}
    keys: list[tuple[int, ...]] = []
    for suite in ours:
        transforms = suite.transforms()
        if transforms in suites:
            continue
        suites[transforms] = suite
        aead = transforms[0].id != EncryptionId.AES_CBC
        members[aead] = members.get(aead, 0) + 1
        kind = ranks.setdefault(aead, {})
        key: list[int] = []
        for t in transforms:  # ENCR first, then PRF, INTEG, DH (IKE) or INTEG, ESN (ESP)
            choice = (t.id, t.key_length)
            if t.type == ENCR:
                key.append(encryption_rank.setdefault(choice, len(encryption_rank)))
            by_type = kind.setdefault(t.type, {})
            rank = by_type.setdefault(choice, len(by_type))
            if t.type != ENCR:
                key.append(rank)
        keys.append(tuple(key))
    closed = all(
        members[aead] == functools.reduce(lambda a, b: a * len(b), kind.values(), 1)
        for aead, kind in ranks.items()
    )
    lexicographic = closed and all(a < b for a, b in itertools.pairwise(keys))
    return _Index(suites, ranks, encryption_rank, lexicographic)


_INDEXES: dict[int, tuple[Sequence[IkeSuite | ChildSuite], _Index]] = {}


def _index(ours: Sequence[_Suite]) -> _Index:
    """The index of ``ours``; kept for tuples (configurations hold them), by identity."""
    if not isinstance(ours, tuple):
        return _build_index(ours)
    cached = _INDEXES.get(id(ours))
    if cached is not None and cached[0] is ours:
        return cached[1]
    index = _build_index(ours)
    if len(_INDEXES) >= 32:
        _INDEXES.clear()
    _INDEXES[id(ours)] = (ours, index)  # the reference keeps the id from being reused
    return index


def _offered_sets(proposal: OfferedProposal, allowed: frozenset[int]) -> _Choices | None:
    """The offered (ID, Key Length) choices per transform type, or None when the proposal is
    unacceptable as a whole: a type not valid for its protocol, or an AES transform without
    its mandatory Key Length attribute (RFC 7296 3.3.5, 3.3.6)."""
    by_type: dict[int, set[_Choice]] = {}
    for t in proposal.transforms:
        if t.type not in allowed:
            return None
        if t.type == ENCR and t.id in _NEEDS_KEY_LENGTH and t.key_length is None:
            return None
        by_type.setdefault(t.type, set()).add((t.id, t.key_length))
    return {k: frozenset(v) for k, v in by_type.items()}


def _by_type(
    offered: _Choices, index: _Index, order: tuple[int, ...], encr: _Choice
) -> tuple[OfferedTransform, ...] | None:
    """With the encryption ``encr``, our most preferred offered transform of each other
    type, as the transforms of a suite; None when a type has none."""
    aead = encr[0] != EncryptionId.AES_CBC
    kind = index.ranks.get(aead)
    if kind is None:
        return None
    out = [OfferedTransform(ENCR, *encr)]
    for transform_type in order[1:]:
        ranks = kind.get(transform_type)
        choices = offered.get(transform_type)
        if transform_type == INTEG and aead:
            if choices is not None and (0, None) not in choices:
                return None  # an AEAD cipher with a real integrity transform
            continue
        if transform_type == ESN and choices is None:
            choices = frozenset(((0, None),))  # no ESN transform offered: 32-bit numbers
        if ranks is None or choices is None:
            return None
        mine = [c for c in choices if c in ranks]
        if not mine:
            return None
        out.append(OfferedTransform(transform_type, *min(mine, key=ranks.__getitem__)))
    return tuple(out)


def _choose(
    offered: _Choices, ours: Sequence[_Suite], index: _Index, order: tuple[int, ...]
) -> tuple[tuple[OfferedTransform, ...], _Suite] | None:
    """Our most preferred suite that ``offered`` allows (every offered type answered, RFC
    7296 3.3.6), with the transforms to answer; or None."""
    encrs = [c for c in offered.get(ENCR, ()) if c in index.encryption_rank]
    if not encrs:
        return None
    found: _Suite | None = None
    if index.lexicographic:
        for encr in sorted(encrs, key=index.encryption_rank.__getitem__):
            transforms = _by_type(offered, index, order, encr)
            suite = index.suites.get(transforms) if transforms is not None else None
            if suite is not None:
                found = suite  # type: ignore[assignment]
                break
    elif all(
        transform_type in (INTEG, ESN)
        or any(c in kind.get(transform_type, ()) for kind in index.ranks.values() for c in choices)
        for transform_type, choices in offered.items()
    ):
        found = next((s for s in ours if _allows(offered, s.transforms())), None)
    if found is None:
        return None
    answer = tuple(
        t for t in found.transforms() if not (t.type == ESN and t.id == 0 and ESN not in offered)
    )
    return answer, found


def _allows(offered: _Choices, transforms: Sequence[OfferedTransform]) -> bool:
    """Whether ``offered`` allows a suite with these transforms: each in its offered type,
    and every offered type one of them, except INTEG NONE with an AEAD cipher and an ESN
    the proposal leaves out (then 32-bit sequence numbers)."""
    ours = set()
    for mine in transforms:
        ours.add(mine.type)
        choices = offered.get(mine.type)
        if choices is None:
            if mine.type == ESN and mine.id == 0:
                continue
            return False
        if (mine.id, mine.key_length) not in choices:
            return False
    return all(
        transform_type in ours or (transform_type == INTEG and (0, None) in choices)
        for transform_type, choices in offered.items()
    )


_IKE_ORDER = (ENCR, PRF, INTEG, DH)
_ESP_ORDER = (ENCR, INTEG, ESN)


def select_ike(
    offered: Sequence[OfferedProposal],
    ours: Sequence[IkeSuite],
    prefer_dh: int | None = None,
) -> tuple[OfferedProposal, IkeSuite] | None:
    """The first offered IKE proposal containing one of our suites, and the most preferred
    such suite.

    With ``prefer_dh`` (the KE payload's group) the first proposal allowing one of our
    suites with that group wins, and only without one any proposal (the caller then asks
    for another KE with INVALID_KE_PAYLOAD). The answer proposal keeps the offered number
    and holds exactly the suite's transforms, one of each offered type (RFC 7296 3.3.6).
    """
    index = _index(ours)
    acceptable: list[tuple[int, _Choices]] = []
    for proposal in offered:
        if proposal.protocol != PROTO_IKE:
            continue
        sets = _offered_sets(proposal, _IKE_TYPES)
        if sets is None or ENCR not in sets or PRF not in sets or DH not in sets:
            continue
        acceptable.append((proposal.number, sets))
    passes: list[frozenset[_Choice] | None] = [None]
    if prefer_dh is not None:
        passes.insert(0, frozenset(((prefer_dh, None),)))
    for only_group in passes:
        for number, sets in acceptable:
            if only_group is not None and not sets[DH] & only_group:
                continue
            choices = sets if only_group is None else {**sets, DH: only_group}
            chosen = _choose(choices, ours, index, _IKE_ORDER)
            if chosen is not None:
                answer, suite = chosen
                return OfferedProposal(number, PROTO_IKE, b"", answer), suite
    return None


def select_child(
    offered: Sequence[OfferedProposal],
    ours: Sequence[ChildSuite],
    spi: bytes,
    dh_group: int | None = None,
) -> tuple[OfferedProposal, ChildSuite] | None:
    """The first offered ESP proposal containing one of our suites; ``spi`` is our SPI.

    A suite without ESN also matches a proposal that lists no ESN transform (the answer
    then lists none either). Without ``dh_group`` (no KE payload: IKE_AUTH, or
    CREATE_CHILD_SA without PFS) a proposal must allow DH NONE (or list no DH) and the
    answer has no DH transform; with ``dh_group`` (the group of the KE payload) the
    proposal must offer that group and the answer names it.
    """
    index = _index(ours)
    for proposal in offered:
        if proposal.protocol != PROTO_ESP or len(proposal.spi) != 4:
            continue
        sets = _offered_sets(proposal, _ESP_TYPES)
        if sets is None or ENCR not in sets:
            continue
        dh_ids = {i for i, _ in sets.pop(DH, frozenset())}
        if dh_group is None:
            if dh_ids and 0 not in dh_ids:
                continue  # PFS required, but there is no KE payload
            extra: tuple[OfferedTransform, ...] = ()
        else:
            if dh_group not in dh_ids:
                continue
            extra = (OfferedTransform(DH, dh_group),)
        chosen = _choose(sets, ours, index, _ESP_ORDER)
        if chosen is not None:
            answer, suite = chosen
            return OfferedProposal(proposal.number, PROTO_ESP, spi, answer + extra), suite
    return None


# --- reading an answer -------------------------------------------------------------------


def _single(proposal: OfferedProposal) -> dict[int, OfferedTransform] | None:
    by_type: dict[int, OfferedTransform] = {}
    for transform in proposal.transforms:
        if transform.type in by_type:
            return None
        if transform.type != ENCR and transform.key_length is not None:
            return None  # an attribute we never send (RFC 7296 3.3.6: returned unmodified)
        by_type[transform.type] = transform
    return by_type


def _answered_encryption(transform: OfferedTransform) -> Encryption:
    """The Encryption of an answered ENCR transform, with RFC 7296 3.3.5's attribute rules."""
    if transform.id in _NEEDS_KEY_LENGTH and transform.key_length is None:
        raise UnsupportedTransformError("AES without a Key Length attribute")
    if transform.id == EncryptionId.CHACHA20_POLY1305 and transform.key_length is not None:
        raise UnsupportedTransformError("ChaCha20-Poly1305 takes no Key Length attribute")
    return encryption(transform.id, transform.key_length)


def suite_from_proposal(proposal: OfferedProposal) -> IkeSuite | None:
    """The IKE suite of a responder's answer proposal (exactly one transform per type)."""
    by_type = _single(proposal)
    if by_type is None or not set(by_type) <= _IKE_TYPES:
        return None
    try:
        encr = _answered_encryption(by_type[ENCR])
        integ = by_type.get(INTEG)
        suite = IkeSuite(
            encr.id,
            encr.key_bits,
            PrfId(by_type[PRF].id),
            IntegrityId(integ.id) if integ is not None and integ.id != 0 else None,
            DhGroupId(by_type[DH].id),
        )
    except (KeyError, ValueError, UnsupportedTransformError):
        return None
    if (suite.integrity is None) != encr.aead:
        return None
    if suite.dh not in DH_GROUPS:
        return None
    return suite


def child_suite_from_proposal(proposal: OfferedProposal) -> ChildSuite | None:
    """The ESP suite of a responder's answer proposal (exactly one transform per type)."""
    by_type = _single(proposal)
    if by_type is None or not set(by_type) <= _ESP_TYPES:
        return None
    try:
        encr = _answered_encryption(by_type[ENCR])
        integ = by_type.get(INTEG)
        esn = by_type.get(ESN)
        if esn is not None and esn.id not in (0, 1):
            return None
        suite = ChildSuite(
            encr.id,
            encr.key_bits,
            IntegrityId(integ.id) if integ is not None and integ.id != 0 else None,
            bool(esn.id) if esn is not None else False,
        )
    except (KeyError, ValueError, UnsupportedTransformError):
        return None
    if (suite.integrity is None) != encr.aead:
        return None
    return suite
