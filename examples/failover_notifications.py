"""A pool user that prints every failover notification (RFC 5355 section 2.9).

Run: ``python examples/failover_notifications.py``. The observer hears of each failover
before any data flows to the new pool element, with the security contexts of the old and
the new connection (TLS version, cipher, certificate subject and fingerprint), and may
refuse it. This one refuses a failover that would lose authentication or fall to an older
TLS version; the pool user refuses those by default anyway.
"""

from __future__ import annotations

import sys

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import deferLater, react
from zope.interface import implementer

from twisted_rserpool._demo.lab import Lab, freePort, serve
from twisted_rserpool.asap import FailoverEvent, IFailoverObserver, PoolElement, PoolUser, Session
from twisted_rserpool.security.tls import loadCertificates


class Echo(Protocol):
    def dataReceived(self, data: bytes) -> None:
        assert self.transport is not None
        self.transport.write(data)


@implementer(IFailoverObserver)
class PrintingObserver:
    """Prints each failover; refuses weaker security (return a Deferred to ask someone)."""

    def failoverOccurred(self, event: FailoverEvent) -> bool:
        print(f"failover #{event.number} of pool {event.pool_handle.decode()!r}: {event.reason}")
        print(f"  from PE 0x{event.old_element.pe_identifier:08x}: {event.old_context.describe()}")
        print(f"     fingerprint {event.old_context.certificate_fingerprint}")
        print(f"  to   PE 0x{event.new_element.pe_identifier:08x}: {event.new_context.describe()}")
        print(f"     fingerprint {event.new_context.certificate_fingerprint}")
        print(f"  security changed: {event.changed}, weaker: {event.weaker}")
        return not event.weaker


async def main(reactor: IReactorTime) -> None:
    lab = Lab()  # keys and certificates in a temporary directory; kills its processes
    try:
        port = freePort()
        serverKeys = f"pskFile={lab.psk}:certificate={lab.enrpCertificate}:privateKey={lab.enrpKey}"
        lab.twistd("enrp", "enrp", "--asap", f"tlspsk:{port}:interface=127.0.0.1:{serverKeys}")
        lab.waitForPort(port)
        toEnrp = f"tlspsk:host=127.0.0.1:port={port}"
        peKeys = f"certificate={lab.peCertificate}:privateKey={lab.peKey}"
        pe = (f"{toEnrp}:identity=pe:pskFile={lab.psk}", f"tlspsk:0:interface=127.0.0.1:{peKeys}")
        elements = dict(lab.startPoolElement(__file__, "--pe", *pe)[::-1] for _ in range(3))
        user = PoolUser(
            [f"{toEnrp}:caCertificate={lab.enrpCertificate}"],
            peTrustRoots=loadCertificates(lab.peCertificate),
            failoverObservers=[PrintingObserver()],
        )
        client = await user.connect(b"echo", Factory.forProtocol(Protocol))
        session = client.transport  # type: ignore[attr-defined]
        assert isinstance(session, Session)
        for _ in range(2):
            assert session.poolElement is not None
            lab.kill(elements.pop(session.poolElement.pe_identifier))
            session.write(b"are you there?")
            await deferLater(reactor, 1.0, lambda: None)
        await user.stopService()
    finally:
        lab.close()


if __name__ == "__main__":
    if sys.argv[1:2] == ["--pe"]:
        enrp, listen = sys.argv[2:]  # the ENRP server's client string, the listen string
        serve(PoolElement(b"echo", Factory.forProtocol(Echo), [enrp], listen))
    else:
        react(lambda reactor: Deferred.fromCoroutine(main(reactor)))
