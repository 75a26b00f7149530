"""The gRPC fast path: the same columns as the general path, or None for anything unusual."""

from __future__ import annotations

import json
import math
import struct
from typing import Any

import numpy as np
import pytest

from vigie.errors import VigieError
from vigie.serving import grpc_codec, oip
from vigie.serving.codec import decode_inputs
from vigie.serving.fast_decode import decode_json_inputs, decode_raw_inputs
from vigie.serving.proto import grpc_predict_v2_pb2 as pb
from vigie.serving.types import Datatype, ModelMetadata, TensorSpec

METADATA = ModelMetadata(
    "m",
    ("1",),
    "onnxruntime_onnx",
    (
        TensorSpec("carrier", Datatype.BYTES, (-1, 1)),
        TensorSpec("distance", Datatype.FP32, (-1, 1)),
        TensorSpec("origin", Datatype.BYTES, (-1, 1)),
        TensorSpec("dep_hour", Datatype.FP32, (-1, 1)),
    ),
    (TensorSpec("probability", Datatype.FP32, (-1,)),),
)
LIMITS: dict[str, Any] = {"max_rows": 8, "max_string_length": 6}


def prefixed(*items: bytes) -> bytes:
    return b"".join(struct.pack("<I", len(item)) + item for item in items)


def request(rows: int = 3, **override: tuple[str, list[int], bytes]) -> pb.ModelInferRequest:
    """A plain request of ``rows`` rows; ``override`` replaces an input's
    (datatype, shape, raw) or, with None, leaves the input out."""
    texts = {"carrier": [b"AA", "Zü".encode(), b""], "origin": [b"JFK", b"LGA", b"EWR"]}
    numbers = {"distance": [1.5, math.nan, 2000.0], "dep_hour": [6.0, 23.0, 0.0]}
    plain: dict[str, tuple[str, list[int], bytes] | None] = {}
    for name, values in texts.items():
        plain[name] = ("BYTES", [rows, 1], prefixed(*(values * rows)[:rows]))
    for name, floats in numbers.items():
        plain[name] = ("FP32", [rows], np.asarray((floats * rows)[:rows], "<f4").tobytes())
    plain |= override
    message = pb.ModelInferRequest(model_name="m")
    for name, spec in plain.items():
        if spec is None:
            continue
        datatype, shape, raw = spec
        message.inputs.add(name=name, datatype=datatype, shape=shape)
        message.raw_input_contents.append(raw)
    return message


def general(message: pb.ModelInferRequest) -> tuple[dict[str, Any], int]:
    return decode_inputs(METADATA, grpc_codec.tensors_from_request(message), **LIMITS)


def same_columns(
    fast: tuple[dict[str, Any], int] | None, general: tuple[dict[str, Any], int], rows: int
) -> dict[str, Any]:
    """Assert the fast path decoded what the general path did; the fast path's columns."""
    assert fast is not None
    (columns, n), (expected, m) = fast, general
    assert n == m == rows and columns.keys() == expected.keys()
    for name, column in columns.items():
        assert column.dtype == expected[name].dtype and column.shape == (rows,)
        if column.dtype == object:
            assert column.tolist() == expected[name].tolist()
        else:
            assert np.array_equal(column, expected[name], equal_nan=True)
    return columns


@pytest.mark.parametrize("rows", [1, 3, 8])
def test_the_fast_path_gives_the_general_paths_columns(rows: int) -> None:
    message = request(rows)
    columns = same_columns(decode_raw_inputs(message, METADATA, **LIMITS), general(message), rows)
    assert all(type(v) is str for v in columns["origin"])
    assert columns["carrier"][min(1, rows - 1)] in {"AA", "Zü"}


def test_a_missing_value_is_nan_not_unusual() -> None:
    fast = decode_raw_inputs(
        request(1, distance=("FP32", [1], b"\x00\x00\xc0\x7f")), METADATA, **LIMITS
    )
    assert fast is not None and math.isnan(fast[0]["distance"][0])


INF = np.asarray([math.inf], "<f4").tobytes()


@pytest.mark.parametrize(
    "override",
    [
        {"distance": ("FP64", [1], np.asarray([1.0], "<f8").tobytes())},  # another datatype
        {"distance": ("FP32", [1], INF)},  # infinity
        {"distance": ("FP32", [1, 2], np.zeros(2, "<f4").tobytes())},  # shape [N, 2]
        {"distance": ("FP32", [2], np.zeros(2, "<f4").tobytes())},  # rows differ
        {"distance": ("FP32", [1], b"\x00\x00")},  # raw too short
        {"distance": None},  # a missing input
        {"distance": None, "extra": ("FP32", [1], np.zeros(1, "<f4").tobytes())},  # unknown
        {"carrier": ("BYTES", [1], prefixed(b"toolongtext"))},  # above max_string_length
        {"carrier": ("BYTES", [1], prefixed(b"\xff\xfe"))},  # not UTF-8
        {"carrier": ("BYTES", [1], prefixed(b"AA")[:-1])},  # a length past the end
        {"carrier": ("BYTES", [1], prefixed(b"AA", b"BB"))},  # more elements than rows
        {"carrier": ("FP32", [1], np.zeros(1, "<f4").tobytes())},  # numbers for strings
    ],
)
def test_anything_unusual_goes_to_the_general_path(override: dict[str, Any]) -> None:
    assert decode_raw_inputs(request(1, **override), METADATA, **LIMITS) is None


