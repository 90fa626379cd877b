"""The one error every RSerPool decoder raises, and the RFC 5354 error causes it carries."""

from __future__ import annotations

from enum import IntEnum


class CauseCode(IntEnum):
    """RFC 5354 section 3.12, table 2 (0x9 and 0xa as the table numbers them)."""

    UNSPECIFIED_ERROR = 0x0
    UNRECOGNIZED_PARAMETER = 0x1
    UNRECOGNIZED_MESSAGE = 0x2
    INVALID_VALUES = 0x3
    NON_UNIQUE_PE_IDENTIFIER = 0x4
    INCONSISTENT_POOLING_POLICY = 0x5
    LACK_OF_RESOURCES = 0x6
    INCONSISTENT_TRANSPORT_TYPE = 0x7
    INCONSISTENT_DATA_CONTROL_CONFIGURATION = 0x8
    UNKNOWN_POOL_HANDLE = 0x9
    REJECTED_DUE_TO_SECURITY_CONSIDERATIONS = 0xA


class MalformedMessage(ValueError):
    """Bytes that do not decode to a valid message, chunk or parameter.

    ``cause`` is the RFC 5354 error cause that describes the fault. ``report`` says whether
    the RFC asks the receiver to tell the sender (an ASAP_ERROR / ENRP_ERROR carrying
    ``offending``, the unrecognized or invalid TLV or message) or only to discard.
    """

    def __init__(
        self,
        reason: str,
        cause: int = CauseCode.INVALID_VALUES,
        *,
        report: bool = True,
        offending: bytes = b"",
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.cause = cause
        self.report = report
        self.offending = offending

    def __repr__(self) -> str:
        return (
            f"MalformedMessage({self.reason!r}, cause={self.cause!r}, "
            f"report={self.report!r}, offending={len(self.offending)} bytes)"
        )
