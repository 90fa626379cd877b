"""A real ``twistd -n poolmember`` registers a UDP member at a real ``twistd -n enrp``: a
pool user resolves it (UDP transport, the load from the file), the load follows the file,
a missing file deregisters it after --max-load-failures readings and a restored one
registers it again (same PE identifier), and SIGTERM deregisters it."""

from __future__ import annotations

import json
import signal
import subprocess
import time
import urllib.request
from collections.abc import Callable
from ipaddress import ip_address
from pathlib import Path
from typing import Any

from twisted.internet import reactor
from twisted.internet.task import deferLater
from twisted.trial.unittest import TestCase

from tests.asap.support import FAST
from tests.enrp.support import TWISTD, EnrpProcess, readLog
from twisted_rserpool.asap import PoolUser
from twisted_rserpool.poolmember.description import scaledLoad
from twisted_rserpool.wire.parameters import LeastUsedPolicy, UdpTransport


class PoolMemberProcess:
    """``twistd -n poolmember`` with ``args``; stopped by its PID."""

    def __init__(self, directory: Path, *args: str) -> None:
        self.log = directory / "poolmember.log"
        self.process = subprocess.Popen(
            [TWISTD, "-n", "--pidfile=", f"--logfile={self.log}", "poolmember", *args],
            cwd=directory,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
        )

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
        return self.process.returncode


def members(server: EnrpProcess) -> list[dict[str, Any]]:
    """The PEs of pool gw at the server's admin interface."""
    url = f"http://127.0.0.1:{server.adminPort}/status"
    with urllib.request.urlopen(url, timeout=5) as answer:
        document = json.loads(answer.read())
    pools = [p for p in document["pools"] if p["pool_handle"] == "gw"]
    return pools[0]["pool_elements"] if pools else []


class PoolMemberProcessTests(TestCase):
    timeout = 60

    def setUp(self) -> None:
        self.directory = Path(self.mktemp()).resolve()  # type: ignore[no-untyped-call]
        self.server = EnrpProcess(self.directory / "enrp")
        self.server.start()
        self.addCleanup(self.server.stop)

    async def until(self, what: str, check: Callable[[], bool], limit: float = 15.0) -> None:
        deadline = time.monotonic() + limit
        while not check():
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}:\n{readLog(self.member.log)}")
            await deferLater(reactor, 0.1, lambda: None)

    async def test_udp_member_with_file_load(self) -> None:
        """Resolution, load changes, withdrawal and return, deregistration on SIGTERM."""
        load = self.directory / "load"
        load.write_text("2\n")
        self.member = PoolMemberProcess(
            self.directory,
            "--pool", "gw", "--transport", "udp:127.0.0.1:4500",
            "--enrp", self.server.peEndpoint(),
            "--load-file", str(load), "--load-capacity", "8", "--load-interval", "0.2",
            "--load-threshold", "0", "--max-load-failures", "2",
        )  # fmt: skip
        self.addCleanup(self.member.stop)
        await self.until("the member's registration", lambda: len(members(self.server)) == 1)
        (registered,) = members(self.server)
        assert registered["user_transport"] == {
            "type": "UdpTransport",
            "port": 4500,
            "addresses": ["127.0.0.1"],
            "transport_use": "DATA_ONLY",
        }
        assert registered["policy"]["load"] == scaledLoad(0.25)
        user = PoolUser([self.server.puEndpoint()], timers=FAST, reactor=reactor)
        user.startService()
        self.addCleanup(user.stopService)
        (element,) = await user.resolve(b"gw")
        assert element.user_transport == UdpTransport(4500, ip_address("127.0.0.1"))
        assert element.policy == LeastUsedPolicy(scaledLoad(0.25))
        identifier = registered["pe_identifier"]

        load.write_text("6 sessions\n")
        await self.until(
            "the new load",
            lambda: [m["policy"]["load"] for m in members(self.server)] == [scaledLoad(0.75)],
        )
        load.unlink()
        await self.until("the withdrawal", lambda: members(self.server) == [])
        load.write_text("1\n")
        await self.until("the return", lambda: len(members(self.server)) == 1)
        (back,) = members(self.server)
        assert back["pe_identifier"] == identifier
        assert back["policy"]["load"] == scaledLoad(0.125)
        # twistd ends a clean shutdown by the signal that asked for it.
        assert self.member.stop() == -signal.SIGTERM
        assert members(self.server) == []
        log = readLog(self.member.log)
        assert "deregistering after 2 failed load readings in a row" in log
        assert log.count("cannot read the load") == 1  # throttled
        assert "the load is readable again after" in log
        assert "Traceback" not in log

    async def test_sighup_reloads(self) -> None:
        """SIGHUP (a systemd reload) neither stops nor deregisters the member: it reads the
        PSK file of --enrp again (one line, no key) and the load at once, long before the
        next --load-interval."""
        load = self.directory / "load"
        load.write_text("2\n")
        enrp = self.server.peEndpoint()
        pskFile = Path(enrp.rpartition("pskFile=")[2])
        self.member = PoolMemberProcess(
            self.directory,
            "--pool", "gw", "--transport", "udp:127.0.0.1:4500", "--enrp", enrp,
            "--load-file", str(load), "--load-capacity", "8", "--load-interval", "600",
            "--load-threshold", "0",
        )  # fmt: skip
        self.addCleanup(self.member.stop)
        await self.until("the member's registration", lambda: len(members(self.server)) == 1)
        (registered,) = members(self.server)
        assert registered["policy"]["load"] == scaledLoad(0.25)

        load.write_text("4\n")
        self.member.process.send_signal(signal.SIGHUP)
        await self.until(
            "the load read at once",
            lambda: [m["policy"]["load"] for m in members(self.server)] == [scaledLoad(0.5)],
        )
        await self.until("the reload line", lambda: "identities in use" in readLog(self.member.log))
        self.member.process.send_signal(signal.SIGHUP)  # a second one: still not fatal
        await self.until(
            "the second reload", lambda: readLog(self.member.log).count("identities in use") == 2
        )
        assert self.member.process.poll() is None
        (still,) = members(self.server)
        assert still["pe_identifier"] == registered["pe_identifier"]
        log = readLog(self.member.log)
        assert "SIGHUP: reloading the pre-shared keys and the load" in log
        assert (
            f"Reload: {pskFile}: 1 identities in use; added none, removed none, new key for none"
        ) in log
        assert pskFile.read_text().split(":")[-1].strip() not in log  # never the key
        assert "Traceback" not in log
        assert self.member.stop() == -signal.SIGTERM
        assert members(self.server) == []
