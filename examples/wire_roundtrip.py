"""Build an ASAP registration, encode it, and decode it back.

Run: .venv/bin/python examples/wire_roundtrip.py
"""

from __future__ import annotations

from ipaddress import IPv4Address

from twisted_rserpool.wire import MalformedMessage, asap
from twisted_rserpool.wire.parameters import (
    PoolElementParameter,
    TcpTransport,
    WeightedRoundRobinPolicy,
)


def main() -> None:
    """Encode a registration, decode it, and show what a broken copy gives."""
    registration = asap.Registration(
        pool_handle=b"echo",
        pool_element=PoolElementParameter(
            pe_identifier=0x2A,
            home_server_identifier=0,  # not known yet: the ENRP server fills it in
            registration_life=60,
            user_transport=TcpTransport(7, IPv4Address("127.0.0.1")),
            policy=WeightedRoundRobinPolicy(weight=3),
            asap_transport=TcpTransport(3863, IPv4Address("127.0.0.1")),
        ),
    )
    data = registration.encode()
    print(f"{len(data)} bytes: {data.hex()}")
    print(asap.decode(data))
    try:
        asap.decode(data[:-9])
    except MalformedMessage as e:
        print(f"a truncated copy is refused: {e} (cause {e.cause!r})")


if __name__ == "__main__":
    main()
