"""Hostile and broken input ends in MalformedMessage (with the right cause) or a valid message."""

from __future__ import annotations

import struct
from collections.abc import Callable
from ipaddress import IPv4Address

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.wire import strategies as s
from twisted_rserpool.wire import Limits, MalformedMessage, asap, enrp
from twisted_rserpool.wire.errors import CauseCode
from twisted_rserpool.wire.message import Message
from twisted_rserpool.wire.parameters import (
    OperationError,
    PoolElementParameter,
    PriorityLeastUsedPolicy,
    RoundRobinPolicy,
    SctpTransport,
    TcpTransport,
    decode_parameter,
    tlv,
)

Decoder = Callable[[bytes], Message]

_ADDRESS = IPv4Address("127.0.0.1")
_PE = PoolElementParameter(
    1, 0, 30, TcpTransport(80, _ADDRESS), RoundRobinPolicy(), TcpTransport(3863, _ADDRESS)
)
_REGISTRATION = asap.Registration(b"pool", _PE)


def _decodes_or_refuses(decode: Decoder, data: bytes) -> Message | MalformedMessage:
    try:
        return decode(data)
    except MalformedMessage as e:
        assert isinstance(e.cause, int)
        assert len(e.offending) <= Limits().max_offending_bytes
        return e


def _header(mtype: int, flags: int, body: bytes) -> bytes:
    length = 4 + len(body)
    return struct.pack(">BBH", mtype, flags, length) + body + b"\0" * (-length % 4)


# --------------------------------------------------------------------- truncation and lengths


@pytest.mark.parametrize(
    ("decode", "message"),
    [
        (asap.decode, _REGISTRATION),
        (asap.decode, asap.HandleResolutionResponse(b"p", (_PE, _PE), RoundRobinPolicy())),
        (enrp.decode, enrp.HandleUpdate(1, 2, enrp.UpdateAction.ADD_PE, b"p", _PE)),
        (enrp.decode, enrp.HandleTableResponse(1, 2, (enrp.PoolEntry(b"p", (_PE,)),))),
    ],
)
def test_truncation_at_every_offset(decode: Decoder, message: Message) -> None:
    """Every prefix of a valid message is refused; none is taken for a valid message."""
    data = message.encode()
    for cut in range(len(data) - 3):  # the last 3 bytes could be padding
        with pytest.raises(MalformedMessage):
            decode(data[:cut])


@pytest.mark.parametrize(
    ("decode", "messages"), [(asap.decode, s.asap_messages), (enrp.decode, s.enrp_messages)]
)
@given(data=st.data())
@settings(max_examples=150)
def test_truncated_and_extended_messages(
    decode: Decoder, messages: st.SearchStrategy[Message], data: st.DataObject
) -> None:
    """Random messages, cut short or with garbage appended, never raise anything else."""
    encoded = data.draw(messages).encode()
    cut = data.draw(st.integers(0, len(encoded)))
    _decodes_or_refuses(decode, encoded[:cut])
    _decodes_or_refuses(decode, encoded + data.draw(st.binary(min_size=1, max_size=8)))


def test_message_length_shorter_than_header() -> None:
    """A message length below 4 is Invalid Values."""
    with pytest.raises(MalformedMessage) as e:
        asap.decode(b"\x05\x00\x00\x03")
    assert e.value.cause == CauseCode.INVALID_VALUES


def test_message_length_beyond_data() -> None:
    """A message length larger than what arrived is refused."""
    data = _REGISTRATION.encode()
    with pytest.raises(MalformedMessage, match="truncated"):
        asap.decode(data[:-8])


def test_more_than_three_bytes_after_message() -> None:
    """At most three bytes of padding may follow a message."""
    with pytest.raises(MalformedMessage, match="padding"):
        asap.decode(asap.Cookie(b"1234").encode() + b"\0" * 4)


def test_nonzero_padding_is_ignored() -> None:
    """RFC 5354: the receiver ignores the content of padding bytes."""
    data = bytearray(asap.Cookie(b"abcde").encode())
    data[-3:] = b"\xff\xff\xff"
    assert asap.decode(bytes(data)) == asap.Cookie(b"abcde")


