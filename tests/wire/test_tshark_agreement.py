"""Wireshark agreement: tshark reads what our ASAP and ENRP codec writes.

Every ASAP message type (0x01-0x0e) and every ENRP message type (0x01-0x0a) is encoded by
our codec, with variants covering every RFC 5356 policy, every RFC 5354 transport parameter,
IPv4 and IPv6 addresses, every RFC 5354 error cause with its nested content, and each flag
set and clear. All packets go into one pcap that tshark dissects once for this module; each
test then checks that tshark names the same message type, reads the same fields with the
same values in the same order, and reports nothing malformed. 200 seeded random messages
of both protocols ride in the same batch.
"""

# What tshark 4.0.17 does with ASAP and ENRP (found by experiment with hand-built bytes and
# in packet-asap.c / packet-enrp.c; see also ``tshark -G fields``, ``-G values``,
# ``-G decodes``):
#
# * Dissector registration: ASAP on SCTP PPID 11 and on SCTP, UDP and TCP port 3863; ENRP on
#   SCTP PPID 12 and on SCTP and UDP port 9901. There is no ENRP-over-TCP dissector at all
#   (``-d tcp.port==9901,enrp`` is refused). The PPID alone is enough: any SCTP ports work.
#   Over TCP, tshark takes one whole ASAP message per segment (no RFC 5352 TCP mapping
#   framing, no reassembly of messages across segments).
# * Message header: ``asap.message_type`` / ``enrp.message_type`` (decimal, "1"),
#   ``*.message_flags`` ("0x01"), ``*.message_length`` (decimal). The type name ("ASAP
#   Registration", "ENRP Init Takeover Ack") appears only in the text output (``describe``).
# * Flag bits, in ``*.message_flags_tree``: ASAP ``asap.r_bit`` (REGISTRATION_RESPONSE only)
#   and ``asap.h_bit`` (ENDPOINT_KEEP_ALIVE only). tshark has NO field for ASAP's S bit
#   (HANDLE_RESOLUTION) or A bit (HANDLE_RESOLUTION_RESPONSE): only the raw flags byte shows
#   them. ENRP ``enrp.r_bit`` (PRESENCE "reply required"; HANDLE_TABLE_RESPONSE and
#   LIST_RESPONSE "reject"), ``enrp.w_bit`` (HANDLE_TABLE_REQUEST), ``enrp.m_bit``
#   (HANDLE_TABLE_RESPONSE, mask 0x02), ``enrp.t_bit`` (HANDLE_UPDATE, 0x01 "takeover
#   suggested", from draft-dreibholz-rserpool-enrp-takeover; not in RFC 5353).
# * Fixed fields: ``asap.server_identifier`` (ENDPOINT_KEEP_ALIVE and SERVER_ANNOUNCE, and the
#   Server Information parameter inside ASAP); ``enrp.sender_servers_id``,
#   ``enrp.receiver_servers_id``, ``enrp.target_servers_id`` (the three takeover messages),
#   ``enrp.update_action`` (decimal) and ``enrp.reserved`` ("0x0000"). Identifiers are shown
#   as "0x%08x".
# * Parameters (prefix ``asap.`` or ``enrp.``): ``parameter_type`` ("0x0009"),
#   ``parameter_length`` (without padding), ``parameter_padding`` (bytes); ``ipv4_address``,
#   ``ipv6_address`` (RFC 5952 text); ``sctp_transport_port`` + ``transport_use``;
#   ``tcp_transport_port`` + ``transport_use`` (tshark reads TCP's reserved field as a
#   Transport Use, RFC 5354 has none there); ``udp_transport_port`` + ``udp_transport_reserved``;
#   ``udp_lite_transport_port`` + ``udp_lite_transport_reserved``; ``dccp_transport_port`` +
#   ``dccp_transport_reserved`` + ``dccp_transport_service_code`` (decimal);
#   ``pool_member_selection_policy_type`` ("0x40000002"), ``..._weight``, ``..._priority``
#   (decimal), ``..._load`` and ``..._degradation`` (FT_DOUBLE, a percentage: 100 * value /
#   0xffffffff), ``..._value`` (bytes of an unknown policy); ``pool_handle_pool_handle``
#   (bytes "65:63:68:6f"); ``pool_element_pe_identifier``,
#   ``pool_element_home_enrp_server_identifier``, ``pool_element_registration_life`` (signed
#   decimal; tshark labels the unit "ms" while RFC 5354 says seconds: the raw value agrees,
#   but check RSPLIB's unit before interoperating);
#   ``enrp.server_information_server_identifier``; ``cookie`` (bytes); ``pe_identifier``;
#   ``pe_checksum`` ("0xabcd"); ``asap.hropt_items`` (RSPLIB's 0x803f, ASAP only: the ENRP
#   dissector shows 0x803f as an unknown parameter). The Opaque Transport parameter (0x10,
#   RFC 5354 section 3.16) is unknown to tshark: it shows ``parameter_value`` bytes. Unknown
#   parameters show ``parameter_value``.
# * Error causes: ``cause_code`` ("0x0003"), ``cause_length``, ``cause_padding``. tshark
#   dissects the cause information as a parameter for codes 1, 3, 5 and 7, as a nested ASAP
#   or ENRP message (a nested ``asap`` / ``enrp`` subtree) for code 2, shows nothing for
#   codes 4, 6, 8, 9 and 10, and shows ``cause_info`` bytes for code 0 (Unspecified Error,
#   which it names "Unknown error cause") and unknown codes. A nested message of unknown type
#   shows, in ASAP, its header and its parameters; in ENRP its header and ``enrp.message_value``.
# * Problems: a packet tshark cannot dissect gets a ``_ws.malformed`` layer whose
#   ``_ws.expert`` has severity 8388608 (PI_ERROR) and message "Malformed Packet (Exception
#   occurred)"; other expert items are ``_ws.expert`` subtrees with ``_ws.expert.severity``
#   and ``_ws.expert.message``.
# * Also known to tshark, unknown to RFC 5356 and kept opaque by our codec (UnknownPolicy):
#   RSPLIB's policies 0xb0001003 PLUD, 0xb0002001 WRAND-DPF and 0xb0002002 LU-DPF (fields
#   ``..._load_dpf``, ``..._weight_dpf``, ``..._distance``). For any other unknown policy
#   tshark's ``..._value`` runs to the end of the padded parameter, padding included (a small
#   dissector bug: it should stop at the parameter length).
# * Python 3.11 writes the IPv4-mapped ::ffff:192.0.2.99 as ::ffff:c000:263; tshark (like
#   RFC 5952) uses the dotted form.

