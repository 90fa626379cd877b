"""Issue 15 finding 7: vpngw's generated pre-shared key goes to a 0600 file, never the log."""

from __future__ import annotations

import stat
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from twisted.logger import ILogObserver, formatEvent, globalLogPublisher
from zope.interface import implementer

from tests.ike.test_gateway import FakeReactor
from twisted_rserpool._tap import vpngw
from twisted_rserpool._tap.vpngw_auth import GENERATED_PSK_FILE
from twisted_rserpool.ike.config import Identity, PskTable

TWISTD = str(Path(sys.executable).with_name("twistd"))


def test_key_file_not_log(tmp_path: Path) -> None:
    """makeService writes the key (0600, --secrets format) and logs only the file's path."""
    state = tmp_path / "state"
    options = vpngw.Options()  # type: ignore[no-untyped-call]
    options.parseOptions(["--state-dir", str(state)])  # type: ignore[no-untyped-call]
    events: list[dict[str, Any]] = []

    @implementer(ILogObserver)
    def collect(event: dict[str, Any]) -> None:
        events.append(event)

    globalLogPublisher.addObserver(collect)
    try:
        vpngw.makeService(options, FakeReactor())
    finally:
        globalLogPublisher.removeObserver(collect)
    key: str = options["generated_psk"]
    path = state / GENERATED_PSK_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(state.stat().st_mode) == 0o700
    table = PskTable.parse(path.read_text())
    assert table.lookup(Identity.parse("anyone@example")) == key.encode()
    texts = [formatEvent(e) for e in events]
    assert not [t for t in texts if key in t]
    assert [t for t in texts if str(path) in t and "mode 0600" in t]


def test_help_says_where_the_key_goes() -> None:
    """--secrets' help names the 0600 file the generated key goes to; the log gets its path."""
    doc = " ".join(vpngw.Options().docs["secrets"].split())  # type: ignore[no-untyped-call]
    assert "log it" not in doc
    assert f"{GENERATED_PSK_FILE} (mode 0600" in doc and "never the key" in doc


def test_twistd_log_has_no_key(tmp_path: Path) -> None:
    """A real ``twistd -n vpngw``: the log names the key file; the key is only in the file."""
    log = tmp_path / "vpngw.log"
    process = subprocess.Popen(
        [TWISTD, "-n", "--pidfile=", f"--logfile={log}", "vpngw", "--port", "0"],
        cwd=tmp_path,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )
    path = tmp_path / "vpngw-state" / GENERATED_PSK_FILE
    try:
        deadline = time.monotonic() + 30
        while "pre-shared key in" not in (text := log.read_text() if log.exists() else ""):
            assert process.poll() is None and time.monotonic() < deadline, text
            time.sleep(0.05)
    finally:
        process.terminate()
        process.wait(timeout=10)
    key = path.read_text().split('"')[1]
    assert len(key) >= 24
    assert key not in log.read_text()
    assert str(path) in log.read_text()
