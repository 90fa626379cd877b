"""Run a pool element as a process: ``python -m twisted_rserpool._demo.pe --enrp ... --listen ...``.

The demo, the benchmarks and the process tests start pool elements this way (and kill them
with SIGKILL). Three applications are built in:

- ``echo``: answers every message with the same bytes.
- ``mark``: answers every message with its bytes and `` resent`` or `` fresh``: whether
  the pool user had sent it to a pool element that failed before acknowledging it.
- ``counter``: answers ``incr`` with the session's count, and after each answer sends an
  ASAP_COOKIE holding the count, signed with HMAC-SHA256 under ``--cookie-key`` (a key the
  pool's elements share, RFC 5355 2.16); a pool element that receives the cookie echoed
  after a failover verifies it and continues the count.

The process prints one line ``READY pe=0x... port=N`` on stdout once registered.
"""

from __future__ import annotations

import hashlib
import hmac
import struct
import sys
from collections.abc import Sequence
from typing import Any, ClassVar

from twisted.internet.protocol import Factory, Protocol
from twisted.logger import Logger
from twisted.python import usage

from twisted_rserpool._demo.support import ProgramOptions
from twisted_rserpool.asap.delivery import ReceivedMessage
from twisted_rserpool.asap.timers import AsapTimers
from twisted_rserpool.security.authorization import AuthorizationPolicy, Grant, Role
from twisted_rserpool.transport.connection import MappingConfig
from twisted_rserpool.wire.parameters import LeastUsedPolicy, RoundRobinPolicy

__all__ = [
    "CounterProtocol",
    "EchoProtocol",
    "MarkingEchoProtocol",
    "Options",
    "main",
    "signCookie",
    "verifyCookie",
]

log = Logger()

_COUNT = struct.Struct("!Q")


def signCookie(key: bytes, count: int) -> bytes:
    """A cookie holding ``count``, signed with HMAC-SHA256 under ``key``."""
    body = _COUNT.pack(count)
    return body + hmac.new(key, body, hashlib.sha256).digest()


def verifyCookie(key: bytes, cookie: bytes) -> int | None:
    """The count a cookie holds, or ``None`` if its signature is wrong."""
    body, tag = cookie[: _COUNT.size], cookie[_COUNT.size :]
    if len(body) != _COUNT.size or not hmac.compare_digest(
        tag, hmac.new(key, body, hashlib.sha256).digest()
    ):
        return None
    (count,) = _COUNT.unpack(body)
    return int(count)


class EchoProtocol(Protocol):
    """Answers every message with itself."""

    def dataReceived(self, data: bytes) -> None:
        assert self.transport is not None
        self.transport.write(data)


class MarkingEchoProtocol(Protocol):
    """Answers every message with itself and whether it was resent after a failover."""

    def messageReceived(self, message: ReceivedMessage) -> None:
        assert self.transport is not None
        self.transport.write(message.data + (b" resent" if message.resent else b" fresh"))


class CounterProtocol(Protocol):
    """Counts ``incr`` messages per session; the count survives failovers in a signed cookie."""

    def __init__(self, key: bytes, name: str = "") -> None:
        self.key = key
        self.name = name
        self.count = 0

    def cookieEchoReceived(self, cookie: bytes) -> None:
        count = verifyCookie(self.key, cookie)
        if count is None:
            log.warn("Cookie with a bad signature: starting from zero")
            return
        self.count = count
        log.info("Session resumed from a cookie at count {count}", count=count)

    def dataReceived(self, data: bytes) -> None:
        transport = self.transport
        assert transport is not None
        if data == b"incr":
            self.count += 1
            transport.write(f"{self.count} {self.name}".strip().encode())
            transport.sendCookie(signCookie(self.key, self.count))  # type: ignore[attr-defined]
        else:
            transport.write(b"? " + data)


APPLICATIONS = ("echo", "mark", "counter")


