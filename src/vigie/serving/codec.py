"""Validation of decoded tensors against a model's inputs, and encoding of its outputs.

Every front end (OIP REST, OIP gRPC, BentoML's ``/predict``) first turns its wire format
into :class:`RawTensor` objects, then calls :func:`decode_inputs`, so that every protocol
refuses the same bad input with the same message: the input's name and what was expected.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, cast

import numpy as np
import numpy.typing as npt

from vigie.errors import ErrorCode, VigieError
from vigie.serving.types import Datatype, InferResult, ModelMetadata, RawTensor, TensorSpec

#: Datatypes accepted for a numeric (``FP32``) model input; values are cast to float32.
NUMERIC_DATATYPES = frozenset({"FP32", "FP64", "INT64", "INT32"})


def invalid(name: str, message: str, **details: Any) -> VigieError:
    """An INVALID_INPUT error about input ``name``."""
    return VigieError(ErrorCode.INVALID_INPUT, f"input {name!r}: {message}", input=name, **details)


def decode_inputs(
    metadata: ModelMetadata,
    tensors: Sequence[RawTensor],
    *,
    max_rows: int,
    max_string_length: int,
) -> tuple[dict[str, npt.NDArray[Any]], int]:
    """Validate raw tensors against a model's inputs and return its feature columns.

    Args:
        metadata: The model version's metadata (its inputs decide names and types).
        tensors: The request's tensors, as a front end decoded them.
        max_rows: Most rows (N) a request may carry.
        max_string_length: Longest string value, in characters.

    Returns:
        Feature name to a 1-D column of N values (object array of ``str`` or None for
        string inputs, float32 with NaN for missing numerics), and N.

    Raises:
        VigieError: INVALID_INPUT naming the input and what was expected (missing, extra or
            duplicated input, datatype, shape, row count, infinity, string length).
    """
    specs = {spec.name: spec for spec in (*metadata.inputs, *metadata.request_inputs)}
    optional = metadata.enrichable | {spec.name for spec in metadata.request_inputs}
    _check_names(metadata.name, specs, tensors, optional)
    columns: dict[str, npt.NDArray[Any]] = {}
    numeric: list[RawTensor] = []
    rows: int | None = None
    first = ""
    for tensor in tensors:
        spec = specs[tensor.name]
        n = _rows_of(tensor, max_rows=max_rows)
        if rows is None:
            rows, first = n, tensor.name
        elif n != rows:
            raise invalid(
                tensor.name,
                f"has {n} rows but input {first!r} has {rows}; every input needs the same "
                "batch size",
                expected_rows=rows,
            )
        columns[tensor.name] = _column(spec, tensor, max_string_length=max_string_length)
        if spec.datatype is not Datatype.BYTES:
            numeric.append(tensor)
    if rows is None:
        raise VigieError(ErrorCode.INVALID_INPUT, f"the request has no inputs for {metadata.name}")
    _check_finite(numeric, columns)
    return columns, rows


def _check_names(
    model: str,
    specs: dict[str, TensorSpec],
    tensors: Sequence[RawTensor],
    optional: frozenset[str] | set[str] = frozenset(),
) -> None:
    seen: set[str] = set()
    for tensor in tensors:
        if tensor.name not in specs:
            raise invalid(
                tensor.name,
                f"is not an input of {model}; expected inputs: {', '.join(specs)}",
                expected=list(specs),
            )
        if tensor.name in seen:
            raise invalid(tensor.name, "is given more than once")
        seen.add(tensor.name)
    missing = [name for name in specs if name not in seen and name not in optional]
    if missing:
        raise VigieError(
            ErrorCode.INVALID_INPUT,
            f"missing input(s) of {model}: {', '.join(missing)} (every input is required; "
            "send null/NaN for a missing value)",
            input=missing[0],
            expected=list(specs),
        )


def _rows_of(tensor: RawTensor, *, max_rows: int) -> int:
    shape = tuple(tensor.shape)
    if len(shape) not in (1, 2) or (len(shape) == 2 and shape[1] != 1):  # noqa: PLR2004
        raise invalid(tensor.name, f"shape {list(shape)} is not [N] or [N, 1]", shape=list(shape))
    rows = shape[0]
    if rows < 1:
        raise invalid(tensor.name, f"an empty batch (shape {list(shape)}); send at least one row")
    if rows > max_rows:
        raise invalid(
            tensor.name,
            f"{rows} rows is above the limit of {max_rows} rows per request; split the batch",
            limit=max_rows,
        )
    data = tensor.data
    size = data.size if isinstance(data, np.ndarray) else int(np.asarray(data).size)
    if size != rows:
        raise invalid(
            tensor.name,
            f"shape {list(shape)} needs {rows} values but {size} were given",
            shape=list(shape),
        )
    return rows


def _column(spec: TensorSpec, tensor: RawTensor, *, max_string_length: int) -> npt.NDArray[Any]:
    datatype = tensor.datatype.upper()
    if spec.datatype is Datatype.BYTES:
        if datatype != "BYTES":
            raise invalid(tensor.name, f"datatype {tensor.datatype} given, BYTES expected")
        return _strings(tensor, max_string_length)
    if datatype not in NUMERIC_DATATYPES:
        raise invalid(
            tensor.name,
            f"datatype {tensor.datatype} given, a number type expected "
            f"({', '.join(sorted(NUMERIC_DATATYPES))})",
        )
    return _numbers(tensor)


def _strings(tensor: RawTensor, max_length: int) -> npt.NDArray[Any]:
    data = tensor.data
    values = data.ravel().tolist() if isinstance(data, np.ndarray) else list(data)
    try:  # the common case in one pass: str, None, or UTF-8 bytes
        texts: list[str | None] = [
            v if v is None or type(v) is str else v.decode("utf-8") for v in values
        ]
    except (AttributeError, TypeError, UnicodeDecodeError):
        texts = _strings_checked(tensor.name, values, max_length)
    present = cast(list[str], texts if None not in texts else [t for t in texts if t is not None])
    if present and (max(map(len, present)) > max_length or not is_unicode(present)):
        texts = _strings_checked(tensor.name, values, max_length)
    column = np.empty(len(texts), dtype=object)
    column[:] = texts
    return column


def _strings_checked(name: str, values: Sequence[Any], max_length: int) -> list[str | None]:
    """Value by value, raising INVALID_INPUT for the first one that is not a valid string."""
    texts: list[str | None] = []
    for index, value in enumerate(values):
        if value is None:
            text = None
        elif isinstance(value, bytes | bytearray | np.bytes_):
            try:
                text = bytes(value).decode("utf-8")
            except UnicodeDecodeError as err:
                raise invalid(name, f"row {index} is not valid UTF-8") from err
        elif isinstance(value, str):
            text = str(value)
            if not is_unicode((text,)):
                raise invalid(
                    name,
                    f"row {index} is not valid Unicode (it holds a lone surrogate code point, "
                    "which no UTF-8 text can carry)",
                )
        else:
            raise invalid(
                name, f"row {index} is {type(value).__name__}, a string (or null) expected"
            )
        if text is not None and len(text) > max_length:
            raise invalid(
                name,
                f"row {index} is {len(text)} characters long; the limit is {max_length}",
                limit=max_length,
            )
        texts.append(text)
    return texts


def is_unicode(texts: Sequence[str]) -> bool:
    """Every text is valid Unicode: no lone surrogate, which JSON's ``\\ud800`` escapes can
    carry into a ``str`` but UTF-8, and so the model's string inputs, cannot.

    One join and one check for the whole column; ASCII text (the usual case) is known valid
    without encoding.
    """
    joined = "".join(texts)
    if joined.isascii():
        return True
    try:
        joined.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _numbers(tensor: RawTensor) -> npt.NDArray[np.float32]:
    """The column as float32 (infinity and values beyond float32 become inf here, and are
    refused by :func:`_check_finite`, once for all numeric inputs)."""
    data = tensor.data if isinstance(tensor.data, np.ndarray) else np.asarray(tensor.data)
    if data.dtype == object:
        data = np.asarray([_number(tensor.name, i, v) for i, v in enumerate(data.reshape(-1))])
    elif data.dtype.kind not in "iuf":
        raise invalid(tensor.name, f"values of type {data.dtype} given, numbers expected")
    with np.errstate(over="ignore"):
        return data.reshape(-1).astype(np.float32, copy=False)


def _check_finite(numeric: list[RawTensor], columns: dict[str, npt.NDArray[Any]]) -> None:
    """Refuse infinity, and numbers beyond float32, in any numeric column; NaN is missing.

    One check over every numeric column; the slow search for the culprit only on failure.
    """
    if not numeric:
        return
    joined = np.concatenate([columns[tensor.name] for tensor in numeric])
    if not np.isinf(joined).any():
        return
    for tensor in numeric:
        bad = np.isinf(columns[tensor.name])
        if bad.any():
            index = int(np.argmax(bad))
            sent = np.asarray(tensor.data, dtype=object).reshape(-1)[index]
            raise invalid(
                tensor.name,
                f"row {index} is {sent}; a finite float32 number (or null/NaN for missing) "
                "is expected",
            )


def _number(name: str, index: int, value: Any) -> float:
    if value is None:
        return math.nan
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        raise invalid(
            name, f"row {index} is {type(value).__name__}, a number (or null) is expected"
        )
    return float(value)


def encode_outputs(result: InferResult, requested: Sequence[str] | None) -> list[RawTensor]:
    """The result's outputs as FP32 tensors of shape ``[N]``, in the order asked.

    Args:
        result: What the data plane answered.
        requested: Output names the client asked for; None for all of them.

    Raises:
        VigieError: INVALID_INPUT naming an output the model does not have.
    """
    names = list(result.outputs) if requested is None else list(requested)
    tensors = []
    for name in names:
        if name not in result.outputs:
            raise VigieError(
                ErrorCode.INVALID_INPUT,
                f"output {name!r} is not an output of {result.model}; outputs: "
                f"{', '.join(result.outputs)}",
                output=name,
            )
        values = np.asarray(result.outputs[name], dtype=np.float32).reshape(-1)
        tensors.append(RawTensor(name, Datatype.FP32.value, (values.shape[0],), values))
    return tensors
