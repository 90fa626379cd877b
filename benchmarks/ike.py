"""IKEv2 gateway throughput: ``twistd vpngw`` beside strongSwan's charon, same load generator.

Run as root (charon needs a mount namespace) with ``.venv/bin/python -m benchmarks.ike``
(about 2 minutes) or ``--duration 2 --rounds 1`` for a quicker, noisier run. For each
gateway and each DH group (X25519, MODP2048) it measures, with the same generator process,
the rate (operations per second of wall time) and the gateway's own CPU time per operation
(user + system time of the gateway process, all threads, from /proc: this does not depend
on how busy the rest of the machine is, nor on the generator keeping up):

- **IKE_SA_INIT responses/s**: the generator keeps ``--window`` IKE_SA_INIT requests in
  flight (each with a new SPIi; the KE value and nonce are precomputed, so the generator
  does no Diffie-Hellman work) and counts full responses (SA, KE, Nr). Every response costs
  the gateway a DH key pair, the shared secret and the key derivation.
- **handshakes/s**: full IKE_SA_INIT + IKE_AUTH (PSK, childless) handshakes completed per
  second, ``--window`` at a time, made by our sans-IO initiator (``IkeEndpoint``) over one
  UDP socket. The generator does as much cryptography as the gateway here, so on a small
  machine it can be the limit: compare the ratio, and read absolute rates with care.

Both gateways listen on 127.0.0.x with non-500 ports (so every datagram carries the RFC 3948
non-ESP marker for both), offer exactly the suite under test, have cookies and half-open
limits raised out of the way, and log nothing per SA (charon: logging off; vpngw: log file
to a file, one line per SA). The generator and each gateway are separate processes; on a
2-core machine they share the cores. Each measurement alternates the gateways
``--rounds`` times, each time freshly started, and keeps the best rate and the lowest CPU
cost. The script prints a Markdown table with the ratios vpngw / charon (for rates, above 1
means vpngw is faster; for CPU per operation, above 1 means vpngw spends more).
"""

from __future__ import annotations

import argparse
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from tests.interop.charon import Charon, free_udp_port
from twisted_rserpool.ike.config import Identity, IkeConfig, PskTable
from twisted_rserpool.ike.constants import ExchangeType
from twisted_rserpool.ike.crypto import DH_GROUPS
from twisted_rserpool.ike.endpoint import IkeEndpoint
from twisted_rserpool.ike.events import IkeEvent, IkeSaEstablished, IkeSaFailed
from twisted_rserpool.ike.payloads import (
    IkeMessage,
    KeyExchangePayload,
    NoncePayload,
    SecurityAssociationPayload,
)
from twisted_rserpool.ike.proposals import ike_proposal, parse_ike_suites
from twisted_rserpool.ike.sa import to_payload

ROOT = Path(__file__).resolve().parents[1]
PSK = "bench-psk"
GROUPS = ("x25519", "modp2048")
GATEWAY_HOST = "127.0.0.61"

Address = tuple[str, int]


# ---------------------------------------------------------------------------- gateways


