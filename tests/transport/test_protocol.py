"""Tests for RSerPoolProtocol: the TCP mapping over a Twisted transport, its hooks,
heartbeats, malformed input, and the rule that nothing is processed before connectionReady."""

from __future__ import annotations

import struct
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet.interfaces import ISSLTransport
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport, StringTransportWithDisconnection
from twisted.logger import capturedLogs
from zope.interface import implementer

from twisted_rserpool.security.context import INSECURE, SecurityContext
from twisted_rserpool.transport import (
    ConnectionNotReady,
    MappingConfig,
    RSerPoolFactory,
    RSerPoolProtocol,
    SendBufferFull,
    SentData,
)
from twisted_rserpool.wire import asap, enrp
from twisted_rserpool.wire.errors import CauseCode, MalformedMessage
from twisted_rserpool.wire.parameters import ErrorCause, tlv
from twisted_rserpool.wire.tcpmapping import (
    ASAP_PPID,
    ENRP_PPID,
    Ack,
    Chunk,
    ChunkDecoder,
    ChunkEncoder,
    Data,
    DataFormat,
    Heartbeat,
    HeartbeatAck,
    Init,
)

RESOLUTION = asap.HandleResolution(b"pool")
PRESENCE = enrp.Presence(7, 9, checksum=0x1234)


class Recorder(RSerPoolProtocol):
    """Records every hook call as (hook name, argument)."""

    def __init__(self, clock: Clock | None = None) -> None:
        super().__init__(clock)
        self.calls: list[tuple[str, Any]] = []

    def connectionReady(self, securityContext: SecurityContext) -> None:
        self.calls.append(("ready", securityContext))

    def asapMessageReceived(self, message: asap.AsapMessage) -> None:
        self.calls.append(("asap", message))

    def enrpMessageReceived(self, message: enrp.EnrpMessage) -> None:
        self.calls.append(("enrp", message))

    def applicationDataReceived(self, ppid: int, data: bytes) -> None:
        self.calls.append(("app", (ppid, data)))

    def dataAcknowledged(self, sent: SentData) -> None:
        self.calls.append(("acked", sent))

    def malformedMessageReceived(self, error: MalformedMessage, ppid: int | None) -> None:
        self.calls.append(("malformed", (error.cause, ppid)))
        super().malformedMessageReceived(error, ppid)

    def names(self) -> list[str]:
        return [name for name, _ in self.calls]


class Peer:
    """The other end of the connection, written directly with the chunk codec."""

    def __init__(self, fmt: DataFormat | None = None) -> None:
        self.encoder = ChunkEncoder(fmt)
        self.decoder = ChunkDecoder()

    def init(self) -> bytes:
        return self.encoder.send_init()

    def data(self, payload: bytes, ppid: int) -> bytes:
        return self.encoder.send_data(payload, ppid=ppid)

    def asap(self, message: asap.AsapMessage) -> bytes:
        return self.data(message.encode(), ASAP_PPID)

    def read(self, transport: Transport) -> list[Chunk]:
        """The chunks the protocol wrote since the last read."""
        if transport.value():
            self.decoder.receive_data(transport.value())
        transport.clear()
        chunks: list[Chunk] = []
        while (chunk := self.decoder.next_chunk()) is not None:
            chunks.append(chunk)
        return chunks


def datas(chunks: Sequence[Chunk]) -> list[Data]:
    return [c for c in chunks if isinstance(c, Data)]


class Transport(StringTransport):
    """StringTransport with the type hints Twisted leaves out."""

    def __init__(self) -> None:
        super().__init__()  # type: ignore[no-untyped-call]

    def value(self) -> bytes:
        return super().value()  # type: ignore[no-untyped-call,no-any-return]

    def clear(self) -> None:
        super().clear()  # type: ignore[no-untyped-call]


@implementer(ISSLTransport)
class FakeTlsTransport(Transport):
    """A transport that claims to be TLS; the test decides when the handshake completes."""

    def getPeerCertificate(self) -> None:
        return None

    def getTcpNoDelay(self) -> bool:
        return False

    def setTcpNoDelay(self, enabled: bool) -> None:
        pass

    def getTcpKeepAlive(self) -> bool:
        return False

    def setTcpKeepAlive(self, enabled: bool) -> None:
        pass

    def loseWriteConnection(self) -> None:
        pass


