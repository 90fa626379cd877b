"""Pool elements, a pool user and in-process ENRP servers over TLS on loopback."""

from __future__ import annotations

from dataclasses import replace
from typing import Any, ClassVar

from cryptography import x509
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.internet.protocol import Factory
from twisted.trial.unittest import TestCase
from zope.interface import implementer

from tests.asap.support import (
    FAST,
    FAST_MAPPING,
    Collector,
    Credentials,
    Echo,
    Recording,
    credentials,
    reactor,
    sleep,
    startServer,
    waitFor,
)
from tests.security.support import KEY_A, KEY_B, pskFile
from twisted_rserpool.asap import (
    FailoverEvent,
    FailoverRefused,
    IFailoverObserver,
    PoolElement,
    PoolUser,
    Session,
)
from twisted_rserpool.endpoints import TlsClientEndpoint
from twisted_rserpool.security.authorization import AuthorizationPolicy, Grant, Role
from twisted_rserpool.security.context import SecurityContext
from twisted_rserpool.security.tls import PskClientCreator, loadCertificates
from twisted_rserpool.transport.protocol import RSerPoolProtocol
from twisted_rserpool.wire import asap
from twisted_rserpool.wire.parameters import LeastUsedPolicy, PoolElementParameter, TcpTransport

POOL = b"echo"


@implementer(IFailoverObserver)
class Observer:
    """Records every failover; answers ``answer``."""

    def __init__(self, answer: bool = True) -> None:
        self.events: list[FailoverEvent] = []
        self.answer = answer

    def failoverOccurred(self, event: FailoverEvent) -> bool:
        self.events.append(event)
        return self.answer


class Harness:
    """Starts PEs and PUs for one test and stops them at its end."""

    def __init__(self, testCase: TestCase, creds: Credentials) -> None:
        self.testCase = testCase
        self.creds = creds
        self.roots: list[x509.Certificate] = loadCertificates(creds.caFile)

    async def pe(self, serverPorts: list[int], factory: Any = None, **options: Any) -> PoolElement:
        element = PoolElement(
            POOL,
            factory if factory is not None else Recording(Echo),
            [self.creds.peClient(port) for port in serverPorts],
            options.pop("listen", self.creds.peListen()),
            timers=FAST,
            registrationLife=options.pop("registrationLife", 60),
            userMappingConfig=FAST_MAPPING,
            **options,
        )
        element.startService()
        self.testCase.addCleanup(element.stopService)
        await element.whenRegistered()
        return element

    def pu(self, serverPorts: list[int], **options: Any) -> PoolUser:
        user = PoolUser(
            [self.creds.puClient(port) for port in serverPorts],
            peTrustRoots=self.roots,
            timers=FAST,
            sessionMappingConfig=FAST_MAPPING,
            **options,
        )
        user.startService()
        self.testCase.addCleanup(user.stopService)
        return user


