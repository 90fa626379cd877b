"""Pure Python against the mypyc build (``scripts/compile``), side by side in one run.

Run: ``.venv/bin/python -m benchmarks.compiled`` (about 3 minutes on two cores; builds the
compiled tree first if it is missing or stale). It runs ``benchmarks/registrar.py --quick``
(with ``--registrar-duration`` phases), ``benchmarks/failover.py`` (for its CPU per
message; one failover), ``benchmarks/compiled_core.py`` (the compiled cores alone,
without TLS and the reactor) and ``benchmarks/compiled_codecs.py`` (the message codecs
alone) ``--rounds`` times for each build, alternating which build goes first, so that
load from other processes on a shared machine hits both alike, and prints one table: the
best (lowest) figure of each build and compiled ÷ pure. ``--baseline TREE`` adds a third
build to the same alternation (another compiled tree, e.g. one built with fewer
``--modules``), to show what the difference between the two trees buys. The floors
run the same code in both builds, so their rows show how much the machine's load moved
the figures; the ``÷ floor`` and ``÷ Int32`` rows (each run's figure over its own floor's)
cancel most of that.

The figures are CPU time per operation, as the two benchmarks measure it: the ENRP
server's CPU per answer or registration (its threads' run time), and the CPU of both ends
of an ASAP session per application message beside ``Int32StringReceiver`` and plain TLS
over the same kind of connection. The compiled build runs the same code with
``PYTHONPATH`` set to the compiled tree (``scripts/compile --path``), which every process
a benchmark starts (``twistd enrp``, its load generator) inherits.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from benchmarks.quick import markdownRows

ROOT = Path(__file__).resolve().parent.parent
COMPILE = ROOT / "scripts" / "compile"
BASELINE = "baseline"

#: The session rows of benchmarks/failover.py's CPU table: size, path, µs per message.
_SESSION_ROW = re.compile(r"^\s*(\d+) (.+?)\s{2,}([\d.]+)\s+[\d.]+x\s")


def registrarFigures(text: str) -> dict[str, float]:
    """Server CPU µs per answer (ENRP and floor) and per registration, by measure."""
    figures: dict[str, float] = {}
    for name, cells in markdownRows(text).items():
        if name.startswith("handle resolutions/s"):
            connections = name.removeprefix("handle resolutions/s, ")
            enrp, floor = (float(value.replace(",", "")) for value in cells[3].split("/"))
            figures[f"resolution, {connections}: ENRP server CPU µs/answer"] = enrp
            figures[f"resolution, {connections}: bare TLS floor CPU µs/answer"] = floor
            # The floor runs the same code in both builds: the ratio cancels the load
            # that other processes put on the machine during this run.
            figures[f"resolution, {connections}: ENRP ÷ floor (x)"] = enrp / floor
        elif "registrations/s" in name:
            figures[f"{name.replace('/s', '')}: server CPU µs each"] = float(
                cells[3].replace(",", "")
            )
    return figures


def sessionFigures(text: str) -> dict[str, float]:
    """CPU µs per message of every path of benchmarks/failover.py, by size and path."""
    figures: dict[str, float] = {}
    floors: dict[str, float] = {}
    for line in text.splitlines():
        match = _SESSION_ROW.match(line)
        if match:
            size, path, cpu = match.groups()
            label = f"{int(size):,} B messages"
            figures[f"{label}: {path.strip()} CPU µs/msg"] = float(cpu)
            if path.startswith("Int32StringReceiver"):
                floors[label] = float(cpu)
            elif path.startswith("ASAP session") and label in floors:
                # As for the registrar: the floor's code is the same in both builds.
                figures[f"{label}: {path.strip()} ÷ Int32 (x)"] = float(cpu) / floors[label]
    return figures


def coreFigures(text: str) -> dict[str, float]:
    """The rows of benchmarks/compiled_core.py."""
    rows = markdownRows(text)
    return {name: float(cells[0]) for name, cells in rows.items() if name != "measure"}


def environment(build: str, lib: str) -> dict[str, str]:
    """The environment of one build: the compiled tree ``lib`` first on the path, or (the
    pure build) no tree at all."""
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    # No build puts the checkout (the working directory) first on sys.path.
    env["PYTHONSAFEPATH"] = "1"
    if build != "pure":
        env["PYTHONPATH"] = lib
    return env


def compiledModules(lib: str) -> list[str]:
    """The modules the compiled environment imports from C extensions."""
    probe = (
        "import importlib.machinery as m, pathlib, sys\n"
        "lib = pathlib.Path(sys.argv[1])\n"
        "for path in sorted(lib.rglob('*.py')):\n"
        "    if any(path.with_suffix(s).exists() for s in m.EXTENSION_SUFFIXES):\n"
        "        name = '.'.join(path.relative_to(lib).with_suffix('').parts)\n"
        "        module = __import__(name, fromlist=['_'])\n"
        "        if module.__file__.endswith(tuple(m.EXTENSION_SUFFIXES)):\n"
        "            print(name)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe, lib],
        env=environment("compiled", lib),
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    return result.stdout.split()


def run(command: Sequence[str], build: str, lib: str) -> str:
    """One benchmark's output under one build."""
    result = subprocess.run(
        [sys.executable, *command],
        env=environment(build, lib),
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode:
        sys.exit(f"{' '.join(command)} ({build}) failed:\n{result.stdout}\n{result.stderr}")
    return result.stdout


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rounds", type=int, default=2, help="runs of each build (2)")
    parser.add_argument(
        "--registrar-duration", type=float, default=1.0, help="measured seconds per phase (1)"
    )
    parser.add_argument("--messages", type=int, default=10_000, help="per session case")
    parser.add_argument(
        "--sizes", type=int, nargs="+", default=[100, 1000, 16000], help="message sizes"
    )
    parser.add_argument("--no-build", action="store_true", help="use the tree as it is")
    parser.add_argument("--lib", help="another compiled tree (default: scripts/compile --path)")
    parser.add_argument("--baseline", help="a second compiled tree, measured in the same run")
    options = parser.parse_args(argv)
    if not (options.no_build or options.lib):
        subprocess.run([str(COMPILE)], check=True)
    lib = (
        options.lib
        or subprocess.run(
            [str(COMPILE), "--path"], check=True, capture_output=True, text=True
        ).stdout.strip()
    )
    modules = compiledModules(lib)
    if not modules:
        sys.exit(f"no compiled module in {lib}: run scripts/compile")
    trees = {"pure": "", "compiled": lib}
    if options.baseline:
        trees[BASELINE] = options.baseline
    builds = tuple(trees)
    registrar = ["benchmarks/registrar.py", "--quick"]
    registrar += ["--duration", str(options.registrar_duration)]
    session = ["benchmarks/failover.py", "--failovers", "1", "--rounds", "1"]
    session += ["--messages", str(options.messages), "--sizes", *map(str, options.sizes)]
    best: dict[str, dict[str, float]] = {build: {} for build in builds}
    order: list[str] = []
    for number in range(options.rounds):
        for build in builds if number % 2 == 0 else builds[::-1]:
            print(f"round {number + 1}: {build}", file=sys.stderr, flush=True)
            tree = trees[build]
            figures = registrarFigures(run(registrar, build, tree))
            figures |= sessionFigures(run(session, build, tree))
            figures |= coreFigures(run(["-m", "benchmarks.compiled_core"], build, tree))
            figures |= coreFigures(run(["-m", "benchmarks.compiled_codecs"], build, tree))
            for measure, value in figures.items():
                if measure not in order:
                    order.append(measure)
                best[build][measure] = min(value, best[build].get(measure, value))
    print(f"Pure Python vs mypyc-compiled ({len(modules)} modules), best of {options.rounds}")
    print(f"compiled: {', '.join(module.removeprefix('twisted_rserpool.') for module in modules)}")
    extra = options.baseline is not None
    if extra:
        baseline = compiledModules(options.baseline)
        print(f"baseline: {options.baseline} ({len(baseline)} modules)")
    print()
    header = "| measure | pure |" + (" baseline |" if extra else "") + " compiled |"
    header += " compiled ÷ pure |" + (" compiled ÷ baseline |" if extra else "")
    print(header)
    print("|---|--:|--:|--:|" + ("--:|--:|" if extra else ""))
    for measure in order:
        values = [best[build].get(measure) for build in builds]
        if any(value is None for value in values):
            continue
        pure, compiled = best["pure"][measure], best["compiled"][measure]
        cells = [f"{pure:,.2f}"]
        if extra:
            cells.append(f"{best[BASELINE][measure]:,.2f}")
        cells += [f"{compiled:,.2f}", f"{compiled / pure:.2f}"]
        if extra:
            cells.append(f"{compiled / best[BASELINE][measure]:.2f}")
        print(f"| {measure} | {' | '.join(cells)} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
