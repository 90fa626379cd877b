"""The admin interface is safe by default: loopback, a bearer token, 404s, JSON-only POST,
one time and checksum format (twisted_rserpool._admin, enrp/admin.py, twistd enrp --admin)."""

from __future__ import annotations

import json
import re
import socket
import stat
import urllib.error
import urllib.request
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from twisted.internet.task import Clock
from twisted.logger import capturedLogs
from twisted.python import usage

from tests.enrp import test_peers_service as peers
from tests.enrp.support import LOOPBACK, EnrpProcess
from tests.enrp.test_service import Client, make_server, registration
from tests.support.web import answer, request
from twisted_rserpool import __version__
from twisted_rserpool._admin import (
    AdminConfigError,
    AdminResource,
    Reply,
    adminEndpoint,
    loadOrCreateToken,
)
from twisted_rserpool._tap.enrp import Options
from twisted_rserpool._tap.enrp_services import serverAdminService as _adminService
from twisted_rserpool.enrp.admin import StatusResource, handleText, status, statusPage

TOKEN = "s3cret-token"


BEARER = {b"authorization": b"Bearer " + TOKEN.encode()}


# ---------------------------------------------------------------------- endpoint strings


def test_admin_endpoint_defaults_to_loopback() -> None:
    """tcp:8865 is bound to 127.0.0.1 (tcp6 to ::1); an explicit interface is kept."""
    default = adminEndpoint("tcp:8865")
    assert default.description == "tcp:8865:interface=127.0.0.1" and default.loopback
    six = adminEndpoint("tcp6:8865")
    assert six.description == "tcp6:8865:interface=\\:\\:1" and six.loopback
    assert adminEndpoint("tcp:8865:interface=127.0.0.5").loopback
    assert adminEndpoint("tcp6:port=8865:interface=\\:\\:1").loopback
    wild = adminEndpoint("tcp:8865:interface=0.0.0.0")
    assert wild.description == "tcp:8865:interface=0.0.0.0" and not wild.loopback
    assert not adminEndpoint("tcp:8865:interface=192.0.2.1").loopback
    assert adminEndpoint("unix:/run/enrp-admin.sock").loopback
    assert not adminEndpoint("systemd:domain=INET:index=0").loopback


def test_off_loopback_admin_logs_a_warning_and_needs_the_token_to_read(tmp_path: Path) -> None:
    """--admin on a non-loopback interface warns, and the site refuses reads without token."""
    options = Options()
    options.parseOptions(  # type: ignore[no-untyped-call]
        ["--state-dir", str(tmp_path), "--admin", "tcp:8865:interface=0.0.0.0", "--insecure"]
    )
    server = make_server(Clock(), secure=False)
    with capturedLogs() as events:
        service = _adminService(options, Clock(), server)
    warnings = [e for e in events if e["log_level"].name == "warn"]
    assert len(warnings) == 1 and warnings[0]["where"] == "0.0.0.0"
    resource = service.factory.resource  # type: ignore[attr-defined]
    assert resource.tokenForReads
    token = (tmp_path / "admin.token").read_text().strip()
    assert answer(resource, request("/summary"))[0] == 401
    authorized = request("/summary", headers={b"authorization": b"Bearer " + token.encode()})
    assert answer(resource, authorized)[0] == 200


def test_loopback_admin_logs_no_warning(tmp_path: Path) -> None:
    """The default (loopback) admin interface logs where it listens, at info level only."""
    options = Options()
    options.parseOptions(["--state-dir", str(tmp_path), "--admin", "tcp:8865"])  # type: ignore[no-untyped-call]
    with capturedLogs() as events:
        service = _adminService(options, Clock(), make_server(Clock()))
    assert not [e for e in events if e["log_level"].name in ("warn", "error")]
    assert any(e.get("endpoint") == "tcp:8865:interface=127.0.0.1" for e in events)
    assert not service.factory.resource.tokenForReads  # type: ignore[attr-defined]


# ---------------------------------------------------------------------- the token file


