"""Issue 15 finding 6: plaintext between pool users and pool elements only on request.

A pool element whose user transport has no TLS, and a pool user that has no way to
authenticate pool elements, are refused with ``PlaintextRefused`` (a clear error naming
the fix) unless the application passes ``insecure=True``, as the ENRP server's
``--insecure`` does.
"""

from __future__ import annotations

import pytest
from twisted.internet import reactor
from twisted.internet.endpoints import clientFromString, quoteStringArgument
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import Clock

from twisted_rserpool.asap import PlaintextRefused, PoolElement, PoolUser


@pytest.mark.parametrize("listen", ["tcp:0:interface=127.0.0.1", "unix:/tmp/pe.sock", "tcp6:0"])
def test_plaintext_pool_element_is_refused(listen: str) -> None:
    with pytest.raises(PlaintextRefused, match="insecure=True"):
        PoolElement(b"echo", Factory.forProtocol(Protocol), [], listen, clock=Clock())


def test_plaintext_pool_element_on_request() -> None:
    element = PoolElement(
        b"echo", Factory.forProtocol(Protocol), [], "tcp:0", clock=Clock(), insecure=True
    )
    assert element.insecure


def test_tls_pool_element_needs_nothing() -> None:
    PoolElement(b"echo", Factory.forProtocol(Protocol), [], "tlspsk:0:pskFile=k", clock=Clock())


def test_pool_user_without_trust_roots_refuses_sessions() -> None:
    """No peTrustRoots and no peEndpoint: connect() fails at once with PlaintextRefused."""
    user = PoolUser([], clock=Clock())
    failure = None

    def failed(reason: object) -> None:
        nonlocal failure
        failure = reason

    user.connect(b"echo", Factory.forProtocol(Protocol)).addErrback(failed)
    assert failure is not None
    assert failure.check(PlaintextRefused)  # type: ignore[attr-defined]
    assert "peTrustRoots" in str(failure.value)  # type: ignore[attr-defined]
    user.stopService()


def test_rserpool_endpoint_insecure_yes_passes_it_on() -> None:
    """``rserpool:...:insecure=yes`` is the application asking for plaintext sessions."""
    enrp = quoteStringArgument("tcp:host=127.0.0.1:port=1")  # type: ignore[no-untyped-call]
    endpoint = clientFromString(reactor, f"rserpool:pool=echo:enrp={enrp}:insecure=yes")  # type: ignore[no-untyped-call]
    assert endpoint.poolUser.insecure
