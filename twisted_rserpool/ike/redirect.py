"""Redirect decisions of a VPN gateway (RFC 5685) behind one interface.

The endpoint asks its ``IRedirectPolicy`` about every IKE_SA_INIT request from a client
that sent N(REDIRECT_SUPPORTED) or N(REDIRECTED_FROM), after the cookie check and before
any state or Diffie-Hellman work. ``RedirectPolicy`` redirects when this gateway drains,
when its IKE SA count or load is above a limit, always (a pure redirector), or when the
request arrived on an anycast address. Its hooks are what a subclass overrides (like
``allowQuery`` of twisted.names): ``allow_redirect`` exempts or picks out clients,
``overloaded`` says when this gateway takes no more, ``choose_gateway`` picks the target.
The targets come from an ``IGatewaySource``: a static list (round robin or weighted) here,
a pool of gateways (``redirect_pool.PoolGateways``), or any other source with the same
interface.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address

from zope.interface import Interface, implementer

from twisted_rserpool.ike.codec import GatewayIdentity

__all__ = [
    "GatewayIdentity",
    "IGatewaySource",
    "IRedirectPolicy",
    "RedirectDecision",
    "RedirectPolicy",
    "RedirectRequest",
    "StaticGateways",
    "format_gateway",
    "parse_gateway",
]

Address = tuple[str, int]


#: The longest DNS name in text, without the root's trailing dot (RFC 1035 section 2.3.4:
#: 255 octets on the wire).
MAX_NAME_LENGTH = 253
#: An RFC 1123 host name label: letters, digits and hyphens, not a hyphen at either end,
#: 1 to 63 characters.
_LABEL = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\Z")


def parse_gateway(text: str) -> GatewayIdentity:
    """A gateway identity written as an IPv4 or IPv6 address or a DNS host name.

    A name follows RFC 1123's host name syntax (labels of letters, digits and hyphens, no
    hyphen at either end, 1 to 63 characters each, at most :data:`MAX_NAME_LENGTH` in all,
    a trailing dot dropped). It must be fully qualified, with at least one dot: a bare word
    is refused as a likely slip (``localhost`` excepted); and its last label may not be all
    digits, so a mistyped address such as ``10.0.0.256`` is not taken for a name. Anything
    with a colon must be an IPv6 address. ValueError says why a text is refused.
    """
    text = text.strip()
    if not text:
        raise ValueError("empty gateway identity")
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        pass
    if ":" in text:
        raise ValueError(f"{text!r} is not an IPv6 address")
    name = text[:-1] if text.endswith(".") else text
    problem = _nameProblem(name)
    if problem is not None:
        raise ValueError(f"{text!r} is neither an IP address nor a DNS name: {problem}")
    return name


def _nameProblem(name: str) -> str | None:
    """Why ``name`` is no fully qualified host name (see :func:`parse_gateway`), or None."""
    if len(name) > MAX_NAME_LENGTH:
        return f"longer than {MAX_NAME_LENGTH} characters"
    labels = name.split(".")
    for label in labels:
        if not label:
            return "an empty label (two dots in a row, or a dot first)"
        if len(label) > 63:
            return f"a label of {len(label)} characters (at most 63)"
        if not _LABEL.match(label):
            if label.startswith("-") or label.endswith("-"):
                return f"the label {label!r} starts or ends with a hyphen"
            return f"the label {label!r} has a character other than letters, digits and hyphens"
    if len(labels) == 1 and name.lower() != "localhost":
        return "a bare word; give a fully qualified name such as vpn.example.org"
    if labels[-1].isdigit():
        return "its last label is all digits (an IPv4 address has four numbers up to 255)"
    return None


def format_gateway(gateway: GatewayIdentity) -> str:
    """A gateway identity as text (the inverse of ``parse_gateway``)."""
    return str(gateway)


def same_gateway(gateway: GatewayIdentity, host: str) -> bool:
    """Whether ``gateway`` names the address ``host``."""
    if str(gateway) == host:
        return True
    if isinstance(gateway, IPv6Address) and ":" in host:  # IPv6 has many spellings
        try:
            return gateway == ipaddress.ip_address(host)
        except ValueError:
            return False
    return False


@dataclass(frozen=True)
class RedirectRequest:
    """What a gateway knows when it decides whether to redirect a client.

    ``exchange`` is ``"IKE_SA_INIT"``, ``"IKE_AUTH"`` (``peer_id`` is then the client's
    authenticated identity) or ``"INFORMATIONAL"`` (a gateway-initiated redirect).
    ``ike_sas`` is the number of IKE SAs of the endpoint and ``redirected_from`` the gateway
    named in the client's N(REDIRECTED_FROM), if any.
    """

    exchange: str
    peer_address: Address
    local_address: Address
    ike_sas: int
    now: float
    redirected_from: IPv4Address | IPv6Address | None = None
    peer_id: str | None = None


@dataclass(frozen=True)
class RedirectDecision:
    """Redirect the client to ``gateway``; ``reason`` is counted by the gateway."""

    gateway: GatewayIdentity
    reason: str


class IGatewaySource(Interface):
    """Where redirected clients may go."""

    def pick(exclude: Sequence[str]) -> GatewayIdentity | None:  # noqa: N805 (zope Interface)
        """The next gateway, never one whose address is in ``exclude``; None if none."""

    def gateways() -> list[GatewayIdentity]:
        """Every gateway the source currently knows."""


class IRedirectPolicy(Interface):
    """Decides whether a client is redirected, and where."""

    def decide(request: RedirectRequest) -> RedirectDecision | None:  # noqa: N805 (zope Interface)
        """The redirect for ``request``, or None to serve the client here."""


@implementer(IGatewaySource)
class StaticGateways:
    """A fixed (replaceable) list of gateways, taken in turn.

    With ``weights`` the turn is a smooth weighted round robin (a gateway of weight 3 is
    picked three times as often as one of weight 1, interleaved and deterministic).
    """

    def __init__(
        self, gateways: Iterable[GatewayIdentity], weights: Sequence[int] | None = None
    ) -> None:
        self._gateways: list[GatewayIdentity] = []
        self._weights: list[int] = []
        self._current: list[int] = []
        self._next = 0
        self.replace(gateways, weights)

    def replace(
        self, gateways: Iterable[GatewayIdentity], weights: Sequence[int] | None = None
    ) -> None:
        """Use a new list of gateways from now on."""
        listed = list(gateways)
        if weights is None:
            chosen = [1] * len(listed)
        else:
            chosen = list(weights)
            if len(chosen) != len(listed) or any(w <= 0 for w in chosen):
                raise ValueError("one positive weight per gateway is needed")
        self._gateways = listed
        self._weights = chosen
        self._current = [0] * len(listed)
        self._next = 0

    def gateways(self) -> list[GatewayIdentity]:
        """The gateways of the list."""
        return list(self._gateways)

    def weighted(self) -> list[tuple[GatewayIdentity, int]]:
        """The gateways of the list with their weights (1 each when none were given)."""
        return list(zip(self._gateways, self._weights, strict=True))

    def pick(self, exclude: Sequence[str]) -> GatewayIdentity | None:
        """The next gateway in turn that is not excluded."""
        allowed = [
            i
            for i, g in enumerate(self._gateways)
            if not any(same_gateway(g, host) for host in exclude)
        ]
        if not allowed:
            return None
        if len(set(self._weights)) <= 1:
            count = len(self._gateways)
            for step in range(count):
                index = (self._next + step) % count
                if index in allowed:
                    self._next = index + 1
                    return self._gateways[index]
            return None
        total = sum(self._weights[i] for i in allowed)
        for i in allowed:
            self._current[i] += self._weights[i]
        best = max(allowed, key=lambda i: self._current[i])
        self._current[best] -= total
        return self._gateways[best]


@implementer(IRedirectPolicy)
class RedirectPolicy:
    """Redirect new clients when draining, overloaded, always, or on an anycast address.

    ``max_ike_sas`` redirects when the endpoint holds more IKE SAs than that; ``max_load``
    redirects when ``load()`` (any number, such as a CPU share) is above it. ``always``
    makes a pure redirector. ``anycast`` lists local addresses that are anycast: requests
    to them are always redirected to a unicast gateway, possibly this gateway's own
    (``unicast``), unless it is overloaded. ``draining`` (settable at run time) redirects
    everyone. A gateway never redirects to the address the request arrived on.

    These rules apply to IKE_SA_INIT; with ``in_auth`` they apply in IKE_AUTH instead (the
    client is then authenticated and ``allow_redirect`` sees its identity, so a subclass can
    redirect by identity).

    A subclass owns the decisions by overriding the hooks ``allow_redirect`` (whether),
    ``overloaded`` (why this gateway takes no more clients) and ``choose_gateway`` (where
    to); ``twistd vpngw --redirect-policy package.module.Class`` builds one with the
    constructor's arguments from the command line. The hooks run in the IKE core, for
    every request they decide on: they must answer at once (no I/O, no Deferreds).
    """

    def __init__(
        self,
        source: IGatewaySource,
        *,
        always: bool = False,
        max_ike_sas: int | None = None,
        max_load: float | None = None,
        load: Callable[[], float] | None = None,
        anycast: Iterable[str] = (),
        unicast: GatewayIdentity | None = None,
        in_auth: bool = False,
    ) -> None:
        self.source = source
        self.always = always
        self.max_ike_sas = max_ike_sas
        self.max_load = max_load
        self.load = load
        self.anycast = frozenset(str(ipaddress.ip_address(a)) for a in anycast)
        self.unicast = unicast
        self.in_auth = in_auth
        self.draining = False

    def allow_redirect(self, request: RedirectRequest) -> bool:
        """Whether this client may be redirected at all (default: every client).

        Override to exempt clients (False: they are served here whatever the load) or to
        pick them out; ``request`` has the client's address, the address it reached, the
        exchange and, in IKE_AUTH, its authenticated identity (``peer_id``).
        """
        return True

    def overloaded(self, request: RedirectRequest) -> str | None:
        """Why this gateway should not take the client (``"load"``, ``"drain"``...), or None.

        The reason is the redirect's reason (the endpoint counts redirects by it). Override
        to add a measure of load of your own; call this one to keep drain and the limits.
        """
        if self.draining:
            return "drain"
        if self.max_ike_sas is not None and request.ike_sas >= self.max_ike_sas:
            return "load"
        if self.max_load is not None and self.load is not None and self.load() > self.max_load:
            return "load"
        return None

    def choose_gateway(
        self, request: RedirectRequest, exclude: Sequence[str]
    ) -> GatewayIdentity | None:
        """The gateway the client of ``request`` goes to, or None to serve it here.

        ``exclude`` lists addresses the target must not have (the address the request
        arrived on, and for an anycast request this gateway's own unicast identity when it
        is overloaded). The default asks the source (``self.source.pick``); override to
        choose by client, for example by ``request.peer_id`` or the client's address.
        """
        return self.source.pick(exclude)

    def decide(self, request: RedirectRequest) -> RedirectDecision | None:
        """The redirect for ``request``, or None (see the hooks it calls)."""
        if request.exchange != ("IKE_AUTH" if self.in_auth else "IKE_SA_INIT"):
            return None
        if not self.allow_redirect(request):
            return None
        local = request.local_address[0]
        reason = self.overloaded(request)
        if local in self.anycast:
            if reason is None and self.unicast is not None:
                return RedirectDecision(self.unicast, "anycast")
            exclude = [local] if self.unicast is None else [local, str(self.unicast)]
            target = self.choose_gateway(request, exclude if reason is not None else [local])
            return RedirectDecision(target, "anycast") if target is not None else None
        if reason is None and self.always:
            reason = "static"
        if reason is None:
            return None
        target = self.choose_gateway(request, [local])
        return RedirectDecision(target, reason) if target is not None else None
