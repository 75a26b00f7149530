"""The flight fact: one row per scheduled flight, with UTC times derived through time zones.

Departure times are local New York times; arrival clocks are local to the destination.
UTC is derived through each airport's IANA zone (daylight saving included): scheduled
departure is ``time_hour`` (UTC of the scheduled hour) plus the minute; scheduled arrival is
the arrival clock localised at the destination, on the departure date or the day after;
actual times are scheduled times plus the recorded delays.
"""

from __future__ import annotations

from datetime import datetime

import numpy as np
import pandas as pd

from vigie.pipelines.checks import local_dates
from vigie.pipelines.transform import UNKNOWN_KEY, surrogate
from vigie.pipelines.validate import CORRECTIONS

LATE_MINUTES = 15


def fact_flight(
    flights: pd.DataFrame,
    airports: pd.DataFrame,
    weather: pd.DataFrame,
    run_id: str,
    loaded_at: datetime,
) -> pd.DataFrame:
    """Fact rows for validated flights.

    Args:
        flights: Accepted flights (typed, identifiers already pseudonymised).
        airports: Accepted airports (for destination time zones).
        weather: Accepted weather observations (for the weather-hour key).
        run_id: The pipeline run.
        loaded_at: Load time stamped on every row.
    """
    date = local_dates(flights)
    date_key = (date.dt.year * 10000 + date.dt.month * 100 + date.dt.day).astype("int64")
    minute = minutes(flights["minute"])
    sched_dep_local = date + minutes(flights["hour"], per_unit=60) + minute
    sched_dep_utc = flights["time_hour"] + minute
    sched_arr_local, sched_arr_utc = _scheduled_arrival(flights, date, sched_dep_utc, airports)
    dep_delay = minutes(flights["dep_delay"])
    arr_delay = minutes(flights["arr_delay"])
    departed, arrived = flights["dep_delay"].notna(), flights["arr_delay"].notna()
    status = pd.Series("arrived", index=flights.index).mask(departed & ~arrived, "diverted")
    status = status.mask(~departed, "cancelled")
    frame = pd.DataFrame(
        {
            "flight_key": surrogate(
                date_key,
                flights["carrier"],
                flights["flight"],
                flights["origin"],
                flights["sched_dep_time"],
            ),
            "flight_date": date.dt.date,
            "carrier_code": flights["carrier"],
            "flight_number": flights["flight"],
            "origin_code": flights["origin"],
            "date_key": date_key,
            "carrier_key": surrogate(flights["carrier"]),
            "origin_airport_key": surrogate(flights["origin"]),
            "dest_airport_key": surrogate(flights["dest"]),
            "plane_key": surrogate(flights["tailnum"]).where(
                flights["tailnum"].notna(), UNKNOWN_KEY
            ),
            "weather_key": _weather_keys(flights, weather),
            "dest_code": flights["dest"],
            "sched_dep_local": sched_dep_local,
            "sched_dep_utc": sched_dep_utc,
            "sched_arr_local": sched_arr_local,
            "sched_arr_utc": sched_arr_utc,
            "dep_utc": sched_dep_utc + dep_delay,
            "arr_utc": sched_arr_utc + arr_delay,
            "dep_delay_min": flights["dep_delay"],
            "arr_delay_min": flights["arr_delay"],
            "air_time_min": flights["air_time"],
            "distance_mi": flights["distance"],
            "flight_status": status,
            "is_delayed_15": (flights["arr_delay"] > LATE_MINUTES).where(arrived),
            "is_corrected": flights[CORRECTIONS].notna(),
            "corrections": flights[CORRECTIONS],
        }
    )
    frame["run_id"] = run_id
    frame["loaded_at"] = pd.Timestamp(loaded_at)
    return frame


def minutes(values: pd.Series, per_unit: int = 1) -> pd.Series:
    """Durations of ``values * per_unit`` minutes (NaT where missing), vectorised in numpy
    (``pd.to_timedelta`` on nullable floats goes value by value)."""
    raw = values.to_numpy(dtype="float64", na_value=np.nan) * (per_unit * 60e9)
    return pd.Series(raw.astype("timedelta64[ns]"), index=values.index)


def _weather_keys(flights: pd.DataFrame, weather: pd.DataFrame) -> pd.Series:
    keys = surrogate(flights["origin"], flights["time_hour"])
    observed = surrogate(weather["origin"], weather["time_hour"])
    return keys.where(keys.isin(set(observed)), UNKNOWN_KEY)


def _scheduled_arrival(
    flights: pd.DataFrame, date: pd.Series, sched_dep_utc: pd.Series, airports: pd.DataFrame
) -> tuple[pd.Series, pd.Series]:
    clock = flights["sched_arr_time"].astype("float64")
    local = date + minutes(clock // 100, per_unit=60) + minutes(clock % 100)
    zones = flights["dest"].map(dict(zip(airports["faa"], airports["tzone"], strict=True)))
    utc = _to_utc(local, zones)
    # An arrival clock earlier than the departure is on the next local day; localise that day
    # again (adding 24 hours in UTC would be an hour off across a daylight-saving change).
    overnight = utc < sched_dep_utc
    local = local.mask(overnight, local + pd.Timedelta(days=1))
    utc = utc.mask(overnight, _to_utc(local[overnight], zones[overnight]))
    return local, utc


def _to_utc(local: pd.Series, zones: pd.Series) -> pd.Series:
    """Local wall-clock times in each row's IANA zone, as UTC (NaT where the zone is unknown)."""
    utc = pd.Series(pd.NaT, index=local.index, dtype="datetime64[ns, UTC]")
    for zone, rows in local.groupby(zones.fillna(""), sort=False):
        if not zone:
            continue
        stamped = rows.dt.tz_localize(
            zone, ambiguous=np.ones(len(rows), dtype=bool), nonexistent="shift_forward"
        )
        utc.loc[rows.index] = stamped.dt.tz_convert("UTC")
    return utc
