"""The ASAP side of an ENRP server (RFC 5352 section 3), secured as RFC 5355 asks. Sans-IO.

The :class:`Registrar` knows connections by an opaque number. The Twisted adapter tells it
when a connection is ready (with its :class:`SecurityContext` and peer address), hands it
every decoded ASAP message, and runs :meth:`Registrar.handle_timer` at
:meth:`Registrar.next_deadline`. Every call returns the :class:`Send` and :class:`Close`
actions to carry out. No state changes before the peer is authenticated and authorized.

The registrar is a facade: it owns the connections, the dispatch, the request limits, the
timer and the decisions a subclass overrides, and hands each job to one part, all on one
:class:`~twisted_rserpool.enrp.registrarstate.RegistrarState`:
:mod:`~twisted_rserpool.enrp.registration` (registrations, de-registrations, the PEs
registered here), :mod:`~twisted_rserpool.enrp.resolution` (handle resolution answers,
subscriptions and their updates), :mod:`~twisted_rserpool.enrp.keepalive` (keep-alives
and probes) and :mod:`~twisted_rserpool.enrp.unreachable` (unreachable reports).
"""

from __future__ import annotations

import random
from collections import Counter
from ipaddress import ip_address

from twisted.logger import Logger

from twisted_rserpool.describe import handleText
from twisted_rserpool.enrp.keepalive import KeepAlives
from twisted_rserpool.enrp.registrarstate import (
    Action,
    Address,
    Close,
    ConnectionState,
    RegistrarConfig,
    RegistrarState,
    Send,
)
from twisted_rserpool.enrp.registration import Registrations
from twisted_rserpool.enrp.resolution import Resolutions, overall_policy
from twisted_rserpool.enrp.unreachable import UnreachableReports
from twisted_rserpool.handlespace import (
    Handlespace,
    HandlespaceEvent,
    PoolElementRemoved,
    PoolElementUpdated,
)
from twisted_rserpool.security.authorization import AuthorizationPolicy, Role
from twisted_rserpool.security.context import SecurityContext
from twisted_rserpool.security.ratelimit import RequestLimiter
from twisted_rserpool.wire import asap
from twisted_rserpool.wire.errors import CauseCode
from twisted_rserpool.wire.message import Message
from twisted_rserpool.wire.parameters import OperationError, PoolElementParameter

__all__ = [
    "Action",
    "Address",
    "Close",
    "ConnectionState",
    "Registrar",
    "RegistrarConfig",
    "Send",
    "overall_policy",
]

log = Logger()

#: Authorization decisions the registrar remembers at most (then it starts again).
_MAX_DECISIONS = 65536


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
        state = RegistrarState(config, handlespace, rng if rng is not None else random.Random())
        self._state = state
        self.config = config
        self.handlespace = handlespace
        self.policy = policy
        self.rng = state.rng
        self.counters: Counter[str] = state.counters
        self._connections = state.connections
        self._keep_alives = KeepAlives(state)
        self._registrations = Registrations(state, self, self._keep_alives)
        self._resolutions = Resolutions(state, self)
        self._unreachable = UnreachableReports(state, self, self._keep_alives)
        self._request_limiter: RequestLimiter[int] = RequestLimiter(
            config.request_rate, config.identity_rate, config.anonymous_rate
        )
        self._throttled: set[int] = set()
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

    def takeoverGranted(self, connection: ConnectionState, pool_handle: bytes, pe: int) -> bool:
        """Whether ``connection`` is our takeover connection to this PE (default: never)."""
        return False

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
        self._resolutions.connection_closed(state)
        self._request_limiter.forget(number)
        self._throttled.discard(number)
        self._registrations.connection_closed(state)
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
        if isinstance(message, asap.HandleResolution):  # the most common, first
            self._resolutions.resolve(state, message)
        elif isinstance(message, asap.Registration):
            self._registrations.register(state, message, now)
        elif isinstance(message, asap.Deregistration):
            self._registrations.deregister(state, message)
        elif isinstance(message, asap.EndpointKeepAliveAck):
            self._keep_alives.acknowledged(state, message)
        elif isinstance(message, asap.EndpointUnreachable):
            self._unreachable.received(state, message, now)
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
            self._state.send(
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

    def probe(self, pool_handle: bytes, pe_identifier: int, now: float) -> None:
        """Ask a PE registered here with a keep-alive over its own connection, within its
        keep-alive rate; unanswered, the keep-alive timeout removes it (RFC 5352 3.5). The
        peer side asks when another server says the PE's owner re-registered there."""
        self._keep_alives.probe((pool_handle, pe_identifier), now, urgent=True)

    def _handlespace_changed(self, event: HandlespaceEvent) -> None:
        if isinstance(event, PoolElementRemoved):
            self._registrations.removed(event)
        elif (
            isinstance(event, PoolElementUpdated)
            and event.element.home_server_identifier != self.config.server_identifier
        ):
            # Another ENRP server is its home now: it keeps the PE alive, not us.
            self._registrations.forget((event.pool_handle, event.element.pe_identifier))
        self._resolutions.handlespace_changed(event)

    # ------------------------------------------------------------------ timers

    def next_deadline(self) -> float | None:
        """When :meth:`handle_timer` next has work, or ``None``."""
        # Asked after every message: plain comparisons of two kept values.
        deadline = self.handlespace.next_deadline()
        other = self._keep_alives.next_deadline()
        if other is not None and (deadline is None or other < deadline):
            return other
        return deadline

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
        self._keep_alives.send_due(now)
        return self._take()

    def close(self) -> None:
        """Stop observing the handlespace."""
        self._subscription.cancel()

    # ------------------------------------------------------------------ plumbing

    def _take(self) -> list[Action]:
        resolutions = self._resolutions
        if resolutions.changed:  # send_updates, asked only when it has work
            resolutions.send_updates()
        state = self._state
        actions, state.outbox = state.outbox, []
        return actions

    def take_actions(self) -> list[Action]:
        """Actions caused by handlespace changes made outside this registrar (ENRP peers)."""
        return self._take()
