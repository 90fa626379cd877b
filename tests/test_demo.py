"""The README's main job (``./scripts/demo``) runs and shows what it promises."""

from __future__ import annotations

import io
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import requireTool
from twisted_rserpool._demo import Options, main, wire

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_both_halves() -> None:
    """``python -m twisted_rserpool._demo`` (what scripts/demo runs) shows the RSerPool
    failover, then the VPN client redirected from the overloaded gw1 to gw3, the least
    loaded gateway of the pool; in well under 30 s, all on loopback without root."""
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "twisted_rserpool._demo"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=ROOT,
    )
    elapsed = time.monotonic() - started
    text = result.stdout
    assert result.returncode == 0, text + result.stderr
    assert text.index("RSerPool:") < text.index("VPN:")  # the failover first

    # RSerPool: three PEs, a kill -9, one failover notification with both TLS contexts,
    # and the count going on from the cookie.
    assert text.count("registered, serving on 127.0.0.1:") == 3
    assert "kill -9 pe-" in text
    assert text.count("FAILOVER NOTIFICATION #") == 1
    assert "old security: TLSv1.3" in text and "new security: TLSv1.3" in text
    assert "incr -> 4 pe-" in text
    assert "RSerPool succeeded" in text

    # VPN: who registered with what load, gw1 over its threshold, the redirect to gw3 and
    # the IKE SA with gw3.
    for name in ("gw1", "gw2", "gw3"):
        assert f"{name}: twistd -n vpngw --listen 127.0.0." in text
    assert "the ENRP server lists pool 'vpngw': gw1 0%, gw2 0%, gw3 0%" in text
    assert "re-register with their loads: gw1 30%, gw2 10%, gw3 0%" in text
    assert "gw1 holds 3 IKE SAs: at its threshold (--redirect-max-sas 3)" in text
    assert re.search(r"its view of the pool .*: gw2 10%, gw3 0%", text)
    assert "the client (client@demo) connects to gw1 (127.0.0.2:" in text
    assert "gw1 answers IKE_SA_INIT with N(REDIRECT) to gw3 (127.0.0.4)" in text
    assert re.search(r"redirect #1 \(redirected in IKE_SA_INIT\) from gateway 127\.0\.0\.2", text)
    assert re.search(r"IKE SA established with gw3 \(127\.0\.0\.4:\d+\), identity gw3\.demo", text)
    assert "gw1 still holds 3 IKE SAs and counted its redirects by reason: {'load': 1}" in text
    assert "VPN succeeded: the client was redirected from gw1 to gw3" in text
    assert "demo succeeded: rserpool and vpn" in text
    assert elapsed < 60, f"the demo took {elapsed:.1f} s"


def test_halves_are_subcommands() -> None:
    """``scripts/demo rserpool`` and ``scripts/demo vpn`` run one half; a bad option is one
    line and exit status 2."""
    options = Options()
    options.parseOptions(["rserpool", "--pool-elements", "4"])
    assert options.subCommand == "rserpool" and options.subOptions["pool-elements"] == 4
    options = Options()
    options.parseOptions([])
    assert options.subCommand is None
    assert "exec python -m twisted_rserpool._demo" in (ROOT / "scripts" / "demo").read_text()
    assert main(["rserpool", "--pool-elements", "1"], io.StringIO()) == 2


def test_wire_without_tshark() -> None:
    """The wire view shows each message encoded, decoded back and equal to the original."""
    out = io.StringIO()
    assert wire.show(out, tshark=False) == 0
    text = out.getvalue()
    for name in ("Registration", "HandleResolution ", "HandleResolutionResponse"):
        assert name in text
    assert text.count("decode(encode(m)) == m: True") == 3


def test_wire_with_tshark() -> None:
    """With tshark, the wire view shows Wireshark's dissection and no malformed packet."""
    requireTool("tshark")
    out = io.StringIO()
    assert main(["wire"], out) == 0
    text = out.getvalue()
    assert "ASAP Registration" in text
    assert "ASAP Handle Resolution Response" in text
    assert "tshark reports no malformed packets" in text
