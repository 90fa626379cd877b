"""The deadline queue of the sans-IO cores and the timer adapter of their Twisted side."""

from __future__ import annotations

import random
from collections.abc import Callable
from functools import partial
from typing import Any

from hypothesis import given
from hypothesis import strategies as st
from twisted.internet.task import Clock

from twisted_rserpool.deadline import DeadlineQueue, DeadlineTimer, generation


def test_arm_replaces_cancel_forgets_and_past_deadlines_fire_at_once() -> None:
    """One call at the last armed deadline; None or cancel leaves none; the past fires now."""
    clock = Clock()
    fired: list[float] = []
    timer = DeadlineTimer(fired.append)
    timer.arm(clock, 5.0)
    timer.arm(clock, 3.0)
    clock.advance(2.9)
    assert fired == []
    clock.advance(0.1)
    assert fired == [3.0]
    assert not timer.pending
    clock.advance(5)  # the replaced deadline at 5 never fires
    assert fired == [3.0]
    timer.arm(clock, 12.0)
    timer.arm(clock, None)
    clock.advance(5)
    timer.arm(clock, 14.0)
    timer.cancel()
    clock.advance(5)
    assert fired == [3.0]
    timer.arm(clock, 1.0)  # already past: fires on the next turn, with the clock's time
    clock.advance(0)
    assert fired == [3.0, 18.0]
    assert clock.getDelayedCalls() == []


def test_a_later_deadline_moves_the_call_on_without_firing() -> None:
    """Arming later than the pending call keeps the call; it moves on when it comes."""
    clock = Clock()
    fired: list[float] = []
    timer = DeadlineTimer(fired.append)
    timer.arm(clock, 1.0)
    for step in range(2, 11):
        timer.arm(clock, float(step))  # as a heartbeat deadline moves with every read
    assert [call.getTime() for call in clock.getDelayedCalls()] == [1.0]
    clock.advance(1.0)
    assert fired == [] and timer.pending and timer.deadline == 10.0
    clock.advance(8.9)
    assert fired == []
    clock.advance(0.1)
    assert fired == [10.0]


class EarlyClock(Clock):
    """A clock whose calls come a microsecond early, as float rounding can make them."""

    def callLater(self, delay: float, callable: Any, *args: object, **kw: object) -> Any:
        return super().callLater(max(0.0, delay - 1e-6), callable, *args, **kw)


def test_now_is_clamped_to_the_deadline() -> None:
    """A call the clock runs early still sees its deadline reached, not the clock's time."""
    clock = EarlyClock()
    fired: list[float] = []
    timer = DeadlineTimer(fired.append)
    timer.arm(clock, 2.0)
    clock.advance(2.0 - 1e-6)
    assert fired == [2.0]


def record(fired: list[tuple[int, float]], n: int, now: float) -> None:
    fired.append((n, now))


def test_many_timers_share_one_delayed_call_and_one_callback() -> None:
    """A thousand timers on one clock: one DelayedCall; those due together fire in one
    callback, earliest first."""
    clock = Clock()
    fired: list[tuple[int, float]] = []
    timers = [DeadlineTimer(partial(record, fired, n)) for n in range(1000)]
    rng = random.Random(7)
    deadlines = {n: rng.uniform(1.0, 2.0) for n in range(1000)}
    for n, timer in enumerate(timers):
        timer.arm(clock, deadlines[n])
    assert len(clock.getDelayedCalls()) == 1
    clock.advance(3.0)  # one callback runs them all
    assert sorted(n for n, _ in fired) == list(range(1000))
    assert [n for n, _ in fired] == sorted(deadlines, key=deadlines.__getitem__)
    assert all(now >= deadlines[n] for n, now in fired)
    assert clock.getDelayedCalls() == []


def test_slack_runs_close_deadlines_in_one_turn() -> None:
    """With 10 ms of slack, deadlines within one 10 ms grid step fire together, late by
    less than the slack and never early."""
    clock = Clock()
    turns: list[list[int]] = []
    calls = [0]

    def fire(n: int, now: float) -> None:
        if not turns or turns[-1][0] != calls[0]:
            turns.append([calls[0]])
        turns[-1].append(n)

    deadlines = [1.001, 1.004, 1.009, 1.012, 1.0195]
    timers = [DeadlineTimer(partial(fire, n), slack=0.01) for n in range(5)]
    for timer, deadline in zip(timers, deadlines, strict=True):
        timer.arm(clock, deadline)
    times = []
    while clock.getDelayedCalls():
        call = min(clock.getDelayedCalls(), key=lambda c: c.getTime())
        times.append(call.getTime())
        calls[0] += 1
        clock.advance(call.getTime() - clock.seconds())
    assert [turn[1:] for turn in turns] == [[0, 1, 2], [3, 4]]
    assert all(0 <= times[0] - d < 0.01 + 1e-9 for d in deadlines[:3])
    assert abs(times[1] - 1.02) < 1e-9


def reactorTurn(clock: Clock) -> None:
    """What a reactor does between two polls: run the calls due now, not those they add."""
    due = [call for call in clock.calls if call.getTime() <= clock.seconds()]
    for call in due:
        clock.calls.remove(call)
        call.called = 1
        call.func(*call.args, **call.kw)


