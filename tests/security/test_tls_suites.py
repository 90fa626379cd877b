"""Which TLS suites and PSK modes the `tlspsk:` servers and clients accept (RFC 5355 2.1-2.5,
2.15; issue 11 items 8 and 9): a PSK client offering OpenSSL's default TLS 1.3 suites gets a
PSK session, a PSK that cannot bind is refused rather than becoming an anonymous session,
TLS 1.2 PSK without forward secrecy only with ``allowPlainPsk``, TLS 1.3 ``psk_ke`` never.

Real handshakes between OpenSSL connections over memory BIOs or loopback TCP.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import os
import subprocess
import sys
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from OpenSSL import SSL
from OpenSSL.SSL import Connection, WantReadError
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.logger import ILogObserver, LogEvent, formatEvent, globalLogPublisher
from twisted.trial.unittest import TestCase
from zope.interface import provider

from tests.security.support import (
    KEY_A,
    KEY_B,
    Pki,
    RecorderFactory,
    clientEndpoint,
    connectOnce,
    portNumber,
    pskFile,
    pumpHandshake,
    reactor,
    serverEndpoint,
    temporaryDirectory,
)
from twisted_rserpool.endpoints import TlsClientEndpoint
from twisted_rserpool.security import _openssl
from twisted_rserpool.security.tls import (
    TLS12_PLAIN_PSK_CIPHERS,
    TLS12_PSK_CIPHERS,
    TLS13_PSK_CIPHERSUITES,
    PskClientCreator,
    TlsServerCreator,
    loadCertificates,
    loadPrivateKey,
    securityContextOfConnection,
)

LOOPBACK = "127.0.0.1"

# IANA code points of the suites and extensions the tests look for.
TLS_AES_128_GCM_SHA256 = 0x1301
TLS_AES_256_GCM_SHA384 = 0x1302
TLS_CHACHA20_POLY1305_SHA256 = 0x1303
ECDHE_PSK_CHACHA20_POLY1305 = 0xCCAC
PSK_AES256_GCM_SHA384 = 0x00A9
PSK_CHACHA20_POLY1305 = 0xCCAB
PSK_AES128_GCM_SHA256 = 0x00A8
RENEGOTIATION_INFO_SCSV = 0x00FF
PRE_SHARED_KEY = 41
PSK_KEY_EXCHANGE_MODES = 45
KEY_SHARE = 51
PSK_KE, PSK_DHE_KE = 0, 1
HANDSHAKE, ALERT = 22, 21
SERVER_HELLO = 2
#: The ServerHello random that marks a HelloRetryRequest (RFC 8446 section 4.1.3).
HELLO_RETRY_RANDOM = hashlib.sha256(b"HelloRetryRequest").digest()

#: OpenSSL's own TLS 1.3 list, SHA-384 first (what `openssl s_client` offers by default).
OPENSSL_DEFAULT_TLS13 = "TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256:TLS_AES_128_GCM_SHA256"


# ClientHello and ServerHello parsing ---------------------------------------------------


def _skip(body: bytes, offset: int, width: int) -> int:
    return offset + width + int.from_bytes(body[offset : offset + width], "big")


def _extensions(body: bytes, offset: int) -> dict[int, tuple[int, int]]:
    """Extension type -> (start, end) of its data, for the extension block at ``offset``."""
    end = _skip(body, offset, 2)
    offset += 2
    found = {}
    while offset < end:
        kind = int.from_bytes(body[offset : offset + 2], "big")
        length = int.from_bytes(body[offset + 2 : offset + 4], "big")
        found[kind] = (offset + 4, offset + 4 + length)
        offset += 4 + length
    return found


def clientHelloRecord(client: Connection) -> bytes:
    """The first flight of ``client``: one TLS record holding its ClientHello."""
    client.set_connect_state()
    with contextlib.suppress(WantReadError):
        client.do_handshake()
    record = client.bio_read(65536)
    assert record[0] == HANDSHAKE and record[5] == 1, "not a ClientHello"
    assert len(record) == 5 + int.from_bytes(record[3:5], "big"), "more than one record"
    return record


def offeredSuites(record: bytes) -> list[int]:
    """The cipher suites a ClientHello record offers, in order, without the SCSV."""
    body = record[9:]
    offset = _skip(body, 2 + 32, 1)
    end = _skip(body, offset, 2)
    suites = [int.from_bytes(body[i : i + 2], "big") for i in range(offset + 2, end, 2)]
    return [s for s in suites if s != RENEGOTIATION_INFO_SCSV]


def clientHelloExtensions(record: bytes) -> dict[int, tuple[int, int]]:
    """Extension type -> (start, end) of its data, as offsets into the record."""
    body = record[9:]
    offset = _skip(body, 2 + 32, 1)
    offset = _skip(body, offset, 2)
    offset = _skip(body, offset, 1)
    return {k: (a + 9, b + 9) for k, (a, b) in _extensions(body, offset).items()}


def serverHello(flight: bytes) -> tuple[bytes, dict[int, tuple[int, int]]] | None:
    """The random and the extensions of the ServerHello starting ``flight``, or None."""
    if len(flight) < 9 or flight[0] != HANDSHAKE or flight[5] != SERVER_HELLO:
        return None
    body = flight[9:]
    offset = _skip(body, 2 + 32, 1) + 2 + 1
    extensions = _extensions(body, offset)
    return body[2:34], {k: (a + 9, b + 9) for k, (a, b) in extensions.items()}


# The TLS 1.3 binder (RFC 8446 sections 4.2.11.2 and 7.1), to craft a valid psk_ke hello --


def _expandLabel(secret: bytes, label: bytes, context: bytes) -> bytes:
    full = b"tls13 " + label
    info = (32).to_bytes(2, "big") + bytes([len(full)]) + full + bytes([len(context)]) + context
    return hmac.digest(secret, info + b"\x01", "sha256")


def binder(key: bytes, truncatedHello: bytes) -> bytes:
    """The SHA-256 binder of an external PSK over a ClientHello up to its binders."""
    earlySecret = hmac.digest(bytes(32), key, "sha256")
    binderKey = _expandLabel(earlySecret, b"ext binder", hashlib.sha256().digest())
    finishedKey = _expandLabel(binderKey, b"finished", b"")
    return hmac.digest(finishedKey, hashlib.sha256(truncatedHello).digest(), "sha256")


def withPskKeOnly(record: bytes, key: bytes) -> bytes:
    """``record`` (a ClientHello with one external PSK) offering only ``psk_ke``, with the
    binder recomputed so that the PSK itself stays valid."""
    extensions = clientHelloExtensions(record)
    start, end = extensions[PSK_KEY_EXCHANGE_MODES]
    assert record[start:end] == bytes([1, PSK_DHE_KE]), record[start:end].hex()
    assert max(extensions.values())[1] == len(record), "pre_shared_key must come last"
    # One identity, so the binders list is: length (2), binder length (1), binder (32).
    message = record[5:]
    assert message[-35:-32] == bytes([0, 33, 32])
    assert binder(key, message[:-35]) == message[-32:], "binder computation is wrong"
    changed = bytearray(record)
    changed[start + 1] = PSK_KE
    message = bytes(changed[5:])
    return bytes(changed[:-32]) + binder(key, message[:-35])


# Helpers --------------------------------------------------------------------------------


class LogCapture:
    """Collects the text of every log event while a test runs."""

    def __init__(self, testCase: TestCase) -> None:
        self.lines: list[str] = []

        @provider(ILogObserver)
        def observe(event: LogEvent) -> None:
            self.lines.append(formatEvent(event))

        globalLogPublisher.addObserver(observe)
        testCase.addCleanup(globalLogPublisher.removeObserver, observe)

    def matching(self, *parts: str) -> list[str]:
        return [line for line in self.lines if all(part in line for part in parts)]


class RawPskClient:
    """A TLS-PSK client on a context with OpenSSL's defaults (like ``openssl s_client
    -psk``): it offers OpenSSL's suite lists and accepts whatever certificate it gets."""

    def __init__(self, identity: bytes, key: bytes, tls13Suites: str | None = None) -> None:
        self.context = SSL.Context(SSL.TLS_METHOD)
        if tls13Suites is not None:
            self.context.set_tls13_ciphersuites(tls13Suites.encode("ascii"))
        self._callback = _openssl.setPskClientCallback(
            self.context, lambda pointer, hint: (identity, key), lambda: None
        )

    def connection(self) -> Connection:
        return Connection(self.context, None)


