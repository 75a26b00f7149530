"""``vigie governance erase``: take one data subject out of every store.

The subject is searched for by its pseudonym (and, for an aircraft, by its clear tail
number in the raw landing zone): in the logs (:mod:`vigie.retention.logs`), the online
feature store (:mod:`vigie.retention.online`), the training snapshots
(:mod:`vigie.retention.snapshots`), the landing zone and the reports
(:mod:`vigie.retention.files`) and the warehouse (:mod:`vigie.retention.warehouse`), last:
its links between an aircraft and its flights tell which snapshot rows are the aircraft's.
The erasure record is the audit entry ``governance.erase``: the subject's pseudonym, never
its clear value, what was done in each store, and the registered versions whose training
snapshot was rewritten. Erasing a subject again finds nothing and changes nothing.
"""

from __future__ import annotations

from contextlib import closing

from vigie.config import Settings
from vigie.errors import VigieError
from vigie.governance.audit import AuditLog, Outcome
from vigie.governance.erasure import ErasureReport, Subject, Target
from vigie.governance.pseudonymize import Pseudonymizer
from vigie.retention.files import erase_landing, erase_reports
from vigie.retention.logs import erase_logs
from vigie.retention.online import erase_online
from vigie.retention.snapshots import erase_snapshots
from vigie.retention.warehouse import erase_warehouse, find_aircraft
from vigie.warehouse.connection import connect
from vigie.warehouse.migrations import migrate

#: The audit log action of an erasure.
ERASE_ACTION = "governance.erase"


def erase(settings: Settings, subject: Subject, *, dry_run: bool = False) -> ErasureReport:
    """Erase ``subject`` from every store; audited (with its pseudonym only).

    Args:
        settings: The installation (home, warehouse, logs, online store, key).
        subject: Who to erase, with the clear value the caller knows.
        dry_run: Count what would change, change nothing.

    Raises:
        VigieError: CONFIGURATION (key, URLs), WAREHOUSE_UNAVAILABLE, UNAVAILABLE (Redis, the
            online store); audited as a failure.
    """
    target = Target.of(subject, Pseudonymizer.from_settings(settings))
    report = ErasureReport(target, dry_run)
    audit = AuditLog(settings.audit_log_path)
    inputs = {"subject": target.name, "dry_run": dry_run}
    try:
        with closing(connect(settings.resolved_warehouse_url)) as warehouse:
            migrate(warehouse)
            aircraft = find_aircraft(warehouse, target)
            erase_logs(settings, target, report)
            erase_online(settings, target, report)
            erase_snapshots(settings, aircraft.flights, report)
            erase_landing(settings, target, report)
            erase_reports(settings, target, report)
            erase_warehouse(warehouse, target, aircraft, report)
    except VigieError as err:
        details = report.to_json() | {"error": err.to_dict()}
        audit.append(
            settings.actor,
            ERASE_ACTION,
            target.name,
            Outcome.FAILURE,
            inputs=inputs,
            details=details,
        )
        raise
    audit.append(
        settings.actor,
        ERASE_ACTION,
        target.name,
        Outcome.SUCCESS,
        inputs=inputs,
        details=report.to_json(),
    )
    return report
