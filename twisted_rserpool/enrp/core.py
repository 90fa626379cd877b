"""An ENRP server as one sans-IO unit: the handlespace, the registrar and the peer logic.

:class:`EnrpCore` is what the Twisted adapter (:class:`~twisted_rserpool.enrp.service.ENRPServer`)
talks to. It is told when an ASAP connection, an ENRP peer connection or a takeover
connection to a PE is ready, gets every decoded message, learns of closed connections,
and runs :meth:`EnrpCore.handle_timer` at :meth:`EnrpCore.next_deadline`. Every call
returns the actions to carry out, all frozen dataclasses: on ASAP connections
:class:`~twisted_rserpool.enrp.registrar.Send` and :class:`~twisted_rserpool.enrp.registrar.Close`,
on peer connections :class:`~twisted_rserpool.enrp.peertable.SendEnrp` and
:class:`~twisted_rserpool.enrp.peertable.CloseLink`, and the two that need new connections,
:class:`~twisted_rserpool.enrp.peertable.HomeKeepAlive` and
:class:`~twisted_rserpool.enrp.peertable.PeerHint`.

A change one side makes to the shared handlespace concerns the other (a registration is
announced to the peers; a peer's update reaches the registrar's subscribers), so every call
plays the registrar's and the peers' outboxes against each other until both are quiet.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeAlias

from twisted.logger import Logger

from twisted_rserpool.enrp.peers import PeerCore
from twisted_rserpool.enrp.peertable import AskPoolElement, HomeKeepAlive, PeerAction
from twisted_rserpool.enrp.registrar import Action, Close, Registrar, Send
from twisted_rserpool.enrp.takeover import TakeoverRegistrar, takeover_security
from twisted_rserpool.handlespace import Handlespace
from twisted_rserpool.security.context import SecurityContext
from twisted_rserpool.wire import asap, enrp
from twisted_rserpool.wire.message import Message

log = Logger()

#: Everything the core asks the adapter to do.
CoreAction: TypeAlias = Action | PeerAction


@dataclass(slots=True)
class _HomeConnection:
    """Our connection to a PE we took over, carrying the H keep-alive (RFC 5353 3.5.2)."""

    action: HomeKeepAlive
    #: When the connection is closed if no PE re-registered over it.
    idle_at: float


class EnrpCore:
    """The ENRP server: registrar (ASAP side) and, with ``peers``, the ENRP side.

    Both share the registrar's handlespace. Connection numbers are the adapter's; ASAP
    and ENRP connections must not share one.
    """

    #: A timer this many seconds later than the deadline the core gave means the process
    #: did not run (stopped, swapped out, starved): answers may wait unread in its sockets.
    STALL = 1.0
    #: How long the core then waits before it expires anything. Zero is enough: the
    #: adapter arms a timer due now, and a reactor polls its sockets once before it runs a
    #: timer armed by a timer (after SIGCONT, epoll_wait fails with EINTR, so Twisted runs
    #: the due timers before it reads what arrived while the process was stopped).
    STALL_GRACE = 0.0

    def __init__(self, registrar: Registrar, peers: PeerCore | None = None) -> None:
        if peers is not None and peers.handlespace is not registrar.handlespace:
            raise ValueError("the registrar and the peer core must share one handlespace")
        self.registrar = registrar
        self.peers = peers
        self._home: dict[int, _HomeConnection] = {}
        #: The deadline we last announced, and the end of a grace after a stall.
        self._announced: float | None = None
        self._resume_at: float | None = None
        #: When PE removals fell due and the core asked to read input first: the next
        #: call removes only what was due by then.
        self._read_first: float | None = None

    @property
    def handlespace(self) -> Handlespace:
        """The handlespace both sides serve."""
        return self.registrar.handlespace

    @property
    def server_identifier(self) -> int:
        """This server's identifier."""
        return self.registrar.config.server_identifier

    # ------------------------------------------------------------------ life cycle

    def start(self, now: float) -> list[CoreAction]:
        """Begin peer heartbeats and the search for a mentor (nothing without peers)."""
        actions: list[CoreAction] = []
        if self.peers is not None:
            actions.extend(self.peers.start(now))
        return self._settle(actions, now)

    def close(self) -> None:
        """Stop observing the handlespace."""
        self.registrar.close()
        if self.peers is not None:
            self.peers.close()

    # ------------------------------------------------------------------ ASAP connections

    def asap_connection_ready(
        self, number: int, security: SecurityContext, address: tuple[str, int] | None
    ) -> list[CoreAction]:
        """An ASAP connection (PE or PU) finished TLS and the TCP mapping INIT exchange."""
        return self._settle(list(self.registrar.connection_ready(number, security, address)))

    def asap_message_received(self, number: int, message: Message, now: float) -> list[CoreAction]:
        """One decoded ASAP message from ASAP connection ``number``."""
        peers = self.peers
        if peers is None:
            # Without peers: no H keep-alives of ours, and only the registrar's outbox.
            actions: list[CoreAction] = list(self.registrar.message_received(number, message, now))
            return self._settle_registrar(actions)
        actions = []
        home = self._home.get(number)
        if (
            home is not None
            and isinstance(message, asap.EndpointKeepAliveAck)
            and message.pool_handle == home.action.pool_handle
            and message.pe_identifier == home.action.pe_identifier
        ):
            # The PE we took over answered our H keep-alive: it stays.
            peers.home_keep_alive_acknowledged(message.pool_handle, message.pe_identifier)
        actions.extend(self.registrar.message_received(number, message, now))
        return self._settle(actions, now)

    def asap_connection_lost(self, number: int, now: float) -> list[CoreAction]:
        """An ASAP connection closed: the PEs registered over it are removed."""
        self._home.pop(number, None)
        return self._settle(list(self.registrar.connection_lost(number, now)), now)

    def home_connection_ready(
        self,
        number: int,
        security: SecurityContext,
        address: tuple[str, int] | None,
        action: HomeKeepAlive,
        now: float,
    ) -> list[CoreAction]:
        """Our connection to a PE we took over is ready: send it the H keep-alive.

        The PE must have authenticated (unless the server is insecure). The connection
        then becomes an ASAP connection of the registrar under a per-PE identity, over
        which only that PE may re-register; it is closed after twice the keep-alive
        timeout if no PE re-registered over it.
        """
        registrar = self.registrar
        if registrar.config.secure and not security.authenticated:
            log.warn(
                "PE 0x{pe:08x} for an H keep-alive did not authenticate: closing",
                pe=action.pe_identifier,
            )
            return [Close(number, "the PE did not authenticate")]
        actions: list[CoreAction] = list(
            registrar.connection_ready(
                number, takeover_security(security, action.pe_identifier), address
            )
        )
        if isinstance(registrar, TakeoverRegistrar):
            registrar.grant_takeover(number, action.pool_handle, action.pe_identifier)
        self._home[number] = _HomeConnection(action, now + 2 * registrar.config.keep_alive_timeout)
        actions.append(
            Send(
                number,
                asap.EndpointKeepAlive(
                    action.server_identifier,
                    action.pool_handle,
                    home=True,
                    pe_identifier=action.pe_identifier,
                ),
            )
        )
        return self._settle(actions, now)

    # ------------------------------------------------------------------ ENRP connections

    def enrp_connection_ready(
        self, number: int, security: SecurityContext, *, outgoing: bool, now: float
    ) -> list[CoreAction]:
        """A peer connection finished TLS and the TCP mapping INIT exchange."""
        peers = self._require_peers()
        return self._settle(
            list(peers.connection_ready(number, security, outgoing=outgoing, now=now)), now
        )

    def enrp_message_received(
        self, number: int, message: enrp.EnrpMessage, now: float
    ) -> list[CoreAction]:
        """One decoded ENRP message from peer connection ``number``."""
        peers = self._require_peers()
        return self._settle(list(peers.message_received(number, message, now)), now)

    def enrp_connection_lost(self, number: int, now: float) -> list[CoreAction]:
        """A peer connection closed."""
        if self.peers is None:
            return []
        return self._settle(list(self.peers.connection_lost(number, now)), now)

    def home_keep_alive_acknowledged(
        self, pool_handle: bytes, pe_identifier: int
    ) -> list[CoreAction]:
        """A PE we took over answered our H keep-alive (however it reached us)."""
        if self.peers is not None:
            self.peers.home_keep_alive_acknowledged(pool_handle, pe_identifier)
        return self._settle([])

    # ------------------------------------------------------------------ timers

    def next_deadline(self) -> float | None:
        """When :meth:`handle_timer` next has work, or ``None``."""
        if self._resume_at is not None:
            self._announced = self._resume_at
            return self._resume_at
        if self._read_first is not None:
            return self._read_first
        # Asked after every message: plain comparisons, no lists.
        deadline = self.registrar.next_deadline()
        if self.peers is not None:
            other = self.peers.next_deadline()
            if other is not None and (deadline is None or other < deadline):
                deadline = other
        for home in self._home.values():
            if deadline is None or home.idle_at < deadline:
                deadline = home.idle_at
        self._announced = deadline
        return deadline

    def handle_timer(self, now: float) -> list[CoreAction]:
        """Expiries, keep-alives, heartbeats, probes, takeovers, idle takeover connections.

        Called more than :attr:`STALL` seconds after the deadline :meth:`next_deadline`
        gave, it does nothing yet and asks to be called again (at once, by default):
        keep-alive answers and presences that arrived while the process did not run must
        be read before their timers remove PEs or declare peers dead.

        On time too, when PEs are due to be removed (an unanswered keep-alive, a
        registration life over), the first call does nothing and asks to be called again
        at once, and that call removes only what was due at the first: an adapter calls
        again after its reactor has polled its sockets, so a busy server reads the
        acknowledgements waiting there before it drops the PEs that sent them.
        """
        if (
            self._resume_at is None
            and self._announced is not None
            and now - self._announced > self.STALL
        ):
            self._resume_at = now + self.STALL_GRACE
            self.registrar.counters["timers_stalled"] += 1
            log.info(
                "Timers ran {late:.1f} s late (the process did not run): reading pending"
                " input before expiring anything",
                late=now - self._announced,
            )
            return []
        if self._resume_at is not None and now < self._resume_at:
            return []
        self._resume_at = None
        if self._read_first is None:
            removal = self.handlespace.next_deadline()
            if removal is not None and removal <= now:
                self._read_first = now
                self.registrar.counters["removals_read_first"] += 1
                return []
        else:
            # Nothing that fell due after the input was read: that waits for its own turn.
            now, self._read_first = min(now, self._read_first), None
        actions: list[CoreAction] = list(self.registrar.handle_timer(now))
        if self.peers is not None:
            actions.extend(self.peers.handle_timer(now))
        for number, home in list(self._home.items()):
            if home.idle_at > now:
                continue
            del self._home[number]
            state = self.registrar.connections.get(number)
            if state is None or not state.pool_elements:
                # No PE re-registered over it: nothing keeps this connection.
                actions.append(Close(number, "no PE re-registered over the takeover connection"))
        return self._settle(actions, now)

    def take_actions(self) -> list[CoreAction]:
        """Actions caused by handlespace changes made outside the core."""
        return self._settle([])

    # ------------------------------------------------------------------ plumbing

    def _require_peers(self) -> PeerCore:
        if self.peers is None:
            raise RuntimeError("this ENRP server was built without peering (no PeerCore)")
        return self.peers

    def _settle(self, actions: list[CoreAction], now: float | None = None) -> list[CoreAction]:
        """Add what each side's outbox holds until neither has anything more."""
        if self.peers is None:
            return self._settle_registrar(actions)
        while True:
            more: list[CoreAction] = list(self.registrar.take_actions())
            if self.peers is not None:
                more.extend(self.peers.take_actions())
                for question in self.peers.take_questions():
                    more.extend(self._ask(question, now))
            if not more:
                return actions
            actions.extend(more)

    def _settle_registrar(self, actions: list[CoreAction]) -> list[CoreAction]:
        """:meth:`_settle` without peers: only the registrar's outbox."""
        registrar = self.registrar
        while True:
            more = registrar.take_actions()
            if not more:
                return actions
            actions.extend(more)

    def _ask(self, action: AskPoolElement, now: float | None) -> list[CoreAction]:
        """Ask a PE registered here with a keep-alive over its own connection."""
        if now is not None:
            self.registrar.probe(action.pool_handle, action.pe_identifier, now)
        return list(self.registrar.take_actions())


__all__ = ["CoreAction", "EnrpCore"]
