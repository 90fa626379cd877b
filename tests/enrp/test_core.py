"""EnrpCore, the one sans-IO core of an ENRP server: both sides answered in one call,
takeover connections to PEs (authentication, H keep-alive, grant, acknowledgement, idle
close), and its contract (one handlespace, peering required for ENRP)."""

from __future__ import annotations

import random
from ipaddress import IPv4Address

import pytest

from twisted_rserpool.enrp.core import CoreAction, EnrpCore
from twisted_rserpool.enrp.peers import HomeKeepAlive, PeerConfig, PeerCore, SendEnrp
from twisted_rserpool.enrp.registrar import Close, Registrar, RegistrarConfig, Send
from twisted_rserpool.enrp.takeover import TakeoverRegistrar
from twisted_rserpool.handlespace import Handlespace
from twisted_rserpool.security.authorization import AuthorizationPolicy, Role, policy_granting
from twisted_rserpool.security.context import SecurityContext
from twisted_rserpool.wire import asap, enrp
from twisted_rserpool.wire.parameters import PoolElementParameter, RoundRobinPolicy, TcpTransport

POOL = b"echo"
US, PEER = 0x1, 0x2
LOOPBACK = IPv4Address("127.0.0.1")
PEER_LINK, PE_CONNECTION, PU_CONNECTION, HOME_CONNECTION = 10, 20, 21, 30


def psk(identity: str) -> SecurityContext:
    return SecurityContext(True, "TLSv1.3", "TLS_AES_128_GCM_SHA256", psk_identity=identity)


def pe(identifier: int, home: int = 0, port: int = 7000) -> PoolElementParameter:
    transport = TcpTransport(port, LOOPBACK)
    return PoolElementParameter(identifier, home, 3600, transport, RoundRobinPolicy(), transport)


def core(policy: AuthorizationPolicy | None = None) -> EnrpCore:
    policy = policy if policy is not None else AuthorizationPolicy()
    handlespace = Handlespace(rng=random.Random(1))
    registrar = TakeoverRegistrar(
        RegistrarConfig(US, keep_alive_timeout=5.0), handlespace, policy, rng=random.Random(1)
    )
    result = EnrpCore(registrar, PeerCore(PeerConfig(US), handlespace, policy))
    result.start(0.0)
    return result


def with_peer(server: EnrpCore) -> None:
    server.enrp_connection_ready(PEER_LINK, psk("enrp-2"), outgoing=False, now=0.0)
    server.enrp_message_received(
        PEER_LINK, enrp.Presence(PEER, 0, server.handlespace.pe_checksum(PEER)), 0.0
    )


def sent(actions: list[CoreAction], connection: int) -> list[object]:
    return [
        a.message for a in actions if isinstance(a, Send | SendEnrp) and a.connection == connection
    ]


def test_a_registration_is_answered_and_announced_in_one_call() -> None:
    """The core settles both outboxes: the PE's answer and the peer's HANDLE_UPDATE come
    back from the one call that delivered the registration."""
    server = core()
    with_peer(server)
    server.asap_connection_ready(PE_CONNECTION, psk("pe-1"), ("127.0.0.1", 40000))
    actions = server.asap_message_received(PE_CONNECTION, asap.Registration(POOL, pe(7)), 1.0)
    (response,) = sent(actions, PE_CONNECTION)
    assert isinstance(response, asap.RegistrationResponse) and not response.reject
    (update,) = sent(actions, PEER_LINK)
    assert isinstance(update, enrp.HandleUpdate)
    assert update.update_action is enrp.UpdateAction.ADD_PE
    assert update.pool_element.owner_identity == "pe-1"  # the owner travels


def test_a_peers_update_reaches_the_registrars_subscribers_in_one_call() -> None:
    """A PU that subscribed (S flag) hears of a PE a peer announced, from the same call."""
    server = core()
    with_peer(server)
    server.enrp_message_received(
        PEER_LINK,
        enrp.HandleUpdate(PEER, 0, enrp.UpdateAction.ADD_PE, POOL, pe(5, home=PEER)),
        1.0,
    )
    server.asap_connection_ready(PU_CONNECTION, psk("pu"), ("127.0.0.1", 40001))
    server.asap_message_received(PU_CONNECTION, asap.HandleResolution(POOL, subscribe=True), 1.0)
    actions = server.enrp_message_received(
        PEER_LINK,
        enrp.HandleUpdate(PEER, 0, enrp.UpdateAction.ADD_PE, POOL, pe(6, home=PEER, port=7006)),
        2.0,
    )
    (update,) = sent(actions, PU_CONNECTION)
    assert isinstance(update, asap.HandleResolutionResponse)
    assert {e.pe_identifier for e in update.pool_elements} == {5, 6}


