"""The drift sidecar process: HTTP on port 3001 over one :class:`vigie.monitoring.sidecar.Monitor`.

Run it with ``vigie monitor serve`` (or ``python -m vigie.monitoring.web``). A
background thread polls the payload log and the outcome log every
``VIGIE_MONITOR_POLL_INTERVAL_S`` and analyses windows; this web edge only serves what the
monitor produced:

- ``/``: the index of models, versions and windows (drift status, quality trend);
- ``/models/{model}/versions/{version}/windows/{window}``: one window's page, and beside
  it ``report.html`` (Evidently's report) and ``snapshot.json`` (its JSON snapshot);
- ``/api/windows``, ``/api/windows/{model}/{version}/{window}``, ``/api/health``,
  ``/api/retraining-requests``: the same as JSON;
- ``/metrics``: Prometheus; ``/health/live`` and ``/health/ready``.

Every route but the last three needs an API key whose role grants ``monitor.read``
(:mod:`vigie.governance.access`: service, sre, ml_engineer, data_engineer, auditor, admin),
as a Bearer token, an ``X-API-Key`` header or a browser's Basic password.

SIGTERM or Ctrl-C stops the server, then the poller, then finishes queued reports.
"""

from __future__ import annotations

import base64
import logging
import threading
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.datastructures import Headers
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from vigie.config import Settings, load_settings
from vigie.errors import ErrorCode, VigieError
from vigie.log import configure_logging
from vigie.monitoring.pages import render_index, render_not_found, render_window
from vigie.monitoring.sidecar import Monitor
from vigie.serving.auth import Authenticator, parse_bearer

_log = logging.getLogger("vigie.monitoring.sidecar")

#: Windows of one version shown as history on a window page.
HISTORY = 50


class Poller:
    """Calls :meth:`Monitor.poll` in a thread until stopped."""

    def __init__(self, monitor: Monitor, interval: float) -> None:
        self.monitor = monitor
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sidecar-poller", daemon=True)

    def start(self) -> None:
        """Start polling."""
        self._thread.start()

    def alive(self) -> bool:
        """Whether the polling thread runs."""
        return self._thread.is_alive()

    def stop(self, timeout: float = 30.0) -> None:
        """Stop after the current poll."""
        self._stop.set()
        self._thread.join(timeout)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                read = self.monitor.poll()
            except Exception:  # the poller must outlive any one bad poll
                _log.exception("sidecar poll failed")
                read = 0
            if read == 0:
                self._stop.wait(self.interval)


#: Routes open without a key: the probes and Prometheus' scrape.
OPEN_PATHS = frozenset({"/health/live", "/health/ready", "/metrics"})
#: The permission the pages, reports and JSON need (vigie.governance.access).
READ_PERMISSION = "monitor.read"


class RequireKey:
    """Refuses every route but :data:`OPEN_PATHS` to a caller without ``monitor.read``.

    The key comes as ``Authorization: Bearer <key>``, ``X-API-Key: <key>`` or, for a
    browser, HTTP Basic with the key as the password (a 401 asks the browser for it).
    Refusals are audited by the authenticator (protocol ``sidecar``).
    """

    def __init__(self, app: ASGIApp, authenticator: Authenticator) -> None:
        self.app = app
        self.authenticator = authenticator

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in OPEN_PATHS:
            await self.app(scope, receive, send)
            return
        try:
            caller = self.authenticator.check(
                presented_key(Headers(scope=scope)), READ_PERMISSION, "sidecar"
            )
        except VigieError as error:
            await _refusal(error)(scope, receive, send)
            return
        scope.setdefault("state", {})["caller"] = caller
        await self.app(scope, receive, send)


def presented_key(headers: Headers) -> str | None:
    """The API key a request presents (Bearer, X-API-Key, or Basic's password)."""
    authorization = headers.get("authorization", "")
    bearer = parse_bearer(authorization)
    if bearer:
        return bearer
    scheme, _, encoded = authorization.strip().partition(" ")
    if scheme.lower() == "basic" and encoded:
        try:
            password = base64.b64decode(encoded, validate=True).decode().partition(":")[2]
        except (ValueError, UnicodeDecodeError):
            return None
        return password.strip() or None
    return headers.get("x-api-key", "").strip() or None


def _refusal(error: VigieError) -> Response:
    status = 403 if error.code is ErrorCode.FORBIDDEN else 401
    body = {"error": error.message, "code": error.code.value}
    headers = {"WWW-Authenticate": 'Basic realm="vigie drift sidecar", charset="UTF-8"'}
    return JSONResponse(body, status, headers=headers if status == 401 else None)


