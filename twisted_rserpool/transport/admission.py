"""Admission of connections to a listener: the connection cap, refusal before TLS, throttled
warnings, and the file-descriptor budget the caps need (RFC 5355 section 2.1).

- :class:`ConnectionCap` counts the connections admitted through the factories that share it
  and refuses new ones (their ``buildProtocol`` returns ``None``) once ``limit`` are open.
- :class:`AdmittingTLSFactory` is a :class:`~twisted.protocols.tls.TLSMemoryBIOFactory` that
  honours such a refusal: the socket is closed at accept, before any TLS state exists.
  Twisted's own TLS factory would instead build a TLS protocol around ``None`` and fail.
- :class:`RefusingFactory` turns a refusal into a :class:`RefusedConnection` (aborted at
  once) for wrappers that cannot take ``None``, such as the TLS factory of ``ssl:``.
- :class:`LogThrottle` (sans-IO) and :class:`ThrottledLog` keep a flood of refusals or
  handshake timeouts from filling the log: a few lines per second, then one with a count.
- :func:`descriptorBudget` checks the caps against ``RLIMIT_NOFILE`` and
  :func:`applyDescriptorLimit` raises the soft limit or lowers the caps.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from twisted.internet.interfaces import IAddress, IProtocolFactory, IReactorTime
from twisted.internet.protocol import Factory, Protocol
from twisted.logger import Logger
from twisted.protocols.tls import TLSMemoryBIOProtocol

from twisted_rserpool.throttledlog import LogThrottle, ThrottledLog
from twisted_rserpool.transport.tlsgather import GatheringTLSFactory

__all__ = [
    "DESCRIPTOR_RESERVE",
    "MINIMUM_CONNECTIONS",
    "AdmittingTLSFactory",
    "ConnectionCap",
    "DescriptorBudget",
    "DescriptorLimitError",
    "LogThrottle",
    "RefusedConnection",
    "RefusingFactory",
    "ThrottledLog",
    "applyDescriptorLimit",
    "describeAddress",
    "descriptorBudget",
]

log = Logger()

#: Descriptors kept out of the caps: the reactor's own (epoll, waker pipe), the listening
#: sockets, the log, the policy and state files, the admin interface and its clients, and
#: the socket each over-cap connection holds between accept and close.
DESCRIPTOR_RESERVE = 64
#: Fewest ASAP connections a server starts with; below this it refuses to start.
MINIMUM_CONNECTIONS = 16


def describeAddress(address: Any) -> str:
    """``host:port`` (``[host]:port`` for IPv6) of a Twisted address, else its text."""
    host, port = getattr(address, "host", None), getattr(address, "port", None)
    if host is not None and port is not None:
        return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"
    return "unknown peer" if address is None else str(address)


# -- the connection cap -----------------------------------------------------------------------


class ConnectionCap:
    """At most ``limit`` connections open at once through the factories that share this.

    A factory asks :meth:`admit` in ``buildProtocol`` and, if admitted, hands the protocol
    to :meth:`add`; the protocol calls :meth:`discard` when its connection is lost. Each
    refusal is counted in :attr:`refused` and logged (at most one line per second, then
    one line with the count) as a warning naming the ``listener``.
    """

    def __init__(
        self,
        limit: int,
        clock: IReactorTime | None = None,
        *,
        listener: str = "ASAP",
        logInterval: float = 1.0,
    ) -> None:
        self.limit = limit
        self.listener = listener
        self.open: set[object] = set()
        self.refused = 0
        self._log = ThrottledLog(
            log,
            clock,
            "Refused {count} more {listener} connection(s) in {interval} s: "
            "connection cap {limit} reached",
            interval=logInterval,
            listener=listener,
            limit=limit,
        )

    def admit(self, address: Any) -> bool:
        """Whether a connection from ``address`` may be opened now (a refusal is counted
        and logged)."""
        if len(self.open) < self.limit:
            return True
        self.refused += 1
        self._log.summaryFields["limit"] = self.limit
        self._log.warn(
            "Refusing {listener} connection from {peer}: {count} connections open, "
            "the cap is {limit} (cause: connection cap)",
            listener=self.listener,
            peer=describeAddress(address),
            count=len(self.open),
            limit=self.limit,
            cause="connection cap",
        )
        return False

    def add(self, protocol: object) -> None:
        """Count ``protocol``'s connection as open."""
        self.open.add(protocol)

    def discard(self, protocol: object) -> None:
        """``protocol``'s connection closed (or never opened)."""
        self.open.discard(protocol)


# -- refusing connections ---------------------------------------------------------------------


class RefusedConnection(Protocol):
    """The protocol of a connection refused by its factory: aborted as soon as it is made."""

    def makeConnection(self, transport: Any) -> None:
        """Abort the connection (no close handshake, nothing written)."""
        self.connected = 1
        self.transport = transport
        abort = getattr(transport, "abortConnection", None)
        if abort is not None:
            abort()
        else:
            transport.loseConnection()


class RefusingFactory(Factory[Protocol]):
    """Builds ``wrappedFactory``'s protocols; where it refuses (``None``), a
    :class:`RefusedConnection`, for a wrapper that cannot take ``None`` (Twisted's
    :class:`~twisted.protocols.tls.TLSMemoryBIOFactory`, as behind ``ssl:`` endpoints)."""

    noisy = False

    def __init__(self, wrappedFactory: IProtocolFactory) -> None:
        self.wrappedFactory = wrappedFactory

    def buildProtocol(self, addr: IAddress | None) -> Protocol:
        """The wrapped factory's protocol, or a :class:`RefusedConnection`."""
        protocol = self.wrappedFactory.buildProtocol(addr)  # type: ignore[arg-type]
        if protocol is None:
            return RefusedConnection()
        built: Protocol = protocol  # type: ignore[assignment]
        return built

    def doStart(self) -> None:
        """Start the wrapped factory."""
        self.wrappedFactory.doStart()

    def doStop(self) -> None:
        """Stop the wrapped factory."""
        self.wrappedFactory.doStop()

    def logPrefix(self) -> str:
        """The wrapped factory's class name, for Twisted's log lines."""
        return type(self.wrappedFactory).__name__


