"""Registrations and de-registrations of PEs (RFC 5352 3.1, 3.2; RFC 5355 2.1-2.3). Sans-IO.

:class:`Registrations` admits or refuses each ASAP_REGISTRATION and
ASAP_DEREGISTRATION: the peer must be authenticated and authorized, a PE identifier
belongs to the identity that first registered it, registered addresses must be the
connection's own. It keeps which connection and identity each PE registered here came
over, tells a PE still connected here when the handlespace removed it, and removes the
PEs of a connection that closed.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import replace

from twisted.logger import Logger, LogLevel

from twisted_rserpool.describe import handleText
from twisted_rserpool.enrp.keepalive import KeepAlives
from twisted_rserpool.enrp.registrarstate import (
    Address,
    ConnectionState,
    PoolElementKey,
    Registered,
    RegistrarHooks,
    RegistrarState,
)
from twisted_rserpool.handlespace import (
    HandlespaceError,
    PoolElementEntry,
    PoolElementRemoved,
    RemovalReason,
)
from twisted_rserpool.wire import asap
from twisted_rserpool.wire.errors import CauseCode
from twisted_rserpool.wire.parameters import (
    DccpTransport,
    ErrorInformation,
    OperationError,
    PoolElementParameter,
    SctpTransport,
    TcpTransport,
    Transport,
    UdpLiteTransport,
    UdpTransport,
)

log = Logger()

_SECURITY = CauseCode.REJECTED_DUE_TO_SECURITY_CONSIDERATIONS

#: Removals a PE still connected here is told of with ASAP_DEREGISTRATION_RESPONSE.
_TOLD_REMOVALS = frozenset(
    {
        RemovalReason.REGISTRATION_EXPIRED,
        RemovalReason.KEEP_ALIVE_TIMEOUT,
        RemovalReason.UNREACHABLE,
    }
)


class _Refused:
    """The registration was refused (and answered): a marker distinct from ``None``."""


_REFUSED = _Refused()


class Registrations:
    """The PEs registered here: who registered them over which connection, and their end."""

    def __init__(
        self, state: RegistrarState, hooks: RegistrarHooks, keep_alives: KeepAlives
    ) -> None:
        self._state = state
        self._hooks = hooks
        self._keep_alives = keep_alives
        #: PEs registered here per authenticated identity (``max_pool_elements``).
        self._identity_elements: Counter[str] = Counter()

    # ------------------------------------------------------------------ registration

    def register(self, connection: ConnectionState, message: asap.Registration, now: float) -> None:
        """Admit or refuse an ASAP_REGISTRATION from ``connection``, and answer it."""
        state = self._state
        config = state.config
        hooks = self._hooks
        element = message.pool_element
        handle = message.pool_handle
        key = (handle, element.pe_identifier)
        if config.secure and not connection.security.authenticated:
            self._refuse(connection, message, _SECURITY, "peer is not authenticated")
            return
        if not hooks.takeoverGranted(
            connection, handle, element.pe_identifier
        ) and not hooks.allowRegistration(connection, handle, element):
            self._refuse(connection, message, _SECURITY, "identity is not authorized for this pool")
            return
        existing = state.handlespace.get(handle, element.pe_identifier)
        owner = self._owner(connection, message, existing)
        if isinstance(owner, _Refused):
            return
        registered = state.registered.get(key)
        if registered is None:
            limit = hooks.policy.max_pool_elements(connection.identity)
            if (
                limit is not None
                and connection.identity is not None
                and self._identity_elements[connection.identity] >= limit
            ):
                self._refuse(
                    connection,
                    message,
                    CauseCode.LACK_OF_RESOURCES,
                    f"identity already has {limit} pool elements",
                )
                return
        user_transport = self._bind_transport(connection, element.user_transport)
        if user_transport is None:
            self._refuse(
                connection,
                message,
                _SECURITY,
                "registered addresses are not the connection's address",
            )
            return
        life = element.registration_life
        if life < 0 or life > config.max_registration_life:
            life = config.max_registration_life
        # The element as sent with our identifier as home, and without an owner identity:
        # ownership comes from the authenticated connection, never from the message.
        stored = PoolElementParameter(
            element.pe_identifier,
            config.server_identifier,
            life,
            user_transport,
            element.policy,
            _asap_transport(connection, element),
        )
        before = None if existing is None else existing.element
        try:
            state.handlespace.register(
                handle, stored, now=now, identity=connection.identity, owner_identity=owner
            )
        except HandlespaceError as e:
            information: ErrorInformation = b""
            if e.pool_policy is not None:
                information = e.pool_policy
            elif e.pool_transport is not None:
                information = e.pool_transport
            self._refuse(connection, message, e.cause, e.reason, information)
            return
        # Unchanged: the same content (the handlespace kept the stored object) from the
        # same identity over the same connection.
        unchanged = (
            registered is not None
            and registered.connection == connection.number
            and registered.identity == connection.identity
            and existing is not None
            and existing.element is before
        )
        if not unchanged:
            self._registered_again(connection, key, registered)
        self._keep_alives.schedule(key, now)
        state.counters["registrations"] += 1
        log.emit(
            LogLevel.debug if unchanged else LogLevel.info,
            "Re-registered PE 0x{pe:08x} in pool {pool} for {peer} unchanged"
            if unchanged
            else "Registered PE 0x{pe:08x} in pool {pool} for {peer} (life {life} s)",
            pe=element.pe_identifier,
            pool=handleText(handle),
            peer=connection.describe(),
            identity=connection.identity,
            life=life,
        )
        warning = None
        if life != element.registration_life:
            # RFC 5354 3.12.4: the offending TLV goes with the cause; here the PE parameter
            # as granted, so that the PE re-registers before the life it really has ends.
            granted = replace(element, registration_life=life, owner_identity=None)
            warning = OperationError.single(CauseCode.INVALID_VALUES, granted.encode())
        state.send(
            connection.number,
            asap.RegistrationResponse(handle, element.pe_identifier, error=warning),
        )

    def _refuse(
        self,
        connection: ConnectionState,
        message: asap.Registration,
        cause: int,
        reason: str,
        information: ErrorInformation = b"",
    ) -> None:
        self._state.counters[f"registrations_refused_{CauseCode(cause).name.lower()}"] += 1
        log.warn(
            "Registration of PE 0x{pe:08x} in pool {pool} from {peer} refused: {reason}",
            pe=message.pool_element.pe_identifier,
            pool=handleText(message.pool_handle),
            peer=connection.describe(),
            identity=connection.identity,
            cause=CauseCode(cause).name,
            reason=reason,
        )
        self._state.send(
            connection.number,
            asap.RegistrationResponse(
                message.pool_handle,
                message.pool_element.pe_identifier,
                reject=True,
                error=OperationError.single(cause, information),
            ),
        )

    def _registered_again(
        self, connection: ConnectionState, key: PoolElementKey, registered: Registered | None
    ) -> None:
        """Record that the PE ``key`` is now registered over ``connection`` (``registered``:
        how it was registered here before, if it was)."""
        state = self._state
        if registered is not None and registered.connection != connection.number:
            previous = state.connections.get(registered.connection)
            if previous is not None:
                previous.pool_elements.discard(key)
        if registered is not None and registered.identity != connection.identity:
            # The PE now registers under another name (its own again after a takeover).
            self._uncount_identity(registered.identity)
            registered = None
        if registered is None and connection.identity is not None:
            self._identity_elements[connection.identity] += 1
        state.registered[key] = Registered(connection.number, connection.identity)
        connection.pool_elements.add(key)

    def _owner(
        self,
        connection: ConnectionState,
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
            return connection.identity
        if self._hooks.takeoverGranted(connection, handle, pe):
            return existing.owner_identity
        owner = existing.owner_identity
        if owner is None and existing.identity is not None:
            owner = existing.identity  # registered here before owners were recorded
        if owner is not None and owner != connection.identity:
            self._state.counters["registrations_refused_not_owner"] += 1
            log.warn(
                "PE 0x{pe:08x} in pool {pool} is owned by {owner!r}: registration by"
                " {claimant!r} from {peer} refused",
                pe=pe,
                pool=handleText(handle),
                owner=owner,
                claimant=connection.identity,
                peer=connection.describe(),
                cause=_SECURITY.name,
            )
            self._refuse(connection, message, _SECURITY, f"the PE identifier belongs to {owner!r}")
            return _REFUSED
        learnt = (handle, pe) not in self._state.registered
        if owner is None and learnt and self._state.config.secure:
            # A peer that does not speak the owner parameter (another implementation, or
            # an older one) left us no way to tell the owner from a hijacker: refuse.
            self._refuse(
                connection,
                message,
                _SECURITY,
                "the PE was learnt from a peer that did not name its owner",
            )
            return _REFUSED
        return connection.identity

    def _uncount_identity(self, identity: str | None) -> None:
        if identity is None:
            return
        self._identity_elements[identity] -= 1
        if self._identity_elements[identity] <= 0:
            del self._identity_elements[identity]

    def _bind_transport(
        self, connection: ConnectionState, transport: Transport
    ) -> Transport | None:
        """The user transport with wildcards replaced by the peer address, or None if foreign."""
        peer = connection.peer_address
        if peer is None or not self._state.config.check_addresses:
            return transport
        return _bound_transport(peer, transport)

    # ------------------------------------------------------------------ de-registration

    def deregister(self, connection: ConnectionState, message: asap.Deregistration) -> None:
        """Remove the PE if ``connection`` may, and answer the ASAP_DEREGISTRATION."""
        state = self._state
        handle, pe = message.pool_handle, message.pe_identifier
        error: OperationError | None = None
        if state.config.secure and not connection.security.authenticated:
            error = OperationError.single(_SECURITY)
            reason = "peer is not authenticated"
        else:
            entry = state.handlespace.get(handle, pe)
            registered = state.registered.get((handle, pe))
            home = state.config.server_identifier
            if entry is not None and entry.home_server_identifier != home:
                # Only the home announces a removal (DEL_PE); removing it here alone would
                # leave the pool inconsistent and the identifier free for another identity.
                error = OperationError.single(_SECURITY)
                reason = (
                    f"its home is ENRP server 0x{entry.home_server_identifier:08x}, not this one"
                )
            elif entry is not None and entry.identity != connection.identity:
                error = OperationError.single(_SECURITY)
                reason = "the PE was registered by another identity"
            elif (
                entry is not None
                and connection.identity is None
                and (registered is None or registered.connection != connection.number)
            ):
                # Without identities (insecure server), only the PE's own association counts.
                error = OperationError.single(_SECURITY)
                reason = "the PE was registered over another connection"
            else:
                reason = ""
                state.handlespace.deregister(handle, pe, identity=connection.identity)
                state.counters["deregistrations"] += 1
                log.info(
                    "Deregistered PE 0x{pe:08x} of pool {pool} for {peer}",
                    pe=pe,
                    pool=handleText(handle),
                    peer=connection.describe(),
                )
        if error is not None:
            state.counters["deregistrations_refused"] += 1
            log.warn(
                "Deregistration of PE 0x{pe:08x} in pool {pool} from {peer} refused: {reason}",
                pe=pe,
                pool=handleText(handle),
                peer=connection.describe(),
                identity=connection.identity,
                reason=reason,
            )
        state.send(connection.number, asap.DeregistrationResponse(handle, pe, error))

    # ------------------------------------------------------------------ ends

    def removed(self, event: PoolElementRemoved) -> None:
        """The handlespace removed a PE: RFC 5352 2.2.4 and 3.2, tell it if it is registered
        here and still connected (its registration life ran out, or a keep-alive went
        unanswered), so that it registers again at once if it is alive after all; then
        forget it."""
        state = self._state
        key = (event.pool_handle, event.element.pe_identifier)
        home = event.element.home_server_identifier == state.config.server_identifier
        if event.reason in _TOLD_REMOVALS and home:
            registered = state.registered.get(key)
            if registered is not None and registered.connection in state.connections:
                state.send(registered.connection, asap.DeregistrationResponse(*key))
        self.forget(key)

    def forget(self, key: PoolElementKey) -> None:
        """The PE ``key`` is no longer registered here (removed, or homed elsewhere now)."""
        state = self._state
        registered = state.registered.pop(key, None)
        self._keep_alives.forget(key)
        if registered is None:
            return
        connection = state.connections.get(registered.connection)
        if connection is not None:
            connection.pool_elements.discard(key)
        self._uncount_identity(registered.identity)

    def connection_closed(self, connection: ConnectionState) -> None:
        """Remove the PEs registered over a connection that closed: they are unreachable."""
        state = self._state
        for key in sorted(connection.pool_elements):
            registered = state.registered.get(key)
            if registered is not None and registered.connection == connection.number:
                log.info(
                    "Removing PE 0x{pe:08x} of pool {pool}: its ASAP connection {peer} closed",
                    pe=key[1],
                    pool=handleText(key[0]),
                    peer=connection.describe(),
                )
                state.counters["removed_connection_lost"] += 1
                state.handlespace.deregister(key[0], key[1], reason=RemovalReason.UNREACHABLE)


def _bound_transport(peer: Address, transport: Transport) -> Transport | None:
    """``transport`` with wildcards replaced by ``peer``; None if it names another address."""
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
    connection: ConnectionState, element: PoolElementParameter
) -> SctpTransport | TcpTransport | None:
    """RFC 5352 3.1 rule 4: where this PE's ASAP endpoint is reached.

    Over TCP the source port of the registration is ephemeral, so a PE that listens for
    ASAP (its user transport, data and control multiplexed as RFC 5355 2.16 asks) names
    that port in its ASAP transport; it is kept when its address is the connection's
    own (or the wildcard). Otherwise the address the registration came from is recorded.
    """
    if connection.peer_address is None:
        return element.asap_transport
    offered = element.asap_transport
    if isinstance(offered, TcpTransport):
        if offered.address == connection.peer_address:
            return offered
        if offered.address.is_unspecified:
            return TcpTransport(offered.port, connection.peer_address, offered.transport_use)
    return TcpTransport(connection.peer_port, connection.peer_address)
