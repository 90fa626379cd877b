"""Application messages waiting for room under the TCP mapping's unacknowledged-data limit."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable

from twisted_rserpool.transport.events import SentData
from twisted_rserpool.transport.protocol import RSerPoolProtocol

__all__ = ["MAX_MESSAGE", "UNORDERED", "Outbox", "split"]

#: The largest application message put in one DATA chunk; longer writes are split.
MAX_MESSAGE = 60_000
#: Streaming merges writes shorter than this; longer ones are worth a chunk of their own.
MERGE_BELOW = 8192
_CHUNK_HEADER = 16


def split(data: bytes) -> list[bytes]:
    """``data`` in pieces of at most :data:`MAX_MESSAGE` bytes (one piece for short data)."""
    if len(data) <= MAX_MESSAGE:
        return [data]
    view = memoryview(data)
    return [bytes(view[i : i + MAX_MESSAGE]) for i in range(0, len(data), MAX_MESSAGE)]


#: The bit of a message's ``meta`` that sets the TCP mapping's U flag (ASAP_SCTP_UNORDER).
UNORDERED = 0x1000


class Outbox:
    """Queued ``(data, ppid)`` messages, sent while the peer's unacknowledged data leaves room
    (the rest waits for its ACKs, so a slow peer slows the writer instead of failing).

    Each message may carry ``meta``, an integer the owner gives meaning to (a session keeps
    its send options there); only :data:`UNORDERED` means something here. Streaming
    merges only messages without ``meta``.

    The messages queued when :meth:`pump` runs leave in one write (one TLS record where
    they fit), which is why the session and the pool element's transport pump once per
    reactor turn rather than once per message."""

    def __init__(self, streaming: bool = False) -> None:
        self.streaming = streaming
        self.queue: deque[tuple[bytes | bytearray, int]] = deque()
        #: The ``meta`` of each queued message, in the queue's order.
        self.meta: deque[int] = deque()
        #: The queued entry writes may still be appended to (streaming only).
        self._open: bytearray | None = None

    def __len__(self) -> int:
        return len(self.queue)

    def put(self, data: bytes, ppid: int, meta: int = 0) -> None:
        """Queue one write: one message (split into pieces that fit a chunk), or, when
        streaming and shorter than :data:`MERGE_BELOW`, appended to the last queued message
        of the same PPID while that stays within :data:`MAX_MESSAGE`."""
        if self.streaming and not meta and len(data) < MERGE_BELOW:
            tail = self._open
            if (
                tail is not None
                and self.queue
                and self.queue[-1][0] is tail
                and self.queue[-1][1] == ppid
                and len(tail) + len(data) <= MAX_MESSAGE
            ):
                tail += data
                return
            self._open = bytearray(data)
            self.queue.append((self._open, ppid))
            self.meta.append(0)
            return
        self._open = None
        if len(data) <= MAX_MESSAGE:
            self.queue.append((data, ppid))
            self.meta.append(meta)
            return
        for piece in split(data):
            self.queue.append((piece, ppid))
            self.meta.append(meta)

    def put_first(self, messages: Iterable[tuple[bytes, int] | tuple[bytes, int, int]]) -> None:
        """Queue messages (``(data, ppid)`` or ``(data, ppid, meta)``) ahead of everything
        already queued, in their order."""
        entries = list(messages)
        self.queue.extendleft((m[0], m[1]) for m in reversed(entries))
        self.meta.extendleft(m[2] if len(m) > 2 else 0 for m in reversed(entries))

    def put_control(self, data: bytes, ppid: int) -> None:
        """Queue a control message; later writes are never merged into it or across it."""
        self._open = None
        self.queue.append((data, ppid))
        self.meta.append(0)

    def drain(self) -> list[tuple[bytes, int, int]]:
        """Take every queued message out, as ``(data, ppid, meta)``, oldest first."""
        taken = [(bytes(d), p, m) for (d, p), m in zip(self.queue, self.meta, strict=True)]
        self.queue.clear()
        self.meta.clear()
        self._open = None
        return taken

    def pump(
        self, protocol: RSerPoolProtocol, sent: Callable[[SentData, int], None] | None = None
    ) -> int:
        """Send what fits now on ``protocol``, in one write; returns the messages sent.
        ``sent`` hears of each message with ``meta`` as it goes."""
        mapping = protocol.mapping
        transport = protocol.transport
        if mapping is None or transport is None or not protocol.ready or mapping.closed:
            return 0
        limit = protocol.mappingConfig.max_unacknowledged_bytes
        queue = self.queue
        metas = self.meta
        send = mapping.send_data
        outstanding = mapping.unacknowledged_bytes
        count = 0
        while queue:
            data, ppid = queue[0]
            if outstanding and outstanding + len(data) + _CHUNK_HEADER > limit:
                break
            queue.popleft()
            meta = metas.popleft()
            if type(data) is not bytes:  # the streaming entry writes were merged into
                if data is self._open:
                    self._open = None
                data = bytes(data)
            chunk = send(data, ppid=ppid, unordered=bool(meta & UNORDERED))
            outstanding += len(data) + _CHUNK_HEADER
            if meta and sent is not None:
                sent(chunk, meta)
            count += 1
        if count:
            transport.write(mapping.data_to_send())
        return count
