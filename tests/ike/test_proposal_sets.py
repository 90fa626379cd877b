"""Properties of proposal selection with the default algorithm sets (RFC 7296 3.3, hypothesis).

Any offered proposal built only from transforms we implement is accepted; the answer is one
transform of each offered type, all from one offered proposal, and our most preferred
ones; an offer of nothing we implement gets NO_PROPOSAL_CHOSEN, also from a real endpoint;
our own compact SA payloads offer exactly the suites they encode.
"""

from __future__ import annotations

import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.ike.test_sa import CL, Pair
from twisted_rserpool._tap import vpngw
from twisted_rserpool.ike.constants import ExchangeType, NotifyType
from twisted_rserpool.ike.crypto import DH_GROUPS
from twisted_rserpool.ike.payloads import (
    IkeMessage,
    KeyExchangePayload,
    NoncePayload,
    NotifyPayload,
    Proposal,
    SecurityAssociationPayload,
    Transform,
    TransformAttribute,
    decode_message,
)
from twisted_rserpool.ike.proposals import (
    DH,
    DH_PREFERENCE,
    ENCR,
    ENCRYPTION_PREFERENCE,
    ESN,
    ESP_ALGORITHMS,
    IKE_ALGORITHMS,
    INTEG,
    INTEGRITY_PREFERENCE,
    PRF,
    PRF_PREFERENCE,
    PROTO_ESP,
    PROTO_IKE,
    IkeSuite,
    OfferedProposal,
    OfferedTransform,
    ProposalError,
    child_proposal,
    child_suite_from_proposal,
    ike_proposal,
    parse_child_suites,
    parse_ike_suites,
    select_child,
    select_ike,
    suite_from_proposal,
)

ENCRS = [OfferedTransform(ENCR, e, None if e == 28 else b) for e, b in ENCRYPTION_PREFERENCE]
AEAD_ENCR = [t for t in ENCRS if t.id != 12]
CBC_ENCR = [t for t in ENCRS if t.id == 12]
PRFS = [OfferedTransform(PRF, p) for p in PRF_PREFERENCE]
INTEGS = [OfferedTransform(INTEG, i) for i in INTEGRITY_PREFERENCE]
GROUPS = [OfferedTransform(DH, g) for g in DH_PREFERENCE]
ESNS = [OfferedTransform(ESN, 1), OfferedTransform(ESN, 0)]

# Registered transforms we do not implement (RFC 7296 3.3.2, IANA): 3DES, NULL, AES-CTR,
# AES-CCM, AES-GCM-8/12, Camellia; MD5, Tiger, AES-XCBC, AES-CMAC; MD5-96, DES-MAC,
# AES-XCBC-96, GMAC; groups 1, 2, 5, 17, 18, 22-30, 32.
UNKNOWN_ENCR = [OfferedTransform(ENCR, e, k) for e, k in [(3, None), (11, None), (13, 128)]]
UNKNOWN_ENCR += [OfferedTransform(ENCR, e, 128) for e in (14, 15, 16, 18, 19, 23, 24)]
UNKNOWN_ENCR += [OfferedTransform(ENCR, 12, 192), OfferedTransform(ENCR, 20, 192)]
UNKNOWN_PRFS = [OfferedTransform(PRF, p) for p in (1, 3, 4, 8)]
UNKNOWN_INTEGS = [OfferedTransform(INTEG, i) for i in (1, 3, 4, 5, 6, 7, 8, 9, 10, 11)]
UNKNOWN_GROUPS = [OfferedTransform(DH, g) for g in (1, 2, 5, 17, 18, 22, 23, 24, 28, 32)]


def _rank(transform: OfferedTransform, preference: list[OfferedTransform]) -> int:
    return preference.index(transform)


