"""Cost of the ESP core: microseconds per seal and per open, per cipher and packet size.

Run ``.venv/bin/python benchmarks/esp_core.py`` (about 20 s) or add ``--quick`` (a second or
two, noisier). For each suite a CHILD_SA pair is built as IKE negotiates it
(``EspSa.from_child``); a round seals ``count`` IPv4 packets of 64, 512 and 1400 octets
with the client's SA, then opens them with the gateway's (anti-replay, ICV, padding, inner
length and selector checks included), timed with ``time.perf_counter``. The table shows the
median round; ``Mbit/s`` is what one core would carry at that cost (inner octets, seal plus
open). Nothing here asserts anything about time.
"""

from __future__ import annotations

import argparse
import hashlib
import platform
import statistics
import struct
import time
from collections.abc import Sequence
from dataclasses import dataclass

import cryptography

from twisted_rserpool.esp import EspSa
from twisted_rserpool.ike.child import ChildSa, selector_from_network, split_keymat
from twisted_rserpool.ike.crypto import EncryptionId, IntegrityId
from twisted_rserpool.ike.proposals import ChildSuite

SUITES: tuple[ChildSuite, ...] = (
    ChildSuite(EncryptionId.AES_GCM_16, 128, None),
    ChildSuite(EncryptionId.AES_GCM_16, 256, None),
    ChildSuite(EncryptionId.CHACHA20_POLY1305, 256, None),
    ChildSuite(EncryptionId.AES_CBC, 128, IntegrityId.HMAC_SHA2_256_128),
    ChildSuite(EncryptionId.AES_CBC, 256, IntegrityId.HMAC_SHA2_384_192),
    ChildSuite(EncryptionId.AES_CBC, 256, IntegrityId.HMAC_SHA2_512_256),
)
SIZES: tuple[int, ...] = (64, 512, 1400)


def pair(suite: ChildSuite) -> tuple[EspSa, EspSa]:
    """(client, gateway) SAs of one CHILD_SA with fixed keys: 10.1/16 === 10.2/16."""
    keymat = hashlib.shake_256(str(suite).encode()).digest(2 * suite.keymat_length)
    ei, ai, er, ar = split_keymat(keymat, suite)
    ts_i = (selector_from_network("10.1.0.0/16"),)
    ts_r = (selector_from_network("10.2.0.0/16"),)

    def child(initiator: bool) -> ChildSa:
        spis = (b"\xc0\0\0\1", b"\xc0\0\0\2")
        return ChildSa(
            bytes(8), bytes(range(8)), initiator, "192.0.2.2", "192.0.2.1",
            spis[0] if initiator else spis[1], spis[1] if initiator else spis[0],
            suite, ts_i, ts_r, False, ei, ai, er, ar,
        )  # fmt: skip

    return EspSa.from_child(child(True)), EspSa.from_child(child(False))


def packet(size: int) -> bytes:
    """An IPv4 UDP packet of ``size`` octets from 10.1.0.5 to 10.2.0.7."""
    header = struct.pack(
        ">BBHHHBBH4s4s", 0x45, 0, size, 1, 0, 64, 17, 0, bytes((10, 1, 0, 5)),
        bytes((10, 2, 0, 7)),
    )  # fmt: skip
    return header + struct.pack(">HHHH", 12345, 53, size - 20, 0) + bytes(size - 28)


@dataclass(frozen=True)
class Result:
    """Median microseconds per seal and per open of one (suite, size)."""

    suite: ChildSuite
    size: int
    seal_us: float
    open_us: float

    @property
    def mbit(self) -> float:
        """Inner Mbit/s of one core doing both."""
        return self.size * 8 / (self.seal_us + self.open_us)


def measure(suite: ChildSuite, size: int, count: int, rounds: int) -> Result:
    """Time ``rounds`` rounds of ``count`` seals then ``count`` opens."""
    client, gateway = pair(suite)
    inner = packet(size)
    seals: list[float] = []
    opens: list[float] = []
    for _ in range(rounds):
        start = time.perf_counter()
        sealed = [client.seal(inner, 0.0) for _ in range(count)]
        middle = time.perf_counter()
        opened = [gateway.open(p, 0.0) for p in sealed]  # type: ignore[arg-type]
        end = time.perf_counter()
        if any(o != inner for o in opened):
            raise RuntimeError(f"{suite}: a packet did not round-trip")
        seals.append((middle - start) / count * 1e6)
        opens.append((end - middle) / count * 1e6)
    return Result(suite, size, statistics.median(seals), statistics.median(opens))


def run(
    suites: Sequence[ChildSuite] = SUITES,
    sizes: Sequence[int] = SIZES,
    count: int = 2000,
    rounds: int = 7,
) -> list[Result]:
    """Every (suite, size)."""
    return [measure(s, n, count, rounds) for s in suites for n in sizes]


def table(results: Sequence[Result]) -> str:
    """The results as a text table."""
    lines = [
        f"{'suite':<22} {'octets':>6} {'seal us':>8} {'open us':>8} {'Mbit/s':>8}",
    ]
    for r in results:
        lines.append(
            f"{r.suite!s:<22} {r.size:>6} {r.seal_us:>8.2f} {r.open_us:>8.2f} {r.mbit:>8.0f}"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    """Print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer packets and rounds")
    args = parser.parse_args(argv)
    count, rounds = (300, 3) if args.quick else (2000, 7)
    print(
        f"Python {platform.python_version()}, cryptography {cryptography.__version__}, "
        f"{platform.machine()}; {count} packets x {rounds} rounds, median"
    )
    print(table(run(count=count, rounds=rounds)))


if __name__ == "__main__":
    main()
