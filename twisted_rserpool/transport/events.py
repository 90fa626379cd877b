"""What a :class:`~twisted_rserpool.transport.connection.MappingConnection` reports.

Every event is an immutable value. A connection returns them from ``receive_data`` and
``handle_timer``; the events that end the connection (:class:`ProtocolError`,
:class:`HeartbeatTimeout`) are always the last of their list.

The two values made once per message, :class:`DataReceived` and :class:`SentData`, are
named tuples rather than frozen dataclasses: a frozen dataclass of five fields costs about
0.6 µs to build, a named tuple about 0.1 µs, and every message makes one of each.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import NamedTuple, TypeAlias, overload

from twisted_rserpool.wire.errors import MalformedMessage
from twisted_rserpool.wire.tcpmapping import DataFormat

__all__ = [
    "DataAcknowledged",
    "DataReceived",
    "Event",
    "HeartbeatTimeout",
    "InitReceived",
    "ProtocolError",
    "SentData",
    "SentRun",
]


class SentData(NamedTuple):
    """One DATA chunk we sent, kept until the peer acknowledges its delivery.

    ``tsn`` is the chunk's transmission sequence number, counted from 0 on this
    connection whether or not it appears on the wire. The other fields are what the
    upper layer passed to ``send_data``: enough to send the same message again to
    another peer after a failover.
    """

    tsn: int
    user_data: bytes
    ppid: int = 0
    stream_identifier: int = 0
    unordered: bool = False


class SentRun(Sequence[SentData]):
    """Messages we sent with consecutive TSNs from ``first_tsn``, oldest first: a sequence
    of :class:`SentData` made only when looked at.

    ``data`` holds each message's user data and ``words`` its ``(ppid,
    stream_identifier, unordered)`` (one tuple shared by the messages sent together):
    a connection keeps its unacknowledged messages that way, and a run of ACKs retires
    them without a value per message, which most upper layers never look at. It equals
    any sequence of the same :class:`SentData`, in the same order.
    """

    __slots__ = ("_data", "_first_tsn", "_sent", "_words")

    def __init__(
        self, first_tsn: int, data: list[bytes], words: list[tuple[int, int, bool]]
    ) -> None:
        self._first_tsn = first_tsn
        self._data = data
        self._words = words
        self._sent: tuple[SentData, ...] | None = None

    def values(self) -> tuple[SentData, ...]:
        """The messages as one tuple (made once)."""
        sent = self._sent
        if sent is None:
            first = self._first_tsn
            sent = self._sent = tuple(
                SentData((first + number) & 0xFFFFFFFF, data, *words)
                for number, (data, words) in enumerate(zip(self._data, self._words, strict=True))
            )
        return sent

    def __len__(self) -> int:
        return len(self._data)

    @overload
    def __getitem__(self, index: int) -> SentData: ...

    @overload
    def __getitem__(self, index: slice) -> tuple[SentData, ...]: ...

    def __getitem__(self, index: int | slice) -> SentData | tuple[SentData, ...]:
        return self.values()[index]

    def __iter__(self) -> Iterator[SentData]:
        return iter(self.values())

    def __eq__(self, other: object) -> bool:
        if isinstance(other, SentRun | tuple | list):
            return self.values() == tuple(other)
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self.values())

    def __repr__(self) -> str:
        return f"SentRun{self.values()!r}"


@dataclass(frozen=True, slots=True)
class InitReceived:
    """The peer's INIT arrived: the mapping is up in both directions.

    ``data_format`` says which optional words the peer's DATA chunks carry.
    """

    data_format: DataFormat


class DataReceived(NamedTuple):
    """The peer sent one DATA chunk, to be delivered to the upper layer.

    Once the upper layer has taken it, pass this event to ``acknowledge`` (or a later one
    to ``acknowledge_through``) so that the peer gets its ACK; the draft requires exactly
    one ACK per delivered DATA chunk, in the order the chunks arrived. ``tsn`` is the
    chunk's TSN (explicit or implied by its position in the stream); ``ppid`` and
    ``stream_identifier`` are 0 when the peer's INIT omitted them; ``unordered`` is the
    chunk's U flag.
    """

    tsn: int
    user_data: bytes
    ppid: int = 0
    stream_identifier: int = 0
    unordered: bool = False


class DataAcknowledged(NamedTuple):
    """The peer acknowledged delivery of DATA chunks we sent: ``sent``, oldest first.

    One event stands for a run of consecutive ACK chunks (those of one read), so that
    acknowledged messages are retired together. A connection reports them as a
    :class:`SentRun` (no :class:`SentData` made unless looked at); any sequence of
    :class:`SentData` compares equal to it. A named tuple, as the per-message events
    are: one is made for every read that brings ACKs.
    """

    sent: Sequence[SentData]


@dataclass(frozen=True, slots=True)
class ProtocolError:
    """The peer broke the TCP mapping; the connection is closed and must be dropped.

    ``error.reason`` says why and ``error.cause`` gives the RFC 5354 cause (Lack of
    Resources for a limit that was exceeded, Unrecognized Message for a reserved chunk
    type, Invalid Values otherwise). The mapping has no error chunk: nothing is sent back.
    """

    error: MalformedMessage

    @property
    def reason(self) -> str:
        """Why the connection failed, in one line."""
        return self.error.reason


@dataclass(frozen=True, slots=True)
class HeartbeatTimeout:
    """No HEARTBEAT ACK and no other bytes came within ``timeout`` seconds of our
    HEARTBEAT: the peer is considered dead and the connection is closed."""

    timeout: float

    @property
    def reason(self) -> str:
        """Why the connection failed, in one line."""
        return f"no answer to a HEARTBEAT within {self.timeout:g} s"


Event: TypeAlias = InitReceived | DataReceived | DataAcknowledged | ProtocolError | HeartbeatTimeout
