"""ASAP_SERVER_ANNOUNCE over UDP, sent to a loopback address in tests."""

from __future__ import annotations

from ipaddress import IPv4Address
from pathlib import Path

import pytest
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.protocol import DatagramProtocol
from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactorClock
from twisted.python import usage
from twisted.trial.unittest import TestCase

from twisted_rserpool._tap.enrp import Options, makeService
from twisted_rserpool.enrp.announce import ServerAnnouncer, parseAnnounceAddress
from twisted_rserpool.security.psk import writePskFile
from twisted_rserpool.wire import asap
from twisted_rserpool.wire.parameters import TcpTransport


class Receiver(DatagramProtocol):
    def __init__(self, wanted: int) -> None:
        self.messages: list[asap.AsapMessage] = []
        self.wanted = wanted
        self.done: Deferred[None] = Deferred()

    def datagramReceived(self, datagram: bytes, addr: object) -> None:
        self.messages.append(asap.decode(datagram))
        if len(self.messages) == self.wanted:
            self.done.callback(None)


class AnnouncerTests(TestCase):
    timeout = 10

    async def test_announcements_every_interval(self) -> None:
        """The announcer sends at start and then every interval, with the server's transports."""
        receiver = Receiver(3)
        port = reactor.listenUDP(0, receiver, interface="127.0.0.1")  # type: ignore[attr-defined]
        self.addCleanup(port.stopListening)
        clock = Clock()
        transport = TcpTransport(3864, IPv4Address("127.0.0.1"))
        announcer = ServerAnnouncer(
            reactor,  # type: ignore[arg-type]
            clock,
            0x1234,
            [transport],
            ("127.0.0.1", port.getHost().port),
            interval=2.0,
            interface="127.0.0.1",
        )
        announcer.startService()
        self.addCleanup(announcer.stopService)
        clock.advance(2.0)
        clock.advance(2.0)
        await receiver.done
        assert receiver.messages == [asap.ServerAnnounce(0x1234, (transport,))] * 3
        assert announcer.sent == 3


def test_parse_announce_address() -> None:
    """HOST[:PORT] with the ASAP port as default; bad input is a ValueError."""
    assert parseAnnounceAddress("224.0.1.185") == ("224.0.1.185", 3863)
    assert parseAnnounceAddress("127.0.0.1:4000") == ("127.0.0.1", 4000)
    for bad in ("nowhere", "127.0.0.1:0", "127.0.0.1:x"):
        with pytest.raises(ValueError):
            parseAnnounceAddress(bad)


def test_tap_announce_options(tmp_path: Path) -> None:
    """--announce with custom listeners needs --announce-transport; with it, an announcer runs."""
    keys = tmp_path / "keys.psk"
    writePskFile(keys, {"pe": bytes(16)})
    listener = f"tlspsk:0:interface=127.0.0.1:pskFile={keys}"
    options = Options()
    options.parseOptions(["--asap", listener, "--announce", "127.0.0.1:9999"])  # type: ignore[no-untyped-call]
    with pytest.raises(usage.UsageError, match="announce-transport"):
        makeService(options, MemoryReactorClock())  # type: ignore[no-untyped-call]
    options = Options()
    options.parseOptions(  # type: ignore[no-untyped-call]
        ["--asap", listener, "--announce", "127.0.0.1:9999", "--announce-transport", "127.0.0.1:1"]
    )
    top = makeService(options, MemoryReactorClock())  # type: ignore[no-untyped-call]
    assert any(isinstance(child, ServerAnnouncer) for child in top)  # type: ignore[attr-defined]
