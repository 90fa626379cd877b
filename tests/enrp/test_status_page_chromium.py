"""The ENRP status page in a real browser: headless Chromium loads the page of a real
``twistd -n enrp --admin`` that peers with a second server and holds a registered PE, and
the page it rendered shows the pool, the PE and the peer. A screenshot is kept."""

from __future__ import annotations

import json
import subprocess
import time
import urllib.request
from collections.abc import Callable
from html.parser import HTMLParser
from pathlib import Path

import pytest

from tests.conftest import requireTool
from tests.enrp.support import LOOPBACK
from tests.enrp.test_pool_processes import Pool

pytestmark = pytest.mark.slow

#: Bound of every wait here (seconds): process start, peering, registration, the browser.
BOUND = 30.0


def chromium(binary: str, profile: Path, *arguments: str) -> subprocess.CompletedProcess[bytes]:
    """One headless Chromium run, isolated (own profile, no network but the page)."""
    return subprocess.run(
        [
            binary,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={profile}",
            *arguments,
        ],
        capture_output=True,
        timeout=BOUND * 2,
        check=False,
    )


class _Text(HTMLParser):
    """The text of each element with a class, by class name, and every table cell."""

    def __init__(self) -> None:
        super().__init__()
        self.cells: list[str] = []
        self.classes: dict[str, list[str]] = {}
        self._open: list[str | None] = []
        self.scripts = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.scripts += tag == "script"
        self._open.append(dict(attrs).get("class") if tag != "td" else "td")
        if tag in ("td", "code", "tr"):
            self.classes.setdefault(self._open[-1] or tag, []).append("")

    def handle_endtag(self, tag: str) -> None:
        if self._open:
            self._open.pop()

    def handle_data(self, data: str) -> None:
        for name in {c for c in self._open if c}:
            if self.classes.get(name):
                self.classes[name][-1] += data


def _wait(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + BOUND
    while time.monotonic() < deadline:
        try:
            if condition():
                return
        except OSError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"{what} not within {BOUND} s")


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

        _wait(ready, "PE registered and peer 2 active at server 1")
        url = f"http://{LOOPBACK}:{first.process.adminPort}/"
        profile = tmp_path / "chromium-profile"
        dumped = chromium(binary, profile, "--dump-dom", url)
        dom = dumped.stdout.decode("utf-8", "replace")
        assert dumped.returncode == 0 and "<h1>" in dom, dumped.stderr.decode()[-2000:]

        parser = _Text()
        parser.feed(dom)
        assert parser.scripts == 0
        assert parser.classes["pool-handle"] == ["echo"]
        [row] = parser.classes["pool-element"]
        assert peId in row and "0x00000001" in row and "RoundRobinPolicy" in row
        assert "pe" in row.split(peId, 1)[1]  # the identity that registered it
        [peer] = parser.classes["peer state-active"]
        assert "0x00000002" in peer and "enrp-2" in peer
        assert "ENRP server 0x00000001" in dom and "twisted_rserpool" in dom

        screenshot = tmp_path / "status.png"
        shot = chromium(
            binary, profile, f"--screenshot={screenshot}", "--window-size=1280,900", url
        )
        assert shot.returncode == 0, shot.stderr.decode()[-2000:]
        assert screenshot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        print(f"status page screenshot: {screenshot}")

        # The same URL without text/html in Accept (curl, scripts) stays JSON.
        with urllib.request.urlopen(url, timeout=10) as reply:
            assert json.load(reply)["server_identifier"] == "0x00000001"
    finally:
        pool.stop()