@st.composite
def implemented_ike_proposal(draw: st.DrawFn, number: int = 1) -> OfferedProposal:
    """A well-formed IKE proposal (AEAD ciphers apart from the others, RFC 7296 3.3) of
    transforms we implement, maybe mixed with ones we do not, in any order."""
    aead = draw(st.booleans())
    transforms = draw(st.lists(st.sampled_from(AEAD_ENCR if aead else CBC_ENCR), min_size=1))
    transforms += draw(st.lists(st.sampled_from(PRFS), min_size=1))
    transforms += draw(st.lists(st.sampled_from(GROUPS), min_size=1))
    if aead:
        if draw(st.booleans()):
            transforms.append(OfferedTransform(INTEG, 0))
    else:
        transforms += draw(st.lists(st.sampled_from(INTEGS), min_size=1))
    transforms += draw(
        st.lists(st.sampled_from(UNKNOWN_ENCR + UNKNOWN_PRFS + UNKNOWN_GROUPS), max_size=4)
    )
    if not aead:
        transforms += draw(st.lists(st.sampled_from(UNKNOWN_INTEGS), max_size=2))
    return OfferedProposal(number, PROTO_IKE, b"", tuple(draw(st.permutations(transforms))))


@st.composite
def unimplemented_ike_proposal(draw: st.DrawFn, number: int = 1) -> OfferedProposal:
    """An IKE proposal in which at least one transform type offers nothing we implement,
    or which is malformed: an ESN or unknown transform type, AES without Key Length."""
    kind = draw(st.sampled_from(["encr", "prf", "dh", "integ", "esn", "type", "keyless"]))
    encr = [] if kind == "encr" else draw(st.lists(st.sampled_from(CBC_ENCR), min_size=1))
    if kind == "keyless":  # rejected although it also offers AES with a Key Length
        encr.append(OfferedTransform(ENCR, 12, None))
    transforms = encr + draw(st.lists(st.sampled_from(UNKNOWN_ENCR), min_size=kind == "encr"))
    transforms += [] if kind == "prf" else draw(st.lists(st.sampled_from(PRFS), min_size=1))
    transforms += draw(st.lists(st.sampled_from(UNKNOWN_PRFS), min_size=kind == "prf"))
    transforms += [] if kind == "dh" else draw(st.lists(st.sampled_from(GROUPS), min_size=1))
    transforms += draw(st.lists(st.sampled_from(UNKNOWN_GROUPS), min_size=kind == "dh"))
    transforms += [] if kind == "integ" else draw(st.lists(st.sampled_from(INTEGS), min_size=1))
    transforms += draw(st.lists(st.sampled_from(UNKNOWN_INTEGS), min_size=kind == "integ"))
    if kind == "esn":
        transforms.append(draw(st.sampled_from(ESNS)))
    if kind == "type":
        transforms.append(OfferedTransform(draw(st.integers(6, 255)), 1))
    return OfferedProposal(number, PROTO_IKE, b"", tuple(draw(st.permutations(transforms))))


def _check_answer(answer: OfferedProposal, proposal: OfferedProposal) -> None:
    """One transform per offered type, each from the proposal, none of another type; only
    INTEG NONE with an AEAD cipher (and an ESN or DH the offer leaves out) goes unsaid."""
    assert answer.number == proposal.number
    answered = [t.type for t in answer.transforms]
    assert len(answered) == len(set(answered))
    assert set(answer.transforms) <= set(proposal.transforms)
    offered_types = {t.type for t in proposal.transforms}
    unanswered = offered_types - set(answered)
    if unanswered:
        assert unanswered == {INTEG}
        assert OfferedTransform(INTEG, 0) in proposal.transforms


def _best(proposal: OfferedProposal, preference: list[OfferedTransform]) -> OfferedTransform:
    return min((t for t in proposal.transforms if t in preference), key=preference.index)


