"""The flight and weather events of a replayed window, each published at its own instant.

A flight's schedule is published at its scheduled departure, its departure at the actual
departure, its arrival at the actual arrival, a cancellation at the scheduled departure
and a diversion at the departure; an hour of weather at the top of its hour. The feature
processor turns them into the online store that serving enriches requests from, so a
replay drives the same real-time path an airline feed would.

The day before the window is published at once before the first request (a warm-up: the
longest feature window is 6 h, and a flight that arrives in it may have left the day
before), so the first departures of the window see what they would have seen live.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from vigie.config import Settings
from vigie.events.flight_events import (
    Event,
    FlightArrived,
    FlightCancelled,
    FlightDeparted,
    FlightDiverted,
    FlightScheduled,
    WeatherObserved,
    event_id_for,
)
from vigie.events.stream import EventStream, open_event_stream
from vigie.features.offline import micros
from vigie.features.processor import KEEP_US, load_reference, open_store
from vigie.features.store import WEATHER
from vigie.warehouse.connection import connect

FLIGHTS_SQL = """
SELECT f.flight_key AS flight_key, f.carrier_code AS carrier, f.origin_code AS origin,
       f.dest_code AS dest, f.sched_dep_utc AS sched_dep_utc, f.dep_utc AS dep_utc,
       f.dep_delay_min AS dep_delay, f.arr_utc AS arr_utc, f.arr_delay_min AS arr_delay,
       f.flight_status AS status, f.distance_mi AS distance, p.tailnum_pseudonym AS tail,
       f.flight_number AS flight_number
FROM fact_flight f
LEFT JOIN dim_plane p ON p.plane_key = f.plane_key AND p.plane_key <> 0
WHERE f.flight_date BETWEEN ? AND ?
"""
WEATHER_SQL = """
SELECT origin_code AS origin, time_hour_utc AS hour, temp_f AS temp, dewpoint_f AS dewp,
       humidity_pct AS humid, wind_dir_deg AS wind_dir, wind_speed_mph AS wind_speed,
       wind_gust_mph AS wind_gust, precip_in AS precip, pressure_mb AS pressure,
       visibility_mi AS visib
