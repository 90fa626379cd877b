"""Issue 15 findings 5, 9 and 11: ``twistd enrp`` and ``twistd vpngw`` as an operator meets them.

Every option or file problem ends the command with exit status 1 and one
``twistd <command>: --option: reason`` line on stderr, without a traceback; ``--version``
prints this package's version.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.enrp.support import PE_KEY, TWISTD
from twisted_rserpool import __version__
from twisted_rserpool.security.certificates import createSelfSignedCertificate


def _twistd(directory: Path, *arguments: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [TWISTD, "-n", "--pidfile=", *arguments],
        cwd=directory,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )


@pytest.fixture
def files(tmp_path: Path) -> Path:
    """A directory with PSK, vpngw secrets and EAP users files that others may read, a
    redirect targets file with a bad line, a certificate and its key."""
    unsafe = tmp_path / "unsafe.psk"
    unsafe.write_text(f"pe:{PE_KEY.hex()}\n")
    os.chmod(unsafe, 0o644)
    (tmp_path / "unsafe.secrets").write_text('client@test : "client-secret"\n')
    os.chmod(tmp_path / "unsafe.secrets", 0o644)
    (tmp_path / "unsafe.users").write_text('alice : EAP "alice-password"\n')
    os.chmod(tmp_path / "unsafe.users", 0o640)
    (tmp_path / "targets.bad").write_text("vpn1.example=2\ngarbage\n")
    createSelfSignedCertificate(str(tmp_path / "server.pem"), str(tmp_path / "server.key"))
    return tmp_path


CASES = [
    # (command line, the option named, words of the reason)
    (["enrp", "--policy", "/nonexistent/policy.toml"], "--policy", "No such file"),
    (["enrp", "--certificate", "/nonexistent/server.pem"], "--certificate", "No such file"),
    (
        ["enrp", "--certificate", "server.pem", "--private-key", "/nonexistent/server.key"],
        "--private-key",
        "No such file",
    ),
    (["enrp", "--psk-file", "/nonexistent/keys.psk"], "--psk-file", "No such file"),
    (["enrp", "--psk-file", "unsafe.psk"], "--psk-file", "chmod 600"),
    (["enrp", "--heartbeat-interval=abc"], "--heartbeat-interval", "abc"),
    (["enrp", "--request-rate=fast"], "--request-rate", "RATE/BURST"),
    (
        ["enrp", "--asap", "tlspsk:0:interface=127.0.0.1:pskFile=/nonexistent/keys.psk"],
        "--asap",
        "No such file",
    ),
    (
        ["enrp", "--peer", "tlspsk:host=127.0.0.1:port=1:identity=e:pskFile=/nonexistent/k.psk"],
        "--peer",
        "No such file",
    ),
    (["enrp", "--no-such-option"], "--no-such-option", "not recognized"),
    (["enrp", "--registrar", "no_such_module.Registrar"], "--registrar", "does not name"),
    (["enrp", "--registrar", "twisted_rserpool.enrp.ENRPServer"], "--registrar", "not a subclass"),
    (
        ["vpngw", "--redirect-policy", "twisted_rserpool.ike.StaticGateways"],
        "--redirect-policy",
        "not a subclass of twisted_rserpool.ike.redirect.RedirectPolicy",
    ),
    (["vpngw", "--port=abc"], "--port", "abc"),
    (["vpngw", "--secrets", "/nonexistent/ipsec.secrets"], "--secrets", "No such file"),
    (
        ["vpngw", "--secrets", "unsafe.secrets"],
        "--secrets",
        "unsafe.secrets: mode 0644 lets group or others access the pre-shared keys; allow "
        "the owner only (chmod 600 unsafe.secrets)",
    ),
    (
        [
            "vpngw",
            "--certificate",
            "server.pem",
            "--private-key",
            "server.key",
            "--client-auth",
            "eap-mschapv2",
            "--eap-users",
            "unsafe.users",
        ],
        "--eap-users",
        "mode 0640 lets group or others access the EAP passwords",
    ),
    (["vpngw", "--redirect-to", "::::"], "--redirect-to", "'::::' is not an IPv6 address"),
    (
        ["vpngw", "--redirect-targets", "targets.bad"],
        "--redirect-targets",
        "targets.bad: line 2: 'garbage' is neither an IP address nor a DNS name: a bare word",
    ),
    (
        ["vpngw", "--certificate", "/nonexistent/gw.pem", "--private-key", "server.key"],
        "--certificate",
        "No such file",
    ),
]


@pytest.mark.parametrize(("arguments", "option", "reason"), CASES)
def test_problem_is_one_line_naming_the_option(
    files: Path, arguments: list[str], option: str, reason: str
) -> None:
    """The command stops with status 1 and one stderr line naming the option and the reason."""
    command = arguments[0]
    state = ["--state-dir", str(files / "state")] if command == "enrp" else []
    result = _twistd(files, *arguments, *state)
    assert result.returncode == 1
    assert "Traceback" not in result.stdout + result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"twistd {command}: "), lines[0]
    assert option in lines[0]
    assert reason in lines[0]
    assert result.stdout == ""  # no usage text drowning the line


@pytest.mark.parametrize("command", ["enrp", "vpngw"])
def test_version_is_the_package_version(tmp_path: Path, command: str) -> None:
    """``twistd enrp --version`` prints twisted-rserpool's version, not only Twisted's."""
    result = _twistd(tmp_path, command, "--version")
    assert result.returncode == 0
    assert result.stdout.startswith(f"twisted-rserpool {__version__} ")
