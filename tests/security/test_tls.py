"""Real TLS handshakes over loopback: pre-shared keys (TLS 1.3 and 1.2), certificates for
pool users, what each side's SecurityContext says, and tampered records (RFC 5355 2.8,
2.10)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, load_pem_private_key
from OpenSSL.SSL import Connection, Session, WantReadError
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ClientEndpoint, wrapClientTLS
from twisted.internet.interfaces import IListeningPort, IStreamClientEndpoint
from twisted.internet.protocol import Factory
from twisted.internet.ssl import Certificate, optionsForClientTLS
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import TestCase

from tests.security.support import (
    APPLICATION_DATA,
    KEY_A,
    KEY_B,
    Outcome,
    Pki,
    Recorder,
    RecorderFactory,
    TamperingEndpoint,
    clientEndpoint,
    connectOnce,
    ignore,
    portNumber,
    pskFile,
    pumpHandshake,
    reactor,
    serverEndpoint,
    temporaryDirectory,
)
from twisted_rserpool.endpoints import TlsClientEndpoint, TlsServerEndpoint
from twisted_rserpool.security.certificates import createSelfSignedCertificate
from twisted_rserpool.security.context import INSECURE
from twisted_rserpool.security.tls import (
    TLS12_PSK_CIPHERS,
    TLS13_PSK_CIPHERSUITES,
    PskClientCreator,
    TlsServerCreator,
    TlsVersion,
    securityContextOf,
    securityContextOfConnection,
)

LOOPBACK = "127.0.0.1"


class TlsTestCase(TestCase):
    """Base: a temporary directory, listeners stopped at the end of each test."""

    timeout = 15

    def setUp(self) -> None:
        self.directory = temporaryDirectory(self)

    async def serve(
        self, description: str, **factoryOptions: object
    ) -> tuple[int, RecorderFactory]:
        """Listen on ``description`` (port 0, loopback) and return the port and factory."""
        factory = RecorderFactory(**factoryOptions)
        port: IListeningPort = await serverEndpoint(description).listen(factory)
        self.addCleanup(port.stopListening)
        return portNumber(port), factory

    def psk(self, keys: Mapping[str, bytes], name: str) -> str:
        return pskFile(self.directory, dict(keys), name)

    async def pskPair(
        self,
        serverKeys: Mapping[str, bytes],
        clientIdentity: str,
        clientKey: bytes,
        serverOptions: str = "",
        clientOptions: str = "",
    ) -> Outcome:
        serverFile = self.psk(serverKeys, "server.psk")
        clientFile = self.psk({clientIdentity: clientKey}, "client.psk")
        port, factory = await self.serve(
            f"tlspsk:0:interface={LOOPBACK}:pskFile={serverFile}{serverOptions}"
        )
        client = clientEndpoint(
            f"tlspsk:host={LOOPBACK}:port={port}:identity={clientIdentity}"
            f":pskFile={clientFile}{clientOptions}",
        )
        return await connectOnce(factory, client)


def _connectOnce(factory: RecorderFactory, client: IStreamClientEndpoint) -> Deferred[Outcome]:
    return Deferred.fromCoroutine(connectOnce(factory, client))


class PskHandshakeTests(TlsTestCase):
    """TLS-PSK between the `tlspsk:` endpoints."""

    async def test_tls13(self) -> None:
        """By default both sides negotiate TLS 1.3 with a SHA-256 suite, and each side's
        context is authenticated with the client's identity."""
        outcome = await self.pskPair({"pe-17": KEY_A}, "pe-17", KEY_A)
        for context in (outcome.serverContext, outcome.clientContext):
            assert context is not None
            assert context.authenticated
            assert context.tls_version == "TLSv1.3"
            assert context.cipher in TLS13_PSK_CIPHERSUITES.split(":")
            assert context.psk_identity == "pe-17"
            assert context.certificate_subject is None
            assert context.identity == "pe-17"

    async def test_tls12OnlyServer(self) -> None:
        """A server limited to TLS 1.2 negotiates the forward-secret ECDHE-PSK suite."""
        outcome = await self.pskPair(
            {"pe-17": KEY_A}, "pe-17", KEY_A, serverOptions=":maximumTlsVersion=1.2"
        )
        for context in (outcome.serverContext, outcome.clientContext):
            assert context is not None
            assert context.authenticated
            assert context.tls_version == "TLSv1.2"
            assert context.cipher == "ECDHE-PSK-CHACHA20-POLY1305"
            assert context.psk_identity == "pe-17"

    async def test_tls12OnlyClient(self) -> None:
        """A client limited to TLS 1.2 gets TLS 1.2 from a default server."""
        outcome = await self.pskPair(
            {"pe-17": KEY_A}, "pe-17", KEY_A, clientOptions=":maximumTlsVersion=1.2"
        )
        assert outcome.serverContext is not None
        assert outcome.serverContext.tls_version == "TLSv1.2"
        assert outcome.serverContext.cipher in TLS12_PSK_CIPHERS.split(":")
        assert outcome.serverContext.psk_identity == "pe-17"

    async def test_tls13OnlyServerRefusesTls12Client(self) -> None:
        """A TLS 1.3-only server and a TLS 1.2-only client do not connect."""
        outcome = await self.pskPair(
            {"pe-17": KEY_A},
            "pe-17",
            KEY_A,
            serverOptions=":minimumTlsVersion=1.3",
            clientOptions=":maximumTlsVersion=1.2",
        )
        assert outcome.clientContext is None
        assert outcome.serverContext is None

    async def test_serverReportsWhichIdentity(self) -> None:
        """With several identities in the file, the server's context names the one the
        client used."""
        keys = {"pe-17": KEY_A, "pe-18": KEY_B, "enrp-1": bytes(range(16))}
        outcome = await self.pskPair(keys, "pe-18", KEY_B)
        assert outcome.serverContext is not None
        assert outcome.serverContext.psk_identity == "pe-18"
        assert outcome.serverContext.authenticated

    async def test_wrongKeyTls13(self) -> None:
        """A client with the right identity but a wrong key fails the TLS 1.3 handshake
        (the PSK binder does not verify): neither side completes it."""
        outcome = await self.pskPair({"pe-17": KEY_A}, "pe-17", KEY_B)
        assert outcome.clientContext is None
        assert outcome.serverContext is None
        assert outcome.server is not None
        assert "binder" in str(outcome.server.reason.value)  # type: ignore[union-attr]

    async def test_wrongKeyTls12(self) -> None:
        """A wrong key fails the TLS 1.2 PSK handshake too."""
        outcome = await self.pskPair(
            {"pe-17": KEY_A}, "pe-17", KEY_B, serverOptions=":maximumTlsVersion=1.2"
        )
        assert outcome.clientContext is None
        assert outcome.serverContext is None

    async def test_unknownIdentityTls13(self) -> None:
        """An identity the server does not know fails the TLS 1.3 handshake."""
        outcome = await self.pskPair({"pe-17": KEY_A}, "pe-99", KEY_A)
        assert outcome.clientContext is None
        assert outcome.serverContext is None

    async def test_unknownIdentityTls12(self) -> None:
        """An identity the server does not know fails the TLS 1.2 handshake."""
        outcome = await self.pskPair(
            {"pe-17": KEY_A}, "pe-99", KEY_A, serverOptions=":maximumTlsVersion=1.2"
        )
        assert outcome.clientContext is None
        assert outcome.serverContext is None

    async def test_keysReadAtEachHandshake(self) -> None:
        """The server creator reads its key mapping at each handshake: a key removed from
        a dict it was given no longer lets the client in."""
        keys = {"pe-17": KEY_A}
        factory = RecorderFactory()
        server = TlsServerEndpoint(
            serverEndpoint(f"tcp:0:interface={LOOPBACK}"), TlsServerCreator(keys)
        )
        port = await server.listen(factory)
        self.addCleanup(port.stopListening)

        def client() -> TlsClientEndpoint:
            return TlsClientEndpoint(
                TCP4ClientEndpoint(reactor, LOOPBACK, portNumber(port)),
                PskClientCreator("pe-17", KEY_A),
            )

        first = await connectOnce(factory, client())
        assert first.serverContext is not None and first.serverContext.authenticated
        del keys["pe-17"]
        second = await connectOnce(factory, client())
        assert second.serverContext is None

    async def test_shortKeyInTableRefused(self) -> None:
        """A key shorter than 128 bits put into the server's table in code is never used."""
        keys = {"pe-17": KEY_A[:8]}
        factory = RecorderFactory()
        server = TlsServerEndpoint(
            serverEndpoint(f"tcp:0:interface={LOOPBACK}"), TlsServerCreator(keys)
        )
        port = await server.listen(factory)
        self.addCleanup(port.stopListening)
        clientCreator = PskClientCreator("pe-17", KEY_A)
        clientCreator._key = KEY_A[:8]
        client = TlsClientEndpoint(
            TCP4ClientEndpoint(reactor, LOOPBACK, portNumber(port)), clientCreator
        )
        outcome = await connectOnce(factory, client)
        assert outcome.serverContext is None

    async def test_certificateClientOnPskOnlyListener(self) -> None:
        """A client that offers no PSK cannot connect to a PSK-only listener."""
        pki = Pki(self.directory)
        serverFile = self.psk({"pe-17": KEY_A}, "server.psk")
        port, factory = await self.serve(f"tlspsk:0:interface={LOOPBACK}:pskFile={serverFile}")
        client = clientEndpoint(f"tlspsk:host={LOOPBACK}:port={port}:caCertificate={pki.caFile()}")
        outcome = await connectOnce(factory, client)
        assert outcome.clientContext is None
        assert outcome.serverContext is None

    async def test_failingKeyLookup(self) -> None:
        """A key lookup that raises inside the OpenSSL callback refuses the identity, is
        logged, and does not take the server down."""

        class Broken(Mapping[str, bytes]):
            def __getitem__(self, key: str) -> bytes:
                raise RuntimeError("lookup exploded")

            def __iter__(self) -> Iterator[str]:
                return iter(())

            def __len__(self) -> int:
                return 0

        factory = RecorderFactory()
        server = TlsServerEndpoint(
            serverEndpoint(f"tcp:0:interface={LOOPBACK}"), TlsServerCreator(Broken())
        )
        port = await server.listen(factory)
        self.addCleanup(port.stopListening)
        client = TlsClientEndpoint(
            TCP4ClientEndpoint(reactor, LOOPBACK, portNumber(port)),
            PskClientCreator("pe-17", KEY_A),
        )
        outcome = await connectOnce(factory, client)
        assert outcome.serverContext is None
        assert outcome.clientContext is None
        assert len(self.flushLoggedErrors(RuntimeError)) == 1  # type: ignore[no-untyped-call]


