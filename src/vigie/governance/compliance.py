"""The compliance audit: GDPR and EU AI Act items judged from the system's own evidence.

:func:`run_audit` assesses the data risks (:mod:`vigie.governance.risks`, written under
``reports/risks``), judges every item (:mod:`compliance_gdpr`, :mod:`compliance_ai_act`)
from the :class:`Evidence` the caller gathered, writes the report as JSON and as an
accessible HTML page, then audits itself: an ``audit.report`` entry carries the sha256 of
both files. The report records the audit log's head as it found it, which the next report
checks the log against (an anchor that reveals entries removed from the end).
"""

from __future__ import annotations

import functools
import hashlib
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2
from pydantic import BaseModel, ConfigDict

from vigie.governance.audit import AuditEntry, AuditLog, Outcome
from vigie.governance.compliance_ai_act import ai_act_items
from vigie.governance.compliance_facts import Evidence
from vigie.governance.compliance_gdpr import gdpr_items
from vigie.governance.compliance_home import AUDIT_REPORTS, REPORT_JSON
from vigie.governance.compliance_items import Item, Ref, Status
from vigie.governance.compliance_risk_report import RegisterFiles, write_register
from vigie.governance.risks import RISKS_FOLDER, RiskRegister, assess

#: The HTML page of a report, beside its JSON document.
REPORT_HTML = "audit_report.html"
#: The audit log action of a report.
REPORT_ACTION = "audit.report"
#: Version of the JSON document's layout.
REPORT_FORMAT = 1


class AuditReport(BaseModel):
    """The compliance audit report, as written to ``audit_report.json``.

    Attributes:
        format: :data:`REPORT_FORMAT`.
        report_id: When it was made, ``YYYYMMDDTHHMMSSZ`` and a random suffix.
        generated_at: When (UTC, ISO-8601).
        generated_by: Who asked for it.
        period: ``since`` (a date or None) and the period in words.
        policy: The data policy judged against: path, version, sha256.
        audit_head: ``seq`` and ``hash`` of the audit log's last sound entry when it was
            read (the anchor the next report checks).
        summary: How many items conform, have a gap, do not apply.
        items: Every item.
        risk_register: The data risk assessment of Art. 9.
    """

    model_config = ConfigDict(frozen=True)

    format: int = REPORT_FORMAT
    report_id: str
    generated_at: str
    generated_by: str
    period: dict[str, str | None]
    policy: dict[str, Any]
    audit_head: dict[str, Any]
    summary: dict[str, int]
    items: list[Item]
    risk_register: RiskRegister


@dataclass(frozen=True)
class AuditResult:
    """What :func:`run_audit` wrote."""

    report: AuditReport
    json_path: Path
    html_path: Path
    sha256: str
    register: RegisterFiles
    entry: AuditEntry


def build_report(
    evidence: Evidence, register: RiskRegister, register_ref: Ref, actor: str
) -> AuditReport:
    """Judge every item from the evidence (nothing is written)."""
    items = gdpr_items(evidence) + ai_act_items(evidence, register, register_ref)
    verification = evidence.audit.verification
    seq, digest = verification.head if verification else (-1, "")
    moment = evidence.generated_at
    return AuditReport(
        report_id=f"{moment:%Y%m%dT%H%M%SZ}-{secrets.token_hex(2)}",
        generated_at=moment.isoformat(timespec="seconds"),
        generated_by=actor,
        period={
            "since": evidence.period.since.isoformat() if evidence.period.since else None,
            "label": evidence.period.label,
        },
        policy={
            "path": evidence.policy_path,
            "version": evidence.policy.version,
            "sha256": evidence.policy.content_hash(),
        },
        audit_head={"seq": seq, "hash": digest},
        summary={s.value: sum(i.status is s for i in items) for s in Status},
        items=items,
        risk_register=register,
    )


def run_audit(
    evidence: Evidence, *, reports_dir: Path, audit_log: Path, actor: str, out: Path | None
) -> AuditResult:
    """Assess the risks, build the report, write it, and audit it.

    Args:
        evidence: What the system recorded (see :mod:`compliance_facts`).
        reports_dir: ``Settings.reports_dir``: the risk register goes to ``risks/``, the
            report to ``audit/<report_id>/`` unless ``out`` is given.
        audit_log: The audit log the ``audit.report`` entry is appended to.
        actor: Who asked for the report.
        out: The folder to write the report to.

    Raises:
        VigieError: AUDIT_TAMPERED when the log's last line is damaged (the report is
            written, with its gap, but not audited).
    """
    register = assess(evidence)
    register_files = write_register(register, reports_dir / RISKS_FOLDER)
    where = evidence.relative(register_files.json_path)
    register_ref = Ref(kind="risk_register", ref=where, detail=f"sha256 {register_files.sha256}")
    report = build_report(evidence, register, register_ref, actor)
    folder = out if out is not None else reports_dir / AUDIT_REPORTS / report.report_id
    json_path, html_path = write_report(report, folder)
    digest = _sha256(json_path)
    entry = AuditLog(audit_log).append(
        actor,
        REPORT_ACTION,
        evidence.relative(json_path),
        Outcome.SUCCESS,
        inputs={"report_sha256": digest, "html_sha256": _sha256(html_path)},
        details={
            "report_id": report.report_id,
            "since": report.period["since"],
            "summary": report.summary,
            "audit_head": report.audit_head,
            "risk_register_sha256": register_files.sha256,
        },
    )
    return AuditResult(report, json_path, html_path, digest, register_files, entry)


def write_report(report: AuditReport, folder: Path) -> tuple[Path, Path]:
    """Write ``audit_report.json`` and ``audit_report.html`` into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    json_path, html_path = folder / REPORT_JSON, folder / REPORT_HTML
    _replace(json_path, report.model_dump_json(indent=2) + "\n")
    _replace(html_path, render_html(report))
    return json_path, html_path


def render_html(report: AuditReport) -> str:
    """The report as a self-contained page meant to meet WCAG 2.1 AA."""
    data = report.model_dump(mode="json")
    frameworks: dict[str, list[dict[str, Any]]] = {}
    for item in data["items"]:
        frameworks.setdefault(item["framework"], []).append(item)
    return (
        _environment()
        .get_template("audit_report.html.j2")
        .render(report=data, frameworks=frameworks, labels=STATUS_LABELS)
    )


#: How each status reads, with the icon beside it (never colour alone).
STATUS_LABELS = {
    Status.CONFORMS.value: ("Conforms", "good", "check"),
    Status.GAP.value: ("Gap", "bad", "cross"),
    Status.NOT_APPLICABLE.value: ("Not applicable", "neutral", "dash"),
    "open": ("Open", "bad", "alert"),
    "monitored": ("Monitored", "warn", "clock"),
    "accepted": ("Accepted", "good", "check"),
}


@functools.cache
def _environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.PackageLoader("vigie.governance", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def _replace(path: Path, text: str) -> None:
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(text, encoding="utf-8")
    os.replace(temporary, path)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()
