"""The ENRP side of an ENRP server (RFC 5353), secured as RFC 5355 asks. Sans-IO.

:class:`PeerCore` knows peer connections by an opaque number, like the registrar knows ASAP
connections. It is told when a connection is ready (with its :class:`SecurityContext` and
whether we opened it), gets every decoded ENRP message, and runs :meth:`PeerCore.handle_timer`
at :meth:`PeerCore.next_deadline`. Every call returns the actions to carry out:
:class:`SendEnrp`, :class:`CloseLink`, :class:`HomeKeepAlive` (reach a PE taken over, RFC
5353 3.5.2) and :class:`PeerHint` (a server a peer told us about; connecting to it still
needs authentication). :class:`~twisted_rserpool.enrp.core.EnrpCore` joins it to the
registrar.

The work is split by job, each part in its module over one shared
:class:`~twisted_rserpool.enrp.peertable.PeerTable`:

- :mod:`~twisted_rserpool.enrp.peertable`: links, peer list, presence, liveness;
- :mod:`~twisted_rserpool.enrp.sync`: mentor discovery and download, handle table
  service, checksum audit and resync;
- :mod:`~twisted_rserpool.enrp.updates`: handle updates out and in, and the
  :class:`~twisted_rserpool.enrp.updates.Authority` that says what a peer may change;
- :mod:`~twisted_rserpool.enrp.takeover`: takeover arbitration and H keep-alives.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

from twisted.logger import Logger

from twisted_rserpool.enrp.bindings import ServerIdentifierBindings
from twisted_rserpool.enrp.peertable import (
    AskPoolElement,
    CloseLink,
    HomeKeepAlive,
    Link,
    Peer,
    PeerAction,
    PeerConfig,
    PeerHint,
    PeerState,
    PeerTable,
    SendEnrp,
)
from twisted_rserpool.enrp.sync import Synchroniser
from twisted_rserpool.enrp.takeover import Takeovers
from twisted_rserpool.enrp.updates import Authority, HandleUpdates
from twisted_rserpool.handlespace import Handlespace
from twisted_rserpool.security.authorization import AuthorizationPolicy, Role
from twisted_rserpool.security.context import SecurityContext
from twisted_rserpool.wire import enrp
from twisted_rserpool.wire.errors import CauseCode
from twisted_rserpool.wire.parameters import ServerInformation

log = Logger()

#: Handles one ENRP message from an identified peer.
_Handler = Callable[[Link, Peer, Any, float], None]


class PeerCore:
    """The ENRP peer protocol of one ENRP server over its handlespace.

    ``expect_mentor`` says whether peers were configured: then the server looks for a
    mentor for MENTOR-DISCOVERY seconds before it serves alone (RFC 5353 3.2.2.1).
    ``bindings`` says which identity may announce which server identifier (default: the
    policy's ``server-identifier`` entries, other identities pinned in memory).
    Subclass and override :meth:`allowPeer` to decide who may be an ENRP peer.
    """

    def __init__(
        self,
        config: PeerConfig,
        handlespace: Handlespace,
        policy: AuthorizationPolicy,
        *,
        expect_mentor: bool = False,
        bindings: ServerIdentifierBindings | None = None,
    ) -> None:
        self.config = config
        self.handlespace = handlespace
        self.policy = policy
        self.counters: Counter[str] = Counter()
        if bindings is None:
            bindings = ServerIdentifierBindings(policy.server_identifiers())
        self.bindings = bindings
        self.table = PeerTable(config, handlespace, policy, self.counters, self.allowPeer, bindings)
        self.authority = Authority(self.table)
        self.updates = HandleUpdates(self.table, self.authority)
        self.sync = Synchroniser(
            self.table, self.authority, expect_mentor=expect_mentor, homes=self.updates.homes
        )
        self.takeovers = Takeovers(self.table)
        self._handlers: dict[type[enrp.EnrpMessage], _Handler] = {
            enrp.Presence: self._presence_received,
            enrp.HandleUpdate: self.updates.update_received,
            enrp.HandleTableRequest: self.sync.table_requested,
            enrp.HandleTableResponse: self.sync.table_received,
            enrp.ListRequest: self.sync.list_requested,
            enrp.ListResponse: self.sync.list_received,
            enrp.InitTakeover: self.takeovers.init_takeover_received,
            enrp.InitTakeoverAck: self.takeovers.ack_received,
            enrp.TakeoverServer: self.takeovers.takeover_server_received,
            enrp.ErrorMessage: self._error_received,
        }

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
    def server_information(self) -> ServerInformation | None:
        """Our server information (ENRP transport) in presences and list responses."""
        return self.table.server_information

    @server_information.setter
    def server_information(self, value: ServerInformation | None) -> None:
        self.table.server_information = value

    @property
    def synchronised(self) -> bool:
        """Whether the initial synchronisation finished (or there was no mentor to ask)."""
        return self.sync.synchronised

    @property
    def peers(self) -> dict[int, Peer]:
        """The peer list by server identifier (read only)."""
        return self.table.peers

    def status(self) -> list[dict[str, Any]]:
        """The peer list for the admin interface."""
        return self.table.status()

    # ------------------------------------------------------------------ life cycle

    def start(self, now: float) -> list[PeerAction]:
        """Begin heartbeats and, if peers are expected, the search for a mentor."""
        self.table.start(now)
        self.sync.start(now)
        return self.table.take()

    def close(self) -> None:
        """Stop observing the handlespace."""
        self.updates.close()

    # ------------------------------------------------------------------ connections

    def connection_ready(
        self, number: int, security: SecurityContext, *, outgoing: bool, now: float
    ) -> list[PeerAction]:
        """A peer connection finished its TLS handshake and TCP mapping INIT exchange."""
        self.table.connection_ready(number, security, outgoing=outgoing)
        return self.table.take()

    def connection_lost(self, number: int, now: float) -> list[PeerAction]:
        """A peer connection closed; the peer stays listed until its timers say otherwise."""
        link = self.table.connection_lost(number)
        self.sync.connection_lost(number, link, now)
        return self.table.take()

    # ------------------------------------------------------------------ messages

    def message_received(
        self, number: int, message: enrp.EnrpMessage, now: float
    ) -> list[PeerAction]:
        """Handle one decoded ENRP message from connection ``number``."""
        table = self.table
        link = table.links.get(number)
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
            table.error(link, CauseCode.REJECTED_DUE_TO_SECURITY_CONSIDERATIONS)
            return table.take()
        peer = table.identify(link, message, now)
        if peer is None:
            return table.take()
        receiver = message.receiving_server_identifier
        if receiver not in (0, self.server_identifier):
            self.counters["misaddressed"] += 1
            log.info(
                "{message} from {peer} addressed to 0x{receiver:08x}: ignored",
                message=type(message).__name__,
                peer=link.describe(),
                receiver=receiver,
            )
            return table.take()
        table.heard(peer, now)
        handler = self._handlers.get(type(message))
        if handler is not None:
            handler(link, peer, message, now)
        return table.take()

    def _presence_received(
        self, link: Link, peer: Peer, message: enrp.Presence, now: float
    ) -> None:
        self.table.presence_received(link, peer, message)
        self.takeovers.peer_alive(peer)
        if message.checksum is not None:
            peer.checksum = message.checksum
            self.sync.audit(peer, message.checksum, now)

    def _error_received(
        self, link: Link, peer: Peer, message: enrp.ErrorMessage, now: float
    ) -> None:
        self.counters["errors_received"] += 1
        log.warn(
            "ENRP_ERROR from {peer}: causes {causes}",
            peer=link.describe(),
            causes=[cause.code for cause in message.error.causes],
        )

    def home_keep_alive_acknowledged(self, pool_handle: bytes, pe_identifier: int) -> bool:
        """A PE we took over answered our H keep-alive: it stays."""
        return self.takeovers.home_keep_alive_acknowledged(pool_handle, pe_identifier)

    # ------------------------------------------------------------------ timers

    def next_deadline(self) -> float | None:
        """When :meth:`handle_timer` next has work, or ``None``."""
        if not self.table.started:
            return None
        deadlines = [
            d
            for d in (
                self.table.next_deadline(),
                self.sync.next_deadline(),
                self.takeovers.next_deadline(),
            )
            if d is not None
        ]
        return min(deadlines, default=None)

    def handle_timer(self, now: float) -> list[PeerAction]:
        """Heartbeats, silence probes, deaths, takeover expiry, request timeouts."""
        table = self.table
        if not table.started:
            return []
        table.heartbeat(now)
        for peer in list(table.peers.values()):
            if peer.server_identifier not in table.peers:
                continue
            self.sync.request_timer(peer, now)
            if table.liveness(peer, now):
                self.takeovers.declare_dead(peer, now)
        self.takeovers.expire(now)
        self.sync.handle_timer(now)
        self.takeovers.drain_due(now)
        self.updates.homes.expire(now)
        return table.take()

    # ------------------------------------------------------------------ plumbing

    def take_actions(self) -> list[PeerAction]:
        """Actions caused by handlespace changes made elsewhere (the registrar)."""
        return self.table.take()

    def take_questions(self) -> list[AskPoolElement]:
        """PEs registered here to ask with a keep-alive over their own connection (a peer
        claims the owner re-registered there, RFC 5352 3.1 rule 4)."""
        return self.updates.homes.take_questions()

    def links(self) -> Iterator[int]:
        """The numbers of the ready peer connections."""
        return iter(self.table.links)


__all__ = [
    "AskPoolElement",
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