def test_parameter_length_beyond_parent() -> None:
    """A parameter whose length runs past its message is refused with the offending TLV."""
    body = struct.pack(">HH", 0x9, 40) + b"pool"
    with pytest.raises(MalformedMessage) as e:
        asap.decode(_header(0x05, 0, body))
    assert e.value.cause == CauseCode.INVALID_VALUES
    assert e.value.report
    assert e.value.offending.startswith(b"\x00\x09")


def test_parameter_length_too_short() -> None:
    """A parameter length below 4 is refused."""
    with pytest.raises(MalformedMessage, match="shorter than its header"):
        asap.decode(_header(0x05, 0, struct.pack(">HH", 0x9, 2) + b"\0" * 4))


def test_nested_length_beyond_pool_element() -> None:
    """A transport inside a pool element that overruns the pool element is refused."""
    element = bytearray(_PE.encode())
    struct.pack_into(">H", element, 18, 200)  # the user transport's length
    with pytest.raises(MalformedMessage, match="overruns"):
        asap.decode(_header(0x01, 0, tlv(0x9, b"pool") + bytes(element)))


def test_zero_length_and_padding_only_parameters() -> None:
    """An empty pool handle and a padding-only body are refused, not crashed on."""
    with pytest.raises(MalformedMessage, match="empty pool handle"):
        asap.decode(_header(0x05, 0, tlv(0x9, b"")))
    with pytest.raises(MalformedMessage):
        asap.decode(_header(0x05, 0, b"\0" * 4))
    with pytest.raises(MalformedMessage):
        asap.decode(_header(0x05, 0, b""))
    with pytest.raises(MalformedMessage):
        enrp.decode(_header(0x04, 0, b"\0" * 12))


def test_wrong_fixed_lengths() -> None:
    """Parameters of fixed size with another length are Invalid Values."""
    for bad in (
        tlv(0x1, b"\x7f\0\0"),  # IPv4 address of 3 bytes
        tlv(0x2, b"\0" * 15),  # IPv6 address of 15 bytes
        tlv(0xE, b"\0\0\0\0\0"),  # PE identifier of 5 bytes
        tlv(0xF, b"\0\0\0\0"),  # PE checksum of 4 bytes
        tlv(0x8, struct.pack(">II", 2, 1) + b"\0\0\0\0"),  # WRR with two values
        tlv(0x8, struct.pack(">I", 2)),  # WRR without its weight
        tlv(0x5, struct.pack(">HH", 80, 0)),  # TCP transport without address
        tlv(0x4, struct.pack(">HH", 80, 0)),  # SCTP transport without address
        tlv(0x4, struct.pack(">HH", 80, 7) + tlv(0x1, b"\x7f\0\0\1")),  # transport use 7
        tlv(0x5, struct.pack(">HH", 80, 0) + tlv(0x1, b"\x7f\0\0\1") * 2),  # TCP with 2 addresses
        tlv(0xC, b""),  # operation error without causes
    ):
        with pytest.raises(MalformedMessage) as e:
            decode_parameter(bad)
        assert e.value.cause == CauseCode.INVALID_VALUES, bad.hex()


def test_pool_element_structure() -> None:
    """A pool element needs its user transport first, its policy second."""
    fixed = struct.pack(">IIi", 1, 0, 30)
    transport = TcpTransport(80, _ADDRESS).encode()
    policy = RoundRobinPolicy().encode()
    for body in (
        fixed + policy + transport,
        fixed + transport,
        fixed + transport + policy + policy,
    ):
        with pytest.raises(MalformedMessage, match="pool element"):
            decode_parameter(tlv(0xA, body))
    udp_asap = tlv(0x6, struct.pack(">HH", 1, 0) + tlv(0x1, b"\x7f\0\0\1"))
    with pytest.raises(MalformedMessage, match="ASAP transport"):
        decode_parameter(tlv(0xA, fixed + transport + policy + udp_asap))


def test_missing_and_duplicate_parameters() -> None:
    """Messages without a required parameter, or with one twice, are refused."""
    with pytest.raises(MalformedMessage, match="pool element"):
        asap.decode(_header(0x01, 0, tlv(0x9, b"pool")))
    with pytest.raises(MalformedMessage, match="pool handle"):
        asap.decode(_header(0x05, 0, tlv(0x9, b"a") + tlv(0x9, b"b")))
    with pytest.raises(MalformedMessage, match="unexpected"):
        asap.decode(_header(0x0B, 0, tlv(0xD, b"c") + tlv(0x9, b"p")))


