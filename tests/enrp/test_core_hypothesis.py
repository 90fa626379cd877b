"""Hypothesis: interleavings of registrations, moves, peer updates and takeovers from
honest and malicious identities never let a non-owner change a PE (RFC 5355 2.3, 2.17).

Three honest EnrpCores (registrar and peer logic) peer in both directions over in-memory
links that keep order, as TCP does; every message goes through the codec. An insider
ENRP server with two valid identities connects to every one of them and plays re-homing
ADD_PEs (naming the true owner or not), ADD_PE naming the honest home, DEL_PEs,
takeovers of live servers and claims of their server identifiers; a pool element
identity of its own tries to register and deregister the honest PEs. Honest pool
elements register, move to another server and leave.

After every step, at every honest server: an honest PE has its owner's transport and
owner identity, and no home but an honest server. After the run settles (time advanced
with all messages delivered): every honest PE is at every server, homed where it is
registered, and no other.
"""

from __future__ import annotations

import itertools
import random
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from ipaddress import IPv4Address

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from twisted_rserpool.enrp.core import CoreAction, EnrpCore
from twisted_rserpool.enrp.peers import CloseLink, PeerConfig, PeerCore, SendEnrp
from twisted_rserpool.enrp.registrar import Close, RegistrarConfig, Send
from twisted_rserpool.enrp.takeover import TakeoverRegistrar
from twisted_rserpool.handlespace import Handlespace
from twisted_rserpool.security.authorization import AuthorizationPolicy
from twisted_rserpool.security.context import SecurityContext
from twisted_rserpool.wire import asap, enrp
from twisted_rserpool.wire.parameters import PoolElementParameter, RoundRobinPolicy, TcpTransport

POOL = b"echo"
HONEST = (1, 2, 3)
EVIL = 0x66
EVIL_IDENTITIES = ("enrp-evil", "enrp-evil-2")
LOOPBACK = IPv4Address("127.0.0.1")
#: Honest PE identifier -> its owner identity; each PE listens on port 7000 + id.
OWNERS = {1: "pe-1", 2: "pe-1", 3: "pe-2", 4: "pe-2"}
EVIL_PORT = 6666


def psk(identity: str) -> SecurityContext:
    return SecurityContext(True, "TLSv1.3", "TLS_AES_128_GCM_SHA256", psk_identity=identity)


def parameter(pe: int, home: int, port: int, owner: str | None) -> PoolElementParameter:
    return PoolElementParameter(
        pe,
        home,
        3600,
        TcpTransport(port, LOOPBACK),
        RoundRobinPolicy(),
        TcpTransport(port, LOOPBACK),
        owner_identity=owner,
    )


@dataclass
class Node:
    server: int
    core: EnrpCore
    handlespace: Handlespace


