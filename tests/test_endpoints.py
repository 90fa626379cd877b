"""``tlspsk:`` endpoint strings: every option, every refusal, and plugin discovery."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from twisted.internet.endpoints import (
    HostnameEndpoint,
    TCP6ClientEndpoint,
    clientFromString,
    serverFromString,
)
from twisted.internet.interfaces import (
    IStreamClientEndpointStringParserWithReactor,
    IStreamServerEndpointStringParser,
)
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.testing import MemoryReactor
from twisted.plugin import getPlugins
from twisted.protocols.tls import TLSMemoryBIOFactory

from tests.security.support import KEY_A, KEY_B, Pki
from twisted_rserpool.endpoints import (
    TlsClientEndpoint,
    TlsPskClientParser,
    TlsPskServerParser,
    TlsServerEndpoint,
)
from twisted_rserpool.security.psk import PskFileError, writePskFile
from twisted_rserpool.security.tls import (
    CertificateClientCreator,
    PskClientCreator,
    TlsServerCreator,
)


@pytest.fixture
def reactor() -> MemoryReactor:
    return MemoryReactor()  # type: ignore[no-untyped-call]


@pytest.fixture
def keys(tmp_path: Path) -> str:
    path = tmp_path / "keys.psk"
    writePskFile(path, {"pe-17": KEY_A, "pe-18": KEY_B})
    return str(path)


@pytest.fixture
def oneKey(tmp_path: Path) -> str:
    path = tmp_path / "one.psk"
    writePskFile(path, {"pe-17": KEY_A})
    return str(path)


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    return Pki(tmp_path)


def server(reactor: MemoryReactor, description: str) -> TlsServerEndpoint:
    endpoint = serverFromString(reactor, description)  # type: ignore[no-untyped-call]
    assert isinstance(endpoint, TlsServerEndpoint)
    return endpoint


def client(reactor: MemoryReactor, description: str) -> TlsClientEndpoint:
    endpoint = clientFromString(reactor, description)  # type: ignore[no-untyped-call]
    assert isinstance(endpoint, TlsClientEndpoint)
    return endpoint


def listened(reactor: MemoryReactor, endpoint: TlsServerEndpoint) -> tuple[object, ...]:
    """Listen on a memory reactor and return what listenTCP was called with."""
    endpoint.listen(Factory.forProtocol(Protocol))
    (call,) = reactor.tcpServers
    assert isinstance(call[1], TLSMemoryBIOFactory)
    return tuple(call)


def connected(reactor: MemoryReactor, endpoint: TlsClientEndpoint) -> tuple[object, ...]:
    """Connect on a memory reactor and return what connectTCP was called with."""
    endpoint.connect(Factory.forProtocol(Protocol))
    (call,) = reactor.tcpClients
    return tuple(call)


# Server strings -----------------------------------------------------------------------


def test_serverPositionalPort(reactor: MemoryReactor, keys: str) -> None:
    """``tlspsk:PORT:interface=...:pskFile=...`` listens on that port and interface with
    a PSK server creator."""
    endpoint = server(reactor, f"tlspsk:3864:interface=127.0.0.1:pskFile={keys}")
    assert isinstance(endpoint.creator, TlsServerCreator)
    port, _, backlog, interface = listened(reactor, endpoint)
    assert (port, backlog, interface) == (3864, 50, "127.0.0.1")


def test_serverKeywordPortAndBacklog(reactor: MemoryReactor, keys: str) -> None:
    """``port=`` and ``backlog=`` are keyword options; the interface defaults to all."""
    endpoint = server(reactor, f"tlspsk:port=0:backlog=7:pskFile={keys}")
    port, _, backlog, interface = listened(reactor, endpoint)
    assert (port, backlog, interface) == (0, 7, "")


def test_serverIPv6Interface(reactor: MemoryReactor, keys: str) -> None:
    """An IPv6 interface (colons escaped) listens on IPv6."""
    endpoint = server(reactor, f"tlspsk:3864:interface=\\:\\:1:pskFile={keys}")
    _, _, _, interface = listened(reactor, endpoint)
    assert interface == "::1"


def test_serverCertificateOnly(reactor: MemoryReactor, pki: Pki) -> None:
    """A certificate and key without pskFile make a certificate-only listener."""
    certificate, key, _ = pki.issue("enrp-1", ("enrp.example.net",))
    endpoint = server(reactor, f"tlspsk:3864:certificate={certificate}:privateKey={key}")
    assert isinstance(endpoint.creator, TlsServerCreator)


def test_serverCertificateAndPsk(reactor: MemoryReactor, pki: Pki, keys: str) -> None:
    """pskFile and a certificate together make one shared listener; the private key may
    sit in the certificate's file."""
    certificate, key, _ = pki.issue("enrp-1", ("enrp.example.net",))
    combined = Path(certificate).with_name("combined.pem")
    combined.write_bytes(Path(key).read_bytes() + Path(certificate).read_bytes())
    server(reactor, f"tlspsk:3864:pskFile={keys}:certificate={combined}:identityHint=enrp")


