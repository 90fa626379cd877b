"""Registrar answers built from cached encodings, its log lines and remembered decisions."""

from __future__ import annotations

import random
from ipaddress import IPv4Address
from unittest.mock import patch

from hypothesis import given
from hypothesis import strategies as st
from twisted.logger import LogLevel, capturedLogs

from tests.wire.strategies import u16
from twisted_rserpool.enrp import resolution
from twisted_rserpool.enrp.registrar import Registrar, RegistrarConfig, Send
from twisted_rserpool.handlespace import UNLIMITED, Handlespace
from twisted_rserpool.security.authorization import AuthorizationPolicy, Grant, Role
from twisted_rserpool.security.context import SecurityContext
from twisted_rserpool.wire import asap
from twisted_rserpool.wire.message import Message
from twisted_rserpool.wire.parameters import (
    LeastUsedDegradationPolicy,
    LeastUsedPolicy,
    PoolElementParameter,
    PriorityPolicy,
    RoundRobinPolicy,
    SelectionPolicy,
    TcpTransport,
    UnknownPolicy,
    WeightedRandomPolicy,
)

SERVER = 0x5E4E0002
POOL = b"echo"
WILDCARD = IPv4Address("0.0.0.0")

#: Policy classes by the values they take (one class per drawn pool: RFC 5352 3.1 rule 2).
POLICIES: list[tuple[type[SelectionPolicy], int]] = [
    (RoundRobinPolicy, 0),
    (PriorityPolicy, 1),
    (LeastUsedPolicy, 1),
    (LeastUsedDegradationPolicy, 2),
    (WeightedRandomPolicy, 1),
]


def psk(identity: str) -> SecurityContext:
    return SecurityContext(True, "TLSv1.3", "TLS_AES_128_GCM_SHA256", psk_identity=identity)


def element(
    pe: int, policy: SelectionPolicy, port: int = 7000, life: int = 60
) -> PoolElementParameter:
    return PoolElementParameter(pe, 0, life, TcpTransport(port, WILDCARD), policy)


class Server:
    """A registrar, a PE connection (pe-1) and a pool-user connection (pu)."""

    def __init__(self, policy: AuthorizationPolicy | None = None) -> None:
        self.handlespace = Handlespace(UNLIMITED, rng=random.Random(1))
        self.registrar = Registrar(
            RegistrarConfig(SERVER),
            self.handlespace,
            policy if policy is not None else AuthorizationPolicy(),
            rng=random.Random(2),
        )
        self.registrar.connection_ready(1, psk("pe-1"), ("127.0.0.1", 40000))
        self.registrar.connection_ready(2, psk("pu"), ("127.0.0.1", 40001))
        self.now = 1000.0

    def send(self, connection: int, message: Message) -> list[Message]:
        actions = self.registrar.message_received(connection, message, self.now)
        return [a.message for a in actions if isinstance(a, Send)]

    def register(self, pe: PoolElementParameter) -> asap.RegistrationResponse:
        (response,) = self.send(1, asap.Registration(POOL, pe))
        assert isinstance(response, asap.RegistrationResponse)
        return response


def checked(answer: Message) -> asap.HandleResolutionResponse:
    """``answer``, after checking that it encodes exactly as the checked encoder encodes
    its fields, and decodes back to them."""
    assert isinstance(answer, asap.HandleResolutionResponse)
    plain = asap.HandleResolutionResponse(
        answer.pool_handle, answer.pool_elements, answer.policy, answer.accept_updates, answer.error
    )
    assert answer.encode() == plain.encode()
    assert asap.decode(answer.encode()) == plain
    return answer


#: Policy values: no weight 0 (PEs of weight 0 are never selected, and an answer without
#: PEs is another matter than its encoding).
weights = st.integers(1, 0xFFFFFFFF)


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[type[SelectionPolicy], int, list[tuple[str, int, int]]]:
    cls, values = draw(st.sampled_from(POLICIES))
    steps = draw(
        st.lists(
            st.tuples(
                st.sampled_from(["register", "resolve", "subscribe", "deregister"]),
                st.integers(1, 6),
                weights,
            ),
            min_size=1,
            max_size=30,
        )
    )
    return cls, values, steps


