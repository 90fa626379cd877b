"""Pools as Twisted endpoints: ``PoolEndpoint``, the ``rserpool:`` endpoint string and
``PoolServerEndpoint``, in process (loopback TLS) and with real ``twistd -n enrp`` and pool
element processes killed with SIGKILL."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from ipaddress import ip_address
from pathlib import Path
from typing import Any

import pytest
from twisted.application.internet import ClientService
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ServerEndpoint, clientFromString, quoteStringArgument
from twisted.internet.error import CannotListenError
from twisted.internet.interfaces import (
    IListeningPort,
    IProtocol,
    IStreamClientEndpoint,
    IStreamServerEndpoint,
)
from twisted.internet.protocol import Protocol
from twisted.internet.task import Clock
from twisted.trial.unittest import TestCase
from zope.interface import implementer
from zope.interface.verify import verifyObject

from tests.asap.processes import startEnrp, startPe
from tests.asap.support import (
    FAST,
    FAST_MAPPING,
    Collector,
    Credentials,
    Echo,
    Recording,
    credentials,
    reactor,
    startServer,
    waitFor,
)
from tests.security.support import KEY_A, pskFile
from twisted_rserpool.asap import NoPoolElementAvailable, PoolUser, RequestTimedOut, Session
from twisted_rserpool.asap.endpoint import PoolEndpoint, PoolListeningPort, PoolServerEndpoint
from twisted_rserpool.endpoints import TlsClientEndpoint
from twisted_rserpool.security.tls import loadCertificates
from twisted_rserpool.wire.parameters import PoolElementParameter, RoundRobinPolicy, TcpTransport

POOL = b"echo"


def quote(description: str) -> str:
    """``description`` with its colons escaped, to nest it in an endpoint string."""
    return str(quoteStringArgument(description))  # type: ignore[no-untyped-call]


def rserpool(creds: Credentials, enrpPort: int, *options: str) -> str:
    """An ``rserpool:`` client string for pool ``echo`` at the ENRP server on ``enrpPort``."""
    enrp = quote(creds.puClient(enrpPort))
    return ":".join([f"rserpool:pool=echo:enrp={enrp}", *options])


def sessionOf(protocol: Protocol) -> Session:
    session = protocol.transport
    assert isinstance(session, Session)
    return session


class ParserTests(TestCase):
    """``clientFromString(reactor, "rserpool:...")``."""

    def setUp(self) -> None:
        self.creds = credentials(self)
        self.enrp = quote(self.creds.puClient(3863))

    def parse(self, text: str) -> Any:
        return clientFromString(reactor, text)  # type: ignore[no-untyped-call]

    def assertRefused(self, text: str, *words: str) -> None:
        with pytest.raises(ValueError) as caught:
            self.parse(text)
        for word in words:
            assert word in str(caught.value), (word, str(caught.value))

    def test_complete_string(self) -> None:
        """Every option lands where it belongs; ENRP servers are hunted in enrp, enrp2 order;
        the endpoint provides IStreamClientEndpoint and owns its pool user."""
        second = quote(self.creds.puClient(3864))
        endpoint = self.parse(
            f"rserpool:pool=echo:enrp2={second}:enrp={self.enrp}"
            f":caCertificate={self.creds.caFile}:failover=no:ppid=51:streaming=yes"
            ":connectTimeout=2.5:maxFailoverAttempts=3"
        )
        assert isinstance(endpoint, PoolEndpoint)
        assert verifyObject(IStreamClientEndpoint, endpoint)
        assert endpoint.poolHandle == b"echo" and not endpoint.failover
        assert endpoint.ppid == 51 and endpoint.streaming and endpoint.ownsPoolUser
        user = endpoint.poolUser
        assert user.connectTimeout == 2.5 and user.maxFailoverAttempts == 3
        assert user.peTrustRoots == loadCertificates(self.creds.caFile)
        servers: list[Any] = list(user._servers)
        ports = [server.wrappedEndpoint._port for server in servers]
        assert ports == [3863, 3864]
        assert repr(endpoint) == "<PoolEndpoint pool=echo failover=no>"

    def test_positional_pool_and_defaults(self) -> None:
        """``rserpool:NAME:...``; failover by default, PPID 0, no streaming."""
        endpoint = self.parse(f"rserpool:echo:enrp={self.enrp}:insecure=yes")
        assert isinstance(endpoint, PoolEndpoint)
        assert endpoint.failover and endpoint.ppid == 0 and not endpoint.streaming
        assert endpoint.poolUser.peTrustRoots is None

    def test_psk_to_pool_elements(self) -> None:
        """With pskFile, sessions reach a pool element over TLS-PSK with that identity."""
        keys = pskFile(self.creds.directory, {"pu-1": KEY_A}, "pu.psk")
        endpoint = self.parse(f"rserpool:pool=echo:enrp={self.enrp}:pskFile={keys}")
        element = PoolElementParameter(
            7, 0, 60, TcpTransport(4000, ip_address("127.0.0.1")), RoundRobinPolicy()
        )
        pe = endpoint.poolUser.endpointForPoolElement(element)
        assert isinstance(pe, TlsClientEndpoint)
        tcp: Any = pe.wrappedEndpoint
        creator: Any = pe.creator
        assert tcp._port == 4000 and creator.identity == "pu-1"

    def test_errors_name_the_keyword(self) -> None:
        """Each mistake is a ValueError naming the option at fault."""
        ca = f"caCertificate={self.creds.caFile}"
        cases = [
            (f"rserpool:enrp={self.enrp}:{ca}", "pool is missing"),
            (f"rserpool:pool=echo:{ca}", "enrp is missing"),
            (f"rserpool:pool=echo:enrp={self.enrp}:enrp3={self.enrp}:{ca}", "enrp2 is missing"),
            ("rserpool:pool=echo:enrp=nosuch\\:x:" + ca, "enrp 'nosuch:x'", "nosuch"),
            (f"rserpool:pool=echo:enrp={self.enrp}:{ca}:bogus=1", "bogus", "enrpN"),
            (f"rserpool:pool=echo:enrp={self.enrp}:{ca}:ppid=x", "ppid 'x'"),
            (f"rserpool:pool=echo:enrp={self.enrp}:{ca}:ppid=12", "ppid 12", "reserved"),
            (f"rserpool:pool=echo:enrp={self.enrp}:{ca}:failover=maybe", "failover"),
            (f"rserpool:pool=echo:enrp={self.enrp}:{ca}:streaming=1", "streaming"),
            (f"rserpool:pool=echo:enrp={self.enrp}:{ca}:connectTimeout=-1", "connectTimeout"),
            (f"rserpool:pool=echo:enrp={self.enrp}", "caCertificate", "insecure", "none"),
            (f"rserpool:pool=echo:enrp={self.enrp}:{ca}:insecure=yes", "caCertificate, insecure"),
            (f"rserpool:pool=echo:enrp={self.enrp}:{ca}:identity=a", "identity needs pskFile"),
            (f"rserpool:pool=echo:enrp={self.enrp}:caCertificate=", "caCertificate"),
        ]
        for text, *words in cases:
            self.assertRefused(text, *words)


class InProcessTests(TestCase):
    """An in-process ENRP server, pool elements through ``PoolServerEndpoint``."""

    timeout = 30

    async def pe(self, creds: Credentials, enrpPort: int) -> PoolListeningPort:
        endpoint = PoolServerEndpoint(
            creds.peListen(),
            POOL,
            [creds.peClient(enrpPort)],
            timers=FAST,
            registrationLife=60,
            userMappingConfig=FAST_MAPPING,
        )
        port = await endpoint.listen(Recording(Echo))
        assert isinstance(port, PoolListeningPort)
        self.addCleanup(port.stopListening)
        await port.poolElement.whenRegistered()
        return port

    def pu(self, creds: Credentials, enrpPort: int) -> PoolUser:
        user = PoolUser(
            [creds.puClient(enrpPort)],
            peTrustRoots=loadCertificates(creds.caFile),
            timers=FAST,
            sessionMappingConfig=FAST_MAPPING,
        )
        self.addCleanup(user.stopService)
        return user

    async def test_server_endpoint_registers_what_it_listens_on(self) -> None:
        """The port a PoolServerEndpoint got is what the handlespace holds for its PE;
        stopListening deregisters it."""
        creds = credentials(self)
        server = await startServer(self, creds)
        endpoint = PoolServerEndpoint(
            TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1"),  # type: ignore[no-untyped-call]
            POOL,
            [creds.peClient(server.portNumber)],
            timers=FAST,
            insecure=True,  # a plain TCP listener, on loopback only
        )
        assert verifyObject(IStreamServerEndpoint, endpoint)
        port = await endpoint.listen(Recording(Echo))
        assert verifyObject(IListeningPort, port)
        assert isinstance(port, PoolListeningPort)
        await port.poolElement.whenRegistered()
        entry = server.server.registrar.handlespace.get(POOL, port.poolElement.peIdentifier)
        assert entry is not None
        transport = entry.element.user_transport
        assert isinstance(transport, TcpTransport)
        assert transport.port == port.getHost().port  # type: ignore[attr-defined]
        await port.stopListening()
        assert server.server.registrar.handlespace.get(POOL, port.poolElement.peIdentifier) is None

    async def test_server_endpoint_listen_failure(self) -> None:
        """listen errbacks when the wrapped endpoint cannot listen (the port is taken)."""
        creds = credentials(self)
        server = await startServer(self, creds)
        tcp: Any = TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1")  # type: ignore[no-untyped-call]
        taken = await tcp.listen(Recording(Echo))
        self.addCleanup(taken.stopListening)
        number = taken.getHost().port
        endpoint = PoolServerEndpoint(
            f"tcp:{number}:interface=127.0.0.1",
            POOL,
            [creds.peClient(server.portNumber)],
            insecure=True,
        )
        with pytest.raises(CannotListenError):
            await endpoint.listen(Recording(Echo))
        # The pool element logs why it could not start, too.
        assert self.flushLoggedErrors(CannotListenError)  # type: ignore[no-untyped-call]

    async def test_client_service_keeps_one_session_across_a_pe_death(self) -> None:
        """ClientService over a PoolEndpoint: when the PE in use leaves, the same protocol
        goes on talking to the other PE (the session failed over; no reconnect)."""
        creds = credentials(self)
        server = await startServer(self, creds)
        ports = [await self.pe(creds, server.portNumber) for _ in range(2)]
        endpoint = PoolEndpoint(self.pu(creds, server.portNumber), POOL)
        built = Recording(Collector)
        service = ClientService(endpoint, built, retryPolicy=lambda _: 0.1)
        service.startService()
        self.addCleanup(service.stopService)
        client = await service.whenConnected()
        assert isinstance(client, Collector)
        sessionOf(client).write(b"one")
        await waitFor(lambda: client.received == [b"one"])
        used = sessionOf(client).poolElement
        assert used is not None
        [victim] = [p for p in ports if p.poolElement.peIdentifier == used.pe_identifier]
        [survivor] = [p for p in ports if p is not victim]
        await victim.stopListening()
        sessionOf(client).write(b"two")
        await waitFor(lambda: client.received == [b"one", b"two"])
        moved = sessionOf(client).poolElement
        assert moved is not None and moved.pe_identifier == survivor.poolElement.peIdentifier
        assert client.reason is None and len(built.built) == 1

    async def test_without_failover_client_service_reconnects(self) -> None:
        """failover=False: the session ends with its PE, the protocol is told, and the
        ClientService connects a new one to the other PE."""
        creds = credentials(self)
        server = await startServer(self, creds)
        ports = [await self.pe(creds, server.portNumber) for _ in range(2)]
        endpoint = PoolEndpoint(self.pu(creds, server.portNumber), POOL, failover=False)
        built = Recording(Collector)
        service = ClientService(endpoint, built, retryPolicy=lambda _: 0.1)
        service.startService()
        self.addCleanup(service.stopService)
        first = await service.whenConnected()
        assert isinstance(first, Collector)
        used = sessionOf(first).poolElement
        assert used is not None
        [victim] = [p for p in ports if p.poolElement.peIdentifier == used.pe_identifier]
        [survivor] = [p for p in ports if p is not victim]
        await victim.stopListening()
        await first.ended
        await waitFor(lambda: len(built.built) == 2)
        second = await service.whenConnected()
        assert isinstance(second, Collector) and second is not first
        moved = sessionOf(second).poolElement
        assert moved is not None and moved.pe_identifier == survivor.poolElement.peIdentifier
        sessionOf(second).write(b"again")
        await waitFor(lambda: second.received == [b"again"])

    async def test_empty_pool_errbacks(self) -> None:
        """connect to a pool nobody registered errbacks with NoPoolElementAvailable."""
        creds = credentials(self)
        server = await startServer(self, creds)
        endpoint = PoolEndpoint(self.pu(creds, server.portNumber), b"nobody")
        with pytest.raises(NoPoolElementAvailable):
            await endpoint.connect(Recording(Collector))


@pytest.mark.slow
class ProcessTests(TestCase):
    """``clientFromString(reactor, "rserpool:...")`` with ``ClientService`` against
    ``twistd -n enrp`` and two pool element processes."""

    timeout = 60

    async def test_client_service_survives_kill_9_of_its_pe(self) -> None:
        """kill -9 of the PE in use: the ClientService's protocol goes on, its next
        message answered by the other PE process."""
        creds = credentials(self)
        enrp = await startEnrp(self, creds)
        pes = [await startPe(self, creds, enrp.port, name=f"pe{i}") for i in range(2)]
        endpoint = clientFromString(  # type: ignore[no-untyped-call]
            reactor, rserpool(creds, enrp.port, f"caCertificate={creds.caFile}")
        )
        assert isinstance(endpoint, PoolEndpoint)
        self.addCleanup(endpoint.poolUser.stopService)
        built = Recording(Collector)
        service = ClientService(endpoint, built, retryPolicy=lambda _: 0.2)
        service.startService()
        self.addCleanup(service.stopService)
        client = await service.whenConnected()
        assert isinstance(client, Collector)
        session = sessionOf(client)
        session.write(b"before")
        await waitFor(lambda: client.received == [b"before"])
        assert session.poolElement is not None
        [victim] = [p for p in pes if p.peIdentifier == session.poolElement.pe_identifier]
        [survivor] = [p for p in pes if p is not victim]
        victim.kill9()
        session.write(b"after")
        await waitFor(lambda: client.received == [b"before", b"after"], timeout=20)
        assert session.poolElement.pe_identifier == survivor.peIdentifier
        assert client.reason is None and len(built.built) == 1
        assert endpoint.poolUser.counters["failovers"] == 1


ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_example_runs_and_docs_show_it() -> None:
    """examples/pool_endpoint.py answers through the other PE after the first leaves, and
    docs/asap.md ("Pools as endpoints") holds that very program."""
    example = ROOT / "examples" / "pool_endpoint.py"
    assert example.read_text() in (ROOT / "docs" / "asap.md").read_text()
    result = subprocess.run(
        [sys.executable, str(example)], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("client endpoint: rserpool:pool=echo:enrp=tlspsk\\:host=")
    assert lines[1] == "  <- hello" and lines[3] == "  <- still there?"
    left = lines[2].removeprefix("pool element ").removesuffix(" leaves")
    answered = lines[4].removeprefix("answered by ")
    assert left.startswith("0x") and answered.startswith("0x") and left != answered


def test_plugin_module_stays_cheap() -> None:
    """Importing the endpoint plugins imports neither the reactor, OpenSSL nor the ASAP
    package: the rserpool: parser loads them when a string is parsed."""
    probe = (
        "import sys, twisted.plugins.twisted_rserpool_plugins as p; "
        "assert p.rserpool_client.prefix == 'rserpool'; "
        "print(sorted(m for m in sys.modules if m.startswith(('twisted_rserpool.asap', "
        "'OpenSSL', 'twisted.internet.reactor'))))"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT, check=True
    )
    assert result.stdout.strip() == "[]"


@implementer(IStreamClientEndpoint)
class Unanswered:
    """An ENRP server endpoint whose connection attempts never end."""

    def connect(self, protocolFactory: object) -> Deferred[IProtocol]:
        return Deferred()


class Triggers:
    """The reactor's system event triggers, recorded."""

    def __init__(self) -> None:
        self.triggers: list[tuple[str, str, Callable[[], object]]] = []

    def addSystemEventTrigger(self, phase: str, event: str, call: Callable[[], object]) -> None:
        self.triggers.append((phase, event, call))


