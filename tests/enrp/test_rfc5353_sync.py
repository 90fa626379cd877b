"""RFC 5353 3.2 and 3.6 on the sans-IO peer core with injected time, the peers played by
hand: a mentor that stalls in the middle of the download is replaced by a backup mentor
(3.2.3), a rejecting mentor too (3.2.2.2), and an update from the PE's home during a
multi-page resynchronisation settles the PE's mark (3.6.3)."""

from __future__ import annotations

from tests.enrp.test_peers import POOL, element, tls
from twisted_rserpool.enrp.peers import PeerAction, PeerConfig, PeerCore, SendEnrp
from twisted_rserpool.handlespace import Handlespace
from twisted_rserpool.security.authorization import AuthorizationPolicy
from twisted_rserpool.wire import enrp

US, MENTOR, BACKUP = 1, 7, 9


def sent(actions: list[PeerAction], kind: type[enrp.EnrpMessage]) -> list[tuple[int, object]]:
    return [
        (a.connection, a.message)
        for a in actions
        if isinstance(a, SendEnrp) and isinstance(a.message, kind)
    ]


def joining() -> tuple[PeerCore, Handlespace]:
    """A new server with two configured peers: the mentor (connection 5) and a backup
    (connection 6); the mentor gave its list and one page of three."""
    handlespace = Handlespace()
    core = PeerCore(
        PeerConfig(US, max_time_no_response=1.0, mentor_discovery=3.0),
        handlespace,
        AuthorizationPolicy(),
        expect_mentor=True,
    )
    core.start(0.0)
    core.connection_ready(5, tls("enrp-7"), outgoing=True, now=0.0)
    actions = core.message_received(5, enrp.Presence(MENTOR, 0, 0), 0.1)
    assert sent(actions, enrp.ListRequest) == [(5, enrp.ListRequest(US, MENTOR))]
    core.connection_ready(6, tls("enrp-9"), outgoing=True, now=0.1)
    core.message_received(6, enrp.Presence(BACKUP, 0, 0), 0.1)
    actions = core.message_received(5, enrp.ListResponse(MENTOR, US), 0.2)
    assert sent(actions, enrp.HandleTableRequest) == [(5, enrp.HandleTableRequest(US, MENTOR))]
    page = enrp.HandleTableResponse(
        MENTOR, US, (enrp.PoolEntry(POOL, (element(1, MENTOR),)),), more_to_send=True
    )
    actions = core.message_received(5, page, 0.3)
    assert sent(actions, enrp.HandleTableRequest) == [(5, enrp.HandleTableRequest(US, MENTOR))]
    return core, handlespace


def run(core: PeerCore, until: float, now: float) -> tuple[float, list[PeerAction]]:
    """Run the core's timers up to ``until``, the peers staying alive; what it sent."""
    actions: list[PeerAction] = []
    while (deadline := core.next_deadline()) is not None and deadline <= until:
        assert deadline >= now
        now = deadline
        for number, server in ((5, MENTOR), (6, BACKUP)):
            # The checksum we hold for it: no audit of our own making.
            checksum = core.handlespace.pe_checksum(server)
            core.message_received(number, enrp.Presence(server, US, checksum), now)
        actions += core.handle_timer(now)
    return now, actions


def test_a_mentor_that_stalls_mid_download_is_replaced_by_the_backup() -> None:
    """The mentor sends one page with M=1 and then nothing: at MAX-TIME-NO-RESPONSE the
    download restarts from the backup mentor (list, then the whole table), and the
    server is synchronised with the backup's handlespace, never 'serving alone' with a
    partial one, even though MENTOR-DISCOVERY passes meanwhile."""
    core, handlespace = joining()
    now, actions = run(core, 1.5, 0.3)
    assert sent(actions, enrp.ListRequest) == [(6, enrp.ListRequest(US, BACKUP))]
    assert not core.synchronised
    assert core.counters["backup_mentors"] == 1
    actions = core.message_received(6, enrp.ListResponse(BACKUP, US), now)
    assert sent(actions, enrp.HandleTableRequest) == [(6, enrp.HandleTableRequest(US, BACKUP))]
    page = enrp.HandleTableResponse(
        BACKUP, US, (enrp.PoolEntry(POOL, (element(1, MENTOR),)),), more_to_send=True
    )
    core.message_received(6, page, 2.2)
    # Past MENTOR-DISCOVERY (3 s) the download from the backup still goes on.
    now, actions = run(core, 3.1, now)
    assert not core.synchronised
    rest = enrp.HandleTableResponse(
        BACKUP, US, (enrp.PoolEntry(POOL, tuple(element(pe, MENTOR) for pe in (2, 3))),)
    )
    core.message_received(6, rest, 3.15)
    assert core.synchronised
    assert {entry.pe_identifier for entry in handlespace.elements()} == {1, 2, 3}


