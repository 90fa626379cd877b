"""What changed in a handlespace: one immutable event per pool element added, updated or removed.

The ENRP server turns events about the PEs it owns into ENRP_HANDLE_UPDATE (ADD_PE for
:class:`PoolElementAdded` and :class:`PoolElementUpdated`, DEL_PE for
:class:`PoolElementRemoved`); pool users that subscribed with the S bit observe them too.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import TypeAlias

from twisted_rserpool.wire.parameters import PoolElementParameter, SelectionPolicy, Transport


class RemovalReason(Enum):
    """Why a pool element left the handlespace."""

    #: ASAP_DEREGISTRATION from the PE (RFC 5352 section 3.2).
    DEREGISTERED = "deregistered"
    #: Its registration life ran out without a re-registration.
    REGISTRATION_EXPIRED = "registration expired"
    #: An ASAP_ENDPOINT_KEEP_ALIVE went unanswered (RFC 5352 section 3.5).
    KEEP_ALIVE_TIMEOUT = "keep-alive timeout"
    #: Too many ASAP_ENDPOINT_UNREACHABLE reports (MAX-BAD-PE-REPORT).
    UNREACHABLE = "unreachable"
    #: Its home ENRP server's PEs were dropped (re-synchronisation, RFC 5353 section 3.6.3).
    OWNER_REMOVED = "owner removed"
    #: An ENRP_HANDLE_UPDATE with DEL_PE from its home ENRP server.
    PEER_UPDATE = "peer update"
    #: A pool user's cache refresh no longer listed it, or the cache entry went stale.
    CACHE = "cache"


class UpdateReason(Enum):
    """Why a pool element changed in place."""

    #: Re-registration, or a peer's ADD_PE for a PE already known.
    REREGISTERED = "re-registered"
    #: Its home ENRP server changed by takeover (RFC 5353 section 3.9).
    TAKEOVER = "takeover"


@dataclass(frozen=True, slots=True)
class PoolCreated:
    """The first PE created this pool, fixing its policy, transport type and data/control use."""

    pool_handle: bytes
    policy: SelectionPolicy
    transport: Transport


@dataclass(frozen=True, slots=True)
class PoolRemoved:
    """The last PE left, so the pool is gone."""

    pool_handle: bytes


@dataclass(frozen=True, slots=True)
class PoolElementAdded:
    """A new pool element; ``identity`` is who registered it (``None`` if learnt from a peer)."""

    pool_handle: bytes
    element: PoolElementParameter
    identity: str | None


@dataclass(frozen=True, slots=True)
class PoolElementUpdated:
    """A pool element changed in place; ``previous`` is what it was before."""

    pool_handle: bytes
    element: PoolElementParameter
    previous: PoolElementParameter
    reason: UpdateReason


@dataclass(frozen=True, slots=True)
class PoolElementRemoved:
    """A pool element left; ``element`` is its last state."""

    pool_handle: bytes
    element: PoolElementParameter
    reason: RemovalReason


HandlespaceEvent: TypeAlias = (
    PoolCreated | PoolRemoved | PoolElementAdded | PoolElementUpdated | PoolElementRemoved
)
