"""Registration rules, refusals, ownership and checksums, expiry, keep-alives and events."""

from __future__ import annotations

import random
from dataclasses import replace

import pytest

from tests.handlespace.support import HOME, PEER, element, sctp, tcp, udp
from twisted_rserpool.handlespace import (
    DeregistrationRefused,
    Handlespace,
    HandlespaceEvent,
    HandlespaceLimits,
    PoolCreated,
    PoolElementAdded,
    PoolElementRemoved,
    PoolElementUpdated,
    PoolRemoved,
    RegistrationRefused,
    RemovalReason,
    UnknownPoolHandle,
    UpdateReason,
    compute_pe_checksum,
)
from twisted_rserpool.wire.errors import CauseCode
from twisted_rserpool.wire.parameters import (
    LeastUsedPolicy,
    RandomPolicy,
    RoundRobinPolicy,
    TransportUse,
    WeightedRandomPolicy,
)

H = b"echo"


def refusal(call: object) -> RegistrationRefused:
    """Run ``call`` and return the RegistrationRefused it raises."""
    with pytest.raises(RegistrationRefused) as info:
        call()  # type: ignore[operator]
    return info.value


def test_first_registration_creates_pool_with_its_configuration() -> None:
    """RFC 5352 3.1 rule 1: the first PE creates the pool and fixes its policy, transport
    type and data/control configuration; both events are returned."""
    hs = Handlespace()
    pe = element(1, LeastUsedPolicy(5), transport=sctp(TransportUse.DATA_PLUS_CONTROL))
    events = hs.register(H, pe, now=0.0, identity="alice")
    assert events == [
        PoolCreated(H, LeastUsedPolicy(5), pe.user_transport),
        PoolElementAdded(H, pe, "alice"),
    ]
    pool = hs.pool(H)
    assert pool.policy_type == LeastUsedPolicy.POLICY_TYPE
    assert pool.transport_type == 0x4
    assert pool.transport_use is TransportUse.DATA_PLUS_CONTROL
    entry = hs.get(H, 1)
    assert entry is not None
    assert (entry.identity, entry.home_server_identifier, entry.expires_at) == ("alice", HOME, 60.0)
    assert len(hs) == 1 and H in hs


def test_inconsistent_policy_is_refused_with_pool_policy() -> None:
    """RFC 5352 3.1 rule 2 / RFC 5354 3.12.6: another policy type is refused and the error
    carries the pool's overall policy."""
    hs = Handlespace()
    hs.register(H, element(1, LeastUsedPolicy(5)), now=0.0)
    error = refusal(lambda: hs.register(H, element(2, RoundRobinPolicy()), now=0.0))
    assert error.cause is CauseCode.INCONSISTENT_POOLING_POLICY
    assert error.pool_policy == LeastUsedPolicy(5)
    assert "0x40000001" in error.reason
    assert hs.get(H, 2) is None


def test_inconsistent_transport_type_is_refused_with_pool_transport() -> None:
    """RFC 5354 3.12.8: a UDP PE in a TCP pool is refused; the error carries the transport."""
    hs = Handlespace()
    hs.register(H, element(1, RoundRobinPolicy(), transport=tcp()), now=0.0)
    error = refusal(
        lambda: hs.register(H, element(2, RoundRobinPolicy(), transport=udp()), now=0.0)
    )
    assert error.cause is CauseCode.INCONSISTENT_TRANSPORT_TYPE
    assert error.pool_transport == tcp()


def test_inconsistent_data_control_configuration_is_refused() -> None:
    """RFC 5354 3.12.9: an SCTP PE with another transport use than the pool is refused."""
    hs = Handlespace()
    hs.register(H, element(1, RoundRobinPolicy(), transport=sctp(TransportUse.DATA_ONLY)), now=0.0)
    error = refusal(
        lambda: hs.register(
            H,
            element(2, RoundRobinPolicy(), transport=sctp(TransportUse.DATA_PLUS_CONTROL)),
            now=0.0,
        )
    )
    assert error.cause is CauseCode.INCONSISTENT_DATA_CONTROL_CONFIGURATION


