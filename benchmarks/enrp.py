"""ENRP server pool benchmark: takeover time, handlespace synchronisation, update propagation.

1. **Takeover** (real processes): three ``twistd -n enrp`` on loopback over TLS-PSK and one
   pool element process (``twisted_rserpool._demo.pe``) registered at the third; the third
   is killed with SIGKILL and the time until both survivors list the PE under one new home
   (admin JSON, polled every 20 ms) is measured; median over ``--runs``, beside the
   configured MAX-TIME-LAST-HEARD + MAX-TIME-NO-RESPONSE.
2. **Synchronisation** (in memory, codec included): a new server downloads 10k and 100k
   PEs from its mentor (ENRP_HANDLE_TABLE_REQUEST/RESPONSE pages, every message encoded
   and decoded); wall-clock time and pages.
3. **HANDLE_UPDATE propagation** (in memory, codec included, no sockets): from a
   registration at one server until every other server of a full mesh of 3 and 5 applied
   it; median and 99th percentile over 2000 updates.

Run: ``python benchmarks/enrp.py [--runs 3] [--no-processes] [--markdown]`` (about a
minute on two cores).
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.enrp.test_peers import POOL, Network, element
from twisted_rserpool.handlespace import UNLIMITED, Handlespace


def print_table(header: list[str], rows: list[list[str]], markdown: bool) -> None:
    if markdown:
        print("| " + " | ".join(header) + " |")
        print("|" + "|".join("---" for _ in header) + "|")
        for row in rows:
            print("| " + " | ".join(row) + " |")
        return
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    print("  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)))
    for row in rows:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)))


# ---------------------------------------------------------------------- takeover


def takeover_runs(runs: int) -> tuple[list[float], float, float]:
    """Seconds from SIGKILL of the home server to the PE listed under its new home."""
    from tests.enrp import test_pool_processes as processes  # noqa: PLC0415

    results: list[float] = []
    for _ in range(runs):
        directory = Path(tempfile.mkdtemp(prefix="enrp-bench-"))
        pool = processes.Pool(directory, 3)
        try:
            pool.startAll()
            a, b, c = pool.servers
            _, pe = pool.startElement(c, "bench")
            deadline = time.monotonic() + 20
            while not all(pe in s.elements() for s in (a, b)):
                if time.monotonic() > deadline:
                    raise RuntimeError("the PE was not replicated")
                time.sleep(0.02)
            pool.kill(c)
            killed = time.monotonic()
            deadline = killed + 30
            while True:
                try:
                    homes = {a.elements().get(pe), b.elements().get(pe)}
                except OSError:
                    homes = set()
                if len(homes) == 1 and homes <= {a.serverId, b.serverId}:
                    break
                if time.monotonic() > deadline:
                    raise RuntimeError("no takeover")
                time.sleep(0.02)
            results.append(time.monotonic() - killed)
        finally:
            pool.stop()
    return results, processes.LAST_HEARD, processes.NO_RESPONSE


# ---------------------------------------------------------------------- sync


def sync_time(count: int, page: int) -> tuple[float, int]:
    """Wall-clock seconds for a new server to download ``count`` PEs from its mentor."""
    net = Network()
    mentor = net.add(
        1, handle_table_page=page, handlespace=Handlespace(UNLIMITED, rng=random.Random(1))
    )
    pools = max(1, count // 100)
    for pe in range(1, count + 1):
        mentor.handlespace.register(
            b"pool-%d" % (pe % pools), element(pe, 1, 1024 + pe % 60000), now=0.0
        )
    mentor.core.take_actions()
    newcomer = net.add(
        2,
        expect_mentor=True,
        handle_table_page=page,
        handlespace=Handlespace(UNLIMITED, rng=random.Random(2)),
    )
    start = time.perf_counter()
    net.connect(newcomer, mentor)
    net.deliver()
    elapsed = time.perf_counter() - start
    assert newcomer.core.synchronised and len(newcomer.handlespace) == count
    return elapsed, mentor.core.counters["table_pages_sent"]


# ---------------------------------------------------------------------- propagation


def propagation(servers: int, updates: int) -> tuple[float, float]:
    """Median and p99 seconds from a registration at one server to all others applying it."""
    net = Network()
    nodes = [net.add(n) for n in range(1, servers + 1)]
    net.mesh(*nodes)
    net.deliver()
    samples: list[float] = []
    rng = random.Random(5)
    for pe in range(1, updates + 1):
        origin = rng.choice(nodes)
        start = time.perf_counter()
        origin.register(pe, net.now)
        net.flush(origin)
        net.deliver()
        samples.append(time.perf_counter() - start)
        if pe % 500 == 0:
            assert all(node.handlespace.get(POOL, pe) is not None for node in nodes)
    samples.sort()
    return statistics.median(samples), samples[int(len(samples) * 0.99) - 1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="takeover runs (real processes)")
    parser.add_argument("--no-processes", action="store_true", help="skip the takeover runs")
    parser.add_argument("--page", type=int, default=200, help="PEs per handle table page")
    parser.add_argument("--markdown", action="store_true", help="print Markdown tables")
    arguments = parser.parse_args()
    md = arguments.markdown

    if not arguments.no_processes:
        results, last_heard, no_response = takeover_runs(arguments.runs)
        print("\nTakeover after SIGKILL of the home server (3 twistd enrp, TLS-PSK, loopback)\n")
        print_table(
            ["runs", "median", "min", "max", "MAX-TIME-LAST-HEARD + MAX-TIME-NO-RESPONSE"],
            [
                [
                    str(len(results)),
                    f"{statistics.median(results):.2f} s",
                    f"{min(results):.2f} s",
                    f"{max(results):.2f} s",
                    f"{last_heard} + {no_response} = {last_heard + no_response} s",
                ]
            ],
            md,
        )

    print(f"\nInitial synchronisation from the mentor (in memory, {arguments.page} PEs a page)\n")
    rows = []
    for count in (10_000, 100_000):
        elapsed, pages = sync_time(count, arguments.page)
        rows.append(
            [
                f"{count // 1000}k",
                str(pages),
                f"{elapsed:.2f} s",
                f"{count / elapsed:,.0f} PEs/s",
            ]
        )
    print_table(["PEs", "pages", "time", "rate"], rows, md)

    print("\nHANDLE_UPDATE propagation, full mesh (in memory, codec included, no sockets)\n")
    rows = []
    for servers in (3, 5):
        median, p99 = propagation(servers, 2000)
        rows.append([str(servers), f"{median * 1e6:.0f} us", f"{p99 * 1e6:.0f} us"])
    print_table(["servers", "median", "p99"], rows, md)
    print()


if __name__ == "__main__":
    main()
