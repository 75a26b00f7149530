"""OIP v2 over gRPC against the real BentoML service, with the official tritonclient.

The service runs as a subprocess (``bentoml serve vigie.serving.service:...``) on
free loopback ports over a small trained registry (the ``server`` fixture of this folder's
conftest, both models in production). tritonclient.grpc
runs in a subprocess too (``tests/unit/serving/test_grpc_tritonclient.py``): its protos
share vigie's ``inference`` package, and protobuf allows one definition per process.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from vigie.serving.harness import wait_until

from .running import Server

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[3]
DRIVER = ROOT / "tests" / "unit" / "serving" / "test_grpc_tritonclient.py"
MODELS = ("flight_delay", "arrival_delay")
MAX_ROWS = 300
START_TIMEOUT_S = 180.0
SERVICE = "inference.GRPCInferenceService"


def wait_serving(port: int, process: subprocess.Popen[bytes]) -> None:
    request = health_pb2.HealthCheckRequest(service=SERVICE)

    def serving() -> bool:
        try:
            with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
                answer = health_pb2_grpc.HealthStub(channel).Check(request, timeout=1)
        except grpc.RpcError:
            return False
        return bool(answer.status == health_pb2.HealthCheckResponse.SERVING)

    wait_until(serving, f"gRPC on port {port}", process, timeout=START_TIMEOUT_S)


@pytest.fixture(scope="module")
def service(server: Server) -> dict[str, Any]:
    """The real service of the serving conftest (trained registry, free ports), over gRPC."""
    wait_serving(server.grpc_port, server.process)
    return {"port": server.grpc_port, "headers": {"authorization": f"Bearer {server.key}"}}


def triton(service: dict[str, Any], *calls: dict[str, Any]) -> list[dict[str, Any]]:
    for call in calls:
        call.setdefault("headers", service["headers"])
    spec = json.dumps({"url": f"127.0.0.1:{service['port']}", "calls": list(calls)})
    done = subprocess.run(
        [sys.executable, str(DRIVER)],
        input=spec.encode(),
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr.decode()
    results: list[dict[str, Any]] = json.loads(done.stdout)
    return results


def inputs_for(metadata: dict[str, Any], rows: int, **override: Any) -> list[dict[str, Any]]:
    """One tensor per model input: a carrier-like string or a plain number per row."""
    tensors = []
    for spec in metadata["inputs"]:
        value = "AA" if spec["datatype"] == "BYTES" else 1.0
        tensor = {"name": spec["name"], "datatype": spec["datatype"], "data": [value] * rows}
        tensors.append({**tensor, **override.get(spec["name"], {})})
    return tensors


@pytest.fixture(scope="module")
def metadata(service: dict[str, Any]) -> dict[str, dict[str, Any]]:
    answers = triton(service, *({"op": "model_metadata", "model": m} for m in MODELS))
    assert all(a["ok"] for a in answers), answers
    return {m: a["value"] for m, a in zip(MODELS, answers, strict=True)}


def test_health_readiness_and_metadata(service: dict[str, Any]) -> None:
    live, ready, server, *models = triton(
        service,
        {"op": "live"},
        {"op": "ready"},
        {"op": "server_metadata"},
        *({"op": "model_ready", "model": m} for m in MODELS),
    )
    assert live["value"] and ready["value"]
    assert server["value"]["name"]
    assert all(m["value"] for m in models)


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("rows", [1, 256])
def test_inference_on_both_models(
    service: dict[str, Any], metadata: dict[str, dict[str, Any]], model: str, rows: int
) -> None:
    (answer,) = triton(
        service,
        {
            "op": "infer",
            "model": model,
            "id": f"it-{rows}",
            "inputs": inputs_for(metadata[model], rows),
        },
    )
    assert answer["ok"], answer
    assert answer["value"]["id"] == f"it-{rows}"
    assert answer["value"]["model_version"] in metadata[model]["versions"]
    (values,) = answer["value"]["outputs"].values()
    assert len(values) == rows


def _bad_cases(meta: dict[str, Any]) -> dict[str, tuple[dict[str, Any], str, str]]:
    names = {s["datatype"]: s["name"] for s in meta["inputs"]}
    text, number = names["BYTES"], names["FP32"]
    inputs = inputs_for(meta, 2)
    invalid = "StatusCode.INVALID_ARGUMENT"
    infer = {"op": "infer", "model": meta["name"]}
    extra = {"name": "colour", "datatype": "FP32", "data": [1.0, 2.0]}
    return {
        "wrong shape": (
            {**infer, "inputs": inputs_for(meta, 2, **{number: {"shape": [1, 2]}})},
            invalid,
            number,
        ),
        "wrong datatype": (
            {
                **infer,
                "inputs": inputs_for(meta, 2, **{text: {"datatype": "FP32", "data": [1.0, 2.0]}}),
            },
            invalid,
            text,
        ),
        "missing input": (
            {**infer, "inputs": [i for i in inputs if i["name"] != text]},
            invalid,
            text,
        ),
        "extra input": ({**infer, "inputs": [*inputs, extra]}, invalid, "colour"),
        "infinity": (
            {**infer, "inputs": inputs_for(meta, 2, **{number: {"data": [1.0, float("inf")]}})},
            invalid,
            number,
        ),
        "empty batch": ({**infer, "inputs": inputs_for(meta, 0)}, invalid, "empty"),
        "batch over limit": (
            {**infer, "inputs": inputs_for(meta, MAX_ROWS + 1)},
            invalid,
            str(MAX_ROWS),
        ),
        "string too long": (
            {**infer, "inputs": inputs_for(meta, 2, **{text: {"data": ["A" * 500] * 2}})},
            invalid,
            text,
        ),
        "unknown model": (
            {**infer, "model": "no_such_model", "inputs": inputs},
            "StatusCode.NOT_FOUND",
            "no_such_model",
        ),
        "unknown version": (
            {**infer, "version": "999999", "inputs": inputs},
            "StatusCode.NOT_FOUND",
            "999999",
        ),
    }


@pytest.mark.parametrize(
    "case",
    [
        "wrong shape",
        "wrong datatype",
        "missing input",
        "extra input",
        "infinity",
        "empty batch",
        "batch over limit",
        "string too long",
        "unknown model",
        "unknown version",
    ],
)
def test_bad_input_over_grpc(
    service: dict[str, Any], metadata: dict[str, dict[str, Any]], case: str
) -> None:
    call, status, named = _bad_cases(metadata["flight_delay"])[case]
    (answer,) = triton(service, call)
    assert not answer["ok"], answer
    assert answer["status"] == status, answer
    assert named in answer["message"]


def test_a_call_without_a_key_is_unauthenticated(service: dict[str, Any]) -> None:
    (answer,) = triton(service, {"op": "model_metadata", "model": MODELS[0], "headers": {}})
    assert answer["status"] == "StatusCode.UNAUTHENTICATED"


def test_health_and_reflection_list_the_service(service: dict[str, Any]) -> None:
    with grpc.insecure_channel(f"127.0.0.1:{service['port']}") as channel:
        health = health_pb2_grpc.HealthStub(channel)
        check = health.Check(health_pb2.HealthCheckRequest(service=SERVICE), timeout=5)
        reflect = reflection_pb2_grpc.ServerReflectionStub(channel)
        query = reflection_pb2.ServerReflectionRequest(list_services="")
        answer = next(iter(reflect.ServerReflectionInfo(iter([query]), timeout=5)))
    assert check.status == health_pb2.HealthCheckResponse.SERVING
    assert SERVICE in [s.name for s in answer.list_services_response.service]


def test_each_call_leaves_one_access_line_in_the_server_log(
    service: dict[str, Any], metadata: dict[str, dict[str, Any]], server: Server
) -> None:
    request_id = f"access-{time.time_ns()}"
    call = {"op": "infer", "model": MODELS[0], "id": request_id}
    (answer,) = triton(service, {**call, "inputs": inputs_for(metadata[MODELS[0]], 2)})
    assert answer["ok"], answer
    lines: list[dict[str, Any]] = []
    for _ in range(100):  # the writer flushes every 50 ms; a guard, not a timing assertion
        text = server.log.read_text().splitlines()
        entries = [json.loads(line) for line in text if line.startswith("{")]
        lines = [e for e in entries if e.get("request_id") == request_id]
        if lines:
            break
        time.sleep(0.1)
    (line,) = lines
    assert line["logger"] == "vigie.serving.grpc.access" and line["msg"] == "grpc ModelInfer OK"
    assert (line["model"], line["status"]) == (MODELS[0], "OK")
    assert line["caller"].startswith("key_") and line["duration_ms"] > 0
