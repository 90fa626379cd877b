"""twistd plugins and endpoint parsers of twisted-rserpool (cheap: nothing heavy imported)."""

from twisted_rserpool._tap import CommandServiceMaker
from twisted_rserpool.endpoints import (
    RSerPoolClientParser,
    TlsPskClientParser,
    TlsPskServerParser,
)

vpngw = CommandServiceMaker(  # type: ignore[no-untyped-call]
    "twisted-rserpool IKEv2 gateway",
    "twisted_rserpool._tap.vpngw",
    "An IKEv2 VPN gateway that redirects clients (RFC 5685) to gateways of an RSerPool pool",
    "vpngw",
)

# tlspsk: endpoint strings (the parsers import OpenSSL only when a string is parsed).
tlspsk_server = TlsPskServerParser()
tlspsk_client = TlsPskClientParser()
# rserpool: client strings, a pool as an endpoint (the pool user is imported when parsed).
rserpool_client = RSerPoolClientParser()

enrp = CommandServiceMaker(  # type: ignore[no-untyped-call]
    "twisted-rserpool ENRP server",
    "twisted_rserpool._tap.enrp",
    "An ENRP server (RSerPool registrar) secured with TLS (PSK and certificates)",
    "enrp",
)

poolmember = CommandServiceMaker(  # type: ignore[no-untyped-call]
    "twisted-rserpool pool member sidecar",
    "twisted_rserpool._tap.poolmember",
    "Registers a server in any language (UDP, TCP or SCTP) as a pool element, with its load",
    "poolmember",
)
