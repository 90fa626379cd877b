"""Log lines an operator can read (issue 15, finding 8): endpoints, pool elements, pool users,
ENRP servers and pool handles render as text (never ``<... object at 0x...>`` or
``b'...'``), factories log no ``Starting factory`` lines, the security context is a set of
fields, and re-registrations that change nothing are debug lines."""

from __future__ import annotations

import re
import signal
from dataclasses import replace
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any

import pytest
from service_identity import VerificationError
from service_identity.cryptography import verify_certificate_hostname
from twisted.internet.endpoints import (
    HostnameEndpoint,
    TCP4ClientEndpoint,
    TCP4ServerEndpoint,
    TCP6ClientEndpoint,
    UNIXClientEndpoint,
    wrapClientTLS,
)
from twisted.internet.protocol import Factory
from twisted.internet.task import Clock
from twisted.internet.threads import deferToThread
from twisted.logger import LogLevel, capturedLogs, formatEvent
from twisted.trial.unittest import TestCase

from tests.asap.support import (
    FAST,
    Collector,
    Echo,
    Recording,
    credentials,
    reactor,
    sleep,
    startServer,
    waitFor,
)
from tests.asap.test_loopback import Harness
from tests.enrp.support import EnrpProcess, readLog
from tests.security.support import KEY_A, KEY_B, Pki, pskFile, temporaryDirectory
from twisted_rserpool.asap import PoolElement, PoolServerEndpoint, PoolUser, Session
from twisted_rserpool.asap.errors import NoPoolElementAvailable, RegistrationRefused
from twisted_rserpool.asap.link import describeServer
from twisted_rserpool.asap.notifier import FailoverEvent
from twisted_rserpool.asap.registration import Registered, RegistrationCore
from twisted_rserpool.asap.timers import AsapTimers
from twisted_rserpool.deadline import DeadlineTimer
from twisted_rserpool.describe import endpointText, handleText, objectText
from twisted_rserpool.endpoints import (
    TlsClientEndpoint,
    TlsPskClientParser,
    TlsPskServerParser,
    _pskPoolElementEndpoint,
)
from twisted_rserpool.enrp.registrar import Registrar, RegistrarConfig
from twisted_rserpool.enrp.service import ENRPServer
from twisted_rserpool.handlespace import Handlespace, UnknownPoolHandle
from twisted_rserpool.security import _openssl
from twisted_rserpool.security.authorization import AuthorizationPolicy
from twisted_rserpool.security.context import INSECURE, SecurityContext
from twisted_rserpool.security.tls import PskClientCreator, TlsServerCreator, _mismatchText
from twisted_rserpool.wire import asap
from twisted_rserpool.wire.parameters import (
    LeastUsedPolicy,
    PoolElementParameter,
    RoundRobinPolicy,
    TcpTransport,
)

POOL = b"echo"
#: What an operator should never read in a log line.
UNREADABLE = re.compile(r"object at 0x| at 0x[0-9a-f]{6,}>|\bb'|\bb\"")
NOISE = ("Starting factory", "Stopping factory", "Starting protocol", "Stopping protocol")


def unreadable(events: list[dict[str, Any]]) -> list[str]:
    """The rendered lines, and the fields, of ``events`` that show bytes or an address."""
    found = []
    for event in events:
        text = formatEvent(event)
        if UNREADABLE.search(text) or any(noise in text for noise in NOISE):
            found.append(text)
        for name, value in event.items():
            if name.startswith("log_") or name == "message":
                continue
            if isinstance(value, bytes | bytearray) or "object at 0x" in repr(value):
                found.append(f"{text!r}: field {name}={value!r}")
    return found


# ---------------------------------------------------------------------- reprs


