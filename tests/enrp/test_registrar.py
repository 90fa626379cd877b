"""The ASAP side of the ENRP server (sans-IO), including the RFC 5355 defences."""

from __future__ import annotations

import random
from dataclasses import replace
from ipaddress import IPv4Address

import pytest

from twisted_rserpool.enrp.registrar import (
    Action,
    Close,
    Registrar,
    RegistrarConfig,
    Send,
)
from twisted_rserpool.handlespace import Handlespace
from twisted_rserpool.security.authorization import (
    AuthorizationPolicy,
    Grant,
    Role,
)
from twisted_rserpool.security.context import INSECURE, SecurityContext
from twisted_rserpool.security.ratelimit import Rate
from twisted_rserpool.wire import asap
from twisted_rserpool.wire.errors import CauseCode
from twisted_rserpool.wire.message import Message
from twisted_rserpool.wire.parameters import (
    LeastUsedPolicy,
    OperationError,
    PoolElementParameter,
    RoundRobinPolicy,
    TcpTransport,
    UdpTransport,
)

SERVER = 0x5E4E0001
PEER = ("127.0.0.1", 40000)
OTHER_PEER = ("127.0.0.2", 40001)
LOCAL = IPv4Address("127.0.0.1")


def psk(identity: str) -> SecurityContext:
    return SecurityContext(True, "TLSv1.3", "TLS_AES_128_GCM_SHA256", psk_identity=identity)


ANONYMOUS_TLS = SecurityContext(False, "TLSv1.3", "TLS_AES_128_GCM_SHA256")

POLICY = AuthorizationPolicy(
    {
        "pe-1": Grant(frozenset({Role.POOL_ELEMENT}), ("echo", "counter-*")),
        "pe-2": Grant(frozenset({Role.POOL_ELEMENT}), ("echo",)),
        "small": Grant(frozenset({Role.POOL_ELEMENT}), ("*",), max_pool_elements=1),
        "user": Grant(frozenset({Role.POOL_USER})),
    },
    default=None,
)


def element(
    pe: int = 1,
    port: int = 7000,
    address: str = "127.0.0.1",
    policy: object = None,
    life: int = 30,
) -> PoolElementParameter:
    return PoolElementParameter(
        pe,
        0,
        life,
        TcpTransport(port, IPv4Address(address)),
        policy if policy is not None else RoundRobinPolicy(),  # type: ignore[arg-type]
    )


class Harness:
    """A registrar with a clock and helpers to open connections and send messages."""

    def __init__(self, **config: object) -> None:
        self.now = 1000.0
        self.handlespace = Handlespace(rng=random.Random(1))
        self.registrar = Registrar(
            RegistrarConfig(SERVER, **config),  # type: ignore[arg-type]
            self.handlespace,
            POLICY,
            rng=random.Random(2),
        )
        self.next_connection = 1

    def connect(self, security: SecurityContext, peer: tuple[str, int] = PEER) -> int:
        number = self.next_connection
        self.next_connection += 1
        assert self.registrar.connection_ready(number, security, peer) == []
        return number

    def send(self, connection: int, message: Message) -> list[Action]:
        return self.registrar.message_received(connection, message, self.now)

    def advance(self, seconds: float) -> list[Action]:
        self.now += seconds
        return self.registrar.handle_timer(self.now)

    def only(self, actions: list[Action]) -> Message:
        assert len(actions) == 1, actions
        action = actions[0]
        assert isinstance(action, Send)
        return action.message

    def register(self, connection: int, pool: bytes = b"echo", **kw: object) -> Message:
        return self.only(self.send(connection, asap.Registration(pool, element(**kw))))  # type: ignore[arg-type]


def assert_refused(message: Message, cause: CauseCode) -> None:
    assert isinstance(message, asap.RegistrationResponse | asap.DeregistrationResponse)
    if isinstance(message, asap.RegistrationResponse):
        assert message.reject
    assert message.error is not None
    assert message.error.code == cause


# ------------------------------------------------------------------ registration


def test_authenticated_registration() -> None:
    """An authorized PE is registered with this server as home and its ASAP transport recorded."""
    h = Harness()
    c = h.connect(psk("pe-1"))
    response = h.register(c)
    assert response == asap.RegistrationResponse(b"echo", 1)
    entry = h.handlespace.get(b"echo", 1)
    assert entry is not None
    assert entry.identity == "pe-1"
    assert entry.element.home_server_identifier == SERVER
    assert entry.element.asap_transport == TcpTransport(40000, LOCAL)


