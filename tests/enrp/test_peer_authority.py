"""Peers change only what they own, and server identifiers stay with their identity
(RFC 5355 2.5, 2.17), on the sans-IO EnrpCore with injected time: re-homing, ADD_PE then
DEL_PE, owner changes, the moves that must keep working, identifier theft, pins across
restarts and the policy's bindings."""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from contextlib import contextmanager
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any

import pytest
from twisted.logger import capturedLogs, formatEvent

from twisted_rserpool.enrp.bindings import (
    BindingFileError,
    FileBindingStore,
    MemoryBindingStore,
    ServerIdentifierBindings,
)
from twisted_rserpool.enrp.core import CoreAction, EnrpCore
from twisted_rserpool.enrp.peers import CloseLink, PeerConfig, PeerCore, SendEnrp
from twisted_rserpool.enrp.registrar import RegistrarConfig
from twisted_rserpool.enrp.takeover import TakeoverRegistrar
from twisted_rserpool.handlespace import Handlespace
from twisted_rserpool.security.authorization import AuthorizationPolicy, PolicyError
from twisted_rserpool.security.context import SecurityContext
from twisted_rserpool.wire import enrp
from twisted_rserpool.wire.errors import CauseCode
from twisted_rserpool.wire.parameters import PoolElementParameter, RoundRobinPolicy, TcpTransport

POOL = b"echo"
A, B, C, EVIL = 0x1, 0x2, 0x3, 0x66
REFUSED = CauseCode.REJECTED_DUE_TO_SECURITY_CONSIDERATIONS


def psk(identity: str) -> SecurityContext:
    """A connection whose TLS client chose PSK identity ``identity``."""
    return SecurityContext(True, "TLSv1.3", "TLS_AES_128_GCM_SHA256", psk_identity=identity)


def element(
    pe: int, home: int, port: int, owner: str | None = "pe-1", life: int = 3600
) -> PoolElementParameter:
    address = IPv4Address("127.0.0.1")
    return PoolElementParameter(
        pe,
        home,
        life,
        TcpTransport(port, address),
        RoundRobinPolicy(),
        TcpTransport(port, address),
        owner_identity=owner,
    )


@contextmanager
def logged() -> Iterator[list[str]]:
    """The text of every log event emitted inside the block."""
    lines: list[str] = []
    with capturedLogs() as events:
        yield lines
    lines.extend(formatEvent(event) for event in events)


class Server:
    """Server A's EnrpCore, with peers played by hand over numbered connections."""

    def __init__(
        self,
        *,
        bindings: ServerIdentifierBindings | None = None,
        policy: AuthorizationPolicy | None = None,
    ) -> None:
        policy = policy if policy is not None else AuthorizationPolicy()
        self.handlespace = Handlespace(rng=random.Random(1))
        registrar = TakeoverRegistrar(RegistrarConfig(A), self.handlespace, policy)
        self.peers = PeerCore(PeerConfig(A), self.handlespace, policy, bindings=bindings)
        self.core = EnrpCore(registrar, self.peers)
        self.now = 0.0
        self.sent: list[tuple[int, enrp.EnrpMessage]] = []
        self.closed: list[int] = []
        self.numbers = iter(range(10, 1000))
        self.record(self.core.start(self.now))

    def record(self, actions: list[CoreAction]) -> None:
        for action in actions:
            if isinstance(action, SendEnrp):
                self.sent.append((action.connection, action.message))
            elif isinstance(action, CloseLink):
                self.closed.append(action.connection)

    def connect(self, server: int, identity: str) -> int:
        """A peer connects to us as ``identity`` and announces ``server``."""
        number = next(self.numbers)
        self.record(
            self.core.enrp_connection_ready(number, psk(identity), outgoing=False, now=self.now)
        )
        # The checksum A holds for it: no audit starts.
        self.send(number, enrp.Presence(server, 0, self.handlespace.pe_checksum(server)))
        return number

    def send(self, number: int, message: enrp.EnrpMessage) -> list[enrp.EnrpMessage]:
        """Deliver ``message`` on connection ``number``; what we answered on it."""
        before = len(self.sent)
        self.record(self.core.enrp_message_received(number, message, self.now))
        return [m for n, m in self.sent[before:] if n == number]

    def lose(self, number: int) -> None:
        self.record(self.core.enrp_connection_lost(number, self.now))

    def update(
        self, number: int, sender: int, action: enrp.UpdateAction, pe: PoolElementParameter
    ) -> list[enrp.EnrpMessage]:
        return self.send(number, enrp.HandleUpdate(sender, 0, action, POOL, pe))

    def view(self, pe: int) -> tuple[int, int, str | None] | None:
        """(home, user port, owner identity) of PE ``pe``, or ``None``."""
        entry = self.handlespace.get(POOL, pe)
        if entry is None:
            return None
        transport = entry.element.user_transport
        assert isinstance(transport, TcpTransport)
        return entry.home_server_identifier, transport.port, entry.owner_identity


