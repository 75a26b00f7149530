"""The monitoring consumer: payload log and outcome log into the warehouse, idempotently.

Each pass reads each log from the position this consumer last committed (kept in the
warehouse table ``consumer_checkpoint``, migration 0003) in batches, turns the entries
into rows (:mod:`vigie.monitoring.ingest_rows`) and, in one transaction per batch,
inserts the rows whose primary key is new (``Warehouse.insert_new``) and appends the new
position. So a crash between two batches loses nothing and redoes nothing, and reading a
log again from the start (``from_start``) adds nothing that is there already: delivery
is at least once, the warehouse's keys make it count once.

Bad input never stops the consumer; each is counted in the :class:`IngestReport` (and
logged) and the rest goes on:

- a line or stream entry that does not decode (corrupted, truncated): ``unreadable``;
- an entry or event with a missing or malformed field: ``invalid`` (by reason);
- an outcome whose flight is not in ``fact_flight``: quarantined (``quarantine`` table,
  ``source_table`` ``outcome_events``, check ``unknown_flight``), ``unknown_flight``;
- a second outcome for a flight: ``outcomes_duplicate`` (the first one is kept);
- a prediction already in the warehouse (redelivered, or the log read again):
  ``predictions_duplicate``.
"""

from __future__ import annotations

import collections
import logging
import secrets
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from vigie.config import Settings
from vigie.errors import ErrorCode, VigieError
from vigie.events.outcomes import OUTCOME_STREAM, OutcomeEvent
from vigie.events.payload_entry import PayloadEntry
from vigie.events.payload_log import DEFAULT_STREAM, read_entries
from vigie.governance.audit import AuditLog, Outcome
from vigie.monitoring.ingest_rows import outcome_rows, prediction_rows
from vigie.warehouse.connection import Warehouse, connect
from vigie.warehouse.migrations import migrate

#: Consumer name of ``vigie ingest`` (a checkpoint per name and log).
DEFAULT_CONSUMER = "warehouse"
#: Most batches per log in one pass of :meth:`Consumer.follow` before the warehouse is
#: closed again for a moment.
FOLLOW_PASS_BATCHES = 10
#: Pause between two passes of :meth:`Consumer.follow` even with work left, so that other
#: processes waiting for an embedded DuckDB file (a retraining, the registry) get it.
FOLLOW_GAP_S = 0.5

_IN_CHUNK = 500
_log = logging.getLogger(__name__)


@dataclass
class IngestReport:
    """What an ingest run did, summed over its batches."""

    run_id: str
    payload_entries: int = 0
    predictions_inserted: int = 0
    predictions_duplicate: int = 0
    outcome_events: int = 0
    outcomes_inserted: int = 0
    outcomes_duplicate: int = 0
    unknown_flight: int = 0
    unreadable: int = 0
    invalid: collections.Counter[str] = field(default_factory=collections.Counter)
    unregistered_versions: set[str] = field(default_factory=set)
    batches: int = 0
    positions: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """JSON-ready (audit log, ``--json``)."""
        return {
            "run_id": self.run_id,
            "payload_entries": self.payload_entries,
            "predictions_inserted": self.predictions_inserted,
            "predictions_duplicate": self.predictions_duplicate,
            "outcome_events": self.outcome_events,
            "outcomes_inserted": self.outcomes_inserted,
            "outcomes_duplicate": self.outcomes_duplicate,
            "unknown_flight": self.unknown_flight,
            "unreadable": self.unreadable,
            "invalid": dict(self.invalid),
            "unregistered_versions": sorted(self.unregistered_versions),
            "batches": self.batches,
            "positions": dict(self.positions),
        }

    @property
    def problems(self) -> int:
        """Entries counted as bad input (unreadable, invalid, unknown flight)."""
        return self.unreadable + sum(self.invalid.values()) + self.unknown_flight


@dataclass(frozen=True)
class _Source:
    kind: str  # payload | outcomes
    name: str  # checkpoint key, e.g. payload@segments
    stream: str  # the Redis stream, when the logs are in Redis


