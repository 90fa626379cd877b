"""RFC 5356 pool member selection, plus RSPLIB's private policies whose semantics are clear.

Each pool has one :class:`Selector`, chosen by the pool's policy type. Selectors keep the
pool's PEs in the structure their policy needs and pick up to N distinct PEs per handle
resolution in O(log n) per PE returned:

- Ordered policies (Round Robin, Weighted Round Robin, Priority, Least Used, Least Used with
  Degradation, Priority Least Used, RSPLIB's Priority Least Used with Degradation) keep
  their PEs in a :class:`~.sortedlist.SortedList` under an integer key
  ``primary << 64 | sequence``. The sequence number gives each PE its place in the pool's
  circular list; handing the first PE of an answer a fresh (largest) sequence number moves
  it behind every PE with the same primary value, which is the RFC's "advance the head by
  one" and its round-robin tie-breaking.
- Random policies (Random, Weighted Random, Randomized Least Used and RSPLIB's randomized
  variants) draw from a :class:`~.sampling.WeightedSampler` (a Fenwick tree) without
  repeats, or a :class:`~.sampling.UniformSampler` when all weights are equal.
"""

from __future__ import annotations

import random
import struct
from abc import ABC, abstractmethod
from collections.abc import Callable
from enum import Enum

from twisted_rserpool.handlespace.element import PoolElementEntry
from twisted_rserpool.handlespace.sampling import UniformSampler, WeightedSampler
from twisted_rserpool.handlespace.sortedlist import SortedList
from twisted_rserpool.wire.parameters import (
    LeastUsedDegradationPolicy,
    LeastUsedPolicy,
    PolicyType,
    PriorityLeastUsedPolicy,
    PriorityPolicy,
    RandomizedLeastUsedPolicy,
    SelectionPolicy,
    UnknownPolicy,
    WeightedRandomPolicy,
    WeightedRoundRobinPolicy,
)

#: Largest load (100 %), RFC 5356 section 3.1.
MAX_LOAD = 0xFFFFFFFF


class RsplibPolicyType:
    """RSPLIB's private policy types (rserpool-policytypes.h), outside RFC 5356."""

    RANDOMIZED_PRIORITY_LEAST_USED = 0xB0001001
    RANDOMIZED_LEAST_USED_DEGRADATION = 0xB0001002
    PRIORITY_LEAST_USED_DEGRADATION = 0xB0001003
    RANDOMIZED_PRIORITY_LEAST_USED_DEGRADATION = 0xB0001004
    WEIGHTED_RANDOM_DPF = 0xB0002001
    LEAST_USED_DPF = 0xB0002002
    LEAST_USED_DEGRADATION_DPF = 0xB0002003


class Algorithm(Enum):
    """How a pool selects PEs."""

    ROUND_ROBIN = "RR"
    WEIGHTED_ROUND_ROBIN = "WRR"
    RANDOM = "RAND"
    WEIGHTED_RANDOM = "WRAND"
    PRIORITY = "PRIO"
    LEAST_USED = "LU"
    LEAST_USED_DEGRADATION = "LUD"
    PRIORITY_LEAST_USED = "PLU"
    RANDOMIZED_LEAST_USED = "RLU"
    #: RSPLIB 0xb0001001: weighted random by 0xffffffff - (load + load degradation).
    RANDOMIZED_PRIORITY_LEAST_USED = "RPLU"
    #: RSPLIB 0xb0001002: weighted random by 0xffffffff - (load + counter * degradation).
    RANDOMIZED_LEAST_USED_DEGRADATION = "RLUD"
    #: RSPLIB 0xb0001003: least (load + degradation + counter * degradation) first.
    PRIORITY_LEAST_USED_DEGRADATION = "PLUD"
    #: RSPLIB 0xb0001004: weighted random by 0xffffffff - (load + (1 + counter) * degradation).
    RANDOMIZED_PRIORITY_LEAST_USED_DEGRADATION = "RPLUD"


_STANDARD: dict[int, Algorithm] = {
    PolicyType.ROUND_ROBIN: Algorithm.ROUND_ROBIN,
    PolicyType.WEIGHTED_ROUND_ROBIN: Algorithm.WEIGHTED_ROUND_ROBIN,
    PolicyType.RANDOM: Algorithm.RANDOM,
    PolicyType.WEIGHTED_RANDOM: Algorithm.WEIGHTED_RANDOM,
    PolicyType.PRIORITY: Algorithm.PRIORITY,
    PolicyType.LEAST_USED: Algorithm.LEAST_USED,
    PolicyType.LEAST_USED_DEGRADATION: Algorithm.LEAST_USED_DEGRADATION,
    PolicyType.PRIORITY_LEAST_USED: Algorithm.PRIORITY_LEAST_USED,
    PolicyType.RANDOMIZED_LEAST_USED: Algorithm.RANDOMIZED_LEAST_USED,
}