def test_unauthenticated_registration_creates_no_state() -> None:
    """RFC 5355 2.1: without authentication nothing is created, the refusal says security."""
    h = Harness()
    for security in (INSECURE, ANONYMOUS_TLS):
        c = h.connect(security)
        assert_refused(h.register(c), CauseCode.REJECTED_DUE_TO_SECURITY_CONSIDERATIONS)
    assert len(h.handlespace) == 0
    assert (
        h.registrar.counters["registrations_refused_rejected_due_to_security_considerations"] == 2
    )


def test_unauthorized_pool_is_refused() -> None:
    """RFC 5355 2.4: an identity registers only in the pools its grant lists."""
    h = Harness()
    c = h.connect(psk("pe-2"))
    assert_refused(h.register(c, b"counter-1"), CauseCode.REJECTED_DUE_TO_SECURITY_CONSIDERATIONS)
    unknown = h.connect(psk("stranger"))
    assert_refused(h.register(unknown), CauseCode.REJECTED_DUE_TO_SECURITY_CONSIDERATIONS)
    users = h.connect(psk("user"))
    assert_refused(h.register(users), CauseCode.REJECTED_DUE_TO_SECURITY_CONSIDERATIONS)
    assert len(h.handlespace) == 0
    assert h.register(h.connect(psk("pe-1")), b"counter-1") == asap.RegistrationResponse(
        b"counter-1", 1
    )


def test_pe_identifier_of_another_identity_is_refused() -> None:
    """RFC 5355 2.3: a PE identifier belongs to the identity that registered it."""
    h = Harness()
    h.register(h.connect(psk("pe-1")), port=7000)
    spoofer = h.connect(psk("pe-2"))
    assert_refused(
        h.register(spoofer, port=9999), CauseCode.REJECTED_DUE_TO_SECURITY_CONSIDERATIONS
    )
    entry = h.handlespace.get(b"echo", 1)
    assert entry is not None and entry.element.user_transport == TcpTransport(7000, LOCAL)


def test_foreign_address_is_refused_and_wildcard_bound() -> None:
    """A PE registers only its own address; the wildcard means the connection's address."""
    h = Harness()
    c = h.connect(psk("pe-1"))
    assert_refused(
        h.register(c, address="192.0.2.1"), CauseCode.REJECTED_DUE_TO_SECURITY_CONSIDERATIONS
    )
    assert len(h.handlespace) == 0
    assert h.register(c, address="0.0.0.0") == asap.RegistrationResponse(b"echo", 1)
    entry = h.handlespace.get(b"echo", 1)
    assert entry is not None and entry.element.user_transport.addresses == (LOCAL,)


def test_identity_limit() -> None:
    """An identity may hold only as many PEs as its grant allows (Lack of Resources)."""
    h = Harness()
    c = h.connect(psk("small"))
    h.register(c, pe=1)
    assert_refused(h.register(c, pe=2), CauseCode.LACK_OF_RESOURCES)
    assert h.register(c, pe=1, port=7001) == asap.RegistrationResponse(b"echo", 1)


def test_inconsistent_policy_carries_the_pools_policy() -> None:
    """A PE whose policy differs from the pool's is refused with the pool's policy attached."""
    h = Harness()
    c = h.connect(psk("pe-1"))
    h.register(c, pe=1)
    response = h.register(c, pe=2, policy=LeastUsedPolicy(5))
    assert_refused(response, CauseCode.INCONSISTENT_POOLING_POLICY)
    assert isinstance(response, asap.RegistrationResponse) and response.error is not None
    assert response.error.causes[0].information == RoundRobinPolicy()


def test_inconsistent_transport_type() -> None:
    """A PE whose user transport type differs from the pool's is refused."""
    h = Harness()
    c = h.connect(psk("pe-1"))
    h.register(c, pe=1)
    udp = replace(element(pe=2), user_transport=UdpTransport(7000, LOCAL))
    response = h.only(h.send(c, asap.Registration(b"echo", udp)))
    assert_refused(response, CauseCode.INCONSISTENT_TRANSPORT_TYPE)


def test_reregistration_updates_in_place() -> None:
    """Re-registration with the same PE identifier replaces its values."""
    h = Harness()
    c = h.connect(psk("pe-1"))
    h.register(c, policy=LeastUsedPolicy(5))
    h.register(c, policy=LeastUsedPolicy(9))
    entry = h.handlespace.get(b"echo", 1)
    assert entry is not None and entry.element.policy == LeastUsedPolicy(9)
    assert len(h.handlespace) == 1