def serverConnection(creator: TlsServerCreator) -> Connection:
    server = creator.serverConnectionForTLS(None)  # type: ignore[arg-type]
    server.set_accept_state()
    return server


def clientConnection(creator: PskClientCreator | RawPskClient) -> Connection:
    if isinstance(creator, RawPskClient):
        client = creator.connection()
    else:
        client = creator.clientConnectionForTLS(None)  # type: ignore[arg-type]
    client.set_connect_state()
    return client


def respond(server: Connection, record: bytes) -> bytes:
    """Feed ``record`` to ``server`` and return what it answers."""
    server.bio_write(record)
    with contextlib.suppress(SSL.Error):
        server.do_handshake()
    with contextlib.suppress(WantReadError):
        return server.bio_read(65536)
    return b""


def onlySuites(creator: PskClientCreator, suites: str) -> PskClientCreator:
    """``creator`` limited to TLS 1.2 and to ``suites`` (before it made any connection)."""
    creator._context.set_max_proto_version(SSL.TLS1_2_VERSION)
    creator._context.set_cipher_list(suites.encode("ascii"))
    return creator


class SuiteTestCase(TestCase):
    timeout = 15

    def setUp(self) -> None:
        self.directory = temporaryDirectory(self)
        self.logs = LogCapture(self)
        certificateFile, keyFile, _ = Pki(self.directory).issue("enrp-1", ("localhost",))
        self.certificate = loadCertificates(certificateFile)[0]
        self.privateKey = loadPrivateKey(keyFile)

    def shared(self, **options: Any) -> TlsServerCreator:
        """A listener with a PSK for ``pe-17`` and a certificate (the `twistd enrp` default)."""
        return TlsServerCreator(
            {"pe-17": KEY_A}, certificate=self.certificate, privateKey=self.privateKey, **options
        )


