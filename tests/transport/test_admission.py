"""Connection admission (RFC 5355 section 2.1) without sockets: the handshake deadline, the
connection cap and its refusal before TLS, throttled warnings, and the descriptor budget."""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import pytest
from twisted.internet.address import IPv4Address
from twisted.internet.interfaces import ISSLTransport
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport, StringTransportWithDisconnection
from twisted.logger import Logger, LogLevel, capturedLogs
from twisted.protocols.tls import TLSMemoryBIOFactory, TLSMemoryBIOProtocol
from zope.interface import directlyProvides

from twisted_rserpool.enrp.registrar import Registrar, RegistrarConfig
from twisted_rserpool.enrp.service import ENRPPeerFactory, ENRPServer
from twisted_rserpool.handlespace import Handlespace
from twisted_rserpool.security.authorization import AuthorizationPolicy
from twisted_rserpool.security.tls import pskServerCreator
from twisted_rserpool.transport import RSerPoolFactory, RSerPoolProtocol
from twisted_rserpool.transport.admission import (
    MINIMUM_CONNECTIONS,
    AdmittingTLSFactory,
    ConnectionCap,
    DescriptorLimitError,
    LogThrottle,
    RefusedConnection,
    RefusingFactory,
    ThrottledLog,
    applyDescriptorLimit,
    descriptorBudget,
)
from twisted_rserpool.wire.tcpmapping import ChunkEncoder

KEY = bytes(range(32))


def address(port: int = 40000) -> IPv4Address:
    return IPv4Address("TCP", "127.0.0.1", port)


@contextmanager
def logs() -> Iterator[Sequence[dict[str, Any]]]:
    with capturedLogs() as events:
        yield events


