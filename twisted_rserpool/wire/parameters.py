"""RFC 5354 parameters (types 0x1-0x10), RFC 5356 policy parameters, RSPLIB's 0x803f and our
0x8e01 and 0x8e02.

Every parameter is an immutable value with ``encode() -> bytes`` (padded to a multiple of
four bytes; the length field excludes the padding). :func:`decode_parameters` turns a run of
TLVs into parameter objects, applying the unknown-type rules of RFC 5354 section 3.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import IntEnum
from ipaddress import IPv4Address, IPv6Address
from typing import ClassVar, TypeAlias

from twisted_rserpool.wire.errors import CauseCode, MalformedMessage
from twisted_rserpool.wire.limits import DEFAULT_LIMITS, Limits

_HEADER = struct.Struct(">HH")
_U32 = struct.Struct(">I")
_I32 = struct.Struct(">i")
_U16 = struct.Struct(">H")
_PORT_RESERVED = struct.Struct(">HH")
_PE_FIXED = struct.Struct(">IIi")

_ZERO_PADDING = (b"", b"\x00\x00\x00", b"\x00\x00", b"\x00")


class ParameterType(IntEnum):
    """RFC 5354 table 1, plus RSPLIB's private handle-resolution item count."""

    IPV4_ADDRESS = 0x1
    IPV6_ADDRESS = 0x2
    DCCP_TRANSPORT = 0x3
    SCTP_TRANSPORT = 0x4
    TCP_TRANSPORT = 0x5
    UDP_TRANSPORT = 0x6
    UDP_LITE_TRANSPORT = 0x7
    POOL_MEMBER_SELECTION_POLICY = 0x8
    POOL_HANDLE = 0x9
    POOL_ELEMENT = 0xA
    SERVER_INFORMATION = 0xB
    OPERATION_ERROR = 0xC
    COOKIE = 0xD
    PE_IDENTIFIER = 0xE
    PE_CHECKSUM = 0xF
    OPAQUE_TRANSPORT = 0x10
    #: RSPLIB: number of PEs wanted in a handle resolution (0x3f with the "skip" bits).
    HANDLE_RESOLUTION_ITEMS = 0x803F
    #: This implementation: the identity that owns a PE, inside its Pool Element parameter
    #: in ENRP (top bits 10: other implementations skip it without a report).
    POOL_ELEMENT_OWNER = 0x8E01
    #: This implementation: in ASAP_COOKIE_ECHO, how many of the application messages that
    #: follow were already sent to the failed PE (top bits 10: skipped by others).
    RESENT_MESSAGES = 0x8E02


class TransportUse(IntEnum):
    """RFC 5354 section 3.4: how a PE intends an SCTP transport address to be used."""

    DATA_ONLY = 0x0000
    DATA_PLUS_CONTROL = 0x0001


class PolicyType(IntEnum):
    """RFC 5356 section 7.1."""

    ROUND_ROBIN = 0x00000001
    WEIGHTED_ROUND_ROBIN = 0x00000002
    RANDOM = 0x00000003
    WEIGHTED_RANDOM = 0x00000004
    PRIORITY = 0x00000005
    LEAST_USED = 0x40000001
    LEAST_USED_DEGRADATION = 0x40000002
    PRIORITY_LEAST_USED = 0x40000003
    RANDOMIZED_LEAST_USED = 0x40000004


Address: TypeAlias = IPv4Address | IPv6Address
_Decoder: TypeAlias = "Callable[[DecodeContext, int, int, int], Parameter]"


def pad(length: int) -> int:
    """The length rounded up to a multiple of four."""
    return (length + 3) & ~3


def tlv(parameter_type: int, value: bytes) -> bytes:
    """One encoded TLV: type, length (without padding), value, zero padding."""
    length = 4 + len(value)
    if length > 0xFFFF:
        raise ValueError(f"parameter 0x{parameter_type:x} is too long ({length} bytes)")
    return _HEADER.pack(parameter_type, length) + value + _ZERO_PADDING[length & 3]


def check_unsigned(value: int, bits: int, name: str) -> int:
    """``value`` if it fits in ``bits`` unsigned bits; ValueError naming it otherwise."""
    if not 0 <= value < (1 << bits):
        raise ValueError(f"{name} {value!r} does not fit in {bits} bits")
    return value


def _encode_address(address: Address) -> bytes:
    if address.version == 4:
        return _HEADER.pack(ParameterType.IPV4_ADDRESS, 8) + address.packed
    return _HEADER.pack(ParameterType.IPV6_ADDRESS, 20) + address.packed


# --------------------------------------------------------------------------- class constants


class _TypedParameter:
    """Where a parameter class's ``TYPE`` (its parameter type code) is declared: outside
    the dataclass bodies, because mypyc hands every class attribute of a dataclass's body
    to ``@dataclass`` as a field, ``ClassVar`` or not (mypyc issue 1122). Each parameter
    class sets its ``TYPE`` right after its body."""

    __slots__ = ()
    TYPE: ClassVar[int]


class _TypedPolicy(_TypedParameter):
    """As :class:`_TypedParameter`, for the policy type code of each policy class."""

    __slots__ = ()
    POLICY_TYPE: ClassVar[int] = 0


