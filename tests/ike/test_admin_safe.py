"""Issue 15 finding 4 for ``twistd vpngw --admin``: loopback by default (a warning when not),
the bearer token generated into --state-dir (0600) for every command and, off loopback,
for everything; JSON-only POST (a form cannot drain the gateway); 404 for unknown paths;
ISO 8601 times, version and uptime; an HTML status page that escapes everything."""

from __future__ import annotations

import json
import socket
import stat
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from twisted.logger import capturedLogs
from twisted.python import usage

from tests.enrp.support import LOOPBACK
from tests.ike.test_gateway import FakeReactor
from tests.ike.test_redirect_admin import TOKEN, admin_net
from tests.ike.vpngw_process import VpngwProcess
from tests.support.web import answer, request
from twisted_rserpool import __version__
from twisted_rserpool._tap import vpngw
from twisted_rserpool.ike.admin import GatewayAdminResource, statusPage

BEARER = {b"authorization": b"Bearer " + TOKEN.encode()}
JSON = {b"content-type": b"application/json"}


def adminOf(*args: str) -> tuple[GatewayAdminResource, list[dict[str, Any]]]:
    """The admin resource ``twistd vpngw ARGS`` builds, and what building it logged."""
    options = vpngw.Options()  # type: ignore[no-untyped-call]
    options.parseOptions(list(args))  # type: ignore[no-untyped-call]
    with capturedLogs() as events:
        service = vpngw.makeService(options, FakeReactor())
    [site] = [s.factory for s in service if hasattr(s, "factory")]  # type: ignore[attr-defined]
    resource: GatewayAdminResource = site.resource
    return resource, list(events)


# ---------------------------------------------------------------------- twistd vpngw --admin


def test_admin_defaults_to_loopback_with_a_generated_token(tmp_path: Path) -> None:
    """--admin tcp:PORT is bound to 127.0.0.1; the token is generated into --state-dir with
    mode 0600; the log names its file, never the token; reads are open there."""
    state = tmp_path / "state"
    resource, events = adminOf("--state-dir", str(state), "--admin", "tcp:8500")
    token = (state / "admin.token").read_text().strip()
    assert stat.S_IMODE((state / "admin.token").stat().st_mode) == 0o600
    assert resource.token == token and not resource.tokenForReads
    assert any(e.get("endpoint") == "tcp:8500:interface=127.0.0.1" for e in events)
    assert not [e for e in events if e["log_level"].name in ("warn", "error")]
    assert all(token not in json.dumps(e, default=str) for e in events)
    assert answer(resource, request("/status"))[0] == 200


def test_admin_off_loopback_warns_and_needs_the_token_to_read(tmp_path: Path) -> None:
    """An explicit non-loopback interface is honoured with one warning, and then every
    request, the status page and the metrics too, needs the token."""
    resource, events = adminOf(
        "--state-dir", str(tmp_path), "--admin", "tcp:8500:interface=0.0.0.0"
    )
    [warning] = [e for e in events if e["log_level"].name == "warn"]
    assert warning["where"] == "0.0.0.0" and "not on loopback" in warning["log_format"]
    assert resource.tokenForReads
    token = (tmp_path / "admin.token").read_text().strip().encode()
    for path in ("/status", "/metrics", "/"):
        assert answer(resource, request(path))[0] == 401
        authorized = request(path, headers={b"authorization": b"Bearer " + token})
        assert answer(resource, authorized)[0] == 200


def test_admin_token_file_readable_by_others_is_refused(tmp_path: Path) -> None:
    """--admin-token-file with group or other permissions stops the start with one line."""
    path = tmp_path / "token"
    path.write_text("abc\n")
    path.chmod(0o640)
    with pytest.raises(usage.UsageError, match=r"--admin-token-file: .*chmod 600"):
        adminOf("--admin", "tcp:8500", "--admin-token-file", str(path))


# ---------------------------------------------------------------------- the resource


def test_commands_need_the_token_and_a_json_body() -> None:
    """POST /drain without the token is 401, a form (the body a web page can make a browser
    send cross-origin) is 415 even with the token, and neither drains; JSON with the token
    drains."""
    _net, admin, policy = admin_net()
    assert answer(admin, request("/drain", b"POST", JSON, b'{"drain": true}'))[0] == 401
    for form in (b"application/x-www-form-urlencoded", b"text/plain", b"multipart/form-data"):
        dummy = request("/drain", b"POST", {**BEARER, b"content-type": form}, b"drain=1")
        code, body = answer(admin, dummy)
        assert code == 415 and "error" in json.loads(body)
    assert answer(admin, request("/drain", b"POST", {**BEARER, **JSON}, b"[true]"))[0] == 400
    assert not policy.draining
    code, body = answer(admin, request("/drain", b"POST", {**BEARER, **JSON}, b'{"move": false}'))
    assert code == 200 and json.loads(body) == {"draining": True, "moved": 0}
    assert policy.draining
    # A GET of a command, or a POST to the status, is 405 with the methods allowed.
    assert answer(admin, request("/drain"))[0] == 405
    dummy = request("/status", b"POST", {**BEARER, **JSON}, b"{}")
    assert answer(admin, dummy)[0] == 405
    assert dummy.responseHeaders.getRawHeaders(b"allow") == [b"GET, HEAD"]