@settings(max_examples=150, deadline=None)
@given(
    before=st.lists(unimplemented_ike_proposal(), max_size=2),
    proposal=implemented_ike_proposal(),
    after=st.lists(implemented_ike_proposal(), max_size=2),
)
def test_any_implemented_ike_proposal_is_accepted(
    before: list[OfferedProposal], proposal: OfferedProposal, after: list[OfferedProposal]
) -> None:
    """The first proposal made of transforms we implement is chosen (after any we cannot
    accept), answered with one offered transform per type, our most preferred of each,
    which is a suite of the default set."""
    offered = [
        OfferedProposal(n, p.protocol, p.spi, p.transforms)
        for n, p in enumerate([*before, proposal, *after], start=1)
    ]
    chosen = offered[len(before)]
    result = select_ike(offered, IKE_ALGORITHMS)
    assert result is not None
    answer, suite = result
    _check_answer(answer, chosen)
    assert suite in IKE_ALGORITHMS and suite_from_proposal(answer) == suite
    by_type = {t.type: t for t in answer.transforms}
    assert by_type[PRF] == _best(chosen, PRFS)
    assert by_type[DH] == _best(chosen, GROUPS)
    assert by_type[ENCR] == _best(chosen, ENCRS)
    if INTEG in by_type:
        assert by_type[INTEG] == _best(chosen, INTEGS)


@settings(max_examples=150, deadline=None)
@given(offered=st.lists(unimplemented_ike_proposal(), min_size=1, max_size=4))
def test_nothing_implemented_is_refused(offered: list[OfferedProposal]) -> None:
    """No proposal with a type of only unknown transforms, or malformed, is accepted."""
    numbered = [OfferedProposal(n, PROTO_IKE, b"", p.transforms) for n, p in enumerate(offered, 1)]
    assert select_ike(numbered, IKE_ALGORITHMS) is None


def _init_request(proposals: list[OfferedProposal], group: int, data: bytes) -> bytes:
    sa = SecurityAssociationPayload(
        tuple(
            Proposal(
                p.number,
                p.protocol,
                p.spi,
                tuple(
                    Transform(
                        t.type,
                        t.id,
                        (TransformAttribute.key_length(t.key_length),) if t.key_length else (),
                    )
                    for t in p.transforms
                ),
            )
            for p in proposals
        )
    )
    payloads = (sa, KeyExchangePayload(group, data), NoncePayload(os.urandom(32)))
    spi_i = os.urandom(8)
    return IkeMessage(
        spi_i, bytes(8), ExchangeType.IKE_SA_INIT, 0, payloads, initiator=True
    ).encode()


@settings(max_examples=60, deadline=None)
@given(offered=st.lists(unimplemented_ike_proposal(), min_size=1, max_size=3))
def test_endpoint_answers_no_proposal_chosen(offered: list[OfferedProposal]) -> None:
    """A default gateway answers an IKE_SA_INIT offering nothing it implements with
    N(NO_PROPOSAL_CHOSEN) alone, and keeps no state."""
    numbered = [OfferedProposal(n, PROTO_IKE, b"", p.transforms) for n, p in enumerate(offered, 1)]
    pair = Pair()
    pair.gw.receive_datagram(_init_request(numbered, 31, os.urandom(32)), CL, 0.0)
    (response,) = [decode_message(data) for data, _ in pair.gw.datagrams_to_send()]
    assert response.response and response.exchange_type == ExchangeType.IKE_SA_INIT
    assert [type(p) for p in response.payloads] == [NotifyPayload]
    assert response.notify(NotifyType.NO_PROPOSAL_CHOSEN) is not None
    assert len(pair.gw) == 0


