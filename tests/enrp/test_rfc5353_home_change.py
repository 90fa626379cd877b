"""Home changes while the old home lives (RFC 5352 3.1 rule 4, RFC 5353 3.3.1 step 3)
within the ownership rules (RFC 5355 2.3, 2.17), on the sans-IO EnrpCore with injected
time: the old home asks its PE with a keep-alive when the owner's new home announces it,
lets it go when the PE's own association does not vouch for it, and keeps it when it
does, however often an insider naming the owner claims it."""

from __future__ import annotations

import random
from ipaddress import IPv4Address

from tests.enrp.test_peer_authority import element, psk, refusals
from twisted_rserpool.enrp.core import CoreAction, EnrpCore
from twisted_rserpool.enrp.peers import PeerConfig, PeerCore, SendEnrp
from twisted_rserpool.enrp.registrar import RegistrarConfig, Send
from twisted_rserpool.enrp.takeover import TakeoverRegistrar
from twisted_rserpool.handlespace import Handlespace
from twisted_rserpool.security.authorization import AuthorizationPolicy
from twisted_rserpool.wire import asap, enrp
from twisted_rserpool.wire.message import Message
from twisted_rserpool.wire.parameters import PoolElementParameter, RoundRobinPolicy, TcpTransport

POOL = b"echo"
A, B, C = 0x1, 0x2, 0x3
PE, PE_CONNECTION = 0x42, 500
#: Periodic keep-alives far apart, so only the question can find a silent PE soon.
INTERVAL, TIMEOUT = 600.0, 2.0


class OldHome:
    """Server A, home of PE 0x42 (owner pe-1, registered over ASAP connection 500), with
    live peers B and C played by hand."""

    def __init__(self) -> None:
        policy = AuthorizationPolicy()
        self.handlespace = Handlespace(rng=random.Random(1))
        registrar = TakeoverRegistrar(
            RegistrarConfig(A, keep_alive_interval=INTERVAL, keep_alive_timeout=TIMEOUT),
            self.handlespace,
            policy,
        )
        peers = PeerCore(PeerConfig(A, keep_alive_timeout=TIMEOUT), self.handlespace, policy)
        self.core = EnrpCore(registrar, peers)
        self.peers = peers
        self.now = 0.0
        self.actions: list[CoreAction] = list(self.core.start(self.now))
        self.b = self.connect(B, "enrp-2", 10)
        self.c = self.connect(C, "enrp-3", 11)
        self.take(self.core.asap_connection_ready(PE_CONNECTION, psk("pe-1"), ("127.0.0.1", 40000)))
        address = IPv4Address("127.0.0.1")
        registration = asap.Registration(
            POOL, PoolElementParameter(PE, 0, 3600, TcpTransport(7002, address), RoundRobinPolicy())
        )
        (response,) = self.to_pe(
            self.core.asap_message_received(PE_CONNECTION, registration, self.now)
        )
        assert isinstance(response, asap.RegistrationResponse) and not response.reject
        assert self.view() == (A, "pe-1")

    def take(self, actions: list[CoreAction]) -> list[CoreAction]:
        self.actions.extend(actions)
        return actions

    def connect(self, server: int, identity: str, number: int) -> int:
        self.take(self.core.enrp_connection_ready(number, psk(identity), outgoing=False, now=0.0))
        presence = enrp.Presence(server, 0, self.handlespace.pe_checksum(server))
        self.take(self.core.enrp_message_received(number, presence, 0.0))
        return number

    def to_pe(self, actions: list[CoreAction]) -> list[Message]:
        self.take(actions)
        return [a.message for a in actions if isinstance(a, Send) and a.connection == PE_CONNECTION]

    def claim(
        self, number: int, sender: int, owner: str = "pe-1"
    ) -> tuple[list[int], list[Message]]:
        """``sender`` announces PE 0x42 homed at itself: A's refusals, what A told the PE."""
        update = enrp.HandleUpdate(
            sender, 0, enrp.UpdateAction.ADD_PE, POOL, element(PE, sender, 7002, owner=owner)
        )
        actions = self.take(self.core.enrp_message_received(number, update, self.now))
        answers = [a.message for a in actions if isinstance(a, SendEnrp) and a.connection == number]
        told = [a.message for a in actions if isinstance(a, Send) and a.connection == PE_CONNECTION]
        return refusals(answers), told

    def alive(self) -> None:
        """B and C keep sending presences (they stay alive to A)."""
        for number, server in ((self.b, B), (self.c, C)):
            presence = enrp.Presence(server, 0, self.handlespace.pe_checksum(server))
            self.take(self.core.enrp_message_received(number, presence, self.now))

    def run(self, seconds: float) -> list[CoreAction]:
        end = self.now + seconds
        out: list[CoreAction] = []
        while (deadline := self.core.next_deadline()) is not None and deadline <= end:
            self.now = max(self.now, deadline)
            self.alive()
            out += self.take(self.core.handle_timer(self.now))
        self.now = end
        self.alive()
        return out

    def view(self) -> tuple[int, str | None] | None:
        entry = self.handlespace.get(POOL, PE)
        return None if entry is None else (entry.home_server_identifier, entry.owner_identity)


def keep_alives(messages: list[Message]) -> list[asap.EndpointKeepAlive]:
    return [m for m in messages if isinstance(m, asap.EndpointKeepAlive)]