from __future__ import annotations

import math
import random
import re
import struct
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from ipaddress import IPv4Address, IPv6Address
from typing import Any, Literal, TypeAlias

import pytest

from tests.tools.tshark import (
    Packet,
    Tree,
    asap_packet,
    describe,
    dissect,
    enrp_packet,
    fields,
    problems,
)
from twisted_rserpool.wire import asap, enrp
from twisted_rserpool.wire.errors import CauseCode, MalformedMessage
from twisted_rserpool.wire.message import Message
from twisted_rserpool.wire.parameters import (
    CookieParameter,
    DccpTransport,
    DecodeContext,
    ErrorCause,
    HandleResolutionItems,
    IPv4AddressParameter,
    IPv6AddressParameter,
    LeastUsedDegradationPolicy,
    LeastUsedPolicy,
    OpaqueTransport,
    OperationError,
    PEChecksumParameter,
    PEIdentifierParameter,
    PoolElementParameter,
    PoolHandleParameter,
    PriorityLeastUsedPolicy,
    PriorityPolicy,
    RandomizedLeastUsedPolicy,
    RandomPolicy,
    RoundRobinPolicy,
    SctpTransport,
    SelectionPolicy,
    ServerInformation,
    TcpTransport,
    TransportUse,
    UdpLiteTransport,
    UdpTransport,
    UnknownPolicy,
    WeightedRandomPolicy,
    WeightedRoundRobinPolicy,
    decode_parameter,
    decode_parameters,
    tlv,
)

Protocol: TypeAlias = Literal["asap", "enrp"]
Expected: TypeAlias = list[tuple[str, "str | float"]]

CHECK_CHECKSUMS = (
    "sctp.checksum:CRC-32C",
    "ip.check_checksum:TRUE",
    "udp.check_checksum:TRUE",
    "tcp.check_checksum:TRUE",
)

# What tshark calls each of our message classes (its value_string tables).
TSHARK_NAMES: dict[type[Message], str] = {
    asap.Registration: "ASAP Registration",
    asap.Deregistration: "ASAP Deregistration",
    asap.RegistrationResponse: "ASAP Registration Response",
    asap.DeregistrationResponse: "ASAP Deregistration Response",
    asap.HandleResolution: "ASAP Handle Resolution",
    asap.HandleResolutionResponse: "ASAP Handle Resolution Response",
    asap.EndpointKeepAlive: "ASAP Endpoint Keep-Alive",
    asap.EndpointKeepAliveAck: "ASAP Endpoint Keep-Alive Acknowledgement",
    asap.EndpointUnreachable: "ASAP Endpoint Unreachable",
    asap.ServerAnnounce: "ASAP Server Announce",
    asap.Cookie: "ASAP Cookie",
    asap.CookieEcho: "ASAP Cookie Echo",
    asap.BusinessCard: "ASAP Business Card",
    asap.ErrorMessage: "ASAP Error",
    enrp.Presence: "ENRP Presence",
    enrp.HandleTableRequest: "ENRP Handle Table Request",
    enrp.HandleTableResponse: "ENRP Handle Table Response",
    enrp.HandleUpdate: "ENRP Handle Update",
    enrp.ListRequest: "ENRP List Request",
    enrp.ListResponse: "ENRP List Response",
    enrp.InitTakeover: "ENRP Init Takeover",
    enrp.InitTakeoverAck: "ENRP Init Takeover Ack",
    enrp.TakeoverServer: "ENRP Takeover Server",
    enrp.ErrorMessage: "ENRP Error",
}


# --------------------------------------------------------------------------- the messages

V4 = IPv4Address("192.0.2.10")
V4B = IPv4Address("198.51.100.7")
V6 = IPv6Address("2001:db8::42")
V6_MAPPED = IPv6Address("::ffff:192.0.2.99")
HANDLE = b"echo-pool"
HANDLE_BINARY = b"\x00\xffpool\x01"

SCTP_MULTI = SctpTransport(5001, (V4, V6, V4B), TransportUse.DATA_PLUS_CONTROL)
SCTP_ASAP = SctpTransport(3863, (V4,))
TCP_V6 = TcpTransport(8080, V6)
TCP_ASAP = TcpTransport(3863, V4B)

POLICIES: dict[str, SelectionPolicy] = {
    "round_robin": RoundRobinPolicy(),
    "weighted_round_robin": WeightedRoundRobinPolicy(7),
    "random": RandomPolicy(),
    "weighted_random": WeightedRandomPolicy(0xFFFFFFFF),
    "priority": PriorityPolicy(3),
    "least_used": LeastUsedPolicy(0x80000000),
    "least_used_degradation": LeastUsedDegradationPolicy(0x40000000, 0x01000000),
    "priority_least_used": PriorityLeastUsedPolicy(0xFFFFFFFF, 0),
    "randomized_least_used": RandomizedLeastUsedPolicy(1),
    "unknown": UnknownPolicy(0x7FFF0001, b"\x01\x02\x03\x04"),
    "unknown_unaligned": UnknownPolicy(0x7FFF0002, b"\x01\x02\x03"),
}

