"""Application messages waiting for room under the TCP mapping's unacknowledged-data limit."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable

from twisted_rserpool.transport.protocol import RSerPoolProtocol

__all__ = ["MAX_MESSAGE", "UNORDERED", "Outbox", "split"]

#: The largest application message put in one DATA chunk; longer writes are split.
MAX_MESSAGE = 60_000
#: Streaming merges writes shorter than this; longer ones are worth a chunk of their own.
MERGE_BELOW = 8192


def split(data: bytes) -> list[bytes]:
    """``data`` in pieces of at most :data:`MAX_MESSAGE` bytes (one piece for short data)."""
    if len(data) <= MAX_MESSAGE:
        return [data]
    view = memoryview(data)
    return [bytes(view[i : i + MAX_MESSAGE]) for i in range(0, len(data), MAX_MESSAGE)]


#: The bit of a message's ``meta`` that sets the TCP mapping's U flag (ASAP_SCTP_UNORDER).
UNORDERED = 0x1000


class _Run:
    """Consecutive queued messages with the same PPID and ``meta``, oldest first from
    ``head`` (those before it were sent)."""

    __slots__ = ("data", "head", "meta", "ppid")

    def __init__(self, ppid: int, meta: int, data: list[bytes]) -> None:
        self.ppid = ppid
        self.meta = meta
        self.data = data
        self.head = 0


#: Sent messages dropped from the front of a run once there are this many and they are
#: at least half of it (amortised: each is moved at most once per halving).
_COMPACT = 64


class Outbox:
    """Queued ``(data, ppid)`` messages, sent while the peer's unacknowledged data leaves room
    (the rest waits for its ACKs, so a slow peer slows the writer instead of failing).

    Each message may carry ``meta``, an integer the owner gives meaning to (a session keeps
    its send options there); only :data:`UNORDERED` means something here. Streaming
    merges only messages without ``meta``.

    The messages queued when :meth:`pump` runs leave in one write (one TLS record where
    they fit), which is why the session and the pool element's transport pump once per
    reactor turn rather than once per message. Consecutive messages with the same PPID
    and ``meta`` are kept (and handed to the mapping) as one run: a write adds its message
    to the last run with one list append, and the pump sends a run with one
    :meth:`~twisted_rserpool.transport.connection.MappingConnection.send_messages`, which
    looks at about as many messages as there is room for (a pump that the peer's ACKs
    let a few messages through costs that few, however long the queue)."""

    __slots__ = ("_open", "_openPpid", "_runs", "streaming", "tail", "tailPpid")

    def __init__(self, streaming: bool = False) -> None:
        self.streaming = streaming
        self._runs: deque[_Run] = deque()
        #: The messages of the last run, which a message of PPID :attr:`tailPpid` without
        #: meta and at most :data:`MAX_MESSAGE` long joins with ``tail.append(data)``
        #: (what :meth:`put` does for it; a writer may do it itself). ``tailPpid`` is -1
        #: when no message may: nothing queued, the last run has meta, or streaming.
        self.tail: list[bytes] = []
        self.tailPpid = -1
        # Streaming: the last queued message, which writes of PPID _openPpid are still
        # appended to; it joins the runs (as bytes) once something else is queued after
        # it or it is sent.
        self._open: bytearray | None = None
        self._openPpid = 0

    def __len__(self) -> int:
        queued = sum(len(run.data) - run.head for run in self._runs)
        return queued if self._open is None else queued + 1

    def put(self, data: bytes, ppid: int, meta: int = 0) -> None:
        """Queue one write: one message (split into pieces that fit a chunk), or, when
        streaming and shorter than :data:`MERGE_BELOW`, appended to the last queued message
        of the same PPID while that stays within :data:`MAX_MESSAGE`."""
        if ppid == self.tailPpid and not meta and len(data) <= MAX_MESSAGE:
            self.tail.append(data)
            return
        if self.streaming and not meta and len(data) < MERGE_BELOW:
            tail = self._open
            if tail is not None and self._openPpid == ppid and len(tail) + len(data) <= MAX_MESSAGE:
                tail += data
                return
            self._close()
            self._open = bytearray(data)
            self._openPpid = ppid
            return
        self._close()
        if len(data) <= MAX_MESSAGE:
            self._append(data, ppid, meta)
            return
        for piece in split(data):
            self._append(piece, ppid, meta)

    def _close(self) -> None:
        """No more writes join the open streaming message: it is queued as it is."""
        tail = self._open
        if tail is not None:
            self._open = None
            self._append(bytes(tail), self._openPpid, 0)

    def _append(self, data: bytes, ppid: int, meta: int) -> None:
        runs = self._runs
        if runs and runs[-1].ppid == ppid and runs[-1].meta == meta:
            runs[-1].data.append(data)
            return
        run = _Run(ppid, meta, [data])
        runs.append(run)
        if self.streaming or meta:
            self._forgetTail()
        else:
            self.tail, self.tailPpid = run.data, ppid

    def _forgetTail(self) -> None:
        self.tail, self.tailPpid = [], -1

    def put_first(self, messages: Iterable[tuple[bytes, int] | tuple[bytes, int, int]]) -> None:
        """Queue messages (``(data, ppid)`` or ``(data, ppid, meta)``) ahead of everything
        already queued, in their order."""
        runs = self._runs
        for message in reversed(list(messages)):
            data, ppid = message[0], message[1]
            meta = message[2] if len(message) > 2 else 0
            if runs and runs[0].ppid == ppid and runs[0].meta == meta:
                first = runs[0]
                if first.head:
                    first.head -= 1
                    first.data[first.head] = data
                else:
                    first.data.insert(0, data)
            else:
                runs.appendleft(_Run(ppid, meta, [data]))
                if len(runs) == 1 and not self.streaming and not meta:
                    self.tail, self.tailPpid = runs[0].data, ppid

    def put_control(self, data: bytes, ppid: int) -> None:
        """Queue a control message; later writes are never merged into it or across it."""
        self._close()
        self._append(data, ppid, 0)

    def entries(self) -> list[tuple[bytes | bytearray, int, int]]:
        """The queued messages as ``(data, ppid, meta)``, oldest first (left queued)."""
        found: list[tuple[bytes | bytearray, int, int]] = [
            (data, run.ppid, run.meta) for run in self._runs for data in run.data[run.head :]
        ]
        if self._open is not None:
            found.append((self._open, self._openPpid, 0))
        return found

    def drain(self) -> list[tuple[bytes, int, int]]:
        """Take every queued message out, as ``(data, ppid, meta)``, oldest first."""
        taken = [(bytes(d), p, m) for d, p, m in self.entries()]
        self._runs.clear()
        self._forgetTail()
        self._open = None
        return taken

    def pump(
        self, protocol: RSerPoolProtocol, sent: Callable[[int, int], None] | None = None
    ) -> int:
        """Send what fits now on ``protocol``, in one write; returns the messages sent.
        ``sent`` hears of each message with ``meta`` as it goes: its TSN and ``meta``."""
        mapping = protocol.mapping
        transport = protocol.transport
        if mapping is None or transport is None or not protocol.ready or mapping.closed:
            return 0
        runs = self._runs
        total = 0
        try:
            while True:
                if not runs:
                    # Streaming: the open message leaves (and is closed) once all before
                    # it did and it fits.
                    tail = self._open
                    if tail is None:
                        break
                    outstanding = mapping.unacknowledged_bytes
                    size = len(tail) + protocol.mappingConfig.data_format.header_length
                    if outstanding and outstanding + size > mapping.config.max_unacknowledged_bytes:
                        break
                    self._close()
                run = runs[0]
                data = run.data
                meta = run.meta
                first = mapping.next_tsn
                try:
                    count = mapping.send_messages(
                        data, run.ppid, start=run.head, unordered=bool(meta & UNORDERED)
                    )
                except Exception:
                    # The first cannot be sent at all: it is dropped, as the error says.
                    run.head += 1
                    if run.head == len(data):
                        self._removeHead()
                    raise
                if meta and sent is not None:
                    for tsn in range(first, first + count):
                        sent(tsn & 0xFFFFFFFF, meta)
                total += count
                head = run.head = run.head + count
                if head < len(data):
                    if head >= _COMPACT and head * 2 >= len(data):
                        del data[:head]
                        run.head = 0
                    break
                self._removeHead()
        finally:
            if total:
                transport.write(mapping.data_to_send())
        return total

    def _removeHead(self) -> None:
        run = self._runs.popleft()
        if run.data is self.tail:
            self._forgetTail()
