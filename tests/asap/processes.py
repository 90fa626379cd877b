"""Real processes for the ASAP tests: ``twistd -n enrp`` and pool elements run with
``python -m twisted_rserpool._demo.pe``, always killed when the test ends."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from twisted.trial.unittest import TestCase

from tests.asap.support import Credentials, waitFor

TWISTD = str(Path(sys.executable).parent / "twistd")


def freePort() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _kill(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.kill()
    process.wait(timeout=10)


def _listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


@dataclass
class EnrpProcess:
    """A ``twistd -n enrp`` subprocess."""

    process: subprocess.Popen[bytes]
    port: int
    log: Path


async def startEnrp(
    testCase: TestCase, creds: Credentials, *options: str, serverId: int = 0x5EED0001
) -> EnrpProcess:
    """``twistd -n enrp`` on a free port with the test's PSK file and certificate."""
    port = freePort()
    log = creds.directory / f"enrp-{port}.log"
    listener = (
        f"tlspsk:{port}:interface=127.0.0.1:pskFile={creds.serverPsk}"
        f":certificate={creds.serverCertificate}:privateKey={creds.serverKey}"
    )
    process = subprocess.Popen(
        [
            TWISTD,
            "-n",
            "--pidfile=",
            f"--logfile={log}",
            "enrp",
            "--asap",
            listener,
            "--server-id",
            hex(serverId),
            "--keep-alive-interval",
            "1",
            "--keep-alive-timeout",
            "1",
            *options,
        ],
        cwd=creds.directory,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )
    testCase.addCleanup(_kill, process)
    await waitFor(lambda: _listening(port) or process.poll() is not None, timeout=20)
    assert process.poll() is None, log.read_text() if log.exists() else "twistd exited"
    return EnrpProcess(process, port, log)


@dataclass
class PeProcess:
    """A pool element subprocess and what it announced."""

    process: subprocess.Popen[bytes]
    peIdentifier: int
    port: int

    def kill9(self) -> None:
        """SIGKILL: the process dies without closing anything itself."""
        os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> None:
        """SIGSTOP: the process stays, silent, with its sockets open."""
        os.kill(self.process.pid, signal.SIGSTOP)


async def startPe(
    testCase: TestCase, creds: Credentials, enrpPort: int, *options: str, name: str = "pe"
) -> PeProcess:
    """A pool element process registered at the ENRP server on ``enrpPort``."""
    out = creds.directory / f"{name}.out"
    err = creds.directory / f"{name}.err"
    with open(out, "wb") as stdout, open(err, "wb") as stderr:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "twisted_rserpool._demo.pe",
                "--enrp",
                creds.peClient(enrpPort),
                "--listen",
                creds.peListen(),
                "--name",
                name,
                *options,
            ],
            stdout=stdout,
            stderr=stderr,
        )
    testCase.addCleanup(_kill, process)
    pattern = re.compile(r"READY pe=0x([0-9a-f]+) port=(\d+)")
    await waitFor(lambda: pattern.search(out.read_text()) or process.poll() is not None, timeout=20)
    match = pattern.search(out.read_text())
    assert match is not None, err.read_text()
    return PeProcess(process, int(match.group(1), 16), int(match.group(2)))
