"""The Grafana dashboards: valid dashboard JSON whose every PromQL expression parses and
selects only metrics that exist (``docs/metrics.md`` and the recording rules)."""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from .promql import DASHBOARDS, documented_metrics, known_metrics, metric_names, rules

DATASOURCE = {"type": "prometheus", "uid": "${DS_PROMETHEUS}"}

#: The dashboards, and metrics each must chart (issue 5 §3).
REQUIRED = {
    "vigie-serving": {
        "vigie_requests_total",
        "vigie_request_failures_total",
        "vigie_request_duration_seconds_bucket",
        "vigie_queue_wait_seconds_bucket",
        "vigie_compute_seconds_bucket",
        "vigie_batch_rows_bucket",
        "vigie_loaded_versions",
        "vigie_reloads_total",
    },
    "vigie-drift": {
        "vigie_drift_share_drifted_features",
        "vigie_drift_feature_score",
        "vigie_drift_detected",
        "vigie_drift_consecutive_windows",
        "vigie_prediction_mean",
        "vigie_prediction_quantile",
    },
    "vigie-features": {
        "vigie_feature_enriched_rows_total",
        "vigie_feature_lookup_seconds_bucket",
        "vigie_feature_age_seconds_bucket",
        "vigie_feature_stale_rows_total",
        "vigie_events_consumer_lag",
    },
    "vigie-model-quality": {
        "vigie_model_quality",
        "vigie_model_quality_gate",
        "vigie_label_coverage",
        "vigie_window_lag_seconds",
    },
}

_LABEL_VALUES = re.compile(r"^\s*label_values\((?:(.*),)?\s*\w+\s*\)\s*$", re.DOTALL)
_GRAFANA_RANGES = re.compile(r"\$(?:__rate_interval|__interval|__range)\b|\$\{__\w+\}")
_GRAFANA_VARIABLES = re.compile(r"\$\{\w+(?::\w+)?\}|\$\w+")


def load(path: Path) -> dict[str, Any]:
    dashboard: dict[str, Any] = json.loads(path.read_text())
    return dashboard


def panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel, rows' collapsed panels included."""
    for panel in dashboard["panels"]:
        yield panel
        yield from panel.get("panels", [])


def expressions(dashboard: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """(where, PromQL) of every panel target and every query variable."""
    for panel in panels(dashboard):
        for target in panel.get("targets", []):
            yield f"panel {panel['id']} {panel['title']!r} {target['refId']}", target["expr"]
    for variable in dashboard["templating"]["list"]:
        if variable["type"] != "query":
            continue
        query = variable["query"]
        text = query["query"] if isinstance(query, dict) else query
        match = _LABEL_VALUES.match(text)
        inner = match.group(1) if match else text
        if inner and inner.strip():
            yield f"variable {variable['name']}", inner


def as_promql(expr: str) -> str:
    """A Grafana expression with its variables replaced, as Prometheus would receive it."""
    return _GRAFANA_VARIABLES.sub("x", _GRAFANA_RANGES.sub("5m", expr))


@pytest.fixture(params=DASHBOARDS, ids=lambda path: path.name)
def dashboard(request: pytest.FixtureRequest) -> dict[str, Any]:
    return load(request.param)


def test_the_dashboards_exist_with_distinct_uids() -> None:
    uids = [load(path)["uid"] for path in DASHBOARDS]
    assert sorted(uids) == sorted(REQUIRED)


def test_dashboard_is_valid_grafana_json(dashboard: dict[str, Any]) -> None:
    assert dashboard["title"].strip()
    assert isinstance(dashboard["schemaVersion"], int) and dashboard["schemaVersion"] >= 36
    assert "id" not in dashboard or dashboard["id"] is None, "an exported id breaks imports"
    variables = {variable["name"]: variable for variable in dashboard["templating"]["list"]}
    source = variables["DS_PROMETHEUS"]
    assert (source["type"], source["query"]) == ("datasource", "prometheus")
    ids = [panel["id"] for panel in panels(dashboard)]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    for panel in panels(dashboard):
        position = panel["gridPos"]
        assert position["x"] >= 0 and position["x"] + position["w"] <= 24, panel["title"]
        if panel["type"] == "row":
            continue
        assert panel["title"].strip() and panel.get("description", "").strip()
        assert panel["datasource"] == DATASOURCE, panel["title"]
        assert panel["targets"], f"{panel['title']} has no query"
        for target in panel["targets"]:
            assert target["datasource"] == DATASOURCE, panel["title"]
            assert target["expr"].strip() and target["refId"]
        for variable in re.findall(r"\$(\w+)", json.dumps(panel["targets"])):
            assert variable.startswith("__") or variable in variables, (
                f"{panel['title']} uses an undefined variable ${variable}"
            )
        repeat = panel.get("repeat")
        assert repeat is None or repeat in variables


def test_dashboard_selects_only_metrics_that_exist(dashboard: dict[str, Any]) -> None:
    known = known_metrics()
    for where, expr in expressions(dashboard):
        names = metric_names(expr)
        assert names, f"{dashboard['uid']} {where} selects no metric: {expr}"
        unknown = names - known
        assert not unknown, f"{dashboard['uid']} {where} selects unknown {unknown}: {expr}"


def test_dashboard_charts_what_it_is_for(dashboard: dict[str, Any]) -> None:
    charted = set().union(*(metric_names(expr) for _, expr in expressions(dashboard)))
    missing = REQUIRED[dashboard["uid"]] - charted
    assert not missing, f"{dashboard['uid']} charts none of {missing}"


def test_every_documented_metric_is_charted_or_alerted_on() -> None:
    used: set[str] = set()
    for path in DASHBOARDS:
        for _, expr in expressions(load(path)):
            used |= metric_names(expr)
    for rule in rules():
        used |= metric_names(rule["expr"])
    histograms_used = {name.rsplit("_", 1)[0] for name in used if name.endswith("_bucket")}
    unused = {
        name
        for name in documented_metrics() - used
        if name.rsplit("_", 1)[0] not in histograms_used  # _sum/_count of a charted histogram
    }
    assert not unused, f"documented in docs/metrics.md but on no dashboard or rule: {unused}"


@pytest.mark.integration
def test_every_dashboard_expression_parses(
    promtool: str, tmp_path: Path, dashboard: dict[str, Any]
) -> None:
    """promtool has no offline query parser, but `check rules` parses each rule's PromQL."""
    found = list(expressions(dashboard))
    group = {
        "name": dashboard["uid"],
        "rules": [
            {"record": f"grafana:expression:{i}", "expr": as_promql(expr)}
            for i, (_, expr) in enumerate(found)
        ],
    }
    path = tmp_path / "dashboard-expressions.yml"
    path.write_text(yaml.safe_dump({"groups": [group]}))
    result = subprocess.run(
        [promtool, "check", "rules", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    numbered = "\n".join(f"{i}: {where}: {expr}" for i, (where, expr) in enumerate(found))
    assert result.returncode == 0, f"{result.stdout}{result.stderr}\n{numbered}"
    assert f"SUCCESS: {len(found)} rules found" in result.stdout
