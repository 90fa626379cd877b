"""Attacks on the registrar played against real ``twistd -n enrp`` processes (issue 11).

- ENDPOINT_UNREACHABLE floods (RFC 5355 2.13, 2.4) from an anonymous connection on a server
  without anonymous pool users, from an identity whose policy has ``roles = []``, and from
  an authorized pool user repeating itself: a PE that answers its keep-alives stays.
- The hijack of a PE identifier across a pool (RFC 5355 2.3): another identity
  re-registering the PE at another server is refused there with cause 10.
- One skip-and-report parameter gets exactly one ASAP_ERROR (RFC 5354 section 3).

Every wait is bounded; the assertions are on state (admin JSON, resolutions) and on the
log, never on timings.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import urllib.request
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any, cast

import pytest
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.task import deferLater
from twisted.trial.unittest import TestCase

from tests.enrp.support import (
    LOOPBACK,
    OTHER_KEY,
    PE_KEY,
    AsapClient,
    EnrpProcess,
    connectClient,
    readLog,
)
from tests.enrp.test_pool_processes import Pool, Server, waitUntil
from twisted_rserpool.security.psk import writePskFile
from twisted_rserpool.wire import asap
from twisted_rserpool.wire.errors import CauseCode
from twisted_rserpool.wire.parameters import PoolElementParameter, RoundRobinPolicy, TcpTransport

pytestmark = pytest.mark.slow

POOL = b"echo"
PE = 0x5EED
USER_KEY = bytes(range(7, 39))
NOBODY_KEY = bytes(range(9, 41))
POLICY = """
[identities."pe"]
roles = ["pool-element"]
pools = ["echo"]

[identities."pe-2"]
roles = ["pool-element"]
pools = ["echo"]

[identities."user"]
roles = ["pool-user"]

[identities."nobody"]
roles = []
"""


def _sleep(seconds: float) -> Deferred[None]:
    return deferLater(reactor, seconds, lambda: None)


def registration(port: int, pe: int = PE) -> asap.Registration:
    return asap.Registration(
        POOL,
        PoolElementParameter(
            pe, 0, 60, TcpTransport(port, IPv4Address("0.0.0.0")), RoundRobinPolicy()
        ),
    )


class LivePoolElement(AsapClient):
    """A pool element that answers every ASAP_ENDPOINT_KEEP_ALIVE at once (it is healthy)."""

    keepAlives = 0

    def asapMessageReceived(self, message: asap.AsapMessage) -> None:
        if isinstance(message, asap.EndpointKeepAlive):
            self.keepAlives += 1
            pe = message.pe_identifier if message.pe_identifier is not None else PE
            self.sendAsap(asap.EndpointKeepAliveAck(message.pool_handle, pe))
            return
        super().asapMessageReceived(message)


async def connectPoolElement(description: str) -> LivePoolElement:
    from twisted.internet.endpoints import clientFromString, connectProtocol

    endpoint = clientFromString(reactor, description)  # type: ignore[no-untyped-call]
    client = LivePoolElement()
    await connectProtocol(endpoint, client)  # type: ignore[no-untyped-call]
    await client.readyDeferred
    return client


class _RawAsap:
    """Bytes that go out as one ASAP message, exactly as given."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    def encode(self) -> bytes:
        return self.data


def admin(process: EnrpProcess) -> dict[str, Any]:
    with urllib.request.urlopen(f"http://{LOOPBACK}:{process.adminPort}/", timeout=5) as r:
        document: dict[str, Any] = json.loads(r.read())
        return document


def elementOwners(process: EnrpProcess) -> dict[int, str | None]:
    """PE identifier -> owner identity, from the admin interface."""
    return {
        int(element["pe_identifier"], 16): element["owner_identity"]
        for pool in admin(process)["pools"]
        for element in pool["pool_elements"]
    }


async def resolvedPorts(description: str) -> dict[int, int]:
    """PE identifier -> port, as a pool user resolving the pool at this server gets them."""
    client = await connectClient(description)
    try:
        answer = await client.request(asap.HandleResolution(POOL, items=16))
    finally:
        client.close()
    assert isinstance(answer, asap.HandleResolutionResponse)
    ports: dict[int, int] = {}
    for element in answer.pool_elements:
        assert isinstance(element.user_transport, TcpTransport)
        ports[element.pe_identifier] = element.user_transport.port
    return ports


