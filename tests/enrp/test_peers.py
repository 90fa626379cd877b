"""The sans-IO ENRP peer core: presence, timeouts, sync paging, updates, insider limits,
takeover with acknowledgements, conflicts, expiry, audit and errors (injected time)."""

from __future__ import annotations

import random
from collections import deque
from dataclasses import dataclass, field
from ipaddress import IPv4Address
from typing import Any

from twisted_rserpool.enrp.peers import (
    CloseLink,
    HomeKeepAlive,
    PeerAction,
    PeerConfig,
    PeerCore,
    PeerHint,
    PeerState,
    SendEnrp,
)
from twisted_rserpool.handlespace import Handlespace
from twisted_rserpool.security.authorization import AuthorizationPolicy, Role, policy_granting
from twisted_rserpool.security.context import INSECURE, SecurityContext
from twisted_rserpool.security.ratelimit import Rate
from twisted_rserpool.wire import enrp
from twisted_rserpool.wire.errors import CauseCode
from twisted_rserpool.wire.parameters import (
    OperationError,
    PoolElementParameter,
    RoundRobinPolicy,
    ServerInformation,
    TcpTransport,
)

POOL = b"echo"


def tls(identity: str) -> SecurityContext:
    return SecurityContext(True, "TLSv1.3", "TLS_CHACHA20_POLY1305_SHA256", psk_identity=identity)


def cert(subject: str) -> SecurityContext:
    """What a TLS client learns of a server by its certificate: the far end's identity."""
    return SecurityContext(True, "TLSv1.3", "TLS_AES_128_GCM_SHA256", certificate_subject=subject)


def element(pe: int, home: int, port: int = 7000, life: int = 3600) -> PoolElementParameter:
    address = IPv4Address("127.0.0.1")
    return PoolElementParameter(
        pe, home, life, TcpTransport(port, address), RoundRobinPolicy(), TcpTransport(port, address)
    )


@dataclass
class Node:
    """One ENRP server's peer core and handlespace."""

    server: int
    core: PeerCore
    handlespace: Handlespace
    keep_alives: list[HomeKeepAlive] = field(default_factory=list)
    hints: list[PeerHint] = field(default_factory=list)
    #: Messages sent on links with no far end (to inspect what the core said).
    stray: list[tuple[int, enrp.EnrpMessage]] = field(default_factory=list)
    closed: list[int] = field(default_factory=list)
    alive: bool = True

    def register(self, pe: int, now: float, pool: bytes = POOL, identity: str = "pe") -> None:
        self.handlespace.register(pool, element(pe, self.server), now=now, identity=identity)

    def deregister(self, pe: int, pool: bytes = POOL) -> None:
        self.handlespace.deregister(pool, pe)

    def pes(self) -> dict[tuple[bytes, int], int]:
        return {
            (entry.pool_handle, entry.pe_identifier): entry.home_server_identifier
            for entry in self.handlespace.elements()
        }


