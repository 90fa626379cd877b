"""The ENRP server (RFC 5353) and its ASAP side (RFC 5352), secured as RFC 5355 asks.

:class:`Registrar` is the sans-IO ASAP core (subclass it and override
``allowRegistration`` / ``allowResolution``), :class:`TakeoverRegistrar` the one a server
in an ENRP server pool needs, :class:`ENRPServer` the Twisted service around it, and
:class:`PeerCore` its ENRP side. ``twisted_rserpool.enrp.tap`` builds the server that
``twistd enrp`` runs. See ``docs/enrp.md`` and ``docs/developer.md``.
"""

from twisted_rserpool.enrp.peers import PeerConfig, PeerCore
from twisted_rserpool.enrp.registrar import (
    Action,
    Close,
    ConnectionState,
    Registrar,
    RegistrarConfig,
    Send,
)
from twisted_rserpool.enrp.service import ENRPServer
from twisted_rserpool.enrp.takeover import TakeoverRegistrar

__all__ = [
    "Action",
    "Close",
    "ConnectionState",
    "ENRPServer",
    "PeerConfig",
    "PeerCore",
    "Registrar",
    "RegistrarConfig",
    "Send",
    "TakeoverRegistrar",
]
