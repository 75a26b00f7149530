"""The batch pipeline: extract, validate, correct, pseudonymise, load, report.

One run moves the source tables into the star schema in a single warehouse transaction:
either every table of the run is loaded (with its quarantine and lineage) or nothing is.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from vigie.config import Settings
from vigie.errors import ErrorCode, VigieError
from vigie.governance.audit import AuditLog
from vigie.governance.policy import DataPolicy, Handling, load_policy
from vigie.governance.policy_changes import PolicyState, record_change
from vigie.governance.pseudonymize import Pseudonymizer
from vigie.pipelines import landing
from vigie.pipelines.checks import CHECKS, FINDINGS
from vigie.pipelines.expectations import Expectations, load_expectations
from vigie.pipelines.lineage import RunRecord, TableStats, write_run
from vigie.pipelines.load import build_tables, load_all
from vigie.pipelines.metrics import write_metrics
from vigie.pipelines.report import build_report, write_report
from vigie.pipelines.sources import package_data_dir
from vigie.pipelines.validate import META, Outcome, validate
from vigie.warehouse.connection import Warehouse, connect, redact
from vigie.warehouse.migrations import migrate

log = logging.getLogger(__name__)

Step = Callable[[str], None]
SAMPLES_PER_TABLE = 10


@dataclass
class PipelineResult:
    """What a run did, for the caller and the summary table."""

    record: RunRecord
    report: dict[str, Any] = field(default_factory=dict)
    report_paths: tuple[Path, Path] | None = None
    metrics_path: Path | None = None


def run_pipeline(
    settings: Settings,
    window_from: date | None = None,
    window_to: date | None = None,
    refresh: bool = False,
    step: Step | None = None,
) -> PipelineResult:
    """Run the batch pipeline over a window of scheduled departure dates (inclusive).

    Raises:
        VigieError: with the code of what went wrong; the warehouse is left as it was.
    """
    if window_from and window_to and window_from > window_to:
        raise VigieError(ErrorCode.INVALID_INPUT, f"--from {window_from} is after --to {window_to}")
    notify = step or (lambda _msg: None)
    policy = load_policy(settings.policy_file)
    record = RunRecord(
        run_id=f"run-{datetime.now(UTC):%Y%m%dT%H%M%S}-{secrets.token_hex(3)}",
        actor=settings.actor,
        policy_hash=policy.content_hash(),
        policy_version=policy.version,
        window_from=window_from,
        window_to=window_to,
        started_at=datetime.now(UTC),
    )
    audit = AuditLog(settings.audit_log_path)
    _note_policy_change(settings, policy, record)
    warehouse: Warehouse | None = None
    try:
        notify(f"connecting to {redact(settings.resolved_warehouse_url)}")
        warehouse = connect(settings.resolved_warehouse_url)
        migrate(warehouse)
        result = _execute(settings, policy, warehouse, record, refresh=refresh, notify=notify)
    except VigieError as err:
        _fail(settings, audit, warehouse, record, str(err))
        raise
    except Exception as err:
        _fail(settings, audit, warehouse, record, f"{type(err).__name__}: {err}")
        raise VigieError(
            ErrorCode.INTERNAL, f"pipeline run {record.run_id} failed: {err}", run_id=record.run_id
        ) from err
    finally:
        if warehouse is not None:
            warehouse.close()
    _audit(audit, record)
    return result


def _execute(
    settings: Settings,
    policy: DataPolicy,
    warehouse: Warehouse,
    record: RunRecord,
    *,
    refresh: bool,
    notify: Step,
) -> PipelineResult:
    expectations = load_expectations()
    source_dir = settings.source_dir or package_data_dir()
    window = _window(record)
    pseudonymizer = Pseudonymizer(settings.pseudonym_key_bytes())
    outcomes: dict[str, Outcome] = {}
    malformed: dict[str, pd.DataFrame] = {}
    for name, spec in expectations.tables.items():
        notify(f"extracting {name}")
        landing.extract(name, spec, source_dir, settings.landing_dir, refresh=refresh)
        landed = landing.read_landed(name, settings.landing_dir, window)
        record.input_hashes.update(landed.hashes)
        policy.check_columns(name, [c for c in landed.frame.columns if c not in META])
        notify(f"validating {name}")
        raw = _in_window(landed.frame, window) if spec.partition else landed.frame
        hidden = frozenset(
            policy.columns_with(name, Handling.PSEUDONYMIZE)
            + policy.columns_with(name, Handling.DROP)
        )
        outcome = validate(name, raw, spec, CHECKS, hidden)
        outcomes[name] = _protect(policy, pseudonymizer, outcome)
        malformed[name] = _protect_lines(
            policy, pseudonymizer, name, list(raw.columns), landed.malformed
        )
    notify("shaping the star schema")
    tables, gaps = build_tables(outcomes, malformed, expectations, record)
    notify("loading the warehouse")
    with warehouse.transaction():
        record.inserted = load_all(warehouse, tables)
        _count(record, outcomes, malformed)
        record.status, record.finished_at = "success", datetime.now(UTC)
        write_run(warehouse, record)
    return _publish(settings, expectations, record, outcomes, gaps)


def _window(record: RunRecord) -> tuple[date, date] | None:
    if record.window_from is None and record.window_to is None:
        return None
    return (record.window_from or date.min, record.window_to or date.max)


def _in_window(frame: pd.DataFrame, window: tuple[date, date] | None) -> pd.DataFrame:
    """Rows whose local date lies in the window; rows with no readable date stay (they are
    quarantined by validation, never silently dropped)."""
    if window is None or frame.empty:
        return frame
    parts = frame[["year", "month", "day"]].apply(pd.to_numeric, errors="coerce")
    day = pd.to_datetime(parts, errors="coerce")
    inside = day.between(pd.Timestamp(window[0]), pd.Timestamp(window[1]))
    kept: pd.DataFrame = frame[inside | day.isna()]
    return kept.reset_index(drop=True)


def _protect(policy: DataPolicy, pseudonymizer: Pseudonymizer, outcome: Outcome) -> Outcome:
    """Apply the policy's handling to accepted and quarantined records alike."""
    for column in policy.columns_with(outcome.table, Handling.PSEUDONYMIZE):
        for frame in (outcome.accepted, outcome.quarantined):
            if column in frame:
                frame[column] = pseudonymizer.pseudonymize_series(frame[column])
    for column in policy.columns_with(outcome.table, Handling.DROP):
        outcome.accepted.drop(columns=column, errors="ignore", inplace=True)
        outcome.quarantined.drop(columns=column, errors="ignore", inplace=True)
    return outcome


