"""The typed ``POST /predict`` edge: flights by feature name in, one prediction each out.

BentoML serves the route (``vigie.serving.service`` declares it); everything it
does is here. :class:`AuthenticateFirst` checks the API key before BentoML reads and
validates the body, so a caller without a valid key learns nothing about the schema: it
gets 401 (or 403) whatever it sent, as on OIP REST and gRPC. :func:`predict_flights` then
turns the flights into the model's input tensors, decodes them with the codec every edge
shares and awaits the data plane.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from pydantic import BaseModel, Field, create_model

from vigie.errors import ErrorCode, VigieError
from vigie.features.catalogue import CATALOGUE, FeatureKind
from vigie.serving import codec, metrics
from vigie.serving.guards import ASGIApp, Receive, Scope, Send, answer
from vigie.serving.inference import Call, serve
from vigie.serving.rest import RestContext, bearer
from vigie.serving.status import http_status
from vigie.serving.types import Datatype, ModelMetadata, Protocol_, RawTensor, new_request_id

#: Where :class:`AuthenticateFirst` leaves the caller id in the ASGI scope's ``state``.
CALLER_STATE = "vigie_caller"
#: The role ``/predict`` needs.
ROLE = "predict"


def flight_model() -> type[BaseModel]:
    """One flight as ``/predict`` takes it: every catalogue feature by name; null or absent
    means missing (the model imputes it; an unknown category is not an error)."""
    fields: dict[str, Any] = {
        name: (
            (str | None) if feature.kind is FeatureKind.CATEGORICAL else (float | None),
            Field(default=None, description=feature.description),
        )
        for name, feature in CATALOGUE.items()
    }
    model: type[BaseModel] = create_model(
        "Flight",
        __doc__="A flight before departure: schedule, aircraft and weather at the origin.",
        **fields,
    )
    return model


class PredictResponse(BaseModel):
    """The predictions of ``/predict``, one per flight, and who made them."""

    model: str = Field(description="The model that answered.")
    version: str = Field(description="The model version that answered.")
    output: str = Field(description="What the values are: probability or delay_minutes.")
    request_id: str = Field(description="The id of this request in the payload log.")
    predictions: list[float | None] = Field(description="One value per flight, in order.")


class AuthenticateFirst:
    """Authenticate POSTs to ``paths`` from their ``Authorization`` header before the app
    reads the body; a refusal is answered here with its status and ``{"error": message}``.

    The caller id is left in ``scope["state"][CALLER_STATE]`` for the route.

    Args:
        app: The wrapped ASGI application.
        context: Returns the worker's context (None while the worker starts: 503).
        paths: Exact request paths guarded (``("/predict",)``).
    """

    def __init__(
        self, app: ASGIApp, *, context: Callable[[], RestContext | None], paths: tuple[str, ...]
    ) -> None:
        self.app = app
        self.context = context
        self.paths = frozenset(paths)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST" and scope["path"] in self.paths:
            context = self.context()
            try:
                caller = authenticate_scope(context, scope)
            except VigieError as err:
                if context is not None:
                    context.dataplane.record_failure(Protocol_.PREDICT.value, "", err)
                await _refuse(send, err)
                return
            scope.setdefault("state", {})[CALLER_STATE] = caller
        await self.app(scope, receive, send)


def authenticate_scope(context: RestContext | None, scope: Scope) -> str | None:
    """The caller id of a request's ``Authorization`` header (None without authentication).

    Raises:
        VigieError: UNAVAILABLE while the worker starts; UNAUTHENTICATED or FORBIDDEN.
    """
    if context is None:
        raise VigieError(ErrorCode.UNAVAILABLE, "the service is starting; retry")
    if context.authenticate is None:
        return None
    header = next(
        (bytes(v).decode("latin-1") for k, v in scope.get("headers", []) if k == b"authorization"),
        None,
    )
    token = bearer(header)
    try:
        return context.authenticate(token, ROLE, Protocol_.PREDICT.value)
    except VigieError as err:
        metrics.count_auth_failure(
            Protocol_.PREDICT.value,
            forbidden=err.code is ErrorCode.FORBIDDEN,
            token_given=token is not None,
        )
        raise


async def _refuse(send: Send, err: VigieError) -> None:
    headers: list[tuple[bytes, bytes]] = []
    if err.code is ErrorCode.UNAUTHENTICATED:
        headers.append((b"www-authenticate", b"Bearer"))
    await answer(send, http_status(err.code), err.message, headers=headers)


def caller_of(scope: Scope, context: RestContext) -> str | None:
    """The caller :class:`AuthenticateFirst` found, or authenticate now if it did not run
    (a route reached another way is never let through unauthenticated)."""
    state: dict[str, Any] = scope.get("state") or {}
    if CALLER_STATE in state:
        caller: str | None = state[CALLER_STATE]
        return caller
    return authenticate_scope(context, scope)


async def predict_flights(
    context: RestContext, model: str, flights: Sequence[BaseModel], *, caller: str | None
) -> PredictResponse:
    """Predict ``model`` for each flight with its production version, through the one
    inference sequence (:func:`vigie.serving.inference.serve`).

    Raises:
        VigieError: MODEL_NOT_FOUND, INVALID_INPUT naming the field, UNAVAILABLE, INTERNAL.
    """
    settings = context.settings

    def decode(metadata: ModelMetadata) -> tuple[dict[str, Any], int]:
        tensors = [
            RawTensor(
                spec.name,
                spec.datatype.value if spec.datatype is Datatype.BYTES else Datatype.FP64.value,
                (len(flights),),
                _values([getattr(f, spec.name, None) for f in flights]),
            )
            for spec in metadata.inputs
        ]
        return codec.decode_inputs(
            metadata,
            tensors,
            max_rows=settings.max_request_rows,
            max_string_length=settings.max_string_length,
        )

    call = Call(Protocol_.PREDICT, model, caller=caller, request_id=new_request_id())
    result = await serve(context.dataplane, call, decode)
    output, values = next(iter(result.outputs.items()))
    return PredictResponse(
        model=result.model,
        version=result.version,
        output=output,
        request_id=result.id,
        predictions=[float(v) for v in values],
    )


def _values(items: list[Any]) -> Any:
    values = np.empty(len(items), dtype=object)
    values[:] = items
    return values
