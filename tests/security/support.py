"""Helpers for the TLS tests: keys, a test CA, recording protocols, handshakes over loopback,
and a wrapper that tampers with the TLS records a client sends."""

from __future__ import annotations

import contextlib
import datetime
import ipaddress
import shutil
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
)
from cryptography.x509.oid import NameOID
from OpenSSL.SSL import Connection as SSLConnection
from OpenSSL.SSL import Error as SSLError
from OpenSSL.SSL import WantReadError, ZeroReturnError
from twisted.internet import reactor as _reactor
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import clientFromString, serverFromString
from twisted.internet.interfaces import (
    IHandshakeListener,
    IListeningPort,
    IProtocol,
    IProtocolFactory,
    IReactorCore,
    IStreamClientEndpoint,
    IStreamServerEndpoint,
)
from twisted.internet.protocol import Factory, Protocol, connectionDone
from twisted.protocols.policies import ProtocolWrapper, WrappingFactory
from twisted.python.failure import Failure
from twisted.trial.unittest import TestCase
from zope.interface import implementer

from twisted_rserpool.security.context import SecurityContext
from twisted_rserpool.security.psk import writePskFile
from twisted_rserpool.security.tls import securityContextOf

reactor: IReactorCore = _reactor


def serverEndpoint(description: str) -> IStreamServerEndpoint:
    """``serverFromString`` on the real reactor."""
    return serverFromString(reactor, description)  # type: ignore[no-untyped-call,no-any-return]


def clientEndpoint(description: str) -> IStreamClientEndpoint:
    """``clientFromString`` on the real reactor."""
    return clientFromString(reactor, description)  # type: ignore[no-untyped-call,no-any-return]


def temporaryDirectory(testCase: TestCase) -> Path:
    """A new directory removed when ``testCase`` ends."""
    directory = Path(tempfile.mkdtemp(prefix="rserpool-tls-"))
    testCase.addCleanup(shutil.rmtree, directory, True)
    return directory


KEY_A = bytes.fromhex("00112233445566778899aabbccddeeff" * 2)
KEY_B = bytes.fromhex("ffeeddccbbaa99887766554433221100" * 2)


def pskFile(directory: Path, keys: dict[str, bytes], name: str = "keys.psk") -> str:
    """Write a PSK file (mode 0600) in ``directory`` and return its path."""
    path = directory / name
    writePskFile(path, keys)
    return str(path)


@dataclass
class Pki:
    """A throwaway CA and the files of certificates it issued."""

    directory: Path
    caKey: ec.EllipticCurvePrivateKey = field(
        default_factory=lambda: ec.generate_private_key(ec.SECP256R1())
    )
    caName: str = "twisted-rserpool test CA"

    def __post_init__(self) -> None:
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, self.caName)])
        now = datetime.datetime.now(datetime.UTC)
        self.caCertificate = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self.caKey.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(
                x509.SubjectKeyIdentifier.from_public_key(self.caKey.public_key()), critical=False
            )
            .sign(self.caKey, hashes.SHA256())
        )

    def caFile(self, name: str = "ca.pem") -> str:
        """Write the CA certificate to ``name`` and return its path."""
        path = self.directory / name
        path.write_bytes(self.caCertificate.public_bytes(Encoding.PEM))
        return str(path)

    def issue(
        self,
        commonName: str,
        dnsNames: Sequence[str] = (),
        ipAddresses: Sequence[str] = (),
        stem: str = "server",
    ) -> tuple[str, str, x509.Certificate]:
        """Issue a server certificate; return the certificate file, key file and certificate."""
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC)
        names: list[x509.GeneralName] = [x509.DNSName(n) for n in dnsNames]
        names += [x509.IPAddress(ipaddress.ip_address(a)) for a in ipAddresses]
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, commonName)]))
            .issuer_name(self.caCertificate.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
            )
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.caKey.public_key()),
                critical=False,
            )
        )
        if names:
            builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
        certificate = builder.sign(self.caKey, hashes.SHA256())
        certificateFile = self.directory / f"{stem}.pem"
        keyFile = self.directory / f"{stem}.key"
        certificateFile.write_bytes(certificate.public_bytes(Encoding.PEM))
        keyFile.write_bytes(key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()))
        keyFile.chmod(0o600)
        return str(certificateFile), str(keyFile), certificate


@implementer(IHandshakeListener)
class Recorder(Protocol):
    """Records the security context at the handshake, the bytes received, and the loss."""

    def __init__(self, greeting: bytes | None = None, closeAfterHandshake: bool = False) -> None:
        self.greeting = greeting
        self.closeAfterHandshake = closeAfterHandshake
        self.context: SecurityContext | None = None
        self.received = b""
        self.handshook: Deferred[SecurityContext] = Deferred()
        self.lost: Deferred[None] = Deferred()
        self.reason: Failure | None = None

    def send(self, data: bytes) -> None:
        """Write ``data`` to the peer."""
        assert self.transport is not None
        self.transport.write(data)

    def close(self) -> None:
        """Close the connection (after a TLS close_notify)."""
        assert self.transport is not None
        self.transport.loseConnection()

    def handshakeCompleted(self) -> None:
        self.context = securityContextOf(self.transport)
        if self.greeting is not None:
            self.send(self.greeting)
        if self.closeAfterHandshake:
            self.close()
        self.handshook.callback(self.context)

    def dataReceived(self, data: bytes) -> None:
        self.received += data

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.reason = reason
        if not self.handshook.called:
            self.handshook.errback(reason)
        self.lost.callback(None)