def test_registration_life_is_capped() -> None:
    """An infinite or too long registration life is cut to the maximum, with a warning."""
    h = Harness(max_registration_life=60)
    response = h.register(h.connect(psk("pe-1")), life=-1)
    assert isinstance(response, asap.RegistrationResponse) and not response.reject
    assert response.error is not None
    entry = h.handlespace.get(b"echo", 1)
    assert entry is not None and entry.element.registration_life == 60


def test_insecure_server_accepts_unauthenticated_registration() -> None:
    """With --insecure, registrations need no authentication (RSPLIB-style operation)."""
    h = Harness(secure=False)
    assert h.register(h.connect(INSECURE)) == asap.RegistrationResponse(b"echo", 1)


# ------------------------------------------------------------------ de-registration


def test_deregistration() -> None:
    """A PE removes itself; an unknown PE's de-registration is granted (RFC 5352 3.2)."""
    h = Harness()
    c = h.connect(psk("pe-1"))
    h.register(c)
    assert h.only(h.send(c, asap.Deregistration(b"echo", 1))) == asap.DeregistrationResponse(
        b"echo", 1
    )
    assert len(h.handlespace) == 0
    assert h.only(h.send(c, asap.Deregistration(b"echo", 9))) == asap.DeregistrationResponse(
        b"echo", 9
    )


def test_deregistration_by_another_identity_is_refused() -> None:
    """RFC 5355 2.3: nobody deregisters another identity's PE."""
    h = Harness()
    h.register(h.connect(psk("pe-1")))
    other = h.connect(psk("pe-2"))
    response = h.only(h.send(other, asap.Deregistration(b"echo", 1)))
    assert_refused(response, CauseCode.REJECTED_DUE_TO_SECURITY_CONSIDERATIONS)
    anonymous = h.connect(ANONYMOUS_TLS)
    response = h.only(h.send(anonymous, asap.Deregistration(b"echo", 1)))
    assert_refused(response, CauseCode.REJECTED_DUE_TO_SECURITY_CONSIDERATIONS)
    assert len(h.handlespace) == 1


def test_insecure_deregistration_only_over_own_connection() -> None:
    """Without identities, only the PE's own association may deregister it."""
    h = Harness(secure=False)
    h.register(h.connect(INSECURE))
    other = h.connect(INSECURE, OTHER_PEER)
    assert_refused(
        h.only(h.send(other, asap.Deregistration(b"echo", 1))),
        CauseCode.REJECTED_DUE_TO_SECURITY_CONSIDERATIONS,
    )
    assert len(h.handlespace) == 1


# ------------------------------------------------------------------ handle resolution


def test_resolution_of_unknown_pool() -> None:
    """An unknown pool handle is answered with Unknown Pool Handle."""
    h = Harness()
    response = h.only(h.send(h.connect(ANONYMOUS_TLS), asap.HandleResolution(b"nope")))
    assert response == asap.HandleResolutionResponse(
        b"nope", error=OperationError.single(CauseCode.UNKNOWN_POOL_HANDLE)
    )


def test_resolution_items() -> None:
    """All PEs by default (RFC 5352 3.3 SHOULD list all); RSPLIB's item count is honoured
    up to 128, and --handle-resolution-items 3 gives RSPLIB's default."""
    h = Harness()
    c = h.connect(psk("pe-1"))
    for pe in range(1, 11):
        h.register(c, pe=pe, port=7000 + pe)
    user = h.connect(ANONYMOUS_TLS)
    default = h.only(h.send(user, asap.HandleResolution(b"echo")))
    assert isinstance(default, asap.HandleResolutionResponse)
    assert len(default.pool_elements) == 10
    assert default.policy is None  # round robin is not announced
    wanted = h.only(h.send(user, asap.HandleResolution(b"echo", items=7)))
    assert isinstance(wanted, asap.HandleResolutionResponse)
    assert len(wanted.pool_elements) == 7
    assert len({pe.pe_identifier for pe in wanted.pool_elements}) == 7
    rsplib = Harness(handle_resolution_items=3)
    c = rsplib.connect(psk("pe-1"))
    for pe in range(1, 11):
        rsplib.register(c, pe=pe, port=7000 + pe)
    three = rsplib.only(rsplib.send(rsplib.connect(ANONYMOUS_TLS), asap.HandleResolution(b"echo")))
    assert isinstance(three, asap.HandleResolutionResponse) and len(three.pool_elements) == 3


