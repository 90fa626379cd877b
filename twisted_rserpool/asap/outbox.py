"""Application messages waiting for room under the TCP mapping's unacknowledged-data limit."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable

from twisted_rserpool.transport.protocol import RSerPoolProtocol

__all__ = ["MAX_MESSAGE", "Outbox", "split"]

#: The largest application message put in one DATA chunk; longer writes are split.
MAX_MESSAGE = 60_000
_CHUNK_HEADER = 16


def split(data: bytes) -> list[bytes]:
    """``data`` in pieces of at most :data:`MAX_MESSAGE` bytes (one piece for short data)."""
    if len(data) <= MAX_MESSAGE:
        return [data]
    view = memoryview(data)
    return [bytes(view[i : i + MAX_MESSAGE]) for i in range(0, len(data), MAX_MESSAGE)]


class Outbox:
    """Queued ``(data, ppid)`` messages, sent while the peer's unacknowledged data leaves room
    (the rest waits for its ACKs, so a slow peer slows the writer instead of failing)."""

    def __init__(self) -> None:
        self.queue: deque[tuple[bytes, int]] = deque()

    def __len__(self) -> int:
        return len(self.queue)

    def put(self, data: bytes, ppid: int) -> None:
        """Queue one write (split into messages that fit a chunk)."""
        for piece in split(data):
            self.queue.append((piece, ppid))

    def put_first(self, messages: Iterable[tuple[bytes, int]]) -> None:
        """Queue messages ahead of everything already queued, in their order."""
        self.queue.extendleft(reversed(list(messages)))

    def pump(self, protocol: RSerPoolProtocol) -> int:
        """Send what fits now on ``protocol``; returns the number of messages sent."""
        mapping = protocol.mapping
        if mapping is None or not protocol.ready:
            return 0
        limit = protocol.mappingConfig.max_unacknowledged_bytes
        sent = 0
        queue = protocol_queue = self.queue
        while protocol_queue:
            data, ppid = queue[0]
            if mapping.unacknowledged_bytes + len(data) + _CHUNK_HEADER > limit and (
                mapping.unacknowledged_bytes
            ):
                break
            queue.popleft()
            protocol.sendApplicationData(data, ppid)
            sent += 1
        return sent
