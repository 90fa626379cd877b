"""Hypothesis strategies that build every RSerPool parameter and message."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv6Address

from hypothesis import strategies as st

from twisted_rserpool.wire import asap, enrp
from twisted_rserpool.wire.errors import CauseCode
from twisted_rserpool.wire.message import Message
from twisted_rserpool.wire.parameters import (
    Address,
    DccpTransport,
    ErrorCause,
    LeastUsedDegradationPolicy,
    LeastUsedPolicy,
    OpaqueTransport,
    OperationError,
    PoolElementParameter,
    PriorityLeastUsedPolicy,
    PriorityPolicy,
    RandomizedLeastUsedPolicy,
    RandomPolicy,
    RoundRobinPolicy,
    SctpTransport,
    SelectionPolicy,
    ServerInformation,
    TcpTransport,
    Transport,
    TransportUse,
    UdpLiteTransport,
    UdpTransport,
    UnknownPolicy,
    WeightedRandomPolicy,
    WeightedRoundRobinPolicy,
)

u16 = st.integers(0, 0xFFFF)
u32 = st.integers(0, 0xFFFFFFFF)
i32 = st.integers(-(1 << 31), (1 << 31) - 1)
pool_handles = st.binary(min_size=1, max_size=64)
cookies = st.binary(max_size=200)

addresses: st.SearchStrategy[Address] = st.one_of(
    st.builds(IPv4Address, u32), st.builds(IPv6Address, st.integers(0, (1 << 128) - 1))
)

sctp_transports = st.builds(
    SctpTransport,
    u16,
    st.lists(addresses, min_size=1, max_size=4).map(tuple),
    st.sampled_from(TransportUse),
)
tcp_transports = st.builds(TcpTransport, u16, addresses, st.sampled_from(TransportUse))
asap_transports: st.SearchStrategy[SctpTransport | TcpTransport] = st.one_of(
    sctp_transports, tcp_transports
)
transports: st.SearchStrategy[Transport] = st.one_of(
    sctp_transports,
    tcp_transports,
    st.builds(UdpTransport, u16, addresses),
    st.builds(UdpLiteTransport, u16, addresses),
    st.builds(DccpTransport, u16, u32, addresses),
    st.builds(OpaqueTransport, st.binary(max_size=40)),
)

_KNOWN_POLICY_TYPES = {
    0x1,
    0x2,
    0x3,
    0x4,
    0x5,
    0x40000001,
    0x40000002,
    0x40000003,
    0x40000004,
}
policies: st.SearchStrategy[SelectionPolicy] = st.one_of(
    st.just(RoundRobinPolicy()),
    st.builds(WeightedRoundRobinPolicy, u32),
    st.just(RandomPolicy()),
    st.builds(WeightedRandomPolicy, u32),
    st.builds(PriorityPolicy, u32),
    st.builds(LeastUsedPolicy, u32),
    st.builds(LeastUsedDegradationPolicy, u32, u32),
    st.builds(PriorityLeastUsedPolicy, u32, u32),
    st.builds(RandomizedLeastUsedPolicy, u32),
    st.builds(
        UnknownPolicy,
        u32.filter(lambda t: t not in _KNOWN_POLICY_TYPES and t not in (0, 0x40000000)),
        st.binary(max_size=16),
    ),
)

pool_elements = st.builds(
    PoolElementParameter,
    u32,
    u32,
    i32,
    transports,
    policies,
    st.one_of(st.none(), asap_transports),
)

_PLAIN_CAUSES = [
    CauseCode.UNSPECIFIED_ERROR,
    CauseCode.NON_UNIQUE_PE_IDENTIFIER,
    CauseCode.LACK_OF_RESOURCES,
    CauseCode.INCONSISTENT_DATA_CONTROL_CONFIGURATION,
    CauseCode.UNKNOWN_POOL_HANDLE,
    CauseCode.REJECTED_DUE_TO_SECURITY_CONSIDERATIONS,
]
error_causes: st.SearchStrategy[ErrorCause] = st.one_of(
    st.builds(ErrorCause, st.sampled_from(_PLAIN_CAUSES)),
    st.builds(
        ErrorCause,
        st.sampled_from(
            [
                CauseCode.UNRECOGNIZED_PARAMETER,
                CauseCode.UNRECOGNIZED_MESSAGE,
                CauseCode.INVALID_VALUES,
            ]
        ),
        st.binary(max_size=40),
    ),
    st.builds(ErrorCause, st.just(CauseCode.INCONSISTENT_POOLING_POLICY), policies),
    st.builds(ErrorCause, st.just(CauseCode.INCONSISTENT_TRANSPORT_TYPE), transports),
)
operation_errors = st.builds(
    OperationError, st.lists(error_causes, min_size=1, max_size=4).map(tuple)
)
server_informations = st.builds(ServerInformation, u32, asap_transports)

pe_lists = st.lists(pool_elements, min_size=1, max_size=4).map(tuple)

asap_messages: st.SearchStrategy[Message] = st.one_of(
    st.builds(asap.Registration, pool_handles, pool_elements),
    st.builds(asap.Deregistration, pool_handles, u32),
    st.builds(
        asap.RegistrationResponse,
        pool_handles,
        u32,
        st.booleans(),
        st.one_of(st.none(), operation_errors),
    ),
    st.builds(
        asap.DeregistrationResponse, pool_handles, u32, st.one_of(st.none(), operation_errors)
    ),
    st.builds(asap.HandleResolution, pool_handles, st.booleans(), st.one_of(st.none(), u32)),
    st.builds(
        asap.HandleResolutionResponse,
        pool_handles,
        pe_lists,
        st.one_of(st.none(), policies),
        st.booleans(),
    ),
    st.builds(
        asap.HandleResolutionResponse,
        pool_handles,
        st.just(()),
        st.none(),
        st.booleans(),
        operation_errors,
    ),
    st.builds(asap.EndpointKeepAlive, u32, pool_handles, st.booleans(), st.one_of(st.none(), u32)),
    st.builds(asap.EndpointKeepAliveAck, pool_handles, u32),
    st.builds(asap.EndpointUnreachable, pool_handles, u32),
    st.builds(asap.ServerAnnounce, u32, st.lists(asap_transports, max_size=3).map(tuple)),
    st.builds(asap.Cookie, cookies),
    st.builds(asap.CookieEcho, cookies),
    st.builds(
        asap.BusinessCard,
        pool_handles,
        st.lists(pool_elements, max_size=3).map(tuple),
        st.one_of(st.none(), policies),
    ),
    st.builds(asap.ErrorMessage, operation_errors),
)

pool_entries = st.builds(enrp.PoolEntry, pool_handles, pe_lists)

enrp_messages: st.SearchStrategy[Message] = st.one_of(
    st.builds(
        enrp.Presence,
        u32,
        u32,
        st.one_of(st.none(), u16),
        st.one_of(st.none(), server_informations),
        st.booleans(),
    ),
    st.builds(enrp.HandleTableRequest, u32, u32, st.booleans()),
    st.builds(
        enrp.HandleTableResponse,
        u32,
        u32,
        st.lists(pool_entries, max_size=3).map(tuple),
        st.booleans(),
    ),
    st.builds(enrp.HandleTableResponse, u32, u32, st.just(()), st.booleans(), st.just(True)),
    st.builds(
        enrp.HandleUpdate,
        u32,
        u32,
        st.sampled_from(enrp.UpdateAction),
        pool_handles,
        pool_elements,
    ),
    st.builds(enrp.ListRequest, u32, u32),
    st.builds(enrp.ListResponse, u32, u32, st.lists(server_informations, max_size=3).map(tuple)),
    st.builds(enrp.ListResponse, u32, u32, st.just(()), st.just(True)),
    st.builds(enrp.InitTakeover, u32, u32, u32),
    st.builds(enrp.InitTakeoverAck, u32, u32, u32),
    st.builds(enrp.TakeoverServer, u32, u32, u32),
    st.builds(enrp.ErrorMessage, u32, u32, operation_errors),
)
