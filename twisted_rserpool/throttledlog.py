"""Warnings that a flood cannot multiply: a few lines per window, then one with a count.

:class:`LogThrottle` decides (sans-IO); :class:`ThrottledLog` writes through a
:class:`~twisted.logger.Logger` and schedules the summary line on an injected clock. Used
for every line an unauthenticated peer can cause at will: refused connections, handshake
timeouts, TLS refusals (RFC 5355 2.1).
"""

from __future__ import annotations

import math
from typing import Any

from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from twisted_rserpool.deadline import DeadlineTimer

__all__ = ["LogThrottle", "ThrottledLog"]


def _defaultClock() -> IReactorTime:
    # Imported here, not at module level, so that importing never installs a reactor.
    from twisted.internet import reactor  # noqa: PLC0415

    clock: IReactorTime = reactor
    return clock


class LogThrottle:
    """Which of a stream of like events get a log line of their own.

    At most ``burst`` per window of ``interval`` seconds (a window opens with the first
    event after the previous one closed); the others are only counted, for one summary
    line when their window closes.
    """

    def __init__(self, interval: float = 1.0, burst: int = 1) -> None:
        if interval <= 0 or burst < 1:
            raise ValueError("the interval must be positive and the burst at least 1")
        self.interval = interval
        self.burst = burst
        self._windowStart = -math.inf
        self._written = 0
        self._suppressed = 0

    def allow(self, now: float) -> bool:
        """Whether the event at ``now`` gets its own line (if not, it is counted)."""
        if now >= self._windowStart + self.interval:
            self._windowStart = now
            self._written = 0
        if self._written < self.burst:
            self._written += 1
            return True
        self._suppressed += 1
        return False

    def next_deadline(self) -> float | None:
        """When the summary of the suppressed events is due; ``None`` if none is."""
        return self._windowStart + self.interval if self._suppressed else None

    def takeSuppressed(self) -> int:
        """How many events were suppressed since the last call; resets the count."""
        count, self._suppressed = self._suppressed, 0
        return count


class ThrottledLog:
    """Warnings through a :class:`LogThrottle`: each allowed event is logged with
    ``format``; the suppressed ones are summed up in ``summary`` (with ``count`` and
    ``interval`` fields, plus ``summaryFields``) when their window closes, on ``clock``."""

    def __init__(
        self,
        logger: Logger,
        clock: IReactorTime | None,
        summary: str,
        *,
        interval: float = 1.0,
        burst: int = 1,
        **summaryFields: Any,
    ) -> None:
        self.logger = logger
        self.clock = clock
        self.summary = summary
        self.summaryFields = summaryFields
        self.throttle = LogThrottle(interval, burst)
        self._pending = DeadlineTimer(self._writeSummary)

    def warn(self, format: str, **fields: Any) -> None:
        """Log ``format`` with ``fields`` unless the throttle says to count it instead."""
        if self.clock is None:
            self.clock = _defaultClock()
        now = self.clock.seconds()
        if self.throttle.allow(now):
            self.logger.warn(format, **fields)
            return
        if not self._pending.pending:
            self._pending.arm(self.clock, self.throttle.next_deadline())

    def _writeSummary(self, now: float) -> None:
        count = self.throttle.takeSuppressed()
        if count:
            self.logger.warn(
                self.summary, count=count, interval=self.throttle.interval, **self.summaryFields
            )
