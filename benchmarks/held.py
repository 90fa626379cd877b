"""Held-PE benchmark: many pool elements, each on its own TLS-PSK connection, held by one server.

One ``twistd -n enrp`` on 127.0.0.1 with ``--keep-alive-interval`` 5 s (+/- 50 %, as RFC
5352 asks) and ``--keep-alive-timeout`` 10 s. ``--holders`` client processes (this script
re-invoked with ``--role holder``) open ``--pes`` TLS 1.3 PSK connections between them
(identity ``pe``), each registering one PE of one pool, and answer every
ASAP_ENDPOINT_KEEP_ALIVE (and TCP-mapping HEARTBEAT) their connection receives. The
script measures:

- **Registration time**: from the first connection attempt until the last PE's
  ASAP_REGISTRATION_RESPONSE (the goal: 10,000 PEs within 60 s; no connection is started
  after ``--ramp-limit``).
- **Keep-alive work**: the server's CPU seconds (every thread's ``schedstat``) over
  ``--cpu-interval`` seconds of wall time once all PEs are held, as a share of one core,
  and per keep-alive round trip (the round trips are counted by the PEs that answer them,
  so the server does nothing for the count). All of the server's work in that interval
  counts: keep-alives and their acknowledgements, TCP-mapping ACKs and heartbeats, timers.
- **Memory**: the server's RSS (``/proc/PID/status``) idle and with the PEs; per PE with
  its connection. With ``--memory`` a second run of ``--memory-pes`` PEs against a server
  under ``tracemalloc`` (1 frame) says where the Python part goes (by source line and
  grouped by layer: Twisted's TLS wrapper and TCP transport, pyOpenSSL, the TCP mapping,
  the protocol, the registrar and handlespace, timers) and counts the objects per PE by
  type; OpenSSL's own allocations (the SSL object, its record buffers and memory BIOs) are
  not Python objects: they are what RSS per PE leaves once the Python part is taken away,
  and the glibc heap in use (``mallinfo2``) is shown beside it.
- **None expired**: the server's removal counters (admin JSON, read after the PEs are gone,
  since the document lists every PE) must show no PE removed for an unanswered keep-alive
  or an expired registration, and every held connection must still be open after the CPU
  interval.

``--before DIR`` measures the server code in ``DIR`` (another checkout, first on the
server's ``PYTHONPATH``) in the same run, before this checkout's, and prints both columns
side by side. Limits that are defences are raised out of the way (see
:func:`benchmarks.registrar.enrpCommand`): the benchmark measures the work of holding PEs.
The open-file limit is raised to the hard limit (the server needs one descriptor per PE).

Run: ``python benchmarks/held.py`` (10,000 PEs, about 2 minutes per server measured) or
``--quick`` (200 PEs, a few seconds). The script prints a table and asserts nothing about
time.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import selectors
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

# After PYTHONPATH's entries: a server run with another checkout first on it (``--before``)
# imports that checkout's package, also when it runs under this script (profiled).
sys.path.insert(
    1 + len([p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]),
    str(Path(__file__).resolve().parent.parent),
)

from benchmarks.flood import environment
from benchmarks.registrar import (
    HELD_POOL,
    LOOPBACK,
    PE_IDENTITY,
    SERVER_ID,
    Child,
    Files,
    LoadRun,
    _connectMany,
    _makeClientClasses,
    _serveCounts,
    admin,
    cpuSeconds,
    enrpCommand,
    freePort,
    printProfile,
    raiseFileLimit,
    readLine,
    registration,
    resultOf,
    rssBytes,
    waitForPort,
)
from benchmarks.tracedtwistd import SNAPSHOT_SIGNAL
from twisted_rserpool.wire import asap

SCRIPT = Path(__file__).resolve()
#: The label of the floor's column (``--floor``).
FLOOR = "floor (bare Twisted TLS)"


@dataclass(frozen=True)
class Settings:
    """Sizes and durations of one run."""

    pes: int = 10_000
    holders: int = 4
    keepAliveInterval: float = 5.0
    keepAliveTimeout: float = 10.0
    #: No connection is started after this many seconds.
    rampLimit: float = 60.0
    #: Connections opening at once, over all holders.
    concurrency: int = 100
    #: Seconds between the last registration and the measurements.
    settle: float = 5.0
    cpuInterval: float = 20.0
    #: With ``memory``, a traced run of ``memoryPes`` PEs for the breakdown.
    memory: bool = False
    memoryPes: int = 2_000
    #: Run the servers under cProfile (CPU time), statistics in ``PREFIX.<server>``.
    profile: str | None = None


QUICK = Settings(
    pes=200, holders=1, concurrency=50, rampLimit=20.0, settle=1.0, cpuInterval=3.0, memoryPes=200
)


# ------------------------------------------------------------------------------ results


@dataclass
class HeldRun:
    """What one server measured while it held the PEs."""

    label: str
    requested: int
    registered: int
    failed: int
    registrationSeconds: float
    #: Server CPU seconds from the first connection to the last registration.
    registrationCpu: float
    idleRss: int
    heldRss: int
    cpuSeconds: float
    wallSeconds: float
    keepAlivesAnswered: int
    countedSeconds: float
    openAfter: int
    holderCpu: float
    removed: dict[str, int]
    keepAlivesSent: int
    unexpected: int
    failures: list[str] = field(default_factory=list)

    @property
    def rssPerPE(self) -> float:
        return (self.heldRss - self.idleRss) / self.registered if self.registered else 0.0

    @property
    def cpuPerRegistration(self) -> float:
        """Server CPU microseconds per PE registered (TLS handshake, INIT, registration,
        and the keep-alives of the PEs already there)."""
        return self.registrationCpu / self.registered * 1e6 if self.registered else 0.0

    @property
    def share(self) -> float:
        """Server CPU seconds per wall second (1.0: one core)."""
        return self.cpuSeconds / self.wallSeconds if self.wallSeconds else 0.0

    @property
    def keepAlivesPerSecond(self) -> float:
        return self.keepAlivesAnswered / self.countedSeconds if self.countedSeconds else 0.0

    @property
    def cpuPerKeepAlive(self) -> float:
        """Server CPU microseconds per keep-alive round trip."""
        rate = self.keepAlivesPerSecond
        return self.share / rate * 1e6 if rate else 0.0

    @property
    def expired(self) -> int:
        return self.removed.get("keep_alive_timeout", 0) + self.removed.get(
            "registration_expired", 0
        )


@dataclass
class MemoryBreakdown:
    """Where a traced server's memory per PE goes."""

    label: str
    pes: int
    rssPerPE: float
    pythonPerPE: float
    mallocPerPE: float
    #: (layer, bytes per PE), largest first.
    layers: list[tuple[str, float]]
    #: (file:line, bytes per PE, allocations per PE), largest first.
    lines: list[tuple[str, float, float]]
    #: (type, objects per PE, shallow bytes per PE), most bytes first.
    types: list[tuple[str, float, float]]


