"""Issue 15, "Tests it must have": the tests that check each numbered finding of its "Why".

Each test named fails on the code from before the issue (47bd93d) and passes now; a star
marks the tests of this file.

===  =======  =======================  ============================================================
#    Verdict  Finding                  Tests
===  =======  =======================  ============================================================
1    fixed    A PE with a wrong PSK    asap/test_hunt_failure_process.py: test_unknown_psk_identity
              identity hangs; only     (whenRegistered() errbacks after max_hunt_rounds naming
              the server logs why      server and TLS reason, the PE logs it),
                                       test_pool_user_with_other_trust_root,
                                       test_right_key_is_still_served
2    fixed    keys need a restart;     enrp/test_reload_process.py:
              SIGHUP kills twistd      test_new_identity_after_sighup_and_bad_file_kept,
              enrp                     test_policy_reload; ike/test_reload_process.py:
                                       test_appended_identity_accepted_after_sighup_*;
                                       ike/test_reload.py
3    fixed    registrar hard-coded;    enrp/test_custom_registrar.py:
              README import fails; no  test_registrar_option_builds_that_class,
              hand-built server in     test_make_service_argument_wins, TacTests
              docs                     (examples/custom_registrar.tac under twistd -ny);
                                       ike/test_redirect_hooks.py; test_exports.py:
                                       test_readme_promise, test_documented_import_works;
                                       test_docs_snippets.py:
                                       test_developer_guide_shows_what_its_programs_print
4a   fixed    admin on 0.0.0.0, no     enrp/test_admin_safe.py:
              warning, no              test_admin_endpoint_defaults_to_loopback,
              authentication           test_off_loopback_admin_logs_a_warning_*,
                                       test_twistd_admin_without_interface_*,
                                       test_changes_need_the_token_even_on_loopback;
                                       ike/test_admin_safe.py:
                                       test_admin_defaults_to_loopback_with_a_generated_token,
                                       test_admin_off_loopback_warns_*
4b   fixed    vpngw POST /drain takes  ike/test_admin_safe.py:
              a form body              test_commands_need_the_token_and_a_json_body,
                                       test_twistd_vpngw_admin_is_safe; enrp/test_admin_safe.py:
                                       test_post_accepts_only_json_objects
4c   fixed    every path answers the   test_unknown_paths_are_404 in enrp/ and
              same JSON                ike/test_admin_safe.py
4d   fixed    no HTML, uptime or       test_status_has_version_uptime_* and
              version                  test_status_page_escapes_everything_and_runs_no_script in
                                       enrp/ and ike/test_admin_safe.py;
                                       test_status_page_in_headless_chromium in enrp/ and ike/
4e   fixed    epoch floats; two        enrp/test_admin_safe.py:
              checksum formats         test_status_has_version_uptime_iso_times_*;
                                       ike/test_admin_safe.py:
                                       test_status_has_version_uptime_and_iso_times
4f   fixed    no Prometheus /metrics,  enrp/test_metrics.py; ike/test_admin_metrics.py; test_cli.py
              status page or CLI       (rserpool against real twistd enrp and vpngw)
5    fixed    configuration errors     test_config_errors.py:
              print tracebacks         test_problem_is_one_line_naming_the_option (--policy,
                                       --certificate, PSK file 0644 and more);
                                       *test_state_dir_problem_is_one_line (enrp and vpngw)
6    fixed    plaintext PE and PU      asap/test_plaintext_refused.py;
              sessions accepted        *test_plaintext_only_when_both_ends_ask;
              silently                 *test_pool_server_endpoint_refuses_plaintext
7    fixed    vpngw logs its           ike/test_generated_key.py: test_key_file_not_log,
              generated key            test_twistd_log_has_no_key
8    fixed    log messages hard to     test_log_readability.py: reprs of endpoints, PEs, pool
              read                     handles; no factory lines (real twistd enrp); security
                                       context fields; renewals at debug level; an in-process
                                       ENRP+PE+PU run with no "object at 0x" and no b'...'
9a   fixed    no pip install path in   *test_readme_pip_install_section
              the README
9b   fixed    --version prints         test_config_errors.py: test_version_is_the_package_version;
              Twisted's version        *test_readme_pip_install_section
9c   fixed    no LICENSE,              *test_license_classifiers_and_urls
              classifiers, project
              URLs
9d   fixed    pyopenssl has no upper   security/test_pyopenssl_bound.py
              bound
10   fixed    no doc snippet runs;     test_docs_snippets.py: test_snippet_runs_as_written,
              examples hide set-up;    test_snippet_compiles_and_its_imports_resolve,
              no .tac; policy format   test_developer_guide_shows_what_its_programs_print;
              undocumented             asap/test_examples.py; enrp/test_custom_registrar.py:
                                       TacTests; test_operator_examples.py (sample policy,
                                       systemd units, certificate with an IP SAN)
11a  fixed    --help breaks examples,  test_help.py: test_help_keeps_examples_whole,
              prints [default: ]       test_help_shows_real_defaults; *test_help_keeps_words_whole,
                                       *test_help_prints_no_empty_default (the real twistd --help)
11b  fixed    a bad                    test_config_errors.py:
              --heartbeat-interval is  test_problem_is_one_line_naming_the_option
              not named                (--heartbeat-interval, --port and the other typed options)
12   fixed    a pool is no Twisted     asap/test_pool_endpoint.py (rserpool: strings,
              endpoint; foreign        ClientService, clientFromString across kill -9 of a real
              servers cannot join      PE); poolmember/ (helper H3)
13a  fixed    tooling ships in the     *test_tooling_is_not_in_the_runtime_package; test_demo.py;
              runtime package          test_tshark_bridge.py
13b  fixed    vpngw registers an       poolmember/test_tap.py: test_vpngw_pool_needs_no_listener,
              empty TCP listener       test_registrations_in_tshark
              (helper H3)
13c  partly   dead code                ike/test_errors_imports.py; *test_dead_code_is_gone
                                       (MappingConnection.undelivered is still there)
14   fixed    the main job shows only  test_demo.py: test_both_halves
              the RSerPool half
===  =======  =======================  ============================================================
"""

