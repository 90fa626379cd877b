"""The RSerPool half of the demo: an ENRP server, a pool of pool elements, a pool user, a pool
element killed, and the session's failover with both security contexts shown; all over TLS on
loopback.

It starts ``twistd -n enrp`` and three pool elements (``python -m twisted_rserpool._demo.pe
--app counter``) as processes, then a pool user in this process counts through a session,
kills the pool element serving it with SIGKILL, and shows the session continuing on another
pool element from the signed cookie, after the failover notifier approved the new
connection's security.
"""

from __future__ import annotations

import os
import re
import signal
import sys
import time
from typing import Any

from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import deferLater
from twisted.python.failure import Failure
from zope.interface import implementer

from twisted_rserpool._demo.support import Console, EnrpServer, Workspace, waitFor
from twisted_rserpool.asap.notifier import FailoverEvent, IFailoverObserver, describePE
from twisted_rserpool.asap.session import Session
from twisted_rserpool.asap.timers import AsapTimers
from twisted_rserpool.asap.user import PoolUser
from twisted_rserpool.security.certificates import createSelfSignedCertificate
from twisted_rserpool.security.tls import loadCertificates
from twisted_rserpool.transport.connection import MappingConfig

__all__ = ["run"]

POOL = b"counter"


class _Counter(Protocol):
    """The pool user's application: sends ``incr``, collects the answers."""

    def __init__(self) -> None:
        self.answers: list[str] = []
        self.lost: Failure | None = None

    def dataReceived(self, data: bytes) -> None:
        self.answers.append(data.decode())

    def connectionLost(self, reason: Failure | None = None) -> None:
        self.lost = reason