class Network:
    """In-memory ENRP servers joined by ordered links (TCP), with one shared clock."""

    def __init__(self, *, rng: random.Random | None = None) -> None:
        self.now = 0.0
        self.nodes: dict[int, Node] = {}
        self._numbers = iter(range(1, 1_000_000))
        #: (node, number) -> (far node, far number)
        self.far: dict[tuple[int, int], tuple[int, int]] = {}
        #: per directed link, messages in flight (order kept, as TCP does)
        self.queues: dict[tuple[int, int], deque[enrp.EnrpMessage]] = {}
        self.rng = rng

    def add(
        self,
        server: int,
        *,
        expect_mentor: bool = False,
        policy: AuthorizationPolicy | None = None,
        handlespace: Handlespace | None = None,
        **config: Any,
    ) -> Node:
        if handlespace is None:
            handlespace = Handlespace(rng=random.Random(server))
        core = PeerCore(
            PeerConfig(
                server,
                server_information=ServerInformation(
                    server, TcpTransport(9000 + server % 1000, IPv4Address("127.0.0.1"))
                ),
                **config,
            ),
            handlespace,
            policy if policy is not None else AuthorizationPolicy(),
            expect_mentor=expect_mentor,
        )
        node = Node(server, core, handlespace)
        self.nodes[server] = node
        self.perform(node, core.start(self.now))
        return node

    def connect(
        self,
        a: Node,
        b: Node,
        security_a: SecurityContext | None = None,
        security_b: SecurityContext | None = None,
    ) -> tuple[int, int]:
        """A link opened by ``a``; each side sees the other's identity.

        ``a`` (the TLS client) knows ``b`` by its certificate; ``b`` knows ``a`` by the PSK
        identity ``a`` chose.
        """
        na, nb = next(self._numbers), next(self._numbers)
        self.far[(a.server, na)] = (b.server, nb)
        self.far[(b.server, nb)] = (a.server, na)
        self.queues[(a.server, na)] = deque()
        self.queues[(b.server, nb)] = deque()
        sa = security_a if security_a is not None else cert(f"enrp-{b.server}")
        sb = security_b if security_b is not None else tls(f"enrp-{a.server}")
        self.perform(a, a.core.connection_ready(na, sa, outgoing=True, now=self.now))
        self.perform(b, b.core.connection_ready(nb, sb, outgoing=False, now=self.now))
        return na, nb

    def mesh(self, *nodes: Node) -> None:
        for i, a in enumerate(nodes):
            for b in nodes[i + 1 :]:
                self.connect(a, b)

    def perform(self, node: Node, actions: list[PeerAction]) -> None:
        for action in actions:
            if isinstance(action, SendEnrp):
                # Through the codec, as on the wire.
                message = enrp.decode(action.message.encode())
                queue = self.queues.get((node.server, action.connection))
                if queue is None:
                    node.stray.append((action.connection, message))
                else:
                    queue.append(message)
            elif isinstance(action, CloseLink):
                node.closed.append(action.connection)
                self.disconnect(node.server, action.connection)
            elif isinstance(action, HomeKeepAlive):
                node.keep_alives.append(action)
            elif isinstance(action, PeerHint):
                node.hints.append(action)

    def disconnect(self, server: int, number: int) -> None:
        far = self.far.pop((server, number), None)
        self.queues.pop((server, number), None)
        node = self.nodes[server]
        if node.alive:
            self.perform(node, node.core.connection_lost(number, self.now))
        if far is not None:
            self.far.pop(far, None)
            self.queues.pop(far, None)
            other = self.nodes[far[0]]
            if other.alive:
                self.perform(other, other.core.connection_lost(far[1], self.now))

    def kill(self, node: Node) -> None:
        node.alive = False
        for server, number in [key for key in self.far if key[0] == node.server]:
            self.disconnect(server, number)

    def flush(self, node: Node) -> None:
        """Send what handlespace changes made outside the core caused."""
        self.perform(node, node.core.take_actions())

    def deliver_one(self, key: tuple[int, int]) -> None:
        message = self.queues[key].popleft()
        far = self.far.get(key)
        if far is None:
            return
        target = self.nodes[far[0]]
        if target.alive:
            self.perform(target, target.core.message_received(far[1], message, self.now))

    def deliver(self) -> None:
        """Deliver everything in flight (link order kept; links interleaved by ``rng``)."""
        while True:
            busy = [key for key, queue in self.queues.items() if queue]
            if not busy:
                return
            key = self.rng.choice(busy) if self.rng is not None else busy[0]
            self.deliver_one(key)

    def run(self, seconds: float) -> None:
        """Advance the clock, firing every core's timers and delivering messages."""
        end = self.now + seconds
        self.deliver()
        while True:
            deadlines = [
                d
                for node in self.nodes.values()
                if node.alive and (d := node.core.next_deadline()) is not None
            ]
            upcoming = min(deadlines, default=None)
            if upcoming is None or upcoming > end:
                self.now = end
                return
            self.now = max(self.now, upcoming)
            for node in list(self.nodes.values()):
                deadline = node.core.next_deadline() if node.alive else None
                if deadline is not None and deadline <= self.now:
                    self.perform(node, node.core.handle_timer(self.now))
                    later = node.core.next_deadline()
                    # A timer that ran must move its deadline, or an adapter would spin.
                    assert later is None or later > self.now, (node.server, later, self.now)
            self.deliver()


def three(**config: Any) -> tuple[Network, Node, Node, Node]:
    net = Network()
    a, b, c = net.add(1, **config), net.add(2, **config), net.add(3, **config)
    net.mesh(a, b, c)
    net.deliver()
    return net, a, b, c


# ---------------------------------------------------------------------- presence, peer list


def test_connection_introduces_with_reply_required_presence() -> None:
    """A ready link gets a reply-required ENRP_PRESENCE; the answer carries server info."""
    net = Network()
    a, b = net.add(1), net.add(2)
    na, _ = net.connect(a, b)
    first = net.queues[(1, na)][0]
    assert isinstance(first, enrp.Presence) and first.reply_required
    assert first.checksum == a.handlespace.pe_checksum(1)
    net.deliver()
    assert set(a.core.peers) == {2} and set(b.core.peers) == {1}
    assert a.core.peers[2].server_information is not None
    assert a.core.peers[2].identity == "enrp-2"


