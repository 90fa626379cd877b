"""The ENRP server's timer after each input: the core's next deadline, asked only when a
deadline queue changed (issue 12: not after every message)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet.task import Clock

from tests.enrp.test_service import Client, make_server, registration
from twisted_rserpool.enrp.service import ENRPServer
from twisted_rserpool.wire import asap


class Asked:
    """Counts the calls of a core's ``next_deadline``."""

    def __init__(self, server: ENRPServer) -> None:
        self.calls = 0
        self._nextDeadline = server.core.next_deadline
        server.core.next_deadline = self  # type: ignore[method-assign]

    def __call__(self) -> float | None:
        self.calls += 1
        return self._nextDeadline()


def test_a_resolution_does_not_ask_the_core() -> None:
    """A handle resolution changes no deadline: the timer stays, the core is not asked;
    a registration whose life ends before anything else is."""
    clock = Clock()
    server = make_server(clock, secure=False, keep_alive_interval=4.0, keep_alive_timeout=2.0)
    client = Client(server)
    client.send(registration(7))
    client.received()
    asked = Asked(server)
    for _ in range(5):
        client.send(asap.HandleResolution(b"echo"))
    answers = client.received()
    assert len(answers) == 5 and all(isinstance(a, asap.HandleResolutionResponse) for a in answers)
    assert asked.calls == 0
    # A registration life shorter than any deadline so far moves the earliest one.
    element = replace(registration(8).pool_element, registration_life=1)
    client.send(asap.Registration(b"echo", element))
    assert asked.calls == 1
    # The timer still works: keep-alives go out when due.
    clock.advance(6.5)  # the interval, +/- 50 %
    assert asap.EndpointKeepAlive(0x0E0E0E0E, b"echo", pe_identifier=7) in client.received()


def test_a_restarted_server_arms_its_timer() -> None:
    clock = Clock()
    server = make_server(clock, secure=False, keep_alive_interval=4.0, keep_alive_timeout=2.0)
    client = Client(server)
    client.send(registration(7))
    server.stopService()
    assert server._timer.deadline is None
    server.startService()
    assert server._timer.deadline == server.core.next_deadline()


INPUTS = st.lists(
    st.one_of(
        # Connection, PE, registration life (0: the server's maximum).
        st.tuples(st.just("register"), st.integers(0, 2), st.integers(1, 4), st.integers(0, 2)),
        st.tuples(st.just("deregister"), st.integers(0, 2), st.integers(1, 4)),
        st.tuples(st.just("resolve"), st.integers(0, 2)),
        st.tuples(st.just("ack"), st.integers(0, 2), st.integers(1, 4)),
        st.tuples(st.just("close"), st.integers(0, 2)),
        st.tuples(st.just("advance"), st.sampled_from([0.0, 0.3, 1.0, 2.5, 6.0])),
    ),
    max_size=40,
)


@settings(max_examples=60, deadline=None)
@given(INPUTS)
def test_the_timer_has_the_cores_deadline_after_every_input(inputs: list[Any]) -> None:
    """Whatever PEs and PUs send, close or leave unanswered and however time passes, the
    timer's deadline after each input is the one the core gives when asked."""
    clock = Clock()
    clock.advance(1000)
    server = make_server(
        clock,
        secure=False,
        keep_alive_interval=2.0,
        keep_alive_timeout=1.0,
        max_registration_life=3,
    )
    clients: dict[int, Client] = {}

    def client(number: int) -> Client:
        if number not in clients:
            clients[number] = Client(server, port=41000 + number)
        return clients[number]

    for step in inputs:
        kind = step[0]
        if kind == "register":
            _, number, pe, life = step
            message = registration(100 * number + pe)
            if life:  # else 30 s, which the server shortens to 3
                element = replace(message.pool_element, registration_life=life)
                message = asap.Registration(b"echo", element)
            client(number).send(message)
        elif kind == "deregister":
            client(step[1]).send(asap.Deregistration(b"echo", 100 * step[1] + step[2]))
        elif kind == "resolve":
            client(step[1]).send(asap.HandleResolution(b"echo"))
        elif kind == "ack":
            client(step[1]).send(asap.EndpointKeepAliveAck(b"echo", 100 * step[1] + step[2]))
        elif kind == "close":
            closing = clients.pop(step[1], None)
            if closing is not None:
                closing.transport.loseConnection()  # type: ignore[no-untyped-call]
        else:
            clock.advance(step[1])
        for each in clients.values():
            if each.transport.value():  # type: ignore[no-untyped-call]
                each.received()
        assert server._timer.deadline == server.core.next_deadline(), step