def test_a_rejecting_mentor_is_replaced_by_the_backup_at_once() -> None:
    """RFC 5353 3.2.3: a mentor that rejects the handle table request (R flag): the next
    request goes to a backup mentor without waiting."""
    core, _ = joining()
    actions = core.message_received(5, enrp.HandleTableResponse(MENTOR, US, reject=True), 0.4)
    assert sent(actions, enrp.ListRequest) == [(6, enrp.ListRequest(US, BACKUP))]


def test_without_a_backup_the_mentor_is_asked_again_or_the_server_serves_alone() -> None:
    """With one configured peer that stalls, there is no backup: the server serves alone
    at MENTOR-DISCOVERY (and the audits repair the rest), as before."""
    core = PeerCore(
        PeerConfig(US, max_time_no_response=1.0, mentor_discovery=3.0),
        Handlespace(),
        AuthorizationPolicy(),
        expect_mentor=True,
    )
    core.start(0.0)
    core.connection_ready(5, tls("enrp-7"), outgoing=True, now=0.0)
    core.message_received(5, enrp.Presence(MENTOR, 0, 0), 0.1)
    core.message_received(5, enrp.ListResponse(MENTOR, US), 0.2)
    now = 0.2
    while not core.synchronised and now < 10:
        deadline = core.next_deadline()
        assert deadline is not None and deadline > now
        now = deadline
        core.message_received(5, enrp.Presence(MENTOR, US, 0), now)
        core.handle_timer(now)
    assert core.synchronised and 3.0 <= now < 4.0
    assert core.counters["backup_mentors"] == 0


def test_del_then_add_from_the_home_during_a_paged_resync_is_not_swept() -> None:
    """RFC 5353 3.6.3: we mark the peer's PEs and ask for its own (W=1) in pages. Between
    two pages the peer's PE 2 is deregistered and registered again (DEL_PE, ADD_PE): the
    page that would have carried it was built while it was gone. The update settles it:
    the last page does not sweep it."""
    handlespace = Handlespace()
    core = PeerCore(PeerConfig(US), handlespace, AuthorizationPolicy())
    core.start(0.0)
    core.connection_ready(5, tls("enrp-7"), outgoing=False, now=0.0)
    core.message_received(5, enrp.Presence(MENTOR, 0, handlespace.pe_checksum(MENTOR)), 0.0)
    for pe in (1, 2):
        core.message_received(
            5,
            enrp.HandleUpdate(MENTOR, 0, enrp.UpdateAction.ADD_PE, POOL, element(pe, MENTOR)),
            0.1,
        )
    other = Handlespace()
    for pe in (1, 2, 3):
        other.register(POOL, element(pe, MENTOR), now=0.0)
    actions = core.message_received(5, enrp.Presence(MENTOR, 0, other.pe_checksum(MENTOR)), 0.2)
    assert sent(actions, enrp.HandleTableRequest) == [
        (5, enrp.HandleTableRequest(US, MENTOR, own_children_only=True))
    ]
    first = enrp.HandleTableResponse(
        MENTOR, US, (enrp.PoolEntry(POOL, (element(3, MENTOR),)),), more_to_send=True
    )
    core.message_received(5, first, 0.3)
    # PE 2 leaves and comes back at its home between the pages.
    for action in (enrp.UpdateAction.DEL_PE, enrp.UpdateAction.ADD_PE):
        core.message_received(
            5, enrp.HandleUpdate(MENTOR, 0, action, POOL, element(2, MENTOR, port=7002)), 0.35
        )
    last = enrp.HandleTableResponse(MENTOR, US, (enrp.PoolEntry(POOL, (element(1, MENTOR),)),))
    core.message_received(5, last, 0.4)
    assert {entry.pe_identifier for entry in handlespace.elements()} == {1, 2, 3}
    assert core.counters["resync_swept"] == 0
    assert handlespace.pe_checksum(MENTOR) == other.pe_checksum(MENTOR)