# Item 8: a PSK client gets a suite its PSK binds to --------------------------------------


class PskBindingTests(SuiteTestCase):
    """TLS 1.3 picks the suite before it looks at the PSK, and OpenSSL binds our PSKs to
    SHA-256: the listener prefers SHA-256 suites, and refuses a PSK that still cannot bind."""

    def test_openSslDefaultSuitesGetPsk(self) -> None:
        """A PSK client offering OpenSSL's default TLS 1.3 list (SHA-384 first) on a listener
        with a certificate gets a PSK session with a SHA-256 suite and no certificate."""
        clientCreator = RawPskClient(b"pe-17", KEY_A)
        hello = clientHelloRecord(clientCreator.connection())
        assert offeredSuites(hello)[0] == TLS_AES_256_GCM_SHA384
        server, client = serverConnection(self.shared()), clientConnection(clientCreator)
        assert pumpHandshake(client, server) is None
        context = securityContextOfConnection(server)
        assert context.authenticated
        assert context.psk_identity == "pe-17"
        assert context.tls_version == "TLSv1.3"
        assert context.cipher in TLS13_PSK_CIPHERSUITES.split(":")
        assert client.get_peer_certificate() is None
        assert not self.logs.matching("refused")

    def test_openSslDefaultSuitesAfterHelloRetry(self) -> None:
        """The same after a HelloRetryRequest (the server wants another key share group):
        the PSK is used, and the refusal of unbindable PSKs does not misfire."""
        creator = self.shared()
        creator._context.set_tmp_ecdh(ec.SECP384R1())
        server, client = serverConnection(creator), clientConnection(RawPskClient(b"pe-17", KEY_A))
        first = respond(server, clientHelloRecord(client))
        hello = serverHello(first)
        assert hello is not None and hello[0] == HELLO_RETRY_RANDOM
        client.bio_write(first)
        assert pumpHandshake(client, server) is None
        context = securityContextOfConnection(server)
        assert context.psk_identity == "pe-17" and context.authenticated
        assert client.get_peer_certificate() is None

    def test_unbindablePskRefused(self) -> None:
        """A known identity offered only with TLS_AES_256_GCM_SHA384 fails the handshake,
        logged with the identity, instead of continuing as an anonymous certificate
        session; the client never sees the certificate."""
        clientCreator = RawPskClient(b"pe-17", KEY_A, tls13Suites="TLS_AES_256_GCM_SHA384")
        server, client = serverConnection(self.shared()), clientConnection(clientCreator)
        error = pumpHandshake(client, server)
        assert error is not None
        assert not securityContextOfConnection(server).authenticated
        assert client.get_peer_certificate() is None
        assert self.logs.matching("refused 'pe-17'", "cannot be used", "TLS_AES_128_GCM_SHA256")
        assert self.logs.matching("sent fatal alert internal_error")

    def test_unbindablePskOnPskOnlyListener(self) -> None:
        """On a PSK-only listener the same client finds no suite at all, and the server logs
        the alert with OpenSSL's reason."""
        clientCreator = RawPskClient(b"pe-17", KEY_A, tls13Suites="TLS_AES_256_GCM_SHA384")
        server = serverConnection(TlsServerCreator({"pe-17": KEY_A}))
        client = clientConnection(clientCreator)
        assert pumpHandshake(client, server) is not None
        assert not securityContextOfConnection(server).authenticated
        assert self.logs.matching("sent fatal alert handshake_failure", "no shared cipher")

    def test_certificateClientStillServed(self) -> None:
        """A client offering no PSK still gets the certificate (pool users), now with the
        server's first choice, a SHA-256 suite."""
        clientContext = SSL.Context(SSL.TLS_METHOD)
        client = Connection(clientContext, None)
        client.set_connect_state()
        server = serverConnection(self.shared())
        assert pumpHandshake(client, server) is None
        assert client.get_peer_certificate() is not None
        assert client.get_cipher_name() == "TLS_CHACHA20_POLY1305_SHA256"
        assert not securityContextOfConnection(server).authenticated
        assert not self.logs.matching("refused")

    def test_pskClientOffersOnlyBindableSuites(self) -> None:
        """Our PSK client offers the two SHA-256 TLS 1.3 suites and ECDHE-PSK, nothing its
        PSK could not use and no TLS 1.2 suite without forward secrecy."""
        hello = clientHelloRecord(clientConnection(PskClientCreator("pe-17", KEY_A)))
        assert offeredSuites(hello) == [
            TLS_CHACHA20_POLY1305_SHA256,
            TLS_AES_128_GCM_SHA256,
            ECDHE_PSK_CHACHA20_POLY1305,
        ]

    def test_pskClientWithPlainPsk(self) -> None:
        """With ``allowPlainPsk`` our client offers the plain PSK suites too, after ECDHE-PSK."""
        creator = PskClientCreator("pe-17", KEY_A, allowPlainPsk=True)
        assert offeredSuites(clientHelloRecord(clientConnection(creator))) == [
            TLS_CHACHA20_POLY1305_SHA256,
            TLS_AES_128_GCM_SHA256,
            ECDHE_PSK_CHACHA20_POLY1305,
            PSK_AES256_GCM_SHA384,
            PSK_CHACHA20_POLY1305,
            PSK_AES128_GCM_SHA256,
        ]


