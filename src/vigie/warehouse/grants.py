"""PostgreSQL column privileges: one group role per policy role, exactly its columns.

:func:`apply_grants` reads the privileges in place from the catalog (``aclexplode`` of the
schema's, the tables' and the columns' ACLs), compares them with what each role may read,
and executes only the difference, in one transaction: a second run with the same plan
executes nothing, and a column taken from a role's readers is revoked. Privileges of roles
outside the plan (the migrations' ``vigie_loader`` and ``vigie_reader``, the owner) are left
as they are, except ``PUBLIC``'s, which are all revoked on the schema and its tables.

Every name reaches SQL as a quoted identifier (:class:`psycopg.sql.Identifier`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

from vigie.errors import ErrorCode, VigieError
from vigie.warehouse.connection import redact, refused_statement

#: Prefix of the group role of each policy role.
GROUP_PREFIX = "vigie_"
# Policy roles become part of role and schema names (63 bytes at most on PostgreSQL).
_ROLE_NAME = re.compile(r"^[a-z][a-z0-9_]{0,47}$")

#: Role -> table -> the columns it may read.
GrantPlan = Mapping[str, Mapping[str, Sequence[str]]]


@dataclass(frozen=True)
class Change:
    """One statement that changes access, and the policy role it concerns (``*``: all)."""

    role: str
    statement: str


def check_role_name(role: str) -> str:
    """``role`` when usable in role and schema names.

    Raises:
        VigieError: CONFIGURATION for anything but lowercase letters, digits and ``_``.
    """
    if not _ROLE_NAME.match(role):
        raise VigieError(
            ErrorCode.CONFIGURATION,
            f"policy role {role!r} cannot name a database role: use lowercase letters, "
            "digits and _, starting with a letter, at most 48 characters",
            field="roles",
        )
    return role


def group_role(role: str) -> str:
    """The PostgreSQL group role of a policy role: ``vigie_<role>``."""
    return GROUP_PREFIX + check_role_name(role)


_SCHEMA_ACL = """
SELECT a.grantee, a.privilege_type FROM pg_namespace n,
       aclexplode(coalesce(n.nspacl, acldefault('n', n.nspowner))) a
