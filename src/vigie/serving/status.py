"""Error codes to transport statuses: the one table per transport, at the edge."""

from __future__ import annotations

from vigie.errors import ErrorCode

#: HTTP status for each error code (anything unlisted is 500, which a bad request never gets).
HTTP_STATUS: dict[ErrorCode, int] = {
    ErrorCode.INVALID_INPUT: 400,
    ErrorCode.NOT_FOUND: 404,
    ErrorCode.MODEL_NOT_FOUND: 404,
    ErrorCode.UNAUTHENTICATED: 401,
    ErrorCode.FORBIDDEN: 403,
    ErrorCode.CONFLICT: 409,
    ErrorCode.UNAVAILABLE: 503,
    ErrorCode.PROMOTION_REJECTED: 409,
    ErrorCode.ARTIFACT_CORRUPT: 500,
    ErrorCode.INTERNAL: 500,
}

#: gRPC status code name (grpc.StatusCode member) for each error code.
GRPC_STATUS: dict[ErrorCode, str] = {
    ErrorCode.INVALID_INPUT: "INVALID_ARGUMENT",
    ErrorCode.NOT_FOUND: "NOT_FOUND",
    ErrorCode.MODEL_NOT_FOUND: "NOT_FOUND",
    ErrorCode.UNAUTHENTICATED: "UNAUTHENTICATED",
    ErrorCode.FORBIDDEN: "PERMISSION_DENIED",
    ErrorCode.CONFLICT: "ALREADY_EXISTS",
    ErrorCode.UNAVAILABLE: "UNAVAILABLE",
    ErrorCode.PROMOTION_REJECTED: "FAILED_PRECONDITION",
    ErrorCode.ARTIFACT_CORRUPT: "INTERNAL",
    ErrorCode.INTERNAL: "INTERNAL",
}


def http_status(code: ErrorCode) -> int:
    """The HTTP status of an error code."""
    return HTTP_STATUS.get(code, 500)


def grpc_status(code: ErrorCode) -> str:
    """The gRPC status name of an error code."""
    return GRPC_STATUS.get(code, "INTERNAL")
