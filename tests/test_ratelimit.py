"""Token buckets and per-key rate limiters with an injected clock."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from twisted_rserpool.security.ratelimit import (
    FairShare,
    Rate,
    RateLimiter,
    RequestLimiter,
    TokenBucket,
)


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


def test_bucket_reservation_queues_in_turn() -> None:
    """Reserving takes tokens that are not there yet: each reservation waits behind the
    previous one, so waiting callers are served in turn, each woken once."""
    bucket = TokenBucket(Rate(10.0, 1.0), now=0.0)
    assert bucket.reserve(0.0) == 0.0
    assert bucket.reserve(0.0) == pytest.approx(0.1)
    assert bucket.reserve(0.0) == pytest.approx(0.2)
    assert bucket.wait(0.2) == pytest.approx(0.1)
    assert bucket.reserve(0.3) == 0.0


def test_request_limiter_connection_identity_and_anonymous_buckets() -> None:
    """A request needs a token of its connection and of its identity (or of the bucket
    all anonymous peers share); the longer wait counts and is named."""
    limiter: RequestLimiter[int] = RequestLimiter(Rate(10.0, 2.0), Rate(100.0, 3.0), Rate(5.0, 1.0))
    assert [limiter.admit(1, "a", 0.0) for _ in range(2)] == [0.0, 0.0]
    assert limiter.admit(2, "a", 0.0) == 0.0  # the identity's 3rd token
    assert limiter.admit(3, "a", 0.0) == pytest.approx(0.01)  # its 4th
    assert limiter.limited_by == "identity"
    assert limiter.admit(1, "a", 0.0) == pytest.approx(0.1)
    assert limiter.limited_by == "connection"
    assert limiter.admit(5, None, 0.0) == 0.0
    assert limiter.admit(6, None, 0.0) == pytest.approx(0.2)
    assert limiter.limited_by == "anonymous"
    assert limiter.delayed == 3


def test_request_limiter_forgets_closed_connections() -> None:
    """A closed connection's bucket goes; a new connection starts with a full one."""
    limiter: RequestLimiter[int] = RequestLimiter(Rate(1.0, 1.0), Rate(10.0, 100.0), Rate(1.0, 1.0))
    assert limiter.admit(1, "a", 0.0) == 0.0
    assert limiter.admit(1, "a", 0.0) == pytest.approx(1.0)
    assert len(limiter) == 1
    limiter.forget(1)
    assert len(limiter) == 0
    assert limiter.admit(1, "a", 0.0) == 0.0


class _ReferenceLimiter:
    """RequestLimiter.admit composed from the buckets' public steps (due, due_share, take,
    interval), with one bucket per connection and identity and no bound on keys."""

    def __init__(self, connection: Rate, identity: Rate, anonymous: Rate) -> None:
        self._rates = (connection, identity)
        self._own: dict[int, tuple[TokenBucket, list[float]]] = {}
        self._identities: dict[str, FairShare] = {}
        self._anonymous = FairShare(anonymous, 0.0)

    def admit(self, connection: int, identity: str | None, now: float) -> float:
        if connection not in self._own:
            self._own[connection] = (TokenBucket(self._rates[0], now), [float("-inf")])
        own, share_until = self._own[connection]
        if identity is None:
            shared = self._anonymous
        else:
            shared = self._identities.setdefault(identity, FairShare(self._rates[1], now))
        wait = max(own.due(now), shared.due_share(now, now < share_until[0]))
        own.take(now, now + wait)
        shared.take(now, now + wait)
        share_until[0] = now + wait + shared.interval()
        return wait


@settings(max_examples=1000)  # the headroom of a shared rate takes many draws to reach
@given(
    st.lists(
        st.tuples(st.integers(0, 5), st.sampled_from([None, "a", "b"]), st.floats(0.0, 0.05)),
        max_size=200,
    ),
    st.sampled_from([(5.0, 10.0), (50.0, 20.0), (200.0, 400.0), (2.0, 500.0), (1.0, 50.0)]),
)
def test_admit_waits_as_its_public_steps_do(
    requests: list[tuple[int, str | None, float]], rates: tuple[float, float]
) -> None:
    """RequestLimiter.admit, unrolled for speed, makes every request wait exactly as long
    as the buckets' public steps do, for any mix of connections, identities and gaps."""
    connection, shared = Rate(rates[0], rates[0] * 2), Rate(rates[1], rates[1] * 3)
    limiter: RequestLimiter[int] = RequestLimiter(connection, shared, shared)
    reference = _ReferenceLimiter(connection, shared, shared)
    now = 0.0
    # A connection keeps the identity it had first (as a TLS connection does).
    identities: dict[int, str | None] = {}
    for number, drawn, gap in requests:
        now += gap
        identity = identities.setdefault(number, drawn)
        assert limiter.admit(number, identity, now) == reference.admit(number, identity, now)


class _ReferenceBucket(TokenBucket):
    """TokenBucket.allow as its public steps say it: no token while wait() is positive."""

    __slots__ = ()

    def allow(self, now: float, cost: float = 1.0) -> bool:
        if self.wait(now, cost) > 0:
            return False
        self._tokens -= cost
        return True


@given(
    st.lists(
        st.tuples(st.integers(0, 4), st.floats(0.0, 0.3), st.sampled_from([1.0, 0.5])), max_size=200
    ),
    st.sampled_from([(1.0, 1.0), (3.0, 2.0), (10.0, 5.0), (0.5, 3.0)]),
)
def test_allow_unrolled_as_its_public_steps(
    events: list[tuple[int, float, float]], rate: tuple[float, float]
) -> None:
    """TokenBucket.allow and RateLimiter.allow, unrolled for speed, allow and refuse the
    same events as wait() and bucket() do, and the limiter forgets the same keys."""
    limit = Rate(*rate)
    limiter: RateLimiter[int] = RateLimiter(limit, max_keys=3)
    reference: dict[int, _ReferenceBucket] = {}
    order: list[int] = []
    now = 0.0
    for key, gap, _ in events:
        now += gap
        if key not in reference:
            reference[key] = _ReferenceBucket(limit, now)
        if key in order:
            order.remove(key)
        order.append(key)
        if len(order) > 3:
            del reference[order.pop(0)]
        expected = reference[key].allow(now)
        assert limiter.allow(key, now) == expected
        assert list(limiter._buckets) == order
    twin, plain = _ReferenceBucket(limit, 0.0), TokenBucket(limit, 0.0)
    now = 0.0
    for _, gap, cost in events:
        now += gap
        assert plain.allow(now, cost) == twin.allow(now, cost)
        assert plain.tokens == twin.tokens
