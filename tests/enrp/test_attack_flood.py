"""RFC 5355 2.1, 2.2, 2.13 against a real ``twistd -n enrp``: floods of handle resolutions
from 1 and from 20 TLS connections, anonymous and authenticated, while a legitimate pool
user resolves. The server pauses reading from the flooding connections and serves them at
their rate (anonymous ones share one rate, one identity's connections another); every
flood request is still answered, and so is every legitimate one. An anonymous pool user
under its fair share of the anonymous rate is answered before the flood's backlog.
Bounded in count and time; nothing here measures time (benchmarks/flood.py does)."""

from __future__ import annotations

import json
import statistics
import urllib.request
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any

import pytest
from twisted.internet import address, reactor
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import clientFromString, connectProtocol
from twisted.internet.task import deferLater
from twisted.internet.threads import deferToThread
from twisted.trial.unittest import TestCase

from tests.enrp.support import (
    LOOPBACK,
    OTHER_KEY,
    AsapClient,
    EnrpProcess,
    connectClient,
    readLog,
)
from twisted_rserpool.wire import asap
from twisted_rserpool.wire.parameters import LeastUsedPolicy, PoolElementParameter, TcpTransport

pytestmark = pytest.mark.slow

POOL = b"flooded"
#: Each bucket (per connection, per identity, anonymous together): 200/s, burst 10.
RATE = "200/10"
#: Flood requests in all, whatever the number of connections: 2 s of the rate.
FLOOD = 400
#: Resolutions of the legitimate pool user.
LEGITIMATE = 5


class PoolElement(AsapClient):
    """A PE that answers the server's keep-alives, so that it stays registered."""

    def asapMessageReceived(self, message: asap.AsapMessage) -> None:
        if isinstance(message, asap.EndpointKeepAlive):
            self.sendAsap(asap.EndpointKeepAliveAck(message.pool_handle, 0x2001))
            return
        super().asapMessageReceived(message)


class ServerTestCase(TestCase):
    """One server per test, started with :attr:`options`."""

    timeout = 60
    options: tuple[str, ...] = ()

    def setUp(self) -> None:
        self.server = EnrpProcess(
            Path(self.mktemp()).resolve(),  # type: ignore[no-untyped-call]
            extra=self.options,
        )
        self.server.start()
        self.addCleanup(self.server.stop)
        self.clients: list[AsapClient] = []

    def tearDown(self) -> None:
        for client in self.clients:
            client.close()

    async def connect(self, description: str, client: AsapClient | None = None) -> AsapClient:
        if client is None:
            client = await connectClient(description)
        else:
            endpoint = clientFromString(reactor, description)  # type: ignore[no-untyped-call]
            await connectProtocol(endpoint, client)  # type: ignore[no-untyped-call]
            await client.readyDeferred
        self.clients.append(client)
        return client

    async def counters(self) -> dict[str, int]:
        url = f"http://{LOOPBACK}:{self.server.adminPort}/summary"

        def fetch() -> bytes:
            with urllib.request.urlopen(url, timeout=10) as response:
                body: bytes = response.read()
                return body

        document: Any = json.loads(await deferToThread(fetch))
        counters: dict[str, int] = document["counters"]
        return counters


