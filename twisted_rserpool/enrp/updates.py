"""Handle updates between ENRP servers (RFC 5353 3.3), within RFC 5355 2.17's limits. Sans-IO.

:class:`HandleUpdates` announces every change of a PE this server owns with an
ENRP_HANDLE_UPDATE and applies its peers' updates; :class:`Authority` decides what a peer
may change in our handlespace, for updates and for handle table pages alike;
:class:`HomeChanges` has the old home of a PE that moved while the old home lives (RFC
5352 3.1 rule 4) ask the PE whether it is still there.
"""

from __future__ import annotations

from collections import deque

from twisted.logger import Logger

from twisted_rserpool.describe import handleText
from twisted_rserpool.enrp.peertable import AskPoolElement, Link, Peer, PeerTable, PoolElementKey
from twisted_rserpool.handlespace import (
    HandlespaceError,
    HandlespaceEvent,
    PoolElementAdded,
    PoolElementEntry,
    PoolElementRemoved,
    PoolElementUpdated,
    RemovalReason,
    UpdateReason,
)
from twisted_rserpool.wire import enrp
from twisted_rserpool.wire.errors import CauseCode
from twisted_rserpool.wire.parameters import PoolElementParameter

log = Logger()


class Authority:
    """What a peer may change in our handlespace (RFC 5355 2.17).

    A peer speaks for the PEs whose home it is, and for no others:

    - it may add a PE naming itself as home (a mentor's full handle table may name
      others), never one naming us;
    - it may not move a PE whose home is another server we see alive (connected and
      heard within MAX-TIME-LAST-HEARD): only that server may let the PE go, by its own
      DEL_PE, its death and takeover (RFC 5353 3.5), or our accepting a peer's
      ENRP_TAKEOVER_SERVER for it. A PE that re-registered elsewhere while its old home
      lives moves once the old home lets it go; until then both entries name the same
      PE transport, so pool users are served the same PE either way;
    - it may not change a PE's owner identity (RFC 5355 2.3), nor contradict an
      authenticated registration at this server;
    - it may remove only PEs whose home it is.
    """

    def __init__(self, table: PeerTable) -> None:
        self.table = table

    def registered_here(self, pool_handle: bytes, pe_identifier: int) -> bool:
        """Whether this PE holds an authenticated registration at this server."""
        entry = self.table.handlespace.get(pool_handle, pe_identifier)
        return (
            entry is not None
            and entry.identity is not None
            and entry.home_server_identifier == self.table.server_identifier
        )

    def check_add(
        self,
        sender: int,
        handle: bytes,
        element: PoolElementParameter,
        *,
        vouched: bool,
        now: float,
    ) -> str | None:
        """Why a peer's PE may not enter the handlespace, or ``None``.

        ``vouched``: the PE comes from a mentor's full handle table, so its home may be
        another server than the sender.
        """
        table = self.table
        us = table.server_identifier
        home = element.home_server_identifier
        if home == us:
            return "it names us as home, but we did not register it"
        if not vouched and home != sender:
            return f"its home is 0x{home:08x}, not the sender"
        entry = table.handlespace.get(handle, element.pe_identifier)
        if entry is None:
            return None
        owner = entry.owner_identity
        named = element.owner_identity
        if owner is not None and named is not None and named != owner:
            return f"it names owner {named!r}, but the PE belongs to {owner!r}"
        current = entry.home_server_identifier
        if current == us:
            if entry.identity is not None:
                return "it contradicts the PE's authenticated registration at this server"
            # Ours by a takeover the PE has not confirmed yet: it may have moved on.
            return None
        if current != home and table.live_server(current, now):
            return f"the PE's home is 0x{current:08x}, which is alive: only it may give the PE up"
        return None

    def check_delete(self, sender: int, entry: PoolElementEntry) -> str | None:
        """Why a peer may not remove this PE, or ``None``."""
        if entry.home_server_identifier != sender:
            return f"the PE's home is 0x{entry.home_server_identifier:08x}, not the sender"
        return None


class HomeChanges:
    """A PE's move to a new home while the old home lives (RFC 5352 3.1 rule 4, RFC 5353
    3.3.1 step 3), within RFC 5355 2.3 and 2.17.

    The new home's ADD_PE is refused while the old home lives: only the old home may let
    the PE go. Owner identities travel in ENRP, so an ADD_PE naming the right owner proves
    nothing (any insider knows it), and only the PE's own association to its old home
    decides. So when such an ADD_PE (sender named home, the PE's owner named) reaches the
    old home, it asks the PE at once with a keep-alive over the PE's own connection
    (:class:`AskPoolElement`; within the PE's keep-alive rate, at most once per
    :attr:`HOLD_OFF` seconds per PE, so a claimant cannot make us pester the PE):

    - a PE that answers stays ours (a claim is no reason to drop a PE that vouches for
      its registration here);
    - a PE whose association is gone, or that does not answer within the keep-alive
      timeout, is removed as any unanswered keep-alive removes it (RFC 5352 3.5); so is
      one that de-registers here. The DEL_PE frees the PE at every peer, and the new
      home's ADD_PE (at its next registration) or the audit of its PEs (its next
      presence) brings it back homed there, with its owner.
    """

    #: How long after a question no new one is asked about the same PE.
    HOLD_OFF = 30.0

    def __init__(self, table: PeerTable) -> None:
        self.table = table
        self._asked: dict[PoolElementKey, float] = {}
        #: Questions for the registrar's side to send (bounded: nobody may drain them).
        self._asks: deque[AskPoolElement] = deque(maxlen=1024)

    def take_questions(self) -> list[AskPoolElement]:
        """The PEs to ask since the last call."""
        asks = list(self._asks)
        self._asks.clear()
        return asks

    def claimed(
        self, sender: int, handle: bytes, element: PoolElementParameter, now: float
    ) -> None:
        """A peer's ADD_PE for a PE whose live home is another server (or us) was refused:
        if we are the home and it is a move by the owner, ask the PE."""
        table = self.table
        key = (handle, element.pe_identifier)
        entry = table.handlespace.get(handle, element.pe_identifier)
        if (
            entry is None
            or entry.home_server_identifier != table.server_identifier
            or entry.identity is None
            or element.home_server_identifier != sender
            or entry.owner_identity is None
            or element.owner_identity != entry.owner_identity
        ):
            return
        if now < self._asked.get(key, -self.HOLD_OFF) + self.HOLD_OFF:
            return
        self._asked[key] = now
        table.counters["home_change_questions"] += 1
        log.info(
            "ENRP server 0x{server:08x} says PE 0x{pe:08x} of pool {pool} (owner"
            " {owner!r}) registered there: asking the PE with a keep-alive over its own"
            " connection; it stays ours if it answers",
            server=sender,
            pe=element.pe_identifier,
            pool=handleText(handle),
            owner=entry.owner_identity,
        )
        self._asks.append(AskPoolElement(handle, element.pe_identifier))

    def expire(self, now: float) -> None:
        """Forget questions older than the hold-off."""
        for key, asked in list(self._asked.items()):
            if asked + self.HOLD_OFF <= now:
                del self._asked[key]


