"""Handlespace benchmark: operations per second per policy and pool size, memory per PE.

Measures, at a steady pool size (1k, 10k, 100k PEs in one pool), the cost of register
(a new PE), deregister, update load (re-registration with new policy values) and select N
(a handle resolution for N PEs), for every RFC 5356 policy; then the same at 1M PEs over
10k pools (skip with ``--no-million``: it takes about 30 s); and the memory one PE costs.
Peak memory is about 1 GB. The last
column is the cost per operation at 100k PEs divided by the cost at 1k PEs (goal: <= 2).

Run: ``python benchmarks/handlespace.py [--no-million] [--rounds 5] [--markdown]``; the
default run takes about a minute on two cores.
"""

from __future__ import annotations

import argparse
import gc
import random
import resource
import sys
import time
import tracemalloc
from collections.abc import Callable
from ipaddress import IPv4Address
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from twisted_rserpool.handlespace import UNLIMITED, Handlespace
from twisted_rserpool.wire.parameters import (
    LeastUsedDegradationPolicy,
    LeastUsedPolicy,
    PoolElementParameter,
    PriorityLeastUsedPolicy,
    PriorityPolicy,
    RandomizedLeastUsedPolicy,
    RandomPolicy,
    RoundRobinPolicy,
    SctpTransport,
    SelectionPolicy,
    TcpTransport,
    WeightedRandomPolicy,
    WeightedRoundRobinPolicy,
)

HOME = 0x0A0B0C0D
OPERATIONS = ("register", "deregister", "update", "select")
PolicyFactory = Callable[[random.Random], SelectionPolicy]


def _load(rng: random.Random) -> int:
    return rng.randrange(1 << 32)


POLICIES: dict[str, PolicyFactory] = {
    "RR": lambda rng: RoundRobinPolicy(),
    "WRR": lambda rng: WeightedRoundRobinPolicy(rng.randint(1, 10)),
    "RAND": lambda rng: RandomPolicy(),
    "WRAND": lambda rng: WeightedRandomPolicy(rng.randint(1, 10)),
    "PRIO": lambda rng: PriorityPolicy(rng.randint(0, 10)),
    "LU": lambda rng: LeastUsedPolicy(_load(rng)),
    "LUD": lambda rng: LeastUsedDegradationPolicy(_load(rng), rng.randrange(1 << 24)),
    "PLU": lambda rng: PriorityLeastUsedPolicy(_load(rng), rng.randrange(1 << 24)),
    "RLU": lambda rng: RandomizedLeastUsedPolicy(_load(rng)),
}


def make_element(
    pe_identifier: int, policy: SelectionPolicy, rng: random.Random
) -> PoolElementParameter:
    """A PE with its own addresses, as a registrar would store it."""
    address = IPv4Address(0x0A000000 + pe_identifier)
    return PoolElementParameter(
        pe_identifier,
        HOME,
        300,
        SctpTransport(rng.randrange(1024, 65536), (address,)),
        policy,
        TcpTransport(3863, address),
    )


def timed(operations: Callable[[], int]) -> float:
    """Seconds per operation of one batch (garbage collection paused, as in timeit)."""
    gc.disable()
    try:
        start = time.perf_counter()
        count = operations()
        elapsed = time.perf_counter() - start
    finally:
        gc.enable()
    return elapsed / max(count, 1)


