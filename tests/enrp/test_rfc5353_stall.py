"""Input that arrived while an ENRP server did not run is read before its timers act
(issue 16: after SIGSTOPs, keep-alive timers removed live PEs whose answers were waiting
in the socket). On the sans-IO EnrpCore with injected time, and against a real ``twistd
-n enrp`` stopped and continued four times while 20 PEs answer every keep-alive."""

from __future__ import annotations

import json
import random
import shutil
import signal
import tempfile
import urllib.request
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any

import pytest
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import clientFromString, connectProtocol
from twisted.internet.interfaces import IDelayedCall
from twisted.internet.task import deferLater
from twisted.trial.unittest import TestCase

from tests.enrp.support import LOOPBACK, AsapClient, EnrpProcess
from tests.enrp.test_peer_authority import psk
from twisted_rserpool.enrp.core import CoreAction, EnrpCore
from twisted_rserpool.enrp.registrar import Registrar, RegistrarConfig, Send
from twisted_rserpool.handlespace import Handlespace
from twisted_rserpool.security.authorization import AuthorizationPolicy
from twisted_rserpool.wire import asap
from twisted_rserpool.wire.parameters import PoolElementParameter, RoundRobinPolicy, TcpTransport

POOL = b"echo"


def registration(pe: int, port: int) -> asap.Registration:
    address = IPv4Address(LOOPBACK)
    return asap.Registration(
        POOL, PoolElementParameter(pe, 0, 3600, TcpTransport(port, address), RoundRobinPolicy())
    )


def keep_alives(actions: list[CoreAction]) -> list[asap.EndpointKeepAlive]:
    return [
        a.message
        for a in actions
        if isinstance(a, Send) and isinstance(a.message, asap.EndpointKeepAlive)
    ]


def test_an_answer_waiting_after_a_stall_is_read_before_the_keep_alive_expires() -> None:
    """A keep-alive goes out; the process stops; the PE's answer arrives meanwhile. Called
    3 s past its deadline, the core first does nothing and asks to be called again at
    once (the reactor reads its sockets in between); the answer is read, and the PE
    stays. Without the stall rule the late timer removed it."""
    handlespace = Handlespace(rng=random.Random(1))
    config = RegistrarConfig(1, keep_alive_interval=1.0, keep_alive_timeout=1.0)
    core = EnrpCore(Registrar(config, handlespace, AuthorizationPolicy()))
    core.asap_connection_ready(5, psk("pe"), (LOOPBACK, 40000))
    core.asap_message_received(5, registration(0x42, 7000), 0.0)
    now, sent = 0.0, list[asap.EndpointKeepAlive]()
    while not sent:
        deadline = core.next_deadline()
        assert deadline is not None
        now = deadline
        sent = keep_alives(core.handle_timer(now))
    # The process stops here; it runs again 3 s past the keep-alive's deadline.
    deadline = core.next_deadline()
    assert deadline is not None and deadline <= now + 1.0
    late = deadline + 3.0
    assert core.handle_timer(late) == []
    assert core.next_deadline() == late
    assert handlespace.get(POOL, 0x42) is not None
    # The reactor reads first: the answer that waited in the socket.
    core.asap_message_received(5, asap.EndpointKeepAliveAck(POOL, 0x42), late)
    core.handle_timer(late)
    assert handlespace.get(POOL, 0x42) is not None
    assert core.registrar.counters["timers_stalled"] == 1
    # A timer on time is not a stall: an unanswered keep-alive still removes the PE.
    while handlespace.get(POOL, 0x42) is not None and now < late + 10:
        deadline = core.next_deadline()
        assert deadline is not None
        now = max(deadline, late)
        core.handle_timer(now)
    assert handlespace.get(POOL, 0x42) is None
    assert core.registrar.counters["timers_stalled"] == 1


class _AnsweringPe(AsapClient):
    """A pool element connection that answers every keep-alive after 0.3 s (so that at
    any moment about a third of the PEs have a keep-alive waiting for its answer)."""

    pending: list[IDelayedCall]

    def asapMessageReceived(self, message: asap.AsapMessage) -> None:
        if isinstance(message, asap.EndpointKeepAlive) and message.pe_identifier is not None:
            ack = asap.EndpointKeepAliveAck(message.pool_handle, message.pe_identifier)
            self.pending = [call for call in self.pending if call.active()]
            self.pending.append(reactor.callLater(0.3, self._answer, ack))
            return
        super().asapMessageReceived(message)

    def __init__(self) -> None:
        super().__init__()
        self.pending = []

    def close(self) -> None:
        for call in self.pending:
            if call.active():
                call.cancel()
        super().close()

    def _answer(self, ack: asap.EndpointKeepAliveAck) -> None:
        if self.transport is not None and self.ready:
            self.sendAsap(ack)


def _sleep(seconds: float) -> Deferred[None]:
    return deferLater(reactor, seconds, lambda: None)


@pytest.mark.slow
class StallTests(TestCase):
    timeout = 60

    async def test_sigstops_remove_no_pe_that_answers(self) -> None:
        """20 PEs answer every keep-alive within 0.3 s (interval 1 s, timeout 1 s); the
        server is stopped for 2.5 s four times, so answers arrive while it is stopped.
        Every PE is still registered afterwards and no answer arrived for a PE already
        removed (before the fix: about half of them were)."""
        directory = Path(tempfile.mkdtemp(prefix="enrp-stall-"))
        self.addCleanup(shutil.rmtree, directory, ignore_errors=True)
        server = EnrpProcess(directory)
        self.addCleanup(server.stop)
        server.start()
        clients: list[AsapClient] = []
        for pe in range(1, 21):
            client = _AnsweringPe()
            clients.append(client)
            endpoint = clientFromString(reactor, server.peEndpoint())  # type: ignore[no-untyped-call]
            await connectProtocol(endpoint, client)  # type: ignore[no-untyped-call]
            await client.readyDeferred
            answer = await client.request(registration(pe, 7000 + pe))
            assert isinstance(answer, asap.RegistrationResponse) and not answer.reject
        self.addCleanup(_closeAll, clients)
        process = server.process
        assert process is not None
        for _ in range(4):
            await _sleep(0.7)
            process.send_signal(signal.SIGSTOP)
            await _sleep(2.5)
            process.send_signal(signal.SIGCONT)
        await _sleep(1.5)
        document = _admin(server)
        registered = {
            int(element["pe_identifier"], 16)
            for pool in document["pools"]
            for element in pool["pool_elements"]
        }
        counters = document["counters"]
        assert registered == set(range(1, 21)), (sorted(registered), counters)
        assert counters.get("keep_alive_acks_unmatched", 0) == 0, counters
        assert counters.get("timers_stalled", 0) >= 1, counters
        print(f"4 SIGSTOPs of 2.5 s: 20 of 20 PEs kept; counters {counters}")


def _closeAll(clients: list[AsapClient]) -> Deferred[None]:
    for client in clients:
        client.close()
    return _sleep(0.2)


def _admin(server: EnrpProcess) -> dict[str, Any]:
    url = f"http://{LOOPBACK}:{server.adminPort}/"
    with urllib.request.urlopen(url, timeout=5) as response:
        document: dict[str, Any] = json.loads(response.read())
        return document
