"""The OIP v2 gRPC front end: ``inference.GRPCInferenceService`` over the worker's data plane.

The servicer only translates protobuf to the data plane's vocabulary and back
(:mod:`vigie.serving.grpc_codec`), validates tensors with the same
:mod:`vigie.serving.codec` as REST, and maps VigieError codes to gRPC statuses with the
one table in :mod:`vigie.serving.status`. Health checking (``grpc.health.v1``, following
``dataplane.ready()``) and server reflection are served on the same port.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from vigie.config import Settings
from vigie.errors import ErrorCode, VigieError
from vigie.serving import grpc_codec
from vigie.serving.codec import decode_inputs, encode_outputs
from vigie.serving.fast_decode import decode_raw_inputs
from vigie.serving.grpc_interceptors import (
    ServingInterceptor,
    current_call,
    refuse,
    refuse_error,
)
from vigie.serving.inference import Call, serve
from vigie.serving.proto import grpc_predict_v2_pb2 as pb
from vigie.serving.proto import grpc_predict_v2_pb2_grpc as pb_grpc
from vigie.serving.types import DataPlane, ModelMetadata, Protocol_, new_request_id

#: Full name of the inference service.
SERVICE_NAME = "inference.GRPCInferenceService"

#: Name the data plane knows this front end by (``mark_frontend``).
FRONTEND = "grpc"

#: How often health status follows ``dataplane.ready()``, in seconds.
HEALTH_POLL_S = 1.0

_log = logging.getLogger(__name__)


class InferenceServicer(pb_grpc.GRPCInferenceServiceServicer):
    """The six OIP v2 methods over one data plane.

    Args:
        dataplane: The worker's data plane.
        settings: Limits (``max_request_rows``, ``max_string_length``, ``max_body_bytes``).
    """

    def __init__(self, dataplane: DataPlane, settings: Settings) -> None:
        self._dataplane = dataplane
        #: ``max_rows`` and ``max_string_length`` of both decoding paths.
        self._limits = {
            "max_rows": settings.max_request_rows,
            "max_string_length": settings.max_string_length,
        }
        self._max_body_bytes = settings.max_body_bytes

    async def ServerLive(self, request: pb.ServerLiveRequest, context: Any) -> Any:
        """Liveness."""
        return pb.ServerLiveResponse(live=self._dataplane.live())

    async def ServerReady(self, request: pb.ServerReadyRequest, context: Any) -> Any:
        """Readiness of the whole server."""
        return pb.ServerReadyResponse(ready=self._dataplane.ready())

    async def ModelReady(self, request: pb.ModelReadyRequest, context: Any) -> Any:
        """Readiness of one model (version); an unknown model is NOT_FOUND."""
        try:
            self._dataplane.model_metadata(request.name, request.version or None)
            ready = self._dataplane.model_ready(request.name, request.version or None)
        except VigieError as err:
            await refuse_error(context, err)
        return pb.ModelReadyResponse(ready=ready)

    async def ServerMetadata(self, request: pb.ServerMetadataRequest, context: Any) -> Any:
        """Server name, version and extensions."""
        return grpc_codec.server_metadata_to_proto(self._dataplane.server_metadata())

    async def ModelMetadata(self, request: pb.ModelMetadataRequest, context: Any) -> Any:
        """A model's metadata; an unknown model or version is NOT_FOUND."""
        state = current_call()
        if state is not None:
            state.model = request.name
        try:
            metadata = self._dataplane.model_metadata(request.name, request.version or None)
        except VigieError as err:
            await refuse_error(context, err)
        return grpc_codec.model_metadata_to_proto(metadata)

    async def ModelInfer(self, request: pb.ModelInferRequest, context: Any) -> Any:
        """One inference; bad input is INVALID_ARGUMENT naming the input."""
        try:
            return await self._infer(request)
        except VigieError as err:
            await refuse_error(context, err)
        except (asyncio.CancelledError, grpc.aio.AbortError):
            raise
        except Exception:
            # A bug, not a bad request: the client gets a status, never a stack trace.
            _log.exception("ModelInfer failed", extra={"model": request.model_name})
            await refuse(context, grpc.StatusCode.INTERNAL, "internal error; see the server log")

    async def _infer(self, request: pb.ModelInferRequest) -> pb.ModelInferResponse:
        state = current_call()
        request_id = request.id or new_request_id()
        if state is not None:
            state.model, state.request_id = request.model_name, request_id
        self._check_request(request)
        parameters = grpc_codec.parameters_from_proto(request.parameters)
        limits = self._limits

        def decode(metadata: ModelMetadata) -> tuple[dict[str, Any], int]:
            decoded = decode_raw_inputs(request, metadata, **limits)
            # anything unusual: the general path decodes it or says why not
            return decoded or decode_inputs(
                metadata, grpc_codec.tensors_from_request(request), **limits
            )

        requested = [output.name for output in request.outputs] or None
        call = Call(
            Protocol_.V2_GRPC,
            request.model_name,
            request.model_version or None,
            state.caller if state is not None else None,
            request_id,
            requested,
            parameters,
        )
        if state is not None:
            state.counted = True  # from here on serve and the data plane count the request
        result = await serve(self._dataplane, call, decode)
        if state is not None:
            state.version = result.version
        return grpc_codec.build_response(
            model=result.model,
            version=result.version,
            request_id=result.id,
            outputs=encode_outputs(result, requested),
            parameters=result.parameters,
            raw=grpc_codec.wants_raw_output(request, parameters),
        )

    def _check_request(self, request: pb.ModelInferRequest) -> None:
        if not request.model_name:
            raise VigieError(ErrorCode.INVALID_INPUT, "model_name is required")
        size = request.ByteSize()
        if size > self._max_body_bytes:
            raise VigieError(
                ErrorCode.INVALID_INPUT,
                f"the request is {size} bytes; the limit is {self._max_body_bytes} bytes",
                limit=self._max_body_bytes,
            )


