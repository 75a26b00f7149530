"""The same pipeline on PostgreSQL: identical results to DuckDB, migrations, least privilege."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import errors
from pydantic import SecretStr

from vigie.errors import ErrorCode, VigieError
from vigie.pipelines.run import run_pipeline
from vigie.warehouse.connection import connect
from vigie.warehouse.migrations import current_version, latest_version, migrate

pytestmark = pytest.mark.integration

Query = Callable[..., list[tuple[Any, ...]]]
QUARANTINE = "SELECT source_table, record_key, checks FROM quarantine"


def lineage(url: str, query: Query) -> set[tuple[Any, ...]]:
    return set(
        query(
            url,
            "SELECT table_name, rows_in, rows_loaded, rows_inserted, rows_corrected, "
            "rows_quarantined FROM pipeline_run_table",
        )
    )


def test_postgresql_gets_identical_counts_and_quarantine_to_duckdb(
    tmp_path: Path,
    postgres_url: str,
    duckdb_broken_run: Any,
    table_counts: Callable[[str], dict[str, int]],
    query: Query,
) -> None:
    duck = duckdb_broken_run.settings
    # Same sources and pseudonymisation key, so pseudonymised record keys compare equal too.
    key = SecretStr(duck.pseudonym_key_bytes().decode())
    pg = duck.model_copy(
        update={"home": tmp_path, "warehouse_url": postgres_url, "pseudonym_key": key}
    )

    result = run_pipeline(pg)

    duck_url = duck.resolved_warehouse_url
    assert table_counts(postgres_url) == table_counts(duck_url)
    assert set(query(postgres_url, QUARANTINE)) == set(query(duck_url, QUARANTINE))
    assert len(query(postgres_url, QUARANTINE)) >= 10
    assert lineage(postgres_url, query) == lineage(duck_url, query)
    assert [t.rows_loaded for t in result.record.tables] == [
        t.rows_loaded for t in duckdb_broken_run.result.record.tables
    ]
    for statement in (
        "SELECT flight_key FROM fact_flight",
        "SELECT plane_key, tailnum_pseudonym, is_inferred FROM dim_plane",
        "SELECT weather_key FROM dim_weather_hour",
        "SELECT quarantine_id FROM quarantine",
    ):
        assert set(query(postgres_url, statement)) == set(query(duck_url, statement)), statement


def test_postgresql_times_agree_with_duckdb(
    tmp_path: Path,
    postgres_url: str,
    duckdb_broken_run: Any,
    make_settings: Callable[..., Any],
    query: Query,
) -> None:
    run_pipeline(make_settings(tmp_path, duckdb_broken_run.settings.source_dir, postgres_url))
    statement = (
        "SELECT flight_key, sched_dep_utc, sched_arr_utc, arr_utc, sched_dep_local, "
        "flight_status, is_delayed_15 FROM fact_flight"
    )

    duck = {
        r[0]: r[1:] for r in query(duckdb_broken_run.settings.resolved_warehouse_url, statement)
    }
    pg = {r[0]: r[1:] for r in query(postgres_url, statement)}

    assert pg.keys() == duck.keys()
    differing = [k for k in pg if pg[k] != duck[k]]
    assert not differing, (
        f"{len(differing)} flights differ, e.g. {pg[differing[0]]} vs {duck[differing[0]]}"
    )


def test_a_second_run_on_postgresql_inserts_nothing(
    tmp_path: Path,
    postgres_url: str,
    small_source: Path,
    make_settings: Callable[..., Any],
    table_counts: Callable[[str], dict[str, int]],
) -> None:
    settings = make_settings(tmp_path, small_source, postgres_url)
    first = run_pipeline(settings)
    before = table_counts(postgres_url)

    second = run_pipeline(settings)

    assert first.record.inserted["fact_flight"] > 0
    assert {k: v for k, v in second.record.inserted.items() if v} == {}
    after = table_counts(postgres_url)
    assert after["fact_flight"] == before["fact_flight"]
    assert after["pipeline_run"] == before["pipeline_run"] + 1


def test_postgresql_migrates_from_version_1_to_latest(postgres_url: str) -> None:
    with closing(connect(postgres_url)) as warehouse:
        assert migrate(warehouse, target=1) == [1]
        assert current_version(warehouse) == 1
        constraints = warehouse.query(
            "SELECT constraint_name FROM information_schema.table_constraints "
            "WHERE table_name = 'fact_flight' AND constraint_type = 'FOREIGN KEY'"
        )
        assert {"fk_flight_date", "fk_flight_plane"} <= {c for (c,) in constraints}
        assert warehouse.query("SELECT to_regclass('fact_prediction')") == [(None,)]

        applied = migrate(warehouse)

        assert applied == list(range(2, latest_version() + 1))
        assert current_version(warehouse) == latest_version()
        assert warehouse.query("SELECT to_regclass('fact_prediction')::text") == [
            ("fact_prediction",)
        ]
        assert migrate(warehouse) == []


def test_postgresql_refuses_a_database_at_an_unknown_version(postgres_url: str) -> None:
    with closing(connect(postgres_url)) as warehouse:
        migrate(warehouse)
        warehouse.execute("INSERT INTO schema_migrations VALUES (99, 'future', 'x', now())")

        with pytest.raises(VigieError) as refused:
            migrate(warehouse)

    assert refused.value.code is ErrorCode.MIGRATION_MISMATCH
    assert "99" in refused.value.message


@pytest.fixture
def migrated(postgres_url: str) -> Iterator[psycopg.Connection[Any]]:
    """A raw connection (as the owner) to a freshly migrated database."""
    with closing(connect(postgres_url)) as warehouse:
        migrate(warehouse)
    with psycopg.connect(postgres_url, autocommit=True) as connection:
        yield connection


def test_the_reader_role_can_select_but_not_insert(migrated: psycopg.Connection[Any]) -> None:
    migrated.execute("SET ROLE vigie_reader")

    assert migrated.execute("SELECT count(*) FROM fact_flight").fetchone() == (0,)
    assert migrated.execute("SELECT max(version) FROM schema_migrations").fetchone() == (
        latest_version(),
    )
    with pytest.raises(errors.InsufficientPrivilege):
        migrated.execute(
            "INSERT INTO dim_carrier (carrier_key, carrier_code, run_id, loaded_at) "
            "VALUES (1, 'ZZ', 'r', now())"
        )
    with pytest.raises(errors.InsufficientPrivilege):
        migrated.execute("INSERT INTO fact_flight (flight_key) VALUES (1)")


def test_the_loader_role_can_insert_but_not_change_the_schema(
    migrated: psycopg.Connection[Any],
) -> None:
    migrated.execute("SET ROLE vigie_loader")

    migrated.execute(
        "INSERT INTO dim_carrier (carrier_key, carrier_code, run_id, loaded_at) "
        "VALUES (1, 'ZZ', 'r', now())"
    )
    assert migrated.execute("SELECT carrier_code FROM dim_carrier").fetchall() == [("ZZ",)]
    with pytest.raises(errors.InsufficientPrivilege):
        migrated.execute("CREATE TABLE intruder (x INTEGER)")
    with pytest.raises(errors.InsufficientPrivilege):
        migrated.execute("DROP TABLE fact_flight")
    with pytest.raises(errors.InsufficientPrivilege):
        migrated.execute("INSERT INTO schema_migrations VALUES (3, 'x', 'x', now())")


def test_a_failure_while_loading_into_postgresql_rolls_back_every_table(
    tmp_path: Path,
    postgres_url: str,
    broken_source: Any,
    make_settings: Callable[..., Any],
    table_counts: Callable[[str], dict[str, int]],
) -> None:
    """A trigger makes the quarantine insert (after dimensions and facts) fail, as a full
    disk or a lost connection would: nothing of the run may remain."""
    settings = make_settings(tmp_path, broken_source.folder.path, postgres_url)
    with closing(connect(postgres_url)) as warehouse:
        migrate(warehouse)
        warehouse.execute(
            "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS "
            "$$ BEGIN RAISE EXCEPTION 'simulated storage failure'; END $$"
        )
        warehouse.execute(
            "CREATE TRIGGER refuse BEFORE INSERT ON quarantine "
            "FOR EACH ROW EXECUTE FUNCTION refuse()"
        )

    with pytest.raises(VigieError) as failed:
        run_pipeline(settings)

    assert "simulated storage failure" in str(failed.value)
    counts = table_counts(postgres_url)
    assert {t: n for t, n in counts.items() if t != "pipeline_run"} == dict.fromkeys(
        (t for t in counts if t != "pipeline_run"), 0
    )
    assert counts["pipeline_run"] == 1