def failures(events: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Events that carry a traceback or are logged at error level or above."""
    return [
        e
        for e in events
        if "log_failure" in e or e.get("log_level") in (LogLevel.error, LogLevel.critical)
    ]


def warnings(events: Sequence[dict[str, Any]], cause: str) -> list[dict[str, Any]]:
    return [e for e in events if e.get("log_level") == LogLevel.warn and e.get("cause") == cause]


def connect(
    factory: RSerPoolFactory[RSerPoolProtocol], tls: bool = False
) -> tuple[RSerPoolProtocol, StringTransport]:
    protocol = factory.buildProtocol(address())
    assert protocol is not None
    transport = StringTransport(peerAddress=address())  # type: ignore[no-untyped-call]
    if tls:
        # Looks like a TLS transport whose handshake never completes.
        directlyProvides(transport, ISSLTransport)
    protocol.makeConnection(transport)  # type: ignore[no-untyped-call]
    return protocol, transport


# -- the handshake deadline -----------------------------------------------------------------


def test_deadline_aborts_connection_without_init() -> None:
    """A connection whose peer never sends INIT is aborted at the deadline, logged with
    its peer and cause, and counted."""
    clock = Clock()
    factory = RSerPoolFactory(RSerPoolProtocol, clock, handshakeTimeout=2.0)
    protocol, transport = connect(factory)
    with logs() as events:
        clock.advance(1.9)
        assert not transport.disconnecting
        clock.advance(0.2)
    assert transport.disconnecting
    assert factory.handshakeTimeouts == 1
    [line] = warnings(events, "no TCP-mapping INIT received")
    assert line["peer"] == "127.0.0.1:40000"
    assert not protocol.ready


def test_deadline_aborts_stalled_tls_handshake() -> None:
    """On a TLS transport the INIT may have arrived; without a completed handshake the
    connection is still aborted, and the cause says so."""
    clock = Clock()
    factory = RSerPoolFactory(RSerPoolProtocol, clock, handshakeTimeout=1.0)
    protocol, transport = connect(factory, tls=True)
    protocol.dataReceived(ChunkEncoder().send_init())
    with logs() as events:
        clock.advance(1.0)
    assert transport.disconnecting
    assert not protocol.ready
    assert len(warnings(events, "TLS handshake not completed")) == 1


def test_deadline_spares_ready_connection() -> None:
    """A connection ready before the deadline is not touched by it."""
    clock = Clock()
    factory = RSerPoolFactory(RSerPoolProtocol, clock, handshakeTimeout=1.0)
    protocol, transport = connect(factory)
    protocol.dataReceived(ChunkEncoder().send_init())
    assert protocol.ready
    clock.advance(5.0)
    assert not transport.disconnecting
    assert factory.handshakeTimeouts == 0
    assert protocol.ready


def test_no_deadline_by_default_and_none_left_after_loss() -> None:
    """Without handshakeTimeout nothing is scheduled for it (the heartbeat only); with it
    the connection's one timer comes at the deadline; connections share the clock's one
    call, and a lost connection leaves no pending deadline behind."""
    clock = Clock()
    protocol, _ = connect(RSerPoolFactory(RSerPoolProtocol, clock))
    assert [call.getTime() for call in clock.getDelayedCalls()] == [30.0]
    protocol.connectionLost()
    assert clock.getDelayedCalls() == []
    timed, _ = connect(RSerPoolFactory(RSerPoolProtocol, clock, handshakeTimeout=3.0))
    other, _ = connect(RSerPoolFactory(RSerPoolProtocol, clock))
    assert [call.getTime() for call in clock.getDelayedCalls()] == [3.0]
    timed.connectionLost()
    other.connectionLost()
    assert clock.getDelayedCalls() == []


def test_deadline_log_is_throttled() -> None:
    """Many connections timing out at once give ten lines with their peers, then one
    line with the count of the others."""
    clock = Clock()
    factory = RSerPoolFactory(RSerPoolProtocol, clock, handshakeTimeout=1.0)
    for _ in range(50):
        connect(factory)
    with logs() as events:
        clock.advance(1.0)
        clock.advance(1.0)
    assert factory.handshakeTimeouts == 50
    assert len(warnings(events, "no TCP-mapping INIT received")) == 10
    [summary] = [e for e in events if e.get("count") == 40]
    assert summary["log_level"] == LogLevel.warn


# -- the cap ----------------------------------------------------------------------------------


def test_cap_refuses_then_admits_after_a_close() -> None:
    """The factory refuses (None) while the cap is full and admits again after a close;
    the refusal is counted."""
    clock = Clock()
    cap = ConnectionCap(2, clock)
    factory = RSerPoolFactory(RSerPoolProtocol, clock, cap=cap)
    first, _ = connect(factory)
    connect(factory)
    with logs() as events:
        assert factory.buildProtocol(address(40001)) is None
    assert cap.refused == 1
    [line] = warnings(events, "connection cap")
    assert line["peer"] == "127.0.0.1:40001" and line["limit"] == 2
    first.connectionLost()
    assert factory.buildProtocol(address(40002)) is not None


def test_cap_shared_by_factories() -> None:
    """Two listeners' factories with one cap count together."""
    clock = Clock()
    cap = ConnectionCap(1, clock)
    connect(RSerPoolFactory(RSerPoolProtocol, clock, cap=cap))
    assert RSerPoolFactory(RSerPoolProtocol, clock, cap=cap).buildProtocol(address()) is None


def test_refusal_log_is_throttled() -> None:
    """A flood of refusals gives one line a second, then one with the count."""
    clock = Clock()
    cap = ConnectionCap(0, clock, listener="ENRP")
    with logs() as events:
        for _ in range(100):
            assert not cap.admit(address())
        clock.advance(1.0)
    lines = [e for e in events if e.get("log_level") == LogLevel.warn]
    assert len(lines) == 2
    assert lines[0]["cause"] == "connection cap" and lines[0]["listener"] == "ENRP"
    assert lines[1]["count"] == 99 and lines[1]["listener"] == "ENRP"
    assert cap.refused == 100


def test_over_cap_closed_at_accept_by_admitting_tls_factory() -> None:
    """Behind our TLS factory a refusal is None: the port closes the socket at accept and
    no TLS object is made; an admitted connection gets TLS."""
    clock = Clock()
    cap = ConnectionCap(1, clock)
    inner = RSerPoolFactory(RSerPoolProtocol, clock, cap=cap)
    tls = AdmittingTLSFactory(pskServerCreator({"pe": KEY}), False, RefusingFactory(inner), clock)
    admitted = tls.buildProtocol(address())
    assert isinstance(admitted, TLSMemoryBIOProtocol)
    admitted.makeConnection(StringTransport(peerAddress=address()))  # type: ignore[no-untyped-call]
    assert tls.buildProtocol(address(40001)) is None
    assert (
        AdmittingTLSFactory(pskServerCreator({"pe": KEY}), False, inner, clock).buildProtocol(
            address(40002)
        )
        is None
    )
    assert cap.refused == 2


def test_over_cap_aborted_behind_twisted_tls_without_error() -> None:
    """Behind Twisted's own TLS factory (ssl: endpoints) the refused connection is aborted
    at once, and nothing is logged as an error or with a traceback (the bug was an
    "Unhandled Error ... 'NoneType' object has no attribute 'makeConnection'")."""
    clock = Clock()
    cap = ConnectionCap(0, clock)
    inner = RSerPoolFactory(RSerPoolProtocol, clock, cap=cap)
    tls = TLSMemoryBIOFactory(pskServerCreator({"pe": KEY}), False, RefusingFactory(inner), clock)
    transport = StringTransport(peerAddress=address())  # type: ignore[no-untyped-call]
    with logs() as events:
        protocol = tls.buildProtocol(address())
        protocol.makeConnection(transport)  # type: ignore[no-untyped-call]
    assert isinstance(protocol.wrappedProtocol, RefusedConnection)
    assert transport.disconnecting
    # Nothing written: no ServerHello, no alert.
    assert transport.value() == b""  # type: ignore[no-untyped-call]
    assert failures(events) == []
    assert len(warnings(events, "connection cap")) == 1


def test_refused_connection_without_abort() -> None:
    """A transport without abortConnection is closed with loseConnection."""

    class Plain:
        closed = False

        def loseConnection(self) -> None:
            self.closed = True

    transport = Plain()
    RefusedConnection().makeConnection(transport)
    assert transport.closed


def test_refusing_factory_passes_protocols_and_lifecycle() -> None:
    """RefusingFactory returns the wrapped factory's protocol and starts/stops it."""
    inner = RSerPoolFactory(RSerPoolProtocol, Clock())
    wrapper = RefusingFactory(inner)
    assert isinstance(wrapper.buildProtocol(address()), RSerPoolProtocol)
    wrapper.doStart()
    assert inner.numPorts == 1
    wrapper.doStop()
    assert inner.numPorts == 0
    assert wrapper.logPrefix() == "RSerPoolFactory"


# -- the ENRP server's factories --------------------------------------------------------------


def makeServer(clock: Clock, **caps: Any) -> ENRPServer:
    registrar = Registrar(
        RegistrarConfig(0x0E0E0E0E, secure=False),
        Handlespace(rng=random.Random(1)),
        AuthorizationPolicy(),
        rng=random.Random(2),
    )
    return ENRPServer(registrar, clock, **caps)


def test_enrp_listener_cap_and_deadline_counted() -> None:
    """Incoming ENRP connections have their own cap; outgoing ones are not capped; both
    kinds of refusal and the deadline are counted in the server's counters."""
    clock = Clock()
    server = makeServer(clock, maxConnections=1, maxPeerConnections=1, handshakeTimeout=1.0)
    incoming = ENRPPeerFactory(server, outgoing=False)
    stalled = incoming.buildProtocol(address())
    assert stalled is not None
    transport = StringTransportWithDisconnection(peerAddress=address())  # type: ignore[no-untyped-call]
    transport.protocol = stalled
    stalled.makeConnection(transport)  # type: ignore[no-untyped-call]
    assert incoming.buildProtocol(address(40001)) is None
    assert ENRPPeerFactory(server, outgoing=True).buildProtocol(address(40002)) is not None
    # The ASAP cap is separate: one ASAP connection is still admitted.
    assert server.factory.buildProtocol(address(40003)) is not None
    assert server.factory.buildProtocol(address(40004)) is None
    clock.advance(1.0)
    counters = server.registrar.counters
    assert not transport.connected  # aborted, and so out of the cap
    assert counters["peer_connections_refused_cap"] == 1
    assert counters["connections_refused_cap"] == 1
    assert counters["peer_handshake_timeouts"] == 1
    assert incoming.buildProtocol(address(40005)) is not None


# -- throttling, sans-IO ----------------------------------------------------------------------


def test_log_throttle_windows() -> None:
    """``burst`` events per window get lines; the rest are counted until taken."""
    throttle = LogThrottle(interval=1.0, burst=2)
    assert [throttle.allow(0.0), throttle.allow(0.1), throttle.allow(0.2)] == [True, True, False]
    assert throttle.next_deadline() == 1.0
    assert throttle.allow(1.0)  # a new window
    assert throttle.takeSuppressed() == 1
    assert throttle.next_deadline() is None
    with pytest.raises(ValueError):
        LogThrottle(interval=0)


def test_throttled_log_no_summary_when_nothing_suppressed() -> None:
    """A lone event is logged once and schedules nothing."""
    clock = Clock()
    throttled = ThrottledLog(Logger(), clock, "{count} more")
    with logs() as events:
        throttled.warn("one {x}", x=1)
    assert [e["x"] for e in events] == [1]
    assert clock.getDelayedCalls() == []


# -- the descriptor budget --------------------------------------------------------------------


def test_budget_fits_under_soft_limit() -> None:
    """Caps that fit change nothing."""
    budget = descriptorBudget(100, 10, soft=1024, hard=4096, reserve=64)
    assert (budget.softLimit, budget.maxConnections, budget.maxPeerConnections) == (1024, 100, 10)
    assert not budget.lowered


def test_budget_raises_soft_limit() -> None:
    """Caps above the soft limit raise it as far as needed, within the hard limit (or
    without bound when it is infinite)."""
    assert descriptorBudget(10_000, 64, soft=1024, hard=65536, reserve=64).softLimit == 10_128
    assert descriptorBudget(10_000, 64, soft=1024, hard=-1, reserve=64).softLimit == 10_128
    assert not descriptorBudget(10_000, 64, soft=-1, hard=-1, reserve=64).lowered


def test_budget_lowers_caps_under_hard_limit() -> None:
    """Caps above the hard limit are lowered: ENRP to an eighth of what the reserve
    leaves, ASAP to the rest."""
    budget = descriptorBudget(10_000, 64, soft=1024, hard=1024, reserve=164)
    assert budget.lowered and budget.softLimit == 1024
    assert budget.maxPeerConnections == 64  # 860 // 8 = 107 leaves the 64 asked for
    assert budget.maxConnections == 1024 - 164 - 64
    small = descriptorBudget(10_000, 64, soft=256, hard=256, reserve=64)
    assert (small.maxPeerConnections, small.maxConnections) == (24, 256 - 64 - 24)


def test_budget_refuses_when_too_small() -> None:
    """Too few descriptors for MINIMUM_CONNECTIONS: an error naming the limit and caps."""
    with pytest.raises(DescriptorLimitError, match=r"RLIMIT_NOFILE 70.*--max-connections 500"):
        descriptorBudget(500, 0, soft=70, hard=70, reserve=64)
    assert descriptorBudget(
        500, 0, soft=64 + MINIMUM_CONNECTIONS, hard=64 + MINIMUM_CONNECTIONS, reserve=64
    ).maxConnections == (MINIMUM_CONNECTIONS)
    with pytest.raises(DescriptorLimitError, match="--max-peer-connections 8"):
        descriptorBudget(500, 8, soft=75, hard=75, reserve=64)


def test_apply_descriptor_limit_sets_soft_limit() -> None:
    """The soft limit is raised through setrlimit with the hard limit unchanged."""
    calls: list[tuple[int, int]] = []
    budget, soft = applyDescriptorLimit(
        1000,
        10,
        reserve=64,
        getrlimit=lambda: (256, 4096),
        setrlimit=lambda s, h: calls.append((s, h)),
    )
    assert calls == [(1074, 4096)]
    assert soft == 256 and budget.softLimit == 1074 and not budget.lowered


def test_apply_descriptor_limit_when_raising_fails() -> None:
    """A soft limit the system will not raise counts as the hard one: the caps are
    lowered to fit it."""

    def refuse(soft: int, hard: int) -> None:
        raise OSError("not permitted")

    budget, _ = applyDescriptorLimit(
        1000, 0, reserve=64, getrlimit=lambda: (256, 4096), setrlimit=refuse
    )
    assert budget.lowered and budget.maxConnections == 256 - 64
