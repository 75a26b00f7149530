"""A small installation with data in every store that retention and erasure sweep.

The broken small source set (three days of January and three of November 2013, with rows
that fail checks: the first flight of the year's aircraft, N14228, has quarantined flights
and a malformed source line) goes through the pipeline; then, through the product's own
writers: a payload log with old and recent entries of two clients (one entry sends the
aircraft's pseudonym as an input), the outcome log of that day's flights, the flight and
weather events of 2013-01-01 with the online store they feed, the monitoring consumer's
facts, two training snapshots and a registered version in staging trained on one of them.
"""

from __future__ import annotations

import shutil
from contextlib import closing
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from vigie.config import Settings
from vigie.events.outcomes import OutcomeEvent, OutcomeLog, new_event_id
from vigie.events.payload_entry import PayloadSink
from vigie.events.payload_log import open_sink
from vigie.events.segments import SegmentSink
from vigie.events.stream import open_event_stream
from vigie.features.processor import load_reference, open_store
from vigie.governance.pseudonymize import Pseudonymizer
from vigie.monitoring.consumer import ingest
from vigie.pipelines.run import run_pipeline
from vigie.registry import REQUIRED_ROLES, Registry
from vigie.replay.events import load_schedule
from vigie.training.snapshot import build_snapshot
from vigie.training.spec import load_spec
from vigie.warehouse.connection import connect

ROOT = Path(__file__).resolve().parents[3]

#: The subjects of the tests: an aircraft of the source data, and a client of the service.
TAIL, CLIENT, OTHER_CLIENT = "N14228", "acme-app", "other-app"

#: The day the tests measure ages to.
AS_OF = datetime.now(UTC).date()
OLD = datetime.combine(AS_OF - timedelta(days=400), datetime.min.time(), tzinfo=UTC)
RECENT = datetime.combine(AS_OF - timedelta(days=10), datetime.min.time(), tzinfo=UTC)


@dataclass(frozen=True)
class Home:
    """The installation and what the tests look for in it.

    Attributes:
        settings: Its settings.
        tail: The aircraft's pseudonym.
        client: The client's pseudonym.
        aircraft_flights: The aircraft's flights (flight_key) on 2013-01-01..03.
        other_flight: A flight of another aircraft.
        live_snapshot: The hash of the snapshot the staging version was trained on.
        spare_snapshot: The hash of a snapshot no version was trained on.
    """

    settings: Settings
    tail: str
    client: str
    aircraft_flights: list[int]
    other_flight: int
    live_snapshot: str
    spare_snapshot: str

    def query(self, statement: str, params: Any = ()) -> list[tuple[Any, ...]]:
        with closing(connect(self.settings.resolved_warehouse_url)) as warehouse:
            return warehouse.query(statement, params)


def build_home(settings: Settings) -> Home:
    """Fill every store of ``settings``' installation (see the module's docstring)."""
    assert run_pipeline(settings).record.status == "success"
    pseudonymizer = Pseudonymizer.from_settings(settings)
    tail = pseudonymizer.pseudonymize(TAIL)
    home_flights = flights_of(settings, tail)
    other = _other_flight(settings, tail)
    _payload(settings, pseudonymizer, tail, home_flights[0], other)
    _outcomes(settings, [*home_flights, other])
    _events(settings)
    ingest(settings)
    live, spare = _snapshots(settings)
    return Home(
        settings,
        tail,
        pseudonymizer.pseudonymize(CLIENT),
        home_flights,
        other,
        live,
        spare,
    )


def flights_of(settings: Settings, tail: str) -> list[int]:
    """The flights of the aircraft ``tail`` in the warehouse."""
    with closing(connect(settings.resolved_warehouse_url)) as warehouse:
        rows = warehouse.query(
            "SELECT f.flight_key FROM fact_flight f JOIN dim_plane p ON p.plane_key = f.plane_key "
            "WHERE p.tailnum_pseudonym = ? ORDER BY f.flight_key",
            (tail,),
        )
    return [int(r[0]) for r in rows]


