"""The log file of a real ``twistd -n enrp``: every line, twistd's format, rotation.

One server writes through twisted-rserpool's batched observer, a second one (same
options, same requests) through Twisted's own ``textFileLogObserver`` given as
``--logger``; their logs must hold the same lines. A third runs with ``--log-level info``
and is killed with SIGKILL right after its last answer.
"""

from __future__ import annotations

import re
import signal
from dataclasses import dataclass
from pathlib import Path

import pytest
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.task import deferLater
from twisted.trial.unittest import TestCase

from tests.enrp.support import TWISTD, AsapClient, EnrpProcess, connectClient
from tests.enrp.test_process import registration
from twisted_rserpool.wire import asap

pytestmark = pytest.mark.slow

#: Registrations per run.
COUNT = 40

#: Twisted's own file observer, for --logger (its file in the working directory).
REFERENCE_LOGGER = """
from twisted.logger import textFileLogObserver

def observer():
    return textFileLogObserver(open("reference.log", "a"))
"""


@dataclass
class Server(EnrpProcess):
    """``twistd -n enrp`` with twistd options of its own and no fast keep-alives (so
    that two runs write the same lines)."""

    twistdOptions: tuple[str, ...] = ()

    def enrpOptions(self) -> list[str]:
        options = super().enrpOptions()
        at = options.index("--keep-alive-interval")
        del options[at : at + 4]
        return options

    def command(self) -> list[str]:
        return [
            TWISTD, "-n", "--pidfile=", f"--logfile={self.log}", *self.twistdOptions,
            "enrp", *self.enrpOptions(),
        ]  # fmt: skip

    async def terminate(self, signum: int) -> None:
        assert self.process is not None
        self.process.send_signal(signum)
        for _ in range(200):
            if self.process.poll() is not None:
                return
            await sleep(0.05)
        raise AssertionError("twistd did not stop")


def sleep(seconds: float) -> Deferred[None]:
    return deferLater(reactor, seconds, lambda: None)


def normalized(text: str, server: Server) -> list[str]:
    """The lines without what differs between two servers: time, ports, directory."""
    text = re.sub(r"^\S+T\S+ ", "", text, flags=re.M)
    text = text.replace(str(server.directory), "DIR")
    text = re.sub(rf"\b{server.port}\b", "PORT", text)
    text = re.sub(rf"\b{server.adminPort}\b", "ADMIN", text)
    text = re.sub(r"127\.0\.0\.1:\d+", "127.0.0.1:N", text)
    return text.splitlines()


class LogFileTests(TestCase):
    timeout = 60

    def server(self, *twistdOptions: str, extra: tuple[str, ...] = ()) -> Server:
        server = Server(
            Path(self.mktemp()).resolve(),  # type: ignore[no-untyped-call]
            extra=extra,
            twistdOptions=twistdOptions,
        )
        server.directory.mkdir(parents=True)
        (server.directory / "reference_logger.py").write_text(REFERENCE_LOGGER)
        server.environment["PYTHONPATH"] = str(server.directory)
        server.start()
        self.addCleanup(server.stop)
        return server

    async def exercise(self, server: Server, rotateAt: int | None = None) -> None:
        """Registrations (one re-registration unchanged, a debug line), a deregistration
        and a resolution; SIGUSR1 before registration ``rotateAt``."""
        pe = await connectClient(server.peEndpoint())
        self.addCleanup(pe.close)
        for number in range(COUNT):
            if number == rotateAt:
                assert server.process is not None
                server.process.send_signal(signal.SIGUSR1)
                for _ in range(100):
                    if server.log.with_name(server.log.name + ".1").exists():
                        break
                    await sleep(0.05)
            answer = await pe.request(registration(0x1001 + number))
            assert answer == asap.RegistrationResponse(b"echo", 0x1001 + number)
        await pe.request(registration(0x1001))  # unchanged: a debug line
        removal = await pe.request(asap.Deregistration(b"echo", 0x1002))
        assert isinstance(removal, asap.DeregistrationResponse) and removal.error is None
        pu: AsapClient = await connectClient(server.puEndpoint())
        self.addCleanup(pu.close)
        answer = await pu.request(asap.HandleResolution(b"echo"))
        assert isinstance(answer, asap.HandleResolutionResponse)

    async def test_same_lines_as_twistds_observer(self) -> None:
        """Every line twistd's own observer writes, ours writes the same, up to the last
        ones after SIGTERM; SIGUSR1 rotates the file between two lines."""
        ours = self.server()
        reference = self.server("--logger", "reference_logger.observer")
        await self.exercise(ours, rotateAt=COUNT // 2)
        await self.exercise(reference)
        await ours.terminate(signal.SIGTERM)
        await reference.terminate(signal.SIGTERM)

        rotated = ours.log.with_name(ours.log.name + ".1").read_text()
        current = ours.log.read_text()
        assert f"Registered PE 0x{0x1000 + COUNT // 2:08x} " in rotated
        assert f"Registered PE 0x{0x1001 + COUNT // 2:08x} " in current
        assert f"PE 0x{0x1001 + COUNT // 2:08x} " not in rotated
        lines = normalized(rotated + current, ours)
        expected = normalized((reference.directory / "reference.log").read_text(), reference)
        assert sorted(lines) == sorted(expected)
        assert len([line for line in lines if "] Registered PE" in line]) == COUNT
        assert any(line.endswith(" unchanged") and "#debug]" in line for line in lines)
        # The last lines, in the order twistd writes them at its end.
        assert lines[-2:] == [
            "[twisted.internet.base#info] Main loop terminated.",
            "[twisted.scripts._twistd_unix.UnixAppLogger#info] Server Shut Down.",
        ]
        assert not (reference.directory / "enrp.log").exists()  # --logger wins

    async def test_sigkill_after_an_answer_loses_nothing(self) -> None:
        """The lines of a reactor turn are written before the next poll: a server killed
        (SIGKILL) as soon as its last answer arrived has written the lines before it.
        --log-level info drops the debug lines."""
        server = self.server(extra=("--log-level", "info"))
        await self.exercise(server)
        await server.terminate(signal.SIGKILL)
        text = server.log.read_text()
        for number in range(COUNT):
            assert f"Registered PE 0x{0x1001 + number:08x} in pool echo" in text
        assert "Deregistered PE 0x00001002 of pool echo" in text
        assert "#debug]" not in text
        assert "unchanged" not in text
