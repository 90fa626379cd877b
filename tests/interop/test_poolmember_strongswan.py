"""A strongSwan gateway joins an RSerPool pool through ``twistd poolmember``, and
``twistd vpngw --redirect-pool`` sends clients to it.

Everything runs in one network namespace of the test's own (its loopback only), so that
charon can have UDP port 500 (clients follow a redirect to port 500): a real
``twistd -n enrp``; strongSwan's charon 5.9.8 as a gateway on 127.0.0.3; ``twistd -n
poolmember`` registering it (``udp:127.0.0.3:500``) with its load read from charon's vici
socket (the ESTABLISHED IKE SAs, list-sas, over a capacity of 4); a redirecting ``twistd
-n vpngw`` on 127.0.0.8 port 1500; our own initiator as the clients. The load the ENRP
server lists follows charon's SA count both ways, and a stopped charon is deregistered.
Run it under ``flock /tmp/strongswan.lock``.
"""

from __future__ import annotations

import atexit
import contextlib
import itertools
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import requireNamespaces, requireTool
from tests.enrp.support import TWISTD, EnrpProcess
from tests.interop.test_fragments import NamespacedCharon
from tests.interop.test_strongswan import PSK, ROOT, gateway_conf, require_strongswan
from tests.interop.tunnel_support import Process
from twisted_rserpool.poolmember.description import scaledLoad

pytestmark = pytest.mark.interop

GATEWAY = "127.0.0.3"  # charon (gateway_conf's local_addrs)
REDIRECTOR = "127.0.0.8"
CAPACITY = 4
_serial = itertools.count()


class Namespace:
    """A network namespace with its loopback up; deleted whatever happens."""

    def __init__(self) -> None:
        self.name = f"pm{os.getpid() % 100000}{next(_serial)}"

    def __enter__(self) -> Namespace:
        atexit.register(self.remove)
        subprocess.run(["ip", "netns", "add", self.name], check=True, timeout=20)
        subprocess.run(["ip", "-n", self.name, "link", "set", "lo", "up"], check=True)
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()

    def remove(self) -> None:
        subprocess.run(["ip", "netns", "del", self.name], check=False, capture_output=True)

    def get(self, port: int, path: str) -> dict[str, Any] | None:
        """GET ``path`` of a loopback admin interface in the namespace (None: not up)."""
        result = subprocess.run(
            ["ip", "netns", "exec", self.name, "curl", "-sf", "--max-time", "5",
             f"http://127.0.0.1:{port}{path}"],
            capture_output=True, text=True, timeout=10, check=False,
        )  # fmt: skip
        if result.returncode != 0:
            return None
        document: dict[str, Any] = json.loads(result.stdout)
        return document


def wait_for(
    condition: Callable[[], bool], what: str, logs: list[Process], limit: float = 20.0
) -> None:
    deadline = time.monotonic() + limit
    while not condition():
        if time.monotonic() > deadline:
            tails = "\n".join(f"--- {p.logfile.name}:\n{p.log[-3000:]}" for p in logs)
            raise AssertionError(f"timed out waiting for {what}\n{tails}")
        time.sleep(0.1)


