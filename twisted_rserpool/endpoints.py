"""``tlspsk:`` endpoint strings: RSerPool's TLS (pre-shared keys or certificates) over TCP.

Server::

    tlspsk:3864:interface=127.0.0.1:pskFile=keys.psk
    tlspsk:port=3864:pskFile=keys.psk:certificate=server.pem:privateKey=server.key

Client::

    tlspsk:host=127.0.0.1:port=3864:identity=pe-17:pskFile=keys.psk
    tlspsk:host=enrp.example.net:port=3864:caCertificate=ca.pem

Every option is described in ``docs/security-tls.md``. The parsers are Twisted endpoint
plugins (``twisted/plugins/twisted_rserpool_plugins.py``), so ``serverFromString`` and
``clientFromString`` understand the prefix. This module imports neither the reactor nor
OpenSSL until a string is parsed, as plugin modules must stay cheap.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from twisted.internet.interfaces import (
    IStreamClientEndpoint,
    IStreamClientEndpointStringParserWithReactor,
    IStreamServerEndpoint,
    IStreamServerEndpointStringParser,
)
from twisted.plugin import IPlugin
from zope.interface import implementer

if TYPE_CHECKING:
    from cryptography import x509
    from twisted.internet.defer import Deferred
    from twisted.internet.interfaces import (
        IListeningPort,
        IOpenSSLClientConnectionCreator,
        IOpenSSLServerConnectionCreator,
        IProtocol,
        IProtocolFactory,
        IReactorCore,
    )

    from twisted_rserpool.security.tls import TlsVersion

PREFIX = "tlspsk"

_SERVER_OPTIONS = frozenset(
    {
        "port",
        "interface",
        "backlog",
        "pskFile",
        "identityHint",
        "certificate",
        "privateKey",
        "minimumTlsVersion",
        "maximumTlsVersion",
        "allowPlainPsk",
    }
)
_CLIENT_OPTIONS = frozenset(
    {
        "host",
        "port",
        "timeout",
        "bindAddress",
        "identity",
        "pskFile",
        "caCertificate",
        "hostname",
        "minimumTlsVersion",
        "maximumTlsVersion",
        "allowPlainPsk",
    }
)


@implementer(IStreamServerEndpoint)
class TlsServerEndpoint:
    """Listens on ``wrappedEndpoint`` and runs TLS made by ``creator`` on each connection.

    A connection the protocol factory refuses (``buildProtocol`` returns ``None``, as over a
    connection cap) is closed at accept, before any TLS work is done for it.
    """

    def __init__(
        self, wrappedEndpoint: IStreamServerEndpoint, creator: IOpenSSLServerConnectionCreator
    ) -> None:
        self.wrappedEndpoint = wrappedEndpoint
        self.creator = creator

    def listen(self, protocolFactory: IProtocolFactory) -> Deferred[IListeningPort]:
        """Listen for TLS connections served by ``protocolFactory``."""
        from twisted_rserpool.transport.admission import AdmittingTLSFactory  # noqa: PLC0415

        return self.wrappedEndpoint.listen(
            AdmittingTLSFactory(self.creator, False, protocolFactory)
        )


@implementer(IStreamClientEndpoint)
class TlsClientEndpoint:
    """Connects through ``wrappedEndpoint`` and runs TLS made by ``creator`` over it."""

    def __init__(
        self, wrappedEndpoint: IStreamClientEndpoint, creator: IOpenSSLClientConnectionCreator
    ) -> None:
        self.wrappedEndpoint = wrappedEndpoint
        self.creator = creator

    def connect(self, protocolFactory: IProtocolFactory) -> Deferred[IProtocol]:
        """Connect, then run ``protocolFactory``'s protocol over TLS."""
        from twisted.internet.endpoints import wrapClientTLS  # noqa: PLC0415

        return wrapClientTLS(self.creator, self.wrappedEndpoint).connect(protocolFactory)


def _strings(kwargs: dict[str, object]) -> dict[str, str]:
    return {name: str(value) for name, value in kwargs.items()}


def _checkNames(given: dict[str, str], allowed: frozenset[str], side: str) -> None:
    unknown = sorted(set(given) - allowed)
    if unknown:
        raise ValueError(
            f"unknown {PREFIX}: {side} option(s) {', '.join(unknown)}; "
            f"known: {', '.join(sorted(allowed))}"
        )


def _port(value: str) -> int:
    try:
        port = int(value)
    except ValueError:
        raise ValueError(f"{PREFIX}: port {value!r} is not a number") from None
    if not 0 <= port <= 65535:
        raise ValueError(f"{PREFIX}: port {port} is out of range")
    return port


def _positive(name: str, value: str, kind: type[int] | type[float]) -> float:
    try:
        number = kind(value)
    except ValueError:
        raise ValueError(f"{PREFIX}: {name} {value!r} is not a number") from None
    if number <= 0:
        raise ValueError(f"{PREFIX}: {name} must be positive")
    return number


