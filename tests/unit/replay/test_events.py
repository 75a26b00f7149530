"""The replay's flight and weather events: each at its own instant, before the requests that
come after it, and a feed that waits for the feature processor without hanging on it."""

from __future__ import annotations

from contextlib import closing
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import cast

import numpy as np
import pyarrow as pa
import pytest

from vigie.config import Settings
from vigie.events.flight_events import (
    FlightArrived,
    FlightCancelled,
    FlightDeparted,
    FlightDiverted,
    FlightScheduled,
    WeatherObserved,
)
from vigie.events.local_stream import LocalEventStream
from vigie.features.processor import open_store
from vigie.features.store import Lookup, SqliteStore, us
from vigie.replay.events import EventFeed, load_schedule, rewind_store, schedule_from_arrow
from vigie.warehouse.connection import connect

T0 = datetime(2013, 3, 1, 11, tzinfo=UTC)


def _ts(minutes: list[float | None]) -> pa.Array:
    return pa.array(
        [None if m is None else T0 + timedelta(minutes=m) for m in minutes],
        type=pa.timestamp("us", tz="UTC"),
    )


def flights_table() -> pa.Table:
    """An arrived, a cancelled and a diverted flight, and one arrived with no delay known."""
    return pa.table(
        {
            "flight_key": [1, 2, 3, 4],
            "carrier": ["AA", "B6", "UA", "DL"],
            "origin": ["JFK", "JFK", "EWR", "LGA"],
            "dest": ["MIA", "BOS", "ORD", "ATL"],
            "sched_dep_utc": _ts([0, 10, 20, 30]),
            "dep_utc": _ts([5, None, 25, 35]),
            "dep_delay": pa.array([5, None, 5, 5], type=pa.int32()),
            "arr_utc": _ts([180, None, None, 150]),
            "arr_delay": pa.array([12, None, None, None], type=pa.int32()),
            "status": ["arrived", "cancelled", "diverted", "arrived"],
            "distance": pa.array([1089, 187, 719, 762], type=pa.int32()),
            "tail": ["p_1", None, "p_3", "p_4"],
            "flight_number": pa.array([1141, 200, 300, 400], type=pa.int32()),
        }
    )


def weather_table() -> pa.Table:
    return pa.table(
        {
            "origin": ["JFK", "EWR"],
            "hour": _ts([0, 60]),
            **{
                name: pa.array([10.0, None], type=pa.float64())
                for name in (
                    "temp",
                    "dewp",
                    "humid",
                    "wind_dir",
                    "wind_speed",
                    "wind_gust",
                    "precip",
                    "pressure",
                    "visib",
                )
            },  # fmt: skip
        }
    )


def test_every_fact_becomes_its_event_at_its_own_instant() -> None:
    schedule = schedule_from_arrow(flights_table(), weather_table())
    events = [schedule.event(i) for i in range(len(schedule))]
    at = [us(e.occurred_at) for e in events]
    assert at == sorted(at)
    assert schedule.at_us.tolist() == at
    kinds = [
        (type(e).__name__, getattr(e, "flight_key", getattr(e, "origin", None))) for e in events
    ]
    assert kinds[0] == ("WeatherObserved", "JFK")  # weather first at an instant
    assert ("FlightCancelled", 2) in kinds and ("FlightDiverted", 3) in kinds
    assert ("FlightArrived", 4) not in kinds  # no delay known: no arrival event
    assert ("FlightArrived", 3) not in kinds and ("FlightDeparted", 2) not in kinds
    by_kind = {(type(e), getattr(e, "flight_key", None)): e for e in events}
    arrived = by_kind[(FlightArrived, 1)]
    assert isinstance(arrived, FlightArrived)
    assert arrived.occurred_at == T0 + timedelta(minutes=180) and arrived.arr_delay_min == 12
    departed = by_kind[(FlightDeparted, 1)]
    assert isinstance(departed, FlightDeparted) and departed.dep_delay_min == 5
    scheduled = by_kind[(FlightScheduled, 1)]
    assert isinstance(scheduled, FlightScheduled)
    assert (scheduled.tailnum, scheduled.distance, scheduled.flight_number) == ("p_1", 1089, 1141)
    assert by_kind[(FlightCancelled, 2)].occurred_at == T0 + timedelta(minutes=10)
    assert by_kind[(FlightDiverted, 3)].occurred_at == T0 + timedelta(minutes=25)
    weather = [e for e in events if isinstance(e, WeatherObserved)]
    assert weather[1].temp is None and weather[0].temp == 10.0


