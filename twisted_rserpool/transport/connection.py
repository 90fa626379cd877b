"""The TCP mapping of one connection as a sans-IO state machine.

:class:`MappingConnection` turns received bytes and the current time into events
(:mod:`twisted_rserpool.transport.events`) and the upper layer's requests into bytes to
send. It never touches a socket or a reactor: the Twisted protocol in
:mod:`twisted_rserpool.transport.protocol` feeds it and writes what it produces.

Rules it enforces (draft-ietf-rserpool-tcpmapping-03):

- Our INIT is the first chunk we send; it is queued when the connection is created.
- The peer's INIT must be its first chunk, and it is sent only once.
- Every received DATA chunk gets exactly one ACK, once the upper layer has taken it
  (:meth:`MappingConnection.acknowledge`, or :meth:`MappingConnection.acknowledge_through`
  for all taken so far in one write), in arrival order, with the TSN unless the peer's
  INIT suppressed TSNs.
- Every DATA chunk we send is kept until the peer ACKs it: :meth:`unacknowledged`.
  ACKs must arrive in order, for outstanding chunks only.
- Every HEARTBEAT gets one HEARTBEAT ACK echoing its information. After
  ``heartbeat_interval`` seconds without receiving a byte we send a HEARTBEAT; if nothing at
  all (its HEARTBEAT ACK or any other byte) arrives within ``heartbeat_timeout`` seconds the
  peer is dead. Any byte counts as a sign of life, since only a live peer sends it.
- Bounds: chunk length, undecoded bytes, received DATA not yet acknowledged by the upper
  layer, sent DATA not yet acknowledged by the peer, and the ACKs and HEARTBEAT ACKs the
  peer made us write without showing that it reads them (:class:`MappingConfig`). A peer
  shows it reads by acknowledging our DATA or answering our HEARTBEAT; once a quarter of
  ``max_unread_bytes`` is unconfirmed we send a HEARTBEAT that only its own HEARTBEAT ACK
  (not other traffic) answers, within ``heartbeat_timeout``. Without this, a peer that
  sends and never reads would make our write buffer grow without end.
- While the upper layer does not read from the peer (:meth:`MappingConnection.pause_reading`,
  backpressure against a flood), the peer's silence is ours: HEARTBEATs still go out when
  due, but no timeout ends the connection; the peer's time to answer starts again at
  :meth:`MappingConnection.resume_reading`.

A peer that breaks a rule ends the connection with a :class:`ProtocolError` event (the
mapping cannot resynchronise a byte stream). Misuse by the upper layer raises
:class:`LocalProtocolError`.

DATA and ACK chunks take the codec's fast path (:meth:`ChunkDecoder.read_chunks`: every
chunk of a read in one pass, no chunk value per message; DATA packed by one precompiled
struct; the ACKs of a run of messages made at once); ``fast=False`` takes every chunk
through the checked decoder instead, with the same events and bytes.
"""

from __future__ import annotations

import struct
from bisect import bisect_right
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import Enum
from itertools import accumulate, chain, repeat
from operator import add, and_, itemgetter
from typing import Any

from twisted_rserpool.transport.events import (
    DataAcknowledged,
    DataReceived,
    Event,
    HeartbeatTimeout,
    InitReceived,
    ProtocolError,
    SentData,
    SentRun,
)
from twisted_rserpool.wire.errors import CauseCode, MalformedMessage
from twisted_rserpool.wire.fastpath import (
    PADDING,
    AckRun,
    FastLayout,
    HeaderPacker,
    ack_chunks,
    data_header,
)
from twisted_rserpool.wire.tcpmapping import (
    DEFAULT_MAX_BUFFER_SIZE,
    DEFAULT_MAX_CHUNK_LENGTH,
    MAX_CHUNK_LENGTH,
    Ack,
    Chunk,
    ChunkDecoder,
    ChunkEncoder,
    DataFormat,
    Heartbeat,
    HeartbeatAck,
    Init,
    check_data_words,
)

__all__ = [
    "ConnectionState",
    "LocalProtocolError",
    "MappingConfig",
    "MappingConnection",
    "SendBufferFull",
]

_U32_MAX = 0xFFFFFFFF
_HEARTBEAT_INFO = struct.Struct("!Q")
#: HEARTBEATs remembered for the answers they confirm (older ones' answers count as lost).
_HEARTBEAT_MARKS = 8
#: Entries acknowledged before a queue's head are dropped once there are this many and
#: they are at least half the list.
_COMPACT = 32
_U16_MAX = 0xFFFF
_DATA_TYPE = 0
_DATA_UNORDERED = 0x04
#: send_messages sends this few messages one by one rather than setting up a window.
_SMALL_WINDOW = 3
_new = tuple.__new__
_user_data = itemgetter(1)
#: The words (PPID, stream, U flag) of a message sent without any.
_DEFAULT_WORDS = (0, 0, False)
_padding_of = PADDING.__getitem__


