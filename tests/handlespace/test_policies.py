"""RFC 5356 policies: hand-worked examples, then distributions with stated bounds."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from tests.handlespace.support import element
from twisted_rserpool.handlespace import Algorithm, Handlespace, RsplibPolicyType, algorithm_for
from twisted_rserpool.wire.parameters import (
    LeastUsedDegradationPolicy,
    LeastUsedPolicy,
    PriorityLeastUsedPolicy,
    PriorityPolicy,
    RandomizedLeastUsedPolicy,
    RandomPolicy,
    RoundRobinPolicy,
    SelectionPolicy,
    UnknownPolicy,
    WeightedRandomPolicy,
    WeightedRoundRobinPolicy,
)

HANDLE = b"pool"
A, B, C, D, E = 0xA, 0xB, 0xC, 0xD, 0xE


def pool_of(*members: tuple[int, SelectionPolicy], seed: int = 1) -> Handlespace:
    """A handlespace with one pool holding the given (PE identifier, policy) members."""
    handlespace = Handlespace(rng=random.Random(seed))
    for pe_identifier, policy in members:
        handlespace.register(HANDLE, element(pe_identifier, policy), now=0.0)
    return handlespace


def ids(handlespace: Handlespace, count: int) -> list[int]:
    """PE identifiers of one handle resolution for ``count`` PEs."""
    return [entry.pe_identifier for entry in handlespace.select(HANDLE, count)]


# ------------------------------------------------------------------ hand-worked examples


def test_round_robin_returns_from_head_and_advances_it_by_one() -> None:
    """RFC 5356 4.1.2: the list starts at the head; after each resolution the head moves on
    by one element, so lists presented to pool users start with different PEs."""
    hs = pool_of((A, RoundRobinPolicy()), (B, RoundRobinPolicy()), (C, RoundRobinPolicy()))
    assert ids(hs, 2) == [A, B]
    assert ids(hs, 2) == [B, C]
    assert ids(hs, 2) == [C, A]
    assert ids(hs, 5) == [A, B, C]
    assert ids(hs, 1) == [B]


def test_round_robin_newcomer_joins_behind_the_current_tail() -> None:
    """A PE registered later is appended to the circular list, before the head comes round."""
    hs = pool_of((A, RoundRobinPolicy()), (B, RoundRobinPolicy()))
    assert ids(hs, 1) == [A]
    hs.register(HANDLE, element(C, RoundRobinPolicy()), now=0.0)
    assert [ids(hs, 1)[0] for _ in range(4)] == [B, A, C, B]


def test_round_robin_reregistration_keeps_place() -> None:
    """Re-registering a PE (same identifier) does not move it in the circular list."""
    hs = pool_of((A, RoundRobinPolicy()), (B, RoundRobinPolicy()), (C, RoundRobinPolicy()))
    hs.register(HANDLE, element(A, RoundRobinPolicy(), life=90), now=1.0)
    assert ids(hs, 3) == [A, B, C]


def test_weighted_round_robin_occurrences_are_proportional_and_even() -> None:
    """RFC 5356 4.2.2: with weights A=2, B=1 the circular list holds A twice per B, and
    B's entries are spread out (never two B's in a row)."""
    hs = pool_of((A, WeightedRoundRobinPolicy(2)), (B, WeightedRoundRobinPolicy(1)))
    heads = [ids(hs, 1)[0] for _ in range(30)]
    assert Counter(heads) == {A: 20, B: 10}
    assert all(heads[i : i + 2] != [B, B] for i in range(len(heads) - 1))
    assert all(heads[i : i + 3].count(A) <= 2 for i in range(len(heads) - 2))


def test_weighted_round_robin_all_weights_one_is_round_robin() -> None:
    """RFC 5356 4.2.1: if all weights are 1, WRR is RR."""
    hs = pool_of(*((pe, WeightedRoundRobinPolicy(1)) for pe in (A, B, C)))
    assert [ids(hs, 1)[0] for _ in range(6)] == [A, B, C, A, B, C]


def test_weighted_round_robin_answers_are_distinct_and_skip_weight_zero() -> None:
    """N distinct PEs per answer; a PE of weight 0 provides no service (RFC 5356 3.2)."""
    hs = pool_of(
        (A, WeightedRoundRobinPolicy(5)),
        (B, WeightedRoundRobinPolicy(1)),
        (C, WeightedRoundRobinPolicy(0)),
    )
    for _ in range(20):
        answer = ids(hs, 3)
        assert sorted(answer) == [A, B]


def test_random_reports_each_pe_at_most_once() -> None:
    """RFC 5356 4.3.2: at most the requested number, no PE twice."""
    hs = pool_of(*((pe, RandomPolicy()) for pe in (A, B, C, D)))
    for _ in range(50):
        answer = ids(hs, 3)
        assert len(answer) == 3 == len(set(answer))
    assert sorted(ids(hs, 10)) == [A, B, C, D]


def test_weighted_random_never_picks_weight_zero() -> None:
    """RFC 5356 3.2 / 4.4: weight 0 means no service, so such a PE is never selected."""
    hs = pool_of((A, WeightedRandomPolicy(0)), (B, WeightedRandomPolicy(3)))
    for _ in range(50):
        assert ids(hs, 2) == [B]


def test_priority_reports_in_decreasing_order() -> None:
    """RFC 5356 4.5.2: the highest priorities, in decreasing order."""
    hs = pool_of((A, PriorityPolicy(1)), (B, PriorityPolicy(5)), (C, PriorityPolicy(3)))
    assert ids(hs, 3) == [B, C, A]
    assert ids(hs, 1) == [B]


def test_priority_equal_priorities_take_turns() -> None:
    """Equal priorities may be listed in any order; they rotate so load spreads."""
    hs = pool_of((A, PriorityPolicy(9)), (B, PriorityPolicy(9)), (C, PriorityPolicy(1)))
    assert ids(hs, 3) == [A, B, C]
    assert ids(hs, 3) == [B, A, C]


def test_least_used_ascending_with_round_robin_ties() -> None:
    """RFC 5356 5.1.2: sorted ascending by load; equal loads are chosen round robin."""
    hs = pool_of(
        (A, LeastUsedPolicy(10)),
        (B, LeastUsedPolicy(10)),
        (C, LeastUsedPolicy(5)),
        (D, LeastUsedPolicy(99)),
    )
    assert ids(hs, 3) == [C, A, B]
    assert ids(hs, 3) == [C, A, B]  # C first again: it is strictly least used
    hs.register(HANDLE, element(C, LeastUsedPolicy(50)), now=1.0)
    assert ids(hs, 2) == [A, B]
    assert ids(hs, 2) == [B, A]
    assert ids(hs, 4) == [A, B, C, D]


def test_least_used_follows_load_updates() -> None:
    """A re-registration with a new load moves the PE in the order at once."""
    hs = pool_of((A, LeastUsedPolicy(1)), (B, LeastUsedPolicy(2)))
    assert ids(hs, 2) == [A, B]
    hs.register(HANDLE, element(A, LeastUsedPolicy(3)), now=1.0)
    assert ids(hs, 2) == [B, A]


def test_least_used_degradation_counter_grows_and_resets() -> None:
    """RFC 5356 5.2.2: each selection adds 1 to the counter; ordering uses
    load + counter * degradation; re-registration resets the counter to 0."""
    hs = pool_of(
        (A, LeastUsedDegradationPolicy(0x100, 0x80)),
        (B, LeastUsedDegradationPolicy(0x150, 0x10)),
    )
    assert ids(hs, 1) == [A]  # A 0x100 < B 0x150; A becomes 0x180
    assert ids(hs, 1) == [B]  # B 0x150 < A 0x180; B becomes 0x160
    assert ids(hs, 1) == [B]  # B 0x160 < A 0x180; B becomes 0x170
    assert ids(hs, 1) == [B]  # B 0x170 < A 0x180; B becomes 0x180
    entry_a = hs.get(HANDLE, A)
    assert entry_a is not None and entry_a.degradation_counter == 1
    assert ids(hs, 2) == [A, B]  # tie at 0x180: A waited longer
    hs.register(HANDLE, element(B, LeastUsedDegradationPolicy(0x150, 0x10)), now=1.0)
    entry_b = hs.get(HANDLE, B)
    assert entry_b is not None and entry_b.degradation_counter == 0
    assert ids(hs, 1) == [B]


def test_least_used_degradation_degrades_every_pe_returned() -> None:
    """Every PE in an answer counts as selected, so a 2-PE answer degrades both."""
    hs = pool_of(*((pe, LeastUsedDegradationPolicy(0, 1)) for pe in (A, B, C)))
    assert ids(hs, 2) == [A, B]
    assert ids(hs, 2) == [C, A]
    counters = [hs.get(HANDLE, pe).degradation_counter for pe in (A, B, C)]  # type: ignore[union-attr]
    assert counters == [2, 1, 1]


def test_priority_least_used_rfc_example() -> None:
    """RFC 5356 5.3.1: A and B at 50 % load; A's degradation is 10 %, B's 50 %:
    A is selected (50 + 10 = 60) instead of B (50 + 50 = 100)."""
    pct = 0xFFFFFFFF // 100
    hs = pool_of(
        (B, PriorityLeastUsedPolicy(50 * pct, 50 * pct)),
        (A, PriorityLeastUsedPolicy(50 * pct, 10 * pct)),
    )
    assert ids(hs, 2) == [A, B]
    assert ids(hs, 1) == [A]


def test_randomized_least_used_probability_formula() -> None:
    """RFC 5356 5.4.1: P(A) = (0xffffffff - load_A) / sum(0xffffffff - load_x).
    Loads 0, 1/2 and 3/4 give 4:2:1; over 14000 single draws each share is within
    1.5 points of 4/7, 2/7, 1/7 (one sigma is at most 0.42 points)."""
    full = 0xFFFFFFFF
    hs = pool_of(
        (A, RandomizedLeastUsedPolicy(0)),
        (B, RandomizedLeastUsedPolicy(full - (full + 1) // 2)),
        (C, RandomizedLeastUsedPolicy(full - (full + 1) // 4)),
        seed=5,
    )
    draws = 14_000
    counts = Counter(ids(hs, 1)[0] for _ in range(draws))
    for pe, share in ((A, 4 / 7), (B, 2 / 7), (C, 1 / 7)):
        assert abs(counts[pe] / draws - share) < 0.015


def test_randomized_least_used_fully_loaded_pool_still_resolves() -> None:
    """A PE at 100 % load keeps weight 1 (as in RSPLIB), so a full pool still answers."""
    hs = pool_of(
        (A, RandomizedLeastUsedPolicy(0xFFFFFFFF)), (B, RandomizedLeastUsedPolicy(0xFFFFFFFF))
    )
    assert sorted(ids(hs, 2)) == [A, B]


# ------------------------------------------------------------------ RSPLIB private policies


def rsplib(policy_type: int, *words: int) -> UnknownPolicy:
    """An RSPLIB private policy as the wire codec hands it over."""
    return UnknownPolicy(policy_type, b"".join(word.to_bytes(4, "big") for word in words))


def test_rsplib_private_policies_are_recognised() -> None:
    """RSPLIB's 0xb0001001-4 map to their algorithms; DPF types and short data do not."""
    assert algorithm_for(rsplib(RsplibPolicyType.RANDOMIZED_PRIORITY_LEAST_USED, 5)) is (
        Algorithm.RANDOMIZED_PRIORITY_LEAST_USED
    )
    assert algorithm_for(rsplib(RsplibPolicyType.PRIORITY_LEAST_USED_DEGRADATION, 1, 2)) is (
        Algorithm.PRIORITY_LEAST_USED_DEGRADATION
    )
    assert algorithm_for(rsplib(RsplibPolicyType.PRIORITY_LEAST_USED_DEGRADATION, 1)) is None
    assert algorithm_for(rsplib(RsplibPolicyType.WEIGHTED_RANDOM_DPF, 1, 2, 3)) is None
    assert algorithm_for(RoundRobinPolicy()) is Algorithm.ROUND_ROBIN


