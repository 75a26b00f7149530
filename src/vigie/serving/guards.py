"""ASGI guards placed in front of BentoML's own routes.

BentoML parses a ``multipart/*`` body on a JSON API before vigie sees it, and turns the
parser's 400 into a 500. The guard refuses any body that is not JSON on the JSON routes
with 415 and a clear message, before BentoML reads it.

BentoML's request timeout (``traffic.timeout``) schedules a timer per request that it never
cancels: at 900 requests/s and a 30 s timeout, 27,000 live timers, each with its future,
context and bound method, which made every full garbage collection of the worker 10 to
20 ms. :class:`RequestDeadline` keeps the same contract (504 when no response has started
in time) with a deadline that is cancelled as soon as the response starts.

BentoML's HTTP traffic metrics honour their ``skip_paths`` only for the last-request
timestamp: the request counter, duration histogram and in-progress gauge still record
every path, labelled with the raw path. Under ``/v2`` that doubled what vigie's own metrics
count (about 5 % of a one-row request's CPU) and let a client mint a label value per
model name it makes up. :class:`SkippingTrafficMetrics` skips those paths altogether.

BentoML's tracing layer rebuilds each request's full URL and matches it against the
excluded patterns before it lets an excluded request through (about 3 % of a one-row OIP
request). :class:`SkippingTracing` lets the untraced path prefixes through on a string
comparison first.

:func:`install_bentoml_layers` puts the three in BentoML's place, and :class:`LayerCheck`
refuses to start a worker whose server app was not built with them (a BentoML release
that moved its internals), rather than serve without a deadline or with a changed layer.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from typing import Any

from bentoml._internal.server.http import instruments, traffic
from opentelemetry.instrumentation import asgi as otel_asgi

from vigie.errors import ErrorCode, VigieError

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

JSON_TYPES = frozenset({b"application/json", b""})

logger = logging.getLogger(__name__)


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


class RequestDeadline:
    """Answer 504 when the wrapped app has not started its response within ``timeout`` s.

    The same contract as BentoML's ``TimeoutMiddleware`` (whose constructor it shares), run
    in the request's own task, with a deadline that is cancelled once the response starts:
    a response under way is never cut, and nothing outlives the request.

    Args:
        app: The wrapped ASGI application.
        timeout: Seconds allowed before the response starts.
    """

    def __init__(self, app: ASGIApp, timeout: float) -> None:
        self.app = app
        self.timeout = timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False
        deadline = asyncio.timeout(self.timeout)

        async def started_send(message: Message) -> None:
            nonlocal started
            if not started:
                started = True
                deadline.reschedule(None)
            await send(message)

        try:
            async with deadline:
                await self.app(scope, receive, started_send)
        except TimeoutError:
            if started or not deadline.expired():  # the app's own TimeoutError is not ours
                raise
            await answer(send, 504, f"Not able to process the request in {self.timeout} seconds")


class SkippingTrafficMetrics(instruments.RunnerTrafficMetricsMiddleware):
    """BentoML's HTTP traffic metrics, not recorded at all for its ``skip_paths``."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"].startswith(tuple(self.skip_paths)):
            await self.app(scope, receive, send)
            return
        await super().__call__(scope, receive, send)


class SkippingTracing(otel_asgi.OpenTelemetryMiddleware):
    """OpenTelemetry's ASGI layer, passing :attr:`untraced` paths through untouched.

    A path is untraced when it is one of the prefixes or lies under one (``/v2`` and
    ``/v2/...``, not ``/v2x``); every other request is traced as before.
    """

    untraced: tuple[str, ...] = ()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and _under(scope["path"], self.untraced):
            await self.app(scope, receive, send)
            return
        await super().__call__(scope, receive, send)


def _under(path: str, prefixes: tuple[str, ...]) -> bool:
    return any(path == prefix or path.startswith(prefix + "/") for prefix in prefixes)


#: BentoML's own classes that :func:`install_bentoml_layers` replaced, by vigie's class.
_REPLACED: dict[type, type] = {}