class DisconnectingTransport(StringTransportWithDisconnection, Transport):
    """StringTransportWithDisconnection, typed: loseConnection reaches connectionLost."""


def attach(protocol: RSerPoolProtocol, transport: Transport) -> None:
    """Connect ``protocol`` to ``transport`` as a reactor would."""
    if isinstance(transport, StringTransportWithDisconnection):
        transport.protocol = protocol
    protocol.makeConnection(transport)  # type: ignore[no-untyped-call]


def connect(
    protocol: Recorder | None = None,
    transport: Transport | None = None,
    config: MappingConfig | None = None,
) -> tuple[Recorder, Transport, Clock, Peer]:
    """A Recorder connected to a StringTransport, with its INIT read by the peer."""
    clock = Clock()
    protocol = Recorder(clock) if protocol is None else protocol
    protocol.clock = clock
    if config is not None:
        protocol.mappingConfig = config
    transport = Transport() if transport is None else transport
    attach(protocol, transport)
    peer = Peer()
    assert peer.read(transport) == [Init()]
    return protocol, transport, clock, peer


def ready(config: MappingConfig | None = None) -> tuple[Recorder, Transport, Clock, Peer]:
    """A Recorder on plain TCP that has received the peer's INIT and is ready."""
    protocol, transport, clock, peer = connect(config=config)
    protocol.dataReceived(peer.init())
    assert protocol.calls == [("ready", INSECURE)]
    protocol.calls.clear()
    return protocol, transport, clock, peer


@contextmanager
def logs() -> Iterator[Sequence[dict[str, Any]]]:
    with capturedLogs() as events:
        yield events


def error_causes(chunks: Sequence[Chunk], ppid: int = ASAP_PPID) -> list[ErrorCause]:
    """The error causes of the ASAP_ERROR / ENRP_ERROR messages among ``chunks``."""
    causes: list[ErrorCause] = []
    for chunk in datas(chunks):
        assert chunk.ppid == ppid
        message = (asap.decode if ppid == ASAP_PPID else enrp.decode)(chunk.user_data)
        assert isinstance(message, asap.ErrorMessage | enrp.ErrorMessage)
        causes += message.error.causes
    return causes


# -- INIT and readiness -----------------------------------------------------------------


def test_init_is_first_bytes() -> None:
    """connectionMade writes our INIT (all DATA words present) and nothing else."""
    _, transport, _, _ = connect()
    assert transport.value() == b""  # connect() read the INIT


def test_ready_after_peer_init_on_plain_tcp() -> None:
    """On plain TCP connectionReady comes with INSECURE once the peer's INIT arrived."""
    protocol, _, _, peer = connect()
    assert protocol.calls == [] and not protocol.ready
    assert protocol.securityContext is None
    protocol.dataReceived(peer.init())
    assert protocol.calls == [("ready", INSECURE)]
    assert protocol.securityContext is INSECURE and protocol.ready


def test_init_exchange_between_two_protocols() -> None:
    """Two protocols exchange INITs both ways and then messages and ACKs."""
    clock = Clock()
    left, right = Recorder(clock), Recorder(clock)
    lt, rt = Transport(), Transport()
    attach(left, lt)
    attach(right, rt)
    right.dataReceived(lt.value())
    left.dataReceived(rt.value())
    lt.clear()
    rt.clear()
    assert left.calls == right.calls == [("ready", INSECURE)]
    sent = left.sendAsap(RESOLUTION)
    right.dataReceived(lt.value())
    assert right.calls[-1] == ("asap", RESOLUTION)
    left.dataReceived(rt.value())
    assert left.calls[-1] == ("acked", sent)
    assert left.unacknowledged() == ()


def test_data_before_peer_init_closes() -> None:
    """A peer that sends DATA before its INIT has broken the mapping: the connection closes."""
    protocol, transport, _, _ = connect()
    stray = Data(b"x", 0, 0, 0, ASAP_PPID).encode()
    with logs() as events:
        protocol.dataReceived(stray)
    assert transport.disconnecting
    assert protocol.names() == ["malformed"]
    assert any("before the peer's INIT" in str(e.get("cause")) for e in events)


# -- DATA and ACK ------------------------------------------------------------------------


