"""The handlespace: every pool an ENRP server knows, who owns each PE, and when it expires.

Pure data structure, no I/O: methods take the current time where time matters and return
the events they caused. Registration, de-registration, update and selection cost O(log n)
in the size of the pool (plus O(1) dictionary work).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Hashable, Iterable, Iterator
from dataclasses import dataclass, replace

from twisted.logger import Logger

from twisted_rserpool.deadline import DeadlineQueue
from twisted_rserpool.describe import handleText, objectText
from twisted_rserpool.handlespace import checksum
from twisted_rserpool.handlespace.element import PoolElementEntry
from twisted_rserpool.handlespace.errors import (
    DeregistrationRefused,
    RegistrationRefused,
    UnknownPoolHandle,
)
from twisted_rserpool.handlespace.events import (
    HandlespaceEvent,
    PoolCreated,
    PoolElementAdded,
    PoolElementRemoved,
    PoolElementUpdated,
    PoolRemoved,
    RemovalReason,
    UpdateReason,
)
from twisted_rserpool.handlespace.pool import Pool
from twisted_rserpool.wire.errors import CauseCode
from twisted_rserpool.wire.parameters import PoolElementParameter, SelectionPolicy

log = Logger()

Observer = Callable[[HandlespaceEvent], None]


@dataclass(frozen=True, slots=True)
class HandlespaceLimits:
    """How much one handlespace holds before it refuses with Lack of Resources.

    ``None`` means unlimited. The defaults suit one ENRP server of a mid-sized operational
    scope; RSPLIB's pool handles are at most 32 bytes.
    """

    max_pool_handle_length: int | None = 32
    max_pools: int | None = 10_000
    max_elements_per_pool: int | None = 10_000
    #: PEs one home ENRP server may own (its own registrations and each peer's).
    max_elements_per_owner: int | None = 100_000
    #: PEs one authenticated identity may register (RFC 5355: no PE floods a pool).
    max_elements_per_identity: int | None = 1_000


UNLIMITED = HandlespaceLimits(None, None, None, None, None)


@dataclass(frozen=True, slots=True)
class UnreachableCount:
    """What :meth:`Handlespace.count_unreachable` made of one report."""

    #: Distinct reporters counted since the PE's last sign of life.
    count: int
    #: Whether this report counted (false: the reporter already did within the window).
    counted: bool


@dataclass(frozen=True, slots=True)
class Resolution:
    """What an ASAP_HANDLE_RESOLUTION_RESPONSE carries: the overall policy and the PEs."""

    pool_handle: bytes
    #: The pool's overall policy (RFC 5352 3.3: sent when it is not Round Robin).
    policy: SelectionPolicy
    elements: tuple[PoolElementParameter, ...]


class _Owner:
    """The PEs one home ENRP server owns and their running checksum word sum.

    The PEs form a doubly linked list through their entries (``_owner_prev`` and
    ``_owner_next``): O(1) to add and remove, and no hash table of a million entries.
    """

    __slots__ = ("count", "first", "total")

    def __init__(self) -> None:
        self.first: PoolElementEntry | None = None
        self.count = 0
        self.total = 0

    def __iter__(self) -> Iterator[PoolElementEntry]:
        entry = self.first
        while entry is not None:
            yield entry
            entry = entry._owner_next


class Subscription:
    """An observer registered with :meth:`Handlespace.subscribe`; ``cancel()`` ends it."""

    __slots__ = ("_handlespace", "observer", "pool_handle")

    def __init__(
        self, handlespace: Handlespace, observer: Observer, pool_handle: bytes | None
    ) -> None:
        self._handlespace = handlespace
        self.observer = observer
        self.pool_handle = pool_handle

    def cancel(self) -> None:
        """Stop delivering events to this observer (idempotent)."""
        self._handlespace._unsubscribe(self)


class Handlespace:
    """Pools keyed by pool handle, pool elements keyed by PE identifier within their pool.

    ``rng`` drives the random policies (pass a seeded ``random.Random`` for repeatable
    runs). With ``track_registration_life`` false, registration lives are not scheduled for
    expiry (a pool user's cache, which goes stale instead).
    """

    def __init__(
        self,
        limits: HandlespaceLimits = HandlespaceLimits(),
        *,
        rng: random.Random | None = None,
        track_registration_life: bool = True,
    ) -> None:
        self.limits = limits
        self.rng = rng if rng is not None else random.Random()
        self._track_life = track_registration_life
        self._pools: dict[bytes, Pool] = {}
        self._owners: dict[int, _Owner] = {}
        self._identities: dict[str, int] = {}
        self._count = 0
        self._expiry: DeadlineQueue[PoolElementEntry] = DeadlineQueue(token="_expiry_token")
        self._keep_alive: DeadlineQueue[PoolElementEntry] = DeadlineQueue(token="_keep_alive_token")
        # The earliest deadline of both queues, asked after every message a server handles:
        # kept until either queue changes (``_next_known`` false).
        self._next: float | None = None
        self._next_known = True
        self._observers: list[Subscription] = []
        self._pool_observers: dict[bytes, list[Subscription]] = {}

    # ------------------------------------------------------------------ queries

    def __len__(self) -> int:
        """The number of pool elements in all pools."""
        return self._count

    def __contains__(self, pool_handle: bytes) -> bool:
        return pool_handle in self._pools

    def pools(self) -> Iterator[Pool]:
        """Every pool (in no particular order)."""
        return iter(self._pools.values())

    def pool(self, pool_handle: bytes) -> Pool:
        """The pool with this handle; :class:`UnknownPoolHandle` if there is none."""
        pool = self._pools.get(pool_handle)
        if pool is None:
            raise UnknownPoolHandle(pool_handle)
        return pool

    def find_pool(self, pool_handle: bytes) -> Pool | None:
        """The pool with this handle, or ``None``."""
        return self._pools.get(pool_handle)

    def get(self, pool_handle: bytes, pe_identifier: int) -> PoolElementEntry | None:
        """The PE with this identifier in this pool, or ``None``."""
        pool = self._pools.get(pool_handle)
        return None if pool is None else pool.get(pe_identifier)

    def elements(self) -> Iterator[PoolElementEntry]:
        """Every pool element of every pool."""
        for pool in self._pools.values():
            yield from pool

    def select(self, pool_handle: bytes, count: int) -> list[PoolElementEntry]:
        """Handle resolution: up to ``count`` distinct PEs of the pool, by its policy.

        Raises :class:`UnknownPoolHandle` (cause Unknown Pool Handle) for a missing pool.
        Selection updates the policy's state: the round robin head, degradation counters.
        """
        pool = self._pools.get(pool_handle)
        if pool is None:
            raise UnknownPoolHandle(pool_handle)
        return pool.select(count, self.rng)

    def resolve(self, pool_handle: bytes, count: int) -> Resolution:
        """A handle resolution answer: the pool's overall policy and up to ``count`` PEs.

        Callers bound ``count`` (RSPLIB answers 3 PEs by default and at most 128): the
        work is proportional to the PEs returned.
        """
        pool = self._pools.get(pool_handle)
        if pool is None:
            raise UnknownPoolHandle(pool_handle)
        entries = pool.select(count, self.rng)
        return Resolution(pool.handle, pool.policy, tuple(entry.element for entry in entries))

    # ------------------------------------------------------------------ registration

    def register(
        self,
        pool_handle: bytes,
        element: PoolElementParameter,
        *,
        now: float,
        identity: str | None = None,
        owner_identity: str | None = None,
    ) -> list[HandlespaceEvent]:
        """Add ``element`` to the pool, or update it in place if it is already there.

        ``element`` is stored as given (without its ``owner_identity`` field, which only
        ENRP carries): the registrar sets its own identifier as home ENRP server and the
        ASAP transport it saw; a peer's handle update carries the peer's. ``identity`` is
        who registered it here (``None`` for peer updates: a PE learnt from a peer keeps
        the identity it had). ``owner_identity`` is the identity that owns it pool-wide
        (RFC 5355 2.3): the registrar passes the registering identity, a peer's update
        ``element.owner_identity``. A PE whose owner identity is known keeps it: a
        registration or update naming another is refused, one naming none keeps it, and a
        PE of unknown owner identity adopts the first one named. Without owner identities
        on either side, ``identity`` must match the identity that registered the PE. A
        re-registration whose element equals the stored one keeps the stored object (``is``
        tells an unchanged re-registration), and with it the entry's cached encodings.

        Raises :class:`RegistrationRefused` with the RFC 5354 cause: Invalid Values for an
        empty handle, Lack of Resources beyond a limit, Inconsistent Pooling Policy /
        Transport Type / Data/Control Configuration, or Non-Unique PE Identifier when
        another identity registered or owns this PE identifier.
        """
        if not pool_handle:
            raise RegistrationRefused(CauseCode.INVALID_VALUES, "empty pool handle")
        if element.owner_identity is not None:
            element = replace(element, owner_identity=None)
        limits = self.limits
        pool = self._pools.get(pool_handle)
        existing = None
        if pool is not None:
            pool.check_consistency(element)
            existing = pool.get(element.pe_identifier)
        if pool is not None and existing is not None:
            return self._reregister(pool, existing, element, now, identity, owner_identity)

        if pool is None:
            if (
                limits.max_pool_handle_length is not None
                and len(pool_handle) > limits.max_pool_handle_length
            ):
                raise RegistrationRefused(
                    CauseCode.LACK_OF_RESOURCES,
                    f"pool handle of {len(pool_handle)} bytes is longer than"
                    f" {limits.max_pool_handle_length}",
                )
            if limits.max_pools is not None and len(self._pools) >= limits.max_pools:
                raise RegistrationRefused(
                    CauseCode.LACK_OF_RESOURCES, f"already {len(self._pools)} pools"
                )
        elif limits.max_elements_per_pool is not None and len(pool) >= limits.max_elements_per_pool:
            raise RegistrationRefused(
                CauseCode.LACK_OF_RESOURCES,
                f"pool {handleText(pool_handle)} already has {len(pool)} pool elements",
            )
        self._check_owner_room(element.home_server_identifier)
        if identity is not None:
            self._check_identity_room(identity)

        events: list[HandlespaceEvent] = []
        if pool is None:
            pool = Pool(bytes(pool_handle), element)
            self._pools[pool.handle] = pool
            events.append(PoolCreated(pool_handle, pool.policy, pool.transport))
        entry = PoolElementEntry(pool.handle, element, identity, now, owner_identity)
        pool.add(entry)
        self._count += 1
        self._own(entry, pool)
        if identity is not None:
            self._identities[identity] = self._identities.get(identity, 0) + 1
        self._schedule_expiry(entry, now)
        events.append(PoolElementAdded(pool.handle, element, identity))
        self._notify(events)
        return events

    def _reregister(
        self,
        pool: Pool,
        entry: PoolElementEntry,
        element: PoolElementParameter,
        now: float,
        identity: str | None,
        owner_identity: str | None,
    ) -> list[HandlespaceEvent]:
        """RFC 5352 section 3.1 rule 3: replace the attributes of an existing PE."""
        if owner_identity is not None and entry.owner_identity is not None:
            # RFC 5355 2.3: the identity that owns a PE pool-wide decides.
            if owner_identity != entry.owner_identity:
                raise RegistrationRefused(
                    CauseCode.NON_UNIQUE_PE_IDENTIFIER,
                    f"PE identifier 0x{element.pe_identifier:08x} in pool {handleText(pool.handle)}"
                    " is owned by another identity",
                )
        elif identity is not None and entry.identity is not None and identity != entry.identity:
            raise RegistrationRefused(
                CauseCode.NON_UNIQUE_PE_IDENTIFIER,
                f"PE identifier 0x{element.pe_identifier:08x} in pool {handleText(pool.handle)}"
                " is registered by another identity",
            )
        old_owner = entry.element.home_server_identifier
        new_owner = element.home_server_identifier
        if new_owner != old_owner:
            self._check_owner_room(new_owner)
        # A PE learnt from a peer (no identity) that now registers here adopts the identity;
        # so does one whose owner registers it again under its own name (after a takeover
        # it was registered under the new home's name for it).
        adopted = identity if identity is not None and identity != entry.identity else None
        if adopted is not None:
            self._check_identity_room(adopted)

        previous = entry.element
        if element == previous:
            # Unchanged: keep the stored object and with it the encodings cached for it.
            element = previous
        if new_owner != old_owner:
            self._disown(entry, pool)
            pool.update(entry, element)
            self._own(entry, pool)
        else:
            pool.update(entry, element)
        if adopted is not None:
            self._uncount_identity(entry.identity)
            entry.identity = adopted
            self._identities[adopted] = self._identities.get(adopted, 0) + 1
        if entry.owner_identity is None:
            entry.owner_identity = owner_identity
        entry.updated_at = now
        # A re-registration is a sign of life (the reporters stay remembered, see
        # count_unreachable).
        entry.unreachable_reports = 0
        # A re-registration is a sign of life: forget an unanswered keep-alive.
        entry.keep_alive_deadline = None
        self._keep_alive.cancel(entry)
        self._next_known = False
        self._schedule_expiry(entry, now)
        events: list[HandlespaceEvent] = [
            PoolElementUpdated(pool.handle, element, previous, UpdateReason.REREGISTERED)
        ]
        self._notify(events)
        return events

    def _check_owner_room(self, owner: int) -> None:
        limit = self.limits.max_elements_per_owner
        if limit is None:
            return
        record = self._owners.get(owner)
        if record is not None and record.count >= limit:
            raise RegistrationRefused(
                CauseCode.LACK_OF_RESOURCES,
                f"home ENRP server 0x{owner:08x} already owns {record.count} pool elements",
            )

    def _check_identity_room(self, identity: str) -> None:
        limit = self.limits.max_elements_per_identity
        if limit is not None and self._identities.get(identity, 0) >= limit:
            raise RegistrationRefused(
                CauseCode.LACK_OF_RESOURCES,
                f"identity {identity!r} already registered {limit} pool elements",
            )

    def _schedule_expiry(self, entry: PoolElementEntry, now: float) -> None:
        life = entry.element.registration_life
        if self._track_life and life >= 0:
            entry.expires_at = now + life
            self._expiry.schedule(entry, entry.expires_at)
            self._next_known = False
        elif entry.expires_at is not None:
            entry.expires_at = None
            self._expiry.cancel(entry)
            self._next_known = False

    def deregister(
        self,
        pool_handle: bytes,
        pe_identifier: int,
        *,
        identity: str | None = None,
        reason: RemovalReason = RemovalReason.DEREGISTERED,
    ) -> list[HandlespaceEvent]:
        """Remove a PE; nothing happens (and no error) if it is not there.

        RFC 5352 section 3.2 treats the de-registration of an unknown PE as granted. With an
        ``identity``, a PE registered by another identity is refused with Rejected Due to
        Security Considerations (:class:`DeregistrationRefused`).
        """
        pool = self._pools.get(pool_handle)
        entry = None if pool is None else pool.get(pe_identifier)
        if pool is None or entry is None:
            return []
        if identity is not None and entry.identity is not None and identity != entry.identity:
            raise DeregistrationRefused(
                CauseCode.REJECTED_DUE_TO_SECURITY_CONSIDERATIONS,
                f"PE identifier 0x{pe_identifier:08x} in pool {handleText(pool_handle)}"
                " was registered by another identity",
            )
        events: list[HandlespaceEvent] = []
        self._remove(pool, entry, reason, events)
        self._notify(events)
        return events

    def _remove(
        self,
        pool: Pool,
        entry: PoolElementEntry,
        reason: RemovalReason,
        events: list[HandlespaceEvent],
    ) -> None:
        pool.remove(entry)
        self._count -= 1
        self._disown(entry, pool)
        self._uncount_identity(entry.identity)
        self._expiry.cancel(entry)
        self._keep_alive.cancel(entry)
        self._next_known = False
        events.append(PoolElementRemoved(pool.handle, entry.element, reason))
        if not len(pool):
            del self._pools[pool.handle]
            events.append(PoolRemoved(pool.handle))

    def _uncount_identity(self, identity: str | None) -> None:
        if identity is None:
            return
        remaining = self._identities[identity] - 1
        if remaining:
            self._identities[identity] = remaining
        else:
            del self._identities[identity]

    # ------------------------------------------------------------------ ownership

    def _own(self, entry: PoolElementEntry, pool: Pool) -> None:
        owner = entry.element.home_server_identifier
        record = self._owners.get(owner)
        if record is None:
            record = self._owners[owner] = _Owner()
        following = record.first
        entry._owner_prev = None
        entry._owner_next = following
        if following is not None:
            following._owner_prev = entry
        record.first = entry
        record.count += 1
        pe_id = entry.element.pe_identifier
        record.total += pool.handle_sum + (pe_id >> 16) + (pe_id & 0xFFFF)

    def _disown(self, entry: PoolElementEntry, pool: Pool) -> None:
        owner = entry.element.home_server_identifier
        record = self._owners[owner]
        previous, following = entry._owner_prev, entry._owner_next
        if previous is None:
            record.first = following
        else:
            previous._owner_next = following
        if following is not None:
            following._owner_prev = previous
        entry._owner_prev = entry._owner_next = None
        record.count -= 1
        if not record.count:
            del self._owners[owner]
            return
        pe_id = entry.element.pe_identifier
        record.total -= pool.handle_sum + (pe_id >> 16) + (pe_id & 0xFFFF)

    def owners(self) -> list[int]:
        """The identifiers of every home ENRP server that owns at least one PE, ascending."""
        return sorted(self._owners)

    def owned_count(self, owner: int) -> int:
        """How many PEs ``owner`` owns."""
        record = self._owners.get(owner)
        return 0 if record is None else record.count

    def elements_owned_by(self, owner: int) -> list[PoolElementEntry]:
        """The PEs whose home ENRP server is ``owner``, ordered by pool handle and PE id."""
        record = self._owners.get(owner)
        if record is None:
            return []
        return sorted(record, key=lambda e: (e.pool_handle, e.element.pe_identifier))

    def pe_checksum(self, owner: int) -> int:
        """The 16-bit RFC 5353 PE checksum over the PEs ``owner`` owns (kept incrementally)."""
        record = self._owners.get(owner)
        return checksum.finish(0 if record is None else record.total)

    def recompute_pe_checksum(self, owner: int) -> int:
        """The same checksum computed from scratch (for audits and tests)."""
        return checksum.compute(
            (entry.pool_handle, entry.element.pe_identifier)
            for entry in self.elements_owned_by(owner)
        )

    def take_over(self, old_owner: int, new_owner: int, *, now: float) -> list[HandlespaceEvent]:
        """Re-home every PE of ``old_owner`` to ``new_owner`` (RFC 5353 section 3.9).

        No limit applies: a takeover must move every PE of the failed server. Each moved PE
        yields a :class:`PoolElementUpdated` with reason ``TAKEOVER``; the new home sends
        those PEs an ASAP_ENDPOINT_KEEP_ALIVE with the H flag.
        """
        if old_owner == new_owner:
            return []
        events: list[HandlespaceEvent] = []
        for entry in self.elements_owned_by(old_owner):
            pool = self._pools[entry.pool_handle]
            previous = entry.element
            self._disown(entry, pool)
            pool.replace_element(entry, replace(previous, home_server_identifier=new_owner))
            entry.updated_at = now
            self._own(entry, pool)
            events.append(
                PoolElementUpdated(pool.handle, entry.element, previous, UpdateReason.TAKEOVER)
            )
        self._notify(events)
        return events

    def remove_owner(
        self, owner: int, *, reason: RemovalReason = RemovalReason.OWNER_REMOVED
    ) -> list[HandlespaceEvent]:
        """Remove every PE that ``owner`` owns (e.g. before re-synchronising with it)."""
        events: list[HandlespaceEvent] = []
        for entry in self.elements_owned_by(owner):
            self._remove(self._pools[entry.pool_handle], entry, reason, events)
        self._notify(events)
        return events

    # ------------------------------------------------------------------ expiry, keep-alive

    def next_deadline(self) -> float | None:
        """When :meth:`expire` next has work: a registration life or keep-alive runs out."""
        if self._next_known:
            return self._next
        deadline = self._expiry.next_deadline()
        other = self._keep_alive.next_deadline()
        if other is not None and (deadline is None or other < deadline):
            deadline = other
        self._next = deadline
        self._next_known = True
        return deadline

    def expire(self, now: float) -> list[HandlespaceEvent]:
        """Remove the PEs whose registration life or unanswered keep-alive ran out by ``now``."""
        deadline = self.next_deadline()
        if deadline is None or deadline > now:
            return []  # nothing due (the common case of a timer that came for keep-alives)
        events: list[HandlespaceEvent] = []
        self._next_known = False
        for queue, reason in (
            (self._expiry, RemovalReason.REGISTRATION_EXPIRED),
            (self._keep_alive, RemovalReason.KEEP_ALIVE_TIMEOUT),
        ):
            for entry in list(queue.pop_due(now)):
                pool = self._pools.get(entry.pool_handle)
                if pool is not None and pool.get(entry.element.pe_identifier) is entry:
                    self._remove(pool, entry, reason, events)
        self._notify(events)
        return events

    def keep_alive_sent(
        self, pool_handle: bytes, pe_identifier: int, *, now: float, timeout: float
    ) -> bool:
        """Note an ASAP_ENDPOINT_KEEP_ALIVE sent to a PE; it must answer within ``timeout``.

        A keep-alive already outstanding keeps its earlier deadline. Returns false if the PE
        is unknown.
        """
        entry = self.get(pool_handle, pe_identifier)
        if entry is None:
            return False
        if entry.keep_alive_deadline is None:
            entry.keep_alive_deadline = now + timeout
            self._keep_alive.schedule(entry, entry.keep_alive_deadline)
            self._next_known = False
        return True

    def keep_alive_acknowledged(self, pool_handle: bytes, pe_identifier: int) -> bool:
        """Note an ASAP_ENDPOINT_KEEP_ALIVE_ACK: the PE stays. False if the PE is unknown."""
        entry = self.get(pool_handle, pe_identifier)
        if entry is None:
            return False
        deadline, entry.keep_alive_deadline = entry.keep_alive_deadline, None
        self._keep_alive.cancel(entry)
        earliest = self._next
        if deadline is None or earliest is None or deadline <= earliest:
            # It may have been the earliest deadline; a later one leaves that as it is.
            self._next_known = False
        # A sign of life clears the unreachable count (the reporters stay remembered).
        entry.unreachable_reports = 0
        return True

    def report_unreachable(self, pool_handle: bytes, pe_identifier: int) -> int:
        """Count an anonymous ASAP_ENDPOINT_UNREACHABLE report; the PE's count (0: unknown PE).

        Every call counts. Servers use :meth:`count_unreachable`, which counts each
        reporter once per window.
        """
        entry = self.get(pool_handle, pe_identifier)
        if entry is None:
            return 0
        entry.unreachable_reports += 1
        return entry.unreachable_reports

    def count_unreachable(
        self,
        pool_handle: bytes,
        pe_identifier: int,
        reporter: Hashable,
        *,
        now: float,
        window: float,
        max_reporters: int = 16,
    ) -> UnreachableCount | None:
        """Count an ASAP_ENDPOINT_UNREACHABLE report of ``reporter`` (``None``: unknown PE).

        A reporter counts once per PE within ``window`` seconds, however often it reports
        and even across a sign of life of the PE (a keep-alive acknowledgement or a
        re-registration), which resets the count to zero. The PE remembers at most
        ``max_reporters`` reporters, the oldest forgotten first. The caller compares the
        count with MAX-BAD-PE-REPORT (RFC 5352 section 3.5).
        """
        entry = self.get(pool_handle, pe_identifier)
        if entry is None:
            return None
        reporters = entry.unreachable_reporters
        if reporters is None:
            reporters = entry.unreachable_reporters = {}
        horizon = now - window
        # Oldest first: reporters are only ever appended with a later time.
        while reporters:
            oldest = next(iter(reporters))
            if reporters[oldest] > horizon:
                break
            del reporters[oldest]
        if reporter in reporters:
            return UnreachableCount(entry.unreachable_reports, counted=False)
        if len(reporters) >= max_reporters:
            del reporters[next(iter(reporters))]
        reporters[reporter] = now
        entry.unreachable_reports += 1
        return UnreachableCount(entry.unreachable_reports, counted=True)

    # ------------------------------------------------------------------ observers

    def subscribe(self, observer: Observer, pool_handle: bytes | None = None) -> Subscription:
        """Deliver events (of one pool, or of all pools) to ``observer`` after each change.

        Observers run after the handlespace is consistent again; an exception in one is
        logged and does not stop the others.
        """
        subscription = Subscription(self, observer, pool_handle)
        if pool_handle is None:
            self._observers.append(subscription)
        else:
            self._pool_observers.setdefault(pool_handle, []).append(subscription)
        return subscription

    def _unsubscribe(self, subscription: Subscription) -> None:
        if subscription.pool_handle is None:
            if subscription in self._observers:
                self._observers.remove(subscription)
            return
        observers = self._pool_observers.get(subscription.pool_handle)
        if observers is not None and subscription in observers:
            observers.remove(subscription)
            if not observers:
                del self._pool_observers[subscription.pool_handle]

    def _notify(self, events: Iterable[HandlespaceEvent]) -> None:
        if not self._observers and not self._pool_observers:
            return
        for event in events:
            targets = list(self._observers)
            targets += self._pool_observers.get(event.pool_handle, ())
            for subscription in targets:
                try:
                    subscription.observer(event)
                except Exception:
                    log.failure(
                        "Handlespace observer {observer} failed",
                        observer=objectText(subscription.observer),
                    )
