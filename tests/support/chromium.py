"""Headless Chromium (Debian's ``chromium``) for the status page tests: a page's DOM as the
browser rendered it, a screenshot, and the text of the page's classed elements."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from html.parser import HTMLParser
from pathlib import Path

#: Bound of one browser run (seconds).
BROWSER_BOUND = 60.0


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
        timeout=BROWSER_BOUND,
        check=False,
    )


def renderedDom(binary: str, profile: Path, url: str) -> str:
    """The DOM Chromium built from ``url`` (it must have rendered an ``<h1>``)."""
    dumped = chromium(binary, profile, "--dump-dom", url)
    dom = dumped.stdout.decode("utf-8", "replace")
    assert dumped.returncode == 0 and "<h1>" in dom, dumped.stderr.decode()[-2000:]
    return dom


def screenshot(binary: str, profile: Path, url: str, path: Path) -> None:
    """A PNG screenshot of ``url`` at 1280x900 into ``path`` (kept as the test's artifact)."""
    shot = chromium(binary, profile, f"--screenshot={path}", "--window-size=1280,900", url)
    assert shot.returncode == 0, shot.stderr.decode()[-2000:]
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    print(f"status page screenshot: {path}")


class PageText(HTMLParser):
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


def waitUntil(condition: Callable[[], bool], what: str, bound: float = 30.0) -> None:
    """Poll ``condition`` (an OSError counts as not yet) until it holds, at most ``bound`` s."""
    deadline = time.monotonic() + bound
    while time.monotonic() < deadline:
        try:
            if condition():
                return
        except OSError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"{what} not within {bound} s")
