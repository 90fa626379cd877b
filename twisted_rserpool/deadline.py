"""Deadlines: one queue for the sans-IO cores, one timer adapter for their Twisted side.

Every sans-IO core says when it next has work with ``next_deadline()`` (``None``: never)
and does it in ``handle_timer(now)``; early calls do nothing. A core that keeps many
deadlines (PE lifetimes, keep-alives, retransmissions, SAs) keeps them in one
:class:`DeadlineQueue`, a heap drained in one pass.

Its Twisted adapter holds a :class:`DeadlineTimer`, arms it with the core's
``next_deadline()`` after every input and runs ``handle_timer`` from its callback. A
core whose deadlines all live in queues (or change only in ``handle_timer``) need not be
asked again while :func:`generation` is unchanged: every change to a queue's deadlines
moves it on. All
timers on one clock share a single ``DelayedCall``: a heap of timers drained in one
callback, so that thousands of connections' heartbeats cost no reactor call each, and
timers that fall due together (within their ``slack``) run in one reactor turn.

Only :mod:`twisted.internet.interfaces` is needed, for types: importing this module never
installs a reactor.
"""

from __future__ import annotations

import heapq
import math
import weakref
from collections.abc import Callable, Iterator
from itertools import count
from typing import TYPE_CHECKING, Generic, TypeVar

from twisted.logger import Logger

from twisted_rserpool.describe import objectText

if TYPE_CHECKING:
    from twisted.internet.interfaces import IDelayedCall, IReactorTime

__all__ = ["COALESCE", "DeadlineQueue", "DeadlineTimer", "generation"]

#: The slack of timers that need not be exact (heartbeats, keep-alives, expiry): about
#: 8 ms, so that those due within a few milliseconds run in one turn. A power of two, so
#: that rounding up to it keeps deadlines in whole seconds exact.
COALESCE = 1 / 128

T = TypeVar("T")

log = Logger()

#: Moved on whenever a counted queue's earliest deadline may have changed (generation()).
_generation = 0


def generation() -> int:
    """A number that changes whenever the earliest deadline of a :class:`DeadlineQueue`
    may have changed (any queue in the process, but the timers' own): a deadline earlier
    than the earliest, the earliest rescheduled or cancelled, a deadline removed as due.

    A deadline computed only from queues is still current while this number is the same:
    an adapter remembers it with the deadline and skips asking its core again. A later
    deadline for any other item (a PE's next registration life) and looking at
    deadlines (``next_deadline``) do not change it.
    """
    return _generation


