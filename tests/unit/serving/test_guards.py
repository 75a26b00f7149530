"""The JSON-only guard in front of BentoML's /predict."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from vigie.serving.guards import JsonBodyOnly


async def _inner(scope: Any, receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


def _call(path: str, content_type: str | None, method: str = "POST") -> tuple[int, bytes]:
    sent: list[dict[str, Any]] = []

    async def send(message: Any) -> None:
        sent.append(message)

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"{}"}

    headers = [(b"content-type", content_type.encode())] if content_type else []
    scope = {"type": "http", "method": method, "path": path, "headers": headers}
    asyncio.run(JsonBodyOnly(_inner, paths=("/predict",))(scope, receive, send))
    return sent[0]["status"], sent[1]["body"]


def test_json_and_unlabelled_bodies_pass() -> None:
    assert _call("/predict", "application/json; charset=utf-8") == (200, b"ok")
    assert _call("/predict", None) == (200, b"ok")


def test_a_multipart_body_is_refused_with_415_naming_the_type() -> None:
    status, body = _call("/predict", "multipart/form-data; boundary=xyz")

    assert status == 415
    assert "multipart/form-data" in json.loads(body)["error"]


def test_other_paths_and_methods_are_not_guarded() -> None:
    assert _call("/v2/models/m/infer", "multipart/form-data")[0] == 200
    assert _call("/predict", "multipart/form-data", method="GET")[0] == 200
