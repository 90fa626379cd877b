"""``twistd enrp --allow-plain-psk``: the listeners and outgoing connections the command builds
itself accept (and offer) TLS 1.2 PSK suites without forward secrecy only with the flag."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from OpenSSL import SSL
from twisted.internet.testing import MemoryReactorClock

from tests.security.support import pumpHandshake
from twisted_rserpool._tap.enrp import Options, makeService
from twisted_rserpool._tap.enrp_endpoints import outgoingEndpoints as _outgoingEndpoints
from twisted_rserpool.endpoints import TlsClientEndpoint
from twisted_rserpool.security.psk import loadPskFile
from twisted_rserpool.security.tls import (
    TLS12_PLAIN_PSK_CIPHERS,
    PskClientCreator,
    securityContextOfConnection,
)

PLAIN = "PSK-AES128-GCM-SHA256"


def _listeners(stateDirectory: Path, *flags: str) -> tuple[Options, dict[int, Any]]:
    """Build `twistd enrp` with its default ASAP and ENRP listeners on a memory reactor."""
    options = Options()
    peer = f"tlspsk:host=127.0.0.1:port=1:identity=pe:pskFile={stateDirectory / 'keys.psk'}"
    options.parseOptions(
        ["--state-dir", str(stateDirectory), "--peer", peer, "--enrp-identity", "pe", *flags]
    )  # type: ignore[no-untyped-call]
    reactor = MemoryReactorClock()  # type: ignore[no-untyped-call]
    service = makeService(options, reactor)
    service.startService()  # type: ignore[no-untyped-call]
    try:
        return options, {port: factory for port, factory, *_ in reactor.tcpServers}
    finally:
        service.stopService()  # type: ignore[no-untyped-call]


def _plainPskHandshake(factory: Any, stateDirectory: Path) -> str | None:
    """A TLS 1.2 client offering only PSK-AES128-GCM-SHA256 against a built listener."""
    keys = loadPskFile(stateDirectory / "keys.psk")
    identity = next(iter(keys))
    creator = PskClientCreator(identity, keys[identity], allowPlainPsk=True)
    creator._context.set_max_proto_version(SSL.TLS1_2_VERSION)
    creator._context.set_cipher_list(PLAIN.encode("ascii"))
    # TLSMemoryBIOFactory asks its connection creator through _creatorCallable.
    server = factory._creatorCallable(None)
    server.set_accept_state()
    client = creator.clientConnectionForTLS(None)  # type: ignore[arg-type]
    client.set_connect_state()
    error = pumpHandshake(client, server)
    if error is None:
        assert securityContextOfConnection(server).cipher == PLAIN
    return error


def test_defaultListenersRefusePlainPsk(tmp_path: Path) -> None:
    """Without the flag, the default ASAP (3864) and ENRP (9902) listeners refuse plain PSK,
    and outgoing connections do not offer it."""
    options, factories = _listeners(tmp_path)
    assert sorted(factories) == [3864, 9902]
    for factory in factories.values():
        error = _plainPskHandshake(factory, tmp_path)
        assert error is not None and "no shared cipher" in error
    outgoing = _outgoingEndpoints(
        MemoryReactorClock(),  # type: ignore[no-untyped-call]
        options,
        str(tmp_path / "keys.psk"),
    )
    endpoint = outgoing("127.0.0.1", 1)
    assert isinstance(endpoint, TlsClientEndpoint)
    connection = endpoint.creator.clientConnectionForTLS(None)  # type: ignore[arg-type]
    assert not set(TLS12_PLAIN_PSK_CIPHERS.split(":")) & set(connection.get_cipher_list())


def test_flagAllowsPlainPsk(tmp_path: Path) -> None:
    """With --allow-plain-psk both default listeners accept it and outgoing connections
    offer it (after ECDHE-PSK)."""
    options, factories = _listeners(tmp_path, "--allow-plain-psk")
    for factory in factories.values():
        assert _plainPskHandshake(factory, tmp_path) is None
    outgoing = _outgoingEndpoints(
        MemoryReactorClock(),  # type: ignore[no-untyped-call]
        options,
        str(tmp_path / "keys.psk"),
    )
    endpoint = outgoing("127.0.0.1", 1)
    assert isinstance(endpoint, TlsClientEndpoint)
    connection = endpoint.creator.clientConnectionForTLS(None)  # type: ignore[arg-type]
    assert set(TLS12_PLAIN_PSK_CIPHERS.split(":")) <= set(connection.get_cipher_list())
