"""The handlespace's next deadline stays exact while keep-alives are sent and answered: an
answer to a keep-alive whose deadline is not the earliest keeps the cached deadline, one
that may be the earliest (equal deadlines included) makes it be computed again, and
expire() with nothing due removes nothing."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from tests.handlespace.support import element
from twisted_rserpool.handlespace import Handlespace, PoolElementRemoved
from twisted_rserpool.wire.parameters import RoundRobinPolicy

POOL = b"pool"


def _handlespace(pes: int, life: int = 3600) -> Handlespace:
    handlespace = Handlespace(rng=random.Random(1))
    for pe in range(1, pes + 1):
        handlespace.register(POOL, element(pe, RoundRobinPolicy(), life=life), now=0.0)
    return handlespace


def _earliest(handlespace: Handlespace) -> float | None:
    """The earliest deadline from the entries themselves (no cache)."""
    deadlines = [
        when
        for entry in handlespace.elements()
        for when in (entry.expires_at, entry.keep_alive_deadline)
        if when is not None
    ]
    return min(deadlines) if deadlines else None


def test_answer_to_a_later_keep_alive_keeps_the_earliest() -> None:
    handlespace = _handlespace(2)
    handlespace.keep_alive_sent(POOL, 1, now=1.0, timeout=5.0)
    handlespace.keep_alive_sent(POOL, 2, now=2.0, timeout=5.0)
    assert handlespace.next_deadline() == 6.0
    handlespace.keep_alive_acknowledged(POOL, 2)
    assert handlespace.next_deadline() == 6.0
    handlespace.keep_alive_acknowledged(POOL, 1)
    assert handlespace.next_deadline() == 3600.0


def test_answer_to_the_earliest_keep_alive_moves_it() -> None:
    handlespace = _handlespace(2)
    handlespace.keep_alive_sent(POOL, 1, now=1.0, timeout=5.0)
    handlespace.keep_alive_sent(POOL, 2, now=2.0, timeout=5.0)
    assert handlespace.next_deadline() == 6.0
    handlespace.keep_alive_acknowledged(POOL, 1)
    assert handlespace.next_deadline() == 7.0


def test_answers_to_keep_alives_with_equal_deadlines() -> None:
    handlespace = _handlespace(3)
    for pe in (1, 2, 3):
        handlespace.keep_alive_sent(POOL, pe, now=1.0, timeout=5.0)
    assert handlespace.next_deadline() == 6.0
    handlespace.keep_alive_acknowledged(POOL, 2)
    handlespace.keep_alive_acknowledged(POOL, 1)
    assert handlespace.next_deadline() == 6.0
    handlespace.keep_alive_acknowledged(POOL, 3)
    assert handlespace.next_deadline() == 3600.0


def test_expire_before_anything_is_due_removes_nothing() -> None:
    handlespace = _handlespace(2, life=10)
    handlespace.keep_alive_sent(POOL, 1, now=1.0, timeout=5.0)
    assert handlespace.expire(5.9) == []
    assert len(handlespace) == 2
    [removed] = handlespace.expire(6.0)
    assert isinstance(removed, PoolElementRemoved) and removed.element.pe_identifier == 1
    assert handlespace.next_deadline() == 10.0


_STEPS = st.lists(
    st.tuples(
        st.sampled_from(["sent", "acknowledged", "expire", "register"]),
        st.integers(1, 4),
        st.sampled_from([0.0, 0.5, 1.0, 3.0]),
        st.sampled_from([1.0, 2.0, 4.0]),
    ),
    max_size=60,
)


@settings(max_examples=200, deadline=None)
@given(_STEPS)
def test_next_deadline_is_always_the_earliest(
    steps: list[tuple[str, int, float, float]],
) -> None:
    """After every keep-alive sent, answer, re-registration and expiry, next_deadline()
    is the earliest deadline of the entries, and expire() removes exactly the PEs due."""
    handlespace = _handlespace(4, life=20)
    now = 0.0
    for kind, pe, later, timeout in steps:
        now += later
        if kind == "sent":
            handlespace.keep_alive_sent(POOL, pe, now=now, timeout=timeout)
        elif kind == "acknowledged":
            handlespace.keep_alive_acknowledged(POOL, pe)
        elif kind == "register":
            handlespace.register(POOL, element(pe, RoundRobinPolicy(), life=20), now=now)
        else:
            due = {
                entry.element.pe_identifier
                for entry in handlespace.elements()
                if any(
                    w is not None and w <= now
                    for w in (entry.expires_at, entry.keep_alive_deadline)
                )
            }
            removed = {
                event.element.pe_identifier
                for event in handlespace.expire(now)
                if isinstance(event, PoolElementRemoved)
            }
            assert removed == due
        assert handlespace.next_deadline() == _earliest(handlespace)
