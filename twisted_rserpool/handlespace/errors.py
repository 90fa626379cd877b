"""Why the handlespace refused a request, as an RFC 5354 error cause."""

from __future__ import annotations

from twisted_rserpool.describe import handleText
from twisted_rserpool.wire.errors import CauseCode
from twisted_rserpool.wire.parameters import SelectionPolicy, Transport


class HandlespaceError(Exception):
    """A refused registration, de-registration or lookup.

    ``cause`` is the RFC 5354 error cause for the reply and ``reason`` a sentence for logs
    and operators. For Inconsistent Pooling Policy, ``pool_policy`` is the pool's overall
    policy and for Inconsistent Transport Type ``pool_transport`` the pool's overall user
    transport: RFC 5354 sections 3.12.6 and 3.12.8 put these into the error cause.
    """

    def __init__(
        self,
        cause: CauseCode,
        reason: str,
        *,
        pool_policy: SelectionPolicy | None = None,
        pool_transport: Transport | None = None,
    ) -> None:
        super().__init__(reason)
        self.cause = cause
        self.reason = reason
        self.pool_policy = pool_policy
        self.pool_transport = pool_transport

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.cause.name}, {self.reason!r})"


class RegistrationRefused(HandlespaceError):
    """An ASAP registration (or a peer's handle update) the handlespace did not accept."""


class DeregistrationRefused(HandlespaceError):
    """A de-registration the handlespace did not accept (another identity's PE)."""


class UnknownPoolHandle(HandlespaceError):
    """A handle resolution or lookup for a pool that does not exist."""

    def __init__(self, pool_handle: bytes) -> None:
        super().__init__(
            CauseCode.UNKNOWN_POOL_HANDLE, f"no pool with handle {handleText(pool_handle)}"
        )
        self.pool_handle = pool_handle