def test_serverVersions(reactor: MemoryReactor, keys: str) -> None:
    """minimumTlsVersion and maximumTlsVersion take 1.2 or 1.3."""
    server(reactor, f"tlspsk:0:pskFile={keys}:maximumTlsVersion=1.2")
    server(reactor, f"tlspsk:0:pskFile={keys}:minimumTlsVersion=1.3")


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ("interface=127.0.0.1:pskFile=KEYS", "needs a port"),
        ("x:pskFile=KEYS", "not a number"),
        ("70000:pskFile=KEYS", "out of range"),
        ("3864:4000:pskFile=KEYS", "too many positional"),
        ("3864:port=3865:pskFile=KEYS", "port given twice"),
        ("3864", "needs pskFile, certificate, or both"),
        ("3864:pskFile=KEYS:psk_file=KEYS", "unknown tlspsk: server option(s) psk_file"),
        ("3864:pskFile=KEYS:privateKey=KEYS", "privateKey needs certificate"),
        ("3864:certificate=CERT:identityHint=x", "identityHint needs pskFile"),
        ("3864:pskFile=KEYS:maximumTlsVersion=1.1", "must be 1.2 or 1.3"),
        ("3864:pskFile=KEYS:minimumTlsVersion=1.3:maximumTlsVersion=1.2", "above maximum"),
        ("3864:pskFile=KEYS:backlog=0", "backlog must be positive"),
        ("3864:pskFile=KEYS:backlog=many", "not a number"),
        ("3864:pskFile=", "pskFile is empty"),
        ("3864:pskFile=KEYS:identityHint= bad", "whitespace"),
        ("3864:certificate=KEYS", "no PEM certificate"),
        ("3864:certificate=CERT:privateKey=CERT", "not an unencrypted PEM private key"),
    ],
)
def test_serverRefusals(
    reactor: MemoryReactor, keys: str, pki: Pki, options: str, message: str
) -> None:
    """Bad server strings raise ValueError saying what is wrong."""
    certificate, _, _ = pki.issue("enrp-1", ("enrp.example.net",))
    description = "tlspsk:" + options.replace("KEYS", keys).replace("CERT", certificate)
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        serverFromString(reactor, description)  # type: ignore[no-untyped-call]


def test_serverRefusesMismatchedKey(reactor: MemoryReactor, pki: Pki) -> None:
    """A private key that does not belong to the certificate is refused."""
    certificate, _, _ = pki.issue("enrp-1", ("enrp.example.net",))
    _, otherKey, _ = pki.issue("other", ("other.example.net",), stem="other")
    with pytest.raises(ValueError, match="key values mismatch"):
        serverFromString(  # type: ignore[no-untyped-call]
            reactor, f"tlspsk:3864:certificate={certificate}:privateKey={otherKey}"
        )


def test_serverRefusesOpenPskFile(reactor: MemoryReactor, keys: str) -> None:
    """A PSK file others may read is refused when the string is parsed."""
    Path(keys).chmod(0o644)
    with pytest.raises(PskFileError, match="mode 0644"):
        serverFromString(reactor, f"tlspsk:3864:pskFile={keys}")  # type: ignore[no-untyped-call]


def test_serverMissingFile(reactor: MemoryReactor, tmp_path: Path) -> None:
    """A missing PSK file raises FileNotFoundError when the string is parsed."""
    with pytest.raises(FileNotFoundError):
        serverFromString(reactor, f"tlspsk:3864:pskFile={tmp_path}/absent")  # type: ignore[no-untyped-call]


# Client strings -----------------------------------------------------------------------


def test_clientKeywords(reactor: MemoryReactor, keys: str) -> None:
    """``host=``, ``port=``, ``identity=``, ``pskFile=``, ``timeout=`` and
    ``bindAddress=`` make a PSK client over TCP."""
    endpoint = client(
        reactor,
        f"tlspsk:host=127.0.0.1:port=3864:identity=pe-18:pskFile={keys}"
        ":timeout=5:bindAddress=127.0.0.2",
    )
    assert isinstance(endpoint.creator, PskClientCreator)
    assert endpoint.creator.identity == "pe-18"
    host, port, _, timeout, bindAddress = connected(reactor, endpoint)
    assert (host, port, timeout, bindAddress) == ("127.0.0.1", 3864, 5.0, ("127.0.0.2", 0))


def test_clientPositional(reactor: MemoryReactor, oneKey: str) -> None:
    """Host and port may be positional; a file with one identity needs no ``identity=``."""
    endpoint = client(reactor, f"tlspsk:127.0.0.1:3864:pskFile={oneKey}")
    assert isinstance(endpoint.creator, PskClientCreator)
    assert endpoint.creator.identity == "pe-17"
    host, port, _, timeout, _ = connected(reactor, endpoint)
    assert (host, port, timeout) == ("127.0.0.1", 3864, 30.0)


