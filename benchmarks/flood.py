"""Flood benchmark: a legitimate pool user's handle resolution latency while others flood.

RFC 5355 sections 2.1, 2.2 and 2.13 ask that one flooding client cannot deny service to the
others. This script runs a real ``twistd -n enrp`` over TLS-PSK (with a certificate for
anonymous pool users) with its default limits, and in one run measures:

1. **No flood**: a pool user (PSK identity ``pu``; with ``--anonymous-user`` none) sends
   one ASAP_HANDLE_RESOLUTION every ``--interval`` seconds (20 ms; 100 ms with
   ``--anonymous-user``, see below) for ``--duration`` seconds (5) and records each
   answer's latency; the pool holds 10 PEs (registered by identity ``pe`` over one
   connection that answers the keep-alives).
2. The same **during a flood** of ASAP_HANDLE_RESOLUTION sent as fast as TCP takes them
   (the flooder writes whenever its send buffer has room, acknowledges every answer and
   answers heartbeats, as a real attacker keeping its connections alive would), from 1 and
   from 20 connections, anonymous (TLS with the server certificate only) and authenticated
   (PSK identity ``flood``, all connections one identity).
3. No flood again, at the end (the machine may have changed in between).

An anonymous pool user shares the anonymous rate (500/s by default) with the anonymous
flood, fairly: with 20 flooding connections its share is 500/21, about 24 requests a
second. At 50 a second (20 ms) it would be over its share itself and held to it, so
``--anonymous-user`` asks every 100 ms unless ``--interval`` says otherwise.

Each flood row gives the pool user's median and 90th-percentile latency and its ratio to
the first no-flood median (the goal: within 2x), the server's CPU share and CPU
microseconds per answer (all answers: the pool user's and the flood's) from
``/proc/PID/stat`` over the measured window, its RSS at the end of the window, the flood
requests written and answered in that window, and the change of the server's rate-limit
counters (admin JSON).

The flood and the pool user run in processes of their own (this script re-invoked with
``--role flood`` / ``--role user``). Everything listens on 127.0.0.1; every subprocess is
killed when the run ends. The script prints a table and asserts nothing about time.

Run: ``python benchmarks/flood.py`` (about 1.5 minutes). ``--server-path DIR`` puts
``DIR`` first on the server's ``PYTHONPATH`` (to measure another checkout of this code);
``--server-arg ARG`` (repeatable) passes options to ``twistd enrp``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import IO, Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.registrar import (
    _ACK,
    _ASAP_PPID,
    _CHUNK,
    _DATA,
    _INIT,
    LOOPBACK,
    PE_IDENTITY,
    PE_KEY,
    PU_IDENTITY,
    PU_KEY,
    TWISTD,
    Child,
    admin,
    cpuSeconds,
    freePort,
    poolElement,
    raiseFileLimit,
    readLine,
    rssBytes,
    waitForPort,
)
from twisted_rserpool.security.certificates import createSelfSignedCertificate
from twisted_rserpool.security.psk import writePskFile
from twisted_rserpool.wire import asap

SCRIPT = Path(__file__).resolve()
SERVER_ID = 0x00F10001
FLOOD_IDENTITY, FLOOD_KEY = "flood", bytes(range(2, 34))
POOL = b"flood-bench"
#: Flood requests written per write call (one TLS record of about 4 KiB).
BATCH = 96
#: Seconds between the requests of an anonymous pool user: 10 a second, under its share
#: of the default anonymous rate (500/s) among 20 flooding connections and itself.
ANONYMOUS_INTERVAL = 0.1


# ------------------------------------------------------------------------------ settings


@dataclass(frozen=True)
class Settings:
    """Sizes and durations of one run."""

    #: Flood scenarios: (authenticated, connections).
    floods: tuple[tuple[bool, int], ...] = ((False, 1), (False, 20), (True, 1), (True, 20))
    duration: float = 5.0
    #: Seconds between two of the pool user's requests (it waits for each answer).
    interval: float = 0.02
    #: Seconds of flood before the measured window starts.
    warmup: float = 1.0
    #: Seconds the pool user waits for one answer before counting it unanswered.
    timeout: float = 5.0
    poolSize: int = 10
    items: int = 3
    #: Put first on the server's PYTHONPATH (another checkout), or ``None``.
    serverPath: str | None = None
    serverArgs: tuple[str, ...] = ()
    #: The pool user connects without a PSK (TLS with the server certificate only): it
    #: then shares the anonymous peers' rate with an anonymous flood.
    anonymousUser: bool = False
    #: Seconds to wait after a flood until the server is idle again (at most).
    settleLimit: float = 20.0


QUICK = Settings(duration=2.0, warmup=0.5)


# ------------------------------------------------------------------------------ files


@dataclass
class Files:
    """Keys and certificate of a run, in ``directory``."""

    directory: Path

    @property
    def serverKeys(self) -> Path:
        return self.directory / "server.psk"

    @property
    def certificate(self) -> Path:
        return self.directory / "server.pem"

    @property
    def privateKey(self) -> Path:
        return self.directory / "server.key"

    def clientKeys(self, identity: str) -> Path:
        return self.directory / f"{identity}.psk"

    def create(self) -> None:
        keys = {PE_IDENTITY: PE_KEY, PU_IDENTITY: PU_KEY, FLOOD_IDENTITY: FLOOD_KEY}
        writePskFile(self.serverKeys, keys)
        for identity, key in keys.items():
            writePskFile(self.clientKeys(identity), {identity: key})
        createSelfSignedCertificate(self.certificate, self.privateKey)

    def listener(self, port: int) -> str:
        return (
            f"tlspsk:{port}:interface={LOOPBACK}:backlog=1024:pskFile={self.serverKeys}"
            f":certificate={self.certificate}:privateKey={self.privateKey}"
        )

    def client(self, port: int, identity: str | None) -> str:
        """A client endpoint string: PSK with ``identity``, or anonymous (``None``)."""
        if identity is None:
            return f"tlspsk:host={LOOPBACK}:port={port}:caCertificate={self.certificate}"
        return (
            f"tlspsk:host={LOOPBACK}:port={port}:identity={identity}"
            f":pskFile={self.clientKeys(identity)}"
        )


# ------------------------------------------------------------------------------ processes


def environment(path: str | None) -> dict[str, str]:
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    if path is not None:
        env["PYTHONPATH"] = os.pathsep.join(p for p in (path, env.get("PYTHONPATH")) if p)
    return env


@contextmanager
def started(
    command: list[str], name: str, directory: Path, path: str | None = None, **kwargs: Any
) -> Iterator[Child]:
    """Run ``command`` with pipes to stdin and stdout; on leaving, kill it."""
    output = open(directory / f"{name}.out", "wb")  # noqa: SIM115
    child = Child(
        subprocess.Popen(
            command,
            cwd=directory,
            stdin=subprocess.PIPE,
            stdout=kwargs.pop("stdout", subprocess.PIPE),
            stderr=output,
            env=environment(path),
        ),
        name,
    )
    try:
        yield child
    finally:
        child.stop()
        output.close()


def roleCommand(role: str, spec: dict[str, Any]) -> list[str]:
    return [sys.executable, str(SCRIPT), "--role", role, "--spec", json.dumps(spec)]


def ask(child: Child, command: str, answer: str, limit: float) -> Any:
    """Write ``command`` to the child; read its ``answer <json>`` line within ``limit`` s."""
    assert child.process.stdin is not None and child.process.stdout is not None
    child.process.stdin.write(command.encode() + b"\n")
    child.process.stdin.flush()
    return expect(child.process.stdout, answer, limit, child.name)


def expect(stream: IO[bytes], answer: str, limit: float, name: str) -> Any:
    deadline = time.monotonic() + limit
    while True:
        line = readLine(stream, max(0.1, deadline - time.monotonic()), f"{answer} from {name}")
        if not line:
            raise RuntimeError(f"{name} ended before {answer}")
        if line.startswith(answer + " "):
            return json.loads(line[len(answer) + 1 :])


def waitIdle(pid: int, limit: float) -> None:
    """Wait (at most ``limit`` s) until the server uses under 10 % of a core."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        cpu0 = cpuSeconds(pid)
        time.sleep(0.5)
        if cpuSeconds(pid) - cpu0 < 0.05:
            return


