"""Throughput of the TCP mapping chunk codec, side by side for several ways bytes arrive.

Run: ``.venv/bin/python -m benchmarks.tcpmapping [--chunks N]``. Prints one row per case:
chunks per second and megabytes per second of wire data. Pieces of 65536 bytes are what
Twisted hands a protocol at most per read, 1448 one TCP segment.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from functools import partial

from twisted_rserpool.wire.tcpmapping import (
    ASAP_PPID,
    Ack,
    ChunkDecoder,
    ChunkEncoder,
    DataFormat,
)


def _stream(count: int, size: int, fmt: DataFormat) -> bytes:
    encoder = ChunkEncoder(fmt)
    parts = [encoder.send_init()]
    payload = bytes(size)
    for i in range(count):
        parts.append(encoder.send_data(payload, ppid=ASAP_PPID if fmt.has_ppid else 0))
        if i % 4 == 0:
            parts.append(Ack(i).encode())
    return b"".join(parts)


def _decode(wire: bytes, piece: int) -> int:
    decoder = ChunkDecoder()
    decoded = 0
    for start in range(0, len(wire), piece):
        decoder.receive_data(wire[start : start + piece])
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

    rows: list[tuple[str, int, int, float]] = []
    for fmt_name, fmt in (("full", DataFormat()), ("bare", DataFormat(False, False, False))):
        for size in (32, 1024):
            wire = _stream(count, size, fmt)

            def encode(fmt: DataFormat = fmt, size: int = size) -> int:
                _stream(count, size, fmt)
                return count

            sent, seconds = _time(encode)
            rows.append((f"encode {fmt_name} DATA {size} B", sent, len(wire), seconds))
            for piece_name, piece in (("65536 B", 65536), ("1448 B", 1448), ("7 B", 7)):
                decoded, seconds = _time(partial(_decode, wire, piece))
                rows.append(
                    (f"decode {fmt_name} DATA {size} B, {piece_name}", decoded, len(wire), seconds)
                )
    one_byte = _stream(2000, 32, DataFormat())
    decoded, seconds = _time(partial(_decode, one_byte, 1))
    rows.append(("decode full DATA 32 B, 1 B pieces", decoded, len(one_byte), seconds))

    out = sys.stdout
    out.write(f"{'case':<40} {'chunks/s':>12} {'MB/s':>9}\n")
    for name, chunks, wire_bytes, seconds in rows:
        out.write(f"{name:<40} {chunks / seconds:>12,.0f} {wire_bytes / seconds / 1e6:>9.1f}\n")


if __name__ == "__main__":
    main()
