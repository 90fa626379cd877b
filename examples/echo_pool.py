"""An echo pool with three pool elements and a pool user that survives killing them.

Run: ``python examples/echo_pool.py``. It starts an ENRP server and three echo pool
elements (this same file run with ``--pe``), then a pool user sends a message every 0.2 s
through one session while the example kills the pool element serving it every 2 s
(``kill -9``) and starts a fresh one. Every message comes back; the session fails over.
"""

from __future__ import annotations

import sys

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import deferLater, react

from twisted_rserpool.asap import PoolUser, Session
from twisted_rserpool.asap.lab import Lab, servePoolElement
from twisted_rserpool.security.tls import loadCertificates


class Echo(Protocol):
    """The pool element's application: every message goes back."""

    def dataReceived(self, data: bytes) -> None:
        assert self.transport is not None
        self.transport.write(data)


class Printer(Protocol):
    """The pool user's application: prints what comes back."""

    def dataReceived(self, data: bytes) -> None:
        print(f"  <- {data.decode()}")


async def main(reactor: IReactorTime) -> None:
    lab = Lab()
    try:
        lab.startEnrp()
        elements = dict(lab.startPoolElement(__file__)[::-1] for _ in range(3))
        print(f"ENRP server on port {lab.enrpPort}, 3 echo pool elements registered")
        user = PoolUser(lab.userServers(), peTrustRoots=loadCertificates(lab.peCertificate))
        client = await user.connect(b"echo", Factory.forProtocol(Printer))
        session = client.transport  # type: ignore[attr-defined]
        assert isinstance(session, Session)
        for number in range(1, 31):
            assert session.poolElement is not None
            current = session.poolElement.pe_identifier
            session.write(f"message {number}".encode())
            print(f"  -> message {number} (PE 0x{current:08x})")
            await deferLater(reactor, 0.2, lambda: None)
            if number % 10 == 0:
                victim = elements.pop(current)
                print(f"kill -9 the pool element serving the session (pid {victim.pid})")
                lab.kill(victim)
                process, identifier = lab.startPoolElement(__file__)
                elements[identifier] = process
        await deferLater(reactor, 0.5, lambda: None)
        print(f"{len(session.failovers)} failovers, every message echoed")
        await user.stopService()
    finally:
        lab.close()


if __name__ == "__main__":
    if "--pe" in sys.argv:
        servePoolElement(b"echo", Factory.forProtocol(Echo), sys.argv[1:])
    else:
        react(lambda reactor: Deferred.fromCoroutine(main(reactor)))
