"""The IKE SA transition table (twisted_rserpool.ike.state) and the SA moving by it."""

from __future__ import annotations

import itertools

import pytest

from tests.ike.test_sa import Pair
from twisted_rserpool.ike.constants import ExchangeType
from twisted_rserpool.ike.sa import IkeSa
from twisted_rserpool.ike.state import (
    OUR_REQUESTS,
    PEER_REQUESTS,
    TRANSITIONS,
    IkeStateError,
    State,
    StateEvent,
    StateMachine,
)

LEGAL = [(s, e, t) for s, events in TRANSITIONS.items() for e, t in events.items()]
ILLEGAL = [
    (s, e) for s, e in itertools.product(State, StateEvent) if e not in TRANSITIONS.get(s, {})
]


def machine_in(state: State) -> StateMachine:
    """A machine brought to ``state`` through legal transitions only."""
    paths = {
        State.INIT_SENT: (State.INIT_SENT, ()),
        State.INIT_DONE: (State.INIT_DONE, ()),
        State.AUTH_SENT: (State.INIT_SENT, (StateEvent.INIT_ANSWERED,)),
        State.ESTABLISHED: (State.ESTABLISHED, ()),
        State.DELETING: (State.ESTABLISHED, (StateEvent.DELETE_SENT,)),
        State.CLOSED: (State.INIT_SENT, (StateEvent.FAILED,)),
    }
    initial, events = paths[state]
    machine = StateMachine(initial)
    for event in events:
        machine.process(event)
    assert machine.state == state
    return machine


def test_every_state_has_a_row() -> None:
    assert set(TRANSITIONS) == set(State) == set(PEER_REQUESTS) == set(OUR_REQUESTS)
    assert TRANSITIONS[State.CLOSED] == {}


@pytest.mark.parametrize(("state", "event", "target"), LEGAL, ids=lambda v: getattr(v, "name", v))
def test_legal_transitions(state: State, event: StateEvent, target: State) -> None:
    machine = machine_in(state)
    assert machine.may_process(event)
    assert machine.process(event) == target == machine.state


@pytest.mark.parametrize(("state", "event"), ILLEGAL, ids=lambda v: getattr(v, "name", v))
def test_illegal_transitions_raise(state: State, event: StateEvent) -> None:
    machine = machine_in(state)
    assert not machine.may_process(event)
    with pytest.raises(IkeStateError) as raised:
        machine.process(event)
    assert raised.value.state == state and raised.value.event == event
    assert machine.state == state  # unchanged


def test_only_initial_states_start() -> None:
    for state in (State.AUTH_SENT, State.DELETING, State.CLOSED):
        with pytest.raises(ValueError):
            StateMachine(state)


def test_every_state_reaches_closed_and_closed_is_final() -> None:
    reachable = {State.CLOSED}
    changed = True
    while changed:
        changed = False
        for state, events in TRANSITIONS.items():
            if state not in reachable and reachable & set(events.values()):
                reachable.add(state)
                changed = True
    assert reachable == set(State)


def test_request_tables() -> None:
    machine = machine_in(State.INIT_DONE)
    assert machine.peer_may_request(ExchangeType.IKE_AUTH)
    assert not machine.peer_may_request(ExchangeType.INFORMATIONAL)
    assert not machine.may_request(ExchangeType.INFORMATIONAL)
    deleting = machine_in(State.DELETING)
    assert deleting.may_request(ExchangeType.INFORMATIONAL)
    assert not deleting.may_request(ExchangeType.CREATE_CHILD_SA)
    assert deleting.peer_may_request(ExchangeType.CREATE_CHILD_SA)


def state_of(sa: IkeSa) -> State:
    """The SA's state, read through a call (mypy would narrow the property's type)."""
    return sa.state


def test_sa_walks_the_table() -> None:
    """A real exchange moves both SAs only by the table, to CLOSED at the end."""
    pair = Pair()
    spi = pair.cl.initiate(pair.gw.local_address, 0.0)
    client = pair.cl.get(spi)
    assert client is not None and state_of(client) == State.INIT_SENT
    for data, _ in pair.cl.datagrams_to_send():
        pair.gw.receive_datagram(data, pair.cl.local_address, 0.0)
    (gateway,) = list(pair.gw)
    assert state_of(gateway) == State.INIT_DONE and pair.gw.half_open == 1
    for data, _ in pair.gw.datagrams_to_send():
        pair.cl.receive_datagram(data, pair.gw.local_address, 0.0)
    assert state_of(client) == State.AUTH_SENT
    pair.pump(0.0)
    assert state_of(client) == state_of(gateway) == State.ESTABLISHED
    assert pair.gw.half_open == 0
    pair.cl.delete_ike_sa(spi, 1.0)
    assert state_of(client) == State.DELETING
    pair.pump(1.0)
    assert state_of(client) == state_of(gateway) == State.CLOSED
    with pytest.raises(IkeStateError):
        client.transition(StateEvent.AUTHENTICATED)
