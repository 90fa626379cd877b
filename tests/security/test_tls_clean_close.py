"""A pool element or pool user that stops leaves no TLS warning at the ENRP server: it
closes with close_notify, and a peer that closes TCP without one after the handshake is a
debug line at the server, while a failed handshake is still a warning."""

from __future__ import annotations

from ipaddress import ip_address

from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ClientEndpoint, clientFromString
from twisted.internet.interfaces import IHandshakeListener
from twisted.internet.protocol import Factory, Protocol
from twisted.logger import LogLevel, capturedLogs, formatEvent
from twisted.trial.unittest import TestCase
from zope.interface import implementer

from tests.asap.support import FAST, credentials, reactor, sleep, startServer, waitFor
from twisted_rserpool.asap import PoolElement, PoolUser
from twisted_rserpool.wire.parameters import TcpTransport


@implementer(IHandshakeListener)
class Handshaking(Protocol):
    """Fires ``handshake`` when its TLS handshake completed."""

    def __init__(self, handshake: Deferred[None]) -> None:
        self.handshake = handshake

    def handshakeCompleted(self) -> None:
        self.handshake.callback(None)


class CleanCloseTests(TestCase):
    timeout = 20

    def setUp(self) -> None:
        self.events = self.enterContext(capturedLogs())

    def lines(self, level: LogLevel, text: str) -> list[str]:
        """The logged lines at ``level`` or above that mention ``text``."""
        found = [
            formatEvent(e)
            for e in self.events
            if e.get("log_level") is not None and e["log_level"] >= level
        ]
        return [line for line in found if text in line]

    async def test_pool_element_and_pool_user_stop(self) -> None:
        """A PE and a PU over TLS-PSK and certificate TLS stop: at the server no warning
        mentions decode_error, and no connection ended without close_notify."""
        creds = credentials(self)
        running = await startServer(self, creds)
        element = PoolElement(
            b"echo",
            None,
            [creds.peClient(running.portNumber)],
            None,
            userTransport=TcpTransport(7, ip_address("127.0.0.1")),
            timers=FAST,
        )
        element.startService()
        await element.whenRegistered()
        user = PoolUser([creds.puClient(running.portNumber)], timers=FAST, reactor=reactor)
        user.startService()
        (resolved,) = await user.resolve(b"echo")
        assert resolved.pe_identifier == element.peIdentifier
        await element.stopService()
        await user.stopService()
        await waitFor(lambda: not running.server.openConnections)
        await sleep(0.1)
        assert self.lines(LogLevel.warn, "decode_error") == []
        assert self.lines(LogLevel.debug, "without close_notify") == []

    async def test_tcp_close_without_close_notify(self) -> None:
        """A client that closes TCP after the handshake without close_notify (as many do)
        is a debug line, not a warning; one that closes during the handshake is a warning."""
        creds = credentials(self)
        running = await startServer(self, creds)
        handshake: Deferred[None] = Deferred()
        client = Handshaking(handshake)
        tls = clientFromString(reactor, creds.peClient(running.portNumber))  # type: ignore[no-untyped-call]
        await tls.connect(Factory.forProtocol(lambda: client))
        await handshake
        # Until the server has read our Finished, a close is one during the handshake.
        await waitFor(
            lambda: any(
                p.transport.getHandle().get_peer_finished() is not None  # type: ignore[union-attr]
                for p in running.server.openConnections
            )
        )
        client.transport.abortConnection()  # type: ignore[union-attr]  # TCP close, no close_notify
        await waitFor(lambda: self.lines(LogLevel.debug, "without close_notify"))
        assert self.lines(LogLevel.warn, "decode_error") == []
        assert self.lines(LogLevel.warn, "without close_notify") == []

        # A ClientHello cut short: the handshake never completes.
        await self.sendRaw(running.portNumber, bytes.fromhex("16030100"))
        await waitFor(lambda: self.lines(LogLevel.warn, "during the handshake"))
        assert self.lines(LogLevel.warn, "decode_error") == []

        # A real decode error (a ClientHello that ends inside its cipher suites) still warns.
        body = bytes.fromhex("0303") + bytes(32) + bytes.fromhex("0000")
        hello = bytes([1]) + len(body).to_bytes(3, "big") + body
        record = bytes.fromhex("160301") + len(hello).to_bytes(2, "big") + hello
        await self.sendRaw(running.portNumber, record)
        await waitFor(lambda: self.lines(LogLevel.warn, "sent fatal alert decode_error"))

    async def sendRaw(self, port: int, data: bytes) -> None:
        """Connect over TCP, send ``data``, close our side."""
        endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", port)
        protocol = await endpoint.connect(Factory.forProtocol(Protocol))
        assert isinstance(protocol, Protocol) and protocol.transport is not None
        protocol.transport.write(data)
        protocol.transport.loseConnection()
