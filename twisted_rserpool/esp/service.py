"""The Twisted side of the ESP data plane: a TUN device joined to IKE endpoints' NAT-T ports.

``TunnelService`` opens and configures the TUN device when it starts. Inner packets read
from it (a batch per wakeup) are sealed by the first endpoint's ``DataPlaneInstaller``
whose CHILD_SAs' selectors let them out and sent from that endpoint's UDP 4500 socket to
the client (RFC 3948); ESP datagrams arriving there (``IkeEndpoint.esp_receiver``) are
opened, checked against the selectors and written to the TUN device. A CHILD_SA whose
outbound sequence numbers reach the soft limit is rekeyed through its IKE SA.
"""

from __future__ import annotations

import os
import socket
import subprocess
from collections.abc import Callable, Sequence
from typing import Any

from twisted.application.service import Service
from twisted.logger import Logger

from twisted_rserpool.esp.dataplane import Address, DataPlaneInstaller
from twisted_rserpool.esp.pathmtu import path_mtu, tun_mtu
from twisted_rserpool.esp.raw import RawEspSocket, open_raw_esp
from twisted_rserpool.esp.tun import TunDevice, configure_tun, open_tun
from twisted_rserpool.ike.child import ChildSa
from twisted_rserpool.ike.constants import NAT_T_PORT
from twisted_rserpool.ike.endpoint import IkeEndpoint
from twisted_rserpool.ike.gateway import IkeDatagramProtocol

__all__ = ["TunnelService", "endpoint_resolver"]


def endpoint_resolver(
    endpoint: IkeEndpoint, *, raw_esp: bool = False
) -> Callable[[ChildSa], Address | None]:
    """Where a CHILD_SA's ESP goes: its IKE SA's current peer address when the IKE SA is on
    the NAT-T port (so the address follows NAT rebindings), else the peer's port 4500, or
    with ``raw_esp`` the peer's address with port 0: ESP over IP (protocol 50)."""

    def resolve(child: ChildSa) -> Address | None:
        sa = endpoint.get(child.ike_spi_r) or endpoint.get(child.ike_spi_i)
        if sa is None:
            return None
        if sa.local_address[1] == endpoint.nat_t_port:
            return sa.peer_address
        return (sa.peer_address[0], 0 if raw_esp else NAT_T_PORT)

    return resolve


