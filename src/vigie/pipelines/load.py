"""Bulk, idempotent loading of the star schema (inside the caller's transaction)."""

from __future__ import annotations

import io
from importlib import resources
from typing import Any

import pandas as pd
import pyarrow as pa

from vigie.pipelines import transform
from vigie.pipelines.checks import local_dates
from vigie.pipelines.expectations import Expectations
from vigie.pipelines.facts import fact_flight
from vigie.pipelines.lineage import RunRecord
from vigie.pipelines.quarantine import malformed_rows, quarantine_rows
from vigie.pipelines.validate import CORRECTIONS, Outcome
from vigie.warehouse.connection import Warehouse

#: Warehouse tables in load order, with the key that makes a row "already loaded".
TARGETS: dict[str, list[str]] = {
    "dim_date": ["date_key"],
    "dim_carrier": ["carrier_key"],
    "dim_airport": ["airport_key"],
    "dim_plane": ["plane_key"],
    "dim_weather_hour": ["weather_key"],
    "fact_flight": ["flight_key"],
    "quarantine": ["quarantine_id"],
}

#: The warehouse table each source table lands in.
SOURCE_TARGET = {
    "airlines": "dim_carrier",
    "airports": "dim_airport",
    "planes": "dim_plane",
    "weather": "dim_weather_hour",
    "flights": "fact_flight",
}


def build_tables(
    outcomes: dict[str, Outcome],
    malformed: dict[str, pd.DataFrame],
    expectations: Expectations,
    record: RunRecord,
) -> tuple[dict[str, pd.DataFrame], list[dict[str, Any]]]:
    """Warehouse rows for every target table, and the dimension gaps that were filled."""
    ok = {name: o.accepted for name, o in outcomes.items()}
    ok["airports"], supplemented = with_reference_airports(ok["airports"])
    run, at = record.run_id, record.started_at
    flights = ok["flights"]
    tables = {
        "dim_date": transform.dim_date(local_dates(flights)),
        "dim_carrier": transform.dim_carrier(ok["airlines"], flights["carrier"], run, at),
        "dim_airport": transform.dim_airport(
            ok["airports"], pd.concat([flights["origin"], flights["dest"]]), run, at
        ),
        "dim_plane": transform.dim_plane(ok["planes"], flights["tailnum"], run, at),
        "dim_weather_hour": transform.dim_weather_hour(ok["weather"], run, at),
        # in time order, so DuckDB's zonemaps prune time-window scans
        "fact_flight": fact_flight(flights, ok["airports"], ok["weather"], run, at).sort_values(
            "sched_dep_utc", kind="stable"
        ),
    }
    parts = []
    for name, outcome in outcomes.items():
        spec = expectations.tables[name]
        columns = [c for c in spec.columns if c in outcome.quarantined]
        parts.append(
            quarantine_rows(
                name,
                outcome.quarantined,
                natural_key=spec.natural_key,
                columns=columns,
                run_id=run,
                at=at,
            )
        )
        parts.append(malformed_rows(name, malformed[name], f"{name}/malformed", run, at))
    tables["quarantine"] = pd.concat([p for p in parts if len(p)] or parts[:1], ignore_index=True)
    gaps = _gaps(tables)
    gaps.insert(
        0,
        {
            "what": "airports absent from airports, filled from the reference supplement",
            "count": supplemented,
            "how": "name, position and IANA time zone from public FAA data "
            "(vigie/pipelines/reference/airports_supplement.csv); is_corrected = true",
        },
    )
    return tables, gaps


def with_reference_airports(airports: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """Airports plus reference members the source lacks (the source always wins).

    The 2013 source has no row for four Caribbean destinations (BQN, PSE, SJU, STT); without
    their time zone no arrival could be placed in UTC.
    """
    text = resources.files("vigie.pipelines") / "reference" / "airports_supplement.csv"
    extra = pd.read_csv(io.StringIO(text.read_text()), dtype={"alt": "Int64", "tz": "Int64"})
    extra = extra[~extra["faa"].isin(airports["faa"])]
    extra[CORRECTIONS] = "reference_supplement:airports"
    return pd.concat([airports, extra], ignore_index=True), len(extra)


def _gaps(tables: dict[str, pd.DataFrame]) -> list[dict[str, Any]]:
    fact = tables["fact_flight"]
    inferred = "inferred member: natural key kept, attributes unknown, is_inferred = true"
    return [
        {
            "what": "planes referenced by flights but absent from planes",
            "count": int(tables["dim_plane"]["is_inferred"].sum()),
            "how": inferred,
        },
        {
            "what": "airports referenced by flights but absent from airports",
            "count": int(tables["dim_airport"]["is_inferred"].sum()),
            "how": inferred,
        },
        {
            "what": "carriers referenced by flights but absent from airlines",
            "count": int(tables["dim_carrier"]["is_inferred"].sum()),
            "how": inferred,
        },
        {
            "what": "flights with no tail number (mostly cancelled)",
            "count": int((fact["plane_key"] == transform.UNKNOWN_KEY).sum()),
            "how": "unknown plane member (key 0)",
        },
        {
            "what": "flights with no weather observation at their origin and hour",
            "count": int((fact["weather_key"] == transform.UNKNOWN_KEY).sum()),
            "how": "unknown weather member (key 0)",
        },
    ]


def load_all(warehouse: Warehouse, tables: dict[str, pd.DataFrame]) -> dict[str, int]:
    """Insert every table's new rows in bulk; returns rows inserted per warehouse table,
    plus ``source:<table>`` entries for the source tables."""
    inserted = {}
    for name, key in TARGETS.items():
        frame = tables[name]
        inserted[name] = warehouse.insert_new(name, to_arrow(frame), key) if len(frame) else 0
    for source, target in SOURCE_TARGET.items():
        inserted[f"source:{source}"] = inserted[target]
    return inserted


def to_arrow(frame: pd.DataFrame) -> pa.Table:
    """Arrow form with microsecond timestamps (what both engines store)."""
    table = pa.Table.from_pandas(frame, preserve_index=False)
    fields = []
    for field in table.schema:
        if pa.types.is_timestamp(field.type):
            fields.append(pa.field(field.name, pa.timestamp("us", tz=field.type.tz)))
        else:
            fields.append(field)
    return table.cast(pa.schema(fields), safe=False)