# ------------------------------------------------------------------------------ results


@dataclass
class Row:
    """One measured window."""

    name: str
    latencies: list[float]
    unanswered: int
    seconds: float
    serverCpu: float
    floodSent: int = 0
    floodAnswered: int = 0
    floodConnections: int = 0
    floodOpen: int = 0
    #: The server's resident set size at the end of the window.
    serverRss: int = 0
    counters: dict[str, int] = field(default_factory=dict)

    @property
    def median(self) -> float:
        return statistics.median(self.latencies) if self.latencies else float("nan")

    @property
    def p90(self) -> float:
        if len(self.latencies) < 2:
            return self.median
        return statistics.quantiles(self.latencies, n=10)[-1]

    @property
    def serverShare(self) -> float:
        return self.serverCpu / self.seconds if self.seconds > 0 else 0.0

    @property
    def cpuPerAnswer(self) -> float:
        answers = len(self.latencies) + self.floodAnswered
        return self.serverCpu / answers * 1e6 if answers else 0.0


@dataclass
class Results:
    settings: Settings
    rows: list[Row]
    python: str = platform.python_version()
    cpus: int = os.cpu_count() or 0


def counterChanges(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    """The rate-limit and refusal counters that changed."""
    words = ("rate", "delayed", "refused", "closed", "dropped", "timeout")
    return {
        name: after.get(name, 0) - before.get(name, 0)
        for name in sorted(set(before) | set(after))
        if any(w in name for w in words) and after.get(name, 0) != before.get(name, 0)
    }


def runBenchmark(settings: Settings, directory: Path, say: Callable[[str], None]) -> Results:
    """Every measurement of ``settings``; files and logs go to ``directory``."""
    raiseFileLimit()
    files = Files(directory)
    files.create()
    port, adminPort = freePort(), freePort()
    log = directory / "enrp.log"
    command = [
        TWISTD, "-n", "--pidfile=", f"--logfile={log}",
        "enrp", "--server-id", hex(SERVER_ID),
        "--asap", files.listener(port),
        "--admin", f"tcp:{adminPort}:interface={LOOPBACK}",
        *settings.serverArgs,
    ]  # fmt: skip
    rows: list[Row] = []
    with started(
        command, "enrp", directory, settings.serverPath, stdout=subprocess.DEVNULL
    ) as server:
        waitForPort(port, server.process, log, 30)
        waitForPort(adminPort, server.process, log, 30)
        userSpec = {
            "port": port,
            "pe": files.client(port, PE_IDENTITY),
            "pu": files.client(port, None if settings.anonymousUser else PU_IDENTITY),
            "poolSize": settings.poolSize,
            "items": settings.items,
            "interval": settings.interval,
            "timeout": settings.timeout,
        }
        with started(roleCommand("user", userSpec), "user", directory) as user:
            assert user.process.stdout is not None
            expect(user.process.stdout, "READY", 60, "user")
            say(f"ENRP server pid {server.pid}, pool of {settings.poolSize} PEs ({directory})")
            rows.append(measure("no flood", settings, server, user, adminPort, None))
            say(f"  {describe(rows[-1])}")
            for authenticated, connections in settings.floods:
                identity = FLOOD_IDENTITY if authenticated else None
                spec = {"endpoint": files.client(port, identity), "connections": connections}
                name = (
                    f"flood, {connections} {'authenticated' if authenticated else 'anonymous'}"
                    f" connection{'s' if connections != 1 else ''}"
                )
                with started(roleCommand("flood", spec), "flood", directory) as flood:
                    assert flood.process.stdout is not None
                    expect(flood.process.stdout, "READY", 60, "flood")
                    time.sleep(settings.warmup)
                    rows.append(measure(name, settings, server, user, adminPort, flood))
                say(f"  {describe(rows[-1])}")
                waitIdle(server.pid, settings.settleLimit)
            rows.append(measure("no flood (again)", settings, server, user, adminPort, None))
            say(f"  {describe(rows[-1])}")
    return Results(settings, rows)


def measure(
    name: str, settings: Settings, server: Child, user: Child, adminPort: int, flood: Child | None
) -> Row:
    """One window: the pool user's latencies, the server's CPU, the flood's counts."""
    counters0 = admin(adminPort)["counters"]
    flood0 = ask(flood, "STATS", "STATS", 60) if flood is not None else {}
    wall0, cpu0 = time.monotonic(), cpuSeconds(server.pid)
    result = ask(
        user, f"MEASURE {settings.duration}", "RESULT", settings.duration + settings.timeout + 60
    )
    wall1, cpu1 = time.monotonic(), cpuSeconds(server.pid)
    rss = rssBytes(server.pid)
    flood1 = ask(flood, "STATS", "STATS", 60) if flood is not None else {}
    counters1 = admin(adminPort)["counters"]
    return Row(
        name,
        result["latencies"],
        result["unanswered"],
        wall1 - wall0,
        cpu1 - cpu0,
        floodSent=flood1.get("sent", 0) - flood0.get("sent", 0),
        floodAnswered=flood1.get("answered", 0) - flood0.get("answered", 0),
        floodConnections=flood1.get("connections", 0),
        floodOpen=flood1.get("open", 0),
        serverRss=rss,
        counters=counterChanges(counters0, counters1),
    )


def describe(row: Row) -> str:
    return (
        f"{row.name}: median {row.median * 1e3:.2f} ms over {len(row.latencies)} "
        f"({row.unanswered} unanswered), server CPU {row.serverShare:.0%}"
    )


# ------------------------------------------------------------------------------ the pool user


def noDelay(transport: Any) -> None:
    """Send small writes at once (no Nagle): a request must not wait for a TCP ACK."""
    tcp = getattr(transport, "transport", transport)
    if hasattr(tcp, "setTcpNoDelay"):
        tcp.setTcpNoDelay(True)


def _userClass() -> type[Any]:
    """The PE and PU protocol (built lazily: the orchestrator never imports a reactor)."""
    from twisted.internet.defer import Deferred  # noqa: PLC0415

    from twisted_rserpool.security.context import SecurityContext  # noqa: PLC0415
    from twisted_rserpool.transport.protocol import RSerPoolProtocol  # noqa: PLC0415

    class Client(RSerPoolProtocol):
        """Sends requests one at a time; answers keep-alives for the PEs it registered."""

        def __init__(self) -> None:
            super().__init__()
            self.readyDeferred: Deferred[SecurityContext] = Deferred()
            self.waiting: Deferred[asap.AsapMessage] | None = None
            self.pes: list[int] = []

        def connectionMade(self) -> None:
            super().connectionMade()
            noDelay(self.transport)

        def connectionReady(self, securityContext: SecurityContext) -> None:
            self.readyDeferred.callback(securityContext)

        def asapMessageReceived(self, message: asap.AsapMessage) -> None:
            if isinstance(message, asap.EndpointKeepAlive):
                wanted = [message.pe_identifier] if message.pe_identifier else self.pes
                for identifier in wanted:
                    self.sendAsap(asap.EndpointKeepAliveAck(message.pool_handle, identifier))
                return
            waiting, self.waiting = self.waiting, None
            if waiting is not None:
                waiting.callback(message)

        def request(self, message: asap.AsapMessage) -> Deferred[asap.AsapMessage]:
            self.waiting = Deferred()
            self.sendAsap(message)
            return self.waiting

    return Client


async def _user(reactor: Any, spec: dict[str, Any], lines: Any) -> None:
    from twisted.internet.endpoints import clientFromString, connectProtocol  # noqa: PLC0415
    from twisted.internet.task import deferLater  # noqa: PLC0415

    Client = _userClass()

    async def connect(description: str) -> Any:
        client = Client()
        endpoint = clientFromString(reactor, description)  # type: ignore[no-untyped-call]
        await connectProtocol(endpoint, client)  # type: ignore[no-untyped-call]
        await client.readyDeferred
        return client

    pe = await connect(spec["pe"])
    for identifier in range(1, spec["poolSize"] + 1):
        answer = await pe.request(
            asap.Registration(POOL, poolElement(identifier, 7000 + identifier, identifier))
        )
        if not isinstance(answer, asap.RegistrationResponse) or answer.reject:
            raise RuntimeError(f"registration failed: {answer}")
        pe.pes.append(identifier)
    pu = await connect(spec["pu"])
    request = asap.HandleResolution(POOL, items=spec["items"])

    async def resolve() -> float | None:
        started = time.monotonic()
        waiting = pu.request(request).addTimeout(spec["timeout"], reactor)
        try:
            answer = await waiting
        except Exception:
            return None
        if not isinstance(answer, asap.HandleResolutionResponse) or answer.error is not None:
            raise RuntimeError(f"unexpected answer {answer}")
        return time.monotonic() - started

    for _ in range(20):
        await resolve()
    print("READY {}", flush=True)
    while True:
        line = await lines.get()
        if line is None:
            return
        _, seconds = line.split()
        end = time.monotonic() + float(seconds)
        latencies: list[float] = []
        unanswered = 0
        while time.monotonic() < end:
            due = time.monotonic() + spec["interval"]
            latency = await resolve()
            if latency is None:
                unanswered += 1
            else:
                latencies.append(latency)
            await deferLater(reactor, max(0.0, due - time.monotonic()), lambda: None)
        print(
            "RESULT " + json.dumps({"latencies": latencies, "unanswered": unanswered}), flush=True
        )


# ------------------------------------------------------------------------------ the flood


class FloodStats:
    """What the flooding connections of one process did."""

    def __init__(self) -> None:
        self.sent = 0
        self.answered = 0
        self.connections: list[Any] = []

    def document(self) -> dict[str, int]:
        return {
            "sent": self.sent,
            "answered": self.answered,
            "connections": len(self.connections),
            "open": sum(1 for c in self.connections if not c.closed),
        }


def _flooderClass() -> type[Any]:
    from twisted.internet.defer import Deferred  # noqa: PLC0415
    from twisted.internet.interfaces import IPushProducer  # noqa: PLC0415
    from twisted.internet.protocol import Protocol  # noqa: PLC0415
    from twisted.python.failure import Failure  # noqa: PLC0415
    from zope.interface import implementer  # noqa: PLC0415

    request = asap.HandleResolution(POOL, items=3).encode()

    @implementer(IPushProducer)
    class Flooder(Protocol):
        """Writes ASAP_HANDLE_RESOLUTIONs whenever TCP takes them (a streaming producer);
        acknowledges every DATA chunk and answers HEARTBEATs."""

        def __init__(self, stats: FloodStats) -> None:
            self.stats = stats
            self.tsn = 0
            self.buffer = bytearray()
            self.paused = True
            self.closed = False
            self.answeredOnce: Deferred[None] = Deferred()

        def frame(self) -> bytes:
            out = []
            for _ in range(BATCH):
                length = 16 + len(request)
                out.append(_DATA.pack(0, 0, length, self.tsn, 0, self.tsn & 0xFFFF, _ASAP_PPID))
                out.append(request + bytes(-length % 4))
                self.tsn = (self.tsn + 1) & 0xFFFFFFFF
            return b"".join(out)

        def connectionMade(self) -> None:
            assert self.transport is not None
            noDelay(self.transport)
            self.transport.write(_INIT)
            self.transport.registerProducer(self, True)  # type: ignore[attr-defined]
            self.resumeProducing()

        def resumeProducing(self) -> None:
            self.paused = False
            written = 0
            # The transport pauses us (synchronously, in write) once its buffer is full.
            while not self.paused and not self.closed and written < 1 << 20:
                data = self.frame()
                assert self.transport is not None
                self.transport.write(data)
                self.stats.sent += BATCH
                written += len(data)
            if not self.paused and not self.closed:
                from twisted.internet import reactor  # noqa: PLC0415

                reactor.callLater(0, self.resumeProducing)

        def pauseProducing(self) -> None:
            self.paused = True

        def stopProducing(self) -> None:
            self.closed = True

        def dataReceived(self, data: bytes) -> None:
            buffer = self.buffer
            buffer += data
            out: list[bytes] = []
            offset, end = 0, len(buffer)
            while end - offset >= 4:
                kind, _, length = _CHUNK.unpack_from(buffer, offset)
                padded = (length + 3) & ~3
                if end - offset < padded:
                    break
                if kind == 0:  # DATA: acknowledge it
                    (tsn,) = struct.unpack_from("!I", buffer, offset + 4)
                    out.append(_ACK.pack(3, 0, 8, tsn))
                    self.stats.answered += 1
                    if not self.answeredOnce.called:
                        self.answeredOnce.callback(None)
                elif kind == 4:  # HEARTBEAT: echo it in a HEARTBEAT ACK
                    out.append(b"\x05" + bytes(buffer[offset + 1 : offset + padded]))
                offset += padded
            del buffer[:offset]
            if out and self.transport is not None and not self.closed:
                self.transport.write(b"".join(out))

        def connectionLost(self, reason: Failure | None = None) -> None:
            self.closed = True
            if not self.answeredOnce.called:
                self.answeredOnce.errback(reason or Failure(ConnectionError("lost")))  # type: ignore[no-untyped-call]

    return Flooder


async def _flood(reactor: Any, spec: dict[str, Any], lines: Any) -> None:
    from twisted.internet.defer import gatherResults  # noqa: PLC0415
    from twisted.internet.endpoints import clientFromString, connectProtocol  # noqa: PLC0415

    Flooder = _flooderClass()
    stats = FloodStats()
    endpoint = clientFromString(reactor, spec["endpoint"])  # type: ignore[no-untyped-call]
    for _ in range(spec["connections"]):
        client = Flooder(stats)
        stats.connections.append(client)
        await connectProtocol(endpoint, client)  # type: ignore[no-untyped-call]
    await gatherResults([c.answeredOnce for c in stats.connections])
    print("READY {}", flush=True)
    while (line := await lines.get()) is not None:
        if line.strip() == "STATS":
            print("STATS " + json.dumps(stats.document()), flush=True)
    for client in stats.connections:
        if client.transport is not None:
            client.transport.abortConnection()


# ------------------------------------------------------------------------------ child main


def childMain(role: str, spec: dict[str, Any]) -> int:
    """A child process: the pool user or the flood, driven by lines on stdin."""
    raiseFileLimit()
    from twisted.internet import reactor  # noqa: PLC0415
    from twisted.internet.defer import Deferred, DeferredQueue  # noqa: PLC0415
    from twisted.internet.stdio import StandardIO  # noqa: PLC0415
    from twisted.protocols.basic import LineReceiver  # noqa: PLC0415

    lines: DeferredQueue[str | None] = DeferredQueue()

    class Commands(LineReceiver):
        delimiter = b"\n"

        def lineReceived(self, line: bytes) -> None:
            lines.put(line.decode())

        def connectionLost(self, reason: Any = None) -> None:
            lines.put(None)

    StandardIO(Commands(), reactor=reactor)  # type: ignore[no-untyped-call]
    outcome: dict[str, Any] = {}
    run = _user if role == "user" else _flood
    d = Deferred.fromCoroutine(run(reactor, spec, lines))
    d.addErrback(lambda failure: outcome.setdefault("error", failure.getTraceback()))
    d.addBoth(lambda _: reactor.callLater(0, reactor.stop))
    reactor.run()
    if "error" in outcome:
        print(outcome["error"], file=sys.stderr)
        return 1
    return 0


# ------------------------------------------------------------------------------ report


def table(results: Results) -> str:
    """The Markdown table of a run."""
    rows = results.rows
    base = rows[0].median if rows else float("nan")
    lines = [
        "| scenario | PU median ms | x no flood | PU p90 ms | PU answered (unanswered) "
        "| server CPU | server µs per answer | server RSS MiB | flood sent | flood answered "
        "| rate-limit counters |",
        "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|---|",
    ]
    for row in rows:
        counters = ", ".join(f"{k} +{v}" for k, v in row.counters.items()) or "-"
        flooding = row.floodConnections > 0
        lines.append(
            f"| {row.name} | {row.median * 1e3:.2f} | {row.median / base:.2f} "
            f"| {row.p90 * 1e3:.2f} | {len(row.latencies)} ({row.unanswered}) "
            f"| {row.serverShare:.0%} | {row.cpuPerAnswer:,.0f} | {row.serverRss / 2**20:.0f} "
            f"| {f'{row.floodSent:,}' if flooding else '-'} "
            f"| {f'{row.floodAnswered:,}' if flooding else '-'} | {counters} |"
        )
    s = results.settings
    notes = [
        "",
        f"Python {results.python}, {results.cpus} CPUs. Windows of {s.duration:g} s after "
        f"{s.warmup:g} s of flood; the pool user ("
        + ("anonymous" if s.anonymousUser else f"PSK identity {PU_IDENTITY!r}")
        + ") sends one "
        f"handle resolution every {s.interval * 1e3:g} ms ({s.items} of {s.poolSize} PEs) "
        f"and waits for its answer (at most {s.timeout:g} s). Server options: "
        f"{' '.join(s.serverArgs) or '(defaults)'}"
        + (f"; server code from {s.serverPath}" if s.serverPath else "")
        + ".",
    ]
    closed = [r.name for r in rows if r.floodConnections and r.floodOpen < r.floodConnections]
    if closed:
        notes.append(f"Flood connections closed by the server in: {', '.join(closed)}.")
    return "\n".join(lines + notes)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0] if __doc__ else None, allow_abbrev=False
    )
    parser.add_argument("--role", choices=("user", "flood"), help=argparse.SUPPRESS)
    parser.add_argument("--spec", help=argparse.SUPPRESS)
    parser.add_argument("--quick", action="store_true", help="2 s windows")
    parser.add_argument("--duration", type=float, help="measured seconds per window (5)")
    parser.add_argument(
        "--interval",
        type=float,
        help="seconds between PU requests (0.02; 0.1 with --anonymous-user)",
    )
    parser.add_argument(
        "--anonymous-user", action="store_true", help="the pool user does not authenticate"
    )
    parser.add_argument("--server-path", help="first on the server's PYTHONPATH")
    parser.add_argument(
        "--server-arg", action="append", default=[], help="option for twistd enrp (repeat)"
    )
    parser.add_argument("--keep", action="store_true", help="keep the run's directory")
    args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
    if args.role is not None:
        return childMain(args.role, json.loads(args.spec))
    settings = QUICK if args.quick else Settings()
    overrides: dict[str, Any] = {
        "duration": args.duration,
        "interval": args.interval,
        "anonymousUser": args.anonymous_user or None,
        "serverPath": str(Path(args.server_path).resolve()) if args.server_path else None,
        "serverArgs": tuple(args.server_arg) or None,
    }
    if args.anonymous_user and args.interval is None:
        # Under its fair share of the anonymous rate during the 20-connection flood.
        overrides["interval"] = ANONYMOUS_INTERVAL
    settings = replace(settings, **{k: v for k, v in overrides.items() if v is not None})
    directory = Path(tempfile.mkdtemp(prefix="flood-bench-"))
    startedAt = time.monotonic()
    try:
        results = runBenchmark(settings, directory, lambda text: print(text, flush=True))
    except BaseException:
        print(f"(the run failed; its logs are in {directory})", file=sys.stderr)
        raise
    print()
    print(table(results))
    where = f"; files in {directory}" if args.keep else ""
    print(f"\n(run took {time.monotonic() - startedAt:.0f} s{where})")
    if not args.keep:
        import shutil  # noqa: PLC0415

        shutil.rmtree(directory, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