USER_TRANSPORTS = {
    "sctp_ipv4_ipv6": SCTP_MULTI,
    "tcp_ipv6": TCP_V6,
    "udp_ipv4": UdpTransport(7, V4),
    "udp_ipv6_mapped": UdpTransport(9, V6_MAPPED),
    "udp_lite": UdpLiteTransport(5004, V6),
    "dccp": DccpTransport(5005, 0x52534552, V4),
    "opaque": OpaqueTransport(b"opaque transport data"),
}


def poolElement(
    identifier: int = 0x1234ABCD,
    user: Any = SCTP_MULTI,
    policy: SelectionPolicy | None = None,
    asapTransport: SctpTransport | TcpTransport | None = SCTP_ASAP,
    life: int = 300,
) -> PoolElementParameter:
    """A pool element registered with home ENRP server 0x55."""
    return PoolElementParameter(
        identifier,
        0x55,
        life,
        user,
        policy if policy is not None else RoundRobinPolicy(),
        asapTransport,
    )


PE_A = poolElement(0x11111111, TCP_V6, WeightedRandomPolicy(2), None, -1)
PE_B = poolElement(0x22222222, UdpTransport(7, V4), LeastUsedPolicy(0x1000), TCP_ASAP, 0)

UNKNOWN_PARAMETER = tlv(0xC0FF, b"abc")
UNKNOWN_ASAP_MESSAGE = struct.pack("!BBH", 0x4F, 0x80, 12) + PoolHandleParameter(b"x").encode()
UNKNOWN_ENRP_MESSAGE = struct.pack("!BBHII", 0x4E, 0, 12, 0x11, 0x22)

# Every RFC 5354 error cause, each with the content the RFC gives it.
ASAP_CAUSES: dict[str, ErrorCause] = {
    "unspecified": ErrorCause(CauseCode.UNSPECIFIED_ERROR),
    "unrecognized_parameter": ErrorCause(CauseCode.UNRECOGNIZED_PARAMETER, UNKNOWN_PARAMETER),
    "unrecognized_message": ErrorCause(CauseCode.UNRECOGNIZED_MESSAGE, UNKNOWN_ASAP_MESSAGE),
    "unrecognized_known_message": ErrorCause(
        CauseCode.UNRECOGNIZED_MESSAGE, asap.Deregistration(HANDLE, 0x77).encode()
    ),
    "invalid_values": ErrorCause(
        CauseCode.INVALID_VALUES, PEIdentifierParameter(0xFFFFFFFF).encode()
    ),
    "non_unique_pe_identifier": ErrorCause(CauseCode.NON_UNIQUE_PE_IDENTIFIER),
    "inconsistent_pooling_policy": ErrorCause(
        CauseCode.INCONSISTENT_POOLING_POLICY, POLICIES["least_used_degradation"]
    ),
    "lack_of_resources": ErrorCause(CauseCode.LACK_OF_RESOURCES),
    "inconsistent_transport_type": ErrorCause(CauseCode.INCONSISTENT_TRANSPORT_TYPE, SCTP_MULTI),
    "inconsistent_data_control": ErrorCause(CauseCode.INCONSISTENT_DATA_CONTROL_CONFIGURATION),
    "unknown_pool_handle": ErrorCause(CauseCode.UNKNOWN_POOL_HANDLE),
    "rejected_security": ErrorCause(CauseCode.REJECTED_DUE_TO_SECURITY_CONSIDERATIONS),
    "unassigned_code": ErrorCause(0x0BAD, b"why"),
}
ENRP_CAUSES: dict[str, ErrorCause] = {
    **{name: cause for name, cause in ASAP_CAUSES.items() if "message" not in name},
    "unrecognized_message": ErrorCause(CauseCode.UNRECOGNIZED_MESSAGE, UNKNOWN_ENRP_MESSAGE),
    "unrecognized_known_message": ErrorCause(
        CauseCode.UNRECOGNIZED_MESSAGE, enrp.InitTakeover(0x11, 0x22, 0x33).encode()
    ),
    "inconsistent_transport_tcp": ErrorCause(CauseCode.INCONSISTENT_TRANSPORT_TYPE, TCP_V6),
}


def allCauses(causes: dict[str, ErrorCause]) -> OperationError:
    """One Operation Error holding every cause, in order."""
    return OperationError(tuple(causes.values()))


@dataclass(frozen=True)
class Case:
    """One message to encode, and the transport that carries it to tshark."""

    name: str
    message: Message
    transport: Literal["udp", "tcp", "sctp"] = "sctp"

    @property
    def protocol(self) -> Protocol:
        """Which of the two protocols the message belongs to."""
        return "asap" if type(self.message).__module__ == asap.__name__ else "enrp"

    @property
    def key(self) -> str:
        """A name unique among all cases."""
        return f"{self.protocol}-{self.name}"

    def packet(self) -> Packet:
        """The message, encoded by our codec, in a packet tshark dissects as its protocol."""
        if self.protocol == "asap":
            return asap_packet(self.message.encode(), self.transport)
        return enrp_packet(self.message.encode(), self.transport)


