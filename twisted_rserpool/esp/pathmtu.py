"""The TUN device's MTU from the path to the clients.

``path_mtu(address)`` finds the interface that carries the gateway's IKE (and so ESP)
traffic for a listen address, and its MTU, with ``ip -j`` (iproute2): the interface holding
the address, or for an unspecified address (``0.0.0.0``, ``::``) the default route's.
``tun_mtu(path, ipv6=..., udp=...)`` is the longest inner packet whose ESP packet fits that
path for every ESP transform the data plane implements, so the TUN device needs no
per-SA MTU: the worst case is AES-CBC with HMAC-SHA2-512-256 (16-octet IV, 32-octet ICV,
16-octet blocks), 1406 octets behind a 1500-octet path in UDP over IPv4.
"""

from __future__ import annotations

import ipaddress
import json
import subprocess
from collections.abc import Callable, Iterable

__all__ = ["ESP_OVERHEADS", "path_mtu", "tun_mtu"]

_ESP_HEADER = 8  # SPI and Sequence Number (RFC 4303 2)

ESP_OVERHEADS: tuple[tuple[int, int, int], ...] = (
    (8, 16, 4),  # AES-GCM 128/256 (RFC 4106), ChaCha20-Poly1305 (RFC 7634)
    (16, 16, 16),  # AES-CBC + HMAC-SHA2-256-128 (RFC 4868)
    (16, 24, 16),  # AES-CBC + HMAC-SHA2-384-192
    (16, 32, 16),  # AES-CBC + HMAC-SHA2-512-256
)
"""(IV length, ICV length, block size) of each ESP transform the data plane implements."""


def tun_mtu(
    path: int,
    *,
    ipv6: bool = False,
    udp: bool = True,
    overheads: Iterable[tuple[int, int, int]] = ESP_OVERHEADS,
) -> int:
    """The longest inner packet whose ESP packet, in UDP (RFC 3948) when ``udp``, fits an
    outer IPv4 (or ``ipv6``) packet of ``path`` octets with each of ``overheads``."""
    room = path - (40 if ipv6 else 20) - (8 if udp else 0) - _ESP_HEADER
    # Pad Length and Next Header follow the inner packet inside the aligned payload.
    return max(0, min((room - iv - icv) // block * block - 2 for iv, icv, block in overheads))


def _ip_json(arguments: list[str]) -> list[dict[str, object]]:
    done = subprocess.run(["ip", "-j", *arguments], check=True, capture_output=True, text=True)
    answer = json.loads(done.stdout or "[]")
    return answer if isinstance(answer, list) else []


def path_mtu(
    address: str, run: Callable[[list[str]], list[dict[str, object]]] = _ip_json
) -> tuple[str, int] | None:
    """The interface and MTU of the path for the listen ``address`` (None when ``ip`` knows
    none). ``run`` runs ``ip -j`` with its arguments and returns the decoded JSON."""
    ip = ipaddress.ip_address(address)
    family = "-6" if ip.version == 6 else "-4"
    if ip.is_unspecified:
        routes = run([family, "route", "show", "default"])
        devices = [r.get("dev") for r in routes]
        device = next((d for d in devices if isinstance(d, str)), None)
        if device is None:
            return None
        links = run(["link", "show", "dev", device])
    else:
        links = run([family, "addr", "show", "to", str(ip)])
    for link in links:
        name, mtu = link.get("ifname"), link.get("mtu")
        if isinstance(name, str) and isinstance(mtu, int):
            return name, mtu
    return None