class SecurityContextTests(TestCase):
    """securityContextOf on transports without a completed TLS handshake."""

    def test_plainTransport(self) -> None:
        """A transport without TLS has the INSECURE context."""
        assert securityContextOf(StringTransport()) is INSECURE  # type: ignore[no-untyped-call]
        assert securityContextOf(object()) is INSECURE

    def test_beforeHandshake(self) -> None:
        """A TLS connection whose handshake has not completed is unauthenticated and
        reports no version."""
        connection = PskClientCreator("pe-17", KEY_A).clientConnectionForTLS(
            None  # type: ignore[arg-type]
        )

        class Transport:
            def getHandle(self) -> object:
                return connection

        context = securityContextOf(Transport())
        assert not context.authenticated
        assert context.tls_version is None


class ResumptionTests(TestCase):
    """Each connection proves the key again: no session is resumed without it."""

    def resumeAfterKeyRemoval(self, version: TlsVersion) -> None:
        keys = {"pe-17": KEY_A}
        serverCreator = TlsServerCreator(keys, maximumVersion=version)
        clientCreator = PskClientCreator("pe-17", KEY_A)

        def connect(session: Session | None = None) -> tuple[Connection, Connection, str | None]:
            server = serverCreator.serverConnectionForTLS(None)  # type: ignore[arg-type]
            server.set_accept_state()
            client = clientCreator.clientConnectionForTLS(None)  # type: ignore[arg-type]
            client.set_connect_state()
            if session is not None:
                client.set_session(session)
            return server, client, pumpHandshake(client, server)

        server, client, error = connect()
        assert error is None
        assert securityContextOfConnection(server).psk_identity == "pe-17"
        session = client.get_session()
        assert session is not None
        del keys["pe-17"]
        server, client, error = connect(session)
        assert error is not None
        assert not securityContextOfConnection(server).authenticated

    def test_tls13(self) -> None:
        """A TLS 1.3 client offering its earlier session is refused once its key is gone."""
        self.resumeAfterKeyRemoval("1.3")

    def test_tls12(self) -> None:
        """A TLS 1.2 client offering its earlier session is refused once its key is gone."""
        self.resumeAfterKeyRemoval("1.2")


