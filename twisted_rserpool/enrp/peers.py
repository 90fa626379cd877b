"""The ENRP side of an ENRP server (RFC 5353), secured as RFC 5355 asks. Sans-IO.

:class:`PeerCore` knows peer connections by an opaque number, like the registrar knows ASAP
connections. The Twisted adapter tells it when a connection is ready (with its
:class:`SecurityContext` and whether we opened it), hands it every decoded ENRP message,
and runs :meth:`PeerCore.handle_timer` at :meth:`PeerCore.next_deadline`. Every call
returns the actions to carry out: :class:`SendEnrp`, :class:`CloseLink`,
:class:`HomeKeepAlive` (reach a PE taken over, RFC 5353 3.5.2) and :class:`PeerHint` (a
server a peer told us about; connecting to it still needs authentication).

What it does: ENRP_PRESENCE every PEER-HEARTBEAT-CYCLE with our PE checksum; the peer list
with MAX-TIME-LAST-HEARD and a reply-required probe answered within MAX-TIME-NO-RESPONSE;
mentor discovery, ENRP_LIST_REQUEST and the paged handlespace download at start; an
ENRP_HANDLE_UPDATE for every change of a PE we own; peers' updates applied within the
insider limits of RFC 5355 2.17; takeover arbitration with acknowledgements from every
other live peer, the lower server identifier winning a conflict (RSPLIB), an expiry, then
ENRP_TAKEOVER_SERVER and rate-limited keep-alives with the H flag; checksum audits that
re-synchronise a peer's PEs (mark and sweep, RFC 5353 3.6.3); ENRP_ERROR for what a peer
may not send.
"""

from __future__ import annotations

import enum
from collections import Counter, deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, TypeAlias

from twisted.logger import Logger

from twisted_rserpool.handlespace import (
    Handlespace,
    HandlespaceError,
    HandlespaceEvent,
    PoolElementAdded,
    PoolElementRemoved,
    PoolElementUpdated,
    RemovalReason,
    UpdateReason,
)
from twisted_rserpool.security.authorization import AuthorizationPolicy, Role
from twisted_rserpool.security.context import SecurityContext
from twisted_rserpool.security.ratelimit import Rate, TokenBucket
from twisted_rserpool.wire import enrp
from twisted_rserpool.wire.errors import CauseCode
from twisted_rserpool.wire.parameters import (
    OperationError,
    PoolElementParameter,
    SctpTransport,
    ServerInformation,
    TcpTransport,
)

log = Logger()

_Key: TypeAlias = tuple[bytes, int]


# ---------------------------------------------------------------------- actions


@dataclass(frozen=True, slots=True)
class SendEnrp:
    """Send ``message`` on peer connection ``connection``."""

    connection: int
    message: enrp.EnrpMessage


@dataclass(frozen=True, slots=True)
class CloseLink:
    """Close peer connection ``connection``; ``reason`` is for the log."""

    connection: int
    reason: str


@dataclass(frozen=True, slots=True)
class HomeKeepAlive:
    """Send ASAP_ENDPOINT_KEEP_ALIVE with the H flag to a PE we took over (RFC 5353 3.5.2).

    ``transport`` is the PE's ASAP transport (where it listens with the TCP mapping);
    ``server_identifier`` is ours, the PE's new home.
    """

    pool_handle: bytes
    pe_identifier: int
    transport: SctpTransport | TcpTransport | None
    server_identifier: int


@dataclass(frozen=True, slots=True)
class PeerHint:
    """A peer named a server we do not know; connecting to it still needs authentication."""

    server_information: ServerInformation


PeerAction: TypeAlias = SendEnrp | CloseLink | HomeKeepAlive | PeerHint


# ---------------------------------------------------------------------- configuration


@dataclass(frozen=True, slots=True)
class PeerConfig:
    """Timers and limits of the ENRP side; defaults follow RSPLIB (spec/README.md).

    RFC 5353 section 4.2 has PEER-HEARTBEAT-CYCLE 30 s, MAX-TIME-LAST-HEARD 61 s and
    MAX-TIME-NO-RESPONSE 5 s; RSPLIB uses about 2.4 s, 5 s and 5 s so that a takeover
    happens within seconds.
    """

    server_identifier: int
    #: Refuse peers that are not authenticated (RFC 5355 2.5, 2.15). Only ``--insecure``.
    secure: bool = True
    peer_heartbeat_cycle: float = 2.4
    max_time_last_heard: float = 5.0
    max_time_no_response: float = 5.0
    #: How long a takeover waits for every other peer's ENRP_INIT_TAKEOVER_ACK.
    takeover_expiry: float = 5.0
    #: How long to look for a mentor at start before serving alone.
    mentor_discovery: float = 5.0
    #: PEs per ENRP_HANDLE_TABLE_RESPONSE page (each PE is about 6 TLVs; 2048 TLVs a message).
    handle_table_page: int = 200
    #: ASAP_ENDPOINT_KEEP_ALIVEs with the H flag after a takeover (RFC 5355 2.14).
    home_keep_alive_rate: Rate = field(default_factory=lambda: Rate(100.0, 100.0))
    #: How long a PE taken over has to acknowledge the H keep-alive before it is removed.
    keep_alive_timeout: float = 5.0
    #: Our own server information (ENRP transport) for presences and list responses.
    server_information: ServerInformation | None = None


class PeerState(enum.Enum):
    """What we think of a peer (RFC 5353 3.4 and 3.5)."""

    #: Heard within MAX-TIME-LAST-HEARD (or not yet probed).
    ACTIVE = "active"
    #: A reply-required ENRP_PRESENCE is out; no answer within MAX-TIME-NO-RESPONSE means dead.
    PROBING = "probing"
    #: Another server is taking it over (we acknowledged); not monitored for a while.
    INACTIVE = "inactive"
    #: Dead, and we are arbitrating its takeover.
    TAKING_OVER = "taking over"


