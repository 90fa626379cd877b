"""ENRP server (registrar) benchmark: a real ``twistd enrp`` over TLS-PSK, from another process.

Measures, in one run:

1. **Handle resolutions per second** with 1, 10 and 100 concurrent pool-user connections.
   Pool users authenticate with TLS 1.3 PSK (identity ``pu``) on the same ``tlspsk:``
   listener the pool elements use; each connection keeps ``--window`` requests
   outstanding (8). The pool holds 10 PEs (Least Used) and every ASAP_HANDLE_RESOLUTION
   asks for 3 of them.
2. **The floor**: a bare Twisted TLS request/response server (this script with ``--role
   floor-server``): Twisted's own TCP transport and ``TLSMemoryBIOFactory`` with the TLS
   creator the same ``tlspsk:`` listener string makes, so the same TLS 1.3 PSK setup
   (but not the listener's write-through and gathering write paths), with messages
   framed by a 4-byte length; it answers requests of the handle resolution request's size
   with payloads of the handle resolution response's size. The same load
   generator drives it with the same connections and window. ENRP and floor phases
   alternate, three rounds per connection count, and the median round is reported, so
   that load from other processes on a shared machine hits both alike.
3. **Registrations per second** over 10 PE connections (identity ``pe``, same window):
   new PEs (a new PE identifier per request), then re-registrations of those PEs (new
   load values), then re-registrations with the content each PE has (logged at debug
   level, which ``twistd`` writes too), counted separately.
4. **Memory and keep-alive CPU with many PEs**: ``--pes`` (10,000) pool elements, each on
   its own TLS-PSK connection, registered with a fresh ``twistd enrp`` whose
   ``--keep-alive-interval`` is ``--keep-alive-interval`` (5 s, +/- 50 %); the server's
   RSS (``/proc/PID/status``) idle and with the PEs, and its CPU seconds
   (``/proc/PID/stat``) over ``--cpu-interval`` (10 s) of wall time while it sends
   ASAP_ENDPOINT_KEEP_ALIVE to every PE and the PEs answer. Connections are opened for at
   most ``--ramp-limit`` seconds (75); the table says how many made it.

Beside the rates, the table gives the server's CPU microseconds per answer (its threads'
``/proc/PID/task/TID/schedstat`` run time over the measured interval) and the ENRP
server's CPU per answer as a multiple of the floor's: on a machine shared with other work
that is steadier than the rate, which also depends on how much CPU the server is given.

The load comes from a separate process (this script re-invoked with ``--role loadgen``).
The ENRP server runs with every rate limit and cap raised out of the way (see
:func:`enrpCommand`): the benchmark measures the server's work, not its defences.
Everything listens on 127.0.0.1; every subprocess is killed when the run ends. The
script prints a table and asserts nothing about time.

Run: ``python benchmarks/registrar.py`` (about 3 minutes on two cores) or ``--quick``
(about 10 s: one round of 0.5 s phases, no held PEs; add them with ``--pes 1000``).
``--profile PREFIX`` runs the ENRP
servers under cProfile with a CPU-time clock and prints and keeps the statistics in
``PREFIX.throughput`` and ``PREFIX.held`` (profiling slows the server several times:
that run's rates are not the benchmark's numbers).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import asdict, dataclass, field, replace
from ipaddress import IPv4Address
from pathlib import Path
from typing import IO, Any

# After PYTHONPATH's entries: a server run with another checkout first on it (``--before``)
# imports that checkout's package, also when it runs under this script (profiled).
sys.path.insert(
    1 + len([p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]),
    str(Path(__file__).resolve().parent.parent),
)

from twisted_rserpool.security.certificates import createSelfSignedCertificate
from twisted_rserpool.security.psk import writePskFile
from twisted_rserpool.wire import asap
from twisted_rserpool.wire.parameters import LeastUsedPolicy, PoolElementParameter, TcpTransport

LOOPBACK = "127.0.0.1"
SCRIPT = Path(__file__).resolve()
TWISTD = str(Path(sys.executable).with_name("twistd"))
SERVER_ID = 0x00B00001
PE_IDENTITY, PE_KEY = "pe", bytes(range(32))
PU_IDENTITY, PU_KEY = "pu", bytes(range(1, 33))
RESOLVED_POOL = b"bench-resolve"
REGISTRATION_POOL = b"bench-register"
HELD_POOL = b"bench-held"
WILDCARD = IPv4Address("0.0.0.0")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")

# TCP mapping (draft-ietf-rserpool-tcpmapping-03): INIT with every DATA word present,
# DATA = type, flags, length, TSN, stream identifier, stream sequence number, PPID.
_INIT = bytes((1, 0, 0, 4))
_CHUNK = struct.Struct("!BBH")
_DATA = struct.Struct("!BBHIHHI")
_ACK = struct.Struct("!BBHI")
_LENGTH = struct.Struct("!I")
_TWO_WORDS = struct.Struct("!II")
_ASAP_PPID = 11
#: Seconds a load-generator connection may take to connect and answer its first request.
ATTEMPT_TIMEOUT = 30.0


# ------------------------------------------------------------------------------ settings


@dataclass(frozen=True)
class Settings:
    """Sizes and durations of one benchmark run."""

    connections: tuple[int, ...] = (1, 10, 100)
    window: int = 8
    warmup: float = 0.5
    duration: float = 3.0
    #: Rounds of (ENRP, floor) phases per connection count; the median round is reported.
    rounds: int = 3
    #: Stop a phase after this many counted responses (``None``: run ``duration``).
    maxRequests: int | None = None
    poolSize: int = 10
    items: int = 3
    registrationConnections: int = 10
    pes: int = 10_000
    keepAliveInterval: float = 5.0
    keepAliveTimeout: float = 10.0
    #: Seconds the load generator may spend opening the held connections.
    rampLimit: float = 75.0
    cpuInterval: float = 10.0
    settle: float = 3.0
    connectConcurrency: int = 100
    profile: str | None = None


#: ``--quick``: one round of short phases, no held PEs (``--pes N`` adds them).
QUICK = Settings(
    warmup=0.2, duration=0.5, rounds=1, pes=0, cpuInterval=4.0, settle=2.0, rampLimit=30.0
)


# ------------------------------------------------------------------------------ /proc


def cpuSeconds(pid: int) -> float:
    """CPU seconds process ``pid`` has run so far, all its threads: from each thread's
    ``/proc/PID/task/TID/schedstat`` (nanoseconds, so short phases measure well), or
    user plus system time from ``/proc/PID/stat`` (clock ticks) where there is none."""
    total = 0
    try:
        for task in Path(f"/proc/{pid}/task").iterdir():
            with suppress(FileNotFoundError):  # a thread that just ended
                total += int((task / "schedstat").read_text().split()[0])
    except (FileNotFoundError, ValueError, IndexError):
        total = 0
    if total:
        return total / 1e9
    text = Path(f"/proc/{pid}/stat").read_text()
    fields = text[text.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def rssBytes(pid: int) -> int:
    """Resident set size of process ``pid`` (``VmRSS`` in ``/proc/PID/status``)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


def ownCpuSeconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def raiseFileLimit() -> int:
    """Raise the soft open-file limit to the hard one (children inherit it); returns it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > soft:
        target = 1 << 20 if hard == resource.RLIM_INFINITY else hard
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        soft = target
    return soft


# ------------------------------------------------------------------------------ messages


def poolElement(identifier: int, port: int, load: int) -> PoolElementParameter:
    """A PE as a PE registers it: the wildcard address means "the address I come from"."""
    return PoolElementParameter(
        identifier, 0, 3600, TcpTransport(port, WILDCARD), LeastUsedPolicy(load)
    )


def registration(pool: bytes, identifier: int, load: int = 0) -> bytes:
    """An encoded ASAP_REGISTRATION."""
    return asap.Registration(
        pool, poolElement(identifier, 1024 + identifier % 60000, load)
    ).encode()


def resolution(items: int) -> bytes:
    """The encoded ASAP_HANDLE_RESOLUTION every pool user sends."""
    return asap.HandleResolution(RESOLVED_POOL, items=items).encode()


# ------------------------------------------------------------------------------ processes


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
        writePskFile(self.serverKeys, {PE_IDENTITY: PE_KEY, PU_IDENTITY: PU_KEY})
        writePskFile(self.clientKeys(PE_IDENTITY), {PE_IDENTITY: PE_KEY})
        writePskFile(self.clientKeys(PU_IDENTITY), {PU_IDENTITY: PU_KEY})
        createSelfSignedCertificate(self.certificate, self.privateKey)

    def listener(self, port: int) -> str:
        """The server endpoint string of both the ENRP server and the floor server."""
        return (
            f"tlspsk:{port}:interface={LOOPBACK}:backlog=1024:pskFile={self.serverKeys}"
            f":certificate={self.certificate}:privateKey={self.privateKey}"
        )


def freePort() -> int:
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        port: int = s.getsockname()[1]
        return port


def waitForPort(port: int, process: subprocess.Popen[bytes], log: Path, limit: float) -> None:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited ({process.returncode}); see {log}")
        with socket.socket() as s:
            if s.connect_ex((LOOPBACK, port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port} after {limit} s; see {log}")


def enrpCommand(
    files: Files,
    port: int,
    adminPort: int,
    keepAliveInterval: float,
    keepAliveTimeout: float,
    log: Path,
    profile: str | None = None,
) -> list[str]:
    """``twistd -n enrp`` with every limit raised out of the benchmark's way (under
    cProfile, counting CPU time, when ``profile`` names the file for the statistics)."""
    launcher = [TWISTD]
    if profile:
        launcher = [sys.executable, str(SCRIPT), "--role", "profiled-twistd", "--spec", profile]
    return [
        *launcher, "-n", "--pidfile=", f"--logfile={log}",
        "enrp", "--server-id", hex(SERVER_ID),
        "--asap", files.listener(port),
        "--admin", f"tcp:{adminPort}:interface={LOOPBACK}",
        "--keep-alive-interval", str(keepAliveInterval),
        "--keep-alive-timeout", str(keepAliveTimeout),
        # Raised limits (defaults: 200/400, 500/1000, 1/3, 10000, 10000, 1000).
        "--request-rate", "1000000/1000000",
        "--identity-rate", "1000000/1000000",
        "--keep-alive-rate", "1000/1000",
        "--max-connections", "100000",
        "--max-pool-elements-per-pool", "1000000",
        "--max-pool-elements-per-identity", "1000000",
    ]  # fmt: skip


@dataclass
class Child:
    """A subprocess this run started; :meth:`stop` always ends it."""

    process: subprocess.Popen[bytes]
    name: str
    gentle: bool = False

    @property
    def pid(self) -> int:
        return self.process.pid

    def stop(self) -> None:
        if self.process.poll() is None:
            if self.gentle:
                # SIGINT lets twistd stop its reactor and write the profile.
                self.process.send_signal(signal.SIGINT)
                with suppress(subprocess.TimeoutExpired):
                    self.process.wait(timeout=30)
            if self.process.poll() is None:
                self.process.kill()
            self.process.wait(timeout=10)
        for stream in (self.process.stdin, self.process.stdout):
            if stream is not None:
                stream.close()


@contextmanager
def started(command: list[str], name: str, directory: Path, **kwargs: Any) -> Iterator[Child]:
    """Run ``command``; on leaving, kill it (whatever happened)."""
    output = open(directory / f"{name}.out", "wb")  # noqa: SIM115
    child = Child(
        subprocess.Popen(
            command,
            cwd=directory,
            stderr=output,
            stdout=kwargs.pop("stdout", output),
            stdin=kwargs.pop("stdin", subprocess.DEVNULL),
            env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
        ),
        name,
        kwargs.pop("gentle", False),
    )
    try:
        yield child
    finally:
        child.stop()
        output.close()


@contextmanager
def enrpServer(
    files: Files, name: str, keepAliveInterval: float, keepAliveTimeout: float, profile: str | None
) -> Iterator[tuple[Child, int, int]]:
    port, adminPort = freePort(), freePort()
    log = files.directory / f"{name}.log"
    command = enrpCommand(files, port, adminPort, keepAliveInterval, keepAliveTimeout, log, profile)
    with started(command, name, files.directory, gentle=profile is not None) as child:
        waitForPort(port, child.process, log, 30)
        waitForPort(adminPort, child.process, log, 30)
        yield child, port, adminPort


def admin(adminPort: int) -> dict[str, Any]:
    """The ENRP server's admin document (JSON over HTTP)."""
    url = f"http://{LOOPBACK}:{adminPort}/"
    with urllib.request.urlopen(url, timeout=60) as response:
        document: dict[str, Any] = json.loads(response.read())
    return document


def loadgenCommand(spec: dict[str, Any]) -> list[str]:
    return [sys.executable, str(SCRIPT), "--role", "loadgen", "--spec", json.dumps(spec)]


def runLoadgen(spec: dict[str, Any], directory: Path, limit: float) -> dict[str, Any]:
    """Run the load generator to its end (at most ``limit`` s); its result."""
    name = f"loadgen-{spec['mode']}"
    with started(loadgenCommand(spec), name, directory, stdout=subprocess.PIPE) as child:
        assert child.process.stdout is not None
        try:
            out, _ = child.process.communicate(timeout=limit)
        except subprocess.TimeoutExpired:
            raise RuntimeError(f"{name} did not finish in {limit} s") from None
    return resultOf(out.decode(), directory / f"{name}.out")


def resultOf(text: str, log: Path) -> dict[str, Any]:
    for line in text.splitlines():
        if line.startswith("RESULT "):
            result: dict[str, Any] = json.loads(line[len("RESULT ") :])
            return result
    raise RuntimeError(f"the load generator gave no result; see {log}")