def asapCases() -> Iterator[Case]:
    """Every ASAP message type, with variants."""
    for name, policy in POLICIES.items():
        yield Case(
            f"registration_policy_{name}", asap.Registration(HANDLE, poolElement(policy=policy))
        )
    for name, user in USER_TRANSPORTS.items():
        yield Case(
            f"registration_transport_{name}",
            asap.Registration(HANDLE, poolElement(user=user, asapTransport=TCP_ASAP)),
            "tcp",
        )
    yield Case(
        "registration_no_asap_transport_infinite_life",
        asap.Registration(HANDLE_BINARY, poolElement(asapTransport=None, life=-1)),
        "udp",
    )
    yield Case("deregistration", asap.Deregistration(HANDLE, 0xDEADBEEF))
    yield Case("registration_response_accepted", asap.RegistrationResponse(HANDLE, 1), "tcp")
    yield Case(
        "registration_response_accepted_warning",
        asap.RegistrationResponse(
            HANDLE,
            2,
            error=OperationError.single(CauseCode.INCONSISTENT_POOLING_POLICY, RoundRobinPolicy()),
        ),
    )
    for name, cause in ASAP_CAUSES.items():
        yield Case(
            f"registration_response_rejected_{name}",
            asap.RegistrationResponse(HANDLE, 3, reject=True, error=OperationError((cause,))),
        )
    yield Case("deregistration_response", asap.DeregistrationResponse(HANDLE, 4), "udp")
    yield Case(
        "deregistration_response_error",
        asap.DeregistrationResponse(
            HANDLE, 5, OperationError.single(CauseCode.UNKNOWN_POOL_HANDLE)
        ),
    )
    yield Case("handle_resolution", asap.HandleResolution(HANDLE))
    yield Case("handle_resolution_subscribe", asap.HandleResolution(HANDLE, subscribe=True), "tcp")
    yield Case("handle_resolution_items", asap.HandleResolution(HANDLE, items=3), "udp")
    yield Case(
        "handle_resolution_response_accept",
        asap.HandleResolutionResponse(
            HANDLE, (PE_A, PE_B), POLICIES["weighted_round_robin"], accept_updates=True
        ),
    )
    yield Case(
        "handle_resolution_response_no_policy",
        asap.HandleResolutionResponse(HANDLE, (poolElement(),)),
        "tcp",
    )
    yield Case(
        "handle_resolution_response_negative",
        asap.HandleResolutionResponse(
            HANDLE, error=OperationError.single(CauseCode.UNKNOWN_POOL_HANDLE)
        ),
    )
    yield Case("endpoint_keep_alive", asap.EndpointKeepAlive(0x01020304, HANDLE))
    yield Case("endpoint_keep_alive_home", asap.EndpointKeepAlive(0xFFFFFFFF, HANDLE, True), "tcp")
    yield Case("endpoint_keep_alive_ack", asap.EndpointKeepAliveAck(HANDLE, 0x1234ABCD), "udp")
    yield Case("endpoint_unreachable", asap.EndpointUnreachable(HANDLE, 0x1234ABCD))
    yield Case("server_announce", asap.ServerAnnounce(0xCAFE, (SCTP_MULTI, TCP_ASAP)))
    yield Case("server_announce_bare", asap.ServerAnnounce(0xCAFF), "udp")
    yield Case("cookie", asap.Cookie(b"\x00\x01state\xff\xfe"), "tcp")
    yield Case("cookie_echo", asap.CookieEcho(b"\x00\x01state\xff\xfe"))
    yield Case("cookie_empty", asap.Cookie(b""), "udp")
    yield Case("business_card", asap.BusinessCard(HANDLE, (PE_B, PE_A)))
    yield Case("business_card_empty", asap.BusinessCard(HANDLE), "udp")
    yield Case(
        "business_card_rsplib_policy",
        asap.BusinessCard(HANDLE, (PE_A,), WeightedRoundRobinPolicy(3)),
    )
    yield Case(
        "endpoint_keep_alive_rsplib_pe_identifier",
        asap.EndpointKeepAlive(0x01020304, HANDLE, False, 0x0BADCAFE),
    )
    yield Case(
        "tcp_transport_data_plus_control",
        asap.Registration(
            HANDLE,
            replace(
                PE_A,
                asap_transport=TcpTransport(3863, V4B, TransportUse.DATA_PLUS_CONTROL),
            ),
        ),
    )
    for name, cause in ASAP_CAUSES.items():
        yield Case(f"error_{name}", asap.ErrorMessage(OperationError((cause,))), "tcp")
    yield Case("error_all_causes", asap.ErrorMessage(allCauses(ASAP_CAUSES)))


def enrpCases() -> Iterator[Case]:
    """Every ENRP message type, with variants."""
    yield Case(
        "presence_reply_required",
        enrp.Presence(0x11, 0x22, 0xABCD, ServerInformation(0x11, SCTP_MULTI), True),
    )
    yield Case("presence", enrp.Presence(0x11, 0, 0x0001), "udp")
    yield Case(
        "presence_tcp_server", enrp.Presence(0x11, 0x22, 0, ServerInformation(0x11, TCP_ASAP))
    )
    yield Case("presence_bare", enrp.Presence(0x11, 0x22), "udp")
    yield Case("handle_table_request", enrp.HandleTableRequest(0x11, 0x22))
    yield Case("handle_table_request_own", enrp.HandleTableRequest(0x11, 0x22, True), "udp")
    entries = (
        enrp.PoolEntry(HANDLE, (PE_A, PE_B)),
        enrp.PoolEntry(HANDLE_BINARY, (poolElement(policy=POLICIES["priority"]),)),
    )
    yield Case("handle_table_response_more", enrp.HandleTableResponse(0x11, 0x22, entries, True))
    yield Case(
        "handle_table_response_last", enrp.HandleTableResponse(0x11, 0x22, entries[:1]), "udp"
    )
    yield Case("handle_table_response_reject", enrp.HandleTableResponse(0x11, 0x22, reject=True))
    for action in enrp.UpdateAction:
        yield Case(
            f"handle_update_{action.name.lower()}",
            enrp.HandleUpdate(
                0x11, 0x22, action, HANDLE, poolElement(policy=POLICIES["least_used"])
            ),
            "udp" if action else "sctp",
        )
    yield Case("list_request", enrp.ListRequest(0x11, 0x22))
    yield Case(
        "list_response",
        enrp.ListResponse(
            0x11, 0x22, (ServerInformation(0x33, SCTP_ASAP), ServerInformation(0x44, TCP_V6))
        ),
        "udp",
    )
    yield Case("list_response_reject", enrp.ListResponse(0x11, 0x22, reject=True))
    yield Case("init_takeover", enrp.InitTakeover(0x11, 0x22, 0x33))
    yield Case("init_takeover_ack", enrp.InitTakeoverAck(0x22, 0x11, 0x33), "udp")
    yield Case("takeover_server", enrp.TakeoverServer(0x11, 0, 0x33))
    for name, cause in ENRP_CAUSES.items():
        yield Case(f"error_{name}", enrp.ErrorMessage(0x11, 0x22, OperationError((cause,))), "udp")
    yield Case("error_all_causes", enrp.ErrorMessage(0x11, 0x22, allCauses(ENRP_CAUSES)))


