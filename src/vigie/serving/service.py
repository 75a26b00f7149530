"""The BentoML service of vigie: a thin definition over the rest of ``vigie.serving``.

Each worker builds ONE data plane (loaded ONNX models, one batching queue per model
version) in its ``on_startup`` hook, on the worker's own event loop, and three front ends
share it: BentoML's typed ``POST /predict``, the Open Inference Protocol v2 REST routes
(``/v2/...``, a Starlette app mounted here), and OIP v2 gRPC on ``VIGIE_GRPC_PORT``
(``vigie.serving.grpc_server``; every worker binds the port with SO_REUSEPORT).

``vigie serve`` runs it from wherever vigie is installed, as does::

    bentoml serve vigie.serving.service:VigiePrediction --host 127.0.0.1 --port 3000
"""

from __future__ import annotations

import gc
import logging
import os
import sys
from http import HTTPStatus
from typing import Any

import bentoml
from bentoml.exceptions import BentoMLException

from vigie.config import Settings, load_settings
from vigie.errors import ErrorCode, VigieError
from vigie.events.payload_log import PayloadLog
from vigie.features.online import Enricher
from vigie.features.processor import open_store
from vigie.governance.pseudonymize import Pseudonymizer
from vigie.log import ConsoleFormatter, JsonFormatter, background_access_logs
from vigie.serving import auth, grpc_server, metrics
from vigie.serving.dataplane import ServingDataPlane
from vigie.serving.guards import (
    JsonBodyOnly,
    LayerCheck,
    checked_stack,
    install_bentoml_layers,
)
from vigie.serving.rest import InferLane, RestContext, create_app
from vigie.serving.status import http_status
from vigie.serving.typed_api import (
    AuthenticateFirst,
    PredictResponse,
    caller_of,
    flight_model,
    predict_flights,
)

logger = logging.getLogger("vigie.service")

os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("BENTOML_DO_NOT_TRACK", "True")

#: One flight as ``/predict`` takes it (vigie.serving.typed_api).
Flight = flight_model()


class VigieServingError(BentoMLException):
    """A VigieError on BentoML's typed API, with the HTTP status of its code."""


#: Path prefix of the OIP REST routes, and the same as an OpenTelemetry exclusion pattern.
OIP_REST_PREFIX = "/v2"
OIP_REST_PATTERN = r"^[a-z]+://[^/]+/v2(/|$|\?)"
#: BentoML's own default access-log skip paths, kept.
BENTOML_SKIPPED_PATHS = ("/metrics", "/healthz", "/livez", "/readyz")
#: Net allocations that trigger a young collection in a worker (CPython's default: 700).
YOUNG_GC_THRESHOLD = 10_000


def _optional_context() -> RestContext | None:
    service: VigiePrediction = bentoml.get_current_service()
    return service.rest_context


def _context() -> RestContext:
    service: VigiePrediction = bentoml.get_current_service()
    if service.rest_context is None:
        raise VigieError(ErrorCode.UNAVAILABLE, "the service is starting; retry")
    return service.rest_context


# BentoML's request timeout, traffic metrics and tracing, mended (see vigie.serving.guards).
install_bentoml_layers(untraced=(OIP_REST_PREFIX,))


