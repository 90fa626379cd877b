"""RFC 5352 sections 3 and 7 procedures on an injected clock, one test per finding of issue
16: T1/T2/T3 expiry sends again to the same server and hunts in parallel (3.7.2), T4 from
the life the server granted (R2.3), a removed PE is told (3.2), ASAP_ERROR ends a retry
that cannot succeed, MAX-REG-ATTEMPT and its back-off, the pool user's cache (expiry,
CACHE_PURGE, overall policy), business cards (3.9) and announcement hints (3.6)."""

from __future__ import annotations

from ipaddress import IPv4Address
from typing import Any

from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import Clock
from twisted.python.failure import Failure

from tests.enrp.test_registrar import Harness, psk
from twisted_rserpool.asap import AsapTimers, PoolElement, PoolUser
from twisted_rserpool.asap.announcements import (
    AnnounceAddress,
    AnnouncementReceiver,
    parseAnnounceListen,
)
from twisted_rserpool.asap.errors import (
    NoPoolElementAvailable,
    RegistrationRefused,
    RequestTimedOut,
)
from twisted_rserpool.asap.hunt import ServerHunt
from twisted_rserpool.asap.link import HomeServerLink
from twisted_rserpool.asap.registration import (
    Refused,
    Registered,
    RegistrationCore,
    RegistrationState,
    ReportFailure,
    SendToHome,
    granted_life,
)
from twisted_rserpool.enrp.registrar import Send
from twisted_rserpool.handlespace import CacheState
from twisted_rserpool.security.context import SecurityContext
from twisted_rserpool.wire import asap
from twisted_rserpool.wire.errors import CauseCode
from twisted_rserpool.wire.parameters import (
    LeastUsedPolicy,
    OperationError,
    PoolElementParameter,
    RoundRobinPolicy,
    TcpTransport,
)

POOL = b"pool"
TIMERS = AsapTimers(
    t1_enrp_request=10.0,
    t2_registration=10.0,
    t3_deregistration=10.0,
    t5_server_hunt=100.0,
    retran_max=40.0,
)
TLS13 = SecurityContext(True, "TLSv1.3", "TLS_AES_256_GCM_SHA384", psk_identity="enrp")


def element(pe: int = 0x1234, life: int = 300, port: int = 7000) -> PoolElementParameter:
    return PoolElementParameter(
        pe, 0, life, TcpTransport(port, IPv4Address("127.0.0.1")), RoundRobinPolicy()
    )


ELEMENT = element()


def result(d: Deferred[Any]) -> Any:
    box: list[Any] = []
    d.addBoth(box.append)
    assert box, "the Deferred has not fired"
    return box[0]


# ---------------------------------------------------------------------- fake servers


class StubConnection:
    """A connection to a fake ENRP server: records what is sent, closes on request."""

    def __init__(self, server: StubServer) -> None:
        self.server = server
        self.ready = True
        self.closed = False
        self.sent: list[asap.AsapMessage] = []
        self.peer = server.name

    def sendAsap(self, message: asap.AsapMessage) -> None:
        assert not self.closed, "sent on a closed connection"
        self.sent.append(message)

    def close(self) -> None:
        self.closed = True
        self.ready = False