def test_a_pe_gone_during_the_resync_is_still_swept() -> None:
    """The mark and sweep still removes what the home no longer has: a PE in no page and
    in no update is removed at the last page."""
    handlespace = Handlespace()
    core = PeerCore(PeerConfig(US), handlespace, AuthorizationPolicy())
    core.start(0.0)
    core.connection_ready(5, tls("enrp-7"), outgoing=False, now=0.0)
    core.message_received(5, enrp.Presence(MENTOR, 0, handlespace.pe_checksum(MENTOR)), 0.0)
    for pe in (1, 2):
        core.message_received(
            5,
            enrp.HandleUpdate(MENTOR, 0, enrp.UpdateAction.ADD_PE, POOL, element(pe, MENTOR)),
            0.1,
        )
    other = Handlespace()
    other.register(POOL, element(1, MENTOR), now=0.0)
    core.message_received(5, enrp.Presence(MENTOR, 0, other.pe_checksum(MENTOR)), 0.2)
    last = enrp.HandleTableResponse(MENTOR, US, (enrp.PoolEntry(POOL, (element(1, MENTOR),)),))
    core.message_received(5, last, 0.3)
    assert {entry.pe_identifier for entry in handlespace.elements()} == {1}
    assert core.counters["resync_swept"] == 1


def test_a_resync_timeout_after_the_initial_sync_does_not_restart_it() -> None:
    """The mentor served the download; later an audit's W=1 request to it goes unanswered:
    that request is given up, and the server stays synchronised (it does not go looking
    for a mentor again, nor download everything anew)."""
    core, handlespace = joining()
    last = enrp.HandleTableResponse(MENTOR, US, (enrp.PoolEntry(POOL, (element(2, MENTOR),)),))
    core.message_received(5, last, 0.4)
    assert core.synchronised
    other = Handlespace()
    other.register(POOL, element(9, MENTOR), now=0.0)
    actions = core.message_received(5, enrp.Presence(MENTOR, 0, other.pe_checksum(MENTOR)), 0.5)
    assert sent(actions, enrp.HandleTableRequest) == [
        (5, enrp.HandleTableRequest(US, MENTOR, own_children_only=True))
    ]
    _, actions = run(core, 3.0, 0.5)
    assert core.counters["table_requests_timed_out"] == 1
    assert core.synchronised
    assert sent(actions, enrp.ListRequest) == []
    assert {entry.pe_identifier for entry in handlespace.elements()} == {1, 2}


def test_a_mentor_with_too_many_downloads_rejects_another() -> None:
    """RFC 5353 3.2.3: a mentor serving ``max_download_sessions`` full downloads rejects
    the next one with the R flag; a W=1 resync is still served, and once a download is
    done another one may start."""
    handlespace = Handlespace()
    for pe in range(1, 6):
        handlespace.register(POOL, element(pe, US), now=0.0, identity="pe")
    core = PeerCore(
        PeerConfig(US, handle_table_page=2, max_download_sessions=2),
        handlespace,
        AuthorizationPolicy(),
    )
    core.start(0.0)
    for number, server in ((5, 7), (6, 8), (7, 9)):
        core.connection_ready(number, tls(f"enrp-{server}"), outgoing=False, now=0.0)
        core.message_received(
            number, enrp.Presence(server, 0, handlespace.pe_checksum(server)), 0.0
        )

    def ask(number: int, server: int, own: bool = False) -> enrp.HandleTableResponse:
        actions = core.message_received(number, enrp.HandleTableRequest(server, US, own), 0.1)
        ((_, answer),) = sent(actions, enrp.HandleTableResponse)
        assert isinstance(answer, enrp.HandleTableResponse)
        return answer

    assert ask(5, 7).more_to_send and ask(6, 8).more_to_send
    assert ask(7, 9).reject
    assert core.counters["table_requests_rejected"] == 1
    assert not ask(7, 9, own=True).reject
    while ask(5, 7).more_to_send:
        pass
    assert not ask(7, 9).reject
