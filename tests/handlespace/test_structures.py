"""The data structures under the handlespace: sorted list, samplers, deadlines, checksum."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from twisted_rserpool.deadline import DeadlineQueue
from twisted_rserpool.handlespace import checksum
from twisted_rserpool.handlespace.sampling import UniformSampler, WeightedSampler
from twisted_rserpool.handlespace.sortedlist import SortedList


@settings(max_examples=60)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["add", "remove", "rekey"]), st.integers(0, 300), st.integers(0, 300)
        ),
        max_size=400,
    )
)
def test_sorted_list_matches_sorted_dict(operations: list[tuple[str, int, int]]) -> None:
    """Random adds, removes and re-keyings (in place or not) leave a SortedList equal to a
    sorted dict, invariants intact."""
    items: SortedList[int, str] = SortedList(load=4)
    model: dict[int, str] = {}
    for operation, key, other in operations:
        if operation == "add" and key not in model:
            items.add(key, str(key))
            model[key] = str(key)
        elif operation == "remove" and key in model:
            assert items.remove(key) == model.pop(key)
        elif operation == "rekey" and key in model and other not in model:
            # Half of them to just past the key: the in-place case of selection.
            new = other if other % 2 else key + 1 + other % 3
            if new not in model:
                items.rekey(key, new)
                model[new] = model.pop(key)
        items.check()
    assert list(items.keys()) == sorted(model)
    assert list(items) == [model[key] for key in sorted(model)]
    assert len(items) == len(model)
    assert items.head(5) == [model[key] for key in sorted(model)[:5]]
    assert all(key in items for key in model)


@settings(max_examples=200)
@given(st.lists(st.tuples(st.integers(0, 99), st.integers(-15, 15)), max_size=60))
def test_sorted_list_rekey_in_place_and_not(moves: list[tuple[int, int]]) -> None:
    """Re-keying to a near key (often in place, across short lists' edges too) or a far
    one keeps the list equal to a sorted dict, invariants intact."""
    items: SortedList[int, int] = SortedList(load=4)
    model = {key: key for key in range(0, 1000, 10)}
    for key in model:
        items.add(key, key)
    for index, delta in moves:
        old = sorted(model)[index % len(model)]
        new = old + delta if delta else old + 500
        if new in model or new < 0:
            continue
        items.rekey(old, new)
        model[new] = model.pop(old)
        items.check()
    assert list(items.keys()) == sorted(model)
    assert list(items) == [model[key] for key in sorted(model)]


def test_sorted_list_remove_missing_raises() -> None:
    """Removing a key that is not there raises KeyError and changes nothing."""
    items: SortedList[float, int] = SortedList(load=4)
    for key in range(20):
        items.add(key, key)
    for missing in (-1, 7.5, 100):
        with pytest.raises(KeyError):
            items.remove(missing)
    assert list(items) == list(range(20))
    assert 7 in items and 100 not in items and 7.5 not in items


def test_sorted_list_head_spans_short_lists() -> None:
    """head(n) returns the n smallest values even when they span several short lists."""
    items: SortedList[int, int] = SortedList(load=4)
    for key in reversed(range(50)):
        items.add(key, -key)
    assert items.head(30) == [-key for key in range(30)]
    assert items.head(0) == []
    assert items.head(99) == [-key for key in range(50)]
    with pytest.raises(ValueError):
        SortedList(load=2)


@settings(max_examples=60)
@given(st.lists(st.tuples(st.booleans(), st.integers(0, 1000)), max_size=300))
def test_weighted_sampler_tree_matches_weights(operations: list[tuple[bool, int]]) -> None:
    """Adds, weight changes and removes keep the Fenwick tree equal to the weights."""
    slots: dict[int, int] = {}

    def place(item: int, slot: int) -> None:
        slots[item] = slot

    sampler: WeightedSampler[int] = WeightedSampler(place)
    live: dict[int, int] = {}
    for number, (add, weight) in enumerate(operations):
        if add or not live:
            sampler.add(number, weight)
            live[number] = weight
        else:
            victim = sorted(live)[weight % len(live)]
            sampler.remove(slots[victim])
            del live[victim]
        sampler.check()
        assert sampler.total == sum(live.values())
        assert sorted(sampler) == sorted(live)
        for item, item_weight in live.items():
            assert sampler.weight(slots[item]) == item_weight


def test_weighted_sampler_draws_distinct_items_and_skips_zero_weight() -> None:
    """A draw never repeats an item and never returns an item of weight 0."""
    sampler: WeightedSampler[str] = WeightedSampler()
    for name, weight in (("a", 5), ("b", 0), ("c", 1), ("d", 100)):
        sampler.add(name, weight)
    rng = random.Random(7)
    for _ in range(200):
        drawn = sampler.sample(4, rng)
        assert sorted(drawn) == ["a", "c", "d"]
    sampler.check()
    assert sampler.total == 106


def test_weighted_sampler_frequencies() -> None:
    """Single draws follow the weights 1:3:6 within 1.5 percentage points (over 20000 draws,
    one standard deviation is at most 0.35 points, so the bound is more than 4 sigma)."""
    sampler: WeightedSampler[str] = WeightedSampler()
    for name, weight in (("a", 1), ("b", 3), ("c", 6)):
        sampler.add(name, weight)
    rng = random.Random(42)
    counts = {"a": 0, "b": 0, "c": 0}
    draws = 20_000
    for _ in range(draws):
        counts[sampler.sample(1, rng)[0]] += 1
    for name, expected in (("a", 0.1), ("b", 0.3), ("c", 0.6)):
        assert abs(counts[name] / draws - expected) < 0.015


def test_uniform_sampler_swap_removal() -> None:
    """Removing from the middle moves the last item into the gap and reports its new slot."""
    slots: dict[str, int] = {}
    sampler: UniformSampler[str] = UniformSampler(slots.__setitem__)
    for name in "abcd":
        sampler.add(name)
    sampler.remove(slots["b"])
    assert sorted(sampler) == ["a", "c", "d"]
    assert slots["d"] == 1
    assert sorted(sampler.sample(10, random.Random(1))) == ["a", "c", "d"]


def test_deadline_queue_orders_replaces_and_cancels() -> None:
    """Items come out in deadline order; rescheduling replaces, cancelling forgets."""
    queue: DeadlineQueue[str] = DeadlineQueue()
    queue.schedule("a", 5.0)
    queue.schedule("b", 3.0)
    queue.schedule("c", 4.0)
    queue.schedule("b", 6.0)
    queue.cancel("c")
    assert queue.next_deadline() == 5.0
    assert list(queue.pop_due(5.5)) == ["a"]
    assert list(queue.pop_due(10.0)) == ["b"]
    assert queue.next_deadline() is None
    assert len(queue) == 0


def test_deadline_queue_compacts_replaced_entries() -> None:
    """Rescheduling one item many times does not grow the heap without bound."""
    queue: DeadlineQueue[str] = DeadlineQueue()
    for when in range(10_000):
        queue.schedule("a", float(when))
    assert len(queue._heap) < 200
    assert queue.next_deadline() == 9999.0


def test_checksum_rfc1071_example() -> None:
    """The word sum and fold follow RFC 1071 section 3's worked example (sum ddf2, ~ = 220d)."""
    data = bytes.fromhex("0001f203f4f5f6f7")
    assert checksum.word_sum(data) == 0x2DDF0
    assert checksum.finish(0x2DDF0) == 0x220D


def test_checksum_block_layout() -> None:
    """A PE's block is the pool handle zero-padded to 32 bits, then the PE identifier."""
    assert checksum.pe_block(b"abcde", 0x01020304) == b"abcde\x00\x00\x00\x01\x02\x03\x04"
    assert checksum.pe_block(b"abcd", 1) == b"abcd\x00\x00\x00\x01"
    assert checksum.pe_contribution(b"abcde", 0x01020304) == checksum.word_sum(
        checksum.pe_block(b"abcde", 0x01020304)
    )


def test_checksum_of_nothing_is_ffff() -> None:
    """An owner with no PEs has checksum 0xffff (the complement of an empty sum), as RSPLIB."""
    assert checksum.compute([]) == 0xFFFF


@given(
    st.lists(
        st.tuples(st.binary(min_size=1, max_size=33), st.integers(0, 0xFFFFFFFF)),
        max_size=30,
    )
)
def test_checksum_is_order_independent_and_incremental(
    elements: list[tuple[bytes, int]],
) -> None:
    """Adding contributions one by one and folding equals computing over all blocks."""
    total = sum(checksum.pe_contribution(handle, pe_id) for handle, pe_id in elements)
    assert checksum.finish(total) == checksum.compute(elements)
    assert checksum.compute(reversed(elements)) == checksum.compute(elements)


class _Item:
    """An item with a schedule token."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.token = 0


def test_token_deadline_queue_orders_replaces_and_cancels() -> None:
    """With a token attribute the queue behaves the same and keeps its heap bounded."""
    queue: DeadlineQueue[_Item] = DeadlineQueue(token="token")
    a, b, c = _Item("a"), _Item("b"), _Item("c")
    queue.schedule(a, 5.0)
    queue.schedule(b, 3.0)
    queue.schedule(c, 4.0)
    queue.schedule(b, 6.0)
    queue.cancel(c)
    queue.cancel(c)
    assert len(queue) == 2 and a in queue and c not in queue
    assert queue.next_deadline() == 5.0
    assert [item.name for item in queue.pop_due(5.5)] == ["a"]
    assert [item.name for item in queue.pop_due(10.0)] == ["b"]
    assert queue.next_deadline() is None and len(queue) == 0
    for when in range(10_000):
        queue.schedule(a, float(when))
    assert len(queue._heap) < 200 and len(queue) == 1


def test_weighted_sampler_heavy_item_falls_back_without_bias() -> None:
    """With one item holding almost all weight, draws of several items still return each
    item once, and the light items' order follows their weights (20:1 within bounds)."""
    sampler: WeightedSampler[str] = WeightedSampler()
    sampler.add("heavy", 0xFFFFFFFF)
    sampler.add("light", 20)
    sampler.add("tiny", 1)
    rng = random.Random(5)
    second = {"light": 0, "tiny": 0}
    for _ in range(2000):
        drawn = sampler.sample(3, rng)
        assert sorted(drawn) == ["heavy", "light", "tiny"]
        second[drawn[1]] += 1
    sampler.check()
    # P(light second) = 20/21 = 0.952; sigma over 2000 draws is 0.005.
    assert abs(second["light"] / 2000 - 20 / 21) < 0.025


def _randrange_draw(sampler: WeightedSampler[int], count: int, rng: random.Random) -> list[int]:
    """The weighted draw as rng.randrange(total) makes it (before any fallback): with
    replacement, repeats rejected, at most three rejections."""
    total = sampler.total
    drawn: list[int] = []
    remaining, rejections = total, 0
    while len(drawn) < count and remaining > 0 and rejections <= 3:
        slot = sampler._find(rng.randrange(total))
        if slot in drawn:
            rejections += 1
            continue
        drawn.append(slot)
        remaining -= sampler.weight(slot)
    return drawn


@given(
    st.lists(st.integers(0, 0xFFFFFFFF), min_size=1, max_size=40),
    st.integers(1, 8),
    st.integers(0, 2**32),
)
def test_weighted_sampler_draws_what_randrange_would(
    weights: list[int], count: int, seed: int
) -> None:
    """Drawing bits straight from getrandbits picks, for every seed, the very slots that
    rng.randrange(total) picks (the same bits, the same rejection of values beyond the
    total): the sample begins with the randrange draw and is that draw when no fallback
    was needed."""
    slots: dict[int, int] = {}
    sampler: WeightedSampler[int] = WeightedSampler(slots.__setitem__)
    for item, weight in enumerate(weights):
        sampler.add(item, weight)
    expected = _randrange_draw(sampler, count, random.Random(seed))
    got = [slots[item] for item in sampler.sample(count, random.Random(seed))]
    assert got[: len(expected)] == expected
    if len(expected) == min(count, sum(1 for w in weights if w)):
        assert got == expected
