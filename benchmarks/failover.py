"""Failover time and session throughput of ASAP sessions, over TLS on loopback.

Run: ``.venv/bin/python -m benchmarks.failover [--quick] [--failovers N] [--messages N]``
(``--quick``: 10 failovers of each kind and 2,000 messages per case, a few seconds).

1. **Failover time**: from a pool element's death to the echo of the first application
   message by the new pool element (the echo leaves the new pool element in the same write
   as the ACK of that message, so this is the time to the first byte acknowledged by the
   new pool element), median and p99 over N failovers, for two kinds of death beside the
   configured detection time:

   - *reset*: the pool element's connection is torn down (as when its process dies);
   - *silent*: the pool element stops reading and writing with the connection open (a hung
     process or a dead host); only the TCP mapping's heartbeat finds it (interval + timeout).

   An in-process ENRP server (TLS), three in-process pool elements (TLS with certificates)
   and a pool user; a "dead" pool element's connection is killed while the pool element
   stays registered, so the pool never runs dry.

2. **CPU per message**: N one-way application messages from a pool user to a pool
   element through a session (TLS + TCP mapping with per-message ACKs and failover
   bookkeeping), side by side with two floors over the same kind of TLS connection (the
   same endpoint strings, certificate and suites): Twisted's ``Int32StringReceiver`` at
   both ends (the message floor: a length prefix per message, one ``stringReceived`` call
   per message) and plain writes of the same bytes (the byte-stream floor). The figure is
   process CPU time (``resource.getrusage``, user + system) from the first write to the
   last byte received, divided by the messages: both ends run in this process, so it is
   both ends' CPU per message (the idle ENRP server and pool elements add nothing
   measurable). Best of 3 runs per case; wall-clock MB/s beside it. Sessions are measured
   twice: one application message per write (the RSerPool message service) and streaming
   (writes of one reactor turn merged, as TCP merges them).
"""

from __future__ import annotations

import argparse
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from twisted.internet import reactor as _reactor
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ClientEndpoint, serverFromString
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import deferLater
from twisted.protocols.basic import Int32StringReceiver
from twisted.python.failure import Failure

from twisted_rserpool.asap import AsapTimers, PoolElement, PoolUser, Session
from twisted_rserpool.endpoints import TlsClientEndpoint
from twisted_rserpool.enrp.registrar import Registrar, RegistrarConfig
from twisted_rserpool.enrp.service import ENRPServer
from twisted_rserpool.handlespace import Handlespace
from twisted_rserpool.security.authorization import AuthorizationPolicy
from twisted_rserpool.security.certificates import createSelfSignedCertificate
from twisted_rserpool.security.psk import createPskFile
from twisted_rserpool.security.ratelimit import Rate
from twisted_rserpool.security.tls import certificateClientCreator, loadCertificates
from twisted_rserpool.transport.connection import MappingConfig

reactor: Any = _reactor
POOL = b"bench"
TIMERS = AsapTimers(t1_enrp_request=2.0, t5_server_hunt=1.0, stale_cache_value=0.0)


class Echo(Protocol):
    def dataReceived(self, data: bytes) -> None:
        assert self.transport is not None
        self.transport.write(data)


