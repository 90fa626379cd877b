"""One pool element as the handlespace holds it."""

from __future__ import annotations

from collections.abc import Hashable, Iterable
from dataclasses import replace

from twisted_rserpool.describe import handleText
from twisted_rserpool.wire.parameters import (
    PoolElementParameter,
    SctpTransport,
    SelectionPolicy,
    TcpTransport,
    Transport,
    owner_fits,
)


class PoolElementEntry:
    """A registered pool element: its PE parameter plus the handlespace's bookkeeping.

    The handlespace owns these objects and changes them in place; read them, never assign.
    ``element`` is the PE parameter as last registered (with the current home ENRP server),
    ready to go into ASAP and ENRP messages; :meth:`encoded` and :meth:`encoded_with_owner`
    give it encoded, computed once per change. ``identity`` is the authenticated identity (PSK
    identity or certificate subject) that registered it, ``None`` when it was learnt from an
    ENRP peer. ``owner_identity`` is the identity that owns the PE pool-wide (RFC 5355
    2.3): the registering identity, or the one a peer of this implementation named in
    ENRP; ``None`` when nobody said. Times are in the caller's clock (seconds).
    """

    __slots__ = (
        "_counter",
        "_element",
        "_encoded",
        "_encoded_with_owner",
        "_expiry_token",
        "_keep_alive_token",
        "_owner_identity",
        "_owner_next",
        "_owner_prev",
        "_pass",
        "_position",
        "_seq",
        "_v1",
        "_v2",
        "expires_at",
        "identity",
        "keep_alive_deadline",
        "pool_handle",
        "registered_at",
        "unreachable_reporters",
        "unreachable_reports",
        "updated_at",
    )

    def __init__(
        self,
        pool_handle: bytes,
        element: PoolElementParameter,
        identity: str | None,
        now: float,
        owner_identity: str | None = None,
    ) -> None:
        self.pool_handle = pool_handle
        self._element = element
        self._owner_identity = owner_identity
        # The encodings of element and element_with_owner(); None until asked for, and
        # again whenever what they encode changes.
        self._encoded: bytes | None = None
        self._encoded_with_owner: bytes | None = None
        self.identity = identity
        #: When the registration life runs out (``None``: infinite or not tracked).
        self.expires_at: float | None = None
        self.registered_at = now
        self.updated_at = now
        #: When an unanswered ASAP_ENDPOINT_KEEP_ALIVE times out (``None``: none pending).
        self.keep_alive_deadline: float | None = None
        #: ASAP_ENDPOINT_UNREACHABLE reports (distinct reporters) since the last sign of life.
        self.unreachable_reports = 0
        #: When each recent reporter was last counted (``None`` until the first report).
        self.unreachable_reporters: dict[Hashable, float] | None = None
        # Policy state, owned by the pool's selector (see policies.py).
        self._v1 = 0
        self._v2 = 0
        self._seq = 0
        self._counter = 0
        self._pass = 0
        self._position: object = None
        # Deadline queue tokens (see deadline.DeadlineQueue); 0 when not scheduled.
        self._expiry_token = 0
        self._keep_alive_token = 0
        # Neighbours in the owner's list of PEs (see handlespace._Owner).
        self._owner_prev: PoolElementEntry | None = None
        self._owner_next: PoolElementEntry | None = None

    @property
    def element(self) -> PoolElementParameter:
        """The PE parameter as last registered, with the current home ENRP server."""
        return self._element

    @element.setter
    def element(self, element: PoolElementParameter) -> None:
        if element is not self._element:
            self._element = element
            self._encoded = self._encoded_with_owner = None

    @property
    def owner_identity(self) -> str | None:
        """The identity that owns the PE pool-wide (RFC 5355 2.3), ``None`` if unknown."""
        return self._owner_identity

    @owner_identity.setter
    def owner_identity(self, owner_identity: str | None) -> None:
        if owner_identity != self._owner_identity:
            self._owner_identity = owner_identity
            self._encoded_with_owner = None

    def encoded(self) -> bytes:
        """``element`` encoded: the Pool Element parameter of ASAP messages."""
        encoded = self._encoded
        if encoded is None:
            encoded = self._encoded = self._element.encode()
        return encoded

    def encoded_with_owner(self) -> bytes:
        """:meth:`element_with_owner` encoded: the Pool Element parameter of ENRP messages."""
        encoded = self._encoded_with_owner
        if encoded is None:
            encoded = self._encoded_with_owner = self.element_with_owner().encode()
        return encoded

    @property
    def pe_identifier(self) -> int:
        """The PE identifier (unique within its pool)."""
        return self._element.pe_identifier

    @property
    def home_server_identifier(self) -> int:
        """The identifier of the home ENRP server that owns this PE."""
        return self._element.home_server_identifier

    @property
    def registration_life(self) -> int:
        """Seconds the registration is valid for (-1: infinite)."""
        return self._element.registration_life

    @property
    def user_transport(self) -> Transport:
        """Where pool users reach the PE."""
        return self._element.user_transport

    @property
    def asap_transport(self) -> SctpTransport | TcpTransport | None:
        """Where the ENRP server reaches the PE's ASAP endpoint."""
        return self._element.asap_transport

    @property
    def policy(self) -> SelectionPolicy:
        """The PE's policy parameter (its policy values)."""
        return self._element.policy

    def element_with_owner(self) -> PoolElementParameter:
        """The PE parameter for ENRP: ``element`` naming its owner identity when known.

        An identity too long for the wire (see ``owner_fits``) is left out, so peers treat
        the PE as one of unknown owner.
        """
        if self._owner_identity is None or not owner_fits(self._owner_identity):
            return self._element
        return replace(self._element, owner_identity=self._owner_identity)

    @property
    def degradation_counter(self) -> int:
        """How often a degrading policy selected this PE since its last (re-)registration."""
        return self._counter

    def __repr__(self) -> str:
        return (
            f"<PoolElementEntry {handleText(self.pool_handle)}/0x{self.pe_identifier:08x}"
            f" home=0x{self.home_server_identifier:08x}>"
        )


def encoded_elements(
    entries: Iterable[PoolElementEntry], prefix: bytes = b""
) -> tuple[tuple[PoolElementParameter, ...], bytes]:
    """The entries' PE parameters, and ``prefix`` followed by their cached encodings.

    What a handle resolution answer carries, in one pass: the same as
    ``tuple(e.element for e in entries)`` and ``prefix + b"".join(e.encoded() for e in
    entries)``, without a call per entry.
    """
    elements: list[PoolElementParameter] = []
    parts = [prefix]
    for entry in entries:
        element = entry._element
        elements.append(element)
        encoded = entry._encoded
        if encoded is None:
            encoded = entry._encoded = element.encode()
        parts.append(encoded)
    return tuple(elements), b"".join(parts)
