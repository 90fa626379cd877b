"""``twistd enrp`` keeps a generated server identifier across restarts when it has peers:
peers bind an identifier to its identity (RFC 5355 2.5), so a new one would be refused."""

from __future__ import annotations

from pathlib import Path

import pytest
from twisted.internet.testing import MemoryReactorClock
from twisted.python import usage

from twisted_rserpool._tap.enrp import SERVER_IDENTIFIER_FILE, Options, makeService


def _serverIdentifier(stateDirectory: Path, *extra: str) -> int:
    options = Options()
    peer = f"tlspsk:host=127.0.0.1:port=1:identity=pe:pskFile={stateDirectory / 'keys.psk'}"
    options.parseOptions(
        ["--state-dir", str(stateDirectory), "--peer", peer, "--enrp-identity", "pe", *extra]
    )  # type: ignore[no-untyped-call]
    service = makeService(options, MemoryReactorClock())  # type: ignore[no-untyped-call]
    identifier: int = service.serverIdentifier  # type: ignore[attr-defined]
    return identifier


def test_generated_identifier_survives_a_restart(tmp_path: Path) -> None:
    """The first start generates and keeps the identifier; the next start reads it."""
    first = _serverIdentifier(tmp_path)
    assert (tmp_path / SERVER_IDENTIFIER_FILE).read_text().strip() == f"0x{first:08x}"
    assert _serverIdentifier(tmp_path) == first


def test_explicit_identifier_wins_and_is_not_written(tmp_path: Path) -> None:
    """--server-id is used as given, and the kept one is left alone."""
    kept = _serverIdentifier(tmp_path)
    assert _serverIdentifier(tmp_path, "--server-id", "0x1234") == 0x1234
    assert _serverIdentifier(tmp_path) == kept


def test_bad_kept_identifier_is_a_usage_error(tmp_path: Path) -> None:
    """A damaged file is named in a usage error instead of being replaced silently."""
    (tmp_path / SERVER_IDENTIFIER_FILE).write_text("zero\n")
    with pytest.raises(usage.UsageError, match=SERVER_IDENTIFIER_FILE):
        _serverIdentifier(tmp_path)