class LayerCheck:
    """Refuse to start a server whose middleware stack is not the one vigie expects.

    :func:`install_bentoml_layers` replaces classes inside BentoML's private modules, which
    move between releases. This middleware, added through BentoML's public
    ``add_asgi_middleware``, sees the ASGI lifespan start before the worker serves anything;
    it reads the middlewares the server app was actually built with (Starlette's
    ``user_middleware``, the app being in the lifespan scope) and fails the start-up, with a
    message naming what is wrong, when one of BentoML's replaced classes is there or one of
    vigie's is missing. A worker that fails its start-up never becomes ready.

    Args:
        app: The wrapped ASGI application.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            problem = stack_problem(getattr(scope.get("app"), "user_middleware", None))
            if problem is not None:
                logger.error("%s", problem)
                await _fail_startup(receive, send, problem)
                return
            _CHECKED.append(_names(_REPLACED))
        await self.app(scope, receive, send)


#: What :class:`LayerCheck` found in this process's server app (one entry once it ran).
_CHECKED: list[str] = []


def checked_stack() -> str:
    """The layers :class:`LayerCheck` found, for the worker's start-up log line.

    Raises:
        VigieError: CONFIGURATION when no check ran (the service did not add LayerCheck, or
            the server did not pass its lifespan through the service's middlewares).
    """
    if not _CHECKED:
        raise VigieError(
            ErrorCode.CONFIGURATION,
            "BentoML's middleware stack was not checked at start-up (LayerCheck did not see "
            "the lifespan start): refusing to serve with unverified request layers",
        )
    return _CHECKED[-1]


def stack_problem(middlewares: Sequence[Any] | None) -> str | None:
    """What is wrong with a server app's middlewares (Starlette ``Middleware`` entries), or
    None when each layer vigie replaced is vigie's."""
    if not _REPLACED:
        return "install_bentoml_layers() was not called before the service app was built"
    if middlewares is None:
        return (
            "cannot read the server app's middleware stack (no user_middleware in the "
            "lifespan scope's app): this BentoML release builds its app differently; "
            "check vigie.serving.guards against it"
        )
    classes = [getattr(m, "cls", None) for m in middlewares]
    for ours, theirs in _REPLACED.items():
        if theirs in classes:
            return (
                f"BentoML built its own {theirs.__module__}.{theirs.__name__} instead of "
                f"vigie's {ours.__name__}: this BentoML release builds its middlewares "
                "another way; check vigie.serving.guards against it"
            )
    missing = [ours.__name__ for ours in _REPLACED if ours not in classes]
    if RequestDeadline.__name__ in missing or SkippingTracing.__name__ in missing:
        return (
            f"BentoML's middleware stack lacks vigie's {', '.join(missing)} (the request "
            "deadline or tracing layer): check vigie.serving.guards against this release"
        )
    return None


def _names(replaced: dict[type, type]) -> str:
    return ", ".join(f"{ours.__name__} for {theirs.__name__}" for ours, theirs in replaced.items())


async def _fail_startup(receive: Receive, send: Send, message: str) -> None:
    event = await receive()
    if event.get("type") == "lifespan.startup":
        await send({"type": "lifespan.startup.failed", "message": message})


def install_bentoml_layers(*, untraced: tuple[str, ...] = ()) -> None:
    """Make BentoML build :class:`RequestDeadline`, :class:`SkippingTrafficMetrics` and
    :class:`SkippingTracing` (with ``untraced`` path prefixes) in place of its own.

    BentoML imports these middlewares from their modules each time it assembles a
    service's middlewares, so this must run before the service's app is built (at import
    of the service module). Fails loudly if those modules no longer have them.
    """
    replaced = (
        (traffic, "TimeoutMiddleware"),
        (instruments, "RunnerTrafficMetricsMiddleware"),
        (otel_asgi, "OpenTelemetryMiddleware"),
    )
    for module, name in replaced:
        if not isinstance(getattr(module, name, None), type):
            raise RuntimeError(f"{module.__name__} has no {name} to replace")
    SkippingTracing.untraced = untraced
    for (module, name), ours in zip(
        replaced, (RequestDeadline, SkippingTrafficMetrics, SkippingTracing), strict=True
    ):
        current = getattr(module, name)
        if current is not ours:  # a second call keeps the originals of the first
            _REPLACED[ours] = current
    traffic.TimeoutMiddleware = RequestDeadline  # type: ignore[misc,assignment]
    instruments.RunnerTrafficMetricsMiddleware = SkippingTrafficMetrics  # type: ignore[misc]
    otel_asgi.OpenTelemetryMiddleware = SkippingTracing  # type: ignore[misc]


async def _refuse(send: Send, kind: str) -> None:
    await answer(send, 415, f"Content-Type {kind!r} is not supported here: send application/json")


async def answer(
    send: Send, status: int, message: str, *, headers: Sequence[tuple[bytes, bytes]] = ()
) -> None:
    """Answer ``{"error": message}`` with ``status`` (and any more ``headers``)."""
    body = json.dumps({"error": message}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
