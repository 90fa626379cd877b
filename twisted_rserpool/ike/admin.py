"""The operator interface of ``twistd vpngw``: JSON over HTTP (twisted.web).

``GET /status`` reports every listen address: its IKE SAs (each with its CHILD_SAs and,
when the ESP data plane carries them, their packet, octet and drop counters), load,
redirects sent by reason and clients received by REDIRECTED_FROM gateway, plus the redirect
targets and whether the gateway drains. Commands are ``POST`` requests with a JSON object body:

- ``/drain`` ``{"drain": true, "move": true}``: start (or stop) draining; with ``move``,
  established clients are moved at once with gateway-initiated redirects.
- ``/redirect`` ``{"target": "192.0.2.7", "peer": "198.51.100.4"}`` or ``{"spi": HEX}``
  moves one client, ``{"all": true}`` every client (``target`` may then be omitted: each
  goes to the policy's choice).
- ``/targets`` ``{"targets": ["192.0.2.7", "vpn2.example.org"], "weights": [2, 1]}``
  replaces the redirect target list.

Answers are JSON objects; errors carry ``"error"`` and a 4xx status. Bind it to loopback.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.web.resource import Resource
from twisted.web.server import Request

from twisted_rserpool.esp.dataplane import DataPlaneInstaller
from twisted_rserpool.ike.child import ChildSa, describe
from twisted_rserpool.ike.gateway import IkeDatagramProtocol
from twisted_rserpool.ike.redirect import RedirectPolicy, StaticGateways, parse_gateway

__all__ = ["AdminResource", "gatewayStatus"]


class _CommandError(Exception):
    """A command the operator got wrong (answered 400)."""


def _childStatus(installer: object, child: ChildSa) -> dict[str, Any]:
    """A CHILD_SA's SPIs and selectors, and, when a data plane carries it, its counters."""
    status: dict[str, Any] = {
        "inbound_spi": child.inbound_spi.hex(),
        "outbound_spi": child.outbound_spi.hex(),
        "suite": str(child.suite),
        "local_ts": [describe(ts) for ts in child.local_ts],
        "remote_ts": [describe(ts) for ts in child.remote_ts],
        "installed": False,
    }
    counters = installer.child_status(child) if isinstance(installer, DataPlaneInstaller) else None
    if counters is not None:
        status["installed"] = True
        status["esp"] = counters
    return status


def gatewayStatus(
    protocols: Sequence[IkeDatagramProtocol],
    policy: RedirectPolicy | None,
    load: Callable[[], float] | None = None,
) -> dict[str, Any]:
    """The status document of ``GET /status``."""
    endpoints = []
    redirects: dict[str, int] = {}
    total = 0
    for protocol in protocols:
        endpoint = protocol.endpoint
        sas = [
            {
                "spi_i": sa.spi_i.hex(),
                "spi_r": sa.spi_r.hex(),
                "peer": f"{sa.peer_address[0]}:{sa.peer_address[1]}",
                "peer_id": str(sa.peer_id) if sa.peer_id is not None else None,
                "state": sa.state.value,
                "redirect_supported": sa.redirect_supported,
                "virtual_ips": [str(a) for a in sa.virtual_ips],
                "child_sas": [_childStatus(endpoint.installer, c) for c in sa.children.values()],
            }
            for sa in endpoint
        ]
        total += len(sas)
        for reason, count in endpoint.redirects.items():
            redirects[reason] = redirects.get(reason, 0) + count
        endpoints.append(
            {
                "address": f"{endpoint.local_address[0]}:{endpoint.local_address[1]}",
                "ike_sas": len(sas),
                "half_open": endpoint.half_open,
                "sas": sas,
                "redirects": dict(endpoint.redirects),
                "redirected_from": dict(endpoint.redirected_from),
                "counters": dict(endpoint.counters),
                "data_plane": (
                    endpoint.installer.status()
                    if isinstance(endpoint.installer, DataPlaneInstaller)
                    else None
                ),
            }
        )
    source = policy.source if policy is not None else None
    listed = getattr(source, "listed", None)
    pool = (
        [{"address": str(g.address), "pe": g.pe_identifier, "load": g.load} for g in listed]
        if listed is not None
        else None
    )
    address_pool = protocols[0].endpoint.config.address_pool if protocols else None
    return {
        "pool": pool,
        "address_pool": (
            {
                "networks": [str(n) for n in address_pool.networks],
                "leased": {str(lease.address): str(lease.identity) for lease in address_pool},
            }
            if address_pool is not None
            else None
        ),
        "ike_sas": total,
        "load": load() if load is not None else total,
        "draining": policy.draining if policy is not None else False,
        "targets": [str(g) for g in source.gateways()] if source is not None else [],
        "redirects": redirects,
        "endpoints": endpoints,
    }