def test_a_takeover_connection_carries_the_h_keep_alive_and_admits_only_that_pe() -> None:
    """Our connection to a PE taken over: the H keep-alive goes out on it, the PE's
    acknowledgement keeps it, and only that PE may register over it whatever the policy."""
    policy = policy_granting(["pe-1"], [Role.POOL_ELEMENT])
    server = core(policy)
    server.handlespace.register(
        POOL, pe(42, home=US), now=0.0, identity=None, owner_identity="pe-1"
    )
    server.handlespace.keep_alive_sent(POOL, 42, now=0.0, timeout=5.0)
    action = HomeKeepAlive(POOL, 42, TcpTransport(7000, LOOPBACK), US)
    actions = server.home_connection_ready(
        HOME_CONNECTION, psk("enrp-1"), ("127.0.0.1", 7000), action, 0.5
    )
    (keep_alive,) = sent(actions, HOME_CONNECTION)
    assert keep_alive == asap.EndpointKeepAlive(US, POOL, home=True, pe_identifier=42)
    server.asap_message_received(HOME_CONNECTION, asap.EndpointKeepAliveAck(POOL, 42), 1.0)
    entry = server.handlespace.get(POOL, 42)
    assert entry is not None and entry.keep_alive_deadline is None
    answers = sent(
        server.asap_message_received(HOME_CONNECTION, asap.Registration(POOL, pe(42)), 1.0),
        HOME_CONNECTION,
    )
    assert [a.reject for a in answers if isinstance(a, asap.RegistrationResponse)] == [False]
    other = sent(
        server.asap_message_received(HOME_CONNECTION, asap.Registration(POOL, pe(43)), 1.0),
        HOME_CONNECTION,
    )
    assert [a.reject for a in other if isinstance(a, asap.RegistrationResponse)] == [True]
    # A PE registered over it: the connection stays past the idle time.
    assert [a for a in server.handle_timer(11.0) if isinstance(a, Close)] == []


def test_an_idle_takeover_connection_is_closed() -> None:
    """No PE re-registered over the takeover connection within twice the keep-alive
    timeout: the core closes it (at the deadline it announced)."""
    server = core()
    action = HomeKeepAlive(POOL, 42, TcpTransport(7000, LOOPBACK), US)
    server.home_connection_ready(HOME_CONNECTION, psk("enrp-1"), None, action, 0.0)
    deadline = server.next_deadline()
    assert deadline is not None and deadline <= 10.0
    assert [a for a in server.handle_timer(9.0) if isinstance(a, Close)] == []
    closes = [a for a in server.handle_timer(10.0) if isinstance(a, Close)]
    assert [c.connection for c in closes] == [HOME_CONNECTION]


def test_an_unauthenticated_pe_gets_no_h_keep_alive() -> None:
    server = core()
    action = HomeKeepAlive(POOL, 42, TcpTransport(7000, LOOPBACK), US)
    actions = server.home_connection_ready(
        HOME_CONNECTION, SecurityContext(authenticated=False), None, action, 0.0
    )
    assert actions == [Close(HOME_CONNECTION, "the PE did not authenticate")]
    assert HOME_CONNECTION not in server.registrar.connections


def test_the_core_needs_one_handlespace_and_peering_for_enrp() -> None:
    policy = AuthorizationPolicy()
    registrar = Registrar(RegistrarConfig(US), Handlespace(), policy)
    with pytest.raises(ValueError):
        EnrpCore(registrar, PeerCore(PeerConfig(US), Handlespace(), policy))
    alone = EnrpCore(registrar)
    with pytest.raises(RuntimeError):
        alone.enrp_connection_ready(PEER_LINK, psk("enrp-2"), outgoing=False, now=0.0)
    assert alone.enrp_connection_lost(PEER_LINK, 0.0) == []