# --------------------------------------------------------------------------- addresses


@dataclass(frozen=True, slots=True)
class IPv4AddressParameter(_TypedParameter):
    """RFC 5354 section 3.1."""

    address: IPv4Address

    def encode(self) -> bytes:
        return _encode_address(self.address)


IPv4AddressParameter.TYPE = ParameterType.IPV4_ADDRESS


@dataclass(frozen=True, slots=True)
class IPv6AddressParameter(_TypedParameter):
    """RFC 5354 section 3.2."""

    address: IPv6Address

    def encode(self) -> bytes:
        return _encode_address(self.address)


# --------------------------------------------------------------------------- transports
IPv6AddressParameter.TYPE = ParameterType.IPV6_ADDRESS


@dataclass(frozen=True, slots=True)
class DccpTransport(_TypedParameter):
    """RFC 5354 section 3.3: a DCCP user transport (always data only)."""

    port: int
    service_code: int
    address: Address

    @property
    def addresses(self) -> tuple[Address, ...]:
        return (self.address,)

    @property
    def transport_use(self) -> TransportUse:
        return TransportUse.DATA_ONLY

    def encode(self) -> bytes:
        body = (
            _PORT_RESERVED.pack(check_unsigned(self.port, 16, "DCCP port"), 0)
            + _U32.pack(check_unsigned(self.service_code, 32, "DCCP service code"))
            + _encode_address(self.address)
        )
        return tlv(self.TYPE, body)


DccpTransport.TYPE = ParameterType.DCCP_TRANSPORT


@dataclass(frozen=True, slots=True)
class SctpTransport(_TypedParameter):
    """RFC 5354 section 3.4: an SCTP transport with one or more addresses."""

    port: int
    addresses: tuple[Address, ...]
    transport_use: TransportUse = TransportUse.DATA_ONLY

    def encode(self) -> bytes:
        if not self.addresses:
            raise ValueError("an SCTP transport needs at least one address")
        body = _PORT_RESERVED.pack(
            check_unsigned(self.port, 16, "SCTP port"),
            check_unsigned(self.transport_use, 16, "transport use"),
        ) + b"".join(_encode_address(a) for a in self.addresses)
        return tlv(self.TYPE, body)


SctpTransport.TYPE = ParameterType.SCTP_TRANSPORT


@dataclass(frozen=True, slots=True)
class _SingleAddressTransport(_TypedParameter):
    """Shared shape of the UDP and UDP-Lite transport parameters."""

    port: int
    address: Address

    @property
    def addresses(self) -> tuple[Address, ...]:
        return (self.address,)

    @property
    def transport_use(self) -> TransportUse:
        return TransportUse.DATA_ONLY

    def encode(self) -> bytes:
        body = _PORT_RESERVED.pack(check_unsigned(self.port, 16, "port"), 0) + _encode_address(
            self.address
        )
        return tlv(self.TYPE, body)


@dataclass(frozen=True, slots=True)
class TcpTransport(_TypedParameter):
    """RFC 5354 section 3.5 (also the ASAP transport of a PE over the TCP mapping).

    The RFC reserves the 16 bits after the port and treats TCP as data only; RSPLIB and
    Wireshark read them as Transport Use, which matters because over TCP data and control
    share one connection (RFC 5355 section 2.16). Values other than 0 and 1 there are
    ignored as reserved.
    """

    port: int
    address: Address
    transport_use: TransportUse = TransportUse.DATA_ONLY

    @property
    def addresses(self) -> tuple[Address, ...]:
        return (self.address,)

    def encode(self) -> bytes:
        body = _PORT_RESERVED.pack(
            check_unsigned(self.port, 16, "TCP port"), self.transport_use
        ) + _encode_address(self.address)
        return tlv(self.TYPE, body)


TcpTransport.TYPE = ParameterType.TCP_TRANSPORT


@dataclass(frozen=True, slots=True)
class UdpTransport(_SingleAddressTransport):
    """RFC 5354 section 3.6."""


UdpTransport.TYPE = ParameterType.UDP_TRANSPORT


@dataclass(frozen=True, slots=True)
class UdpLiteTransport(_SingleAddressTransport):
    """RFC 5354 section 3.7."""


UdpLiteTransport.TYPE = ParameterType.UDP_LITE_TRANSPORT


@dataclass(frozen=True, slots=True)
class OpaqueTransport(_TypedParameter):
    """RFC 5354 section 3.16: transport information only the application understands."""

    data: bytes

    @property
    def addresses(self) -> tuple[Address, ...]:
        return ()

    @property
    def transport_use(self) -> TransportUse:
        return TransportUse.DATA_ONLY

    def encode(self) -> bytes:
        return tlv(self.TYPE, self.data)


OpaqueTransport.TYPE = ParameterType.OPAQUE_TRANSPORT


Transport: TypeAlias = (
    DccpTransport | SctpTransport | TcpTransport | UdpTransport | UdpLiteTransport | OpaqueTransport
)
TRANSPORT_CLASSES: tuple[type, ...] = (
    DccpTransport,
    SctpTransport,
    TcpTransport,
    UdpTransport,
    UdpLiteTransport,
    OpaqueTransport,
)
#: Transports RFC 5352 allows for the ASAP transport of a PE and in SERVER_ANNOUNCE
#: (SCTP; TCP under the TCP mapping).
ASAP_TRANSPORT_CLASSES: tuple[type, ...] = (SctpTransport, TcpTransport)


