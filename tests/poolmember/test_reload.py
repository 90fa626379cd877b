"""``twistd poolmember``'s reload (MemberReloader, what SIGHUP runs): the PSK files of its
--enrp endpoints are read again and the load is read at once; a file that cannot be used
keeps the key in force and says why in one line (in memory; the real process and its SIGHUP
are in test_process.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from twisted.internet.testing import MemoryReactorClock
from twisted.logger import capturedLogs, formatEvent
from twisted.python import usage

from tests.security.support import KEY_A, KEY_B, pskFile
from twisted_rserpool._reload import ReloadOnSignal
from twisted_rserpool._tap import commandOptions, poolmember
from twisted_rserpool.poolmember.registration import MemberRegistration
from twisted_rserpool.poolmember.reload import MemberReloader
from twisted_rserpool.security.psk import formatPskText

KEY_C = bytes(range(32, 64))


def member(*args: str) -> tuple[MemberReloader, MemberRegistration]:
    """The reloader and registration of ``twistd poolmember ARGS`` (not started)."""
    options = commandOptions("poolmember", poolmember.Options)()
    options.parseOptions(["--pool", "gw", "--transport", "udp:127.0.0.1:4500", *args])  # type: ignore[no-untyped-call]
    assert isinstance(options, poolmember.Options)
    service = poolmember.makeService(options, MemoryReactorClock())  # type: ignore[no-untyped-call]
    children = list(service)  # type: ignore[call-overload]
    (hangUp,) = [c for c in children if isinstance(c, ReloadOnSignal)]
    (registration,) = [c for c in children if isinstance(c, MemberRegistration)]
    assert isinstance(hangUp.reloader, MemberReloader)
    return hangUp.reloader, registration


def reload(reloader: MemberReloader) -> tuple[list[str], str]:
    """Run a reload; its log lines, and every event field as JSON (to look for keys)."""
    with capturedLogs() as events:
        reloader.reload()
    return [formatEvent(e) for e in events], json.dumps(events, default=repr)


def test_keys_and_load_are_read_again(tmp_path: Path) -> None:
    """A new key for the identity in use is offered from the next handshake on, one line
    says so without the key, and the load is read at once; a file that became readable by
    others, or lost the identity, keeps the key in force with a one-line reason."""
    path = Path(pskFile(tmp_path, {"pe": KEY_A, "other": KEY_B}, "pe.psk"))
    load = tmp_path / "load"
    load.write_text("1\n")
    enrp = f"tlspsk:host=127.0.0.1:port=1:identity=pe:pskFile={path}"
    reloader, registration = member("--enrp", enrp, "--enrp", enrp, "--load-file", str(load))
    assert [c.key for c in reloader.creators] == [KEY_A, KEY_A]

    path.write_text(formatPskText({"pe": KEY_B, "other": KEY_B}))
    readings = registration.readings
    lines, everything = reload(reloader)
    assert [c.key for c in reloader.creators] == [KEY_B, KEY_B]
    assert lines == [
        f"Reload: {path}: 1 identities in use; added none, removed none, new key for ['pe']"
    ]
    assert KEY_A.hex() not in everything and KEY_B.hex() not in everything
    assert registration.readings == readings + 1  # the load, at once

    path.write_text(formatPskText({"pe": KEY_C}))
    path.chmod(0o644)
    lines, _ = reload(reloader)
    assert [c.key for c in reloader.creators] == [KEY_B, KEY_B]
    assert lines == [
        f"Reload: kept the previous pre-shared keys: {path}: mode 0644 lets group or others "
        f"access the pre-shared keys; allow the owner only (chmod 600 {path})"
    ]

    path.chmod(0o600)
    path.write_text(formatPskText({"other": KEY_C}))
    lines, _ = reload(reloader)
    assert [c.key for c in reloader.creators] == [KEY_B, KEY_B]
    assert lines == [
        f"Reload: kept the previous pre-shared keys: {path}: no longer holds the identity 'pe'"
    ]
    path.unlink()
    lines, _ = reload(reloader)
    assert lines == [
        f"Reload: kept the previous pre-shared keys: {path}: No such file or directory"
    ]
    assert reloader.failures == 3 and reloader.reloads == 4
    assert registration.readings == readings + 4


def test_without_psk_files_only_the_load() -> None:
    """Without a PSK file (plain TCP, as with an --insecure server) a reload reads the load."""
    reloader, registration = member("--enrp", "tcp:host=127.0.0.1:port=1", "--load", "0.5")
    lines, _ = reload(reloader)
    assert lines == ["Reload: no pre-shared key file to read again"]
    assert registration.readings == 1


@pytest.mark.parametrize(
    ("enrp", "reason"),
    [
        ("tlspsk:host=127.0.0.1:port=1:pskFile=/nonexistent/pe.psk", "No such file"),
        ("tlspsk:host=127.0.0.1:port=1", "a client needs pskFile or caCertificate"),
        ("nosuchtype:1", "nosuchtype"),
    ],
)
def test_bad_enrp_endpoint_is_one_error(enrp: str, reason: str) -> None:
    """An --enrp string or PSK file that cannot be used stops the command with an error
    naming --enrp (no traceback when the pool element starts)."""
    with pytest.raises(usage.UsageError, match=f"^--enrp: .*{reason}"):
        member("--enrp", enrp)
