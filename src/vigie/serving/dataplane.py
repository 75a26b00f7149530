"""The one data plane of a serving worker: routing, batching, hot reload, payload logging.

Every front end (BentoML's ``/predict``, OIP REST, OIP gRPC) decodes its request with
:mod:`vigie.serving.codec` against :meth:`ServingDataPlane.model_metadata`, then awaits
:meth:`ServingDataPlane.infer`; requests of the same model version share one batching
queue, whatever protocol they came by.
"""

from __future__ import annotations

import asyncio
import dataclasses
import importlib.metadata
import logging
import os
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from functools import partial
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt
import onnxruntime as ort

from vigie.config import Settings
from vigie.errors import ErrorCode, VigieError
from vigie.features.online import ENRICHABLE, NUMERIC_REQUEST_INPUTS, REQUEST_INPUTS, Enricher
from vigie.registry import Registry
from vigie.serving import metrics
from vigie.serving.batcher import BatcherClosed
from vigie.serving.reloader import Reloader
from vigie.serving.repository import LoadedVersion, ModelRepository
from vigie.serving.routing import Decision, Route, Router
from vigie.serving.types import (
    Datatype,
    InferRequest,
    InferResult,
    ModelMetadata,
    ServerMetadata,
    TensorSpec,
)

logger = logging.getLogger(__name__)

#: Label of the ``model`` metric dimension for names that are not served (bounded labels).
UNKNOWN_MODEL = "_unknown"

#: The request inputs of an enriching data plane: what an application knows of its flight
#: beyond the model's own inputs (:mod:`vigie.features.online`).
REQUEST_SPECS = tuple(
    TensorSpec(
        name,
        Datatype.INT64 if name in NUMERIC_REQUEST_INPUTS else Datatype.BYTES,
        (-1, 1),
    )
    for name in REQUEST_INPUTS
)

#: OIP extensions the REST front end implements.
EXTENSIONS = ("binary_tensor_data",)

#: Request parameter naming each row (e.g. the flight's ``flight_key``), comma-separated;
#: recorded in the payload log so delayed labels can be joined to the predictions.
ROW_IDS_PARAMETER = "row_ids"


class PayloadSink(Protocol):
    """Where prediction records go (``vigie.events.payload_log.PayloadLog``)."""

    def log(self, entry: Callable[[], dict[str, Any]]) -> None:
        """Queue a function building one entry (called later, off the request's path);
        never blocks, never raises."""