class LoopbackTests(TestCase):
    """End to end over TLS with an in-process ENRP server."""

    timeout = 20

    async def test_register_resolve_connect_echo(self) -> None:
        """A PE registers (TLS-PSK), a PU resolves the pool (server certificate verified)
        and its session echoes application messages through the PE over TLS."""
        creds = credentials(self)
        server = await startServer(self, creds)
        harness = Harness(self, creds)
        pe = await harness.pe([server.portNumber])
        entry = server.server.registrar.handlespace.get(POOL, pe.peIdentifier)
        assert entry is not None and entry.identity == "pe"
        user = harness.pu([server.portNumber])
        elements = await user.resolve(POOL)
        assert [e.pe_identifier for e in elements] == [pe.peIdentifier]
        client = await user.connect(POOL, Recording(Collector))
        assert isinstance(client, Collector)
        session = client.transport
        assert isinstance(session, Session)
        assert session.securityContext is not None and session.securityContext.authenticated
        assert session.securityContext.certificate_subject == "CN=pe.test"
        session.write(b"hello")
        session.write(b"world")
        await waitFor(lambda: client.received == [b"hello", b"world"])

    async def test_failover_echoes_cookie_and_resends_unacknowledged(self) -> None:
        """When the PE dies, the session reports it, moves to the other PE, echoes the last
        cookie, sends again the message the dead PE never acknowledged, and tells the
        observer both security contexts."""
        creds = credentials(self)
        server = await startServer(self, creds)
        harness = Harness(self, creds)

        class Dying(Echo):
            def dataReceived(self, data: bytes) -> None:
                if data == b"fatal":
                    assert self.transport is not None
                    self.transport.abortConnection()  # type: ignore[attr-defined]
                    return
                super().dataReceived(data)
                assert self.transport is not None
                self.transport.sendCookie(b"state:" + data)  # type: ignore[attr-defined]

        first = await harness.pe([server.portNumber], Recording(Dying))
        observer = Observer()
        user = harness.pu([server.portNumber], failoverObservers=[observer])
        client = await user.connect(POOL, Recording(Collector))
        assert isinstance(client, Collector) and isinstance(client.transport, Session)
        session = client.transport
        session.write(b"one")
        await waitFor(lambda: session.cookie == b"state:one")
        survivors = Recording(Echo)
        second = await harness.pe([server.portNumber], survivors)
        session.write(b"fatal")
        await waitFor(lambda: len(session.failovers) == 1)
        await waitFor(lambda: b"fatal" in client.received)
        [event] = observer.events
        assert event.old_element.pe_identifier == first.peIdentifier
        assert event.new_element.pe_identifier == second.peIdentifier
        assert event.old_context.certificate_subject == "CN=pe.test"
        assert event.new_context.authenticated and not event.weaker
        assert event.cookie == b"state:one" and event.resend == 1
        [echo] = survivors.built
        assert isinstance(echo, Echo)
        assert echo.cookies == [b"state:one"]
        assert echo.received == [b"fatal"]
        assert user.counters["unreachable_sent"] == 1

    async def test_weaker_pe_is_refused_by_default(self) -> None:
        """A failover from a TLS 1.3 PE to a TLS 1.2 PE is refused: the session closes with
        FailoverRefused, and the observer still heard of it."""
        creds = credentials(self)
        server = await startServer(self, creds)
        harness = Harness(self, creds)
        strong = await harness.pe([server.portNumber])
        observer = Observer()
        user = harness.pu([server.portNumber], failoverObservers=[observer])
        client = await user.connect(POOL, Recording(Collector))
        assert isinstance(client, Collector) and isinstance(client.transport, Session)
        await harness.pe([server.portNumber], listen=creds.peListen(maximumTlsVersion="1.2"))
        for connection in list(strong.connections):
            connection.close()
        await strong.stopService()
        await client.ended
        reason = client.reason
        assert reason is not None
        assert reason.check(FailoverRefused)
        [event] = observer.events
        assert event.weaker
        assert event.old_context.tls_version == "TLSv1.3"
        assert event.new_context.tls_version == "TLSv1.2"

    async def test_observer_veto_closes_the_session(self) -> None:
        """An observer answering False refuses an otherwise fine failover."""
        creds = credentials(self)
        server = await startServer(self, creds)
        harness = Harness(self, creds)
        first = await harness.pe([server.portNumber])
        user = harness.pu([server.portNumber], failoverObservers=[Observer(answer=False)])
        client = await user.connect(POOL, Recording(Collector))
        assert isinstance(client, Collector)
        await harness.pe([server.portNumber])
        await first.stopService()
        await client.ended
        reason = client.reason
        assert reason is not None
        assert reason.check(FailoverRefused)  # type: ignore[no-untyped-call]
        assert "vetoed" in str(reason.value)

    async def test_home_server_dies_and_the_pe_hunts_another(self) -> None:
        """When its home ENRP server dies, the PE hunts over its configured servers and
        registers at the next one."""
        creds = credentials(self)
        first = await startServer(self, creds)
        second = await startServer(self, creds)
        harness = Harness(self, creds)
        pe = await harness.pe([first.portNumber, second.portNumber])
        assert first.server.registrar.handlespace.get(POOL, pe.peIdentifier) is not None
        await first.stop()
        await waitFor(
            lambda: second.server.registrar.handlespace.get(POOL, pe.peIdentifier) is not None
        )
        assert pe.homeServer is None or pe.homeServer != first.server.serverIdentifier