@dataclass
class GrpcHandle:
    """A running gRPC front end.

    Attributes:
        port: The bound port (the ephemeral one when ``grpc_port`` was 0).
    """

    port: int
    _server: Any = field(repr=False)
    _dataplane: DataPlane = field(repr=False)
    _health: Any = field(repr=False)
    _watcher: asyncio.Task[None] = field(repr=False)

    async def stop(self, grace: float = 5.0) -> None:
        """Report NOT_SERVING, then stop, letting calls in flight finish for ``grace`` s."""
        _mark_frontend(self._dataplane, serving=False)
        self._watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._watcher
        await self._health.enter_graceful_shutdown()
        await self._server.stop(grace)


def _mark_frontend(dataplane: DataPlane, *, serving: bool) -> None:
    dataplane.mark_frontend(FRONTEND, serving)


def _address(host: str, port: int) -> str:
    if ":" in host and not host.startswith("["):
        return f"[{host}]:{port}"
    return f"{host}:{port}"


def _interceptor(
    dataplane: DataPlane,
    settings: Settings,
    authenticate: Callable[[str | None, str, str], str] | None,
) -> ServingInterceptor:
    return ServingInterceptor(
        dataplane.metric_model,
        limit=settings.grpc_max_concurrency,
        timeout_s=settings.request_timeout_s,
        authenticate=authenticate,
    )


class _Captured:
    """Stands in for a server to collect the handlers the generated code registers."""

    def __init__(self) -> None:
        self.handlers: dict[str, Any] = {}

    def add_generic_rpc_handlers(self, handlers: Any) -> None:
        """Ignored: the same handlers come by :meth:`add_registered_method_handlers`."""

    def add_registered_method_handlers(self, service: str, handlers: dict[str, Any]) -> None:
        """Keep the service's method handlers."""
        self.handlers = dict(handlers)


def _add_inference_service(server: Any, servicer: Any, interceptor: ServingInterceptor) -> None:
    """Register the inference service with the interceptor's work around every method."""
    captured = _Captured()
    pb_grpc.add_GRPCInferenceServiceServicer_to_server(servicer, captured)  # type: ignore[no-untyped-call]
    handlers = interceptor.wrap_handlers(captured.handlers)
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE_NAME, handlers),))
    server.add_registered_method_handlers(SERVICE_NAME, handlers)


def _bind(server: Any, address: str) -> int:
    try:
        port = int(server.add_insecure_port(address))
    except RuntimeError as err:
        raise VigieError(
            ErrorCode.UNAVAILABLE, f"the gRPC server could not bind {address}: {err}"
        ) from err
    if port == 0:
        raise VigieError(ErrorCode.UNAVAILABLE, f"the gRPC server could not bind {address}")
    return port


async def _follow_readiness(dataplane: DataPlane, servicer: Any) -> None:
    serving = health_pb2.HealthCheckResponse.SERVING
    not_serving = health_pb2.HealthCheckResponse.NOT_SERVING
    last: int | None = None
    while True:
        try:
            status = serving if dataplane.ready() else not_serving
        except Exception:
            _log.exception("dataplane.ready() failed; gRPC health says NOT_SERVING")
            status = not_serving
        if status != last:
            await servicer.set("", status)
            await servicer.set(SERVICE_NAME, status)
            last = status
        await asyncio.sleep(HEALTH_POLL_S)


async def start_grpc(
    dataplane: DataPlane,
    settings: Settings,
    *,
    authenticate: Callable[[str | None, str, str], str] | None = None,
) -> GrpcHandle:
    """Start the OIP v2 gRPC server on ``settings.host:settings.grpc_port``.

    Must be awaited in the event loop that will serve it (the worker's). Once bound, the
    data plane is told the gRPC front end is serving (``mark_frontend``, when it has one).

    Args:
        dataplane: The worker's data plane.
        settings: Host, port, limits, concurrency and timeout.
        authenticate: ``(token, role, protocol) -> caller id`` raising VigieError
            (``Authenticator.check``); None serves without authentication.

    Returns:
        A handle with the bound port and ``stop``.

    Raises:
        VigieError: UNAVAILABLE when the address cannot be bound.
    """
    # Messages up to twice the body limit are read so that the servicer can refuse the
    # ones above it with INVALID_ARGUMENT; gRPC itself refuses anything larger.
    message_limit = 2 * settings.max_body_bytes
    server = grpc.aio.server(
        options=[
            ("grpc.max_receive_message_length", message_limit),
            ("grpc.max_send_message_length", message_limit),
        ],
    )
    servicer = InferenceServicer(dataplane, settings)
    _add_inference_service(server, servicer, _interceptor(dataplane, settings, authenticate))
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        (SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME), server
    )
    port = _bind(server, _address(settings.host, settings.grpc_port))
    await server.start()
    watcher = asyncio.create_task(_follow_readiness(dataplane, health_servicer))
    _mark_frontend(dataplane, serving=True)
    _log.info(
        "gRPC serving %s on %s", SERVICE_NAME, _address(settings.host, port), extra={"port": port}
    )
    return GrpcHandle(port, server, dataplane, health_servicer, watcher)
