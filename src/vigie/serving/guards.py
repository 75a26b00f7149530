"""ASGI guards placed in front of BentoML's own routes.

BentoML parses a ``multipart/*`` body on a JSON API before vigie sees it, and turns the
parser's 400 into a 500. The guard refuses any body that is not JSON on the JSON routes
with 415 and a clear message, before BentoML reads it.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

JSON_TYPES = frozenset({b"application/json", b""})


class JsonBodyOnly:
    """Refuse POST bodies that are not ``application/json`` on the given paths (415).

    Args:
        app: The wrapped ASGI application.
        paths: Exact request paths guarded (for example ``("/predict",)``).
    """

    def __init__(self, app: ASGIApp, *, paths: tuple[str, ...]) -> None:
        self.app = app
        self.paths = frozenset(paths)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST" and scope["path"] in self.paths:
            kind = _content_type(scope)
            if kind not in JSON_TYPES:
                await _refuse(send, kind.decode("latin-1"))
                return
        await self.app(scope, receive, send)


def _content_type(scope: Scope) -> bytes:
    for name, value in scope.get("headers", []):
        if name.lower() == b"content-type":
            return bytes(value).split(b";", 1)[0].strip().lower()
    return b""


async def _refuse(send: Send, kind: str) -> None:
    body = json.dumps(
        {"error": f"Content-Type {kind!r} is not supported here: send application/json"}
    ).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 415,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