def test_strongswan_gateway_in_the_pool(tmp_path: Path) -> None:
    """charon's SA count is its load at the ENRP server (0, 1/4, 2/4, back to 0); the
    redirecting vpngw resolves the pool and sends our initiator to charon, the only
    member; a stopped charon is deregistered after two failed readings."""
    require_strongswan()
    requireNamespaces()
    requireTool("curl")
    # Every process is stopped by its PID, the last started first, then the namespace goes.
    with Namespace() as ns, contextlib.ExitStack() as started:
        enrp = EnrpProcess(tmp_path / "enrp", extra=("--state-dir", str(tmp_path / "state")))
        enrp.prepare()
        logs: list[Process] = []

        def run(name: str, *args: str) -> Process:
            process = Process(ns.name, list(args), tmp_path / f"{name}.log")
            started.callback(process.stop)
            logs.append(process)
            return process

        run("enrp", *enrp.command())
        # unique = never: a second client's INITIAL_CONTACT must not replace the first SA.
        conf = gateway_conf("aes128-sha256-x25519", dpd=False)
        charon = NamespacedCharon(
            ns.name, conf.replace("mobike = no", "mobike = no\n  unique = never")
        )
        started.callback(charon.stop)
        charon.start()
        wait_for(lambda: ns.get(enrp.adminPort, "/summary") is not None, "the ENRP server", logs)
        member = run(
            "poolmember", TWISTD, "-n", "--pidfile=", "poolmember",
            "--pool", "vpngw", "--transport", f"udp:{GATEWAY}:500",
            "--enrp", f"{enrp.peEndpoint()}:bindAddress={GATEWAY}",
            "--load-vici", str(charon.dir / "charon.vici"), "--vici-count", "established",
            "--load-capacity", str(CAPACITY), "--load-interval", "0.3",
            "--load-threshold", "0", "--max-load-failures", "2",
        )  # fmt: skip

        def members() -> list[dict[str, Any]]:
            document = ns.get(enrp.adminPort, "/status")
            pools = [p for p in (document or {}).get("pools", []) if p["pool_handle"] == "vpngw"]
            return pools[0]["pool_elements"] if pools else []

        def loads() -> list[int]:
            return [m["policy"]["load"] for m in members()]

        wait_for(lambda: loads() == [0], "charon registered with load 0", logs)
        (registered,) = members()
        assert registered["user_transport"]["type"] == "UdpTransport"
        assert registered["user_transport"]["addresses"] == [GATEWAY]
        assert registered["user_transport"]["port"] == 500

        secrets = tmp_path / "secrets"
        secrets.write_text(f'client@test : "{PSK}"\n')
        secrets.chmod(0o600)  # vpngw refuses a key file others may read
        admin = 8500
        run(
            "vpngw", TWISTD, "-n", "--pidfile=", "vpngw", "--state-dir", str(tmp_path / "vpngw"),
            "--listen", REDIRECTOR, "--port", "1500", "--nat-t-port", "0",
            "--secrets", str(secrets), "--identity", "gw@test",
            "--redirect-always", "--redirect-pool", "vpngw",
            "--redirect-pool-enrp", enrp.puEndpoint(), "--pool-interval", "0.3",
            "--admin", f"tcp:{admin}:interface=127.0.0.1",
        )  # fmt: skip

        def pool() -> list[dict[str, Any]]:
            document = ns.get(admin, "/status")
            return (document or {}).get("pool") or []

        wait_for(lambda: [g["address"] for g in pool()] == [GATEWAY], "vpngw's pool", logs)

        clients: list[subprocess.Popen[str]] = []

        def connect(host: str, port: int) -> dict[str, Any]:
            client = subprocess.Popen(
                ["ip", "netns", "exec", ns.name, sys.executable, "-m",
                 "tests.interop.initiator_client", "127.0.0.1", host, str(port),
                 "aes128-sha256-x25519", "await-delete"],
                cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
            )  # fmt: skip
            clients.append(client)
            assert client.stdout is not None
            line: dict[str, Any] = json.loads(client.stdout.readline() or '{"event": "exited"}')
            return line

        try:
            # Through the redirector: REDIRECT to the pool's only gateway, charon.
            up = connect(REDIRECTOR, 1500)
            assert up["event"] == "established" and up["peer_id"] == "gw@test", up
            wait_for(lambda: loads() == [scaledLoad(1 / CAPACITY)], "load 1/4", logs)
            up = connect(GATEWAY, 500)
            assert up["event"] == "established", up
            wait_for(lambda: loads() == [scaledLoad(2 / CAPACITY)], "load 2/4", logs)
            sas = charon.swanctl("--list-sas")
            assert sas.count("ESTABLISHED") == 2, sas
            assert f"{GATEWAY}[gw@test]...127.0.0.1[client@test]" in charon.log
            charon.swanctl("--terminate", "--ike", "gw", "--timeout", "5", check=False)
            wait_for(lambda: loads() == [0], "load back to 0", logs)
        finally:
            for client in clients:
                if client.poll() is None:
                    client.kill()
                client.wait(timeout=5)
        counted = ns.get(admin, "/status")
        assert counted is not None and counted["redirects"] == {"static": 1}, counted
        assert counted["ike_sas"] == 0  # the redirector itself served nobody

        charon.stop()
        wait_for(lambda: members() == [], "charon deregistered once vici is gone", logs)
        log = member.log
        assert "deregistering after 2 failed load readings in a row" in log
        assert "Traceback" not in log
