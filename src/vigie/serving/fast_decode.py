"""The fast path of gRPC decoding: the usual ``ModelInferRequest`` to columns in one pass.

Most requests look alike: every input of the model once, in ``raw_input_contents``, FP32
for numbers and BYTES for strings, shape ``[N]`` or ``[N, 1]``, nothing out of range. For
those, :func:`decode_raw_inputs` fuses what :func:`vigie.serving.grpc_codec.tensors_from_request`
and :func:`vigie.serving.codec.decode_inputs` do column by column: the numeric inputs are
joined and read as one float32 block (one infinity check for all of them, each column a
view of the block), and each BYTES input is split and decoded to ``str`` in one loop.

It never refuses anything itself: whatever it does not recognise as plainly valid
(another datatype, typed ``contents``, a missing or repeated input, an infinity, a bad
length prefix, a string too long, invalid UTF-8...) makes it return None, and the general
path decodes the request again and names the problem, with the same messages as REST.
"""

from __future__ import annotations

import itertools
import struct
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
import numpy.typing as npt

from vigie.serving.codec import is_unicode
from vigie.serving.proto import grpc_predict_v2_pb2 as pb
from vigie.serving.types import Datatype, ModelMetadata, TensorSpec

_LENGTH = struct.Struct("<I")
_FLOAT32 = np.dtype("<f4")

#: Inputs tuple of a model version -> name -> True for a string (BYTES) input. Keyed by
#: identity: a loaded version keeps its metadata, so the look-up is one dict access.
_KINDS: dict[int, tuple[tuple[TensorSpec, ...], dict[str, bool]]] = {}
_KINDS_MAX = 64


def _kinds(metadata: ModelMetadata) -> dict[str, bool]:
    inputs = metadata.inputs
    cached = _KINDS.get(id(inputs))
    if cached is not None and cached[0] is inputs:
        return cached[1]
    kinds = {spec.name: spec.datatype is Datatype.BYTES for spec in inputs}
    if len(_KINDS) >= _KINDS_MAX:
        _KINDS.clear()
    _KINDS[id(inputs)] = (inputs, kinds)
    return kinds


class _Unusual(Exception):
    """Not the plain case: the general path decodes the request (and names any problem)."""


def decode_raw_inputs(
    request: pb.ModelInferRequest,
    metadata: ModelMetadata,
    *,
    max_rows: int,
    max_string_length: int,
) -> tuple[dict[str, npt.NDArray[Any]], int] | None:
    """The request's feature columns and row count, or None to take the general path.

    The columns are what :func:`vigie.serving.codec.decode_inputs` returns for the same
    request: float32 (NaN for missing) and object arrays of ``str``.
    """
    try:
        return _decode(request, _kinds(metadata), max_rows, max_string_length)
    except _Unusual:
        return None


def _decode(
    request: pb.ModelInferRequest, kinds: dict[str, bool], max_rows: int, max_string_length: int
) -> tuple[dict[str, npt.NDArray[Any]], int]:
    raw = request.raw_input_contents
    inputs = request.inputs
    if len(raw) != len(inputs) or len(inputs) != len(kinds):
        raise _Unusual
    plain = (_input(tensor, data, kinds) for tensor, data in zip(inputs, raw, strict=True))
    return _columns(
        plain, kinds, max_rows, _numbers, lambda data, rows: _strings(data, rows, max_string_length)
    )


def _columns(
    plain: Iterable[tuple[str, bool, int, Any]],
    kinds: dict[str, bool],
    max_rows: int,
    numbers: Callable[[list[Any], int], npt.NDArray[np.float32]],
    strings: Callable[[Any, int], npt.NDArray[Any]],
) -> tuple[dict[str, npt.NDArray[Any]], int]:
    """The columns of both fast paths, from each input's (name, is string, rows, data).

    Every input must have the same rows (1 to ``max_rows``) and each of ``kinds`` must come
    once; ``numbers`` makes the numeric inputs one block (a row per input, in order),
    ``strings`` makes one string column.
    """
    rows = -1
    plan: list[tuple[str, bool, Any]] = []
    numeric: list[Any] = []
    for name, is_string, n, data in plain:
        if n != rows:
            if rows != -1 or not 0 < n <= max_rows:
                raise _Unusual
            rows = n
        if not is_string:
            numeric.append(data)
        plan.append((name, is_string, data))
    if len({name for name, _, _ in plan}) != len(kinds):
        raise _Unusual  # an input given twice (and so another one missing)
    block = numbers(numeric, rows)
    columns: dict[str, npt.NDArray[Any]] = {}
    next_numeric = 0
    for name, is_string, data in plan:
        if is_string:
            columns[name] = strings(data, rows)
        else:
            columns[name] = block[next_numeric]
            next_numeric += 1
    return columns, rows


def _input(
    tensor: pb.ModelInferRequest.InferInputTensor, data: bytes, kinds: dict[str, bool]
) -> tuple[str, bool, int, bytes]:
    """Name, whether it is a string input, rows and raw data of one plain input."""
    name = tensor.name
    is_string = kinds.get(name)
    if is_string is None or tensor.HasField("contents"):
        raise _Unusual
    shape = tensor.shape
    if not (len(shape) == 1 or len(shape) == 2 and shape[1] == 1):  # noqa: PLR2004
        raise _Unusual
    n = int(shape[0])
    if tensor.datatype != ("BYTES" if is_string else "FP32"):
        raise _Unusual
    if not is_string and len(data) != 4 * n:  # noqa: PLR2004
        raise _Unusual
    return name, is_string, n, data


