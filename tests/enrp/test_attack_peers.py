"""An authenticated insider ENRP server against a real pool of three ``twistd -n enrp``
over TLS-PSK on loopback (RFC 5355 2.5, 2.17): it re-homes B's PE every 0.3 s, sends
ADD_PE then DEL_PE for it, and claims B's server identifier after B's connection drops.
The handlespace stays as it was (admin JSON), the logs name the cause, resolutions at A
keep returning B's real port, and B restarted is accepted. Every wait is bounded."""

from __future__ import annotations

import shutil
import tempfile
import time
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any

import pytest
from twisted.internet import defer, reactor
from twisted.internet.defer import Deferred
from twisted.trial.unittest import TestCase

from tests.enrp import test_pool_processes as processes
from tests.enrp.support import LOOPBACK, OTHER_KEY, PE_KEY, connectClient, readLog
from twisted_rserpool.security.psk import writePskFile
from twisted_rserpool.wire import asap, enrp
from twisted_rserpool.wire.errors import CauseCode
from twisted_rserpool.wire.parameters import (
    PoolElementParameter,
    RoundRobinPolicy,
    TcpTransport,
)

pytestmark = pytest.mark.slow

POOL = processes.POOL
INSIDER = 0x66
THIEF = "enrp-thief"
THIEF_KEY = bytes(range(100, 132))
ATTACKER_PORT = 6666
REFUSED = CauseCode.REJECTED_DUE_TO_SECURITY_CONSIDERATIONS


def _sleep(seconds: float) -> Deferred[None]:
    return processes._sleep(seconds)


def elementsWithPorts(server: processes.Server) -> dict[int, tuple[int, int | None]]:
    """PE identifier -> (home server identifier, user transport port), from the admin JSON."""
    result: dict[int, tuple[int, int | None]] = {}
    for pool in server.admin()["pools"]:
        for element in pool["pool_elements"]:
            result[int(element["pe_identifier"], 16)] = (
                int(element["home_server_identifier"], 16),
                element["user_transport"]["port"],
            )
    return result


async def resolvePorts(server: processes.Server) -> dict[int, int]:
    """PE identifier -> user transport port, as a pool user is told by ``server``."""
    client = await connectClient(server.process.peEndpoint())
    try:
        answer = await client.request(asap.HandleResolution(POOL, items=64))
    finally:
        client.close()
    assert isinstance(answer, asap.HandleResolutionResponse)
    ports: dict[int, int] = {}
    for element in answer.pool_elements:
        assert isinstance(element.user_transport, TcpTransport)
        ports[element.pe_identifier] = element.user_transport.port
    return ports


def forged(pe: int, home: int, owner: str | None) -> PoolElementParameter:
    """B's PE as the insider would have it: its own port, the home it names."""
    transport = TcpTransport(ATTACKER_PORT, IPv4Address(LOOPBACK))
    return PoolElementParameter(
        pe, home, 30, transport, RoundRobinPolicy(), transport, owner_identity=owner
    )


async def errorsWithin(client: Any, count: int, limit: float) -> list[enrp.ErrorMessage]:
    """The ENRP_ERRORs ``client`` receives, until ``count`` came or ``limit`` passed."""
    errors: list[enrp.ErrorMessage] = []
    deadline = time.monotonic() + limit
    while len(errors) < count and time.monotonic() < deadline:
        waiting = client.messages.get()
        waiting.addTimeout(max(0.1, deadline - time.monotonic()), reactor)
        try:
            message = await waiting
        except defer.TimeoutError:
            break
        if isinstance(message, enrp.ErrorMessage):
            errors.append(message)
    return errors


