"""The ASAP side of an ENRP server (RFC 5352 section 3), secured as RFC 5355 asks. Sans-IO.

The :class:`Registrar` knows connections by an opaque number. The Twisted adapter tells it
when a connection is ready (with its :class:`SecurityContext` and peer address), hands it
every decoded ASAP message, and runs :meth:`Registrar.handle_timer` at
:meth:`Registrar.next_deadline`. Every call returns the :class:`Send` and :class:`Close`
actions to carry out. No state changes before the peer is authenticated and authorized.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from ipaddress import IPv4Address, IPv6Address, ip_address
from typing import TypeAlias

from twisted.logger import Logger, LogLevel

from twisted_rserpool.deadline import DeadlineQueue
from twisted_rserpool.describe import handleText
from twisted_rserpool.handlespace import (
    Handlespace,
    HandlespaceError,
    HandlespaceEvent,
    Pool,
    PoolElementAdded,
    PoolElementEntry,
    PoolElementRemoved,
    PoolElementUpdated,
    PoolRemoved,
    RemovalReason,
)
from twisted_rserpool.security.authorization import AuthorizationPolicy, Role
from twisted_rserpool.security.context import SecurityContext
from twisted_rserpool.security.ratelimit import Rate, RateLimiter, RequestLimiter
from twisted_rserpool.wire import asap
from twisted_rserpool.wire.errors import CauseCode
from twisted_rserpool.wire.message import Message
from twisted_rserpool.wire.parameters import (
    POLICY_CLASSES,
    DccpTransport,
    ErrorInformation,
    OperationError,
    PoolElementParameter,
    PoolHandleParameter,
    RoundRobinPolicy,
    SctpTransport,
    SelectionPolicy,
    TcpTransport,
    Transport,
    UdpLiteTransport,
    UdpTransport,
    UnknownPolicy,
)

log = Logger()

Address: TypeAlias = IPv4Address | IPv6Address
_PoolElementKey: TypeAlias = tuple[bytes, int]
#: Who reported a PE unreachable: ("identity", name), or ("address", peer address) for
#: an unauthenticated pool user (its connections count as one).
_Reporter: TypeAlias = tuple[str, str]


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
    pool_elements: set[_PoolElementKey] = field(default_factory=set)
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
class _Registered:
    """A pool element registered at this server: its connection and identity."""

    connection: int
    identity: str | None


class _Refused:
    """The registration was refused (and answered): a marker distinct from ``None``."""


_REFUSED = _Refused()


def overall_policy(policy: SelectionPolicy) -> SelectionPolicy:
    """The pool's overall policy as a handle resolution response carries it (values zero)."""
    known = POLICY_CLASSES.get(policy.policy_type)
    if known is None:
        return policy if isinstance(policy, UnknownPolicy) else UnknownPolicy(policy.policy_type)
    cls, values = known
    return cls(*([0] * values))


def _policy_parameter(policy: SelectionPolicy) -> SelectionPolicy | None:
    """RFC 5352 3.3: the overall policy is included unless it is round robin."""
    overall = overall_policy(policy)
    return None if isinstance(overall, RoundRobinPolicy) else overall


@dataclass(frozen=True, slots=True)
class _AnswerHead:
    """What every positive handle resolution answer of one pool starts with."""

    pool: Pool
    #: The overall policy parameter, ``None`` for round robin.
    policy: SelectionPolicy | None
    #: The pool handle parameter and the policy parameter, encoded.
    encoded: bytes

    @classmethod
    def of(cls, pool: Pool) -> _AnswerHead:
        policy = _policy_parameter(pool.policy)
        encoded = PoolHandleParameter(pool.handle).encode()
        return cls(pool, policy, encoded if policy is None else encoded + policy.encode())


@dataclass(frozen=True, slots=True)
class _CachedAnswer(asap.HandleResolutionResponse):
    """A positive ASAP_HANDLE_RESOLUTION_RESPONSE built from handlespace entries.

    ``parameters`` is its body already encoded: the pool's :class:`_AnswerHead` and each
    PE's parameter as its entry caches it (:meth:`PoolElementEntry.encoded`), so encoding
    the answer is a join. Built only by :meth:`Registrar._answer`; the other fields say
    the same for readers (tests, the admin interface).
    """

    parameters: bytes = field(default=b"", compare=False, repr=False, kw_only=True)

    def _body(self) -> bytes:
        return self.parameters


#: Authorization decisions the registrar remembers at most (then it starts again).
_MAX_DECISIONS = 65536

#: Removals a PE still connected here is told of with ASAP_DEREGISTRATION_RESPONSE.
_TOLD_REMOVALS = frozenset(
    {
        RemovalReason.REGISTRATION_EXPIRED,
        RemovalReason.KEEP_ALIVE_TIMEOUT,
        RemovalReason.UNREACHABLE,
    }
)


