"""The wire format (``./scripts/demo wire``): a registration, a handle resolution and its
answer, encoded, decoded back, and dissected by Wireshark's tshark from the same bytes.

The tshark driver is a test tool (``tests/tools/tshark.py``), so Wireshark's view needs a
checkout; ``scripts/demo`` runs from one.
"""

from __future__ import annotations

import dataclasses
from ipaddress import IPv4Address
from typing import TextIO

from twisted_rserpool.wire import asap
from twisted_rserpool.wire.message import Message
from twisted_rserpool.wire.parameters import (
    LeastUsedPolicy,
    PoolElementParameter,
    TcpTransport,
)

_LOOPBACK = IPv4Address("127.0.0.1")
_SERVER_IDENTIFIER = 0x5EED0001


def _pool_element(pe_identifier: int, port: int, load: int) -> PoolElementParameter:
    return PoolElementParameter(
        pe_identifier=pe_identifier,
        home_server_identifier=_SERVER_IDENTIFIER,
        registration_life=30,
        user_transport=TcpTransport(port, _LOOPBACK),
        policy=LeastUsedPolicy(load),
        asap_transport=TcpTransport(3863, _LOOPBACK),
    )


def conversation() -> list[tuple[str, Message]]:
    """The messages the demo shows, each with who sends it to whom."""
    elements = (
        _pool_element(0x1001, 7001, 0x20000000),
        _pool_element(0x1002, 7002, 0x08000000),
        _pool_element(0x1003, 7003, 0x40000000),
    )
    registration = asap.Registration(b"echo", elements[0])
    resolution = asap.HandleResolution(b"echo", subscribe=False, items=3)
    ordered = tuple(sorted(elements, key=lambda pe: pe.policy.load))  # type: ignore[attr-defined]
    response = asap.HandleResolutionResponse(b"echo", ordered, LeastUsedPolicy(0))
    return [
        ("pool element -> ENRP server", registration),
        ("pool user -> ENRP server", resolution),
        ("ENRP server -> pool user", response),
    ]


def _describe_value(value: object, indent: str, out: TextIO) -> None:
    for name in (f.name for f in dataclasses.fields(value)):  # type: ignore[arg-type]
        if name == "unrecognized_parameters":
            continue
        field = getattr(value, name)
        if dataclasses.is_dataclass(field):
            out.write(f"{indent}{name}: {type(field).__name__}\n")
            _describe_value(field, indent + "    ", out)
        elif isinstance(field, tuple) and field and dataclasses.is_dataclass(field[0]):
            for number, item in enumerate(field, 1):
                out.write(f"{indent}{name}[{number}]: {type(item).__name__}\n")
                _describe_value(item, indent + "    ", out)
        elif isinstance(field, int) and not isinstance(field, bool) and field > 9:
            out.write(f"{indent}{name}: {field} (0x{field:x})\n")
        else:
            out.write(f"{indent}{name}: {field!r}\n")


def show(out: TextIO, *, tshark: bool = True) -> int:
    """Write the conversation and, with ``tshark``, Wireshark's view; the exit status."""
    messages = conversation()
    out.write("twisted-rserpool demo: the RSerPool wire format (RFC 5352/5354/5356)\n\n")
    for number, (direction, message) in enumerate(messages, 1):
        data = message.encode()
        decoded = asap.decode(data)
        out.write(f"{number}. {type(message).__name__}  ({direction}, {len(data)} bytes)\n")
        out.write(f"   bytes: {data.hex(' ', 4)}\n")
        out.write("   decoded by twisted_rserpool.wire.asap:\n")
        _describe_value(decoded, "      ", out)
        out.write(f"   decode(encode(m)) == m: {decoded == message}\n\n")

    if not tshark:
        return 0
    try:
        from tests.tools import tshark as driver  # noqa: PLC0415 (a checkout's test tool)
    except ImportError:
        out.write("Wireshark's view needs a checkout (tests/tools/tshark.py): skipped\n")
        return 0
    tshark_path = driver.find_tshark()
    if tshark_path is None:
        out.write("tshark is not installed: skipping Wireshark's view (scripts/demo installs it)\n")
        return 0
    packets = [
        driver.asap_packet(message.encode(), "tcp", src="127.0.0.1", dst="127.0.0.2")
        for _, message in messages
    ]
    out.write("What Wireshark's dissector (tshark -O asap) makes of the same bytes:\n\n")
    out.write(driver.describe(packets, tshark=tshark_path))
    layers = driver.dissect(packets, tshark=tshark_path)
    complaints = [problem for layer in layers for problem in driver.problems(layer)]
    out.write(
        "\ntshark reports " + ("no malformed packets\n" if not complaints else f"{complaints}\n")
    )
    return 0 if not complaints else 1
