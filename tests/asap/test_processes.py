"""End to end with real processes: ``twistd -n enrp``, pool elements killed with SIGKILL."""

from __future__ import annotations

import pytest
from cryptography import x509
from twisted.trial.unittest import TestCase
from zope.interface import implementer

from tests.asap.processes import startEnrp, startPe
from tests.asap.support import (
    FAST,
    FAST_MAPPING,
    Collector,
    Recording,
    credentials,
    sleep,
    waitFor,
)
from twisted_rserpool.asap import FailoverEvent, IFailoverObserver, PoolUser, Session
from twisted_rserpool.security.tls import loadCertificates

pytestmark = pytest.mark.slow


@implementer(IFailoverObserver)
class Observer:
    def __init__(self) -> None:
        self.events: list[FailoverEvent] = []

    def failoverOccurred(self, event: FailoverEvent) -> bool:
        self.events.append(event)
        return True


class KillTests(TestCase):
    """A counter session survives SIGKILL of its pool element."""

    timeout = 60

    async def test_kill_9_pe_session_resumes_with_cookie(self) -> None:
        """After kill -9 of the PE (frozen just before, with a message in flight), the
        session resumes on the other PE: the signed cookie
        is echoed so the count goes on, the message sent into the dead PE is sent again,
        the observer sees both TLS contexts, and the ENRP server hears one unreachable
        report."""
        creds = credentials(self)
        enrp = await startEnrp(self, creds)
        pes = [
            await startPe(self, creds, enrp.port, "--app", "counter", name=f"pe{i}")
            for i in range(2)
        ]
        observer = Observer()
        roots: list[x509.Certificate] = loadCertificates(creds.caFile)
        user = PoolUser(
            [creds.puClient(enrp.port)],
            peTrustRoots=roots,
            timers=FAST,
            sessionMappingConfig=FAST_MAPPING,
            failoverObservers=[observer],
        )
        user.startService()
        self.addCleanup(user.stopService)
        client = await user.connect(b"echo", Recording(Collector))
        assert isinstance(client, Collector) and isinstance(client.transport, Session)
        session = client.transport
        for _ in range(3):
            session.write(b"incr")
        await waitFor(lambda: len(client.received) == 3)
        assert client.received[-1].startswith(b"3 ")
        assert session.poolElement is not None
        [victim] = [p for p in pes if p.peIdentifier == session.poolElement.pe_identifier]
        [survivor] = [p for p in pes if p is not victim]
        victim.stop()  # frozen first, so that the next message is surely unacknowledged
        session.write(b"incr")
        await waitFor(lambda: session.pending() == 0)
        await sleep(0.05)
        victim.kill9()
        await waitFor(lambda: len(client.received) == 4, timeout=15)
        assert client.received[-1] == f"4 pe{pes.index(survivor)}".encode()
        [event] = observer.events
        assert event.old_element.pe_identifier == victim.peIdentifier
        assert event.new_element.pe_identifier == survivor.peIdentifier
        assert event.cookie is not None and event.resend == 1
        assert "connection lost" in event.reason
        assert event.old_context.certificate_subject == "CN=pe.test"
        assert event.new_context.certificate_subject == "CN=pe.test"
        assert event.old_context.tls_version and event.new_context.tls_version
        assert user.counters["unreachable_sent"] == 1

    async def test_stopped_pe_is_found_by_heartbeat(self) -> None:
        """A PE that stops answering (SIGSTOP: the socket stays open) is declared dead by the
        TCP mapping's heartbeat and the session fails over to the other PE."""
        creds = credentials(self)
        enrp = await startEnrp(self, creds)
        pes = [
            await startPe(self, creds, enrp.port, "--app", "counter", name=f"pe{i}")
            for i in range(2)
        ]
        roots: list[x509.Certificate] = loadCertificates(creds.caFile)
        user = PoolUser(
            [creds.puClient(enrp.port)],
            peTrustRoots=roots,
            timers=FAST,
            sessionMappingConfig=FAST_MAPPING,
        )
        user.startService()
        self.addCleanup(user.stopService)
        client = await user.connect(b"echo", Recording(Collector))
        assert isinstance(client, Collector) and isinstance(client.transport, Session)
        session = client.transport
        session.write(b"incr")
        await waitFor(lambda: len(client.received) == 1)
        assert session.poolElement is not None
        [victim] = [p for p in pes if p.peIdentifier == session.poolElement.pe_identifier]
        victim.stop()
        session.write(b"incr")
        await waitFor(lambda: len(client.received) == 2, timeout=15)
        assert client.received[-1].startswith(b"2 ")
        [event] = session.failovers
        assert "heartbeat" in event.reason