def test_resolution_announces_adaptive_policy() -> None:
    """The overall policy is included when it is not round robin, sorted by load."""
    h = Harness()
    c = h.connect(psk("pe-1"))
    h.register(c, pe=1, port=7001, policy=LeastUsedPolicy(50))
    h.register(c, pe=2, port=7002, policy=LeastUsedPolicy(10))
    response = h.only(h.send(c, asap.HandleResolution(b"echo")))
    assert isinstance(response, asap.HandleResolutionResponse)
    assert response.policy == LeastUsedPolicy(0)
    assert [pe.pe_identifier for pe in response.pool_elements] == [2, 1]


def test_resolution_refused_for_anonymous_users_when_configured() -> None:
    """With anonymous pool users off, an unauthenticated PU is refused for security."""
    h = Harness(anonymous_pool_users=False)
    response = h.only(h.send(h.connect(ANONYMOUS_TLS), asap.HandleResolution(b"echo")))
    assert isinstance(response, asap.HandleResolutionResponse) and response.error is not None
    assert response.error.code == CauseCode.REJECTED_DUE_TO_SECURITY_CONSIDERATIONS


def test_subscription_updates() -> None:
    """The S flag is accepted (A flag); every pool change sends an update; pool end says so."""
    h = Harness()
    pe = h.connect(psk("pe-1"))
    h.register(pe, pe=1, port=7001)
    user = h.connect(ANONYMOUS_TLS, OTHER_PEER)
    response = h.only(h.send(user, asap.HandleResolution(b"echo", subscribe=True)))
    assert isinstance(response, asap.HandleResolutionResponse) and response.accept_updates
    actions = h.send(pe, asap.Registration(b"echo", element(pe=2, port=7002)))
    update = [a.message for a in actions if isinstance(a, Send) and a.connection == user]
    assert len(update) == 1
    assert isinstance(update[0], asap.HandleResolutionResponse)
    assert {p.pe_identifier for p in update[0].pool_elements} == {1, 2}
    h.send(pe, asap.Deregistration(b"echo", 1))
    actions = h.send(pe, asap.Deregistration(b"echo", 2))
    final = [a.message for a in actions if isinstance(a, Send) and a.connection == user]
    assert final == [
        asap.HandleResolutionResponse(
            b"echo", error=OperationError.single(CauseCode.UNKNOWN_POOL_HANDLE)
        )
    ]


# ------------------------------------------------------------------ keep-alive and expiry


def _messages_to(actions: list[Action], connection: int) -> list[Message]:
    return [a.message for a in actions if isinstance(a, Send) and a.connection == connection]


def test_keep_alive_unanswered_removes_pe() -> None:
    """A keep-alive goes out within 1.5 intervals; without an ACK the PE goes after the timeout."""
    h = Harness(keep_alive_interval=5.0, keep_alive_timeout=2.0)
    c = h.connect(psk("pe-1"))
    h.register(c)
    sent = _messages_to(h.advance(7.5), c)
    assert sent == [asap.EndpointKeepAlive(SERVER, b"echo", home=False, pe_identifier=1)]
    h.advance(2.5)
    assert h.handlespace.get(b"echo", 1) is None
    assert h.registrar.counters["removed_keep_alive_timeout"] == 1


def test_keep_alive_answered_keeps_pe() -> None:
    """An ACK over the PE's own connection keeps it; an ACK from elsewhere does not count."""
    h = Harness(keep_alive_interval=5.0, keep_alive_timeout=2.0)
    c = h.connect(psk("pe-1"))
    h.register(c)
    h.advance(7.5)
    stranger = h.connect(psk("pe-2"), OTHER_PEER)
    h.send(stranger, asap.EndpointKeepAliveAck(b"echo", 1))
    assert h.registrar.counters["keep_alive_acks_ignored"] == 1
    h.send(c, asap.EndpointKeepAliveAck(b"echo", 1))
    h.advance(2.5)
    assert h.handlespace.get(b"echo", 1) is not None


def test_registration_expiry_tells_the_pe() -> None:
    """When the registration life runs out the PE is removed and gets a de-registration response."""
    h = Harness(keep_alive_interval=1000.0)
    c = h.connect(psk("pe-1"))
    h.register(c, life=10)
    actions = h.advance(10.5)
    assert _messages_to(actions, c) == [asap.DeregistrationResponse(b"echo", 1)]
    assert h.handlespace.get(b"echo", 1) is None


