"""``twistd enrp`` with a registrar of its own: only listed identities may join pool ``echo``.

The server is the one ``twistd -n enrp`` runs, with the same options (given here in the
environment variable ENRP_OPTIONS), and one decision added: a pool element may register in
pool ``echo`` only if its authenticated identity is listed in the file ALLOWED_IDENTITIES
(default ``allowed-identities``: one identity per line, ``#`` starts a comment). Any other
is refused with the ASAP cause "Rejected due to security considerations". Other pools
follow the authorization policy (``--policy``), as in ``twistd enrp``.

    printf 'pe\\n' > allowed-identities
    ENRP_OPTIONS="--state-dir enrp-state" twistd -ny examples/custom_registrar.tac

A pool element then connects with the endpoint string that the server logs, such as
``tlspsk:host=127.0.0.1:port=3864:identity=pe:pskFile=enrp-state/keys.psk``.
"""

import os
import shlex
from pathlib import Path

from twisted.application.service import Application
from twisted.python import usage

from twisted_rserpool.enrp import ConnectionState, Registrar
from twisted_rserpool.enrp.tap import Options, makeService
from twisted_rserpool.wire.parameters import PoolElementParameter

POOL = b"echo"
ALLOWED_IDENTITIES = Path(os.environ.get("ALLOWED_IDENTITIES", "allowed-identities"))


def readIdentities(path: Path) -> frozenset[str]:
    """The identities listed in ``path``; a missing file stops the server with one line."""
    try:
        text = path.read_text()
    except OSError as e:
        raise SystemExit(f"custom_registrar.tac: {path}: {e.strerror}") from None
    names = (line.split("#", 1)[0].strip() for line in text.splitlines())
    return frozenset(name for name in names if name)


class ListedIdentitiesRegistrar(Registrar):
    """A registrar that admits to pool ``echo`` only the listed identities' pool elements."""

    # Read once, when the server starts: the hook answers at once, without I/O.
    allowed = readIdentities(ALLOWED_IDENTITIES)

    def allowRegistration(
        self, connection: ConnectionState, pool_handle: bytes, element: PoolElementParameter
    ) -> bool:
        if pool_handle == POOL and connection.identity not in self.allowed:
            return False
        return super().allowRegistration(connection, pool_handle, element)


options = Options()
try:
    options.parseOptions(shlex.split(os.environ.get("ENRP_OPTIONS", "")))  # type: ignore[no-untyped-call]
    service = makeService(options, registrarClass=ListedIdentitiesRegistrar)
except usage.UsageError as e:
    raise SystemExit(f"custom_registrar.tac: {e}") from None

application = Application("enrp")  # type: ignore[no-untyped-call]
service.setServiceParent(application)  # type: ignore[no-untyped-call]
