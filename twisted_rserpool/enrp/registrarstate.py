"""What the parts of the registrar share: its configuration, actions, connections and PEs.

The :class:`~twisted_rserpool.enrp.registrar.Registrar` is a facade over one part per job
(registration, handle resolution, keep-alives, unreachable reports); they all work on one
:class:`RegistrarState` and ask the registrar's overridable decisions through
:class:`RegistrarHooks`. Sans-IO.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv6Address
from typing import Protocol, TypeAlias

from twisted_rserpool.handlespace import Handlespace
from twisted_rserpool.security.authorization import AuthorizationPolicy
from twisted_rserpool.security.context import SecurityContext
from twisted_rserpool.security.ratelimit import Rate
from twisted_rserpool.wire.message import Message
from twisted_rserpool.wire.parameters import PoolElementParameter

Address: TypeAlias = IPv4Address | IPv6Address
#: A PE by (pool handle, PE identifier).
PoolElementKey: TypeAlias = tuple[bytes, int]


@dataclass(frozen=True, slots=True)
class Send:
    """Send ``message`` on connection ``connection``."""

    connection: int
    message: Message


@dataclass(frozen=True, slots=True)
class Close:
    """Close connection ``connection``; ``reason`` is for the log."""

    connection: int
    reason: str


Action: TypeAlias = Send | Close


@dataclass(frozen=True, slots=True)
class RegistrarConfig:
    """Timers, thresholds and limits of the ASAP side of an ENRP server.

    Defaults follow RSPLIB where RFC 5352 leaves values open (keep-alive every 5 s with a
    5 s timeout, MAX-BAD-PE-REPORT 3, 3 PEs per handle resolution, at most 128).
    """

    server_identifier: int
    #: Refuse every state change from a connection whose peer is not authenticated
    #: (RFC 5355 2.1-2.4, 2.15). Only ``--insecure`` turns this off.
    secure: bool = True
    #: Let pool users that did not authenticate (TLS with a server certificate only)
    #: resolve handles. Registrations always need an authenticated pool element.
    anonymous_pool_users: bool = True
    #: Registered addresses must be the connection's peer address or the wildcard
    #: (RFC 5352 2.2.1: "a subset of the IP address(es) used in the association").
    check_addresses: bool = True
    keep_alive_interval: float = 5.0
    keep_alive_timeout: float = 5.0
    max_bad_pe_report: int = 3
    #: Seconds within which one reporter counts once per PE towards MAX-BAD-PE-REPORT: as
    #: long as two periodic keep-alive rounds (interval x 1.5 plus timeout, 12.5 s by
    #: default) and then some, so a PU repeating its report cannot count again before the
    #: PE has been asked twice.
    unreachable_report_window: float = 30.0
    #: PEs per handle resolution answer when the PU does not say (RSPLIB's items
    #: parameter): all of the pool, as RFC 5352 3.3 SHOULD, up to the maximum (RSPLIB
    #: answers 3 by default).
    handle_resolution_items: int = 128
    max_handle_resolution_items: int = 128
    #: Longest registration life granted, in seconds (longer ones, and -1, are cut to it).
    max_registration_life: int = 3600
    max_subscriptions_per_connection: int = 64
    #: ASAP requests per connection (RFC 5355 2.1, 2.2, 2.13): beyond it the connection
    #: is not read until its next request is due (:meth:`Registrar.admit_request`).
    request_rate: Rate = field(default_factory=lambda: Rate(200.0, 400.0))
    #: ASAP requests per authenticated identity, over all its connections.
    identity_rate: Rate = field(default_factory=lambda: Rate(500.0, 1000.0))
    #: ASAP requests of all unauthenticated connections together (they cannot be told
    #: apart, so opening more of them gains nothing).
    anonymous_rate: Rate = field(default_factory=lambda: Rate(500.0, 1000.0))
    #: ASAP_ENDPOINT_UNREACHABLE reports per pool user (RFC 5355 2.13).
    unreachable_rate: Rate = field(default_factory=lambda: Rate(1.0, 5.0))
    #: ASAP_ENDPOINT_KEEP_ALIVE messages per pool element (RFC 5355 2.14).
    keep_alive_rate: Rate = field(default_factory=lambda: Rate(1.0, 3.0))


@dataclass(slots=True)
class ConnectionState:
    """What the registrar knows of one ready ASAP connection."""

    number: int
    security: SecurityContext
    peer_address: Address | None
    peer_port: int
    #: Pool elements registered over this connection (their ASAP association).
    pool_elements: set[PoolElementKey] = field(default_factory=set)
    #: Pool handles this connection subscribed to (S flag), with the items it wanted.
    subscriptions: dict[bytes, int] = field(default_factory=dict)
    #: ASAP_ENDPOINT_UNREACHABLE reports refused on this connection (only the first is logged).
    unreachable_refused: int = 0
    #: The authenticated identity of the peer, if any (``security.identity``, read once:
    #: every request asks for it).
    identity: str | None = field(init=False)
    _description: str | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.identity = self.security.identity

    def describe(self) -> str:
        """The peer for log lines."""
        description = self._description
        if description is None:
            description = self._description = (
                f"{self.peer_address}:{self.peer_port} ({self.identity or 'unauthenticated'})"
            )
        return description


@dataclass(slots=True)
class Registered:
    """A pool element registered at this server: its connection and identity."""

    connection: int
    identity: str | None


class RegistrarHooks(Protocol):
    """The registrar's decisions that a subclass may override, as its parts ask them."""

    policy: AuthorizationPolicy

    def allowRegistration(
        self, connection: ConnectionState, pool_handle: bytes, element: PoolElementParameter
    ) -> bool: ...

    def allowResolution(self, connection: ConnectionState, pool_handle: bytes) -> bool: ...

    def takeoverGranted(self, connection: ConnectionState, pool_handle: bytes, pe: int) -> bool: ...


class RegistrarState:
    """The state every part of one registrar works on.

    ``connections`` holds the ready connections by number, ``registered`` the PEs whose
    home is this server and that registered over one of them, ``outbox`` the actions not
    yet taken (:meth:`send` adds to it).
    """

    __slots__ = ("config", "connections", "counters", "handlespace", "outbox", "registered", "rng")

    def __init__(
        self, config: RegistrarConfig, handlespace: Handlespace, rng: random.Random
    ) -> None:
        self.config = config
        self.handlespace = handlespace
        self.rng = rng
        self.counters: Counter[str] = Counter()
        self.connections: dict[int, ConnectionState] = {}
        self.registered: dict[PoolElementKey, Registered] = {}
        self.outbox: list[Action] = []

    def send(self, number: int, message: Message) -> None:
        """Queue ``message`` for connection ``number``."""
        self.outbox.append(Send(number, message))
