"""One server pool: its PEs, its overall policy and transport, and the consistency rules."""

from __future__ import annotations

import random
from collections.abc import Iterator

from twisted.logger import Logger

from twisted_rserpool.describe import handleText
from twisted_rserpool.handlespace.checksum import handle_contribution
from twisted_rserpool.handlespace.element import PoolElementEntry
from twisted_rserpool.handlespace.errors import RegistrationRefused
from twisted_rserpool.handlespace.policies import (
    Algorithm,
    algorithm_for,
    make_selector,
    policy_values,
)
from twisted_rserpool.wire.errors import CauseCode
from twisted_rserpool.wire.parameters import (
    PoolElementParameter,
    SelectionPolicy,
    Transport,
    TransportUse,
)

log = Logger()


class Pool:
    """The PEs registered under one pool handle.

    The first PE fixes the pool's policy type, user transport type and data/control
    configuration (RFC 5352 section 3.1, rule 1); ``policy`` and ``transport`` keep that
    PE's parameters as the pool's "overall" policy and transport for error causes and
    handle resolution responses.
    """

    __slots__ = (
        "_elements",
        "_selector",
        "algorithm",
        "element_changes",
        "handle",
        "handle_sum",
        "policy",
        "policy_type",
        "transport",
        "transport_type",
        "transport_use",
    )

    def __init__(self, handle: bytes, first: PoolElementParameter) -> None:
        self.handle = handle
        self.policy: SelectionPolicy = first.policy
        self.policy_type = first.policy.policy_type
        self.transport: Transport = first.user_transport
        self.transport_type = first.user_transport.TYPE
        self.transport_use: TransportUse = first.user_transport.transport_use
        #: ``None`` when the policy type is unknown: such pools select at random.
        self.algorithm: Algorithm | None = algorithm_for(first.policy)
        if self.algorithm is None:
            log.warn(
                "Pool {pool_handle}: unknown policy type 0x{policy_type:08x},"
                " selecting its pool elements at random",
                pool_handle=handleText(handle),
                policy_type=self.policy_type,
            )
        #: The pool handle's share of every PE checksum block (RFC 5353 section 3.6.2).
        self.handle_sum = handle_contribution(handle)
        self._selector = make_selector(self.algorithm)
        self._elements: dict[int, PoolElementEntry] = {}
        #: How often a PE's parameter was replaced in place: what was built from the PEs'
        #: parameters before (a handle resolution answer) may be stale when it moved.
        self.element_changes = 0

    def __len__(self) -> int:
        return len(self._elements)

    def __iter__(self) -> Iterator[PoolElementEntry]:
        return iter(self._elements.values())

    def __contains__(self, pe_identifier: int) -> bool:
        return pe_identifier in self._elements

    def __repr__(self) -> str:
        return (
            f"<Pool {handleText(self.handle)} policy=0x{self.policy_type:08x}"
            f" transport=0x{self.transport_type:x} elements={len(self)}>"
        )

    def get(self, pe_identifier: int) -> PoolElementEntry | None:
        """The PE with this identifier, if registered."""
        return self._elements.get(pe_identifier)

    def check_consistency(self, element: PoolElementParameter) -> None:
        """Raise :class:`RegistrationRefused` if ``element`` does not fit this pool.

        RFC 5352 section 3.1 rules 2 and 3 (new PEs and re-registrations alike).
        """
        if element.policy.policy_type != self.policy_type:
            raise RegistrationRefused(
                CauseCode.INCONSISTENT_POOLING_POLICY,
                f"pool {handleText(self.handle)} uses policy type 0x{self.policy_type:08x},"
                f" not 0x{element.policy.policy_type:08x}",
                pool_policy=self.policy,
            )
        transport = element.user_transport
        if self.transport_type != transport.TYPE:
            raise RegistrationRefused(
                CauseCode.INCONSISTENT_TRANSPORT_TYPE,
                f"pool {handleText(self.handle)} uses user transport type"
                f" 0x{self.transport_type:x}, not 0x{transport.TYPE:x}",
                pool_transport=self.transport,
            )
        if transport.transport_use != self.transport_use:
            raise RegistrationRefused(
                CauseCode.INCONSISTENT_DATA_CONTROL_CONFIGURATION,
                f"pool {handleText(self.handle)} uses transport use {self.transport_use.name},"
                f" not {transport.transport_use.name}",
            )

    def add(self, entry: PoolElementEntry) -> None:
        """Add a new PE (already checked for consistency)."""
        entry._v1, entry._v2 = policy_values(entry.element.policy)
        self._elements[entry.element.pe_identifier] = entry
        self._selector.add(entry)

    def update(self, entry: PoolElementEntry, element: PoolElementParameter) -> None:
        """Replace a PE's parameter in place (re-registration); resets its degradation."""
        old_v1, old_v2 = entry._v1, entry._v2
        self.replace_element(entry, element)
        entry._v1, entry._v2 = policy_values(element.policy)
        self._selector.update(entry, old_v1, old_v2)

    def replace_element(self, entry: PoolElementEntry, element: PoolElementParameter) -> None:
        """Give ``entry`` the parameter ``element`` (counted in :attr:`element_changes`)."""
        if element is not entry.element:
            entry.element = element
            self.element_changes += 1

    def remove(self, entry: PoolElementEntry) -> None:
        """Remove a PE."""
        del self._elements[entry.element.pe_identifier]
        self._selector.remove(entry)

    def select(self, count: int, rng: random.Random) -> list[PoolElementEntry]:
        """Up to ``count`` distinct PEs by the pool's policy (updating its selection state)."""
        if count <= 0:
            return []
        return self._selector.select(count, rng)