@settings(max_examples=40, deadline=None)
@given(proposal=implemented_ike_proposal(), data=st.data())
def test_endpoint_accepts_any_implemented_proposal(
    proposal: OfferedProposal, data: st.DataObject
) -> None:
    """A default gateway answers an IKE_SA_INIT whose proposal uses only transforms it
    implements, with the KE group among the offered ones, with SA, KE and Nr: one proposal,
    one offered transform per type, and the KE payload's group."""
    group = data.draw(st.sampled_from([t.id for t in proposal.transforms if t in GROUPS]))
    public = DH_GROUPS[group].generate().public_value
    pair = Pair()
    pair.gw.receive_datagram(_init_request([proposal], group, public), CL, 0.0)
    (response,) = [decode_message(d) for d, _ in pair.gw.datagrams_to_send()]
    sa = response.find(SecurityAssociationPayload)
    ke = response.find(KeyExchangePayload)
    assert sa is not None and ke is not None and ke.dh_group == group
    (answered,) = sa.proposals
    answer = OfferedProposal(
        answered.number,
        answered.protocol_id,
        answered.spi,
        tuple(
            OfferedTransform(
                t.transform_type, t.transform_id, t.key_length if t.transform_type == ENCR else None
            )
            for t in answered.transforms
        ),
    )
    _check_answer(answer, proposal)
    assert OfferedTransform(DH, group) in answer.transforms
    assert len(pair.gw) == 1


# --- ESP ---------------------------------------------------------------------------------


@st.composite
def implemented_esp_proposal(draw: st.DrawFn, pfs_group: int | None = None) -> OfferedProposal:
    """An ESP proposal of transforms we implement: ESN listed or not, DH absent or optional
    (NONE offered), or including ``pfs_group`` when a KE payload came with it."""
    aead = draw(st.booleans())
    transforms = draw(st.lists(st.sampled_from(AEAD_ENCR if aead else CBC_ENCR), min_size=1))
    if aead:
        if draw(st.booleans()):
            transforms.append(OfferedTransform(INTEG, 0))
    else:
        transforms += draw(st.lists(st.sampled_from(INTEGS), min_size=1))
    transforms += draw(st.lists(st.sampled_from(ESNS), max_size=2))
    if pfs_group is None:
        if draw(st.booleans()):
            transforms += [OfferedTransform(DH, 0), *draw(st.lists(st.sampled_from(GROUPS)))]
    else:
        transforms += [OfferedTransform(DH, pfs_group), *draw(st.lists(st.sampled_from(GROUPS)))]
    transforms += draw(st.lists(st.sampled_from(UNKNOWN_ENCR), max_size=2))
    return OfferedProposal(
        1, PROTO_ESP, b"\x01\x02\x03\x04", tuple(draw(st.permutations(transforms)))
    )


@settings(max_examples=150, deadline=None)
@given(data=st.data(), pfs=st.one_of(st.none(), st.sampled_from(list(DH_PREFERENCE))))
def test_any_implemented_esp_proposal_is_accepted(data: st.DataObject, pfs: int | None) -> None:
    """Any ESP proposal of implemented transforms is accepted: one offered transform per
    type (an unlisted ESN means 32-bit sequence numbers and stays unlisted; DH NONE without
    KE stays unlisted, the KE group with one is named), the suite in the default set."""
    proposal = data.draw(implemented_esp_proposal(pfs))
    result = select_child([proposal], ESP_ALGORITHMS, b"wxyz", pfs)
    assert result is not None
    answer, suite = result
    assert answer.spi == b"wxyz" and suite in ESP_ALGORITHMS
    assert (
        child_suite_from_proposal(
            OfferedProposal(1, 3, b"", tuple(t for t in answer.transforms if t.type != DH))
        )
        == suite
    )
    answered = [t.type for t in answer.transforms]
    assert len(answered) == len(set(answered))
    assert set(answer.transforms) <= set(proposal.transforms)
    offered = {t.type for t in proposal.transforms}
    unanswered = offered - set(answered)
    assert unanswered <= {INTEG, DH}
    if INTEG in unanswered:
        assert OfferedTransform(INTEG, 0) in proposal.transforms
    if DH in unanswered:
        assert pfs is None and OfferedTransform(DH, 0) in proposal.transforms
    if pfs is not None:
        assert OfferedTransform(DH, pfs) in answer.transforms
    esn = {t for t in proposal.transforms if t.type == ESN}
    assert suite.esn == (OfferedTransform(ESN, 1) in esn)  # ESN preferred when offered


# --- our own offers ----------------------------------------------------------------------