def test_the_feed_publishes_up_to_the_clock_and_waits_for_the_processor(tmp_path: Path) -> None:
    schedule = schedule_from_arrow(flights_table(), weather_table())
    stream = LocalEventStream(tmp_path / "flights")
    store = SqliteStore(tmp_path / "online.sqlite")
    consumer = stream.consumer("features", "p1")

    def processor_catches_up() -> int | None:  # the processor, run where the feed waits
        deliveries = consumer.poll(100)
        store.apply([d.event for d in deliveries])
        consumer.ack(deliveries)
        return store.watermark_us()

    feed = EventFeed(schedule, stream, watermark=processor_catches_up, sleep=lambda _: None)
    assert feed.advance(us(T0) - 1) == 0
    assert feed.advance(us(T0 + timedelta(minutes=20))) == 6  # 3 schedules, 2 events, weather
    assert store.watermark_us() == us(T0 + timedelta(minutes=20))
    assert feed.advance(us(T0 + timedelta(minutes=20))) == 0  # nothing twice
    assert feed.advance(us(T0 + timedelta(days=1))) == len(schedule) - 6
    assert feed.stats.published == len(schedule) and feed.stats.waits_timed_out == 0


def test_without_a_processor_the_feed_stops_waiting_after_a_few_timeouts(tmp_path: Path) -> None:
    schedule = schedule_from_arrow(flights_table(), weather_table())
    feed = EventFeed(
        schedule, LocalEventStream(tmp_path / "flights"), watermark=lambda: None, wait_s=0.01,
        sleep=lambda _: None,
    )  # fmt: skip
    for minutes in np.arange(0, 200, 10):
        feed.advance(us(T0 + timedelta(minutes=float(minutes))))
    assert feed.stats.gave_up_waiting
    assert feed.stats.waits_timed_out == EventFeed.GIVE_UP_AFTER
    assert feed.stats.published == len(schedule)


@pytest.mark.parametrize("fields", ["schedule"])
def test_schedule_only_requests_carry_what_an_application_knows(fields: str) -> None:
    from tests.unit.monitoring.test_replay import Journal, replay, window  # noqa: PLC0415

    flights = window([(1, 0, 90), (2, 5, None)])
    airports = {
        "origin": np.array(["JFK", "LGA"], dtype=object),
        "dest": np.array(["MIA", "BOS"], dtype=object),
    }
    flights = type(flights)(
        **{
            **flights.__dict__,
            "features": {**flights.features, **airports},
            "flight_number": np.array([11, 22]),
        }
    )
    journal = Journal()
    replay(flights, journal, client_fields=fields, max_rows=2).run()
    (request,) = journal.requests
    assert set(request.columns) == {"carrier", "origin", "dest", "sched_dep", "flight"}
    assert request.columns["sched_dep"].tolist() == ["2013-01-01T11:00+00:00",
                                                     "2013-01-01T11:05+00:00"]  # fmt: skip
    assert request.columns["flight"].tolist() == [11.0, 22.0]


def test_a_warehouse_window_gives_every_flight_its_events(small_warehouse: Settings) -> None:
    schedule = load_schedule(small_warehouse, date(2013, 1, 2), date(2013, 1, 2))
    events = [schedule.event(i) for i in range(len(schedule))]
    with closing(connect(small_warehouse.resolved_warehouse_url, read_only=True)) as warehouse:
        ((flights,),) = warehouse.query(
            "SELECT count(*) FROM fact_flight WHERE flight_date BETWEEN ? AND ?",
            (date(2013, 1, 1), date(2013, 1, 2)),
        )
    assert sum(isinstance(e, FlightScheduled) for e in events) == flights  # warm-up day too
    assert any(isinstance(e, WeatherObserved) for e in events)
    assert len({e.event_id for e in events}) == len(events)


def test_a_replay_that_rewinds_the_clock_empties_the_store_first(
    small_warehouse: Settings, tmp_path: Path
) -> None:
    # an online store of this test's own, over the shared warehouse
    url = small_warehouse.resolved_warehouse_url
    settings = small_warehouse.model_copy(update={"home": tmp_path, "warehouse_url": url})
    store = open_store(settings)
    schedule = load_schedule(settings, date(2013, 1, 1), date(2013, 1, 2))
    store.apply([schedule.event(i) for i in range(len(schedule))])
    store.close()
    rewind_store(settings, date(2013, 1, 2))  # the store ends a day after: a warm-up, kept
    assert open_store(settings).watermark_us() is not None
    rewind_store(settings, date(2012, 12, 1))  # a month earlier: the store is from its future
    emptied = open_store(settings)
    assert emptied.watermark_us() is None
    assert (
        emptied.lookup(Lookup(tails=frozenset(), first_us=0, last_us=1)).facts.flight_key.size == 0
    )
    planes = cast(SqliteStore, emptied)._db.execute("SELECT count(*) FROM planes").fetchone()[0]
    assert planes > 0  # the reference data is loaded again
