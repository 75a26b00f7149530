"""The serving data plane's own vocabulary, shared by every front end.

Front ends (BentoML's ``/predict``, OIP v2 REST, OIP v2 gRPC) only translate their wire
format into an :class:`InferRequest`, call the one :class:`DataPlane` of their worker, and
translate the :class:`InferResult` back. Nothing here knows HTTP, JSON or protobuf.
"""

from __future__ import annotations

import enum
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from vigie.errors import VigieError


class Protocol_(enum.StrEnum):
    """How a request arrived (a label on metrics, access logs and the payload log)."""

    PREDICT = "rest"  # BentoML's typed /predict
    V2_REST = "v2-rest"
    V2_GRPC = "v2-grpc"


class Datatype(enum.StrEnum):
    """OIP v2 tensor datatypes vigie accepts."""

    BYTES = "BYTES"
    FP32 = "FP32"
    FP64 = "FP64"
    INT64 = "INT64"
    INT32 = "INT32"
    BOOL = "BOOL"


@dataclass(frozen=True)
class TensorSpec:
    """One input or output of a model, as metadata advertises it (batch axis is -1)."""

    name: str
    datatype: Datatype
    shape: tuple[int, ...]


@dataclass(frozen=True)
class ModelMetadata:
    """What ``/v2/models/{name}[/versions/{v}]`` returns."""

    name: str
    versions: tuple[str, ...]
    platform: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    #: Inputs a request may send that the model does not take (``sched_dep``, ``tailnum``):
    #: the keys from which the service fills the inputs of ``enrichable``.
    request_inputs: tuple[TensorSpec, ...] = ()
    #: Model inputs a request may leave out: the service fills them from its online store.
    enrichable: frozenset[str] = frozenset()


@dataclass(frozen=True)
class ServerMetadata:
    """What ``/v2`` returns."""

    name: str
    version: str
    extensions: tuple[str, ...] = ()


@dataclass(frozen=True)
class RawTensor:
    """A tensor as a front end decoded it, before validation against the model.

    REST builds it from the OIP JSON tensor, gRPC from ``ModelInferRequest`` (typed
    ``contents`` or ``raw_input_contents``); :mod:`vigie.serving.codec` validates it.
    """

    name: str
    datatype: str
    shape: tuple[int, ...]
    data: npt.NDArray[Any]


@dataclass
class InferRequest:
    """One inference request, decoded from any protocol.

    Attributes:
        model: Model name.
        version: An explicit version id, or None for the routed default (production, with
            canary or shadow to staging when configured).
        id: The client's request id, echoed in the result (generated when absent).
        columns: Feature name to a 1-D array of N values (object dtype of ``str`` or None
            for string features, float32 with NaN for missing numerics).
        rows: N, the number of rows (the batch).
        outputs: Output names the client asked for; None means all.
        parameters: OIP ``parameters`` of the request.
        protocol: Which front end decoded it.
        caller: Who asked (the API key's id; pseudonymised before logging).
    """

    model: str
    version: str | None
    id: str
    columns: dict[str, npt.NDArray[Any]]
    rows: int
    outputs: list[str] | None = None
    parameters: dict[str, Any] = field(default_factory=dict)
    protocol: Protocol_ = Protocol_.V2_REST
    caller: str | None = None
    #: What the service filled from its online store (:class:`vigie.features.online.Enrichment`).
    enrichment: dict[str, Any] | None = None


@dataclass
class InferResult:
    """The answer: which version answered, and one array of N values per output."""

    model: str
    version: str
    id: str
    outputs: dict[str, npt.NDArray[np.float32]]
    parameters: dict[str, Any] = field(default_factory=dict)


class DataPlane(Protocol):
    """The one object per worker that owns loaded models, sessions and batching queues."""

    async def infer(self, request: InferRequest) -> InferResult:
        """Validate, batch, predict, log. Raises VigieError (INVALID_INPUT, MODEL_NOT_FOUND,
        UNAVAILABLE) with a message naming the input and what was expected."""

    def live(self) -> bool:
        """The process is up (liveness)."""

    def ready(self) -> bool:
        """Every production model is loaded and warmed, and every front end is serving."""

    def model_ready(self, name: str, version: str | None = None) -> bool:
        """The model (version) is loaded and warmed."""

    def server_metadata(self) -> ServerMetadata:
        """Server name, version and extensions."""

    def model_metadata(self, name: str, version: str | None = None) -> ModelMetadata:
        """A model's metadata; raises VigieError MODEL_NOT_FOUND."""

    async def enrich(
        self, metadata: ModelMetadata, columns: dict[str, npt.NDArray[Any]], rows: int
    ) -> tuple[dict[str, npt.NDArray[Any]], dict[str, Any] | None]:
        """The model's columns, those a request left out filled from the online store, and
        what was filled (None when nothing was). Raises VigieError INVALID_INPUT naming
        what enrichment needs, UNAVAILABLE when the store cannot be read."""

    def models(self) -> Mapping[str, tuple[str, ...]]:
        """Loaded model names to their loaded versions."""

    def metric_model(self, model: str) -> str:
        """The metric label of a model name: itself if served, else one fixed label."""

    def record_failure(
        self, protocol: str, model: str, err: VigieError, *, version: str = ""
    ) -> None:
        """Count a request refused before it reached :meth:`infer`."""

    def mark_frontend(self, name: str, serving: bool) -> None:
        """Register a front end and whether it serves (readiness needs every one)."""


def new_request_id() -> str:
    """A request id for a client that sent none: 32 random hex digits.

    As unique as ``uuid.uuid4().hex`` (128 random bits rather than 122), without building a
    UUID object: 0.6 against 4.6 µs here.
    """
    return os.urandom(16).hex()
