"""Throttled warnings: a flood of refusals costs a few log lines, then one with a count."""

from __future__ import annotations

from typing import Any
from unittest import TestCase

from twisted.internet.task import Clock
from twisted.logger import ILogObserver, Logger, LogLevel, formatEvent
from zope.interface import implementer

from twisted_rserpool.security import _openssl
from twisted_rserpool.security.tls import pskServerCreator
from twisted_rserpool.throttledlog import LogThrottle, ThrottledLog


@implementer(ILogObserver)
class Collector:
    """A log observer that keeps the formatted warnings."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def __call__(self, event: dict[str, Any]) -> None:
        if event.get("log_level") is LogLevel.warn:
            self.lines.append(formatEvent(event))


class LogThrottleTests(TestCase):
    def test_burst_then_counted(self) -> None:
        """Within one window only ``burst`` events get a line; the rest are counted."""
        throttle = LogThrottle(interval=1.0, burst=3)
        allowed = [throttle.allow(0.1 * i) for i in range(10)]
        self.assertEqual(allowed, [True] * 3 + [False] * 7)
        self.assertEqual(throttle.next_deadline(), 1.0)
        self.assertEqual(throttle.takeSuppressed(), 7)
        self.assertIsNone(throttle.next_deadline())

    def test_new_window_allows_again(self) -> None:
        """After the window closes, events get their own lines again."""
        throttle = LogThrottle(interval=1.0, burst=1)
        self.assertTrue(throttle.allow(0.0))
        self.assertFalse(throttle.allow(0.5))
        self.assertTrue(throttle.allow(1.0))

    def test_bad_parameters(self) -> None:
        """A window must have a length and admit at least one line."""
        self.assertRaises(ValueError, LogThrottle, 0.0, 1)
        self.assertRaises(ValueError, LogThrottle, 1.0, 0)


class ThrottledLogTests(TestCase):
    def test_summary_line_on_the_clock(self) -> None:
        """Suppressed warnings are summed up in one line when the window closes."""
        clock = Clock()
        collector = Collector()
        log = ThrottledLog(
            Logger(observer=collector), clock, "{count} more in {interval} s", burst=2
        )
        for number in range(50):
            log.warn("refused {number}", number=number)
        self.assertEqual(collector.lines, ["refused 0", "refused 1"])
        clock.advance(1.0)
        self.assertEqual(collector.lines[-1], "48 more in 1.0 s")
        self.assertFalse(clock.getDelayedCalls())


class TlsRefusalLogTests(TestCase):
    def test_unknown_identities_flood_is_throttled(self) -> None:
        """A stranger trying 200 unknown PSK identities costs the log 20 lines and a count."""
        creator = pskServerCreator({"pe": bytes(range(32))})
        clock = Clock()
        collector = Collector()
        creator.refusalLog = ThrottledLog(
            Logger(observer=collector),
            clock,
            "{count} more refused handshakes in {interval} s",
            burst=20,
        )
        connection = creator.serverConnectionForTLS(None)  # type: ignore[arg-type]
        pointer = _openssl.pointerOf(connection)
        for number in range(200):
            self.assertIsNone(creator._lookup(pointer, f"stranger-{number}".encode()))
        self.assertEqual(len(collector.lines), 20)
        self.assertIn("refused unknown identity 'stranger-0'", collector.lines[0])
        clock.advance(1.0)
        self.assertEqual(collector.lines[-1], "180 more refused handshakes in 1.0 s")
        # The known identity is still found: throttling the log changes no decision.
        self.assertEqual(creator._lookup(pointer, b"pe"), bytes(range(32)))
