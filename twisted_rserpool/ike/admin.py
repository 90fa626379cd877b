"""The operator interface of ``twistd vpngw`` over HTTP (twisted.web): JSON, an HTML status
page, Prometheus metrics, and commands.

Routes (every other path is 404):

- ``GET /`` and ``GET /status``: the gateway's identity, version, start time and uptime;
  every listen address with its IKE SAs (peer, identity, state, virtual IPs, creation and
  last contact, each CHILD_SA with, when the ESP data plane carries it, its packet, octet
  and drop counters), half-open SAs, redirects sent by reason and clients received by
  REDIRECTED_FROM gateway; the redirect targets with their weights (or, with a pool, its
  gateways and loads), the load and whether the gateway drains. JSON, or the HTML status
  page when the client asks for ``text/html`` (a browser).
- ``GET /metrics``: Prometheus metrics (:mod:`twisted_rserpool.ike.metrics`).
- ``POST /drain`` ``{"drain": true, "move": true}``: start (or stop) draining; with
  ``move``, established clients are moved at once with gateway-initiated redirects.
- ``POST /redirect`` ``{"target": "192.0.2.7", "peer": "198.51.100.4"}`` or
  ``{"spi": HEX}`` moves one client, ``{"all": true}`` every client (``target`` may then be
  omitted: each goes to the policy's choice).
- ``POST /targets`` ``{"targets": ["192.0.2.7", "vpn2.example.org"], "weights": [2, 1]}``
  replaces the redirect target list.

Every POST needs the bearer token and a JSON object body (``Content-Type:
application/json``); off loopback every request needs the token
(:mod:`twisted_rserpool._admin`). Answers are JSON objects; a command the gateway cannot
carry out is 400 with ``"error"``. Times are ISO 8601 (UTC).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.web.server import Request, Site

from twisted_rserpool._admin import (
    AdminResource,
    PostRoute,
    Reply,
    htmlFacts,
    htmlPage,
    htmlTable,
    isoTime,
    metricsReply,
    runningFields,
    wantsHtml,
)
from twisted_rserpool.esp.dataplane import DataPlaneInstaller
from twisted_rserpool.ike.child import ChildSa, describe
from twisted_rserpool.ike.gateway import IkeDatagramProtocol
from twisted_rserpool.ike.metrics import metricsRegistry
from twisted_rserpool.ike.redirect import RedirectPolicy, StaticGateways, parse_gateway
from twisted_rserpool.ike.reload import GatewayReloader

__all__ = ["GatewayAdminResource", "adminSite", "gatewayStatus", "statusPage"]

log = Logger()


class _CommandError(Exception):
    """A command the operator got wrong, or that cannot be carried out (answered 400)."""


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


def _targets(policy: RedirectPolicy | None) -> list[dict[str, Any]]:
    """The redirect targets with their weights (None where the source has no weights)."""
    source = policy.source if policy is not None else None
    if source is None:
        return []
    if isinstance(source, StaticGateways):
        return [{"gateway": str(g), "weight": w} for g, w in source.weighted()]
    return [{"gateway": str(g), "weight": None} for g in source.gateways()]


def gatewayStatus(
    protocols: Sequence[IkeDatagramProtocol],
    policy: RedirectPolicy | None,
    load: Callable[[], float] | None = None,
) -> dict[str, Any]:
    """The gateway's part of the ``GET /status`` document (no version or uptime)."""
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
                "peer_auth": sa.peer_auth_verified,
                "state": sa.state.value,
                "suite": str(sa.suite) if sa.suite is not None else None,
                "created": isoTime(sa.created),
                "last_heard": isoTime(sa.last_heard),
                "redirect_supported": sa.redirect_supported,
                "redirected_from": (
                    str(sa.redirected_from) if sa.redirected_from is not None else None
                ),
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
                "nat_t_port": endpoint.nat_t_port,
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
        "identity": str(protocols[0].endpoint.config.local_id) if protocols else None,
        "listen": [e["address"] for e in endpoints],
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
        "draining": bool(policy.draining) if policy is not None else False,
        "targets": [str(g) for g in source.gateways()] if source is not None else [],
        "redirect_targets": _targets(policy),
        "redirects": redirects,
        "endpoints": endpoints,
    }


# ---------------------------------------------------------------------- HTML status page


def _espText(child: dict[str, Any]) -> str:
    esp = child.get("esp")
    if not isinstance(esp, dict):
        return "not installed"
    drops = sum(int(n) for n in dict(esp.get("drops") or {}).values())
    return (
        f"in {esp['packets_in']} packets / {esp['bytes_in']} octets, "
        f"out {esp['packets_out']} / {esp['bytes_out']}, {drops} dropped"
    )


def _counts(mapping: dict[str, int]) -> str | None:
    return ", ".join(f"{k} {v}" for k, v in sorted(mapping.items())) or None


