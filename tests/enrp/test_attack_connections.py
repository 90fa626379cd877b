"""RFC 5355 section 2.1 against a real ``twistd -n enrp``: stalled TLS handshakes, more
connections than the cap, and a small file-descriptor limit.

Each test opens a bounded number of raw sockets that never complete a handshake (some send
nothing, some half a ClientHello), waits (bounded) until the server has closed every one of
them, and checks that the defence acted: each socket was either refused over the cap or
aborted at the handshake deadline (the admin counters add up), the log names both causes
and has no traceback, and a legitimate pool element and pool user are served afterwards.
"""

from __future__ import annotations

import contextlib
import json
import re
import selectors
import socket
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from OpenSSL import SSL
from twisted.internet import reactor
from twisted.internet.task import deferLater
from twisted.internet.threads import deferToThread
from twisted.trial.unittest import TestCase

from tests.enrp.support import (
    LOOPBACK,
    PE_KEY,
    AsapClient,
    EnrpProcess,
    connectClient,
    freePort,
    readLog,
)
from tests.enrp.test_process import registration
from twisted_rserpool.security.psk import writePskFile
from twisted_rserpool.wire import asap

pytestmark = pytest.mark.slow


def halfClientHello() -> bytes:
    """The first half of a real TLS ClientHello: the server waits for the rest."""
    connection = SSL.Connection(SSL.Context(SSL.TLS_METHOD), None)
    connection.set_connect_state()
    with contextlib.suppress(SSL.WantReadError):
        connection.do_handshake()
    hello: bytes = connection.bio_read(65536)
    return hello[: len(hello) // 2]


def openStalled(port: int, count: int) -> list[socket.socket]:
    """``count`` connections to ``port`` that never finish a TLS handshake: every other one
    sends half a ClientHello, the rest send nothing."""
    partial = halfClientHello()
    sockets = []
    for index in range(count):
        s = socket.create_connection((LOOPBACK, port), timeout=10)
        if index % 2:
            s.sendall(partial)
        sockets.append(s)
    return sockets


def waitUntilClosed(sockets: list[socket.socket], limit: float = 30.0) -> int:
    """Wait (bounded) until the server closed the sockets; how many it closed."""
    pending = set(sockets)
    with selectors.DefaultSelector() as selector:
        for s in sockets:
            selector.register(s, selectors.EVENT_READ, data=s)
        deadline = time.monotonic() + limit
        while pending and time.monotonic() < deadline:
            for key, _ in selector.select(0.2):
                s = key.data
                try:
                    data = s.recv(4096)
                except OSError:
                    data = b""
                if not data:
                    pending.discard(s)
                    selector.unregister(s)
    return len(sockets) - len(pending)


def closeSockets(sockets: list[socket.socket]) -> None:
    for s in sockets:
        s.close()


class AttackTestCase(TestCase):
    """One ENRP server process per test, with raw attack sockets cleaned up after it."""

    timeout = 90

    def startServer(self, *extra: str, nofile: int | None = None) -> EnrpProcess:
        server = EnrpProcess(
            Path(self.mktemp()).resolve(),  # type: ignore[no-untyped-call]
            extra=extra,
            nofile=nofile,
        )
        self.addCleanup(server.stop)
        server.start()
        return server

    def attack(self, port: int, count: int) -> list[socket.socket]:
        sockets = openStalled(port, count)
        self.addCleanup(closeSockets, sockets)
        return sockets

    async def closedByServer(self, sockets: list[socket.socket]) -> None:
        closed = await deferToThread(waitUntilClosed, sockets)
        assert closed == len(sockets), f"the server left {len(sockets) - closed} sockets open"

    async def counters(self, server: EnrpProcess) -> dict[str, int]:
        url = f"http://{LOOPBACK}:{server.adminPort}/summary"

        def fetch() -> bytes:
            with urllib.request.urlopen(url, timeout=10) as response:
                body: bytes = response.read()
                return body

        document: Any = json.loads(await deferToThread(fetch))
        counters: dict[str, int] = document["counters"]
        return counters

    async def logContains(self, server: EnrpProcess, *texts: str) -> str:
        """The server log once it holds every text (bounded wait: the log is written
        asynchronously); fails with the log if it does not."""
        for _ in range(50):
            log = readLog(server.log)
            if all(text in log for text in texts):
                return log
            await deferLater(reactor, 0.1, lambda: None)
        missing = [text for text in texts if text not in readLog(server.log)]
        raise AssertionError(f"the log lacks {missing}:\n{readLog(server.log)}")

    async def connectWithRetries(self, description: str) -> AsapClient:
        """A ready client; while the cap is full the server closes us, so try again
        (bounded)."""
        for _ in range(100):
            try:
                client = await connectClient(description)
            except Exception:
                await deferLater(reactor, 0.1, lambda: None)
                continue
            self.addCleanup(client.close)
            return client
        raise AssertionError(f"no ready connection to {description}")

    async def servedLegitimately(self, server: EnrpProcess, pe: int = 0x1001) -> None:
        """A PE registers and a PU resolves it (retrying connections the cap refused)."""
        element = await self.connectWithRetries(server.peEndpoint())
        response = await element.request(registration(pe))
        assert response == asap.RegistrationResponse(b"echo", pe)
        user = await self.connectWithRetries(server.puEndpoint())
        answer = await user.request(asap.HandleResolution(b"echo"))
        assert isinstance(answer, asap.HandleResolutionResponse)
        assert [e.pe_identifier for e in answer.pool_elements] == [pe]

    def assertNoTraceback(self, log: str) -> None:
        assert "Unhandled Error" not in log
        assert "Traceback" not in log
        assert "Too many open files" not in log


class ConnectionAttackTests(AttackTestCase):
    async def test_stalled_handshakes_over_the_asap_cap(self) -> None:
        """60 stalled connections against --max-connections 20 and --handshake-timeout 2:
        those over the cap are refused at accept, the others aborted at the deadline, with
        no traceback; a PE registers and a PU resolves while the attack's sockets are
        still being closed."""
        server = self.startServer("--max-connections", "20", "--handshake-timeout", "2")
        before = await self.counters(server)
        sockets = self.attack(server.port, 60)
        await self.servedLegitimately(server)
        await self.closedByServer(sockets)
        counters = await self.counters(server)
        refused = counters.get("connections_refused_cap", 0) - before.get(
            "connections_refused_cap", 0
        )
        timedOut = counters.get("handshake_timeouts", 0) - before.get("handshake_timeouts", 0)
        assert refused >= 1 and timedOut >= 1, counters
        # Every attack socket was closed by one defence or the other (the legitimate
        # clients' refused attempts count as refusals too).
        assert refused + timedOut >= 60, counters
        log = await self.logContains(
            server,
            "Refusing ASAP connection from 127.0.0.1:",
            "not ready 2.0 s after it opened: TLS handshake not completed",
        )
        self.assertNoTraceback(log)

    async def test_stalled_handshakes_over_the_enrp_cap(self) -> None:
        """The ENRP listener has its own cap (--max-peer-connections 5) and the same
        deadline: 20 stalled connections are all closed, and afterwards a legitimate
        TLS-PSK connection to it becomes ready and the ASAP side still serves."""
        enrpPort = freePort()
        directory = Path(self.mktemp()).resolve()  # type: ignore[no-untyped-call]
        server = EnrpProcess(directory)
        listener = f"tlspsk:{enrpPort}:interface={LOOPBACK}:pskFile={server.pskFile}"
        server.extra = (
            "--enrp", listener, "--max-peer-connections", "5", "--handshake-timeout", "2",
        )  # fmt: skip
        self.addCleanup(server.stop)
        server.start()
        sockets = self.attack(enrpPort, 20)
        await self.closedByServer(sockets)
        counters = await self.counters(server)
        refused = counters.get("peer_connections_refused_cap", 0)
        timedOut = counters.get("peer_handshake_timeouts", 0)
        assert refused >= 1 and timedOut >= 1, counters
        assert refused + timedOut >= 20, counters
        assert counters.get("connections_refused_cap", 0) == 0  # the ASAP cap is separate
        keys = directory / "enrp-client.psk"
        writePskFile(keys, {"pe": PE_KEY})
        peer = await self.connectWithRetries(
            f"tlspsk:host={LOOPBACK}:port={enrpPort}:identity=pe:pskFile={keys}"
        )
        assert peer.ready
        await self.servedLegitimately(server)
        log = await self.logContains(
            server,
            "Refusing ENRP connection from 127.0.0.1:",
            "not ready 2.0 s after it opened: TLS handshake not completed",
        )
        self.assertNoTraceback(log)


class DescriptorLimitTests(AttackTestCase):
    async def test_low_descriptor_limit_lowers_the_cap(self) -> None:
        """Under RLIMIT_NOFILE 150 the default cap of 10,000 is lowered (and logged); 30
        idle sockets more than that cap are all closed (the excess refused at accept), the
        server never runs out of descriptors, and a PE and a PU are served."""
        server = self.startServer("--handshake-timeout", "5", nofile=150)
        log = await self.logContains(server, "--max-connections lowered from 10000 to")
        match = re.search(r"--max-connections lowered from 10000 to (\d+)", log)
        assert match is not None
        cap = int(match.group(1))
        assert 16 <= cap < 150
        sockets = self.attack(server.port, cap + 30)
        await self.closedByServer(sockets)
        counters = await self.counters(server)
        assert counters.get("connections_refused_cap", 0) >= 1, counters
        await self.servedLegitimately(server)
        self.assertNoTraceback(readLog(server.log))

    def test_too_low_descriptor_limit_refuses_to_start(self) -> None:
        """Under RLIMIT_NOFILE 70 not even the minimum cap fits: twistd exits with one
        line on stderr, without a traceback."""
        server = EnrpProcess(Path(self.mktemp()).resolve(), nofile=70)  # type: ignore[no-untyped-call]
        self.addCleanup(server.stop)
        with pytest.raises(AssertionError, match="twistd exited with 1"):
            server.start()
        output = (server.directory / "stdout.txt").read_text()
        assert "twistd enrp: cannot start: the file descriptor limit (RLIMIT_NOFILE 70)" in output
        assert "Traceback" not in output
