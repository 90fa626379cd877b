"""The ENRP server's own work per operation, in process: no TLS, no sockets, no reactor.

Run: ``.venv/bin/python -m benchmarks.server_inprocess`` (about 20 s) or ``--quick``;
``--before DIR`` also measures the package of another checkout (in a subprocess with
``DIR`` first on its path) and prints both columns. The server is the real adapter and
core (``ENRPServer``, ``ASAPServerProtocol``, ``Registrar``, the TCP mapping), each
connection over a ``StringTransport`` on a ``Clock``, fed the bytes a pool user or pool
element sends (its ACKs of the server's DATA in the same read); the figures are the
CPU time (``time.process_time``, best of ``--rounds``, garbage collection paused) of the
server's calls only: ``dataReceived`` and, for keep-alives, the clock's advance that
fires the server's timer.

- **handle resolution, 1 per read / 8 per read**: an ASAP_HANDLE_RESOLUTION for 3 of 10
  PEs (Least Used), as ``benchmarks/registrar.py`` sends it;
- **re-registration (unchanged)**: a PE's ASAP_REGISTRATION with the content it has;
- **keep-alive round trip**: ``--pes`` PEs, each on its own connection, keep-alive
  interval 5 s; per keep-alive, the server's timer sending it and the read of the PE's
  answer (the ACK of the keep-alive and the ASAP_ENDPOINT_KEEP_ALIVE_ACK).

This is the part of ``registrar.py``'s and ``held.py``'s figures that is ours: beside them,
the floors there are Twisted's TLS and reactor alone.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import random
import struct
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any

SERVER_ID = 0x00B00001
POOL = b"resolved-pool"
HELD_POOL = b"held-pool"
_ACK = struct.Struct("!BBHI")
_CHUNK = struct.Struct("!BBH")
_TSN = struct.Struct("!I")


def cpuPerOperation(batch: Callable[[], tuple[int, float]], rounds: int) -> float:
    """The best CPU seconds per operation over ``rounds`` calls of ``batch``, which returns
    its operations and the CPU seconds of the server's part."""
    best = float("inf")
    for _ in range(rounds):
        gc.disable()
        try:
            count, seconds = batch()
        finally:
            gc.enable()
        best = min(best, seconds / count)
    return best


class Bench:
    """One ENRP server on a Clock, and connections to it over StringTransports."""

    def __init__(self) -> None:
        from twisted.internet.task import Clock  # noqa: PLC0415

        from twisted_rserpool.enrp.registrar import Registrar, RegistrarConfig  # noqa: PLC0415
        from twisted_rserpool.enrp.service import ENRPServer  # noqa: PLC0415
        from twisted_rserpool.handlespace import Handlespace  # noqa: PLC0415
        from twisted_rserpool.security.authorization import AuthorizationPolicy  # noqa: PLC0415
        from twisted_rserpool.security.ratelimit import Rate  # noqa: PLC0415

        unlimited = Rate(1e9, 1e9)
        config = RegistrarConfig(
            SERVER_ID,
            secure=False,
            keep_alive_interval=5.0,
            keep_alive_timeout=10.0,
            request_rate=unlimited,
            identity_rate=unlimited,
            anonymous_rate=unlimited,
            keep_alive_rate=unlimited,
        )
        self.clock = Clock()
        registrar = Registrar(
            config, Handlespace(rng=random.Random(1)), AuthorizationPolicy(), rng=random.Random(2)
        )
        self.server = ENRPServer(registrar, self.clock)
        self.server.startService()
        self.ports = iter(range(20000, 65000))
        #: Connections written to since last looked at.
        self.written: dict[Any, None] = {}

    def connect(self) -> Any:
        """A connection whose INIT the server has answered."""
        from twisted.internet.address import IPv4Address as Address  # noqa: PLC0415
        from twisted.internet.testing import StringTransport  # noqa: PLC0415

        from twisted_rserpool.wire.tcpmapping import ChunkEncoder  # noqa: PLC0415

        bench = self

        class Transport(StringTransport):
            def write(self, data: bytes) -> None:
                super().write(data)  # type: ignore[no-untyped-call]
                bench.written[self] = None

        transport: Any = Transport(peerAddress=Address("TCP", "127.0.0.1", next(self.ports)))  # type: ignore[no-untyped-call]
        protocol: Any = self.server.factory.buildProtocol(transport.getPeer())
        transport.protocol = protocol
        protocol.makeConnection(transport)
        transport.encoder = ChunkEncoder()
        protocol.dataReceived(transport.encoder.send_init())
        transport.clear()
        self.written.pop(transport, None)
        transport.answered = 0
        return transport

    @staticmethod
    def data(transport: Any, message: bytes) -> bytes:
        from twisted_rserpool.wire.tcpmapping import ASAP_PPID  # noqa: PLC0415

        data: bytes = transport.encoder.send_data(message, ppid=ASAP_PPID)
        return data

    @staticmethod
    def acks(output: bytes) -> tuple[bytes, list[bytes]]:
        """ACKs for every DATA chunk in ``output``, and the messages they carried."""
        acks, messages, offset = [], [], 0
        while offset < len(output):
            kind, _, length = _CHUNK.unpack_from(output, offset)
            if kind == 0:
                (tsn,) = _TSN.unpack_from(output, offset + 4)
                acks.append(_ACK.pack(3, 0, 8, tsn))
                messages.append(output[offset + 16 : offset + length])
            offset += (length + 3) & ~3
        return b"".join(acks), messages


