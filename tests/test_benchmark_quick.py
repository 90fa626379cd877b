"""benchmarks/quick.py reads the goal rows out of each benchmark's own output."""

from __future__ import annotations

from benchmarks import quick

REGISTRAR = "\n".join(
    [
        "| measurement | ENRP | floor | rate | CPU µs per answer | CPU per answer | busy | load |",
        "|---|--:|--:|--:|--:|--:|--:|--:|",
        "| handle resolutions/s, 10 PU connections | 22,632 | 88,107 | 26% | 33 / 5 | 6.3x "
        "| 75% / 46% | 23% / 53% |",
        "| re-registrations/s (unchanged), 10 PE connections | 6,732 | | | 122 | | 82% | 15% |",
    ]
)

FAILOVER = """\
Summary (goals: session <= 1.25x Int32StringReceiver's CPU, reset median < 50 ms)

measure                                          value     goal
session CPU per 100 B message vs Int32           2.88x  not met
failover after a reset, median                   7.6ms      met
"""

HELD = """\
| measurement | ENRP server |
|---|--:|
| RSS per PE (connection included) | 44.4 KiB |
| PEs expired (keep-alive timeout, registration life) | 0 |
"""


def test_registrar_rows() -> None:
    assert quick.registrarRows(REGISTRAR) == [
        quick.Row("registrar", "CPU per answer vs floor, 10 PU connections", "6.3x", "<= 2x"),
        quick.Row(
            "registrar",
            "server CPU per re-registrations (unchanged), 10 PE connections",
            "122 µs",
            "<= 78-137 µs",
        ),
    ]


def test_failover_rows() -> None:
    rows = quick.failoverRows(FAILOVER)
    assert [(r.measure, r.value, r.goal) for r in rows] == [
        ("session CPU per 100 B message vs Int32", "2.88x (not met)", "<= 1.25x"),
        ("failover after a reset, median", "7.6ms (met)", "< 50 ms"),
    ]


def test_held_rows_and_table() -> None:
    rows = quick.heldRows(HELD)
    assert [r.value for r in rows] == ["44.4 KiB", "0"]
    text = quick.table(rows)
    assert (
        text.splitlines()[2] == "| held | RSS per PE (connection included) | 44.4 KiB | <= 40 KiB |"
    )


def test_held_floor_row() -> None:
    """With held.py --floor's column, the floor's keep-alive cost gets a row of its own."""
    rows = quick.heldRows(
        "| measurement | ENRP server | floor (bare Twisted TLS) |\n|---|--:|--:|\n"
        "| server CPU per keep-alive round trip | 263 µs | 216 µs |\n"
    )
    assert [(r.measure, r.value) for r in rows] == [
        ("server CPU per keep-alive round trip", "263 µs"),
        ("keep-alive round trip, floor (bare Twisted TLS)", "216 µs"),
    ]


def test_nothing_found_in_other_output() -> None:
    assert quick.registrarRows("Traceback ...") == []
    assert quick.failoverRows("no summary") == []
    assert quick.heldRows("") == []
