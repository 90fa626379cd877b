"""ASAP endpoints for applications (RFC 5352): pool elements, pool users, sessions with
failover and the failover notifier (RFC 5355 section 2.9). See ``docs/asap.md``."""

from twisted_rserpool.asap.element import PoolElement, PoolElementConnection, PoolElementTransport
from twisted_rserpool.asap.errors import (
    AsapError,
    FailoverRefused,
    NoPoolElementAvailable,
    RegistrationRefused,
    RequestTimedOut,
    ResolutionFailed,
    SessionClosed,
)
from twisted_rserpool.asap.notifier import (
    FailoverDecision,
    FailoverEvent,
    IFailoverObserver,
    IPoolUserSession,
)
from twisted_rserpool.asap.session import Session
from twisted_rserpool.asap.timers import AsapTimers
from twisted_rserpool.asap.user import PoolUser

__all__ = [
    "AsapError",
    "AsapTimers",
    "FailoverDecision",
    "FailoverEvent",
    "FailoverRefused",
    "IFailoverObserver",
    "IPoolUserSession",
    "NoPoolElementAvailable",
    "PoolElement",
    "PoolElementConnection",
    "PoolElementTransport",
    "PoolUser",
    "RegistrationRefused",
    "RequestTimedOut",
    "ResolutionFailed",
    "Session",
    "SessionClosed",
]
