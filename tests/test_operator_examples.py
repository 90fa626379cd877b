"""The operator's sample files (issue 15, finding 10): examples/policy.toml is the complete
sample policy of docs/security.md and loads with the real loader into the decisions its
comments promise; the systemd units in examples/systemd/ are valid units (``systemd-analyze
verify`` where it is installed) whose ``twistd`` command lines parse with the real options;
docs/operator.md's recipes for PSK files and a pool element certificate give what it says.
"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest
from cryptography import x509
from twisted.python import usage

from tests.conftest import requireTool
from twisted_rserpool._tap import enrp, vpngw
from twisted_rserpool.security.authorization import AuthorizationPolicy, Role
from twisted_rserpool.security.psk import createPskFile, loadPskFile

ROOT = Path(__file__).resolve().parents[1]
POLICY = ROOT / "examples" / "policy.toml"
UNITS = ROOT / "examples" / "systemd"
#: The command each unit runs, and its options class.
COMMANDS: dict[str, type[usage.Options]] = {
    "rserpool-enrp.service": enrp.Options,
    "rserpool-vpngw.service": vpngw.Options,
}


def test_sample_policy_is_the_one_docs_security_shows() -> None:
    """docs/security.md shows the sample policy whole: the file, as it is."""
    text = (ROOT / "docs" / "security.md").read_text()
    blocks = re.findall(r"^```toml\n(.*?)^```", text, re.DOTALL | re.MULTILINE)
    assert POLICY.read_text() in blocks


def test_sample_policy_decisions() -> None:
    """The sample policy, read by the loader twistd enrp uses, decides what its comments say."""
    policy = AuthorizationPolicy.from_file(POLICY)
    assert policy.server_identifiers() == {"enrp-1": 1, "enrp-2": 2, "enrp-3": 3}
    for server in ("enrp-1", "enrp-2", "enrp-3"):
        assert policy.may(server, Role.ENRP_SERVER)
        assert not policy.may(server, Role.POOL_ELEMENT, b"echo")
    assert policy.may("echo-1", Role.POOL_ELEMENT, b"echo")
    assert not policy.may("echo-1", Role.POOL_ELEMENT, b"vpngw")
    assert not policy.may("echo-1", Role.ENRP_SERVER)
    assert policy.max_pool_elements("echo-2") == 4
    assert policy.max_pool_elements("gw-1") is None
    assert policy.may("gw-1", Role.POOL_ELEMENT, b"vpngw")
    assert policy.may("billing", Role.POOL_USER, b"counter-eu")
    assert not policy.may("billing", Role.POOL_USER, b"vpngw")
    assert policy.may("someone", Role.POOL_USER, b"echo")
    assert not policy.may("someone", Role.POOL_USER, b"counter-eu")
    assert not policy.may("someone", Role.POOL_ELEMENT, b"echo")
    assert not policy.may(None, Role.POOL_USER, b"echo")


def test_twistd_enrp_starts_with_the_sample_policy(tmp_path: Path) -> None:
    """``twistd enrp --policy examples/policy.toml`` builds its server (the file passes
    every check of the start, server identifier bindings included)."""
    options = enrp.Options()
    options.parseOptions(
        ["--policy", str(POLICY), "--state-dir", str(tmp_path / "state"), "--enrp",
         f"tlspsk:0:interface=127.0.0.1:pskFile={tmp_path / 'keys.psk'}"]
    )  # type: ignore[no-untyped-call]  # fmt: skip
    createPskFile(tmp_path / "keys.psk", "enrp-1")
    service = enrp.makeService(options)
    assert service is not None


def _unit(path: Path) -> dict[str, list[str]]:
    """``Section.Key`` -> values of a unit file (continuation lines joined, comments out)."""
    values: dict[str, list[str]] = {}
    section = ""
    logical = re.sub(r"\\\n\s*", " ", path.read_text())
    for raw in logical.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        key, _, value = line.partition("=")
        values.setdefault(f"{section}.{key.strip()}", []).append(value.strip())
    return values


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_unit_runs_twistd_with_options_that_parse(tmp_path: Path, name: str) -> None:
    """The unit runs ``twistd --nodaemon --pidfile=`` with the command's own options (they
    parse; the files under /etc/rserpool are replaced by real ones here), in its state
    directory as an unprivileged user, reloads with SIGHUP and is hardened."""
    unit = _unit(UNITS / name)
    [start] = unit["Service.ExecStart"]
    words = shlex.split(start)
    assert words[0].endswith("/bin/twistd")
    assert words[1:3] == ["--nodaemon", "--pidfile="]
    assert words[3] == name.removeprefix("rserpool-").removesuffix(".service")
    arguments = words[4:]
    state = "/var/lib/" + unit["Service.StateDirectory"][0]
    assert arguments[arguments.index("--state-dir") + 1] == state
    assert unit["Service.WorkingDirectory"] == [state]
    assert unit["Service.StateDirectoryMode"] == ["0700"]
    assert unit["Service.User"][0] not in ("root", "0")
    assert unit["Service.ExecReload"] == ["/bin/kill -HUP $MAINPID"]
    for key, value in [
        ("NoNewPrivileges", "yes"),
        ("ProtectSystem", "strict"),
        ("ProtectHome", "yes"),
        ("PrivateTmp", "yes"),
        ("UMask", "0077"),
    ]:
        assert unit[f"Service.{key}"] == [value], key

    etc = tmp_path / "etc"
    etc.mkdir(mode=0o700)
    createPskFile(etc / "keys.psk", "pe")
    (etc / "vpngw.secrets").write_text('alice@example.org : "a secret"\n')
    (etc / "vpngw.secrets").chmod(0o600)
    (etc / "vpngw.targets").write_text("192.0.2.11\n192.0.2.12=2\n")
    local = [a.replace("/etc/rserpool", str(etc)).replace(state, str(tmp_path)) for a in arguments]
    COMMANDS[name]().parseOptions(local)  # type: ignore[no-untyped-call]


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_systemd_analyze_verify(tmp_path: Path, name: str) -> None:
    """``systemd-analyze verify`` finds nothing to say about the unit (with this
    environment's twistd in ExecStart, which it checks is executable)."""
    analyze = requireTool("systemd-analyze")
    twistd = Path(shutil.which("twistd") or ROOT / ".venv" / "bin" / "twistd")
    text = (UNITS / name).read_text().replace("/opt/twisted-rserpool/bin/twistd", str(twistd))
    (tmp_path / name).write_text(text)
    result = subprocess.run(
        [analyze, "verify", str(tmp_path / name)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == "", result.stderr


def _shellBlock(document: Path, containing: str) -> str:
    """The indented code block of ``document`` that contains ``containing``."""
    blocks = re.findall(r"(?:^    .*\n)+", document.read_text(), re.MULTILINE)
    [block] = [b for b in blocks if containing in b]
    return "\n".join(line[4:] for line in block.splitlines())


OPERATOR = ROOT / "docs" / "operator.md"


@pytest.mark.parametrize("containing", ["createPskFile", "openssl rand -hex 32"])
def test_psk_file_recipes(tmp_path: Path, containing: str) -> None:
    """Both ways docs/operator.md creates a PSK file give a file twistd enrp accepts."""
    if "openssl" in containing:
        requireTool("openssl")
    text = OPERATOR.read_text()
    [command] = [
        line.strip().strip("`")
        for line in re.findall(r"`python -c '[^`]*'`|^    umask 077.*$", text, re.MULTILINE)
        if containing in line
    ]
    subprocess.run(["bash", "-c", command], cwd=tmp_path, check=True, timeout=30)
    assert list(loadPskFile(tmp_path / "keys.psk")) == ["pe-17"]


def test_pool_element_certificate_recipe(tmp_path: Path) -> None:
    """The openssl recipe of docs/operator.md gives a CA and a pool element certificate it
    issued, for the PE's IP address and not a CA itself."""
    requireTool("openssl")
    script = _shellBlock(OPERATOR, "openssl req -x509")
    subprocess.run(
        ["bash", "-e", "-c", script], cwd=tmp_path, check=True, capture_output=True, timeout=60
    )
    ca = x509.load_pem_x509_certificate((tmp_path / "pe-ca.pem").read_bytes())
    pe = x509.load_pem_x509_certificate((tmp_path / "pe.pem").read_bytes())
    pe.verify_directly_issued_by(ca)
    names = pe.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert [str(a) for a in names.get_values_for_type(x509.IPAddress)] == ["192.0.2.20"]
    assert not pe.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert (tmp_path / "pe.key").stat().st_mode & 0o077 == 0
