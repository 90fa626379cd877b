"""GET /metrics: Prometheus text that prometheus_client's parser reads, with the families an
operator alerts on, read from the live registrar and peer counters at scrape time."""

from __future__ import annotations

from ipaddress import IPv4Address
from typing import Any

from twisted.internet.task import Clock
from twisted.web.test.requesthelper import DummyRequest

from tests.enrp import test_peers_service as peers
from tests.enrp.test_service import Client, make_server, registration
from tests.support.web import Samples, scrapeMetrics
from twisted_rserpool import __version__
from twisted_rserpool.enrp.admin import StatusResource
from twisted_rserpool.enrp.service import ENRPServer
from twisted_rserpool.wire import asap
from twisted_rserpool.wire.parameters import PoolElementParameter, RoundRobinPolicy, TcpTransport


def scrape(server: ENRPServer, resource: StatusResource | None = None) -> tuple[Samples, Any]:
    """Every sample of one scrape by (name, labels), and the parsed families."""
    return scrapeMetrics(resource or StatusResource(server))


def test_metrics_parse_and_match_the_registrar_counters() -> None:
    """Pools, PEs, registrations and refusals by cause are what the registrar counted."""
    clock = Clock()
    server = make_server(clock)  # secure: a plain connection's registration is refused
    insecure = make_server(Clock(), secure=False)
    resource = StatusResource(insecure)
    for pe in (7, 8):
        Client(insecure, 41000 + pe).send(registration(pe))
    other = asap.Registration(
        b"other",
        PoolElementParameter(
            9, 0, 30, TcpTransport(7009, IPv4Address("127.0.0.1")), RoundRobinPolicy()
        ),
    )
    Client(insecure, 41009).send(other)
    Client(server).send(registration())
    samples, families = scrape(insecure, resource)
    expected = {
        "rserpool_enrp_info",
        "rserpool_enrp_start_time_seconds",
        "rserpool_enrp_pools",
        "rserpool_enrp_pool_elements",
        "rserpool_enrp_pool_elements_owned",
        "rserpool_enrp_asap_connections",
        "rserpool_enrp_registrations",
        "rserpool_enrp_registrations_refused",
        "rserpool_enrp_rate_limit_waits",
        "rserpool_enrp_handshake_timeouts",
        "rserpool_enrp_connections_refused_cap",
        "rserpool_enrp_peers",
        "rserpool_enrp_takeovers",
        "rserpool_enrp_registrar_events",
        "rserpool_enrp_peer_events",
    }
    assert expected <= set(families)
    assert families["rserpool_enrp_registrations"].type == "counter"
    assert families["rserpool_enrp_pools"].type == "gauge"
    assert samples[("rserpool_enrp_pools", ())] == 2
    assert samples[("rserpool_enrp_pool_elements", ())] == 3
    assert samples[("rserpool_enrp_pool_elements_owned", ())] == 3
    assert samples[("rserpool_enrp_asap_connections", ())] == 3
    assert samples[("rserpool_enrp_registrations_total", ())] == 3
    info = next(k for k in samples if k[0] == "rserpool_enrp_info")
    assert ("version", __version__) in info[1] and ("secure", "false") in info[1]

    refused, _ = scrape(server)
    counted = {
        name.removeprefix("registrations_refused_"): value
        for name, value in server.registrar.counters.items()
        if name.startswith("registrations_refused_")
    }
    assert counted and sum(counted.values()) == 1
    for cause, value in counted.items():
        assert refused[("rserpool_enrp_registrations_refused_total", (("cause", cause),))] == value
    assert refused[("rserpool_enrp_registrations_total", ())] == 0
    assert refused[("rserpool_enrp_pool_elements", ())] == 0


