"""Throughput of the wire codec: encodes and decodes per second of typical RSerPool messages.

Run ``.venv/bin/python benchmarks/wire.py`` (about 30 s) or add ``--quick`` (a few
seconds, noisier). Each operation is calibrated to a fixed number of loops per round and
timed with ``time.perf_counter`` over several rounds, encode, decode and baseline taking
turns within each round; the table shows the **median** round's rate, and ``spread`` is
the fastest round's rate over the slowest one (1.00 is perfectly steady). The garbage
collector stays enabled, as in a server. docs/performance.md explains the rows.

Beside the codec, every row times a baseline that walks the same bytes with
``struct.unpack_from`` only: each TLV header and its fixed fields, recursing into nested
TLVs, creating nothing but ints and the tuples ``unpack_from`` returns. It validates
nothing and builds no objects, so it is the floor for pure Python; the last column says how
many baseline walks one decode costs. Nothing here asserts anything about time.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import struct
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address

from twisted_rserpool.wire import asap, enrp
from twisted_rserpool.wire.message import Message
from twisted_rserpool.wire.parameters import (
    DecodeContext,
    LeastUsedPolicy,
    ParameterType,
    PoolElementParameter,
    SctpTransport,
    TcpTransport,
    TransportUse,
    decode_parameters,
)
from twisted_rserpool.wire.tcpmapping import ASAP_PPID, ChunkDecoder, Data, DataFormat, Init

# ------------------------------------------------------------------------------ messages

POOL_HANDLE = b"EchoPool"


def pool_element(index: int) -> PoolElementParameter:
    """The PE of every row: TCP user transport, Least Used, SCTP ASAP transport (2 addresses)."""
    return PoolElementParameter(
        pe_identifier=0x10000000 + index,
        home_server_identifier=0x0E0E0E0E,
        registration_life=300,
        user_transport=TcpTransport(7000 + index % 1000, IPv4Address(0x0A000000 + index)),
        policy=LeastUsedPolicy(load=(index * 0x01000000) & 0xFFFFFFFF),
        asap_transport=SctpTransport(
            9000 + index % 1000,
            (IPv4Address(0x0A000000 + index), IPv4Address(0xAC100000 + index)),
            TransportUse.DATA_ONLY,
        ),
    )


def registration() -> asap.Registration:
    return asap.Registration(POOL_HANDLE, pool_element(1))


def resolution_response(count: int) -> asap.HandleResolutionResponse:
    return asap.HandleResolutionResponse(
        POOL_HANDLE,
        tuple(pool_element(i) for i in range(count)),
        policy=LeastUsedPolicy(load=0),
    )


def handle_update() -> enrp.HandleUpdate:
    return enrp.HandleUpdate(
        sending_server_identifier=0x0E0E0E0E,
        receiving_server_identifier=0,
        update_action=enrp.UpdateAction.ADD_PE,
        pool_handle=POOL_HANDLE,
        pool_element=pool_element(1),
    )


# ------------------------------------------------------------------------------ baseline

_MESSAGE_HEADER = struct.Struct(">BBH")
_TLV_HEADER = struct.Struct(">HH")
_U32 = struct.Struct(">I")
_IPV6 = struct.Struct(">IIII")
_PE_FIXED = struct.Struct(">IIi")
_PORT_WORD = struct.Struct(">HH")
_DCCP_FIXED = struct.Struct(">HHI")
_POLICY_WORDS = tuple(struct.Struct(f">{n}I") for n in range(8))
_CHUNK_HEADER = struct.Struct(">BBH")
_DATA_WORDS = struct.Struct(">IHHI")

_POOL_ELEMENT = ParameterType.POOL_ELEMENT.value
#: Transports with a port word followed by address TLVs.
_PORT_TRANSPORTS = frozenset(
    (
        ParameterType.SCTP_TRANSPORT.value,
        ParameterType.TCP_TRANSPORT.value,
        ParameterType.UDP_TRANSPORT.value,
        ParameterType.UDP_LITE_TRANSPORT.value,
    )
)
_DCCP = ParameterType.DCCP_TRANSPORT.value
_POLICY = ParameterType.POOL_MEMBER_SELECTION_POLICY.value
_IPV4_ADDRESS = ParameterType.IPV4_ADDRESS.value
_IPV6_ADDRESS = ParameterType.IPV6_ADDRESS.value
_U32_VALUES = frozenset(
    (ParameterType.PE_IDENTIFIER.value, ParameterType.HANDLE_RESOLUTION_ITEMS.value)
)
_SERVER_INFORMATION = ParameterType.SERVER_INFORMATION.value


def walk_tlvs(data: bytes, offset: int, end: int) -> int:
    """Read every TLV header and fixed field from offset to end; the number of TLVs."""
    count = 0
    while offset < end:
        ptype, length = _TLV_HEADER.unpack_from(data, offset)
        count += 1
        if ptype == _POOL_ELEMENT:
            _PE_FIXED.unpack_from(data, offset + 4)
            count += walk_tlvs(data, offset + 16, offset + length)
        elif ptype in _PORT_TRANSPORTS:
            _PORT_WORD.unpack_from(data, offset + 4)
            count += walk_tlvs(data, offset + 8, offset + length)
        elif ptype == _POLICY:
            _POLICY_WORDS[(length - 4) >> 2].unpack_from(data, offset + 4)
        elif ptype == _IPV4_ADDRESS:
            _U32.unpack_from(data, offset + 4)
        elif ptype == _IPV6_ADDRESS:
            _IPV6.unpack_from(data, offset + 4)
        elif ptype in _U32_VALUES:
            _U32.unpack_from(data, offset + 4)
        elif ptype == _SERVER_INFORMATION:
            _U32.unpack_from(data, offset + 4)
            count += walk_tlvs(data, offset + 8, offset + length)
        elif ptype == _DCCP:
            _DCCP_FIXED.unpack_from(data, offset + 4)
            count += walk_tlvs(data, offset + 12, offset + length)
        # Pool handle, cookie, opaque transport: a byte string, nothing fixed to read.
        offset += (length + 3) & ~3
    return count


def walk_message(data: bytes, offset: int, fixed: struct.Struct | None) -> int:
    """Walk one message at offset whose header is followed by ``fixed`` fields, if any."""
    _type, _flags, length = _MESSAGE_HEADER.unpack_from(data, offset)
    start = offset + 4
    if fixed is not None:
        fixed.unpack_from(data, start)
        start += fixed.size
    return 1 + walk_tlvs(data, start, offset + length)


def walk_chunks(stream: bytes) -> int:
    """Walk the chunk headers of a TCP mapping stream and its DATA words; DATA chunks seen."""
    count = 0
    offset = 0
    end = len(stream)
    while offset < end:
        chunk_type, _flags, length = _CHUNK_HEADER.unpack_from(stream, offset)
        if chunk_type == 0:
            _DATA_WORDS.unpack_from(stream, offset + 4)
            count += 1
        offset += (length + 3) & ~3
    return count


def walk_chunks_and_messages(stream: bytes) -> int:
    """As walk_chunks, and walk the ASAP message each DATA chunk carries."""
    count = 0
    offset = 0
    end = len(stream)
    while offset < end:
        chunk_type, _flags, length = _CHUNK_HEADER.unpack_from(stream, offset)
        if chunk_type == 0:
            _DATA_WORDS.unpack_from(stream, offset + 4)
            walk_message(stream, offset + 16, None)
            count += 1
        offset += (length + 3) & ~3
    return count


# ------------------------------------------------------------------------------ timing


@dataclass(frozen=True, slots=True)
class Rate:
    """Operations per second over several rounds."""

    median: float
    spread: float  # fastest round over slowest round


def calibrate(run: Callable[[int], object], seconds: float) -> int:
    """How many loops of ``run`` take about ``seconds``."""
    loops = 1
    while True:
        started = time.perf_counter()
        run(loops)
        elapsed = time.perf_counter() - started
        if elapsed >= seconds / 8:
            return max(1, round(loops * seconds / elapsed))
        loops *= 4 if elapsed < seconds / 64 else 2


def measure(
    runs: Sequence[tuple[Callable[[int], object], int]], rounds: int, seconds: float
) -> list[Rate]:
    """Rates of ``run(loops)`` (``loops * ops_per_call`` operations) for each (run,
    ops_per_call). The runs take turns within every round, so that load from other
    processes hits all of them alike and their ratios stay meaningful."""
    loops = [calibrate(run, seconds) for run, _ in runs]
    rates: list[list[float]] = [[] for _ in runs]
    for _ in range(rounds):
        for (run, ops_per_call), count, found in zip(runs, loops, rates, strict=True):
            started = time.perf_counter()
            run(count)
            found.append(count * ops_per_call / (time.perf_counter() - started))
    return [Rate(statistics.median(found), max(found) / min(found)) for found in rates]


def repeat(operation: Callable[[], object]) -> Callable[[int], None]:
    def run(loops: int) -> None:
        for _ in range(loops):
            operation()

    return run


@dataclass(frozen=True, slots=True)
class Row:
    name: str
    size: int
    encode: Rate
    decode: Rate
    walk: Rate

    @property
    def ratio(self) -> float:
        """Cost of one decode in baseline walks."""
        return self.walk.median / self.decode.median


# ------------------------------------------------------------------------------ cases


def check_message(
    message: Message, decode: Callable[[bytes], Message], fixed: struct.Struct | None
) -> bytes:
    """The encoded message, after checking that it round-trips and that the baseline walks
    as many TLVs as the codec decodes (so both do the same work)."""
    data = message.encode()
    if decode(data) != message:
        raise SystemExit(f"{type(message).__name__} does not round-trip")
    ctx = DecodeContext(data)
    start = 4 + (fixed.size if fixed is not None else 0)
    decode_parameters(ctx, start, len(data))
    if walk_message(data, 0, fixed) != 1 + ctx.parameter_count:
        raise SystemExit(f"baseline walk of {type(message).__name__} missed TLVs")
    return data


def message_row(
    name: str,
    message: Message,
    decode: Callable[[bytes], Message],
    fixed: struct.Struct | None,
    rounds: int,
    seconds: float,
) -> Row:
    data = check_message(message, decode, fixed)
    encode, decoded, walk = measure(
        [
            (repeat(message.encode), 1),
            (repeat(lambda: decode(data)), 1),
            (repeat(lambda: walk_message(data, 0, fixed)), 1),
        ],
        rounds,
        seconds,
    )
    return Row(name, len(data), encode, decoded, walk)


#: The DATA chunks in one timed stream, and the piece size a Twisted TCP transport reads.
CHUNKS_PER_STREAM = 512
READ_SIZE = 65536


def data_chunk(payload: bytes, index: int) -> Data:
    return Data(payload, index, 0, index & 0xFFFF, ASAP_PPID)


def tcp_rows(message: asap.Registration, rounds: int, seconds: float) -> list[Row]:
    """ChunkDecoder on a stream of DATA chunks each carrying an ASAP_REGISTRATION."""
    payload = message.encode()
    init = Init().encode()
    stream = b"".join(data_chunk(payload, i).encode() for i in range(CHUNKS_PER_STREAM))
    pieces = [stream[i : i + READ_SIZE] for i in range(0, len(stream), READ_SIZE)]
    if Init().data_format != DataFormat():
        raise SystemExit("the default INIT no longer announces every DATA word")

    def decode_stream(then: Callable[[bytes], object] | None) -> int:
        decoder = ChunkDecoder()
        decoder.receive_data(init)
        decoder.next_chunk()
        count = 0
        for piece in pieces:
            decoder.receive_data(piece)
            while (chunk := decoder.next_chunk()) is not None:
                if then is not None and isinstance(chunk, Data):
                    then(chunk.user_data)
                count += 1
        return count

    if decode_stream(asap.decode) != CHUNKS_PER_STREAM or walk_chunks(stream) != (
        CHUNKS_PER_STREAM
    ):
        raise SystemExit("TCP mapping stream did not decode to every DATA chunk")

    chunk_size = len(stream) // CHUNKS_PER_STREAM
    n = CHUNKS_PER_STREAM
    encode, decoded, walk = measure(
        [
            (repeat(lambda: data_chunk(payload, 7).encode()), 1),
            (repeat(lambda: decode_stream(None)), n),
            (repeat(lambda: walk_chunks(stream)), n),
        ],
        rounds,
        seconds,
    )
    encode_both, decoded_both, walk_both = measure(
        [
            (repeat(lambda: data_chunk(message.encode(), 7).encode()), 1),
            (repeat(lambda: decode_stream(asap.decode)), n),
            (repeat(lambda: walk_chunks_and_messages(stream)), n),
        ],
        rounds,
        seconds,
    )
    return [
        Row("TCP DATA chunk (ChunkDecoder)", chunk_size, encode, decoded, walk),
        Row("TCP DATA + ASAP_REGISTRATION", chunk_size, encode_both, decoded_both, walk_both),
    ]


def rows(rounds: int, seconds: float) -> list[Row]:
    enrp_fixed = struct.Struct(">IIHH")
    register = registration()
    result = [
        message_row("ASAP_REGISTRATION", register, asap.decode, None, rounds, seconds),
        message_row(
            "ASAP_HANDLE_RESOLUTION_RESPONSE, 10 PEs",
            resolution_response(10),
            asap.decode,
            None,
            rounds,
            seconds,
        ),
        message_row(
            "ASAP_HANDLE_RESOLUTION_RESPONSE, 128 PEs",
            resolution_response(128),
            asap.decode,
            None,
            rounds,
            seconds,
        ),
        message_row(
            "ENRP_HANDLE_UPDATE", handle_update(), enrp.decode, enrp_fixed, rounds, seconds
        ),
    ]
    return result + tcp_rows(register, rounds, seconds)


# ------------------------------------------------------------------------------ report


def table(result: Sequence[Row]) -> str:
    header = (
        "| message | bytes | encode/s | decode/s | baseline walk/s | decode ÷ baseline "
        "| spread (enc/dec/walk) |"
    )
    lines = [header, "|---|--:|--:|--:|--:|--:|--:|"]
    for row in result:
        lines.append(
            f"| {row.name} | {row.size:,} | {row.encode.median:,.0f} | {row.decode.median:,.0f} "
            f"| {row.walk.median:,.0f} | {row.ratio:.1f} "
            f"| {row.encode.spread:.2f}/{row.decode.spread:.2f}/{row.walk.spread:.2f} |"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="3 short rounds per measurement")
    parser.add_argument("--rounds", type=int, help="rounds per measurement (default 7)")
    parser.add_argument("--round-time", type=float, help="seconds per round (default 0.2)")
    args = parser.parse_args(argv)
    rounds: int = args.rounds if args.rounds is not None else (3 if args.quick else 7)
    seconds: float = (
        args.round_time if args.round_time is not None else (0.04 if args.quick else 0.2)
    )
    if rounds < 1 or seconds <= 0:
        parser.error("--rounds and --round-time must be positive")
    started = time.perf_counter()
    print(
        f"Python {platform.python_version()} ({platform.python_implementation()}), "
        f"{platform.machine()}, {os.cpu_count()} CPUs; median of {rounds} rounds of "
        f"~{seconds:g} s; rates per second",
        flush=True,
    )
    result = rows(rounds, seconds)
    print()
    print(table(result))
    print()
    print(f"({time.perf_counter() - started:.1f} s)")


if __name__ == "__main__":
    main()