def test_heartbeat_every_cycle_carries_checksum() -> None:
    """Every PEER-HEARTBEAT-CYCLE each peer gets a presence with our current PE checksum."""
    net, a, b, _ = three(peer_heartbeat_cycle=1.0)
    a.register(10, net.now)
    net.flush(a)
    before = a.core.counters["heartbeats_sent"]
    net.run(3.0)
    assert a.core.counters["heartbeats_sent"] - before == 3
    assert b.core.peers[1].checksum == a.handlespace.pe_checksum(1) != 0


def test_silent_peer_is_probed_then_declared_dead() -> None:
    """Silence for MAX-TIME-LAST-HEARD sends a reply-required probe; no answer within
    MAX-TIME-NO-RESPONSE makes the peer dead and starts a takeover."""
    net = Network()
    a = net.add(1, peer_heartbeat_cycle=100, max_time_last_heard=5, max_time_no_response=2)
    b = net.add(2, peer_heartbeat_cycle=100, max_time_last_heard=5, max_time_no_response=2)
    net.connect(a, b)
    net.deliver()
    b.alive = False  # b stops answering, the link stays up
    net.run(5.0)
    assert a.core.peers[2].state is PeerState.PROBING
    assert a.core.counters["probes_sent"] == 1
    net.run(1.9)
    assert a.core.peers[2].state is PeerState.PROBING
    net.run(0.2)
    # Dead, but one of two servers is no majority (it may be the one cut off): the
    # takeover is asked for and never completes.
    assert a.core.peers[2].state.value == "taking over"
    assert a.core.counters["takeovers_started"] == 1
    net.run(10.0)
    assert a.core.counters["takeovers_completed"] == 0
    assert a.core.counters["takeovers_no_quorum"] >= 1


def test_probe_answer_keeps_peer_active() -> None:
    """A peer that answers the probe stays active and nothing is taken over."""
    net = Network()
    a = net.add(1, peer_heartbeat_cycle=100, max_time_last_heard=5, max_time_no_response=2)
    b = net.add(2, peer_heartbeat_cycle=100, max_time_last_heard=50, max_time_no_response=2)
    net.connect(a, b)
    net.run(5.5)
    assert a.core.peers[2].state is PeerState.ACTIVE
    assert a.core.counters["probes_sent"] >= 1
    assert a.core.counters["takeovers_started"] == 0


def test_lost_connection_fails_the_probe_at_once() -> None:
    """With no connection the probe cannot be sent: dead at MAX-TIME-LAST-HEARD."""
    net, a, b, c = three(max_time_last_heard=3, max_time_no_response=3)
    c.register(5, net.now)
    net.flush(c)
    net.deliver()
    heard = net.now
    net.kill(c)
    net.run(3.0 + 0.01)
    # One of a, b took c over (the higher, RFC 5353 3.5.1 rule 2); the other observed it.
    owners = {a.pes()[(POOL, 5)], b.pes()[(POOL, 5)]}
    assert owners == {2}
    assert net.now - heard <= 3.0 + 0.01


# ---------------------------------------------------------------------- updates


def test_registration_is_announced_and_applied_everywhere() -> None:
    """ADD_PE for a PE registered at one server; DEL_PE for its deregistration."""
    net, a, b, c = three()
    a.register(10, net.now)
    net.flush(a)
    net.deliver()
    assert b.pes() == c.pes() == {(POOL, 10): 1}
    assert b.handlespace.get(POOL, 10).identity is None  # type: ignore[union-attr]
    a.deregister(10)
    net.flush(a)
    net.deliver()
    assert b.pes() == c.pes() == {}


def test_update_for_another_servers_pe_is_refused() -> None:
    """RFC 5355 2.17: ADD_PE naming another home, and DEL_PE of another's PE, are refused."""
    net, a, _b, c = three()
    a.register(10, net.now)
    net.flush(a)
    net.deliver()
    nb = next(n for (s, n), far in net.far.items() if s == 2 and far[0] == 3)
    number_at_c = net.far[(2, nb)][1]
    forged = enrp.HandleUpdate(2, 0, enrp.UpdateAction.ADD_PE, POOL, element(11, 1))
    net.perform(c, c.core.message_received(number_at_c, forged, net.now))
    stolen = enrp.HandleUpdate(2, 0, enrp.UpdateAction.DEL_PE, POOL, element(10, 1))
    net.perform(c, c.core.message_received(number_at_c, stolen, net.now))
    assert c.pes() == {(POOL, 10): 1}
    assert c.core.counters["updates_refused"] == 2
    errors = [m for m in net.queues[(3, number_at_c)] if isinstance(m, enrp.ErrorMessage)]
    assert [e.error.code for e in errors] == [CauseCode.REJECTED_DUE_TO_SECURITY_CONSIDERATIONS] * 2