def test_inconsistent_responses() -> None:
    """Positive resolution responses need a PE; negative ones carry none."""
    with pytest.raises(MalformedMessage, match="needs a PE"):
        asap.decode(_header(0x06, 0, tlv(0x9, b"p")))
    error = OperationError.single(CauseCode.UNKNOWN_POOL_HANDLE).encode()
    with pytest.raises(MalformedMessage, match="carries no PE"):
        asap.decode(_header(0x06, 0, tlv(0x9, b"p") + _PE.encode() + error))


def test_unknown_update_action() -> None:
    """ENRP_HANDLE_UPDATE with an update action other than ADD_PE / DEL_PE is refused."""
    data = bytearray(enrp.HandleUpdate(1, 2, enrp.UpdateAction.DEL_PE, b"p", _PE).encode())
    struct.pack_into(">H", data, 12, 2)
    with pytest.raises(MalformedMessage, match="update action"):
        enrp.decode(bytes(data))


# --------------------------------------------------------------------- unknown types


_UNKNOWN = 0x3ABC  # low bits of an unassigned parameter type


@pytest.mark.parametrize(
    ("bits", "stops", "reports"),
    [(0b00, True, False), (0b01, True, True), (0b10, False, False), (0b11, False, True)],
)
def test_unknown_parameter_actions(bits: int, stops: bool, reports: bool) -> None:
    """The top two bits of an unknown parameter type decide stop/skip and report (RFC 5354 3)."""
    unknown = tlv((bits << 14) | _UNKNOWN, b"xyz")
    data = _header(0x05, 0, tlv(0x9, b"pool") + unknown)
    if stops:
        with pytest.raises(MalformedMessage) as e:
            asap.decode(data)
        assert e.value.cause == CauseCode.UNRECOGNIZED_PARAMETER
        assert e.value.report is reports
        assert e.value.offending == unknown[:7]  # the TLV, without its padding
        if reports:
            error = OperationError.from_malformed(e.value)
            assert error.causes[0].code == CauseCode.UNRECOGNIZED_PARAMETER
            assert error.causes[0].information == unknown[:7]
    else:
        message = asap.decode(data)
        assert message == asap.HandleResolution(b"pool")
        assert message.unrecognized_parameters == ((unknown[:7],) if reports else ())


def test_unknown_parameter_nested_in_pool_element_is_reported() -> None:
    """Skip-and-report applies inside nested parameters too."""
    unknown = tlv(0xC000 | _UNKNOWN, b"1234")
    element = _PE.encode()
    element = struct.pack(">HH", 0xA, len(element) + len(unknown)) + element[4:] + unknown
    message = asap.decode(_header(0x01, 0, tlv(0x9, b"pool") + element))
    assert message == _REGISTRATION
    assert message.unrecognized_parameters == (unknown,)


@pytest.mark.parametrize(
    ("mtype", "reports"), [(0x3F, False), (0x7F, True), (0x00, False), (0xBF, False), (0xFF, False)]
)
@pytest.mark.parametrize("decode", [asap.decode, enrp.decode])
def test_unknown_message_type(decode: Decoder, mtype: int, reports: bool) -> None:
    """Unknown message types: top bits 01 discard and report, anything else discard."""
    data = _header(mtype, 0, b"abcd")
    with pytest.raises(MalformedMessage) as e:
        decode(data)
    assert e.value.cause == CauseCode.UNRECOGNIZED_MESSAGE
    assert e.value.report is reports
    assert e.value.offending == data


def test_enrp_types_are_unknown_to_asap_beyond_0x0e() -> None:
    """0x0f is not an ASAP message; 0x0b is not an ENRP message."""
    with pytest.raises(MalformedMessage):
        asap.decode(_header(0x0F, 0, b""))
    with pytest.raises(MalformedMessage):
        enrp.decode(_header(0x0B, 0, b"\0" * 8))


def test_reserved_flags_are_ignored() -> None:
    """Flag bits a message does not define are ignored on receipt."""
    data = bytearray(asap.Cookie(b"c").encode())
    data[1] = 0xFF
    assert asap.decode(bytes(data)) == asap.Cookie(b"c")


# --------------------------------------------------------------------- limits


