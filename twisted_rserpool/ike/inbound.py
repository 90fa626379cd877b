"""What one IKE SA does with the messages its endpoint routes to it, without I/O.

A response goes to the task that sent its request (``IkeSa.window`` matches it). A request
is new, a retransmission answered from the response cache, or dropped; a new one of an
exchange the SA's state accepts is opened and goes to the responder of its exchange:
IKE_AUTH to the ``IkeAuthResponder`` kept while the SA is half-open, INFORMATIONAL and
CREATE_CHILD_SA to ``twisted_rserpool.ike.tasks``. Opening verifies the SK payload's ICV
and decodes the inner payloads; a malformed request is answered with its error.

IKE Fragment messages (RFC 7383) are let in only once both sides announced fragmentation,
and only for what a whole message would be let in for; each is verified before it is kept
(``twisted_rserpool.ike.fragments.Reassembler``, one set per direction), and the message a
complete set makes is processed as if it had come whole. An authentic fragment 1 of the
request we answered last, cut anew by the peer, is answered again from the cache.
"""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING

from twisted_rserpool.ike import crypto, nat
from twisted_rserpool.ike.codec import (
    EncryptedFragmentPayload,
    EncryptedPayload,
    IkeMessage,
    NotifyPayload,
    Payload,
    decode_payload_chain,
)
from twisted_rserpool.ike.constants import ExchangeType, NotifyType
from twisted_rserpool.ike.errors import InvalidIkeMessage
from twisted_rserpool.ike.fragments import FragmentLimits, Reassembler, Verdict
from twisted_rserpool.ike.host import Address
from twisted_rserpool.ike.state import State
from twisted_rserpool.ike.tasks import create_child_sa, informational
from twisted_rserpool.ike.tasks.ike_auth import IkeAuthResponder
from twisted_rserpool.ike.window import PeerRequest

if TYPE_CHECKING:
    from twisted_rserpool.ike.sa import IkeSa

__all__ = ["Inbound"]


def _open_fragment(
    cipher: crypto.SkCipher, raw: bytes, fragment: EncryptedFragmentPayload
) -> bytes | None:
    """The decrypted contents of the IKE Fragment message ``raw``, or None if not authentic."""
    try:
        return cipher.open(raw, len(raw) - len(fragment.data) - 8, fragment=True)
    except crypto.CryptoError:
        return None


