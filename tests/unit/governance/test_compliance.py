"""The compliance audit: each item's status, evidence and remedy, the files, the audit entry."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import replace
from datetime import date, timedelta
from pathlib import Path

from click.testing import Result
from tests.unit.governance.audit_home import (
    RUN_2,
    audit_history,
    conforming_home,
    evidence_of,
    key_record,
    run,
    settings_for,
    version,
    write_keys,
    write_quality,
    write_window,
)

from vigie.errors import EXIT_CODES, ErrorCode
from vigie.governance.audit import AuditLog, verify
from vigie.governance.compliance import AuditReport, build_report, render_html, run_audit
from vigie.governance.compliance_facts import (
    ClosedLoopFacts,
    Evidence,
    FeatureFacts,
    PayloadFacts,
    ServiceFacts,
)
from vigie.governance.compliance_items import Item, Ref, Status
from vigie.governance.policy import default_policy_path, load_policy
from vigie.governance.risks import assess

Cli = Callable[..., Result]
ITEMS = [
    "gdpr.art30.records", "gdpr.art5.minimisation", "gdpr.art5.storage", "gdpr.art32.security",
    "gdpr.art17.erasure", "gdpr.art35.dpia", "aiact.art9.risk", "aiact.art10.data",
    "aiact.art12.records", "aiact.art13.transparency", "aiact.art14.oversight",
    "aiact.art15.accuracy",
]  # fmt: skip


def report_of(evidence: Evidence) -> AuditReport:
    where = Ref(kind="risk_register", ref="reports/risks/risks.json")
    return build_report(evidence, assess(evidence), where, "auditor-1")


def items_of(evidence: Evidence) -> dict[str, Item]:
    return {item.id: item for item in report_of(evidence).items}


def problems(item: Item) -> str:
    return " | ".join(gap.problem for gap in item.gaps)


def test_a_conforming_home_conforms_on_every_item_each_with_its_evidence(tmp_path: Path) -> None:
    settings, services = conforming_home(tmp_path)
    report = report_of(evidence_of(settings, services))
    assert [i.id for i in report.items] == ITEMS
    assert {i.id: i.status for i in report.items} == dict.fromkeys(ITEMS, Status.CONFORMS), [
        (i.id, problems(i)) for i in report.items if i.gaps
    ]
    assert all(item.evidence for item in report.items)
    assert report.summary == {"conforms": 12, "gap": 0, "not_applicable": 0}
    refs = {(r.kind, r.ref) for item in report.items for r in item.evidence}
    assert ("pipeline_run", RUN_2) in refs
    assert ("quality_report", f"reports/pipeline/{RUN_2}/quality.json") in refs
    assert ("model_card", "registry/flight_delay/versions/1/model_card.md") in refs
    assert ("monitoring", "monitoring/results/flight_delay/1") in refs
    assert {r.kind for r in report.items[ITEMS.index("aiact.art14.oversight")].evidence} == {
        "audit_entry"
    }


def test_features_from_columns_the_policy_does_not_allow_are_a_minimisation_gap(
    tmp_path: Path,
) -> None:
    settings, services = conforming_home(tmp_path)
    leaky = version(
        number="2",
        aliases=("candidate",),
        features=(
            FeatureFacts("carrier", ("flights.carrier",)),
            FeatureFacts("dep_delay", ("flights.dep_delay",)),  # observed after departure
            FeatureFacts("plane_tail", ("planes.tailnum",), history=True),
            FeatureFacts("mystery", ()),
        ),
        target_sources=("flights.dep_delay",),
    )
    services = replace(services, versions=(*services.versions, leaky))
    item = items_of(evidence_of(settings, services))["gdpr.art5.minimisation"]
    assert item.status is Status.GAP
    found = problems(item)
    assert "flight_delay/2: feature dep_delay derives from flights.dep_delay" in found
    assert "plane_tail derives from planes.tailnum, not allowed as history" in found
    assert "feature mystery has no known source column" in found
    assert "label comes from flights.dep_delay" in found
    assert "flight_delay/1" not in found
    assert all("models/flight_delay/spec.yaml" in gap.remedy for gap in item.gaps)


def test_without_a_retention_run_in_the_period_storage_limitation_is_a_gap(
    tmp_path: Path,
) -> None:
    settings, services = conforming_home(tmp_path)
    tomorrow = date.today() + timedelta(days=1)
    items = items_of(evidence_of(settings, services, since=tomorrow))
    storage = items["gdpr.art5.storage"]
    assert storage.status is Status.GAP and storage.time_based
    assert "no retention run in the audit log (since" in problems(storage)
    assert "vigie governance retain" in storage.gaps[0].remedy
    assert items["gdpr.art17.erasure"].status is Status.NOT_APPLICABLE
    # a production version promoted before the period still names who promoted it
    assert items["aiact.art14.oversight"].status is Status.CONFORMS


def test_a_failed_last_retention_run_is_a_gap(tmp_path: Path) -> None:
    settings, services = conforming_home(tmp_path)
    AuditLog(settings.audit_log_path).append("data-1", "governance.retain", "landing", "failure")
    item = items_of(evidence_of(settings, services))["gdpr.art5.storage"]
    assert item.status is Status.GAP
    assert "ended failure" in problems(item)


def test_dry_runs_neither_apply_retention_nor_complete_an_erasure(tmp_path: Path) -> None:
    settings = settings_for(tmp_path)
    log = AuditLog(settings.audit_log_path)
    log.append("data-1", "governance.retain", "stores", "success", details={"dry_run": True})
    log.append("data-1", "governance.erase", "p_9", "success", inputs={"dry_run": True})
    for outcome in ("failure", "success"):  # failed once, then done
        details = {"subject": "p_7", "dry_run": False, "total": 4}
        log.append("data-1", "governance.erase", "p_7", outcome, details=details)
    items = items_of(evidence_of(settings, ServiceFacts()))
    storage = items["gdpr.art5.storage"]
    assert "no retention run in the audit log" in problems(storage)
    assert storage.tables[0].rows == []
    erasure = items["gdpr.art17.erasure"]
    assert erasure.status is Status.CONFORMS
    assert [(row[0], row[3], row[4]) for row in erasure.tables[0].rows] == [
        ("p_7", "success", "2, 3")
    ]


def test_an_erasure_request_never_completed_is_a_gap(tmp_path: Path) -> None:
    settings, services = conforming_home(tmp_path)
    log = AuditLog(settings.audit_log_path)
    log.append("data-1", "governance.erase", "client p_2", "started", details={"request_id": "r2"})
    item = items_of(evidence_of(settings, services))["gdpr.art17.erasure"]
    assert item.status is Status.GAP
    assert problems(item).startswith("erasure request r2 is not completed (last outcome started")
    assert "r1" not in problems(item)
    assert [row[0] for row in item.tables[0].rows] == ["r1", "r2"]


def test_a_key_in_clear_a_readable_key_file_and_an_unknown_role_are_security_gaps(
    tmp_path: Path,
) -> None:
    settings, services = conforming_home(tmp_path)
    leaked = key_record("key_aaaaaaaaaaaaaaaa") | {"key": "vk_" + "a" * 16 + "_" + "b" * 43}
    write_keys(tmp_path, [leaked, key_record(role="intern")], mode=0o644)
    item = items_of(evidence_of(settings, services))["gdpr.art32.security"]
    assert item.status is Status.GAP
    found = problems(item)
    assert "mode 644: others may read it" in found
    assert "1 string(s) shaped like an API key are stored in clear" in found
    assert "has a field 'key' that the key format does not have" in found
    assert "role 'intern' is not a defined role" in found
    assert "audit chain intact" not in found


def test_a_placeholder_password_in_a_service_url_is_a_security_gap(tmp_path: Path) -> None:
    _, services = conforming_home(tmp_path)
    settings = settings_for(tmp_path, stream_url="redis://:changeme@cache:6379/0")
    item = items_of(evidence_of(settings, services))["gdpr.art32.security"]
    assert "VIGIE_STREAM_URL: its password is a placeholder" in problems(item)


def test_a_tampered_audit_log_turns_security_and_record_keeping_into_gaps(
    tmp_path: Path,
) -> None:
    settings, services = conforming_home(tmp_path)
    lines = settings.audit_log_path.read_text().splitlines(keepends=True)
    lines[1] = lines[1].replace('"deleted":3', '"deleted":0')
    settings.audit_log_path.write_text("".join(lines))
    items = items_of(evidence_of(settings, services))
    security = items["gdpr.art32.security"]
    assert security.status is Status.GAP
    assert "audit chain intact: verification failed: entry seq=1 (line 2) was edited" in (
        problems(security)
    )
    assert items["aiact.art12.records"].status is Status.GAP


def test_entries_removed_from_the_end_are_caught_by_the_last_reports_anchor(
    tmp_path: Path,
) -> None:
    settings, services = conforming_home(tmp_path)
    run_audit(
        evidence_of(settings, services),
        reports_dir=settings.reports_dir,
        audit_log=settings.audit_log_path,
        actor="auditor-1",
        out=None,
    )
    lines = settings.audit_log_path.read_text().splitlines(keepends=True)
    settings.audit_log_path.write_text("".join(lines[:3]))  # a valid, shorter chain
    assert verify(settings.audit_log_path).ok
    security = items_of(evidence_of(settings, services))["gdpr.art32.security"]
    assert security.status is Status.GAP
    assert "entries were removed from the end" in problems(security)
    assert "anchor" in " ".join(r.detail for r in security.evidence)


def test_a_protected_column_allowed_as_a_model_input_is_a_dpia_gap(tmp_path: Path) -> None:
    text = default_policy_path().read_text()
    marker = "tailnum:\n        classification: indirect_identifier\n        training: false"
    assert marker in text
    policy = tmp_path / "policy.yaml"
    policy.write_text(text.replace(marker, marker.replace("false", "true"), 1))
    _, services = conforming_home(tmp_path / "home")
    settings = settings_for(tmp_path / "home", policy_file=policy)
    item = items_of(evidence_of(settings, services))["gdpr.art35.dpia"]
    assert item.status is Status.GAP
    assert problems(item) == "flights.tailnum (indirect_identifier) may be a model input"
    subjects = {row[0] for row in item.tables[1].rows}
    assert {"flights.tailnum", "planes.tailnum", "services.client_id", "services.api_key"} <= (
        subjects
    )


def test_data_governance_gaps_name_the_run_and_the_version(tmp_path: Path) -> None:
    settings, services = conforming_home(tmp_path)
    unreported = run("run-20130107T000000-cccccc", "2013-01-07T00:00:00+00:00")
    failed = run("run-20130108T000000-dddddd", "2013-01-08T00:00:00+00:00", status="failed")
    services = replace(
        services,
        runs=(*services.runs, unreported, failed),
        versions=(version(slices={}), version("arrival_delay")),
    )
    item = items_of(evidence_of(settings, services))["aiact.art10.data"]
    assert item.status is Status.GAP
    assert problems(item) == (
        "run run-20130107T000000-cccccc has no quality report | "
        "flight_delay/1 has no metrics per slice"
    )
    weakest = {row[0]: row[4] for row in item.tables[1].rows}
    assert weakest == {"arrival_delay/1": "UA (roc_auc 0.660)"}


def test_an_unreadable_warehouse_or_no_run_at_all_is_a_data_governance_gap(
    tmp_path: Path,
) -> None:
    settings, services = conforming_home(tmp_path)
    down = replace(services, runs=(), runs_error="cannot open the DuckDB warehouse")
    assert "the warehouse could not be read" in problems(
        items_of(evidence_of(settings, down))["aiact.art10.data"]
    )
    empty = replace(services, runs=())
    assert "no pipeline run in the warehouse" in problems(
        items_of(evidence_of(settings, empty))["aiact.art10.data"]
    )


def test_record_keeping_needs_a_readable_payload_log_while_a_model_serves(
    tmp_path: Path,
) -> None:
    settings, services = conforming_home(tmp_path)
    damaged = PayloadFacts("payload", 10, unreadable=(("000001:000000000042", "bad JSON"),))
    cases = {
        "cannot be read (first at 000001:000000000042: bad JSON)": damaged,
        "holds no prediction": PayloadFacts("payload", 0),
        "could not be read: redis is down": PayloadFacts("redis://x", 0, error="redis is down"),
    }
    for expected, payload in cases.items():
        item = items_of(evidence_of(settings, replace(services, payload=payload)))
        assert expected in problems(item["aiact.art12.records"])
    idle = replace(services, payload=PayloadFacts("payload", 0), versions=())
    assert items_of(evidence_of(settings, idle))["aiact.art12.records"].status is Status.CONFORMS


def test_a_production_version_without_an_intact_card_is_a_transparency_gap(
    tmp_path: Path,
) -> None:
    settings, services = conforming_home(tmp_path)
    no_card = version(files={"model.onnx": "a" * 64})
    corrupt = version("arrival_delay", integrity="model.onnx is corrupt")
    services = replace(services, versions=(no_card, corrupt))
    item = items_of(evidence_of(settings, services))["aiact.art13.transparency"]
    assert problems(item) == (
        "flight_delay/1 has no model card | "
        "arrival_delay/1 fails its integrity check: model.onnx is corrupt"
    )
    none = replace(services, versions=(version(aliases=("candidate",)),))
    assert items_of(evidence_of(settings, none))["aiact.art13.transparency"].status is (
        Status.NOT_APPLICABLE
    )


def test_a_production_version_nobody_promoted_is_an_oversight_and_accuracy_gap(
    tmp_path: Path,
) -> None:
    settings, services = conforming_home(tmp_path)
    services = replace(services, versions=(version(), version("arrival_delay", "2")))
    items = items_of(evidence_of(settings, services))
    assert problems(items["aiact.art14.oversight"]) == (
        "no audit entry records who put arrival_delay/2 in production"
    )
    accuracy = problems(items["aiact.art15.accuracy"])
    assert "arrival_delay/2 reached production without a recorded gate report" in accuracy
    assert "no drift monitoring results for arrival_delay/2" in accuracy
    moves = [row[2] for row in items["aiact.art14.oversight"].tables[0].rows]
    assert "arrival_delay/2" not in moves


def test_a_failed_quality_gate_in_the_latest_window_is_an_accuracy_gap(tmp_path: Path) -> None:
    settings, services = conforming_home(tmp_path)
    write_window(tmp_path, "flight_delay", "1", "2", drift=True, passed=False)
    closed = ClosedLoopFacts("reports/closed-loop/closed-loop.json", "flight_delay", 10, 0.7, 0.76)
    evidence = replace(evidence_of(settings, services), closed_loop=(closed,))
    item = items_of(evidence)["aiact.art15.accuracy"]
    assert problems(item) == (
        "the latest labelled window of flight_delay/1 (2) failed its quality gate"
    )
    assert ("closed_loop", closed.path) in {(r.kind, r.ref) for r in item.evidence}
    rows = {row[0]: row for row in item.tables[0].rows}
    assert rows["flight_delay/1"][2:] == ("2", "1", "2: drift, quality FAILED")


def test_run_audit_writes_both_files_and_audits_the_reports_sha256(tmp_path: Path) -> None:
    settings, services = conforming_home(tmp_path)
    head = AuditLog(settings.audit_log_path).head()
    result = run_audit(
        evidence_of(settings, services),
        reports_dir=settings.reports_dir,
        audit_log=settings.audit_log_path,
        actor="auditor-1",
        out=None,
    )
    assert result.json_path.parent == settings.reports_dir / "audit" / result.report.report_id
    document = json.loads(result.json_path.read_text())
    assert [i["id"] for i in document["items"]] == ITEMS
    assert document["audit_head"] == {"seq": head[0], "hash": head[1]}
    digest = hashlib.sha256(result.json_path.read_bytes()).hexdigest()
    entry = result.entry
    assert (entry.action, entry.actor, entry.inputs["report_sha256"]) == (
        "audit.report",
        "auditor-1",
        digest,
    )
    assert entry.inputs["html_sha256"] == hashlib.sha256(result.html_path.read_bytes()).hexdigest()
    assert entry.target == f"reports/audit/{result.report.report_id}/audit_report.json"
    assert verify(settings.audit_log_path).ok
    register = json.loads(result.register.json_path.read_text())
    assert register == document["risk_register"]
    art9 = next(i for i in document["items"] if i["id"] == "aiact.art9.risk")
    assert art9["evidence"][0]["ref"] == "reports/risks/risks.json"
    assert art9["evidence"][0]["detail"] == f"sha256 {result.register.sha256}"


def test_the_page_is_accessible_by_construction_and_escapes_what_it_quotes(
    tmp_path: Path,
) -> None:
    settings, services = conforming_home(tmp_path)
    log = AuditLog(settings.audit_log_path)
    log.append("x", "governance.erase", "<b>subject</b>", "failure", details={"request_id": "r9"})
    html = render_html(report_of(evidence_of(settings, services)))
    assert html.startswith("<!doctype html>") and '<html lang="en">' in html
    assert '<a class="skip-link" href="#content">' in html and '<main id="content"' in html
    assert "<header" in html and "<nav" in html and "<footer" in html
    headings = [tag for tag in ("<h1", "<h2", "<h3", "<h4") if tag in html]
    assert headings == ["<h1", "<h2", "<h3", "<h4"] and html.count("<h1") == 1
    assert '<th scope="col">' in html and '<th scope="row">' in html
    assert "<th>" not in html
    assert "<span>Gap</span>" in html and "<span>Conforms</span>" in html  # text, not colour
    assert "<b>subject</b>" not in html and "&lt;b&gt;subject&lt;/b&gt;" in html


def test_vigie_audit_report_writes_the_report_where_asked(cli: Cli, tmp_path: Path) -> None:
    audit_history(tmp_path)
    write_quality(tmp_path, RUN_2, "2013-01-06T00:00:00+00:00", {"flights": (10, 0, {})})
    out = tmp_path / "out"
    result = cli(["audit", "report", "--since", "2013-01-01", "--out", str(out)], home=tmp_path)
    assert result.exit_code == 0, result.output
    document = json.loads((out / "audit_report.json").read_text())
    assert document["period"]["since"] == "2013-01-01"
    assert (out / "audit_report.html").is_file()
    assert "audited as seq 6" in result.output
    # no warehouse, no registry in this home: named gaps, not a failed command
    items = {i["id"]: i for i in document["items"]}
    assert items["aiact.art10.data"]["status"] == "gap"
    assert items["gdpr.art5.minimisation"]["status"] == "not_applicable"
    bad = cli(["audit", "report", "--since", "January"], home=tmp_path)
    assert bad.exit_code == EXIT_CODES[ErrorCode.INVALID_INPUT]
    assert "--since 'January' is not a date YYYY-MM-DD" in bad.output


def test_services_facts_default_to_nothing_read(tmp_path: Path) -> None:
    evidence = evidence_of(settings_for(tmp_path), ServiceFacts())
    items = items_of(evidence)
    assert "the payload log could not be read" in problems(items["aiact.art12.records"])
    assert "audit chain intact: no audit log" in problems(items["gdpr.art32.security"])
    assert "there is no audit log" in problems(items["aiact.art12.records"])


def test_a_policy_changed_without_its_version_raised_is_a_records_gap(tmp_path: Path) -> None:
    settings, services = conforming_home(tmp_path)
    assert items_of(evidence_of(settings, services))["gdpr.art30.records"].status.value == (
        "conforms"
    )
    version = load_policy(settings.policy_file).version
    AuditLog(settings.audit_log_path).append(
        "data-1", "policy.change", "policy.yaml", "failure",
        inputs={"policy_sha256": "f" * 64, "policy_version": version},
        details={"reason": "content changed without its version being raised"},
    )  # fmt: skip
    item = items_of(evidence_of(settings, services))["gdpr.art30.records"]
    assert item.status.value == "gap"
    problems = [g.problem for g in item.gaps]
    assert any("without its version being raised" in p for p in problems)
    assert any("differs from the one the last run recorded" in p for p in problems)
