"""The fast decoders (``_decode_fast``) agree with the checked ones wherever they answer,
and :func:`decode_message` refuses exactly what its checks in order refuse.

A fast decoder never raises: it returns the message or ``None``, and ``None`` sends the
message to the checked decoder, which decides. So "the same errors" means: wherever the
checked decoder refuses (or reports an unrecognized parameter), the fast one declines.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from dataclasses import replace

from hypothesis import example, given, settings
from hypothesis import strategies as st

from tests.wire.strategies import pool_handles, u32
from twisted_rserpool.wire import asap, enrp
from twisted_rserpool.wire.errors import CauseCode, MalformedMessage
from twisted_rserpool.wire.limits import Limits
from twisted_rserpool.wire.message import Message, decode_message
from twisted_rserpool.wire.parameters import (
    DecodeContext,
    HandleResolutionItems,
    ParameterType,
    PEIdentifierParameter,
    tlv,
)

_TLV = struct.Struct(">HH")
POOL_HANDLE = ParameterType.POOL_HANDLE
PE_IDENTIFIER = ParameterType.PE_IDENTIFIER
ITEMS = ParameterType.HANDLE_RESOLUTION_ITEMS

#: The messages with a fast decoder: one pool handle and one PE identifier.
PE_REFERENCES: tuple[type[asap._PoolElementReference], ...] = (
    asap.EndpointKeepAliveAck,
    asap.Deregistration,
    asap.EndpointUnreachable,
)

limits = st.one_of(
    st.just(Limits()),
    st.builds(
        Limits,
        max_parameters=st.sampled_from([0, 1, 2, 2, 3]),
        max_depth=st.sampled_from([0, 1, 1, 2]),
        max_pool_handle_length=st.integers(1, 12),
    ),
)

Outcome = Message | MalformedMessage


def _frame(mtype: int, flags: int, body: bytes) -> bytes:
    return struct.pack(">BBH", mtype, flags, 4 + len(body)) + body


def _corrupt(draw: st.DrawFn, body: bytes) -> bytes:
    """Sometimes a byte or two changed, sometimes the end cut off."""
    changed = bytearray(body)
    for _ in range(draw(st.sampled_from([0, 0, 0, 1, 2]))):
        if changed:
            changed[draw(st.integers(0, len(changed) - 1))] = draw(st.integers(0, 255))
    if not draw(st.integers(0, 3)):
        del changed[draw(st.integers(0, len(changed))) :]
    return bytes(changed)


def _handle_tlv(draw: st.DrawFn, kinds: list[int]) -> bytes:
    """A pool handle TLV (or another type in its place), padded or not."""
    handle = draw(st.binary(min_size=draw(st.sampled_from([0, 1, 10, 20])), max_size=70))
    first = _TLV.pack(draw(st.sampled_from(kinds)), 4 + len(handle)) + handle
    return first + (bytes(-len(first) % 4) if draw(st.integers(0, 4)) else b"")


def _extra_tlv(draw: st.DrawFn, kinds: list[int]) -> bytes:
    """Now and then one more parameter: unknown (skip, skip and report), or a duplicate."""
    if draw(st.integers(0, 3)):
        return b""
    return tlv(draw(st.sampled_from(kinds)), draw(st.binary(max_size=8)))


@st.composite
def resolution_bodies(draw: st.DrawFn) -> bytes:
    """Bodies near what pool users send: mostly a pool handle TLV, maybe the items TLV,
    maybe another parameter, sometimes a wrong type or length, a byte changed, cut off."""
    body = _handle_tlv(draw, [POOL_HANDLE] * 6 + [ITEMS, 0x000C])
    if draw(st.booleans()):
        body += HandleResolutionItems(draw(u32)).encode()
    body += _extra_tlv(draw, [ITEMS, 0xC001, 0x8001, POOL_HANDLE])
    return _corrupt(draw, body)


@st.composite
def pe_reference_bodies(draw: st.DrawFn) -> bytes:
    """Bodies near what PEs send back to keep-alives: a pool handle TLV and a PE identifier
    TLV (of the right length, mostly), sometimes the other way round, either missing, a
    parameter more, up to 3 bytes of trailing padding, a byte changed, cut off."""
    handle = _handle_tlv(draw, [POOL_HANDLE] * 6 + [PE_IDENTIFIER, 0x000D])
    value = struct.pack(">I", draw(u32))
    pe_length = draw(st.sampled_from([8, 8, 8, 8, 4, 7, 9, 12]))
    pe = tlv(draw(st.sampled_from([PE_IDENTIFIER] * 6 + [POOL_HANDLE])), value)
    pe = _TLV.pack(*_TLV.unpack_from(pe)[:1], pe_length) + pe[4:]
    parts = [handle, pe]
    if not draw(st.integers(0, 5)):
        parts.reverse()
    if not draw(st.integers(0, 7)):
        parts.pop(draw(st.integers(0, 1)))
    body = b"".join(parts) + _extra_tlv(draw, [PE_IDENTIFIER, 0xC001, 0x8001, POOL_HANDLE])
    body += bytes(draw(st.sampled_from([0, 0, 0, 1, 2, 3])))
    return _corrupt(draw, body)


def _checked(cls: type[Message], data: bytes, limits: Limits) -> tuple[Outcome, DecodeContext]:
    ctx = DecodeContext(data, limits)
    try:
        return cls._decode(ctx, data[1], 4, len(data)), ctx
    except MalformedMessage as error:
        return error, ctx


def _agree(cls: type[Message], data: bytes, limits: Limits) -> Message | None:
    """The fast decoder's answer, after checking it against the checked decoder's."""
    fast = cls._decode_fast(data, limits, data[1], len(data))
    reference, ctx = _checked(cls, data, limits)
    if fast is not None:
        assert type(fast) is cls
        assert fast == reference
        assert not ctx.unrecognized
        assert fast.unrecognized_parameters == ()
    return fast


_HANDLE = tlv(POOL_HANDLE, b"handle-of-20-bytes!!")
_ITEMS = HandleResolutionItems(3).encode()
_PE = PEIdentifierParameter(0x12345678).encode()


@settings(max_examples=1000)
@given(resolution_bodies(), st.integers(0, 255), limits)
# The edges, explicitly: each is a rule of the checked decoder the fast one must keep.
@example(_HANDLE, 0, Limits(max_pool_handle_length=8))
@example(tlv(POOL_HANDLE, b"") + _ITEMS, 0, Limits())
@example(_HANDLE + tlv(ITEMS, bytes(8)), 0, Limits())
@example(_HANDLE + _ITEMS, 0, Limits(max_parameters=1))
@example(_HANDLE, 0, Limits(max_parameters=0))
@example(_HANDLE, 0, Limits(max_depth=0))
@example(_HANDLE + _ITEMS + tlv(0xC001, b"x"), 0, Limits())
@example(_HANDLE[:-1], 0, Limits())
@example(_HANDLE + _ITEMS[:-1], 0, Limits())
def test_the_fast_resolution_decoder_agrees_with_the_checked_one(
    body: bytes, flags: int, limits: Limits
) -> None:
    """Whatever the body and limits, the fast decoder of ASAP_HANDLE_RESOLUTION either
    declines or returns exactly what the checked decoder returns, and never where the
    checked one refuses or reports a parameter."""
    _agree(asap.HandleResolution, _frame(0x05, flags, body), limits)


@settings(max_examples=1500)
@given(pe_reference_bodies(), st.integers(0, 255), limits, st.sampled_from(PE_REFERENCES))
@example(_HANDLE + _PE, 0, Limits(max_pool_handle_length=19), asap.EndpointKeepAliveAck)
@example(_HANDLE + _PE, 0, Limits(max_pool_handle_length=20), asap.EndpointKeepAliveAck)
@example(tlv(POOL_HANDLE, b"") + _PE, 0, Limits(), asap.EndpointKeepAliveAck)
@example(_HANDLE + _PE, 0, Limits(max_parameters=1), asap.EndpointKeepAliveAck)
@example(_HANDLE + _PE, 0, Limits(max_depth=0), asap.EndpointKeepAliveAck)
@example(_PE + _HANDLE, 0, Limits(), asap.EndpointKeepAliveAck)
@example(_HANDLE + _PE + _PE, 0, Limits(), asap.EndpointKeepAliveAck)
@example(_HANDLE + _PE + tlv(0xC001, b"x"), 0, Limits(), asap.EndpointKeepAliveAck)
@example(_HANDLE + _PE + tlv(0x8001, b""), 0, Limits(), asap.EndpointKeepAliveAck)
@example(_HANDLE + _PE + b"\0\0\0", 0, Limits(), asap.EndpointKeepAliveAck)
@example(_HANDLE + _PE[:-1], 0, Limits(), asap.EndpointKeepAliveAck)
@example(_HANDLE + _TLV.pack(PE_IDENTIFIER, 12) + bytes(8), 0, Limits(), asap.Deregistration)
@example(_HANDLE + _TLV.pack(PE_IDENTIFIER, 7) + bytes(4), 0, Limits(), asap.Deregistration)
@example(_HANDLE[:-3] + _PE, 0, Limits(), asap.EndpointUnreachable)
@example(_TLV.pack(POOL_HANDLE, 5) + b"h" + _PE, 0, Limits(), asap.EndpointUnreachable)
def test_the_fast_pe_reference_decoder_agrees_with_the_checked_one(
    body: bytes, flags: int, limits: Limits, cls: type[Message]
) -> None:
    """ASAP_ENDPOINT_KEEP_ALIVE_ACK (and the other messages of its shape: deregistration,
    endpoint unreachable): whatever the body, flags and limits, the fast decoder declines
    or returns exactly what the checked decoder returns, never where that one refuses."""
    _agree(cls, _frame(cls.TYPE, flags, body), limits)


@settings(max_examples=500)
@given(st.binary(max_size=80), st.integers(0, 255), limits, st.sampled_from(PE_REFERENCES))
def test_the_fast_decoders_on_random_bodies(
    body: bytes, flags: int, limits: Limits, cls: type[Message]
) -> None:
    """Fuzzing: on random bytes the fast decoders raise nothing and agree where they answer."""
    _agree(cls, _frame(cls.TYPE, flags, body), limits)
    _agree(asap.HandleResolution, _frame(0x05, flags, body), limits)


@given(pool_handles, st.booleans(), st.one_of(st.none(), u32))
def test_what_pool_users_send_takes_the_fast_path(
    handle: bytes, subscribe: bool, items: int | None
) -> None:
    """Every valid request of a pool user is decoded by the fast decoder, to itself."""
    message = asap.HandleResolution(handle, subscribe, items)
    data = message.encode()
    fast = asap.HandleResolution._decode_fast(data, Limits(), data[1], len(data))
    assert fast == message == asap.decode(data)


@given(pool_handles, u32, st.sampled_from(PE_REFERENCES))
def test_what_pes_send_takes_the_fast_path(
    handle: bytes, pe: int, cls: type[asap._PoolElementReference]
) -> None:
    """Every keep-alive acknowledgement (deregistration, unreachable report) a PE sends
    is decoded by the fast decoder, to itself, and so is it with the padding a sender
    may count in its length."""
    message = cls(handle, pe)
    data = message.encode()
    for wire in (data, data[:2] + struct.pack(">H", len(data) + 3) + data[4:] + b"\0\0\0"):
        fast = cls._decode_fast(wire, Limits(), wire[1], len(wire))
        assert type(fast) is cls
        assert fast == message == asap.decode(wire)


# --------------------------------------------------------------- decode_message's header


def _reference_decode(
    data: bytes, registry: Mapping[int, type[Message]], limits: Limits, protocol: str
) -> Message:
    """decode_message as it was before its fast path: every check in order, then the
    checked decoder of the message's class."""
    size = len(data)
    if size < 4:
        raise MalformedMessage(
            f"{protocol} message of {size} bytes is shorter than its header",
            offending=bytes(data[:size]),
        )
    mtype, flags, length = struct.unpack_from(">BBH", data, 0)
    if size > limits.max_message_size or length > limits.max_message_size:
        raise MalformedMessage(
            f"{protocol} message of {max(size, length)} bytes exceeds the limit of "
            f"{limits.max_message_size}",
            CauseCode.LACK_OF_RESOURCES,
        )
    if length < 4:
        raise MalformedMessage(
            f"{protocol} message length {length} is shorter than its header",
            offending=bytes(data[: limits.max_offending_bytes]),
        )
    if length > size:
        raise MalformedMessage(
            f"truncated {protocol} message: length field says {length}, {size} bytes arrived",
            offending=bytes(data[: limits.max_offending_bytes]),
        )
    if size - length > 3:
        raise MalformedMessage(
            f"{size - length} bytes follow the {protocol} message (at most 3 bytes of padding)",
            offending=bytes(data[: limits.max_offending_bytes]),
        )
    cls = registry.get(mtype)
    if cls is None:
        raise MalformedMessage(
            f"unrecognized {protocol} message type 0x{mtype:02x}",
            CauseCode.UNRECOGNIZED_MESSAGE,
            report=(mtype >> 6) == 1,
            offending=bytes(data[: min(length, limits.max_offending_bytes)]),
        )
    ctx = DecodeContext(bytes(data), limits)
    message = cls._decode(ctx, flags, 4, length)
    if ctx.unrecognized:
        message = replace(message, unrecognized_parameters=tuple(ctx.unrecognized))
    return message


