"""The one error the IKEv2 codec raises for malformed input, and the notify it asks for."""

from __future__ import annotations

from twisted_rserpool.ike.constants import NotifyType


class InvalidIkeMessage(ValueError):
    """Bytes that do not decode to a valid IKEv2 message, payload chain or notify data.

    ``notify_type`` is the RFC 7296 error notify a responder would answer with:
    INVALID_SYNTAX for structural faults, UNSUPPORTED_CRITICAL_PAYLOAD (with
    ``payload_type`` set to the offending type) for an unknown payload whose critical bit
    is set, INVALID_MAJOR_VERSION for a header whose major version is not 2.
    Whether to answer at all is the caller's decision (RFC 7296 section 2.21).
    """

    def __init__(
        self,
        reason: str,
        notify_type: int = NotifyType.INVALID_SYNTAX,
        *,
        payload_type: int | None = None,
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.notify_type = notify_type
        self.payload_type = payload_type

    @property
    def notify_data(self) -> bytes:
        """The Notification Data for the answering notify (the payload type for type 1)."""
        if self.notify_type == NotifyType.UNSUPPORTED_CRITICAL_PAYLOAD and (
            self.payload_type is not None
        ):
            return bytes([self.payload_type & 0xFF])
        return b""

    def __repr__(self) -> str:
        return (
            f"InvalidIkeMessage({self.reason!r}, notify_type={self.notify_type!r}, "
            f"payload_type={self.payload_type!r})"
        )
