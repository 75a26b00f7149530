"""The data items of the EU AI Act audit: data governance (Art. 10), record-keeping (Art. 12)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from vigie.governance.compliance_facts import (
    Evidence,
    PayloadFacts,
    QualityFacts,
    RunFacts,
    VersionFacts,
)
from vigie.governance.compliance_items import Gap, Item, Ref, gap, make_item, plural, table

RERUN = "re-run the pipeline for its window (vigie pipeline run)"


def data_governance(evidence: Evidence) -> Item:
    """Art. 10: lineage and quality report of each pipeline run; bias by slice."""
    runs = [r for r in evidence.services.runs if evidence.period.includes(r.started_at)]
    reports = {q.run_id: q for q in evidence.quality}
    gaps = _lineage_gaps(evidence, runs, reports)
    slice_rows, slice_gaps, slice_refs = _slices(evidence.production_versions())
    columns = ("run", "status", "window", "code", "policy sha256", "quality report")
    return make_item(
        "aiact.art10.data",
        summary=f"{plural(len(runs), 'pipeline run')} ({evidence.period.label}); "
        f"{plural(len(slice_rows), 'slice summary', 'slice summaries')} of production versions.",
        evidence=[ref for r in runs for ref in _run_refs(r, reports.get(r.run_id))] + slice_refs,
        gaps=gaps + slice_gaps,
        tables=[
            table(
                "Pipeline runs: lineage and quality report",
                columns,
                [_run_row(r, reports.get(r.run_id)) for r in runs],
            ),
            table(
                "Bias by slice (evaluation of each production version)",
                ("version", "slice by", "slices", "spread", "weakest slice"),
                slice_rows,
            ),
        ],
    )


def _lineage_gaps(
    evidence: Evidence, runs: list[RunFacts], reports: dict[str, QualityFacts]
) -> list[Gap]:
    gaps = [g for r in runs for g in _run_gaps(r, reports.get(r.run_id))]
    if evidence.services.runs_error:
        gaps.append(
            gap(
                f"the warehouse could not be read: {evidence.services.runs_error}",
                "check VIGIE_WAREHOUSE_URL and run the audit again",
            )
        )
    elif not runs:
        gaps.append(
            gap(
                f"no pipeline run in the warehouse ({evidence.period.label})",
                "load the data through the governed pipeline (vigie pipeline run), which "
                "records lineage and a quality report",
            )
        )
    return gaps


def _run_row(run: RunFacts, report: QualityFacts | None) -> tuple[str, ...]:
    return (
        run.run_id,
        run.status,
        run.window,
        run.code_version,
        run.policy_hash[:12],
        report.path if report else "none",
    )


def _run_refs(run: RunFacts, report: QualityFacts | None) -> list[Ref]:
    refs = [
        Ref(
            kind="pipeline_run",
            ref=run.run_id,
            detail=f"{run.status}, {plural(run.input_files, 'input file')} hashed",
        )
    ]
    if report:
        balanced = "balanced" if report.balanced else "NOT balanced"
        refs.append(Ref(kind="quality_report", ref=report.path, detail=balanced))
    return refs


def _run_gaps(run: RunFacts, report: QualityFacts | None) -> list[Gap]:
    if run.status != "success":
        return []  # a failed run loads nothing; its failure is in the audit log
    gaps = []
    if not run.input_files or not run.policy_hash:
        gaps.append(gap(f"run {run.run_id} records no input hashes or no policy hash", RERUN))
    if report is None:
        gaps.append(gap(f"run {run.run_id} has no quality report", f"{RERUN}, which writes it"))
    elif not report.balanced:
        gaps.append(gap(f"run {run.run_id} did not account for every row", RERUN))
    return gaps


def _slices(versions: Iterable[VersionFacts]) -> tuple[list[Any], list[Gap], list[Ref]]:
    rows, gaps, refs = [], [], []
    for version in versions:
        detail = f"{version.ref}: metrics.json slices"
        refs.append(Ref(kind="registry_version", ref=version.manifest, detail=detail))
        reported = {column: r for column, r in version.slices.items() if r}
        if not reported:
            gaps.append(
                gap(
                    f"{version.ref} has no metrics per slice",
                    "retrain it with the evaluation's slices (carrier, origin, month) and "
                    "promote the new version",
                )
            )
        rows += [(version.ref, c, str(len(s)), *_spread(s)) for c, s in reported.items()]
    return rows, gaps, refs


def _spread(slices: list[dict[str, Any]]) -> tuple[str, str]:
    """The gap between the best and the weakest slice, and the weakest one."""
    metric, worse_is_low = ("roc_auc", True) if "roc_auc" in slices[0] else ("mae", False)
    scored = [
        (float(s[metric]), str(s.get("value")))
        for s in slices
        if isinstance(s.get(metric), int | float) and s[metric] == s[metric]  # not NaN
    ]
    if not scored:
        return ("-", "-")
    scored.sort(reverse=not worse_is_low)
    spread = abs(scored[-1][0] - scored[0][0])
    return (f"{metric} {spread:.3f}", f"{scored[0][1]} ({metric} {scored[0][0]:.3f})")


def record_keeping(evidence: Evidence) -> Item:
    """Art. 12: the audit log and the payload log exist and are intact."""
    audit, payload = evidence.audit, evidence.services.payload
    entries = plural(len([e for e in audit.entries if evidence.period.includes(e.ts)]), "entry",
                     "entries")  # fmt: skip
    gaps = []
    if not audit.present:
        gaps.append(
            gap("there is no audit log", "run vigie from this home; every command audits itself")
        )
    elif audit.verification is not None and not audit.verification.ok:
        gaps.append(
            gap(
                f"the audit log failed verification: {audit.verification.problem}",
                "investigate the tampering and start a new log chained to the old head "
                "(docs/governance.md)",
            )
        )
    gaps += _payload_gaps(payload, serving=bool(evidence.production_versions()))
    refs = [Ref(kind="audit_log", ref=audit.path, detail=f"{entries} ({evidence.period.label})")]
    if payload is not None:
        refs.append(Ref(kind="payload_log", ref=payload.where, detail=_payload_text(payload)))
    return make_item(
        "aiact.art12.records",
        summary=f"Audit log: {entries} ({evidence.period.label}); payload log: "
        + (_payload_text(payload) if payload else "not read")
        + ".",
        evidence=refs,
        gaps=gaps,
    )


def _payload_gaps(payload: PayloadFacts | None, *, serving: bool) -> list[Gap]:
    if payload is None or payload.error:
        problem = payload.error if payload else "it was not read"
        remedy = "check VIGIE_STREAM_URL (or the payload folder) and run the audit again"
        return [gap(f"the payload log could not be read: {problem}", remedy)]
    if payload.unreadable:
        offset, reason = payload.unreadable[0]
        count = plural(len(payload.unreadable), "payload entry", "payload entries")
        return [
            gap(
                f"{count} cannot be read (first at {offset}: {reason})",
                "keep the damaged segment as evidence and find what wrote into it; the "
                "service only appends whole lines",
            )
        ]
    if serving and payload.entries == 0:
        return [
            gap(
                "a model is in production but the payload log holds no prediction",
                "serve predictions through vigie serve, which logs every one; check that the "
                "service can write to the payload log",
            )
        ]
    return []


def _payload_text(payload: PayloadFacts) -> str:
    if payload.error:
        return f"unreadable ({payload.error})"
    text = plural(payload.entries, "entry", "entries")
    if payload.entries:
        text += f" from {payload.first_logged} to {payload.last_logged}"
    return text + (f", {payload.drops} dropped when a buffer was full" if payload.drops else "")