def askCounts(process: subprocess.Popen[bytes]) -> tuple[int, int, float]:
    """Keep-alives answered and connections open, from the held-PE load generator; and
    when the answer came."""
    assert process.stdin is not None and process.stdout is not None
    process.stdin.write(b"COUNT\n")
    process.stdin.flush()
    line = readLine(process.stdout, 60, "COUNT")
    if not line.startswith("COUNT "):
        raise RuntimeError(f"the load generator answered {line!r}")
    _, answered, still = line.split()
    return int(answered), int(still), time.monotonic()


def readLine(stream: IO[bytes], limit: float, what: str) -> str:
    """One line from ``stream`` within ``limit`` seconds."""
    import selectors  # noqa: PLC0415

    with selectors.DefaultSelector() as selector:
        selector.register(stream, selectors.EVENT_READ)
        if not selector.select(limit):
            raise RuntimeError(f"no {what} within {limit} s")
    return stream.readline().decode()


# ------------------------------------------------------------------------------ results


@dataclass
class PhaseResult:
    """One measured load phase, as the load generator reports it."""

    name: str
    connections: int
    responses: int
    seconds: float
    serverCpu: float
    loadgenCpu: float
    bad: int
    rounds: int = 1
    #: Fastest round's rate over the slowest's.
    spread: float = 1.0

    @property
    def rate(self) -> float:
        return self.responses / self.seconds if self.seconds > 0 else 0.0

    @property
    def serverShare(self) -> float:
        """Server CPU seconds per wall second (1.0 = one core busy)."""
        return self.serverCpu / self.seconds if self.seconds > 0 else 0.0

    @property
    def cpuPerResponse(self) -> float:
        """Server CPU microseconds per answered request."""
        return self.serverCpu / self.responses * 1e6 if self.responses else 0.0

    @property
    def loadgenShare(self) -> float:
        return self.loadgenCpu / self.seconds if self.seconds > 0 else 0.0


@dataclass
class HeldResult:
    """Memory and keep-alive CPU of a server holding many PEs."""

    requested: int
    registered: int
    failed: int
    connectSeconds: float
    idleRss: int
    heldRss: int
    loadgenRss: int
    cpuSeconds: float
    wallSeconds: float
    #: ASAP_ENDPOINT_KEEP_ALIVEs the PEs answered between two counts of the load generator.
    keepAlivesAnswered: int
    #: Wall time between those two counts (about the CPU interval).
    countedSeconds: float
    #: Held connections still open at the end of the interval.
    openAfter: int
    keepAliveInterval: float
    keepAlivesSentTotal: int
    #: PEs the server removed for an unanswered keep-alive during the whole held phase.
    removedKeepAlive: int
    failures: list[str] = field(default_factory=list)

    @property
    def rssPerPE(self) -> float:
        return (self.heldRss - self.idleRss) / self.registered if self.registered else 0.0


@dataclass
class Results:
    settings: Settings
    requestSize: int
    responseSize: int
    resolutions: list[PhaseResult]
    floor: list[PhaseResult]
    registrations: list[PhaseResult]
    held: HeldResult | None
    python: str = platform.python_version()
    cpus: int = os.cpu_count() or 0
    fileLimit: int = 0


def phases(raw: list[dict[str, Any]]) -> list[PhaseResult]:
    return [PhaseResult(**p) for p in raw]


# ------------------------------------------------------------------------------ orchestration


def runBenchmark(settings: Settings, directory: Path, say: Callable[[str], None]) -> Results:
    """Run every measurement with ``settings``; files and logs go to ``directory``."""
    fileLimit = raiseFileLimit()
    files = Files(directory)
    files.create()
    say(f"ENRP server and floor server: handle resolutions, registrations ({directory})")
    profile = settings.profile
    floorPort = freePort()
    floorSpec = {"port": floorPort, "listener": files.listener(floorPort)}
    floorCommand = [sys.executable, str(SCRIPT), "--role", "floor-server"]
    floorCommand += ["--spec", json.dumps(floorSpec)]
    with (
        enrpServer(files, "enrp-throughput", 600.0, 30.0, profile and f"{profile}.throughput") as (
            server,
            port,
            _,
        ),
        started(floorCommand, "floor-server", directory) as floorServer,
    ):
        waitForPort(floorPort, floorServer.process, directory / "floor-server.out", 30)
        common = {
            "port": port,
            "serverPid": server.pid,
            "window": settings.window,
            "warmup": settings.warmup,
            "duration": settings.duration,
            "maxRequests": settings.maxRequests,
            "connectConcurrency": settings.connectConcurrency,
            "peKeys": str(files.clientKeys(PE_IDENTITY)),
            "puKeys": str(files.clientKeys(PU_IDENTITY)),
        }
        phaseCount = 2 * len(settings.connections) * settings.rounds + 3
        limit = 120 + 3 * (settings.warmup + settings.duration) * phaseCount
        resolved = runLoadgen(
            {
                **common,
                "mode": "resolve",
                "floorPort": floorPort,
                "floorPid": floorServer.pid,
                "connections": list(settings.connections),
                "rounds": settings.rounds,
                "poolSize": settings.poolSize,
                "items": settings.items,
            },
            directory,
            limit,
        )
        measured = phases(resolved["phases"])
        say(f"  resolutions and floor: {summary(measured)}")
        registered = runLoadgen(
            {**common, "mode": "register", "connections": [settings.registrationConnections]},
            directory,
            limit,
        )
        say(f"  registrations: {summary(phases(registered['phases']))}")
    held = None
    if settings.pes > 0:
        say(f"ENRP server holding {settings.pes} PEs, one TLS connection each")
        held = runHeld(settings, files)
        say(
            f"  {held.registered} registered, RSS {held.heldRss / 2**20:.0f} MiB, "
            f"CPU {held.cpuSeconds / held.wallSeconds:.0%} of a core"
        )
    return Results(
        settings,
        resolved["requestSize"],
        resolved["responseSize"],
        medians([p for p in measured if p.name == "resolve"]),
        medians([p for p in measured if p.name == "floor"]),
        phases(registered["phases"]),
        held,
        fileLimit=fileLimit,
    )


