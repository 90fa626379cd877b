"""The TUN MTU from the path: the arithmetic of ESP's overhead, checked against packets
really sealed with every suite IKE negotiates, the interface lookup through ``ip -j``, and
TunnelService's choice and log line."""

from __future__ import annotations

import socket
from typing import cast

import pytest
from twisted.logger import ILogObserver, LogEvent, globalLogPublisher

from twisted_rserpool._tap.vpngw import Options, makeService
from twisted_rserpool.esp.pathmtu import path_mtu, tun_mtu
from twisted_rserpool.esp.service import TunnelService

from .support import CBC256_SHA512, SUITES, esp_pair, ipv4
from .test_tunnel_service import FakeReactor


def test_tun_mtu_behind_common_paths() -> None:
    # AES-CBC + HMAC-SHA2-512-256 is the costliest: 1500 - 20 - 8 - 8 - 16 - 32 = 1416
    # octets for the aligned payload, less Pad Length and Next Header.
    assert tun_mtu(1500) == 1406
    assert tun_mtu(1500, udp=False) == 1422
    assert tun_mtu(1500, ipv6=True) == 1390
    # AEAD alone: 4-octet alignment, 8-octet IV, 16-octet ICV.
    assert tun_mtu(1500, overheads=[(8, 16, 4)]) == 1438
    assert tun_mtu(30) == 0


@pytest.mark.parametrize("path", [1280, 1400, 1500, 9000])
def test_inner_packets_of_the_tun_mtu_fit_the_path(path: int) -> None:
    """The longest inner packet seals, with every suite, into an ESP-in-UDP-in-IPv4 packet
    of at most ``path`` octets; one octet more overflows the path with the costliest suite,
    so the MTU is not smaller than it must be."""
    inner = tun_mtu(path)
    for suite in SUITES:
        client, _ = esp_pair(suite)
        sealed = client.seal(ipv4(payload=bytes(inner - 20)), 0.0)
        assert isinstance(sealed, bytes) and 20 + 8 + len(sealed) <= path, suite
        # and the per-SA computation of the ESP core agrees it fits
        assert client.outbound.max_inner_length(path) >= inner
    client, _ = esp_pair(CBC256_SHA512)
    longer = client.seal(ipv4(payload=bytes(inner + 1 - 20)), 0.0)
    assert isinstance(longer, bytes) and 20 + 8 + len(longer) > path


def test_path_mtu_asks_ip_for_the_interface() -> None:
    asked: list[list[str]] = []
    answers = {
        "-4 addr show to 10.0.0.1": [{"ifname": "veth-gw", "mtu": 1450}],
        "-6 route show default": [{"dst": "default", "dev": "eth6"}],
        "link show dev eth6": [{"ifname": "eth6", "mtu": 1280}],
    }

    def run(arguments: list[str]) -> list[dict[str, object]]:
        asked.append(arguments)
        return answers.get(" ".join(arguments), [])  # type: ignore[return-value]

    assert path_mtu("10.0.0.1", run) == ("veth-gw", 1450)
    assert path_mtu("::", run) == ("eth6", 1280)
    assert path_mtu("0.0.0.0", run) is None  # no default route
    assert path_mtu("192.0.2.9", run) is None  # not an address of this host
    assert asked[-2:] == [
        ["-4", "route", "show", "default"],
        ["-4", "addr", "show", "to", "192.0.2.9"],
    ]


def test_path_mtu_of_loopback_with_the_real_ip() -> None:
    assert path_mtu("127.0.0.1") == ("lo", 65536)


def test_tunnel_service_takes_the_smallest_path_mtu_and_logs_it() -> None:
    tun_side, kernel = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    tun_side.setblocking(False)
    configured: list[int] = []
    paths = {"192.0.2.1": ("veth0", 1500), "2001:db8::1": ("veth1", 1500)}
    events: list[LogEvent] = []
    service = TunnelService(
        "vpngw0",
        [],
        FakeReactor(),
        mtu=None,
        listen=["192.0.2.1", "2001:db8::1", "198.51.100.1"],
        probe=paths.get,
        configure=lambda name, mtu, **_: configured.append(mtu),
        opener=lambda name: (tun_side.detach(), name),
    )
    observer = cast(ILogObserver, events.append)
    globalLogPublisher.addObserver(observer)
    try:
        service.startService()
    finally:
        globalLogPublisher.removeObserver(observer)
    try:
        # IPv6's longer header makes the second path the narrowest; the unknown third
        # interface is taken as 1500.
        assert configured == [1390] and service.mtu == 1390
        logged = [(e["address"], e["interface"], e["mtu"]) for e in events if "interface" in e]
        assert logged == [
            ("192.0.2.1", "veth0", 1406),
            ("2001:db8::1", "veth1", 1390),
            ("198.51.100.1", "unknown", 1406),
        ]
    finally:
        service.stopService()
        kernel.close()


def test_vpngw_derives_the_mtu_unless_tun_mtu_is_given() -> None:
    for args, mtu in (([], None), (["--tun-mtu", "1380"], 1380)):
        options = Options()  # type: ignore[no-untyped-call]
        options.parseOptions(["--tun", "vpngw0", "--listen", "192.0.2.1", *args])  # type: ignore[no-untyped-call]
        service = makeService(options, FakeReactor())
        (tunnel,) = [s for s in service if isinstance(s, TunnelService)]  # type: ignore[attr-defined]
        assert (tunnel.mtu, tunnel.listen) == (mtu, ["192.0.2.1"])
