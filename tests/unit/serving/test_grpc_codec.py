"""Protobuf to RawTensor and back: typed contents, raw contents, BYTES length prefixes."""

from __future__ import annotations

import struct
from typing import Any

import numpy as np
import pytest

from vigie.errors import ErrorCode, VigieError
from vigie.serving import grpc_codec
from vigie.serving.proto import grpc_predict_v2_pb2 as pb
from vigie.serving.types import RawTensor


def prefixed(*items: bytes) -> bytes:
    return b"".join(struct.pack("<I", len(item)) + item for item in items)


def request_with(
    name: str, datatype: str, shape: list[int], *, raw: bytes | None = None, **contents: Any
) -> Any:
    request = pb.ModelInferRequest(model_name="m")
    tensor = request.inputs.add(name=name, datatype=datatype, shape=shape)
    for field, values in contents.items():
        getattr(tensor.contents, field).extend(values)
    if raw is not None:
        request.raw_input_contents.append(raw)
    return request


def refused(request: Any) -> VigieError:
    with pytest.raises(VigieError) as caught:
        grpc_codec.tensors_from_request(request)
    assert caught.value.code is ErrorCode.INVALID_INPUT
    return caught.value


def test_a_request_survives_the_wire_unchanged() -> None:
    request = request_with("x", "FP32", [2, 1], fp32_contents=[1.5, -2.0])
    request.parameters["flag"].bool_param = True
    request.outputs.add(name="y")
    wire = request.SerializeToString()
    assert pb.ModelInferRequest.FromString(wire) == request


@pytest.mark.parametrize(
    ("datatype", "field", "values", "dtype"),
    [
        ("FP32", "fp32_contents", [1.5, -2.0], np.float32),
        ("FP64", "fp64_contents", [1.5, -2.0], np.float64),
        ("INT64", "int64_contents", [3, -4], np.int64),
        ("INT32", "int_contents", [3, -4], np.int32),
        ("UINT8", "uint_contents", [3, 250], np.uint8),
        ("BOOL", "bool_contents", [True, False], np.bool_),
    ],
)
def test_typed_and_raw_contents_decode_to_the_same_tensor(
    datatype: str, field: str, values: list[Any], dtype: Any
) -> None:
    typed = grpc_codec.tensors_from_request(request_with("x", datatype, [2], **{field: values}))
    raw_bytes = np.asarray(values, dtype=np.dtype(dtype).newbyteorder("<")).tobytes()
    raw = grpc_codec.tensors_from_request(request_with("x", datatype, [2], raw=raw_bytes))
    for (tensor,) in (typed, raw):
        assert (tensor.name, tensor.datatype, tensor.shape) == ("x", datatype, (2,))
        assert tensor.data.dtype == np.dtype(dtype)
        assert tensor.data.tolist() == values


def test_bytes_elements_keep_their_lengths_and_shape() -> None:
    items = [b"AA", b"", "Zürich".encode(), b"\x00\x01"]
    raw = grpc_codec.tensors_from_request(request_with("c", "BYTES", [2, 2], raw=prefixed(*items)))
    typed = grpc_codec.tensors_from_request(
        request_with("c", "BYTES", [2, 2], bytes_contents=items)
    )
    for (tensor,) in (raw, typed):
        assert tensor.shape == (2, 2)
        assert tensor.data.dtype == object
        assert tensor.data.ravel().tolist() == items


@pytest.mark.parametrize(
    ("raw", "fragment"),
    [
        (prefixed(b"AA")[:-1], "claims 2 bytes"),
        (prefixed(b"AA") + b"\x01\x00", "inside a 4-byte length prefix"),
        (prefixed(b"AA", b"B", b"C"), "needs 2 BYTES elements"),
    ],
)
def test_malformed_raw_bytes_are_refused_naming_the_input(raw: bytes, fragment: str) -> None:
    err = refused(request_with("carrier", "BYTES", [2], raw=raw))
    assert "carrier" in err.message and fragment in err.message


@pytest.mark.parametrize(
    ("request_", "fragment"),
    [
        (request_with("x", "FP32", [3], fp32_contents=[1.0]), "needs 3 elements"),
        (request_with("x", "FP32", [1], fp64_contents=[1.0]), "found contents.fp64_contents"),
        (request_with("x", "FLOAT", [1], fp32_contents=[1.0]), "unknown datatype 'FLOAT'"),
        (request_with("x", "FP32", [-1], fp32_contents=[1.0]), "negative dimension"),
        (request_with("x", "INT8", [1], int_contents=[300]), "does not fit INT8"),
        (request_with("x", "FP16", [1], fp32_contents=[1.0]), "raw_input_contents"),
        (request_with("x", "FP32", [2], raw=b"\x00" * 4), "needs 8 raw bytes"),
        (request_with("x", "FP32", [1], raw=b"\x00" * 4, fp32_contents=[1.0]), "both"),
    ],
)
def test_data_that_does_not_fit_is_refused_naming_the_input(request_: Any, fragment: str) -> None:
    err = refused(request_)
    assert "'x'" in err.message and fragment in err.message


def test_raw_contents_need_one_entry_per_input() -> None:
    request = request_with("x", "FP32", [1], raw=b"\x00" * 4)
    request.inputs.add(name="y", datatype="FP32", shape=[1])
    assert "1 entries for 2 inputs" in refused(request).message


def test_parameters_round_trip() -> None:
    response = pb.ModelInferResponse()
    grpc_codec.fill_parameters(response.parameters, {"a": True, "b": 7, "c": "x", "d": 1.5})
    parsed = pb.ModelInferResponse.FromString(response.SerializeToString())
    values = grpc_codec.parameters_from_proto(parsed.parameters)
    assert values == {"a": True, "b": 7, "c": "x", "d": "1.5"}
    assert grpc_codec.parameters_from_proto({"e": pb.InferParameter()}) == {"e": None}


@pytest.mark.parametrize("raw", [False, True])
def test_responses_carry_typed_or_raw_outputs(raw: bool) -> None:
    outputs = [
        RawTensor("p", "FP32", (2,), np.array([0.25, 0.5], dtype=np.float32)),
        RawTensor("s", "BYTES", (2,), np.array(["late", "é"], dtype=object)),
    ]
    response = grpc_codec.build_response(
        model="m", version="3", request_id="r", outputs=outputs, parameters={}, raw=raw
    )
    assert [(o.name, o.datatype, list(o.shape)) for o in response.outputs] == [
        ("p", "FP32", [2]),
        ("s", "BYTES", [2]),
    ]
    if raw:
        assert np.frombuffer(response.raw_output_contents[0], "<f4").tolist() == [0.25, 0.5]
        assert response.raw_output_contents[1] == prefixed(b"late", "é".encode())
    else:
        assert list(response.outputs[0].contents.fp32_contents) == [0.25, 0.5]
        assert list(response.outputs[1].contents.bytes_contents) == [b"late", "é".encode()]
