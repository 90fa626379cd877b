"""One IKE SA: the RFC 7296 state machine for both roles, without I/O.

An ``IkeSa`` is driven by its ``IkeEndpoint`` (``twisted_rserpool.ike.endpoint``), which
routes decoded messages to it by SPI, frames and sends the bytes it produces, collects its
events and runs its timer. States:

    initiator: INIT_SENT -> AUTH_SENT -> ESTABLISHED [-> DELETING] -> CLOSED
    responder: INIT_DONE (half-open) -> ESTABLISHED [-> DELETING] -> CLOSED

What each state accepts (anything else is dropped, or answered as noted):

    state        requests from the peer                  our requests
    INIT_SENT    -                                       IKE_SA_INIT
    INIT_DONE    IKE_AUTH                                -
    AUTH_SENT    -                                       IKE_AUTH
    ESTABLISHED  INFORMATIONAL, CREATE_CHILD_SA          INFORMATIONAL, CREATE_CHILD_SA
    DELETING     INFORMATIONAL (CREATE_CHILD_SA is       INFORMATIONAL (Delete)
                 answered TEMPORARY_FAILURE)
    CLOSED       -                                       -

A rekey of the IKE SA (either side starting it) creates a new ``IkeSa`` in ESTABLISHED
that takes the CHILD_SAs; the old one goes to DELETING and CLOSED.

Redirects (RFC 5685), client side: an N(REDIRECT) in the IKE_SA_INIT response (its Nonce
Data must equal our Ni, else it is ignored as spoofed) closes the SA (INIT_SENT ->
CLOSED, event ``IkeSaRedirected``); in the IKE_AUTH response (after the gateway's AUTH
is verified, no nonce allowed) the SA goes to DELETING; in an INFORMATIONAL request of an
ESTABLISHED SA (no nonce allowed) we answer, start the new SA, and delete this one once
the new one is established. Each time the endpoint starts a new IKE SA with
N(REDIRECTED_FROM), if the allow-list and the loop limit permit. Gateway side: the
IKE_SA_INIT redirect is stateless (in the endpoint); an IKE_AUTH redirect answers IDr,
AUTH and N(REDIRECT) without a CHILD_SA, and an INFORMATIONAL redirect is a request of
ours; both delete the SA after ``redirect_delete_timeout`` unless the client does first.

Message IDs use a window of one in each direction: one request of ours is outstanding at a
time (later ones wait in a queue), and the last response we sent is kept to answer a
retransmitted request byte for byte.
"""

from __future__ import annotations

import functools
import hmac
import os
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import Enum
from ipaddress import IPv4Address, IPv6Address
from typing import Protocol, TypeVar

from twisted.logger import Logger

from twisted_rserpool.ike import crypto
from twisted_rserpool.ike.child import (
    ChildSa,
    IChildSAInstaller,
    covers,
    narrow,
    split_keymat,
)
from twisted_rserpool.ike.config import Identity, IkeConfig
from twisted_rserpool.ike.constants import (
    AuthMethod,
    ExchangeType,
    HeaderFlag,
    NotifyType,
    PayloadType,
    ProtocolId,
)
from twisted_rserpool.ike.errors import InvalidIkeMessage
from twisted_rserpool.ike.events import (
    ChildSaDeleted,
    ChildSaEstablished,
    ChildSaFailed,
    ClientRedirected,
    IkeEvent,
    IkeSaDeleted,
    IkeSaEstablished,
    IkeSaFailed,
    IkeSaRedirected,
    IkeSaRekeyed,
    LivenessConfirmed,
)
from twisted_rserpool.ike.payloads import (
    AuthenticationPayload,
    DeletePayload,
    GatewayIdentity,
    IdInitiatorPayload,
    IdResponderPayload,
    IkeHeader,
    IkeMessage,
    KeyExchangePayload,
    NoncePayload,
    NotifyPayload,
    Payload,
    Proposal,
    SecurityAssociationPayload,
    TrafficSelector,
    Transform,
    TransformAttribute,
    TsInitiatorPayload,
    TsResponderPayload,
    decode_payload_chain,
    encode_payload_chain,
    parse_redirect,
    redirect_notify,
    redirect_supported_notify,
    redirected_from_notify,
)
from twisted_rserpool.ike.proposals import (
    ENCR,
    PROTO_ESP,
    ChildSuite,
    IkeSuite,
    OfferedProposal,
    OfferedTransform,
    child_proposal,
    child_suite_from_proposal,
    ike_proposal,
    select_child,
    select_ike,
    suite_from_proposal,
)
from twisted_rserpool.ike.redirect import RedirectDecision

__all__ = ["Address", "IkeSa", "IkeSaHost", "State", "from_payload", "to_payload"]

Address = tuple[str, int]
_P = TypeVar("_P")
_ZERO_SPI = bytes(8)


class State(Enum):
    """Where an IKE SA is in its life."""

    INIT_SENT = "INIT_SENT"
    INIT_DONE = "INIT_DONE"
    AUTH_SENT = "AUTH_SENT"
    ESTABLISHED = "ESTABLISHED"
    DELETING = "DELETING"
    CLOSED = "CLOSED"


class IkeSaHost(Protocol):
    """What an IKE SA needs from the endpoint that owns it."""

    installer: IChildSAInstaller

    def send(self, data: bytes, address: Address) -> None:
        """Send an IKE message (the endpoint adds the non-ESP marker where needed)."""

    def emit(self, event: IkeEvent) -> None:
        """Report an event to the user."""

    def reschedule(self, sa: IkeSa) -> None:
        """The SA's deadline may have changed."""

    def closed(self, sa: IkeSa) -> None:
        """The SA reached CLOSED: forget it."""

    def half_open_finished(self, sa: IkeSa) -> None:
        """A responder SA left INIT_DONE (it no longer counts as half-open)."""

    def new_spi(self) -> bytes:
        """A fresh IKE SPI of ours, unused in the SA table."""

    def follow_redirect(
        self, sa: IkeSa, gateway: GatewayIdentity, exchange: str, now: float
    ) -> tuple[bytes | None, str | None]:
        """Start an IKE SA with ``gateway`` after ``sa`` was redirected.

        Returns (new SPIi or None for an FQDN left to the caller, None) or (None, why the
        redirect is refused).
        """

    def redirect_decision(self, sa: IkeSa, exchange: str, now: float) -> RedirectDecision | None:
        """Whether the gateway's policy redirects this authenticated client."""

    def adopt(self, sa: IkeSa) -> None:
        """Add an SA made by a rekey to the SA table."""


@functools.lru_cache(maxsize=256)
def to_payload(proposal: OfferedProposal) -> Proposal:
    """A codec Proposal from a proposal of ``proposals`` (values are cached: both immutable)."""
    return Proposal(
        proposal.number,
        proposal.protocol,
        proposal.spi,
        tuple(
            Transform(
                t.type,
                t.id,
                (TransformAttribute.key_length(t.key_length),) if t.key_length else (),
            )
            for t in proposal.transforms
        ),
    )


@functools.lru_cache(maxsize=1024)
def from_payload(proposal: Proposal) -> OfferedProposal:
    """A proposal of ``proposals`` from a decoded codec Proposal (cached: both immutable)."""
    return OfferedProposal(
        proposal.number,
        proposal.protocol_id,
        proposal.spi,
        tuple(
            OfferedTransform(
                t.transform_type,
                t.transform_id,
                t.key_length if t.transform_type == ENCR else None,
            )
            for t in proposal.transforms
        ),
    )


@dataclass(frozen=True)
class _Refusal:
    """Why a CHILD_SA request is refused, and the notify that says so."""

    notify_type: int
    reason: str


@dataclass(frozen=True)
class _IkeRekey:
    """Our IKE SA rekey in progress: the new SPI, Ni and DH key we sent."""

    spi: bytes
    nonce: bytes
    key: crypto.DhPrivateKey
    group: int


@dataclass
class _Request:
    """Our outstanding request: what to resend, when, and what it was for."""

    message_id: int
    exchange: int
    data: bytes
    kind: str
    sent_at: float
    first_sent_at: float
    tries: int
    deadline: float


