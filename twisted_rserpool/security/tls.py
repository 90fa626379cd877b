"""TLS for RSerPool connections (RFC 5355): pre-shared keys, certificates, and what a
connection's handshake proved.

Pool elements and ENRP servers authenticate with TLS-PSK (RFC 4279; TLS 1.3 external PSKs
with (EC)DHE, TLS 1.2 ECDHE-PSK as a fallback, plain PSK suites only when asked for); pool
users authenticate the ENRP server by its X.509 certificate. :class:`TlsServerCreator`
and :class:`PskClientCreator` are connection creators for
:class:`twisted.protocols.tls.TLSMemoryBIOFactory` and
:func:`twisted.internet.endpoints.wrapClientTLS`; :func:`certificateClientCreator` is the
pool user's side. :func:`securityContextOf` tells, after the handshake, what a
connection proved.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import weakref
from collections.abc import Iterable, Mapping, Sequence
from typing import Literal

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from cryptography.hazmat.primitives.serialization import Encoding, load_pem_private_key
from OpenSSL import SSL, crypto
from service_identity import CertificateError, VerificationError
from service_identity.cryptography import (
    verify_certificate_hostname,
    verify_certificate_ip_address,
)
from twisted.internet.interfaces import (
    IOpenSSLClientConnectionCreator,
    IOpenSSLServerConnectionCreator,
)
from twisted.logger import Logger
from twisted.protocols.tls import TLSMemoryBIOProtocol
from zope.interface import implementer

from twisted_rserpool.security import _openssl
from twisted_rserpool.security.context import INSECURE, SecurityContext
from twisted_rserpool.security.psk import checkIdentity, checkKey
from twisted_rserpool.throttledlog import ThrottledLog

_log = Logger(namespace="twisted_rserpool.security.tls")

#: The kinds of private key a TLS server can sign its handshake with.
PrivateKey = (
    rsa.RSAPrivateKey
    | ec.EllipticCurvePrivateKey
    | ed25519.Ed25519PrivateKey
    | ed448.Ed448PrivateKey
)

#: A TLS protocol version, as endpoint strings spell it.
TlsVersion = Literal["1.2", "1.3"]

_PROTOCOL_VERSIONS: dict[str, int] = {"1.2": SSL.TLS1_2_VERSION, "1.3": SSL.TLS1_3_VERSION}

#: TLS 1.3 suites usable with an external PSK (OpenSSL binds such a PSK to SHA-256).
TLS13_PSK_CIPHERSUITES = "TLS_CHACHA20_POLY1305_SHA256:TLS_AES_128_GCM_SHA256"
#: TLS 1.3 suites of a listener with a certificate, in the server's order of preference.
#: The SHA-256 suites come first: TLS 1.3 picks the suite before it looks at the PSK, so a
#: PSK client offering OpenSSL's default list (SHA-384 first) would otherwise get a suite
#: its PSK cannot bind to.
TLS13_CIPHERSUITES = TLS13_PSK_CIPHERSUITES + ":TLS_AES_256_GCM_SHA384"
#: TLS 1.2 PSK suites accepted by default: ECDHE-PSK with an AEAD (RFC 7905), so that a key
#: that leaks later does not decrypt recorded sessions. OpenSSL has no ECDHE-PSK AES-GCM.
TLS12_PSK_CIPHERS = "ECDHE-PSK-CHACHA20-POLY1305"
#: TLS 1.2 PSK suites without forward secrecy (RFC 4279, 5487, 7905): only with
#: ``allowPlainPsk``.
TLS12_PLAIN_PSK_CIPHERS = "PSK-AES256-GCM-SHA384:PSK-CHACHA20-POLY1305:PSK-AES128-GCM-SHA256"
#: TLS 1.2 suites for certificate handshakes (ECDHE with AEAD only).
TLS12_CERTIFICATE_CIPHERS = (
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305:"
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256"
)

_OPTIONS = (
    SSL.OP_NO_COMPRESSION
    | SSL.OP_CIPHER_SERVER_PREFERENCE
    | SSL.OP_NO_TICKET
    | SSL.OP_NO_RENEGOTIATION
)

#: Names of the TLS alerts (RFC 8446 section 6.2) a failed handshake usually ends with.
_ALERTS: dict[int, str] = {
    10: "unexpected_message",
    20: "bad_record_mac",
    40: "handshake_failure",
    42: "bad_certificate",
    47: "illegal_parameter",
    50: "decode_error",
    51: "decrypt_error",
    70: "protocol_version",
    71: "insufficient_security",
    80: "internal_error",
    109: "missing_extension",
    110: "unsupported_extension",
    115: "unknown_psk_identity",
}
_FATAL = 2

#: The PSK identity each connection's handshake used: accepted by our server callback, or
#: offered by our client callback. Entries vanish with their connection.
_PSK_IDENTITIES: weakref.WeakKeyDictionary[SSL.Connection, str] = weakref.WeakKeyDictionary()
#: The host name each connection's server certificate was verified for by our creator.
_VERIFIED_NAMES: weakref.WeakKeyDictionary[SSL.Connection, str] = weakref.WeakKeyDictionary()


def _versionRange(minimumVersion: TlsVersion, maximumVersion: TlsVersion) -> tuple[int, int]:
    try:
        low, high = _PROTOCOL_VERSIONS[minimumVersion], _PROTOCOL_VERSIONS[maximumVersion]
    except KeyError as e:
        raise ValueError(f"unsupported TLS version {e.args[0]!r}; use '1.2' or '1.3'") from None
    if low > high:
        raise ValueError(f"minimum TLS version {minimumVersion} is above maximum {maximumVersion}")
    return low, high


def _tls12PskCiphers(allowPlainPsk: bool) -> str:
    if allowPlainPsk:
        return f"{TLS12_PSK_CIPHERS}:{TLS12_PLAIN_PSK_CIPHERS}"
    return TLS12_PSK_CIPHERS


def _newContext(minimumVersion: TlsVersion, maximumVersion: TlsVersion) -> SSL.Context:
    low, high = _versionRange(minimumVersion, maximumVersion)
    context = SSL.Context(SSL.TLS_METHOD)
    context.set_min_proto_version(low)
    context.set_max_proto_version(high)
    options = context.set_options(_OPTIONS)
    # An OpenSSL configuration file (OPENSSL_CONF) can set options on every new context;
    # the binding cannot clear them, so refuse one that allows TLS 1.3 PSK without (EC)DHE.
    if options & _openssl.OP_ALLOW_NO_DHE_KEX:
        raise ValueError(
            "the OpenSSL configuration sets AllowNoDHEKEX (TLS 1.3 PSK without (EC)DHE); remove it"
        )
    context.set_session_cache_mode(SSL.SESS_CACHE_OFF)
    # An idle connection gives its record buffers (about 34 KiB) back: thousands of PE
    # connections that carry a keep-alive every few seconds are idle almost always.
    context.set_mode(SSL.MODE_RELEASE_BUFFERS)
    return context


class _ConnectionRegistry:
    """Finds the pyOpenSSL Connection behind the ``SSL *`` a PSK callback receives."""

    def __init__(self) -> None:
        self._byPointer: weakref.WeakValueDictionary[int, SSL.Connection] = (
            weakref.WeakValueDictionary()
        )

    def new(self, context: SSL.Context) -> SSL.Connection:
        connection = SSL.Connection(context, None)
        # A new SSL object may reuse a freed one's address: forget what that one proved.
        _PSK_IDENTITIES.pop(connection, None)
        self._byPointer[_openssl.pointerOf(connection)] = connection
        return connection

    def find(self, pointer: int) -> SSL.Connection | None:
        return self._byPointer.get(pointer)


def _logCallbackFailure() -> None:
    _log.failure("TLS-PSK callback failed; the identity is refused")


def loadCertificates(path: str | os.PathLike[str]) -> list[x509.Certificate]:
    """The PEM certificates in a file, in order (a certificate and its chain, or CAs)."""
    with open(path, "rb") as f:
        data = f.read()
    try:
        certificates = x509.load_pem_x509_certificates(data)
    except ValueError as e:
        raise ValueError(f"{os.fspath(path)}: no PEM certificate ({e})") from None
    return certificates


def loadPrivateKey(path: str | os.PathLike[str]) -> PrivateKey:
    """The unencrypted PEM private key in a file."""
    with open(path, "rb") as f:
        data = f.read()
    try:
        key = load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as e:
        raise ValueError(f"{os.fspath(path)}: not an unencrypted PEM private key ({e})") from None
    if not isinstance(key, PrivateKey):
        raise ValueError(f"{os.fspath(path)}: not an RSA, EC, Ed25519 or Ed448 private key")
    return key


@implementer(IOpenSSLServerConnectionCreator)
class TlsServerCreator:
    """The server side of RSerPool TLS: pre-shared keys, a certificate, or both.

    With ``keys`` (identity -> key; the mapping is read at each handshake, so a caller may
    change a dict it passed), clients authenticate with TLS-PSK: TLS 1.3 with (EC)DHE
    (``psk_dhe_ke``; ``psk_ke`` is never accepted), or TLS 1.2 with
    :data:`TLS12_PSK_CIPHERS`; ``allowPlainPsk`` adds the suites without forward secrecy,
    :data:`TLS12_PLAIN_PSK_CIPHERS`. An unknown identity or a wrong key fails the
    handshake, and so does a known identity whose key cannot be used with the TLS 1.3
    suites the client offered (instead of going on without the PSK). With ``certificate``
    and ``privateKey``, the server also presents that certificate (and ``chain``) to
    clients that offer no PSK, such as pool users; such clients are not authenticated. One
    listener serves both kinds of client.
    """

    def __init__(
        self,
        keys: Mapping[str, bytes] | None = None,
        *,
        identityHint: str | None = None,
        certificate: x509.Certificate | None = None,
        privateKey: PrivateKey | None = None,
        chain: Sequence[x509.Certificate] = (),
        minimumVersion: TlsVersion = "1.2",
        maximumVersion: TlsVersion = "1.3",
        allowPlainPsk: bool = False,
    ) -> None:
        if keys is None and certificate is None:
            raise ValueError("a TLS server needs pre-shared keys, a certificate, or both")
        if allowPlainPsk and keys is None:
            raise ValueError("allowPlainPsk makes sense only with pre-shared keys")
        if (certificate is None) != (privateKey is None):
            raise ValueError("a certificate needs its private key, a private key its certificate")
        if identityHint is not None and keys is None:
            raise ValueError("an identity hint makes sense only with pre-shared keys")
        self._keys = keys
        self._certificateSubject = (
            certificate.subject.rfc4514_string() if certificate is not None else None
        )
        self._connections = _ConnectionRegistry()
        # Any stranger can cause these lines at will: a few a second, then a count.
        self.refusalLog = ThrottledLog(
            _log,
            None,
            "TLS: {count} more refused handshakes in {interval} s (not logged one by one)",
            burst=20,
        )
        context = _newContext(minimumVersion, maximumVersion)
        ciphers: list[str] = []
        suites = TLS13_PSK_CIPHERSUITES
        self._callbacks: list[_openssl.CallbackHandle] = []
        if keys is not None:
            ciphers.append(_tls12PskCiphers(allowPlainPsk))
            self._callbacks.append(
                _openssl.setPskServerCallback(context, self._lookup, _logCallbackFailure)
            )
            self._callbacks.append(
                _openssl.setCertificateCallback(
                    context, self._certificateHandshake, _logCallbackFailure
                )
            )
            if identityHint is not None:
                _openssl.useIdentityHint(context, checkIdentity(identityHint).encode("utf-8"))
        if certificate is not None and privateKey is not None:
            ciphers.append(TLS12_CERTIFICATE_CIPHERS)
            suites = TLS13_CIPHERSUITES
            try:
                context.use_certificate(certificate)
                context.use_privatekey(privateKey)
                context.check_privatekey()
                for extra in chain:
                    context.add_extra_chain_cert(extra)
            except SSL.Error as e:
                raise ValueError(f"the certificate and private key cannot be used: {e}") from None
        context.set_cipher_list(":".join(ciphers).encode("ascii"))
        _openssl.setTls13Ciphersuites(context, suites)
        context.set_verify(SSL.VERIFY_NONE)
        context.set_info_callback(self._info)
        self._context = context
        self._protocols: weakref.WeakKeyDictionary[
            SSL.Connection, weakref.ref[TLSMemoryBIOProtocol]
        ] = weakref.WeakKeyDictionary()

    def __repr__(self) -> str:
        # Never the keys: how many identities, and the certificate's subject.
        parts = []
        if self._keys is not None:
            parts.append(f"PSK ({len(self._keys)} identities)")
        if self._certificateSubject is not None:
            parts.append(f"certificate {self._certificateSubject}")
        return f"<TlsServerCreator {', '.join(parts)}>"

    @property
    def keys(self) -> Mapping[str, bytes] | None:
        """The pre-shared keys the next handshakes use (``None``: certificate only)."""
        return self._keys

    def replaceKeys(self, keys: Mapping[str, bytes]) -> None:
        """Use ``keys`` from the next handshake on (a reload; open connections stay)."""
        if self._keys is None:
            raise ValueError("this server was built without pre-shared keys")
        self._keys = keys

    def _peer(self, connection: SSL.Connection) -> str:
        reference = self._protocols.get(connection)
        protocol = None if reference is None else reference()
        transport = None if protocol is None else protocol.transport
        address = None if transport is None else transport.getPeer()
        host, port = getattr(address, "host", None), getattr(address, "port", None)
        return "an unknown peer" if host is None else f"{host}:{port}"

    def _info(self, connection: SSL.Connection, where: int, value: int) -> None:
        # Operators see why a client was refused (OpenSSL would only tell the client).
        try:
            if where & SSL.SSL_CB_WRITE_ALERT != SSL.SSL_CB_WRITE_ALERT or value >> 8 != _FATAL:
                return
            if _openssl.pendingErrorIsUnexpectedEof():
                # OpenSSL reports a TCP close without close_notify as a decode_error alert
                # it "sends" into a closed connection: after the handshake, that is a peer
                # going away (many clients never send close_notify), not a fault.
                if connection.get_peer_finished() is not None:
                    _log.debug(
                        "TLS with {peer}: closed without close_notify", peer=self._peer(connection)
                    )
                else:
                    self.refusalLog.warn(
                        "TLS with {peer}: closed the connection during the handshake",
                        peer=self._peer(connection),
                    )
                return
            self.refusalLog.warn(
                "TLS with {peer}: sent fatal alert {alert} ({reason})",
                peer=self._peer(connection),
                alert=_ALERTS.get(value & 0xFF, str(value & 0xFF)),
                reason=_openssl.pendingErrorReason() or "no reason given",
            )
        except BaseException:
            with contextlib.suppress(BaseException):
                _log.failure("TLS: logging an alert failed")

    def _lookup(self, pointer: int, identity: bytes) -> bytes | None:
        connection = self._connections.find(pointer)
        if connection is None:
            _log.error("TLS-PSK: a handshake on a connection this server did not create")
            return None
        _PSK_IDENTITIES.pop(connection, None)
        try:
            name = identity.decode("utf-8")
        except UnicodeDecodeError:
            self.refusalLog.warn(
                "TLS-PSK: refused a non-UTF-8 identity of {length} bytes ({identity}...)",
                identity=identity[:16].hex(),
                length=len(identity),
            )
            return None
        keys = self._keys
        key = None if keys is None else keys.get(name)
        if key is None:
            self.refusalLog.warn("TLS-PSK: refused unknown identity {identity!r}", identity=name)
            return None
        try:
            checkKey(key)
        except ValueError as e:
            _log.error("TLS-PSK: refused {identity!r}: {error}", identity=name, error=str(e))
            return None
        _PSK_IDENTITIES[connection] = name
        return key

    def _certificateHandshake(self, pointer: int) -> bool:
        connection = self._connections.find(pointer)
        if connection is None:
            _log.error("TLS: a handshake on a connection this server did not create")
            return False
        identity = _PSK_IDENTITIES.get(connection)
        if identity is None:
            return True
        # TLS 1.3: the client named a known identity, but OpenSSL dropped its PSK (the
        # suite chosen has another hash). Going on would make a silently anonymous session.
        self.refusalLog.warn(
            "TLS-PSK: refused {identity!r} from {peer}: its key cannot be used with the "
            "TLS 1.3 suites the client offered (a PSK here needs one of {suites})",
            identity=identity,
            peer=self._peer(connection),
            suites=TLS13_PSK_CIPHERSUITES,
        )
        return False

    def serverConnectionForTLS(self, tlsProtocol: TLSMemoryBIOProtocol) -> SSL.Connection:
        """A new server-side connection."""
        connection = self._connections.new(self._context)
        if tlsProtocol is not None:
            self._protocols[connection] = weakref.ref(tlsProtocol)
        return connection


def pskServerCreator(
    keys: Mapping[str, bytes],
    *,
    identityHint: str | None = None,
    minimumVersion: TlsVersion = "1.2",
    maximumVersion: TlsVersion = "1.3",
    allowPlainPsk: bool = False,
) -> TlsServerCreator:
    """A server that accepts TLS-PSK clients only."""
    return TlsServerCreator(
        keys,
        identityHint=identityHint,
        minimumVersion=minimumVersion,
        maximumVersion=maximumVersion,
        allowPlainPsk=allowPlainPsk,
    )


def certificateServerCreator(
    certificate: x509.Certificate,
    privateKey: PrivateKey,
    *,
    chain: Sequence[x509.Certificate] = (),
    minimumVersion: TlsVersion = "1.2",
    maximumVersion: TlsVersion = "1.3",
) -> TlsServerCreator:
    """A server that presents a certificate and accepts any client (pool users)."""
    return TlsServerCreator(
        None,
        certificate=certificate,
        privateKey=privateKey,
        chain=chain,
        minimumVersion=minimumVersion,
        maximumVersion=maximumVersion,
    )


def _mismatchText(error: Exception) -> str:
    """Why service_identity refused a name, without its reprs of bytes."""
    mismatches = getattr(error, "errors", None)
    if isinstance(mismatches, list) and mismatches:
        kinds = ", ".join(type(m).__name__ for m in mismatches)
        return f"no subjectAltName matches ({kinds})"
    return str(error)


def _rejectCertificate(
    connection: SSL.Connection, certificate: object, error: int, depth: int, ok: int
) -> bool:
    return False


@implementer(IOpenSSLClientConnectionCreator)
class PskClientCreator:
    """The client side of TLS-PSK: offers one identity and its key, accepts nothing else.

    Only suites the PSK can be used with are offered (TLS 1.3 SHA-256 suites with
    ``psk_dhe_ke``, TLS 1.2 ECDHE-PSK; plain TLS 1.2 PSK suites too with
    ``allowPlainPsk``), and any certificate the server presents is rejected, so a completed
    handshake means the server knew the key.
    """

    def __init__(
        self,
        identity: str,
        key: bytes,
        *,
        minimumVersion: TlsVersion = "1.2",
        maximumVersion: TlsVersion = "1.3",
        allowPlainPsk: bool = False,
        pskFile: str | None = None,
    ) -> None:
        self.identity = checkIdentity(identity)
        self._identityBytes = identity.encode("utf-8")
        self._key = checkKey(bytes(key))
        #: The PSK file the key came from, if any (what a reload reads again).
        self.pskFile = pskFile
        self._connections = _ConnectionRegistry()
        context = _newContext(minimumVersion, maximumVersion)
        context.set_cipher_list(_tls12PskCiphers(allowPlainPsk).encode("ascii"))
        _openssl.setTls13Ciphersuites(context, TLS13_PSK_CIPHERSUITES)
        context.set_verify(SSL.VERIFY_PEER, _rejectCertificate)
        self._callback = _openssl.setPskClientCallback(context, self._choose, _logCallbackFailure)
        self._context = context

    def __repr__(self) -> str:
        return f"<PskClientCreator identity={self.identity!r}>"

    @property
    def key(self) -> bytes:
        """The key the next handshakes offer."""
        return self._key

    def replaceKey(self, key: bytes) -> None:
        """Offer ``key`` from the next handshake on (a reload; open connections stay)."""
        self._key = checkKey(bytes(key))

    def _choose(self, pointer: int, hint: bytes | None) -> tuple[bytes, bytes] | None:
        connection = self._connections.find(pointer)
        if connection is None:
            _log.error("TLS-PSK: a handshake on a connection this client did not create")
            return None
        _PSK_IDENTITIES[connection] = self.identity
        return self._identityBytes, self._key

    def clientConnectionForTLS(self, tlsProtocol: TLSMemoryBIOProtocol) -> SSL.Connection:
        """A new client-side connection."""
        return self._connections.new(self._context)


@implementer(IOpenSSLClientConnectionCreator)
class CertificateClientCreator:
    """The pool user's side: verifies the server's certificate chain against
    ``trustRoots`` (CA certificates) and requires ``hostname`` (a DNS name or an IP
    address) among its subjectAltNames, as service_identity matches them.

    Like Twisted's ``optionsForClientTLS``, but failing closed: any error while checking
    the name refuses the certificate (Twisted 26.10 lets a certificate without
    subjectAltName through, logging the error).
    """

    def __init__(
        self,
        hostname: str,
        trustRoots: Iterable[x509.Certificate],
        *,
        minimumVersion: TlsVersion = "1.2",
        maximumVersion: TlsVersion = "1.3",
    ) -> None:
        from twisted.internet.abstract import isIPAddress, isIPv6Address  # noqa: PLC0415

        if not hostname:
            raise ValueError("certificate verification needs the server's host name")
        self.hostname = hostname
        self._isAddress = isIPAddress(hostname) or isIPv6Address(hostname)
        roots = list(trustRoots)
        if not roots:
            raise ValueError("certificate verification needs at least one CA certificate")
        context = _newContext(minimumVersion, maximumVersion)
        context.set_cipher_list(TLS12_CERTIFICATE_CIPHERS.encode("ascii"))
        _openssl.setTls13Ciphersuites(context, TLS13_CIPHERSUITES)
        store = context.get_cert_store()
        assert store is not None
        for root in roots:
            store.add_cert(crypto.X509.from_cryptography(root))
        context.set_verify(SSL.VERIFY_PEER, self._verify)
        self._context = context

    def __repr__(self) -> str:
        return f"<CertificateClientCreator hostname={self.hostname!r}>"

    def _verify(
        self, connection: SSL.Connection, certificate: object, error: int, depth: int, ok: int
    ) -> bool:
        try:
            if not ok:
                return False
            if depth != 0:
                return True
            if not isinstance(certificate, crypto.X509):
                return False
            leaf = certificate.to_cryptography()
            try:
                if self._isAddress:
                    verify_certificate_ip_address(leaf, self.hostname)
                else:
                    verify_certificate_hostname(leaf, self.hostname)
            except (VerificationError, CertificateError) as e:
                _log.warn(
                    "TLS: certificate {subject} does not name {hostname}: {error}",
                    subject=leaf.subject.rfc4514_string(),
                    hostname=self.hostname,
                    error=_mismatchText(e),
                )
                return False
            _VERIFIED_NAMES[connection] = self.hostname
            return True
        except BaseException:
            _log.failure("TLS: certificate verification failed; the certificate is refused")
            return False

    def clientConnectionForTLS(self, tlsProtocol: TLSMemoryBIOProtocol) -> SSL.Connection:
        """A new client-side connection."""
        connection = SSL.Connection(self._context, None)
        _VERIFIED_NAMES.pop(connection, None)
        if not self._isAddress:
            connection.set_tlsext_host_name(_hostnameBytes(self.hostname))
        return connection


def _hostnameBytes(hostname: str) -> bytes:
    try:
        return hostname.encode("idna")
    except UnicodeError:
        raise ValueError(f"{hostname!r} is not a valid host name") from None


def certificateClientCreator(
    hostname: str,
    trustRoots: Iterable[x509.Certificate],
    *,
    minimumVersion: TlsVersion = "1.2",
    maximumVersion: TlsVersion = "1.3",
) -> CertificateClientCreator:
    """A client that verifies the server's certificate (see :class:`CertificateClientCreator`)."""
    return CertificateClientCreator(
        hostname, trustRoots, minimumVersion=minimumVersion, maximumVersion=maximumVersion
    )


