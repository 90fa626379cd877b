"""Security of RSerPool connections (RFC 5355): TLS with pre-shared keys and certificates,
the SecurityContext every connection carries, identities, authorization and rate limits."""

from twisted_rserpool.security.context import INSECURE, SecurityContext

__all__ = ["INSECURE", "SecurityContext"]
