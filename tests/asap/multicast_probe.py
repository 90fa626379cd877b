"""Run inside a fresh network namespace (``unshare -n``, loopback up, 224.0.0.0/4 routed
to lo): a real ``twistd enrp`` announces itself to the ASAP multicast group 224.0.1.185 and
a pool user with no configured server finds it only through that announcement.

With ``ipv6 SEND RECEIVE`` (a veth pair in the namespace: Linux turns IPv6 routes over lo
into reject routes, so IPv6 multicast cannot use lo) the server announces [::1]:3864 to
ff02::133 out of interface SEND, and the pool user joins ff02::133 on interface RECEIVE.

Prints ``FOUND <server port>`` when the pool user's handle resolution was answered by the
announced server (an Unknown Pool Handle answer is an answer), ``FAILED <why>`` otherwise.
Used by tests/asap/test_procedure_processes.py; not a library module.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from twisted.internet import defer, task
from twisted.internet.endpoints import TCP4ClientEndpoint, TCP6ClientEndpoint

from twisted_rserpool.asap import AsapTimers, PoolUser
from twisted_rserpool.asap.errors import ResolutionFailed
from twisted_rserpool.wire.parameters import TcpTransport

GROUP = "224.0.1.185"
GROUP6 = "ff02::133"
ANNOUNCE_PORT = 3863
ASAP_PORT = 3864


async def probe(reactor: Any, ipv6: tuple[str, str] | None = None) -> str:
    """Start the server, find it as a pool user; ``ipv6``: the (sending, receiving)
    interfaces for IPv6 multicast."""
    log = Path(tempfile.mkdtemp(prefix="rserpool-mcast-")) / "enrp.log"
    if ipv6 is None:
        listener, announce, fromInterface = (
            f"tcp:{ASAP_PORT}:interface=127.0.0.1",
            GROUP,
            "127.0.0.1",
        )
        announcedTransport = f"127.0.0.1:{ASAP_PORT}"
        listen = f"{GROUP}:{ANNOUNCE_PORT}:127.0.0.1"
    else:
        listener, announce = f"tcp6:{ASAP_PORT}:interface=\\:\\:1", f"[{GROUP6}]"
        fromInterface, announcedTransport = ipv6[0], f"[::1]:{ASAP_PORT}"
        listen = f"[{GROUP6}]:{ANNOUNCE_PORT}:{ipv6[1]}"
    twistd = str(Path(sys.executable).parent / "twistd")
    server = subprocess.Popen(
        [
            twistd,
            "-n",
            "--pidfile=",
            f"--logfile={log}",
            "enrp",
            "--asap",
            listener,
            "--insecure",
            "--announce",
            f"{announce}:{ANNOUNCE_PORT}",
            "--announce-interface",
            fromInterface,
            "--announce-interval",
            "0.2",
            "--announce-transport",
            announcedTransport,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )
    try:

        def announced(transport: TcpTransport) -> Any:
            if transport.address.version == 6:
                return TCP6ClientEndpoint(reactor, str(transport.address), transport.port)  # type: ignore[no-untyped-call]
            return TCP4ClientEndpoint(reactor, str(transport.address), transport.port)

        user = PoolUser(
            [],
            timers=AsapTimers(t1_enrp_request=2.0, t5_server_hunt=0.5, retran_max=1.0),
            announcedServer=announced,
            announceListen=listen,
            # The server in this namespace is plain TCP; TLS authentication of announced
            # servers is what the unicast test checks.
            requireAuthenticatedServer=False,
        )
        user.startService()
        last = "no answer"
        try:
            for _ in range(20):
                try:
                    await user.resolve(b"probe")
                except ResolutionFailed:
                    pass
                except Exception as e:  # RequestTimedOut while nothing was announced yet
                    await task.deferLater(reactor, 0.25, lambda: None)
                    last = str(e)
                    continue
                link = user.link
                connection = link.connection if link is not None else None
                transport = connection.transport if connection is not None else None
                host = transport.getPeer() if transport is not None else None
                return f"FOUND {getattr(host, 'port', '?')} {getattr(host, 'host', '?')}"
            return f"FAILED {last}"
        finally:
            await user.stopService()
    finally:
        server.kill()
        server.wait(timeout=10)


def main(reactor: Any) -> defer.Deferred[None]:
    ipv6 = (sys.argv[2], sys.argv[3]) if sys.argv[1:2] == ["ipv6"] else None

    async def run() -> None:
        print(await probe(reactor, ipv6), flush=True)

    return defer.Deferred.fromCoroutine(run())


if __name__ == "__main__":
    task.react(main)