# Item 9: PSK only with forward secrecy by default ----------------------------------------


class Tls12PskTests(SuiteTestCase):
    """TLS 1.2: ECDHE-PSK by default; plain PSK suites only with ``allowPlainPsk``."""

    def handshake(
        self, serverCreator: TlsServerCreator, suites: str
    ) -> tuple[str | None, Connection]:
        clientCreator = onlySuites(PskClientCreator("pe-17", KEY_A, allowPlainPsk=True), suites)
        server, client = serverConnection(serverCreator), clientConnection(clientCreator)
        return pumpHandshake(client, server), server

    def test_plainPskRefusedByDefault(self) -> None:
        """A client offering only one plain PSK suite is refused (no shared cipher), on a
        PSK listener and on a shared one, and the refusal is logged."""
        for suite in TLS12_PLAIN_PSK_CIPHERS.split(":"):
            for creator in (TlsServerCreator({"pe-17": KEY_A}), self.shared()):
                error, server = self.handshake(creator, suite)
                assert error is not None and "no shared cipher" in error, (suite, error)
                assert not securityContextOfConnection(server).authenticated
        assert len(self.logs.matching("handshake_failure", "no shared cipher")) == 6

    def test_plainPskAcceptedWithOption(self) -> None:
        """With ``allowPlainPsk`` each plain suite is negotiated and the identity reported."""
        for suite in TLS12_PLAIN_PSK_CIPHERS.split(":"):
            error, server = self.handshake(
                TlsServerCreator({"pe-17": KEY_A}, allowPlainPsk=True), suite
            )
            assert error is None, (suite, error)
            context = securityContextOfConnection(server)
            assert (context.cipher, context.psk_identity) == (suite, "pe-17")

    def test_ecdhePskAcceptedByDefault(self) -> None:
        """ECDHE-PSK-CHACHA20-POLY1305 works by default, on both kinds of listener."""
        for creator in (TlsServerCreator({"pe-17": KEY_A}), self.shared()):
            error, server = self.handshake(creator, TLS12_PSK_CIPHERS)
            assert error is None
            context = securityContextOfConnection(server)
            assert (context.cipher, context.psk_identity) == (TLS12_PSK_CIPHERS, "pe-17")

    def test_ecdhePreferredWithOption(self) -> None:
        """A server allowing plain PSK still picks ECDHE-PSK when the client offers both."""
        suites = f"{TLS12_PLAIN_PSK_CIPHERS}:{TLS12_PSK_CIPHERS}"
        error, server = self.handshake(self.shared(allowPlainPsk=True), suites)
        assert error is None
        assert securityContextOfConnection(server).cipher == TLS12_PSK_CIPHERS

    def test_optionNeedsKeys(self) -> None:
        """``allowPlainPsk`` on a certificate-only server is a configuration error."""
        with pytest.raises(ValueError, match="allowPlainPsk"):
            TlsServerCreator(
                None, certificate=self.certificate, privateKey=self.privateKey, allowPlainPsk=True
            )


