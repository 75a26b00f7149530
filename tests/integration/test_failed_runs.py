"""A failed run leaves the warehouse exactly as it was, and says so in lineage and audit."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import closing
from datetime import date
from pathlib import Path
from typing import Any

import pytest
import yaml

from vigie.errors import ErrorCode, VigieError
from vigie.governance.audit import AuditEntry, verify
from vigie.governance.policy import default_policy_path
from vigie.pipelines.run import run_pipeline
from vigie.warehouse.connection import connect

pytestmark = pytest.mark.integration

JAN_1, JAN_3 = date(2013, 1, 1), date(2013, 1, 3)
DATA_TABLES = (
    "dim_date",
    "dim_carrier",
    "dim_airport",
    "dim_plane",
    "dim_weather_hour",
    "fact_flight",
    "quarantine",
    "pipeline_run_table",
)
Query = Callable[..., list[tuple[Any, ...]]]


@pytest.fixture
def loaded(tmp_path: Path, small_source: Path, make_settings: Callable[..., Any]) -> dict[str, Any]:
    """A warehouse holding one successful run of 2013-01-01 only."""
    settings = make_settings(tmp_path / "home", small_source)
    first = run_pipeline(settings, JAN_1, JAN_1)
    return {"settings": settings, "first": first}


def policy_without(tmp_path: Path, table: str, column: str) -> Path:
    policy = yaml.safe_load(default_policy_path().read_text())
    del policy["tables"][table]["columns"][column]
    path = tmp_path / "policy.yaml"
    path.write_text(yaml.safe_dump(policy, sort_keys=False))
    return path


def failed_runs(url: str, query: Query) -> list[tuple[Any, ...]]:
    return query(url, "SELECT run_id, status, error FROM pipeline_run WHERE status <> 'success'")


def test_an_unclassified_column_fails_the_run_and_loads_nothing(
    tmp_path: Path,
    loaded: dict[str, Any],
    make_settings: Callable[..., Any],
    table_counts: Callable[[str], dict[str, int]],
    query: Query,
) -> None:
    settings = loaded["settings"]
    url = settings.resolved_warehouse_url
    before = table_counts(url)
    strict = make_settings(
        settings.home,
        settings.source_dir,
        policy_file=policy_without(tmp_path, "flights", "distance"),
    )

    with pytest.raises(VigieError) as refused:
        run_pipeline(strict, JAN_1, JAN_3)

    assert refused.value.code is ErrorCode.POLICY_VIOLATION
    assert "flights.distance" in refused.value.message
    after = table_counts(url)
    assert {t: after[t] for t in DATA_TABLES} == {t: before[t] for t in DATA_TABLES}
    ((_, status, error),) = failed_runs(url, query)
    assert status == "failed"
    assert "POLICY_VIOLATION" in error


def test_a_corrupt_flights_archive_after_valid_dimensions_loads_nothing(
    loaded: dict[str, Any],
    source_copy: Callable[..., Any],
    make_settings: Callable[..., Any],
    table_counts: Callable[[str], dict[str, int]],
    query: Query,
) -> None:
    """Airlines, airports, planes and weather validate (with new January days of weather);
    then flights, the last table, is corrupt: none of the new dimension rows may land."""
    settings = loaded["settings"]
    url = settings.resolved_warehouse_url
    before = table_counts(url)
    broken = source_copy("broken")
    archive = broken.file("flights")
    archive.write_bytes(archive.read_bytes()[: archive.stat().st_size // 3])
    later = make_settings(settings.home, broken.path)
    steps: list[str] = []

    with pytest.raises(VigieError) as refused:
        run_pipeline(later, JAN_1, JAN_3, step=steps.append)

    assert refused.value.code is ErrorCode.SOURCE_CORRUPT
    assert "flights.csv.zip" in refused.value.message
    assert "validating weather" in steps, "the dimensions were validated before the failure"
    after = table_counts(url)
    assert {t: after[t] for t in DATA_TABLES} == {t: before[t] for t in DATA_TABLES}
    ((run_id, status, error),) = failed_runs(url, query)
    assert status == "failed"
    assert "SOURCE_CORRUPT" in error
    assert query(url, "SELECT count(*) FROM pipeline_run_table WHERE run_id = ?", [run_id]) == [
        (0,)
    ]


def test_a_failed_run_is_audited_and_keeps_the_last_success_in_metrics(
    loaded: dict[str, Any], source_copy: Callable[..., Any], make_settings: Callable[..., Any]
) -> None:
    settings = loaded["settings"]
    metrics = settings.metrics_dir / "vigie_pipeline.prom"
    success_line = next(
        line
        for line in metrics.read_text().splitlines()
        if line.startswith("vigie_pipeline_last_success_timestamp_seconds")
    )
    broken = source_copy("broken")
    broken.file("flights").write_bytes(b"PK\x03\x04 not really a zip")

    with pytest.raises(VigieError):
        run_pipeline(make_settings(settings.home, broken.path), JAN_1, JAN_3)

    text = metrics.read_text()
    assert success_line in text.splitlines()
    assert 'vigie_pipeline_last_run_success{pipeline="flights_batch"} 0' in text
    verification = verify(settings.audit_log_path)
    assert verification.ok and verification.entries == 2
    last = AuditEntry.model_validate_json(settings.audit_log_path.read_text().splitlines()[-1])
    assert (last.action, last.outcome) == ("pipeline.run", "failure")
    assert "SOURCE_CORRUPT" in last.details["error"]


def test_a_failed_first_run_leaves_an_empty_warehouse(
    tmp_path: Path,
    source_copy: Callable[..., Any],
    make_settings: Callable[..., Any],
    table_counts: Callable[[str], dict[str, int]],
) -> None:
    broken = source_copy("broken")
    header = broken.header("flights")
    broken.write_lines("flights", [",".join(c for c in header if c != "distance")])
    settings = make_settings(tmp_path / "home", broken.path)

    with pytest.raises(VigieError) as refused:
        run_pipeline(settings)

    assert refused.value.code is ErrorCode.SOURCE_CORRUPT
    assert "distance" in refused.value.message
    counts = table_counts(settings.resolved_warehouse_url)
    assert {t: counts[t] for t in DATA_TABLES} == dict.fromkeys(DATA_TABLES, 0)
    assert counts["pipeline_run"] == 1


def test_a_failure_while_loading_rolls_back_every_table(
    tmp_path: Path,
    broken_source: Any,
    make_settings: Callable[..., Any],
    table_counts: Callable[[str], dict[str, int]],
    query: Query,
) -> None:
    """Dimensions and facts are inserted, then the quarantine insert fails (the table was
    replaced by a view, which DuckDB cannot insert into): the whole load must roll back."""
    settings = make_settings(tmp_path / "home", broken_source.folder.path)
    run_pipeline(settings, JAN_1, JAN_1)
    url = settings.resolved_warehouse_url
    with closing(connect(url)) as warehouse:
        warehouse.execute("DROP INDEX ix_quarantine_table")
        warehouse.execute("ALTER TABLE quarantine RENAME TO quarantine_kept")
        warehouse.execute("CREATE VIEW quarantine AS SELECT * FROM quarantine_kept")
    before = table_counts(url)
    steps: list[str] = []

    with pytest.raises(VigieError):
        run_pipeline(settings, JAN_1, JAN_3, step=steps.append)

    assert "loading the warehouse" in steps
    after = table_counts(url)
    assert {t: after[t] for t in DATA_TABLES} == {t: before[t] for t in DATA_TABLES}
    assert before["fact_flight"] < broken_source.clean_flights, "the window adds flights"
    ((status,),) = query(url, "SELECT status FROM pipeline_run WHERE status <> 'success'")
    assert status == "failed"
