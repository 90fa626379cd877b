"""The ENRP server hunt (RFC 5352 section 3.6) as a sans-IO state machine.

:class:`ServerHunt` decides which ENRP server an endpoint tries next. It knows the
configured servers and the announced ones (ASAP_SERVER_ANNOUNCE: hints that expire after
T7-ENRPoutdate), tries one server at a time, moves on when an attempt fails (SH4), and
gives each round T5-Serverhunt seconds; when T5 expires it doubles T5 up to RETRAN-MAX
(SH5.1), abandons the attempt under way (SH5.2) and starts a new round. A connection that
was established resets T5 (SH3). Whether an established connection counts (the server
authenticated) is for the caller to decide before it calls :meth:`ServerHunt.succeeded`.

A hunt begun while the home server is still connected (RFC 5352 3.7.2: a request timed out
and is being sent again to it) excludes that server (and the ones still connected from
earlier such hunts), so that the hunt finds another one.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from twisted_rserpool.asap.timers import AsapTimers

__all__ = ["HuntStep", "ServerHunt"]

K = TypeVar("K", bound=Hashable)


@dataclass(frozen=True, slots=True)
class HuntStep(Generic[K]):
    """What to do now: abandon ``cancel`` (if set), then try ``attempt`` (if set)."""

    cancel: K | None = None
    attempt: K | None = None


class ServerHunt(Generic[K]):
    """Chooses ENRP servers to try; ``K`` is whatever names a server for the caller."""

    def __init__(self, configured: Sequence[K], timers: AsapTimers) -> None:
        self.timers = timers
        self._configured = list(dict.fromkeys(configured))
        self._announced: dict[K, float] = {}
        self._t5 = timers.t5_server_hunt
        self._deadline: float | None = None
        self._tried: set[K] = set()
        self._current: K | None = None
        self._next_index = 0
        self._exclude: frozenset[K] = frozenset()
        self.rounds = 0

    @property
    def hunting(self) -> bool:
        """Whether a hunt is under way."""
        return self._deadline is not None

    @property
    def current(self) -> K | None:
        """The server being tried now."""
        return self._current

    @property
    def t5(self) -> float:
        """The T5-Serverhunt value the next round gets."""
        return self._t5

    def candidates(self, now: float) -> list[K]:
        """The configured servers, then the announced ones still within T7."""
        self._expire_announcements(now)
        return self._configured + [k for k in self._announced if k not in self._configured]

    def announced(self, server: K, now: float) -> None:
        """An ASAP_SERVER_ANNOUNCE named ``server``: a hint for T7-ENRPoutdate seconds."""
        if server not in self._configured:
            self._announced[server] = now + self.timers.t7_enrp_outdate

    def begin(self, now: float, exclude: Iterable[K] = ()) -> HuntStep[K]:
        """Start hunting (SH1, SH2); does nothing if a hunt is already under way.
        ``exclude``: servers not to try in this hunt (the home server, still connected)."""
        if self.hunting:
            return HuntStep()
        self._deadline = now + self._t5
        self.rounds = 1
        self._tried.clear()
        self._exclude = frozenset(exclude)
        return HuntStep(attempt=self._pick(now))

    def retry(self, now: float) -> HuntStep[K]:
        """A candidate appeared (an announcement): if the round has nothing under way, try
        it now instead of waiting for T5 to expire."""
        if not self.hunting or self._current is not None:
            return HuntStep()
        return HuntStep(attempt=self._pick(now))

    def include_all(self) -> None:
        """The excluded servers are gone too: the hunt may try them again."""
        self._exclude = frozenset()

    def abandon(self) -> HuntStep[K]:
        """End a hunt that is no longer needed (the home server answered after all)."""
        cancel, self._current = self._current, None
        self._deadline = None
        self._exclude = frozenset()
        self._tried.clear()
        return HuntStep(cancel=cancel)

    def failed(self, server: K, now: float) -> HuntStep[K]:
        """An attempt failed (refused, TLS failed, not authenticated): try another (SH4).

        When every candidate failed in this round, wait for T5 to expire."""
        if server != self._current or not self.hunting:
            return HuntStep()
        self._current = None
        return HuntStep(attempt=self._pick(now))

    def succeeded(self, server: K) -> None:
        """The connection to ``server`` is up and trusted: the hunt is over (SH3, SH6)."""
        self._deadline = None
        self._current = None
        self._exclude = frozenset()
        self._t5 = self.timers.t5_server_hunt
        self._tried.clear()

    def next_deadline(self) -> float | None:
        """When :meth:`handle_timer` has work: the end of this round, or a hint's expiry."""
        deadlines = [d for d in (self._deadline, *self._announced.values()) if d is not None]
        return min(deadlines) if deadlines else None

    def handle_timer(self, now: float) -> HuntStep[K]:
        """T5 expired: double it (capped at RETRAN-MAX), drop the attempt under way and
        start a new round with the next servers (SH5)."""
        self._expire_announcements(now)
        if self._deadline is None or now < self._deadline:
            return HuntStep()
        self._t5 = min(self._t5 * 2, self.timers.retran_max)
        self._deadline = now + self._t5
        self.rounds += 1
        cancel, self._current = self._current, None
        self._tried.clear()
        return HuntStep(cancel=cancel, attempt=self._pick(now, avoid=cancel))

    def _pick(self, now: float, avoid: K | None = None) -> K | None:
        candidates = self.candidates(now)
        if not candidates:
            return None
        ordered = candidates[self._next_index % len(candidates) :]
        ordered += candidates[: self._next_index % len(candidates)]
        untried = [k for k in ordered if k not in self._tried and k not in self._exclude]
        if avoid is not None and len(untried) > 1:
            untried = [k for k in untried if k != avoid]
        if not untried:
            return None
        choice = untried[0]
        self._next_index = candidates.index(choice) + 1
        self._tried.add(choice)
        self._current = choice
        return choice

    def _expire_announcements(self, now: float) -> None:
        for server, deadline in list(self._announced.items()):
            if deadline <= now:
                del self._announced[server]