def medians(results: Sequence[PhaseResult]) -> list[PhaseResult]:
    """Per connection count, the round with the median rate (rounds alternate ENRP and
    floor, so that load from other processes hits both alike)."""
    byCount: dict[int, list[PhaseResult]] = {}
    for result in results:
        byCount.setdefault(result.connections, []).append(result)
    chosen = []
    for rounds in byCount.values():
        ordered = sorted(rounds, key=lambda r: r.rate)
        spread = ordered[-1].rate / ordered[0].rate if ordered[0].rate else 0.0
        chosen.append(replace(ordered[(len(ordered) - 1) // 2], rounds=len(ordered), spread=spread))
    return chosen


def summary(results: Sequence[PhaseResult]) -> str:
    return ", ".join(f"{r.name}/{r.connections}: {r.rate:,.0f}/s" for r in results)


def runHeld(settings: Settings, files: Files) -> HeldResult:
    """Register ``settings.pes`` PEs on as many connections; measure RSS and keep-alive CPU."""
    directory = files.directory
    profile = settings.profile and f"{settings.profile}.held"
    with enrpServer(
        files, "enrp-held", settings.keepAliveInterval, settings.keepAliveTimeout, profile
    ) as (server, port, adminPort):
        time.sleep(0.5)
        idleRss = rssBytes(server.pid)
        spec = {
            "mode": "hold",
            "port": port,
            "serverPid": server.pid,
            "connections": [settings.pes],
            "peKeys": str(files.clientKeys(PE_IDENTITY)),
            "connectConcurrency": settings.connectConcurrency,
            "rampLimit": settings.rampLimit,
        }
        with started(
            loadgenCommand(spec),
            "loadgen-hold",
            directory,
            stdout=subprocess.PIPE,
            stdin=subprocess.PIPE,
        ) as loadgen:
            assert loadgen.process.stdout is not None and loadgen.process.stdin is not None
            line = readLine(loadgen.process.stdout, settings.rampLimit + 120, "READY")
            if not line.startswith("READY "):
                raise RuntimeError(f"the load generator failed; see {directory}/loadgen-hold.out")
            ready = json.loads(line[len("READY ") :])
            time.sleep(settings.settle)
            heldRss = rssBytes(server.pid)
            loadgenRss = rssBytes(loadgen.pid)
            # Keep-alives are counted by the PEs that answer them: asking the server (its
            # admin document lists every PE) would cost it CPU inside the interval.
            answered0, _, counted0 = askCounts(loadgen.process)
            wall0, cpu0 = time.monotonic(), cpuSeconds(server.pid)
            time.sleep(settings.cpuInterval)
            wall1, cpu1 = time.monotonic(), cpuSeconds(server.pid)
            answered1, still, counted1 = askCounts(loadgen.process)
            out, _ = loadgen.process.communicate(timeout=60)  # closes stdin: the end
            final = resultOf(out.decode(), directory / "loadgen-hold.out")
        # Only now (the PEs are gone: a document listing thousands of them takes the busy
        # server minutes to send) the server's counters.
        counters = admin(adminPort)["counters"]
    return HeldResult(
        requested=settings.pes,
        registered=ready["registered"],
        failed=ready["failed"],
        connectSeconds=ready["seconds"],
        idleRss=idleRss,
        heldRss=heldRss,
        loadgenRss=loadgenRss,
        cpuSeconds=cpu1 - cpu0,
        wallSeconds=wall1 - wall0,
        keepAlivesAnswered=answered1 - answered0,
        countedSeconds=counted1 - counted0,
        openAfter=still,
        keepAliveInterval=settings.keepAliveInterval,
        keepAlivesSentTotal=counters.get("keep_alives_sent", 0),
        removedKeepAlive=counters.get("removed_keep_alive_timeout", 0),
        failures=ready["failures"] + final.get("failures", []),
    )


# ------------------------------------------------------------------------------ load generator
#
# Runs in its own process (``--role loadgen``). The clients are lean on purpose: requests are
# framed with ``struct`` and answers are recognised by their first bytes (the first answer
# of every connection is decoded in full and checked), so that as much of the machine as
# possible is left to the server under test.


@dataclass
class LoadRun:
    """The state all connections of one load generator share."""

    window: int
    sending: bool = False
    counting: bool = False
    budget: int | None = None
    target: int | None = None
    responses: int = 0
    bad: int = 0
    unexpected: int = 0
    keepAlives: int = 0
    finished: Any = None  # Deferred[None] while a phase with a target runs

    def take(self) -> bool:
        """Whether one more request may be sent (``budget`` bounds a phase's requests)."""
        if self.budget is None:
            return True
        if self.budget <= 0:
            return False
        self.budget -= 1
        return True

    def answered(self, ok: bool) -> None:
        if not self.counting:
            return
        self.responses += 1
        if not ok:
            self.bad += 1
        if (
            self.target is not None
            and self.responses >= self.target
            and self.finished is not None
            and not self.finished.called
        ):
            self.finished.callback(None)


def _ok(message: bytes) -> bool:
    return True


def _twisted() -> Any:
    """Twisted's reactor-dependent pieces, imported only in the child processes."""
    from twisted.internet import protocol  # noqa: PLC0415

    return protocol


class _Feed:
    """Where a connection's requests come from during a phase, and how answers are judged."""

    def __init__(self, source: Callable[[], bytes], check: Callable[[bytes], bool]) -> None:
        self.source = source
        self.check = check


def _constantFeed(message: bytes, expectedType: int) -> _Feed:
    return _Feed(lambda: message, lambda answer: answer[:1] == bytes((expectedType,)))


class _RegistrationFeed:
    """New registrations (a fresh PE identifier each), then re-registrations of those PEs
    with new load values (:meth:`renew`), then with the content they have (:meth:`same`)."""

    def __init__(self, base: int) -> None:
        self.next = base
        self.sent: deque[int] = deque()
        self.registered: list[int] = []
        self.again = 0
        #: The load each PE was last registered with.
        self.loads: dict[int, int] = {}

    def new(self) -> bytes:
        identifier = self.next
        self.next += 1
        self.sent.append(identifier)
        return registration(REGISTRATION_POOL, identifier)

    def renew(self) -> bytes:
        identifier = self.registered[self.again % len(self.registered)]
        self.again += 1
        self.sent.append(identifier)
        load = self.loads[identifier] = self.again & 0xFFFF
        return registration(REGISTRATION_POOL, identifier, load=load)

    def same(self) -> bytes:
        identifier = self.registered[self.again % len(self.registered)]
        self.again += 1
        self.sent.append(identifier)
        return registration(REGISTRATION_POOL, identifier, load=self.loads.get(identifier, 0))

    def check(self, answer: bytes) -> bool:
        identifier = self.sent.popleft()
        ok = answer[:1] == b"\x03" and not answer[1] & 1
        if ok and not self.again:  # a new PE (re-registrations start with again = 1)
            self.registered.append(identifier)
        return ok


def _makeClientClasses() -> tuple[type[Any], type[Any]]:
    """The two load-generator protocols; built lazily so the orchestrator never imports
    the reactor."""
    from twisted.internet.defer import Deferred  # noqa: PLC0415
    from twisted.internet.protocol import Protocol  # noqa: PLC0415
    from twisted.python.failure import Failure  # noqa: PLC0415

    class LoadClient(Protocol):
        """One connection: ``call`` for single round trips, ``kick`` to keep the window full."""

        preamble = b""

        def __init__(self, run: LoadRun) -> None:
            self.run = run
            self.feed: _Feed | None = None
            #: Whether the running phase includes this connection. (A warm-up answer
            #: fires Deferreds whose callbacks may start a phase inside this very
            #: ``dataReceived``: only the phase's own connections may refill.)
            self.active = False
            self.waiters: deque[Deferred[bytes] | None] = deque()
            self.buffer = bytearray()
            self.lost: Deferred[None] = Deferred()
            self.closed = False

        def connectionMade(self) -> None:
            assert self.transport is not None
            tcp = getattr(self.transport, "transport", None)
            if tcp is not None and hasattr(tcp, "setTcpNoDelay"):
                tcp.setTcpNoDelay(True)
            if self.preamble:
                self.transport.write(self.preamble)

        def connectionLost(self, reason: Failure | None = None) -> None:
            self.closed = True
            waiters, self.waiters = self.waiters, deque()
            for waiter in waiters:
                if waiter is not None:
                    waiter.errback(reason or Failure(ConnectionError("lost")))  # type: ignore[no-untyped-call]
            self.lost.callback(None)

        def frame(self, message: bytes) -> bytes:
            raise NotImplementedError

        def call(self, message: bytes) -> Deferred[bytes]:
            """Send one message; the Deferred fires with the answer."""
            waiter: Deferred[bytes] = Deferred()
            if self.closed or self.transport is None:
                waiter.errback(ConnectionError("not connected"))
                return waiter
            self.waiters.append(waiter)
            self.transport.write(self.frame(message))
            return waiter

        def pump(self) -> bytes:
            run, feed = self.run, self.feed
            if feed is None or self.closed or not self.active:
                return b""
            out = []
            while run.sending and len(self.waiters) < run.window and run.take():
                self.waiters.append(None)
                out.append(self.frame(feed.source()))
            return b"".join(out)

        def kick(self) -> None:
            data = self.pump()
            if data and self.transport is not None:
                self.transport.write(data)

        def answered(self, message: bytes) -> None:
            if not self.waiters:
                self.run.unexpected += 1
                return
            waiter = self.waiters.popleft()
            if waiter is not None:
                waiter.callback(message)
                return
            assert self.feed is not None
            self.run.answered(self.feed.check(message))

        def close(self) -> None:
            if self.transport is not None and not self.closed:
                self.transport.loseConnection()

        def abort(self) -> None:
            if self.transport is not None and not self.closed:
                abort = getattr(self.transport, "abortConnection", None)
                if abort is not None:
                    abort()
                else:
                    self.transport.loseConnection()

    class MappingClient(LoadClient):
        """ASAP over the TCP mapping: DATA chunks with PPID 11, one ACK per DATA received."""

        preamble = _INIT

        def __init__(self, run: LoadRun) -> None:
            super().__init__(run)
            self.tsn = 0
            self.ssn = 0
            #: Pool handle -> PE identifiers registered here (to answer keep-alives).
            self.pes: dict[bytes, list[int]] = {}

        def frame(self, message: bytes) -> bytes:
            length = 16 + len(message)
            header = _DATA.pack(0, 0, length, self.tsn, 0, self.ssn, _ASAP_PPID)
            self.tsn = (self.tsn + 1) & 0xFFFFFFFF
            self.ssn = (self.ssn + 1) & 0xFFFF
            return header + message + bytes(-length % 4)

        def dataReceived(self, data: bytes) -> None:
            buffer = self.buffer
            buffer += data
            out: list[bytes] = []
            offset, end = 0, len(buffer)
            while end - offset >= 4:
                kind, flags, length = _CHUNK.unpack_from(buffer, offset)
                padded = (length + 3) & ~3
                if end - offset < padded:
                    break
                if kind == 0:  # DATA (the server sends every optional word)
                    (tsn,) = struct.unpack_from("!I", buffer, offset + 4)
                    out.append(_ACK.pack(3, 0, 8, tsn))
                    message = bytes(buffer[offset + 16 : offset + length])
                    if message[:1] == b"\x07":
                        out.append(self.keepAlive(message))
                    else:
                        self.answered(message)
                elif kind == 4:  # HEARTBEAT: echo it in a HEARTBEAT ACK
                    out.append(b"\x05" + bytes(buffer[offset + 1 : offset + padded]))
                elif kind == 1 and flags:
                    raise RuntimeError("the load generator expects DATA chunks with every word")
                offset += padded
            del buffer[:offset]
            out.append(self.pump())
            if self.transport is not None and not self.closed:
                self.transport.write(b"".join(out))

        def keepAlive(self, message: bytes) -> bytes:
            """ASAP_ENDPOINT_KEEP_ALIVE_ACK for every PE of the pool on this connection."""
            keepAlive = asap.decode(message)
            assert isinstance(keepAlive, asap.EndpointKeepAlive)
            self.run.keepAlives += 1
            identifiers = (
                [keepAlive.pe_identifier]
                if keepAlive.pe_identifier is not None
                else self.pes.get(keepAlive.pool_handle, [])
            )
            return b"".join(
                self.frame(asap.EndpointKeepAliveAck(keepAlive.pool_handle, i).encode())
                for i in identifiers
            )

    class FloorClient(LoadClient):
        """The floor's client: the same window, messages behind a 4-byte length."""

        def frame(self, message: bytes) -> bytes:
            return _LENGTH.pack(len(message)) + message

        def dataReceived(self, data: bytes) -> None:
            buffer = self.buffer
            buffer += data
            offset, end = 0, len(buffer)
            while end - offset >= 4:
                (length,) = _LENGTH.unpack_from(buffer, offset)
                if end - offset < 4 + length:
                    break
                self.answered(bytes(buffer[offset + 4 : offset + 4 + length]))
                offset += 4 + length
            del buffer[:offset]
            more = self.pump()
            if more and self.transport is not None and not self.closed:
                self.transport.write(more)

    return MappingClient, FloorClient


async def _connectMany(
    reactor: Any,
    endpoint: Any,
    factory: Callable[[], Any],
    count: int,
    concurrency: int,
    first: Callable[[Any, int], Any],
    failures: list[str],
    deadline: float | None = None,
) -> list[Any]:
    """``count`` connections, at most ``concurrency`` opening at once; ``first(client, i)``
    is each one's first round trip (awaited before the connection counts as open). No new
    connection is started after ``deadline`` (``time.monotonic()``)."""
    from twisted.internet.defer import Deferred, gatherResults  # noqa: PLC0415
    from twisted.internet.endpoints import connectProtocol  # noqa: PLC0415

    clients: list[Any] = []
    indices = iter(range(count))

    async def attempt(client: Any, index: int) -> None:
        await connectProtocol(endpoint, client)  # type: ignore[no-untyped-call]
        await first(client, index)

    async def worker() -> None:
        # ``concurrency`` workers take the indices in turn (a loop, not a Deferred chain:
        # thousands of attempts must not nest callbacks).
        for index in indices:
            if deadline is not None and time.monotonic() > deadline:
                return
            client = factory()
            try:
                # Bounded: a connection that has not answered its first request by then is
                # given up (and counted), so that the ramp always ends.
                await Deferred.fromCoroutine(attempt(client, index)).addTimeout(
                    ATTEMPT_TIMEOUT, reactor
                )
            except Exception as e:
                client.abort()
                failures.append(f"{type(e).__name__}: {e}" if len(failures) < 5 else "")
                continue
            clients.append(client)

    await gatherResults([Deferred.fromCoroutine(worker()) for _ in range(min(concurrency, count))])
    return clients


async def _serveCounts(reactor: Any, run: LoadRun, clients: Sequence[Any]) -> None:
    """Answer each ``COUNT`` line on stdin with ``COUNT <keep-alives answered> <open
    connections>`` on stdout, until stdin ends."""
    from twisted.internet.defer import Deferred  # noqa: PLC0415

    ended: Deferred[None] = Deferred()

    def answer() -> None:
        still = sum(1 for c in clients if not c.closed)
        print(f"COUNT {run.keepAlives} {still}", flush=True)

    def read() -> None:
        for line in sys.stdin:
            if line.strip() == "COUNT":
                reactor.callFromThread(answer)
        reactor.callFromThread(ended.callback, None)

    reactor.callInThread(read)
    await ended


async def _sleep(reactor: Any, seconds: float) -> None:
    from twisted.internet.task import deferLater  # noqa: PLC0415

    await deferLater(reactor, seconds, lambda: None)


async def _runPhase(
    reactor: Any,
    run: LoadRun,
    clients: Sequence[Any],
    name: str,
    spec: dict[str, Any],
) -> dict[str, Any]:
    """Keep every client's window full for warm-up plus duration; count the answers."""
    from twisted.internet.defer import Deferred  # noqa: PLC0415

    maxRequests = spec.get("maxRequests")
    run.responses = run.bad = 0
    run.budget = run.target = maxRequests
    run.sending = True
    run.counting = maxRequests is not None
    for client in clients:
        client.active = True
    for client in clients:
        client.kick()
    if maxRequests is None:
        await _sleep(reactor, spec["warmup"])
    run.counting = True
    run.responses = run.bad = 0
    finished: Deferred[None] = Deferred()
    run.finished = finished

    def timeUp() -> None:
        if not finished.called:
            finished.callback(None)

    timer = reactor.callLater(spec["duration"], timeUp)
    serverPid = spec["serverPid"]
    wall0, server0, own0 = time.monotonic(), cpuSeconds(serverPid), ownCpuSeconds()
    await finished
    wall1, server1, own1 = time.monotonic(), cpuSeconds(serverPid), ownCpuSeconds()
    if timer.active():
        timer.cancel()
    run.counting = run.sending = False
    for client in clients:
        client.active = False
    result = PhaseResult(
        name, len(clients), run.responses, wall1 - wall0, server1 - server0, own1 - own0, run.bad
    )
    deadline = time.monotonic() + 10
    while any(c.waiters for c in clients) and time.monotonic() < deadline:
        await _sleep(reactor, 0.01)
    return asdict(result)


async def _loadgen(reactor: Any, spec: dict[str, Any]) -> dict[str, Any]:
    from twisted.internet.endpoints import clientFromString  # noqa: PLC0415

    MappingClient, FloorClient = _makeClientClasses()
    mode = spec["mode"]
    run = LoadRun(spec.get("window", 1))
    port = spec["port"]
    concurrency = spec["connectConcurrency"]
    failures: list[str] = []
    result: dict[str, Any] = {"failures": failures}

    def endpoint(identity: str, keys: str) -> Any:
        return clientFromString(  # type: ignore[no-untyped-call]
            reactor, f"tlspsk:host={LOOPBACK}:port={port}:identity={identity}:pskFile={keys}"
        )

    allClients: list[Any] = []
    try:
        if mode == "resolve":
            pe = MappingClient(run)

            async def nothing(client: Any, index: int) -> None:
                return None

            await _connectMany(
                reactor, endpoint(PE_IDENTITY, spec["peKeys"]), lambda: pe, 1, 1, nothing, failures
            )
            if failures:
                raise RuntimeError(f"the PE connection failed: {failures}")
            allClients.append(pe)
            for identifier in range(1, spec["poolSize"] + 1):
                answer = asap.decode(
                    await pe.call(
                        asap.Registration(
                            RESOLVED_POOL, poolElement(identifier, 7000 + identifier, identifier)
                        ).encode()
                    )
                )
                if not isinstance(answer, asap.RegistrationResponse) or answer.reject:
                    raise RuntimeError(f"registration of the resolved pool failed: {answer}")
            request = resolution(spec["items"])
            sizes: list[int] = []

            async def warmUp(client: Any, index: int) -> None:
                answer = await client.call(request)
                decoded = asap.decode(answer)
                if (
                    not isinstance(decoded, asap.HandleResolutionResponse)
                    or decoded.error is not None
                    or len(decoded.pool_elements) != spec["items"]
                ):
                    raise RuntimeError(f"unexpected handle resolution answer {decoded}")
                sizes.append(len(answer))

            most = max(spec["connections"])
            users = await _connectMany(
                reactor, endpoint(PU_IDENTITY, spec["puKeys"]), lambda: MappingClient(run),
                most, concurrency, warmUp, failures,
            )  # fmt: skip
            allClients += users
            responseSize = max(sizes)
            result["requestSize"] = len(request)
            result["responseSize"] = responseSize
            for user in users:
                user.feed = _constantFeed(request, asap.AsapType.HANDLE_RESOLUTION_RESPONSE)
            # The floor's request: the handle resolution's size, its first word the size
            # of the answer wanted (the handle resolution response's).
            payload = _LENGTH.pack(responseSize) + bytes(len(request) - 4)

            async def echo(client: Any, index: int) -> None:
                if len(await client.call(payload)) != responseSize:
                    raise RuntimeError("the floor server answered with the wrong size")

            floorEndpoint = clientFromString(  # type: ignore[no-untyped-call]
                reactor,
                f"tlspsk:host={LOOPBACK}:port={spec['floorPort']}:identity={PU_IDENTITY}"
                f":pskFile={spec['puKeys']}",
            )
            floorUsers = await _connectMany(
                reactor, floorEndpoint, lambda: FloorClient(run),
                most, concurrency, echo, failures,
            )  # fmt: skip
            allClients += floorUsers
            for user in floorUsers:
                user.feed = _Feed(lambda: payload, lambda answer: len(answer) == responseSize)
            if len(users) < most or len(floorUsers) < most:
                raise RuntimeError(f"could not open {most} connections: {failures}")
            floorSpec = {**spec, "serverPid": spec["floorPid"]}
            measured = []
            for _ in range(spec["rounds"]):
                for count in spec["connections"]:
                    measured.append(await _runPhase(reactor, run, users[:count], "resolve", spec))
                    measured.append(
                        await _runPhase(reactor, run, floorUsers[:count], "floor", floorSpec)
                    )
            result["phases"] = measured
        elif mode == "register":
            feeds: dict[Any, _RegistrationFeed] = {}

            async def firstRegistration(client: Any, index: int) -> None:
                feed = _RegistrationFeed((index + 1) << 20)
                feeds[client] = feed
                answer = await client.call(feed.new())
                if not feed.check(answer):
                    raise RuntimeError(f"registration refused: {asap.decode(answer)}")

            pes = await _connectMany(
                reactor, endpoint(PE_IDENTITY, spec["peKeys"]), lambda: MappingClient(run),
                spec["connections"][0], concurrency, firstRegistration, failures,
            )  # fmt: skip
            allClients += pes
            for client in pes:
                feed = feeds[client]
                client.feed = _Feed(feed.new, feed.check)
            phaseResults = [await _runPhase(reactor, run, pes, "register", spec)]
            for client in pes:
                feed = feeds[client]
                client.feed = _Feed(feed.renew, feed.check)
                feed.again = 1
            phaseResults.append(await _runPhase(reactor, run, pes, "reregister", spec))
            for client in pes:
                feed = feeds[client]
                client.feed = _Feed(feed.same, feed.check)
            phaseResults.append(await _runPhase(reactor, run, pes, "unchanged", spec))
            result["phases"] = phaseResults
        elif mode == "hold":
            count = spec["connections"][0]

            async def register(client: Any, index: int) -> None:
                identifier = index + 1
                answer = await client.call(registration(HELD_POOL, identifier))
                if answer[:1] != b"\x03" or answer[1] & 1:
                    raise RuntimeError(f"registration refused: {asap.decode(answer)}")
                client.pes[HELD_POOL] = [identifier]

            started = time.monotonic()
            held = await _connectMany(
                reactor, endpoint(PE_IDENTITY, spec["peKeys"]), lambda: MappingClient(run),
                count, concurrency, register, failures, started + spec["rampLimit"],
            )  # fmt: skip
            allClients += held
            ready = {
                "registered": len(held),
                "failed": len(failures),
                "seconds": time.monotonic() - started,
                "failures": [f for f in failures if f],
            }
            print("READY " + json.dumps(ready), flush=True)
            await _serveCounts(reactor, run, held)
            result["keepAlivesAnswered"] = run.keepAlives
        else:
            raise ValueError(f"unknown mode {mode!r}")
    finally:
        for client in allClients:
            client.close()
    result["failures"] = [f for f in failures if f]
    result["unexpected"] = run.unexpected
    return result


def loadgenMain(spec: dict[str, Any]) -> int:
    """The load generator process: run ``spec``, print ``RESULT <json>``."""
    raiseFileLimit()
    from twisted.internet import reactor  # noqa: PLC0415
    from twisted.internet.defer import Deferred  # noqa: PLC0415

    outcome: dict[str, Any] = {}

    def done(result: dict[str, Any]) -> None:
        outcome.update(result)

    def failed(failure: Any) -> None:
        outcome["error"] = failure.getTraceback()

    d = Deferred.fromCoroutine(_loadgen(reactor, spec))
    d.addCallbacks(done, failed)
    d.addBoth(lambda _: reactor.callLater(0, reactor.stop))
    reactor.run()
    if "error" in outcome:
        print(outcome["error"], file=sys.stderr)
        return 1
    print("RESULT " + json.dumps(outcome), flush=True)
    return 0


def floorServerMain(spec: dict[str, Any]) -> int:
    """The floor: a bare TLS server that answers each length-prefixed request (whose first
    word is the size of the answer wanted) with that many bytes, behind a 4-byte length;
    one write per read, as the ENRP server batches."""
    raiseFileLimit()
    from twisted.internet import reactor  # noqa: PLC0415
    from twisted.internet.endpoints import serverFromString  # noqa: PLC0415
    from twisted.internet.protocol import Factory, Protocol  # noqa: PLC0415

    responses: dict[int, bytes] = {}

    class Answerer(Protocol):
        def __init__(self) -> None:
            self.buffer = bytearray()

        def dataReceived(self, data: bytes) -> None:
            buffer = self.buffer
            buffer += data
            offset, end, out = 0, len(buffer), []
            while end - offset >= 8:
                length, size = _TWO_WORDS.unpack_from(buffer, offset)
                if end - offset < 4 + length:
                    break
                offset += 4 + length
                response = responses.get(size)
                if response is None:
                    response = responses[size] = _LENGTH.pack(size) + bytes(size)
                out.append(response)
            del buffer[:offset]
            if out and self.transport is not None:
                self.transport.write(b"".join(out))

    # Twisted's own TCP transport and TLS factory, with the TLS-PSK creator the ENRP
    # server's listener string makes (its listener adds write paths of its own: see
    # twisted_rserpool.transport.writethrough and tlsgather).
    from twisted.protocols.tls import TLSMemoryBIOFactory  # noqa: PLC0415

    parsed: Any = serverFromString(reactor, spec["listener"])  # type: ignore[no-untyped-call]
    port = parsed.wrappedEndpoint._port
    clock: Any = reactor
    clock.listenTCP(
        port,
        TLSMemoryBIOFactory(parsed.creator, False, Factory.forProtocol(Answerer)),
        backlog=1024,
        interface=LOOPBACK,
    )
    reactor.run()
    return 0


# ------------------------------------------------------------------------------ report


def table(results: Results) -> str:
    """The Markdown table of a run."""
    s = results.settings
    lines = [
        "| measurement | ENRP server | floor (bare TLS) | ENRP ÷ floor, rate "
        "| server CPU µs per answer (ENRP / floor) | ENRP ÷ floor, CPU per answer "
        "| server busy (ENRP / floor) | load generator busy (ENRP / floor) |",
        "|---|--:|--:|--:|--:|--:|--:|--:|",
    ]
    floors = {p.connections: p for p in results.floor}
    for p in results.resolutions:
        f = floors.get(p.connections)
        if f is None or not f.rate:
            continue
        plural = "s" if p.connections != 1 else ""
        # How many times the floor's CPU an answer costs us (the goal: at most 2x).
        cpuRatio = f"{p.cpuPerResponse / f.cpuPerResponse:.1f}x" if f.cpuPerResponse else "-"
        lines.append(
            f"| handle resolutions/s, {p.connections} PU connection{plural} "
            f"| {p.rate:,.0f} | {f.rate:,.0f} | {p.rate / f.rate:.0%} "
            f"| {p.cpuPerResponse:,.0f} / {f.cpuPerResponse:,.0f} "
            f"| {cpuRatio} | {p.serverShare:.0%} / {f.serverShare:.0%} "
            f"| {p.loadgenShare:.0%} / {f.loadgenShare:.0%} |"
        )
    for p in results.registrations:
        label = {
            "register": "new registrations/s",
            "reregister": "re-registrations/s (new load)",
            "unchanged": "re-registrations/s (unchanged)",
        }[p.name]
        lines.append(
            f"| {label}, {p.connections} PE connections | {p.rate:,.0f} | | "
            f"| {p.cpuPerResponse:,.0f} | | {p.serverShare:.0%} | {p.loadgenShare:.0%} |"
        )
    h = results.held
    if h is not None:
        perSecond = h.keepAlivesAnswered / h.countedSeconds if h.countedSeconds else 0.0
        share = h.cpuSeconds / h.wallSeconds if h.wallSeconds else 0.0
        perKeepAlive = share / perSecond * 1e6 if perSecond else 0.0
        lines += [
            f"| server RSS, idle | {h.idleRss / 2**20:,.1f} MiB | | | | | | |",
            f"| server RSS, {h.registered:,} PEs on {h.registered:,} TLS connections "
            f"| {h.heldRss / 2**20:,.1f} MiB | | | | | | |",
            f"| RSS per PE (incl. its connection) | {h.rssPerPE / 1024:,.1f} KiB | | | | | | |",
            f"| keep-alive round trips/s with {h.registered:,} PEs, interval "
            f"{h.keepAliveInterval:g} s (+/- 50 %) | {perSecond:,.0f} "
            f"| | | {perKeepAlive:,.0f} | | {share:.1%} | |",
        ]
    notes = [
        "",
        f"Python {results.python}, {results.cpus} CPUs, open-file limit {results.fileLimit}. "
        f"Window {s.window} outstanding requests per connection; phases of "
        f"{s.warmup:g} s warm-up + {s.duration:g} s measured"
        + (f" (at most {s.maxRequests} responses)" if s.maxRequests else "")
        + f". Handle resolution: {s.items} of {s.poolSize} PEs (Least Used); request "
        f"{results.requestSize} bytes, response {results.responseSize} bytes of ASAP "
        "(the floor sends and answers payloads of these sizes behind a 4-byte length).",
    ]
    if h is not None:
        notes.append(
            f"Held PEs: {h.registered:,} of {h.requested:,} registered in "
            f"{h.connectSeconds:.1f} s ({h.failed} failed, "
            f"{h.requested - h.registered - h.failed:,} not attempted within the "
            f"{s.rampLimit:g} s limit on opening them); keep-alive timeout "
            f"{s.keepAliveTimeout:g} s; CPU over {h.wallSeconds:.1f} s; connections still "
            f"open after it: {h.openAfter:,}; PEs removed for an unanswered keep-alive: "
            f"{h.removedKeepAlive}; load generator RSS {h.loadgenRss / 2**20:,.0f} MiB."
        )
        if h.failures:
            notes.append(f"Connection failures (first): {h.failures[:3]}")
    bad = sum(p.bad for p in results.resolutions + results.registrations + results.floor)
    if bad:
        notes.append(f"WARNING: {bad} responses were errors or unexpected.")
    return "\n".join(lines + notes)


def profiledTwistd(output: str, argv: list[str]) -> int:
    """``twistd argv`` under cProfile with a CPU-time clock (time spent waiting for the CPU
    on a shared machine is not counted); the statistics go to ``output`` when it stops."""
    import cProfile  # noqa: PLC0415

    from twisted.internet import reactor  # noqa: PLC0415
    from twisted.scripts.twistd import run  # noqa: PLC0415

    sys.argv = ["twistd", *argv]
    profiler = cProfile.Profile(time.process_time)

    def save() -> None:
        profiler.disable()
        profiler.dump_stats(output)

    # After a signal twistd ends by re-sending it to itself: save when the reactor stops.
    reactor.addSystemEventTrigger("after", "shutdown", save)
    profiler.enable()
    run()  # type: ignore[no-untyped-call]
    return 0


def printProfile(path: str, count: int = 25) -> None:
    """The functions that took the most CPU time of their own, and the callers' view."""
    import pstats  # noqa: PLC0415

    if not os.path.exists(path):
        print(f"(no profile at {path})")
        return
    stats = pstats.Stats(path)
    print(f"\nProfile {path}: {stats.total_tt:.2f} s of CPU")  # type: ignore[attr-defined]
    stats.sort_stats("tottime").print_stats(count)
    stats.sort_stats("cumulative").print_stats(count)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0] if __doc__ else None, allow_abbrev=False
    )
    parser.add_argument("--role", choices=("loadgen", "floor-server"), help=argparse.SUPPRESS)
    parser.add_argument("--spec", help=argparse.SUPPRESS)
    parser.add_argument(
        "--quick", action="store_true", help="one round of 0.5 s phases, no held PEs (about 10 s)"
    )
    parser.add_argument("--pes", type=int, help="PEs (connections) to hold (default 10000)")
    parser.add_argument("--window", type=int, help="outstanding requests per connection (8)")
    parser.add_argument("--duration", type=float, help="measured seconds per phase (3)")
    parser.add_argument("--rounds", type=int, help="rounds of ENRP and floor phases (3)")
    parser.add_argument("--keep-alive-interval", type=float, help="seconds (5)")
    parser.add_argument(
        "--ramp-limit", type=float, help="seconds to open the held connections (75)"
    )
    parser.add_argument("--cpu-interval", type=float, help="seconds of CPU measurement (10)")
    parser.add_argument("--profile", help="profile the ENRP servers into PREFIX.throughput/.held")
    parser.add_argument("--keep", action="store_true", help="keep the run's directory")
    arguments = list(sys.argv[1:] if argv is None else argv)
    if arguments[:2] == ["--role", "profiled-twistd"]:
        # --role profiled-twistd --spec OUTPUT twistd-arguments...
        return profiledTwistd(arguments[3], arguments[4:])
    args = parser.parse_args(arguments)
    if args.role == "loadgen":
        return loadgenMain(json.loads(args.spec))
    if args.role == "floor-server":
        return floorServerMain(json.loads(args.spec))
    settings = QUICK if args.quick else Settings()
    overrides: dict[str, Any] = {
        "pes": args.pes,
        "window": args.window,
        "duration": args.duration,
        "rounds": args.rounds,
        "keepAliveInterval": args.keep_alive_interval,
        "rampLimit": args.ramp_limit,
        "cpuInterval": args.cpu_interval,
        "profile": str(Path(args.profile).resolve()) if args.profile else None,
    }
    settings = replace(settings, **{k: v for k, v in overrides.items() if v is not None})
    directory = Path(tempfile.mkdtemp(prefix="registrar-bench-"))
    started_at = time.monotonic()
    try:
        results = runBenchmark(settings, directory, lambda text: print(text, flush=True))
    except BaseException:
        print(f"(the run failed; its logs are in {directory})", file=sys.stderr)
        raise
    print()
    print(table(results))
    kept = args.keep or settings.profile is not None
    where = f"; files in {directory}" if kept else ""
    print(f"\n(run took {time.monotonic() - started_at:.0f} s{where})")
    if settings.profile is not None:
        for suffix in ("throughput", "held"):
            printProfile(f"{settings.profile}.{suffix}")
    if not kept:
        import shutil  # noqa: PLC0415

        shutil.rmtree(directory, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
