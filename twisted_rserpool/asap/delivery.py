"""What an application sends and receives through ASAP (RFC 5352 sections 6.5-6.7): send
options, pool element handles, messages received with their sender, and messages that could
not be delivered."""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntFlag
from typing import Any

from twisted_rserpool.wire.parameters import PoolElementParameter, Transport

__all__ = ["PoolElementHandle", "ReceivedMessage", "SendOptions", "UndeliveredMessage"]


class SendOptions(IntFlag):
    """RFC 5352 section 6.5.5, with the RFC's values."""

    #: The session's default (``ASAP_SEND_FAILOVER`` unless the session was made otherwise).
    USE_DEFAULT = 0x0000
    #: At least once: resent to the next pool element if the first fails.
    SEND_FAILOVER = 0x0001
    #: Never resent elsewhere: returned to the application in the failure report.
    SEND_NO_FAILOVER = 0x0002
    #: To the pool element of the previous message (what a session always does).
    SEND_TO_LAST = 0x0004
    #: A copy to every pool element of the pool (``PoolUser.sendToAll``).
    SEND_TO_ALL = 0x0008
    #: With SEND_TO_ALL: also to ourselves when we are a pool element of that pool.
    SEND_TO_SELF = 0x0010
    #: The TCP mapping's U flag (TCP still delivers in order).
    SCTP_UNORDER = 0x1000


@dataclass(frozen=True, slots=True)
class PoolElementHandle:
    """A pool element handle (RFC 5352 6.5.3): the pool handle, the PE identifier and,
    when known, the PE's user transport."""

    pool_handle: bytes
    pe_identifier: int
    transport: Transport | None = None

    @classmethod
    def of(cls, poolHandle: bytes, element: PoolElementParameter) -> PoolElementHandle:
        """The handle of ``element`` in pool ``poolHandle``."""
        return cls(poolHandle, element.pe_identifier, element.user_transport)


@dataclass(frozen=True, slots=True)
class UndeliveredMessage:
    """An application message a session could not deliver (RFC 5352 6.7 failedMessage).

    ``sent`` is true when it was handed to the failed pool element and never acknowledged:
    that pool element may have processed it. ``resent`` is true when it had already been
    sent again after an earlier failover.
    """

    data: bytes
    ppid: int
    options: SendOptions = SendOptions.USE_DEFAULT
    sent: bool = False
    resent: bool = False


@dataclass(frozen=True, slots=True)
class ReceivedMessage:
    """One application message as RFC 5352 6.6 Data.Received passes it up.

    ``sender`` is the sender's pool element handle when known (on a pool user: the pool
    element of the session; on a pool element: the pool user's own PE as its business card
    named it, when the pool user is also a PE), else ``None``; ``peer`` is the transport
    address of the connection it came on (6.6 B). ``resent`` is true when the pool user sent
    it to a pool element before that failed without acknowledging it: that pool element
    may have processed it already (at-least-once delivery across a failover).
    ``unordered`` is the TCP mapping's U flag of its DATA chunk (the sender's
    ASAP_SCTP_UNORDER); TCP delivers it in order all the same.
    """

    data: bytes
    ppid: int = 0
    sender: PoolElementHandle | None = None
    peer: Any = None
    resent: bool = False
    unordered: bool = False
