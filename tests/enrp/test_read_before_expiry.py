"""A busy ENRP server reads the keep-alive answers waiting in its sockets before it removes
PEs: when a removal falls due, the core first asks to be called again after the reactor
polled, and then removes only what was due at the first call. On the sans-IO core, on the
adapter with a Clock, and in process with the real reactor kept busy past a keep-alive
timeout while the PE's answer waits in the socket."""

from __future__ import annotations

import random
import socket
import threading
import time
from ipaddress import IPv4Address
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReadDescriptor
from twisted.internet.task import Clock, deferLater
from twisted.trial.unittest import TestCase
from zope.interface import implementer

from tests.enrp.test_peer_authority import psk
from tests.enrp.test_rfc5353_stall import keep_alives, registration
from tests.enrp.test_service import Client, make_server
from tests.test_deadline import reactorTurn
from twisted_rserpool.enrp.core import EnrpCore
from twisted_rserpool.enrp.registrar import Registrar, RegistrarConfig
from twisted_rserpool.enrp.service import ENRPServer
from twisted_rserpool.handlespace import Handlespace
from twisted_rserpool.security.authorization import AuthorizationPolicy
from twisted_rserpool.wire import asap
from twisted_rserpool.wire.parameters import PoolElementParameter, RoundRobinPolicy, TcpTransport
from twisted_rserpool.wire.tcpmapping import (
    ASAP_PPID,
    Ack,
    ChunkDecoder,
    ChunkEncoder,
    Data,
)

POOL = b"echo"


def core_with(*pes: int) -> tuple[EnrpCore, Handlespace]:
    handlespace = Handlespace(rng=random.Random(1))
    # Keep-alives 5-15 s apart, answers due within 1 s: the next deadline after a
    # keep-alive is its timeout.
    config = RegistrarConfig(1, keep_alive_interval=10.0, keep_alive_timeout=1.0)
    core = EnrpCore(Registrar(config, handlespace, AuthorizationPolicy(), rng=random.Random(4)))
    core.asap_connection_ready(5, psk("pe"), ("127.0.0.1", 40000))
    for pe in pes:
        core.asap_message_received(5, registration(pe, 7000 + pe), 0.0)
    return core, handlespace


def run_until_keep_alives(core: EnrpCore, count: int) -> float:
    """Run the core's timers on time until ``count`` keep-alives went out; the time."""
    now, sent = 0.0, 0
    while sent < count:
        deadline = core.next_deadline()
        assert deadline is not None
        now = deadline
        sent += len(keep_alives(core.handle_timer(now)))
    return now


def test_an_answer_read_in_between_keeps_the_pe() -> None:
    """At the keep-alive timeout (on time, no stall) the core removes nothing yet and asks
    to be called again at that same time; the answer read in between keeps the PE."""
    core, handlespace = core_with(0x42)
    run_until_keep_alives(core, 1)
    timeout = core.next_deadline()
    assert timeout is not None
    assert core.handle_timer(timeout) == []
    assert core.next_deadline() == timeout  # again at once: after the reactor polled
    assert handlespace.get(POOL, 0x42) is not None
    core.asap_message_received(5, asap.EndpointKeepAliveAck(POOL, 0x42), timeout)
    core.handle_timer(timeout)
    assert handlespace.get(POOL, 0x42) is not None
    counters = core.registrar.counters
    assert counters["removals_read_first"] == 1
    assert counters["removed_keep_alive_timeout"] == 0
    assert counters["timers_stalled"] == 0


def test_without_an_answer_the_second_call_removes_only_what_was_due_at_the_first() -> None:
    """Unanswered, the PE goes on the second call; a removal that fell due between the two
    calls waits for a read of its own."""
    core, handlespace = core_with(1, 2)
    core.registrar.probe(POOL, 1, 0.0)  # keep-alives now: answers due at 1.0 and 1.5
    core.registrar.probe(POOL, 2, 0.5)
    assert len(keep_alives(core.take_actions())) == 2
    assert core.next_deadline() == 1.0
    assert core.handle_timer(1.0) == []
    # The reactor ran late: the second call comes after the other PE's timeout too.
    core.handle_timer(2.0)
    assert handlespace.get(POOL, 1) is None
    assert handlespace.get(POOL, 2) is not None
    # Its turn: first a read, then the removal.
    assert core.handle_timer(2.0) == []
    core.handle_timer(2.0)
    assert handlespace.get(POOL, 2) is None
    assert core.registrar.counters["removals_read_first"] == 2
    assert core.registrar.counters["removed_keep_alive_timeout"] == 2


