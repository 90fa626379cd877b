"""ESP security associations in tunnel mode (RFC 4303), without I/O: bytes and ``now`` in,
packets and events out.

- ``OutboundSa`` seals inner IPv4/IPv6 packets: SPI, the next sequence number (only its low
  32 bits travel; with ESN the high bits enter the ICV or AAD), the default padding 1, 2, 3,
  ... (2.4), optional TFC padding (2.7) and dummy packets (Next Header 59, 2.6). It refuses
  to send once the counter would cycle (3.3.3) and asks for a rekey before (``RekeyRequired``
  at the soft limit).
- ``InboundSa`` opens them: lengths, then the anti-replay check (3.4.3), then the ICV, and
  only then the window moves; then the padding, Next Header and the inner packet's own length
  (which drops TFC padding). A dummy packet is dropped and counted.
- ``EspSa`` is one CHILD_SA's pair of them, built from the IKE layer's ``ChildSa``
  (``EspSa.from_child``), with its traffic selectors and its counters.
- ``EspSad`` finds SAs: inbound by SPI, outbound by traffic selectors (newest SA first, so a
  rekeyed CHILD_SA takes over while the old one still receives).

Every packet that is not delivered comes back as a ``Dropped`` event naming why, and is
counted by that reason; nothing a peer sends raises.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from enum import Enum

from twisted.logger import Logger

from twisted_rserpool.esp.ciphers import EspCipher, Randomness, make_cipher
from twisted_rserpool.esp.inner import Selectors, inner_length, parse_inner
from twisted_rserpool.esp.replay import DEFAULT_WINDOW, ReplayVerdict, ReplayWindow
from twisted_rserpool.ike.child import ChildSa

__all__ = [
    "NEXT_HEADER_IPV4",
    "NEXT_HEADER_IPV6",
    "NO_NEXT_HEADER",
    "DropReason",
    "Dropped",
    "EspCounters",
    "EspEvent",
    "EspSa",
    "EspSad",
    "InboundSa",
    "OutboundSa",
    "Received",
    "RekeyRequired",
    "Sealed",
    "SequenceExhausted",
]

log = Logger()

NEXT_HEADER_IPV4 = 4
NEXT_HEADER_IPV6 = 41
NO_NEXT_HEADER = 59
"""Next Header of a dummy packet (RFC 4303 2.6)."""

_L = struct.Struct(">L")
_HEADER = 8
_M32 = 0xFFFFFFFF
_M64 = 0xFFFFFFFFFFFFFFFF
# The default padding (RFC 4303 2.4): pad length n is the octets 1..n.
_PADDING = tuple(bytes(range(1, n + 1)) for n in range(256))
_TRAILERS = {
    nh: tuple(_PADDING[n] + bytes((n, nh)) for n in range(256))
    for nh in (NEXT_HEADER_IPV4, NEXT_HEADER_IPV6, NO_NEXT_HEADER)
}


class DropReason(Enum):
    """Why a packet was not delivered; the value is its counter's name."""

    TRUNCATED = "truncated"
    """Shorter than an ESP packet of the SA's cipher can be, or not block-aligned."""
    UNKNOWN_SPI = "unknown_spi"
    """No inbound SA has this SPI (RFC 4303 3.4.2)."""
    REPLAY = "replay"
    """A sequence number already received, inside the window (3.4.3)."""
    TOO_OLD = "too_old"
    """A sequence number left of the window (3.4.3)."""
    ICV = "icv"
    """The ICV (or AEAD tag) does not verify (3.4.4)."""
    BAD_PADDING = "bad_padding"
    """The Padding is not 1, 2, 3, ... or longer than the plaintext (2.4)."""
    NEXT_HEADER = "next_header"
    """A Next Header other than IPv4, IPv6 or 59: this is a tunnel-mode SA."""
    BAD_INNER = "bad_inner"
    """The payload is not an IP packet of the family the Next Header says, or is cut short."""
    SELECTOR = "selector"
    """The inner packet is outside the CHILD_SA's traffic selectors (RFC 4301 5.2)."""
    NO_SA = "no_sa"
    """Outbound: no CHILD_SA's selectors cover the packet."""
    SEQUENCE_EXHAUSTED = "sequence_exhausted"
    """Outbound: sending would cycle the sequence number (RFC 4303 3.3.3)."""
    DUMMY = "dummy"
    """A dummy packet (Next Header 59): discarded without error, counted apart (2.6)."""


