"""Where each warehouse column's data comes from, in terms of the data policy's columns.

The data policy classifies the *source* columns (``flights.tailnum``...). The warehouse
renames, derives and hashes them on the way in (:mod:`vigie.pipelines.transform`,
:mod:`vigie.pipelines.facts`, :mod:`vigie.monitoring.ingest_rows`). This module records,
for every warehouse column that holds source data, the source columns its values are
computed from, so that :mod:`vigie.warehouse.access` can give it the readers of those
columns. Keep it in step with the loader: a column added to a table and missing here is
refused by :func:`vigie.warehouse.access.plan_access` until it is mapped (or declared in the
policy's ``platform`` section).

Source columns are named ``<policy table>.<column>``.
"""

from __future__ import annotations

_DAY = ("flights.year", "flights.month", "flights.day")
_WEATHER_DAY = ("weather.year", "weather.month", "weather.day")
_SCHED_DEP = ("flights.time_hour", "flights.minute")
# The scheduled arrival is the arrival clock on the departure day (or the next one when it
# is earlier than the departure), placed in UTC through the destination's time zone.
_SCHED_ARR = (*_DAY, "flights.sched_arr_time", *_SCHED_DEP, "flights.dest", "airports.tzone")

#: Surrogate keys, by column name in any table, to the source columns of their natural key.
SURROGATE_KEYS: dict[str, tuple[str, ...]] = {
    "date_key": _DAY,
    "flight_key": (*_DAY, "flights.carrier", "flights.flight", "flights.origin",
                   "flights.sched_dep_time"),
    "carrier_key": ("airlines.carrier", "flights.carrier"),
    "airport_key": ("airports.faa", "flights.origin", "flights.dest"),
    "origin_airport_key": ("flights.origin",),
    "dest_airport_key": ("flights.dest",),
    "plane_key": ("planes.tailnum", "flights.tailnum"),
    "weather_key": ("weather.origin", "weather.time_hour"),
}  # fmt: skip

#: Load metadata of the tables loaded from the sources (not of ``platform`` tables).
BOOKKEEPING = frozenset({"run_id", "loaded_at", "is_inferred", "is_corrected", "corrections"})


def _same(table: str, *pairs: str) -> dict[str, tuple[str, ...]]:
    """``warehouse_column=source_column`` pairs of one source table."""
    return {w: (f"{table}.{s}",) for w, s in (pair.split("=") for pair in pairs)}


#: Warehouse table -> column -> the source columns its values are computed from.
LINEAGE: dict[str, dict[str, tuple[str, ...]]] = {
    "dim_date": dict.fromkeys(
        ("full_date", "year", "quarter", "month", "month_name", "day", "day_of_week",
         "day_of_year", "iso_week", "is_weekend"),
        _DAY,
    ),
    "dim_carrier": {
        "carrier_code": ("airlines.carrier", "flights.carrier"),  # inferred members: flights
        "carrier_name": ("airlines.name",),
    },
    "dim_airport": {
        "faa_code": ("airports.faa", "flights.origin", "flights.dest"),
        **_same("airports", "airport_name=name", "latitude=lat", "longitude=lon",
                "altitude_ft=alt", "utc_offset_h=tz", "dst_rule=dst", "tz_name=tzone"),
    },
    "dim_plane": {
        "tailnum_pseudonym": ("planes.tailnum", "flights.tailnum"),
        **_same("planes", "year_built=year", "plane_type=type", "manufacturer=manufacturer",
                "model=model", "engines=engines", "seats=seats", "speed_mph=speed",
                "engine_type=engine"),
    },
    "dim_weather_hour": {
        "local_date": _WEATHER_DAY,
        **_same("weather", "origin_code=origin", "time_hour_utc=time_hour", "local_hour=hour",
                "temp_f=temp", "dewpoint_f=dewp", "humidity_pct=humid", "wind_dir_deg=wind_dir",
                "wind_speed_mph=wind_speed", "wind_gust_mph=wind_gust", "precip_in=precip",
                "pressure_mb=pressure", "visibility_mi=visib"),
    },
    "fact_flight": {
        "flight_date": _DAY,
        "sched_dep_local": (*_DAY, "flights.hour", "flights.minute"),
        "sched_dep_utc": _SCHED_DEP,
        "sched_arr_local": _SCHED_ARR,
        "sched_arr_utc": _SCHED_ARR,
        "dep_utc": (*_SCHED_DEP, "flights.dep_delay"),
        "arr_utc": (*_SCHED_ARR, "flights.arr_delay"),
        # cancelled: no departure delay; diverted: a departure delay but no arrival delay
        "flight_status": ("flights.dep_delay", "flights.arr_delay"),
        "is_delayed_15": ("flights.arr_delay",),
        **_same("flights", "carrier_code=carrier", "flight_number=flight",
                "origin_code=origin", "dest_code=dest", "dep_delay_min=dep_delay",
                "arr_delay_min=arr_delay", "air_time_min=air_time", "distance_mi=distance"),
    },
    "fact_prediction": {
        "prediction_id": ("services.request_id",),  # <request_id>:<row>
        "client_pseudonym": ("services.client_id",),
    },
    "fact_outcome": {
        "arr_delay_min": ("flights.arr_delay",),
        "is_delayed_15": ("flights.arr_delay",),
    },
}  # fmt: skip