def test_clientIPv6AndNames(reactor: MemoryReactor, oneKey: str) -> None:
    """An IPv6 host uses an IPv6 endpoint; a name uses a HostnameEndpoint."""
    six = client(reactor, f"tlspsk:host=\\:\\:1:port=3864:pskFile={oneKey}")
    assert isinstance(six.wrappedEndpoint, TCP6ClientEndpoint)
    name = client(reactor, f"tlspsk:host=enrp.example.net:port=3864:pskFile={oneKey}")
    assert isinstance(name.wrappedEndpoint, HostnameEndpoint)


def test_clientCertificate(reactor: MemoryReactor, pki: Pki) -> None:
    """``caCertificate=`` makes a certificate-verifying client for ``hostname``, which
    defaults to the host."""
    ca = pki.caFile()
    endpoint = client(reactor, f"tlspsk:host=127.0.0.1:port=3864:caCertificate={ca}")
    assert isinstance(endpoint.creator, CertificateClientCreator)
    assert endpoint.creator.hostname == "127.0.0.1"
    named = client(
        reactor,
        f"tlspsk:host=127.0.0.1:port=3864:caCertificate={ca}:hostname=enrp.example.net"
        ":minimumTlsVersion=1.3",
    )
    assert isinstance(named.creator, CertificateClientCreator)
    assert named.creator.hostname == "enrp.example.net"


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ("port=3864:pskFile=KEYS:identity=pe-17", "needs host and port"),
        ("host=127.0.0.1:pskFile=KEYS:identity=pe-17", "needs host and port"),
        ("host=:port=3864:pskFile=KEYS:identity=pe-17", "host is empty"),
        ("host=127.0.0.1:port=99999:pskFile=KEYS:identity=pe-17", "out of range"),
        ("127.0.0.1:3864:1:pskFile=KEYS", "too many positional"),
        ("host=127.0.0.1:port=3864", "needs pskFile or caCertificate"),
        ("host=127.0.0.1:port=3864:pskFile=KEYS", "holds 2 identities; choose one"),
        ("host=127.0.0.1:port=3864:pskFile=KEYS:identity=pe-99", "'pe-99' is not in"),
        ("host=127.0.0.1:port=3864:pskFile=KEYS:caCertificate=CA", "not both"),
        ("host=127.0.0.1:port=3864:pskFile=KEYS:identity=pe-17:hostname=x", "hostname needs"),
        ("host=127.0.0.1:port=3864:caCertificate=CA:identity=pe-17", "identity needs pskFile"),
        ("host=127.0.0.1:port=3864:caCertificate=KEYS", "no PEM certificate"),
        ("host=127.0.0.1:port=3864:pskFile=KEYS:identity=pe-17:timeout=0", "positive"),
        ("host=127.0.0.1:port=3864:pskFile=KEYS:identity=pe-17:timeout=x", "not a number"),
        ("host=127.0.0.1:port=3864:pskFile=KEYS:identity=pe-17:tls=1.3", "unknown tlspsk:"),
        ("host=127.0.0.1:port=3864:pskFile=KEYS:identity=pe-17:minimumTlsVersion=1", "1.2 or"),
    ],
)
def test_clientRefusals(
    reactor: MemoryReactor, keys: str, pki: Pki, options: str, message: str
) -> None:
    """Bad client strings raise ValueError saying what is wrong."""
    description = "tlspsk:" + options.replace("KEYS", keys).replace("CA", pki.caFile())
    with pytest.raises(ValueError, match=message):
        clientFromString(reactor, description)  # type: ignore[no-untyped-call]


# Plugins ------------------------------------------------------------------------------


def test_pluginsDiscovered() -> None:
    """Twisted's plugin system finds both parsers under the ``tlspsk`` prefix."""
    servers = [p for p in getPlugins(IStreamServerEndpointStringParser) if p.prefix == "tlspsk"]
    clients = [
        p for p in getPlugins(IStreamClientEndpointStringParserWithReactor) if p.prefix == "tlspsk"
    ]
    assert [type(p) for p in servers] == [TlsPskServerParser]
    assert [type(p) for p in clients] == [TlsPskClientParser]


def test_pluginModuleIsCheap() -> None:
    """Importing the plugin module imports neither the reactor, nor OpenSSL, nor the TLS
    module (getPlugins imports every plugin module)."""
    code = (
        "import sys\n"
        "import twisted.plugins.twisted_rserpool_plugins\n"
        "heavy = [m for m in ('twisted.internet.reactor', 'OpenSSL', 'cryptography',"
        " 'twisted_rserpool.security.tls', 'twisted.internet.endpoints') if m in sys.modules]\n"
        "print(heavy)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert result.stdout.strip() == "[]"