def test_tls_client_endpoint_reads_as_its_description(tmp_path: Path) -> None:
    """A TLS client endpoint shows host, port and PSK identity (or the certificate name it
    checks), never its key."""
    keys = pskFile(tmp_path, {"pe1": KEY_A})
    parser = TlsPskClientParser()
    psk = parser.parseStreamClient(reactor, host="127.0.0.1", port="3864", pskFile=keys)
    assert repr(psk) == "TlsClientEndpoint(tlspsk:host=127.0.0.1:port=3864:identity=pe1)"
    assert KEY_A.hex() not in repr(psk) and keys not in repr(psk)
    ca = Pki(tmp_path).caFile()
    checked = parser.parseStreamClient(
        reactor, host="::1", port="3863", caCertificate=ca, hostname="enrp.example"
    )
    assert repr(checked) == "TlsClientEndpoint(tlspsk:host=\\:\\:1:port=3863:hostname=enrp.example)"
    unix = TlsClientEndpoint(
        UNIXClientEndpoint(reactor, "/run/enrp.sock"),  # type: ignore[no-untyped-call]
        PskClientCreator("pe1", KEY_A),
    )
    assert repr(unix) == (
        "TlsClientEndpoint(tlspsk:over=UNIXClientEndpoint(/run/enrp.sock):identity=pe1)"
    )


def test_tls_server_endpoint_shows_port_and_credentials_without_keys(tmp_path: Path) -> None:
    """A TLS server endpoint shows its port, interface, how many PSK identities it knows
    and its certificate's subject."""
    keys = pskFile(tmp_path, {"pe": KEY_A, "pe-2": KEY_B})
    certificate, key, _ = Pki(tmp_path).issue("enrp.test", ipAddresses=["127.0.0.1"])
    endpoint = TlsPskServerParser().parseStreamServer(
        reactor, "3864", interface="127.0.0.1", pskFile=keys, certificate=certificate,
        privateKey=key,
    )  # fmt: skip
    assert repr(endpoint) == (
        "TlsServerEndpoint(tlspsk:port=3864:interface=127.0.0.1, "
        "<TlsServerCreator PSK (2 identities), certificate CN=enrp.test>)"
    )
    assert KEY_A.hex() not in repr(endpoint) and KEY_B.hex() not in repr(endpoint)


def test_twisted_endpoints_read_as_class_and_address() -> None:
    """Twisted's endpoints without a repr of their own show their class and address."""
    tcp = TCP4ClientEndpoint(reactor, "127.0.0.1", 3863)
    assert endpointText(tcp) == "TCP4ClientEndpoint(127.0.0.1:3863)"
    tcp6 = TCP6ClientEndpoint(reactor, "::1", 3863)  # type: ignore[no-untyped-call]
    assert endpointText(tcp6) == "TCP6ClientEndpoint([::1]:3863)"
    anywhere = TCP4ServerEndpoint(reactor, 0)  # type: ignore[no-untyped-call]
    assert endpointText(anywhere) == "TCP4ServerEndpoint(port 0)"
    wrapped = wrapClientTLS(None, tcp)  # type: ignore[arg-type]
    assert endpointText(wrapped) == "_WrapperEndpoint(TCP4ClientEndpoint(127.0.0.1:3863))"
    hostname = HostnameEndpoint(reactor, b"enrp.example", 3863)
    assert endpointText(hostname) == repr(hostname) == "<HostnameEndpoint enrp.example:3863>"
    assert endpointText(object()) == "object"


def test_hunt_names_servers_by_address() -> None:
    """The server hunt's log lines and ServerHuntFailed name a server ``host:port``, and an
    endpoint without one by its class and path."""
    tls = TlsClientEndpoint(
        TCP4ClientEndpoint(reactor, "127.0.0.1", 3864), PskClientCreator("pe", KEY_A)
    )
    assert describeServer(tls) == "127.0.0.1:3864"
    unix = UNIXClientEndpoint(reactor, "/run/enrp.sock")  # type: ignore[no-untyped-call]
    assert describeServer(unix) == "UNIXClientEndpoint(/run/enrp.sock)"


