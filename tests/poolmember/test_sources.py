"""Load sources: the text format, a file, a real command, a local twisted.web server."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest
from twisted.internet import reactor as _reactor
from twisted.internet.defer import TimeoutError as DeferredTimeoutError
from twisted.internet.task import deferLater
from twisted.trial.unittest import TestCase
from twisted.web.resource import Resource
from twisted.web.server import Site

from tests.security.support import temporaryDirectory
from twisted_rserpool.poolmember.sources import (
    MAX_OUTPUT,
    CallableLoad,
    CommandLoad,
    FileLoad,
    LoadError,
    UrlLoad,
    parseLoad,
)

reactor: Any = _reactor


@pytest.mark.parametrize(
    ("text", "value"),
    [(b"17\n", 17.0), (b"  0.25 IKE SAs\nmore\n", 0.25), (b"3e2", 300.0), (b"0", 0.0)],
)
def test_parse(text: bytes, value: float) -> None:
    """The first word is the number; what follows it is ignored."""
    assert parseLoad(text) == value


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        (b"", "empty"),
        (b" \n", "empty"),
        (b"many", "not a number"),
        (b"\xff1", "not a number"),
        (b"-1", "non-negative"),
        (b"nan", "non-negative"),
        (b"inf", "non-negative"),
    ],
)
def test_parse_refuses(text: bytes, reason: str) -> None:
    """Anything but a finite non-negative number is a LoadError saying so."""
    with pytest.raises(LoadError, match=reason):
        parseLoad(text)


def python(code: str) -> list[str]:
    return [sys.executable, "-c", code]


class Pages(Resource):
    isLeaf = True

    def render_GET(self, request: Any) -> bytes:
        if request.path == b"/load":
            return b"42\n"
        if request.path == b"/big":
            return b"1" * (MAX_OUTPUT + 1)
        request.setResponseCode(503)
        return b"down for maintenance"


class SourceTests(TestCase):
    """Each source against the real thing, through the real reactor."""

    async def test_file(self) -> None:
        """A file's number; a missing or unreadable one names the file and the cause."""
        path = temporaryDirectory(self) / "load"
        path.write_text("12 sessions\n")
        assert await FileLoad(path).read() == 12.0
        path.write_text("busy\n")
        with pytest.raises(LoadError, match=f"{path}: the load text starts with b'busy'"):
            await FileLoad(path).read()
        path.unlink()
        with pytest.raises(LoadError, match="No such file or directory"):
            await FileLoad(path).read()

    async def test_command(self) -> None:
        """A command's first word of output; a failing command gives its status and last
        line of stderr; a missing one says so."""
        assert await CommandLoad(python("print(7)"), reactor).read() == 7.0
        failing = python("import sys; print('x', file=sys.stderr); sys.exit(3)")
        with pytest.raises(LoadError, match="exited with status 3: x"):
            await CommandLoad(failing, reactor).read()
        with pytest.raises(LoadError, match="starts with b'nothing'"):
            await CommandLoad(python("print('nothing')"), reactor).read()
        with pytest.raises(LoadError, match="/nonexistent/load"):
            await CommandLoad(["/nonexistent/load"], reactor).read()

    async def test_command_output_limit(self) -> None:
        """A command that floods its output is stopped and refused."""
        flood = python("import sys\nwhile True: sys.stdout.write('1' * 65536)")
        with pytest.raises(LoadError, match="more than 65536 octets"):
            await CommandLoad(flood, reactor).read()

    async def test_command_killed_on_timeout(self) -> None:
        """A timed-out reading kills the command (it does not linger)."""
        pidFile = temporaryDirectory(self) / "pid"
        sleeper = python(
            f"import os, time; open({str(pidFile)!r}, 'w').write(str(os.getpid())); time.sleep(30)"
        )
        reading = CommandLoad(sleeper, reactor).read()
        reading.addTimeout(1.0, reactor)
        with pytest.raises(DeferredTimeoutError):
            await reading
        pid = int(pidFile.read_text())
        for _ in range(100):  # reaped within a few reactor turns
            if not Path(f"/proc/{pid}").exists():
                break
            await deferLater(reactor, 0.02, lambda: None)
        assert not Path(f"/proc/{pid}").exists()

    async def test_url(self) -> None:
        """A 200 body's number; another status or an oversized body is refused."""
        port = reactor.listenTCP(0, Site(Pages()), interface="127.0.0.1")  # type: ignore[no-untyped-call]
        self.addCleanup(port.stopListening)
        base = f"http://127.0.0.1:{port.getHost().port}"
        assert await UrlLoad(f"{base}/load", reactor).read() == 42.0
        with pytest.raises(LoadError, match="HTTP 503"):
            await UrlLoad(f"{base}/status", reactor).read()
        with pytest.raises(LoadError, match="more than 65536 octets is no load"):
            await UrlLoad(f"{base}/big", reactor).read()
        with pytest.raises(LoadError, match=r"127\.0\.0\.1:1/"):
            await UrlLoad("http://127.0.0.1:1/", reactor).read()
        with pytest.raises(ValueError):
            UrlLoad("ftp://example.org/load", reactor)

    async def test_callable(self) -> None:
        """A function's value; its exception becomes a LoadError."""

        def broken() -> float:
            raise RuntimeError("sensor unplugged")

        assert await CallableLoad(lambda: 0.5).read() == 0.5
        with pytest.raises(LoadError, match="RuntimeError: sensor unplugged"):
            await CallableLoad(broken).read()
