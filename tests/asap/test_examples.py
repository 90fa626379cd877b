"""The examples in ``examples/`` run and show what their docstrings promise."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def run(name: str) -> str:
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / name)],
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_counter_continues_through_a_kill() -> None:
    """The counter example counts to 10 although its pool element is killed at 5."""
    out = run("counter_pool.py")
    assert [line.strip() for line in out.splitlines() if "count =" in line] == [
        f"count = {n}" for n in range(1, 11)
    ]
    assert "(1 failover)" in out


def test_failover_notifications_are_printed() -> None:
    """The notification example prints two failovers with both security contexts."""
    out = run("failover_notifications.py")
    assert out.count("failover #") == 2
    assert out.count("TLSv1.3") == 4
    assert "weaker: False" in out
