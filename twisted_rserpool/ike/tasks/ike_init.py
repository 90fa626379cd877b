"""IKE_SA_INIT (RFC 7296 sections 1.2, 2.6, 2.7, 2.10, 2.23; RFC 6023; RFC 5685).

Initiator: ``IkeSaInit`` sends SA, KE, Ni and the NAT detection notifies, follows a COOKIE
or INVALID_KE_PAYLOAD answer at most ``max_init_attempts`` times, hands a REDIRECT to
``redirect``, and on a valid answer checks the NAT detection notifies (floating to port
4500 when a NAT is found, ``twisted_rserpool.ike.nat``), derives the keys and queues
IKE_AUTH.

Responder: the endpoint has made the stateless checks; ``accept_init`` answers with our
KE and Nr and keeps the Diffie-Hellman work for the first IKE_AUTH (``DeferredKeys``), so
a half-open SA costs one key pair.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from twisted.logger import Logger

from twisted_rserpool.ike import crypto
from twisted_rserpool.ike.auth import signature
from twisted_rserpool.ike.codec import (
    CertificateRequestPayload,
    IkeMessage,
    KeyExchangePayload,
    NoncePayload,
    NotifyPayload,
    Payload,
    SecurityAssociationPayload,
    redirect_supported_notify,
    redirected_from_notify,
)
from twisted_rserpool.ike.constants import CertEncoding, ExchangeType, NotifyType
from twisted_rserpool.ike.nat import float_to_nat_t
from twisted_rserpool.ike.proposals import (
    IkeSuite,
    OfferedProposal,
    ike_proposal,
    suite_from_proposal,
)
from twisted_rserpool.ike.state import StateEvent
from twisted_rserpool.ike.tasks import Task
from twisted_rserpool.ike.tasks.common import (
    ZERO_SPI,
    from_payload,
    key_pair,
    notify_name,
    to_payload,
    valid_nonce,
)
from twisted_rserpool.ike.tasks.ike_auth import IkeAuth
from twisted_rserpool.ike.tasks.redirect import init_redirect
from twisted_rserpool.ike.window import Outstanding

if TYPE_CHECKING:
    from twisted_rserpool.ike.sa import IkeSa

__all__ = [
    "DeferredKeys",
    "IkeSaInit",
    "accept_init",
    "check_nat",
    "nat_notifies",
    "offer_signatures",
]

_WILDCARDS = ("0.0.0.0", "::", "")
_log = Logger()


def nat_notifies(sa: IkeSa, spi_r: bytes) -> tuple[NotifyPayload, ...]:
    """NAT_DETECTION_SOURCE_IP and _DESTINATION_IP, or none when bound to a wildcard."""
    host, port = sa.local_address
    if host in _WILDCARDS:
        return ()
    source = crypto.nat_detection_hash(sa.spi_i, spi_r, host, port)
    peer_host, peer_port = sa.peer_address
    destination = crypto.nat_detection_hash(sa.spi_i, spi_r, peer_host, peer_port)
    return (
        NotifyPayload(NotifyType.NAT_DETECTION_SOURCE_IP, source),
        NotifyPayload(NotifyType.NAT_DETECTION_DESTINATION_IP, destination),
    )


def check_nat(sa: IkeSa, message: IkeMessage, spi_r: bytes) -> None:
    """Set ``sa``'s NAT flags from the peer's NAT detection notifies (RFC 7296 2.23).

    The peer is behind a NAT when none of its NAT_DETECTION_SOURCE_IP hashes is that of
    the address and port its message came from; we are, when its
    NAT_DETECTION_DESTINATION_IP is not the hash of our address and port. Without the
    notifies (or, for our side, bound to a wildcard address) the flags stay False.
    """
    sources = [
        n.data for n in message.notifies if n.notify_type == NotifyType.NAT_DETECTION_SOURCE_IP
    ]
    destination = message.notify(NotifyType.NAT_DETECTION_DESTINATION_IP)
    peer_host, peer_port = sa.peer_address
    if sources:
        expected = crypto.nat_detection_hash(sa.spi_i, spi_r, peer_host, peer_port)
        sa.peer_behind_nat = expected not in sources
    host, port = sa.local_address
    if destination is not None and host not in _WILDCARDS:
        expected = crypto.nat_detection_hash(sa.spi_i, spi_r, host, port)
        sa.local_behind_nat = destination.data != expected
    if sa.peer_behind_nat or sa.local_behind_nat:
        _log.info(
            "NAT detected with {peer}: peer behind a NAT: {peer_nat}, "
            "we are behind a NAT: {local_nat}",
            peer=sa.peer_address,
            peer_nat=sa.peer_behind_nat,
            local_nat=sa.local_behind_nat,
        )


@dataclass(frozen=True)
class DeferredKeys:
    """Responder: our key pair and the initiator's KE data, until IKE_AUTH arrives."""

    key: crypto.DhPrivateKey
    peer_public_value: bytes

    def shared_secret(self) -> bytes:
        """g^ir; raises crypto.InvalidPublicValueError."""
        return self.key.shared_secret(self.peer_public_value)


