"""The plumbing of the examples in ``examples/``: throwaway keys, certificates and child
processes on loopback. What the examples show (endpoint strings, pool elements, pool users)
they write themselves; this holds only what a real deployment has already (files, a process
supervisor). Not for production: every key is generated on the spot.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time

from twisted_rserpool._demo.support import Workspace, accepting, freePort
from twisted_rserpool.asap.element import PoolElement
from twisted_rserpool.security.certificates import createSelfSignedCertificate
from twisted_rserpool.security.psk import createPskFile

__all__ = ["Lab", "freePort", "serve"]

_READY = re.compile(r"READY pe=0x([0-9a-f]+)")


class Lab(Workspace):
    """A temporary directory with a PSK file (identity ``pe``), a certificate for the ENRP
    server and one for the pool elements, and the processes started in it."""

    def __init__(self) -> None:
        super().__init__("rserpool-example-")
        self.psk = self.directory / "keys.psk"
        createPskFile(self.psk, "pe")
        self.enrpCertificate = self.directory / "enrp.pem"
        self.enrpKey = self.directory / "enrp.key"
        createSelfSignedCertificate(self.enrpCertificate, self.enrpKey)
        self.peCertificate = self.directory / "pe.pem"
        self.peKey = self.directory / "pe.key"
        createSelfSignedCertificate(self.peCertificate, self.peKey)

    def waitForPort(self, port: int, timeout: float = 20.0) -> None:
        """Block until something accepts connections on 127.0.0.1:``port``."""
        deadline = time.monotonic() + timeout
        while not accepting("127.0.0.1", port):
            if time.monotonic() > deadline:
                raise RuntimeError(f"nothing listens on 127.0.0.1:{port}")
            time.sleep(0.1)

    def startPoolElement(self, script: str, *arguments: str) -> tuple[subprocess.Popen[bytes], int]:
        """Run ``python script *arguments`` (a pool element that calls :func:`serve`); block
        until it registered; return the process and its PE identifier."""
        name = f"pe-{len(self.processes)}"
        process = self.start(name, [sys.executable, script, *arguments])
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and process.poll() is None:
            match = _READY.search(self.output(name))
            if match:
                return process, int(match.group(1), 16)
            time.sleep(0.05)
        raise RuntimeError(f"pool element {script} did not register: {self.errors(name)}")

    def errors(self, name: str) -> str:
        """What the process ``name`` wrote to stderr."""
        return (self.directory / f"{name}.err").read_text(errors="replace")

    @staticmethod
    def kill(process: subprocess.Popen[bytes]) -> None:
        """kill -9."""
        os.kill(process.pid, signal.SIGKILL)
        process.wait()


def serve(element: PoolElement) -> None:
    """Run ``element`` until killed; print ``READY pe=0x...`` once it registered (what
    :meth:`Lab.startPoolElement` waits for)."""
    from twisted.internet import reactor  # noqa: PLC0415

    def ready(_: object) -> None:
        sys.stdout.write(f"READY pe=0x{element.peIdentifier:08x}\n")
        sys.stdout.flush()

    element.startService()
    element.whenRegistered().addCallback(ready)
    reactor.run()