@dataclass(frozen=True, slots=True)
class Dropped:
    """A packet was not delivered (``spi`` as on the wire; ``sequence`` when known)."""

    reason: DropReason
    spi: bytes
    sequence: int | None = None


@dataclass(frozen=True, slots=True)
class RekeyRequired:
    """The outbound SA ``spi`` reached its soft limit: create its successor now."""

    spi: bytes
    sequence: int


@dataclass(frozen=True, slots=True)
class SequenceExhausted:
    """The outbound SA ``spi`` sent its last sequence number: it refuses to send."""

    spi: bytes
    sequence: int


@dataclass(frozen=True, slots=True)
class Received:
    """An inner packet that ``sa`` opened and its selectors allow."""

    sa: EspSa
    packet: bytes


@dataclass(frozen=True, slots=True)
class Sealed:
    """An ESP packet for ``sa``'s peer (UDP payload on port 4500, or IP protocol 50)."""

    sa: EspSa
    datagram: bytes


EspEvent = RekeyRequired | SequenceExhausted


@dataclass(slots=True)
class EspCounters:
    """What one CHILD_SA carried: inner packets and octets each way, drops by reason."""

    packets_in: int = 0
    bytes_in: int = 0
    packets_out: int = 0
    bytes_out: int = 0
    dummy_in: int = 0
    dummy_out: int = 0
    drops: dict[str, int] = field(default_factory=dict)
    last_in: float | None = None
    """When the last authenticated packet arrived (liveness: RFC 7296 2.4)."""
    last_out: float | None = None

    def drop(self, reason: DropReason) -> None:
        """Count one packet dropped for ``reason``."""
        self.drops[reason.value] = self.drops.get(reason.value, 0) + 1

    def as_dict(self) -> dict[str, object]:
        """The counters as JSON-ready values (for the admin status)."""
        return {
            "packets_in": self.packets_in,
            "bytes_in": self.bytes_in,
            "packets_out": self.packets_out,
            "bytes_out": self.bytes_out,
            "dummy_in": self.dummy_in,
            "dummy_out": self.dummy_out,
            "drops": dict(self.drops),
        }


def _check_spi(spi: bytes) -> bytes:
    spi = bytes(spi)
    # SPI 0 is reserved (RFC 4303 2.1) and would read as the non-ESP marker (RFC 3948).
    if len(spi) != 4 or spi == bytes(4):
        raise ValueError(f"ESP SPI {spi.hex()}: four octets, not zero")
    return spi


