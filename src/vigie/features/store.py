"""The online feature store: what the feature processor learnt from the streams.

The store keeps facts, not aggregates: each flight as its events told it (schedule,
departure, arrival, cancellation), each hour of weather per origin, the aircraft by
pseudonymised tail number and the distance of each route. A feature is computed when it
is asked, as of the request's instant, by the same function that computes it offline
(:func:`vigie.features.history.compute`): what the store holds can be ahead of that
instant or behind it, never mixed into it.

Applying an event twice, or events out of order, leaves the same state (every write is an
upsert of the facts the event carries), so the processor can be at-least-once.

Two implementations share :class:`OnlineStore`: :class:`SqliteStore` (embedded, a file
under ``VIGIE_HOME``, read by every serving worker while the processor writes, in WAL mode)
and :class:`vigie.features.redis_store.RedisStore` (production, ``VIGIE_FEATURES_URL``).
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from vigie.events.flight_events import (
    Event,
    FlightArrived,
    FlightCancelled,
    FlightDeparted,
    FlightScheduled,
    WeatherObserved,
)
from vigie.features.history import HORIZON_US, NONE_US, FlightFacts, empty_facts

#: Weather measures, in catalogue order (request feature names).
WEATHER = (
    "temp", "dewp", "humid", "wind_dir", "wind_speed", "wind_gust", "precip", "pressure", "visib",
)  # fmt: skip
#: Aircraft fields (request feature names).
PLANE = ("plane_year", "manufacturer", "seats", "engine")

#: How far before the earliest instant asked the store looks: the longest window, plus an
#: hour for flights that left early (a backlog needs their departure).
LOOKBACK_US = HORIZON_US + 3_600_000_000


def us(value: Any) -> int:
    """A datetime as UTC microseconds since the epoch."""
    return int(value.timestamp() * 1_000_000)


#: A flight as a request names it: carrier, origin, dest, scheduled departure (UTC
#: microseconds) and flight number (-1 when the request did not send it).
PlanKey = tuple[str, str, str, int, int]


@dataclass(frozen=True)
class Lookup:
    """What one request needs from the store, for all its rows at once.

    Attributes:
        origins: Origin airports of the rows (stream features by origin).
        dests: Destination airports of the rows.
        first_us: Earliest instant asked.
        last_us: Latest instant asked.
        weather: (origin, hour) keys of the weather wanted.
        tails: Pseudonymised tail numbers of the aircraft wanted.
        schedules: (carrier, origin, dest, scheduled departure, flight number or -1) of
            rows whose aircraft or distance the caller did not send.
        routes: (origin, dest) pairs whose distance is wanted.
    """

    origins: frozenset[str] = frozenset()
    dests: frozenset[str] = frozenset()
    first_us: int = 0
    last_us: int = 0
    weather: frozenset[tuple[str, int]] = frozenset()
    tails: frozenset[str] = frozenset()
    schedules: frozenset[PlanKey] = frozenset()
    routes: frozenset[tuple[str, str]] = frozenset()


@dataclass
class Found:
    """What the store held for a :class:`Lookup`."""

    facts: FlightFacts = field(default_factory=empty_facts)
    weather: dict[tuple[str, int], tuple[float | None, ...]] = field(default_factory=dict)
    planes: dict[str, tuple[Any, ...]] = field(default_factory=dict)
    schedules: dict[PlanKey, tuple[str | None, float | None]] = field(default_factory=dict)
    routes: dict[tuple[str, str], float] = field(default_factory=dict)
    watermark_us: int | None = None


@dataclass(frozen=True)
class Plane:
    """One aircraft of the plane dimension, by pseudonymised tail number."""

    tail: str
    plane_year: float | None
    manufacturer: str | None
    seats: float | None
    engine: str | None


class OnlineStore(Protocol):
    """Where the processor writes and serving reads."""

    def apply(self, events: Sequence[Event]) -> None:
        """Upsert the facts of ``events`` (idempotent, any order) and raise the watermark."""

    def put_reference(
        self, planes: Iterable[Plane], routes: Iterable[tuple[str, str, float]]
    ) -> None:
        """Upsert the aircraft and the route distances."""

    def lookup(self, query: Lookup) -> Found:
        """Everything ``query`` needs, in one read."""

    def watermark_us(self) -> int | None:
        """The newest event instant applied (None before the first)."""

    def prune(self, before_us: int) -> int:
        """Drop flights scheduled and weather observed before ``before_us``; how many."""

    def clear(self) -> None:
        """Forget every fact and the watermark (a replay that rewinds the clock)."""

    def close(self) -> None:
        """Release the connection."""


_SCHEMA = """
CREATE TABLE IF NOT EXISTS flights (
    flight_key INTEGER PRIMARY KEY, carrier TEXT NOT NULL, origin TEXT NOT NULL,
    dest TEXT NOT NULL, sched_us INTEGER NOT NULL, tail TEXT, distance REAL,
    dep_us INTEGER, dep_delay REAL, arr_us INTEGER, arr_delay REAL,
    cancelled INTEGER NOT NULL DEFAULT 0, flight_number INTEGER);
