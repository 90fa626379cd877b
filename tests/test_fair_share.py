"""Fair sharing of the anonymous and per-identity rates (RFC 5355 2.1, 2.2, 2.13):
:class:`FairShare` through :class:`RequestLimiter`, time passed in, no clock.

The connections are simulated the way the transport asks: a flooder asks for its next
request as soon as the previous one is served (it always has one waiting), a light pool
user asks once per period, and never before its previous request was served.
"""

from __future__ import annotations

import heapq
import statistics
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.logger import ILogObserver, Logger, LogLevel, formatEvent
from zope.interface import implementer

from twisted_rserpool.security import ratelimit
from twisted_rserpool.security.ratelimit import FairShare, Rate, RequestLimiter

#: The defaults of ``twistd enrp``: per connection, and for all anonymous peers together.
CONNECTION = Rate(200.0, 400.0)
ANONYMOUS = Rate(500.0, 1000.0)
FLOODERS = list(range(20))
LIGHT = 100


@dataclass(frozen=True)
class Served:
    connection: int
    asked: float
    at: float

    @property
    def wait(self) -> float:
        return self.at - self.asked


def simulate(
    limiter: RequestLimiter[int],
    *,
    flooders: Sequence[int],
    periods: Mapping[int, float],
    until: float,
    start: float = 0.0,
    identity: str | None = None,
) -> list[Served]:
    """Every request asked before ``until``, with the time it is served."""
    asks = [(start, c) for c in flooders] + [(start, c) for c in periods]
    heapq.heapify(asks)
    served: list[Served] = []
    while asks:
        now, connection = heapq.heappop(asks)
        if now >= until:
            continue
        at = now + limiter.admit(connection, identity, now)
        served.append(Served(connection, now, at))
        period = periods.get(connection)
        heapq.heappush(asks, (at if period is None else max(now + period, at), connection))
    return served


def limiter(anonymous: Rate = ANONYMOUS, connection: Rate = CONNECTION) -> RequestLimiter[int]:
    return RequestLimiter(connection, anonymous, anonymous)


def test_a_light_connection_is_served_before_the_backlog() -> None:
    """Among 20 backlogged anonymous connections, one asking 10 times a second (under
    its share of 500/21 a second) is served at once every time, while each flooder's
    request waits a round of the backlog (which it would have waited behind in turn)."""
    served = simulate(limiter(), flooders=FLOODERS, periods={LIGHT: 0.1}, until=4.0)
    late = [s for s in served if s.asked >= 1.0]
    light = [s.wait for s in late if s.connection == LIGHT]
    flood = [s.wait for s in late if s.connection != LIGHT]
    assert len(light) >= 29
    assert max(light) == 0.0
    assert statistics.median(flood) >= 15 / ANONYMOUS.per_second


def test_beyond_the_headroom_a_light_connection_waits_about_one_fair_interval() -> None:
    """With more backlogged connections than the headroom (5 tokens of a burst of 11), a
    light one waits, but not longer than one request interval of its fair share."""
    rate = Rate(100.0, 11.0)
    served = simulate(
        limiter(rate, Rate(1e4, 1e4)), flooders=FLOODERS, periods={LIGHT: 0.5}, until=10.0
    )
    light = [s.wait for s in served if s.connection == LIGHT and s.asked >= 1.0]
    interval = (len(FLOODERS) + 1) / rate.per_second
    assert len(light) == 18
    assert 0.0 < max(light) <= interval + 1e-9


def test_backlogged_connections_share_the_rate_equally() -> None:
    """Twenty connections flooding one shared rate each get a twentieth of it."""
    served = simulate(limiter(), flooders=FLOODERS, periods={}, until=3.0)
    counts = Counter(s.connection for s in served if 1.0 <= s.at < 3.0)
    assert sorted(counts) == FLOODERS
    assert max(counts.values()) - min(counts.values()) <= 2
    assert sum(counts.values()) == pytest.approx(2 * ANONYMOUS.per_second, abs=25)


def test_a_connection_over_its_share_is_held_to_it() -> None:
    """One asking every 20 ms (50 a second) among 20 flooders is over its share of
    500/21 a second: it gets about that share, not what it asks for."""
    served = simulate(limiter(), flooders=FLOODERS, periods={LIGHT: 0.02}, until=4.0)
    mine = [s for s in served if s.connection == LIGHT and 1.0 <= s.at < 4.0]
    share = ANONYMOUS.per_second / (len(FLOODERS) + 1)
    assert 0.8 * share <= len(mine) / 3.0 <= 1.3 * share


def test_connections_that_go_away_stop_counting() -> None:
    """Once the flooders closed, within a round of their backlog one connection gets the
    whole rate again, and their state is gone."""
    rates = limiter(connection=Rate(1e4, 1e4))
    simulate(rates, flooders=FLOODERS, periods={}, until=1.0)
    for flooder in FLOODERS:
        rates.forget(flooder)
    assert len(rates) == 0
    after = simulate(rates, flooders=[LIGHT], periods={}, start=1.0, until=3.0)
    settled = [s for s in after if s.at >= 1.0 + 2 * len(FLOODERS) / ANONYMOUS.per_second]
    assert max(s.wait for s in settled) == pytest.approx(1 / ANONYMOUS.per_second)
    window = settled[-1].at - settled[0].at
    assert len(settled) - 1 == pytest.approx(window * ANONYMOUS.per_second, abs=1)


