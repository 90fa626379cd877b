"""A TLS protocol that sends what its application writes while handling a read at the end of it.

Twisted's default TLS transport (``BufferingTLSTransport``) gathers small writes by
scheduling a ``callLater(0)`` per connection that writes, so an answer waits for the
reactor's next turn and costs a timed call. An RSerPool server writes while it handles
what it read: the TCP mapping's ACKs and the answers. :class:`GatheringTLSProtocol` sends
those as one TLS write when the read is handled, from all the TLS records that read
carried. Writes at other times (a timer's keep-alives, a producer) are gathered until the
reactor's next turn as Twisted does, with one timed call for all the connections of a
factory that wrote in that turn.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from twisted.protocols.tls import TLSMemoryBIOFactory, TLSMemoryBIOProtocol

if TYPE_CHECKING:
    from twisted.internet.interfaces import (
        IDelayedCall,
        IOpenSSLClientConnectionCreator,
        IOpenSSLContextFactory,
        IOpenSSLServerConnectionCreator,
        IProtocolFactory,
        IReactorTime,
    )
    from twisted.python.failure import Failure

#: Gathered bytes beyond which a connection writes at once (Twisted's aggregation bound).
MAX_GATHERED = 64_000


class TurnFlusher:
    """Sends the gathered writes of every connection that wrote outside a read, once per
    reactor turn, from one timed call."""

    def __init__(self, clock: IReactorTime) -> None:
        self.clock = clock
        self._waiting: dict[GatheringTLSProtocol, None] = {}
        self._call: IDelayedCall | None = None

    def add(self, protocol: GatheringTLSProtocol) -> None:
        """Send ``protocol``'s gathered writes on the reactor's next turn."""
        self._waiting[protocol] = None
        if self._call is None:
            self._call = self.clock.callLater(0, self._flush)

    def discard(self, protocol: GatheringTLSProtocol) -> None:
        """Forget ``protocol`` (it flushed or is gone)."""
        self._waiting.pop(protocol, None)

    def _flush(self) -> None:
        self._call = None
        waiting, self._waiting = self._waiting, {}
        for protocol in waiting:
            protocol.flush()


class GatheringTLSProtocol(TLSMemoryBIOProtocol):
    """TLS on one connection: writes made while a read is handled go out as one TLS write
    at its end; other writes on the reactor's next turn (see the module's docstring)."""

    _gathered: list[bytes] | None = None
    _gatheredSize = 0
    _reading = False

    factory: GatheringTLSFactory

    def dataReceived(self, data: bytes) -> None:
        """Handle a read; then send what the application wrote meanwhile."""
        self._reading = True
        try:
            super().dataReceived(data)  # type: ignore[no-untyped-call]
        finally:
            self._reading = False
            if self._gathered:
                self.flush()

    def write(self, data: bytes) -> None:
        """Gather ``data`` for the end of this read or the next reactor turn."""
        if not isinstance(data, bytes):
            raise TypeError(f"data must be bytes, not {type(data).__name__}")
        if not data:
            return
        if self.disconnecting and self._producer is None:
            return  # as TLSMemoryBIOProtocol: writes after loseConnection are dropped
        gathered = self._gathered
        if gathered is None:
            gathered = self._gathered = []
        gathered.append(data)
        self._gatheredSize += len(data)
        if self._gatheredSize > MAX_GATHERED:
            self.flush()
        elif not self._reading and len(gathered) == 1:
            self.factory.turnFlusher.add(self)

    def writeSequence(self, iovec: list[bytes]) -> None:
        """Gather the joined ``iovec``."""
        self.write(b"".join(iovec))

    def flush(self) -> None:
        """Hand what is gathered to TLS now."""
        gathered = self._gathered
        if not gathered:
            return
        self._gathered = None
        self._gatheredSize = 0
        if not self._reading:
            self.factory.turnFlusher.discard(self)
        super().write(  # type: ignore[no-untyped-call]
            gathered[0] if len(gathered) == 1 else b"".join(gathered)
        )

    def loseConnection(self) -> None:
        """Send what is gathered, then close as TLS does."""
        self.flush()
        super().loseConnection()  # type: ignore[no-untyped-call]

    def connectionLost(self, reason: Failure | None = None) -> None:
        """Drop what is gathered: nothing can send it now."""
        self._gathered = None
        self._gatheredSize = 0
        self.factory.turnFlusher.discard(self)
        super().connectionLost(reason)  # type: ignore[no-untyped-call]


class GatheringTLSFactory(TLSMemoryBIOFactory):
    """A :class:`~twisted.protocols.tls.TLSMemoryBIOFactory` whose connections are
    :class:`GatheringTLSProtocol`."""

    protocol = GatheringTLSProtocol

    def __init__(
        self,
        contextFactory: IOpenSSLContextFactory
        | IOpenSSLClientConnectionCreator
        | IOpenSSLServerConnectionCreator,
        isClient: bool,
        wrappedFactory: IProtocolFactory,
        clock: IReactorTime | None = None,
    ) -> None:
        super().__init__(contextFactory, isClient, wrappedFactory, clock)
        if clock is None:
            from twisted.internet import reactor  # noqa: PLC0415

            clock = reactor
        self.turnFlusher = TurnFlusher(clock)


__all__ = ["MAX_GATHERED", "GatheringTLSFactory", "GatheringTLSProtocol", "TurnFlusher"]
