"""A real Prometheus scrapes the real prediction service and evaluates vigie's rules."""

from __future__ import annotations

import math
from functools import partial
from typing import Any

import httpx
import pytest

from ..serving.running import MODELS, Server
from .conftest import StartPrometheus
from .prometheus_server import Prometheus, ScrapeTarget
from .promql import alerts, rule_groups

pytestmark = [pytest.mark.integration, pytest.mark.slow]

#: Valid predictions per model in each of the two rounds (two rounds, so that the counters
#: grow between scrapes and rate() has something to measure).
PER_ROUND = 3
ROUNDS = 2


def request_body(http: httpx.Client, model: str) -> dict[str, Any]:
    metadata = http.get(f"/v2/models/{model}").json()
    return {
        "inputs": [
            {
                "name": spec["name"],
                "datatype": spec["datatype"],
                "shape": [2, 1],
                "data": ["UA", "DL"] if spec["datatype"] == "BYTES" else [1.0, 2.0],
            }
            for spec in metadata["inputs"]
        ]
    }


def values(prometheus: Prometheus, expr: str) -> dict[str, float]:
    """``expr``'s instant vector as {"label=value,...": sample value}, ``__name__`` left out."""
    return {
        ",".join(f"{k}={v}" for k, v in sorted(sample["metric"].items()) if k != "__name__"): (
            float(sample["value"][1])
        )
        for sample in prometheus.query(expr)
    }


def total(prometheus: Prometheus, expr: str) -> float:
    return sum(values(prometheus, expr).values())


def _successes_are(prometheus: Prometheus, expected: int) -> bool:
    return total(prometheus, 'vigie_requests_total{outcome="success"}') == expected


def send_round(server: Server, bodies: dict[str, dict[str, Any]]) -> None:
    with httpx.Client(base_url=server.rest, headers=server.headers, timeout=30) as http:
        for model, body in bodies.items():
            for _ in range(PER_ROUND):
                answer = http.post(f"/v2/models/{model}/infer", json=body)
                assert answer.status_code == 200, answer.text
        refused = http.post("/v2/models/flight_delay/infer", json={"inputs": "not a list"})
        assert refused.status_code == 400, refused.text


def test_prometheus_scrapes_the_service_and_evaluates_the_rules(
    server: Server, prometheus: StartPrometheus
) -> None:
    prom = prometheus([ScrapeTarget("vigie-serving", server.host_port)])
    prom.wait_for("a first scrape", lambda: total(prom, 'up{job="vigie-serving"}') == 1)
    with httpx.Client(base_url=server.rest, headers=server.headers, timeout=30) as http:
        bodies = {model: request_body(http, model) for model in MODELS}

    for done in range(1, ROUNDS + 1):
        send_round(server, bodies)
        expected = done * PER_ROUND * len(MODELS)
        prom.wait_for(
            f"round {done} in Prometheus",
            partial(_successes_are, prom, expected),
        )

    sent = ROUNDS * PER_ROUND
    assert values(prom, 'sum by (model) (vigie_requests_total{outcome="success"})') == {
        f"model={model}": sent for model in MODELS
    }
    assert values(prom, "sum by (model, code) (vigie_request_failures_total)") == {
        "code=INVALID_INPUT,model=flight_delay": ROUNDS
    }
    assert values(
        prom, 'sum by (model) (vigie_request_duration_seconds_count{protocol="v2-rest"})'
    ) == {f"model={model}": sent for model in MODELS}
    loaded = values(prom, 'max by (model) (vigie_loaded_versions{alias="production"})')
    assert loaded == {f"model={model}": 1 for model in MODELS}
    assert total(prom, "vigie_payload_log_dropped_total") == 0

    _check_rules_loaded_and_healthy(prom)
    _check_recording_rules(prom)
    assert prom.query("ALERTS") == [], "a healthy service raised an alert"


def _check_rules_loaded_and_healthy(prom: Prometheus) -> None:
    def evaluated() -> bool:
        groups = prom.api("rules")["groups"]
        return all(rule["health"] == "ok" for group in groups for rule in group["rules"])

    prom.wait_for("every rule to be evaluated", evaluated)
    groups = prom.api("rules")["groups"]
    assert sorted(group["name"] for group in groups) == sorted(g["name"] for g in rule_groups())
    loaded_alerts = [
        rule["name"] for group in groups for rule in group["rules"] if rule["type"] == "alerting"
    ]
    assert sorted(loaded_alerts) == sorted(rule["alert"] for rule in alerts())


def _check_recording_rules(prom: Prometheus) -> None:
    # Rates need a few evaluations after the second round: wait until the windows hold it.
    prom.wait_for(
        "the recorded request rates",
        lambda: total(prom, 'model_protocol_outcome:vigie_requests:rate5m{outcome="success"}') > 0,
    )
    # The only failures are client errors (INVALID_INPUT): they do not count against the SLO.
    assert values(prom, "vigie:slo_errors:ratio_rate5m") == {"": 0}
    assert total(prom, 'model_protocol_outcome:vigie_requests:rate5m{outcome="INVALID_INPUT"}') > 0
    p99 = values(prom, "model_protocol:vigie_request_duration_seconds:p99_rate5m")
    assert set(p99) == {f"model={model},protocol=v2-rest" for model in MODELS}
    assert all(math.isfinite(value) and value > 0 for value in p99.values()), p99