def statusPage(document: dict[str, Any]) -> bytes:
    """The HTML status page of a ``GET /status`` document (no scripts; everything escaped)."""
    identity = str(document["identity"])
    reload = document.get("reload") or {}
    facts = [
        ("Identity", identity),
        ("Version", f"twisted_rserpool {document['version']}"),
        ("Started", document["started_at"]),
        ("Uptime", f"{document['uptime_seconds']:.0f} s"),
        ("Listen addresses", ", ".join(document["listen"]) or "none"),
        ("IKE SAs", document["ike_sas"]),
        ("Load", document["load"]),
        ("Draining", "yes: new clients are redirected" if document["draining"] else "no"),
        ("Reloads", f"{reload.get('reloads', 0)} ({reload.get('files_kept', 0)} files kept)"),
    ]
    parts = [htmlFacts(facts)]
    if document["draining"]:
        parts.append('<p class="draining" id="draining">This gateway is draining.</p>')
    parts.append('<h2 id="listen">Listen addresses</h2>')
    parts.append(
        htmlTable(
            (
                "Address",
                "NAT-T port",
                "IKE SAs",
                "Half-open",
                "Redirects sent",
                "Clients by REDIRECTED_FROM",
                "Cookies demanded",
                "Cookies accepted",
            ),
            (
                (
                    e["address"],
                    e["nat_t_port"],
                    e["ike_sas"],
                    e["half_open"],
                    _counts(e["redirects"]),
                    _counts(e["redirected_from"]),
                    e["counters"].get("cookies_sent"),
                    e["counters"].get("cookies_accepted"),
                )
                for e in document["endpoints"]
            ),
            "listen-address",
        )
    )
    parts.append('<h2 id="ike-sas">IKE SAs</h2>')
    sas = [(e["address"], sa) for e in document["endpoints"] for sa in e["sas"]]
    if sas:
        parts.append(
            htmlTable(
                (
                    "Listen",
                    "Peer",
                    "Peer identity",
                    "Authenticated by",
                    "State",
                    "Virtual IPs",
                    "CHILD_SAs",
                    "SPIi",
                    "SPIr",
                    "Created",
                ),
                (
                    (
                        address,
                        sa["peer"],
                        sa["peer_id"],
                        sa["peer_auth"],
                        sa["state"],
                        ", ".join(sa["virtual_ips"]) or None,
                        len(sa["child_sas"]),
                        sa["spi_i"],
                        sa["spi_r"],
                        sa["created"],
                    )
                    for address, sa in sas
                ),
                lambda row: f"ike-sa state-{row[4]}",
            )
        )
        parts.append('<h2 id="child-sas">CHILD_SAs</h2>')
        parts.append(
            htmlTable(
                (
                    "IKE SA SPIi",
                    "Inbound SPI",
                    "Outbound SPI",
                    "Suite",
                    "Local TS",
                    "Remote TS",
                    "ESP",
                ),
                (
                    (
                        sa["spi_i"],
                        child["inbound_spi"],
                        child["outbound_spi"],
                        child["suite"],
                        ", ".join(child["local_ts"]),
                        ", ".join(child["remote_ts"]),
                        _espText(child),
                    )
                    for _address, sa in sas
                    for child in sa["child_sas"]
                ),
                "child-sa",
            )
        )
    else:
        parts.append('<p class="empty">No IKE SAs.</p>')
    parts.append('<h2 id="targets">Redirect targets</h2>')
    if document["pool"] is not None:
        parts.append(
            htmlTable(
                ("Gateway", "PE identifier", "Load"),
                ((g["address"], f"0x{g['pe']:08x}", g["load"]) for g in document["pool"]),
                "redirect-target",
            )
        )
    elif document["redirect_targets"]:
        parts.append(
            htmlTable(
                ("Gateway", "Weight"),
                ((t["gateway"], t["weight"]) for t in document["redirect_targets"]),
                "redirect-target",
            )
        )
    else:
        parts.append('<p class="empty">No redirect targets.</p>')
    if document["redirects"]:
        parts.append(htmlTable(("Redirect reason", "Clients sent"), document["redirects"].items()))
    counters: dict[str, int] = {}
    for endpoint in document["endpoints"]:
        for name, value in endpoint["counters"].items():
            counters[name] = counters.get(name, 0) + value
    parts.append('<h2 id="counters">Counters</h2>')
    parts.append(htmlTable(("IKE counter", "Value"), sorted(counters.items())))
    return htmlPage(f"IKE gateway {identity}", f"IKE gateway {identity}", parts)


# ---------------------------------------------------------------------- the resource


