"""ESP tunnel throughput and latency: ``twistd vpngw --tun`` beside strongSwan's own gateway.

Run as root with ``.venv/bin/python -m benchmarks.esp`` (about a minute) or ``--quick``
(seconds, noisier), under ``flock /tmp/strongswan.lock`` when other interop tests may run.
It builds the namespaces of ``tests/interop/test_tunnel.py`` (client -- gateway -- server)
and, for each ESP suite (``SUITES``) and each gateway, starts the gateway afresh (vpngw
``--tun``, or charon with kernel-libipsec as ../shared/interop/strongswan-libipsec/gw
configures it), connects the same strongSwan kernel-libipsec client, and measures through
the tunnel:

- **ping**: ``--pings`` ICMP echoes 50 ms apart, the average and minimum RTT;
- **down** and **up**: one TCP connection carrying ``--size`` MiB from the server to the
  client (the gateway encrypts) and from the client to the server (it decrypts), timed by
  the receiver from its first to its last octet, in Mbit/s; and the gateway process's
  CPU time (user + system, from /proc) per transferred MiB.

Each is run ``--rounds`` times per gateway, alternating; the best rate, the lowest RTT and
the lowest CPU cost are kept. The client's charon also does userspace ESP on the same two
cores, so it can be the limit for both gateways: compare the CPU columns. Prints a Markdown
table with the ratios vpngw / strongSwan.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.interop import test_tunnel as tunnel
from tests.interop import tunnel_support as support

SUITES = ("aes128gcm16", "chacha20poly1305")
GATEWAYS = ("vpngw", "strongswan")
PORT = 9000
ROOT = Path(__file__).resolve().parents[1]
GW_SWANCTL = """connections { rw {
  version = 2
  mobike = no
  encap = yes
  local_addrs = 192.0.2.1
  pools = clients
  proposals = aes128-sha256-x25519
  local { auth = psk
    id = gw@test }
  remote { auth = psk
    id = client@test }
  children { net { local_ts = 198.51.100.0/24
    esp_proposals = aes128gcm16, chacha20poly1305 } }
} }
pools { clients { addrs = 10.99.0.0/24 } }
secrets { ike-client { id = client@test
  secret = "libipsec-test-psk" } }
"""

# One TCP transfer: "serve MODE SIZE" accepts one connection and, for "down", sends SIZE
# octets, for "up", receives them; the receiving side prints seconds from first to last
# octet. "connect MODE SIZE HOST" is the other end.
TRANSFER = r"""
import socket, sys, time
role, mode, size = sys.argv[1], sys.argv[2], int(sys.argv[3])
chunk = bytes(65536)
if role == "serve":
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((sys.argv[4], PORT_NUMBER)); s.listen(1); print("ready", flush=True)
    c, _ = s.accept()
else:
    c = socket.create_connection((sys.argv[4], PORT_NUMBER), timeout=60)
sending = (role == "serve") == (mode == "down")
if sending:
    left = size
    while left > 0:
        n = c.send(chunk[: min(left, len(chunk))]); left -= n
    c.shutdown(socket.SHUT_WR); c.recv(1)
else:
    got, first = 0, None
    while got < size:
        data = c.recv(1 << 20)
        if not data:
            break
        if first is None:
            first = time.monotonic()
        got += len(data)
    print(got, time.monotonic() - first, flush=True)
