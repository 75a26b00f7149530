"""Access control on PostgreSQL: each policy role, logged in for real, reads exactly its
columns, and PostgreSQL itself refuses every other one."""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator
from contextlib import closing
from datetime import date
from pathlib import Path
from typing import Any
from urllib.parse import urlparse, urlunparse

import psycopg
import pytest
import yaml
from click.testing import Result
from psycopg import errors, sql

from vigie.config import Settings
from vigie.errors import ErrorCode, VigieError
from vigie.governance.policy import DataPolicy, default_policy_path, load_policy
from vigie.pipelines.run import run_pipeline
from vigie.warehouse.access import AccessPlan, apply, current_plan, select_as
from vigie.warehouse.connection import connect
from vigie.warehouse.grants import grant_login

pytestmark = pytest.mark.integration

ACL_SNAPSHOT = """
SELECT 'schema', n.nspname, '', coalesce(n.nspacl::text, '') FROM pg_namespace n
WHERE n.nspname = current_schema()
UNION ALL
SELECT 'table', c.relname, '', coalesce(c.relacl::text, '') FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = current_schema()
UNION ALL
SELECT 'column', c.relname, a.attname, a.attacl::text FROM pg_attribute a
JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = current_schema() AND a.attnum > 0 AND a.attacl IS NOT NULL
ORDER BY 1, 2, 3
"""


@pytest.fixture(scope="module")
def warehouse_url(
    postgres_admin_url: str,
    fresh_database: Callable[[str], str],
    small_source: Path,
    make_settings: Callable[..., Settings],
    tmp_path_factory: pytest.TempPathFactory,
) -> str:
    """A fresh PostgreSQL warehouse holding one day of flights, its grants applied."""
    url = fresh_database(postgres_admin_url)
    settings = make_settings(tmp_path_factory.mktemp("access-pg"), small_source, url)
    assert run_pipeline(settings, date(2013, 1, 1), date(2013, 1, 1)).record.status == "success"
    assert apply(url, load_policy()).changes
    return url


@pytest.fixture(scope="module")
def plan(warehouse_url: str) -> AccessPlan:
    with closing(connect(warehouse_url)) as warehouse:
        return current_plan(warehouse, load_policy())


def as_user(url: str, user: str) -> str:
    parsed = urlparse(url)
    return urlunparse(parsed._replace(netloc=f"{user}@{parsed.hostname}:{parsed.port or 5432}"))


@pytest.fixture(scope="module")
def logins(warehouse_url: str) -> Iterator[dict[str, str]]:
    """A real LOGIN role per policy role (member of its group) and one in no group, as
    ``role -> login URL`` (``None`` for the latter); every one dropped at teardown."""
    suffix = secrets.token_hex(4)
    made: dict[str, str] = {}
    try:
        with psycopg.connect(warehouse_url, autocommit=True) as admin:
            for role in [*load_policy().roles, "none"]:
                login = f"vigie_t_{suffix}_{role}"
                admin.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(login)))
                made[role] = login
                if role != "none":
                    assert grant_login(warehouse_url, login, role) is True
                    assert grant_login(warehouse_url, login, role) is False  # already
        yield {role: as_user(warehouse_url, login) for role, login in made.items()}
    finally:
        with psycopg.connect(warehouse_url, autocommit=True) as admin:
            for login in made.values():
                admin.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(login)))


def select(con: psycopg.Connection[Any], table: str, columns: list[str]) -> list[Any]:
    query = sql.SQL("SELECT {} FROM {} LIMIT 3").format(
        sql.SQL(", ").join(map(sql.Identifier, columns)), sql.Identifier(table)
    )
    return con.execute(query).fetchall()


def check_exactly(url: str, plan: AccessPlan, role: str) -> int:
    """Every column ``role``'s login may read, it reads; every other one PostgreSQL refuses.
    Returns the number of rows the login read from fact_flight."""
    fact_rows = 0
    with psycopg.connect(url, autocommit=True) as con:
        for table in plan.tables():
            allowed = list(plan.readable_columns(role, table))
            others = [
                a.column for a in plan.columns if a.table == table and a.column not in allowed
            ]
            if allowed:
                rows = select(con, table, allowed)
                fact_rows += len(rows) if table == "fact_flight" else 0
            for column in others:
                with pytest.raises(errors.InsufficientPrivilege):
                    select(con, table, [column])
            if others:
                with pytest.raises(errors.InsufficientPrivilege):
                    con.execute(sql.SQL("SELECT * FROM {}").format(sql.Identifier(table)))
    return fact_rows


@pytest.mark.parametrize("role", ["data_engineer", "ml_engineer", "sre", "auditor", "service"])
def test_each_role_reads_exactly_its_columns(
    warehouse_url: str, plan: AccessPlan, logins: dict[str, str], role: str
) -> None:
    assert role in plan.roles
    assert check_exactly(logins[role], plan, role) == 3  # one day of flights is there


def test_a_login_in_no_group_reads_nothing(logins: dict[str, str]) -> None:
    # without USAGE on the schema (PUBLIC's is revoked), the tables are not even visible
    with psycopg.connect(logins["none"], autocommit=True) as con:
        for table in ("fact_flight", "dim_airport", "schema_migrations"):
            with pytest.raises(errors.InsufficientPrivilege, match="schema public"):
                con.execute(sql.SQL("SELECT 1 FROM {}").format(sql.Identifier("public", table)))


