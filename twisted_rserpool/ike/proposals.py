"""Cryptographic suites, their strongSwan-style names, and SA proposal selection (RFC 7296 2.7).

A *suite* is one complete choice of transforms (what both sides end up using); a
*proposal* is what travels in an SA payload, possibly offering several transforms of each
type. ``select_ike`` and ``select_child`` pick, for a responder, the first offered proposal
that contains one of our suites (our suites in our order of preference).
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

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
    encryption,
)

__all__ = [
    "ChildSuite",
    "IkeSuite",
    "OfferedProposal",
    "OfferedTransform",
    "ProposalError",
    "child_proposal",
    "child_suite_from_proposal",
    "ike_proposal",
    "parse_child_suites",
    "parse_ike_suites",
    "select_child",
    "select_ike",
    "suite_from_proposal",
]

# Transform types and protocol IDs (RFC 7296 section 3.3).
ENCR, PRF, INTEG, DH, ESN = 1, 2, 3, 4, 5
PROTO_IKE, PROTO_ESP = 1, 3


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

    def transforms(self) -> tuple[OfferedTransform, ...]:
        """This suite as the transforms of a proposal."""
        return _ike_transforms(self)

    def _build_transforms(self) -> tuple[OfferedTransform, ...]:
        out = [OfferedTransform(ENCR, self.encryption, self.key_bits)]
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

    def transforms(self) -> tuple[OfferedTransform, ...]:
        """This suite as the transforms of a proposal."""
        return _child_transforms(self)

    def _build_transforms(self) -> tuple[OfferedTransform, ...]:
        out = [OfferedTransform(ENCR, self.encryption, self.key_bits)]
        if self.integrity is not None:
            out.append(OfferedTransform(INTEG, self.integrity))
        out.append(OfferedTransform(ESN, 1 if self.esn else 0))
        return tuple(out)

    def __str__(self) -> str:
        name = _name(self.encryption, self.key_bits, self.integrity, None, None)
        return name + ("-esn" if self.esn else "")


@functools.lru_cache(maxsize=256)
def _ike_transforms(suite: IkeSuite) -> tuple[OfferedTransform, ...]:
    return suite._build_transforms()


@functools.lru_cache(maxsize=256)
def _child_transforms(suite: ChildSuite) -> tuple[OfferedTransform, ...]:
    return suite._build_transforms()


_ENCR_NAMES = {
    "aes128": (EncryptionId.AES_CBC, 128),
    "aes256": (EncryptionId.AES_CBC, 256),
    "aes128gcm16": (EncryptionId.AES_GCM_16, 128),
    "aes256gcm16": (EncryptionId.AES_GCM_16, 256),
}
_HASH_NAMES = {
    "sha256": (IntegrityId.HMAC_SHA2_256_128, PrfId.HMAC_SHA2_256),
    "sha384": (IntegrityId.HMAC_SHA2_384_192, PrfId.HMAC_SHA2_384),
    "sha512": (IntegrityId.HMAC_SHA2_512_256, PrfId.HMAC_SHA2_512),
}
_PRF_NAMES = {"prf" + name: prf for name, (_, prf) in _HASH_NAMES.items()}
_DH_NAMES = {
    "modp2048": DhGroupId.MODP_2048,
    "ecp256": DhGroupId.ECP_256,
    "ecp384": DhGroupId.ECP_384,
    "curve25519": DhGroupId.CURVE25519,
    "x25519": DhGroupId.CURVE25519,
}


def _name(
    encr: EncryptionId,
    bits: int,
    integ: IntegrityId | None,
    prf: PrfId | None,
    dh: DhGroupId | None,
) -> str:
    parts = [
        f"aes{bits}gcm16" if encr == EncryptionId.AES_GCM_16 else f"aes{bits}",
    ]
    hash_by_integ = {v[0]: k for k, v in _HASH_NAMES.items()}
    hash_by_prf = {v[1]: k for k, v in _HASH_NAMES.items()}
    if integ is not None:
        parts.append(hash_by_integ[integ])
        if prf is not None and _HASH_NAMES[hash_by_integ[integ]][1] != prf:
            parts.append("prf" + hash_by_prf[prf])
    elif prf is not None:
        parts.append("prf" + hash_by_prf[prf])
    if dh is not None:
        parts.append({v: k for k, v in _DH_NAMES.items()}[dh])
    return "-".join(parts)


def parse_ike_suites(text: str) -> tuple[IkeSuite, ...]:
    """IKE suites from a comma-separated list of strongSwan-style names.

    Each name is ``encryption-[integrity]-[prfHASH]-dhgroup``, for example
    ``aes128-sha256-modp2048`` or ``aes256gcm16-prfsha384-x25519``. With AES-CBC the hash
    names both the integrity transform and (unless ``prf...`` is given) the PRF; with
    AES-GCM a plain hash name is taken as the PRF.
    """
    suites = []
    for name in _split(text):
        tokens = name.split("-")
        encr = _ENCR_NAMES.get(tokens[0])
        if encr is None:
            raise ProposalError(f"unknown encryption algorithm in {name!r}")
        integ: IntegrityId | None = None
        prf: PrfId | None = None
        dh: DhGroupId | None = None
        for token in tokens[1:]:
            if token in _HASH_NAMES:
                if encr[0] == EncryptionId.AES_GCM_16:
                    prf = _HASH_NAMES[token][1]
                else:
                    integ = _HASH_NAMES[token][0]
                    prf = prf or _HASH_NAMES[token][1]
            elif token in _PRF_NAMES:
                prf = _PRF_NAMES[token]
            elif token in _DH_NAMES:
                dh = _DH_NAMES[token]
            else:
                raise ProposalError(f"unknown algorithm {token!r} in {name!r}")
        if prf is None or dh is None:
            raise ProposalError(f"{name!r} needs a PRF (or hash) and a DH group")
        if encr[0] == EncryptionId.AES_CBC and integ is None:
            raise ProposalError(f"{name!r} needs an integrity algorithm with AES-CBC")
        suites.append(IkeSuite(encr[0], encr[1], prf, integ, dh))
    return tuple(suites)


def parse_child_suites(text: str) -> tuple[ChildSuite, ...]:
    """ESP suites from strongSwan-style names such as ``aes128-sha256`` or ``aes256gcm16``."""
    suites = []
    for name in _split(text):
        tokens = name.split("-")
        encr = _ENCR_NAMES.get(tokens[0])
        if encr is None:
            raise ProposalError(f"unknown encryption algorithm in {name!r}")
        integ: IntegrityId | None = None
        esn = False
        for token in tokens[1:]:
            if token in _HASH_NAMES and encr[0] == EncryptionId.AES_CBC:
                integ = _HASH_NAMES[token][0]
            elif token in ("esn", "noesn"):
                esn = token == "esn"
            else:
                raise ProposalError(f"unknown algorithm {token!r} in {name!r}")
        if encr[0] == EncryptionId.AES_CBC and integ is None:
            raise ProposalError(f"{name!r} needs an integrity algorithm with AES-CBC")
        suites.append(ChildSuite(encr[0], encr[1], integ, esn))
    return tuple(suites)


def _split(text: str) -> list[str]:
    names = [part.strip().lower() for part in text.split(",") if part.strip()]
    if not names:
        raise ProposalError("no proposals given")
    return names


def ike_proposal(suites: Iterable[IkeSuite], spi: bytes = b"") -> tuple[OfferedProposal, ...]:
    """Our IKE SA payload: one proposal per suite, numbered from 1."""
    return tuple(
        OfferedProposal(number, PROTO_IKE, spi, suite.transforms())
        for number, suite in enumerate(suites, start=1)
    )


def child_proposal(suites: Iterable[ChildSuite], spi: bytes) -> tuple[OfferedProposal, ...]:
    """Our ESP SA payload: one proposal per suite, numbered from 1."""
    return tuple(
        OfferedProposal(number, PROTO_ESP, spi, suite.transforms())
        for number, suite in enumerate(suites, start=1)
    )


def _offers(proposal: OfferedProposal, transforms: Sequence[OfferedTransform]) -> bool:
    """Whether ``proposal`` offers, for each of its transform types, the suite's transform."""
    by_type: dict[int, set[tuple[int, int | None]]] = {}
    for t in proposal.transforms:
        by_type.setdefault(t.type, set()).add((t.id, t.key_length))
    ours = {t.type: t for t in transforms}
    for transform_type, choices in by_type.items():
        mine = ours.get(transform_type)
        if mine is None:
            if transform_type == INTEG and (0, None) in choices:
                continue  # INTEG NONE alongside an AEAD cipher
            return False
        if (mine.id, mine.key_length) not in choices:
            return False
    for transform_type, mine in ours.items():
        if transform_type not in by_type and not (transform_type == ESN and mine.id == 0):
            return False
    return True