class StubServer:
    """A client endpoint for a fake ENRP server: each connect makes a StubConnection."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.connections: list[StubConnection] = []

    def connect(self, factory: Any) -> Deferred[Any]:
        connection = StubConnection(self)
        self.connections.append(connection)
        return succeed(connection)

    def __repr__(self) -> str:
        return f"<server {self.name}>"


def ready(link: HomeServerLink, server: StubServer) -> StubConnection:
    """The latest attempt to ``server`` completed its TLS handshake and authenticated."""
    connection = server.connections[-1]
    link._ready(connection, TLS13)  # type: ignore[arg-type]
    return connection


def user_with(servers: list[StubServer], clock: Clock, **options: Any) -> PoolUser:
    user = PoolUser(servers, clock=clock, timers=TIMERS, **options)  # type: ignore[arg-type]
    user.startService()
    return user


def element_with(servers: list[StubServer], clock: Clock, **options: Any) -> PoolElement:
    """A pool element whose link runs against fake servers (its user transport is not opened)."""
    pe = PoolElement(POOL, None, [], "tcp:0", clock=clock, timers=TIMERS, insecure=True, **options)
    pe.running = True
    pe.core = RegistrationCore(
        POOL, ELEMENT, TIMERS, stop_after_max_reg_attempt=pe.stopAfterMaxRegAttempt
    )
    pe.link = HomeServerLink(
        servers,  # type: ignore[arg-type]
        clock,
        TIMERS,
        onReady=pe._linkReady,
        onMessage=pe._linkMessage,
        onLost=pe._linkLost,
    )
    pe.link.start()
    return pe


# ---------------------------------------------------------------------- item 2: T1, T2, T3


def test_hunt_in_parallel_excludes_the_home_server() -> None:
    """A hunt begun beside a live home server tries only the others, and none if alone."""
    hunt: ServerHunt[str] = ServerHunt(["a", "b"], TIMERS)
    assert hunt.begin(0.0, exclude=["a"]).attempt == "b"
    alone: ServerHunt[str] = ServerHunt(["a"], TIMERS)
    assert alone.begin(0.0, exclude=["a"]).attempt is None


def test_t1_expiry_resends_to_the_same_server_and_its_late_answer_counts() -> None:
    """RFC 5352 3.7.2: at T1 the resolution goes again to the same server and a hunt starts
    in parallel; the home connection stays, so the slow server's answer at 1.3 x T1 still
    resolves the request (it used to be dropped with the connection: RequestTimedOut)."""
    clock = Clock()
    a, b = StubServer("a"), StubServer("b")
    user = user_with([a, b], clock)
    home = ready(user.link, a)  # type: ignore[arg-type]
    d = user.resolve(POOL)
    assert home.sent == [asap.HandleResolution(POOL)]
    clock.advance(10.0)
    assert home.sent == [asap.HandleResolution(POOL)] * 2
    assert not home.closed
    assert len(b.connections) == 1  # the hunt in parallel
    clock.advance(3.0)
    user.link._message(home, asap.HandleResolutionResponse(POOL, (ELEMENT,)))  # type: ignore[union-attr, arg-type]
    assert [pe.pe_identifier for pe in result(d)] == [ELEMENT.pe_identifier]
    assert not home.closed
    assert b.connections[0].closed  # the hunt was abandoned: the home answered


def test_t1_hunt_finds_a_server_which_becomes_home_while_the_old_one_may_answer() -> None:
    """The server the parallel hunt finds becomes home and gets the request; the old home
    stays open as a previous connection whose answer counts, then is released."""
    clock = Clock()
    a, b = StubServer("a"), StubServer("b")
    user = user_with([a, b], clock)
    link = user.link
    assert link is not None
    old = ready(link, a)
    d = user.resolve(POOL)
    clock.advance(10.0)
    new = ready(link, b)
    assert link.connection is new and link.previous == [old]  # type: ignore[comparison-overlap]
    assert new.sent == [asap.HandleResolution(POOL)]
    link._message(old, asap.HandleResolutionResponse(POOL, (ELEMENT,)))  # type: ignore[arg-type]
    assert result(d)
    assert old.closed and not new.closed and link.previous == []


def test_sh1_never_more_than_three_connections() -> None:
    """SH1: home, one previous connection and one attempt at most; a second switch closes
    the oldest."""
    clock = Clock()
    a, b, c = StubServer("a"), StubServer("b"), StubServer("c")
    user = user_with([a, b, c], clock)
    link = user.link
    assert link is not None
    first = ready(link, a)
    user.resolve(POOL)
    clock.advance(10.0)
    second = ready(link, b)
    clock.advance(10.0)  # the second T1 expiry: a hunt beside b
    attempts = [conn for server in (a, c) for conn in server.connections if not conn.closed]
    assert len(attempts) == 2  # the previous (a) and the attempt (c): three with b
    ready(link, c)
    assert first.closed and not second.closed
    assert link.previous == [second]  # type: ignore[comparison-overlap]


def test_a_parallel_hunt_skips_servers_still_connected() -> None:
    """A second hunt in parallel does not dial the server it moved away from (still
    connected as the previous home): with no other server it only sends again."""
    clock = Clock()
    a, b = StubServer("a"), StubServer("b")
    user = user_with([a, b], clock)
    link = user.link
    assert link is not None
    ready(link, a)
    user.resolve(POOL)
    clock.advance(10.0)
    home = ready(link, b)
    clock.advance(10.0)
    assert len(a.connections) == 1 and len(b.connections) == 1
    assert home.sent == [asap.HandleResolution(POOL)] * 2


def test_t1_alone_waits_for_the_only_server() -> None:
    """With no other server to hunt for, the request is only sent again."""
    clock = Clock()
    a = StubServer("a")
    user = user_with([a], clock)
    home = ready(user.link, a)  # type: ignore[arg-type]
    d = user.resolve(POOL)
    clock.advance(10.0)
    clock.advance(10.0)
    assert home.sent == [asap.HandleResolution(POOL)] * 3 and not home.closed
    assert len(a.connections) == 1
    clock.advance(10.0)
    assert result(d).check(RequestTimedOut)


def test_t2_expiry_keeps_the_home_connection_and_a_late_response_registers() -> None:
    """T2 expiry sends the registration again on the same connection (closing it would make
    the server drop our registrations) and hunts in parallel; the late response counts."""
    clock = Clock()
    a, b = StubServer("a"), StubServer("b")
    pe = element_with([a, b], clock)
    home = ready(pe.link, a)  # type: ignore[arg-type]
    assert [type(m) for m in home.sent] == [asap.Registration]
    clock.advance(10.0)
    assert [type(m) for m in home.sent] == [asap.Registration] * 2
    assert not home.closed and len(b.connections) == 1
    clock.advance(3.0)
    pe._linkMessage(home, asap.RegistrationResponse(POOL, ELEMENT.pe_identifier))  # type: ignore[arg-type]
    assert pe.registered and not home.closed


def test_t2_new_home_from_the_parallel_hunt_gets_the_registration() -> None:
    """A server found by the parallel hunt becomes home and the registration goes there;
    once it answers, the old connection is released."""
    clock = Clock()
    a, b = StubServer("a"), StubServer("b")
    pe = element_with([a, b], clock)
    old = ready(pe.link, a)  # type: ignore[arg-type]
    clock.advance(10.0)
    new = ready(pe.link, b)  # type: ignore[arg-type]
    assert [type(m) for m in new.sent] == [asap.Registration]
    assert not old.closed
    pe._linkMessage(new, asap.RegistrationResponse(POOL, ELEMENT.pe_identifier))  # type: ignore[arg-type]
    assert pe.registered and old.closed


def test_t3_expiry_resends_and_hunts_in_parallel() -> None:
    """RFC 5352 3.2: T3 expiry sends the de-registration again and hunts in parallel; a new
    home gets the de-registration; after MAX-REQUEST-RETRANSMIT it is given up."""
    clock = Clock()
    a, b = StubServer("a"), StubServer("b")
    pe = element_with([a, b], clock)
    old = ready(pe.link, a)  # type: ignore[arg-type]
    pe._linkMessage(old, asap.RegistrationResponse(POOL, ELEMENT.pe_identifier))  # type: ignore[arg-type]
    assert pe.core is not None
    pe._perform(pe.core.deregister(clock.seconds()), None)
    clock.advance(10.0)
    dereg = asap.Deregistration(POOL, ELEMENT.pe_identifier)
    assert old.sent[-2:] == [dereg, dereg] and not old.closed
    new = ready(pe.link, b)  # type: ignore[arg-type]
    assert new.sent == [dereg]
    clock.advance(10.0)
    clock.advance(10.0)
    assert pe.core.state is RegistrationState.STOPPED


# ---------------------------------------------------------------------- item 3: T4


def test_t4_follows_the_life_the_server_granted() -> None:
    """R2.3: a server that cut the life (--max-registration-life 10 against a PE's 60) says
    so in the Invalid Values warning (the PE parameter as granted, RFC 5354 3.12.4); T4 is
    derived from it, so the PE re-registers before the registration expires (it used to
    guess 30 s and re-register every 15 s)."""
    h = Harness(max_registration_life=10)
    response = h.register(h.connect(psk("pe-1")), life=60)
    assert isinstance(response, asap.RegistrationResponse) and response.error is not None
    assert granted_life(response.error, 1) == 10
    core = RegistrationCore(b"echo", element(pe=1, life=60), AsapTimers())
    core.home_connected(0.0)
    assert core.message_from_home(response, 1.0) == [Registered(10, response.error)]
    deadline = core.next_deadline()
    assert deadline is not None and deadline - 1.0 < 10


def test_t4_guess_without_the_granted_life() -> None:
    """A warning without the granted PE parameter (another server) is a guess, and says so."""
    core = RegistrationCore(POOL, element(life=60), AsapTimers())
    core.home_connected(0.0)
    warning = OperationError.single(CauseCode.INVALID_VALUES)
    [registered] = core.message_from_home(
        asap.RegistrationResponse(POOL, ELEMENT.pe_identifier, error=warning), 0.0
    )
    assert registered == Registered(30, warning, life_known=False)


# ---------------------------------------------------------------------- item 4: removal


def _to(actions: list[Any], connection: int) -> list[Any]:
    return [a.message for a in actions if isinstance(a, Send) and a.connection == connection]


def test_a_pe_removed_for_an_unanswered_keep_alive_is_told_and_registers_again() -> None:
    """A PE the server removes while its connection is up (keep-alive timeout) gets an
    ASAP_DEREGISTRATION_RESPONSE at once; its late keep-alive ACK gets one too. Either way
    the PE registers again (it used to stay out of the pool until T4)."""
    h = Harness(keep_alive_interval=5.0, keep_alive_timeout=2.0)
    c = h.connect(psk("pe-1"))
    h.register(c)
    h.advance(7.5)  # the keep-alive goes out
    removal = _to(h.advance(2.5), c)
    assert h.handlespace.get(b"echo", 1) is None
    assert removal == [asap.DeregistrationResponse(b"echo", 1)]
    late = _to(h.send(c, asap.EndpointKeepAliveAck(b"echo", 1)), c)
    assert late == [asap.DeregistrationResponse(b"echo", 1)]
    assert h.registrar.counters["keep_alive_acks_unmatched"] == 1
    core = RegistrationCore(b"echo", element(pe=1, life=30), AsapTimers())
    core.home_connected(0.0)
    core.message_from_home(asap.RegistrationResponse(b"echo", 1), 0.0)
    [send] = core.message_from_home(removal[0], 10.0)
    assert isinstance(send, SendToHome) and isinstance(send.message, asap.Registration)


# ---------------------------------------------------------------------- item 7: ASAP_ERROR


def test_asap_error_that_cannot_be_cured_ends_the_retries() -> None:
    """A malformed registration gets only ASAP_ERROR: a cause that no retry cures ends the
    loop (state REFUSED, no timer); a transient one (lack of resources) leaves T2 running."""
    core = RegistrationCore(POOL, ELEMENT, TIMERS)
    core.home_connected(0.0)
    busy = asap.ErrorMessage(OperationError.single(CauseCode.LACK_OF_RESOURCES))
    assert core.message_from_home(busy, 1.0) == []
    assert core.next_deadline() == 10.0
    error = OperationError.single(CauseCode.UNRECOGNIZED_PARAMETER, b"\x40\x01\x00\x04")
    assert core.message_from_home(asap.ErrorMessage(error), 2.0) == [Refused(error, True)]
    assert core.state is RegistrationState.REFUSED and core.next_deadline() is None


def test_asap_error_is_surfaced_by_the_pool_element() -> None:
    """The pool element logs and counts it and fails whenRegistered with the cause."""
    clock = Clock()
    a = StubServer("a")
    pe = element_with([a], clock)
    waiting = pe.whenRegistered()
    home = ready(pe.link, a)  # type: ignore[arg-type]
    error = OperationError.single(CauseCode.INVALID_VALUES, b"\x00\x0a\x00\x05x")
    pe._linkMessage(home, asap.ErrorMessage(error))  # type: ignore[arg-type]
    failure = result(waiting)
    assert isinstance(failure, Failure) and failure.check(RegistrationRefused)  # type: ignore[no-untyped-call]
    assert pe.counters["asap_errors"] == 1
    clock.advance(100.0)
    assert [type(m) for m in home.sent] == [asap.Registration]  # no more attempts


def test_asap_error_is_surfaced_by_the_pool_user() -> None:
    """The pool user counts and keeps the latest ASAP_ERROR causes."""
    clock = Clock()
    a = StubServer("a")
    user = user_with([a], clock)
    home = ready(user.link, a)  # type: ignore[arg-type]
    error = OperationError.single(CauseCode.UNRECOGNIZED_MESSAGE, b"\x7f\x00\x00\x04")
    user.link._message(home, asap.ErrorMessage(error))  # type: ignore[union-attr, arg-type]
    assert user.counters["asap_errors"] == 1 and user.asapErrors == [error]


# ---------------------------------------------------------------------- item 9


def test_max_reg_attempt_reports_and_backs_off_to_retran_max() -> None:
    """Against a silent server: T2, T2 (MAX-REG-ATTEMPT 2, reported once), then the time
    between attempts doubles up to RETRAN-MAX (7.3); whenRegistered fails at the report."""
    clock = Clock()
    a = StubServer("a")
    pe = element_with([a], clock)
    waiting = pe.whenRegistered()
    home = ready(pe.link, a)  # type: ignore[arg-type]
    times = []
    for _ in range(5):
        deadline = pe.core.next_deadline()  # type: ignore[union-attr]
        assert deadline is not None
        times.append(deadline - clock.seconds())
        clock.advance(deadline - clock.seconds())
    assert times == [10.0, 10.0, 20.0, 40.0, 40.0]
    assert result(waiting).check(RequestTimedOut)
    assert len([m for m in home.sent if isinstance(m, asap.Registration)]) == 6


def test_max_reg_attempt_can_stop_the_attempts() -> None:
    """stopAfterMaxRegAttempt: RFC 5352 3.1's "stop attempting registration"."""
    core = RegistrationCore(POOL, ELEMENT, TIMERS, stop_after_max_reg_attempt=True)
    core.home_connected(0.0)
    core.handle_timer(10.0)
    assert core.handle_timer(20.0) == [ReportFailure(2, stopped=True)]
    assert core.next_deadline() is None and core.state is RegistrationState.REFUSED


def test_stale_cache_entries_are_discarded() -> None:
    """A pool nobody refreshes is dropped stale_cache_value + the discard timeout after its
    resolution (cache.expire runs on the pool user's timer)."""
    clock = Clock()
    a = StubServer("a")
    user = user_with([a], clock)
    home = ready(user.link, a)  # type: ignore[arg-type]
    d = user.resolve(POOL)
    user.link._message(home, asap.HandleResolutionResponse(POOL, (ELEMENT,)))  # type: ignore[union-attr, arg-type]
    assert result(d)
    clock.advance(TIMERS.stale_cache_value + 60.0)
    assert user.cache.state(POOL, clock.seconds()) is CacheState.MISSING
    assert POOL not in user.cache.handlespace and user.counters["cache_discards"] == 1


def test_cache_purge() -> None:
    """CachePurgeRequest (6.4): the pool is forgotten and the next use resolves it again."""
    clock = Clock()
    a = StubServer("a")
    user = user_with([a], clock)
    home = ready(user.link, a)  # type: ignore[arg-type]
    d = user.resolve(POOL)
    user.link._message(home, asap.HandleResolutionResponse(POOL, (ELEMENT,)))  # type: ignore[union-attr, arg-type]
    result(d)
    user.purgeCache(POOL)
    assert user.cache.state(POOL, clock.seconds()) is CacheState.MISSING
    user.resolve(POOL)
    assert home.sent == [asap.HandleResolution(POOL)] * 2


def test_a_vanished_pool_gives_no_pool_element_available() -> None:
    """Selecting a PE of a pool the server no longer knows fails with NoPoolElementAvailable
    (docs/asap.md), the server's Unknown Pool Handle as its cause."""
    clock = Clock()
    a = StubServer("a")
    user = user_with([a], clock)
    home = ready(user.link, a)  # type: ignore[arg-type]
    d = user.selectPoolElement(POOL)
    unknown = OperationError.single(CauseCode.UNKNOWN_POOL_HANDLE)
    user.link._message(home, asap.HandleResolutionResponse(POOL, error=unknown))  # type: ignore[union-attr, arg-type]
    assert result(d).check(NoPoolElementAvailable)


def test_the_overall_policy_of_a_response_is_used() -> None:
    """RFC 5352 2.2.6: the overall policy decides (round robin when absent); a PE's policy of
    another type is ignored, one of the same type keeps its values."""
    clock = Clock()
    a = StubServer("a")
    user = user_with([a], clock)
    home = ready(user.link, a)  # type: ignore[arg-type]
    loaded = PoolElementParameter(
        7, 0, 300, TcpTransport(7007, IPv4Address("127.0.0.1")), LeastUsedPolicy(5)
    )
    d = user.resolve(POOL)
    response = asap.HandleResolutionResponse(POOL, (ELEMENT, loaded), LeastUsedPolicy(0))
    user.link._message(home, response)  # type: ignore[union-attr, arg-type]
    policies = {pe.pe_identifier: pe.policy for pe in result(d)}
    assert policies == {ELEMENT.pe_identifier: LeastUsedPolicy(0), 7: LeastUsedPolicy(5)}
    user.purgeCache()
    d = user.resolve(POOL)
    user.link._message(home, asap.HandleResolutionResponse(POOL, (loaded,)))  # type: ignore[union-attr, arg-type]
    assert [pe.policy for pe in result(d)] == [RoundRobinPolicy()]


# ---------------------------------------------------------------------- item 5: cards


def test_business_card_pe_is_chosen_even_when_not_cached() -> None:
    """BC2: the card's preferred PE is used although the cache (a 3-PE answer) lacks it;
    the card carries its transport."""
    clock = Clock()
    a = StubServer("a")
    user = user_with([a], clock)
    home = ready(user.link, a)  # type: ignore[arg-type]
    d = user.resolve(POOL)
    user.link._message(home, asap.HandleResolutionResponse(POOL, (ELEMENT,)))  # type: ignore[union-attr, arg-type]
    result(d)
    card_pe = element(pe=0x99, port=7099)
    chosen = result(user.selectPoolElement(POOL, preferred=[card_pe]))
    assert chosen == card_pe
    assert result(user.selectPoolElement(POOL, exclude=[0x99], preferred=[card_pe])) == ELEMENT


def test_business_card_of_an_uncached_pool_is_resolved() -> None:
    """BC1: a card naming a pool the cache has no entry for makes a handle resolution."""
    clock = Clock()
    a = StubServer("a")
    user = user_with([a], clock)
    home = ready(user.link, a)  # type: ignore[arg-type]
    user.businessCardReceived(asap.BusinessCard(b"theirs", (ELEMENT,)))
    assert home.sent == [asap.HandleResolution(b"theirs")]
    user.link._message(home, asap.HandleResolutionResponse(b"theirs", (ELEMENT,)))  # type: ignore[union-attr, arg-type]
    user.businessCardReceived(asap.BusinessCard(b"theirs", (ELEMENT,)))
    assert len(home.sent) == 1  # cached now


# ---------------------------------------------------------------------- item 6: announcements


def test_announcement_receiver_feeds_the_hints() -> None:
    """A datagram with ASAP_SERVER_ANNOUNCE adds its TCP transport to the hunt for T7 and,
    the hunt having nothing to try, is tried at once; other datagrams are dropped and
    counted."""
    clock = Clock()
    made: list[TcpTransport] = []
    servers: list[StubServer] = []

    def endpoint(transport: TcpTransport) -> Any:
        made.append(transport)
        servers.append(StubServer(f"announced:{transport.port}"))
        return servers[-1]

    user = user_with([], clock, announcedServer=endpoint)
    assert user.link is not None
    receiver = AnnouncementReceiver(user.link.announcementReceived)
    transport = TcpTransport(3864, IPv4Address("127.0.0.9"))
    receiver.datagramReceived(asap.ServerAnnounce(7, (transport,)).encode(), ("127.0.0.9", 1))
    receiver.datagramReceived(b"\x0a\x00", ("127.0.0.9", 1))
    receiver.datagramReceived(asap.HandleResolution(POOL).encode(), ("127.0.0.9", 1))
    assert made == [transport]
    assert len(servers[0].connections) == 1  # tried without waiting for T5
    assert receiver.counters == {"announcements": 1, "dropped": 2}
    assert [repr(s) for s in user.link.hunt.candidates(clock.seconds())] == [
        "<server announced:3864>"
    ]
    clock.advance(TIMERS.t7_enrp_outdate)
    assert user.link.hunt.candidates(clock.seconds()) == []


def test_announce_listen_addresses() -> None:
    """[ADDRESS:]PORT: a multicast address is joined, a unicast one bound."""
    assert parseAnnounceListen("3863") == AnnounceAddress(3863)
    assert parseAnnounceListen("127.0.0.1:4000") == AnnounceAddress(4000, "127.0.0.1")
    assert parseAnnounceListen("224.0.1.185:3863") == AnnounceAddress(3863, group="224.0.1.185")
    assert parseAnnounceListen("224.0.1.185:3863:127.0.0.1") == AnnounceAddress(
        3863, "127.0.0.1", "224.0.1.185"
    )
    for bad in ("x", "127.0.0.1:3863:127.0.0.1", "1.2.3.4:70000"):
        try:
            parseAnnounceListen(bad)
        except ValueError:
            continue
        raise AssertionError(bad)


def test_a_pool_element_resolves_over_its_registration_connection() -> None:
    """3.3 NR3: a PE resolves a handle at its home over the registration connection, with
    T1 (sent again on expiry) and the cache (C4: a fresh entry answers at once)."""
    clock = Clock()
    a = StubServer("a")
    pe = element_with([a], clock)
    home = ready(pe.link, a)  # type: ignore[arg-type]
    pe._linkMessage(home, asap.RegistrationResponse(POOL, ELEMENT.pe_identifier))  # type: ignore[arg-type]
    d = pe.resolve(b"other")
    assert home.sent[-1] == asap.HandleResolution(b"other")
    clock.advance(10.0)
    assert home.sent[-2:] == [asap.HandleResolution(b"other")] * 2 and not home.closed
    pe._linkMessage(home, asap.HandleResolutionResponse(b"other", (ELEMENT,)))  # type: ignore[arg-type]
    assert result(d) == [ELEMENT]
    assert result(pe.resolve(b"other")) == [ELEMENT]
    assert home.sent.count(asap.HandleResolution(b"other")) == 2


def test_a_pool_element_resolves_the_pool_of_a_card_it_receives() -> None:
    """BC1 at the PE: a PU/PE's card for a pool the PE has no entry for is resolved."""
    clock = Clock()
    a = StubServer("a")
    pe = element_with([a], clock)
    home = ready(pe.link, a)  # type: ignore[arg-type]
    pe.businessCardReceived(asap.BusinessCard(b"users", (ELEMENT,)))
    assert home.sent[-1] == asap.HandleResolution(b"users")
    pe._linkMessage(home, asap.HandleResolutionResponse(b"users", (ELEMENT,)))  # type: ignore[arg-type]
    pe.businessCardReceived(asap.BusinessCard(b"users", (ELEMENT,)))
    assert home.sent.count(asap.HandleResolution(b"users")) == 1
    unknown = OperationError.single(CauseCode.UNKNOWN_POOL_HANDLE)
    pe.businessCardReceived(asap.BusinessCard(b"gone"))
    pe._linkMessage(home, asap.HandleResolutionResponse(b"gone", error=unknown))  # type: ignore[arg-type]
    assert pe.cache.state(b"gone", clock.seconds()) is CacheState.MISSING


def test_announced_hints_are_bounded() -> None:
    """RFC 5355 2.12: anyone may announce, so at most 16 announced servers are hints at a
    time; more are counted and ignored until the old hints expire (T7)."""
    clock = Clock()
    user = user_with([], clock, announcedServer=lambda t: StubServer(f"s{t.port}"))
    link = user.link
    assert link is not None
    many = tuple(TcpTransport(4000 + i, IPv4Address("127.0.0.1")) for i in range(40))
    link.announcementReceived(asap.ServerAnnounce(1, many))
    assert len(link.hunt.candidates(clock.seconds())) == 16
    assert link.announcementsIgnored == 24
    clock.advance(TIMERS.t7_enrp_outdate)
    link.announcementReceived(asap.ServerAnnounce(1, many[-1:]))
    assert [repr(s) for s in link.hunt.candidates(clock.seconds())] == ["<server s4039>"]