@given(scenarios(), u16)
def test_answers_are_the_checked_encoders_bytes(
    scenario: tuple[type[SelectionPolicy], int, list[tuple[str, int, int]]], port: int
) -> None:
    """Whatever registrations, re-registrations (new policy values), de-registrations and
    resolutions (with or without subscription) come in, every answer, the dynamic updates
    too, is byte for byte what the checked encoder makes of its fields."""
    cls, values, steps = scenario
    server = Server()
    for kind, pe, value in steps:
        if kind == "register":
            message: Message = asap.Registration(POOL, element(pe, cls(*([value] * values)), port))
            connection = 1
        elif kind == "deregister":
            message, connection = asap.Deregistration(POOL, pe), 1
        else:
            message, connection = asap.HandleResolution(POOL, kind == "subscribe", pe), 2
        for answer in server.send(connection, message):
            # Answers, dynamic updates to the subscriber, and the PE's own responses.
            if isinstance(answer, asap.HandleResolutionResponse):
                checked(answer)
            else:
                assert not getattr(answer, "reject", False)


def test_answer_after_reregistration_carries_the_new_content() -> None:
    """A PE re-registered with a new load is answered with its new parameter (the cached
    bytes of the old one are gone), also in the subscriber's update."""
    server = Server()
    server.register(element(1, LeastUsedPolicy(10)))
    (first,) = server.send(2, asap.HandleResolution(POOL, subscribe=True))
    assert checked(first).pool_elements[0].policy == LeastUsedPolicy(10)
    messages = server.send(1, asap.Registration(POOL, element(1, LeastUsedPolicy(20))))
    update = [m for m in messages if isinstance(m, asap.HandleResolutionResponse)]
    assert [checked(u).pool_elements[0].policy for u in update] == [LeastUsedPolicy(20)]
    (again,) = server.send(2, asap.HandleResolution(POOL))
    assert checked(again).pool_elements[0].policy == LeastUsedPolicy(20)
    assert checked(again).policy == LeastUsedPolicy(0)


def test_a_new_pool_under_the_same_handle_gets_a_new_answer_head() -> None:
    """The pool ends and a pool of another policy starts under its handle: answers carry
    the new pool's overall policy (round robin: none)."""
    server = Server()
    server.register(element(1, LeastUsedPolicy(10)))
    (answer,) = server.send(2, asap.HandleResolution(POOL))
    assert checked(answer).policy == LeastUsedPolicy(0)
    server.send(1, asap.Deregistration(POOL, 1))
    server.register(element(2, RoundRobinPolicy()))
    (answer,) = server.send(2, asap.HandleResolution(POOL))
    assert checked(answer).policy is None
    server.send(1, asap.Deregistration(POOL, 2))
    server.register(element(3, UnknownPolicy(0xB0001003, b"\x00\x00\x00\x05\x00\x00\x00\x01")))
    (answer,) = server.send(2, asap.HandleResolution(POOL))
    assert checked(answer).policy == UnknownPolicy(0xB0001003, b"\x00\x00\x00\x05\x00\x00\x00\x01")


def test_unchanged_reregistration_is_a_debug_line_a_changed_one_info() -> None:
    """A new registration and one with new content are logged at info; the same content
    again from the same connection at debug."""
    server = Server()
    with capturedLogs() as events:
        server.register(element(1, LeastUsedPolicy(10)))
        server.register(element(1, LeastUsedPolicy(10)))
        server.register(element(1, LeastUsedPolicy(11)))
    lines = [(e["log_level"], e["log_format"].split()[0]) for e in events if e.get("pe") == 1]
    assert lines == [
        (LogLevel.info, "Registered"),
        (LogLevel.debug, "Re-registered"),
        (LogLevel.info, "Registered"),
    ]
    assert all(e["peer"] == "127.0.0.1:40000 (pe-1)" for e in events if e.get("pe") == 1)
    assert server.registrar.counters["registrations"] == 3


def test_same_content_over_another_connection_is_not_unchanged() -> None:
    """The same PE parameter over a new connection (the PE reconnected) moves the PE's
    association: an info line, and the PE now belongs to the new connection."""
    server = Server()
    server.register(element(1, LeastUsedPolicy(10)))
    server.registrar.connection_ready(3, psk("pe-1"), ("127.0.0.1", 40000))
    with capturedLogs() as events:
        server.send(3, asap.Registration(POOL, element(1, LeastUsedPolicy(10))))
    assert [e["log_level"] for e in events if e.get("pe") == 1] == [LogLevel.info]
    assert (POOL, 1) in server.registrar.connections[3].pool_elements
    assert (POOL, 1) not in server.registrar.connections[1].pool_elements


