"""The TUN adapter on a datagram socketpair standing in for /dev/net/tun (one read, one
packet, as with IFF_TUN | IFF_NO_PI): batched reads, writes, a full queue, configuration."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator

import pytest
from twisted.internet.interfaces import IReadDescriptor

from twisted_rserpool.esp.tun import TunDevice, configure_tun, open_tun

from .support import ipv4


class FakeReactor:
    """Records addReader/removeReader."""

    def __init__(self) -> None:
        self.readers: list[IReadDescriptor] = []

    def addReader(self, reader: IReadDescriptor) -> None:
        self.readers.append(reader)

    def removeReader(self, reader: IReadDescriptor) -> None:
        self.readers.remove(reader)


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    a.setblocking(False)
    b.setblocking(False)
    yield a, b
    a.close()
    b.close()


def test_reads_every_waiting_packet_in_one_batch(pair: tuple[socket.socket, socket.socket]) -> None:
    """Five waiting packets come as one list at one wakeup; a batch limit of 3 splits them."""
    device_side, kernel_side = pair
    got: list[list[bytes]] = []
    reactor = FakeReactor()
    tun = TunDevice(device_side.fileno(), reactor, got.append, batch=3)  # type: ignore[arg-type]
    tun.startReading()
    tun.startReading()
    assert reactor.readers == [tun]
    packets = [ipv4(source="10.99.0.1", destination=f"198.51.100.{i}") for i in range(5)]
    for packet in packets:
        kernel_side.send(packet)
    tun.doRead()
    tun.doRead()
    tun.doRead()  # nothing waiting: no call
    assert got == [packets[:3], packets[3:]]
    assert tun.counters["read"] == 5
    tun.stopReading()
    assert reactor.readers == []


def test_write_sends_one_packet_and_drops_when_full(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    """Each write is one packet; when the peer's queue is full, writes are dropped and
    counted, never raised or blocking."""
    device_side, kernel_side = pair
    tun = TunDevice(device_side.fileno(), FakeReactor(), lambda packets: None)  # type: ignore[arg-type]
    packet = ipv4(source="198.51.100.2", destination="10.99.0.1", payload=b"x" * 1000)
    tun.write(packet)
    assert kernel_side.recv(2000) == packet
    for _ in range(10000):
        tun.write(packet)
        if tun.counters["write_dropped"]:
            break
    assert tun.counters["write_dropped"] == 1
    assert tun.counters["written"] >= 1


def test_close_stops_reading_and_closes_the_descriptor() -> None:
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    reactor = FakeReactor()
    tun = TunDevice(os.dup(a.fileno()), reactor, lambda packets: None)  # type: ignore[arg-type]
    fd = tun.fileno()
    tun.startReading()
    tun.close()
    assert reactor.readers == [] and tun.fileno() == -1
    with pytest.raises(OSError):
        os.fstat(fd)
    a.close()
    b.close()


def test_configure_runs_ip_for_mtu_addresses_and_routes() -> None:
    ran: list[list[str]] = []
    commands = configure_tun(
        "vpngw0", mtu=1400, addresses=["10.99.255.254/32"], routes=["10.99.0.0/24"], run=ran.append
    )
    assert (
        ran
        == commands
        == [
            ["ip", "link", "set", "dev", "vpngw0", "mtu", "1400", "up"],
            ["ip", "addr", "replace", "10.99.255.254/32", "dev", "vpngw0"],
            ["ip", "route", "replace", "10.99.0.0/24", "dev", "vpngw0"],
        ]
    )


def test_open_tun_refuses_bad_names() -> None:
    for name in ("", "x" * 16):
        with pytest.raises(ValueError):
            open_tun(name)


def test_open_tun_on_a_path_that_is_no_tun_fails() -> None:
    """The ioctl on a descriptor that is no TUN clone device raises and closes it."""
    with pytest.raises(OSError):
        open_tun("vpngw0", "/dev/null")