def test_oversized_message() -> None:
    """A message above the configured size is refused with Lack of Resources."""
    data = asap.Cookie(b"x" * 2000).encode()
    with pytest.raises(MalformedMessage) as e:
        asap.decode(data, Limits(max_message_size=1024))
    assert e.value.cause == CauseCode.LACK_OF_RESOURCES
    assert asap.decode(data) == asap.Cookie(b"x" * 2000)


def test_too_many_parameters() -> None:
    """A message with more TLVs than allowed is refused."""
    message = asap.HandleResolutionResponse(b"p", (_PE,) * 20)
    with pytest.raises(MalformedMessage) as e:
        asap.decode(message.encode(), Limits(max_parameters=50))
    assert e.value.cause == CauseCode.LACK_OF_RESOURCES
    assert len(asap.decode(message.encode()).pool_elements) == 20  # type: ignore[union-attr]


def test_nesting_depth() -> None:
    """Nesting beyond the configured depth is refused."""
    with pytest.raises(MalformedMessage, match="nested too deeply"):
        asap.decode(_REGISTRATION.encode(), Limits(max_depth=2))
    assert asap.decode(_REGISTRATION.encode(), Limits(max_depth=3)) == _REGISTRATION


def test_pool_handle_length() -> None:
    """Pool handles longer than the limit are Invalid Values."""
    with pytest.raises(MalformedMessage, match="pool handle longer"):
        asap.decode(asap.HandleResolution(b"x" * 33).encode(), Limits(max_pool_handle_length=32))


def test_addresses_per_transport() -> None:
    """An SCTP transport with more addresses than allowed is refused."""
    transport = SctpTransport(1, tuple(IPv4Address(i) for i in range(1, 10)))
    with pytest.raises(MalformedMessage, match="too many addresses"):
        decode_parameter(transport.encode(), Limits(max_addresses_per_transport=8))


def test_offending_bytes_are_bounded() -> None:
    """The TLV carried back in an error cause is cut to the configured size."""
    unknown = tlv(0x4000 | _UNKNOWN, b"z" * 5000)
    with pytest.raises(MalformedMessage) as e:
        asap.decode(_header(0x05, 0, tlv(0x9, b"p") + unknown), Limits(max_offending_bytes=100))
    assert e.value.offending == unknown[:100]


def test_deeply_nested_error_causes_stay_bounded() -> None:
    """An error cause carrying a policy is decoded; garbage there is refused, not recursed."""
    cause = struct.pack(">HH", CauseCode.INCONSISTENT_POOLING_POLICY, 4 + 12) + tlv(0xC, b"\0" * 8)
    with pytest.raises(MalformedMessage):
        decode_parameter(tlv(0xC, cause))


# --------------------------------------------------------------------- fuzz


@pytest.mark.parametrize("decode", [asap.decode, enrp.decode])
@given(data=st.binary(max_size=300))
@settings(max_examples=400)
def test_random_bytes(decode: Decoder, data: bytes) -> None:
    """Random bytes never raise anything but MalformedMessage."""
    _decodes_or_refuses(decode, data)


@pytest.mark.parametrize("decode", [asap.decode, enrp.decode])
@given(body=st.binary(max_size=200), mtype=st.integers(0, 0x10), flags=st.integers(0, 255))
@settings(max_examples=400)
def test_random_bodies_with_valid_headers(
    decode: Decoder, body: bytes, mtype: int, flags: int
) -> None:
    """Valid headers of every type with random bodies never raise anything else."""
    _decodes_or_refuses(decode, _header(mtype, flags, body))


@pytest.mark.parametrize(
    ("decode", "messages"), [(asap.decode, s.asap_messages), (enrp.decode, s.enrp_messages)]
)
@given(data=st.data())
@settings(max_examples=300)
def test_mutated_messages(
    decode: Decoder, messages: st.SearchStrategy[Message], data: st.DataObject
) -> None:
    """Valid messages with random bytes flipped decode or are refused, never crash."""
    encoded = bytearray(data.draw(messages).encode())
    for _ in range(data.draw(st.integers(1, 4))):
        position = data.draw(st.integers(0, len(encoded) - 1))
        encoded[position] = data.draw(st.integers(0, 255))
    _decodes_or_refuses(decode, bytes(encoded))