def test_a_new_policy_is_asked_again() -> None:
    """Decisions are remembered per policy: after a reload installs another policy, a
    pool user it does not admit is refused, and a PE it admits elsewhere registers."""
    first = AuthorizationPolicy({"pu": Grant(frozenset({Role.POOL_USER}))})
    server = Server(first)
    server.register(element(1, LeastUsedPolicy(10)))
    (answer,) = server.send(2, asap.HandleResolution(POOL))
    assert checked(answer).error is None
    server.registrar.policy = AuthorizationPolicy(
        {"pu": Grant(frozenset({Role.POOL_USER}), ("other",))}
    )
    (answer,) = server.send(2, asap.HandleResolution(POOL))
    assert isinstance(answer, asap.HandleResolutionResponse) and answer.error is not None
    server.registrar.policy = first
    (answer,) = server.send(2, asap.HandleResolution(POOL))
    assert checked(answer).error is None


@st.composite
def kept_answer_scenarios(
    draw: st.DrawFn,
) -> tuple[type[SelectionPolicy], int, list[tuple[str, int, int]]]:
    cls, values = draw(st.sampled_from(POLICIES))
    steps = draw(
        st.lists(
            st.tuples(
                st.sampled_from(
                    ["register", "resolve", "resolve", "subscribe", "deregister", "takeover"]
                ),
                st.integers(1, 5),
                st.integers(1, 4),
            ),
            min_size=1,
            max_size=40,
        )
    )
    return cls, values, steps


def _play(
    scenario: tuple[type[SelectionPolicy], int, list[tuple[str, int, int]]],
) -> list[tuple[Message, bytes]]:
    """Every message the scenario's steps are answered with, and its bytes; each answer's
    PEs checked against what the handlespace holds when it is sent."""
    cls, values, steps = scenario
    server = Server()
    sent: list[tuple[Message, bytes]] = []
    for kind, pe, value in steps:
        if kind == "takeover":
            # The PEs' home moves (in place) to another server and back.
            other = SERVER ^ value
            server.handlespace.take_over(SERVER, other, now=server.now)
            server.handlespace.take_over(other, SERVER, now=server.now)
            continue
        if kind == "register":
            message: Message = asap.Registration(POOL, element(pe, cls(*([value] * values))))
            connection = 1
        elif kind == "deregister":
            message, connection = asap.Deregistration(POOL, pe), 1
        else:
            message, connection = asap.HandleResolution(POOL, kind == "subscribe", value), 2
        for answer in server.send(connection, message):
            if isinstance(answer, asap.HandleResolutionResponse) and answer.error is None:
                for pe_parameter in answer.pool_elements:
                    entry = server.handlespace.get(POOL, pe_parameter.pe_identifier)
                    assert entry is not None and entry.element is pe_parameter
            sent.append((answer, answer.encode()))
    return sent


@given(kept_answer_scenarios())
def test_kept_answers_are_the_answers_built_anew(
    scenario: tuple[type[SelectionPolicy], int, list[tuple[str, int, int]]],
) -> None:
    """With answers kept per pool (ordered policies), every answer, update and response is
    the one a registrar that builds each answer anew sends, field for field and byte for
    byte, through re-registrations with new values, de-registrations and takeovers that
    change PEs in place; and no answer carries a PE parameter the handlespace replaced."""
    kept = _play(scenario)
    with patch.object(resolution, "_ORDERED", frozenset()):
        built = _play(scenario)
    assert kept == built


def test_an_answer_is_kept_and_sent_again_until_a_pe_changes() -> None:
    """Round robin over one PE: the second answer is the first object again (encoded once);
    a re-registration with a new transport port gives a new answer with the new port."""
    server = Server()
    server.register(element(1, RoundRobinPolicy(), port=7000))
    (first,) = server.send(2, asap.HandleResolution(POOL))
    (second,) = server.send(2, asap.HandleResolution(POOL))
    assert second is first
    server.register(element(1, RoundRobinPolicy(), port=7001))
    (third,) = server.send(2, asap.HandleResolution(POOL))
    assert third is not first
    assert checked(third).pool_elements[0].user_transport == TcpTransport(
        7001, IPv4Address("127.0.0.1")
    )
