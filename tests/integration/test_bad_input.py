"""Bad input: broken rows are quarantined with their reason; broken setups fail clearly."""

from __future__ import annotations

import json
from collections.abc import Callable
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest
from click.testing import Result

from vigie.errors import EXIT_CODES, ErrorCode, VigieError
from vigie.pipelines.run import run_pipeline
from vigie.warehouse.connection import connect
from vigie.warehouse.migrations import migrate

pytestmark = pytest.mark.integration

UNREACHABLE = "postgresql://postgres@127.0.0.1:1/nope"
Query = Callable[..., list[tuple[Any, ...]]]


def quarantined(run: Any, query: Query, flight: str) -> tuple[str, list[dict[str, str]], dict]:
    """(checks, reasons, record) of the quarantined flight with this flight number."""
    rows = query(
        run.settings.resolved_warehouse_url,
        "SELECT checks, reasons, record FROM quarantine WHERE source_table = 'flights' "
        "AND record_key LIKE ?",
        [f"%|{flight}|%"],
    )
    assert len(rows) == 1, f"flight {flight}: {rows}"
    checks, reasons, record = rows[0]
    return checks, json.loads(reasons), json.loads(record)


def message_lines(result: Result) -> list[str]:
    """stderr lines meant for a person (structured JSON log lines left out)."""
    return [line for line in result.stderr.splitlines() if line and not line.startswith("{")]


def test_a_non_numeric_distance_is_quarantined_as_type_mismatch(
    duckdb_broken_run: Any, query: Query
) -> None:
    checks, reasons, record = quarantined(duckdb_broken_run, query, "9001")

    assert checks == "type_mismatch"
    assert [(r["check"], r["column"]) for r in reasons] == [("type_mismatch", "distance")]
    assert "'far'" in reasons[0]["message"]
    assert record["distance"] == "far", "the record is kept as it came"


def test_a_duplicated_row_is_loaded_once_and_the_copy_quarantined(
    duckdb_broken_run: Any, query: Query
) -> None:
    flight = duckdb_broken_run.source.duplicated_flight
    url = duckdb_broken_run.settings.resolved_warehouse_url

    loaded = query(
        url,
        "SELECT count(*) FROM fact_flight WHERE carrier_code = ? AND flight_number = ? "
        "AND flight_date = DATE '2013-01-01'",
        [flight["carrier"], int(flight["flight"])],
    )
    checks, reasons, record = quarantined(duckdb_broken_run, query, flight["flight"])

    assert loaded == [(1,)]
    assert checks == "duplicate_key"
    assert reasons[0]["check"] == "duplicate_key"
    assert "sched_dep_time" in reasons[0]["column"]
    assert record["dep_time"] == flight["dep_time"]


@pytest.mark.parametrize(
    ("flight", "column", "value"),
    [("9002", "carrier", "U$"), ("9003", "origin", "EW1R"), ("9004", "dest", "I-H")],
)
def test_malformed_airport_and_carrier_codes_are_quarantined(
    duckdb_broken_run: Any, query: Query, flight: str, column: str, value: str
) -> None:
    checks, reasons, record = quarantined(duckdb_broken_run, query, flight)

    assert checks == "malformed_code"
    assert [(r["check"], r["column"]) for r in reasons] == [("malformed_code", column)]
    assert record[column] == value
    url = duckdb_broken_run.settings.resolved_warehouse_url
    assert query(url, "SELECT count(*) FROM fact_flight WHERE flight_number = ?", [flight]) == [
        (0,)
    ]
    assert query(url, "SELECT count(*) FROM dim_airport WHERE faa_code = ?", [value]) == [(0,)]


@pytest.mark.parametrize(
    ("flight", "check", "column"),
    [
        ("9005", "time_zone_mismatch", "time_hour"),
        ("9006", "delay_mismatch", "dep_delay"),
        ("9009", "invalid_date", "year+month+day"),
        ("9010", "invalid_clock", "sched_dep_time"),
    ],
)
def test_inconsistent_flights_are_quarantined_with_their_check(
    duckdb_broken_run: Any, query: Query, flight: str, check: str, column: str
) -> None:
    checks, reasons, _ = quarantined(duckdb_broken_run, query, flight)

    assert check in checks.split(",")
    assert (check, column) in {(r["check"], r["column"]) for r in reasons}


def test_an_unreachable_warehouse_is_warehouse_unavailable(
    tmp_path: Path, small_source: Path, make_settings: Callable[..., Any]
) -> None:
    settings = make_settings(tmp_path, small_source, UNREACHABLE)

    with pytest.raises(VigieError) as refused:
        run_pipeline(settings)

    assert refused.value.code is ErrorCode.WAREHOUSE_UNAVAILABLE
    assert "127.0.0.1:1/nope" in refused.value.message


def test_an_unreachable_warehouse_via_the_cli_is_one_clear_line(
    tmp_path: Path, small_source: Path, cli: Callable[..., Result]
) -> None:
    result = cli(
        ["pipeline", "run", "--from", "2013-01-01", "--to", "2013-01-01"],
        home=tmp_path,
        source_dir=small_source,
        warehouse_url=UNREACHABLE,
    )

    assert result.exit_code == EXIT_CODES[ErrorCode.WAREHOUSE_UNAVAILABLE]
    assert "Traceback" not in result.output + result.stderr
    lines = message_lines(result)
    assert len(lines) == 1, f"the error should be one line, not {len(lines)}: {lines}"
    (line,) = lines
    assert line.startswith("error [WAREHOUSE_UNAVAILABLE]")
    assert "postgresql://postgres@127.0.0.1:1/nope" in line


def test_a_password_in_an_unreachable_url_is_never_shown(
    tmp_path: Path, small_source: Path, cli: Callable[..., Result]
) -> None:
    result = cli(
        ["pipeline", "run"],
        home=tmp_path,
        source_dir=small_source,
        warehouse_url="postgresql://postgres:hunter2secret@127.0.0.1:1/nope",
    )

    assert result.exit_code == EXIT_CODES[ErrorCode.WAREHOUSE_UNAVAILABLE]
    assert "hunter2secret" not in result.output + result.stderr
    assert "hunter2secret" not in (tmp_path / "audit" / "audit.jsonl").read_text()


@pytest.fixture
def future_warehouse(tmp_path: Path) -> Path:
    """A DuckDB warehouse that a newer vigie (schema version 99) has migrated."""
    home = tmp_path / "home"
    with closing(connect(f"duckdb:///{home / 'warehouse.duckdb'}")) as warehouse:
        migrate(warehouse)
        warehouse.execute("INSERT INTO schema_migrations VALUES (99, 'future', 'x', now())")
    return home


@pytest.mark.parametrize("command", [["pipeline", "run"], ["warehouse", "migrate"]])
def test_an_unknown_migration_version_via_the_cli_is_migration_mismatch(
    future_warehouse: Path, small_source: Path, cli: Callable[..., Result], command: list[str]
) -> None:
    result = cli(command, home=future_warehouse, source_dir=small_source)

    assert result.exit_code == EXIT_CODES[ErrorCode.MIGRATION_MISMATCH]
    assert "Traceback" not in result.output + result.stderr
    text = " ".join(result.stderr.split())
    assert "[MIGRATION_MISMATCH]" in text
    assert "schema version 99" in text