def test_data_goes_to_hook_by_ppid() -> None:
    """PPID 11 is decoded as ASAP, 12 as ENRP, any other PPID is application data."""
    protocol, _, _, peer = ready()
    protocol.dataReceived(
        peer.asap(RESOLUTION)
        + peer.data(PRESENCE.encode(), ENRP_PPID)
        + peer.data(b"hello", 42)
        + peer.data(b"zero", 0)
    )
    assert protocol.calls == [
        ("asap", RESOLUTION),
        ("enrp", PRESENCE),
        ("app", (42, b"hello")),
        ("app", (0, b"zero")),
    ]


def test_one_ack_per_data_with_tsn() -> None:
    """Each delivered DATA chunk is answered by exactly one ACK carrying its TSN."""
    protocol, transport, _, peer = ready()
    protocol.dataReceived(peer.data(b"a", 1) + peer.data(b"b", 2) + peer.data(b"c", 3))
    assert peer.read(transport) == [Ack(0), Ack(1), Ack(2)]


def test_one_ack_per_data_without_tsn() -> None:
    """When the peer's INIT suppressed TSNs, the ACKs carry none."""
    protocol, transport, _, _ = connect()
    peer = Peer(DataFormat(has_tsn=False))
    peer.decoder.receive_data(Init().encode())
    peer.decoder.next_chunk()
    protocol.dataReceived(peer.init() + peer.data(b"a", 5) + peer.data(b"b", 5))
    assert peer.read(transport) == [Ack(None), Ack(None)]
    assert protocol.calls[1:] == [("app", (5, b"a")), ("app", (5, b"b"))]


def test_unacknowledged_until_acked() -> None:
    """Sent messages stay in unacknowledged() until the peer ACKs them, and are still
    there after the connection is lost."""
    protocol, transport, _, peer = ready()
    first = protocol.sendAsap(RESOLUTION)
    second = protocol.sendApplicationData(b"app", 77)
    sent = datas(peer.read(transport))
    assert [(d.tsn, d.ppid) for d in sent] == [(0, ASAP_PPID), (1, 77)]
    assert protocol.unacknowledged() == (first, second)
    protocol.dataReceived(Ack(0).encode())
    assert protocol.calls == [("acked", first)]
    assert protocol.unacknowledged() == (second,)
    protocol.connectionLost()
    assert protocol.unacknowledged() == (second,)
    assert second == SentData(1, b"app", 77)


def test_send_refused_for_reserved_ppid_and_before_ready() -> None:
    """Application data cannot use PPIDs 11/12; nothing is sent before connectionReady."""
    protocol, _, _, peer = connect()
    with pytest.raises(ConnectionNotReady):
        protocol.sendAsap(RESOLUTION)
    protocol.dataReceived(peer.init())
    with pytest.raises(ValueError, match="reserved"):
        protocol.sendApplicationData(b"x", ASAP_PPID)


def test_peer_that_never_acks_is_dropped() -> None:
    """Exceeding max_unacknowledged_bytes raises and aborts the connection."""
    protocol, transport, _, _ = ready(MappingConfig(max_unacknowledged_bytes=64))
    protocol.sendApplicationData(b"x" * 40, 1)
    with logs() as events, pytest.raises(SendBufferFull):
        protocol.sendApplicationData(b"x" * 40, 1)
    assert transport.disconnected
    assert any("does not acknowledge" in e["log_format"] for e in events)


def test_bytes_one_at_a_time() -> None:
    """INIT, messages and heartbeats fed one byte at a time are delivered as when whole."""
    protocol, transport, _, peer = connect()
    stream = (
        peer.init()
        + peer.asap(RESOLUTION)
        + Heartbeat(b"ping").encode()
        + peer.data(b"tail", 9)
        + peer.data(PRESENCE.encode(), ENRP_PPID)
    )
    for i in range(len(stream)):
        protocol.dataReceived(stream[i : i + 1])
    assert protocol.calls == [
        ("ready", INSECURE),
        ("asap", RESOLUTION),
        ("app", (9, b"tail")),
        ("enrp", PRESENCE),
    ]
    assert peer.read(transport) == [Ack(0), HeartbeatAck(b"ping"), Ack(1), Ack(2)]


def test_hook_exception_is_logged_and_data_still_acked() -> None:
    """A hook that raises is logged; the message counts as delivered and is ACKed."""

    class Broken(Recorder):
        def applicationDataReceived(self, ppid: int, data: bytes) -> None:
            raise RuntimeError("bug in subclass")

    protocol, transport, _, peer = connect(Broken())
    with logs() as events:
        protocol.dataReceived(peer.init() + peer.data(b"x", 5))
    assert peer.read(transport) == [Ack(0)]
    assert not transport.disconnecting
    assert any("log_failure" in e for e in events)