def test_connection_loss_removes_its_pes() -> None:
    """PEs registered over a connection that closed are unreachable and removed."""
    h = Harness()
    c = h.connect(psk("pe-1"))
    h.register(c, pe=1)
    h.register(c, pe=2, port=7002)
    h.registrar.connection_lost(c, h.now)
    assert len(h.handlespace) == 0


# ------------------------------------------------------------------ unreachable reports


def test_unreachable_reports() -> None:
    """A report triggers a keep-alive; the PE goes only if that keep-alive stays unanswered.

    tests/enrp/test_unreachable.py has the rest: reporters counted once, signs of life,
    MAX-BAD-PE-REPORT, who may report.
    """
    h = Harness(max_bad_pe_report=3, unreachable_rate=Rate(100.0, 100.0), keep_alive_timeout=2.0)
    pe = h.connect(psk("pe-1"))
    h.register(pe)
    user = h.connect(ANONYMOUS_TLS, OTHER_PEER)
    actions = h.send(user, asap.EndpointUnreachable(b"echo", 1))
    assert _messages_to(actions, pe) == [
        asap.EndpointKeepAlive(SERVER, b"echo", home=False, pe_identifier=1)
    ]
    h.advance(2.5)
    assert h.handlespace.get(b"echo", 1) is None
    assert h.registrar.counters["removed_keep_alive_timeout"] == 1


def test_unreachable_flood_is_rate_limited() -> None:
    """RFC 5355 2.13: a PU's unreachable reports beyond its rate are dropped and counted."""
    h = Harness(max_bad_pe_report=1000, unreachable_rate=Rate(1.0, 5.0))
    pe = h.connect(psk("pe-1"))
    h.register(pe)
    user = h.connect(ANONYMOUS_TLS, OTHER_PEER)
    for _ in range(50):
        h.send(user, asap.EndpointUnreachable(b"echo", 1))
    assert h.registrar.counters["unreachable_reports"] == 5
    assert h.registrar.counters["unreachable_reports_rate_limited"] == 45


def test_keep_alive_flood_to_a_pe_is_rate_limited() -> None:
    """RFC 5355 2.14: however many reports arrive, keep-alives to one PE stay within the rate."""
    h = Harness(
        max_bad_pe_report=1000,
        unreachable_rate=Rate(1000.0, 1000.0),
        keep_alive_rate=Rate(1.0, 3.0),
    )
    pe = h.connect(psk("pe-1"))
    h.register(pe)
    keep_alives = 0
    for number in range(100):
        # Distinct reporters, and the PE answers each probe at once (so a new one may go).
        user = h.connect(ANONYMOUS_TLS, (f"127.0.1.{number}", 50000 + number))
        keep_alives += len(_messages_to(h.send(user, asap.EndpointUnreachable(b"echo", 1)), pe))
        h.send(pe, asap.EndpointKeepAliveAck(b"echo", 1))
    assert keep_alives == 3
    assert h.registrar.counters["keep_alives_rate_limited"] == 97
    assert h.handlespace.get(b"echo", 1) is not None


# ------------------------------------------------------------------ floods and odd input


def test_request_flood_waits_for_its_rate() -> None:
    """RFC 5355 2.1: beyond its rate a connection is told to wait (the adapter stops
    reading it) until its next request is due; every request is still handled."""
    h = Harness(request_rate=Rate(10.0, 20.0))
    user = h.connect(ANONYMOUS_TLS)
    assert [h.registrar.admit_request(user, h.now) for _ in range(20)] == [0.0] * 20
    # Each request reserves its token: the 21st waits 0.1 s, the 22nd (asked when the
    # 21st is handled) another 0.1 s.
    assert h.registrar.admit_request(user, h.now) == pytest.approx(0.1)
    assert h.registrar.admit_request(user, h.now + 0.1) == pytest.approx(0.1)
    assert h.registrar.admit_request(user, h.now + 0.3) == 0.0
    assert h.registrar.counters["requests_delayed"] == 2
    assert h.registrar.counters["rate_limited_connections"] == 1
    # What is admitted is answered: no request is dropped by the registrar.
    assert len(h.send(user, asap.HandleResolution(b"x"))) == 1