# --------------------------------------------------------------------------- policies


@dataclass(frozen=True, slots=True)
class SelectionPolicy(_TypedPolicy):
    """RFC 5354 section 3.8: a Pool Member Selection Policy parameter (base class)."""

    @property
    def policy_type(self) -> int:
        """The RFC 5356 policy type code."""
        return self.POLICY_TYPE

    def _policy_data(self) -> bytes:
        return b""

    def encode(self) -> bytes:
        return tlv(self.TYPE, _U32.pack(self.policy_type) + self._policy_data())


SelectionPolicy.TYPE = ParameterType.POOL_MEMBER_SELECTION_POLICY


@dataclass(frozen=True, slots=True)
class RoundRobinPolicy(SelectionPolicy):
    """RFC 5356 section 4.1."""


RoundRobinPolicy.POLICY_TYPE = PolicyType.ROUND_ROBIN


@dataclass(frozen=True, slots=True)
class WeightedRoundRobinPolicy(SelectionPolicy):
    """RFC 5356 section 4.2."""

    weight: int

    def _policy_data(self) -> bytes:
        return _U32.pack(check_unsigned(self.weight, 32, "weight"))


WeightedRoundRobinPolicy.POLICY_TYPE = PolicyType.WEIGHTED_ROUND_ROBIN


@dataclass(frozen=True, slots=True)
class RandomPolicy(SelectionPolicy):
    """RFC 5356 section 4.3."""


RandomPolicy.POLICY_TYPE = PolicyType.RANDOM


@dataclass(frozen=True, slots=True)
class WeightedRandomPolicy(SelectionPolicy):
    """RFC 5356 section 4.4."""

    weight: int

    def _policy_data(self) -> bytes:
        return _U32.pack(check_unsigned(self.weight, 32, "weight"))


WeightedRandomPolicy.POLICY_TYPE = PolicyType.WEIGHTED_RANDOM


@dataclass(frozen=True, slots=True)
class PriorityPolicy(SelectionPolicy):
    """RFC 5356 section 4.5 (larger numbers mean higher priority)."""

    priority: int

    def _policy_data(self) -> bytes:
        return _U32.pack(check_unsigned(self.priority, 32, "priority"))


PriorityPolicy.POLICY_TYPE = PolicyType.PRIORITY


@dataclass(frozen=True, slots=True)
class LeastUsedPolicy(SelectionPolicy):
    """RFC 5356 section 5.1 (load 0 is idle, 0xffffffff fully used)."""

    load: int

    def _policy_data(self) -> bytes:
        return _U32.pack(check_unsigned(self.load, 32, "load"))


LeastUsedPolicy.POLICY_TYPE = PolicyType.LEAST_USED


@dataclass(frozen=True, slots=True)
class _LoadAndDegradation(SelectionPolicy):
    """Shared shape of the policies carrying a load and a load degradation."""

    load: int
    load_degradation: int

    def _policy_data(self) -> bytes:
        return _U32.pack(check_unsigned(self.load, 32, "load")) + _U32.pack(
            check_unsigned(self.load_degradation, 32, "load degradation")
        )


@dataclass(frozen=True, slots=True)
class LeastUsedDegradationPolicy(_LoadAndDegradation):
    """RFC 5356 section 5.2."""


LeastUsedDegradationPolicy.POLICY_TYPE = PolicyType.LEAST_USED_DEGRADATION


@dataclass(frozen=True, slots=True)
class PriorityLeastUsedPolicy(_LoadAndDegradation):
    """RFC 5356 section 5.3."""


PriorityLeastUsedPolicy.POLICY_TYPE = PolicyType.PRIORITY_LEAST_USED


@dataclass(frozen=True, slots=True)
class RandomizedLeastUsedPolicy(SelectionPolicy):
    """RFC 5356 section 5.4."""

    load: int

    def _policy_data(self) -> bytes:
        return _U32.pack(check_unsigned(self.load, 32, "load"))


RandomizedLeastUsedPolicy.POLICY_TYPE = PolicyType.RANDOMIZED_LEAST_USED


@dataclass(frozen=True, slots=True)
class UnknownPolicy(SelectionPolicy):
    """A policy type this codec does not know (e.g. RSPLIB's private ones), kept byte-exact."""

    unknown_policy_type: int
    data: bytes = b""

    @property
    def policy_type(self) -> int:
        return self.unknown_policy_type

    def _policy_data(self) -> bytes:
        return self.data

    def encode(self) -> bytes:
        return tlv(
            self.TYPE,
            _U32.pack(check_unsigned(self.unknown_policy_type, 32, "policy type")) + self.data,
        )


