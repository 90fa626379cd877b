"""The VICI codec and session (strongSwan's vici plugin README is the reference), fuzzed
with hypothesis, and :class:`ViciLoad` against a fake charon on a real UNIX socket."""

from __future__ import annotations

import contextlib
import struct
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet import reactor as _reactor
from twisted.internet.defer import CancelledError
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import TestCase

from tests.security.support import temporaryDirectory
from twisted_rserpool.poolmember.sources import LoadError
from twisted_rserpool.poolmember.vici import (
    MAX_SEGMENT,
    CommandFailed,
    CommandResult,
    Message,
    Packet,
    PacketDecoder,
    PacketType,
    ViciError,
    ViciSession,
    decodeMessage,
    encodeMessage,
    encodePacket,
)
from twisted_rserpool.poolmember.viciload import ViciLoad, ViciProtocol, countIkeSas

reactor: Any = _reactor

#: The encoding example of the README, byte for byte.
README_EXAMPLE = bytes(
    [
        *(3, 4, *b"key1", 0, 6, *b"value1"),
        *(1, 8, *b"section1"),
        *(1, 11, *b"sub-section"),
        *(3, 4, *b"key2", 0, 6, *b"value2"),
        2,
        *(4, 5, *b"list1"),
        *(5, 0, 5, *b"item1"),
        *(5, 0, 5, *b"item2"),
        6,
        2,
    ]
)
README_TREE: Message = {
    "key1": b"value1",
    "section1": {"sub-section": {"key2": b"value2"}, "list1": [b"item1", b"item2"]},
}


def test_readme_example() -> None:
    """The README's example tree encodes to its C array and decodes back."""
    assert encodeMessage(README_TREE) == README_EXAMPLE
    assert decodeMessage(README_EXAMPLE) == README_TREE


def test_packets_round_trip_split_anywhere() -> None:
    """Named and unnamed packets survive being cut at every octet boundary."""
    packets = [
        Packet(PacketType.CMD_REQUEST, "list-sas", {"noblock": b"yes"}),
        Packet(PacketType.EVENT_CONFIRM),
        Packet(PacketType.EVENT, "list-sa", README_TREE),
        Packet(PacketType.CMD_RESPONSE, None, {}),
        Packet(PacketType.EVENT_REGISTER, "list-sa"),
    ]
    stream = b"".join(encodePacket(p) for p in packets)
    assert stream[:5] == struct.pack("!IB", 24, 0)  # type, name, key/value: 24 octets
    for cut in range(len(stream) + 1):
        decoder = PacketDecoder()
        assert decoder.receive(stream[:cut]) + decoder.receive(stream[cut:]) == packets


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (struct.pack("!I", 0), "segment length 0"),
        (struct.pack("!I", MAX_SEGMENT + 1), "segment length"),
        (struct.pack("!IB", 1, 9), "unknown packet type 9"),
        (struct.pack("!IBB", 2, 0, 5), "truncated packet name"),
        (struct.pack("!IBB", 2, 5, 1), "octets after a EVENT_CONFIRM"),
        (struct.pack("!IB", 2, 1) + bytes([2]), "section end without a section"),
        (struct.pack("!IB", 3, 1) + bytes([1, 0]), "sections not closed"),
        (struct.pack("!IB", 3, 1) + bytes([4, 0]), "list not closed"),
        (struct.pack("!IB", 5, 1) + bytes([4, 0, 3, 0]), "inside a list"),
        (struct.pack("!IB", 4, 1) + bytes([5, 0, 0]), "list item outside a list"),
        (struct.pack("!IB", 2, 1) + bytes([6]), "list end without a list"),
        (struct.pack("!IB", 2, 1) + bytes([9]), "unknown element type 9"),
        (struct.pack("!IB", 6, 1) + bytes([3, 1, 0xFF, 0, 0]), "not UTF-8"),
        (struct.pack("!IB", 6, 1) + bytes([3, 1, 0x6B, 0, 9]), "truncated value"),
    ],
)
def test_malformed(data: bytes, reason: str) -> None:
    """Each malformed packet is one ViciError that says what is wrong."""
    with pytest.raises(ViciError, match=reason):
        PacketDecoder().receive(data)


def test_nesting_limit() -> None:
    """Sections nested past the limit are refused (no recursion, no unbounded stack)."""
    deep = bytes([1, 1, 0x73]) * 100 + bytes([2]) * 100
    with pytest.raises(ViciError, match="nested deeper"):
        decodeMessage(deep)


