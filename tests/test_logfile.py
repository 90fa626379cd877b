"""The twistd commands' log observer: twistd's lines, written in batches (issue 12)."""

from __future__ import annotations

import io
import signal
import threading
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from twisted.application.service import Application, IService, MultiService
from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactorClock
from twisted.logger import (
    FilteringLogObserver,
    ILogObserver,
    Logger,
    LogLevel,
    LogPublisher,
    formatEventAsClassicLogText,
)
from twisted.python import usage
from twisted.python.failure import Failure
from twisted.python.logfile import LogFile

from twisted_rserpool._logfile import (
    BatchedFileLogObserver,
    classicLogText,
    levelNamed,
    twistdObserver,
)
from twisted_rserpool._tap import withLogObserver


class Unprintable:
    """A value whose formatting fails (Twisted then writes its "Unable to format" text)."""

    def __format__(self, spec: str) -> str:
        raise RuntimeError("no format")

    def __repr__(self) -> str:
        return "<Unprintable>"


VALUES = st.one_of(
    st.integers(-(2**40), 2**40),
    st.floats(allow_nan=False),
    st.text(max_size=8),
    st.none(),
    st.just(Unprintable()),
    st.just(lambda: "called"),
    st.lists(st.integers(0, 9), max_size=3),
)
NAMES = st.sampled_from(["pe", "pool", "peer", "missing", "log_namespace", "f"])
FIELDS = st.one_of(
    st.builds(
        lambda name, conversion, spec: "{" + name + conversion + spec + "}",
        NAMES,
        st.sampled_from(["", "!r", "!s", "!a", "!x"]),
        st.sampled_from(["", ":08x", ":>6", ":.2f", ":d", ":{width}", ":s"]),
    ),
    # What the fast path leaves to Twisted: calls, indexes, attributes, positions.
    st.sampled_from(["{f()}", "{pool[0]}", "{pe.real}", "{}", "{0}", "{", "}", "{pe"]),
)
LITERALS = st.text(alphabet="ab \n\t{}é☃", max_size=6).map(
    lambda text: text.replace("{", "{{").replace("}", "}}")
)
FORMATS = st.lists(st.one_of(FIELDS, LITERALS), max_size=5).map("".join)
TIMES = st.one_of(
    st.none(),
    st.floats(0, 4e9),
    # Just below a whole second: datetime rounds these up to it.
    st.integers(0, 4 * 10**9).map(lambda second: second - 0.0000004),
    st.integers(0, 4 * 10**9).map(float),
)


def events() -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries(
        {"log_format": st.one_of(FORMATS, st.none(), st.just(b"bytes {pe}"))},
        optional={
            "log_time": TIMES,
            "log_level": st.sampled_from(list(LogLevel.iterconstants())),
            "log_namespace": st.sampled_from(["twisted_rserpool.enrp.registrar", "-", 7]),
            "log_system": st.sampled_from(["-", "ASAPServerFactory,3,127.0.0.1", 12]),
            "pe": VALUES,
            "pool": VALUES,
            "peer": VALUES,
            "f": VALUES,
            "width": st.sampled_from([3, "x"]),
        },
    )


def twistedText(event: dict[str, Any]) -> str | type[BaseException] | None:
    try:
        return formatEventAsClassicLogText(event)
    except Exception as e:
        return type(e)


def ourText(event: dict[str, Any]) -> str | type[BaseException] | None:
    try:
        return classicLogText(event)
    except Exception as e:
        return type(e)


@given(events())
def test_same_text_as_twisted(event: dict[str, Any]) -> None:
    """For any event, the line is Twisted's classic line (twistd's format), to the byte."""
    assert ourText(event) == twistedText(event)


