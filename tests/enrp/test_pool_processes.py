"""Real ``twistd -n enrp`` processes peering over TLS-PSK on loopback: replication,
takeover after kill -9, refusals of a rogue server and of a peer's forged updates, and a
bounded chaos run. Every process is killed in a cleanup; every wait is bounded."""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any

import pytest
from twisted.internet import reactor
from twisted.internet.defer import Deferred, DeferredQueue
from twisted.internet.endpoints import clientFromString, connectProtocol
from twisted.internet.task import deferLater
from twisted.trial.unittest import TestCase

from tests.enrp.support import (
    LOOPBACK,
    OTHER_KEY,
    PE_KEY,
    EnrpProcess,
    connectClient,
    freePort,
    readLog,
)
from twisted_rserpool.security.context import SecurityContext
from twisted_rserpool.security.psk import writePskFile
from twisted_rserpool.transport.protocol import RSerPoolProtocol
from twisted_rserpool.wire import asap, enrp
from twisted_rserpool.wire.errors import CauseCode
from twisted_rserpool.wire.parameters import PoolElementParameter, RoundRobinPolicy, TcpTransport

pytestmark = pytest.mark.slow

ENRP_KEY = bytes(range(64, 96))
POOL = b"echo"
#: Timers of every server in these tests (seconds).
HEARTBEAT, LAST_HEARD, NO_RESPONSE, EXPIRY = 0.5, 1.5, 1.0, 2.0
#: How long a takeover may take: detection, arbitration, and the processes' scheduling.
TAKEOVER_BOUND = LAST_HEARD + NO_RESPONSE + EXPIRY + 2.0


def _sleep(seconds: float) -> Deferred[None]:
    return deferLater(reactor, seconds, lambda: None)


@dataclass
class Server:
    """One ENRP server of a test pool."""

    number: int
    process: EnrpProcess
    enrpPort: int = field(default_factory=freePort)

    @property
    def serverId(self) -> int:
        return self.number

    def admin(self) -> dict[str, Any]:
        url = f"http://{LOOPBACK}:{self.process.adminPort}/"
        with urllib.request.urlopen(url, timeout=5) as response:
            document: dict[str, Any] = json.loads(response.read())
            return document

    def elements(self) -> dict[int, int]:
        """PE identifier -> home server identifier, from the admin interface."""
        result: dict[int, int] = {}
        for pool in self.admin()["pools"]:
            for element in pool["pool_elements"]:
                result[int(element["pe_identifier"], 16)] = int(
                    element["home_server_identifier"], 16
                )
        return result

    @property
    def alive(self) -> bool:
        process = self.process.process
        return process is not None and process.poll() is None