class Takeover(RSerPoolProtocol):
    """Plays an ENRP server that took a PE over: sends a keep-alive with the H flag on the
    PE's user transport and records the answers."""

    def __init__(self, serverIdentifier: int) -> None:
        super().__init__()
        self.serverIdentifier = serverIdentifier
        self.messages: list[asap.AsapMessage] = []

    def connectionReady(self, securityContext: SecurityContext) -> None:
        self.sendAsap(asap.EndpointKeepAlive(self.serverIdentifier, POOL, home=True))

    answer = True

    def asapMessageReceived(self, message: asap.AsapMessage) -> None:
        self.messages.append(message)
        if isinstance(message, asap.Registration) and self.answer:
            self.sendAsap(asap.RegistrationResponse(POOL, message.pool_element.pe_identifier))


class TakeoverTests(TestCase):
    """The contract with ENRP takeover (issue 6) on the PE's user transport."""

    timeout = 20

    async def takeover(
        self, identity: str, allowed: list[str], answer: bool = True
    ) -> tuple[PoolElement, Takeover]:
        creds = credentials(self)
        server = await startServer(self, creds)
        harness = Harness(self, creds)
        policy = AuthorizationPolicy(
            {name: Grant(frozenset({Role.ENRP_SERVER})) for name in allowed}, default=None
        )
        pe = await harness.pe([server.portNumber], authorizationPolicy=policy)
        assert pe.element is not None
        transport = pe.element.user_transport
        assert isinstance(transport, TcpTransport)
        keys = {"enrp-takeover": KEY_B, "stranger": KEY_B}
        endpoint = TlsClientEndpoint(
            TCP4ClientEndpoint(reactor, "127.0.0.1", transport.port),
            PskClientCreator(identity, keys[identity]),
        )
        protocol = Takeover(0x7A7A7A7A)
        protocol.answer = answer
        self.server = server
        await endpoint.connect(Factory.forProtocol(lambda: protocol))
        assert protocol.transport is not None
        self.addCleanup(protocol.transport.abortConnection)  # type: ignore[attr-defined]
        return pe, protocol

    async def test_authenticated_enrp_server_is_adopted(self) -> None:
        """A keep-alive with the H flag from an identity with the enrp-server role is
        answered, its sender becomes the home server, and the PE re-registers over that
        connection."""
        pe, server = await self.takeover("enrp-takeover", ["enrp-takeover"])
        await waitFor(lambda: any(isinstance(m, asap.Registration) for m in server.messages))
        ack = server.messages[0]
        assert ack == asap.EndpointKeepAliveAck(POOL, pe.peIdentifier)
        registration = server.messages[1]
        assert isinstance(registration, asap.Registration)
        assert registration.pool_element.home_server_identifier == 0x7A7A7A7A
        await waitFor(lambda: pe.registered)
        assert pe.homeServer == 0x7A7A7A7A
        assert pe.counters["home_adoptions"] == 1

    async def test_silent_takeover_server_falls_back_to_the_hunt(self) -> None:
        """If the adopted server never answers the re-registration, T2 sends the PE back to
        its configured servers, where it registers with its own identity."""
        pe, silent = await self.takeover("enrp-takeover", ["enrp-takeover"], answer=False)
        await waitFor(lambda: pe.counters["home_adoptions"] == 1)
        registrations = self.server.server.registrar.counters["registrations"]
        await waitFor(
            lambda: self.server.server.registrar.counters["registrations"] > registrations,
            timeout=FAST.t2_registration + 5,
        )
        await waitFor(lambda: pe.registered)
        assert pe.homeServer != 0x7A7A7A7A
        entry = self.server.server.registrar.handlespace.get(POOL, pe.peIdentifier)
        assert entry is not None and entry.identity == "pe"
        assert entry.element.home_server_identifier == self.server.server.serverIdentifier
        assert any(isinstance(m, asap.Registration) for m in silent.messages)

    async def test_server_without_the_role_is_ignored(self) -> None:
        """A PSK identity without the enrp-server role gets no answer and no adoption."""
        pe, server = await self.takeover("enrp-takeover", [])
        await sleep(0.3)
        assert server.messages == []
        assert pe.counters["keep_alives_refused"] == 1
        assert pe.homeServer != 0x7A7A7A7A