def clientHelloExtensions(record: bytes) -> dict[int, bytes]:
    """The extensions of the ClientHello in a TLS record, by type."""
    assert record[0] == 22 and record[5] == 1, "not a ClientHello"
    body = record[9:]
    offset = 2 + 32
    offset += 1 + body[offset]
    offset += 2 + int.from_bytes(body[offset : offset + 2], "big")
    offset += 1 + body[offset]
    end = offset + 2 + int.from_bytes(body[offset : offset + 2], "big")
    offset += 2
    extensions = {}
    while offset < end:
        kind = int.from_bytes(body[offset : offset + 2], "big")
        length = int.from_bytes(body[offset + 2 : offset + 4], "big")
        extensions[kind] = body[offset + 4 : offset + 4 + length]
        offset += 4 + length
    return extensions


class ClientHelloTests(TestCase):
    """What the PSK client offers."""

    def test_pskWithEcdheOnly(self) -> None:
        """The TLS 1.3 PSK client offers its PSK only with (EC)DHE key exchange
        (psk_key_exchange_modes = [psk_dhe_ke]), so the PSK authenticates and ECDHE gives
        forward secrecy; it also sends a key share and the PSK as the last extension."""
        client = PskClientCreator("pe-17", KEY_A).clientConnectionForTLS(
            None  # type: ignore[arg-type]
        )
        client.set_connect_state()
        with contextlib.suppress(WantReadError):
            client.do_handshake()
        extensions = clientHelloExtensions(client.bio_read(65536))
        pskKeyExchangeModes, keyShare, preSharedKey = 45, 51, 41
        assert extensions[pskKeyExchangeModes] == b"\x01\x01"
        assert keyShare in extensions
        assert list(extensions)[-1] == preSharedKey
        identities = extensions[preSharedKey]
        assert b"pe-17" in identities


