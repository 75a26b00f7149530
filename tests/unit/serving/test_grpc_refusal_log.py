"""A refusal whose sending is cancelled is logged with the status the client was sent.

The server can be stopped (or the client go) while ``abort`` is sending a refusal: the
client has its status, the handler sees ``CancelledError``. The access log must say what
the client got, not that the call was cancelled.
"""

from __future__ import annotations

import asyncio
from typing import Any, NoReturn

import grpc
import pytest

from vigie.errors import ErrorCode, VigieError
from vigie.serving.grpc_interceptors import ServingInterceptor, refuse, refuse_error


class CancelledWhileSending:
    """The part of a servicer context the interceptor reads; its abort is cancelled."""

    def __init__(self) -> None:
        self.sent: list[grpc.StatusCode] = []

    async def abort(self, code: grpc.StatusCode, details: str) -> NoReturn:
        self.sent.append(code)
        raise asyncio.CancelledError

    def code(self) -> None:
        return None

    def peer(self) -> str:
        return "ipv4:127.0.0.1:1"

    def invocation_metadata(self) -> tuple[()]:
        return ()


async def not_found(request: Any, context: Any) -> Any:
    await refuse_error(context, VigieError(ErrorCode.MODEL_NOT_FOUND, "no model 'nope'"))


async def overloaded(request: Any, context: Any) -> Any:
    await refuse(context, grpc.StatusCode.RESOURCE_EXHAUSTED, "busy")


async def cancelled(request: Any, context: Any) -> Any:
    raise asyncio.CancelledError


async def call(served: Any) -> Any:
    return await served(object(), CancelledWhileSending())


@pytest.mark.parametrize(
    ("behavior", "expected"),
    [(not_found, "NOT_FOUND"), (overloaded, "RESOURCE_EXHAUSTED"), (cancelled, "CANCELLED")],
)
def test_the_log_names_the_status_sent(
    behavior: Any, expected: str, caplog: pytest.LogCaptureFixture
) -> None:
    served = ServingInterceptor(lambda name: name, limit=4, timeout_s=5.0).wrap(
        "ModelInfer", behavior
    )
    with (
        caplog.at_level("INFO", logger="vigie.serving.grpc.access"),
        pytest.raises(asyncio.CancelledError),
    ):
        asyncio.run(call(served))
    lines = [r for r in caplog.records if r.name == "vigie.serving.grpc.access"]
    assert [r.status for r in lines] == [expected]  # type: ignore[attr-defined]
