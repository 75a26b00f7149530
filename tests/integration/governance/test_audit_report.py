"""``vigie audit report`` and the risk register over a real home.

The home is a copy of ``trained_home`` (tests/integration/conftest.py): the pipeline ran on
ten days of January 2013 into DuckDB, both models were trained, registered, promoted to
staging and production through their gates, and a second ``flight_delay`` version waits as
candidate. Nothing served predictions and no drift sidecar ran, so those items must be
named gaps. A copy with one audit entry edited must turn the security item into a gap.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import typer
from click.testing import Result
from typer.testing import CliRunner

from vigie.cli import app
from vigie.cli.risks import risks_command
from vigie.config import Settings
from vigie.governance.audit import verify
from vigie.warehouse.connection import connect

pytestmark = [pytest.mark.integration, pytest.mark.slow]

Cli = Callable[..., Result]
ITEMS = {
    "gdpr.art30.records", "gdpr.art5.minimisation", "gdpr.art5.storage", "gdpr.art32.security",
    "gdpr.art17.erasure", "gdpr.art35.dpia", "aiact.art9.risk", "aiact.art10.data",
    "aiact.art12.records", "aiact.art13.transparency", "aiact.art14.oversight",
    "aiact.art15.accuracy",
}  # fmt: skip


def copy_home(trained_home: Settings, target: Path) -> Path:
    """A copy of the trained home that a test may write to and damage."""
    shutil.copytree(trained_home.home, target, symlinks=True)
    return target


def report(cli: Cli, home: Path, *args: str) -> tuple[Result, dict[str, Any], Path]:
    out = home / "audit-out"
    result = cli(["audit", "report", "--out", str(out), *args], home=home, actor="auditor-1")
    assert result.exit_code == 0, result.output
    return result, json.loads((out / "audit_report.json").read_text()), out


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def audited(
    trained_home: Settings, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, dict[str, Any]]:
    home = copy_home(trained_home, tmp_path_factory.mktemp("audit") / "home")
    env = {k: None for k in os.environ if k.startswith("VIGIE_")} | {
        "VIGIE_HOME": str(home),
        "VIGIE_ACTOR": "auditor-1",
    }
    result = CliRunner().invoke(
        app, ["audit", "report", "--out", str(home / "audit-out")], env=env, catch_exceptions=False
    )
    assert result.exit_code == 0, result.output
    return home, json.loads((home / "audit-out" / "audit_report.json").read_text())


def items(document: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {item["id"]: item for item in document["items"]}


def gap_text(item: dict[str, Any]) -> str:
    return " | ".join(gap["problem"] for gap in item["gaps"])


def test_every_item_is_present_with_evidence_or_a_named_gap(
    audited: tuple[Path, dict[str, Any]],
) -> None:
    _, document = audited
    found = items(document)
    assert set(found) == ITEMS
    for item in found.values():
        assert item["status"] in {"conforms", "gap", "not_applicable"}, item["id"]
        assert item["evidence"] or item["gaps"], item["id"]
        if item["status"] == "gap":
            assert item["gaps"], item["id"]
            assert all(g["problem"] and g["remedy"] for g in item["gaps"]), item["id"]
        else:
            assert not item["gaps"], item["id"]
    assert document["summary"] == {
        status: sum(i["status"] == status for i in found.values())
        for status in ("conforms", "gap", "not_applicable")
    }


def test_the_evidence_points_at_the_real_runs_versions_and_cards(
    audited: tuple[Path, dict[str, Any]],
) -> None:
    home, document = audited
    found = items(document)
    warehouse = connect(f"duckdb:///{home / 'warehouse.duckdb'}", read_only=True)
    try:
        run_ids = [row[0] for row in warehouse.query("SELECT run_id FROM pipeline_run")]
    finally:
        warehouse.close()
    data = found["aiact.art10.data"]
    assert data["status"] == "conforms", gap_text(data)
    refs = {(r["kind"], r["ref"]) for r in data["evidence"]}
    for run_id in run_ids:
        assert ("pipeline_run", run_id) in refs
        assert ("quality_report", f"reports/pipeline/{run_id}/quality.json") in refs
    minimisation = found["gdpr.art5.minimisation"]
    assert minimisation["status"] == "conforms"
    manifests = [r["ref"] for r in minimisation["evidence"] if r["kind"] == "registry_version"]
    assert sorted(manifests) == [
        "registry/arrival_delay/versions/1/manifest.json",
        "registry/flight_delay/versions/1/manifest.json",
        "registry/flight_delay/versions/2/manifest.json",
    ]
    assert all((home / m).is_file() for m in manifests)
    cards = [r for r in found["aiact.art13.transparency"]["evidence"] if r["kind"] == "model_card"]
    assert len(cards) == 2
    for card in cards:
        assert card["detail"].endswith(sha256(home / card["ref"]))
    oversight = found["aiact.art14.oversight"]
    assert oversight["status"] == "conforms"
    promoted = [row for row in oversight["tables"][0]["rows"] if row[3] == "production"]
    assert {(row[2], row[4]) for row in promoted} == {
        ("flight_delay/1", "vigie-tests"),
        ("arrival_delay/1", "vigie-tests"),
    }


def test_what_never_happened_in_this_home_is_a_named_gap(
    audited: tuple[Path, dict[str, Any]],
) -> None:
    _, document = audited
    found = items(document)
    assert "no retention run in the audit log" in gap_text(found["gdpr.art5.storage"])
    assert found["gdpr.art17.erasure"]["status"] == "not_applicable"
    assert "payload log holds no prediction" in gap_text(found["aiact.art12.records"])
    accuracy = gap_text(found["aiact.art15.accuracy"])
    assert "no drift monitoring results for flight_delay/1" in accuracy
    assert "no drift monitoring results for arrival_delay/1" in accuracy
    assert "without a recorded gate report" not in accuracy  # gates passed at promotion
    assert found["gdpr.art32.security"]["status"] == "conforms"


def test_the_report_and_its_register_are_audited(audited: tuple[Path, dict[str, Any]]) -> None:
    home, document = audited
    log = home / "audit" / "audit.jsonl"
    assert verify(log).ok
    entries = [json.loads(line) for line in log.read_text().splitlines()]
    entry = entries[-1]
    assert (entry["action"], entry["actor"], entry["target"]) == (
        "audit.report",
        "auditor-1",
        "audit-out/audit_report.json",
    )
    assert entry["inputs"]["report_sha256"] == sha256(home / "audit-out" / "audit_report.json")
    assert entry["inputs"]["html_sha256"] == sha256(home / "audit-out" / "audit_report.html")
    assert document["audit_head"]["seq"] == entry["seq"] - 1
    register = home / "reports" / "risks" / "risks.json"
    assert entry["details"]["risk_register_sha256"] == sha256(register)
    subjects = json.loads(register.read_text())["subjects"]
    assert {"flights", "model flight_delay", "model arrival_delay"} <= set(subjects)


def test_a_tampered_audit_log_turns_the_security_item_into_a_gap(
    cli: Cli, trained_home: Settings, tmp_path: Path
) -> None:
    home = copy_home(trained_home, tmp_path / "home")
    log = home / "audit" / "audit.jsonl"
    lines = log.read_text().splitlines(keepends=True)
    index = next(i for i, line in enumerate(lines) if '"registry.promote"' in line)
    entry = json.loads(lines[index])
    lines[index] = lines[index].replace('"actor":"vigie-tests"', '"actor":"someone-else"')
    log.write_text("".join(lines))
    _, document, _ = report(cli, home)
    found = items(document)
    security = found["gdpr.art32.security"]
    assert security["status"] == "gap"
    assert f"entry seq={entry['seq']} (line {index + 1}) was edited" in gap_text(security)
    assert found["aiact.art12.records"]["status"] == "gap"


def test_the_risk_register_scores_the_real_runs_and_models(
    trained_home: Settings, tmp_path: Path
) -> None:
    home = copy_home(trained_home, tmp_path / "home")
    app = typer.Typer()
    app.command()(risks_command)
    env = {k: None for k in os.environ if k.startswith("VIGIE_")} | {"VIGIE_HOME": str(home)}
    result = CliRunner().invoke(app, ["--json"], env=env, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    risks = {r["id"]: r for r in json.loads(result.output)["risks"]}
    quality = risks["DQ-flights"]
    assert len(quality["trend"]) == 1 and quality["impact"] == 5
    assert quality["evidence"][0].startswith("reports/pipeline/run-")
    assert risks["DQ-model-flight_delay"]["subject"] == "model flight_delay v1"  # production
    assert "copy: landing zone: landing/flights (raw)" in risks["SEC-flights"]["evidence"]
    assert (home / "reports" / "risks" / "risks.md").is_file()