names = st.text(st.characters(codec="utf-8"), max_size=8).filter(lambda n: len(n.encode()) <= 255)
values = st.binary(max_size=20)
trees: st.SearchStrategy[Message] = st.recursive(
    st.dictionaries(names, st.one_of(values, st.lists(values, max_size=3)), max_size=3),
    lambda children: st.dictionaries(
        names, st.one_of(values, st.lists(values, max_size=3), children), max_size=3
    ),
    max_leaves=12,
)


@settings(max_examples=300)
@given(tree=trees)
def test_message_round_trip(tree: Message) -> None:
    """Any tree of sections, key/values and lists decodes to itself."""
    assert decodeMessage(encodeMessage(tree)) == tree


@settings(max_examples=500)
@given(data=st.binary(max_size=200), cuts=st.lists(st.integers(0, 200), max_size=3))
def test_decoder_fuzz(data: bytes, cuts: list[int]) -> None:
    """Arbitrary bytes, in arbitrary pieces, give packets or one ViciError, nothing else."""
    decoder = PacketDecoder()
    points = sorted({min(c, len(data)) for c in cuts} | {len(data)})
    start = 0
    with contextlib.suppress(ViciError):
        for point in points:
            decoder.receive(data[start:point])
            start = point


@settings(max_examples=300)
@given(tree=trees, data=st.data())
def test_mutated_packets(tree: Message, data: st.DataObject) -> None:
    """A valid event with octets flipped, cut or appended decodes or fails cleanly."""
    packet = bytearray(encodePacket(Packet(PacketType.EVENT, "list-sa", tree)))
    for _ in range(data.draw(st.integers(1, 4))):
        index = data.draw(st.integers(0, len(packet) - 1))
        packet[index] = data.draw(st.integers(0, 255))
    packet = packet[: data.draw(st.integers(0, len(packet)))]
    with contextlib.suppress(ViciError):
        PacketDecoder().receive(bytes(packet))


def respond(session: ViciSession, *packets: Packet) -> list[Any]:
    return session.receiveData(b"".join(encodePacket(p) for p in packets))


def sent(session: ViciSession) -> list[Packet]:
    return PacketDecoder().receive(session.dataToSend())


SA: Message = {"gw": {"uniqueid": b"1", "state": b"ESTABLISHED"}}
CONNECTING: Message = {"gw": {"uniqueid": b"2", "state": b"CONNECTING"}}


def test_streamed_command() -> None:
    """list-sas: register list-sa, request, collect the events, unregister after the
    response; the result holds the events; a queued command runs after it."""
    session = ViciSession()
    session.command("list-sas", {"noblock": b"yes"}, stream="list-sa")
    session.command("stats")
    assert sent(session) == [Packet(PacketType.EVENT_REGISTER, "list-sa")]
    assert respond(session, Packet(PacketType.EVENT_CONFIRM)) == []
    assert sent(session) == [Packet(PacketType.CMD_REQUEST, "list-sas", {"noblock": b"yes"})]
    assert respond(session, Packet(PacketType.EVENT, "list-sa", SA)) == []
    assert respond(session, Packet(PacketType.EVENT, "log", {"msg": b"x"})) == []
    assert respond(session, Packet(PacketType.EVENT, "list-sa", CONNECTING)) == []
    assert respond(session, Packet(PacketType.CMD_RESPONSE)) == []
    assert sent(session) == [Packet(PacketType.EVENT_UNREGISTER, "list-sa")]
    (result,) = respond(session, Packet(PacketType.EVENT_CONFIRM))
    assert result == CommandResult("list-sas", {}, (SA, CONNECTING))
    assert countIkeSas(result, "established") == 1
    assert sent(session) == [Packet(PacketType.CMD_REQUEST, "stats", {})]
    stats: Message = {"ikesas": {"total": b"7", "half-open": b"2"}}
    (result,) = respond(session, Packet(PacketType.CMD_RESPONSE, None, stats))
    assert countIkeSas(result, "stats") == 7 and not session.busy


