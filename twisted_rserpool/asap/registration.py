"""A pool element's registration with its home ENRP server (RFC 5352 sections 3.1, 3.2,
3.4), sans IO: T2-registration, T4-reregistration, T3-deregistration, MAX-REG-ATTEMPT and
the endpoint keep-alive rules KA1 and KA2.

The adapter tells :class:`RegistrationCore` when a home server connection is ready or
lost, hands it the ASAP messages from ENRP servers, runs :meth:`RegistrationCore.handle_timer`
at :meth:`RegistrationCore.next_deadline`, and carries out the returned actions.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import Enum
from typing import TypeAlias

from twisted_rserpool.asap.timers import AsapTimers
from twisted_rserpool.wire import asap
from twisted_rserpool.wire.parameters import (
    OperationError,
    PoolElementParameter,
    SelectionPolicy,
)

__all__ = [
    "AdoptHome",
    "Deregistered",
    "HuntForServer",
    "Refused",
    "Registered",
    "RegistrationCore",
    "RegistrationState",
    "ReportFailure",
    "SendToHome",
    "SendToPeer",
]


class RegistrationState(Enum):
    """Where a pool element stands with its home ENRP server."""

    #: No home server connection: hunting for one.
    HUNTING = "hunting"
    #: ASAP_REGISTRATION sent, T2 running.
    REGISTERING = "registering"
    #: Registered; T4 runs until the next re-registration.
    REGISTERED = "registered"
    #: The server refused the registration; the application must correct it.
    REFUSED = "refused"
    #: ASAP_DEREGISTRATION sent, T3 running.
    DEREGISTERING = "deregistering"
    #: Deregistered (or given up on): nothing more happens.
    STOPPED = "stopped"


@dataclass(frozen=True, slots=True)
class SendToHome:
    """Send ``message`` over the home server connection."""

    message: asap.AsapMessage


@dataclass(frozen=True, slots=True)
class SendToPeer:
    """Send ``message`` back over the connection a keep-alive arrived on."""

    message: asap.AsapMessage


@dataclass(frozen=True, slots=True)
class HuntForServer:
    """Drop the home server connection (if any) and hunt for another server."""

    reason: str


@dataclass(frozen=True, slots=True)
class AdoptHome:
    """The connection a keep-alive with the H flag came on is the new home server's:
    use it as the home connection (a registration follows in the same action list)."""

    server_identifier: int


@dataclass(frozen=True, slots=True)
class Registered:
    """The registration (or a re-registration) was granted for ``life`` seconds."""

    life: int
    warning: OperationError | None


@dataclass(frozen=True, slots=True)
class Refused:
    """The home server rejected the registration."""

    error: OperationError | None


@dataclass(frozen=True, slots=True)
class ReportFailure:
    """More than MAX-REG-ATTEMPT registration attempts timed out in a row (the hunt goes on)."""

    attempts: int


@dataclass(frozen=True, slots=True)
class Deregistered:
    """Deregistration finished: answered (``answered``) or T3 expired."""

    answered: bool
    error: OperationError | None = None


Action: TypeAlias = (
    SendToHome
    | SendToPeer
    | HuntForServer
    | AdoptHome
    | Registered
    | Refused
    | ReportFailure
    | Deregistered
)


class RegistrationCore:
    """The registration state of one pool element."""

    def __init__(
        self, pool_handle: bytes, element: PoolElementParameter, timers: AsapTimers
    ) -> None:
        self.pool_handle = pool_handle
        self.element = element
        self.timers = timers
        self.state = RegistrationState.HUNTING
        self.home_server: int | None = None
        self.granted_life: int | None = None
        self.attempts = 0
        self._reported = False
        self._deadline: float | None = None

    @property
    def pe_identifier(self) -> int:
        """The PE identifier this pool element registers with."""
        return self.element.pe_identifier

    def _registration(self) -> asap.Registration:
        element = replace(self.element, home_server_identifier=self.home_server or 0)
        return asap.Registration(self.pool_handle, element)

    def _register(self, now: float) -> list[Action]:
        self.state = RegistrationState.REGISTERING
        self.attempts += 1
        self._deadline = now + self.timers.t2_registration
        return [SendToHome(self._registration())]

    # ------------------------------------------------------------------ inputs

    def home_connected(self, now: float, server_identifier: int | None = None) -> list[Action]:
        """A trusted connection to a (new) home server is up: register there (R1-R4).
        ``server_identifier``: the server's identifier if known (else learnt later)."""
        if self.state in (RegistrationState.DEREGISTERING, RegistrationState.STOPPED):
            return []
        # A new home server: its identifier is learnt from its first keep-alive.
        self.home_server = server_identifier
        if self.state is RegistrationState.REFUSED:
            return []
        return self._register(now)

    def home_lost(self, now: float) -> list[Action]:
        """The home server connection closed: hunt for another server."""
        if self.state is RegistrationState.DEREGISTERING:
            # The server is gone; our registration goes with it.
            self.state = RegistrationState.STOPPED
            self._deadline = None
            return [Deregistered(False)]
        if self.state in (RegistrationState.STOPPED, RegistrationState.REFUSED):
            return []
        self.state = RegistrationState.HUNTING
        self._deadline = None
        return [HuntForServer("the home ENRP server connection closed")]

    def update(self, now: float, policy: SelectionPolicy | None = None) -> list[Action]:
        """Change the policy (e.g. its load) and re-register at once with the same PE
        identifier; after a refusal this is the corrected attempt."""
        if policy is not None:
            self.element = replace(self.element, policy=policy)
        if self.state in (RegistrationState.REGISTERED, RegistrationState.REFUSED):
            self.attempts = 0
            return self._register(now)
        return []  # the next registration carries the new policy

    def deregister(self, now: float) -> list[Action]:
        """Leave the pool (D1-D4); without a home server there is nothing to tell."""
        if self.state in (RegistrationState.HUNTING, RegistrationState.REFUSED):
            self.state = RegistrationState.STOPPED
            self._deadline = None
            return [Deregistered(False)]
        if self.state in (RegistrationState.DEREGISTERING, RegistrationState.STOPPED):
            return []
        self.state = RegistrationState.DEREGISTERING
        self._deadline = now + self.timers.t3_deregistration
        return [SendToHome(asap.Deregistration(self.pool_handle, self.pe_identifier))]

    def message_from_home(self, message: asap.AsapMessage, now: float) -> list[Action]:
        """An ASAP message over the home server connection."""
        if isinstance(message, asap.RegistrationResponse):
            return self._registration_response(message, now)
        if isinstance(message, asap.DeregistrationResponse):
            return self._deregistration_response(message, now)
        if isinstance(message, asap.EndpointKeepAlive):
            return self.keep_alive(message, now, trusted=True, from_home=True)
        return []

    def keep_alive(
        self, message: asap.EndpointKeepAlive, now: float, *, trusted: bool, from_home: bool
    ) -> list[Action]:
        """KA1, KA2: answer a keep-alive for our pool; adopt its sender as the home server
        on the H flag. ``trusted``: the sender authenticated as an ENRP server; keep-alives
        from anyone else are discarded unanswered."""
        if not trusted or message.pool_handle != self.pool_handle:
            return []
        if message.pe_identifier is not None and message.pe_identifier != self.pe_identifier:
            return []
        if self.state in (RegistrationState.STOPPED, RegistrationState.DEREGISTERING):
            return []
        actions: list[Action] = [
            SendToPeer(asap.EndpointKeepAliveAck(self.pool_handle, self.pe_identifier))
        ]
        if from_home and message.server_identifier and self.home_server is None:
            self.home_server = message.server_identifier
        if message.home and message.server_identifier != self.home_server:
            if from_home:
                self.home_server = message.server_identifier
                return actions
            self.home_server = message.server_identifier
            actions.append(AdoptHome(message.server_identifier))
            if self.state is not RegistrationState.REFUSED:
                self.attempts = 0
                actions += self._register(now)
        return actions

    def _registration_response(
        self, message: asap.RegistrationResponse, now: float
    ) -> list[Action]:
        if (
            message.pool_handle != self.pool_handle
            or message.pe_identifier != self.pe_identifier
            or self.state is not RegistrationState.REGISTERING
        ):
            return []
        if message.reject:
            self.state = RegistrationState.REFUSED
            self._deadline = None
            return [Refused(message.error)]
        self.state = RegistrationState.REGISTERED
        self.attempts = 0
        self._reported = False
        life = self.element.registration_life
        if message.error is not None and life > 0:
            # A warning: the server granted less (ours caps at its maximum); assume T4 is
            # what keeps us registered and re-register twice as often.
            life = max(1, life // 2)
        self.granted_life = life
        self._deadline = now + self.timers.reregistration_delay(life)
        return [Registered(life, message.error)]

    def _deregistration_response(
        self, message: asap.DeregistrationResponse, now: float
    ) -> list[Action]:
        if message.pool_handle != self.pool_handle or message.pe_identifier != self.pe_identifier:
            return []
        if self.state is RegistrationState.DEREGISTERING:
            self.state = RegistrationState.STOPPED
            self._deadline = None
            return [Deregistered(True, message.error)]
        if self.state is RegistrationState.REGISTERED:
            # RFC 5352 2.2.4: the registration expired at the server: register again.
            return self._register(now)
        return []

    # ------------------------------------------------------------------ time

    def next_deadline(self) -> float | None:
        """When :meth:`handle_timer` has work (T2, T3 or T4)."""
        return self._deadline

    def handle_timer(self, now: float) -> list[Action]:
        """T2 expired: hunt for another server (and report past MAX-REG-ATTEMPT);
        T4 expired: re-register; T3 expired: give up deregistering."""
        if self._deadline is None or now < self._deadline:
            return []
        self._deadline = None
        if self.state is RegistrationState.REGISTERED:
            return self._register(now)
        if self.state is RegistrationState.REGISTERING:
            self.state = RegistrationState.HUNTING
            actions: list[Action] = [
                HuntForServer("no ASAP_REGISTRATION_RESPONSE within T2-registration")
            ]
            if self.attempts >= self.timers.max_reg_attempt and not self._reported:
                self._reported = True
                actions.append(ReportFailure(self.attempts))
            return actions
        if self.state is RegistrationState.DEREGISTERING:
            self.state = RegistrationState.STOPPED
            return [Deregistered(False)]
        return []
