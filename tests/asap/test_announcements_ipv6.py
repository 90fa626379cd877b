"""ASAP_SERVER_ANNOUNCE over IPv6 (RFC 5352 3.6, issue 16): the addresses ``announceListen``
and ``twistd enrp --announce`` take, unicast on ::1 from a real ``twistd enrp`` to a pool
user that has no configured server, and the group ff02::133 inside a network namespace of
the test's own (a veth pair: Linux refuses IPv6 multicast routes over lo)."""

from __future__ import annotations

import socket
import subprocess
import sys
from ipaddress import IPv6Address
from pathlib import Path
from typing import Any

import pytest
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import clientFromString
from twisted.internet.task import Clock
from twisted.trial.unittest import TestCase

from tests.asap.processes import TWISTD, _kill, freePort
from tests.asap.support import FAST, FAST_MAPPING, Echo, Recording, credentials, waitFor
from tests.conftest import requireNamespaces
from twisted_rserpool.asap import PoolElement, PoolUser
from twisted_rserpool.asap.announcements import (
    ASAP_MULTICAST_GROUP6,
    AnnounceAddress,
    AnnouncementReceiver,
    asapMulticastGroup6,
    listenForAnnouncements,
    parseAnnounceListen,
)
from twisted_rserpool.enrp.announce import ServerAnnouncer, parseAnnounceAddress
from twisted_rserpool.security.tls import loadCertificates
from twisted_rserpool.wire import asap
from twisted_rserpool.wire.parameters import TcpTransport

POOL = b"echo"
LOOPBACK6 = IPv6Address("::1")


def test_ipv6_group_and_scopes() -> None:
    """FF0X::133 with X the scope; link-local (ff02::133) is the default group."""
    assert ASAP_MULTICAST_GROUP6 == "ff02::133"
    assert asapMulticastGroup6(5) == "ff05::133"
    assert asapMulticastGroup6(0xE) == "ff0e::133"
    with pytest.raises(ValueError):
        asapMulticastGroup6(16)


def test_parse_announce_listen_ipv6() -> None:
    """IPv6 addresses in brackets: unicast is bound, a group is joined on an interface given
    by name or index; IPv4 forms are unchanged; malformed forms are ValueErrors."""
    assert parseAnnounceListen("[::1]:4000") == AnnounceAddress(4000, "::1", ipv6=True)
    assert parseAnnounceListen("[::]:4000") == AnnounceAddress(4000, "::", ipv6=True)
    assert parseAnnounceListen("[ff02::133]:3863") == AnnounceAddress(
        3863, group="ff02::133", ipv6=True
    )
    assert parseAnnounceListen("[FF05::133]:3863:lo") == AnnounceAddress(
        3863, "lo", "ff05::133", ipv6=True
    )
    assert parseAnnounceListen("[ff02::133]:3863:1") == AnnounceAddress(
        3863, "1", "ff02::133", ipv6=True
    )
    assert parseAnnounceListen("224.0.1.185:3863:127.0.0.1") == AnnounceAddress(
        3863, "127.0.0.1", "224.0.1.185"
    )
    assert parseAnnounceListen("3863") == AnnounceAddress(3863)
    for bad in (
        "::1:4000",  # IPv6 without brackets
        "[::1]4000",
        "[::1",
        "[::1]:4000:lo",  # an interface only for a group
        "[ff02::133]:3863:no-such-interface0",
        "224.0.1.185:3863:lo",  # an IPv4 group joins on an address
        "[ff02::133]:99999",
    ):
        with pytest.raises(ValueError):
            parseAnnounceListen(bad)


def test_parse_announce_address_ipv6() -> None:
    """``--announce`` and ``--announce-transport`` take IPv6 bare or in brackets."""
    assert parseAnnounceAddress("ff02::133") == ("ff02::133", 3863)
    assert parseAnnounceAddress("[ff02::133]") == ("ff02::133", 3863)
    assert parseAnnounceAddress("[::1]:4000") == ("::1", 4000)
    assert parseAnnounceAddress("127.0.0.1:4000") == ("127.0.0.1", 4000)
    assert parseAnnounceAddress("[::1]:3864", defaultPort=None) == ("::1", 3864)
    for bad in ("[::1]x", "[::1", "[::1]:0", "::1:x:"):
        with pytest.raises(ValueError):
            parseAnnounceAddress(bad)
    with pytest.raises(ValueError, match="port is required"):
        parseAnnounceAddress("::1", defaultPort=None)
    with pytest.raises(ValueError, match="no network interface"):
        ServerAnnouncer(
            reactor,  # type: ignore[arg-type]
            Clock(),
            1,
            [],
            ("ff02::133", 3863),
            interface="no-such-interface0",
        )


