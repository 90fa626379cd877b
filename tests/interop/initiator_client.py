"""Our Twisted initiator as a process for the strongSwan interop tests.

Usage: python -m tests.interop.initiator_client LOCAL_HOST PEER_HOST PEER_PORT PROPOSAL ACTIONS

ACTIONS is a comma-separated list run after the IKE SA is up: ``liveness`` (send a
liveness check), ``rekey`` (rekey the IKE SA), ``delete`` (delete the IKE SA),
``await-delete`` (wait until the peer deletes it; a rekey by the peer is reported on the
way).
Every outcome is printed as one JSON line; the process exits 0 when all actions succeeded.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from twisted.internet import reactor as _reactor
from twisted.internet.defer import Deferred, ensureDeferred

from twisted_rserpool.ike.config import Identity, IkeConfig, PskTable
from twisted_rserpool.ike.endpoint import IkeEndpoint
from twisted_rserpool.ike.events import IkeEvent, IkeSaDeleted, IkeSaRekeyed
from twisted_rserpool.ike.initiator import IkeInitiatorProtocol
from twisted_rserpool.ike.proposals import parse_ike_suites

reactor: Any = _reactor


def say(**fields: object) -> None:
    print(json.dumps(fields), flush=True)


class Client(IkeInitiatorProtocol):
    """Reports when the peer deletes the IKE SA."""

    peerDeleted: Deferred[IkeSaDeleted] | None = None

    def ikeEventReceived(self, event: IkeEvent) -> None:
        super().ikeEventReceived(event)
        if isinstance(event, IkeSaRekeyed) and event.by_peer:
            say(event="rekeyed", suite=str(event.suite), spi_i=event.spi_i.hex())
        if (
            isinstance(event, IkeSaDeleted)
            and event.reason != "rekeyed"
            and self.peerDeleted is not None
        ):
            d, self.peerDeleted = self.peerDeleted, None
            d.callback(event)


async def main(argv: list[str]) -> int:
    local_host, peer_host, peer_port, proposal, actions = argv
    config = IkeConfig(
        Identity.parse("client@test"),
        PskTable(default=b"interop-psk"),
        ike_suites=parse_ike_suites(proposal),
        remote_id=Identity.parse("gw@test"),
        childless="force",
        retransmit_timeout=1.0,
        retransmit_tries=3,
    )
    endpoint = IkeEndpoint(config, (local_host, 0))
    protocol = Client(endpoint, reactor)
    port = reactor.listenUDP(0, protocol, interface=local_host)
    endpoint.local_address = (local_host, port.getHost().port)
    up = await protocol.initiate((peer_host, int(peer_port)))
    say(event="established", suite=str(up.suite), peer_id=str(up.peer_id), spi_i=up.spi_i.hex())
    spi = up.spi_i
    for action in actions.split(","):
        if action == "liveness":
            alive = await protocol.checkLiveness(spi)
            say(event="liveness", round_trip=alive.round_trip)
        elif action == "rekey":
            rekeyed = await protocol.rekeyIkeSa(spi)
            spi = rekeyed.spi_i
            say(event="rekeyed-by-us", suite=str(rekeyed.suite), spi_i=spi.hex())
        elif action == "delete":
            deleted = await protocol.deleteIkeSa(spi)
            say(event="deleted", reason=deleted.reason)
        elif action == "await-delete":
            waiting: Deferred[IkeSaDeleted] = Deferred()
            protocol.peerDeleted = waiting
            say(event="waiting")
            deleted = await waiting
            say(event="deleted", reason=deleted.reason)
    await port.stopListening()
    return 0


def run() -> None:
    result: list[int] = [1]

    def done(code: int) -> None:
        result[0] = code
        reactor.stop()

    def failed(failure: Any) -> None:
        say(event="failed", error=str(failure.value))
        reactor.stop()

    d = ensureDeferred(main(sys.argv[1:]))
    d.addCallbacks(done, failed)
    reactor.callLater(30, d.cancel)
    reactor.run()
    sys.exit(result[0])


if __name__ == "__main__":
    run()
