"""A pool member described in text: its user transport (RFC 5354) and its selection
policy (RFC 5356), as ``twistd poolmember`` takes them, and loads as RFC 5356 values.

- Transports: ``udp:192.0.2.5:500``, ``tcp:[2001:db8::5]:80``, ``udplite:ADDRESS:PORT``,
  ``sctp:192.0.2.5,198.51.100.5:3868`` (SCTP may list several addresses). The address
  ``0.0.0.0`` (or ``::``) lets the ENRP server take the registration connection's address.
  Every one is data only: the server behind it speaks its own protocol, not ASAP.
- Policies: ``round-robin``, ``weighted-round-robin:WEIGHT``, ``random``,
  ``weighted-random:WEIGHT``, ``priority:PRIORITY``, ``least-used``,
  ``least-used-degradation:DEGRADATION``, ``priority-least-used:DEGRADATION``,
  ``randomized-least-used``. A degradation is a share of full load (0 to 1), as a load.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from ipaddress import IPv4Address, IPv6Address, ip_address

from twisted_rserpool.wire.parameters import (
    LeastUsedDegradationPolicy,
    LeastUsedPolicy,
    PriorityLeastUsedPolicy,
    PriorityPolicy,
    RandomizedLeastUsedPolicy,
    RandomPolicy,
    RoundRobinPolicy,
    SctpTransport,
    SelectionPolicy,
    TcpTransport,
    Transport,
    UdpLiteTransport,
    UdpTransport,
    WeightedRandomPolicy,
    WeightedRoundRobinPolicy,
)

__all__ = [
    "FULL_LOAD",
    "POLICY_NAMES",
    "carriesLoad",
    "parsePolicy",
    "parseTransport",
    "scaledLoad",
    "transportText",
    "withLoad",
]

#: The RFC 5356 load of a fully used pool element (0 is idle).
FULL_LOAD = 0xFFFFFFFF

_TRANSPORTS: dict[str, type[Transport]] = {
    "udp": UdpTransport,
    "tcp": TcpTransport,
    "udplite": UdpLiteTransport,
    "sctp": SctpTransport,
}


def scaledLoad(share: float) -> int:
    """A load share (0 idle, 1 full; clamped) as the RFC 5356 load value."""
    return round(min(1.0, max(0.0, share)) * FULL_LOAD)


def _address(text: str) -> IPv4Address | IPv6Address:
    text = text.strip()
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    try:
        return ip_address(text)
    except ValueError:
        raise ValueError(f"{text!r} is not an IP address") from None


def parseTransport(text: str) -> Transport:
    """The user transport parameter ``text`` describes (see the module docstring);
    ``ValueError`` says what is wrong."""
    kind, sep, rest = text.strip().partition(":")
    cls = _TRANSPORTS.get(kind.lower())
    if cls is None or not sep:
        raise ValueError(f"{text!r}: give {'|'.join(_TRANSPORTS)}:ADDRESS:PORT")
    where, sep, portText = rest.rpartition(":")
    if not sep or not where:
        raise ValueError(f"{text!r}: give {kind}:ADDRESS:PORT ([IPV6]:PORT for IPv6)")
    try:
        port = int(portText)
    except ValueError:
        raise ValueError(f"{text!r}: port {portText!r} is not a number") from None
    if not 0 < port <= 0xFFFF:
        raise ValueError(f"{text!r}: port {port} is not 1 to 65535")
    addresses = tuple(_address(a) for a in where.split(","))
    if cls is SctpTransport:
        return SctpTransport(port, tuple(dict.fromkeys(addresses)))
    if len(addresses) != 1:
        raise ValueError(f"{text!r}: only SCTP lists several addresses")
    if cls is TcpTransport:
        return TcpTransport(port, addresses[0])
    if cls is UdpLiteTransport:
        return UdpLiteTransport(port, addresses[0])
    return UdpTransport(port, addresses[0])


def transportText(transport: Transport) -> str:
    """``transport`` the way :func:`parseTransport` reads it (``opaque`` for others)."""
    names = {cls: name for name, cls in _TRANSPORTS.items()}
    name = names.get(type(transport))
    port = getattr(transport, "port", None)
    if name is None or port is None:
        return type(transport).__name__
    where = ",".join(f"[{a}]" if a.version == 6 else str(a) for a in transport.addresses)
    return f"{name}:{where}:{port}"


def _number(argument: str, what: str) -> int:
    try:
        value = int(argument, 0)
    except ValueError:
        raise ValueError(f"the {what} {argument!r} is not a whole number") from None
    if not 0 <= value <= 0xFFFFFFFF:
        raise ValueError(f"the {what} {value} is not 0 to 4294967295")
    return value


def _share(argument: str, what: str) -> int:
    try:
        value = float(argument)
    except ValueError:
        raise ValueError(f"the {what} {argument!r} is not a number") from None
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"the {what} {argument} is not a share of full load, 0 to 1")
    return scaledLoad(value)


#: Policy names, whether they take an argument, and how they are built from it.
_POLICIES: dict[str, tuple[str | None, Callable[[str], SelectionPolicy]]] = {
    "round-robin": (None, lambda _: RoundRobinPolicy()),
    "weighted-round-robin": (
        "WEIGHT",
        lambda a: WeightedRoundRobinPolicy(_number(a, "weight")),
    ),
    "random": (None, lambda _: RandomPolicy()),
    "weighted-random": ("WEIGHT", lambda a: WeightedRandomPolicy(_number(a, "weight"))),
    "priority": ("PRIORITY", lambda a: PriorityPolicy(_number(a, "priority"))),
    "least-used": (None, lambda _: LeastUsedPolicy(0)),
    "least-used-degradation": (
        "DEGRADATION",
        lambda a: LeastUsedDegradationPolicy(0, _share(a, "degradation")),
    ),
    "priority-least-used": (
        "DEGRADATION",
        lambda a: PriorityLeastUsedPolicy(0, _share(a, "degradation")),
    ),
    "randomized-least-used": (None, lambda _: RandomizedLeastUsedPolicy(0)),
}
#: The policy names :func:`parsePolicy` knows, with their argument.
POLICY_NAMES = tuple(f"{n}:{arg}" if arg else n for n, (arg, _) in _POLICIES.items())


def parsePolicy(text: str) -> SelectionPolicy:
    """The policy ``text`` names (load 0 for the load policies); ``ValueError`` if none."""
    name, sep, argument = text.strip().partition(":")
    known = _POLICIES.get(name.lower())
    if known is None:
        raise ValueError(f"unknown policy {name!r}: one of {', '.join(POLICY_NAMES)}")
    wanted, build = known
    if (wanted is None) != (not sep):
        raise ValueError(
            f"policy {name} takes {wanted} ({name}:{wanted})"
            if wanted
            else f"policy {name} takes no argument"
        )
    return build(argument)


def carriesLoad(policy: SelectionPolicy) -> bool:
    """Whether ``policy`` carries a load (the Least Used family)."""
    return hasattr(policy, "load")


def withLoad(policy: SelectionPolicy, load: int) -> SelectionPolicy:
    """``policy`` with its load set to ``load`` (itself if it carries none)."""
    return replace(policy, load=load) if carriesLoad(policy) else policy  # type: ignore[call-arg]
