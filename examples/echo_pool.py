"""An echo pool with three pool elements and a pool user that survives killing them.

Run: ``python examples/echo_pool.py``. It starts an ENRP server (``twistd -n enrp``) and
three echo pool elements (this same file run with ``--pe``), then a pool user sends a
message every 0.2 s through one session while the example kills the pool element serving it
every 2 s (``kill -9``) and starts a fresh one. Every message comes back; the session fails
over. Every connection is TLS: pool elements authenticate to the ENRP server with a
pre-shared key, pool users verify the certificates of the ENRP server and the pool elements.
"""

from __future__ import annotations

import sys

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import deferLater, react

from twisted_rserpool._demo.lab import Lab, freePort, serve
from twisted_rserpool.asap import AsapTimers, PoolElement, PoolUser, Session
from twisted_rserpool.security.tls import loadCertificates
from twisted_rserpool.transport import MappingConfig


class Echo(Protocol):
    """The pool element's application: every message goes back."""

    def dataReceived(self, data: bytes) -> None:
        assert self.transport is not None
        self.transport.write(data)


class Printer(Protocol):
    """The pool user's application: prints what comes back."""

    def dataReceived(self, data: bytes) -> None:
        print(f"  <- {data.decode()}")


def poolElement(enrp: str, listen: str) -> PoolElement:
    """An echo pool element: ``enrp`` is how it reaches the ENRP server, ``listen`` where
    it serves pool users (both endpoint strings)."""
    return PoolElement(
        b"echo",
        Factory.forProtocol(Echo),
        [enrp],
        listen,
        registrationLife=30,
        timers=AsapTimers(t5_server_hunt=1.0),
        userMappingConfig=MappingConfig(heartbeat_interval=0.5, heartbeat_timeout=1.0),
    )


async def main(reactor: IReactorTime) -> None:
    lab = Lab()  # keys and certificates in a temporary directory; kills its processes
    try:
        port = freePort()
        lab.twistd(
            "enrp",
            "enrp",
            "--asap",
            f"tlspsk:{port}:interface=127.0.0.1:pskFile={lab.psk}"
            f":certificate={lab.enrpCertificate}:privateKey={lab.enrpKey}",
        )
        lab.waitForPort(port)
        peToEnrp = f"tlspsk:host=127.0.0.1:port={port}:identity=pe:pskFile={lab.psk}"
        peListen = (
            f"tlspsk:0:interface=127.0.0.1:certificate={lab.peCertificate}:privateKey={lab.peKey}"
        )
        start = (__file__, "--pe", peToEnrp, peListen)
        elements = dict(lab.startPoolElement(*start)[::-1] for _ in range(3))
        print(f"ENRP server on port {port}, 3 echo pool elements registered")
        userToEnrp = f"tlspsk:host=127.0.0.1:port={port}:caCertificate={lab.enrpCertificate}"
        user = PoolUser([userToEnrp], peTrustRoots=loadCertificates(lab.peCertificate))
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
                process, identifier = lab.startPoolElement(*start)
                elements[identifier] = process
        await deferLater(reactor, 0.5, lambda: None)
        print(f"{len(session.failovers)} failovers, every message echoed")
        await user.stopService()
    finally:
        lab.close()


if __name__ == "__main__":
    if sys.argv[1:2] == ["--pe"]:
        serve(poolElement(*sys.argv[2:]))
    else:
        react(lambda reactor: Deferred.fromCoroutine(main(reactor)))