# -- heartbeats --------------------------------------------------------------------------

HB = MappingConfig(heartbeat_interval=30, heartbeat_timeout=10)


def test_heartbeat_sent_after_interval_and_dead_connection_closed() -> None:
    """After heartbeatInterval s of silence a HEARTBEAT goes out; with no answer within
    heartbeatTimeout the connection is aborted and the cause logged."""
    protocol, transport, clock, peer = ready(HB)
    assert (protocol.heartbeatInterval, protocol.heartbeatTimeout) == (30, 10)
    clock.advance(29)
    assert peer.read(transport) == []
    clock.advance(1)
    [heartbeat] = peer.read(transport)
    assert isinstance(heartbeat, Heartbeat)
    with logs() as events:
        clock.advance(9.9)
        assert not transport.disconnecting
        clock.advance(0.1)
    assert transport.disconnected  # aborted, not a graceful close
    assert any("HEARTBEAT" in str(e.get("cause")) for e in events)
    assert clock.getDelayedCalls() == []


def test_heartbeat_ack_keeps_connection_open() -> None:
    """A HEARTBEAT ACK within the timeout keeps the connection; the next heartbeat comes
    one interval after the last received byte."""
    protocol, transport, clock, peer = ready(HB)
    clock.advance(30)
    [heartbeat] = peer.read(transport)
    assert isinstance(heartbeat, Heartbeat)
    clock.advance(5)
    protocol.dataReceived(heartbeat.acknowledge().encode())
    clock.advance(20)
    assert not transport.disconnecting
    assert peer.read(transport) == []
    clock.advance(10)  # 30 s after the HEARTBEAT ACK at t=35
    [again] = peer.read(transport)
    assert isinstance(again, Heartbeat) and again.info != heartbeat.info


def test_traffic_postpones_heartbeat() -> None:
    """Any received traffic counts as a sign of life and postpones the HEARTBEAT."""
    protocol, transport, clock, peer = ready(HB)
    for _ in range(5):
        clock.advance(20)
        protocol.dataReceived(peer.data(b"x", 3))
    assert [c for c in peer.read(transport) if isinstance(c, Heartbeat)] == []
    assert not transport.disconnecting


def test_peer_without_init_is_closed_by_heartbeat() -> None:
    """A peer that connects and never speaks the mapping is dropped after interval+timeout."""
    _, transport, clock, _ = connect(config=HB)
    clock.advance(30)
    clock.advance(10)
    assert transport.disconnected


def test_connection_lost_stops_timer() -> None:
    """After the connection is lost no timer is left behind."""
    protocol, _, clock, _ = ready(HB)
    protocol.connectionLost()
    assert clock.getDelayedCalls() == []


# -- malformed input ---------------------------------------------------------------------


def test_reserved_chunk_type_closes_with_logged_cause() -> None:
    """A chunk of a reserved type closes the connection; the log names the cause."""
    protocol, transport, _, peer = ready()
    with logs() as events:
        protocol.dataReceived(struct.pack("!BBH", 7, 0, 4))
    assert transport.disconnecting
    assert protocol.calls == [("malformed", (CauseCode.UNRECOGNIZED_MESSAGE, None))]
    [line] = [e for e in events if "TCP mapping failed" in e["log_format"]]
    assert "reserved" in line["cause"] and line["peer"] == protocol.peer
    protocol.dataReceived(peer.data(b"late", 1))  # ignored after the close
    assert len(protocol.calls) == 1


def test_oversize_chunk_refused() -> None:
    """A chunk longer than maxChunkLength closes the connection (Lack of Resources)."""
    config = MappingConfig(max_chunk_length=128, max_buffer_size=1024)
    protocol, transport, _, peer = ready(config)
    with logs() as events:
        protocol.dataReceived(peer.data(b"x" * 200, 5)[:20])
    assert transport.disconnecting
    assert protocol.calls == [("malformed", (CauseCode.LACK_OF_RESOURCES, None))]
    assert any("exceeds the limit" in str(e.get("cause")) for e in events)


def test_stream_closed_on_bad_ack() -> None:
    """An ACK for data never sent is a framing error of the mapping: close."""
    protocol, transport, _, _ = ready()
    protocol.dataReceived(Ack(3).encode())
    assert transport.disconnecting


