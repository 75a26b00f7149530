"""The Open Inference Protocol v2 over REST: a Starlette app over the worker's data plane.

The app is mounted into BentoML's server (see ``vigie.serving.service``) and finds
the worker's data plane through a :class:`RestContext` getter, so that it holds no state
of its own. It only authenticates and translates: the body to a
:class:`~vigie.serving.inference.Call` and a decoder (:mod:`vigie.serving.oip`, the JSON
fast path, :mod:`vigie.serving.codec`), then :func:`vigie.serving.inference.serve`. Every
VigieError becomes ``{"error": "..."}`` with the status of its code; a bad request never
gets a 500.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from vigie.config import Settings
from vigie.errors import ErrorCode, VigieError
from vigie.log import access_line
from vigie.serving import codec, metrics, oip
from vigie.serving.fast_decode import decode_json_inputs
from vigie.serving.inference import Call, serve
from vigie.serving.status import http_status
from vigie.serving.types import DataPlane, ModelMetadata, Protocol_

logger = logging.getLogger(__name__)
access_log = logging.getLogger("vigie.serving.rest.access")

#: Response header carrying the id of an inference request (the client's or generated).
REQUEST_ID_HEADER = "X-Vigie-Request-Id"

PROTOCOL = Protocol_.V2_REST


class Authenticate(Protocol):
    """``vigie.serving.auth.Authenticator.check``: the caller id, or VigieError."""

    def __call__(self, token: str | None, role: str, protocol: str) -> str: ...


@dataclass
class RestContext:
    """What the app needs from its worker.

    Attributes:
        dataplane: The worker's data plane.
        settings: Limits (``max_body_bytes``, ``max_request_rows``, ``max_string_length``).
        authenticate: Checks an API key for a role; None lets every request in.
    """

    dataplane: DataPlane
    settings: Settings
    authenticate: Authenticate | None = None


def bearer(header: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header, or None."""
    if not header:
        return None
    scheme, _, token = header.partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None


def authenticate(context: RestContext, request: Request, role: str = "predict") -> str | None:
    """The caller id of a request (None when authentication is not configured).

    Raises:
        VigieError: UNAUTHENTICATED or FORBIDDEN, from the authenticator.
    """
    if context.authenticate is None:
        return None
    token = bearer(request.headers.get("authorization"))
    try:
        return context.authenticate(token, role, PROTOCOL.value)
    except VigieError as err:
        metrics.count_auth_failure(
            PROTOCOL.value, forbidden=err.code is ErrorCode.FORBIDDEN, token_given=token is not None
        )
        raise


def error_response(err: VigieError) -> JSONResponse:
    """``{"error": message}`` with the HTTP status of the error's code."""
    status = http_status(err.code)
    headers = {"WWW-Authenticate": "Bearer"} if err.code is ErrorCode.UNAUTHENTICATED else None
    return JSONResponse({"error": err.message}, status_code=status, headers=headers)


Handler = Callable[[RestContext, Request], Any]


def create_app(context: Callable[[], RestContext], *, prefix: str = "/v2") -> Starlette:
    """The OIP v2 REST app.

    Args:
        context: Returns the worker's context when a request arrives (it does not exist
            yet when the app is built at import time).
        prefix: Path prefix of every route (``/v2``; mount the app at ``/``).
    """

    def endpoint(handler: Handler) -> Callable[[Request], Any]:
        return _endpoint(handler, context)

    model = prefix + "/models/{name}"
    version = model + "/versions/{version}"
    routes = [
        Route(prefix, endpoint(server_metadata), methods=["GET"]),
        Route(prefix + "/health/live", endpoint(live), methods=["GET"]),
        Route(prefix + "/health/ready", endpoint(ready), methods=["GET"]),
        Route(model, endpoint(model_metadata), methods=["GET"]),
        Route(version, endpoint(model_metadata), methods=["GET"]),
        Route(model + "/ready", endpoint(model_ready), methods=["GET"]),
        Route(version + "/ready", endpoint(model_ready), methods=["GET"]),
        Route(model + "/infer", endpoint(infer), methods=["POST"]),
        Route(version + "/infer", endpoint(infer), methods=["POST"]),
    ]
    return Starlette(routes=routes)


class InferLane:
    """ASGI middleware taking ``POST {prefix}/models/{name}[/versions/{version}]/infer``
    straight to the infer endpoint of :func:`create_app`; any other request goes on to
    ``app``.

    In BentoML's server it stands where a service's middlewares go: after BentoML's
    deadline, concurrency limit, metrics and tracing layers, ahead of its request context,
    exception layer and router, and of the mounted app's own middlewares and router, which
    were about a fifth of a one-row request's CPU. The endpoint is the very one the mounted
    app routes to, so answers, errors, metrics and access lines are the same.

    Args:
        app: The rest of the server.
        context: As for :func:`create_app`.
        prefix: As for :func:`create_app`.
    """

    def __init__(
        self, app: Callable[..., Any], *, context: Callable[[], RestContext], prefix: str = "/v2"
    ) -> None:
        self.app = app
        self._infer = _endpoint(infer, context)
        self._models = prefix + "/models/"

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            params = infer_path_params(scope["path"], self._models)
            if params is not None:
                scope["path_params"] = params
                response = await self._infer(Request(scope, receive))
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


def infer_path_params(path: str, models: str = "/v2/models/") -> dict[str, str] | None:
    """``name`` (and ``version``) of an infer path under ``models``, or None for another path.

    Matches what the app's routes ``{models}{name}/infer`` and
    ``{models}{name}/versions/{version}/infer`` match: each parameter one non-empty segment.
    """
    if not path.startswith(models) or not path.endswith(_INFER):
        return None
    parts = path[len(models) : len(path) - len(_INFER)].split("/")
    if len(parts) == 1 and parts[0]:
        return {"name": parts[0]}
    if len(parts) == 3 and parts[0] and parts[1] == "versions" and parts[2]:  # noqa: PLR2004
        return {"name": parts[0], "version": parts[2]}
    return None