class DeadlineQueue(Generic[T]):
    """Items due at a time; rescheduling an item replaces its earlier deadline.

    O(log n) scheduling, cancellation by lazy deletion: cancelled and replaced deadlines
    stay in the heap until they surface, or until the heap grows to twice the live
    deadlines plus a constant and is rebuilt (amortised O(1)).

    By default the queue remembers each item's schedule in a dictionary (items must be
    hashable). With ``token``, the name of an int attribute of the items (0 when not
    scheduled), it keeps it there instead: no dictionary entry per item, for queues of
    many long-lived objects.

    A change of its earliest deadline moves :func:`generation` on, unless ``counted`` is
    false (the timers' own queue: arming a timer changes no core's deadline).
    """

    __slots__ = ("_counted", "_due", "_heap", "_live", "_order", "_token")

    def __init__(self, token: str | None = None, *, counted: bool = True) -> None:
        self._heap: list[tuple[float, int, T]] = []
        self._token = token
        self._counted = counted
        # Without a token: item -> the sequence number of its live heap entry.
        self._due: dict[T, int] = {}
        self._live = 0
        self._order = count(1)

    def __len__(self) -> int:
        return self._live

    def __contains__(self, item: T) -> bool:
        return self._entry(item) != 0

    def _entry(self, item: T) -> int:
        """The sequence number of ``item``'s live heap entry; 0 when not scheduled."""
        if self._token is None:
            return self._due.get(item, 0)
        entry: int = getattr(item, self._token)
        return entry

    def _mark(self, item: T, entry: int) -> None:
        if self._token is not None:
            setattr(item, self._token, entry)
        elif entry:
            self._due[item] = entry
        else:
            del self._due[item]

    def _changed(self) -> None:
        if self._counted:
            global _generation  # noqa: PLW0603 (one counter for every core's queues)
            _generation += 1

    def schedule(self, item: T, when: float) -> None:
        """Make ``item`` due at ``when`` (replacing any earlier schedule)."""
        self._drop_stale()  # the head is live: is it the earliest deadline, or ours?
        heap = self._heap
        previous = self._entry(item)
        if not heap or when < heap[0][0] or heap[0][1] == previous:
            self._changed()
        if not previous:
            self._live += 1
        entry = next(self._order)
        self._mark(item, entry)
        heapq.heappush(self._heap, (when, entry, item))
        if len(self._heap) > 2 * self._live + 64:
            self._compact()

    def cancel(self, item: T) -> None:
        """Forget ``item``'s deadline, if any."""
        previous = self._entry(item)
        if previous:
            self._drop_stale()
            if self._heap[0][1] == previous:
                self._changed()  # it was the earliest
            self._mark(item, 0)
            self._live -= 1

    def _compact(self) -> None:
        entry = self._entry
        # In place: a pop_due under way (its items may schedule) keeps the same list.
        self._heap[:] = [e for e in self._heap if entry(e[2]) == e[1]]
        heapq.heapify(self._heap)

    def _drop_stale(self) -> None:
        heap = self._heap
        entry = self._entry
        while heap and entry(heap[0][2]) != heap[0][1]:
            heapq.heappop(heap)

    def next_deadline(self) -> float | None:
        """The earliest live deadline, or ``None``."""
        self._drop_stale()
        return self._heap[0][0] if self._heap else None

    def pop_due(self, now: float) -> Iterator[T]:
        """Remove and yield the items due at or before ``now``, earliest first; items
        scheduled meanwhile (by the caller, between two items) are yielded too when due."""
        heap = self._heap
        while True:
            self._drop_stale()
            if not heap or heap[0][0] > now:
                return
            _, _, item = heapq.heappop(heap)
            self._changed()
            self._mark(item, 0)
            self._live -= 1
            yield item


class DeadlineTimer:
    """Calls ``fire(now)`` once at the deadline last given to :meth:`arm` (none if None).

    ``now`` is the clock's time, but never earlier than the deadline: a call the reactor
    runs a rounding error early must not look early to the core, or it would ask for the
    same deadline forever. A deadline already past fires on the reactor's next turn,
    after it has polled its sockets (so a core that asks for "now" from its own timer
    reads pending input first).

    ``slack`` (seconds) lets the call come that much late, so that timers falling due
    within a few milliseconds of each other run in one reactor turn: the deadline is
    rounded up to a multiple of ``slack``. Zero (the default) fires at the deadline.

    Arming with a later deadline than the one pending costs nothing: the call stays
    where it is and, when it comes, moves on to the new deadline without firing. So an
    adapter may arm after every input, as the core's deadline moves back with each one.
    """

    __slots__ = ("_deadline", "_entry", "_fire", "_group", "_queued", "slack")

    def __init__(self, fire: Callable[[float], None], slack: float = 0.0) -> None:
        if slack < 0:
            raise ValueError("slack must not be negative")
        self._fire = fire
        self.slack = slack
        self._group: _TimerGroup | None = None
        #: The deadline asked for (None: none), and when the queue will look at us.
        self._deadline: float | None = None
        self._queued = 0.0
        #: Our entry in the shared queue (DeadlineQueue token); 0 when not queued.
        self._entry = 0

    @property
    def pending(self) -> bool:
        """Whether a call is scheduled."""
        return self._deadline is not None

    @property
    def deadline(self) -> float | None:
        """The deadline the call is scheduled for, or ``None``."""
        return self._deadline

    def arm(self, clock: IReactorTime, deadline: float | None) -> None:
        """Schedule the call for ``deadline`` (replacing any earlier one), or none."""
        if deadline is None:
            self.cancel()
            return
        group = self._group
        if group is None or group.clock is not clock:
            self.cancel()
            group = self._group = _group_of(clock)
        elif self._deadline == deadline:
            return
        self._deadline = deadline
        due = self._due(deadline)
        if self._entry and self._queued <= due:
            return  # the queue looks at us earlier and then moves us on
        self._queued = due
        group.schedule(self, due)

    def cancel(self) -> None:
        """Forget the scheduled call, if any."""
        self._deadline = None
        if self._entry and self._group is not None:
            self._group.cancel(self)

    def _due(self, deadline: float) -> float:
        slack = self.slack
        if not slack:
            return deadline
        # Rounded up to the slack's grid: timers due close together share one turn.
        return max(deadline, math.ceil(deadline / slack) * slack)

    def _run(self, now: float, group: _TimerGroup) -> None:
        deadline = self._deadline
        if deadline is None or self._entry:
            return  # cancelled, or armed again since it was taken off the queue
        due = self._due(deadline)
        if due > now:
            # Armed for later while queued for now: go on to the new deadline.
            self._queued = due
            group.schedule(self, due)
            return
        self._deadline = None
        self._fire(max(now, deadline))