class _DataPacking:
    """How DATA chunks of one format are packed on the fast path, shared by every
    connection sending that format: one header by :attr:`header` (all seven words, the
    omitted ones ignored), or a run of them by :attr:`words` fed only the kept words."""

    __slots__ = ("has_ppid", "has_stream", "has_tsn", "header", "header_length", "words")

    def __init__(self, has_tsn: bool, has_stream: bool, has_ppid: bool) -> None:
        self.header: HeaderPacker
        self.header_length, self.header = data_header(has_tsn, has_stream, has_ppid)
        self.words: Callable[..., bytes] = FastLayout(has_tsn, has_stream, has_ppid).data.pack
        self.has_tsn = has_tsn
        self.has_stream = has_stream
        self.has_ppid = has_ppid


_PACKINGS = tuple(_DataPacking(bool(i & 1), bool(i & 2), bool(i & 4)) for i in range(8))


def _packing(fmt: DataFormat) -> _DataPacking:
    return _PACKINGS[fmt.has_tsn + 2 * fmt.has_stream + 4 * fmt.has_ppid]


def _joined(runs: list[SentRun]) -> SentRun:
    """Runs retired one after the other, as one."""
    if len(runs) == 1:
        return runs[0]
    return SentRun(
        runs[0]._first_tsn,
        [data for run in runs for data in run._data],
        [words for run in runs for words in run._words],
    )


def _numbers(start: int, end: int, mask: int) -> Any:
    """The numbers ``start`` to ``end - 1``, each wrapped by ``mask`` (``2**n - 1``)."""
    if end <= mask + 1:
        return range(start, end)
    return map(and_, range(start, end), repeat(mask))


def _slices(data: bytes, step: int) -> list[bytes]:
    return [data[start : start + step] for start in range(0, len(data), step)]


class ConnectionState(Enum):
    """Where a :class:`MappingConnection` stands."""

    #: Our INIT is queued or sent; the peer's has not arrived.
    AWAITING_INIT = "awaiting INIT"
    #: Both INITs are known: DATA flows both ways.
    ESTABLISHED = "established"
    #: Ended by a protocol error, a heartbeat timeout or the upper layer.
    CLOSED = "closed"


#: Compared against on every message: a module constant is cheaper than the enum lookup.
_CLOSED = ConnectionState.CLOSED


class LocalProtocolError(Exception):
    """The upper layer asked for something the mapping does not allow right now."""


class SendBufferFull(LocalProtocolError):
    """Sending would keep more unacknowledged DATA than ``max_unacknowledged_bytes``.

    The peer is not acknowledging what it receives; the message was not sent.
    """