@dataclass(slots=True)
class _Link:
    """One ready peer connection."""

    number: int
    security: SecurityContext
    outgoing: bool
    authorized: bool
    peer: int | None = None

    @property
    def identity(self) -> str | None:
        return self.security.identity

    def describe(self) -> str:
        who = self.identity or "unauthenticated"
        server = f"server 0x{self.peer:08x}" if self.peer is not None else "unidentified server"
        return f"{server} ({who}, connection {self.number})"


@dataclass(slots=True)
class _Pending:
    """A handle table request we sent and wait for: the mentor download or a resync."""

    own_children_only: bool
    deadline: float
    #: Resync: PEs of the peer not yet confirmed by a response (RFC 5353 3.6.3 "marked").
    marked: set[_Key] = field(default_factory=set)
    pages: int = 0


@dataclass(slots=True)
class _Session:
    """A handle table download we serve (RFC 5353 3.2.3 step 2)."""

    keys: list[_Key]
    own_children_only: bool
    position: int
    expires: float


@dataclass(slots=True)
class Peer:
    """One entry of the peer list."""

    server_identifier: int
    identity: str | None
    last_heard: float
    state: PeerState = PeerState.ACTIVE
    links: list[int] = field(default_factory=list)
    server_information: ServerInformation | None = None
    #: The PE checksum of its last ENRP_PRESENCE.
    checksum: int | None = None
    probe_deadline: float | None = None
    inactive_until: float | None = None
    pending: _Pending | None = None
    resync_after: float = 0.0


@dataclass(slots=True)
class _Takeover:
    """Our arbitration to take over ``target`` (RFC 5353 3.5.1)."""

    target: int
    waiting: set[int]
    expires: float
    acknowledged: set[int] = field(default_factory=set)


class _SyncPhase(enum.Enum):
    SEARCHING = "searching for a mentor"
    LIST = "waiting for the mentor's server list"
    TABLE = "downloading the handlespace"
    DONE = "synchronised"


# ---------------------------------------------------------------------- the core


