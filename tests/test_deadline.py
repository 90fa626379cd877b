"""The delayed call the Twisted adapters keep at their core's next deadline."""

from __future__ import annotations

from twisted.internet.task import Clock

from twisted_rserpool.deadline import DeadlineTimer


def test_arm_replaces_cancel_forgets_and_past_deadlines_fire_at_once() -> None:
    """One call at the last armed deadline; None or cancel leaves none; the past fires now."""
    clock = Clock()
    fired: list[float] = []
    timer = DeadlineTimer(lambda: fired.append(clock.seconds()))
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
    timer.arm(clock, 1.0)  # already past: fires on the next turn
    clock.advance(0)
    assert fired == [3.0, 18.0]
    assert clock.getDelayedCalls() == []
