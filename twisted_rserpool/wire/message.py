"""The common message format of ASAP and ENRP (RFC 5354 section 4), shared by both codecs."""

from __future__ import annotations

import struct
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from typing import ClassVar, Self, TypeVar

from twisted_rserpool.wire.errors import CauseCode, MalformedMessage
from twisted_rserpool.wire.fastpath import mypyc_attr
from twisted_rserpool.wire.limits import DEFAULT_LIMITS, Limits
from twisted_rserpool.wire.parameters import (
    DecodeContext,
    Parameter,
    decode_parameters,
)

_HEADER = struct.Struct(">BBH")
_PADDING = (b"", b"\x00\x00\x00", b"\x00\x00", b"\x00")

_T = TypeVar("_T")


@mypyc_attr(allow_interpreted_subclasses=True)
class _TypedMessage:
    """Where :attr:`Message.TYPE` (the message type code) is declared: outside the dataclass
    bodies, because mypyc hands every class attribute of a dataclass's body to
    ``@dataclass`` as a field, ``ClassVar`` or not (mypyc issue 1122). Each message class
    sets its ``TYPE`` right after its body."""

    __slots__ = ()
    TYPE: ClassVar[int] = 0


# Interpreted subclasses allowed in a mypyc build: enrp.resolution's cached answer is a
# HandleResolutionResponse (so its bases, this one, must allow them too).
@mypyc_attr(allow_interpreted_subclasses=True)
@dataclass(frozen=True, slots=True)
class Message(_TypedMessage):
    """Base of every ASAP and ENRP message.

    ``unrecognized_parameters`` holds, after decoding, the TLVs of unknown parameters whose
    type asked to be skipped and reported (top bits 11): what the ASAP_ERROR / ENRP_ERROR
    must carry back. It is never encoded and does not take part in equality.
    """

    unrecognized_parameters: tuple[bytes, ...] = field(
        default=(), compare=False, repr=False, kw_only=True
    )

    def _flags(self) -> int:
        return 0

    def _body(self) -> bytes:
        raise NotImplementedError  # every concrete message defines its body

    def encode(self) -> bytes:
        """The message on the wire, padded to a multiple of four bytes."""
        body = self._body()
        length = 4 + len(body)
        if length > 0xFFFF:
            raise ValueError(f"{type(self).__name__} is too long ({length} bytes)")
        return _HEADER.pack(self.TYPE, self._flags(), length) + body + _PADDING[length & 3]

    @classmethod
    def _decode_fast(cls, data: bytes, limits: Limits, flags: int, end: int) -> Self | None:
        """The message in ``data[4:end]`` if it has the shape peers send all the time,
        decoded without a :class:`DecodeContext` and the general parameter machinery;
        ``None`` for anything else (most classes: always), which :meth:`_decode` then
        decodes or refuses. Where it answers it must return what :meth:`_decode` returns.
        """
        return None

    @classmethod
    def _decode(cls, ctx: DecodeContext, flags: int, start: int, end: int) -> Self:
        raise NotImplementedError  # every concrete message defines its decoder


def name_slots(cls: type) -> None:
    """List a message class's fields as its ``__slots__`` where a mypyc build left none.

    mypyc keeps a compiled dataclass's fields in its own C slots and names no
    ``__slots__``; ``@dataclass(slots=True)`` on a subclass written in Python would then
    give the subclass a slot of its own for every inherited field, which shadows the
    compiled one: the subclass's ``__init__`` fills its slots, and the compiled methods
    read the empty originals. Named, the inherited fields are left to the compiled class.
    Only for a class that no compiled class subclasses: mypyc refuses to create a class
    under a ``__slots__`` (so not for :class:`Message`). Nothing changes in pure Python,
    where the class has its ``__slots__`` already.
    """
    if "__slots__" not in cls.__dict__:
        setattr(cls, "__slots__", tuple(f.name for f in fields(cls)))  # noqa: B010


