"""Shared pytest configuration."""

from __future__ import annotations

import os
import shutil

import pytest
from hypothesis import HealthCheck, settings

settings.register_profile(
    "default",
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile("default")


def interopRequired() -> bool:
    """True where tests that need real outside tools must run rather than skip.

    The README's test command sets TWISTED_RSERPOOL_REQUIRE_INTEROP=1 and installs the tools,
    and CI sets CI=true: there a missing tool is a failure, never a silent skip.
    """
    return bool(os.environ.get("TWISTED_RSERPOOL_REQUIRE_INTEROP") or os.environ.get("CI"))


def requireTool(name: str) -> str:
    """The path of an outside tool; skip only when a developer runs pytest by hand without it."""
    path = shutil.which(name)
    if path is None:
        if interopRequired():
            pytest.fail(f"{name} is required for this test (scripts/test installs it as root)")
        pytest.skip(f"{name} not installed; scripts/test installs it")
    return path


def requireNamespaces() -> None:
    """Root with unshare and ip, for a network namespace of the test's own; where interop is
    required their absence is a failure, never a skip."""
    problem = None
    if os.geteuid() != 0:
        problem = "needs root for a network namespace"
    elif shutil.which("unshare") is None or shutil.which("ip") is None:
        problem = "needs unshare and ip for a network namespace"
    if problem is not None:
        if interopRequired():
            pytest.fail(problem)
        pytest.skip(problem)