FROM dim_weather_hour WHERE weather_key <> 0 AND local_date BETWEEN ? AND ?
"""

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_NONE = np.iinfo(np.int64).min
_log = logging.getLogger(__name__)

# what each scheduled instant publishes
_SCHEDULED, _DEPARTED, _ARRIVED, _CANCELLED, _DIVERTED, _WEATHER = range(6)


def instant(micros_: int) -> datetime:
    """UTC datetime of microseconds since the epoch."""
    return _EPOCH + timedelta(microseconds=micros_)


@dataclass(frozen=True)
class EventSchedule:
    """Every event of a window, in time order, built into an :class:`Event` when due.

    Attributes:
        at_us: When each event happens (sorted).
        kind: What it is (a flight's schedule, departure...).
        row: Its row of ``flights`` (or ``weather`` for weather).
        flights: The flights' columns.
        weather: The weather hours' columns.
    """

    at_us: npt.NDArray[np.int64]
    kind: npt.NDArray[np.int8]
    row: npt.NDArray[np.int64]
    flights: dict[str, list[object]]
    weather: dict[str, list[object]]

    def __len__(self) -> int:
        return int(self.at_us.shape[0])

    def event(self, i: int) -> Event:
        """The ``i``-th event."""
        kind, row, at = int(self.kind[i]), int(self.row[i]), instant(int(self.at_us[i]))
        if kind == _WEATHER:
            w = self.weather
            values = {name: _number(w[name][row]) for name in WEATHER}
            origin = str(w["origin"][row])
            return WeatherObserved(
                event_id_for(WeatherObserved.kind, (origin, at)), at, origin, at, **values
            )
        f = self.flights
        key = int(f["flight_key"][row])  # type: ignore[call-overload]
        head = {
            "flight_key": key,
            "carrier": str(f["carrier"][row]),
            "origin": str(f["origin"][row]),
            "dest": str(f["dest"][row]),
            "sched_dep": instant(int(f["sched_us"][row])),  # type: ignore[call-overload]
        }
        if kind == _SCHEDULED:
            tail = f["tail"][row]
            return FlightScheduled(
                event_id_for(FlightScheduled.kind, key), at, **head,
                tailnum=None if tail is None else str(tail),
                distance=_number(f["distance"][row]),
                flight_number=int(f["flight_number"][row]),  # type: ignore[call-overload]
            )  # fmt: skip
        if kind == _DEPARTED:
            delay = float(f["dep_delay"][row])  # type: ignore[arg-type]
            return FlightDeparted(event_id_for(FlightDeparted.kind, key), at, **head,
                                  dep_delay_min=delay)  # fmt: skip
        if kind == _ARRIVED:
            delay = float(f["arr_delay"][row])  # type: ignore[arg-type]
            return FlightArrived(event_id_for(FlightArrived.kind, key), at, **head,
                                 arr_delay_min=delay)  # fmt: skip
        cls = FlightCancelled if kind == _CANCELLED else FlightDiverted
        return cls(event_id_for(cls.kind, key), at, **head)


def _number(value: object) -> float | None:
    return None if value is None else float(value)  # type: ignore[arg-type]


def load_schedule(settings: Settings, start: date, end: date) -> EventSchedule:
    """The events of the flights scheduled from the day before ``start`` to ``end``."""
    warehouse = connect(settings.resolved_warehouse_url, read_only=True)
    try:
        flights = warehouse.query_arrow(FLIGHTS_SQL, [start - timedelta(days=1), end])
        weather = warehouse.query_arrow(WEATHER_SQL, [start - timedelta(days=1), end])
    finally:
        warehouse.close()
    return schedule_from_arrow(flights, weather)


def schedule_from_arrow(flights: pa.Table, weather: pa.Table) -> EventSchedule:
    """An :class:`EventSchedule` from rows of :data:`FLIGHTS_SQL` and :data:`WEATHER_SQL`."""
    sched, dep, arr = (micros(flights.column(c)) for c in ("sched_dep_utc", "dep_utc", "arr_utc"))
    status = np.asarray(flights.column("status").to_pylist(), dtype=object)
    dep_known = (dep != _NONE) & ~_nulls(flights.column("dep_delay"))
    arrived = (status == "arrived") & (arr != _NONE) & ~_nulls(flights.column("arr_delay"))
    n = flights.num_rows
    rows = np.arange(n, dtype=np.int64)
    parts = [
        (sched, np.full(n, _SCHEDULED), rows),
        (dep[dep_known], np.full(int(dep_known.sum()), _DEPARTED), rows[dep_known]),
        (arr[arrived], np.full(int(arrived.sum()), _ARRIVED), rows[arrived]),
    ]
    cancelled = status == "cancelled"
    parts.append((sched[cancelled], np.full(int(cancelled.sum()), _CANCELLED), rows[cancelled]))
    diverted = status == "diverted"
    parts.append(
        (np.where(dep_known, dep, sched)[diverted], np.full(int(diverted.sum()), _DIVERTED),
         rows[diverted])
    )  # fmt: skip
    hours = micros(weather.column("hour"))
    parts.append((hours, np.full(weather.num_rows, _WEATHER), np.arange(weather.num_rows)))
    at_us = np.concatenate([p[0] for p in parts]).astype(np.int64)
    kind = np.concatenate([p[1] for p in parts]).astype(np.int8)
    row = np.concatenate([p[2] for p in parts]).astype(np.int64)
    order = np.lexsort((row, -kind.astype(np.int16), at_us))  # weather first at an instant
    columns = flights.to_pydict()
    columns["sched_us"] = sched.tolist()
    return EventSchedule(at_us[order], kind[order], row[order], columns, weather.to_pydict())


def _nulls(column: pa.ChunkedArray) -> npt.NDArray[np.bool_]:
    return np.asarray(column.is_null().to_numpy(zero_copy_only=False), dtype=np.bool_)


@dataclass
class FeedStats:
    """What the feed published and how the processor kept up."""

    published: int = 0
    waits_timed_out: int = 0
    gave_up_waiting: bool = False


class EventFeed:
    """Publishes a schedule's events as the replay's clock passes them.

    Args:
        schedule: The events.
        stream: Where they go (the ``flights`` stream).
        watermark: Reads the online store's watermark; when given, :meth:`advance` waits
            (at most ``wait_s``) until the processor applied what was published, so each
            request sees every event before its instant. None: publish and go on.
        wait_s: Longest wait per advance.
        sleep: How to wait (tests pass a fake).
    """

    #: Events published in one batch at most.
    BATCH = 5000
    #: Waits that time out in a row before the feed stops waiting (no processor).
    GIVE_UP_AFTER = 3

    def __init__(
        self,
        schedule: EventSchedule,
        stream: EventStream,
        *,
        watermark: Callable[[], int | None] | None = None,
        wait_s: float = 5.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._schedule = schedule
        self._stream = stream
        self._watermark = watermark
        self._wait_s = wait_s
        self._sleep = sleep
        self._next = 0
        self._timeouts = 0
        self.stats = FeedStats()

    def advance(self, now_us: int) -> int:
        """Publish every event at or before ``now_us`` not yet published; how many."""
        end = int(np.searchsorted(self._schedule.at_us, now_us, side="right"))
        if end <= self._next:
            return 0
        count = end - self._next
        for first in range(self._next, end, self.BATCH):
            last = min(first + self.BATCH, end)
            self._stream.publish([self._schedule.event(i) for i in range(first, last)])
        self._next = end
        self.stats.published += count
        self._wait_for(int(self._schedule.at_us[end - 1]))
        return count

    def _wait_for(self, newest_us: int) -> None:
        if self._watermark is None or self.stats.gave_up_waiting:
            return
        deadline = time.monotonic() + self._wait_s
        while time.monotonic() < deadline:
            mark = self._watermark()
            if mark is not None and mark >= newest_us:
                self._timeouts = 0
                return
            self._sleep(0.002)
        self.stats.waits_timed_out += 1
        self._timeouts += 1
        if self._timeouts >= self.GIVE_UP_AFTER:
            self.stats.gave_up_waiting = True
            _log.warning(
                "the feature processor did not apply the replay's events within %.1f s %d "
                "times in a row; publishing without waiting for it from now on",
                self._wait_s,
                self._timeouts,
            )


def open_feed(
    settings: Settings, start: date, end: date
) -> tuple[EventFeed, list[Callable[[], None]]]:
    """The event feed of a window on the configured stream, waiting on the online store.

    A store that already knows events long after the window's start (a replay of an
    earlier window than the last one) is emptied first: its facts would be from the future
    of the replayed requests, and its watermark would not say when the processor caught up.
    """
    schedule = load_schedule(settings, start, end)
    stream = open_event_stream(settings)
    rewind_store(settings, start)
    store = open_store(settings, read_only=True)
    feed = EventFeed(schedule, stream, watermark=store.watermark_us)
    return feed, [stream.close, store.close]


def rewind_store(settings: Settings, start: date) -> None:
    """Empty the online store (and load its reference data again) when it already holds
    events long after ``start``: the replay is going back in time."""
    store = open_store(settings)
    try:
        mark = store.watermark_us()
        begins = int(datetime(start.year, start.month, start.day, tzinfo=UTC).timestamp() * 1e6)
        if mark is not None and mark > begins + KEEP_US:
            _log.warning(
                "the online store holds events up to %s, after the replayed window's start: "
                "emptied so that the replay's events rebuild it",
                instant(mark).isoformat(),
            )
            store.clear()
            load_reference(settings, store)
    finally:
        store.close()
