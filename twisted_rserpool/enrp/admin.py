"""The ENRP server's admin interface over HTTP (twisted.web): JSON, an HTML page, metrics.

Routes (every other path is 404):

- ``GET /`` and ``GET /status``: the server identifier, version, uptime and mode, every pool
  with its PEs (home ENRP server, identity that registered it, owner identity, transports,
  policy, expiry), the ENRP peers, the open connections with their security, and the
  counters. JSON, or the HTML status page when the client asks for ``text/html`` (a browser).
- ``GET /summary``: the same without pools, PEs and connections (cheap with many PEs).
- ``GET /metrics``: Prometheus metrics (:mod:`twisted_rserpool.enrp.metrics`).

The interface changes nothing today; any other method needs the bearer token (and POST
bodies must be JSON), and off loopback every request needs it (:mod:`twisted_rserpool._admin`).
Times are ISO 8601 (UTC) and checksums ``0x%04x``.
"""

from __future__ import annotations

from html import escape
from typing import Any

from twisted.web.server import Request, Site

from twisted_rserpool._admin import (
    AdminResource,
    Reply,
    checksumText,
    htmlCell,
    htmlFacts,
    htmlPage,
    htmlTable,
    isoTime,
    metricsReply,
    runningFields,
    wantsHtml,
)
from twisted_rserpool.describe import handleText
from twisted_rserpool.enrp.metrics import metricsRegistry
from twisted_rserpool.enrp.service import ENRPServer
from twisted_rserpool.handlespace import PoolElementEntry
from twisted_rserpool.wire.parameters import SelectionPolicy, Transport


def _transport(transport: Transport | None) -> dict[str, Any] | None:
    if transport is None:
        return None
    return {
        "type": type(transport).__name__,
        "port": getattr(transport, "port", None),
        "addresses": [str(a) for a in transport.addresses],
        "transport_use": transport.transport_use.name,
    }


def _policy(policy: SelectionPolicy) -> dict[str, Any]:
    values = {
        name: getattr(policy, name)
        for name in ("weight", "priority", "load", "load_degradation")
        if hasattr(policy, name)
    }
    return {"type": type(policy).__name__, "policy_type": policy.policy_type, **values}


def _element(entry: PoolElementEntry) -> dict[str, Any]:
    element = entry.element
    return {
        "pe_identifier": f"0x{element.pe_identifier:08x}",
        "home_server_identifier": f"0x{element.home_server_identifier:08x}",
        "identity": entry.identity,
        "owner_identity": entry.owner_identity,
        "registration_life": element.registration_life,
        "expires_at": isoTime(entry.expires_at),
        "user_transport": _transport(element.user_transport),
        "asap_transport": _transport(element.asap_transport),
        "policy": _policy(element.policy),
        "unreachable_reports": entry.unreachable_reports,
    }


def _peer(row: dict[str, Any]) -> dict[str, Any]:
    """A peer table row with the admin formats (ISO 8601 time, ``0x%04x`` checksums)."""
    formatted = dict(row)
    if isinstance(row.get("last_heard"), (int, float)):
        formatted["last_heard"] = isoTime(row["last_heard"])
    for name in ("checksum", "local_checksum"):
        if isinstance(row.get(name), int):
            formatted[name] = checksumText(row[name])
    return formatted


def _header(server: ENRPServer, startedAt: float | None) -> dict[str, Any]:
    return {
        "server_identifier": f"0x{server.serverIdentifier:08x}",
        **runningFields(server.clock.seconds(), startedAt),
        "secure": server.registrar.config.secure,
    }


def _counters(server: ENRPServer) -> dict[str, Any]:
    peering = server.peering
    return {
        "counters": dict(sorted(server.registrar.counters.items())),
        "peer_counters": dict(sorted(peering.counters.items())) if peering is not None else {},
    }


def summary(server: ENRPServer, startedAt: float | None = None) -> dict[str, Any]:
    """Identifier, version, uptime, sizes and counters: cheap however large the handlespace."""
    registrar = server.registrar
    handlespace = registrar.handlespace
    return {
        **_header(server, startedAt),
        "pool_count": sum(1 for _ in handlespace.pools()),
        "pool_element_count": len(handlespace),
        "connection_count": len(registrar.connections),
        "peer_count": len(server.peerStatus()),
        **_counters(server),
    }


def status(server: ENRPServer, startedAt: float | None = None) -> dict[str, Any]:
    """Everything the admin interface shows, as plain JSON-ready values."""
    registrar = server.registrar
    handlespace = registrar.handlespace
    return {
        **_header(server, startedAt),
        "pools": [
            {
                "pool_handle": handleText(pool.handle),
                "policy": _policy(pool.policy),
                "pool_elements": [_element(entry) for entry in pool],
            }
            for pool in sorted(handlespace.pools(), key=lambda p: p.handle)
        ],
        "pool_element_count": len(handlespace),
        "owners": {
            f"0x{owner:08x}": {
                "pool_elements": handlespace.owned_count(owner),
                "pe_checksum": checksumText(handlespace.pe_checksum(owner)),
            }
            for owner in handlespace.owners()
        },
        "peers": [_peer(row) for row in server.peerStatus()],
        "connections": [
            {
                "number": number,
                "peer": state.describe(),
                "security": state.security.describe(),
                "pool_elements": len(state.pool_elements),
                "subscriptions": [handleText(h) for h in state.subscriptions],
            }
            for number, state in sorted(registrar.connections.items())
        ],
        **_counters(server),
    }


# ---------------------------------------------------------------------- HTML status page


