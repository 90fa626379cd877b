"""IKEv2 redirect (RFC 5685) cost: ``twistd vpngw`` redirecting vs strongSwan's charon answering.

Run as root (charon needs a mount namespace) with ``.venv/bin/python -m benchmarks.redirect``
(about a minute) or ``--duration 2 --rounds 1`` for a quicker, noisier run. In one run, on
one machine, with the same load generator process (``benchmarks.ike``'s method):

- **vpngw IKE_SA_INIT redirects/s**: a pure redirector (``--redirect-always``) answers every
  IKE_SA_INIT request carrying N(REDIRECT_SUPPORTED) with N(REDIRECT, gateway, Ni): no state,
  no Diffie-Hellman. The generator keeps ``--window`` requests in flight, each with a new
  SPIi, and counts REDIRECT answers.
- **charon IKE_SA_INIT responses/s**: the same requests to charon as a gateway (DoS
  protection and cookies out of the way, logging off), counting full responses (SA, KE, Nr):
  each costs a key pair, the shared secret and the key derivation. X25519 and MODP2048.
- **setup latency a redirect adds**: our sans-IO initiator on a UDP socket establishes
  ``--setups`` IKE SAs with a vpngw directly, and as many starting at a redirecting vpngw
  (IKE_SA_INIT redirect to the same gateway), one at a time, alternating; the medians and
  their difference are printed.

Every gateway listens on 127.0.0.x with a non-500 port; each rate is the best of
``--rounds`` freshly started runs. The gateway's CPU time per operation (from /proc) is
printed too; it does not depend on the generator keeping up.
"""

from __future__ import annotations

import argparse
import os
import platform
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.ike import PSK, StrongSwan, VpnGw, cpu_seconds, framed
from twisted_rserpool.ike.config import Identity, IkeConfig, PskTable
from twisted_rserpool.ike.constants import ExchangeType, NotifyType
from twisted_rserpool.ike.crypto import DH_GROUPS
from twisted_rserpool.ike.endpoint import IkeEndpoint
from twisted_rserpool.ike.events import IkeSaEstablished, IkeSaFailed
from twisted_rserpool.ike.payloads import (
    IkeMessage,
    KeyExchangePayload,
    NoncePayload,
    SecurityAssociationPayload,
    redirect_supported_notify,
)
from twisted_rserpool.ike.proposals import ike_proposal, parse_ike_suites
from twisted_rserpool.ike.sa import to_payload

ROOT = Path(__file__).resolve().parents[1]
REDIRECTOR = "127.0.0.62"
TARGET = "127.0.0.63"
Address = tuple[str, int]


Gateway = VpnGw
"""A ``twistd -n vpngw`` subprocess (shared with benchmarks/ike.py)."""


def init_answers(
    target: Address, group: str, duration: float, window: int, redirects: bool
) -> tuple[int, float]:
    """IKE_SA_INIT answers of the expected kind (REDIRECT or full), and seconds."""
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
            redirect_supported_notify(),
        ),
        initiator=True,
    ).encode()
    redirect_type = NotifyType.REDIRECT.to_bytes(2, "big")
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
    next_sweep = start + 0.1
    while (now := time.monotonic()) < end:
        try:
            data = sock.recv(65535)
        except TimeoutError:
            data = b""
        if data:
            spi = data[4:12]
            if in_flight.pop(spi, None) is not None:
                is_redirect = data[4 + 28 + 6 : 4 + 28 + 8] == redirect_type
                if is_redirect if redirects else len(data) > 100:
                    answered += 1
                send_one()
        if now >= next_sweep:  # replace lost requests, ten times a second
            next_sweep = now + 0.1
            for spi, sent in list(in_flight.items()):
                if now - sent > 1.0:
                    del in_flight[spi]
                    send_one()
    sock.close()
    return answered, time.monotonic() - start