def test_same_text_for_failures_and_the_registration_line() -> None:
    """A failure's traceback, and the line each registration writes, as Twisted has them."""
    try:
        1 / 0  # noqa: B018
    except ZeroDivisionError:
        failure = Failure()  # type: ignore[no-untyped-call]
    for event in (
        {"log_format": "Timer {fire} failed", "fire": "f", "log_failure": failure},
        {
            "log_format": "Registered PE 0x{pe:08x} in pool {pool} for {peer} (life {life} s)",
            "pe": 0x1001,
            "pool": "echo",
            "peer": "127.0.0.1:40000 (pe)",
            "life": 30.0,
            "log_time": 1_700_000_000.25,
            "log_level": LogLevel.info,
            "log_namespace": "twisted_rserpool.enrp.registrar",
        },
    ):
        assert classicLogText(event) == formatEventAsClassicLogText(event)


class Recorder(io.StringIO):
    """A text file that records each write."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[str] = []

    def write(self, text: str) -> int:
        self.writes.append(text)
        return super().write(text)


def setUp(
    batching: bool = True, **kwargs: Any
) -> tuple[Recorder, Clock, BatchedFileLogObserver, Logger]:
    out, clock = Recorder(), Clock()
    observer = BatchedFileLogObserver(out, clock, **kwargs)
    if batching:
        observer.startBatching()
    return out, clock, observer, Logger(namespace="test", observer=LogPublisher(observer))


def test_written_at_once_until_the_reactor_runs() -> None:
    """Before batching starts, every line is written (and flushed) when it comes."""
    out, _, _, log = setUp(batching=False)
    log.info("one")
    assert len(out.writes) == 1
    log.debug("two")
    assert len(out.writes) == 2
    assert out.getvalue().endswith("[test#debug] two\n")


def test_lines_of_one_turn_in_one_write() -> None:
    """While batching, the lines of a turn wait for the next turn (callLater 0), then
    go out in one write, in order."""
    out, clock, _, log = setUp()
    for number in range(5):
        log.info("line {number}", number=number)
    assert out.writes == []
    assert len(clock.getDelayedCalls()) == 1  # one call for the turn, not one per line
    clock.advance(0)
    assert len(out.writes) == 1
    assert [line.split("] ")[1] for line in out.getvalue().splitlines()] == [
        f"line {n}" for n in range(5)
    ]
    assert clock.getDelayedCalls() == []
    log.info("later")
    clock.advance(0)
    assert len(out.writes) == 2


def test_warnings_and_failures_flush_everything_before_them() -> None:
    """A warning (or worse) or a failure is written at once, after what waited."""
    out, clock, _, log = setUp()
    log.info("waiting")
    log.warn("trouble")
    assert len(out.writes) == 1
    assert out.getvalue().splitlines()[0].endswith("] waiting")
    assert out.getvalue().splitlines()[1].endswith("] trouble")
    assert clock.getDelayedCalls() == []  # nothing left to wait for
    log.info("again")
    try:
        raise ValueError("x")
    except ValueError:
        log.failure("failed", level=LogLevel.info)
    assert len(out.writes) == 2
    assert "ValueError: x" in out.writes[1]


def test_a_full_buffer_is_written() -> None:
    """More than ``maxBuffered`` characters waiting are written at once."""
    out, clock, _, log = setUp(maxBuffered=200)
    log.info("x" * 60)  # lines of 97 characters
    log.info("x" * 60)
    assert out.writes == []
    log.info("x" * 60)
    assert len(out.writes) == 1
    assert out.writes[0].count("\n") == 3
    clock.advance(0)
    assert len(out.writes) == 1  # nothing left


def test_stop_batching_writes_and_stops_waiting() -> None:
    """At the reactor's shutdown what waits is written, and later lines go at once."""
    out, _, observer, log = setUp()
    log.info("last of the reactor")
    observer.stopBatching()
    assert out.getvalue().endswith("] last of the reactor\n")
    log.info("Server Shut Down.")
    assert out.getvalue().endswith("] Server Shut Down.\n")
    assert len(out.writes) == 2


def test_other_threads_write_at_once() -> None:
    """A line from another thread is written at once, after the lines that waited."""
    out, _, _, log = setUp()
    log.info("reactor thread")
    thread = threading.Thread(target=lambda: log.info("other thread"))
    thread.start()
    thread.join()
    assert [line.split("] ")[1] for line in out.getvalue().splitlines()] == [
        "reactor thread",
        "other thread",
    ]


