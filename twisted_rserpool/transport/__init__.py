"""RSerPool over stream transports: the TCP mapping (draft-ietf-rserpool-tcpmapping-03)
as a sans-IO connection and as the Twisted protocol that ENRP servers, pool elements and
pool users build on."""

from twisted_rserpool.transport.connection import (
    ConnectionState,
    LocalProtocolError,
    MappingConfig,
    MappingConnection,
    SendBufferFull,
)
from twisted_rserpool.transport.events import (
    DataAcknowledged,
    DataReceived,
    Event,
    HeartbeatTimeout,
    InitReceived,
    ProtocolError,
    SentData,
)
from twisted_rserpool.transport.protocol import (
    ConnectionNotReady,
    RSerPoolFactory,
    RSerPoolProtocol,
)

__all__ = [
    "ConnectionNotReady",
    "ConnectionState",
    "DataAcknowledged",
    "DataReceived",
    "Event",
    "HeartbeatTimeout",
    "InitReceived",
    "LocalProtocolError",
    "MappingConfig",
    "MappingConnection",
    "ProtocolError",
    "RSerPoolFactory",
    "RSerPoolProtocol",
    "SendBufferFull",
    "SentData",
]
