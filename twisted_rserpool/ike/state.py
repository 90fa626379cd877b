"""The IKE SA life cycle as an executable table (RFC 7296 sections 1.1-1.4, 2.18, RFC 5685).

The rules, in the manner of h11's ``_state.py``:

    initiator:  INIT_SENT --INIT_ANSWERED--> AUTH_SENT --AUTHENTICATED--> ESTABLISHED
    responder:  INIT_DONE (half-open) --AUTHENTICATED--> ESTABLISHED
    rekeyed:    a successor SA starts in ESTABLISHED
    both:       ESTABLISHED --DELETE_SENT--> DELETING
                ESTABLISHED, DELETING --DELETED--> CLOSED
                INIT_SENT, INIT_DONE, AUTH_SENT, DELETING --FAILED--> CLOSED
                INIT_SENT --REDIRECTED--> CLOSED  (RFC 5685: N(REDIRECT) in IKE_SA_INIT)

An IKE_AUTH answered with N(REDIRECT) is AUTHENTICATED as well (the gateway's AUTH was
verified; RFC 5685 section 6): the client deletes it at once, the gateway after
``redirect_delete_timeout``. Any other (state, event) pair raises ``IkeStateError``: it is
a bug of ours, never something a peer can cause, since the exchanges check what the peer
sent before they move the state.

Which requests each state accepts is a table too: ``PEER_REQUESTS`` for requests from the
peer (others are dropped before they are decrypted) and ``OUR_REQUESTS`` for ours.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import Enum

from twisted_rserpool.ike.constants import ExchangeType

__all__ = [
    "OUR_REQUESTS",
    "PEER_REQUESTS",
    "TRANSITIONS",
    "IkeStateError",
    "State",
    "StateEvent",
    "StateMachine",
]


class State(Enum):
    """Where an IKE SA is in its life."""

    INIT_SENT = "INIT_SENT"
    INIT_DONE = "INIT_DONE"
    AUTH_SENT = "AUTH_SENT"
    ESTABLISHED = "ESTABLISHED"
    DELETING = "DELETING"
    CLOSED = "CLOSED"


class StateEvent(Enum):
    """What moves an IKE SA from one state to the next."""

    INIT_ANSWERED = "INIT_ANSWERED"
    """Initiator: a valid IKE_SA_INIT response arrived and IKE_AUTH is sent."""
    AUTHENTICATED = "AUTHENTICATED"
    """IKE_AUTH completed: the peer's AUTH was verified."""
    DELETE_SENT = "DELETE_SENT"
    """We sent an INFORMATIONAL Delete of the IKE SA and wait for its answer."""
    DELETED = "DELETED"
    """An established SA ends: deleted by either side, rekeyed away, or unreachable."""
    FAILED = "FAILED"
    """The SA ends before it was established (or while we delete it, when aborted)."""
    REDIRECTED = "REDIRECTED"
    """Initiator: the IKE_SA_INIT response redirected us to another gateway."""


TRANSITIONS: Mapping[State, Mapping[StateEvent, State]] = {
    State.INIT_SENT: {
        StateEvent.INIT_ANSWERED: State.AUTH_SENT,
        StateEvent.FAILED: State.CLOSED,
        StateEvent.REDIRECTED: State.CLOSED,
    },
    State.INIT_DONE: {
        StateEvent.AUTHENTICATED: State.ESTABLISHED,
        StateEvent.FAILED: State.CLOSED,
    },
    State.AUTH_SENT: {
        StateEvent.AUTHENTICATED: State.ESTABLISHED,
        StateEvent.FAILED: State.CLOSED,
    },
    State.ESTABLISHED: {
        StateEvent.DELETE_SENT: State.DELETING,
        StateEvent.DELETED: State.CLOSED,
    },
    State.DELETING: {
        StateEvent.DELETED: State.CLOSED,
        StateEvent.FAILED: State.CLOSED,
    },
    State.CLOSED: {},
}
"""Every legal (state, event) -> next state."""

INITIAL_STATES = frozenset((State.INIT_SENT, State.INIT_DONE, State.ESTABLISHED))
"""Where an SA may start: initiator, responder, successor of a rekey."""

PEER_REQUESTS: Mapping[State, frozenset[int]] = {
    State.INIT_SENT: frozenset(),
    State.INIT_DONE: frozenset((ExchangeType.IKE_AUTH,)),
    State.AUTH_SENT: frozenset(),
    # An unknown exchange type is answered INVALID_SYNTAX; IKE_AUTH is a late duplicate.
    State.ESTABLISHED: frozenset((ExchangeType.INFORMATIONAL, ExchangeType.CREATE_CHILD_SA)),
    # CREATE_CHILD_SA is answered TEMPORARY_FAILURE (RFC 7296 section 2.25).
    State.DELETING: frozenset((ExchangeType.INFORMATIONAL, ExchangeType.CREATE_CHILD_SA)),
    State.CLOSED: frozenset(),
}
"""The exchanges whose requests from the peer each state processes."""

OUR_REQUESTS: Mapping[State, frozenset[int]] = {
    State.INIT_SENT: frozenset((ExchangeType.IKE_SA_INIT,)),
    State.INIT_DONE: frozenset(),
    State.AUTH_SENT: frozenset((ExchangeType.IKE_AUTH,)),
    State.ESTABLISHED: frozenset((ExchangeType.INFORMATIONAL, ExchangeType.CREATE_CHILD_SA)),
    State.DELETING: frozenset((ExchangeType.INFORMATIONAL,)),
    State.CLOSED: frozenset(),
}
"""The exchanges each state may start."""


class IkeStateError(Exception):
    """An IKE SA was asked to make a transition the table does not have (a local bug)."""

    def __init__(self, state: State, event: StateEvent) -> None:
        super().__init__(f"no transition from {state.name} on {event.name}")
        self.state = state
        self.event = event


class StateMachine:
    """The current state of one IKE SA, moved only by the table's events."""

    def __init__(self, initial: State) -> None:
        if initial not in INITIAL_STATES:
            raise ValueError(f"an IKE SA cannot start in {initial.name}")
        self.state = initial

    def process(self, event: StateEvent) -> State:
        """Apply ``event``; returns the new state or raises IkeStateError."""
        try:
            self.state = TRANSITIONS[self.state][event]
        except KeyError:
            raise IkeStateError(self.state, event) from None
        return self.state

    def may_process(self, event: StateEvent) -> bool:
        """Whether ``event`` is legal now."""
        return event in TRANSITIONS[self.state]

    def peer_may_request(self, exchange: int) -> bool:
        """Whether a request of ``exchange`` from the peer is processed now."""
        return exchange in PEER_REQUESTS[self.state]

    def may_request(self, exchange: int) -> bool:
        """Whether we may start an ``exchange`` now."""
        return exchange in OUR_REQUESTS[self.state]
