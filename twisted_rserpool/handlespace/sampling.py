"""Random choice of distinct items, uniform or weighted, in O(log n) per item.

:class:`WeightedSampler` keeps the weights in a Fenwick (binary indexed) tree, so changing a
weight, adding, removing and drawing one item by weight each take O(log n). Drawing k distinct
items zeroes each drawn weight until the draw is over. :class:`UniformSampler` is the special
case with all weights 1: a dense list with swap-removal, O(1) per change.

Each sampler calls ``place(item, slot)`` whenever it moves an item, so the owner can find the
item's slot again without a dictionary.
"""

from __future__ import annotations

import random
from array import array
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

T = TypeVar("T")

_MIN_CAPACITY = 16


def _noop(item: object, slot: int) -> None:
    pass


class WeightedSampler(Generic[T]):
    """Items with non-negative integer weights; draws are proportional to weight."""

    __slots__ = (
        "_capacity",
        "_count",
        "_free",
        "_items",
        "_place",
        "_total",
        "_tree",
        "_weights",
    )

    def __init__(self, place: Callable[[T, int], None] = _noop) -> None:
        self._place = place
        self._capacity = _MIN_CAPACITY
        # Signed 64-bit arrays keep the tree contiguous in memory (a list of int objects
        # costs a cache miss per level); weights are < 2**32, so sums of up to 2**31
        # items fit.
        self._tree = array("q", bytes(8 * (_MIN_CAPACITY + 1)))
        self._weights = array("q", bytes(8 * (_MIN_CAPACITY + 1)))
        self._items: list[T | None] = [None] * (_MIN_CAPACITY + 1)
        self._free: list[int] = list(range(_MIN_CAPACITY, 0, -1))
        self._count = 0
        self._total = 0

    def __len__(self) -> int:
        return self._count

    def __iter__(self) -> Iterator[T]:
        return (item for item in self._items if item is not None)

    @property
    def total(self) -> int:
        """The sum of all weights."""
        return self._total

    def weight(self, slot: int) -> int:
        """The weight of the item at ``slot``."""
        return self._weights[slot]

    def _add_delta(self, index: int, delta: int) -> None:
        self._total += delta
        tree = self._tree
        capacity = self._capacity
        while index <= capacity:
            tree[index] += delta
            index += index & -index

    def add(self, item: T, weight: int) -> int:
        """Add ``item`` with ``weight``; returns its slot (also passed to ``place``)."""
        if not 0 <= weight < 1 << 32:
            raise ValueError("weights are 32-bit unsigned integers")
        if not self._free:
            self._rebuild(self._capacity * 2)
        slot = self._free.pop()
        self._items[slot] = item
        self._weights[slot] = weight
        if weight:
            self._add_delta(slot, weight)
        self._count += 1
        self._place(item, slot)
        return slot

    def set_weight(self, slot: int, weight: int) -> None:
        """Change the weight of the item at ``slot``."""
        if not 0 <= weight < 1 << 32:
            raise ValueError("weights are 32-bit unsigned integers")
        delta = weight - self._weights[slot]
        if delta:
            self._weights[slot] = weight
            self._add_delta(slot, delta)

    def remove(self, slot: int) -> None:
        """Remove the item at ``slot``."""
        if self._items[slot] is None:
            raise KeyError(slot)
        self.set_weight(slot, 0)
        self._items[slot] = None
        self._free.append(slot)
        self._count -= 1
        if self._capacity > _MIN_CAPACITY and self._count < self._capacity >> 2:
            self._rebuild(self._capacity >> 1)

    def _rebuild(self, capacity: int) -> None:
        """Move the live items into a fresh tree of ``capacity`` slots (amortised O(1))."""
        live = [
            (item, weight)
            for item, weight in zip(self._items, self._weights, strict=True)
            if item is not None
        ]
        self._capacity = capacity
        tree = array("q", bytes(8 * (capacity + 1)))
        weights = array("q", bytes(8 * (capacity + 1)))
        items: list[T | None] = [None] * (capacity + 1)
        place = self._place
        for slot, (item, weight) in enumerate(live, 1):
            items[slot] = item
            weights[slot] = weight
            tree[slot] = weight
            place(item, slot)
        for index in range(1, capacity + 1):
            parent = index + (index & -index)
            if parent <= capacity:
                tree[parent] += tree[index]
        self._tree = tree
        self._weights = weights
        self._items = items
        self._total = sum(weight for _, weight in live)
        self._free = list(range(capacity, len(live), -1))

    def _find(self, value: int) -> int:
        """The slot whose cumulative weight range holds ``value`` (0 <= value < total)."""
        tree = self._tree
        position = 0
        # The capacity is a power of two and tree[capacity] is the total, which exceeds
        # value: the descent never steps past the capacity, so no bounds check is needed.
        step = self._capacity >> 1
        while step:
            following = position + step
            partial = tree[following]
            if partial <= value:
                position = following
                value -= partial
            step >>= 1
        return position + 1

    def sample(self, count: int, rng: random.Random) -> list[T]:
        """Up to ``count`` distinct items, each draw proportional to the remaining weights.

        Items of weight 0 are never drawn.
        """
        total = self._total
        if count <= 0 or total <= 0:
            return []
        weights = self._weights
        find = self._find
        randrange = rng.randrange
        # rng.randrange(total), without its two Python calls per draw: the same bits drawn
        # the same way (Random._randbelow_with_getrandbits), so the same slots for a seed.
        getrandbits = rng.getrandbits
        bits = total.bit_length()
        drawn: list[int] = []
        # Drawing with replacement and rejecting repeats gives the same distribution as
        # drawing from the remaining weights, without touching the tree. It is cheap
        # unless a few heavy items hold most of the weight; after a few rejections the
        # drawn items are taken out of the tree instead.
        remaining = total
        rejections = 0
        while len(drawn) < count and remaining > 0:
            value = getrandbits(bits)
            while value >= total:
                value = getrandbits(bits)
            slot = find(value)
            if slot in drawn:
                rejections += 1
                if rejections > 3:
                    break
                continue
            drawn.append(slot)
            remaining -= weights[slot]
        else:
            return self._items_at(drawn)
        removed = list(drawn)
        try:
            for slot in removed:
                self._add_delta(slot, -weights[slot])
            while len(drawn) < count and self._total > 0:
                slot = find(randrange(self._total))
                drawn.append(slot)
                removed.append(slot)
                self._add_delta(slot, -weights[slot])
        finally:
            for slot in removed:
                self._add_delta(slot, weights[slot])
        return self._items_at(drawn)

    def _items_at(self, slots: list[int]) -> list[T]:
        items = self._items
        return [items[slot] for slot in slots]  # type: ignore[misc]

    def check(self) -> None:
        """Assert that the tree matches the weights (for tests)."""
        for index in range(1, self._capacity + 1):
            low = index - (index & -index)
            assert self._tree[index] == sum(self._weights[low + 1 : index + 1])
        assert self._total == sum(self._weights)
        assert self._count == sum(1 for item in self._items if item is not None)


class UniformSampler(Generic[T]):
    """Items drawn with equal probability."""

    __slots__ = ("_items", "_place")

    def __init__(self, place: Callable[[T, int], None] = _noop) -> None:
        self._items: list[T] = []
        self._place = place

    def __len__(self) -> int:
        return len(self._items)

    def __iter__(self) -> Iterator[T]:
        return iter(self._items)

    def add(self, item: T) -> int:
        """Add ``item``; returns its slot (also passed to ``place``)."""
        slot = len(self._items)
        self._items.append(item)
        self._place(item, slot)
        return slot

    def remove(self, slot: int) -> None:
        """Remove the item at ``slot`` (the last item moves into the gap)."""
        items = self._items
        last = items.pop()
        if slot < len(items):
            items[slot] = last
            self._place(last, slot)

    def sample(self, count: int, rng: random.Random) -> list[T]:
        """Up to ``count`` distinct items in random order."""
        items = self._items
        count = min(count, len(items))
        if count <= 0:
            return []
        return [items[index] for index in rng.sample(range(len(items)), count)]