def test_unknown_parameter_stop_and_report_answered_with_asap_error() -> None:
    """An unknown parameter with top bits 01 discards the message and answers ASAP_ERROR
    (Unrecognized Parameter, carrying the parameter); the connection stays up."""
    protocol, transport, _, peer = ready()
    unknown = tlv(0x4ABC, b"xyz")
    body = tlv(0x9, b"pool") + unknown
    raw = struct.pack("!BBH", asap.AsapType.HANDLE_RESOLUTION, 0, 4 + len(body)) + body
    with logs() as events:
        protocol.dataReceived(peer.data(raw, ASAP_PPID))
    chunks = peer.read(transport)
    assert [c for c in chunks if isinstance(c, Ack)] == [Ack(0)]
    assert error_causes(chunks) == [ErrorCause(CauseCode.UNRECOGNIZED_PARAMETER, unknown[:7])]
    assert protocol.calls == [("malformed", (CauseCode.UNRECOGNIZED_PARAMETER, ASAP_PPID))]
    assert not transport.disconnecting
    assert any(e.get("ppid") == ASAP_PPID and e.get("cause") for e in events)


def test_unknown_parameter_skip_and_report_delivered_and_reported() -> None:
    """An unknown parameter with top bits 11 is skipped: the message is delivered and an
    ASAP_ERROR reports the parameter."""
    protocol, transport, _, peer = ready()
    unknown = tlv(0xCABC, b"abcd")
    body = tlv(0x9, b"pool") + unknown
    raw = struct.pack("!BBH", asap.AsapType.HANDLE_RESOLUTION, 0, 4 + len(body)) + body
    protocol.dataReceived(peer.data(raw, ASAP_PPID))
    assert protocol.calls == [("asap", RESOLUTION)]
    assert error_causes(peer.read(transport)) == [
        ErrorCause(CauseCode.UNRECOGNIZED_PARAMETER, unknown)
    ]


@pytest.mark.parametrize("ppid", [ASAP_PPID, ENRP_PPID])
def test_unknown_message_type_0x4x_answered_with_error(ppid: int) -> None:
    """An unknown message type 0x41 (top bits 01) is answered with ASAP_ERROR / ENRP_ERROR
    with cause Unrecognized Message carrying the message."""
    protocol, transport, _, peer = ready()
    raw = struct.pack("!BBH", 0x41, 0, 8) + b"abcd"
    protocol.dataReceived(peer.data(raw, ppid))
    assert error_causes(peer.read(transport), ppid) == [
        ErrorCause(CauseCode.UNRECOGNIZED_MESSAGE, raw)
    ]
    assert protocol.calls == [("malformed", (CauseCode.UNRECOGNIZED_MESSAGE, ppid))]


def test_unknown_message_type_0x8x_silently_discarded() -> None:
    """An unknown message type with top bits 10 is discarded without an answer."""
    protocol, transport, _, peer = ready()
    protocol.dataReceived(peer.data(struct.pack("!BBH", 0x81, 0, 4), ASAP_PPID))
    assert peer.read(transport) == [Ack(0)]
    assert not transport.disconnecting


def test_malformed_error_message_is_not_answered() -> None:
    """A malformed ASAP_ERROR is never answered with an ASAP_ERROR (no error loops)."""
    protocol, transport, _, peer = ready()
    body = tlv(0x4ABC, b"xyz")
    raw = struct.pack("!BBH", asap.AsapType.ERROR, 0, 4 + len(body)) + body
    protocol.dataReceived(peer.data(raw, ASAP_PPID))
    assert peer.read(transport) == [Ack(0)]


def test_enrp_error_uses_server_identifiers() -> None:
    """ENRP_ERROR carries the protocol's server identifiers."""
    protocol, transport, _, peer = ready()
    protocol.enrpServerIdentifier, protocol.peerEnrpServerIdentifier = 5, 6
    protocol.dataReceived(peer.data(struct.pack("!BBH", 0x41, 0, 4), ENRP_PPID))
    [message] = [enrp.decode(d.user_data) for d in datas(peer.read(transport))]
    assert isinstance(message, enrp.ErrorMessage)
    assert (message.sending_server_identifier, message.receiving_server_identifier) == (5, 6)


# -- TLS: nothing before the handshake ---------------------------------------------------


