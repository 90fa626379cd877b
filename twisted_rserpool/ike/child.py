"""CHILD_SAs: traffic selectors and their narrowing, KEYMAT split, and the data plane boundary.

The IKE core negotiates CHILD_SAs; installing them into a data plane (the kernel's XFRM
SAD/SPD, a userspace ESP implementation) is the job of an ``IChildSAInstaller``. The kernel
of the machines this project is developed and tested on has no ESP, so the default
installer, ``RecordingChildSAInstaller``, only records and logs the SAs: no packet is
encrypted with them.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv6Address

from twisted.logger import Logger
from zope.interface import Interface, implementer

from twisted_rserpool.ike.codec import AnyTrafficSelector, TrafficSelector
from twisted_rserpool.ike.proposals import ChildSuite

__all__ = [
    "ChildSa",
    "IChildSAInstaller",
    "RecordingChildSAInstaller",
    "any_selector",
    "covers",
    "describe",
    "intersect",
    "narrow",
    "selector_from_network",
    "split_keymat",
]


def any_selector(version: int = 4) -> TrafficSelector:
    """Every address of one family, every protocol and port."""
    if version == 4:
        return TrafficSelector(IPv4Address("0.0.0.0"), IPv4Address("255.255.255.255"))
    return TrafficSelector(IPv6Address("::"), IPv6Address("ffff:" * 7 + "ffff"))


def selector_from_network(network: str, ip_protocol: int = 0) -> TrafficSelector:
    """All ports and the addresses of a network such as ``10.0.0.0/8`` or ``::/0``."""
    net = ipaddress.ip_network(network, strict=False)
    return TrafficSelector(net.network_address, net.broadcast_address, ip_protocol)


def intersect(a: TrafficSelector, b: TrafficSelector) -> TrafficSelector | None:
    """The selector matching what both match, or None when that is empty."""
    if a.ts_type != b.ts_type:
        return None
    if a.ip_protocol and b.ip_protocol and a.ip_protocol != b.ip_protocol:
        return None
    start_port = max(a.start_port, b.start_port)
    end_port = min(a.end_port, b.end_port)
    if start_port > end_port:
        return None
    start = max(int(a.start_address), int(b.start_address))
    end = min(int(a.end_address), int(b.end_address))
    if start > end:
        return None
    kind = IPv4Address if a.ts_type == 7 else IPv6Address
    return TrafficSelector(
        kind(start), kind(end), a.ip_protocol or b.ip_protocol, start_port, end_port
    )


def covers(outer: TrafficSelector, inner: TrafficSelector) -> bool:
    """Whether ``inner`` is a narrowing of ``outer`` (matches a subset of it)."""
    return intersect(outer, inner) == inner


def describe(ts: AnyTrafficSelector) -> str:
    """A short human form of a selector, as in logs."""
    if not isinstance(ts, TrafficSelector):
        return f"<TS type {ts.ts_type}>"
    ports = "" if (ts.start_port, ts.end_port) == (0, 65535) else f"[{ts.start_port}-{ts.end_port}]"
    proto = f"/{ts.ip_protocol}" if ts.ip_protocol else ""
    if ts.start_address == ts.end_address:
        return f"{ts.start_address}{proto}{ports}"
    return f"{ts.start_address}-{ts.end_address}{proto}{ports}"


def narrow(
    offered: Sequence[AnyTrafficSelector],
    allowed: Sequence[TrafficSelector],
    limit: int | None = None,
) -> tuple[TrafficSelector, ...]:
    """The offered selectors narrowed to what our policy allows (RFC 7296 section 2.9).

    Each offered selector is intersected with each allowed one; empty intersections and
    selectors of unknown types are dropped, duplicates removed. Empty means TS_UNACCEPTABLE.
    With ``limit``, only the first ``limit`` results in the offer's order are kept (a
    subset is still a narrowing, and the initiator's first choice stays first).
    """
    result: dict[TrafficSelector, None] = {}
    for ts in offered:
        if not isinstance(ts, TrafficSelector):
            continue
        for policy in allowed:
            narrowed = intersect(ts, policy)
            if narrowed is not None:
                result[narrowed] = None
                if limit is not None and len(result) >= limit:
                    return tuple(result)
    return tuple(result)


def split_keymat(keymat: bytes, suite: ChildSuite) -> tuple[bytes, bytes, bytes, bytes]:
    """(encryption key i->r, integrity key i->r, encryption key r->i, integrity key r->i).

    RFC 7296 section 2.17: first the initiator-to-responder keys, encryption before
    integrity, then the responder-to-initiator keys.
    """
    enc = suite.encryption_transform.key_material_length
    integ = suite.keymat_length - enc
    parts = []
    offset = 0
    for length in (enc, integ, enc, integ):
        parts.append(keymat[offset : offset + length])
        offset += length
    return parts[0], parts[1], parts[2], parts[3]


@dataclass(frozen=True)
class ChildSa:
    """A negotiated ESP CHILD_SA as the data plane needs it.

    ``inbound_spi`` is the SPI we chose (the peer sends with it), ``outbound_spi`` the peer's.
    ``initiator`` is whether we began the exchange that created the CHILD_SA (IKE_AUTH or
    CREATE_CHILD_SA); ``ts_i``, ``ts_r`` and the keys are named after that exchange's
    initiator and responder: ``*_i`` keys protect initiator-to-responder packets.
    """

    ike_spi_i: bytes
    ike_spi_r: bytes
    initiator: bool
    local_address: str
    peer_address: str
    inbound_spi: bytes
    outbound_spi: bytes
    suite: ChildSuite
    ts_i: tuple[TrafficSelector, ...]
    ts_r: tuple[TrafficSelector, ...]
    transport_mode: bool
    encryption_key_i: bytes = field(repr=False)
    integrity_key_i: bytes = field(repr=False)
    encryption_key_r: bytes = field(repr=False)
    integrity_key_r: bytes = field(repr=False)

    @property
    def local_ts(self) -> tuple[TrafficSelector, ...]:
        """The selectors of our side."""
        return self.ts_i if self.initiator else self.ts_r

    @property
    def remote_ts(self) -> tuple[TrafficSelector, ...]:
        """The selectors of the peer's side."""
        return self.ts_r if self.initiator else self.ts_i


