"""A queue of deadlines with O(log n) scheduling and cancellation by lazy deletion."""

from __future__ import annotations

import heapq
from collections.abc import Iterator
from itertools import count
from typing import Generic, TypeVar

T = TypeVar("T")


class DeadlineQueue(Generic[T]):
    """Items due at a time; rescheduling an item replaces its earlier deadline.

    Cancelled and replaced deadlines stay in the heap until they surface or the heap grows
    to twice the live deadlines plus a constant, when it is rebuilt (amortised O(1)).
    """

    __slots__ = ("_due", "_heap", "_order")

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, T]] = []
        # item -> the sequence number of its live heap entry
        self._due: dict[T, int] = {}
        self._order = count()

    def __len__(self) -> int:
        return len(self._due)

    def __contains__(self, item: T) -> bool:
        return item in self._due

    def schedule(self, item: T, when: float) -> None:
        """Make ``item`` due at ``when`` (replacing any earlier schedule)."""
        order = next(self._order)
        self._due[item] = order
        heapq.heappush(self._heap, (when, order, item))
        if len(self._heap) > 2 * len(self._due) + 64:
            self._compact()

    def cancel(self, item: T) -> None:
        """Forget ``item``'s deadline, if any."""
        self._due.pop(item, None)

    def _compact(self) -> None:
        due = self._due
        self._heap = [entry for entry in self._heap if due.get(entry[2]) == entry[1]]
        heapq.heapify(self._heap)

    def _drop_stale(self) -> None:
        heap = self._heap
        due = self._due
        while heap and due.get(heap[0][2]) != heap[0][1]:
            heapq.heappop(heap)

    def next_deadline(self) -> float | None:
        """The earliest live deadline, or ``None``."""
        self._drop_stale()
        return self._heap[0][0] if self._heap else None

    def pop_due(self, now: float) -> Iterator[T]:
        """Remove and yield the items due at or before ``now``, earliest first."""
        heap = self._heap
        due = self._due
        while True:
            self._drop_stale()
            if not heap or heap[0][0] > now:
                return
            _, _, item = heapq.heappop(heap)
            del due[item]
            yield item


class TokenDeadlineQueue(Generic[T]):
    """Like :class:`DeadlineQueue`, for items that carry their own schedule token.

    The token lives in the item's attribute ``attribute`` (an int, 0 when not scheduled),
    so scheduling and cancelling touch no dictionary: a heap entry is live while its token
    equals the item's. This saves a hash table of all scheduled items.
    """

    __slots__ = ("_attribute", "_heap", "_live", "_order")

    def __init__(self, attribute: str) -> None:
        self._attribute = attribute
        self._heap: list[tuple[float, int, T]] = []
        self._live = 0
        self._order = count(1)

    def __len__(self) -> int:
        return self._live

    def __contains__(self, item: T) -> bool:
        return bool(getattr(item, self._attribute))

    def schedule(self, item: T, when: float) -> None:
        """Make ``item`` due at ``when`` (replacing any earlier schedule)."""
        order = next(self._order)
        if not getattr(item, self._attribute):
            self._live += 1
        setattr(item, self._attribute, order)
        heapq.heappush(self._heap, (when, order, item))
        if len(self._heap) > 2 * self._live + 64:
            self._compact()

    def cancel(self, item: T) -> None:
        """Forget ``item``'s deadline, if any."""
        if getattr(item, self._attribute):
            setattr(item, self._attribute, 0)
            self._live -= 1

    def _compact(self) -> None:
        attribute = self._attribute
        self._heap = [entry for entry in self._heap if getattr(entry[2], attribute) == entry[1]]
        heapq.heapify(self._heap)

    def _drop_stale(self) -> None:
        heap = self._heap
        attribute = self._attribute
        while heap and getattr(heap[0][2], attribute) != heap[0][1]:
            heapq.heappop(heap)

    def next_deadline(self) -> float | None:
        """The earliest live deadline, or ``None``."""
        self._drop_stale()
        return self._heap[0][0] if self._heap else None

    def pop_due(self, now: float) -> Iterator[T]:
        """Remove and yield the items due at or before ``now``, earliest first."""
        heap = self._heap
        while True:
            self._drop_stale()
            if not heap or heap[0][0] > now:
                return
            _, _, item = heapq.heappop(heap)
            setattr(item, self._attribute, 0)
            self._live -= 1
            yield item