def test_nothing_delivered_before_tls_handshake() -> None:
    """On a TLS transport messages that arrive before the handshake completed are held:
    no hook, no ACK; handshakeCompleted makes the connection ready and delivers them."""
    protocol, transport, _, peer = connect(transport=FakeTlsTransport())
    protocol.dataReceived(peer.init() + peer.asap(RESOLUTION) + peer.data(b"app", 50))
    assert protocol.calls == []
    assert peer.read(transport) == []
    with pytest.raises(ConnectionNotReady):
        protocol.sendAsap(RESOLUTION)
    protocol.handshakeCompleted()
    assert protocol.names() == ["ready", "asap", "app"]
    assert peer.read(transport) == [Ack(0), Ack(1)]
    context = protocol.securityContext
    assert context is not None and not context.authenticated  # no real TLS handle


def test_handshake_before_peer_init_waits_for_init() -> None:
    """A completed handshake alone does not make the connection ready: the INIT must come."""
    protocol, _, _, peer = connect(transport=FakeTlsTransport())
    protocol.handshakeCompleted()
    assert protocol.calls == []
    protocol.dataReceived(peer.init())
    assert protocol.names() == ["ready"]
    protocol.handshakeCompleted()  # renegotiation: not ready twice
    assert protocol.names() == ["ready"]


def test_build_security_context_is_used() -> None:
    """connectionReady gets what buildSecurityContext returns."""
    context = SecurityContext(True, "TLSv1.3", "TLS_AES_128_GCM_SHA256", psk_identity="pe-17")

    class Custom(Recorder):
        def buildSecurityContext(self) -> SecurityContext:
            return context

    protocol, _, _, peer = connect(Custom(), FakeTlsTransport())
    protocol.dataReceived(peer.init())
    protocol.handshakeCompleted()
    assert protocol.calls == [("ready", context)]
    assert protocol.securityContext is context


def test_too_much_before_handshake_is_refused() -> None:
    """Bytes held before the handshake are bounded: beyond the bound the connection closes."""
    config = MappingConfig(max_undelivered_bytes=1000)
    protocol, transport, _, peer = connect(transport=FakeTlsTransport(), config=config)
    protocol.dataReceived(peer.init())
    for _ in range(10):
        protocol.dataReceived(peer.data(b"x" * 200, 60))
    assert transport.disconnecting
    protocol.handshakeCompleted()
    assert protocol.names() == ["malformed"]


def test_close_from_hook_stops_delivery() -> None:
    """A hook that drops the connection stops delivery of the rest of the read."""

    class Closer(Recorder):
        def asapMessageReceived(self, message: asap.AsapMessage) -> None:
            super().asapMessageReceived(message)
            assert self.transport is not None
            self.transport.loseConnection()

    protocol, _, _, peer = connect(Closer(), DisconnectingTransport())
    protocol.dataReceived(peer.init() + peer.asap(RESOLUTION) + peer.asap(RESOLUTION))
    assert protocol.names() == ["ready", "asap"]


def test_factory_configures_protocols() -> None:
    """RSerPoolFactory gives each protocol its clock, mapping config and message limits."""
    clock = Clock()
    factory = RSerPoolFactory(Recorder, clock, mappingConfig=HB)
    protocol = factory.buildProtocol(None)
    assert isinstance(protocol, Recorder)
    assert protocol.clock is clock and protocol.mappingConfig is HB
    assert protocol.factory is factory


# -- fuzz --------------------------------------------------------------------------------


@settings(max_examples=200)
@given(
    st.booleans(),
    st.lists(
        st.one_of(
            st.binary(max_size=48),
            st.builds(
                lambda ppid, body: Data(body, None, None, None, ppid).encode(),
                st.sampled_from([0, ASAP_PPID, ENRP_PPID, 99]),
                st.binary(max_size=40),
            ),
        ),
        max_size=6,
    ),
    st.sampled_from([None, 0, 1, 3, 10, 1000]),
    st.integers(1, 9),
)
def test_fuzz_never_raises(
    send_init: bool, pieces: list[bytes], handshakeAfter: int | None, step: int
) -> None:
    """Random bytes and random DATA payloads, on plain TCP or on TLS with the handshake
    completing at any point, never make dataReceived raise or log a bug, and no message
    hook runs before connectionReady."""
    clock = Clock()
    protocol = Recorder(clock)
    attach(protocol, Transport() if handshakeAfter is None else FakeTlsTransport())
    stream = (Init(omit_tsn=True, omit_stream=True).encode() if send_init else b"") + b"".join(
        pieces
    )
    with logs() as events:
        for n, i in enumerate(range(0, len(stream), step)):
            if n == handshakeAfter:
                protocol.handshakeCompleted()
            protocol.dataReceived(stream[i : i + step])
        clock.advance(1000)
    assert not any("log_failure" in e for e in events)
    names = protocol.names()
    delivered = [i for i, name in enumerate(names) if name in ("asap", "enrp", "app")]
    if delivered:
        assert "ready" in names and names.index("ready") < delivered[0]


