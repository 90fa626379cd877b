"""The ENRP server's hot path (issue 12): the shortcuts for the common case keep every
rule of the general one. Subclass hooks are still called, a failing action is logged
and the next one carried out, keep-alive messages are reused per PE and forgotten with it,
and the core without peers settles exactly as the general loop does."""

from __future__ import annotations

import random
from ipaddress import IPv4Address
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet.task import Clock
from twisted.logger import capturedLogs

from tests.enrp.test_service import SERVER, Client, make_server, registration
from twisted_rserpool.enrp.core import CoreAction, EnrpCore
from twisted_rserpool.enrp.registrar import Registrar, RegistrarConfig, Send
from twisted_rserpool.enrp.service import ASAPServerProtocol
from twisted_rserpool.handlespace import Handlespace
from twisted_rserpool.security.authorization import AuthorizationPolicy
from twisted_rserpool.security.context import INSECURE
from twisted_rserpool.wire import asap
from twisted_rserpool.wire.message import Message
from twisted_rserpool.wire.parameters import PoolElementParameter, RoundRobinPolicy, TcpTransport


def test_failing_send_is_logged_and_the_next_action_carried_out() -> None:
    """A Send whose sendAsap raises is logged as before ("Could not carry out Send"), and
    the actions after it still run."""
    clock = Clock()
    server = make_server(clock, secure=False)
    first, second = Client(server, 41000), Client(server, 41001)

    def broken(message: Any) -> Any:
        raise RuntimeError("broken transport")

    first.protocol.sendAsap = broken  # type: ignore[method-assign]
    numbers = [first.protocol.connectionNumber, second.protocol.connectionNumber]
    assert None not in numbers
    answer = asap.RegistrationResponse(b"echo", 7)
    with capturedLogs() as events:
        server._execute([Send(n, answer) for n in numbers])  # type: ignore[arg-type]
    failures = [e for e in events if "log_failure" in e]
    assert [e["action"] for e in failures] == ["Send"]
    assert first.received() == []
    assert second.received() == [answer]


def test_send_to_a_lost_or_unknown_connection_is_dropped() -> None:
    """A Send for a connection that closed, or that the server never had, does nothing."""
    clock = Clock()
    server = make_server(clock, secure=False)
    client = Client(server)
    number = client.protocol.connectionNumber
    assert number is not None
    client.transport.loseConnection()  # type: ignore[no-untyped-call]
    client.transport.clear()  # type: ignore[no-untyped-call]
    with capturedLogs() as events:
        server._execute([Send(number, asap.RegistrationResponse(b"echo", 7))])
        server._execute([Send(10_000, asap.RegistrationResponse(b"echo", 7))])
    assert client.transport.value() == b""  # type: ignore[no-untyped-call]
    assert not [e for e in events if "log_failure" in e]


def test_overridden_send_asap_is_called() -> None:
    """A protocol subclass's sendAsap sees every message the server sends."""
    seen: list[Message] = []

    class Watching(ASAPServerProtocol):
        def sendAsap(self, message: Any) -> Any:
            seen.append(message)
            return super().sendAsap(message)

    clock = Clock()
    server = make_server(clock, secure=False)
    server.factory.protocol = Watching
    client = Client(server)
    client.send(registration())
    assert seen == [asap.RegistrationResponse(b"echo", 7)]
    assert client.received() == seen


def test_overridden_asap_message_received_is_called() -> None:
    """A subclass's asapMessageReceived gets each message instead of the registrar."""
    seen: list[Message] = []

    class Filtering(ASAPServerProtocol):
        def asapMessageReceived(self, message: asap.AsapMessage) -> None:
            seen.append(message)
            if not isinstance(message, asap.Registration):
                super().asapMessageReceived(message)

    clock = Clock()
    server = make_server(clock, secure=False)
    server.factory.protocol = Filtering
    client = Client(server)
    client.send(registration())
    client.send(asap.HandleResolution(b"echo"))
    assert seen == [registration(), asap.HandleResolution(b"echo")]
    [answer] = client.received()
    assert isinstance(answer, asap.HandleResolutionResponse)
    assert answer.error is not None  # never registered: unknown pool


