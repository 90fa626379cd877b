"""The README's main job runs and shows what it promises."""

from __future__ import annotations

import io

from tests.conftest import requireTool
from twisted_rserpool import demo


def test_demo_without_tshark() -> None:
    """The demo shows each message encoded, decoded back and equal to the original."""
    out = io.StringIO()
    assert demo.main(["--no-tshark"], out) == 0
    text = out.getvalue()
    for name in ("Registration", "HandleResolution ", "HandleResolutionResponse"):
        assert name in text
    assert text.count("decode(encode(m)) == m: True") == 3


def test_demo_with_tshark() -> None:
    """With tshark, the demo shows Wireshark's dissection and no malformed packet."""
    requireTool("tshark")
    out = io.StringIO()
    assert demo.main([], out) == 0
    text = out.getvalue()
    assert "ASAP Registration" in text
    assert "ASAP Handle Resolution Response" in text
    assert "tshark reports no malformed packets" in text