#: Known policies: class and the number of 32-bit values after the policy type.
POLICY_CLASSES: dict[int, tuple[type[SelectionPolicy], int]] = {
    PolicyType.ROUND_ROBIN: (RoundRobinPolicy, 0),
    PolicyType.WEIGHTED_ROUND_ROBIN: (WeightedRoundRobinPolicy, 1),
    PolicyType.RANDOM: (RandomPolicy, 0),
    PolicyType.WEIGHTED_RANDOM: (WeightedRandomPolicy, 1),
    PolicyType.PRIORITY: (PriorityPolicy, 1),
    PolicyType.LEAST_USED: (LeastUsedPolicy, 1),
    PolicyType.LEAST_USED_DEGRADATION: (LeastUsedDegradationPolicy, 2),
    PolicyType.PRIORITY_LEAST_USED: (PriorityLeastUsedPolicy, 2),
    PolicyType.RANDOMIZED_LEAST_USED: (RandomizedLeastUsedPolicy, 1),
}


# --------------------------------------------------------------------------- simple values


@dataclass(frozen=True, slots=True)
class PoolHandleParameter(_TypedParameter):
    """RFC 5354 section 3.9."""

    pool_handle: bytes

    def encode(self) -> bytes:
        return tlv(self.TYPE, self.pool_handle)


PoolHandleParameter.TYPE = ParameterType.POOL_HANDLE


@dataclass(frozen=True, slots=True)
class CookieParameter(_TypedParameter):
    """RFC 5354 section 3.13."""

    cookie: bytes

    def encode(self) -> bytes:
        return tlv(self.TYPE, self.cookie)


CookieParameter.TYPE = ParameterType.COOKIE


@dataclass(frozen=True, slots=True)
class PEIdentifierParameter(_TypedParameter):
    """RFC 5354 section 3.14."""

    pe_identifier: int

    def encode(self) -> bytes:
        return tlv(self.TYPE, _U32.pack(check_unsigned(self.pe_identifier, 32, "PE identifier")))


PEIdentifierParameter.TYPE = ParameterType.PE_IDENTIFIER


@dataclass(frozen=True, slots=True)
class PEChecksumParameter(_TypedParameter):
    """RFC 5354 section 3.15 (16 bits; RFC 5353 section 3.6.2 defines the sum)."""

    checksum: int

    def encode(self) -> bytes:
        return tlv(self.TYPE, _U16.pack(check_unsigned(self.checksum, 16, "PE checksum")))


PEChecksumParameter.TYPE = ParameterType.PE_CHECKSUM


@dataclass(frozen=True, slots=True)
class HandleResolutionItems(_TypedParameter):
    """RSPLIB's private parameter 0x803f: how many PEs a pool user wants resolved."""

    items: int

    def encode(self) -> bytes:
        return tlv(self.TYPE, _U32.pack(check_unsigned(self.items, 32, "items")))


HandleResolutionItems.TYPE = ParameterType.HANDLE_RESOLUTION_ITEMS


@dataclass(frozen=True, slots=True)
class ResentMessages(_TypedParameter):
    """Private parameter 0x8e02: the first ``count`` application messages after the
    ASAP_COOKIE_ECHO that carries it were sent to the failed PE before and may have been
    processed there (at-least-once delivery across a failover, RFC 5352 6.5.5). Its type's
    top bits (10) make any other receiver skip it silently."""

    count: int

    def encode(self) -> bytes:
        return tlv(self.TYPE, _U32.pack(check_unsigned(self.count, 32, "resent messages")))


#: Longest owner identity carried in a Pool Element Owner parameter, in UTF-8 bytes.
ResentMessages.TYPE = ParameterType.RESENT_MESSAGES
MAX_OWNER_LENGTH = 255


def owner_fits(owner: str) -> bool:
    """Whether ``owner`` can travel in a Pool Element Owner parameter (1 to 255 UTF-8 bytes)."""
    try:
        size = len(owner.encode("utf-8"))
    except UnicodeEncodeError:
        return False
    return 0 < size <= MAX_OWNER_LENGTH


@dataclass(frozen=True, slots=True)
class PoolElementOwner(_TypedParameter):
    """Private parameter 0x8e01: the authenticated identity that owns a PE (RFC 5355 2.3).

    Servers of this implementation put it last inside a Pool Element parameter of
    ENRP_HANDLE_UPDATE and ENRP_HANDLE_TABLE_RESPONSE; its type's top bits (10) make any
    other receiver skip it silently (RFC 5354 section 3). The value is the identity in
    UTF-8, 1 to :data:`MAX_OWNER_LENGTH` bytes.
    """

    identity: str

    def encode(self) -> bytes:
        if not owner_fits(self.identity):
            raise ValueError(
                f"a PE owner must be 1 to {MAX_OWNER_LENGTH} bytes of UTF-8: {self.identity!r}"
            )
        return tlv(self.TYPE, self.identity.encode("utf-8"))


# --------------------------------------------------------------------------- composites
PoolElementOwner.TYPE = ParameterType.POOL_ELEMENT_OWNER