class Registrar:
    """The ASAP server core of an ENRP server: registrations, handle resolution, keep-alives.

    Subclass and override :meth:`allowRegistration` / :meth:`allowResolution` to add
    decisions of your own (the way twisted.names offers ``allowQuery``), then hand the
    class to ``twistd enrp --registrar package.module.Class`` or to
    ``twisted_rserpool.enrp.tap.makeService(options, registrarClass=Class)``, which build
    it as ``Class(config, handlespace, policy)``. The hooks run in this sans-IO core for
    every request they decide on: they answer at once (no I/O, no Deferreds); read what
    they need beforehand, for example in ``__init__``.
    """

    def __init__(
        self,
        config: RegistrarConfig,
        handlespace: Handlespace,
        policy: AuthorizationPolicy,
        *,
        rng: random.Random | None = None,
    ) -> None:
        self.config = config
        self.handlespace = handlespace
        self.policy = policy
        self.rng = rng if rng is not None else random.Random()
        self.counters: Counter[str] = Counter()
        self._connections: dict[int, ConnectionState] = {}
        self._registered: dict[_PoolElementKey, _Registered] = {}
        self._identity_elements: Counter[str] = Counter()
        self._keep_alive_due: DeadlineQueue[_PoolElementKey] = DeadlineQueue()
        self._subscribers: dict[bytes, set[int]] = {}
        self._outbox: list[Action] = []
        self._request_limiter: RequestLimiter[int] = RequestLimiter(
            config.request_rate, config.identity_rate, config.anonymous_rate
        )
        self._unreachable_limiter: RateLimiter[_Reporter] = RateLimiter(config.unreachable_rate)
        self._keep_alive_limiter: RateLimiter[_PoolElementKey] = RateLimiter(config.keep_alive_rate)
        self._throttled: set[int] = set()
        self._changed_pools: set[bytes] = set()
        #: Per pool handle, the start of every positive answer (see _answer).
        self._answer_heads: dict[bytes, _AnswerHead] = {}
        #: What ``_decided_by`` (the policy) answered, by (identity, role, pool handle).
        self._decisions: dict[tuple[str, Role, bytes], bool] = {}
        self._decided_by = policy
        self._subscription = handlespace.subscribe(self._handlespace_changed)

    # ------------------------------------------------------------------ decisions to override

    def allowRegistration(
        self, connection: ConnectionState, pool_handle: bytes, element: PoolElementParameter
    ) -> bool:
        """Whether this connection may register ``element`` in ``pool_handle``.

        ``connection.identity`` is the peer's authenticated identity (its TLS-PSK identity
        or certificate subject), ``connection.security`` its whole ``SecurityContext`` and
        ``connection.peer_address`` its address; ``element`` is the PE parameter as sent
        (its identifier, transports, policy and registration life). Called for every
        registration, re-registrations included, and only for authenticated peers (any
        peer when the server is insecure); not for a PE that re-registers over the
        connection a new home server opened to it after a takeover
        (:meth:`takeoverGranted`), which its first home admitted.

        False refuses the registration with the ASAP cause "Rejected due to security
        considerations" (logged, and counted as ``registrations_refused_...``); the PE
        gets a rejecting ASAP_REGISTRATION_RESPONSE. The default applies the
        authorization policy (role pool-element for this pool); call it from an override
        to keep it.
        """
        if connection.identity is None:
            return not self.config.secure
        return self._may(connection.identity, Role.POOL_ELEMENT, pool_handle)

    def allowResolution(self, connection: ConnectionState, pool_handle: bytes) -> bool:
        """Whether this connection may resolve ``pool_handle`` and subscribe to its changes.

        ``connection`` is as for :meth:`allowRegistration`, and ``connection.identity``
        is None for a pool user that authenticated the server only. False answers the
        ASAP_HANDLE_RESOLUTION with the cause "Rejected due to security considerations"
        (logged, counted as ``resolutions_refused``). The default applies the policy: an
        identity with the pool-user or pool-element role for the pool may, an
        unauthenticated one unless anonymous pool users are refused.
        """
        if connection.identity is None:
            return self.config.anonymous_pool_users or not self.config.secure
        return self._may(connection.identity, Role.POOL_USER, pool_handle) or self._may(
            connection.identity, Role.POOL_ELEMENT, pool_handle
        )

    def _may(self, identity: str, role: Role, pool_handle: bytes) -> bool:
        """``self.policy.may``, remembered: a policy is never changed in place (a reload
        installs a new one), so its answers stand until ``self.policy`` is another."""
        if self._decided_by is not self.policy:
            self._decided_by = self.policy
            self._decisions.clear()
        key = (identity, role, pool_handle)
        allowed = self._decisions.get(key)
        if allowed is None:
            if len(self._decisions) >= _MAX_DECISIONS:
                self._decisions.clear()  # bounded: distinct handles cost a lookup each
            allowed = self._decisions[key] = self.policy.may(identity, role, pool_handle)
        return allowed

    # ------------------------------------------------------------------ connections

    @property
    def connections(self) -> dict[int, ConnectionState]:
        """The ready connections by number (read only)."""
        return self._connections

    def connection_ready(
        self,
        number: int,
        security: SecurityContext,
        peer: tuple[str, int] | None,
    ) -> list[Action]:
        """A connection finished its TLS handshake and TCP mapping INIT exchange."""
        address: Address | None = None
        port = 0
        if peer is not None:
            try:
                address = ip_address(peer[0])
            except ValueError:
                address = None
            port = peer[1]
        self._connections[number] = ConnectionState(number, security, address, port)
        self.counters["connections"] += 1
        return self._take()

    def connection_lost(self, number: int, now: float) -> list[Action]:
        """A connection closed: the PEs registered over it are unreachable and removed."""
        state = self._connections.pop(number, None)
        if state is None:
            return self._take()
        for pool_handle in state.subscriptions:
            self._unsubscribe(pool_handle, number)
        self._request_limiter.forget(number)
        self._throttled.discard(number)
        for key in sorted(state.pool_elements):
            registered = self._registered.get(key)
            if registered is not None and registered.connection == number:
                log.info(
                    "Removing PE 0x{pe:08x} of pool {pool}: its ASAP connection {peer} closed",
                    pe=key[1],
                    pool=handleText(key[0]),
                    peer=state.describe(),
                )
                self.counters["removed_connection_lost"] += 1
                self.handlespace.deregister(key[0], key[1], reason=RemovalReason.UNREACHABLE)
        return self._take()

    # ------------------------------------------------------------------ messages

    def message_received(self, number: int, message: Message, now: float) -> list[Action]:
        """Handle one decoded ASAP message from connection ``number``."""
        state = self._connections.get(number)
        if state is None:
            log.warn("ASAP message on a connection that is not ready: dropped")
            self.counters["dropped_not_ready"] += 1
            return []
        # Skip-and-report parameters (message.unrecognized_parameters) were already
        # answered by the connection (RSerPoolProtocol), as for pool elements and users:
        # one ASAP_ERROR per message, so the registrar sends none of its own.
        if isinstance(message, asap.Registration):
            self._register(state, message, now)
        elif isinstance(message, asap.Deregistration):
            self._deregister(state, message)
        elif isinstance(message, asap.HandleResolution):
            self._resolve(state, message)
        elif isinstance(message, asap.EndpointKeepAliveAck):
            self._keep_alive_acknowledged(state, message)
        elif isinstance(message, asap.EndpointUnreachable):
            self._unreachable(state, message, now)
        elif isinstance(message, asap.ErrorMessage):
            self.counters["asap_errors_received"] += 1
            log.warn(
                "ASAP_ERROR from {peer}: causes {causes}",
                peer=state.describe(),
                causes=[cause.code for cause in message.error.causes],
            )
        else:
            # A valid ASAP message that an ENRP server never receives.
            self.counters["unexpected_messages"] += 1
            log.warn(
                "Unexpected {message} from {peer}: answered with ASAP_ERROR",
                message=type(message).__name__,
                peer=state.describe(),
            )
            self._send(
                number,
                asap.ErrorMessage(
                    OperationError.single(CauseCode.UNRECOGNIZED_MESSAGE, message.encode()[:1024])
                ),
            )
        return self._take()

    def admit_request(self, number: int, now: float) -> float:
        """Count the next request of connection ``number``, arriving at ``now``, and say
        how many seconds it must wait before it is handled (``0.0``: at once).

        It counts against the connection's rate and its identity's over all its
        connections (or, for an unauthenticated peer, the rate all of those share). While
        a request waits the adapter does not read from its connection, so a flooding
        client is served at its rate, its requests are neither decrypted further nor
        decoded before their turn, and none is dropped (RFC 5355 2.1, 2.2, 2.13). Ask once
        per request. Requests that wait are counted in ``requests_delayed``; the first one
        of a connection is logged and counted in ``rate_limited_connections``.
        """
        state = self._connections.get(number)
        if state is None:
            return 0.0
        wait = self._request_limiter.admit(number, state.identity, now)
        if wait > 0:
            self.counters["requests_delayed"] += 1
            if number not in self._throttled:
                self._throttled.add(number)
                self.counters["rate_limited_connections"] += 1
                log.warn(
                    "Rate limit ({limit} rate): pausing reading from {peer}; its requests "
                    "are served at that rate",
                    limit=self._request_limiter.limited_by,
                    peer=state.describe(),
                    identity=state.identity,
                    cause="rate limit",
                )
        return wait

    # ------------------------------------------------------------------ registration

    def _refuse_registration(
        self,
        state: ConnectionState,
        message: asap.Registration,
        cause: int,
        reason: str,
        information: ErrorInformation = b"",
    ) -> None:
        self.counters[f"registrations_refused_{CauseCode(cause).name.lower()}"] += 1
        log.warn(
            "Registration of PE 0x{pe:08x} in pool {pool} from {peer} refused: {reason}",
            pe=message.pool_element.pe_identifier,
            pool=handleText(message.pool_handle),
            peer=state.describe(),
            identity=state.identity,
            cause=CauseCode(cause).name,
            reason=reason,
        )
        self._send(
            state.number,
            asap.RegistrationResponse(
                message.pool_handle,
                message.pool_element.pe_identifier,
                reject=True,
                error=OperationError.single(cause, information),
            ),
        )

    def _register(self, state: ConnectionState, message: asap.Registration, now: float) -> None:
        security = CauseCode.REJECTED_DUE_TO_SECURITY_CONSIDERATIONS
        element = message.pool_element
        handle = message.pool_handle
        key = (handle, element.pe_identifier)
        if self.config.secure and not state.security.authenticated:
            self._refuse_registration(state, message, security, "peer is not authenticated")
            return
        if not self.takeoverGranted(
            state, handle, element.pe_identifier
        ) and not self.allowRegistration(state, handle, element):
            self._refuse_registration(
                state, message, security, "identity is not authorized for this pool"
            )
            return
        existing = self.handlespace.get(handle, element.pe_identifier)
        owner = self._registration_owner(state, message, existing)
        if isinstance(owner, _Refused):
            return
        registered = self._registered.get(key)
        if registered is None:
            limit = self.policy.max_pool_elements(state.identity)
            if (
                limit is not None
                and state.identity is not None
                and self._identity_elements[state.identity] >= limit
            ):
                self._refuse_registration(
                    state,
                    message,
                    CauseCode.LACK_OF_RESOURCES,
                    f"identity already has {limit} pool elements",
                )
                return
        user_transport = self._bind_transport(state, element.user_transport)
        if user_transport is None:
            self._refuse_registration(
                state,
                message,
                security,
                "registered addresses are not the connection's address",
            )
            return
        life = element.registration_life
        if life < 0 or life > self.config.max_registration_life:
            life = self.config.max_registration_life
        # The element as sent with our identifier as home, and without an owner identity:
        # ownership comes from the authenticated connection, never from the message.
        stored = PoolElementParameter(
            element.pe_identifier,
            self.config.server_identifier,
            life,
            user_transport,
            element.policy,
            self._asap_transport(state, element),
        )
        before = None if existing is None else existing.element
        try:
            self.handlespace.register(
                handle, stored, now=now, identity=state.identity, owner_identity=owner
            )
        except HandlespaceError as e:
            information: ErrorInformation = b""
            if e.pool_policy is not None:
                information = e.pool_policy
            elif e.pool_transport is not None:
                information = e.pool_transport
            self._refuse_registration(state, message, e.cause, e.reason, information)
            return
        # Unchanged: the same content (the handlespace kept the stored object) from the
        # same identity over the same connection.
        unchanged = (
            registered is not None
            and registered.connection == state.number
            and registered.identity == state.identity
            and existing is not None
            and existing.element is before
        )
        if not unchanged:
            self._registered_again(state, key, registered)
        self._schedule_keep_alive(key, now)
        self.counters["registrations"] += 1
        log.emit(
            LogLevel.debug if unchanged else LogLevel.info,
            "Re-registered PE 0x{pe:08x} in pool {pool} for {peer} unchanged"
            if unchanged
            else "Registered PE 0x{pe:08x} in pool {pool} for {peer} (life {life} s)",
            pe=element.pe_identifier,
            pool=handleText(handle),
            peer=state.describe(),
            identity=state.identity,
            life=life,
        )
        warning = None
        if life != element.registration_life:
            # RFC 5354 3.12.4: the offending TLV goes with the cause; here the PE parameter
            # as granted, so that the PE re-registers before the life it really has ends.
            granted = replace(element, registration_life=life, owner_identity=None)
            warning = OperationError.single(CauseCode.INVALID_VALUES, granted.encode())
        self._send(
            state.number,
            asap.RegistrationResponse(handle, element.pe_identifier, error=warning),
        )

    def _registered_again(
        self, state: ConnectionState, key: _PoolElementKey, registered: _Registered | None
    ) -> None:
        """Record that the PE ``key`` is now registered over ``state`` (``registered``: how
        it was registered here before, if it was)."""
        if registered is not None and registered.connection != state.number:
            previous = self._connections.get(registered.connection)
            if previous is not None:
                previous.pool_elements.discard(key)
        if registered is not None and registered.identity != state.identity:
            # The PE now registers under another name (its own again after a takeover).
            self._uncount_identity(registered.identity)
            registered = None
        if registered is None and state.identity is not None:
            self._identity_elements[state.identity] += 1
        self._registered[key] = _Registered(state.number, state.identity)
        state.pool_elements.add(key)

    def _registration_owner(
        self,
        state: ConnectionState,
        message: asap.Registration,
        existing: PoolElementEntry | None,
    ) -> str | _Refused | None:
        """RFC 5355 2.3: the owner identity a registration gives the PE, or ``_REFUSED``.

        A PE identifier belongs pool-wide to the identity that first registered it (its
        home server told its peers in ENRP). Another identity is refused at every server;
        the same identity may move its registration here (its home failed, or it hunted
        for another server). Over our own connection to a PE we took over (RFC 5353 3.5.2)
        the connection's identity is ours, not the PE's, so the PE keeps its owner.
        """
        handle = message.pool_handle
        pe = message.pool_element.pe_identifier
        if existing is None:
            return state.identity
        if self.takeoverGranted(state, handle, pe):
            return existing.owner_identity
        owner = existing.owner_identity
        if owner is None and existing.identity is not None:
            owner = existing.identity  # registered here before owners were recorded
        security = CauseCode.REJECTED_DUE_TO_SECURITY_CONSIDERATIONS
        if owner is not None and owner != state.identity:
            self.counters["registrations_refused_not_owner"] += 1
            log.warn(
                "PE 0x{pe:08x} in pool {pool} is owned by {owner!r}: registration by"
                " {claimant!r} from {peer} refused",
                pe=pe,
                pool=handleText(handle),
                owner=owner,
                claimant=state.identity,
                peer=state.describe(),
                cause=security.name,
            )
            self._refuse_registration(
                state, message, security, f"the PE identifier belongs to {owner!r}"
            )
            return _REFUSED
        learnt = (handle, pe) not in self._registered
        if owner is None and learnt and self.config.secure:
            # A peer that does not speak the owner parameter (another implementation, or
            # an older one) left us no way to tell the owner from a hijacker: refuse.
            self._refuse_registration(
                state,
                message,
                security,
                "the PE was learnt from a peer that did not name its owner",
            )
            return _REFUSED
        return state.identity

    def takeoverGranted(self, connection: ConnectionState, pool_handle: bytes, pe: int) -> bool:
        """Whether ``connection`` is our takeover connection to this PE (default: never)."""
        return False

    def _uncount_identity(self, identity: str | None) -> None:
        if identity is None:
            return
        self._identity_elements[identity] -= 1
        if self._identity_elements[identity] <= 0:
            del self._identity_elements[identity]

    def _bind_transport(self, state: ConnectionState, transport: Transport) -> Transport | None:
        """The user transport with wildcards replaced by the peer address, or None if foreign."""
        peer = state.peer_address
        if peer is None or not self.config.check_addresses:
            return transport
        if isinstance(transport, TcpTransport):  # the common case, without the copies below
            address = transport.address
            if address == peer:
                return transport
            if address.is_unspecified:
                return TcpTransport(transport.port, peer, transport.transport_use)
            return None
        addresses = transport.addresses
        if not addresses:
            return transport  # opaque transport: nothing to check

        def bound(address: Address) -> Address | None:
            if address.is_unspecified:
                return peer
            return address if address == peer else None

        replaced = [bound(a) for a in addresses]
        if any(a is None for a in replaced):
            return None
        fixed = tuple(a for a in replaced if a is not None)
        if isinstance(transport, SctpTransport):
            return replace(transport, addresses=tuple(dict.fromkeys(fixed)))
        if isinstance(transport, TcpTransport | UdpTransport | UdpLiteTransport | DccpTransport):
            return replace(transport, address=fixed[0])
        return transport

    def _asap_transport(
        self, state: ConnectionState, element: PoolElementParameter
    ) -> SctpTransport | TcpTransport | None:
        """RFC 5352 3.1 rule 4: where this PE's ASAP endpoint is reached.

        Over TCP the source port of the registration is ephemeral, so a PE that listens for
        ASAP (its user transport, data and control multiplexed as RFC 5355 2.16 asks) names
        that port in its ASAP transport; it is kept when its address is the connection's
        own (or the wildcard). Otherwise the address the registration came from is recorded.
        """
        if state.peer_address is None:
            return element.asap_transport
        offered = element.asap_transport
        if isinstance(offered, TcpTransport):
            if offered.address == state.peer_address:
                return offered
            if offered.address.is_unspecified:
                return TcpTransport(offered.port, state.peer_address, offered.transport_use)
        return TcpTransport(state.peer_port, state.peer_address)

    # ------------------------------------------------------------------ de-registration

    def _deregister(self, state: ConnectionState, message: asap.Deregistration) -> None:
        handle, pe = message.pool_handle, message.pe_identifier
        error: OperationError | None = None
        if self.config.secure and not state.security.authenticated:
            error = OperationError.single(CauseCode.REJECTED_DUE_TO_SECURITY_CONSIDERATIONS)
            reason = "peer is not authenticated"
        else:
            entry = self.handlespace.get(handle, pe)
            registered = self._registered.get((handle, pe))
            if entry is not None and entry.home_server_identifier != self.config.server_identifier:
                # Only the home announces a removal (DEL_PE); removing it here alone would
                # leave the pool inconsistent and the identifier free for another identity.
                error = OperationError.single(CauseCode.REJECTED_DUE_TO_SECURITY_CONSIDERATIONS)
                reason = (
                    f"its home is ENRP server 0x{entry.home_server_identifier:08x}, not this one"
                )
            elif entry is not None and entry.identity != state.identity:
                error = OperationError.single(CauseCode.REJECTED_DUE_TO_SECURITY_CONSIDERATIONS)
                reason = "the PE was registered by another identity"
            elif (
                entry is not None
                and state.identity is None
                and (registered is None or registered.connection != state.number)
            ):
                # Without identities (insecure server), only the PE's own association counts.
                error = OperationError.single(CauseCode.REJECTED_DUE_TO_SECURITY_CONSIDERATIONS)
                reason = "the PE was registered over another connection"
            else:
                reason = ""
                self.handlespace.deregister(handle, pe, identity=state.identity)
                self.counters["deregistrations"] += 1
                log.info(
                    "Deregistered PE 0x{pe:08x} of pool {pool} for {peer}",
                    pe=pe,
                    pool=handleText(handle),
                    peer=state.describe(),
                )
        if error is not None:
            self.counters["deregistrations_refused"] += 1
            log.warn(
                "Deregistration of PE 0x{pe:08x} in pool {pool} from {peer} refused: {reason}",
                pe=pe,
                pool=handleText(handle),
                peer=state.describe(),
                identity=state.identity,
                reason=reason,
            )
        self._send(state.number, asap.DeregistrationResponse(handle, pe, error))

    def _forget(self, key: _PoolElementKey) -> None:
        registered = self._registered.pop(key, None)
        self._keep_alive_due.cancel(key)
        self._keep_alive_limiter.forget(key)
        if registered is None:
            return
        state = self._connections.get(registered.connection)
        if state is not None:
            state.pool_elements.discard(key)
        self._uncount_identity(registered.identity)

    # ------------------------------------------------------------------ handle resolution

    def _resolve(self, state: ConnectionState, message: asap.HandleResolution) -> None:
        handle = message.pool_handle
        if not self.allowResolution(state, handle):
            self.counters["resolutions_refused"] += 1
            log.warn(
                "Handle resolution of {pool} from {peer} refused",
                pool=handleText(handle),
                peer=state.describe(),
            )
            self._send(
                state.number,
                asap.HandleResolutionResponse(
                    handle,
                    error=OperationError.single(CauseCode.REJECTED_DUE_TO_SECURITY_CONSIDERATIONS),
                ),
            )
            return
        items = message.items if message.items else self.config.handle_resolution_items
        items = min(items, self.config.max_handle_resolution_items)
        pool = self.handlespace.find_pool(handle)
        if pool is None:
            self.counters["resolutions_unknown_pool"] += 1
            self._send(
                state.number,
                asap.HandleResolutionResponse(
                    handle, error=OperationError.single(CauseCode.UNKNOWN_POOL_HANDLE)
                ),
            )
            return
        selected = pool.select(items, self.handlespace.rng)
        accept = False
        if message.subscribe:
            if (
                handle in state.subscriptions
                or len(state.subscriptions) < self.config.max_subscriptions_per_connection
            ):
                state.subscriptions[handle] = items
                self._subscribers.setdefault(handle, set()).add(state.number)
                accept = True
            else:
                self.counters["subscriptions_refused"] += 1
        self.counters["resolutions"] += 1
        self._send(state.number, self._answer(pool, selected, accept))

    def _answer(
        self, pool: Pool, entries: Sequence[PoolElementEntry], accept_updates: bool
    ) -> asap.HandleResolutionResponse:
        """A positive answer with ``entries``: a join of their cached encodings."""
        head = self._answer_heads.get(pool.handle)
        if head is None or head.pool is not pool:
            head = self._answer_heads[pool.handle] = _AnswerHead.of(pool)
        return _CachedAnswer(
            pool.handle,
            tuple([entry.element for entry in entries]),
            head.policy,
            accept_updates,
            parameters=b"".join([head.encoded, *[entry.encoded() for entry in entries]]),
        )

    def _unsubscribe(self, pool_handle: bytes, number: int) -> None:
        subscribers = self._subscribers.get(pool_handle)
        if subscribers is not None:
            subscribers.discard(number)
            if not subscribers:
                del self._subscribers[pool_handle]

    def _handlespace_changed(self, event: HandlespaceEvent) -> None:
        if isinstance(event, PoolElementRemoved):
            registered_here = event.element.home_server_identifier == self.config.server_identifier
            if event.reason in _TOLD_REMOVALS and registered_here:
                self._expired(event)
            self._forget((event.pool_handle, event.element.pe_identifier))
        elif (
            isinstance(event, PoolElementUpdated)
            and event.element.home_server_identifier != self.config.server_identifier
        ):
            # Another ENRP server is its home now: it keeps the PE alive, not us.
            self._forget((event.pool_handle, event.element.pe_identifier))
        elif isinstance(event, PoolRemoved):
            self._answer_heads.pop(event.pool_handle, None)
        if event.pool_handle in self._subscribers and isinstance(
            event, PoolElementAdded | PoolElementUpdated | PoolElementRemoved | PoolRemoved
        ):
            # Coalesced: one update per pool and subscriber however many PEs changed.
            self._changed_pools.add(event.pool_handle)

    def _send_updates(self, pool_handle: bytes, numbers: Iterable[int]) -> None:
        """S-flag dynamic updates: the pool's current PEs, or Unknown Pool Handle at its end."""
        pool = self.handlespace.find_pool(pool_handle)
        for number in numbers:
            state = self._connections.get(number)
            if state is None:
                continue
            if pool is None:
                self._send(
                    number,
                    asap.HandleResolutionResponse(
                        pool_handle, error=OperationError.single(CauseCode.UNKNOWN_POOL_HANDLE)
                    ),
                )
                state.subscriptions.pop(pool_handle, None)
                self._unsubscribe(pool_handle, number)
                continue
            items = state.subscriptions.get(pool_handle, self.config.handle_resolution_items)
            entries = [entry for _, entry in zip(range(items), pool, strict=False)]
            self._send(number, self._answer(pool, entries, True))
            self.counters["dynamic_updates"] += 1

    def _expired(self, event: PoolElementRemoved) -> None:
        """RFC 5352 2.2.4 and 3.2: tell the PE it was removed (its registration life ran
        out, or a keep-alive went unanswered), so that it registers again at once if it is
        alive after all."""
        registered = self._registered.get((event.pool_handle, event.element.pe_identifier))
        if registered is not None and registered.connection in self._connections:
            self._send(
                registered.connection,
                asap.DeregistrationResponse(event.pool_handle, event.element.pe_identifier),
            )

    # ------------------------------------------------------------------ keep-alive

    def _schedule_keep_alive(self, key: _PoolElementKey, now: float) -> None:
        # RFC 5352 3.5: spread keep-alives by +/- 50 % so they do not come in bursts.
        interval = self.config.keep_alive_interval * self.rng.uniform(0.5, 1.5)
        self._keep_alive_due.schedule(key, now + interval)

    def _send_keep_alive(self, key: _PoolElementKey, now: float) -> bool:
        registered = self._registered.get(key)
        if registered is None or registered.connection not in self._connections:
            return False
        if not self._keep_alive_limiter.allow(key, now):
            self.counters["keep_alives_rate_limited"] += 1
            return False
        self._send(
            registered.connection,
            # The PE identifier (as RSPLIB sends it) says which PE of the pool is asked.
            asap.EndpointKeepAlive(
                self.config.server_identifier, key[0], home=False, pe_identifier=key[1]
            ),
        )
        self.handlespace.keep_alive_sent(
            key[0], key[1], now=now, timeout=self.config.keep_alive_timeout
        )
        self.counters["keep_alives_sent"] += 1
        return True

    def _keep_alive_acknowledged(
        self, state: ConnectionState, message: asap.EndpointKeepAliveAck
    ) -> None:
        key = (message.pool_handle, message.pe_identifier)
        registered = self._registered.get(key)
        if registered is None and self.handlespace.get(*key) is None:
            # A late answer from a PE we removed (its keep-alive timed out): tell it, as for
            # an expiry, so that it registers again instead of waiting for its T4.
            self.counters["keep_alive_acks_unmatched"] += 1
            self._send(state.number, asap.DeregistrationResponse(*key))
            return
        if registered is None or registered.connection != state.number:
            # Only the PE's own association may vouch for it.
            self.counters["keep_alive_acks_ignored"] += 1
            return
        entry = self.handlespace.get(*key)
        if entry is not None and entry.unreachable_reports:
            # A sign of life: the reports were wrong (handlespace clears the count).
            self.counters["unreachable_reports_cleared"] += 1
        self.handlespace.keep_alive_acknowledged(*key)
        self.counters["keep_alive_acks"] += 1

    # ------------------------------------------------------------------ unreachable reports

    def _unreachable(
        self, state: ConnectionState, message: asap.EndpointUnreachable, now: float
    ) -> None:
        """RFC 5352 3.5 and RFC 5355 2.13: count the report, probe the PE, never trust it.

        Only a peer that may resolve the pool may report. Each reporter counts once per PE
        within ``unreachable_report_window``; a sign of life from the PE clears the count.
        A counted report about a PE registered here sends it a point-to-point keep-alive
        (within its keep-alive rate); at MAX-BAD-PE-REPORT the probe is sent as soon as that
        rate allows. The PE goes only when a keep-alive stays unanswered: a report alone
        never removes it. Reports about PEs homed elsewhere are counted, and their home
        decides. RFC 5352 defines no answer to this message, so refusals are logged and
        counted, and nothing is sent back.
        """
        key = (message.pool_handle, message.pe_identifier)
        if not self.allowResolution(state, message.pool_handle):
            self._refuse_unreachable(state, key, "the reporter may not resolve this pool")
            return
        reporter = self._reporter(state)
        if not self._unreachable_limiter.allow(reporter, now):
            self.counters["unreachable_reports_rate_limited"] += 1
            return
        self.counters["unreachable_reports"] += 1
        result = self.handlespace.count_unreachable(
            *key,
            reporter,
            now=now,
            window=self.config.unreachable_report_window,
            max_reporters=max(16, self.config.max_bad_pe_report),
        )
        if result is None:
            self.counters["unreachable_reports_unknown_pe"] += 1
            return
        if not result.counted:
            self.counters["unreachable_reports_repeated"] += 1
            return
        if key not in self._registered:
            self.counters["unreachable_reports_not_home"] += 1
            return
        reached = result.count >= self.config.max_bad_pe_report
        if reached:
            self.counters["unreachable_threshold_reached"] += 1
            log.info(
                "PE 0x{pe:08x} of pool {pool}: {count} unreachable reports (MAX-BAD-PE-REPORT"
                " {limit}), probing it; it stays if it answers",
                pe=key[1],
                pool=handleText(key[0]),
                count=result.count,
                limit=self.config.max_bad_pe_report,
            )
        self._probe(key, now, urgent=reached)

    def probe(self, pool_handle: bytes, pe_identifier: int, now: float) -> None:
        """Ask a PE registered here with a keep-alive over its own connection, within its
        keep-alive rate; unanswered, the keep-alive timeout removes it (RFC 5352 3.5). The
        peer side asks when another server says the PE's owner re-registered there."""
        self._probe((pool_handle, pe_identifier), now, urgent=True)

    def _probe(self, key: _PoolElementKey, now: float, *, urgent: bool) -> None:
        """Ask the PE with a keep-alive; unanswered, the keep-alive timeout removes it."""
        entry = self.handlespace.get(*key)
        if entry is None or entry.keep_alive_deadline is not None:
            return  # gone, or a keep-alive is already waiting for its answer
        if self._send_keep_alive(key, now):
            self.counters["unreachable_probes"] += 1
        elif urgent and key in self._registered:
            # RFC 5355 2.14: not faster than the PE's keep-alive rate, but soon.
            self.counters["unreachable_probes_deferred"] += 1
            self._keep_alive_due.schedule(key, now + 1.0 / self.config.keep_alive_rate.per_second)

    def _refuse_unreachable(
        self, state: ConnectionState, key: _PoolElementKey, reason: str
    ) -> None:
        self.counters["unreachable_reports_refused"] += 1
        state.unreachable_refused += 1
        if state.unreachable_refused == 1:
            log.warn(
                "ASAP_ENDPOINT_UNREACHABLE for PE 0x{pe:08x} of pool {pool} from {peer}"
                " refused: {reason} (further refusals on this connection are only counted)",
                pe=key[1],
                pool=handleText(key[0]),
                peer=state.describe(),
                identity=state.identity,
                cause=CauseCode.REJECTED_DUE_TO_SECURITY_CONSIDERATIONS.name,
                reason=reason,
            )

    @staticmethod
    def _reporter(state: ConnectionState) -> _Reporter:
        if state.identity is not None:
            return ("identity", state.identity)
        if state.peer_address is not None:
            return ("address", str(state.peer_address))
        return ("connection", str(state.number))

    # ------------------------------------------------------------------ timers

    def next_deadline(self) -> float | None:
        """When :meth:`handle_timer` next has work, or ``None``."""
        deadlines = [
            d
            for d in (self.handlespace.next_deadline(), self._keep_alive_due.next_deadline())
            if d is not None
        ]
        return min(deadlines) if deadlines else None

    def handle_timer(self, now: float) -> list[Action]:
        """Expire registrations and unanswered keep-alives; send the keep-alives that are due."""
        for event in self.handlespace.expire(now):
            if isinstance(event, PoolElementRemoved):
                self.counters[f"removed_{event.reason.name.lower()}"] += 1
                log.info(
                    "PE 0x{pe:08x} of pool {pool} removed: {reason}",
                    pe=event.element.pe_identifier,
                    pool=handleText(event.pool_handle),
                    reason=event.reason.value,
                )
        for key in list(self._keep_alive_due.pop_due(now)):
            if key in self._registered:
                self._send_keep_alive(key, now)
                self._schedule_keep_alive(key, now)
        return self._take()

    def close(self) -> None:
        """Stop observing the handlespace."""
        self._subscription.cancel()

    # ------------------------------------------------------------------ plumbing

    def _send(self, number: int, message: Message) -> None:
        self._outbox.append(Send(number, message))

    def _take(self) -> list[Action]:
        if self._changed_pools:
            changed, self._changed_pools = self._changed_pools, set()
            for pool_handle in sorted(changed):
                self._send_updates(pool_handle, sorted(self._subscribers.get(pool_handle, ())))
        actions, self._outbox = self._outbox, []
        return actions

    def take_actions(self) -> list[Action]:
        """Actions caused by handlespace changes made outside this registrar (ENRP peers)."""
        return self._take()