def test_update_contradicting_local_registration_is_refused() -> None:
    """A peer's ADD_PE for a PE registered here by an identity is refused and logged."""
    net, a, _b, _ = three()
    a.register(10, net.now)
    net.flush(a)
    net.deliver()
    nb = next(n for (s, n), far in net.far.items() if s == 2 and far[0] == 1)
    claim = enrp.HandleUpdate(2, 0, enrp.UpdateAction.ADD_PE, POOL, element(10, 2))
    net.perform(a, a.core.message_received(net.far[(2, nb)][1], claim, net.now))
    assert a.pes() == {(POOL, 10): 1}
    assert a.core.counters["updates_refused"] == 1


def test_pe_moving_home_is_accepted() -> None:
    """A PE learnt from a peer that re-registers at another server changes home there."""
    net, a, b, c = three()
    a.register(10, net.now)
    net.flush(a)
    net.deliver()
    a.handlespace.deregister(POOL, 10)  # its connection to a closed
    net.flush(a)
    b.register(10, net.now)
    net.flush(b)
    net.deliver()
    assert a.pes() == b.pes() == c.pes() == {(POOL, 10): 2}


def test_spoofed_sender_identifier_is_refused() -> None:
    """A link bound to one server may not speak for another (RFC 5355 2.5)."""
    net, a, _b, _ = three()
    na = next(n for (s, n), far in net.far.items() if s == 1 and far[0] == 2)
    spoof = enrp.HandleUpdate(3, 0, enrp.UpdateAction.ADD_PE, POOL, element(11, 3))
    net.perform(a, a.core.message_received(na, spoof, net.now))
    assert a.pes() == {}
    assert a.core.counters["refused_spoofed_sender"] == 1


# ---------------------------------------------------------------------- security


def test_peer_without_enrp_server_role_is_refused() -> None:
    """An authenticated identity without the enrp-server role is refused and closed."""
    net = Network()
    policy = policy_granting(["enrp-2"], [Role.ENRP_SERVER])
    a = net.add(1, policy=policy)
    rogue = net.add(9)
    na, _ = net.connect(a, rogue, security_a=tls("pe-1"))
    assert a.core.counters["peers_refused"] == 1
    assert na in a.closed
    assert a.core.counters["errors_sent"] == 1
    assert a.core.peers == {}


def test_unauthenticated_peer_is_refused_on_a_secure_server() -> None:
    """RFC 5355 2.15: no TLS, no peering; its messages are refused with ENRP_ERROR."""
    policy = AuthorizationPolicy()
    core = PeerCore(PeerConfig(1), Handlespace(), policy)
    core.start(0.0)
    actions = core.connection_ready(5, INSECURE, outgoing=False, now=0.0)
    assert any(isinstance(a, CloseLink) for a in actions)
    update = enrp.HandleUpdate(7, 0, enrp.UpdateAction.ADD_PE, POOL, element(1, 7))
    answer = core.message_received(5, update, 1.0)
    assert len(core.handlespace) == 0
    assert isinstance(answer[0], SendEnrp) and isinstance(answer[0].message, enrp.ErrorMessage)
    assert core.counters["refused_unauthorized"] == 1


def test_insecure_server_accepts_unauthenticated_peers() -> None:
    """With --insecure (RSPLIB labs) a peer without TLS may join."""
    core = PeerCore(PeerConfig(1, secure=False), Handlespace(), AuthorizationPolicy())
    core.start(0.0)
    core.connection_ready(5, INSECURE, outgoing=False, now=0.0)
    core.message_received(5, enrp.Presence(7, 0, 0), 0.5)
    assert set(core.peers) == {7}


def test_second_identity_cannot_claim_a_connected_server_identifier() -> None:
    """A server identifier belongs to the identity that first announced it."""
    net = Network()
    a, b = net.add(1), net.add(2)
    net.connect(a, b)
    net.deliver()
    impostor = net.add(3)
    na, _ = net.connect(a, impostor, security_a=cert("enrp-evil"))
    net.perform(a, a.core.message_received(na, enrp.Presence(2, 0, 0), net.now))
    assert a.core.counters["refused_server_identifier"] == 1
    assert a.core.peers[2].identity == "enrp-2"


