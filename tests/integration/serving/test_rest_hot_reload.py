"""Hot reload under load on the real service: a promotion mid-traffic fails no request."""

from __future__ import annotations

import threading
from collections import Counter
from typing import Any

import httpx
import pytest

from vigie.registry import GateReport, Registry

from .running import Server

pytestmark = [pytest.mark.integration, pytest.mark.slow]

MODEL = "flight_delay"
CLIENTS = 8
MAX_REQUESTS_PER_CLIENT = 3000  # bounded even if the swap never came


def request_body(server: Server) -> dict[str, Any]:
    metadata = httpx.get(f"{server.rest}/v2/models/{MODEL}", headers=server.headers).json()
    return {
        "inputs": [
            {
                "name": spec["name"],
                "datatype": spec["datatype"],
                "shape": [4, 1],
                "data": ["UA"] * 4 if spec["datatype"] == "BYTES" else [1.0, 2.0, None, 4.0],
            }
            for spec in metadata["inputs"]
        ]
    }


def test_promotion_under_concurrent_load_fails_no_request(server: Server) -> None:
    registry = Registry(server.settings)
    old = registry.resolve(MODEL, "production")
    new = registry.resolve(MODEL, "candidate")
    assert new != old, "the fixture registers a next version as candidate"
    body = request_body(server)
    versions: list[str] = []
    failures: list[str] = []
    stop = threading.Event()
    lock = threading.Lock()

    def client() -> None:
        with httpx.Client(base_url=server.rest, headers=server.headers, timeout=30) as http:
            for _ in range(MAX_REQUESTS_PER_CLIENT):
                if stop.is_set():
                    return
                try:
                    answer = http.post(f"/v2/models/{MODEL}/infer", json=body)
                except httpx.HTTPError as err:
                    with lock:
                        failures.append(repr(err))
                    continue
                with lock:
                    if answer.status_code == 200:
                        versions.append(answer.json()["model_version"])
                    else:
                        failures.append(f"{answer.status_code} {answer.text[:200]}")

    threads = [threading.Thread(target=client) for _ in range(CLIENTS)]
    for thread in threads:
        thread.start()
    try:
        _wait(lambda: len(versions) >= 50)
        # The gates are not under test here (a two-epoch model cannot beat another one
        # reliably): an empty, passing report stands for them.
        report = GateReport(model=MODEL, version=new, results=())
        registry.promote(MODEL, new, to="production", report=report, reason="hot reload test")
        _wait(lambda: versions[-20:] == [new] * 20 and len(versions) >= 100)
    finally:
        stop.set()
        for thread in threads:
            thread.join(60)
    counts = Counter(versions)
    assert failures == [], failures[:5]
    assert counts[old] > 0 and counts[new] > 0, counts
    assert versions[-1] == new
    ready = httpx.get(f"{server.rest}/v2/models/{MODEL}/ready", headers=server.headers)
    assert ready.status_code == 200
    metadata = httpx.get(f"{server.rest}/v2/models/{MODEL}", headers=server.headers).json()
    assert metadata["versions"] == [new]  # the old version was drained and unloaded
    text = httpx.get(f"{server.rest}/metrics").text
    assert f'vigie_reloads_total{{model="{MODEL}",outcome="success"}}' in text


def _wait(condition: Any, timeout_s: float = 60.0) -> None:
    import time  # noqa: PLC0415

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError("timed out waiting for the load / the swap")