class FloodTests(ServerTestCase):
    """Every request rate at 200/s (burst 10)."""

    options = ("--request-rate", RATE, "--identity-rate", RATE, "--anonymous-rate", RATE)

    async def flood(self, description: str, connections: int) -> None:
        """Flood from ``connections`` connections while the legitimate PU resolves; check
        that the defence acted and that nobody's request went unanswered."""
        legitimate = self.server.peEndpoint("pe-2", OTHER_KEY)
        pe = await self.connect(legitimate, PoolElement())
        registered = await pe.request(
            asap.Registration(
                POOL,
                PoolElementParameter(
                    0x2001, 0, 60, TcpTransport(7001, IPv4Address("0.0.0.0")), LeastUsedPolicy(0)
                ),
            )
        )
        assert isinstance(registered, asap.RegistrationResponse) and not registered.reject
        user = await self.connect(legitimate)
        attackers = [await self.connect(description) for _ in range(connections)]
        resolution = asap.HandleResolution(POOL)
        each = FLOOD // connections
        for attacker in attackers:
            for _ in range(each):
                attacker.sendAsap(resolution)
        sent = each * connections

        # The legitimate pool user is served during the flood.
        for _ in range(LEGITIMATE):
            answer = await Deferred.fromCoroutine(user.request(resolution)).addTimeout(20, reactor)
            assert isinstance(answer, asap.HandleResolutionResponse)
            assert [e.pe_identifier for e in answer.pool_elements] == [0x2001]

        # The flood was held back: answered at the rate, not as fast as it came.
        answeredThen = sum(len(a.messages.pending) for a in attackers)
        assert answeredThen < sent
        counters = await self.counters()
        assert counters.get("requests_delayed", 0) > 0
        assert counters.get("rate_limited_connections", 0) >= 1
        assert "rate_limited_requests" not in counters  # the old late drop is gone
        log = readLog(self.server.log)
        assert "pausing reading from" in log

        # Never silence: every flood request gets its answer, at the rate (~2 s).
        for _ in range(300):
            if sum(len(a.messages.pending) for a in attackers) >= sent:
                break
            await deferLater(reactor, 0.1, lambda: None)
        answers = [m for a in attackers for m in a.messages.pending]
        assert len(answers) == sent
        assert all(isinstance(m, asap.HandleResolutionResponse) for m in answers)
        assert all(not a.lostDeferred.called for a in attackers)
        # The PE answered its keep-alives throughout: it is still there.
        final = await Deferred.fromCoroutine(user.request(resolution)).addTimeout(20, reactor)
        assert isinstance(final, asap.HandleResolutionResponse) and final.pool_elements

    async def test_flood_from_one_anonymous_connection(self) -> None:
        """One anonymous TLS connection (certificate only) floods."""
        await self.flood(self.server.puEndpoint(), 1)

    async def test_flood_from_twenty_anonymous_connections(self) -> None:
        """Twenty anonymous connections share one rate: opening more gains nothing."""
        await self.flood(self.server.puEndpoint(), 20)
        counters = await self.counters()
        # They were held back together, so several of them had to wait.
        assert counters["rate_limited_connections"] > 1

    async def test_flood_from_one_authenticated_connection(self) -> None:
        """One connection authenticated with a PSK (identity pe) floods."""
        await self.flood(self.server.peEndpoint(), 1)

    async def test_flood_from_twenty_authenticated_connections(self) -> None:
        """Twenty connections of one identity share that identity's rate."""
        await self.flood(self.server.peEndpoint(), 20)
        counters = await self.counters()
        assert counters["rate_limited_connections"] > 1


class FairShareTests(ServerTestCase):
    """Anonymous peers share 40 requests a second (burst 100, so a headroom of 49 for
    connections under their share)."""

    options = ("--anonymous-rate", "40/100")

    async def test_an_anonymous_user_is_answered_before_an_anonymous_floods_backlog(
        self,
    ) -> None:
        """Twenty anonymous connections flood (30 resolutions each, 15 s of the rate)
        while an anonymous pool user resolves once a second, under its share (40/21 a
        second): each of its resolutions is answered without waiting for a round of the
        backlog (a queue in turn would answer one request of every flooder first), all of
        them before the backlog is, and its connection is never paused."""
        pe = await self.connect(self.server.peEndpoint("pe-2", OTHER_KEY), PoolElement())
        registered = await pe.request(
            asap.Registration(
                POOL,
                PoolElementParameter(
                    0x2001, 0, 60, TcpTransport(7001, IPv4Address("0.0.0.0")), LeastUsedPolicy(0)
                ),
            )
        )
        assert isinstance(registered, asap.RegistrationResponse) and not registered.reject
        user = await self.connect(self.server.puEndpoint())
        attackers = [await self.connect(self.server.puEndpoint()) for _ in range(20)]
        resolution = asap.HandleResolution(POOL)
        for attacker in attackers:
            for _ in range(30):
                attacker.sendAsap(resolution)
        sent = 30 * len(attackers)

        def floodAnswered() -> int:
            return sum(len(a.messages.pending) for a in attackers)

        between: list[int] = []
        for _ in range(LEGITIMATE):
            await deferLater(reactor, 1.0, lambda: None)
            before = floodAnswered()
            answer = await Deferred.fromCoroutine(user.request(resolution)).addTimeout(20, reactor)
            between.append(floodAnswered() - before)
            assert isinstance(answer, asap.HandleResolutionResponse)
            assert [e.pe_identifier for e in answer.pool_elements] == [0x2001]
        # Every answer of the user came before the flood's backlog was answered, and
        # (as a rule) with few flood answers in between, not one per flooder.
        assert floodAnswered() < sent
        assert statistics.median(between) < len(attackers) // 4, between
        counters = await self.counters()
        assert counters.get("requests_delayed", 0) > 0
        assert counters.get("rate_limited_connections", 0) >= 2
        log = readLog(self.server.log)
        assert "Rate limit (anonymous rate): pausing reading from" in log

        def paused(client: AsapClient) -> bool:
            assert client.transport is not None
            host = client.transport.getHost()
            assert isinstance(host, address.IPv4Address)
            return f"pausing reading from {LOOPBACK}:{host.port} " in log

        assert not paused(user)
        assert sum(paused(a) for a in attackers) >= 2