def test_services_have_readable_reprs() -> None:
    """Pool elements, pool users, sessions, ENRP servers and pool endpoints say what they
    are in their repr."""
    clock = Clock()
    enrp = "tlspsk:host=127.0.0.1:port=3864:caCertificate=/nonexistent"
    element = PoolElement(
        POOL, Factory(), [enrp], "tlspsk:0:pskFile=/nonexistent", peIdentifier=0x17, clock=clock
    )
    assert repr(element) == "<PoolElement echo/0x00000017 not started>"
    element.core = RegistrationCore(POOL, _element(), AsapTimers())
    assert repr(element) == "<PoolElement echo/0x00000017 hunting>"
    user = PoolUser([enrp], insecure=True, clock=clock)
    assert repr(user) == "<PoolUser not started, 0 session(s)>"
    session = Session(user, POOL, Collector())
    assert repr(session) == "<Session pool=echo no pool element>"
    server = ENRPServer(
        Registrar(RegistrarConfig(0xE00001), Handlespace(), AuthorizationPolicy()), clock
    )
    assert repr(server) == "<ENRPServer 0x00e00001 stopped>"
    listening = PoolServerEndpoint(
        TCP4ServerEndpoint(reactor, 7000, interface="127.0.0.1"),  # type: ignore[no-untyped-call]
        POOL,
        [enrp],
    )
    assert repr(listening) == "<PoolServerEndpoint pool=echo on TCP4ServerEndpoint(127.0.0.1:7000)>"


def _element(pe: int = 0x17, policy: Any = None) -> PoolElementParameter:
    return PoolElementParameter(
        pe, 0, 60, TcpTransport(7000, IPv4Address("127.0.0.1")), policy or RoundRobinPolicy()
    )


def test_pool_handles_read_as_text() -> None:
    """Pool handles in reprs and error messages are their text (hex if not printable)."""
    assert handleText(b"echo") == "echo"
    assert handleText(b"\x00\xff") == "0x00ff"
    handlespace = Handlespace()
    handlespace.register(POOL, _element(), now=0.0, identity="pe")
    pool = handlespace.pool(POOL)
    entry = handlespace.get(POOL, 0x17)
    texts = [
        repr(pool),
        repr(entry),
        str(NoPoolElementAvailable(POOL)),
        str(RegistrationRefused(POOL, None)),
        str(UnknownPoolHandle(POOL)),
        FailoverEvent(POOL, _element(1), _element(2), INSECURE, INSECURE, "lost", 1).describe(),
    ]
    for text in texts:
        assert "echo" in text and not UNREADABLE.search(text), text
    assert repr(entry).startswith("<PoolElementEntry echo/0x00000017")


class _Broken:
    """An observer that raises (no repr of its own)."""

    def __call__(self, event: object) -> None:
        raise RuntimeError("broken")

    def fire(self, now: float) -> None:
        raise RuntimeError("broken")


def test_failure_lines_name_callables_not_addresses() -> None:
    """A raising handlespace observer or timer callback is logged by its class (and method)
    name, not by a repr with a memory address."""
    handlespace = Handlespace()
    handlespace.subscribe(_Broken())
    clock = Clock()
    timer = DeadlineTimer(_Broken().fire)
    with capturedLogs() as events:
        handlespace.register(POOL, _element(), now=0.0, identity="pe")
        timer.arm(clock, 1.0)
        clock.advance(1.0)
    texts = {formatEvent(e) for e in events if "log_failure" in e}
    assert texts == {"Handlespace observer _Broken failed", "Timer callback _Broken.fire failed"}
    element = PoolElement(
        POOL,
        None,
        ["tcp:127.0.0.1:9"],
        None,
        userTransport=_element().user_transport,
        peIdentifier=0x17,
        insecure=True,
    )
    assert (
        objectText(element._timerFired) == "<PoolElement echo/0x00000017 not started>._timerFired"
    )
    assert objectText(len) == "len" and objectText(_Broken) == repr(_Broken)


def test_tls_refusals_show_no_bytes(tmp_path: Path) -> None:
    """A PSK identity that is not UTF-8 is logged as its length and hex, a certificate that
    names another host by the kind of mismatch (not service_identity's reprs of bytes)."""
    creator = TlsServerCreator({"pe": KEY_A})
    connection = creator._connections.new(creator._context)
    with capturedLogs() as events:
        assert creator._lookup(_openssl.pointerOf(connection), b"\xff\xfe\x00") is None
    [refusal] = [formatEvent(e) for e in events]
    assert refusal == "TLS-PSK: refused a non-UTF-8 identity of 3 bytes (fffe00...)"
    _, _, certificate = Pki(tmp_path).issue("pe.test", dnsNames=["pe.test"])
    try:
        verify_certificate_hostname(certificate, "enrp.example.net")
    except VerificationError as e:
        assert _mismatchText(e) == "no subjectAltName matches (DNSMismatch)"
    else:
        raise AssertionError("the name matched")


