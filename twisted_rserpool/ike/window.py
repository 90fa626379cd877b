"""Message IDs of one IKE SA in both directions (RFC 7296 sections 2.1-2.3), without I/O.

``RequestWindow`` owns our side: the next Message ID, the requests outstanding (at most
``size``; RFC 7296 requires one unless SET_WINDOW_SIZE raised it), the requests waiting
behind them, and their retransmission: a request is resent after ``timeout``, then after
twice that, and so on, ``tries`` sends in all, then it is given up. It owns the peer's
side too: the Message ID expected next and the response cache, so a retransmitted
request is answered with the very bytes of our first answer. A message sent as IKE
Fragment messages (RFC 7383) is resent, or answered again, as all its fragments.

Times are the caller's ``now`` (seconds); the window never reads a clock.
"""

from __future__ import annotations

import enum
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Generic, TypeVar

__all__ = ["Outstanding", "PeerRequest", "RequestWindow"]

_T = TypeVar("_T")


@dataclass
class Outstanding(Generic[_T]):
    """One request of ours in flight: its bytes, what it is for, and its schedule."""

    message_id: int
    exchange: int
    data: bytes
    task: _T
    first_sent_at: float
    sent_at: float
    tries: int
    deadline: float
    fragments: tuple[bytes, ...] = ()
    """The IKE Fragment messages sent instead of ``data``, when it was fragmented."""

    @property
    def datagrams(self) -> tuple[bytes, ...]:
        """What goes on the wire for this request, at each (re)transmission."""
        return self.fragments or (self.data,)


class PeerRequest(enum.Enum):
    """What to do with a request from the peer (``RequestWindow.classify``)."""

    NEW = "new"
    """The next request: process it."""
    RETRANSMITTED = "retransmitted"
    """The request we last answered, byte for byte: resend the cached response."""
    DROP = "drop"
    """Old, out of the window, or a different message under a used Message ID."""


@dataclass
class _Cached:
    request: bytes
    response: bytes
    fragments: tuple[bytes, ...] = ()


class RequestWindow(Generic[_T]):
    """Our requests (``_T`` says what each is for) and the peer's, for one IKE SA."""

    def __init__(self, *, timeout: float, tries: int, size: int = 1) -> None:
        if timeout <= 0 or tries < 1 or size < 1:
            raise ValueError("the window needs a positive timeout, size and try count")
        self.timeout = timeout
        self.tries = tries
        self.size = size
        self.next_message_id = 0
        self.peer_next_message_id = 0
        self._outstanding: dict[int, Outstanding[_T]] = {}
        self._queue: deque[_T] = deque()
        self._cache: _Cached | None = None

    # --- our requests -------------------------------------------------------------------

    def allocate(self) -> int:
        """The Message ID for our next request (and count it as used)."""
        message_id = self.next_message_id
        self.next_message_id += 1
        return message_id

    @property
    def full(self) -> bool:
        """Whether another request must wait for an answer first."""
        return len(self._outstanding) >= self.size

    @property
    def idle(self) -> bool:
        """No request of ours is outstanding."""
        return not self._outstanding

    def sent(
        self,
        message_id: int,
        exchange: int,
        data: bytes,
        task: _T,
        now: float,
        fragments: tuple[bytes, ...] = (),
    ) -> None:
        """Record the first send of request ``message_id`` at ``now`` (as ``fragments``, if
        it was fragmented)."""
        self._outstanding[message_id] = Outstanding(
            message_id, exchange, data, task, now, now, 1, now + self.timeout, fragments
        )

    def queue(self, task: _T) -> None:
        """Keep ``task`` until the window has room (see ``next_queued``)."""
        self._queue.append(task)

    def next_queued(self, admit: Callable[[_T], bool] = lambda task: True) -> _T | None:
        """The oldest waiting task (removed), if the window has room and ``admit`` takes it."""
        if self.full or not self._queue or not admit(self._queue[0]):
            return None
        return self._queue.popleft()

    def match(self, message_id: int, exchange: int) -> Outstanding[_T] | None:
        """Our outstanding request that a response with these fields answers, or None."""
        request = self._outstanding.get(message_id)
        if request is None or request.exchange != exchange:
            return None
        return request

    def complete(self, message_id: int) -> None:
        """The request was answered (or is abandoned): stop retransmitting it."""
        self._outstanding.pop(message_id, None)

    def abandon(self) -> None:
        """Forget every outstanding and waiting request."""
        self._outstanding.clear()
        self._queue.clear()

    def __iter__(self) -> Iterator[_T]:
        """The tasks outstanding, then those waiting."""
        yield from (r.task for r in self._outstanding.values())
        yield from self._queue

    def next_deadline(self) -> float | None:
        """When ``on_timer`` has something to do, or None."""
        return min((r.deadline for r in self._outstanding.values()), default=None)

    def on_timer(self, now: float) -> tuple[list[Outstanding[_T]], list[Outstanding[_T]]]:
        """(requests to resend now, requests given up) at ``now``.

        A request sent ``tries`` times and still unanswered after its last timeout is
        given up (and forgotten); the others due are rescheduled with a doubled timeout.
        """
        resend: list[Outstanding[_T]] = []
        given_up: list[Outstanding[_T]] = []
        for request in list(self._outstanding.values()):
            if now < request.deadline:
                continue
            if request.tries >= self.tries:
                del self._outstanding[request.message_id]
                given_up.append(request)
                continue
            request.tries += 1
            request.sent_at = now
            request.deadline = now + self.timeout * 2 ** (request.tries - 1)
            resend.append(request)
        return resend, given_up

    # --- the peer's requests ------------------------------------------------------------

    def classify(self, message_id: int, raw: bytes) -> PeerRequest:
        """Whether the peer's request ``message_id`` (whole message ``raw``) is new."""
        if message_id == self.peer_next_message_id:
            return PeerRequest.NEW
        cached = self._cache
        if (
            cached is not None
            and message_id == self.peer_next_message_id - 1
            and raw == cached.request
        ):
            return PeerRequest.RETRANSMITTED
        return PeerRequest.DROP

    def cached_response(self) -> bytes:
        """Our answer to the peer's last request (after ``RETRANSMITTED``)."""
        assert self._cache is not None
        return self._cache.response

    def cached_datagrams(self) -> tuple[bytes, ...]:
        """What to send again for the peer's last request: our answer, or its fragments."""
        assert self._cache is not None
        return self._cache.fragments or (self._cache.response,)

    def answered(
        self, message_id: int, request: bytes, response: bytes, fragments: tuple[bytes, ...] = ()
    ) -> None:
        """We answered the peer's request ``message_id`` (``request``: its octets, or those of
        its first IKE Fragment message): cache it, expect the next one."""
        self._cache = _Cached(request, response, fragments)
        self.peer_next_message_id = message_id + 1