class GatewayAdminResource(AdminResource):
    """The vpngw admin API (see the module docstring for its routes).

    ``token`` authorizes the commands (without one every command is refused);
    ``tokenForReads``: every request needs it (the listener is not loopback). ``reloader``,
    when given, adds the reload counts to the status.
    """

    def __init__(
        self,
        protocols: Sequence[IkeDatagramProtocol],
        policy: RedirectPolicy | None,
        clock: IReactorTime,
        load: Callable[[], float] | None = None,
        token: str = "",
        *,
        tokenForReads: bool = False,
        reloader: GatewayReloader | None = None,
    ) -> None:
        self.protocols = list(protocols)
        self.policy = policy
        self.clock = clock
        self.load = load
        self.reloader = reloader
        self.startedAt = clock.seconds()
        self.registry = metricsRegistry(self.protocols, policy, self.startedAt, load, reloader)
        super().__init__(
            token,
            {"/": self._status, "/status": self._status, "/metrics": self._metrics},
            {
                "/drain": self._command(self._drain),
                "/redirect": self._command(self._redirect),
                "/targets": self._command(self._targets),
            },
            tokenForReads=tokenForReads,
        )

    def status(self) -> dict[str, Any]:
        """The ``GET /status`` document."""
        document = {
            **runningFields(self.clock.seconds(), self.startedAt),
            **gatewayStatus(self.protocols, self.policy, self.load),
        }
        reloader = self.reloader
        document["reload"] = (
            {
                "files": reloader.files,
                "reloads": reloader.reloads,
                "files_kept": reloader.failures,
                "last": isoTime(reloader.reloadedAt),
            }
            if reloader is not None
            else None
        )
        return document

    def _status(self, request: Request) -> Reply:
        document = self.status()
        if wantsHtml(request):
            return Reply(statusPage(document), b"text/html; charset=utf-8")
        return Reply.json(document)

    def _metrics(self, request: Request) -> Reply:
        return metricsReply(request, self.registry)

    def _command(self, command: Callable[[dict[str, Any]], dict[str, Any]]) -> PostRoute:
        """A POST route around ``command``: 400 for what it refuses; the answer logged."""

        def route(request: Request, body: dict[str, Any]) -> Reply:
            try:
                answer = command(body)
            except (_CommandError, ValueError) as e:
                return Reply.error(400, str(e))
            for protocol in self.protocols:
                protocol.flush()
            log.info(
                "admin {command}: {answer}",
                command=request.path.decode("utf-8", "replace"),
                answer=json.dumps(answer, sort_keys=True),
            )
            return Reply.json(answer)

        return route

    def _needPolicy(self) -> RedirectPolicy:
        if self.policy is None:
            raise _CommandError("this gateway has no redirect policy")
        return self.policy

    def _drain(self, body: dict[str, Any]) -> dict[str, Any]:
        policy = self._needPolicy()
        policy.draining = bool(body.get("drain", True))
        moved = 0
        if policy.draining and body.get("move", True):
            now = self.clock.seconds()
            for protocol in self.protocols:
                moved += protocol.endpoint.redirect_all(None, now, "drain")
        return {"draining": policy.draining, "moved": moved}

    def _redirect(self, body: dict[str, Any]) -> dict[str, Any]:
        targetText = body.get("target")
        target = parse_gateway(str(targetText)) if targetText is not None else None
        now = self.clock.seconds()
        if body.get("all"):
            if target is None:
                self._needPolicy()
            moved = sum(p.endpoint.redirect_all(target, now, "admin") for p in self.protocols)
            return {"moved": moved}
        if target is None:
            raise _CommandError("'target' is needed to move one client")
        spiText = body.get("spi")
        peer = body.get("peer")
        if spiText is None and peer is None:
            raise _CommandError("name the client by 'spi' or 'peer', or give 'all'")
        for protocol in self.protocols:
            for sa in protocol.endpoint:
                named = (spiText is not None and spiText in (sa.spi_i.hex(), sa.spi_r.hex())) or (
                    peer is not None
                    and peer in (sa.peer_address[0], f"{sa.peer_address[0]}:{sa.peer_address[1]}")
                )
                if named and protocol.endpoint.redirect(sa.local_spi, target, now, "admin"):
                    return {"moved": 1, "spi_i": sa.spi_i.hex()}
        raise _CommandError("no established IKE SA of that client supports redirects")

    def _targets(self, body: dict[str, Any]) -> dict[str, Any]:
        policy = self._needPolicy()
        targets = body.get("targets")
        if not isinstance(targets, list) or not all(isinstance(t, str) for t in targets):
            raise _CommandError("'targets' must be a list of gateway identities")
        weights = body.get("weights")
        if weights is not None and (
            not isinstance(weights, list)
            or not all(isinstance(w, int) and not isinstance(w, bool) for w in weights)
        ):
            raise _CommandError("'weights' must be a list of integers")
        source = policy.source
        if not isinstance(source, StaticGateways):
            raise _CommandError("the redirect targets do not come from a static list")
        source.replace([parse_gateway(t) for t in targets], weights)
        return {"targets": [str(g) for g in source.gateways()]}


def adminSite(resource: GatewayAdminResource) -> Site:
    """The admin web site serving ``resource``."""
    site = Site(resource)  # type: ignore[no-untyped-call]
    site.noisy = False
    return site
