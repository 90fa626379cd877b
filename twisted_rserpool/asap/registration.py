"""A pool element's registration with its home ENRP server (RFC 5352 sections 3.1, 3.2,
3.4, 3.7), sans IO: T2-registration, T4-reregistration, T3-deregistration, MAX-REG-ATTEMPT,
RETRAN-MAX, ASAP_ERROR answers and the endpoint keep-alive rules KA1 and KA2.

T2 and T3 expiry send the request again to the same server and hunt for another in parallel
(:class:`HuntInParallel`, RFC 5352 3.7.2): the home connection stays, because closing it
would make the server drop our registrations, and a late answer from it still counts.

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
from twisted_rserpool.wire.errors import CauseCode, MalformedMessage
from twisted_rserpool.wire.parameters import (
    OperationError,
    PoolElementParameter,
    SelectionPolicy,
    decode_parameter,
)

__all__ = [
    "AdoptHome",
    "Deregistered",
    "HuntForServer",
    "HuntInParallel",
    "Refused",
    "Registered",
    "RegistrationCore",
    "RegistrationState",
    "ReportFailure",
    "SendToHome",
    "SendToPeer",
    "granted_life",
    "is_permanent",
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
class HuntInParallel:
    """Keep the home server connection (its late answers still count) and look for another
    server in parallel; one that is found becomes the home (:meth:`home_connected`)."""

    reason: str


@dataclass(frozen=True, slots=True)
class AdoptHome:
    """The connection a keep-alive with the H flag came on is the new home server's:
    use it as the home connection (a registration follows in the same action list)."""

    server_identifier: int


@dataclass(frozen=True, slots=True)
class Registered:
    """The registration (or a re-registration) was granted for ``life`` seconds
    (``life_known``: the server said so, or nothing was shortened; otherwise guessed).
    ``renewal``: the same home server granted the same PE parameter and life as last
    time (a periodic re-registration, or a load update that changed nothing)."""

    life: int
    warning: OperationError | None
    life_known: bool = True
    renewal: bool = False


@dataclass(frozen=True, slots=True)
class Refused:
    """The home server rejected the registration: an R-flag response, or an ASAP_ERROR
    saying it can never succeed as sent (``by_error``)."""

    error: OperationError | None
    by_error: bool = False


@dataclass(frozen=True, slots=True)
class ReportFailure:
    """MAX-REG-ATTEMPT registration attempts timed out in a row. ``stopped``: no more
    attempts (until the application updates the registration); otherwise they go on with
    the back-off (RETRAN-MAX)."""

    attempts: int
    stopped: bool = False


@dataclass(frozen=True, slots=True)
class Deregistered:
    """Deregistration finished: answered (``answered``) or T3 expired."""

    answered: bool
    error: OperationError | None = None


Action: TypeAlias = (
    SendToHome
    | SendToPeer
    | HuntForServer
    | HuntInParallel
    | AdoptHome
    | Registered
    | Refused
    | ReportFailure
    | Deregistered
)


#: Causes of an ASAP_ERROR that sending the same registration again cannot cure.
PERMANENT_CAUSES = frozenset(
    {
        CauseCode.UNRECOGNIZED_PARAMETER,
        CauseCode.UNRECOGNIZED_MESSAGE,
        CauseCode.INVALID_VALUES,
        CauseCode.NON_UNIQUE_PE_IDENTIFIER,
        CauseCode.INCONSISTENT_POOLING_POLICY,
        CauseCode.INCONSISTENT_TRANSPORT_TYPE,
        CauseCode.INCONSISTENT_DATA_CONTROL_CONFIGURATION,
        CauseCode.REJECTED_DUE_TO_SECURITY_CONSIDERATIONS,
    }
)


def granted_life(warning: OperationError, pe_identifier: int) -> int | None:
    """The registration life a server granted, from the Invalid Values warning of its
    ASAP_REGISTRATION_RESPONSE (RFC 5354 3.12.4: the offending TLV, here our PE parameter
    as the server stored it); ``None`` when the warning does not carry it."""
    for cause in warning.causes:
        if cause.code != CauseCode.INVALID_VALUES or not isinstance(cause.information, bytes):
            continue
        try:
            parameter = decode_parameter(cause.information)
        except MalformedMessage:
            continue
        if isinstance(parameter, PoolElementParameter) and parameter.pe_identifier == pe_identifier:
            return parameter.registration_life
    return None


def is_permanent(error: OperationError) -> bool:
    """Whether an ASAP_ERROR answering our request says it can never succeed as sent."""
    return any(cause.code in PERMANENT_CAUSES for cause in error.causes)


class RegistrationCore:
    """The registration state of one pool element.

    ``stop_after_max_reg_attempt``: after MAX-REG-ATTEMPT registration timeouts in a row,
    report and stop (RFC 5352 3.1's SHOULD); by default report and go on, with the time
    between attempts doubling from T2-registration up to RETRAN-MAX (7.3), because a PE
    that stops registering is gone for good after a server's passing outage.
    """

    def __init__(
        self,
        pool_handle: bytes,
        element: PoolElementParameter,
        timers: AsapTimers,
        *,
        stop_after_max_reg_attempt: bool = False,
    ) -> None:
        self.pool_handle = pool_handle
        self.element = element
        self.timers = timers
        self.stop_after_max_reg_attempt = stop_after_max_reg_attempt
        self.state = RegistrationState.HUNTING
        self.home_server: int | None = None
        self.granted_life: int | None = None
        # What the current home server last granted: the PE parameter and its life.
        self._granted: tuple[PoolElementParameter, int] | None = None
        #: Registration attempts since the last success (RFC 5352 3.1's local count).
        self.attempts = 0
        #: De-registration attempts of the current de-registration.
        self.deregistration_attempts = 0
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
        self._deadline = now + self._registration_timeout()
        return [SendToHome(self._registration())]

    def _registration_timeout(self) -> float:
        """T2 for the first MAX-REG-ATTEMPT attempts, then doubling up to RETRAN-MAX."""
        t2 = self.timers.t2_registration
        beyond = self.attempts - self.timers.max_reg_attempt
        if beyond <= 0:
            return t2
        backoff: float = t2 * 2.0 ** min(beyond, 30)
        return min(backoff, max(t2, self.timers.retran_max))

    def _deregistration(self) -> asap.Deregistration:
        return asap.Deregistration(self.pool_handle, self.pe_identifier)

    # ------------------------------------------------------------------ inputs

    def home_connected(self, now: float, server_identifier: int | None = None) -> list[Action]:
        """A trusted connection to a (new) home server is up: register there (R1-R4), or
        de-register there if a de-registration is under way (3.2).
        ``server_identifier``: the server's identifier if known (else learnt later)."""
        if self.state is RegistrationState.STOPPED:
            return []
        # A new home server: its identifier is learnt from its first keep-alive.
        self.home_server = server_identifier
        self._granted = None
        if self.state is RegistrationState.DEREGISTERING:
            self._deadline = now + self.timers.t3_deregistration
            return [SendToHome(self._deregistration())]
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
            self._reported = False
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
        self.deregistration_attempts = 1
        self._deadline = now + self.timers.t3_deregistration
        return [SendToHome(self._deregistration())]

    def message_from_home(
        self, message: asap.AsapMessage, now: float, *, from_home: bool = True
    ) -> list[Action]:
        """An ASAP message from an ENRP server we connected to: the home server, or (not
        ``from_home``) one we hunted away from, whose late answers still count."""
        if isinstance(message, asap.RegistrationResponse):
            return self._registration_response(message, now)
        if isinstance(message, asap.DeregistrationResponse):
            return self._deregistration_response(message, now)
        if isinstance(message, asap.EndpointKeepAlive):
            return self.keep_alive(message, now, trusted=True, from_home=from_home)
        if isinstance(message, asap.ErrorMessage):
            return self._error(message.error)
        return []

    def _error(self, error: OperationError) -> list[Action]:
        """ASAP_ERROR: our request could not be understood. While a registration waits for
        its answer this is the answer; if no retry can cure it, stop retrying."""
        if not is_permanent(error):
            return []
        if self.state is RegistrationState.REGISTERING:
            self.state = RegistrationState.REFUSED
            self._deadline = None
            return [Refused(error, by_error=True)]
        if self.state is RegistrationState.DEREGISTERING:
            self.state = RegistrationState.STOPPED
            self._deadline = None
            return [Deregistered(False, error)]
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
            self._granted = None
            return [Refused(message.error)]
        self.state = RegistrationState.REGISTERED
        self.attempts = 0
        self._reported = False
        life = self.element.registration_life
        known = True
        if message.error is not None and life != 0:
            # A warning: the server changed our values (RFC 5352 2.2.3); a shortened life is
            # in the cause (RFC 5354 3.12.4). Without it, guess half of ours (R2.3: we
            # must re-register before the registration expires).
            granted = granted_life(message.error, self.pe_identifier)
            if granted is not None:
                life = granted
            else:
                known = False
                life = max(1, life // 2) if life > 0 else life
        self.granted_life = life
        self._deadline = now + self.timers.reregistration_delay(life)
        snapshot = (self.element, life)
        renewal, self._granted = snapshot == self._granted, snapshot
        return [Registered(life, message.error, known, renewal)]

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
            # RFC 5352 2.2.4 and 3.2: the server removed us (the life expired, or it found
            # us unreachable): register again at once.
            self.attempts = 0
            self._granted = None
            return self._register(now)
        return []

    # ------------------------------------------------------------------ time

    def next_deadline(self) -> float | None:
        """When :meth:`handle_timer` has work (T2, T3 or T4)."""
        return self._deadline

    def handle_timer(self, now: float) -> list[Action]:
        """T2 expired: send again and hunt in parallel (report at MAX-REG-ATTEMPT, then back
        off or stop); T4 expired: re-register; T3 expired: send again and hunt in parallel,
        giving up after MAX-REQUEST-RETRANSMIT retransmissions."""
        if self._deadline is None or now < self._deadline:
            return []
        self._deadline = None
        if self.state is RegistrationState.REGISTERED:
            return self._register(now)
        if self.state is RegistrationState.REGISTERING:
            return self._registration_timed_out(now)
        if self.state is RegistrationState.DEREGISTERING:
            if self.deregistration_attempts > self.timers.max_request_retransmit:
                self.state = RegistrationState.STOPPED
                return [Deregistered(False)]
            self.deregistration_attempts += 1
            self._deadline = now + self.timers.t3_deregistration
            return [
                SendToHome(self._deregistration()),
                HuntInParallel("no ASAP_DEREGISTRATION_RESPONSE within T3-deregistration"),
            ]
        return []

    def _registration_timed_out(self, now: float) -> list[Action]:
        actions: list[Action] = []
        if self.attempts >= self.timers.max_reg_attempt and not self._reported:
            self._reported = True
            if self.stop_after_max_reg_attempt:
                self.state = RegistrationState.REFUSED
                return [ReportFailure(self.attempts, stopped=True)]
            actions.append(ReportFailure(self.attempts))
        actions += self._register(now)
        actions.append(HuntInParallel("no ASAP_REGISTRATION_RESPONSE within T2-registration"))
        return actions