@dataclass(frozen=True, slots=True)
class PoolElementParameter(_TypedParameter):
    """RFC 5354 section 3.10: a pool element with its transports and policy.

    ``registration_life`` is in seconds, -1 for infinite. ``asap_transport`` is where the
    ENRP server reaches the PE's ASAP endpoint (SCTP, or TCP under the TCP mapping); it is
    ``None`` only when a peer left it out. ``owner_identity`` is the identity that owns the
    PE pool-wide, as servers of this implementation tell each other in ENRP (a trailing
    :class:`PoolElementOwner`); ``None`` when absent. Only ENRP carries it: a registrar
    ignores it in ASAP and the handlespace never stores it in the element.
    """

    pe_identifier: int
    home_server_identifier: int
    registration_life: int
    user_transport: Transport
    policy: SelectionPolicy
    asap_transport: SctpTransport | TcpTransport | None = None
    owner_identity: str | None = None

    def encode(self) -> bytes:
        if not -(1 << 31) <= self.registration_life < (1 << 31):
            raise ValueError(f"registration life {self.registration_life} is not a signed int32")
        body = (
            _PE_FIXED.pack(
                check_unsigned(self.pe_identifier, 32, "PE identifier"),
                check_unsigned(self.home_server_identifier, 32, "home ENRP server identifier"),
                self.registration_life,
            )
            + self.user_transport.encode()
            + self.policy.encode()
        )
        if self.asap_transport is not None:
            body += self.asap_transport.encode()
        if self.owner_identity is not None:
            # Last, after the optional ASAP transport: RSPLIB skips what follows it.
            body += PoolElementOwner(self.owner_identity).encode()
        return tlv(self.TYPE, body)


PoolElementParameter.TYPE = ParameterType.POOL_ELEMENT


@dataclass(frozen=True, slots=True)
class ServerInformation(_TypedParameter):
    """RFC 5354 section 3.11: an ENRP server's identifier and transport."""

    server_identifier: int
    server_transport: SctpTransport | TcpTransport

    def encode(self) -> bytes:
        return tlv(
            self.TYPE,
            _U32.pack(check_unsigned(self.server_identifier, 32, "server identifier"))
            + self.server_transport.encode(),
        )


ServerInformation.TYPE = ParameterType.SERVER_INFORMATION


ErrorInformation: TypeAlias = bytes | SelectionPolicy | Transport


@dataclass(frozen=True, slots=True)
class ErrorCause:
    """One error cause of an Operation Error parameter (RFC 5354 section 3.12).

    ``information`` is the cause-specific information: raw bytes (the unrecognized
    parameter or message, or the offending TLV for Invalid Values), the pool's policy for
    Inconsistent Pooling Policy, the pool's transport for Inconsistent Transport Type, and
    empty for the causes that carry nothing.
    """

    code: int
    information: ErrorInformation = b""

    def encode(self) -> bytes:
        info = (
            self.information if isinstance(self.information, bytes) else self.information.encode()
        )
        length = 4 + len(info)
        if length > 0xFFFF:
            raise ValueError("error cause too long")
        return (
            _HEADER.pack(check_unsigned(self.code, 16, "cause code"), length)
            + info
            + _ZERO_PADDING[length & 3]
        )


@dataclass(frozen=True, slots=True)
class OperationError(_TypedParameter):
    """RFC 5354 section 3.12: one or more error causes."""

    causes: tuple[ErrorCause, ...]

    @property
    def code(self) -> int:
        """The first cause's code (the one that explains a rejection)."""
        return self.causes[0].code if self.causes else CauseCode.UNSPECIFIED_ERROR

    def encode(self) -> bytes:
        if not self.causes:
            raise ValueError("an Operation Error needs at least one error cause")
        return tlv(self.TYPE, b"".join(cause.encode() for cause in self.causes))

    @classmethod
    def single(cls, code: int, information: ErrorInformation = b"") -> OperationError:
        """An Operation Error with one cause."""
        return cls((ErrorCause(code, information),))

    @classmethod
    def from_malformed(cls, error: MalformedMessage) -> OperationError:
        """What an ASAP_ERROR / ENRP_ERROR must carry to report ``error`` to its sender."""
        return cls.single(error.cause, error.offending)


OperationError.TYPE = ParameterType.OPERATION_ERROR


Parameter: TypeAlias = (
    IPv4AddressParameter
    | IPv6AddressParameter
    | Transport
    | SelectionPolicy
    | PoolHandleParameter
    | PoolElementParameter
    | ServerInformation
    | OperationError
    | CookieParameter
    | PEIdentifierParameter
    | PEChecksumParameter
    | HandleResolutionItems
    | PoolElementOwner
    | ResentMessages
)


# --------------------------------------------------------------------------- decoding


@dataclass(slots=True)
class DecodeContext:
    """Mutable state of one message's decoding: limits, counts, what to report."""

    data: bytes
    limits: Limits = DEFAULT_LIMITS
    parameter_count: int = 0
    unrecognized: list[bytes] = field(default_factory=list)

    def offending(self, start: int, end: int) -> bytes:
        """The bytes of a faulty TLV, bounded so that they fit into an error cause."""
        return self.data[start : min(end, start + self.limits.max_offending_bytes)]

    def invalid(self, reason: str, start: int, end: int) -> MalformedMessage:
        """A MalformedMessage with cause Invalid Values for the TLV at start..end."""
        return MalformedMessage(
            reason, CauseCode.INVALID_VALUES, offending=self.offending(start, end)
        )