class InsiderTests(TestCase):
    timeout = 120

    def makePool(self) -> processes.Pool:
        directory = Path(tempfile.mkdtemp(prefix="enrp-attack-"))
        self.addCleanup(shutil.rmtree, directory, ignore_errors=True)
        pool = processes.Pool(directory, 3)
        self.addCleanup(pool.stop)
        # Every server also knows the thief's identity: a valid insider of its own.
        for server in pool.servers:
            server.process.directory.mkdir(parents=True, exist_ok=True)
            writePskFile(
                server.process.pskFile,
                {"pe": PE_KEY, "pe-2": OTHER_KEY, THIEF: THIEF_KEY} | pool.identities(),
            )
        self.thiefPsk = directory / "thief.psk"
        writePskFile(self.thiefPsk, {THIEF: THIEF_KEY})
        return pool

    async def converged(self, pool: processes.Pool, servers: list[processes.Server]) -> None:
        def same() -> bool:
            views = [s.elements() for s in servers]
            return all(v == views[0] for v in views)

        await processes.waitUntil(same, 15, "convergence")

    async def test_insider_cannot_rehome_or_delete_another_servers_pe(self) -> None:
        """The re-homing attack every 0.3 s (with and without B's PE's owner named),
        then ADD_PE + DEL_PE: A answers each with cause 10 and logs the insider, its
        handlespace keeps B's PE at B's port, and every resolution at A returns it."""
        pool = self.makePool()
        pool.startAll()
        a, b, c = pool.servers
        await self.converged(pool, pool.servers)
        _, pe = pool.startElement(b, "victim")
        await processes.waitUntil(
            lambda: all(pe in s.elements() for s in pool.servers), 10, "replication"
        )
        before = elementsWithPorts(a)
        home, port = before[pe]
        assert home == b.serverId and port not in (None, ATTACKER_PORT)

        insider = await processes._connectEnrp(pool.peerString(a))
        insider.sendEnrp(enrp.Presence(INSIDER, 0, 0))
        rounds = 10
        resolved: list[int | None] = []
        for round in range(rounds):
            owner = "pe" if round % 2 else None
            insider.sendEnrp(
                enrp.HandleUpdate(
                    INSIDER, 0, enrp.UpdateAction.ADD_PE, POOL, forged(pe, INSIDER, owner)
                )
            )
            await _sleep(0.3)
            resolved.append((await resolvePorts(a)).get(pe))
        # ADD_PE then DEL_PE, naming the insider and then B as home.
        for home_named in (INSIDER, b.serverId):
            for action in (enrp.UpdateAction.ADD_PE, enrp.UpdateAction.DEL_PE):
                insider.sendEnrp(
                    enrp.HandleUpdate(INSIDER, 0, action, POOL, forged(pe, home_named, "pe"))
                )
        errors = await errorsWithin(insider, rounds + 4, 10)
        insider.close()

        assert [e.error.code for e in errors] == [REFUSED] * (rounds + 4)
        assert resolved == [port] * rounds
        await _sleep(1.0)
        assert elementsWithPorts(a) == before
        assert (await resolvePorts(a)) == {pe: port}
        assert elementsWithPorts(c) == before  # the insider never reached C either
        text = readLog(a.process.log)
        assert f"server 0x{INSIDER:08x} (enrp, connection" in text
        assert f"the PE's home is 0x{b.serverId:08x}, which is alive" in text
        assert "DEL_PE of PE" in text

    async def test_insider_cannot_steal_a_dropped_servers_identifier(self) -> None:
        """B is killed; an insider with its own valid identity claims B's identifier at A
        and is refused (cause 10, closed), the log naming both identities; B restarted,
        same identity and identifier, is accepted again; A's pin file names B's identity."""
        pool = self.makePool()
        pool.startAll()
        a, b, _ = pool.servers
        await self.converged(pool, pool.servers)
        pool.kill(b)
        await processes.waitUntil(
            lambda: all(
                p["server"] != f"0x{b.serverId:08x}" or p["connections"] == 0
                for p in a.admin()["peers"]
            ),
            10,
            "B's connections at A closing",
        )
        thief = await processes._connectEnrp(pool.peerString(a, self.thiefPsk, identity=THIEF))
        thief.sendEnrp(enrp.Presence(b.serverId, 0, 0))
        errors = await errorsWithin(thief, 1, 10)
        assert [e.error.code for e in errors] == [REFUSED]
        await processes.waitUntil(lambda: thief._lost, 10, "the thief's link closing")
        text = readLog(a.process.log)
        assert (
            f"claims server 0x{b.serverId:08x}: refused, 0x{b.serverId:08x} is bound to"
            f" identity 'enrp-{b.number}'" in text
        )
        assert f"({THIEF}, connection" in text
        peers = {p["server"]: p for p in a.admin()["peers"]}
        assert peers.get(f"0x{b.serverId:08x}", {}).get("identity") in (None, f"enrp-{b.number}")

        pool.start(b)

        def accepted() -> bool:
            rows = {p["server"]: p for p in a.admin()["peers"]}
            row = rows.get(f"0x{b.serverId:08x}")
            return row is not None and row["connections"] > 0 and row["state"] == "active"

        await processes.waitUntil(accepted, 15, "B accepted again")
        row = {p["server"]: p for p in a.admin()["peers"]}[f"0x{b.serverId:08x}"]
        assert row["identity"] == f"enrp-{b.number}"
        pins = (a.process.directory / "enrp-state" / "server-identifiers.json").read_text()
        assert f'"enrp-{b.number}": "0x{b.serverId:08x}"' in pins
