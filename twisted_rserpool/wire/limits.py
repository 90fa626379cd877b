"""Bounds that every RSerPool decoder enforces against hostile input."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Limits:
    """How much a decoder accepts before it refuses a message.

    The defaults admit everything RFC 5352/5353/5354 peers (RSPLIB included) send, and
    nothing much larger. Servers may pass tighter limits.
    """

    #: Largest message, header included (the 16-bit length field allows 65535).
    max_message_size: int = 65535
    #: Most TLV parameters in one message, counted at every nesting level.
    max_parameters: int = 2048
    #: Deepest nesting of parameters (message > pool element > transport > address is 3).
    max_depth: int = 4
    #: Longest pool handle in bytes (RSPLIB uses at most 32).
    max_pool_handle_length: int = 255
    #: Most addresses in one SCTP transport parameter.
    max_addresses_per_transport: int = 16
    #: Most bytes of an offending TLV carried back in an error cause.
    max_offending_bytes: int = 1024


DEFAULT_LIMITS = Limits()
