"""The Prometheus rules: promtool checks and unit tests, and what every alert must carry."""

from __future__ import annotations

import subprocess
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import REGISTRY
from prometheus_client.metrics_core import Metric

from vigie.events.consume import ConsumerMetrics
from vigie.monitoring.metrics import SidecarMetrics

from .promql import (
    RULE_TESTS,
    RULES,
    RUNBOOK,
    SCRAPE_CONFIG,
    alerts,
    documented_metrics,
    known_metrics,
    markdown_anchors,
    metric_names,
    rules,
)

pytestmark = pytest.mark.integration

SEVERITIES = {"critical", "warning", "info"}
RUNBOOK_URL_PREFIX = "docs/runbooks/drift.md#"


def run_promtool(promtool: str, *args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [promtool, *map(str, args)], capture_output=True, text=True, timeout=120, check=False
    )


def test_promtool_check_rules_is_clean(promtool: str) -> None:
    result = run_promtool(promtool, "check", "rules", RULES)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout
    assert "WARNING" not in result.stdout + result.stderr


def test_promtool_rule_unit_tests_pass(promtool: str) -> None:
    assert RULE_TESTS, "monitoring/prometheus/tests/ has no test file"
    result = run_promtool(promtool, "test", "rules", *RULE_TESTS)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("SUCCESS") == len(RULE_TESTS), result.stdout


def test_promtool_check_config_loads_the_rules(promtool: str) -> None:
    result = run_promtool(promtool, "check", "config", SCRAPE_CONFIG)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "rules.yml" in result.stdout
    config = yaml.safe_load(SCRAPE_CONFIG.read_text())
    jobs = {
        job["job_name"]: job["static_configs"][0]["targets"] for job in config["scrape_configs"]
    }
    assert jobs == {
        "vigie-serving": ["127.0.0.1:3000"],
        "vigie-drift-sidecar": ["127.0.0.1:3001"],
        "vigie-feature-processor": ["127.0.0.1:3002"],
    }


def _unit_tests() -> list[dict[str, Any]]:
    cases = []
    for path in RULE_TESTS:
        for test in yaml.safe_load(path.read_text())["tests"]:
            cases.extend(test.get("alert_rule_test", []))
    return cases


@pytest.mark.parametrize("alert", [rule["alert"] for rule in alerts()])
def test_every_alert_is_unit_tested_firing_and_not_firing(alert: str) -> None:
    cases = [case for case in _unit_tests() if case["alertname"] == alert]
    assert any(case["exp_alerts"] for case in cases), f"no test where {alert} fires"
    assert any(not case["exp_alerts"] for case in cases), f"no test where {alert} stays quiet"


def test_the_unit_tests_name_only_existing_alerts() -> None:
    names = {rule["alert"] for rule in alerts()}
    assert {case["alertname"] for case in _unit_tests()} <= names


@pytest.mark.parametrize("rule", alerts(), ids=lambda rule: rule["alert"])
def test_every_alert_has_severity_annotations_and_a_runbook_section(
    rule: dict[str, Any],
) -> None:
    assert rule["labels"]["severity"] in SEVERITIES
    annotations = rule["annotations"]
    assert annotations["summary"].strip() and annotations["description"].strip()
    url = annotations["runbook_url"]
    assert url == RUNBOOK_URL_PREFIX + rule["alert"].lower()
    assert url.removeprefix(RUNBOOK_URL_PREFIX) in markdown_anchors(RUNBOOK), (
        f"{RUNBOOK} has no section for {rule['alert']}"
    )


def test_alert_names_are_unique() -> None:
    names = [rule["alert"] for rule in alerts()]
    assert len(names) == len(set(names))


def test_rules_select_only_metrics_that_exist() -> None:
    known = known_metrics()
    for rule in rules():
        unknown = metric_names(rule["expr"]) - known
        assert not unknown, f"{rule.get('record') or rule.get('alert')} selects {unknown}"


def _series_names(families: Iterable[Metric]) -> set[str]:
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count")}
    return {
        family.name + suffix
        for family in families
        if family.name.startswith("vigie_")
        for suffix in suffixes.get(family.type, ("",))
    }


def test_the_documented_metrics_are_the_exported_ones() -> None:
    """The names the rules and dashboards rely on (docs/metrics.md) are what the code exports."""
    import vigie.serving.metrics  # noqa: F401, PLC0415  (registers the serving metrics)

    exported = (
        _series_names(REGISTRY.collect())
        | _series_names(SidecarMetrics().registry.collect())
        | _series_names(ConsumerMetrics.on().registry.collect())
    )
    documented = documented_metrics()
    assert exported - documented == set(), "exported but not in docs/metrics.md"
    assert documented - exported == set(), "in docs/metrics.md but exported by nothing"