class _TimerGroup:
    """The one ``DelayedCall`` of a clock and the queue of the timers it serves."""

    __slots__ = ("__weakref__", "_call", "_call_time", "_running", "clock", "queue")

    def __init__(self, clock: IReactorTime) -> None:
        self.clock = clock
        self.queue: DeadlineQueue[DeadlineTimer] = DeadlineQueue(token="_entry", counted=False)
        self._call: IDelayedCall | None = None
        self._call_time = 0.0
        self._running = False

    def schedule(self, timer: DeadlineTimer, due: float) -> None:
        self.queue.schedule(timer, due)
        if self._running:
            return  # the call is set for the earliest timer once the callbacks are done
        call = self._call
        if call is not None:
            if self._call_time <= due:
                return
            call.cancel()
        self._arm(due)

    def cancel(self, timer: DeadlineTimer) -> None:
        queue = self.queue
        queue.cancel(timer)
        if not queue and self._call is not None:
            # Nothing left to wait for; with timers left, the call stays (when it comes
            # early it moves on to the earliest of them).
            call, self._call = self._call, None
            call.cancel()

    def _arm(self, due: float) -> None:
        self._call_time = due
        self._call = self.clock.callLater(max(0.0, due - self.clock.seconds()), self._run)

    def _run(self) -> None:
        self._call = None
        # Never earlier than the time the call was set for (rounding), see DeadlineTimer.
        now = max(self.clock.seconds(), self._call_time)
        # Taken off the queue first: a timer armed again by a callback, even for a time
        # already past, waits for the next call (after the reactor polled its sockets).
        self._running = True
        try:
            for timer in list(self.queue.pop_due(now)):
                try:
                    timer._run(now, self)
                except Exception:
                    log.failure("Timer callback {fire} failed", fire=objectText(timer._fire))
        finally:
            self._running = False
            following = self.queue.next_deadline()
            if following is not None:
                self._arm(following)


_groups: weakref.WeakKeyDictionary[IReactorTime, _TimerGroup] = weakref.WeakKeyDictionary()
# Clocks that cannot be weakly referenced (none of Twisted's).
_strong_groups: dict[int, _TimerGroup] = {}


def _group_of(clock: IReactorTime) -> _TimerGroup:
    """The timer group of ``clock`` (made on first use)."""
    try:
        group = _groups.get(clock)
    except TypeError:
        group = _strong_groups.get(id(clock))
        if group is None:
            group = _strong_groups[id(clock)] = _TimerGroup(clock)
        return group
    if group is None:
        group = _groups[clock] = _TimerGroup(clock)
    return group
