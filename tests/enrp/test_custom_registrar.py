"""Issue 15 finding 3: a registrar of one's own, in ``twistd enrp`` and in a ``.tac`` file.

``twistd enrp --registrar package.module.Class`` and ``makeService(options,
registrarClass=...)`` build the server with that class; ``examples/custom_registrar.tac``
runs under a real ``twistd -ny`` and refuses the identities it does not list.
"""

from __future__ import annotations

import random
import shlex
from dataclasses import replace
from pathlib import Path

import pytest
from twisted.internet.testing import MemoryReactorClock
from twisted.python import usage
from twisted.trial.unittest import TestCase

from tests.enrp.support import (
    OTHER_KEY,
    TWISTD,
    AsapClient,
    EnrpProcess,
    closeAll,
    connectClient,
    readLog,
)
from tests.enrp.test_process import registration
from twisted_rserpool.enrp import (
    ConnectionState,
    Registrar,
    RegistrarConfig,
    TakeoverRegistrar,
)
from twisted_rserpool.enrp.tap import Options, makeService
from twisted_rserpool.handlespace import Handlespace
from twisted_rserpool.security.authorization import AuthorizationPolicy
from twisted_rserpool.security.context import SecurityContext
from twisted_rserpool.wire import asap
from twisted_rserpool.wire.errors import CauseCode
from twisted_rserpool.wire.parameters import PoolElementParameter

ROOT = Path(__file__).resolve().parents[2]
TAC = ROOT / "examples" / "custom_registrar.tac"
HERE = __name__


class OnlyPe(Registrar):
    """Lets identity ``pe`` register, nobody else."""

    def allowRegistration(
        self, connection: ConnectionState, pool_handle: bytes, element: PoolElementParameter
    ) -> bool:
        return connection.identity == "pe" and super().allowRegistration(
            connection, pool_handle, element
        )


class RefuseAll(TakeoverRegistrar):
    """A peering registrar whose hook refuses every registration."""

    def allowRegistration(
        self, connection: ConnectionState, pool_handle: bytes, element: PoolElementParameter
    ) -> bool:
        return False


def parse(state: Path, *arguments: str) -> Options:
    options = Options()
    options.parseOptions(["--state-dir", str(state), *arguments])  # type: ignore[no-untyped-call]
    return options


def peer(state: Path) -> list[str]:
    """Options that make the server peer (an unreachable peer is enough to build it)."""
    keys = state / "keys.psk"
    return [
        "--peer",
        f"tlspsk:host=127.0.0.1:port=1:identity=pe:pskFile={keys}",
        "--enrp-identity",
        "pe",
    ]


def test_registrar_option_builds_that_class(tmp_path: Path) -> None:
    """--registrar names the class makeService builds the server's registrar from."""
    options = parse(tmp_path, "--registrar", f"{HERE}.OnlyPe")
    assert options["registrar"] is OnlyPe
    server = makeService(options, MemoryReactorClock())  # type: ignore[no-untyped-call]
    assert type(server.registrar) is OnlyPe  # type: ignore[attr-defined]


def test_default_registrar_classes(tmp_path: Path) -> None:
    """Without --registrar: Registrar alone, TakeoverRegistrar when peering."""
    alone = makeService(parse(tmp_path / "a"), MemoryReactorClock())  # type: ignore[no-untyped-call]
    assert type(alone.registrar) is Registrar  # type: ignore[attr-defined]
    peering = makeService(parse(tmp_path / "b", *peer(tmp_path / "b")), MemoryReactorClock())  # type: ignore[no-untyped-call]
    assert type(peering.registrar) is TakeoverRegistrar  # type: ignore[attr-defined]


def test_make_service_argument_wins(tmp_path: Path) -> None:
    """makeService's registrarClass is used over --registrar."""
    options = parse(tmp_path, "--registrar", f"{HERE}.OnlyPe")
    server = makeService(options, MemoryReactorClock(), registrarClass=RefuseAll)  # type: ignore[no-untyped-call]
    assert type(server.registrar) is RefuseAll  # type: ignore[attr-defined]


def test_peering_needs_a_takeover_registrar(tmp_path: Path) -> None:
    """With peers the class must be a TakeoverRegistrar, by option or by argument."""
    with pytest.raises(usage.UsageError, match=r"^--registrar: .*TakeoverRegistrar"):
        parse(tmp_path, *peer(tmp_path), "--registrar", f"{HERE}.OnlyPe")
    options = parse(tmp_path, *peer(tmp_path), "--registrar", f"{HERE}.RefuseAll")
    assert type(makeService(options, MemoryReactorClock()).registrar) is RefuseAll  # type: ignore[attr-defined,no-untyped-call]
    with pytest.raises(TypeError, match=r"OnlyPe.*TakeoverRegistrar"):
        makeService(options, MemoryReactorClock(), registrarClass=OnlyPe)  # type: ignore[no-untyped-call]


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("no_such_module.Registrar", "'no_such_module.Registrar' does not name an object"),
        (f"{HERE}.Missing", "has no attribute 'Missing'"),
        ("Registrar", "not a dotted name"),
        ("twisted_rserpool.enrp.ENRPServer", "not a subclass of"),
        (f"{HERE}.ROOT", "not a class"),
    ],
)
def test_bad_registrar_is_a_usage_error(tmp_path: Path, name: str, reason: str) -> None:
    """A name that is no Registrar subclass is one usage error naming --registrar."""
    with pytest.raises(usage.UsageError) as raised:
        parse(tmp_path, "--registrar", name)
    message = str(raised.value)
    assert message.startswith("--registrar: ") and reason in message, message
    assert "\n" not in message