def test_unknown_command_and_event() -> None:
    """CMD_UNKNOWN and EVENT_UNKNOWN are failed commands (a streamed one still
    unregisters); a response out of turn is a ViciError."""
    session = ViciSession()
    session.command("nope")
    sent(session)
    assert respond(session, Packet(PacketType.CMD_UNKNOWN)) == [
        CommandFailed("nope", "the daemon has no 'nope' command")
    ]
    session.command("list-sas", stream="list-sa")
    sent(session)
    respond(session, Packet(PacketType.EVENT_CONFIRM))
    sent(session)
    assert respond(session, Packet(PacketType.CMD_UNKNOWN)) == []
    assert sent(session) == [Packet(PacketType.EVENT_UNREGISTER, "list-sa")]
    (failed,) = respond(session, Packet(PacketType.EVENT_CONFIRM))
    assert isinstance(failed, CommandFailed)
    session.command("list-sas", stream="gone")
    sent(session)
    (failed,) = respond(session, Packet(PacketType.EVENT_UNKNOWN))
    assert failed == CommandFailed("list-sas", "the daemon has no 'gone' event")
    with pytest.raises(ViciError, match="no command running"):
        respond(session, Packet(PacketType.CMD_RESPONSE))
    session.command("stats")
    with pytest.raises(ViciError, match="EVENT_CONFIRM where CMD_RESPONSE"):
        respond(session, Packet(PacketType.EVENT_CONFIRM))


def test_count_stats_without_total() -> None:
    """A stats answer without ikesas/total, or with a non-number, is a LoadError."""
    with pytest.raises(LoadError, match="no ikesas/total"):
        countIkeSas(CommandResult("stats", {"ikesas": b"x"}), "stats")
    with pytest.raises(LoadError, match="not a number"):
        countIkeSas(CommandResult("stats", {"ikesas": {"total": b"many"}}), "stats")


class FakeCharon(Protocol):
    """Answers stats and list-sas the way charon does, with ``sas`` IKE SAs."""

    sas: list[Message] = []  # noqa: RUF012 (set per test)
    garbage = False

    def connectionMade(self) -> None:
        self.decoder = PacketDecoder()

    def dataReceived(self, data: bytes) -> None:
        if self.garbage:
            self.transport.write(struct.pack("!IB", 1, 42))  # type: ignore[union-attr]
            return
        for packet in self.decoder.receive(data):
            self.transport.write(b"".join(encodePacket(p) for p in self.answer(packet)))  # type: ignore[union-attr]

    def answer(self, packet: Packet) -> list[Packet]:
        if packet.type in (PacketType.EVENT_REGISTER, PacketType.EVENT_UNREGISTER):
            return [Packet(PacketType.EVENT_CONFIRM)]
        if packet.name == "stats":
            total = str(len(self.sas)).encode()
            return [Packet(PacketType.CMD_RESPONSE, None, {"ikesas": {"total": total}})]
        if packet.name == "list-sas":
            events = [Packet(PacketType.EVENT, "list-sa", sa) for sa in self.sas]
            return [*events, Packet(PacketType.CMD_RESPONSE)]
        return [Packet(PacketType.CMD_UNKNOWN)]


class ViciLoadTests(TestCase):
    """ViciLoad over a real UNIX socket to a fake charon."""

    def setUp(self) -> None:
        self.path = str(temporaryDirectory(self) / "charon.vici")
        FakeCharon.sas = [SA, CONNECTING, SA]
        FakeCharon.garbage = False
        port = reactor.listenUNIX(self.path, Factory.forProtocol(FakeCharon))
        self.addCleanup(port.stopListening)

    async def test_counts(self) -> None:
        """stats counts every IKE SA, established only the ESTABLISHED ones; a new
        connection per reading sees the change."""
        assert await ViciLoad(self.path, reactor).read() == 3.0
        assert await ViciLoad(self.path, reactor, "established").read() == 2.0
        FakeCharon.sas = []
        assert await ViciLoad(self.path, reactor, "established").read() == 0.0

    async def test_failures(self) -> None:
        """No socket, or garbage from it, is a LoadError naming the cause."""
        missing = ViciLoad(self.path + ".missing", reactor).read()
        with pytest.raises(LoadError, match=r"No such file|refused|connect"):
            await missing
        FakeCharon.garbage = True
        with pytest.raises(LoadError, match="unknown packet type 42"):
            await ViciLoad(self.path, reactor).read()

    def test_answer_after_cancel(self) -> None:
        """An answer that arrives for a cancelled command is dropped, not delivered."""
        protocol = ViciProtocol()
        protocol.makeConnection(StringTransport())  # type: ignore[no-untyped-call]
        d = protocol.call("stats")
        d.cancel()
        failures: list[object] = []
        d.addErrback(failures.append)
        stats: Message = {"ikesas": {"total": b"1"}}
        protocol.dataReceived(encodePacket(Packet(PacketType.CMD_RESPONSE, None, stats)))
        assert len(failures) == 1 and not protocol.session.busy

    async def test_cancel(self) -> None:
        """Cancelling a reading (the caller's timeout) ends it at once."""
        d = ViciLoad(self.path, reactor).read()
        d.cancel()
        with pytest.raises(CancelledError):
            await d