def test_unknown_paths_are_404() -> None:
    """Only the documented routes answer; everything else is 404 with a JSON error."""
    _net, admin, _policy = admin_net()
    for path in ("/nope", "/status/extra", "/metrics/x", "/status.json"):
        code, body = answer(admin, request(path))
        assert code == 404 and "error" in json.loads(body), path
    code, _ = answer(admin, request("/nowhere", b"POST", {**BEARER, **JSON}, b"{}"))
    assert code == 404


def test_status_has_version_uptime_and_iso_times() -> None:
    """The status names the version, when the admin interface started and for how long,
    the listen addresses, the targets with their weights, and each IKE SA's creation and
    last contact as ISO 8601 times."""
    _net, admin, _policy = admin_net()
    admin.clock.advance(7)  # type: ignore[attr-defined]
    document = json.loads(answer(admin, request("/status"))[1])
    assert document["version"] == __version__ and document["uptime_seconds"] == 7
    started = datetime.fromisoformat(document["started_at"])
    assert (datetime.fromisoformat(document["now"]) - started).total_seconds() == 7
    assert document["listen"] == ["127.0.0.3:500"] and document["identity"] == "gw@test"
    assert document["redirect_targets"] == [{"gateway": "127.0.0.4", "weight": 1}]
    [sa] = document["endpoints"][0]["sas"]
    assert sa["state"] == "ESTABLISHED" and sa["peer_auth"] == "PSK"
    datetime.fromisoformat(sa["created"])
    datetime.fromisoformat(sa["last_heard"])
    assert document["reload"] is None  # no reloader in this resource


def test_status_page_escapes_everything_and_runs_no_script() -> None:
    """A hostile peer identity reaches the page escaped; the page has no script, and a
    browser asking for HTML gets it with a CSP that runs none; curl gets JSON."""
    _net, admin, _policy = admin_net()
    document = admin.status()
    hostile = "<script>alert(1)</script>&"
    document["endpoints"][0]["sas"][0]["peer_id"] = hostile
    document["redirect_targets"][0]["gateway"] = hostile
    page = statusPage(document).decode()
    assert "<script" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;&amp;" in page
    browser = request("/", headers={b"accept": b"text/html,application/xhtml+xml,*/*;q=0.8"})
    code, body = answer(admin, browser)
    assert code == 200 and body.startswith(b"<!DOCTYPE html>") and b"client@test" in body
    assert browser.responseHeaders.getRawHeaders(b"content-type") == [b"text/html; charset=utf-8"]
    [policy] = browser.responseHeaders.getRawHeaders(b"content-security-policy") or []
    assert b"default-src 'none'" in policy and b"script-src" not in policy
    assert json.loads(answer(admin, request("/", headers={b"accept": b"*/*"}))[1])["ike_sas"] == 1


def test_loopback_admin_refuses_other_host_names() -> None:
    """DNS rebinding: on loopback a Host header naming another host is 403."""
    _net, admin, _policy = admin_net()
    assert answer(admin, request("/status", headers={b"host": b"evil.example"}))[0] == 403
    assert answer(admin, request("/status", headers={b"host": b"127.0.0.1:8500"}))[0] == 200


# ---------------------------------------------------------------------- a real twistd vpngw


def test_twistd_vpngw_admin_is_safe(tmp_path: Path) -> None:
    """A real ``twistd -n vpngw --admin tcp:PORT``: served on 127.0.0.1 only; a form POST
    to /drain is 415 and a tokenless one 401, neither drains; a JSON one with the token
    from the state directory drains; /metrics is Prometheus text; the token is not logged."""
    gateway = VpngwProcess(tmp_path / "gw", extra=("--redirect-to", "127.0.0.9"))
    gateway.start()
    try:
        assert gateway.status()["draining"] is False
        with (
            pytest.raises(ConnectionRefusedError),
            socket.create_connection(("127.0.0.2", gateway.adminPort), timeout=5),
        ):
            pass
        form = {"Content-Type": "application/x-www-form-urlencoded"}
        code, _, _ = gateway.request("/drain", b"drain=1", form)
        assert code == 401
        code, _, _ = gateway.request(
            "/drain", b"drain=1", {**form, "Authorization": f"Bearer {gateway.token}"}
        )
        assert code == 415
        assert gateway.status()["draining"] is False
        assert gateway.post("/drain", {"drain": True}) == (200, {"draining": True, "moved": 0})
        document = gateway.status()
        assert document["draining"] is True and document["version"] == __version__
        assert document["listen"] == [f"{LOOPBACK}:{gateway.ikePort}"]
        code, body, headers = gateway.request("/metrics")
        assert code == 200 and headers["Content-Type"].startswith("text/plain; version=")
        assert b"rserpool_vpngw_draining 1.0" in body
        assert gateway.request("/nope")[0] == 404
        log = gateway.logText()
        assert "interface=127.0.0.1" in log and "not on loopback" not in log
        assert gateway.token not in log and "client-secret" not in log
    finally:
        gateway.stop()
