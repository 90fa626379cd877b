"""A real ``twistd -n vpngw`` for tests: its own directory, secrets, state directory and
admin port on loopback; the IKE port is chosen by the system and read from its log."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from twisted.internet import reactor
from twisted.internet.interfaces import IReactorUDP

from tests.enrp.support import LOOPBACK, TWISTD, freePort, readLog, waitForPort
from twisted_rserpool.ike.config import Identity, IkeConfig, PskTable
from twisted_rserpool.ike.endpoint import IkeEndpoint
from twisted_rserpool.ike.events import IkeSaEstablished
from twisted_rserpool.ike.initiator import IkeInitiatorProtocol

#: Bound of every wait on the process (seconds).
BOUND = 20.0
IDENTITY = "gw@test"


@dataclass
class VpngwProcess:
    """``twistd -n vpngw`` on 127.0.0.1 (IKE on a free UDP port, NAT traversal off) with
    ``--secrets`` holding ``secrets`` and ``--admin tcp:PORT`` (no interface: loopback)."""

    directory: Path
    secrets: str = 'client@test : "client-secret"\n'
    extra: tuple[str, ...] = ()
    adminPort: int = field(default_factory=freePort)
    process: subprocess.Popen[bytes] | None = None
    ikePort: int = 0

    def __post_init__(self) -> None:
        self.directory = self.directory.resolve()

    @property
    def secretsFile(self) -> Path:
        return self.directory / "ipsec.secrets"

    @property
    def stateDirectory(self) -> Path:
        return self.directory / "state"

    @property
    def log(self) -> Path:
        return self.directory / "vpngw.log"

    @property
    def token(self) -> str:
        return (self.stateDirectory / "admin.token").read_text().strip()

    def logText(self) -> str:
        return readLog(self.log)

    def start(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        if not self.secretsFile.exists():
            self.secretsFile.write_text(self.secrets)
            self.secretsFile.chmod(0o600)
        command = [
            TWISTD, "-n", "--pidfile=", f"--logfile={self.log}", "vpngw",
            "--listen", LOOPBACK, "--port", "0", "--nat-t-port", "0",
            "--identity", IDENTITY, "--secrets", str(self.secretsFile),
            "--state-dir", str(self.stateDirectory), "--admin", f"tcp:{self.adminPort}",
            *self.extra,
        ]  # fmt: skip
        self.process = subprocess.Popen(
            command,
            cwd=self.directory,
            stdin=subprocess.DEVNULL,
            stdout=open(self.directory / "stdout.txt", "wb"),  # noqa: SIM115
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
        )
        waitForPort(self.adminPort, self.process, self.log, BOUND)
        found = self.waitForLog(rf"IKEv2 on udp {re.escape(LOOPBACK)}:(\d+)")
        self.ikePort = int(found.group(1))

    def waitForLog(self, pattern: str, count: int = 1) -> re.Match[str]:
        """The ``count``-th match of ``pattern`` in the log, waiting (bounded) for it; the
        process must keep running meanwhile."""
        deadline = time.monotonic() + BOUND
        while True:
            matches = list(re.finditer(pattern, self.logText()))
            if len(matches) >= count:
                return matches[count - 1]
            assert self.process is not None and self.process.poll() is None, self.logText()
            assert time.monotonic() < deadline, f"{pattern!r} not logged:\n{self.logText()}"
            time.sleep(0.05)

    def hangUp(self, pattern: str, count: int) -> None:
        """SIGHUP the process and wait until ``pattern`` is logged ``count`` times."""
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGHUP)
        self.waitForLog(pattern, count)

    def request(
        self,
        path: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
        host: str = LOOPBACK,
    ) -> tuple[int, bytes, dict[str, str]]:
        """One HTTP request to the admin port: status, body and headers (errors too)."""
        request = urllib.request.Request(
            f"http://{host}:{self.adminPort}{path}", data=body, headers=headers or {}
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as answer:
                return answer.status, answer.read(), dict(answer.headers)
        except urllib.error.HTTPError as e:
            return e.code, e.read(), dict(e.headers)

    def status(self) -> dict[str, Any]:
        code, body, _ = self.request("/status")
        assert code == 200, body
        document: dict[str, Any] = json.loads(body)
        return document

    def post(self, path: str, document: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        """A command with the token and a JSON body."""
        code, body, _ = self.request(
            path,
            json.dumps(document).encode(),
            {"Content-Type": "application/json", "Authorization": f"Bearer {self.token}"},
        )
        answer: dict[str, Any] = json.loads(body)
        return code, answer

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=10)


async def connect(
    gateway: VpngwProcess, identity: str, secret: str, **config: Any
) -> IkeSaEstablished:
    """An IKE SA from our initiator on a new UDP port of the real reactor (childless unless
    ``config`` says otherwise); fails with ``IkeSaSetupFailed``."""
    settings: dict[str, Any] = {
        "remote_id": Identity.parse(IDENTITY),
        "childless": "force",
        "retransmit_timeout": 1.0,
        "retransmit_tries": 3,
        **config,
    }
    endpoint = IkeEndpoint(
        IkeConfig(Identity.parse(identity), PskTable(default=secret.encode()), **settings),
        (LOOPBACK, 0),
    )
    protocol = IkeInitiatorProtocol(endpoint, reactor)
    udp: IReactorUDP = reactor  # type: ignore[assignment]
    port = udp.listenUDP(0, protocol, interface=LOOPBACK, maxPacketSize=65535)
    endpoint.local_address = (LOOPBACK, port.getHost().port)  # type: ignore[attr-defined]
    try:
        return await protocol.initiate((LOOPBACK, gateway.ikePort))
    finally:
        await port.stopListening()  # type: ignore[misc]