@dataclass(frozen=True, slots=True)
class MappingConfig:
    """Limits and timers of one connection; every field bounds what a peer can cost us.

    - ``data_format``: the optional DATA words we send, announced in our INIT.
    - ``max_chunk_length``: the longest chunk accepted from the peer and the longest DATA
      chunk we agree to send (header included).
    - ``max_buffer_size``: received bytes held before they form a complete chunk.
    - ``max_undelivered_bytes``: bytes of received DATA chunks (headers included) that the
      upper layer has not yet taken (for instance while the TLS handshake is still running).
    - ``max_unacknowledged_bytes``: bytes of sent DATA chunks (headers included) the peer
      has not ACKed.
    - ``max_unread_bytes``: bytes of ACK and HEARTBEAT ACK chunks we wrote that the peer has
      not shown it read; beyond it the connection ends (Lack of Resources).
    - ``heartbeat_interval``: seconds without received bytes before we send a HEARTBEAT
      (``None``: never).
    - ``heartbeat_timeout``: seconds to wait after a HEARTBEAT for any byte from the peer.
    """

    data_format: DataFormat = field(default_factory=DataFormat)
    max_chunk_length: int = DEFAULT_MAX_CHUNK_LENGTH
    max_buffer_size: int = DEFAULT_MAX_BUFFER_SIZE
    max_undelivered_bytes: int = 256 * 1024
    max_unacknowledged_bytes: int = 1024 * 1024
    max_unread_bytes: int = 1024 * 1024
    heartbeat_interval: float | None = 30.0
    heartbeat_timeout: float = 10.0

    def __post_init__(self) -> None:
        if not self.data_format.header_length <= self.max_chunk_length <= MAX_CHUNK_LENGTH:
            raise ValueError(
                f"max_chunk_length must be within {self.data_format.header_length}.."
                f"{MAX_CHUNK_LENGTH} (room for a DATA chunk header)"
            )
        if self.max_buffer_size < self.max_chunk_length + 3:
            raise ValueError("max_buffer_size must hold a chunk of max_chunk_length and padding")
        if self.max_unread_bytes < 64:
            raise ValueError("max_unread_bytes must be at least 64")
        for name in ("max_undelivered_bytes", "max_unacknowledged_bytes"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must not be negative")
        if self.heartbeat_interval is not None and self.heartbeat_interval <= 0:
            raise ValueError("heartbeat_interval must be positive (or None)")
        if self.heartbeat_timeout <= 0:
            raise ValueError("heartbeat_timeout must be positive")


class MappingConnection:
    """One side of one TCP mapping connection, sans IO.

    Create it when the byte stream opens (our INIT is then waiting in
    :meth:`data_to_send`), feed received bytes to :meth:`receive_data`, and write out
    :meth:`data_to_send` after every call. Call :meth:`handle_timer` at
    :meth:`next_deadline` (or later). ``now`` is any monotonic clock in seconds. ``fast``
    (the default) decodes DATA and ACK chunks on the codec's fast path.
    """

    # A server holds one per connection, thousands of them: no instance dictionary.
    __slots__ = (
        "_answers_read",
        "_answers_written",
        "_data_marks",
        "_decoder",
        "_encoder",
        "_feed_step",
        "_header_length",
        "_heartbeat_marks",
        "_heartbeat_sent_at",
        "_heartbeats_sent",
        "_last_received",
        "_max_unacknowledged",
        "_max_user_data",
        "_next_ssn",
        "_next_to_acknowledge",
        "_next_tsn",
        "_outgoing",
        "_packing",
        "_peer_has_tsn",
        "_peer_header_length",
        "_probe",
        "_reading_paused",
        "_state",
        "_stream_zero_ssn",
        "_unacknowledged",
        "_unacknowledged_bytes",
        "_unacknowledged_head",
        "_unacknowledged_words",
        "_undelivered",
        "_undelivered_bytes",
        "_undelivered_head",
        "config",
    )

    def __init__(
        self, config: MappingConfig | None = None, *, now: float = 0.0, fast: bool = True
    ) -> None:
        self.config = config = MappingConfig() if config is None else config
        self._decoder = ChunkDecoder(
            max_chunk_length=config.max_chunk_length,
            max_buffer_size=config.max_buffer_size,
            fast=fast,
        )
        self._state = ConnectionState.AWAITING_INIT
        # The fast path numbers and packs DATA itself (_packing; TSN and stream sequence
        # numbers below); the checked path has the codec's encoder do both.
        self._encoder: ChunkEncoder | None = None
        self._packing: _DataPacking | None = None
        if fast:
            self._packing = _packing(config.data_format)
            init = config.data_format.init().encode()
        else:
            self._encoder = ChunkEncoder(config.data_format)
            init = self._encoder.send_init()
        # The TSN of our next DATA chunk, and the next stream sequence number of stream 0
        # and of the other streams used (a dictionary only once one is: 224 bytes each).
        self._next_tsn = 0
        self._stream_zero_ssn = 0
        self._next_ssn: dict[int, int] | None = None
        # Pieces to write, joined once in data_to_send (user data is not copied before).
        self._outgoing: list[bytes] = [init]
        self._header_length = config.data_format.header_length
        self._max_user_data = config.max_chunk_length - self._header_length
        self._max_unacknowledged = config.max_unacknowledged_bytes
        self._feed_step = max(1, config.max_buffer_size - config.max_chunk_length - 3)
        # The queues below are lists read from a head index (compacted now and then),
        # not deques: an empty deque holds a 64-slot block (760 bytes), and a server keeps
        # thousands of mostly idle connections.
        # Received DATA not yet acknowledged by the upper layer: its size (header
        # included), oldest first from _undelivered_head; the oldest has TSN
        # _next_to_acknowledge.
        self._undelivered: list[int] = []
        self._undelivered_head = 0
        self._undelivered_bytes = 0
        self._next_to_acknowledge = 0
        # The peer's DATA header length and whether its ACKs carry TSNs, from its INIT.
        self._peer_header_length = 0
        self._peer_has_tsn = True
        # Sent DATA not yet acknowledged by the peer, oldest first from
        # _unacknowledged_head: the user data, the (PPID, stream, U flag) of each (one
        # tuple for the messages sent together: no SentData per message unless asked
        # for), and how many answer bytes preceded each (_data_marks, same indices). Their
        # TSNs are consecutive, up to the one before _next_tsn.
        self._unacknowledged: list[bytes] = []
        self._unacknowledged_words: list[tuple[int, int, bool]] = []
        self._data_marks: list[int] = []
        self._unacknowledged_head = 0
        self._unacknowledged_bytes = 0
        self._last_received = now
        self._heartbeat_sent_at: float | None = None
        self._heartbeats_sent = 0
        # Answers (ACK, HEARTBEAT ACK bytes) written, and how many of them the peer has
        # shown it read; each DATA and HEARTBEAT we send marks how many preceded it.
        self._answers_written = 0
        self._answers_read = 0
        # The last _HEARTBEAT_MARKS HEARTBEATs sent: (info, answers written before it);
        # None until the first.
        self._heartbeat_marks: list[tuple[bytes, int]] | None = None
        # The HEARTBEAT sent because too many answers were unread: (info, time sent).
        self._probe: tuple[bytes, float] | None = None
        self._reading_paused = False

    # -- state ----------------------------------------------------------------------------

    @property
    def state(self) -> ConnectionState:
        """Where the connection stands."""
        return self._state

    @property
    def closed(self) -> bool:
        """Whether the connection has ended; it then neither sends nor receives."""
        return self._state is _CLOSED

    @property
    def peer_data_format(self) -> DataFormat | None:
        """Which optional words the peer's DATA chunks carry; ``None`` before its INIT."""
        return self._decoder.data_format

    @property
    def heartbeat_outstanding(self) -> bool:
        """Whether we sent a HEARTBEAT and have heard nothing from the peer since."""
        return self._heartbeat_sent_at is not None

    def unacknowledged(self) -> tuple[SentData, ...]:
        """The DATA we sent that the peer has not acknowledged, oldest first.

        Still available after the connection closed: these are the messages to send again
        to another peer on failover.
        """
        head = self._unacknowledged_head
        return self._run(head, len(self._unacknowledged)).values()

    def _run(self, start: int, end: int) -> SentRun:
        """The unacknowledged messages from index ``start`` to ``end`` of the queue."""
        return SentRun(
            (self._next_tsn - len(self._unacknowledged) + start) & _U32_MAX,
            self._unacknowledged[start:end],
            self._unacknowledged_words[start:end],
        )

    @property
    def next_tsn(self) -> int:
        """The TSN our next DATA chunk gets (on the wire or implied by its position)."""
        return self._next_tsn

    @property
    def unacknowledged_bytes(self) -> int:
        """Bytes of the DATA chunks in :meth:`unacknowledged` (headers included)."""
        return self._unacknowledged_bytes

    @property
    def undelivered(self) -> int:
        """Received DATA chunks the upper layer has not yet acknowledged."""
        return len(self._undelivered) - self._undelivered_head

    @property
    def undelivered_bytes(self) -> int:
        """Bytes of the DATA chunks in :attr:`undelivered` (headers included), which
        ``max_undelivered_bytes`` bounds."""
        return self._undelivered_bytes

    def data_to_send(self) -> bytes:
        """The bytes to write to the peer now (and forget)."""
        data = b"".join(self._outgoing)
        self._outgoing.clear()
        return data

    @property
    def unread_bytes(self) -> int:
        """Bytes of ACK and HEARTBEAT ACK chunks we wrote that the peer has not shown it read."""
        return self._answers_written - self._answers_read

    @property
    def reading_paused(self) -> bool:
        """Whether the upper layer said it stopped reading from the peer."""
        return self._reading_paused

    def pause_reading(self, now: float) -> None:
        """The upper layer stopped reading from the peer (backpressure).

        Until :meth:`resume_reading` nothing the peer sent may reach us, so no HEARTBEAT
        timeout ends the connection; HEARTBEATs are still sent when due.
        """
        self._reading_paused = True

    def resume_reading(self, now: float) -> None:
        """The upper layer reads again: the peer's time to answer starts again at ``now``."""
        if not self._reading_paused:
            return
        self._reading_paused = False
        self._last_received = max(self._last_received, now)
        if self._heartbeat_sent_at is not None:
            self._heartbeat_sent_at = now
        if self._probe is not None:
            self._probe = (self._probe[0], now)

    def close(self) -> None:
        """End the connection from our side (or because the byte stream ended)."""
        self._state = ConnectionState.CLOSED
        self._heartbeat_sent_at = None
        self._probe = None

    # -- receiving ------------------------------------------------------------------------

    def receive_data(self, data: bytes, now: float) -> list[Event]:
        """Take bytes from the peer and return what they mean, in order.

        A :class:`ProtocolError` ends the list and the connection; events before it are
        valid and should still be handled. Bytes received after the end are ignored.
        """
        if self._state is _CLOSED or not data:
            return []
        self._last_received = now
        self._heartbeat_sent_at = None
        events: list[Event] = []
        max_unread = self.config.max_unread_bytes
        if self._answers_written - self._answers_read > max_unread:
            self.close()
            return [
                ProtocolError(
                    MalformedMessage(
                        f"the peer has not read {self.unread_bytes} bytes of acknowledgements "
                        f"we sent (limit {self.config.max_unread_bytes})",
                        CauseCode.LACK_OF_RESOURCES,
                        report=False,
                    )
                )
            ]
        # Feed the decoder in slices it can always hold on top of one incomplete chunk, so
        # that its buffer limit bounds what a peer withholds, not how much arrived at once.
        step = self._feed_step
        decoder = self._decoder
        items: list[DataReceived | int | Chunk] = []
        try:
            pieces = (data,) if len(data) <= step else _slices(data, step)
            for piece in pieces:
                decoder.receive_data(piece)
                fault = None
                outstanding = len(self._unacknowledged) - self._unacknowledged_head
                first_tsn = decoder.next_tsn
                try:
                    decoder.read_chunks(
                        items.append,
                        DataReceived,
                        outstanding,
                        (self._next_tsn - outstanding) & _U32_MAX,
                    )
                except MalformedMessage as error:
                    fault = error
                # What came before the decoder's fault is taken first, and may fail first.
                if items:
                    # Nothing but DATA (without a fault, the decoder counted one TSN per
                    # record it passed on): taken at once unless they exceed the limit.
                    if (
                        fault is not None
                        or (decoder.next_tsn - first_tsn) & _U32_MAX != len(items)
                        or not self._take_data(items, events)
                    ):
                        self._take(items, events)
                    items.clear()
                if fault is not None:
                    raise fault
        except MalformedMessage as error:
            self.close()
            events.append(ProtocolError(error))
            return events
        if self._probe is None and self._answers_written - self._answers_read > max_unread // 4:
            self._probe = (self._send_heartbeat(), now)
        return events

    def _take_data(self, items: list[Any], events: list[Event]) -> bool:
        """Take ``items``, DATA records only, at once; ``False`` (nothing taken) when they
        would exceed ``max_undelivered_bytes``, for :meth:`_take` to find the one that does."""
        # Count the header too, so that empty chunks are not free.
        sizes = list(map(add, map(len, map(_user_data, items)), repeat(self._peer_header_length)))
        total = self._undelivered_bytes + sum(sizes)
        if total > self.config.max_undelivered_bytes:
            return False
        self._undelivered += sizes
        self._undelivered_bytes = total
        events += items
        return True

    def _take(self, items: list[DataReceived | int | Chunk], events: list[Event]) -> None:
        """Turn what the decoder read (DATA as events, ACKs as TSNs, other chunks as
        values) into events, in order; consecutive ACKs become one event."""
        # The ACKs in a row: the messages they retire, as runs, joined into one event.
        acknowledged: list[SentRun] = []
        limit = self.config.max_undelivered_bytes
        header_length = self._peer_header_length
        undelivered = self._undelivered
        try:
            for item in items:
                if type(item) is DataReceived:
                    if acknowledged:
                        events.append(DataAcknowledged(_joined(acknowledged)))
                        acknowledged.clear()
                    # Count the header too, so that empty chunks are not free.
                    size = len(item.user_data) + header_length
                    if self._undelivered_bytes + size > limit:
                        raise MalformedMessage(
                            f"more than {limit} bytes of DATA received "
                            "that the upper layer has not taken yet",
                            CauseCode.LACK_OF_RESOURCES,
                            report=False,
                        )
                    undelivered.append(size)
                    self._undelivered_bytes += size
                    events.append(item)
                elif type(item) is AckRun:
                    acknowledged.append(self._retire(item))
                elif type(item) is int:
                    acknowledged.append(self._receive_ack(item))
                else:
                    if acknowledged:
                        events.append(DataAcknowledged(_joined(acknowledged)))
                        acknowledged.clear()
                    assert not isinstance(item, DataReceived | int)
                    event = self._receive_chunk(item)
                    if event is not None:
                        events.append(event)
        finally:
            # The ACKs before a fault still count.
            if acknowledged:
                events.append(DataAcknowledged(_joined(acknowledged)))

    def _receive_chunk(self, chunk: Chunk) -> Event | None:
        """A chunk other than DATA and ACK (those come as records)."""
        if isinstance(chunk, Heartbeat):
            answer = chunk.acknowledge().encode()
            self._outgoing.append(answer)
            self._answers_written += len(answer)
            return None
        if isinstance(chunk, HeartbeatAck):
            # Receiving it already proved the peer alive; it also proves the peer read
            # everything we wrote before the HEARTBEAT it answers.
            self._heartbeat_acknowledged(chunk.info)
            return None
        assert isinstance(chunk, Init)  # the decoder refuses a second INIT
        fmt = chunk.data_format
        self._peer_header_length = fmt.header_length
        self._peer_has_tsn = fmt.has_tsn
        self._state = ConnectionState.ESTABLISHED
        return InitReceived(fmt)

    def _retire(self, count: int) -> SentRun:
        """The oldest ``count`` outstanding DATA chunks were acknowledged in order."""
        unacknowledged = self._unacknowledged
        head = self._unacknowledged_head
        end = head + count
        assert end <= len(unacknowledged)  # the decoder counts runs against them
        first_tsn = (self._next_tsn - len(unacknowledged) + head) & _U32_MAX
        if end == len(unacknowledged):
            # All of them: hand the lists over instead of copying them.
            words = self._unacknowledged_words
            if head:
                unacknowledged = unacknowledged[head:]
                words = words[head:]
            mark = self._data_marks[-1]
            self._unacknowledged = []
            self._unacknowledged_words = []
            self._data_marks = []
            self._unacknowledged_head = 0
            self._unacknowledged_bytes = 0
            sent = SentRun(first_tsn, unacknowledged, words)
        else:
            data = unacknowledged[head:end]
            sent = SentRun(first_tsn, data, self._unacknowledged_words[head:end])
            mark = self._data_marks[end - 1]
            self._unacknowledged_bytes -= sum(map(len, data)) + count * self._header_length
            self._advance_unacknowledged(end)
        self._answers_read = max(self._answers_read, mark)
        return sent

    def _advance_unacknowledged(self, head: int) -> None:
        """Everything before index ``head`` is acknowledged (some remain after it)."""
        if head >= _COMPACT and head * 2 >= len(self._unacknowledged):
            # Amortised: each entry is moved at most once per halving.
            del self._unacknowledged[:head]
            del self._unacknowledged_words[:head]
            del self._data_marks[:head]
            head = 0
        self._unacknowledged_head = head

    def _receive_ack(self, tsn: int) -> SentRun:
        """An ACK chunk with ``tsn`` (``-1``: none) retires our oldest outstanding DATA."""
        unacknowledged = self._unacknowledged
        head = self._unacknowledged_head
        if head == len(unacknowledged):
            raise MalformedMessage(
                "ACK chunk while no DATA chunk is outstanding",
                CauseCode.INVALID_VALUES,
                report=False,
                offending=Ack(None if tsn < 0 else tsn).encode(),
            )
        expected = (self._next_tsn - len(unacknowledged) + head) & _U32_MAX
        if tsn >= 0 and tsn != expected:
            raise MalformedMessage(
                f"ACK chunk for TSN {tsn}, expected {expected}",
                CauseCode.INVALID_VALUES,
                report=False,
                offending=Ack(tsn).encode(),
            )
        return self._retire(1)

    def acknowledge(self, event: DataReceived) -> None:
        """Send the ACK for a received DATA chunk the upper layer has now taken.

        Chunks must be acknowledged in the order they arrived. After the connection closed
        this does nothing.
        """
        self._acknowledge(event, single=True)

    def acknowledge_through(self, event: DataReceived) -> None:
        """Send the ACKs for every received DATA chunk up to and including ``event``, all
        taken by the upper layer now, in one piece. After the connection closed this does
        nothing."""
        self._acknowledge(event, single=False)

    def _acknowledge(self, event: DataReceived, single: bool) -> None:
        if self._state is _CLOSED:
            return
        undelivered = self._undelivered
        head = self._undelivered_head
        waiting = len(undelivered) - head
        first = self._next_to_acknowledge
        count = ((event.tsn - first) & _U32_MAX) + 1
        if count > waiting or (single and count != 1):
            raise LocalProtocolError(
                f"DATA with TSN {event.tsn} acknowledged out of order "
                f"(next is {first if waiting else None})"
            )
        if count == waiting:
            undelivered.clear()
            self._undelivered_head = 0
            self._undelivered_bytes = 0
        else:
            end = head + count
            self._undelivered_bytes -= sum(undelivered[head:end])
            if end >= _COMPACT and end * 2 >= len(undelivered):
                del undelivered[:end]
                end = 0
            self._undelivered_head = end
        self._next_to_acknowledge = (event.tsn + 1) & _U32_MAX
        answer = ack_chunks(first, count, self._peer_has_tsn)
        self._outgoing.append(answer)
        self._answers_written += len(answer)

    # -- sending --------------------------------------------------------------------------

    def send_data(
        self,
        user_data: bytes,
        *,
        ppid: int = 0,
        stream_identifier: int = 0,
        unordered: bool = False,
    ) -> SentData:
        """Queue one DATA chunk carrying ``user_data`` and keep it until the peer ACKs it.

        Raises :class:`LocalProtocolError` after the connection closed or when the chunk
        would exceed ``max_chunk_length``, :class:`SendBufferFull` when the peer has left
        too much unacknowledged, and ``ValueError`` for a PPID or stream that our INIT's
        format cannot carry.
        """
        if self._state is _CLOSED:
            raise LocalProtocolError("the connection is closed")
        length = len(user_data)
        if length > self._max_user_data:
            raise LocalProtocolError(
                f"{length} bytes of user data exceed the "
                f"{self.config.max_chunk_length}-byte chunk limit"
            )
        size = length + self._header_length
        if self._unacknowledged_bytes + size > self._max_unacknowledged:
            raise SendBufferFull(
                f"{self._unacknowledged_bytes} bytes are unacknowledged; sending "
                f"{size} more would exceed {self._max_unacknowledged}"
            )
        packing = self._packing
        out = self._outgoing
        if packing is None:
            assert self._encoder is not None
            tsn = self._encoder.append_data(out, user_data, ppid, stream_identifier, unordered)
        else:
            if ppid or stream_identifier:
                self._check_words(packing, ppid, stream_identifier)
            tsn = self._next_tsn
            if unordered:
                ssn = 0
            elif not stream_identifier:
                ssn = self._stream_zero_ssn
                self._stream_zero_ssn = (ssn + 1) & _U16_MAX
            else:
                ssn = self._advance_stream(stream_identifier, 1)
            out.append(
                packing.header(
                    _DATA_TYPE,
                    _DATA_UNORDERED if unordered else 0,
                    size,
                    tsn,
                    stream_identifier,
                    ssn,
                    ppid,
                )
            )
            out.append(user_data)
            if size & 3:
                out.append(PADDING[size & 3])
        self._next_tsn = (tsn + 1) & _U32_MAX
        self._unacknowledged.append(user_data)
        self._unacknowledged_words.append(
            (ppid, stream_identifier, unordered)
            if ppid or stream_identifier or unordered
            else _DEFAULT_WORDS
        )
        self._data_marks.append(self._answers_written)
        self._unacknowledged_bytes += size
        return _new(SentData, (tsn, user_data, ppid, stream_identifier, unordered))

    def send_messages(
        self,
        messages: Sequence[bytes],
        ppid: int = 0,
        *,
        start: int = 0,
        stream_identifier: int = 0,
        unordered: bool = False,
    ) -> int:
        """Queue one DATA chunk per message from ``messages[start]`` on, in order, as
        :meth:`send_data` would one by one, for as many as ``max_unacknowledged_bytes``
        leaves room for: the number queued. They are in :meth:`unacknowledged` with
        consecutive TSNs.

        Stops before a message that would exceed ``max_chunk_length`` or the room left;
        raises what :meth:`send_data` raises (and queues nothing) when the first message
        cannot be sent: after the connection closed, when it is too long for a chunk, when
        it alone exceeds ``max_unacknowledged_bytes`` (:class:`SendBufferFull`, whether or
        not something is outstanding), or for a PPID or stream our format cannot carry.
        Looks at about as many messages as fit, not at all of them: a long queue costs
        nothing while the peer's ACKs let a few through at a time.
        """
        position = start
        end = len(messages)
        header_length = self._header_length
        while position < end:
            room = self._max_unacknowledged - self._unacknowledged_bytes
            # As many as fit if the others are as long as the first, and one more.
            window = max(1, room // (len(messages[position]) + header_length) + 1)
            stop = min(end, position + window)
            if window <= _SMALL_WINDOW:
                # Room for a few (large messages, ACKs a few at a time): one by one with
                # send_data, which raises for the first what cannot be sent at all.
                data = messages[position]
                size = len(data) + header_length
                if (
                    self._state is _CLOSED
                    or len(data) > self._max_user_data
                    or size > self._max_unacknowledged
                ):
                    if position == start:
                        self.send_data(data, ppid=ppid, stream_identifier=stream_identifier)
                    break
                if size > room:
                    break  # it waits for the peer's ACKs
                self.send_data(
                    data, ppid=ppid, stream_identifier=stream_identifier, unordered=unordered
                )
                position += 1
                continue
            chosen = messages[position:stop] if position or stop < end else messages
            position += self._send_window(
                chosen, ppid, stream_identifier, unordered, first=position == start
            )
            if position < stop:
                break  # the window did not fit: no room, or a message too long
        return position - start

    def _send_window(
        self,
        messages: Sequence[bytes],
        ppid: int,
        stream_identifier: int,
        unordered: bool,
        first: bool,
    ) -> int:
        """:meth:`send_messages` for all of ``messages`` (at least one); when the first
        cannot be sent, raise if it is ``first`` of the call, else queue nothing."""
        count = len(messages)
        lengths = list(map(len, messages))
        header_length = self._header_length
        if max(lengths) > self._max_user_data:
            limit = self._max_user_data
            count = next(i for i, length in enumerate(lengths) if length > limit)
            if not count:
                if not first:
                    return 0
                self.send_data(messages[0], ppid=ppid, stream_identifier=stream_identifier)
                raise AssertionError("send_data refuses what does not fit a chunk")
            del lengths[count:]
        room = self._max_unacknowledged - self._unacknowledged_bytes
        total = sum(lengths) + count * header_length
        if total > room:
            ends = list(accumulate(map(add, lengths, repeat(header_length))))
            count = bisect_right(ends, room)
            if not count:
                if not first or (
                    self._state is not _CLOSED
                    and lengths[0] + header_length <= self._max_unacknowledged
                ):
                    return 0  # room comes with the peer's ACKs
                self.send_data(messages[0], ppid=ppid, stream_identifier=stream_identifier)
                raise AssertionError("send_data refuses what does not fit")
            total = ends[count - 1]
            del lengths[count:]
        packing = self._packing
        if self._state is _CLOSED or packing is None or count == 1:
            # One by one: the checked encoder, the errors of a closed connection, or a
            # single message (no pipeline to set up).
            for data in messages[:count]:
                self.send_data(
                    data, ppid=ppid, stream_identifier=stream_identifier, unordered=unordered
                )
            return count
        if ppid or stream_identifier:
            self._check_words(packing, ppid, stream_identifier)
        chosen = messages if count == len(messages) else messages[:count]
        tsn = self._next_tsn
        end = tsn + count
        # Header words as columns, C loops over them: no Python frame per message.
        columns: list[Any] = [
            repeat(_DATA_TYPE),
            repeat(_DATA_UNORDERED if unordered else 0),
            map(add, lengths, repeat(header_length)),
        ]
        if packing.has_tsn:
            columns.append(_numbers(tsn, end, _U32_MAX))
        if packing.has_stream:
            if unordered:
                ssns: Any = repeat(0)
            elif not stream_identifier:
                ssn = self._stream_zero_ssn
                ssns = _numbers(ssn, ssn + count, _U16_MAX)
                self._stream_zero_ssn = (ssn + count) & _U16_MAX
            else:
                ssn = self._advance_stream(stream_identifier, count)
                ssns = _numbers(ssn, ssn + count, _U16_MAX)
            columns += (repeat(stream_identifier), ssns)
        elif not unordered:
            if not stream_identifier:
                self._stream_zero_ssn = (self._stream_zero_ssn + count) & _U16_MAX
            else:
                self._advance_stream(stream_identifier, count)
        if packing.has_ppid:
            columns.append(repeat(ppid))
        headers = map(packing.words, *columns)
        # The header length is a multiple of 4: the user data's length sets the padding.
        if any(map(and_, lengths, repeat(3))):
            paddings = map(_padding_of, map(and_, lengths, repeat(3)))
            self._outgoing += chain.from_iterable(zip(headers, chosen, paddings, strict=True))
        else:  # none needed (messages of 100 B, 1 KB, 16 KB...)
            self._outgoing += chain.from_iterable(zip(headers, chosen, strict=True))
        self._unacknowledged += chosen
        self._unacknowledged_words += repeat((ppid, stream_identifier, unordered), count)
        self._data_marks += repeat(self._answers_written, count)
        self._unacknowledged_bytes += total
        self._next_tsn = end & _U32_MAX
        return count

    @staticmethod
    def _check_words(packing: _DataPacking, ppid: int, stream_identifier: int) -> None:
        """Refuse a PPID or stream the format omits or that is out of range (the checks
        of the codec's encoder)."""
        check_data_words(ppid, stream_identifier, packing.has_ppid, packing.has_stream)

    def _advance_stream(self, stream_identifier: int, count: int) -> int:
        """The next stream sequence number of a stream other than 0, advanced by ``count``."""
        streams = self._next_ssn
        if streams is None:
            streams = self._next_ssn = {}
        ssn = streams.get(stream_identifier, 0)
        streams[stream_identifier] = (ssn + count) & _U16_MAX
        return ssn

    # -- time -----------------------------------------------------------------------------

    def next_deadline(self) -> float | None:
        """When :meth:`handle_timer` has something to do next; ``None`` for never."""
        if self.closed:
            return None
        if self._reading_paused:
            # Only a HEARTBEAT to send; timeouts wait until we read again.
            interval = self.config.heartbeat_interval
            if self._heartbeat_sent_at is None and interval is not None:
                return self._last_received + interval
            return None
        # Asked after every read: no list, no min() over it.
        config = self.config
        sent_at = self._heartbeat_sent_at
        if sent_at is not None:
            deadline: float | None = sent_at + config.heartbeat_timeout
        elif config.heartbeat_interval is not None:
            deadline = self._last_received + config.heartbeat_interval
        else:
            deadline = None
        probe = self._probe
        if probe is not None:
            probed = probe[1] + config.heartbeat_timeout
            if deadline is None or probed < deadline:
                deadline = probed
        return deadline

    def handle_timer(self, now: float) -> list[Event]:
        """Send a HEARTBEAT when the peer has been silent too long, or declare it dead
        (:class:`HeartbeatTimeout`) when it did not answer one (never while reading is
        paused). Early calls do nothing."""
        if self.closed:
            return []
        timeout = self.config.heartbeat_timeout
        sent_at = self._heartbeat_sent_at
        if not self._reading_paused and (
            (sent_at is not None and now >= sent_at + timeout)
            or (self._probe is not None and now >= self._probe[1] + timeout)
        ):
            self.close()
            return [HeartbeatTimeout(timeout)]
        interval = self.config.heartbeat_interval
        if sent_at is None and interval is not None and now >= self._last_received + interval:
            self._send_heartbeat()
            self._heartbeat_sent_at = now
        return []

    def _send_heartbeat(self) -> bytes:
        self._heartbeats_sent += 1
        info = _HEARTBEAT_INFO.pack(self._heartbeats_sent)
        self._outgoing.append(Heartbeat(info).encode())
        marks = self._heartbeat_marks
        if marks is None:
            marks = self._heartbeat_marks = []
        marks.append((info, self._answers_written))
        if len(marks) > _HEARTBEAT_MARKS:
            del marks[0]
        return info

    def _heartbeat_acknowledged(self, info: bytes) -> None:
        marks = self._heartbeat_marks
        if marks is None or not any(sent == info for sent, _ in marks):
            return  # not ours, or too old to matter
        while marks:
            sent, mark = marks.pop(0)
            self._answers_read = max(self._answers_read, mark)
            if self._probe is not None and self._probe[0] == sent:
                self._probe = None
            if sent == info:
                break
