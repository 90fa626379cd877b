"""A TLS client we did not write, ``openssl s_client``, against a real ``twistd -n enrp``
(RFC 5355 2.1-2.5, 2.15; issue 11 items 8 and 9).

The ASAP listener is the `twistd enrp` default shape: a `tlspsk:` endpoint with a PSK file and
a certificate. A second listener on the same server has ``allowPlainPsk=yes``. Each s_client
run sends the TCP mapping INIT and a registration of its own PE identifier, so the server's
log tells, for that run, what the handshake proved and whether the registration went through.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from twisted.trial.unittest import SynchronousTestCase

from tests.conftest import requireTool
from tests.enrp.support import (
    LOOPBACK,
    OTHER_KEY,
    PE_KEY,
    EnrpProcess,
    freePort,
    readLog,
    waitForPort,
)
from tests.enrp.test_process import registration
from twisted_rserpool.wire.tcpmapping import ChunkEncoder

pytestmark = [
    pytest.mark.slow,
]

#: How long one s_client run or one wait for a log line may take, at most.
LIMIT = 20.0


@dataclass
class Run:
    """What one ``openssl s_client`` run printed."""

    returncode: int
    output: str

    @property
    def cipher(self) -> str | None:
        """The suite s_client reports, or None when no handshake completed."""
        match = re.search(r"^(?:New|Reused), (\S+), Cipher is (\S+)$", self.output, re.M)
        return None if match is None or match.group(2) == "(NONE)" else match.group(2)

    @property
    def version(self) -> str | None:
        match = re.search(r"^(?:New|Reused), (TLSv[\d.]+), Cipher is", self.output, re.M)
        return None if match is None else match.group(1)

    @property
    def reused(self) -> bool:
        """s_client says "Reused" for a TLS 1.3 handshake that used an external PSK."""
        return re.search(r"^Reused, TLSv1\.3, ", self.output, re.M) is not None

    @property
    def sawCertificate(self) -> bool:
        return "Server certificate" in self.output or "BEGIN CERTIFICATE" in self.output


class OpenSslClientTests(SynchronousTestCase):
    """``openssl s_client -psk`` against one ENRP server for the whole class."""

    server: EnrpProcess
    plainPort: int
    directory: Path

    @classmethod
    def setUpClass(cls) -> None:
        requireTool("openssl")
        cls.directory = Path(tempfile.mkdtemp(prefix="rserpool-attack-tls-"))
        cls.plainPort = freePort()
        server = EnrpProcess(cls.directory / "enrp")
        server.prepare()
        plainListener = (
            f"tlspsk:{cls.plainPort}:interface={LOOPBACK}:pskFile={server.pskFile}"
            f":certificate={server.certificate}:privateKey={server.directory / 'server.key'}"
            ":allowPlainPsk=yes"
        )
        server.extra = ("--asap", plainListener)
        cls.server = server
        try:
            server.start()
            assert server.process is not None
            waitForPort(cls.plainPort, server.process, server.log)
        except BaseException:
            server.stop()
            shutil.rmtree(cls.directory, ignore_errors=True)
            raise

    @classmethod
    def tearDownClass(cls) -> None:
        cls.server.stop()
        shutil.rmtree(cls.directory, ignore_errors=True)

    def sClient(
        self, pe: int, *options: str, key: bytes = PE_KEY, identity: str = "pe", port: int = 0
    ) -> Run:
        """Run s_client with the PSK, send INIT and a registration of PE ``pe``, close."""
        encoder = ChunkEncoder()
        request = encoder.send_init() + encoder.send_data(registration(pe).encode(), ppid=11)
        command = [
            "openssl", "s_client", "-connect", f"{LOOPBACK}:{port or self.server.port}",
            "-nocommands", "-psk", key.hex(), "-psk_identity", identity, *options,
        ]  # fmt: skip
        result = subprocess.run(
            command, input=request, capture_output=True, timeout=LIMIT, check=False
        )
        output = (result.stdout + result.stderr).decode("utf-8", "replace")
        return Run(result.returncode, output)

    def waitForLog(self, pattern: str) -> re.Match[str]:
        """Wait (bounded) for a server log line matching ``pattern``."""
        deadline = time.monotonic() + LIMIT
        while True:
            match = re.search(pattern, readLog(self.server.log), re.M)
            if match is not None:
                return match
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"no log line matches {pattern!r}:\n{readLog(self.server.log)}"
                )
            time.sleep(0.05)

    def registered(self, pe: int) -> bool:
        return f"Registered PE 0x{pe:08x}" in readLog(self.server.log)

    def assertServed(self, pe: int, *options: str, port: int = 0) -> Run:
        """An s_client run that authenticates as ``pe`` and whose registration is accepted."""
        run = self.sClient(pe, *options, port=port)
        assert run.returncode == 0, run.output
        self.waitForLog(rf"Registered PE 0x{pe:08x} in pool echo for \S+ \(pe\)")
        return run

    def test_defaultSuitesGetPsk(self) -> None:
        """s_client with its default TLS 1.3 suites (SHA-384 first) gets a PSK session with
        a SHA-256 suite, no certificate, and the server authenticates it as 'pe' and accepts
        its registration (before the fix: an anonymous TLS_AES_256_GCM_SHA384 session and
        cause 10)."""
        run = self.assertServed(0x7001)
        assert run.version == "TLSv1.3"
        assert run.cipher in ("TLS_CHACHA20_POLY1305_SHA256", "TLS_AES_128_GCM_SHA256")
        assert run.reused
        assert not run.sawCertificate
        self.waitForLog(
            rf"ASAP connection \d+ from \S+: TLSv1\.3 {run.cipher}, PSK identity 'pe', "
            "authenticated"
        )

    def test_unbindableSuiteRefused(self) -> None:
        """s_client offering its PSK with TLS_AES_256_GCM_SHA384 only is refused: the
        server logs why, sends no certificate, and does not register; a default client is
        served right after."""
        run = self.sClient(0x7002, "-ciphersuites", "TLS_AES_256_GCM_SHA384")
        assert run.returncode != 0 and run.cipher is None, run.output
        assert not run.sawCertificate
        self.waitForLog(r"TLS-PSK: refused 'pe' from 127\.0\.0\.1:\d+: its key cannot be used")
        self.assertServed(0x7003)
        assert not self.registered(0x7002)

    def test_tls12PlainPskRefused(self) -> None:
        """``-tls1_2 -cipher PSK-AES128-GCM-SHA256`` (no forward secrecy) fails the
        handshake on the default listener, logged with OpenSSL's reason; nothing is
        registered, and an ECDHE-PSK client is served right after."""
        run = self.sClient(0x7004, "-tls1_2", "-cipher", "PSK-AES128-GCM-SHA256")
        assert run.returncode != 0 and run.cipher is None, run.output
        assert "handshake failure" in run.output
        self.waitForLog(
            r"TLS with 127\.0\.0\.1:\d+: sent fatal alert handshake_failure \(no shared cipher\)"
        )
        self.assertServed(0x7005, "-tls1_2", "-cipher", "ECDHE-PSK-CHACHA20-POLY1305")
        assert not self.registered(0x7004)

    def test_tls12EcdhePsk(self) -> None:
        """``-tls1_2 -cipher ECDHE-PSK-CHACHA20-POLY1305`` succeeds and authenticates 'pe'."""
        run = self.assertServed(0x7006, "-tls1_2", "-cipher", "ECDHE-PSK-CHACHA20-POLY1305")
        assert (run.version, run.cipher) == ("TLSv1.2", "ECDHE-PSK-CHACHA20-POLY1305")
        self.waitForLog(
            r"ASAP connection \d+ from \S+: TLSv1\.2 ECDHE-PSK-CHACHA20-POLY1305, "
            "PSK identity 'pe', authenticated"
        )

    def test_tls12PlainPskWithOption(self) -> None:
        """The listener with ``allowPlainPsk=yes`` accepts the same plain PSK client."""
        run = self.assertServed(
            0x7007, "-tls1_2", "-cipher", "PSK-AES128-GCM-SHA256", port=self.plainPort
        )
        assert (run.version, run.cipher) == ("TLSv1.2", "PSK-AES128-GCM-SHA256")

    def test_wrongKeyRefused(self) -> None:
        """Control: s_client with the identity but another key fails (binder), and the
        registration is not accepted."""
        run = self.sClient(0x7008, key=OTHER_KEY)
        assert run.returncode != 0 and run.cipher is None, run.output
        self.waitForLog(
            r"TLS with 127\.0\.0\.1:\d+: sent fatal alert \S+ \(binder does not verify\)"
        )
        self.assertServed(0x7009)
        assert not self.registered(0x7008)
