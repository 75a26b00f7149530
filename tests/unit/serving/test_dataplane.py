"""The data plane over a real registry and real ONNX Runtime sessions of a tiny model."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from prometheus_client import REGISTRY

from vigie.config import Settings
from vigie.errors import ErrorCode, VigieError
from vigie.events.payload_entry import encode_entry
from vigie.registry import Registry
from vigie.serving.dataplane import ServingDataPlane
from vigie.serving.types import Datatype, InferRequest, Protocol_

from .tiny import MODEL, promote, register_tiny, sync


class ListLog:
    """Collects payload-log entries (the real PayloadLog writes them to segments)."""

    def __init__(self) -> None:
        self.entries: list[dict[str, Any]] = []

    def log(self, build: Callable[[], dict[str, Any]]) -> None:
        # The entry as the payload log writes it: built, then encoded to JSON.
        self.entries.append(json.loads(encode_entry(build())))


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "home"


@pytest.fixture
def make(home: Path, make_settings: Callable[..., Settings]) -> Callable[..., Settings]:
    def build(**extra: Any) -> Settings:
        values = {"device": "cpu", "reload_interval_s": 0.05, "max_batch_rows": 16} | extra
        return make_settings(home, None, **values)

    return build


@pytest.fixture
def registry(make: Callable[..., Settings], tmp_path: Path) -> Registry:
    """Versions 1 (production, offset 1000) and 2 (staging, offset 2000) of the tiny model."""
    registry = Registry(make())
    register_tiny(registry, tmp_path / "v1", 1000.0)
    promote(registry, "1", "production")
    register_tiny(registry, tmp_path / "v2", 2000.0)
    promote(registry, "2", "staging")
    return registry


def request(
    distance: list[float], *, version: str | None = None, protocol: Protocol_ = Protocol_.V2_REST
) -> InferRequest:
    carriers = np.empty(len(distance), dtype=object)
    carriers[:] = ["AA"] * len(distance)
    return InferRequest(
        model=MODEL,
        version=version,
        id="req",
        columns={"carrier": carriers, "distance": np.asarray(distance, dtype=np.float32)},
        rows=len(distance),
        protocol=protocol,
        caller="key_test",
    )


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


@sync
async def test_start_serves_production_and_records_the_payload(
    registry: Registry, make: Callable[..., Settings]
) -> None:
    log = ListLog()
    plane = ServingDataPlane(make(), registry=registry, payload_log=log)
    assert not plane.ready()
    await plane.start()
    try:
        assert plane.ready() and plane.model_ready(MODEL) and plane.models() == {MODEL: ("1",)}
        metadata = plane.model_metadata(MODEL)
        assert [(t.name, t.datatype) for t in metadata.inputs] == [
            ("carrier", Datatype.BYTES),
            ("distance", Datatype.FP32),
        ]
        result = await plane.infer(request([1.0, 2.0]))
        assert (result.version, result.id) == ("1", "req")
        assert result.outputs["probability"].tolist() == [1002.0, 1003.0]  # distance+1+1000
        (entry,) = log.entries
        assert entry["route"] == "production" and entry["caller"] == "key_test"
        assert entry["inputs"]["distance"] == [1.0, 2.0] and entry["outputs"]["probability"]
        plane.mark_frontend("grpc", False)
        assert not plane.ready()
        plane.mark_frontend("grpc", True)
        assert plane.ready()
    finally:
        await plane.stop()


@sync
async def test_a_version_asked_by_id_is_loaded_on_demand(
    registry: Registry, make: Callable[..., Settings]
) -> None:
    plane = ServingDataPlane(make(), registry=registry)
    await plane.start()
    try:
        assert not plane.model_ready(MODEL, "2")
        assert plane.model_metadata(MODEL, "2").versions == ("2",)
        result = await plane.infer(request([0.0], version="2"))
        assert result.version == "2" and result.outputs["probability"].tolist() == [2001.0]
        assert plane.model_ready(MODEL, "2")
    finally:
        await plane.stop()


@sync
async def test_unknown_models_and_versions_are_model_not_found(
    registry: Registry, make: Callable[..., Settings]
) -> None:
    plane = ServingDataPlane(make(), registry=registry)
    await plane.start()
    try:
        for model, version in (("nope", None), (MODEL, "9"), (MODEL, "x"), ("Bad Name", "1")):
            with pytest.raises(VigieError) as caught:
                plane.model_metadata(model, version)
            assert caught.value.code is ErrorCode.MODEL_NOT_FOUND
            req = request([1.0], version=version)
            req.model = model
            with pytest.raises(VigieError) as caught:
                await plane.infer(req)
            assert caught.value.code is ErrorCode.MODEL_NOT_FOUND
    finally:
        await plane.stop()


@sync
async def test_hot_reload_under_load_fails_no_request(
    registry: Registry, make: Callable[..., Settings]
) -> None:
    plane = ServingDataPlane(make(), registry=registry)
    await plane.start()
    versions: list[str] = []
    errors: list[BaseException] = []
    stop = asyncio.Event()

    async def client(protocol: Protocol_) -> None:
        for _ in range(2000):  # bounded
            if stop.is_set():
                return
            try:
                result = await plane.infer(request([1.0, 2.0, 3.0], protocol=protocol))
                offset = {"1": 1000.0, "2": 2000.0}[result.version]
                assert result.outputs["probability"].tolist() == [
                    offset + 2,
                    offset + 3,
                    offset + 4,
                ]
                versions.append(result.version)
            except BaseException as err:  # noqa: BLE001 - every failure is the finding
                errors.append(err)
            await asyncio.sleep(0)

    try:
        clients = [
            asyncio.create_task(client(p)) for p in (Protocol_.V2_REST, Protocol_.V2_GRPC) * 4
        ]
        await asyncio.sleep(0.2)
        await asyncio.to_thread(promote, registry, "2", "production")
        for _ in range(200):
            if versions[-8:] == ["2"] * 8:
                break
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.1)
        stop.set()
        await asyncio.gather(*clients)
    finally:
        await plane.stop()
    assert errors == []
    assert "1" in versions and versions[-1] == "2"
    assert versions.index("2") > 0 and "1" not in versions[versions.index("2") + 50 :]
    assert sample("vigie_reloads_total", model=MODEL, outcome="success") >= 1


@sync
async def test_a_version_that_fails_to_load_leaves_the_old_one_serving(
    registry: Registry, make: Callable[..., Settings], tmp_path: Path
) -> None:
    plane = ServingDataPlane(make(), registry=registry)
    await plane.start()
    failures = sample("vigie_reloads_total", model=MODEL, outcome="failure")
    try:
        register_tiny(registry, tmp_path / "v3", 3000.0, corrupt=True)
        promote(registry, "3", "production")
        for _ in range(100):
            if sample("vigie_reloads_total", model=MODEL, outcome="failure") > failures:
                break
            await asyncio.sleep(0.05)
        assert sample("vigie_reloads_total", model=MODEL, outcome="failure") == failures + 1
        result = await plane.infer(request([0.0]))
        assert result.version == "1" and plane.ready()
    finally:
        await plane.stop()


@sync
async def test_a_canary_sends_its_share_to_staging(
    registry: Registry, make: Callable[..., Settings]
) -> None:
    log = ListLog()
    plane = ServingDataPlane(make(canary_share=0.25), registry=registry, payload_log=log)
    await plane.start()
    try:
        results = [await plane.infer(request([0.0])) for _ in range(20)]
    finally:
        await plane.stop()
    assert [r.version for r in results].count("2") == 5
    assert sorted({(e["version"], e["route"]) for e in log.entries}) == [
        ("1", "production"),
        ("2", "canary"),
    ]


@sync
async def test_a_shadow_mirrors_to_staging_without_changing_the_answer(
    registry: Registry, make: Callable[..., Settings]
) -> None:
    log = ListLog()
    plane = ServingDataPlane(make(shadow=True), registry=registry, payload_log=log)
    await plane.start()
    try:
        results = [await plane.infer(request([0.0])) for _ in range(5)]
        for _ in range(100):
            if len(log.entries) == 10:
                break
            await asyncio.sleep(0.01)
    finally:
        await plane.stop()
    assert {r.version for r in results} == {"1"}
    assert all(r.outputs["probability"].tolist() == [1001.0] for r in results)
    shadows = [e for e in log.entries if e["route"] == "shadow"]
    assert len(shadows) == 5 and {e["version"] for e in shadows} == {"2"}
    assert shadows[0]["outputs"]["probability"] == [2001.0]


@sync
async def test_requests_of_both_protocols_share_one_batch(
    registry: Registry, make: Callable[..., Settings]
) -> None:
    plane = ServingDataPlane(make(max_batch_rows=64), registry=registry)
    await plane.start()
    before = sample("vigie_batch_rows_count", model=MODEL, version="1")
    try:
        protocols = [Protocol_.V2_REST, Protocol_.V2_GRPC, Protocol_.PREDICT] * 10
        results = await asyncio.gather(
            *(plane.infer(request([float(i)], protocol=p)) for i, p in enumerate(protocols))
        )
    finally:
        await plane.stop()
    assert [r.outputs["probability"][0] for r in results] == [1001.0 + i for i in range(30)]
    batches = sample("vigie_batch_rows_count", model=MODEL, version="1") - before
    assert batches == 1  # 30 one-row requests of three protocols, one model call
