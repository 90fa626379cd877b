"""RFC 5352 section 7: the timers, variables and thresholds of an ASAP endpoint."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["AsapTimers"]


@dataclass(frozen=True, slots=True)
class AsapTimers:
    """Timers (seconds) and thresholds of pool elements and pool users.

    Defaults are RFC 5352 section 7. T6-Serverannounce paces an ENRP server's own
    announcements and is not used by endpoints; an announcement an endpoint hears is a hint
    that expires after T7-ENRPoutdate.
    """

    #: T1-ENRPrequest: how long to wait for the answer to a request (handle resolution).
    t1_enrp_request: float = 15.0
    #: T2-registration: how long to wait for an ASAP_REGISTRATION_RESPONSE.
    t2_registration: float = 30.0
    #: T3-deregistration: how long to wait for an ASAP_DEREGISTRATION_RESPONSE.
    t3_deregistration: float = 30.0
    #: T4-reregistration: the longest time between re-registrations.
    t4_reregistration: float = 600.0
    #: T5-Serverhunt: the initial time given to one round of the server hunt.
    t5_server_hunt: float = 10.0
    #: T7-ENRPoutdate: how long an announced ENRP server stays known.
    t7_enrp_outdate: float = 5.0
    #: MAX-REQUEST-RETRANSMIT: retransmissions of a request before it fails.
    max_request_retransmit: int = 2
    #: MAX-REG-ATTEMPT: registration attempts before the failure is reported.
    max_reg_attempt: int = 2
    #: RETRAN-MAX: the ceiling of the doubling T5-Serverhunt.
    retran_max: float = 60.0
    #: Rounds of the server hunt without a usable ENRP server after which the pending
    #: registration and requests fail with ServerHuntFailed (not in RFC 5352; the hunt
    #: goes on).
    max_hunt_rounds: int = 3
    #: stale_cache_value: how long a handle resolution stays fresh in a pool user's cache.
    stale_cache_value: float = 5.0

    def __post_init__(self) -> None:
        for name in (
            "t1_enrp_request",
            "t2_registration",
            "t3_deregistration",
            "t4_reregistration",
            "t5_server_hunt",
            "t7_enrp_outdate",
            "retran_max",
        ):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive")
        if self.max_request_retransmit < 0 or self.max_reg_attempt < 1:
            raise ValueError("max_request_retransmit >= 0 and max_reg_attempt >= 1 required")
        if self.max_hunt_rounds < 1:
            raise ValueError("max_hunt_rounds must be at least 1")
        if self.stale_cache_value < 0:
            raise ValueError("stale_cache_value must not be negative")

    def reregistration_delay(self, registration_life: int) -> float:
        """T4 for a granted registration life: the smaller of T4 and the life less 20 s
        (half the life for lives of 40 s or less, so that re-registration precedes expiry)."""
        if registration_life < 0:
            return self.t4_reregistration
        if registration_life <= 40:
            return max(registration_life / 2, 0.5)
        return min(self.t4_reregistration, registration_life - 20.0)