def randomAddress(r: random.Random) -> IPv4Address | IPv6Address:
    """An IPv4 or IPv6 address."""
    return IPv4Address(r.getrandbits(32)) if r.random() < 0.5 else IPv6Address(r.getrandbits(128))


def randomTransport(r: random.Random, kinds: Sequence[str] = ("sctp", "tcp")) -> Any:
    """A transport parameter of one of the given kinds."""
    kind, port = r.choice(kinds), r.randrange(0x10000)
    if kind == "sctp":
        addresses = tuple(randomAddress(r) for _ in range(r.randint(1, 3)))
        return SctpTransport(port, addresses, r.choice(list(TransportUse)))
    if kind == "dccp":
        return DccpTransport(port, r.getrandbits(32), randomAddress(r))
    if kind == "opaque":
        return OpaqueTransport(r.randbytes(r.randint(0, 24)))
    cls = {"tcp": TcpTransport, "udp": UdpTransport, "udplite": UdpLiteTransport}[kind]
    return cls(port, randomAddress(r))


def randomPolicy(r: random.Random) -> SelectionPolicy:
    """One of the RFC 5356 policies with random values, or an unknown one."""

    def u32() -> int:
        return r.getrandbits(32)

    makers: list[Callable[[], SelectionPolicy]] = [
        RoundRobinPolicy,
        lambda: WeightedRoundRobinPolicy(u32()),
        RandomPolicy,
        lambda: WeightedRandomPolicy(u32()),
        lambda: PriorityPolicy(u32()),
        lambda: LeastUsedPolicy(u32()),
        lambda: LeastUsedDegradationPolicy(u32(), u32()),
        lambda: PriorityLeastUsedPolicy(u32(), u32()),
        lambda: RandomizedLeastUsedPolicy(u32()),
        lambda: UnknownPolicy(r.randrange(6, 0x40000000), r.randbytes(r.randint(0, 12))),
    ]
    return r.choice(makers)()


def randomPoolElement(r: random.Random) -> PoolElementParameter:
    """A pool element with random identifiers, transports and policy."""
    return PoolElementParameter(
        r.getrandbits(32),
        r.getrandbits(32),
        r.randint(-(1 << 31), (1 << 31) - 1),
        randomTransport(r, ("sctp", "tcp", "udp", "udplite", "dccp", "opaque")),
        randomPolicy(r),
        randomTransport(r) if r.random() < 0.7 else None,
    )


def randomMessage(r: random.Random, protocol: Protocol) -> Message:
    """A random, valid message of any type of the protocol."""

    def u32() -> int:
        return r.getrandbits(32)

    handle = r.randbytes(r.randint(1, 32))
    flag = r.random() < 0.5
    causes = list((ASAP_CAUSES if protocol == "asap" else ENRP_CAUSES).values())
    error = OperationError(tuple(r.sample(causes, r.randint(1, 3))))
    pes = tuple(randomPoolElement(r) for _ in range(r.randint(1, 3)))
    if protocol == "asap":
        asapMakers: list[Callable[[], Message]] = [
            lambda: asap.Registration(handle, pes[0]),
            lambda: asap.Deregistration(handle, u32()),
            lambda: asap.RegistrationResponse(handle, u32(), flag, error if flag else None),
            lambda: asap.DeregistrationResponse(handle, u32(), error if flag else None),
            lambda: asap.HandleResolution(handle, flag, u32() if r.random() < 0.5 else None),
            lambda: asap.HandleResolutionResponse(handle, pes, randomPolicy(r), flag),
            lambda: asap.HandleResolutionResponse(handle, error=error),
            lambda: asap.EndpointKeepAlive(u32(), handle, flag),
            lambda: asap.EndpointKeepAliveAck(handle, u32()),
            lambda: asap.EndpointUnreachable(handle, u32()),
            lambda: asap.ServerAnnounce(u32(), tuple(randomTransport(r) for _ in pes)),
            lambda: asap.Cookie(r.randbytes(r.randint(0, 40))),
            lambda: asap.CookieEcho(r.randbytes(r.randint(0, 40))),
            lambda: asap.BusinessCard(handle, pes),
            lambda: asap.ErrorMessage(error),
        ]
        return r.choice(asapMakers)()
    sender, receiver = u32(), u32()
    information = ServerInformation(u32(), randomTransport(r))
    enrpMakers: list[Callable[[], Message]] = [
        lambda: enrp.Presence(sender, receiver, r.getrandbits(16), information, flag),
        lambda: enrp.HandleTableRequest(sender, receiver, flag),
        lambda: enrp.HandleTableResponse(
            sender, receiver, (enrp.PoolEntry(handle, pes),) * r.randint(1, 2), flag
        ),
        lambda: enrp.HandleTableResponse(sender, receiver, more_to_send=flag, reject=True),
        lambda: enrp.HandleUpdate(
            sender, receiver, r.choice(list(enrp.UpdateAction)), handle, pes[0]
        ),
        lambda: enrp.ListRequest(sender, receiver),
        lambda: enrp.ListResponse(sender, receiver, (information,) * len(pes)),
        lambda: enrp.ListResponse(sender, receiver, reject=True),
        lambda: enrp.InitTakeover(sender, receiver, u32()),
        lambda: enrp.InitTakeoverAck(sender, receiver, u32()),
        lambda: enrp.TakeoverServer(sender, receiver, u32()),
        lambda: enrp.ErrorMessage(sender, receiver, error),
    ]
    return r.choice(enrpMakers)()


