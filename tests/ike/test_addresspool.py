"""The virtual IP address pool: leases per identity, release, exhaustion, requests."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv6Address, ip_address, ip_network

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, invariant, rule

from twisted_rserpool.ike.addresspool import AddressPool, parse_pool


def test_first_addresses_skip_network_and_broadcast() -> None:
    """A /30 leases its two host addresses and then no more."""
    pool = AddressPool([ip_network("10.8.0.0/30")])
    assert pool.size(4) == 2
    assert pool.acquire("sa1", "a", 4) == IPv4Address("10.8.0.1")
    assert pool.acquire("sa2", "b", 4) == IPv4Address("10.8.0.2")
    assert pool.acquire("sa3", "c", 4) is None
    assert pool.acquire("sa3", "c", 6) is None  # no IPv6 network at all


def test_release_frees_and_round_robin() -> None:
    """A released address is free again, but the next lease takes the next address first."""
    pool = AddressPool([ip_network("10.8.0.0/29")])
    first = pool.acquire("sa1", "a", 4)
    assert pool.release("sa1") == (first,)
    assert pool.lease_of(first) is None  # type: ignore[arg-type]
    assert pool.acquire("sa2", "b", 4) == IPv4Address("10.8.0.2")


def test_same_identity_shares_until_last_holder_goes() -> None:
    pool = AddressPool([ip_network("fd00::/120")])
    a = pool.acquire("sa1", "alice", 6)
    assert a == IPv6Address("fd00::1")
    assert pool.acquire("sa2", "alice", 6) == a
    assert pool.release("sa1") == ()
    assert pool.release("sa2") == (a,)


def test_requested_address() -> None:
    """Honoured when free and in the pool; otherwise another address; reserved never."""
    pool = AddressPool([ip_network("10.8.0.0/24")], reserved=[IPv4Address("10.8.0.1")])
    assert pool.acquire("s1", "a", 4, IPv4Address("10.8.0.77")) == IPv4Address("10.8.0.77")
    assert pool.acquire("s2", "b", 4, IPv4Address("10.8.0.77")) == IPv4Address("10.8.0.2")
    assert pool.acquire("s3", "c", 4, IPv4Address("10.8.0.1")) == IPv4Address("10.8.0.3")
    assert pool.acquire("s4", "d", 4, IPv4Address("10.8.0.255")) == IPv4Address("10.8.0.4")
    assert pool.acquire("s5", "e", 4, IPv4Address("192.0.2.1")) == IPv4Address("10.8.0.5")


def test_transfer_to_successor() -> None:
    pool = AddressPool([ip_network("10.8.0.0/24")])
    address = pool.acquire("old", "a", 4)
    pool.transfer("old", "new")
    assert pool.release("old") == ()
    assert pool.held_by("new") == (address,)
    assert pool.release("new") == (address,)


def test_parse_and_overlap() -> None:
    assert parse_pool(" 10.8.0.0/24 ") == ip_network("10.8.0.0/24")
    with pytest.raises(ValueError):
        parse_pool("10.8.0.1/24")
    with pytest.raises(ValueError):
        AddressPool([ip_network("10.8.0.0/24"), ip_network("10.8.0.128/25")])
    assert AddressPool([ip_network("10.8.0.9/32")]).acquire("s", "a", 4) == ip_address("10.8.0.9")
    pair = AddressPool([parse_pool("10.8.0.8/31")])
    assert [pair.acquire(h, h, 4) for h in "abc"] == [
        ip_address("10.8.0.8"),
        ip_address("10.8.0.9"),
        None,
    ]


def test_large_pool_is_cheap() -> None:
    """A /8 and a /64 are never materialised: leasing is proportional to the leases."""
    pool = AddressPool([ip_network("10.0.0.0/8"), ip_network("fd00::/64")])
    assert pool.size(4) == 2**24 - 2
    assert pool.acquire("s", "a", 6) == IPv6Address("fd00::1")
    assert pool.acquire("s", "a", 4) == IPv4Address("10.0.0.1")


IDENTITIES = st.sampled_from(["alice", "bob", "carol", "dave", "erin", "frank"])
REQUESTS = st.none() | st.integers(0, 11).map(lambda i: IPv4Address("10.8.0.0") + i)


class PoolMachine(RuleBasedStateMachine):
    """Random acquires, releases and transfers on a pool of six IPv4 addresses (a /29 with
    10.8.0.1 reserved... and 10.8.0.8 beyond it requested too): never two identities on one
    address, every lease held, exhaustion only when all usable addresses are taken."""

    holders = Bundle("holders")

    def __init__(self) -> None:
        super().__init__()
        self.pool = AddressPool([ip_network("10.8.0.0/29")], reserved=[IPv4Address("10.8.0.1")])
        self.count = 0
        self.owner: dict[str, str] = {}

    @rule(target=holders, identity=IDENTITIES, requested=REQUESTS)
    def acquire(self, identity: str, requested: IPv4Address | None) -> str:
        self.count += 1
        holder = f"sa{self.count}"
        mine = {lease.identity: lease.address for lease in self.pool}
        leased_before = len(self.pool)
        address = self.pool.acquire(holder, identity, 4, requested)
        if identity in mine:
            assert address == mine[identity]
        elif address is None:
            assert leased_before == 5  # 6 usable, one reserved
        else:
            assert address in ip_network("10.8.0.0/29")
            assert address not in (IPv4Address("10.8.0.0"), IPv4Address("10.8.0.7"))
            assert address != IPv4Address("10.8.0.1")
            if (
                requested is not None
                and requested not in mine.values()
                and (IPv4Address("10.8.0.2") <= requested <= IPv4Address("10.8.0.6"))
            ):
                assert address == requested
        if address is not None:
            self.owner[holder] = identity
        return holder

    @rule(holder=holders)
    def release(self, holder: str) -> None:
        identity = self.owner.pop(holder, None)
        freed = self.pool.release(holder)
        still = [h for h, i in self.owner.items() if i == identity]
        assert bool(freed) == (identity is not None and not still)

    @rule(old=holders)
    def transfer(self, old: str) -> None:
        self.count += 1
        new = f"sa{self.count}"
        self.pool.transfer(old, new)
        if old in self.owner:
            self.owner[new] = self.owner.pop(old)

    @invariant()
    def one_identity_per_address(self) -> None:
        leases = list(self.pool)
        assert len({lease.address for lease in leases}) == len(leases)
        assert len({lease.identity for lease in leases}) == len(leases)
        assert all(lease.holders for lease in leases)
        assert {lease.identity for lease in leases} == set(self.owner.values())
        for holder, identity in self.owner.items():
            (address,) = self.pool.held_by(holder)
            lease = self.pool.lease_of(address)
            assert lease is not None and lease.identity == identity


PoolMachine.TestCase.settings = settings(max_examples=150, stateful_step_count=40, deadline=None)
TestPoolMachine = PoolMachine.TestCase


def test_filling_a_pool() -> None:
    """A /21 leases its 2,046 host addresses (one reserved: 2,045), each once, then none;
    one release makes exactly that address the next lease."""
    pool = AddressPool([ip_network("10.8.0.0/21")], reserved=[IPv4Address("10.8.0.1")])
    leased = [pool.acquire(n, n, 4) for n in range(2045)]
    assert None not in leased and len(set(leased)) == 2045
    assert IPv4Address("10.8.0.1") not in leased
    assert pool.acquire("late", "late", 4) is None
    assert pool.release(7) == (leased[7],)
    assert pool.acquire("late", "late", 4) == leased[7]
