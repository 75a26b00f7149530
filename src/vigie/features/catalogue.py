"""The feature catalogue: every model input, its warehouse expression and its policy source.

This is the ONE place where warehouse columns and feature names meet. A spec may only
name features listed here; a column observed after departure (``dep_delay``,
``arr_time``, ...) is never in the catalogue and is refused by name.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass

from vigie.errors import ErrorCode, VigieError
from vigie.governance.policy import DataPolicy


class FeatureKind(enum.StrEnum):
    """How a feature enters the model (and the ONNX graph)."""

    CATEGORICAL = "categorical"  # tensor(string); vocabulary with an out-of-vocabulary bucket
    NUMERIC = "numeric"  # tensor(float); NaN means missing


@dataclass(frozen=True)
class Feature:
    """One model input.

    Attributes:
        name: The feature name: the ONNX input name and the request field name.
        kind: Categorical (string) or numeric (float32, NaN = missing).
        sql: The expression over the star schema (aliases f, d, o, a, p, w) that yields it.
        sources: The source columns (``table.column`` in the data policy) it derives from.
        description: What it is, with its unit.
        history: Computed from other flights' outcomes observed before this flight's
            scheduled departure (:mod:`vigie.features.history`), not by ``sql``;
            its sources must be allowed as history in the data policy.
    """

    name: str
    kind: FeatureKind
    sql: str
    sources: tuple[str, ...]
    description: str
    history: bool = False


_C, _N = FeatureKind.CATEGORICAL, FeatureKind.NUMERIC

_ARR = ("flights.origin", "flights.carrier", "flights.arr_time", "flights.arr_delay")
_DEP = ("flights.origin", "flights.carrier", "flights.dep_time", "flights.dep_delay")
_BACKLOG = ("flights.origin", "flights.sched_dep_time", "flights.dep_time")
_DEST = ("flights.dest", "flights.arr_time", "flights.arr_delay")


def _stream_features() -> tuple[Feature, ...]:
    """The stream features (:mod:`vigie.features.history`): what the flight events had
    told at the flight's scheduled departure."""
    described = {
        "origin_arr_delay_3h": (
            _ARR,
            "mean arrival delay of the flights from this origin that "
            "arrived in the 3 h before this flight's scheduled departure, minutes",
        ),
        "origin_late_share_3h": (_ARR, "share of those flights more than 15 min late (3 h)"),
        "origin_arr_delay_6h": (_ARR, "the same mean arrival delay over 6 h, minutes"),
        "origin_late_share_6h": (_ARR, "share more than 15 min late over 6 h"),
        "origin_arrivals_6h": (
            _ARR,
            "number of flights from this origin that arrived in those 6 h",
        ),
        "carrier_arr_delay_6h": (
            _ARR,
            "mean arrival delay over 6 h of this carrier's flights from this origin, minutes",
        ),
        "carrier_late_share_6h": (_ARR, "share of those flights more than 15 min late (6 h)"),
        "origin_dep_delay_1h": (
            _DEP,
            "mean departure delay of the flights that left this "
            "origin in the hour before this flight's scheduled departure, minutes",
        ),
        "origin_dep_delay_3h": (_DEP, "the same mean departure delay over 3 h, minutes"),
        "origin_dep_delay_6h": (_DEP, "the same mean departure delay over 6 h, minutes"),
        "origin_departures_1h": (_DEP, "number of flights that left this origin in that hour"),
        "carrier_dep_delay_3h": (
            _DEP,
            "mean departure delay over 3 h of this carrier's flights from this origin, minutes",
        ),
        "origin_backlog_1h": (
            _BACKLOG,
            "flights scheduled to leave this origin in the hour "
            "before that had not left yet (cancelled ones excluded)",
        ),
        "origin_backlog_3h": (_BACKLOG, "the same backlog over the 3 h before"),
        "dest_arr_delay_3h": (
            _DEST,
            "mean arrival delay of the flights from New York that "
            "arrived at this destination in the 3 h before, minutes",
        ),
        "dest_late_share_3h": (_DEST, "share of those flights more than 15 min late (3 h)"),
    }
    return tuple(
        Feature(name, _N, "", sources, text, history=True)
        for name, (sources, text) in described.items()
    )


