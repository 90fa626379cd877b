"""Pool members in any language: register a server this process does not run (a strongSwan
gateway, a web server, anything with an address) as an RSerPool pool element, with the
load it reports.

- :mod:`~twisted_rserpool.poolmember.description`: transports (UDP, TCP, SCTP) and
  policies from text, loads as RFC 5356 values.
- :mod:`~twisted_rserpool.poolmember.sources`: load sources (a command, a file, an HTTP
  URL, a function); :mod:`~twisted_rserpool.poolmember.viciload`: strongSwan's IKE SAs
  through its vici socket (:mod:`~twisted_rserpool.poolmember.vici`, the sans-IO codec).
- :mod:`~twisted_rserpool.poolmember.tracker`: when readings become registrations
  (sans-IO); :mod:`~twisted_rserpool.poolmember.registration`: the service that runs it.

``twistd poolmember`` is the command line of all this (docs/poolmember.md).
"""

from twisted_rserpool.poolmember.description import (
    FULL_LOAD,
    parsePolicy,
    parseTransport,
    scaledLoad,
    transportText,
)
from twisted_rserpool.poolmember.registration import MemberRegistration
from twisted_rserpool.poolmember.sources import (
    CallableLoad,
    CommandLoad,
    FileLoad,
    ILoadSource,
    LoadError,
    UrlLoad,
    parseLoad,
)
from twisted_rserpool.poolmember.tracker import LoadTracker
from twisted_rserpool.poolmember.viciload import ViciLoad, ViciProtocol

__all__ = [
    "FULL_LOAD",
    "CallableLoad",
    "CommandLoad",
    "FileLoad",
    "ILoadSource",
    "LoadError",
    "LoadTracker",
    "MemberRegistration",
    "UrlLoad",
    "ViciLoad",
    "ViciProtocol",
    "parseLoad",
    "parsePolicy",
    "parseTransport",
    "scaledLoad",
    "transportText",
]