class TunnelService(Service):
    """Carries the traffic of the ``DataPlaneInstaller`` of each IKE protocol through one
    TUN device ``name``, configured with ``mtu``, ``addresses`` and ``routes``. With ``mtu``
    None the MTU comes from the path: the smallest ``pathmtu.tun_mtu`` over the interfaces
    of the ``listen`` addresses (``probe`` finds one's interface and MTU), 1500 assumed for
    an address whose interface is unknown."""

    log = Logger()

    def __init__(
        self,
        name: str,
        planes: Sequence[tuple[IkeDatagramProtocol, DataPlaneInstaller]],
        reactor: Any,
        *,
        mtu: int | None = 1400,
        addresses: Sequence[str] = (),
        routes: Sequence[str] = (),
        configure: Callable[..., object] = configure_tun,
        opener: Callable[[str], tuple[int, str]] = open_tun,
        listen: Sequence[str] = (),
        probe: Callable[[str], tuple[str, int] | None] = path_mtu,
        raw_esp: bool = False,
        raw_opener: Callable[[str], socket.socket] = open_raw_esp,
    ) -> None:
        self.deviceName = name
        self.planes = list(planes)
        self.reactor = reactor
        self.mtu = mtu
        self.listen = list(listen)
        self.probe = probe
        self.raw_esp = raw_esp
        self.raw_opener = raw_opener
        self.raw: dict[int, RawEspSocket] = {}
        """The raw ESP socket of each plane (by index), when ``raw_esp`` could open it."""
        self.addresses = list(addresses)
        self.routes = list(routes)
        self.configure = configure
        self.opener = opener
        self.device: TunDevice | None = None
        self.counters = {"no_child_sa": 0}

    def startService(self) -> None:
        """Open and configure the TUN device and join it to the endpoints."""
        super().startService()  # type: ignore[no-untyped-call]
        if self.mtu is None:
            self.mtu = self.path_mtu()
        fd, name = self.opener(self.deviceName)
        self.deviceName = name
        try:
            self.configure(name, mtu=self.mtu, addresses=self.addresses, routes=self.routes)
        except Exception:
            os.close(fd)
            raise
        self.device = TunDevice(fd, self.reactor, self.packetsReceived, mtu=self.mtu, name=name)
        for index, (protocol, plane) in enumerate(self.planes):
            protocol.endpoint.esp_receiver = self._receiver(plane)
            if self.raw_esp:
                self._open_raw(index, protocol, plane)
        self.device.startReading()
        self.log.info(
            "ESP data plane on TUN {name} (MTU {mtu}, addresses {addresses}, routes {routes})",
            name=name,
            mtu=self.mtu,
            addresses=", ".join(self.addresses) or "none",
            routes=", ".join(self.routes) or "none",
        )

    def path_mtu(self) -> int:
        """The TUN MTU for the paths of the listen addresses (RFC 3948 UDP encapsulation,
        every ESP transform), logged."""
        mtus = []
        for address in self.listen or ["0.0.0.0"]:
            try:
                found = self.probe(address)
            except (OSError, ValueError, subprocess.CalledProcessError) as e:
                self.log.warn("No path MTU for {address}: {error}", address=address, error=e)
                found = None
            interface, path = found if found is not None else ("unknown", 1500)
            mtu = min(65535, max(576, tun_mtu(path, ipv6=":" in address)))
            self.log.info(
                "TUN MTU {mtu} for the path of {address} (interface {interface}, MTU {path})",
                mtu=mtu,
                address=address,
                interface=interface,
                path=path,
            )
            mtus.append(mtu)
        return min(mtus)

    def _open_raw(
        self, index: int, protocol: IkeDatagramProtocol, plane: DataPlaneInstaller
    ) -> None:
        address = protocol.endpoint.local_address[0]
        try:
            sock = self.raw_opener(address)
        except OSError as e:
            self.log.info(
                "No raw ESP (IP protocol 50) on {address}: {error}; ESP only in UDP",
                address=address,
                error=str(e),
            )
            return
        raw = RawEspSocket(sock, self.reactor, self._receiver(plane))
        self.raw[index] = raw
        plane.resolve = endpoint_resolver(protocol.endpoint, raw_esp=True)
        raw.startReading()
        self.log.info("Raw ESP (IP protocol 50) on {address}", address=address)

    def stopService(self) -> None:
        """Detach from the endpoints and close the TUN device."""
        super().stopService()  # type: ignore[no-untyped-call]
        for raw in self.raw.values():
            raw.close()
        self.raw = {}
        for protocol, _ in self.planes:
            protocol.endpoint.esp_receiver = None
        if self.device is not None:
            self.device.close()
            self.device = None

    def _receiver(self, plane: DataPlaneInstaller) -> Callable[[bytes, Address, float], None]:
        def received(datagram: bytes, address: Address, now: float) -> None:
            packet = plane.open(datagram, now)
            if packet is not None and self.device is not None:
                self.device.write(packet)

        return received

    def packetsReceived(self, packets: list[bytes]) -> None:
        """Seal inner packets read from the TUN device and send them to their clients."""
        now = self.reactor.seconds()
        planes = self.planes
        for packet in packets:
            for index, (protocol, plane) in enumerate(planes):
                if len(planes) > 1 and plane.sad.lookup(packet) is None:
                    continue
                sealed = plane.seal(packet, now)
                nat = protocol.natTraversal
                if sealed is None:
                    pass
                elif sealed[1][1] == 0 and index in self.raw:
                    self.raw[index].write(sealed[0], sealed[1])
                elif nat is not None and nat.transport is not None:
                    nat.transport.write(sealed[0], sealed[1])
                break
            else:
                self.counters["no_child_sa"] += 1
        for protocol, plane in planes:
            due = plane.rekeys_due()
            if due:
                self._rekey(protocol, due, now)

    def _rekey(self, protocol: IkeDatagramProtocol, due: list[ChildSa], now: float) -> None:
        endpoint = protocol.endpoint
        for child in due:
            for sa in endpoint:
                if child.inbound_spi in sa.children:
                    started = endpoint.rekey_child_sa(sa.local_spi, child.inbound_spi, now)
                    self.log.info(
                        "CHILD_SA {inbound}/{outbound} near its last sequence number: "
                        "rekey {started}",
                        inbound=child.inbound_spi.hex(),
                        outbound=child.outbound_spi.hex(),
                        started="started" if started else "already under way",
                    )
                    break
        protocol.flush()
