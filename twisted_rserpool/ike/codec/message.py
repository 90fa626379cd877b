"""Whole IKE messages: header and payload chain (RFC 7296 sections 3.1, 3.2)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeVar

from twisted_rserpool.ike.codec.base import (
    _HEADER,
    DEFAULT_LIMITS,
    DecodeLimits,
    _check_uint,
    _fail,
    _freeze,
    _PayloadBase,
)
from twisted_rserpool.ike.codec.chain import Payload, _decode_chain, _encode_chain
from twisted_rserpool.ike.codec.encrypted import EncryptedPayload
from twisted_rserpool.ike.codec.header import decode_header
from twisted_rserpool.ike.codec.notify import NotifyPayload
from twisted_rserpool.ike.constants import (
    IKE_HEADER_SIZE,
    IKE_MAJOR_VERSION,
    HeaderFlag,
    NotifyType,
    PayloadType,
)
from twisted_rserpool.ike.errors import InvalidIkeMessage

__all__ = [
    "IkeMessage",
    "decode_message",
]


# --- message -----------------------------------------------------------------------------


_P = TypeVar("_P", bound=_PayloadBase)


@dataclass(frozen=True, slots=True)
class IkeMessage:
    """An IKEv2 message: header fields and the chain of payloads.

    The header's Next Payload and Length fields follow from the payloads and are computed by
    :meth:`encode`. Unknown flag bits are not kept.
    """

    spi_i: bytes
    spi_r: bytes
    exchange_type: int
    message_id: int
    payloads: tuple[Payload, ...] = ()
    initiator: bool = False
    response: bool = False
    higher_version: bool = False
    minor_version: int = 0

    def __post_init__(self) -> None:
        if len(self.spi_i) != 8 or len(self.spi_r) != 8:
            raise ValueError("IKE SPIs are 8 octets")
        _freeze(self, "payloads")
        _check_uint("exchange type", self.exchange_type, 8)
        _check_uint("message ID", self.message_id, 32)
        _check_uint("minor version", self.minor_version, 4)

    @property
    def flags(self) -> int:
        """The Flags octet."""
        return (
            (HeaderFlag.INITIATOR if self.initiator else 0)
            | (HeaderFlag.RESPONSE if self.response else 0)
            | (HeaderFlag.VERSION if self.higher_version else 0)
        )

    def encode(self) -> bytes:
        """The message octets, ready to send on port 500 (add a non-ESP marker on 4500)."""
        chain = _encode_chain(self.payloads)
        first = self.payloads[0].payload_type if self.payloads else PayloadType.NO_NEXT_PAYLOAD
        header = _HEADER.pack(
            self.spi_i,
            self.spi_r,
            first,
            (IKE_MAJOR_VERSION << 4) | self.minor_version,
            self.exchange_type,
            self.flags,
            self.message_id,
            IKE_HEADER_SIZE + len(chain),
        )
        return header + chain

    def find(self, payload_class: type[_P]) -> _P | None:
        """The first payload of this class, or None."""
        for payload in self.payloads:
            if isinstance(payload, payload_class):
                return payload
        return None

    def find_all(self, payload_class: type[_P]) -> tuple[_P, ...]:
        """Every payload of this class, in message order."""
        return tuple(p for p in self.payloads if isinstance(p, payload_class))

    @property
    def notifies(self) -> tuple[NotifyPayload, ...]:
        """The Notify payloads, in message order."""
        return self.find_all(NotifyPayload)

    def notify(self, notify_type: int) -> NotifyPayload | None:
        """The first Notify payload of this type, or None."""
        for payload in self.payloads:
            if isinstance(payload, NotifyPayload) and payload.notify_type == notify_type:
                return payload
        return None

    @property
    def encrypted(self) -> EncryptedPayload | None:
        """The SK payload, when the message has one."""
        last = self.payloads[-1] if self.payloads else None
        return last if isinstance(last, EncryptedPayload) else None


def decode_message(data: bytes, limits: DecodeLimits = DEFAULT_LIMITS) -> IkeMessage:
    """Decode one IKEv2 message (the UDP payload on port 500, without a non-ESP marker).

    Raises :class:`InvalidIkeMessage` for anything malformed, including a Length field that
    differs from the size of ``data``.
    """
    data = bytes(data)
    if len(data) > limits.max_message_size:
        raise _fail(f"message of {len(data)} octets exceeds {limits.max_message_size}")
    header = decode_header(data)
    if header.major_version != IKE_MAJOR_VERSION:
        raise InvalidIkeMessage(
            f"IKE major version {header.major_version} is not 2",
            NotifyType.INVALID_MAJOR_VERSION,
        )
    if header.length != len(data):
        raise InvalidIkeMessage(
            f"header Length {header.length} differs from the {len(data)} octets received"
        )
    payloads = _decode_chain(
        data, IKE_HEADER_SIZE, header.next_payload, limits, allow_encrypted=True
    )
    return IkeMessage(
        header.spi_i,
        header.spi_r,
        header.exchange_type,
        header.message_id,
        payloads,
        header.initiator,
        header.response,
        header.higher_version,
        header.minor_version,
    )