def test_keep_alive_message_is_reused_per_pe_and_forgotten_with_it() -> None:
    """Every keep-alive to a PE is the same (immutable) message; the registrar keeps none
    for a PE that is gone."""
    clock = Clock()
    server = make_server(clock, secure=False, keep_alive_interval=4.0, keep_alive_timeout=2.0)
    client = Client(server)
    client.send(registration())
    client.received()
    sent: list[Message] = []
    protocol = client.protocol
    original = protocol.sendAsap

    def recording(message: Any) -> Any:
        sent.append(message)
        return original(message)

    protocol.sendAsap = recording  # type: ignore[method-assign]
    for _ in range(2):
        clock.advance(6.0)
        client.send(asap.EndpointKeepAliveAck(b"echo", 7))
    expected = asap.EndpointKeepAlive(SERVER, b"echo", pe_identifier=7)
    assert sent == [expected, expected]
    assert sent[0] is sent[1]
    keep_alives = server.registrar._keep_alives
    assert list(keep_alives._messages) == [(b"echo", 7)]
    client.send(asap.Deregistration(b"echo", 7))
    assert keep_alives._messages == {}


class _GeneralCore(EnrpCore):
    """The core as it was: every message through the general settling loop."""

    def asap_message_received(self, number: int, message: Message, now: float) -> list[CoreAction]:
        actions: list[CoreAction] = []
        actions.extend(self.registrar.message_received(number, message, now))
        return self._general_settle(actions)

    def _general_settle(self, actions: list[CoreAction]) -> list[CoreAction]:
        while True:
            more: list[CoreAction] = list(self.registrar.take_actions())
            if not more:
                return actions
            actions.extend(more)


class _LateRegistrar(Registrar):
    """Queues one more answer after the actions it returns, for the core to collect."""

    def message_received(self, number: int, message: Message, now: float) -> list[Any]:
        actions = super().message_received(number, message, now)
        if isinstance(message, asap.EndpointKeepAliveAck):
            self._state.send(
                number, asap.DeregistrationResponse(message.pool_handle, message.pe_identifier)
            )
        return actions


def _core(general: bool) -> EnrpCore:
    registrar = _LateRegistrar(
        RegistrarConfig(SERVER, secure=False, max_subscriptions_per_connection=2),
        Handlespace(rng=random.Random(1)),
        AuthorizationPolicy(),
        rng=random.Random(2),
    )
    core = (_GeneralCore if general else EnrpCore)(registrar)
    for number in (1, 2, 3):
        core.asap_connection_ready(number, INSECURE, ("127.0.0.1", 40000 + number))
    return core


_POOLS = [b"a", b"b", b"c"]


@st.composite
def _messages(draw: st.DrawFn) -> tuple[int, Message]:
    number = draw(st.sampled_from([1, 2, 3]))
    pool = draw(st.sampled_from(_POOLS))
    pe = draw(st.integers(1, 4))
    kind = draw(st.sampled_from(["register", "deregister", "resolve", "ack", "error"]))
    message: Message
    if kind == "register":
        element = PoolElementParameter(
            pe,
            0,
            draw(st.sampled_from([5, 30])),
            TcpTransport(7000 + pe, IPv4Address(f"127.0.0.{number}")),
            RoundRobinPolicy(),
        )
        message = asap.Registration(pool, element)
    elif kind == "deregister":
        message = asap.Deregistration(pool, pe)
    elif kind == "resolve":
        message = asap.HandleResolution(pool, subscribe=draw(st.booleans()))
    elif kind == "ack":
        message = asap.EndpointKeepAliveAck(pool, pe)
    else:
        message = asap.EndpointKeepAlive(SERVER, pool, pe_identifier=pe)  # unexpected here
    return number, message


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(_messages(), st.floats(0.0, 8.0)), max_size=30))
def test_core_without_peers_answers_as_the_general_loop(
    steps: list[tuple[tuple[int, Message], float]],
) -> None:
    """Messages, timers and closed connections give the same actions, in the same order,
    with the shortcut for a core without peers as with the general settling loop."""
    fast, general = _core(general=False), _core(general=True)
    now = 0.0
    for (number, message), later in steps:
        now += later
        assert fast.asap_message_received(number, message, now) == (
            general.asap_message_received(number, message, now)
        )
        assert fast.handle_timer(now) == general.handle_timer(now)
        assert fast.next_deadline() == general.next_deadline()
    assert fast.asap_connection_lost(1, now) == general.asap_connection_lost(1, now)
    assert fast.registrar.counters == general.registrar.counters
