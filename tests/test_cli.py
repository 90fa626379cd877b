"""The ``rserpool`` console script against real servers (issue 15, operator surfaces).

Two real ``twistd -n enrp`` processes that peer, with a pool element registered at one,
for ``rserpool pools``, ``pe`` and ``peers``; a real ``twistd -n vpngw --admin`` with an IKE
SA of our own initiator for ``sas``, ``drain`` and ``redirect``. The command runs as the
installed console script in a subprocess; its failures are one line on stderr and a nonzero
status, never a traceback.
"""

from __future__ import annotations

import copy
import io
import json
import os
import shutil
import sys
import tempfile
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet import reactor as _reactor
from twisted.internet.endpoints import UNIXServerEndpoint
from twisted.internet.task import Clock
from twisted.internet.utils import getProcessOutputAndValue
from twisted.trial.unittest import TestCase

from tests.enrp.support import LOOPBACK, freePort
from tests.enrp.test_pool_processes import Pool, waitUntil
from tests.enrp.test_service import make_server
from tests.ike.vpngw_process import IDENTITY, VpngwProcess, connect
from twisted_rserpool.cli import execute, run
from twisted_rserpool.cli.adminclient import AdminAddress, parseAdminAddress
from twisted_rserpool.cli.enrp import policyText, transportText
from twisted_rserpool.cli.main import (
    MALFORMED,
    DrainOptions,
    ElementOptions,
    PeersOptions,
    PoolsOptions,
    RedirectOptions,
    SasOptions,
)
from twisted_rserpool.cli.table import formatTable
from twisted_rserpool.enrp.admin import adminSite, statusPage

RSERPOOL = Path(sys.executable).with_name("rserpool")
reactor: Any = _reactor


async def rserpool(*args: str, cwd: Path, token: str | None = None) -> tuple[int, str, str]:
    """Run the console script; its exit status, stdout and stderr."""
    assert RSERPOOL.exists(), f"{RSERPOOL} is missing: pip install -e . installs the script"
    env = {k: v for k, v in os.environ.items() if k != "RSERPOOL_ADMIN_TOKEN"}
    if token is not None:
        env["RSERPOOL_ADMIN_TOKEN"] = token
    out, err, code = await getProcessOutputAndValue(  # type: ignore[no-untyped-call]
        str(RSERPOOL), args, env=env, path=str(cwd), reactor=reactor
    )
    return code, out.decode(), err.decode()


def inProcess(*args: str) -> tuple[int, str, str]:
    """``rserpool`` run by :func:`execute` in this process: status, stdout and stderr."""
    out, err = io.StringIO(), io.StringIO()
    code = execute(args, out, err)
    return code, out.getvalue(), err.getvalue()


def assertOneLineError(code: int, out: str, err: str, *words: str) -> None:
    """A failure: nonzero status, nothing on stdout, one line on stderr with ``words``."""
    assert code != 0, (code, out, err)
    assert out == "", out
    assert err.count("\n") == 1 and err.startswith("rserpool: "), err
    assert "Traceback" not in err
    for word in words:
        assert word in err, (word, err)


# ---------------------------------------------------------------------- no server needed


def test_console_script_is_declared() -> None:
    """The installed distribution declares ``rserpool`` as twisted_rserpool.cli:run."""
    (script,) = entry_points(group="console_scripts", name="rserpool")
    assert script.value == "twisted_rserpool.cli:run" and script.load() is run


def test_admin_addresses() -> None:
    """--admin takes a URL, HOST:PORT, a port, or the server's own --admin endpoint string
    (loopback when it names no interface, as twistd binds it)."""
    assert parseAdminAddress("8864") == AdminAddress("http", "127.0.0.1", 8864)
    assert parseAdminAddress("tcp:8864") == AdminAddress("http", "127.0.0.1", 8864)
    assert parseAdminAddress("tcp:port=1:interface=127.0.0.2").url("/s") == "http://127.0.0.2:1/s"
    assert parseAdminAddress("tcp6:8864").url("/") == "http://[::1]:8864/"
    assert parseAdminAddress("tcp:8864:interface=0.0.0.0").host == "127.0.0.1"
    assert parseAdminAddress("[::1]:9").url("/x") == "http://[::1]:9/x"
    assert parseAdminAddress("https://gw.example:8443/admin/").url("/status") == (
        "https://gw.example:8443/admin/status"
    )
    assert parseAdminAddress("unix:/run/a.sock").unixSocket == "/run/a.sock"
    for bad in ("ftp://x", "tcp:http", "tcp:70000", "http://:1", "unix:", "h:x"):
        with pytest.raises(ValueError):
            parseAdminAddress(bad)


