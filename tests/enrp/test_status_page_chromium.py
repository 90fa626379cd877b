"""The ENRP status page in a real browser: headless Chromium loads the page of a real
``twistd -n enrp --admin`` that peers with a second server and holds a registered PE, and
the page it rendered shows the pool, the PE and the peer. A screenshot is kept."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import requireTool
from tests.enrp.support import LOOPBACK
from tests.enrp.test_pool_processes import Pool
from tests.support.chromium import PageText, renderedDom, screenshot, waitUntil

pytestmark = pytest.mark.slow


def test_status_page_in_headless_chromium(tmp_path: Path) -> None:
    """Chromium renders the page with the pool 'echo', its PE (identity 'pe', home server
    1, round robin) and the peer 0x00000002 as active; no script runs; screenshot kept."""
    binary = requireTool("chromium")
    pool = Pool(tmp_path / "pool", 2)
    try:
        pool.startAll()
        first, _second = pool.servers
        _element, pe = pool.startElement(first, "a")
        peId = f"0x{pe:08x}"

        def ready() -> bool:
            document = first.admin()
            peers = {p["server"]: p["state"] for p in document["peers"]}
            listed = [e["pe_identifier"] for p in document["pools"] for e in p["pool_elements"]]
            return peers.get("0x00000002") == "active" and peId in listed

        waitUntil(ready, "PE registered and peer 2 active at server 1")
        url = f"http://{LOOPBACK}:{first.process.adminPort}/"
        profile = tmp_path / "chromium-profile"
        dom = renderedDom(binary, profile, url)

        parser = PageText()
        parser.feed(dom)
        assert parser.scripts == 0
        assert parser.classes["pool-handle"] == ["echo"]
        [row] = parser.classes["pool-element"]
        assert peId in row and "0x00000001" in row and "RoundRobinPolicy" in row
        assert "pe" in row.split(peId, 1)[1]  # the identity that registered it
        [peer] = parser.classes["peer state-active"]
        assert "0x00000002" in peer and "enrp-2" in peer
        assert "ENRP server 0x00000001" in dom and "twisted_rserpool" in dom

        screenshot(binary, profile, url, tmp_path / "status.png")

        # The same URL without text/html in Accept (curl, scripts) stays JSON.
        with urllib.request.urlopen(url, timeout=10) as reply:
            assert json.load(reply)["server_identifier"] == "0x00000001"
    finally:
        pool.stop()