class ServingDataPlane:
    """Loaded models, their batching queues and the routing of one worker.

    Args:
        settings: Serving settings (batch limits, device, canary, reload interval).
        registry: The model registry; default: the one under ``settings.registry_dir``.
        payload_log: Where each prediction is recorded; None records nothing.
        enricher: Fills the inputs a request leaves out from the online feature store;
            None: every input is required.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        registry: Registry | None = None,
        payload_log: PayloadSink | None = None,
        enricher: Enricher | None = None,
    ) -> None:
        self._settings = settings
        self._enricher = enricher
        self._lookups = ThreadPoolExecutor(max_workers=4, thread_name_prefix="vigie-features")
        self._registry = registry or Registry(settings)
        self._payload_log = payload_log
        self._executor = ThreadPoolExecutor(
            max_workers=max(2, min(8, os.cpu_count() or 2)), thread_name_prefix="vigie-onnx"
        )
        self.repository = ModelRepository(settings, self._registry, self._executor)
        self.router = Router(canary_share=settings.canary_share, shadow=settings.shadow)
        self._reloader = Reloader(self._registry, self.repository, self.router)
        self._frontends: dict[str, bool] = {}
        self._watcher: asyncio.Task[None] | None = None
        self._mirrors: set[asyncio.Task[None]] = set()
        self._started = False
        self._in_flight = 0  # infer calls in progress in this worker
        self._metric_children: dict[tuple[str, str, str], tuple[Any, Any]] = {}
        self._routed_children: dict[tuple[str, str], Any] = {}

    async def start(self) -> None:
        """Load and warm every production model (staging too for a canary or shadow),
        then watch the registry's aliases every ``reload_interval_s``."""
        logger.info(
            "ONNX Runtime device %s: providers available %s",
            self._settings.device,
            ", ".join(ort.get_available_providers()),
            extra={"device": self._settings.device},
        )
        await self._reloader.refresh()
        self._reloader.expect_current()
        self._started = True
        self._watcher = asyncio.get_running_loop().create_task(
            self._reloader.watch(self._settings.reload_interval_s), name="vigie-reload-watcher"
        )

    async def stop(self) -> None:
        """Stop watching, finish every queued request and unload every model."""
        self._started = False
        if self._watcher is not None:
            self._watcher.cancel()
            await asyncio.gather(self._watcher, return_exceptions=True)
        await asyncio.gather(*self._mirrors, return_exceptions=True)
        await self.repository.close()
        self._executor.shutdown(wait=False, cancel_futures=True)
        self._lookups.shutdown(wait=False, cancel_futures=True)
        if self._enricher is not None:
            self._enricher.close()

    def mark_frontend(self, name: str, serving: bool) -> None:
        """Register a front end (``grpc``) and say whether it serves; readiness needs all."""
        self._frontends[name] = serving

    def live(self) -> bool:
        """The process is up."""
        return True

    def ready(self) -> bool:
        """Every production model is loaded and warmed and every front end serves."""
        return (
            self._started
            and all(self._frontends.values())
            and all(
                self.repository.alias(model, "production") is not None
                for model in self._reloader.expected
            )
        )

    def model_ready(self, name: str, version: str | None = None) -> bool:
        """The model's production version (or the version named) is loaded and warmed."""
        if version is None:
            return self.repository.alias(name, "production") is not None
        return self.repository.get(name, version) is not None

    def server_metadata(self) -> ServerMetadata:
        """Name ``vigie``, the package version and the OIP extensions."""
        try:
            version = importlib.metadata.version("vigie")
        except importlib.metadata.PackageNotFoundError:
            version = "0+unknown"
        return ServerMetadata("vigie", version, EXTENSIONS)

    def model_metadata(self, name: str, version: str | None = None) -> ModelMetadata:
        """The metadata of the production version, or of the version named.

        Raises:
            VigieError: MODEL_NOT_FOUND naming the served models or the missing version.
        """
        metadata = self._metadata(name, version)
        if self._enricher is None:
            return metadata
        enrichable = ENRICHABLE.intersection(spec.name for spec in metadata.inputs)
        return dataclasses.replace(metadata, request_inputs=REQUEST_SPECS, enrichable=enrichable)

    async def enrich(
        self, metadata: ModelMetadata, columns: dict[str, npt.NDArray[Any]], rows: int
    ) -> tuple[dict[str, npt.NDArray[Any]], dict[str, Any] | None]:
        """The model's columns, the ones the request left out filled from the online store
        as of each row's scheduled departure (:class:`vigie.features.online.Enricher`).

        Raises:
            VigieError: INVALID_INPUT naming the keys enrichment needs; UNAVAILABLE when the
                store cannot be read.
        """
        wanted = tuple(spec.name for spec in metadata.inputs)
        if self._enricher is None or all(name in columns for name in wanted):
            return {name: columns[name] for name in wanted if name in columns}, None
        start = time.perf_counter()
        try:
            filled, done = await asyncio.get_running_loop().run_in_executor(
                self._lookups, self._enricher.fill, columns, rows, wanted
            )
        except VigieError:
            raise
        except Exception as err:  # the store's own errors (sqlite3, redis): retry later
            raise VigieError(
                ErrorCode.UNAVAILABLE, f"the online feature store cannot be read: {err}"
            ) from err
        metrics.FEATURE_LOOKUP.labels(self.metric_model(metadata.name)).observe(
            time.perf_counter() - start
        )
        metrics.ENRICHED_ROWS.labels(self.metric_model(metadata.name)).inc(rows)
        for family, count in done.stale.items():
            metrics.FEATURE_STALE_ROWS.labels(family).inc(count)
        for feature, count in done.missing.items():
            metrics.FEATURE_MISSING_VALUES.labels(feature).inc(count)
        for family, age in done.age_s.items():
            metrics.FEATURE_AGE.labels(family).observe(age)
        return filled, done.to_json()

    def _metadata(self, name: str, version: str | None) -> ModelMetadata:
        if version is None:
            current = self.repository.alias(name, "production")
            if current is None:
                raise self._not_found(name)
            loaded = self.repository.get(name, current)
            if loaded is not None:
                metadata = loaded.metadata
                return ModelMetadata(
                    name,
                    self.repository.loaded().get(name, (current,)),
                    metadata.platform,
                    metadata.inputs,
                    metadata.outputs,
                )
        try:
            return self.repository.metadata(name, version or "")
        except VigieError as err:
            if err.code in {ErrorCode.NOT_FOUND, ErrorCode.INVALID_INPUT}:
                raise VigieError(
                    ErrorCode.MODEL_NOT_FOUND, err.message, model=name, version=version
                ) from err
            raise

    def models(self) -> Mapping[str, tuple[str, ...]]:
        """Loaded model names to their loaded version ids."""
        return self.repository.loaded()

    async def infer(self, request: InferRequest) -> InferResult:
        """Route, batch and predict one decoded request; record metrics and the payload.

        Raises:
            VigieError: MODEL_NOT_FOUND, INVALID_INPUT (columns of another version),
                UNAVAILABLE (deadline exceeded), INTERNAL.
        """
        start = time.perf_counter()
        model_label = self.metric_model(request.model)
        version = ""
        self._in_flight += 1
        try:
            ids = request_row_ids(request)
            decision, loaded, outputs = await self._predict(request)
            version = decision.version
        except VigieError as err:
            self.record_failure(request.protocol.value, request.model, err, version=version)
            raise
        finally:
            self._in_flight -= 1
        elapsed = time.perf_counter() - start
        succeeded, duration = self._success_metrics(request.protocol.value, model_label, version)
        succeeded.inc()
        duration.observe(elapsed)
        result = InferResult(request.model, version, request.id, {loaded.onnx.output_name: outputs})
        self._log_payload(request, result, decision.route, elapsed, ids)
        if decision.mirror is not None:
            self._start_mirror(request, decision.mirror, ids)
        return result

    async def _predict(
        self, request: InferRequest
    ) -> tuple[Decision, LoadedVersion, npt.NDArray[np.float32]]:
        for _ in range(3):  # a version unloaded between routing and queueing: route again
            try:
                decision, loaded = await self._select(request)
                _check_columns(loaded, request)
                if self._in_flight == 1:
                    # Requests that arrived with this one get one step to come in; alone
                    # still, it predicts at once rather than queueing for a batch of one.
                    await asyncio.sleep(0)
                    if self._in_flight == 1:
                        now = loaded.batcher.compute_now(request.columns, request.rows)
                        if now is not None:
                            return decision, loaded, now
                future = loaded.batcher.submit(request.columns, request.rows)
            except BatcherClosed:
                continue
            try:
                async with asyncio.timeout(self._settings.request_timeout_s):
                    outputs = await future
            except TimeoutError as err:
                raise VigieError(
                    ErrorCode.UNAVAILABLE,
                    f"no answer within {self._settings.request_timeout_s} s; retry later",
                ) from err
            return decision, loaded, outputs
        raise VigieError(ErrorCode.UNAVAILABLE, f"{request.model} is being reloaded; retry")

    async def _select(self, request: InferRequest) -> tuple[Decision, LoadedVersion]:
        model = request.model
        if request.version is not None:
            self.model_metadata(model, request.version)  # MODEL_NOT_FOUND for unknown ones
            loaded = await self.repository.ensure(model, request.version, pin=True)
            return Decision(request.version, Route.EXPLICIT), loaded
        try:
            decision = self.router.decide(
                model,
                production=self.repository.alias(model, "production"),
                staging=self.repository.alias(model, "staging"),
            )
        except LookupError as err:
            raise self._not_found(model) from err
        self._routed(model, decision.route.value).inc()
        current = self.repository.get(model, decision.version)
        if current is None:
            raise BatcherClosed(f"{model} version {decision.version}")
        return decision, current

    def _start_mirror(self, request: InferRequest, version: str, ids: list[str] | None) -> None:
        task = asyncio.get_running_loop().create_task(self._mirror(request, version, ids))
        self._mirrors.add(task)
        task.add_done_callback(self._mirrors.discard)

    async def _mirror(self, request: InferRequest, version: str, ids: list[str] | None) -> None:
        """Answer a copy of the request from staging; the client never sees it."""
        loaded = self.repository.get(request.model, version)
        if loaded is None:
            return
        start = time.perf_counter()
        try:
            outputs = await loaded.batcher.submit(request.columns, request.rows)
        except Exception as err:  # a shadow never fails the request it copies
            logger.warning("shadow of %s version %s failed: %s", request.model, version, err)
            return
        metrics.ROUTED.labels(request.model, Route.SHADOW.value).inc()
        result = InferResult(request.model, version, request.id, {loaded.onnx.output_name: outputs})
        self._log_payload(request, result, Route.SHADOW, time.perf_counter() - start, ids)

    def _log_payload(
        self,
        request: InferRequest,
        result: InferResult,
        route: Route,
        elapsed: float,
        ids: list[str] | None,
    ) -> None:
        if self._payload_log is None:
            return
        try:
            # Built in the payload log's writer, not here: the request pays for a tuple.
            self._payload_log.log(
                partial(payload_entry, request, result, route, elapsed, row_ids=ids, at=time.time())
            )
        except Exception as err:  # the payload log must never fail a prediction
            logger.warning("payload log refused an entry: %s", err)

    def _success_metrics(self, protocol: str, model: str, version: str) -> tuple[Any, Any]:
        """The labelled success counter and duration histogram, looked up once per labels.

        ``labels()`` takes a lock and hashes its labels on every call; the cache is bounded
        by the served (protocol, model, version) triples.
        """
        key = (protocol, model, version)
        children = self._metric_children.get(key)
        if children is None:
            children = (
                metrics.REQUESTS.labels(protocol, model, version, "success"),
                metrics.REQUEST_DURATION.labels(protocol, model),
            )
            self._metric_children[key] = children
        return children

    def _routed(self, model: str, route: str) -> Any:
        key = (model, route)
        child = self._routed_children.get(key)
        if child is None:
            child = self._routed_children[key] = metrics.ROUTED.labels(model, route)
        return child

    def metric_model(self, model: str) -> str:
        """``model`` if it is served, else a fixed label (clients cannot add label values)."""
        return model if self.repository.serves(model) else UNKNOWN_MODEL

    def record_failure(
        self, protocol: str, model: str, err: VigieError, *, version: str = ""
    ) -> None:
        """Count a failed request (:func:`vigie.serving.inference.serve` and the edges call
        this for what fails before :meth:`infer`, which counts its own)."""
        metrics.count_failure(protocol, self.metric_model(model), err.code.value, version=version)

    def _not_found(self, name: str) -> VigieError:
        served = ", ".join(sorted(self.repository.aliases())) or "none"
        return VigieError(
            ErrorCode.MODEL_NOT_FOUND,
            f"model {name!r} is not served (models in production: {served})",
            model=name,
        )


