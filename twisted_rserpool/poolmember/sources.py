"""Where a pool member's load comes from: a command's output, a file, an HTTP URL, a
function (strongSwan's vici socket is in :mod:`twisted_rserpool.poolmember.viciload`).

Each source provides :class:`ILoadSource`: ``read()`` returns a Deferred that fires with
one number (what the member counts: connections, sessions, IKE SAs, or a share of its
capacity) or fails with :class:`LoadError` saying why. Cancelling the Deferred (the
caller's timeout) stops the read: the command is killed, the request abandoned.

A command, a file and a URL give text whose first word is the number, such as ``17`` or
``0.25\\n``; anything after it is ignored.
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from twisted.internet.defer import CancelledError, Deferred, maybeDeferred
from twisted.internet.error import ProcessDone
from twisted.internet.protocol import ProcessProtocol, Protocol, connectionDone
from twisted.python.failure import Failure
from zope.interface import Interface, implementer

__all__ = [
    "MAX_OUTPUT",
    "CallableLoad",
    "CommandLoad",
    "FileLoad",
    "ILoadSource",
    "LoadError",
    "UrlLoad",
    "parseLoad",
]

#: The most octets of load text read (a number needs a few).
MAX_OUTPUT = 64 * 1024


class LoadError(Exception):
    """The load could not be read; the message says why."""


class ILoadSource(Interface):
    """A pool member's load."""

    def read() -> Deferred[float]:
        """The current load: a non-negative number; errbacks with :class:`LoadError`."""


def parseLoad(data: bytes) -> float:
    """The number that ``data`` starts with (after white space)."""
    words = data[:MAX_OUTPUT].split(None, 1)
    if not words:
        raise LoadError("no number in the load text (it is empty)")
    word = words[0]
    try:
        value = float(word.decode("ascii"))
    except (UnicodeDecodeError, ValueError):
        raise LoadError(f"the load text starts with {word[:40]!r}, not a number") from None
    if not math.isfinite(value) or value < 0:
        raise LoadError(f"the load {value} is not a finite non-negative number")
    return value


def _asLoadError(failure: Failure) -> Failure:
    if failure.check(LoadError, CancelledError):  # type: ignore[no-untyped-call]
        return failure
    raise LoadError(f"{type(failure.value).__name__}: {failure.getErrorMessage()}")


@implementer(ILoadSource)
class CallableLoad:
    """The load a function returns (or its Deferred)."""

    def __init__(self, function: Callable[[], float | Deferred[float]]) -> None:
        self.function = function

    def __repr__(self) -> str:
        return f"<CallableLoad {getattr(self.function, '__qualname__', self.function)!r}>"

    def read(self) -> Deferred[float]:
        """Call the function."""
        d: Deferred[float] = maybeDeferred(self.function)  # type: ignore[call-overload]
        return d.addErrback(_asLoadError)


@implementer(ILoadSource)
class FileLoad:
    """The load written in a file (which another program keeps current)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"<FileLoad {str(self.path)!r}>"

    def read(self) -> Deferred[float]:
        """Read the file now (it is small: one number)."""
        return maybeDeferred(self._read)

    def _read(self) -> float:
        try:
            with self.path.open("rb") as f:
                data = f.read(MAX_OUTPUT)
        except OSError as e:
            raise LoadError(f"{self.path}: {e.strerror or e}") from None
        try:
            return parseLoad(data)
        except LoadError as e:
            raise LoadError(f"{self.path}: {e}") from None


class _Output(ProcessProtocol):
    """Collects a command's output and fires with it when the command ends."""

    def __init__(self, command: str) -> None:
        self.command = command
        self.stdout = bytearray()
        self.stderr = bytearray()
        self.deferred: Deferred[float] = Deferred(self._cancel)

    def _cancel(self, _: Deferred[float]) -> None:
        self._kill()

    def _kill(self) -> None:
        transport: Any = self.transport
        if transport is not None and transport.pid is not None:
            with contextlib.suppress(OSError):  # already gone
                transport.signalProcess("KILL")

    def outReceived(self, data: bytes) -> None:
        self.stdout += data
        if len(self.stdout) > MAX_OUTPUT:
            self._kill()

    def errReceived(self, data: bytes) -> None:
        if len(self.stderr) < 1024:
            self.stderr += data[:1024]

    def processEnded(self, reason: Failure) -> None:
        if self.deferred.called:
            return  # cancelled (timed out)
        if len(self.stdout) > MAX_OUTPUT:
            error = LoadError(f"{self.command}: more than {MAX_OUTPUT} octets of output")
            self.deferred.errback(error)
            return
        if not reason.check(ProcessDone):  # type: ignore[no-untyped-call]
            said = bytes(self.stderr).decode("utf-8", "replace").strip().splitlines()
            detail = f": {said[-1][:200]}" if said else ""
            code = getattr(reason.value, "exitCode", None)
            signal = getattr(reason.value, "signal", None)
            how = f"killed by signal {signal}" if signal else f"exited with status {code}"
            error = LoadError(f"{self.command}: {how}{detail}")
            self.deferred.errback(error)
            return
        try:
            self.deferred.callback(parseLoad(bytes(self.stdout)))
        except LoadError as e:
            self.deferred.errback(LoadError(f"{self.command}: {e}"))