class PskKeOnlyTests(SuiteTestCase):
    """TLS 1.3 ``psk_ke`` (a PSK without (EC)DHE) is never accepted: OpenSSL ignores a PSK
    offered only in that mode unless ``SSL_OP_ALLOW_NO_DHE_KEX`` is set, and it is not.
    The ClientHello is our client's, changed to offer ``psk_ke`` only, with a valid binder."""

    def pskKeOnlyHello(self) -> bytes:
        return withPskKeOnly(
            clientHelloRecord(clientConnection(PskClientCreator("pe-17", KEY_A))), KEY_A
        )

    def test_refusedOnPskListener(self) -> None:
        """A PSK-only listener answers a psk_ke-only hello with an alert: no ServerHello."""
        answer = respond(
            serverConnection(TlsServerCreator({"pe-17": KEY_A})), self.pskKeOnlyHello()
        )
        assert answer[:1] == bytes([ALERT])
        assert serverHello(answer) is None
        assert self.logs.matching("sent fatal alert")

    def test_noPskOnSharedListener(self) -> None:
        """A shared listener ignores the PSK: its ServerHello carries no pre_shared_key (the
        handshake would go on with the certificate, which our PSK client refuses)."""
        hello = serverHello(respond(serverConnection(self.shared()), self.pskKeOnlyHello()))
        assert hello is not None and hello[0] != HELLO_RETRY_RANDOM
        assert PRE_SHARED_KEY not in hello[1]
        assert KEY_SHARE in hello[1]

    def test_acceptedOnlyIfOpenSslAllowsIt(self) -> None:
        """Control: with SSL_OP_ALLOW_NO_DHE_KEX set, the same hello is answered with the
        PSK and no key share (psk_ke). So the hello is valid, and our default refuses it."""
        for creator in (TlsServerCreator({"pe-17": KEY_A}), self.shared()):
            creator._context.set_options(_openssl.OP_ALLOW_NO_DHE_KEX)
            hello = serverHello(respond(serverConnection(creator), self.pskKeOnlyHello()))
            assert hello is not None
            assert PRE_SHARED_KEY in hello[1]
            assert KEY_SHARE not in hello[1]

    def test_wrongKeyBinderControl(self) -> None:
        """Control for the binder: the same hello re-bound with another key is refused even
        when psk_ke is allowed (so the binder the tests compute is what OpenSSL checks)."""
        record = withPskKeOnly(
            clientHelloRecord(clientConnection(PskClientCreator("pe-17", KEY_A))), KEY_A
        )
        bad = record[:-32] + binder(KEY_B, record[5:-35])
        creator = TlsServerCreator({"pe-17": KEY_A})
        creator._context.set_options(_openssl.OP_ALLOW_NO_DHE_KEX)
        assert serverHello(respond(serverConnection(creator), bad)) is None