class SingleServerAttackTests(TestCase):
    """One server without anonymous pool users, with a policy naming every identity."""

    timeout = 60

    def setUp(self) -> None:
        directory = Path(self.mktemp()).resolve()  # type: ignore[no-untyped-call]
        directory.mkdir(parents=True)
        policy = directory / "policy.toml"
        policy.write_text(POLICY)
        self.server = EnrpProcess(
            directory,
            extra=(
                "--policy",
                str(policy),
                "--no-anonymous-pool-users",
                "--max-bad-pe-report",
                "3",
            ),
        )
        writePskFile(
            self.server.pskFile,
            {"pe": PE_KEY, "pe-2": OTHER_KEY, "user": USER_KEY, "nobody": NOBODY_KEY},
        )
        self.server.start()
        self.addCleanup(self.server.stop)
        self.clients: list[AsapClient] = []
        self.addCleanup(self.closeClients)

    def closeClients(self) -> None:
        for client in self.clients:
            client.close()

    async def healthyPoolElement(self) -> LivePoolElement:
        pe = await connectPoolElement(self.server.peEndpoint())
        self.clients.append(pe)
        answer = await pe.request(registration(7001))
        assert isinstance(answer, asap.RegistrationResponse) and not answer.reject
        return pe

    async def assertStillServed(self, pe: LivePoolElement) -> None:
        """The PE is in the handlespace and a legitimate pool user gets it."""
        assert PE in elementOwners(self.server)
        user = await connectClient(self.server.peEndpoint("user", USER_KEY))
        self.clients.append(user)
        answer = await user.request(asap.HandleResolution(POOL))
        assert isinstance(answer, asap.HandleResolutionResponse)
        assert [e.pe_identifier for e in answer.pool_elements] == [PE]
        assert pe.transport is not None and pe.lostDeferred.called is False

    async def flood(self, client: AsapClient, count: int) -> None:
        for _ in range(count):
            client.sendAsap(asap.EndpointUnreachable(POOL, PE))
        # A request after the flood: its answer means the server read every report.
        answer = await client.request(asap.HandleResolution(b"other"))
        assert isinstance(answer, asap.HandleResolutionResponse)

    async def test_anonymous_unreachable_flood_changes_nothing(self) -> None:
        """--no-anonymous-pool-users: an anonymous TLS connection's reports are refused."""
        pe = await self.healthyPoolElement()
        attacker = await connectClient(self.server.puEndpoint())
        self.clients.append(attacker)
        await self.flood(attacker, 50)
        await _sleep(2.5)  # beyond a keep-alive timeout: a removal would have happened
        await self.assertStillServed(pe)
        counters = admin(self.server)["counters"]
        assert counters["unreachable_reports_refused"] == 50
        assert counters.get("unreachable_reports", 0) == 0
        log = readLog(self.server.log)
        assert log.count("refused: the reporter may not resolve this pool") == 1
        assert "(unauthenticated)" in log

    async def test_identity_without_roles_changes_nothing(self) -> None:
        """An identity whose policy entry has roles = [] may not report."""
        pe = await self.healthyPoolElement()
        attacker = await connectClient(self.server.peEndpoint("nobody", NOBODY_KEY))
        self.clients.append(attacker)
        await self.flood(attacker, 50)
        await _sleep(2.5)
        await self.assertStillServed(pe)
        assert admin(self.server)["counters"]["unreachable_reports_refused"] == 50
        log = readLog(self.server.log)
        assert "(nobody)" in log and "refused: the reporter may not resolve this pool" in log

    async def test_authorized_user_repeating_its_report_changes_nothing(self) -> None:
        """A pool user reporting the same healthy PE every 1.2 s counts once; it stays."""
        pe = await self.healthyPoolElement()
        user = await connectClient(self.server.peEndpoint("user", USER_KEY))
        self.clients.append(user)
        for _ in range(5):
            user.sendAsap(asap.EndpointUnreachable(POOL, PE))
            await _sleep(1.2)
        await self.assertStillServed(pe)
        counters = admin(self.server)["counters"]
        assert counters["unreachable_reports"] == 5
        assert counters["unreachable_reports_repeated"] == 4
        assert counters.get("removed_keep_alive_timeout", 0) == 0
        assert pe.keepAlives >= 1

    async def test_one_error_per_skip_and_report_parameter(self) -> None:
        """A 0xc0xx parameter in a handle resolution: one ASAP_ERROR, and the answer."""
        user = await connectClient(self.server.peEndpoint("user", USER_KEY))
        self.clients.append(user)
        unknown = bytes.fromhex("c0aa0008deadbeef")
        plain = asap.HandleResolution(POOL).encode()
        data = plain[:2] + (len(plain) + len(unknown)).to_bytes(2, "big") + plain[4:] + unknown
        user.sendAsap(cast(asap.AsapMessage, _RawAsap(data)))
        user.sendAsap(asap.HandleResolution(b"marker"))
        received: list[asap.AsapMessage] = []
        while True:
            message = await user.messages.get()
            received.append(message)
            if isinstance(message, asap.HandleResolutionResponse) and (
                message.pool_handle == b"marker"
            ):
                break
        errors = [m for m in received if isinstance(m, asap.ErrorMessage)]
        assert len(errors) == 1, received
        (cause,) = errors[0].error.causes
        assert cause.code == CauseCode.UNRECOGNIZED_PARAMETER
        assert cause.information == unknown
        answers = [m for m in received if isinstance(m, asap.HandleResolutionResponse)]
        assert [a.pool_handle for a in answers] == [POOL, b"marker"]


