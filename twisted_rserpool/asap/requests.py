"""T1-ENRPrequest and MAX-REQUEST-RETRANSMIT (RFC 5352 sections 3.3 and 3.7.2), sans IO.

:class:`PendingRequests` remembers the requests sent to the home ENRP server. When T1
expires the request is to be sent again (and, in parallel, a server hunt begun); after
MAX-REQUEST-RETRANSMIT retransmissions it is given up and the user told.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterator
from dataclasses import dataclass
from typing import Generic, TypeVar

from twisted_rserpool.deadline import DeadlineQueue

__all__ = ["GiveUp", "PendingRequests", "Retransmit"]

K = TypeVar("K", bound=Hashable)


@dataclass(frozen=True, slots=True)
class Retransmit(Generic[K]):
    """T1 expired for ``key``: send the request again (this is retransmission ``count``)
    and begin a server hunt in parallel."""

    key: K
    count: int


@dataclass(frozen=True, slots=True)
class GiveUp(Generic[K]):
    """``key`` went unanswered after every retransmission: report it to the user."""

    key: K


class PendingRequests(Generic[K]):
    """Requests awaiting an answer, each with its T1 timer and retransmission count."""

    def __init__(self, timeout: float, max_retransmit: int) -> None:
        self.timeout = timeout
        self.max_retransmit = max_retransmit
        self._timers: DeadlineQueue[K] = DeadlineQueue()
        self._count: dict[K, int] = {}

    def __contains__(self, key: K) -> bool:
        return key in self._count

    def __len__(self) -> int:
        return len(self._count)

    def __iter__(self) -> Iterator[K]:
        return iter(list(self._count))

    def sent(self, key: K, now: float) -> None:
        """The request ``key`` was sent for the first time: start T1."""
        self._count[key] = 0
        self._timers.schedule(key, now + self.timeout)

    def resent(self, key: K, now: float) -> None:
        """The request was sent again (e.g. to a new home server): restart T1 only."""
        if key in self._count:
            self._timers.schedule(key, now + self.timeout)

    def answered(self, key: K) -> bool:
        """The answer came: stop T1. Returns whether the request was pending."""
        if self._count.pop(key, None) is None:
            return False
        self._timers.cancel(key)
        return True

    def next_deadline(self) -> float | None:
        """When :meth:`handle_timer` has work."""
        return self._timers.next_deadline()

    def handle_timer(self, now: float) -> list[Retransmit[K] | GiveUp[K]]:
        """What the T1 timers that expired by ``now`` ask for."""
        actions: list[Retransmit[K] | GiveUp[K]] = []
        for key in list(self._timers.pop_due(now)):
            count = self._count.get(key)
            if count is None:
                continue
            if count >= self.max_retransmit:
                del self._count[key]
                actions.append(GiveUp(key))
                continue
            self._count[key] = count + 1
            self._timers.schedule(key, now + self.timeout)
            actions.append(Retransmit(key, count + 1))
        return actions
