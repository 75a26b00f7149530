"""The one error root of vigie, carrying a stable code.

Transports map codes to their own status vocabulary at the edge (HTTP, gRPC, process
exit codes); nothing inside the package speaks in HTTP statuses.
"""

from __future__ import annotations

import enum
from typing import Any


class ErrorCode(enum.StrEnum):
    """Stable error codes; users and transports rely on these names."""

    INVALID_INPUT = "INVALID_INPUT"
    CONFIGURATION = "CONFIGURATION"
    NOT_FOUND = "NOT_FOUND"
    MODEL_NOT_FOUND = "MODEL_NOT_FOUND"
    DATA_QUALITY = "DATA_QUALITY"
    POLICY_VIOLATION = "POLICY_VIOLATION"
    SOURCE_CORRUPT = "SOURCE_CORRUPT"
    WAREHOUSE_UNAVAILABLE = "WAREHOUSE_UNAVAILABLE"
    MIGRATION_MISMATCH = "MIGRATION_MISMATCH"
    AUDIT_TAMPERED = "AUDIT_TAMPERED"
    ARTIFACT_CORRUPT = "ARTIFACT_CORRUPT"
    QUALITY_GATE = "QUALITY_GATE"
    PROMOTION_REJECTED = "PROMOTION_REJECTED"
    UNAUTHENTICATED = "UNAUTHENTICATED"
    FORBIDDEN = "FORBIDDEN"
    CONFLICT = "CONFLICT"
    UNAVAILABLE = "UNAVAILABLE"
    INTERNAL = "INTERNAL"


#: Process exit status for each code, used by the command line.
EXIT_CODES: dict[ErrorCode, int] = {
    ErrorCode.INVALID_INPUT: 2,
    ErrorCode.CONFIGURATION: 3,
    ErrorCode.NOT_FOUND: 4,
    ErrorCode.MODEL_NOT_FOUND: 4,
    ErrorCode.DATA_QUALITY: 5,
    ErrorCode.POLICY_VIOLATION: 6,
    ErrorCode.SOURCE_CORRUPT: 7,
    ErrorCode.WAREHOUSE_UNAVAILABLE: 8,
    ErrorCode.MIGRATION_MISMATCH: 9,
    ErrorCode.AUDIT_TAMPERED: 10,
    ErrorCode.ARTIFACT_CORRUPT: 16,
    ErrorCode.QUALITY_GATE: 17,
    ErrorCode.PROMOTION_REJECTED: 11,
    ErrorCode.UNAUTHENTICATED: 12,
    ErrorCode.FORBIDDEN: 13,
    ErrorCode.CONFLICT: 14,
    ErrorCode.UNAVAILABLE: 15,
    ErrorCode.INTERNAL: 70,
}


class VigieError(Exception):
    """Root of every error vigie raises on purpose.

    Args:
        code: The stable error code.
        message: A sentence for a person: what is wrong and, where possible, what to do.
        details: Machine-readable context (field names, expected values, paths).
    """

    def __init__(self, code: ErrorCode, message: str, **details: Any) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = details

    def to_dict(self) -> dict[str, Any]:
        """The error as a JSON-ready mapping."""
        return {"code": self.code.value, "message": self.message, "details": self.details}

    def __str__(self) -> str:
        return f"[{self.code.value}] {self.message}"