def setup_times(targets: list[Address], redirect_port: int, count: int) -> list[list[float]]:
    """Seconds to establish ``count`` IKE SAs starting at each of ``targets``, one after
    the other and taking the targets in turn (so that load changes hit all alike)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(0.05)
    config = IkeConfig(
        Identity.parse("client@bench"),
        PskTable(default=PSK.encode()),
        ike_suites=parse_ike_suites("aes128-sha256-x25519"),
        childless="force",
        initial_contact=False,
        redirect_port=redirect_port,
        max_redirects=1_000_000,
    )
    endpoint = IkeEndpoint(config, sock.getsockname())
    times: list[list[float]] = [[] for _ in targets]
    base = time.monotonic()
    for turn in range(count * len(targets)):
        target = targets[turn % len(targets)]
        start = time.monotonic()
        endpoint.initiate(target, start - base)
        up = False
        while not up and time.monotonic() - start < 5.0:
            for data, address in endpoint.datagrams_to_send():
                sock.sendto(data, address)
            try:
                data, address = sock.recvfrom(65535)
            except TimeoutError:
                endpoint.handle_timer(time.monotonic() - base)
                continue
            events = endpoint.receive_datagram(data, address, time.monotonic() - base)
            up = any(isinstance(e, IkeSaEstablished) for e in events)
            if any(isinstance(e, IkeSaFailed) for e in events):
                raise RuntimeError(f"setup failed: {events}")
        if not up:
            raise RuntimeError("setup timed out")
        times[turn % len(targets)].append(time.monotonic() - start)
    sock.close()
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=4.0)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--window", type=int, default=64)
    parser.add_argument("--setups", type=int, default=200)
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("run as root: charon needs a mount namespace")
    print(
        f"# {platform.python_implementation()} {platform.python_version()}, {os.cpu_count()} CPUs"
    )
    rows: list[tuple[str, str, float, float]] = []
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        best: dict[tuple[str, str], tuple[float, float]] = {}
        for _ in range(args.rounds):
            for group in ("x25519", "modp2048"):
                for name in ("vpngw", "charon"):
                    gateway: Gateway | StrongSwan = (
                        Gateway(tmp, REDIRECTOR, "--redirect-always", "--redirect-to", TARGET)
                        if name == "vpngw"
                        else StrongSwan(tmp)
                    )
                    try:
                        before = cpu_seconds(gateway.pid)
                        count, seconds = init_answers(
                            gateway.address, group, args.duration, args.window, name == "vpngw"
                        )
                        cpu = cpu_seconds(gateway.pid) - before
                    finally:
                        gateway.stop()
                    rate = count / seconds
                    cost = cpu / max(1, count) * 1e6
                    old_rate, old_cost = best.get((name, group), (0.0, float("inf")))
                    best[(name, group)] = (max(rate, old_rate), min(cost, old_cost))
        for group in ("x25519", "modp2048"):
            for name in ("vpngw", "charon"):
                rate, cost = best[(name, group)]
                rows.append((name, group, rate, cost))
        print()
        print("| gateway | answer | group | answers/s | gateway CPU µs/answer |")
        print("|---|---|---|---:|---:|")
        for name, group, rate, cost in rows:
            answer = "N(REDIRECT)" if name == "vpngw" else "SA, KE, Nr"
            print(f"| {name} | {answer} | {group} | {rate:.0f} | {cost:.0f} |")
        for group in ("x25519", "modp2048"):
            ratio = best[("vpngw", group)][0] / best[("charon", group)][0]
            print(f"\nvpngw redirects / charon responses ({group}): {ratio:.2f}x")
        target = Gateway(tmp, TARGET)
        redirector = Gateway(tmp, REDIRECTOR, "--redirect-always", "--redirect-to", TARGET)
        try:
            setup_times([target.address, redirector.address], target.port, 10)  # warm up
            direct, redirected = setup_times(
                [target.address, redirector.address], target.port, args.setups
            )
        finally:
            target.stop()
            redirector.stop()
        d, r = statistics.median(direct), statistics.median(redirected)
        print(
            f"\nsetup latency (median of {args.setups}, x25519, PSK, childless): direct "
            f"{d * 1000:.2f} ms, via an IKE_SA_INIT redirect {r * 1000:.2f} ms, "
            f"added {(r - d) * 1000:.2f} ms"
        )


if __name__ == "__main__":
    main()