def test_messages_with_a_framing_error_in_the_same_read_are_discarded() -> None:
    """Messages that arrive in the same read as a framing error are neither delivered nor
    acknowledged: the stream can no longer be trusted and nothing could be answered."""
    protocol, transport, _, peer = ready()
    protocol.dataReceived(peer.asap(RESOLUTION) + struct.pack("!BBH", 9, 0, 4))
    assert protocol.names() == ["malformed"]
    assert peer.read(transport) == []
    assert transport.disconnecting


class CountingTransport(Transport):
    """Counts write calls."""

    writes = 0

    def write(self, data: bytes) -> None:
        self.writes += 1
        super().write(data)  # type: ignore[no-untyped-call]


def test_one_write_per_read() -> None:
    """ACKs and answers caused by one read leave in a single write (one TLS record)."""

    class Answering(Recorder):
        def asapMessageReceived(self, message: asap.AsapMessage) -> None:
            self.sendAsap(message)

    transport = CountingTransport()
    protocol, _, _, peer = connect(Answering(), transport)
    protocol.dataReceived(peer.init())
    before = transport.writes
    protocol.dataReceived(peer.asap(RESOLUTION) + peer.asap(RESOLUTION) + peer.data(b"x", 1))
    assert transport.writes == before + 1
    chunks = peer.read(transport)
    assert sum(isinstance(c, Ack) for c in chunks) == 3 and len(datas(chunks)) == 2


def test_factory_without_clock_keeps_protocol_clock() -> None:
    """A factory without a clock leaves the clock the protocol was built with."""
    clock = Clock()
    protocol = RSerPoolFactory(lambda: Recorder(clock)).buildProtocol(None)
    assert protocol is not None and protocol.clock is clock


def test_enrp_skip_and_report_parameter() -> None:
    """An ENRP message with an unknown parameter of top bits 11 is delivered and the
    parameter reported in an ENRP_ERROR."""
    protocol, transport, _, peer = ready()
    unknown = tlv(0xC123, b"abcd")
    encoded = PRESENCE.encode() + unknown
    raw = encoded[:2] + struct.pack("!H", len(encoded)) + encoded[4:]
    protocol.dataReceived(peer.data(raw, ENRP_PPID))
    assert protocol.calls == [("enrp", PRESENCE)]
    assert error_causes(peer.read(transport), ENRP_PPID) == [
        ErrorCause(CauseCode.UNRECOGNIZED_PARAMETER, unknown)
    ]


def test_honest_one_way_stream_is_not_dropped() -> None:
    """A peer that streams messages one way and reads (and answers) what we write is never
    taken for a peer that does not read."""
    config = MappingConfig(max_unread_bytes=4096, heartbeat_interval=30, heartbeat_timeout=10)
    protocol, transport, clock, peer = ready(config)
    probes = 0
    for _ in range(100):
        protocol.dataReceived(b"".join(peer.data(b"m", 1000) for _ in range(50)))
        clock.advance(0.01)
        for chunk in peer.read(transport):
            if isinstance(chunk, Heartbeat):
                probes += 1
                protocol.dataReceived(chunk.acknowledge().encode())
    assert not transport.disconnecting
    assert probes > 0  # the peer was asked, and answered
    assert len(protocol.calls) == 5000


# -- the shortcuts of the common case (issue 12) ------------------------------------------


class Plain(RSerPoolProtocol):
    """Only asapMessageReceived overridden: the acknowledgement hooks are the defaults."""

    def __init__(self, clock: Clock | None = None) -> None:
        super().__init__(clock)
        self.messages: list[asap.AsapMessage] = []

    def asapMessageReceived(self, message: asap.AsapMessage) -> None:
        self.messages.append(message)


def _plain_ready(protocol: RSerPoolProtocol) -> tuple[Transport, Peer]:
    protocol.clock = Clock()
    transport = Transport()
    attach(protocol, transport)
    peer = Peer()
    peer.read(transport)
    protocol.dataReceived(peer.init())
    return transport, peer


