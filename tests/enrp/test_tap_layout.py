"""``twisted_rserpool._tap.enrp`` split into parts (options, config, state, endpoints,
registrar, services) keeps what it offered: every public name, one log namespace, and the
endpoint strings it writes."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest
from twisted.internet.testing import MemoryReactorClock
from twisted.logger import capturedLogs

from twisted_rserpool._tap import enrp
from twisted_rserpool._tap.enrp import Options, makeService

#: The public names of ``_tap.enrp`` before the split, and the part that holds each now.
HOMES = {
    "Options": "enrp_options",
    "SECURE_ENDPOINT_TYPES": "enrp_options",
    "SECURE_CLIENT_TYPES": "enrp_options",
    "DEFAULT_ENRP_IDENTITY": "enrp_options",
    "DEFAULT_PORT": "enrp_endpoints",
    "DEFAULT_ENRP_PORT": "enrp_endpoints",
    "DEFAULT_PE_IDENTITY": "enrp_endpoints",
    "SERVER_IDENTIFIER_FILE": "enrp_state",
    "BINDINGS_FILE": "enrp_state",
    "registrarProblem": "enrp_registrar",
    "makeService": "enrp",
}


@pytest.mark.parametrize("name", sorted(HOMES))
def test_every_name_stays(name: str) -> None:
    """Each name is still an attribute of ``_tap.enrp``, the very object of its part, and
    listed in ``__all__``."""
    home = importlib.import_module(f"twisted_rserpool._tap.{HOMES[name]}")
    assert getattr(enrp, name) is getattr(home, name)
    assert name in enrp.__all__


def test_parts_log_as_the_command(tmp_path: Path) -> None:
    """The state directory, the server identifier, the connect hints and the peering line
    come from different parts, all in the ``twisted_rserpool._tap.enrp`` namespace."""
    options = Options()
    peer = f"tlspsk:host=127.0.0.1:port=1:identity=pe:pskFile={tmp_path / 'keys.psk'}"
    options.parseOptions(["--state-dir", str(tmp_path), "--peer", peer, "--enrp-identity", "pe"])  # type: ignore[no-untyped-call]
    with capturedLogs() as events:
        makeService(options, MemoryReactorClock())  # type: ignore[no-untyped-call]
    ours = [event for event in events if event["log_namespace"].startswith("twisted_rserpool")]
    for start in ("Created PSK", "Server identifier", "A pool element", "A pool user", "ENRP peer"):
        assert [event["log_format"] for event in ours if event["log_format"].startswith(start)]
    assert {event["log_namespace"] for event in ours} == {"twisted_rserpool._tap.enrp"}


def test_default_enrp_listener_escapes_and_allows_plain_psk() -> None:
    """With only --peer, the default ENRP listener names the PSK file escaped, and
    --allow-plain-psk adds allowPlainPsk=yes after it."""
    options = Options()
    peer = "tlspsk:host=127.0.0.1:port=1:identity=pe:pskFile=keys.psk"
    options.parseOptions(["--peer", peer, "--allow-plain-psk"])  # type: ignore[no-untyped-call]
    assert options.enrpListeners("C:\\keys.psk") == [
        "tlspsk:9902:interface=127.0.0.1:pskFile=C\\:\\\\keys.psk:allowPlainPsk=yes"
    ]