#: RSPLIB private policy type -> (algorithm, bytes of policy data it needs: load[, degradation]).
_RSPLIB: dict[int, tuple[Algorithm, int]] = {
    RsplibPolicyType.RANDOMIZED_PRIORITY_LEAST_USED: (Algorithm.RANDOMIZED_PRIORITY_LEAST_USED, 4),
    RsplibPolicyType.RANDOMIZED_LEAST_USED_DEGRADATION: (
        Algorithm.RANDOMIZED_LEAST_USED_DEGRADATION,
        8,
    ),
    RsplibPolicyType.PRIORITY_LEAST_USED_DEGRADATION: (
        Algorithm.PRIORITY_LEAST_USED_DEGRADATION,
        8,
    ),
    RsplibPolicyType.RANDOMIZED_PRIORITY_LEAST_USED_DEGRADATION: (
        Algorithm.RANDOMIZED_PRIORITY_LEAST_USED_DEGRADATION,
        8,
    ),
}

_U32 = struct.Struct(">I")


def algorithm_for(policy: SelectionPolicy) -> Algorithm | None:
    """The algorithm for a pool whose first PE registered ``policy``; ``None`` if unknown.

    RSPLIB's private policies count as known when their data has the length RSPLIB sends;
    its distance-sensitive (DPF) policies need distances this server does not measure and
    count as unknown.
    """
    algorithm = _STANDARD.get(policy.policy_type)
    if algorithm is not None:
        return algorithm
    private = _RSPLIB.get(policy.policy_type)
    if private is not None and isinstance(policy, UnknownPolicy):
        algorithm, needed = private
        if len(policy.data) >= needed:
            return algorithm
    return None


def policy_values(policy: SelectionPolicy) -> tuple[int, int]:
    """The two numbers a policy carries: (weight, priority or load; load degradation).

    RSPLIB policies carry ``load`` and optionally ``load degradation`` as 32-bit words in
    their data; missing words count as 0.
    """
    if isinstance(policy, LeastUsedDegradationPolicy | PriorityLeastUsedPolicy):
        return policy.load, policy.load_degradation
    if isinstance(policy, LeastUsedPolicy | RandomizedLeastUsedPolicy):
        return policy.load, 0
    if isinstance(policy, WeightedRoundRobinPolicy | WeightedRandomPolicy):
        return policy.weight, 0
    if isinstance(policy, PriorityPolicy):
        return policy.priority, 0
    if isinstance(policy, UnknownPolicy) and policy.policy_type in _RSPLIB:
        data = policy.data
        first = _U32.unpack_from(data, 0)[0] if len(data) >= 4 else 0
        second = _U32.unpack_from(data, 4)[0] if len(data) >= 8 else 0
        return first, second
    return 0, 0


class Selector(ABC):
    """The PEs of one pool, arranged for its policy."""

    __slots__ = ()

    @abstractmethod
    def add(self, entry: PoolElementEntry) -> None:
        """Add a new PE (its ``_v1``/``_v2`` policy values already set)."""

    @abstractmethod
    def remove(self, entry: PoolElementEntry) -> None:
        """Remove a PE."""

    @abstractmethod
    def update(self, entry: PoolElementEntry, old_v1: int, old_v2: int) -> None:
        """A PE re-registered: its policy values may have changed; reset its degradation."""

    @abstractmethod
    def select(self, count: int, rng: random.Random) -> list[PoolElementEntry]:
        """Up to ``count`` distinct PEs in the order the policy reports them."""


# --------------------------------------------------------------------------- ordered


class _Ordered(Selector):
    """PEs sorted by ``primary << 64 | sequence``; subclasses say what primary is."""

    __slots__ = ("_items", "_next_seq")

    def __init__(self) -> None:
        self._items: SortedList[int, PoolElementEntry] = SortedList()
        self._next_seq = 0

    def _primary(self, entry: PoolElementEntry) -> int:
        return 0

    def _selectable(self, entry: PoolElementEntry) -> bool:
        return True

    def _insert(self, entry: PoolElementEntry) -> None:
        if self._selectable(entry):
            key = (self._primary(entry) << 64) | entry._seq
            entry._position = key
            self._items.add(key, entry)
        else:
            entry._position = None

    def _discard(self, entry: PoolElementEntry) -> None:
        if entry._position is not None:
            self._items.remove(entry._position)  # type: ignore[arg-type]
            entry._position = None

    def add(self, entry: PoolElementEntry) -> None:
        entry._counter = 0
        entry._seq = self._next_seq
        self._next_seq += 1
        self._insert(entry)

    def remove(self, entry: PoolElementEntry) -> None:
        self._discard(entry)

    def update(self, entry: PoolElementEntry, old_v1: int, old_v2: int) -> None:
        # Keep the PE's place among equals (its sequence number); only its key may move.
        entry._counter = 0
        if self._selectable(entry):
            if entry._position == (self._primary(entry) << 64) | entry._seq:
                return  # the same place (a re-registration with the same policy values)
        elif entry._position is None:
            return
        self._discard(entry)
        self._insert(entry)

    def select(self, count: int, rng: random.Random) -> list[PoolElementEntry]:
        items = self._items
        chosen = items.head(count)
        if chosen:
            # Move the head behind every PE with the same primary value: a fresh sequence
            # number (selection changes no primary value of the policies using this).
            head = chosen[0]
            key: int = head._position  # type: ignore[assignment]
            sequence = head._seq = self._next_seq
            self._next_seq = sequence + 1
            head._position = (key >> 64 << 64) | sequence
            items.rekey(key, head._position)
        return chosen