def test_a_timer_armed_for_the_past_by_a_callback_waits_for_the_next_turn() -> None:
    """A timer re-armed for now from a timer callback runs on the reactor's next turn,
    not in the same one: the reactor polls its sockets in between."""
    clock = Clock()
    order: list[str] = []
    second = DeadlineTimer(lambda now: order.append("second"))

    def first(now: float) -> None:
        order.append("first")
        second.arm(clock, now - 1.0)

    DeadlineTimer(first).arm(clock, 1.0)
    clock.rightNow = 1.0
    reactorTurn(clock)
    assert order == ["first"] and second.pending
    reactorTurn(clock)
    assert order == ["first", "second"]


def test_one_failing_callback_does_not_stop_the_others() -> None:
    """A callback that raises is logged; the timers due with it still fire."""
    clock = Clock()
    fired: list[float] = []

    def broken(now: float) -> None:
        raise RuntimeError("boom")

    DeadlineTimer(broken).arm(clock, 1.0)
    DeadlineTimer(fired.append).arm(clock, 1.0)
    clock.advance(1.0)
    assert fired == [1.0]


def test_timers_on_different_clocks_are_independent() -> None:
    """Each clock has its own call; moving a timer to another clock forgets the first."""
    a, b = Clock(), Clock()
    fired: list[float] = []
    timer = DeadlineTimer(fired.append)
    timer.arm(a, 1.0)
    timer.arm(b, 2.0)
    a.advance(5)
    assert fired == []
    b.advance(2)
    assert fired == [2.0]


def test_queue_orders_replaces_cancels_and_counts() -> None:
    """Items come out in deadline order; rescheduling replaces, cancelling forgets, and
    both storage modes (dictionary, token attribute) agree."""

    class Item:
        def __init__(self) -> None:
            self.token = 0

    plain: DeadlineQueue[Any] = DeadlineQueue()
    tokened: DeadlineQueue[Any] = DeadlineQueue(token="token")
    items = {name: Item() for name in "abc"}
    keys: list[Callable[[str], Any]] = [str, items.__getitem__]
    for queue, key in zip((plain, tokened), keys, strict=True):
        queue.schedule(key("a"), 5.0)
        queue.schedule(key("b"), 3.0)
        queue.schedule(key("c"), 4.0)
        queue.schedule(key("b"), 6.0)
        queue.cancel(key("c"))
        queue.cancel(key("c"))
        assert len(queue) == 2 and key("a") in queue and key("c") not in queue
        assert queue.next_deadline() == 5.0
        assert list(queue.pop_due(5.5)) == [key("a")]
        assert list(queue.pop_due(10.0)) == [key("b")]
        assert queue.next_deadline() is None and len(queue) == 0


@given(
    st.lists(
        st.tuples(
            st.sampled_from(["schedule", "cancel", "pop"]),
            st.integers(0, 9),
            st.floats(0, 100, allow_nan=False),
        ),
        max_size=200,
    )
)
def test_queue_agrees_with_a_dictionary_model(operations: list[tuple[str, int, float]]) -> None:
    """Any sequence of schedules, cancels and pops gives what a plain dictionary of
    deadlines gives, in deadline order; the generation moves exactly when the deadlines
    change at the front, so that an unchanged generation means an unchanged next
    deadline."""
    queue: DeadlineQueue[int] = DeadlineQueue()
    model: dict[int, float] = {}
    for operation, item, when in operations:
        before, deadlines = generation(), dict(model)
        if operation == "schedule":
            queue.schedule(item, when)
            model[item] = when
        elif operation == "cancel":
            queue.cancel(item)
            model.pop(item, None)
        else:
            popped = list(queue.pop_due(when))
            expected = sorted((d, i) for i, d in model.items() if d <= when)
            assert [model[i] for i in popped] == [d for d, _ in expected]
            assert set(popped) == {i for _, i in expected}
            for i in popped:
                del model[i]
        moved = generation() != before
        if min(model.values(), default=None) != min(deadlines.values(), default=None):
            assert moved  # the earliest deadline changed
        if moved:
            assert operation == "schedule" or model != deadlines  # never for nothing
        looked = generation()
        assert len(queue) == len(model)
        assert queue.next_deadline() == min(model.values(), default=None)
        assert generation() == looked  # looking changes nothing


def test_later_deadlines_behind_the_earliest_leave_the_generation() -> None:
    """Scheduling or cancelling behind the earliest deadline does not move the
    generation (a PE's re-registration); anything that changes the front does."""
    queue: DeadlineQueue[str] = DeadlineQueue()
    queue.schedule("head", 10.0)
    queue.schedule("other", 20.0)
    before = generation()
    queue.schedule("other", 30.0)
    queue.schedule("third", 10.0)  # a tie is not earlier
    queue.cancel("third")
    queue.cancel("missing")
    assert queue.next_deadline() == 10.0
    assert generation() == before
    for change in (
        partial(queue.schedule, "head", 15.0),  # the earliest, later
        partial(queue.schedule, "other", 5.0),  # earlier than the earliest
        partial(queue.cancel, "other"),  # the earliest, gone
        partial(queue.schedule, "head", 10.0),
    ):
        before = generation()
        change()
        assert generation() != before
    before = generation()
    assert list(queue.pop_due(10.0)) == ["head"]
    assert generation() != before


def test_arming_timers_leaves_the_generation() -> None:
    """The timers' own queue is not counted: arming, moving and firing timers changes
    no core's deadline."""
    clock = Clock()
    fired: list[float] = []
    timers = [DeadlineTimer(fired.append) for _ in range(3)]
    before = generation()
    for number, timer in enumerate(timers):
        timer.arm(clock, 1.0 + number)
    timers[0].arm(clock, 0.5)
    timers[1].cancel()
    for _ in range(10):
        clock.advance(0.5)
    assert fired == [0.5, 3.0]
    assert generation() == before