class Inbound:
    """The receiving side of one IKE SA (the SA's ``inbound``); it logs as the SA."""

    def __init__(self, sa: IkeSa, limits: FragmentLimits | None) -> None:
        self.sa = sa
        self.source: tuple[Address, int] | None = None
        """Where the message being processed came from: the peer's address, our port."""
        self.reply_to: tuple[Address, int] | None = None
        """Where our answer to the peer's request being processed goes."""
        self.auth_responder: IkeAuthResponder | None = None
        """Answers the peer's IKE_AUTH requests while a responder SA is half-open."""
        self.fragment_verdicts: Counter[str] = Counter()
        """What became of the peer's IKE Fragment messages, by ``Verdict`` value."""
        self.request_fragments = Reassembler(limits)
        self.response_fragments = Reassembler(limits)
        self._reassembled: tuple[IkeMessage, bytes] | None = None

    def next_deadline(self) -> float | None:
        """When an incomplete set of the peer's fragments expires, or None."""
        times = [
            expiry
            for expiry in (
                self.request_fragments.next_deadline(),
                self.response_fragments.next_deadline(),
            )
            if expiry is not None
        ]
        return min(times) if times else None

    def expire(self, now: float) -> None:
        """Discard the sets of fragments whose reassembly timed out by ``now``."""
        for reassembler in (self.request_fragments, self.response_fragments):
            if reassembler.expire(now):
                self.fragment_verdicts["timed out"] += 1
                self.sa.log.info(
                    "discarding incomplete IKE fragments from {peer}: reassembly timed out",
                    peer=self.sa.peer_address,
                )

    def receive(
        self,
        message: IkeMessage,
        raw: bytes,
        now: float,
        source: tuple[Address, int] | None = None,
    ) -> None:
        """Process a message the endpoint routed to the SA (see ``IkeSa.receive``)."""
        sa = self.sa
        if sa.state == State.CLOSED:
            return
        self.source = source
        if message.initiator == sa.initiator:
            sa.log.debug("dropping a message with our own I flag from {peer}", peer=sa.peer_address)
            return
        last = message.payloads[-1] if message.payloads else None
        if isinstance(last, EncryptedFragmentPayload):
            self._receive_fragment(message, last, raw, now)
        elif message.response:
            self._receive_response(message, raw, now)
        else:
            self._receive_request(message, raw, now)
        sa.host.reschedule(sa)

    def _admit_request(
        self,
        message: IkeMessage,
        raw: bytes,
        fragment: EncryptedFragmentPayload | None = None,
    ) -> bool:
        """Whether the peer's request (whole, or one of its IKE Fragment messages) is new
        and of an exchange the SA's state accepts; a retransmission is answered again."""
        sa = self.sa
        message_id = message.message_id
        verdict = sa.window.classify(message_id, raw)
        if verdict == PeerRequest.RETRANSMITTED or (
            fragment is not None and self._first_fragment_again(message, fragment, raw)
        ):
            # Answered where it came from; only a new request may move the SA. Of a
            # fragmented request, fragment 1 is answered (RFC 7383 2.6.1), the others ignored.
            for datagram in sa.window.cached_datagrams():
                sa.transmit(datagram, self.source)
            return False
        if verdict == PeerRequest.DROP:
            if fragment is None and message_id != sa.window.peer_next_message_id - 1:
                sa.log.debug(
                    "dropping request {mid} from {peer}, expected {expected}",
                    mid=message_id,
                    peer=sa.peer_address,
                    expected=sa.window.peer_next_message_id,
                )
            return False
        exchange = message.exchange_type
        if exchange == ExchangeType.IKE_SA_INIT:
            return False  # retransmissions are answered by the endpoint; others are late duplicates
        return sa.established or sa.peer_may_request(exchange)

    def _receive_fragment(
        self, message: IkeMessage, fragment: EncryptedFragmentPayload, raw: bytes, now: float
    ) -> None:
        """One IKE Fragment message (RFC 7383 2.6): kept once authentic; the message a
        complete set makes is processed as if it had come whole, never before."""
        sa = self.sa
        message_id = message.message_id
        if not sa.fragmentation:
            sa.log.debug(
                "dropping an IKE fragment from {peer}: fragmentation not negotiated",
                peer=sa.peer_address,
            )
            return
        if message.response:
            if sa.window.match(message_id, message.exchange_type) is None:
                return
            reassembler = self.response_fragments
        else:
            if not self._admit_request(message, raw, fragment):
                return
            reassembler = self.request_fragments
        if not sa.initiator and not sa.complete_keys():
            return
        cipher = sa.cipher_in
        if cipher is None:
            return
        outcome = reassembler.add(
            message_id, fragment, raw, lambda: _open_fragment(cipher, raw, fragment), now
        )
        self.fragment_verdicts[outcome.verdict.value] += 1
        if outcome.verdict in (Verdict.INVALID, Verdict.FORGED, Verdict.OVER_LIMIT):
            sa.log.info(
                "dropping IKE fragment of message {mid} from {peer}: {reason}",
                mid=message_id,
                peer=sa.peer_address,
                reason=outcome.reason,
            )
            if outcome.verdict == Verdict.OVER_LIMIT and sa.state == State.INIT_DONE:
                # RFC 7383 5: an attack or a broken sender; drop the half-open SA.
                sa.fail(outcome.reason, None)
            return
        if outcome.verdict == Verdict.DUPLICATE:
            return
        sa.last_heard = now
        whole = outcome.message
        if whole is None:
            return
        sa.log.info(
            "reassembled message {mid} from {peer} out of {count} IKE fragments ({size} octets)",
            mid=message_id,
            peer=sa.peer_address,
            count=whole.fragments,
            size=len(whole.plaintext),
        )
        rebuilt = IkeMessage(
            message.spi_i,
            message.spi_r,
            message.exchange_type,
            message_id,
            (EncryptedPayload(whole.first_payload_type, b""),),
            message.initiator,
            message.response,
            message.higher_version,
            message.minor_version,
        )
        self._reassembled = (rebuilt, whole.plaintext)
        try:
            if message.response:
                self._receive_response(rebuilt, whole.first_fragment, now)
            else:
                self._receive_request(rebuilt, whole.first_fragment, now)
        finally:
            self._reassembled = None

    def _first_fragment_again(
        self, message: IkeMessage, fragment: EncryptedFragmentPayload, raw: bytes
    ) -> bool:
        """Whether ``raw`` is an authentic fragment 1 of the request we answered last, cut
        anew by the peer (RFC 7383 2.5.2), so not the octets we cached: answer it again."""
        cipher = self.sa.cipher_in
        if (
            fragment.fragment_number != 1
            or cipher is None
            or message.exchange_type == ExchangeType.IKE_SA_INIT
            or message.message_id != self.sa.window.peer_next_message_id - 1
        ):
            return False
        return _open_fragment(cipher, raw, fragment) is not None

    def _receive_response(self, message: IkeMessage, raw: bytes, now: float) -> None:
        sa = self.sa
        request = sa.window.match(message.message_id, message.exchange_type)
        if request is None:
            sa.log.debug(
                "dropping unexpected response {mid} from {peer}",
                mid=message.message_id,
                peer=sa.peer_address,
            )
            return
        request.task.receive(message, raw, request, now)
        sa.send_queued(now)

    def _receive_request(self, message: IkeMessage, raw: bytes, now: float) -> None:
        sa = self.sa
        if not self._admit_request(message, raw):
            return
        message_id = message.message_id
        exchange = message.exchange_type
        payloads = self.open(message, raw, request=True)
        if payloads is None:
            return
        sa.last_heard = now
        self.reply_to = self.source
        if self.source is not None:
            nat.follow(sa, self.source[0], self.source[1], now)
        if exchange == ExchangeType.IKE_AUTH:
            if self.auth_responder is not None and sa.state == State.INIT_DONE:
                self.auth_responder.on_request(message_id, payloads, raw, now)
        elif not sa.peer_may_request(exchange):
            sa.respond(exchange, message_id, [NotifyPayload(NotifyType.INVALID_SYNTAX)], raw)
        elif exchange == ExchangeType.INFORMATIONAL:
            informational.respond(sa, message_id, payloads, raw, now)
        else:
            create_child_sa.respond(sa, message_id, payloads, raw)

    def open(self, message: IkeMessage, raw: bytes, *, request: bool) -> tuple[Payload, ...] | None:
        """The decrypted inner payloads, or None (dropped, or answered with an error)."""
        sa = self.sa
        encrypted = message.encrypted
        if encrypted is not None and not sa.initiator and not sa.complete_keys():
            return None
        cipher = sa.cipher_in
        if encrypted is None or cipher is None:
            sa.log.debug("dropping an unprotected message from {peer}", peer=sa.peer_address)
            return None
        reassembled = self._reassembled
        try:
            if reassembled is not None and reassembled[0] is message:
                plaintext = reassembled[1]  # each of its fragments was verified and opened
            else:
                plaintext = cipher.open(raw, len(raw) - len(encrypted.data) - 4)
        except crypto.CryptoError as e:
            sa.log.info(
                "dropping message {mid} from {peer}: {error}",
                mid=message.message_id,
                peer=sa.peer_address,
                error=str(e),
            )
            return None
        try:
            return decode_payload_chain(encrypted.first_payload_type, plaintext)
        except InvalidIkeMessage as e:
            sa.log.info(
                "malformed protected message {mid} from {peer}: {error}",
                mid=message.message_id,
                peer=sa.peer_address,
                error=e.reason,
            )
            if request:
                notify = NotifyPayload(e.notify_type, e.notify_data)
                sa.respond(message.exchange_type, message.message_id, [notify], raw)
                if sa.state == State.INIT_DONE:
                    sa.fail(e.reason, e.notify_type)
            return None
