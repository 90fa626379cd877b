"""Handle resolution answers and their dynamic updates (RFC 5352 3.3, RFC 5355 2.4). Sans-IO.

:class:`Resolutions` answers ASAP_HANDLE_RESOLUTION with PEs the pool's policy selects
(RFC 5356), keeps the subscriptions of pool users that set the S flag, and sends them
the pool again when it changed, one update per pool and subscriber however many PEs
changed. An answer is a join of encodings the handlespace caches.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from twisted.logger import Logger

from twisted_rserpool.describe import handleText
from twisted_rserpool.enrp.registrarstate import ConnectionState, RegistrarHooks, RegistrarState
from twisted_rserpool.handlespace import (
    Algorithm,
    HandlespaceEvent,
    Pool,
    PoolElementAdded,
    PoolElementEntry,
    PoolElementRemoved,
    PoolElementUpdated,
    PoolRemoved,
)
from twisted_rserpool.handlespace.element import encoded_elements
from twisted_rserpool.wire import asap
from twisted_rserpool.wire.errors import CauseCode
from twisted_rserpool.wire.parameters import (
    POLICY_CLASSES,
    OperationError,
    PoolHandleParameter,
    RoundRobinPolicy,
    SelectionPolicy,
    UnknownPolicy,
)

log = Logger()


def overall_policy(policy: SelectionPolicy) -> SelectionPolicy:
    """The pool's overall policy as a handle resolution response carries it (values zero)."""
    known = POLICY_CLASSES.get(policy.policy_type)
    if known is None:
        return policy if isinstance(policy, UnknownPolicy) else UnknownPolicy(policy.policy_type)
    cls, values = known
    return cls(*([0] * values))


def _policy_parameter(policy: SelectionPolicy) -> SelectionPolicy | None:
    """RFC 5352 3.3: the overall policy is included unless it is round robin."""
    overall = overall_policy(policy)
    return None if isinstance(overall, RoundRobinPolicy) else overall


#: Policies whose selection cycles through few distinct answers (an ordered list of the
#: pool's PEs), so that answers are worth keeping; random ones rarely repeat an answer.
_ORDERED = frozenset(
    {
        Algorithm.ROUND_ROBIN,
        Algorithm.WEIGHTED_ROUND_ROBIN,
        Algorithm.PRIORITY,
        Algorithm.LEAST_USED,
        Algorithm.LEAST_USED_DEGRADATION,
        Algorithm.PRIORITY_LEAST_USED,
        Algorithm.PRIORITY_LEAST_USED_DEGRADATION,
    }
)

#: Answers kept per pool at most (then they are all dropped and built again).
_KEPT_ANSWERS = 32


class _PoolAnswers:
    """What every positive handle resolution answer of one pool starts with, and the
    answers already built for it (ordered policies only), by (A flag, *entries)."""

    __slots__ = ("answers", "element_changes", "encoded", "policy", "pool")

    def __init__(self, pool: Pool) -> None:
        self.pool = pool
        #: The overall policy parameter, ``None`` for round robin.
        self.policy = _policy_parameter(pool.policy)
        encoded = PoolHandleParameter(pool.handle).encode()
        #: The pool handle parameter and the policy parameter, encoded.
        self.encoded = encoded if self.policy is None else encoded + self.policy.encode()
        self.answers: dict[tuple[object, ...], _CachedAnswer] | None = (
            {} if pool.algorithm in _ORDERED else None
        )
        #: ``pool.element_changes`` when ``answers`` were built.
        self.element_changes = pool.element_changes

    def build(self, entries: Sequence[PoolElementEntry], accept_updates: bool) -> _CachedAnswer:
        """A new answer with ``entries``."""
        elements, parameters = encoded_elements(entries, self.encoded)
        return _CachedAnswer(
            self.pool.handle, elements, self.policy, accept_updates, parameters=parameters
        )


@dataclass(frozen=True, slots=True)
class _CachedAnswer(asap.HandleResolutionResponse):
    """A positive ASAP_HANDLE_RESOLUTION_RESPONSE built from handlespace entries.

    ``parameters`` is its body already encoded: the pool's head (:class:`_PoolAnswers`)
    and each PE's parameter as its entry caches it (:meth:`PoolElementEntry.encoded`), so
    encoding the answer is a join, done once however often the answer is sent. Built only
    by :meth:`Resolutions.answer`; the other fields say the same for readers (tests, the
    admin interface).
    """

    parameters: bytes = field(default=b"", compare=False, repr=False, kw_only=True)
    _wire: bytes | None = field(default=None, init=False, compare=False, repr=False)

    def _body(self) -> bytes:
        return self.parameters

    def encode(self) -> bytes:
        """The message on the wire (encoded once)."""
        wire = self._wire
        if wire is None:
            wire = asap.HandleResolutionResponse.encode(self)
            object.__setattr__(self, "_wire", wire)
        return wire