class PoolHijackTests(TestCase):
    """Real pools over TLS-PSK: a PE's identifier belongs to its identity everywhere."""

    timeout = 90

    def makePool(self, count: int) -> Pool:
        directory = Path(tempfile.mkdtemp(prefix="enrp-hijack-"))
        self.addCleanup(shutil.rmtree, directory, ignore_errors=True)
        pool = Pool(directory, count)
        self.addCleanup(pool.stop)
        return pool

    async def registerAt(self, server: Server, identity: str, key: bytes, port: int) -> Any:
        client = await connectPoolElement(server.process.peEndpoint(identity, key))
        self.addCleanup(client.close)
        answer = await client.request(registration(port))
        assert isinstance(answer, asap.RegistrationResponse)
        return answer

    async def test_hijack_at_another_server_is_refused(self) -> None:
        """pe registers X at A; pe-2 re-registers X at B with another port: refused with
        cause 10 at B, and B and C still resolve X to pe's port."""
        pool = self.makePool(3)
        pool.startAll()
        a, b, c = pool.servers
        answer = await self.registerAt(a, "pe", PE_KEY, 7001)
        assert not answer.reject
        await waitUntil(lambda: all(PE in s.elements() for s in (b, c)), 15, "replication")
        hijack = await self.registerAt(b, "pe-2", OTHER_KEY, 6666)
        assert hijack.reject
        assert hijack.error is not None
        assert hijack.error.code == CauseCode.REJECTED_DUE_TO_SECURITY_CONSIDERATIONS
        await _sleep(1.0)  # any update the hijack caused would have spread by now
        for server in (a, b, c):
            assert await resolvedPorts(server.process.peEndpoint()) == {PE: 7001}
            assert server.elements() == {PE: a.serverId}
        log = readLog(b.process.log)
        assert "(pe-2)" in log and f"PE 0x{PE:08x}" in log and "refused" in log

    async def test_owner_travels_with_the_pe(self) -> None:
        """B learns X's owner from A: its refusal names both identities, and after A died
        the owner itself may move X to B (a server hunt, RFC 5352 3.6), takeover or not."""
        pool = self.makePool(2)
        pool.startAll()
        a, b = pool.servers
        assert not (await self.registerAt(a, "pe", PE_KEY, 7001)).reject
        await waitUntil(lambda: PE in b.elements(), 15, "replication")
        assert elementOwners(b.process) == {PE: "pe"}
        assert (await self.registerAt(b, "pe-2", OTHER_KEY, 6666)).reject
        assert "is owned by 'pe': registration by 'pe-2'" in readLog(b.process.log)
        pool.kill(a)
        moved = await self.registerAt(b, "pe", PE_KEY, 7001)
        assert not moved.reject
        assert b.elements() == {PE: b.serverId}
        assert await resolvedPorts(b.process.peEndpoint()) == {PE: 7001}
