"""When load readings become registrations: the sans-IO tracker and the service around it,
on a Clock with a scripted load source and a recording pool element."""

from __future__ import annotations

from typing import Any, cast

import pytest
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.task import Clock
from twisted.logger import ILogObserver, LogLevel, globalLogPublisher
from zope.interface import implementer

from twisted_rserpool.poolmember.description import FULL_LOAD, scaledLoad
from twisted_rserpool.poolmember.registration import MemberRegistration
from twisted_rserpool.poolmember.sources import ILoadSource, LoadError
from twisted_rserpool.poolmember.tracker import (
    LoadTracker,
    MemberState,
    Recovered,
    Register,
    ReportFailure,
    UpdateLoad,
    Withdraw,
)
from twisted_rserpool.wire.parameters import LeastUsedPolicy, RoundRobinPolicy


def test_first_reading_registers_then_threshold() -> None:
    """Nothing before the first good reading; then re-registrations only for moves of at
    least the threshold, and only while the registration stands."""
    tracker = LoadTracker(capacity=100, threshold=0.05)
    assert tracker.failure("down", 0.0) == [ReportFailure("down", 1, True)]
    assert tracker.state is MemberState.WAITING
    assert tracker.reading(10, 1.0, ready=False) == [Recovered(1), Register(scaledLoad(0.1))]
    assert tracker.reading(14, 2.0, ready=True) == []  # moved 4 % < 5 %
    assert tracker.reading(16, 3.0, ready=False) == []  # registration under way: later
    assert tracker.reading(16, 4.0, ready=True) == [UpdateLoad(scaledLoad(0.16))]
    assert tracker.reading(500, 5.0, ready=True) == [UpdateLoad(FULL_LOAD)]  # clamped
    assert tracker.reading(500, 6.0, ready=True) == []


def test_any_change_with_threshold_zero() -> None:
    """Threshold 0: every change of the scaled load re-registers, no unchanged one does."""
    tracker = LoadTracker(capacity=1000)
    assert tracker.reading(0, 0.0, ready=True) == [Register(0)]
    assert tracker.reading(1, 1.0, ready=True) == [UpdateLoad(scaledLoad(0.001))]
    assert tracker.reading(1, 2.0, ready=True) == []


def test_failures_throttled_then_withdrawn_then_back() -> None:
    """Failures keep the load; the first is reported, then one per warn interval; at the
    limit the member is withdrawn; a good reading registers it again and says so."""
    tracker = LoadTracker(maxFailures=4, warnInterval=10.0)
    tracker.reading(0.5, 0.0, ready=True)
    assert tracker.failure("a", 1.0) == [ReportFailure("a", 1, True)]
    assert tracker.failure("b", 2.0) == []
    assert tracker.failure("c", 11.5) == [ReportFailure("c", 3, False)]
    assert tracker.registeredLoad == scaledLoad(0.5) and tracker.state is MemberState.REGISTERED
    assert tracker.failure("d", 12.0) == [Withdraw(4, "d")]
    assert tracker.failure("e", 13.0) == []  # withdrawn: no second Withdraw
    assert tracker.reading(0.25, 14.0, ready=False) == [Recovered(5), Register(scaledLoad(0.25))]
    assert tracker.failure("f", 15.0) == [ReportFailure("f", 1, True)]  # a new run


def test_health_check_only_and_bad_settings() -> None:
    """A policy without a load registers with 0 and never updates; bad settings raise."""
    tracker = LoadTracker(carriesLoad=False, maxFailures=1)
    assert tracker.reading(7, 0.0, ready=True) == [Register(0)]
    assert tracker.reading(9, 1.0, ready=True) == []
    assert tracker.failure("x", 2.0) == [ReportFailure("x", 1, True), Withdraw(1, "x")]
    for bad in ({"capacity": 0}, {"threshold": 2.0}, {"maxFailures": -1}):
        with pytest.raises(ValueError):
            LoadTracker(**bad)


@implementer(ILoadSource)
class ScriptedLoad:
    """Answers each read with the next scripted value, failure or pending Deferred."""

    def __init__(self) -> None:
        self.next: Any = 0.0
        self.reads = 0
        self.cancelled = 0

    def read(self) -> Deferred[float]:
        self.reads += 1
        value = self.next
        if isinstance(value, Exception):
            return fail(value)
        if value == "hang":
            d: Deferred[float] = Deferred(lambda _: self._cancelled())
            return d
        return succeed(float(value))

    def _cancelled(self) -> None:
        self.cancelled += 1


