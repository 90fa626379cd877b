"""An ordered map from unique keys to values with logarithmic insert, remove and head access.

Keys live in a list of short sorted lists (a B+-tree of height two, the layout of the
``sortedcontainers`` package), values in parallel lists. Finding a key is two ``bisect``
calls in C that compare keys only, so with integer keys a lookup never touches the values;
inserting or removing moves at most ``2 * load`` references inside one short list. Only
splitting and dropping a short list touches the outer lists, which hold ``n / load``
entries, so for the pool sizes RSerPool sees (up to about 10**6) every operation costs
O(log n) comparisons plus a bounded number of C-level steps.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Iterator
from typing import Any, Generic, Protocol, TypeVar


class _Comparable(Protocol):
    def __lt__(self, other: Any, /) -> bool: ...


K = TypeVar("K", bound=_Comparable)
V = TypeVar("V")

#: Keys per short list: long enough that the outer lists stay small, short enough that the
#: memmove of one insert is a few cache lines.
DEFAULT_LOAD = 256


class SortedList(Generic[K, V]):
    """Values kept in ascending order of their unique keys."""

    __slots__ = ("_keys", "_len", "_load", "_maxes", "_values")

    def __init__(self, load: int = DEFAULT_LOAD) -> None:
        if load < 4:
            raise ValueError("load must be at least 4")
        self._keys: list[list[K]] = []
        self._values: list[list[V]] = []
        self._maxes: list[K] = []
        self._load = load
        self._len = 0

    def __len__(self) -> int:
        return self._len

    def __bool__(self) -> bool:
        return self._len > 0

    def __iter__(self) -> Iterator[V]:
        """The values in key order."""
        for sub in self._values:
            yield from sub

    def keys(self) -> Iterator[K]:
        """The keys in ascending order."""
        for sub in self._keys:
            yield from sub

    def __contains__(self, key: K) -> bool:
        maxes = self._maxes
        i = bisect_left(maxes, key)
        if i == len(maxes):
            return False
        sub = self._keys[i]
        j = bisect_left(sub, key)
        return j < len(sub) and sub[j] == key

    def add(self, key: K, value: V) -> None:
        """Insert ``value`` under ``key`` (which must not be present)."""
        maxes = self._maxes
        if not maxes:
            self._keys.append([key])
            self._values.append([value])
            maxes.append(key)
            self._len = 1
            return
        i = bisect_right(maxes, key)
        if i == len(maxes):
            i -= 1
            keys = self._keys[i]
            values = self._values[i]
            keys.append(key)
            values.append(value)
            maxes[i] = key
        else:
            keys = self._keys[i]
            values = self._values[i]
            j = bisect_right(keys, key)
            keys.insert(j, key)
            values.insert(j, value)
        self._len += 1
        if len(keys) > 2 * self._load:
            half = len(keys) >> 1
            self._keys.insert(i + 1, keys[half:])
            self._values.insert(i + 1, values[half:])
            del keys[half:]
            del values[half:]
            maxes[i] = keys[-1]
            maxes.insert(i + 1, self._keys[i + 1][-1])

    def remove(self, key: K) -> V:
        """Remove ``key`` and return its value; :class:`KeyError` if it is not there."""
        maxes = self._maxes
        i = bisect_left(maxes, key)
        if i == len(maxes):
            raise KeyError(key)
        keys = self._keys[i]
        j = bisect_left(keys, key)
        if j == len(keys) or keys[j] != key:
            raise KeyError(key)
        del keys[j]
        value = self._values[i].pop(j)
        self._len -= 1
        if not keys:
            del self._keys[i]
            del self._values[i]
            del maxes[i]
        else:
            maxes[i] = keys[-1]
            if len(keys) < self._load >> 2 and len(maxes) > 1:
                self._merge(i)
        return value

    def rekey(self, old: K, new: K) -> None:
        """Move the value of ``old`` to ``new`` (which must not be present).

        Within its short list when ``new`` belongs there too (a PE moved behind its equals,
        as selection does): one move inside that list, whose length stays the same, and no
        split or merge; in place when no other key lies between the two.
        """
        maxes = self._maxes
        i = bisect_left(maxes, old)
        if i < len(maxes):
            keys = self._keys[i]
            j = bisect_left(keys, old)
            if (
                j < len(keys)
                and keys[j] == old
                and (i == 0 or maxes[i - 1] < new)
                and (i + 1 == len(maxes) or new < self._keys[i + 1][0])
            ):
                k = bisect_left(keys, new)
                if k > j + 1:  # later: the keys between move one place forward
                    del keys[j]
                    keys.insert(k - 1, new)
                    values = self._values[i]
                    values.insert(k - 1, values.pop(j))
                elif k < j:
                    del keys[j]
                    keys.insert(k, new)
                    values = self._values[i]
                    values.insert(k, values.pop(j))
                else:
                    keys[j] = new
                maxes[i] = keys[-1]
                return
        self.add(new, self.remove(old))

    def _merge(self, i: int) -> None:
        """Join the short list at ``i`` with a neighbour, splitting again if too long."""
        if i == len(self._keys) - 1:
            i -= 1
        keys = self._keys[i] + self._keys[i + 1]
        values = self._values[i] + self._values[i + 1]
        del self._keys[i + 1]
        del self._values[i + 1]
        del self._maxes[i + 1]
        if len(keys) > 2 * self._load:
            half = len(keys) >> 1
            self._keys.insert(i + 1, keys[half:])
            self._values.insert(i + 1, values[half:])
            self._maxes.insert(i + 1, keys[-1])
            del keys[half:]
            del values[half:]
        self._keys[i] = keys
        self._values[i] = values
        self._maxes[i] = keys[-1]

    def head(self, count: int) -> list[V]:
        """The values of the ``count`` smallest keys, in key order (fewer if there are fewer)."""
        values = self._values
        if not values or count <= 0:
            return []
        first = values[0]
        if count <= len(first):
            return first[:count]
        result: list[V] = []
        for sub in values:
            result += sub[: count - len(result)]
            if len(result) >= count:
                break
        return result

    def clear(self) -> None:
        """Remove everything."""
        self._keys.clear()
        self._values.clear()
        self._maxes.clear()
        self._len = 0

    def check(self) -> None:
        """Assert the internal invariants (for tests)."""
        assert len(self._keys) == len(self._values) == len(self._maxes)
        total = 0
        previous: K | None = None
        for keys, values, top in zip(self._keys, self._values, self._maxes, strict=True):
            assert keys, "empty short list"
            assert len(keys) == len(values)
            assert keys[-1] == top
            for key in keys:
                if previous is not None:
                    assert previous < key, "keys out of order"
                previous = key
            total += len(keys)
        assert total == self._len