# ---------------------------------------------------------------------- security context

CONTEXTS = [
    (INSECURE, "no TLS, unauthenticated"),
    (
        SecurityContext(True, "TLSv1.3", "TLS_AES_128_GCM_SHA256", psk_identity="pe"),
        "TLSv1.3 TLS_AES_128_GCM_SHA256, PSK identity 'pe', authenticated",
    ),
    (
        SecurityContext(True, "TLSv1.2", "ECDHE-ECDSA-AES128-GCM-SHA256", None, "CN=a", "ab"),
        "TLSv1.2 ECDHE-ECDSA-AES128-GCM-SHA256, certificate 'CN=a', authenticated",
    ),
    (
        SecurityContext(False, "TLSv1.3", "TLS_AES_256_GCM_SHA384"),
        "TLSv1.3 TLS_AES_256_GCM_SHA384, no peer identity, unauthenticated",
    ),
]


@pytest.mark.parametrize(("context", "text"), CONTEXTS)
def test_security_context_is_logged_as_fields(context: SecurityContext, text: str) -> None:
    """The security context goes into log events as fields; the format over them renders
    the same words as ``describe()``."""
    fields = context.logFields()
    assert fields == {
        "tls_version": context.tls_version,
        "cipher": context.cipher,
        "psk_identity": context.psk_identity,
        "peer_subject": context.certificate_subject,
        "peer_fingerprint": context.certificate_fingerprint,
        "authenticated": context.authenticated,
    }
    assert formatEvent({"log_format": context.logFormat(), **fields}) == text
    assert context.describe() == text


# ---------------------------------------------------------------------- renewals


def test_registration_core_tells_renewals() -> None:
    """A registration the same home granted before, unchanged, is a renewal; a new load, a
    new home or a removal by the server makes the next one news again."""
    core = RegistrationCore(POOL, _element(policy=LeastUsedPolicy(1)), AsapTimers())
    answer = asap.RegistrationResponse(POOL, 0x17)

    def renewal() -> bool:
        [registered] = core.message_from_home(answer, 1.0)
        assert isinstance(registered, Registered)
        return registered.renewal

    core.home_connected(0.0)
    assert not renewal()
    core.update(1.0, LeastUsedPolicy(1))
    assert renewal()
    core.handle_timer(core.next_deadline() or 0.0)  # T4: the periodic re-registration
    assert renewal()
    core.update(1.0, LeastUsedPolicy(2))
    assert not renewal()
    core.home_lost(2.0)
    core.home_connected(2.0)
    assert not renewal()
    core.message_from_home(asap.DeregistrationResponse(POOL, 0x17), 3.0)  # removed by it
    assert not renewal()


def test_registrar_logs_pool_handles_as_text() -> None:
    """The registrar's lines (registered, re-registered unchanged, deregistered, refused)
    show the pool handle as text."""
    registrar = Registrar(RegistrarConfig(0xE00001), Handlespace(), AuthorizationPolicy())
    pe = SecurityContext(True, "TLSv1.3", "TLS_AES_128_GCM_SHA256", psk_identity="pe")
    with capturedLogs() as events:
        registrar.connection_ready(1, pe, ("127.0.0.1", 40000))
        registrar.connection_ready(2, INSECURE, ("127.0.0.1", 40001))
        registrar.message_received(1, asap.Registration(POOL, _element()), 0.0)
        registrar.message_received(1, asap.Registration(POOL, _element()), 1.0)
        registrar.message_received(2, asap.Registration(POOL, _element(0x18)), 1.0)
        registrar.message_received(1, asap.Deregistration(POOL, 0x17), 2.0)
    assert len(events) >= 4
    found = unreadable(list(events))
    assert not found, "\n".join(found)


# ---------------------------------------------------------------------- in process


