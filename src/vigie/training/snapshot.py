"""Training snapshots: one time window of the star schema, frozen as Parquet by content hash.

The same window over the same warehouse gives the same bytes to hash (rows sorted by
``flight_key``, a fixed schema, a canonical serialisation), hence the same snapshot.
"""

from __future__ import annotations

import hashlib
import io
import os
import secrets
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from vigie.config import Settings
from vigie.errors import ErrorCode, VigieError
from vigie.features import offline
from vigie.features.catalogue import TARGET_COLUMN, TARGET_SQL, Feature, FeatureKind
from vigie.training.spec import ModelSpec
from vigie.warehouse.dialect import FLOAT64, typed_null

#: Columns every snapshot carries besides the features and the target.
KEY_COLUMNS = ("flight_key", "sched_dep_utc")

_FROM = """
FROM fact_flight f
JOIN dim_date d ON d.date_key = f.date_key
JOIN dim_airport o ON o.airport_key = f.origin_airport_key
JOIN dim_airport a ON a.airport_key = f.dest_airport_key
LEFT JOIN dim_plane p ON p.plane_key = f.plane_key AND p.plane_key <> 0
LEFT JOIN dim_weather_hour w ON w.weather_key = f.weather_key AND w.weather_key <> 0
WHERE f.flight_status = 'arrived' AND f.arr_delay_min IS NOT NULL
  AND f.flight_date BETWEEN ? AND ?
ORDER BY f.flight_key
"""


@dataclass(frozen=True)
class Snapshot:
    """A materialised training snapshot (its lineage record).

    Attributes:
        path: The Parquet file, ``<snapshots_dir>/<hash>.parquet``.
        content_hash: SHA-256 (hex) of the canonical serialisation of the rows.
        rows: Number of rows (arrived flights).
        start: First scheduled departure date of the window (inclusive).
        end: Last scheduled departure date of the window (inclusive).
        features: The feature columns, in spec order.
    """

    path: Path
    content_hash: str
    rows: int
    start: date
    end: date
    features: tuple[str, ...]

    def lineage(self) -> dict[str, Any]:
        """JSON-ready lineage record for the audit log and the registry."""
        return {
            "snapshot_hash": self.content_hash,
            "snapshot_path": str(self.path),
            "window_from": self.start.isoformat(),
            "window_to": self.end.isoformat(),
            "rows": self.rows,
            "features": list(self.features),
        }

    def read(self) -> pd.DataFrame:
        """The snapshot rows as a DataFrame (NaN for missing numerics, None for strings)."""
        frame: pd.DataFrame = pq.read_table(self.path).to_pandas()
        return frame


def snapshot_sql(features: list[Feature]) -> str:
    """The query of a snapshot: keys, features and target, arrived flights, by flight_key.

    Origin-status features come out NULL with the flight's origin and carrier beside them,
    for :func:`vigie.features.offline.fill`.
    """
    columns = ["f.flight_key AS flight_key", "f.sched_dep_utc AS sched_dep_utc"]
    columns += feature_columns(features)
    columns.append(f"{TARGET_SQL} AS {TARGET_COLUMN}")
    return "SELECT " + ",\n  ".join(columns) + _FROM


def feature_columns(features: list[Feature]) -> list[str]:
    """The select-list entries of ``features``: an origin-status one is NULL, with the
    flight's origin and carrier added once for :func:`offline.add_to` to fill it."""
    columns = [
        f"{typed_null(FLOAT64)} AS {f.name}" if f.history else f"{f.sql} AS {f.name}"
        for f in features
    ]
    if any(f.history for f in features):
        columns += offline.TARGET_COLUMNS
    return columns


def snapshot_schema(features: list[Feature]) -> pa.Schema:
    """The fixed schema every snapshot is cast to, whatever the warehouse engine returned."""
    fields = [pa.field("flight_key", pa.int64()), pa.field("sched_dep_utc", pa.timestamp("us"))]
    fields += [
        pa.field(f.name, pa.string() if f.kind is FeatureKind.CATEGORICAL else pa.float64())
        for f in features
    ]
    fields.append(pa.field(TARGET_COLUMN, pa.float64()))
    return pa.schema(fields)


def canonical_hash(table: pa.Table) -> str:
    """SHA-256 of the schema and the rows written as CSV (nulls as empty fields).

    CSV rather than Arrow IPC or Parquet bytes: a binary buffer carries undefined bytes
    under null slots, and Parquet bytes change with the writer version.
    """
    sink = io.BytesIO()
    sink.write(str(table.schema).encode("utf-8"))
    pacsv.write_csv(table, sink, pacsv.WriteOptions(include_header=True, batch_size=65536))
    return hashlib.sha256(sink.getvalue()).hexdigest()


def build_snapshot(settings: Settings, spec: ModelSpec, start: date, end: date) -> Snapshot:
    """Query the window from the warehouse and materialise it under ``snapshots_dir``.

    Args:
        settings: Settings (warehouse URL, snapshots folder).
        spec: The model spec; its features are the columns taken.
        start: First scheduled departure date (inclusive).
        end: Last scheduled departure date (inclusive).

    Raises:
        VigieError: INVALID_INPUT for an empty or reversed window; DATA_QUALITY when the
            window holds no arrived flight.
    """
    if end < start:
        raise VigieError(
            ErrorCode.INVALID_INPUT, f"window end {end} is before start {start}", field="end"
        )
    features = spec.feature_defs()
    raw = offline.read_with_features(
        settings.resolved_warehouse_url, snapshot_sql(features), features, start, end
    )
    if raw.num_rows == 0:
        raise VigieError(
            ErrorCode.DATA_QUALITY,
            f"no arrived flight between {start} and {end} in the warehouse; load it first",
            window_from=start.isoformat(),
            window_to=end.isoformat(),
        )
    table = _canonical(raw, snapshot_schema(features))
    digest = canonical_hash(table)
    path = settings.snapshots_dir / f"{digest}.parquet"
    if not path.exists():
        settings.snapshots_dir.mkdir(parents=True, exist_ok=True)
        # a name of its own: two runs may build the same snapshot at once (same content,
        # same hash); each renames its own file over the path, atomically
        partial = path.with_name(f"{path.name}.{os.getpid()}-{secrets.token_hex(4)}.tmp")
        pq.write_table(table, partial)
        partial.replace(path)
    return Snapshot(path, digest, table.num_rows, start, end, tuple(f.name for f in features))


def _canonical(raw: pa.Table, schema: pa.Schema) -> pa.Table:
    columns = []
    for field in schema:
        column = raw.column(field.name)
        if pa.types.is_timestamp(field.type) and column.type != field.type:
            # A zoned timestamp becomes naive UTC; the wall clock is the UTC one.
            column = column.cast(pa.timestamp("us", tz="UTC")).cast(field.type)
        columns.append(column.cast(field.type))
    return pa.Table.from_arrays(columns, schema=schema).combine_chunks()
