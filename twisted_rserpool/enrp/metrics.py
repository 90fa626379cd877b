"""Prometheus metrics of an ENRP server, read from its live counters at scrape time.

:class:`EnrpCollector` counts nothing itself: each scrape reads the handlespace sizes, the
registrar's counters (refusals by cause, rate-limit waits, handshake timeouts, connection cap
refusals) and the peer table (peers by state, takeovers), so the metrics can never drift from
the admin JSON. Every counter also appears under ``rserpool_enrp_registrar_events_total`` or
``rserpool_enrp_peer_events_total`` with its name as the ``event`` label.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

from prometheus_client.core import (
    CollectorRegistry,
    CounterMetricFamily,
    GaugeMetricFamily,
    InfoMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from twisted_rserpool import __version__
from twisted_rserpool.enrp.peertable import PeerState
from twisted_rserpool.enrp.service import ENRPServer

PREFIX = "rserpool_enrp_"

#: Registrar counters of requests held back by a rate limit (label ``limit``).
_RATE_LIMIT_WAITS = {
    "request": "requests_delayed",
    "connection": "rate_limited_connections",
    "keep_alive": "keep_alives_rate_limited",
    "unreachable_report": "unreachable_reports_rate_limited",
}

#: Peer table counters of takeovers (label ``event``), RFC 5353 3.9.
_TAKEOVERS = (
    "started",
    "completed",
    "expired",
    "no_quorum",
    "refused",
    "objected",
    "observed",
    "cancelled_alive",
)


class EnrpCollector(Collector):
    """A Prometheus collector over one :class:`ENRPServer`."""

    def __init__(self, server: ENRPServer, startedAt: float) -> None:
        self.server = server
        self.startedAt = startedAt

    def collect(self) -> Iterator[Metric]:
        """The metric families, as they are now."""
        server = self.server
        registrar = server.registrar
        handlespace = registrar.handlespace
        counters = registrar.counters
        ours = server.serverIdentifier

        info = InfoMetricFamily(PREFIX[:-1], "This ENRP server.")
        info.add_metric(
            [],
            {
                "version": __version__,
                "server_identifier": f"0x{ours:08x}",
                "secure": str(registrar.config.secure).lower(),
            },
        )
        yield info
        yield GaugeMetricFamily(
            PREFIX + "start_time_seconds",
            "When the admin interface started (POSIX seconds).",
            value=self.startedAt,
        )
        yield GaugeMetricFamily(
            PREFIX + "pools", "Pools in the handlespace.", value=sum(1 for _ in handlespace.pools())
        )
        yield GaugeMetricFamily(
            PREFIX + "pool_elements", "Pool elements in the handlespace.", value=len(handlespace)
        )
        yield GaugeMetricFamily(
            PREFIX + "pool_elements_owned",
            "Pool elements whose home ENRP server is this one.",
            value=handlespace.owned_count(ours),
        )
        yield GaugeMetricFamily(
            PREFIX + "asap_connections", "Open ASAP connections.", value=len(registrar.connections)
        )
        yield _counter("registrations", "Accepted ASAP registrations.", counters["registrations"])
        yield _counter(
            "deregistrations", "Accepted ASAP deregistrations.", counters["deregistrations"]
        )
        yield _counter(
            "handle_resolutions", "Answered handle resolutions.", counters["resolutions"]
        )
        refused = CounterMetricFamily(
            PREFIX + "registrations_refused",
            "Refused registrations by RFC 5352 cause.",
            labels=["cause"],
        )
        for name, value in sorted(counters.items()):
            if name.startswith("registrations_refused_"):
                refused.add_metric([name.removeprefix("registrations_refused_")], value)
        yield refused
        removed = CounterMetricFamily(
            PREFIX + "pool_elements_removed", "Pool elements removed, by reason.", labels=["reason"]
        )
        for name, value in sorted(counters.items()):
            if name.startswith("removed_"):
                removed.add_metric([name.removeprefix("removed_")], value)
        yield removed
        waits = CounterMetricFamily(
            PREFIX + "rate_limit_waits",
            "Requests held back (not dropped) or refused by a rate limit, by limit.",
            labels=["limit"],
        )
        for label, name in _RATE_LIMIT_WAITS.items():
            waits.add_metric([label], counters[name])
        yield waits
        timeouts = CounterMetricFamily(
            PREFIX + "handshake_timeouts",
            "Connections closed because TLS and the TCP-mapping INIT took too long.",
            labels=["listener"],
        )
        timeouts.add_metric(["asap"], counters["handshake_timeouts"])
        timeouts.add_metric(["enrp"], counters["peer_handshake_timeouts"])
        yield timeouts
        capped = CounterMetricFamily(
            PREFIX + "connections_refused_cap",
            "Connections closed at accept because the listener's cap was reached.",
            labels=["listener"],
        )
        capped.add_metric(["asap"], counters["connections_refused_cap"])
        capped.add_metric(["enrp"], counters["peer_connections_refused_cap"])
        yield capped
        yield _events("registrar_events", "Every registrar counter.", counters)

        peering = server.peering
        peerCounters: Counter[str] = peering.counters if peering is not None else Counter()
        peers = GaugeMetricFamily(
            PREFIX + "peers", "Known ENRP peers, by state (RFC 5353 3.4).", labels=["state"]
        )
        states = Counter(
            p.state for p in (peering.table.peers.values() if peering is not None else ())
        )
        for state in PeerState:
            peers.add_metric([state.value.replace(" ", "_")], states[state])
        yield peers
        takeovers = CounterMetricFamily(
            PREFIX + "takeovers",
            "Takeovers of dead peers (RFC 5353 3.9), by event.",
            labels=["event"],
        )
        for event in _TAKEOVERS:
            takeovers.add_metric([event], peerCounters[f"takeovers_{event}"])
        yield takeovers
        yield _counter(
            "pool_elements_taken_over",
            "Pool elements this server took over from dead peers.",
            peerCounters["pool_elements_taken_over"],
        )
        yield _events("peer_events", "Every ENRP peering counter.", peerCounters)


def _counter(name: str, documentation: str, value: float) -> CounterMetricFamily:
    return CounterMetricFamily(PREFIX + name, documentation, value=value)


def _events(name: str, documentation: str, counters: Counter[str]) -> CounterMetricFamily:
    family = CounterMetricFamily(PREFIX + name, documentation, labels=["event"])
    for event, value in sorted(counters.items()):
        family.add_metric([event], value)
    return family


def metricsRegistry(server: ENRPServer, startedAt: float) -> CollectorRegistry:
    """A registry of its own (not the process-wide one) holding ``server``'s collector."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(EnrpCollector(server, startedAt))
    return registry


__all__ = ["EnrpCollector", "metricsRegistry"]
