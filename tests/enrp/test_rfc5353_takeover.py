"""RFC 5353 3.5 takeover rules on the sans-IO peer core with injected time: a server
cut off from its peers never takes anyone over (every live peer's acknowledgement and a
majority of the known servers), the conflict rule of 3.5.1 rule 2 against a peer that
follows the RFC, and the majority that completes despite a silent peer."""

from __future__ import annotations

from typing import Any

from tests.enrp.test_peers import POOL, Network, Node, tls
from twisted_rserpool.enrp.peers import PeerConfig, PeerCore, PeerState, SendEnrp
from twisted_rserpool.handlespace import Handlespace
from twisted_rserpool.security.authorization import AuthorizationPolicy
from twisted_rserpool.wire import enrp

TIMERS: dict[str, Any] = {
    "peer_heartbeat_cycle": 0.5,
    "max_time_last_heard": 1.5,
    "max_time_no_response": 1.0,
}


class Partitioned(Network):
    """A network whose links to and from the servers in :attr:`cut` drop every message
    while staying open (a blackhole, not a closed connection)."""

    def __init__(self) -> None:
        super().__init__()
        self.cut: set[int] = set()
        self.dropped = 0

    def deliver_one(self, key: tuple[int, int]) -> None:
        far = self.far.get(key)
        if far is not None and (key[0] in self.cut or far[0] in self.cut):
            self.queues[key].popleft()
            self.dropped += 1
            return
        super().deliver_one(key)


def state(core: PeerCore, server: int) -> PeerState:
    return core.peers[server].state


def pool(count: int) -> tuple[Partitioned, list[Node]]:
    net = Partitioned()
    nodes = [net.add(server, **TIMERS) for server in range(1, count + 1)]
    net.mesh(*nodes)
    for node in nodes:
        node.register(0x100 + node.server, net.now)
        net.flush(node)
    net.run(1.0)
    return net, nodes


def test_a_blackholed_server_takes_over_nobody() -> None:
    """Server 1's links are blackholed for 15 s while every server runs: it declares both
    others dead but never gets a majority, so it completes no takeover and sends no H
    keep-alive; the majority takes server 1 over, and its own PEs stay where they are."""
    net, (a, b, c) = pool(3)
    net.cut.add(a.server)
    net.run(15.0)
    assert net.dropped > 0
    assert a.core.counters["peers_dead"] >= 2
    assert a.core.counters["takeovers_no_quorum"] >= 2
    assert a.core.counters["takeovers_completed"] == 0
    assert a.keep_alives == []
    # A still lists its peers and their PEs as theirs.
    assert a.pes()[(POOL, 0x102)] == 2 and a.pes()[(POOL, 0x103)] == 3
    # The majority (2 of 3) takes server 1 over: the higher identifier wins.
    assert c.core.counters["takeovers_completed"] == 1
    assert b.core.counters["takeovers_completed"] == 0
    assert b.pes() == c.pes() == {(POOL, 0x101): 3, (POOL, 0x102): 2, (POOL, 0x103): 3}
    assert [k.pe_identifier for k in c.keep_alives] == [0x101]


def test_a_minority_of_two_in_five_takes_over_nobody() -> None:
    """Servers 1 and 2 are cut off from 3, 4 and 5 (but not from each other): each side
    sees the other dead. The two acknowledge each other's takeovers, and still 2 of 5 is
    no majority; the three complete theirs."""
    net = Partitioned()
    nodes = [net.add(server, **TIMERS) for server in range(1, 6)]
    net.mesh(*nodes)
    net.run(1.0)
    minority, majority = nodes[:2], nodes[2:]

    def deliver_one(key: tuple[int, int]) -> None:
        far = net.far.get(key)
        if far is not None and (key[0] <= 2) != (far[0] <= 2):
            net.queues[key].popleft()
            return
        Network.deliver_one(net, key)

    net.deliver_one = deliver_one  # type: ignore[method-assign]
    net.run(12.0)
    assert sum(n.core.counters["takeovers_completed"] for n in minority) == 0
    assert all(n.keep_alives == [] for n in minority)
    assert sum(n.core.counters["takeovers_no_quorum"] for n in minority) >= 3
    # Each of servers 1 and 2 was taken over exactly once by the majority.
    assert sum(n.core.counters["takeovers_completed"] for n in majority) == 2
    for node in majority:
        assert set(node.core.peers) == {3, 4, 5} - {node.server}