def acl(url: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(url) as con:
        return con.execute(ACL_SNAPSHOT).fetchall()


def test_a_second_apply_changes_nothing(warehouse_url: str) -> None:
    before = acl(warehouse_url)

    again = apply(warehouse_url, load_policy())

    assert again.changes == ()
    assert acl(warehouse_url) == before


def narrower(tmp_path: Path) -> DataPolicy:
    """The shipped policy where ml_engineer no longer reads flights.arr_delay."""
    document = yaml.safe_load(default_policy_path().read_text())
    column = document["tables"]["flights"]["columns"]["arr_delay"]
    column["readers"] = [r for r in column["readers"] if r != "ml_engineer"]  # not the anchor's
    path = tmp_path / "policy.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return load_policy(path)


def test_a_reader_removed_from_the_policy_is_revoked(
    warehouse_url: str, logins: dict[str, str], tmp_path: Path
) -> None:
    try:
        changed = apply(warehouse_url, narrower(tmp_path))
        assert {c.role for c in changed.changes} == {"ml_engineer"}
        assert all(c.statement.startswith("REVOKE") for c in changed.changes)
        with psycopg.connect(logins["ml_engineer"], autocommit=True) as con:
            for table, column in [
                ("fact_flight", "arr_delay_min"),
                ("fact_outcome", "is_delayed_15"),
            ]:
                with pytest.raises(errors.InsufficientPrivilege):
                    select(con, table, [column])
            assert len(select(con, "fact_flight", ["flight_key", "dep_delay_min"])) == 3
    finally:
        restored = apply(warehouse_url, load_policy())
    assert {c.role for c in restored.changes} == {"ml_engineer"}
    with psycopg.connect(logins["ml_engineer"], autocommit=True) as con:
        assert len(select(con, "fact_flight", ["arr_delay_min"])) == 3


def test_privileges_given_by_hand_beyond_the_policy_are_taken_back(
    warehouse_url: str, plan: AccessPlan, logins: dict[str, str]
) -> None:
    with psycopg.connect(warehouse_url, autocommit=True) as admin:
        admin.execute("GRANT SELECT ON fact_flight TO vigie_service")
        admin.execute("GRANT SELECT (tailnum_pseudonym) ON dim_plane TO vigie_sre")
        admin.execute("GRANT vigie_reader TO vigie_service")
        admin.execute("GRANT SELECT ON quarantine TO PUBLIC")
    tampered = acl(warehouse_url)
    with psycopg.connect(logins["service"], autocommit=True) as con:
        assert select(con, "fact_flight", ["dep_delay_min"])  # the hand-made grant works...

    dry = apply(warehouse_url, load_policy(), dry_run=True)
    assert acl(warehouse_url) == tampered  # a dry run changes nothing
    fixed = apply(warehouse_url, load_policy())

    assert [c.statement for c in fixed.changes] == [c.statement for c in dry.changes]
    statements = " | ".join(c.statement for c in fixed.changes)
    assert 'REVOKE ALL ON TABLE "quarantine" FROM PUBLIC' in statements
    assert 'REVOKE "vigie_reader" FROM "vigie_service"' in statements
    assert 'REVOKE ALL ON TABLE "fact_flight" FROM "vigie_service"' in statements
    assert 'REVOKE ALL ("tailnum_pseudonym") ON TABLE "dim_plane" FROM "vigie_sre"' in statements
    for role in ("service", "sre"):
        check_exactly(logins[role], plan, role)  # ...and is gone
    assert apply(warehouse_url, load_policy()).changes == ()


def test_select_as_reads_through_the_role(warehouse_url: str, plan: AccessPlan) -> None:
    with closing(connect(warehouse_url)) as warehouse:
        rows = select_as(warehouse, plan, "service", "dim_airport", columns=["faa_code"], limit=2)
        with pytest.raises(VigieError) as refused:
            select_as(warehouse, plan, "service", "dim_plane", columns=["tailnum_pseudonym"])
        assert warehouse.query("SELECT current_user = session_user")[0][0] is True
    assert len(rows) == 2
    assert refused.value.code is ErrorCode.FORBIDDEN


def test_grant_login_names_a_missing_login(warehouse_url: str) -> None:
    with pytest.raises(VigieError) as missing:
        grant_login(warehouse_url, f"nobody_{secrets.token_hex(4)}", "sre")
    assert missing.value.code is ErrorCode.NOT_FOUND
    assert "does not exist" in missing.value.message


def test_the_cli_applies_on_postgresql(
    warehouse_url: str, tmp_path: Path, cli: Callable[..., Result]
) -> None:
    result = cli(["warehouse-access", "apply"], home=tmp_path, warehouse_url=warehouse_url)

    assert result.exit_code == 0, result.output + result.stderr
    assert "executed 0 statement(s)" in result.output
    assert "vigie_service" in result.output
    assert '"action":"warehouse.access.apply"' in (tmp_path / "audit" / "audit.jsonl").read_text()