def _decode_address(ctx: DecodeContext, start: int, end: int) -> Address:
    data = ctx.data
    ptype, length = _HEADER.unpack_from(data, start)
    if ptype == ParameterType.IPV4_ADDRESS:
        if length != 8:
            raise ctx.invalid("IPv4 address parameter must be 8 bytes long", start, end)
        return IPv4Address(data[start + 4 : start + 8])
    if length != 20:
        raise ctx.invalid("IPv6 address parameter must be 20 bytes long", start, end)
    return IPv6Address(data[start + 4 : start + 20])


def _decode_addresses(
    ctx: DecodeContext, transport_start: int, start: int, end: int, depth: int
) -> list[Address]:
    """The address parameters of the transport TLV at ``transport_start`` (RFC 5354 rules)."""
    addresses: list[Address] = []
    for parameter in decode_parameters(ctx, start, end, depth):
        if isinstance(parameter, IPv4AddressParameter | IPv6AddressParameter):
            addresses.append(parameter.address)
        elif not parameter.TYPE & 0x8000:
            raise ctx.invalid(
                f"a transport carries addresses, not {type(parameter).__name__}",
                transport_start,
                end,
            )
    if len(addresses) > ctx.limits.max_addresses_per_transport:
        raise ctx.invalid("too many addresses in one transport parameter", transport_start, end)
    return addresses


def _single_address(ctx: DecodeContext, start: int, end: int, depth: int, name: str) -> Address:
    addresses = _decode_addresses(ctx, start, start + 8, end, depth + 1)
    if len(addresses) != 1:
        raise ctx.invalid(f"a {name} transport carries exactly one address", start, end)
    return addresses[0]


def _decode_single_address_transport(
    cls: type[UdpTransport] | type[UdpLiteTransport], name: str
) -> _Decoder:
    def decode(ctx: DecodeContext, start: int, end: int, depth: int) -> Parameter:
        if end - start < 8:
            raise ctx.invalid(f"truncated {name} transport", start, end)
        (port,) = _U16.unpack_from(ctx.data, start + 4)
        return cls(port, _single_address(ctx, start, end, depth, name))

    return decode


def _decode_tcp(ctx: DecodeContext, start: int, end: int, depth: int) -> Parameter:
    if end - start < 8:
        raise ctx.invalid("truncated TCP transport", start, end)
    port, use = _PORT_RESERVED.unpack_from(ctx.data, start + 4)
    transport_use = TransportUse(use) if use <= 1 else TransportUse.DATA_ONLY
    return TcpTransport(port, _single_address(ctx, start, end, depth, "TCP"), transport_use)


def _decode_dccp(ctx: DecodeContext, start: int, end: int, depth: int) -> Parameter:
    if end - start < 12:
        raise ctx.invalid("truncated DCCP transport", start, end)
    (port,) = _U16.unpack_from(ctx.data, start + 4)
    (service_code,) = _U32.unpack_from(ctx.data, start + 8)
    addresses = _decode_addresses(ctx, start, start + 12, end, depth + 1)
    if len(addresses) != 1:
        raise ctx.invalid("a DCCP transport carries exactly one address", start, end)
    return DccpTransport(port, service_code, addresses[0])


def _decode_sctp(ctx: DecodeContext, start: int, end: int, depth: int) -> Parameter:
    if end - start < 8:
        raise ctx.invalid("truncated SCTP transport", start, end)
    port, use = _PORT_RESERVED.unpack_from(ctx.data, start + 4)
    if use not in (TransportUse.DATA_ONLY, TransportUse.DATA_PLUS_CONTROL):
        raise ctx.invalid(f"unknown SCTP transport use 0x{use:x}", start, end)
    addresses = _decode_addresses(ctx, start, start + 8, end, depth + 1)
    if not addresses:
        raise ctx.invalid("an SCTP transport needs at least one address", start, end)
    return SctpTransport(port, tuple(addresses), TransportUse(use))


def _decode_opaque(ctx: DecodeContext, start: int, end: int, depth: int) -> Parameter:
    return OpaqueTransport(ctx.data[start + 4 : end])


def _decode_policy(ctx: DecodeContext, start: int, end: int, depth: int) -> Parameter:
    if end - start < 8:
        raise ctx.invalid("truncated pool member selection policy", start, end)
    (policy_type,) = _U32.unpack_from(ctx.data, start + 4)
    known = POLICY_CLASSES.get(policy_type)
    if known is None:
        if policy_type in (0x00000000, 0x40000000):
            raise ctx.invalid(f"policy type 0x{policy_type:08x} is reserved", start, end)
        return UnknownPolicy(policy_type, ctx.data[start + 8 : end])
    cls, values = known
    if policy_type == PolicyType.PRIORITY_LEAST_USED and end - start == 12:
        # RSPLIB sends Priority Least Used with the load only: no degradation, so 0.
        return PriorityLeastUsedPolicy(_U32.unpack_from(ctx.data, start + 8)[0], 0)
    if end - start != 8 + 4 * values:
        raise ctx.invalid(
            f"policy 0x{policy_type:08x} needs {values} value(s), got {end - start - 8} bytes",
            start,
            end,
        )
    return cls(*struct.unpack_from(f">{values}I", ctx.data, start + 8))


