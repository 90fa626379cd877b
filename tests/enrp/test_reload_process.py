"""Issue 15 finding 2: ``kill -HUP`` reloads a running ``twistd -n enrp``'s keys and policy.

An identity appended to the PSK file is accepted after SIGHUP; a bad new file (mode 0644)
keeps the previous keys and the log says why; SIGHUP never stops the server.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from twisted.trial.unittest import TestCase

from tests.enrp.support import OTHER_KEY, PE_KEY, EnrpProcess, connectClient, readLog
from tests.enrp.test_process import registration
from twisted_rserpool.security.psk import writePskFile
from twisted_rserpool.wire import asap

NEW_KEY = bytes(range(2, 34))


def hangUp(server: EnrpProcess, words: str, count: int) -> None:
    """SIGHUP ``server`` and wait until ``words`` is logged ``count`` times (it keeps running)."""
    assert server.process is not None
    os.kill(server.process.pid, signal.SIGHUP)
    deadline = time.monotonic() + 20
    while readLog(server.log).count(words) < count:
        assert server.process.poll() is None, readLog(server.log)
        assert time.monotonic() < deadline, readLog(server.log)
        time.sleep(0.05)


class ReloadTests(TestCase):
    """SIGHUP against a real server process."""

    timeout = 60

    def setUp(self) -> None:
        self.server = EnrpProcess(Path(self.mktemp()).resolve())  # type: ignore[no-untyped-call]
        self.server.start()
        self.addCleanup(self.server.stop)

    async def test_new_identity_after_sighup_and_bad_file_kept(self) -> None:
        """pe-3 appended to the PSK file registers after SIGHUP; a 0644 file is refused
        with the reason and pe-3 is still accepted; the server runs throughout."""
        newcomer = self.server.peEndpoint("pe-3", NEW_KEY)
        keys = {"pe": PE_KEY, "pe-3": NEW_KEY}
        # Replaced as an operator's editor would (the new file 0600), not yet read.
        fresh = self.server.pskFile.with_name("fresh.psk")
        writePskFile(fresh, keys)
        os.replace(fresh, self.server.pskFile)
        hangUp(self.server, "Reload: ", 1)
        assert "added ['pe-3']" in readLog(self.server.log)
        assert NEW_KEY.hex() not in readLog(self.server.log)
        client = await connectClient(newcomer)
        self.addCleanup(client.close)
        response = await client.request(registration(0x3001))
        assert response == asap.RegistrationResponse(b"echo", 0x3001)

        # A bad file (group-readable) keeps the keys in use, and says why.
        os.chmod(self.server.pskFile, 0o644)
        hangUp(self.server, "kept the previous pre-shared keys", 1)
        assert "chmod 600" in readLog(self.server.log)
        again = await connectClient(newcomer)
        self.addCleanup(again.close)
        response = await again.request(registration(0x3002))
        assert response == asap.RegistrationResponse(b"echo", 0x3002)
        assert self.server.process is not None and self.server.process.poll() is None


class PolicyReloadTests(TestCase):
    """SIGHUP re-reads --policy; a policy that does not parse keeps the one in force."""

    timeout = 60

    async def test_policy_reload(self) -> None:
        """pe-2 is refused until a new policy grants it; a broken one changes nothing."""
        directory = Path(self.mktemp()).resolve()  # type: ignore[no-untyped-call]
        directory.mkdir(parents=True)
        policy = directory / "policy.toml"
        grant = '[identities."{name}"]\nroles = ["pool-element"]\npools = ["echo"]\n'
        policy.write_text(grant.format(name="pe"))
        server = EnrpProcess(directory, extra=("--policy", str(policy)))
        server.start()
        self.addCleanup(server.stop)

        client = await connectClient(server.peEndpoint("pe-2", OTHER_KEY))
        self.addCleanup(client.close)
        refused = await client.request(registration(0x4001))
        assert isinstance(refused, asap.RegistrationResponse) and refused.reject

        policy.write_text(grant.format(name="pe") + grant.format(name="pe-2"))
        hangUp(server, "authorization policy read again", 1)
        granted = await client.request(registration(0x4002))
        assert granted == asap.RegistrationResponse(b"echo", 0x4002)

        policy.write_text("[identities.\n")  # not TOML
        hangUp(server, "kept the previous policy", 1)
        again = await client.request(registration(0x4003))
        assert again == asap.RegistrationResponse(b"echo", 0x4003)