def test_own_or_zero_identifier_is_refused() -> None:
    """A peer using our server identifier or zero is refused and closed."""
    core = PeerCore(PeerConfig(1), Handlespace(), AuthorizationPolicy())
    core.start(0.0)
    core.connection_ready(5, tls("enrp-x"), outgoing=False, now=0.0)
    actions = core.message_received(5, enrp.Presence(1, 0, 0), 0.1)
    assert any(isinstance(a, CloseLink) for a in actions)
    assert core.peers == {}


# ---------------------------------------------------------------------- sync


def test_initial_sync_pages_with_m_flag() -> None:
    """A new server downloads the mentor's handlespace in pages (M flag) and is then ready."""
    net = Network()
    mentor = net.add(1, handle_table_page=7)
    for pe in range(1, 31):
        mentor.register(pe, net.now, pool=b"p%d" % (pe % 3))
    net.flush(mentor)
    newcomer = net.add(2, expect_mentor=True, handle_table_page=7)
    assert not newcomer.core.synchronised
    net.connect(newcomer, mentor)
    net.deliver()
    assert newcomer.core.synchronised
    assert newcomer.pes() == mentor.pes()
    assert mentor.core.counters["table_pages_sent"] == 5  # 30 PEs, 7 a page
    assert newcomer.core.counters["initial_syncs"] == 1


def test_mentor_rejects_while_not_synchronised() -> None:
    """A server still initialising rejects list and full table requests (R flag)."""
    core = PeerCore(PeerConfig(1), Handlespace(), AuthorizationPolicy(), expect_mentor=True)
    core.start(0.0)
    core.connection_ready(5, tls("enrp-7"), outgoing=False, now=0.0)
    core.message_received(5, enrp.Presence(7, 0, 0), 0.0)
    answer = core.message_received(5, enrp.ListRequest(7, 1), 0.1)
    lists = [a.message for a in answer if isinstance(a, SendEnrp)]
    assert any(isinstance(m, enrp.ListResponse) and m.reject for m in lists)
    answer = core.message_received(5, enrp.HandleTableRequest(7, 1), 0.2)
    tables = [a.message for a in answer if isinstance(a, SendEnrp)]
    assert any(isinstance(m, enrp.HandleTableResponse) and m.reject for m in tables)


def test_alone_after_mentor_discovery() -> None:
    """With peers configured but none reachable, the server serves alone after the timer."""
    net = Network()
    a = net.add(1, expect_mentor=True, mentor_discovery=3)
    net.run(2.9)
    assert not a.core.synchronised
    net.run(0.2)
    assert a.core.synchronised


def test_list_response_gives_hints() -> None:
    """Servers in the mentor's list that we do not know become hints (never peers)."""
    net = Network()
    a, b = net.add(1), net.add(2)
    net.connect(a, b)
    net.deliver()
    c = net.add(3, expect_mentor=True)
    net.connect(c, a)
    net.deliver()
    assert [h.server_information.server_identifier for h in c.hints] == [2]
    assert 2 not in c.core.peers


def test_sync_skips_pes_removed_during_download() -> None:
    """A PE deleted between pages is not resurrected by a later page."""
    net = Network()
    mentor = net.add(1, handle_table_page=2)
    for pe in range(1, 7):
        mentor.register(pe, net.now)
    net.flush(mentor)
    newcomer = net.add(2, expect_mentor=True, handle_table_page=2)
    _na, _nb = net.connect(newcomer, mentor)
    # Deliver until the first page arrived.
    for _ in range(6):
        for key in list(net.queues):
            if net.queues[key]:
                net.deliver_one(key)
    mentor.deregister(6)
    net.flush(mentor)
    net.deliver()
    assert newcomer.pes() == mentor.pes()
    assert (POOL, 6) not in newcomer.pes()


def test_unsolicited_table_response_is_answered_with_error() -> None:
    """A handle table response nobody asked for is refused with ENRP_ERROR."""
    net, a, _b, _ = three()
    na = next(n for (s, n), far in net.far.items() if s == 1 and far[0] == 2)
    page = enrp.HandleTableResponse(2, 1, (enrp.PoolEntry(POOL, (element(5, 2),)),))
    actions = a.core.message_received(na, page, net.now)
    assert a.pes() == {}
    assert any(
        isinstance(x, SendEnrp) and isinstance(x.message, enrp.ErrorMessage) for x in actions
    )
    assert a.core.counters["unexpected_messages"] == 1


# ---------------------------------------------------------------------- audit


