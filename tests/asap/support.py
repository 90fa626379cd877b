"""Helpers for the ASAP tests: an in-process ENRP server over TLS on a free loopback port,
key and certificate files, simple application protocols, and waiting with a bound."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from twisted.internet import reactor as _reactor
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IListeningPort, IReactorCore
from twisted.internet.protocol import Factory, Protocol, connectionDone
from twisted.internet.task import deferLater
from twisted.python.failure import Failure
from twisted.trial.unittest import TestCase

from tests.security.support import KEY_A, KEY_B, Pki, pskFile, serverEndpoint, temporaryDirectory
from twisted_rserpool.asap import AsapTimers
from twisted_rserpool.enrp.registrar import Registrar, RegistrarConfig
from twisted_rserpool.enrp.service import ENRPServer
from twisted_rserpool.handlespace import Handlespace
from twisted_rserpool.security.authorization import AuthorizationPolicy
from twisted_rserpool.transport.connection import MappingConfig

reactor: IReactorCore = _reactor

#: Timers fast enough for loopback tests.
FAST = AsapTimers(
    t1_enrp_request=1.0,
    t2_registration=2.0,
    t3_deregistration=1.0,
    t5_server_hunt=0.5,
    retran_max=2.0,
    stale_cache_value=0.0,
)
#: Session heartbeats for tests: a silent PE is found within 0.6 s.
FAST_MAPPING = MappingConfig(heartbeat_interval=0.3, heartbeat_timeout=0.3)


@dataclass
class Credentials:
    """Files of one test: a CA, the ENRP server's and the PEs' certificates, PSK files."""

    directory: Path
    pki: Pki
    caFile: str
    serverCertificate: str
    serverKey: str
    peCertificate: str
    peKey: str
    serverPsk: str  # identities "pe" and "enrp-takeover"
    pePsk: str  # identity "pe" only
    takeoverPsk: str  # identity "enrp-takeover" only

    def peClient(self, port: int) -> str:
        """The client string a PE uses to reach the ENRP server on ``port``."""
        return f"tlspsk:host=127.0.0.1:port={port}:identity=pe:pskFile={self.pePsk}"

    def puClient(self, port: int) -> str:
        """The client string a PU uses (certificate verification)."""
        return f"tlspsk:host=127.0.0.1:port={port}:caCertificate={self.caFile}"

    def peListen(self, *, maximumTlsVersion: str = "1.3", psk: bool = True) -> str:
        """A PE's user transport: TLS with its certificate (for PUs) and, with ``psk``,
        the takeover server's key."""
        text = (
            f"tlspsk:0:interface=127.0.0.1:certificate={self.peCertificate}"
            f":privateKey={self.peKey}:maximumTlsVersion={maximumTlsVersion}"
        )
        return text + (f":pskFile={self.takeoverPsk}" if psk else "")


def credentials(testCase: TestCase) -> Credentials:
    """New keys and certificates in a temporary directory."""
    directory = temporaryDirectory(testCase)
    pki = Pki(directory)
    caFile = pki.caFile()
    serverCertificate, serverKey, _ = pki.issue(
        "enrp.test", ipAddresses=["127.0.0.1"], stem="server"
    )
    peCertificate, peKey, _ = pki.issue("pe.test", ipAddresses=["127.0.0.1"], stem="pe")
    return Credentials(
        directory,
        pki,
        caFile,
        serverCertificate,
        serverKey,
        peCertificate,
        peKey,
        pskFile(directory, {"pe": KEY_A, "enrp-takeover": KEY_B}, "server.psk"),
        pskFile(directory, {"pe": KEY_A}, "pe.psk"),
        pskFile(directory, {"enrp-takeover": KEY_B}, "takeover.psk"),
    )


@dataclass
class RunningServer:
    """An in-process ENRP server and its listening port."""

    server: ENRPServer
    port: IListeningPort

    @property
    def portNumber(self) -> int:
        return int(self.port.getHost().port)  # type: ignore[attr-defined]

    async def stop(self) -> None:
        """Stop listening and drop every connection (the server dies)."""
        stopped = self.port.stopListening()
        if stopped is not None:
            await stopped
        for protocol in list(self.server.openConnections):
            if protocol.transport is not None:
                protocol.transport.abortConnection()  # type: ignore[attr-defined]
        await self.server.stopService()


async def startServer(
    testCase: TestCase,
    creds: Credentials,
    *,
    serverIdentifier: int | None = None,
    **config: Any,
) -> RunningServer:
    """An ENRP server over TLS (PSK for PEs, certificate for PUs) on a free port."""
    identifier = serverIdentifier if serverIdentifier is not None else random.randrange(1, 2**32)
    registrar = Registrar(
        RegistrarConfig(identifier, **config),
        Handlespace(),
        AuthorizationPolicy(),
    )
    server = ENRPServer(registrar, reactor)  # type: ignore[arg-type]
    server.startService()
    endpoint = serverEndpoint(
        f"tlspsk:0:interface=127.0.0.1:pskFile={creds.serverPsk}"
        f":certificate={creds.serverCertificate}:privateKey={creds.serverKey}"
    )
    port = await endpoint.listen(server.factory)
    running = RunningServer(server, port)

    async def cleanup() -> None:
        if server.running:
            await running.stop()

    testCase.addCleanup(lambda: Deferred.fromCoroutine(cleanup()))
    return running


async def waitFor(
    condition: Callable[[], object], timeout: float = 10.0, interval: float = 0.02
) -> None:
    """Poll ``condition`` until it is true; fail after ``timeout`` seconds."""
    waited = 0.0
    while not condition():
        if waited >= timeout:
            raise AssertionError(f"condition not met within {timeout} s")
        await deferLater(reactor, interval, lambda: None)  # type: ignore[arg-type]
        waited += interval


def sleep(seconds: float) -> Deferred[None]:
    """A Deferred that fires after ``seconds`` on the real reactor."""
    return deferLater(reactor, seconds, lambda: None)  # type: ignore[arg-type]


class Echo(Protocol):
    """Echoes each message; remembers the cookies echoed to it."""

    def __init__(self) -> None:
        self.received: list[bytes] = []
        self.cookies: list[bytes] = []
        self.lost = False

    def dataReceived(self, data: bytes) -> None:
        self.received.append(data)
        assert self.transport is not None
        self.transport.write(data)

    def cookieEchoReceived(self, cookie: bytes) -> None:
        self.cookies.append(cookie)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.lost = True


class Collector(Protocol):
    """A pool user's application: records what it receives and how it ended."""

    def __init__(self) -> None:
        self.received: list[bytes] = []
        self.cookies: list[bytes] = []
        self.reason: Failure | None = None
        self.ended: Deferred[None] = Deferred()

    def dataReceived(self, data: bytes) -> None:
        self.received.append(data)

    def cookieReceived(self, cookie: bytes) -> None:
        self.cookies.append(cookie)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.reason = reason
        if not self.ended.called:
            self.ended.callback(None)


class Recording(Factory):
    """A factory that remembers the protocols it built."""

    def __init__(self, protocol: Callable[[], Protocol]) -> None:
        self.make = protocol
        self.built: list[Protocol] = []

    def buildProtocol(self, addr: object) -> Protocol:
        protocol = self.make()
        protocol.factory = self
        self.built.append(protocol)
        return protocol


__all__ = [
    "FAST",
    "FAST_MAPPING",
    "Collector",
    "Credentials",
    "Echo",
    "Recording",
    "RunningServer",
    "credentials",
    "reactor",
    "sleep",
    "startServer",
    "waitFor",
]
