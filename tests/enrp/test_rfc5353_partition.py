"""A partitioned minority never takes over (RFC 5353 3.5.1), against three real ``twistd
-n enrp`` processes over TLS-PSK: every ENRP link of server 1 runs through a TCP forwarder
in the test that can stop forwarding while keeping the connections open (a blackhole).
Every process is killed in a cleanup; every wait is bounded."""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest
from twisted.internet import reactor
from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IListeningPort
from twisted.internet.task import deferLater
from twisted.protocols import portforward
from twisted.trial.unittest import TestCase

from tests.enrp.support import LOOPBACK, readLog
from tests.enrp.test_pool_processes import Pool, Server, waitUntil

pytestmark = pytest.mark.slow

#: How long server 1's links stay blackholed.
CUT = 15.0


class Blackhole:
    """TCP forwarders on loopback that drop every byte, both ways, while :attr:`cut`."""

    def __init__(self) -> None:
        self.cut = False
        self.dropped = 0
        self.forwarded = 0
        self.ports: list[IListeningPort] = []
        self.protocols: list[portforward.Proxy] = []

    def forwarder(self, target: int) -> int:
        """Listen on a free port and forward what arrives to ``target``; the port."""
        hole = self

        class Client(portforward.ProxyClient):
            def connectionMade(self) -> None:
                hole.protocols.append(self)
                super().connectionMade()

            def dataReceived(self, data: bytes) -> None:
                hole.carry(self, data)

        class ClientFactory(portforward.ProxyClientFactory):
            protocol = Client

        class ServerSide(portforward.ProxyServer):
            clientProtocolFactory = ClientFactory

            def connectionMade(self) -> None:
                hole.protocols.append(self)
                super().connectionMade()

            def dataReceived(self, data: bytes) -> None:
                hole.carry(self, data)

        factory = portforward.ProxyFactory(LOOPBACK, target)
        factory.protocol = ServerSide
        port = reactor.listenTCP(0, factory, interface=LOOPBACK)  # type: ignore[arg-type]
        self.ports.append(port)
        address = port.getHost()
        assert isinstance(address, IPv4Address)
        return address.port

    def carry(self, proxy: portforward.Proxy, data: bytes) -> None:
        if self.cut:
            self.dropped += len(data)
            return
        self.forwarded += len(data)
        portforward.Proxy.dataReceived(proxy, data)  # type: ignore[no-untyped-call]

    def close(self) -> Deferred[None]:
        for port in self.ports:
            port.stopListening()
        for protocol in self.protocols:
            if protocol.transport is not None:
                protocol.transport.abortConnection()  # type: ignore[attr-defined]
        return deferLater(reactor, 0.2, lambda: None)


class ProxiedPool(Pool):
    """A pool whose connections between server 1 and the others go through forwarders."""

    def __init__(self, directory: Path, count: int, hole: Blackhole) -> None:
        super().__init__(directory, count)
        first = self.servers[0]
        #: (identity connecting, server number connected to) -> forwarder port
        self.routes: dict[tuple[str, int], int] = {}
        for other in self.servers[1:]:
            self.routes[("enrp-1", other.number)] = hole.forwarder(other.enrpPort)
            self.routes[(f"enrp-{other.number}", 1)] = hole.forwarder(first.enrpPort)

    def peerString(self, server: Server, psk: Path | None = None, identity: str = "enrp") -> str:
        port = self.routes.get((identity, server.number))
        if port is None:
            return super().peerString(server, psk, identity)
        return (
            f"tlspsk:host={LOOPBACK}:port={port}:identity={identity}"
            f":pskFile={psk or self.clientPsk}"
        )


def _sleep(seconds: float) -> Deferred[None]:
    return deferLater(reactor, seconds, lambda: None)


class PartitionTests(TestCase):
    timeout = 120

    async def test_a_blackholed_server_takes_over_nobody(self) -> None:
        """Server 1's ENRP links are blackholed for 15 s while every server and PE runs.
        Server 1 finds both others dead but gets no majority: it completes no takeover,
        sends no H keep-alive, and the PEs of servers 2 and 3 stay homed there at every
        server; the majority (2 of 3) takes server 1 over. When the partition heals, the
        three agree again (the PE of server 1 stays with its new home)."""
        directory = Path(tempfile.mkdtemp(prefix="enrp-partition-"))
        self.addCleanup(shutil.rmtree, directory, ignore_errors=True)
        hole = Blackhole()
        self.addCleanup(hole.close)
        pool = ProxiedPool(directory, 3, hole)
        self.addCleanup(pool.stop)
        one, two, three = pool.servers
        pool.start(two)
        pool.start(three)
        await waitUntil(lambda: len(two.admin()["peers"]) == 1, 10, "2 and 3 peering")
        pool.start(one)

        def joined() -> bool:
            return all(
                len(s.admin()["peers"]) == 2
                and all(p["connections"] == 2 for p in s.admin()["peers"])
                for s in pool.servers
            )

        await waitUntil(joined, 15, "every server peering in both directions")
        elements = {s.number: pool.startElement(s, f"pe-at-{s.number}")[1] for s in pool.servers}
        await waitUntil(
            lambda: all(set(s.elements()) == set(elements.values()) for s in pool.servers),
            10,
            "replication",
        )
        before = {s.number: s.elements() for s in pool.servers}
        assert before[1] == before[2] == before[3]
        # Every ENRP byte of server 1 goes through the forwarders (no direct link).
        for peer in one.admin()["peers"]:
            assert peer["connections"] == 2, one.admin()["peers"]
        hole.cut = True
        cut = time.monotonic()
        await _sleep(CUT)
        assert hole.dropped > 0
        log1 = readLog(one.process.log)
        taken = [line for line in log1.splitlines() if "Took over ENRP server" in line]
        assert taken == [], taken
        assert "asking 0 peers" in log1  # it did find them dead
        assert "no majority" in log1
        # Nothing pulled away from 2 and 3: their PEs are theirs at 2, at 3 and at 1.
        for server in pool.servers:
            view = server.elements()
            assert view[elements[2]] == 2, (server.number, view)
            assert view[elements[3]] == 3, (server.number, view)
        # The majority took server 1 over, and its PE went with it.
        logs = readLog(two.process.log) + readLog(three.process.log)
        assert "Took over ENRP server 0x00000001" in logs
        homes = {two.elements().get(elements[1]), three.elements().get(elements[1])}
        assert len(homes) == 1 and homes <= {2, 3}, homes
        moved = homes.pop()
        # The partition heals: the links reconnect and all three agree again.
        hole.cut = False
        healed = time.monotonic()

        def agreed() -> bool:
            views = [s.elements() for s in pool.servers]
            owners = [s.admin()["owners"] for s in pool.servers]
            return all(v == views[0] for v in views) and all(o == owners[0] for o in owners)

        await waitUntil(agreed, 30, "agreement after the partition healed")
        assert one.elements() == {elements[1]: moved, elements[2]: 2, elements[3]: 3}
        print(
            f"blackhole of server 1 for {healed - cut:.1f} s: {hole.dropped} bytes dropped;"
            f" server 1 took over nobody; its PE moved to 0x{moved:08x}; all three agreed"
            f" {time.monotonic() - healed:.1f} s after the heal"
        )

    def tearDown(self) -> Any:
        return _sleep(0.1)
