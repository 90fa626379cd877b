"""What a connection's security amounts to: the value every authorization decision reads."""

from __future__ import annotations

from dataclasses import dataclass

#: Protocol versions from weakest to strongest, as OpenSSL names them.
_VERSION_RANK = {"TLSv1": 1, "TLSv1.1": 2, "TLSv1.2": 3, "TLSv1.3": 4}


@dataclass(frozen=True, slots=True)
class SecurityContext:
    """The security of one connection (ARCHITECTURE.md principle 3).

    ``authenticated`` is true only when the peer proved an identity: a pre-shared key we
    know (``psk_identity``) or a certificate that verified against our trust roots
    (``certificate_subject`` and its SHA-256 ``certificate_fingerprint``). A connection
    without TLS has the :data:`INSECURE` context.
    """

    authenticated: bool
    tls_version: str | None = None
    cipher: str | None = None
    psk_identity: str | None = None
    certificate_subject: str | None = None
    certificate_fingerprint: str | None = None

    @property
    def identity(self) -> str | None:
        """The authenticated peer identity: the PSK identity, else the certificate subject."""
        if not self.authenticated:
            return None
        return self.psk_identity if self.psk_identity is not None else self.certificate_subject

    @property
    def encrypted(self) -> bool:
        """Whether the connection runs over TLS at all."""
        return self.tls_version is not None

    def rank(self) -> tuple[int, int]:
        """An ordering key: authenticated beats not, then newer TLS versions beat older."""
        return (int(self.authenticated), _VERSION_RANK.get(self.tls_version or "", 0))

    def is_weaker_than(self, other: SecurityContext) -> bool:
        """Whether this context offers less than ``other`` (lost authentication or TLS version)."""
        mine, theirs = self.rank(), other.rank()
        return mine[0] < theirs[0] or mine[1] < theirs[1]

    def logFields(self) -> dict[str, object]:
        """The context as named log fields: ``tls_version``, ``cipher``, ``psk_identity``,
        ``peer_subject`` (the certificate subject), ``peer_fingerprint`` and
        ``authenticated``; :meth:`logFormat` renders them."""
        return {
            "tls_version": self.tls_version,
            "cipher": self.cipher,
            "psk_identity": self.psk_identity,
            "peer_subject": self.certificate_subject,
            "peer_fingerprint": self.certificate_fingerprint,
            "authenticated": self.authenticated,
        }

    def logFormat(self) -> str:
        """A log format fragment over :meth:`logFields`' names that reads as :meth:`describe`."""
        if not self.encrypted:
            return "no TLS, unauthenticated"
        who = (
            "PSK identity {psk_identity!r}"
            if self.psk_identity is not None
            else "certificate {peer_subject!r}"
            if self.certificate_subject is not None
            else "no peer identity"
        )
        state = "authenticated" if self.authenticated else "unauthenticated"
        return "{tls_version} {cipher}, " + who + ", " + state

    def describe(self) -> str:
        """One line for logs and notifications."""
        return self.logFormat().format(**self.logFields())


#: The context of a connection without TLS.
INSECURE = SecurityContext(authenticated=False)