def _protect_lines(
    policy: DataPolicy,
    pseudonymizer: Pseudonymizer,
    table: str,
    columns: list[str],
    lines: pd.DataFrame,
) -> pd.DataFrame:
    """Pseudonymise identifier fields inside malformed lines, by their header position."""
    hidden = {
        columns.index(c) for c in policy.columns_with(table, Handling.PSEUDONYMIZE) if c in columns
    }
    hidden |= {columns.index(c) for c in policy.columns_with(table, Handling.DROP) if c in columns}
    if lines.empty or not hidden:
        return lines

    def scrub(text: str) -> str:
        fields = text.split(",")
        for i in hidden:
            if i < len(fields) and fields[i] not in {"", "NA"}:
                fields[i] = pseudonymizer.pseudonymize(fields[i])
        return ",".join(fields)

    return lines.assign(text=lines["text"].map(scrub))


def _count(
    record: RunRecord, outcomes: dict[str, Outcome], malformed: dict[str, pd.DataFrame]
) -> None:
    for name, outcome in outcomes.items():
        bad_lines = len(malformed[name])
        record.tables.append(
            TableStats(
                table=name,
                rows_in=outcome.rows_in + bad_lines,
                rows_loaded=len(outcome.accepted),
                rows_inserted=record.inserted.get(f"source:{name}", 0),
                rows_corrected=outcome.rows_corrected,
                rows_quarantined=len(outcome.quarantined) + bad_lines,
                failures={
                    **outcome.failures,
                    **({"malformed_row": bad_lines} if bad_lines else {}),
                },
                corrections=outcome.corrections,
            )
        )
    unbalanced = [t.table for t in record.tables if not t.balanced]
    if unbalanced:
        raise VigieError(
            ErrorCode.DATA_QUALITY,
            f"rows unaccounted for in {', '.join(unbalanced)}; nothing was loaded",
        )