def select_ike(
    offered: Sequence[OfferedProposal], ours: Sequence[IkeSuite]
) -> tuple[OfferedProposal, IkeSuite] | None:
    """The first offered IKE proposal containing one of our suites, and that suite.

    The answer proposal keeps the offered number and holds exactly the suite's transforms.
    """
    for proposal in offered:
        if proposal.protocol != PROTO_IKE:
            continue
        for suite in ours:
            if _offers(proposal, suite.transforms()):
                chosen = OfferedProposal(proposal.number, PROTO_IKE, b"", suite.transforms())
                return chosen, suite
    return None


def select_child(
    offered: Sequence[OfferedProposal],
    ours: Sequence[ChildSuite],
    spi: bytes,
    dh_group: int | None = None,
) -> tuple[OfferedProposal, ChildSuite] | None:
    """The first offered ESP proposal containing one of our suites; ``spi`` is our SPI.

    A suite without ESN matches a proposal that does not mention ESN. Without ``dh_group``
    (no KE payload: IKE_AUTH, or CREATE_CHILD_SA without PFS) a proposal must allow DH
    NONE (or list no DH) and the answer has no DH transform; with ``dh_group`` (the group
    of the KE payload) the proposal must offer that group and the answer names it.
    """
    for proposal in offered:
        if proposal.protocol != PROTO_ESP or len(proposal.spi) != 4:
            continue
        filtered = OfferedProposal(
            proposal.number,
            proposal.protocol,
            proposal.spi,
            tuple(t for t in proposal.transforms if t.type != DH),
        )
        dh_ids = {t.id for t in proposal.transforms if t.type == DH}
        if dh_group is None:
            if dh_ids and 0 not in dh_ids:
                continue  # PFS required, but there is no KE payload
            extra: tuple[OfferedTransform, ...] = ()
        else:
            if dh_group not in dh_ids:
                continue
            extra = (OfferedTransform(DH, dh_group),)
        for suite in ours:
            if _offers(filtered, suite.transforms()):
                chosen = OfferedProposal(
                    proposal.number, PROTO_ESP, spi, suite.transforms() + extra
                )
                return chosen, suite
    return None


