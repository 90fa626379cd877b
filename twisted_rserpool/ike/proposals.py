"""Cryptographic suites, their strongSwan-style names, and SA proposals (RFC 7296 2.7, 3.3):
the one module to import them from.

The work is in three modules, re-exported here: ``twisted_rserpool.ike.suites`` (the
transforms we implement as suites, preference orders, algorithm sets, suites from names),
``twisted_rserpool.ike.suite_names`` (the names themselves) and
``twisted_rserpool.ike.negotiation`` (a responder's choice from an offer, an initiator's
reading of the answer). This module encodes our own offers.

``ike_proposal`` and ``child_proposal`` encode our suites compactly: an algorithm set
becomes one proposal for its AEAD ciphers and one for the others (RFC 7296 3.3 requires
them apart), not one proposal per suite.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence
from typing import TypeVar

from twisted_rserpool.ike.negotiation import (
    child_suite_from_proposal,
    select_child,
    select_ike,
    suite_from_proposal,
)
from twisted_rserpool.ike.suite_names import ProposalError
from twisted_rserpool.ike.suites import (
    DH,
    DH_PREFERENCE,
    ENCR,
    ENCRYPTION_PREFERENCE,
    ESN,
    ESN_PREFERENCE,
    ESP_ALGORITHMS,
    IKE_ALGORITHMS,
    INTEG,
    INTEGRITY_PREFERENCE,
    LEGACY_TRANSFORMS,
    PRF,
    PRF_PREFERENCE,
    PROTO_ESP,
    PROTO_IKE,
    ChildSuite,
    IkeSuite,
    OfferedProposal,
    OfferedTransform,
    child_suite_set,
    ike_suite_set,
    parse_child_suites,
    parse_ike_suites,
)

__all__ = [
    "DH",
    "DH_PREFERENCE",
    "ENCR",
    "ENCRYPTION_PREFERENCE",
    "ESN",
    "ESN_PREFERENCE",
    "ESP_ALGORITHMS",
    "IKE_ALGORITHMS",
    "INTEG",
    "INTEGRITY_PREFERENCE",
    "LEGACY_TRANSFORMS",
    "PRF",
    "PRF_PREFERENCE",
    "PROTO_ESP",
    "PROTO_IKE",
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

_Suite = TypeVar("_Suite", IkeSuite, ChildSuite)


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


def _offer(suites: Iterable[_Suite], protocol: int, spi: bytes) -> tuple[OfferedProposal, ...]:
    ordered = tuple(suites)
    groups = _compact(ordered) or [suite.transforms() for suite in ordered]
    return tuple(
        OfferedProposal(number, protocol, spi, transforms)
        for number, transforms in enumerate(groups, start=1)
    )


def ike_proposal(suites: Iterable[IkeSuite], spi: bytes = b"") -> tuple[OfferedProposal, ...]:
    """Our IKE SA payload for ``suites`` (most preferred first), proposals numbered from 1.

    An algorithm set becomes one proposal per kind of cipher; any other list one proposal
    per suite, so that exactly those suites are offered.
    """
    return _offer(suites, PROTO_IKE, spi)


def child_proposal(suites: Iterable[ChildSuite], spi: bytes) -> tuple[OfferedProposal, ...]:
    """Our ESP SA payload for ``suites``, encoded as ``ike_proposal`` encodes IKE suites."""
    return _offer(suites, PROTO_ESP, spi)
