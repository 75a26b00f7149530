"""Origin status: the recent arrival delays of flights that left the same airport.

Delays propagate through an airport's day (a storm, a ground stop, a congested evening), and
they show in the outcomes of the flights that left it in the hours before. These features
are what the outcome stream had delivered at the instant a prediction is asked, the
flight's scheduled departure ``t``:

* of the flights from the same origin whose actual arrival fell in ``[t - 3 h, t)`` and in
  ``[t - 6 h, t)``: the mean arrival delay (minutes) and the share more than 15 minutes
  late, and the number of such arrivals in the 6 h window;
* the same mean and share over 6 h for the same carrier at that origin.

Only arrived flights with a known delay count; the flight itself never does. A window
with no arrival gives NaN for means and shares (the model imputes it and sees that it is
missing) and 0 for the count. Training snapshots and the replay compute them with the same
function from the same events (:func:`compute`), so a served request carries exactly what
the model was trained on; an event at or after ``t`` can never enter (the cutoff is
strict), which the tests check by rewriting every later arrival.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, timedelta

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from vigie.features.catalogue import Feature
from vigie.warehouse.connection import Warehouse

#: The feature names this module computes, in catalogue order.
NAMES = (
    "origin_arr_delay_3h",
    "origin_late_share_3h",
    "origin_arr_delay_6h",
    "origin_late_share_6h",
    "origin_arrivals_6h",
    "carrier_arr_delay_6h",
    "carrier_late_share_6h",
)

_HOUR_US = 3_600_000_000
_LATE_MIN = 15.0

#: Arrived flights with a known delay, as events (one per flight).
EVENTS_SQL = """
SELECT f.flight_key AS flight_key, f.origin_code AS origin_code,
       f.carrier_code AS carrier_code, f.arr_utc AS arr_utc, f.arr_delay_min AS arr_delay_min
FROM fact_flight f
WHERE f.flight_status = 'arrived' AND f.arr_utc IS NOT NULL AND f.arr_delay_min IS NOT NULL
  AND f.flight_date BETWEEN ? AND ?
"""


@dataclass(frozen=True)
class Events:
    """Arrival outcomes: the flight, where it left from, when it arrived and how late.

    Attributes:
        flight_key: ``fact_flight.flight_key`` of each arrived flight.
        origin: Origin airport code.
        carrier: Carrier code.
        arrival_us: Actual arrival, UTC microseconds since the epoch.
        delay_min: Arrival delay, minutes.
    """

    flight_key: npt.NDArray[np.int64]
    origin: npt.NDArray[np.object_]
    carrier: npt.NDArray[np.object_]
    arrival_us: npt.NDArray[np.int64]
    delay_min: npt.NDArray[np.float64]


@dataclass(frozen=True)
class Targets:
    """The flights to compute the status for, each at its scheduled departure."""

    flight_key: npt.NDArray[np.int64]
    origin: npt.NDArray[np.object_]
    carrier: npt.NDArray[np.object_]
    departure_us: npt.NDArray[np.int64]


def load_events(warehouse: Warehouse, first: date, last: date) -> Events:
    """The arrival events that can matter to flights scheduled from ``first`` to ``last``.

    A flight's 6 h window starts at most a day before its local departure date, so the
    flights of the day before ``first`` are read too.
    """
    table = warehouse.query_arrow(EVENTS_SQL, [first - timedelta(days=1), last])
    return events_from_arrow(table)


def events_from_arrow(table: pa.Table) -> Events:
    """:class:`Events` from rows with the columns of :data:`EVENTS_SQL`."""
    return Events(
        flight_key=np.asarray(table.column("flight_key").to_numpy(), dtype=np.int64),
        origin=np.asarray(table.column("origin_code").to_pylist(), dtype=object),
        carrier=np.asarray(table.column("carrier_code").to_pylist(), dtype=object),
        arrival_us=micros(table.column("arr_utc")),
        delay_min=np.asarray(
            table.column("arr_delay_min").cast(pa.float64()).to_numpy(), dtype=np.float64
        ),
    )


def micros(column: pa.ChunkedArray) -> npt.NDArray[np.int64]:
    """Timestamps (naive UTC or zoned) as int64 microseconds since the epoch."""
    if pa.types.is_timestamp(column.type) and column.type.tz is not None:
        column = column.cast(pa.timestamp("us", tz="UTC"))
    values = column.cast(pa.timestamp("us")).cast(pa.int64())
    return np.asarray(values.to_numpy(zero_copy_only=False), dtype=np.int64)


def compute(events: Events, targets: Targets) -> dict[str, npt.NDArray[np.float64]]:
    """The origin status of every target at its scheduled departure.

    Prefix sums over the events of each origin (and origin and carrier), sorted by arrival:
    two binary searches per target and window, so a year takes well under a second.

    Returns:
        Feature name to a float64 column aligned with ``targets`` (NaN where no arrival).
    """
    n = targets.flight_key.shape[0]
    out = {name: np.full(n, np.nan) for name in NAMES}
    out["origin_arrivals_6h"] = np.zeros(n)
    by_origin = _windows(events, targets, (events.origin,), (targets.origin,))
    by_carrier = _windows(
        events, targets, (events.origin, events.carrier), (targets.origin, targets.carrier)
    )
    for hours, (count, total, late) in by_origin.items():
        has = count > 0
        out[f"origin_arr_delay_{hours}h"][has] = total[has] / count[has]
        out[f"origin_late_share_{hours}h"][has] = late[has] / count[has]
        if hours == 6:
            out["origin_arrivals_6h"] = count.astype(np.float64)
    count, total, late = by_carrier[6]
    has = count > 0
    out["carrier_arr_delay_6h"][has] = total[has] / count[has]
    out["carrier_late_share_6h"][has] = late[has] / count[has]
    return out


_Sums = tuple[npt.NDArray[np.int64], npt.NDArray[np.float64], npt.NDArray[np.float64]]


def _windows(
    events: Events,
    targets: Targets,
    event_keys: tuple[npt.NDArray[np.object_], ...],
    target_keys: tuple[npt.NDArray[np.object_], ...],
) -> Mapping[int, _Sums]:
    """Per window (3 h, 6 h): count, delay sum and late count of each target's group."""
    n = targets.flight_key.shape[0]
    sums = {h: (np.zeros(n, np.int64), np.zeros(n), np.zeros(n)) for h in (3, 6)}
    groups: dict[tuple[object, ...], list[int]] = {}
    for i, key in enumerate(zip(*event_keys, strict=True)):
        groups.setdefault(key, []).append(i)
    target_groups: dict[tuple[object, ...], list[int]] = {}
    for i, key in enumerate(zip(*target_keys, strict=True)):
        target_groups.setdefault(key, []).append(i)
    for key, rows in target_groups.items():
        members = np.asarray(groups.get(key, []), dtype=np.intp)
        if members.size == 0:
            continue
        order = members[np.argsort(events.arrival_us[members], kind="stable")]
        arrival = events.arrival_us[order]
        delay = events.delay_min[order]
        cum_delay = np.concatenate(([0.0], np.cumsum(delay)))
        cum_late = np.concatenate(([0.0], np.cumsum(delay > _LATE_MIN)))
        own = _own_position(events.flight_key[order], targets.flight_key[rows])
        at = targets.departure_us[rows]
        hi = np.searchsorted(arrival, at, side="left")
        for hours, (count, total, late) in sums.items():
            lo = np.searchsorted(arrival, at - hours * _HOUR_US, side="left")
            inside = (own >= lo) & (own < hi)
            count[rows] = hi - lo - inside
            total[rows] = cum_delay[hi] - cum_delay[lo] - np.where(inside, delay[own], 0.0)
            late[rows] = cum_late[hi] - cum_late[lo] - np.where(inside, delay[own] > _LATE_MIN, 0)
    return sums


