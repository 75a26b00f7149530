"""``vigie governance``: retention and erasure of the data the platform keeps."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.table import Table

from vigie.cli.common import authorized, guarded, out, parse_date
from vigie.governance.erasure import ErasureReport, parse_subject
from vigie.governance.retention import RetentionReport
from vigie.retention.erase import erase
from vigie.retention.retain import retain

governance_app = typer.Typer(
    help="Data governance: retention, erasure, risks.", no_args_is_help=True
)

DryRun = Annotated[bool, typer.Option("--dry-run", help="Count what would change; change nothing.")]
AsJson = Annotated[bool, typer.Option("--json", help="Print the report as JSON.")]


@governance_app.command("retain")
@guarded
def retain_command(
    dry_run: DryRun = False,
    as_of: Annotated[
        str | None,
        typer.Option("--as-of", help="Day ages are measured to (YYYY-MM-DD; default: today, UTC)."),
    ] = None,
    as_json: AsJson = False,
) -> None:
    """Delete what has outlived its retention (the data policy's stores section)."""
    settings = authorized("data.retain")
    report = retain(settings, as_of=parse_date(as_of, "--as-of"), dry_run=dry_run)
    if as_json:
        out.print_json(json.dumps(report.to_json()))
        return
    _retain_summary(report)


def _retain_summary(report: RetentionReport) -> None:
    verb = "would delete" if report.dry_run else "deleted"
    table = Table(title=f"retention as of {report.as_of} ({verb} {report.deleted} records)")
    for column in ("store", "where", "retention", "kept from", verb, "kept past retention"):
        table.add_column(column, justify="right" if column == verb else "left")
    for store, sweeps in report.sweeps.items():
        for sweep in sweeps:
            table.add_row(
                store,
                sweep.where or sweep.retention.table or "",
                f"{sweep.retention.duration} ({sweep.retention.basis})",
                f"{sweep.cutoff:%Y-%m-%d}",
                _records(sweep.deleted, sweep.unit),
                "; ".join(f"{k['what']}: {k['why']}" for k in sweep.kept),
            )
    out.print(table)


def _records(count: int, unit: str) -> str:
    if count == 1:
        return f"1 {unit}"
    return f"{count} {unit[:-1]}ies" if unit.endswith("y") else f"{count} {unit}s"


@governance_app.command("erase")
@guarded
def erase_command(
    subject: Annotated[
        str,
        typer.Option(
            "--subject",
            help="KIND:VALUE, with the clear value: tailnum:<tail number> or client:<client id>.",
        ),
    ],
    dry_run: DryRun = False,
    as_json: AsJson = False,
) -> None:
    """Remove one data subject from every store; the audit log records its pseudonym."""
    who = parse_subject(subject)
    settings = authorized("data.erase")
    report = erase(settings, who, dry_run=dry_run)
    if as_json:
        out.print_json(json.dumps(report.to_json()))
    elif report.total == 0:
        out.print(
            f"no data found for {who.kind.value}:{who.value} (searched as {report.target.name}): "
            "nothing to erase",
            markup=False,
            highlight=False,
        )
    else:
        _erase_summary(report)


def _erase_summary(report: ErasureReport) -> None:
    verb = "would change" if report.dry_run else "changed"
    table = Table(title=f"erasure of {report.target.name} ({verb} {report.total} records)")
    for column in ("store", "done", "records"):
        table.add_column(column, justify="right" if column == "records" else "left")
    for store, counts in report.stores.items():
        for action, records in sorted(counts.items()):
            if records:
                table.add_row(store, action, str(records))
    out.print(table)
    for version in report.versions:
        out.print(
            f"{version['model']}/{version['version']} was trained on snapshot "
            f"{version['snapshot_hash'][:12]}, now {version['rewritten_as'][:12]} "
            f"({version['rows']} rows cleared): retrain it to leave the subject out of the model",
            markup=False,
            highlight=False,
        )
