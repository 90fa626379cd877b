"""Rate limits against floods (RFC 5355 sections 2.1, 2.2, 2.13 and 2.14): token buckets,
time passed in.

:class:`RateLimiter` answers yes or no (for events that are dropped or refused).
:class:`RequestLimiter` answers *when*: it reserves tokens for a connection's next request
and says how long the request must wait for them, so that the transport can stop reading
from a flooding peer (backpressure) instead of decoding and dropping what it sends.
Reserving, rather than asking again later, serves waiting connections in turn and wakes
each one once per request.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable
from dataclasses import dataclass
from typing import Generic, TypeVar

_K = TypeVar("_K", bound=Hashable)

#: Tokens a bucket may lack and still count as full enough: refilling over the exact wait
#: it announced must not leave it a rounding error short.
_EPSILON = 1e-9


@dataclass(frozen=True, slots=True)
class Rate:
    """``per_second`` events on average, with bursts of up to ``burst``."""

    per_second: float
    burst: float

    def __post_init__(self) -> None:
        if self.per_second <= 0 or self.burst < 1:
            raise ValueError(f"a rate needs per_second > 0 and burst >= 1, got {self}")


class TokenBucket:
    """One token bucket: :meth:`allow` takes a token if one is there."""

    __slots__ = ("_last", "_tokens", "rate")

    def __init__(self, rate: Rate, now: float) -> None:
        self.rate = rate
        self._tokens = rate.burst
        self._last = now

    def allow(self, now: float, cost: float = 1.0) -> bool:
        """Whether an event at ``now`` is within the rate (and, if so, count it)."""
        if self.wait(now, cost) > 0:
            return False
        self._tokens -= cost
        return True

    def wait(self, now: float, cost: float = 1.0) -> float:
        """Seconds from ``now`` until ``cost`` tokens are there (``0.0``: now); takes none."""
        elapsed = now - self._last
        if elapsed > 0:
            self._tokens = min(self.rate.burst, self._tokens + elapsed * self.rate.per_second)
            self._last = now
        missing = cost - self._tokens
        return 0.0 if missing <= _EPSILON else missing / self.rate.per_second

    def reserve(self, now: float, cost: float = 1.0) -> float:
        """Take ``cost`` tokens at ``now`` even if they are not all there yet (the bucket
        then owes them); the seconds until it no longer owes (``0.0``: it never did).

        An event that reserves is served after the returned wait; those that reserve
        after it wait behind it, in turn.
        """
        self.wait(now, cost)
        self._tokens -= cost
        owed = -self._tokens
        return 0.0 if owed <= _EPSILON else owed / self.rate.per_second


class RateLimiter(Generic[_K]):
    """A token bucket per key (a connection, an identity, a PE), with bounded memory.

    At most ``max_keys`` buckets are kept; the least recently used is forgotten first
    (a forgotten key starts again with a full bucket, so keep ``max_keys`` above the number
    of keys that are active at once). ``dropped`` counts refused events.
    """

    def __init__(self, rate: Rate, max_keys: int = 65536) -> None:
        self.rate = rate
        self.max_keys = max_keys
        self.dropped = 0
        self._buckets: OrderedDict[_K, TokenBucket] = OrderedDict()

    def allow(self, key: _K, now: float) -> bool:
        """Whether an event for ``key`` at ``now`` is within the rate."""
        if self.bucket(key, now).allow(now):
            return True
        self.dropped += 1
        return False

    def bucket(self, key: _K, now: float) -> TokenBucket:
        """The bucket of ``key`` (a full one if it had none), now the most recently used."""
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = TokenBucket(self.rate, now)
            if len(self._buckets) > self.max_keys:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(key)
        return bucket

    def forget(self, key: _K) -> None:
        """Drop the bucket of ``key`` (its connection closed)."""
        self._buckets.pop(key, None)

    def __len__(self) -> int:
        return len(self._buckets)


class RequestLimiter(Generic[_K]):
    """When each connection's next request may be handled: token buckets that every
    request must find a token in.

    - one per connection (``connection_rate``);
    - for an authenticated peer, one per identity over all its connections
      (``identity_rate``), so that opening more connections gains nothing;
    - for peers that did not authenticate, one that all of them share
      (``anonymous_rate``): they cannot be told apart, so together they get one budget.

    :meth:`admit` reserves a token in each of the connection's buckets and says how long
    the request must wait for them. ``delayed`` counts the requests that had to wait;
    ``limited_by`` names the bucket that made the last one wait longest
    (``"connection"``, ``"identity"`` or ``"anonymous"``).
    """

    def __init__(
        self,
        connection_rate: Rate,
        identity_rate: Rate,
        anonymous_rate: Rate,
        *,
        max_keys: int = 65536,
        now: float = 0.0,
    ) -> None:
        self._connections: RateLimiter[_K] = RateLimiter(connection_rate, max_keys)
        self._identities: RateLimiter[str] = RateLimiter(identity_rate, max_keys)
        self._anonymous = TokenBucket(anonymous_rate, now)
        self.delayed = 0
        self.limited_by: str | None = None

    def admit(self, connection: _K, identity: str | None, now: float) -> float:
        """Count a request of ``connection`` (whose peer authenticated as ``identity``, or
        ``None``) arriving at ``now``; the seconds it must wait before it is handled
        (``0.0``: at once). Its tokens are reserved: ask once per request."""
        own = self._connections.bucket(connection, now)
        shared = self._anonymous if identity is None else self._identities.bucket(identity, now)
        own_wait = own.reserve(now)
        shared_wait = shared.reserve(now)
        if own_wait <= 0 and shared_wait <= 0:
            return 0.0
        self.delayed += 1
        if own_wait >= shared_wait:
            self.limited_by = "connection"
        else:
            self.limited_by = "anonymous" if identity is None else "identity"
        return max(own_wait, shared_wait)

    def forget(self, connection: _K) -> None:
        """Drop the bucket of ``connection`` (it closed); identity buckets stay."""
        self._connections.forget(connection)