def test_identity_rate_spans_its_connections() -> None:
    """RFC 5355 2.2: more connections of one identity share its rate (fairly: one under
    its share is served before the backlog of one over it); another identity and
    anonymous peers are not slowed by it."""
    h = Harness(request_rate=Rate(1000.0, 1000.0), identity_rate=Rate(10.0, 10.0))
    first, second = h.connect(psk("pe")), h.connect(psk("pe"))
    other = h.connect(psk("pe-other"))
    # A burst of the first leaves the headroom (4 of the 10 tokens) to the others...
    waits = [h.registrar.admit_request(first, h.now) for _ in range(8)]
    assert waits == pytest.approx([0.0] * 6 + [0.1, 0.2])
    # ... so the second's first request goes before the first's backlog, then waits too.
    assert h.registrar.admit_request(second, h.now) == 0.0
    assert h.registrar.admit_request(second, h.now) == pytest.approx(0.4)
    assert h.registrar.admit_request(first, h.now) == pytest.approx(0.5)
    assert h.registrar.admit_request(other, h.now) == 0.0
    assert h.registrar.counters["rate_limited_connections"] == 2


def test_anonymous_connections_share_one_rate() -> None:
    """Unauthenticated peers cannot be told apart: opening many gains them nothing."""
    h = Harness(request_rate=Rate(1000.0, 1000.0), anonymous_rate=Rate(10.0, 10.0))
    users = [h.connect(ANONYMOUS_TLS) for _ in range(10)]
    assert [h.registrar.admit_request(u, h.now) for u in users] == [0.0] * 10
    # Second requests are over their share: they wait in turn, and leave the headroom
    # (4 tokens) to connections under theirs.
    waits = [h.registrar.admit_request(u, h.now) for u in users]
    assert waits == pytest.approx([0.4 + 0.1 * n for n in range(1, 11)])
    assert h.registrar.admit_request(h.connect(psk("pe")), h.now) == 0.0


def test_unexpected_message_is_answered_with_error() -> None:
    """A message an ENRP server never receives is answered with ASAP_ERROR."""
    h = Harness()
    c = h.connect(psk("pe-1"))
    response = h.only(h.send(c, asap.Cookie(b"x")))
    assert isinstance(response, asap.ErrorMessage)
    assert response.error.code == CauseCode.UNRECOGNIZED_MESSAGE


def test_unrecognized_parameters_are_left_to_the_connection() -> None:
    """The registrar sends no ASAP_ERROR for skip-and-report parameters: the connection does.

    (Exactly one per message: tests/enrp/test_unreachable.py plays it over a real connection.)
    """
    h = Harness()
    c = h.connect(psk("pe-1"))
    message = replace(
        asap.HandleResolution(b"echo"), unrecognized_parameters=(b"\xc0\x01\x00\x04",)
    )
    response = h.only(h.send(c, message))
    assert isinstance(response, asap.HandleResolutionResponse)
    assert response.error is not None
    assert response.error.code == CauseCode.UNKNOWN_POOL_HANDLE


def test_message_before_ready_is_dropped() -> None:
    """Nothing is processed for a connection the adapter has not declared ready."""
    h = Harness()
    assert h.send(42, asap.Registration(b"echo", element())) == []
    assert len(h.handlespace) == 0


@pytest.mark.parametrize("action", [Close(1, "x"), Send(1, asap.Cookie(b""))])
def test_actions_are_values(action: Action) -> None:
    """Actions are immutable values."""
    with pytest.raises(AttributeError):
        action.connection = 2  # type: ignore[misc]


def test_asap_transport_offered_by_the_pe_is_kept_when_it_is_its_own() -> None:
    """A PE that listens for ASAP names its port; a foreign address falls back to the source."""
    h = Harness()
    c = h.connect(psk("pe-1"))
    offered = replace(element(), asap_transport=TcpTransport(7000, IPv4Address("0.0.0.0")))
    h.only(h.send(c, asap.Registration(b"echo", offered)))
    entry = h.handlespace.get(b"echo", 1)
    assert entry is not None and entry.element.asap_transport == TcpTransport(7000, LOCAL)
    foreign = replace(element(pe=2), asap_transport=TcpTransport(7000, IPv4Address("192.0.2.9")))
    h.only(h.send(c, asap.Registration(b"echo", foreign)))
    entry = h.handlespace.get(b"echo", 2)
    assert entry is not None and entry.element.asap_transport == TcpTransport(40000, LOCAL)