class PeerCore:
    """The ENRP peer protocol of one ENRP server over its handlespace.

    ``expect_mentor`` says whether peers were configured: then the server looks for a
    mentor for MENTOR-DISCOVERY seconds before it serves alone (RFC 5353 3.2.2.1).
    Subclass and override :meth:`allowPeer` to decide who may be an ENRP peer.
    """

    def __init__(
        self,
        config: PeerConfig,
        handlespace: Handlespace,
        policy: AuthorizationPolicy,
        *,
        expect_mentor: bool = False,
    ) -> None:
        self.config = config
        self.handlespace = handlespace
        self.policy = policy
        self.counters: Counter[str] = Counter()
        self.server_information = config.server_information
        self._links: dict[int, _Link] = {}
        self._peers: dict[int, Peer] = {}
        self._takeovers: dict[int, _Takeover] = {}
        self._sessions: dict[int, _Session] = {}
        self._outbox: list[PeerAction] = []
        self._home_keep_alives: deque[HomeKeepAlive] = deque()
        self._home_bucket: TokenBucket | None = None
        self._home_next: float | None = None
        self._next_heartbeat: float | None = None
        self._expect_mentor = expect_mentor
        self._phase = _SyncPhase.SEARCHING if expect_mentor else _SyncPhase.DONE
        self._mentor: int | None = None
        self._mentor_deadline: float | None = None
        self._mentor_retry: float | None = None
        self._started = False
        self._subscription = handlespace.subscribe(self._handlespace_changed)

    # ------------------------------------------------------------------ decisions

    def allowPeer(self, security: SecurityContext) -> bool:
        """Whether a connection with this security may speak ENRP with us.

        A secure server accepts only TLS peers whose authenticated identity has the
        ENRP-server role (RFC 5355 2.5, 2.15); an insecure one also accepts peers
        without an identity.
        """
        if security.identity is None:
            return not self.config.secure
        if self.config.secure and not security.encrypted:
            return False
        return self.policy.may(security.identity, Role.ENRP_SERVER)

    # ------------------------------------------------------------------ properties

    @property
    def server_identifier(self) -> int:
        """This server's identifier."""
        return self.config.server_identifier

    @property
    def synchronised(self) -> bool:
        """Whether the initial synchronisation finished (or there was no mentor to ask)."""
        return self._phase is _SyncPhase.DONE

    @property
    def peers(self) -> dict[int, Peer]:
        """The peer list by server identifier (read only)."""
        return self._peers

    def status(self) -> list[dict[str, Any]]:
        """The peer list for the admin interface."""
        ours = self.handlespace
        return [
            {
                "server": f"0x{peer.server_identifier:08x}",
                "identity": peer.identity,
                "state": peer.state.value,
                "connections": len(peer.links),
                "last_heard": peer.last_heard,
                "checksum": peer.checksum,
                "local_checksum": ours.pe_checksum(peer.server_identifier),
                "pool_elements": len(ours.elements_owned_by(peer.server_identifier)),
                "resynchronising": peer.pending is not None,
            }
            for peer in sorted(self._peers.values(), key=lambda p: p.server_identifier)
        ]

    # ------------------------------------------------------------------ life cycle

    def start(self, now: float) -> list[PeerAction]:
        """Begin heartbeats and, if peers are expected, the search for a mentor."""
        self._started = True
        self._next_heartbeat = now + self.config.peer_heartbeat_cycle
        if self._expect_mentor and self._phase is _SyncPhase.SEARCHING:
            self._mentor_deadline = now + self.config.mentor_discovery
        for link in self._links.values():
            self._hello(link)
        return self._take()

    def close(self) -> None:
        """Stop observing the handlespace."""
        self._subscription.cancel()

    # ------------------------------------------------------------------ connections

    def connection_ready(
        self, number: int, security: SecurityContext, *, outgoing: bool, now: float
    ) -> list[PeerAction]:
        """A peer connection finished its TLS handshake and TCP mapping INIT exchange."""
        authorized = self.allowPeer(security)
        link = _Link(number, security, outgoing, authorized)
        self._links[number] = link
        if not authorized:
            self.counters["peers_refused"] += 1
            log.warn(
                "ENRP peer {peer} refused: {reason}",
                peer=link.describe(),
                identity=security.identity,
                reason=self._refusal(security),
            )
            self._error(link, CauseCode.REJECTED_DUE_TO_SECURITY_CONSIDERATIONS)
            self._outbox.append(CloseLink(number, "not an authorized ENRP server"))
            return self._take()
        self.counters["peer_connections"] += 1
        if self._started:
            self._hello(link)
        return self._take()

    def _refusal(self, security: SecurityContext) -> str:
        if not security.encrypted:
            return "no TLS (RFC 5355 2.15)"
        if not security.authenticated:
            return "not authenticated"
        return f"identity {security.identity!r} lacks the enrp-server role"

    def connection_lost(self, number: int, now: float) -> list[PeerAction]:
        """A peer connection closed; the peer stays listed until its timers say otherwise."""
        link = self._links.pop(number, None)
        self._sessions.pop(number, None)
        if link is None or link.peer is None:
            return self._take()
        peer = self._peers.get(link.peer)
        if peer is not None and number in peer.links:
            peer.links.remove(number)
            if not peer.links:
                log.info(
                    "Lost the last connection to ENRP server 0x{server:08x}",
                    server=peer.server_identifier,
                )
                if peer.pending is not None and link.peer != self._mentor:
                    peer.pending = None
        if link.peer == self._mentor and self._phase in (_SyncPhase.LIST, _SyncPhase.TABLE):
            self._drop_mentor("its connection closed")
        return self._take()

    def _hello(self, link: _Link) -> None:
        """Introduce ourselves: a reply-required presence (RFC 5353 3.4.1)."""
        self._send(link.number, self._presence(0, reply_required=True))

    # ------------------------------------------------------------------ messages

    def message_received(
        self, number: int, message: enrp.EnrpMessage, now: float
    ) -> list[PeerAction]:
        """Handle one decoded ENRP message from connection ``number``."""
        link = self._links.get(number)
        if link is None:
            self.counters["dropped_not_ready"] += 1
            return []
        if not link.authorized:
            self.counters["refused_unauthorized"] += 1
            log.warn(
                "{message} from unauthorized {peer} refused",
                message=type(message).__name__,
                peer=link.describe(),
            )
            self._error(link, CauseCode.REJECTED_DUE_TO_SECURITY_CONSIDERATIONS)
            return self._take()
        peer = self._identify(link, message, now)
        if peer is None:
            return self._take()
        receiver = message.receiving_server_identifier
        if receiver not in (0, self.server_identifier):
            self.counters["misaddressed"] += 1
            log.info(
                "{message} from {peer} addressed to 0x{receiver:08x}: ignored",
                message=type(message).__name__,
                peer=link.describe(),
                receiver=receiver,
            )
            return self._take()
        peer.last_heard = now
        if peer.state is PeerState.PROBING:
            peer.state = PeerState.ACTIVE
            peer.probe_deadline = None
        if isinstance(message, enrp.Presence):
            self._presence_received(link, peer, message, now)
        elif isinstance(message, enrp.HandleUpdate):
            self._update_received(link, peer, message, now)
        elif isinstance(message, enrp.HandleTableRequest):
            self._table_requested(link, peer, message, now)
        elif isinstance(message, enrp.HandleTableResponse):
            self._table_received(link, peer, message, now)
        elif isinstance(message, enrp.ListRequest):
            self._list_requested(link, peer)
        elif isinstance(message, enrp.ListResponse):
            self._list_received(link, peer, message, now)
        elif isinstance(message, enrp.InitTakeover):
            self._init_takeover_received(link, peer, message, now)
        elif isinstance(message, enrp.InitTakeoverAck):
            self._takeover_ack_received(link, peer, message, now)
        elif isinstance(message, enrp.TakeoverServer):
            self._takeover_server_received(link, peer, message, now)
        elif isinstance(message, enrp.ErrorMessage):
            self.counters["errors_received"] += 1
            log.warn(
                "ENRP_ERROR from {peer}: causes {causes}",
                peer=link.describe(),
                causes=[cause.code for cause in message.error.causes],
            )
        return self._take()

    def _identify(self, link: _Link, message: enrp.EnrpMessage, now: float) -> Peer | None:
        """The peer behind ``link``; binds the link to the sender on its first message."""
        sender = message.sending_server_identifier
        if link.peer is not None:
            if sender == link.peer:
                return self._peers.get(sender) or self._add_peer(link, sender, now)
            self.counters["refused_spoofed_sender"] += 1
            log.warn(
                "{message} from {peer} claims to come from 0x{claimed:08x}: refused",
                message=type(message).__name__,
                peer=link.describe(),
                claimed=sender,
            )
            self._error(link, CauseCode.REJECTED_DUE_TO_SECURITY_CONSIDERATIONS)
            return None
        if sender in (0, self.server_identifier):
            self.counters["refused_bad_identifier"] += 1
            log.warn(
                "{peer} uses server identifier 0x{claimed:08x} (zero or ours): closing",
                peer=link.describe(),
                claimed=sender,
            )
            self._error(link, CauseCode.INVALID_VALUES)
            self._outbox.append(CloseLink(link.number, "bad server identifier"))
            return None
        existing = self._peers.get(sender)
        if existing is not None and existing.links and existing.identity != link.identity:
            # RFC 5355 2.5: a server identifier belongs to the identity that announced it.
            self.counters["refused_identity_mismatch"] += 1
            log.warn(
                "{peer} claims server 0x{claimed:08x}, already connected as {identity!r}: refused",
                peer=link.describe(),
                claimed=sender,
                identity=existing.identity,
            )
            self._error(link, CauseCode.REJECTED_DUE_TO_SECURITY_CONSIDERATIONS)
            self._outbox.append(CloseLink(link.number, "server identifier of another identity"))
            return None
        link.peer = sender
        if existing is None:
            return self._add_peer(link, sender, now)
        existing.identity = link.identity
        existing.links.append(link.number)
        return existing

    def _add_peer(self, link: _Link, server: int, now: float) -> Peer:
        peer = Peer(server, link.identity, now, links=[link.number])
        self._peers[server] = peer
        self.counters["peers_discovered"] += 1
        log.info(
            "New ENRP peer 0x{server:08x} ({identity})",
            server=server,
            identity=link.identity or "unauthenticated",
        )
        if self._phase is _SyncPhase.SEARCHING and self._started:
            self._choose_mentor(peer, now)
        return peer

    # ------------------------------------------------------------------ presence and audit

    def _presence(self, receiver: int, *, reply_required: bool = False) -> enrp.Presence:
        return enrp.Presence(
            self.server_identifier,
            receiver,
            self.handlespace.pe_checksum(self.server_identifier),
            self.server_information,
            reply_required,
        )

    def _presence_received(
        self, link: _Link, peer: Peer, message: enrp.Presence, now: float
    ) -> None:
        if message.server_information is not None:
            peer.server_information = message.server_information
        if peer.state in (PeerState.INACTIVE, PeerState.TAKING_OVER):
            # RFC 5353 3.5.1: the target is alive after all; stop the takeover.
            log.info(
                "ENRP server 0x{server:08x} is alive: no takeover",
                server=peer.server_identifier,
            )
            self.counters["takeovers_cancelled_alive"] += int(
                peer.server_identifier in self._takeovers
            )
            self._takeovers.pop(peer.server_identifier, None)
            peer.state = PeerState.ACTIVE
            peer.inactive_until = None
        if message.reply_required:
            self._send(link.number, self._presence(peer.server_identifier))
        if message.checksum is not None:
            peer.checksum = message.checksum
            self._audit(peer, message.checksum, now)

    def _audit(self, peer: Peer, checksum: int, now: float) -> None:
        """RFC 5353 3.6.1: a checksum differing from ours for that peer means a resync."""
        if not self.synchronised or peer.pending is not None or now < peer.resync_after:
            return
        local = self.handlespace.pe_checksum(peer.server_identifier)
        if local == checksum:
            return
        self.counters["audit_mismatches"] += 1
        log.info(
            "Checksum of ENRP server 0x{server:08x} is 0x{theirs:04x}, ours for it 0x{ours:04x}:"
            " re-synchronising its PEs",
            server=peer.server_identifier,
            theirs=checksum,
            ours=local,
        )
        marked = {
            (entry.pool_handle, entry.pe_identifier)
            for entry in self.handlespace.elements_owned_by(peer.server_identifier)
        }
        if self._request_table(peer, own_children_only=True, now=now):
            assert peer.pending is not None
            peer.pending.marked = marked

    # ------------------------------------------------------------------ handle updates

    def _registered_here(self, pool_handle: bytes, pe_identifier: int) -> bool:
        """Whether this PE holds an authenticated registration at this server."""
        entry = self.handlespace.get(pool_handle, pe_identifier)
        return (
            entry is not None
            and entry.identity is not None
            and entry.home_server_identifier == self.server_identifier
        )

    def _update_received(
        self, link: _Link, peer: Peer, message: enrp.HandleUpdate, now: float
    ) -> None:
        handle, element = message.pool_handle, message.pool_element
        sender = peer.server_identifier
        if message.update_action is enrp.UpdateAction.ADD_PE:
            refusal = self._check_add(sender, handle, element, vouched=False)
            if refusal is not None:
                self._refuse_update(link, message, refusal)
                return
            try:
                self.handlespace.register(handle, element, now=now, identity=None)
            except HandlespaceError as e:
                self.counters["updates_failed"] += 1
                log.warn(
                    "ADD_PE of 0x{pe:08x} in {pool!r} from {peer} failed: {reason}",
                    pe=element.pe_identifier,
                    pool=handle,
                    peer=link.describe(),
                    reason=e.reason,
                )
                self._error(link, e.cause)
                return
            self.counters["updates_applied"] += 1
            return
        entry = self.handlespace.get(handle, element.pe_identifier)
        if entry is None:
            self.counters["updates_unknown_pe"] += 1
            return
        if entry.home_server_identifier != sender:
            self._refuse_update(
                link,
                message,
                f"the PE's home is 0x{entry.home_server_identifier:08x}, not the sender",
            )
            return
        self.handlespace.deregister(handle, element.pe_identifier, reason=RemovalReason.PEER_UPDATE)
        self.counters["updates_applied"] += 1

    def _check_add(
        self, sender: int, handle: bytes, element: PoolElementParameter, *, vouched: bool
    ) -> str | None:
        """Why a peer's PE may not enter the handlespace (RFC 5355 2.17), or ``None``."""
        home = element.home_server_identifier
        if home == self.server_identifier:
            return "it names us as home, but we did not register it"
        if not vouched and home != sender:
            return f"its home is 0x{home:08x}, not the sender"
        if self._registered_here(handle, element.pe_identifier):
            return "it contradicts the PE's authenticated registration at this server"
        return None

    def _refuse_update(self, link: _Link, message: enrp.HandleUpdate, reason: str) -> None:
        self.counters["updates_refused"] += 1
        log.warn(
            "{action} of PE 0x{pe:08x} in pool {pool!r} from {peer} refused: {reason}",
            action=message.update_action.name,
            pe=message.pool_element.pe_identifier,
            pool=message.pool_handle,
            peer=link.describe(),
            identity=link.identity,
            reason=reason,
        )
        self._error(
            link, CauseCode.REJECTED_DUE_TO_SECURITY_CONSIDERATIONS, message.encode()[:1024]
        )

    def _handlespace_changed(self, event: HandlespaceEvent) -> None:
        """RFC 5353 3.3: announce every change of a PE we own."""
        us = self.server_identifier
        if isinstance(event, PoolElementAdded):
            if event.element.home_server_identifier == us:
                self._announce(enrp.UpdateAction.ADD_PE, event.pool_handle, event.element)
        elif isinstance(event, PoolElementUpdated):
            if event.element.home_server_identifier == us and event.reason is not (
                UpdateReason.TAKEOVER
            ):
                self._announce(enrp.UpdateAction.ADD_PE, event.pool_handle, event.element)
        elif isinstance(event, PoolElementRemoved) and event.element.home_server_identifier == us:
            self._announce(enrp.UpdateAction.DEL_PE, event.pool_handle, event.element)

    def _announce(
        self, action: enrp.UpdateAction, pool_handle: bytes, element: PoolElementParameter
    ) -> None:
        message = enrp.HandleUpdate(self.server_identifier, 0, action, pool_handle, element)
        self.counters["updates_sent"] += self._broadcast(message)

    # ------------------------------------------------------------------ handle table

    def _request_table(self, peer: Peer, *, own_children_only: bool, now: float) -> bool:
        link = self._primary(peer)
        if link is None:
            return False
        peer.pending = _Pending(own_children_only, now + self.config.max_time_no_response)
        self._send(
            link,
            enrp.HandleTableRequest(
                self.server_identifier, peer.server_identifier, own_children_only
            ),
        )
        return True

    def _table_requested(
        self, link: _Link, peer: Peer, message: enrp.HandleTableRequest, now: float
    ) -> None:
        session = self._sessions.get(link.number)
        if session is not None and (
            session.own_children_only != message.own_children_only or session.expires < now
        ):
            session = None
        if session is None:
            if not message.own_children_only and not self.synchronised:
                # RFC 5353 3.2.3: a server still initialising rejects a full download.
                self.counters["table_requests_rejected"] += 1
                self._send(
                    link.number,
                    enrp.HandleTableResponse(
                        self.server_identifier, peer.server_identifier, reject=True
                    ),
                )
                return
            if message.own_children_only:
                keys = [
                    (entry.pool_handle, entry.pe_identifier)
                    for entry in self.handlespace.elements_owned_by(self.server_identifier)
                ]
            else:
                keys = [
                    (pool.handle, entry.pe_identifier)
                    for pool in self.handlespace.pools()
                    for entry in pool
                ]
            session = _Session(keys, message.own_children_only, 0, 0.0)
            self._sessions[link.number] = session
            self.counters["table_sessions"] += 1
        entries, session.position = self._page(session)
        more = session.position < len(session.keys)
        if more:
            session.expires = now + 2 * self.config.max_time_no_response
        else:
            del self._sessions[link.number]
        self.counters["table_pages_sent"] += 1
        self._send(
            link.number,
            enrp.HandleTableResponse(
                self.server_identifier, peer.server_identifier, entries, more_to_send=more
            ),
        )

    def _page(self, session: _Session) -> tuple[tuple[enrp.PoolEntry, ...], int]:
        """The next page: PEs as they are now (ones gone since the request are skipped)."""
        entries: list[enrp.PoolEntry] = []
        handle: bytes | None = None
        elements: list[PoolElementParameter] = []
        count = 0
        position = session.position
        keys = session.keys
        while position < len(keys) and count < self.config.handle_table_page:
            pool_handle, pe = keys[position]
            position += 1
            entry = self.handlespace.get(pool_handle, pe)
            if entry is None:
                continue
            if session.own_children_only and entry.home_server_identifier != self.server_identifier:
                continue
            if pool_handle != handle:
                if handle is not None and elements:
                    entries.append(enrp.PoolEntry(handle, tuple(elements)))
                handle, elements = pool_handle, []
            elements.append(entry.element)
            count += 1
        if handle is not None and elements:
            entries.append(enrp.PoolEntry(handle, tuple(elements)))
        return tuple(entries), position

    def _table_received(
        self, link: _Link, peer: Peer, message: enrp.HandleTableResponse, now: float
    ) -> None:
        pending = peer.pending
        if pending is None:
            self._unexpected(link, message)
            return
        initial = peer.server_identifier == self._mentor and self._phase is _SyncPhase.TABLE
        if message.reject:
            self.counters["table_requests_rejected_by_peer"] += 1
            peer.pending = None
            log.info(
                "ENRP server 0x{server:08x} rejected our handle table request",
                server=peer.server_identifier,
            )
            if initial:
                self._drop_mentor("it rejected the handle table request", retry=now)
            return
        sender = peer.server_identifier
        pending.pages += 1
        for entry in message.pool_entries:
            for element in entry.pool_elements:
                key = (entry.pool_handle, element.pe_identifier)
                refusal = self._check_add(
                    sender, entry.pool_handle, element, vouched=not pending.own_children_only
                )
                if refusal is not None:
                    self.counters["table_entries_refused"] += 1
                    log.warn(
                        "PE 0x{pe:08x} of pool {pool!r} in a handle table from {peer}"
                        " refused: {reason}",
                        pe=element.pe_identifier,
                        pool=entry.pool_handle,
                        peer=link.describe(),
                        reason=refusal,
                    )
                    continue
                pending.marked.discard(key)
                try:
                    self.handlespace.register(entry.pool_handle, element, now=now, identity=None)
                except HandlespaceError as e:
                    self.counters["table_entries_failed"] += 1
                    log.warn(
                        "PE 0x{pe:08x} of pool {pool!r} from {peer} not stored: {reason}",
                        pe=element.pe_identifier,
                        pool=entry.pool_handle,
                        peer=link.describe(),
                        reason=e.reason,
                    )
                    continue
                self.counters["table_entries_applied"] += 1
        if message.more_to_send:
            pending.deadline = now + self.config.max_time_no_response
            self._send(
                link.number,
                enrp.HandleTableRequest(self.server_identifier, sender, pending.own_children_only),
            )
            return
        peer.pending = None
        if pending.own_children_only:
            swept = 0
            for pool_handle, pe in sorted(pending.marked):
                stale = self.handlespace.get(pool_handle, pe)
                if stale is not None and stale.home_server_identifier == sender:
                    self.handlespace.deregister(pool_handle, pe, reason=RemovalReason.OWNER_REMOVED)
                    swept += 1
            self.counters["resyncs"] += 1
            self.counters["resync_swept"] += swept
            peer.resync_after = now + 2 * self.config.peer_heartbeat_cycle
            log.info(
                "Re-synchronised the PEs of ENRP server 0x{server:08x} ({pages} pages,"
                " {swept} stale removed)",
                server=sender,
                pages=pending.pages,
                swept=swept,
            )
        if initial:
            self._phase = _SyncPhase.DONE
            self._mentor_deadline = None
            self.counters["initial_syncs"] += 1
            log.info(
                "Synchronised with mentor 0x{server:08x}: {count} PEs known",
                server=sender,
                count=len(self.handlespace),
            )

    # ------------------------------------------------------------------ server list, mentor

    def _list_requested(self, link: _Link, peer: Peer) -> None:
        if not self.synchronised:
            self._send(
                link.number,
                enrp.ListResponse(self.server_identifier, peer.server_identifier, reject=True),
            )
            return
        servers = tuple(
            other.server_information
            for other in self._peers.values()
            if other.server_information is not None
            and other.state in (PeerState.ACTIVE, PeerState.PROBING)
            and other.server_identifier != peer.server_identifier
        )
        self._send(
            link.number, enrp.ListResponse(self.server_identifier, peer.server_identifier, servers)
        )

    def _list_received(
        self, link: _Link, peer: Peer, message: enrp.ListResponse, now: float
    ) -> None:
        if peer.server_identifier != self._mentor or self._phase is not _SyncPhase.LIST:
            self._unexpected(link, message)
            return
        peer.pending = None
        if message.reject:
            self._drop_mentor("it is not ready to give its server list", retry=now)
            return
        for information in message.servers:
            # Hints only: the adapter connects, and the peer must authenticate like any other.
            if (
                information.server_identifier not in self._peers
                and information.server_identifier != self.server_identifier
            ):
                self._outbox.append(PeerHint(information))
        self._phase = _SyncPhase.TABLE
        if not self._request_table(peer, own_children_only=False, now=now):
            self._drop_mentor("no connection", retry=now)

    def _choose_mentor(self, peer: Peer, now: float) -> None:
        link = self._primary(peer)
        if link is None:
            return
        self._mentor = peer.server_identifier
        self._mentor_retry = None
        self._phase = _SyncPhase.LIST
        peer.pending = _Pending(False, now + self.config.max_time_no_response)
        log.info("Mentor: ENRP server 0x{server:08x}", server=peer.server_identifier)
        self._send(link, enrp.ListRequest(self.server_identifier, peer.server_identifier))

    def _drop_mentor(self, reason: str, retry: float | None = None) -> None:
        log.info(
            "Giving up mentor 0x{server:08x}: {reason}", server=self._mentor or 0, reason=reason
        )
        if self._mentor is not None and self._mentor in self._peers:
            self._peers[self._mentor].pending = None
        self._mentor = None
        self._phase = _SyncPhase.SEARCHING
        if retry is not None:
            self._mentor_retry = retry + self.config.mentor_discovery / 2

    def _search_mentor(self, now: float) -> None:
        candidates = sorted(
            (p for p in self._peers.values() if p.links and p.state is PeerState.ACTIVE),
            key=lambda p: p.server_identifier,
        )
        if candidates:
            self._choose_mentor(candidates[0], now)

    # ------------------------------------------------------------------ takeover

    def _alive(self, peer: Peer, now: float) -> bool:
        """Whether we see ``peer`` alive: connected and heard within MAX-TIME-LAST-HEARD."""
        return (
            bool(peer.links)
            and peer.state in (PeerState.ACTIVE, PeerState.PROBING)
            and now - peer.last_heard <= self.config.max_time_last_heard
        )

    def _declare_dead(self, peer: Peer, now: float) -> None:
        """RFC 5353 3.4.3 then 3.5.1: start the takeover arbitration."""
        target = peer.server_identifier
        self.counters["peers_dead"] += 1
        waiting = {
            other.server_identifier
            for other in self._peers.values()
            if other.server_identifier != target
            and other.links
            and other.state in (PeerState.ACTIVE, PeerState.PROBING)
        }
        log.warn(
            "ENRP server 0x{server:08x} is dead: asking {count} peers to let us take it over",
            server=target,
            count=len(waiting),
        )
        peer.state = PeerState.TAKING_OVER
        peer.probe_deadline = None
        self._takeovers[target] = _Takeover(target, waiting, now + self.config.takeover_expiry)
        self.counters["takeovers_started"] += 1
        self._broadcast(enrp.InitTakeover(self.server_identifier, 0, target))
        self._maybe_complete(target, now)

    def _init_takeover_received(
        self, link: _Link, peer: Peer, message: enrp.InitTakeover, now: float
    ) -> None:
        target = message.target_server_identifier
        sender = peer.server_identifier
        if target == self.server_identifier:
            # A false failure detection: tell everyone we are here.
            self.counters["takeover_of_us_refused"] += 1
            log.warn(
                "ENRP server 0x{server:08x} wants to take us over: announcing presence",
                server=sender,
            )
            self._broadcast(self._presence(0))
            return
        ours = self._takeovers.get(target)
        if ours is not None:
            # RSPLIB: the lower server identifier wins a takeover conflict.
            if self.server_identifier < sender:
                self.counters["takeover_conflicts_won"] += 1
                log.info(
                    "Takeover conflict over 0x{target:08x} with 0x{server:08x}: we continue",
                    target=target,
                    server=sender,
                )
                return
            self.counters["takeover_conflicts_lost"] += 1
            del self._takeovers[target]
        else:
            target_peer = self._peers.get(target)
            if target_peer is not None and self._alive(target_peer, now):
                # RFC 5355 2.17: no takeover of a server we see alive.
                self.counters["takeovers_objected"] += 1
                log.warn(
                    "ENRP server 0x{server:08x} wants to take over 0x{target:08x}, which is"
                    " alive to us: no acknowledgement",
                    server=sender,
                    target=target,
                )
                return
        target_peer = self._peers.get(target)
        if target_peer is not None:
            target_peer.state = PeerState.INACTIVE
            target_peer.probe_deadline = None
            target_peer.inactive_until = (
                now + self.config.takeover_expiry + self.config.max_time_no_response
            )
        self.counters["takeover_acks_sent"] += 1
        self._send(link.number, enrp.InitTakeoverAck(self.server_identifier, sender, target))

    def _takeover_ack_received(
        self, link: _Link, peer: Peer, message: enrp.InitTakeoverAck, now: float
    ) -> None:
        takeover = self._takeovers.get(message.target_server_identifier)
        if takeover is None or peer.server_identifier not in takeover.waiting:
            self.counters["takeover_acks_ignored"] += 1
            return
        takeover.acknowledged.add(peer.server_identifier)
        self._maybe_complete(takeover.target, now)

    def _maybe_complete(self, target: int, now: float) -> None:
        takeover = self._takeovers.get(target)
        if takeover is None or not takeover.waiting <= takeover.acknowledged:
            return
        self._complete_takeover(takeover, now)

    def _complete_takeover(self, takeover: _Takeover, now: float) -> None:
        """RFC 5353 3.5.2: announce, re-home the target's PEs, and tell each PE."""
        target = takeover.target
        del self._takeovers[target]
        self._broadcast(enrp.TakeoverServer(self.server_identifier, 0, target))
        peer = self._peers.pop(target, None)
        if peer is not None:
            for number in peer.links:
                link = self._links.get(number)
                if link is not None:
                    link.peer = None
                self._outbox.append(CloseLink(number, "taken over"))
        events = self.handlespace.take_over(target, self.server_identifier, now=now)
        self.counters["takeovers_completed"] += 1
        self.counters["pool_elements_taken_over"] += len(events)
        log.warn(
            "Took over ENRP server 0x{server:08x}: {count} PEs are ours now",
            server=target,
            count=len(events),
        )
        for event in events:
            if isinstance(event, PoolElementUpdated):
                element = event.element
                self.handlespace.keep_alive_sent(
                    event.pool_handle,
                    element.pe_identifier,
                    now=now,
                    timeout=self.config.keep_alive_timeout
                    + len(self._home_keep_alives) / self.config.home_keep_alive_rate.per_second,
                )
                self._home_keep_alives.append(
                    HomeKeepAlive(
                        event.pool_handle,
                        element.pe_identifier,
                        element.asap_transport,
                        self.server_identifier,
                    )
                )
        self._drain_home_keep_alives(now)

    def _takeover_expired(self, takeover: _Takeover, now: float) -> None:
        missing = takeover.waiting - takeover.acknowledged
        live = {
            server
            for server in missing
            if server in self._peers and self._alive(self._peers[server], now)
        }
        if not live:
            log.info(
                "Takeover of 0x{target:08x}: peers {missing} did not answer and are gone",
                target=takeover.target,
                missing=[f"0x{s:08x}" for s in sorted(missing)],
            )
            self._complete_takeover(takeover, now)
            return
        # RFC 5355 2.17: every live peer must agree; try again later.
        self.counters["takeovers_expired"] += 1
        del self._takeovers[takeover.target]
        log.warn(
            "Takeover of 0x{target:08x} expired without acknowledgements from {missing}",
            target=takeover.target,
            missing=[f"0x{s:08x}" for s in sorted(live)],
        )
        peer = self._peers.get(takeover.target)
        if peer is not None:
            peer.state = PeerState.PROBING
            peer.probe_deadline = now + self.config.max_time_no_response

    def _takeover_server_received(
        self, link: _Link, peer: Peer, message: enrp.TakeoverServer, now: float
    ) -> None:
        target = message.target_server_identifier
        sender = peer.server_identifier
        if target == self.server_identifier:
            self.counters["takeover_of_us_refused"] += 1
            log.warn(
                "ENRP server 0x{server:08x} took us over although we are alive: refused;"
                " our presence lets peers re-synchronise",
                server=sender,
            )
            self._error(link, CauseCode.REJECTED_DUE_TO_SECURITY_CONSIDERATIONS)
            self._broadcast(self._presence(0))
            return
        target_peer = self._peers.get(target)
        if target_peer is not None and self._alive(target_peer, now):
            self.counters["takeovers_refused"] += 1
            log.warn(
                "ENRP server 0x{server:08x} took over 0x{target:08x}, which is alive to us:"
                " refused",
                server=sender,
                target=target,
            )
            self._error(link, CauseCode.REJECTED_DUE_TO_SECURITY_CONSIDERATIONS)
            return
        self._takeovers.pop(target, None)
        if target_peer is not None:
            del self._peers[target]
            for number in target_peer.links:
                dead = self._links.get(number)
                if dead is not None:
                    dead.peer = None
                self._outbox.append(CloseLink(number, "taken over by a peer"))
        events = self.handlespace.take_over(target, sender, now=now)
        self.counters["takeovers_observed"] += 1
        log.info(
            "ENRP server 0x{server:08x} took over 0x{target:08x} ({count} PEs)",
            server=sender,
            target=target,
            count=len(events),
        )

    # ------------------------------------------------------------------ H keep-alives

    def _drain_home_keep_alives(self, now: float) -> None:
        if self._home_bucket is None:
            self._home_bucket = TokenBucket(self.config.home_keep_alive_rate, now)
        while self._home_keep_alives:
            if not self._home_bucket.allow(now):
                self._home_next = now + 1.0 / self.config.home_keep_alive_rate.per_second
                return
            action = self._home_keep_alives.popleft()
            entry = self.handlespace.get(action.pool_handle, action.pe_identifier)
            if entry is None or entry.home_server_identifier != self.server_identifier:
                continue
            self.counters["home_keep_alives_sent"] += 1
            self._outbox.append(action)
        self._home_next = None

    def home_keep_alive_acknowledged(self, pool_handle: bytes, pe_identifier: int) -> bool:
        """A PE we took over answered our H keep-alive: it stays."""
        entry = self.handlespace.get(pool_handle, pe_identifier)
        if entry is None or entry.home_server_identifier != self.server_identifier:
            return False
        self.counters["home_keep_alive_acks"] += 1
        return self.handlespace.keep_alive_acknowledged(pool_handle, pe_identifier)

    # ------------------------------------------------------------------ timers

    def next_deadline(self) -> float | None:
        """When :meth:`handle_timer` next has work, or ``None``."""
        if not self._started:
            return None
        deadlines: list[float] = []
        if self._next_heartbeat is not None:
            deadlines.append(self._next_heartbeat)
        if self._mentor_deadline is not None and self._phase is not _SyncPhase.TABLE:
            deadlines.append(self._mentor_deadline)
        for deadline in (self._mentor_retry, self._home_next):
            if deadline is not None:
                deadlines.append(deadline)
        for peer in self._peers.values():
            if peer.state is PeerState.ACTIVE:
                deadlines.append(peer.last_heard + self.config.max_time_last_heard)
            elif peer.state is PeerState.PROBING and peer.probe_deadline is not None:
                deadlines.append(peer.probe_deadline)
            elif peer.state is PeerState.INACTIVE and peer.inactive_until is not None:
                deadlines.append(peer.inactive_until)
            if peer.pending is not None:
                deadlines.append(peer.pending.deadline)
        deadlines.extend(t.expires for t in self._takeovers.values())
        return min(deadlines) if deadlines else None

    def handle_timer(self, now: float) -> list[PeerAction]:
        """Heartbeats, silence probes, deaths, takeover expiry, request timeouts."""
        if not self._started:
            return []
        if self._next_heartbeat is not None and now >= self._next_heartbeat:
            self._broadcast(self._presence(0))
            for link in self._links.values():
                if link.peer is None and link.authorized:
                    # Not identified yet: keep introducing ourselves.
                    self._send(link.number, self._presence(0, reply_required=True))
            self.counters["heartbeats_sent"] += 1
            self._next_heartbeat = now + self.config.peer_heartbeat_cycle
        for peer in list(self._peers.values()):
            if peer.server_identifier not in self._peers:
                continue
            self._peer_timers(peer, now)
        for takeover in list(self._takeovers.values()):
            if takeover.expires <= now and takeover.target in self._takeovers:
                self._takeover_expired(takeover, now)
        if self._mentor_retry is not None and now >= self._mentor_retry:
            self._mentor_retry = None
            if self._phase is _SyncPhase.SEARCHING:
                self._search_mentor(now)
        if (
            self._mentor_deadline is not None
            and now >= self._mentor_deadline
            and self._phase is not _SyncPhase.TABLE
        ):
            # RFC 5353 3.2.2.1: nobody to learn from in time; serve alone.
            self._mentor_deadline = None
            self._mentor_retry = None
            if self._mentor is not None and self._mentor in self._peers:
                self._peers[self._mentor].pending = None
            self._mentor = None
            self._phase = _SyncPhase.DONE
            log.info(
                "No mentor answered within {seconds} s: serving alone",
                seconds=self.config.mentor_discovery,
            )
        for number, session in list(self._sessions.items()):
            if session.expires and session.expires < now:
                del self._sessions[number]
        if self._home_next is not None and now >= self._home_next:
            self._drain_home_keep_alives(now)
        return self._take()

    def _peer_timers(self, peer: Peer, now: float) -> None:
        pending = peer.pending
        if pending is not None and now >= pending.deadline:
            peer.pending = None
            self.counters["table_requests_timed_out"] += 1
            # Ask again only after the peer dropped its half-served session, or its next
            # page would continue the old one (and a resync would sweep what it skipped).
            peer.resync_after = now + 2 * self.config.max_time_no_response
            if peer.server_identifier == self._mentor:
                self._drop_mentor("it did not answer", retry=now)
        if peer.state is PeerState.ACTIVE:
            if now >= peer.last_heard + self.config.max_time_last_heard:
                # RFC 5353 3.4.3: probe a silent peer; a send that cannot happen fails.
                link = self._primary(peer)
                if link is None:
                    self._declare_dead(peer, now)
                    return
                self.counters["probes_sent"] += 1
                peer.state = PeerState.PROBING
                peer.probe_deadline = now + self.config.max_time_no_response
                self._send(link, self._presence(peer.server_identifier, reply_required=True))
        elif peer.state is PeerState.PROBING:
            if peer.probe_deadline is not None and now >= peer.probe_deadline:
                self._declare_dead(peer, now)
        elif (
            peer.state is PeerState.INACTIVE
            and peer.inactive_until is not None
            and now >= peer.inactive_until
        ):
            # Whoever was taking it over did not finish: monitor it again.
            peer.state = PeerState.PROBING
            peer.inactive_until = None
            peer.probe_deadline = now

    # ------------------------------------------------------------------ plumbing

    def _primary(self, peer: Peer) -> int | None:
        """The connection to use for ``peer``: both sides pick the one the lower id opened."""
        if not peer.links:
            return None
        we_open = self.server_identifier < peer.server_identifier
        for number in peer.links:
            link = self._links.get(number)
            if link is not None and link.outgoing == we_open:
                return number
        return peer.links[0]

    def _broadcast(self, message: enrp.EnrpMessage) -> int:
        sent = 0
        for peer in self._peers.values():
            number = self._primary(peer)
            if number is not None:
                self._send(number, message)
                sent += 1
        return sent

    def _send(self, number: int, message: enrp.EnrpMessage) -> None:
        self._outbox.append(SendEnrp(number, message))

    def _error(self, link: _Link, cause: int, information: bytes = b"") -> None:
        self.counters["errors_sent"] += 1
        self._send(
            link.number,
            enrp.ErrorMessage(
                self.server_identifier,
                link.peer or 0,
                OperationError.single(cause, information),
            ),
        )

    def _unexpected(self, link: _Link, message: enrp.EnrpMessage) -> None:
        self.counters["unexpected_messages"] += 1
        log.warn(
            "Unexpected {message} from {peer}: answered with ENRP_ERROR",
            message=type(message).__name__,
            peer=link.describe(),
        )
        self._error(link, CauseCode.UNSPECIFIED_ERROR, message.encode()[:1024])

    def _take(self) -> list[PeerAction]:
        actions, self._outbox = self._outbox, []
        return actions

    def take_actions(self) -> list[PeerAction]:
        """Actions caused by handlespace changes made elsewhere (the registrar)."""
        return self._take()

    def links(self) -> Iterator[int]:
        """The numbers of the ready peer connections."""
        return iter(self._links)


__all__ = [
    "CloseLink",
    "HomeKeepAlive",
    "Peer",
    "PeerAction",
    "PeerConfig",
    "PeerCore",
    "PeerHint",
    "PeerState",
    "SendEnrp",
]
