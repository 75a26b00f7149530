"""A small synchronous OIP v2 client for vigie's own tools (the replay), REST or gRPC.

Any OIP v2 client works against vigie (``tritonclient`` is tested); this one exists so
that tools need no extra dependency and speak vigie's error vocabulary: every failure is
a :class:`VigieError` whose code says what happened, ``UNAVAILABLE`` meaning "worth
retrying" (connection refused or reset, timeout, HTTP 429/502/503/504, gRPC
``UNAVAILABLE``/``RESOURCE_EXHAUSTED``/``DEADLINE_EXCEEDED``). Clients are thread-safe:
one is shared by the replay's worker threads.

REST sends JSON tensors (``null`` for a missing value); gRPC sends ``raw_input_contents``
(little-endian FP32, length-prefixed UTF-8 BYTES with ``""`` for a missing category,
which the models read as missing too).
"""

from __future__ import annotations

import json
import os
import struct
from collections.abc import Mapping
from typing import Any, Literal, Protocol

import grpc
import httpx
import numpy as np
import numpy.typing as npt

from vigie.config import Settings
from vigie.errors import ErrorCode, VigieError
from vigie.serving.proto import grpc_predict_v2_pb2 as pb
from vigie.serving.proto import grpc_predict_v2_pb2_grpc as pb_grpc

Columns = Mapping[str, npt.NDArray[Any]]

_HTTP_CODES = {
    400: ErrorCode.INVALID_INPUT,
    401: ErrorCode.UNAUTHENTICATED,
    403: ErrorCode.FORBIDDEN,
    404: ErrorCode.MODEL_NOT_FOUND,
    409: ErrorCode.CONFLICT,
    413: ErrorCode.INVALID_INPUT,
    429: ErrorCode.UNAVAILABLE,
    502: ErrorCode.UNAVAILABLE,
    503: ErrorCode.UNAVAILABLE,
    504: ErrorCode.UNAVAILABLE,
}
_GRPC_CODES = {
    "INVALID_ARGUMENT": ErrorCode.INVALID_INPUT,
    "NOT_FOUND": ErrorCode.MODEL_NOT_FOUND,
    "UNAUTHENTICATED": ErrorCode.UNAUTHENTICATED,
    "PERMISSION_DENIED": ErrorCode.FORBIDDEN,
    "UNAVAILABLE": ErrorCode.UNAVAILABLE,
    "RESOURCE_EXHAUSTED": ErrorCode.UNAVAILABLE,
    "DEADLINE_EXCEEDED": ErrorCode.UNAVAILABLE,
}
_LENGTH = struct.Struct("<I")


class InferClient(Protocol):
    """What a tool needs from the service."""

    def model_inputs(self, model: str) -> tuple[str, ...]:
        """The input names of the model's production version (its metadata)."""

    def infer(
        self, model: str, request_id: str, columns: Columns, parameters: Mapping[str, str]
    ) -> int:
        """Ask for predictions of N rows; returns N once answered. Raises VigieError."""

    def close(self) -> None:
        """Release connections."""