def test_reregistration_is_checked_for_consistency_too() -> None:
    """RFC 5352 3.1 rule 3: a re-registration that changes the policy type is refused."""
    hs = Handlespace()
    hs.register(H, element(1, LeastUsedPolicy(5)), now=0.0)
    hs.register(H, element(2, LeastUsedPolicy(5)), now=0.0)
    error = refusal(lambda: hs.register(H, element(1, RandomPolicy()), now=0.0))
    assert error.cause is CauseCode.INCONSISTENT_POOLING_POLICY


def test_reregistration_updates_in_place() -> None:
    """Re-registration replaces the PE's attributes, restarts its life, returns an update."""
    hs = Handlespace()
    old = element(1, LeastUsedPolicy(5))
    hs.register(H, old, now=0.0, identity="alice")
    new = element(1, LeastUsedPolicy(9), life=120)
    events = hs.register(H, new, now=10.0, identity="alice")
    assert events == [PoolElementUpdated(H, new, old, UpdateReason.REREGISTERED)]
    entry = hs.get(H, 1)
    assert entry is not None
    assert entry.element == new and entry.expires_at == 130.0 and entry.updated_at == 10.0
    assert len(hs) == 1


def test_pe_identifier_of_another_identity_is_refused() -> None:
    """A PE identifier held by another identity is refused with Non-Unique PE Identifier;
    the same identifier in another pool is a different PE and fine."""
    hs = Handlespace()
    hs.register(H, element(1, RoundRobinPolicy()), now=0.0, identity="alice")
    error = refusal(
        lambda: hs.register(H, element(1, RoundRobinPolicy()), now=0.0, identity="mallory")
    )
    assert error.cause is CauseCode.NON_UNIQUE_PE_IDENTIFIER
    hs.register(b"other", element(1, RoundRobinPolicy()), now=0.0, identity="mallory")
    entry = hs.get(H, 1)
    assert entry is not None and entry.identity == "alice"


def test_peer_learnt_pe_adopts_identity_on_registration() -> None:
    """A PE learnt from a peer (no identity) that registers here takes the identity."""
    hs = Handlespace()
    hs.register(H, element(1, RoundRobinPolicy(), home=PEER), now=0.0)
    hs.register(H, element(1, RoundRobinPolicy(), home=HOME), now=1.0, identity="alice")
    entry = hs.get(H, 1)
    assert entry is not None and entry.identity == "alice" and entry.home_server_identifier == HOME
    # A later peer update without identity keeps it.
    hs.register(H, element(1, RoundRobinPolicy(), home=PEER), now=2.0)
    assert entry.identity == "alice"


def test_empty_pool_handle_is_invalid() -> None:
    """An empty pool handle is refused with Invalid Values."""
    error = refusal(lambda: Handlespace().register(b"", element(1, RoundRobinPolicy()), now=0.0))
    assert error.cause is CauseCode.INVALID_VALUES


@pytest.mark.parametrize(
    ("limits", "setup", "attempt", "words"),
    [
        (HandlespaceLimits(max_pool_handle_length=4), [], (b"toolong", 1, HOME, None), "longer"),
        (HandlespaceLimits(max_pools=1), [(b"a", 1, HOME, None)], (b"b", 2, HOME, None), "pools"),
        (
            HandlespaceLimits(max_elements_per_pool=1),
            [(H, 1, HOME, None)],
            (H, 2, HOME, None),
            "already has",
        ),
        (
            HandlespaceLimits(max_elements_per_owner=1),
            [(H, 1, HOME, None)],
            (b"x", 2, HOME, None),
            "owns",
        ),
        (
            HandlespaceLimits(max_elements_per_identity=1),
            [(H, 1, HOME, "alice")],
            (b"x", 2, HOME, "alice"),
            "identity",
        ),
        (
            HandlespaceLimits(max_elements_per_owner=1),
            [(H, 1, HOME, None), (H, 2, PEER, None)],
            (H, 2, HOME, None),
            "owns",
        ),
        (
            HandlespaceLimits(max_elements_per_identity=1),
            [(H, 1, HOME, "alice"), (H, 2, PEER, None)],
            (H, 2, HOME, "alice"),
            "identity",
        ),
    ],
    ids=[
        "handle-length",
        "pools",
        "per-pool",
        "per-owner",
        "per-identity",
        "rehome-over-owner-limit",
        "adopt-over-identity-limit",
    ],
)
def test_limits_are_refused_with_lack_of_resources(
    limits: HandlespaceLimits,
    setup: list[tuple[bytes, int, int, str | None]],
    attempt: tuple[bytes, int, int, str | None],
    words: str,
) -> None:
    """Every limit refuses with Lack of Resources and a reason that names it."""
    hs = Handlespace(limits)
    for handle, pe_id, home, identity in setup:
        hs.register(
            handle, element(pe_id, RoundRobinPolicy(), home=home), now=0.0, identity=identity
        )
    before = len(hs)
    handle, pe_id, home, identity = attempt
    error = refusal(
        lambda: hs.register(
            handle, element(pe_id, RoundRobinPolicy(), home=home), now=0.0, identity=identity
        )
    )
    assert error.cause is CauseCode.LACK_OF_RESOURCES
    assert words in error.reason
    assert len(hs) == before


