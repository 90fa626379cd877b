"""The TCP mapping's U flag reaches the upper layer (issue 16): ``applicationMessageReceived``
gets it while subclasses that override only ``applicationDataReceived`` keep working, and a
pool element's ``ReceivedMessage.unordered`` shows a pool user's ASAP_SCTP_UNORDER."""

from __future__ import annotations

from tests.asap.delivery_support import POOL, Lab
from tests.asap.test_delivery import session
from tests.transport.test_protocol import Peer, Recorder, connect
from twisted_rserpool.asap import SendOptions
from twisted_rserpool.security.context import INSECURE
from twisted_rserpool.wire.tcpmapping import Ack


class FlagRecorder(Recorder):
    """Records the U flag of every application message."""

    def applicationMessageReceived(self, ppid: int, data: bytes, unordered: bool) -> None:
        self.calls.append(("message", (ppid, data, unordered)))


def unorderedData(peer: Peer, payload: bytes, ppid: int) -> bytes:
    return peer.encoder.send_data(payload, ppid=ppid, unordered=True)


def test_the_u_flag_reaches_application_message_received() -> None:
    """Each DATA chunk's U flag is passed up with its data; both are acknowledged."""
    protocol, transport, _, peer = connect(FlagRecorder())
    protocol.dataReceived(
        peer.init() + unorderedData(peer, b"any order", 9) + peer.data(b"in order", 9)
    )
    assert protocol.calls == [
        ("ready", INSECURE),
        ("message", (9, b"any order", True)),
        ("message", (9, b"in order", False)),
    ]
    assert peer.read(transport) == [Ack(0), Ack(1)]


def test_subclasses_overriding_only_application_data_received_still_get_the_data() -> None:
    """The old hook's signature is unchanged: without an override of the new hook, every
    message (U flag or not) still arrives at applicationDataReceived(ppid, data)."""
    protocol, transport, _, peer = connect()
    protocol.dataReceived(peer.init() + unorderedData(peer, b"u", 5) + peer.data(b"o", 5))
    assert protocol.calls == [("ready", INSECURE), ("app", (5, b"u")), ("app", (5, b"o"))]
    assert peer.read(transport) == [Ack(0), Ack(1)]


def test_a_pool_element_sees_the_pool_users_unorder_option() -> None:
    """RFC 5352 6.5.5 ASAP_SCTP_UNORDER on a pool user's send arrives at the PE's
    application as ReceivedMessage.unordered (it was set on the wire and lost on the way
    up); other messages are ordered."""
    lab = Lab()
    lab.pe(0xA)
    user = lab.pu()
    client = lab.connect(user, POOL)
    s = session(client)
    s.send(b"u", SendOptions.SCTP_UNORDER)
    s.write(b"o")
    s.send(b"f", SendOptions.SEND_FAILOVER)
    lab.network.run()
    assert [(m.data, m.unordered) for m in lab.worker(0xA).messages] == [
        (b"u", True),
        (b"o", False),
        (b"f", False),
    ]