def registration(pool: bytes, identifier: int, load: int = 0) -> bytes:
    from twisted_rserpool.wire import asap  # noqa: PLC0415
    from twisted_rserpool.wire.parameters import (  # noqa: PLC0415
        LeastUsedPolicy,
        PoolElementParameter,
        TcpTransport,
    )

    # As benchmarks/registrar.py: the wildcard address ("the address I come from") and a
    # life the server grants as asked.
    element = PoolElementParameter(
        identifier,
        0,
        3600,
        TcpTransport(1024 + identifier % 60000, IPv4Address("0.0.0.0")),
        LeastUsedPolicy(load),
    )
    return asap.Registration(pool, element).encode()


def requestBatch(
    bench: Bench, message: bytes, perRead: int, operations: int
) -> Callable[[], tuple[int, float]]:
    """``operations`` requests of ``message`` on one connection, ``perRead`` per read, each
    read also carrying the ACKs of the answers to the read before."""
    transport = bench.connect()
    protocol = transport.protocol

    def batch() -> tuple[int, float]:
        reads = []
        for _ in range(operations // perRead):
            reads.append(b"".join(bench.data(transport, message) for _ in range(perRead)))
        seconds, acks = 0.0, b""
        for read in reads:
            start = time.process_time()
            protocol.dataReceived(acks + read)
            seconds += time.process_time() - start
            acks, messages = bench.acks(transport.value())
            transport.clear()
            if len(messages) != perRead:
                raise RuntimeError(f"{len(messages)} answers to {perRead} requests")
        protocol.dataReceived(acks)
        transport.clear()
        return operations // perRead * perRead, seconds

    return batch


def keepAliveBatch(bench: Bench, pes: int, seconds: float) -> Callable[[], tuple[int, float]]:
    """``pes`` PEs held; over ``seconds`` of the clock, every keep-alive answered."""
    from twisted_rserpool.wire import asap  # noqa: PLC0415

    transports = []
    for number in range(pes):
        transport = bench.connect()
        transport.pe = 1_000_000 + number
        transport.protocol.dataReceived(
            bench.data(transport, registration(HELD_POOL, transport.pe))
        )
        acks, messages = bench.acks(transport.value())
        assert messages and messages[0][:1] == b"\x03", messages
        transport.clear()
        transport.protocol.dataReceived(acks)
        transports.append(transport)
    bench.written.clear()
    step = 1 / 64

    def batch() -> tuple[int, float]:
        answered, cpu = 0, 0.0
        for _ in range(round(seconds / step)):
            start = time.process_time()
            bench.clock.advance(step)
            cpu += time.process_time() - start
            written, bench.written = bench.written, {}
            for transport in written:
                acks, messages = bench.acks(transport.value())
                transport.clear()
                keepAlives = [asap.decode(m) for m in messages if m[:1] == b"\x07"]
                answers = b"".join(
                    bench.data(
                        transport,
                        asap.EndpointKeepAliveAck(k.pool_handle, k.pe_identifier).encode(),
                    )
                    for k in keepAlives
                    if isinstance(k, asap.EndpointKeepAlive) and k.pe_identifier is not None
                )
                if not (acks or answers):
                    continue  # only the server's ACK of an answer: a PE sends nothing back
                answered += len(answers) > 0
                start = time.process_time()
                transport.protocol.dataReceived(acks + answers)
                cpu += time.process_time() - start
        bench.written.clear()
        if not answered:
            raise RuntimeError("no keep-alive in the interval")
        return answered, cpu

    return batch


def measure(quick: bool, rounds: int, pes: int) -> dict[str, float]:
    """CPU µs per operation, by name."""
    from twisted_rserpool.wire import asap  # noqa: PLC0415

    bench = Bench()
    setup = bench.connect()
    for identifier in range(10):
        setup.protocol.dataReceived(
            bench.data(setup, registration(POOL, 100 + identifier, identifier))
        )
    operations = 2_000 if quick else 20_000
    resolution = asap.HandleResolution(POOL, items=3).encode()
    results = {
        "handle resolution, 1 per read": cpuPerOperation(
            requestBatch(bench, resolution, 1, operations), rounds
        ),
        "handle resolution, 8 per read": cpuPerOperation(
            requestBatch(bench, resolution, 8, operations), rounds
        ),
        "re-registration (unchanged), 1 per read": cpuPerOperation(
            requestBatch(bench, registration(POOL, 100), 1, operations // 4), rounds
        ),
        "keep-alive round trip (timer and answer)": cpuPerOperation(
            keepAliveBatch(bench, pes // 10 if quick else pes, 10.0), max(1, rounds // 2)
        ),
    }
    return {name: value * 1e6 for name, value in results.items()}


def table(columns: dict[str, dict[str, float]]) -> str:
    names = list(columns)
    lines = [
        "| server CPU µs per operation | " + " | ".join(names) + " |",
        "|---|" + "--:|" * len(names),
    ]
    for operation in next(iter(columns.values())):
        cells = " | ".join(f"{columns[name][operation]:.1f}" for name in names)
        lines.append(f"| {operation} | {cells} |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="fewer operations and PEs")
    parser.add_argument("--rounds", type=int, default=5, help="best of (5)")
    parser.add_argument("--pes", type=int, default=2000, help="PEs held for keep-alives (2000)")
    parser.add_argument("--before", help="also measure the package in this checkout")
    parser.add_argument("--json", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.json:
        print(json.dumps(measure(args.quick, args.rounds, args.pes)))
        return 0
    columns: dict[str, dict[str, float]] = {}
    runs = [("this checkout", None)] if args.before is None else [
        (f"before ({Path(args.before).name})", str(Path(args.before).resolve())),
        ("this checkout", None),
    ]  # fmt: skip
    given = list(sys.argv[1:] if argv is None else argv)
    passed = [
        a for i, a in enumerate(given) if a != "--before" and given[i - 1 : i] != ["--before"]
    ]
    for name, path in runs:
        # This script in a child whose package comes from the measured checkout (first on
        # its path; the script's own directory holds no package).
        root = path or str(Path(__file__).resolve().parent.parent)
        command = [sys.executable, str(Path(__file__).resolve()), *passed, "--json"]
        environment = {**os.environ, "PYTHONPATH": root}
        output = subprocess.run(
            command, env=environment, capture_output=True, text=True, check=True
        ).stdout
        columns[name] = json.loads(output.splitlines()[-1])
    print(table(columns))
    print(
        f"\nPython {sys.version.split()[0]}; best of {args.rounds}; "
        f"{'quick' if args.quick else 'full'} run; no TLS, sockets or reactor."
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