from __future__ import annotations

import ast
import importlib.util
import os
import re
import subprocess
import tomllib
from importlib.metadata import metadata
from pathlib import Path

import pytest
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.testing import MemoryReactorClock
from twisted.python import usage
from twisted.python.failure import Failure
from twisted.trial.unittest import TestCase

from tests.asap.support import FAST, FAST_MAPPING, Collector, Echo, Recording, reactor, waitFor
from tests.enrp.support import TWISTD, EnrpProcess
from twisted_rserpool import __version__
from twisted_rserpool._tap import commandOptions, enrp, vpngw
from twisted_rserpool.asap import (
    PlaintextRefused,
    PoolElement,
    PoolServerEndpoint,
    PoolUser,
    Session,
)
from twisted_rserpool.enrp import ENRPServer
from twisted_rserpool.ike import constants
from twisted_rserpool.ike.errors import InvalidIkeMessage

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "twisted_rserpool"


def twistd(directory: Path, *arguments: str) -> subprocess.CompletedProcess[str]:
    """``twistd -n ARGUMENTS`` run to its end in ``directory`` (help at 80 columns)."""
    return subprocess.run(
        [TWISTD, "-n", "--pidfile=", *arguments],
        cwd=directory,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
        env={**os.environ, "COLUMNS": "80"},
    )


# --------------------------------------------------------------------------- finding 5


@pytest.mark.parametrize("command", ["enrp", "vpngw"])
def test_state_dir_problem_is_one_line(tmp_path: Path, command: str) -> None:
    """A --state-dir that cannot be a directory (below a regular file) ends the command
    with one line naming --state-dir, as every other file problem does."""
    (tmp_path / "file").write_text("not a directory\n")
    ports = ["--port", "0", "--nat-t-port", "0"] if command == "vpngw" else []
    result = twistd(tmp_path, command, "--state-dir", str(tmp_path / "file" / "state"), *ports)
    assert result.returncode == 1
    assert "Traceback" not in result.stdout + result.stderr, result.stderr[-400:]
    assert result.stderr.splitlines() == [result.stderr.strip()]
    assert result.stderr.startswith(f"twistd {command}: --state-dir: ")


# --------------------------------------------------------------------------- finding 6