def test_table_aligns_columns_and_numbers() -> None:
    """Columns line up; numeric columns are right-aligned; None is '-', booleans yes/no."""
    text = formatTable(("NAME", "N", "OK"), [("echo", 2, True), ("a-longer-pool", 10, None)])
    assert text.splitlines() == [
        "NAME            N  OK",
        "echo            2  yes",
        "a-longer-pool  10  -",
    ]


def test_policy_and_transport_text() -> None:
    """Loads are percentages of the RFC 5356 range; IPv6 addresses get brackets."""
    half = {"type": "LeastUsedPolicy", "policy_type": 3, "load": 0x7FFFFFFF}
    assert policyText(half) == "LeastUsed load 50.0%"
    assert policyText({"type": "WeightedRoundRobinPolicy", "weight": 3}) == (
        "WeightedRoundRobin weight 3"
    )
    six = {"type": "TcpTransport", "port": 7, "addresses": ["::1"], "transport_use": "DATA_ONLY"}
    assert transportText(six) == "tcp [::1]:7"


_NOW = "2026-12-03T12:00:00+00:00"
_LEAST_USED = {"type": "LeastUsedPolicy", "policy_type": 3, "load": 0x40000000}
#: Documents as the servers send them (the shapes of enrp/admin.py and ike/admin.py).
ENRP_STATUS: dict[str, Any] = {
    "server_identifier": "0x00000001", "version": "0.1.0", "uptime_seconds": 42.5,
    "now": _NOW, "secure": True,
    "pools": [{
        "pool_handle": "echo", "policy": _LEAST_USED,
        "pool_elements": [{
            "pe_identifier": "0x00000007", "home_server_identifier": "0x00000001",
            "identity": "pe", "owner_identity": "pe-owner", "registration_life": -1,
            "expires_at": "2026-12-03T12:00:25+00:00", "policy": _LEAST_USED,
            "user_transport": {
                "type": "TcpTransport", "port": 7001, "addresses": ["127.0.0.1", "::1"],
                "transport_use": "DATA_PLUS_CONTROL",
            },
        }],
    }],
    "peers": [{
        "server": "0x00000002", "identity": "enrp-2", "state": "active", "connections": 1,
        "last_heard": "2026-12-03T11:59:59.500000+00:00", "checksum": "0x1234",
        "local_checksum": "0x1234", "pool_elements": 0, "resynchronising": False,
    }],
}  # fmt: skip
VPNGW_STATUS: dict[str, Any] = {
    "identity": "gw@test", "version": "0.1.0", "uptime_seconds": 3, "now": _NOW,
    "ike_sas": 1, "load": 1, "draining": False, "targets": ["127.0.0.4", "vpn.example"],
    "pool": [{"address": "127.0.0.5", "pe": 9, "load": 0.5}],
    "endpoints": [{
        "address": "127.0.0.1:500",
        "sas": [{
            "peer": "127.0.0.9:500", "peer_id": "client@test", "state": "ESTABLISHED",
            "spi_i": "0011223344556677", "spi_r": "8899aabbccddeeff",
            "redirect_supported": True, "virtual_ips": ["10.8.0.2"],
            "created": "2026-12-03T11:59:50+00:00",
            "child_sas": [{
                "inbound_spi": "c1c2c3c4", "outbound_spi": "d1d2d3d4", "suite": "aes128gcm16",
                "local_ts": ["10.8.0.2"], "remote_ts": ["10.0.0.0-10.0.0.255/6[80-80]"],
                "installed": True,
                "esp": {
                    "packets_in": 3, "bytes_in": 300, "packets_out": 2, "bytes_out": 200,
                    "drops": {"replay": 1},
                },
            }],
        }],
    }],
}  # fmt: skip
_COMMANDS = (
    (PoolsOptions, ENRP_STATUS), (ElementOptions, ENRP_STATUS), (PeersOptions, ENRP_STATUS),
    (SasOptions, VPNGW_STATUS), (DrainOptions, {"draining": True, "moved": 2}),
    (RedirectOptions, {"moved": 1, "spi_i": "0011223344556677"}),
)  # fmt: skip