def offer_signatures(sa: IkeSa, peer: Sequence[Payload] | None) -> list[Payload]:
    """Note the peer's SIGNATURE_HASH_ALGORITHMS and CERTREQ (RFC 7427 section 4, RFC 7296
    section 3.7) from its IKE_SA_INIT ``peer``; ours to send when we sign or verify signatures.

    The responder's CERTREQ (only when it demands a certificate) goes with its response.
    """
    if peer is not None:
        for payload in peer:
            if isinstance(payload, NotifyPayload) and (
                payload.notify_type == NotifyType.SIGNATURE_HASH_ALGORITHMS
            ):
                try:
                    sa.peer_signature_hashes = signature.decode_hash_algorithms(payload.data)
                except signature.AuthDataError:
                    sa.peer_signature_hashes = None
            elif isinstance(payload, CertificateRequestPayload) and (
                payload.encoding == CertEncoding.X509_SIGNATURE
            ):
                sa.peer_certreq = True
    config = sa.config
    ours: list[Payload] = []
    if config.credentials is None and config.trust is None:
        return ours
    if not sa.initiator and config.trust is not None and config.peer_auth == "certificate":
        ours.append(
            CertificateRequestPayload(CertEncoding.X509_SIGNATURE, config.trust.certreq_data())
        )
    if sa.initiator or peer is None or sa.peer_signature_hashes is not None:
        ours.append(
            NotifyPayload(NotifyType.SIGNATURE_HASH_ALGORITHMS, signature.encode_hash_algorithms())
        )
    return ours


def accept_init(
    sa: IkeSa,
    request: IkeMessage,
    raw: bytes,
    suite: IkeSuite,
    chosen: OfferedProposal,
    peer_public_value: bytes,
) -> tuple[bytes, DeferredKeys]:
    """Our IKE_SA_INIT response to a checked request, and the key work left for IKE_AUTH.

    Raises crypto.InvalidPublicValueError when the KE data has the wrong length.
    """
    nonce = request.find(NoncePayload)
    assert nonce is not None
    group = crypto.DH_GROUPS[suite.dh]
    if len(peer_public_value) != group.public_value_length:
        raise crypto.InvalidPublicValueError(
            f"KE data of {len(peer_public_value)} octets for group {int(suite.dh)}"
        )
    sa.suite = suite
    key = key_pair(suite.dh, sa.config.random)
    sa.nonce_i = nonce.data
    sa.nonce_r = sa.config.random(sa.config.nonce_length)
    check_nat(sa, request, ZERO_SPI)
    payloads: list[Payload] = [
        SecurityAssociationPayload((to_payload(chosen),)),
        KeyExchangePayload(suite.dh, key.public_value),
        NoncePayload(sa.nonce_r),
    ]
    payloads.extend(offer_signatures(sa, request.payloads))
    if request.notify(NotifyType.NAT_DETECTION_SOURCE_IP) is not None:
        payloads.extend(nat_notifies(sa, sa.spi_r))
    if sa.config.childless != "never":
        payloads.append(NotifyPayload(NotifyType.CHILDLESS_IKEV2_SUPPORTED))
    fragments = request.notify(NotifyType.IKEV2_FRAGMENTATION_SUPPORTED) is not None
    if sa.config.fragmentation and fragments:
        # RFC 7383 2.3: both sides announced it, so either may fragment from IKE_AUTH on.
        sa.fragmentation = True
        payloads.append(NotifyPayload(NotifyType.IKEV2_FRAGMENTATION_SUPPORTED))
    response = IkeMessage(
        sa.spi_i,
        sa.spi_r,
        ExchangeType.IKE_SA_INIT,
        0,
        tuple(payloads),
        initiator=False,
        response=True,
    ).encode()
    sa.init_request = raw
    sa.init_response = response
    return response, DeferredKeys(key, peer_public_value)


