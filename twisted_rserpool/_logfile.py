"""The log file of the ``twistd`` commands: twistd's classic lines, written in batches.

``twistd`` logs through :func:`twisted.logger.textFileLogObserver`, which formats each
event with :class:`string.Formatter` and a fresh time zone and ``strftime`` per line, then
writes and flushes it (a system call per line). At a registration per PE every few
seconds that was about 40 % of an ENRP server's work per registration.

:class:`BatchedFileLogObserver` writes the same text (:func:`classicLogText` is
:func:`twisted.logger.formatEventAsClassicLogText` with the timestamp kept for the
second and each format string checked once) and, while the reactor runs, gathers the
lines of one reactor turn into one write at the start of the next turn, before the
reactor polls its sockets again (and sends what TCP connections wrote meanwhile): while
the reactor waits, nothing is left unwritten. A
warning or worse, an event with a failure, :data:`MAX_BUFFERED` characters waiting, a
rotation and the reactor's shutdown write everything at once, and lines logged while the
reactor does not run (start-up, after it stopped) are written as they come. A process
killed outright (``SIGKILL``, a crash of the interpreter) loses at most the info and
debug lines of the reactor turn it was in.

:func:`twistdObserver` builds it from ``twistd``'s own options (``--logfile``, ``-n``,
``--syslog``, ``--prefix``, ``--logger``) as ``twistd`` would build its observer, with
the same log rotation (by size, and on ``SIGUSR1``).
"""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Callable, Mapping
from string import Formatter
from typing import TYPE_CHECKING, Any, Protocol, cast

from twisted.logger import (
    FilteringLogObserver,
    ILogObserver,
    LegacyLogObserverWrapper,
    LogEvent,
    LogLevel,
    LogLevelFilterPredicate,
    formatEventAsClassicLogText,
    formatTime,
)
from twisted.python.compat import ioType
from zope.interface import implementer

if TYPE_CHECKING:
    from twisted.internet.interfaces import IDelayedCall, IReactorCore, IReactorTime

__all__ = [
    "FLUSH_DELAY",
    "MAX_BUFFERED",
    "BatchedFileLogObserver",
    "LogOutput",
    "classicLogText",
    "levelNamed",
    "twistdObserver",
]

#: Seconds an info or debug line may wait to be written: 0, the reactor's next turn.
FLUSH_DELAY = 0.0
#: Characters that may wait; more are written at once.
MAX_BUFFERED = 64 * 1024

#: Levels written at once, with everything before them.
_LOUD = frozenset((LogLevel.warn, LogLevel.error, LogLevel.critical))

#: Formats checked so far: whether ``str.format_map`` on the event gives what Twisted's
#: formatter gives (plain field names only). Bounded: formats may be made on the fly.
_PLAIN_FORMATS: dict[str, bool] = {}
_MAX_FORMATS = 4096


def _plain(format: str) -> bool:
    """Whether every field of ``format`` is a plain name (no call, index or attribute,
    no nested field in its spec): then ``format.format_map(event)`` is exact."""
    try:
        for _, name, spec, _ in Formatter().parse(format):
            if name is None:
                continue
            if not name.isidentifier() or (spec and "{" in spec):
                return False
    except ValueError:
        return False  # malformed: Twisted's formatter writes its "Unable to format" text
    return True


class _SecondStamps:
    """:func:`twisted.logger.formatTime` of a timestamp, computed once per second.

    Twisted's format (RFC 3339 to the second, with the local UTC offset) only changes
    from one second to the next; time zone changes also fall on whole seconds.
    """

    __slots__ = ("_last",)

    def __init__(self) -> None:
        #: The second and its text, in one tuple: threads read them together.
        self._last: tuple[int, str] = (-1, "")

    def __call__(self, when: float | None) -> str:
        if when is None or when < 0:
            return formatTime(when)
        second = int(when)
        # datetime rounds to the microsecond: near the next second, ask it.
        if when - second >= 0.999999:
            return formatTime(when)
        last = self._last
        if last[0] != second:
            last = self._last = (second, formatTime(second))
        return last[1]


