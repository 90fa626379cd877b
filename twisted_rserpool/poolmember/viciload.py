"""A strongSwan gateway's load: its IKE SAs, counted through charon's vici socket.

:class:`ViciProtocol` is the thin Twisted side of
:class:`~twisted_rserpool.poolmember.vici.ViciSession` (on a UNIX socket, or any stream);
:class:`ViciLoad` is a load source that connects for
each reading, asks, and closes, so a restarted charon is found again. It counts either

- ``stats`` (the default): one ``stats`` command, ``ikesas/total`` (every IKE SA charon
  holds, half-open ones included; cheap however many SAs there are), or
- ``established``: a ``list-sas`` command (``noblock``), streamed ``list-sa`` events,
  counting the IKE SAs in state ESTABLISHED (more exact, one event per SA).
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.endpoints import UNIXClientEndpoint
from twisted.internet.error import ConnectingCancelledError
from twisted.internet.protocol import Factory, Protocol, connectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from twisted_rserpool.poolmember.sources import ILoadSource, LoadError
from twisted_rserpool.poolmember.vici import (
    CommandFailed,
    CommandResult,
    Message,
    ViciError,
    ViciSession,
)

__all__ = ["COUNTS", "ViciLoad", "ViciProtocol", "countIkeSas"]

#: What :class:`ViciLoad` can count.
COUNTS = ("stats", "established")

log = Logger()


class ViciProtocol(Protocol):
    """VICI commands over one connection; each :meth:`call` fires with its
    :class:`~twisted_rserpool.poolmember.vici.CommandResult` (or fails with
    :class:`LoadError`)."""

    def __init__(self) -> None:
        self.session = ViciSession()
        self._waiting: list[Deferred[CommandResult]] = []
        self._closed: Failure | None = None

    def call(
        self, command: str, message: Message | None = None, stream: str | None = None
    ) -> Deferred[CommandResult]:
        """Run ``command`` (``stream``: the event it streams, see ViciSession.command)."""
        d: Deferred[CommandResult] = Deferred(lambda _: self.abort())
        if self._closed is not None:
            d.errback(self._closed)
            return d
        self._waiting.append(d)
        self.session.command(command, message, stream)
        self._flush()
        return d

    def _flush(self) -> None:
        data = self.session.dataToSend()
        if data and self.transport is not None:
            self.transport.write(data)

    def dataReceived(self, data: bytes) -> None:
        """Outcomes to their callers."""
        try:
            outcomes = self.session.receiveData(data)
        except ViciError as e:
            self._fail(LoadError(f"vici: {e}"))
            self.abort()
            return
        for outcome in outcomes:
            d = self._waiting.pop(0)
            if d.called:
                continue  # cancelled while the daemon answered
            if isinstance(outcome, CommandFailed):
                d.errback(LoadError(f"vici {outcome.command}: {outcome.reason}"))
            else:
                d.callback(outcome)
        self._flush()

    def abort(self) -> None:
        """Close the connection now."""
        if self.transport is not None:
            transport: Any = self.transport
            transport.abortConnection()

    def _fail(self, error: Exception) -> None:
        self._closed = Failure(error)  # type: ignore[no-untyped-call]
        waiting, self._waiting = self._waiting, []
        for d in waiting:
            if not d.called:
                d.errback(self._closed)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        """Pending commands fail."""
        if self._closed is None:
            self._fail(LoadError(f"vici connection lost: {reason.getErrorMessage()}"))


def countIkeSas(result: CommandResult, count: str) -> int:
    """The IKE SAs in a ``stats`` or ``list-sas`` result (see the module docstring)."""
    if count == "stats":
        ikesas = result.response.get("ikesas")
        total = ikesas.get("total") if isinstance(ikesas, dict) else None
        if not isinstance(total, bytes):
            raise LoadError("vici stats: the answer has no ikesas/total")
        try:
            return int(total)
        except ValueError:
            raise LoadError(f"vici stats: ikesas/total {total[:20]!r} is not a number") from None
    return sum(
        1
        for event in result.events
        for sa in event.values()
        if isinstance(sa, dict) and sa.get("state") == b"ESTABLISHED"
    )


@implementer(ILoadSource)
class ViciLoad:
    """The IKE SAs of the charon at ``path`` (``count``: one of :data:`COUNTS`)."""

    def __init__(self, path: str, reactor: Any, count: str = "stats") -> None:
        if count not in COUNTS:
            raise ValueError(f"count {count!r}: one of {', '.join(COUNTS)}")
        self.path = path
        self.reactor = reactor
        self.count = count

    def __repr__(self) -> str:
        return f"<ViciLoad {self.path!r} {self.count}>"

    def read(self) -> Deferred[float]:
        """Connect, count, close."""
        return Deferred.fromCoroutine(self._read())

    async def _read(self) -> float:
        endpoint = UNIXClientEndpoint(self.reactor, self.path)  # type: ignore[no-untyped-call]
        factory = Factory.forProtocol(ViciProtocol)
        factory.noisy = False  # a connection per reading: no "Starting factory" lines
        try:
            protocol: ViciProtocol = await endpoint.connect(factory)  # type: ignore[no-untyped-call]
        except (CancelledError, ConnectingCancelledError):
            raise CancelledError() from None  # as the caller's timeout expects
        except Exception as e:
            raise LoadError(f"vici {self.path}: {e}") from None
        try:
            if self.count == "stats":
                result = await protocol.call("stats")
            else:
                result = await protocol.call("list-sas", {"noblock": b"yes"}, stream="list-sa")
            return float(countIkeSas(result, self.count))
        finally:
            if protocol.transport is not None:
                protocol.transport.loseConnection()
