"""``vigie governance risks``: the data risk register, per dataset and per model."""

from __future__ import annotations

import sys
from typing import Annotated

import typer
from rich.table import Table

from vigie.cli.audit_evidence import service_facts
from vigie.cli.common import authorized, guarded, out
from vigie.governance.audit import AuditLog, Outcome
from vigie.governance.compliance_facts import Period
from vigie.governance.compliance_home import gather
from vigie.governance.compliance_risk_report import write_register
from vigie.governance.risks import RISKS_FOLDER, assess

#: The audit log action of a written register.
RISKS_ACTION = "governance.risks"


@guarded
def risks_command(
    as_json: Annotated[bool, typer.Option("--json", help="Print the register as JSON.")] = False,
) -> None:
    """Score the quality and security risks of every dataset and model; write the register."""
    settings = authorized("audit.read")
    evidence = gather(settings, Period(), service_facts(settings))
    register = assess(evidence)
    files = write_register(register, settings.reports_dir / RISKS_FOLDER)
    AuditLog(settings.audit_log_path).append(
        settings.actor,
        RISKS_ACTION,
        evidence.relative(files.json_path),
        Outcome.SUCCESS,
        inputs={"register_sha256": files.sha256},
        details={
            status: sum(r.status == status for r in register.risks)
            for status in ("open", "monitored", "accepted")
        },
    )
    if as_json:
        sys.stdout.write(files.json_path.read_text(encoding="utf-8"))
        return
    table = Table(title="data risk register (score = likelihood x impact)")
    for column in ("id", "subject", "kind", "L", "I", "score", "owner", "status"):
        table.add_column(column, justify="right" if column in {"L", "I", "score"} else "left")
    for risk in register.risks:
        table.add_row(
            risk.id,
            risk.subject,
            risk.kind,
            str(risk.likelihood),
            str(risk.impact),
            str(risk.score),
            risk.owner,
            risk.status,
        )
    out.print(table)
    out.print(f"register: {files.markdown_path}\nJSON:     {files.json_path}")
