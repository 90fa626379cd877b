"""Registrations over the connections a new home server opens to the PEs it took over.

After a takeover (RFC 5353 3.5.2) the new home connects to each PE and sends an
ASAP_ENDPOINT_KEEP_ALIVE with the H flag; the PE adopts that connection as its home
connection and re-registers over it. On that connection the TLS-PSK identity is the
server's own outgoing identity, not the PE's, so:

- the connection gets a per-PE identity ``<our identity>#takeover-<PE id>`` (the limits on
  PEs per identity then do not add up all PEs taken over under one name), and
- :class:`TakeoverRegistrar` lets exactly the PE that was sent the keep-alive register
  over it, whatever the authorization policy says about that synthetic identity.

:class:`Takeovers` is the ENRP side of it (RFC 5353 3.5, RFC 5355 2.17): arbitration of a
dead peer's takeover with acknowledgements from every other live peer and a majority of
the servers we know (so a partitioned minority never takes over), the higher server
identifier winning a conflict (RFC 5353 3.5.1 rule 2), an expiry, ENRP_TAKEOVER_SERVER,
and the rate-limited keep-alives with the H flag to the PEs taken over.
"""

from __future__ import annotations

import random
from collections import deque
from dataclasses import dataclass, field, replace

from twisted.logger import Logger

from twisted_rserpool.enrp.peertable import HomeKeepAlive, Link, Peer, PeerState, PeerTable
from twisted_rserpool.enrp.registrar import Action, ConnectionState, Registrar, RegistrarConfig
from twisted_rserpool.handlespace import Handlespace, PoolElementUpdated
from twisted_rserpool.security.authorization import AuthorizationPolicy
from twisted_rserpool.security.context import SecurityContext
from twisted_rserpool.security.ratelimit import TokenBucket
from twisted_rserpool.wire import enrp
from twisted_rserpool.wire.errors import CauseCode

log = Logger()


def takeover_security(security: SecurityContext, pe_identifier: int) -> SecurityContext:
    """The security context the registrar sees for a takeover connection to one PE."""
    if security.identity is None:
        return security
    return replace(
        security,
        psk_identity=f"{security.identity}#takeover-{pe_identifier:08x}",
        certificate_subject=None,
    )


class TakeoverRegistrar(Registrar):
    """A registrar that admits a PE's re-registration over our takeover connection to it."""

    def __init__(
        self,
        config: RegistrarConfig,
        handlespace: Handlespace,
        policy: AuthorizationPolicy,
        *,
        rng: random.Random | None = None,
    ) -> None:
        super().__init__(config, handlespace, policy, rng=rng)
        self._takeover_grants: dict[int, tuple[bytes, int]] = {}

    def grant_takeover(self, connection: int, pool_handle: bytes, pe_identifier: int) -> None:
        """Connection ``connection`` is ours to the PE we took over: it may register there."""
        self._takeover_grants[connection] = (pool_handle, pe_identifier)

    def connection_lost(self, number: int, now: float) -> list[Action]:
        """Forget the grant with the connection."""
        self._takeover_grants.pop(number, None)
        return super().connection_lost(number, now)

    def takeoverGranted(self, connection: ConnectionState, pool_handle: bytes, pe: int) -> bool:
        """Whether ``connection`` is our takeover connection to PE ``pe`` of ``pool_handle``."""
        return self._takeover_grants.get(connection.number) == (pool_handle, pe)


# ---------------------------------------------------------------------- ENRP takeover


@dataclass(slots=True)
class _Takeover:
    """Our arbitration to take over ``target`` (RFC 5353 3.5.1)."""

    target: int
    #: The peers we saw alive at the start: every one of them must acknowledge.
    waiting: set[int]
    expires: float
    #: The servers we knew of at the start, us and the target included (the quorum's base).
    known: int
    acknowledged: set[int] = field(default_factory=set)

    def quorum(self) -> bool:
        """Whether the acknowledgers and we are a majority of the servers we knew of."""
        return 2 * (len(self.acknowledged) + 1) > self.known


