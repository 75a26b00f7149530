"""Re-running the pipeline, over the same or overlapping windows, never duplicates a row."""

from __future__ import annotations

import zipfile
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from vigie.pipelines.run import run_pipeline

pytestmark = pytest.mark.integration

JAN_1, JAN_2, JAN_3 = date(2013, 1, 1), date(2013, 1, 2), date(2013, 1, 3)
LOADED_TABLES = ("dim_date", "dim_carrier", "dim_airport", "dim_plane", "dim_weather_hour")


def flights_on(source: Path, *days: int) -> int:
    """Flights of January ``days`` in the small set's flights file."""
    with zipfile.ZipFile(source / "flights.csv.zip") as archive:
        lines = archive.read("flights.csv").decode().splitlines()[1:]
    return sum(1 for line in lines if line.startswith(tuple(f"2013,1,{d}," for d in days)))


def test_the_same_window_twice_inserts_nothing_the_second_time(
    tmp_path: Path,
    small_source: Path,
    make_settings: Callable[..., Any],
    table_counts: Callable[[str], dict[str, int]],
) -> None:
    settings = make_settings(tmp_path, small_source)

    first = run_pipeline(settings, JAN_1, JAN_3)
    after_first = table_counts(settings.resolved_warehouse_url)
    second = run_pipeline(settings, JAN_1, JAN_3)
    after_second = table_counts(settings.resolved_warehouse_url)

    assert first.record.inserted["fact_flight"] == flights_on(small_source, 1, 2, 3) > 0
    assert {k: v for k, v in second.record.inserted.items() if v} == {}
    assert all(t.rows_inserted == 0 for t in second.record.tables)
    assert [t.rows_loaded for t in second.record.tables] == [
        t.rows_loaded for t in first.record.tables
    ]
    unchanged = {t: after_first[t] for t in (*LOADED_TABLES, "fact_flight", "quarantine")}
    assert {t: after_second[t] for t in unchanged} == unchanged
    assert after_second["pipeline_run"] == after_first["pipeline_run"] + 1 == 2


def test_overlapping_windows_load_each_flight_once(
    tmp_path: Path,
    small_source: Path,
    make_settings: Callable[..., Any],
    query: Callable[..., list[tuple[Any, ...]]],
) -> None:
    settings = make_settings(tmp_path, small_source)

    first = run_pipeline(settings, JAN_1, JAN_2)
    second = run_pipeline(settings, JAN_2, JAN_3)

    url = settings.resolved_warehouse_url
    ((rows, keys, naturals),) = query(
        url,
        "SELECT count(*), count(DISTINCT flight_key), count(DISTINCT (flight_date, "
        "carrier_code, flight_number, origin_code, sched_dep_local)) FROM fact_flight",
    )
    assert rows == keys == naturals == flights_on(small_source, 1, 2, 3)
    assert first.record.inserted["fact_flight"] == flights_on(small_source, 1, 2)
    assert second.record.inserted["fact_flight"] == flights_on(small_source, 3)
    (flights,) = [t for t in second.record.tables if t.table == "flights"]
    assert flights.rows_loaded == flights_on(small_source, 2, 3)
    dates = query(url, "SELECT full_date FROM dim_date ORDER BY 1")
    assert [d for (d,) in dates] == [JAN_1, JAN_2, JAN_3]
    ((weather_rows, weather_keys),) = query(
        url, "SELECT count(*), count(DISTINCT (origin_code, time_hour_utc)) FROM dim_weather_hour"
    )
    assert weather_rows == weather_keys


def test_a_window_loads_only_its_days(
    tmp_path: Path,
    small_source: Path,
    make_settings: Callable[..., Any],
    query: Callable[..., list[tuple[Any, ...]]],
) -> None:
    settings = make_settings(tmp_path, small_source)

    run_pipeline(settings, JAN_2, JAN_2)

    days = query(settings.resolved_warehouse_url, "SELECT DISTINCT flight_date FROM fact_flight")
    assert days == [(JAN_2,)]