# ------------------------------------------------------------------------------ processes


@contextmanager
def started(
    command: list[str], name: str, directory: Path, path: str | None = None, gentle: bool = False
) -> Iterator[Child]:
    """Run ``command`` with pipes to stdin and stdout (``path`` first on its
    ``PYTHONPATH``); on leaving, kill it."""
    output = open(directory / f"{name}.out", "wb")  # noqa: SIM115
    child = Child(
        subprocess.Popen(
            command,
            cwd=directory,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=output,
            env=environment(path),
        ),
        name,
        gentle,
    )
    try:
        yield child
    finally:
        child.stop()
        output.close()


@contextmanager
def server(
    files: Files, name: str, settings: Settings, path: str | None, traced: str | None
) -> Iterator[tuple[Child, int, int]]:
    """A ``twistd -n enrp`` (under tracemalloc when ``traced`` names the snapshot prefix);
    yields it, its ASAP port and its admin port once both listeners are up."""
    port, adminPort = freePort(), freePort()
    log = files.directory / f"{name}.log"
    profile = settings.profile and f"{settings.profile}.{name}"
    command = enrpCommand(
        files, port, adminPort, settings.keepAliveInterval, settings.keepAliveTimeout, log, profile
    )
    if traced is not None:
        # A script of its own, importing nothing of this checkout: the server's code comes
        # from its PYTHONPATH (``--before``), not from the tree this script runs from.
        command = [sys.executable, str(SCRIPT.with_name("tracedtwistd.py")), traced]
        command += enrpCommand(
            files, port, adminPort, settings.keepAliveInterval, settings.keepAliveTimeout, log
        )[1:]
    with started(command, name, files.directory, path, gentle=bool(profile)) as child:
        waitForPort(port, child.process, log, 30)
        waitForPort(adminPort, child.process, log, 30)
        yield child, port, adminPort