def refusals(messages: list[enrp.EnrpMessage]) -> list[int]:
    return [m.error.code for m in messages if isinstance(m, enrp.ErrorMessage)]


@pytest.fixture
def pool() -> tuple[Server, int, int]:
    """Server A with live peers B and C; B is home of PE 0x42 (owner pe-1, port 7002)."""
    a = Server()
    b = a.connect(B, "enrp-2")
    c = a.connect(C, "enrp-3")
    a.update(b, B, enrp.UpdateAction.ADD_PE, element(0x42, B, 7002))
    assert a.view(0x42) == (B, 7002, "pe-1")
    return a, b, c


# ---------------------------------------------------------------------- re-homing


def test_add_pe_rehoming_a_live_servers_pe_is_refused_and_logged(
    pool: tuple[Server, int, int],
) -> None:
    """The re-homing attack: C names itself home of B's PE with its own port. A refuses
    with cause 10, logs C's identity and server id, and keeps B's PE as it was."""
    a, _, c = pool
    with logged() as lines:
        answers = a.update(c, C, enrp.UpdateAction.ADD_PE, element(0x42, C, 6666))
    assert refusals(answers) == [REFUSED]
    assert a.view(0x42) == (B, 7002, "pe-1")
    (line,) = [line for line in lines if "refused" in line]
    assert "enrp-3" in line and "0x00000003" in line and "0x00000002" in line
    assert a.peers.counters["updates_refused"] == 1


def test_rehoming_with_the_owner_identity_is_still_refused_while_the_home_lives(
    pool: tuple[Server, int, int],
) -> None:
    """Naming the right owner does not help: owner identities travel in ENRP, so any
    insider knows them. Only the live home may give its PE up."""
    a, b, c = pool
    for _ in range(20):  # repeated, as the attack did every 0.3 s
        a.now += 0.3
        answers = a.update(c, C, enrp.UpdateAction.ADD_PE, element(0x42, C, 6666, owner="pe-1"))
        assert refusals(answers) == [REFUSED]
        # B stays alive: it keeps sending presences.
        a.send(b, enrp.Presence(B, 0, a.handlespace.pe_checksum(B)))
    assert a.view(0x42) == (B, 7002, "pe-1")


def test_add_then_del_of_another_servers_pe_removes_nothing(
    pool: tuple[Server, int, int],
) -> None:
    """ADD_PE then DEL_PE by an insider: both refused, B's PE stays."""
    a, _, c = pool
    assert refusals(a.update(c, C, enrp.UpdateAction.ADD_PE, element(0x42, C, 6666))) == [REFUSED]
    assert refusals(a.update(c, C, enrp.UpdateAction.DEL_PE, element(0x42, C, 6666))) == [REFUSED]
    assert refusals(a.update(c, C, enrp.UpdateAction.DEL_PE, element(0x42, B, 7002))) == [REFUSED]
    assert a.view(0x42) == (B, 7002, "pe-1")


