"""Tests here build ``twistd vpngw`` services, whose default state directory
(``vpngw-state``, for the generated pre-shared key) is relative: each test runs in its own
temporary directory so none is left in the working tree."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def _inTemporaryDirectory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