def test_the_majority_completes_without_a_silent_peer() -> None:
    """Five servers, one dies and one hangs: the three that answer are a majority of the
    five known, so the takeover of the dead one completes at expiry."""
    net = Network()
    nodes = [net.add(server, takeover_expiry=2.0, **TIMERS) for server in range(1, 6)]
    net.mesh(*nodes)
    dead, hung = nodes[4], nodes[0]
    dead.register(0x55, net.now)
    net.flush(dead)
    net.run(1.0)
    net.kill(dead)
    hung.alive = False
    net.run(8.0)
    live = nodes[1:4]
    assert sum(n.core.counters["takeovers_completed"] for n in live) >= 1
    homes = {n.pes()[(POOL, 0x55)] for n in live}
    assert len(homes) == 1 and homes <= {2, 3, 4}


def test_acknowledgements_from_every_live_peer_are_not_enough_without_a_majority() -> None:
    """Of four known servers, the target and one more are gone: the one live peer's
    acknowledgement makes 2 of 4, not a majority; at expiry the attempt is abandoned and
    the target is probed again."""
    core = PeerCore(PeerConfig(5, takeover_expiry=2.0), Handlespace(), AuthorizationPolicy())
    core.start(0.0)
    for number, server in ((1, 3), (2, 9), (3, 4)):
        core.connection_ready(number, tls(f"enrp-{server}"), outgoing=False, now=0.0)
        core.message_received(number, enrp.Presence(server, 0, 0), 0.0)
    core.connection_lost(3, 0.0)  # server 4: the target
    core.connection_lost(2, 0.0)  # server 9: gone too
    core.message_received(1, enrp.Presence(3, 0, 0), 9.0)
    core.handle_timer(10.0)
    assert core.peers[4].state is PeerState.TAKING_OVER
    core.message_received(1, enrp.InitTakeoverAck(3, 5, 4), 10.1)
    assert core.counters["takeovers_completed"] == 0
    core.message_received(1, enrp.Presence(3, 0, 0), 11.5)
    core.handle_timer(12.0)
    assert core.counters["takeovers_completed"] == 0
    assert core.counters["takeovers_no_quorum"] == 1
    assert state(core, 4) is PeerState.PROBING


def test_conflict_with_a_peer_that_follows_the_rfc_completes() -> None:
    """A peer written from RFC 5353 3.5.1 rule 2 (it aborts and acknowledges when its
    identifier is smaller than the sender's, and ignores otherwise) arbitrates the same
    target as we do: one of us wins in one round, whichever identifier is higher."""
    for ours, theirs in ((5, 7), (7, 5)):
        core = PeerCore(PeerConfig(ours), Handlespace(), AuthorizationPolicy())
        core.start(0.0)
        for number, server in ((1, theirs), (2, 4), (3, 8)):
            core.connection_ready(number, tls(f"enrp-{server}"), outgoing=False, now=0.0)
            core.message_received(number, enrp.Presence(server, 0, 0), 0.0)
        core.connection_lost(2, 0.0)
        core.message_received(1, enrp.Presence(theirs, 0, 0), 9.0)
        core.message_received(3, enrp.Presence(8, 0, 0), 9.0)
        sent = core.handle_timer(10.0)  # server 4 is dead: INIT_TAKEOVER to both
        assert any(
            isinstance(a, SendEnrp) and isinstance(a.message, enrp.InitTakeover) for a in sent
        )
        core.message_received(3, enrp.InitTakeoverAck(8, ours, 4), 10.05)
        # The RFC peer's INIT_TAKEOVER crosses ours.
        answer = core.message_received(1, enrp.InitTakeover(theirs, 0, 4), 10.1)
        acks = [a.message for a in answer if isinstance(a, SendEnrp)]
        if ours < theirs:
            # We abort and acknowledge; the RFC peer, higher, ignores our INIT_TAKEOVER
            # and completes with our acknowledgement.
            assert acks == [enrp.InitTakeoverAck(ours, theirs, 4)]
            assert core.peers[4].state is PeerState.INACTIVE
        else:
            # The RFC peer aborts and acknowledges us: we complete.
            assert acks == []
            core.message_received(1, enrp.InitTakeoverAck(theirs, ours, 4), 10.2)
            assert core.counters["takeovers_completed"] == 1
            assert 4 not in core.peers