def _version(name: str, value: str | None, default: TlsVersion) -> TlsVersion:
    if value is None:
        return default
    if value == "1.2":
        return "1.2"
    if value == "1.3":
        return "1.3"
    raise ValueError(f"{PREFIX}: {name} must be 1.2 or 1.3, not {value!r}")


def _yesNo(name: str, value: str | None) -> bool:
    if value is None or value == "no":
        return False
    if value == "yes":
        return True
    raise ValueError(f"{PREFIX}: {name} must be yes or no, not {value!r}")


def _positional(args: tuple[str, ...], names: tuple[str, ...], kwargs: dict[str, str]) -> None:
    if len(args) > len(names):
        raise ValueError(f"{PREFIX}: too many positional arguments {args!r}")
    for name, value in zip(names, args, strict=False):
        if name in kwargs:
            raise ValueError(f"{PREFIX}: {name} given twice")
        kwargs[name] = value


def _isIPv6(address: str) -> bool:
    from twisted.internet.abstract import isIPv6Address  # noqa: PLC0415

    return isIPv6Address(address)


def _isIPv4(address: str) -> bool:
    from twisted.internet.abstract import isIPAddress  # noqa: PLC0415

    return isIPAddress(address)


def _fileOption(name: str, value: str) -> str:
    if not value:
        raise ValueError(f"{PREFIX}: {name} is empty")
    return os.path.expanduser(value)


@implementer(IPlugin, IStreamServerEndpointStringParser)
class TlsPskServerParser:
    """Parses ``tlspsk:PORT:option=value:...`` into a TLS listening endpoint.

    Options: ``port`` (also positional), ``interface``, ``backlog``, ``pskFile``,
    ``identityHint``, ``certificate`` (PEM certificate, its chain after it), ``privateKey``
    (PEM; defaults to the certificate file), ``minimumTlsVersion``, ``maximumTlsVersion``
    (``1.2`` or ``1.3``), ``allowPlainPsk`` (``yes`` also accepts TLS 1.2 PSK suites
    without forward secrecy; default ``no``). At least one of ``pskFile`` and
    ``certificate`` is required.
    """

    prefix = PREFIX

    def parseStreamServer(
        self, reactor: IReactorCore, *args: object, **kwargs: object
    ) -> IStreamServerEndpoint:
        """The endpoint a ``tlspsk:`` server string describes; ValueError if it is wrong."""
        from twisted.internet.endpoints import (  # noqa: PLC0415
            TCP4ServerEndpoint,
            TCP6ServerEndpoint,
        )

        from twisted_rserpool.security.psk import loadPskFile  # noqa: PLC0415
        from twisted_rserpool.security.tls import (  # noqa: PLC0415
            TlsServerCreator,
            loadCertificates,
            loadPrivateKey,
        )

        options = _strings(kwargs)
        _positional(tuple(str(a) for a in args), ("port",), options)
        _checkNames(options, _SERVER_OPTIONS, "server")
        if "port" not in options:
            raise ValueError(f"{PREFIX}: a server needs a port")
        port = _port(options["port"])
        interface = options.get("interface", "")
        backlog = int(_positive("backlog", options.get("backlog", "50"), int))
        pskFile = options.get("pskFile")
        certificateFile = options.get("certificate")
        privateKeyFile = options.get("privateKey")
        if pskFile is None and certificateFile is None:
            raise ValueError(f"{PREFIX}: a server needs pskFile, certificate, or both")
        if privateKeyFile is not None and certificateFile is None:
            raise ValueError(f"{PREFIX}: privateKey needs certificate")
        if "identityHint" in options and pskFile is None:
            raise ValueError(f"{PREFIX}: identityHint needs pskFile")
        allowPlainPsk = _yesNo("allowPlainPsk", options.get("allowPlainPsk"))
        if "allowPlainPsk" in options and pskFile is None:
            raise ValueError(f"{PREFIX}: allowPlainPsk needs pskFile")
        minimum = _version("minimumTlsVersion", options.get("minimumTlsVersion"), "1.2")
        maximum = _version("maximumTlsVersion", options.get("maximumTlsVersion"), "1.3")

        keys = loadPskFile(_fileOption("pskFile", pskFile)) if pskFile is not None else None
        certificate = privateKey = None
        chain: list[x509.Certificate] = []
        if certificateFile is not None:
            certificateFile = _fileOption("certificate", certificateFile)
            certificate, *chain = loadCertificates(certificateFile)
            privateKey = loadPrivateKey(
                _fileOption("privateKey", privateKeyFile)
                if privateKeyFile is not None
                else certificateFile
            )
        creator = TlsServerCreator(
            keys,
            identityHint=options.get("identityHint"),
            certificate=certificate,
            privateKey=privateKey,
            chain=chain,
            minimumVersion=minimum,
            maximumVersion=maximum,
            allowPlainPsk=allowPlainPsk,
        )
        endpointClass = TCP6ServerEndpoint if _isIPv6(interface) else TCP4ServerEndpoint
        wrapped = endpointClass(reactor, port, backlog, interface)
        return TlsServerEndpoint(wrapped, creator)