class InProcessTests(TestCase):
    """An ENRP server, a pool element and a pool user over TLS on loopback."""

    timeout = 20

    async def test_a_session_logs_only_readable_lines(self) -> None:
        """Registration (after an unreachable server), resolution, a TLS-PSK session,
        load updates and the pool element's stop: every line is text, no factory logs,
        the security context is in fields, and an unchanged load update is a debug line."""
        creds = credentials(self)
        with capturedLogs() as events:
            server = await startServer(self, creds)
            puKeys = pskFile(creds.directory, {"pu-1": KEY_A}, "pu.psk")
            harness = Harness(self, creds)
            element = await harness.pe(
                [9, server.portNumber],  # nothing listens on port 9
                listen=f"tlspsk:0:interface=127.0.0.1:pskFile={puKeys}",
                policy=LeastUsedPolicy(5),
            )
            endpoint = _pskPoolElementEndpoint(reactor, puKeys, "pu-1", 5.0)
            user = harness.pu([server.portNumber], peEndpoint=endpoint)
            client = await user.connect(POOL, Recording(Collector))
            assert isinstance(client, Collector) and isinstance(client.transport, Session)
            client.transport.write(b"hello")
            await waitFor(lambda: client.received == [b"hello"])
            await element.updateLoad(5)  # unchanged
            await element.updateLoad(6)
            client.transport.loseConnection()
            await element.stopService()
            await sleep(0.1)
        found = unreadable(events)
        assert not found, "\n".join(found)

        def lines(pattern: str, level: LogLevel) -> list[dict[str, Any]]:
            return [
                e for e in events if e["log_level"] is level and re.search(pattern, formatEvent(e))
            ]

        assert len(lines("could not reach ENRP server 127.0.0.1:9", LogLevel.info)) == 1
        [peHome, puHome] = lines("home ENRP server is", LogLevel.info)
        assert "security" not in peHome
        assert peHome["tls_version"] == "TLSv1.3" and peHome["psk_identity"] == "pe"
        assert peHome["authenticated"] is True
        assert puHome["peer_subject"] == "CN=enrp.test" and puHome["psk_identity"] is None
        [session] = lines("Session to pool echo on PE", LogLevel.info)
        assert session["psk_identity"] == "pu-1" and session["pool"] == "echo"
        assert formatEvent(session).endswith("PSK identity 'pu-1', authenticated)")
        pe = f"0x{element.peIdentifier:08x}"
        assert len(lines(f"Pool element {pe} registered in pool echo", LogLevel.info)) == 2
        assert (
            len(lines(f"Pool element {pe} re-registered in pool echo unchanged", LogLevel.debug))
            == 1
        )


# ---------------------------------------------------------------------- twistd


@pytest.mark.slow
class ProcessTests(TestCase):
    """A real ``twistd -n enrp`` with a pool element registering."""

    timeout = 30

    async def test_twistd_enrp_logs_no_factory_lines(self) -> None:
        """The server's log has the registration and deregistration, and neither
        ``Starting factory``/``Stopping factory`` lines nor memory addresses, up to its
        shutdown."""
        server = EnrpProcess(temporaryDirectory(self))
        server.start()
        self.addCleanup(server.stop)
        listen = pskFile(server.directory, {"pu": KEY_B}, "pe-listen.psk")
        element = PoolElement(
            POOL,
            Recording(Echo),
            [server.peEndpoint()],
            f"tlspsk:0:interface=127.0.0.1:pskFile={listen}",
            timers=replace(FAST, t2_registration=5.0),
        )
        element.startService()
        await element.whenRegistered()
        await element.stopService()
        assert server.process is not None
        server.process.send_signal(signal.SIGTERM)
        await deferToThread(server.process.wait, 10)
        text = readLog(server.log)
        pe = f"0x{element.peIdentifier:08x}"
        assert re.search(rf"Registered PE {pe} in pool \S+ for ", text), text
        assert re.search(rf"Deregistered PE {pe} of pool \S+ for ", text), text
        assert "Server Shut Down." in text, text
        for noise in NOISE:
            assert noise not in text, text
        assert [line for line in text.splitlines() if UNREADABLE.search(line)] == []