def build_app(
    monitor: Monitor, poller: Poller | None = None, authenticator: Authenticator | None = None
) -> Starlette:
    """The sidecar's HTTP application over ``monitor``; every route but the probes and
    ``/metrics`` needs a key with ``monitor.read`` (none is asked when ``authenticator``
    is None: tests of the pages alone)."""

    def _not_found(message: str) -> HTMLResponse:
        return HTMLResponse(render_not_found(message), status_code=404)

    async def index(_: Request) -> Response:
        return HTMLResponse(render_index(monitor.results(), monitor.health()))

    async def window_page(request: Request) -> Response:
        model, version, window_id = _window_params(request)
        result = monitor.result(model, version, window_id)
        if result is None:
            return _not_found(f"No window {window_id} of {model} version {version}.")
        history = [r for r in monitor.results() if r["model"] == model and r["version"] == version][
            -HISTORY:
        ]
        return HTMLResponse(render_window(result, history=history))

    async def report_file(request: Request) -> Response:
        model, version, window_id = _window_params(request)
        name = request.path_params["name"]
        if monitor.result(model, version, window_id) is None or name not in _REPORT_FILES:
            return _not_found(f"No report for window {window_id} of {model} version {version}.")
        path = monitor.report_folder(model, version, window_id) / name
        if not path.is_file():
            return _not_found(
                f"The Evidently report of window {window_id} is not generated yet; "
                "reports are published in the background, try again shortly."
            )
        return FileResponse(path, media_type=_REPORT_FILES[name])

    async def api_windows(request: Request) -> Response:
        model = request.query_params.get("model")
        version = request.query_params.get("version")
        results = [
            r
            for r in monitor.results()
            if (model is None or r["model"] == model)
            and (version is None or r["version"] == version)
        ]
        return JSONResponse(results)

    async def api_window(request: Request) -> Response:
        model, version, window_id = _window_params(request)
        result = monitor.result(model, version, window_id)
        if result is None:
            return JSONResponse({"error": f"no window {window_id} of {model} {version}"}, 404)
        return JSONResponse(result)

    async def api_health(_: Request) -> Response:
        return JSONResponse(monitor.health())

    async def api_requests(_: Request) -> Response:
        return JSONResponse(monitor.retraining_requests)

    async def metrics(_: Request) -> Response:
        return Response(monitor.metrics.render(), media_type="text/plain; version=0.0.4")

    async def live(_: Request) -> Response:
        ok = poller is None or poller.alive()
        return JSONResponse({"live": ok}, 200 if ok else 503)

    async def ready(_: Request) -> Response:
        status = monitor.health()["status"]
        ok = status in {"ok", "degraded"}
        return JSONResponse({"ready": ok, "status": status}, 200 if ok else 503)

    window = "/models/{model}/versions/{version}/windows/{window_id}"
    guard = [] if authenticator is None else [Middleware(RequireKey, authenticator=authenticator)]
    return Starlette(
        middleware=guard,
        routes=[
            Route("/", index),
            Route(window, window_page),
            Route(window + "/{name}", report_file),
            Route("/api/windows", api_windows),
            Route("/api/windows/{model}/{version}/{window_id}", api_window),
            Route("/api/health", api_health),
            Route("/api/retraining-requests", api_requests),
            Route("/metrics", metrics),
            Route("/health/live", live),
            Route("/health/ready", ready),
        ],
    )


_REPORT_FILES = {"report.html": "text/html; charset=utf-8", "snapshot.json": "application/json"}


def _window_params(request: Request) -> tuple[str, str, str]:
    p: dict[str, Any] = request.path_params
    return str(p["model"]), str(p["version"]), str(p["window_id"])


def main(settings: Settings | None = None) -> None:
    """Run the sidecar until SIGTERM or Ctrl-C."""
    settings = settings or load_settings()
    configure_logging(settings.log_level, settings.log_format)
    monitor = Monitor(settings)
    monitor.start()
    poller = Poller(monitor, settings.monitor_poll_interval_s)
    poller.start()
    _log.info("drift sidecar on http://%s:%d", settings.host, settings.monitor_port)
    try:
        uvicorn.run(
            build_app(monitor, poller, Authenticator(settings)),
            host=settings.host,
            port=settings.monitor_port,
            log_level="warning",
        )
    finally:
        poller.stop()
        monitor.stop()


if __name__ == "__main__":
    main()