def _check_columns(loaded: LoadedVersion, request: InferRequest) -> None:
    expected = {spec.name for spec in loaded.metadata.inputs}
    if set(request.columns) != expected:
        missing = sorted(expected - set(request.columns))
        extra = sorted(set(request.columns) - expected)
        raise VigieError(
            ErrorCode.INVALID_INPUT,
            f"{loaded.model} version {loaded.version} expects inputs {', '.join(sorted(expected))}"
            f" (missing: {', '.join(missing) or '-'}; not inputs: {', '.join(extra) or '-'})",
            input=(missing or extra)[0],
        )


def request_row_ids(request: InferRequest) -> list[str] | None:
    """The ids the request gave its rows in its ``row_ids`` parameter, or None without one.

    The parameter is one string of comma-separated ids, one per row, in row order (the
    replay sends each flight's ``flight_key``). Checked before predicting, so a request
    whose ids cannot be trusted is refused rather than logged unjoinable; one ``split``,
    nothing per row in Python.

    Raises:
        VigieError: INVALID_INPUT naming the parameter when it is not a string, has an
            empty id, or has not exactly one id per row.
    """
    raw = request.parameters.get(ROW_IDS_PARAMETER)
    if raw is None:
        return None
    if not isinstance(raw, str):
        raise VigieError(
            ErrorCode.INVALID_INPUT,
            f"parameter {ROW_IDS_PARAMETER!r} must be a string of comma-separated ids, one "
            f"per row; got {type(raw).__name__}",
            parameter=ROW_IDS_PARAMETER,
        )
    ids = raw.split(",")
    if len(ids) != request.rows:
        raise VigieError(
            ErrorCode.INVALID_INPUT,
            f"parameter {ROW_IDS_PARAMETER!r} has {len(ids)} ids for {request.rows} rows; "
            "expected one comma-separated id per row",
            parameter=ROW_IDS_PARAMETER,
            expected=request.rows,
        )
    if "" in ids:
        raise VigieError(
            ErrorCode.INVALID_INPUT,
            f"parameter {ROW_IDS_PARAMETER!r} has an empty id (row {ids.index('')}); "
            "expected one non-empty id per row",
            parameter=ROW_IDS_PARAMETER,
        )
    return ids


def payload_entry(
    request: InferRequest,
    result: InferResult,
    route: Route,
    elapsed: float,
    *,
    row_ids: list[str] | None = None,
    at: float | None = None,
) -> dict[str, Any]:
    """The payload-log record of one answer.

    Inputs and outputs stay numpy columns: :func:`~vigie.events.payload_entry.encode_entry`
    writes them as JSON lists, NaN as null. ``at`` is when the answer was given
    (``time.time()``; default now). ``row_ids`` (from :func:`request_row_ids`) is recorded
    only when the request named its rows.
    """
    when = datetime.now(UTC) if at is None else datetime.fromtimestamp(at, UTC)
    entry: dict[str, Any] = {
        "request_id": request.id,
        "time": when.isoformat(),
        "protocol": request.protocol.value,
        "model": result.model,
        "version": result.version,
        "route": route.value,
        "rows": request.rows,
        "inputs": dict(request.columns),
        "outputs": dict(result.outputs),
        "latency_ms": round(elapsed * 1000.0, 3),
        "caller": request.caller,
    }
    if row_ids is not None:
        entry["row_ids"] = row_ids
    if request.enrichment is not None:
        entry["enrichment"] = request.enrichment
    return entry
