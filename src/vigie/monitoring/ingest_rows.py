"""Log entries to warehouse rows: payload entries to ``fact_prediction``, outcome events to
``fact_outcome`` (or ``quarantine``). Pure functions; :mod:`vigie.monitoring.consumer`
reads the logs and writes the rows.

A payload entry gives one prediction per row: ``prediction_id`` is
``<request_id>:<row index>`` (``:shadow`` appended for a shadow copy, which the data plane
logs under the request's own id), ``model_version_key`` the registry's hash of
``(model, version)``, ``flight_key`` the row's id from ``row_ids`` when it is a 64-bit
integer, ``prediction`` the row's value of the entry's first (primary) output.
"""

from __future__ import annotations

import collections
import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa

from vigie.events.outcomes import OutcomeEvent
from vigie.events.payload_entry import PayloadEntry
from vigie.registry import model_version_key

#: ``quarantine.source_table`` of outcome events, and the check an unknown flight fails.
OUTCOME_TABLE = "outcome_events"
UNKNOWN_FLIGHT = "unknown_flight"

_INT64 = (-(1 << 63), (1 << 63) - 1)
_KEY_MASK = (1 << 63) - 1

PREDICTION_SCHEMA = pa.schema(
    [
        ("prediction_id", pa.string()),
        ("model_version_key", pa.int64()),
        ("flight_key", pa.int64()),
        ("predicted_at", pa.timestamp("us", tz="UTC")),
        ("protocol", pa.string()),
        ("route", pa.string()),
        ("prediction", pa.float64()),
        ("features", pa.string()),
        ("client_pseudonym", pa.string()),
        ("latency_ms", pa.float64()),
    ]
)
OUTCOME_SCHEMA = pa.schema(
    [
        ("flight_key", pa.int64()),
        ("observed_at", pa.timestamp("us", tz="UTC")),
        ("arr_delay_min", pa.int32()),
        ("is_delayed_15", pa.bool_()),
        ("source", pa.string()),
    ]
)
QUARANTINE_SCHEMA = pa.schema(
    [
        ("quarantine_id", pa.int64()),
        ("source_table", pa.string()),
        ("record_key", pa.string()),
        ("source_partition", pa.string()),
        ("checks", pa.string()),
        ("reasons", pa.string()),
        ("record", pa.string()),
        ("run_id", pa.string()),
        ("quarantined_at", pa.timestamp("us", tz="UTC")),
    ]
)


@dataclass
class Predictions:
    """The prediction rows of a batch of payload entries, and what was wrong with others.

    Attributes:
        rows: Column name to values, in :data:`PREDICTION_SCHEMA` order.
        invalid: Reason to the number of entries (or rows) left out for it.
        repeated: Rows whose ``prediction_id`` came earlier in the batch (first kept).
        version_keys: ``model_version_key`` to ``model/version`` of every row.
    """

    rows: dict[str, list[Any]] = field(
        default_factory=lambda: {name: [] for name in PREDICTION_SCHEMA.names}
    )
    invalid: collections.Counter[str] = field(default_factory=collections.Counter)
    repeated: int = 0
    version_keys: dict[int, str] = field(default_factory=dict)
    _seen: set[str] = field(default_factory=set)

    def table(self) -> pa.Table:
        """The rows as an Arrow table of :data:`PREDICTION_SCHEMA`."""
        return pa.table(self.rows, schema=PREDICTION_SCHEMA)


def prediction_rows(entries: Iterable[PayloadEntry]) -> Predictions:
    """The ``fact_prediction`` rows of payload entries; bad entries are counted, not raised."""
    result = Predictions()
    for entry in entries:
        try:
            _add_entry(result, entry.data)
        except ValueError as err:
            result.invalid[str(err)] += 1
    return result


def _add_entry(result: Predictions, data: Mapping[str, Any]) -> None:
    request_id = _text(data, "request_id")
    model, version, route = _text(data, "model"), _text(data, "version"), _text(data, "route")
    protocol = _text(data, "protocol")
    predicted_at = _instant(data, "time")
    rows = data.get("rows")
    if isinstance(rows, bool) or not isinstance(rows, int) or rows < 1:
        raise ValueError("field 'rows' is missing or not a positive integer")
    inputs, primary = _columns(data, "inputs", rows), _primary_output(data, rows)
    ids = data.get("row_ids")
    if ids is not None and (not isinstance(ids, list) or len(ids) != rows):
        raise ValueError("field 'row_ids' is not a list of one id per row")
    key = model_version_key(model, version)
    result.version_keys[key] = f"{model}/{version}"
    suffix = ":shadow" if route == "shadow" else ""
    caller, latency = data.get("caller"), data.get("latency_ms")
    names = sorted(inputs)
    for index in range(rows):
        prediction_id = f"{request_id}:{index}{suffix}"
        if primary[index] is None:
            result.invalid["output value is null"] += 1
            continue
        if prediction_id in result._seen:
            result.repeated += 1
            continue
        result._seen.add(prediction_id)
        features = {name: inputs[name][index] for name in names}
        values = (
            prediction_id,
            key,
            _flight_key(ids[index]) if ids is not None else None,
            predicted_at,
            protocol,
            route,
            float(primary[index]),
            json.dumps(features, separators=(",", ":"), allow_nan=False),
            None if caller is None else str(caller),
            float(latency) if isinstance(latency, int | float) else None,
        )
        for name, value in zip(PREDICTION_SCHEMA.names, values, strict=True):
            result.rows[name].append(value)


