"""RSerPool wire format: RFC 5354 parameters, RFC 5352 ASAP and RFC 5353 ENRP messages,
and the chunks of the RSerPool TCP mapping (draft-ietf-rserpool-tcpmapping-03).

Pure codec: no Twisted, no I/O. Every value is immutable and has ``encode() -> bytes``;
``twisted_rserpool.wire.asap.decode`` and ``twisted_rserpool.wire.enrp.decode`` return one
message object, and every decoder raises :class:`MalformedMessage` for bad input.
"""

from twisted_rserpool.wire.errors import CauseCode, MalformedMessage
from twisted_rserpool.wire.limits import DEFAULT_LIMITS, Limits

__all__ = ["DEFAULT_LIMITS", "CauseCode", "Limits", "MalformedMessage"]