class UnreachableTests(TestCase):
    """Unreachable reports reach the ENRP server, rate limited."""

    timeout = 20

    async def test_one_report_for_many_sessions_on_a_dead_pe(self) -> None:
        """Five sessions lose the same PE: the ENRP server receives one report."""
        creds = credentials(self)
        server = await startServer(self, creds)
        harness = Harness(self, creds)
        first = await harness.pe([server.portNumber])
        user = harness.pu([server.portNumber])
        sessions: list[Session] = []
        for _ in range(5):
            client = await user.connect(POOL, Recording(Collector))
            assert isinstance(client, Collector) and isinstance(client.transport, Session)
            sessions.append(client.transport)
        await harness.pe([server.portNumber])
        for connection in list(first.connections):
            connection.close()
        await waitFor(lambda: all(len(s.failovers) == 1 for s in sessions))
        assert user.counters["unreachable_sent"] == 1
        assert user.counters["unreachable_suppressed"] == 4
        await waitFor(lambda: server.server.registrar.counters["unreachable_reports"] == 1)


class BusinessCardTests(TestCase):
    """ASAP_BUSINESS_CARD both ways (RFC 5352 3.9)."""

    timeout = 20

    async def test_cards_both_ways_and_failover_order(self) -> None:
        """The PE's card reaches the session first and its failover order wins over the
        pool user's own choice; a card from the pool user reaches the PE's application."""
        creds = credentials(self)
        server = await startServer(self, creds)
        harness = Harness(self, creds)
        preferredId, otherId = 0x0C0C0C0C, 0x0B0B0B0B

        class CardEcho(Echo):
            cards: ClassVar[list[asap.BusinessCard]] = []

            def businessCardReceived(self, card: asap.BusinessCard) -> None:
                self.cards.append(card)

        first = await harness.pe([server.portNumber], Recording(CardEcho))
        assert first.element is not None
        first.failoverOrder = (replace(first.element, pe_identifier=preferredId),)

        class Contrary(PoolUser):
            def choosePoolElement(
                self, poolHandle: bytes, candidates: list[PoolElementParameter]
            ) -> PoolElementParameter:
                others = [c for c in candidates if c.pe_identifier != preferredId]
                return others[0] if others else candidates[0]

        user = Contrary(
            [creds.puClient(server.portNumber)],
            peTrustRoots=harness.roots,
            timers=FAST,
            sessionMappingConfig=FAST_MAPPING,
        )
        user.startService()
        self.addCleanup(user.stopService)
        client = await user.connect(POOL, Recording(Collector))
        assert isinstance(client, Collector) and isinstance(client.transport, Session)
        session = client.transport
        session.sendBusinessCard(poolHandle=b"ours")
        session.write(b"hi")
        await waitFor(lambda: client.received == [b"hi"])
        assert session.businessCard is not None
        assert [e.pe_identifier for e in session.businessCard.pool_elements] == [preferredId]
        # RFC 5352 3.9: the card names the sender's own pool (it used to name the target).
        assert CardEcho.cards == [asap.BusinessCard(b"ours")]
        await harness.pe([server.portNumber], peIdentifier=otherId)
        await harness.pe([server.portNumber], peIdentifier=preferredId)
        for connection in list(first.connections):
            connection.close()
        await waitFor(lambda: len(session.failovers) == 1)
        assert session.failovers[0].new_element.pe_identifier == preferredId


class PoolUserHuntTests(TestCase):
    """The pool user's server hunt uses only servers whose certificate verifies."""

    timeout = 20

    async def test_untrusted_then_dead_server_are_skipped(self) -> None:
        """A server with a certificate from another CA and a port nobody listens on are
        passed over; the pool user resolves at the server it can authenticate."""
        creds = credentials(self)
        stranger = await startServer(self, credentials(self))
        good = await startServer(self, creds)
        harness = Harness(self, creds)
        pe = await harness.pe([good.portNumber])
        dead = await startServer(self, creds)
        deadPort = dead.portNumber
        await dead.stop()
        user = harness.pu([stranger.portNumber, deadPort, good.portNumber])
        elements = await user.resolve(POOL)
        assert [e.pe_identifier for e in elements] == [pe.peIdentifier]
        assert user.link is not None and user.link.connection is not None
        assert stranger.server.registrar.counters["connections"] == 0


