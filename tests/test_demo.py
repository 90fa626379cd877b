"""The README's main job runs and shows what it promises."""

from __future__ import annotations

import io

import pytest

from tests.conftest import requireTool
from twisted_rserpool import demo


def test_demo_without_tshark() -> None:
    """The demo shows each message encoded, decoded back and equal to the original."""
    out = io.StringIO()
    assert demo.main(["--wire", "--no-tshark"], out) == 0
    text = out.getvalue()
    for name in ("Registration", "HandleResolution ", "HandleResolutionResponse"):
        assert name in text
    assert text.count("decode(encode(m)) == m: True") == 3


def test_demo_with_tshark() -> None:
    """With tshark, the demo shows Wireshark's dissection and no malformed packet."""
    requireTool("tshark")
    out = io.StringIO()
    assert demo.main(["--wire"], out) == 0
    text = out.getvalue()
    assert "ASAP Registration" in text
    assert "ASAP Handle Resolution Response" in text
    assert "tshark reports no malformed packets" in text


def test_default_runs_the_live_demo(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without --wire the main job is the live system (tested in tests/asap/test_demo.py)."""
    from twisted_rserpool.asap import demo as live

    calls: list[object] = []

    def fake(argv: object, out: object) -> int:
        calls.append(argv)
        return 7

    monkeypatch.setattr(live, "main", fake)
    assert demo.main([], io.StringIO()) == 7
    assert calls == [[]]
