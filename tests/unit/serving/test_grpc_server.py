"""The OIP v2 gRPC front end against a real ``grpc.aio`` server on a loopback port.

The server runs over :class:`TinyDataPlane`, a real (if small) implementation of the
DataPlane protocol: a two-input ONNX model built here with ``onnx.helper`` and run by ONNX
Runtime. Clients are the generated stubs, the stock health and reflection clients and, in
a subprocess, the official ``tritonclient.grpc`` (see ``test_grpc_tritonclient.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import struct
import sys
from collections.abc import AsyncIterator, Callable, Mapping
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import onnx
import onnxruntime as ort
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from onnx import TensorProto, helper

from vigie.config import load_settings
from vigie.errors import ErrorCode, VigieError
from vigie.serving.grpc_server import GrpcHandle, start_grpc
from vigie.serving.proto import grpc_predict_v2_pb2 as pb
from vigie.serving.proto import grpc_predict_v2_pb2_grpc as pb_grpc
from vigie.serving.types import (
    Datatype,
    InferRequest,
    InferResult,
    ModelMetadata,
    Protocol_,
    ServerMetadata,
    TensorSpec,
)

TRITON_DRIVER = Path(__file__).with_name("test_grpc_tritonclient.py")
CARRIER_CODES = {"AA": 1.0, "UA": 2.0}

METADATA = ModelMetadata(
    name="tiny",
    versions=("1",),
    platform="onnxruntime_onnx",
    inputs=(
        TensorSpec("distance", Datatype.FP32, (-1,)),
        TensorSpec("carrier", Datatype.BYTES, (-1,)),
    ),
    outputs=(
        TensorSpec("score", Datatype.FP32, (-1,)),
        TensorSpec("double", Datatype.FP32, (-1,)),
    ),
)


def tiny_model() -> bytes:
    """score = distance / 2 + code(carrier); double = 2 * distance (unknown carrier: 0)."""
    nodes = [
        helper.make_node(
            "LabelEncoder",
            ["carrier"],
            ["code"],
            domain="ai.onnx.ml",
            keys_strings=list(CARRIER_CODES),
            values_floats=list(CARRIER_CODES.values()),
            default_float=0.0,
        ),
        helper.make_node("Mul", ["distance", "half"], ["halved"]),
        helper.make_node("Add", ["halved", "code"], ["score"]),
        helper.make_node("Mul", ["distance", "two"], ["double"]),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny",
        [
            helper.make_tensor_value_info("distance", TensorProto.FLOAT, ["N"]),
            helper.make_tensor_value_info("carrier", TensorProto.STRING, ["N"]),
        ],
        [
            helper.make_tensor_value_info("score", TensorProto.FLOAT, ["N"]),
            helper.make_tensor_value_info("double", TensorProto.FLOAT, ["N"]),
        ],
        initializer=[
            helper.make_tensor("half", TensorProto.FLOAT, [], [0.5]),
            helper.make_tensor("two", TensorProto.FLOAT, [], [2.0]),
        ],
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("ai.onnx.ml", 2)]
    )
    onnx.checker.check_model(model)
    return model.SerializeToString()


def expected_score(distance: float, carrier: str) -> float:
    return distance * 0.5 + CARRIER_CODES.get(carrier, 0.0)


class TinyDataPlane:
    """A real DataPlane over the tiny ONNX model (one model, ``tiny``, version ``1``).

    Request parameters steer it for the interceptor tests: ``hold`` makes a call wait
    until :attr:`gate` is set (counting :attr:`held`), ``sleep_ms`` makes it slow.
    """

    def __init__(self) -> None:
        self.session = ort.InferenceSession(tiny_model(), providers=["CPUExecutionProvider"])
        self.frontends: dict[str, bool] = {}
        self.requests: list[InferRequest] = []
        self.gate = asyncio.Event()
        self.held = 0
        self.is_ready = True
        self.failures: list[tuple[str, str, str]] = []

    def _check(self, name: str, version: str | None) -> None:
        if name != "tiny":
            raise VigieError(ErrorCode.MODEL_NOT_FOUND, f"model {name!r} is not served")
        if version not in (None, "1"):
            raise VigieError(ErrorCode.MODEL_NOT_FOUND, f"tiny has no version {version!r}")

    async def infer(self, request: InferRequest) -> InferResult:
        self._check(request.model, request.version)
        self.requests.append(request)
        if request.parameters.get("hold"):
            self.held += 1
            await self.gate.wait()
        if request.parameters.get("sleep_ms"):
            await asyncio.sleep(request.parameters["sleep_ms"] / 1000)
        carriers = np.array([c or "" for c in request.columns["carrier"]], dtype=object)
        score, double = self.session.run(
            None, {"distance": request.columns["distance"], "carrier": carriers}
        )
        return InferResult(
            "tiny", "1", request.id, {"score": score, "double": double}, {"rows": request.rows}
        )

    def mark_frontend(self, name: str, serving: bool) -> None:
        self.frontends[name] = serving

    def live(self) -> bool:
        return True

    def ready(self) -> bool:
        return self.is_ready and all(self.frontends.values())

    def model_ready(self, name: str, version: str | None = None) -> bool:
        return name == "tiny" and version in (None, "1")

    def server_metadata(self) -> ServerMetadata:
        return ServerMetadata("vigie", "0.1.0", ("model_repository",))

    def model_metadata(self, name: str, version: str | None = None) -> ModelMetadata:
        self._check(name, version)
        return METADATA

    async def enrich(
        self, metadata: ModelMetadata, columns: dict[str, Any], rows: int
    ) -> tuple[dict[str, Any], None]:
        return columns, None  # every input is sent: nothing to fill

    def models(self) -> Mapping[str, tuple[str, ...]]:
        return {"tiny": ("1",)}

    def metric_model(self, model: str) -> str:
        return model if model == "tiny" else "_unknown"

    def record_failure(
        self, protocol: str, model: str, err: VigieError, *, version: str = ""
    ) -> None:
        self.failures.append((protocol, model, err.code.value))


KEYS = {"good-key": ("key_alice", {"predict"}), "no-role-key": ("key_bob", set())}


def authenticate(token: str | None, role: str, protocol: str) -> str:
    """A small key table with the same contract as ``Authenticator.check``."""
    assert protocol == Protocol_.V2_GRPC.value
    if token is None or token not in KEYS:
        raise VigieError(ErrorCode.UNAUTHENTICATED, "an API key is required")
    caller, roles = KEYS[token]
    if role not in roles:
        raise VigieError(ErrorCode.FORBIDDEN, f"{caller} lacks the role {role!r}")
    return caller


AUTH = (("authorization", "Bearer good-key"),)


@contextlib.asynccontextmanager
async def serving(
    dataplane: TinyDataPlane | None = None,
    *,
    auth: Callable[[str | None, str, str], str] | None = None,
    **overrides: Any,
) -> AsyncIterator[tuple[GrpcHandle, pb_grpc.GRPCInferenceServiceStub, grpc.aio.Channel]]:
    plane = dataplane or TinyDataPlane()
    settings = load_settings(host="127.0.0.1", grpc_port=0, **overrides)
    handle = await start_grpc(plane, settings, authenticate=auth)
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{handle.port}") as channel:
            yield handle, pb_grpc.GRPCInferenceServiceStub(channel), channel
    finally:
        await handle.stop(0)


def run(coro: Any) -> Any:
    return asyncio.run(asyncio.wait_for(coro, 60))


def typed_request(distances: list[float], carriers: list[str], **fields: Any) -> Any:
    request = pb.ModelInferRequest(model_name="tiny", **fields)
    request.inputs.add(name="distance", datatype="FP32", shape=[len(distances)])
    request.inputs[0].contents.fp32_contents.extend(distances)
    request.inputs.add(name="carrier", datatype="BYTES", shape=[len(carriers)])
    request.inputs[1].contents.bytes_contents.extend(c.encode() for c in carriers)
    return request


def raw_request(distances: list[float], carriers: list[str], **fields: Any) -> Any:
    request = pb.ModelInferRequest(model_name="tiny", **fields)
    request.inputs.add(name="distance", datatype="FP32", shape=[len(distances)])
    request.inputs.add(name="carrier", datatype="BYTES", shape=[len(carriers), 1])
    request.raw_input_contents.append(np.asarray(distances, dtype="<f4").tobytes())
    request.raw_input_contents.append(
        b"".join(struct.pack("<I", len(c.encode())) + c.encode() for c in carriers)
    )
    return request


async def status_of(call: Any) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    return caught.value.code(), caught.value.details() or ""


# --- the six methods --------------------------------------------------------------------


def test_health_and_metadata_methods_answer_from_the_data_plane() -> None:
    async def scenario() -> None:
        async with serving() as (_, stub, _channel):
            assert (await stub.ServerLive(pb.ServerLiveRequest())).live
            assert (await stub.ServerReady(pb.ServerReadyRequest())).ready
            assert (await stub.ModelReady(pb.ModelReadyRequest(name="tiny"))).ready
            server = await stub.ServerMetadata(pb.ServerMetadataRequest())
            assert (server.name, server.version, list(server.extensions)) == (
                "vigie",
                "0.1.0",
                ["model_repository"],
            )
            model = await stub.ModelMetadata(pb.ModelMetadataRequest(name="tiny", version="1"))
            assert [(t.name, t.datatype, list(t.shape)) for t in model.inputs] == [
                ("distance", "FP32", [-1]),
                ("carrier", "BYTES", [-1]),
            ]
            assert [t.name for t in model.outputs] == ["score", "double"]
            assert (model.name, list(model.versions), model.platform) == (
                "tiny",
                ["1"],
                "onnxruntime_onnx",
            )

    run(scenario())


def test_typed_request_gets_typed_outputs_with_id_parameters_and_version() -> None:
    async def scenario() -> TinyDataPlane:
        plane = TinyDataPlane()
        async with serving(plane) as (_, stub, _channel):
            request = typed_request([100.0, 30.0, 8.0], ["AA", "UA", "ZZ"], id="req-7")
            request.parameters["tag"].string_param = "x"
            response = await stub.ModelInfer(request)
        assert (response.model_name, response.model_version, response.id) == ("tiny", "1", "req-7")
        assert not response.raw_output_contents
        score = response.outputs[0]
        assert (score.name, score.datatype, list(score.shape)) == ("score", "FP32", [3])
        assert list(score.contents.fp32_contents) == [51.0, 17.0, 4.0]
        assert response.parameters["rows"].int64_param == 3
        seen = plane.requests[0]
        assert seen.protocol is Protocol_.V2_GRPC and seen.parameters == {"tag": "x"}
        assert list(seen.columns["carrier"]) == ["AA", "UA", "ZZ"]
        return plane

    run(scenario())


def test_raw_request_gets_raw_outputs_with_the_same_values() -> None:
    async def scenario() -> Any:
        async with serving() as (_, stub, _channel):
            return await stub.ModelInfer(raw_request([100.0, 30.0], ["AA", "UAX"]))

    response = run(scenario())
    assert [o.name for o in response.outputs] == ["score", "double"]
    assert not response.outputs[0].contents.fp32_contents
    score = np.frombuffer(response.raw_output_contents[0], dtype="<f4")
    assert score.tolist() == [expected_score(100.0, "AA"), expected_score(30.0, "UAX")]
    assert np.frombuffer(response.raw_output_contents[1], dtype="<f4").tolist() == [200.0, 60.0]
    assert response.id  # generated when the client sent none


def test_outputs_selection_and_raw_output_parameter() -> None:
    async def scenario() -> Any:
        async with serving() as (_, stub, _channel):
            request = typed_request([10.0], ["AA"])
            request.outputs.add(name="double")
            request.parameters["raw_output"].bool_param = True
            return await stub.ModelInfer(request)

    response = run(scenario())
    assert [o.name for o in response.outputs] == ["double"]
    assert np.frombuffer(response.raw_output_contents[0], dtype="<f4").tolist() == [20.0]


def test_a_256_row_batch_round_trips() -> None:
    distances = [float(i) for i in range(256)]
    carriers = ["AA", "UA", "B6", ""] * 64

    async def scenario() -> Any:
        async with serving() as (_, stub, _channel):
            return await stub.ModelInfer(raw_request(distances, carriers))

    response = run(scenario())
    score = np.frombuffer(response.raw_output_contents[0], dtype="<f4")
    assert score.tolist() == [
        expected_score(d, c) for d, c in zip(distances, carriers, strict=True)
    ]


# --- bad input and error mapping ---------------------------------------------------------


def _bad_requests() -> dict[str, tuple[Any, grpc.StatusCode, str]]:
    wrong_type = typed_request([1.0], ["AA"])
    wrong_type.inputs[1].datatype = "FP32"
    missing = typed_request([1.0], ["AA"])
    del missing.inputs[1]
    extra = typed_request([1.0], ["AA"])
    extra.inputs.add(name="colour", datatype="FP32", shape=[1]).contents.fp32_contents.append(1)
    short_raw = raw_request([1.0, 2.0], ["AA", "UA"])
    short_raw.raw_input_contents[0] = b"\x00" * 7
    bad_prefix = raw_request([1.0], ["AA"])
    bad_prefix.raw_input_contents[1] = struct.pack("<I", 99) + b"AA"
    unknown_output = typed_request([1.0], ["AA"])
    unknown_output.outputs.add(name="nope")
    invalid = grpc.StatusCode.INVALID_ARGUMENT
    return {
        "wrong shape": (typed_request([1.0, 2.0], ["AA"]), invalid, "carrier"),
        "wrong datatype": (wrong_type, invalid, "carrier"),
        "missing input": (missing, invalid, "carrier"),
        "extra input": (extra, invalid, "colour"),
        "infinity": (typed_request([float("inf")], ["AA"]), invalid, "distance"),
        "empty batch": (typed_request([], []), invalid, "distance"),
        "batch over limit": (typed_request([1.0] * 9, ["AA"] * 9), invalid, "distance"),
        "string too long": (typed_request([1.0], ["A" * 65]), invalid, "carrier"),
        "raw size": (short_raw, invalid, "distance"),
        "raw BYTES prefix": (bad_prefix, invalid, "carrier"),
        "unknown output": (unknown_output, invalid, "nope"),
        "unknown model": (
            pb.ModelInferRequest(model_name="nope"),
            grpc.StatusCode.NOT_FOUND,
            "nope",
        ),
        "unknown version": (
            typed_request([1.0], ["AA"], model_version="9"),
            grpc.StatusCode.NOT_FOUND,
            "9",
        ),
    }


@pytest.mark.parametrize("case", list(_bad_requests()))
def test_bad_input_is_refused_with_a_status_naming_it(case: str) -> None:
    request, expected, named = _bad_requests()[case]

    async def scenario() -> tuple[grpc.StatusCode, str]:
        async with serving(max_request_rows=8) as (_, stub, _channel):
            return await status_of(stub.ModelInfer(request))

    code, message = run(scenario())
    assert code == expected, message
    assert named in message


def test_unknown_model_metadata_and_readiness_are_not_found() -> None:
    async def scenario() -> list[grpc.StatusCode]:
        async with serving() as (_, stub, _channel):
            return [
                (await status_of(stub.ModelMetadata(pb.ModelMetadataRequest(name="nope"))))[0],
                (await status_of(stub.ModelReady(pb.ModelReadyRequest(name="nope"))))[0],
            ]

    assert run(scenario()) == [grpc.StatusCode.NOT_FOUND] * 2


def test_a_body_above_the_limit_is_invalid_argument() -> None:
    async def scenario() -> tuple[grpc.StatusCode, str]:
        async with serving(max_body_bytes=4096) as (_, stub, _channel):
            return await status_of(stub.ModelInfer(typed_request([1.0] * 600, ["AA"] * 600)))

    code, message = run(scenario())
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert "4096" in message


def test_malformed_protobuf_is_refused_by_grpc_and_the_server_keeps_serving() -> None:
    async def scenario() -> tuple[grpc.StatusCode, bool]:
        async with serving() as (_, stub, channel):
            call = channel.unary_unary(
                "/inference.GRPCInferenceService/ModelInfer",
                request_serializer=lambda raw: raw,
                response_deserializer=lambda raw: raw,
            )
            code, _ = await status_of(call(b"\xff\xff\xff\xff"))
            return code, (await stub.ServerLive(pb.ServerLiveRequest())).live

    code, live = run(scenario())
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert live


# --- interceptors ------------------------------------------------------------------------


def test_calls_above_the_concurrency_limit_are_resource_exhausted() -> None:
    async def scenario() -> tuple[grpc.StatusCode, list[float], bool]:
        plane = TinyDataPlane()
        async with serving(plane, grpc_max_concurrency=2) as (_, stub, _channel):
            held = []
            for _ in range(2):
                request = typed_request([4.0], ["AA"])
                request.parameters["hold"].bool_param = True
                held.append(asyncio.ensure_future(stub.ModelInfer(request)))
            while plane.held < 2:
                await asyncio.sleep(0.01)
            code, _ = await status_of(stub.ModelInfer(typed_request([4.0], ["AA"])))
            live = (await stub.ServerLive(pb.ServerLiveRequest())).live  # probes pass
            plane.gate.set()
            answers = await asyncio.gather(*held)
            return code, [a.outputs[0].contents.fp32_contents[0] for a in answers], live

    code, scores, live = run(scenario())
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert scores == [expected_score(4.0, "AA")] * 2
    assert live


def test_a_call_past_the_request_timeout_is_deadline_exceeded() -> None:
    async def scenario() -> tuple[grpc.StatusCode, str]:
        async with serving(request_timeout_s=0.2) as (_, stub, _channel):
            request = typed_request([1.0], ["AA"])
            request.parameters["sleep_ms"].int64_param = 5000
            return await status_of(stub.ModelInfer(request))

    code, message = run(scenario())
    assert code == grpc.StatusCode.DEADLINE_EXCEEDED
    assert "0.2" in message


@pytest.mark.parametrize(
    ("metadata", "expected"),
    [
        ((), grpc.StatusCode.UNAUTHENTICATED),
        ((("authorization", "Bearer wrong"),), grpc.StatusCode.UNAUTHENTICATED),
        ((("authorization", "Basic good-key"),), grpc.StatusCode.UNAUTHENTICATED),
        ((("authorization", "Bearer no-role-key"),), grpc.StatusCode.PERMISSION_DENIED),
        (AUTH, grpc.StatusCode.OK),
        ((("x-api-key", "good-key"),), grpc.StatusCode.OK),
    ],
)
def test_api_key_from_metadata(metadata: Any, expected: grpc.StatusCode) -> None:
    async def scenario() -> tuple[grpc.StatusCode, bool, bool, str | None]:
        plane = TinyDataPlane()
        async with serving(plane, auth=authenticate) as (_, stub, _channel):
            try:
                await stub.ModelInfer(typed_request([1.0], ["AA"]), metadata=metadata)
                code = grpc.StatusCode.OK
            except grpc.aio.AioRpcError as err:
                code = err.code()
            live = (await stub.ServerLive(pb.ServerLiveRequest())).live
            ready = (await stub.ModelReady(pb.ModelReadyRequest(name="tiny"))).ready
        return code, live, ready, plane.requests[0].caller if plane.requests else None

    code, live, ready, caller = run(scenario())
    assert code == expected
    assert live and ready  # probes need no key
    assert caller == ("key_alice" if expected == grpc.StatusCode.OK else None)


def test_metadata_methods_need_a_key() -> None:
    async def scenario() -> list[grpc.StatusCode]:
        async with serving(auth=authenticate) as (_, stub, _channel):
            codes = [
                (await status_of(stub.ModelMetadata(pb.ModelMetadataRequest(name="tiny"))))[0],
                (await status_of(stub.ServerMetadata(pb.ServerMetadataRequest())))[0],
            ]
            await stub.ModelMetadata(pb.ModelMetadataRequest(name="tiny"), metadata=AUTH)
            return codes

    assert run(scenario()) == [grpc.StatusCode.UNAUTHENTICATED] * 2


def test_each_call_writes_one_access_log_line(caplog: pytest.LogCaptureFixture) -> None:
    async def scenario() -> None:
        async with serving() as (_, stub, _channel):
            await stub.ModelInfer(typed_request([1.0], ["AA"], id="logged-1"))
            await status_of(stub.ModelInfer(pb.ModelInferRequest(model_name="nope", id="x")))

    with caplog.at_level("INFO", logger="vigie.serving.grpc.access"):
        run(scenario())
    lines = [r for r in caplog.records if r.name == "vigie.serving.grpc.access"]
    assert [(r.method, r.status, r.request_id) for r in lines] == [  # type: ignore[attr-defined]
        ("ModelInfer", "OK", "logged-1"),
        ("ModelInfer", "NOT_FOUND", "x"),
    ]
    assert all(r.peer.startswith("ipv4:127.0.0.1") for r in lines)  # type: ignore[attr-defined]
    assert all(r.duration_ms >= 0 for r in lines)  # type: ignore[attr-defined]


# --- health, reflection, binding ---------------------------------------------------------


def test_health_follows_readiness_and_reflection_lists_the_service() -> None:
    async def scenario() -> tuple[list[int], list[str]]:
        plane = TinyDataPlane()
        async with serving(plane) as (_, _stub, channel):
            health = health_pb2_grpc.HealthStub(channel)
            check = health_pb2.HealthCheckRequest(service="inference.GRPCInferenceService")
            statuses = [(await health.Check(check)).status]
            plane.is_ready = False
            for _ in range(50):
                status = (await health.Check(check)).status
                if status != statuses[0]:
                    break
                await asyncio.sleep(0.1)
            statuses.append(status)
            reflect = reflection_pb2_grpc.ServerReflectionStub(channel)
            query = reflection_pb2.ServerReflectionRequest(list_services="")
            async for answer in reflect.ServerReflectionInfo(iter([query])):
                services = [s.name for s in answer.list_services_response.service]
                break
        return statuses, services

    statuses, services = run(scenario())
    assert statuses == [
        health_pb2.HealthCheckResponse.SERVING,
        health_pb2.HealthCheckResponse.NOT_SERVING,
    ]
    assert "inference.GRPCInferenceService" in services
    assert "grpc.health.v1.Health" in services


def test_start_marks_the_front_end_and_stop_unmarks_it() -> None:
    async def scenario() -> list[dict[str, bool]]:
        plane = TinyDataPlane()
        seen = []
        async with serving(plane):
            seen.append(dict(plane.frontends))
        seen.append(dict(plane.frontends))
        return seen

    assert run(scenario()) == [{"grpc": True}, {"grpc": False}]


def test_a_port_that_cannot_be_bound_is_unavailable() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]

        async def scenario() -> None:
            plane = TinyDataPlane()
            await start_grpc(plane, load_settings(host="127.0.0.1", grpc_port=port))

        with pytest.raises(VigieError) as caught:
            run(scenario())
    assert caught.value.code is ErrorCode.UNAVAILABLE
    assert str(port) in caught.value.message


# --- the official client -----------------------------------------------------------------


async def tritonclient_calls(port: int, calls: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Run calls with ``tritonclient.grpc`` in a subprocess (its protos share our package
    name, so the two cannot be loaded in one process)."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        str(TRITON_DRIVER),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    spec = json.dumps({"url": f"127.0.0.1:{port}", "calls": calls}).encode()
    out, err = await asyncio.wait_for(process.communicate(spec), 60)
    assert process.returncode == 0, err.decode()
    results: list[dict[str, Any]] = json.loads(out)
    return results


def test_tritonclient_grpc_works_unchanged() -> None:
    distances = [float(i) for i in range(256)]
    carriers = ["AA", "UA", "ZZ", "B6"] * 64
    calls = [
        {"op": "live"},
        {"op": "ready"},
        {"op": "model_ready", "model": "tiny"},
        {"op": "server_metadata"},
        {"op": "model_metadata", "model": "tiny", "version": "1"},
        {
            "op": "infer",
            "model": "tiny",
            "id": "one",
            "inputs": [
                {"name": "distance", "datatype": "FP32", "data": [10.0]},
                {"name": "carrier", "datatype": "BYTES", "data": ["UA"]},
            ],
        },
        {
            "op": "infer",
            "model": "tiny",
            "outputs": ["double"],
            "inputs": [
                {"name": "distance", "datatype": "FP32", "data": distances},
                {"name": "carrier", "datatype": "BYTES", "data": carriers},
            ],
        },
        {
            "op": "infer",
            "model": "tiny",
            "inputs": [{"name": "distance", "datatype": "FP32", "data": [1.0]}],
        },
    ]

    async def scenario() -> list[dict[str, Any]]:
        async with serving(auth=authenticate) as (handle, _stub, _channel):
            for call in calls:
                call["headers"] = dict(AUTH)
            return await tritonclient_calls(handle.port, calls)

    live, ready, model_ready, server, model, one, batch, missing = run(scenario())
    assert live["value"] and ready["value"] and model_ready["value"]
    assert server["value"]["name"] == "vigie"
    assert [i["name"] for i in model["value"]["inputs"]] == ["distance", "carrier"]
    assert one["value"]["id"] == "one"
    assert one["value"]["outputs"]["score"] == [[expected_score(10.0, "UA")]][0]
    assert list(batch["value"]["outputs"]) == ["double"]
    assert batch["value"]["outputs"]["double"] == [2 * d for d in distances]
    assert missing["status"] == "StatusCode.INVALID_ARGUMENT"
    assert "carrier" in missing["message"]