@dataclass
class World:
    """The pool, its links, its pool elements, and one clock."""

    rng: random.Random
    now: float = 0.0
    nodes: dict[int, Node] = field(default_factory=dict)
    numbers: Iterator[int] = field(default_factory=lambda: itertools.count(100))
    #: (server, number) -> (far server, far number); the insider's end is (EVIL, n).
    far: dict[tuple[int, int], tuple[int, int]] = field(default_factory=dict)
    queues: dict[tuple[int, int], deque[enrp.EnrpMessage]] = field(default_factory=dict)
    #: The insider's links: server -> its connection number there.
    evil_links: dict[int, int] = field(default_factory=dict)
    #: ASAP connections: (server, number) -> identity.
    clients: dict[tuple[int, int], str] = field(default_factory=dict)
    #: Honest PE -> (server, connection) where it is registered.
    registered: dict[int, tuple[int, int]] = field(default_factory=dict)
    acks: deque[tuple[int, int, asap.EndpointKeepAliveAck]] = field(default_factory=deque)
    #: (server, PE) -> (home, registration) when the server last held the owner's PE.
    honest: dict[tuple[int, int], tuple[int, tuple[int, int] | None]] = field(default_factory=dict)
    #: Honest PE identifiers the insider announced (or registered) first somewhere.
    squatted: set[int] = field(default_factory=set)

    # ------------------------------------------------------------------ set-up

    def build(self) -> None:
        policy = AuthorizationPolicy()
        for server in HONEST:
            handlespace = Handlespace(rng=random.Random(server))
            registrar = TakeoverRegistrar(
                RegistrarConfig(server), handlespace, policy, rng=random.Random(server)
            )
            peers = PeerCore(PeerConfig(server), handlespace, policy)
            node = Node(server, EnrpCore(registrar, peers), handlespace)
            self.nodes[server] = node
            self.perform(node, node.core.start(self.now))
        # Both directions between honest servers, as twistd enrp --peer does.
        for a in HONEST:
            for b in HONEST:
                if a != b:
                    self.link(a, b)
        self.deliver()
        for server in HONEST:
            self.evil_connect(server, EVIL_IDENTITIES[0], EVIL)
        # Two PEs every server knows before anything else happens.
        self.register(1, 1)
        self.register(3, 2)
        self.deliver()
        self.check_owned()

    def link(self, a: int, b: int) -> None:
        """``a`` dials ``b``: the PSK identity is ``a``'s own on both ends."""
        na, nb = next(self.numbers), next(self.numbers)
        self.far[(a, na)], self.far[(b, nb)] = (b, nb), (a, na)
        self.queues[(a, na)], self.queues[(b, nb)] = deque(), deque()
        identity = psk(f"enrp-{a}")
        node_a, node_b = self.nodes[a], self.nodes[b]
        self.perform(
            node_a, node_a.core.enrp_connection_ready(na, identity, outgoing=True, now=self.now)
        )
        self.perform(
            node_b, node_b.core.enrp_connection_ready(nb, identity, outgoing=False, now=self.now)
        )

    def evil_connect(self, server: int, identity: str, claimed: int) -> None:
        """The insider dials ``server`` as ``identity`` and announces ``claimed``."""
        old = self.evil_links.pop(server, None)
        if old is not None:
            self.disconnect(server, old)
        number = next(self.numbers)
        self.far[(server, number)] = (EVIL, number)
        self.queues[(server, number)] = deque()  # what the server sends the insider
        self.evil_links[server] = number
        node = self.nodes[server]
        self.perform(
            node,
            node.core.enrp_connection_ready(number, psk(identity), outgoing=False, now=self.now),
        )
        self.evil_send(server, enrp.Presence(claimed, 0, 0))

    def evil_send(self, server: int, message: enrp.EnrpMessage) -> None:
        number = self.evil_links.get(server)
        if number is None or (server, number) not in self.far:
            return
        node = self.nodes[server]
        message = enrp.decode(message.encode())
        self.perform(node, node.core.enrp_message_received(number, message, self.now))

    # ------------------------------------------------------------------ actions

    def perform(self, node: Node, actions: list[CoreAction]) -> None:
        for action in actions:
            if isinstance(action, SendEnrp):
                queue = self.queues.get((node.server, action.connection))
                if queue is not None:
                    queue.append(enrp.decode(action.message.encode()))
            elif isinstance(action, CloseLink):
                self.disconnect(node.server, action.connection)
            elif isinstance(action, Send):
                message = action.message
                if isinstance(message, asap.EndpointKeepAlive) and message.pe_identifier:
                    # The PE answers every keep-alive.
                    ack = asap.EndpointKeepAliveAck(message.pool_handle, message.pe_identifier)
                    self.acks.append((node.server, action.connection, ack))
            elif isinstance(action, Close):
                self.asap_close(node.server, action.connection)

    def disconnect(self, server: int, number: int) -> None:
        far = self.far.pop((server, number), None)
        self.queues.pop((server, number), None)
        node = self.nodes[server]
        self.perform(node, node.core.enrp_connection_lost(number, self.now))
        if far is not None and far[0] != EVIL:
            self.far.pop(far, None)
            self.queues.pop(far, None)
            other = self.nodes[far[0]]
            self.perform(other, other.core.enrp_connection_lost(far[1], self.now))
        if far is not None and far[0] == EVIL and self.evil_links.get(server) == number:
            del self.evil_links[server]

    def deliver(self) -> None:
        """Everything in flight, links interleaved at random, order kept on each link."""
        while True:
            while self.acks:
                server, number, ack = self.acks.popleft()
                if (server, number) in self.clients:
                    node = self.nodes[server]
                    self.perform(node, node.core.asap_message_received(number, ack, self.now))
            busy = [key for key, queue in self.queues.items() if queue]
            if not busy:
                return
            key = self.rng.choice(busy)
            message = self.queues[key].popleft()
            far = self.far.get(key)
            if far is None or far[0] == EVIL:
                continue  # the insider ignores what it is told
            node = self.nodes[far[0]]
            self.perform(node, node.core.enrp_message_received(far[1], message, self.now))

    def run(self, seconds: float) -> None:
        """Advance the clock: every core's timers fire, everything is delivered."""
        end = self.now + seconds
        self.deliver()
        while True:
            deadlines = [d for n in self.nodes.values() if (d := n.core.next_deadline())]
            upcoming = min(deadlines, default=None)
            if upcoming is None or upcoming > end:
                self.now = end
                return
            self.now = max(self.now, upcoming)
            for node in self.nodes.values():
                deadline = node.core.next_deadline()
                if deadline is not None and deadline <= self.now:
                    self.perform(node, node.core.handle_timer(self.now))
            self.deliver()

    # ------------------------------------------------------------------ ASAP

    def asap_open(self, server: int, identity: str) -> int:
        number = next(self.numbers)
        self.clients[(server, number)] = identity
        node = self.nodes[server]
        self.perform(
            node, node.core.asap_connection_ready(number, psk(identity), ("127.0.0.1", 40000))
        )
        return number

    def asap_close(self, server: int, number: int) -> None:
        if self.clients.pop((server, number), None) is None:
            return
        for pe, where in list(self.registered.items()):
            if where == (server, number):
                del self.registered[pe]
        node = self.nodes[server]
        self.perform(node, node.core.asap_connection_lost(number, self.now))

    def asap_send(self, server: int, number: int, message: asap.AsapMessage) -> list[object]:
        node = self.nodes[server]
        actions = node.core.asap_message_received(number, message, self.now)
        self.perform(node, actions)
        return [a.message for a in actions if isinstance(a, Send) and a.connection == number]

    def register(self, pe: int, server: int) -> None:
        """The owner (re-)registers its PE at ``server``, leaving its old home first."""
        where = self.registered.get(pe)
        if where is not None:
            if where[0] == server:
                return
            self.asap_close(*where)
        number = self.asap_open(server, OWNERS[pe])
        answers = self.asap_send(
            server, number, asap.Registration(POOL, parameter(pe, 0, 7000 + pe, None))
        )
        accepted = [a for a in answers if isinstance(a, asap.RegistrationResponse) and not a.reject]
        if accepted:
            self.registered[pe] = (server, number)
        else:
            self.asap_close(server, number)

    def leave(self, pe: int) -> None:
        where = self.registered.get(pe)
        if where is not None:
            self.asap_close(*where)

    # ------------------------------------------------------------------ checks

    def check_owned(self) -> None:
        """No non-owner changed or removed an honest PE that a server held.

        A server that held the owner's PE (its transport and owner identity) still holds
        exactly that, or lost it because the owner left or moved. An identifier the
        insider announced before a server learnt it is the insider's own PE there (an
        insider may announce PEs of its own); that is recorded, not a change.
        """
        for node in self.nodes.values():
            held = {
                entry.pe_identifier: entry
                for entry in node.handlespace.elements()
                if entry.pe_identifier in OWNERS
            }
            for pe, owner in OWNERS.items():
                key = (node.server, pe)
                entry = held.get(pe)
                before = self.honest.get(key)
                if entry is None:
                    if before is not None:
                        home, registration = before
                        # Removed: only the owner's leaving or moving may do that.
                        assert (
                            registration is None
                            or registration[0] != home
                            or (self.registered.get(pe) != registration)
                        ), (node.server, pe, before, self.registered.get(pe))
                        del self.honest[key]
                    continue
                transport = entry.element.user_transport
                assert isinstance(transport, TcpTransport)
                owners = transport.port == 7000 + pe
                if owners:
                    assert entry.owner_identity == owner, (node.server, pe, entry)
                    assert entry.home_server_identifier in HONEST, (node.server, pe, entry)
                    self.honest[key] = (entry.home_server_identifier, self.registered.get(pe))
                else:
                    assert before is None, (node.server, pe, before, entry)
                    self.squatted.add(pe)

    def check_settled(self) -> None:
        """Every registered honest PE everywhere, homed where it is registered; no other."""
        wanted = {
            pe: server for pe, (server, _) in self.registered.items() if pe not in self.squatted
        }
        for node in self.nodes.values():
            seen = {
                entry.pe_identifier: entry.home_server_identifier
                for entry in node.handlespace.elements()
                if entry.pe_identifier in OWNERS and entry.pe_identifier not in self.squatted
            }
            assert seen == wanted, (node.server, seen, wanted)


