"""Delivery across failover with real processes: ``twistd -n enrp`` and pool elements killed
with SIGKILL in the middle of a stream (RFC 5352 6.5.5 and 6.7)."""

from __future__ import annotations

import pytest
from cryptography import x509
from twisted.internet.protocol import Factory, Protocol, connectionDone
from twisted.python.failure import Failure
from twisted.trial.unittest import TestCase

from tests.asap.processes import PeProcess, startEnrp, startPe
from tests.asap.support import FAST, FAST_MAPPING, Credentials, credentials, waitFor
from twisted_rserpool.asap import (
    AsapError,
    DeliveryFailed,
    NoPoolElementAvailable,
    PoolUser,
    SendOptions,
    Session,
)
from twisted_rserpool.security.tls import loadCertificates

pytestmark = pytest.mark.slow


class Client(Protocol):
    """Records the answers and how the session ended."""

    def __init__(self) -> None:
        self.received: list[bytes] = []
        self.reason: Failure | None = None

    def dataReceived(self, data: bytes) -> None:
        self.received.append(data)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.reason = reason


class DeliveryProcessTests(TestCase):
    """A PE is frozen with messages in flight, then killed with SIGKILL."""

    timeout = 60

    async def _setUp(self, count: int) -> tuple[Credentials, list[PeProcess], PoolUser]:
        creds = credentials(self)
        enrp = await startEnrp(self, creds)
        pes = [
            await startPe(self, creds, enrp.port, "--app", "mark", name=f"pe{i}")
            for i in range(count)
        ]
        roots: list[x509.Certificate] = loadCertificates(creds.caFile)
        user = PoolUser(
            [creds.puClient(enrp.port)],
            peTrustRoots=roots,
            timers=FAST,
            sessionMappingConfig=FAST_MAPPING,
            maxFailoverAttempts=3,
        )
        user.startService()
        self.addCleanup(user.stopService)
        return creds, pes, user

    async def _inFlight(
        self, user: PoolUser, pes: list[PeProcess], options: SendOptions
    ) -> tuple[Client, Session, PeProcess]:
        """A session that got one answer, then two messages sent into its frozen PE."""
        client = await user.connect(b"echo", Factory.forProtocol(Client), options=options)
        assert isinstance(client, Client) and isinstance(client.transport, Session)
        session = client.transport
        session.write(b"hello")
        await waitFor(lambda: client.received == [b"hello fresh"])
        assert session.poolElement is not None
        [victim] = [p for p in pes if p.peIdentifier == session.poolElement.pe_identifier]
        victim.stop()  # frozen first: what follows is surely unacknowledged
        session.write(b"one")
        session.write(b"two")
        await waitFor(lambda: session.pending() == 0)
        assert session.connection is not None
        assert [m.data for m in session.connection.undelivered()] == [b"one", b"two"]
        victim.kill9()
        return client, session, victim

    async def test_kill_9_mid_stream_new_pe_sees_the_messages_marked(self) -> None:
        """SEND_FAILOVER: after kill -9 of the PE, the other PE receives both unacknowledged
        messages marked as resent (it answers 'resent'), and a later message as fresh."""
        _, pes, user = await self._setUp(2)
        client, session, victim = await self._inFlight(user, pes, SendOptions.SEND_FAILOVER)
        await waitFor(lambda: len(client.received) == 3, timeout=15)
        assert client.received[1:] == [b"one resent", b"two resent"]
        session.write(b"three")
        await waitFor(lambda: len(client.received) == 4)
        assert client.received[3] == b"three fresh"
        [event] = session.failovers
        assert event.old_element.pe_identifier == victim.peIdentifier and event.resend == 2

    async def test_kill_9_without_failover_returns_the_messages(self) -> None:
        """SEND_NO_FAILOVER: after kill -9 of the PE the session ends with DeliveryFailed
        naming the dead PE and returning both messages, marked as sent to it; no failover."""
        _, pes, user = await self._setUp(2)
        client, session, victim = await self._inFlight(user, pes, SendOptions.SEND_NO_FAILOVER)
        await waitFor(lambda: client.reason is not None, timeout=15)
        assert client.reason is not None
        error = client.reason.value
        assert isinstance(error, DeliveryFailed)
        assert error.destination.pe_identifier == victim.peIdentifier
        assert [(m.data, m.sent) for m in error.undelivered] == [(b"one", True), (b"two", True)]
        assert session.failovers == [] and client.received == [b"hello fresh"]

    async def test_kill_9_of_the_last_pe_reports_the_messages(self) -> None:
        """With nothing left to fail over to, the session's error report
        (NoPoolElementAvailable) carries both messages instead of dropping them."""
        _, pes, user = await self._setUp(1)
        client, session, _ = await self._inFlight(user, pes, SendOptions.SEND_FAILOVER)
        await waitFor(lambda: client.reason is not None, timeout=20)
        assert client.reason is not None
        error = client.reason.value
        assert isinstance(error, AsapError)
        assert isinstance(error, NoPoolElementAvailable), error
        assert [(m.data, m.sent) for m in error.undelivered] == [(b"one", True), (b"two", True)]
        assert session.undelivered == error.undelivered