class Tls12SuiteTests(TestCase):
    """Every TLS 1.2 PSK suite the server offers can be negotiated."""

    def test_eachSuite(self) -> None:
        """A client offering a single TLS 1.2 PSK suite gets exactly that suite, and the
        server reports the identity."""
        for suite in TLS12_PSK_CIPHERS.split(":"):
            serverCreator = TlsServerCreator({"pe-17": KEY_A}, maximumVersion="1.2")
            clientCreator = PskClientCreator("pe-17", KEY_A)
            clientCreator._context.set_cipher_list(suite.encode("ascii"))
            server = serverCreator.serverConnectionForTLS(None)  # type: ignore[arg-type]
            server.set_accept_state()
            client = clientCreator.clientConnectionForTLS(None)  # type: ignore[arg-type]
            client.set_connect_state()
            assert pumpHandshake(client, server) is None, suite
            context = securityContextOfConnection(server)
            assert (context.tls_version, context.cipher) == ("TLSv1.2", suite)
            assert context.psk_identity == "pe-17"
            assert securityContextOfConnection(client).authenticated


class CertificateTests(TlsTestCase):
    """Pool users verify the ENRP server's certificate (RFC 5355 2.7)."""

    async def certificatePair(
        self,
        hostname: str,
        dnsNames: tuple[str, ...] = ("enrp.example.net",),
        ipAddresses: tuple[str, ...] = (LOOPBACK,),
        trustOtherCa: bool = False,
        serverOptions: str = "",
        clientOptions: str = "",
    ) -> Outcome:
        pki = Pki(self.directory)
        certificate, key, _ = pki.issue("enrp-1", dnsNames, ipAddresses)
        caFile = pki.caFile()
        if trustOtherCa:
            caFile = Pki(self.directory, caName="someone else's CA").caFile("other-ca.pem")
        port, factory = await self.serve(
            f"tlspsk:0:interface={LOOPBACK}:certificate={certificate}:privateKey={key}"
            + serverOptions
        )
        client = clientEndpoint(
            f"tlspsk:host={LOOPBACK}:port={port}:caCertificate={caFile}:hostname={hostname}"
            + clientOptions,
        )
        return await connectOnce(factory, client)

    async def test_dnsName(self) -> None:
        """A client that expects the DNS name in the certificate's SAN accepts the server;
        its context holds the certificate's subject and fingerprint; the server's context
        says the pool user is not authenticated."""
        outcome = await self.certificatePair("enrp.example.net")
        context = outcome.clientContext
        assert context is not None
        assert context.authenticated
        assert context.tls_version == "TLSv1.3"
        assert context.certificate_subject == "CN=enrp-1"
        assert context.certificate_fingerprint is not None
        assert len(context.certificate_fingerprint) == 32 * 3 - 1
        assert context.psk_identity is None
        server = outcome.serverContext
        assert server is not None
        assert server.encrypted and not server.authenticated

    async def test_ipAddress(self) -> None:
        """A client that expects an IP address finds it among the IP SANs."""
        outcome = await self.certificatePair(LOOPBACK)
        assert outcome.clientContext is not None and outcome.clientContext.authenticated

    async def test_tls12(self) -> None:
        """Certificate verification works when TLS 1.2 is the most the server speaks."""
        outcome = await self.certificatePair(
            "enrp.example.net", serverOptions=":maximumTlsVersion=1.2"
        )
        context = outcome.clientContext
        assert context is not None and context.authenticated
        assert context.tls_version == "TLSv1.2"
        assert context.cipher is not None and context.cipher.startswith("ECDHE-ECDSA-")

    async def test_wrongDnsName(self) -> None:
        """A certificate that does not name the expected host is refused."""
        outcome = await self.certificatePair("other.example.net")
        assert outcome.clientContext is None
        assert outcome.serverContext is None

    async def test_wrongIpAddress(self) -> None:
        """A certificate without the expected IP SAN is refused."""
        outcome = await self.certificatePair("127.0.0.2")
        assert outcome.clientContext is None

    async def test_ipOnlyInCommonNameRefused(self) -> None:
        """A host named only by the common name, not by a SAN, is refused."""
        outcome = await self.certificatePair("enrp-1", dnsNames=(), ipAddresses=())
        assert outcome.clientContext is None

    async def selfSigned(self, hostname: str, ca: bool) -> Outcome:
        certificate = self.directory / "self.pem"
        key = self.directory / "self.key"
        if ca:
            createSelfSignedCertificate(certificate, key)
        else:
            pki = Pki(self.directory)
            leaf = pki.issue("localhost", ("localhost",), (LOOPBACK,), stem="leaf")
            # Re-sign the leaf by its own key: a self-signed end-entity certificate.
            leafKey = load_pem_private_key(Path(leaf[1]).read_bytes(), None)
            assert isinstance(leafKey, ec.EllipticCurvePrivateKey)
            built = (
                x509.CertificateBuilder()
                .subject_name(leaf[2].subject)
                .issuer_name(leaf[2].subject)
                .public_key(leafKey.public_key())
                .serial_number(x509.random_serial_number())
                .not_valid_before(leaf[2].not_valid_before_utc)
                .not_valid_after(leaf[2].not_valid_after_utc)
                .add_extension(
                    leaf[2].extensions.get_extension_for_class(x509.SubjectAlternativeName).value,
                    critical=False,
                )
                .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                .sign(leafKey, hashes.SHA256())
            )
            certificate.write_bytes(built.public_bytes(Encoding.PEM))
            key.write_bytes(Path(leaf[1]).read_bytes())
        port, factory = await self.serve(
            f"tlspsk:0:interface={LOOPBACK}:certificate={certificate}:privateKey={key}"
        )
        client = clientEndpoint(
            f"tlspsk:host={LOOPBACK}:port={port}:caCertificate={certificate}:hostname={hostname}"
        )
        return await connectOnce(factory, client)

    async def test_selfSignedCertificateIsItsOwnCa(self) -> None:
        """The self-signed certificate `twistd enrp` creates at first start, given to pool
        users as caCertificate, verifies for its names and no others."""
        for hostname in ("localhost", LOOPBACK):
            outcome = await self.selfSigned(hostname, ca=True)
            assert outcome.clientContext is not None and outcome.clientContext.authenticated
            (self.directory / "self.pem").unlink()
            (self.directory / "self.key").unlink()
        outcome = await self.selfSigned("enrp.example.net", ca=True)
        assert outcome.clientContext is None

    async def test_selfSignedEndEntity(self) -> None:
        """A self-signed certificate that is not a CA certificate also works as its own
        trust root."""
        outcome = await self.selfSigned("localhost", ca=False)
        assert outcome.clientContext is not None and outcome.clientContext.authenticated

    async def test_otherVerifiersNotTrusted(self) -> None:
        """A certificate accepted by code other than CertificateClientCreator is reported
        (subject, fingerprint) but not as authenticated. Twisted 26.10's optionsForClientTLS
        accepts a certificate without subjectAltName (it logs service_identity's
        CertificateError and goes on), which is why."""
        pki = Pki(self.directory)
        certificate, key, _ = pki.issue("enrp-1")
        port, factory = await self.serve(
            f"tlspsk:0:interface={LOOPBACK}:certificate={certificate}:privateKey={key}"
        )
        options = optionsForClientTLS(
            "enrp-1",
            trustRoot=Certificate.load(pki.caCertificate.public_bytes(Encoding.DER)),
        )
        client = wrapClientTLS(options, TCP4ClientEndpoint(reactor, LOOPBACK, port))
        outcome = await connectOnce(factory, client)
        self.flushLoggedErrors()  # type: ignore[no-untyped-call]
        context = outcome.clientContext
        assert context is not None, "Twisted now refuses a certificate without SAN"
        assert context.certificate_subject == "CN=enrp-1"
        assert not context.authenticated

    async def test_unknownCa(self) -> None:
        """A certificate issued by a CA the client does not trust is refused."""
        outcome = await self.certificatePair("enrp.example.net", trustOtherCa=True)
        assert outcome.clientContext is None
        assert outcome.serverContext is None