def test_checksum_mismatch_resynchronises_that_peers_pes() -> None:
    """A missed update shows in the next presence's checksum; a W-flag resync repairs
    it, removing stale PEs (marked) and adding missing ones."""
    net, a, b, _ = three(peer_heartbeat_cycle=1.0)
    a.register(10, net.now)
    a.register(11, net.now)
    net.flush(a)
    net.deliver()
    # b misses an update (lost message) and holds a stale PE of a.
    b.handlespace.deregister(POOL, 10)
    b.handlespace.register(POOL, element(99, 1), now=net.now)
    assert b.pes() != a.pes()
    net.run(1.5)
    assert b.pes() == a.pes() == {(POOL, 10): 1, (POOL, 11): 1}
    assert b.core.counters["audit_mismatches"] >= 1
    assert b.core.counters["resync_swept"] == 1
    assert b.handlespace.pe_checksum(1) == a.handlespace.pe_checksum(1)


def test_resync_response_with_foreign_pes_is_filtered() -> None:
    """In a W-flag response only the sender's own PEs are accepted."""
    net, a, _b, _ = three()
    core = a.core
    na = next(n for (s, n), far in net.far.items() if s == 1 and far[0] == 2)
    core.peers[2].checksum = 0x1234
    core.sync.audit(core.peers[2], 0x1234, net.now)  # starts a W request to b
    page = enrp.HandleTableResponse(2, 1, (enrp.PoolEntry(POOL, (element(5, 2), element(6, 3))),))
    core.message_received(na, page, net.now)
    assert a.pes() == {(POOL, 5): 2}
    assert core.counters["table_entries_refused"] == 1


# ---------------------------------------------------------------------- takeover


def test_takeover_needs_every_acknowledgement() -> None:
    """INIT_TAKEOVER to all; TAKEOVER_SERVER only after every other peer acknowledged;
    then H keep-alives to every PE taken over and all servers agree on the new home."""
    net, a, b, c = three(max_time_last_heard=2, max_time_no_response=1)
    for pe in (1, 2, 3):
        c.register(pe, net.now)
    net.flush(c)
    net.deliver()
    net.kill(c)
    net.run(2.5)
    winner = b  # RFC 5353 3.5.1 rule 2: the smaller identifier aborts
    assert winner.core.counters["takeovers_completed"] == 1
    assert a.core.counters["takeovers_completed"] == 0
    assert a.pes() == b.pes() == {(POOL, 1): 2, (POOL, 2): 2, (POOL, 3): 2}
    assert sorted(k.pe_identifier for k in winner.keep_alives) == [1, 2, 3]
    assert all(k.server_identifier == 2 and k.transport is not None for k in winner.keep_alives)
    assert a.keep_alives == []
    assert 3 not in a.core.peers and 3 not in b.core.peers


def test_takeover_waits_for_missing_acknowledgement_and_expires() -> None:
    """Without the acknowledgement of a live peer the takeover expires and is retried."""
    net = Network()
    a = net.add(1, max_time_last_heard=2, max_time_no_response=1, takeover_expiry=2)
    b = net.add(2, max_time_last_heard=100, max_time_no_response=100)
    c = net.add(3)
    net.mesh(a, b, c)
    c.register(7, net.now)
    net.flush(c)
    net.deliver()
    # c goes silent for a but stays connected (and alive) to b: b objects.
    c.alive = False
    net.run(3.5)
    assert a.core.counters["takeovers_started"] >= 1
    assert b.core.counters["takeovers_objected"] >= 1
    net.run(2.0)
    assert a.core.counters["takeovers_expired"] >= 1
    assert a.core.counters["takeovers_completed"] == 0
    assert a.pes() == {(POOL, 7): 3}


def test_takeover_completes_when_missing_acknowledger_is_gone() -> None:
    """At expiry, peers that did not acknowledge and are gone do not block the takeover
    when the acknowledgers and we are still a majority (3 of 5)."""
    net = Network()
    a = net.add(9, max_time_last_heard=2, max_time_no_response=1, takeover_expiry=2)
    b = net.add(2, max_time_last_heard=100, max_time_no_response=100)
    others = [net.add(s, max_time_last_heard=100, max_time_no_response=100) for s in (3, 4)]
    c = net.add(5)
    net.mesh(a, b, c, *others)
    c.register(7, net.now)
    net.flush(c)
    net.deliver()
    net.kill(c)
    b.alive = False  # b hangs without closing its link
    net.run(2.0 + 2.0 + 2.5)
    assert a.core.counters["takeovers_completed"] == 1  # c; b keeps its PEs (no majority
    assert a.pes()[(POOL, 7)] == 9  # for a second takeover of 4 known servers is 3 of 4)


