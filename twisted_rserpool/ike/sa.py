"""One IKE SA for both roles, without I/O: what its exchanges share, its life cycle and
timers, and the sending of its messages.

An ``IkeSa`` is driven by its ``IkeEndpoint`` (``twisted_rserpool.ike.endpoint``, the
``IkeSaHost`` of ``twisted_rserpool.ike.host``), which routes decoded messages to it by
SPI, frames and sends the bytes it produces, collects its events and runs its timer. The
SA holds what its exchanges share: SPIs, nonces, keys, the CHILD_SAs, the life cycle
(``twisted_rserpool.ike.state``: the transition table and which requests each state
accepts) and the request window (``twisted_rserpool.ike.window``: Message IDs,
retransmission, the queue and the response cache). The exchanges themselves are tasks
(``twisted_rserpool.ike.tasks``), one per exchange, as strongSwan's task manager has them:
a request of ours is a ``Task`` that builds it when the window has room and processes the
answer; a request of the peer goes to the responder of its exchange. Its ``inbound``
(``twisted_rserpool.ike.inbound``) decides what each message of the peer is and where it
goes.

Fragmentation (RFC 7383, ``twisted_rserpool.ike.fragments``): once both sides announced
it, a protected message of ours too large for the threshold goes out as IKE Fragment
messages (sent and resent together, cached together as a response); the peer's are
reassembled per direction by the inbound side, each verified before it is stored, and the
message they make is processed only when complete, as if it had come whole.

A rekey of the IKE SA (either side starting it) creates a successor ``IkeSa`` in
ESTABLISHED that takes the CHILD_SAs; the old one goes to DELETING and CLOSED.

Redirects (RFC 5685), client side: an N(REDIRECT) in the IKE_SA_INIT response (its Nonce
Data must equal our Ni, else it is ignored as spoofed) closes the SA (event
``IkeSaRedirected``); in the IKE_AUTH response (after the gateway's AUTH is verified, no
nonce allowed) the SA is deleted at once; in an INFORMATIONAL request of an ESTABLISHED SA
(no nonce allowed) we answer, start the new SA, and delete this one once the new one is
established. Gateway side: the IKE_SA_INIT redirect is stateless (in the endpoint); an
IKE_AUTH redirect answers IDr, AUTH and N(REDIRECT) without a CHILD_SA, and an
INFORMATIONAL redirect is a request of ours; both delete the SA after
``redirect_delete_timeout`` unless the client does first.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv6Address

from twisted.logger import Logger

from twisted_rserpool.ike import crypto
from twisted_rserpool.ike.child import ChildSa
from twisted_rserpool.ike.codec import (
    GatewayIdentity,
    IkeHeader,
    IkeMessage,
    Payload,
    encode_payload_chain,
)
from twisted_rserpool.ike.config import Identity, IkeConfig
from twisted_rserpool.ike.constants import (
    IKE_HEADER_SIZE,
    NAT_T_PORT,
    HeaderFlag,
    NotifyType,
    PayloadType,
    ProtocolId,
)
from twisted_rserpool.ike.events import (
    ChildSaDeleted,
    ChildSaEstablished,
    IkeEvent,
    IkeSaDeleted,
    IkeSaEstablished,
    IkeSaFailed,
    IkeSaRekeyed,
)
from twisted_rserpool.ike.fragments import (
    chunk_size,
    datagram_limit,
    datagram_overhead,
    fragment_message,
)
from twisted_rserpool.ike.host import Address, IkeSaHost
from twisted_rserpool.ike.inbound import Inbound
from twisted_rserpool.ike.proposals import IkeSuite, OfferedProposal
from twisted_rserpool.ike.state import State, StateEvent, StateMachine
from twisted_rserpool.ike.tasks import Task
from twisted_rserpool.ike.tasks.common import from_payload, to_payload
from twisted_rserpool.ike.tasks.ike_auth import IkeAuthResponder
from twisted_rserpool.ike.tasks.ike_init import DeferredKeys, IkeSaInit, accept_init
from twisted_rserpool.ike.tasks.informational import DeleteChild, DeleteIke, Liveness
from twisted_rserpool.ike.tasks.redirect import redirect_client
from twisted_rserpool.ike.tasks.rekey import ChildRekey, IkeRekey
from twisted_rserpool.ike.timers import SaTimers
from twisted_rserpool.ike.window import RequestWindow

__all__ = [
    "Address",
    "IkeSa",
    "IkeSaHost",
    "State",
    "Succession",
    "from_payload",
    "to_payload",
]


@dataclass
class Succession:
    """What an IKE SA made by a rekey takes over from its predecessor (RFC 7296 2.18)."""

    suite: IkeSuite
    keys: crypto.IkeKeys
    nonces: tuple[bytes, bytes]
    peer_id: Identity | None
    nat: tuple[bool, bool]
    client: bool
    redirect_supported: bool
    redirect_times: tuple[float, ...]
    children: list[ChildSa] = field(default_factory=list)
    peer_auth_verified: str | None = None
    virtual_ips: tuple[IPv4Address | IPv6Address, ...] = ()
    dns_servers: tuple[IPv4Address | IPv6Address, ...] = ()
    lease_owner: Hashable | None = None


class IkeSa:
    """The state of one IKE SA and the dispatch of its exchanges (use IkeEndpoint to drive it)."""

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
        succession: Succession | None = None,
    ) -> None:
        self.host = host
        self.config = config
        self.initiator = initiator
        self.spi_i = spi_i
        self.spi_r = spi_r
        self.local_address = local_address
        self.peer_address = peer_address
        self.created = now
        self.last_heard = now
        self.suite: IkeSuite | None = None
        self.keys: crypto.IkeKeys | None = None
        self.cipher_out: crypto.SkCipher | None = None
        """Protects our messages (None until the keys are known)."""
        self.cipher_in: crypto.SkCipher | None = None
        """Opens the peer's messages (None until the keys are known)."""
        self.nonce_i = b""
        self.nonce_r = b""
        self.init_request = b""
        self.init_response = b""
        self.peer_id: Identity | None = None
        self.peer_auth_verified: str | None = None
        """How the peer's AUTH was verified (``"PSK"``); None until it is."""
        self.peer_childless = False
        self.peer_signature_hashes: frozenset[int] | None = None
        """What the peer announced in SIGNATURE_HASH_ALGORITHMS (RFC 7427); None: nothing."""
        self.peer_certreq = False
        """Whether the peer sent a CERTREQ for X.509 certificates (we then send CERT)."""
        self.peer_behind_nat = False
        self.local_behind_nat = False
        self.peer_nat_t_port = NAT_T_PORT
        """The peer's NAT traversal port an initiator floats to (RFC 7296 section 2.23)."""
        self.keepalive_due: float | None = None
        """When our next NAT-keepalive goes out (only while we are behind a NAT)."""
        self.children: dict[bytes, ChildSa] = {}
        """Our CHILD_SAs by the SPI we chose (inbound)."""
        self._by_outbound: dict[bytes, ChildSa] = {}
        self.window: RequestWindow[Task] = RequestWindow(
            timeout=config.retransmit_timeout, tries=config.retransmit_tries
        )
        self.half_open_deadline = now + config.half_open_timeout
        self.rekeyed_to: IkeSa | None = None
        self.timers = SaTimers(self)
        """The SA's deadlines (``twisted_rserpool.ike.timers``)."""
        self._deferred_keys: DeferredKeys | None = None
        self.client = initiator
        self.redirected_from: IPv4Address | IPv6Address | None = None
        self.redirect_times: tuple[float, ...] = ()
        self.replaces: IkeSa | None = None
        self.redirect_supported = False
        self.redirect_delete_at: float | None = None
        self.fragmentation = False
        """Both sides announced IKE fragmentation (RFC 7383) in IKE_SA_INIT."""
        self.inbound = Inbound(self, config.fragment_limits)
        """What the SA does with the peer's messages (``twisted_rserpool.ike.inbound``)."""
        self.virtual_ips: tuple[IPv4Address | IPv6Address, ...] = ()
        """The client's virtual IPs (RFC 7296 2.19): leased by us as a gateway from
        ``config.address_pool``, or assigned to us as a client in the CFG_REPLY."""
        self.dns_servers: tuple[IPv4Address | IPv6Address, ...] = ()
        """The DNS servers a gateway's CFG_REPLY named (client side)."""
        self.lease_owner: Hashable | None = None
        """Gateway: the client identity its address leases belong to, once it asked."""
        if succession is None:
            self._machine = StateMachine(State.INIT_SENT if initiator else State.INIT_DONE)
            return
        self._machine = StateMachine(State.ESTABLISHED)
        self.suite = succession.suite
        self.nonce_i, self.nonce_r = succession.nonces
        self._use_keys(succession.keys)
        self.peer_id = succession.peer_id
        self.peer_auth_verified = succession.peer_auth_verified
        self.peer_behind_nat, self.local_behind_nat = succession.nat
        self.client = succession.client
        self.redirect_supported = succession.redirect_supported
        self.redirect_times = succession.redirect_times
        self.virtual_ips, self.dns_servers = succession.virtual_ips, succession.dns_servers
        self.lease_owner = succession.lease_owner
        for child in succession.children:
            self.children[child.inbound_spi] = child
            self._by_outbound[child.outbound_spi] = child
        self.timers.start_life(now)

    # --- identity, state and timers -----------------------------------------------------

    @property
    def state(self) -> State:
        """Where the SA is in its life (``twisted_rserpool.ike.state``)."""
        return self._machine.state

    @property
    def local_spi(self) -> bytes:
        """The SPI we chose (the key of the endpoint's SA table)."""
        return self.spi_i if self.initiator else self.spi_r

    @property
    def established(self) -> bool:
        """Whether IKE_AUTH completed and the SA is not closed."""
        return self.state in (State.ESTABLISHED, State.DELETING)

    @property
    def fragment_verdicts(self) -> Counter[str]:
        """What became of the peer's IKE Fragment messages, by ``Verdict`` value."""
        return self.inbound.fragment_verdicts

    def transition(self, event: StateEvent) -> None:
        """Move the state machine (for the tasks); raises IkeStateError if illegal."""
        before = self._machine.state
        self._machine.process(event)
        if before == State.INIT_DONE:
            self.host.half_open_finished(self)

    def next_deadline(self) -> float | None:
        """When ``on_timer`` must next run, or None (``twisted_rserpool.ike.timers``)."""
        return self.timers.next_deadline()

    def on_timer(self, now: float) -> None:
        """Do whatever is due at ``now``: retransmit, give up, time out a half-open SA,
        check liveness, rekey, delete a redirected client's SA, send a NAT-keepalive."""
        self.timers.on_timer(now)

    # --- sending ------------------------------------------------------------------------

    def _header(self, exchange: int, message_id: int, response: bool) -> bytes:
        flags = (HeaderFlag.INITIATOR if self.initiator else 0) | (
            HeaderFlag.RESPONSE if response else 0
        )
        return IkeHeader(
            self.spi_i, self.spi_r, PayloadType.SK, 2, 0, exchange, flags, message_id, 0
        ).encode()

    def seal(
        self, exchange: int, message_id: int, response: bool, payloads: Sequence[Payload]
    ) -> bytes:
        """A whole protected message of ours (IV from ``config.random``)."""
        cipher = self.cipher_out
        assert cipher is not None
        first, chain = encode_payload_chain(list(payloads))
        iv = self.config.random(cipher.encryption.iv_length)
        return cipher.seal(self._header(exchange, message_id, response), first, chain, iv)

    def respond(
        self, exchange: int, message_id: int, payloads: Sequence[Payload], request: bytes
    ) -> None:
        """Answer the peer's request ``message_id`` (cached for its retransmissions)."""
        data = self.seal(exchange, message_id, True, payloads)
        fragments = self.fragment(data, payloads)
        self.window.answered(message_id, request, data, fragments)
        for datagram in fragments or (data,):
            self.transmit(datagram, self.inbound.reply_to)

    def transmit(self, datagram: bytes, to: tuple[Address, int] | None = None) -> None:
        """Send one datagram on the SA's path (``peer_address`` from our local port), or to
        ``to`` (address, our port): where the request being answered came from."""
        address, port = to if to is not None else (self.peer_address, self.local_address[1])
        self.host.send(datagram, address, port)

    def fragment(self, data: bytes, payloads: Sequence[Payload]) -> tuple[bytes, ...]:
        """The IKE Fragment messages to send instead of our protected message ``data``
        (whose inner payloads are ``payloads``), or () to send it whole.

        It goes whole unless both sides announced fragmentation and its IP datagram would
        exceed the threshold (``config.fragment_size``, else RFC 7383 2.5.1's default).
        """
        cipher = self.cipher_out
        if not self.fragmentation or cipher is None or data[16] != PayloadType.SK:
            return ()
        ipv6 = ":" in self.peer_address[0]
        limit = datagram_limit(self.config.fragment_size, ipv6)
        if len(data) + datagram_overhead(ipv6) <= limit:
            return ()
        first, chain = encode_payload_chain(list(payloads))
        fragments = fragment_message(
            cipher,
            data[:IKE_HEADER_SIZE],
            first,
            chain,
            chunk_size(cipher, limit, ipv6),
            self.config.random,
        )
        self.log.info(
            "sending message {mid} to {peer} as {count} IKE fragments",
            mid=int.from_bytes(data[20:24], "big"),
            peer=self.peer_address,
            count=len(fragments),
        )
        return fragments

    def queue(self, task: Task, now: float) -> None:
        """Start the exchange ``task`` now, or when the requests before it are answered."""
        self.window.queue(task)
        self.send_queued(now)

    def send_queued(self, now: float) -> None:
        """Send waiting requests while the window has room and the state allows them."""
        while True:
            task = self.window.next_queued(lambda t: self._machine.may_request(t.exchange))
            if task is None:
                return
            self.send_request(task, now)

    def send_request(self, task: Task, now: float, message_id: int | None = None) -> None:
        """Build, protect and send ``task``'s request (for the tasks).

        It takes the next Message ID unless ``message_id`` is given (IKE_SA_INIT sent again
        after a COOKIE or INVALID_KE_PAYLOAD keeps 0). A task that cancels itself (``build``
        returns None) uses no Message ID.
        """
        payloads = task.build(now)
        if payloads is None:
            return
        if message_id is None:
            message_id = self.window.allocate()
        data = task.encode(message_id, payloads)
        fragments = self.fragment(data, payloads)
        self.window.sent(message_id, task.exchange, data, task, now, fragments)
        for datagram in fragments or (data,):
            self.transmit(datagram)
        self.host.reschedule(self)

    # --- life cycle ---------------------------------------------------------------------

    def deleted_event(self, reason: str) -> IkeSaDeleted:
        """The IkeSaDeleted event of this SA with ``reason``."""
        return IkeSaDeleted(self.spi_i, self.spi_r, self.initiator, self.peer_address, reason)

    def close(self, how: StateEvent, event: IkeEvent | None) -> None:
        """End the SA (``how`` is DELETED, FAILED or REDIRECTED) and report ``event``."""
        if self.state == State.CLOSED:
            return
        self.transition(how)
        self.window.abandon()
        for child in list(self.children.values()):
            self.host.installer.remove(child)
        self.children.clear()
        self._by_outbound.clear()
        self._release_addresses()
        if event is not None:
            self.host.emit(event)
        self.host.closed(self)

    def _release_addresses(self) -> None:
        """Give the virtual IPs this SA holds back to the pool (kept by other SAs of the
        same identity, or by the successor of a rekey)."""
        pool = self.config.address_pool
        if pool is None:
            return
        for address in pool.release(self):
            self.log.info(
                "virtual IP {address} of {peer_id} released",
                address=str(address),
                peer_id=str(self.peer_id),
            )

    def fail(self, reason: str, notify_type: int | None) -> None:
        """The SA failed before it was established (or while deleting it): close it."""
        self.log.info(
            "IKE SA {spi_i}/{spi_r} with {peer} failed: {reason}",
            spi_i=self.spi_i.hex(),
            spi_r=self.spi_r.hex(),
            peer=self.peer_address,
            reason=reason,
        )
        self.close(
            StateEvent.FAILED,
            IkeSaFailed(
                self.spi_i, self.spi_r, self.initiator, self.peer_address, reason, notify_type
            ),
        )

    def authentication(self) -> str | None:
        """The peer's verified authentication and the IKE suite (``"PSK, <suite>"``), or None."""
        if self.peer_auth_verified is None or self.suite is None:
            return None
        return f"{self.peer_auth_verified}, {self.suite}"

    def establish(self) -> None:
        """IKE_AUTH completed: the SA is ESTABLISHED (and one it replaces is deleted)."""
        assert self.suite is not None and self.peer_id is not None
        self.transition(StateEvent.AUTHENTICATED)
        self.inbound.auth_responder = None
        self.timers.start_life(self.last_heard)
        self.log.info(
            "IKE SA {spi_i}/{spi_r} established with {peer_id} at {peer}, verified by "
            "{authentication} ({suite})",
            spi_i=self.spi_i.hex(),
            spi_r=self.spi_r.hex(),
            peer_id=str(self.peer_id),
            peer=self.peer_address,
            authentication=self.peer_auth_verified,
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
                self.authentication(),
                self.virtual_ips,
            )
        )
        old, self.replaces = self.replaces, None
        if old is not None and old.state == State.ESTABLISHED:
            old.delete(self.last_heard)
            self.host.reschedule(old)

    # --- key material -------------------------------------------------------------------

    def _use_keys(self, keys: crypto.IkeKeys) -> None:
        self.keys = keys
        self.cipher_out = keys.cipher(self.initiator)
        self.cipher_in = keys.cipher(not self.initiator)

    def derive(self, shared_secret: bytes) -> None:
        """Derive SKEYSEED and the SK_* keys from g^ir, the nonces and the SPIs."""
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
        self._use_keys(keys)

    def complete_keys(self) -> bool:
        """Responder: compute g^ir and the keys deferred by accept_init; False if invalid."""
        if self.cipher_in is not None:
            return True
        deferred = self._deferred_keys
        if deferred is None:
            return False
        try:
            shared = deferred.shared_secret()
        except crypto.InvalidPublicValueError as e:
            self.fail(f"initiator's KE data is invalid: {e}", NotifyType.INVALID_SYNTAX)
            return False
        self._deferred_keys = None
        self.derive(shared)
        return True

    # --- CHILD_SAs ----------------------------------------------------------------------

    def add_child(self, child: ChildSa) -> None:
        """Keep a negotiated CHILD_SA, hand it to the installer and report what it said.

        The CHILD_SA is kept whether or not a data plane now carries it: the peer believes
        in it, so its DELETE and rekeys must be answered.
        """
        installed = bool(self.host.installer.install(child))
        self.children[child.inbound_spi] = child
        self._by_outbound[child.outbound_spi] = child
        self.host.emit(ChildSaEstablished(child, installed))

    def child_by_outbound(self, spi: bytes) -> ChildSa | None:
        """Our CHILD_SA whose peer chose ``spi``, or None."""
        return self._by_outbound.get(spi)

    def remove_child(self, child: ChildSa) -> None:
        """Forget and uninstall a CHILD_SA."""
        self.children.pop(child.inbound_spi, None)
        self._by_outbound.pop(child.outbound_spi, None)
        self.host.installer.remove(child)

    # --- what the endpoint asks for -------------------------------------------------------

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
        response, deferred = accept_init(self, request, raw, suite, chosen, peer_public_value)
        self._deferred_keys = deferred
        self.inbound.auth_responder = IkeAuthResponder(self)
        self.window.answered(0, raw, response)
        return response

    def start(self, now: float, dh_group: int | None = None) -> None:
        """Initiator: send the IKE_SA_INIT request (``dh_group``: the KE group to try)."""
        self.send_request(IkeSaInit(self, dh_group), now)

    def redirect(self, gateway: GatewayIdentity, reason: str, now: float) -> bool:
        """Gateway: move the client elsewhere with a protected INFORMATIONAL N(REDIRECT).

        The request is retransmitted until answered; the SA is deleted after
        ``redirect_delete_timeout`` unless the client deletes it first. False when the SA is
        not established, the client never offered to be redirected, or it is being redirected.
        """
        done = redirect_client(self, gateway, reason, now)
        if done:
            self.host.reschedule(self)
        return done

    def rekey(self, now: float, dh_group: int | None = None) -> bool:
        """Start rekeying this IKE SA (CREATE_CHILD_SA with a new SPI, Ni and KEi).

        False when it cannot start: not established, or already rekeying or rekeyed. On
        success the new SA takes the CHILD_SAs (event ``IkeSaRekeyed``) and this one is
        deleted (``IkeSaDeleted`` with reason ``"rekeyed"``).
        """
        if (
            self.state != State.ESTABLISHED
            or self.rekeyed_to is not None
            or any(isinstance(task, IkeRekey) for task in self.window)
        ):
            return False
        self.log.info(
            "rekeying IKE SA {spi_i}/{spi_r} with {peer}",
            spi_i=self.spi_i.hex(),
            spi_r=self.spi_r.hex(),
            peer=self.peer_address,
        )
        self.queue(IkeRekey(self, dh_group), now)
        return True

    def rekey_child(self, inbound_spi: bytes, now: float) -> bool:
        """Rekey one CHILD_SA (by the SPI we chose): a new one replaces it, then it is deleted.

        False when there is no such CHILD_SA or the IKE SA is not established. The new
        CHILD_SA is reported as ``ChildSaEstablished``, the old one's end as
        ``ChildSaDeleted``; a refusal as ``ChildSaFailed`` (the old one stays).
        """
        child = self.children.get(inbound_spi)
        if child is None or self.state != State.ESTABLISHED:
            return False
        self.queue(ChildRekey(self, child), now)
        return True

    def rekey_failed(self, now: float) -> None:
        """Our rekey was refused: try again after a while when rekeying on a schedule."""
        self.timers.rekey_failed(now)

    def successor(
        self,
        *,
        initiator: bool,
        spi_i: bytes,
        spi_r: bytes,
        suite: IkeSuite,
        skeyseed: bytes,
        nonces: tuple[bytes, bytes],
        now: float,
    ) -> IkeSa:
        """The established SA that replaces this one after a rekey; it takes the CHILD_SAs."""
        nonce_i, nonce_r = nonces
        keys = crypto.derive_ike_keys_from_skeyseed(
            suite.prf_transform,
            suite.encryption_transform,
            suite.integrity_transform,
            skeyseed=skeyseed,
            nonce_i=nonce_i,
            nonce_r=nonce_r,
            spi_i=spi_i,
            spi_r=spi_r,
        )
        children = list(self.children.values())
        self.children = {}
        self._by_outbound = {}
        new = IkeSa(
            self.host,
            self.config,
            initiator=initiator,
            spi_i=spi_i,
            spi_r=spi_r,
            local_address=self.local_address,
            peer_address=self.peer_address,
            now=now,
            succession=Succession(
                suite,
                keys,
                nonces,
                self.peer_id,
                (self.peer_behind_nat, self.local_behind_nat),
                self.client,
                self.redirect_supported,
                self.redirect_times,
                children,
                self.peer_auth_verified,
                self.virtual_ips,
                self.dns_servers,
                self.lease_owner,
            ),
        )
        if self.config.address_pool is not None:
            self.config.address_pool.transfer(self, new)  # the lease outlives the rekey
        new.fragmentation = self.fragmentation
        self.rekeyed_to = new
        self.host.adopt(new)
        self.host.emit(
            IkeSaRekeyed(
                self.spi_i,
                self.spi_r,
                new.spi_i,
                new.spi_r,
                self.peer_address,
                suite,
                by_peer=not initiator,
            )
        )
        return new

    def check_liveness(self, now: float) -> None:
        """Send an empty INFORMATIONAL request (a liveness check, RFC 7296 section 2.4)."""
        if self.state == State.ESTABLISHED:
            self.queue(Liveness(self), now)

    def delete(self, now: float) -> None:
        """Delete this IKE SA (and its CHILD_SAs) with an INFORMATIONAL exchange."""
        if self.state == State.ESTABLISHED:
            # Deletion wins over every request outstanding or waiting.
            self.window.abandon()
            self.transition(StateEvent.DELETE_SENT)
            self.queue(DeleteIke(self), now)
        elif self.state != State.CLOSED:
            self.fail("aborted", None)

    def delete_child(self, inbound_spi: bytes, now: float) -> bool:
        """Delete one CHILD_SA (by the SPI we chose); False when there is no such SA."""
        child = self.children.get(inbound_spi)
        if child is None or self.state != State.ESTABLISHED:
            return False
        self.remove_child(child)
        self.host.emit(ChildSaDeleted(child, by_peer=False))
        self.queue(DeleteChild(self, ProtocolId.ESP, (inbound_spi,)), now)
        return True

    # --- receiving ----------------------------------------------------------------------

    def receive(
        self,
        message: IkeMessage,
        raw: bytes,
        now: float,
        source: tuple[Address, int] | None = None,
    ) -> None:
        """Process a message the endpoint routed to this SA.

        ``source`` is where it came from: the peer's address and our local port (default:
        the SA's path). A new authenticated request from elsewhere moves the SA
        (``twisted_rserpool.ike.nat.follow``); every response goes where its request came from.
        """
        self.inbound.receive(message, raw, now, source)

    def open(self, message: IkeMessage, raw: bytes, *, request: bool) -> tuple[Payload, ...] | None:
        """The decrypted inner payloads, or None (dropped, or answered with an error)."""
        return self.inbound.open(message, raw, request=request)

    def peer_may_request(self, exchange: int) -> bool:
        """Whether the SA's state accepts a request of ``exchange`` from the peer."""
        return self._machine.peer_may_request(exchange)
