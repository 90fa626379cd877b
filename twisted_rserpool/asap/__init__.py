"""ASAP endpoints for applications (RFC 5352): pool elements, pool users, sessions with
failover and the failover notifier (RFC 5355 section 2.9). See ``docs/asap.md``."""

from twisted_rserpool.asap.delivery import (
    PoolElementHandle,
    ReceivedMessage,
    SendOptions,
    UndeliveredMessage,
)
from twisted_rserpool.asap.element import PoolElement, PoolElementConnection, PoolElementTransport
from twisted_rserpool.asap.endpoint import PoolEndpoint, PoolListeningPort, PoolServerEndpoint
from twisted_rserpool.asap.errors import (
    AsapError,
    DeliveryFailed,
    FailoverRefused,
    NoPoolElementAvailable,
    PlaintextRefused,
    RegistrationRefused,
    RequestTimedOut,
    ResolutionFailed,
    ServerHuntFailed,
    SessionClosed,
)
from twisted_rserpool.asap.fanout import FanOutReport
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
    "DeliveryFailed",
    "FailoverDecision",
    "FailoverEvent",
    "FailoverRefused",
    "FanOutReport",
    "IFailoverObserver",
    "IPoolUserSession",
    "NoPoolElementAvailable",
    "PlaintextRefused",
    "PoolElement",
    "PoolElementConnection",
    "PoolElementHandle",
    "PoolElementTransport",
    "PoolEndpoint",
    "PoolListeningPort",
    "PoolServerEndpoint",
    "PoolUser",
    "ReceivedMessage",
    "RegistrationRefused",
    "RequestTimedOut",
    "ResolutionFailed",
    "SendOptions",
    "ServerHuntFailed",
    "Session",
    "SessionClosed",
    "UndeliveredMessage",
]
