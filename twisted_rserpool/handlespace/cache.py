"""A pool user's cache of handle resolutions (RFC 5352 section 3.3, rules C1-C4).

The cache is a :class:`~.handlespace.Handlespace` of its own, so a pool user selects PEs
from cached pools with the same RFC 5356 policies (RFC 5356's "pool user considerations":
round robin over the list, least used in the order given, random at random). Each pool
becomes stale ``stale_timeout`` seconds after its last resolution; a stale pool can still be
used while a new resolution is under way (C3), and is dropped ``discard_timeout`` seconds
later if no resolution refreshed it.
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from enum import Enum

from twisted_rserpool.deadline import DeadlineQueue
from twisted_rserpool.handlespace.element import PoolElementEntry
from twisted_rserpool.handlespace.errors import RegistrationRefused
from twisted_rserpool.handlespace.events import HandlespaceEvent, RemovalReason
from twisted_rserpool.handlespace.handlespace import UNLIMITED, Handlespace, HandlespaceLimits
from twisted_rserpool.wire.parameters import PoolElementParameter


class CacheState(Enum):
    """What the cache knows about a pool handle."""

    #: Nothing cached: send a handle resolution and wait for it (C1).
    MISSING = "missing"
    #: Cached but stale: send a handle resolution; the entries may still be used (C2, C3).
    STALE = "stale"
    #: Cached and fresh: use it, send nothing (C4).
    FRESH = "fresh"


class PoolUserCache:
    """Cached pools of one pool user, each with a stale timer."""

    def __init__(
        self,
        stale_timeout: float,
        *,
        discard_timeout: float | None = None,
        limits: HandlespaceLimits = UNLIMITED,
        rng: random.Random | None = None,
    ) -> None:
        if stale_timeout < 0:
            raise ValueError("stale_timeout must not be negative")
        self.stale_timeout = stale_timeout
        self.discard_timeout = discard_timeout
        self.handlespace = Handlespace(limits, rng=rng, track_registration_life=False)
        self._fetched: dict[bytes, float] = {}
        self._discard: DeadlineQueue[bytes] = DeadlineQueue()

    def state(self, pool_handle: bytes, now: float) -> CacheState:
        """Whether ``pool_handle`` is missing, stale or fresh at ``now``."""
        fetched = self._fetched.get(pool_handle)
        if fetched is None or pool_handle not in self.handlespace:
            return CacheState.MISSING
        if now - fetched >= self.stale_timeout:
            return CacheState.STALE
        return CacheState.FRESH

    def update(
        self, pool_handle: bytes, elements: Iterable[PoolElementParameter], *, now: float
    ) -> list[HandlespaceEvent]:
        """Store a handle resolution response: exactly these PEs, fresh from ``now``.

        PEs the response no longer lists leave the cache; if the pool's policy or transport
        changed, the old entries go first. PEs that disagree with the first one on policy or
        transport (a confused server) are skipped.
        """
        handlespace = self.handlespace
        events: list[HandlespaceEvent] = []
        elements = list(elements)
        cached = handlespace.find_pool(pool_handle)
        if cached is not None and elements:
            try:
                cached.check_consistency(elements[0])
            except RegistrationRefused:
                # The pool was re-created with another policy or transport.
                events += self.invalidate(pool_handle)
        seen: set[int] = set()
        for element in elements:
            try:
                events += handlespace.register(pool_handle, element, now=now)
            except RegistrationRefused:
                continue
            seen.add(element.pe_identifier)
        pool = handlespace.find_pool(pool_handle)
        if pool is not None:
            for entry in [entry for entry in pool if entry.pe_identifier not in seen]:
                events += handlespace.deregister(
                    pool_handle, entry.pe_identifier, reason=RemovalReason.CACHE
                )
        if pool_handle in handlespace:
            self._fetched[pool_handle] = now
            if self.discard_timeout is not None:
                self._discard.schedule(pool_handle, now + self.stale_timeout + self.discard_timeout)
        else:
            self._forget(pool_handle)
        return events

    def select(self, pool_handle: bytes, count: int = 1) -> list[PoolElementEntry]:
        """Up to ``count`` cached PEs by the pool's policy; :class:`UnknownPoolHandle` if none."""
        return self.handlespace.select(pool_handle, count)

    def remove(
        self,
        pool_handle: bytes,
        pe_identifier: int,
        *,
        reason: RemovalReason = RemovalReason.UNREACHABLE,
    ) -> list[HandlespaceEvent]:
        """Drop one PE (e.g. after the pool user found it unreachable and reported it)."""
        events = self.handlespace.deregister(pool_handle, pe_identifier, reason=reason)
        if pool_handle not in self.handlespace:
            self._forget(pool_handle)
        return events

    def invalidate(self, pool_handle: bytes) -> list[HandlespaceEvent]:
        """Drop a whole pool from the cache."""
        events: list[HandlespaceEvent] = []
        pool = self.handlespace.find_pool(pool_handle)
        if pool is not None:
            for entry in list(pool):
                events += self.handlespace.deregister(
                    pool_handle, entry.pe_identifier, reason=RemovalReason.CACHE
                )
        self._forget(pool_handle)
        return events

    def _forget(self, pool_handle: bytes) -> None:
        self._fetched.pop(pool_handle, None)
        self._discard.cancel(pool_handle)

    def next_deadline(self) -> float | None:
        """When :meth:`expire` next discards a stale pool (``None``: never)."""
        return self._discard.next_deadline()

    def expire(self, now: float) -> list[HandlespaceEvent]:
        """Discard the pools that stayed stale for ``discard_timeout`` seconds by ``now``."""
        events: list[HandlespaceEvent] = []
        for pool_handle in list(self._discard.pop_due(now)):
            events += self.invalidate(pool_handle)
        return events
