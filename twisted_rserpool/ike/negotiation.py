"""SA negotiation (RFC 7296 2.7, 3.3.6): a responder's choice from the proposals offered,
and an initiator's reading of the answer.

``select_ike`` and ``select_child`` pick, for a responder, the first offered proposal that
contains one of our suites, and within it our most preferred suite: one transform of each
type, answered unchanged (Key Length included). ``suite_from_proposal`` and
``child_suite_from_proposal`` turn the responder's answer into the suite both sides use,
or refuse it.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeVar

from twisted_rserpool.ike.crypto import (
    DH_GROUPS,
    DhGroupId,
    Encryption,
    EncryptionId,
    IntegrityId,
    PrfId,
    UnsupportedTransformError,
    encryption,
)
from twisted_rserpool.ike.suites import (
    DH,
    ENCR,
    ESN,
    ESP_TRANSFORM_TYPES,
    IKE_TRANSFORM_TYPES,
    INTEG,
    NEEDS_KEY_LENGTH,
    PRF,
    PROTO_ESP,
    PROTO_IKE,
    ChildSuite,
    IkeSuite,
    OfferedProposal,
    OfferedTransform,
)

__all__ = ["child_suite_from_proposal", "select_child", "select_ike", "suite_from_proposal"]

_Suite = TypeVar("_Suite", IkeSuite, ChildSuite)


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
        if t.type == ENCR and t.id in NEEDS_KEY_LENGTH and t.key_length is None:
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
        sets = _offered_sets(proposal, IKE_TRANSFORM_TYPES)
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
        sets = _offered_sets(proposal, ESP_TRANSFORM_TYPES)
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
    if transform.id in NEEDS_KEY_LENGTH and transform.key_length is None:
        raise UnsupportedTransformError("AES without a Key Length attribute")
    if transform.id == EncryptionId.CHACHA20_POLY1305 and transform.key_length is not None:
        raise UnsupportedTransformError("ChaCha20-Poly1305 takes no Key Length attribute")
    return encryption(transform.id, transform.key_length)


def _answered(
    proposal: OfferedProposal, allowed: frozenset[int]
) -> tuple[dict[int, OfferedTransform], Encryption, IntegrityId | None] | None:
    """An answer's transforms by type (exactly one of each, of ``allowed`` types), its
    cipher and its integrity transform (None: none, or NONE); None when they do not fit
    together (AEAD with integrity, or a cipher needing it without)."""
    by_type = _single(proposal)
    if by_type is None or not set(by_type) <= allowed:
        return None
    try:
        encr = _answered_encryption(by_type[ENCR])
        integ = by_type.get(INTEG)
        integrity = IntegrityId(integ.id) if integ is not None and integ.id != 0 else None
    except (KeyError, ValueError, UnsupportedTransformError):
        return None
    if (integrity is None) != encr.aead:
        return None
    return by_type, encr, integrity


def suite_from_proposal(proposal: OfferedProposal) -> IkeSuite | None:
    """The IKE suite of a responder's answer proposal (exactly one transform per type)."""
    answered = _answered(proposal, IKE_TRANSFORM_TYPES)
    if answered is None:
        return None
    by_type, encr, integrity = answered
    try:
        prf, dh = PrfId(by_type[PRF].id), DhGroupId(by_type[DH].id)
    except (KeyError, ValueError):
        return None
    if dh not in DH_GROUPS:
        return None
    return IkeSuite(encr.id, encr.key_bits, prf, integrity, dh)


def child_suite_from_proposal(proposal: OfferedProposal) -> ChildSuite | None:
    """The ESP suite of a responder's answer proposal (exactly one transform per type)."""
    answered = _answered(proposal, ESP_TRANSFORM_TYPES)
    if answered is None:
        return None
    by_type, encr, integrity = answered
    esn = by_type.get(ESN)
    if esn is not None and esn.id not in (0, 1):
        return None
    return ChildSuite(encr.id, encr.key_bits, integrity, esn is not None and bool(esn.id))
