"""INFORMATIONAL (RFC 7296 sections 1.4, 1.5, 2.4): Delete payloads and liveness checks.

Ours: ``Liveness`` (an empty request; its answer proves the peer alive), ``DeleteChild``
and ``DeleteIke``. The peer's: ``respond`` deletes the CHILD_SAs it names (answering with
our SPIs of the pair) or the IKE SA, and hands an N(REDIRECT) to ``redirect``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from twisted.logger import Logger

from twisted_rserpool.ike.codec import DeletePayload, Payload
from twisted_rserpool.ike.constants import ExchangeType, NotifyType, ProtocolId
from twisted_rserpool.ike.events import ChildSaDeleted, LivenessConfirmed
from twisted_rserpool.ike.state import State, StateEvent
from twisted_rserpool.ike.tasks import Task
from twisted_rserpool.ike.tasks.common import notifies
from twisted_rserpool.ike.tasks.configuration import answer_informational
from twisted_rserpool.ike.tasks.redirect import informational_redirect
from twisted_rserpool.ike.window import Outstanding

if TYPE_CHECKING:
    from twisted_rserpool.ike.sa import IkeSa

__all__ = ["DeleteChild", "DeleteIke", "Liveness", "respond"]

log = Logger()


class Liveness(Task):
    """An empty INFORMATIONAL request (RFC 7296 section 2.4)."""

    exchange = ExchangeType.INFORMATIONAL
    name = "liveness"

    def build(self, now: float) -> Sequence[Payload]:
        return ()

    def process(
        self, payloads: tuple[Payload, ...], request: Outstanding[Task], now: float
    ) -> None:
        sa = self.sa
        log.debug(
            "liveness check of IKE SA {spi_i}/{spi_r} answered by {peer}",
            spi_i=sa.spi_i.hex(),
            spi_r=sa.spi_r.hex(),
            peer=sa.peer_address,
        )
        sa.host.emit(LivenessConfirmed(sa.spi_i, sa.spi_r, now - request.first_sent_at))


class DeleteChild(Task):
    """Delete CHILD_SAs by the SPIs we chose (the peer answers with its own)."""

    exchange = ExchangeType.INFORMATIONAL
    name = "delete child"

    def __init__(self, sa: IkeSa, protocol: int, spis: tuple[bytes, ...]) -> None:
        super().__init__(sa)
        self.protocol = protocol
        self.spis = spis

    def build(self, now: float) -> Sequence[Payload]:
        return (DeletePayload.child_sas(self.protocol, self.spis),)

    def process(
        self, payloads: tuple[Payload, ...], request: Outstanding[Task], now: float
    ) -> None:
        """Nothing left to do: the CHILD_SAs were removed when the request was made."""


class DeleteIke(Task):
    """Delete the IKE SA and its CHILD_SAs; the answer closes it."""

    exchange = ExchangeType.INFORMATIONAL
    name = "delete"

    def build(self, now: float) -> Sequence[Payload]:
        return (DeletePayload.ike_sa(),)

    def process(
        self, payloads: tuple[Payload, ...], request: Outstanding[Task], now: float
    ) -> None:
        sa = self.sa
        sa.close(StateEvent.DELETED, sa.deleted_event("rekeyed" if sa.rekeyed_to else "deleted"))


def respond(
    sa: IkeSa, message_id: int, payloads: tuple[Payload, ...], raw: bytes, now: float
) -> None:
    """Answer an INFORMATIONAL request of the peer."""
    redirect = next((n for n in notifies(payloads) if n.notify_type == NotifyType.REDIRECT), None)
    if redirect is not None and sa.state == State.ESTABLISHED:
        sa.respond(ExchangeType.INFORMATIONAL, message_id, [], raw)
        informational_redirect(sa, redirect, now)
        return
    answer: list[Payload] = []
    delete_ike = False
    for delete in (p for p in payloads if isinstance(p, DeletePayload)):
        if delete.protocol_id == ProtocolId.IKE:
            delete_ike = True
        elif delete.protocol_id in (ProtocolId.ESP, ProtocolId.AH):
            ours: list[bytes] = []
            for spi in delete.spis:
                child = sa.child_by_outbound(spi)
                if child is None:
                    continue
                sa.remove_child(child)
                sa.host.emit(ChildSaDeleted(child, by_peer=True))
                ours.append(child.inbound_spi)
            if ours:
                answer.append(DeletePayload.child_sas(delete.protocol_id, tuple(ours)))
    if delete_ike:
        sa.respond(ExchangeType.INFORMATIONAL, message_id, [], raw)
        log.info(
            "IKE SA {spi_i}/{spi_r} deleted by {peer}",
            spi_i=sa.spi_i.hex(),
            spi_r=sa.spi_r.hex(),
            peer=sa.peer_address,
        )
        reason = "rekeyed" if sa.rekeyed_to is not None else "deleted by peer"
        sa.close(StateEvent.DELETED, sa.deleted_event(reason))
        return
    answer += answer_informational(sa, payloads)
    if not payloads:
        log.debug(
            "answering a liveness check of IKE SA {spi_i}/{spi_r} from {peer}",
            spi_i=sa.spi_i.hex(),
            spi_r=sa.spi_r.hex(),
            peer=sa.peer_address,
        )
    sa.respond(ExchangeType.INFORMATIONAL, message_id, answer, raw)
