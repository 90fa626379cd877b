"""The responder of CREATE_CHILD_SA (RFC 7296 section 1.3): which of its three uses a
request is, and the refusals common to all of them.

A proposal for protocol IKE rekeys the IKE SA (``rekey.respond_ike_rekey``); N(REKEY_SA)
rekeys a CHILD_SA (``rekey.rekeyed_child`` finds it); anything else adds a CHILD_SA. The
last two are answered by ``child_create.answer_child``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from twisted.logger import Logger

from twisted_rserpool.ike.codec import (
    KeyExchangePayload,
    NoncePayload,
    NotifyPayload,
    Payload,
    SecurityAssociationPayload,
)
from twisted_rserpool.ike.constants import ExchangeType, NotifyType, ProtocolId
from twisted_rserpool.ike.state import State
from twisted_rserpool.ike.tasks import child_create, rekey
from twisted_rserpool.ike.tasks.common import Refusal, find, valid_nonce

if TYPE_CHECKING:
    from twisted_rserpool.ike.sa import IkeSa

__all__ = ["respond"]

log = Logger()


def respond(sa: IkeSa, message_id: int, payloads: tuple[Payload, ...], raw: bytes) -> None:
    """Responder of CREATE_CHILD_SA: a new or rekeyed CHILD_SA, or a rekeyed IKE SA."""
    exchange = ExchangeType.CREATE_CHILD_SA

    def refuse(refusal: Refusal) -> None:
        log.info(
            "CREATE_CHILD_SA from {peer} refused: {reason}",
            peer=sa.peer_address,
            reason=refusal.reason,
        )
        sa.respond(exchange, message_id, [NotifyPayload(refusal.notify_type, refusal.data)], raw)

    sa_payload = find(payloads, SecurityAssociationPayload)
    nonce = find(payloads, NoncePayload)
    ke = find(payloads, KeyExchangePayload)
    if sa.state != State.ESTABLISHED:
        refuse(Refusal(NotifyType.TEMPORARY_FAILURE, "IKE SA is being deleted"))
        return
    if sa_payload is None or nonce is None or not valid_nonce(nonce.data):
        refuse(Refusal(NotifyType.INVALID_SYNTAX, "no SA or Ni"))
        return
    nonce_r = sa.config.random(sa.config.nonce_length)
    if any(p.protocol_id == ProtocolId.IKE for p in sa_payload.proposals):
        refusal = rekey.respond_ike_rekey(sa, message_id, sa_payload, nonce.data, nonce_r, ke, raw)
        if refusal is not None:
            refuse(refusal)
        return
    old = rekey.rekeyed_child(sa, payloads)
    if isinstance(old, Refusal):
        refuse(old)
        return
    child_create.answer_child(sa, message_id, payloads, raw, (nonce.data, nonce_r), refuse, old)