_INFER = "/infer"


def _endpoint(handler: Handler, context: Callable[[], RestContext]) -> Callable[[Request], Any]:
    """The endpoint of a handler: its answer (never an exception) and its access line."""

    async def run(request: Request) -> Response:
        start = time.perf_counter()
        response = await _answer(handler, context, request)
        if access_log.isEnabledFor(logging.INFO):  # built only for a logger that keeps it
            _log_access(request, response, time.perf_counter() - start)
        return response

    return run


async def _answer(
    handler: Handler, context: Callable[[], RestContext], request: Request
) -> Response:
    try:
        return await handler(context(), request)  # type: ignore[no-any-return]
    except VigieError as err:
        return error_response(err)
    except ClientDisconnect:
        return Response(status_code=499)
    except Exception:  # the last line of defence: never a stack trace to a client
        logger.exception("unexpected error on %s", request.url.path)
        return JSONResponse({"error": "internal error"}, status_code=500)


def _log_access(request: Request, response: Response, elapsed: float) -> None:
    """One line per OIP REST request (BentoML's access log skips ``/v2``)."""
    client = request.scope.get("client")
    path = request.scope["path"]
    access_line(
        access_log,
        f"{request.method} {path} {response.status_code}",
        {
            "method": request.method,
            "path": path,
            "status": response.status_code,
            "duration_ms": round(elapsed * 1000.0, 3),
            "peer": f"{client[0]}:{client[1]}" if client else None,
            "request_id": response.headers.get(REQUEST_ID_HEADER),
        },
    )


async def server_metadata(context: RestContext, request: Request) -> Response:
    """``GET /v2``."""
    authenticate(context, request)
    return JSONResponse(oip.server_metadata_json(context.dataplane.server_metadata()))


async def live(context: RestContext, request: Request) -> Response:
    """``GET /v2/health/live``: 200 while the process is up."""
    is_live = context.dataplane.live()
    return JSONResponse({"live": is_live}, status_code=200 if is_live else 503)


async def ready(context: RestContext, request: Request) -> Response:
    """``GET /v2/health/ready``: 200 once every production model and front end is ready."""
    is_ready = context.dataplane.ready()
    return JSONResponse({"ready": is_ready}, status_code=200 if is_ready else 503)


async def model_metadata(context: RestContext, request: Request) -> Response:
    """``GET /v2/models/{name}[/versions/{version}]``."""
    authenticate(context, request)
    name, version = _model_path(request)
    return JSONResponse(oip.model_metadata_json(context.dataplane.model_metadata(name, version)))


async def model_ready(context: RestContext, request: Request) -> Response:
    """``GET /v2/models/{name}[/versions/{version}]/ready``."""
    authenticate(context, request)
    name, version = _model_path(request)
    is_ready = context.dataplane.model_ready(name, version)
    return JSONResponse({"name": name, "ready": is_ready}, status_code=200 if is_ready else 503)


async def infer(context: RestContext, request: Request) -> Response:
    """``POST /v2/models/{name}[/versions/{version}]/infer``: authenticate, parse, then the
    one inference sequence (:func:`vigie.serving.inference.serve`)."""
    name, version = _model_path(request)
    settings, dataplane = context.settings, context.dataplane
    start = time.perf_counter()
    try:  # what the edge refuses is counted here; serve and the data plane count the rest
        caller = authenticate(context, request)
        document, binary = oip.parse_document(
            await _read_body(request, settings.max_body_bytes),
            request.headers.get(oip.HEADER_LENGTH),
        )
        body = oip.infer_body(document, binary, tensors=False)
    except VigieError as err:
        dataplane.record_failure(PROTOCOL.value, name, err)
        raise
    limits = {
        "max_rows": settings.max_request_rows,
        "max_string_length": settings.max_string_length,
    }

    def decode(metadata: ModelMetadata) -> tuple[dict[str, Any], int]:
        # The usual JSON body in one pass; anything else the general way, which names problems.
        fast = None if binary else decode_json_inputs(document.get("inputs"), metadata, **limits)
        return fast or codec.decode_inputs(metadata, oip.infer_tensors(document, binary), **limits)

    call = Call(PROTOCOL, name, version, caller, body.id, body.outputs, body.parameters)
    result = await serve(dataplane, call, decode)
    content, header_length = oip.infer_response(
        result, codec.encode_outputs(result, body.outputs), body
    )
    headers = {
        "X-Vigie-Latency-Ms": f"{(time.perf_counter() - start) * 1000:.3f}",
        REQUEST_ID_HEADER: result.id,
    }
    if header_length is None:
        return Response(content, media_type="application/json", headers=headers)
    headers[oip.HEADER_LENGTH] = str(header_length)
    return Response(content, media_type="application/octet-stream", headers=headers)


def _model_path(request: Request) -> tuple[str, str | None]:
    params = request.path_params
    return str(params["name"]), params.get("version")


async def _read_body(request: Request, limit: int) -> bytes:
    """The body, refused with INVALID_INPUT as soon as it passes ``limit`` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise _too_large(int(declared), limit)
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _too_large(size, limit)
        chunks.append(chunk)
    return b"".join(chunks)


def _too_large(size: int, limit: int) -> VigieError:
    return VigieError(
        ErrorCode.INVALID_INPUT,
        f"the body is {size} bytes or more; the limit is {limit} bytes (send fewer rows)",
        limit=limit,
    )
