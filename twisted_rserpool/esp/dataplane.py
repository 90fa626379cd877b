"""The ESP data plane of a gateway, without I/O: CHILD_SAs installed into an ``EspSad``.

``DataPlaneInstaller`` is the ``IChildSAInstaller`` that really installs: each negotiated
CHILD_SA becomes an ``EspSa`` pair in its SAD. A rekeyed CHILD_SA is installed before its
predecessor is removed, and the newest SA takes the outbound traffic, so no packet is lost
(make-before-break). Inner packets from the TUN device go through ``seal`` (an ESP datagram
and the UDP address to send it to from the NAT-T port, RFC 3948), ESP datagrams from that
port through ``open`` (the inner packet for the TUN device, or None when dropped and
counted).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from twisted.logger import Logger
from zope.interface import implementer

from twisted_rserpool.esp.replay import DEFAULT_WINDOW
from twisted_rserpool.esp.sa import Dropped, EspSa, EspSad, RekeyRequired
from twisted_rserpool.ike.child import ChildSa, IChildSAInstaller, describe
from twisted_rserpool.ike.constants import NAT_T_PORT

__all__ = ["Address", "DataPlaneInstaller", "PeerResolver"]

Address = tuple[str, int]
PeerResolver = Callable[[ChildSa], "Address | None"]
"""Where the ESP of a CHILD_SA goes now: its IKE SA's current peer address on the NAT-T
port (RFC 3948 and RFC 7296 2.23: the address follows the IKE SA's), or None if unknown."""


@implementer(IChildSAInstaller)
class DataPlaneInstaller:
    """Installs CHILD_SAs into a userspace ESP SAD and moves packets through them.

    ``resolve`` gives the peer's current UDP address for a CHILD_SA; without it (or when it
    answers None) the address seen when the CHILD_SA was installed is used: the peer's
    address on ``peer_port``. ``replay_window`` is the anti-replay window of every inbound SA,
    ``soft_limit`` the outbound sequence number at which a rekey is asked for (``rekeys_due``;
    default: the ESP core's, the last sixteenth of the sequence space).
    """

    log = Logger()

    def __init__(
        self,
        *,
        resolve: PeerResolver | None = None,
        random: Callable[[int], bytes] = os.urandom,
        replay_window: int = DEFAULT_WINDOW,
        peer_port: int = NAT_T_PORT,
        soft_limit: int | None = None,
    ) -> None:
        self.sad = EspSad()
        self.resolve = resolve
        self.random = random
        self.replay_window = replay_window
        self.peer_port = peer_port
        self.soft_limit = soft_limit
        self._sas: dict[bytes, EspSa] = {}
        self._by_outbound: dict[bytes, ChildSa] = {}
        self._peers: dict[bytes, Address] = {}
        self.counters: dict[str, int] = {
            "sealed": 0,
            "opened": 0,
            "out_dropped": 0,
            "in_dropped": 0,
        }
        """Packets through the whole data plane; per CHILD_SA counts are in ``status``."""

    def __len__(self) -> int:
        return len(self._sas)

    # --- IChildSAInstaller ----------------------------------------------------------------

    def install(self, child: ChildSa) -> bool:
        """Install ``child`` into the SAD; False (and a warning) when it cannot be."""
        spi = child.inbound_spi
        try:
            sa = EspSa.from_child(
                child,
                random=self.random,
                replay_window=self.replay_window,
                soft_limit=self.soft_limit,
            )
            self.sad.add(sa)
        except ValueError as e:
            self.log.warn(
                "CHILD_SA {inbound}/{outbound} not installed: {reason}",
                inbound=spi.hex(),
                outbound=child.outbound_spi.hex(),
                reason=str(e),
            )
            return False
        self._sas[spi] = sa
        self._by_outbound[child.outbound_spi] = child
        peer = self.resolve(child) if self.resolve is not None else None
        self._peers[spi] = peer if peer is not None else (child.peer_address, self.peer_port)
        self.log.info(
            "CHILD_SA {inbound}/{outbound} {suite} {local_ts} === {remote_ts} with {peer} "
            "installed in the ESP data plane",
            inbound=spi.hex(),
            outbound=child.outbound_spi.hex(),
            suite=str(child.suite),
            local_ts=", ".join(map(describe, child.local_ts)),
            remote_ts=", ".join(map(describe, child.remote_ts)),
            peer=child.peer_address,
        )
        return True

    def remove(self, child: ChildSa) -> None:
        """Uninstall ``child`` (nothing if it is not installed)."""
        sa = self._sas.pop(child.inbound_spi, None)
        if sa is None:
            return
        self._peers.pop(child.inbound_spi, None)
        self._by_outbound.pop(child.outbound_spi, None)
        self.sad.remove(sa)
        self.log.info(
            "CHILD_SA {inbound}/{outbound} removed from the ESP data plane "
            "({packets_in} packets in, {packets_out} out)",
            inbound=child.inbound_spi.hex(),
            outbound=child.outbound_spi.hex(),
            packets_in=sa.counters.packets_in,
            packets_out=sa.counters.packets_out,
        )

    # --- packets --------------------------------------------------------------------------

    def seal(self, packet: bytes, now: float) -> tuple[bytes, Address] | None:
        """The ESP datagram for an inner ``packet`` and where to send it, or None when no
        CHILD_SA's selectors let it out (or its SA refused it: counted)."""
        result = self.sad.send(packet, now)
        if isinstance(result, Dropped):
            self.counters["out_dropped"] += 1
            return None
        self.counters["sealed"] += 1
        child = result.sa.child
        peer = None
        if child is not None and self.resolve is not None:
            peer = self.resolve(child)
        if peer is None:
            peer = self._peers[result.sa.inbound.spi]
        return result.datagram, peer

    def open(self, datagram: bytes, now: float) -> bytes | None:
        """The inner packet of an ESP ``datagram``, or None when it was dropped (unknown SPI,
        replayed, forged, malformed or outside the selectors: each counted)."""
        result = self.sad.receive(datagram, now)
        if isinstance(result, Dropped):
            self.counters["in_dropped"] += 1
            return None
        self.counters["opened"] += 1
        return result.packet

    def rekeys_due(self) -> list[ChildSa]:
        """The installed CHILD_SAs whose outbound sequence numbers reached the soft limit
        since the last call (each once): the IKE layer must rekey them (RFC 4303 3.3.3)."""
        due = []
        for event in self.sad.take_events():
            if isinstance(event, RekeyRequired):
                child = self._by_outbound.get(event.spi)
                if child is not None:
                    due.append(child)
        return due

    # --- status ---------------------------------------------------------------------------

    def child_status(self, child: ChildSa) -> dict[str, Any] | None:
        """The counters of an installed CHILD_SA (None when it is not installed)."""
        sa = self._sas.get(child.inbound_spi)
        if sa is None:
            return None
        host, port = self._peers[child.inbound_spi]
        status = sa.counters.as_dict()
        status["peer"] = f"{host}:{port}"
        return status

    def status(self) -> dict[str, Any]:
        """The data plane's own counters and the SAD's drops that belong to no SA."""
        return {
            "child_sas": len(self._sas),
            "counters": dict(self.counters),
            "sad_drops": dict(self.sad.counters),
        }