@contextmanager
def floorServer(files: Files, name: str, settings: Settings) -> Iterator[tuple[Child, int, None]]:
    """The keep-alive floor (:func:`floorMain`) in a process of its own; yields it and its
    port once it listens."""
    port = freePort()
    spec = {
        "port": port,
        "listener": files.listener(port),
        "keepAliveInterval": settings.keepAliveInterval,
        "serverId": SERVER_ID,
    }
    command = [sys.executable, str(SCRIPT), "--role", "floor", "--spec", json.dumps(spec)]
    with started(command, name, files.directory) as child:
        waitForPort(port, child.process, files.directory / f"{name}.out", 30)
        yield child, port, None


def holderSpecs(settings: Settings, pes: int, port: int, keys: Path) -> list[dict[str, Any]]:
    """How the PEs are split over the holder processes (consecutive PE identifiers)."""
    holders = max(1, min(settings.holders, pes))
    share = math.ceil(pes / holders)
    specs = []
    for number in range(holders):
        first = number * share
        count = min(share, pes - first)
        if count > 0:
            specs.append(
                {
                    "port": port,
                    "peKeys": str(keys),
                    "first": first + 1,
                    "count": count,
                    "concurrency": max(1, settings.concurrency // holders),
                    "rampLimit": settings.rampLimit,
                }
            )
    return specs


def waitForAll(children: Sequence[Child], prefix: str, limit: float) -> list[dict[str, Any]]:
    """Each child's first ``prefix <json>`` line, within ``limit`` seconds in all."""
    answers: dict[int, dict[str, Any]] = {}
    deadline = time.monotonic() + limit
    with selectors.DefaultSelector() as selector:
        for index, child in enumerate(children):
            assert child.process.stdout is not None
            selector.register(child.process.stdout, selectors.EVENT_READ, index)
        while len(answers) < len(children):
            left = deadline - time.monotonic()
            if left <= 0:
                raise RuntimeError(f"no {prefix} from {len(children) - len(answers)} holder(s)")
            for key, _ in selector.select(left):
                line = key.fileobj.readline().decode()  # type: ignore[union-attr]
                if not line:
                    raise RuntimeError(f"holder {key.data} ended; see its .out file")
                if line.startswith(prefix + " "):
                    answers[key.data] = json.loads(line[len(prefix) + 1 :])
                    selector.unregister(key.fileobj)
    return [answers[index] for index in range(len(children))]


def counts(children: Sequence[Child]) -> tuple[int, int, float]:
    """Keep-alives answered and connections open over all holders, and when."""
    for child in children:
        assert child.process.stdin is not None
        child.process.stdin.write(b"COUNT\n")
        child.process.stdin.flush()
    answered = still = 0
    for child in children:
        assert child.process.stdout is not None
        line = readLine(child.process.stdout, 60, "COUNT")
        _, a, s = line.split()
        answered += int(a)
        still += int(s)
    return answered, still, time.monotonic()


def snapshot(child: Child, prefix: str, number: int) -> Path:
    """Make the traced server write snapshot ``number``; its path once written."""
    path = Path(f"{prefix}.{number}")
    child.process.send_signal(SNAPSHOT_SIGNAL)
    deadline = time.monotonic() + 120
    while not path.exists():
        if time.monotonic() > deadline or child.process.poll() is not None:
            raise RuntimeError(f"the traced server wrote no snapshot {path}")
        time.sleep(0.1)
    return path


def holdPEs(
    settings: Settings,
    files: Files,
    label: str,
    path: str | None,
    say: Callable[[str], None],
    pes: int | None = None,
    traced: str | None = None,
) -> tuple[HeldRun, list[Path]]:
    """One server holding ``pes`` (``settings.pes``) PEs: the measurements (and, traced,
    the snapshot files idle and held)."""
    pes = settings.pes if pes is None else pes
    name = f"enrp-{label}" + ("-traced" if traced else "")
    snapshots: list[Path] = []
    serving = (
        floorServer(files, "floor", settings)
        if label == FLOOR
        else server(files, name, settings, path, traced)
    )
    with serving as (enrp, port, adminPort):
        time.sleep(0.5)
        # Before the snapshot, which leaves memory of its own behind in the traced server.
        idleRss = rssBytes(enrp.pid)
        if traced is not None:
            snapshots.append(snapshot(enrp, traced, 0))
        specs = holderSpecs(settings, pes, port, files.clientKeys(PE_IDENTITY))
        rampCpu0 = cpuSeconds(enrp.pid)
        with ExitStack() as stack:
            holders = [
                stack.enter_context(
                    started(
                        [sys.executable, str(SCRIPT), "--role", "holder", "--spec", json.dumps(s)],
                        f"holder-{label}-{n}",
                        files.directory,
                    )
                )
                for n, s in enumerate(specs)
            ]
            ready = waitForAll(holders, "READY", settings.rampLimit + 120)
            rampCpu = cpuSeconds(enrp.pid) - rampCpu0
            registered = sum(r["registered"] for r in ready)
            say(
                f"  {label}: {registered:,} of {pes:,} PEs registered in "
                f"{max(r['seconds'] for r in ready):.1f} s"
            )
            time.sleep(settings.settle)
            heldRss = rssBytes(enrp.pid)
            if traced is not None:
                snapshots.append(snapshot(enrp, traced, 1))
            holderCpu0 = sum(cpuSeconds(h.pid) for h in holders)
            answered0, _, counted0 = counts(holders)
            wall0, cpu0 = time.monotonic(), cpuSeconds(enrp.pid)
            time.sleep(settings.cpuInterval)
            wall1, cpu1 = time.monotonic(), cpuSeconds(enrp.pid)
            answered1, still, counted1 = counts(holders)
            holderCpu = sum(cpuSeconds(h.pid) for h in holders) - holderCpu0
            finals = []
            for holder in holders:
                assert holder.process.stdin is not None
                holder.process.stdin.close()  # the end: the holders close their connections
            for holder in holders:
                assert holder.process.stdout is not None
                out = holder.process.stdout.read()
                holder.process.wait(timeout=120)
                finals.append(resultOf(out.decode(), files.directory / f"{holder.name}.out"))
        time.sleep(1.0)
        counters = admin(adminPort)["counters"] if adminPort is not None else {}
    removed = {
        key[len("removed_") :]: value
        for key, value in counters.items()
        if key.startswith("removed_") and value and key != "removed_connection_lost"
    }
    result = HeldRun(
        label=label,
        requested=pes,
        registered=registered,
        failed=sum(r["failed"] for r in ready),
        registrationSeconds=max(r["seconds"] for r in ready),
        registrationCpu=rampCpu,
        idleRss=idleRss,
        heldRss=heldRss,
        cpuSeconds=cpu1 - cpu0,
        wallSeconds=wall1 - wall0,
        keepAlivesAnswered=answered1 - answered0,
        countedSeconds=counted1 - counted0,
        openAfter=still,
        holderCpu=holderCpu,
        removed=removed,
        keepAlivesSent=counters.get("keep_alives_sent", 0),
        unexpected=sum(f.get("unexpected", 0) for f in finals),
        failures=[f for r in ready for f in r["failures"]][:3],
    )
    return result, snapshots


# ------------------------------------------------------------------------------ memory

#: Source paths (a part of the file name) and the layer they belong to, first match wins.
LAYERS = (
    ("twisted/protocols/tls.py", "Twisted TLS wrapper (TLSMemoryBIOProtocol)"),
    ("OpenSSL/", "pyOpenSSL (Connection, BIO handles)"),
    ("twisted/internet/tcp.py", "Twisted TCP transport"),
    ("twisted/internet/abstract.py", "Twisted TCP transport"),
    ("twisted/internet/base.py", "Twisted reactor (DelayedCalls)"),
    ("twisted/internet/epollreactor.py", "Twisted reactor (DelayedCalls)"),
    ("twisted_rserpool/transport/connection.py", "TCP mapping (MappingConnection)"),
    ("twisted_rserpool/wire/tcpmapping.py", "TCP mapping (chunk codec)"),
    ("twisted_rserpool/transport/", "RSerPool protocol (transport)"),
    ("twisted_rserpool/deadline.py", "timers (deadline queue)"),
    ("twisted_rserpool/enrp/", "registrar (connections, PEs)"),
    ("twisted_rserpool/handlespace/", "handlespace (PE entries)"),
    ("twisted_rserpool/wire/", "ASAP messages and parameters"),
    ("twisted_rserpool/security/", "security context"),
    ("twisted/logger/", "logging"),
    ("twisted/", "Twisted, other"),
)


def layerOf(filename: str) -> str:
    for part, layer in LAYERS:
        if part in filename:
            return layer
    return "other"


def breakdown(label: str, run: HeldRun, snapshots: list[Path]) -> MemoryBreakdown:
    """Per-PE differences between the idle and the held snapshot."""
    idle, held = (tracemalloc.Snapshot.load(f"{p}.trace") for p in snapshots)
    idleCensus, heldCensus = (json.loads(Path(f"{p}.census").read_text()) for p in snapshots)
    pes = max(1, run.registered)
    lines = []
    layers: Counter[str] = Counter()
    python = 0
    for stat in held.compare_to(idle, "lineno"):
        frame = stat.traceback[0]
        python += stat.size_diff
        layers[layerOf(frame.filename)] += stat.size_diff
        lines.append(
            (
                f"{shortName(frame.filename)}:{frame.lineno}",
                stat.size_diff / pes,
                stat.count_diff / pes,
            )
        )
    lines.sort(key=lambda line: -line[1])
    types = []
    for kind, count in heldCensus["census"].items():
        more = count - idleCensus["census"].get(kind, 0)
        size = heldCensus["sizes"][kind] - idleCensus["sizes"].get(kind, 0)
        if more > 0:
            types.append((kind, more / pes, size / pes))
    types.sort(key=lambda t: -t[2])
    return MemoryBreakdown(
        label=label,
        pes=run.registered,
        rssPerPE=run.rssPerPE,
        pythonPerPE=python / pes,
        mallocPerPE=(heldCensus["malloc"] - idleCensus["malloc"]) / pes,
        layers=sorted(((k, v / pes) for k, v in layers.items()), key=lambda kv: -kv[1]),
        lines=lines[:15],
        types=types[:15],
    )


def shortName(filename: str) -> str:
    for marker in ("site-packages/", "twisted_rserpool/"):
        if marker in filename:
            start = filename.index(marker)
            return filename[start + (len(marker) if marker == "site-packages/" else 0) :]
    return filename


# ------------------------------------------------------------------------------ holder


def holderMain(spec: dict[str, Any]) -> int:
    """A holder process: open ``count`` connections, register PE ``first + i`` on the i-th,
    print ``READY <json>``, answer keep-alives and ``COUNT`` lines until stdin ends, close
    everything, print ``RESULT <json>``."""
    raiseFileLimit()
    from twisted.internet import reactor  # noqa: PLC0415
    from twisted.internet.defer import Deferred  # noqa: PLC0415
    from twisted.internet.endpoints import clientFromString  # noqa: PLC0415

    MappingClient, _ = _makeClientClasses()
    run = LoadRun(1)
    failures: list[str] = []
    outcome: dict[str, Any] = {}

    async def register(client: Any, index: int) -> None:
        identifier = spec["first"] + index
        answer = await client.call(registration(HELD_POOL, identifier))
        if answer[:1] != b"\x03" or answer[1] & 1:
            raise RuntimeError(f"registration refused: {asap.decode(answer)}")
        client.pes[HELD_POOL] = [identifier]

    async def hold() -> None:
        endpoint = clientFromString(  # type: ignore[no-untyped-call]
            reactor,
            f"tlspsk:host={LOOPBACK}:port={spec['port']}:identity={PE_IDENTITY}"
            f":pskFile={spec['peKeys']}",
        )
        begun = time.monotonic()
        held = await _connectMany(
            reactor, endpoint, lambda: MappingClient(run), spec["count"],
            spec["concurrency"], register, failures, begun + spec["rampLimit"],
        )  # fmt: skip
        ready = {
            "registered": len(held),
            "failed": len(failures),
            "seconds": time.monotonic() - begun,
            "failures": [f for f in failures if f][:3],
        }
        print("READY " + json.dumps(ready), flush=True)
        try:
            await _serveCounts(reactor, run, held)
        finally:
            for client in held:
                client.close()
        outcome.update(keepAlives=run.keepAlives, unexpected=run.unexpected)

    def failed(failure: Any) -> None:
        outcome["error"] = failure.getTraceback()

    d = Deferred.fromCoroutine(hold())
    d.addErrback(failed)
    d.addBoth(lambda _: reactor.callLater(0.5, reactor.stop))
    reactor.run()
    if "error" in outcome:
        print(outcome["error"], file=sys.stderr)
        return 1
    print("RESULT " + json.dumps(outcome), flush=True)
    return 0


# ------------------------------------------------------------------------------ the floor


def floorMain(spec: dict[str, Any]) -> int:
    """The keep-alive floor: Twisted's own TCP transport and ``TLSMemoryBIOFactory`` (the
    same TLS-PSK creator as the ENRP server's) doing what the ENRP server does on the wire
    for held PEs, with the least code: INIT answered with INIT, each ASAP_REGISTRATION with
    an ASAP_REGISTRATION_RESPONSE, every DATA chunk acknowledged in the read's one write,
    and to each PE an ASAP_ENDPOINT_KEEP_ALIVE (bytes made at registration) every
    interval +/- 50 %, from one timer (a heap of deadlines drained on a 1/128 s grid).
    It keeps no handlespace, no limits, no keep-alive timeout: a floor, not a server."""
    import heapq  # noqa: PLC0415
    import random  # noqa: PLC0415
    import struct  # noqa: PLC0415

    raiseFileLimit()
    from twisted.internet import reactor  # noqa: PLC0415
    from twisted.internet.endpoints import serverFromString  # noqa: PLC0415
    from twisted.internet.protocol import Factory, Protocol  # noqa: PLC0415
    from twisted.protocols.tls import TLSMemoryBIOFactory  # noqa: PLC0415

    chunk = struct.Struct("!BBH")
    data = struct.Struct("!BBHIHHI")
    ack = struct.Struct("!BBHI")
    interval = float(spec["keepAliveInterval"])
    grid = 1 / 128
    due: list[tuple[float, int, Any]] = []
    timer: list[Any] = [None]
    clock: Any = reactor

    def arm() -> None:
        if due and timer[0] is None:
            when = math.ceil(due[0][0] / grid) * grid
            timer[0] = clock.callLater(max(0.0, when - clock.seconds()), fire)

    def fire() -> None:
        timer[0] = None
        now = clock.seconds()
        while due and due[0][0] <= now:
            _, number, element = heapq.heappop(due)
            if element.transport is not None and not element.closed:
                element.send(element.keepAlive)
                heapq.heappush(due, (now + interval * random.uniform(0.5, 1.5), number, element))
        arm()

    class Element(Protocol):
        numbers = 0

        def __init__(self) -> None:
            self.buffer = bytearray()
            self.tsn = 0
            self.keepAlive = b""
            self.closed = False

        def frame(self, message: bytes) -> bytes:
            length = 16 + len(message)
            header = data.pack(0, 0, length, self.tsn, 0, self.tsn & 0xFFFF, 11)
            self.tsn = (self.tsn + 1) & 0xFFFFFFFF
            return header + message + bytes(-length % 4)

        def send(self, message: bytes) -> None:
            assert self.transport is not None
            self.transport.write(self.frame(message))

        def connectionLost(self, reason: object = None) -> None:
            self.closed = True

        def dataReceived(self, received: bytes) -> None:
            buffer = self.buffer
            buffer += received
            out: list[bytes] = []
            offset, end = 0, len(buffer)
            while end - offset >= 4:
                kind, _, length = chunk.unpack_from(buffer, offset)
                padded = (length + 3) & ~3
                if end - offset < padded:
                    break
                if kind == 0:  # DATA, every optional word present (the holders' INIT)
                    (tsn,) = struct.unpack_from("!I", buffer, offset + 4)
                    out.append(ack.pack(3, 0, 8, tsn))
                    if buffer[offset + 16] == asap.AsapType.REGISTRATION:
                        out.append(
                            self.frame(self.register(bytes(buffer[offset + 16 : offset + length])))
                        )
                elif kind == 1:  # INIT: ours asks for every word too
                    out.append(bytes((1, 0, 0, 4)))
                offset += padded
            del buffer[:offset]
            if out and self.transport is not None:
                self.transport.write(b"".join(out))

        def register(self, message: bytes) -> bytes:
            request = asap.decode(message)
            assert isinstance(request, asap.Registration)
            handle, identifier = request.pool_handle, request.pool_element.pe_identifier
            self.keepAlive = asap.EndpointKeepAlive(
                spec["serverId"], handle, pe_identifier=identifier
            ).encode()
            Element.numbers += 1
            heapq.heappush(
                due, (clock.seconds() + interval * random.uniform(0.5, 1.5), Element.numbers, self)
            )
            arm()
            return asap.RegistrationResponse(handle, identifier).encode()

    parsed: Any = serverFromString(reactor, spec["listener"])  # type: ignore[no-untyped-call]
    clock.listenTCP(
        spec["port"],
        TLSMemoryBIOFactory(parsed.creator, False, Factory.forProtocol(Element)),
        backlog=1024,
        interface=LOOPBACK,
    )
    clock.run()
    return 0


# ------------------------------------------------------------------------------ report


def table(runs: Sequence[HeldRun], settings: Settings) -> str:
    """Markdown: one column per measured server."""
    header = "| measurement | " + " | ".join(r.label for r in runs) + " |"
    lines = [header, "|---|" + "--:|" * len(runs)]

    def row(name: str, cell: Callable[[HeldRun], str]) -> None:
        lines.append(f"| {name} | " + " | ".join(cell(r) for r in runs) + " |")

    row("PEs registered (each on its own TLS-PSK connection)", lambda r: f"{r.registered:,}")
    row("registration time, all PEs", lambda r: f"{r.registrationSeconds:.1f} s")
    row(
        "server CPU per PE registered (handshake, INIT, registration)",
        lambda r: f"{r.cpuPerRegistration:,.0f} µs",
    )
    row("server RSS, idle", lambda r: f"{r.idleRss / 2**20:.1f} MiB")
    row("server RSS, PEs held", lambda r: f"{r.heldRss / 2**20:.1f} MiB")
    row("RSS per PE (connection included)", lambda r: f"{r.rssPerPE / 1024:.1f} KiB")
    row("keep-alive round trips/s", lambda r: f"{r.keepAlivesPerSecond:,.0f}")
    row("server CPU, share of one core", lambda r: f"{r.share:.1%}")
    row("server CPU per keep-alive round trip", lambda r: f"{r.cpuPerKeepAlive:,.0f} µs")
    row("holders' CPU per keep-alive round trip", holderCost)
    row("PEs expired (keep-alive timeout, registration life)", lambda r: f"{r.expired}")
    row("connections open after the CPU interval", lambda r: f"{r.openAfter:,}")
    notes = [
        "",
        f"Python {platform.python_version()}, {os.cpu_count()} CPUs (shared), open-file limit "
        f"{raiseFileLimit()}. Keep-alive interval {settings.keepAliveInterval:g} s (+/- 50 %), "
        f"timeout {settings.keepAliveTimeout:g} s; {settings.holders} holder process(es), "
        f"{settings.concurrency} connections opening at once; CPU over "
        f"{settings.cpuInterval:g} s after {settings.settle:g} s settling.",
    ]
    for r in runs:
        extra = []
        if r.failed or r.registered < r.requested:
            extra.append(f"{r.failed} failed, {r.requested - r.registered - r.failed} not tried")
        if r.unexpected:
            extra.append(f"{r.unexpected} unexpected messages at the PEs")
        if r.removed:
            extra.append(f"removed: {r.removed}")
        if r.failures:
            extra.append(f"first failures: {r.failures}")
        if extra:
            notes.append(f"{r.label}: " + "; ".join(extra) + ".")
    return "\n".join(lines + notes)


def holderCost(run: HeldRun) -> str:
    rate = run.keepAlivesPerSecond
    if not rate or not run.wallSeconds:
        return "-"
    return f"{run.holderCpu / run.wallSeconds / rate * 1e6:,.0f} µs"


def memoryTable(breakdowns: Sequence[MemoryBreakdown]) -> str:
    """Markdown: where the memory per PE goes, per measured server."""
    out = []
    for b in breakdowns:
        rest = b.rssPerPE - b.pythonPerPE
        out += [
            f"\nWhere the memory goes ({b.label}, {b.pes:,} PEs, server under tracemalloc)\n",
            "| part | per PE |",
            "|---|--:|",
            f"| RSS (tracemalloc's own bookkeeping included) | {b.rssPerPE / 1024:.1f} KiB |",
            f"| Python objects (tracemalloc) | {b.pythonPerPE / 1024:.1f} KiB |",
        ]
        out += [f"| - {name} | {size / 1024:.2f} KiB |" for name, size in b.layers if size > 64]
        out += [
            f"| outside Python's view (OpenSSL, allocator and tracing overhead) "
            f"| {rest / 1024:.1f} KiB |",
            f"| glibc heap in use (mallinfo2; OpenSSL and large Python blocks) "
            f"| {b.mallocPerPE / 1024:.1f} KiB |",
            "",
            "| source line | bytes per PE | allocations per PE |",
            "|---|--:|--:|",
        ]
        out += [f"| {where} | {size:,.0f} | {count:.1f} |" for where, size, count in b.lines]
        out += ["", "| object type (gc-tracked) | per PE | shallow bytes per PE |", "|---|--:|--:|"]
        out += [f"| {kind} | {count:.2f} | {size:,.0f} |" for kind, count, size in b.types]
    return "\n".join(out)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0] if __doc__ else None, allow_abbrev=False
    )
    parser.add_argument("--role", choices=("holder", "floor"), help=argparse.SUPPRESS)
    parser.add_argument("--spec", help=argparse.SUPPRESS)
    parser.add_argument("--quick", action="store_true", help="200 PEs, a few seconds")
    parser.add_argument("--pes", type=int, help="PEs to hold, one connection each (10000)")
    parser.add_argument("--holders", type=int, help="client processes (4)")
    parser.add_argument("--ramp-limit", type=float, help="seconds to open connections (60)")
    parser.add_argument("--cpu-interval", type=float, help="seconds of CPU measurement (20)")
    parser.add_argument("--keep-alive-interval", type=float, help="seconds (5)")
    parser.add_argument("--memory", action="store_true", help="add a traced run for the breakdown")
    parser.add_argument("--memory-pes", type=int, help="PEs in the traced run (2000)")
    parser.add_argument("--before", help="also measure the server code in this checkout, first")
    parser.add_argument("--after", help="measure the server code in this checkout, not ours")
    parser.add_argument(
        "--floor",
        action="store_true",
        help="also measure the floor: bare Twisted TLS-PSK doing the same wire exchange",
    )
    parser.add_argument("--profile", help="profile the servers (cProfile) into PREFIX.<name>")
    parser.add_argument("--keep", action="store_true", help="keep the run's directory")
    arguments = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(arguments)
    if args.role == "holder":
        return holderMain(json.loads(args.spec))
    if args.role == "floor":
        return floorMain(json.loads(args.spec))
    settings = QUICK if args.quick else Settings()
    overrides: dict[str, Any] = {
        "pes": args.pes,
        "holders": args.holders,
        "rampLimit": args.ramp_limit,
        "cpuInterval": args.cpu_interval,
        "keepAliveInterval": args.keep_alive_interval,
        "memoryPes": args.memory_pes,
        "memory": args.memory or None,
        "profile": str(Path(args.profile).resolve()) if args.profile else None,
    }
    settings = replace(settings, **{k: v for k, v in overrides.items() if v is not None})
    raiseFileLimit()
    directory = Path(tempfile.mkdtemp(prefix="held-bench-"))
    files = Files(directory)
    files.create()

    def say(text: str) -> None:
        print(text, flush=True)

    servers: list[tuple[str, str | None]] = []
    if args.before:
        servers.append((f"before ({Path(args.before).name})", str(Path(args.before).resolve())))
    if args.after:
        servers.append((f"after ({Path(args.after).name})", str(Path(args.after).resolve())))
    else:
        servers.append(("this checkout" if args.before else "ENRP server", None))
    if args.floor:
        servers.append((FLOOR, None))
    begun = time.monotonic()
    runs: list[HeldRun] = []
    breakdowns: list[MemoryBreakdown] = []
    try:
        for label, path in servers:
            say(f"{label}: holding {settings.pes:,} PEs ({directory})")
            runs.append(holdPEs(settings, files, label, path, say)[0])
            if settings.memory:
                prefix = str(directory / f"snapshot-{len(runs)}")
                traced, snapshots = holdPEs(
                    settings, files, label, path, say, settings.memoryPes, prefix
                )
                breakdowns.append(breakdown(label, traced, snapshots))
    except BaseException:
        print(f"(the run failed; its logs are in {directory})", file=sys.stderr)
        raise
    print()
    print(table(runs, settings))
    if breakdowns:
        print(memoryTable(breakdowns))
    if settings.profile is not None:
        profiled = Path(settings.profile)
        for statistics in sorted(profiled.parent.glob(profiled.name + ".*")):
            printProfile(str(statistics))
    where = f"; files in {directory}" if args.keep else ""
    print(f"\n(run took {time.monotonic() - begun:.0f} s{where})")
    if not args.keep:
        import shutil  # noqa: PLC0415

        shutil.rmtree(directory, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
