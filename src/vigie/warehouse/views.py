"""DuckDB per-role views: DuckDB has no users, so each role reads through a schema of views.

For every policy role, the schema ``access_<role>`` holds one view per table the role may
read anything of, selecting only its readable columns from the warehouse's table.
:func:`apply_views` compares the views in place with the plan and creates, replaces or
drops only what differs, in one transaction: a second run changes nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from vigie.warehouse.connection import Warehouse
from vigie.warehouse.grants import Change, GrantPlan, check_role_name

#: Schema of the views of one role.
VIEW_SCHEMA_PREFIX = "access_"


def view_schema(role: str) -> str:
    """The DuckDB schema of ``role``'s views: ``access_<role>``."""
    return VIEW_SCHEMA_PREFIX + check_role_name(role)


def quote(name: str) -> str:
    """``name`` as a quoted SQL identifier (a ``"`` inside is doubled)."""
    return '"' + name.replace('"', '""') + '"'


def apply_views(warehouse: Warehouse, plan: GrantPlan, *, dry_run: bool = False) -> list[Change]:
    """Make each role's schema hold exactly one view per readable table, of its columns.

    Args:
        warehouse: A DuckDB warehouse opened for writing.
        plan: Policy role -> table -> the columns it may read.
        dry_run: Compute the statements without executing them.

    Returns:
        The statements that changed something (or would have), in execution order.
    """
    base = str(warehouse.query("SELECT current_schema()")[0][0])
    schemas = {role: view_schema(role) for role in plan}
    existing = existing_views(warehouse, schemas.values())
    changes: list[Change] = []
    for role, schema in schemas.items():
        changes.extend(_role_changes(role, schema, base, plan[role], existing.get(schema)))
    if changes and not dry_run:
        with warehouse.transaction():
            for change in changes:
                warehouse.execute(change.statement)
    return changes


def _role_changes(
    role: str,
    schema: str,
    base: str,
    wanted: Mapping[str, Sequence[str]],
    have: Mapping[str, tuple[str, ...]] | None,
) -> list[Change]:
    changes = [] if have is not None else [Change(role, f"CREATE SCHEMA {quote(schema)}")]
    have = have or {}
    for table in sorted(set(have) - set(wanted)):
        changes.append(Change(role, f"DROP VIEW {quote(schema)}.{quote(table)}"))
    for table, columns in wanted.items():
        if have.get(table) != tuple(columns):
            select = ", ".join(quote(c) for c in columns)
            changes.append(
                Change(
                    role,
                    f"CREATE OR REPLACE VIEW {quote(schema)}.{quote(table)} AS "
                    f"SELECT {select} FROM {quote(base)}.{quote(table)}",
                )
            )
    return changes


def existing_views(
    warehouse: Warehouse, schemas: Iterable[str]
) -> dict[str, dict[str, tuple[str, ...]]]:
    """Schema -> view -> its columns, for those of ``schemas`` that exist."""
    wanted = list(schemas)
    marks = ", ".join("?" for _ in wanted)
    found: dict[str, dict[str, list[str]]] = {
        str(s): {}
        for (s,) in warehouse.query(
            "SELECT schema_name FROM information_schema.schemata "
            f"WHERE catalog_name = current_database() AND schema_name IN ({marks})",
            wanted,
        )
    }
    for schema, view, column in warehouse.query(
        "SELECT table_schema, table_name, column_name FROM information_schema.columns "
        f"WHERE table_catalog = current_database() AND table_schema IN ({marks}) "
        "ORDER BY table_schema, table_name, ordinal_position",
        wanted,
    ):
        found.setdefault(str(schema), {}).setdefault(str(view), []).append(str(column))
    return {s: {v: tuple(c) for v, c in views.items()} for s, views in found.items()}
