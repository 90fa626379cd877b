"""ASAP_ENDPOINT_UNREACHABLE as RFC 5352 3.5 and RFC 5355 2.13 intend (sans-IO, clock-driven).

Reports come only from peers that may resolve the pool, each reporter counts once per PE
within the window, a sign of life clears the count, and a report never removes a PE by
itself: only a keep-alive that stays unanswered does.
"""

from __future__ import annotations

import random

from twisted.logger import capturedLogs

from twisted_rserpool.enrp.registrar import Action, Registrar, RegistrarConfig, Send
from twisted_rserpool.handlespace import Handlespace
from twisted_rserpool.security.authorization import AuthorizationPolicy, Grant, Role
from twisted_rserpool.security.context import SecurityContext
from twisted_rserpool.security.ratelimit import Rate
from twisted_rserpool.wire import asap
from twisted_rserpool.wire.message import Message
from twisted_rserpool.wire.parameters import PoolElementParameter, RoundRobinPolicy, TcpTransport

SERVER = 0x5E4E0001
OTHER_SERVER = 0x5E4E0002
POLICY = AuthorizationPolicy(
    {
        "pe-1": Grant(frozenset({Role.POOL_ELEMENT}), ("echo",)),
        "user": Grant(frozenset({Role.POOL_USER})),
        "user-2": Grant(frozenset({Role.POOL_USER})),
        "user-3": Grant(frozenset({Role.POOL_USER})),
        "user-4": Grant(frozenset({Role.POOL_USER})),
        "nobody": Grant(frozenset()),
        "elsewhere": Grant(frozenset({Role.POOL_USER}), ("other-*",)),
    },
    default=None,
)
ANONYMOUS = SecurityContext(False, "TLSv1.3", "TLS_AES_128_GCM_SHA256")
KEEP_ALIVE = asap.EndpointKeepAlive(SERVER, b"echo", home=False, pe_identifier=1)


def psk(identity: str) -> SecurityContext:
    return SecurityContext(True, "TLSv1.3", "TLS_AES_128_GCM_SHA256", psk_identity=identity)


def element(pe: int = 1, home: int = 0) -> PoolElementParameter:
    from ipaddress import IPv4Address

    return PoolElementParameter(pe, home, 3600, TcpTransport(7000, IPv4Address("127.0.0.1")),
                                RoundRobinPolicy())  # fmt: skip


class Harness:
    """A registrar, its handlespace, a clock, and a PE that answers when told to."""

    def __init__(self, **config: object) -> None:
        self.now = 1000.0
        self.handlespace = Handlespace(rng=random.Random(1))
        defaults: dict[str, object] = {
            # Periodic keep-alives far apart: only the probes that reports cause go out.
            "keep_alive_interval": 1000.0,
            "keep_alive_timeout": 2.0,
            "unreachable_rate": Rate(100.0, 100.0),
        }
        self.registrar = Registrar(
            RegistrarConfig(SERVER, **(defaults | config)),  # type: ignore[arg-type]
            self.handlespace,
            POLICY,
            rng=random.Random(2),
        )
        self.connections = 0
        self.pe = self.connect(psk("pe-1"))
        self.sent_to_pe: list[Message] = []
        actions = self.registrar.message_received(
            self.pe, asap.Registration(b"echo", element()), self.now
        )
        assert isinstance(actions[0], Send)
        assert isinstance(actions[0].message, asap.RegistrationResponse)
        assert not actions[0].message.reject

    def connect(self, security: SecurityContext, address: str = "127.0.0.1") -> int:
        self.connections += 1
        number = self.connections
        self.registrar.connection_ready(number, security, (address, 40000 + number))
        return number

    def _collect(self, actions: list[Action]) -> list[Action]:
        self.sent_to_pe += [
            a.message for a in actions if isinstance(a, Send) and a.connection == self.pe
        ]
        return actions

    def report(self, connection: int, pe: int = 1) -> list[Action]:
        return self._collect(
            self.registrar.message_received(
                connection, asap.EndpointUnreachable(b"echo", pe), self.now
            )
        )

    def acknowledge(self) -> None:
        self._collect(
            self.registrar.message_received(
                self.pe, asap.EndpointKeepAliveAck(b"echo", 1), self.now
            )
        )

    def advance(self, seconds: float) -> None:
        self.now += seconds
        self._collect(self.registrar.handle_timer(self.now))

    def probes(self) -> int:
        return self.sent_to_pe.count(KEEP_ALIVE)

    @property
    def present(self) -> bool:
        return self.handlespace.get(b"echo", 1) is not None

    @property
    def count(self) -> int:
        entry = self.handlespace.get(b"echo", 1)
        assert entry is not None
        return entry.unreachable_reports

    @property
    def counters(self) -> dict[str, int]:
        return dict(self.registrar.counters)