class _RoundRobin(_Ordered):
    """RFC 5356 4.1: the circular list from the head; the head advances by one."""

    __slots__ = ()


class _Priority(_Ordered):
    """RFC 5356 4.5: highest priority first; equal priorities take turns."""

    __slots__ = ()

    def _primary(self, entry: PoolElementEntry) -> int:
        return MAX_LOAD - entry._v1


class _LeastUsed(_Ordered):
    """RFC 5356 5.1: lowest load first; equal loads take turns (round robin)."""

    __slots__ = ()

    def _primary(self, entry: PoolElementEntry) -> int:
        return entry._v1


class _PriorityLeastUsed(_Ordered):
    """RFC 5356 5.3: lowest load + load degradation first; equal sums take turns."""

    __slots__ = ()

    def _primary(self, entry: PoolElementEntry) -> int:
        return entry._v1 + entry._v2


class _LeastUsedDegradation(_Ordered):
    """RFC 5356 5.2: lowest load + counter * degradation; every PE returned counts once more.

    RFC 5356 says the counter of an entry "selected for being returned to a pool user" is
    incremented, so every PE in an answer is degraded (RSPLIB degrades only the first).
    """

    __slots__ = ()

    def _primary(self, entry: PoolElementEntry) -> int:
        return entry._v1 + entry._counter * entry._v2

    def select(self, count: int, rng: random.Random) -> list[PoolElementEntry]:
        chosen = self._items.head(count)
        for entry in chosen:
            self._discard(entry)
            entry._counter += 1
            entry._seq = self._next_seq
            self._next_seq += 1
            self._insert(entry)
        return chosen


class _PriorityLeastUsedDegradation(_LeastUsedDegradation):
    """RSPLIB 0xb0001003: lowest load + (1 + counter) * degradation first."""

    __slots__ = ()

    def _primary(self, entry: PoolElementEntry) -> int:
        return entry._v1 + (entry._counter + 1) * entry._v2


#: Virtual time of one round in weighted round robin: each PE's stride is this / weight.
_WRR_ROUND = 1 << 64


