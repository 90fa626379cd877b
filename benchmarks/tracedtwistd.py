"""``twistd`` under tracemalloc, for benchmarks/held.py's memory breakdown.

Run as ``python benchmarks/tracedtwistd.py PREFIX twistd-arguments...``. Each
:data:`SNAPSHOT_SIGNAL` writes ``PREFIX.N.trace`` (the tracemalloc snapshot),
``PREFIX.N.census`` (objects the garbage collector tracks, counted and sized by type, with
instance dictionaries under their owner's type, and glibc's heap in use) and then the
empty file ``PREFIX.N`` (the sign that both are complete). It imports nothing of this
project: the server's code comes from its ``PYTHONPATH``.
"""

from __future__ import annotations

import ctypes
import gc
import json
import os
import signal
import sys
import tracemalloc
from collections import Counter
from pathlib import Path
from typing import Any

#: The signal that makes a traced server write a snapshot (SIGUSR1 rotates twistd's log).
SNAPSHOT_SIGNAL = signal.SIGUSR2


def tracedTwistd(prefix: str, argv: list[str]) -> int:
    """``twistd argv`` under tracemalloc; each SNAPSHOT_SIGNAL writes ``prefix.N``: the
    snapshot, an object census (count and shallow size by type) and glibc's heap in use."""
    from twisted.scripts.twistd import run  # noqa: PLC0415

    tracemalloc.start(1)
    taken = [0]

    def write(signum: int, frame: Any) -> None:
        gc.collect()
        census: Counter[str] = Counter()
        sizes: Counter[str] = Counter()
        for obj in gc.get_objects():
            kind = type(obj).__qualname__
            census[kind] += 1
            sizes[kind] += sys.getsizeof(obj)
            try:
                attributes = object.__getattribute__(obj, "__dict__")
            except Exception:
                continue
            if type(attributes) is dict:
                # Instance dictionaries under their owner's name: which class holds them.
                census[kind + ".__dict__"] += 1
                sizes[kind + ".__dict__"] += sys.getsizeof(attributes)
        number = taken[0]
        taken[0] += 1
        base = f"{prefix}.{number}"
        tracemalloc.take_snapshot().dump(base + ".trace")
        Path(base + ".json").write_text(
            json.dumps({"census": census, "sizes": sizes, "malloc": mallocInUse()})
        )
        os.rename(base + ".json", base + ".census")
        Path(base).touch()

    signal.signal(SNAPSHOT_SIGNAL, write)
    sys.argv = ["twistd", *argv]
    run()  # type: ignore[no-untyped-call]
    return 0


def mallocInUse() -> int:
    """Bytes the glibc heap has handed out (``mallinfo2``: arena plus mmapped blocks)."""

    class MallInfo2(ctypes.Structure):
        _fields_ = [
            (name, ctypes.c_size_t)
            for name in (
                "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
                "fsmblks", "uordblks", "fordblks", "keepcost",
            )
        ]  # fmt: skip

    try:
        libc = ctypes.CDLL(None)
        libc.mallinfo2.restype = MallInfo2
        info = libc.mallinfo2()
    except (OSError, AttributeError):
        return 0
    return int(info.uordblks + info.hblkhd)


if __name__ == "__main__":
    raise SystemExit(tracedTwistd(sys.argv[1], sys.argv[2:]))
