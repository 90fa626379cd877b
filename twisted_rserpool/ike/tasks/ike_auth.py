"""IKE_AUTH (RFC 7296 sections 1.2, 2.15, 2.16; RFC 7427; RFC 6023; RFC 5685 section 6).

Each side authenticates with a pre-shared key or a signature (a certificate chain in CERT
payloads, RFC 7296 3.6-3.8, RFC 7427), or the initiator leaves AUTH out and runs EAP
(RFC 7296 2.16): the exchange is then a series of rounds. The initiator's ``IkeAuth``
sends the first round; from its ``process`` it starts the next round's task
(``IkeAuthEap``), and the last round carries the AUTH computed with the EAP MSK. The
responder's ``IkeAuthResponder`` lives while the SA is half-open and answers each round
with ``on_request``: IDr, CERT and AUTH with the first EAP Request, the EAP Requests that
follow, EAP Success, and at last the MSK AUTH with the CHILD_SA (or N(REDIRECT): RFC 5685
section 6 puts the IKE_AUTH redirect after the final EAP round).
"""

from __future__ import annotations

import datetime
import hmac
from collections.abc import Sequence
from typing import TYPE_CHECKING

from twisted.logger import Logger

from twisted_rserpool.ike import crypto
from twisted_rserpool.ike.auth import signature
from twisted_rserpool.ike.auth.certificates import identity_in_certificate
from twisted_rserpool.ike.auth.eap import EapStep, IEapSession, MsChapV2Peer, PendingEapStep
from twisted_rserpool.ike.child import ChildSa
from twisted_rserpool.ike.codec import (
    AuthenticationPayload,
    CertificatePayload,
    CertificateRequestPayload,
    EapPayload,
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
from twisted_rserpool.ike.constants import AuthMethod, CertEncoding, ExchangeType, NotifyType
from twisted_rserpool.ike.events import ChildSaFailed, ClientRedirected
from twisted_rserpool.ike.proposals import ChildSuite, child_proposal
from twisted_rserpool.ike.state import State, StateEvent
from twisted_rserpool.ike.tasks import Task
from twisted_rserpool.ike.tasks.child_create import child_response, negotiate_child
from twisted_rserpool.ike.tasks.common import Refusal, find, notifies, notify_name, to_payload
from twisted_rserpool.ike.tasks.configuration import address_request, answer_request, apply_reply
from twisted_rserpool.ike.tasks.redirect import auth_redirect
from twisted_rserpool.ike.window import Outstanding

if TYPE_CHECKING:
    from twisted_rserpool.ike.sa import IkeSa

__all__ = [
    "IkeAuth",
    "IkeAuthEap",
    "IkeAuthResponder",
    "msk_auth_data",
    "psk_auth_data",
    "signed_octets",
]

_FATAL = (
    NotifyType.AUTHENTICATION_FAILED,
    NotifyType.INVALID_SYNTAX,
    NotifyType.UNSUPPORTED_CRITICAL_PAYLOAD,
)

_SIGNATURE_METHODS = frozenset(
    (
        AuthMethod.RSA_DIGITAL_SIGNATURE,
        AuthMethod.ECDSA_SHA256_P256,
        AuthMethod.ECDSA_SHA384_P384,
        AuthMethod.ECDSA_SHA512_P521,
        AuthMethod.DIGITAL_SIGNATURE,
    )
)


def signed_octets(sa: IkeSa, *, ours: bool, id_body: bytes) -> bytes:
    """The octets the side that sent ``id_body`` (us when ``ours``) signs (RFC 7296 2.15)."""
    assert sa.keys is not None
    prf = sa.keys.prf
    if sa.initiator == ours:
        return crypto.signed_octets(prf, sa.init_request, sa.nonce_r, sa.keys.sk_pi, id_body)
    return crypto.signed_octets(prf, sa.init_response, sa.nonce_i, sa.keys.sk_pr, id_body)


def psk_auth_data(sa: IkeSa, psk: bytes, *, ours: bool, id_body: bytes) -> bytes:
    """PSK AUTH of the side that sent ``id_body`` (us when ``ours``), RFC 7296 2.15."""
    assert sa.keys is not None
    return crypto.psk_auth(sa.keys.prf, psk, signed_octets(sa, ours=ours, id_body=id_body))


def msk_auth_data(sa: IkeSa, msk: bytes, *, ours: bool, id_body: bytes) -> bytes:
    """The AUTH after EAP: the MSK is the shared secret (RFC 7296 section 2.16)."""
    return psk_auth_data(sa, msk, ours=ours, id_body=id_body)


def _now(sa: IkeSa) -> datetime.datetime:
    return datetime.datetime.fromtimestamp(sa.config.wall_time(), datetime.UTC)


def our_auth(sa: IkeSa, id_body: bytes, psk: bytes | None) -> AuthenticationPayload | str:
    """Our AUTH payload: a signature with our credentials, else with the PSK; or why not."""
    credentials = sa.config.credentials
    octets = signed_octets(sa, ours=True, id_body=id_body)
    if credentials is not None:
        try:
            method, data = signature.sign(
                credentials.private_key,
                octets,
                sa.peer_signature_hashes,
                rsa_pss=sa.config.rsa_pss,
            )
        except ValueError as e:
            return f"cannot sign our AUTH: {e}"
        return AuthenticationPayload(method, data)
    if psk is None:
        return "no pre-shared key and no certificate to authenticate with"
    assert sa.keys is not None
    return AuthenticationPayload(
        AuthMethod.SHARED_KEY_MIC, crypto.psk_auth(sa.keys.prf, psk, octets)
    )


def our_certificates(sa: IkeSa, payloads: Sequence[Payload] = ()) -> list[Payload]:
    """Our CERT payloads, if we have a certificate and the peer asked (or we always send)."""
    config = sa.config
    if any(
        isinstance(p, CertificateRequestPayload) and p.encoding == CertEncoding.X509_SIGNATURE
        for p in payloads
    ):
        sa.peer_certreq = True
    if config.credentials is None or config.send_cert == "never":
        return []
    if config.send_cert == "ifasked" and not sa.peer_certreq:
        return []
    return [
        CertificatePayload(CertEncoding.X509_SIGNATURE, der) for der in config.credentials.chain_der
    ]


def verify_peer(
    sa: IkeSa, payloads: Sequence[Payload], peer_id: Identity, id_body: bytes
) -> str | None:
    """None when the peer's AUTH in ``payloads`` proves ``peer_id`` as ``config.peer_auth``
    demands (then ``sa.peer_auth_verified`` says how), else why not."""
    config = sa.config
    auth = find(payloads, AuthenticationPayload)
    if auth is None:
        return "no AUTH payload"
    octets = signed_octets(sa, ours=False, id_body=id_body)
    if config.peer_auth == "psk":
        psk = config.psks.lookup(peer_id)
        if auth.method != AuthMethod.SHARED_KEY_MIC or psk is None:
            return f"cannot verify AUTH method {auth.method} of {peer_id} with a pre-shared key"
        assert sa.keys is not None
        if not hmac.compare_digest(crypto.psk_auth(sa.keys.prf, psk, octets), auth.data):
            return f"AUTH of {peer_id} is wrong"
        sa.peer_auth_verified = "PSK"
        return None
    trust = config.trust
    if trust is None or auth.method not in _SIGNATURE_METHODS:
        return f"{peer_id} must authenticate with a certificate (auth method {auth.method})"
    certificates = [
        p.data
        for p in payloads
        if isinstance(p, CertificatePayload) and p.encoding == CertEncoding.X509_SIGNATURE
    ]
    if not certificates:
        return f"{peer_id} sent no X.509 certificate"
    try:
        leaf = trust.verify(certificates[0], certificates[1:], _now(sa))
    except ValueError as e:
        return str(e)
    if not identity_in_certificate(peer_id, leaf):
        return f"identity {peer_id} is not in the certificate of {leaf.subject.rfc4514_string()}"
    wrong = signature.verify(leaf.public_key(), auth.method, auth.data, octets)
    if wrong is not None:
        return f"AUTH of {peer_id}: {wrong}"
    scheme = signature.describe(auth.method, auth.data)
    sa.peer_auth_verified = f"certificate {leaf.subject.rfc4514_string()} ({scheme})"
    return None


class IkeAuth(Task):
    """Initiator: IDi, AUTH (or none, for EAP) and the first CHILD_SA; checks the responder."""

    exchange = ExchangeType.IKE_AUTH
    name = "IKE_AUTH"
    log = Logger()

    def __init__(self, sa: IkeSa) -> None:
        super().__init__(sa)
        self.offered_child: tuple[bytes, tuple[ChildSuite, ...]] | None = None
        self.offered_ts: tuple[tuple[TrafficSelector, ...], tuple[TrafficSelector, ...]] = (
            (),
            (),
        )
        self.idi_body = b""
        self.idr_body = b""
        self.eap: MsChapV2Peer | None = None
        self.rounds = 1

    def _want_child(self) -> bool:
        config = self.sa.config
        if config.childless == "force" and self.sa.peer_childless:
            return False
        return bool(config.offered_child_suites)

    def build(self, now: float) -> Sequence[Payload] | None:
        sa = self.sa
        config = sa.config
        idi = IdInitiatorPayload(config.local_id.id_type, config.local_id.data)
        self.idi_body = idi.encode_body()
        payloads: list[Payload] = [idi, *our_certificates(sa)]
        if config.trust is not None:
            payloads.append(
                CertificateRequestPayload(CertEncoding.X509_SIGNATURE, config.trust.certreq_data())
            )
        if config.remote_id is not None:
            payloads.append(IdResponderPayload(config.remote_id.id_type, config.remote_id.data))
        if config.credentials is None and config.eap_peer is not None:
            username, password = config.eap_peer
            self.eap = MsChapV2Peer(username, password, config.random)
        else:
            psk = config.psks.lookup(config.remote_id) if config.remote_id else config.psks.default
            if psk is None and config.credentials is None:
                sa.fail("no pre-shared key for the responder", None)
                return None
            auth = our_auth(sa, self.idi_body, psk)
            if isinstance(auth, str):
                sa.fail(auth, None)
                return None
            payloads.append(auth)
        if config.initial_contact:
            payloads.append(NotifyPayload(NotifyType.INITIAL_CONTACT))
        if self._want_child():
            spi = config.random(4)
            proposals = child_proposal(config.offered_child_suites, spi)
            self.offered_child = (spi, config.offered_child_suites)
            self.offered_ts = (config.local_ts, config.remote_ts)
            request = address_request(sa)
            if request is not None:
                payloads.append(request)  # RFC 7296 2.19: before the SA payload
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
        if _fatal(sa, payloads):
            return
        idr = find(payloads, IdResponderPayload)
        if idr is None or find(payloads, AuthenticationPayload) is None:
            sa.fail("IKE_AUTH response lacks IDr/AUTH", NotifyType.INVALID_SYNTAX)
            return
        peer_id = Identity(idr.id_type, idr.data)
        if config.remote_id is not None and peer_id != config.remote_id:
            sa.fail(f"responder is {peer_id}, not {config.remote_id}", None)
            return
        self.idr_body = idr.encode_body()
        wrong = verify_peer(sa, payloads, peer_id, self.idr_body)
        if wrong is not None:
            sa.fail(wrong, NotifyType.AUTHENTICATION_FAILED)
            return
        sa.peer_id = peer_id
        if self.eap is None:
            self.finish(payloads, now)
            return
        self.eap_round(payloads, now)

    def eap_round(self, payloads: Sequence[Payload], now: float) -> None:
        """The responder's EAP packet arrived: answer it in the next round, or end EAP."""
        sa = self.sa
        assert self.eap is not None
        eap = find(payloads, EapPayload)
        if eap is None:
            sa.fail("IKE_AUTH response without the EAP payload", NotifyType.AUTHENTICATION_FAILED)
            return
        self.rounds += 1
        if self.rounds > sa.config.max_eap_rounds + 1:
            sa.fail("too many EAP rounds", NotifyType.AUTHENTICATION_FAILED)
            return
        step = self.eap.receive(eap.data)
        if step.outcome == "failure":
            sa.fail(f"EAP failed: {step.reason}", NotifyType.AUTHENTICATION_FAILED)
        elif step.outcome == "success":
            assert step.msk is not None
            sa.queue(IkeAuthEap(self, None, step.msk), now)
        elif step.message is not None:
            sa.queue(IkeAuthEap(self, step.message, None), now)
        else:
            sa.fail("EAP produced no Response", NotifyType.AUTHENTICATION_FAILED)

    def finish(self, payloads: Sequence[Payload], now: float) -> None:
        """The responder is authenticated: follow a REDIRECT, or establish with the CHILD_SA."""
        sa = self.sa
        redirect = next(
            (n for n in notifies(payloads) if n.notify_type == NotifyType.REDIRECT), None
        )
        if redirect is not None:
            auth_redirect(sa, redirect, now)
            return
        wrong = apply_reply(sa, payloads)
        if wrong is not None:
            self.log.info("IKE SA with {peer}: {problem}", peer=sa.peer_address, problem=wrong)
        sa.establish()
        if self.offered_child is not None:
            spi, suites = self.offered_child
            child_response(sa, tuple(payloads), spi, suites, self.offered_ts)


def _fatal(sa: IkeSa, payloads: Sequence[Payload]) -> bool:
    for notify in notifies(payloads):
        if notify.notify_type in _FATAL:
            sa.fail(f"peer answered {notify_name(notify.notify_type)}", notify.notify_type)
            return True
    return False


class IkeAuthEap(Task):
    """Initiator: one later IKE_AUTH round, with an EAP Response or (``msk``) the final AUTH."""

    exchange = ExchangeType.IKE_AUTH
    name = "IKE_AUTH (EAP)"

    def __init__(self, first: IkeAuth, response: bytes | None, msk: bytes | None) -> None:
        super().__init__(first.sa)
        self.first = first
        self.response = response
        self.msk = msk

    def build(self, now: float) -> Sequence[Payload] | None:
        if self.msk is not None:
            data = msk_auth_data(self.sa, self.msk, ours=True, id_body=self.first.idi_body)
            return [AuthenticationPayload(AuthMethod.SHARED_KEY_MIC, data)]
        assert self.response is not None
        return [EapPayload(self.response)]

    def process(
        self, payloads: tuple[Payload, ...], request: Outstanding[Task], now: float
    ) -> None:
        sa = self.sa
        if _fatal(sa, payloads):
            return
        if self.msk is None:
            self.first.eap_round(payloads, now)
            return
        auth = find(payloads, AuthenticationPayload)
        expected = msk_auth_data(sa, self.msk, ours=False, id_body=self.first.idr_body)
        if (
            auth is None
            or auth.method != AuthMethod.SHARED_KEY_MIC
            or not hmac.compare_digest(expected, auth.data)
        ):
            sa.fail("the responder's AUTH after EAP is wrong", NotifyType.AUTHENTICATION_FAILED)
            return
        self.first.finish(payloads, now)


class IkeAuthResponder:
    """Responder: the IKE_AUTH rounds of one half-open SA (one round without EAP)."""

    log = Logger()

    def __init__(self, sa: IkeSa) -> None:
        self.sa = sa
        self.first: tuple[Payload, ...] | None = None
        """The first request (its SA and TS payloads are answered in the last round)."""
        self.idi_body = b""
        self.idr_body = b""
        self.peer_id: Identity | None = None
        self.eap: IEapSession | None = None
        self.eap_identity = b""
        self.msk: bytes | None = None
        self.rounds = 0
        self.pending: int | None = None
        """The Message ID of the request an asynchronous EAP back end is answering."""

    def _refuse(
        self,
        message_id: int,
        raw: bytes,
        notify_type: int,
        reason: str,
        extra: Sequence[Payload] = (),
    ) -> None:
        self.sa.respond(
            ExchangeType.IKE_AUTH, message_id, [*extra, NotifyPayload(notify_type)], raw
        )
        self.sa.fail(reason, notify_type)

    def on_request(
        self, message_id: int, payloads: tuple[Payload, ...], raw: bytes, now: float
    ) -> None:
        """Verify the initiator's AUTH or run an EAP round; answer each round."""
        if self.pending == message_id:
            return  # a retransmission while the EAP back end works on the request
        if self.first is None:
            self._first_round(message_id, payloads, raw, now)
        elif self.msk is None:
            self._eap_round(message_id, payloads, raw)
        else:
            self._final_round(message_id, payloads, raw, now)

    def _first_round(
        self, message_id: int, payloads: tuple[Payload, ...], raw: bytes, now: float
    ) -> None:
        sa = self.sa
        config = sa.config
        idi = find(payloads, IdInitiatorPayload)
        auth = find(payloads, AuthenticationPayload)
        if idi is None or (auth is None and config.peer_auth != "eap-mschapv2"):
            self._refuse(message_id, raw, NotifyType.INVALID_SYNTAX, "IKE_AUTH lacks IDi/AUTH")
            return
        peer_id = Identity(idi.id_type, idi.data)
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
        self.idi_body = idi.encode_body()
        if config.peer_auth == "eap-mschapv2":
            if auth is not None:
                self._refuse(
                    message_id,
                    raw,
                    NotifyType.AUTHENTICATION_FAILED,
                    f"{peer_id} sent AUTH, but clients must authenticate with EAP-MSCHAPv2",
                )
                return
        else:
            wrong = verify_peer(sa, payloads, peer_id, self.idi_body)
            if wrong is not None:
                self._refuse(message_id, raw, NotifyType.AUTHENTICATION_FAILED, wrong)
                return
        idr = IdResponderPayload(local.id_type, local.data)
        self.idr_body = idr.encode_body()
        ours = our_auth(sa, self.idr_body, config.psks.lookup(peer_id))
        if isinstance(ours, str):
            self._refuse(message_id, raw, NotifyType.AUTHENTICATION_FAILED, ours)
            return
        self.first = payloads
        self.peer_id = peer_id
        answer: list[Payload] = [idr, *our_certificates(sa, payloads), ours]
        if config.peer_auth != "eap-mschapv2":
            sa.peer_id = peer_id
            self._finish(message_id, raw, answer, now)
            return
        assert config.eap is not None
        self.eap = config.eap.start(peer_id)
        self.rounds = 1
        answer.append(EapPayload(self.eap.begin()))
        sa.respond(ExchangeType.IKE_AUTH, message_id, answer, raw)

    def _eap_round(self, message_id: int, payloads: tuple[Payload, ...], raw: bytes) -> None:
        sa = self.sa
        eap = find(payloads, EapPayload)
        assert self.eap is not None
        if eap is None:
            self._refuse(
                message_id, raw, NotifyType.AUTHENTICATION_FAILED, "IKE_AUTH round without EAP"
            )
            return
        self.rounds += 1
        if self.rounds > sa.config.max_eap_rounds:
            self._refuse(
                message_id,
                raw,
                NotifyType.AUTHENTICATION_FAILED,
                f"EAP of {self.peer_id} did not end within {sa.config.max_eap_rounds} rounds",
            )
            return
        step = self.eap.receive(eap.data)
        if isinstance(step, PendingEapStep):
            # An asynchronous back end: answer when it delivers (see on_request).
            self.pending = message_id
            step.then(lambda done: self._delivered(message_id, raw, done))
            return
        self._eap_step(message_id, raw, step)

    def _delivered(self, message_id: int, raw: bytes, step: EapStep) -> None:
        """A pending EAP step arrived: answer the request it belongs to, and wake the host."""
        sa = self.sa
        if self.pending != message_id or sa.state != State.INIT_DONE:
            return  # the SA ended (half-open timeout, deleted) meanwhile
        self.pending = None
        self._eap_step(message_id, raw, step)
        sa.host.reschedule(sa)
        sa.host.wake()

    def _eap_step(self, message_id: int, raw: bytes, step: EapStep) -> None:
        sa = self.sa
        if step.message is None or (step.outcome == "success" and not step.msk):
            # A session that breaks its contract; methods without an MSK are not supported.
            self._refuse(
                message_id,
                raw,
                NotifyType.AUTHENTICATION_FAILED,
                f"EAP of {self.peer_id} ended without a packet or an MSK",
            )
            return
        if step.outcome == "failure":
            self.log.info(
                "EAP authentication of {peer_id} at {peer} failed: {reason}",
                peer_id=str(self.peer_id),
                peer=sa.peer_address,
                reason=step.reason,
            )
            self._refuse(
                message_id,
                raw,
                NotifyType.AUTHENTICATION_FAILED,
                f"EAP failed: {step.reason}",
                (EapPayload(step.message),),
            )
            return
        if step.outcome == "success":
            assert step.msk is not None
            self.msk = step.msk
            self.eap_identity = step.identity
        sa.respond(ExchangeType.IKE_AUTH, message_id, [EapPayload(step.message)], raw)

    def _final_round(
        self, message_id: int, payloads: tuple[Payload, ...], raw: bytes, now: float
    ) -> None:
        sa = self.sa
        assert self.msk is not None
        auth = find(payloads, AuthenticationPayload)
        expected = msk_auth_data(sa, self.msk, ours=False, id_body=self.idi_body)
        if (
            auth is None
            or auth.method != AuthMethod.SHARED_KEY_MIC
            or not hmac.compare_digest(expected, auth.data)
        ):
            self._refuse(
                message_id,
                raw,
                NotifyType.AUTHENTICATION_FAILED,
                f"AUTH of {self.peer_id} after EAP is wrong",
            )
            return
        sa.peer_id = self.peer_id
        sa.peer_auth_verified = f"EAP-MSCHAPv2 {self.eap_identity.decode('utf-8', 'replace')}"
        ours = AuthenticationPayload(
            AuthMethod.SHARED_KEY_MIC,
            msk_auth_data(sa, self.msk, ours=True, id_body=self.idr_body),
        )
        self._finish(message_id, raw, [ours], now)

    def _finish(self, message_id: int, raw: bytes, answer: list[Payload], now: float) -> None:
        """The initiator is authenticated: redirect it (RFC 5685 6), or the CHILD_SA."""
        sa = self.sa
        config = sa.config
        payloads = self.first
        assert payloads is not None
        peer_id = sa.peer_id
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
            # RFC 7296 2.19: the CP of the request that carries the SA payload.
            cp_reply, cp_refusal = answer_request(sa, payloads, self.eap_identity)
            if cp_reply is not None:
                answer.append(cp_reply)  # before the SA payload
            outcome = cp_refusal or negotiate_child(sa, payloads, sa_payload)
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
