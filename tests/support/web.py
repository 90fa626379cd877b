"""Requests to the admin resources without a socket (twisted.web's DummyRequest), and one
Prometheus scrape of them parsed by prometheus_client."""

from __future__ import annotations

from io import BytesIO
from typing import Any

from prometheus_client.parser import text_string_to_metric_families
from twisted.web.resource import Resource
from twisted.web.test.requesthelper import DummyRequest

#: Samples of a scrape by (metric name, labels sorted by name).
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def request(
    path: str,
    method: bytes = b"GET",
    headers: dict[bytes, bytes] | None = None,
    body: bytes = b"",
) -> DummyRequest:
    """A request for ``path`` with ``headers`` and ``body``."""
    parts = [p.encode() for p in path.strip("/").split("/")] if path != "/" else [b""]
    dummy = DummyRequest(parts)
    dummy.method = method
    dummy.path = path.encode()  # type: ignore[attr-defined]
    for name, value in (headers or {}).items():
        dummy.requestHeaders.setRawHeaders(name, [value])
    dummy.content = BytesIO(body)  # type: ignore[attr-defined]
    return dummy


def answer(resource: Resource, dummy: DummyRequest) -> tuple[int, bytes]:
    """The status and body ``resource`` answers ``dummy`` with."""
    body: bytes = resource.render(dummy)  # type: ignore[no-untyped-call]
    return dummy.responseCode or 200, body


def scrapeMetrics(resource: Resource) -> tuple[Samples, dict[str, Any]]:
    """Every sample of one ``GET /metrics`` (Prometheus text) by (name, labels), and the
    parsed metric families by name."""
    dummy = request("/metrics")
    code, body = answer(resource, dummy)
    assert code == 200, body
    [contentType] = dummy.responseHeaders.getRawHeaders(b"content-type") or []
    assert contentType.startswith(b"text/plain; version=")
    families = {f.name: f for f in text_string_to_metric_families(body.decode("utf-8"))}
    samples: Samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in families.values()
        for s in family.samples
    }
    return samples, families
