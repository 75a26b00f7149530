"""What a replay sends: the flights of a warehouse window, in scheduled-departure order.

Every flight of the window is read (arrived, cancelled and diverted: a prediction is
asked for each before departure, whatever happens later) with the features the served
models take, computed by the same catalogue expressions over the same star-schema joins
as the training snapshots (:mod:`vigie.features.catalogue`, :mod:`vigie.training.snapshot`),
so a replayed request carries what the model was trained on. Columns are kept as numpy
arrays: a year is 336,776 flights, and a request is a slice of them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from vigie.config import Settings
from vigie.errors import ErrorCode, VigieError
from vigie.features import offline
from vigie.features.catalogue import CATALOGUE, Feature, FeatureKind
from vigie.registry import Registry
from vigie.training.snapshot import feature_columns

#: ``arrival_us`` of a flight without an actual arrival (cancelled, diverted).
NO_ARRIVAL = np.iinfo(np.int64).min

# The joins of vigie.training.snapshot (aliases f, d, o, a, p, w of the catalogue's SQL),
# without its filter on arrived flights.
_FROM = """
FROM fact_flight f
JOIN dim_date d ON d.date_key = f.date_key
JOIN dim_airport o ON o.airport_key = f.origin_airport_key
JOIN dim_airport a ON a.airport_key = f.dest_airport_key
LEFT JOIN dim_plane p ON p.plane_key = f.plane_key AND p.plane_key <> 0
LEFT JOIN dim_weather_hour w ON w.weather_key = f.weather_key AND w.weather_key <> 0
WHERE f.flight_date BETWEEN ? AND ?
ORDER BY f.sched_dep_utc, f.flight_key
"""

_KEYS = (
    "f.flight_key AS flight_key",
    "f.flight_number AS flight_number",
    "f.sched_dep_utc AS sched_dep_utc",
    "f.arr_utc AS arr_utc",
    "f.flight_status AS flight_status",
    "f.arr_delay_min AS arr_delay_min",
    "f.is_delayed_15 AS is_delayed_15",
)


@dataclass(frozen=True)
class FlightWindow:
    """The flights of a window, sorted by scheduled departure, as columns.

    Attributes:
        flight_key: ``fact_flight.flight_key`` (int64).
        departure_us: Scheduled departure, UTC, microseconds since the epoch.
        arrival_us: Actual arrival, same unit; :data:`NO_ARRIVAL` when there is none.
        arr_delay_min: Arrival delay, minutes (0 where unknown; see ``labelled``).
        is_delayed_15: Arrived more than 15 minutes late (False where unknown).
        labelled: The flight arrived and its arrival and delay are known: it gets an
            outcome event.
        features: Feature name to its column (object array of ``str`` or None for a
            categorical feature, float32 with NaN for a missing number).
        flight_number: The carrier's flight number of each flight (None when not read).
    """

    flight_key: npt.NDArray[np.int64]
    departure_us: npt.NDArray[np.int64]
    arrival_us: npt.NDArray[np.int64]
    arr_delay_min: npt.NDArray[np.int64]
    is_delayed_15: npt.NDArray[np.bool_]
    labelled: npt.NDArray[np.bool_]
    features: dict[str, npt.NDArray[np.object_] | npt.NDArray[np.float32]]
    flight_number: npt.NDArray[np.int64] | None = None

    def __len__(self) -> int:
        return int(self.flight_key.shape[0])


def feature_defs(models: dict[str, tuple[str, ...]]) -> list[Feature]:
    """The catalogue entries of every input of ``models``, each once, in first-seen order.

    Raises:
        VigieError: INVALID_INPUT naming a model input that is not in the catalogue.
    """
    names: dict[str, None] = {}
    for model, inputs in models.items():
        unknown = [n for n in inputs if n not in CATALOGUE]
        if unknown:
            raise VigieError(
                ErrorCode.INVALID_INPUT,
                f"{model} takes input(s) {', '.join(unknown)} that the feature catalogue "
                "does not know; the replay cannot compute them from the warehouse",
                model=model,
            )
        names.update(dict.fromkeys(inputs))
    return [CATALOGUE[n] for n in names]


def window_sql(features: list[Feature]) -> str:
    """The query of a replay window: keys, timing, labels and features, by departure."""
    columns = [*_KEYS, *feature_columns(features)]
    return "SELECT " + ",\n  ".join(columns) + _FROM


def load_window(
    settings: Settings, start: date, end: date, features: list[Feature]
) -> FlightWindow:
    """Read every flight scheduled to leave from ``start`` to ``end`` (local dates, inclusive).

    Raises:
        VigieError: INVALID_INPUT for a reversed window; WAREHOUSE_UNAVAILABLE.
    """
    if end < start:
        raise VigieError(
            ErrorCode.INVALID_INPUT, f"--to {end} is before --from {start}", field="to"
        )
    # What the events had told by each flight's scheduled departure: the same facts and
    # the same strict cutoff as the training snapshots.
    table = offline.read_with_features(
        settings.resolved_warehouse_url, window_sql(features), features, start, end
    )
    return window_from_arrow(table, features)


def window_from_arrow(table: pa.Table, features: list[Feature]) -> FlightWindow:
    """A :class:`FlightWindow` from the rows of :func:`window_sql` (already in order)."""
    arrival = _micros(table.column("arr_utc"))
    delay = table.column("arr_delay_min")
    arrived = pc.equal(table.column("flight_status"), "arrived").fill_null(False)
    labelled = np.asarray(arrived.to_numpy(zero_copy_only=False), dtype=bool)
    labelled &= arrival != NO_ARRIVAL
    labelled &= ~np.asarray(delay.is_null().to_numpy(zero_copy_only=False), dtype=bool)
    return FlightWindow(
        flight_key=_ints(table.column("flight_key"), 0),
        departure_us=_micros(table.column("sched_dep_utc")),
        arrival_us=arrival,
        arr_delay_min=_ints(delay, 0),
        is_delayed_15=np.asarray(
            table.column("is_delayed_15").fill_null(False).to_numpy(zero_copy_only=False),
            dtype=bool,
        ),
        labelled=labelled,
        features={f.name: _feature(table.column(f.name), f.kind) for f in features},
        flight_number=(
            _ints(table.column("flight_number"), -1)
            if "flight_number" in table.column_names
            else None
        ),
    )


def _micros(column: pa.ChunkedArray) -> npt.NDArray[np.int64]:
    """Microseconds since the epoch, UTC. A zoned timestamp stores UTC whatever its zone;
    a naive one is read as UTC, as the warehouse keeps every ``*_utc`` column."""
    if pa.types.is_timestamp(column.type):
        column = column.cast(pa.timestamp("us", tz=column.type.tz))
    return _ints(column, NO_ARRIVAL)


def _ints(column: pa.ChunkedArray, missing: int) -> npt.NDArray[np.int64]:
    filled = column.cast(pa.int64()).fill_null(missing)
    return np.asarray(filled.to_numpy(zero_copy_only=False), dtype=np.int64)


def _feature(
    column: pa.ChunkedArray, kind: FeatureKind
) -> npt.NDArray[np.object_] | npt.NDArray[np.float32]:
    if kind is FeatureKind.CATEGORICAL:
        values = np.empty(len(column), dtype=object)
        values[:] = [None if v is None else str(v) for v in column.to_pylist()]
        return values
    floats = column.cast(pa.float64()).fill_null(float("nan"))
    return np.asarray(floats.to_numpy(zero_copy_only=False), dtype=np.float32)


def production_models(settings: Settings) -> list[str]:
    """The models of the registry whose ``production`` alias is set, sorted."""
    registry = Registry(settings)
    return [m for m in registry.models() if "production" in registry.aliases(m)]