def test_the_adapter_reads_between_the_two_calls() -> None:
    """ENRPServer on a Clock: the timer that finds a removal due arms the next call for
    the reactor's next turn; an answer that arrives before that turn keeps the PE, and the
    keep-alives due within the same few milliseconds go out in one callback."""
    clock = Clock()
    server = make_server(clock, secure=False, keep_alive_interval=1.0, keep_alive_timeout=1.0)
    client = Client(server)
    client.send(
        asap.Registration(
            POOL,
            PoolElementParameter(
                9, 0, 3600, TcpTransport(7000, IPv4Address("127.0.0.1")), RoundRobinPolicy()
            ),
        )
    )
    assert isinstance(client.received()[0], asap.RegistrationResponse)
    messages: list[object] = []
    while not any(isinstance(m, asap.EndpointKeepAlive) for m in messages):
        clock.advance(0.05)
        if client.transport.value():  # type: ignore[no-untyped-call]
            messages = list(client.received())
    handlespace = server.registrar.handlespace
    entry = handlespace.get(POOL, 9)
    assert entry is not None and entry.keep_alive_deadline is not None
    # The reactor's turn at the timeout (the timer is due at the deadline, or up to the
    # COALESCE slack after it): the core defers the removal.
    clock.rightNow = entry.keep_alive_deadline + 0.01
    reactorTurn(clock)
    assert handlespace.get(POOL, 9) is not None
    assert server.registrar.counters["removals_read_first"] == 1
    # The poll between the two turns reads the PE's answer.
    client.send(asap.EndpointKeepAliveAck(POOL, 9))
    reactorTurn(clock)
    assert handlespace.get(POOL, 9) is not None
    assert server.registrar.counters["removed_keep_alive_timeout"] == 0
    server.stopService()


# -- the real reactor, kept busy --------------------------------------------------------------


@implementer(IReadDescriptor)
class _Busy:
    """A reader that keeps the reactor busy for ``seconds`` whenever a byte arrives: the
    server is handling other connections' input when the PE's answer comes."""

    def __init__(self, sock: socket.socket, seconds: float) -> None:
        self.sock = sock
        self.seconds = seconds

    def fileno(self) -> int:
        return self.sock.fileno()

    def doRead(self) -> None:
        self.sock.recv(64)
        time.sleep(self.seconds)

    def logPrefix(self) -> str:
        return "busy"

    def connectionLost(self, reason: object) -> None:
        pass


class _Pe(threading.Thread):
    """A pool element on a blocking socket in its own thread: registers, and answers each
    keep-alive at once, except that with the first it first makes the server busy and
    answers while the server cannot read."""

    def __init__(self, port: int, busy: socket.socket, seconds: float) -> None:
        super().__init__(daemon=True)
        self.port = port
        self.busy = busy
        self.seconds = seconds
        self.answered = 0
        self.stopping = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self._run()
        except BaseException as error:  # reported by the test
            self.error = error

    def _run(self) -> None:
        encoder, decoder = ChunkEncoder(), ChunkDecoder()
        with socket.create_connection(("127.0.0.1", self.port)) as sock:
            sock.settimeout(0.1)
            element = PoolElementParameter(
                0x51, 0, 3600, TcpTransport(7000, IPv4Address("127.0.0.1")), RoundRobinPolicy()
            )
            sock.sendall(
                encoder.send_init()
                + encoder.send_data(asap.Registration(POOL, element).encode(), ppid=ASAP_PPID)
            )
            while not self.stopping.is_set():
                try:
                    data = sock.recv(65536)
                except TimeoutError:
                    continue
                if not data:
                    return
                decoder.receive_data(data)
                out = b""
                while (chunk := decoder.next_chunk()) is not None:
                    if not isinstance(chunk, Data):
                        continue
                    out += Ack(chunk.tsn).encode()
                    message = asap.decode(chunk.user_data)
                    if isinstance(message, asap.EndpointKeepAlive):
                        if not self.answered:
                            # The server becomes busy past this keep-alive's timeout; the
                            # answer reaches its socket while it is.
                            self.busy.send(b"x")
                            time.sleep(self.seconds / 6)
                        self.answered += 1
                        out += encoder.send_data(
                            asap.EndpointKeepAliveAck(POOL, 0x51).encode(), ppid=ASAP_PPID
                        )
                if out:
                    sock.sendall(out)


class BusyServerTests(TestCase):
    """The real reactor, busy on another descriptor while a keep-alive times out."""

    def test_an_answer_waiting_in_the_socket_keeps_the_pe(self) -> Deferred[None]:
        """The PE answers its keep-alive within the timeout, but the server is busy until
        0.6 s past it and its timer is due before it reads again: the PE stays (before
        read-first the late timer removed it)."""
        registrar = Registrar(
            RegistrarConfig(
                0x0E0E0E0F, secure=False, keep_alive_interval=0.3, keep_alive_timeout=0.4
            ),
            Handlespace(rng=random.Random(1)),
            AuthorizationPolicy(),
            rng=random.Random(2),
        )
        server = ENRPServer(registrar, reactor)
        server.startService()
        port: Any = reactor.listenTCP(0, server.factory, interface="127.0.0.1")  # type: ignore[arg-type]
        ours, theirs = socket.socketpair()
        busy = _Busy(ours, 0.9)
        reactor.addReader(busy)
        pe = _Pe(port.getHost().port, theirs, 0.9)

        async def run() -> None:
            pe.start()
            deadline = time.monotonic() + 10
            while pe.answered < 3 and time.monotonic() < deadline:
                await deferLater(reactor, 0.05, lambda: None)
            assert pe.error is None, pe.error
            assert pe.answered >= 3
            counters = registrar.counters
            assert counters["removals_read_first"] >= 1
            assert counters["removed_keep_alive_timeout"] == 0
            assert registrar.handlespace.get(POOL, 0x51) is not None

        def cleanUp(result: object) -> Any:
            pe.stopping.set()
            reactor.removeReader(busy)
            server.stopService()
            pe.join(5)
            ours.close()
            theirs.close()
            stopped = port.stopListening()
            stopped.addCallback(lambda _: result)
            return stopped

        return Deferred.fromCoroutine(run()).addBoth(cleanUp)