def _other_flight(settings: Settings, tail: str) -> int:
    with closing(connect(settings.resolved_warehouse_url)) as warehouse:
        rows = warehouse.query(
            "SELECT min(f.flight_key) FROM fact_flight f JOIN dim_plane p "
            "ON p.plane_key = f.plane_key WHERE p.tailnum_pseudonym <> ? AND p.plane_key <> 0 "
            "AND f.flight_date = ?",
            (tail, date(2013, 1, 1)),
        )
    return int(rows[0][0])


def entry(i: int, caller: str, at: datetime, ids: list[int], **inputs: list[Any]) -> dict[str, Any]:
    """A payload entry as the serving path logs it (caller already pseudonymised)."""
    return {
        "request_id": f"r{i}",
        "time": at.isoformat(),
        "protocol": "v2-rest",
        "model": "flight_delay",
        "version": "1",
        "route": "production",
        "rows": len(ids),
        "row_ids": [str(k) for k in ids],
        "inputs": {"distance": [1400.0] * len(ids), **inputs},
        "outputs": {"probability": [0.25] * len(ids)},
        "caller": caller,
        "latency_ms": 1.0,
        "seq": i,
        "writer": "w",
        "logged_at": at.isoformat(),
    }


def _payload(
    settings: Settings, pseudonymizer: Pseudonymizer, tail: str, flight: int, other: int
) -> None:
    """Old entries in one batch (a segment of their own), recent ones in another."""
    client, other_client = (pseudonymizer.pseudonymize(c) for c in (CLIENT, OTHER_CLIENT))
    old = [
        entry(0, client, OLD, [flight, other], plane_year=[2004.0, 1999.0], tailnum=[tail, "p_0"]),
        entry(1, other_client, OLD, [other]),
    ]
    recent = [entry(2, client, RECENT, [other]), entry(3, other_client, RECENT, [flight])]
    # locally, one segment per batch (a size limit every batch passes)
    sink: PayloadSink = (
        SegmentSink(settings.payload_dir, max_bytes=1)
        if settings.stream_url is None
        else open_sink(settings)
    )
    try:
        sink.write(old)
        sink.write(recent)
    finally:
        sink.close()


def _outcomes(settings: Settings, flights: list[int]) -> None:
    log = OutcomeLog(settings)
    at = datetime(2013, 1, 1, 18, tzinfo=UTC)
    log.emit([OutcomeEvent(new_event_id(), key, at, 20, True, "test") for key in flights])
    log.close()


def _events(settings: Settings) -> None:
    """The events of 2013-01-01 (and the day before) into the stream and the online store."""
    schedule = load_schedule(settings, date(2013, 1, 1), date(2013, 1, 1))
    events = [schedule.event(i) for i in range(len(schedule))]
    stream = open_event_stream(settings)
    try:
        stream.publish(events)
    finally:
        stream.close()
    store = open_store(settings)
    try:
        load_reference(settings, store)
        store.apply(events)
    finally:
        store.close()


def _snapshots(settings: Settings) -> tuple[str, str]:
    """Two snapshots; a version trained on the first, in staging."""
    spec = load_spec(ROOT / "models", "flight_delay")
    live = build_snapshot(settings, spec, date(2013, 1, 1), date(2013, 1, 2))
    spare = build_snapshot(settings, spec, date(2013, 1, 1), date(2013, 1, 3))
    files = settings.home / "artifact-files"
    files.mkdir()
    for role in REQUIRED_ROLES:
        (files / role).write_text(f"{role} of a test version\n")
    registry = Registry(settings)
    version = registry.register(
        "flight_delay",
        {role: files / role for role in REQUIRED_ROLES},
        metadata={"snapshot_hash": live.content_hash, "code_version": "test"},
        reason="governance test",
    )
    registry.promote("flight_delay", version.version, to="staging", report=None, reason="test")
    shutil.rmtree(files)
    return live.content_hash, spare.content_hash