class Pool:
    """Several ENRP server processes that peer with each other over TLS-PSK.

    Server ``n`` is ENRP identity ``enrp-n`` (RFC 5355 2.5: a server identifier is bound
    to one identity). The identity ``enrp`` is valid at every server too, for tests that
    play an insider ENRP server.
    """

    def __init__(self, directory: Path, count: int, *, extra: tuple[str, ...] = ()) -> None:
        self.directory = directory.resolve()
        self.directory.mkdir(parents=True, exist_ok=True)
        self.clientPsk = self.directory / "enrp-client.psk"
        writePskFile(self.clientPsk, {"enrp": ENRP_KEY})
        self.servers = [
            Server(n, EnrpProcess(self.directory / f"server-{n}")) for n in range(1, count + 1)
        ]
        self.extra = extra
        self.elements: list[subprocess.Popen[bytes]] = []

    def identities(self) -> dict[str, bytes]:
        """The ENRP identities every server knows: one per server, and the insider's."""
        return {"enrp": ENRP_KEY} | {f"enrp-{s.number}": ENRP_KEY for s in self.servers}

    def serverPsk(self, server: Server) -> Path:
        """The PSK file with ``server``'s own ENRP identity, for its outgoing connections."""
        psk = self.directory / f"enrp-client-{server.number}.psk"
        if not psk.exists():
            writePskFile(psk, {f"enrp-{server.number}": ENRP_KEY})
        return psk

    def peerString(self, server: Server, psk: Path | None = None, identity: str = "enrp") -> str:
        return (
            f"tlspsk:host={LOOPBACK}:port={server.enrpPort}:identity={identity}"
            f":pskFile={psk or self.clientPsk}"
        )

    def start(self, server: Server) -> None:
        if server.alive:
            return  # never two processes for one server (the first would be orphaned)
        process = server.process
        process.directory.mkdir(parents=True, exist_ok=True)
        if not process.pskFile.exists():
            writePskFile(process.pskFile, {"pe": PE_KEY, "pe-2": OTHER_KEY} | self.identities())
        own = f"enrp-{server.number}"
        psk = self.serverPsk(server)
        peers: list[str] = []
        for other in self.servers:
            if other is not server:
                peers += ["--peer", self.peerString(other, psk, own)]
        process.extra = (
            "--server-id", hex(server.serverId),
            "--enrp", f"tlspsk:{server.enrpPort}:interface={LOOPBACK}:pskFile={process.pskFile}",
            *peers,
            "--enrp-identity", own, "--enrp-psk-file", str(psk),
            "--peer-heartbeat-cycle", str(HEARTBEAT),
            "--max-time-last-heard", str(LAST_HEARD),
            "--max-time-no-response", str(NO_RESPONSE),
            "--takeover-expiry", str(EXPIRY),
            "--mentor-discovery", "1.5",
            *self.extra,
        )  # fmt: skip
        process.start()

    def startAll(self) -> None:
        for server in self.servers:
            self.start(server)

    def kill(self, server: Server) -> None:
        server.process.stop()

    def stop(self) -> None:
        for element in self.elements:
            if element.poll() is None:
                element.send_signal(signal.SIGKILL)
                element.wait(timeout=10)
        for server in self.servers:
            server.process.stop()

    def startElement(self, server: Server, name: str) -> tuple[subprocess.Popen[bytes], int]:
        """A pool element process registered at ``server``; returns it and its PE id."""
        listenPsk = self.directory / "pe-listen.psk"
        if not listenPsk.exists():
            writePskFile(listenPsk, self.identities())
        clientPsk = self.directory / "pe-client.psk"
        if not clientPsk.exists():
            writePskFile(clientPsk, {"pe": PE_KEY})
        log = self.directory / f"pe-{name}.log"
        command = [
            sys.executable, "-m", "twisted_rserpool._demo.pe",
            "--pool", POOL.decode(),
            "--enrp", f"tlspsk:host={LOOPBACK}:port={server.process.port}:identity=pe"
            f":pskFile={clientPsk}",
            "--listen", f"tlspsk:0:interface={LOOPBACK}:pskFile={listenPsk}",
            *(f"--enrp-server-identity={name}" for name in self.identities() if name != "enrp"),
            "--life", "30", "--verbose",
        ]  # fmt: skip
        element = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=open(log, "wb"),  # noqa: SIM115
            env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
        )
        self.elements.append(element)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            # With --verbose the READY line is logged (stdout goes to the log).
            text = log.read_text(errors="replace") if log.exists() else ""
            if "READY pe=" in text:
                pe = int(text.split("READY pe=")[1].split()[0], 16)
                return element, pe
            if element.poll() is not None:
                break
            time.sleep(0.05)
        raise AssertionError(f"pool element did not register:\n{log.read_text(errors='replace')}")

    def logs(self) -> str:
        return "\n".join(
            f"===== server {s.number} =====\n{readLog(s.process.log)[-6000:]}" for s in self.servers
        )


async def waitUntil(condition: Callable[[], bool], limit: float, what: str) -> float:
    """Poll ``condition`` (bounded); returns the seconds it took."""
    start = time.monotonic()
    while True:
        try:
            if condition():
                return time.monotonic() - start
        except OSError:
            pass
        if time.monotonic() - start > limit:
            raise AssertionError(f"{what} not within {limit} s")
        await _sleep(0.1)


async def resolve(server: Server) -> set[int]:
    """The PE identifiers a pool user gets from ``server`` by ASAP handle resolution."""
    client = await connectClient(server.process.peEndpoint())
    try:
        answer = await client.request(asap.HandleResolution(POOL, items=64))
    finally:
        client.close()
    assert isinstance(answer, asap.HandleResolutionResponse)
    return {element.pe_identifier for element in answer.pool_elements}


