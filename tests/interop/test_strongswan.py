"""Interop with a real strongSwan 5.9.8 (charon) on loopback, both roles.

strongSwan initiates to ``twistd -n vpngw`` (a subprocess on a free 127.0.0.x, port 500),
and our Twisted initiator (``tests/interop/initiator_client.py``, a subprocess) connects to a
charon gateway on free non-500 ports, which exercises the RFC 3948 non-ESP marker. This
kernel has no ESP: a CHILD_SA fails at install time in strongSwan, the IKE SA stays up.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import interopRequired, requireTool
from tests.interop.charon import Charon, free_loopback_500, free_udp_port, running

pytestmark = pytest.mark.interop

ROOT = Path(__file__).resolve().parents[2]
PSK = "interop-psk"
GROUPS = {"modp2048": "MODP_2048", "x25519": "CURVE_25519"}


def require_strongswan() -> None:
    """swanctl, unshare and charon present, and root (for charon's mount namespace and for
    port 500); missing pieces fail where interop is required and skip elsewhere."""
    requireTool("swanctl")
    requireTool("unshare")
    problem = None
    if not Path("/usr/lib/ipsec/charon").exists():
        problem = "strongSwan's /usr/lib/ipsec/charon is not installed"
    elif os.geteuid() != 0:
        problem = "charon needs root (a private mount namespace) and vpngw needs port 500"
    if problem is not None:
        if interopRequired():
            pytest.fail(problem)
        pytest.skip(problem)


class Gateway:
    """``twistd -n vpngw`` in a subprocess; always stopped by its PID."""

    def __init__(self, tmp: Path, *extra: str) -> None:
        self.host = free_loopback_500()
        self.logfile = tmp / "vpngw.log"
        secrets = tmp / "secrets"
        secrets.write_text(f'client@test : "{PSK}"\n')
        secrets.chmod(0o600)  # vpngw refuses a key file others may read
        twistd = Path(sys.executable).parent / "twistd"
        self.process = subprocess.Popen(
            [
                str(twistd), "-n", "--pidfile=", f"--logfile={self.logfile}", "vpngw",
                "--listen", self.host, "--port", "500", "--secrets", str(secrets),
                "--identity", "gw@test", *extra,
            ],
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
        self.wait_for_log("IKEv2 on udp")

    @property
    def log(self) -> str:
        return self.logfile.read_text(errors="replace") if self.logfile.exists() else ""

    def wait_for_log(self, text: str, timeout: float = 15.0) -> str:
        deadline = time.monotonic() + timeout
        while text not in (log := self.log):
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"{text!r} not in the vpngw log:\n{log}")
            time.sleep(0.05)
        return log

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)


@pytest.fixture
def gateway_factory(tmp_path: Path) -> Iterator[list[Gateway]]:
    started: list[Gateway] = []
    yield started
    for gw in started:
        gw.stop()


def initiator_conf(
    gateway: str, group: str, *, childless: bool, dpd: bool = True, proposals: str = ""
) -> str:
    child = (
        "children { net { esp_proposals = aes128gcm16, aes128-sha256\n  remote_ts = 10.1.0.0/16 } }"
        if not childless
        else ""
    )
    return f"""connections {{ ini {{
  version = 2
  mobike = no
  childless = {"force" if childless else "allow"}
  local_addrs = 127.0.0.1
  remote_addrs = {gateway}
  remote_port = 500
  proposals = {proposals or f"aes128-sha256-{group}"}
  {"dpd_delay = 1s" if dpd else ""}
  local {{ auth = psk
    id = client@test }}
  remote {{ auth = psk
    id = gw@test }}
  {child}
}} }}
secrets {{ ike-any {{ secret = "{PSK}" }} }}
"""


@pytest.mark.parametrize("group", list(GROUPS))
def test_strongswan_initiator_childless(
    group: str, tmp_path: Path, gateway_factory: list[Gateway]
) -> None:
    """A strongSwan initiator with childless = force establishes a PSK IKE SA with twistd
    vpngw; its DPD liveness checks are answered; its DELETE removes the SA on our side."""
    require_strongswan()
    gw = Gateway(tmp_path)
    gateway_factory.append(gw)
    with running(Charon(initiator_conf(gw.host, group, childless=True))) as charon:
        out = charon.swanctl("--initiate", "--ike", "ini", "--timeout", "10")
        assert "initiate completed successfully" in out
        sas = charon.swanctl("--list-sas")
        assert (
            "ESTABLISHED" in sas
            and f"AES_CBC-128/HMAC_SHA2_256_128/PRF_HMAC_SHA2_256/{GROUPS[group]}" in sas
        )
        assert "'gw@test'" in sas
        log = gw.wait_for_log("established with client@test")
        assert f"aes128-sha256-{group}" in log and "CHILD_SA" not in log
        charon.wait_for_log("sending DPD request")
        charon.wait_for_log("parsed INFORMATIONAL response 2 [ ]")
        charon.swanctl("--terminate", "--ike", "ini", "--timeout", "10")
        charon.wait_for_log("IKE_SA deleted")
        gw.wait_for_log("deleted by peer")


@pytest.mark.parametrize("group", list(GROUPS))
def test_strongswan_initiator_with_child_sa(
    group: str, tmp_path: Path, gateway_factory: list[Gateway]
) -> None:
    """A strongSwan initiator asking for a CHILD_SA gets one negotiated by vpngw (narrowed
    traffic selectors, KEYMAT recorded); strongSwan's kernel cannot install it, the IKE SA
    stays up, and strongSwan's DELETE of the CHILD_SA is answered; our gateway's liveness
    checks are answered by strongSwan."""
    require_strongswan()
    gw = Gateway(tmp_path, "--liveness-interval", "1")
    gateway_factory.append(gw)
    with running(Charon(initiator_conf(gw.host, group, childless=False, dpd=False))) as charon:
        charon.swanctl("--initiate", "--child", "net", "--timeout", "10", check=False)
        log = gw.wait_for_log("recorded (no ESP data plane installed)")
        assert "10.1.0.0-10.1.255.255" in log
        assert f"aes128-sha256-{group}" in log
        sas = charon.swanctl("--list-sas")
        assert "ESTABLISHED" in sas and GROUPS[group] in sas
        clog = charon.wait_for_log("parsed INFORMATIONAL response 2 [ D ]")
        assert "unable to install" in clog and "sending DELETE for ESP CHILD_SA" in clog
        gw.wait_for_log("removed")
        charon.wait_for_log("parsed INFORMATIONAL request 0 [ ]")
        charon.wait_for_log("generating INFORMATIONAL response 0 [ ]")


def test_strongswan_initiator_cookie_invalid_ke_and_aead(
    tmp_path: Path, gateway_factory: list[Gateway]
) -> None:
    """vpngw demanding cookies (threshold 0) and accepting only ECP384 with AES-GCM: the
    strongSwan initiator, whose first KE is X25519, gets a COOKIE, then INVALID_KE_PAYLOAD,
    retries and establishes aes256gcm16-prfsha384-ecp384."""
    require_strongswan()
    gw = Gateway(tmp_path, "--cookie-threshold", "0", "--proposals", "aes256gcm16-prfsha384-ecp384")
    gateway_factory.append(gw)
    proposals = "aes128-sha256-x25519, aes256gcm16-prfsha384-ecp384"
    conf = initiator_conf(gw.host, "x25519", childless=True, dpd=False, proposals=proposals)
    with running(Charon(conf)) as charon:
        out = charon.swanctl("--initiate", "--ike", "ini", "--timeout", "10")
        assert "initiate completed successfully" in out
        assert "parsed IKE_SA_INIT response 0 [ N(COOKIE) ]" in out
        assert "parsed IKE_SA_INIT response 0 [ N(INVAL_KE) ]" in out
        assert "it requested ECP_384" in out
        sas = charon.swanctl("--list-sas")
        assert "AES_GCM_16-256/PRF_HMAC_SHA2_384/ECP_384" in sas
        gw.wait_for_log("(aes256gcm16-prfsha384-ecp384)")


def test_strongswan_rekeys_ike_sa_and_adds_child_sa(
    tmp_path: Path, gateway_factory: list[Gateway]
) -> None:
    """strongSwan rekeys the IKE SA (CREATE_CHILD_SA with SA, Ni, KE) and vpngw's new SA
    takes over; then strongSwan adds a CHILD_SA with CREATE_CHILD_SA on the new SA, which
    vpngw negotiates (strongSwan's kernel cannot install it and deletes it again)."""
    require_strongswan()
    gw = Gateway(tmp_path)
    gateway_factory.append(gw)
    conf = initiator_conf(gw.host, "x25519", childless=True, dpd=False).replace(
        "childless = force",
        "childless = force\n  children { net { esp_proposals = aes128gcm16\n"
        "    remote_ts = 10.1.0.0/16 } }",
    )
    with running(Charon(conf)) as charon:
        charon.swanctl("--initiate", "--ike", "ini", "--timeout", "10")
        charon.swanctl("--rekey", "--ike", "ini")
        log = charon.wait_for_log("IKE_SA ini[2] rekeyed between")
        assert "parsed CREATE_CHILD_SA response 2 [ SA No KE ]" in log
        gw.wait_for_log("gone: rekeyed")
        assert "rekeyed to" in gw.log
        charon.swanctl("--initiate", "--child", "net", "--timeout", "10", check=False)
        log = charon.wait_for_log("parsed CREATE_CHILD_SA response 0 [ SA No TSi TSr ]")
        gw.wait_for_log("added with")
        gw.wait_for_log("removed")
        sas = charon.swanctl("--list-sas")
        assert "ini: #2, ESTABLISHED" in sas


def test_default_vpngw_with_generated_key(tmp_path: Path) -> None:
    """`twistd -n vpngw` with no options listens on 127.0.0.1 port 500, writes a generated
    key to vpngw-state/generated.secrets (never to the log) and logs a strongSwan
    configuration; strongSwan connects with exactly that key."""
    require_strongswan()
    logfile = tmp_path / "vpngw.log"
    twistd = Path(sys.executable).parent / "twistd"
    process = subprocess.Popen(
        [str(twistd), "-n", "--pidfile=", f"--logfile={logfile}", "vpngw"],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 15
        while "IKEv2 on udp 127.0.0.1:500" not in (
            log := logfile.read_text() if logfile.exists() else ""
        ):
            assert process.poll() is None and time.monotonic() < deadline, log
            time.sleep(0.05)
        keyFile = tmp_path / "vpngw-state" / "generated.secrets"
        assert f'secret = "<the key in {keyFile}>"' in log
        secret = keyFile.read_text().split('"', 2)[1]
        assert secret not in log
        assert "remote_addrs = 127.0.0.1" in log and "id = vpngw@localhost" in log
        conf = f"""connections {{ ini {{
  version = 2
  mobike = no
  childless = force
  local_addrs = 127.0.0.1
  remote_addrs = 127.0.0.1
  proposals = aes128-sha256-x25519
  local {{ auth = psk
    id = client@localhost }}
  remote {{ auth = psk
    id = vpngw@localhost }}
}} }}
secrets {{ ike-any {{ secret = "{secret}" }} }}
"""
        with running(Charon(conf)) as charon:
            out = charon.swanctl("--initiate", "--ike", "ini", "--timeout", "10")
            assert "IKE_SA ini[1] established" in out
    finally:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)


def gateway_conf(group_list: str, *, dpd: bool) -> str:
    return f"""connections {{ gw {{
  version = 2
  mobike = no
  local_addrs = 127.0.0.3
  proposals = {group_list}
  {"dpd_delay = 1s" if dpd else ""}
  local {{ auth = psk
    id = gw@test }}
  remote {{ auth = psk
    id = client@test }}
}} }}
secrets {{ ike-any {{ secret = "{PSK}" }} }}
"""


class Client:
    """Our initiator (tests/interop/initiator_client.py) in a subprocess."""

    def __init__(self, port: int, proposal: str, actions: str) -> None:
        self.process = subprocess.Popen(
            [
                sys.executable, "-m", "tests.interop.initiator_client",
                "127.0.0.1", "127.0.0.3", str(port), proposal, actions,
            ],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )  # fmt: skip
        self.lines: list[dict[str, object]] = []

    def next(self) -> dict[str, object]:
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        assert line, f"initiator exited: {self.lines}"
        self.lines.append(json.loads(line))
        return self.lines[-1]

    def finish(self) -> int:
        try:
            return self.process.wait(timeout=20)
        finally:
            if self.process.poll() is None:
                self.process.kill()
                self.process.wait(timeout=5)


@pytest.mark.parametrize("group", list(GROUPS))
def test_our_initiator_with_strongswan_gateway(group: str) -> None:
    """Our Twisted initiator establishes an IKE SA with a strongSwan gateway (non-500 ports,
    so with non-ESP markers), checks liveness, rekeys the IKE SA, checks liveness over the
    new SA, and deletes it; strongSwan sees the rekey and the DELETE."""
    require_strongswan()
    with running(Charon(gateway_conf(f"aes128-sha256-{group}", dpd=False))) as charon:
        client = Client(charon.port, f"aes128-sha256-{group}", "liveness,rekey,liveness,delete")
        try:
            up = client.next()
            assert up["event"] == "established", client.lines
            assert up["suite"] == f"aes128-sha256-{group}" and up["peer_id"] == "gw@test"
            assert client.next()["event"] == "liveness"
            rekeyed = client.next()
            assert rekeyed["event"] == "rekeyed-by-us" and rekeyed["spi_i"] != up["spi_i"]
            assert client.next()["event"] == "liveness"
            assert client.next() == {"event": "deleted", "reason": "deleted"}
        finally:
            code = client.finish()
        assert code == 0
        log = charon.wait_for_log("received DELETE for IKE_SA gw[2]")
        assert "IKE_SA gw[1] established" in log
        assert "parsed CREATE_CHILD_SA request 3 [ SA No KE ]" in log


def test_strongswan_gateway_liveness_rekey_and_delete() -> None:
    """strongSwan's DPD liveness checks reach our initiator and are answered; the strongSwan
    gateway rekeys the IKE SA (we become the responder of the new SA), and its DELETE of the
    new SA ends it on our side."""
    require_strongswan()
    with running(Charon(gateway_conf("aes128-sha256-x25519", dpd=True))) as charon:
        client = Client(charon.port, "aes128-sha256-x25519", "await-delete")
        try:
            assert client.next()["event"] == "established", client.lines
            assert client.next()["event"] == "waiting"
            charon.wait_for_log("sending DPD request")
            charon.wait_for_log("parsed INFORMATIONAL response 0 [ ]")
            charon.swanctl("--rekey", "--ike", "gw")
            rekeyed = client.next()
            assert rekeyed["event"] == "rekeyed" and rekeyed["suite"] == "aes128-sha256-x25519"
            charon.wait_for_log("IKE_SA gw[2] rekeyed between")
            # By unique id: the old gw[1] may still be listed while its deletion completes,
            # and terminating it by name then fails with "ID 1 not found".
            charon.swanctl("--terminate", "--ike-id", "2", "--timeout", "10")
            assert client.next() == {"event": "deleted", "reason": "deleted by peer"}
        finally:
            code = client.finish()
        assert code == 0


def test_free_port_helper() -> None:
    """The port helper returns a bindable port (the harness relies on it)."""
    port = free_udp_port()
    assert 0 < port < 65536
