"""Token buckets and per-key rate limiters with an injected clock."""

from __future__ import annotations

import pytest

from twisted_rserpool.security.ratelimit import Rate, RateLimiter, TokenBucket


def test_bucket_bursts_then_refills() -> None:
    """A bucket allows its burst at once, then one event per 1/rate seconds."""
    bucket = TokenBucket(Rate(2.0, 3.0), now=0.0)
    assert [bucket.allow(0.0) for _ in range(4)] == [True, True, True, False]
    assert not bucket.allow(0.4)
    assert bucket.allow(0.5)
    assert not bucket.allow(0.5)
    assert [bucket.allow(100.0) for _ in range(4)] == [True, True, True, False]


def test_limiter_counts_drops_per_key() -> None:
    """Each key has its own bucket; refusals are counted."""
    limiter: RateLimiter[str] = RateLimiter(Rate(1.0, 2.0))
    results = [limiter.allow("a", 0.0) for _ in range(5)] + [limiter.allow("b", 0.0)]
    assert results == [True, True, False, False, False, True]
    assert limiter.dropped == 3


def test_limiter_memory_is_bounded() -> None:
    """At most max_keys buckets are kept; the least recently used goes first."""
    limiter: RateLimiter[int] = RateLimiter(Rate(1.0, 1.0), max_keys=10)
    for key in range(1000):
        limiter.allow(key, 0.0)
    assert len(limiter) == 10
    limiter.forget(999)
    assert len(limiter) == 9


@pytest.mark.parametrize(("per_second", "burst"), [(0.0, 1.0), (-1.0, 5.0), (1.0, 0.5)])
def test_invalid_rates(per_second: float, burst: float) -> None:
    """Rates must be positive with a burst of at least one."""
    with pytest.raises(ValueError):
        Rate(per_second, burst)