class Ipv6AnnouncementTests(TestCase):
    timeout = 30

    async def test_announcer_and_receiver_on_ipv6_loopback(self) -> None:
        """The announcer sends to [::1]:port and ``announceListen``'s receiver, bound to
        ::1, decodes the announcement with its IPv6 transport (an IPv4 socket could not)."""
        got: list[asap.ServerAnnounce] = []
        done: Deferred[None] = Deferred()

        def onAnnounce(message: asap.ServerAnnounce) -> None:
            got.append(message)
            if len(got) == 2:
                done.callback(None)

        receiver = AnnouncementReceiver(onAnnounce)
        port = listenForAnnouncements(reactor, parseAnnounceListen("[::1]:0"), receiver)
        self.addCleanup(port.stopListening)
        clock = Clock()
        transport = TcpTransport(3864, LOOPBACK6)
        announcer = ServerAnnouncer(
            reactor,  # type: ignore[arg-type]
            clock,
            0x6666,
            [transport],
            ("::1", port.getHost().port),  # type: ignore[attr-defined]
            interval=1.0,
        )
        announcer.startService()
        self.addCleanup(announcer.stopService)
        clock.advance(1.0)
        await done
        assert got == [asap.ServerAnnounce(0x6666, (transport,))] * 2
        assert announcer.sent == 2 and receiver.counters["dropped"] == 0

    async def test_unicast_ipv6_announcement_from_twistd_enrp(self) -> None:
        """``twistd enrp --announce [::1]:PORT --announce-transport [::1]:ASAP``: a pool user
        with no configured server and ``announceListen="[::1]:PORT"`` learns the server
        only from the announcement, reaches it over IPv6, authenticates its certificate for
        ::1 and resolves the pool a PE registered in over IPv4."""
        creds = credentials(self)
        certificate, key, _ = creds.pki.issue(
            "enrp.test", ipAddresses=["127.0.0.1", "::1"], stem="server6"
        )
        udp, port4, port6 = _freeUdp6(), freePort(), _freeTcp6()
        log = creds.directory / "enrp6.log"
        tls = f":certificate={certificate}:privateKey={key}:pskFile={creds.serverPsk}"
        process = subprocess.Popen(
            [
                TWISTD,
                "-n",
                "--pidfile=",
                f"--logfile={log}",
                "enrp",
                "--asap",
                f"tlspsk:{port4}:interface=127.0.0.1{tls}",
                "--asap",
                f"tlspsk:{port6}:interface=\\:\\:1{tls}",
                "--announce",
                f"[::1]:{udp}",
                "--announce-interval",
                "0.2",
                "--announce-transport",
                f"[::1]:{port6}",
            ],
            cwd=creds.directory,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
        )
        self.addCleanup(_kill, process)
        await waitFor(lambda: _listening6(port6) or process.poll() is not None, timeout=20)
        assert process.poll() is None, log.read_text() if log.exists() else "twistd exited"

        element = PoolElement(
            POOL,
            Recording(Echo),
            [creds.peClient(port4)],
            creds.peListen(),
            timers=FAST,
            userMappingConfig=FAST_MAPPING,
        )
        element.startService()
        self.addCleanup(element.stopService)
        await element.whenRegistered()

        hinted: list[TcpTransport] = []

        def announced(transport: TcpTransport) -> Any:
            hinted.append(transport)
            host = str(transport.address).replace(":", "\\:")
            return clientFromString(  # type: ignore[no-untyped-call]
                reactor,
                f"tlspsk:host={host}:port={transport.port}:caCertificate={creds.caFile}",
            )

        user = PoolUser(
            [],
            peTrustRoots=loadCertificates(creds.caFile),
            timers=FAST,
            sessionMappingConfig=FAST_MAPPING,
            announcedServer=announced,
            announceListen=f"[::1]:{udp}",
        )
        user.startService()
        self.addCleanup(user.stopService)
        elements = await user.resolve(POOL)
        assert [e.pe_identifier for e in elements] == [element.peIdentifier]
        assert hinted and hinted[0] == TcpTransport(port6, LOOPBACK6)
        assert user.link is not None and user.link.connection is not None
        peer = user.link.connection.transport.getPeer()  # type: ignore[union-attr]
        assert (getattr(peer, "host", None), getattr(peer, "port", None)) == ("::1", port6)
        assert f"Announcing ENRP server to [::1]:{udp} every 0.2 s" in log.read_text()

    async def test_multicast_ff02_133_in_a_network_namespace(self) -> None:
        """In a namespace of its own with a veth pair, a real twistd enrp announces
        [::1]:3864 to ff02::133 out of one end (``--announce-interface rsp0``, hop limit 1),
        and a pool user without configured servers joins ff02::133 on the other end
        (IPV6_JOIN_GROUP with the interface's index) and resolves at the announced server
        over IPv6."""
        requireNamespaces()
        root = Path(__file__).resolve().parents[2]
        done = subprocess.run(
            [
                "unshare",
                "-n",
                "sh",
                "-c",
                # No duplicate address detection: the link-local addresses (the announcement's
                # source) are usable at once.
                "echo 0 > /proc/sys/net/ipv6/conf/default/accept_dad && "
                "ip link set lo up && ip link add rsp0 type veth peer name rsp1 && "
                "ip link set rsp0 up && ip link set rsp1 up && "
                f"exec {sys.executable} -m tests.asap.multicast_probe ipv6 rsp0 rsp1",
            ],
            cwd=root,
            check=False,
            capture_output=True,
            timeout=45,
        )
        output = done.stdout.decode()
        assert "FOUND 3864 ::1" in output, output + done.stderr.decode()[-2000:]


def _freeUdp6() -> int:
    with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s:
        s.bind(("::1", 0))
        return int(s.getsockname()[1])


def _freeTcp6() -> int:
    with socket.socket(socket.AF_INET6) as s:
        s.bind(("::1", 0))
        return int(s.getsockname()[1])


def _listening6(port: int) -> bool:
    with socket.socket(socket.AF_INET6) as s:
        s.settimeout(0.2)
        return s.connect_ex(("::1", port)) == 0
