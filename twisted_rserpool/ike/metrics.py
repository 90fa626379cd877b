"""Prometheus metrics of an IKE gateway (``twistd vpngw``), read from its live state at scrape
time.

:class:`GatewayCollector` counts nothing itself: each scrape reads the IKE SA tables (SAs by
state, CHILD_SAs, half-open SAs), the endpoints' counters (cookies demanded and accepted,
redirects sent by reason, clients received by REDIRECTED_FROM) and, with the ESP data plane,
its packet and drop counters, so the metrics never drift from the admin JSON. Every endpoint
counter also appears under ``rserpool_vpngw_endpoint_events_total`` with its name as the
``event`` label. Metrics of one listen address carry it as the ``listen`` label.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator, Sequence

from prometheus_client.core import (
    CollectorRegistry,
    CounterMetricFamily,
    GaugeMetricFamily,
    InfoMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from twisted_rserpool import __version__
from twisted_rserpool.esp.dataplane import DataPlaneInstaller
from twisted_rserpool.ike.gateway import IkeDatagramProtocol
from twisted_rserpool.ike.redirect import RedirectPolicy
from twisted_rserpool.ike.reload import GatewayReloader
from twisted_rserpool.ike.state import State

__all__ = ["GatewayCollector", "metricsRegistry"]

PREFIX = "rserpool_vpngw_"


def listenLabel(protocol: IkeDatagramProtocol) -> str:
    """A listen address as ``host:port`` (``[v6]:port`` for IPv6)."""
    host, port = protocol.endpoint.local_address
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class GatewayCollector(Collector):
    """A Prometheus collector over the IKE endpoints of one gateway."""

    def __init__(
        self,
        protocols: Sequence[IkeDatagramProtocol],
        policy: RedirectPolicy | None,
        startedAt: float,
        load: Callable[[], float] | None = None,
        reloader: GatewayReloader | None = None,
    ) -> None:
        self.protocols = list(protocols)
        self.policy = policy
        self.startedAt = startedAt
        self.load = load
        self.reloader = reloader

    def collect(self) -> Iterator[Metric]:
        """The metric families, as they are now."""
        identity = str(self.protocols[0].endpoint.config.local_id) if self.protocols else ""
        info = InfoMetricFamily(PREFIX[:-1], "This IKE gateway.")
        info.add_metric([], {"version": __version__, "identity": identity})
        yield info
        yield GaugeMetricFamily(
            PREFIX + "start_time_seconds",
            "When the admin interface started (POSIX seconds).",
            value=self.startedAt,
        )
        yield from self._sas()
        yield from self._redirects()
        yield from self._endpointCounters()
        yield from self._esp()
        if self.reloader is not None:
            reloads = CounterMetricFamily(
                PREFIX + "reloads",
                "Reloads of the secrets, certificates and targets (SIGHUP), by result.",
                labels=["result"],
            )
            reloads.add_metric(["run"], self.reloader.reloads)
            reloads.add_metric(["file_kept"], self.reloader.failures)
            yield reloads

    def _sas(self) -> Iterator[Metric]:
        sas = GaugeMetricFamily(
            PREFIX + "ike_sas", "IKE SAs by state (RFC 7296).", labels=["listen", "state"]
        )
        children = GaugeMetricFamily(
            PREFIX + "child_sas", "CHILD_SAs of the IKE SAs.", labels=["listen"]
        )
        halfOpen = GaugeMetricFamily(
            PREFIX + "half_open_ike_sas",
            "Responder IKE SAs that wait for IKE_AUTH (RFC 7296 2.6).",
            labels=["listen"],
        )
        for protocol in self.protocols:
            listen = listenLabel(protocol)
            states = Counter(sa.state for sa in protocol.endpoint)
            for state in State:
                sas.add_metric([listen, state.value], states[state])
            children.add_metric([listen], sum(len(sa.children) for sa in protocol.endpoint))
            halfOpen.add_metric([listen], protocol.endpoint.half_open)
        yield sas
        yield children
        yield halfOpen
        total = sum(len(p.endpoint) for p in self.protocols)
        yield GaugeMetricFamily(
            PREFIX + "load",
            "The load the redirect policy and the pool registration see (0 idle, 1 full).",
            value=self.load() if self.load is not None else total,
        )
        yield GaugeMetricFamily(
            PREFIX + "draining",
            "1 while the gateway drains (every new client is redirected).",
            value=1 if self.policy is not None and self.policy.draining else 0,
        )
        source = self.policy.source if self.policy is not None else None
        yield GaugeMetricFamily(
            PREFIX + "redirect_targets",
            "Gateways clients can be redirected to.",
            value=len(source.gateways()) if source is not None else 0,
        )

    def _redirects(self) -> Iterator[Metric]:
        sent = CounterMetricFamily(
            PREFIX + "redirects_sent",
            "Clients redirected to another gateway (RFC 5685), by reason.",
            labels=["listen", "reason"],
        )
        received = CounterMetricFamily(
            PREFIX + "redirected_clients_received",
            "Clients that arrived with N(REDIRECTED_FROM), by the gateway they name.",
            labels=["listen", "redirected_from"],
        )
        for protocol in self.protocols:
            listen = listenLabel(protocol)
            for reason, count in sorted(protocol.endpoint.redirects.items()):
                sent.add_metric([listen, reason], count)
            for origin, count in sorted(protocol.endpoint.redirected_from.items()):
                received.add_metric([listen, origin], count)
        yield sent
        yield received

    def _endpointCounters(self) -> Iterator[Metric]:
        families = {
            "init_requests": CounterMetricFamily(
                PREFIX + "ike_sa_init_requests",
                "IKE_SA_INIT requests received.",
                labels=["listen"],
            ),
            "cookies_sent": CounterMetricFamily(
                PREFIX + "cookies_demanded",
                "IKE_SA_INIT requests answered with N(COOKIE) (RFC 7296 2.6).",
                labels=["listen"],
            ),
            "cookies_accepted": CounterMetricFamily(
                PREFIX + "cookies_accepted",
                "IKE_SA_INIT requests that returned a valid cookie.",
                labels=["listen"],
            ),
            "dropped": CounterMetricFamily(
                PREFIX + "datagrams_dropped",
                "IKE datagrams dropped (malformed, unknown SPI, limits).",
                labels=["listen"],
            ),
        }
        events = CounterMetricFamily(
            PREFIX + "endpoint_events", "Every IKE endpoint counter.", labels=["listen", "event"]
        )
        for protocol in self.protocols:
            listen = listenLabel(protocol)
            counters = protocol.endpoint.counters
            for name, family in families.items():
                family.add_metric([listen], counters.get(name, 0))
            for name, value in sorted(counters.items()):
                events.add_metric([listen, name], value)
        yield from families.values()
        yield events

    def _esp(self) -> Iterator[Metric]:
        planes = [
            (listenLabel(p), p.endpoint.installer)
            for p in self.protocols
            if isinstance(p.endpoint.installer, DataPlaneInstaller)
        ]
        if not planes:
            return
        packets = CounterMetricFamily(
            PREFIX + "esp_packets",
            "Packets through the ESP data plane (out: sealed, in: opened).",
            labels=["listen", "direction"],
        )
        dropped = CounterMetricFamily(
            PREFIX + "esp_dropped",
            "Packets the ESP data plane dropped.",
            labels=["listen", "direction"],
        )
        sad = CounterMetricFamily(
            PREFIX + "esp_sad_drops",
            "Inbound ESP packets dropped before an SA took them, by reason.",
            labels=["listen", "reason"],
        )
        installed = GaugeMetricFamily(
            PREFIX + "esp_child_sas",
            "CHILD_SAs installed in the ESP data plane.",
            labels=["listen"],
        )
        for listen, plane in planes:
            counters = plane.counters
            packets.add_metric([listen, "out"], counters["sealed"])
            packets.add_metric([listen, "in"], counters["opened"])
            dropped.add_metric([listen, "out"], counters["out_dropped"])
            dropped.add_metric([listen, "in"], counters["in_dropped"])
            for reason, count in sorted(plane.sad.counters.items()):
                sad.add_metric([listen, reason], count)
            installed.add_metric([listen], len(plane))
        yield packets
        yield dropped
        yield sad
        yield installed


def metricsRegistry(
    protocols: Sequence[IkeDatagramProtocol],
    policy: RedirectPolicy | None,
    startedAt: float,
    load: Callable[[], float] | None = None,
    reloader: GatewayReloader | None = None,
) -> CollectorRegistry:
    """A registry of its own (not the process-wide one) holding the gateway's collector."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(GatewayCollector(protocols, policy, startedAt, load, reloader))
    return registry
