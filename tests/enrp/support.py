"""Helpers for tests that run a real ``twistd enrp`` and talk to it over TLS."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import Deferred, DeferredQueue
from twisted.internet.endpoints import clientFromString, connectProtocol
from twisted.python.failure import Failure

from twisted_rserpool.security.certificates import createSelfSignedCertificate
from twisted_rserpool.security.context import SecurityContext
from twisted_rserpool.security.psk import writePskFile
from twisted_rserpool.transport.protocol import RSerPoolProtocol
from twisted_rserpool.wire import asap

TWISTD = str(Path(sys.executable).with_name("twistd"))
LOOPBACK = "127.0.0.1"
PE_KEY = bytes(range(32))
OTHER_KEY = bytes(range(1, 33))


# Sets RLIMIT_NOFILE to argv[1] and runs the rest of the command line in its place.
_WITH_NOFILE = (
    "import os, resource, sys; n = int(sys.argv[1]); "
    "resource.setrlimit(resource.RLIMIT_NOFILE, (n, n)); os.execv(sys.argv[2], sys.argv[2:])"
)


def freePort() -> int:
    """A TCP port on loopback that nothing listens on right now."""
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        port: int = s.getsockname()[1]
        return port


def waitForPort(
    port: int, process: subprocess.Popen[bytes], log: Path, limit: float = 20.0
) -> None:
    """Wait (bounded) until something accepts on ``port``; fail with the log if not."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"twistd exited with {process.returncode}:\n{readLog(log)}")
        with socket.socket() as s:
            if s.connect_ex((LOOPBACK, port)) == 0:
                return
        time.sleep(0.05)
    raise AssertionError(f"twistd did not listen on {port} within {limit} s:\n{readLog(log)}")


def readLog(log: Path) -> str:
    text = log.read_text(errors="replace") if log.exists() else "(no log)"
    stdout = log.with_name("stdout.txt")
    if stdout.exists():
        text += "\n--- stdout/stderr ---\n" + stdout.read_text(errors="replace")
    return text


@dataclass
class EnrpProcess:
    """A ``twistd -n enrp`` subprocess with its own PSK file and certificate."""

    directory: Path
    port: int = field(default_factory=freePort)
    adminPort: int = field(default_factory=freePort)
    extra: tuple[str, ...] = ()
    process: subprocess.Popen[bytes] | None = None
    #: RLIMIT_NOFILE (soft and hard) to run twistd under; ``None``: inherited.
    nofile: int | None = None
    #: Environment variables set for twistd (beside the inherited ones).
    environment: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.directory = self.directory.resolve()

    @property
    def pskFile(self) -> Path:
        return self.directory / "server.psk"

    @property
    def certificate(self) -> Path:
        return self.directory / "server.pem"

    @property
    def log(self) -> Path:
        return self.directory / "enrp.log"

    def prepare(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        if not self.pskFile.exists():
            writePskFile(self.pskFile, {"pe": PE_KEY, "pe-2": OTHER_KEY})
        if not self.certificate.exists():
            createSelfSignedCertificate(self.certificate, self.directory / "server.key")

    def enrpOptions(self) -> list[str]:
        """The ``twistd enrp`` options this server runs with."""
        listener = (
            f"tlspsk:{self.port}:interface={LOOPBACK}:pskFile={self.pskFile}"
            f":certificate={self.certificate}:privateKey={self.directory / 'server.key'}"
        )
        return [
            "--server-id", "0x00e00001", "--asap", listener,
            "--admin", f"tcp:{self.adminPort}:interface={LOOPBACK}",
            "--keep-alive-interval", "1", "--keep-alive-timeout", "1",
            *self.extra,
        ]  # fmt: skip

    def command(self) -> list[str]:
        """The command line that runs the server (``twistd -n enrp ...``)."""
        return [TWISTD, "-n", "--pidfile=", f"--logfile={self.log}", "enrp", *self.enrpOptions()]

    def start(self) -> None:
        self.prepare()
        command = self.command()
        if self.nofile is not None:
            command = [sys.executable, "-c", _WITH_NOFILE, str(self.nofile), *command]
        self.process = subprocess.Popen(
            command,
            cwd=self.directory,
            stdin=subprocess.DEVNULL,
            stdout=open(self.directory / "stdout.txt", "wb"),  # noqa: SIM115
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1", **self.environment},
        )
        waitForPort(self.port, self.process, self.log)
        waitForPort(self.adminPort, self.process, self.log)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=10)

    def peEndpoint(self, identity: str = "pe", key: bytes = PE_KEY) -> str:
        keys = self.directory / f"client-{identity}-{key.hex()[:8]}.psk"
        if not keys.exists():
            writePskFile(keys, {identity: key})
        return f"tlspsk:host={LOOPBACK}:port={self.port}:identity={identity}:pskFile={keys}"

    def puEndpoint(self) -> str:
        return f"tlspsk:host={LOOPBACK}:port={self.port}:caCertificate={self.certificate}"


class AsapClient(RSerPoolProtocol):
    """A bare ASAP client for tests: queues the messages it receives."""

    def __init__(self) -> None:
        super().__init__()
        self.messages: DeferredQueue[asap.AsapMessage] = DeferredQueue()
        self.readyDeferred: Deferred[SecurityContext] = Deferred()
        self.lostDeferred: Deferred[None] = Deferred()

    def connectionReady(self, securityContext: SecurityContext) -> None:
        self.readyDeferred.callback(securityContext)

    def asapMessageReceived(self, message: asap.AsapMessage) -> None:
        self.messages.put(message)

    def connectionLost(self, reason: Failure | None = None) -> None:
        if reason is None:
            super().connectionLost()
        else:
            super().connectionLost(reason)
        if not self.readyDeferred.called:
            self.readyDeferred.errback(reason or Failure(ConnectionError("lost")))  # type: ignore[no-untyped-call]
        self.lostDeferred.callback(None)

    async def request(self, message: asap.AsapMessage) -> asap.AsapMessage:
        self.sendAsap(message)
        return await self.messages.get()

    def close(self) -> None:
        if self.transport is not None:
            self.transport.loseConnection()


async def connectClient(description: str) -> AsapClient:
    """An :class:`AsapClient` connected to ``description`` and ready (TLS done)."""
    endpoint = clientFromString(reactor, description)  # type: ignore[no-untyped-call]
    client = AsapClient()
    await connectProtocol(endpoint, client)  # type: ignore[no-untyped-call]
    await client.readyDeferred
    return client


def closeAll(clients: list[Any]) -> None:
    for client in clients:
        client.close()
