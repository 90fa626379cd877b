"""Run inside a fresh network namespace (``unshare -n``, loopback up, 224.0.0.0/4 routed
to lo): a real ``twistd enrp`` announces itself to the ASAP multicast group 224.0.1.185 and
a pool user with no configured server finds it only through that announcement.

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
from twisted.internet.endpoints import TCP4ClientEndpoint

from twisted_rserpool.asap import AsapTimers, PoolUser
from twisted_rserpool.asap.errors import ResolutionFailed
from twisted_rserpool.wire.parameters import TcpTransport

GROUP = "224.0.1.185"
ANNOUNCE_PORT = 3863
ASAP_PORT = 3864


async def probe(reactor: Any) -> str:
    log = Path(tempfile.mkdtemp(prefix="rserpool-mcast-")) / "enrp.log"
    twistd = str(Path(sys.executable).parent / "twistd")
    server = subprocess.Popen(
        [
            twistd,
            "-n",
            "--pidfile=",
            f"--logfile={log}",
            "enrp",
            "--asap",
            f"tcp:{ASAP_PORT}:interface=127.0.0.1",
            "--insecure",
            "--announce",
            f"{GROUP}:{ANNOUNCE_PORT}",
            "--announce-interface",
            "127.0.0.1",
            "--announce-interval",
            "0.2",
            "--announce-transport",
            f"127.0.0.1:{ASAP_PORT}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )
    try:

        def announced(transport: TcpTransport) -> Any:
            return TCP4ClientEndpoint(reactor, str(transport.address), transport.port)

        user = PoolUser(
            [],
            timers=AsapTimers(t1_enrp_request=2.0, t5_server_hunt=0.5, retran_max=1.0),
            announcedServer=announced,
            announceListen=f"{GROUP}:{ANNOUNCE_PORT}:127.0.0.1",
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
                return f"FOUND {getattr(host, 'port', '?')}"
            return f"FAILED {last}"
        finally:
            await user.stopService()
    finally:
        server.kill()
        server.wait(timeout=10)


def main(reactor: Any) -> defer.Deferred[None]:
    async def run() -> None:
        print(await probe(reactor), flush=True)

    return defer.Deferred.fromCoroutine(run())


if __name__ == "__main__":
    task.react(main)
