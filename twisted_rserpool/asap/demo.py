"""The live demo: an ENRP server, a pool of pool elements, a pool user, a pool element
killed, and the session's failover with both security contexts shown; all over TLS on
loopback.

Run with ``python -m twisted_rserpool.asap.demo``. It starts ``twistd -n enrp`` and three
pool elements (``python -m twisted_rserpool.asap.tool pe --app counter``) as processes,
then a pool user in this process counts through a session, kills the pool element serving
it with SIGKILL, and shows the session continuing on another pool element from the signed
cookie, after the failover notifier approved the new connection's security.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

from twisted.internet.defer import Deferred
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import deferLater
from twisted.python.failure import Failure
from zope.interface import implementer

from twisted_rserpool.asap.notifier import FailoverEvent, IFailoverObserver, describePE
from twisted_rserpool.asap.session import Session
from twisted_rserpool.asap.timers import AsapTimers
from twisted_rserpool.asap.user import PoolUser
from twisted_rserpool.security.certificates import createSelfSignedCertificate
from twisted_rserpool.security.psk import createPskFile
from twisted_rserpool.security.tls import loadCertificates
from twisted_rserpool.transport.connection import MappingConfig

__all__ = ["main", "runDemo"]

POOL = b"counter"


def _freePort() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


class _Console:
    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.start = time.monotonic()

    def say(self, text: str = "", indent: int = 0) -> None:
        stamp = f"[{time.monotonic() - self.start:5.1f}s] " if text else ""
        for number, line in enumerate(text.splitlines() or [""]):
            prefix = stamp if number == 0 else " " * len(stamp)
            self.out.write(f"{prefix}{' ' * indent}{line}\n")
        self.out.flush()


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

    def __init__(self, console: _Console) -> None:
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


async def _waitFor(reactor: Any, condition: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        await deferLater(reactor, 0.05, lambda: None)


def _kill(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.kill()
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=10)


async def runDemo(reactor: Any, out: TextIO, *, poolElements: int = 3) -> int:
    """Run the demo on a running reactor; returns the exit status (0: all went as shown)."""
    console = _Console(out)
    directory = Path(tempfile.mkdtemp(prefix="rserpool-demo-"))
    processes: list[subprocess.Popen[bytes]] = []
    user: PoolUser | None = None
    try:
        console.say("twisted-rserpool live demo: RSerPool over TLS on loopback")
        console.say(f"working directory {directory}")
        keys = directory / "keys.psk"
        createPskFile(keys, "pe")
        serverCertificate, serverKey = directory / "enrp.pem", directory / "enrp.key"
        createSelfSignedCertificate(serverCertificate, serverKey, commonName="enrp.demo")
        for number in range(1, poolElements + 1):
            createSelfSignedCertificate(
                directory / f"pe-{number}.pem",
                directory / f"pe-{number}.key",
                commonName=f"pe-{number}.demo",
            )
        console.say(
            "created a PSK file (identity 'pe') and self-signed certificates for the "
            "ENRP server and each pool element (the pool user trusts them)"
        )

        port = _freePort()
        twistd = str(Path(sys.executable).parent / "twistd")
        if not os.path.exists(twistd):
            twistd = shutil.which("twistd") or twistd
        listener = (
            f"tlspsk:{port}:interface=127.0.0.1:pskFile={keys}:certificate={serverCertificate}"
            f":privateKey={serverKey}"
        )
        command = [
            twistd,
            "-n",
            "--pidfile=",
            f"--logfile={directory / 'enrp.log'}",
            "enrp",
            "--asap",
            listener,
            "--server-id",
            "0x5eed0001",
            "--keep-alive-interval",
            "1",
            "--keep-alive-timeout",
            "1",
        ]
        processes.append(
            subprocess.Popen(
                command, cwd=directory, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT
            )
        )
        console.say(
            f"1. ENRP server: twistd -n enrp --asap tlspsk:{port}:... (pid {processes[0].pid})"
        )
        await _waitFor(reactor, lambda: _listening(port), 20, "the ENRP server")
        console.say(
            f"   listening on 127.0.0.1:{port}: PEs authenticate with TLS-PSK, "
            "PUs verify its certificate"
        )

        pes: dict[int, tuple[str, subprocess.Popen[bytes]]] = {}
        console.say(
            f"2. starting {poolElements} pool elements of pool 'counter' "
            "(TLS-PSK to the ENRP server, certificate TLS for pool users)"
        )
        outputs = []
        for number in range(1, poolElements + 1):
            name = f"pe-{number}"
            output = directory / f"{name}.out"
            with open(output, "wb") as stdout, open(directory / f"{name}.err", "wb") as stderr:
                process = subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "twisted_rserpool.asap.tool",
                        "pe",
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
                        f"tlspsk:host=127.0.0.1:port={port}:identity=pe:pskFile={keys}",
                        "--listen",
                        f"tlspsk:0:interface=127.0.0.1:certificate={directory / (name + '.pem')}"
                        f":privateKey={directory / (name + '.key')}",
                    ],
                    stdout=stdout,
                    stderr=stderr,
                )
            processes.append(process)
            outputs.append((name, process, output))
        pattern = re.compile(r"READY pe=0x([0-9a-f]+) port=(\d+)")
        for name, process, output in outputs:
            await _waitFor(
                reactor,
                lambda o=output: pattern.search(o.read_text()),
                30,
                f"{name} to register",
            )
            match = pattern.search(output.read_text())
            assert match is not None
            identifier = int(match.group(1), 16)
            pes[identifier] = (name, process)
            console.say(
                f"   {name}: PE 0x{identifier:08x} registered, serving on "
                f"127.0.0.1:{match.group(2)} (pid {process.pid})"
            )

        printer = _Printer(console)
        user = PoolUser(
            [f"tlspsk:host=127.0.0.1:port={port}:caCertificate={serverCertificate}"],
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
            await _waitFor(
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
        await _waitFor(reactor, lambda: len(client.answers) >= 4, 20, "the failover")
        elapsed = time.monotonic() - killedAt
        assert session.poolElement is not None
        newName = pes[session.poolElement.pe_identifier][0]
        console.say(
            f"   incr -> {client.answers[-1]}   (answered by {newName} "
            f"{elapsed * 1000:.0f} ms after the kill; the count went on from the "
            "echoed cookie)"
        )
        session.write(b"incr")
        await _waitFor(reactor, lambda: len(client.answers) >= 5, 10, "an answer")
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
            "demo " + ("succeeded" if ok else "FAILED") + ": "
            f"{len(session.failovers)} failover, {user.counters['unreachable_sent']} "
            "unreachable report, count continued across the failover"
        )
        session.loseConnection()
        return 0 if ok else 1
    finally:
        if user is not None:
            await user.stopService()
        for process in processes:
            _kill(process)
        shutil.rmtree(directory, ignore_errors=True)


def main(argv: Sequence[str] | None = None, out: TextIO = sys.stdout) -> int:
    """Run the demo with the global reactor; returns the exit status."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--pool-elements", type=int, default=3, help="how many PEs (>= 2)")
    arguments = parser.parse_args(argv)
    if arguments.pool_elements < 2:
        parser.error("the demo needs at least two pool elements")
    from twisted.internet import reactor  # noqa: PLC0415

    status: list[int] = []

    def run() -> None:
        done = Deferred.fromCoroutine(runDemo(reactor, out, poolElements=arguments.pool_elements))

        def finish(result: object) -> None:
            if isinstance(result, Failure):
                out.write(f"demo failed: {result.getErrorMessage()}\n")
                status.append(1)
            else:
                status.append(int(result))  # type: ignore[call-overload]
            reactor.stop()

        done.addBoth(finish)

    reactor.callWhenRunning(run)
    reactor.run()
    return status[0] if status else 1


if __name__ == "__main__":
    raise SystemExit(main())
