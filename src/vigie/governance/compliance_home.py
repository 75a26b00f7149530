"""Reading the evidence kept as files under ``VIGIE_HOME`` (see :mod:`compliance_facts`)."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from vigie.config import Settings
from vigie.errors import VigieError
from vigie.governance.audit import read_entries, verify
from vigie.governance.compliance_facts import (
    AuditFacts,
    ClosedLoopFacts,
    Copies,
    Evidence,
    Period,
    QualityFacts,
    ServiceFacts,
    TableCounts,
    WindowFacts,
)
from vigie.governance.compliance_secrets import read_key_file, secret_facts
from vigie.governance.policy import load_policy

#: Where audit reports are kept, under the reports folder.
AUDIT_REPORTS = "audit"
#: The JSON document of an audit report, in its folder.
REPORT_JSON = "audit_report.json"
#: Where closed-loop results are looked for, under the reports folder.
CLOSED_LOOP = "closed-loop"

_RUN_FOLDER = re.compile(r"^run-[0-9A-Za-z-]+$")


def gather(settings: Settings, period: Period, services: ServiceFacts) -> Evidence:
    """Read the evidence under ``VIGIE_HOME`` and join it to what the command read.

    Raises:
        VigieError: CONFIGURATION when the data policy cannot be read.
    """
    policy = load_policy(settings.policy_file)
    home = settings.home
    quality = read_quality(settings.reports_dir / "pipeline", home)
    monitoring = read_monitoring(settings.monitoring_dir / "results", home)
    payload_entries = services.payload.entries if services.payload else 0
    return Evidence(
        home=home,
        generated_at=datetime.now(UTC),
        period=period,
        policy=policy,
        policy_path=str(policy.source) if policy.source else "in memory",
        mode=settings.mode,
        audit=read_audit(settings.audit_log_path, settings.reports_dir / AUDIT_REPORTS, home),
        keys=read_key_file(settings.api_keys_file, home),
        secrets=secret_facts(settings),
        services=services,
        quality=quality,
        monitoring=monitoring,
        closed_loop=read_closed_loop(settings.reports_dir / CLOSED_LOOP, home),
        copies=_copies(settings, services, len(quality), payload_entries),
    )


def read_audit(path: Path, reports: Path, home: Path) -> AuditFacts:
    """Verify the audit log (against the latest report's anchor) and read its entries."""
    where = _relative(path, home)
    if not path.is_file():
        return AuditFacts(where, False, None, ())
    anchor = latest_anchor(reports, home)
    try:
        verification = verify(path, expected_head=anchor[:2] if anchor else None)
    except VigieError:  # removed between the check and the read
        return AuditFacts(where, False, None, ())
    return AuditFacts(where, True, verification, tuple(read_entries(path)), anchor)


def latest_anchor(reports: Path, home: Path) -> tuple[int, str, str] | None:
    """The audit head recorded by the newest earlier audit report, with its path."""
    for path in sorted(reports.glob(f"*/{REPORT_JSON}"), reverse=True):
        data = _read_json(path)
        head = data.get("audit_head") if isinstance(data, dict) else None
        if isinstance(head, dict) and isinstance(head.get("seq"), int) and head["seq"] >= 0:
            return (head["seq"], str(head.get("hash", "")), _relative(path, home))
    return None


def read_quality(folder: Path, home: Path) -> tuple[QualityFacts, ...]:
    """Every pipeline run's quality report, oldest run first."""
    found = []
    for path in sorted(folder.glob("*/quality.json")):
        if not _RUN_FOLDER.match(path.parent.name) or path.parent.is_symlink():
            continue
        data = _read_json(path)
        run = data.get("run") if isinstance(data, dict) else None
        if not isinstance(run, dict):
            continue
        found.append(_quality(run, data, _relative(path, home)))
    return tuple(sorted(found, key=lambda q: q.started_at))


def _quality(run: Mapping[str, Any], data: Mapping[str, Any], where: str) -> QualityFacts:
    tables = [t for t in run.get("tables", []) if isinstance(t, dict) and "table" in t]
    return QualityFacts(
        run_id=str(run.get("run_id", "")),
        path=where,
        started_at=str(run.get("started_at", "")),
        balanced=bool(data.get("balanced", False)),
        failures={t["table"]: dict(t.get("failures") or {}) for t in tables},
        counts={
            t["table"]: TableCounts(
                t["table"],
                int(t.get("rows_in", 0)),
                int(t.get("rows_loaded", 0)),
                int(t.get("rows_quarantined", 0)),
                int(t.get("rows_corrected", 0)),
            )
            for t in tables
        },
    )


def read_monitoring(folder: Path, home: Path) -> tuple[WindowFacts, ...]:
    """The drift sidecar's window results, summarised per model version."""
    found = []
    for version_dir in sorted(p for p in folder.glob("*/*") if p.is_dir()):
        results = [_read_json(p) for p in sorted(version_dir.glob("*.json"))]
        windows = [r for r in results if isinstance(r, dict) and "window_id" in r]
        if not windows:
            continue
        latest = max(windows, key=lambda r: str(r.get("end") or ""))
        quality = latest.get("quality") if isinstance(latest.get("quality"), dict) else None
        found.append(
            WindowFacts(
                model=version_dir.parent.name,
                version=version_dir.name,
                path=_relative(version_dir, home),
                windows=len(windows),
                drifted=sum(bool((r.get("drift") or {}).get("dataset_drift")) for r in windows),
                latest_window=str(latest["window_id"]),
                latest_end=latest.get("end"),
                latest_drift=bool((latest.get("drift") or {}).get("dataset_drift")),
                latest_quality_passed=quality.get("passed") if quality else None,
                retraining_requested=sum(bool(r.get("retraining_requested")) for r in windows),
            )
        )
    return tuple(found)


def read_closed_loop(folder: Path, home: Path) -> tuple[ClosedLoopFacts, ...]:
    """Closed-loop simulation results found under ``folder``."""
    found = []
    for path in sorted(folder.glob("closed-loop*.json")):
        data = _read_json(path)
        months = data.get("months") if isinstance(data, dict) else None
        if not isinstance(months, list):
            continue
        found.append(
            ClosedLoopFacts(
                path=_relative(path, home),
                model=str(data.get("model", "")),
                months=len(months),
                static_auc=_mean(m.get("static_auc") for m in months if isinstance(m, dict)),
                loop_auc=_mean(m.get("loop_auc") for m in months if isinstance(m, dict)),
            )
        )
    return tuple(found)


def _copies(
    settings: Settings, services: ServiceFacts, quality_reports: int, payload_entries: int
) -> Copies:
    landing = settings.landing_dir
    monitoring_reports = settings.monitoring_dir / "reports"
    return Copies(
        landing_tables=frozenset(p.name for p in landing.glob("*") if p.is_dir()),
        snapshots=sum(1 for _ in settings.snapshots_dir.glob("*.parquet")),
        candidates=sum(1 for p in (settings.home / "candidates").glob("*") if p.is_dir()),
        registry_versions=len(services.versions),
        quality_reports=quality_reports,
        monitoring_reports=sum(1 for _ in monitoring_reports.glob("*/*/*") if _.is_dir()),
        payload_entries=payload_entries,
    )


def _mean(values: Any) -> float | None:
    numbers = [float(v) for v in values if isinstance(v, int | float)]
    return sum(numbers) / len(numbers) if numbers else None


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _relative(path: Path, home: Path) -> str:
    try:
        return str(path.resolve().relative_to(home.resolve()))
    except ValueError:
        return str(path)