class RecorderFactory(Factory):
    """Makes :class:`Recorder` protocols and remembers each one."""

    def __init__(self, **options: object) -> None:
        self.options = options
        self.protocols: list[Recorder] = []
        self.first: Deferred[Recorder] = Deferred()

    def buildProtocol(self, addr: object) -> Recorder:
        protocol = Recorder(**self.options)  # type: ignore[arg-type]
        protocol.factory = self
        self.protocols.append(protocol)
        if not self.first.called:
            self.first.callback(protocol)
        return protocol


@dataclass
class Outcome:
    """What each side of one connection saw."""

    server: Recorder | None
    client: Recorder

    @property
    def serverContext(self) -> SecurityContext | None:
        return None if self.server is None else self.server.context

    @property
    def clientContext(self) -> SecurityContext | None:
        return self.client.context


def ignore(result: object) -> None:
    """Swallow a result or failure (the outcome is inspected instead)."""


async def listen(endpoint: IStreamServerEndpoint, factory: IProtocolFactory) -> IListeningPort:
    """Listen and return the port (its ``getHost().port`` was picked by the system)."""
    return await endpoint.listen(factory)


async def connectOnce(
    serverFactory: RecorderFactory,
    clientEndpoint: IStreamClientEndpoint,
    clientProtocol: Recorder | None = None,
) -> Outcome:
    """Connect once, let the handshake finish or fail, wait for both sides to close."""
    client = clientProtocol if clientProtocol is not None else Recorder(closeAfterHandshake=True)
    client.handshook.addErrback(ignore)
    await clientEndpoint.connect(Factory.forProtocol(lambda: client))
    await client.lost
    before = len(serverFactory.protocols)
    server = serverFactory.protocols[-1] if before else None
    if server is not None:
        server.handshook.addErrback(ignore)
        await server.lost
    return Outcome(server, client)


def portNumber(port: IListeningPort) -> int:
    """The TCP port number a listening port got."""
    return int(port.getHost().port)  # type: ignore[attr-defined]


# Tampering with TLS records -------------------------------------------------------------

APPLICATION_DATA = 23


def splitRecords(buffer: bytearray) -> list[bytes]:
    """Remove and return the complete TLS records at the start of ``buffer``."""
    records = []
    while len(buffer) >= 5:
        length = int.from_bytes(buffer[3:5], "big")
        if len(buffer) < 5 + length:
            break
        records.append(bytes(buffer[: 5 + length]))
        del buffer[: 5 + length]
    return records


class RecordTamperer(ProtocolWrapper):
    """Sits between TLS and TCP on the client and passes every outgoing TLS record
    through ``factory.tamper`` (record -> records to send)."""

    def __init__(self, factory: TamperingFactory, wrappedProtocol: IProtocol) -> None:
        super().__init__(factory, wrappedProtocol)
        self.tamper = factory.tamper
        self._outgoing = bytearray()

    def write(self, data: bytes) -> None:
        assert self.transport is not None
        self._outgoing += data
        for record in splitRecords(self._outgoing):
            for out in self.tamper(record):
                self.transport.write(out)

    def writeSequence(self, data: Sequence[bytes]) -> None:
        self.write(b"".join(data))


class TamperingFactory(WrappingFactory[RecordTamperer]):
    """Wraps each protocol of ``wrappedFactory`` in a :class:`RecordTamperer`."""

    protocol = RecordTamperer

    def __init__(
        self, wrappedFactory: IProtocolFactory, tamper: Callable[[bytes], list[bytes]]
    ) -> None:
        super().__init__(wrappedFactory)  # type: ignore[no-untyped-call]
        self.tamper = tamper


@implementer(IStreamClientEndpoint)
class TamperingEndpoint:
    """A client endpoint whose outgoing TLS records pass through ``tamper``."""

    def __init__(
        self, wrapped: IStreamClientEndpoint, tamper: Callable[[bytes], list[bytes]]
    ) -> None:
        self.wrapped = wrapped
        self.tamper = tamper

    async def _connect(self, factory: IProtocolFactory) -> IProtocol:
        wrapper = await self.wrapped.connect(TamperingFactory(factory, self.tamper))
        assert isinstance(wrapper, RecordTamperer)
        return wrapper.wrappedProtocol

    def connect(self, protocolFactory: IProtocolFactory) -> Deferred[IProtocol]:
        return Deferred.fromCoroutine(self._connect(protocolFactory))


# Handshakes in memory -------------------------------------------------------------------


def pumpHandshake(client: SSLConnection, server: SSLConnection) -> str | None:
    """Run a handshake between two memory-BIO connections; return the first error, if any."""
    for _ in range(20):
        for connection in (client, server):
            try:
                connection.do_handshake()
            except WantReadError:
                pass
            except SSLError as e:
                return str(e)
            try:
                connection.recv(1)
            except (WantReadError, ZeroReturnError):
                pass
            except SSLError as e:
                return str(e)
        for source, sink in ((client, server), (server, client)):
            with contextlib.suppress(WantReadError):
                sink.bio_write(source.bio_read(65536))
    return None
