"""The registrar benchmark still runs: every phase at a trivial size, no timing asserted."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks.registrar import Settings, runBenchmark, table

pytestmark = pytest.mark.slow

TINY = Settings(
    connections=(1,),
    window=2,
    warmup=0.0,
    duration=5.0,  # an upper bound: each phase ends after maxRequests answers
    maxRequests=20,
    rounds=1,
    poolSize=3,
    items=2,
    registrationConnections=1,
    pes=3,
    keepAliveInterval=1.0,
    cpuInterval=0.5,
    settle=0.1,
    rampLimit=10.0,
)


def test_every_phase_runs(tmp_path: Path) -> None:
    """A real ``twistd enrp``, the floor server and the load generator processes complete
    every phase: resolutions and floor answers, new, changed and unchanged re-registrations,
    held PEs."""
    lines: list[str] = []
    results = runBenchmark(TINY, tmp_path, lines.append)
    assert [(p.name, p.connections) for p in results.resolutions] == [("resolve", 1)]
    assert [(p.name, p.connections) for p in results.floor] == [("floor", 1)]
    assert [p.name for p in results.registrations] == ["register", "reregister", "unchanged"]
    for phase in results.resolutions + results.floor + results.registrations:
        assert phase.responses >= TINY.maxRequests  # type: ignore[operator]
        assert phase.bad == 0
    assert results.requestSize > 0 and results.responseSize > results.requestSize
    held = results.held
    assert held is not None
    assert held.registered == TINY.pes and held.failed == 0
    assert held.openAfter == TINY.pes and held.removedKeepAlive == 0
    assert held.heldRss > 0
    text = table(results)
    assert "handle resolutions/s, 1 PU connection" in text
    assert "re-registrations/s (new load)" in text
    assert "re-registrations/s (unchanged)" in text
