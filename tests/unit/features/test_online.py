"""Enrichment from the embedded online store: served features equal offline ones."""

from __future__ import annotations

import math
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from tests.unit.features import store_checks

from vigie.errors import VigieError
from vigie.features.online import Enricher, calendar, parse_sched_dep
from vigie.features.store import SqliteStore, us


@pytest.fixture
def store(tmp_path: Path) -> SqliteStore:
    return SqliteStore(tmp_path / "online.sqlite")


def test_served_stream_features_equal_the_offline_definition(store: SqliteStore) -> None:
    store_checks.check_served_equals_offline(store, *store_checks.day_of_events())


def test_duplicated_and_shuffled_events_leave_the_same_store(store: SqliteStore) -> None:
    store_checks.check_idempotent_in_any_order(store, *store_checks.day_of_events(seed=11))


def test_a_reader_opened_before_the_processor_sees_its_writes(tmp_path: Path) -> None:
    reader = SqliteStore(tmp_path / "online.sqlite", read_only=True)
    writer = SqliteStore(tmp_path / "online.sqlite")
    events, facts = store_checks.day_of_events(flights=50)
    writer.apply(events)
    request = store_checks.schedule_rows(facts, 5)
    index = request.pop("_index")
    columns, _ = Enricher(reader, str).fill(dict(request), len(index), ("origin_backlog_1h",))
    assert columns["origin_backlog_1h"].shape == (len(index),)
    assert reader.watermark_us() == writer.watermark_us()


def test_features_older_than_their_bound_are_served_missing_and_counted(
    store: SqliteStore,
) -> None:
    events, facts = store_checks.day_of_events(flights=80)
    store.apply([e for e in events if e.occurred_at < store_checks.T0 + timedelta(hours=2)])
    request = store_checks.schedule_rows(facts, 10)  # departures from 10:00: hours later
    index = request.pop("_index")
    columns, done = Enricher(store, str).fill(
        dict(request), len(index), ("origin_dep_delay_1h", "origin_backlog_1h", "temp")
    )
    assert np.isnan(columns["origin_dep_delay_1h"]).all()
    assert np.isnan(columns["origin_backlog_1h"]).all()  # a count too: unknown, not zero
    assert done.stale["stream"] == len(index)
    assert done.age_s["stream"] > 2 * 3600
    assert done.missing["temp"] == len(index)  # no weather observed for those hours


def test_inputs_sent_are_kept_and_only_the_others_filled(store: SqliteStore) -> None:
    events, facts = store_checks.day_of_events(flights=60)
    store.apply(events)
    request = store_checks.schedule_rows(facts, 4)
    index = request.pop("_index")
    sent = np.full(len(index), 123.0, dtype=np.float32)
    columns, done = Enricher(store, str).fill(
        {**request, "distance": sent}, len(index), ("carrier", "distance", "hour")
    )
    assert columns["distance"] is sent
    assert done.filled == ["hour"]
    assert set(columns) == {"carrier", "distance", "hour"}


def test_enrichment_names_the_keys_it_needs(store: SqliteStore) -> None:
    with pytest.raises(VigieError, match="not sent: origin, dest, sched_dep") as caught:
        Enricher(store, str).fill(
            {"carrier": np.asarray(["AA"], dtype=object)}, 1, ("carrier", "temp")
        )
    assert caught.value.code.value == "INVALID_INPUT"
    assert "missing input(s): temp" in caught.value.message


@pytest.mark.parametrize("text", ["yesterday", "", None, "2013-13-01T00:00"])
def test_a_malformed_departure_is_refused_with_its_row(text: object) -> None:
    values = np.asarray(["2013-03-01T06:00", text], dtype=object)
    with pytest.raises(VigieError, match="input 'sched_dep': row 1"):
        parse_sched_dep(values)


def test_departures_are_new_york_local_unless_they_carry_an_offset() -> None:
    local = parse_sched_dep(np.asarray(["2013-03-10T06:00", "2013-03-10T11:00+00:00"], object))
    # 10 March 2013: New York moved to summer time at 02:00 (UTC-4 from then on)
    assert local[0] == us(datetime(2013, 3, 10, 10, tzinfo=UTC))
    cal = calendar(local)
    assert cal["hour"].tolist() == [6.0, 7.0]
    assert cal["day_of_week"].tolist() == [7.0, 7.0]  # a Sunday, ISO 7
    assert cal["month"].tolist() == [3.0, 3.0]
    assert not math.isnan(float(cal["minute"][0]))


def test_the_flight_number_picks_the_flight_of_an_ambiguous_schedule(store: SqliteStore) -> None:
    store_checks.check_the_flight_number_picks_the_flight(store)


@pytest.mark.parametrize("value", [-1.0, 12.5])
def test_a_flight_number_that_is_not_one_is_refused(store: SqliteStore, value: float) -> None:
    request = {
        "carrier": np.asarray(["AA"], dtype=object),
        "origin": np.asarray(["JFK"], dtype=object),
        "dest": np.asarray(["MIA"], dtype=object),
        "sched_dep": np.asarray(["2013-03-01T06:00"], dtype=object),
        "flight": np.asarray([value], dtype=np.float32),
    }
    with pytest.raises(VigieError, match="input 'flight': row 0"):
        Enricher(store, str).fill(request, 1, ("carrier", "hour"))


def test_the_processor_applies_a_batch_again_after_the_store_failed(tmp_path: Path) -> None:
    import sqlite3  # noqa: PLC0415
    import threading  # noqa: PLC0415

    from vigie.events.local_stream import LocalEventStream  # noqa: PLC0415
    from vigie.features.processor import FeatureProcessor  # noqa: PLC0415

    class FailingOnce(SqliteStore):
        """The embedded store, whose disk refuses the first write."""

        failed = False

        def apply(self, events: Any) -> None:
            if not self.failed:
                self.failed = True
                raise sqlite3.OperationalError("disk I/O error")
            super().apply(events)

    events, facts = store_checks.day_of_events(flights=30)
    stream = LocalEventStream(tmp_path / "flights")
    stream.publish(events)
    store = FailingOnce(tmp_path / "online.sqlite")
    processor = FeatureProcessor(store, stream.consumer("features", "p1"))
    stop = threading.Event()
    worker = threading.Thread(target=processor.run, args=(stop,), kwargs={"retry_s": 0.01})
    worker.start()
    try:
        deadline = time.monotonic() + 10
        while processor.stats.applied < len(events) and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        stop.set()
        worker.join(10)
    assert store.failed and processor.stats.applied == len(events)
    assert store.watermark_us() == max(us(e.occurred_at) for e in events)
    assert processor.lag() == 0