def test_takeover_conflict_smaller_identifier_aborts() -> None:
    """RFC 5353 3.5.1 rule 2: two servers arbitrating the same target: the one whose
    identifier is smaller than the sender's aborts and acknowledges; the other ignores."""
    core = PeerCore(PeerConfig(5), Handlespace(), AuthorizationPolicy())
    core.start(0.0)
    for number, server in ((1, 3), (2, 9), (3, 4)):
        core.connection_ready(number, tls(f"enrp-{server}"), outgoing=False, now=0.0)
        core.message_received(number, enrp.Presence(server, 0, 0), 0.0)
    core.connection_lost(3, 0.0)
    core.handle_timer(10.0)  # server 4 is dead: we start arbitrating
    assert core.peers[4].state is PeerState.TAKING_OVER
    # Server 3 (smaller than us) also arbitrates: ignored.
    ignored = core.message_received(1, enrp.InitTakeover(3, 0, 4), 10.1)
    assert not any(isinstance(a, SendEnrp) for a in ignored)
    # Server 9 (we are smaller) arbitrates: we abort and acknowledge.
    answer = core.message_received(2, enrp.InitTakeover(9, 0, 4), 10.2)
    acks = [a.message for a in answer if isinstance(a, SendEnrp)]
    assert acks == [enrp.InitTakeoverAck(5, 9, 4)]
    assert core.counters["takeover_conflicts_lost"] == 1
    assert core.peers[4].state.value == "inactive"


def test_init_takeover_of_ourselves_announces_presence() -> None:
    """A server told it is being taken over announces its presence to every peer."""
    net, a, _b, _c = three()
    nb = next(n for (s, n), far in net.far.items() if s == 2 and far[0] == 1)
    actions = a.core.message_received(net.far[(2, nb)][1], enrp.InitTakeover(2, 0, 1), net.now)
    presences = [x for x in actions if isinstance(x, SendEnrp)]
    assert len(presences) == 2
    assert all(isinstance(x.message, enrp.Presence) for x in presences)


def test_presence_of_target_cancels_takeover() -> None:
    """A presence from the target during arbitration stops the takeover."""
    core = PeerCore(PeerConfig(5), Handlespace(), AuthorizationPolicy())
    core.start(0.0)
    core.connection_ready(1, tls("enrp-3"), outgoing=False, now=0.0)
    core.message_received(1, enrp.Presence(3, 0, 0), 0.0)
    core.connection_ready(2, tls("enrp-4"), outgoing=False, now=0.0)
    core.message_received(2, enrp.Presence(4, 0, 0), 0.0)
    core.handle_timer(5.0)  # both silent: probes
    core.message_received(1, enrp.Presence(3, 0, 0), 5.5)
    core.handle_timer(10.0)  # 4 did not answer: dead; arbitration waits for 3
    assert core.peers[4].state is PeerState.TAKING_OVER
    core.message_received(2, enrp.Presence(4, 0, 0), 10.5)
    assert core.peers[4].state.value == "active"
    core.message_received(1, enrp.InitTakeoverAck(3, 5, 4), 10.6)
    assert core.counters["takeovers_completed"] == 0


def test_takeover_server_for_a_live_target_is_refused() -> None:
    """RFC 5355 2.17: a peer cannot take over a server we see alive."""
    net, a, _b, c = three()
    c.register(7, net.now)
    net.flush(c)
    net.deliver()
    nb = next(n for (s, n), far in net.far.items() if s == 2 and far[0] == 1)
    actions = a.core.message_received(net.far[(2, nb)][1], enrp.TakeoverServer(2, 0, 3), net.now)
    assert a.pes() == {(POOL, 7): 3}
    assert a.core.counters["takeovers_refused"] == 1
    assert any(
        isinstance(x, SendEnrp) and isinstance(x.message, enrp.ErrorMessage) for x in actions
    )


def test_unexpected_takeover_ack_is_ignored() -> None:
    """An acknowledgement for no takeover of ours changes nothing."""
    net, a, _b, _ = three()
    na = next(n for (s, n), far in net.far.items() if s == 1 and far[0] == 2)
    a.core.message_received(na, enrp.InitTakeoverAck(2, 1, 3), net.now)
    assert a.core.counters["takeover_acks_ignored"] == 1
    assert 3 in a.core.peers


