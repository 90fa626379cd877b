"""RSerPoolProtocol over real loopback sockets: plain TCP and TLS, on ports the OS picks."""

from __future__ import annotations

import datetime
from typing import ClassVar

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from twisted.internet import reactor
from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred, gatherResults
from twisted.internet.endpoints import (
    TCP4ClientEndpoint,
    TCP4ServerEndpoint,
    wrapClientTLS,
)
from twisted.internet.interfaces import (
    IListeningPort,
    IStreamClientEndpoint,
    IStreamServerEndpoint,
)
from twisted.internet.protocol import connectionDone
from twisted.internet.ssl import CertificateOptions
from twisted.protocols.policies import TimeoutFactory
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.python.failure import Failure
from twisted.trial import unittest

from twisted_rserpool.security.context import INSECURE, SecurityContext
from twisted_rserpool.security.tls import (
    PskClientCreator,
    certificateServerCreator,
    pskServerCreator,
)
from twisted_rserpool.transport import RSerPoolFactory, RSerPoolProtocol, SentData
from twisted_rserpool.wire import asap
from twisted_rserpool.wire.parameters import ErrorCause, OperationError

REQUEST = asap.HandleResolution(b"loopback-pool")
ANSWER = asap.ErrorMessage(OperationError((ErrorCause(0x9),)))


class Tracked(RSerPoolProtocol):
    """Fires ``lost`` when the connection is gone."""

    def __init__(self) -> None:
        super().__init__()
        self.lost: Deferred[None] = Deferred()

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        super().connectionLost(reason)
        self.lost.callback(None)


class Server(Tracked):
    """Answers every ASAP message with ANSWER."""

    instances: ClassVar[list[Server]] = []

    def connectionMade(self) -> None:
        super().connectionMade()
        Server.instances.append(self)

    def asapMessageReceived(self, message: asap.AsapMessage) -> None:
        self.sendAsap(ANSWER)


class Client(Tracked):
    """Sends REQUEST when ready; records what happens in Deferreds."""

    def __init__(self) -> None:
        super().__init__()
        self.readyContext: Deferred[SecurityContext] = Deferred()
        self.answer: Deferred[asap.AsapMessage] = Deferred()
        self.acked: Deferred[SentData] = Deferred()

    def connectionReady(self, securityContext: SecurityContext) -> None:
        self.sent = self.sendAsap(REQUEST)
        self.readyContext.callback(securityContext)

    def asapMessageReceived(self, message: asap.AsapMessage) -> None:
        self.answer.callback(message)

    def dataAcknowledged(self, sent: SentData) -> None:
        self.acked.callback(sent)