CREATE INDEX IF NOT EXISTS ix_sched ON flights (origin, sched_us);
CREATE INDEX IF NOT EXISTS ix_dep ON flights (origin, dep_us);
CREATE INDEX IF NOT EXISTS ix_arr ON flights (origin, arr_us);
CREATE INDEX IF NOT EXISTS ix_dest_arr ON flights (dest, arr_us);
CREATE INDEX IF NOT EXISTS ix_schedule ON flights (carrier, origin, dest, sched_us);
CREATE INDEX IF NOT EXISTS ix_flight ON flights (carrier, flight_number, origin, sched_us);
CREATE TABLE IF NOT EXISTS weather (
    origin TEXT NOT NULL, hour_us INTEGER NOT NULL, temp REAL, dewp REAL, humid REAL,
    wind_dir REAL, wind_speed REAL, wind_gust REAL, precip REAL, pressure REAL, visib REAL,
    PRIMARY KEY (origin, hour_us));
CREATE TABLE IF NOT EXISTS planes (
    tail TEXT PRIMARY KEY, plane_year REAL, manufacturer TEXT, seats REAL, engine TEXT);
CREATE TABLE IF NOT EXISTS routes (
    origin TEXT NOT NULL, dest TEXT NOT NULL, distance REAL NOT NULL,
    PRIMARY KEY (origin, dest));
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
"""

_FLIGHT = (
    "INSERT INTO flights (flight_key, carrier, origin, dest, sched_us{cols}) "
    "VALUES (?, ?, ?, ?, ?{marks}) ON CONFLICT (flight_key) DO UPDATE SET "
    "carrier = excluded.carrier, origin = excluded.origin, dest = excluded.dest, "
    "sched_us = excluded.sched_us{updates}"
)
_UPSERTS = {
    FlightScheduled: ("tail", "distance", "flight_number"),
    FlightDeparted: ("dep_us", "dep_delay"),
    FlightArrived: ("arr_us", "arr_delay"),
    FlightCancelled: ("cancelled",),
}
_FACT_COLUMNS = (
    "flight_key, origin, dest, carrier, sched_us, dep_us, dep_delay, arr_us, arr_delay, cancelled"
)
_FACTS_SQL = f"""
SELECT {_FACT_COLUMNS} FROM flights WHERE origin = ?1 AND sched_us >= ?2 AND sched_us < ?3
UNION SELECT {_FACT_COLUMNS} FROM flights WHERE origin = ?1 AND dep_us >= ?2 AND dep_us < ?3
UNION SELECT {_FACT_COLUMNS} FROM flights WHERE origin = ?1 AND arr_us >= ?2 AND arr_us < ?3
"""
_DEST_SQL = f"SELECT {_FACT_COLUMNS} FROM flights WHERE dest = ? AND arr_us >= ? AND arr_us < ?"


def _upsert_sql(kind: type[Event]) -> str:
    cols = _UPSERTS.get(kind, ())
    return _FLIGHT.format(
        cols="".join(f", {c}" for c in cols),
        marks=", ?" * len(cols),
        updates="".join(f", {c} = excluded.{c}" for c in cols),
    )


def _values(event: Event) -> tuple[Any, ...]:
    """The row values of a flight event, in the order of :func:`_upsert_sql`."""
    assert not isinstance(event, WeatherObserved)
    head = (event.flight_key, event.carrier, event.origin, event.dest, us(event.sched_dep))
    if isinstance(event, FlightScheduled):
        return (*head, event.tailnum, event.distance, event.flight_number)
    if isinstance(event, FlightDeparted):
        return (*head, us(event.occurred_at), event.dep_delay_min)
    if isinstance(event, FlightArrived):
        return (*head, us(event.occurred_at), event.arr_delay_min)
    if isinstance(event, FlightCancelled):
        return (*head, 1)
    return head  # diverted: the flight is known, nothing else changes


class SqliteStore:
    """The embedded online store: one SQLite file in WAL mode.

    Args:
        path: The database file (created with its folder).
        read_only: Open for reading only (serving workers).
    """

    def __init__(self, path: Path, *, read_only: bool = False) -> None:
        self.path = path
        if read_only:
            path.parent.mkdir(parents=True, exist_ok=True)
            if not path.exists():  # a reader before the processor: an empty store
                SqliteStore(path).close()
            self._db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, check_same_thread=False)
            self._readers: threading.local | None = threading.local()
        else:
            self._readers = None
            path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(path, check_same_thread=False, timeout=30.0)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._add_flight_number()
            self._db.executescript(_SCHEMA)
        self._lock = threading.Lock()  # the writer's connection, shared by its threads

    def _add_flight_number(self) -> None:
        """A store written before flights had their number gets the column."""
        columns = [row[1] for row in self._db.execute("PRAGMA table_info(flights)")]
        if columns and "flight_number" not in columns:
            self._db.execute("ALTER TABLE flights ADD COLUMN flight_number INTEGER")

    def apply(self, events: Sequence[Event]) -> None:
        """Upsert every event's facts in one transaction."""
        newest = max((us(e.occurred_at) for e in events), default=None)
        with self._lock, self._db:
            for event in events:
                if isinstance(event, WeatherObserved):
                    values = [getattr(event, name) for name in WEATHER]
                    self._db.execute(
                        "INSERT OR REPLACE INTO weather VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        (event.origin, us(event.hour), *values),
                    )
                    continue
                self._db.execute(_upsert_sql(type(event)), _values(event))
                if isinstance(event, FlightScheduled) and event.distance is not None:
                    self._db.execute(
                        "INSERT OR IGNORE INTO routes VALUES (?, ?, ?)",
                        (event.origin, event.dest, event.distance),
                    )
            if newest is not None:
                self._db.execute(
                    "INSERT INTO meta VALUES ('watermark_us', ?) ON CONFLICT (name) DO UPDATE "
                    "SET value = max(value, excluded.value)",
                    (newest,),
                )

    def put_reference(
        self, planes: Iterable[Plane], routes: Iterable[tuple[str, str, float]]
    ) -> None:
        """Upsert the aircraft and route distances (from the warehouse's dimensions)."""
        with self._db:
            self._db.executemany(
                "INSERT OR REPLACE INTO planes VALUES (?, ?, ?, ?, ?)",
                [(p.tail, p.plane_year, p.manufacturer, p.seats, p.engine) for p in planes],
            )
            self._db.executemany("INSERT OR REPLACE INTO routes VALUES (?, ?, ?)", list(routes))

    def lookup(self, query: Lookup) -> Found:
        """Every fact ``query`` needs, read in one snapshot of the database.

        A reader gives each thread its own connection (SQLite runs the queries of several
        threads at once, without the interpreter's lock); the writer shares its one.
        """
        if self._readers is None:
            with self._lock:
                return self._snapshot(self._db, query)
        db = getattr(self._readers, "db", None)
        if db is None:
            db = self._readers.db = sqlite3.connect(
                f"file:{self.path}?mode=ro", uri=True, check_same_thread=False
            )
        return self._snapshot(db, query)

    def _snapshot(self, db: sqlite3.Connection, query: Lookup) -> Found:
        db.execute("BEGIN")
        try:
            return self._lookup(db, query)
        finally:
            db.execute("COMMIT")

    def _lookup(self, db: sqlite3.Connection, query: Lookup) -> Found:
        found = Found()
        lo, hi = query.first_us - LOOKBACK_US, query.last_us
        rows: set[tuple[Any, ...]] = set()
        for origin in query.origins:
            rows.update(db.execute(_FACTS_SQL, (origin, lo, hi)).fetchall())
        for dest in query.dests:
            rows.update(db.execute(_DEST_SQL, (dest, lo, hi)).fetchall())
        found.facts = facts_from_rows(rows)
        for origin, hour in query.weather:
            row = db.execute(
                f"SELECT {', '.join(WEATHER)} FROM weather WHERE origin = ? AND hour_us = ?",
                (origin, hour),
            ).fetchone()
            if row is not None:
                found.weather[(origin, hour)] = tuple(row)
        for key in query.schedules:
            carrier, origin, dest, sched, number = key
            if number >= 0:
                row = db.execute(
                    "SELECT tail, distance FROM flights WHERE carrier = ? AND flight_number = ? "
                    "AND origin = ? AND sched_us = ?",
                    (carrier, number, origin, sched),
                ).fetchone()
            else:  # several flights may match: the first by key, as Redis does
                row = db.execute(
                    "SELECT tail, distance FROM flights WHERE carrier = ? AND origin = ? AND "
                    "dest = ? AND sched_us = ? ORDER BY flight_key LIMIT 1",
                    (carrier, origin, dest, sched),
                ).fetchone()
            if row is not None:
                found.schedules[key] = (row[0], row[1])
        for tail in query.tails | _scheduled_tails(found):
            row = db.execute(
                f"SELECT {', '.join(PLANE)} FROM planes WHERE tail = ?", (tail,)
            ).fetchone()
            if row is not None:
                found.planes[tail] = tuple(row)
        for pair in query.routes:
            row = db.execute(
                "SELECT distance FROM routes WHERE origin = ? AND dest = ?", pair
            ).fetchone()
            if row is not None:
                found.routes[pair] = float(row[0])
        found.watermark_us = self._watermark(db)
        return found

    def watermark_us(self) -> int | None:
        """The newest event instant applied."""
        with self._lock:
            return self._watermark(self._db)

    @staticmethod
    def _watermark(db: sqlite3.Connection) -> int | None:
        row = db.execute("SELECT value FROM meta WHERE name = 'watermark_us'").fetchone()
        return None if row is None else int(row[0])

    def prune(self, before_us: int) -> int:
        """Drop flights scheduled, and weather observed, before ``before_us``."""
        with self._db:
            gone = self._db.execute("DELETE FROM flights WHERE sched_us < ?", (before_us,))
            weather = self._db.execute("DELETE FROM weather WHERE hour_us < ?", (before_us,))
        return int(gone.rowcount) + int(weather.rowcount)

    def clear(self) -> None:
        """Forget every fact, the reference data kept, and the watermark."""
        with self._lock, self._db:
            for table in ("flights", "weather", "meta"):
                self._db.execute(f"DELETE FROM {table}")

    def close(self) -> None:
        """Close the database."""
        self._db.close()