class OwnershipTests(TestCase):
    """Who stops the pool user of an endpoint."""

    def test_owned_pool_user_stops_before_shutdown(self) -> None:
        """An endpoint owning its pool user starts it at the first connect and stops it
        before the reactor shuts down; the pending connect then errbacks."""
        triggers = Triggers()
        user = PoolUser([Unanswered()], clock=Clock(), reactor=triggers, insecure=True)
        endpoint = PoolEndpoint(user, POOL, ownsPoolUser=True, reactor=triggers)
        pending = endpoint.connect(Recording(Collector))
        endpoint.connect(Recording(Collector)).addErrback(lambda _: None)
        assert user.running and len(triggers.triggers) == 1
        [(phase, event, call)] = triggers.triggers
        assert (phase, event) == ("before", "shutdown")
        call()
        assert not user.running
        failure = self.failureResultOf(pending)  # type: ignore[no-untyped-call]
        assert failure.check(RequestTimedOut), failure
        call()  # a second stop (the application stopped it too) is harmless

    def test_pool_user_of_the_application_is_left_alone(self) -> None:
        """Without ownsPoolUser no trigger is added."""
        triggers = Triggers()
        user = PoolUser([Unanswered()], clock=Clock(), reactor=triggers, insecure=True)
        endpoint = PoolEndpoint(user, POOL, reactor=triggers)
        endpoint.connect(Recording(Collector)).addErrback(lambda _: None)
        assert triggers.triggers == []
        user.stopService()