@implementer(IPlugin, IStreamClientEndpointStringParserWithReactor)
class TlsPskClientParser:
    """Parses ``tlspsk:host=H:port=P:option=value:...`` into a TLS client endpoint.

    Options: ``host`` and ``port`` (also positional), ``timeout`` (seconds),
    ``bindAddress``, ``minimumTlsVersion``, ``maximumTlsVersion``; then either PSK
    (``pskFile``, and ``identity`` unless the file holds a single identity; ``allowPlainPsk``
    as for the server) or certificate verification (``caCertificate``: PEM CA
    certificates; ``hostname``: the DNS name or IP address the certificate must name,
    ``host`` by default).
    """

    prefix = PREFIX

    def parseStreamClient(
        self, reactor: IReactorCore, *args: object, **kwargs: object
    ) -> IStreamClientEndpoint:
        """The endpoint a ``tlspsk:`` client string describes; ValueError if it is wrong."""
        from twisted.internet.endpoints import (  # noqa: PLC0415
            HostnameEndpoint,
            TCP4ClientEndpoint,
            TCP6ClientEndpoint,
        )

        from twisted_rserpool.security.psk import loadPskFile  # noqa: PLC0415
        from twisted_rserpool.security.tls import (  # noqa: PLC0415
            PskClientCreator,
            certificateClientCreator,
            loadCertificates,
        )

        options = _strings(kwargs)
        _positional(tuple(str(a) for a in args), ("host", "port"), options)
        _checkNames(options, _CLIENT_OPTIONS, "client")
        if "host" not in options or "port" not in options:
            raise ValueError(f"{PREFIX}: a client needs host and port")
        host = options["host"]
        if not host:
            raise ValueError(f"{PREFIX}: host is empty")
        port = _port(options["port"])
        timeout = _positive("timeout", options.get("timeout", "30"), float)
        bindAddress = (options["bindAddress"], 0) if "bindAddress" in options else None
        minimum = _version("minimumTlsVersion", options.get("minimumTlsVersion"), "1.2")
        maximum = _version("maximumTlsVersion", options.get("maximumTlsVersion"), "1.3")
        pskFile = options.get("pskFile")
        caFile = options.get("caCertificate")
        allowPlainPsk = _yesNo("allowPlainPsk", options.get("allowPlainPsk"))

        creator: IOpenSSLClientConnectionCreator
        if pskFile is not None and caFile is not None:
            raise ValueError(
                f"{PREFIX}: give pskFile (pre-shared key) or caCertificate "
                "(certificate verification), not both"
            )
        if pskFile is not None:
            if "hostname" in options:
                raise ValueError(f"{PREFIX}: hostname needs caCertificate")
            keys = loadPskFile(_fileOption("pskFile", pskFile))
            identity = options.get("identity")
            if identity is None:
                if len(keys) != 1:
                    raise ValueError(
                        f"{PREFIX}: {keys.path} holds {len(keys)} identities; choose one "
                        "with identity="
                    )
                (identity,) = keys
            if identity not in keys:
                raise ValueError(f"{PREFIX}: identity {identity!r} is not in {keys.path}")
            creator = PskClientCreator(
                identity,
                keys[identity],
                minimumVersion=minimum,
                maximumVersion=maximum,
                allowPlainPsk=allowPlainPsk,
            )
        elif caFile is not None:
            if "identity" in options:
                raise ValueError(f"{PREFIX}: identity needs pskFile")
            if "allowPlainPsk" in options:
                raise ValueError(f"{PREFIX}: allowPlainPsk needs pskFile")
            creator = certificateClientCreator(
                options.get("hostname", host),
                loadCertificates(_fileOption("caCertificate", caFile)),
                minimumVersion=minimum,
                maximumVersion=maximum,
            )
        else:
            raise ValueError(f"{PREFIX}: a client needs pskFile or caCertificate")

        wrapped: IStreamClientEndpoint
        if _isIPv4(host):
            wrapped = TCP4ClientEndpoint(reactor, host, port, timeout, bindAddress)
        elif _isIPv6(host):
            wrapped = TCP6ClientEndpoint(  # type: ignore[no-untyped-call]
                reactor, host, port, timeout, bindAddress
            )
        else:
            wrapped = HostnameEndpoint(reactor, host, port, timeout, bindAddress)
        return TlsClientEndpoint(wrapped, creator)