def test_the_home_may_not_change_its_pes_owner(pool: tuple[Server, int, int]) -> None:
    """Even the home server cannot hand a PE to another owner identity (RFC 5355 2.3)."""
    a, b, _ = pool
    with logged() as lines:
        answers = a.update(b, B, enrp.UpdateAction.ADD_PE, element(0x42, B, 6666, owner="pe-2"))
    assert refusals(answers) == [REFUSED]
    assert a.view(0x42) == (B, 7002, "pe-1")
    assert any("'pe-2'" in line and "'pe-1'" in line for line in lines)


def test_the_home_updates_its_pe_and_an_update_without_owner_keeps_it(
    pool: tuple[Server, int, int],
) -> None:
    """The home's own updates apply; one from a peer that does not name the owner keeps
    the owner A knows."""
    a, b, _ = pool
    assert refusals(a.update(b, B, enrp.UpdateAction.ADD_PE, element(0x42, B, 7003))) == []
    assert a.view(0x42) == (B, 7003, "pe-1")
    a.update(b, B, enrp.UpdateAction.ADD_PE, element(0x42, B, 7004, owner=None))
    assert a.view(0x42) == (B, 7004, "pe-1")


def test_a_pe_of_unknown_owner_from_an_old_peer_is_stored_without_owner() -> None:
    """A peer that does not speak the owner parameter: the PE is stored with no owner
    (the registrar then refuses a re-registration of it: the safe default)."""
    a = Server()
    b = a.connect(B, "enrp-2")
    a.update(b, B, enrp.UpdateAction.ADD_PE, element(0x7, B, 7007, owner=None))
    assert a.view(0x7) == (B, 7007, None)


# ---------------------------------------------------------------------- moves that work


def test_a_pe_may_move_once_its_home_is_gone(pool: tuple[Server, int, int]) -> None:
    """The PE's home is dead to us (its connection gone): the PE re-registered at C may
    move there, with its owner."""
    a, b, c = pool
    a.lose(b)
    answers = a.update(c, C, enrp.UpdateAction.ADD_PE, element(0x42, C, 7002))
    assert refusals(answers) == []
    assert a.view(0x42) == (C, 7002, "pe-1")


def test_a_silent_home_no_longer_holds_its_pes(pool: tuple[Server, int, int]) -> None:
    """Connected but not heard within MAX-TIME-LAST-HEARD is not alive either."""
    a, _, c = pool
    a.now += PeerConfig(A).max_time_last_heard + 0.5
    a.send(c, enrp.Presence(C, 0, 0))
    assert refusals(a.update(c, C, enrp.UpdateAction.ADD_PE, element(0x42, C, 7002))) == []
    assert a.view(0x42) == (C, 7002, "pe-1")


def test_a_move_may_not_change_the_owner(pool: tuple[Server, int, int]) -> None:
    """A dead home's PE moves only with its owner identity."""
    a, b, c = pool
    a.lose(b)
    answers = a.update(c, C, enrp.UpdateAction.ADD_PE, element(0x42, C, 6666, owner="pe-2"))
    assert refusals(answers) == [REFUSED]
    assert a.view(0x42) == (B, 7002, "pe-1")


def test_accepted_takeover_lets_the_new_home_update_the_pe(
    pool: tuple[Server, int, int],
) -> None:
    """After an ENRP_TAKEOVER_SERVER we accepted (B is dead to us), C is the home."""
    a, b, c = pool
    a.lose(b)
    assert refusals(a.send(c, enrp.TakeoverServer(C, 0, B))) == []
    assert a.view(0x42) == (C, 7002, "pe-1")
    assert refusals(a.update(c, C, enrp.UpdateAction.ADD_PE, element(0x42, C, 7005))) == []
    assert a.view(0x42) == (C, 7005, "pe-1")
    assert refusals(a.update(c, C, enrp.UpdateAction.DEL_PE, element(0x42, C, 7005))) == []
    assert a.view(0x42) is None


