"""When a pool member's load readings become registrations (sans-IO).

A reading is a number from the member's load source (connections, IKE SAs, a share);
divided by ``capacity`` and clamped to 0..1 it is the member's share of full load, scaled
to the RFC 5356 load (0..0xFFFFFFFF). The rules:

- The member is registered only after its first good reading: a member whose load
  cannot be read is not offered to pool users.
- A load is re-registered only when it moved by at least ``threshold`` (a share of full
  load; 0: any change), and only while the registration stands (``ready``): a change seen
  while a registration is under way is sent with the next reading.
- A failed reading keeps the last load. The first failure of a run is reported, then at
  most one report per ``warnInterval`` seconds (with the count), and the recovery once.
- After ``maxFailures`` failures in a row (0: never) the member is withdrawn: the load
  source is its health check, and a member whose load source is gone (charon stopped,
  the status URL down) is most likely gone too. The next good reading registers it again.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import TypeAlias

from twisted_rserpool.poolmember.description import FULL_LOAD, scaledLoad
from twisted_rserpool.throttledlog import LogThrottle

__all__ = [
    "Action",
    "LoadTracker",
    "MemberState",
    "Recovered",
    "Register",
    "ReportFailure",
    "UpdateLoad",
    "Withdraw",
]


class MemberState(Enum):
    """Where the member stands."""

    #: No good reading yet: not registered.
    WAITING = "waiting"
    #: Registered (or registering) with the last good load.
    REGISTERED = "registered"
    #: Deregistered after ``maxFailures`` failed readings.
    WITHDRAWN = "withdrawn"


@dataclass(frozen=True, slots=True)
class Register:
    """Register the member with this load."""

    load: int


@dataclass(frozen=True, slots=True)
class UpdateLoad:
    """Re-register the member with this load."""

    load: int


@dataclass(frozen=True, slots=True)
class Withdraw:
    """Deregister the member: ``failures`` readings failed in a row, the last for ``reason``."""

    failures: int
    reason: str


@dataclass(frozen=True, slots=True)
class ReportFailure:
    """Log a failed reading: the ``failures``-th in a row (``first``: it starts a run)."""

    reason: str
    failures: int
    first: bool


@dataclass(frozen=True, slots=True)
class Recovered:
    """A good reading after ``failures`` failed ones."""

    failures: int


Action: TypeAlias = Register | UpdateLoad | Withdraw | ReportFailure | Recovered


class LoadTracker:
    """The rules of the module docstring; ``carriesLoad`` False (a policy without a load,
    such as round robin) uses the readings as a health check only."""

    def __init__(
        self,
        *,
        capacity: float = 1.0,
        threshold: float = 0.0,
        maxFailures: int = 0,
        warnInterval: float = 60.0,
        carriesLoad: bool = True,
    ) -> None:
        if capacity <= 0:
            raise ValueError("the capacity must be positive")
        if not 0.0 <= threshold <= 1.0:
            raise ValueError("the threshold is a share of full load, 0 to 1")
        if maxFailures < 0:
            raise ValueError("the failure limit must not be negative")
        self.capacity = capacity
        self.threshold = threshold
        self.maxFailures = maxFailures
        self.warnInterval = warnInterval
        self.carriesLoad = carriesLoad
        self.state = MemberState.WAITING
        #: The load last registered (None before the first registration).
        self.registeredLoad: int | None = None
        #: The load of the last good reading.
        self.lastLoad: int | None = None
        #: Failed readings in a row.
        self.failures = 0
        self._throttle = LogThrottle(warnInterval)

    def load(self, value: float) -> int:
        """A reading as the RFC 5356 load."""
        return scaledLoad(value / self.capacity)

    def reading(self, value: float, now: float, *, ready: bool) -> list[Action]:
        """A good reading ``value`` at ``now``; ``ready``: the registration stands."""
        load = self.load(value) if self.carriesLoad else 0
        self.lastLoad = load
        actions: list[Action] = []
        if self.failures:
            actions.append(Recovered(self.failures))
            self.failures = 0
            self._throttle = LogThrottle(self.warnInterval)
        if self.state is not MemberState.REGISTERED:
            self.state = MemberState.REGISTERED
            self.registeredLoad = load
            actions.append(Register(load))
        elif ready and self._moved(load):
            self.registeredLoad = load
            actions.append(UpdateLoad(load))
        return actions

    def _moved(self, load: int) -> bool:
        if self.registeredLoad is None:
            return True
        if load == self.registeredLoad:
            return False
        return abs(load - self.registeredLoad) >= self.threshold * FULL_LOAD

    def failure(self, reason: str, now: float) -> list[Action]:
        """A reading that failed at ``now`` for ``reason``."""
        self.failures += 1
        actions: list[Action] = []
        if self._throttle.allow(now):
            actions.append(ReportFailure(reason, self.failures, self.failures == 1))
        if (
            self.state is MemberState.REGISTERED
            and self.maxFailures
            and self.failures >= self.maxFailures
        ):
            self.state = MemberState.WITHDRAWN
            actions.append(Withdraw(self.failures, reason))
        return actions