def test_minimum_level() -> None:
    """``minimum`` drops the events below it; events without a level stay."""
    out, _, observer, log = setUp(batching=False, minimum=LogLevel.info)
    log.debug("dropped")
    log.info("kept")
    observer({"log_format": "no level"})
    assert [line.split("] ")[1] for line in out.getvalue().splitlines()] == ["kept", "no level"]


def test_bytes_files_get_utf8() -> None:
    """A bytes file (such as a LogFile) gets UTF-8; text that cannot be encoded is
    escaped instead of losing the batch."""
    out = io.BytesIO()
    observer = BatchedFileLogObserver(out, Clock())
    log = Logger(namespace="test", observer=LogPublisher(observer))
    log.info("é {bad}", bad="\udc80")
    assert out.getvalue().endswith("] é \\udc80\n".encode())


def test_rotate_writes_first(tmp_path: Path) -> None:
    """Rotation (SIGUSR1, or by size in the LogFile) keeps each line in its file."""
    logFile = LogFile("test.log", str(tmp_path), rotateLength=None)  # type: ignore[no-untyped-call]
    clock = Clock()
    observer = BatchedFileLogObserver(logFile, clock)
    observer.startBatching()
    log = Logger(namespace="test", observer=LogPublisher(observer))
    log.info("before")
    observer.rotate()
    log.info("after")
    clock.advance(0)
    assert (tmp_path / "test.log.1").read_text().endswith("] before\n")
    assert (tmp_path / "test.log").read_text().endswith("] after\n")
    assert "before" not in (tmp_path / "test.log").read_text()


def test_rotation_by_size_between_batches(tmp_path: Path) -> None:
    """The LogFile's size rotation happens between writes, so a batch stays whole."""
    logFile = LogFile("test.log", str(tmp_path), rotateLength=150)  # type: ignore[no-untyped-call]
    clock = Clock()
    observer = BatchedFileLogObserver(logFile, clock)
    observer.startBatching()
    log = Logger(namespace="test", observer=LogPublisher(observer))
    for turn in range(3):
        for line in range(3):
            log.info("turn {turn} line {line}", turn=turn, line=line)
        clock.advance(0)
    files = sorted(tmp_path.glob("test.log*"))
    assert len(files) == 3
    lines = [line for path in files for line in path.read_text().splitlines()]
    assert len(lines) == 9
    for path in files:
        assert len({line.split("] turn ")[1][0] for line in path.read_text().splitlines()}) == 1


def test_level_names() -> None:
    assert levelNamed("INFO ") is LogLevel.info
    assert levelNamed("warn") is LogLevel.warn
    with pytest.raises(ValueError, match="no log level 'loud'"):
        levelNamed("loud")


class FakeReactor(MemoryReactorClock):
    """A memory reactor that records ``callFromThread``."""

    def __init__(self) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.threadCalls: list[Any] = []

    def callFromThread(self, f: Any, *args: Any, **kwargs: Any) -> None:
        self.threadCalls.append(f)


