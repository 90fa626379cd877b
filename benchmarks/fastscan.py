"""CPU per chunk of the TCP mapping's fast path: the DATA scan and the ACK runs, sans IO.

Run: ``.venv/bin/python -m benchmarks.fastscan [--batch N] [--rounds N] [--repeat N]``.
Prints process CPU time (``time.process_time``, best of ``--repeat``) per chunk for:

- ``scan``: :meth:`ChunkDecoder.read_chunks` over reads of ``--batch`` DATA chunks each (the
  receiver's decoder pass: every chunk checked, its ``DataReceived`` built), for the full
  format with 100 B and 1 KB messages, the bare format, messages of varying sizes, and
  ordered messages on four streams mixed with unordered ones; and reads of one chunk;
- ``ack build``: :func:`ack_chunks` for a run of ``--batch`` ACKs, with and without TSNs;
- ``ack scan``: :meth:`ChunkDecoder.read_chunks` over a read of ``--batch`` ACKs of as many
  DATA chunks outstanding (the sender recognising them as one run);
- ``connection``: :meth:`MappingConnection.receive_data` of a read of ``--batch`` DATA
  chunks, ``acknowledge_through`` and ``data_to_send`` (the receiver's whole mapping).

To compare two trees, run each with ``PYTHONPATH`` set to it, alternating.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable

from twisted_rserpool.transport.connection import MappingConnection
from twisted_rserpool.transport.events import DataReceived
from twisted_rserpool.wire.fastpath import ack_chunks
from twisted_rserpool.wire.tcpmapping import ChunkDecoder, ChunkEncoder, DataFormat


def _reads(
    fmt: DataFormat, batch: int, rounds: int, sizes: list[int], streams: int = 1
) -> tuple[bytes, list[bytes]]:
    """The peer's INIT and ``rounds`` reads of ``batch`` DATA chunks each."""
    encoder = ChunkEncoder(fmt)
    init = encoder.send_init()
    reads = []
    number = 0
    for _ in range(rounds):
        parts: list[bytes] = []
        for _ in range(batch):
            size = sizes[number % len(sizes)]
            stream = number % streams
            encoder.append_data(
                parts,
                bytes(size),
                7 if fmt.has_ppid else 0,
                stream if fmt.has_stream else 0,
                streams > 1 and number % 5 == 0,
            )
            number += 1
        reads.append(b"".join(parts))
    return init, reads


def _best(function: Callable[[], int], repeat: int) -> float:
    """Microseconds of CPU per unit (``function`` returns how many units it did)."""
    best = float("inf")
    for _ in range(repeat):
        started = time.process_time()
        units = function()
        best = min(best, (time.process_time() - started) / units)
    return best * 1e6


def main(argv: list[str] | None = None) -> None:
    """Measure and write one line per case."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--batch", type=int, default=100, help="chunks per read")
    parser.add_argument("--rounds", type=int, default=200, help="reads per measurement")
    parser.add_argument("--repeat", type=int, default=7, help="measurements (the best counts)")
    options = parser.parse_args(argv)
    batch: int = options.batch
    rounds: int = options.rounds
    repeat: int = options.repeat
    out = sys.stdout
    full, bare = DataFormat(), DataFormat(False, False, False)

    def scan(init: bytes, reads: list[bytes], per_read: int = batch) -> Callable[[], int]:
        def run() -> int:
            decoder = ChunkDecoder()
            items: list[object] = []
            decoder.receive_data(init)
            decoder.read_chunks(items.append, DataReceived)
            for read in reads:
                decoder.receive_data(read)
                items.clear()
                decoder.read_chunks(items.append, DataReceived)
            assert len(items) == per_read
            return per_read * len(reads)

        return run

    cases: list[tuple[str, Callable[[], int]]] = [
        ("scan full DATA 100 B", scan(*_reads(full, batch, rounds, [100]))),
        ("scan full DATA 1 KB", scan(*_reads(full, batch, rounds, [1000]))),
        ("scan bare DATA 100 B", scan(*_reads(bare, batch, rounds, [100]))),
        ("scan full DATA 90-110 B", scan(*_reads(full, batch, rounds, list(range(90, 111))))),
        ("scan full DATA 100 B, 4 streams + U", scan(*_reads(full, batch, rounds, [100], 4))),
        ("scan full DATA 100 B, 1 per read", scan(*_reads(full, 1, rounds * 20, [100]), 1)),
        ("scan full DATA 1 KB, 1 per read", scan(*_reads(full, 1, rounds * 20, [1000]), 1)),
    ]
    for with_tsn in (True, False):
        name = "with" if with_tsn else "without"

        def build(with_tsn: bool = with_tsn) -> int:
            for number in range(rounds):
                ack_chunks(number * batch, batch, with_tsn)
            return batch * rounds

        def recognise(with_tsn: bool = with_tsn) -> int:
            decoder = ChunkDecoder()
            items: list[object] = []
            decoder.receive_data(full.init().encode())
            decoder.read_chunks(items.append, DataReceived)
            for number in range(rounds):
                decoder.receive_data(ack_chunks(number * batch, batch, with_tsn))
                items.clear()
                decoder.read_chunks(items.append, DataReceived, batch, number * batch)
                assert items == [batch]
            return batch * rounds

        cases.append((f"ack build, {name} TSN", build))
        cases.append((f"ack build + scan, {name} TSN", recognise))

    for fmt_name, fmt in (("full", full), ("bare", bare)):
        init, reads = _reads(fmt, batch, rounds, [100])

        def connection(init: bytes = init, reads: list[bytes] = reads) -> int:
            mapping = MappingConnection(fast=True)
            mapping.receive_data(init, 0)
            mapping.data_to_send()
            for read in reads:
                events = mapping.receive_data(read, 0)
                mapping.acknowledge_through(events[-1])  # type: ignore[arg-type]
                mapping.data_to_send()
            return batch * len(reads)

        cases.append((f"connection receive + ACK, {fmt_name} 100 B", connection))

    out.write(f"{'case':<40} {'µs per chunk':>12}\n")
    for name, function in cases:
        out.write(f"{name:<40} {_best(function, repeat):>12.3f}\n")


if __name__ == "__main__":
    main()
