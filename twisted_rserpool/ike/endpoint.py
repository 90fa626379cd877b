"""An IKEv2 endpoint without I/O: the IKE SAs on one UDP address, for both roles.

In the style of aioquic: feed it ``receive_datagram(data, address, now)``, send what
``datagrams_to_send()`` returns, call ``handle_timer(now)`` when ``next_deadline()`` says, and
act on the events both return. It owns the SA table (a dict keyed by our SPI), the
stateless checks made before any state or Diffie-Hellman work on an IKE_SA_INIT request
(syntax, SA limits, cookies, proposal and KE group), and one deadline queue for all SAs.

Redirects (RFC 5685): a gateway's ``redirect_policy`` is asked about every IKE_SA_INIT
request that carried N(REDIRECT_SUPPORTED) or N(REDIRECTED_FROM), after the cookie check
and before any state or Diffie-Hellman work; a redirect is the stateless answer
HDR(SPIi, 0), N(REDIRECT, gateway, Ni). ``redirect`` and ``redirect_all`` move established
clients with a protected INFORMATIONAL. As initiator, the endpoint starts the IKE SA with
the new gateway (carrying N(REDIRECTED_FROM)) when an SA of its own is redirected.
"""

from __future__ import annotations

import hmac
import ipaddress
from collections import Counter
from collections.abc import Callable, Iterator
from ipaddress import IPv4Address, IPv6Address

from twisted.logger import Logger

from twisted_rserpool.deadline import DeadlineQueue
from twisted_rserpool.ike import crypto
from twisted_rserpool.ike.child import IChildSAInstaller, RecordingChildSAInstaller
from twisted_rserpool.ike.codec import (
    GatewayIdentity,
    IkeHeader,
    IkeMessage,
    KeyExchangePayload,
    NoncePayload,
    NotifyPayload,
    SecurityAssociationPayload,
    decode_header,
    decode_message,
    init_redirect_response,
    is_nat_keepalive,
    parse_redirected_from,
    scan_init_for_redirect,
)
from twisted_rserpool.ike.config import IkeConfig
from twisted_rserpool.ike.constants import (
    IKE_MAJOR_VERSION,
    IKE_PORT,
    NAT_KEEPALIVE,
    NAT_T_PORT,
    NON_ESP_MARKER,
    ExchangeType,
    NotifyType,
)
from twisted_rserpool.ike.errors import InvalidIkeMessage
from twisted_rserpool.ike.events import ClientRedirected, IkeEvent
from twisted_rserpool.ike.proposals import select_ike
from twisted_rserpool.ike.redirect import (
    IRedirectPolicy,
    RedirectDecision,
    RedirectPolicy,
    RedirectRequest,
    same_gateway,
)
from twisted_rserpool.ike.sa import Address, IkeSa, State, from_payload

__all__ = ["IkeEndpoint"]

_ZERO_SPI = bytes(8)