class TestTwistdObserver:
    """twistdObserver picks what twistd would pick (UnixAppLogger._getLogObserver)."""

    def test_left_to_twistd(self) -> None:
        reactor = FakeReactor()
        assert twistdObserver({"logger": object()}, reactor) is None
        assert twistdObserver({"syslog": True}, reactor) is None
        # twistd refuses a daemon logging to standard output: it must still say so.
        assert twistdObserver({"logfile": "-", "nodaemon": False}, reactor) is None

    def test_syslog_with_a_level(self) -> None:
        observer = twistdObserver({"syslog": True, "prefix": "enrp"}, FakeReactor(), LogLevel.info)
        assert isinstance(observer, FilteringLogObserver)

    @pytest.mark.parametrize("config", [{"nodaemon": True}, {"nodaemon": True, "logfile": "-"}])
    def test_standard_output(self, config: dict[str, Any], capsys: Any) -> None:
        reactor = FakeReactor()
        observer = twistdObserver(config, reactor)
        assert isinstance(observer, BatchedFileLogObserver)
        observer({"log_format": "hello", "log_system": "-"})
        assert capsys.readouterr().out == "- [-] hello\n"
        # Batching follows the reactor: from its start to its shutdown.
        assert [call[0] for call in reactor.whenRunningHooks] == [observer.startBatching]
        assert reactor.triggers["after"]["shutdown"] == [(observer.stopBatching, (), {})]

    def test_log_file_rotated_on_sigusr1(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """--logfile (default twistd.log for a daemon) is a LogFile; SIGUSR1 rotates it
        unless something else handles that signal."""
        monkeypatch.chdir(tmp_path)
        previous = signal.signal(signal.SIGUSR1, signal.SIG_DFL)
        try:
            reactor = FakeReactor()
            observer = twistdObserver({}, reactor)
            assert isinstance(observer, BatchedFileLogObserver)
            assert isinstance(observer.outFile, LogFile)
            assert Path(observer.outFile.path) == tmp_path / "twistd.log"
            observer({"log_format": "before", "log_system": "-"})
            handler = signal.getsignal(signal.SIGUSR1)
            assert callable(handler)
            handler(signal.SIGUSR1, None)
            # The handler hands the rotation to the reactor thread (callFromThread).
            (rotate,) = reactor.threadCalls
            assert rotate == observer.rotate
            rotate()
            assert (tmp_path / "twistd.log.1").read_text() == "- [-] before\n"

            named = twistdObserver({"logfile": str(tmp_path / "named.log")}, reactor)
            assert isinstance(named, BatchedFileLogObserver)
            assert Path(named.outFile.path) == tmp_path / "named.log"
            assert signal.getsignal(signal.SIGUSR1) is handler  # already handled: kept
        finally:
            signal.signal(signal.SIGUSR1, previous)


class CommandOptions(usage.Options):
    optParameters = [["log-level", None, "debug", "", levelNamed]]  # noqa: RUF012


@pytest.mark.parametrize(
    ("twistd", "level", "expected"),
    [
        ({"nodaemon": True}, "info", LogLevel.info),
        ({"nodaemon": True, "logfile": "-"}, None, None),
        ({"nodaemon": True, "logger": object()}, "info", "twistd's"),
    ],
)
def test_the_application_gets_the_observer(
    twistd: dict[str, Any], level: str | None, expected: Any, capsys: Any
) -> None:
    """A command's service, made by twistd, gives twistd's application our observer (at
    the --log-level asked for) when it joins it; with --logger it leaves it to twistd."""
    options = CommandOptions()  # type: ignore[no-untyped-call]
    options.parseOptions([] if level is None else ["--log-level", level])  # type: ignore[no-untyped-call]
    options.parent = twistd  # type: ignore[assignment]
    inner = MultiService()  # type: ignore[no-untyped-call]
    service = withLogObserver(inner, options)
    application = Application("test")  # type: ignore[no-untyped-call]
    service.setServiceParent(application)  # type: ignore[no-untyped-call]
    assert inner.parent is service
    assert list(IService(application)) == [service]  # type: ignore[call-overload]
    observer = application.getComponent(ILogObserver, None)
    if expected == "twistd's":
        assert observer is None
        return
    assert isinstance(observer, BatchedFileLogObserver)
    for lvl in (LogLevel.debug, LogLevel.info):
        observer({"log_format": lvl.name, "log_level": lvl, "log_system": "-"})
    written = capsys.readouterr().out
    assert written == ("- [-] info\n" if expected is LogLevel.info else "- [-] debug\n- [-] info\n")


def test_services_not_run_by_twistd_stay_as_they_are() -> None:
    options = CommandOptions()  # type: ignore[no-untyped-call]
    options.parseOptions([])  # type: ignore[no-untyped-call]
    inner = MultiService()  # type: ignore[no-untyped-call]
    assert withLogObserver(inner, options) is inner