def suite_from_proposal(proposal: OfferedProposal) -> IkeSuite | None:
    """The IKE suite of a responder's answer proposal (exactly one transform per type)."""
    by_type: dict[int, OfferedTransform] = {}
    for transform in proposal.transforms:
        if transform.type in by_type:
            return None
        by_type[transform.type] = transform
    try:
        encr = by_type[ENCR]
        suite = IkeSuite(
            EncryptionId(encr.id),
            encr.key_length or 0,
            PrfId(by_type[PRF].id),
            IntegrityId(by_type[INTEG].id) if INTEG in by_type else None,
            DhGroupId(by_type[DH].id),
        )
        suite.encryption_transform  # noqa: B018 - validates the key length
    except (KeyError, ValueError):
        return None
    if (suite.integrity is None) != suite.encryption_transform.aead:
        return None
    if suite.dh not in DH_GROUPS:
        return None
    return suite


def child_suite_from_proposal(proposal: OfferedProposal) -> ChildSuite | None:
    """The ESP suite of a responder's answer proposal (exactly one transform per type)."""
    by_type: dict[int, OfferedTransform] = {}
    for transform in proposal.transforms:
        if transform.type in by_type:
            return None
        by_type[transform.type] = transform
    try:
        encr = by_type[ENCR]
        suite = ChildSuite(
            EncryptionId(encr.id),
            encr.key_length or 0,
            IntegrityId(by_type[INTEG].id) if INTEG in by_type else None,
            bool(by_type[ESN].id) if ESN in by_type else False,
        )
        suite.encryption_transform  # noqa: B018 - validates the key length
    except (KeyError, ValueError):
        return None
    if (suite.integrity is None) != suite.encryption_transform.aead:
        return None
    return suite
