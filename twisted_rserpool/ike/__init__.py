"""IKEv2 (RFC 7296) for Twisted: a VPN gateway that redirects clients (RFC 5685), an initiator.

:class:`IkeEndpoint` is the sans-IO core (every IKE SA of one UDP address), configured by
:class:`IkeConfig`; :class:`IkeGatewayProtocol` and :class:`IkeUdpService` run it as a
gateway, :class:`IkeInitiatorProtocol` as a client. A :class:`RedirectPolicy` (subclass it:
``allow_redirect``, ``choose_gateway``) decides which clients go to which gateway of an
:class:`IGatewaySource`. ``twisted_rserpool.ike.tap`` builds the gateway that
``twistd vpngw`` runs. See ``docs/ike.md``, ``docs/redirect.md`` and ``docs/developer.md``.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from twisted_rserpool.ike.config import Identity as Identity
    from twisted_rserpool.ike.config import IkeConfig as IkeConfig
    from twisted_rserpool.ike.config import PskTable as PskTable
    from twisted_rserpool.ike.endpoint import IkeEndpoint as IkeEndpoint
    from twisted_rserpool.ike.gateway import IkeDatagramProtocol as IkeDatagramProtocol
    from twisted_rserpool.ike.gateway import IkeGatewayProtocol as IkeGatewayProtocol
    from twisted_rserpool.ike.gateway import IkeUdpService as IkeUdpService
    from twisted_rserpool.ike.initiator import IkeInitiatorProtocol as IkeInitiatorProtocol
    from twisted_rserpool.ike.initiator import IkeSaSetupFailed as IkeSaSetupFailed
    from twisted_rserpool.ike.redirect import GatewayIdentity as GatewayIdentity
    from twisted_rserpool.ike.redirect import IGatewaySource as IGatewaySource
    from twisted_rserpool.ike.redirect import IRedirectPolicy as IRedirectPolicy
    from twisted_rserpool.ike.redirect import RedirectDecision as RedirectDecision
    from twisted_rserpool.ike.redirect import RedirectPolicy as RedirectPolicy
    from twisted_rserpool.ike.redirect import RedirectRequest as RedirectRequest
    from twisted_rserpool.ike.redirect import StaticGateways as StaticGateways
    from twisted_rserpool.ike.redirect import parse_gateway as parse_gateway
    from twisted_rserpool.ike.redirect_pool import GatewayRegistration as GatewayRegistration
    from twisted_rserpool.ike.redirect_pool import PoolGateways as PoolGateways

#: The module of each export. They are imported on first use: the codec and the crypto
#: (which the ESP data plane and the tools import on their own) stay cheap to import.
_EXPORTS = {
    "GatewayIdentity": "redirect",
    "GatewayRegistration": "redirect_pool",
    "IGatewaySource": "redirect",
    "IRedirectPolicy": "redirect",
    "Identity": "config",
    "IkeConfig": "config",
    "IkeDatagramProtocol": "gateway",
    "IkeEndpoint": "endpoint",
    "IkeGatewayProtocol": "gateway",
    "IkeInitiatorProtocol": "initiator",
    "IkeSaSetupFailed": "initiator",
    "IkeUdpService": "gateway",
    "PoolGateways": "redirect_pool",
    "PskTable": "config",
    "RedirectDecision": "redirect",
    "RedirectPolicy": "redirect",
    "RedirectRequest": "redirect",
    "StaticGateways": "redirect",
    "parse_gateway": "redirect",
}

__all__ = sorted(_EXPORTS)  # noqa: PLE0605 (the names are those of _EXPORTS)


def __getattr__(name: str) -> Any:
    """An export, imported from its module on first use."""
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})