def _outcome(decode: object, *arguments: object) -> tuple[object, ...]:
    try:
        message = decode(*arguments)  # type: ignore[operator]
    except MalformedMessage as error:
        return ("error", str(error), error.cause, error.report, error.offending)
    return ("message", type(message), message, message.unrecognized_parameters)


@st.composite
def framed(draw: st.DrawFn) -> bytes:
    """Messages with headers right and wrong: a valid message, or a random body, under a
    type near the registries' (known, unknown, each report bit), a length field that is
    right, short, long or random, and 0 to 5 bytes of padding."""
    if draw(st.booleans()):
        body = draw(st.sampled_from([_HANDLE + _PE, _HANDLE + _ITEMS, _HANDLE, b""]))
    else:
        body = draw(st.binary(max_size=40))
    mtype = draw(st.sampled_from([0x05, 0x08, 0x02, 0x09, 0x0F, 0x4F, 0x8F, 0xCF, 0x00]))
    length = 4 + len(body)
    length = draw(st.sampled_from([length, length, length - 1, length + 1, length - 4]))
    length = draw(st.one_of(st.just(length), st.integers(0, 0xFFFF))) if length >= 0 else 0
    padding = bytes(draw(st.integers(0, 5)))
    data = struct.pack(">BBH", mtype, draw(st.integers(0, 255)), length) + body + padding
    return data[: draw(st.integers(0, len(data)))] if not draw(st.integers(0, 5)) else data