def cpu() -> float:
    """CPU seconds (user + system) this process has used so far."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class Sample:
    """Wall-clock and CPU time at one instant."""

    def __init__(self) -> None:
        self.wall = time.perf_counter()
        self.cpu = cpu()


class Sink(Protocol):
    """Counts the bytes it receives; fires ``done`` at ``expected``."""

    def __init__(self, expected: int) -> None:
        self.expected = expected
        self.received = 0
        self.done: Deferred[Sample] = Deferred()

    def dataReceived(self, data: bytes) -> None:
        self.received += len(data)
        if self.received >= self.expected and not self.done.called:
            self.done.callback(Sample())


class StringSink(Int32StringReceiver):
    """Counts the length-prefixed strings it receives; fires ``done`` at ``expected``."""

    MAX_LENGTH = 1 << 20

    def __init__(self, expected: int) -> None:
        self.expected = expected
        self.received = 0
        self.done: Deferred[Sample] = Deferred()

    def stringReceived(self, string: bytes) -> None:
        self.received += 1
        if self.received >= self.expected and not self.done.called:
            self.done.callback(Sample())


class SinkFactory(Factory):
    """Builds sinks (:class:`Sink`, or ``kind``) and keeps them."""

    def __init__(self, expected: int, kind: Any = Sink) -> None:
        self.expected = expected
        self.kind = kind
        self.sinks: list[Any] = []

    def buildProtocol(self, addr: object) -> Any:
        sink = self.kind(self.expected)
        self.sinks.append(sink)
        return sink


class Run:
    """One measured transfer: ``messages`` messages between two samples."""

    def __init__(self, messages: int, size: int, started: Sample, finished: Sample) -> None:
        self.messages = messages
        self.size = size
        self.seconds = finished.wall - started.wall
        self.cpuPerMessage = (finished.cpu - started.cpu) / messages

    @property
    def megabytesPerSecond(self) -> float:
        return self.messages * self.size / 1e6 / self.seconds


class Answers(Protocol):
    def __init__(self) -> None:
        self.answers: list[bytes] = []

    def dataReceived(self, data: bytes) -> None:
        self.answers.append(data)


async def wait(condition: Any, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("benchmark step timed out")
        await deferLater(reactor, 0.001, lambda: None)


class Bench:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.psk = directory / "keys.psk"
        createPskFile(self.psk, "pe")
        self.cert, self.key = directory / "server.pem", directory / "server.key"
        createSelfSignedCertificate(self.cert, self.key)
        self.roots = loadCertificates(self.cert)
        self.elements: list[PoolElement] = []

    async def start(self, factory: Factory, count: int) -> None:
        registrar = Registrar(
            RegistrarConfig(
                0x0BE7C401,
                max_bad_pe_report=1_000_000,
                unreachable_rate=Rate(10_000.0, 10_000.0),
                request_rate=Rate(10_000.0, 10_000.0),
                identity_rate=Rate(10_000.0, 10_000.0),
                anonymous_rate=Rate(10_000.0, 10_000.0),
            ),
            Handlespace(),
            AuthorizationPolicy(),
        )
        self.server = ENRPServer(registrar, reactor)
        self.server.startService()
        endpoint = serverFromString(  # type: ignore[no-untyped-call]
            reactor,
            f"tlspsk:0:interface=127.0.0.1:pskFile={self.psk}:certificate={self.cert}"
            f":privateKey={self.key}",
        )
        self.port: Any = await endpoint.listen(self.server.factory)
        enrpPort = self.port.getHost().port
        for _ in range(count):
            element = PoolElement(
                POOL,
                factory,
                [f"tlspsk:host=127.0.0.1:port={enrpPort}:identity=pe:pskFile={self.psk}"],
                f"tlspsk:0:interface=127.0.0.1:certificate={self.cert}:privateKey={self.key}",
                timers=TIMERS,
                userMappingConfig=MappingConfig(heartbeat_interval=30.0),
            )
            element.startService()
            await element.whenRegistered()
            self.elements.append(element)
        self.enrpPort = enrpPort

    def user(self, mapping: MappingConfig) -> PoolUser:
        user = PoolUser(
            [f"tlspsk:host=127.0.0.1:port={self.enrpPort}:caCertificate={self.cert}"],
            peTrustRoots=self.roots,
            timers=TIMERS,
            sessionMappingConfig=mapping,
            unreachableInterval=0.0,
            unreachableRate=Rate(10_000.0, 10_000.0),
        )
        user.startService()
        return user

    async def stop(self) -> None:
        for element in self.elements:
            await element.stopService()
        await self.port.stopListening()
        await self.server.stopService()


def connectionOf(bench: Bench, session: Session) -> Any:
    """The pool element's side of the session's current connection."""
    assert session.poolElement is not None and session.connection is not None
    transport: Any = session.connection.transport
    local = transport.getHost().port
    for element in bench.elements:
        for connection in element.connections:
            peer: Any = connection.transport.getPeer() if connection.transport else None
            if peer is not None and peer.port == local:
                return connection
    raise LookupError("pool element side of the session not found")


async def failovers(bench: Bench, count: int, silent: bool, mapping: MappingConfig) -> list[float]:
    user = bench.user(mapping)
    client = await user.connect(POOL, Factory.forProtocol(Answers))
    assert isinstance(client, Answers) and isinstance(client.transport, Session)
    session = client.transport
    times: list[float] = []
    for number in range(count):
        session.write(b"warm-%d" % number)
        warm = len(client.answers) + 1
        await wait(lambda w=warm: len(client.answers) >= w)
        peSide = connectionOf(bench, session)
        before = len(session.failovers)
        expected = len(client.answers) + 1
        started = time.perf_counter()
        if silent:
            peSide.transport.pauseProducing()
            peSide.transport.write = lambda data: None
        else:
            peSide.close()
        session.write(b"after-%d" % number)
        await wait(lambda e=expected: len(client.answers) >= e, timeout=30)
        times.append(time.perf_counter() - started)
        assert len(session.failovers) == before + 1
        if silent:
            peSide.close()
    await user.stopService()
    return times


async def sessionThroughput(bench: Bench, messages: int, size: int, streaming: bool = False) -> Run:
    user = bench.user(MappingConfig(heartbeat_interval=30.0))
    factory = SinkFactory(messages * size + 1)
    for element in bench.elements:
        element.factory = factory
    client: Any = await user.connect(POOL, Factory.forProtocol(Protocol), streaming=streaming)
    payload = b"x" * size
    client.transport.write(payload[:1])  # builds the PE side
    await wait(lambda: bool(factory.sinks))
    started = Sample()
    for _ in range(messages):
        client.transport.write(payload)
    finished = await factory.sinks[-1].done
    await user.stopService()
    return Run(messages, size, started, finished)


async def tlsThroughput(bench: Bench, messages: int, size: int, framed: bool = False) -> Run:
    """Plain writes over TLS, or (``framed``) ``Int32StringReceiver.sendString`` at one end
    and ``stringReceived`` at the other."""
    factory = SinkFactory(messages if framed else messages * size, StringSink if framed else Sink)
    endpoint = serverFromString(  # type: ignore[no-untyped-call]
        reactor, f"tlspsk:0:interface=127.0.0.1:certificate={bench.cert}:privateKey={bench.key}"
    )
    port: Any = await endpoint.listen(factory)
    client = TlsClientEndpoint(
        TCP4ClientEndpoint(reactor, "127.0.0.1", port.getHost().port),
        certificateClientCreator("127.0.0.1", bench.roots),
    )
    sender = Int32StringReceiver if framed else Protocol
    protocol: Any = await client.connect(Factory.forProtocol(sender))
    payload = b"x" * size
    if framed:
        # Handshake done and the server's protocol built before the clock starts, as for
        # the session (whose first message builds the pool element's side).
        protocol.sendString(b"")
        factory.expected += 1
        await wait(lambda: bool(factory.sinks) and factory.sinks[-1].received >= 1)
        send = protocol.sendString
    else:
        protocol.transport.write(b"x")
        factory.expected += 1
        await wait(lambda: bool(factory.sinks) and factory.sinks[-1].received >= 1)
        send = protocol.transport.write
    started = Sample()
    for _ in range(messages):
        send(payload)
    finished = await factory.sinks[-1].done
    protocol.transport.loseConnection()
    await port.stopListening()
    return Run(messages, size, started, finished)


#: The paths measured side by side, the message floor second and the session third.
PATHS = (
    "plain Twisted TLS",
    "Int32StringReceiver over TLS",
    "ASAP session, message per write",
    "ASAP session, streaming",
)


async def measure(bench: Bench, path: str, messages: int, size: int) -> Run:
    """One run of ``path`` (one of :data:`PATHS`)."""
    if path == PATHS[0]:
        return await tlsThroughput(bench, messages, size)
    if path == PATHS[1]:
        return await tlsThroughput(bench, messages, size, framed=True)
    return await sessionThroughput(bench, messages, size, streaming=path == PATHS[3])


def best(runs: list[Run]) -> Run:
    """The run with the least CPU per message."""
    return min(runs, key=lambda run: run.cpuPerMessage)


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


async def run(options: argparse.Namespace) -> None:
    directory = Path(tempfile.mkdtemp(prefix="rserpool-bench-"))
    bench = Bench(directory)
    await bench.start(Factory.forProtocol(Echo), 3)
    out = sys.stdout
    out.write(
        f"Failover time over {options.failovers} failovers (TLS 1.3, loopback, "
        "3 PEs, in-process ENRP server)\n\n"
    )
    out.write(
        f"{'death':<8} {'detection':<34} {'configured':>10} {'median':>9} {'p99':>9} {'max':>9}\n"
    )
    reset = await failovers(bench, options.failovers, False, MappingConfig(heartbeat_interval=30.0))
    out.write(
        f"{'reset':<8} {'connection reset (TCP FIN/RST)':<34} {'-':>10} "
        f"{statistics.median(reset) * 1000:>7.1f}ms {percentile(reset, 0.99) * 1000:>7.1f}ms"
        f" {max(reset) * 1000:>7.1f}ms\n"
    )
    hb = MappingConfig(heartbeat_interval=options.heartbeat, heartbeat_timeout=options.heartbeat)
    silent = await failovers(bench, options.failovers, True, hb)
    configured = hb.heartbeat_timeout + (hb.heartbeat_interval or 0.0)
    detection = f"heartbeat {options.heartbeat:g} s + timeout {options.heartbeat:g} s"
    out.write(
        f"{'silent':<8} {detection:<34} "
        f"{configured * 1000:>8.0f}ms {statistics.median(silent) * 1000:>7.1f}ms "
        f"{percentile(silent, 0.99) * 1000:>7.1f}ms {max(silent) * 1000:>7.1f}ms\n"
    )
    out.write(
        "\n(median and p99 from the death to the new PE's answer to the first message;\n"
        " a silent PE is found between 'timeout' and 'interval + timeout' after the\n"
        " last byte it sent)\n\n"
    )

    rounds = options.rounds
    out.write(
        f"CPU per message: {options.messages} one-way messages PU -> PE over TLS 1.3, both "
        f"ends in this process, best of {rounds}\n\n"
    )
    out.write(
        f"{'size':>6} {'path':<32} {'CPU us/msg':>10} {'vs Int32':>8} {'MB/s':>8} "
        f"{'messages/s':>11}\n"
    )
    ratios: dict[int, float] = {}
    for size in options.sizes:
        # The cases take turns within each round, so that load from elsewhere hits all alike.
        runs: dict[str, list[Run]] = {name: [] for name in PATHS}
        for _ in range(rounds):
            for name in PATHS:
                runs[name].append(await measure(bench, name, options.messages, size))
        cases = [(name, best(runs[name])) for name in PATHS]
        floor = cases[1][1].cpuPerMessage
        ratios[size] = cases[2][1].cpuPerMessage / floor
        for name, result in cases:
            out.write(
                f"{size:>6} {name:<32} {result.cpuPerMessage * 1e6:>10.2f} "
                f"{result.cpuPerMessage / floor:>7.2f}x {result.megabytesPerSecond:>8.1f} "
                f"{result.messages / result.seconds:>11.0f}\n"
            )
    out.write(
        "\nSummary (goals: session <= 1.25x Int32StringReceiver's CPU, reset median < 50 ms)\n\n"
    )
    out.write(f"{'measure':<44} {'value':>9} {'goal':>8}\n")
    for size, ratio in ratios.items():
        out.write(
            f"{f'session CPU per {size} B message vs Int32':<44} {ratio:>8.2f}x "
            f"{'met' if ratio <= 1.25 else 'not met':>8}\n"
        )
    median = statistics.median(reset) * 1000
    out.write(
        f"{'failover after a reset, median':<44} {median:>7.1f}ms "
        f"{'met' if median < 50 else 'not met':>8}\n"
    )
    await bench.stop()


def main(argv: list[str] | None = None) -> None:
    """Measure and print the tables."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--failovers", type=int, default=100)
    parser.add_argument(
        "--heartbeat",
        type=float,
        default=0.2,
        help="heartbeat interval and timeout of the silent case (s)",
    )
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 1000, 16000])
    parser.add_argument("--rounds", type=int, default=3, help="runs per case (the best counts)")
    parser.add_argument(
        "--quick", action="store_true", help="10 failovers, 2,000 messages: a few seconds"
    )
    options = parser.parse_args(argv)
    if options.quick:
        options.failovers = min(options.failovers, 10)
        options.messages = min(options.messages, 2_000)
    failure: list[BaseException] = []

    def go() -> None:
        d = Deferred.fromCoroutine(run(options))

        def stop(result: object) -> None:
            if isinstance(result, Failure) and result.value is not None:
                failure.append(result.value)
            reactor.stop()

        d.addBoth(stop)

    reactor.callWhenRunning(go)
    reactor.run()
    if failure:
        raise failure[0]


if __name__ == "__main__":
    main()
