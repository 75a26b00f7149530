"""The one inference sequence under every edge (``/predict``, OIP REST, OIP gRPC).

An edge parses its wire format and authenticates the caller first; then it hands
:func:`serve` what it parsed, as a :class:`Call` and a decoder from the model's metadata to
feature columns. :func:`serve` does the rest in one order, whatever the protocol:

1. the model version's metadata (MODEL_NOT_FOUND for an unknown model or version);
2. decode and validate every input against it (:mod:`vigie.serving.codec`, or an edge's
   fast path that gives the same columns or hands over to it): names, types, shapes, row
   counts, finite numbers, valid Unicode strings within the length limit;
3. the outputs asked for;
4. the inputs the request left out, filled from the online feature store
   (:meth:`~vigie.serving.dataplane.ServingDataPlane.enrich`);
5. the data plane's :meth:`~vigie.serving.dataplane.ServingDataPlane.infer`: route
   (production, canary, shadow), batch, predict, count the success and log the payload.

A request refused in steps 1-4 is counted here, once; one refused in step 4 is counted by
the data plane; one refused by the edge before (no key, a body too large or not parsable)
is counted by the edge with the same function (:meth:`DataPlane.record_failure`). A
request that fails validation therefore never reaches a batch.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy.typing as npt

from vigie.errors import ErrorCode, VigieError
from vigie.serving.types import (
    DataPlane,
    InferRequest,
    InferResult,
    ModelMetadata,
    Protocol_,
    new_request_id,
)

#: Decodes a request's inputs against the metadata of the version that will answer:
#: feature name to a column of N values, and N. Raises VigieError INVALID_INPUT.
Decode = Callable[[ModelMetadata], tuple[dict[str, npt.NDArray[Any]], int]]


@dataclass(frozen=True, slots=True)
class Call:
    """What an edge parsed from one inference request, besides its inputs.

    Attributes:
        protocol: The edge it came by.
        model: The model name asked for.
        version: The version asked for; None routes to production (or canary, shadow).
        caller: The authenticated caller id (None when authentication is off).
        request_id: The client's request id; None gets a generated one.
        outputs: Output names asked for; None for all.
        parameters: Request parameters (``row_ids`` among them).
    """

    protocol: Protocol_
    model: str
    version: str | None = None
    caller: str | None = None
    request_id: str | None = None
    outputs: list[str] | None = None
    parameters: Mapping[str, Any] = field(default_factory=dict)


async def serve(dataplane: DataPlane, call: Call, decode: Decode) -> InferResult:
    """Metadata, decode and validate, outputs, then the data plane's inference.

    Raises:
        VigieError: MODEL_NOT_FOUND, INVALID_INPUT naming the input or output, UNAVAILABLE,
            INTERNAL; each counted once.
    """
    try:
        metadata = dataplane.model_metadata(call.model, call.version)
        columns, rows = decode(metadata)
        check_outputs(metadata, call.outputs)
        columns, enrichment = await dataplane.enrich(metadata, columns, rows)
    except VigieError as err:
        dataplane.record_failure(call.protocol.value, call.model, err)
        raise
    return await dataplane.infer(
        InferRequest(
            model=call.model,
            version=call.version,
            id=call.request_id or new_request_id(),
            columns=columns,
            rows=rows,
            outputs=call.outputs,
            parameters=dict(call.parameters),
            protocol=call.protocol,
            caller=call.caller,
            enrichment=enrichment,
        )
    )


def check_outputs(metadata: ModelMetadata, requested: Sequence[str] | None) -> None:
    """Refuse an output name the model does not have, before any work is done.

    Raises:
        VigieError: INVALID_INPUT naming the output and listing the model's outputs.
    """
    known = [spec.name for spec in metadata.outputs]
    for name in requested or ():
        if name not in known:
            raise VigieError(
                ErrorCode.INVALID_INPUT,
                f"output {name!r} is not an output of {metadata.name}; outputs: {', '.join(known)}",
                output=name,
            )
