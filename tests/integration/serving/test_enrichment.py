"""Schedule-only requests on the live service, over OIP REST and gRPC: the service fills
every other input from its online store, and answers what the gated model answers on the
rows the training snapshots compute for the same flights."""

from __future__ import annotations

import time
from datetime import UTC, date, datetime
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
import tritonclient.http as triton_http

from vigie.events.payload_log import read_entries
from vigie.features.processor import load_reference
from vigie.features.store import SqliteStore
from vigie.registry import Registry
from vigie.replay.events import load_schedule
from vigie.replay.source import FlightWindow, feature_defs, load_window
from vigie.runtime import OnnxModel

from .running import WINDOW, Server
from .test_grpc_service import service as grpc_service  # noqa: F401 (fixture)
from .test_grpc_service import triton

pytestmark = [pytest.mark.integration, pytest.mark.slow]

MODEL = "flight_delay"
DAY = date(2013, 1, 6)
ROWS = 24


@pytest.fixture(scope="module")
def flights(server: Server) -> tuple[FlightWindow, np.ndarray]:
    """The store filled with the window's events (what the processor would have written),
    and flights of one day with the model's inputs as the training snapshots compute them,
    and the production version's predictions on those full rows."""
    settings = server.settings
    store = SqliteStore(settings.home / "features" / "online.sqlite")
    try:
        load_reference(settings, store)
        schedule = load_schedule(settings, WINDOW[0], WINDOW[1])
        events = [schedule.event(i) for i in range(len(schedule))]
        for start in range(0, len(events), 5000):
            store.apply(events[start : start + 5000])
    finally:
        store.close()
    registry = Registry(settings)
    version = registry.resolve(MODEL, "production")
    onnx = OnnxModel(registry.open_artifact(MODEL, version, "model.onnx"), "cpu")
    names = tuple(onnx.inputs)
    window = load_window(settings, DAY, DAY, feature_defs({MODEL: names}))
    pick = np.linspace(0, len(window) - 1, ROWS).astype(int)
    columns = {name: window.features[name][pick] for name in names}
    expected = onnx.predict(pd.DataFrame(columns))
    return window, np.stack([pick, expected.astype(np.float64)])


def _schedule(window: FlightWindow, pick: np.ndarray) -> dict[str, list[str]]:
    stamps = [
        datetime.fromtimestamp(v / 1e6, UTC).isoformat() for v in window.departure_us[pick].tolist()
    ]
    return {
        "carrier": [str(v) for v in window.features["carrier"][pick]],
        "origin": [str(v) for v in window.features["origin"][pick]],
        "dest": [str(v) for v in window.features["dest"][pick]],
        "sched_dep": stamps,
    }


def _flights(window: FlightWindow, pick: np.ndarray) -> np.ndarray:
    assert window.flight_number is not None
    return window.flight_number[pick].astype(np.int64)


def test_metadata_lists_the_optional_and_request_inputs(server: Server) -> None:
    answer = httpx.get(f"{server.rest}/v2/models/{MODEL}", headers=server.headers, timeout=10)
    document = answer.json()
    names = {i["name"] for i in document["inputs"]}
    assert "sched_dep" not in names  # "inputs" stays the model's own
    optional = set(document["parameters"]["optional_inputs"])
    assert {"temp", "hour", "plane_year", "origin_backlog_1h"} <= optional <= names
    assert not {"carrier", "origin", "dest"} & optional
    request_inputs = {i["name"]: i["datatype"] for i in document["parameters"]["request_inputs"]}
    assert request_inputs == {"sched_dep": "BYTES", "tailnum": "BYTES", "flight": "INT64"}


def test_a_schedule_only_rest_request_is_answered_as_the_full_row(
    server: Server, flights: tuple[FlightWindow, np.ndarray]
) -> None:
    window, (pick, expected) = flights[0], flights[1]
    client = triton_http.InferenceServerClient(server.host_port, network_timeout=30.0)
    tensors = []
    for name, values in _schedule(window, pick.astype(int)).items():
        data = np.asarray([v.encode() for v in values], dtype=object).reshape(-1, 1)
        tensor = triton_http.InferInput(name, list(data.shape), "BYTES")
        tensor.set_data_from_numpy(data, binary_data=False)
        tensors.append(tensor)
    numbers = _flights(window, pick.astype(int)).reshape(-1, 1)
    flight = triton_http.InferInput("flight", list(numbers.shape), "INT64")
    flight.set_data_from_numpy(numbers, binary_data=True)
    tensors.append(flight)
    result = client.infer(MODEL, tensors, request_id="enrich-rest", headers=server.headers)
    (output,) = (o["name"] for o in result.get_response()["outputs"])
    np.testing.assert_allclose(result.as_numpy(output).ravel(), expected, atol=1e-5)
    entry = _logged(server, "enrich-rest")
    assert "origin_backlog_1h" in entry["enrichment"]["filled"]
    assert entry["enrichment"]["stale"] == {}
    assert set(entry["inputs"]) >= {"temp", "origin_dep_delay_1h", "hour"}


def test_a_schedule_only_grpc_request_is_answered_as_the_full_row(
    grpc_service: dict[str, Any],  # noqa: F811
    flights: tuple[FlightWindow, np.ndarray],
) -> None:
    window, (pick, expected) = flights[0], flights[1]
    inputs = [
        {"name": name, "datatype": "BYTES", "data": values}
        for name, values in _schedule(window, pick.astype(int)).items()
    ]
    inputs.append(
        {"name": "flight", "datatype": "FP32", "data": _flights(window, pick.astype(int)).tolist()}
    )
    (answer,) = triton(
        grpc_service, {"op": "infer", "model": MODEL, "id": "enrich-grpc", "inputs": inputs}
    )
    assert answer["ok"], answer
    (values,) = answer["value"]["outputs"].values()
    np.testing.assert_allclose(np.asarray(values, dtype=np.float64), expected, atol=1e-5)


def test_without_a_departure_the_service_says_what_it_needs(server: Server) -> None:
    body = {
        "inputs": [
            {"name": n, "datatype": "BYTES", "shape": [1], "data": [v]}
            for n, v in (("carrier", "AA"), ("origin", "JFK"), ("dest", "MIA"))
        ]
    }
    answer = httpx.post(
        f"{server.rest}/v2/models/{MODEL}/infer", json=body, headers=server.headers, timeout=10
    )
    assert answer.status_code == 400
    assert "sched_dep" in answer.json()["error"]


def _logged(server: Server, request_id: str) -> dict[str, Any]:
    for _ in range(50):
        for entry in read_entries(server.settings, limit=100_000):
            if entry.data["request_id"] == request_id:
                return entry.data
        time.sleep(0.2)
    raise AssertionError(f"no payload entry for {request_id}")
