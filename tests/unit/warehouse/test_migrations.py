"""Versioned migrations on the embedded DuckDB warehouse."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from vigie.errors import ErrorCode, VigieError
from vigie.warehouse.connection import Warehouse, connect
from vigie.warehouse.migrations import (
    Migration,
    available,
    current_version,
    latest_version,
    migrate,
    require_latest,
    split_statements,
)


@pytest.fixture
def duckdb_warehouse(tmp_path: Path) -> Iterator[Warehouse]:
    warehouse = connect(f"duckdb:///{tmp_path / 'warehouse.duckdb'}")
    try:
        yield warehouse
    finally:
        warehouse.close()


def tables(warehouse: Warehouse) -> set[str]:
    rows = warehouse.query("SELECT table_name FROM information_schema.tables")
    return {name for (name,) in rows}


def test_split_statements_splits_on_semicolons_at_line_ends() -> None:
    text = """
-- a comment only
CREATE TABLE a (x INTEGER);
CREATE TABLE b (
    y VARCHAR DEFAULT 'a;b'
);
INSERT INTO a VALUES (1)
"""
    assert split_statements(text) == [
        "-- a comment only\nCREATE TABLE a (x INTEGER)",
        "CREATE TABLE b (\n    y VARCHAR DEFAULT 'a;b'\n)",
        "INSERT INTO a VALUES (1)",
    ]


def test_split_statements_keeps_dollar_quoted_bodies_whole() -> None:
    text = """CREATE TABLE a (x INTEGER);
DO $$
BEGIN
    CREATE ROLE r;
    GRANT SELECT ON a TO r;
END
$$;
SELECT 1;
"""
    statements = split_statements(text)

    assert len(statements) == 3
    assert statements[1].startswith("DO $$")
    assert "CREATE ROLE r;" in statements[1]
    assert "GRANT SELECT ON a TO r;" in statements[1]
    assert statements[1].endswith("$$")
    assert statements[2] == "SELECT 1"


def test_split_statements_drops_comment_only_chunks() -> None:
    assert split_statements("-- nothing here;\n-- nor here\n") == []


def test_only_postgresql_statements_are_skipped_on_duckdb() -> None:
    migration = Migration(
        7,
        "mixed",
        "CREATE TABLE a (x INTEGER);\n-- only: postgresql\nDO $$\nBEGIN\n    NULL;\nEND\n$$;\n"
        "-- only: duckdb\nCREATE TABLE c (z INTEGER);\nCREATE TABLE b (y INTEGER);\n",
    )

    duck = migration.statements("duckdb")
    pg = migration.statements("postgresql")

    assert [s.splitlines()[-1] for s in duck] == [
        "CREATE TABLE a (x INTEGER)",
        "CREATE TABLE c (z INTEGER)",
        "CREATE TABLE b (y INTEGER)",
    ]
    assert len(pg) == 3
    assert any(s.startswith("-- only: postgresql\nDO $$") for s in pg)
    assert not any("c (z" in s for s in pg)


def test_shipped_migrations_keep_roles_and_foreign_keys_to_postgresql() -> None:
    for migration in available():
        for statement in migration.statements("duckdb"):
            assert "CREATE ROLE" not in statement
            assert "FOREIGN KEY" not in statement
    pg_only = [s for m in available() for s in m.statements("postgresql")]
    assert any("CREATE ROLE vigie_loader" in s for s in pg_only)
    assert any("FOREIGN KEY" in s for s in pg_only)


def test_shipped_migrations_are_numbered_from_one_without_gaps() -> None:
    versions = [m.version for m in available()]

    assert versions == list(range(1, len(versions) + 1))
    assert latest_version() == versions[-1] >= 2


def test_migrate_a_fresh_duckdb_to_the_latest_version(duckdb_warehouse: Warehouse) -> None:
    assert current_version(duckdb_warehouse) == 0

    applied = migrate(duckdb_warehouse)

    assert applied == [m.version for m in available()]
    assert current_version(duckdb_warehouse) == latest_version()
    assert {"fact_flight", "dim_plane", "quarantine", "fact_prediction"} <= tables(duckdb_warehouse)
    ledger = duckdb_warehouse.query("SELECT version, checksum FROM schema_migrations ORDER BY 1")
    assert ledger == [(m.version, m.checksum) for m in available()]
    require_latest(duckdb_warehouse)


def test_migrate_again_is_a_no_op(duckdb_warehouse: Warehouse) -> None:
    migrate(duckdb_warehouse)

    assert migrate(duckdb_warehouse) == []
    assert current_version(duckdb_warehouse) == latest_version()


def test_an_older_database_is_upgraded_to_the_latest(duckdb_warehouse: Warehouse) -> None:
    assert migrate(duckdb_warehouse, target=1) == [1]
    assert current_version(duckdb_warehouse) == 1
    assert "fact_prediction" not in tables(duckdb_warehouse)
    with pytest.raises(VigieError) as older:
        require_latest(duckdb_warehouse)
    assert older.value.code is ErrorCode.MIGRATION_MISMATCH
    assert "vigie warehouse migrate" in older.value.message

    applied = migrate(duckdb_warehouse)

    assert applied == list(range(2, latest_version() + 1))
    assert current_version(duckdb_warehouse) == latest_version()
    assert "fact_prediction" in tables(duckdb_warehouse)


def test_a_database_from_a_newer_vigie_is_refused(duckdb_warehouse: Warehouse) -> None:
    migrate(duckdb_warehouse)
    duckdb_warehouse.execute(
        "INSERT INTO schema_migrations VALUES (99, 'from_the_future', 'abc', now())"
    )

    with pytest.raises(VigieError) as refused:
        migrate(duckdb_warehouse)

    assert refused.value.code is ErrorCode.MIGRATION_MISMATCH
    assert "99" in refused.value.message
    assert refused.value.details["version"] == 99
    with pytest.raises(VigieError, match="99"):
        require_latest(duckdb_warehouse)


def test_a_tampered_checksum_is_refused(duckdb_warehouse: Warehouse) -> None:
    migrate(duckdb_warehouse)
    duckdb_warehouse.execute("UPDATE schema_migrations SET checksum = 'tampered' WHERE version = 1")

    with pytest.raises(VigieError) as refused:
        migrate(duckdb_warehouse)

    assert refused.value.code is ErrorCode.MIGRATION_MISMATCH
    assert "version 1" in refused.value.message
    assert refused.value.details["version"] == 1


def test_a_failing_migration_is_rolled_back(duckdb_warehouse: Warehouse) -> None:
    """A half-applied version would leave a schema the ledger does not describe."""
    duckdb_warehouse.execute("CREATE TABLE dim_date (already INTEGER)")

    with pytest.raises(VigieError) as failed:
        migrate(duckdb_warehouse)

    assert failed.value.code is ErrorCode.MIGRATION_MISMATCH
    assert "0001_star_schema" in failed.value.message
    assert current_version(duckdb_warehouse) == 0
    assert "fact_flight" not in tables(duckdb_warehouse)