class Consumer:
    """Loads the payload and outcome logs of ``settings`` into its warehouse.

    Args:
        settings: The logs (``stream_url``, ``payload_dir``, ``outcomes_dir``) and the
            warehouse.
        name: The consumer's name (its checkpoints).
        batch: Most log entries per transaction.
        from_start: Read both logs from their start instead of from the checkpoints.
        streams: The payload and outcome Redis streams (when ``stream_url`` is Redis).
    """

    def __init__(
        self,
        settings: Settings,
        *,
        name: str = DEFAULT_CONSUMER,
        batch: int = 1000,
        from_start: bool = False,
        streams: tuple[str, str] = (DEFAULT_STREAM, OUTCOME_STREAM),
    ) -> None:
        if batch < 1:
            raise VigieError(ErrorCode.INVALID_INPUT, "batch must be at least 1", field="batch")
        self._settings = settings
        self._name = name
        self._batch = batch
        self._fresh = {"payload", "outcomes"} if from_start else set()
        self._sources = (
            _Source("payload", _source_name(settings, "payload", streams[0]), streams[0]),
            _Source("outcomes", _source_name(settings, "outcomes", streams[1]), streams[1]),
        )
        self.report = IngestReport(
            f"ingest-{datetime.now(UTC):%Y%m%dT%H%M%S}-{secrets.token_hex(3)}"
        )
        self._registered: set[int] = set()

    def run_once(
        self, *, max_batches: int | None = None, stop: threading.Event | None = None
    ) -> int:
        """Read both logs to their current end (or ``max_batches`` batches of each, or
        until ``stop`` is set between two batches); returns the entries processed.

        Raises:
            VigieError: WAREHOUSE_UNAVAILABLE, MIGRATION_MISMATCH, UNAVAILABLE (Redis).
        """
        warehouse = connect(self._settings.resolved_warehouse_url)
        try:
            migrate(warehouse)
            total = 0
            for source in self._sources:
                batches = 0
                while max_batches is None or batches < max_batches:
                    if stop is not None and stop.is_set():
                        return total
                    count = self._batch_of(warehouse, source)
                    if not count:
                        break
                    total += count
                    batches += 1
            return total
        finally:
            warehouse.close()

    def follow(self, stop: threading.Event, *, poll_s: float = 1.0) -> None:
        """Keep reading until ``stop`` is set, polling every ``poll_s`` once caught up.

        The warehouse is opened for each pass only, of at most ``FOLLOW_PASS_BATCHES``
        batches per log, with a short pause between passes even when work is left (an
        embedded DuckDB file is free for others in between); a pass that cannot reach it or
        Redis is retried.
        """
        while not stop.is_set():
            try:
                processed = self.run_once(max_batches=FOLLOW_PASS_BATCHES, stop=stop)
            except VigieError as err:
                if err.code not in {ErrorCode.WAREHOUSE_UNAVAILABLE, ErrorCode.UNAVAILABLE}:
                    raise
                _log.warning("ingest pass failed, retrying in %.1f s: %s", poll_s, err)
                processed = 0
            stop.wait(poll_s if not processed else min(poll_s, FOLLOW_GAP_S))

    def _batch_of(self, warehouse: Warehouse, source: _Source) -> int:
        position = self._position(warehouse, source)
        skipped: list[str] = []
        entries = read_entries(
            self._settings,
            after=position,
            limit=self._batch,
            stream=source.stream,
            folder=(
                self._settings.payload_dir
                if source.kind == "payload"
                else self._settings.outcomes_dir
            ),
            on_skip=lambda offset, _reason: skipped.append(offset),
        )
        offsets = [e.offset for e in entries] + skipped
        if not offsets:
            return 0
        furthest = max(offsets, key=_order)
        with warehouse.transaction():
            if source.kind == "payload":
                self._load_predictions(warehouse, entries)
            else:
                self._load_outcomes(warehouse, entries, source.name)
            self._commit(warehouse, source, furthest, len(offsets))
        self.report.unreadable += len(skipped)
        self.report.batches += 1
        self.report.positions[source.name] = furthest
        return len(offsets)

    def _load_predictions(self, warehouse: Warehouse, entries: list[PayloadEntry]) -> None:
        rows = prediction_rows(entries)
        table = rows.table()
        inserted = warehouse.insert_new("fact_prediction", table, ["prediction_id"])
        report = self.report
        report.payload_entries += len(entries)
        report.predictions_inserted += inserted
        report.predictions_duplicate += table.num_rows - inserted + rows.repeated
        report.invalid.update(rows.invalid)
        self._check_registered(warehouse, rows.version_keys)

    def _load_outcomes(self, warehouse: Warehouse, entries: list[PayloadEntry], where: str) -> None:
        events = []
        for entry in entries:
            try:
                events.append(OutcomeEvent.from_json(entry.data, entry.offset))
            except ValueError as err:
                _log.warning("invalid outcome event at %s: %s", entry.offset, err)
                self.report.invalid[f"outcome: {err}"] += 1
        rows = outcome_rows(events)
        known = _known_flights(warehouse, rows.keys())
        table = rows.outcome_table(known)
        inserted = warehouse.insert_new("fact_outcome", table, ["flight_key"])
        quarantine = rows.quarantine_table(
            known, partition=where, run_id=self.report.run_id, at=datetime.now(UTC)
        )
        warehouse.insert_new("quarantine", quarantine, ["quarantine_id"])
        report = self.report
        report.outcome_events += len(entries)
        report.outcomes_inserted += inserted
        report.outcomes_duplicate += table.num_rows - inserted + rows.repeated
        report.unknown_flight += quarantine.num_rows

    def _check_registered(self, warehouse: Warehouse, keys: dict[int, str]) -> None:
        """Count versions without their ``dim_model_version`` row (the label join needs it)."""
        for key, name in keys.items():
            if key in self._registered:
                continue
            found = warehouse.query(
                "SELECT 1 FROM dim_model_version WHERE model_version_key = ?", (key,)
            )
            if found:
                self._registered.add(key)
            elif name not in self.report.unregistered_versions:
                _log.warning(
                    "%s has no dim_model_version row in this warehouse (Registry."
                    "sync_warehouse adds it); the label join leaves its predictions out",
                    name,
                )
                self.report.unregistered_versions.add(name)

    def _position(self, warehouse: Warehouse, source: _Source) -> str | None:
        if source.kind in self._fresh:
            return None
        rows = warehouse.query(
            "SELECT position FROM consumer_checkpoint WHERE consumer = ? AND source = ? "
            "ORDER BY checkpoint_seq DESC LIMIT 1",
            (self._name, source.name),
        )
        return str(rows[0][0]) if rows else None

    def _commit(self, warehouse: Warehouse, source: _Source, position: str, entries: int) -> None:
        last = warehouse.query(
            "SELECT max(checkpoint_seq) FROM consumer_checkpoint WHERE consumer = ? AND source = ?",
            (self._name, source.name),
        )
        warehouse.execute(
            "INSERT INTO consumer_checkpoint (consumer, source, checkpoint_seq, position, "
            "entries, run_id, committed_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                self._name,
                source.name,
                int(last[0][0] or 0) + 1,
                position,
                entries,
                self.report.run_id,
                datetime.now(UTC),
            ),
        )
        self._fresh.discard(source.kind)


