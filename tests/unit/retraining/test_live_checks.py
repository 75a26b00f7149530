"""``HttpLiveChecker`` over an in-process httpx transport speaking OIP v2 REST."""

from __future__ import annotations

import json
import math

import httpx
import pandas as pd

from vigie.retraining.live_checks import HttpLiveChecker, LoadLimits

SAMPLE = pd.DataFrame({"carrier": ["UA", None, "AA"], "distance": [1400.0, math.nan, 733.0]})
METADATA = {
    "name": "flight_delay",
    "inputs": [
        {"name": "carrier", "datatype": "BYTES", "shape": [-1]},
        {"name": "distance", "datatype": "FP32", "shape": [-1]},
    ],
}


def service(output: float | None = 0.3, version: str = "2", status: int = 200) -> HttpLiveChecker:
    seen: list[dict[str, object]] = []

    def handle(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v2/health/ready":
            return httpx.Response(200)
        if request.method == "GET":
            return httpx.Response(200, json=METADATA)
        body = json.loads(request.content)
        seen.append(body)
        rows = body["inputs"][0]["shape"][0]
        assert None not in body["inputs"][0]["data"]  # a missing category is sent as ""
        if status != 200:
            return httpx.Response(status, json={"error": "boom"})
        outputs = [
            {"name": "probability", "datatype": "FP32", "shape": [rows], "data": [output] * rows}
        ]
        return httpx.Response(200, json={"model_version": version, "outputs": outputs})

    return HttpLiveChecker("http://svc", "k", transport=httpx.MockTransport(handle))


def test_smoke_passes_on_finite_in_range_outputs() -> None:
    result = service().smoke(
        "flight_delay", "2", SAMPLE, requests=3, expect_version="2", bounds=(0.0, 1.0)
    )
    assert result.passed, result.detail
    assert result.data["rows"] == 3 + 1 + 2  # slices of 8 rows cycling over 3


def test_smoke_fails_on_out_of_range_missing_or_wrong_version() -> None:
    args = {"requests": 1, "expect_version": "2", "bounds": (0.0, 1.0)}
    assert "outside" in service(output=1.5).smoke("m", "2", SAMPLE, **args).detail
    assert "non-finite" in service(output=None).smoke("m", "2", SAMPLE, **args).detail
    assert "expected 2" in service(version="1").smoke("m", None, SAMPLE, **args).detail
    assert "HTTP 500" in service(status=500).smoke("m", "2", SAMPLE, **args).detail


def test_load_reports_error_ratio_and_staging_answers() -> None:
    limits = LoadLimits(seconds=0.3, concurrency=2)
    good = service().load("m", SAMPLE, limits=limits, staging_version="2")
    assert good.passed and good.data["requests"] > 0
    assert good.data["staging_answers"] == good.data["requests"]
    bad = service(status=503).load("m", SAMPLE, limits=limits, staging_version="2")
    assert not bad.passed and bad.data["error_ratio"] == 1.0


def test_wait_for_times_out_naming_the_versions_seen() -> None:
    result = service(version="1").wait_for("m", "2", SAMPLE, timeout_s=0.5)
    assert not result.passed and "last answers: 1" in result.detail
    assert service(version="2").wait_for("m", "2", SAMPLE, timeout_s=5).passed


def test_unreachable_names_the_reason() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    checker = HttpLiveChecker("http://svc", None, transport=httpx.MockTransport(refuse))
    assert "not reachable" in (checker.unreachable() or "")
    assert service().unreachable() is None
