"""Stream features offline: the warehouse's flight facts as the events they were.

A training snapshot (and a replay that sends full requests) computes the stream features of
:mod:`vigie.features.history` from ``fact_flight``: each flight's scheduled departure, its
actual departure and arrival with their delays, and whether it was cancelled, exactly the
facts the flight events carry online. The same :func:`vigie.features.history.compute` then
takes them, so offline and online features have one definition.
"""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from vigie.features.catalogue import Feature
from vigie.features.history import NONE_US, FlightFacts, Targets, compute
from vigie.warehouse.connection import Warehouse, connect

#: Every flight as the events told it (arrived, cancelled or diverted).
FACTS_SQL = """
SELECT f.flight_key AS flight_key, f.origin_code AS origin_code, f.dest_code AS dest_code,
       f.carrier_code AS carrier_code, f.sched_dep_utc AS sched_dep_utc, f.dep_utc AS dep_utc,
       f.dep_delay_min AS dep_delay_min, f.arr_utc AS arr_utc, f.arr_delay_min AS arr_delay_min,
       f.flight_status AS flight_status
FROM fact_flight f
WHERE f.flight_date BETWEEN ? AND ?
"""

#: Columns a star-schema query adds for :func:`fill` (the flight's origin, dest, carrier).
TARGET_COLUMNS = (
    "f.origin_code AS status_origin",
    "f.dest_code AS status_dest",
    "f.carrier_code AS status_carrier",
)
_HELPERS = ("status_origin", "status_dest", "status_carrier")


def load_facts(warehouse: Warehouse, first: date, last: date) -> FlightFacts:
    """The facts that can matter to flights scheduled from ``first`` to ``last``.

    A flight's longest window starts at most a day before its local departure date, so the
    flights of the day before ``first`` are read too (a flight arriving in the window left
    at most a day earlier).
    """
    return facts_from_arrow(warehouse.query_arrow(FACTS_SQL, [first - timedelta(days=1), last]))


def facts_from_arrow(table: pa.Table) -> FlightFacts:
    """:class:`FlightFacts` from rows with the columns of :data:`FACTS_SQL`."""
    return FlightFacts(
        flight_key=np.asarray(table.column("flight_key").to_numpy(), dtype=np.int64),
        origin=np.asarray(table.column("origin_code").to_pylist(), dtype=object),
        dest=np.asarray(table.column("dest_code").to_pylist(), dtype=object),
        carrier=np.asarray(table.column("carrier_code").to_pylist(), dtype=object),
        sched_us=micros(table.column("sched_dep_utc")),
        dep_us=micros(table.column("dep_utc")),
        dep_delay=_floats(table.column("dep_delay_min")),
        arr_us=micros(table.column("arr_utc")),
        arr_delay=_floats(table.column("arr_delay_min")),
        cancelled=np.asarray(
            [s == "cancelled" for s in table.column("flight_status").to_pylist()], dtype=np.bool_
        ),
    )


def micros(column: pa.ChunkedArray) -> npt.NDArray[np.int64]:
    """Timestamps (naive UTC or zoned) as int64 microseconds since the epoch; a null is
    :data:`NONE_US`."""
    if pa.types.is_timestamp(column.type) and column.type.tz is not None:
        column = column.cast(pa.timestamp("us", tz="UTC"))
    values = column.cast(pa.timestamp("us")).cast(pa.int64()).fill_null(NONE_US)
    return np.asarray(values.to_numpy(zero_copy_only=False), dtype=np.int64)


def _floats(column: pa.ChunkedArray) -> npt.NDArray[np.float64]:
    return np.asarray(column.cast(pa.float64()).to_numpy(zero_copy_only=False), dtype=np.float64)


def read_with_features(
    warehouse_url: str, sql: str, features: list[Feature], first: date, last: date
) -> pa.Table:
    """The rows of ``sql`` over flights scheduled from ``first`` to ``last`` (its two
    parameters), with their stream features computed as of each scheduled departure: what
    a training snapshot and a full replay read, the same way."""
    warehouse = connect(warehouse_url, read_only=True)
    try:
        if warehouse.dialect == "duckdb":
            warehouse.execute("SET enable_progress_bar = false")
        table = warehouse.query_arrow(sql, [first, last])
        return add_to(warehouse, table, features, first, last)
    finally:
        warehouse.close()


def add_to(
    warehouse: Warehouse, table: pa.Table, features: list[Feature], first: date, last: date
) -> pa.Table:
    """``table`` (flights scheduled from ``first`` to ``last``) with its stream features
    computed from the warehouse's facts; unchanged when ``features`` has none."""
    names = [f.name for f in features if f.history]
    if not names:
        return table
    return fill(table, names, load_facts(warehouse, first, last))


def fill(
    table: pa.Table, names: list[str], facts: FlightFacts, *, departure: str = "sched_dep_utc"
) -> pa.Table:
    """``table`` with its columns ``names`` (stream features) computed from ``facts``, each
    flight at its scheduled departure ``departure``.

    ``table`` has the columns of :data:`TARGET_COLUMNS`; they are dropped from the result.
    """
    if names:
        targets = Targets(
            origin=np.asarray(table.column("status_origin").to_pylist(), dtype=object),
            dest=np.asarray(table.column("status_dest").to_pylist(), dtype=object),
            carrier=np.asarray(table.column("status_carrier").to_pylist(), dtype=object),
            at_us=micros(table.column(departure)),
        )
        values = compute(facts, targets)
        for name in names:
            column = pa.array(values[name], type=pa.float64(), from_pandas=True)
            index = table.schema.get_field_index(name)
            table = (
                table.set_column(index, name, column)
                if index >= 0
                else table.append_column(name, column)
            )
    return table.drop_columns([c for c in _HELPERS if c in table.column_names])
