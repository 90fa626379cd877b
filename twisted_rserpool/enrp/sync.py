"""Handlespace synchronisation between ENRP servers (RFC 5353 3.2 and 3.6). Sans-IO.

:class:`Synchroniser` finds a mentor at start (ENRP_LIST_REQUEST, then the paged
ENRP_HANDLE_TABLE_REQUEST download), serves the handle table to peers that ask for it, and
audits each peer's PE checksum: a mismatch re-synchronises that peer's PEs (mark and
sweep, RFC 5353 3.6.3). What a page may put into the handlespace is the
:class:`~twisted_rserpool.enrp.updates.Authority`'s decision, as for handle updates.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from twisted.logger import Logger

from twisted_rserpool.describe import handleText
from twisted_rserpool.enrp.peertable import (
    Link,
    Peer,
    PeerState,
    PeerTable,
    PoolElementKey,
    TableRequest,
)
from twisted_rserpool.enrp.updates import Authority, HomeChanges
from twisted_rserpool.handlespace import HandlespaceError, RemovalReason
from twisted_rserpool.wire import enrp
from twisted_rserpool.wire.parameters import PoolElementParameter

log = Logger()


@dataclass(slots=True)
class _Session:
    """A handle table download we serve (RFC 5353 3.2.3 step 2)."""

    keys: list[PoolElementKey]
    own_children_only: bool
    position: int
    expires: float


class SyncPhase(enum.Enum):
    """Where the initial synchronisation is (RFC 5353 3.2)."""

    SEARCHING = "searching for a mentor"
    LIST = "waiting for the mentor's server list"
    TABLE = "downloading the handlespace"
    DONE = "synchronised"


class Synchroniser:
    """Mentor discovery and download, handle table service, checksum audit.

    ``expect_mentor`` says whether peers were configured: then the server looks for a
    mentor for MENTOR-DISCOVERY seconds before it serves alone (RFC 5353 3.2.2.1).
    """

    def __init__(
        self,
        table: PeerTable,
        authority: Authority,
        *,
        expect_mentor: bool,
        homes: HomeChanges | None = None,
    ) -> None:
        self.table = table
        self.authority = authority
        #: Told of a resync page's PE that names its sender as the new home of a PE we
        #: refused to move (the old home then asks the PE, as for an ADD_PE).
        self.homes = homes
        self.phase = SyncPhase.SEARCHING if expect_mentor else SyncPhase.DONE
        self._expect_mentor = expect_mentor
        self._mentor: int | None = None
        self._mentor_deadline: float | None = None
        self._mentor_retry: float | None = None
        #: Mentors that failed us during this initialisation (RFC 5353 3.2.2.2, 3.2.3:
        #: the next attempt goes to a backup mentor, one not in here, if there is one).
        self._failed_mentors: set[int] = set()
        self._sessions: dict[int, _Session] = {}
        table.on_peer_added = self._peer_added

    @property
    def synchronised(self) -> bool:
        """Whether the initial synchronisation finished (or there was no mentor to ask)."""
        return self.phase is SyncPhase.DONE

    def start(self, now: float) -> None:
        """Start looking for a mentor, if peers are expected."""
        if self._expect_mentor and self.phase is SyncPhase.SEARCHING:
            self._mentor_deadline = now + self.table.config.mentor_discovery

    def _peer_added(self, peer: Peer, now: float) -> None:
        if self.phase is SyncPhase.SEARCHING and self.table.started:
            self._choose_mentor(peer, now)

    def connection_lost(self, number: int, link: Link | None, now: float) -> None:
        """A link closed: its session ends, and a request over it is given up."""
        self._sessions.pop(number, None)
        if link is None or link.peer is None:
            return
        peer = self.table.peers.get(link.peer)
        if (
            peer is not None
            and not peer.links
            and peer.pending is not None
            and link.peer != self._mentor
        ):
            peer.pending = None
        if link.peer == self._mentor and self.phase in (SyncPhase.LIST, SyncPhase.TABLE):
            self._drop_mentor("its connection closed", now)

    # ------------------------------------------------------------------ audit

    def audit(self, peer: Peer, checksum: int, now: float) -> None:
        """RFC 5353 3.6.1: a checksum differing from ours for that peer means a resync."""
        table = self.table
        if not self.synchronised or peer.pending is not None or now < peer.resync_after:
            return
        local = table.handlespace.pe_checksum(peer.server_identifier)
        if local == checksum:
            return
        table.counters["audit_mismatches"] += 1
        log.info(
            "Checksum of ENRP server 0x{server:08x} is 0x{theirs:04x}, ours for it 0x{ours:04x}:"
            " re-synchronising its PEs",
            server=peer.server_identifier,
            theirs=checksum,
            ours=local,
        )
        marked = {
            (entry.pool_handle, entry.pe_identifier)
            for entry in table.handlespace.elements_owned_by(peer.server_identifier)
        }
        if self._request_table(peer, own_children_only=True, now=now):
            assert peer.pending is not None
            peer.pending.marked = marked

    # ------------------------------------------------------------------ handle table

    def _request_table(self, peer: Peer, *, own_children_only: bool, now: float) -> bool:
        table = self.table
        link = table.primary(peer)
        if link is None:
            return False
        peer.pending = TableRequest(own_children_only, now + table.config.max_time_no_response)
        table.send(
            link,
            enrp.HandleTableRequest(
                table.server_identifier, peer.server_identifier, own_children_only
            ),
        )
        return True

    def table_requested(
        self, link: Link, peer: Peer, message: enrp.HandleTableRequest, now: float
    ) -> None:
        """Serve the next page of our handle table (RFC 5353 3.2.3)."""
        table = self.table
        session = self._sessions.get(link.number)
        if session is not None and (
            session.own_children_only != message.own_children_only or session.expires < now
        ):
            session = None
        if session is None:
            downloads = sum(
                not other.own_children_only
                for number, other in self._sessions.items()
                if number != link.number and not (other.expires and other.expires < now)
            )
            if not message.own_children_only and (
                not self.synchronised or downloads >= table.config.max_download_sessions
            ):
                # RFC 5353 3.2.3: a server still initialising, or serving too many
                # downloads already, rejects a full download.
                table.counters["table_requests_rejected"] += 1
                table.send(
                    link.number,
                    enrp.HandleTableResponse(
                        table.server_identifier, peer.server_identifier, reject=True
                    ),
                )
                return
            if message.own_children_only:
                keys = [
                    (entry.pool_handle, entry.pe_identifier)
                    for entry in table.handlespace.elements_owned_by(table.server_identifier)
                ]
            else:
                keys = [
                    (pool.handle, entry.pe_identifier)
                    for pool in table.handlespace.pools()
                    for entry in pool
                ]
            session = _Session(keys, message.own_children_only, 0, 0.0)
            self._sessions[link.number] = session
            table.counters["table_sessions"] += 1
        entries, session.position = self._page(session)
        more = session.position < len(session.keys)
        if more:
            session.expires = now + 2 * table.config.max_time_no_response
        else:
            del self._sessions[link.number]
        table.counters["table_pages_sent"] += 1
        table.send(
            link.number,
            enrp.HandleTableResponse(
                table.server_identifier, peer.server_identifier, entries, more_to_send=more
            ),
        )

    def _page(self, session: _Session) -> tuple[tuple[enrp.PoolEntry, ...], int]:
        """The next page: PEs as they are now (ones gone since the request are skipped)."""
        table = self.table
        entries: list[enrp.PoolEntry] = []
        handle: bytes | None = None
        elements: list[PoolElementParameter] = []
        count = 0
        position = session.position
        keys = session.keys
        while position < len(keys) and count < table.config.handle_table_page:
            pool_handle, pe = keys[position]
            position += 1
            entry = table.handlespace.get(pool_handle, pe)
            if entry is None:
                continue
            if (
                session.own_children_only
                and entry.home_server_identifier != table.server_identifier
            ):
                continue
            if pool_handle != handle:
                if handle is not None and elements:
                    entries.append(enrp.PoolEntry(handle, tuple(elements)))
                handle, elements = pool_handle, []
            elements.append(entry.element_with_owner())
            count += 1
        if handle is not None and elements:
            entries.append(enrp.PoolEntry(handle, tuple(elements)))
        return tuple(entries), position

    def table_received(
        self, link: Link, peer: Peer, message: enrp.HandleTableResponse, now: float
    ) -> None:
        """Apply a page of a peer's handle table; ask for the next or finish."""
        table = self.table
        pending = peer.pending
        if pending is None:
            table.unexpected(link, message)
            return
        initial = peer.server_identifier == self._mentor and self.phase is SyncPhase.TABLE
        if message.reject:
            table.counters["table_requests_rejected_by_peer"] += 1
            peer.pending = None
            log.info(
                "ENRP server 0x{server:08x} rejected our handle table request",
                server=peer.server_identifier,
            )
            if initial:
                self._drop_mentor("it rejected the handle table request", now)
            return
        sender = peer.server_identifier
        pending.pages += 1
        for entry in message.pool_entries:
            for element in entry.pool_elements:
                self._apply(link, sender, pending, entry.pool_handle, element, now)
        if message.more_to_send:
            pending.deadline = now + table.config.max_time_no_response
            table.send(
                link.number,
                enrp.HandleTableRequest(table.server_identifier, sender, pending.own_children_only),
            )
            return
        peer.pending = None
        if pending.own_children_only:
            swept = 0
            for pool_handle, pe in sorted(pending.marked):
                stale = table.handlespace.get(pool_handle, pe)
                if stale is not None and stale.home_server_identifier == sender:
                    table.handlespace.deregister(
                        pool_handle, pe, reason=RemovalReason.OWNER_REMOVED
                    )
                    swept += 1
            table.counters["resyncs"] += 1
            table.counters["resync_swept"] += swept
            peer.resync_after = now + 2 * table.config.peer_heartbeat_cycle
            log.info(
                "Re-synchronised the PEs of ENRP server 0x{server:08x} ({pages} pages,"
                " {swept} stale removed)",
                server=sender,
                pages=pending.pages,
                swept=swept,
            )
        if initial:
            self.phase = SyncPhase.DONE
            self._mentor_deadline = None
            # Done with it: later requests to that peer are audits like any other.
            self._mentor = None
            table.counters["initial_syncs"] += 1
            log.info(
                "Synchronised with mentor 0x{server:08x}: {count} PEs known",
                server=sender,
                count=len(table.handlespace),
            )

    def _apply(
        self,
        link: Link,
        sender: int,
        pending: TableRequest,
        pool_handle: bytes,
        element: PoolElementParameter,
        now: float,
    ) -> None:
        table = self.table
        refusal = self.authority.check_add(
            sender, pool_handle, element, vouched=not pending.own_children_only, now=now
        )
        if refusal is not None:
            table.counters["table_entries_refused"] += 1
            log.warn(
                "PE 0x{pe:08x} of pool {pool} in a handle table from {peer} refused: {reason}",
                pe=element.pe_identifier,
                pool=handleText(pool_handle),
                peer=link.describe(),
                identity=link.identity,
                reason=refusal,
            )
            if self.homes is not None and pending.own_children_only:
                self.homes.claimed(sender, pool_handle, element, now)
            return
        pending.marked.discard((pool_handle, element.pe_identifier))
        try:
            table.handlespace.register(
                pool_handle,
                element,
                now=now,
                identity=None,
                owner_identity=element.owner_identity,
            )
        except HandlespaceError as e:
            table.counters["table_entries_failed"] += 1
            log.warn(
                "PE 0x{pe:08x} of pool {pool} from {peer} not stored: {reason}",
                pe=element.pe_identifier,
                pool=handleText(pool_handle),
                peer=link.describe(),
                reason=e.reason,
            )
            return
        table.counters["table_entries_applied"] += 1

    # ------------------------------------------------------------------ server list, mentor

    def list_requested(self, link: Link, peer: Peer, message: enrp.ListRequest, now: float) -> None:
        """Answer with the peers we see alive (or reject while we are initialising)."""
        table = self.table
        if not self.synchronised:
            table.send(
                link.number,
                enrp.ListResponse(table.server_identifier, peer.server_identifier, reject=True),
            )
            return
        servers = tuple(
            other.server_information
            for other in table.peers.values()
            if other.server_information is not None
            and other.state in (PeerState.ACTIVE, PeerState.PROBING)
            and other.server_identifier != peer.server_identifier
        )
        table.send(
            link.number,
            enrp.ListResponse(table.server_identifier, peer.server_identifier, servers),
        )

    def list_received(self, link: Link, peer: Peer, message: enrp.ListResponse, now: float) -> None:
        """The mentor's server list: hints to connect to, then the handle table download."""
        table = self.table
        if peer.server_identifier != self._mentor or self.phase is not SyncPhase.LIST:
            table.unexpected(link, message)
            return
        peer.pending = None
        if message.reject:
            self._drop_mentor("it is not ready to give its server list", now)
            return
        for information in message.servers:
            # Hints only: the adapter connects, and the peer must authenticate like any other.
            table.hint(information)
        self.phase = SyncPhase.TABLE
        if not self._request_table(peer, own_children_only=False, now=now):
            self._drop_mentor("no connection", now)

    def _choose_mentor(self, peer: Peer, now: float) -> None:
        table = self.table
        link = table.primary(peer)
        if link is None:
            return
        self._mentor = peer.server_identifier
        self._mentor_retry = None
        self.phase = SyncPhase.LIST
        peer.pending = TableRequest(False, now + table.config.max_time_no_response)
        log.info("Mentor: ENRP server 0x{server:08x}", server=peer.server_identifier)
        table.send(link, enrp.ListRequest(table.server_identifier, peer.server_identifier))

    def _drop_mentor(self, reason: str, now: float) -> None:
        """Give the mentor up; go on at once with a backup mentor if there is one.

        RFC 5353 3.2.2.2 and 3.2.3: a mentor that rejects, does not answer, or stalls in
        the middle of the download is abandoned and the download restarts with a backup
        mentor; with none, we ask again after half the mentor discovery time.
        """
        mentor = self._mentor
        log.info("Giving up mentor 0x{server:08x}: {reason}", server=mentor or 0, reason=reason)
        peers = self.table.peers
        if mentor is not None:
            self._failed_mentors.add(mentor)
            if mentor in peers:
                peers[mentor].pending = None
        self._mentor = None
        self.phase = SyncPhase.SEARCHING
        backup = self._candidates(exclude=self._failed_mentors)
        if backup:
            self.table.counters["backup_mentors"] += 1
            log.info(
                "Backup mentor: ENRP server 0x{server:08x} (restarting the download)",
                server=backup[0].server_identifier,
            )
            self._choose_mentor(backup[0], now)
            return
        self._mentor_retry = now + self.table.config.mentor_discovery / 2

    def _candidates(self, exclude: set[int]) -> list[Peer]:
        """Peers that may serve as mentor, lowest identifier first."""
        return sorted(
            (
                p
                for p in self.table.peers.values()
                if p.links and p.state is PeerState.ACTIVE and p.server_identifier not in exclude
            ),
            key=lambda p: p.server_identifier,
        )

    def _search_mentor(self, now: float) -> None:
        # Every mentor failed once: start over with all of them.
        candidates = self._candidates(exclude=self._failed_mentors) or self._candidates(set())
        if candidates:
            self._choose_mentor(candidates[0], now)

    # ------------------------------------------------------------------ timers

    def next_deadline(self) -> float | None:
        """When mentor discovery, a retry or an outstanding request is next due."""
        result: list[float] = []
        if self._mentor_deadline is not None and self.phase is SyncPhase.SEARCHING:
            result.append(self._mentor_deadline)
        if self._mentor_retry is not None:
            result.append(self._mentor_retry)
        result.extend(
            peer.pending.deadline for peer in self.table.peers.values() if peer.pending is not None
        )
        return min(result, default=None)

    def request_timer(self, peer: Peer, now: float) -> None:
        """Give up ``peer``'s outstanding table or list request once it timed out."""
        pending = peer.pending
        if pending is None or now < pending.deadline:
            return
        peer.pending = None
        self.table.counters["table_requests_timed_out"] += 1
        # Ask again only after the peer dropped its half-served session, or its next
        # page would continue the old one (and a resync would sweep what it skipped).
        peer.resync_after = now + 2 * self.table.config.max_time_no_response
        if peer.server_identifier == self._mentor and self.phase in (
            SyncPhase.LIST,
            SyncPhase.TABLE,
        ):
            self._drop_mentor("it did not answer", now)

    def handle_timer(self, now: float) -> None:
        """Mentor retries and discovery deadline, expired sessions."""
        if self._mentor_retry is not None and now >= self._mentor_retry:
            self._mentor_retry = None
            if self.phase is SyncPhase.SEARCHING:
                self._search_mentor(now)
        if (
            self._mentor_deadline is not None
            and now >= self._mentor_deadline
            and self.phase is SyncPhase.SEARCHING
        ):
            # RFC 5353 3.2.2.1: nobody to learn from in time; serve alone.
            self._mentor_deadline = None
            self._mentor_retry = None
            peers = self.table.peers
            if self._mentor is not None and self._mentor in peers:
                peers[self._mentor].pending = None
            self._mentor = None
            self.phase = SyncPhase.DONE
            log.info(
                "No mentor answered within {seconds} s: serving alone",
                seconds=self.table.config.mentor_discovery,
            )
        for number, session in list(self._sessions.items()):
            if session.expires and session.expires < now:
                del self._sessions[number]


__all__ = ["SyncPhase", "Synchroniser"]
