"""IKE_AUTH (RFC 7296 sections 1.2, 2.15, 2.16; RFC 6023; RFC 5685 section 6).

Authentication is by pre-shared key today. The exchange is modelled as rounds so that EAP
(RFC 7296 section 2.16) can add its request/response pairs: the initiator's ``IkeAuth``
task sends one round and, from its ``process``, may start the next round's task; the
responder's ``IkeAuthResponder`` lives while the SA is half-open and answers each round
with ``on_request`` until the last one establishes the SA (or refuses it).
"""

from __future__ import annotations

import hmac
from collections.abc import Sequence
from typing import TYPE_CHECKING

from twisted.logger import Logger

from twisted_rserpool.ike import crypto
from twisted_rserpool.ike.child import ChildSa
from twisted_rserpool.ike.codec import (
    AuthenticationPayload,
    IdInitiatorPayload,
    IdResponderPayload,
    NotifyPayload,
    Payload,
    SecurityAssociationPayload,
    TrafficSelector,
    TsInitiatorPayload,
    TsResponderPayload,
    redirect_notify,
)
from twisted_rserpool.ike.config import Identity
from twisted_rserpool.ike.constants import AuthMethod, ExchangeType, NotifyType
from twisted_rserpool.ike.events import ChildSaFailed, ClientRedirected
from twisted_rserpool.ike.proposals import ChildSuite, child_proposal
from twisted_rserpool.ike.state import StateEvent
from twisted_rserpool.ike.tasks import Task
from twisted_rserpool.ike.tasks.child_create import child_response, negotiate_child
from twisted_rserpool.ike.tasks.common import Refusal, find, notifies, notify_name, to_payload
from twisted_rserpool.ike.tasks.redirect import auth_redirect
from twisted_rserpool.ike.window import Outstanding

if TYPE_CHECKING:
    from twisted_rserpool.ike.sa import IkeSa

__all__ = ["IkeAuth", "IkeAuthResponder", "psk_auth_data"]

_FATAL = (
    NotifyType.AUTHENTICATION_FAILED,
    NotifyType.INVALID_SYNTAX,
    NotifyType.UNSUPPORTED_CRITICAL_PAYLOAD,
)


def psk_auth_data(sa: IkeSa, psk: bytes, *, ours: bool, id_body: bytes) -> bytes:
    """PSK AUTH of the side that sent ``id_body`` (us when ``ours``), RFC 7296 2.15."""
    assert sa.keys is not None
    prf = sa.keys.prf
    if sa.initiator == ours:
        octets = crypto.signed_octets(prf, sa.init_request, sa.nonce_r, sa.keys.sk_pi, id_body)
    else:
        octets = crypto.signed_octets(prf, sa.init_response, sa.nonce_i, sa.keys.sk_pr, id_body)
    return crypto.psk_auth(prf, psk, octets)


class IkeAuth(Task):
    """Initiator: IDi, AUTH and the first CHILD_SA; checks the responder's IDr and AUTH."""

    exchange = ExchangeType.IKE_AUTH
    name = "IKE_AUTH"

    def __init__(self, sa: IkeSa) -> None:
        super().__init__(sa)
        self.offered_child: tuple[bytes, tuple[ChildSuite, ...]] | None = None
        self.offered_ts: tuple[tuple[TrafficSelector, ...], tuple[TrafficSelector, ...]] = (
            (),
            (),
        )

    def _want_child(self) -> bool:
        config = self.sa.config
        if config.childless == "force" and self.sa.peer_childless:
            return False
        return bool(config.offered_child_suites)

    def build(self, now: float) -> Sequence[Payload] | None:
        sa = self.sa
        config = sa.config
        psk = config.psks.lookup(config.remote_id) if config.remote_id else config.psks.default
        if psk is None:
            sa.fail("no pre-shared key for the responder", None)
            return None
        idi = IdInitiatorPayload(config.local_id.id_type, config.local_id.data)
        payloads: list[Payload] = [idi]
        if config.remote_id is not None:
            payloads.append(IdResponderPayload(config.remote_id.id_type, config.remote_id.data))
        auth = psk_auth_data(sa, psk, ours=True, id_body=idi.encode_body())
        payloads.append(AuthenticationPayload(AuthMethod.SHARED_KEY_MIC, auth))
        if config.initial_contact:
            payloads.append(NotifyPayload(NotifyType.INITIAL_CONTACT))
        if self._want_child():
            spi = config.random(4)
            proposals = child_proposal(config.offered_child_suites, spi)
            self.offered_child = (spi, config.offered_child_suites)
            self.offered_ts = (config.local_ts, config.remote_ts)
            payloads += [
                SecurityAssociationPayload(tuple(to_payload(p) for p in proposals)),
                TsInitiatorPayload(config.local_ts),
                TsResponderPayload(config.remote_ts),
            ]
        return payloads

    def process(
        self, payloads: tuple[Payload, ...], request: Outstanding[Task], now: float
    ) -> None:
        sa = self.sa
        config = sa.config
        for notify in notifies(payloads):
            if notify.notify_type in _FATAL:
                sa.fail(f"peer answered {notify_name(notify.notify_type)}", notify.notify_type)
                return
        idr = find(payloads, IdResponderPayload)
        auth = find(payloads, AuthenticationPayload)
        if idr is None or auth is None:
            sa.fail("IKE_AUTH response lacks IDr/AUTH", NotifyType.INVALID_SYNTAX)
            return
        peer_id = Identity(idr.id_type, idr.data)
        if config.remote_id is not None and peer_id != config.remote_id:
            sa.fail(f"responder is {peer_id}, not {config.remote_id}", None)
            return
        psk = config.psks.lookup(peer_id)
        if auth.method != AuthMethod.SHARED_KEY_MIC or psk is None:
            sa.fail(f"cannot verify AUTH method {auth.method} of {peer_id}", None)
            return
        expected = psk_auth_data(sa, psk, ours=False, id_body=idr.encode_body())
        if not hmac.compare_digest(expected, auth.data):
            sa.fail(f"AUTH of {peer_id} is wrong", NotifyType.AUTHENTICATION_FAILED)
            return
        sa.peer_id = peer_id
        sa.peer_auth_verified = "PSK"
        redirect = next(
            (n for n in notifies(payloads) if n.notify_type == NotifyType.REDIRECT), None
        )
        if redirect is not None:
            auth_redirect(sa, redirect, now)
            return
        sa.establish()
        if self.offered_child is not None:
            spi, suites = self.offered_child
            child_response(sa, payloads, spi, suites, self.offered_ts)