def _scheduled_tails(found: Found) -> frozenset[str]:
    """The aircraft of the scheduled flights found (a request may not name its own)."""
    return frozenset(tail for tail, _ in found.schedules.values() if tail)


def facts_from_rows(rows: Iterable[Sequence[Any]]) -> FlightFacts:
    """:class:`FlightFacts` from rows of (key, origin, dest, carrier, sched, dep, dep delay,
    arr, arr delay, cancelled); None instants and delays are missing."""
    rows = sorted(rows, key=lambda r: int(r[0]))
    if not rows:
        return empty_facts()
    cols = list(zip(*rows, strict=True))

    def instants(i: int) -> np.ndarray:
        return np.asarray([NONE_US if v is None else int(v) for v in cols[i]], dtype=np.int64)

    def delays(i: int) -> np.ndarray:
        return np.asarray([np.nan if v is None else float(v) for v in cols[i]], dtype=np.float64)

    return FlightFacts(
        flight_key=np.asarray(cols[0], dtype=np.int64),
        origin=np.asarray(cols[1], dtype=object),
        dest=np.asarray(cols[2], dtype=object),
        carrier=np.asarray(cols[3], dtype=object),
        sched_us=np.asarray(cols[4], dtype=np.int64),
        dep_us=instants(5),
        dep_delay=delays(6),
        arr_us=instants(7),
        arr_delay=delays(8),
        cancelled=np.asarray([bool(v) for v in cols[9]], dtype=np.bool_),
    )
