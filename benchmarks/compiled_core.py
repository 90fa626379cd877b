"""CPU per operation of the sans-IO cores that ``scripts/compile`` compiles, without I/O.

Run: ``.venv/bin/python -m benchmarks.compiled_core`` (a few seconds), or through
``benchmarks/compiled.py``, which runs it under the pure and the compiled build. Measures,
in this process, with ``time.process_time`` (best of ``--rounds``, garbage collection
paused as in timeit):

- **TCP mapping, both ends**: one ``MappingConnection`` sends DATA (``send_data``), the
  other decodes it (``receive_data``), acknowledges it (``acknowledge_through``), and the
  first reads the ACKs back; per message, one message per read (as the message service
  writes them) and up to 64 per read (streaming, at most 128 KiB), for 100 B, 1 KB and
  16 KB messages;
- **handlespace**: a handle resolution (``select`` 3 of 10 PEs, Least Used), and a
  re-registration with a new load value (``register``).

It is the part of the benchmarks/registrar.py and benchmarks/failover.py figures that
compiling can change: TLS, Twisted's reactor and the protocol adapter are not in it.
"""

from __future__ import annotations

import argparse
import gc
import random
import sys
import time
from collections.abc import Callable, Sequence
from ipaddress import IPv4Address

from twisted_rserpool.handlespace import UNLIMITED, Handlespace
from twisted_rserpool.transport.connection import MappingConnection
from twisted_rserpool.transport.events import DataReceived
from twisted_rserpool.wire.parameters import LeastUsedPolicy, PoolElementParameter, TcpTransport

POOL = b"benchmark-pool"


def cpuPerOperation(batch: Callable[[], int], rounds: int) -> float:
    """The best CPU seconds per operation over ``rounds`` calls of ``batch``."""
    best = float("inf")
    for _ in range(rounds):
        gc.disable()
        try:
            start = time.process_time()
            count = batch()
            best = min(best, (time.process_time() - start) / count)
        finally:
            gc.enable()
    return best


def mappingBatch(size: int, perRead: int, messages: int) -> Callable[[], int]:
    """``messages`` messages of ``size`` bytes through a connected pair, ``perRead`` at a
    time, the ACKs back included."""
    sender, receiver = MappingConnection(), MappingConnection()
    receiver.receive_data(sender.data_to_send(), 0.0)
    sender.receive_data(receiver.data_to_send(), 0.0)
    payload = b"x" * size

    def batch() -> int:
        for _ in range(messages // perRead):
            for _ in range(perRead):
                sender.send_data(payload)
            events = receiver.receive_data(sender.data_to_send(), 0.0)
            last = events[-1]
            assert isinstance(last, DataReceived)
            receiver.acknowledge_through(last)
            sender.receive_data(receiver.data_to_send(), 0.0)
        assert sender.unacknowledged_bytes == 0
        return messages - messages % perRead

    return batch


def element(identifier: int, load: int) -> PoolElementParameter:
    """A PE of the Least Used pool with this load."""
    address = IPv4Address(0x0A000000 + identifier)
    return PoolElementParameter(
        identifier, 1, 300, TcpTransport(3863, address), LeastUsedPolicy(load)
    )


def handlespaceBatches(operations: int) -> tuple[Callable[[], int], Callable[[], int]]:
    """Handle resolutions (3 of 10 PEs) and re-registrations with new loads."""
    rng = random.Random(1)
    handlespace = Handlespace(UNLIMITED, rng=random.Random(2))
    for identifier in range(1, 11):
        handlespace.register(POOL, element(identifier, rng.randrange(1 << 32)), now=0.0)
    updates = [element(1 + n % 10, rng.randrange(1 << 32)) for n in range(operations)]

    def select() -> int:
        for _ in range(operations):
            handlespace.select(POOL, 3)
        return operations

    def register() -> int:
        for update in updates:
            handlespace.register(POOL, update, now=1.0)
        return operations

    return select, register


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rounds", type=int, default=5, help="timed rounds (best counts)")
    parser.add_argument("--messages", type=int, default=4096, help="messages per round")
    options = parser.parse_args(argv)
    rows: list[tuple[str, float]] = []
    for size in (100, 1000, 16000):
        # Streaming: as many as fit in half the receiver's default undelivered bytes.
        for perRead in (1, min(64, 131072 // size)):
            label = "1 message per read" if perRead == 1 else f"{perRead} messages per read"
            batch = mappingBatch(size, perRead, options.messages)
            rows.append(
                (
                    f"TCP mapping, both ends, {size:,} B, {label}: CPU µs/msg",
                    cpuPerOperation(batch, options.rounds),
                )
            )
    select, register = handlespaceBatches(options.messages)
    rows.append(
        ("handlespace select 3 of 10 (LU): CPU µs", cpuPerOperation(select, options.rounds))
    )
    rows.append(
        (
            "handlespace re-registration (new load): CPU µs",
            cpuPerOperation(register, options.rounds),
        )
    )
    print("| measure | value |")
    print("|---|--:|")
    for name, seconds in rows:
        print(f"| {name} | {seconds * 1e6:.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