@settings(max_examples=150, deadline=None)
@given(
    suites=st.one_of(
        st.lists(st.sampled_from(IKE_ALGORITHMS), min_size=1, max_size=6, unique=True),
        st.permutations(IKE_ALGORITHMS[:28]),  # AES-GCM-256: every PRF and group
        st.just(list(IKE_ALGORITHMS)),
    )
)
def test_ike_proposal_offers_exactly_its_suites(suites: list[IkeSuite]) -> None:
    """The SA payload we send for a list of suites (compact when it is an algorithm set)
    offers exactly those suites, and a responder with our preferences picks the first."""
    ours = [s for s in IKE_ALGORITHMS if s in suites]
    offered = ike_proposal(suites)
    assert [p.number for p in offered] == list(range(1, len(offered) + 1))
    accepted = [s for s in IKE_ALGORITHMS if select_ike(offered, [s]) is not None]
    assert accepted == ours
    result = select_ike(offered, suites)
    assert result is not None and result[1] == suites[0]


def test_default_sets_are_compact() -> None:
    """The default sets travel as two proposals each (AEAD ciphers, then the others)."""
    ike = ike_proposal(IKE_ALGORITHMS)
    assert len(ike) == 2 and {t.type for t in ike[0].transforms} == {ENCR, PRF, DH}
    esp = child_proposal(ESP_ALGORITHMS, b"abcd")
    assert len(esp) == 2 and {t.type for t in esp[1].transforms} == {ENCR, INTEG, ESN}
    assert len(IKE_ALGORITHMS) == 3 * 4 * 7 + 2 * 4 * 4 * 7
    assert len(ESP_ALGORITHMS) == (3 + 2 * 4) * 2


# --- names and options -------------------------------------------------------------------


def test_names_with_several_algorithms_and_default() -> None:
    """A strongSwan-style name with several algorithms of a type is every combination in
    the order written; 'default' is the whole set; AEAD and CBC do not mix in one name."""
    suites = parse_ike_suites("aes128-aes256-sha256-sha1-x25519-ecp256")
    # the hashes name both the PRFs and the integrity transforms: 2 x 2 x 2 x 2 suites
    assert len(suites) == 16 and suites[0] == parse_ike_suites("aes128-sha256-x25519")[0]
    assert str(suites[2]) == "aes128-sha1-prfsha256-x25519"
    assert len(ike_proposal(suites)) == 1
    assert parse_ike_suites("default") == IKE_ALGORITHMS
    assert parse_ike_suites("aes128-sha256-x25519, default")[1:] == tuple(
        s for s in IKE_ALGORITHMS if str(s) != "aes128-sha256-x25519"
    )
    assert parse_child_suites("default") == ESP_ALGORITHMS
    assert [str(s) for s in parse_child_suites("aes128gcm16-esn-noesn")] == [
        "aes128gcm16-esn",
        "aes128gcm16",
    ]
    for bad in ("aes128gcm16-aes128-sha256-x25519", "chacha20poly1305-x25519", "aes128-x25519"):
        with pytest.raises(ProposalError):
            parse_ike_suites(bad)
    for bad in ("aes128gcm16-sha256", "aes128", "aes128-sha256-x25519"):
        with pytest.raises(ProposalError):
            parse_child_suites(bad)


def test_connect_hint_names_the_default() -> None:
    """The logged strongSwan configuration says 'default' for the default sets, and the
    first suite for a restricted list."""
    options = vpngw.Options()  # type: ignore[no-untyped-call]
    options.parseOptions([])  # type: ignore[no-untyped-call]
    hint = vpngw._connect_hint(options)
    assert "proposals = default" in hint and "esp_proposals = default" in hint
    options = vpngw.Options()  # type: ignore[no-untyped-call]
    options.parseOptions(  # type: ignore[no-untyped-call]
        ["--proposals", "aes128-sha1-modp3072", "--esp-proposals", "chacha20poly1305"]
    )
    hint = vpngw._connect_hint(options)
    assert "proposals = aes128-sha1-modp3072" in hint
    assert "esp_proposals = chacha20poly1305" in hint


