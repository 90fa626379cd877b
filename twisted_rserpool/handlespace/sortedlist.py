"""An ordered multiset of comparable items with logarithmic insert, remove and head access.

The items live in a list of short sorted lists (a B+-tree of height two, the layout of the
``sortedcontainers`` package). Finding an item is two ``bisect`` calls in C; inserting or
removing moves at most ``2 * load`` references inside one short list. Only splitting and
dropping a short list touches the outer lists, which hold ``n / load`` entries, so for the
pool sizes RSerPool sees (up to about 10**6) every operation costs a bounded number of C-level
steps plus O(log n) comparisons.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right, insort
from collections.abc import Iterator
from itertools import islice
from typing import Any, Generic, Protocol, TypeVar


class _Comparable(Protocol):
    def __lt__(self, other: Any, /) -> bool: ...


T = TypeVar("T", bound=_Comparable)

#: Items per short list: long enough that the outer lists stay small, short enough that the
#: memmove of one insert is a few cache lines.
DEFAULT_LOAD = 256


class SortedList(Generic[T]):
    """Items kept in ascending order; items that compare equal must be identical objects."""

    __slots__ = ("_len", "_lists", "_load", "_maxes")

    def __init__(self, load: int = DEFAULT_LOAD) -> None:
        if load < 4:
            raise ValueError("load must be at least 4")
        self._lists: list[list[T]] = []
        self._maxes: list[T] = []
        self._load = load
        self._len = 0

    def __len__(self) -> int:
        return self._len

    def __bool__(self) -> bool:
        return self._len > 0

    def __iter__(self) -> Iterator[T]:
        for sub in self._lists:
            yield from sub

    def __contains__(self, item: T) -> bool:
        maxes = self._maxes
        i = bisect_left(maxes, item)
        if i == len(maxes):
            return False
        sub = self._lists[i]
        j = bisect_left(sub, item)
        return j < len(sub) and sub[j] == item

    def add(self, item: T) -> None:
        """Insert ``item`` at its sorted position."""
        maxes = self._maxes
        lists = self._lists
        if not maxes:
            lists.append([item])
            maxes.append(item)
            self._len = 1
            return
        i = bisect_right(maxes, item)
        if i == len(maxes):
            i -= 1
            sub = lists[i]
            sub.append(item)
            maxes[i] = item
        else:
            sub = lists[i]
            insort(sub, item)
        self._len += 1
        if len(sub) > 2 * self._load:
            half = len(sub) >> 1
            tail = sub[half:]
            del sub[half:]
            maxes[i] = sub[-1]
            lists.insert(i + 1, tail)
            maxes.insert(i + 1, tail[-1])

    def remove(self, item: T) -> None:
        """Remove ``item``; :class:`KeyError` if it is not there."""
        maxes = self._maxes
        i = bisect_left(maxes, item)
        if i == len(maxes):
            raise KeyError(item)
        sub = self._lists[i]
        j = bisect_left(sub, item)
        if j == len(sub) or sub[j] != item:
            raise KeyError(item)
        del sub[j]
        self._len -= 1
        if not sub:
            del self._lists[i]
            del maxes[i]
            return
        maxes[i] = sub[-1]
        if len(sub) < self._load >> 2 and len(self._lists) > 1:
            self._merge(i)

    def _merge(self, i: int) -> None:
        """Join the short list at ``i`` with a neighbour, splitting again if too long."""
        lists = self._lists
        maxes = self._maxes
        if i == len(lists) - 1:
            i -= 1
        joined = lists[i] + lists[i + 1]
        del lists[i + 1]
        del maxes[i + 1]
        if len(joined) > 2 * self._load:
            half = len(joined) >> 1
            lists[i] = joined[:half]
            maxes[i] = joined[half - 1]
            lists.insert(i + 1, joined[half:])
            maxes.insert(i + 1, joined[-1])
        else:
            lists[i] = joined
            maxes[i] = joined[-1]

    def first(self) -> T:
        """The smallest item; :class:`IndexError` when empty."""
        if not self._lists:
            raise IndexError("first() of an empty SortedList")
        return self._lists[0][0]

    def head(self, count: int) -> list[T]:
        """The ``count`` smallest items in ascending order (fewer if there are fewer)."""
        lists = self._lists
        if not lists or count <= 0:
            return []
        first = lists[0]
        if count <= len(first):
            return first[:count]
        return list(islice(self, count))

    def clear(self) -> None:
        """Remove every item."""
        self._lists.clear()
        self._maxes.clear()
        self._len = 0

    def check(self) -> None:
        """Assert the internal invariants (for tests)."""
        assert len(self._lists) == len(self._maxes)
        total = 0
        previous: T | None = None
        for sub, top in zip(self._lists, self._maxes, strict=True):
            assert sub, "empty short list"
            assert sub[-1] is top or sub[-1] == top
            for item in sub:
                if previous is not None:
                    assert previous < item, "items out of order"
                previous = item
            total += len(sub)
        assert total == self._len