def _text(data: Mapping[str, Any], name: str) -> str:
    value = data.get(name)
    if not isinstance(value, str) or not value:
        raise ValueError(f"field {name!r} is missing or not a string")
    return value


def _instant(data: Mapping[str, Any], name: str) -> datetime:
    text = _text(data, name)
    try:
        value = datetime.fromisoformat(text)
    except ValueError as err:
        raise ValueError(f"field {name!r} is not an ISO-8601 time") from err
    return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)


def _columns(data: Mapping[str, Any], name: str, rows: int) -> dict[str, list[Any]]:
    columns = data.get(name)
    if not isinstance(columns, dict) or not columns:
        raise ValueError(f"field {name!r} is missing or empty")
    for values in columns.values():
        if not isinstance(values, list) or len(values) != rows:
            raise ValueError(f"field {name!r} does not hold one value per row")
    return columns


def _primary_output(data: Mapping[str, Any], rows: int) -> list[Any]:
    outputs = _columns(data, "outputs", rows)
    values = next(iter(outputs.values()))
    if any(
        v is not None and (isinstance(v, bool) or not isinstance(v, int | float)) for v in values
    ):
        raise ValueError("field 'outputs' holds a value that is not a number")
    return values


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _flight_key(value: Any) -> int | None:
    """The row id as a flight key when it is a 64-bit integer (else the row has none)."""
    try:
        key = int(str(value))
    except ValueError:
        return None
    return key if _INT64[0] <= key <= _INT64[1] else None


@dataclass
class Outcomes:
    """The rows of a batch of outcome events.

    Attributes:
        events: The first event of each flight of the batch, in log order.
        repeated: Events of a flight that came earlier in the batch (first kept).
    """

    events: list[OutcomeEvent] = field(default_factory=list)
    repeated: int = 0

    def keys(self) -> list[int]:
        """The flights of the batch."""
        return [e.flight_key for e in self.events]

    def outcome_table(self, known: set[int]) -> pa.Table:
        """``fact_outcome`` rows of the events whose flight is in ``known``."""
        kept = [e for e in self.events if e.flight_key in known]
        return pa.table(
            {
                "flight_key": [e.flight_key for e in kept],
                "observed_at": [e.observed_at for e in kept],
                "arr_delay_min": [e.arr_delay_min for e in kept],
                "is_delayed_15": [e.is_delayed_15 for e in kept],
                "source": [e.source for e in kept],
            },
            schema=OUTCOME_SCHEMA,
        )

    def quarantine_table(
        self, known: set[int], *, partition: str, run_id: str, at: datetime
    ) -> pa.Table:
        """``quarantine`` rows of the events whose flight is not in ``known``."""
        rows: dict[str, list[Any]] = {name: [] for name in QUARANTINE_SCHEMA.names}
        for event in self.events:
            if event.flight_key in known:
                continue
            reason = {
                "check": UNKNOWN_FLIGHT,
                "column": "flight_key",
                "message": f"flight_key {event.flight_key} is not in fact_flight",
            }
            values = (
                _quarantine_id(event.event_id),
                OUTCOME_TABLE,
                str(event.flight_key),
                partition,
                UNKNOWN_FLIGHT,
                json.dumps([reason]),
                json.dumps({**event.to_json(), "offset": event.offset}),
                run_id,
                at,
            )
            for name, value in zip(QUARANTINE_SCHEMA.names, values, strict=True):
                rows[name].append(value)
        return pa.table(rows, schema=QUARANTINE_SCHEMA)


def outcome_rows(events: Sequence[OutcomeEvent]) -> Outcomes:
    """The first event of each flight, and how many repeated one."""
    result = Outcomes()
    seen: set[int] = set()
    for event in events:
        if event.flight_key in seen:
            result.repeated += 1
            continue
        seen.add(event.flight_key)
        result.events.append(event)
    return result


def _quarantine_id(event_id: str) -> int:
    """63-bit hash of (table, event, check): quarantining an event twice keeps one row."""
    digest = hashlib.sha256(f"{OUTCOME_TABLE}\x00{event_id}\x00{UNKNOWN_FLIGHT}".encode()).digest()
    return (int.from_bytes(digest[:8], "big") & _KEY_MASK) or 1
