"""Three in-memory ENRP servers converge whatever the order messages arrive in (hypothesis)."""

from __future__ import annotations

import random

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from tests.enrp.test_peers import POOL, Network, element

#: (kind, server index, PE identifier); kinds: register, deregister, deliver some, lose a message
operations = st.lists(
    st.tuples(
        st.sampled_from(["register", "deregister", "deliver", "lose", "tick"]),
        st.integers(0, 2),
        st.integers(1, 12),
    ),
    max_size=60,
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(operations, st.integers(0, 2**32 - 1))
@example([("register", 0, 1), ("deliver", 0, 1), ("deliver", 0, 10), ("lose", 0, 1)], 0)
def test_servers_converge(ops: list[tuple[str, int, int]], seed: int) -> None:
    """Registrations and deregistrations at random servers, messages interleaved across
    links in random order and some lost: after a few heartbeats every server holds the
    same PEs with the same homes, and every checksum agrees."""
    rng = random.Random(seed)
    net = Network(rng=rng)
    nodes = [
        net.add(server, peer_heartbeat_cycle=1.0, max_time_last_heard=60) for server in (1, 2, 3)
    ]
    net.mesh(*nodes)
    expected: dict[tuple[bytes, int], int] = {}
    for kind, index, pe in ops:
        node = nodes[index]
        if kind == "register":
            home = expected.get((POOL, pe))
            if home is not None and home != node.server:
                continue  # a PE is registered at one server at a time
            node.register(pe, net.now)
            expected[(POOL, pe)] = node.server
        elif kind == "deregister":
            if expected.get((POOL, pe)) == node.server:
                node.deregister(pe)
                del expected[(POOL, pe)]
        elif kind == "deliver":
            busy = [key for key, queue in net.queues.items() if queue]
            for _ in range(pe):
                if busy:
                    net.deliver_one(rng.choice(busy))
                    busy = [key for key, queue in net.queues.items() if queue]
        elif kind == "lose":
            busy = [key for key, queue in net.queues.items() if queue]
            if busy:
                net.queues[rng.choice(busy)].pop()  # lost in a broken path
        else:
            net.run(0.3)
        net.flush(node)
    # A lost handle-table page is recovered when the table session expires
    # (2 x MAX-TIME-NO-RESPONSE, 10 s here) and the next presence shows the checksum gap.
    net.run(20.0)
    for node in nodes:
        assert node.pes() == expected, node.server
        for other in nodes:
            assert node.handlespace.pe_checksum(other.server) == other.handlespace.pe_checksum(
                other.server
            )


def test_partitioned_servers_converge_after_reconnection() -> None:
    """Servers separated (no takeover: long MAX-TIME-LAST-HEARD) and reconnected converge."""
    net = Network()
    a, b, c = (net.add(s, peer_heartbeat_cycle=1.0, max_time_last_heard=100) for s in (1, 2, 3))
    net.mesh(a, b, c)
    net.deliver()
    # Cut c off from a and b.
    for key in [k for k in list(net.far) if k[0] == 3]:
        net.disconnect(*key)
    a.register(1, net.now)
    c.register(2, net.now)
    net.flush(a)
    net.flush(c)
    b.register(3, net.now, pool=b"other")
    net.flush(b)
    # A lost handle-table page is recovered when the table session expires
    # (2 x MAX-TIME-NO-RESPONSE, 10 s here) and the next presence shows the checksum gap.
    net.run(20.0)
    assert (POOL, 2) not in a.pes()
    net.connect(c, a)
    net.connect(c, b)
    # A lost handle-table page is recovered when the table session expires
    # (2 x MAX-TIME-NO-RESPONSE, 10 s here) and the next presence shows the checksum gap.
    net.run(20.0)
    want = {(POOL, 1): 1, (POOL, 2): 3, (b"other", 3): 2}
    assert a.pes() == b.pes() == c.pes() == want


def test_pe_element_helper_round_trips() -> None:
    """The helper PE is a valid PE parameter (sanity of the harness)."""
    assert element(1, 2).home_server_identifier == 2


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(st.tuples(st.integers(0, 2), st.integers(1, 12)), max_size=20),
    st.integers(0, 2),
    st.integers(0, 2**32 - 1),
)
def test_exactly_one_survivor_takes_over(
    registrations: list[tuple[int, int]], victim: int, seed: int
) -> None:
    """Whatever was registered where, after a server dies both survivors agree that every
    PE of the dead server belongs to one and the same survivor, and the others kept theirs."""
    rng = random.Random(seed)
    net = Network(rng=rng)
    nodes = [
        net.add(server, peer_heartbeat_cycle=0.5, max_time_last_heard=1.5, max_time_no_response=1)
        for server in (1, 2, 3)
    ]
    net.mesh(*nodes)
    homes: dict[tuple[bytes, int], int] = {}
    for index, pe in registrations:
        if (POOL, pe) not in homes:
            nodes[index].register(pe, net.now)
            net.flush(nodes[index])
            homes[(POOL, pe)] = nodes[index].server
    net.run(rng.uniform(0.0, 1.0))
    dead = nodes[victim]
    net.kill(dead)
    # A lost handle-table page is recovered when the table session expires
    # (2 x MAX-TIME-NO-RESPONSE, 10 s here) and the next presence shows the checksum gap.
    net.run(20.0)
    survivors = [node for node in nodes if node is not dead]
    views = [node.pes() for node in survivors]
    assert views[0] == views[1]
    assert set(views[0]) == set(homes)
    new_homes = {views[0][key] for key, home in homes.items() if home == dead.server}
    assert len(new_homes) <= 1 and not new_homes & {dead.server}
    for key, home in homes.items():
        if home != dead.server:
            assert views[0][key] == home
    taken = sum(node.core.counters["takeovers_completed"] for node in survivors)
    assert taken == 1
