"""The ``row_ids`` request parameter: recorded in the payload log, refused when malformed.

Through the real data plane (tiny ONNX model) and its OIP REST front end (httpx's ASGI
transport); the gRPC front end hands its string parameters to the same data plane.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from vigie.config import Settings
from vigie.errors import ErrorCode, VigieError
from vigie.events.payload_entry import encode_entry
from vigie.registry import Registry
from vigie.serving import grpc_codec
from vigie.serving.dataplane import ROW_IDS_PARAMETER, ServingDataPlane, request_row_ids
from vigie.serving.proto import grpc_predict_v2_pb2 as pb
from vigie.serving.rest import RestContext, create_app
from vigie.serving.types import InferRequest

from .tiny import MODEL, promote, register_tiny, sync


class ListLog:
    def __init__(self) -> None:
        self.entries: list[dict[str, Any]] = []

    def log(self, build: Callable[[], dict[str, Any]]) -> None:
        # The entry as the payload log writes it: built, then encoded to JSON.
        self.entries.append(json.loads(encode_entry(build())))


@pytest.fixture
def settings(tmp_path: Path, make_settings: Callable[..., Settings]) -> Settings:
    settings = make_settings(tmp_path / "home", None, device="cpu", shadow=True)
    registry = Registry(settings)
    register_tiny(registry, tmp_path / "v1", 1000.0)
    promote(registry, "1", "production")
    register_tiny(registry, tmp_path / "v2", 2000.0)
    promote(registry, "2", "staging")
    return settings


def body(rows: int, **parameters: Any) -> dict[str, Any]:
    return {
        "id": "req-1",
        "inputs": [
            {"name": "carrier", "datatype": "BYTES", "shape": [rows], "data": ["AA"] * rows},
            {"name": "distance", "datatype": "FP32", "shape": [rows], "data": [1.0] * rows},
        ],
        "parameters": parameters,
    }


async def post_all(settings: Settings, bodies: list[dict[str, Any]]) -> tuple[list, ListLog]:
    log = ListLog()
    plane = ServingDataPlane(settings, payload_log=log)
    await plane.start()
    app = create_app(lambda: RestContext(plane, settings, None))
    answers = []
    try:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            for document in bodies:
                answers.append(await client.post(f"/v2/models/{MODEL}/infer", json=document))
    finally:
        await plane.stop()  # waits for the shadow copies
    return answers, log


@sync
async def test_row_ids_are_recorded_for_the_answer_and_its_shadow(settings: Settings) -> None:
    answers, log = await post_all(settings, [body(3, row_ids="101,102,103"), body(1)])
    assert [a.status_code for a in answers] == [200, 200]
    named = [e for e in log.entries if e["request_id"] == "req-1" and "row_ids" in e]
    assert sorted(e["route"] for e in named) == ["production", "shadow"]
    assert all(e["row_ids"] == ["101", "102", "103"] for e in named)
    assert sum("row_ids" not in e for e in log.entries) == 2  # the request without them


@sync
async def test_malformed_row_ids_are_refused_naming_the_parameter(settings: Settings) -> None:
    bad = [body(3, row_ids="1,2"), body(2, row_ids="1,"), body(1, row_ids=7)]
    answers, log = await post_all(settings, bad)
    assert [a.status_code for a in answers] == [400, 400, 400]
    messages = [a.json()["error"] for a in answers]
    assert all("'row_ids'" in m for m in messages)
    assert "2 ids for 3 rows" in messages[0]
    assert "empty id (row 1)" in messages[1]
    assert "must be a string" in messages[2]
    assert log.entries == []  # refused before predicting: nothing logged


def request(rows: int, parameters: dict[str, Any]) -> InferRequest:
    carriers = np.array(["AA"] * rows, dtype=object)
    columns = {"carrier": carriers, "distance": np.ones(rows, dtype=np.float32)}
    return InferRequest(MODEL, None, "r", columns, rows, parameters=parameters)


def test_row_ids_from_a_grpc_string_parameter() -> None:
    message = pb.ModelInferRequest()
    message.parameters[ROW_IDS_PARAMETER].string_param = "7,8"
    parameters = grpc_codec.parameters_from_proto(message.parameters)
    assert request_row_ids(request(2, parameters)) == ["7", "8"]
    assert request_row_ids(request(2, {})) is None
    message.parameters[ROW_IDS_PARAMETER].int64_param = 7
    with pytest.raises(VigieError) as caught:
        request_row_ids(request(1, grpc_codec.parameters_from_proto(message.parameters)))
    assert caught.value.code is ErrorCode.INVALID_INPUT
    assert caught.value.details["parameter"] == ROW_IDS_PARAMETER
