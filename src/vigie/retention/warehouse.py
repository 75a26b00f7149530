"""Retention and erasure in the warehouse (DuckDB or PostgreSQL, the same statements).

Retention deletes the rows of ``fact_prediction`` (age: ``predicted_at``), ``fact_outcome``
(``observed_at``) and ``quarantine`` (the month of the record's source partition for the
monthly tables, else ``quarantined_at``) past the retention of their store. The star
schema's flights and dimensions are the reference data and are not swept.

Erasure of an aircraft deletes its ``dim_plane`` row and points its flights at the unknown
aircraft (``plane_key`` 0): a flight's other columns are not about the aircraft, and every
flight stays in the facts. Its predictions lose its pseudonym and the aircraft's
attributes from their features, and its quarantined records are deleted (a ``planes``
record is the aircraft's own) or lose its values (its pseudonym, and its clear tail number
in the text of a source line that was not a row). Erasure of a client nulls the
``client_pseudonym`` of its predictions.

Both need a role that may DELETE and UPDATE (the warehouse's owner), not the loader role.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime

from vigie.features.store import PLANE
from vigie.governance.erasure import (
    ErasureReport,
    SubjectKind,
    Target,
    redact_json_text,
    redact_text,
    redact_value,
)
from vigie.governance.policy import DataPolicy
from vigie.governance.retention import RetentionReport, held_tables, month_after, parse_instant
from vigie.pipelines.transform import UNKNOWN_CODE, UNKNOWN_KEY
from vigie.warehouse.connection import Warehouse

#: Fact tables swept by retention, and the column holding a row's event time.
TIMED_FACTS = {"fact_prediction": "predicted_at", "fact_outcome": "observed_at"}

_PARTITION = re.compile(r"year_month=(\d{4}-\d{2})")
_CHUNK = 500


def utc_session(warehouse: Warehouse) -> None:
    """Make the session's time zone UTC, so months are counted in UTC on both engines."""
    warehouse.execute("SET TimeZone = 'UTC'")


def retain_warehouse(warehouse: Warehouse, policy: DataPolicy, report: RetentionReport) -> None:
    """Delete the fact and quarantine rows past their retention (one transaction)."""
    utc_session(warehouse)
    doomed: list[tuple[str, str, datetime]] = []
    for table, column in TIMED_FACTS.items():
        sweep = report.start(policy, table, "row")
        rows = warehouse.query(
            f"SELECT EXTRACT(YEAR FROM {column}), EXTRACT(MONTH FROM {column}), count(*) "
            f"FROM {table} WHERE {column} < ? GROUP BY 1, 2",
            (sweep.cutoff,),
        )
        for year, month, count in rows:
            sweep.count_month(f"{int(year):04d}-{int(month):02d}", int(count))
        if sweep.deleted:
            doomed.append((table, column, sweep.cutoff))
    quarantined = _expired_quarantine(warehouse, policy, report)
    if report.dry_run:
        return
    with warehouse.transaction():
        for table, column, cutoff in doomed:
            warehouse.execute(f"DELETE FROM {table} WHERE {column} < ?", (cutoff,))
        _delete_in(warehouse, "quarantine", "quarantine_id", quarantined)


def _expired_quarantine(
    warehouse: Warehouse, policy: DataPolicy, report: RetentionReport
) -> list[int]:
    """The quarantine rows past the retention of their source table, counted in the report."""
    rows = warehouse.query(
        "SELECT quarantine_id, source_table, source_partition, quarantined_at FROM quarantine"
    )
    tables = held_tables(policy, "quarantine")
    tables += sorted({str(row[1]) for row in rows} - set(tables))
    sweeps = {t: report.start(policy, "quarantine", "row", table=t) for t in tables}
    doomed = []
    for quarantine_id, table, partition, quarantined_at in rows:
        sweep = sweeps[str(table)]
        month = _PARTITION.search(str(partition))
        if month is not None and (end := month_after(month.group(1))) is not None:
            if end <= sweep.cutoff:
                doomed.append(int(quarantine_id))
                sweep.count_month(month.group(1), 1)
            continue
        instant = parse_instant(quarantined_at)
        if instant is not None and instant < sweep.cutoff:
            doomed.append(int(quarantine_id))
            sweep.count(instant)
    return doomed


def _delete_in(warehouse: Warehouse, table: str, key: str, values: list[int] | list[str]) -> None:
    for start in range(0, len(values), _CHUNK):
        chunk = values[start : start + _CHUNK]
        marks = ", ".join("?" * len(chunk))
        warehouse.execute(f"DELETE FROM {table} WHERE {key} IN ({marks})", chunk)


@dataclass
class Aircraft:
    """An aircraft as the warehouse links it: its dimension row and its flights.

    Attributes:
        plane_key: Its ``dim_plane`` key; None when the warehouse does not know it (any
            more).
        flights: The ``flight_key`` of every flight it flew.
    """

    plane_key: int | None = None
    flights: list[int] = field(default_factory=list)


def find_aircraft(warehouse: Warehouse, target: Target) -> Aircraft:
    """The aircraft of a ``tailnum`` subject (an empty one for any other subject)."""
    if target.kind is not SubjectKind.TAILNUM:
        return Aircraft()
    rows = warehouse.query(
        "SELECT plane_key FROM dim_plane WHERE tailnum_pseudonym = ? AND plane_key <> ?",
        (target.pseudonym, UNKNOWN_KEY),
    )
    if not rows:
        return Aircraft()
    key = int(rows[0][0])
    flights = warehouse.query("SELECT flight_key FROM fact_flight WHERE plane_key = ?", (key,))
    return Aircraft(key, sorted(int(row[0]) for row in flights))