def _own_position(
    event_keys: npt.NDArray[np.int64], target_keys: npt.NDArray[np.int64]
) -> npt.NDArray[np.intp]:
    """Where each target's own event is among ``event_keys`` (-1 where it is not)."""
    if event_keys.size == 0:
        return np.full(target_keys.shape[0], -1, dtype=np.intp)
    by_key = np.argsort(event_keys, kind="stable")
    found = np.searchsorted(event_keys[by_key], target_keys)
    found = np.minimum(found, event_keys.size - 1)
    hit = event_keys[by_key][found] == target_keys
    return np.where(hit, by_key[found], -1).astype(np.intp)


#: Columns a star-schema query adds for :func:`fill` (the flight's origin and carrier).
TARGET_COLUMNS = ("f.origin_code AS status_origin", "f.carrier_code AS status_carrier")


def add_to(
    warehouse: Warehouse, table: pa.Table, features: list[Feature], first: date, last: date
) -> pa.Table:
    """``table`` (flights scheduled from ``first`` to ``last``) with its origin-status
    features computed from the warehouse's arrivals; unchanged when ``features`` has none."""
    names = [f.name for f in features if f.history]
    if not names:
        return table
    return fill(table, names, load_events(warehouse, first, last))


def fill(
    table: pa.Table, names: list[str], events: Events, *, departure: str = "sched_dep_utc"
) -> pa.Table:
    """``table`` with its columns ``names`` (origin-status features) computed from ``events``.

    ``table`` has ``flight_key``, the scheduled departure column ``departure`` and the
    columns of :data:`TARGET_COLUMNS`; the helper columns are dropped from the result.
    """
    if names:
        targets = Targets(
            flight_key=np.asarray(table.column("flight_key").to_numpy(), dtype=np.int64),
            origin=np.asarray(table.column("status_origin").to_pylist(), dtype=object),
            carrier=np.asarray(table.column("status_carrier").to_pylist(), dtype=object),
            departure_us=micros(table.column(departure)),
        )
        values = compute(events, targets)
        for name in names:
            column = pa.array(values[name], type=pa.float64(), from_pandas=True)
            index = table.schema.get_field_index(name)
            table = (
                table.set_column(index, name, column)
                if index >= 0
                else table.append_column(name, column)
            )
    return table.drop_columns(
        [c for c in ("status_origin", "status_carrier") if c in table.column_names]
    )
