"""Issue 15 finding 2 for ``twistd vpngw``: ``kill -HUP`` reloads a running gateway's secrets
and redirect targets. An identity appended to --secrets is accepted after SIGHUP (our own
IKE initiator over real UDP); a broken file keeps the previous keys and the log says why
in one line; SIGHUP never stops the gateway, and what changed is logged without a key."""

from __future__ import annotations

from pathlib import Path

from twisted.trial.unittest import TestCase

from tests.ike.vpngw_process import IDENTITY, VpngwProcess, connect
from twisted_rserpool.ike.initiator import IkeSaSetupFailed

NEW_SECRET = "appended-secret-0451"


class ReloadTests(TestCase):
    """SIGHUP against a real ``twistd -n vpngw``."""

    timeout = 60

    async def test_appended_identity_accepted_after_sighup_and_broken_file_kept(self) -> None:
        """new@test is refused, then accepted after its line is appended and the gateway
        gets SIGHUP (the log names it, not its key); a broken secrets file is refused in
        one line and new@test is still accepted; a target appended to --redirect-targets
        is in the status; the gateway runs throughout."""
        directory = Path(self.mktemp()).resolve()  # type: ignore[no-untyped-call]
        directory.mkdir(parents=True)
        targets = directory / "targets"
        targets.write_text("127.0.0.7=2\n")
        gateway = VpngwProcess(directory, extra=("--redirect-targets", str(targets)))
        gateway.start()
        self.addCleanup(gateway.stop)

        try:
            await connect(gateway, "new@test", NEW_SECRET)
        except IkeSaSetupFailed:
            gateway.waitForLog("cannot verify AUTH .* of new@test")
        else:
            raise AssertionError("new@test was accepted before the reload")
        with gateway.secretsFile.open("a") as secrets:
            secrets.write(f'new@test : "{NEW_SECRET}"\n')
        targets.write_text("127.0.0.7=2\n127.0.0.8=1\n")
        gateway.hangUp(r"Reload: .*redirect targets", 1)
        log = gateway.logText()
        assert "SIGHUP: reloading the secrets, certificates and redirect targets" in log
        assert "2 identities; added ['new@test'], removed none" in log
        assert NEW_SECRET not in log and "client-secret" not in log
        established = await connect(gateway, "new@test", NEW_SECRET)
        assert str(established.peer_id) == IDENTITY
        document = gateway.status()
        assert document["redirect_targets"] == [
            {"gateway": "127.0.0.7", "weight": 2},
            {"gateway": "127.0.0.8", "weight": 1},
        ]
        assert document["reload"]["reloads"] == 1 and document["reload"]["files_kept"] == 0

        # A broken file (a line without 'identity : secret') keeps the keys in force.
        gateway.secretsFile.write_text("new@test\n")
        gateway.hangUp("kept the previous pre-shared keys", 1)
        [line] = [x for x in gateway.logText().splitlines() if "kept the previous" in x]
        assert f"{gateway.secretsFile}: line 1: expected 'identity : secret'" in line
        assert "Traceback" not in gateway.logText()
        again = await connect(gateway, "new@test", NEW_SECRET)
        assert str(again.peer_id) == IDENTITY
        assert gateway.status()["reload"]["files_kept"] == 1
        assert gateway.process is not None and gateway.process.poll() is None
