"""ENRP messages (RFC 5353 section 2, types 0x01-0x0a).

``decode(data)`` returns one message object; every message has ``TYPE`` and ``encode()``.
Every ENRP message starts with the sending and the receiving server's identifiers (the
receiving one is 0 when the message is meant for every peer).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import IntEnum
from typing import Self, TypeAlias

from twisted_rserpool.wire.limits import DEFAULT_LIMITS, Limits
from twisted_rserpool.wire.message import Message, Parameters, decode_message, registry_of
from twisted_rserpool.wire.parameters import (
    DecodeContext,
    OperationError,
    PEChecksumParameter,
    PoolElementParameter,
    PoolHandleParameter,
    ServerInformation,
    check_unsigned,
    decode_parameters,
)

_SERVERS = struct.Struct(">II")
_SERVERS_TARGET = struct.Struct(">III")
_U32 = struct.Struct(">I")
_SERVERS_ACTION = struct.Struct(">IIHH")


class EnrpType(IntEnum):
    """RFC 5353 section 2, figure 1."""

    PRESENCE = 0x01
    HANDLE_TABLE_REQUEST = 0x02
    HANDLE_TABLE_RESPONSE = 0x03
    HANDLE_UPDATE = 0x04
    LIST_REQUEST = 0x05
    LIST_RESPONSE = 0x06
    INIT_TAKEOVER = 0x07
    INIT_TAKEOVER_ACK = 0x08
    TAKEOVER_SERVER = 0x09
    ERROR = 0x0A


class UpdateAction(IntEnum):
    """RFC 5353 section 2.4."""

    ADD_PE = 0x0000
    DEL_PE = 0x0001


_REPLY_REQUIRED = 0x01  # ENRP_PRESENCE "reply required" (RFC 5353 2.1 text; RSPLIB's R bit)
_OWN_CHILDREN_ONLY = 0x01  # W
_REJECT = 0x01  # R
_MORE_TO_SEND = 0x02  # M


def _u32(value: int, name: str) -> int:
    return check_unsigned(value, 32, name)


def _pack_servers(sending: int, receiving: int) -> bytes:
    return _SERVERS.pack(
        _u32(sending, "sending server identifier"), _u32(receiving, "receiving server identifier")
    )


def _servers(ctx: DecodeContext, start: int, end: int, name: str) -> tuple[int, int]:
    if end - start < 8:
        raise ctx.invalid(f"truncated {name}", start - 4, end)
    sending, receiving = _SERVERS.unpack_from(ctx.data, start)
    return sending, receiving


@dataclass(frozen=True, slots=True)
class Presence(Message):
    """ENRP_PRESENCE (2.1): a server's heartbeat, carrying its PE checksum.

    ``reply_required`` asks the receiver to answer with its own presence and server
    information (RFC 5353 mentions it; the figure shows no bit, RSPLIB uses the lowest).
    """

    sending_server_identifier: int
    receiving_server_identifier: int
    checksum: int | None = None
    server_information: ServerInformation | None = None
    reply_required: bool = False

    def _flags(self) -> int:
        return _REPLY_REQUIRED if self.reply_required else 0

    def _body(self) -> bytes:
        body = _pack_servers(self.sending_server_identifier, self.receiving_server_identifier)
        if self.checksum is not None:
            body += PEChecksumParameter(self.checksum).encode()
        if self.server_information is not None:
            body += self.server_information.encode()
        return body

    @classmethod
    def _decode(cls, ctx: DecodeContext, flags: int, start: int, end: int) -> Self:
        sending, receiving = _servers(ctx, start, end, "presence")
        p = Parameters(ctx, start + 8, end)
        checksum = p.optional(PEChecksumParameter, "PE checksum")
        information = p.optional(ServerInformation, "server information")
        p.done()
        return cls(
            sending,
            receiving,
            checksum.checksum if checksum is not None else None,
            information,
            bool(flags & _REPLY_REQUIRED),
        )


Presence.TYPE = EnrpType.PRESENCE


@dataclass(frozen=True, slots=True)
class HandleTableRequest(Message):
    """ENRP_HANDLE_TABLE_REQUEST (2.2); ``own_children_only`` is the W flag."""

    sending_server_identifier: int
    receiving_server_identifier: int
    own_children_only: bool = False

    def _flags(self) -> int:
        return _OWN_CHILDREN_ONLY if self.own_children_only else 0

    def _body(self) -> bytes:
        return _pack_servers(self.sending_server_identifier, self.receiving_server_identifier)

    @classmethod
    def _decode(cls, ctx: DecodeContext, flags: int, start: int, end: int) -> Self:
        sending, receiving = _servers(ctx, start, end, "handle table request")
        Parameters(ctx, start + 8, end).done()
        return cls(sending, receiving, bool(flags & _OWN_CHILDREN_ONLY))


HandleTableRequest.TYPE = EnrpType.HANDLE_TABLE_REQUEST


@dataclass(frozen=True, slots=True)
class PoolEntry:
    """One pool of an ENRP_HANDLE_TABLE_RESPONSE: a pool handle and its PEs."""

    pool_handle: bytes
    pool_elements: tuple[PoolElementParameter, ...]

    def encode(self) -> bytes:
        return PoolHandleParameter(self.pool_handle).encode() + b"".join(
            pe.encode() for pe in self.pool_elements
        )


@dataclass(frozen=True, slots=True)
class HandleTableResponse(Message):
    """ENRP_HANDLE_TABLE_RESPONSE (2.3): a page of the handlespace.

    ``more_to_send`` is the M flag (another page follows), ``reject`` the R flag.
    """

    sending_server_identifier: int
    receiving_server_identifier: int
    pool_entries: tuple[PoolEntry, ...] = ()
    more_to_send: bool = False
    reject: bool = False

    def _flags(self) -> int:
        return (_MORE_TO_SEND if self.more_to_send else 0) | (_REJECT if self.reject else 0)

    def _body(self) -> bytes:
        return _pack_servers(
            self.sending_server_identifier, self.receiving_server_identifier
        ) + b"".join(entry.encode() for entry in self.pool_entries)

    @classmethod
    def _decode(cls, ctx: DecodeContext, flags: int, start: int, end: int) -> Self:
        sending, receiving = _servers(ctx, start, end, "handle table response")
        entries: list[PoolEntry] = []
        handle: bytes | None = None
        elements: list[PoolElementParameter] = []
        for parameter in decode_parameters(ctx, start + 8, end):
            if isinstance(parameter, PoolHandleParameter):
                if handle is not None:
                    if not elements:
                        raise ctx.invalid("a pool entry needs at least one PE", start - 4, end)
                    entries.append(PoolEntry(handle, tuple(elements)))
                handle, elements = parameter.pool_handle, []
            elif isinstance(parameter, PoolElementParameter):
                if handle is None:
                    raise ctx.invalid("a PE precedes its pool handle", start - 4, end)
                elements.append(parameter)
            elif not parameter.TYPE & 0x8000:
                raise ctx.invalid(
                    f"unexpected {type(parameter).__name__} in a handle table response",
                    start - 4,
                    end,
                )
        if handle is not None:
            if not elements:
                raise ctx.invalid("a pool entry needs at least one PE", start - 4, end)
            entries.append(PoolEntry(handle, tuple(elements)))
        reject = bool(flags & _REJECT)
        if reject and entries:
            raise ctx.invalid("a rejecting handle table response carries no pools", start - 4, end)
        return cls(sending, receiving, tuple(entries), bool(flags & _MORE_TO_SEND), reject)


HandleTableResponse.TYPE = EnrpType.HANDLE_TABLE_RESPONSE


@dataclass(frozen=True, slots=True)
class HandleUpdate(Message):
    """ENRP_HANDLE_UPDATE (2.4): a home server announces a PE added, updated or removed."""

    sending_server_identifier: int
    receiving_server_identifier: int
    update_action: UpdateAction
    pool_handle: bytes
    pool_element: PoolElementParameter

    def _body(self) -> bytes:
        return (
            _pack_servers(self.sending_server_identifier, self.receiving_server_identifier)
            + struct.pack(">HH", self.update_action, 0)
            + PoolHandleParameter(self.pool_handle).encode()
            + self.pool_element.encode()
        )

    @classmethod
    def _decode(cls, ctx: DecodeContext, flags: int, start: int, end: int) -> Self:
        if end - start < 12:
            raise ctx.invalid("truncated handle update", start - 4, end)
        sending, receiving, action, _reserved = _SERVERS_ACTION.unpack_from(ctx.data, start)
        if action not in (UpdateAction.ADD_PE, UpdateAction.DEL_PE):
            raise ctx.invalid(f"unknown update action 0x{action:04x}", start - 4, end)
        p = Parameters(ctx, start + 12, end)
        handle = p.one(PoolHandleParameter, "pool handle").pool_handle
        element = p.one(PoolElementParameter, "pool element")
        p.done()
        return cls(sending, receiving, UpdateAction(action), handle, element)


HandleUpdate.TYPE = EnrpType.HANDLE_UPDATE


@dataclass(frozen=True, slots=True)
class ListRequest(Message):
    """ENRP_LIST_REQUEST (2.5): asks a peer for its server list."""

    sending_server_identifier: int
    receiving_server_identifier: int

    def _body(self) -> bytes:
        return _pack_servers(self.sending_server_identifier, self.receiving_server_identifier)

    @classmethod
    def _decode(cls, ctx: DecodeContext, flags: int, start: int, end: int) -> Self:
        sending, receiving = _servers(ctx, start, end, "list request")
        Parameters(ctx, start + 8, end).done()
        return cls(sending, receiving)


ListRequest.TYPE = EnrpType.LIST_REQUEST


@dataclass(frozen=True, slots=True)
class ListResponse(Message):
    """ENRP_LIST_RESPONSE (2.6): the servers a peer knows; ``reject`` is the R flag."""

    sending_server_identifier: int
    receiving_server_identifier: int
    servers: tuple[ServerInformation, ...] = ()
    reject: bool = False

    def _flags(self) -> int:
        return _REJECT if self.reject else 0

    def _body(self) -> bytes:
        return _pack_servers(
            self.sending_server_identifier, self.receiving_server_identifier
        ) + b"".join(server.encode() for server in self.servers)

    @classmethod
    def _decode(cls, ctx: DecodeContext, flags: int, start: int, end: int) -> Self:
        sending, receiving = _servers(ctx, start, end, "list response")
        p = Parameters(ctx, start + 8, end)
        servers = p.many(ServerInformation)
        p.done()
        reject = bool(flags & _REJECT)
        if reject and servers:
            raise ctx.invalid("a rejecting list response carries no servers", start - 4, end)
        return cls(sending, receiving, tuple(servers), reject)


ListResponse.TYPE = EnrpType.LIST_RESPONSE


@dataclass(frozen=True, slots=True)
class _TakeoverMessage(Message):
    """Shared shape of the three takeover messages: sender, receiver, target."""

    sending_server_identifier: int
    receiving_server_identifier: int
    target_server_identifier: int

    def _body(self) -> bytes:
        return _pack_servers(
            self.sending_server_identifier, self.receiving_server_identifier
        ) + _U32.pack(_u32(self.target_server_identifier, "target server identifier"))

    @classmethod
    def _decode(cls, ctx: DecodeContext, flags: int, start: int, end: int) -> Self:
        if end - start < 12:
            raise ctx.invalid("truncated takeover message", start - 4, end)
        sending, receiving, target = _SERVERS_TARGET.unpack_from(ctx.data, start)
        Parameters(ctx, start + 12, end).done()
        return cls(sending, receiving, target)


@dataclass(frozen=True, slots=True)
class InitTakeover(_TakeoverMessage):
    """ENRP_INIT_TAKEOVER (2.7): the sender intends to take over the target server."""


InitTakeover.TYPE = EnrpType.INIT_TAKEOVER


@dataclass(frozen=True, slots=True)
class InitTakeoverAck(_TakeoverMessage):
    """ENRP_INIT_TAKEOVER_ACK (2.8): the sender does not object to the takeover."""


InitTakeoverAck.TYPE = EnrpType.INIT_TAKEOVER_ACK


@dataclass(frozen=True, slots=True)
class TakeoverServer(_TakeoverMessage):
    """ENRP_TAKEOVER_SERVER (2.9): the sender now owns the target's PEs."""