class RestClient:
    """OIP v2 over HTTP/JSON (``POST /v2/models/{model}/infer``).

    Args:
        url: The service, e.g. ``http://127.0.0.1:3000``.
        key: An API key with the ``predict`` role.
        timeout_s: Per request.
        connections: Kept-alive connections (at least the number of threads using it).
        transport: An httpx transport instead of the network (tests).
    """

    def __init__(
        self,
        url: str,
        key: str,
        *,
        timeout_s: float = 10.0,
        connections: int = 8,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.target = url.rstrip("/")
        limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
        self._http = httpx.Client(
            base_url=self.target,
            headers={"authorization": f"Bearer {key}"},
            timeout=timeout_s,
            limits=limits,
            transport=transport,
        )

    def model_inputs(self, model: str) -> tuple[str, ...]:
        """``GET /v2/models/{model}``'s input names."""
        document = self._call("GET", f"/v2/models/{model}", None)
        return tuple(str(spec["name"]) for spec in document.get("inputs", []))

    def infer(
        self, model: str, request_id: str, columns: Columns, parameters: Mapping[str, str]
    ) -> int:
        """One JSON inference request; returns the number of rows answered."""
        rows = len(next(iter(columns.values())))
        body = {
            "id": request_id,
            "inputs": [_json_tensor(name, column) for name, column in columns.items()],
            "parameters": dict(parameters),
        }
        document = self._call("POST", f"/v2/models/{model}/infer", json.dumps(body).encode())
        if not document.get("outputs"):
            raise VigieError(ErrorCode.INTERNAL, f"{model} answered without outputs")
        return rows

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    def _call(self, method: str, path: str, content: bytes | None) -> dict[str, Any]:
        headers = {"content-type": "application/json"} if content is not None else None
        try:
            response = self._http.request(method, path, content=content, headers=headers)
        except httpx.TransportError as err:
            raise VigieError(
                ErrorCode.UNAVAILABLE, f"{self.target}{path}: {type(err).__name__}: {err}"
            ) from err
        if response.status_code != httpx.codes.OK:
            raise _http_error(path, response)
        try:
            document = response.json()
        except ValueError as err:
            raise VigieError(ErrorCode.INTERNAL, f"{path} did not answer JSON: {err}") from err
        if not isinstance(document, dict):
            raise VigieError(ErrorCode.INTERNAL, f"{path} did not answer a JSON object")
        return document


def _json_tensor(name: str, column: npt.NDArray[Any]) -> dict[str, Any]:
    if column.dtype == object:
        return {"name": name, "datatype": "BYTES", "shape": [len(column)], "data": column.tolist()}
    values = column.tolist()
    if np.isnan(column).any():  # JSON has no NaN: a missing number is null
        values = [None if np.isnan(v) else v for v in values]
    return {"name": name, "datatype": "FP32", "shape": [len(column)], "data": values}


def _http_error(path: str, response: httpx.Response) -> VigieError:
    try:
        message = str(response.json().get("error", response.text))
    except ValueError:
        message = response.text[:200]
    code = _HTTP_CODES.get(response.status_code, ErrorCode.INTERNAL)
    return VigieError(code, f"{path}: HTTP {response.status_code}: {message}")


class GrpcClient:
    """OIP v2 over gRPC (``inference.GRPCInferenceService``), raw tensor contents.

    Args:
        target: ``host:port`` of the gRPC front end, e.g. ``127.0.0.1:8001``.
        key: An API key with the ``predict`` role.
        timeout_s: Per call.
    """

    def __init__(self, target: str, key: str, *, timeout_s: float = 10.0) -> None:
        self.target = target
        self._channel = grpc.insecure_channel(target)
        self._stub = pb_grpc.GRPCInferenceServiceStub(self._channel)  # type: ignore[no-untyped-call]
        self._metadata = (("authorization", f"Bearer {key}"),)
        self._timeout = timeout_s

    def model_inputs(self, model: str) -> tuple[str, ...]:
        """``ModelMetadata``'s input names."""
        response = self._call("ModelMetadata", pb.ModelMetadataRequest(name=model))
        return tuple(str(tensor.name) for tensor in response.inputs)

    def infer(
        self, model: str, request_id: str, columns: Columns, parameters: Mapping[str, str]
    ) -> int:
        """One ``ModelInfer`` call with raw inputs; returns the number of rows answered."""
        rows = len(next(iter(columns.values())))
        request = pb.ModelInferRequest(model_name=model, id=request_id)
        for name, column in columns.items():
            strings = column.dtype == object
            request.inputs.add(name=name, datatype="BYTES" if strings else "FP32", shape=[rows])
            request.raw_input_contents.append(_raw_strings(column) if strings else _raw(column))
        for key, value in parameters.items():
            request.parameters[key].string_param = value
        response = self._call("ModelInfer", request)
        if not response.outputs:
            raise VigieError(ErrorCode.INTERNAL, f"{model} answered without outputs")
        return rows

    def close(self) -> None:
        """Close the channel."""
        self._channel.close()

    def _call(self, method: str, request: Any) -> Any:
        try:
            return getattr(self._stub, method)(
                request, timeout=self._timeout, metadata=self._metadata
            )
        except grpc.RpcError as err:
            status = err.code().name if isinstance(err, grpc.Call) else "UNKNOWN"
            details = err.details() if isinstance(err, grpc.Call) else str(err)
            code = _GRPC_CODES.get(status, ErrorCode.INTERNAL)
            raise VigieError(code, f"{self.target} {method}: {status}: {details}") from err


def _raw(column: npt.NDArray[Any]) -> bytes:
    return np.ascontiguousarray(column, dtype="<f4").tobytes()


def _raw_strings(column: npt.NDArray[Any]) -> bytes:
    parts: list[bytes] = []
    for value in column.tolist():
        encoded = b"" if value is None else str(value).encode("utf-8")
        parts += (_LENGTH.pack(len(encoded)), encoded)
    return b"".join(parts)


def open_client(
    protocol: Literal["rest", "grpc"],
    *,
    url: str,
    grpc_target: str,
    key: str,
    timeout_s: float = 10.0,
    connections: int = 8,
) -> InferClient:
    """A REST or gRPC client.

    Raises:
        VigieError: INVALID_INPUT for an unknown protocol.
    """
    if protocol == "rest":
        return RestClient(url, key, timeout_s=timeout_s, connections=connections)
    if protocol == "grpc":
        return GrpcClient(grpc_target, key, timeout_s=timeout_s)
    raise VigieError(
        ErrorCode.INVALID_INPUT,
        f"protocol {protocol!r} is not rest or grpc",
        field="protocol",
    )


def local_predict_key(settings: Settings) -> str | None:
    """The predict key ``vigie serve`` generated in ``<home>/secrets/api_keys.local``, if any."""
    return local_key(settings, "predict")


def local_key(settings: Settings, role: str) -> str | None:
    """The key of ``role`` (``predict`` or ``admin``) that local mode generated, if any."""
    prefix = f"VIGIE_{role.upper()}_KEY="
    path = settings.secrets_dir / "api_keys.local"
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        if line.startswith(prefix):
            return line.removeprefix(prefix).strip() or None
    return None


#: The variable holding the caller's API key, for commands that need a permission.
API_KEY_VARIABLE = "VIGIE_API_KEY"


def operator_key(settings: Settings) -> str | None:
    """The key a command presents to the sidecar or the service's admin routes:
    ``VIGIE_API_KEY``, else the admin key local mode generated."""
    return os.environ.get(API_KEY_VARIABLE, "").strip() or local_key(settings, "admin")
