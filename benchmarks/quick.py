"""Every data-path benchmark of issue 12 briefly, and one summary table against the goals.

Run: ``.venv/bin/python -m benchmarks.quick`` (about a minute on two cores). It runs
``benchmarks/registrar.py --quick``, ``benchmarks/failover.py --quick`` and
``benchmarks/held.py --quick --floor`` one after the other, keeps each one's whole output in
``--output`` (default: a temporary directory, named at the end), and prints the rows that
the goals are about. The quick runs are short and small (200 held PEs, not 10,000): read
the full runs quoted in docs/performance.md for the figures the goals are judged by.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

#: The benchmarks run, as module names under benchmarks/.
BENCHMARKS = ("registrar", "failover", "held")
#: Arguments after ``--quick``, by benchmark.
EXTRA = {"held": ["--floor"]}


@dataclass(frozen=True)
class Row:
    """One summary line: what was measured, its value, and the goal it is judged by."""

    benchmark: str
    measure: str
    value: str
    goal: str


def markdownRows(text: str) -> dict[str, list[str]]:
    """A benchmark's markdown table rows, by their first cell."""
    rows: dict[str, list[str]] = {}
    for line in text.splitlines():
        if line.startswith("| ") and not line.startswith("|---"):
            cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
            rows[cells[0]] = cells[1:]
    return rows


def registrarRows(text: str) -> list[Row]:
    """Resolution CPU against the bare TLS floor; registration CPU."""
    rows = markdownRows(text)
    found = []
    for name, cells in rows.items():
        if name.startswith("handle resolutions/s"):
            measure = f"CPU per answer vs floor, {name.removeprefix('handle resolutions/s, ')}"
            found.append(Row("registrar", measure, cells[4], "<= 2x"))
        elif "registrations/s" in name:
            measure = f"server CPU per {name.replace('/s', '')}"
            found.append(Row("registrar", measure, f"{cells[3]} µs", "<= 78-137 µs"))
    return found


def failoverRows(text: str) -> list[Row]:
    """The summary block of benchmarks/failover.py, as it judges itself."""
    found = []
    summary = text.split("Summary (goals:", 1)[-1] if "Summary (goals:" in text else ""
    for line in summary.splitlines()[3:]:
        match = re.match(r"(.+?)\s{2,}(\S+)\s{2,}(met|not met)$", line.strip())
        if match:
            measure, value, verdict = match.groups()
            goal = "< 50 ms" if "failover" in measure else "<= 1.25x"
            found.append(Row("failover", measure, f"{value} ({verdict})", goal))
    return found


def heldRows(text: str) -> list[Row]:
    """Memory and keep-alive work per held PE."""
    rows = markdownRows(text)
    wanted = {
        "RSS per PE (connection included)": "<= 40 KiB",
        "server CPU per keep-alive round trip": "<= 125 µs (25 % of a core at 10,000 PEs)",
        "PEs expired (keep-alive timeout, registration life)": "0",
        "registration time, all PEs": "10,000 within 60 s",
    }
    found = [
        Row("held", name, rows[name][0], goal) for name, goal in wanted.items() if name in rows
    ]
    keepAlive = rows.get("server CPU per keep-alive round trip", [])
    if len(keepAlive) > 1:  # held.py --floor's column: Twisted's own TLS doing the same exchange
        found.append(
            Row("held", "keep-alive round trip, floor (bare Twisted TLS)", keepAlive[1], "-")
        )
    return found


PARSERS = {"registrar": registrarRows, "failover": failoverRows, "held": heldRows}


def run(name: str, output: Path) -> tuple[str, int]:
    """Run one benchmark with --quick; its output (kept in ``output``) and exit status."""
    root = Path(__file__).resolve().parent.parent
    completed = subprocess.run(
        [sys.executable, "-m", f"benchmarks.{name}", "--quick", *EXTRA.get(name, [])],
        cwd=root,
        capture_output=True,
        text=True,
        check=False,
    )
    text = completed.stdout + completed.stderr
    (output / f"{name}.txt").write_text(text)
    return text, completed.returncode


def table(rows: Sequence[Row]) -> str:
    """The summary as a markdown table."""
    lines = ["| benchmark | measure (quick run) | value | goal |", "|---|---|--:|---|"]
    lines += [f"| {r.benchmark} | {r.measure} | {r.value} | {r.goal} |" for r in rows]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the quick benchmarks and print the summary table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", type=Path, help="directory for the full outputs")
    parser.add_argument("--only", choices=BENCHMARKS, action="append", help="run only these")
    options = parser.parse_args(argv)
    output = options.output or Path(tempfile.mkdtemp(prefix="quick-bench-"))
    output.mkdir(parents=True, exist_ok=True)
    rows: list[Row] = []
    failed = []
    for name in options.only or BENCHMARKS:
        print(f"running benchmarks/{name}.py --quick ...", flush=True)
        text, status = run(name, output)
        found = PARSERS[name](text)
        if status != 0 or not found:
            failed.append(name)
        rows += found
    print()
    print(table(rows))
    print(f"\nfull outputs in {output}")
    if failed:
        print(f"no results from: {', '.join(failed)} (see their outputs)")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
