"""A pool used as a Twisted endpoint, on both sides.

Run: ``python examples/pool_endpoint.py``. It starts an ENRP server in this process (in
production, ``twistd -n enrp``), two echo pool elements served through
``PoolServerEndpoint`` (any listening endpoint, registered), and a ``ClientService`` whose
endpoint is the string ``rserpool:pool=echo:enrp=...``. Midway the pool element in use
leaves; the same protocol goes on, answered by the other one.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from twisted.application.internet import ClientService
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import clientFromString, quoteStringArgument, serverFromString
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import deferLater, react

from twisted_rserpool.asap import Session
from twisted_rserpool.asap.endpoint import PoolServerEndpoint
from twisted_rserpool.enrp.registrar import Registrar, RegistrarConfig
from twisted_rserpool.enrp.service import ENRPServer
from twisted_rserpool.handlespace import Handlespace
from twisted_rserpool.security.authorization import AuthorizationPolicy
from twisted_rserpool.security.psk import createPskFile


class Echo(Protocol):
    """The pool elements' application: every message goes back."""

    def dataReceived(self, data: bytes) -> None:
        assert self.transport is not None
        self.transport.write(data)


class Client(Protocol):
    """The pool user's application: collects the answers."""

    def __init__(self) -> None:
        self.answers: list[bytes] = []

    def dataReceived(self, data: bytes) -> None:
        print(f"  <- {data.decode()}")
        self.answers.append(data)


async def ask(reactor: Any, client: Client, message: bytes) -> None:
    """Send ``message``; wait (at most 10 s) for its answer."""
    assert client.transport is not None
    client.transport.write(message)
    for _ in range(500):
        if message in client.answers:
            return
        await deferLater(reactor, 0.02, lambda: None)
    raise SystemExit(f"no answer to {message!r}")


async def main(reactor: Any) -> None:
    directory = tempfile.TemporaryDirectory()
    reactor.addSystemEventTrigger("after", "shutdown", directory.cleanup)
    keys = Path(directory.name) / "keys.psk"
    createPskFile(keys, "app")  # one identity, a random key, mode 0600

    # The ENRP server: TLS-PSK on a free loopback port.
    server = ENRPServer(
        Registrar(RegistrarConfig(0x5EED0001), Handlespace(), AuthorizationPolicy()), reactor
    )
    server.startService()
    listening = f"tlspsk:0:interface=127.0.0.1:pskFile={keys}"
    enrpPort = await serverFromString(reactor, listening).listen(server.factory)  # type: ignore[no-untyped-call]
    enrp = f"tlspsk:host=127.0.0.1:port={enrpPort.getHost().port}:pskFile={keys}"

    # Two pool elements: each listens on a TLS-PSK endpoint and registers what it got.
    ports = []
    for _ in range(2):
        endpoint = PoolServerEndpoint(
            f"tlspsk:0:interface=127.0.0.1:pskFile={keys}", b"echo", [enrp]
        )
        port = await endpoint.listenPool(Factory.forProtocol(Echo))
        await port.poolElement.whenRegistered()
        ports.append(port)

    # The pool user: an endpoint string, nested descriptions escaped.
    nested = quoteStringArgument(enrp)  # type: ignore[no-untyped-call]
    description = f"rserpool:pool=echo:enrp={nested}:pskFile={keys}"
    print(f"client endpoint: {description}")
    pool = clientFromString(reactor, description)  # type: ignore[no-untyped-call]
    service = ClientService(pool, Factory.forProtocol(Client))
    service.startService()
    client = await service.whenConnected()
    assert isinstance(client, Client)
    await ask(reactor, client, b"hello")

    session = client.transport
    assert isinstance(session, Session) and session.poolElement is not None
    [inUse] = [p for p in ports if p.poolElement.peIdentifier == session.poolElement.pe_identifier]
    print(f"pool element 0x{inUse.poolElement.peIdentifier:08x} leaves")
    await inUse.stopListening()
    await ask(reactor, client, b"still there?")  # the same protocol: its session failed over
    print(f"answered by 0x{session.poolElement.pe_identifier:08x}")

    await service.stopService()
    for port in ports:
        await port.stopListening()
    await enrpPort.stopListening()
    await server.stopService()


if __name__ == "__main__":
    react(lambda r: Deferred.fromCoroutine(main(r)))