class Resolutions:
    """Handle resolutions, subscriptions (S flag) and the updates they are sent."""

    def __init__(self, state: RegistrarState, hooks: RegistrarHooks) -> None:
        self._state = state
        self._hooks = hooks
        #: Connections subscribed to each pool handle.
        self._subscribers: dict[bytes, set[int]] = {}
        #: Pools that changed since the last :meth:`send_updates`, if anyone subscribed.
        self._changed_pools: set[bytes] = set()
        #: Per pool handle, the start of every positive answer and answers built (see answer).
        self._answers: dict[bytes, _PoolAnswers] = {}

    def resolve(self, connection: ConnectionState, message: asap.HandleResolution) -> None:
        """Answer an ASAP_HANDLE_RESOLUTION from ``connection``."""
        state = self._state
        handle = message.pool_handle
        if not self._hooks.allowResolution(connection, handle):
            state.counters["resolutions_refused"] += 1
            log.warn(
                "Handle resolution of {pool} from {peer} refused",
                pool=handleText(handle),
                peer=connection.describe(),
            )
            state.send(
                connection.number,
                asap.HandleResolutionResponse(
                    handle,
                    error=OperationError.single(CauseCode.REJECTED_DUE_TO_SECURITY_CONSIDERATIONS),
                ),
            )
            return
        config = state.config
        items = message.items if message.items else config.handle_resolution_items
        items = min(items, config.max_handle_resolution_items)
        pool = state.handlespace.find_pool(handle)
        if pool is None:
            state.counters["resolutions_unknown_pool"] += 1
            state.send(connection.number, _unknown_pool(handle))
            return
        selected = pool.select(items, state.handlespace.rng)
        accept = False
        if message.subscribe:
            if (
                handle in connection.subscriptions
                or len(connection.subscriptions) < config.max_subscriptions_per_connection
            ):
                connection.subscriptions[handle] = items
                self._subscribers.setdefault(handle, set()).add(connection.number)
                accept = True
            else:
                state.counters["subscriptions_refused"] += 1
        state.counters["resolutions"] += 1
        state.send(connection.number, self.answer(pool, selected, accept))

    def answer(
        self, pool: Pool, entries: Sequence[PoolElementEntry], accept_updates: bool
    ) -> asap.HandleResolutionResponse:
        """A positive answer with ``entries``: a join of their cached encodings.

        For ordered policies the same entries (while no PE's parameter changed in place)
        get the answer already built for them: answers are immutable, so one serves every
        pool user it is sent to.
        """
        kept = self._answers.get(pool.handle)
        if kept is None or kept.pool is not pool:
            kept = self._answers[pool.handle] = _PoolAnswers(pool)
        answers = kept.answers
        if answers is None:
            return kept.build(entries, accept_updates)
        if kept.element_changes != pool.element_changes:
            answers.clear()
            kept.element_changes = pool.element_changes
        key = (accept_updates, *entries)
        answer = answers.get(key)
        if answer is None:
            if len(answers) >= _KEPT_ANSWERS:
                answers.clear()
            answer = answers[key] = kept.build(entries, accept_updates)
        return answer

    def connection_closed(self, connection: ConnectionState) -> None:
        """Forget the subscriptions of a connection that closed."""
        for pool_handle in connection.subscriptions:
            self._unsubscribe(pool_handle, connection.number)

    def handlespace_changed(self, event: HandlespaceEvent) -> None:
        """Note a pool change for its subscribers; forget what is cached of a removed pool."""
        if isinstance(event, PoolRemoved):
            self._answers.pop(event.pool_handle, None)
        if event.pool_handle in self._subscribers and isinstance(
            event, PoolElementAdded | PoolElementUpdated | PoolElementRemoved | PoolRemoved
        ):
            # Coalesced: one update per pool and subscriber however many PEs changed.
            self._changed_pools.add(event.pool_handle)

    @property
    def changed(self) -> bool:
        """Whether a pool changed that someone subscribed to (:meth:`send_updates` has work)."""
        return bool(self._changed_pools)

    def send_updates(self) -> None:
        """S-flag dynamic updates for every pool that changed since the last call."""
        if self._changed_pools:
            changed, self._changed_pools = self._changed_pools, set()
            for pool_handle in sorted(changed):
                self._send_updates(pool_handle, sorted(self._subscribers.get(pool_handle, ())))

    def _send_updates(self, pool_handle: bytes, numbers: Iterable[int]) -> None:
        """The pool's current PEs, or Unknown Pool Handle at its end."""
        state = self._state
        pool = state.handlespace.find_pool(pool_handle)
        for number in numbers:
            connection = state.connections.get(number)
            if connection is None:
                continue
            if pool is None:
                state.send(number, _unknown_pool(pool_handle))
                connection.subscriptions.pop(pool_handle, None)
                self._unsubscribe(pool_handle, number)
                continue
            items = connection.subscriptions.get(pool_handle, state.config.handle_resolution_items)
            entries = [entry for _, entry in zip(range(items), pool, strict=False)]
            state.send(number, self.answer(pool, entries, True))
            state.counters["dynamic_updates"] += 1

    def _unsubscribe(self, pool_handle: bytes, number: int) -> None:
        subscribers = self._subscribers.get(pool_handle)
        if subscribers is not None:
            subscribers.discard(number)
            if not subscribers:
                del self._subscribers[pool_handle]


def _unknown_pool(pool_handle: bytes) -> asap.HandleResolutionResponse:
    return asap.HandleResolutionResponse(
        pool_handle, error=OperationError.single(CauseCode.UNKNOWN_POOL_HANDLE)
    )
