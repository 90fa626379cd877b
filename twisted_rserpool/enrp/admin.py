"""The ENRP server's admin interface: JSON over HTTP (twisted.web), read only.

``GET /`` (or ``/status``) answers with the server identifier and mode, every pool with its
PEs (home ENRP server, identity that registered it, transports, policy, expiry), the ENRP
peers, the open connections with their security, and the counters of refusals and
rate-limit drops. ``GET /summary`` leaves out the pools, PEs and connections (cheap with
many thousands of PEs). Serve it on loopback only
(``--admin tcp:8864:interface=127.0.0.1``).
"""

from __future__ import annotations

import json
from typing import Any

from twisted.web.resource import Resource
from twisted.web.server import Request, Site

from twisted_rserpool.enrp.service import ENRPServer
from twisted_rserpool.handlespace import PoolElementEntry
from twisted_rserpool.wire.parameters import SelectionPolicy, Transport


def _handle(handle: bytes) -> str:
    try:
        return handle.decode("utf-8")
    except UnicodeDecodeError:
        return "0x" + handle.hex()


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
        "expires_at": entry.expires_at,
        "user_transport": _transport(element.user_transport),
        "asap_transport": _transport(element.asap_transport),
        "policy": _policy(element.policy),
        "unreachable_reports": entry.unreachable_reports,
    }


def summary(server: ENRPServer) -> dict[str, Any]:
    """Identifier, mode, sizes and counters: what stays cheap however large the handlespace."""
    registrar = server.registrar
    handlespace = registrar.handlespace
    return {
        "server_identifier": f"0x{server.serverIdentifier:08x}",
        "secure": registrar.config.secure,
        "pool_count": sum(1 for _ in handlespace.pools()),
        "pool_element_count": len(handlespace),
        "connection_count": len(registrar.connections),
        "counters": dict(sorted(registrar.counters.items())),
    }


def status(server: ENRPServer) -> dict[str, Any]:
    """Everything the admin interface shows, as plain JSON-ready values."""
    registrar = server.registrar
    handlespace = registrar.handlespace
    return {
        "server_identifier": f"0x{server.serverIdentifier:08x}",
        "secure": registrar.config.secure,
        "pools": [
            {
                "pool_handle": _handle(pool.handle),
                "policy": _policy(pool.policy),
                "pool_elements": [_element(entry) for entry in pool],
            }
            for pool in sorted(handlespace.pools(), key=lambda p: p.handle)
        ],
        "pool_element_count": len(handlespace),
        "owners": {
            f"0x{owner:08x}": {
                "pool_elements": handlespace.owned_count(owner),
                "pe_checksum": f"0x{handlespace.pe_checksum(owner):04x}",
            }
            for owner in handlespace.owners()
        },
        "peers": server.peerStatus(),
        "connections": [
            {
                "number": number,
                "peer": state.describe(),
                "security": state.security.describe(),
                "pool_elements": len(state.pool_elements),
                "subscriptions": [_handle(h) for h in state.subscriptions],
            }
            for number, state in sorted(registrar.connections.items())
        ],
        "counters": dict(sorted(registrar.counters.items())),
    }


class StatusResource(Resource):
    """``GET`` returns :func:`status` as JSON."""

    isLeaf = True

    def __init__(self, server: ENRPServer) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.enrpServer = server

    def render_GET(self, request: Request) -> bytes:
        """The status document."""
        request.setHeader(b"content-type", b"application/json")  # type: ignore[no-untyped-call]
        if request.postpath and request.postpath[0] == b"summary":
            document = summary(self.enrpServer)
        else:
            document = status(self.enrpServer)
        return json.dumps(document, indent=2).encode("utf-8") + b"\n"


def adminSite(server: ENRPServer) -> Site:
    """The admin web site of ``server``."""
    return Site(StatusResource(server))  # type: ignore[no-untyped-call]