class IkeAuthResponder:
    """Responder: the IKE_AUTH rounds of one half-open SA (one round with a PSK)."""

    log = Logger()

    def __init__(self, sa: IkeSa) -> None:
        self.sa = sa

    def _refuse(self, message_id: int, raw: bytes, notify_type: int, reason: str) -> None:
        self.sa.respond(ExchangeType.IKE_AUTH, message_id, [NotifyPayload(notify_type)], raw)
        self.sa.fail(reason, notify_type)

    def on_request(
        self, message_id: int, payloads: tuple[Payload, ...], raw: bytes, now: float
    ) -> None:
        """Verify the initiator's AUTH; answer with ours and maybe a CHILD_SA."""
        sa = self.sa
        config = sa.config
        idi = find(payloads, IdInitiatorPayload)
        auth = find(payloads, AuthenticationPayload)
        if idi is None or auth is None:
            self._refuse(message_id, raw, NotifyType.INVALID_SYNTAX, "IKE_AUTH lacks IDi/AUTH")
            return
        peer_id = Identity(idi.id_type, idi.data)
        psk = config.psks.lookup(peer_id)
        if auth.method != AuthMethod.SHARED_KEY_MIC or psk is None:
            self._refuse(
                message_id,
                raw,
                NotifyType.AUTHENTICATION_FAILED,
                f"no pre-shared key for {peer_id} (auth method {auth.method})",
            )
            return
        expected = psk_auth_data(sa, psk, ours=False, id_body=idi.encode_body())
        if not hmac.compare_digest(expected, auth.data):
            self._refuse(
                message_id, raw, NotifyType.AUTHENTICATION_FAILED, f"AUTH of {peer_id} is wrong"
            )
            return
        idr_wanted = find(payloads, IdResponderPayload)
        local = config.local_id
        if idr_wanted is not None and Identity(idr_wanted.id_type, idr_wanted.data) != local:
            self._refuse(
                message_id,
                raw,
                NotifyType.AUTHENTICATION_FAILED,
                f"initiator asked for identity {Identity(idr_wanted.id_type, idr_wanted.data)}",
            )
            return
        sa.peer_id = peer_id
        sa.peer_auth_verified = "PSK"
        idr = IdResponderPayload(local.id_type, local.data)
        answer: list[Payload] = [
            idr,
            AuthenticationPayload(
                AuthMethod.SHARED_KEY_MIC,
                psk_auth_data(sa, psk, ours=True, id_body=idr.encode_body()),
            ),
        ]
        decision = sa.host.redirect_decision(sa, "IKE_AUTH", now) if sa.redirect_supported else None
        if decision is not None:
            # RFC 5685 section 6: no CHILD_SA, no nonce; the SA is valid until deleted.
            answer.append(redirect_notify(decision.gateway))
            sa.respond(ExchangeType.IKE_AUTH, message_id, answer, raw)
            sa.transition(StateEvent.AUTHENTICATED)
            sa.redirect_delete_at = now + config.redirect_delete_timeout
            self.log.info(
                "redirecting authenticated client {peer_id} at {peer} to {gateway} ({reason})",
                peer_id=str(peer_id),
                peer=sa.peer_address,
                gateway=str(decision.gateway),
                reason=decision.reason,
            )
            sa.host.emit(
                ClientRedirected(
                    sa.peer_address,
                    decision.gateway,
                    decision.reason,
                    "IKE_AUTH",
                    sa.spi_i,
                    sa.spi_r,
                )
            )
            return
        sa_payload = find(payloads, SecurityAssociationPayload)
        child: ChildSa | None = None
        child_failure: Refusal | None = None
        if sa_payload is None:
            # RFC 6023: only the responder announces support (in its IKE_SA_INIT response).
            if config.childless == "never":
                self._refuse(
                    message_id,
                    raw,
                    NotifyType.INVALID_SYNTAX,
                    "IKE_AUTH without a CHILD_SA but childless was not negotiated",
                )
                return
        else:
            outcome = negotiate_child(sa, payloads, sa_payload)
            if isinstance(outcome, Refusal):
                child_failure = outcome
                answer.append(NotifyPayload(outcome.notify_type))
            else:
                child, child_payloads = outcome
                answer.extend(child_payloads)
        sa.respond(ExchangeType.IKE_AUTH, message_id, answer, raw)
        sa.establish()
        if child is not None:
            sa.add_child(child)
        elif child_failure is not None:
            sa.host.emit(
                ChildSaFailed(sa.spi_i, sa.spi_r, child_failure.reason, child_failure.notify_type)
            )
