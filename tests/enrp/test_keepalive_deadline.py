"""The keep-alive deadline the registrar keeps between changes is always the queue's own."""

from __future__ import annotations

import random
from ipaddress import IPv4Address

from hypothesis import given
from hypothesis import strategies as st

from twisted_rserpool.enrp.keepalive import KeepAlives
from twisted_rserpool.enrp.registrarstate import (
    ConnectionState,
    Registered,
    RegistrarConfig,
    RegistrarState,
)
from twisted_rserpool.handlespace import UNLIMITED, Handlespace
from twisted_rserpool.security.context import SecurityContext
from twisted_rserpool.wire.parameters import LeastUsedPolicy, PoolElementParameter, TcpTransport

POOL = b"echo"
KEYS = st.integers(1, 4).map(lambda pe: (POOL, pe))
OPERATIONS = st.lists(
    st.one_of(
        st.tuples(st.just("schedule"), KEYS),
        st.tuples(st.just("forget"), KEYS),
        st.tuples(st.just("probe"), KEYS),
        st.tuples(st.just("acknowledge"), KEYS),
        st.tuples(st.just("due"), st.just((POOL, 0))),
    ),
    max_size=30,
)


@given(OPERATIONS, st.lists(st.floats(0.0, 8.0), min_size=30, max_size=30))
def test_next_deadline_follows_every_change(
    operations: list[tuple[str, tuple[bytes, int]]], steps: list[float]
) -> None:
    """Through schedules, forgets, probes, acknowledgements and due keep-alives sent,
    KeepAlives.next_deadline equals its queue's earliest live deadline after each."""
    handlespace = Handlespace(UNLIMITED, rng=random.Random(1))
    state = RegistrarState(RegistrarConfig(1), handlespace, random.Random(2))
    security = SecurityContext(True, "TLSv1.3", "TLS_AES_128_GCM_SHA256", psk_identity="pe")
    state.connections[1] = ConnectionState(1, security, IPv4Address("127.0.0.1"), 4000)
    keep_alives = KeepAlives(state)
    now = 0.0
    for pe in range(1, 5):
        element = PoolElementParameter(
            pe, 1, 60, TcpTransport(7000, IPv4Address("127.0.0.1")), LeastUsedPolicy(pe)
        )
        handlespace.register(POOL, element, now=now, identity="pe")
        state.registered[(POOL, pe)] = Registered(1, "pe")
    for (operation, key), step in zip(operations, steps, strict=False):
        now += step
        if operation == "schedule":
            keep_alives.schedule(key, now)
        elif operation == "forget":
            keep_alives.forget(key)
        elif operation == "probe":
            keep_alives.probe(key, now, urgent=True)
        elif operation == "acknowledge":
            handlespace.keep_alive_acknowledged(*key)
        else:
            keep_alives.send_due(now)
        assert keep_alives.next_deadline() == keep_alives._due.next_deadline()