_stamp = _SecondStamps()


def classicLogText(event: LogEvent) -> str | None:
    """The line :func:`twisted.logger.formatEventAsClassicLogText` makes of ``event``."""
    format = event.get("log_format")
    if format.__class__ is not str or "log_failure" in event or "log_flattened" in event:
        return formatEventAsClassicLogText(event, formatTime=_stamp)
    plain = _PLAIN_FORMATS.get(format)
    if plain is None:
        if len(_PLAIN_FORMATS) >= _MAX_FORMATS:
            _PLAIN_FORMATS.clear()
        plain = _PLAIN_FORMATS[format] = _plain(format)
    if not plain:
        return formatEventAsClassicLogText(event, formatTime=_stamp)
    try:
        text = format.format_map(event)
        system = event.get("log_system")
        if system is None:
            level = event.get("log_level")
            system = f"{event.get('log_namespace', '-')}#{'-' if level is None else level.name}"
        elif system.__class__ is not str:
            raise TypeError  # str() of it, or UNFORMATTABLE: Twisted's way
    except Exception:
        # Twisted's formatter says what went wrong, in its own words.
        return formatEventAsClassicLogText(event, formatTime=_stamp)
    if not text:
        return None
    line = f"{_stamp(event.get('log_time'))} [{system}] {text}"
    if "\n" in line:
        line = line.replace("\n", "\n\t")
    return line + "\n"


class LogOutput(Protocol):
    """What the lines go to: a text or bytes file, or a :class:`~twisted.python.logfile.LogFile`."""

    def write(self, data: Any, /) -> object: ...

    def flush(self) -> object: ...


@implementer(ILogObserver)
class BatchedFileLogObserver:
    """Writes events to ``outFile`` as ``twistd`` does, in batches while the reactor runs.

    Until :meth:`startBatching` (the wiring calls it when the reactor runs) and after
    :meth:`stopBatching` (at the reactor's shutdown) every line is written and flushed at
    once. Between them a line waits for ``clock.callLater(delay)`` (the default: the next
    reactor turn, before the reactor polls its sockets again); a warning or
    worse, a failure, ``maxBuffered`` characters waiting or :meth:`flush` write every
    waiting line first. Lines from threads other than the one that started the batching
    are written at once (with what waits before them).

    ``minimum``, when given, drops events below that level. ``outFile`` takes text or,
    like :class:`~twisted.python.logfile.LogFile`, bytes (UTF-8).
    """

    def __init__(
        self,
        outFile: LogOutput,
        clock: IReactorTime,
        *,
        minimum: LogLevel | None = None,
        delay: float = FLUSH_DELAY,
        maxBuffered: int = MAX_BUFFERED,
    ) -> None:
        self._outFile = outFile
        self._bytes = ioType(outFile) is not str  # type: ignore[no-untyped-call]
        self._clock = clock
        self._delay = delay
        self._maxBuffered = maxBuffered
        self._dropped: frozenset[LogLevel] = frozenset(
            ()
            if minimum is None
            else (level for level in LogLevel.iterconstants() if level < minimum)
        )
        self._lock = threading.Lock()
        self._lines: list[str] = []
        self._size = 0
        self._call: IDelayedCall | None = None
        #: The thread whose lines may wait (the reactor's), while batching; else None.
        self._batchingThread: int | None = None

    @property
    def outFile(self) -> LogOutput:
        """The file the lines go to."""
        return self._outFile

    def __call__(self, event: LogEvent) -> None:
        level = event.get("log_level")
        if level in self._dropped:
            return
        line = classicLogText(event)
        if line is None:
            return
        with self._lock:
            self._lines.append(line)
            self._size += len(line)
            if (
                self._batchingThread != threading.get_ident()
                or level in _LOUD
                or "log_failure" in event
                or self._size >= self._maxBuffered
            ):
                self._write()
            elif self._call is None:
                self._call = self._clock.callLater(self._delay, self._timedFlush)

    def flush(self) -> None:
        """Write every waiting line now."""
        with self._lock:
            self._write()

    def startBatching(self) -> None:
        """Let lines logged from this thread wait (up to the delay) to be written together."""
        self._batchingThread = threading.get_ident()

    def stopBatching(self) -> None:
        """Write what waits; from now on, every line at once."""
        with self._lock:
            self._batchingThread = None
            self._write()

    def rotate(self) -> None:
        """Write what waits, then rotate the file (a :class:`~twisted.python.logfile.LogFile`)."""
        with self._lock:
            self._write()
            rotate: Callable[[], None] = getattr(self._outFile, "rotate")  # noqa: B009
            rotate()

    def _timedFlush(self) -> None:
        self._call = None
        self.flush()

    def _write(self) -> None:
        """Write the waiting lines (the lock held)."""
        call, self._call = self._call, None
        if call is not None and call.active():
            call.cancel()
        if not self._lines:
            return
        text = "".join(self._lines)
        self._lines.clear()
        self._size = 0
        self._outFile.write(text.encode("utf-8", "backslashreplace") if self._bytes else text)
        self._outFile.flush()