def test_rsplib_priority_least_used_degradation() -> None:
    """PLUD: lowest load + (1 + counter) * degradation first, counter growing per selection."""
    plud = RsplibPolicyType.PRIORITY_LEAST_USED_DEGRADATION
    hs = pool_of((A, rsplib(plud, 100, 50)), (B, rsplib(plud, 180, 10)))
    assert ids(hs, 1) == [A]  # A 150 < B 190; A becomes 200
    assert ids(hs, 1) == [B]  # B 190 < A 200; B becomes 200
    assert ids(hs, 2) == [A, B]


def test_rsplib_randomized_least_used_degradation_shifts_weight() -> None:
    """RLUD: a PE's weight shrinks by its degradation each time it is selected."""
    rlud = RsplibPolicyType.RANDOMIZED_LEAST_USED_DEGRADATION
    hs = pool_of((A, rsplib(rlud, 0, 0xFFFFFFF0)), (B, rsplib(rlud, 0x7FFFFFFF, 0)))
    first = ids(hs, 1)[0]
    entry = hs.get(HANDLE, first)
    assert entry is not None and entry.degradation_counter == 1
    if first == A:  # A's weight is now 1 out of about 2**31: B comes next
        assert ids(hs, 1) == [B]


def test_unknown_policy_selects_at_random_and_logs() -> None:
    """An unknown policy type is stored byte-exact and resolved as Random, with a log line."""
    from twisted.logger import ILogObserver, globalLogPublisher
    from zope.interface import provider

    seen: list[dict[str, object]] = []

    @provider(ILogObserver)
    def observe(event: dict[str, object]) -> None:
        seen.append(event)

    globalLogPublisher.addObserver(observe)
    try:
        hs = pool_of((A, UnknownPolicy(0x80000007, b"\x01")), (B, UnknownPolicy(0x80000007, b"")))
    finally:
        globalLogPublisher.removeObserver(observe)
    assert any(event.get("policy_type") == 0x80000007 for event in seen)
    assert hs.pool(HANDLE).algorithm is None
    assert sorted(ids(hs, 5)) == [A, B]
    entry = hs.get(HANDLE, A)
    assert entry is not None and entry.policy == UnknownPolicy(0x80000007, b"\x01")