def test_reregistration_within_limits_is_not_refused() -> None:
    """A full pool still accepts re-registrations of its own PEs."""
    hs = Handlespace(HandlespaceLimits(max_elements_per_pool=1, max_elements_per_identity=1))
    hs.register(H, element(1, RoundRobinPolicy()), now=0.0, identity="alice")
    hs.register(H, element(1, RoundRobinPolicy(), life=5), now=1.0, identity="alice")


def test_deregistration_removes_pe_and_empty_pool() -> None:
    """RFC 5352 3.2: the PE goes; the pool goes with its last PE."""
    hs = Handlespace()
    pe = element(1, RoundRobinPolicy())
    hs.register(H, pe, now=0.0, identity="alice")
    events = hs.deregister(H, 1, identity="alice")
    assert events == [PoolElementRemoved(H, pe, RemovalReason.DEREGISTERED), PoolRemoved(H)]
    assert H not in hs and len(hs) == 0
    assert hs.owners() == []


def test_deregistration_of_unknown_pe_is_granted_silently() -> None:
    """RFC 5352 3.2: an unknown PE counts as de-registered (no events, no error)."""
    assert Handlespace().deregister(H, 7) == []


def test_deregistration_by_another_identity_is_rejected() -> None:
    """Only the identity that registered a PE may de-register it."""
    hs = Handlespace()
    hs.register(H, element(1, RoundRobinPolicy()), now=0.0, identity="alice")
    with pytest.raises(DeregistrationRefused) as info:
        hs.deregister(H, 1, identity="mallory")
    assert info.value.cause is CauseCode.REJECTED_DUE_TO_SECURITY_CONSIDERATIONS
    assert hs.get(H, 1) is not None


def test_select_unknown_pool_raises_unknown_pool_handle() -> None:
    """RFC 5352 3.3: a resolution of a missing pool is answered with Unknown Pool Handle."""
    with pytest.raises(UnknownPoolHandle) as info:
        Handlespace().select(b"nope", 3)
    assert info.value.cause is CauseCode.UNKNOWN_POOL_HANDLE


def test_checksums_follow_every_change() -> None:
    """The per-owner PE checksum kept incrementally equals RFC 5353 3.6.2 from scratch."""
    hs = Handlespace()
    for pe_id in range(1, 6):
        hs.register(b"abc", element(pe_id, RoundRobinPolicy()), now=0.0)
        hs.register(b"defgh", element(pe_id, RoundRobinPolicy(), home=PEER), now=0.0)
    expected = compute_pe_checksum((b"abc", pe_id) for pe_id in range(1, 6))
    assert hs.pe_checksum(HOME) == expected == hs.recompute_pe_checksum(HOME)
    hs.deregister(b"abc", 3)
    hs.register(b"defgh", element(2, RoundRobinPolicy(), home=HOME), now=1.0)
    for owner in (HOME, PEER):
        assert hs.pe_checksum(owner) == hs.recompute_pe_checksum(owner)
    assert hs.pe_checksum(0x999) == 0xFFFF


