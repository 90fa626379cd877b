"""RFC 5352 procedures against real ``twistd -n enrp`` processes (issue 16): T4 under a
server-shortened life, a PE removed by the server learns of it, a malformed registration's
ASAP_ERROR ends the retries, and ASAP_SERVER_ANNOUNCE reaches pool users over unicast UDP
and, in a network namespace of its own, over multicast."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any

import pytest
from twisted.internet import reactor
from twisted.internet.endpoints import clientFromString
from twisted.internet.protocol import DatagramProtocol
from twisted.trial.unittest import TestCase

from tests.asap.processes import (
    TWISTD,
    EnrpProcess,
    _kill,
    _listening,
    freePort,
    startEnrp,
    startPe,
)
from tests.asap.support import (
    FAST,
    FAST_MAPPING,
    Echo,
    Recording,
    credentials,
    sleep,
    startServer,
    waitFor,
)
from tests.conftest import requireNamespaces
from twisted_rserpool.asap import PoolElement, PoolUser
from twisted_rserpool.asap.errors import RegistrationRefused
from twisted_rserpool.asap.registration import RegistrationState
from twisted_rserpool.security.tls import loadCertificates
from twisted_rserpool.wire import asap
from twisted_rserpool.wire.errors import CauseCode
from twisted_rserpool.wire.parameters import TcpTransport

pytestmark = pytest.mark.slow

POOL = b"echo"
LOOPBACK = IPv4Address("127.0.0.1")


def _registrations(log: Path, pe: int) -> list[str]:
    """The peers over which the server registered PE ``pe``, in order."""
    pattern = re.compile(rf"Registered PE 0x{pe:08x} in pool \S+ for (\S+)")
    return pattern.findall(log.read_text())


class ProcedureTests(TestCase):
    timeout = 60

    def pe(self, creds: Any, port: int, pool: bytes = POOL, **options: Any) -> PoolElement:
        element = PoolElement(
            pool,
            Recording(Echo),
            [creds.peClient(port)],
            creds.peListen(),
            timers=FAST,
            userMappingConfig=FAST_MAPPING,
            **options,
        )
        element.startService()
        self.addCleanup(element.stopService)
        return element

    async def test_a_slow_servers_answers_count(self) -> None:
        """RFC 5352 3.7.2 against a real server frozen for 1.5 x T1 (pool user) and 1.3 x T2
        (pool element): the request is sent again on the same connection and a hunt runs in
        parallel (to a configured server that is down); the late answers count and the home
        connection is the same one (it used to be torn down: ConnectionNotReady,
        RequestTimedOut, and the PE's registrations dropped by the server)."""
        creds = credentials(self)
        enrp = await startEnrp(self, creds)
        pe = self.pe(creds, enrp.port)
        await pe.whenRegistered()
        down = freePort()
        user = PoolUser(
            [creds.puClient(enrp.port), creds.puClient(down)],
            peTrustRoots=loadCertificates(creds.caFile),
            timers=FAST,
            sessionMappingConfig=FAST_MAPPING,
        )
        user.startService()
        self.addCleanup(user.stopService)
        assert [e.pe_identifier for e in await user.resolve(POOL)] == [pe.peIdentifier]
        assert user.link is not None
        home = user.link.connection
        user.purgeCache(POOL)
        os.kill(enrp.process.pid, signal.SIGSTOP)
        try:
            answer = user.resolve(POOL)
            await sleep(FAST.t1_enrp_request * 1.5)
        finally:
            os.kill(enrp.process.pid, signal.SIGCONT)
        assert [e.pe_identifier for e in await answer] == [pe.peIdentifier]
        assert user.link.connection is home
        assert user.counters["resolutions_sent"] >= 3  # first, the retransmission, the second
        assert user.link.huntsStarted >= 2  # the start, and the hunt in parallel

        granted = pe.counters["registrations_granted"]
        assert pe.link is not None
        registrationConnection = pe.link.connection
        os.kill(enrp.process.pid, signal.SIGSTOP)
        try:
            assert pe.core is not None
            pe._perform(pe.core.update(pe.clock.seconds()), None)  # re-register now
            await sleep(FAST.t2_registration * 1.3)
        finally:
            os.kill(enrp.process.pid, signal.SIGCONT)
        await pe.whenRegistered()
        # Granted again over the one connection (an unchanged re-registration is a debug
        # line in the server's log, so the PE counts).
        assert pe.link.connection is registrationConnection
        assert pe.counters["registrations_granted"] >= granted + 1
        assert len(set(_registrations(enrp.log, pe.peIdentifier))) == 1
        assert "its ASAP connection" not in enrp.log.read_text()

    async def test_t4_follows_a_life_the_server_shortened(self) -> None:
        """R2.3 with --max-registration-life 3 and a PE asking for 60 s: the PE re-registers
        within the 3 s it was granted, so its registration never expires (it used to guess
        30 s and re-register every 15 s, expiring in between)."""
        creds = credentials(self)
        enrp = await startEnrp(self, creds, "--max-registration-life", "3")
        pe = self.pe(creds, enrp.port, registrationLife=60)
        await pe.whenRegistered()
        assert pe.core is not None and pe.core.granted_life == 3
        # Granted at least four times (the server logs unchanged re-registrations at debug).
        await waitFor(lambda: pe.counters["registrations_granted"] >= 4, timeout=20)
        text = enrp.log.read_text()
        assert f"PE 0x{pe.peIdentifier:08x} of pool echo removed" not in text
        assert "registration expired" not in text
        # Re-registering every ~1.5 s, the PE may be between request and response right now.
        await waitFor(lambda: pe.registered, timeout=5)

    async def test_a_removed_pe_learns_of_it_and_registers_again(self) -> None:
        """A PE frozen past its keep-alive timeout is removed by the server; when it runs
        again it is told (ASAP_DEREGISTRATION_RESPONSE) and registers again over the same
        connection at once, not at its T4 (280 s away with a life of 300 s)."""
        creds = credentials(self)
        enrp = await startEnrp(self, creds)
        pe = await startPe(self, creds, enrp.port, "--life", "300", name="frozen")
        await waitFor(lambda: len(_registrations(enrp.log, pe.peIdentifier)) == 1)
        os.kill(pe.process.pid, signal.SIGSTOP)
        try:
            removed = f"PE 0x{pe.peIdentifier:08x} of pool echo removed: keep-alive timeout"
            await waitFor(lambda: removed in enrp.log.read_text(), timeout=10)
        finally:
            os.kill(pe.process.pid, signal.SIGCONT)
        await waitFor(lambda: len(_registrations(enrp.log, pe.peIdentifier)) == 2, timeout=10)
        first, again = _registrations(enrp.log, pe.peIdentifier)
        assert first == again  # the same connection: told, not reconnected

    async def test_malformed_registration_asap_error_ends_the_retries(self) -> None:
        """A registration the server cannot decode (a 300-byte pool handle) is answered only
        by ASAP_ERROR (Invalid Values): the PE logs it, fails whenRegistered and stops
        retrying (it used to retry every T2 forever without a word)."""
        creds = credentials(self)
        enrp = await startEnrp(self, creds)
        pe = self.pe(creds, enrp.port, pool=b"x" * 300)
        failure = None
        try:
            await pe.whenRegistered()
        except RegistrationRefused as e:
            failure = e
        assert failure is not None and failure.error is not None
        assert failure.error.code == CauseCode.INVALID_VALUES
        assert pe.counters["asap_errors"] == 1 and pe.counters["registrations"] == 1
        assert pe.core is not None and pe.core.state is RegistrationState.REFUSED
        assert pe.core.next_deadline() is None
        assert enrp.process.poll() is None

    async def test_unicast_announcements_are_hints_authenticated_before_use(self) -> None:
        """``twistd enrp --announce`` to a pool user's UDP port: the pool user, with no
        configured server, finds the server only through the announcement and resolves
        there. A forged announcement naming a server whose certificate does not verify is
        tried and refused (RFC 5355 2.12): that server never sees a ready connection."""
        creds = credentials(self)
        udp = freePort()
        forgedCreds = credentials(self)  # another CA: the pool user's roots do not know it
        forged = await startServer(self, forgedCreds)
        tried: list[object] = []
        build = forged.server.factory.buildProtocol

        def counting(addr: object) -> Any:
            tried.append(addr)
            return build(addr)

        forged.server.factory.buildProtocol = counting  # type: ignore[method-assign]

        def announced(transport: TcpTransport) -> Any:
            return clientFromString(  # type: ignore[no-untyped-call]
                reactor,
                f"tlspsk:host={transport.address}:port={transport.port}"
                f":caCertificate={creds.caFile}",
            )

        user = PoolUser(
            [],
            peTrustRoots=loadCertificates(creds.caFile),
            timers=FAST,
            sessionMappingConfig=FAST_MAPPING,
            announcedServer=announced,
            announceListen=f"127.0.0.1:{udp}",
        )
        user.startService()
        self.addCleanup(user.stopService)
        # The forged announcement comes first, while it is the only hint.
        sender = reactor.listenUDP(0, DatagramProtocol(), interface="127.0.0.1")  # type: ignore[attr-defined]
        self.addCleanup(sender.stopListening)
        lie = asap.ServerAnnounce(0x666, (TcpTransport(forged.portNumber, LOOPBACK),))
        sender.write(lie.encode(), ("127.0.0.1", udp))
        await waitFor(lambda: tried)
        enrp = await startAnnouncingEnrp(self, creds, udp)
        pe = self.pe(creds, enrp.port)
        await pe.whenRegistered()
        elements = await user.resolve(POOL)
        assert [e.pe_identifier for e in elements] == [pe.peIdentifier]
        assert user.link is not None and user.link.connection is not None
        assert user.link.connection.transport.getPeer().port == enrp.port  # type: ignore[union-attr]
        assert forged.server.registrar.counters["connections"] == 0  # tried, never used

    async def test_multicast_announcements_in_a_network_namespace(self) -> None:
        """In a namespace of its own (loopback multicast routed), a real twistd enrp
        announces to 224.0.1.185 and a pool user without configured servers joins the group
        and resolves at the announced server."""
        requireNamespaces()
        root = Path(__file__).resolve().parents[2]
        done = subprocess.run(
            [
                "unshare",
                "-n",
                "sh",
                "-c",
                "ip link set lo up && ip route add 224.0.0.0/4 dev lo && "
                f"exec {sys.executable} -m tests.asap.multicast_probe",
            ],
            cwd=root,
            check=False,
            capture_output=True,
            timeout=45,
        )
        output = done.stdout.decode()
        assert "FOUND 3864" in output, output + done.stderr.decode()[-2000:]


async def startAnnouncingEnrp(testCase: TestCase, creds: Any, udp: int) -> EnrpProcess:
    """``twistd -n enrp`` announcing itself every 0.2 s to 127.0.0.1:``udp``."""
    port = freePort()
    log = creds.directory / f"enrp-{port}.log"
    listener = (
        f"tlspsk:{port}:interface=127.0.0.1:pskFile={creds.serverPsk}"
        f":certificate={creds.serverCertificate}:privateKey={creds.serverKey}"
    )
    process = subprocess.Popen(
        [
            TWISTD,
            "-n",
            "--pidfile=",
            f"--logfile={log}",
            "enrp",
            "--asap",
            listener,
            "--announce",
            f"127.0.0.1:{udp}",
            "--announce-interval",
            "0.2",
            "--announce-transport",
            f"127.0.0.1:{port}",
        ],
        cwd=creds.directory,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )
    testCase.addCleanup(_kill, process)
    await waitFor(lambda: _listening(port) or process.poll() is not None, timeout=20)
    assert process.poll() is None, log.read_text() if log.exists() else "twistd exited"
    await sleep(0)
    return EnrpProcess(process, port, log)