def test_takeover_of_a_live_server_is_refused(pool: tuple[Server, int, int]) -> None:
    """C cannot take B over while A hears B: B's PE stays B's."""
    a, _, c = pool
    assert refusals(a.send(c, enrp.TakeoverServer(C, 0, B))) == [REFUSED]
    assert refusals(a.update(c, C, enrp.UpdateAction.ADD_PE, element(0x42, C, 6666))) == [REFUSED]
    assert a.view(0x42) == (B, 7002, "pe-1")


def test_a_move_while_the_old_home_lives_completes_when_it_lets_go(
    pool: tuple[Server, int, int],
) -> None:
    """The PE re-registered at C while B still had it: A refuses C's ADD_PE, B's DEL_PE
    (the PE left B) removes it, and the checksum audit of C's PEs brings it back homed at
    C, owner kept."""
    a, b, c = pool
    moved = element(0x42, C, 7002)
    assert refusals(a.update(c, C, enrp.UpdateAction.ADD_PE, moved)) == [REFUSED]
    a.update(b, B, enrp.UpdateAction.DEL_PE, element(0x42, B, 7002))
    assert a.view(0x42) is None
    # C's presence carries the checksum of its PEs, which now include 0x42.
    checksum = Handlespace()
    checksum.register(POOL, moved, now=0.0)
    (request,) = a.send(c, enrp.Presence(C, 0, checksum.pe_checksum(C)))
    assert isinstance(request, enrp.HandleTableRequest) and request.own_children_only
    page = enrp.HandleTableResponse(C, A, (enrp.PoolEntry(POOL, (moved,)),))
    assert refusals(a.send(c, page)) == []
    assert a.view(0x42) == (C, 7002, "pe-1")


def test_a_pe_registered_here_is_not_rehomed_by_a_peer() -> None:
    """A's own authenticated registration is A's: a peer cannot move it."""
    a = Server()
    c = a.connect(C, "enrp-3")
    ours = element(0x9, A, 7009, owner=None)
    a.handlespace.register(POOL, ours, now=0.0, identity="pe-1", owner_identity="pe-1")
    assert refusals(a.update(c, C, enrp.UpdateAction.ADD_PE, element(0x9, C, 6666))) == [REFUSED]
    assert refusals(a.update(c, C, enrp.UpdateAction.DEL_PE, element(0x9, A, 7009))) == [REFUSED]
    assert a.view(0x9) == (A, 7009, "pe-1")


def test_handle_table_page_may_not_rehome_a_live_servers_pe(
    pool: tuple[Server, int, int],
) -> None:
    """The same limits hold for handle table pages: C's resync page naming B's PE as its
    own is refused entry by entry."""
    a, _, c = pool
    stolen = element(0x42, C, 6666)
    (request,) = a.send(c, enrp.Presence(C, 0, 0x1234))
    assert isinstance(request, enrp.HandleTableRequest)
    a.send(c, enrp.HandleTableResponse(C, A, (enrp.PoolEntry(POOL, (stolen,)),)))
    assert a.view(0x42) == (B, 7002, "pe-1")
    assert a.peers.counters["table_entries_refused"] == 1


# ---------------------------------------------------------------------- server identifiers


def test_stealing_an_identifier_after_its_server_dropped_is_refused() -> None:
    """B's connection drops; an insider with another identity claims B's identifier and
    is refused (cause 10, closed, both identities logged); B reconnecting is accepted."""
    a = Server()
    b = a.connect(B, "enrp-2")
    a.lose(b)
    with logged() as lines:
        evil = a.connect(B, "enrp-evil")
    assert evil in a.closed
    assert refusals([m for n, m in a.sent if n == evil]) == [REFUSED]
    assert a.peers.peers[B].identity == "enrp-2"
    assert any("enrp-evil" in line and "'enrp-2'" in line for line in lines)
    again = a.connect(B, "enrp-2")
    assert again not in a.closed and a.peers.peers[B].links == [again]