class IkeSaInit(Task):
    """Initiator: the IKE_SA_INIT request and its answers."""

    exchange = ExchangeType.IKE_SA_INIT
    name = "IKE_SA_INIT"
    log = Logger()

    def __init__(self, sa: IkeSa, dh_group: int | None = None) -> None:
        super().__init__(sa)
        config = sa.config
        self.group = dh_group if dh_group is not None else config.offered_ike_suites[0].dh
        self.key = key_pair(self.group, config.random)
        self.cookie: bytes | None = None
        self.attempts = 0

    def build(self, now: float) -> Sequence[Payload]:
        sa = self.sa
        self.attempts += 1
        if not sa.nonce_i:
            sa.nonce_i = sa.config.random(sa.config.nonce_length)
        payloads: list[Payload] = []
        if self.cookie is not None:
            payloads.append(NotifyPayload(NotifyType.COOKIE, self.cookie))
        payloads += [
            SecurityAssociationPayload(
                tuple(to_payload(p) for p in ike_proposal(sa.config.offered_ike_suites))
            ),
            KeyExchangePayload(self.group, self.key.public_value),
            NoncePayload(sa.nonce_i),
            *nat_notifies(sa, ZERO_SPI),
            *offer_signatures(sa, None),
        ]
        if sa.config.fragmentation:
            payloads.append(NotifyPayload(NotifyType.IKEV2_FRAGMENTATION_SUPPORTED))
        if sa.redirected_from is not None:
            payloads.append(redirected_from_notify(sa.redirected_from))
        elif sa.config.follow_redirects:
            payloads.append(redirect_supported_notify())
        return payloads

    def encode(self, message_id: int, payloads: Sequence[Payload]) -> bytes:
        data = IkeMessage(
            self.sa.spi_i, ZERO_SPI, self.exchange, message_id, tuple(payloads), initiator=True
        ).encode()
        self.sa.init_request = data
        return data

    def _retry(self, now: float) -> None:
        """Send the request again (message ID 0 again) after a COOKIE or INVALID_KE."""
        self.sa.window.complete(0)
        self.sa.send_request(self, now, message_id=0)

    def receive(
        self, message: IkeMessage, raw: bytes, request: Outstanding[Task], now: float
    ) -> None:
        sa = self.sa
        sa.last_heard = now
        redirect = message.notify(NotifyType.REDIRECT)
        if redirect is not None and message.find(SecurityAssociationPayload) is None:
            # A spoofed REDIRECT is ignored: keep waiting for the genuine answer.
            init_redirect(sa, redirect, now)
            return
        cookie = message.notify(NotifyType.COOKIE)
        config = sa.config
        if cookie is not None and message.find(SecurityAssociationPayload) is None:
            if self.attempts >= config.max_init_attempts or not cookie.data:
                sa.fail("too many cookie requests", NotifyType.COOKIE)
                return
            self.cookie = cookie.data
            self._retry(now)
            return
        invalid_ke = message.notify(NotifyType.INVALID_KE_PAYLOAD)
        if invalid_ke is not None:
            wanted = int.from_bytes(invalid_ke.data[:2], "big") if len(invalid_ke.data) >= 2 else 0
            ours = {s.dh for s in config.offered_ike_suites}
            if wanted in ours and wanted != self.group and self.attempts < config.max_init_attempts:
                self.log.info(
                    "{peer} asks for DH group {group}; retrying",
                    peer=sa.peer_address,
                    group=wanted,
                )
                self.group = wanted
                self.key = key_pair(wanted, config.random)
                self._retry(now)
            else:
                sa.fail(f"INVALID_KE_PAYLOAD for group {wanted}", NotifyType.INVALID_KE_PAYLOAD)
            return
        for notify in message.notifies:
            if notify.is_error:
                sa.fail(f"peer answered {notify_name(notify.notify_type)}", notify.notify_type)
                return
        sa_payload = message.find(SecurityAssociationPayload)
        ke = message.find(KeyExchangePayload)
        nonce = message.find(NoncePayload)
        if sa_payload is None or ke is None or nonce is None or len(sa_payload.proposals) != 1:
            sa.fail("IKE_SA_INIT response lacks SA, KE or Nr", NotifyType.INVALID_SYNTAX)
            return
        suite = suite_from_proposal(from_payload(sa_payload.proposals[0]))
        if suite is None or suite not in config.offered_ike_suites or suite.dh != ke.dh_group:
            sa.fail("responder chose a proposal we did not offer", NotifyType.NO_PROPOSAL_CHOSEN)
            return
        if ke.dh_group != self.group or message.spi_r == ZERO_SPI:
            sa.fail("responder's KE group or SPI is wrong", NotifyType.INVALID_SYNTAX)
            return
        if not valid_nonce(nonce.data):
            sa.fail("responder's nonce has a bad length", NotifyType.INVALID_SYNTAX)
            return
        try:
            shared = self.key.shared_secret(ke.data)
        except crypto.InvalidPublicValueError as e:
            sa.fail(f"responder's KE data is invalid: {e}", NotifyType.INVALID_SYNTAX)
            return
        sa.window.complete(request.message_id)
        sa.spi_r = message.spi_r
        sa.suite = suite
        sa.nonce_r = nonce.data
        sa.init_response = raw
        sa.peer_childless = message.notify(NotifyType.CHILDLESS_IKEV2_SUPPORTED) is not None
        offer_signatures(sa, message.payloads)
        sa.fragmentation = (
            config.fragmentation
            and message.notify(NotifyType.IKEV2_FRAGMENTATION_SUPPORTED) is not None
        )
        check_nat(sa, message, message.spi_r)
        float_to_nat_t(sa, now)  # before IKE_AUTH, which goes on port 4500 (RFC 7296 2.23)
        sa.derive(shared)
        sa.transition(StateEvent.INIT_ANSWERED)
        sa.queue(IkeAuth(sa), now)
