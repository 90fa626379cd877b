"""``tlspsk:`` endpoint strings: RSerPool's TLS (pre-shared keys or certificates) over TCP.

Server::

    tlspsk:3864:interface=127.0.0.1:pskFile=keys.psk
    tlspsk:port=3864:pskFile=keys.psk:certificate=server.pem:privateKey=server.key

Client::

    tlspsk:host=127.0.0.1:port=3864:identity=pe-17:pskFile=keys.psk
    tlspsk:host=enrp.example.net:port=3864:caCertificate=ca.pem

Pool (client only; a session to a pool element of pool ``echo``, with failover)::

    rserpool:pool=echo:enrp=tlspsk\\:host=127.0.0.1\\:port=3863\\:caCertificate=ca.pem:caCertificate=ca.pem

Every ``tlspsk`` option is described in ``docs/security-tls.md``, the ``rserpool`` ones in
:class:`RSerPoolClientParser` and ``docs/asap.md``. The parsers are Twisted endpoint
plugins (``twisted/plugins/twisted_rserpool_plugins.py``), so ``serverFromString`` and
``clientFromString`` understand the prefix. This module imports neither the reactor nor
OpenSSL until a string is parsed, as plugin modules must stay cheap.
"""

from __future__ import annotations

import os
from collections.abc import Callable
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
    from twisted.internet.endpoints import TCP4ServerEndpoint, TCP6ServerEndpoint
    from twisted.internet.interfaces import (
        IListeningPort,
        IOpenSSLClientConnectionCreator,
        IOpenSSLServerConnectionCreator,
        IProtocol,
        IProtocolFactory,
        IReactorCore,
    )

    from twisted_rserpool.security.tls import TlsVersion
    from twisted_rserpool.wire.parameters import PoolElementParameter

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

    def __repr__(self) -> str:
        from twisted_rserpool.describe import (  # noqa: PLC0415
            endpointAddress,
            endpointText,
            objectText,
        )

        address = endpointAddress(self.wrappedEndpoint)
        if address is None:
            where = f"over {endpointText(self.wrappedEndpoint)}"
        else:
            interface, port = address
            where = f"{PREFIX}:port={port}" + (
                f":interface={_quoted(interface)}" if interface else ""
            )
        return f"TlsServerEndpoint({where}, {objectText(self.creator)})"

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

    def __repr__(self) -> str:
        # As the description that makes it reads, without the files and the key.
        from twisted_rserpool.describe import endpointAddress, endpointText  # noqa: PLC0415

        address = endpointAddress(self.wrappedEndpoint)
        if address is None:
            where = f"{PREFIX}:over={endpointText(self.wrappedEndpoint)}"
        else:
            host, port = address
            where = f"{PREFIX}:host={_quoted(host)}:port={port}"
        for option in ("identity", "hostname"):
            value = getattr(self.creator, option, None)
            if isinstance(value, str):
                where += f":{option}={_quoted(value)}"
        return f"TlsClientEndpoint({where})"

    def connect(self, protocolFactory: IProtocolFactory) -> Deferred[IProtocol]:
        """Connect, then run ``protocolFactory``'s protocol over TLS.

        As Twisted's ``wrapClientTLS``, with the TLS of
        :class:`~twisted_rserpool.transport.tlsgather.GatheringTLSFactory`: what the
        protocol writes while it handles a read leaves at the end of that read.
        """
        from twisted_rserpool.transport.tlsgather import GatheringTLSFactory  # noqa: PLC0415

        connecting = self.wrappedEndpoint.connect(
            GatheringTLSFactory(self.creator, True, protocolFactory)
        )
        return connecting.addCallback(_wrappedProtocol)


def _wrappedProtocol(tls: IProtocol) -> IProtocol:
    wrapped: IProtocol = tls.wrappedProtocol  # type: ignore[attr-defined]
    return wrapped


def _quoted(value: str) -> str:
    """``value`` as an argument of an endpoint description (colons escaped)."""
    from twisted.internet.endpoints import quoteStringArgument  # noqa: PLC0415

    quoted: str = quoteStringArgument(value)  # type: ignore[no-untyped-call]
    return quoted


def _strings(kwargs: dict[str, object]) -> dict[str, str]:
    return {name: str(value) for name, value in kwargs.items()}