def _source_name(settings: Settings, kind: str, stream: str) -> str:
    """The checkpoint key of a log: its offsets mean nothing in another kind of log."""
    return f"{kind}@segments" if settings.stream_url is None else f"{kind}@redis:{stream}"


def _order(offset: str) -> tuple[int, int]:
    """Sort key of a log offset: ``<segment>:<position>`` or a Redis id ``<ms>-<n>``."""
    first, _, second = offset.replace("-", ":").partition(":")
    return int(first), int(second)


def _known_flights(warehouse: Warehouse, keys: list[int]) -> set[int]:
    known: set[int] = set()
    for start in range(0, len(keys), _IN_CHUNK):
        chunk = keys[start : start + _IN_CHUNK]
        marks = ", ".join("?" * len(chunk))
        rows = warehouse.query(
            f"SELECT flight_key FROM fact_flight WHERE flight_key IN ({marks})", chunk
        )
        known.update(int(row[0]) for row in rows)
    return known


def ingest(
    settings: Settings,
    *,
    batch: int = 1000,
    name: str = DEFAULT_CONSUMER,
    from_start: bool = False,
    follow: bool = False,
    stop: threading.Event | None = None,
    poll_s: float = 1.0,
    streams: tuple[str, str] = (DEFAULT_STREAM, OUTCOME_STREAM),
) -> IngestReport:
    """Load both logs into the warehouse (once, or until ``stop`` with ``follow``); audited.

    Raises:
        VigieError: INVALID_INPUT (batch); WAREHOUSE_UNAVAILABLE, MIGRATION_MISMATCH and
            UNAVAILABLE outside ``follow`` (audited as a failure).
    """
    consumer = Consumer(settings, name=name, batch=batch, from_start=from_start, streams=streams)
    audit = AuditLog(settings.audit_log_path)
    inputs = {"consumer": name, "batch": batch, "from_start": from_start, "follow": follow}
    try:
        if follow:
            consumer.follow(stop or threading.Event(), poll_s=poll_s)
        else:
            consumer.run_once()
    except VigieError as err:
        details = consumer.report.to_json() | {"error": err.to_dict()}
        audit.append(
            settings.actor,
            "monitoring.ingest",
            name,
            Outcome.FAILURE,
            inputs=inputs,
            details=details,
        )
        raise
    report = consumer.report
    outcome = Outcome.PARTIAL if report.problems else Outcome.SUCCESS
    audit.append(
        settings.actor, "monitoring.ingest", name, outcome, inputs=inputs, details=report.to_json()
    )
    return report
