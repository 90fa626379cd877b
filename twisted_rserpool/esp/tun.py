"""A Linux TUN device as a Twisted reader and writer (the thin adapter of the ESP data plane).

``open_tun(name)`` creates (or attaches to) a layer-3 TUN device without packet information
(IFF_TUN | IFF_NO_PI: each read is one IP packet) and returns its non-blocking file
descriptor; ``configure_tun`` sets its MTU, address and routes with ``ip`` (iproute2), once,
when the gateway starts. ``TunDevice`` reads every packet waiting at each wakeup (up to
``batch``) and hands them to its callback as one list; ``write`` sends one packet and drops
it (counted) when the device's queue is full rather than block the reactor.
"""

from __future__ import annotations

import errno
import fcntl
import os
import struct
import subprocess
from collections.abc import Callable, Iterable, Sequence

from twisted.internet.interfaces import IReactorFDSet, IReadDescriptor
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

__all__ = ["IFF_NO_PI", "IFF_TUN", "TUNSETIFF", "TunDevice", "configure_tun", "open_tun"]

TUNSETIFF = 0x400454CA
"""_IOW('T', 202, int) from <linux/if_tun.h>."""
IFF_TUN = 0x0001
IFF_NO_PI = 0x1000
_IFNAMSIZ = 16


def open_tun(name: str, path: str = "/dev/net/tun") -> tuple[int, str]:
    """A non-blocking descriptor of the TUN device ``name`` (created if it does not exist)
    and the name the kernel gave it (``name`` may be a pattern such as ``vpngw%d``)."""
    encoded = name.encode()
    if not encoded or len(encoded) >= _IFNAMSIZ:
        raise ValueError(f"TUN device name {name!r} must have 1 to {_IFNAMSIZ - 1} octets")
    fd = os.open(path, os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        request = struct.pack("16sH22x", encoded, IFF_TUN | IFF_NO_PI)
        answer = fcntl.ioctl(fd, TUNSETIFF, request)
    except OSError:
        os.close(fd)
        raise
    return fd, answer[:_IFNAMSIZ].rstrip(b"\0").decode()


def configure_tun(
    name: str,
    *,
    mtu: int,
    addresses: Sequence[str] = (),
    routes: Iterable[str] = (),
    run: Callable[[list[str]], object] | None = None,
) -> list[list[str]]:
    """Bring the device up with ``mtu``, give it ``addresses`` (CIDR) and route ``routes``
    (networks) to it; returns the ``ip`` commands it ran. ``run`` runs one command (default:
    ``subprocess.run(check=True)``; an error raises ``CalledProcessError``)."""
    commands = [["ip", "link", "set", "dev", name, "mtu", str(mtu), "up"]]
    commands += [["ip", "addr", "replace", address, "dev", name] for address in addresses]
    commands += [["ip", "route", "replace", network, "dev", name] for network in routes]
    for command in commands:
        if run is not None:
            run(command)
        else:
            subprocess.run(command, check=True, capture_output=True, text=True)
    return commands


@implementer(IReadDescriptor)
class TunDevice:
    """Reads and writes IP packets on a TUN device's descriptor ``fd`` with ``reactor``.

    ``packetsReceived`` gets the packets read at one wakeup, oldest first. ``counters``
    counts packets read and written and writes dropped (queue full or an error).
    """

    log = Logger()

    def __init__(
        self,
        fd: int,
        reactor: IReactorFDSet,
        packetsReceived: Callable[[list[bytes]], None],
        *,
        mtu: int = 1400,
        batch: int = 64,
        name: str = "tun",
    ) -> None:
        self.fd = fd
        self.reactor = reactor
        self.packetsReceived = packetsReceived
        self.mtu = mtu
        self.batch = batch
        self.name = name
        self.counters = {"read": 0, "written": 0, "write_dropped": 0}
        self._reading = False

    def startReading(self) -> None:
        """Have the reactor call ``doRead`` when packets are waiting."""
        if not self._reading:
            self._reading = True
            self.reactor.addReader(self)

    def stopReading(self) -> None:
        """Stop reading (the descriptor stays open)."""
        if self._reading:
            self._reading = False
            self.reactor.removeReader(self)

    def close(self) -> None:
        """Stop reading and close the descriptor (a non-persistent device then goes)."""
        self.stopReading()
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def fileno(self) -> int:
        """The TUN descriptor."""
        return self.fd

    def logPrefix(self) -> str:
        """The device name, for Twisted's logs."""
        return self.name

    def doRead(self) -> None:
        """Read the packets waiting (up to ``batch``) and hand them over as one list."""
        packets: list[bytes] = []
        size = self.mtu + 64
        for _ in range(self.batch):
            try:
                packet = os.read(self.fd, size)
            except BlockingIOError:
                break
            except OSError as e:
                if e.errno == errno.EINTR:
                    continue
                self.log.warn("TUN {name}: read failed: {error}", name=self.name, error=str(e))
                break
            if not packet:
                break
            packets.append(packet)
        if packets:
            self.counters["read"] += len(packets)
            self.packetsReceived(packets)

    def write(self, packet: bytes) -> None:
        """Write one IP packet to the device; dropped and counted when it cannot take it."""
        try:
            os.write(self.fd, packet)
        except OSError:
            # A full queue (EAGAIN) or a packet the kernel refuses: drop it, as a router does.
            self.counters["write_dropped"] += 1
            return
        self.counters["written"] += 1

    def connectionLost(self, reason: Failure) -> None:
        """The reactor gave up on the descriptor: stop reading."""
        self._reading = False