def test_metrics_are_read_live_at_scrape_time() -> None:
    """A counter changed after the collector was built shows in the next scrape: the
    collector keeps no copy (waits, handshake timeouts, cap refusals, every event)."""
    server = make_server(Clock())
    resource = StatusResource(server)
    counters = server.registrar.counters
    counters["requests_delayed"] += 4
    counters["keep_alives_rate_limited"] += 2
    counters["handshake_timeouts"] += 3
    counters["peer_connections_refused_cap"] += 5
    samples, _ = scrape(server, resource)
    assert samples[("rserpool_enrp_rate_limit_waits_total", (("limit", "request"),))] == 4
    assert samples[("rserpool_enrp_rate_limit_waits_total", (("limit", "keep_alive"),))] == 2
    assert samples[("rserpool_enrp_handshake_timeouts_total", (("listener", "asap"),))] == 3
    assert samples[("rserpool_enrp_handshake_timeouts_total", (("listener", "enrp"),))] == 0
    assert samples[("rserpool_enrp_connections_refused_cap_total", (("listener", "enrp"),))] == 5
    for name, value in counters.items():
        key = ("rserpool_enrp_registrar_events_total", (("event", name),))
        assert samples[key] == value
    counters["handshake_timeouts"] += 1
    again, _ = scrape(server, resource)
    assert again[("rserpool_enrp_handshake_timeouts_total", (("listener", "asap"),))] == 4


def test_connection_cap_refusals_are_counted_in_metrics() -> None:
    """A connection refused at the cap shows as connections_refused_cap{listener="asap"}."""
    server = make_server(Clock(), secure=False)
    server.connectionCap.limit = 1
    Client(server)
    assert server.factory.buildProtocol(None) is None
    samples, _ = scrape(server)
    assert samples[("rserpool_enrp_connections_refused_cap_total", (("listener", "asap"),))] == 1


def test_metrics_show_peers_by_state_and_a_takeover() -> None:
    """After a peer dies and is taken over the survivors' metrics show it: peers by state
    and the takeover events are the peer table's own numbers."""
    clock, wire = Clock(), peers.Wire()
    _a, b, c = peers.cluster(clock, wire, max_time_last_heard=2.0, max_time_no_response=1.0)
    samples, _ = scrape(b)
    assert samples[("rserpool_enrp_peers", (("state", "active"),))] == 2
    peers.AsapClient(wire, c).send(peers.registration(42))
    for ta, tb in list(wire.pairs):
        for t in (ta, tb):
            if t.protocol in c.openPeerConnections or t.protocol in c.openConnections:
                t.loseConnection()  # type: ignore[no-untyped-call]
    c.stopService()
    wire.pump()
    peers.advance(clock, wire, 3.0)
    assert b.peering is not None and b.peering.counters["takeovers_completed"] == 1
    samples, _ = scrape(b)
    assert samples[("rserpool_enrp_takeovers_total", (("event", "completed"),))] == 1
    assert (
        samples[("rserpool_enrp_takeovers_total", (("event", "started"),))]
        == (b.peering.counters["takeovers_started"])
    )
    assert samples[("rserpool_enrp_pool_elements_taken_over_total", ())] == 1
    states = {
        labels[0][1]: value
        for (name, labels), value in samples.items()
        if name == "rserpool_enrp_peers"
    }
    assert sum(states.values()) == len(b.peering.table.peers)
    assert states["active"] == 1  # a is alive; c is no longer active
    for name, value in b.peering.counters.items():
        assert samples[("rserpool_enrp_peer_events_total", (("event", name),))] == value


def test_metrics_negotiate_openmetrics() -> None:
    """A Prometheus server asking for OpenMetrics gets it (prometheus_client's encoder)."""
    server = make_server(Clock())
    request = DummyRequest([b"metrics"])
    request.requestHeaders.setRawHeaders(b"accept", [b"application/openmetrics-text"])
    body = StatusResource(server).render(request)  # type: ignore[arg-type]
    [contentType] = request.responseHeaders.getRawHeaders(b"content-type") or []
    assert contentType.startswith(b"application/openmetrics-text")
    assert body.endswith(b"# EOF\n")