class StreamingTests(TestCase):
    """A streaming session carries a byte stream, as TCP would."""

    timeout = 20

    async def test_streaming_session_merges_writes(self) -> None:
        """Many small writes arrive as the same bytes in fewer application messages."""
        creds = credentials(self)
        server = await startServer(self, creds)
        harness = Harness(self, creds)
        elements = Recording(Echo)
        await harness.pe([server.portNumber], elements, streaming=True)
        user = harness.pu([server.portNumber])
        client = await user.connect(POOL, Recording(Collector), streaming=True)
        assert isinstance(client, Collector) and isinstance(client.transport, Session)
        expected = b"".join(b"%05d" % n for n in range(2000))
        for n in range(2000):
            client.transport.write(b"%05d" % n)
        await waitFor(lambda: b"".join(client.received) == expected)
        [echo] = elements.built
        assert isinstance(echo, Echo)
        assert b"".join(echo.received) == expected
        assert len(echo.received) < 10


class LoadTests(TestCase):
    """Load updates re-register at once."""

    timeout = 20

    async def test_update_load_reaches_the_handlespace(self) -> None:
        """updateLoad re-registers with the same PE identifier and the new load, and the
        pool user's selection follows the least used PE."""
        creds = credentials(self)
        server = await startServer(self, creds)
        harness = Harness(self, creds)
        busy = await harness.pe([server.portNumber], policy=LeastUsedPolicy(0x10000000))
        idle = await harness.pe([server.portNumber], policy=LeastUsedPolicy(0x20000000))
        user = harness.pu([server.portNumber])
        assert (await user.selectPoolElement(POOL)).pe_identifier == busy.peIdentifier
        await busy.updateLoad(0x30000000)
        entry = server.server.registrar.handlespace.get(POOL, busy.peIdentifier)
        assert entry is not None and entry.element.policy == LeastUsedPolicy(0x30000000)
        await user.resolve(POOL, refresh=True)  # a stale entry is used while refreshed (C3)
        assert (await user.selectPoolElement(POOL)).pe_identifier == idle.peIdentifier


class PskSessionTests(TestCase):
    """Pool users may authenticate to pool elements with a pre-shared key."""

    timeout = 20

    async def test_session_over_tls_psk(self) -> None:
        """A PE serving TLS-PSK and a PU connecting with its identity: both sides see an
        authenticated PSK context."""
        creds = credentials(self)
        server = await startServer(self, creds)
        harness = Harness(self, creds)
        puKeys = pskFile(creds.directory, {"pu-1": KEY_A}, "pu.psk")
        elements = Recording(Echo)
        pe = await harness.pe(
            [server.portNumber], elements, listen=f"tlspsk:0:interface=127.0.0.1:pskFile={puKeys}"
        )

        def endpoint(element: PoolElementParameter) -> Any:
            transport = element.user_transport
            assert isinstance(transport, TcpTransport)
            return TlsClientEndpoint(
                TCP4ClientEndpoint(reactor, str(transport.address), transport.port),
                PskClientCreator("pu-1", KEY_A),
            )

        user = harness.pu([server.portNumber], peEndpoint=endpoint)
        client = await user.connect(POOL, Recording(Collector))
        assert isinstance(client, Collector) and isinstance(client.transport, Session)
        assert client.transport.securityContext is not None
        assert client.transport.securityContext.psk_identity == "pu-1"
        assert client.transport.securityContext.authenticated
        client.transport.write(b"secret")
        await waitFor(lambda: client.received == [b"secret"])
        [connection] = list(pe.connections)
        assert connection.securityContext is not None
        assert connection.securityContext.psk_identity == "pu-1"


class StopTests(TestCase):
    """stopService leaves the pool."""

    timeout = 20

    async def test_stop_service_deregisters(self) -> None:
        """A stopped PE sends ASAP_DEREGISTRATION, gets its answer, and is gone from the
        handlespace; its sessions are closed."""
        creds = credentials(self)
        server = await startServer(self, creds)
        harness = Harness(self, creds)
        elements = Recording(Echo)
        pe = await harness.pe([server.portNumber], elements)
        user = harness.pu([server.portNumber])
        client = await user.connect(POOL, Recording(Collector))
        assert isinstance(client, Collector) and client.transport is not None
        client.transport.write(b"x")
        await waitFor(lambda: client.received == [b"x"])
        await pe.stopService()
        registrar = server.server.registrar
        assert registrar.handlespace.get(POOL, pe.peIdentifier) is None
        assert registrar.counters["deregistrations"] == 1
        [echo] = elements.built
        assert isinstance(echo, Echo)
        await waitFor(lambda: echo.lost)