def randomCases(count: int, seed: int = 5352) -> Iterator[Case]:
    """Random messages of both protocols, the same on every run."""
    r = random.Random(seed)
    for index in range(count):
        protocol: Protocol = "asap" if index % 2 == 0 else "enrp"
        transports: list[Literal["udp", "tcp", "sctp"]] = ["sctp", "udp"]
        if protocol == "asap":
            transports.append("tcp")
        yield Case(f"random_{index:03d}", randomMessage(r, protocol), r.choice(transports))


CASES = [*asapCases(), *enrpCases(), *randomCases(200)]


# --------------------------------------------------------------------------- expectations


def lengthField(encoded: bytes) -> str:
    """The length field of an encoded TLV or message header, as tshark prints it."""
    return str(struct.unpack_from("!H", encoded, 2)[0])


def hexBytes(data: bytes) -> str:
    """Bytes as tshark prints an FT_BYTES field."""
    return data.hex(":")


def percent(value: int) -> float:
    """A 32-bit load value as the percentage tshark shows."""
    return 100.0 * value / 0xFFFFFFFF


def ipv6Text(address: IPv6Address) -> str:
    """An IPv6 address as RFC 5952 writes it (IPv4-mapped ones with a dotted tail).

    Python 3.11 writes ::ffff:192.0.2.99 as ::ffff:c000:263; tshark follows RFC 5952.
    """
    if address.ipv4_mapped is not None:
        return f"::ffff:{address.ipv4_mapped}"
    return str(address)


def expectAddress(address: IPv4Address | IPv6Address, p: Protocol) -> Expected:
    """The fields of an address parameter."""
    if address.version == 4:
        return [
            (f"{p}.parameter_type", "0x0001"),
            (f"{p}.parameter_length", "8"),
            (f"{p}.ipv4_address", str(address)),
        ]
    return [
        (f"{p}.parameter_type", "0x0002"),
        (f"{p}.parameter_length", "20"),
        (f"{p}.ipv6_address", ipv6Text(address)),
    ]


def expectPolicy(policy: SelectionPolicy, p: Protocol) -> Expected:
    """The policy-specific fields of a selection policy (RFC 5356)."""
    f = f"{p}.pool_member_selection_policy"
    found: Expected = [(f"{f}_type", f"0x{policy.policy_type:08x}")]
    if isinstance(policy, WeightedRoundRobinPolicy | WeightedRandomPolicy):
        found.append((f"{f}_weight", str(policy.weight)))
    elif isinstance(policy, PriorityPolicy):
        found.append((f"{f}_priority", str(policy.priority)))
    elif isinstance(policy, LeastUsedPolicy | RandomizedLeastUsedPolicy):
        found.append((f"{f}_load", percent(policy.load)))
    elif isinstance(policy, LeastUsedDegradationPolicy | PriorityLeastUsedPolicy):
        found.append((f"{f}_load", percent(policy.load)))
        found.append((f"{f}_degradation", percent(policy.load_degradation)))
    elif isinstance(policy, UnknownPolicy) and policy.data:
        # tshark's dissector takes the value up to the end of the padded parameter, so it
        # shows the padding as part of the value (it should stop at the parameter length).
        found.append((f"{f}_value", hexBytes(policy.data + b"\x00" * (-len(policy.data) % 4))))
    return found


def expectParameter(parameter: Any, p: Protocol) -> Expected:
    """The fields tshark shows for one parameter object of our codec, in order."""
    encoded = parameter.encode()
    found: Expected = [
        (f"{p}.parameter_type", f"0x{parameter.TYPE:04x}"),
        (f"{p}.parameter_length", lengthField(encoded)),
    ]
    if isinstance(parameter, IPv4AddressParameter | IPv6AddressParameter):
        return expectAddress(parameter.address, p)
    if isinstance(parameter, SctpTransport):
        found += [
            (f"{p}.sctp_transport_port", str(parameter.port)),
            (f"{p}.transport_use", str(int(parameter.transport_use))),
        ]
    elif isinstance(parameter, TcpTransport):
        # tshark reads the reserved field as a Transport Use.
        found += [
            (f"{p}.tcp_transport_port", str(parameter.port)),
            (f"{p}.transport_use", str(int(parameter.transport_use))),
        ]
    elif isinstance(parameter, UdpLiteTransport):
        found += [
            (f"{p}.udp_lite_transport_port", str(parameter.port)),
            (f"{p}.udp_lite_transport_reserved", "0"),
        ]
    elif isinstance(parameter, UdpTransport):
        found += [
            (f"{p}.udp_transport_port", str(parameter.port)),
            (f"{p}.udp_transport_reserved", "0"),
        ]
    elif isinstance(parameter, DccpTransport):
        found += [
            (f"{p}.dccp_transport_port", str(parameter.port)),
            (f"{p}.dccp_transport_reserved", "0"),
            (f"{p}.dccp_transport_service_code", str(parameter.service_code)),
        ]
    elif isinstance(parameter, OpaqueTransport):
        # Unknown to tshark: shown as an unknown parameter.
        return found + (
            [(f"{p}.parameter_value", hexBytes(parameter.data))] if parameter.data else []
        )
    elif isinstance(parameter, SelectionPolicy):
        return found + expectPolicy(parameter, p)
    elif isinstance(parameter, PoolHandleParameter):
        return [*found, (f"{p}.pool_handle_pool_handle", hexBytes(parameter.pool_handle))]
    elif isinstance(parameter, PoolElementParameter):
        found += [
            (f"{p}.pool_element_pe_identifier", f"0x{parameter.pe_identifier:08x}"),
            (
                f"{p}.pool_element_home_enrp_server_identifier",
                f"0x{parameter.home_server_identifier:08x}",
            ),
            (f"{p}.pool_element_registration_life", str(parameter.registration_life)),
        ]
        found += expectParameter(parameter.user_transport, p)
        found += expectParameter(parameter.policy, p)
        if parameter.asap_transport is not None:
            found += expectParameter(parameter.asap_transport, p)
        return found
    elif isinstance(parameter, ServerInformation):
        name = (
            "asap.server_identifier" if p == "asap" else "enrp.server_information_server_identifier"
        )
        found.append((name, f"0x{parameter.server_identifier:08x}"))
        return found + expectParameter(parameter.server_transport, p)
    elif isinstance(parameter, OperationError):
        for cause in parameter.causes:
            found += expectCause(cause, p)
        return found
    elif isinstance(parameter, CookieParameter):
        return found + ([(f"{p}.cookie", hexBytes(parameter.cookie))] if parameter.cookie else [])
    elif isinstance(parameter, PEIdentifierParameter):
        return [*found, (f"{p}.pe_identifier", f"0x{parameter.pe_identifier:08x}")]
    elif isinstance(parameter, PEChecksumParameter):
        return [*found, (f"{p}.pe_checksum", f"0x{parameter.checksum:04x}")]
    elif isinstance(parameter, HandleResolutionItems) and p == "asap":
        return [*found, ("asap.hropt_items", str(parameter.items))]
    else:
        return [*found, (f"{p}.parameter_value", hexBytes(encoded[4 : int(lengthField(encoded))]))]
    for address in parameter.addresses:
        found += expectAddress(address, p)
    return found