class OpenSslConfigurationTests(TestCase):
    """An OpenSSL configuration file can set options on every new context."""

    def test_allowNoDheKexConfigurationRefused(self) -> None:
        """With ``Options = AllowNoDHEKEX`` in OPENSSL_CONF, servers and clients refuse to be
        made instead of accepting TLS 1.3 PSK without (EC)DHE."""
        directory = temporaryDirectory(self)
        configuration = directory / "openssl.cnf"
        configuration.write_text(
            "openssl_conf = init\n[init]\nssl_conf = ssl\n[ssl]\nsystem_default = defaults\n"
            "[defaults]\nOptions = AllowNoDHEKEX\n"
        )
        program = (
            "from OpenSSL import SSL\n"
            "from twisted_rserpool.security import _openssl\n"
            "from twisted_rserpool.security.tls import PskClientCreator, TlsServerCreator\n"
            "assert SSL.Context(SSL.TLS_METHOD).set_options(0) & _openssl.OP_ALLOW_NO_DHE_KEX\n"
            "for make in (lambda: TlsServerCreator({'pe': bytes(16)}),\n"
            "             lambda: PskClientCreator('pe', bytes(16))):\n"
            "    try:\n"
            "        make()\n"
            "    except ValueError as e:\n"
            "        print(e)\n"
        )
        result = subprocess.run(
            [sys.executable, "-c", program],
            env={**os.environ, "OPENSSL_CONF": str(configuration)},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        assert result.stdout.count("AllowNoDHEKEX") == 2, result.stdout


# The endpoint strings ---------------------------------------------------------------------


class EndpointOptionTests(TestCase):
    """``allowPlainPsk=yes`` in `tlspsk:` strings, over loopback."""

    timeout = 15

    def setUp(self) -> None:
        self.directory = temporaryDirectory(self)
        self.keys = pskFile(self.directory, {"pe-17": KEY_A})

    async def plainPskAgainst(self, serverOptions: str) -> tuple[object, object]:
        factory = RecorderFactory()
        port = await serverEndpoint(
            f"tlspsk:0:interface={LOOPBACK}:pskFile={self.keys}{serverOptions}"
        ).listen(factory)
        self.addCleanup(port.stopListening)
        creator = onlySuites(
            PskClientCreator("pe-17", KEY_A, allowPlainPsk=True), "PSK-AES128-GCM-SHA256"
        )
        client = TlsClientEndpoint(
            TCP4ClientEndpoint(reactor, LOOPBACK, portNumber(port)),
            creator,
        )
        outcome = await connectOnce(factory, client)
        return outcome.serverContext, outcome.clientContext

    async def test_serverDefaultRefusesPlainPsk(self) -> None:
        """A `tlspsk:` listener without the option refuses a plain-PSK-only client."""
        serverContext, clientContext = await self.plainPskAgainst("")
        assert serverContext is None and clientContext is None

    async def test_serverOptionAcceptsPlainPsk(self) -> None:
        """``allowPlainPsk=yes`` on the listener accepts it."""
        serverContext, _ = await self.plainPskAgainst(":allowPlainPsk=yes")
        assert serverContext is not None
        assert serverContext.cipher == "PSK-AES128-GCM-SHA256"  # type: ignore[attr-defined]
        assert serverContext.psk_identity == "pe-17"  # type: ignore[attr-defined]

    def test_clientOption(self) -> None:
        """``allowPlainPsk=yes`` on a client string adds the plain suites to its offer."""
        for options, plain in (
            ("", False),
            (":allowPlainPsk=no", False),
            (":allowPlainPsk=yes", True),
        ):
            endpoint = clientEndpoint(f"tlspsk:{LOOPBACK}:1:pskFile={self.keys}{options}")
            assert isinstance(endpoint, TlsClientEndpoint)
            connection = endpoint.creator.clientConnectionForTLS(None)  # type: ignore[arg-type]
            suites = offeredSuites(clientHelloRecord(connection))
            assert (PSK_AES128_GCM_SHA256 in suites) is plain, options

    def test_badValues(self) -> None:
        """Values other than yes/no, and the option without a PSK file, are refused."""
        pki = Pki(self.directory)
        certificate, key, _ = pki.issue("enrp-1", ("localhost",))
        for description in (
            f"tlspsk:0:pskFile={self.keys}:allowPlainPsk=true",
            f"tlspsk:0:certificate={certificate}:privateKey={key}:allowPlainPsk=yes",
        ):
            with pytest.raises(ValueError, match="allowPlainPsk"):
                serverEndpoint(description)
        for description in (
            f"tlspsk:{LOOPBACK}:1:pskFile={self.keys}:allowPlainPsk=1",
            f"tlspsk:{LOOPBACK}:1:caCertificate={pki.caFile()}:allowPlainPsk=no",
        ):
            with pytest.raises(ValueError, match="allowPlainPsk"):
                clientEndpoint(description)