# ------------------------------------------------------------------ distributions


def test_round_robin_is_exactly_fair() -> None:
    """Over 1000 single-PE resolutions of 10 PEs, every PE is first exactly 100 times."""
    hs = pool_of(*((pe, RoundRobinPolicy()) for pe in range(1, 11)))
    assert set(Counter(ids(hs, 1)[0] for _ in range(1000)).values()) == {100}


def test_weighted_round_robin_shares_match_weights() -> None:
    """Weights 1, 2, 3, 4: over 1000 resolutions the heads split 100/200/300/400 (+-1)."""
    hs = pool_of(*((pe, WeightedRoundRobinPolicy(pe)) for pe in (1, 2, 3, 4)))
    counts = Counter(ids(hs, 1)[0] for _ in range(1000))
    for pe in (1, 2, 3, 4):
        assert abs(counts[pe] - 100 * pe) <= 1


def test_weighted_random_frequencies() -> None:
    """Weights 1:2:7 over 20000 draws: shares within 1.5 points of 10/20/70 % (> 4 sigma)."""
    hs = pool_of(
        (A, WeightedRandomPolicy(1)),
        (B, WeightedRandomPolicy(2)),
        (C, WeightedRandomPolicy(7)),
        seed=3,
    )
    draws = 20_000
    counts = Counter(ids(hs, 1)[0] for _ in range(draws))
    for pe, share in ((A, 0.1), (B, 0.2), (C, 0.7)):
        assert abs(counts[pe] / draws - share) < 0.015


