"""The pool user's cache: C1-C4 of RFC 5352 section 3.3, with policies and stale expiry."""

from __future__ import annotations

import random

import pytest

from tests.handlespace.support import element
from twisted_rserpool.handlespace import (
    CacheState,
    PoolElementRemoved,
    PoolUserCache,
    RemovalReason,
    UnknownPoolHandle,
)
from twisted_rserpool.wire.parameters import LeastUsedPolicy, RandomPolicy, RoundRobinPolicy

H = b"cache"


def test_states_missing_fresh_stale() -> None:
    """A pool is missing until a resolution arrives, fresh until stale_timeout, then stale."""
    cache = PoolUserCache(stale_timeout=30.0)
    assert cache.state(H, 0.0) is CacheState.MISSING
    cache.update(H, [element(1, RoundRobinPolicy())], now=100.0)
    assert cache.state(H, 129.9) is CacheState.FRESH
    assert cache.state(H, 130.0) is CacheState.STALE
    cache.update(H, [element(1, RoundRobinPolicy())], now=131.0)
    assert cache.state(H, 131.0) is CacheState.FRESH


def test_update_replaces_the_pool_contents() -> None:
    """A new resolution adds new PEs, updates known ones and drops unlisted ones."""
    cache = PoolUserCache(stale_timeout=30.0)
    cache.update(H, [element(1, LeastUsedPolicy(5)), element(2, LeastUsedPolicy(1))], now=0.0)
    events = cache.update(
        H, [element(2, LeastUsedPolicy(9)), element(3, LeastUsedPolicy(4))], now=1.0
    )
    removed = [e for e in events if isinstance(e, PoolElementRemoved)]
    assert [(e.element.pe_identifier, e.reason) for e in removed] == [(1, RemovalReason.CACHE)]
    assert [e.pe_identifier for e in cache.select(H, 5)] == [3, 2]


def test_policy_change_replaces_the_cached_pool() -> None:
    """If the server's pool now has another policy, the old cached entries are dropped."""
    cache = PoolUserCache(stale_timeout=30.0)
    cache.update(H, [element(1, LeastUsedPolicy(5))], now=0.0)
    cache.update(H, [element(2, RoundRobinPolicy()), element(3, RandomPolicy())], now=1.0)
    assert [e.pe_identifier for e in cache.select(H, 5)] == [2]


def test_pool_user_round_robin_over_cached_list() -> None:
    """RFC 5356 4.1.3: the pool user uses the list round robin, starting with the first."""
    cache = PoolUserCache(stale_timeout=30.0)
    cache.update(H, [element(pe, RoundRobinPolicy()) for pe in (1, 2, 3)], now=0.0)
    assert [cache.select(H)[0].pe_identifier for _ in range(4)] == [1, 2, 3, 1]


def test_remove_unreachable_pe_and_empty_cache() -> None:
    """Failover drops an unreachable PE; dropping the last one empties the pool entry."""
    cache = PoolUserCache(stale_timeout=30.0, rng=random.Random(1))
    cache.update(H, [element(1, RandomPolicy())], now=0.0)
    cache.remove(H, 1)
    assert cache.state(H, 1.0) is CacheState.MISSING
    with pytest.raises(UnknownPoolHandle):
        cache.select(H)


def test_stale_pools_are_discarded_after_discard_timeout() -> None:
    """With discard_timeout, a pool not refreshed for stale + discard seconds is dropped."""
    cache = PoolUserCache(stale_timeout=10.0, discard_timeout=5.0)
    cache.update(H, [element(1, RoundRobinPolicy())], now=0.0)
    cache.update(b"other", [element(1, RoundRobinPolicy())], now=0.0)
    cache.update(b"other", [element(1, RoundRobinPolicy())], now=8.0)
    assert cache.next_deadline() == 15.0
    assert cache.expire(14.0) == []
    events = cache.expire(15.0)
    assert {e.pool_handle for e in events} == {H}
    assert cache.state(H, 15.0) is CacheState.MISSING
    assert cache.state(b"other", 15.0) is CacheState.FRESH
    assert cache.state(b"other", 18.0) is CacheState.STALE
    assert cache.next_deadline() == 23.0


def test_cache_ignores_registration_life() -> None:
    """The cache goes stale by its own timer; PEs' registration lives are not tracked."""
    cache = PoolUserCache(stale_timeout=1000.0)
    cache.update(H, [element(1, RoundRobinPolicy(), life=1)], now=0.0)
    assert cache.handlespace.next_deadline() is None
    assert cache.handlespace.expire(100.0) == []
    assert cache.state(H, 100.0) is CacheState.FRESH


def test_empty_resolution_forgets_the_pool() -> None:
    """A resolution with no PEs leaves nothing cached."""
    cache = PoolUserCache(stale_timeout=10.0)
    cache.update(H, [element(1, RoundRobinPolicy())], now=0.0)
    cache.update(H, [], now=1.0)
    assert cache.state(H, 1.0) is CacheState.MISSING
    with pytest.raises(ValueError):
        PoolUserCache(stale_timeout=-1.0)