def _numbers(numeric: list[bytes], rows: int) -> npt.NDArray[np.float32]:
    """The numeric inputs as one float32 block, a row per input; any infinity is unusual."""
    if not numeric:
        return np.empty((0, rows), dtype=_FLOAT32)
    flat = np.frombuffer(b"".join(numeric), dtype=_FLOAT32)
    if np.count_nonzero(np.isinf(flat)):  # count_nonzero: no Python-level any() wrapper
        raise _Unusual
    return flat.reshape(len(numeric), rows)


def _strings(data: bytes, rows: int, max_length: int) -> npt.NDArray[Any]:
    """``rows`` length-prefixed UTF-8 strings filling ``data`` exactly."""
    texts: list[str] = []
    append, unpack = texts.append, _LENGTH.unpack_from
    offset, end = 0, len(data)
    try:
        for _ in range(rows):
            if end - offset < 4:  # noqa: PLR2004
                raise _Unusual
            (length,) = unpack(data, offset)
            start, offset = offset + 4, offset + 4 + length
            if offset > end:
                raise _Unusual
            append(data[start:offset].decode("utf-8"))
    except UnicodeDecodeError as err:
        raise _Unusual from err
    if offset != end:
        raise _Unusual
    # A string has at most as many characters as bytes: count only when that may matter.
    if end - 4 * rows > max_length and max(map(len, texts)) > max_length:
        raise _Unusual
    column = np.empty(rows, dtype=object)
    column[:] = texts
    return column


_NUMBER_TYPES = frozenset({float, int, type(None)})
_TEXT_TYPES = frozenset({str, type(None)})
_JSON_NUMBER_DATATYPES = frozenset({"FP32", "FP64"})


def decode_json_inputs(
    inputs: Any,
    metadata: ModelMetadata,
    *,
    max_rows: int,
    max_string_length: int,
) -> tuple[dict[str, npt.NDArray[Any]], int] | None:
    """The fast path of OIP REST: the ``inputs`` of a parsed JSON body to columns, or None.

    Plain means: every input of the model once, as an object with ``name``, ``datatype``
    (BYTES for strings, FP32 or FP64 for numbers), ``shape`` ``[N]`` or ``[N, 1]`` and a flat
    ``data`` list of N values (null for missing), no ``parameters`` (binary data goes the
    general way), nothing out of range. The numeric inputs become one float64 block, cast
    to float32 and checked for infinity once.
    """
    try:
        return _decode_json(inputs, _kinds(metadata), max_rows, max_string_length)
    except _Unusual:
        return None


def _decode_json(
    inputs: Any, kinds: dict[str, bool], max_rows: int, max_string_length: int
) -> tuple[dict[str, npt.NDArray[Any]], int]:
    if type(inputs) is not list or len(inputs) != len(kinds):
        raise _Unusual
    plain = (_json_input(item, kinds) for item in inputs)
    return _columns(
        plain,
        kinds,
        max_rows,
        _json_numbers,
        lambda data, _: _json_strings(data, max_string_length),
    )


def _json_input(item: Any, kinds: dict[str, bool]) -> tuple[str, bool, int, list[Any]]:
    """Name, whether it is a string input, rows and data of one plain JSON input."""
    if type(item) is not dict or item.get("parameters"):
        raise _Unusual
    name = item.get("name")
    if type(name) is not str or (is_string := kinds.get(name)) is None:
        raise _Unusual
    datatype = item.get("datatype")
    if not (datatype == "BYTES" if is_string else datatype in _JSON_NUMBER_DATATYPES):
        raise _Unusual
    data = item.get("data")
    if type(data) is not list or not _plain_shape(item.get("shape"), len(data)):
        raise _Unusual
    return name, is_string, len(data), data


def _plain_shape(shape: Any, n: int) -> bool:
    """``[n]`` or ``[n, 1]``: a list of integers (not floats or booleans)."""
    if type(shape) is not list:
        return False
    if len(shape) == 1:
        return type(shape[0]) is int and shape[0] == n
    return (
        len(shape) == 2  # noqa: PLR2004
        and type(shape[0]) is int
        and shape[0] == n
        and type(shape[1]) is int
        and shape[1] == 1
    )


def _json_numbers(numeric: list[list[Any]], rows: int) -> npt.NDArray[np.float32]:
    """The numeric inputs as one float32 block, a row per input (null is NaN)."""
    if not numeric:
        return np.empty((0, rows), dtype=_FLOAT32)
    flat = list(itertools.chain.from_iterable(numeric))
    if not set(map(type, flat)) <= _NUMBER_TYPES:
        raise _Unusual  # a string, a boolean, a list...: the general path names it
    try:
        wide = np.array(flat, dtype=np.float64)
    except (OverflowError, ValueError) as err:
        raise _Unusual from err
    with np.errstate(over="ignore"):
        block = wide.astype(_FLOAT32)
    if np.count_nonzero(np.isinf(block)):
        raise _Unusual
    return block.reshape(len(numeric), rows)


def _json_strings(data: list[Any], max_length: int) -> npt.NDArray[Any]:
    types = set(map(type, data))
    if not types <= _TEXT_TYPES:
        raise _Unusual
    present = data if type(None) not in types else [v for v in data if v is not None]
    if present and (max(map(len, present)) > max_length or not is_unicode(present)):
        raise _Unusual
    column = np.empty(len(data), dtype=object)
    column[:] = data
    return column
