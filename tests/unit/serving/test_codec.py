"""Validation of decoded tensors against a model's inputs (every protocol goes through it)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

from vigie.errors import ErrorCode, VigieError
from vigie.serving.codec import decode_inputs, encode_outputs
from vigie.serving.types import Datatype, InferResult, ModelMetadata, RawTensor, TensorSpec

METADATA = ModelMetadata(
    name="flight_delay",
    versions=("1",),
    platform="onnxruntime_onnx",
    inputs=(
        TensorSpec("carrier", Datatype.BYTES, (-1, 1)),
        TensorSpec("distance", Datatype.FP32, (-1, 1)),
    ),
    outputs=(TensorSpec("probability", Datatype.FP32, (-1,)),),
)


def tensors(
    carrier: list[Any] | None = None,
    distance: list[Any] | None = None,
    *,
    carrier_shape: tuple[int, ...] | None = None,
    distance_type: str = "FP32",
) -> list[RawTensor]:
    carrier = ["AA", "UA"] if carrier is None else carrier
    distance = [100.0, 200.0] if distance is None else distance
    return [
        RawTensor(
            "carrier",
            "BYTES",
            carrier_shape or (len(carrier), 1),
            np.asarray(carrier, dtype=object),
        ),
        RawTensor("distance", distance_type, (len(distance),), np.asarray(distance, dtype=object)),
    ]


def decode(raw: list[RawTensor], *, max_rows: int = 8, max_string_length: int = 4) -> Any:
    return decode_inputs(METADATA, raw, max_rows=max_rows, max_string_length=max_string_length)


def refused(raw: list[RawTensor], **limits: int) -> VigieError:
    with pytest.raises(VigieError) as caught:
        decode(raw, **limits)
    assert caught.value.code is ErrorCode.INVALID_INPUT
    return caught.value


def test_valid_tensors_become_columns() -> None:
    columns, rows = decode(tensors(["AA", b"ZZ", None], [1, None, math.nan]))
    assert rows == 3
    assert list(columns["carrier"]) == ["AA", "ZZ", None]  # ZZ: unknown category, not an error
    assert columns["distance"].dtype == np.float32
    assert columns["distance"][0] == 1.0 and np.isnan(columns["distance"][1:]).all()


@pytest.mark.parametrize("datatype", ["FP32", "FP64", "INT64", "INT32"])
def test_every_number_type_is_accepted(datatype: str) -> None:
    raw = tensors(distance_type=datatype)
    raw[1] = RawTensor("distance", datatype, (2, 1), np.asarray([3, 4], dtype=np.int64))
    columns, _ = decode(raw)
    assert columns["distance"].tolist() == [3.0, 4.0]


@pytest.mark.parametrize(
    ("raw", "words"),
    [
        (tensors()[:1], ["missing", "distance"]),
        (
            [*tensors(), RawTensor("dep_delay", "FP32", (2,), np.zeros(2))],
            ["dep_delay", "expected"],
        ),
        ([*tensors(), tensors()[0]], ["carrier", "more than once"]),
        (tensors(distance_type="BYTES"), ["distance", "BYTES", "number"]),
        (tensors(distance_type="BOOL"), ["distance", "BOOL"]),
        ([RawTensor("carrier", "FP32", (2,), np.zeros(2)), tensors()[1]], ["carrier", "BYTES"]),
        (tensors(carrier_shape=(1, 2)), ["carrier", "shape"]),
        (tensors(carrier_shape=(2, 1, 1)), ["carrier", "shape"]),
        (tensors(carrier_shape=(3, 1)), ["carrier", "needs 3 values"]),
        (tensors(["AA"], [1.0, 2.0]), ["distance", "same batch size"]),
        (tensors([], []), ["carrier", "empty batch"]),
        (tensors(["AA"] * 9, [1.0] * 9), ["carrier", "limit of 8"]),
        (tensors(distance=[1.0, math.inf]), ["distance", "row 1", "finite"]),
        (tensors(distance=[1.0, -math.inf]), ["distance", "row 1"]),
        (tensors(distance=[1e300, 1.0]), ["distance", "row 0"]),
        (tensors(distance=[1.0, "2"]), ["distance", "row 1", "number"]),
        (tensors(distance=[True, 1.0]), ["distance", "row 0"]),
        (tensors(carrier=["AA", 7]), ["carrier", "row 1", "string"]),
        (tensors(carrier=["AA", "TOOLONG"]), ["carrier", "row 1", "limit is 4"]),
        (tensors(carrier=["AA", b"\xff\xfe"]), ["carrier", "UTF-8"]),
        (tensors(carrier=["AA", "\ud800"]), ["carrier", "row 1", "not valid Unicode"]),
        (tensors(carrier=["é\udfff", "AA"]), ["carrier", "row 0", "lone surrogate"]),
    ],
)
def test_bad_input_is_refused_naming_the_input(raw: list[RawTensor], words: list[str]) -> None:
    message = refused(raw).message
    for word in words:
        assert word in message


def test_no_input_at_all_is_refused() -> None:
    assert "missing" in refused([]).message


def test_outputs_are_fp32_in_the_order_asked_and_unknown_ones_refused() -> None:
    result = InferResult("m", "1", "id", {"probability": np.asarray([0.5, 0.25], np.float32)})
    (tensor,) = encode_outputs(result, None)
    assert (tensor.name, tensor.datatype, tensor.shape) == ("probability", "FP32", (2,))
    assert tensor.data.tolist() == [0.5, 0.25]
    with pytest.raises(VigieError, match="'nope'") as caught:
        encode_outputs(result, ["nope"])
    assert caught.value.code is ErrorCode.INVALID_INPUT