class Options(ProgramOptions):
    """Run a pool element until killed; prints READY pe=0x... port=N once registered."""

    synopsis = "python -m twisted_rserpool._demo.pe --enrp ENDPOINT --listen ENDPOINT [options]"
    optFlags: ClassVar[list[list[str | None]]] = [["verbose", None, "Log to stderr."]]
    optParameters: ClassVar[list[list[Any]]] = [
        ["pool", None, "echo", "The pool handle."],
        ["listen", None, None, "Server endpoint string of the user transport."],
        ["app", None, "echo", f"The application: {', '.join(APPLICATIONS)}."],
        ["name", None, "", "A name the counter puts in its answers."],
        ["cookie-key", None, "00" * 32, "Hex HMAC-SHA256 key of the counter's cookies."],
        ["load", None, None, "Register with the Least Used policy and this load.", int],
        ["life", None, 30, "Registration life in seconds.", int],
        ["heartbeat", None, 1.0, "Session heartbeat interval in seconds.", float],
    ]

    def __init__(self) -> None:
        super().__init__()
        self["enrp"] = []
        self["enrp-server-identity"] = []

    def opt_enrp(self, endpoint: str) -> None:
        """Client endpoint string of an ENRP server (repeatable)."""
        self["enrp"].append(endpoint)

    def opt_enrp_server_identity(self, identity: str) -> None:
        """A PSK identity allowed to take this PE over (enrp-server role; repeatable)."""
        self["enrp-server-identity"].append(identity)

    def postOptions(self) -> None:
        if not self["enrp"]:
            raise usage.UsageError("--enrp is required")
        if self["listen"] is None:
            raise usage.UsageError("--listen is required")
        if self["app"] not in APPLICATIONS:
            raise usage.UsageError(f"--app: {self['app']!r} is not one of {APPLICATIONS}")
        try:
            self["key"] = bytes.fromhex(self["cookie-key"])
        except ValueError:
            raise usage.UsageError("--cookie-key: not hexadecimal") from None


def main(argv: Sequence[str] | None = None) -> int:
    """Run a pool element until killed."""
    arguments = Options()
    if not arguments.parseCommandLine(argv):
        return 2

    from twisted.internet import reactor  # noqa: PLC0415

    from twisted_rserpool.asap.element import PoolElement  # noqa: PLC0415

    if arguments["verbose"]:
        from twisted.logger import globalLogBeginner, textFileLogObserver  # noqa: PLC0415

        globalLogBeginner.beginLoggingTo([textFileLogObserver(sys.stderr)])

    factory: Factory
    if arguments["app"] == "echo":
        factory = Factory.forProtocol(EchoProtocol)
    elif arguments["app"] == "mark":
        factory = Factory.forProtocol(MarkingEchoProtocol)
    else:
        factory = Factory.forProtocol(lambda: CounterProtocol(arguments["key"], arguments["name"]))
    load = arguments["load"]
    policy = LeastUsedPolicy(load) if load is not None else RoundRobinPolicy()
    grants = {
        identity: Grant(frozenset({Role.ENRP_SERVER}))
        for identity in arguments["enrp-server-identity"]
    }
    element = PoolElement(
        arguments["pool"].encode(),
        factory,
        arguments["enrp"],
        arguments["listen"],
        policy=policy,
        registrationLife=arguments["life"],
        timers=AsapTimers(t2_registration=5.0, t5_server_hunt=1.0, retran_max=5.0),
        userMappingConfig=MappingConfig(
            heartbeat_interval=arguments["heartbeat"],
            heartbeat_timeout=arguments["heartbeat"] * 2,
        ),
        authorizationPolicy=AuthorizationPolicy(grants, default=None),
    )

    def announce(_: object) -> None:
        assert element.port is not None
        port = element.port.getHost().port  # type: ignore[attr-defined]
        sys.stdout.write(f"READY pe=0x{element.peIdentifier:08x} port={port}\n")
        sys.stdout.flush()

    def failed(failure: object) -> None:
        sys.stderr.write(f"pool element failed: {failure}\n")
        reactor.stop()

    element.startService()
    element.whenRegistered().addCallbacks(announce, failed)
    reactor.addSystemEventTrigger("before", "shutdown", element.stopService)
    reactor.run()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