def erase_warehouse(
    warehouse: Warehouse, target: Target, aircraft: Aircraft, report: ErasureReport
) -> None:
    """Take the subject out of the warehouse (one transaction)."""
    if report.dry_run:
        _erase(warehouse, target, aircraft, report)
        return
    with warehouse.transaction():
        _erase(warehouse, target, aircraft, report)


def _erase(warehouse: Warehouse, target: Target, aircraft: Aircraft, report: ErasureReport) -> None:
    write = not report.dry_run
    if target.kind is SubjectKind.CLIENT:
        where = "FROM fact_prediction WHERE client_pseudonym = ?"
        count = int(warehouse.query(f"SELECT count(*) {where}", (target.pseudonym,))[0][0])
        if write and count:
            warehouse.execute(
                "UPDATE fact_prediction SET client_pseudonym = NULL WHERE client_pseudonym = ?",
                (target.pseudonym,),
            )
        report.add("fact_prediction", "redacted", count)
        return
    _erase_quarantine(warehouse, target, report)
    _erase_predictions(warehouse, target, set(aircraft.flights), report)
    report.add("fact_flight", "unlinked", len(aircraft.flights))
    report.add("dim_plane", "deleted", 0 if aircraft.plane_key is None else 1)
    if write and aircraft.plane_key is not None:
        _ensure_unknown_plane(warehouse)
        warehouse.execute(
            "UPDATE fact_flight SET plane_key = ? WHERE plane_key = ?",
            (UNKNOWN_KEY, aircraft.plane_key),
        )
        warehouse.execute("DELETE FROM dim_plane WHERE plane_key = ?", (aircraft.plane_key,))


def _ensure_unknown_plane(warehouse: Warehouse) -> None:
    """The unknown aircraft the flights are pointed at (every pipeline run loads it)."""
    if warehouse.query("SELECT 1 FROM dim_plane WHERE plane_key = ?", (UNKNOWN_KEY,)):
        return
    warehouse.execute(
        "INSERT INTO dim_plane (plane_key, tailnum_pseudonym, is_inferred, is_corrected, "
        "run_id, loaded_at) VALUES (?, ?, FALSE, FALSE, 'erasure', ?)",
        (UNKNOWN_KEY, UNKNOWN_CODE, datetime.now(UTC)),
    )


def _erase_quarantine(warehouse: Warehouse, target: Target, report: ErasureReport) -> None:
    """Delete the aircraft's own quarantined record; take its values out of the others."""
    values = target.values(raw=True)
    like = " OR ".join("record LIKE ? OR reasons LIKE ? OR record_key LIKE ?" for _ in values)
    rows = warehouse.query(
        f"SELECT quarantine_id, source_table, record_key, record, reasons FROM quarantine "
        f"WHERE {like}",
        [f"%{value}%" for value in values for _ in range(3)],
    )
    deleted, updates = [], []
    for quarantine_id, table, record_key, record, reasons in rows:
        if table == "planes" and record_key == target.pseudonym:
            deleted.append(int(quarantine_id))
            continue
        key, in_key = redact_text(str(record_key), values)
        new_record, in_record = redact_json_text(str(record), values)
        new_reasons, in_reasons = redact_json_text(str(reasons), values)
        if in_key + in_record + in_reasons:
            updates.append((key, new_record, new_reasons, int(quarantine_id)))
    report.add("quarantine", "deleted", len(deleted))
    report.add("quarantine", "redacted", len(updates))
    if report.dry_run:
        return
    _delete_in(warehouse, "quarantine", "quarantine_id", deleted)
    for values_of_row in updates:
        warehouse.execute(
            "UPDATE quarantine SET record_key = ?, record = ?, reasons = ? WHERE quarantine_id = ?",
            values_of_row,
        )


def _erase_predictions(
    warehouse: Warehouse, target: Target, flights: set[int], report: ErasureReport
) -> None:
    """Predictions lose the aircraft's pseudonym, and those of its flights its attributes."""
    rows = warehouse.query(
        "SELECT prediction_id, flight_key, features FROM fact_prediction WHERE features LIKE ?",
        (f"%{target.pseudonym}%",),
    )
    keys = sorted(flights)
    for start in range(0, len(keys), _CHUNK):
        chunk = keys[start : start + _CHUNK]
        rows += warehouse.query(
            "SELECT prediction_id, flight_key, features FROM fact_prediction "
            f"WHERE flight_key IN ({', '.join('?' * len(chunk))})",
            chunk,
        )
    updates = {}
    for prediction_id, flight_key, features in rows:
        rewritten = _without_aircraft(str(features), target, flight_key in flights)
        if rewritten is not None:
            updates[str(prediction_id)] = rewritten
    report.add("fact_prediction", "redacted", len(updates))
    if not report.dry_run:
        for prediction_id, features in updates.items():
            warehouse.execute(
                "UPDATE fact_prediction SET features = ? WHERE prediction_id = ?",
                (features, prediction_id),
            )


def _without_aircraft(features: str, target: Target, its_flight: bool) -> str | None:
    """The features JSON without the aircraft; None when it held nothing of it."""
    try:
        document = json.loads(features)
    except ValueError:
        return None
    redacted, found = redact_value(document, target.values())
    if its_flight and isinstance(redacted, dict):
        present = [name for name in PLANE if redacted.get(name) is not None]
        redacted.update(dict.fromkeys(present))
        found += len(present)
    return json.dumps(redacted, separators=(",", ":"), allow_nan=False) if found else None