def _security(identity: str) -> SecurityContext:
    return SecurityContext(True, "TLSv1.3", "TLS_AES_128_GCM_SHA256", psk_identity=identity)


def test_takeover_grant_is_not_asked_of_the_hook() -> None:
    """A PE re-registering over our takeover connection is admitted whatever
    allowRegistration says: a subclass's hook need not know about takeovers."""
    registrar = RefuseAll(
        RegistrarConfig(0x5E4E0001), Handlespace(), AuthorizationPolicy(), rng=random.Random(1)
    )
    peer = ("127.0.0.1", 40000)
    registrar.connection_ready(1, _security("pe"), peer)
    registrar.connection_ready(2, _security("enrp#takeover-00001001"), peer)
    registrar.grant_takeover(2, b"echo", 0x1001)
    message = registration(address="127.0.0.1")

    def answer(connection: int, message: asap.Registration) -> asap.RegistrationResponse:
        [action] = registrar.message_received(connection, message, 1.0)
        response = action.message  # type: ignore[union-attr]
        assert isinstance(response, asap.RegistrationResponse)
        return response

    refused = answer(1, message)
    assert refused.reject and refused.error is not None
    assert refused.error.code == CauseCode.REJECTED_DUE_TO_SECURITY_CONSIDERATIONS
    assert not answer(2, message).reject
    other = replace(message, pool_element=replace(message.pool_element, pe_identifier=0x1002))
    assert answer(2, other).reject  # the grant covers its own PE only


class TacProcess(EnrpProcess):
    """``twistd -ny examples/custom_registrar.tac`` with the options of ``twistd -n enrp``."""

    def command(self) -> list[str]:
        self.environment["ENRP_OPTIONS"] = shlex.join(self.enrpOptions())
        return [TWISTD, "-n", "--pidfile=", f"--logfile={self.log}", "-y", str(TAC)]


@pytest.mark.slow
class TacTests(TestCase):
    """The example ``.tac`` under a real twistd, with pool elements over TLS-PSK."""

    timeout = 60

    async def test_listed_identity_registers_and_another_is_refused(self) -> None:
        """``pe`` (listed) registers in pool echo; ``pe-2`` is refused there with the cause
        Rejected due to security considerations, and still registers in another pool."""
        server = TacProcess(Path(self.mktemp()).resolve())  # type: ignore[no-untyped-call]
        server.directory.mkdir(parents=True)
        # The default file name, in twistd's working directory.
        (server.directory / "allowed-identities").write_text("# pool echo\npe\n")
        server.start()
        self.addCleanup(server.stop)
        clients: list[AsapClient] = []
        self.addCleanup(closeAll, clients)

        listed = await connectClient(server.peEndpoint())
        clients.append(listed)
        accepted = await listed.request(registration(0x1001))
        assert accepted == asap.RegistrationResponse(b"echo", 0x1001), readLog(server.log)

        unlisted = await connectClient(server.peEndpoint("pe-2", OTHER_KEY))
        clients.append(unlisted)
        refused = await unlisted.request(registration(0x2002))
        assert isinstance(refused, asap.RegistrationResponse) and refused.reject
        assert refused.error is not None
        assert refused.error.code == CauseCode.REJECTED_DUE_TO_SECURITY_CONSIDERATIONS
        elsewhere = await unlisted.request(replace(registration(0x2002), pool_handle=b"other"))
        assert elsewhere == asap.RegistrationResponse(b"other", 0x2002)

        user = await connectClient(server.puEndpoint())
        clients.append(user)
        answer = await user.request(asap.HandleResolution(b"echo"))
        assert isinstance(answer, asap.HandleResolutionResponse)
        assert [e.pe_identifier for e in answer.pool_elements] == [0x1001]
        log = readLog(server.log)
        assert "from 127.0.0.1" in log and "(pe-2) refused" in log
        assert "identity is not authorized for this pool" in log

    def test_missing_identities_file_is_one_line(self) -> None:
        """Without its identities file the .tac stops twistd with one line naming it."""
        server = TacProcess(Path(self.mktemp()).resolve())  # type: ignore[no-untyped-call]
        server.prepare()
        with pytest.raises(AssertionError, match="twistd exited with 1") as raised:
            server.start()
        self.addCleanup(server.stop)
        assert "custom_registrar.tac: allowed-identities: No such file" in str(raised.value)
