"""A userspace ESP data plane (RFC 4303), sans-IO: ciphers, anti-replay, SAs, traffic
selector checks and RFC 3948 framing. docs/ike.md, "ESP data plane: the core"."""

from twisted_rserpool.esp.ciphers import AeadCipher, CbcHmacCipher, EspCipher, make_cipher
from twisted_rserpool.esp.encapsulation import NatTDatagram, classify_nat_t, encapsulate_ike
from twisted_rserpool.esp.inner import InnerPacket, Selectors, inner_length, parse_inner
from twisted_rserpool.esp.replay import ReplayVerdict, ReplayWindow
from twisted_rserpool.esp.sa import (
    Dropped,
    DropReason,
    EspCounters,
    EspEvent,
    EspSa,
    EspSad,
    InboundSa,
    OutboundSa,
    Received,
    RekeyRequired,
    Sealed,
    SequenceExhausted,
)

__all__ = [
    "AeadCipher",
    "CbcHmacCipher",
    "DropReason",
    "Dropped",
    "EspCipher",
    "EspCounters",
    "EspEvent",
    "EspSa",
    "EspSad",
    "InboundSa",
    "InnerPacket",
    "NatTDatagram",
    "OutboundSa",
    "Received",
    "RekeyRequired",
    "ReplayVerdict",
    "ReplayWindow",
    "Sealed",
    "Selectors",
    "SequenceExhausted",
    "classify_nat_t",
    "encapsulate_ike",
    "inner_length",
    "make_cipher",
    "parse_inner",
]