def test_token_is_generated_once_with_mode_0600(tmp_path: Path) -> None:
    """The token is 256 random bits in a new 0600 file, and the same on the next start."""
    path = tmp_path / "admin.token"
    with capturedLogs() as events:
        token = loadOrCreateToken(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(token) >= 43 and loadOrCreateToken(path) == token
    assert all(token not in json.dumps(e, default=str) for e in events), "token logged"


def test_token_file_readable_by_others_is_refused(tmp_path: Path) -> None:
    """A token file with group or other permissions is refused with a one-line reason."""
    path = tmp_path / "admin.token"
    path.write_text("abc\n")
    path.chmod(0o644)
    with pytest.raises(AdminConfigError, match="readable by others"):
        loadOrCreateToken(path)
    options = Options()
    options.parseOptions(  # type: ignore[no-untyped-call]
        ["--state-dir", str(tmp_path), "--admin", "tcp:1", "--admin-token-file", str(path)]
    )
    with pytest.raises(usage.UsageError, match=r"--admin-token-file: .*chmod 600"):
        _adminService(options, Clock(), make_server(Clock()))


# ---------------------------------------------------------------------- the resource


def test_unknown_paths_are_404() -> None:
    """Only the documented routes answer; /nope and /metrics/x are 404 with a JSON error."""
    resource = StatusResource(make_server(Clock()), TOKEN)
    for path in ("/nope", "/metrics/x", "/status/extra", "/summary.json"):
        code, body = answer(resource, request(path))
        assert code == 404 and "error" in json.loads(body), path
    assert answer(resource, request("/summary"))[0] == 200


def test_changes_need_the_token_even_on_loopback() -> None:
    """On loopback reads are open but every other method needs the bearer token."""
    resource = StatusResource(make_server(Clock()), TOKEN)
    assert answer(resource, request("/"))[0] == 200
    for method in (b"POST", b"PUT", b"DELETE"):
        dummy = request("/", method, {b"content-type": b"application/json"}, b"{}")
        assert answer(resource, dummy)[0] == 401
        assert dummy.responseHeaders.getRawHeaders(b"www-authenticate") == [
            b'Bearer realm="rserpool-admin"'
        ]
    wrong = {b"authorization": b"Bearer " + b"x" * len(TOKEN)}
    assert answer(resource, request("/", b"POST", wrong))[0] == 401
    # With the token: the read-only ENRP routes refuse the method instead.
    dummy = request("/", b"POST", {**BEARER, b"content-type": b"application/json"}, b"{}")
    assert answer(resource, dummy)[0] == 405
    assert dummy.responseHeaders.getRawHeaders(b"allow") == [b"GET, HEAD"]


def test_loopback_admin_refuses_other_host_names() -> None:
    """DNS rebinding: a page of evil.example resolved to 127.0.0.1 is refused by its Host
    header; 127.0.0.1, [::1] and localhost (with ports) are served. Off loopback the token
    decides instead."""
    resource = StatusResource(make_server(Clock()), TOKEN)
    for host in (b"evil.example", b"evil.example:8864", b"10.0.0.1:8864", b"127.0.0.1.nip.io"):
        code, body = answer(resource, request("/summary", headers={b"host": host}))
        assert code == 403 and b"loopback" in body, host
    for host in (b"127.0.0.1:8864", b"[::1]:8864", b"localhost", b"LOCALHOST:1", b"127.0.0.2"):
        assert answer(resource, request("/summary", headers={b"host": host}))[0] == 200, host
    remote = StatusResource(make_server(Clock()), TOKEN, tokenForReads=True)
    dummy = request("/summary", headers={b"host": b"enrp.example.org", **BEARER})
    assert answer(remote, dummy)[0] == 200


def test_no_token_configured_means_no_change_is_ever_authorized() -> None:
    """Without a token (the library default) even ``Bearer `` with nothing is refused."""
    resource = StatusResource(make_server(Clock()))
    dummy = request("/", b"POST", {b"authorization": b"Bearer "})
    assert answer(resource, dummy)[0] == 401


def test_post_accepts_only_json_objects() -> None:
    """A POST route runs only for an authorized application/json object body: a form a
    web page could submit cross-origin (text/plain, form-encoded) is 415 and runs nothing."""
    calls: list[dict[str, Any]] = []

    def act(_request: Any, body: dict[str, Any]) -> Reply:
        calls.append(body)
        return Reply.json({"ok": True})

    resource = AdminResource(TOKEN, {}, {"/drain": act})
    for contentType in (
        b"application/x-www-form-urlencoded",
        b"text/plain",
        b"multipart/form-data",
    ):
        dummy = request("/drain", b"POST", {**BEARER, b"content-type": contentType}, b"drain=1")
        assert answer(resource, dummy)[0] == 415
    json_ = {**BEARER, b"content-type": b"application/json; charset=utf-8"}
    assert answer(resource, request("/drain", b"POST", json_, b"[1]"))[0] == 400
    assert answer(resource, request("/drain", b"POST", json_, b"{nope"))[0] == 400
    assert calls == []
    code, body = answer(resource, request("/drain", b"POST", json_, b'{"drain": true}'))
    assert code == 200 and json.loads(body) == {"ok": True} and calls == [{"drain": True}]
    assert answer(resource, request("/drain"))[0] == 405
    unauthenticated = {b"content-type": b"application/json"}
    assert answer(resource, request("/drain", b"POST", unauthenticated, b"{}"))[0] == 401
    assert len(calls) == 1


def test_status_has_version_uptime_iso_times_and_one_checksum_format() -> None:
    """Summary and status carry version and uptime; times are ISO 8601 and every
    checksum (owners and peers) is 0x%04x."""
    clock = Clock()
    clock.advance(1_796_000_000)
    server = make_server(clock, secure=False)
    resource = StatusResource(server, TOKEN)
    Client(server).send(registration())
    clock.advance(2)  # less than a keep-alive interval: the PE is still registered
    summary = json.loads(answer(resource, request("/summary"))[1])
    assert summary["version"] == __version__ and summary["uptime_seconds"] == 2
    assert datetime.fromisoformat(summary["started_at"]).timestamp() == 1_796_000_000
    document = json.loads(answer(resource, request("/status"))[1])
    [pe] = document["pools"][0]["pool_elements"]
    assert datetime.fromisoformat(pe["expires_at"]).timestamp() == 1_796_000_000 + 30
    [owner] = document["owners"].values()
    assert re.fullmatch(r"0x[0-9a-f]{4}", owner["pe_checksum"])

    clock, wire = Clock(), peers.Wire()
    a, b, _ = peers.cluster(clock, wire)
    peers.AsapClient(wire, b).send(peers.registration(5))
    peers.advance(clock, wire, 3.0)
    rows = json.loads(answer(StatusResource(a), request("/"))[1])["peers"]
    assert rows
    for row in rows:
        assert re.fullmatch(r"0x[0-9a-f]{4}", row["checksum"])
        assert re.fullmatch(r"0x[0-9a-f]{4}", row["local_checksum"])
        datetime.fromisoformat(row["last_heard"])


def test_pool_handles_are_printable_or_hex() -> None:
    """A pool handle is shown as text only when it is printable ASCII."""
    assert handleText(b"echo") == "echo"
    assert handleText(b"<b>\x00") == "0x3c623e00"
    assert handleText("caf\u00e9".encode()) == "0x636166c3a9"
    assert handleText(b"") == "0x"


def test_status_page_escapes_everything_and_runs_no_script() -> None:
    """Identities and transports reach the HTML page escaped; it has no script at all, and
    the page's Content-Security-Policy would not run one."""
    server = make_server(Clock(), secure=False)
    Client(server).send(registration())
    document = status(server)
    hostile = "<script>alert(1)</script>&"
    document["pools"][0]["pool_elements"][0]["owner_identity"] = hostile
    document["counters"][hostile] = 1
    page = statusPage(document).decode()
    assert "<script" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;&amp;" in page
    dummy = request("/", headers={b"accept": b"text/html,application/xhtml+xml,*/*;q=0.8"})
    code, body = answer(StatusResource(server), dummy)
    assert code == 200 and body.startswith(b"<!DOCTYPE html>")
    assert dummy.responseHeaders.getRawHeaders(b"content-type") == [b"text/html; charset=utf-8"]
    [policy] = dummy.responseHeaders.getRawHeaders(b"content-security-policy") or []
    assert b"default-src 'none'" in policy and b"script-src" not in policy
    # Without text/html in Accept (curl, scripts) the same URL is JSON.
    plain = request("/", headers={b"accept": b"*/*"})
    assert json.loads(answer(StatusResource(server), plain)[1])["pools"]


# ---------------------------------------------------------------------- a real twistd enrp


def test_twistd_admin_without_interface_listens_on_loopback_only(tmp_path: Path) -> None:
    """``--admin tcp:PORT`` serves 127.0.0.1 and not 127.0.0.2 (it is not bound to every
    address); reads are open there, changes need the token from the state directory."""
    process = EnrpProcess(tmp_path / "enrp", extra=("--state-dir", str(tmp_path / "state")))
    port = process.adminPort
    process.extra += ("--admin", f"tcp:{port}")  # the last --admin wins: no interface
    process.start()
    try:
        with urllib.request.urlopen(f"http://{LOOPBACK}:{port}/summary", timeout=10) as reply:
            assert json.load(reply)["server_identifier"] == "0x00e00001"
        with (
            pytest.raises(ConnectionRefusedError),
            socket.create_connection(("127.0.0.2", port), timeout=5),
        ):
            pass
        post = urllib.request.Request(
            f"http://{LOOPBACK}:{port}/", b"{}", {"content-type": "application/json"}
        )
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(post, timeout=10)
        assert refused.value.code == 401
        token = (tmp_path / "state" / "admin.token").read_text().strip()
        assert stat.S_IMODE((tmp_path / "state" / "admin.token").stat().st_mode) == 0o600
        post.add_header("authorization", f"Bearer {token}")
        with pytest.raises(urllib.error.HTTPError) as allowed:
            urllib.request.urlopen(post, timeout=10)
        assert allowed.value.code == 405  # authorized, but nothing here changes state
        with pytest.raises(urllib.error.HTTPError) as missing:
            urllib.request.urlopen(f"http://{LOOPBACK}:{port}/metrics.json", timeout=10)
        assert missing.value.code == 404
        log = process.log.read_text()
        assert "interface=127.0.0.1" in log and "not on loopback" not in log
        assert token not in log
    finally:
        process.stop()