class PoolBench:
    """One pool of one policy at a steady size, timed in rounds.

    Each round times ``ops`` deregistrations, the same registrations again, ``ops``
    updates (re-registrations with new policy values) and ``ops`` handle resolutions.
    Rounds of all pool sizes are interleaved and the fastest round counts, so that load
    from other processes on a shared machine disturbs all sizes alike.
    """

    def __init__(self, policy_name: str, size: int, ops: int, select_count: int) -> None:
        rng = random.Random(size)
        factory = POLICIES[policy_name]
        self.handlespace = Handlespace(UNLIMITED, rng=random.Random(size))
        self.handle = b"benchmark-pool"
        self.select_count = select_count
        self.ops = ops
        elements = [make_element(pe_id, factory(rng), rng) for pe_id in range(1, size + 1)]
        for element in elements:
            self.handlespace.register(self.handle, element, now=0.0)
        self.victims = rng.sample(elements, min(ops, size // 2))
        self.updates = [
            [make_element(element.pe_identifier, factory(rng), rng) for element in self.victims]
            for _ in range(2)
        ]
        self.best = dict.fromkeys(OPERATIONS, float("inf"))
        self.rounds = 0

    def round(self) -> None:
        """Time each operation once more."""
        handlespace = self.handlespace
        handle = self.handle
        victims = self.victims
        updates = self.updates[self.rounds % 2]
        self.rounds += 1

        def deregister() -> int:
            for element in victims:
                handlespace.deregister(handle, element.pe_identifier)
            return len(victims)

        def register() -> int:
            for element in victims:
                handlespace.register(handle, element, now=1.0)
            return len(victims)

        def update() -> int:
            for element in updates:
                handlespace.register(handle, element, now=2.0)
            return len(updates)

        def select() -> int:
            count = self.select_count
            for _ in range(self.ops):
                handlespace.select(handle, count)
            return self.ops

        for name, operation in zip(OPERATIONS, (register, deregister, update, select), strict=True):
            if name == "register":
                self.best["deregister"] = min(self.best["deregister"], timed(deregister))
            if name != "deregister":
                self.best[name] = min(self.best[name], timed(operation))


def bench_million(pools: int, per_pool: int, ops: int, select_count: int) -> dict[str, float]:
    """Seconds per operation with ``pools * per_pool`` PEs (Least Used, 1k PEs per owner)."""
    rng = random.Random(7)
    handlespace = Handlespace(UNLIMITED, rng=random.Random(7))
    handles = [b"pool-%05d" % index for index in range(pools)]
    pe_identifier = 0
    build_start = time.perf_counter()
    for handle in handles:
        for _ in range(per_pool):
            pe_identifier += 1
            handlespace.register(
                handle, make_element(pe_identifier, LeastUsedPolicy(_load(rng)), rng), now=0.0
            )
    build = time.perf_counter() - build_start
    candidates = [
        entry for handle in rng.sample(handles, 200) for entry in handlespace.pool(handle)
    ]
    victims = [(entry.pool_handle, entry.element) for entry in rng.sample(candidates, ops)]
    updates = [
        (handle, make_element(element.pe_identifier, LeastUsedPolicy(_load(rng)), rng))
        for handle, element in victims
    ]

    def do_deregister() -> int:
        for handle, element in victims:
            handlespace.deregister(handle, element.pe_identifier)
        return len(victims)

    def do_register() -> int:
        for handle, element in victims:
            handlespace.register(handle, element, now=1.0)
        return len(victims)

    def do_update() -> int:
        for handle, element in updates:
            handlespace.register(handle, element, now=2.0)
        return len(updates)

    def do_select() -> int:
        for handle in rng.sample(handles, min(ops, len(handles))):
            handlespace.select(handle, select_count)
        return min(ops, len(handles))

    result = dict.fromkeys(OPERATIONS, float("inf"))
    for _ in range(3):
        result["deregister"] = min(result["deregister"], timed(do_deregister))
        result["register"] = min(result["register"], timed(do_register))
        result["update"] = min(result["update"], timed(do_update))
        result["select"] = min(result["select"], timed(do_select))
    result["build"] = build / (pools * per_pool)
    assert len(handlespace) == pools * per_pool
    return result


def memory_per_pe(policy_name: str, size: int = 20_000) -> tuple[float, float]:
    """Bytes per PE: (handlespace bookkeeping, the stored PE parameter itself)."""
    rng = random.Random(3)
    factory = POLICIES[policy_name]
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    elements = [make_element(pe_id, factory(rng), rng) for pe_id in range(1, size + 1)]
    built = tracemalloc.get_traced_memory()[0]
    handlespace = Handlespace(UNLIMITED)
    for element in elements:
        handlespace.register(b"memory", element, now=0.0)
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    del handlespace
    return (after - built) / size, (built - before) / size


def rate(seconds: float) -> str:
    """Operations per second, compact."""
    per_second = 1.0 / seconds
    if per_second >= 1e6:
        return f"{per_second / 1e6:.2f}M"
    return f"{per_second / 1e3:.0f}k"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--no-million", action="store_true", help="skip 1M PEs over 10k pools (~30 s)"
    )
    parser.add_argument("--ops", type=int, default=2000, help="operations per measurement")
    parser.add_argument("--rounds", type=int, default=5, help="timed rounds (best counts)")
    parser.add_argument("--select", type=int, default=3, help="PEs per handle resolution")
    parser.add_argument("--sizes", default="1000,10000,100000", help="pool sizes")
    parser.add_argument("--policies", default=",".join(POLICIES), help="policies to run")
    parser.add_argument("--markdown", action="store_true", help="print Markdown tables")
    args = parser.parse_args()
    sizes = [int(size) for size in args.sizes.split(",")]
    policies = args.policies.split(",")
    operations = OPERATIONS
    md = args.markdown
    started = time.perf_counter()

    print(
        f"Python {sys.version.split()[0]}; {args.ops} operations per cell;"
        f" select N = {args.select}; ops/s (higher is better)\n"
    )
    header = ["policy", "operation", *[f"{size // 1000}k PEs" for size in sizes]]
    header.append(f"cost {sizes[-1] // 1000}k/{sizes[0] // 1000}k")
    rows: list[list[str]] = []
    worst = 0.0
    # Every pool of every policy first, then the rounds over all of them: a burst of load
    # from other processes then spoils one round of each cell, not every round of a few.
    benches = {
        policy_name: [PoolBench(policy_name, size, args.ops, args.select) for size in sizes]
        for policy_name in policies
    }
    for _ in range(args.rounds):
        for policy_benches in benches.values():
            for bench in policy_benches:
                bench.round()
    best = {
        name: [bench.best for bench in policy_benches] for name, policy_benches in benches.items()
    }
    del benches
    gc.collect()
    for policy_name in policies:
        results = best[policy_name]
        for operation in operations:
            costs = [result[operation] for result in results]
            ratio = costs[-1] / costs[0]
            worst = max(worst, ratio)
            rows.append([policy_name, operation, *map(rate, costs), f"{ratio:.2f}x"])
    print_table(header, rows, md)
    print(f"\nworst cost ratio {sizes[-1] // 1000}k/{sizes[0] // 1000}k: {worst:.2f}x\n")

    memory_rows = []
    for policy_name in ("RR", "LU", "WRAND"):
        own, parameter = memory_per_pe(policy_name)
        memory_rows.append(
            [policy_name, f"{own:.0f}", f"{parameter:.0f}", f"{own + parameter:.0f}"]
        )
    print_table(
        ["policy", "handlespace bytes/PE", "PE parameter bytes/PE", "total bytes/PE"],
        memory_rows,
        md,
    )

    if not args.no_million:
        print()
        result = bench_million(10_000, 100, args.ops, args.select)
        print_table(
            ["1M PEs over 10k pools (LU)", "ops/s"],
            [[operation, rate(result[operation])] for operation in (*operations, "build")],
            md,
        )
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"\npeak resident memory {peak:.0f} MB")
    print(f"\ntotal time {time.perf_counter() - started:.0f} s")


def print_table(header: list[str], rows: list[list[str]], markdown: bool) -> None:
    """Print aligned columns, or a Markdown table."""
    if markdown:
        print("| " + " | ".join(header) + " |")
        print("|" + "|".join("---" for _ in header) + "|")
        for row in rows:
            print("| " + " | ".join(row) + " |")
        return
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows, strict=True)]
    for line in (header, *rows):
        print("  ".join(cell.rjust(width) for cell, width in zip(line, widths, strict=True)))


if __name__ == "__main__":
    main()