def _decode_pool_handle(ctx: DecodeContext, start: int, end: int, depth: int) -> Parameter:
    if end - start == 4:
        raise ctx.invalid("empty pool handle", start, end)
    if end - start - 4 > ctx.limits.max_pool_handle_length:
        raise ctx.invalid(
            f"pool handle longer than {ctx.limits.max_pool_handle_length} bytes", start, end
        )
    return PoolHandleParameter(ctx.data[start + 4 : end])


def _decode_cookie(ctx: DecodeContext, start: int, end: int, depth: int) -> Parameter:
    return CookieParameter(ctx.data[start + 4 : end])


def _decode_u32(
    cls: type[PEIdentifierParameter] | type[HandleResolutionItems] | type[ResentMessages],
    name: str,
) -> _Decoder:
    def decode(ctx: DecodeContext, start: int, end: int, depth: int) -> Parameter:
        if end - start != 8:
            raise ctx.invalid(f"{name} parameter must be 8 bytes long", start, end)
        return cls(_U32.unpack_from(ctx.data, start + 4)[0])

    return decode


def _decode_owner(ctx: DecodeContext, start: int, end: int, depth: int) -> Parameter:
    value = ctx.data[start + 4 : end]
    if not 0 < len(value) <= MAX_OWNER_LENGTH:
        raise ctx.invalid(f"a PE owner must be 1 to {MAX_OWNER_LENGTH} bytes", start, end)
    try:
        owner = value.decode("utf-8")
    except UnicodeDecodeError:
        raise ctx.invalid("a PE owner must be UTF-8", start, end) from None
    return PoolElementOwner(owner)


def _decode_checksum(ctx: DecodeContext, start: int, end: int, depth: int) -> Parameter:
    if end - start != 6:
        raise ctx.invalid("PE checksum parameter must be 6 bytes long", start, end)
    return PEChecksumParameter(_U16.unpack_from(ctx.data, start + 4)[0])


def _without_skippable(parameters: list[Parameter]) -> list[Parameter]:
    """Known parameters whose type says "skip" (RSPLIB's 0x803f) where they mean nothing."""
    return [p for p in parameters if not p.TYPE & 0x8000]


def _decode_pool_element(ctx: DecodeContext, start: int, end: int, depth: int) -> Parameter:
    if end - start < 16:
        raise ctx.invalid("truncated pool element", start, end)
    pe_identifier, home, life = _PE_FIXED.unpack_from(ctx.data, start + 4)
    every = decode_parameters(ctx, start + 16, end, depth + 1)
    owners = [p for p in every if isinstance(p, PoolElementOwner)]
    if len(owners) > 1:
        raise ctx.invalid("a pool element names at most one owner", start, end)
    nested = _without_skippable(every)
    if len(nested) not in (2, 3):
        raise ctx.invalid(
            "a pool element carries a user transport, a policy and an ASAP transport",
            start,
            end,
        )
    user_transport, policy = nested[0], nested[1]
    if not isinstance(user_transport, TRANSPORT_CLASSES):
        raise ctx.invalid("pool element: first parameter must be its user transport", start, end)
    if not isinstance(policy, SelectionPolicy):
        raise ctx.invalid("pool element: second parameter must be its policy", start, end)
    asap_transport = nested[2] if len(nested) == 3 else None
    if asap_transport is not None and not isinstance(asap_transport, ASAP_TRANSPORT_CLASSES):
        raise ctx.invalid("pool element: ASAP transport must be SCTP or TCP", start, end)
    return PoolElementParameter(
        pe_identifier,
        home,
        life,
        user_transport,  # type: ignore[arg-type]
        policy,
        asap_transport,  # type: ignore[arg-type]
        owners[0].identity if owners else None,
    )


def _decode_server_information(ctx: DecodeContext, start: int, end: int, depth: int) -> Parameter:
    if end - start < 8:
        raise ctx.invalid("truncated server information", start, end)
    (server_identifier,) = _U32.unpack_from(ctx.data, start + 4)
    nested = _without_skippable(decode_parameters(ctx, start + 8, end, depth + 1))
    if len(nested) != 1 or not isinstance(nested[0], ASAP_TRANSPORT_CLASSES):
        raise ctx.invalid(
            "server information carries exactly one SCTP or TCP transport", start, end
        )
    return ServerInformation(server_identifier, nested[0])  # type: ignore[arg-type]


