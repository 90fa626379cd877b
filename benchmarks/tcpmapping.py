"""Throughput of the TCP mapping chunk codec, side by side for several ways bytes arrive.

Run: ``.venv/bin/python -m benchmarks.tcpmapping [--chunks N]``. Prints one row per case:
chunks per second and megabytes per second of wire data, for the checked path
(``ChunkDecoder.next_chunk``, ``ChunkEncoder.send_data``) and the fast path beside it
(``ChunkDecoder.read_chunks``: every chunk of a piece in one pass, no chunk value per
DATA chunk; ``ChunkEncoder.append_data``: pieces joined once per write), with the fast
path's speed-up in the last column. Pieces of 65536 bytes are what Twisted hands a
protocol at most per read, 1448 one TCP segment.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from functools import partial

from twisted_rserpool.transport.events import DataReceived
from twisted_rserpool.wire.tcpmapping import (
    ASAP_PPID,
    Ack,
    ChunkDecoder,
    ChunkEncoder,
    DataFormat,
)


def _stream(count: int, size: int, fmt: DataFormat, fast: bool = False) -> bytes:
    encoder = ChunkEncoder(fmt)
    parts = [encoder.send_init()]
    payload = bytes(size)
    ppid = ASAP_PPID if fmt.has_ppid else 0
    for i in range(count):
        if fast:
            encoder.append_data(parts, payload, ppid)
        else:
            parts.append(encoder.send_data(payload, ppid=ppid))
        if i % 4 == 0:
            parts.append(Ack(i).encode())
    return b"".join(parts)


def _decode(wire: bytes, piece: int, fast: bool = False) -> int:
    decoder = ChunkDecoder()
    decoded = 0
    items: list[object] = []
    for start in range(0, len(wire), piece):
        decoder.receive_data(wire[start : start + piece])
        if fast:
            decoder.read_chunks(items.append, DataReceived)
            decoded += len(items)
            items.clear()
        else:
            while decoder.next_chunk() is not None:
                decoded += 1
    return decoded


def _time(function: Callable[[], int]) -> tuple[int, float]:
    best = float("inf")
    result = 0
    for _ in range(3):
        started = time.perf_counter()
        result = function()
        best = min(best, time.perf_counter() - started)
    return result, best


def main(argv: list[str] | None = None) -> None:
    """Measure encoding and decoding and write a table to standard output."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--chunks", type=int, default=5_000)
    options = parser.parse_args(argv)
    count: int = options.chunks

    # (case, chunks, wire bytes, checked seconds, fast seconds)
    rows: list[tuple[str, int, int, float, float]] = []
    for fmt_name, fmt in (("full", DataFormat()), ("bare", DataFormat(False, False, False))):
        for size in (32, 1024):
            wire = _stream(count, size, fmt)
            assert _stream(count, size, fmt, fast=True) == wire

            def encode(fmt: DataFormat = fmt, size: int = size, fast: bool = False) -> int:
                _stream(count, size, fmt, fast)
                return count

            sent, checked = _time(encode)
            _, fast = _time(partial(encode, fast=True))
            rows.append((f"encode {fmt_name} DATA {size} B", sent, len(wire), checked, fast))
            for piece_name, piece in (("65536 B", 65536), ("1448 B", 1448), ("7 B", 7)):
                decoded, checked = _time(partial(_decode, wire, piece))
                again, fast = _time(partial(_decode, wire, piece, True))
                assert again == decoded
                name = f"decode {fmt_name} DATA {size} B, {piece_name}"
                rows.append((name, decoded, len(wire), checked, fast))
    one_byte = _stream(2000, 32, DataFormat())
    decoded, checked = _time(partial(_decode, one_byte, 1))
    _, fast = _time(partial(_decode, one_byte, 1, True))
    rows.append(("decode full DATA 32 B, 1 B pieces", decoded, len(one_byte), checked, fast))

    out = sys.stdout
    out.write(
        f"{'case':<40} {'checked chunks/s':>16} {'MB/s':>7} {'fast chunks/s':>14} "
        f"{'MB/s':>7} {'fast/checked':>12}\n"
    )
    for name, chunks, wire_bytes, checked, fast in rows:
        out.write(
            f"{name:<40} {chunks / checked:>16,.0f} {wire_bytes / checked / 1e6:>7.1f} "
            f"{chunks / fast:>14,.0f} {wire_bytes / fast / 1e6:>7.1f} {checked / fast:>11.1f}x\n"
        )


if __name__ == "__main__":
    main()