def expectRawParameter(data: bytes, p: Protocol) -> Expected:
    """The fields of one encoded TLV, known to our codec or not."""
    try:
        return expectParameter(decode_parameter(data), p)
    except MalformedMessage:
        length = int(lengthField(data))
        return [
            (f"{p}.parameter_type", f"0x{struct.unpack_from('!H', data)[0]:04x}"),
            (f"{p}.parameter_length", str(length)),
            (f"{p}.parameter_value", hexBytes(data[4:length])),
        ]


def expectCause(cause: ErrorCause, p: Protocol) -> Expected:
    """The fields of one error cause, with its nested parameter or message."""
    encoded = cause.encode()
    found: Expected = [
        (f"{p}.cause_code", f"0x{cause.code:04x}"),
        (f"{p}.cause_length", lengthField(encoded)),
    ]
    information = cause.information
    if cause.code in (
        CauseCode.UNRECOGNIZED_PARAMETER,
        CauseCode.INVALID_VALUES,
        CauseCode.INCONSISTENT_POOLING_POLICY,
        CauseCode.INCONSISTENT_TRANSPORT_TYPE,
    ):
        if isinstance(information, bytes):
            return found + expectRawParameter(information, p)
        return found + expectParameter(information, p)
    if cause.code == CauseCode.UNRECOGNIZED_MESSAGE:
        assert isinstance(information, bytes)
        return found + expectRawMessage(information, p)
    if cause.code == CauseCode.UNSPECIFIED_ERROR or cause.code > max(CauseCode):
        info = information if isinstance(information, bytes) else information.encode()
        return found + ([(f"{p}.cause_info", hexBytes(info))] if info else [])
    return found


def expectRawMessage(data: bytes, p: Protocol) -> Expected:
    """The fields of an encoded message, as tshark nests it inside an error cause."""
    decoder = asap.decode if p == "asap" else enrp.decode
    try:
        return expectMessage(decoder(data), p)
    except MalformedMessage:
        pass
    length = int(lengthField(data))
    found: Expected = [
        (f"{p}.message_type", str(data[0])),
        (f"{p}.message_flags", f"0x{data[1]:02x}"),
        (f"{p}.message_length", str(length)),
    ]
    if p == "enrp":
        return [*found, ("enrp.message_value", hexBytes(data[4:length]))]
    for parameter in decode_parameters(DecodeContext(data), 4, length):
        found += expectParameter(parameter, p)
    return found


def messageParameters(message: Message) -> list[Any]:
    """The parameters of a message in the order its RFC figure lists them."""
    m: Any = message
    handle = [PoolHandleParameter(m.pool_handle)] if hasattr(m, "pool_handle") else []
    pe_identifier = getattr(m, "pe_identifier", None)
    pe = [PEIdentifierParameter(pe_identifier)] if pe_identifier is not None else []
    error = [m.error] if getattr(m, "error", None) is not None else []
    if isinstance(message, asap.Registration | enrp.HandleUpdate):
        return [*handle, m.pool_element]
    if isinstance(message, asap.HandleResolution):
        return handle + ([HandleResolutionItems(m.items)] if m.items is not None else [])
    if isinstance(message, asap.HandleResolutionResponse):
        return [*handle, *([m.policy] if m.policy else []), *m.pool_elements, *error]
    if isinstance(message, asap.BusinessCard):
        return [*handle, *([m.policy] if m.policy else []), *m.pool_elements]
    if isinstance(message, asap.ServerAnnounce):
        return list(m.transports)
    if isinstance(message, asap.Cookie | asap.CookieEcho):
        return [CookieParameter(m.cookie)]
    if isinstance(message, enrp.Presence):
        return [
            *([PEChecksumParameter(m.checksum)] if m.checksum is not None else []),
            *([m.server_information] if m.server_information else []),
        ]
    if isinstance(message, enrp.HandleTableResponse):
        return [
            parameter
            for entry in m.pool_entries
            for parameter in (PoolHandleParameter(entry.pool_handle), *entry.pool_elements)
        ]
    if isinstance(message, enrp.ListResponse):
        return list(m.servers)
    return [*handle, *pe, *error]