@implementer(ILoadSource)
class CommandLoad:
    """The load a command prints; it must exit with status 0. ``argv[0]`` is run directly
    (no shell: write ``sh -c '...'`` for one), with this process's environment."""

    def __init__(self, argv: Sequence[str], reactor: Any) -> None:
        if not argv:
            raise ValueError("a load command is not empty")
        self.argv = list(argv)
        self.reactor = reactor

    def __repr__(self) -> str:
        return f"<CommandLoad {' '.join(self.argv)!r}>"

    def read(self) -> Deferred[float]:
        """Run the command once."""
        output = _Output(self.argv[0])
        try:
            self.reactor.spawnProcess(output, self.argv[0], self.argv, env=dict(os.environ))
        except OSError as e:
            return _failed(LoadError(f"{self.argv[0]}: {e.strerror or e}"))
        return output.deferred


def _failed(error: Exception) -> Deferred[float]:
    d: Deferred[float] = Deferred()
    d.errback(error)
    return d


class _Body(Protocol):
    """A response body of at most :data:`MAX_OUTPUT` octets."""

    def __init__(self) -> None:
        self.data = bytearray()
        self.done: Deferred[bytes] = Deferred()

    def dataReceived(self, data: bytes) -> None:
        self.data += data
        if len(self.data) > MAX_OUTPUT and not self.done.called:
            self.done.errback(LoadError(f"a body of more than {MAX_OUTPUT} octets is no load"))
            if self.transport is not None:
                self.transport.stopProducing()  # type: ignore[attr-defined]

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        if self.done.called:
            return
        from twisted.web.client import ResponseDone  # noqa: PLC0415
        from twisted.web.http import PotentialDataLoss  # noqa: PLC0415

        if reason.check(ResponseDone, PotentialDataLoss):  # type: ignore[no-untyped-call]
            self.done.callback(bytes(self.data))
        else:
            self.done.errback(LoadError(f"the body was cut: {reason.getErrorMessage()}"))


@implementer(ILoadSource)
class UrlLoad:
    """The load in the body of an HTTP(S) GET of ``url``, which must answer 200."""

    def __init__(self, url: str, reactor: Any) -> None:
        if not url.lower().startswith(("http://", "https://")):
            raise ValueError(f"{url!r} is not an http:// or https:// URL")
        self.url = url
        self.reactor = reactor
        self._agent: Any = None

    def __repr__(self) -> str:
        return f"<UrlLoad {self.url!r}>"

    def read(self) -> Deferred[float]:
        """One GET."""
        return Deferred.fromCoroutine(self._get()).addErrback(self._explain)

    async def _get(self) -> float:
        from twisted.web.client import Agent  # noqa: PLC0415 (only with a URL)
        from twisted.web.http_headers import Headers  # noqa: PLC0415

        if self._agent is None:
            self._agent = Agent(self.reactor)  # type: ignore[no-untyped-call]
        headers = Headers({b"User-Agent": [b"twisted-rserpool poolmember"]})
        response = await self._agent.request(b"GET", self.url.encode("ascii"), headers)
        body = _Body()
        response.deliverBody(body)
        data = await body.done
        if response.code != 200:
            phrase = response.phrase.decode("latin-1")
            raise LoadError(f"{self.url}: HTTP {response.code} {phrase}")
        try:
            return parseLoad(data)
        except LoadError as e:
            raise LoadError(f"{self.url}: {e}") from None

    def _explain(self, failure: Failure) -> Failure:
        if failure.check(LoadError, CancelledError):  # type: ignore[no-untyped-call]
            return failure
        raise LoadError(f"{self.url}: {failure.getErrorMessage()}")
