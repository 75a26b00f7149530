"""The batch pipeline on the small set (with broken rows) into the embedded DuckDB warehouse."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from contextlib import closing
from typing import Any

import pytest

from vigie.governance.audit import AuditEntry, verify
from vigie.governance.pseudonymize import Pseudonymizer
from vigie.pipelines.expectations import load_expectations
from vigie.warehouse.connection import connect

pytestmark = pytest.mark.integration

Query = Callable[..., list[tuple[Any, ...]]]
SOURCE_TABLES = list(load_expectations().tables)


def test_every_table_balances_in_the_run_record(duckdb_broken_run: Any) -> None:
    tables = {t.table: t for t in duckdb_broken_run.result.record.tables}

    assert list(tables) == SOURCE_TABLES
    for stats in tables.values():
        assert stats.rows_in == stats.rows_loaded + stats.rows_quarantined, stats.table
        assert stats.rows_quarantined > 0, f"the broken set has bad {stats.table} rows"
    assert duckdb_broken_run.result.record.status == "success"


def test_every_table_balances_in_the_warehouse_lineage(
    duckdb_broken_run: Any, query: Query
) -> None:
    record = duckdb_broken_run.result.record
    rows = query(
        duckdb_broken_run.settings.resolved_warehouse_url,
        "SELECT table_name, rows_in, rows_loaded, rows_inserted, rows_corrected, "
        "rows_quarantined FROM pipeline_run_table WHERE run_id = ? ORDER BY table_name",
        [record.run_id],
    )

    stored = {name: values for name, *values in rows}
    assert set(stored) == set(SOURCE_TABLES)
    for t in record.tables:
        assert stored[t.table] == [
            t.rows_in,
            t.rows_loaded,
            t.rows_inserted,
            t.rows_corrected,
            t.rows_quarantined,
        ]
        rows_in, loaded, _, _, quarantined = stored[t.table]
        assert rows_in == loaded + quarantined, t.table


def test_the_run_is_recorded_with_its_inputs(duckdb_broken_run: Any, query: Query) -> None:
    record = duckdb_broken_run.result.record
    ((status, actor, hashes, policy_hash, error),) = query(
        duckdb_broken_run.settings.resolved_warehouse_url,
        "SELECT status, actor, input_hashes, policy_hash, error FROM pipeline_run",
    )

    assert (status, actor, error) == ("success", "vigie-tests", None)
    assert re.fullmatch(r"[0-9a-f]{64}", policy_hash)
    inputs = json.loads(hashes)
    assert inputs == record.input_hashes
    assert {path.split("/")[0] for path in inputs} == set(SOURCE_TABLES)
    assert all(re.fullmatch(r"[0-9a-f]{64}", digest) for digest in inputs.values())


def test_fact_flight_holds_exactly_the_accepted_flights(
    duckdb_broken_run: Any, query: Query
) -> None:
    url = duckdb_broken_run.settings.resolved_warehouse_url
    (flights,) = [t for t in duckdb_broken_run.result.record.tables if t.table == "flights"]
    ((rows, keys),) = query(url, "SELECT count(*), count(DISTINCT flight_key) FROM fact_flight")

    # Every clean flight, plus the broken row whose only fault is corrected (carrier "ua").
    assert rows == keys == flights.rows_loaded == duckdb_broken_run.source.clean_flights + 1
    assert flights.rows_inserted == rows
    ((corrected,),) = query(
        url, "SELECT corrections FROM fact_flight WHERE flight_number = 9008 AND is_corrected"
    )
    assert corrected == "normalized_code:carrier"


def test_fact_keys_resolve_to_dimension_members(duckdb_broken_run: Any, query: Query) -> None:
    url = duckdb_broken_run.settings.resolved_warehouse_url
    references = {
        "date_key": ("dim_date", "date_key"),
        "carrier_key": ("dim_carrier", "carrier_key"),
        "origin_airport_key": ("dim_airport", "airport_key"),
        "dest_airport_key": ("dim_airport", "airport_key"),
        "plane_key": ("dim_plane", "plane_key"),
        "weather_key": ("dim_weather_hour", "weather_key"),
    }
    for column, (dimension, key) in references.items():
        ((orphans,),) = query(
            url,
            f"SELECT count(*) FROM fact_flight f LEFT JOIN {dimension} d "
            f"ON d.{key} = f.{column} WHERE d.{key} IS NULL",
        )
        assert orphans == 0, f"fact_flight.{column} has keys missing from {dimension}"
    ((known_weather,),) = query(url, "SELECT count(*) FROM fact_flight WHERE weather_key <> 0")
    assert known_weather > 0


def test_tail_numbers_never_appear_in_clear(duckdb_broken_run: Any, query: Query) -> None:
    folder = duckdb_broken_run.source.folder
    tailnums = {r["tailnum"] for r in folder.rows("flights")} | {
        r["tailnum"] for r in folder.rows("planes")
    }
    tailnums.discard("NA")
    assert "N999ZZ" in tailnums and "N14228" in tailnums
    url = duckdb_broken_run.settings.resolved_warehouse_url
    text_columns = query(
        url,
        "SELECT table_name, column_name FROM information_schema.columns "
        "WHERE data_type = 'VARCHAR'",
    )

    found = set()
    for table, column in text_columns:
        for (value,) in query(url, f"SELECT DISTINCT {column} FROM {table}"):
            found |= set(re.findall(r"[A-Za-z0-9]+", value or "")) & tailnums
    assert not found, f"tail numbers stored in clear: {sorted(found)[:5]}"
    pseudonyms = query(url, "SELECT tailnum_pseudonym FROM dim_plane WHERE plane_key <> 0")
    assert all(re.fullmatch(r"p_[0-9a-f]{24}", p) for (p,) in pseudonyms)
    records = query(url, "SELECT record FROM quarantine WHERE source_table = 'planes'")
    assert records and all(json.loads(r)["tailnum"].startswith("p_") for (r,) in records)


def test_malformed_lines_are_stored_with_the_tail_number_pseudonymised(
    duckdb_broken_run: Any, query: Query
) -> None:
    ((record,),) = query(
        duckdb_broken_run.settings.resolved_warehouse_url,
        "SELECT record FROM quarantine WHERE checks = 'malformed_row'",
    )
    fields = json.loads(record)["text"].split(",")

    assert fields[:11] == duckdb_broken_run.source.malformed_line.split(",")[:11]
    assert fields[11].startswith("p_")
    assert fields[12] == "EWR"


def test_planes_missing_from_planes_become_inferred_members(
    duckdb_broken_run: Any, query: Query
) -> None:
    settings = duckdb_broken_run.settings
    folder = duckdb_broken_run.source.folder
    flown = {r["tailnum"] for r in folder.rows("flights")} - {"NA"}
    listed = {r["tailnum"] for r in folder.rows("planes")} - {"N999ZZ"}
    pseudonymizer = Pseudonymizer(settings.pseudonym_key_bytes())
    expected = {pseudonymizer.pseudonymize(t) for t in flown - listed}
    url = settings.resolved_warehouse_url

    inferred = query(
        url,
        "SELECT tailnum_pseudonym, year_built, manufacturer FROM dim_plane WHERE is_inferred",
    )

    assert expected, "the small set flies planes that planes.csv lacks"
    assert {p for p, _, _ in inferred} == expected
    assert all(year is None and maker is None for _, year, maker in inferred)
    ((flights_on_inferred,),) = query(
        url,
        "SELECT count(*) FROM fact_flight f JOIN dim_plane p USING (plane_key) WHERE p.is_inferred",
    )
    assert flights_on_inferred > 0


def test_the_quality_report_is_written_as_json_and_html(duckdb_broken_run: Any) -> None:
    result = duckdb_broken_run.result
    assert result.report_paths is not None
    json_path, html_path = result.report_paths

    report = json.loads(json_path.read_text())
    html = html_path.read_text()

    assert report["run"]["run_id"] == result.record.run_id
    assert report["balanced"] is True
    failed = {(c["table"], c["check"]): c["failed"] for c in report["checks"]}
    assert failed[("flights", "type_mismatch")] == 1
    assert failed[("flights", "duplicate_key")] == 1
    assert failed[("flights", "malformed_code")] == 3
    assert failed[("flights", "malformed_row")] == 1
    assert failed[("flights", "missing_value")] == 0, "passed checks are listed too"
    corrections = {(c["table"], c["correction"]) for c in report["corrections"]}
    assert ("weather", "out_of_range_set_null") in corrections
    assert all(c["why"] for c in report["corrections"])
    assert {s["record_key"] for s in report["samples"]["airlines"]} == {"Q!"}
    assert result.record.run_id in html
    assert html.lstrip().lower().startswith("<!doctype html")


def test_the_metrics_file_is_written(duckdb_broken_run: Any) -> None:
    result = duckdb_broken_run.result
    assert result.metrics_path is not None
    text = result.metrics_path.read_text()
    (flights,) = [t for t in result.record.tables if t.table == "flights"]

    assert result.metrics_path.parent == duckdb_broken_run.settings.metrics_dir
    assert re.search(
        rf'^vigie_pipeline_rows\w*{{pipeline="flights_batch",table="flights",outcome="in"}} '
        rf"{flights.rows_in}$",
        text,
        re.MULTILINE,
    )
    assert 'vigie_pipeline_last_run_success{pipeline="flights_batch"} 1\n' in text


def test_the_audit_log_records_the_run_and_verifies(duckdb_broken_run: Any) -> None:
    settings = duckdb_broken_run.settings
    record = duckdb_broken_run.result.record

    verification = verify(settings.audit_log_path)

    assert verification.ok, verification.problem
    assert verification.entries == 1
    (line,) = settings.audit_log_path.read_text().splitlines()
    entry = AuditEntry.model_validate_json(line)
    assert (entry.action, entry.outcome, entry.actor) == ("pipeline.run", "success", "vigie-tests")
    assert entry.details["run_id"] == record.run_id
    assert entry.details["rows"]["flights"]["loaded"] == next(
        t.rows_loaded for t in record.tables if t.table == "flights"
    )
    assert entry.inputs["policy_sha256"] == record.policy_hash


def test_the_warehouse_is_left_closed_for_others(duckdb_broken_run: Any) -> None:
    """A run must release its DuckDB file: another process can then open it to write."""
    with closing(connect(duckdb_broken_run.settings.resolved_warehouse_url)) as warehouse:
        assert warehouse.query("SELECT count(*) FROM pipeline_run") == [(1,)]