c.close()
""".replace("PORT_NUMBER", str(PORT))


@dataclass
class Result:
    ping_avg: float = float("inf")
    ping_min: float = float("inf")
    down: float = 0.0
    up: float = 0.0
    down_cpu: float = float("inf")
    up_cpu: float = float("inf")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def transfer(net: tunnel.Network, mode: str, size: int, gateway_pid: int) -> tuple[float, float]:
    """Mbit/s of one transfer and the gateway's CPU seconds per MiB."""
    server = subprocess.Popen(
        ["ip", "netns", "exec", net.server, sys.executable, "-c", TRANSFER, "serve", mode,
         str(size), tunnel.SERVER],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert server.stdout is not None and server.stdout.readline().strip() == "ready"
        before = cpu_seconds(gateway_pid)
        client = subprocess.run(
            ["ip", "netns", "exec", net.client, sys.executable, "-c", TRANSFER, "connect", mode,
             str(size), tunnel.SERVER],
            capture_output=True, text=True, timeout=120, check=True,
        )  # fmt: skip
        cpu = cpu_seconds(gateway_pid) - before
        out = client.stdout if mode == "down" else server.communicate(timeout=60)[0]
        got, seconds = out.split()
        assert int(got) == size, (got, size)
        return int(got) * 8 / float(seconds) / 1e6, cpu / (size / 2**20)
    finally:
        if server.poll() is None:
            server.kill()
        server.wait()


def ping(net: tunnel.Network, count: int) -> tuple[float, float]:
    out = subprocess.run(
        ["ip", "netns", "exec", net.client, "ping", "-q", "-c", str(count), "-i", "0.05",
         tunnel.SERVER],
        capture_output=True, text=True, timeout=60, check=True,
    ).stdout  # fmt: skip
    match = re.search(r"= ([\d.]+)/([\d.]+)/", out)
    assert match is not None, out
    return float(match.group(2)), float(match.group(1))


@contextmanager
def gateway(net: tunnel.Network, work: Path, which: str) -> Iterator[int]:
    """Start one gateway in the gateway namespace; yields its pid."""
    if which == "vpngw":
        secrets = work / "secrets"
        secrets.write_text(f'client@test : "{tunnel.PSK}"\n')
        secrets.chmod(0o600)  # vpngw refuses a key file others may read
        twistd = str(Path(sys.executable).parent / "twistd")
        log = work / "vpngw.log"
        log.unlink(missing_ok=True)
        process = support.Process(
            net.gateway,
            [twistd, "-n", "--pidfile=", f"--logfile={log}", "vpngw", "--listen",
             tunnel.GATEWAY, "--port", "500", "--secrets", str(secrets), "--identity",
             "gw@test", "--address-pool", "10.99.0.0/24", "--subnet", "198.51.100.0/24",
             "--tun", "vpngw0"],
            work / "vpngw.stdout",
        )  # fmt: skip
        try:
            process.logfile = log
            process.wait_for_log("NAT traversal (RFC 3948 framing) on udp")
            yield process.process.pid
        finally:
            process.stop()
        return
    charon = support.LibipsecCharon(net.gateway, GW_SWANCTL)
    charon.conf.write_text(
        charon.conf.read_text().replace("install_virtual_ip = yes", "install_virtual_ip = no")
    )
    try:
        charon.start()
        assert charon.process is not None
        yield charon.process.pid
    finally:
        charon.stop()


def measure(suite: str, which: str, args: argparse.Namespace, result: Result) -> None:
    size = args.size * 2**20
    with tempfile.TemporaryDirectory(prefix="esp-bench-") as tmp, tunnel.Network() as net:
        work = Path(tmp)
        with gateway(net, work, which) as pid:
            client = support.LibipsecCharon(net.client, tunnel.client_conf(suite, tunnel.Family(4)))
            try:
                client.start()
                client.swanctl("--initiate", "--child", "net", "--timeout", "20")
                avg, low = ping(net, args.pings)
                result.ping_avg, result.ping_min = (
                    min(result.ping_avg, avg),
                    min(result.ping_min, low),
                )
                rate, cpu = transfer(net, "down", size, pid)
                result.down, result.down_cpu = max(result.down, rate), min(result.down_cpu, cpu)
                rate, cpu = transfer(net, "up", size, pid)
                result.up, result.up_cpu = max(result.up, rate), min(result.up_cpu, cpu)
            finally:
                client.stop()


def ratio(ours: float, theirs: float) -> str:
    """``ours / theirs`` to two places; ``-`` where theirs measured nothing (a short run
    whose CPU time rounds to zero, as kernel ESP's can)."""
    return f"{ours / theirs:.2f}" if theirs else "-"


def table(results: dict[tuple[str, str], Result]) -> str:
    lines = [
        "| ESP | gateway | ping avg (min) ms | down Mbit/s | up Mbit/s | gw CPU ms/MiB down | up |",
        "|---|---|---|---|---|---|---|",
    ]
    for suite in SUITES:
        for which in GATEWAYS:
            r = results.get((suite, which))
            if r is None:
                continue
            lines.append(
                f"| {suite} | {which} | {r.ping_avg:.2f} ({r.ping_min:.2f}) | {r.down:.0f} | "
                f"{r.up:.0f} | {r.down_cpu * 1000:.1f} | {r.up_cpu * 1000:.1f} |"
            )
        ours, theirs = results.get((suite, "vpngw")), results.get((suite, "strongswan"))
        if ours is not None and theirs is not None:
            lines.append(
                f"| {suite} | vpngw / strongSwan | {ratio(ours.ping_avg, theirs.ping_avg)} | "
                f"{ratio(ours.down, theirs.down)} | {ratio(ours.up, theirs.up)} | "
                f"{ratio(ours.down_cpu, theirs.down_cpu)} | {ratio(ours.up_cpu, theirs.up_cpu)} |"
            )
    return "\n".join(lines)


def run(
    args: argparse.Namespace, suites: tuple[str, ...] = SUITES
) -> dict[tuple[str, str], Result]:
    """Measure every gateway for each of ``suites``, ``args.rounds`` times, alternating."""
    results = {(s, g): Result() for s in suites for g in GATEWAYS}
    for suite in suites:
        for _ in range(args.rounds):
            for which in GATEWAYS:
                measure(suite, which, args, results[(suite, which)])
    return results


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=64, help="MiB per transfer (64)")
    parser.add_argument("--pings", type=int, default=50, help="pings per round (50)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds per gateway (3)")
    parser.add_argument("--quick", action="store_true", help="8 MiB, 10 pings, 1 round")
    args = parser.parse_args(argv)
    if args.quick:
        args.size, args.pings, args.rounds = 8, 10, 1
    os.chdir(ROOT)
    started = time.monotonic()
    results = run(args)
    print(table(results))
    print(f"({time.monotonic() - started:.0f} s)")


if __name__ == "__main__":
    main()
