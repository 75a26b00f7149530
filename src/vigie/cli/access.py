"""``vigie warehouse-access``: who may read which warehouse column, enforced by the engine."""

from __future__ import annotations

from contextlib import closing
from typing import Annotated, Any

import typer
from rich.table import Table

from vigie.cli.common import authorized, guarded, out
from vigie.cli.common import settings as build_settings
from vigie.config import Settings
from vigie.errors import VigieError
from vigie.governance.audit import AuditLog
from vigie.governance.policy import DataPolicy, load_policy
from vigie.warehouse.access import AccessPlan, ApplyResult, apply, current_plan, select_as
from vigie.warehouse.connection import connect, redact
from vigie.warehouse.grants import group_role
from vigie.warehouse.views import view_schema

access_app = typer.Typer(
    help="Column access per policy role: PostgreSQL grants, DuckDB views.", no_args_is_help=True
)

#: The audit log action of an apply.
ACTION = "warehouse.access.apply"


@access_app.command("apply")
@guarded
def access_apply(
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Show what would change; change nothing.")
    ] = False,
) -> None:
    """Enforce the data policy's readers: grants on PostgreSQL, per-role views on DuckDB."""
    settings = authorized("data.load")
    policy = load_policy(settings.policy_file)
    url = settings.resolved_warehouse_url
    try:
        result = apply(url, policy, dry_run=dry_run)
    except VigieError as error:
        if not dry_run:
            _audit(settings, policy, "failure", {"error": str(error)})
        raise
    _print_plan(result.plan, None, result.dialect)
    verb = "would execute" if dry_run else "executed"
    out.print(f"{redact(url)}: {verb} {len(result.changes)} statement(s)", highlight=False)
    for change in result.changes:
        out.print(
            f"  [{change.role}] {change.statement}", highlight=False, markup=False, soft_wrap=True
        )
    if not dry_run:
        _audit(settings, policy, "success", _details(result))


def _details(result: ApplyResult) -> dict[str, Any]:
    return {
        "dialect": result.dialect,
        "plan_sha256": result.plan.digest(),
        "changes": len(result.changes),
        "columns_per_role": {
            role: sum(len(c) for c in result.plan.readable(role).values())
            for role in result.plan.roles
        },
    }


def _audit(settings: Settings, policy: DataPolicy, outcome: str, details: dict[str, Any]) -> None:
    AuditLog(settings.audit_log_path).append(
        settings.actor,
        ACTION,
        redact(settings.resolved_warehouse_url),
        outcome,
        inputs={"policy_sha256": policy.content_hash()},
        details={"policy_version": policy.version, **details},
    )


@access_app.command("show")
@guarded
def access_show(
    role: Annotated[str | None, typer.Option(help="Only this policy role.")] = None,
    table: Annotated[
        str | None, typer.Option(help="Only this table, column by column, with each rule.")
    ] = None,
) -> None:
    """Show which columns of which table each role may read, and why."""
    settings = build_settings()
    policy = load_policy(settings.policy_file)
    url = settings.resolved_warehouse_url
    with closing(connect(url, read_only=url.startswith("duckdb:"))) as warehouse:
        plan = current_plan(warehouse, policy)
        dialect = warehouse.dialect
    if role is not None:
        plan.readable(role)  # refuses an undeclared role
    if table is None:
        _print_plan(plan, role, dialect)
        return
    grid = Table(title=f"{table}: readers of each column")
    for name in ("column", "rule", "from", "classification", "readers"):
        grid.add_column(name)
    for access in plan.of_table(table):
        if role is None or role in access.readers:
            grid.add_row(
                access.column,
                access.rule,
                ", ".join(access.sources),
                ", ".join(access.classifications),
                ", ".join(access.readers) or "nobody",
            )
    out.print(grid)


def _print_plan(plan: AccessPlan, only: str | None, dialect: str) -> None:
    for role in plan.roles:
        if only is not None and role != only:
            continue
        where = group_role(role) if dialect == "postgresql" else f"views {view_schema(role)}.*"
        grid = Table(title=f"{role} ({where})")
        grid.add_column("table")
        grid.add_column("columns it may read", overflow="fold")
        for name, columns in plan.readable(role).items():
            grid.add_row(name, ", ".join(columns))
        out.print(grid)


@access_app.command("select")
@guarded
def access_select(
    role: Annotated[str, typer.Option(help="The policy role to read as.")],
    table: Annotated[str, typer.Argument(help="The warehouse table.")],
    columns: Annotated[
        list[str] | None, typer.Argument(help="Columns (default: all the role may read).")
    ] = None,
    limit: Annotated[int, typer.Option(min=1, help="Rows at most.")] = 20,
) -> None:
    """Read a table as a role: a column it may not read is refused (FORBIDDEN)."""
    settings = build_settings()
    policy = load_policy(settings.policy_file)
    url = settings.resolved_warehouse_url
    with closing(connect(url, read_only=url.startswith("duckdb:"))) as warehouse:
        plan = current_plan(warehouse, policy)
        chosen = list(columns or plan.readable_columns(role, table))
        rows = select_as(warehouse, plan, role, table, columns=chosen, limit=limit)
    grid = Table(title=f"{table} as {role}")
    for name in chosen:
        grid.add_column(name)
    for row in rows:
        grid.add_row(*("" if v is None else str(v) for v in row))
    out.print(grid)