def _decode_operation_error(ctx: DecodeContext, start: int, end: int, depth: int) -> Parameter:
    if depth + 1 > ctx.limits.max_depth:
        raise MalformedMessage("parameters nested too deeply", CauseCode.LACK_OF_RESOURCES)
    data = ctx.data
    causes: list[ErrorCause] = []
    offset = start + 4
    while offset < end:
        if end - offset < 4:
            break  # up to 3 bytes of padding the sender counted
        code, length = _HEADER.unpack_from(data, offset)
        if length < 4 or offset + length > end:
            raise ctx.invalid(f"error cause length {length} is invalid", start, end)
        ctx.parameter_count += 1
        if ctx.parameter_count > ctx.limits.max_parameters:
            raise MalformedMessage("too many parameters", CauseCode.LACK_OF_RESOURCES)
        information: ErrorInformation = data[offset + 4 : offset + length]
        if (
            code
            in (
                CauseCode.INCONSISTENT_POOLING_POLICY,
                CauseCode.INCONSISTENT_TRANSPORT_TYPE,
            )
            and information
        ):
            nested = decode_parameters(ctx, offset + 4, offset + length, depth + 2)
            wanted: tuple[type, ...] = (
                (SelectionPolicy,)
                if code == CauseCode.INCONSISTENT_POOLING_POLICY
                else TRANSPORT_CLASSES
            )
            if len(nested) != 1 or not isinstance(nested[0], wanted):
                raise ctx.invalid("error cause carries the wrong parameter", start, end)
            information = nested[0]  # type: ignore[assignment]
        causes.append(ErrorCause(code, information))
        offset += pad(length)
    if not causes:
        raise ctx.invalid("an Operation Error needs at least one error cause", start, end)
    return OperationError(tuple(causes))


_DECODERS: dict[int, _Decoder] = {
    ParameterType.DCCP_TRANSPORT: _decode_dccp,
    ParameterType.SCTP_TRANSPORT: _decode_sctp,
    ParameterType.TCP_TRANSPORT: _decode_tcp,
    ParameterType.UDP_TRANSPORT: _decode_single_address_transport(UdpTransport, "UDP"),
    ParameterType.UDP_LITE_TRANSPORT: _decode_single_address_transport(
        UdpLiteTransport, "UDP-Lite"
    ),
    ParameterType.POOL_MEMBER_SELECTION_POLICY: _decode_policy,
    ParameterType.POOL_HANDLE: _decode_pool_handle,
    ParameterType.POOL_ELEMENT: _decode_pool_element,
    ParameterType.SERVER_INFORMATION: _decode_server_information,
    ParameterType.OPERATION_ERROR: _decode_operation_error,
    ParameterType.COOKIE: _decode_cookie,
    ParameterType.PE_IDENTIFIER: _decode_u32(PEIdentifierParameter, "PE identifier"),
    ParameterType.PE_CHECKSUM: _decode_checksum,
    ParameterType.OPAQUE_TRANSPORT: _decode_opaque,
    ParameterType.HANDLE_RESOLUTION_ITEMS: _decode_u32(HandleResolutionItems, "items"),
    ParameterType.POOL_ELEMENT_OWNER: _decode_owner,
    ParameterType.RESENT_MESSAGES: _decode_u32(ResentMessages, "resent messages"),
}


def _decode_standalone_address(ctx: DecodeContext, start: int, end: int, depth: int) -> Parameter:
    address = _decode_address(ctx, start, end)
    if isinstance(address, IPv4Address):
        return IPv4AddressParameter(address)
    return IPv6AddressParameter(address)


_DECODERS[ParameterType.IPV4_ADDRESS] = _decode_standalone_address
_DECODERS[ParameterType.IPV6_ADDRESS] = _decode_standalone_address


def decode_parameters(ctx: DecodeContext, start: int, end: int, depth: int = 1) -> list[Parameter]:
    """The parameters in ``ctx.data[start:end]``, with RFC 5354's unknown-type rules.

    An unknown type whose top bits are 00 or 01 stops decoding (01: with a report); 10 is
    skipped; 11 is skipped and its TLV added to ``ctx.unrecognized`` for an error report.
    """
    if depth > ctx.limits.max_depth:
        raise MalformedMessage("parameters nested too deeply", CauseCode.LACK_OF_RESOURCES)
    data = ctx.data
    parameters: list[Parameter] = []
    offset = start
    while offset < end:
        if end - offset < 4:
            break  # up to 3 bytes of padding the sender counted in the parent's length
        ptype, length = _HEADER.unpack_from(data, offset)
        if length < 4:
            raise ctx.invalid(f"parameter length {length} is shorter than its header", offset, end)
        if offset + length > end:
            raise ctx.invalid(
                f"parameter 0x{ptype:x} of {length} bytes overruns its container", offset, end
            )
        ctx.parameter_count += 1
        if ctx.parameter_count > ctx.limits.max_parameters:
            raise MalformedMessage("too many parameters", CauseCode.LACK_OF_RESOURCES)
        decoder = _DECODERS.get(ptype)
        if decoder is None:
            action = ptype >> 14
            raw = ctx.offending(offset, offset + length)
            if action < 2:
                raise MalformedMessage(
                    f"unrecognized parameter type 0x{ptype:04x}",
                    CauseCode.UNRECOGNIZED_PARAMETER,
                    report=action == 1,
                    offending=raw,
                )
            if action == 3:
                ctx.unrecognized.append(raw)
        else:
            parameters.append(decoder(ctx, offset, offset + length, depth))
        offset += pad(length)
    return parameters


def decode_parameter(data: bytes, limits: Limits = DEFAULT_LIMITS) -> Parameter:
    """Exactly one parameter from ``data`` (mainly for tests and tools)."""
    parameters = decode_parameters(DecodeContext(data, limits), 0, len(data))
    if len(parameters) != 1:
        raise MalformedMessage(f"expected one parameter, found {len(parameters)}")
    return parameters[0]
