"""ESP over IP (protocol 50): the raw socket adapter (IPv4 header stripped, IPv6 not, short
datagrams counted, writes to port 0), the resolver choosing raw ESP for an IKE SA that
stayed on port 500, TunnelService routing both ways through the raw socket, and, as root,
real raw sockets on the loopback."""

from __future__ import annotations

import os
import select
import socket
from types import SimpleNamespace
from typing import Any, cast

import pytest

from tests.conftest import interopRequired
from twisted_rserpool._tap.vpngw import Options, makeService
from twisted_rserpool.esp import EspSa
from twisted_rserpool.esp.dataplane import DataPlaneInstaller
from twisted_rserpool.esp.raw import RawEspSocket, open_raw_esp
from twisted_rserpool.esp.service import TunnelService, endpoint_resolver
from twisted_rserpool.ike.endpoint import IkeEndpoint
from twisted_rserpool.ike.gateway import IkeGatewayProtocol, IkeNatTraversalProtocol

from .support import GCM128, child_pair, ipv4
from .test_tunnel_service import FakeReactor, FakeTransport

ESP = bytes.fromhex("c0000001 00000001") + b"ciphertext"
IPV4_HEADER = bytes([0x45]) + bytes(19)


class FakeRawSocket:
    """What recvfrom/sendto of a raw socket return, queued; sendto fails when ``full``."""

    family = socket.AF_INET

    def __init__(self, datagrams: list[bytes]) -> None:
        self.datagrams = datagrams
        self.sent: list[tuple[bytes, tuple[str, int]]] = []
        self.full = False
        self.closed = False

    def recvfrom(self, size: int) -> tuple[bytes, tuple[str, int]]:
        if not self.datagrams:
            raise BlockingIOError
        return self.datagrams.pop(0), ("192.0.2.2", 0)

    def close(self) -> None:
        self.closed = True

    def sendto(self, data: bytes, address: tuple[str, int]) -> int:
        if self.full:
            raise BlockingIOError
        self.sent.append((data, address))
        return len(data)


def test_ipv4_header_stripped_short_datagrams_counted() -> None:
    options_header = bytes([0x46]) + bytes(23)  # IHL 6: one word of IP options
    fake = FakeRawSocket([IPV4_HEADER + ESP, options_header + ESP, b"\x45" + bytes(10), b""])
    got: list[tuple[bytes, tuple[str, int], float]] = []
    raw = RawEspSocket(cast(socket.socket, fake), FakeReactor(), lambda *a: got.append(a))
    raw.doRead()
    assert got == [(ESP, ("192.0.2.2", 0), 0.0)] * 2
    assert raw.counters["read"] == 2 and raw.counters["short"] == 2
    raw.write(ESP, ("192.0.2.2", 4500))
    fake.full = True
    raw.write(ESP, ("192.0.2.2", 0))
    assert fake.sent == [(ESP, ("192.0.2.2", 0))]
    assert (raw.counters["written"], raw.counters["write_dropped"]) == (1, 1)


def test_ipv6_raw_sockets_deliver_no_header() -> None:
    fake = FakeRawSocket([ESP])
    got: list[bytes] = []
    raw = RawEspSocket(
        cast(socket.socket, fake), FakeReactor(), lambda d, a, n: got.append(d), ipv4_header=False
    )
    raw.doRead()
    assert got == [ESP]


def test_resolver_sends_raw_esp_only_for_an_ike_sa_off_the_nat_t_port() -> None:
    sas = {
        b"on-500..": SimpleNamespace(
            local_address=("192.0.2.1", 500), peer_address=("192.0.2.2", 500)
        ),
        b"on-4500.": SimpleNamespace(
            local_address=("192.0.2.1", 4500), peer_address=("198.51.100.7", 40001)
        ),
    }
    endpoint = cast(IkeEndpoint, SimpleNamespace(nat_t_port=4500, get=sas.get))
    on_500 = cast(Any, SimpleNamespace(ike_spi_r=b"on-500..", ike_spi_i=b""))
    on_4500 = cast(Any, SimpleNamespace(ike_spi_r=b"on-4500.", ike_spi_i=b""))
    assert endpoint_resolver(endpoint)(on_500) == ("192.0.2.2", 4500)
    assert endpoint_resolver(endpoint, raw_esp=True)(on_500) == ("192.0.2.2", 0)
    assert endpoint_resolver(endpoint, raw_esp=True)(on_4500) == ("198.51.100.7", 40001)