class VpnGw:
    """``twistd -n vpngw`` with limits raised, in a subprocess; ``extra`` adds options."""

    name = "vpngw"

    def __init__(self, tmp: Path, host: str = GATEWAY_HOST, *extra: str) -> None:
        self.port = free_udp_port()
        secrets = tmp / "secrets"
        secrets.write_text(f'* : "{PSK}"\n')
        self.logfile = tmp / f"vpngw-{host}.log"
        twistd = Path(sys.executable).parent / "twistd"
        self.process = subprocess.Popen(
            [
                str(twistd), "-n", "--pidfile=", f"--logfile={self.logfile}", "vpngw",
                "--listen", host, "--port", str(self.port), "--secrets", str(secrets),
                "--identity", "gw@bench",
                "--proposals", "aes128-sha256-x25519, aes128-sha256-modp2048",
                "--cookie-threshold", "10000000", "--max-sas", "10000000",
                "--max-half-open", "10000000", "--half-open-timeout", "30", *extra,
            ],
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 15
        while "IKEv2 on udp" not in (self.logfile.read_text() if self.logfile.exists() else ""):
            if time.monotonic() > deadline or self.process.poll() is not None:
                raise RuntimeError("vpngw did not start")
            time.sleep(0.05)
        self.address = (host, self.port)
        self.pid = self.process.pid

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


class StrongSwan:
    """charon as a gateway with DoS protection and cookies out of the way, logging off."""

    name = "charon"

    def __init__(self, tmp: Path) -> None:
        conf = f"""connections {{ gw {{
  version = 2
  mobike = no
  local_addrs = {GATEWAY_HOST}
  proposals = aes128-sha256-x25519, aes128-sha256-modp2048
  local {{ auth = psk
    id = gw@bench }}
  remote {{ auth = psk }}
}} }}
secrets {{ ike-any {{ secret = "{PSK}" }} }}
"""
        extra = (
            "dos_protection = no\n  cookie_threshold = 10000000\n"
            "  init_limit_half_open = 0\n  block_threshold = 10000000\n"
            "  half_open_timeout = 30\n  ikesa_table_size = 4096"
        )
        self.charon = Charon(conf, extra=extra, log_level=-1, ike_level=-1)
        self.charon.start()
        self.address = (GATEWAY_HOST, self.charon.port)
        assert self.charon.process is not None
        self.pid = self.charon.process.pid

    def stop(self) -> None:
        self.charon.stop()


# ------------------------------------------------------------------------ load generator


def framed(data: bytes) -> bytes:
    return b"\x00\x00\x00\x00" + data


def init_responses(target: Address, group: str, duration: float, window: int) -> tuple[int, float]:
    """Full IKE_SA_INIT responses, and seconds, with ``window`` requests in flight."""
    (suite,) = parse_ike_suites(f"aes128-sha256-{group}")
    key = DH_GROUPS[suite.dh].generate()
    template = IkeMessage(
        b"\x01" * 8,
        bytes(8),
        ExchangeType.IKE_SA_INIT,
        0,
        (
            SecurityAssociationPayload(tuple(to_payload(p) for p in ike_proposal([suite]))),
            KeyExchangePayload(suite.dh, key.public_value),
            NoncePayload(os.urandom(32)),
        ),
        initiator=True,
    ).encode()
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(0.2)
    counter = 0
    in_flight: dict[bytes, float] = {}

    def send_one() -> None:
        nonlocal counter
        counter += 1
        spi = counter.to_bytes(8, "big")
        in_flight[spi] = time.monotonic()
        sock.sendto(framed(spi + template[8:]), target)

    answered = 0
    start = time.monotonic()
    end = start + duration
    for _ in range(window):
        send_one()
    while (now := time.monotonic()) < end:
        try:
            data = sock.recv(65535)
        except TimeoutError:
            data = b""
        if data:
            spi = data[4:12]
            if in_flight.pop(spi, None) is not None:
                if len(data) > 100:  # SA, KE and Nr, not a notify
                    answered += 1
                send_one()
        for spi, sent in list(in_flight.items()):
            if now - sent > 1.0:  # lost: replace it
                del in_flight[spi]
                send_one()
    sock.close()
    return answered, time.monotonic() - start


def handshakes(target: Address, group: str, duration: float, window: int) -> tuple[int, float]:
    """Complete PSK handshakes (IKE_SA_INIT + IKE_AUTH, childless), and seconds."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    sock.bind(("127.0.0.1", 0))
    sock.setblocking(False)
    config = IkeConfig(
        Identity.parse("client@bench"),
        PskTable(default=PSK.encode()),
        ike_suites=parse_ike_suites(f"aes128-sha256-{group}"),
        childless="force",
        retransmit_timeout=1.0,
        retransmit_tries=2,
        initial_contact=False,  # charon would delete every older SA of this identity
    )
    endpoint = IkeEndpoint(config, sock.getsockname())
    done = failed = 0
    start = time.monotonic()
    end = start + duration
    for _ in range(window):
        endpoint.initiate(target, start)

    def settle(events: list[IkeEvent], now: float) -> None:
        nonlocal done, failed
        for event in events:
            if isinstance(event, IkeSaEstablished):
                done += 1
                endpoint.initiate(target, now)
            elif isinstance(event, IkeSaFailed):
                failed += 1
                endpoint.initiate(target, now)

    while (now := time.monotonic()) < end:
        for data, address in endpoint.datagrams_to_send():
            sock.sendto(data, address)
        try:
            while True:
                data, address = sock.recvfrom(65535)
                settle(endpoint.receive_datagram(data, address, time.monotonic()), now)
                for out, out_address in endpoint.datagrams_to_send():
                    sock.sendto(out, out_address)
        except BlockingIOError:
            pass
        timer = endpoint.get_timer()
        if timer is not None and timer <= now:
            settle(endpoint.handle_timer(now), now)
        else:
            time.sleep(0.0002)
    sock.close()
    if failed:
        print(f"  ({failed} handshakes failed)", file=sys.stderr)
    return done, time.monotonic() - start


# ---------------------------------------------------------------------------------- main


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (all its threads) so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


Measure = Callable[[Address, str, float, int], tuple[int, float]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--duration", type=float, default=4.0, help="seconds per measurement")
    parser.add_argument("--window", type=int, default=32, help="requests/handshakes in flight")
    parser.add_argument(
        "--rounds", type=int, default=2, help="alternating runs per gateway; the best is kept"
    )
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("run as root: charon needs its own mount namespace")
    rates: dict[tuple[str, str, str], float] = {}
    costs: dict[tuple[str, str, str], float] = {}
    measures: list[tuple[str, Measure]] = [
        ("IKE_SA_INIT responses", init_responses),
        ("handshakes", handshakes),
    ]
    for group in GROUPS:
        for label, measure in measures:
            for _ in range(args.rounds):
                for gateway_class in (VpnGw, StrongSwan):
                    # A fresh gateway for every run: no half-open SAs left over.
                    with tempfile.TemporaryDirectory(prefix="ikebench-") as tmp:
                        gateway = gateway_class(Path(tmp))
                        try:
                            measure(gateway.address, group, min(1.0, args.duration), args.window)
                            cpu = cpu_seconds(gateway.pid)
                            count, elapsed = measure(
                                gateway.address, group, args.duration, args.window
                            )
                            cpu = cpu_seconds(gateway.pid) - cpu
                        finally:
                            gateway.stop()
                    key = (gateway.name, group, label)
                    rate = count / elapsed
                    cost = cpu / count * 1e6 if count else float("inf")
                    rates[key] = max(rates.get(key, 0.0), rate)
                    costs[key] = min(costs.get(key, float("inf")), cost)
                    print(
                        f"  {gateway.name:6} {group:8} {label:22} {rate:8.0f}/s "
                        f"{cost:8.0f} us CPU each",
                        file=sys.stderr,
                    )
    print(
        f"\nPython {platform.python_version()}, {os.cpu_count()} CPUs, "
        f"{args.duration:g} s per run, window {args.window}, best of {args.rounds} rounds\n"
    )
    print(
        "| measurement | DH group | vpngw /s | charon /s | ratio | vpngw CPU us | "
        "charon CPU us | CPU ratio |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for label, _ in measures:
        for group in GROUPS:
            ours, theirs = rates[("vpngw", group, label)], rates[("charon", group, label)]
            our_cost, their_cost = costs[("vpngw", group, label)], costs[("charon", group, label)]
            print(
                f"| {label} | {group} | {ours:.0f} | {theirs:.0f} | {ours / theirs:.2f} | "
                f"{our_cost:.0f} | {their_cost:.0f} | {our_cost / their_cost:.2f} |"
            )


if __name__ == "__main__":
    main()