WHERE n.nspname = current_schema()
"""
_TABLE_ACL = """
SELECT c.relname, a.grantee, a.privilege_type FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace, aclexplode(c.relacl) a
WHERE n.nspname = current_schema()
"""
_COLUMN_ACL = """
SELECT c.relname, t.attname, a.grantee, a.privilege_type FROM pg_attribute t
JOIN pg_class c ON c.oid = t.attrelid
JOIN pg_namespace n ON n.oid = c.relnamespace, aclexplode(t.attacl) a
WHERE n.nspname = current_schema() AND t.attnum > 0 AND NOT t.attisdropped
"""
_PUBLIC = 0  # grantee oid of PUBLIC in aclexplode


@dataclass
class _State:
    """The privileges in place: who holds what, by role oid (0: PUBLIC)."""

    schema: str
    roles: dict[str, int]  # group role name -> oid, for the groups that exist
    schema_acl: set[tuple[int, str]]
    table_acl: set[tuple[str, int]]  # (table, grantee) holding any table privilege
    column_acl: dict[tuple[str, int], dict[str, set[str]]]  # (table, grantee) -> col -> privs
    parents: dict[int, list[str]]  # group oid -> the roles it is a member of


def _read_state(con: psycopg.Connection[Any], groups: Sequence[str]) -> _State:
    schema = str(_one(con, "SELECT current_schema()"))
    roles = {
        str(name): int(oid)
        for name, oid in con.execute(
            "SELECT rolname, oid::bigint FROM pg_roles WHERE rolname = ANY(%s)", (list(groups),)
        )
    }
    schema_acl = {(int(g), str(p)) for g, p in con.execute(_SCHEMA_ACL)}
    table_acl = {(str(t), int(g)) for t, g, _ in con.execute(_TABLE_ACL)}
    column_acl: dict[tuple[str, int], dict[str, set[str]]] = {}
    for table, column, grantee, privilege in con.execute(_COLUMN_ACL):
        held = column_acl.setdefault((str(table), int(grantee)), {})
        held.setdefault(str(column), set()).add(str(privilege))
    parents: dict[int, list[str]] = {}
    for member, parent in con.execute(
        "SELECT m.member::bigint, g.rolname FROM pg_auth_members m "
        "JOIN pg_roles g ON g.oid = m.roleid WHERE m.member::bigint = ANY(%s) ORDER BY 2",
        (list(roles.values()),),
    ):
        parents.setdefault(int(member), []).append(str(parent))
    return _State(schema, roles, schema_acl, table_acl, column_acl, parents)


def _one(con: psycopg.Connection[Any], query: str) -> Any:
    row = con.execute(query).fetchone()
    assert row is not None
    return row[0]


def _public_changes(state: _State) -> list[sql.Composed]:
    """Take from PUBLIC every privilege on the schema, its tables and their columns."""
    schema = sql.Identifier(state.schema)
    out: list[sql.Composed] = []
    if any(grantee == _PUBLIC for grantee, _ in state.schema_acl):
        out.append(sql.SQL("REVOKE ALL ON SCHEMA {} FROM PUBLIC").format(schema))
    tables = {t for t, g in state.table_acl if g == _PUBLIC}
    tables |= {t for t, g in state.column_acl if g == _PUBLIC}
    out.extend(
        sql.SQL("REVOKE ALL ON TABLE {} FROM PUBLIC").format(sql.Identifier(t))
        for t in sorted(tables)
    )
    return out


def _role_changes(
    state: _State, group: str, wanted: Mapping[str, Sequence[str]]
) -> list[sql.Composed]:
    """Make ``group`` hold USAGE on the schema and SELECT on exactly ``wanted``'s columns,
    and belong to no other role (a membership would lend it that role's privileges)."""
    name = sql.Identifier(group)
    oid = state.roles.get(group)
    out: list[sql.Composed] = []
    if oid is None:
        out.append(sql.SQL("CREATE ROLE {} NOLOGIN").format(name))
    out.extend(
        sql.SQL("REVOKE {} FROM {}").format(sql.Identifier(parent), name)
        for parent in state.parents.get(oid or -1, [])
    )
    if oid is None or (oid, "USAGE") not in state.schema_acl:
        out.append(
            sql.SQL("GRANT USAGE ON SCHEMA {} TO {}").format(sql.Identifier(state.schema), name)
        )
    out.extend(_column_changes(state, oid, name, wanted))
    return out


def _column_changes(
    state: _State, oid: int | None, name: sql.Identifier, wanted: Mapping[str, Sequence[str]]
) -> list[sql.Composed]:
    out: list[sql.Composed] = []
    held_tables = {t for t, g in state.table_acl if g == oid}
    tables = sorted(held_tables | {t for t, g in state.column_acl if g == oid} | set(wanted))
    for table in tables:
        target = sql.Identifier(table)
        # a table privilege covers every column: drop it (it takes column privileges along)
        if table in held_tables:
            out.append(sql.SQL("REVOKE ALL ON TABLE {} FROM {}").format(target, name))
        held = {} if table in held_tables else state.column_acl.get((table, oid or -1), {})
        want = list(wanted.get(table, ()))
        extra = [c for c, privileges in held.items() if c not in want or privileges != {"SELECT"}]
        missing = [c for c in want if held.get(c) != {"SELECT"} or c in extra]
        if extra:
            revoke = sql.SQL("REVOKE ALL ({}) ON TABLE {} FROM {}")
            out.append(revoke.format(_names(extra), target, name))
        if missing:
            grant = sql.SQL("GRANT SELECT ({}) ON TABLE {} TO {}")
            out.append(grant.format(_names(missing), target, name))
    return out


def _names(columns: Sequence[str]) -> sql.Composable:
    return sql.SQL(", ").join(sql.Identifier(c) for c in sorted(columns))


def apply_grants(warehouse_url: str, plan: GrantPlan, *, dry_run: bool = False) -> list[Change]:
    """Bring the privileges of every ``vigie_<role>`` and of ``PUBLIC`` to ``plan``.

    Args:
        warehouse_url: The PostgreSQL warehouse, as a user that owns its tables and may
            create roles.
        plan: Policy role -> table -> the columns it may read.
        dry_run: Compute the statements without executing them.

    Returns:
        The statements that changed something (or would have), in execution order.

    Raises:
        VigieError: WAREHOUSE_UNAVAILABLE when the database cannot be reached, INTERNAL
            when it refuses a statement (e.g. the user may not create roles).
    """
    groups = {role: group_role(role) for role in plan}
    try:
        con = psycopg.connect(warehouse_url, connect_timeout=5)
    except psycopg.Error as err:
        raise VigieError(
            ErrorCode.WAREHOUSE_UNAVAILABLE,
            f"cannot reach the PostgreSQL warehouse at {redact(warehouse_url)}: {err}",
        ) from err
    with con, refused_statement("postgresql", "GRANT/REVOKE on the warehouse"):
        state = _read_state(con, list(groups.values()))
        statements = [("*", s) for s in _public_changes(state)]
        for role, group in groups.items():
            statements.extend((role, s) for s in _role_changes(state, group, plan[role]))
        if not dry_run:
            for _, statement in statements:
                con.execute(statement)
        planned = [Change(role, s.as_string(con)) for role, s in statements]
        if dry_run:
            con.rollback()
        else:
            con.commit()
    return planned


def grant_login(warehouse_url: str, login: str, role: str) -> bool:
    """Make the existing login role ``login`` a member of ``vigie_<role>``.

    Returns:
        False when it already was (nothing changed).

    Raises:
        VigieError: NOT_FOUND when the login or the group role does not exist (run
            ``vigie warehouse-access apply`` first); WAREHOUSE_UNAVAILABLE, INTERNAL as
            :func:`apply_grants`.
    """
    group = group_role(role)
    with (
        refused_statement("postgresql", "GRANT role TO login"),
        psycopg.connect(warehouse_url, connect_timeout=5, autocommit=True) as con,
    ):
        names = {
            str(n)
            for (n,) in con.execute(
                "SELECT rolname FROM pg_roles WHERE rolname = ANY(%s)", ([group, login],)
            )
        }
        for needed, hint in ((group, "run `vigie warehouse-access apply`"), (login, "")):
            if needed not in names:
                raise VigieError(
                    ErrorCode.NOT_FOUND,
                    f"role {needed!r} does not exist on {redact(warehouse_url)}"
                    + (f": {hint}" if hint else ""),
                    role=needed,
                )
        member = con.execute(
            "SELECT 1 FROM pg_auth_members m JOIN pg_roles g ON g.oid = m.roleid "
            "JOIN pg_roles u ON u.oid = m.member WHERE g.rolname = %s AND u.rolname = %s",
            (group, login),
        ).fetchone()
        if member is not None:
            return False
        con.execute(sql.SQL("GRANT {} TO {}").format(sql.Identifier(group), sql.Identifier(login)))
    return True