def test_take_over_rehomes_all_pes_of_an_owner() -> None:
    """RFC 5353 3.9: after takeover every PE of the dead server belongs to the new home;
    checksums move with them and each PE yields a TAKEOVER update."""
    hs = Handlespace()
    for pe_id in range(1, 4):
        hs.register(H, element(pe_id, RoundRobinPolicy(), home=PEER), now=0.0)
    hs.register(H, element(9, RoundRobinPolicy()), now=0.0)
    peer_sum = hs.pe_checksum(PEER)
    events = hs.take_over(PEER, HOME, now=5.0)
    assert [type(e) for e in events] == [PoolElementUpdated] * 3
    assert all(e.reason is UpdateReason.TAKEOVER for e in events)  # type: ignore[union-attr]
    assert hs.owned_count(PEER) == 0 and hs.owned_count(HOME) == 4
    assert [e.home_server_identifier for e in hs.elements_owned_by(HOME)] == [HOME] * 4
    assert hs.pe_checksum(HOME) == hs.recompute_pe_checksum(HOME)
    assert hs.pe_checksum(PEER) == 0xFFFF != peer_sum


def test_remove_owner_drops_its_pes_only() -> None:
    """Removing an owner's PEs (before re-synchronising) leaves other owners' PEs alone."""
    hs = Handlespace()
    hs.register(H, element(1, RoundRobinPolicy(), home=PEER), now=0.0)
    hs.register(b"solo", element(2, RoundRobinPolicy(), home=PEER), now=0.0)
    hs.register(H, element(3, RoundRobinPolicy()), now=0.0)
    events = hs.remove_owner(PEER)
    removed = [e for e in events if isinstance(e, PoolElementRemoved)]
    assert {e.element.pe_identifier for e in removed} == {1, 2}
    assert PoolRemoved(b"solo") in events
    assert [e.pe_identifier for e in hs.elements()] == [3]


def test_expiry_removes_pes_when_their_life_runs_out() -> None:
    """PEs disappear once their registration life has passed, not before; -1 is infinite."""
    hs = Handlespace()
    hs.register(H, element(1, RoundRobinPolicy(), life=10), now=0.0)
    hs.register(H, element(2, RoundRobinPolicy(), life=20), now=0.0)
    hs.register(H, element(3, RoundRobinPolicy(), life=-1), now=0.0)
    assert hs.next_deadline() == 10.0
    assert hs.expire(9.999) == []
    events = hs.expire(10.0)
    assert events == [
        PoolElementRemoved(
            H, element(1, RoundRobinPolicy(), life=10), RemovalReason.REGISTRATION_EXPIRED
        )
    ]
    hs.register(H, element(2, RoundRobinPolicy(), life=20), now=15.0)  # re-registered in time
    assert hs.next_deadline() == 35.0
    assert hs.expire(30.0) == []
    assert len(hs.expire(35.0)) == 1
    assert hs.next_deadline() is None and len(hs) == 1


def test_keep_alive_timeout_and_acknowledgement() -> None:
    """An unanswered keep-alive removes the PE at its deadline; an ACK or a re-registration
    cancels it; a second keep-alive does not extend the first deadline."""
    hs = Handlespace()
    for pe_id in (1, 2, 3):
        hs.register(H, element(pe_id, RoundRobinPolicy(), life=-1), now=0.0)
    assert hs.keep_alive_sent(H, 1, now=1.0, timeout=5.0)
    assert hs.keep_alive_sent(H, 1, now=3.0, timeout=5.0)
    hs.keep_alive_sent(H, 2, now=1.0, timeout=5.0)
    hs.keep_alive_sent(H, 3, now=1.0, timeout=5.0)
    assert hs.keep_alive_acknowledged(H, 2)
    hs.register(H, element(3, RoundRobinPolicy(), life=-1), now=2.0)
    assert hs.next_deadline() == 6.0
    events = hs.expire(6.0)
    assert [
        (e.element.pe_identifier, e.reason) for e in events if isinstance(e, PoolElementRemoved)
    ] == [(1, RemovalReason.KEEP_ALIVE_TIMEOUT)]
    assert not hs.keep_alive_sent(H, 1, now=7.0, timeout=5.0)
    assert not hs.keep_alive_acknowledged(H, 1)


