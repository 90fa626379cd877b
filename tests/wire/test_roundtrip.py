"""Every RSerPool parameter and message encodes and decodes back to itself."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv6Address

import pytest
from hypothesis import given

from tests.wire import strategies as s
from twisted_rserpool.wire import asap, enrp
from twisted_rserpool.wire.errors import CauseCode
from twisted_rserpool.wire.message import Message
from twisted_rserpool.wire.parameters import (
    CookieParameter,
    HandleResolutionItems,
    IPv4AddressParameter,
    IPv6AddressParameter,
    LeastUsedPolicy,
    OperationError,
    Parameter,
    PEChecksumParameter,
    PEIdentifierParameter,
    PoolElementParameter,
    PoolHandleParameter,
    RoundRobinPolicy,
    SctpTransport,
    SelectionPolicy,
    TcpTransport,
    TransportUse,
    UnknownPolicy,
    WeightedRandomPolicy,
    decode_parameter,
)


def _roundtrip_parameter(parameter: Parameter) -> None:
    data = parameter.encode()
    assert len(data) % 4 == 0
    decoded = decode_parameter(data)
    assert decoded == parameter
    assert decoded.encode() == data


@given(s.transports)
def test_transport_roundtrip(transport: Parameter) -> None:
    """Every transport parameter (DCCP, SCTP, TCP, UDP, UDP-Lite, opaque) round-trips."""
    _roundtrip_parameter(transport)


@given(s.policies)
def test_policy_roundtrip(policy: SelectionPolicy) -> None:
    """Every RFC 5356 policy and unknown policies round-trip byte-exactly."""
    _roundtrip_parameter(policy)


@given(s.pool_elements)
def test_pool_element_roundtrip(element: PoolElementParameter) -> None:
    """Pool element parameters with nested transports and policy round-trip."""
    _roundtrip_parameter(element)


@given(s.operation_errors)
def test_operation_error_roundtrip(error: OperationError) -> None:
    """Operation errors with every cause and its nested content round-trip."""
    _roundtrip_parameter(error)


@given(s.server_informations)
def test_server_information_roundtrip(information: Parameter) -> None:
    """Server information parameters round-trip."""
    _roundtrip_parameter(information)


@pytest.mark.parametrize(
    "parameter",
    [
        IPv4AddressParameter(IPv4Address("192.0.2.1")),
        IPv6AddressParameter(IPv6Address("2001:db8::1")),
        PoolHandleParameter(b"abc"),
        CookieParameter(b""),
        CookieParameter(b"12345"),
        PEIdentifierParameter(0xFFFFFFFF),
        PEChecksumParameter(0xBEEF),
        HandleResolutionItems(128),
    ],
)
def test_simple_parameter_roundtrip(parameter: Parameter) -> None:
    """The fixed-shape parameters round-trip."""
    _roundtrip_parameter(parameter)


@given(s.asap_messages)
def test_asap_roundtrip(message: Message) -> None:
    """decode(encode(m)) == m for every ASAP message, and canonical bytes re-encode alike."""
    data = message.encode()
    assert len(data) % 4 == 0
    decoded = asap.decode(data)
    assert decoded == message
    assert decoded.encode() == data


@given(s.enrp_messages)
def test_enrp_roundtrip(message: Message) -> None:
    """decode(encode(m)) == m for every ENRP message, and canonical bytes re-encode alike."""
    data = message.encode()
    decoded = enrp.decode(data)
    assert decoded == message
    assert decoded.encode() == data


def test_every_message_type_has_a_class() -> None:
    """ASAP types 0x01-0x0e and ENRP types 0x01-0x0a each have exactly one class."""
    assert sorted(asap.MESSAGE_CLASSES) == list(range(0x01, 0x0F))
    assert sorted(enrp.MESSAGE_CLASSES) == list(range(0x01, 0x0B))


# Byte layouts written out by hand from the RFC figures.


def test_round_robin_policy_bytes() -> None:
    """RFC 5356 4.1.4: type 0x8, length 0x8, policy type 0x00000001."""
    assert RoundRobinPolicy().encode() == bytes.fromhex("0008000800000001")


def test_weighted_random_policy_bytes() -> None:
    """RFC 5356 4.4.4: length 0xc, policy type 4, then the weight."""
    assert WeightedRandomPolicy(7).encode() == bytes.fromhex("0008000c0000000400000007")


def test_pe_checksum_bytes() -> None:
    """RFC 5354 3.15: length 6 then two bytes of padding."""
    assert PEChecksumParameter(0x1234).encode() == bytes.fromhex(
        "000f00061234 0000".replace(" ", "")
    )


def test_pool_handle_padding() -> None:
    """RFC 5354 3.9: the length excludes the padding, which is zero."""
    assert PoolHandleParameter(b"abcde").encode() == bytes.fromhex("00090009") + b"abcde\0\0\0"


def test_unknown_policy_kept_byte_exact() -> None:
    """A policy type we do not know keeps its type and data exactly."""
    data = bytes.fromhex("00080010b000000500000001000000ff")
    policy = decode_parameter(data)
    assert policy == UnknownPolicy(0xB0000005, bytes.fromhex("00000001000000ff"))
    assert policy.encode() == data


def test_registration_bytes() -> None:
    """An ASAP_REGISTRATION laid out as RFC 5352 2.2.1 and RFC 5354 3.10 draw it."""
    message = asap.Registration(
        b"echo",
        PoolElementParameter(
            pe_identifier=0x01020304,
            home_server_identifier=0,
            registration_life=-1,
            user_transport=TcpTransport(7, IPv4Address("127.0.0.1")),
            policy=LeastUsedPolicy(0x10),
            asap_transport=SctpTransport(
                3863, (IPv4Address("127.0.0.1"),), TransportUse.DATA_PLUS_CONTROL
            ),
        ),
    )
    expected = (
        "0100 0048"  # type 1, flags 0, length 72
        "0009 0008 6563686f"  # pool handle "echo"
        "000a 003c 01020304 00000000 ffffffff"  # pool element, PE id, home, life -1
        "0005 0010 0007 0000 0001 0008 7f000001"  # TCP transport port 7
        "0008 000c 40000001 00000010"  # least used, load 16
        "0004 0010 0f17 0001 0001 0008 7f000001"  # SCTP 3863 data+control
    ).replace(" ", "")
    assert message.encode().hex() == expected


def test_handle_resolution_flags_and_items() -> None:
    """The S flag is the lowest flag bit; RSPLIB's 0x803f carries the item count."""
    data = asap.HandleResolution(b"p", subscribe=True, items=5).encode()
    assert data.hex() == "050100140009000570000000803f000800000005"


def test_negative_handle_resolution_response() -> None:
    """An Unknown Pool Handle answer carries the error and no PE."""
    message = asap.HandleResolutionResponse(
        b"nope", error=OperationError.single(CauseCode.UNKNOWN_POOL_HANDLE)
    )
    assert asap.decode(message.encode()) == message


def test_enrp_handle_table_response_flags() -> None:
    """M is 0x02 and R is 0x01 in ENRP_HANDLE_TABLE_RESPONSE."""
    data = enrp.HandleTableResponse(1, 2, more_to_send=True).encode()
    assert data[1] == 0x02
    data = enrp.HandleTableResponse(1, 2, reject=True).encode()
    assert data[1] == 0x01