def test_default_acknowledgement_hooks_build_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    """With neither messagesAcknowledged nor dataAcknowledged overridden, an ACK retires
    what it acknowledges without making a SentData per message."""
    from twisted_rserpool.transport.events import SentRun

    made: list[int] = []
    values = SentRun.values

    def counting(self: SentRun) -> tuple[SentData, ...]:
        made.append(len(self))
        return values(self)

    monkeypatch.setattr(SentRun, "values", counting)
    protocol = Plain()
    transport, peer = _plain_ready(protocol)
    protocol.sendAsap(RESOLUTION)
    protocol.sendAsap(RESOLUTION)
    peer.read(transport)
    protocol.dataReceived(Ack(0).encode() + Ack(1).encode())
    assert made == []
    assert len(protocol.unacknowledged()) == 0


def test_acknowledgement_hooks_overridden_on_the_instance_are_called() -> None:
    """dataAcknowledged and messagesAcknowledged set on the instance (not the class) are
    called as before."""
    protocol = Plain()
    acknowledged: list[SentData] = []
    protocol.dataAcknowledged = acknowledged.append  # type: ignore[method-assign,assignment]
    transport, peer = _plain_ready(protocol)
    first = protocol.sendAsap(RESOLUTION)
    peer.read(transport)
    protocol.dataReceived(Ack(0).encode())
    assert acknowledged == [first]
    runs: list[Sequence[SentData]] = []
    protocol.messagesAcknowledged = runs.append  # type: ignore[method-assign,assignment]
    second = protocol.sendAsap(RESOLUTION)
    peer.read(transport)
    protocol.dataReceived(Ack(1).encode())
    assert runs == [(second,)] and acknowledged == [first]


def test_messages_acknowledged_overridden_by_a_subclass_is_called() -> None:
    """A subclass overriding messagesAcknowledged gets each ACKed run."""

    class Retiring(Plain):
        def __init__(self) -> None:
            super().__init__()
            self.runs: list[tuple[SentData, ...]] = []

        def messagesAcknowledged(self, sent: Sequence[SentData]) -> None:
            self.runs.append(tuple(sent))

    protocol = Retiring()
    transport, peer = _plain_ready(protocol)
    sent = (protocol.sendAsap(RESOLUTION), protocol.sendAsap(RESOLUTION))
    peer.read(transport)
    protocol.dataReceived(Ack(0).encode() + Ack(1).encode())
    assert protocol.runs == [sent]


def test_asap_hook_that_raises_is_logged_and_the_next_message_delivered() -> None:
    """asapMessageReceived raising: logged, the message ACKed, the next one in the same
    read delivered."""

    class Flaky(Plain):
        def asapMessageReceived(self, message: asap.AsapMessage) -> None:
            super().asapMessageReceived(message)
            if len(self.messages) == 1:
                raise RuntimeError("bug in subclass")

    protocol = Flaky()
    transport, peer = _plain_ready(protocol)
    peer.read(transport)
    with logs() as events:
        protocol.dataReceived(peer.asap(RESOLUTION) + peer.asap(RESOLUTION))
    assert protocol.messages == [RESOLUTION, RESOLUTION]
    assert peer.read(transport) == [Ack(0), Ack(1)]
    assert [e["hook"] for e in events if "log_failure" in e] == ["asapMessageReceived"]
    assert not transport.disconnecting


def test_malformed_asap_message_reported_once_among_valid_ones() -> None:
    """A malformed ASAP message between two valid ones in one read: the valid ones are
    delivered in order, the malformed one reported once, and all three ACKed."""
    protocol, transport, _, peer = ready()
    raw = struct.pack("!BBH", 0x41, 0, 8) + b"abcd"
    protocol.dataReceived(peer.asap(RESOLUTION) + peer.data(raw, ASAP_PPID) + peer.asap(RESOLUTION))
    assert protocol.calls == [
        ("asap", RESOLUTION),
        ("malformed", (CauseCode.UNRECOGNIZED_MESSAGE, ASAP_PPID)),
        ("asap", RESOLUTION),
    ]
    chunks = peer.read(transport)
    assert [c for c in chunks if isinstance(c, Ack)] == [Ack(0), Ack(1), Ack(2)]
    assert error_causes(chunks) == [ErrorCause(CauseCode.UNRECOGNIZED_MESSAGE, raw)]