class _WeightedRoundRobin(_Ordered):
    """RFC 5356 4.2 as stride scheduling.

    The RFC's circular list holds each PE a number of times proportional to its weight,
    spread as evenly as possible. Stride scheduling produces exactly such a sequence
    without building the list: each PE has a pass value, the PE with the lowest pass is at
    the head, and serving it adds its stride (round / weight) to its pass. The N distinct
    PEs that come next in the list are the N lowest passes. A PE of weight 0 "is not capable
    of providing any service" (RFC 5356 3.2) and is never selected.
    """

    __slots__ = ("_virtual_time",)

    def __init__(self) -> None:
        super().__init__()
        self._virtual_time = 0

    def _primary(self, entry: PoolElementEntry) -> int:
        return entry._pass

    def _selectable(self, entry: PoolElementEntry) -> bool:
        return entry._v1 > 0

    def _start(self, entry: PoolElementEntry) -> None:
        # Half a stride after "now": heavy PEs come up soon, light ones later, and a
        # newcomer neither jumps the whole queue nor waits a full round.
        entry._pass = self._virtual_time + (_WRR_ROUND // entry._v1 >> 1) if entry._v1 else 0

    def add(self, entry: PoolElementEntry) -> None:
        self._start(entry)
        super().add(entry)

    def update(self, entry: PoolElementEntry, old_v1: int, old_v2: int) -> None:
        if entry._v1 != old_v1:
            self._discard(entry)
            self._start(entry)
            self._insert(entry)

    def select(self, count: int, rng: random.Random) -> list[PoolElementEntry]:
        chosen = self._items.head(count)
        if chosen:
            head = chosen[0]
            self._virtual_time = head._pass
            self._discard(head)
            head._pass += _WRR_ROUND // head._v1
            head._seq = self._next_seq
            self._next_seq += 1
            self._insert(head)
        return chosen


# --------------------------------------------------------------------------- random


def _place(entry: PoolElementEntry, slot: int) -> None:
    entry._position = slot


class _Random(Selector):
    """RFC 5356 4.3: distinct PEs chosen uniformly at random."""

    __slots__ = ("_sampler",)

    def __init__(self) -> None:
        self._sampler: UniformSampler[PoolElementEntry] = UniformSampler(_place)

    def add(self, entry: PoolElementEntry) -> None:
        self._sampler.add(entry)

    def remove(self, entry: PoolElementEntry) -> None:
        self._sampler.remove(entry._position)  # type: ignore[arg-type]

    def update(self, entry: PoolElementEntry, old_v1: int, old_v2: int) -> None:
        pass

    def select(self, count: int, rng: random.Random) -> list[PoolElementEntry]:
        return self._sampler.sample(count, rng)


class _Weighted(Selector):
    """Distinct PEs drawn with probability proportional to a weight computed per PE."""

    __slots__ = ("_degrading", "_sampler", "_weight")

    def __init__(self, weight: Callable[[PoolElementEntry], int], degrading: bool) -> None:
        self._sampler: WeightedSampler[PoolElementEntry] = WeightedSampler(_place)
        self._weight = weight
        self._degrading = degrading

    def add(self, entry: PoolElementEntry) -> None:
        entry._counter = 0
        self._sampler.add(entry, self._weight(entry))

    def remove(self, entry: PoolElementEntry) -> None:
        self._sampler.remove(entry._position)  # type: ignore[arg-type]

    def update(self, entry: PoolElementEntry, old_v1: int, old_v2: int) -> None:
        entry._counter = 0
        self._sampler.set_weight(entry._position, self._weight(entry))  # type: ignore[arg-type]

    def select(self, count: int, rng: random.Random) -> list[PoolElementEntry]:
        chosen = self._sampler.sample(count, rng)
        if self._degrading:
            sampler = self._sampler
            weight = self._weight
            for entry in chosen:
                entry._counter += 1
                sampler.set_weight(entry._position, weight(entry))  # type: ignore[arg-type]
        return chosen


def _unloaded(load: int) -> int:
    # RFC 5356 5.4 weighs a PE by 0xffffffff - load. A fully loaded PE keeps weight 1, as
    # in RSPLIB, so that a pool whose PEs are all at 100 % still resolves.
    return max(1, MAX_LOAD - load)


def _weighted_random_weight(entry: PoolElementEntry) -> int:
    return entry._v1


def _rlu_weight(entry: PoolElementEntry) -> int:
    return _unloaded(entry._v1)


def _rplu_weight(entry: PoolElementEntry) -> int:
    return _unloaded(entry._v1 + entry._v2)


def _rlud_weight(entry: PoolElementEntry) -> int:
    return _unloaded(entry._v1 + entry._counter * entry._v2)


def _rplud_weight(entry: PoolElementEntry) -> int:
    return _unloaded(entry._v1 + (entry._counter + 1) * entry._v2)


def make_selector(algorithm: Algorithm | None) -> Selector:
    """A fresh selector for ``algorithm``; ``None`` (an unknown policy) selects at random."""
    if algorithm is None or algorithm is Algorithm.RANDOM:
        return _Random()
    factory = _FACTORIES[algorithm]
    return factory()


_FACTORIES: dict[Algorithm, Callable[[], Selector]] = {
    Algorithm.ROUND_ROBIN: _RoundRobin,
    Algorithm.WEIGHTED_ROUND_ROBIN: _WeightedRoundRobin,
    Algorithm.PRIORITY: _Priority,
    Algorithm.LEAST_USED: _LeastUsed,
    Algorithm.LEAST_USED_DEGRADATION: _LeastUsedDegradation,
    Algorithm.PRIORITY_LEAST_USED: _PriorityLeastUsed,
    Algorithm.PRIORITY_LEAST_USED_DEGRADATION: _PriorityLeastUsedDegradation,
    Algorithm.WEIGHTED_RANDOM: lambda: _Weighted(_weighted_random_weight, False),
    Algorithm.RANDOMIZED_LEAST_USED: lambda: _Weighted(_rlu_weight, False),
    Algorithm.RANDOMIZED_PRIORITY_LEAST_USED: lambda: _Weighted(_rplu_weight, False),
    Algorithm.RANDOMIZED_LEAST_USED_DEGRADATION: lambda: _Weighted(_rlud_weight, True),
    Algorithm.RANDOMIZED_PRIORITY_LEAST_USED_DEGRADATION: lambda: _Weighted(_rplud_weight, True),
}