TakeoverServer.TYPE = EnrpType.TAKEOVER_SERVER


@dataclass(frozen=True, slots=True)
class ErrorMessage(Message):
    """ENRP_ERROR (2.10): reports an operational error to a peer."""

    sending_server_identifier: int
    receiving_server_identifier: int
    error: OperationError

    def _body(self) -> bytes:
        return (
            _pack_servers(self.sending_server_identifier, self.receiving_server_identifier)
            + self.error.encode()
        )

    @classmethod
    def _decode(cls, ctx: DecodeContext, flags: int, start: int, end: int) -> Self:
        sending, receiving = _servers(ctx, start, end, "ENRP error")
        p = Parameters(ctx, start + 8, end)
        error = p.one(OperationError, "operation error")
        p.done()
        return cls(sending, receiving, error)


ErrorMessage.TYPE = EnrpType.ERROR


EnrpMessage: TypeAlias = (
    Presence
    | HandleTableRequest
    | HandleTableResponse
    | HandleUpdate
    | ListRequest
    | ListResponse
    | InitTakeover
    | InitTakeoverAck
    | TakeoverServer
    | ErrorMessage
)

MESSAGE_CLASSES: dict[int, type[Message]] = registry_of(
    Presence,
    HandleTableRequest,
    HandleTableResponse,
    HandleUpdate,
    ListRequest,
    ListResponse,
    InitTakeover,
    InitTakeoverAck,
    TakeoverServer,
    ErrorMessage,
)


def decode(data: bytes | bytearray | memoryview, limits: Limits = DEFAULT_LIMITS) -> EnrpMessage:
    """One ENRP message; raises MalformedMessage (with the RFC 5354 cause) otherwise."""
    return decode_message(data, MESSAGE_CLASSES, limits, "ENRP")  # type: ignore[return-value]