def _service(
    raw_opener: Any,
) -> tuple[TunnelService, IkeEndpoint, DataPlaneInstaller, Any, FakeTransport]:
    tun_side, kernel = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    tun_side.setblocking(False)
    kernel.setblocking(False)
    reactor = FakeReactor()
    endpoint = IkeEndpoint(config_gw(), ("192.0.2.1", 500), nat_t_port=4500)
    protocol = IkeGatewayProtocol(endpoint, reactor)
    nat = IkeNatTraversalProtocol(protocol)
    transport = FakeTransport()
    nat.transport = transport  # type: ignore[assignment]
    protocol.natTraversal = nat
    plane = DataPlaneInstaller()
    endpoint.installer = plane
    service = TunnelService(
        "vpngw0",
        [(protocol, plane)],
        reactor,
        configure=lambda name, **kw: None,
        opener=lambda name: (tun_side.detach(), name),
        raw_esp=True,
        raw_opener=raw_opener,
    )
    service.startService()
    return service, endpoint, plane, kernel, transport


def config_gw() -> Any:
    from tests.ike.test_sa import config

    return config("gw@test")


def test_tunnel_service_carries_raw_esp_both_ways() -> None:
    fake = FakeRawSocket([])
    service, endpoint, plane, kernel, transport = _service(lambda address: fake)
    try:
        raw = service.raw[0]
        assert plane.resolve is not None
        client_child, gw_child = child_pair(GCM128)
        assert plane.install(gw_child)
        client = EspSa.from_child(client_child)
        # client -> raw socket -> TUN
        query = ipv4(source="10.1.0.5", destination="10.2.0.7")
        sealed = client.seal(query, 0.0)
        assert isinstance(sealed, bytes)
        fake.datagrams.append(IPV4_HEADER + sealed)
        raw.doRead()
        assert kernel.recv(2000) == query
        # TUN -> raw socket -> client (the IKE SA is off the NAT-T port: raw ESP)
        plane.resolve = lambda child: ("192.0.2.2", 0)
        answer = ipv4(source="10.2.0.7", destination="10.1.0.5")
        kernel.send(answer)
        service.device.doRead()  # type: ignore[union-attr]
        assert [address for _, address in fake.sent] == [("192.0.2.2", 0)]
        assert client.open(fake.sent[0][0], 0.0) == answer and transport.written == []
        # an IKE SA on 4500 still gets ESP in UDP
        plane.resolve = lambda child: ("198.51.100.7", 40001)
        kernel.send(answer)
        service.device.doRead()  # type: ignore[union-attr]
        assert [address for _, address in transport.written] == [("198.51.100.7", 40001)]
    finally:
        service.stopService()
        kernel.close()
    assert service.raw == {} and endpoint.esp_receiver is None and fake.closed


def test_without_cap_net_raw_the_service_stays_on_udp() -> None:
    def refuse(address: str) -> socket.socket:
        raise PermissionError(1, "Operation not permitted")

    service, _, plane, kernel, _ = _service(refuse)
    try:
        assert service.raw == {} and plane.resolve is None
    finally:
        service.stopService()
        kernel.close()


def test_raw_esp_option_needs_tun() -> None:
    options = Options()  # type: ignore[no-untyped-call]
    options.parseOptions(["--tun", "vpngw0", "--raw-esp"])  # type: ignore[no-untyped-call]
    (tunnel,) = [s for s in makeService(options, FakeReactor()) if isinstance(s, TunnelService)]  # type: ignore[attr-defined]
    assert tunnel.raw_esp
    options = Options()  # type: ignore[no-untyped-call]
    options.parseOptions(["--tun", "vpngw0"])  # type: ignore[no-untyped-call]
    (tunnel,) = [s for s in makeService(options, FakeReactor()) if isinstance(s, TunnelService)]  # type: ignore[attr-defined]
    assert not tunnel.raw_esp
    from twisted.python import usage

    with pytest.raises(usage.UsageError):
        Options().parseOptions(["--raw-esp"])  # type: ignore[no-untyped-call]


@pytest.mark.parametrize("address", ["127.0.0.1", "::1"])
def test_real_raw_sockets_on_the_loopback(address: str) -> None:
    """As root: ESP sent to the loopback with protocol 50 arrives whole at the reader
    (IPv4 header stripped by the adapter, none on IPv6), from the sender's address."""
    if os.geteuid() != 0 and not interopRequired():
        pytest.skip("raw sockets need CAP_NET_RAW")
    sock = open_raw_esp(address)
    got: list[tuple[bytes, tuple[str, int], float]] = []
    raw = RawEspSocket(sock, FakeReactor(), lambda *a: got.append(a))
    try:
        raw.write(ESP, (address, 4500))  # to itself: raw sockets see every protocol-50 packet
        assert select.select([sock], [], [], 5.0)[0]
        raw.doRead()
    finally:
        raw.close()
    assert (ESP, (address, 0), 0.0) in got and raw.counters["written"] == 1
