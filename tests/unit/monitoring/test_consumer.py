"""The consumer on an embedded DuckDB warehouse loaded with the small real source set.

Payload entries are written with the segment sink in the shape the data plane and the
payload log give them; outcome events with the real outcome log. Each test works on its
own copy of a warehouse built once for the module.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from contextlib import closing
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from vigie.config import Settings
from vigie.errors import ErrorCode, VigieError
from vigie.events.outcomes import OutcomeEvent, OutcomeLog, new_event_id
from vigie.events.segments import SegmentSink, segment_path
from vigie.monitoring.consumer import Consumer, ingest
from vigie.monitoring.labels import labelled_predictions
from vigie.pipelines.run import run_pipeline
from vigie.registry import model_version_key
from vigie.warehouse.connection import connect

MODEL, VERSION = "flight_delay", "3"
T = datetime(2013, 1, 1, 12, tzinfo=UTC)


@pytest.fixture(scope="module")
def template(
    tmp_path_factory: pytest.TempPathFactory,
    small_source: Path,
    make_settings: Callable[..., Settings],
) -> Path:
    """A warehouse with the small set loaded and one registered model version."""
    home = tmp_path_factory.mktemp("consumer-template")
    settings = make_settings(home, small_source)
    assert run_pipeline(settings).record.status == "success"
    with closing(connect(settings.resolved_warehouse_url)) as warehouse:
        warehouse.execute(
            "INSERT INTO dim_model_version (model_version_key, model_name, version, "
            "registered_at) VALUES (?, ?, ?, ?)",
            (model_version_key(MODEL, VERSION), MODEL, VERSION, T),
        )
    return home / "warehouse.duckdb"


@pytest.fixture
def settings(tmp_path: Path, template: Path, make_settings: Callable[..., Settings]) -> Settings:
    copy = shutil.copy(template, tmp_path / "warehouse.duckdb")
    return make_settings(tmp_path / "home", None, warehouse_url=f"duckdb:///{copy}")


def flights(settings: Settings) -> dict[str, list[int]]:
    """Flight keys of the warehouse by status, in departure order."""
    found: dict[str, list[int]] = {}
    with closing(connect(settings.resolved_warehouse_url)) as warehouse:
        for key, status in warehouse.query(
            "SELECT flight_key, flight_status FROM fact_flight ORDER BY sched_dep_utc, flight_key"
        ):
            found.setdefault(status, []).append(int(key))
    return found


def count(settings: Settings, sql: str) -> Any:
    with closing(connect(settings.resolved_warehouse_url)) as warehouse:
        return warehouse.query(sql)[0][0]


_seq = iter(range(1_000_000))


def entry(request_id: str, keys: list[int] | None, *, rows: int = 1, **change: Any) -> dict:
    """A payload entry as the data plane builds it and the payload log stamps it."""
    values = {
        "request_id": request_id,
        "time": "2024-05-01T10:00:00.000001+00:00",
        "protocol": "v2-grpc",
        "model": MODEL,
        "version": VERSION,
        "route": "production",
        "rows": rows,
        "inputs": {"carrier": ["UA"] * rows, "distance": [719.0] * rows, "temp": [None] * rows},
        "outputs": {"probability": [0.25 + i / 100 for i in range(rows)]},
        "latency_ms": 1.5,
        "caller": "p_0123456789abcdef01234567",
        "seq": next(_seq),
        "writer": "host-1-abcdef",
        "logged_at": "2024-05-01T10:00:00.000002+00:00",
    }
    if keys is not None:
        values["row_ids"] = [str(k) for k in keys]
    return values | change


def outcomes(settings: Settings, *pairs: tuple[int, int]) -> list[OutcomeEvent]:
    events = [
        OutcomeEvent(new_event_id(), key, T + timedelta(hours=2), delay, delay > 15, "test")
        for key, delay in pairs
    ]
    log = OutcomeLog(settings)
    log.emit(events)
    log.close()
    return events


def test_predictions_and_outcomes_load_once_and_join_into_labels(settings: Settings) -> None:
    arrived, cancelled = flights(settings)["arrived"], flights(settings)["cancelled"]
    payload = SegmentSink(settings.payload_dir)
    payload.write([entry("r1", arrived[:3], rows=3), entry("r2", [cancelled[0]])])
    payload.write([entry("r3", None), entry("r1", arrived[:3], rows=3, route="shadow")])
    outcomes(settings, (arrived[0], 30), (arrived[1], -4))

    first = ingest(settings)
    assert (first.payload_entries, first.predictions_inserted, first.predictions_duplicate) == (
        4,
        8,
        0,
    )
    assert (first.outcome_events, first.outcomes_inserted, first.problems) == (2, 2, 0)
    assert count(settings, "SELECT count(*) FROM fact_prediction") == 8
    assert count(settings, "SELECT count(*) FROM fact_prediction WHERE flight_key IS NULL") == 1
    row = count(
        settings,
        "SELECT prediction_id || '|' || prediction || '|' || features || '|' || "
        "client_pseudonym || '|' || protocol FROM fact_prediction WHERE prediction_id = 'r1:2'",
    )
    assert row == (
        'r1:2|0.27|{"carrier":"UA","distance":719.0,"temp":null}|p_0123456789abcdef01234567|v2-grpc'
    )

    again = ingest(settings)  # nothing new since the checkpoint
    assert (again.payload_entries, again.outcome_events, again.batches) == (0, 0, 0)
    replayed = ingest(settings, from_start=True)  # the whole logs again: nothing is added
    assert (replayed.payload_entries, replayed.predictions_inserted) == (4, 0)
    assert (replayed.predictions_duplicate, replayed.outcomes_duplicate) == (8, 2)
    assert count(settings, "SELECT count(*) FROM fact_prediction") == 8
    assert count(settings, "SELECT count(*) FROM fact_outcome") == 2

    labels = labelled_predictions(settings, MODEL)
    assert sorted(labels["prediction_id"]) == ["r1:0", "r1:0:shadow", "r1:1", "r1:1:shadow"]
    by_id = labels.set_index("prediction_id")
    assert by_id.loc["r1:0", "arr_delay_min"] == 30 and by_id.loc["r1:0", "is_delayed_15"]
    assert by_id.loc["r1:1", "arr_delay_min"] == -4 and not by_id.loc["r1:1", "is_delayed_15"]
    assert set(labels["version"]) == {VERSION} and set(labels["model"]) == {MODEL}
    assert str(labels["sched_dep_utc"].dt.tz) == "UTC"
    assert labelled_predictions(settings, MODEL, version="9").empty
    assert labelled_predictions(settings, "arrival_delay").empty


def test_label_join_filters_by_departure_date_and_instant(settings: Settings) -> None:
    arrived = flights(settings)["arrived"]
    early, late = arrived[0], arrived[-1]  # 2013-01-01 and 2013-11-04
    SegmentSink(settings.payload_dir).write([entry("a", [early]), entry("b", [late])])
    outcomes(settings, (early, 1), (late, 2))
    ingest(settings)
    january = labelled_predictions(settings, MODEL, start=date(2013, 1, 1), end=date(2013, 1, 3))
    assert list(january["flight_key"]) == [early]
    november = labelled_predictions(settings, MODEL, start=datetime(2013, 6, 1, tzinfo=UTC))
    assert list(november["flight_key"]) == [late]


def test_bad_input_is_counted_quarantined_or_skipped_and_the_rest_loads(
    settings: Settings,
) -> None:
    arrived = flights(settings)["arrived"]
    payload = SegmentSink(settings.payload_dir)
    payload.write([entry("ok-1", [arrived[0]])])
    with segment_path(settings.payload_dir, 1).open("ab") as handle:
        handle.write(b'{"request_id": "torn", "rows"\n')  # corrupted line
    payload.write(
        [
            entry("no-outputs", [arrived[1]], outputs={}),
            entry("no-time", [arrived[1]], time=None),
            entry("bad-ids", [arrived[1], arrived[2]]),  # 2 ids for 1 row
            entry("null-output", [arrived[1]], outputs={"probability": [None]}),
            entry("ok-2", [arrived[1]]),
        ]
    )
    unknown = 4242
    events = outcomes(settings, (arrived[0], 20), (unknown, 5), (arrived[0], 99))
    outcome_log = settings.outcomes_dir / "segment-000001.jsonl"
    with outcome_log.open("ab") as handle:
        handle.write(b'{"event_id": "e", "flight_key": 1, "seq": 9, "writer": "w", ')
        handle.write(b'"logged_at": "x"}\n')  # an event without its fields
    outcomes(settings, (arrived[1], 7))

    report = ingest(settings)
    assert report.unreadable == 1
    assert report.invalid == {
        "field 'outputs' is missing or empty": 1,
        "field 'time' is missing or not a string": 1,
        "field 'row_ids' is not a list of one id per row": 1,
        "output value is null": 1,
        "outcome: field 'observed_at' is missing": 1,
    }
    assert report.predictions_inserted == 2
    assert (report.outcomes_inserted, report.outcomes_duplicate, report.unknown_flight) == (
        2,
        1,
        1,
    )
    first_kept = f"SELECT arr_delay_min FROM fact_outcome WHERE flight_key = {arrived[0]}"
    assert count(settings, first_kept) == 20
    quarantined = count(
        settings,
        "SELECT source_table || '|' || record_key || '|' || checks || '|' || reasons "
        "FROM quarantine WHERE source_table = 'outcome_events'",
    )
    table, key, check, reasons = quarantined.split("|", 3)
    assert (table, key, check) == ("outcome_events", str(unknown), "unknown_flight")
    assert json.loads(reasons)[0]["message"] == f"flight_key {unknown} is not in fact_flight"
    record = json.loads(count(settings, "SELECT record FROM quarantine WHERE record_key = '4242'"))
    assert record["event_id"] == events[1].event_id
    # quarantining again (the log read from its start) keeps one row
    ingest(settings, from_start=True)
    assert count(settings, "SELECT count(*) FROM quarantine WHERE record_key = '4242'") == 1


def test_batches_commit_their_position_and_a_later_run_resumes_after_it(
    settings: Settings,
) -> None:
    arrived = flights(settings)["arrived"]
    payload = SegmentSink(settings.payload_dir)
    payload.write([entry(f"r{i}", [arrived[i]]) for i in range(5)])
    first = Consumer(settings, batch=2)
    assert first.run_once() == 5
    assert first.report.batches == 3  # 2 + 2 + 1 payload entries, no outcome
    checkpoints = count(
        settings, "SELECT count(*) FROM consumer_checkpoint WHERE source = 'payload@segments'"
    )
    assert checkpoints == 3
    payload.write([entry("r9", [arrived[9]])])
    later = Consumer(settings, batch=2)
    assert later.run_once() == 1
    assert later.report.payload_entries == 1 and later.report.predictions_inserted == 1
    # another consumer name has its own position
    other = Consumer(settings, name="audit-copy")
    assert other.run_once() == 6 and other.report.predictions_inserted == 0


def test_a_version_missing_from_dim_model_version_is_reported(settings: Settings) -> None:
    arrived = flights(settings)["arrived"]
    SegmentSink(settings.payload_dir).write([entry("x", [arrived[0]], version="77")])
    report = ingest(settings)
    assert report.predictions_inserted == 1
    assert report.unregistered_versions == {f"{MODEL}/77"}


def test_batch_must_be_positive(settings: Settings) -> None:
    with pytest.raises(VigieError) as caught:
        Consumer(settings, batch=0)
    assert caught.value.code is ErrorCode.INVALID_INPUT


@pytest.fixture
def no_warehouse(tmp_path: Path, make_settings: Callable[..., Settings]) -> Settings:
    return make_settings(tmp_path / "h", None, warehouse_url="postgresql://nobody@127.0.0.1:1/x")


def test_an_unreachable_warehouse_is_an_error_outside_follow(no_warehouse: Settings) -> None:
    with pytest.raises(VigieError) as caught:
        ingest(no_warehouse)
    assert caught.value.code is ErrorCode.WAREHOUSE_UNAVAILABLE