# ------------------------------------------------------------------ who may report


def test_anonymous_reports_refused_without_anonymous_pool_users() -> None:
    """--no-anonymous-pool-users: anonymous reports change nothing and are logged once."""
    h = Harness(anonymous_pool_users=False, max_bad_pe_report=3)
    attacker = h.connect(ANONYMOUS)
    with capturedLogs() as events:
        for _ in range(20):
            assert h.report(attacker) == []
        h.advance(10.0)
    assert h.present and h.count == 0 and h.probes() == 0
    assert h.counters["unreachable_reports_refused"] == 20
    refusals = [e for e in events if "may not resolve" in str(e.get("reason", ""))]
    assert len(refusals) == 1
    assert refusals[0]["cause"] == "REJECTED_DUE_TO_SECURITY_CONSIDERATIONS"


def test_identity_without_roles_is_refused() -> None:
    """An identity whose policy entry has roles = [] may not report, nor one for other pools."""
    h = Harness(max_bad_pe_report=1)
    for name in ("nobody", "elsewhere"):
        connection = h.connect(psk(name))
        for _ in range(5):
            h.report(connection)
    h.advance(10.0)
    assert h.present and h.count == 0 and h.probes() == 0
    assert h.counters["unreachable_reports_refused"] == 10


def test_anonymous_reports_allowed_when_anonymous_users_may_resolve() -> None:
    """With anonymous pool users (the default) an anonymous report counts, per address."""
    h = Harness(max_bad_pe_report=3)
    for _ in range(3):
        h.report(h.connect(ANONYMOUS, "127.0.0.9"))
    assert h.count == 1  # three connections from one address are one reporter
    h.report(h.connect(ANONYMOUS, "127.0.0.10"))
    assert h.count == 2


# ------------------------------------------------------------------ counting


def test_one_reporter_counts_once_per_window() -> None:
    """A PU repeating itself counts once within the window, and once more after it."""
    h = Harness(max_bad_pe_report=3, unreachable_report_window=30.0)
    user = h.connect(psk("user"))
    for _ in range(10):
        h.report(user)
        h.now += 1.0
    assert h.count == 1
    assert h.counters["unreachable_reports_repeated"] == 9
    h.now += 25.0
    h.report(user)
    assert h.count == 2


def test_repeating_reporter_never_removes_a_healthy_pe() -> None:
    """An authorized PU reporting every 1.2 s for two minutes: the PE answers and stays."""
    h = Harness(max_bad_pe_report=3)
    user = h.connect(psk("user"))
    for _ in range(100):
        before = h.probes()
        h.report(user)
        if h.probes() > before:
            h.acknowledge()
        h.advance(1.2)
    assert h.present
    # Once per window (30 s) in 120 s: at most five probes, each answered.
    assert 1 <= h.probes() <= 5
    assert h.counters["keep_alive_acks"] == h.probes()