def test_too_many_rows_empty_batches_repeats_and_typed_contents_go_to_the_general_path() -> None:
    assert decode_raw_inputs(request(9), METADATA, **LIMITS) is None  # max_rows is 8
    empty = request(1)
    for tensor in empty.inputs:
        tensor.shape[0] = 0
    assert decode_raw_inputs(empty, METADATA, **LIMITS) is None
    twice = request(1)
    twice.inputs[0].name = "origin"  # origin twice, carrier missing
    assert decode_raw_inputs(twice, METADATA, **LIMITS) is None
    typed = request(1)
    typed.inputs[1].contents.fp32_contents.append(1.0)
    assert decode_raw_inputs(typed, METADATA, **LIMITS) is None
    no_raw = request(1)
    del no_raw.raw_input_contents[:]
    assert decode_raw_inputs(no_raw, METADATA, **LIMITS) is None


def test_a_long_string_within_the_limit_in_characters_is_plain() -> None:
    # 6 characters, 12 bytes: the byte count alone would call it too long.
    fast = decode_raw_inputs(
        request(1, carrier=("BYTES", [1], prefixed("éééééé".encode()))), METADATA, **LIMITS
    )
    assert fast is not None and fast[0]["carrier"][0] == "éééééé"


def json_inputs(rows: int = 3, **override: Any) -> list[dict[str, Any]]:
    """The OIP JSON inputs of a plain request; ``override`` replaces an input (None: drops it)."""
    plain: dict[str, Any] = {
        "carrier": {"datatype": "BYTES", "data": (["AA", "Zü", None] * rows)[:rows]},
        "origin": {"datatype": "BYTES", "data": (["JFK", "LGA", ""] * rows)[:rows]},
        "distance": {"datatype": "FP32", "data": ([1.5, None, 2000] * rows)[:rows]},
        "dep_hour": {"datatype": "FP64", "data": ([6.0, 23.0, 0.0] * rows)[:rows]},
    }
    inputs = []
    for name, tensor in (plain | override).items():
        if tensor is not None:
            inputs.append({"name": name, "shape": [len(tensor["data"])], **tensor})
    return inputs


def general_json(inputs: list[dict[str, Any]]) -> tuple[dict[str, Any], int]:
    body = oip.parse_infer(json.dumps({"inputs": inputs}).encode(), None)
    return decode_inputs(METADATA, body.tensors, **LIMITS)


@pytest.mark.parametrize("rows", [1, 3, 8])
def test_the_json_fast_path_gives_the_general_paths_columns(rows: int) -> None:
    inputs = json_inputs(rows)
    fast = decode_json_inputs(inputs, METADATA, **LIMITS)
    columns = same_columns(fast, general_json(inputs), rows)
    assert math.isnan(columns["distance"][min(1, rows - 1)]) or rows == 1


@pytest.mark.parametrize(
    "override",
    [
        {"distance": {"datatype": "INT64", "data": [1]}},  # another datatype
        {"distance": {"datatype": "FP32", "data": ["1.5"]}},  # a string for a number
        {"distance": {"datatype": "FP32", "data": [True]}},  # a boolean
        {"distance": {"datatype": "FP32", "data": [[1.0]]}},  # nested
        {"distance": {"datatype": "FP32", "data": [1e39]}},  # beyond float32
        {"distance": {"datatype": "FP32", "data": [10**400]}},  # beyond float64
        {"distance": {"datatype": "FP32", "data": [1.0, 2.0]}},  # rows differ
        {"distance": None},  # missing
        {"carrier": {"datatype": "BYTES", "data": ["toolongtext"]}},  # above the limit
        {"carrier": {"datatype": "BYTES", "data": [7]}},  # a number for a string
        {"carrier": {"datatype": "BYTES", "data": ["\ud83d"]}},  # a lone surrogate
        {"carrier": {"datatype": "BYTES", "data": ["AA"], "parameters": {"x": 1}}},
    ],
)
def test_anything_unusual_in_json_goes_to_the_general_path(override: dict[str, Any]) -> None:
    assert decode_json_inputs(json_inputs(1, **override), METADATA, **LIMITS) is None


def test_json_shapes_counts_and_containers_that_are_not_plain_go_to_the_general_path() -> None:
    assert decode_json_inputs(json_inputs(9), METADATA, **LIMITS) is None  # max_rows is 8
    assert decode_json_inputs({"not": "a list"}, METADATA, **LIMITS) is None
    inputs = json_inputs(1)
    inputs[0]["shape"] = [1, 2]
    assert decode_json_inputs(inputs, METADATA, **LIMITS) is None
    twice = json_inputs(1)
    twice[0]["name"] = "origin"
    assert decode_json_inputs(twice, METADATA, **LIMITS) is None
    column = json_inputs(1)
    column[0]["shape"] = [1, 1]  # [N, 1] is plain
    assert decode_json_inputs(column, METADATA, **LIMITS) is not None


@pytest.mark.parametrize("shape", [[1.0], [True], [1, 1.0], [1, True], "1", [[1]]])
def test_a_shape_that_is_not_a_list_of_integers_goes_to_the_general_path(shape: Any) -> None:
    inputs = json_inputs(1)
    inputs[0]["shape"] = shape

    assert decode_json_inputs(inputs, METADATA, **LIMITS) is None
    with pytest.raises(VigieError, match="carrier"):
        general_json(inputs)