def twistdObserver(
    config: Mapping[str, Any],
    reactor: Any,
    minimum: LogLevel | None = None,
) -> ILogObserver | None:
    """The observer ``twistd`` would make from its options ``config``, batched.

    ``None`` where ``twistd``'s own choice must stand: ``--logger`` given, ``--syslog``
    without ``minimum`` (with it, twistd's syslog observer behind a level filter), and
    ``--logfile -`` for a daemon (which ``twistd`` refuses). Otherwise a
    :class:`BatchedFileLogObserver` on standard output (``-n`` without ``--logfile``, or
    ``--logfile -``) or on the ``--logfile`` (default ``twistd.log``), rotated as
    ``twistd`` rotates it, by size and on ``SIGUSR1``. ``reactor`` (an ``IReactorCore``
    and ``IReactorTime``) starts and stops the batching with its own start and shutdown.
    """
    if config.get("logger"):
        return None
    if config.get("syslog"):
        if minimum is None:
            return None
        from twisted.python import log as legacy_log  # noqa: PLC0415
        from twisted.python import syslog  # noqa: PLC0415 (Unix only)

        emit = syslog.SyslogObserver(config.get("prefix", "")).emit  # type: ignore[no-untyped-call]
        return _filtered(LegacyLogObserverWrapper(cast(legacy_log.ILogObserver, emit)), minimum)
    logfile: str = config.get("logfile") or ""
    nodaemon = bool(config.get("nodaemon"))
    outFile: LogOutput
    if logfile == "-":
        if not nodaemon:
            return None  # twistd: "Daemons cannot log to stdout, exiting!"
        outFile = sys.stdout
    elif nodaemon and not logfile:
        outFile = sys.stdout
    else:
        from twisted.python.logfile import LogFile  # noqa: PLC0415

        outFile = LogFile.fromFullPath(logfile or "twistd.log")  # type: ignore[no-untyped-call]
    observer = BatchedFileLogObserver(outFile, reactor, minimum=minimum)
    if outFile is not sys.stdout and not signal.getsignal(signal.SIGUSR1):
        # As twistd: SIGUSR1 rotates the log file (unless something else handles it).
        def rotateLog(signum: int, frame: Any) -> None:
            reactor.callFromThread(observer.rotate)

        signal.signal(signal.SIGUSR1, rotateLog)
    core: IReactorCore = reactor
    core.callWhenRunning(observer.startBatching)
    core.addSystemEventTrigger("after", "shutdown", observer.stopBatching)
    return observer


def _filtered(observer: ILogObserver, minimum: LogLevel) -> ILogObserver:
    predicate = LogLevelFilterPredicate(defaultLogLevel=minimum)
    return FilteringLogObserver(observer, [predicate])


def levelNamed(name: str) -> LogLevel:
    """The log level called ``name`` (debug, info, warn, error, critical)."""
    try:
        level: LogLevel = LogLevel.levelWithName(name.strip().lower())
    except Exception:
        names = ", ".join(level.name for level in LogLevel.iterconstants())
        raise ValueError(f"no log level {name!r} (one of {names})") from None
    return level