def test_sign_of_life_clears_the_count() -> None:
    """A keep-alive acknowledgement, and a re-registration, reset the count to zero."""
    h = Harness(max_bad_pe_report=3)
    h.report(h.connect(psk("user")))
    h.report(h.connect(psk("user-2")))
    assert h.count == 2
    h.acknowledge()
    assert h.count == 0
    assert h.counters["unreachable_reports_cleared"] == 1
    h.report(h.connect(psk("user-3")))
    assert h.count == 1
    h.registrar.message_received(h.pe, asap.Registration(b"echo", element()), h.now)
    assert h.count == 0
    # Reporters already counted in the window stay counted once: no new count.
    h.report(h.connect(psk("user")))
    assert h.count == 0


# ------------------------------------------------------------------ probing and removal


def test_reports_remove_only_after_the_probe_goes_unanswered() -> None:
    """MAX-BAD-PE-REPORT reached: the PE is probed, and removed only after keep_alive_timeout."""
    h = Harness(max_bad_pe_report=3, keep_alive_timeout=2.0)
    with capturedLogs() as events:
        for name in ("user", "user-2", "user-3", "user-4"):
            h.report(h.connect(psk(name)))
    assert h.present
    assert h.probes() == 1  # one probe outstanding answers for every report
    assert h.counters["unreachable_threshold_reached"] == 2
    assert any("MAX-BAD-PE-REPORT" in str(e.get("log_format", "")) for e in events)
    h.advance(1.9)
    assert h.present
    h.advance(0.2)
    assert not h.present
    assert h.counters["removed_keep_alive_timeout"] == 1


def test_an_answered_probe_keeps_the_pe() -> None:
    """The same reports, but the PE answers: it stays, and its count is cleared."""
    h = Harness(max_bad_pe_report=3, keep_alive_timeout=2.0)
    for name in ("user", "user-2", "user-3"):
        h.report(h.connect(psk(name)))
    h.acknowledge()
    h.advance(10.0)
    assert h.present and h.count == 0


def test_probe_at_the_threshold_waits_for_the_keep_alive_rate() -> None:
    """RFC 5355 2.14: with the PE's keep-alive budget spent, the probe is deferred, not lost."""
    h = Harness(max_bad_pe_report=3, keep_alive_rate=Rate(1.0, 1.0), keep_alive_timeout=2.0)
    h.report(h.connect(psk("user")))  # takes the only token
    h.acknowledge()
    h.report(h.connect(psk("user-2")))
    h.report(h.connect(psk("user-3")))
    h.report(h.connect(psk("user-4")))  # threshold reached after the ack, no token left
    assert h.probes() == 1
    assert h.counters["unreachable_probes_deferred"] == 1
    h.advance(1.0)  # the token is back: the deferred probe goes
    assert h.probes() == 2
    h.advance(2.1)  # and nobody answers it
    assert not h.present


def test_reports_about_a_pe_homed_elsewhere_are_only_counted() -> None:
    """The home server decides: no probe, no removal here, whatever the count."""
    h = Harness(max_bad_pe_report=1)
    h.handlespace.register(b"echo", element(pe=2, home=OTHER_SERVER), now=h.now)
    sent: list[Action] = []
    for name in ("user", "user-2", "user-3", "user-4"):
        sent += h.report(h.connect(psk(name)), pe=2)
    h.advance(10.0)
    assert sent == []
    entry = h.handlespace.get(b"echo", 2)
    assert entry is not None and entry.unreachable_reports == 4
    assert h.counters["unreachable_reports_not_home"] == 4


def test_reports_about_unknown_pes_are_counted_and_dropped() -> None:
    h = Harness()
    assert h.report(h.connect(psk("user")), pe=99) == []
    assert h.counters["unreachable_reports_unknown_pe"] == 1


def test_reporter_memory_is_bounded() -> None:
    """A PE remembers a bounded number of reporters however many report."""
    h = Harness(max_bad_pe_report=3)
    for number in range(200):
        h.report(h.connect(ANONYMOUS, f"127.0.{number // 250}.{number % 250 + 1}"))
    entry = h.handlespace.get(b"echo", 1)
    assert entry is not None and entry.unreachable_reporters is not None
    assert len(entry.unreachable_reporters) == 16
    assert h.present
