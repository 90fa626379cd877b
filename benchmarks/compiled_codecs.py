"""CPU per decode and encode of the messages on the ENRP server's hot path, without I/O.

Run: ``.venv/bin/python -m benchmarks.compiled_codecs`` (a few seconds), or through
``benchmarks/compiled.py``, which runs it under the pure and the compiled builds. Measures
in this process, with ``time.process_time`` (best of ``--rounds``, garbage collection
paused, as :mod:`benchmarks.compiled_core` does):

- **decode** (``asap.decode``, ``enrp.decode``): ASAP_ENDPOINT_KEEP_ALIVE_ACK and
  ASAP_HANDLE_RESOLUTION (the fast decoders), ASAP_REGISTRATION, ASAP_ENDPOINT_KEEP_ALIVE,
  an ASAP_HANDLE_RESOLUTION_RESPONSE of 3 PEs and an ENRP_HANDLE_UPDATE (the checked
  decoder, every parameter through :func:`decode_parameters`);
- **encode**: the registration response and the keep-alive a server sends, a handle
  resolution response of 3 PEs, and a TCP mapping DATA chunk through the checked
  ``ChunkEncoder``/``ChunkDecoder`` pair (what INIT-time and rare chunks cost).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from ipaddress import IPv4Address

from benchmarks.compiled_core import cpuPerOperation
from twisted_rserpool.transport.events import DataReceived
from twisted_rserpool.wire import asap, enrp
from twisted_rserpool.wire.parameters import LeastUsedPolicy, PoolElementParameter, TcpTransport
from twisted_rserpool.wire.tcpmapping import ChunkDecoder, ChunkEncoder, DataFormat

POOL = b"benchmark-pool"


def element(identifier: int) -> PoolElementParameter:
    """A PE of a Least Used pool, as a registration carries it."""
    address = IPv4Address(0x0A000000 + identifier)
    return PoolElementParameter(
        identifier,
        7,
        300,
        TcpTransport(3863, address),
        LeastUsedPolicy(identifier * 1000),
        TcpTransport(4000 + identifier, address),
    )


def repeat(operation: Callable[[], object], count: int) -> Callable[[], int]:
    """A batch of ``count`` calls of ``operation``."""

    def batch() -> int:
        for _ in range(count):
            operation()
        return count

    return batch


def chunkBatch(count: int) -> Callable[[], int]:
    """``count`` 100-byte DATA chunks encoded and decoded on the checked path."""
    encoder = ChunkEncoder(DataFormat())
    decoder = ChunkDecoder(fast=False)
    decoder.receive_data(encoder.send_init())
    assert decoder.next_chunk() is not None
    payload = b"x" * 100
    records: list[object] = []

    def batch() -> int:
        for _ in range(count):
            decoder.receive_data(encoder.send_data(payload))
            decoder.read_chunks(records.append, DataReceived)
        records.clear()
        return count

    return batch


def cases(count: int) -> list[tuple[str, Callable[[], int]]]:
    """Every measured operation: its name and a batch of ``count``."""
    pes = tuple(element(n) for n in range(1, 4))
    ack = asap.EndpointKeepAliveAck(POOL, 0x12345678).encode()
    resolution = asap.HandleResolution(POOL, False, 3).encode()
    registration = asap.Registration(POOL, pes[0]).encode()
    keepAlive = asap.EndpointKeepAlive(7, POOL, True, 0x12345678)
    response = asap.HandleResolutionResponse(POOL, pes, LeastUsedPolicy(0), True)
    update = enrp.HandleUpdate(7, 8, enrp.UpdateAction.ADD_PE, POOL, pes[0]).encode()
    answer = asap.RegistrationResponse(POOL, 0x12345678)
    encodedKeepAlive, encodedResponse = keepAlive.encode(), response.encode()
    return [
        ("decode ENDPOINT_KEEP_ALIVE_ACK", repeat(lambda: asap.decode(ack), count)),
        ("decode HANDLE_RESOLUTION", repeat(lambda: asap.decode(resolution), count)),
        ("decode REGISTRATION", repeat(lambda: asap.decode(registration), count)),
        ("decode ENDPOINT_KEEP_ALIVE", repeat(lambda: asap.decode(encodedKeepAlive), count)),
        (
            "decode HANDLE_RESOLUTION_RESPONSE, 3 PEs",
            repeat(lambda: asap.decode(encodedResponse), count),
        ),
        ("decode ENRP_HANDLE_UPDATE", repeat(lambda: enrp.decode(update), count)),
        ("encode REGISTRATION_RESPONSE", repeat(answer.encode, count)),
        ("encode ENDPOINT_KEEP_ALIVE", repeat(keepAlive.encode, count)),
        ("encode HANDLE_RESOLUTION_RESPONSE, 3 PEs", repeat(response.encode, count)),
        ("TCP mapping DATA, 100 B, checked encode + decode", chunkBatch(count)),
    ]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rounds", type=int, default=5, help="timed rounds (best counts)")
    parser.add_argument("--count", type=int, default=20_000, help="operations per round")
    options = parser.parse_args(argv)
    print("| measure | value |")
    print("|---|--:|")
    for name, batch in cases(options.count):
        print(f"| {name}: CPU µs | {cpuPerOperation(batch, options.rounds) * 1e6:.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
