"""Issue 15 finding 1: a pool element or pool user that cannot authenticate says why.

Against a real ``twistd -n enrp``: a PE with a PSK identity the server does not know and a
PU that trusts another certificate log the TLS reason on their own side, and after
``max_hunt_rounds`` rounds ``whenRegistered()`` and ``resolve()`` errback with a
``ServerHuntFailed`` naming the server and the reason. A PE with the right key is served.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.protocol import Factory, Protocol
from twisted.logger import ILogObserver, LogLevel, formatEvent, globalLogPublisher
from twisted.trial.unittest import TestCase
from zope.interface import provider

from tests.asap.support import FAST
from tests.enrp.support import EnrpProcess
from twisted_rserpool.asap import PoolElement, PoolUser, ServerHuntFailed
from twisted_rserpool.security.certificates import createSelfSignedCertificate


async def huntFailure(waiting: Deferred[Any]) -> ServerHuntFailed:
    """The ServerHuntFailed ``waiting`` errbacks with."""
    try:
        await waiting
    except ServerHuntFailed as e:
        return e
    raise AssertionError("no ServerHuntFailed")


TIMERS = replace(FAST, max_hunt_rounds=2, t5_server_hunt=0.3, retran_max=0.6)


class HuntFailureTests(TestCase):
    """A client that cannot authenticate fails with the server and the TLS reason."""

    timeout = 60

    def setUp(self) -> None:
        directory = Path(self.mktemp()).resolve()  # type: ignore[no-untyped-call]
        self.server = EnrpProcess(directory)
        self.server.start()
        self.addCleanup(self.server.stop)
        self.events: list[dict[str, Any]] = []

        @provider(ILogObserver)
        def observe(event: dict[str, Any]) -> None:
            self.events.append(event)

        globalLogPublisher.addObserver(observe)
        self.addCleanup(globalLogPublisher.removeObserver, observe)

    def element(self, endpoint: str) -> PoolElement:
        element = PoolElement(
            b"echo",
            Factory.forProtocol(Protocol),
            [endpoint],
            "tcp:0:interface=127.0.0.1",
            timers=TIMERS,
            reactor=reactor,
            insecure=True,  # the user transport is not what these tests are about
        )
        element.startService()
        self.addCleanup(element.stopService)
        return element

    def logged(self, level: LogLevel, *words: str) -> list[str]:
        texts = [formatEvent(e) for e in self.events if e.get("log_level") is level]
        return [t for t in texts if all(w in t for w in words)]

    async def test_unknown_psk_identity(self) -> None:
        """A PE whose identity the server does not know: the TLS reason is logged on the
        PE's side and whenRegistered() errbacks naming the server and the reason."""
        element = self.element(self.server.peEndpoint(identity="nobody"))
        failure = await huntFailure(element.whenRegistered())
        where = f"127.0.0.1:{self.server.port}"
        assert failure.rounds == TIMERS.max_hunt_rounds
        assert list(failure.reasons) == [where]
        assert failure.reasons[where].startswith("TLS: ")
        assert "PSK identity" in failure.reasons[where]
        assert where in str(failure)
        assert self.logged(LogLevel.warn, where, "TLS: ")
        assert self.logged(LogLevel.error, "no ENRP server could be used", where)
        assert not element.registered

    async def test_right_key_is_still_served(self) -> None:
        """The same server registers a PE with a known identity (the test can fail)."""
        element = self.element(self.server.peEndpoint())
        await element.whenRegistered()
        assert element.registered
        assert not self.logged(LogLevel.error, "no ENRP server could be used")

    async def test_pool_user_with_other_trust_root(self) -> None:
        """A PU that trusts another certificate: resolve() errbacks with the verify error."""
        other = self.server.directory / "other"
        other.mkdir()
        createSelfSignedCertificate(other / "other.pem", other / "other.key")
        user = PoolUser(
            [f"tlspsk:host=127.0.0.1:port={self.server.port}:caCertificate={other / 'other.pem'}"],
            timers=TIMERS,
            reactor=reactor,
        )
        user.startService()
        self.addCleanup(user.stopService)
        failure = await huntFailure(user.resolve(b"echo"))
        where = f"127.0.0.1:{self.server.port}"
        assert "certificate verify failed" in failure.reasons[where]
        assert self.logged(LogLevel.warn, "pool user", where, "certificate verify failed")