@settings(max_examples=1500)
@given(
    framed(),
    st.one_of(st.just(Limits()), st.builds(Limits, max_message_size=st.integers(0, 40))),
    st.sampled_from([(asap.MESSAGE_CLASSES, "ASAP"), (enrp.MESSAGE_CLASSES, "ENRP")]),
    st.booleans(),
)
@example(b"\x08\x00\x00", Limits(), (asap.MESSAGE_CLASSES, "ASAP"), False)
@example(
    _frame(0x08, 0, _HANDLE + _PE),
    Limits(max_message_size=31),
    (asap.MESSAGE_CLASSES, "ASAP"),
    False,
)
@example(
    _frame(0x08, 0, _HANDLE + _PE) + b"\0\0\0",
    Limits(max_message_size=32),
    (asap.MESSAGE_CLASSES, "ASAP"),
    False,
)
@example(
    _frame(0x08, 0, _HANDLE + _PE) + b"\0\0\0\0", Limits(), (asap.MESSAGE_CLASSES, "ASAP"), True
)
@example(b"\x08\x00\x00\x03\x00", Limits(), (asap.MESSAGE_CLASSES, "ASAP"), False)
@example(b"\x4f\x00\x00\x04", Limits(), (asap.MESSAGE_CLASSES, "ASAP"), False)
def test_decode_message_refuses_what_its_checks_refuse(
    data: bytes,
    limits: Limits,
    registry: tuple[Mapping[int, type[Message]], str],
    as_memoryview: bool,
) -> None:
    """Headers right and wrong, bodies valid and not, bytes or a memoryview: decode_message
    (with its one-test header check and the fast decoders) gives the message, or the error
    with its text, cause, report flag and offending bytes, that the checks in order give."""
    classes, protocol = registry
    wire: bytes = memoryview(data) if as_memoryview else data  # type: ignore[assignment]
    assert _outcome(decode_message, wire, classes, limits, protocol) == _outcome(
        _reference_decode, data, classes, limits, protocol
    )