class Parameters:
    """The decoded parameters of one message, taken out one kind at a time.

    Each message decoder asks for what its RFC figure lists; :meth:`done` then refuses
    anything left over, except parameters whose type says "skip" when unknown.
    """

    __slots__ = ("_ctx", "_end", "_remaining", "_start")

    def __init__(self, ctx: DecodeContext, start: int, end: int) -> None:
        self._ctx = ctx
        self._start = start
        self._end = end
        self._remaining: list[Parameter] = decode_parameters(ctx, start, end)

    def _invalid(self, reason: str) -> MalformedMessage:
        # The offending "TLV" of a wrong parameter set is the whole message.
        return self._ctx.invalid(reason, 0, self._end)

    def _take(self, kind: type[_T] | tuple[type, ...]) -> list[_T]:
        found = [p for p in self._remaining if isinstance(p, kind)]
        if found:
            self._remaining = [p for p in self._remaining if not isinstance(p, kind)]
        return found  # type: ignore[return-value]

    def one(self, kind: type[_T], name: str) -> _T:
        """Exactly one parameter of this kind."""
        found = self._take(kind)
        if len(found) != 1:
            raise self._invalid(f"expected one {name} parameter, found {len(found)}")
        return found[0]

    def optional(self, kind: type[_T], name: str) -> _T | None:
        """At most one parameter of this kind."""
        found = self._take(kind)
        if len(found) > 1:
            raise self._invalid(f"expected at most one {name} parameter, found {len(found)}")
        return found[0] if found else None

    def many(self, kind: type[_T] | tuple[type, ...]) -> list[_T]:
        """Every parameter of this kind, in order."""
        return self._take(kind)

    def done(self) -> None:
        """Refuse parameters the message does not define (unless their type says skip)."""
        for parameter in self._remaining:
            if not parameter.TYPE & 0x8000:
                raise self._invalid(
                    f"unexpected {type(parameter).__name__} parameter in this message"
                )


def decode_message(
    data: bytes | bytearray | memoryview,
    registry: Mapping[int, type[Message]],
    limits: Limits = DEFAULT_LIMITS,
    protocol: str = "RSerPool",
) -> Message:
    """One message from ``data`` (which may carry up to three bytes of padding; any buffer,
    copied to bytes unless it is bytes).

    An unknown message type raises MalformedMessage with cause Unrecognized Message;
    ``report`` follows the type's top two bits (01 report, anything else discard).
    """
    size = len(data)
    if size >= 4:
        mtype, flags, length = _HEADER.unpack_from(data, 0)
        cls = registry.get(mtype)
        # Every header check of _refusal at once: a known type, and a length that covers
        # the header, fits in what arrived and leaves at most 3 bytes of padding, all
        # within the limit.
        if (
            cls is not None
            and 4 <= length <= size <= length + 3
            and size <= limits.max_message_size
        ):
            raw = data if type(data) is bytes else bytes(data)
            message = cls._decode_fast(raw, limits, flags, length)
            if message is not None:
                return message
            ctx = DecodeContext(raw, limits)
            message = cls._decode(ctx, flags, 4, length)
            if ctx.unrecognized:
                message = replace(message, unrecognized_parameters=tuple(ctx.unrecognized))
            return message
    raise _refusal(data, registry, limits, protocol)


def _refusal(
    data: bytes | bytearray | memoryview,
    registry: Mapping[int, type[Message]],
    limits: Limits,
    protocol: str,
) -> MalformedMessage:
    """Why :func:`decode_message` refuses ``data``'s header (only called for a header it
    refuses), in the order of the checks: size, limit, length, padding, type."""
    size = len(data)
    if size < 4:
        return MalformedMessage(
            f"{protocol} message of {size} bytes is shorter than its header",
            offending=bytes(data[:size]),
        )
    mtype, _, length = _HEADER.unpack_from(data, 0)
    if size > limits.max_message_size or length > limits.max_message_size:
        return MalformedMessage(
            f"{protocol} message of {max(size, length)} bytes exceeds the limit of "
            f"{limits.max_message_size}",
            CauseCode.LACK_OF_RESOURCES,
        )
    if length < 4:
        return MalformedMessage(
            f"{protocol} message length {length} is shorter than its header",
            offending=bytes(data[: limits.max_offending_bytes]),
        )
    if length > size:
        return MalformedMessage(
            f"truncated {protocol} message: length field says {length}, {size} bytes arrived",
            offending=bytes(data[: limits.max_offending_bytes]),
        )
    if size - length > 3:
        return MalformedMessage(
            f"{size - length} bytes follow the {protocol} message (at most 3 bytes of padding)",
            offending=bytes(data[: limits.max_offending_bytes]),
        )
    if mtype in registry:
        raise AssertionError(f"decode_message refused a valid {protocol} header")
    return MalformedMessage(
        f"unrecognized {protocol} message type 0x{mtype:02x}",
        CauseCode.UNRECOGNIZED_MESSAGE,
        report=(mtype >> 6) == 1,
        offending=bytes(data[: min(length, limits.max_offending_bytes)]),
    )


def registry_of(*classes: type[Message]) -> dict[int, type[Message]]:
    """Message classes keyed by their TYPE."""
    return {cls.TYPE: cls for cls in classes}


__all__ = ["Message", "Parameters", "decode_message", "name_slots", "registry_of"]
