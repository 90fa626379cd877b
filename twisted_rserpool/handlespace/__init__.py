"""The RSerPool handlespace: pools, pool elements, RFC 5356 policies, ownership, expiry.

Pure Python with no I/O and no reactor: callers pass the current time and get back the
events each change caused. See ``docs/handlespace.md``.
"""

from twisted_rserpool.handlespace.cache import CacheState, PoolUserCache
from twisted_rserpool.handlespace.checksum import compute as compute_pe_checksum
from twisted_rserpool.handlespace.element import PoolElementEntry
from twisted_rserpool.handlespace.errors import (
    DeregistrationRefused,
    HandlespaceError,
    RegistrationRefused,
    UnknownPoolHandle,
)
from twisted_rserpool.handlespace.events import (
    HandlespaceEvent,
    PoolCreated,
    PoolElementAdded,
    PoolElementRemoved,
    PoolElementUpdated,
    PoolRemoved,
    RemovalReason,
    UpdateReason,
)
from twisted_rserpool.handlespace.handlespace import (
    UNLIMITED,
    Handlespace,
    HandlespaceLimits,
    Resolution,
    Subscription,
    UnreachableCount,
)
from twisted_rserpool.handlespace.policies import Algorithm, RsplibPolicyType, algorithm_for
from twisted_rserpool.handlespace.pool import Pool

__all__ = [
    "UNLIMITED",
    "Algorithm",
    "CacheState",
    "DeregistrationRefused",
    "Handlespace",
    "HandlespaceError",
    "HandlespaceEvent",
    "HandlespaceLimits",
    "Pool",
    "PoolCreated",
    "PoolElementAdded",
    "PoolElementEntry",
    "PoolElementRemoved",
    "PoolElementUpdated",
    "PoolRemoved",
    "PoolUserCache",
    "RegistrationRefused",
    "RemovalReason",
    "Resolution",
    "RsplibPolicyType",
    "Subscription",
    "UnknownPoolHandle",
    "UnreachableCount",
    "UpdateReason",
    "algorithm_for",
    "compute_pe_checksum",
]
