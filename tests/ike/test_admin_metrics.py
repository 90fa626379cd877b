"""vpngw's GET /metrics: Prometheus text that prometheus_client's parser reads, with IKE SAs by
state, CHILD_SAs, half-open SAs, cookies demanded and accepted, redirects sent by reason,
clients received by REDIRECTED_FROM, drain, load and the ESP data plane's counters, all read
from the live endpoints at scrape time (in-memory endpoints, no sockets)."""

from __future__ import annotations

from typing import Any

from twisted.internet.task import Clock
from twisted.web.test.requesthelper import DummyRequest

from tests.esp.test_dataplane import ANSWER, QUERY, installed_pair
from tests.ike.test_redirect import CL, B, Net, config, static
from tests.support.web import scrapeMetrics
from twisted_rserpool import __version__
from twisted_rserpool.ike.admin import GatewayAdminResource
from twisted_rserpool.ike.endpoint import IkeEndpoint
from twisted_rserpool.ike.gateway import IkeGatewayProtocol
from twisted_rserpool.ike.redirect import RedirectPolicy

A = ("127.0.0.2", 500)
LATE = ("127.0.0.9", 1500)


def key(name: str, **labels: str) -> tuple[str, tuple[tuple[str, str], ...]]:
    """A sample's key in :func:`scrapeMetrics`'s result (labels sorted by name)."""
    return name, tuple(sorted(labels.items()))


def resourceOf(
    endpoint: IkeEndpoint, policy: RedirectPolicy | None = None, load: Any = None
) -> GatewayAdminResource:
    return GatewayAdminResource([IkeGatewayProtocol(endpoint, Clock())], policy, Clock(), load)


def test_redirect_cookie_and_sa_metrics() -> None:
    """A demands a cookie, accepts it and redirects the client (reason static) to B; B
    counts the client by REDIRECTED_FROM A and holds its established IKE SA with one
    CHILD_SA, and a second client's half-open SA. Each scrape says exactly that."""
    net = Net()
    policyA = static("127.0.0.3", always=True)
    gwA = net.add(A, config("gw-a@test", cookie_threshold=0), policyA)
    gwB = net.add(B, config("gw-b@test"))
    net.client.initiate(A, 0.0)
    net.pump()
    late = net.add(LATE, config("late@test"))
    late.initiate(B, 1.0)
    # B's IKE_SA_INIT answer never reaches the late client: B keeps a half-open SA.
    net.pump(1.0, lambda src, dst, data: None if dst == LATE else data)
    adminA = resourceOf(gwA, policyA, load=lambda: 0.25)
    samples, families = scrapeMetrics(adminA)
    atA = {"listen": "127.0.0.2:500"}
    assert samples[key("rserpool_vpngw_cookies_demanded_total", **atA)] == 1
    assert samples[key("rserpool_vpngw_cookies_accepted_total", **atA)] == 1
    assert samples[key("rserpool_vpngw_redirects_sent_total", **atA, reason="static")] == 1
    assert samples[key("rserpool_vpngw_ike_sas", **atA, state="ESTABLISHED")] == 0
    assert samples[key("rserpool_vpngw_load")] == 0.25
    assert samples[key("rserpool_vpngw_draining")] == 0
    assert samples[key("rserpool_vpngw_redirect_targets")] == 1
    assert samples[key("rserpool_vpngw_info", identity="gw-a@test", version=__version__)] == 1
    assert families["rserpool_vpngw_redirects_sent"].type == "counter"
    assert families["rserpool_vpngw_ike_sas"].type == "gauge"

    policyA.draining = True
    assert scrapeMetrics(adminA)[0][key("rserpool_vpngw_draining")] == 1

    samples, _ = scrapeMetrics(resourceOf(gwB))
    atB = {"listen": "127.0.0.3:500"}
    assert samples[key("rserpool_vpngw_ike_sas", **atB, state="ESTABLISHED")] == 1
    assert samples[key("rserpool_vpngw_ike_sas", **atB, state="INIT_DONE")] == 1
    assert samples[key("rserpool_vpngw_half_open_ike_sas", **atB)] == 1
    assert samples[key("rserpool_vpngw_child_sas", **atB)] == 1
    origin = {"redirected_from": "127.0.0.2"}
    assert samples[key("rserpool_vpngw_redirected_clients_received_total", **atB, **origin)] == 1
    assert samples[key("rserpool_vpngw_ike_sa_init_requests_total", **atB)] == 2
    assert samples[key("rserpool_vpngw_cookies_demanded_total", **atB)] == 0
    # Without a policy the load is the IKE SA count, and nothing drains.
    assert samples[key("rserpool_vpngw_load")] == 2
    assert samples[key("rserpool_vpngw_draining")] == 0
    # Every endpoint counter is also an event, by name.
    event = key("rserpool_vpngw_endpoint_events_total", **atB, event="redirected_from")
    assert samples[event] == 1
    assert not any(name.startswith("rserpool_vpngw_esp_") for name, _ in samples)
    assert gwB.counters["redirected_from"] == 1 and len(net.nodes[CL]) == 1


def test_esp_data_plane_metrics() -> None:
    """With the ESP data plane: packets opened and sealed, the one dropped, and the SAD's
    drops by reason are the data plane's own counters."""
    pair, plane, client = installed_pair()
    sealed = client.seal(QUERY, 1.0)
    assert sealed is not None
    assert plane.open(sealed[0], 1.0) == QUERY
    assert plane.open(sealed[0], 1.0) is None  # a replay, dropped
    assert plane.seal(ANSWER, 1.0) is not None
    assert plane.open(b"\x00\x00\x00\x09" + bytes(40), 1.0) is None  # no such SPI
    samples, families = scrapeMetrics(resourceOf(pair.gw))
    at = {"listen": f"{pair.gw.local_address[0]}:{pair.gw.local_address[1]}"}
    assert samples[key("rserpool_vpngw_esp_packets_total", **at, direction="in")] == 1
    assert samples[key("rserpool_vpngw_esp_packets_total", **at, direction="out")] == 1
    assert samples[key("rserpool_vpngw_esp_dropped_total", **at, direction="in")] == 2
    assert samples[key("rserpool_vpngw_esp_child_sas", **at)] == 1
    [(reason, count)] = plane.sad.counters.items()
    assert samples[key("rserpool_vpngw_esp_sad_drops_total", **at, reason=reason)] == count == 1
    assert families["rserpool_vpngw_esp_packets"].type == "counter"


def test_openmetrics_on_request() -> None:
    """A scraper that asks for OpenMetrics gets it."""
    net = Net()
    request = DummyRequest([b"metrics"])
    request.requestHeaders.setRawHeaders(b"accept", [b"application/openmetrics-text"])
    body = resourceOf(net.add(B)).render(request)  # type: ignore[arg-type]
    [contentType] = request.responseHeaders.getRawHeaders(b"content-type") or []
    assert contentType.startswith(b"application/openmetrics-text")
    assert body.endswith(b"# EOF\n")
