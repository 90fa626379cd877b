"""The peer table of an ENRP server: links, peers, presence and liveness (RFC 5353 3.4). Sans-IO.

:class:`PeerTable` holds what the other parts of the ENRP side share: the ready peer
connections (:class:`Link`), the peer list (:class:`Peer`), the outbox of actions, and the
helpers that send on the connection both ends agree on. It decides who may be a peer
(RFC 5355 2.5, 2.15), binds a connection to the server identifier it announces, sends
ENRP_PRESENCE every PEER-HEARTBEAT-CYCLE, and probes a peer silent for
MAX-TIME-LAST-HEARD; a probe unanswered within MAX-TIME-NO-RESPONSE reports the peer dead.
"""

from __future__ import annotations

import enum
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeAlias

from twisted.logger import Logger

from twisted_rserpool.enrp.bindings import ServerIdentifierBindings
from twisted_rserpool.handlespace import Handlespace
from twisted_rserpool.security.authorization import AuthorizationPolicy
from twisted_rserpool.security.context import SecurityContext
from twisted_rserpool.security.ratelimit import Rate
from twisted_rserpool.wire import enrp
from twisted_rserpool.wire.errors import CauseCode
from twisted_rserpool.wire.parameters import (
    OperationError,
    SctpTransport,
    ServerInformation,
    TcpTransport,
)

log = Logger()

PoolElementKey: TypeAlias = tuple[bytes, int]


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


@dataclass(frozen=True, slots=True)
class AskPoolElement:
    """Ask a PE registered here with a keep-alive over its own ASAP connection: another
    server announced the PE's owner re-registered there (RFC 5352 3.1 rule 4); unanswered,
    the keep-alive timeout removes the PE and the move completes.
    :class:`~twisted_rserpool.enrp.core.EnrpCore` takes these from
    :meth:`~twisted_rserpool.enrp.peers.PeerCore.take_questions` and has the registrar
    send the keep-alive; the adapter never sees them."""

    pool_handle: bytes
    pe_identifier: int


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
    #: Full handle table downloads (W=0) we serve at once; more are rejected with the R
    #: flag (RFC 5353 3.2.3: "too many download sessions open"), and the new server asks
    #: a backup mentor or again later.
    max_download_sessions: int = 8
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
class Link:
    """One ready peer connection."""

    number: int
    security: SecurityContext
    outgoing: bool
    authorized: bool
    peer: int | None = None

    @property
    def identity(self) -> str | None:
        """The authenticated identity of the connection (as :class:`SecurityContext` says)."""
        return self.security.identity

    @property
    def peer_identity(self) -> str | None:
        """The identity that names the far end, if the connection proved one.

        On a connection we opened with a PSK, the PSK identity is the one we chose (our
        own): it says the far end knows that key, not which server it is. Only the
        identity a client chose, or a certificate, names the far end.
        """
        if self.outgoing and self.security.psk_identity is not None:
            return None
        return self.security.identity

    def describe(self) -> str:
        """The far end for log lines: server identifier, identity, connection."""
        if self.peer_identity is not None:
            who = self.peer_identity
        elif self.identity is not None:
            who = f"we connected as {self.identity}"
        else:
            who = "unauthenticated"
        server = f"server 0x{self.peer:08x}" if self.peer is not None else "unidentified server"
        return f"{server} ({who}, connection {self.number})"


@dataclass(slots=True)
class TableRequest:
    """A handle table request we sent and wait for: the mentor download or a resync."""

    own_children_only: bool
    deadline: float
    #: Resync: PEs of the peer not yet confirmed by a response (RFC 5353 3.6.3 "marked").
    marked: set[PoolElementKey] = field(default_factory=set)
    pages: int = 0


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
    pending: TableRequest | None = None
    resync_after: float = 0.0


# ---------------------------------------------------------------------- the table


