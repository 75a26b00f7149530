"""The Open Inference Protocol v2 REST wire format: JSON tensors and binary tensor data.

Parses an inference request body into :class:`RawTensor` objects and writes responses,
including the ``binary_tensor_data`` extension that ``tritonclient.http`` uses by default
(a JSON header of ``Inference-Header-Content-Length`` bytes, then raw tensor bytes).
Structural problems are VigieError INVALID_INPUT naming the field; the values themselves
are judged later by :func:`vigie.serving.codec.decode_inputs`.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import orjson

from vigie.errors import ErrorCode, VigieError
from vigie.serving.types import InferResult, ModelMetadata, RawTensor, ServerMetadata

#: The header giving the length of the JSON part of a binary-extension body.
HEADER_LENGTH = "Inference-Header-Content-Length"

#: Little-endian numpy dtype of each fixed-size datatype in binary tensor data.
BINARY_DTYPES = {
    "FP32": "<f4",
    "FP64": "<f8",
    "INT64": "<i8",
    "INT32": "<i4",
    "BOOL": "?",
}

_MAX_DIMS = 8
_NUMBER_TYPES = (int, float, type(None))


@dataclass
class InferBody:
    """A parsed OIP inference request.

    Attributes:
        id: The client's request id, if any.
        tensors: The inputs, undecoded.
        outputs: Output names asked for; None for all.
        binary_outputs: Output names to return as binary tensor data.
        binary_default: Return outputs not named in ``outputs`` as binary data.
        parameters: The request's ``parameters``.
    """

    id: str | None
    tensors: list[RawTensor]
    outputs: list[str] | None
    binary_outputs: set[str] = field(default_factory=set)
    binary_default: bool = False
    parameters: dict[str, Any] = field(default_factory=dict)


def bad(message: str, **details: Any) -> VigieError:
    """An INVALID_INPUT error about the request body."""
    return VigieError(ErrorCode.INVALID_INPUT, message, **details)


def parse_infer(body: bytes, header_length: str | None) -> InferBody:
    """Parse an inference request body (JSON, or JSON followed by binary tensor data).

    Args:
        body: The whole body.
        header_length: The ``Inference-Header-Content-Length`` header, if sent.

    Raises:
        VigieError: INVALID_INPUT naming what is malformed.
    """
    return infer_body(*parse_document(body, header_length))


def parse_document(body: bytes, header_length: str | None) -> tuple[dict[str, Any], memoryview]:
    """The JSON object of a body, and the binary tensor data after it (empty when none).

    Raises:
        VigieError: INVALID_INPUT when the body is not a JSON object or the header is wrong.
    """
    split = _header_length(header_length, len(body))
    document = _json_object(body[:split] if split is not None else body)
    binary = memoryview(body)[split:] if split is not None else memoryview(b"")
    return document, binary


def infer_body(document: dict[str, Any], binary: memoryview, *, tensors: bool = True) -> InferBody:
    """The request a parsed document holds; with ``tensors=False`` the inputs are left to
    be decoded later, against the model's metadata (a fast path, or :func:`infer_tensors`).

    Raises:
        VigieError: INVALID_INPUT naming what is malformed.
    """
    decoded = infer_tensors(document, binary) if tensors else []
    request_id = document.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise bad("'id' must be a string", field="id")
    parameters = _parameters(document.get("parameters"), "parameters")
    outputs, binary_outputs = _outputs(document.get("outputs"))
    return InferBody(
        id=request_id or None,
        tensors=decoded,
        outputs=outputs,
        binary_outputs=binary_outputs,
        binary_default=parameters.get("binary_data_output") is True,
        parameters={k: v for k, v in parameters.items() if k != "binary_data_output"},
    )


def infer_tensors(document: dict[str, Any], binary: memoryview) -> list[RawTensor]:
    """The input tensors of a parsed document (JSON ``data`` or binary extension data).

    Raises:
        VigieError: INVALID_INPUT naming the malformed tensor, or binary data left over.
    """
    inputs = document.get("inputs")
    if not isinstance(inputs, list) or not inputs:
        raise bad("'inputs' must be a non-empty list of tensors", field="inputs")
    decoded: list[RawTensor] = []
    offset = 0
    for index, raw in enumerate(inputs):
        tensor, used = _tensor(index, raw, binary[offset:])
        decoded.append(tensor)
        offset += used
    if offset != len(binary):
        raise bad(f"{len(binary) - offset} bytes of binary data are not claimed by any input")
    return decoded


def _header_length(value: str | None, size: int) -> int | None:
    if value is None:
        return None
    try:
        length = int(value)
    except ValueError as err:
        raise bad(f"{HEADER_LENGTH} must be an integer, got {value!r}") from err
    if not 0 < length <= size:
        raise bad(f"{HEADER_LENGTH} {length} is outside the body of {size} bytes")
    return length


def _json_object(raw: bytes | memoryview) -> dict[str, Any]:
    try:
        document = orjson.loads(raw)
    except orjson.JSONDecodeError:
        try:  # the standard library also reads NaN and Infinity (the codec names them)
            document = json.loads(bytes(raw))
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            raise bad(f"the body is not valid JSON: {err}") from err
    if not isinstance(document, dict):
        raise bad("the body must be a JSON object with 'inputs'")
    return document


def _parameters(value: Any, where: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise bad(f"'{where}' must be an object", field=where)
    return value


def _tensor(index: int, raw: Any, binary: memoryview) -> tuple[RawTensor, int]:
    where = f"inputs[{index}]"
    if not isinstance(raw, dict):
        raise bad(f"{where} must be an object with name, datatype, shape and data")
    name = raw.get("name")
    if not isinstance(name, str) or not name:
        raise bad(f"{where}: 'name' must be a non-empty string", field=where)
    where = f"input {name!r}"
    datatype = raw.get("datatype")
    if not isinstance(datatype, str):
        raise bad(f"{where}: 'datatype' must be a string such as BYTES or FP32", input=name)
    shape = raw.get("shape")
    if (
        not isinstance(shape, list)
        or len(shape) > _MAX_DIMS
        or not all(isinstance(d, int) and not isinstance(d, bool) for d in shape)
    ):
        raise bad(f"{where}: 'shape' must be a list of integers", input=name)
    size = _binary_size(name, raw)
    if size is not None:
        if size > len(binary):
            raise bad(f"{where}: binary_data_size {size} exceeds the binary data sent", input=name)
        data = _binary_values(name, datatype.upper(), bytes(binary[:size]))
        return RawTensor(name, datatype, tuple(shape), data), size
    if "data" not in raw:
        raise bad(f"{where}: 'data' is missing", input=name)
    return RawTensor(name, datatype, tuple(shape), _json_values(datatype.upper(), raw["data"])), 0


def _binary_size(name: str, raw: dict[str, Any]) -> int | None:
    parameters = _parameters(raw.get("parameters"), f"input {name!r} parameters")
    size = parameters.get("binary_data_size")
    if size is None:
        return None
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise bad(f"input {name!r}: binary_data_size must be a non-negative integer", input=name)
    return size


def _json_values(datatype: str, data: Any) -> npt.NDArray[Any]:
    flat = _flatten(data)
    if datatype != "BYTES" and all(type(v) in _NUMBER_TYPES for v in flat):
        return np.asarray(flat, dtype=np.float64)  # anything else: the codec names the value
    values = np.empty(len(flat), dtype=object)
    values[:] = flat
    return values


def _flatten(data: Any) -> list[Any]:
    if not isinstance(data, list):
        return [data]
    if not any(isinstance(item, list) for item in data):
        return data
    flat: list[Any] = []
    for item in data:
        flat.extend(_flatten(item))
    return flat


def _binary_values(name: str, datatype: str, raw: bytes) -> npt.NDArray[Any]:
    if datatype == "BYTES":
        return _binary_strings(name, raw)
    dtype = BINARY_DTYPES.get(datatype)
    if dtype is None:
        raise bad(f"input {name!r}: datatype {datatype} is not supported", input=name)
    width = np.dtype(dtype).itemsize
    if len(raw) % width:
        raise bad(f"input {name!r}: {len(raw)} bytes is not a whole number of {datatype}")
    return np.frombuffer(raw, dtype=dtype)


def _binary_strings(name: str, raw: bytes) -> npt.NDArray[Any]:
    """BYTES in binary form: each element a 4-byte little-endian length, then its bytes."""
    items: list[bytes] = []
    offset = 0
    while offset < len(raw):
        if offset + 4 > len(raw):
            raise bad(f"input {name!r}: truncated BYTES element length", input=name)
        (length,) = struct.unpack_from("<I", raw, offset)
        offset += 4
        if offset + length > len(raw):
            raise bad(f"input {name!r}: a BYTES element runs past the data sent", input=name)
        items.append(raw[offset : offset + length])
        offset += length
    values = np.empty(len(items), dtype=object)
    values[:] = items
    return values


def _outputs(value: Any) -> tuple[list[str] | None, set[str]]:
    if value is None:
        return None, set()
    if not isinstance(value, list):
        raise bad("'outputs' must be a list of objects with a name", field="outputs")
    names, binary = [], set()
    for index, item in enumerate(value):
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            raise bad(f"outputs[{index}] must be an object with a string 'name'")
        names.append(item["name"])
        if _parameters(item.get("parameters"), f"outputs[{index}].parameters").get("binary_data"):
            binary.add(item["name"])
    return names, binary


def infer_response(
    result: InferResult, tensors: list[RawTensor], body: InferBody
) -> tuple[bytes, int | None]:
    """The response body, and the JSON header's length when binary data follows it."""
    outputs, chunks = [], []
    for tensor in tensors:
        entry: dict[str, Any] = {
            "name": tensor.name,
            "datatype": tensor.datatype,
            "shape": list(tensor.shape),
        }
        wanted = tensor.name in body.binary_outputs or (
            body.binary_default and (body.outputs is None or tensor.name not in body.outputs)
        )
        if wanted:
            chunk = np.asarray(tensor.data, dtype=BINARY_DTYPES[tensor.datatype]).tobytes()
            entry["parameters"] = {"binary_data_size": len(chunk)}
            chunks.append(chunk)
        else:
            # float64, so the numbers read back exactly as before; NaN is written null
            entry["data"] = np.asarray(tensor.data, dtype=np.float64).reshape(-1)
        outputs.append(entry)
    document: dict[str, Any] = {
        "model_name": result.model,
        "model_version": result.version,
        "id": result.id,
        "outputs": outputs,
    }
    if result.parameters:
        document["parameters"] = result.parameters
    header = orjson.dumps(document, option=orjson.OPT_SERIALIZE_NUMPY, default=_plain_json)
    if not chunks:
        return header, None
    return header + b"".join(chunks), len(header)