class PoolTests(TestCase):
    timeout = 90

    def makePool(self, count: int) -> Pool:
        directory = Path(tempfile.mkdtemp(prefix="enrp-pool-"))
        self.addCleanup(shutil.rmtree, directory, ignore_errors=True)
        pool = Pool(directory, count)
        self.addCleanup(pool.stop)
        self.pool = pool
        return pool

    async def converged(self, servers: list[Server], limit: float = 10.0) -> float:
        """Wait until every server holds the same PEs and every checksum agrees."""

        def same() -> bool:
            documents = [s.admin() for s in servers]
            views = [s.elements() for s in servers]
            owners = [d["owners"] for d in documents]
            return all(v == views[0] for v in views) and all(o == owners[0] for o in owners)

        return await waitUntil(same, limit, "convergence")

    async def test_three_servers_replicate_and_take_over(self) -> None:
        """Registration at one server, resolution at every one; kill -9 of the home server:
        one survivor takes the PE over within the bound and it stays resolvable."""
        pool = self.makePool(3)
        pool.startAll()
        a, b, c = pool.servers
        await self.converged(pool.servers)
        _, pe = pool.startElement(c, "one")
        await waitUntil(lambda: all(pe in s.elements() for s in pool.servers), 10, "replication")
        for server in pool.servers:
            assert await resolve(server) == {pe}
        pool.kill(c)
        killed = time.monotonic()
        survivors = {a.serverId, b.serverId}

        def takenOver() -> bool:
            homes = {a.elements().get(pe), b.elements().get(pe)}
            return len(homes) == 1 and homes <= survivors

        await waitUntil(takenOver, TAKEOVER_BOUND + 2, "takeover by one survivor")
        took = time.monotonic() - killed
        print(f"takeover of the PE after kill -9: {took:.2f} s (bound {TAKEOVER_BOUND} s)")
        assert took <= TAKEOVER_BOUND
        # The PE adopted the new home: it stays (keep-alives answered) and resolvable.
        await _sleep(4.0)
        for server in (a, b):
            assert await resolve(server) == {pe}
        (home,) = {a.elements()[pe]}
        document = (a if home == a.serverId else b).admin()
        assert document["counters"].get("registrations", 0) >= 1
        # It re-registered over the connection its new home opened to it.
        (entry,) = document["pools"][0]["pool_elements"]
        assert entry["identity"] == f"enrp-{home}#takeover-{pe:08x}"
        await self.converged([a, b])

    async def test_five_servers_replicate_and_take_over(self) -> None:
        """Five servers: a PE registered at one is resolvable at all five; after kill -9
        of its home exactly one survivor owns it, the same at every survivor."""
        pool = self.makePool(5)
        pool.startAll()
        await self.converged(pool.servers)
        home = pool.servers[3]
        _, pe = pool.startElement(home, "five")
        await waitUntil(lambda: all(pe in s.elements() for s in pool.servers), 10, "replication")
        for server in pool.servers:
            assert await resolve(server) == {pe}
        pool.kill(home)
        survivors = [s for s in pool.servers if s is not home]
        identifiers = {s.serverId for s in survivors}

        def takenOver() -> bool:
            homes = {s.elements().get(pe) for s in survivors}
            return len(homes) == 1 and homes <= identifiers

        await waitUntil(takenOver, TAKEOVER_BOUND + 2, "takeover by exactly one survivor")
        await _sleep(3.0)
        for server in survivors:
            assert await resolve(server) == {pe}
        await self.converged(survivors)

    async def test_rogue_server_with_wrong_psk_is_refused(self) -> None:
        """A server with a wrong ENRP key never joins: its PEs never reach the pool."""
        pool = self.makePool(1)
        pool.startAll()
        (a,) = pool.servers
        wrongPsk = pool.directory / "wrong.psk"
        writePskFile(wrongPsk, {"enrp": OTHER_KEY})
        rogue = Server(9, EnrpProcess(pool.directory / "rogue"))
        pool.servers.append(rogue)
        rogue.process.directory.mkdir(parents=True)
        writePskFile(rogue.process.pskFile, {"pe": PE_KEY, "enrp": OTHER_KEY})
        rogue.process.extra = (
            "--server-id", "0x9",
            "--enrp", f"tlspsk:{rogue.enrpPort}:interface={LOOPBACK}"
            f":pskFile={rogue.process.pskFile}",
            "--peer", pool.peerString(a, wrongPsk),
            "--peer-heartbeat-cycle", "0.5", "--mentor-discovery", "1",
        )  # fmt: skip
        rogue.process.start()
        client = await connectClient(rogue.process.peEndpoint())
        await client.request(_registration(0x777, 7777))
        client.close()
        await _sleep(3.0)
        assert a.admin()["peers"] == []
        assert 0x777 not in a.elements()
        assert "0x00000009" not in json.dumps(a.admin())

    async def test_peer_announcing_another_servers_pes_is_refused(self) -> None:
        """An authenticated peer may only add or delete PEs it is home for (RFC 5355 2.17):
        forged ADD_PE and DEL_PE are answered with ENRP_ERROR and change nothing."""
        pool = self.makePool(2)
        pool.startAll()
        a, b = pool.servers
        await self.converged(pool.servers)
        client = await connectClient(b.process.peEndpoint())
        await client.request(_registration(0x1234, 7001))
        await waitUntil(lambda: 0x1234 in a.elements(), 10, "replication")
        insider = await _connectEnrp(pool.peerString(a))
        insider.sendEnrp(enrp.Presence(0x66, 0, 0))
        forged = _element(0x4321, home=b.serverId)
        insider.sendEnrp(enrp.HandleUpdate(0x66, 0, enrp.UpdateAction.ADD_PE, POOL, forged))
        stolen = _element(0x1234, home=b.serverId)
        insider.sendEnrp(enrp.HandleUpdate(0x66, 0, enrp.UpdateAction.DEL_PE, POOL, stolen))
        errors: list[enrp.ErrorMessage] = []
        deadline = time.monotonic() + 10
        while len(errors) < 2 and time.monotonic() < deadline:
            message = await insider.messages.get()
            if isinstance(message, enrp.ErrorMessage):
                errors.append(message)
        assert [e.error.code for e in errors] == [
            CauseCode.REJECTED_DUE_TO_SECURITY_CONSIDERATIONS
        ] * 2
        assert a.elements() == {0x1234: b.serverId}
        assert await resolve(a) == {0x1234}
        insider.close()
        client.close()
        assert "refused" in readLog(a.process.log)

    async def test_chaos(self) -> None:
        """Random kills and restarts of servers and PEs and random registrations (bounded
        in time and count): after settling every live PE is resolvable at every live
        server, no dead PE remains, and checksums agree."""
        rng = random.Random(int(os.environ.get("CHAOS_SEED", "5353")))
        pool = self.makePool(3)
        pool.startAll()
        await self.converged(pool.servers)
        live: dict[int, subprocess.Popen[bytes]] = {}
        counts = {"server_kills": 0, "server_restarts": 0, "pe_starts": 0, "pe_kills": 0}
        started = time.monotonic()
        for step in range(10):
            if time.monotonic() - started > 45:
                break
            action = rng.choice(["pe", "pe", "kill-pe", "server"])
            running = [s for s in pool.servers if s.alive]
            if action == "pe" or not live:
                element, pe = pool.startElement(rng.choice(running), f"chaos-{step}")
                live[pe] = element
                counts["pe_starts"] += 1
            elif action == "kill-pe":
                pe = rng.choice(sorted(live))
                live.pop(pe).send_signal(signal.SIGKILL)
                counts["pe_kills"] += 1
            else:
                victim = rng.choice(pool.servers)
                if victim.alive and len(running) > 1:
                    pool.kill(victim)
                    counts["server_kills"] += 1
                elif not victim.alive:
                    pool.start(victim)
                    counts["server_restarts"] += 1
            await _sleep(rng.uniform(0.2, 1.5))
        for server in pool.servers:
            if not server.alive:
                pool.start(server)
                counts["server_restarts"] += 1
        # Settle: takeovers, keep-alive timeouts (1 s + 1 s) and audits.
        settle = await self.converged(pool.servers, limit=30)
        wanted = set(live)

        def settled() -> bool:
            return all(set(s.elements()) == wanted for s in pool.servers)

        settle += await waitUntil(settled, 30, "every live PE everywhere, no dead PE")
        for server in pool.servers:
            assert await resolve(server) == wanted if wanted else True
        await self.converged(pool.servers)
        print(
            "chaos: {} live PEs checked at {} servers, settled in {:.1f} s; {}".format(
                len(wanted),
                len(pool.servers),
                settle,
                ", ".join(f"{k} {v}" for k, v in counts.items()),
            )
        )