def expectMessage(message: Message, p: Protocol) -> Expected:
    """The fields tshark shows for one message of our codec, in order."""
    encoded = message.encode()
    m: Any = message
    flags = expectFlags(message)
    found: Expected = [
        (f"{p}.message_type", str(message.TYPE)),
        (f"{p}.message_flags", f"0x{flags:02x}"),
    ]
    bits: list[tuple[str, bool]] = []
    if isinstance(message, asap.RegistrationResponse | enrp.ListResponse):
        bits = [("r_bit", m.reject)]
    elif isinstance(message, asap.EndpointKeepAlive):
        bits = [("h_bit", m.home)]
    elif isinstance(message, enrp.Presence):
        bits = [("r_bit", m.reply_required)]
    elif isinstance(message, enrp.HandleTableRequest):
        bits = [("w_bit", m.own_children_only)]
    elif isinstance(message, enrp.HandleTableResponse):
        bits = [("m_bit", m.more_to_send), ("r_bit", m.reject)]
    elif isinstance(message, enrp.HandleUpdate):
        bits = [("t_bit", False)]  # tshark's takeover-suggested bit; RFC 5353 has none
    found += [(f"{p}.{bit}", str(int(value))) for bit, value in bits]
    found.append((f"{p}.message_length", lengthField(encoded)))
    if isinstance(message, asap.EndpointKeepAlive | asap.ServerAnnounce):
        found.append(("asap.server_identifier", f"0x{m.server_identifier:08x}"))
    if p == "enrp":
        found += [
            ("enrp.sender_servers_id", f"0x{m.sending_server_identifier:08x}"),
            ("enrp.receiver_servers_id", f"0x{m.receiving_server_identifier:08x}"),
        ]
    if isinstance(message, enrp.HandleUpdate):
        found += [("enrp.update_action", str(int(m.update_action))), ("enrp.reserved", "0x0000")]
    if isinstance(message, enrp.InitTakeover | enrp.InitTakeoverAck | enrp.TakeoverServer):
        found.append(("enrp.target_servers_id", f"0x{m.target_server_identifier:08x}"))
    for parameter in messageParameters(message):
        found += expectParameter(parameter, p)
    return found


def expectFlags(message: Message) -> int:
    """The flags byte the RFCs give this message: R, S, A, H, W as 0x01 and M as 0x02."""
    m: Any = message
    names = ("reject", "subscribe", "accept_updates", "home", "reply_required", "own_children_only")
    flags = int(any(getattr(m, name, False) for name in names))
    return flags | (0x02 if getattr(m, "more_to_send", False) else 0)


# --------------------------------------------------------------------------- tshark, once


@dataclass(frozen=True)
class Dissection:
    """tshark's reading of every case: JSON layers and the detail text, by case name."""

    layers: dict[str, Tree]
    text: dict[str, str]


@pytest.fixture(scope="module")
def tshark() -> Dissection:
    """Every case in one pcap, dissected by tshark once as JSON and once as text."""
    from tests.conftest import requireTool

    path = requireTool("tshark")
    packets = [case.packet() for case in CASES]
    layers = dissect(packets, tshark=path, options=CHECK_CHECKSUMS)
    text = re.split(r"^(?=Frame \d+:)", describe(packets, tshark=path), flags=re.MULTILINE)
    frames = [part for part in text if part.startswith("Frame ")]
    assert len(frames) == len(CASES)
    return Dissection(
        {case.key: layer for case, layer in zip(CASES, layers, strict=True)},
        {case.key: frame for case, frame in zip(CASES, frames, strict=True)},
    )


IGNORED = re.compile(r"^(asap|enrp)\.(parameter_padding|cause_padding)$")


def matches(actual: str, expected: str | float) -> bool:
    """Whether tshark's value equals ours (floats to within rounding)."""
    if isinstance(expected, float):
        return math.isclose(float(actual), expected, rel_tol=1e-12, abs_tol=1e-9)
    return actual == expected


def compare(actual: Sequence[tuple[str, str]], expected: Expected) -> list[str]:
    """Readable differences between tshark's fields and ours, empty when they agree."""
    differences = []
    for index in range(max(len(actual), len(expected))):
        have = actual[index] if index < len(actual) else ("<missing>", "")
        want = expected[index] if index < len(expected) else ("<nothing more>", "")
        if have[0] != want[0] or not matches(have[1], want[1]):
            differences.append(
                f"#{index}: tshark {have[0]}={have[1]!r}, ours {want[0]}={want[1]!r}"
            )
    return differences


# --------------------------------------------------------------------------- the tests


def test_everyMessageTypeCovered() -> None:
    """The cases cover every ASAP type 0x01-0x0e and every ENRP type 0x01-0x0a."""
    asapTypes = {c.message.TYPE for c in CASES if c.protocol == "asap"}
    enrpTypes = {c.message.TYPE for c in CASES if c.protocol == "enrp"}
    assert asapTypes == set(range(0x01, 0x0F))
    assert enrpTypes == set(range(0x01, 0x0B))
    assert len({case.key for case in CASES}) == len(CASES)
    assert set(TSHARK_NAMES) == set(asap.MESSAGE_CLASSES.values()) | set(
        enrp.MESSAGE_CLASSES.values()
    )


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.key)
def test_tsharkAgrees(case: Case, tshark: Dissection) -> None:
    """tshark names our message's type and reads every field as we wrote it, cleanly."""
    layers = tshark.layers[case.key]
    assert problems(layers) == []
    assert case.protocol in layers, f"tshark did not dissect {case.name} as {case.protocol}"
    assert [key for key in layers if key in ("asap", "enrp")] == [case.protocol]
    name = TSHARK_NAMES[type(case.message)]
    assert f"    Type: {name} ({case.message.TYPE})\n" in tshark.text[case.key]
    tree = layers[case.protocol]
    actual = [(key, value) for key, value in fields(tree) if not IGNORED.match(key)]
    padding = [value for key, value in fields(tree) if IGNORED.match(key)]
    assert all(set(value) <= {"0", ":"} for value in padding)
    assert compare(actual, expectMessage(case.message, case.protocol)) == []


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.key)
def test_codecRoundTrip(case: Case) -> None:
    """Our decoder reads back the message that tshark read, with the RFC's flag bits."""
    decode: Callable[[bytes], Message] = asap.decode if case.protocol == "asap" else enrp.decode
    encoded = case.message.encode()
    assert decode(encoded) == case.message
    assert encoded[1] == expectFlags(case.message)
    assert len(encoded) % 4 == 0
