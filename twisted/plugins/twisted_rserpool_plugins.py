"""twistd plugins and endpoint parsers of twisted-rserpool (cheap: nothing heavy imported)."""

from twisted.application.service import ServiceMaker

vpngw = ServiceMaker(  # type: ignore[no-untyped-call]
    "twisted-rserpool IKEv2 gateway",
    "twisted_rserpool._tap.vpngw",
    "An IKEv2 VPN gateway that redirects clients (RFC 5685) to gateways of an RSerPool pool",
    "vpngw",
)
