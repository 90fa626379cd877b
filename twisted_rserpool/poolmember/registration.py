"""A pool element kept registered with the load its member reports.

:class:`MemberRegistration` reads a load source every ``interval`` seconds and lets a
:class:`~twisted_rserpool.poolmember.tracker.LoadTracker` decide: the first good reading
registers the pool element, a load that moved beyond the threshold re-registers it
(``PoolElement.updateLoad``), failed readings keep the last load and are logged
(throttled), and after the tracker's failure limit the pool element is deregistered until
the load can be read again. ``twistd poolmember`` runs one for a server written in any
language; ``twistd vpngw --pool`` runs one for itself.
"""

from __future__ import annotations

from typing import Any

from twisted.application.service import Service
from twisted.internet.defer import CancelledError, Deferred, succeed
from twisted.internet.defer import TimeoutError as DeferredTimeoutError
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure

from twisted_rserpool.asap.element import PoolElement
from twisted_rserpool.poolmember.description import FULL_LOAD, carriesLoad, withLoad
from twisted_rserpool.poolmember.sources import ILoadSource, LoadError
from twisted_rserpool.poolmember.tracker import (
    Action,
    LoadTracker,
    Recovered,
    Register,
    ReportFailure,
    UpdateLoad,
    Withdraw,
)
from twisted_rserpool.wire.parameters import SelectionPolicy

__all__ = ["MemberRegistration"]


def _percent(load: int | None) -> str:
    return "none" if load is None else f"{100 * load / FULL_LOAD:.1f} %"


class MemberRegistration(Service):
    """Registers ``element`` with the load ``source`` reads (see the module docstring).

    ``policy`` is the policy the loads go into (default: the element's); ``tracker``
    holds the capacity, threshold and failure limit (default: any change re-registers,
    failures never deregister); a reading that takes more than ``timeout`` seconds
    (default: ``interval``) fails. A reading still running when the next is due delays
    it: readings never overlap.
    """

    log = Logger()

    def __init__(
        self,
        element: PoolElement,
        source: ILoadSource,
        clock: IReactorTime,
        interval: float,
        *,
        policy: SelectionPolicy | None = None,
        tracker: LoadTracker | None = None,
        timeout: float | None = None,
    ) -> None:
        if interval <= 0:
            raise ValueError("the load interval must be positive")
        self.element = element
        self.source = source
        self.clock = clock
        self.interval = interval
        self.policy = policy if policy is not None else element.policy
        self.tracker = (
            tracker if tracker is not None else LoadTracker(carriesLoad=carriesLoad(self.policy))
        )
        self.timeout = timeout if timeout is not None else interval
        self.readings = 0
        self.failedReadings = 0
        self._loop: LoopingCall | None = None
        self._reading: Deferred[None] | None = None
        self._stopping: Deferred[None] | None = None

    def __repr__(self) -> str:
        return f"<{type(self).__name__} pool={self.poolName} source={self.source!r}>"

    @property
    def poolName(self) -> str:
        """The pool handle as text (for logs)."""
        return self.element.poolHandle.decode("utf-8", "backslashreplace")

    @property
    def registeredLoad(self) -> int | None:
        """The load last registered (None before the first good reading)."""
        return self.tracker.registeredLoad

    def startService(self) -> None:
        """Read the load now and every ``interval`` seconds."""
        super().startService()  # type: ignore[no-untyped-call]
        self._loop = LoopingCall(self.check)
        self._loop.clock = self.clock
        self._loop.start(self.interval, now=True)

    def check(self) -> None:
        """Read the load once (unless a reading is still running)."""
        if self._reading is not None:
            return
        reading = self.source.read()
        reading.addTimeout(self.timeout, self.clock)
        d: Deferred[None] = reading.addCallbacks(self._readingDone, self._readingFailed)
        self._reading = d
        d.addBoth(self._readingOver)

    def _readingOver(self, result: object) -> None:
        self._reading = None
        if isinstance(result, Failure):
            self.log.failure("load reading of {member!r} raised", result, member=self)

    def _readingDone(self, value: float) -> None:
        self.readings += 1
        ready = self.element.registered
        self._perform(self.tracker.reading(value, self.clock.seconds(), ready=ready))

    def _readingFailed(self, failure: Failure) -> None:
        if failure.check(CancelledError) and not self.running:  # type: ignore[no-untyped-call]
            return  # stopped while reading
        self.failedReadings += 1
        if failure.check(DeferredTimeoutError):  # type: ignore[no-untyped-call]
            reason = f"no answer within {self.timeout:g} s"
        elif failure.check(LoadError):  # type: ignore[no-untyped-call]
            reason = str(failure.value)
        else:
            reason = f"{type(failure.value).__name__}: {failure.getErrorMessage()}"
        self._perform(self.tracker.failure(reason, self.clock.seconds()))

    def _perform(self, actions: list[Action]) -> None:
        for action in actions:
            if isinstance(action, Register):
                self.element.policy = withLoad(self.policy, action.load)
                self._register()
            elif isinstance(action, UpdateLoad):
                self.log.debug(
                    "pool {pool}: load {load}, re-registering",
                    pool=self.poolName,
                    load=_percent(action.load),
                )
                self.element.updateLoad(action.load).addErrback(self._updateFailed)
            elif isinstance(action, ReportFailure):
                self.log.warn(
                    "pool {pool}: cannot read the load ({failures} failed readings in a row, "
                    "the registered load {load} stays): {reason}",
                    pool=self.poolName,
                    failures=action.failures,
                    load=_percent(self.tracker.registeredLoad),
                    reason=action.reason,
                )
            elif isinstance(action, Recovered):
                self.log.info(
                    "pool {pool}: the load is readable again after {failures} failed readings",
                    pool=self.poolName,
                    failures=action.failures,
                )
            elif isinstance(action, Withdraw):
                self.log.error(
                    "pool {pool}: deregistering after {failures} failed load readings in a row "
                    "(last: {reason}); registering again once the load can be read",
                    pool=self.poolName,
                    failures=action.failures,
                    reason=action.reason,
                )
                self._deregister()

    def _register(self) -> None:
        if self._stopping is not None:
            self._stopping.addCallback(lambda _: self._register())
            return
        if not self.element.running and self.running:
            self.element.startService()

    def _deregister(self) -> None:
        if self.element.running and self._stopping is None:
            stopping = self.element.stopService()
            self._stopping = stopping

            def stopped(result: object) -> object:
                self._stopping = None
                return result

            stopping.addBoth(stopped)

    def _updateFailed(self, failure: Failure) -> None:
        self.log.info(
            "pool {pool}: the load update failed: {error}",
            pool=self.poolName,
            error=failure.getErrorMessage(),
        )

    def stopService(self) -> Deferred[Any]:
        """Stop reading and deregister."""
        super().stopService()  # type: ignore[no-untyped-call]
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        self._loop = None
        if self._reading is not None:
            self._reading.cancel()
        if self.element.running:
            stopped: Deferred[Any] = self.element.stopService()
            return stopped
        if self._stopping is not None:
            return self._stopping
        return succeed(None)