class SharedListenerTests(TlsTestCase):
    """One listener with pre-shared keys and a certificate serves PEs and PUs alike."""

    async def setUpShared(self) -> tuple[int, RecorderFactory, Pki]:
        pki = Pki(self.directory)
        certificate, key, _ = pki.issue("enrp-1", ("enrp.example.net",), (LOOPBACK,))
        serverPsk = self.psk({"pe-17": KEY_A}, "server.psk")
        port, factory = await self.serve(
            f"tlspsk:0:interface={LOOPBACK}:pskFile={serverPsk}"
            f":certificate={certificate}:privateKey={key}"
        )
        return port, factory, pki

    def pskClient(self, port: int, identity: str, key: bytes, options: str = "") -> object:
        clientPsk = self.psk({identity: key}, f"{identity}-{key.hex()[:4]}.psk")
        return clientEndpoint(f"tlspsk:{LOOPBACK}:{port}:pskFile={clientPsk}{options}")

    async def test_pskClientTls13(self) -> None:
        """A PSK client on the shared listener authenticates by its key under TLS 1.3; no
        certificate is exchanged."""
        port, factory, _ = await self.setUpShared()
        outcome = await connectOnce(factory, self.pskClient(port, "pe-17", KEY_A))  # type: ignore[arg-type]
        context = outcome.serverContext
        assert context is not None and context.authenticated
        assert context.tls_version == "TLSv1.3"
        assert context.psk_identity == "pe-17"
        client = outcome.clientContext
        assert client is not None and client.authenticated
        assert client.certificate_subject is None

    async def test_pskClientTls12(self) -> None:
        """A TLS 1.2-only PSK client on the shared listener gets a PSK suite."""
        port, factory, _ = await self.setUpShared()
        outcome = await connectOnce(
            factory,
            self.pskClient(port, "pe-17", KEY_A, ":maximumTlsVersion=1.2"),  # type: ignore[arg-type]
        )
        context = outcome.serverContext
        assert context is not None and context.psk_identity == "pe-17"
        assert context.cipher == "ECDHE-PSK-CHACHA20-POLY1305"

    async def test_certificateClient(self) -> None:
        """A pool user verifying the certificate connects to the same listener."""
        port, factory, pki = await self.setUpShared()
        client = clientEndpoint(
            f"tlspsk:host={LOOPBACK}:port={port}:caCertificate={pki.caFile()}",
        )
        outcome = await connectOnce(factory, client)
        assert outcome.clientContext is not None and outcome.clientContext.authenticated
        assert outcome.clientContext.certificate_subject == "CN=enrp-1"
        assert outcome.serverContext is not None
        assert not outcome.serverContext.authenticated

    async def test_unknownIdentityDoesNotFallBackToCertificate(self) -> None:
        """A PSK client whose identity the server does not know is offered the certificate
        instead, and refuses it: the handshake fails rather than succeeding unauthenticated."""
        port, factory, _ = await self.setUpShared()
        outcome = await connectOnce(factory, self.pskClient(port, "pe-99", KEY_A))  # type: ignore[arg-type]
        assert outcome.clientContext is None
        assert outcome.serverContext is None

    async def test_wrongKey(self) -> None:
        """A wrong key fails on the shared listener too."""
        port, factory, _ = await self.setUpShared()
        outcome = await connectOnce(factory, self.pskClient(port, "pe-17", KEY_B))  # type: ignore[arg-type]
        assert outcome.clientContext is None
        assert outcome.serverContext is None


