"""ASAP messages (RFC 5352 section 2.2, types 0x01-0x0e).

``decode(data)`` returns one message object; every message has ``TYPE`` and ``encode()``.
Flags are booleans named after the RFC's bits (R reject, S subscribe, A accept updates,
H home). Reserved flag bits are sent as zero and ignored on receipt.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import IntEnum
from typing import Self, TypeAlias

from twisted_rserpool.wire.fastpath import mypyc_attr
from twisted_rserpool.wire.limits import DEFAULT_LIMITS, Limits
from twisted_rserpool.wire.message import (
    Message,
    Parameters,
    decode_message,
    name_slots,
    registry_of,
)
from twisted_rserpool.wire.parameters import (
    ASAP_TRANSPORT_CLASSES,
    CookieParameter,
    DecodeContext,
    HandleResolutionItems,
    OperationError,
    ParameterType,
    PEIdentifierParameter,
    PoolElementParameter,
    PoolHandleParameter,
    ResentMessages,
    SctpTransport,
    SelectionPolicy,
    TcpTransport,
    check_unsigned,
)

_U32 = struct.Struct(">I")
_TLV_HEADER = struct.Struct(">HH")
_TLV_U32 = struct.Struct(">HHI")  # a TLV of one 32-bit value
# Plain ints for the fast decoders (comparing with an IntEnum member costs more).
_POOL_HANDLE = int(ParameterType.POOL_HANDLE)
_PE_IDENTIFIER = int(ParameterType.PE_IDENTIFIER)
_ITEMS = int(ParameterType.HANDLE_RESOLUTION_ITEMS)


class AsapType(IntEnum):
    """RFC 5352 section 2.2, figure 1."""

    REGISTRATION = 0x01
    DEREGISTRATION = 0x02
    REGISTRATION_RESPONSE = 0x03
    DEREGISTRATION_RESPONSE = 0x04
    HANDLE_RESOLUTION = 0x05
    HANDLE_RESOLUTION_RESPONSE = 0x06
    ENDPOINT_KEEP_ALIVE = 0x07
    ENDPOINT_KEEP_ALIVE_ACK = 0x08
    ENDPOINT_UNREACHABLE = 0x09
    SERVER_ANNOUNCE = 0x0A
    COOKIE = 0x0B
    COOKIE_ECHO = 0x0C
    BUSINESS_CARD = 0x0D
    ERROR = 0x0E


_FLAG_LOW = 0x01  # R, S, A and H are all the lowest bit of their message's flags


def _handle_and_pe(pool_handle: bytes, pe_identifier: int) -> bytes:
    return PoolHandleParameter(pool_handle).encode() + PEIdentifierParameter(pe_identifier).encode()


def _encode_optional(error: OperationError | None) -> bytes:
    return error.encode() if error is not None else b""


@dataclass(frozen=True, slots=True)
class Registration(Message):
    """ASAP_REGISTRATION (2.2.1): a PE asks its home ENRP server to add it to a pool."""

    pool_handle: bytes
    pool_element: PoolElementParameter

    def _body(self) -> bytes:
        return PoolHandleParameter(self.pool_handle).encode() + self.pool_element.encode()

    @classmethod
    def _decode(cls, ctx: DecodeContext, flags: int, start: int, end: int) -> Self:
        p = Parameters(ctx, start, end)
        handle = p.one(PoolHandleParameter, "pool handle").pool_handle
        element = p.one(PoolElementParameter, "pool element")
        p.done()
        return cls(handle, element)


Registration.TYPE = AsapType.REGISTRATION


@dataclass(frozen=True, slots=True)
class _PoolElementReference(Message):
    """Shared shape of the messages that name one PE: pool handle and PE identifier."""

    pool_handle: bytes
    pe_identifier: int

    def _body(self) -> bytes:
        return _handle_and_pe(self.pool_handle, self.pe_identifier)

    @classmethod
    def _decode_fast(cls, data: bytes, limits: Limits, flags: int, end: int) -> Self | None:
        """The pool handle, then the PE identifier, nothing after them: what every PE
        sends back to each keep-alive (``None`` for anything else; both decoders agree
        where this answers)."""
        if end < 20 or limits.max_parameters < 2 or limits.max_depth < 1:
            return None
        ptype, length = _TLV_HEADER.unpack_from(data, 4)
        if ptype != _POOL_HANDLE or length <= 4 or length - 4 > limits.max_pool_handle_length:
            return None
        offset = 4 + ((length + 3) & ~3)
        # 8 to 11 bytes left: the PE identifier and at most the padding the sender counted.
        if not 8 <= end - offset < 12:
            return None
        ptype, pe_length, pe_identifier = _TLV_U32.unpack_from(data, offset)
        if ptype != _PE_IDENTIFIER or pe_length != 8:
            return None
        return cls(data[8 : 4 + length], pe_identifier)

    @classmethod
    def _decode(cls, ctx: DecodeContext, flags: int, start: int, end: int) -> Self:
        p = Parameters(ctx, start, end)
        handle = p.one(PoolHandleParameter, "pool handle").pool_handle
        pe = p.one(PEIdentifierParameter, "PE identifier").pe_identifier
        p.done()
        return cls(handle, pe)


@dataclass(frozen=True, slots=True)
class Deregistration(_PoolElementReference):
    """ASAP_DEREGISTRATION (2.2.2): a PE removes itself from a pool."""


Deregistration.TYPE = AsapType.DEREGISTRATION


@dataclass(frozen=True, slots=True)
class RegistrationResponse(Message):
    """ASAP_REGISTRATION_RESPONSE (2.2.3); ``reject`` is the R flag.

    With ``reject`` the error says why; without it an error is a warning.
    """

    pool_handle: bytes
    pe_identifier: int
    reject: bool = False
    error: OperationError | None = None

    def _flags(self) -> int:
        return _FLAG_LOW if self.reject else 0

    def _body(self) -> bytes:
        return _handle_and_pe(self.pool_handle, self.pe_identifier) + _encode_optional(self.error)

    @classmethod
    def _decode(cls, ctx: DecodeContext, flags: int, start: int, end: int) -> Self:
        p = Parameters(ctx, start, end)
        handle = p.one(PoolHandleParameter, "pool handle").pool_handle
        pe = p.one(PEIdentifierParameter, "PE identifier").pe_identifier
        error = p.optional(OperationError, "operation error")
        p.done()
        return cls(handle, pe, bool(flags & _FLAG_LOW), error)


RegistrationResponse.TYPE = AsapType.REGISTRATION_RESPONSE


@dataclass(frozen=True, slots=True)
class DeregistrationResponse(Message):
    """ASAP_DEREGISTRATION_RESPONSE (2.2.4), also sent when a registration expires."""

    pool_handle: bytes
    pe_identifier: int
    error: OperationError | None = None

    def _body(self) -> bytes:
        return _handle_and_pe(self.pool_handle, self.pe_identifier) + _encode_optional(self.error)

    @classmethod
    def _decode(cls, ctx: DecodeContext, flags: int, start: int, end: int) -> Self:
        p = Parameters(ctx, start, end)
        handle = p.one(PoolHandleParameter, "pool handle").pool_handle
        pe = p.one(PEIdentifierParameter, "PE identifier").pe_identifier
        error = p.optional(OperationError, "operation error")
        p.done()
        return cls(handle, pe, error)


DeregistrationResponse.TYPE = AsapType.DEREGISTRATION_RESPONSE


@dataclass(frozen=True, slots=True)
class HandleResolution(Message):
    """ASAP_HANDLE_RESOLUTION (2.2.5); ``subscribe`` is the S flag (dynamic updates).

    ``items`` is RSPLIB's private parameter 0x803f: how many PEs the sender wants.
    """

    pool_handle: bytes
    subscribe: bool = False
    items: int | None = None

    def _flags(self) -> int:
        return _FLAG_LOW if self.subscribe else 0

    def _body(self) -> bytes:
        body = PoolHandleParameter(self.pool_handle).encode()
        if self.items is not None:
            body += HandleResolutionItems(self.items).encode()
        return body

    @classmethod
    def _decode_fast(cls, data: bytes, limits: Limits, flags: int, end: int) -> Self | None:
        """What every pool user sends: a valid pool handle, then at most the items
        parameter (``None`` for anything else; both decoders agree where this answers)."""
        if end < 12 or limits.max_parameters < 2 or limits.max_depth < 1:
            return None
        ptype, length = _TLV_HEADER.unpack_from(data, 4)
        if (
            ptype != _POOL_HANDLE
            or length <= 4
            or length - 4 > limits.max_pool_handle_length
            or 4 + length > end
        ):
            return None
        offset = 4 + ((length + 3) & ~3)
        if end - offset < 4:  # nothing after the handle but the padding the sender counted
            return cls(data[8 : 4 + length], flags & _FLAG_LOW != 0, None)
        if not 8 <= end - offset < 12:
            return None
        ptype, items_length, items = _TLV_U32.unpack_from(data, offset)
        if ptype != _ITEMS or items_length != 8:
            return None
        return cls(data[8 : 4 + length], flags & _FLAG_LOW != 0, items)

    @classmethod
    def _decode(cls, ctx: DecodeContext, flags: int, start: int, end: int) -> Self:
        p = Parameters(ctx, start, end)
        handle = p.one(PoolHandleParameter, "pool handle").pool_handle
        items = p.optional(HandleResolutionItems, "handle resolution items")
        p.done()
        return cls(handle, bool(flags & _FLAG_LOW), items.items if items is not None else None)


HandleResolution.TYPE = AsapType.HANDLE_RESOLUTION


# enrp.resolution caches its answers in a subclass (see Message).
@mypyc_attr(allow_interpreted_subclasses=True)
@dataclass(frozen=True, slots=True)
class HandleResolutionResponse(Message):
    """ASAP_HANDLE_RESOLUTION_RESPONSE (2.2.6); ``accept_updates`` is the A flag.

    Positive: the pool's overall policy (optional) and at least one PE. Negative: an
    error and no PEs.
    """

    pool_handle: bytes
    pool_elements: tuple[PoolElementParameter, ...] = ()
    policy: SelectionPolicy | None = None
    accept_updates: bool = False
    error: OperationError | None = None

    def _flags(self) -> int:
        return _FLAG_LOW if self.accept_updates else 0

    def _body(self) -> bytes:
        parts = [PoolHandleParameter(self.pool_handle).encode()]
        if self.policy is not None:
            parts.append(self.policy.encode())
        parts.extend(pe.encode() for pe in self.pool_elements)
        if self.error is not None:
            parts.append(self.error.encode())
        return b"".join(parts)

    @classmethod
    def _decode(cls, ctx: DecodeContext, flags: int, start: int, end: int) -> Self:
        p = Parameters(ctx, start, end)
        handle = p.one(PoolHandleParameter, "pool handle").pool_handle
        policy = p.optional(SelectionPolicy, "overall selection policy")
        elements = p.many(PoolElementParameter)
        error = p.optional(OperationError, "operation error")
        p.done()
        if error is None and not elements:
            raise ctx.invalid("a positive handle resolution response needs a PE", start - 4, end)
        if error is not None and (elements or policy is not None):
            raise ctx.invalid(
                "a negative handle resolution response carries no PE and no policy", start - 4, end
            )
        return cls(handle, tuple(elements), policy, bool(flags & _FLAG_LOW), error)


HandleResolutionResponse.TYPE = AsapType.HANDLE_RESOLUTION_RESPONSE
name_slots(HandleResolutionResponse)


@dataclass(frozen=True, slots=True)
class EndpointKeepAlive(Message):
    """ASAP_ENDPOINT_KEEP_ALIVE (2.2.7); ``home`` is the H flag (adopt me as home server).

    ``pe_identifier`` is RSPLIB's addition (which of the PEs on the association is meant);
    RFC 5352 does not define it, so it is sent only when set.
    """

    server_identifier: int
    pool_handle: bytes
    home: bool = False
    pe_identifier: int | None = None

    def _flags(self) -> int:
        return _FLAG_LOW if self.home else 0

    def _body(self) -> bytes:
        body = (
            _U32.pack(check_unsigned(self.server_identifier, 32, "server identifier"))
            + PoolHandleParameter(self.pool_handle).encode()
        )
        if self.pe_identifier is not None:
            body += PEIdentifierParameter(self.pe_identifier).encode()
        return body

    @classmethod
    def _decode(cls, ctx: DecodeContext, flags: int, start: int, end: int) -> Self:
        if end - start < 4:
            raise ctx.invalid("truncated endpoint keep-alive", start - 4, end)
        (server,) = _U32.unpack_from(ctx.data, start)
        p = Parameters(ctx, start + 4, end)
        handle = p.one(PoolHandleParameter, "pool handle").pool_handle
        pe = p.optional(PEIdentifierParameter, "PE identifier")
        p.done()
        return cls(
            server, handle, bool(flags & _FLAG_LOW), pe.pe_identifier if pe is not None else None
        )


EndpointKeepAlive.TYPE = AsapType.ENDPOINT_KEEP_ALIVE


@dataclass(frozen=True, slots=True)
class EndpointKeepAliveAck(_PoolElementReference):
    """ASAP_ENDPOINT_KEEP_ALIVE_ACK (2.2.8)."""


EndpointKeepAliveAck.TYPE = AsapType.ENDPOINT_KEEP_ALIVE_ACK


@dataclass(frozen=True, slots=True)
class EndpointUnreachable(_PoolElementReference):
    """ASAP_ENDPOINT_UNREACHABLE (2.2.9): a PU or PE reports a PE it cannot reach."""


EndpointUnreachable.TYPE = AsapType.ENDPOINT_UNREACHABLE


@dataclass(frozen=True, slots=True)
class ServerAnnounce(Message):
    """ASAP_SERVER_ANNOUNCE (2.2.10): an ENRP server and where to reach it (SCTP or TCP)."""

    server_identifier: int
    transports: tuple[SctpTransport | TcpTransport, ...] = ()

    def _body(self) -> bytes:
        return _U32.pack(
            check_unsigned(self.server_identifier, 32, "server identifier")
        ) + b"".join(t.encode() for t in self.transports)

    @classmethod
    def _decode(cls, ctx: DecodeContext, flags: int, start: int, end: int) -> Self:
        if end - start < 4:
            raise ctx.invalid("truncated server announce", start - 4, end)
        (server,) = _U32.unpack_from(ctx.data, start)
        p = Parameters(ctx, start + 4, end)
        transports: list[SctpTransport | TcpTransport] = p.many(ASAP_TRANSPORT_CLASSES)
        p.done()
        return cls(server, tuple(transports))


ServerAnnounce.TYPE = AsapType.SERVER_ANNOUNCE


@dataclass(frozen=True, slots=True)
class _CookieMessage(Message):
    """Shared shape of ASAP_COOKIE and ASAP_COOKIE_ECHO: one Cookie parameter."""

    cookie: bytes

    def _body(self) -> bytes:
        return CookieParameter(self.cookie).encode()

    @classmethod
    def _decode(cls, ctx: DecodeContext, flags: int, start: int, end: int) -> Self:
        p = Parameters(ctx, start, end)
        cookie = p.one(CookieParameter, "cookie").cookie
        p.done()
        return cls(cookie)


@dataclass(frozen=True, slots=True)
class Cookie(_CookieMessage):
    """ASAP_COOKIE (2.2.11): state a PE hands its PU for a later failover."""


Cookie.TYPE = AsapType.COOKIE


@dataclass(frozen=True, slots=True)
class CookieEcho(Message):
    """ASAP_COOKIE_ECHO (2.2.12): a PU replays the last cookie to a new PE.

    ``resent`` is this implementation's private parameter 0x8e02 (sent only when set): how
    many of the application messages that follow were sent to the failed PE already and
    may have been processed there. ``cookie`` is empty when the failed PE sent none.
    """

    cookie: bytes
    resent: int | None = None

    def _body(self) -> bytes:
        body = CookieParameter(self.cookie).encode()
        if self.resent is not None:
            body += ResentMessages(self.resent).encode()
        return body

    @classmethod
    def _decode(cls, ctx: DecodeContext, flags: int, start: int, end: int) -> Self:
        p = Parameters(ctx, start, end)
        cookie = p.one(CookieParameter, "cookie").cookie
        resent = p.optional(ResentMessages, "resent messages")
        p.done()
        return cls(cookie, resent.count if resent is not None else None)


CookieEcho.TYPE = AsapType.COOKIE_ECHO


@dataclass(frozen=True, slots=True)
class BusinessCard(Message):
    """ASAP_BUSINESS_CARD (2.2.13): a pool handle and a preferred failover order of PEs.

    ``policy`` (the failover policy) is RSPLIB's addition, sent only when set.
    """

    pool_handle: bytes
    pool_elements: tuple[PoolElementParameter, ...] = ()
    policy: SelectionPolicy | None = None

    def _body(self) -> bytes:
        body = PoolHandleParameter(self.pool_handle).encode()
        if self.policy is not None:
            body += self.policy.encode()
        return body + b"".join(pe.encode() for pe in self.pool_elements)

    @classmethod
    def _decode(cls, ctx: DecodeContext, flags: int, start: int, end: int) -> Self:
        p = Parameters(ctx, start, end)
        handle = p.one(PoolHandleParameter, "pool handle").pool_handle
        policy = p.optional(SelectionPolicy, "failover policy")
        elements = p.many(PoolElementParameter)
        p.done()
        return cls(handle, tuple(elements), policy)


BusinessCard.TYPE = AsapType.BUSINESS_CARD


@dataclass(frozen=True, slots=True)
class ErrorMessage(Message):
    """ASAP_ERROR (2.2.14): reports an unrecognized message or parameter to its sender."""

    error: OperationError

    def _body(self) -> bytes:
        return self.error.encode()

    @classmethod
    def _decode(cls, ctx: DecodeContext, flags: int, start: int, end: int) -> Self:
        p = Parameters(ctx, start, end)
        error = p.one(OperationError, "operation error")
        p.done()
        return cls(error)


ErrorMessage.TYPE = AsapType.ERROR


AsapMessage: TypeAlias = (
    Registration
    | Deregistration
    | RegistrationResponse
    | DeregistrationResponse
    | HandleResolution
    | HandleResolutionResponse
    | EndpointKeepAlive
    | EndpointKeepAliveAck
    | EndpointUnreachable
    | ServerAnnounce
    | Cookie
    | CookieEcho
    | BusinessCard
    | ErrorMessage
)

MESSAGE_CLASSES: dict[int, type[Message]] = registry_of(
    Registration,
    Deregistration,
    RegistrationResponse,
    DeregistrationResponse,
    HandleResolution,
    HandleResolutionResponse,
    EndpointKeepAlive,
    EndpointKeepAliveAck,
    EndpointUnreachable,
    ServerAnnounce,
    Cookie,
    CookieEcho,
    BusinessCard,
    ErrorMessage,
)


def decode(data: bytes | bytearray | memoryview, limits: Limits = DEFAULT_LIMITS) -> AsapMessage:
    """One ASAP message; raises MalformedMessage (with the RFC 5354 cause) otherwise."""
    return decode_message(data, MESSAGE_CLASSES, limits, "ASAP")  # type: ignore[return-value]
