"""Random register / re-register / update / deregister / select / expire / takeover runs
keep the handlespace equal to a simple model and its invariants intact."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from tests.handlespace.support import element, sctp, tcp, udp
from twisted_rserpool.handlespace import (
    DeregistrationRefused,
    Handlespace,
    HandlespaceEvent,
    HandlespaceLimits,
    PoolCreated,
    PoolElementAdded,
    PoolElementEntry,
    PoolElementUpdated,
    PoolRemoved,
    RegistrationRefused,
    UnknownPoolHandle,
    compute_pe_checksum,
)
from twisted_rserpool.handlespace.policies import _Ordered, _Random, _Weighted
from twisted_rserpool.wire.errors import CauseCode
from twisted_rserpool.wire.parameters import (
    LeastUsedDegradationPolicy,
    LeastUsedPolicy,
    PolicyType,
    PoolElementParameter,
    PriorityLeastUsedPolicy,
    PriorityPolicy,
    RandomizedLeastUsedPolicy,
    RandomPolicy,
    RoundRobinPolicy,
    SelectionPolicy,
    Transport,
    TransportUse,
    UnknownPolicy,
    WeightedRandomPolicy,
    WeightedRoundRobinPolicy,
)

LIMITS = HandlespaceLimits(
    max_pool_handle_length=8,
    max_pools=3,
    max_elements_per_pool=5,
    max_elements_per_owner=8,
    max_elements_per_identity=4,
)
HANDLES = st.sampled_from([b"a", b"bb", b"ccc", b"dddd", b"too-long-handle"])
PE_IDS = st.integers(1, 6)
OWNERS = st.sampled_from([1, 2, 3])
IDENTITIES = st.sampled_from([None, "alice", "bob"])
LIVES = st.sampled_from([-1, 0, 5, 10, 30])
VALUES = st.sampled_from([0, 1, 2, 5, 0xFFFFFFFF])
POLICIES = st.one_of(
    st.just(RoundRobinPolicy()),
    st.just(RandomPolicy()),
    st.builds(WeightedRoundRobinPolicy, VALUES),
    st.builds(WeightedRandomPolicy, VALUES),
    st.builds(PriorityPolicy, VALUES),
    st.builds(LeastUsedPolicy, VALUES),
    st.builds(LeastUsedDegradationPolicy, VALUES, VALUES),
    st.builds(PriorityLeastUsedPolicy, VALUES, VALUES),
    st.builds(RandomizedLeastUsedPolicy, VALUES),
    st.builds(UnknownPolicy, st.sampled_from([0xB0001003, 0x80000001]), st.just(b"\0" * 8)),
)
TRANSPORTS = st.sampled_from(
    [tcp(), udp(), sctp(TransportUse.DATA_ONLY), sctp(TransportUse.DATA_PLUS_CONTROL)]
)
ZERO_WEIGHT_EXCLUDED = (PolicyType.WEIGHTED_ROUND_ROBIN, PolicyType.WEIGHTED_RANDOM)


def _priority_key(policy: SelectionPolicy) -> int:
    assert isinstance(policy, PriorityPolicy)
    return -policy.priority


def _load_key(policy: SelectionPolicy) -> int:
    assert isinstance(policy, LeastUsedPolicy)
    return policy.load


def _load_plus_degradation_key(policy: SelectionPolicy) -> int:
    assert isinstance(policy, PriorityLeastUsedPolicy)
    return policy.load + policy.load_degradation


#: How ordered policies rank PEs (best first) in an answer.
ORDER_KEYS: dict[type, Callable[[SelectionPolicy], int]] = {
    PriorityPolicy: _priority_key,
    LeastUsedPolicy: _load_key,
    PriorityLeastUsedPolicy: _load_plus_degradation_key,
}


@dataclass
class ModelPE:
    """What the model remembers of one PE."""

    policy: SelectionPolicy
    transport: Transport
    identity: str | None
    owner: int
    expires_at: float | None
    keep_alive_deadline: float | None = None


class HandlespaceMachine(RuleBasedStateMachine):
    """The handlespace against a dictionary model."""

    def __init__(self) -> None:
        super().__init__()
        self.hs = Handlespace(LIMITS, rng=random.Random(0))
        self.pes: dict[tuple[bytes, int], ModelPE] = {}
        self.now = 0.0
        # Rebuilt from events alone: proves every change yields an event.
        self.mirror: dict[tuple[bytes, int], PoolElementParameter] = {}
        self.mirror_pools: set[bytes] = set()
        # Observers' exceptions are logged, not raised: check the events in an invariant.
        self.pending: list[HandlespaceEvent] = []
        self.hs.subscribe(self.pending.append)

    def replay(self, event: HandlespaceEvent) -> None:
        if isinstance(event, PoolCreated):
            assert event.pool_handle not in self.mirror_pools
            self.mirror_pools.add(event.pool_handle)
        elif isinstance(event, PoolRemoved):
            self.mirror_pools.remove(event.pool_handle)
        elif isinstance(event, PoolElementAdded):
            key = (event.pool_handle, event.element.pe_identifier)
            assert key not in self.mirror
            self.mirror[key] = event.element
        elif isinstance(event, PoolElementUpdated):
            key = (event.pool_handle, event.element.pe_identifier)
            assert self.mirror[key] == event.previous
            self.mirror[key] = event.element
        else:
            key = (event.pool_handle, event.element.pe_identifier)
            assert self.mirror.pop(key) == event.element

    # ------------------------------------------------------------ model helpers

    def pool_members(self, handle: bytes) -> dict[int, ModelPE]:
        return {pe_id: pe for (h, pe_id), pe in self.pes.items() if h == handle}

    def owned(self, owner: int) -> int:
        return sum(1 for pe in self.pes.values() if pe.owner == owner)

    def registered_by(self, identity: str) -> int:
        return sum(1 for pe in self.pes.values() if pe.identity == identity)

    def expected_refusal(
        self,
        handle: bytes,
        pe_id: int,
        policy: SelectionPolicy,
        transport: Transport,
        owner: int,
        identity: str | None,
    ) -> CauseCode | None:
        members = self.pool_members(handle)
        if members:
            first = next(iter(members.values()))
            if policy.policy_type != first.policy.policy_type:
                return CauseCode.INCONSISTENT_POOLING_POLICY
            if transport.TYPE != first.transport.TYPE:
                return CauseCode.INCONSISTENT_TRANSPORT_TYPE
            if transport.transport_use != first.transport.transport_use:
                return CauseCode.INCONSISTENT_DATA_CONTROL_CONFIGURATION
        existing = self.pes.get((handle, pe_id))
        if existing is not None:
            if identity and existing.identity and identity != existing.identity:
                return CauseCode.NON_UNIQUE_PE_IDENTIFIER
            if owner != existing.owner and self.owned(owner) >= 8:
                return CauseCode.LACK_OF_RESOURCES
            if identity and existing.identity is None and self.registered_by(identity) >= 4:
                return CauseCode.LACK_OF_RESOURCES
            return None
        if not members:
            pools = {h for h, _ in self.pes}
            if len(handle) > 8 or len(pools) >= 3:
                return CauseCode.LACK_OF_RESOURCES
        elif len(members) >= 5:
            return CauseCode.LACK_OF_RESOURCES
        if self.owned(owner) >= 8:
            return CauseCode.LACK_OF_RESOURCES
        if identity and self.registered_by(identity) >= 4:
            return CauseCode.LACK_OF_RESOURCES
        return None

    # ------------------------------------------------------------ rules

    @rule(
        handle=HANDLES,
        pe_id=PE_IDS,
        policy=POLICIES,
        transport=TRANSPORTS,
        owner=OWNERS,
        identity=IDENTITIES,
        life=LIVES,
    )
    def register(
        self,
        handle: bytes,
        pe_id: int,
        policy: SelectionPolicy,
        transport: Transport,
        owner: int,
        identity: str | None,
        life: int,
    ) -> None:
        expected = self.expected_refusal(handle, pe_id, policy, transport, owner, identity)
        pe = element(pe_id, policy, home=owner, life=life, transport=transport)
        try:
            self.hs.register(handle, pe, now=self.now, identity=identity)
        except RegistrationRefused as refused:
            assert refused.cause is expected, (refused, expected)
            return
        assert expected is None
        existing = self.pes.get((handle, pe_id))
        kept_identity = identity
        if existing is not None and existing.identity is not None:
            kept_identity = existing.identity
        self.pes[(handle, pe_id)] = ModelPE(
            policy,
            transport,
            kept_identity,
            owner,
            self.now + life if life >= 0 else None,
        )

    @rule(handle=HANDLES, pe_id=PE_IDS, identity=IDENTITIES)
    def deregister(self, handle: bytes, pe_id: int, identity: str | None) -> None:
        existing = self.pes.get((handle, pe_id))
        try:
            self.hs.deregister(handle, pe_id, identity=identity)
        except DeregistrationRefused:
            assert existing is not None and identity and existing.identity not in (None, identity)
            return
        self.pes.pop((handle, pe_id), None)

    @rule(handle=HANDLES, count=st.integers(0, 7))
    def select(self, handle: bytes, count: int) -> None:
        members = self.pool_members(handle)
        try:
            answer = self.hs.select(handle, count)
        except UnknownPoolHandle:
            assert not members
            return
        ids = [entry.pe_identifier for entry in answer]
        assert len(ids) == len(set(ids)), "a PE twice in one answer"
        assert set(ids) <= set(members), "a PE that is not registered"
        selectable = [
            pe
            for pe in members.values()
            if pe.policy.policy_type not in ZERO_WEIGHT_EXCLUDED or pe.policy.weight  # type: ignore[attr-defined]
        ]
        assert len(ids) == min(count, len(selectable))
        self.check_order(answer, members)

    @staticmethod
    def check_order(answer: list[PoolElementEntry], members: dict[int, ModelPE]) -> None:
        """Ordered policies answer with the best PEs of the pool, best first."""
        if not answer:
            return
        sort_key = ORDER_KEYS.get(type(answer[0].policy))
        if sort_key is None:
            return
        keys = [sort_key(entry.policy) for entry in answer]
        assert keys == sorted(keys)
        best = sorted(sort_key(pe.policy) for pe in members.values())
        assert keys == best[: len(keys)]

    @rule(seconds=st.sampled_from([0.0, 1.0, 5.0, 12.0]))
    def expire(self, seconds: float) -> None:
        self.now += seconds
        events = self.hs.expire(self.now)
        gone = {
            key
            for key, pe in self.pes.items()
            if (pe.expires_at is not None and pe.expires_at <= self.now)
            or (pe.keep_alive_deadline is not None and pe.keep_alive_deadline <= self.now)
        }
        removed = {
            (event.pool_handle, event.element.pe_identifier)
            for event in events
            if hasattr(event, "reason") and hasattr(event, "element")
        }
        assert removed == gone
        for key in gone:
            del self.pes[key]

    @rule(handle=HANDLES, pe_id=PE_IDS, timeout=st.sampled_from([1.0, 4.0]))
    def keep_alive(self, handle: bytes, pe_id: int, timeout: float) -> None:
        known = self.hs.keep_alive_sent(handle, pe_id, now=self.now, timeout=timeout)
        pe = self.pes.get((handle, pe_id))
        assert known == (pe is not None)
        if pe is not None and pe.keep_alive_deadline is None:
            pe.keep_alive_deadline = self.now + timeout

    @rule(handle=HANDLES, pe_id=PE_IDS)
    def acknowledge(self, handle: bytes, pe_id: int) -> None:
        self.hs.keep_alive_acknowledged(handle, pe_id)
        pe = self.pes.get((handle, pe_id))
        if pe is not None:
            pe.keep_alive_deadline = None

    @rule(old=OWNERS, new=OWNERS)
    def take_over(self, old: int, new: int) -> None:
        self.hs.take_over(old, new, now=self.now)
        for pe in self.pes.values():
            if pe.owner == old:
                pe.owner = new

    @rule(owner=OWNERS)
    def remove_owner(self, owner: int) -> None:
        self.hs.remove_owner(owner)
        self.pes = {key: pe for key, pe in self.pes.items() if pe.owner != owner}

    # ------------------------------------------------------------ invariants

    @invariant()
    def same_elements(self) -> None:
        actual = {(entry.pool_handle, entry.pe_identifier) for entry in self.hs.elements()}
        assert actual == set(self.pes)
        assert len(self.hs) == len(self.pes)
        for (handle, pe_id), pe in self.pes.items():
            entry = self.hs.get(handle, pe_id)
            assert entry is not None
            assert entry.home_server_identifier == pe.owner
            assert entry.identity == pe.identity
            assert entry.policy == pe.policy

    @invariant()
    def events_tell_the_whole_story(self) -> None:
        for event in self.pending:
            self.replay(event)
        self.pending.clear()
        assert self.mirror_pools == {pool.handle for pool in self.hs.pools()}
        assert self.mirror == {
            (entry.pool_handle, entry.pe_identifier): entry.element for entry in self.hs.elements()
        }

    @invariant()
    def empty_pools_disappear_and_rules_hold(self) -> None:
        assert {pool.handle for pool in self.hs.pools()} == {h for h, _ in self.pes}
        for pool in self.hs.pools():
            assert len(pool) > 0
            for entry in pool:
                assert entry.policy.policy_type == pool.policy_type
                assert pool.transport_type == entry.user_transport.TYPE
                assert entry.user_transport.transport_use == pool.transport_use
            selector = pool._selector
            if isinstance(selector, _Ordered):
                selector._items.check()
                assert {id(e) for e in selector._items} <= {id(e) for e in pool}
            elif isinstance(selector, _Weighted):
                selector._sampler.check()
                assert len(selector._sampler) == len(pool)
            else:
                assert isinstance(selector, _Random)
                assert len(selector._sampler) == len(pool)

    @invariant()
    def checksums_match_recomputation(self) -> None:
        owners = {pe.owner for pe in self.pes.values()}
        assert self.hs.owners() == sorted(owners)
        for owner in (1, 2, 3):
            owned = {key for key, pe in self.pes.items() if pe.owner == owner}
            listed = [(e.pool_handle, e.pe_identifier) for e in self.hs.elements_owned_by(owner)]
            assert sorted(listed) == listed and set(listed) == owned
            assert self.hs.owned_count(owner) == len(owned)
            model = compute_pe_checksum(
                (handle, pe_id) for (handle, pe_id), pe in self.pes.items() if pe.owner == owner
            )
            assert self.hs.pe_checksum(owner) == self.hs.recompute_pe_checksum(owner) == model

    @invariant()
    def next_deadline_is_earliest(self) -> None:
        deadlines = [
            when
            for pe in self.pes.values()
            for when in (pe.expires_at, pe.keep_alive_deadline)
            if when is not None
        ]
        assert self.hs.next_deadline() == (min(deadlines) if deadlines else None)


HandlespaceMachine.TestCase.settings = settings(max_examples=80, stateful_step_count=40)
TestHandlespaceMachine = HandlespaceMachine.TestCase