class TamperingTests(TlsTestCase):
    """RFC 5355 2.8 (replay) and 2.10 (integrity): TLS records changed or replayed on the
    way end the connection and reach no application protocol."""

    async def tamperedSession(self, tamper: object, version: str) -> tuple[Recorder, Recorder]:
        self.sessions = getattr(self, "sessions", 0) + 1
        serverFile = self.psk({"pe-17": KEY_A}, f"server{self.sessions}.psk")
        clientFile = self.psk({"pe-17": KEY_A}, f"client{self.sessions}.psk")
        port, factory = await self.serve(
            f"tlspsk:0:interface={LOOPBACK}:pskFile={serverFile}:maximumTlsVersion={version}"
        )
        endpoint = clientEndpoint(f"tlspsk:host={LOOPBACK}:port={port}:pskFile={clientFile}")
        assert isinstance(endpoint, TlsClientEndpoint)
        endpoint.wrappedEndpoint = TamperingEndpoint(endpoint.wrappedEndpoint, tamper)  # type: ignore[arg-type]
        client = Recorder()
        client.handshook.addErrback(ignore)
        await endpoint.connect(Factory.forProtocol(lambda: client))
        await client.handshook
        server = await factory.first
        await server.handshook
        return client, server

    async def replayInSameConnection(self, version: str) -> None:
        armed = [False]
        sent: list[bytes] = []

        def replay(record: bytes) -> list[bytes]:
            if armed[0] and record[0] == APPLICATION_DATA:
                sent.append(record)
                return [record, record]
            return [record]

        client, server = await self.tamperedSession(replay, version)
        armed[0] = True
        client.send(b"REGISTER pe-17")
        await server.lost
        await client.lost
        assert len(sent) == 1
        assert server.received == b"REGISTER pe-17"
        assert "bad record mac" in str(server.reason.value).lower()  # type: ignore[union-attr]

    async def test_replayInSameConnectionTls13(self) -> None:
        """A record sent twice is delivered once; the copy ends the connection (TLS 1.3)."""
        await self.replayInSameConnection("1.3")

    async def test_replayInSameConnectionTls12(self) -> None:
        """A record sent twice is delivered once; the copy ends the connection (TLS 1.2)."""
        await self.replayInSameConnection("1.2")

    async def test_replayIntoAnotherConnection(self) -> None:
        """A record captured from one connection and injected into another ends the second
        connection with nothing delivered there."""
        captured: list[bytes] = []
        capturing = [False]

        def capture(record: bytes) -> list[bytes]:
            if capturing[0] and record[0] == APPLICATION_DATA:
                capturing[0] = False
                captured.append(record)
            return [record]

        client, server = await self.tamperedSession(capture, "1.3")
        capturing[0] = True
        client.send(b"REGISTER pe-17")
        client.close()
        await server.lost
        assert server.received == b"REGISTER pe-17"
        assert len(captured) == 1

        inject = [False]

        def replay(record: bytes) -> list[bytes]:
            if inject[0] and record[0] == APPLICATION_DATA:
                return [captured[0]]
            return [record]

        # A fresh listener and connection with the same key: the record was captured under
        # different traffic keys, so it cannot be authenticated here.
        client2, server2 = await self.tamperedSession(replay, "1.3")
        inject[0] = True
        client2.send(b"HELLO")
        await server2.lost
        await client2.lost
        assert server2.received == b""

    async def flipBit(self, version: str) -> None:
        armed = [False]

        def flip(record: bytes) -> list[bytes]:
            if armed[0] and record[0] == APPLICATION_DATA:
                armed[0] = False
                changed = bytearray(record)
                changed[5 + len(record[5:]) // 2] ^= 0x04
                return [bytes(changed)]
            return [record]

        client, server = await self.tamperedSession(flip, version)
        armed[0] = True
        client.send(b"REGISTER pe-17")
        await server.lost
        await client.lost
        assert server.received == b""
        assert "bad record mac" in str(server.reason.value).lower()  # type: ignore[union-attr]

    async def test_bitFlipTls13(self) -> None:
        """A record with one bit flipped ends the connection with nothing delivered (TLS 1.3)."""
        await self.flipBit("1.3")

    async def test_bitFlipTls12(self) -> None:
        """A record with one bit flipped ends the connection with nothing delivered (TLS 1.2)."""
        await self.flipBit("1.2")
