"""A real ``twistd -n enrp`` on loopback, driven over TLS by pool elements and pool users.

These play the RFC 5355 attacks a single server defends against (sections 2.1-2.4, 2.7,
2.8, 2.10, 2.15) against the real process.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import urllib.request
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any

import pytest
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.protocol import Protocol
from twisted.internet.threads import deferToThread
from twisted.trial.unittest import TestCase

from tests.enrp.support import (
    LOOPBACK,
    OTHER_KEY,
    TWISTD,
    AsapClient,
    EnrpProcess,
    connectClient,
    freePort,
    readLog,
)
from twisted_rserpool.wire import asap
from twisted_rserpool.wire.errors import CauseCode
from twisted_rserpool.wire.parameters import (
    LeastUsedPolicy,
    PoolElementParameter,
    TcpTransport,
)
from twisted_rserpool.wire.tcpmapping import ChunkEncoder

pytestmark = pytest.mark.slow


def registration(pe: int = 0x1001, port: int = 7001, address: str = "0.0.0.0") -> asap.Registration:
    return asap.Registration(
        b"echo",
        PoolElementParameter(
            pe, 0, 30, TcpTransport(port, IPv4Address(address)), LeastUsedPolicy(pe)
        ),
    )


class RunningServerTests(TestCase):
    """Tests that share the setup of one ENRP server process per test."""

    timeout = 30

    def setUp(self) -> None:
        self.server = EnrpProcess(Path(self.mktemp()).resolve())  # type: ignore[no-untyped-call]
        self.server.start()
        self.addCleanup(self.server.stop)
        self.clients: list[AsapClient] = []

    def tearDown(self) -> None:
        for client in self.clients:
            client.close()

    async def connect(self, description: str) -> AsapClient:
        client = await connectClient(description)
        self.clients.append(client)
        return client

    async def admin(self) -> dict[str, object]:
        url = f"http://{LOOPBACK}:{self.server.adminPort}/"

        def fetch() -> bytes:
            with urllib.request.urlopen(url, timeout=10) as response:
                body: bytes = response.read()
                return body

        document: dict[str, object] = json.loads(await deferToThread(fetch))
        return document

    async def test_register_and_resolve_over_tls(self) -> None:
        """A PE registers with its PSK; a PU that checked the certificate resolves it."""
        pe = await self.connect(self.server.peEndpoint())
        assert pe.securityContext is not None and pe.securityContext.tls_version == "TLSv1.3"
        response = await pe.request(registration())
        assert response == asap.RegistrationResponse(b"echo", 0x1001)
        pu = await self.connect(self.server.puEndpoint())
        answer = await pu.request(asap.HandleResolution(b"echo"))
        assert isinstance(answer, asap.HandleResolutionResponse)
        [element] = answer.pool_elements
        assert element.user_transport == TcpTransport(7001, IPv4Address(LOOPBACK))
        assert element.home_server_identifier == 0x00E00001
        document: Any = await self.admin()
        assert document["pools"][0]["pool_elements"][0]["identity"] == "pe"

    async def test_pool_user_cannot_register(self) -> None:
        """RFC 5355 2.1: a connection without an authenticated identity creates no state."""
        pu = await self.connect(self.server.puEndpoint())
        response = await pu.request(registration())
        assert isinstance(response, asap.RegistrationResponse) and response.error is not None
        assert response.reject
        assert response.error.code == CauseCode.REJECTED_DUE_TO_SECURITY_CONSIDERATIONS
        answer = await pu.request(asap.HandleResolution(b"echo"))
        assert isinstance(answer, asap.HandleResolutionResponse) and answer.error is not None
        assert answer.error.code == CauseCode.UNKNOWN_POOL_HANDLE

    async def test_spoofed_registration_and_deregistration(self) -> None:
        """RFC 5355 2.3: another identity can neither replace nor remove a PE."""
        pe = await self.connect(self.server.peEndpoint())
        await pe.request(registration())
        other = await self.connect(self.server.peEndpoint("pe-2", OTHER_KEY))
        refused = await other.request(registration(port=9999))
        assert isinstance(refused, asap.RegistrationResponse) and refused.reject
        removal = await other.request(asap.Deregistration(b"echo", 0x1001))
        assert isinstance(removal, asap.DeregistrationResponse) and removal.error is not None
        pu = await self.connect(self.server.puEndpoint())
        answer = await pu.request(asap.HandleResolution(b"echo"))
        assert isinstance(answer, asap.HandleResolutionResponse)
        assert answer.pool_elements[0].user_transport == TcpTransport(7001, IPv4Address(LOOPBACK))

    async def test_registered_address_must_be_the_peers(self) -> None:
        """A PE cannot register an address other than its own (or the wildcard)."""
        pe = await self.connect(self.server.peEndpoint())
        response = await pe.request(registration(address="192.0.2.7"))
        assert isinstance(response, asap.RegistrationResponse) and response.error is not None
        assert response.error.code == CauseCode.REJECTED_DUE_TO_SECURITY_CONSIDERATIONS

    async def test_wrong_key_is_refused_before_any_message(self) -> None:
        """A PE with a wrong key never gets a ready connection."""
        failed = False
        try:
            await self.connect(self.server.peEndpoint("pe", OTHER_KEY))
        except Exception:
            failed = True
        assert failed, "a PE with the wrong key got a ready connection"
        document = await self.admin()
        assert document["pool_element_count"] == 0

    async def test_plain_tcp_gets_nothing(self) -> None:
        """RFC 5355 2.15: TCP-mapping bytes without TLS are not understood and change nothing."""
        lost: Deferred[None] = Deferred()

        class Plain(Protocol):
            def connectionMade(self) -> None:
                encoder = ChunkEncoder()
                assert self.transport is not None
                self.transport.write(
                    encoder.send_init() + encoder.send_data(registration().encode(), ppid=11)
                )

            def connectionLost(self, reason: object = None) -> None:
                lost.callback(None)

        endpoint = TCP4ClientEndpoint(reactor, LOOPBACK, self.server.port)
        await connectProtocol(endpoint, Plain())  # type: ignore[no-untyped-call]
        await lost
        document = await self.admin()
        assert document["pool_element_count"] == 0

    async def test_connection_loss_removes_the_pe(self) -> None:
        """When the PE's connection goes, its PE goes from the handlespace."""
        pe = await self.connect(self.server.peEndpoint())
        await pe.request(registration())
        pe.close()
        await pe.lostDeferred
        pu = await self.connect(self.server.puEndpoint())
        code = None
        for _ in range(50):
            answer = await pu.request(asap.HandleResolution(b"echo"))
            assert isinstance(answer, asap.HandleResolutionResponse)
            if answer.error is not None:
                code = answer.error.code
                break
        assert code == CauseCode.UNKNOWN_POOL_HANDLE

    async def test_replayed_session_changes_nothing(self) -> None:
        """RFC 5355 2.8: a recorded registration session replayed byte for byte registers none."""
        recorded = bytearray()
        proxyPort = freePort()
        serverPort = self.server.port

        from twisted.internet.protocol import Factory

        class Upstream(Protocol):
            downstream: Protocol

            def dataReceived(self, data: bytes) -> None:
                assert self.downstream.transport is not None
                self.downstream.transport.write(data)

            def connectionLost(self, reason: object = None) -> None:
                if self.downstream.transport is not None:
                    self.downstream.transport.loseConnection()

        class Recording(Protocol):
            def connectionMade(self) -> None:
                assert self.transport is not None
                self.transport.pauseProducing()  # type: ignore[attr-defined]
                self.upstream = Upstream()
                self.upstream.downstream = self
                endpoint = TCP4ClientEndpoint(reactor, LOOPBACK, serverPort)
                connectProtocol(endpoint, self.upstream).addCallback(  # type: ignore[no-untyped-call]
                    lambda _: self.transport.resumeProducing()  # type: ignore[attr-defined]
                )

            def dataReceived(self, data: bytes) -> None:
                recorded.extend(data)
                assert self.upstream.transport is not None
                self.upstream.transport.write(data)

            def connectionLost(self, reason: object = None) -> None:
                if self.upstream.transport is not None:
                    self.upstream.transport.loseConnection()

        listening = reactor.listenTCP(
            proxyPort,
            Factory.forProtocol(Recording),  # type: ignore[arg-type]
            interface=LOOPBACK,
        )
        self.addCleanup(listening.stopListening)
        description = self.server.peEndpoint().replace(f"port={serverPort}", f"port={proxyPort}")
        pe = await self.connect(description)
        await pe.request(registration())
        await pe.request(asap.Deregistration(b"echo", 0x1001))
        pe.close()
        await pe.lostDeferred

        replayLost: Deferred[None] = Deferred()

        class Replay(Protocol):
            def connectionMade(self) -> None:
                assert self.transport is not None
                self.transport.write(bytes(recorded))

            def connectionLost(self, reason: object = None) -> None:
                replayLost.callback(None)

        await connectProtocol(TCP4ClientEndpoint(reactor, LOOPBACK, serverPort), Replay())  # type: ignore[no-untyped-call]
        await replayLost
        document = await self.admin()
        assert document["pool_element_count"] == 0
        assert len(recorded) > 100


