"""The outcome log and the consumer with both logs on a real Redis (streams of this test)."""

from __future__ import annotations

import os
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import closing
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import redis

from vigie.config import Settings
from vigie.events.outcomes import OutcomeEvent, OutcomeLog, new_event_id, read_outcomes
from vigie.events.payload_stream import RedisStreamSink
from vigie.monitoring.consumer import Consumer, ingest
from vigie.registry import model_version_key
from vigie.warehouse.connection import connect
from vigie.warehouse.migrations import migrate

pytestmark = pytest.mark.integration

REDIS_ENV = "VIGIE_TEST_REDIS_URL"
KNOWN, UNKNOWN = 11, 12
T = datetime(2013, 1, 1, 12, tzinfo=UTC)


@pytest.fixture
def redis_url() -> str:
    url = os.environ.get(REDIS_ENV)
    if not url:
        pytest.skip(f"{REDIS_ENV} is not set: no Redis server to test against")
    return url


@pytest.fixture
def streams(redis_url: str) -> Iterator[tuple[str, str]]:
    """A payload and an outcome stream of this test only, deleted after it."""
    prefix = f"vigie:test:{secrets.token_hex(6)}"
    names = (f"{prefix}:payload", f"{prefix}:outcomes")
    yield names
    client = redis.Redis.from_url(redis_url)
    try:
        client.delete(*names)
    finally:
        client.close()


@pytest.fixture
def settings(tmp_path: Path, make_settings: Callable[..., Settings], redis_url: str) -> Settings:
    """Logs in Redis; a DuckDB warehouse with one flight and one model version."""
    url = f"duckdb:///{tmp_path / 'warehouse.duckdb'}"
    with closing(connect(url)) as warehouse:
        migrate(warehouse)
        warehouse.execute(
            "INSERT INTO fact_flight (flight_key, flight_date, carrier_code, flight_number, "
            "origin_code, date_key, carrier_key, origin_airport_key, dest_airport_key, "
            "plane_key, weather_key, dest_code, sched_dep_local, sched_dep_utc, distance_mi, "
            "flight_status, run_id, loaded_at) VALUES "
            "(?, ?, 'UA', 1545, 'EWR', 20130101, 1, 1, 1, 0, 0, 'IAH', ?, ?, 1400, 'arrived', "
            "'r', ?)",
            (KNOWN, date(2013, 1, 1), T.replace(tzinfo=None), T, T),
        )
        warehouse.execute(
            "INSERT INTO dim_model_version (model_version_key, model_name, version, "
            "registered_at) VALUES (?, 'arrival_delay', '1', ?)",
            (model_version_key("arrival_delay", "1"), T),
        )
    return make_settings(tmp_path / "home", None, warehouse_url=url, stream_url=redis_url)


def entry(i: int, key: int) -> dict[str, Any]:
    return {
        "request_id": f"r{i}",
        "time": T.isoformat(),
        "protocol": "v2-rest",
        "model": "arrival_delay",
        "version": "1",
        "route": "production",
        "rows": 1,
        "row_ids": [str(key)],
        "inputs": {"distance": [1400.0]},
        "outputs": {"delay_minutes": [12.5]},
        "caller": "p_x",
        "latency_ms": 1.0,
        "seq": i,
        "writer": "w",
        "logged_at": T.isoformat(),
    }


def count(settings: Settings, table: str) -> int:
    with closing(connect(settings.resolved_warehouse_url)) as warehouse:
        return int(warehouse.query(f"SELECT count(*) FROM {table}")[0][0])


def test_both_logs_in_redis_load_once_with_bad_entries_counted(
    settings: Settings, streams: tuple[str, str], redis_url: str
) -> None:
    payload, outcome_stream = streams
    sink = RedisStreamSink(redis_url, stream=payload)
    sink.write([entry(0, KNOWN), entry(1, UNKNOWN)])
    client = redis.Redis.from_url(redis_url)
    client.xadd(payload, {b"entry": b"{not json"})
    client.xadd(payload, {b"other": b"{}"})
    client.close()
    sink.write([entry(2, KNOWN)])
    sink.close()
    log = OutcomeLog(settings, stream=outcome_stream)
    first = OutcomeEvent(new_event_id(), KNOWN, T + timedelta(hours=4), 30, True, "test")
    log.emit([first, OutcomeEvent(new_event_id(), UNKNOWN, T, 1, False, "test")])
    log.emit([OutcomeEvent(new_event_id(), KNOWN, T, -3, False, "again")])
    log.close()
    assert [e.flight_key for e in read_outcomes(settings, limit=9, stream=outcome_stream)] == [
        KNOWN,
        UNKNOWN,
        KNOWN,
    ]

    report = ingest(settings, streams=streams)
    assert (report.payload_entries, report.predictions_inserted, report.unreadable) == (3, 3, 2)
    assert (report.outcomes_inserted, report.outcomes_duplicate, report.unknown_flight) == (1, 1, 1)
    assert set(report.positions) == {f"payload@redis:{payload}", f"outcomes@redis:{outcome_stream}"}
    assert ingest(settings, streams=streams).batches == 0
    assert ingest(settings, streams=streams, from_start=True).predictions_inserted == 0
    assert (count(settings, "fact_prediction"), count(settings, "fact_outcome")) == (3, 1)
    assert count(settings, "quarantine") == 1


def test_follow_picks_up_new_entries_until_stopped(
    settings: Settings, streams: tuple[str, str], redis_url: str
) -> None:
    sink = RedisStreamSink(redis_url, stream=streams[0])
    sink.write([entry(0, KNOWN)])
    consumer = Consumer(settings, streams=streams)
    stop = threading.Event()
    follower = threading.Thread(target=consumer.follow, args=(stop,), kwargs={"poll_s": 0.05})
    follower.start()
    try:
        sink.write([entry(1, KNOWN), entry(2, UNKNOWN)])
        deadline = time.monotonic() + 30  # a guard against hanging, not a timing assertion
        while consumer.report.predictions_inserted < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        stop.set()
        follower.join(30)
        sink.close()
    assert not follower.is_alive()
    assert consumer.report.predictions_inserted == 3
    assert count(settings, "fact_prediction") == 3  # the follower has closed the warehouse