def test_documents_as_tables() -> None:
    """What each table shows of the servers' documents."""
    pools = PoolsOptions().render(ENRP_STATUS).splitlines()
    # A pool's policy is its name: the load is its PEs' (rserpool pe), not the pool's.
    assert pools[3].split() == ["echo", "LeastUsed", "1", "0x00000001"]
    page = statusPage(
        ENRP_STATUS
        | {"started_at": _NOW, "pool_element_count": 1, "connections": [], "counters": {}}
        | {"peer_counters": {}}
        | {"pools": [ENRP_STATUS["pools"][0] | {"pool_elements": [
            ENRP_STATUS["pools"][0]["pool_elements"][0] | {"unreachable_reports": 0}
        ]}]}
    ).decode()  # fmt: skip
    assert "&mdash; LeastUsedPolicy</h3>" in page and "load=1073741824" in page  # the PE's
    pe = ElementOptions().render(ENRP_STATUS).splitlines()
    assert pe[0] == "ENRP server 0x00000001 (twisted-rserpool 0.1.0, up 42 s, secure)"
    assert pe[3].split() == [
        "echo", "0x00000007", "tcp", "127.0.0.1:7001", "[::1]:7001", "(data+control)",
        "LeastUsed", "load", "25.0%", "0x00000001", "pe", "pe-owner", "infinite", "in", "25", "s",
    ]  # fmt: skip
    peers = PeersOptions().render(ENRP_STATUS).splitlines()
    assert peers[3].split()[:6] == ["0x00000002", "enrp-2", "active", "1", "0.5", "s"]
    sas = SasOptions().render(VPNGW_STATUS).splitlines()
    assert sas[0] == (
        "VPN gateway gw@test (twisted-rserpool 0.1.0, up 3 s): 1 IKE SA(s), load 1, not"
        " draining; redirect targets: 127.0.0.4, vpn.example; pool: 127.0.0.5 (load 0.5)"
    )
    assert sas[2].split()[-5:] == ["10.8.0.2", "1", "10.0", "s", "ago"]
    assert sas[5].split()[3:6] == ["aes128gcm16", "10.8.0.2", "10.0.0.0/24[tcp/80]"]
    assert sas[5].endswith("in 3 pkts/300 B, out 2 pkts/200 B, 1 dropped")
    assert DrainOptions().render({"draining": True, "moved": 2}).startswith("draining: ")


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every place in a JSON value, as the keys and indexes that lead there."""
    places = [prefix]
    items = (
        value.items()
        if isinstance(value, dict)
        else enumerate(value)
        if isinstance(value, list)
        else ()
    )
    for key, inner in items:
        places += _paths(inner, (*prefix, key))
    return places


@st.composite
def _mutated(draw: st.DrawFn, template: dict[str, Any]) -> dict[str, Any]:
    """``template`` with up to four places replaced by any JSON value, or removed."""
    document = copy.deepcopy(template)
    for _ in range(draw(st.integers(1, 4))):
        places = _paths(document)[1:]
        if not places:
            break
        *parents, key = draw(st.sampled_from(places))
        parent: Any = document
        for step in parents:
            parent = parent[step]
        if draw(st.booleans()):
            parent[key] = draw(_JSON)
        else:
            del parent[key]
    return document


_JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.just(10**400)
    | st.floats()
    | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=3)
    ),
    max_leaves=10,
)


@settings(max_examples=150)
@given(data=st.data())
def test_any_document_renders_or_is_malformed(data: st.DataObject) -> None:
    """Whatever JSON object a server answers (here: the real shapes, damaged anywhere),
    every command either writes it as text without control characters, or raises one of
    the errors ``execute`` reports in one line."""
    for command, template in _COMMANDS:
        document = data.draw(_mutated(template))
        try:
            text = command().text(document)
        except MALFORMED:
            continue
        assert all(c.isprintable() or c == "\n" for c in text), text


class _NotJson(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.end_headers()
        self.wfile.write(b"<html>not the admin interface</html>")

    def log_message(self, format: str, *args: object) -> None:
        pass


class ErrorTests(TestCase):
    """Failures without a twisted-rserpool server: one line, status 1 (2 for usage)."""

    timeout = 30

    def setUp(self) -> None:
        self.here = Path(tempfile.mkdtemp(prefix="rserpool-cli-"))  # no state directory in it
        self.addCleanup(shutil.rmtree, self.here, ignore_errors=True)

    async def test_connection_refused(self) -> None:
        """Nothing listens: the line names the address and the --admin it expected."""
        port = freePort()
        result = await rserpool("pools", "--admin", f"tcp:{port}", cwd=self.here)
        assertOneLineError(*result, f"127.0.0.1:{port}", "refused", "--admin")
        assert result[0] == 1

    async def test_answer_that_is_not_json(self) -> None:
        """An HTTP server that is not an admin interface: 'not a JSON object'."""
        server = HTTPServer((LOOPBACK, 0), _NotJson)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        self.addCleanup(server.server_close)
        self.addCleanup(server.shutdown)
        admin = f"http://{LOOPBACK}:{server.server_address[1]}"
        result = await rserpool("sas", "--admin", admin, cwd=self.here)
        assertOneLineError(*result, "not a JSON object")

    async def test_no_command(self) -> None:
        """The console script without a command: one line, status 2."""
        result = await rserpool(cwd=self.here)
        assertOneLineError(*result, "a command is needed")
        assert result[0] == 2


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (("nonsense",), "Unknown command: nonsense"),
        (("redirect", "--peer", "192.0.2.1", "--all"), "exactly one of"),
        (("redirect", "--spi", "xyz"), "--spi: 'xyz' is not hexadecimal"),
        (("drain", "--stop", "--move"), "exclude"),
        (("pools", "--timeout", "soon"), "--timeout: could not convert"),
        (("pe", "a", "b"), "Wrong number of arguments"),
        (("pools", "--admin", "ftp://x"), "--admin: 'ftp://x' is not"),
    ],
)
def test_usage_errors(args: tuple[str, ...], words: str) -> None:
    """A wrong command line is one line naming the problem, and status 2 (nothing sent)."""
    code, out, err = inProcess(*args)
    assert code == 2
    assertOneLineError(code, out, err, words)


class UnixSocketTests(TestCase):
    """An ENRP server's admin site on a UNIX socket, reads guarded by the token (as off
    loopback): the token decides, and ``unix:PATH`` reaches it."""

    timeout = 30

    async def test_unix_socket_and_token_for_reads(self) -> None:
        """Without a token and with a wrong one: one line each; with the right one, from
        --token-file or RSERPOOL_ADMIN_TOKEN: the (empty) pool table."""
        here = Path(tempfile.mkdtemp(prefix="rserpool-cli-unix-"))
        self.addCleanup(shutil.rmtree, here, ignore_errors=True)
        server = make_server(Clock())
        self.addCleanup(server.stopService)
        endpoint = UNIXServerEndpoint(reactor, str(here / "admin.sock"))  # type: ignore[no-untyped-call]
        site = adminSite(server, "right-token", tokenForReads=True)
        listening = await endpoint.listen(site)  # type: ignore[no-untyped-call]
        self.addCleanup(listening.stopListening)
        admin = ("--admin", f"unix:{here / 'admin.sock'}")

        code, out, err = await rserpool("pools", *admin, cwd=here)
        assertOneLineError(code, out, err, "401", "--token-file")
        code, out, err = await rserpool("pools", *admin, cwd=here, token="wrong-token")
        assertOneLineError(code, out, err, "401", "the admin token was refused")
        (here / "token").write_text("right-token\n")
        for extra, token in ((("--token-file", str(here / "token")), None), ((), "right-token")):
            code, out, err = await rserpool("pools", *admin, *extra, cwd=here, token=token)
            assert (code, err) == (0, ""), err
            assert out.startswith("ENRP server ") and out.endswith("\n\nno pools\n"), out
        code, out, err = await rserpool("pools", "--token-file", str(here / "nothing"), cwd=here)
        assertOneLineError(code, out, err, "--token-file: cannot read", "nothing")


# ---------------------------------------------------------------------- twistd enrp


class EnrpTests(TestCase):
    """``rserpool pools``, ``pe`` and ``peers`` against two peering ENRP servers."""

    timeout = 60

    async def test_pools_pe_and_peers(self) -> None:
        """The tables and the JSON documents show the registered PE, its pool and the peer."""
        directory = Path(tempfile.mkdtemp(prefix="rserpool-cli-"))
        self.addCleanup(shutil.rmtree, directory, ignore_errors=True)
        pool = Pool(directory, 2)
        self.addCleanup(pool.stop)
        pool.startAll()
        one, two = pool.servers
        # A real pool element process (it answers the keep-alives), registered at one.
        _process, pe = pool.startElement(one, "cli")

        def peered() -> bool:
            return (
                any(p["state"] == "active" for p in one.admin()["peers"]) and pe in two.elements()
            )

        await waitUntil(peered, 15, "peering and replication")
        admin = ("--admin", f"tcp:{one.process.adminPort}")
        cwd = one.process.directory

        code, out, err = await rserpool("pools", *admin, cwd=cwd)
        assert code == 0 and err == "", err
        header, blank, columns, row = out.splitlines()
        assert header.startswith("ENRP server 0x00000001 (twisted-rserpool") and not blank
        assert columns.split() == ["POOL", "POLICY", "PES", "HOME", "ENRP", "SERVERS"]
        assert row.split() == ["echo", "RoundRobin", "1", "0x00000001"]

        code, out, err = await rserpool("pe", "echo", *admin, cwd=cwd)
        assert code == 0 and err == "", err
        columns, row = out.splitlines()[2:]
        assert columns.split()[:3] == ["POOL", "PE", "TRANSPORT"]
        fields = row.split()
        assert fields[:3] == ["echo", f"0x{pe:08x}", "tcp"]
        assert fields[3].startswith(f"{LOOPBACK}:") and fields[3] != f"{LOOPBACK}:0"
        # its ASAP control traffic uses it too (RFC 5354 transport use), then policy, home,
        # registered by (PSK identity), owner identity, life, expiry
        assert fields[4:10] == ["(data+control)", "RoundRobin", "0x00000001", "pe", "pe", "30"]
        assert "EXPIRES" in columns and " in " in row

        code, out, err = await rserpool("pe", "--json", *admin, cwd=cwd)
        document = json.loads(out)
        (entry,) = document["pools"][0]["pool_elements"]
        assert entry["pe_identifier"] == f"0x{pe:08x}" and entry["identity"] == "pe"
        assert entry["policy"]["type"] == "RoundRobinPolicy" and entry["registration_life"] == 30

        # (The checks of answers that are errors call the same code in this process.)
        code, out, err = inProcess("pe", "nosuch", *admin)
        assertOneLineError(code, out, err, "no pool 'nosuch'", "pools: echo")

        # The peer table of server 1 shows server 2, active, holding no PE of its own.
        code, out, err = await rserpool("peers", *admin, cwd=cwd)
        assert code == 0 and err == "", err
        columns, row = out.splitlines()[2:]
        assert columns.split()[:3] == ["SERVER", "IDENTITY", "STATE"]
        fields = row.split()
        assert fields[:3] == ["0x00000002", "enrp-2", "active"] and "ago" in row
        code, out, err = await rserpool("peers", "--json", *admin, cwd=cwd)
        (peer,) = json.loads(out)["peers"]
        assert peer["server"] == "0x00000002" and peer["state"] == "active"

        # Server 2 replicated the PE: its home is server 1.
        code, out, err = inProcess("pe", "--admin", str(two.process.adminPort))
        assert code == 0 and f"0x{pe:08x}" in out and "0x00000001" in out

        # The ENRP admin is not a gateway's: sas says so in one line, and a path that
        # does not exist is the server's 404.
        code, out, err = inProcess("sas", *admin)
        assertOneLineError(code, out, err, "not what twistd vpngw's admin interface sends")
        wrong = f"http://{LOOPBACK}:{one.process.adminPort}/nothing"
        code, out, err = inProcess("pools", "--admin", wrong)
        assertOneLineError(code, out, err, "404", "no such resource: /nothing/status")


# ---------------------------------------------------------------------- twistd vpngw


class VpngwTests(TestCase):
    """``rserpool sas``, ``drain`` and ``redirect`` against a real ``twistd -n vpngw``
    with one IKE SA (and its CHILD_SA) of our own initiator."""

    timeout = 60

    async def test_sas_drain_and_redirect(self) -> None:
        """The SA is listed with its CHILD_SA; drain shows in the status; the token is
        needed (and checked) for commands; an unknown client is one clear line; a
        redirect of the client moves it."""
        directory = Path(tempfile.mkdtemp(prefix="rserpool-cli-vpngw-"))
        self.addCleanup(shutil.rmtree, directory, ignore_errors=True)
        gateway = VpngwProcess(directory / "gateway", extra=("--redirect-to", "127.0.0.4"))
        gateway.start()
        self.addCleanup(gateway.stop)
        up = await connect(gateway, "client@test", "client-secret", childless="allow")
        admin = ("--admin", str(gateway.adminPort))
        # The operator's directory: its vpngw-state/ is the gateway's state directory.
        here = directory / "operator"
        here.mkdir()
        (here / "vpngw-state").symlink_to(gateway.stateDirectory)

        code, out, err = await rserpool("sas", *admin, cwd=here)
        assert code == 0 and err == "", err
        lines = out.splitlines()
        assert lines[0].startswith(f"VPN gateway {IDENTITY} (twisted-rserpool"), out
        assert ": 1 IKE SA(s)" in lines[0] and "not draining; redirect targets: 127.0.0.4" in out
        columns, sa = lines[1:3]
        assert columns.split()[:4] == ["LISTEN", "PEER", "PEER", "ID"]
        fields = sa.split()
        assert fields[0] == f"{LOOPBACK}:{gateway.ikePort}" and fields[1].startswith(LOOPBACK)
        assert fields[2:4] == [
            "client@test",
            "ESTABLISHED",
        ]
        assert fields[4] == up.spi_i.hex() and "ago" in sa
        assert lines[3] == ""
        assert lines[4].split()[:3] == ["IKE", "SA", "SPI_I"]
        (child,) = lines[5:]
        assert child.startswith(up.spi_i.hex()) and "0.0.0.0/0 ::/0" in child
        assert child.endswith("not installed")  # no --tun: recorded, not carried

        code, out, err = await rserpool("sas", "--json", *admin, cwd=here)
        (listed,) = json.loads(out)["endpoints"][0]["sas"]
        assert listed["spi_i"] == up.spi_i.hex() and len(listed["child_sas"]) == 1

        # Commands need the token: refused without it, refused with a wrong one.
        elsewhere = directory / "elsewhere"
        elsewhere.mkdir()
        code, out, err = await rserpool("drain", *admin, cwd=elsewhere)
        assertOneLineError(code, out, err, "401", "--token-file", "RSERPOOL_ADMIN_TOKEN")
        code, out, err = await rserpool("drain", *admin, cwd=here, token="wrong")
        assertOneLineError(code, out, err, "401", "the admin token was refused")
        assert gateway.status()["draining"] is False

        # From the operator's directory the token is found in vpngw-state/admin.token.
        code, out, err = await rserpool("drain", *admin, cwd=here)
        assert (code, err) == (0, ""), err
        assert out == "draining: new clients are redirected; 0 established client(s) moved\n"
        code, out, err = await rserpool("sas", *admin, cwd=here)
        assert ", draining; redirect targets: 127.0.0.4" in out.splitlines()[0], out
        tokenFile = gateway.stateDirectory / "admin.token"
        code, out, err = await rserpool(
            "drain", "--stop", "--json", *admin, "--token-file", str(tokenFile), cwd=elsewhere
        )
        assert (code, err) == (0, "") and json.loads(out) == {"draining": False, "moved": 0}

        # A client the gateway does not have: the gateway's reason, in one line.
        code, out, err = await rserpool(
            "redirect", "--peer", "192.0.2.99", "--target", "127.0.0.4", *admin, cwd=here
        )
        assertOneLineError(code, out, err, "400", "no established IKE SA of that client")
        code, out, err = await rserpool(
            "redirect", "--spi", up.spi_i.hex(), "--target", "127.0.0.4", *admin, cwd=here
        )
        assert (code, err) == (0, ""), err
        assert out == f"redirected 1 client(s) (IKE SA {up.spi_i.hex()})\n"
        assert gateway.status()["redirects"] == {"admin": 1}
