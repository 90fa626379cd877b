"""benchmarks/server_inprocess.py still measures: the real server, in memory, every
operation answered (the batches raise otherwise); no timing asserted."""

from __future__ import annotations

from benchmarks import server_inprocess


def test_every_operation_is_measured() -> None:
    results = server_inprocess.measure(quick=True, rounds=1, pes=40)
    assert set(results) == {
        "handle resolution, 1 per read",
        "handle resolution, 8 per read",
        "re-registration (unchanged), 1 per read",
        "keep-alive round trip (timer and answer)",
    }
    assert all(value > 0 for value in results.values())
    assert "| handle resolution, 1 per read | " in server_inprocess.table({"run": results})