class IkeSa:
    """The state of one IKE SA and the rules of its exchanges (use IkeEndpoint to drive it)."""

    log = Logger()

    def __init__(
        self,
        host: IkeSaHost,
        config: IkeConfig,
        *,
        initiator: bool,
        spi_i: bytes,
        spi_r: bytes,
        local_address: Address,
        peer_address: Address,
        now: float,
    ) -> None:
        self.host = host
        self.config = config
        self.initiator = initiator
        self.spi_i = spi_i
        self.spi_r = spi_r
        self.local_address = local_address
        self.peer_address = peer_address
        self.state = State.INIT_SENT if initiator else State.INIT_DONE
        self.created = now
        self.last_heard = now
        self.suite: IkeSuite | None = None
        self.keys: crypto.IkeKeys | None = None
        self.nonce_i = b""
        self.nonce_r = b""
        self.init_request = b""
        self.init_response = b""
        self.peer_id: Identity | None = None
        self.peer_childless = False
        self.peer_behind_nat = False
        self.local_behind_nat = False
        self.children: dict[bytes, ChildSa] = {}
        self._children_by_outbound: dict[bytes, ChildSa] = {}
        self._next_message_id = 0
        self._peer_next_message_id = 0
        self._last_request = b""
        self._last_response = b""
        self._outstanding: _Request | None = None
        self._queue: deque[tuple[str, int, tuple[Payload, ...]]] = deque()
        self._dh: crypto.DhPrivateKey | None = None
        self._dh_group = 0
        self._peer_public_value = b""
        self._cookie: bytes | None = None
        self._init_attempts = 0
        self._offered_child: tuple[bytes, tuple[ChildSuite, ...]] | None = None
        self._offered_ts: tuple[tuple[TrafficSelector, ...], tuple[TrafficSelector, ...]] = ((), ())
        self._cipher_out: crypto.SkCipher | None = None
        self._cipher_in: crypto.SkCipher | None = None
        self.half_open_deadline = now + config.half_open_timeout
        self.rekeyed_to: IkeSa | None = None
        self._rekey: _IkeRekey | None = None
        self._rekey_attempts = 0
        self._rekey_due: float | None = None
        self.client = initiator
        self.redirected_from: IPv4Address | IPv6Address | None = None
        self.redirect_times: tuple[float, ...] = ()
        self.replaces: IkeSa | None = None
        self.redirect_supported = False
        self.redirect_delete_at: float | None = None

    # --- identity and timers ------------------------------------------------------------

    @property
    def local_spi(self) -> bytes:
        """The SPI we chose (the key of the endpoint's SA table)."""
        return self.spi_i if self.initiator else self.spi_r

    @property
    def established(self) -> bool:
        """Whether IKE_AUTH completed and the SA is not closed."""
        return self.state in (State.ESTABLISHED, State.DELETING)

    def deadline(self) -> float | None:
        """When ``on_timer`` must next run, or None."""
        times: list[float] = []
        if self._outstanding is not None:
            times.append(self._outstanding.deadline)
        if self.state == State.INIT_DONE:
            times.append(self.half_open_deadline)
        if (
            self.state == State.ESTABLISHED
            and self._outstanding is None
            and self.config.liveness_interval is not None
        ):
            times.append(self.last_heard + self.config.liveness_interval)
        if self._rekey_due is not None and self.state == State.ESTABLISHED:
            times.append(self._rekey_due)
        if self.redirect_delete_at is not None and self.state == State.ESTABLISHED:
            times.append(self.redirect_delete_at)
        return min(times) if times else None

    def on_timer(self, now: float) -> None:
        """Retransmit, give up, time out a half-open SA, or start a liveness check."""
        request = self._outstanding
        if request is not None and now >= request.deadline:
            if request.tries >= self.config.retransmit_tries:
                self._give_up(now)
                return
            request.tries += 1
            timeout = self.config.retransmit_timeout * (2 ** (request.tries - 1))
            request.deadline = now + timeout
            request.sent_at = now
            self.log.debug(
                "retransmitting {kind} request {mid} to {peer} (try {tries})",
                kind=request.kind,
                mid=request.message_id,
                peer=self.peer_address,
                tries=request.tries,
            )
            self.host.send(request.data, self.peer_address)
        if self.state == State.INIT_DONE and now >= self.half_open_deadline:
            self.log.info(
                "half-open IKE SA {spi} from {peer} timed out",
                spi=self.spi_r.hex(),
                peer=self.peer_address,
            )
            self._fail("half-open timeout", None)
            return
        interval = self.config.liveness_interval
        if (
            self.state == State.ESTABLISHED
            and self._outstanding is None
            and interval is not None
            and now >= self.last_heard + interval
        ):
            self.check_liveness(now)
        if (
            self._rekey_due is not None
            and self.state == State.ESTABLISHED
            and now >= self._rekey_due
        ):
            self._rekey_due = None
            self.rekey(now)
        if (
            self.redirect_delete_at is not None
            and self.state == State.ESTABLISHED
            and now >= self.redirect_delete_at
        ):
            self.redirect_delete_at = None
            self.log.info(
                "deleting IKE SA {spi_i}/{spi_r} of redirected client {peer}",
                spi_i=self.spi_i.hex(),
                spi_r=self.spi_r.hex(),
                peer=self.peer_address,
            )
            # The client has moved on (or will not): one Delete, no waiting for its answer.
            message_id = self._next_message_id
            self._next_message_id += 1
            data = self._seal(
                ExchangeType.INFORMATIONAL, message_id, False, [DeletePayload.ike_sa()]
            )
            self.host.send(data, self.peer_address)
            self._close(
                IkeSaDeleted(
                    self.spi_i, self.spi_r, self.initiator, self.peer_address, "redirected"
                )
            )
            return
        self.host.reschedule(self)

    def _give_up(self, now: float) -> None:
        request = self._outstanding
        assert request is not None
        self.log.info(
            "no answer from {peer} to {kind} request {mid} after {tries} tries",
            peer=self.peer_address,
            kind=request.kind,
            mid=request.message_id,
            tries=request.tries,
        )
        if self.established:
            if self.state == State.DELETING:
                reason = "rekeyed" if self.rekeyed_to is not None else "deleted"
            else:
                reason = "peer unreachable"
            self._close(
                IkeSaDeleted(self.spi_i, self.spi_r, self.initiator, self.peer_address, reason)
            )
        else:
            self._fail("no response from peer", None)

    # --- sending ------------------------------------------------------------------------

    def _header(self, exchange: int, message_id: int, response: bool) -> bytes:
        flags = (HeaderFlag.INITIATOR if self.initiator else 0) | (
            HeaderFlag.RESPONSE if response else 0
        )
        return IkeHeader(
            self.spi_i, self.spi_r, PayloadType.SK, 2, 0, exchange, flags, message_id, 0
        ).encode()

    def _seal(
        self, exchange: int, message_id: int, response: bool, payloads: Sequence[Payload]
    ) -> bytes:
        assert self._cipher_out is not None
        first, chain = encode_payload_chain(list(payloads))
        return self._cipher_out.seal(self._header(exchange, message_id, response), first, chain)

    def _respond(
        self, exchange: int, message_id: int, payloads: Sequence[Payload], request: bytes
    ) -> None:
        data = self._seal(exchange, message_id, True, payloads)
        self._last_request = request
        self._last_response = data
        self._peer_next_message_id = message_id + 1
        self.host.send(data, self.peer_address)

    def _request(self, kind: str, exchange: int, payloads: tuple[Payload, ...], now: float) -> None:
        """Send a protected request now, or queue it behind the outstanding one."""
        if self._outstanding is not None:
            self._queue.append((kind, exchange, payloads))
            return
        message_id = self._next_message_id
        self._next_message_id += 1
        data = self._seal(exchange, message_id, False, payloads)
        self._send_request(kind, exchange, message_id, data, now)

    def _send_request(
        self, kind: str, exchange: int, message_id: int, data: bytes, now: float
    ) -> None:
        self._outstanding = _Request(
            message_id, exchange, data, kind, now, now, 1, now + self.config.retransmit_timeout
        )
        self.host.send(data, self.peer_address)
        self.host.reschedule(self)

    def _request_done(self, now: float) -> None:
        self._outstanding = None
        if self._queue and self.state == State.ESTABLISHED:
            kind, exchange, payloads = self._queue.popleft()
            self._request(kind, exchange, payloads, now)
        self.host.reschedule(self)

    # --- life cycle ---------------------------------------------------------------------

    def _close(self, event: IkeEvent | None) -> None:
        if self.state == State.CLOSED:
            return
        was_half_open = self.state == State.INIT_DONE
        self.state = State.CLOSED
        self._outstanding = None
        self._queue.clear()
        for child in list(self.children.values()):
            self.host.installer.remove(child)
        self.children.clear()
        self._children_by_outbound.clear()
        if was_half_open:
            self.host.half_open_finished(self)
        if event is not None:
            self.host.emit(event)
        self.host.closed(self)

    def _fail(self, reason: str, notify_type: int | None) -> None:
        self.log.info(
            "IKE SA {spi_i}/{spi_r} with {peer} failed: {reason}",
            spi_i=self.spi_i.hex(),
            spi_r=self.spi_r.hex(),
            peer=self.peer_address,
            reason=reason,
        )
        self._close(
            IkeSaFailed(
                self.spi_i, self.spi_r, self.initiator, self.peer_address, reason, notify_type
            )
        )

    def _establish(self) -> None:
        assert self.suite is not None and self.peer_id is not None
        if self.state == State.INIT_DONE:
            self.host.half_open_finished(self)
        self.state = State.ESTABLISHED
        self._start_life(self.last_heard)
        self.log.info(
            "IKE SA {spi_i}/{spi_r} established with {peer_id} at {peer} ({suite})",
            spi_i=self.spi_i.hex(),
            spi_r=self.spi_r.hex(),
            peer_id=str(self.peer_id),
            peer=self.peer_address,
            suite=str(self.suite),
        )
        self.host.emit(
            IkeSaEstablished(
                self.spi_i,
                self.spi_r,
                self.initiator,
                self.peer_address,
                self.config.local_id,
                self.peer_id,
                self.suite,
                self.peer_behind_nat,
                self.local_behind_nat,
            )
        )
        old, self.replaces = self.replaces, None
        if old is not None and old.state == State.ESTABLISHED:
            old.delete(self.last_heard)
            self.host.reschedule(old)

    # --- key material -------------------------------------------------------------------

    def _derive(self, shared_secret: bytes) -> None:
        assert self.suite is not None
        _, keys = crypto.derive_ike_keys(
            self.suite.prf_transform,
            self.suite.encryption_transform,
            self.suite.integrity_transform,
            shared_secret=shared_secret,
            nonce_i=self.nonce_i,
            nonce_r=self.nonce_r,
            spi_i=self.spi_i,
            spi_r=self.spi_r,
        )
        self.keys = keys
        self._cipher_out = keys.cipher(self.initiator)
        self._cipher_in = keys.cipher(not self.initiator)

    def _auth_data(self, psk: bytes, *, ours: bool, id_body: bytes) -> bytes:
        """PSK AUTH of the side that sent ``id_body`` (us when ``ours``)."""
        assert self.keys is not None
        prf = self.keys.prf
        sender_is_initiator = self.initiator == ours
        if sender_is_initiator:
            octets = crypto.signed_octets(
                prf, self.init_request, self.nonce_r, self.keys.sk_pi, id_body
            )
        else:
            octets = crypto.signed_octets(
                prf, self.init_response, self.nonce_i, self.keys.sk_pr, id_body
            )
        return crypto.psk_auth(prf, psk, octets)

    def _nat_notifies(self, spi_r: bytes) -> tuple[NotifyPayload, ...]:
        """NAT_DETECTION_SOURCE_IP and _DESTINATION_IP, or none when bound to a wildcard."""
        host, port = self.local_address
        if host in ("0.0.0.0", "::", ""):
            return ()
        source = crypto.nat_detection_hash(self.spi_i, spi_r, host, port)
        peer_host, peer_port = self.peer_address
        destination = crypto.nat_detection_hash(self.spi_i, spi_r, peer_host, peer_port)
        return (
            NotifyPayload(NotifyType.NAT_DETECTION_SOURCE_IP, source),
            NotifyPayload(NotifyType.NAT_DETECTION_DESTINATION_IP, destination),
        )

    def _check_nat(self, message: IkeMessage, spi_r: bytes) -> None:
        sources = [
            n.data for n in message.notifies if n.notify_type == NotifyType.NAT_DETECTION_SOURCE_IP
        ]
        destination = message.notify(NotifyType.NAT_DETECTION_DESTINATION_IP)
        peer_host, peer_port = self.peer_address
        if sources:
            expected = crypto.nat_detection_hash(self.spi_i, spi_r, peer_host, peer_port)
            self.peer_behind_nat = expected not in sources
        host, port = self.local_address
        if destination is not None and host not in ("0.0.0.0", "::", ""):
            expected = crypto.nat_detection_hash(self.spi_i, spi_r, host, port)
            self.local_behind_nat = destination.data != expected

    # --- responder: IKE_SA_INIT ---------------------------------------------------------

    def accept_init(
        self,
        request: IkeMessage,
        raw: bytes,
        suite: IkeSuite,
        chosen: OfferedProposal,
        peer_public_value: bytes,
    ) -> bytes:
        """Answer a checked IKE_SA_INIT request with our KE and nonce; returns the response.

        The shared secret and the keys are computed when the first protected message
        (IKE_AUTH) arrives, so a half-open SA costs one key pair and no more. Raises
        crypto.InvalidPublicValueError when the KE data has the wrong length.
        """
        nonce = request.find(NoncePayload)
        assert nonce is not None
        self.suite = suite
        group = crypto.DH_GROUPS[suite.dh]
        if len(peer_public_value) != group.public_value_length:
            raise crypto.InvalidPublicValueError(
                f"KE data of {len(peer_public_value)} octets for group {int(suite.dh)}"
            )
        key = group.generate()
        self._dh = key
        self._peer_public_value = peer_public_value
        self.nonce_i = nonce.data
        self.nonce_r = os.urandom(self.config.nonce_length)
        self._check_nat(request, _ZERO_SPI)
        payloads: list[Payload] = [
            SecurityAssociationPayload((to_payload(chosen),)),
            KeyExchangePayload(suite.dh, key.public_value),
            NoncePayload(self.nonce_r),
        ]
        if request.notify(NotifyType.NAT_DETECTION_SOURCE_IP) is not None:
            payloads.extend(self._nat_notifies(self.spi_r))
        if self.config.childless != "never":
            payloads.append(NotifyPayload(NotifyType.CHILDLESS_IKEV2_SUPPORTED))
        response = IkeMessage(
            self.spi_i,
            self.spi_r,
            ExchangeType.IKE_SA_INIT,
            0,
            tuple(payloads),
            initiator=False,
            response=True,
        ).encode()
        self.init_request = raw
        self.init_response = response
        self._last_request = raw
        self._last_response = response
        self._peer_next_message_id = 1
        return response

    def _complete_keys(self) -> bool:
        """Responder: compute g^ir and the keys deferred by accept_init; False if invalid."""
        if self._cipher_in is not None:
            return True
        if self._dh is None:
            return False
        try:
            shared = self._dh.shared_secret(self._peer_public_value)
        except crypto.InvalidPublicValueError as e:
            self._fail(f"initiator's KE data is invalid: {e}", NotifyType.INVALID_SYNTAX)
            return False
        self._dh = None
        self._derive(shared)
        return True

    # --- initiator: IKE_SA_INIT ---------------------------------------------------------

    def start(self, now: float, dh_group: int | None = None) -> None:
        """Send (or resend, after a cookie or INVALID_KE_PAYLOAD) the IKE_SA_INIT request."""
        self._init_attempts += 1
        group_id = dh_group if dh_group is not None else self.config.ike_suites[0].dh
        if self._dh is None or dh_group is not None:
            self._dh = crypto.DH_GROUPS[group_id].generate()
            self._dh_group = group_id
        if not self.nonce_i:
            self.nonce_i = os.urandom(self.config.nonce_length)
        payloads: list[Payload] = []
        if self._cookie is not None:
            payloads.append(NotifyPayload(NotifyType.COOKIE, self._cookie))
        payloads += [
            SecurityAssociationPayload(
                tuple(to_payload(p) for p in ike_proposal(self.config.ike_suites))
            ),
            KeyExchangePayload(self._dh_group, self._dh.public_value),
            NoncePayload(self.nonce_i),
            *self._nat_notifies(_ZERO_SPI),
        ]
        if self.redirected_from is not None:
            payloads.append(redirected_from_notify(self.redirected_from))
        elif self.config.follow_redirects:
            payloads.append(redirect_supported_notify())
        data = IkeMessage(
            self.spi_i, _ZERO_SPI, ExchangeType.IKE_SA_INIT, 0, tuple(payloads), initiator=True
        ).encode()
        self.init_request = data
        self._next_message_id = 1
        self._send_request("IKE_SA_INIT", ExchangeType.IKE_SA_INIT, 0, data, now)

    def _init_response(self, message: IkeMessage, raw: bytes, now: float) -> None:
        redirect = message.notify(NotifyType.REDIRECT)
        if redirect is not None and message.find(SecurityAssociationPayload) is None:
            self._init_redirect(redirect, now)
            return
        cookie = message.notify(NotifyType.COOKIE)
        if cookie is not None and message.find(SecurityAssociationPayload) is None:
            if self._init_attempts >= 4 or not cookie.data:
                self._fail("too many cookie requests", NotifyType.COOKIE)
                return
            self._cookie = cookie.data
            self._outstanding = None
            self.start(now)
            return
        invalid_ke = message.notify(NotifyType.INVALID_KE_PAYLOAD)
        if invalid_ke is not None:
            wanted = int.from_bytes(invalid_ke.data[:2], "big") if len(invalid_ke.data) >= 2 else 0
            ours = {s.dh for s in self.config.ike_suites}
            if wanted in ours and wanted != self._dh_group and self._init_attempts < 4:
                self.log.info(
                    "{peer} asks for DH group {group}; retrying",
                    peer=self.peer_address,
                    group=wanted,
                )
                self._outstanding = None
                self.start(now, wanted)
            else:
                self._fail(f"INVALID_KE_PAYLOAD for group {wanted}", NotifyType.INVALID_KE_PAYLOAD)
            return
        for notify in message.notifies:
            if notify.is_error:
                self._fail(f"peer answered {_notify_name(notify.notify_type)}", notify.notify_type)
                return
        sa = message.find(SecurityAssociationPayload)
        ke = message.find(KeyExchangePayload)
        nonce = message.find(NoncePayload)
        if sa is None or ke is None or nonce is None or len(sa.proposals) != 1:
            self._fail("IKE_SA_INIT response lacks SA, KE or Nr", NotifyType.INVALID_SYNTAX)
            return
        suite = suite_from_proposal(from_payload(sa.proposals[0]))
        if suite is None or suite not in self.config.ike_suites or suite.dh != ke.dh_group:
            self._fail("responder chose a proposal we did not offer", NotifyType.NO_PROPOSAL_CHOSEN)
            return
        if ke.dh_group != self._dh_group or message.spi_r == _ZERO_SPI:
            self._fail("responder's KE group or SPI is wrong", NotifyType.INVALID_SYNTAX)
            return
        if not 16 <= len(nonce.data) <= 256:
            self._fail("responder's nonce has a bad length", NotifyType.INVALID_SYNTAX)
            return
        assert self._dh is not None
        try:
            shared = self._dh.shared_secret(ke.data)
        except crypto.InvalidPublicValueError as e:
            self._fail(f"responder's KE data is invalid: {e}", NotifyType.INVALID_SYNTAX)
            return
        self.spi_r = message.spi_r
        self.suite = suite
        self.nonce_r = nonce.data
        self.init_response = raw
        self.peer_childless = message.notify(NotifyType.CHILDLESS_IKEV2_SUPPORTED) is not None
        self._check_nat(message, message.spi_r)
        self._derive(shared)
        self._dh = None
        self._outstanding = None
        self._send_auth(now)

    # --- redirects (RFC 5685) -------------------------------------------------------------

    def _redirect_target(self, notify: NotifyPayload, exchange: str) -> GatewayIdentity | None:
        """The gateway of a REDIRECT we may act on, or None (the notify is then ignored)."""
        if not self.client or not self.config.follow_redirects:
            self.log.info(
                "ignoring REDIRECT from {peer}: we did not offer to be redirected",
                peer=self.peer_address,
            )
            return None
        try:
            data = parse_redirect(notify)
        except InvalidIkeMessage as e:
            self.log.info(
                "ignoring malformed REDIRECT from {peer}: {error}",
                peer=self.peer_address,
                error=e.reason,
            )
            return None
        if exchange == "IKE_SA_INIT":
            if not hmac.compare_digest(data.nonce, self.nonce_i):
                self.log.info(
                    "ignoring REDIRECT from {peer} whose Nonce Data is not our Ni (spoofed?)",
                    peer=self.peer_address,
                )
                return None
        elif data.nonce:
            self.log.info(
                "ignoring REDIRECT with Nonce Data in {exchange} from {peer}",
                exchange=exchange,
                peer=self.peer_address,
            )
            return None
        return data.gateway

    def _follow(
        self, gateway: GatewayIdentity, exchange: str, now: float
    ) -> IkeSaRedirected | None:
        """Ask the endpoint to start the SA with ``gateway``; the event, or None if refused."""
        new_spi, refusal = self.host.follow_redirect(self, gateway, exchange, now)
        if refusal is not None:
            self.log.info(
                "not following the redirect from {peer} to {gateway}: {reason}",
                peer=self.peer_address,
                gateway=str(gateway),
                reason=refusal,
            )
            return None
        self.log.info(
            "redirected by {peer} to {gateway} in {exchange}",
            peer=self.peer_address,
            gateway=str(gateway),
            exchange=exchange,
        )
        return IkeSaRedirected(
            self.spi_i,
            self.spi_r,
            self.peer_address,
            gateway,
            exchange,
            new_spi,
            self.peer_id,
        )

    def _init_redirect(self, notify: NotifyPayload, now: float) -> None:
        gateway = self._redirect_target(notify, "IKE_SA_INIT")
        if gateway is None:
            return  # keep waiting for a genuine response (RFC 5685 section 3)
        event = self._follow(gateway, "IKE_SA_INIT", now)
        if event is None:
            self._fail(f"redirect to {gateway} refused", NotifyType.REDIRECT)
            return
        self._close(event)

    def redirect(self, gateway: GatewayIdentity, reason: str, now: float) -> bool:
        """Gateway: move the client elsewhere with a protected INFORMATIONAL N(REDIRECT).

        The request is retransmitted until answered; the SA is deleted after
        ``redirect_delete_timeout`` unless the client deletes it first. False when the SA is
        not established, the client never offered to be redirected, or it is being redirected.
        """
        if (
            self.state != State.ESTABLISHED
            or self.client
            or not self.redirect_supported
            or self.redirect_delete_at is not None
        ):
            return False
        self._request("redirect", ExchangeType.INFORMATIONAL, (redirect_notify(gateway),), now)
        self.redirect_delete_at = now + self.config.redirect_delete_timeout
        self.host.emit(
            ClientRedirected(
                self.peer_address, gateway, reason, "INFORMATIONAL", self.spi_i, self.spi_r
            )
        )
        self.host.reschedule(self)
        return True

    # --- IKE_AUTH -----------------------------------------------------------------------

    def _want_child(self) -> bool:
        if self.config.childless == "force" and self.peer_childless:
            return False
        return bool(self.config.child_suites)

    def _send_auth(self, now: float) -> None:
        config = self.config
        psk = config.psks.lookup(config.remote_id) if config.remote_id else config.psks.default
        if psk is None:
            self._fail("no pre-shared key for the responder", None)
            return
        idi = IdInitiatorPayload(config.local_id.id_type, config.local_id.data)
        payloads: list[Payload] = [idi]
        if config.remote_id is not None:
            payloads.append(IdResponderPayload(config.remote_id.id_type, config.remote_id.data))
        auth = self._auth_data(psk, ours=True, id_body=idi.encode_body())
        payloads.append(AuthenticationPayload(AuthMethod.SHARED_KEY_MIC, auth))
        if config.initial_contact:
            payloads.append(NotifyPayload(NotifyType.INITIAL_CONTACT))
        if self._want_child():
            spi = os.urandom(4)
            proposals = child_proposal(config.child_suites, spi)
            self._offered_child = (spi, config.child_suites)
            self._offered_ts = (config.local_ts, config.remote_ts)
            payloads += [
                SecurityAssociationPayload(tuple(to_payload(p) for p in proposals)),
                TsInitiatorPayload(config.local_ts),
                TsResponderPayload(config.remote_ts),
            ]
        self.state = State.AUTH_SENT
        message_id = self._next_message_id
        self._next_message_id += 1
        data = self._seal(ExchangeType.IKE_AUTH, message_id, False, payloads)
        self._send_request("IKE_AUTH", ExchangeType.IKE_AUTH, message_id, data, now)

    def _auth_request(
        self, message_id: int, payloads: tuple[Payload, ...], raw: bytes, now: float
    ) -> None:
        """Responder: verify the initiator's AUTH, answer with ours and maybe a CHILD_SA."""
        idi = _find(payloads, IdInitiatorPayload)
        auth = _find(payloads, AuthenticationPayload)
        if idi is None or auth is None:
            self._refuse_auth(message_id, raw, NotifyType.INVALID_SYNTAX, "IKE_AUTH lacks IDi/AUTH")
            return
        peer_id = Identity(idi.id_type, idi.data)
        psk = self.config.psks.lookup(peer_id)
        if auth.method != AuthMethod.SHARED_KEY_MIC or psk is None:
            self._refuse_auth(
                message_id,
                raw,
                NotifyType.AUTHENTICATION_FAILED,
                f"no pre-shared key for {peer_id} (auth method {auth.method})",
            )
            return
        expected = self._auth_data(psk, ours=False, id_body=idi.encode_body())
        if not hmac.compare_digest(expected, auth.data):
            self._refuse_auth(
                message_id, raw, NotifyType.AUTHENTICATION_FAILED, f"AUTH of {peer_id} is wrong"
            )
            return
        idr_wanted = _find(payloads, IdResponderPayload)
        local = self.config.local_id
        if idr_wanted is not None and Identity(idr_wanted.id_type, idr_wanted.data) != local:
            self._refuse_auth(
                message_id,
                raw,
                NotifyType.AUTHENTICATION_FAILED,
                f"initiator asked for identity {Identity(idr_wanted.id_type, idr_wanted.data)}",
            )
            return
        self.peer_id = peer_id
        idr = IdResponderPayload(local.id_type, local.data)
        answer: list[Payload] = [
            idr,
            AuthenticationPayload(
                AuthMethod.SHARED_KEY_MIC,
                self._auth_data(psk, ours=True, id_body=idr.encode_body()),
            ),
        ]
        decision = (
            self.host.redirect_decision(self, "IKE_AUTH", now) if self.redirect_supported else None
        )
        if decision is not None:
            # RFC 5685 section 6: no CHILD_SA, no nonce; the SA is valid until deleted.
            answer.append(redirect_notify(decision.gateway))
            self._respond(ExchangeType.IKE_AUTH, message_id, answer, raw)
            self.host.half_open_finished(self)
            self.state = State.ESTABLISHED
            self.redirect_delete_at = now + self.config.redirect_delete_timeout
            self.log.info(
                "redirecting authenticated client {peer_id} at {peer} to {gateway} ({reason})",
                peer_id=str(peer_id),
                peer=self.peer_address,
                gateway=str(decision.gateway),
                reason=decision.reason,
            )
            self.host.emit(
                ClientRedirected(
                    self.peer_address,
                    decision.gateway,
                    decision.reason,
                    "IKE_AUTH",
                    self.spi_i,
                    self.spi_r,
                )
            )
            self.host.reschedule(self)
            return
        sa = _find(payloads, SecurityAssociationPayload)
        child: ChildSa | None = None
        child_failure: _Refusal | None = None
        if sa is None:
            # RFC 6023: only the responder announces support (in its IKE_SA_INIT response).
            if self.config.childless == "never":
                self._refuse_auth(
                    message_id,
                    raw,
                    NotifyType.INVALID_SYNTAX,
                    "IKE_AUTH without a CHILD_SA but childless was not negotiated",
                )
                return
        else:
            outcome = self._negotiate_child(payloads, sa)
            if isinstance(outcome, _Refusal):
                child_failure = outcome
                answer.append(NotifyPayload(outcome.notify_type))
            else:
                child, child_payloads = outcome
                answer.extend(child_payloads)
        self._respond(ExchangeType.IKE_AUTH, message_id, answer, raw)
        self._establish()
        if child is not None:
            self._add_child(child)
        elif child_failure is not None:
            self.host.emit(
                ChildSaFailed(
                    self.spi_i, self.spi_r, child_failure.reason, child_failure.notify_type
                )
            )
        self.host.reschedule(self)

    def _refuse_auth(self, message_id: int, raw: bytes, notify_type: int, reason: str) -> None:
        self._respond(ExchangeType.IKE_AUTH, message_id, [NotifyPayload(notify_type)], raw)
        self._fail(reason, notify_type)

    def _negotiate_child(
        self,
        payloads: tuple[Payload, ...],
        sa: SecurityAssociationPayload,
        exchange_nonces: tuple[bytes, bytes] | None = None,
        dh: tuple[int, bytes] | None = None,
    ) -> _Refusal | tuple[ChildSa, list[Payload]]:
        """Responder of the exchange: choose an ESP proposal and narrow the selectors.

        ``exchange_nonces`` are (Ni, Nr) of a CREATE_CHILD_SA exchange (default: the IKE
        SA's, for IKE_AUTH); ``dh`` is (group, g^ir) when the request carried a KE payload.
        """
        tsi = _find(payloads, TsInitiatorPayload)
        tsr = _find(payloads, TsResponderPayload)
        if tsi is None or tsr is None:
            return _Refusal(NotifyType.INVALID_SYNTAX, "CHILD_SA request without TSi/TSr")
        spi = os.urandom(4)
        selected = select_child(
            [from_payload(p) for p in sa.proposals],
            self.config.child_suites,
            spi,
            dh[0] if dh is not None else None,
        )
        if selected is None:
            return _Refusal(NotifyType.NO_PROPOSAL_CHOSEN, "no acceptable ESP proposal")
        chosen, suite = selected
        ts_i = narrow(tsi.selectors, self.config.remote_ts)
        ts_r = narrow(tsr.selectors, self.config.local_ts)
        if not ts_i or not ts_r:
            return _Refusal(NotifyType.TS_UNACCEPTABLE, "traffic selectors unacceptable")
        transport = _has_notify(payloads, NotifyType.USE_TRANSPORT_MODE)
        peer_spi = next(p.spi for p in sa.proposals if p.number == chosen.number)
        nonce_i, nonce_r = exchange_nonces or (self.nonce_i, self.nonce_r)
        child = self._make_child(
            suite,
            spi,
            peer_spi,
            ts_i,
            ts_r,
            transport,
            nonces=(nonce_i, nonce_r),
            initiator=self.initiator if exchange_nonces is None else False,
            shared_secret=dh[1] if dh is not None else b"",
        )
        answer: list[Payload] = []
        if transport:
            answer.append(NotifyPayload(NotifyType.USE_TRANSPORT_MODE))
        answer += [
            SecurityAssociationPayload((to_payload(chosen),)),
            TsInitiatorPayload(ts_i),
            TsResponderPayload(ts_r),
        ]
        return child, answer

    def _make_child(
        self,
        suite: ChildSuite,
        inbound: bytes,
        outbound: bytes,
        ts_i: tuple[TrafficSelector, ...],
        ts_r: tuple[TrafficSelector, ...],
        transport: bool,
        *,
        nonces: tuple[bytes, bytes] | None = None,
        initiator: bool | None = None,
        shared_secret: bytes = b"",
    ) -> ChildSa:
        """A CHILD_SA with its KEYMAT; ``initiator`` says whether we began its exchange."""
        assert self.keys is not None
        nonce_i, nonce_r = nonces or (self.nonce_i, self.nonce_r)
        keymat = crypto.derive_child_keymat(
            self.keys.prf,
            self.keys.sk_d,
            nonce_i=nonce_i,
            nonce_r=nonce_r,
            length=2 * suite.keymat_length,
            shared_secret=shared_secret,
        )
        enc_i, integ_i, enc_r, integ_r = split_keymat(keymat, suite)
        return ChildSa(
            self.spi_i,
            self.spi_r,
            self.initiator if initiator is None else initiator,
            self.local_address[0],
            self.peer_address[0],
            inbound,
            outbound,
            suite,
            ts_i,
            ts_r,
            transport,
            enc_i,
            integ_i,
            enc_r,
            integ_r,
        )

    def _add_child(self, child: ChildSa) -> None:
        installed = bool(self.host.installer.install(child))
        if installed:
            self.children[child.inbound_spi] = child
            self._children_by_outbound[child.outbound_spi] = child
        self.host.emit(ChildSaEstablished(child, installed))

    def _auth_response(self, payloads: tuple[Payload, ...], now: float) -> None:
        """Initiator: check the responder's AUTH; the IKE SA and maybe a CHILD_SA are up."""
        for notify in _notifies(payloads):
            if notify.notify_type in (
                NotifyType.AUTHENTICATION_FAILED,
                NotifyType.INVALID_SYNTAX,
                NotifyType.UNSUPPORTED_CRITICAL_PAYLOAD,
            ):
                self._fail(f"peer answered {_notify_name(notify.notify_type)}", notify.notify_type)
                return
        idr = _find(payloads, IdResponderPayload)
        auth = _find(payloads, AuthenticationPayload)
        if idr is None or auth is None:
            self._fail("IKE_AUTH response lacks IDr/AUTH", NotifyType.INVALID_SYNTAX)
            return
        peer_id = Identity(idr.id_type, idr.data)
        if self.config.remote_id is not None and peer_id != self.config.remote_id:
            self._fail(f"responder is {peer_id}, not {self.config.remote_id}", None)
            return
        psk = self.config.psks.lookup(peer_id)
        if auth.method != AuthMethod.SHARED_KEY_MIC or psk is None:
            self._fail(f"cannot verify AUTH method {auth.method} of {peer_id}", None)
            return
        expected = self._auth_data(psk, ours=False, id_body=idr.encode_body())
        if not hmac.compare_digest(expected, auth.data):
            self._fail(f"AUTH of {peer_id} is wrong", NotifyType.AUTHENTICATION_FAILED)
            return
        self.peer_id = peer_id
        self._outstanding = None
        redirect = next(
            (n for n in _notifies(payloads) if n.notify_type == NotifyType.REDIRECT), None
        )
        if redirect is not None:
            gateway = self._redirect_target(redirect, "IKE_AUTH")
            event = self._follow(gateway, "IKE_AUTH", now) if gateway is not None else None
            if event is not None:
                self.state = State.ESTABLISHED
                self._offered_child = None
                self.host.emit(event)
                self.delete(now)
                return
            self._fail("redirected in IKE_AUTH (not followed)", NotifyType.REDIRECT)
            return
        self._establish()
        if self._offered_child is not None:
            self._child_response(payloads)
        self._request_done(now)

    def _child_response(self, payloads: tuple[Payload, ...]) -> None:
        assert self._offered_child is not None
        spi, suites = self._offered_child
        self._offered_child = None
        for notify in _notifies(payloads):
            if notify.is_error:
                self.host.emit(
                    ChildSaFailed(
                        self.spi_i,
                        self.spi_r,
                        f"peer answered {_notify_name(notify.notify_type)}",
                        notify.notify_type,
                    )
                )
                return
        sa = _find(payloads, SecurityAssociationPayload)
        tsi = _find(payloads, TsInitiatorPayload)
        tsr = _find(payloads, TsResponderPayload)
        if sa is None or tsi is None or tsr is None or len(sa.proposals) != 1:
            self.host.emit(ChildSaFailed(self.spi_i, self.spi_r, "no CHILD_SA in the response"))
            return
        proposal = sa.proposals[0]
        suite = child_suite_from_proposal(from_payload(proposal))
        ts_i = tuple(t for t in tsi.selectors if isinstance(t, TrafficSelector))
        ts_r = tuple(t for t in tsr.selectors if isinstance(t, TrafficSelector))
        offered_i, offered_r = self._offered_ts
        if (
            suite is None
            or suite not in suites
            or proposal.protocol_id != PROTO_ESP
            or len(proposal.spi) != 4
            or not ts_i
            or not ts_r
            or not all(any(covers(o, t) for o in offered_i) for t in ts_i)
            or not all(any(covers(o, t) for o in offered_r) for t in ts_r)
        ):
            self.host.emit(
                ChildSaFailed(
                    self.spi_i, self.spi_r, "responder's CHILD_SA does not match our offer"
                )
            )
            return
        transport = _has_notify(payloads, NotifyType.USE_TRANSPORT_MODE)
        child = self._make_child(suite, spi, proposal.spi, ts_i, ts_r, transport)
        self._add_child(child)

    # --- requests we make once established ----------------------------------------------

    def _start_life(self, now: float) -> None:
        """The SA became usable at ``now``: schedule its rekey when configured."""
        interval = self.config.rekey_interval
        self._rekey_due = now + interval if interval is not None else None

    def rekey(self, now: float, dh_group: int | None = None) -> bool:
        """Start rekeying this IKE SA (CREATE_CHILD_SA with a new SPI, Ni and KEi).

        False when it cannot start: not established, or already rekeying or rekeyed. On
        success the new SA takes the CHILD_SAs (event ``IkeSaRekeyed``) and this one is
        deleted (``IkeSaDeleted`` with reason ``"rekeyed"``).
        """
        if self.state != State.ESTABLISHED or self._rekey is not None or self.rekeyed_to:
            return False
        assert self.suite is not None
        current = self.suite
        group = dh_group if dh_group is not None else current.dh
        ordered = [current, *(s for s in self.config.ike_suites if s != current)]
        suites = [s for s in ordered if s.dh == group] + [s for s in ordered if s.dh != group]
        rekey = _IkeRekey(
            self.host.new_spi(),
            os.urandom(self.config.nonce_length),
            crypto.DH_GROUPS[group].generate(),
            group,
        )
        self._rekey = rekey
        self._rekey_attempts += 1
        payloads = (
            SecurityAssociationPayload(
                tuple(to_payload(p) for p in ike_proposal(suites, rekey.spi))
            ),
            NoncePayload(rekey.nonce),
            KeyExchangePayload(group, rekey.key.public_value),
        )
        self.log.info(
            "rekeying IKE SA {spi_i}/{spi_r} with {peer}",
            spi_i=self.spi_i.hex(),
            spi_r=self.spi_r.hex(),
            peer=self.peer_address,
        )
        self._request("rekey", ExchangeType.CREATE_CHILD_SA, payloads, now)
        return True

    def _rekey_failed(self, reason: str, now: float) -> None:
        self.log.info(
            "rekey of IKE SA {spi_i}/{spi_r} failed: {reason}",
            spi_i=self.spi_i.hex(),
            spi_r=self.spi_r.hex(),
            reason=reason,
        )
        self._rekey_attempts = 0
        interval = self.config.rekey_interval
        if interval is not None:
            self._rekey_due = now + max(10.0, interval / 10)
        self._request_done(now)

    def _rekey_response(self, payloads: tuple[Payload, ...], now: float) -> None:
        """Our IKE SA rekey was answered: make the new SA, then delete this one."""
        rekey, self._rekey = self._rekey, None
        assert rekey is not None and self.keys is not None
        for notify in _notifies(payloads):
            if notify.notify_type == NotifyType.INVALID_KE_PAYLOAD and len(notify.data) >= 2:
                wanted = int.from_bytes(notify.data[:2], "big")
                groups = {s.dh for s in self.config.ike_suites}
                if wanted in groups and wanted != rekey.group and self._rekey_attempts < 2:
                    self._request_done(now)
                    self.rekey(now, wanted)
                    return
            if notify.is_error:
                self._rekey_failed(f"peer answered {_notify_name(notify.notify_type)}", now)
                return
        sa = _find(payloads, SecurityAssociationPayload)
        nonce = _find(payloads, NoncePayload)
        ke = _find(payloads, KeyExchangePayload)
        if sa is None or nonce is None or ke is None or len(sa.proposals) != 1:
            self._rekey_failed("answer lacks SA, Nr or KEr", now)
            return
        proposal = sa.proposals[0]
        suite = suite_from_proposal(from_payload(proposal))
        if (
            suite is None
            or suite not in self.config.ike_suites
            or suite.dh != rekey.group
            or ke.dh_group != rekey.group
            or proposal.protocol_id != ProtocolId.IKE
            or len(proposal.spi) != 8
            or proposal.spi == _ZERO_SPI
            or not 16 <= len(nonce.data) <= 256
        ):
            self._rekey_failed("answer does not match our offer", now)
            return
        try:
            shared = rekey.key.shared_secret(ke.data)
        except crypto.InvalidPublicValueError as e:
            self._rekey_failed(f"invalid KE data: {e}", now)
            return
        new = IkeSa(
            self.host,
            self.config,
            initiator=True,
            spi_i=rekey.spi,
            spi_r=proposal.spi,
            local_address=self.local_address,
            peer_address=self.peer_address,
            now=now,
        )
        skeyseed = self.keys.prf(self.keys.sk_d, shared + rekey.nonce + nonce.data)
        self._hand_over(new, suite, skeyseed, rekey.nonce, nonce.data, now)
        self._outstanding = None
        self.delete(now)

    def _hand_over(
        self,
        new: IkeSa,
        suite: IkeSuite,
        skeyseed: bytes,
        nonce_i: bytes,
        nonce_r: bytes,
        now: float,
    ) -> None:
        """Make ``new`` the established successor of this SA (either side of a rekey)."""
        new.suite = suite
        new.nonce_i, new.nonce_r = nonce_i, nonce_r
        new.keys = crypto.derive_ike_keys_from_skeyseed(
            suite.prf_transform,
            suite.encryption_transform,
            suite.integrity_transform,
            skeyseed=skeyseed,
            nonce_i=nonce_i,
            nonce_r=nonce_r,
            spi_i=new.spi_i,
            spi_r=new.spi_r,
        )
        new._cipher_out = new.keys.cipher(new.initiator)
        new._cipher_in = new.keys.cipher(not new.initiator)
        new.peer_id = self.peer_id
        new.peer_behind_nat, new.local_behind_nat = self.peer_behind_nat, self.local_behind_nat
        new.client, new.redirect_supported = self.client, self.redirect_supported
        new.redirect_times = self.redirect_times
        new.state = State.ESTABLISHED
        new._start_life(now)
        new.children, self.children = self.children, {}
        new._children_by_outbound, self._children_by_outbound = self._children_by_outbound, {}
        self.rekeyed_to = new
        self.host.adopt(new)
        self.log.info(
            "IKE SA {old_i}/{old_r} rekeyed to {new_i}/{new_r} ({suite})",
            old_i=self.spi_i.hex(),
            old_r=self.spi_r.hex(),
            new_i=new.spi_i.hex(),
            new_r=new.spi_r.hex(),
            suite=str(suite),
        )
        self.host.emit(
            IkeSaRekeyed(
                self.spi_i,
                self.spi_r,
                new.spi_i,
                new.spi_r,
                self.peer_address,
                suite,
                by_peer=not new.initiator,
            )
        )

    def check_liveness(self, now: float) -> None:
        """Send an empty INFORMATIONAL request (a liveness check, RFC 7296 section 2.4)."""
        if self.state == State.ESTABLISHED:
            self._request("liveness", ExchangeType.INFORMATIONAL, (), now)

    def delete(self, now: float) -> None:
        """Delete this IKE SA (and its CHILD_SAs) with an INFORMATIONAL exchange."""
        if self.state == State.ESTABLISHED:
            self._queue.clear()
            if self._outstanding is not None:
                # The window is one: abandon the outstanding request, deletion wins.
                self._outstanding = None
            self.state = State.DELETING
            message_id = self._next_message_id
            self._next_message_id += 1
            data = self._seal(
                ExchangeType.INFORMATIONAL, message_id, False, [DeletePayload.ike_sa()]
            )
            self._send_request("delete", ExchangeType.INFORMATIONAL, message_id, data, now)
        elif self.state != State.CLOSED:
            self._fail("aborted", None)

    def delete_child(self, inbound_spi: bytes, now: float) -> bool:
        """Delete one CHILD_SA (by the SPI we chose); False when there is no such SA."""
        child = self.children.pop(inbound_spi, None)
        if child is None or self.state != State.ESTABLISHED:
            return False
        self._children_by_outbound.pop(child.outbound_spi, None)
        self.host.installer.remove(child)
        self.host.emit(ChildSaDeleted(child, by_peer=False))
        self._request(
            "delete child",
            ExchangeType.INFORMATIONAL,
            (DeletePayload.child_sas(ProtocolId.ESP, (inbound_spi,)),),
            now,
        )
        return True

    # --- receiving ----------------------------------------------------------------------

    def receive(self, message: IkeMessage, raw: bytes, now: float) -> None:
        """Process a message the endpoint routed to this SA."""
        if self.state == State.CLOSED:
            return
        if message.initiator == self.initiator:
            self.log.debug(
                "dropping a message with our own I flag from {peer}", peer=self.peer_address
            )
            return
        if message.response:
            self._receive_response(message, raw, now)
        else:
            self._receive_request(message, raw, now)
        self.host.reschedule(self)

    def _receive_response(self, message: IkeMessage, raw: bytes, now: float) -> None:
        request = self._outstanding
        if (
            request is None
            or message.message_id != request.message_id
            or message.exchange_type != request.exchange
        ):
            self.log.debug(
                "dropping unexpected response {mid} from {peer}",
                mid=message.message_id,
                peer=self.peer_address,
            )
            return
        if message.exchange_type == ExchangeType.IKE_SA_INIT:
            self.last_heard = now
            self._init_response(message, raw, now)
            return
        payloads = self._open(message, raw, request=False)
        if payloads is None:
            return
        self.last_heard = now
        if request.kind == "IKE_AUTH":
            self._auth_response(payloads, now)
        elif request.kind == "delete":
            reason = "rekeyed" if self.rekeyed_to is not None else "deleted"
            self._close(
                IkeSaDeleted(self.spi_i, self.spi_r, self.initiator, self.peer_address, reason)
            )
        elif request.kind == "rekey":
            self._rekey_response(payloads, now)
        else:
            if request.kind == "liveness":
                self.host.emit(
                    LivenessConfirmed(self.spi_i, self.spi_r, now - request.first_sent_at)
                )
            self._request_done(now)

    def _receive_request(self, message: IkeMessage, raw: bytes, now: float) -> None:
        message_id = message.message_id
        if message_id == self._peer_next_message_id - 1 and self._last_response:
            if raw == self._last_request:
                self.host.send(self._last_response, self.peer_address)
            return
        if message_id != self._peer_next_message_id:
            self.log.debug(
                "dropping request {mid} from {peer}, expected {expected}",
                mid=message_id,
                peer=self.peer_address,
                expected=self._peer_next_message_id,
            )
            return
        exchange = message.exchange_type
        if exchange == ExchangeType.IKE_SA_INIT:
            return  # retransmissions are answered by the endpoint; others are late duplicates
        if self.state == State.INIT_DONE and exchange != ExchangeType.IKE_AUTH:
            return
        if self.state in (State.INIT_SENT, State.AUTH_SENT):
            return
        payloads = self._open(message, raw, request=True)
        if payloads is None:
            return
        self.last_heard = now
        if exchange == ExchangeType.IKE_AUTH:
            if self.state == State.INIT_DONE:
                self._auth_request(message_id, payloads, raw, now)
        elif exchange == ExchangeType.INFORMATIONAL:
            self._informational_request(message_id, payloads, raw, now)
        elif exchange == ExchangeType.CREATE_CHILD_SA:
            self._create_child_sa_request(message_id, payloads, raw, now)
        else:
            self._respond(exchange, message_id, [NotifyPayload(NotifyType.INVALID_SYNTAX)], raw)

    def _create_child_sa_request(
        self, message_id: int, payloads: tuple[Payload, ...], raw: bytes, now: float
    ) -> None:
        """Responder of CREATE_CHILD_SA: a new or rekeyed CHILD_SA, or a rekeyed IKE SA."""
        exchange = ExchangeType.CREATE_CHILD_SA

        def refuse(notify_type: int, reason: str, data: bytes = b"") -> None:
            self.log.info(
                "CREATE_CHILD_SA from {peer} refused: {reason}",
                peer=self.peer_address,
                reason=reason,
            )
            self._respond(exchange, message_id, [NotifyPayload(notify_type, data)], raw)

        sa = _find(payloads, SecurityAssociationPayload)
        nonce = _find(payloads, NoncePayload)
        ke = _find(payloads, KeyExchangePayload)
        if self.state != State.ESTABLISHED:
            refuse(NotifyType.TEMPORARY_FAILURE, "IKE SA is being deleted")
            return
        if sa is None or nonce is None or not 16 <= len(nonce.data) <= 256:
            refuse(NotifyType.INVALID_SYNTAX, "no SA or Ni")
            return
        nonce_r = os.urandom(self.config.nonce_length)
        if any(p.protocol_id == ProtocolId.IKE for p in sa.proposals):
            self._rekey_ike(message_id, sa, nonce.data, nonce_r, ke, raw, refuse)
            return
        rekey = next(
            (
                n
                for n in _notifies(payloads)
                if n.notify_type == NotifyType.REKEY_SA and n.protocol_id == ProtocolId.ESP
            ),
            None,
        )
        old: ChildSa | None = None
        if rekey is not None:
            old = self._children_by_outbound.get(rekey.spi)
            if old is None:
                refuse(NotifyType.CHILD_SA_NOT_FOUND, "rekey of an unknown CHILD_SA")
                return
        dh: tuple[int, bytes] | None = None
        our_ke: KeyExchangePayload | None = None
        if ke is not None:
            group = crypto.DH_GROUPS.get(ke.dh_group)
            if group is None:
                wanted = self.suite.dh if self.suite is not None else 0
                refuse(
                    NotifyType.INVALID_KE_PAYLOAD,
                    f"KE group {ke.dh_group}",
                    int(wanted).to_bytes(2, "big"),
                )
                return
            key = group.generate()
            try:
                dh = (ke.dh_group, key.shared_secret(ke.data))
            except crypto.InvalidPublicValueError as e:
                refuse(NotifyType.INVALID_SYNTAX, f"invalid KE data: {e}")
                return
            our_ke = KeyExchangePayload(ke.dh_group, key.public_value)
        outcome = self._negotiate_child(payloads, sa, (nonce.data, nonce_r), dh)
        if isinstance(outcome, _Refusal):
            refuse(outcome.notify_type, outcome.reason)
            self.host.emit(
                ChildSaFailed(self.spi_i, self.spi_r, outcome.reason, outcome.notify_type)
            )
            return
        child, answer = outcome
        sa_index = next(
            i for i, p in enumerate(answer) if isinstance(p, SecurityAssociationPayload)
        )
        extra: list[Payload] = [NoncePayload(nonce_r)]
        if our_ke is not None:
            extra.append(our_ke)
        answer[sa_index + 1 : sa_index + 1] = extra
        self._respond(exchange, message_id, answer, raw)
        self.log.info(
            "CHILD_SA {spi} {what} with {peer}",
            spi=child.inbound_spi.hex(),
            what="rekeyed" if old is not None else "added",
            peer=self.peer_address,
        )
        self._add_child(child)

    def _rekey_ike(
        self,
        message_id: int,
        sa: SecurityAssociationPayload,
        nonce_i: bytes,
        nonce_r: bytes,
        ke: KeyExchangePayload | None,
        raw: bytes,
        refuse: Callable[..., None],
    ) -> None:
        """Responder of an IKE SA rekey (RFC 7296 sections 1.3.2 and 2.18)."""
        assert self.keys is not None
        offered = [from_payload(p) for p in sa.proposals if len(p.spi) == 8]
        suites = self.config.ike_suites
        group_id = ke.dh_group if ke is not None else None
        selected = select_ike(offered, [s for s in suites if s.dh == group_id]) or select_ike(
            offered, suites
        )
        if selected is None:
            refuse(NotifyType.NO_PROPOSAL_CHOSEN, "no acceptable IKE proposal for the rekey")
            return
        chosen, suite = selected
        if ke is None or ke.dh_group != suite.dh:
            refuse(
                NotifyType.INVALID_KE_PAYLOAD,
                f"rekey KE group {group_id}",
                int(suite.dh).to_bytes(2, "big"),
            )
            return
        key = crypto.DH_GROUPS[suite.dh].generate()
        try:
            shared = key.shared_secret(ke.data)
        except crypto.InvalidPublicValueError as e:
            refuse(NotifyType.INVALID_SYNTAX, f"invalid KE data: {e}")
            return
        peer_spi = next(p.spi for p in offered if p.number == chosen.number)
        new = IkeSa(
            self.host,
            self.config,
            initiator=False,
            spi_i=peer_spi,
            spi_r=self.host.new_spi(),
            local_address=self.local_address,
            peer_address=self.peer_address,
            now=self.last_heard,
        )
        # SKEYSEED = prf(SK_d (old), g^ir (new) | Ni | Nr), with the old SA's PRF.
        skeyseed = self.keys.prf(self.keys.sk_d, shared + nonce_i + nonce_r)
        answer_proposal = OfferedProposal(
            chosen.number, chosen.protocol, new.spi_r, chosen.transforms
        )
        self._respond(
            ExchangeType.CREATE_CHILD_SA,
            message_id,
            [
                SecurityAssociationPayload((to_payload(answer_proposal),)),
                NoncePayload(nonce_r),
                KeyExchangePayload(suite.dh, key.public_value),
            ],
            raw,
        )
        self._hand_over(new, suite, skeyseed, nonce_i, nonce_r, self.last_heard)

    def _open(
        self, message: IkeMessage, raw: bytes, *, request: bool
    ) -> tuple[Payload, ...] | None:
        """The decrypted inner payloads, or None (dropped, or answered with an error)."""
        encrypted = message.encrypted
        if encrypted is not None and not self.initiator and not self._complete_keys():
            return None
        if encrypted is None or self._cipher_in is None:
            self.log.debug("dropping an unprotected message from {peer}", peer=self.peer_address)
            return None
        offset = len(raw) - len(encrypted.data) - 4
        try:
            plaintext = self._cipher_in.open(raw, offset)
        except crypto.CryptoError as e:
            self.log.info(
                "dropping message {mid} from {peer}: {error}",
                mid=message.message_id,
                peer=self.peer_address,
                error=str(e),
            )
            return None
        try:
            return decode_payload_chain(encrypted.first_payload_type, plaintext)
        except InvalidIkeMessage as e:
            self.log.info(
                "malformed protected message {mid} from {peer}: {error}",
                mid=message.message_id,
                peer=self.peer_address,
                error=e.reason,
            )
            if request:
                notify = NotifyPayload(e.notify_type, e.notify_data)
                self._respond(message.exchange_type, message.message_id, [notify], raw)
                if self.state == State.INIT_DONE:
                    self._fail(e.reason, e.notify_type)
            return None

    def _informational_request(
        self, message_id: int, payloads: tuple[Payload, ...], raw: bytes, now: float
    ) -> None:
        redirect = next(
            (n for n in _notifies(payloads) if n.notify_type == NotifyType.REDIRECT), None
        )
        if redirect is not None and self.state == State.ESTABLISHED:
            gateway = self._redirect_target(redirect, "INFORMATIONAL")
            self._respond(ExchangeType.INFORMATIONAL, message_id, [], raw)
            if gateway is not None:
                event = self._follow(gateway, "INFORMATIONAL", now)
                if event is not None:
                    self.host.emit(event)
            return
        answer: list[Payload] = []
        delete_ike = False
        for delete in (p for p in payloads if isinstance(p, DeletePayload)):
            if delete.protocol_id == ProtocolId.IKE:
                delete_ike = True
            elif delete.protocol_id in (ProtocolId.ESP, ProtocolId.AH):
                ours: list[bytes] = []
                for spi in delete.spis:
                    child = self._children_by_outbound.pop(spi, None)
                    if child is None:
                        continue
                    self.children.pop(child.inbound_spi, None)
                    self.host.installer.remove(child)
                    self.host.emit(ChildSaDeleted(child, by_peer=True))
                    ours.append(child.inbound_spi)
                if ours:
                    answer.append(DeletePayload.child_sas(delete.protocol_id, tuple(ours)))
        if delete_ike:
            self._respond(ExchangeType.INFORMATIONAL, message_id, [], raw)
            self.log.info(
                "IKE SA {spi_i}/{spi_r} deleted by {peer}",
                spi_i=self.spi_i.hex(),
                spi_r=self.spi_r.hex(),
                peer=self.peer_address,
            )
            reason = "rekeyed" if self.rekeyed_to is not None else "deleted by peer"
            self._close(
                IkeSaDeleted(self.spi_i, self.spi_r, self.initiator, self.peer_address, reason)
            )
            return
        self._respond(ExchangeType.INFORMATIONAL, message_id, answer, raw)


def _find(payloads: Sequence[Payload], kind: type[_P]) -> _P | None:
    for payload in payloads:
        if isinstance(payload, kind):
            return payload
    return None


def _notifies(payloads: Sequence[Payload]) -> list[NotifyPayload]:
    return [p for p in payloads if isinstance(p, NotifyPayload)]


def _has_notify(payloads: Sequence[Payload], notify_type: int) -> bool:
    return any(n.notify_type == notify_type for n in _notifies(payloads))


def _notify_name(notify_type: int) -> str:
    try:
        return NotifyType(notify_type).name
    except ValueError:
        return str(notify_type)