class HandleUpdates:
    """ENRP_HANDLE_UPDATE out for our own PEs, and in from peers within :class:`Authority`."""

    def __init__(self, table: PeerTable, authority: Authority) -> None:
        self.table = table
        self.authority = authority
        self.homes = HomeChanges(table)
        self._subscription = table.handlespace.subscribe(self._handlespace_changed)

    def close(self) -> None:
        """Stop observing the handlespace."""
        self._subscription.cancel()

    def update_received(
        self, link: Link, peer: Peer, message: enrp.HandleUpdate, now: float
    ) -> None:
        """Apply a peer's ADD_PE or DEL_PE, or refuse it with ENRP_ERROR."""
        table = self.table
        handle, element = message.pool_handle, message.pool_element
        sender = peer.server_identifier
        if peer.pending is not None:
            # RFC 5353 3.6.3: the mark says "not confirmed since the resync began"; an
            # update from the PE's home is newer than any page, so it settles the PE (a
            # DEL_PE then ADD_PE between two pages must not leave it marked for the sweep).
            peer.pending.marked.discard((handle, element.pe_identifier))
        if message.update_action is enrp.UpdateAction.ADD_PE:
            refusal = self.authority.check_add(sender, handle, element, vouched=False, now=now)
            if refusal is not None:
                self._refuse(link, message, refusal)
                self.homes.claimed(sender, handle, element, now)
                return
            try:
                table.handlespace.register(
                    handle,
                    element,
                    now=now,
                    identity=None,
                    owner_identity=element.owner_identity,
                )
            except HandlespaceError as e:
                table.counters["updates_failed"] += 1
                log.warn(
                    "ADD_PE of 0x{pe:08x} in {pool} from {peer} failed: {reason}",
                    pe=element.pe_identifier,
                    pool=handleText(handle),
                    peer=link.describe(),
                    reason=e.reason,
                )
                table.error(link, e.cause)
                return
            table.counters["updates_applied"] += 1
            return
        entry = table.handlespace.get(handle, element.pe_identifier)
        if entry is None:
            table.counters["updates_unknown_pe"] += 1
            return
        refusal = self.authority.check_delete(sender, entry)
        if refusal is not None:
            self._refuse(link, message, refusal)
            return
        table.handlespace.deregister(
            handle, element.pe_identifier, reason=RemovalReason.PEER_UPDATE
        )
        table.counters["updates_applied"] += 1

    def _refuse(self, link: Link, message: enrp.HandleUpdate, reason: str) -> None:
        self.table.counters["updates_refused"] += 1
        log.warn(
            "{action} of PE 0x{pe:08x} in pool {pool} from {peer} refused: {reason}",
            action=message.update_action.name,
            pe=message.pool_element.pe_identifier,
            pool=handleText(message.pool_handle),
            peer=link.describe(),
            server=link.peer,
            identity=link.identity,
            reason=reason,
        )
        self.table.error(
            link, CauseCode.REJECTED_DUE_TO_SECURITY_CONSIDERATIONS, message.encode()[:1024]
        )

    def _handlespace_changed(self, event: HandlespaceEvent) -> None:
        """RFC 5353 3.3: announce every change of a PE we own."""
        us = self.table.server_identifier
        if isinstance(event, PoolElementAdded | PoolElementUpdated):
            if event.element.home_server_identifier != us or (
                isinstance(event, PoolElementUpdated) and event.reason is UpdateReason.TAKEOVER
            ):
                return
            # The owner identity travels with the PE (RFC 5355 2.3).
            entry = self.table.handlespace.get(event.pool_handle, event.element.pe_identifier)
            element = event.element if entry is None else entry.element_with_owner()
            self._announce(enrp.UpdateAction.ADD_PE, event.pool_handle, element)
        elif isinstance(event, PoolElementRemoved) and event.element.home_server_identifier == us:
            self._announce(enrp.UpdateAction.DEL_PE, event.pool_handle, event.element)

    def _announce(
        self, action: enrp.UpdateAction, pool_handle: bytes, element: PoolElementParameter
    ) -> None:
        table = self.table
        message = enrp.HandleUpdate(table.server_identifier, 0, action, pool_handle, element)
        table.counters["updates_sent"] += table.broadcast(message)


__all__ = ["Authority", "HandleUpdates"]
