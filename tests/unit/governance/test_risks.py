"""The data risk register: its scoring rules, its subjects, its files and its command."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import replace
from pathlib import Path

import pytest
import typer
from tests.unit.governance.audit_home import (
    conforming_home,
    evidence_of,
    run,
    version,
    write_quality,
)
from typer.testing import CliRunner

from vigie.cli.risks import risks_command
from vigie.governance.audit import AuditLog, verify
from vigie.governance.compliance_risk_report import to_markdown, write_register
from vigie.governance.compliance_risk_rules import quality_likelihood, security_likelihood
from vigie.governance.risks import Risk, RiskRegister, assess, subject_versions

TABLES = ["flights", "weather", "planes", "airports", "airlines", "services"]


def by_id(register: RiskRegister) -> dict[str, Risk]:
    return {risk.id: risk for risk in register.risks}


@pytest.mark.parametrize(
    ("rates", "failed", "expected"),
    [
        ([], False, 3),  # not measured
        ([0.0], False, 1),
        ([0.0005], False, 2),
        ([0.005], False, 3),
        ([0.02], False, 4),
        ([0.06], False, 5),
        ([0.005], True, 4),  # a recent run failed
        ([0.06], True, 5),  # at most 5
        ([0.002, 0.002, 0.002, 0.005], False, 4),  # rising: 3 + 1
        ([0.01, 0.01, 0.0105], False, 4),  # within 10 % of the mean: not rising
        ([0.2, 0.001, 0.001, 0.001, 0.001, 0.0015], False, 4),  # the four runs before count
    ],
)
def test_quality_likelihood_follows_the_rate_its_trend_and_failures(
    rates: list[float], failed: bool, expected: int
) -> None:
    assert quality_likelihood(rates, failed).likelihood == expected


@pytest.mark.parametrize(
    ("readers", "copies", "days", "expected"),
    [
        (1, [], 365, 1),
        (2, ["landing"], 366, 4),
        (3, ["a", "b"], 7 * 365, 4),
        (4, ["a", "b", "c"], 7 * 365 + 1, 5),
        (5, ["a", "b", "c"], 3650, 5),  # 7 points, at most 5
    ],
)
def test_security_likelihood_adds_readers_copies_and_retention(
    readers: int, copies: list[str], days: int, expected: int
) -> None:
    assert security_likelihood(readers, copies, days).likelihood == expected


def test_every_dataset_and_model_gets_a_quality_and_a_security_risk(tmp_path: Path) -> None:
    settings, services = conforming_home(tmp_path)
    register = assess(evidence_of(settings, services))
    assert register.subjects == [*TABLES, "model arrival_delay", "model flight_delay"]
    assert sorted(by_id(register)) == sorted(
        [f"DQ-{t}" for t in TABLES]
        + [f"SEC-{t}" for t in TABLES]
        + [f"{k}-model-{m}" for k in ("DQ", "SEC") for m in ("flight_delay", "arrival_delay")]
    )
    scores = [r.score for r in register.risks]
    assert scores == sorted(scores, reverse=True)
    for risk in register.risks:
        assert risk.score == risk.likelihood * risk.impact
        assert risk.owner in {"data_engineer", "ml_engineer", "sre"}
        assert risk.status == ("open" if risk.score >= 15 else
                               "monitored" if risk.score >= 8 else "accepted")  # fmt: skip
        assert risk.mitigation and risk.summary
    assert not [r.id for r in register.risks if r.status == "open"]
    risks = by_id(register)
    assert (risks["SEC-services"].owner, risks["SEC-flights"].owner) == ("sre", "data_engineer")
    assert risks["SEC-flights"].impact == 3  # tailnum, an indirect identifier
    assert risks["SEC-weather"].impact == 1  # public only
    assert risks["SEC-services"].impact == 3  # the api_key is sensitive but never stored
    assert risks["DQ-flights"].impact == 5  # features and label of production models
    assert risks["DQ-airlines"].impact == 1
    assert (
        risks["DQ-airports"].likelihood == 3 and "no pipeline run" in risks["DQ-airports"].summary
    )


def test_the_same_evidence_gives_the_same_register(tmp_path: Path) -> None:
    settings, services = conforming_home(tmp_path)
    evidence = evidence_of(settings, services)
    assert assess(evidence) == assess(evidence)


def test_a_rising_quarantine_rate_with_a_failed_run_opens_a_quality_risk(tmp_path: Path) -> None:
    settings, services = conforming_home(tmp_path)
    for day, quarantined in ((7, 10), (8, 10), (9, 40)):
        failures = {"out_of_range": quarantined - 5, "missing_value": 5}
        run_id = f"run-201301{day:02d}T000000-eeeeee"
        write_quality(tmp_path, run_id, f"2013-01-{day:02d}T00:00:00+00:00",
                      {"flights": (2000, quarantined, failures)})  # fmt: skip
    failed = run("run-20130110T000000-ffffff", "2013-01-10T00:00:00+00:00", status="failed")
    services = replace(services, runs=(*services.runs, failed))
    risk = by_id(assess(evidence_of(settings, services)))["DQ-flights"]
    # 2 % quarantined: 4; above 1.1 x the mean of the runs before: +1; a failed run: +1
    assert (risk.likelihood, risk.impact, risk.score, risk.status) == (5, 5, 25, "open")
    assert [rate for _, rate in risk.trend] == [0.002, 0.0, 0.005, 0.005, 0.02]
    assert "rising over the runs before" in risk.summary
    assert "most failed: out_of_range (35 rows), missing_value (5 rows)" in risk.mitigation
    assert "run-20130110T000000-ffffff" in risk.mitigation
    assert "reports/pipeline/run-20130109T000000-eeeeee/quality.json" in risk.evidence
    model = by_id(assess(evidence_of(settings, services)))["DQ-model-flight_delay"]
    assert (model.likelihood, model.impact) == (5, 4)


def test_a_raw_copy_in_the_landing_zone_raises_the_security_likelihood(tmp_path: Path) -> None:
    settings, services = conforming_home(tmp_path)
    before = by_id(assess(evidence_of(settings, services)))["SEC-planes"]
    (tmp_path / "landing" / "planes" / "all").mkdir(parents=True)
    write_quality(tmp_path, "run-20130111T000000-gggggg", "2013-01-11T00:00:00+00:00",
                  {"planes": (50, 0, {})})  # fmt: skip
    after = by_id(assess(evidence_of(settings, services)))["SEC-planes"]
    assert before.likelihood == 4  # 3 readers (+1), kept ten years (+2)
    assert (after.likelihood, after.score, after.status) == (5, 15, "open")
    assert "copy: landing zone: landing/planes (raw)" in after.evidence
    assert "restrict the landing zone" in after.mitigation


def test_a_models_subject_is_its_production_version_else_its_latest() -> None:
    served = version(number="1", aliases=("production",))
    newer = version(number="2", aliases=("candidate",))
    first = version("arrival_delay", "1", aliases=())
    latest = version("arrival_delay", "10", aliases=())
    chosen = subject_versions([newer, served, latest, first])
    assert [(v.model, v.version) for v in chosen] == [
        ("arrival_delay", "10"),
        ("flight_delay", "1"),
    ]


def test_the_register_is_written_as_json_and_markdown(tmp_path: Path) -> None:
    settings, services = conforming_home(tmp_path)
    register = assess(evidence_of(settings, services))
    files = write_register(register, tmp_path / "risks")
    body = files.json_path.read_bytes()
    assert files.sha256 == hashlib.sha256(body).hexdigest()
    assert RiskRegister.model_validate_json(body) == register
    markdown = files.markdown_path.read_text()
    assert markdown == to_markdown(register)
    assert "| id | subject | kind | likelihood | impact | score | owner | status |" in markdown
    for risk in register.risks:
        assert f"## {risk.id}: " in markdown


def test_the_risks_command_writes_audits_and_prints_the_register(tmp_path: Path) -> None:
    conforming_home(tmp_path)
    app = typer.Typer()
    app.command()(risks_command)
    env: dict[str, str | None] = {k: None for k in os.environ if k.startswith("VIGIE_")}
    env |= {"VIGIE_HOME": str(tmp_path), "VIGIE_ACTOR": "auditor-1"}
    result = CliRunner().invoke(app, ["--json"], env=env, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    printed = json.loads(result.output)
    written = tmp_path / "reports" / "risks" / "risks.json"
    assert printed == json.loads(written.read_text())
    assert (tmp_path / "reports" / "risks" / "risks.md").is_file()
    # this home has no registry: the datasets only
    assert {r["subject"] for r in printed["risks"]} == set(TABLES)
    log = settings_log(tmp_path)
    entry = log[-1]
    assert (entry["action"], entry["actor"], entry["target"]) == (
        "governance.risks",
        "auditor-1",
        "reports/risks/risks.json",
    )
    assert entry["inputs"]["register_sha256"] == hashlib.sha256(written.read_bytes()).hexdigest()
    assert verify(tmp_path / "audit" / "audit.jsonl").ok
    table = CliRunner().invoke(app, [], env=env, catch_exceptions=False)
    assert table.exit_code == 0 and "SEC-flights" in table.output


def settings_log(home: Path) -> list[dict[str, object]]:
    path = home / "audit" / "audit.jsonl"
    assert AuditLog(path).head()[0] >= 0
    return [json.loads(line) for line in path.read_text().splitlines()]