class Takeovers:
    """Takeover arbitration of dead peers and the H keep-alives after it.

    A takeover that completed, or one a peer announced that we accepted, re-homes the
    target's PEs and drops the target from the peer list, which is what lets its PEs move.
    """

    def __init__(self, table: PeerTable) -> None:
        self.table = table
        self._takeovers: dict[int, _Takeover] = {}
        self._home_keep_alives: deque[HomeKeepAlive] = deque()
        self._home_bucket: TokenBucket | None = None
        self._home_next: float | None = None

    @property
    def arbitrating(self) -> frozenset[int]:
        """The servers we are arbitrating the takeover of."""
        return frozenset(self._takeovers)

    def peer_alive(self, peer: Peer) -> None:
        """RFC 5353 3.5.1: a presence from a peer being taken over stops the takeover."""
        if peer.state not in (PeerState.INACTIVE, PeerState.TAKING_OVER):
            return
        log.info("ENRP server 0x{server:08x} is alive: no takeover", server=peer.server_identifier)
        self.table.counters["takeovers_cancelled_alive"] += int(
            peer.server_identifier in self._takeovers
        )
        self._takeovers.pop(peer.server_identifier, None)
        peer.state = PeerState.ACTIVE
        peer.inactive_until = None

    def declare_dead(self, peer: Peer, now: float) -> None:
        """RFC 5353 3.4.3 then 3.5.1: start the takeover arbitration."""
        table = self.table
        target = peer.server_identifier
        table.counters["peers_dead"] += 1
        waiting = {
            other.server_identifier
            for other in table.peers.values()
            if other.server_identifier != target
            and other.links
            and other.state in (PeerState.ACTIVE, PeerState.PROBING)
        }
        known = len(table.peers) + 1
        log.warn(
            "ENRP server 0x{server:08x} is dead: asking {count} peers to let us take it over"
            " ({known} servers known, {needed} must agree, us included)",
            server=target,
            count=len(waiting),
            known=known,
            needed=known // 2 + 1,
        )
        peer.state = PeerState.TAKING_OVER
        peer.probe_deadline = None
        self._takeovers[target] = _Takeover(
            target, waiting, now + table.config.takeover_expiry, known
        )
        table.counters["takeovers_started"] += 1
        table.broadcast(enrp.InitTakeover(table.server_identifier, 0, target))
        self._maybe_complete(target, now)

    def init_takeover_received(
        self, link: Link, peer: Peer, message: enrp.InitTakeover, now: float
    ) -> None:
        """Acknowledge a peer's takeover of a server we do not see alive."""
        table = self.table
        target = message.target_server_identifier
        sender = peer.server_identifier
        if target == table.server_identifier:
            # A false failure detection: tell everyone we are here.
            table.counters["takeover_of_us_refused"] += 1
            log.warn(
                "ENRP server 0x{server:08x} wants to take us over: announcing presence",
                server=sender,
            )
            table.broadcast(table.presence(0))
            return
        ours = self._takeovers.get(target)
        if ours is not None:
            # RFC 5353 3.5.1 rule 2: the peer whose identifier is smaller than the
            # sender's aborts and acknowledges; otherwise it ignores the message.
            if table.server_identifier > sender:
                table.counters["takeover_conflicts_won"] += 1
                log.info(
                    "Takeover conflict over 0x{target:08x} with 0x{server:08x}: we continue",
                    target=target,
                    server=sender,
                )
                return
            table.counters["takeover_conflicts_lost"] += 1
            log.info(
                "Takeover conflict over 0x{target:08x} with 0x{server:08x}: it wins, we"
                " acknowledge",
                target=target,
                server=sender,
            )
            del self._takeovers[target]
        elif table.live_server(target, now):
            # RFC 5355 2.17: no takeover of a server we see alive.
            table.counters["takeovers_objected"] += 1
            log.warn(
                "ENRP server 0x{server:08x} wants to take over 0x{target:08x}, which is"
                " alive to us: no acknowledgement",
                server=sender,
                target=target,
            )
            return
        target_peer = table.peers.get(target)
        if target_peer is not None:
            target_peer.state = PeerState.INACTIVE
            target_peer.probe_deadline = None
            target_peer.inactive_until = (
                now + table.config.takeover_expiry + table.config.max_time_no_response
            )
        table.counters["takeover_acks_sent"] += 1
        table.send(link.number, enrp.InitTakeoverAck(table.server_identifier, sender, target))

    def ack_received(
        self, link: Link, peer: Peer, message: enrp.InitTakeoverAck, now: float
    ) -> None:
        """Count a peer's acknowledgement of our takeover; complete it when all agreed."""
        takeover = self._takeovers.get(message.target_server_identifier)
        if takeover is None or peer.server_identifier == takeover.target:
            self.table.counters["takeover_acks_ignored"] += 1
            return
        takeover.acknowledged.add(peer.server_identifier)
        self._maybe_complete(takeover.target, now)

    def _maybe_complete(self, target: int, now: float) -> None:
        takeover = self._takeovers.get(target)
        if takeover is None or not takeover.waiting <= takeover.acknowledged:
            return
        if not takeover.quorum():
            # Every peer we see agreed, but we may be the minority side of a partition:
            # wait for more acknowledgements until the expiry.
            return
        self._complete(takeover, now)

    def _complete(self, takeover: _Takeover, now: float) -> None:
        """RFC 5353 3.5.2: announce, re-home the target's PEs, and tell each PE."""
        table = self.table
        config = table.config
        target = takeover.target
        us = table.server_identifier
        del self._takeovers[target]
        table.broadcast(enrp.TakeoverServer(us, 0, target))
        table.detach(target, "taken over")
        events = table.handlespace.take_over(target, us, now=now)
        table.counters["takeovers_completed"] += 1
        table.counters["pool_elements_taken_over"] += len(events)
        log.warn(
            "Took over ENRP server 0x{server:08x}: {count} PEs are ours now",
            server=target,
            count=len(events),
        )
        for event in events:
            if isinstance(event, PoolElementUpdated):
                element = event.element
                table.handlespace.keep_alive_sent(
                    event.pool_handle,
                    element.pe_identifier,
                    now=now,
                    timeout=config.keep_alive_timeout
                    + len(self._home_keep_alives) / config.home_keep_alive_rate.per_second,
                )
                self._home_keep_alives.append(
                    HomeKeepAlive(
                        event.pool_handle, element.pe_identifier, element.asap_transport, us
                    )
                )
        self._drain(now)

    def _expired(self, takeover: _Takeover, now: float) -> None:
        table = self.table
        missing = takeover.waiting - takeover.acknowledged
        live = {server for server in missing if table.live_server(server, now)}
        if not live and not takeover.quorum():
            # RFC 5353 3.5.1 wants every known peer's acknowledgement; gone peers may be
            # dead or behind a partition, so without a majority we do nothing.
            table.counters["takeovers_no_quorum"] += 1
            del self._takeovers[takeover.target]
            log.warn(
                "Takeover of 0x{target:08x} abandoned: {count} of {known} servers agreed"
                " (us included), no majority; we may be cut off from the others",
                target=takeover.target,
                count=len(takeover.acknowledged) + 1,
                known=takeover.known,
            )
            peer = table.peers.get(takeover.target)
            if peer is not None:
                peer.state = PeerState.PROBING
                peer.probe_deadline = now + table.config.max_time_no_response
            return
        if not live:
            log.info(
                "Takeover of 0x{target:08x}: peers {missing} did not answer and are gone",
                target=takeover.target,
                missing=[f"0x{s:08x}" for s in sorted(missing)],
            )
            self._complete(takeover, now)
            return
        # RFC 5355 2.17: every live peer must agree; try again later.
        table.counters["takeovers_expired"] += 1
        del self._takeovers[takeover.target]
        log.warn(
            "Takeover of 0x{target:08x} expired without acknowledgements from {missing}",
            target=takeover.target,
            missing=[f"0x{s:08x}" for s in sorted(live)],
        )
        peer = table.peers.get(takeover.target)
        if peer is not None:
            peer.state = PeerState.PROBING
            peer.probe_deadline = now + table.config.max_time_no_response

    def takeover_server_received(
        self, link: Link, peer: Peer, message: enrp.TakeoverServer, now: float
    ) -> None:
        """A peer took a server over: accept it unless we see that server alive."""
        table = self.table
        target = message.target_server_identifier
        sender = peer.server_identifier
        if target == table.server_identifier:
            table.counters["takeover_of_us_refused"] += 1
            log.warn(
                "ENRP server 0x{server:08x} took us over although we are alive: refused;"
                " our presence lets peers re-synchronise",
                server=sender,
                identity=link.identity,
            )
            table.error(link, CauseCode.REJECTED_DUE_TO_SECURITY_CONSIDERATIONS)
            table.broadcast(table.presence(0))
            return
        if table.live_server(target, now):
            table.counters["takeovers_refused"] += 1
            log.warn(
                "ENRP server 0x{server:08x} took over 0x{target:08x}, which is alive to us:"
                " refused",
                server=sender,
                identity=link.identity,
                target=target,
            )
            table.error(link, CauseCode.REJECTED_DUE_TO_SECURITY_CONSIDERATIONS)
            return
        self._takeovers.pop(target, None)
        table.detach(target, "taken over by a peer")
        events = table.handlespace.take_over(target, sender, now=now)
        table.counters["takeovers_observed"] += 1
        log.info(
            "ENRP server 0x{server:08x} took over 0x{target:08x} ({count} PEs)",
            server=sender,
            target=target,
            count=len(events),
        )

    # ------------------------------------------------------------------ H keep-alives

    def _drain(self, now: float) -> None:
        table = self.table
        rate = table.config.home_keep_alive_rate
        if self._home_bucket is None:
            self._home_bucket = TokenBucket(rate, now)
        while self._home_keep_alives:
            if not self._home_bucket.allow(now):
                self._home_next = now + 1.0 / rate.per_second
                return
            action = self._home_keep_alives.popleft()
            entry = table.handlespace.get(action.pool_handle, action.pe_identifier)
            if entry is None or entry.home_server_identifier != table.server_identifier:
                continue
            table.counters["home_keep_alives_sent"] += 1
            table.outbox.append(action)
        self._home_next = None

    def home_keep_alive_acknowledged(self, pool_handle: bytes, pe_identifier: int) -> bool:
        """A PE we took over answered our H keep-alive: it stays."""
        table = self.table
        entry = table.handlespace.get(pool_handle, pe_identifier)
        if entry is None or entry.home_server_identifier != table.server_identifier:
            return False
        table.counters["home_keep_alive_acks"] += 1
        return table.handlespace.keep_alive_acknowledged(pool_handle, pe_identifier)

    # ------------------------------------------------------------------ timers

    def next_deadline(self) -> float | None:
        """When an arbitration expires or the next H keep-alives may go, if ever."""
        result = [t.expires for t in self._takeovers.values()]
        if self._home_next is not None:
            result.append(self._home_next)
        return min(result, default=None)

    def expire(self, now: float) -> None:
        """Arbitrations that ran out of time."""
        for takeover in list(self._takeovers.values()):
            if takeover.expires <= now and takeover.target in self._takeovers:
                self._expired(takeover, now)

    def drain_due(self, now: float) -> None:
        """Send the H keep-alives the rate allows again."""
        if self._home_next is not None and now >= self._home_next:
            self._drain(now)


__all__ = ["TakeoverRegistrar", "Takeovers", "takeover_security"]
