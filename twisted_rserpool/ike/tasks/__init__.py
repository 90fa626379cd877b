"""The exchanges of an IKE SA, one task per exchange, as strongSwan's task manager has them.

A task we start (``Task``) builds its request when the request window has room and
processes the answer; the responder side of each exchange is a function of its module
called with the decrypted request. The ``IkeSa`` (``twisted_rserpool.ike.sa``) holds
what the exchanges share (SPIs, nonces, keys, CHILD_SAs, the state machine and the
request window) and dispatches every response to the task that sent the request.

    ike_init      IKE_SA_INIT, both sides (cookies, INVALID_KE_PAYLOAD, NAT detection)
    ike_auth      IKE_AUTH, both sides (one round today; EAP adds rounds)
    child_create  CREATE_CHILD_SA for a new CHILD_SA, and the CHILD_SA of IKE_AUTH
    rekey         rekeying the IKE SA (both sides) and a CHILD_SA (responder)
    informational INFORMATIONAL: Delete of the IKE SA or CHILD_SAs, liveness checks
    redirect      RFC 5685: following a REDIRECT, and redirecting a client
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import TYPE_CHECKING

from twisted_rserpool.ike.codec import IkeMessage, Payload
from twisted_rserpool.ike.window import Outstanding

if TYPE_CHECKING:
    from twisted_rserpool.ike.sa import IkeSa

__all__ = ["Task"]


class Task(ABC):
    """One exchange started by us: its request, then the processing of its response."""

    exchange: int
    """The exchange type of the request."""
    name: str
    """What the request is for, in log lines."""

    def __init__(self, sa: IkeSa) -> None:
        self.sa = sa

    @abstractmethod
    def build(self, now: float) -> Sequence[Payload] | None:
        """The payloads of the request, when the window lets it go; None cancels it."""

    def encode(self, message_id: int, payloads: Sequence[Payload]) -> bytes:
        """The request's octets: protected by the SK payload (IKE_SA_INIT overrides this)."""
        return self.sa.seal(self.exchange, message_id, False, payloads)

    def receive(
        self, message: IkeMessage, raw: bytes, request: Outstanding[Task], now: float
    ) -> None:
        """The response to ``request``: decrypted (or dropped) and handed to ``process``."""
        payloads = self.sa.open(message, raw, request=False)
        if payloads is None:
            return
        self.sa.last_heard = now
        self.sa.window.complete(request.message_id)
        self.process(payloads, request, now)

    def process(
        self, payloads: tuple[Payload, ...], request: Outstanding[Task], now: float
    ) -> None:
        """The decrypted response to our request ``request`` arrived."""
        raise NotImplementedError(f"{type(self).__name__} overrides receive instead")
