"""ASAP_HANDLE_RESOLUTION's fast decoder agrees with the checked one wherever it answers."""

from __future__ import annotations

import struct

from hypothesis import example, given, settings
from hypothesis import strategies as st

from tests.wire.strategies import pool_handles, u32
from twisted_rserpool.wire import asap
from twisted_rserpool.wire.errors import MalformedMessage
from twisted_rserpool.wire.limits import Limits
from twisted_rserpool.wire.parameters import (
    DecodeContext,
    HandleResolutionItems,
    ParameterType,
    tlv,
)

_TLV = struct.Struct(">HH")
POOL_HANDLE = ParameterType.POOL_HANDLE
ITEMS = ParameterType.HANDLE_RESOLUTION_ITEMS

limits = st.one_of(
    st.just(Limits()),
    st.builds(
        Limits,
        max_parameters=st.sampled_from([0, 1, 2, 2, 3]),
        max_depth=st.sampled_from([0, 1, 1, 2]),
        max_pool_handle_length=st.integers(1, 12),
    ),
)


@st.composite
def bodies(draw: st.DrawFn) -> bytes:
    """Message bodies near what pool users send: mostly a pool handle TLV, maybe the items
    TLV, maybe another parameter, sometimes with a wrong type or length, a byte changed or
    the end cut off."""
    handle = draw(st.binary(min_size=draw(st.sampled_from([0, 1, 10, 20])), max_size=70))
    kind = draw(st.sampled_from([POOL_HANDLE] * 6 + [ITEMS, 0x000C]))
    first = _TLV.pack(kind, 4 + len(handle)) + handle
    parts = [first, bytes(-len(first) % 4) if draw(st.integers(0, 4)) else b""]
    if draw(st.booleans()):
        parts.append(HandleResolutionItems(draw(u32)).encode())
    if not draw(st.integers(0, 3)):
        kind = draw(st.sampled_from([ITEMS, 0xC001, 0x8001, POOL_HANDLE]))
        parts.append(tlv(kind, draw(st.binary(max_size=8))))
    body = bytearray(b"".join(parts))
    for _ in range(draw(st.sampled_from([0, 0, 0, 1, 2]))):
        if body:
            body[draw(st.integers(0, len(body) - 1))] = draw(st.integers(0, 255))
    if not draw(st.integers(0, 3)):
        del body[draw(st.integers(0, len(body))) :]
    return bytes(body)


def checked(ctx: DecodeContext, flags: int, end: int) -> asap.HandleResolution | MalformedMessage:
    try:
        return asap.HandleResolution._decode_checked(ctx, flags, 4, end)
    except MalformedMessage as error:
        return error


_HANDLE = tlv(POOL_HANDLE, b"handle-of-20-bytes!!")
_ITEMS = HandleResolutionItems(3).encode()


@settings(max_examples=1000)
@given(bodies(), st.integers(0, 255), limits)
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
def test_the_common_decoder_agrees_with_the_checked_one(
    body: bytes, flags: int, limits: Limits
) -> None:
    """Whatever the body and limits, the fast decoder either declines (the checked one
    then decides) or returns exactly what the checked decoder returns, and never where
    the checked one refuses or reports a parameter."""
    data = b"\x05" + bytes([flags]) + struct.pack(">H", 4 + len(body)) + body
    common = asap.HandleResolution._decode_common(DecodeContext(data, limits), flags, 4, len(data))
    ctx = DecodeContext(data, limits)
    reference = checked(ctx, flags, len(data))
    if common is not None:
        assert common == reference
        assert not ctx.unrecognized


@given(pool_handles, st.booleans(), st.one_of(st.none(), u32))
def test_what_pool_users_send_takes_the_common_path(
    handle: bytes, subscribe: bool, items: int | None
) -> None:
    """Every valid request of a pool user is decoded by the fast decoder, to itself."""
    message = asap.HandleResolution(handle, subscribe, items)
    data = message.encode()
    common = asap.HandleResolution._decode_common(DecodeContext(data), data[1], 4, len(data))
    assert common == message == asap.decode(data)