def test_largest_message_of_tiny_parameters_is_refused() -> None:
    """A message packed with 16,000 empty skip-type TLVs stops at the parameter limit."""
    body = tlv(0x9, b"p") + tlv(0x8000 | _UNKNOWN, b"") * 16000
    with pytest.raises(MalformedMessage, match="too many parameters") as e:
        asap.decode(_header(0x05, 0, body))
    assert e.value.cause == CauseCode.LACK_OF_RESOURCES


# --------------------------------------------------------------------- review findings


def test_unknown_skip_parameters_inside_a_transport() -> None:
    """RFC 5354 3: skip bits apply inside transports too; stop bits refuse the message."""
    address = tlv(0x1, b"\x7f\0\0\1")
    skipped = tlv(0xC000 | _UNKNOWN, b"ab")
    transport = tlv(0x4, struct.pack(">HH", 80, 0) + address + skipped)
    message = asap.decode(_header(0x0A, 0, struct.pack(">I", 9) + transport))
    assert message == asap.ServerAnnounce(9, (SctpTransport(80, (_ADDRESS,)),))
    assert message.unrecognized_parameters == (skipped[:6],)
    stopping = tlv(0x4, struct.pack(">HH", 80, 0) + address + tlv(_UNKNOWN, b""))
    with pytest.raises(MalformedMessage) as e:
        asap.decode(_header(0x0A, 0, struct.pack(">I", 9) + stopping))
    assert e.value.cause == CauseCode.UNRECOGNIZED_PARAMETER


def test_rsplib_items_parameter_inside_pool_element_is_skipped() -> None:
    """RSPLIB's skip-type 0x803f means nothing inside a PE and is skipped there."""
    element = _PE.encode()
    extra = tlv(0x803F, b"\0\0\0\3")
    element = struct.pack(">HH", 0xA, len(element) + len(extra)) + element[4:] + extra
    assert asap.decode(_header(0x01, 0, tlv(0x9, b"pool") + element)) == _REGISTRATION


def test_offending_bytes_of_a_wrong_parameter_set_start_at_the_message() -> None:
    """A duplicate parameter in an ENRP message reports the message, not a slice of it."""
    body = struct.pack(">II", 1, 2) + tlv(0xF, b"\0\1") + tlv(0xF, b"\0\2")
    data = _header(0x01, 0, body)
    with pytest.raises(MalformedMessage) as e:
        enrp.decode(data)
    assert e.value.offending == data


def test_reserved_policy_types_are_invalid() -> None:
    """RFC 5356 7.1: 0x00000000 and 0x40000000 are reserved, invalid values."""
    for policy_type in (0, 0x40000000):
        with pytest.raises(MalformedMessage, match="reserved"):
            decode_parameter(tlv(0x8, struct.pack(">I", policy_type)))


def test_negative_resolution_response_carries_no_policy() -> None:
    """RFC 5352 2.2.6: the overall policy is not present in a negative response."""
    error = OperationError.single(CauseCode.UNKNOWN_POOL_HANDLE).encode()
    with pytest.raises(MalformedMessage, match="no PE and no policy"):
        asap.decode(_header(0x06, 0, tlv(0x9, b"p") + RoundRobinPolicy().encode() + error))


def test_out_of_range_identifiers_are_value_errors_on_encode() -> None:
    """Encoding never raises struct.error: out-of-range fields are ValueErrors naming them."""
    with pytest.raises(ValueError, match="server identifier"):
        asap.EndpointKeepAlive(1 << 32, b"p").encode()
    with pytest.raises(ValueError, match="target server identifier"):
        enrp.InitTakeover(1, 2, -1).encode()
    with pytest.raises(ValueError, match="sending server identifier"):
        enrp.ListRequest(1 << 40, 0).encode()


def test_up_to_three_trailing_bytes_in_a_container_are_ignored() -> None:
    """Bytes after the last parameter, fewer than a header, are padding whatever they hold."""
    transport = TcpTransport(80, _ADDRESS).encode()
    grown = struct.pack(">HH", 0x5, len(transport) + 3) + transport[4:] + b"\xff\xff\xff"
    assert decode_parameter(grown) == TcpTransport(80, _ADDRESS)


def test_rsplib_priority_least_used_without_degradation() -> None:
    """RSPLIB's Priority Least Used carries the load only: read as degradation 0."""
    assert decode_parameter(tlv(0x8, struct.pack(">II", 0x40000003, 77))) == (
        PriorityLeastUsedPolicy(77, 0)
    )