def test_one_identifier_per_identity() -> None:
    """An identity that announced one identifier cannot hold a second one."""
    a = Server()
    a.connect(C, "enrp-3")
    second = a.connect(0x33, "enrp-3")
    assert second in a.closed and 0x33 not in a.peers.peers
    assert a.peers.counters["refused_server_identifier"] == 1


def test_the_identity_we_chose_on_our_own_connection_binds_nothing() -> None:
    """On a connection we opened with a PSK, the identity is ours: it does not name the
    far end, so it neither pins nor is checked."""
    a = Server()
    a.record(a.core.enrp_connection_ready(50, psk("enrp-1"), outgoing=True, now=0.0))
    a.send(50, enrp.Presence(B, 0, 0))
    a.record(a.core.enrp_connection_ready(51, psk("enrp-1"), outgoing=True, now=0.0))
    a.send(51, enrp.Presence(C, 0, 0))
    assert set(a.peers.peers) == {B, C} and a.closed == []
    assert a.peers.bindings.owner(B) is None


def test_pins_persist_across_restarts(tmp_path: Path) -> None:
    """Pins are written to the state file; a restarted server refuses the thief at once
    and accepts the owner."""
    path = tmp_path / "state" / "server-identifiers.json"
    first = Server(bindings=ServerIdentifierBindings({}, FileBindingStore(path)))
    first.connect(B, "enrp-2")
    document = json.loads(path.read_text())
    assert document == {"version": 1, "bindings": {"enrp-2": "0x00000002"}}
    restarted = Server(bindings=ServerIdentifierBindings({}, FileBindingStore(path)))
    evil = restarted.connect(B, "enrp-evil")
    assert evil in restarted.closed
    assert restarted.connect(B, "enrp-2") not in restarted.closed
    assert not list(path.parent.glob(".bindings-*"))  # no temporary file left behind


def test_bad_pin_file_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "pins.json"
    path.write_text('{"version": 1, "bindings": {"x": "zero"}}')
    with pytest.raises(BindingFileError):
        FileBindingStore(path).load()
    path.write_text('{"version": 1, "bindings": {"x": "0x0"}}')
    with pytest.raises(BindingFileError):
        FileBindingStore(path).load()
    assert FileBindingStore(tmp_path / "absent.json").load() == {}


def test_policy_binds_before_first_use() -> None:
    """With ``server-identifier`` in the policy, a thief that comes first is refused too,
    and the bound identity may announce no other identifier."""
    policy = AuthorizationPolicy.from_mapping(
        {"identities": {"enrp-2": {"roles": ["enrp-server"], "server-identifier": 2}}}
        | {"default": {"roles": ["enrp-server"]}}
    )
    assert policy.server_identifiers() == {"enrp-2": 2}
    a = Server(policy=policy)
    assert a.connect(B, "enrp-evil") in a.closed
    assert a.connect(0x5, "enrp-2") in a.closed
    assert a.connect(B, "enrp-2") not in a.closed


def test_policy_wins_over_an_old_pin() -> None:
    store = MemoryBindingStore({"enrp-old": 2})
    bindings = ServerIdentifierBindings({"enrp-2": 2}, store)
    assert bindings.owner(2) == "enrp-2"
    assert bindings.check("enrp-old", 2) is not None
    assert bindings.check("enrp-2", 2) is None


@pytest.mark.parametrize(
    "document",
    [
        {"identities": {"x": {"server-identifier": 0}}},
        {"identities": {"x": {"server-identifier": "2"}}},
        {"identities": {"x": {"server-identifier": 1 << 32}}},
        {"identities": {"x": {"server-identifier": 2}, "y": {"server-identifier": 2}}},
        {"default": {"server-identifier": 2}},
    ],
)
def test_policy_server_identifier_errors(document: dict[str, Any]) -> None:
    with pytest.raises(PolicyError):
        AuthorizationPolicy.from_mapping(document)