def certificateFingerprint(certificate: x509.Certificate) -> str:
    """The SHA-256 fingerprint of a certificate's DER encoding, as ``openssl x509
    -fingerprint -sha256`` prints it (upper-case hex pairs joined by colons)."""
    digest = hashlib.sha256(certificate.public_bytes(Encoding.DER)).hexdigest().upper()
    return ":".join(digest[i : i + 2] for i in range(0, len(digest), 2))


def _pskUsed(connection: SSL.Connection, version: str, cipher: str | None) -> bool:
    if version == "TLSv1.3":
        # An external PSK handshake is a "resumption" to OpenSSL; a certificate one is not.
        return _openssl.sessionReused(connection)
    return cipher is not None and "PSK" in cipher


def securityContextOfConnection(connection: SSL.Connection) -> SecurityContext:
    """What the completed handshake of a pyOpenSSL connection proved about the peer."""
    if connection.get_finished() is None or connection.get_peer_finished() is None:
        return SecurityContext(authenticated=False)
    version = connection.get_protocol_version_name()
    cipher = connection.get_cipher_name()
    identity = _PSK_IDENTITIES.get(connection)
    if identity is not None and not _pskUsed(connection, version, cipher):
        identity = None
    subject = fingerprint = None
    certificateVerified = False
    certificate = connection.get_peer_certificate(as_cryptography=True)
    if certificate is not None:
        subject = certificate.subject.rfc4514_string()
        fingerprint = certificateFingerprint(certificate)
        # Authenticated only when our CertificateClientCreator checked the chain and the
        # name; a certificate some other code accepted tells us who, not that it was checked.
        certificateVerified = (
            connection in _VERIFIED_NAMES
            and bool(_openssl.verifyMode(connection) & SSL.VERIFY_PEER)
            and _openssl.verifyResult(connection) == _openssl.X509_V_OK
        )
    return SecurityContext(
        authenticated=identity is not None or certificateVerified,
        tls_version=version,
        cipher=cipher,
        psk_identity=identity,
        certificate_subject=subject,
        certificate_fingerprint=fingerprint,
    )


def securityContextOf(transport: object) -> SecurityContext:
    """The :class:`SecurityContext` of a connection, from its transport.

    Call it from ``handshakeCompleted``. A transport without TLS gives :data:`INSECURE`; a
    TLS transport whose handshake has not completed gives an unauthenticated context
    without a version.
    """
    getHandle = getattr(transport, "getHandle", None)
    handle = getHandle() if callable(getHandle) else None
    if not isinstance(handle, SSL.Connection):
        return INSECURE
    return securityContextOfConnection(handle)
