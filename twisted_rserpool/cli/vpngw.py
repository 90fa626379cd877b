"""``rserpool sas``, ``drain`` and ``redirect``: what ``twistd vpngw``'s admin answers.

The status document is the one :func:`twisted_rserpool.ike.admin.gatewayStatus` builds; a
document of another shape raises :class:`KeyError`, :class:`TypeError` or
:class:`ValueError`.
"""

from __future__ import annotations

import re
from ipaddress import ip_address, summarize_address_range
from typing import Any

from twisted_rserpool.cli.table import cell, formatTable, isoTime, relativeTime, runningText


def gatewayLine(document: dict[str, Any]) -> str:
    """The gateway's totals in one line: IKE SAs, load, drain, redirect targets."""
    targets = ", ".join(map(str, document["targets"])) or "none"
    draining = "draining" if document["draining"] else "not draining"
    identity = document.get("identity")
    line = (
        f"VPN gateway{f' {identity}' if identity else ''} ({runningText(document)}):"
        f" {document['ike_sas']} IKE SA(s), load {cell(document.get('load'))},"
        f" {draining}; redirect targets: {targets}"
    )
    pool = document.get("pool")
    if pool:
        members = ", ".join(f"{g['address']} (load {cell(g.get('load'))})" for g in pool)
        line += f"; pool: {members}"
    return line + "\n"


#: A selector as :func:`twisted_rserpool.ike.child.describe` writes it.
_SELECTOR = re.compile(r"^(?P<addresses>[^/\[]+)(?:/(?P<protocol>\d+))?(?:\[(?P<ports>[^\]]*)\])?$")
#: IP protocol numbers by the names swanctl shows.
_PROTOCOLS = {"1": "icmp", "6": "tcp", "17": "udp", "58": "ipv6-icmp"}


def selectorText(selector: str) -> str:
    """A traffic selector as swanctl writes one: a range that is one network as that
    network (``0.0.0.0-255.255.255.255`` is ``0.0.0.0/0``), then ``[tcp/80]`` when it
    names a protocol or ports."""
    match = _SELECTOR.match(selector)
    if match is None:
        return selector
    addresses = match["addresses"]
    first, dash, last = addresses.partition("-")
    if dash:
        try:
            networks = list(summarize_address_range(ip_address(first), ip_address(last)))
        except (ValueError, TypeError):
            networks = []
        if len(networks) == 1:
            addresses = str(networks[0])
    protocol, ports = match["protocol"], match["ports"]
    if protocol is None and ports is None:
        return addresses
    start, _, end = (ports or "").partition("-")
    portText = start if start == end else ports
    name = _PROTOCOLS.get(protocol or "", protocol or "any")
    return f"{addresses}[{name}{f'/{portText}' if portText else ''}]"


def _espText(child: dict[str, Any]) -> str:
    esp = child.get("esp")
    if not child.get("installed") or not isinstance(esp, dict):
        return "not installed"
    drops = sum(int(n) for n in dict(esp.get("drops") or {}).values())
    return (
        f"in {esp.get('packets_in', 0)} pkts/{esp.get('bytes_in', 0)} B,"
        f" out {esp.get('packets_out', 0)} pkts/{esp.get('bytes_out', 0)} B, {drops} dropped"
    )


def sasTables(document: dict[str, Any]) -> str:
    """The IKE SAs of every listen address, then their CHILD_SAs, as two tables."""
    now = isoTime(document.get("now"))
    ikeRows: list[tuple[object, ...]] = []
    childRows: list[tuple[object, ...]] = []
    for endpoint in document["endpoints"]:
        for sa in endpoint["sas"]:
            children = sa["child_sas"]
            ikeRows.append(
                (
                    endpoint["address"],
                    sa["peer"],
                    sa.get("peer_id"),
                    sa["state"],
                    sa["spi_i"],
                    sa["spi_r"],
                    sa.get("redirect_supported"),
                    " ".join(sa.get("virtual_ips") or []),
                    len(children),
                    relativeTime(sa.get("created"), now),
                )
            )
            childRows.extend(
                (
                    sa["spi_i"],
                    child["inbound_spi"],
                    child["outbound_spi"],
                    child.get("suite"),
                    " ".join(map(selectorText, child.get("local_ts") or [])),
                    " ".join(map(selectorText, child.get("remote_ts") or [])),
                    _espText(child),
                )
                for child in children
            )
    parts = [gatewayLine(document)]
    if not ikeRows:
        parts.append("no IKE SAs\n")
        return "".join(parts)
    headers = (
        "LISTEN", "PEER", "PEER ID", "STATE", "SPI_I", "SPI_R", "REDIRECT", "VIRTUAL IP",
        "CHILD SAS", "SINCE",
    )  # fmt: skip
    parts.append(formatTable(headers, ikeRows))
    if childRows:
        parts.append("\n")
        parts.append(
            formatTable(
                ("IKE SA SPI_I", "IN SPI", "OUT SPI", "SUITE", "LOCAL TS", "REMOTE TS", "ESP"),
                childRows,
            )
        )
    return "".join(parts)


def drainBody(stop: bool, move: bool) -> dict[str, Any]:
    """The ``POST /drain`` body: start (or stop) draining, moving clients at once or not."""
    return {"drain": not stop, "move": move and not stop}


def drainText(answer: dict[str, Any]) -> str:
    """What ``POST /drain`` answered, in one line."""
    if not answer["draining"]:
        return "not draining: new clients are accepted again\n"
    return (
        f"draining: new clients are redirected; {answer.get('moved', 0)} established"
        " client(s) moved\n"
    )


def redirectBody(
    peer: str | None, spi: str | None, everyone: bool, target: str | None
) -> dict[str, Any]:
    """The ``POST /redirect`` body for one client (by peer address or SPI) or all."""
    body: dict[str, Any] = {}
    if everyone:
        body["all"] = True
    elif spi is not None:
        body["spi"] = spi.lower().removeprefix("0x")
    else:
        body["peer"] = peer
    if target is not None:
        body["target"] = target
    return body


def redirectText(answer: dict[str, Any]) -> str:
    """What ``POST /redirect`` answered, in one line."""
    moved = int(answer["moved"])
    which = f" (IKE SA {answer['spi_i']})" if "spi_i" in answer else ""
    return f"redirected {moved} client(s){which}\n"


__all__ = [
    "drainBody",
    "drainText",
    "gatewayLine",
    "redirectBody",
    "redirectText",
    "sasTables",
    "selectorText",
]
