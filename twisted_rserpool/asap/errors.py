"""Errors an ASAP endpoint reports to its application."""

from __future__ import annotations

from typing import TYPE_CHECKING

from twisted_rserpool.describe import handleText
from twisted_rserpool.wire.errors import CauseCode
from twisted_rserpool.wire.parameters import OperationError

if TYPE_CHECKING:
    from twisted_rserpool.asap.delivery import PoolElementHandle, UndeliveredMessage
    from twisted_rserpool.asap.notifier import FailoverEvent

__all__ = [
    "AsapError",
    "DeliveryFailed",
    "FailoverRefused",
    "NoPoolElementAvailable",
    "PlaintextRefused",
    "RegistrationRefused",
    "RequestTimedOut",
    "ResolutionFailed",
    "ServerHuntFailed",
    "SessionClosed",
]


class AsapError(Exception):
    """Base class of the errors of this package.

    When a session ends with one (RFC 5352 6.7 Error.Report), ``undelivered`` holds the
    application messages it did not deliver, oldest first
    (:class:`~twisted_rserpool.asap.delivery.UndeliveredMessage`: those ``sent`` may have
    been processed by the failed pool element); empty otherwise.
    """

    undelivered: tuple[UndeliveredMessage, ...] = ()


def _cause(error: OperationError | None) -> str:
    if error is None:
        return "no cause given"
    try:
        return CauseCode(error.code).name.replace("_", " ").lower()
    except ValueError:
        return f"cause 0x{error.code:04x}"


class ResolutionFailed(AsapError):
    """The ENRP server answered a handle resolution with an error (e.g. unknown pool)."""

    def __init__(self, pool_handle: bytes, error: OperationError | None) -> None:
        self.pool_handle = pool_handle
        self.error = error
        super().__init__(f"handle resolution of {handleText(pool_handle)} failed: {_cause(error)}")


class RegistrationRefused(AsapError):
    """The home ENRP server rejected the registration (R flag) with ``error``."""

    def __init__(self, pool_handle: bytes, error: OperationError | None) -> None:
        self.pool_handle = pool_handle
        self.error = error
        super().__init__(f"registration in pool {handleText(pool_handle)} refused: {_cause(error)}")


class RequestTimedOut(AsapError):
    """No ENRP server answered a request within T1 after MAX-REQUEST-RETRANSMIT retries."""


class ServerHuntFailed(RequestTimedOut):
    """No ENRP server could be used for ``rounds`` rounds of the server hunt.

    ``reasons`` maps each server tried (as ``host:port``) to why it could not be used,
    e.g. the TLS alert or certificate error of its handshake. The hunt goes on; the next
    server that authenticates is used.
    """

    def __init__(self, rounds: int, reasons: dict[str, str]) -> None:
        self.rounds = rounds
        self.reasons = dict(reasons)
        why = "; ".join(f"{server}: {reason}" for server, reason in reasons.items())
        super().__init__(
            f"no ENRP server could be used after {rounds} server hunt rounds"
            + (f" ({why})" if why else " (no answer)")
        )


class PlaintextRefused(AsapError, ValueError):
    """A pool element or pool user would talk to the other without TLS, and the application
    did not ask for that with ``insecure=True`` (RFC 5355 2.7, 2.8: PU-PE traffic is
    protected like the rest)."""


class NoPoolElementAvailable(AsapError):
    """No reachable pool element is left for the pool handle."""

    def __init__(self, pool_handle: bytes, detail: str = "") -> None:
        self.pool_handle = pool_handle
        message = f"no pool element of pool {handleText(pool_handle)} is available"
        super().__init__(message + (f": {detail}" if detail else ""))


class FailoverRefused(AsapError):
    """A failover was vetoed (by an observer, or because the security got weaker); the
    session is closed. ``event`` is the failover that was refused."""

    def __init__(self, event: FailoverEvent, reason: str) -> None:
        self.event = event
        self.reason = reason
        super().__init__(f"failover refused: {reason}: {event.describe()}")


class DeliveryFailed(AsapError):
    """Messages to ``destination`` (a pool element handle) were not delivered and are not
    sent elsewhere (ASAP_SEND_NO_FAILOVER, or a send by transport address): they are in
    ``undelivered``. ``reason`` says why the pool element failed."""

    def __init__(self, destination: PoolElementHandle, reason: str) -> None:
        self.destination = destination
        self.reason = reason
        super().__init__(
            f"delivery to PE 0x{destination.pe_identifier:08x} of pool "
            f"{handleText(destination.pool_handle)} failed: {reason}"
        )


class SessionClosed(AsapError):
    """The session is closed: nothing more can be sent."""