class CommandLineTests(TestCase):
    """``twistd enrp`` as an operator meets it."""

    timeout = 30

    def test_non_tls_listener_is_refused(self) -> None:
        """RFC 5355 2.15: a secure server refuses to start with a non-TLS listener."""
        result = subprocess.run(
            [TWISTD, "-n", "--pidfile=", "enrp", "--asap", "tcp:0:interface=127.0.0.1"],
            check=False,
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert result.returncode != 0
        assert "RFC 5355 section 2.15" in result.stdout + result.stderr

    def test_help_explains_every_option(self) -> None:
        """--help lists every option with its explanation."""
        result = subprocess.run(
            [TWISTD, "enrp", "--help"], check=False, capture_output=True, text=True, timeout=30
        )
        assert result.returncode == 0
        for option in ("--asap", "--psk-file", "--certificate", "--policy", "--insecure",
                       "--keep-alive-interval", "--max-bad-pe-report", "--unreachable-rate",
                       "--admin", "--server-id"):  # fmt: skip
            assert option in result.stdout

    async def test_no_options_creates_state_and_serves(self) -> None:
        """With no options the server creates its PSK file and certificate and accepts a PE."""
        directory = Path(self.mktemp()).resolve()  # type: ignore[no-untyped-call]
        directory.mkdir(parents=True)
        server = EnrpProcess(directory, port=3864)
        log = directory / "enrp.log"
        process = subprocess.Popen(
            [TWISTD, "-n", "--pidfile=", f"--logfile={log}", "enrp"],
            cwd=directory,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
        )
        server.process = process
        self.addCleanup(server.stop)
        from tests.enrp.support import waitForPort

        waitForPort(3864, process, log)
        state = directory / "enrp-state"
        keys = state / "keys.psk"
        assert stat.S_IMODE(os.stat(keys).st_mode) == 0o600
        assert (state / "server.pem").exists()
        text = readLog(log)
        assert "A pool element connects with: tlspsk:host=127.0.0.1:port=3864" in text
        assert "A pool user connects with" in text
        client = await connectClient(f"tlspsk:host=127.0.0.1:port=3864:identity=pe:pskFile={keys}")
        self.addCleanup(client.close)
        response = await client.request(registration())
        assert response == asap.RegistrationResponse(b"echo", 0x1001)
        pu = await connectClient(
            f"tlspsk:host=127.0.0.1:port=3864:caCertificate={state / 'server.pem'}"
        )
        self.addCleanup(pu.close)
        answer = await pu.request(asap.HandleResolution(b"echo"))
        assert isinstance(answer, asap.HandleResolutionResponse)
        assert len(answer.pool_elements) == 1