class PlaintextSessionTests(TestCase):
    """Against a real ``twistd -n enrp``: a plaintext pool element and a pool user that
    cannot authenticate pool elements are refused unless each asks with insecure=True."""

    timeout = 30

    async def test_plaintext_only_when_both_ends_ask(self) -> None:
        """A PE listening on tcp: without insecure=True is refused; a PU without
        peTrustRoots is refused before anything reaches the PE; with insecure=True on both
        the session runs, and its security context says it is neither encrypted nor
        authenticated."""
        server = EnrpProcess(Path(self.mktemp()).resolve())  # type: ignore[no-untyped-call]
        server.start()
        self.addCleanup(server.stop)
        built = Recording(Echo)
        listen = "tcp:0:interface=127.0.0.1"
        with pytest.raises(PlaintextRefused, match="insecure=True"):
            PoolElement(b"echo", built, [server.peEndpoint()], listen, reactor=reactor)

        element = PoolElement(
            b"echo",
            built,
            [server.peEndpoint()],
            listen,
            timers=FAST,
            userMappingConfig=FAST_MAPPING,
            reactor=reactor,
            insecure=True,
        )
        element.startService()
        self.addCleanup(element.stopService)
        await element.whenRegistered()

        refusing = PoolUser([server.puEndpoint()], timers=FAST, reactor=reactor)
        refusing.startService()
        self.addCleanup(refusing.stopService)
        with pytest.raises(PlaintextRefused, match="peTrustRoots"):
            await refusing.connect(b"echo", Recording(Collector))
        assert built.built == []

        asking = PoolUser(
            [server.puEndpoint()],
            timers=FAST,
            sessionMappingConfig=FAST_MAPPING,
            reactor=reactor,
            insecure=True,
        )
        asking.startService()
        self.addCleanup(asking.stopService)
        client = await asking.connect(b"echo", Recording(Collector))
        assert isinstance(client, Collector)
        session = client.transport
        assert isinstance(session, Session)
        context = session.securityContext
        assert context is not None
        assert not context.encrypted and not context.authenticated
        session.write(b"in the clear")
        await waitFor(lambda: client.received == [b"in the clear"])


def test_pool_server_endpoint_refuses_plaintext() -> None:
    """PoolServerEndpoint("tcp:...") without insecure=True is refused like a PoolElement
    with that listen string (raised or errbacked), before it listens."""
    memory = MemoryReactorClock()  # type: ignore[no-untyped-call]
    endpoint = PoolServerEndpoint(
        "tcp:0:interface=127.0.0.1", b"echo", ["tcp:host=127.0.0.1:port=1"], reactor=memory
    )
    failures: list[Failure] = []
    try:
        endpoint.listen(Factory.forProtocol(Protocol)).addErrback(failures.append)
    except PlaintextRefused:
        pass
    else:
        assert [f.type for f in failures] == [PlaintextRefused]
    assert memory.tcpServers == []


# --------------------------------------------------------------------------- finding 9


def _project() -> dict[str, object]:
    project: dict[str, object] = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return project


def _readmeSection(title: str) -> str:
    text = (ROOT / "README.md").read_text()
    match = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## )", text, re.MULTILINE | re.DOTALL)
    assert match, f"README.md has no '## {title}' section"
    return match.group(1)


def test_readme_pip_install_section(tmp_path: Path) -> None:
    """The README says how to pip install this distribution (a checkout or its wheel, by
    the wheel's real file name), and the --version line it shows is what the installed
    ``twistd enrp --version`` prints."""
    section = _readmeSection("Installing with pip")
    name = str(_project()["name"])
    assert metadata(name)["Name"] == name  # the distribution installed is this one
    assert re.search(r"pip install \.(\s|$)", section)
    wheel = re.sub(r"[-_.]+", "_", name) + "-*.whl"
    assert f"pip install {wheel}" in section
    shown = re.search(r"twistd enrp --version\s+# (.+?)\.\.\.\)", section)
    assert shown, section
    printed = twistd(tmp_path, "enrp", "--version")
    assert printed.returncode == 0
    assert printed.stdout.startswith(shown.group(1)), (shown.group(1), printed.stdout)
    assert printed.stdout.startswith(f"{name} {__version__} ")


def test_license_classifiers_and_urls() -> None:
    """LICENSE is there and declared; the installed metadata names Twisted as the
    framework, the licence and the project URLs."""
    project = _project()
    assert (ROOT / "LICENSE").read_text().startswith("MIT License")
    assert project["license"] == "MIT" and project["license-files"] == ["LICENSE"]
    installed = metadata(str(project["name"]))
    assert installed["License-Expression"] == "MIT"
    assert "Framework :: Twisted" in installed.get_all("Classifier", [])
    urls = installed.get_all("Project-URL", [])
    assert urls and all(", https://" in url for url in urls)


# -------------------------------------------------------------------------- finding 11


