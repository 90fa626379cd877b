"""TunnelService in memory: a socketpair as the TUN device, a recording UDP transport as the
NAT-T socket. Packets read from the TUN leave as ESP to the client's address; ESP arriving
on the NAT-T port is opened, checked and written to the TUN. And the vpngw options."""

from __future__ import annotations

import os
import socket
from typing import Any

import pytest
from twisted.internet.task import Clock
from twisted.python import usage

from tests.ike.test_sa import Pair, config
from twisted_rserpool._tap.vpngw import Options, makeService
from twisted_rserpool.esp import EspSa
from twisted_rserpool.esp.dataplane import DataPlaneInstaller
from twisted_rserpool.esp.service import TunnelService
from twisted_rserpool.ike.child import selector_from_network
from twisted_rserpool.ike.endpoint import IkeEndpoint
from twisted_rserpool.ike.gateway import IkeGatewayProtocol, IkeNatTraversalProtocol

from .support import GCM128, child_pair, ipv4

CLIENT = ("192.0.2.2", 4500)


class FakeTransport:
    def __init__(self) -> None:
        self.written: list[tuple[bytes, tuple[str, int]]] = []

    def write(self, data: bytes, address: tuple[str, int]) -> None:
        self.written.append((data, address))


class FakeReactor(Clock):
    def __init__(self) -> None:
        super().__init__()
        self.readers: list[Any] = []

    def addReader(self, reader: Any) -> None:
        self.readers.append(reader)

    def removeReader(self, reader: Any) -> None:
        self.readers.remove(reader)


def test_packets_flow_both_ways_through_the_tun() -> None:
    tun_side, kernel = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    tun_side.setblocking(False)
    kernel.setblocking(False)
    reactor = FakeReactor()
    endpoint = IkeEndpoint(config("gw@test"), ("192.0.2.1", 500), nat_t_port=4500)
    protocol = IkeGatewayProtocol(endpoint, reactor)
    nat = IkeNatTraversalProtocol(protocol)
    transport = FakeTransport()
    nat.transport = transport  # type: ignore[assignment]
    protocol.natTraversal = nat
    plane = DataPlaneInstaller(resolve=lambda child: CLIENT)
    endpoint.installer = plane
    configured: list[tuple[str, dict[str, Any]]] = []
    service = TunnelService(
        "vpngw%d",
        [(protocol, plane)],
        reactor,
        addresses=["10.99.255.254/32"],
        routes=["10.99.0.0/24"],
        configure=lambda name, **kw: configured.append((name, kw)),
        opener=lambda name: (tun_side.detach(), "vpngw0"),  # the service closes it
    )
    service.startService()
    assert configured == [
        ("vpngw0", {"mtu": 1400, "addresses": ["10.99.255.254/32"], "routes": ["10.99.0.0/24"]})
    ]
    assert reactor.readers == [service.device] and endpoint.esp_receiver is not None
    client_child, gw_child = child_pair(GCM128)
    assert plane.install(gw_child)
    client = EspSa.from_child(client_child)

    # client -> gateway -> TUN
    query = ipv4(source="10.1.0.5", destination="10.2.0.7")
    sealed = client.seal(query, 0.0)
    assert isinstance(sealed, bytes)
    endpoint.receive_datagram(sealed, CLIENT, 0.0, 4500)
    assert kernel.recv(2000) == query
    stray = client.outbound.seal(ipv4(source="10.1.0.5", destination="10.3.0.1"), 0.0)
    assert isinstance(stray, bytes)
    endpoint.receive_datagram(stray, CLIENT, 0.0, 4500)
    with pytest.raises(BlockingIOError):
        kernel.recv(2000)

    # TUN -> gateway -> client, two packets at one wakeup, one nobody's
    answers = [
        ipv4(source="10.2.0.7", destination="10.1.0.5", payload=bytes([i]) * 20) for i in range(2)
    ]
    for answer in answers:
        kernel.send(answer)
    kernel.send(ipv4(source="10.2.0.7", destination="10.9.0.1"))
    service.device.doRead()  # type: ignore[union-attr]
    assert [address for _, address in transport.written] == [CLIENT, CLIENT]
    assert [client.open(data, 0.0) for data, _ in transport.written] == answers
    status = plane.child_status(gw_child)
    assert status is not None
    assert (status["packets_in"], status["packets_out"], status["drops"]) == (1, 2, {"selector": 1})
    assert plane.counters["out_dropped"] == 1

    service.stopService()
    assert endpoint.esp_receiver is None and reactor.readers == []
    kernel.close()


def test_vpngw_options() -> None:
    options = Options()  # type: ignore[no-untyped-call]
    options.parseOptions(  # type: ignore[no-untyped-call]
        ["--tun", "vpngw0", "--address-pool", "10.99.0.0/24", "--tun-route", "10.50.0.0/16",
         "--tun-address", "10.99.255.254/32", "--tun-mtu", "1380"]
    )  # fmt: skip
    assert options["tun_routes"] == ["10.99.0.0/24", "10.50.0.0/16"]
    assert options["tun_addresses"] == ["10.99.255.254/32"]
    service = makeService(options, FakeReactor())
    tunnels = [s for s in service if isinstance(s, TunnelService)]  # type: ignore[attr-defined]
    assert len(tunnels) == 1 and tunnels[0].mtu == 1380
    ((protocol, plane),) = tunnels[0].planes
    assert protocol.endpoint.installer is plane
    for args in (
        ["--tun-route", "10.0.0.0/8"],
        ["--tun", "t0", "--nat-t-port", "0"],
        ["--tun", "t0", "--tun-mtu", "100"],
        ["--tun", "t0", "--tun-route", "10.0.0.1/8"],
    ):
        with pytest.raises(usage.UsageError):
            Options().parseOptions(args)  # type: ignore[no-untyped-call]


def test_soft_limit_rekeys_the_child_sa_through_its_ike_sa() -> None:
    """Outbound sequence numbers at the soft limit: the gateway starts a CHILD_SA rekey
    (CREATE_CHILD_SA), and once it completes the successor is installed, the old one gone."""
    pair = Pair(
        gw_config=config("gw@test", local_ts=(selector_from_network("10.2.0.0/16"),)),
        cl_config=config("client@test", local_ts=(selector_from_network("10.1.0.0/16"),)),
    )
    plane = DataPlaneInstaller(soft_limit=3)
    pair.gw.installer = plane
    pair.cl.installer = DataPlaneInstaller()
    pair.establish()
    (old,) = [c for sa in pair.gw for c in sa.children.values()]
    reactor = FakeReactor()
    protocol = IkeGatewayProtocol(pair.gw, reactor)
    transport = FakeTransport()
    protocol.transport = transport  # type: ignore[assignment]
    service = TunnelService(
        "t0",
        [(protocol, plane)],
        reactor,
        configure=lambda name, **kw: None,
        opener=lambda name: (os.open(os.devnull, os.O_RDWR), name),
    )
    service.startService()
    answer = ipv4(source="10.2.0.7", destination="10.1.0.5")
    service.packetsReceived([answer, answer])
    assert transport.written == []  # below the limit
    service.packetsReceived([answer, answer])
    ((request, _),) = transport.written  # the CREATE_CHILD_SA request
    pair.cl.receive_datagram(request, pair.gw.local_address, 1.0)
    pair.pump(1.0)
    (new,) = [c for sa in pair.gw for c in sa.children.values()]
    assert new.inbound_spi != old.inbound_spi
    assert plane.child_status(old) is None and plane.child_status(new) is not None
    service.packetsReceived([answer] * 5)
    assert plane.rekeys_due() == []
    service.stopService()