def test_the_old_home_lets_a_pe_that_moved_go() -> None:
    """The PE re-registered at C (its owner, pe-1) and its association to A no longer
    answers: C's ADD_PE is refused for now, but A asks the PE with a keep-alive at once;
    unanswered within the keep-alive timeout, A lets it go (DEL_PE to B and C) and C's
    next ADD_PE makes C its home at A, owner kept. Without the question the PE would
    have stayed A's until the periodic keep-alive, up to 900 s later."""
    a = OldHome()
    refused, told = a.claim(a.c, C)
    assert refused == [0xA]
    (question,) = keep_alives(told)
    assert question.pe_identifier == PE and not question.home
    assert a.peers.counters["home_change_questions"] == 1
    actions = a.run(TIMEOUT + 0.1)
    assert a.view() is None
    deletes = [
        (x.connection, x.message.update_action)
        for x in actions
        if isinstance(x, SendEnrp) and isinstance(x.message, enrp.HandleUpdate)
    ]
    assert sorted(deletes) == [(a.b, enrp.UpdateAction.DEL_PE), (a.c, enrp.UpdateAction.DEL_PE)]
    refused, told = a.claim(a.c, C)
    assert refused == [] and told == []
    assert a.view() == (C, "pe-1")


def test_the_old_home_lets_a_pe_go_whose_association_closed() -> None:
    """The PE closed its association to A after moving: A removes it at once (as before),
    and C's ADD_PE is accepted."""
    a = OldHome()
    a.claim(a.c, C)
    a.take(a.core.asap_connection_lost(PE_CONNECTION, a.now))
    assert a.view() is None
    assert a.claim(a.c, C) == ([], [])
    assert a.view() == (C, "pe-1")


def test_an_insider_naming_the_owner_cannot_take_a_pe_that_answers() -> None:
    """The attack: C (an insider; the owner identity is known to every insider) claims
    A's PE again and again. The PE answers A's keep-alive over its own association, so it
    stays A's; every claim is refused with cause 10, and the claims cost the PE one
    keep-alive per hold-off (30 s), not one each."""
    a = OldHome()
    questions = 0
    for _ in range(40):
        refused, told = a.claim(a.c, C)
        assert refused == [0xA]
        for question in keep_alives(told):
            assert question.pe_identifier == PE
            questions += 1
            a.take(
                a.core.asap_message_received(
                    PE_CONNECTION, asap.EndpointKeepAliveAck(POOL, PE), a.now
                )
            )
        a.run(0.5)
    assert questions == 1
    assert a.view() == (A, "pe-1")
    a.run(30.0)
    refused, told = a.claim(a.c, C)
    assert refused == [0xA] and len(keep_alives(told)) == 1  # the hold-off passed


def test_a_claim_naming_another_owner_asks_nothing() -> None:
    """Only the owner may move (RFC 5355 2.3): a claim naming another owner, or none, is
    refused and the PE is not even asked."""
    a = OldHome()
    for owner in ("pe-2", None):
        refused, told = a.claim(a.c, C, owner=owner)  # type: ignore[arg-type]
        assert refused == [0xA] and told == []
    a.run(TIMEOUT + 1.0)
    assert a.view() == (A, "pe-1")
    assert a.peers.counters["home_change_questions"] == 0


def test_a_claim_for_a_pe_homed_elsewhere_is_only_refused() -> None:
    """A third server (A) sees C claim B's PE: refused while B lives, no question (A has
    no association to the PE); B's own DEL_PE then frees it and C's ADD_PE applies."""
    a = OldHome()
    b_pe = element(0x77, B, 7077)
    a.take(
        a.core.enrp_message_received(
            a.b, enrp.HandleUpdate(B, 0, enrp.UpdateAction.ADD_PE, POOL, b_pe), a.now
        )
    )
    update = enrp.HandleUpdate(C, 0, enrp.UpdateAction.ADD_PE, POOL, element(0x77, C, 7077))
    actions = a.take(a.core.enrp_message_received(a.c, update, a.now))
    assert any(
        isinstance(x, SendEnrp) and isinstance(x.message, enrp.ErrorMessage) for x in actions
    )
    assert not any(isinstance(x, Send) for x in actions)
    a.take(
        a.core.enrp_message_received(
            a.b, enrp.HandleUpdate(B, 0, enrp.UpdateAction.DEL_PE, POOL, b_pe), a.now
        )
    )
    a.take(a.core.enrp_message_received(a.c, update, a.now))
    entry = a.handlespace.get(POOL, 0x77)
    assert entry is not None and entry.home_server_identifier == C


def test_a_resync_page_claiming_the_pe_asks_it_too() -> None:
    """The new home's claim may come in a W=1 resync page (the audit of C's PEs) rather
    than an ADD_PE: the old home refuses the entry and asks the PE the same way."""
    a = OldHome()
    other = Handlespace()
    other.register(POOL, element(PE, C, 7002), now=0.0)
    presence = enrp.Presence(C, 0, other.pe_checksum(C))
    a.take(a.core.enrp_message_received(a.c, presence, a.now))
    page = enrp.HandleTableResponse(C, A, (enrp.PoolEntry(POOL, (element(PE, C, 7002),)),))
    told = a.to_pe(a.core.enrp_message_received(a.c, page, a.now))
    (question,) = keep_alives(told)
    assert question.pe_identifier == PE
    a.run(TIMEOUT + 0.1)
    assert a.view() is None
