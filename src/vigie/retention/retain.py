"""``vigie governance retain``: delete what has outlived the retention of its store.

Every store the data policy's ``stores`` section declares is swept, in turn: the logs
(:mod:`vigie.retention.logs`), the warehouse's facts and quarantine
(:mod:`vigie.retention.warehouse`), the landing zone and the pipeline reports
(:mod:`vigie.retention.files`), the training snapshots (:mod:`vigie.retention.snapshots`).
What was deleted, per store and per month of the records' event time, is written to the
audit log (``governance.retain``), a dry run's too. A second run on the same day deletes
nothing: what the first kept is still within its retention.
"""

from __future__ import annotations

from contextlib import closing
from datetime import UTC, date, datetime

from vigie.config import Settings
from vigie.errors import VigieError
from vigie.governance.audit import AuditLog, Outcome
from vigie.governance.policy import load_policy
from vigie.governance.retention import RetentionReport
from vigie.retention.files import retain_landing, retain_reports
from vigie.retention.logs import retain_logs
from vigie.retention.snapshots import retain_snapshots
from vigie.retention.warehouse import retain_warehouse
from vigie.warehouse.connection import connect
from vigie.warehouse.migrations import migrate

#: The audit log action of a retention run.
RETAIN_ACTION = "governance.retain"


def retain(
    settings: Settings, *, as_of: date | None = None, dry_run: bool = False
) -> RetentionReport:
    """Apply the policy's retention to every store; audited.

    Args:
        settings: The installation (home, warehouse, logs, online store, policy).
        as_of: The day ages are measured to; default: today (UTC).
        dry_run: Count what would be deleted, delete nothing.

    Raises:
        VigieError: CONFIGURATION (policy, URLs), POLICY_VIOLATION (a store without
            retention), WAREHOUSE_UNAVAILABLE, UNAVAILABLE (Redis); audited as a failure.
    """
    policy = load_policy(settings.policy_file)
    report = RetentionReport(as_of or datetime.now(UTC).date(), dry_run)
    audit = AuditLog(settings.audit_log_path)
    inputs = {"policy_sha256": policy.content_hash(), "policy_version": policy.version}
    try:
        retain_logs(settings, policy, report)
        with closing(connect(settings.resolved_warehouse_url)) as warehouse:
            migrate(warehouse)
            retain_warehouse(warehouse, policy, report)
        retain_landing(settings, policy, report)
        retain_snapshots(settings, policy, report)
        retain_reports(settings, policy, report)
    except VigieError as err:
        details = report.to_json() | {"error": err.to_dict()}
        audit.append(
            settings.actor, RETAIN_ACTION, "stores", Outcome.FAILURE, inputs=inputs, details=details
        )
        raise
    audit.append(
        settings.actor,
        RETAIN_ACTION,
        "stores",
        Outcome.SUCCESS,
        inputs=inputs,
        details=report.to_json(),
    )
    return report