@bentoml.asgi_app(create_app(_context, prefix=OIP_REST_PREFIX), path="/")
@bentoml.service(
    name="vigie_prediction",
    traffic={"timeout": 30},
    # The OIP REST routes (/v2/...) have their own access log, metrics and request ids
    # (vigie.serving.rest); BentoML's OpenTelemetry, access-log and traffic-metrics layers
    # around them were a third of a REST request's CPU. /predict keeps all of them.
    tracing={"excluded_urls": [OIP_REST_PATTERN]},
    logging={"access": {"skip_paths": [*BENTOML_SKIPPED_PATHS, OIP_REST_PREFIX]}},
)
class VigiePrediction:
    """Serves the registry's production models over BentoML's API, OIP REST and OIP gRPC."""

    def __init__(self) -> None:
        self.settings: Settings = load_settings()
        _configure_logging(self.settings)
        self.dataplane: ServingDataPlane | None = None
        self.rest_context: RestContext | None = None
        self._payload_log: Any = None
        self._grpc: Any = None

    @bentoml.on_startup
    async def start(self) -> None:
        """Build and start the data plane, the payload log and the gRPC server."""
        settings = self.settings
        logger.info("BentoML's middleware stack has vigie's layers: %s", checked_stack())
        self._payload_log = await _start_payload_log(settings)
        dataplane = ServingDataPlane(
            settings, payload_log=self._payload_log, enricher=_enricher(settings)
        )
        # Not ready until gRPC is bound and serving: a failed bind keeps readiness false.
        dataplane.mark_frontend("grpc", False)
        await dataplane.start()
        self.dataplane = dataplane
        authenticate = _authenticator(settings)
        self.rest_context = RestContext(dataplane, settings, authenticate)
        self._grpc = await grpc_server.start_grpc(dataplane, settings, authenticate=authenticate)
        # Everything built so far (libraries, models, sessions) lives as long as the worker:
        # out of the collector's sight, a full collection no longer walks it, which was a
        # pause of tens of milliseconds in the request path (the p99 of a busy server).
        gc.collect()
        gc.freeze()
        # 32 requests in flight hold a few thousand young objects: at the default threshold
        # (700) that was about 200 young collections a second, each walking them and
        # promoting them into the middle generation (docs/performance.md).
        gc.set_threshold(YOUNG_GC_THRESHOLD, *gc.get_threshold()[1:])
        logger.info(
            "vigie serving: REST on %s:%s, gRPC on %s:%s, models %s",
            settings.host,
            settings.rest_port,
            settings.host,
            settings.grpc_port,
            dict(dataplane.models()),
        )

    @bentoml.on_shutdown
    async def stop(self) -> None:
        """Stop the gRPC server, drain the data plane, flush the payload log."""
        if self._grpc is not None:
            await self._grpc.stop(grace=5.0)
        if self.dataplane is not None:
            await self.dataplane.stop()
        if self._payload_log is not None:
            await self._payload_log.stop()

    async def __is_ready__(self) -> bool:
        """BentoML's ``/readyz``: the data plane's readiness."""
        return self.dataplane is not None and self.dataplane.ready()

    @bentoml.api
    async def predict(
        self,
        model: str,
        flights: list[Flight],  # type: ignore[valid-type]  # a model built at import
        ctx: bentoml.Context,
    ) -> PredictResponse:
        """Predict for a list of flights with the model's production version.

        ``flight_delay`` answers the probability of arriving more than 15 minutes late,
        ``arrival_delay`` the arrival delay in minutes.
        """
        try:
            context = _context()
            caller = caller_of(ctx.request.scope, context)
            return await predict_flights(context, model, flights, caller=caller)
        except VigieError as err:
            raise VigieServingError(
                err.message, error_code=HTTPStatus(http_status(err.code))
            ) from err


def _configure_logging(settings: Settings) -> None:
    """vigie's own loggers only: BentoML keeps its handlers and access log."""
    use_json = settings.log_format == "json" or (
        settings.log_format == "auto" and not sys.stderr.isatty()
    )
    formatter = JsonFormatter() if use_json else ConsoleFormatter()
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger("vigie")
    root.handlers[:] = [handler]
    root.setLevel(settings.log_level.upper())
    root.propagate = False
    # A line per request: formatted and written off the request's path, in batches.
    background_access_logs(formatter, sys.stderr)


def _authenticator(settings: Settings) -> Any:
    created = auth.ensure_local_keys(settings)
    if created is not None:
        logger.warning("API keys generated in %s", created)
    return auth.Authenticator(settings).check


async def _start_payload_log(settings: Settings) -> Any:
    holder: list[Any] = []

    def written(count: int) -> None:
        metrics.PAYLOAD_LOG_WRITTEN.inc(count)
        metrics.PAYLOAD_LOG_BUFFERED.set(holder[0].buffered if holder else 0)

    def dropped(count: int) -> None:
        metrics.PAYLOAD_LOG_DROPPED.inc(count)
        metrics.PAYLOAD_LOG_BUFFERED.set(holder[0].buffered if holder else 0)

    payload_log = PayloadLog(
        settings,
        on_written=written,
        on_dropped=dropped,
        on_buffered=metrics.PAYLOAD_LOG_BUFFERED.set,
    )
    holder.append(payload_log)
    await payload_log.start()
    return payload_log


# Service middlewares run in the order they are added, after BentoML's own layers.
# A worker whose server app lacks vigie's replacements of BentoML's layers refuses to start.
# (``bentoml.service`` turns the class into a Service object that type checkers cannot see.)
_SERVICE: Any = VigiePrediction
_SERVICE.add_asgi_middleware(LayerCheck)
# The key before anything else: without a valid one, /predict answers 401 whatever was sent.
_SERVICE.add_asgi_middleware(AuthenticateFirst, context=_optional_context, paths=("/predict",))
# BentoML would answer a multipart body on /predict with a 500: refuse non-JSON first.
_SERVICE.add_asgi_middleware(JsonBodyOnly, paths=("/predict",))
# OIP REST inference skips BentoML's router and request context (the mounted app still
# serves every other /v2 route, and inference too if the lane is ever bypassed).
_SERVICE.add_asgi_middleware(InferLane, context=_context, prefix=OIP_REST_PREFIX)


def _enricher(settings: Settings) -> Enricher | None:
    """The online-store enrichment of this worker (None when ``VIGIE_ENRICH`` is false)."""
    if not settings.enrich:
        return None
    return Enricher(
        open_store(settings, read_only=True), Pseudonymizer.from_settings(settings).pseudonymize
    )
