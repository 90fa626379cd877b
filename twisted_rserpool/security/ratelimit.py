"""Rate limits against floods (RFC 5355 sections 2.1, 2.2, 2.13 and 2.14): token buckets,
time passed in.

:class:`RateLimiter` answers yes or no (for events that are dropped or refused).
:class:`RequestLimiter` answers *when*: it reserves tokens for a connection's next request
and says how long the request must wait for them, so that the transport can stop reading
from a flooding peer (backpressure) instead of decoding and dropping what it sends.
Reserving, rather than asking again later, serves waiting connections in turn and wakes
each one once per request. A rate that several connections share (all anonymous ones, or
one identity's) is a :class:`FairShare`: a connection under its fair share of it is served
before the backlog of those over theirs.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Generic, TypeVar

from twisted.logger import Logger

_K = TypeVar("_K", bound=Hashable)
_V = TypeVar("_V")

log = Logger()

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

    # The rate's two numbers are kept apart too: every request reads them.
    __slots__ = ("_burst", "_last", "_per_second", "_rate", "_tokens")

    def __init__(self, rate: Rate, now: float) -> None:
        self.rate = rate
        self._tokens = rate.burst
        self._last = now

    @property
    def rate(self) -> Rate:
        """The bucket's rate."""
        return self._rate

    @rate.setter
    def rate(self, rate: Rate) -> None:
        self._rate = rate
        self._per_second = rate.per_second
        self._burst = rate.burst

    def allow(self, now: float, cost: float = 1.0) -> bool:
        """Whether an event at ``now`` is within the rate (and, if so, count it)."""
        # wait() and _refill() unrolled (asked for every keep-alive): a positive wait is
        # more than _EPSILON tokens missing.
        elapsed = now - self._last
        if elapsed > 0:
            tokens = self._tokens + elapsed * self._per_second
            self._tokens = tokens if tokens < self._burst else self._burst
            self._last = now
        if cost - self._tokens > _EPSILON:
            return False
        self._tokens -= cost
        return True

    def wait(self, now: float, cost: float = 1.0) -> float:
        """Seconds from ``now`` until ``cost`` tokens are there (``0.0``: now); takes none."""
        self._refill(now)
        missing = cost - self._tokens
        return 0.0 if missing <= _EPSILON else missing / self._per_second

    def _refill(self, now: float) -> None:
        """Add the tokens of the time since the last update (up to the burst)."""
        elapsed = now - self._last
        if elapsed > 0:
            tokens = self._tokens + elapsed * self._per_second
            self._tokens = tokens if tokens < self._burst else self._burst
            self._last = now

    def reserve(self, now: float, cost: float = 1.0) -> float:
        """Take ``cost`` tokens at ``now`` even if they are not all there yet (the bucket
        then owes them); the seconds until it no longer owes (``0.0``: it never did).

        An event that reserves is served after the returned wait; those that reserve
        after it wait behind it, in turn.
        """
        self.wait(now, cost)
        self._tokens -= cost
        owed = -self._tokens
        return 0.0 if owed <= _EPSILON else owed / self._per_second

    def due(self, now: float, floor: float = 0.0) -> float:
        """Seconds from ``now`` until one token can be taken and leave ``floor`` tokens
        (counting those owed); takes none."""
        return self.wait(now, 1.0 + floor)

    def take(self, now: float, at: float) -> None:
        """Take one token at ``now`` for an event served at ``at`` (not before ``now``).

        The bucket is then what it would be had the token been taken at ``at``: tokens it
        would have had beyond ``burst`` by then are not kept. So an event never waits
        longer than the burst allows after the time its token was there, and events whose
        service another limit defers cannot bunch up (the bound of :class:`FairShare`).
        """
        self._refill(now)
        self._take_refilled(now, at)

    def _take_refilled(self, now: float, at: float) -> None:
        """:meth:`take` once the bucket was refilled at ``now``."""
        ceiling = self._burst - (at - now) * self._per_second if at > now else self._burst
        tokens = self._tokens
        self._tokens = (tokens if tokens < ceiling else ceiling) - 1.0

    @property
    def tokens(self) -> float:
        """Tokens at the last update (negative: owed)."""
        return self._tokens


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
        buckets = self._buckets
        bucket = buckets.get(key)
        if bucket is None:
            bucket = self.bucket(key, now)
        else:
            buckets.move_to_end(key)  # bucket(), for a known key
        if bucket.allow(now):
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


