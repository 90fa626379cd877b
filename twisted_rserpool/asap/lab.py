"""A throwaway RSerPool lab on loopback for examples and experiments: an ENRP server
(``twistd -n enrp``) and pool element processes, with the keys and certificates they need.

The examples in ``examples/`` run themselves with ``--pe`` to be a pool element (see
:func:`servePoolElement`). Not for production: every key is generated on the spot.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from twisted.internet.interfaces import IProtocolFactory

from twisted_rserpool.asap import AsapTimers, PoolElement
from twisted_rserpool.security.certificates import createSelfSignedCertificate
from twisted_rserpool.security.psk import createPskFile
from twisted_rserpool.transport.connection import MappingConfig


class Lab:
    """Keys, certificates and processes in a temporary directory (removed by :meth:`close`)."""

    def __init__(self) -> None:
        self.directory = Path(tempfile.mkdtemp(prefix="rserpool-example-"))
        self.psk = self.directory / "keys.psk"
        createPskFile(self.psk, "pe")
        self.serverCertificate = self.directory / "enrp.pem"
        createSelfSignedCertificate(self.serverCertificate, self.directory / "enrp.key")
        self.peCertificate = self.directory / "pe.pem"
        createSelfSignedCertificate(self.peCertificate, self.directory / "pe.key")
        self.processes: list[subprocess.Popen[bytes]] = []
        self.enrpPort = 0

    def startEnrp(self) -> int:
        """Start ``twistd -n enrp`` on a free port; return the port."""
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.enrpPort = s.getsockname()[1]
        twistd = str(Path(sys.executable).parent / "twistd")
        listener = (
            f"tlspsk:{self.enrpPort}:interface=127.0.0.1:pskFile={self.psk}"
            f":certificate={self.serverCertificate}:privateKey={self.directory / 'enrp.key'}"
        )
        self.processes.append(
            subprocess.Popen(
                [
                    twistd,
                    "-n",
                    "--pidfile=",
                    f"--logfile={self.directory / 'enrp.log'}",
                    "enrp",
                    "--asap",
                    listener,
                    "--keep-alive-interval",
                    "1",
                ],
                cwd=self.directory,
            )
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.enrpPort)) == 0:
                    return self.enrpPort
            time.sleep(0.1)
        raise RuntimeError("the ENRP server did not start")

    def peArguments(self) -> list[str]:
        """What a pool element process needs to find the ENRP server and serve TLS."""
        return [
            "--enrp",
            f"tlspsk:host=127.0.0.1:port={self.enrpPort}:identity=pe:pskFile={self.psk}",
            "--listen",
            f"tlspsk:0:interface=127.0.0.1:certificate={self.peCertificate}"
            f":privateKey={self.directory / 'pe.key'}",
        ]

    def startPoolElement(self, script: str, *extra: str) -> tuple[subprocess.Popen[bytes], int]:
        """Run ``script --pe`` as a pool element; return the process and its PE identifier."""
        output = self.directory / f"pe-{len(self.processes)}.out"
        with open(output, "wb") as out:
            process = subprocess.Popen(
                [sys.executable, script, "--pe", *self.peArguments(), *extra], stdout=out
            )
        self.processes.append(process)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            match = re.search(r"READY pe=0x([0-9a-f]+)", output.read_text())
            if match:
                return process, int(match.group(1), 16)
            if process.poll() is not None:
                break
            time.sleep(0.05)
        raise RuntimeError(f"pool element {script} did not start")

    def userServers(self) -> list[str]:
        """The client string a pool user uses: the ENRP server's certificate is verified."""
        return [
            f"tlspsk:host=127.0.0.1:port={self.enrpPort}:caCertificate={self.serverCertificate}"
        ]

    @staticmethod
    def kill(process: subprocess.Popen[bytes]) -> None:
        """kill -9."""
        os.kill(process.pid, signal.SIGKILL)
        process.wait()

    def close(self) -> None:
        """Kill every process and remove the directory."""
        for process in self.processes:
            if process.poll() is None:
                process.kill()
                process.wait()
        shutil.rmtree(self.directory, ignore_errors=True)


def servePoolElement(poolHandle: bytes, factory: IProtocolFactory, argv: list[str]) -> None:
    """Run a pool element until killed (the examples' ``--pe`` mode)."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--pe", action="store_true")
    parser.add_argument("--enrp", required=True)
    parser.add_argument("--listen", required=True)
    arguments, _ = parser.parse_known_args(argv)
    from twisted.internet import reactor  # noqa: PLC0415

    element = PoolElement(
        poolHandle,
        factory,
        [arguments.enrp],
        arguments.listen,
        registrationLife=30,
        timers=AsapTimers(t5_server_hunt=1.0),
        userMappingConfig=MappingConfig(heartbeat_interval=0.5, heartbeat_timeout=1.0),
    )
    element.startService()

    def ready(_: object) -> None:
        sys.stdout.write(f"READY pe=0x{element.peIdentifier:08x}\n")
        sys.stdout.flush()

    element.whenRegistered().addCallback(ready)
    reactor.run()