class AdmittingTLSFactory(GatheringTLSFactory):
    """A TLS factory (:class:`~twisted_rserpool.transport.tlsgather.GatheringTLSFactory`:
    answers written while a read is handled go out at its end) that asks the wrapped factory
    first: if it refuses (``None``, or a :class:`RefusedConnection`), the listening port
    closes the socket at accept, before a TLS object exists or a handshake byte is read."""

    def buildProtocol(  # type: ignore[override]  # None is the factory contract's refusal
        self, addr: IAddress | None
    ) -> TLSMemoryBIOProtocol | None:
        """A TLS protocol around the wrapped factory's protocol, or ``None`` if it refused."""
        wrapped = self.wrappedFactory.buildProtocol(addr)
        if wrapped is None or isinstance(wrapped, RefusedConnection):
            return None
        return self.protocol(self, wrapped)  # type: ignore[no-untyped-call]


# -- the descriptor budget --------------------------------------------------------------------


class DescriptorLimitError(Exception):
    """The file-descriptor limit cannot hold even the smallest useful connection caps."""


@dataclass(frozen=True)
class DescriptorBudget:
    """The caps a server runs with, and the soft ``RLIMIT_NOFILE`` that holds them.

    ``softLimit`` above the current soft limit means it is to be raised; ``lowered`` that
    the caps asked for did not fit under the hard limit and were reduced.
    """

    softLimit: int
    maxConnections: int
    maxPeerConnections: int
    lowered: bool


def descriptorBudget(
    maxConnections: int,
    maxPeerConnections: int,
    *,
    soft: int,
    hard: int,
    reserve: int = DESCRIPTOR_RESERVE,
    infinity: int = -1,
) -> DescriptorBudget:
    """The caps and soft limit for ``maxConnections`` ASAP and ``maxPeerConnections`` ENRP
    connections plus ``reserve`` other descriptors, under the limits ``soft`` and ``hard``
    (``infinity`` is ``resource.RLIM_INFINITY``).

    If the caps fit under the soft limit, nothing changes. Else the soft limit is to be
    raised as far as needed, up to the hard limit. If even that is too small, the caps are
    lowered: the ENRP cap to at most an eighth of the descriptors left after the reserve,
    the ASAP cap to the rest. :class:`DescriptorLimitError` if fewer than
    :data:`MINIMUM_CONNECTIONS` ASAP connections would remain.
    """
    needed = maxConnections + maxPeerConnections + reserve
    if soft == infinity or soft >= needed:
        return DescriptorBudget(soft, maxConnections, maxPeerConnections, lowered=False)
    if hard == infinity or hard >= needed:
        return DescriptorBudget(needed, maxConnections, maxPeerConnections, lowered=False)
    available = hard - reserve
    peers = min(maxPeerConnections, max(0, available) // 8)
    connections = min(maxConnections, available - peers)
    if connections < MINIMUM_CONNECTIONS:
        raise DescriptorLimitError(
            f"the file descriptor limit (RLIMIT_NOFILE {hard}) cannot hold "
            f"--max-connections {maxConnections}"
            + (f" and --max-peer-connections {maxPeerConnections}" if maxPeerConnections else "")
            + f" with {reserve} descriptors in reserve, nor even {MINIMUM_CONNECTIONS} "
            "connections; raise it (ulimit -n) or lower the caps"
        )
    return DescriptorBudget(hard, connections, peers, lowered=True)


def applyDescriptorLimit(
    maxConnections: int,
    maxPeerConnections: int,
    *,
    reserve: int = DESCRIPTOR_RESERVE,
    getrlimit: Callable[[], tuple[int, int]] | None = None,
    setrlimit: Callable[[int, int], None] | None = None,
) -> tuple[DescriptorBudget, int]:
    """Raise this process's soft ``RLIMIT_NOFILE`` for the caps if need be, and return the
    :func:`descriptorBudget` it runs with together with the soft limit it found.

    ``getrlimit`` returns ``(soft, hard)`` and ``setrlimit(soft, hard)`` sets them (the
    :mod:`resource` module by default). A soft limit the system refuses to raise counts
    as the hard one.
    """
    import resource  # noqa: PLC0415  # POSIX only: imported when a server starts

    def getNofile() -> tuple[int, int]:
        return resource.getrlimit(resource.RLIMIT_NOFILE)

    def setNofile(soft: int, hard: int) -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))

    getrlimit = getrlimit or getNofile
    setrlimit = setrlimit or setNofile
    soft, hard = getrlimit()
    infinity = resource.RLIM_INFINITY
    budget = descriptorBudget(
        maxConnections,
        maxPeerConnections,
        soft=soft,
        hard=hard,
        reserve=reserve,
        infinity=infinity,
    )
    if budget.softLimit != soft:
        try:
            setrlimit(budget.softLimit, hard)
        except (OSError, ValueError):
            budget = descriptorBudget(
                maxConnections,
                maxPeerConnections,
                soft=soft,
                hard=soft,
                reserve=reserve,
                infinity=infinity,
            )
    return budget, soft
