"""What both halves of the demo need: readable output, processes, and an ENRP server."""

from __future__ import annotations

import contextlib
import inspect
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from twisted.internet.task import deferLater
from twisted.python import usage

from twisted_rserpool.security.certificates import createSelfSignedCertificate
from twisted_rserpool.security.psk import createPskFile

__all__ = [
    "Console",
    "EnrpServer",
    "ProgramOptions",
    "Workspace",
    "accepting",
    "freePort",
    "sleep",
    "waitFor",
]


class ProgramOptions(usage.Options):
    """The options of a demo program; a command line problem is reported in one line."""

    synopsis = ""

    def __init__(self) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.longdesc = inspect.cleandoc(type(self).__doc__ or "")

    def parseOptions(self, options: Sequence[str] | None = None) -> None:
        """Parse ``options`` (default: the command line)."""
        super().parseOptions(options)  # type: ignore[no-untyped-call]

    def parseCommandLine(self, argv: Sequence[str] | None) -> bool:
        """Parse ``argv`` (default: ``sys.argv``); False, after saying why on stderr, when
        it is wrong."""
        try:
            self.parseOptions(list(sys.argv[1:] if argv is None else argv))
        except usage.UsageError as e:
            sys.stderr.write(f"{self.synopsis}\nerror: {e}\n")
            return False
        return True


def freePort(host: str = "127.0.0.1", kind: int = socket.SOCK_STREAM) -> int:
    """A port of ``host`` that nothing uses right now."""
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def accepting(host: str, port: int) -> bool:
    """Whether something accepts TCP connections on ``host``:``port`` now."""
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex((host, port)) == 0


class Console:
    """Lines on ``out``, each stamped with the seconds since the demo began."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.start = time.monotonic()

    def say(self, text: str = "", indent: int = 0) -> None:
        """Write ``text``; its continuation lines line up under its first."""
        stamp = f"[{time.monotonic() - self.start:5.1f}s] " if text else ""
        for number, line in enumerate(text.splitlines() or [""]):
            prefix = stamp if number == 0 else " " * len(stamp)
            self.out.write(f"{prefix}{' ' * indent}{line}\n")
        self.out.flush()


async def sleep(reactor: Any, seconds: float) -> None:
    """Let ``seconds`` pass on the reactor."""
    await deferLater(reactor, seconds, lambda: None)


async def waitFor(reactor: Any, condition: Any, timeout: float, what: str) -> None:
    """Poll ``condition`` every 50 ms until it holds; TimeoutError after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        await sleep(reactor, 0.05)


def _twistd() -> str:
    twistd = str(Path(sys.executable).parent / "twistd")
    if not os.path.exists(twistd):
        twistd = shutil.which("twistd") or twistd
    return twistd


class Workspace:
    """A temporary directory and the processes started in it; :meth:`close` ends both."""

    def __init__(self, prefix: str) -> None:
        self.directory = Path(tempfile.mkdtemp(prefix=prefix))
        self.processes: list[subprocess.Popen[bytes]] = []

    def start(self, name: str, command: list[str]) -> subprocess.Popen[bytes]:
        """Run ``command`` with stdout in ``name.out`` and stderr in ``name.err``."""
        with (
            open(self.directory / f"{name}.out", "wb") as stdout,
            open(self.directory / f"{name}.err", "wb") as stderr,
        ):
            process = subprocess.Popen(command, cwd=self.directory, stdout=stdout, stderr=stderr)
        self.processes.append(process)
        return process

    def twistd(self, name: str, *arguments: str) -> subprocess.Popen[bytes]:
        """``twistd -n`` with its log in ``name.log``."""
        log = f"--logfile={self.directory / (name + '.log')}"
        return self.start(name, [_twistd(), "-n", "--pidfile=", log, *arguments])

    def output(self, name: str) -> str:
        """What the process ``name`` wrote to stdout so far."""
        return (self.directory / f"{name}.out").read_text(errors="replace")

    def close(self) -> None:
        """Kill what still runs, then remove the directory."""
        for process in self.processes:
            if process.poll() is None:
                process.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=10)
        shutil.rmtree(self.directory, ignore_errors=True)


@dataclass(frozen=True)
class EnrpServer:
    """A ``twistd -n enrp`` on loopback over TLS: PEs authenticate with TLS-PSK (identity
    ``pe``), PUs verify its self-signed certificate."""

    port: int
    keys: Path
    certificate: Path
    process: subprocess.Popen[bytes]

    def peClient(self, bindAddress: str | None = None) -> str:
        """The client endpoint string of a pool element."""
        bind = f":bindAddress={bindAddress}" if bindAddress is not None else ""
        return f"tlspsk:host=127.0.0.1:port={self.port}:identity=pe:pskFile={self.keys}{bind}"

    def puClient(self) -> str:
        """The client endpoint string of a pool user."""
        return f"tlspsk:host=127.0.0.1:port={self.port}:caCertificate={self.certificate}"

    @classmethod
    async def start(cls, reactor: Any, workspace: Workspace) -> EnrpServer:
        """Create its keys and certificate in ``workspace``, start it, wait for it."""
        directory = workspace.directory
        keys = directory / "keys.psk"
        createPskFile(keys, "pe")
        certificate, key = directory / "enrp.pem", directory / "enrp.key"
        createSelfSignedCertificate(certificate, key, commonName="enrp.demo")
        port = freePort()
        listener = (
            f"tlspsk:{port}:interface=127.0.0.1:pskFile={keys}:certificate={certificate}"
            f":privateKey={key}"
        )
        process = workspace.twistd(
            "enrp",
            "enrp",
            "--asap",
            listener,
            "--server-id",
            "0x5eed0001",
            "--state-dir",
            str(directory / "enrp-state"),
            "--keep-alive-interval",
            "1",
            "--keep-alive-timeout",
            "1",
        )
        await waitFor(reactor, lambda: accepting("127.0.0.1", port), 20, "the ENRP server")
        return cls(port, keys, certificate, process)