def _checkNames(
    given: dict[str, str], allowed: frozenset[str], side: str, prefix: str = PREFIX
) -> None:
    unknown = sorted(set(given) - allowed)
    if unknown:
        raise ValueError(
            f"unknown {prefix}: {side} option(s) {', '.join(unknown)}; "
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


def _positive(name: str, value: str, kind: type[int] | type[float], prefix: str = PREFIX) -> float:
    try:
        number = kind(value)
    except ValueError:
        raise ValueError(f"{prefix}: {name} {value!r} is not a number") from None
    if number <= 0:
        raise ValueError(f"{prefix}: {name} must be positive")
    return number


def _version(name: str, value: str | None, default: TlsVersion) -> TlsVersion:
    if value is None:
        return default
    if value == "1.2":
        return "1.2"
    if value == "1.3":
        return "1.3"
    raise ValueError(f"{PREFIX}: {name} must be 1.2 or 1.3, not {value!r}")


def _yesNo(name: str, value: str | None, prefix: str = PREFIX) -> bool:
    if value is None or value == "no":
        return False
    if value == "yes":
        return True
    raise ValueError(f"{prefix}: {name} must be yes or no, not {value!r}")


def _positional(
    args: tuple[str, ...], names: tuple[str, ...], kwargs: dict[str, str], prefix: str = PREFIX
) -> None:
    if len(args) > len(names):
        raise ValueError(f"{prefix}: too many positional arguments {args!r}")
    for name, value in zip(names, args, strict=False):
        if name in kwargs:
            raise ValueError(f"{prefix}: {name} given twice")
        kwargs[name] = value


def _isIPv6(address: str) -> bool:
    from twisted.internet.abstract import isIPv6Address  # noqa: PLC0415

    return isIPv6Address(address)


def _isIPv4(address: str) -> bool:
    from twisted.internet.abstract import isIPAddress  # noqa: PLC0415

    return isIPAddress(address)


def _fileOption(name: str, value: str, prefix: str = PREFIX) -> str:
    if not value:
        raise ValueError(f"{prefix}: {name} is empty")
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
        from twisted_rserpool.transport.writethrough import (  # noqa: PLC0415
            WriteThroughTCP4ServerEndpoint,
            WriteThroughTCP6ServerEndpoint,
        )

        endpointClass: type[TCP4ServerEndpoint | TCP6ServerEndpoint] = (
            WriteThroughTCP6ServerEndpoint if _isIPv6(interface) else WriteThroughTCP4ServerEndpoint
        )
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
                pskFile=keys.path,
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


POOL_PREFIX = "rserpool"

_POOL_OPTIONS = frozenset(
    {
        "pool",
        "caCertificate",
        "pskFile",
        "identity",
        "insecure",
        "failover",
        "ppid",
        "streaming",
        "connectTimeout",
        "maxFailoverAttempts",
    }
)


def _enrpIndex(name: str) -> int | None:
    """1 for ``enrp``, N for ``enrpN`` (N >= 2), else ``None``."""
    if name == "enrp":
        return 1
    digits = name[4:]
    if name.startswith("enrp") and digits.isdigit() and int(digits) >= 2 and digits[0] != "0":
        return int(digits)
    return None


@implementer(IPlugin, IStreamClientEndpointStringParserWithReactor)
class RSerPoolClientParser:
    """Parses ``rserpool:pool=NAME:enrp=DESCRIPTION:...`` into a
    :class:`~twisted_rserpool.asap.endpoint.PoolEndpoint` with a pool user of its own.

    Options:

    - ``pool`` (also positional): the pool handle (UTF-8).
    - ``enrp``, then ``enrp2``, ``enrp3``...: the ENRP servers, hunted in that order, each a
      client endpoint description (``tlspsk:...``) whose colons are escaped with a
      backslash (``twisted.internet.endpoints.quoteStringArgument`` does it).
    - How sessions reach pool elements: ``caCertificate`` (PEM trust roots; a PE's
      certificate must name its IP address), or ``pskFile`` (and ``identity`` unless the
      file holds one), or ``insecure=yes`` for plain TCP. One of them is required.
    - ``failover``: ``yes`` (default; the protocol sees one session across pool element
      failures) or ``no`` (the session ends with its pool element).
    - ``ppid`` (the application's payload protocol identifier, default 0),
      ``streaming`` (``yes`` merges the writes of one reactor turn), ``connectTimeout``
      (seconds, default 5), ``maxFailoverAttempts`` (default 5).

    Every mistake is a ``ValueError`` naming the option.
    """

    prefix = POOL_PREFIX

    def parseStreamClient(
        self, reactor: IReactorCore, *args: object, **kwargs: object
    ) -> IStreamClientEndpoint:
        """The endpoint an ``rserpool:`` string describes; ValueError if it is wrong."""
        from twisted.internet.endpoints import clientFromString  # noqa: PLC0415

        from twisted_rserpool.asap.endpoint import PoolEndpoint  # noqa: PLC0415
        from twisted_rserpool.asap.user import PoolUser  # noqa: PLC0415
        from twisted_rserpool.security.tls import loadCertificates  # noqa: PLC0415
        from twisted_rserpool.wire.tcpmapping import ASAP_PPID, ENRP_PPID  # noqa: PLC0415

        p = POOL_PREFIX
        options = _strings(kwargs)
        _positional(tuple(str(a) for a in args), ("pool",), options, p)
        servers: dict[int, str] = {}
        for name in list(options):
            index = _enrpIndex(name)
            if index is not None:
                servers[index] = options.pop(name)
        _checkNames(options, _POOL_OPTIONS | {"enrp", "enrpN"}, "client", p)
        pool = options.get("pool", "")
        if not pool:
            raise ValueError(f"{p}: pool is missing (the pool handle, e.g. pool=echo)")
        if not servers:
            raise ValueError(
                f"{p}: enrp is missing (an ENRP server's client description, colons escaped)"
            )
        missing = [n for n in range(1, max(servers) + 1) if n not in servers]
        if missing:
            raise ValueError(f"{p}: enrp{missing[0]} is missing (enrpN numbers have no gaps)")
        enrpEndpoints: list[IStreamClientEndpoint] = []
        for index in sorted(servers):
            name = "enrp" if index == 1 else f"enrp{index}"
            description = servers[index]
            if not description:
                raise ValueError(f"{p}: {name} is empty")
            try:
                enrpEndpoints.append(clientFromString(reactor, description))  # type: ignore[no-untyped-call]
            except (ValueError, TypeError, KeyError, OSError) as e:
                raise ValueError(f"{p}: {name} {description!r}: {e}") from None

        failover = options.get("failover", "yes")
        if failover not in ("yes", "no"):
            raise ValueError(f"{p}: failover must be yes or no, not {failover!r}")
        streaming = _yesNo("streaming", options.get("streaming"), p)
        insecure = _yesNo("insecure", options.get("insecure"), p)
        try:
            ppid = int(options.get("ppid", "0"))
        except ValueError:
            raise ValueError(f"{p}: ppid {options['ppid']!r} is not a number") from None
        if not 0 <= ppid < 2**32:
            raise ValueError(f"{p}: ppid {ppid} is not a 32-bit unsigned number")
        if ppid in (ASAP_PPID, ENRP_PPID):
            raise ValueError(f"{p}: ppid {ppid} is reserved for ASAP/ENRP")
        connectTimeout = _positive("connectTimeout", options.get("connectTimeout", "5"), float, p)
        attempts = int(
            _positive("maxFailoverAttempts", options.get("maxFailoverAttempts", "5"), int, p)
        )

        caFile = options.get("caCertificate")
        pskFile = options.get("pskFile")
        chosen = [n for n, on in (("caCertificate", caFile), ("pskFile", pskFile)) if on]
        if insecure:
            chosen.append("insecure")
        if len(chosen) != 1:
            raise ValueError(
                f"{p}: give exactly one of caCertificate, pskFile and insecure=yes for the "
                f"sessions to pool elements (given: {', '.join(chosen) or 'none'})"
            )
        if "identity" in options and pskFile is None:
            raise ValueError(f"{p}: identity needs pskFile")
        roots: list[x509.Certificate] | None = None
        peEndpoint = None
        if caFile is not None:
            roots = loadCertificates(_fileOption("caCertificate", caFile, p))
        elif pskFile is not None:
            peEndpoint = _pskPoolElementEndpoint(
                reactor, _fileOption("pskFile", pskFile, p), options.get("identity"), connectTimeout
            )
        user = PoolUser(
            enrpEndpoints,
            peEndpoint=peEndpoint,
            peTrustRoots=roots,
            insecure=insecure,
            reactor=reactor,
            connectTimeout=connectTimeout,
            maxFailoverAttempts=attempts,
        )
        return PoolEndpoint(
            user,
            pool.encode("utf-8"),
            failover=failover == "yes",
            ppid=ppid,
            streaming=streaming,
            ownsPoolUser=True,
            reactor=reactor,
        )


def _pskPoolElementEndpoint(
    reactor: IReactorCore, path: str, identity: str | None, timeout: float
) -> Callable[[PoolElementParameter], IStreamClientEndpoint]:
    """TLS-PSK to a pool element's TCP user transport with ``identity``'s key from ``path``."""
    from twisted_rserpool.security.psk import loadPskFile  # noqa: PLC0415
    from twisted_rserpool.security.tls import PskClientCreator  # noqa: PLC0415

    keys = loadPskFile(path)
    if identity is None:
        if len(keys) != 1:
            raise ValueError(
                f"{POOL_PREFIX}: {keys.path} holds {len(keys)} identities; choose one with "
                "identity="
            )
        (identity,) = keys
    if identity not in keys:
        raise ValueError(f"{POOL_PREFIX}: identity {identity!r} is not in {keys.path}")
    creator = PskClientCreator(identity, keys[identity])

    def endpoint(element: PoolElementParameter) -> IStreamClientEndpoint:
        from twisted.internet.endpoints import (  # noqa: PLC0415
            TCP4ClientEndpoint,
            TCP6ClientEndpoint,
        )

        from twisted_rserpool.asap.errors import NoPoolElementAvailable  # noqa: PLC0415
        from twisted_rserpool.wire.parameters import TcpTransport  # noqa: PLC0415

        transport = element.user_transport
        if not isinstance(transport, TcpTransport):
            raise NoPoolElementAvailable(b"", f"PE 0x{element.pe_identifier:08x} is not on TCP")
        host = str(transport.address)
        tcp: IStreamClientEndpoint
        if transport.address.version == 6:
            tcp = TCP6ClientEndpoint(reactor, host, transport.port, timeout)  # type: ignore[no-untyped-call]
        else:
            tcp = TCP4ClientEndpoint(reactor, host, transport.port, timeout)
        return TlsClientEndpoint(tcp, creator)

    return endpoint
