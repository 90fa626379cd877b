"""Failover paths the other delivery tests do not walk, on the in-memory network and its
Clock: a second failover (the last cookie and what the second PE had not acknowledged go
to the third, marked), and a candidate that dies while the observers decide (the core
moves on to the next one)."""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred

from tests.asap.delivery_support import POOL, Lab, Observer
from tests.asap.test_delivery import onPe, session
from twisted_rserpool.asap import PoolElement, Session


def failedWithOneMessage(**options: Any) -> tuple[Lab, list[PoolElement], Session, PoolElement]:
    """Three PEs and a session (pool user ``options``) whose PE died with b"one" sent and
    not acknowledged: the lab, the PEs, the session and the PE that died."""
    lab = Lab()
    elements = [lab.pe(0xA), lab.pe(0xB), lab.pe(0xC)]
    s = session(lab.connect(lab.pu(**options), POOL))
    first, _ = onPe(lab, s, *elements)
    lab.hold(first)
    s.write(b"one")
    lab.network.run()
    lab.kill(first)
    return lab, elements, s, first


def test_a_second_failover_echoes_the_last_cookie_and_resends_what_the_second_pe_held() -> None:
    """PE 1 dies with a message unacknowledged: PE 2 gets it marked. PE 2 sends a cookie,
    then dies with another message unacknowledged: PE 3 gets PE 2's cookie first, then
    only that message, marked (PE 2 had acknowledged the first). Both PEs are reported
    unreachable, and the failovers are numbered 1 and 2, the second leaving PE 2."""
    lab, elements, s, first = failedWithOneMessage()
    second, _ = onPe(lab, s, *elements)
    worker = lab.worker(second.peIdentifier)
    assert [(m.data, m.resent) for m in worker.messages] == [(b"one", True)]
    assert worker.transport is not None
    worker.transport.sendCookie(b"state-2")  # type: ignore[attr-defined]
    lab.network.run()
    assert s.cookie == b"state-2"
    lab.hold(second)
    s.write(b"two")
    lab.network.run()
    lab.kill(second)
    third, _ = onPe(lab, s, *elements)
    assert third not in (first, second)
    last = lab.worker(third.peIdentifier)
    assert last.cookies == [b"state-2"]
    assert [(m.data, m.resent) for m in last.messages] == [(b"two", True)]
    one, two = s.failovers
    assert (one.number, two.number) == (1, 2)
    assert two.old_element == one.new_element and two.resend == 1
    assert lab.registry.unreachable == [first.peIdentifier, second.peIdentifier]
    assert not s.failingOver and not s.closed


def test_a_candidate_that_dies_during_the_decision_is_skipped() -> None:
    """While the observers decide about PE 2 it dies: when they say yes, the session does
    not resume on it but reports it, selects PE 3, asks again and resumes there with the
    message PE 1 had not acknowledged."""
    answer: Deferred[bool] = Deferred()
    observer = Observer(answer)
    lab, elements, s, first = failedWithOneMessage(failoverObservers=[observer])
    [asked] = observer.events
    [candidate] = [e for e in elements if e.peIdentifier == asked.new_element.pe_identifier]
    lab.kill(candidate)
    observer.answer = True  # the next question is answered at once
    answer.callback(True)
    lab.network.run()
    assert len(observer.events) == 2
    [event] = s.failovers
    [third] = [e for e in elements if e not in (first, candidate)]
    assert event.new_element.pe_identifier == third.peIdentifier
    assert [(m.data, m.resent) for m in lab.worker(third.peIdentifier).messages] == [(b"one", True)]
    assert lab.workers.get(candidate.peIdentifier, []) == []  # nothing reached it
    assert lab.registry.unreachable == [first.peIdentifier, candidate.peIdentifier]