class PeerTable:
    """Links and peers of one ENRP server, and the outbox every part of it writes to.

    ``allow`` decides whether a connection's security lets it speak ENRP with us;
    ``bindings`` which identity may announce which server identifier.
    :attr:`on_peer_added` is called with each new peer (the synchroniser looks for a
    mentor among them).
    """

    def __init__(
        self,
        config: PeerConfig,
        handlespace: Handlespace,
        policy: AuthorizationPolicy,
        counters: Counter[str],
        allow: Callable[[SecurityContext], bool],
        bindings: ServerIdentifierBindings,
    ) -> None:
        self.config = config
        self.bindings = bindings
        self.handlespace = handlespace
        self.policy = policy
        self.counters = counters
        self.server_information = config.server_information
        self.links: dict[int, Link] = {}
        self.peers: dict[int, Peer] = {}
        self.outbox: list[PeerAction] = []
        self.started = False
        self.next_heartbeat: float | None = None
        self.on_peer_added: Callable[[Peer, float], None] = lambda peer, now: None
        self._allow = allow
        self._hinted: set[int] = set()

    @property
    def server_identifier(self) -> int:
        """This server's identifier."""
        return self.config.server_identifier

    # ------------------------------------------------------------------ life cycle

    def start(self, now: float) -> None:
        """Begin heartbeats; introduce ourselves on the links already ready."""
        self.started = True
        self.next_heartbeat = now + self.config.peer_heartbeat_cycle
        for link in self.links.values():
            self.hello(link)

    # ------------------------------------------------------------------ connections

    def connection_ready(self, number: int, security: SecurityContext, *, outgoing: bool) -> Link:
        """A peer connection is ready: refuse it or introduce ourselves."""
        authorized = self._allow(security)
        link = Link(number, security, outgoing, authorized)
        self.links[number] = link
        if not authorized:
            self.counters["peers_refused"] += 1
            log.warn(
                "ENRP peer {peer} refused: {reason}",
                peer=link.describe(),
                identity=security.identity,
                reason=self._refusal(security),
            )
            self.error(link, CauseCode.REJECTED_DUE_TO_SECURITY_CONSIDERATIONS)
            self.outbox.append(CloseLink(number, "not an authorized ENRP server"))
            return link
        self.counters["peer_connections"] += 1
        if self.started:
            self.hello(link)
        return link

    def _refusal(self, security: SecurityContext) -> str:
        if not security.encrypted:
            return "no TLS (RFC 5355 2.15)"
        if not security.authenticated:
            return "not authenticated"
        return f"identity {security.identity!r} lacks the enrp-server role"

    def connection_lost(self, number: int) -> Link | None:
        """Forget a closed link; the peer stays listed until its timers say otherwise."""
        link = self.links.pop(number, None)
        if link is None or link.peer is None:
            return link
        peer = self.peers.get(link.peer)
        if peer is not None and number in peer.links:
            peer.links.remove(number)
            if not peer.links:
                log.info(
                    "Lost the last connection to ENRP server 0x{server:08x}",
                    server=peer.server_identifier,
                )
        return link

    def hello(self, link: Link) -> None:
        """Introduce ourselves: a reply-required presence (RFC 5353 3.4.1)."""
        self.send(link.number, self.presence(0, reply_required=True))

    def identify(self, link: Link, message: enrp.EnrpMessage, now: float) -> Peer | None:
        """The peer behind ``link``; binds the link to the sender on its first message."""
        sender = message.sending_server_identifier
        if link.peer is not None:
            if sender == link.peer:
                return self.peers.get(sender) or self._add_peer(link, sender, now)
            self.counters["refused_spoofed_sender"] += 1
            log.warn(
                "{message} from {peer} claims to come from 0x{claimed:08x}: refused",
                message=type(message).__name__,
                peer=link.describe(),
                claimed=sender,
            )
            self.error(link, CauseCode.REJECTED_DUE_TO_SECURITY_CONSIDERATIONS)
            return None
        if sender in (0, self.server_identifier):
            self.counters["refused_bad_identifier"] += 1
            log.warn(
                "{peer} uses server identifier 0x{claimed:08x} (zero or ours): closing",
                peer=link.describe(),
                claimed=sender,
            )
            self.error(link, CauseCode.INVALID_VALUES)
            self.outbox.append(CloseLink(link.number, "bad server identifier"))
            return None
        identity = link.peer_identity
        if identity is not None:
            # RFC 5355 2.5, 2.17: one identifier per identity, bound for good.
            refusal = self.bindings.check(identity, sender)
            if refusal is not None:
                self.counters["refused_server_identifier"] += 1
                log.warn(
                    "{peer} claims server 0x{claimed:08x}: refused, {reason}",
                    peer=link.describe(),
                    claimed=sender,
                    identity=identity,
                    owner=self.bindings.owner(sender),
                    reason=refusal,
                )
                self.error(link, CauseCode.REJECTED_DUE_TO_SECURITY_CONSIDERATIONS)
                self.outbox.append(CloseLink(link.number, "server identifier not bound to it"))
                return None
        existing = self.peers.get(sender)
        if (
            identity is None
            and link.identity is None
            and existing is not None
            and existing.links
            and existing.identity is not None
        ):
            # Without TLS identities (insecure) an identified server is not taken over
            # by an anonymous connection.
            self.counters["refused_identity_mismatch"] += 1
            log.warn(
                "{peer} claims server 0x{claimed:08x}, already connected as {identity!r}: refused",
                peer=link.describe(),
                claimed=sender,
                identity=existing.identity,
            )
            self.error(link, CauseCode.REJECTED_DUE_TO_SECURITY_CONSIDERATIONS)
            self.outbox.append(CloseLink(link.number, "server identifier of another identity"))
            return None
        link.peer = sender
        if existing is None:
            return self._add_peer(link, sender, now)
        if identity is not None:
            existing.identity = identity
        existing.links.append(link.number)
        return existing

    def _add_peer(self, link: Link, server: int, now: float) -> Peer:
        peer = Peer(server, link.peer_identity, now, links=[link.number])
        self.peers[server] = peer
        self.counters["peers_discovered"] += 1
        log.info(
            "New ENRP peer 0x{server:08x} ({identity})",
            server=server,
            identity=link.peer_identity or f"over our connection as {link.identity!r}",
        )
        self.on_peer_added(peer, now)
        return peer

    def heard(self, peer: Peer, now: float) -> None:
        """Any message from ``peer`` shows it alive."""
        peer.last_heard = now
        if peer.state is PeerState.PROBING:
            peer.state = PeerState.ACTIVE
            peer.probe_deadline = None

    def detach(self, server: int, reason: str) -> Peer | None:
        """Drop ``server`` from the peer list and close its links (it was taken over)."""
        peer = self.peers.pop(server, None)
        if peer is None:
            return None
        for number in peer.links:
            link = self.links.get(number)
            if link is not None:
                link.peer = None
            self.outbox.append(CloseLink(number, reason))
        return peer

    def hint(self, information: ServerInformation) -> None:
        """A server a peer named: worth connecting to once, if it is new and reachable."""
        server = information.server_identifier
        transport = information.server_transport
        if server in self.peers or server == self.server_identifier or server in self._hinted:
            return
        if not isinstance(transport, TcpTransport) or transport.address.is_unspecified:
            return
        self._hinted.add(server)
        self.outbox.append(PeerHint(information))

    # ------------------------------------------------------------------ presence

    def presence(self, receiver: int, *, reply_required: bool = False) -> enrp.Presence:
        """Our ENRP_PRESENCE with the checksum of the PEs we own."""
        return enrp.Presence(
            self.server_identifier,
            receiver,
            self.handlespace.pe_checksum(self.server_identifier),
            self.server_information,
            reply_required,
        )

    def presence_received(self, link: Link, peer: Peer, message: enrp.Presence) -> None:
        """Learn the peer's server information; answer a reply-required presence."""
        if message.server_information is not None:
            peer.server_information = message.server_information
        if message.reply_required:
            self.send(link.number, self.presence(peer.server_identifier))

    def alive(self, peer: Peer, now: float) -> bool:
        """Whether we see ``peer`` alive: connected and heard within MAX-TIME-LAST-HEARD."""
        return (
            bool(peer.links)
            and peer.state in (PeerState.ACTIVE, PeerState.PROBING)
            and now - peer.last_heard <= self.config.max_time_last_heard
        )

    def live_server(self, server: int, now: float) -> bool:
        """Whether ``server`` is a peer we see alive."""
        peer = self.peers.get(server)
        return peer is not None and self.alive(peer, now)

    # ------------------------------------------------------------------ timers

    def next_deadline(self) -> float | None:
        """When the heartbeat or a peer's liveness timer is next due."""
        result: list[float] = []
        if self.next_heartbeat is not None:
            result.append(self.next_heartbeat)
        for peer in self.peers.values():
            if peer.state is PeerState.ACTIVE:
                result.append(peer.last_heard + self.config.max_time_last_heard)
            elif peer.state is PeerState.PROBING and peer.probe_deadline is not None:
                result.append(peer.probe_deadline)
            elif peer.state is PeerState.INACTIVE and peer.inactive_until is not None:
                result.append(peer.inactive_until)
        return min(result, default=None)

    def heartbeat(self, now: float) -> None:
        """PEER-HEARTBEAT-CYCLE: a presence to every peer, a hello on unidentified links."""
        if self.next_heartbeat is None or now < self.next_heartbeat:
            return
        self.broadcast(self.presence(0))
        for link in self.links.values():
            if link.peer is None and link.authorized:
                # Not identified yet: keep introducing ourselves.
                self.send(link.number, self.presence(0, reply_required=True))
        self.counters["heartbeats_sent"] += 1
        self.next_heartbeat = now + self.config.peer_heartbeat_cycle

    def liveness(self, peer: Peer, now: float) -> bool:
        """Run ``peer``'s liveness timers; ``True`` when it is to be declared dead now."""
        if peer.state is PeerState.ACTIVE:
            if now >= peer.last_heard + self.config.max_time_last_heard:
                # RFC 5353 3.4.3: probe a silent peer; a send that cannot happen fails.
                link = self.primary(peer)
                if link is None:
                    return True
                self.counters["probes_sent"] += 1
                peer.state = PeerState.PROBING
                peer.probe_deadline = now + self.config.max_time_no_response
                self.send(link, self.presence(peer.server_identifier, reply_required=True))
        elif peer.state is PeerState.PROBING:
            if peer.probe_deadline is not None and now >= peer.probe_deadline:
                return True
        elif (
            peer.state is PeerState.INACTIVE
            and peer.inactive_until is not None
            and now >= peer.inactive_until
        ):
            # Whoever was taking it over did not finish: monitor it again (probe it, or
            # with no connection to probe on it is dead now).
            peer.inactive_until = None
            link = self.primary(peer)
            if link is None:
                return True
            self.counters["probes_sent"] += 1
            peer.state = PeerState.PROBING
            peer.probe_deadline = now + self.config.max_time_no_response
            self.send(link, self.presence(peer.server_identifier, reply_required=True))
        return False

    # ------------------------------------------------------------------ sending

    def primary(self, peer: Peer) -> int | None:
        """The connection to use for ``peer``: both sides pick the one the lower id opened."""
        if not peer.links:
            return None
        we_open = self.server_identifier < peer.server_identifier
        for number in peer.links:
            link = self.links.get(number)
            if link is not None and link.outgoing == we_open:
                return number
        return peer.links[0]

    def broadcast(self, message: enrp.EnrpMessage) -> int:
        """Send ``message`` to every connected peer; how many it went to."""
        sent = 0
        for peer in self.peers.values():
            number = self.primary(peer)
            if number is not None:
                self.send(number, message)
                sent += 1
        return sent

    def send(self, number: int, message: enrp.EnrpMessage) -> None:
        """Queue ``message`` for connection ``number``."""
        self.outbox.append(SendEnrp(number, message))

    def error(self, link: Link, cause: int, information: bytes = b"") -> None:
        """Answer ``link`` with ENRP_ERROR carrying ``cause``."""
        self.counters["errors_sent"] += 1
        self.send(
            link.number,
            enrp.ErrorMessage(
                self.server_identifier,
                link.peer or 0,
                OperationError.single(cause, information),
            ),
        )

    def unexpected(self, link: Link, message: enrp.EnrpMessage) -> None:
        """A message we did not ask for: ENRP_ERROR with the message as information."""
        self.counters["unexpected_messages"] += 1
        log.warn(
            "Unexpected {message} from {peer}: answered with ENRP_ERROR",
            message=type(message).__name__,
            peer=link.describe(),
        )
        self.error(link, CauseCode.UNSPECIFIED_ERROR, message.encode()[:1024])

    def take(self) -> list[PeerAction]:
        """The actions queued so far (the outbox is emptied)."""
        actions, self.outbox = self.outbox, []
        return actions

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
            for peer in sorted(self.peers.values(), key=lambda p: p.server_identifier)
        ]


__all__ = [
    "AskPoolElement",
    "CloseLink",
    "HomeKeepAlive",
    "Link",
    "Peer",
    "PeerAction",
    "PeerConfig",
    "PeerHint",
    "PeerState",
    "PeerTable",
    "PoolElementKey",
    "SendEnrp",
    "TableRequest",
]
