"""benchmarks/esp_core.py still runs: every suite and size round-trips and gets a row (no
timing asserted)."""

from __future__ import annotations

from benchmarks.esp_core import SIZES, SUITES, run, table


def test_every_suite_and_size_has_a_row() -> None:
    """A tiny run measures every (suite, size), each packet opened to what was sealed."""
    results = run(count=3, rounds=1)
    assert [(r.suite, r.size) for r in results] == [(s, n) for s in SUITES for n in SIZES]
    assert all(r.seal_us > 0 and r.open_us > 0 for r in results)
    assert table(results).count("\n") == len(results)