def _plain_json(value: Any) -> Any:
    """What orjson does not write itself (a numpy array of objects, a parameter's value)."""
    if hasattr(value, "tolist"):
        return value.tolist()
    return str(value)


def server_metadata_json(metadata: ServerMetadata) -> dict[str, Any]:
    """``GET /v2``."""
    return {
        "name": metadata.name,
        "version": metadata.version,
        "extensions": list(metadata.extensions),
    }


def model_metadata_json(metadata: ModelMetadata) -> dict[str, Any]:
    """``GET /v2/models/{name}[/versions/{version}]``."""

    def spec(tensors: Any) -> list[dict[str, Any]]:
        return [
            {"name": t.name, "datatype": t.datatype.value, "shape": list(t.shape)} for t in tensors
        ]

    document: dict[str, Any] = {
        "name": metadata.name,
        "versions": list(metadata.versions),
        "platform": metadata.platform,
        "inputs": spec(metadata.inputs),
        "outputs": spec(metadata.outputs),
    }
    if metadata.enrichable:
        # vigie's extension: which inputs a request may leave out (the service fills them
        # from its online store) and the request-only inputs it fills them from; "inputs"
        # stays the model's own, so a client that sends every listed input is unchanged
        document["parameters"] = {
            "optional_inputs": sorted(metadata.enrichable),
            "request_inputs": spec(metadata.request_inputs),
        }
    return document