def test_an_identitys_light_connection_is_served_before_its_flooding_ones() -> None:
    """The same holds among the connections of one identity: its PE connection
    refreshing a registration is not queued behind its other connections' flood."""
    served = simulate(limiter(), flooders=FLOODERS, periods={LIGHT: 0.1}, until=4.0, identity="pe")
    light = [s.wait for s in served if s.connection == LIGHT and s.asked >= 1.0]
    assert len(light) >= 29 and max(light) == 0.0


def test_headroom_is_half_of_what_the_burst_has_beyond_one_request() -> None:
    assert [FairShare(Rate(1.0, b), 0.0).headroom for b in (1.0, 2.0, 3.0, 10.0, 1000.0)] == [
        0.0,
        0.0,
        1.0,
        4.0,
        499.0,
    ]


def test_waits_of_their_own_rate_do_not_bunch_requests_beyond_the_shared_burst() -> None:
    """Eight connections each ask twice at once: their own rate (1/s) defers the second
    requests by a second, far longer than the shared burst (1 at 100/s) lasts. Each took
    its shared token for the time it is served, so they are not all served at once."""
    rates: RequestLimiter[int] = RequestLimiter(Rate(1.0, 1.0), Rate(100.0, 1.0), Rate(100.0, 1.0))
    served = [0.0 + rates.admit(c, None, 0.0) for c in range(8) for _ in range(2)]
    assert within(served, Rate(100.0, 1.0))
    assert Counter(served).most_common(1)[0][1] == 1


def test_a_connection_rate_too_low_for_the_shared_burst_is_warned_about(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """When a wait of the connection rate outlasts what the shared burst has beyond its
    headroom, the limiter says so when it is made, and which burst would do."""
    warnings: list[str] = []

    @implementer(ILogObserver)
    class Warnings:
        def __call__(self, event: dict[str, Any]) -> None:
            if event.get("log_level") is LogLevel.warn:
                warnings.append(formatEvent(event))

    monkeypatch.setattr(ratelimit, "log", Logger(observer=Warnings()))
    RequestLimiter(CONNECTION, ANONYMOUS, ANONYMOUS)
    assert warnings == []
    RequestLimiter(Rate(10.0, 10.0), ANONYMOUS, Rate(500.0, 20.0))
    assert len(warnings) == 1
    assert "anonymous rate (500.0/s, burst 20.0)" in warnings[0]
    assert "burst of 101 or more" in warnings[0]


@st.composite
def arrivals(draw: st.DrawFn) -> tuple[Rate, Rate, bool, list[tuple[int, float, bool]]]:
    # Rates from 1 to 1000 a second on a log scale; requests often at the same instant.
    shared = Rate(10 ** draw(st.floats(0.0, 3.0)), float(draw(st.integers(1, 40))))
    own = Rate(10 ** draw(st.floats(0.0, 3.0)), float(draw(st.integers(1, 40))))
    gaps = st.one_of(st.just(0.0), st.floats(0.0, 0.05))
    events = draw(st.lists(st.tuples(st.integers(0, 7), gaps, st.booleans()), max_size=150))
    return shared, own, draw(st.booleans()), events


def within(times: list[float], rate: Rate) -> bool:
    """No window [a, b] holds more than ``rate * (b - a) + burst`` of ``times``."""
    times = sorted(times)
    return all(
        j - i + 1 <= rate.per_second * (times[j] - times[i]) + rate.burst + 1e-6
        for i in range(len(times))
        for j in range(i, len(times))
    )


@settings(max_examples=150, deadline=None)
@given(arrivals(), st.booleans())
def test_served_requests_never_exceed_rate_times_window_plus_burst(
    drawn: tuple[Rate, Rate, bool, list[tuple[int, float, bool]]], anonymous: bool
) -> None:
    """Whatever arrives, from connections that wait for their previous request or that
    ask again at once (and with connections closing): the requests served within any
    window stay within the shared rate, and each connection's within its own."""
    shared, own, waits_its_turn, events = drawn
    rates: RequestLimiter[int] = RequestLimiter(own, shared, shared)
    identity = None if anonymous else "pe"
    now = 0.0
    asks: list[tuple[float, int, int]] = []
    for sequence, (connection, gap, closes) in enumerate(events):
        now += gap
        asks.append((now, sequence, connection if not closes else -1 - connection))
    heapq.heapify(asks)
    ready: dict[int, float] = {}
    generation: Counter[int] = Counter()
    served: list[float] = []
    per_connection: dict[tuple[int, int], list[float]] = {}
    while asks:
        now, sequence, connection = heapq.heappop(asks)
        if connection < 0:
            rates.forget(-1 - connection)
            generation[-1 - connection] += 1
            ready.pop(-1 - connection, None)
            continue
        if waits_its_turn and ready.get(connection, now) > now:
            heapq.heappush(asks, (ready[connection], sequence, connection))
            continue
        at = now + rates.admit(connection, identity, now)
        ready[connection] = at
        served.append(at)
        per_connection.setdefault((connection, generation[connection]), []).append(at)
    assert within(served, shared)
    assert all(within(times, own) for times in per_connection.values())