def _policyText(policy: dict[str, Any]) -> str:
    extra = ", ".join(f"{k}={v}" for k, v in policy.items() if k not in ("type", "policy_type"))
    return str(policy["type"]) + (f" ({extra})" if extra else "")


def _transportText(transport: dict[str, Any] | None) -> str | None:
    if transport is None:
        return None
    addresses = ", ".join(transport["addresses"])
    return f"{transport['type']} {addresses} port {transport['port']}"


def statusPage(document: dict[str, Any]) -> bytes:
    """The HTML status page of a :func:`status` document (no scripts; everything escaped)."""
    server = document["server_identifier"]
    facts = [
        ("Server identifier", server),
        ("Version", f"twisted_rserpool {document['version']}"),
        ("Mode", "secure (RFC 5355)" if document["secure"] else "INSECURE"),
        ("Started", document["started_at"]),
        ("Uptime", f"{document['uptime_seconds']:.0f} s"),
        ("Pools", len(document["pools"])),
        ("Pool elements", document["pool_element_count"]),
        ("ASAP connections", len(document["connections"])),
        ("Peers", len(document["peers"])),
    ]
    parts = [htmlFacts(facts), '<h2 id="pools">Pools</h2>']
    if not document["pools"]:
        parts.append('<p class="empty">No pools.</p>')
    for pool in document["pools"]:
        handle = pool["pool_handle"]
        parts.append(
            f'<section class="pool"><h3>Pool <code class="pool-handle">{escape(handle)}</code>'
            # The pool's policy by name: its values (load, weight) are its PEs'.
            f" &mdash; {escape(str(pool['policy']['type']))}</h3>"
        )
        parts.append(
            htmlTable(
                (
                    "PE identifier",
                    "Home ENRP server",
                    "Registered by",
                    "Owner identity",
                    "User transport",
                    "Policy",
                    "Expires",
                    "Unreachable reports",
                ),
                (
                    (
                        pe["pe_identifier"],
                        pe["home_server_identifier"],
                        pe["identity"],
                        pe["owner_identity"],
                        _transportText(pe["user_transport"]),
                        _policyText(pe["policy"]),
                        pe["expires_at"],
                        pe["unreachable_reports"],
                    )
                    for pe in pool["pool_elements"]
                ),
                "pool-element",
            )
            + "</section>"
        )
    parts.append('<h2 id="peers">ENRP peers</h2>')
    if document["peers"]:
        head = (
            "Server",
            "Identity",
            "State",
            "Connections",
            "Last heard",
            "Checksum",
            "Local checksum",
            "PEs",
            "Resynchronising",
        )
        body = "".join(
            f'<tr class="peer state-{escape(str(p["state"]).replace(" ", "_"))}">'
            + "".join(
                htmlCell(p.get(k))
                for k in (
                    "server",
                    "identity",
                    "state",
                    "connections",
                    "last_heard",
                    "checksum",
                    "local_checksum",
                    "pool_elements",
                    "resynchronising",
                )
            )
            + "</tr>"
            for p in document["peers"]
        )
        parts.append(
            "<table><thead><tr>"
            + "".join(f"<th>{escape(h)}</th>" for h in head)
            + f"</tr></thead><tbody>{body}</tbody></table>"
        )
    else:
        parts.append('<p class="empty">No peers.</p>')
    parts.append('<h2 id="connections">ASAP connections</h2>')
    parts.append(
        htmlTable(
            ("Number", "Peer", "Security", "PEs", "Subscriptions"),
            (
                (
                    c["number"],
                    c["peer"],
                    c["security"],
                    c["pool_elements"],
                    ", ".join(c["subscriptions"]),
                )
                for c in document["connections"]
            ),
        )
    )
    parts.append('<h2 id="counters">Counters</h2>')
    parts.append(htmlTable(("Registrar counter", "Value"), document["counters"].items()))
    if document["peer_counters"]:
        parts.append(htmlTable(("Peering counter", "Value"), document["peer_counters"].items()))
    return htmlPage(f"ENRP server {server}", f"ENRP server {server}", parts)


# ---------------------------------------------------------------------- the resource


class StatusResource(AdminResource):
    """The ENRP admin API (see the module docstring for its routes).

    ``token`` authorizes requests that need it; without one they are all refused.
    ``tokenForReads``: every request needs the token (the listener is not loopback).
    """

    def __init__(self, server: ENRPServer, token: str = "", *, tokenForReads: bool = False) -> None:
        self.enrpServer = server
        self.startedAt = server.clock.seconds()
        self.registry = metricsRegistry(server, self.startedAt)
        super().__init__(
            token,
            {
                "/": self._status,
                "/status": self._status,
                "/summary": self._summary,
                "/metrics": self._metrics,
            },
            tokenForReads=tokenForReads,
        )

    def _status(self, request: Request) -> Reply:
        document = status(self.enrpServer, self.startedAt)
        if wantsHtml(request):
            return Reply(statusPage(document), b"text/html; charset=utf-8")
        return Reply.json(document)

    def _summary(self, request: Request) -> Reply:
        return Reply.json(summary(self.enrpServer, self.startedAt))

    def _metrics(self, request: Request) -> Reply:
        return metricsReply(request, self.registry)

    render_GET = AdminResource.render


def adminSite(server: ENRPServer, token: str = "", *, tokenForReads: bool = False) -> Site:
    """The admin web site of ``server``."""
    site = Site(StatusResource(server, token, tokenForReads=tokenForReads))  # type: ignore[no-untyped-call]
    site.noisy = False
    return site


__all__ = ["StatusResource", "adminSite", "handleText", "status", "statusPage", "summary"]
