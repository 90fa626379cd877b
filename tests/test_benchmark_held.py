"""The held-PE benchmark still runs: real server and holder processes at a trivial size, no
timing asserted."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks.held import FLOOR, Settings, breakdown, holdPEs, memoryTable, table
from benchmarks.registrar import Files

pytestmark = pytest.mark.slow

TINY = Settings(
    pes=3,
    holders=2,
    keepAliveInterval=0.5,
    keepAliveTimeout=5.0,
    rampLimit=10.0,
    concurrency=2,
    settle=0.1,
    cpuInterval=1.0,
)


def test_pes_are_held_counted_and_the_memory_broken_down(tmp_path: Path) -> None:
    """Two holder processes register 3 PEs at a real ``twistd enrp``, answer its
    keep-alives (counted), none expires; the traced run yields a per-PE breakdown."""
    files = Files(tmp_path)
    files.create()
    run, snapshots = holdPEs(TINY, files, "tiny", None, lambda text: None)
    assert run.registered == 3 and run.failed == 0
    assert run.keepAlivesAnswered > 0 and run.cpuSeconds > 0
    assert run.openAfter == 3 and run.expired == 0 and run.unexpected == 0
    assert snapshots == []
    assert "RSS per PE" in table([run], TINY)
    traced, snapshots = holdPEs(
        TINY, files, "tiny", None, lambda text: None, 3, str(tmp_path / "s")
    )
    assert len(snapshots) == 2
    memory = breakdown("tiny", traced, snapshots)
    assert memory.pes == 3 and memory.lines and memory.types
    assert "Python objects (tracemalloc)" in memoryTable([memory])


def test_the_floor_holds_the_same_pes(tmp_path: Path) -> None:
    """The keep-alive floor (bare Twisted TLS, ``--floor``) registers the PEs and sends them
    keep-alives that they answer, as the ENRP server does."""
    files = Files(tmp_path)
    files.create()
    run, _ = holdPEs(TINY, files, FLOOR, None, lambda text: None)
    assert run.registered == 3 and run.failed == 0
    assert run.keepAlivesAnswered > 0 and run.openAfter == 3 and run.unexpected == 0
    assert FLOOR in table([run], TINY)