def test_random_is_uniform() -> None:
    """Five PEs, 20000 draws of one: each share within 1.5 points of 20 % (sigma 0.28)."""
    hs = pool_of(*((pe, RandomPolicy()) for pe in range(1, 6)), seed=11)
    draws = 20_000
    counts = Counter(ids(hs, 1)[0] for _ in range(draws))
    assert all(abs(count / draws - 0.2) < 0.015 for count in counts.values())


def test_least_used_answers_are_sorted_by_load() -> None:
    """Every LU answer is ascending by load, for random loads and updates."""
    rng = random.Random(9)
    hs = pool_of(*((pe, LeastUsedPolicy(rng.randrange(1000))) for pe in range(1, 41)))
    for _ in range(200):
        pe = rng.randrange(1, 41)
        hs.register(HANDLE, element(pe, LeastUsedPolicy(rng.randrange(1000))), now=0.0)
        answer = hs.select(HANDLE, 8)
        loads = [entry.policy.load for entry in answer]  # type: ignore[attr-defined]
        assert loads == sorted(loads)
        everything = sorted(e.policy.load for e in hs.pool(HANDLE))  # type: ignore[attr-defined]
        assert loads == everything[:8]


def test_degradation_spreads_picks_over_equal_pes() -> None:
    """LUD: 400 single resolutions over 4 equally loaded PEs pick each exactly 100 times; a
    PE 100 load units below another (degradation 10) takes the first 10 picks, then the two
    alternate, 55 to 45 over 100 picks."""
    hs = pool_of(*((pe, LeastUsedDegradationPolicy(1000, 10)) for pe in (A, B, C, D)))
    counts = Counter(ids(hs, 1)[0] for _ in range(400))
    assert set(counts.values()) == {100}
    hs2 = pool_of(
        (A, LeastUsedDegradationPolicy(900, 10)), (B, LeastUsedDegradationPolicy(1000, 10))
    )
    counts2 = Counter(ids(hs2, 1)[0] for _ in range(100))
    assert counts2 == {A: 55, B: 45}


@pytest.mark.parametrize(
    "policy",
    [
        RoundRobinPolicy(),
        WeightedRoundRobinPolicy(3),
        RandomPolicy(),
        WeightedRandomPolicy(3),
        PriorityPolicy(3),
        LeastUsedPolicy(3),
        LeastUsedDegradationPolicy(3, 1),
        PriorityLeastUsedPolicy(3, 1),
        RandomizedLeastUsedPolicy(3),
    ],
)
def test_every_policy_answers_distinct_live_pes(policy: SelectionPolicy) -> None:
    """Each policy returns min(N, pool size) distinct PEs of the pool, for every N."""
    hs = pool_of(*((pe, policy) for pe in range(1, 8)))
    for count in range(0, 10):
        answer = ids(hs, count)
        assert len(answer) == min(count, 7) == len(set(answer))
        assert set(answer) <= set(range(1, 8))
