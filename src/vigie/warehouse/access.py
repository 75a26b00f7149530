"""Who may read which warehouse column: the data policy's ``readers``, enforced by the engine.

The policy classifies the *source* columns (``flights.tailnum``...) and the tables vigie fills
itself (its ``platform`` section). The warehouse stores neither one to one: a dimension
renames, derives and hashes. Every warehouse column therefore gets its readers from exactly
one of four rules, and a column no rule covers stops :func:`plan_access` (it is never
silently readable):

``source``
    The column holds (a transformation of) source columns, listed in
    :data:`~vigie.warehouse.provenance.LINEAGE` from the loader
    (:mod:`vigie.pipelines.transform`, :mod:`vigie.pipelines.facts`) and the log consumer
    (:mod:`vigie.monitoring.ingest_rows`). Readers: the roles that may read *every* one of
    those source columns; a value derived from a column is as sensitive as it.
``key``
    A surrogate key (:data:`~vigie.warehouse.provenance.SURROGATE_KEYS`, by column name in
    any table) is a deterministic function of its member's natural key (a 63-bit hash, or
    ``yyyymmdd``): it identifies exactly what the natural key identifies (``plane_key``
    groups flights by aircraft as well as the tail-number pseudonym does). Readers: those
    of every natural-key column.
``bookkeeping``
    Load metadata of the tables loaded from the sources
    (:data:`~vigie.warehouse.provenance.BOOKKEEPING`: run ids, load times, correction and
    inference flags). Readers: the roles that may read every stored source column
    (``data_engineer`` and ``auditor`` in the shipped policy), who trace and check loads.
``platform``
    A column of a table vigie fills itself that holds no source data (model versions,
    prediction outputs, lineage, quarantine): its readers are declared in the policy's
    ``platform`` section.

:func:`apply` turns the plan into the engine's own access control: on PostgreSQL one
``NOLOGIN`` group role per policy role (``vigie_<role>``) holding column privileges
(:mod:`vigie.warehouse.grants`); on DuckDB, which has no users, one schema of views per
role (``access_<role>``) that hold only the readable columns. :meth:`AccessPlan.require`
refuses a request for a column a role may not read.

This module reads the policy through :class:`ReadersPolicy`, the shape of
:class:`vigie.governance.policy.DataPolicy`, so the warehouse does not import governance.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from contextlib import closing
from dataclasses import dataclass
from typing import Any, Protocol

from vigie.errors import ErrorCode, VigieError
from vigie.warehouse.connection import Warehouse, connect
from vigie.warehouse.grants import Change, apply_grants, check_role_name, group_role
from vigie.warehouse.migrations import require_latest
from vigie.warehouse.provenance import BOOKKEEPING, LINEAGE, SURROGATE_KEYS
from vigie.warehouse.views import apply_views, existing_views, quote, view_schema


class ColumnRule(Protocol):
    """The classification and readers of one column in the policy."""

    @property
    def classification(self) -> str: ...

    @property
    def readers(self) -> tuple[str, ...]: ...


class TableRules(Protocol):
    """The columns of one table in the policy."""

    @property
    def columns(self) -> Mapping[str, ColumnRule]: ...


class ReadersPolicy(Protocol):
    """What this module reads of the data policy (a ``DataPolicy`` has all of it)."""

    @property
    def roles(self) -> Mapping[str, str]: ...

    @property
    def tables(self) -> Mapping[str, TableRules]: ...

    @property
    def platform(self) -> Mapping[str, TableRules]: ...


@dataclass(frozen=True)
class ColumnAccess:
    """Who may read one warehouse column, and why.

    Attributes:
        table: The warehouse table.
        column: The column.
        rule: ``source``, ``key``, ``bookkeeping`` or ``platform`` (see the module).
        sources: The policy columns (``table.column``) the rule read; empty for bookkeeping.
        classifications: The distinct classifications of those columns, sorted.
        readers: The roles that may read the column, in the policy's role order.
    """

    table: str
    column: str
    rule: str
    sources: tuple[str, ...]
    classifications: tuple[str, ...]
    readers: tuple[str, ...]


@dataclass(frozen=True)
class AccessPlan:
    """Every warehouse column with its readers: what :func:`apply` enforces.

    Attributes:
        roles: The policy's roles, in its order.
        columns: Every column of the warehouse, tables by name, columns in schema order.
    """

    roles: tuple[str, ...]
    columns: tuple[ColumnAccess, ...]

    def readable(self, role: str) -> dict[str, tuple[str, ...]]:
        """Table -> the columns ``role`` may read, for the tables where it may read any."""
        self._known(role)
        found: dict[str, list[str]] = {}
        for access in self.columns:
            if role in access.readers:
                found.setdefault(access.table, []).append(access.column)
        return {table: tuple(columns) for table, columns in found.items()}

    def readable_columns(self, role: str, table: str) -> tuple[str, ...]:
        """The columns of ``table`` that ``role`` may read (empty when none).

        Raises:
            VigieError: INVALID_INPUT for a role the policy does not declare, NOT_FOUND for
                a table the warehouse does not have.
        """
        self._known(role)
        return tuple(a.column for a in self.of_table(table) if role in a.readers)

    def of_table(self, table: str) -> list[ColumnAccess]:
        """The columns of ``table``, in schema order.

        Raises:
            VigieError: NOT_FOUND for a table the warehouse does not have.
        """
        found = [a for a in self.columns if a.table == table]
        if not found:
            raise VigieError(
                ErrorCode.NOT_FOUND,
                f"the warehouse has no table {table!r}; tables: {', '.join(self.tables())}",
                table=table,
            )
        return found

    def require(self, role: str, table: str, columns: Sequence[str]) -> None:
        """Refuse ``role`` a read of ``columns`` of ``table`` unless it may read them all.

        Raises:
            VigieError: FORBIDDEN naming the role, the table and every refused column;
                NOT_FOUND for a column or table the warehouse does not have.
        """
        allowed = self.readable_columns(role, table)
        existing = {a.column for a in self.of_table(table)}
        unknown = [c for c in columns if c not in existing]
        if unknown:
            raise VigieError(
                ErrorCode.NOT_FOUND,
                f"table {table!r} has no column {', '.join(map(repr, unknown))}",
                table=table,
                columns=unknown,
            )
        refused = list(dict.fromkeys(c for c in columns if c not in allowed))
        if refused:
            raise VigieError(
                ErrorCode.FORBIDDEN,
                f"role {role!r} may not read column{'s' if len(refused) > 1 else ''} "
                f"{', '.join(refused)} of {table} (data policy readers); it may read: "
                f"{', '.join(allowed) or 'nothing in this table'}",
                role=role,
                table=table,
                columns=refused,
            )

    def tables(self) -> list[str]:
        """The warehouse's tables, by name."""
        return list(dict.fromkeys(a.table for a in self.columns))

    def digest(self) -> str:
        """SHA-256 (hex) of the plan's canonical JSON: equal plans, equal digests."""
        document = [[a.table, a.column, a.rule, a.readers] for a in self.columns]
        canonical = json.dumps([self.roles, document], separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()

    def _known(self, role: str) -> None:
        if role not in self.roles:
            raise VigieError(
                ErrorCode.INVALID_INPUT,
                f"role {role!r} is not declared in the data policy; roles: {', '.join(self.roles)}",
                field="role",
            )


def plan_access(policy: ReadersPolicy, schema: Mapping[str, Sequence[str]]) -> AccessPlan:
    """The readers of every column of ``schema`` (table -> columns), from ``policy``.

    Raises:
        VigieError: POLICY_VIOLATION naming every column that no rule covers, or that two
            rules cover, or whose rule names a source column the policy lacks;
            CONFIGURATION for a role name unusable as an engine name.
    """
    roles = tuple(policy.roles)
    for role in roles:
        check_role_name(role)
    custodians = _custodians(policy)
    columns, problems = [], []
    for table in sorted(schema):
        for column in schema[table]:
            try:
                columns.append(_resolve(policy, custodians, table, column))
            except ValueError as err:
                problems.append(f"{table}.{column}: {err}")
    if problems:
        raise VigieError(
            ErrorCode.POLICY_VIOLATION,
            f"{len(problems)} warehouse column(s) have no single reader rule: "
            f"{'; '.join(problems)}. Declare a column vigie fills itself in the policy's "
            "platform section, or map it to its source in vigie.warehouse.provenance.LINEAGE",
            columns=problems,
        )
    return AccessPlan(roles, tuple(columns))


def _custodians(policy: ReadersPolicy) -> tuple[str, ...]:
    """The roles that may read every stored source column (of every policy table)."""
    stored = [c for t in policy.tables.values() for c in t.columns.values() if c.readers]
    return tuple(r for r in policy.roles if all(r in c.readers for c in stored))


def _resolve(
    policy: ReadersPolicy, custodians: tuple[str, ...], table: str, column: str
) -> ColumnAccess:
    declared = policy.platform.get(table)
    rules: list[tuple[str, tuple[str, ...]]] = []
    if column in SURROGATE_KEYS:
        rules.append(("key", SURROGATE_KEYS[column]))
    if declared is None and column in BOOKKEEPING:
        rules.append(("bookkeeping", ()))
    if column in LINEAGE.get(table, {}):
        rules.append(("source", LINEAGE[table][column]))
    if declared is not None and column in declared.columns:
        rules.append(("platform", (f"platform.{table}.{column}",)))
    if len(rules) != 1:
        named = " and ".join(name for name, _ in rules)
        raise ValueError(f"covered by {named}" if rules else "no rule covers it")
    rule, sources = rules[0]
    if rule == "bookkeeping":
        return ColumnAccess(table, column, rule, (), ("internal",), custodians)
    if rule == "platform":
        assert declared is not None
        declared_column = declared.columns[column]
        readers = tuple(r for r in policy.roles if r in declared_column.readers)
        return ColumnAccess(
            table, column, rule, sources, (str(declared_column.classification),), readers
        )
    found = [_source(policy, source) for source in sources]
    readers = tuple(r for r in policy.roles if all(r in c.readers for c in found))
    classes = tuple(sorted({str(c.classification) for c in found}))
    return ColumnAccess(table, column, rule, sources, classes, readers)


def _source(policy: ReadersPolicy, name: str) -> ColumnRule:
    table, _, column = name.partition(".")
    columns = policy.tables[table].columns if table in policy.tables else {}
    if column not in columns:
        raise ValueError(f"its source column {name} is not in the data policy")
    return columns[column]


def warehouse_schema(warehouse: Warehouse) -> dict[str, tuple[str, ...]]:
    """The base tables of the warehouse's schema and their columns, in schema order."""
    rows = warehouse.query(
        "SELECT c.table_name, c.column_name FROM information_schema.columns c "
        "JOIN information_schema.tables t ON t.table_catalog = c.table_catalog "
        "AND t.table_schema = c.table_schema AND t.table_name = c.table_name "
        "WHERE c.table_catalog = current_database() AND c.table_schema = current_schema() "
        "AND t.table_type = 'BASE TABLE' ORDER BY c.table_name, c.ordinal_position"
    )
    schema: dict[str, list[str]] = {}
    for table, column in rows:
        schema.setdefault(str(table), []).append(str(column))
    return {table: tuple(columns) for table, columns in schema.items()}


def current_plan(warehouse: Warehouse, policy: ReadersPolicy) -> AccessPlan:
    """The plan for this warehouse's actual schema, which must be at the latest version.

    Raises:
        VigieError: MIGRATION_MISMATCH when the schema is not at the latest version, and
            what :func:`plan_access` raises.
    """
    require_latest(warehouse)
    return plan_access(policy, warehouse_schema(warehouse))


@dataclass(frozen=True)
class ApplyResult:
    """What :func:`apply` did (or, on a dry run, would do).

    Attributes:
        dialect: ``postgresql`` or ``duckdb``.
        plan: The plan that was enforced.
        changes: The statements that changed something; empty when all was in place.
        dry_run: True when nothing was executed.
    """

    dialect: str
    plan: AccessPlan
    changes: tuple[Change, ...]
    dry_run: bool


def apply(warehouse_url: str, policy: ReadersPolicy, *, dry_run: bool = False) -> ApplyResult:
    """Enforce the policy's readers in the warehouse; a second call changes nothing.

    PostgreSQL: group roles ``vigie_<role>`` (``NOLOGIN``) with ``SELECT`` on exactly their
    columns; ``PUBLIC`` loses every privilege on the schema; a privilege that the plan does
    not give is revoked. DuckDB: views ``access_<role>.<table>`` of the readable columns.
    Run it as the database owner (with ``CREATEROLE`` on PostgreSQL) after each migration
    and each change of the policy.

    Raises:
        VigieError: what :func:`current_plan` raises; WAREHOUSE_UNAVAILABLE or INTERNAL when
            the engine refuses a statement.
    """
    with closing(connect(warehouse_url)) as warehouse:
        plan = current_plan(warehouse, policy)
        if warehouse.dialect == "postgresql":
            changes = apply_grants(warehouse_url, _grant_plan(plan), dry_run=dry_run)
        else:
            changes = apply_views(warehouse, _grant_plan(plan), dry_run=dry_run)
        return ApplyResult(warehouse.dialect, plan, tuple(changes), dry_run)


def _grant_plan(plan: AccessPlan) -> dict[str, dict[str, tuple[str, ...]]]:
    return {role: plan.readable(role) for role in plan.roles}


def select_as(
    warehouse: Warehouse,
    plan: AccessPlan,
    role: str,
    table: str,
    *,
    columns: Sequence[str] = (),
    limit: int = 20,
) -> list[tuple[Any, ...]]:
    """Read ``columns`` of ``table`` as ``role`` may (every readable column if none given).

    The request is refused first by :meth:`AccessPlan.require`; the engine then reads
    through the role's own access control (PostgreSQL: ``SET ROLE vigie_<role>``, which the
    connection's user must be a member of; DuckDB: the role's views), so a column the plan
    does not give cannot be read either way.

    Raises:
        VigieError: FORBIDDEN for a column ``role`` may not read, or a PostgreSQL user that
            is not a member of the role; NOT_FOUND for an unknown table or column, or a
            DuckDB warehouse without the role's views (run :func:`apply`).
    """
    chosen = list(columns) or list(plan.readable_columns(role, table))
    plan.require(role, table, chosen)
    if not chosen:
        return []
    select = ", ".join(quote(c) for c in chosen)
    if warehouse.dialect == "duckdb":
        schema = view_schema(role)
        if table not in existing_views(warehouse, [schema]).get(schema, {}):
            raise VigieError(
                ErrorCode.NOT_FOUND,
                f"role {role!r} has no view of {table} in this warehouse: run "
                "`vigie warehouse-access apply` first",
                role=role,
                table=table,
            )
        return warehouse.query(
            f"SELECT {select} FROM {quote(schema)}.{quote(table)} LIMIT ?", [limit]
        )
    try:
        warehouse.execute(f"SET ROLE {quote(group_role(role))}")
    except VigieError as err:
        raise VigieError(
            ErrorCode.FORBIDDEN,
            f"this warehouse user cannot act as {group_role(role)}: {err.message}",
            role=role,
        ) from err
    try:
        return warehouse.query(f"SELECT {select} FROM {quote(table)} LIMIT ?", [limit])
    finally:
        warehouse.execute("RESET ROLE")