@implementer(IFailoverObserver)
class _Printer:
    """The failover notifier's observer: prints what changed."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.events: list[FailoverEvent] = []

    def failoverOccurred(self, event: FailoverEvent) -> bool:
        self.events.append(event)
        change = "WEAKER" if event.weaker else "changed" if event.changed else "unchanged"
        self.console.say(
            f"FAILOVER NOTIFICATION #{event.number} for pool {event.pool_handle.decode()!r}\n"
            f"  reason:       {event.reason}\n"
            f"  old PE:       {describePE(event.old_element)}\n"
            f"  old security: {event.old_context.describe()}\n"
            f"                fingerprint {event.old_context.certificate_fingerprint}\n"
            f"  new PE:       {describePE(event.new_element)}\n"
            f"  new security: {event.new_context.describe()}\n"
            f"                fingerprint {event.new_context.certificate_fingerprint}\n"
            f"  security {change}; cookie of {len(event.cookie or b'')} bytes to echo, "
            f"{event.resend} unacknowledged message(s) to send again\n"
            f"  -> the observer approves (a weaker context would be refused by default)"
        )
        return True


async def run(reactor: Any, console: Console, *, poolElements: int = 3) -> bool:
    """Run this half on a running reactor; True when all went as shown."""
    workspace = Workspace("rserpool-demo-")
    directory = workspace.directory
    user: PoolUser | None = None
    try:
        console.say("RSerPool: a pool of servers over TLS on loopback, and a failover")
        for number in range(1, poolElements + 1):
            createSelfSignedCertificate(
                directory / f"pe-{number}.pem",
                directory / f"pe-{number}.key",
                commonName=f"pe-{number}.demo",
            )
        enrp = await EnrpServer.start(reactor, workspace)
        console.say(
            f"1. ENRP server: twistd -n enrp --asap tlspsk:{enrp.port}:... "
            f"(pid {enrp.process.pid}), listening on 127.0.0.1:{enrp.port}:\n"
            "   pool elements authenticate with TLS-PSK (identity 'pe'), pool users verify "
            "its self-signed certificate"
        )

        pes: dict[int, tuple[str, Any]] = {}
        console.say(
            f"2. starting {poolElements} pool elements of pool 'counter' "
            "(TLS-PSK to the ENRP server, certificate TLS for pool users)"
        )
        started = []
        for number in range(1, poolElements + 1):
            name = f"pe-{number}"
            process = workspace.start(
                name,
                [
                    sys.executable,
                    "-m",
                    "twisted_rserpool._demo.pe",
                    "--pool",
                    "counter",
                    "--app",
                    "counter",
                    "--name",
                    name,
                    "--cookie-key",
                    "6b" * 32,
                    "--heartbeat",
                    "0.5",
                    "--enrp",
                    enrp.peClient(),
                    "--listen",
                    f"tlspsk:0:interface=127.0.0.1:certificate={directory / (name + '.pem')}"
                    f":privateKey={directory / (name + '.key')}",
                ],
            )
            started.append((name, process))
        pattern = re.compile(r"READY pe=0x([0-9a-f]+) port=(\d+)")
        for name, process in started:
            await waitFor(
                reactor,
                lambda n=name: pattern.search(workspace.output(n)),
                30,
                f"{name} to register",
            )
            match = pattern.search(workspace.output(name))
            assert match is not None
            identifier = int(match.group(1), 16)
            pes[identifier] = (name, process)
            console.say(
                f"   {name}: PE 0x{identifier:08x} registered, serving on "
                f"127.0.0.1:{match.group(2)} (pid {process.pid})"
            )

        printer = _Printer(console)
        user = PoolUser(
            [enrp.puClient()],
            reactor=reactor,
            peTrustRoots=[
                root
                for number in range(1, poolElements + 1)
                for root in loadCertificates(directory / f"pe-{number}.pem")
            ],
            failoverObservers=[printer],
            timers=AsapTimers(t1_enrp_request=5.0, t5_server_hunt=1.0, stale_cache_value=0.0),
            sessionMappingConfig=MappingConfig(heartbeat_interval=0.5, heartbeat_timeout=1.0),
        )
        user.startService()
        elements = await user.resolve(POOL)
        console.say(
            f"3. pool user: handle resolution of 'counter' -> {len(elements)} PEs: "
            + ", ".join(f"0x{e.pe_identifier:08x}" for e in elements)
        )
        client = await user.connect(POOL, Factory.forProtocol(_Counter))
        assert isinstance(client, _Counter) and isinstance(client.transport, Session)
        session = client.transport
        assert session.poolElement is not None and session.securityContext is not None
        victimId = session.poolElement.pe_identifier
        console.say(
            f"   session on {pes[victimId][0]} ({describePE(session.poolElement)}), "
            f"{session.securityContext.describe()}"
        )
        for expected in range(1, 4):
            session.write(b"incr")
            await waitFor(
                reactor,
                lambda n=expected: len(client.answers) >= n,
                10,
                "an answer",
            )
            console.say(
                f"   incr -> {client.answers[-1]}   (cookie: "
                f"{len(session.cookie or b'')} signed bytes)"
            )

        victimName, victim = pes[victimId]
        console.say(
            f"4. {victimName} (pid {victim.pid}) freezes (SIGSTOP) while the session "
            "is on it; one more incr goes out and stays unacknowledged"
        )
        os.kill(victim.pid, signal.SIGSTOP)
        session.write(b"incr")
        await deferLater(reactor, 0.1, lambda: None)
        assert session.connection is not None
        unacknowledged = len(session.connection.unacknowledged())
        console.say(f"   kill -9 {victimName} with {unacknowledged} message unacknowledged")
        os.kill(victim.pid, signal.SIGKILL)
        victim.wait(timeout=10)
        killedAt = time.monotonic()
        await waitFor(reactor, lambda: len(client.answers) >= 4, 20, "the failover")
        elapsed = time.monotonic() - killedAt
        assert session.poolElement is not None
        newName = pes[session.poolElement.pe_identifier][0]
        console.say(
            f"   incr -> {client.answers[-1]}   (answered by {newName} "
            f"{elapsed * 1000:.0f} ms after the kill; the count went on from the "
            "echoed cookie)"
        )
        session.write(b"incr")
        await waitFor(reactor, lambda: len(client.answers) >= 5, 10, "an answer")
        console.say(f"   incr -> {client.answers[-1]}")

        deadline = time.monotonic() + 10
        remaining = await user.resolve(POOL, refresh=True)
        while victimId in {e.pe_identifier for e in remaining} and time.monotonic() < deadline:
            await deferLater(reactor, 0.25, lambda: None)
            remaining = await user.resolve(POOL, refresh=True)
        console.say(
            f"5. handle resolution again: the ENRP server removed {victimName} (its "
            "registration connection died with it; the pool user also reported it "
            f"unreachable): pool 'counter' has {len(remaining)} PEs: "
            + ", ".join(pes[e.pe_identifier][0] for e in remaining if e.pe_identifier in pes)
        )
        ok = (
            client.answers[3].startswith("4 ")
            and len(printer.events) == 1
            and victimId not in {e.pe_identifier for e in remaining}
        )
        console.say(
            "RSerPool " + ("succeeded" if ok else "FAILED") + ": "
            f"{len(session.failovers)} failover, {user.counters['unreachable_sent']} "
            "unreachable report, count continued across the failover"
        )
        session.loseConnection()
        return ok
    finally:
        if user is not None:
            await user.stopService()
        workspace.close()