def test_home_keep_alives_are_rate_limited_and_unanswered_pes_expire() -> None:
    """H keep-alives go out at the configured rate; PEs that never acknowledge are removed,
    acknowledged ones stay."""
    net = Network()
    a = net.add(
        4,
        max_time_last_heard=1,
        max_time_no_response=1,
        home_keep_alive_rate=Rate(10.0, 10.0),
        keep_alive_timeout=2.0,
    )
    c = net.add(3)
    net.mesh(a, net.add(2), c)  # server 2 makes the majority
    for pe in range(1, 31):
        c.register(pe, net.now)
    net.flush(c)
    net.deliver()
    net.kill(c)
    net.run(1.0)
    assert len(a.keep_alives) == 10  # burst
    assert a.core.home_keep_alive_acknowledged(POOL, 1)
    net.run(1.0)
    assert 19 <= len(a.keep_alives) <= 20  # 10 a second after the burst
    # Acknowledge everything sent so far except PE 2.
    for action in a.keep_alives:
        if action.pe_identifier != 2:
            a.core.home_keep_alive_acknowledged(POOL, action.pe_identifier)
    acknowledged = len(a.keep_alives)
    net.run(2.0)
    assert len(a.keep_alives) == 30
    for action in a.keep_alives[acknowledged:]:
        a.core.home_keep_alive_acknowledged(POOL, action.pe_identifier)
    # The handlespace's keep-alive timeouts are expired by the registrar's timer.
    a.handlespace.expire(net.now + 10)
    assert (POOL, 2) not in a.pes()
    assert len(a.pes()) == 29


def test_takeover_server_moves_pes_to_the_sender() -> None:
    """Peers that receive TAKEOVER_SERVER re-home the target's PEs to the sender."""
    net, a, _b, c = three(max_time_last_heard=2, max_time_no_response=1)
    c.register(1, net.now)
    net.flush(c)
    net.deliver()
    net.kill(c)
    net.run(3)
    assert a.core.counters["takeovers_observed"] == 1
    assert a.pes() == {(POOL, 1): 2}


def test_status_lists_peers() -> None:
    """The admin view lists each peer with state, checksum and PE count."""
    net, a, b, _ = three()
    b.register(4, net.now)
    net.flush(b)
    net.run(3)
    status = {row["server"]: row for row in a.core.status()}
    assert status["0x00000002"]["pool_elements"] == 1
    assert status["0x00000002"]["checksum"] == status["0x00000002"]["local_checksum"]
    assert status["0x00000002"]["state"] == "active"


def test_error_message_received_is_counted() -> None:
    """An ENRP_ERROR from a peer is logged and counted, nothing else."""
    net, a, _b, _ = three()
    na = next(n for (s, n), far in net.far.items() if s == 1 and far[0] == 2)
    a.core.message_received(
        na, enrp.ErrorMessage(2, 1, OperationError.single(CauseCode.UNSPECIFIED_ERROR)), net.now
    )
    assert a.core.counters["errors_received"] == 1


def test_restarted_server_resynchronises() -> None:
    """A server restarted (same identifier, empty handlespace) before it was declared dead
    learns the handlespace from its mentor, and the audit removes its old PEs elsewhere."""
    net, a, b, c = three(peer_heartbeat_cycle=1.0, max_time_last_heard=30)
    a.register(1, net.now)
    c.register(3, net.now)
    net.flush(a)
    net.flush(c)
    net.deliver()
    net.kill(c)
    fresh = net.add(3, expect_mentor=True, peer_heartbeat_cycle=1.0, max_time_last_heard=30)
    net.connect(fresh, a)
    net.connect(fresh, b)
    net.run(3.0)
    assert fresh.core.synchronised
    assert fresh.pes() == a.pes() == b.pes() == {(POOL, 1): 1}
    assert a.core.counters["resync_swept"] == 1


def test_mentor_that_stops_answering_is_dropped_then_alone() -> None:
    """A mentor that never sends the handle table is given up after MAX-TIME-NO-RESPONSE;
    with nobody else, the server serves alone when MENTOR-DISCOVERY ends."""
    core = PeerCore(
        PeerConfig(1, max_time_no_response=1.0, mentor_discovery=4.0),
        Handlespace(),
        AuthorizationPolicy(),
        expect_mentor=True,
    )
    core.start(0.0)
    core.connection_ready(5, tls("enrp-7"), outgoing=True, now=0.0)
    sent = core.message_received(5, enrp.Presence(7, 0, 0), 0.1)
    assert any(isinstance(a, SendEnrp) and isinstance(a.message, enrp.ListRequest) for a in sent)
    sent = core.message_received(5, enrp.ListResponse(7, 1), 0.2)
    assert any(
        isinstance(a, SendEnrp) and isinstance(a.message, enrp.HandleTableRequest) for a in sent
    )
    now = 0.2
    while not core.synchronised and now < 10:
        deadline = core.next_deadline()
        assert deadline is not None and deadline > now
        now = deadline
        core.handle_timer(now)
        if core.peers[7].state is not PeerState.ACTIVE:
            core.message_received(5, enrp.Presence(7, 1, 0), now)
    assert core.synchronised
    assert core.counters["table_requests_timed_out"] >= 1
    assert 4.0 <= now < 5.0
