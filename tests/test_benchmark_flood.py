"""The flood benchmark still runs: a no-flood window and two small floods, no timing asserted."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks.flood import Settings, runBenchmark, table

pytestmark = pytest.mark.slow

TINY = Settings(
    floods=((False, 1), (True, 2)),
    duration=0.5,
    interval=0.02,
    warmup=0.2,
    poolSize=3,
    items=2,
    settleLimit=2.0,
)


def test_every_window_runs(tmp_path: Path) -> None:
    """A real ``twistd enrp``, the pool user and the flood processes complete every window;
    the floods are answered and held back (the server's counters say so)."""
    results = runBenchmark(TINY, tmp_path, lambda _: None)
    names = [row.name for row in results.rows]
    assert names == [
        "no flood",
        "flood, 1 anonymous connection",
        "flood, 2 authenticated connections",
        "no flood (again)",
    ]
    for row in results.rows:
        assert row.latencies and row.unanswered == 0
    for row in results.rows[1:3]:
        assert row.floodConnections == row.floodOpen > 0
        assert row.floodAnswered > 0
        assert row.counters.get("requests_delayed", 0) > 0
    text = table(results)
    assert "| flood, 2 authenticated connections |" in text