def selfSignedKeyAndCertificate() -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    """A fresh P-256 key and a self-signed certificate for localhost, valid for an hour."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .sign(key, hashes.SHA256())
    )
    return key, certificate


def portOf(port: IListeningPort) -> int:
    """The TCP port number the OS picked for ``port``."""
    address = port.getHost()
    assert isinstance(address, IPv4Address)
    return address.port


class LoopbackTests(unittest.TestCase):
    """A client and a server protocol talk over real sockets."""

    timeout = 15  # seconds; a connection that never becomes ready fails fast

    async def exchange(
        self, port: IListeningPort, endpoint: IStreamClientEndpoint
    ) -> SecurityContext:
        """Connect a Client, wait for its request to be answered and ACKed, and return the
        client's security context."""
        self.addCleanup(port.stopListening)
        client = Client()
        Server.instances.clear()
        await endpoint.connect(RSerPoolFactory(lambda: client))
        self.addCleanup(self.closeAll, client)
        context = await client.readyContext
        answer = await client.answer
        acked = await client.acked
        assert answer == ANSWER
        assert acked == client.sent
        assert client.unacknowledged() == ()
        return context

    def closeAll(self, client: Client) -> Deferred[list[None]]:
        """Close the client's connection and wait until both ends saw it go."""
        assert client.transport is not None
        client.transport.loseConnection()
        return gatherResults([client.lost, *(s.lost for s in Server.instances)])

    async def _tcp(self) -> None:
        server: IStreamServerEndpoint = TCP4ServerEndpoint(  # type: ignore[no-untyped-call]
            reactor, 0, interface="127.0.0.1"
        )
        port = await server.listen(RSerPoolFactory(Server))
        client: IStreamClientEndpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", portOf(port))
        context = await self.exchange(port, client)
        assert context is INSECURE

    def test_tcp(self) -> Deferred[None]:
        """Over plain TCP: INITs, a request, its ACK and the answer; the context is INSECURE."""
        return Deferred.fromCoroutine(self._tcp())

    async def _tlsPsk(self) -> None:
        key = bytes(range(32))
        server: IStreamServerEndpoint = TCP4ServerEndpoint(  # type: ignore[no-untyped-call]
            reactor, 0, interface="127.0.0.1"
        )
        serverFactory = TLSMemoryBIOFactory(
            pskServerCreator({"pe-17": key}), False, RSerPoolFactory(Server)
        )
        port = await server.listen(serverFactory)
        client = wrapClientTLS(
            PskClientCreator("pe-17", key),
            TCP4ClientEndpoint(reactor, "127.0.0.1", portOf(port)),
        )
        context = await self.exchange(port, client)
        assert context.tls_version == "TLSv1.3" and context.authenticated
        [serverSide] = Server.instances
        assert serverSide.securityContext is not None
        assert serverSide.securityContext.psk_identity == "pe-17"
        assert serverSide.securityContext.authenticated

    def test_tls_psk(self) -> Deferred[None]:
        """Over TLS-PSK: connectionReady comes after the handshake, and both ends see the
        authenticated PSK identity in their security context."""
        return Deferred.fromCoroutine(self._tlsPsk())

    async def _tlsWrapped(self) -> None:
        key = bytes(range(32))
        server: IStreamServerEndpoint = TCP4ServerEndpoint(  # type: ignore[no-untyped-call]
            reactor, 0, interface="127.0.0.1"
        )
        # TimeoutProtocol sits between TLS and the RSerPool protocol and does not pass
        # handshakeCompleted on.
        wrapped = TimeoutFactory(RSerPoolFactory(Server), timeoutPeriod=60)  # type: ignore[no-untyped-call]
        port = await server.listen(
            TLSMemoryBIOFactory(pskServerCreator({"pe-9": key}), False, wrapped)
        )
        client = wrapClientTLS(
            PskClientCreator("pe-9", key), TCP4ClientEndpoint(reactor, "127.0.0.1", portOf(port))
        )
        await self.exchange(port, client)
        [serverSide] = Server.instances
        assert serverSide.securityContext is not None
        assert serverSide.securityContext.psk_identity == "pe-9"

    def test_tls_behind_a_wrapper(self) -> Deferred[None]:
        """Behind a protocol wrapper that swallows handshakeCompleted, the server still
        becomes ready once OpenSSL reports the handshake finished, with the PSK identity."""
        return Deferred.fromCoroutine(self._tlsWrapped())

    async def _tlsCertificate(self) -> None:
        key, certificate = selfSignedKeyAndCertificate()
        server: IStreamServerEndpoint = TCP4ServerEndpoint(  # type: ignore[no-untyped-call]
            reactor, 0, interface="127.0.0.1"
        )
        serverFactory = TLSMemoryBIOFactory(
            certificateServerCreator(certificate, key), False, RSerPoolFactory(Server)
        )
        port = await server.listen(serverFactory)
        client = wrapClientTLS(
            CertificateOptions(), TCP4ClientEndpoint(reactor, "127.0.0.1", portOf(port))
        )
        context = await self.exchange(port, client)
        assert context.tls_version == "TLSv1.3"
        assert context.encrypted and not context.authenticated  # nothing was verified

    def test_tls_certificate(self) -> Deferred[None]:
        """Over TLS with an unverified server certificate: the connection works and its
        context says encrypted but unauthenticated."""
        return Deferred.fromCoroutine(self._tlsCertificate())