def _descriptions(text: str) -> dict[str, str]:
    """Each option's description in ``--help`` output, its wrapped lines joined by \\n."""
    blocks: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in text.splitlines():
        option = re.match(r"\s+(?:-\w, )?--([\w-]+)=?\s{2,}(\S.*)$", line)
        if option:
            current = blocks.setdefault(option.group(1), [])
            current.append(option.group(2))
        elif current is not None and re.match(r"\s{20,}\S", line):
            current.append(line.strip())
        else:
            current = None
    return {name: "\n".join(lines) for name, lines in blocks.items()}


def _unbreakable(description: str) -> list[str]:
    """The words of a description that must stay on one line: option names, endpoint
    strings, paths (anything with --, :, = or /)."""
    words = (w.strip(".,;()'\"") for w in description.split())
    return [w for w in words if re.search(r"^--\w|\w[:=/]\S", w)]


OPTIONS: dict[str, type[usage.Options]] = {
    "enrp": commandOptions("enrp", enrp.Options),
    "vpngw": commandOptions("vpngw", vpngw.Options),
}
HELP_COMMANDS = list(OPTIONS)


@pytest.fixture(scope="module")
def helps(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """``twistd COMMAND --help`` of each command, run once for the module."""
    directory = tmp_path_factory.mktemp("help")
    texts = {}
    for command in HELP_COMMANDS:
        result = twistd(directory, command, "--help")
        assert result.returncode == 0, result.stderr
        texts[command] = result.stdout
    return texts


def test_help_descriptions_are_found(helps: dict[str, str]) -> None:
    """The parsing below sees every option (so the next tests check something)."""
    described = _descriptions(helps["enrp"])
    assert {"asap", "peer", "announce-interface", "heartbeat-interval"} <= described.keys()
    assert "tlspsk:" in described["asap"]
    assert _unbreakable("needs --pool-enrp, e.g. (tcp:8500) or a/b.") == [
        "--pool-enrp",
        "tcp:8500",
        "a/b",
    ]
    for command, options in OPTIONS.items():
        assert _descriptions(helps[command]).keys() == options().docs.keys()


@pytest.mark.parametrize("command", HELP_COMMANDS)
def test_help_keeps_words_whole(helps: dict[str, str], command: str) -> None:
    """Every example string, option name and path an option's description holds is on
    one line of ``--help``, and no description line carries a run of spaces."""
    written = _descriptions(helps[command])
    broken = []
    for option, source in OPTIONS[command]().docs.items():
        lines = written[option].splitlines()
        broken += [
            f"--{option}: {word}"
            for word in _unbreakable(source)
            if not any(word in line for line in lines)
        ]
        broken += [f"--{option}: {line!r}" for line in lines if "  " in line]
    assert not broken, "\n".join(broken)


@pytest.mark.parametrize("command", HELP_COMMANDS)
def test_help_prints_no_empty_default(helps: dict[str, str], command: str) -> None:
    """An option whose default is empty shows no ``[default: ]``."""
    empty = [
        option
        for option, description in _descriptions(helps[command]).items()
        if re.search(r"\[default:\s*\]", description)
    ]
    assert not empty


# -------------------------------------------------------------------------- finding 13


TOOLING = [
    "twisted_rserpool.tshark",
    "twisted_rserpool.demo",
    "twisted_rserpool.asap.lab",
    "twisted_rserpool.asap.tool",
    "twisted_rserpool.asap.demo",
]


def _runtimeModules() -> list[Path]:
    return [p for p in PACKAGE.rglob("*.py") if "_demo" not in p.relative_to(PACKAGE).parts]


def test_tooling_is_not_in_the_runtime_package() -> None:
    """The tshark driver, the lab, the argparse tool and the demos are gone from the
    public packages (the demos live in the private _demo package, the driver in tests/);
    no runtime module imports them, tests/ or argparse."""
    assert [name for name in TOOLING if importlib.util.find_spec(name) is not None] == []
    assert (ROOT / "tests" / "tools" / "tshark.py").exists()
    assert not (ROOT / "tests" / "ike" / "pcapfile.py").exists()
    modules = _runtimeModules()
    assert len(modules) > 50
    offending = []
    for path in modules:
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module is not None:
                names = [node.module]
            for name in names:
                if name == "argparse" or name.startswith(("tests", "twisted_rserpool._demo")):
                    offending.append(f"{path.relative_to(ROOT)}: {name}")
    assert not offending


def test_dead_code_is_gone() -> None:
    """The dead code the finding lists is removed: InvalidIkeMessage.header,
    HashAlgorithm and ENRPServer.listeningServices."""
    assert not hasattr(InvalidIkeMessage("probe"), "header")
    assert not hasattr(constants, "HashAlgorithm")
    assert not hasattr(ENRPServer, "listeningServices")