class IkeEndpoint:
    """The IKE SAs of one local UDP address (see the module docstring for the calls).

    ``local_address`` is the address and port the main socket is bound to; it feeds the
    NAT detection hashes (none are sent when the host is a wildcard). ``nat_t_port`` is our
    second UDP port for NAT traversal (4500; None: none): every IKE message on it carries the
    RFC 3948 non-ESP marker, a datagram on it without the marker is ESP (counted in
    ``counters["esp_dropped"]`` and dropped, unless ``esp_receiver`` takes it) and a single
    0xFF octet is a NAT-keepalive (ignored). On the main port, messages carry the marker only
    when neither port is 500. ``twisted_rserpool.ike.nat`` moves SAs between the ports.
    """

    log = Logger()

    def __init__(
        self,
        config: IkeConfig,
        local_address: Address,
        *,
        installer: IChildSAInstaller | None = None,
        cookie_secret: bytes | None = None,
        redirect_policy: IRedirectPolicy | None = None,
        nat_t_port: int | None = None,
    ) -> None:
        self.config = config
        self.local_address = local_address
        self.nat_t_port = nat_t_port
        self._arrival_port = local_address[1]
        self._init_keys: dict[bytes, tuple[bytes, Address]] = {}
        self.installer: IChildSAInstaller = (
            installer if installer is not None else RecordingChildSAInstaller()
        )
        self._sas: dict[bytes, IkeSa] = {}
        self._init_index: dict[tuple[bytes, Address], IkeSa] = {}
        self._half_open = 0
        # Every SA's next deadline, by our SPI (and the deadline, to skip no-op changes).
        self._timers: DeadlineQueue[bytes] = DeadlineQueue()
        self._scheduled: dict[bytes, float] = {}
        self._datagrams: list[tuple[bytes, Address, int]] = []
        self._events: list[IkeEvent] = []
        self._cookie_version = 1
        self._cookie_secrets = {1: cookie_secret or config.random(32)}
        self.counters: dict[str, int] = {
            "init_requests": 0,
            "cookies_sent": 0,
            "cookies_accepted": 0,
            "invalid_ke_sent": 0,
            "no_proposal_sent": 0,
            "dropped": 0,
            "redirected_from": 0,
            "redirected_from_refused": 0,
            "esp_dropped": 0,
            "esp_received": 0,
            "nat_keepalives": 0,
        }
        self.redirect_policy = redirect_policy
        self.redirects: Counter[str] = Counter()
        """Redirects we sent, by reason (``"load"``, ``"drain"``, ``"admin"``...)."""
        self.redirected_from: Counter[str] = Counter()
        """Clients that arrived with N(REDIRECTED_FROM), by the gateway they name."""
        self.esp_receiver: Callable[[bytes, Address, float], None] | None = None
        """Where ESP datagrams on the NAT-T port go (RFC 3948: the data plane), with their
        source address and ``now``; None: they are counted in ``esp_dropped`` and dropped."""
        self.on_wake: Callable[[], None] | None = None
        """Called when datagrams or events are queued outside ``receive_datagram`` and
        ``handle_timer`` (an asynchronous EAP back end answered); adapters flush then."""

    # --- the sans-IO surface ------------------------------------------------------------

    def receive_datagram(
        self, data: bytes, address: Address, now: float, local_port: int | None = None
    ) -> list[IkeEvent]:
        """Process one UDP datagram from ``address`` that arrived on our ``local_port``
        (default: the main port); returns the events it caused."""
        data = bytes(data)
        port = self.local_address[1] if local_port is None else local_port
        self._arrival_port = port
        if self._framed(address, port):
            if is_nat_keepalive(data):
                self.counters["nat_keepalives"] += 1
                return self._drain()
            if data[:4] != NON_ESP_MARKER:
                if self.esp_receiver is not None:
                    self.counters["esp_received"] += 1
                    self.esp_receiver(data, address, now)
                    return self._drain()
                self.counters["esp_dropped"] += 1
                self._drop("ESP packet (no ESP data plane here)", address)
                return self._drain()
            data = data[4:]
        try:
            header = decode_header(data)
        except InvalidIkeMessage as e:
            self._drop(e.reason, address)
            return self._drain()
        if header.major_version != IKE_MAJOR_VERSION:
            if header.exchange_type == ExchangeType.IKE_SA_INIT and not header.response:
                self._answer_init(header, address, NotifyType.INVALID_MAJOR_VERSION)
            self._drop(f"IKE major version {header.major_version}", address)
            return self._drain()
        if header.initiator:
            if header.spi_r == _ZERO_SPI:
                if header.exchange_type == ExchangeType.IKE_SA_INIT and not header.response:
                    self._init_request(data, header, address, now)
                else:
                    self._drop("zero responder SPI outside IKE_SA_INIT", address)
                return self._drain()
            sa = self._sas.get(header.spi_r)
        else:
            sa = self._sas.get(header.spi_i)
        if sa is None or sa.initiator == header.initiator:
            self._drop(f"no IKE SA for SPIs {header.spi_i.hex()}/{header.spi_r.hex()}", address)
            return self._drain()
        if header.response and sa.peer_address != address:
            # A request from elsewhere may be the peer's float or a NAT rebinding: the SA
            # moves only if it authenticates as new (nat.follow). Responses never move it.
            self._drop(f"IKE SA {sa.local_spi.hex()} belongs to {sa.peer_address}", address)
            return self._drain()
        try:
            message = decode_message(data)
        except InvalidIkeMessage as e:
            self._drop(e.reason, address)
            return self._drain()
        sa.receive(message, data, now, (address, port))
        return self._drain()

    def datagrams_to_send(self, local_port: int | None = None) -> list[tuple[bytes, Address]]:
        """The datagrams to send now from our ``local_port`` (default: from every port),
        framed for their ports, oldest first."""
        if local_port is None:
            datagrams, self._datagrams = self._datagrams, []
            return [(data, address) for data, address, _ in datagrams]
        chosen = [(d, a) for d, a, p in self._datagrams if p == local_port]
        self._datagrams = [item for item in self._datagrams if item[2] != local_port]
        return chosen

    def datagrams_by_port(self) -> list[tuple[bytes, Address, int]]:
        """The datagrams to send now with the local port each goes from, oldest first."""
        datagrams, self._datagrams = self._datagrams, []
        return datagrams

    def next_deadline(self) -> float | None:
        """When ``handle_timer`` must next be called, or None."""
        return self._timers.next_deadline()

    def handle_timer(self, now: float) -> list[IkeEvent]:
        """Run every timer due at ``now``; returns the events it caused."""
        # Also what the SAs' timers make due by ``now`` while they run.
        for spi in self._timers.pop_due(now):
            del self._scheduled[spi]
            sa = self._sas.get(spi)
            if sa is not None:
                sa.on_timer(now)
        return self._drain()

    # --- what a user asks for -----------------------------------------------------------

    def initiate(
        self,
        peer_address: Address,
        now: float,
        config: IkeConfig | None = None,
        *,
        redirected_from: IPv4Address | IPv6Address | None = None,
        redirect_times: tuple[float, ...] = (),
        replaces: bytes | None = None,
        peer_nat_t_port: int = NAT_T_PORT,
    ) -> bytes:
        """Start an IKE SA with ``peer_address``; returns its SPIi (our SPI).

        When IKE_SA_INIT detects a NAT the SA floats to the peer's ``peer_nat_t_port``
        (RFC 7296 section 2.23), from our ``nat_t_port``.

        After a redirect, ``redirected_from`` is the gateway that redirected us (sent in
        N(REDIRECTED_FROM)), ``redirect_times`` when the redirects of this chain happened
        (for the loop limit) and ``replaces`` our SPI of an established SA to delete once
        the new one is up.
        """
        sa = IkeSa(
            self,
            config or self.config,
            initiator=True,
            spi_i=self.new_spi(),
            spi_r=_ZERO_SPI,
            local_address=self.local_address,
            peer_address=peer_address,
            now=now,
        )
        sa.redirected_from = redirected_from
        sa.redirect_times = redirect_times
        sa.peer_nat_t_port = peer_nat_t_port
        if replaces is not None:
            sa.replaces = self._sas.get(replaces)
        self._sas[sa.spi_i] = sa
        sa.start(now)
        return sa.spi_i

    def follow_redirect(
        self, sa: IkeSa, gateway: GatewayIdentity, exchange: str, now: float
    ) -> tuple[bytes | None, str | None]:
        """Start an IKE SA with ``gateway`` after ``sa`` was redirected (see IkeSaHost)."""
        config = sa.config
        allowed = config.redirect_targets
        if allowed is not None and not any(same_gateway(gateway, a) for a in allowed):
            return None, f"{gateway} is not an allowed redirect target"
        times = tuple(t for t in sa.redirect_times if t > now - config.redirect_window)
        if len(times) >= config.max_redirects:
            return None, (
                f"more than {config.max_redirects} redirects within "
                f"{config.redirect_window:g} s (a redirect loop?)"
            )
        times += (now,)
        if isinstance(gateway, str):
            sa.redirect_times = times
            return None, None
        try:
            origin = ipaddress.ip_address(sa.peer_address[0])
        except ValueError:
            return None, f"the old gateway {sa.peer_address[0]} has no IP address"
        new_spi = self.initiate(
            (str(gateway), config.redirect_port),
            now,
            sa.config,
            redirected_from=origin,
            redirect_times=times,
            replaces=sa.local_spi if exchange == "INFORMATIONAL" else None,
        )
        return new_spi, None

    def redirect_decision(self, sa: IkeSa, exchange: str, now: float) -> RedirectDecision | None:
        """The policy's answer for an authenticated client (see IkeSaHost)."""
        if self.redirect_policy is None:
            return None
        decision = self.redirect_policy.decide(self._established_request(sa, exchange, now))
        if decision is not None:
            self.redirects[decision.reason] += 1
        return decision

    def _established_request(self, sa: IkeSa, exchange: str, now: float) -> RedirectRequest:
        """What the redirect policy is told about the client of ``sa`` (not counted)."""
        return RedirectRequest(
            exchange,
            sa.peer_address,
            self.local_address,
            len(self._sas) - 1,
            now,
            peer_id=str(sa.peer_id) if sa.peer_id is not None else None,
        )

    def redirect(
        self, spi: bytes, gateway: GatewayIdentity, now: float, reason: str = "admin"
    ) -> bool:
        """Move the client of the IKE SA ``spi`` to ``gateway`` (INFORMATIONAL redirect).

        False when the SA is not established or its client never offered to be redirected.
        """
        done = self._sa(spi).redirect(gateway, reason, now)
        if done:
            self.redirects[reason] += 1
        return done

    def redirect_all(
        self, gateway: GatewayIdentity | None, now: float, reason: str = "admin"
    ) -> int:
        """Move every redirectable client; to ``gateway``, or each to the policy's choice."""
        moved = 0
        for sa in list(self._sas.values()):
            if sa.client or sa.state != State.ESTABLISHED or not sa.redirect_supported:
                continue
            target = gateway
            if target is None and isinstance(self.redirect_policy, RedirectPolicy):
                # The policy's own choice (its choose_gateway hook), never this gateway.
                target = self.redirect_policy.choose_gateway(
                    self._established_request(sa, "INFORMATIONAL", now), [self.local_address[0]]
                )
            if target is not None and self.redirect(sa.local_spi, target, now, reason):
                moved += 1
        return moved

    def check_liveness(self, spi: bytes, now: float) -> None:
        """Send a liveness check on the IKE SA with our SPI ``spi``."""
        self._sa(spi).check_liveness(now)

    def delete_ike_sa(self, spi: bytes, now: float) -> None:
        """Delete the IKE SA with our SPI ``spi`` (INFORMATIONAL with Delete)."""
        self._sa(spi).delete(now)

    def rekey_ike_sa(self, spi: bytes, now: float) -> bool:
        """Rekey the IKE SA with our SPI ``spi``; False when it cannot start now."""
        return self._sa(spi).rekey(now)

    def rekey_child_sa(self, spi: bytes, inbound_spi: bytes, now: float) -> bool:
        """Rekey a CHILD_SA of the IKE SA ``spi`` by the ESP SPI we chose for it."""
        return self._sa(spi).rekey_child(inbound_spi, now)

    def delete_child_sa(self, spi: bytes, inbound_spi: bytes, now: float) -> bool:
        """Delete a CHILD_SA of the IKE SA ``spi`` by the ESP SPI we chose for it."""
        return self._sa(spi).delete_child(inbound_spi, now)

    def events(self) -> list[IkeEvent]:
        """Events caused by calls other than receive_datagram and handle_timer."""
        return self._drain()

    def get(self, spi: bytes) -> IkeSa | None:
        """The IKE SA with our SPI ``spi``, or None."""
        return self._sas.get(spi)

    def __iter__(self) -> Iterator[IkeSa]:
        return iter(list(self._sas.values()))

    def __len__(self) -> int:
        return len(self._sas)

    @property
    def half_open(self) -> int:
        """How many responder IKE SAs wait for IKE_AUTH."""
        return self._half_open

    def rotate_cookie_secret(self) -> None:
        """Start a new cookie secret; cookies made with the previous one stay valid."""
        self._cookie_version += 1
        self._cookie_secrets = {
            self._cookie_version: self.config.random(32),
            self._cookie_version - 1: self._cookie_secrets[self._cookie_version - 1],
        }

    # --- IkeSaHost ----------------------------------------------------------------------

    def send(self, data: bytes, address: Address, local_port: int | None = None) -> None:
        """Queue an IKE message for ``address`` from our ``local_port`` (default: the main
        port), with the non-ESP marker where needed."""
        port = self.local_address[1] if local_port is None else local_port
        if self._framed(address, port):
            data = NON_ESP_MARKER + data
        self._datagrams.append((data, address, port))

    def send_keepalive(self, address: Address, local_port: int) -> None:
        """Queue a NAT-keepalive (one 0xFF octet, RFC 3948 section 2.3) for ``address``."""
        self._datagrams.append((NAT_KEEPALIVE, address, local_port))

    def emit(self, event: IkeEvent) -> None:
        """Queue an event for the caller."""
        self._events.append(event)

    def wake(self) -> None:
        """Tell the adapter that output waits (``on_wake``)."""
        if self.on_wake is not None:
            self.on_wake()

    def reschedule(self, sa: IkeSa) -> None:
        """Track a change of ``sa``'s deadline."""
        spi = sa.local_spi
        deadline = sa.next_deadline() if sa.state != State.CLOSED else None
        if self._scheduled.get(spi) == deadline:
            return
        if deadline is None:
            self._scheduled.pop(spi, None)
            self._timers.cancel(spi)
            return
        self._scheduled[spi] = deadline
        self._timers.schedule(spi, deadline)

    def closed(self, sa: IkeSa) -> None:
        """Forget a closed SA."""
        self._sas.pop(sa.local_spi, None)
        self._scheduled.pop(sa.local_spi, None)
        self._timers.cancel(sa.local_spi)
        key = self._init_keys.pop(sa.local_spi, None)
        if key is not None and self._init_index.get(key) is sa:
            del self._init_index[key]

    def half_open_finished(self, sa: IkeSa) -> None:
        """A responder SA is no longer half-open."""
        self._half_open -= 1

    def adopt(self, sa: IkeSa) -> None:
        """Add an IKE SA made by a rekey to the table."""
        self._sas[sa.local_spi] = sa
        self.reschedule(sa)

    # --- internals ----------------------------------------------------------------------

    def _framed(self, address: Address, local_port: int) -> bool:
        """Whether IKE between our ``local_port`` and ``address`` has the non-ESP marker."""
        if self.nat_t_port is not None and local_port == self.nat_t_port:
            return True
        return local_port != IKE_PORT and address[1] != IKE_PORT

    def _drain(self) -> list[IkeEvent]:
        events, self._events = self._events, []
        return events

    def _drop(self, reason: str, address: Address) -> None:
        self.counters["dropped"] += 1
        self.log.debug("dropped datagram from {peer}: {reason}", peer=address, reason=reason)

    def _sa(self, spi: bytes) -> IkeSa:
        sa = self._sas.get(spi)
        if sa is None:
            raise KeyError(f"no IKE SA with SPI {spi.hex()}")
        return sa

    def new_spi(self) -> bytes:
        """A random non-zero IKE SPI not in the SA table."""
        while True:
            spi = self.config.random(8)
            if spi != _ZERO_SPI and spi not in self._sas:
                return spi

    def _answer_init(
        self, header: IkeHeader, address: Address, notify_type: int, data: bytes = b""
    ) -> None:
        """An unprotected IKE_SA_INIT response carrying one notify (no state is kept)."""
        message = IkeMessage(
            header.spi_i,
            _ZERO_SPI,
            ExchangeType.IKE_SA_INIT,
            header.message_id,
            (NotifyPayload(notify_type, data),),
            initiator=False,
            response=True,
        )
        self.send(message.encode(), address, self._arrival_port)

    def _cookie(self, version: int, nonce: bytes, address: Address, spi_i: bytes) -> bytes | None:
        secret = self._cookie_secrets.get(version)
        if secret is None:
            return None
        return crypto.cookie_value(secret, version, nonce, address[0], spi_i)

    def _init_request(self, data: bytes, header: IkeHeader, address: Address, now: float) -> None:
        """The stateless checks of an IKE_SA_INIT request, then a new half-open SA."""
        self.counters["init_requests"] += 1
        existing = self._init_index.get((header.spi_i, address))
        if existing is not None:
            if data == existing.init_request and existing.init_response:
                self.send(existing.init_response, address, self._arrival_port)
            else:
                self._drop("second IKE_SA_INIT for a known SPIi", address)
            return
        config = self.config
        decided = False
        if (
            self.redirect_policy is not None
            and self._half_open < config.cookie_threshold
            and header.message_id == 0
        ):
            ni = scan_init_for_redirect(data)
            if ni is not None:
                # A first contact that offers redirects: decided without decoding the SA.
                decided = True
                decision = self.redirect_policy.decide(
                    RedirectRequest("IKE_SA_INIT", address, self.local_address, len(self._sas), now)
                )
                if decision is not None:
                    self._send_init_redirect(header, address, decision, ni)
                    return
        try:
            message = decode_message(data)
        except InvalidIkeMessage as e:
            if e.notify_type == NotifyType.UNSUPPORTED_CRITICAL_PAYLOAD:
                self._answer_init(header, address, e.notify_type, e.notify_data)
            self._drop(e.reason, address)
            return
        if message.message_id != 0:
            self._drop("IKE_SA_INIT with a non-zero message ID", address)
            return
        sa_payload = message.find(SecurityAssociationPayload)
        ke = message.find(KeyExchangePayload)
        nonce = message.find(NoncePayload)
        if sa_payload is None or ke is None or nonce is None or not 16 <= len(nonce.data) <= 256:
            self._answer_init(header, address, NotifyType.INVALID_SYNTAX)
            self._drop("IKE_SA_INIT without SA, KE or a valid Ni", address)
            return
        redirected_from = message.notify(NotifyType.REDIRECTED_FROM)
        supported = (
            message.notify(NotifyType.REDIRECT_SUPPORTED) is not None or redirected_from is not None
        )
        at_limit = len(self._sas) >= config.max_ike_sas or self._half_open >= config.max_half_open
        if at_limit and not (supported and self.redirect_policy is not None):
            self._drop("IKE SA limit reached", address)
            return
        if self._half_open >= config.cookie_threshold:
            cookie = message.payloads[0]
            valid = False
            if (
                isinstance(cookie, NotifyPayload)
                and cookie.notify_type == NotifyType.COOKIE
                and len(cookie.data) == 36
            ):
                version = int.from_bytes(cookie.data[:4], "big")
                expected = self._cookie(version, nonce.data, address, header.spi_i)
                valid = expected is not None and hmac.compare_digest(expected, cookie.data)
            if not valid:
                value = self._cookie(self._cookie_version, nonce.data, address, header.spi_i)
                assert value is not None
                self.counters["cookies_sent"] += 1
                self._answer_init(header, address, NotifyType.COOKIE, value)
                return
            self.counters["cookies_accepted"] += 1
        origin: IPv4Address | IPv6Address | None = None
        if redirected_from is not None:
            try:
                origin = parse_redirected_from(redirected_from)
            except InvalidIkeMessage as e:
                self._answer_init(header, address, NotifyType.INVALID_SYNTAX)
                self._drop(e.reason, address)
                return
            self.counters["redirected_from"] += 1
            self.redirected_from[str(origin)] += 1
            allowed = config.redirected_from_allowed
            if allowed is not None and not any(same_gateway(origin, a) for a in allowed):
                self.counters["redirected_from_refused"] += 1
                self.log.info(
                    "refusing {peer}, redirected from {origin} (not an allowed gateway)",
                    peer=address,
                    origin=str(origin),
                )
                self._drop("REDIRECTED_FROM a gateway not allowed", address)
                return
            self.log.info(
                "client {peer} was redirected here from {origin}",
                peer=address,
                origin=str(origin),
            )
        if supported and self.redirect_policy is not None and not decided:
            decision = self.redirect_policy.decide(
                RedirectRequest(
                    "IKE_SA_INIT",
                    address,
                    self.local_address,
                    len(self._sas),
                    now,
                    redirected_from=origin,
                )
            )
            if decision is not None:
                self._send_init_redirect(header, address, decision, nonce.data)
                return
        if at_limit:
            self._drop("IKE SA limit reached", address)
            return
        offered = [from_payload(p) for p in sa_payload.proposals]
        # The config's tuple is indexed once; prefer_dh avoids a filtered list per request.
        selected = select_ike(offered, config.ike_suites, prefer_dh=ke.dh_group)
        if selected is None:
            self.counters["no_proposal_sent"] += 1
            self._answer_init(header, address, NotifyType.NO_PROPOSAL_CHOSEN)
            self.log.info("no acceptable IKE proposal from {peer}", peer=address)
            return
        chosen, suite = selected
        if suite.dh != ke.dh_group:
            self.counters["invalid_ke_sent"] += 1
            self._answer_init(
                header, address, NotifyType.INVALID_KE_PAYLOAD, int(suite.dh).to_bytes(2, "big")
            )
            return
        sa = IkeSa(
            self,
            config,
            initiator=False,
            spi_i=header.spi_i,
            spi_r=self.new_spi(),
            local_address=(self.local_address[0], self._arrival_port),
            peer_address=address,
            now=now,
        )
        try:
            response = sa.accept_init(message, data, suite, chosen, ke.data)
        except crypto.InvalidPublicValueError as e:
            self._answer_init(header, address, NotifyType.INVALID_SYNTAX)
            self._drop(f"invalid KE data: {e}", address)
            return
        sa.redirect_supported = supported
        self._sas[sa.spi_r] = sa
        self._init_index[(sa.spi_i, address)] = sa
        self._init_keys[sa.spi_r] = (sa.spi_i, address)
        self._half_open += 1
        self.send(response, address, self._arrival_port)
        self.reschedule(sa)

    def _send_init_redirect(
        self, header: IkeHeader, address: Address, decision: RedirectDecision, nonce: bytes
    ) -> None:
        """HDR(SPIi, 0), N(REDIRECT, gateway, Ni): the stateless IKE_SA_INIT redirect."""
        self.redirects[decision.reason] += 1
        self.send(
            init_redirect_response(header.spi_i, decision.gateway, nonce),
            address,
            self._arrival_port,
        )
        self.emit(
            ClientRedirected(
                address, decision.gateway, decision.reason, "IKE_SA_INIT", header.spi_i, _ZERO_SPI
            )
        )