class FairShare(TokenBucket):
    """A rate that several connections share (all anonymous peers, or one identity's
    connections), divided fairly among them: max-min fairness, time passed in.

    A connection is over its share when its request comes less than one fair interval
    after its previous one was served. The fair interval is the time the rate takes for
    one request of each backlogged connection; the bucket shows their number without
    counting them, since each of them has one request reserved ahead, so the tokens owed
    beyond :attr:`headroom` are about as many as they are.

    - Requests over their share may only take tokens beyond :attr:`headroom` (about half
      the burst): they wait in turn, as in a plain reserving bucket, each backlogged
      connection once per round.
    - Requests under their share (a light pool user among flooders) may take the
      headroom too: while it lasts they are served at once instead of behind the backlog,
      and the backlog waits for the tokens they took. Beyond it they wait at most about
      one fair interval.

    Every request takes its token for the time it is served (:meth:`TokenBucket.take`),
    so in any window of ``w`` seconds at most ``per_second * w + burst`` requests are
    served, whoever they are and in whatever order (``docs/enrp.md`` says why). Each
    call is O(1): no connection is scanned.
    """

    __slots__ = ("headroom",)

    def __init__(self, rate: Rate, now: float) -> None:
        super().__init__(rate, now)
        #: Whole tokens that requests over their share leave to those under it: half of
        #: what the burst has beyond the one a request needs.
        self.headroom = float((rate.burst - 1.0) // 2)

    def due_share(self, now: float, over_share: bool) -> float:
        """Seconds from ``now`` until a request may take its token (``0.0``: now)."""
        return self.due(now, self.headroom if over_share else 0.0)

    def interval(self) -> float:
        """Seconds one connection's fair share allows between two of its requests, as
        the tokens owed beyond the headroom show it after the last :meth:`take`."""
        owed = self.headroom - self._tokens
        return (owed if owed > 1.0 else 1.0) / self._per_second


def _checkDeferral(connection: Rate, name: str, shared: Rate) -> None:
    """Warn when a wait that the connection rate causes (up to ``1/connection``) outlasts
    what the shared burst leaves beyond its headroom: such a request then holds back
    shared tokens (:meth:`TokenBucket.take`), and other connections wait for them."""
    tokens = shared.per_second / connection.per_second
    headroom = FairShare(shared, 0.0).headroom
    if tokens <= shared.burst - 1.0 - headroom:
        return
    log.warn(
        "A request that the connection rate ({connection}/s) makes wait holds back up to "
        "{tokens:.0f} tokens of the {name} rate ({rate}/s, burst {burst}): other "
        "connections may wait for them. A {name} burst of {needed} or more avoids it.",
        connection=connection.per_second,
        tokens=tokens,
        name=name,
        rate=shared.per_second,
        burst=shared.burst,
        needed=2 * math.ceil(tokens) + 1,
    )


@dataclass(slots=True)
class _Connection:
    """What :class:`RequestLimiter` keeps of one connection."""

    bucket: TokenBucket
    #: Until then a request of this connection is over its share of the shared rate.
    share_until: float = float("-inf")


class _Recent(Generic[_K, _V]):
    """At most ``max_keys`` values by key; the least recently used is forgotten first."""

    def __init__(self, make: Callable[[float], _V], max_keys: int) -> None:
        self._make = make
        self._max_keys = max_keys
        #: By key, least recently used first (read only; :meth:`get` keeps the order).
        self.values: OrderedDict[_K, _V] = OrderedDict()

    def get(self, key: _K, now: float) -> _V:
        value = self.values.get(key)
        if value is None:
            value = self.values[key] = self._make(now)
            if len(self.values) > self._max_keys:
                self.values.popitem(last=False)
        else:
            self.values.move_to_end(key)
        return value

    def pop(self, key: _K) -> None:
        self.values.pop(key, None)

    def __len__(self) -> int:
        return len(self.values)


class RequestLimiter(Generic[_K]):
    """When each connection's next request may be handled: token buckets that every
    request must find a token in.

    - one per connection (``connection_rate``);
    - for an authenticated peer, one per identity over all its connections
      (``identity_rate``), so that opening more connections gains nothing;
    - for peers that did not authenticate, one that all of them share
      (``anonymous_rate``): they cannot be told apart, so together they get one budget.

    The identity's and the anonymous rates are each a :class:`FairShare`: a connection
    under its share of it (a light pool user) is not queued behind the connections that
    flood it. :meth:`admit` takes a token in each of the connection's buckets for the time
    the request is served and says how long it must wait until then. ``delayed`` counts
    the requests that had to wait; ``limited_by`` names the bucket that made the last one
    wait longest (``"connection"``, ``"identity"`` or ``"anonymous"``).
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
        self._connections: _Recent[_K, _Connection] = _Recent(
            lambda at: _Connection(TokenBucket(connection_rate, at)), max_keys
        )
        self._identities: _Recent[str, FairShare] = _Recent(
            lambda at: FairShare(identity_rate, at), max_keys
        )
        self._anonymous = FairShare(anonymous_rate, now)
        self.delayed = 0
        self.limited_by: str | None = None
        for name, shared in (("identity", identity_rate), ("anonymous", anonymous_rate)):
            _checkDeferral(connection_rate, name, shared)

    def admit(self, connection: _K, identity: str | None, now: float) -> float:
        """Count a request of ``connection`` (whose peer authenticated as ``identity``, or
        ``None``) arriving at ``now``; the seconds it must wait before it is handled
        (``0.0``: at once). Its tokens are taken: ask once per request, and ask a
        connection's next request once this one is handled."""
        # This runs for every request: the known keys' lookups (_Recent.get), due(),
        # due_share() and interval() unrolled, and take() without the refills that the
        # two waits just did at the same ``now``.
        connections = self._connections.values
        state = connections.get(connection)
        if state is None:
            state = self._connections.get(connection, now)
        else:
            connections.move_to_end(connection)
        if identity is None:
            shared = self._anonymous
        else:
            identities = self._identities.values
            known = identities.get(identity)
            if known is None:
                shared = self._identities.get(identity, now)
            else:
                identities.move_to_end(identity)
                shared = known
        bucket = state.bucket
        # bucket.wait(now) and shared.wait(now, cost), their _refill included, unrolled.
        elapsed = now - bucket._last
        if elapsed > 0:
            tokens = bucket._tokens + elapsed * bucket._per_second
            bucket._tokens = tokens if tokens < bucket._burst else bucket._burst
            bucket._last = now
        missing = 1.0 - bucket._tokens
        own_wait = 0.0 if missing <= _EPSILON else missing / bucket._per_second
        elapsed = now - shared._last
        if elapsed > 0:
            tokens = shared._tokens + elapsed * shared._per_second
            shared._tokens = tokens if tokens < shared._burst else shared._burst
            shared._last = now
        missing = (1.0 + shared.headroom if now < state.share_until else 1.0) - shared._tokens
        shared_wait = 0.0 if missing <= _EPSILON else missing / shared._per_second
        wait = own_wait if own_wait >= shared_wait else shared_wait
        served = now + wait
        bucket._take_refilled(now, served)
        shared._take_refilled(now, served)
        owed = shared.headroom - shared._tokens
        state.share_until = served + (owed if owed > 1.0 else 1.0) / shared._per_second
        if wait <= 0:
            return 0.0
        self.delayed += 1
        if own_wait >= shared_wait:
            self.limited_by = "connection"
        else:
            self.limited_by = "anonymous" if identity is None else "identity"
        return wait

    def forget(self, connection: _K) -> None:
        """Drop what is kept of ``connection`` (it closed); identity buckets stay."""
        self._connections.pop(connection)

    def __len__(self) -> int:
        """Connections whose buckets are kept."""
        return len(self._connections)