class OutboundSa:
    """Seals inner packets with one SPI and key.

    ``hard_limit`` is the last sequence number (2^32 - 1, or 2^64 - 1 with ESN);
    ``soft_limit`` (default: a sixteenth of the space before it) is where ``RekeyRequired``
    is queued, once.
    """

    def __init__(
        self,
        spi: bytes,
        cipher: EspCipher,
        *,
        esn: bool = False,
        soft_limit: int | None = None,
        counters: EspCounters | None = None,
    ) -> None:
        self.spi = _check_spi(spi)
        self.cipher = cipher
        self.esn = esn
        self.hard_limit = _M64 if esn else _M32
        self.soft_limit = (
            self.hard_limit - self.hard_limit // 16 if soft_limit is None else soft_limit
        )
        if not 0 < self.soft_limit <= self.hard_limit:
            raise ValueError(f"soft limit {soft_limit} outside 1..{self.hard_limit}")
        self.sequence = 0
        """The last sequence number sent (0: none yet)."""
        self.counters = EspCounters() if counters is None else counters
        self.rekey_requested = False
        self.exhausted = False
        self._events: list[EspEvent] = []
        self._block = cipher.block_size

    def take_events(self) -> list[EspEvent]:
        """The events queued since the last call."""
        events, self._events = self._events, []
        return events

    def _next(self) -> int | None:
        sequence = self.sequence + 1
        if sequence > self.hard_limit:
            if not self.exhausted:
                self.exhausted = True
                self._events.append(SequenceExhausted(self.spi, self.sequence))
                # An auditable event (RFC 4303 3.3.3); once per SA.
                log.warn(
                    "ESP SA {spi} exhausted its sequence numbers at {sequence}: not sending",
                    spi=self.spi.hex(),
                    sequence=self.sequence,
                )
            self.counters.drop(DropReason.SEQUENCE_EXHAUSTED)
            return None
        self.sequence = sequence
        if sequence >= self.soft_limit and not self.rekey_requested:
            self.rekey_requested = True
            self._events.append(RekeyRequired(self.spi, sequence))
        return sequence

    def _seal(self, payload: bytes, next_header: int, tfc_padding: int) -> bytes | Dropped:
        sequence = self._next()
        if sequence is None:
            return Dropped(DropReason.SEQUENCE_EXHAUSTED, self.spi, self.sequence)
        length = len(payload) + tfc_padding
        pad = -(length + 2) % self._block
        if tfc_padding:
            payload += bytes(tfc_padding)
        header = self.spi + _L.pack(sequence & _M32)
        return self.cipher.seal(header, sequence, payload + _TRAILERS[next_header][pad])

    def seal(self, packet: bytes, now: float, *, tfc_padding: int = 0) -> bytes | Dropped:
        """The ESP packet carrying the IPv4 or IPv6 ``packet``, with ``tfc_padding`` zero
        octets after it (only if the peer accepts TFC padding: RFC 7296 3.10.1,
        ESP_TFC_PADDING_NOT_SUPPORTED); or why it was not sent."""
        version = packet[0] >> 4 if packet else 0
        if version == 4:
            next_header = NEXT_HEADER_IPV4
        elif version == 6:
            next_header = NEXT_HEADER_IPV6
        else:
            self.counters.drop(DropReason.BAD_INNER)
            return Dropped(DropReason.BAD_INNER, self.spi)
        sealed = self._seal(packet, next_header, tfc_padding)
        if isinstance(sealed, bytes):
            counters = self.counters
            counters.packets_out += 1
            counters.bytes_out += len(packet)
            counters.last_out = now
        return sealed

    def seal_dummy(self, now: float, length: int = 0) -> bytes | Dropped:
        """A dummy ESP packet (Next Header 59) with ``length`` octets of payload, which the
        receiver discards (RFC 4303 2.6: traffic flow confidentiality)."""
        sealed = self._seal(bytes(length), NO_NEXT_HEADER, 0)
        if isinstance(sealed, bytes):
            self.counters.dummy_out += 1
            self.counters.last_out = now
        return sealed

    def max_inner_length(self, mtu: int, *, ipv6: bool = False, udp: bool = True) -> int:
        """The longest inner packet whose ESP packet fits an outer IP packet of ``mtu``
        octets (IPv4 or ``ipv6`` outer header, UDP-encapsulated or not); for the TUN's MTU."""
        room = mtu - (40 if ipv6 else 20) - (8 if udp else 0) - _HEADER
        room -= self.cipher.iv_length + self.cipher.icv_length
        return max(0, room // self._block * self._block - 2)


class InboundSa:
    """Opens the ESP packets that arrive with one SPI."""

    def __init__(
        self,
        spi: bytes,
        cipher: EspCipher,
        *,
        esn: bool = False,
        replay_window: int = DEFAULT_WINDOW,
        selectors: Selectors | None = None,
        counters: EspCounters | None = None,
    ) -> None:
        self.spi = _check_spi(spi)
        self.cipher = cipher
        self.selectors = selectors
        """When set, an inner packet must come from its remote and go to its local side."""
        self.window = ReplayWindow(replay_window, esn)
        self.counters = EspCounters() if counters is None else counters
        self._block = cipher.block_size
        self._fixed = _HEADER + cipher.iv_length + cipher.icv_length
        # AEAD: at least Pad Length and Next Header; CBC: at least one block.
        self._minimum = self._fixed + (16 if self._block == 16 else 2)

    def _drop(self, reason: DropReason, sequence: int | None = None) -> Dropped:
        self.counters.drop(reason)
        return Dropped(reason, self.spi, sequence)

    def open(self, datagram: bytes, now: float) -> bytes | Dropped:
        """The inner packet of an ESP ``datagram`` (beginning with this SA's SPI), or why
        it was dropped."""
        length = len(datagram)
        if length < self._minimum or (self._block == 16 and (length - self._fixed) % 16):
            return self._drop(DropReason.TRUNCATED)
        low = _L.unpack_from(datagram, 4)[0]
        sequence = self.window.check(low)
        if isinstance(sequence, ReplayVerdict):
            if sequence is ReplayVerdict.DUPLICATE:
                return self._drop(DropReason.REPLAY, low)
            return self._drop(DropReason.TOO_OLD, low)
        plaintext = self.cipher.open(datagram, sequence)
        if plaintext is None:
            return self._drop(DropReason.ICV, sequence)
        # Authentic: the window moves now, whatever the payload holds (RFC 4303 3.4.3).
        self.window.accept(sequence)
        counters = self.counters
        counters.last_in = now
        pad = plaintext[-2]
        end = len(plaintext) - 2 - pad
        if end < 0 or plaintext[end:-2] != _PADDING[pad]:
            return self._drop(DropReason.BAD_PADDING, sequence)
        next_header = plaintext[-1]
        if next_header == NO_NEXT_HEADER:
            counters.dummy_in += 1
            return Dropped(DropReason.DUMMY, self.spi, sequence)
        if next_header not in (NEXT_HEADER_IPV4, NEXT_HEADER_IPV6):
            return self._drop(DropReason.NEXT_HEADER, sequence)
        inner = inner_length(plaintext)
        version = plaintext[0] >> 4
        if inner is None or inner > end or version != (4 if next_header == NEXT_HEADER_IPV4 else 6):
            return self._drop(DropReason.BAD_INNER, sequence)
        # Whatever follows the inner packet before the Padding is TFC padding (2.7).
        packet = plaintext[:inner]
        if self.selectors is not None:
            fields = parse_inner(packet)
            if fields is None or not self.selectors.inbound(fields):
                return self._drop(DropReason.SELECTOR, sequence)
        counters.packets_in += 1
        counters.bytes_in += inner
        return packet


class EspSa:
    """One CHILD_SA in the data plane: its outbound and inbound SA, selectors, counters."""

    def __init__(
        self,
        outbound: OutboundSa,
        inbound: InboundSa,
        selectors: Selectors,
        child: ChildSa | None = None,
    ) -> None:
        if inbound.counters is not outbound.counters:
            raise ValueError("the two halves of an ESP SA share one EspCounters")
        self.outbound = outbound
        self.inbound = inbound
        self.selectors = selectors
        inbound.selectors = selectors
        self.child = child
        self.counters = outbound.counters

    @classmethod
    def from_child(
        cls,
        child: ChildSa,
        *,
        random: Randomness = os.urandom,
        replay_window: int = DEFAULT_WINDOW,
        soft_limit: int | None = None,
    ) -> EspSa:
        """The ESP SA pair of a negotiated tunnel-mode CHILD_SA.

        Our outbound SA uses the peer's SPI and the keys of our direction: the ``*_i`` keys
        when we initiated the exchange that made the CHILD_SA (RFC 7296 2.17).
        """
        if child.transport_mode:
            raise ValueError("only tunnel-mode CHILD_SAs are supported")
        suite = child.suite
        if child.initiator:
            out_keys = (child.encryption_key_i, child.integrity_key_i)
            in_keys = (child.encryption_key_r, child.integrity_key_r)
        else:
            out_keys = (child.encryption_key_r, child.integrity_key_r)
            in_keys = (child.encryption_key_i, child.integrity_key_i)
        counters = EspCounters()
        outbound = OutboundSa(
            child.outbound_spi,
            make_cipher(suite, *out_keys, random),
            esn=suite.esn,
            soft_limit=soft_limit,
            counters=counters,
        )
        selectors = Selectors(child.local_ts, child.remote_ts)
        inbound = InboundSa(
            child.inbound_spi,
            make_cipher(suite, *in_keys, random),
            esn=suite.esn,
            replay_window=replay_window,
            selectors=selectors,
            counters=counters,
        )
        return cls(outbound, inbound, selectors, child)

    def covers(self, packet: bytes) -> bool:
        """Whether this CHILD_SA's selectors let the inner ``packet`` (from our side) out."""
        fields = parse_inner(packet)
        return fields is not None and self.selectors.outbound(fields)

    def seal(self, packet: bytes, now: float, *, tfc_padding: int = 0) -> bytes | Dropped:
        """``OutboundSa.seal`` (the caller chose this SA by its selectors)."""
        return self.outbound.seal(packet, now, tfc_padding=tfc_padding)

    def open(self, datagram: bytes, now: float) -> bytes | Dropped:
        """``InboundSa.open``, with the inbound selector check (RFC 4301 5.2)."""
        return self.inbound.open(datagram, now)

    def take_events(self) -> list[EspEvent]:
        """The outbound SA's queued events."""
        return self.outbound.take_events()


class EspSad:
    """The SAs of a data plane: inbound by SPI, outbound by traffic selectors."""

    def __init__(self) -> None:
        self._inbound: dict[bytes, EspSa] = {}
        self._sas: list[EspSa] = []
        self.counters: dict[str, int] = {}
        """Drops that belong to no SA (unknown SPI, too short for an SPI, no SA outbound)."""

    def __len__(self) -> int:
        return len(self._sas)

    def __iter__(self) -> Iterator[EspSa]:
        return iter(tuple(self._sas))

    def add(self, sa: EspSa) -> None:
        """Install ``sa``; for outbound traffic it takes precedence over older ones."""
        spi = sa.inbound.spi
        if spi in self._inbound:
            raise ValueError(f"inbound SPI {spi.hex()} already installed")
        self._inbound[spi] = sa
        self._sas.insert(0, sa)

    def remove(self, sa: EspSa) -> None:
        """Uninstall ``sa`` (nothing if it is not installed)."""
        if self._inbound.get(sa.inbound.spi) is sa:
            del self._inbound[sa.inbound.spi]
            self._sas.remove(sa)

    def get(self, inbound_spi: bytes) -> EspSa | None:
        """The SA receiving with ``inbound_spi``."""
        return self._inbound.get(bytes(inbound_spi))

    def _drop(self, reason: DropReason, spi: bytes) -> Dropped:
        self.counters[reason.value] = self.counters.get(reason.value, 0) + 1
        return Dropped(reason, spi)

    def receive(self, datagram: bytes, now: float) -> Received | Dropped:
        """Open an ESP packet with the SA its SPI names."""
        spi = datagram[:4]
        sa = self._inbound.get(spi)
        if sa is None:
            reason = DropReason.UNKNOWN_SPI if len(spi) == 4 else DropReason.TRUNCATED
            return self._drop(reason, bytes(spi))
        inner = sa.open(datagram, now)
        if isinstance(inner, Dropped):
            return inner
        return Received(sa, inner)

    def lookup(self, packet: bytes) -> EspSa | None:
        """The newest SA whose selectors let the inner ``packet`` out."""
        fields = parse_inner(packet)
        if fields is None:
            return None
        for sa in self._sas:
            if sa.selectors.outbound(fields):
                return sa
        return None

    def send(self, packet: bytes, now: float) -> Sealed | Dropped:
        """Seal an inner packet with the SA chosen by ``lookup``."""
        sa = self.lookup(packet)
        if sa is None:
            return self._drop(DropReason.NO_SA, b"")
        sealed = sa.seal(packet, now)
        if isinstance(sealed, Dropped):
            return sealed
        return Sealed(sa, sealed)

    def take_events(self) -> list[EspEvent]:
        """Every installed SA's queued events."""
        return [event for sa in self._sas for event in sa.take_events()]
