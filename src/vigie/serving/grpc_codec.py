"""OIP v2 protobuf messages to and from the data plane's vocabulary, and nothing else.

Decoding only checks what the wire format itself needs (a known datatype, data that fills
the declared shape, well-formed BYTES length prefixes); whether a tensor suits the model is
:mod:`vigie.serving.codec`'s business, as it is for REST.

Raw contents are little-endian; a raw BYTES element is a 4-byte little-endian length
followed by that many bytes. Typed contents put each datatype in one field of
``InferTensorContents``.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from vigie.errors import ErrorCode, VigieError
from vigie.serving.proto import grpc_predict_v2_pb2 as pb
from vigie.serving.types import ModelMetadata, RawTensor, ServerMetadata, TensorSpec

#: Little-endian numpy dtype of each OIP datatype (BYTES is an object array of ``str``).
NUMPY_DTYPES: dict[str, np.dtype[Any]] = {
    "BOOL": np.dtype("?"),
    "UINT8": np.dtype("<u1"),
    "UINT16": np.dtype("<u2"),
    "UINT32": np.dtype("<u4"),
    "UINT64": np.dtype("<u8"),
    "INT8": np.dtype("<i1"),
    "INT16": np.dtype("<i2"),
    "INT32": np.dtype("<i4"),
    "INT64": np.dtype("<i8"),
    "FP16": np.dtype("<f2"),
    "FP32": np.dtype("<f4"),
    "FP64": np.dtype("<f8"),
    "BYTES": np.dtype(object),
}

#: The ``InferTensorContents`` field holding each datatype (FP16 has none: raw only).
CONTENTS_FIELDS: dict[str, str] = {
    "BOOL": "bool_contents",
    "UINT8": "uint_contents",
    "UINT16": "uint_contents",
    "UINT32": "uint_contents",
    "UINT64": "uint64_contents",
    "INT8": "int_contents",
    "INT16": "int_contents",
    "INT32": "int_contents",
    "INT64": "int64_contents",
    "FP32": "fp32_contents",
    "FP64": "fp64_contents",
    "BYTES": "bytes_contents",
}

_ALL_FIELDS = tuple(sorted(set(CONTENTS_FIELDS.values())))
_LENGTH = struct.Struct("<I")

#: Request parameter a client sets to get ``raw_output_contents`` without sending raw inputs.
RAW_OUTPUT_PARAMETER = "raw_output"


def _invalid(message: str, **details: Any) -> VigieError:
    return VigieError(ErrorCode.INVALID_INPUT, message, **details)


def parameters_from_proto(parameters: Mapping[str, pb.InferParameter]) -> dict[str, Any]:
    """OIP parameters as plain values (a parameter with no value set becomes None)."""
    values: dict[str, Any] = {}
    for key, parameter in parameters.items():
        choice = parameter.WhichOneof("parameter_choice")
        values[key] = getattr(parameter, choice) if choice else None
    return values


def fill_parameters(target: Any, values: Mapping[str, Any]) -> None:
    """Write plain values into a protobuf ``map<string, InferParameter>``.

    Booleans, integers and strings keep their type; anything else is sent as its string
    form, since the specification's parameter has no other kinds.
    """
    for key, value in values.items():
        parameter: pb.InferParameter = target[key]
        if isinstance(value, bool):
            parameter.bool_param = value
        elif isinstance(value, int):
            parameter.int64_param = value
        else:
            parameter.string_param = value if isinstance(value, str) else str(value)


def _checked_shape(name: str, shape: Iterable[int]) -> tuple[int, ...]:
    dims = tuple(shape)
    if dims and min(dims) < 0:
        raise _invalid(
            f"input '{name}': shape {list(dims)} has a negative dimension; "
            "expected sizes of 0 or more",
            input=name,
        )
    return dims


def _dtype_of(name: str, datatype: str) -> np.dtype[Any]:
    dtype = NUMPY_DTYPES.get(datatype)
    if dtype is None:
        raise _invalid(
            f"input '{name}': unknown datatype '{datatype}'; expected one of "
            f"{', '.join(NUMPY_DTYPES)}",
            input=name,
            datatype=datatype,
        )
    return dtype


def _objects(items: Sequence[bytes]) -> npt.NDArray[Any]:
    # Element by element: np.array() of equal-length bytes would build a bytes dtype.
    array = np.empty(len(items), dtype=object)
    array[:] = list(items)
    return array


def split_bytes_elements(name: str, raw: bytes) -> list[bytes]:
    """The elements of a raw BYTES tensor (each a 4-byte little-endian length, then bytes).

    Raises:
        VigieError: INVALID_INPUT naming the input when a length runs past the buffer.
    """
    elements: list[bytes] = []
    append, unpack, prefix = elements.append, _LENGTH.unpack_from, _LENGTH.size
    offset, end = 0, len(raw)
    while offset < end:
        if end - offset < prefix:
            raise _invalid(
                f"input '{name}': raw BYTES data ends inside a 4-byte length prefix "
                f"at offset {offset}",
                input=name,
            )
        (length,) = unpack(raw, offset)
        offset += prefix
        if length > end - offset:
            raise _invalid(
                f"input '{name}': raw BYTES element at offset {offset - prefix} "
                f"claims {length} bytes but only {end - offset} remain",
                input=name,
            )
        append(raw[offset : offset + length])
        offset += length
    return elements


def _from_raw(name: str, datatype: str, shape: tuple[int, ...], raw: bytes) -> RawTensor:
    dtype = _dtype_of(name, datatype)
    count = math.prod(shape)
    if datatype == "BYTES":
        elements = split_bytes_elements(name, raw)
        if len(elements) != count:
            raise _invalid(
                f"input '{name}': shape {list(shape)} needs {count} BYTES elements, "
                f"raw_input_contents holds {len(elements)}",
                input=name,
            )
        return RawTensor(name, datatype, shape, _objects(elements).reshape(shape))
    if len(raw) != count * dtype.itemsize:
        raise _invalid(
            f"input '{name}': shape {list(shape)} of {datatype} needs "
            f"{count * dtype.itemsize} raw bytes, got {len(raw)}",
            input=name,
        )
    return RawTensor(name, datatype, shape, np.frombuffer(raw, dtype=dtype).reshape(shape))


def _from_contents(name: str, datatype: str, shape: tuple[int, ...], contents: Any) -> RawTensor:
    dtype = _dtype_of(name, datatype)
    field = CONTENTS_FIELDS.get(datatype)
    if field is None:
        raise _invalid(
            f"input '{name}': {datatype} has no typed contents field; send it in "
            "raw_input_contents",
            input=name,
        )
    others = [f for f in _ALL_FIELDS if f != field and len(getattr(contents, f))]
    if others:
        raise _invalid(
            f"input '{name}': datatype {datatype} expects its data in contents.{field}, "
            f"found contents.{others[0]}",
            input=name,
        )
    values = getattr(contents, field)
    count = math.prod(shape)
    if len(values) != count:
        raise _invalid(
            f"input '{name}': shape {list(shape)} needs {count} elements, "
            f"contents.{field} holds {len(values)}",
            input=name,
        )
    if datatype == "BYTES":
        return RawTensor(name, datatype, shape, _objects(values).reshape(shape))
    try:
        data = np.array(values, dtype=dtype)
    except (OverflowError, ValueError) as err:
        raise _invalid(
            f"input '{name}': a value of contents.{field} does not fit {datatype}", input=name
        ) from err
    return RawTensor(name, datatype, shape, data.reshape(shape))


def tensors_from_request(request: pb.ModelInferRequest) -> list[RawTensor]:
    """Decode every input of a request, from typed ``contents`` or ``raw_input_contents``.

    Raises:
        VigieError: INVALID_INPUT naming the input whose data does not fit its datatype and
            shape, or when raw and typed data are mixed.
    """
    raw = request.raw_input_contents
    if raw and len(raw) != len(request.inputs):
        raise _invalid(
            f"raw_input_contents has {len(raw)} entries for {len(request.inputs)} inputs; "
            "expected one entry per input, in the order of inputs"
        )
    tensors: list[RawTensor] = []
    for index, tensor in enumerate(request.inputs):
        shape = _checked_shape(tensor.name, tensor.shape)
        if raw:
            if tensor.HasField("contents") and tensor.contents.ByteSize():
                raise _invalid(
                    f"input '{tensor.name}': has both contents and raw_input_contents; "
                    "expected one or the other",
                    input=tensor.name,
                )
            tensors.append(_from_raw(tensor.name, tensor.datatype, shape, raw[index]))
        else:
            tensors.append(_from_contents(tensor.name, tensor.datatype, shape, tensor.contents))
    return tensors


def _raw_bytes(tensor: RawTensor) -> bytes:
    if tensor.datatype == "BYTES":
        parts: list[bytes] = []
        for item in tensor.data.ravel().tolist():
            encoded = item if isinstance(item, bytes) else str(item).encode("utf-8")
            parts += (_LENGTH.pack(len(encoded)), encoded)
        return b"".join(parts)
    dtype = NUMPY_DTYPES[tensor.datatype]
    return np.ascontiguousarray(tensor.data, dtype=dtype).tobytes()


def _typed_values(tensor: RawTensor) -> list[Any]:
    values: list[Any] = tensor.data.ravel().tolist()
    if tensor.datatype == "BYTES":
        return [v if isinstance(v, bytes) else str(v).encode("utf-8") for v in values]
    return values


def build_response(
    *,
    model: str,
    version: str,
    request_id: str,
    outputs: Sequence[RawTensor],
    parameters: Mapping[str, Any],
    raw: bool,
) -> pb.ModelInferResponse:
    """A ``ModelInferResponse``, with typed ``contents`` or with ``raw_output_contents``.

    Args:
        model: Model name.
        version: The version that answered.
        request_id: The request id to echo.
        outputs: The encoded outputs, in response order.
        parameters: Response parameters.
        raw: Put the data in ``raw_output_contents`` (what tritonclient reads) instead of
            typed ``contents``.
    """
    response = pb.ModelInferResponse(model_name=model, model_version=version, id=request_id)
    fill_parameters(response.parameters, parameters)
    for tensor in outputs:
        out = response.outputs.add(name=tensor.name, datatype=tensor.datatype, shape=tensor.shape)
        if raw:
            response.raw_output_contents.append(_raw_bytes(tensor))
        else:
            getattr(out.contents, CONTENTS_FIELDS[tensor.datatype]).extend(_typed_values(tensor))
    return response


def wants_raw_output(request: pb.ModelInferRequest, parameters: Mapping[str, Any]) -> bool:
    """Answer in ``raw_output_contents`` when the client sent raw inputs or asked for it.

    Clients that send raw inputs (tritonclient always does) read raw outputs; the others
    get typed ``contents`` unless they set the ``raw_output`` request parameter.
    """
    return bool(request.raw_input_contents) or parameters.get(RAW_OUTPUT_PARAMETER) is True


def _tensor_metadata(spec: TensorSpec) -> pb.ModelMetadataResponse.TensorMetadata:
    return pb.ModelMetadataResponse.TensorMetadata(
        name=spec.name, datatype=str(spec.datatype), shape=spec.shape
    )


def model_metadata_to_proto(metadata: ModelMetadata) -> pb.ModelMetadataResponse:
    """A model's metadata as ``ModelMetadataResponse``."""
    return pb.ModelMetadataResponse(
        name=metadata.name,
        versions=metadata.versions,
        platform=metadata.platform,
        inputs=[_tensor_metadata(s) for s in metadata.inputs],
        outputs=[_tensor_metadata(s) for s in metadata.outputs],
    )


def server_metadata_to_proto(metadata: ServerMetadata) -> pb.ServerMetadataResponse:
    """The server's metadata as ``ServerMetadataResponse``."""
    return pb.ServerMetadataResponse(
        name=metadata.name, version=metadata.version, extensions=metadata.extensions
    )