def test_unreachable_reports_count_until_reregistration() -> None:
    """ASAP_ENDPOINT_UNREACHABLE reports are counted per PE and reset by re-registration."""
    hs = Handlespace()
    hs.register(H, element(1, RoundRobinPolicy()), now=0.0)
    assert [hs.report_unreachable(H, 1) for _ in range(3)] == [1, 2, 3]
    hs.register(H, element(1, RoundRobinPolicy()), now=1.0)
    assert hs.report_unreachable(H, 1) == 1
    assert hs.report_unreachable(H, 99) == 0
    events = hs.deregister(H, 1, reason=RemovalReason.UNREACHABLE)
    assert events[0] == PoolElementRemoved(
        H, element(1, RoundRobinPolicy()), RemovalReason.UNREACHABLE
    )


def test_observers_see_events_per_pool_and_globally() -> None:
    """Subscribers of one pool see only its events; global ones see all; a failing observer
    does not stop the others; cancel() ends delivery."""
    hs = Handlespace()
    everything: list[HandlespaceEvent] = []
    echo: list[HandlespaceEvent] = []

    def broken(event: HandlespaceEvent) -> None:
        raise RuntimeError("observer bug")

    hs.subscribe(broken)
    hs.subscribe(everything.append)
    subscription = hs.subscribe(echo.append, H)
    hs.register(H, element(1, RoundRobinPolicy()), now=0.0)
    hs.register(b"other", element(1, RoundRobinPolicy()), now=0.0)
    assert len(everything) == 4 and len(echo) == 2
    assert {event.pool_handle for event in echo} == {H}
    subscription.cancel()
    subscription.cancel()
    hs.deregister(H, 1)
    assert len(echo) == 2 and len(everything) == 6


def test_seeded_rng_makes_random_selection_repeatable() -> None:
    """Two handlespaces with equally seeded generators answer identically."""
    hs = Handlespace(rng=random.Random(3))
    hs.register(H, element(1, WeightedRandomPolicy(1)), now=0.0)
    hs.register(H, element(2, WeightedRandomPolicy(1)), now=0.0)
    first = [[e.pe_identifier for e in hs.select(H, 2)] for _ in range(5)]
    hs2 = Handlespace(rng=random.Random(3))
    hs2.register(H, element(1, WeightedRandomPolicy(1)), now=0.0)
    hs2.register(H, element(2, WeightedRandomPolicy(1)), now=0.0)
    assert first == [[e.pe_identifier for e in hs2.select(H, 2)] for _ in range(5)]


def test_entry_exposes_the_pe_parameter() -> None:
    """Entries expose the stored PE parameter and its parts for building messages."""
    hs = Handlespace()
    pe = element(0x1234, LeastUsedPolicy(7))
    hs.register(H, pe, now=0.0)
    entry = hs.get(H, 0x1234)
    assert entry is not None
    assert (entry.pe_identifier, entry.user_transport, entry.asap_transport, entry.policy) == (
        0x1234,
        pe.user_transport,
        pe.asap_transport,
        pe.policy,
    )
    assert entry.registration_life == 60
    assert "0x00001234" in repr(entry)
    assert replace(pe, registration_life=60) == entry.element


def test_resolve_returns_overall_policy_and_parameters() -> None:
    """resolve() gives what a handle resolution response carries: the pool's policy (that
    of its first PE) and the selected PE parameters, in policy order."""
    hs = Handlespace()
    first = element(1, LeastUsedPolicy(7))
    second = element(2, LeastUsedPolicy(3))
    hs.register(H, first, now=0.0)
    hs.register(bytearray(H).decode().encode(), second, now=0.0)  # an equal, distinct object
    resolution = hs.resolve(H, 5)
    assert resolution.pool_handle == H
    assert resolution.policy == LeastUsedPolicy(7)
    assert resolution.elements == (second, first)
    entry = hs.get(H, 2)
    assert entry is not None and entry.pool_handle is hs.pool(H).handle
    with pytest.raises(UnknownPoolHandle):
        hs.resolve(b"missing", 1)
