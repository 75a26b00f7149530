"""The whole of 2013 into DuckDB and into PostgreSQL: identical row counts and quarantine."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from vigie.config import Settings
from vigie.pipelines.run import run_pipeline

pytestmark = [pytest.mark.integration, pytest.mark.slow]

FLIGHTS_2013 = 336_776
QUARANTINE = "SELECT source_table, record_key, checks, reasons FROM quarantine"


@pytest.fixture
def full_year(
    tmp_path: Path,
    package_data: Path,
    postgres_url: str,
    source_copy: Callable[..., Any],
    make_settings: Callable[..., Any],
) -> tuple[Settings, Settings]:
    """Settings for DuckDB and for PostgreSQL over every real 2013 file, plus four broken
    flights so that quarantine is compared too."""
    folder = source_copy("full")
    for name in ("airlines.csv", "airports.csv", "planes.csv", "weather.csv", "flights.csv.zip"):
        shutil.copy(package_data / name, folder.path / name)
    lines = folder.lines("flights")
    template = dict(zip(lines[0].split(","), lines[1].split(","), strict=True))
    folder.write_lines(
        "flights",
        [
            *lines,
            folder.line("flights", template | {"flight": "9001", "distance": "far"}),
            folder.line("flights", template | {"flight": "9002", "carrier": "U$"}),
            lines[2],
            ",".join(lines[3].split(",")[:9]),
        ],
    )
    duck = make_settings(tmp_path / "duck", folder.path)
    key = duck.pseudonym_key_bytes().decode()
    return duck, make_settings(tmp_path / "pg", folder.path, postgres_url, pseudonym_key=key)


def test_the_full_year_loads_identically_into_duckdb_and_postgresql(
    full_year: tuple[Settings, Settings],
    table_counts: Callable[[str], dict[str, int]],
    query: Callable[..., list[tuple[Any, ...]]],
) -> None:
    duck, pg = full_year
    postgres_url = pg.resolved_warehouse_url

    duck_result = run_pipeline(duck)
    pg_result = run_pipeline(pg)

    duck_counts = table_counts(duck.resolved_warehouse_url)
    assert duck_counts["fact_flight"] == FLIGHTS_2013
    assert table_counts(postgres_url) == duck_counts
    duck_quarantine = set(query(duck.resolved_warehouse_url, QUARANTINE))
    assert {(t, c) for t, _, c, _ in duck_quarantine} == {
        ("flights", "type_mismatch"),
        ("flights", "malformed_code"),
        ("flights", "duplicate_key"),
        ("flights", "malformed_row"),
    }
    assert set(query(postgres_url, QUARANTINE)) == duck_quarantine
    for result in (duck_result, pg_result):
        (flights,) = [t for t in result.record.tables if t.table == "flights"]
        assert (flights.rows_in, flights.rows_loaded, flights.rows_quarantined) == (
            FLIGHTS_2013 + 4,
            FLIGHTS_2013,
            4,
        )
        assert all(t.rows_in == t.rows_loaded + t.rows_quarantined for t in result.record.tables)
    assert [t.rows_corrected for t in pg_result.record.tables] == [
        t.rows_corrected for t in duck_result.record.tables
    ]