class AdminResource(Resource):
    """The admin HTTP resource tree (see the module docstring)."""

    log = Logger()
    isLeaf = True

    def __init__(
        self,
        protocols: Sequence[IkeDatagramProtocol],
        policy: RedirectPolicy | None,
        clock: IReactorTime,
        load: Callable[[], float] | None = None,
    ) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.protocols = list(protocols)
        self.policy = policy
        self.clock = clock
        self.load = load

    def render_GET(self, request: Request) -> bytes:
        """``/status``."""
        if request.path.rstrip(b"/") not in (b"", b"/status"):
            return self._answer(request, 404, {"error": "not found"})
        return self._answer(request, 200, gatewayStatus(self.protocols, self.policy, self.load))

    def render_POST(self, request: Request) -> bytes:
        """``/drain``, ``/redirect``, ``/targets``."""
        commands = {
            b"/drain": self._drain,
            b"/redirect": self._redirect,
            b"/targets": self._targets,
        }
        command = commands.get(request.path.rstrip(b"/"))
        if command is None:
            return self._answer(request, 404, {"error": "not found"})
        try:
            assert request.content is not None
            body = json.loads(request.content.read() or b"{}")
            if not isinstance(body, dict):
                raise _CommandError("the body must be a JSON object")
            answer = command(body)
        except (_CommandError, ValueError) as e:
            return self._answer(request, 400, {"error": str(e)})
        for protocol in self.protocols:
            protocol.flush()
        self.log.info(
            "admin {command}: {answer}", command=request.path.decode(), answer=json.dumps(answer)
        )
        return self._answer(request, 200, answer)

    def _answer(self, request: Request, code: int, document: dict[str, Any]) -> bytes:
        request.setResponseCode(code)
        request.setHeader(b"content-type", b"application/json")  # type: ignore[no-untyped-call]
        return json.dumps(document, sort_keys=True).encode() + b"\n"

    def _need_policy(self) -> RedirectPolicy:
        if self.policy is None:
            raise _CommandError("this gateway has no redirect policy")
        return self.policy

    def _drain(self, body: dict[str, Any]) -> dict[str, Any]:
        policy = self._need_policy()
        policy.draining = bool(body.get("drain", True))
        moved = 0
        if policy.draining and body.get("move", True):
            now = self.clock.seconds()
            for protocol in self.protocols:
                moved += protocol.endpoint.redirect_all(None, now, "drain")
        return {"draining": policy.draining, "moved": moved}

    def _redirect(self, body: dict[str, Any]) -> dict[str, Any]:
        target_text = body.get("target")
        target = parse_gateway(str(target_text)) if target_text is not None else None
        now = self.clock.seconds()
        if body.get("all"):
            if target is None:
                self._need_policy()
            moved = sum(p.endpoint.redirect_all(target, now, "admin") for p in self.protocols)
            return {"moved": moved}
        if target is None:
            raise _CommandError("'target' is needed to move one client")
        spi_text = body.get("spi")
        peer = body.get("peer")
        if spi_text is None and peer is None:
            raise _CommandError("name the client by 'spi' or 'peer', or give 'all'")
        for protocol in self.protocols:
            for sa in protocol.endpoint:
                named = (spi_text is not None and spi_text in (sa.spi_i.hex(), sa.spi_r.hex())) or (
                    peer is not None
                    and peer in (sa.peer_address[0], f"{sa.peer_address[0]}:{sa.peer_address[1]}")
                )
                if named and protocol.endpoint.redirect(sa.local_spi, target, now, "admin"):
                    return {"moved": 1, "spi_i": sa.spi_i.hex()}
        raise _CommandError("no established IKE SA of that client supports redirects")

    def _targets(self, body: dict[str, Any]) -> dict[str, Any]:
        policy = self._need_policy()
        targets = body.get("targets")
        if not isinstance(targets, list) or not all(isinstance(t, str) for t in targets):
            raise _CommandError("'targets' must be a list of gateway identities")
        weights = body.get("weights")
        if weights is not None and (
            not isinstance(weights, list) or not all(isinstance(w, int) for w in weights)
        ):
            raise _CommandError("'weights' must be a list of integers")
        source = policy.source
        if not isinstance(source, StaticGateways):
            raise _CommandError("the redirect targets do not come from a static list")
        source.replace([parse_gateway(t) for t in targets], weights)
        return {"targets": [str(g) for g in source.gateways()]}
