"""Rate limits against floods (RFC 5355 sections 2.13 and 2.14): token buckets, time passed in."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable
from dataclasses import dataclass
from typing import Generic, TypeVar

_K = TypeVar("_K", bound=Hashable)


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
        elapsed = now - self._last
        if elapsed > 0:
            self._tokens = min(self.rate.burst, self._tokens + elapsed * self.rate.per_second)
            self._last = now
        if self._tokens >= cost:
            self._tokens -= cost
            return True
        return False


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
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = TokenBucket(self.rate, now)
            if len(self._buckets) > self.max_keys:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(key)
        if bucket.allow(now):
            return True
        self.dropped += 1
        return False

    def forget(self, key: _K) -> None:
        """Drop the bucket of ``key`` (its connection closed)."""
        self._buckets.pop(key, None)

    def __len__(self) -> int:
        return len(self._buckets)
