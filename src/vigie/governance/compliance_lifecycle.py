"""The data-lifecycle items of the compliance audit: storage limitation (GDPR Art. 5(1)(e))
and the right to erasure (Art. 17), judged from the audit entries of the retention job and
of erasures (dry runs left out: they change nothing)."""

from __future__ import annotations

from collections import defaultdict

from vigie.governance.audit import AuditEntry, Outcome
from vigie.governance.compliance_facts import Evidence
from vigie.governance.compliance_items import (
    Gap,
    Item,
    Ref,
    Table,
    entry_ref,
    gap,
    make_item,
    plural,
    policy_ref,
    table,
)
from vigie.governance.policy import DataPolicy

#: Audit actions of the retention job and of erasures.
RETAIN_ACTION = "governance.retain"
ERASE_ACTION = "governance.erase"


def applied(evidence: Evidence, action: str) -> list[AuditEntry]:
    """The entries of ``action`` in the period, dry runs left out."""
    return [
        e
        for e in evidence.audit.actions(action)
        if evidence.period.includes(e.ts)
        and not (e.inputs.get("dry_run") or e.details.get("dry_run"))
    ]


def searched(evidence: Evidence, action: str) -> Ref:
    """The audit log as evidence of what was looked for in it."""
    return Ref(kind="audit_log", ref=evidence.audit.path, detail=f"searched for {action}*")


def storage_limitation(evidence: Evidence) -> Item:
    """Art. 5(1)(e): the retention periods are applied (the last retention run)."""
    runs = applied(evidence, RETAIN_ACTION)
    last = runs[-1] if runs else None
    return make_item(
        "gdpr.art5.storage",
        summary=f"{plural(len(runs), 'retention run')} in the audit log "
        f"({evidence.period.label})"
        + (f"; the last, seq {last.seq}, ended {last.outcome}." if last else "."),
        evidence=[policy_ref(evidence), searched(evidence, RETAIN_ACTION)]
        + [entry_ref(e) for e in runs[-5:]],
        gaps=_retention_gaps(evidence, last),
        tables=[
            table(
                "Retention runs (dry runs left out)",
                ("audit seq", "when", "by", "outcome", "records deleted"),
                [
                    (str(e.seq), e.ts[:19], e.actor, e.outcome, str(e.details.get("deleted", "-")))
                    for e in runs[-10:]
                ],
            ),
            _retention_table(evidence.policy),
        ],
    )


def _retention_gaps(evidence: Evidence, last: AuditEntry | None) -> list[Gap]:
    if last is None:
        return [
            gap(
                f"no retention run in the audit log ({evidence.period.label})",
                "apply the policy's retention periods with the retention job (vigie governance "
                f"retain, permission data.retain), which is audited as {RETAIN_ACTION}, and run "
                "it on a schedule",
            )
        ]
    if last.outcome not in {Outcome.SUCCESS, Outcome.PARTIAL}:
        return [
            gap(
                f"the last retention run (seq {last.seq}) ended {last.outcome}",
                "read its details in the audit log, fix the cause and run it again",
            )
        ]
    return []


def _retention_table(policy: DataPolicy) -> Table:
    rows = []
    for name, columns in policy.tables.items():
        periods: dict[str, list[str]] = defaultdict(list)
        for column_name, column in columns.columns.items():
            periods[column.retention].append(column_name)
        rows += [(name, period, ", ".join(names)) for period, names in sorted(periods.items())]
    return table("Retention periods of the policy", ("table", "retention", "columns"), rows)


def erasure(evidence: Evidence) -> Item:
    """Art. 17: every subject whose erasure was run was erased at least once."""
    entries = applied(evidence, ERASE_ACTION)
    requests: dict[str, list[AuditEntry]] = defaultdict(list)
    for entry in entries:
        details = entry.details
        key = details.get("request_id") or details.get("subject") or entry.target
        requests[str(key)].append(entry)
    gaps = [
        gap(
            f"erasure request {request} is not completed (last outcome {steps[-1].outcome}, "
            f"seq {steps[-1].seq})",
            "run the erasure again for this subject (vigie governance erase, permission "
            "data.erase) and check every store it names",
        )
        for request, steps in requests.items()
        if not any(s.outcome == Outcome.SUCCESS for s in steps)
    ]
    rows = [
        (request, steps[0].target, steps[0].ts[:19], steps[-1].outcome,
         ", ".join(str(s.seq) for s in steps))
        for request, steps in requests.items()
    ]  # fmt: skip
    columns = ("request", "subject", "received", "last outcome", "audit seq")
    return make_item(
        "gdpr.art17.erasure",
        summary=f"{plural(len(requests), 'erasure request')} in the audit log "
        f"({evidence.period.label}), {len(requests) - len(gaps)} completed.",
        evidence=[searched(evidence, ERASE_ACTION)] + [entry_ref(e) for e in entries[-10:]],
        gaps=gaps,
        tables=[table("Erasure requests", columns, rows)] if rows else [],
        applicable=bool(requests),
    )