class RecordingElement:
    """What MemberRegistration uses of a PoolElement."""

    poolHandle = b"gw"

    def __init__(self, policy: Any) -> None:
        self.policy = policy
        self.running = False
        self.registered = False
        self.starts = 0
        self.loads: list[int] = []
        self.stopping: Deferred[None] | None = None

    def startService(self) -> None:
        self.running = True
        self.starts += 1

    def stopService(self) -> Deferred[None]:
        self.running = False
        self.registered = False
        self.stopping = Deferred()
        return self.stopping

    def updateLoad(self, load: int) -> Deferred[None]:
        self.loads.append(load)
        return succeed(None)


def service(
    policy: Any = None, **tracker: Any
) -> tuple[MemberRegistration, RecordingElement, ScriptedLoad, Clock]:
    element = RecordingElement(policy if policy is not None else LeastUsedPolicy(0))
    source, clock = ScriptedLoad(), Clock()
    registration = MemberRegistration(
        element,  # type: ignore[arg-type]
        source,
        clock,
        1.0,
        tracker=LoadTracker(**tracker) if tracker else None,
        timeout=0.5,
    )
    return registration, element, source, clock


def test_service_registers_updates_and_stops() -> None:
    """The first reading (at start) registers with its load; a change re-registers once
    the registration stands; stopping cancels the timer and deregisters."""
    registration, element, source, clock = service()
    source.next = 0.25
    registration.startService()
    assert element.running and element.policy == LeastUsedPolicy(scaledLoad(0.25))
    source.next = 0.5
    clock.advance(1)
    assert element.loads == []  # not yet registered
    element.registered = True
    clock.advance(1)
    assert element.loads == [scaledLoad(0.5)] and registration.registeredLoad == scaledLoad(0.5)
    clock.advance(1)
    assert element.loads == [scaledLoad(0.5)]
    registration.stopService()
    assert not element.running and clock.getDelayedCalls() == []


def test_service_times_out_and_never_overlaps() -> None:
    """A reading that hangs is cancelled after the timeout and counts as a failure; no
    second reading starts while one runs."""
    registration, element, source, clock = service(maxFailures=2)
    source.next = "hang"
    registration.startService()
    clock.advance(0.3)
    assert source.reads == 1
    clock.advance(0.3)  # the timeout cancelled it
    assert source.cancelled == 1 and registration.failedReadings == 1
    assert not element.running  # never read: never registered
    registration.stopService()


def test_service_withdraws_and_comes_back() -> None:
    """After the failure limit the element is deregistered (one error line with the
    count and the reason); the next good reading, once deregistration finished,
    registers it again with its load."""
    events: list[dict[str, Any]] = []
    observer = cast(ILogObserver, events.append)
    globalLogPublisher.addObserver(observer)
    try:
        registration, element, source, clock = service(maxFailures=2)
        source.next = 0.1
        registration.startService()
        element.registered = True
        source.next = LoadError("charon: connection refused")
        clock.advance(1)
        clock.advance(1)
        assert not element.running and element.stopping is not None
        source.next = 0.75
        clock.advance(1)
        assert not element.running  # deregistration still under way
        element.stopping.callback(None)
        assert element.running and element.starts == 2
        assert element.policy == LeastUsedPolicy(scaledLoad(0.75))
        registration.stopService()
    finally:
        globalLogPublisher.removeObserver(observer)
    errors = [e for e in events if e.get("log_level") is LogLevel.error]
    assert len(errors) == 1 and errors[0]["failures"] == 2
    assert "connection refused" in errors[0]["reason"]
    warnings = [e for e in events if e.get("log_level") is LogLevel.warn]
    assert len(warnings) == 1  # the second failure fell in the throttle window
    assert any(e.get("log_level") is LogLevel.info and e.get("failures") == 2 for e in events)


def test_round_robin_member_reads_for_health_only() -> None:
    """With a policy without a load the readings never re-register."""
    registration, element, source, clock = service(RoundRobinPolicy())
    registration.startService()
    element.registered = True
    source.next = 0.9
    clock.advance(5)
    assert element.running and element.loads == [] and element.policy == RoundRobinPolicy()
    registration.stopService()