def _publish(
    settings: Settings,
    expectations: Expectations,
    record: RunRecord,
    outcomes: dict[str, Outcome],
    gaps: list[dict[str, Any]],
) -> PipelineResult:
    samples = {
        name: [
            {
                "record_key": "|".join(str(r.get(k)) for k in spec.natural_key),
                "reasons": r["reasons"],
            }
            for r in outcomes[name].quarantined.head(SAMPLES_PER_TABLE).to_dict("records")
        ]
        for name, spec in expectations.tables.items()
    }
    declared = {
        name: _declared_checks(spec.checks, spec.columns)
        for name, spec in expectations.tables.items()
    }
    report = build_report(record, samples, declared, gaps)
    paths = write_report(settings.reports_dir, report)
    metrics_path = write_metrics(settings.metrics_dir, record)
    return PipelineResult(record, report, paths, metrics_path)


def _declared_checks(checks: list[str], columns: dict[str, Any]) -> list[str]:
    names = {"duplicate_key", "type_mismatch"}
    for spec in columns.values():
        names |= {"missing_value"} if spec.required else set()
        names |= {"out_of_range"} if spec.min is not None or spec.max is not None else set()
        names |= {"malformed_code"} if spec.pattern else set()
        names |= {"invalid_clock"} if spec.type == "clock" else set()
    for check in checks:
        names |= set(FINDINGS[check])
    return sorted(names)


def _fail(
    settings: Settings, audit: AuditLog, warehouse: Warehouse | None, record: RunRecord, error: str
) -> None:
    record.status, record.finished_at, record.error = "failed", datetime.now(UTC), error
    record.tables = []
    log.error("pipeline run failed", extra={"run_id": record.run_id, "error": error})
    if warehouse is not None:
        try:
            with warehouse.transaction():
                write_run(warehouse, record)
        except Exception as err:  # lineage of a failure must not hide the failure itself
            log.warning("could not record the failed run", extra={"error": str(err)})
    write_metrics(settings.metrics_dir, record)
    _audit(audit, record)


def _note_policy_change(settings: Settings, policy: DataPolicy, record: RunRecord) -> None:
    """Audit a change of the policy since the last run; warn when its version was not raised."""
    state = PolicyState(policy.version, record.policy_hash)
    source = str(policy.source or "the shipped data policy")
    if record_change(settings.audit_log_path, state, actor=settings.actor, source=source):
        log.warning(
            "the data policy changed without its version being raised: raise version in %s "
            "once the change is reviewed (audit log: policy.change)",
            source,
        )


def _audit(audit: AuditLog, record: RunRecord) -> None:
    audit.append(
        actor=record.actor,
        action="pipeline.run",
        target=record.pipeline,
        outcome="success" if record.status == "success" else "failure",
        inputs={
            "landing": record.input_hashes,
            "policy_sha256": record.policy_hash,
            "policy_version": record.policy_version,
        },
        details={
            "run_id": record.run_id,
            "window_from": str(record.window_from),
            "window_to": str(record.window_to),
            "error": record.error,
            "rows": {
                t.table: {
                    "in": t.rows_in,
                    "loaded": t.rows_loaded,
                    "quarantined": t.rows_quarantined,
                }
                for t in record.tables
            },
        },
    )