#: Every feature a spec may use, known at or before the scheduled departure.
CATALOGUE: dict[str, Feature] = {
    f.name: f
    for f in (
        Feature("carrier", _C, "f.carrier_code", ("flights.carrier",), "airline code"),
        Feature("origin", _C, "o.faa_code", ("flights.origin",), "origin airport FAA code"),
        Feature("dest", _C, "a.faa_code", ("flights.dest",), "destination airport FAA code"),
        Feature("distance", _N, "f.distance_mi", ("flights.distance",), "distance, miles"),
        Feature(
            "hour",
            _N,
            "EXTRACT(HOUR FROM f.sched_dep_local)",
            ("flights.hour",),
            "scheduled departure hour, local New York time",
        ),
        Feature(
            "minute",
            _N,
            "EXTRACT(MINUTE FROM f.sched_dep_local)",
            ("flights.minute",),
            "scheduled departure minute",
        ),
        Feature(
            "day_of_week",
            _N,
            "d.day_of_week",
            ("flights.year", "flights.month", "flights.day"),
            "scheduled departure day of week, ISO (1 = Monday)",
        ),
        Feature("day", _N, "d.day", ("flights.day",), "scheduled departure day of month"),
        Feature("month", _N, "d.month", ("flights.month",), "scheduled departure month"),
        Feature("plane_year", _N, "p.year_built", ("planes.year",), "year the plane was built"),
        Feature("manufacturer", _C, "p.manufacturer", ("planes.manufacturer",), "manufacturer"),
        Feature("seats", _N, "p.seats", ("planes.seats",), "number of seats"),
        Feature("engine", _C, "p.engine_type", ("planes.engine",), "engine type"),
        Feature("temp", _N, "w.temp_f", ("weather.temp",), "origin temperature, F"),
        Feature("dewp", _N, "w.dewpoint_f", ("weather.dewp",), "origin dew point, F"),
        Feature("humid", _N, "w.humidity_pct", ("weather.humid",), "origin humidity, %"),
        Feature("wind_dir", _N, "w.wind_dir_deg", ("weather.wind_dir",), "wind direction, deg"),
        Feature("wind_speed", _N, "w.wind_speed_mph", ("weather.wind_speed",), "wind, mph"),
        Feature("wind_gust", _N, "w.wind_gust_mph", ("weather.wind_gust",), "gusts, mph"),
        Feature("precip", _N, "w.precip_in", ("weather.precip",), "precipitation, inches"),
        Feature("pressure", _N, "w.pressure_mb", ("weather.pressure",), "pressure, millibars"),
        Feature("visib", _N, "w.visibility_mi", ("weather.visib",), "visibility, miles"),
        *_stream_features(),
    )
}

#: Columns observed at or after departure (source names and warehouse names): a model
#: that saw them would learn from the future it is asked to predict.
LEAKAGE: frozenset[str] = frozenset(
    {
        "dep_time",
        "dep_delay",
        "arr_time",
        "arr_delay",
        "air_time",
        "dep_utc",
        "arr_utc",
        "dep_delay_min",
        "arr_delay_min",
        "air_time_min",
        "is_delayed_15",
        "flight_status",
        "cancelled",
        "diverted",
    }
)

#: The label column of the snapshot and its warehouse expression and policy source.
TARGET_COLUMN = "arr_delay"
TARGET_SQL = "f.arr_delay_min"
TARGET_SOURCE = "flights.arr_delay"


def resolve_features(names: Iterable[str]) -> list[Feature]:
    """The catalogue entries of ``names``, in order.

    Raises:
        VigieError: POLICY_VIOLATION for a column observed after departure;
            INVALID_INPUT for a name that is not in the catalogue.
    """
    names = list(names)
    leaked = [n for n in names if n in LEAKAGE]
    if leaked:
        raise VigieError(
            ErrorCode.POLICY_VIOLATION,
            f"feature(s) {', '.join(map(repr, leaked))} are observed at or after departure "
            "and can never be model inputs (target leakage); remove them from the spec",
            field="features",
            features=leaked,
        )
    unknown = [n for n in names if n not in CATALOGUE]
    if unknown:
        raise VigieError(
            ErrorCode.INVALID_INPUT,
            f"unknown feature(s) {', '.join(map(repr, unknown))}; "
            f"expected names from the catalogue: {', '.join(CATALOGUE)}",
            field="features",
            features=unknown,
        )
    if len(set(names)) != len(names):
        raise VigieError(ErrorCode.INVALID_INPUT, "a feature is listed twice", field="features")
    return [CATALOGUE[n] for n in names]


def check_policy(features: Iterable[Feature], policy: DataPolicy) -> None:
    """Check that every feature derives only from columns the policy allows for training.

    Raises:
        VigieError: POLICY_VIOLATION naming each feature and source column refused.
    """
    refused: list[str] = []
    for feature in features:
        for source in feature.sources:
            table, column = source.split(".", 1)
            allowed = (
                policy.history_sources(table)
                if feature.history
                else policy.training_features(table)
            )
            if column not in allowed:
                refused.append(f"{feature.name} <- {source}")
    if refused:
        raise VigieError(
            ErrorCode.POLICY_VIOLATION,
            "the data policy does not allow these sources as training features: "
            + "; ".join(refused),
            field="features",
            refused=refused,
        )
    table, column = TARGET_SOURCE.split(".", 1)
    if column not in policy.targets(table):
        raise VigieError(
            ErrorCode.POLICY_VIOLATION,
            f"the data policy does not allow {TARGET_SOURCE} as a model target",
            field="target",
        )