KINDS = (
    "register",
    "leave",
    "rehome",
    "forge-home",
    "delete",
    "takeover",
    "claim",
    "hijack",
    "deliver",
    "time",
)


@dataclass(frozen=True)
class Step:
    """One thing that happens: ``kind`` with the arguments it uses."""

    kind: str
    pe: int
    server: int
    other: int
    claim: str
    identity: str
    seconds: float


steps = st.builds(
    Step,
    kind=st.sampled_from(KINDS),
    pe=st.sampled_from(sorted(OWNERS)),
    server=st.sampled_from(HONEST),
    other=st.sampled_from([*HONEST, EVIL]),
    claim=st.sampled_from(["owner", "evil", "none"]),
    identity=st.sampled_from(EVIL_IDENTITIES),
    seconds=st.sampled_from([0.5, 1.0, 3.0]),
)


def play(world: World, step: Step) -> None:
    """Carry out one step; the insider's part goes over its links."""
    pe, target = step.pe, step.server
    if step.kind == "register":
        world.register(pe, target)
    elif step.kind == "leave":
        world.leave(pe)
    elif step.kind == "rehome":
        # The re-homing attack: the insider names itself home, with its own port.
        owner = {"owner": OWNERS[pe], "evil": "pe-evil", "none": None}[step.claim]
        forged = parameter(pe, EVIL, EVIL_PORT, owner)
        world.evil_send(target, enrp.HandleUpdate(EVIL, 0, enrp.UpdateAction.ADD_PE, POOL, forged))
    elif step.kind == "forge-home":
        forged = parameter(pe, step.other, EVIL_PORT, OWNERS[pe])
        world.evil_send(target, enrp.HandleUpdate(EVIL, 0, enrp.UpdateAction.ADD_PE, POOL, forged))
    elif step.kind == "delete":
        doomed = parameter(pe, step.other, 7000 + pe, None)
        world.evil_send(target, enrp.HandleUpdate(EVIL, 0, enrp.UpdateAction.DEL_PE, POOL, doomed))
    elif step.kind == "takeover":
        victim = step.other if step.other != EVIL else target
        world.evil_send(target, enrp.InitTakeover(EVIL, 0, victim))
        world.evil_send(target, enrp.TakeoverServer(EVIL, 0, victim))
    elif step.kind == "claim":
        # Another connection of the insider claims an honest server's identifier.
        world.evil_connect(target, step.identity, step.other if step.other != EVIL else 1)
    elif step.kind == "hijack":
        number = world.asap_open(target, "pe-evil")
        world.asap_send(target, number, asap.Registration(POOL, parameter(pe, 0, EVIL_PORT, None)))
        world.asap_send(target, number, asap.Deregistration(POOL, pe))
    elif step.kind == "deliver":
        world.deliver()
    else:
        world.run(step.seconds)


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(st.lists(steps, min_size=1, max_size=25), st.randoms(use_true_random=False))
def test_no_interleaving_lets_a_non_owner_change_a_pe(plan: list[Step], rng: random.Random) -> None:
    world = World(rng)
    world.build()
    for step in plan:
        play(world, step)
        world.check_owned()
    # Settle: heartbeats carry checksums, audits repair what raced; nothing from the
    # insider has changed an honest PE.
    world.run(15.0)
    world.check_owned()
    world.check_settled()
