"""The ASGI guards: the JSON-only guard in front of /predict, and the BentoML layers vigie mends."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from starlette.middleware import Middleware

from vigie.serving.guards import (
    _REPLACED,
    JsonBodyOnly,
    LayerCheck,
    RequestDeadline,
    SkippingTracing,
    SkippingTrafficMetrics,
    checked_stack,
    install_bentoml_layers,
    stack_problem,
)


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


# --- the request deadline that replaces BentoML's timeout ------------------------------


def _run_deadline(app: Any, timeout: float) -> tuple[list[dict[str, Any]], int]:
    """Messages sent through RequestDeadline, and the timers left on the loop after it."""
    sent: list[dict[str, Any]] = []

    async def send(message: Any) -> None:
        sent.append(message)

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b""}

    async def main() -> int:
        scope = {"type": "http", "method": "GET", "path": "/", "headers": []}
        await RequestDeadline(app, timeout)(scope, receive, send)
        loop = asyncio.get_running_loop()
        return sum(1 for handle in loop._scheduled if not handle.cancelled())  # type: ignore[attr-defined]

    return sent, asyncio.run(main())


def test_an_answer_in_time_passes_and_leaves_no_timer_behind() -> None:
    sent, timers = _run_deadline(_inner, timeout=30.0)

    assert [m.get("status") for m in sent] == [200, None]
    assert sent[1]["body"] == b"ok"
    assert timers == 0


def test_no_response_in_time_is_a_504_naming_the_timeout() -> None:
    cancelled: list[bool] = []

    async def stuck(scope: Any, receive: Any, send: Any) -> None:
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            cancelled.append(True)
            raise

    sent, timers = _run_deadline(stuck, timeout=0.05)

    assert sent[0]["status"] == 504
    assert "0.05 seconds" in json.loads(sent[1]["body"])["error"]
    assert cancelled == [True]
    assert timers == 0


def test_the_apps_own_timeout_error_is_not_taken_for_the_deadline() -> None:
    async def times_out_itself(scope: Any, receive: Any, send: Any) -> None:
        raise TimeoutError("the app's own")

    with pytest.raises(TimeoutError, match="the app's own"):
        _run_deadline(times_out_itself, timeout=30.0)


def test_a_response_under_way_is_not_cut_by_the_deadline() -> None:
    async def slow_body(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await asyncio.sleep(0.1)
        await send({"type": "http.response.body", "body": b"late but whole"})

    sent, _ = _run_deadline(slow_body, timeout=0.02)

    assert [m.get("status") for m in sent] == [200, None]
    assert sent[1]["body"] == b"late but whole"


def test_install_puts_both_layers_in_bentomls_place() -> None:
    from bentoml._internal.server.http import instruments, traffic
    from opentelemetry.instrumentation import asgi as otel_asgi

    install_bentoml_layers(untraced=SkippingTracing.untraced)

    assert traffic.TimeoutMiddleware is RequestDeadline
    assert instruments.RunnerTrafficMetricsMiddleware is SkippingTrafficMetrics
    assert otel_asgi.OpenTelemetryMiddleware is SkippingTracing


def test_skipped_paths_are_not_measured_at_all() -> None:
    reached: list[str] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        reached.append(scope["path"])

    metrics = SkippingTrafficMetrics(app, skip_paths=["/v2", "/metrics"])
    asyncio.run(metrics({"type": "http", "path": "/v2/models/m/infer"}, None, None))

    assert reached == ["/v2/models/m/infer"]
    assert not metrics._is_setup  # BentoML's metrics were never touched


def test_untraced_paths_make_no_span_and_the_others_still_do(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    monkeypatch.setattr(SkippingTracing, "untraced", ("/v2",))
    tracing = SkippingTracing(_inner, tracer_provider=provider)

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b""}

    async def send(message: Any) -> None:
        pass

    async def call(path: str) -> None:
        scope = {
            "type": "http",
            "method": "POST",
            "path": path,
            "headers": [],
            "scheme": "http",
            "server": ("127.0.0.1", 3000),
            "query_string": b"",
            "http_version": "1.1",
        }
        await tracing(scope, receive, send)

    for path in ("/v2", "/v2/models/m/infer"):
        asyncio.run(call(path))
    assert exporter.get_finished_spans() == ()
    for path in ("/predict", "/v2x"):
        asyncio.run(call(path))
    assert len({span.context.trace_id for span in exporter.get_finished_spans()}) == 2


class _BuiltApp:
    """Stands for the server app BentoML built: its ``user_middleware`` entries."""

    def __init__(self, *classes: type) -> None:
        self.user_middleware = [Middleware(cls) for cls in classes]


def _lifespan(app: Any) -> tuple[list[dict[str, Any]], list[str]]:
    sent: list[dict[str, Any]] = []
    reached: list[str] = []

    async def inner(scope: Any, receive: Any, send: Any) -> None:
        reached.append(scope["type"])

    async def receive() -> dict[str, Any]:
        return {"type": "lifespan.startup"}

    async def send(message: Any) -> None:
        sent.append(message)

    asyncio.run(LayerCheck(inner)({"type": "lifespan", "app": app}, receive, send))
    return sent, reached


def test_a_stack_built_with_vigies_layers_starts_and_says_so() -> None:
    install_bentoml_layers(untraced=SkippingTracing.untraced)
    app = _BuiltApp(SkippingTrafficMetrics, SkippingTracing, RequestDeadline, JsonBodyOnly)

    assert stack_problem(app.user_middleware) is None
    sent, reached = _lifespan(app)
    assert sent == [] and reached == ["lifespan"]
    assert "RequestDeadline for TimeoutMiddleware" in checked_stack()


def test_a_stack_with_bentomls_own_timeout_refuses_to_start_naming_it() -> None:
    from bentoml._internal.server.http import traffic

    install_bentoml_layers(untraced=SkippingTracing.untraced)
    original = next(c for c in _REPLACED.values() if c.__name__ == "TimeoutMiddleware")
    assert original is not traffic.TimeoutMiddleware  # replaced, the original kept aside

    sent, reached = _lifespan(_BuiltApp(SkippingTrafficMetrics, SkippingTracing, original))

    assert reached == [], "the app never started"
    assert sent[0]["type"] == "lifespan.startup.failed"
    assert "TimeoutMiddleware instead of vigie's RequestDeadline" in sent[0]["message"]


def test_a_stack_without_the_deadline_or_an_app_that_cannot_be_read_refuses_to_start() -> None:
    install_bentoml_layers(untraced=SkippingTracing.untraced)

    missing = stack_problem(_BuiltApp(SkippingTracing).user_middleware)
    assert missing is not None and "lacks vigie's" in missing and "RequestDeadline" in missing
    sent, reached = _lifespan(object())
    assert reached == [] and "cannot read the server app's middleware stack" in sent[0]["message"]
