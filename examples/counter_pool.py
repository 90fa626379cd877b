"""A stateful service that keeps its state through failovers with ASAP cookies.

Run: ``python examples/counter_pool.py``. Each pool element counts the ``incr`` messages
of its session. After every answer it hands the pool user a cookie with the count, signed
with a key all pool elements share (RFC 5355 2.16: the pool elements sign; the pool user
only stores the cookie and echoes it, unmodified, to the next pool element). When the pool
element is killed, the session moves on and the new pool element continues the count.
"""

from __future__ import annotations

import hashlib
import hmac
import sys

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import deferLater, react

from twisted_rserpool._demo.lab import Lab, freePort, serve
from twisted_rserpool.asap import PoolElement, PoolUser, Session
from twisted_rserpool.security.tls import loadCertificates

KEY = b"a key the pool elements share; not the pool user's business"


def sign(count: int) -> bytes:
    body = str(count).encode()
    return hmac.new(KEY, body, hashlib.sha256).digest() + body


def verify(cookie: bytes) -> int | None:
    tag, body = cookie[:32], cookie[32:]
    if not hmac.compare_digest(tag, hmac.new(KEY, body, hashlib.sha256).digest()):
        return None
    return int(body)


class Counter(Protocol):
    """The pool element's application."""

    count = 0

    def cookieEchoReceived(self, cookie: bytes) -> None:
        """Called before any data of a session that failed over to this pool element."""
        count = verify(cookie)
        if count is not None:
            self.count = count

    def dataReceived(self, data: bytes) -> None:
        transport = self.transport
        assert transport is not None
        self.count += 1
        transport.write(str(self.count).encode())
        transport.sendCookie(sign(self.count))  # type: ignore[attr-defined]


class Show(Protocol):
    """The pool user's application."""

    def dataReceived(self, data: bytes) -> None:
        print(f"  count = {data.decode()}")


async def main(reactor: IReactorTime) -> None:
    lab = Lab()  # keys and certificates in a temporary directory; kills its processes
    try:
        port = freePort()
        certificate = f"certificate={lab.enrpCertificate}:privateKey={lab.enrpKey}"
        listen = f"tlspsk:{port}:interface=127.0.0.1:pskFile={lab.psk}:{certificate}"
        lab.twistd("enrp", "enrp", "--asap", listen)
        lab.waitForPort(port)
        # Each pool element: TLS-PSK to the ENRP server, certificate TLS for pool users.
        elements = dict(
            lab.startPoolElement(
                __file__,
                "--pe",
                f"tlspsk:host=127.0.0.1:port={port}:identity=pe:pskFile={lab.psk}",
                f"tlspsk:0:interface=127.0.0.1:certificate={lab.peCertificate}"
                f":privateKey={lab.peKey}",
            )[::-1]
            for _ in range(2)
        )
        # The pool user verifies the certificates of the ENRP server and the pool elements.
        user = PoolUser(
            [f"tlspsk:host=127.0.0.1:port={port}:caCertificate={lab.enrpCertificate}"],
            peTrustRoots=loadCertificates(lab.peCertificate),
        )
        client = await user.connect(b"counter", Factory.forProtocol(Show))
        session = client.transport  # type: ignore[attr-defined]
        assert isinstance(session, Session)
        for number in range(1, 11):
            session.write(b"incr")
            await deferLater(reactor, 0.3, lambda: None)
            if number == 5:
                assert session.poolElement is not None
                print("kill -9 the pool element that holds the count")
                lab.kill(elements.pop(session.poolElement.pe_identifier))
        print(f"the count went on at another pool element ({len(session.failovers)} failover)")
        await user.stopService()
    finally:
        lab.close()


if __name__ == "__main__":
    if sys.argv[1:2] == ["--pe"]:
        enrp, listen = sys.argv[2:]  # the ENRP server's client string, the listen string
        serve(PoolElement(b"counter", Factory.forProtocol(Counter), [enrp], listen))
    else:
        react(lambda reactor: Deferred.fromCoroutine(main(reactor)))
