"""OIP v2 over REST against the real BentoML service, with the official tritonclient.http."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
import tritonclient.http as triton
from tritonclient.utils import InferenceServerException

from vigie.features.catalogue import CATALOGUE
from vigie.registry import Registry
from vigie.runtime import OnnxModel

from .running import MODELS, Server

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(scope="module")
def client(server: Server) -> triton.InferenceServerClient:
    return triton.InferenceServerClient(server.host_port, network_timeout=30.0)


def real_rows(server: Server, model: str, n: int) -> tuple[pd.DataFrame, np.ndarray, str]:
    """n real flights from the production version's reference sample, and its predictions."""
    registry = Registry(server.settings)
    version = registry.resolve(model, "production")
    frame = pd.read_parquet(registry.open_artifact(model, version, "reference_sample.parquet"))
    rows = frame.iloc[:n].reset_index(drop=True)
    onnx = OnnxModel(registry.open_artifact(model, version, "model.onnx"), "cpu")
    return rows, onnx.predict(rows), version


def inputs(metadata: dict[str, Any], rows: pd.DataFrame, *, binary: bool) -> list[Any]:
    tensors = []
    for spec in metadata["inputs"]:
        column = rows[spec["name"]]
        if spec["datatype"] == "BYTES":
            values = np.asarray(
                [b"" if pd.isna(v) else str(v).encode() for v in column], dtype=object
            ).reshape(-1, 1)
        else:
            values = column.to_numpy(dtype=np.float32, na_value=np.nan).reshape(-1, 1)
        tensor = triton.InferInput(spec["name"], list(values.shape), spec["datatype"])
        tensor.set_data_from_numpy(values, binary_data=binary)
        tensors.append(tensor)
    return tensors


def test_server_and_model_metadata_and_readiness(
    client: triton.InferenceServerClient, server: Server
) -> None:
    headers = server.headers
    assert client.is_server_live(headers=dict(headers))
    assert client.is_server_ready(headers=dict(headers))
    assert client.get_server_metadata(headers=dict(headers))["name"] == "vigie"
    for model in MODELS:
        assert client.is_model_ready(model, headers=dict(headers))
        metadata = client.get_model_metadata(model, headers=dict(headers))
        assert metadata["name"] == model and metadata["platform"] == "onnxruntime_onnx"
        kinds = {i["name"]: i["datatype"] for i in metadata["inputs"]}
        assert kinds["carrier"] == "BYTES" and kinds["distance"] == "FP32"
        assert not client.is_model_ready(model, "999", headers=dict(headers))
    with pytest.raises(InferenceServerException, match="404|not served"):
        client.get_model_metadata("no_such_model", headers=dict(headers))


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("rows", [1, 256])
@pytest.mark.parametrize("binary", [True, False])
def test_inference_matches_onnx_runtime_in_process(
    client: triton.InferenceServerClient, server: Server, model: str, rows: int, binary: bool
) -> None:
    frame, expected, version = real_rows(server, model, rows)
    metadata = client.get_model_metadata(model, headers=dict(server.headers))
    output = metadata["outputs"][0]["name"]
    result = client.infer(
        model,
        inputs(metadata, frame, binary=binary),
        outputs=[triton.InferRequestedOutput(output, binary_data=binary)],
        request_id=f"req-{rows}",
        headers=dict(server.headers),
    )
    response = result.get_response()
    assert (response["model_version"], response["id"]) == (version, f"req-{rows}")
    np.testing.assert_allclose(result.as_numpy(output), expected, rtol=1e-5, atol=1e-5)


def test_a_version_by_id_and_the_typed_predict_api(server: Server) -> None:
    frame, expected, version = real_rows(server, "arrival_delay", 3)
    features = frame[[c for c in frame.columns if c in CATALOGUE]]
    flights = features.astype(object).where(features.notna(), None).to_dict(orient="records")
    answer = httpx.post(
        f"{server.rest}/predict",
        json={"model": "arrival_delay", "flights": flights},
        headers=server.headers,
        timeout=30,
    )
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert (body["model"], body["version"], body["output"]) == (
        "arrival_delay",
        version,
        "delay_minutes",
    )
    np.testing.assert_allclose(body["predictions"], expected, rtol=1e-5, atol=1e-4)
    openapi = httpx.get(f"{server.rest}/docs.json", timeout=10).json()
    assert "/predict" in openapi["paths"] and "Flight" in str(openapi)


def test_metrics_show_requests_batches_and_loaded_versions(server: Server) -> None:
    text = httpx.get(f"{server.rest}/metrics", timeout=10).text
    for name in (
        'vigie_requests_total{model="flight_delay",outcome="success",protocol="v2-rest"',
        "vigie_batch_rows_bucket",
        "vigie_queue_wait_seconds_bucket",
        "vigie_compute_seconds_bucket",
        'vigie_loaded_versions{alias="production",model="arrival_delay"',
        "vigie_payload_log_written_total",
    ):
        assert name in text, name


def test_bentoml_http_metrics_count_predict_but_not_the_oip_routes(server: Server) -> None:
    made_up = f"{server.rest}/v2/models/made-up-name/infer"
    assert httpx.post(made_up, json={}, headers=server.headers, timeout=10).status_code == 404
    predict = httpx.post(f"{server.rest}/predict", json={}, headers=server.headers, timeout=10)
    assert predict.status_code == 400  # no model, no flights: counted all the same

    text = httpx.get(f"{server.rest}/metrics", timeout=10).text
    bentoml = [line for line in text.splitlines() if line.startswith("bentoml_")]
    assert any('endpoint="/predict"' in line for line in bentoml)
    assert not [line for line in bentoml if 'endpoint="/v2' in line]
    assert 'vigie_requests_total{model="_unknown",outcome="MODEL_NOT_FOUND"' in text


def test_each_oip_request_leaves_one_access_line_in_the_server_log(
    client: triton.InferenceServerClient, server: Server
) -> None:
    frame, _, _ = real_rows(server, "flight_delay", 2)
    metadata = client.get_model_metadata("flight_delay", headers=dict(server.headers))
    request_id = f"access-{time.time_ns()}"
    client.infer(
        "flight_delay",
        inputs(metadata, frame, binary=False),
        request_id=request_id,
        headers=dict(server.headers),
    )
    lines: list[dict[str, Any]] = []
    for _ in range(100):  # the writer flushes every 50 ms; a guard, not a timing assertion
        lines = [
            entry
            for entry in map(json.loads, _json_lines(server.log))
            if entry.get("request_id") == request_id
        ]
        if lines:
            break
        time.sleep(0.1)
    (line,) = lines
    assert line["logger"] == "vigie.serving.rest.access"
    assert (line["method"], line["status"]) == ("POST", 200)
    assert line["path"] == "/v2/models/flight_delay/infer" and line["duration_ms"] > 0


def _json_lines(log: Path) -> list[str]:
    return [line for line in log.read_text().splitlines() if line.startswith("{")]