def _element(pe: int, home: int) -> PoolElementParameter:
    address = IPv4Address(LOOPBACK)
    return PoolElementParameter(
        pe, home, 30, TcpTransport(7001, address), RoundRobinPolicy(), TcpTransport(7001, address)
    )


def _registration(pe: int, port: int) -> asap.Registration:
    address = IPv4Address(LOOPBACK)
    return asap.Registration(
        POOL, PoolElementParameter(pe, 0, 30, TcpTransport(port, address), RoundRobinPolicy())
    )


class _EnrpClient(RSerPoolProtocol):
    def __init__(self) -> None:
        super().__init__()
        self.messages: DeferredQueue[enrp.EnrpMessage] = DeferredQueue()
        self.readyDeferred: Deferred[SecurityContext] = Deferred()

    def connectionReady(self, securityContext: SecurityContext) -> None:
        self.readyDeferred.callback(securityContext)

    def enrpMessageReceived(self, message: enrp.EnrpMessage) -> None:
        self.messages.put(message)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.loseConnection()


async def _connectEnrp(description: str) -> _EnrpClient:
    endpoint = clientFromString(reactor, description)  # type: ignore[no-untyped-call]
    client = _EnrpClient()
    await connectProtocol(endpoint, client)  # type: ignore[no-untyped-call]
    await client.readyDeferred
    return client