class IChildSAInstaller(Interface):
    """The data plane: installs and removes negotiated CHILD_SAs."""

    def install(child: ChildSa) -> bool:  # noqa: N805 (zope Interface)
        """Install both directions of ``child``: True when a data plane now carries it,
        False when nothing was installed (a data plane that refused it, or none at all)."""

    def remove(child: ChildSa) -> None:  # noqa: N805 (zope Interface)
        """Remove both directions of ``child`` (it was deleted or its IKE SA went away)."""


@implementer(IChildSAInstaller)
class RecordingChildSAInstaller:
    """Records CHILD_SAs in ``installed`` and logs them; encrypts nothing.

    This is the default because the kernel here has no ESP: it is the boundary where a
    real data plane plugs in.
    """

    log = Logger()

    def __init__(self) -> None:
        self.installed: dict[bytes, ChildSa] = {}

    def install(self, child: ChildSa) -> bool:
        """Record ``child`` by its inbound SPI and log it; False: nothing was installed."""
        self.installed[child.inbound_spi] = child
        self.log.info(
            "CHILD_SA {inbound}/{outbound} {suite} {local_ts} === {remote_ts} with {peer} "
            "recorded (no ESP data plane installed)",
            inbound=child.inbound_spi.hex(),
            outbound=child.outbound_spi.hex(),
            suite=str(child.suite),
            local_ts=", ".join(map(describe, child.local_ts)),
            remote_ts=", ".join(map(describe, child.remote_ts)),
            peer=child.peer_address,
        )
        return False

    def remove(self, child: ChildSa) -> None:
        """Forget ``child`` and log it."""
        if self.installed.pop(child.inbound_spi, None) is not None:
            self.log.info(
                "CHILD_SA {inbound}/{outbound} removed",
                inbound=child.inbound_spi.hex(),
                outbound=child.outbound_spi.hex(),
            )
