"""Registrations over the connections a new home server opens to the PEs it took over.

After a takeover (RFC 5353 3.5.2) the new home connects to each PE and sends an
ASAP_ENDPOINT_KEEP_ALIVE with the H flag; the PE adopts that connection as its home
connection and re-registers over it. On that connection the TLS-PSK identity is the
server's own outgoing identity, not the PE's, so:

- the connection gets a per-PE identity ``<our identity>#takeover-<PE id>`` (the limits on
  PEs per identity then do not add up all PEs taken over under one name), and
- :class:`TakeoverRegistrar` lets exactly the PE that was sent the keep-alive register
  over it, whatever the authorization policy says about that synthetic identity.
"""

from __future__ import annotations

import random
from dataclasses import replace

from twisted_rserpool.enrp.registrar import Action, ConnectionState, Registrar, RegistrarConfig
from twisted_rserpool.handlespace import Handlespace
from twisted_rserpool.security.authorization import AuthorizationPolicy
from twisted_rserpool.security.context import SecurityContext
from twisted_rserpool.wire.parameters import PoolElementParameter


def takeover_security(security: SecurityContext, pe_identifier: int) -> SecurityContext:
    """The security context the registrar sees for a takeover connection to one PE."""
    if security.identity is None:
        return security
    return replace(
        security,
        psk_identity=f"{security.identity}#takeover-{pe_identifier:08x}",
        certificate_subject=None,
    )


class TakeoverRegistrar(Registrar):
    """A registrar that admits a PE's re-registration over our takeover connection to it."""

    def __init__(
        self,
        config: RegistrarConfig,
        handlespace: Handlespace,
        policy: AuthorizationPolicy,
        *,
        rng: random.Random | None = None,
    ) -> None:
        super().__init__(config, handlespace, policy, rng=rng)
        self._takeover_grants: dict[int, tuple[bytes, int]] = {}

    def grant_takeover(self, connection: int, pool_handle: bytes, pe_identifier: int) -> None:
        """Connection ``connection`` is ours to the PE we took over: it may register there."""
        self._takeover_grants[connection] = (pool_handle, pe_identifier)

    def connection_lost(self, number: int, now: float) -> list[Action]:
        """Forget the grant with the connection."""
        self._takeover_grants.pop(number, None)
        return super().connection_lost(number, now)

    def allowRegistration(
        self, connection: ConnectionState, pool_handle: bytes, element: PoolElementParameter
    ) -> bool:
        """The PE we took over may register over our connection to it; else the policy."""
        if self._takeover_grants.get(connection.number) == (pool_handle, element.pe_identifier):
            return True
        return super().allowRegistration(connection, pool_handle, element)


__all__ = ["TakeoverRegistrar", "takeover_security"]