# --- the fast choice against its definition ---------------------------------------------


def _reference(
    offered: list[OfferedProposal], ours: list[IkeSuite], prefer_dh: int | None
) -> tuple[int, IkeSuite] | None:
    """RFC 7296 3.3.6 by brute force: the first proposal allowing one of our suites (with
    ``prefer_dh``, first among those allowing it with that group), our first such suite."""

    def allows(proposal: OfferedProposal, suite: IkeSuite) -> bool:
        offered_types = {t.type for t in proposal.transforms}
        if not offered_types <= {ENCR, PRF, INTEG, DH} or not {ENCR, PRF, DH} <= offered_types:
            return False
        if any(
            t.type == ENCR and t.id in (12, 20) and t.key_length is None
            for t in proposal.transforms
        ):
            return False
        mine = suite.transforms()
        if not set(mine) <= set(proposal.transforms):
            return False
        unanswered = offered_types - {t.type for t in mine}
        return not unanswered or (
            unanswered == {INTEG} and OfferedTransform(INTEG, 0) in proposal.transforms
        )

    passes = ([prefer_dh] if prefer_dh is not None else []) + [None]
    for group in passes:
        for proposal in offered:
            for suite in ours:
                if (group is None or suite.dh == group) and allows(proposal, suite):
                    return proposal.number, suite
    return None


@settings(max_examples=200, deadline=None)
@given(
    proposals=st.lists(
        st.one_of(implemented_ike_proposal(), unimplemented_ike_proposal()), min_size=1, max_size=3
    ),
    ours=st.one_of(
        st.just(list(IKE_ALGORITHMS)),
        st.lists(st.sampled_from(IKE_ALGORITHMS), min_size=1, max_size=8, unique=True),
        st.permutations(IKE_ALGORITHMS[:28]),
    ),
    as_tuple=st.booleans(),
    prefer_dh=st.one_of(st.none(), st.sampled_from(list(DH_PREFERENCE))),
)
def test_choice_matches_its_definition(
    proposals: list[OfferedProposal],
    ours: list[IkeSuite],
    as_tuple: bool,
    prefer_dh: int | None,
) -> None:
    """Type-by-type choice from an algorithm set, suite-by-suite choice from any other list,
    and the KE group preference all give what the brute-force definition gives."""
    offered = [OfferedProposal(n, PROTO_IKE, b"", p.transforms) for n, p in enumerate(proposals, 1)]
    result = select_ike(offered, tuple(ours) if as_tuple else ours, prefer_dh=prefer_dh)
    expected = _reference(offered, ours, prefer_dh)
    assert (None if result is None else (result[0].number, result[1])) == expected


def test_refused_proposals_cost_no_suite_scan(monkeypatch: pytest.MonkeyPatch) -> None:
    """The default sets are algorithm sets, chosen from type by type: a hundred refused
    proposals never make the gateway walk its 308 suites."""
    from twisted_rserpool.ike import negotiation

    assert negotiation._index(IKE_ALGORITHMS).lexicographic
    assert negotiation._index(ESP_ALGORITHMS).lexicographic
    assert negotiation._index(parse_ike_suites("aes128-aes256-sha256-x25519-ecp256")).lexicographic
    assert not negotiation._index(
        parse_ike_suites("aes128-sha256-x25519, aes256-sha384-ecp384")
    ).lexicographic
    calls: list[object] = []

    def counting(*args: object) -> bool:
        calls.append(args)
        return False

    monkeypatch.setattr(negotiation, "_allows", counting)
    aead_with_integrity = (
        OfferedTransform(ENCR, 20, 256),
        OfferedTransform(INTEG, 12),
        OfferedTransform(PRF, 5),
        OfferedTransform(DH, 31),
    )
    refused = aead_with_integrity
    flood = [OfferedProposal(n, PROTO_IKE, b"", refused) for n in range(1, 101)]
    assert select_ike(flood, IKE_ALGORITHMS, prefer_dh=31) is None
    assert calls == []
