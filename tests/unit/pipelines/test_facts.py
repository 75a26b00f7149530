"""The flight fact: UTC times through each airport's time zone, status and the 15-min label."""

from __future__ import annotations

from datetime import UTC, datetime

import pandas as pd
import pytest

from vigie.pipelines import transform
from vigie.pipelines.checks import CHECKS
from vigie.pipelines.expectations import load_expectations
from vigie.pipelines.facts import fact_flight
from vigie.pipelines.transform import UNKNOWN_KEY
from vigie.pipelines.validate import PARTITION, ROW, validate

EXPECTATIONS = load_expectations()
LOADED_AT = datetime(2024, 1, 1, tzinfo=UTC)

AIRPORTS = [
    ("JFK", "John F Kennedy Intl", "America/New_York"),
    ("EWR", "Newark Liberty Intl", "America/New_York"),
    ("MIA", "Miami Intl", "America/New_York"),
    ("LAX", "Los Angeles Intl", "America/Los_Angeles"),
]

#: JFK-LAX, scheduled 09:00 New York (14:00Z) arriving 12:20 Los Angeles (20:20Z).
FLIGHT = {
    "year": "2013",
    "month": "1",
    "day": "1",
    "dep_time": "905",
    "sched_dep_time": "900",
    "dep_delay": "5",
    "arr_time": "1230",
    "sched_arr_time": "1220",
    "arr_delay": "10",
    "carrier": "AA",
    "flight": "1",
    "tailnum": "N1",
    "origin": "JFK",
    "dest": "LAX",
    "air_time": "330",
    "distance": "2475",
    "hour": "9",
    "minute": "0",
    "time_hour": "2013-01-01T14:00:00Z",
}


def accepted(table: str, rows: list[dict[str, str]]) -> pd.DataFrame:
    columns = list(EXPECTATIONS.tables[table].columns)
    raw = pd.DataFrame(rows, columns=columns, dtype="string").replace("NA", pd.NA)
    raw[ROW] = range(1, len(rows) + 1)
    raw[PARTITION] = f"{table}/all/part.parquet"
    outcome = validate(table, raw, EXPECTATIONS.tables[table], CHECKS)
    assert outcome.quarantined.empty, outcome.quarantined["reasons"].tolist()
    return outcome.accepted


def airports() -> pd.DataFrame:
    base = {"lat": "40", "lon": "-73", "alt": "13", "tz": "-5", "dst": "A"}
    rows = [base | {"faa": f, "name": n, "tzone": z} for f, n, z in AIRPORTS]
    return accepted("airports", rows)


def weather(observations: list[tuple[str, str]]) -> pd.DataFrame:
    rows = []
    for origin, time_hour in observations:
        local = pd.Timestamp(time_hour).tz_convert("America/New_York")
        rows.append(
            {
                "origin": origin,
                "year": str(local.year),
                "month": str(local.month),
                "day": str(local.day),
                "hour": str(local.hour),
                "time_hour": time_hour,
            }
            | dict.fromkeys(
                ("temp", "dewp", "humid", "wind_dir", "wind_speed", "wind_gust", "precip"), "NA"
            )
            | dict.fromkeys(("pressure", "visib"), "NA")
        )
    return accepted("weather", rows)


def facts(
    rows: list[dict[str, str]], observed: list[tuple[str, str]] | None = None
) -> pd.DataFrame:
    frame = fact_flight(
        accepted("flights", rows), airports(), weather(observed or []), "run-1", LOADED_AT
    )
    return frame.set_index("flight_number", drop=False)


def utc(text: str) -> pd.Timestamp:
    return pd.Timestamp(text, tz="UTC")


def test_a_west_coast_arrival_is_converted_from_los_angeles_time() -> None:
    row = facts([FLIGHT]).loc[1]

    assert row["sched_dep_local"] == pd.Timestamp("2013-01-01 09:00")
    assert row["sched_dep_utc"] == utc("2013-01-01 14:00")
    assert row["sched_arr_local"] == pd.Timestamp("2013-01-01 12:20")
    assert row["sched_arr_utc"] == utc("2013-01-01 20:20")
    assert row["dep_utc"] == utc("2013-01-01 14:05")
    assert row["arr_utc"] == utc("2013-01-01 20:30")


def test_a_west_coast_arrival_in_summer_uses_daylight_time() -> None:
    summer = FLIGHT | {"month": "7", "day": "1", "time_hour": "2013-07-01T13:00:00Z"}
    row = facts([summer]).loc[1]

    assert row["sched_dep_utc"] == utc("2013-07-01 13:00")
    assert row["sched_arr_utc"] == utc("2013-07-01 19:20")  # 12:20 PDT = UTC-7


def test_an_overnight_arrival_is_on_the_next_day() -> None:
    """22:59 from New York (03:59Z next day) to Los Angeles, arriving 01:55 local."""
    overnight = FLIGHT | {
        "flight": "2",
        "dep_time": "2259",
        "sched_dep_time": "2259",
        "dep_delay": "0",
        "arr_time": "155",
        "sched_arr_time": "155",
        "arr_delay": "0",
        "hour": "22",
        "minute": "59",
        "time_hour": "2013-01-02T03:00:00Z",
    }
    row = facts([overnight]).loc[2]

    assert row["flight_date"] == pd.Timestamp("2013-01-01").date()
    assert row["sched_dep_utc"] == utc("2013-01-02 03:59")
    assert row["sched_arr_local"] == pd.Timestamp("2013-01-02 01:55")
    assert row["sched_arr_utc"] == utc("2013-01-02 09:55")
    assert row["sched_arr_utc"] > row["sched_dep_utc"]


def test_an_overnight_arrival_after_the_dst_change_uses_standard_time() -> None:
    """Leaves 2013-11-02 23:00 EDT (03:00Z) for Miami, arrives 02:30 on 2013-11-03, an hour
    after clocks went back: 02:30 EST is 07:30Z (not 06:30Z, which is 01:30 EST)."""
    overnight = FLIGHT | {
        "month": "11",
        "day": "2",
        "dep_time": "2300",
        "sched_dep_time": "2300",
        "dep_delay": "0",
        "arr_time": "230",
        "sched_arr_time": "230",
        "arr_delay": "0",
        "dest": "MIA",
        "hour": "23",
        "minute": "0",
        "time_hour": "2013-11-03T03:00:00Z",
    }
    row = facts([overnight]).loc[1]

    assert row["sched_arr_local"] == pd.Timestamp("2013-11-03 02:30")
    assert row["sched_arr_utc"] == utc("2013-11-03 07:30")


def test_sched_dep_utc_is_time_hour_plus_the_minute() -> None:
    rows = [
        FLIGHT
        | {"flight": str(n), "sched_dep_time": f"9{m:02d}", "minute": str(m)}
        | {"dep_time": f"9{m:02d}", "dep_delay": "0"}
        for n, m in ((1, 0), (2, 7), (3, 59))
    ]
    frame = facts(rows)

    assert frame.loc[[1, 2, 3], "sched_dep_utc"].tolist() == [
        utc("2013-01-01 14:00"),
        utc("2013-01-01 14:07"),
        utc("2013-01-01 14:59"),
    ]


def test_sched_dep_utc_in_the_repeated_hour_follows_time_hour() -> None:
    """Both 01:30 departures of 2013-11-03 keep their own UTC instant, an hour apart."""
    flight = FLIGHT | {"month": "11", "day": "3", "hour": "1", "minute": "30"}
    flight |= {"sched_dep_time": "130", "dep_time": "130", "dep_delay": "0"}
    flight |= {"sched_arr_time": "430", "arr_time": "430", "arr_delay": "0"}
    frame = facts(
        [
            flight | {"time_hour": "2013-11-03T05:00:00Z"},
            flight | {"flight": "2", "time_hour": "2013-11-03T06:00:00Z"},
        ]
    )

    assert frame.loc[1, "sched_dep_utc"] == utc("2013-11-03 05:30")
    assert frame.loc[2, "sched_dep_utc"] == utc("2013-11-03 06:30")
    assert frame.loc[1, "flight_key"] != frame.loc[2, "flight_key"]


def test_flight_status_arrived_cancelled_diverted() -> None:
    cancelled = (
        FLIGHT
        | {"flight": "2"}
        | dict.fromkeys(("dep_time", "dep_delay", "arr_time", "arr_delay", "air_time"), "NA")
    )
    diverted = FLIGHT | {"flight": "3"} | dict.fromkeys(("arr_time", "arr_delay", "air_time"), "NA")
    frame = facts([FLIGHT, cancelled, diverted])

    assert frame.loc[[1, 2, 3], "flight_status"].tolist() == ["arrived", "cancelled", "diverted"]
    assert pd.isna(frame.loc[2, "dep_utc"])
    assert pd.isna(frame.loc[2, "arr_utc"])
    assert frame.loc[3, "dep_utc"] == utc("2013-01-01 14:05")
    assert pd.isna(frame.loc[3, "arr_utc"])


@pytest.mark.parametrize(
    ("arr_delay", "arr_time", "expected"),
    [("16", "1236", True), ("15", "1235", False), ("-20", "1200", False), ("NA", "NA", None)],
)
def test_is_delayed_15_means_more_than_15_minutes_late(
    arr_delay: str, arr_time: str, expected: bool | None
) -> None:
    row = facts([FLIGHT | {"arr_delay": arr_delay, "arr_time": arr_time}]).loc[1]

    if expected is None:
        assert pd.isna(row["is_delayed_15"])
    else:
        assert bool(row["is_delayed_15"]) is expected


def test_keys_point_at_the_dimension_members_built_from_the_same_records() -> None:
    flights = accepted("flights", [FLIGHT, FLIGHT | {"flight": "2", "tailnum": "NA"}])
    ports = airports()
    observed = weather([("JFK", "2013-01-01T14:00:00Z"), ("JFK", "2013-01-01T15:00:00Z")])
    frame = fact_flight(flights, ports, observed, "run-1", LOADED_AT).set_index("flight_number")
    dims = {
        "carrier": transform.dim_carrier(
            pd.DataFrame({"carrier": ["AA"], "name": ["American"]}),
            flights["carrier"],
            "run-1",
            LOADED_AT,
        ).set_index("carrier_code")["carrier_key"],
        "airport": transform.dim_airport(
            ports, pd.concat([flights["origin"], flights["dest"]]), "run-1", LOADED_AT
        ).set_index("faa_code")["airport_key"],
        "weather": transform.dim_weather_hour(observed, "run-1", LOADED_AT).set_index(
            "time_hour_utc"
        )["weather_key"],
    }
    one = frame.loc[1]

    assert one["date_key"] == 20130101
    assert one["carrier_key"] == dims["carrier"]["AA"]
    assert one["origin_airport_key"] == dims["airport"]["JFK"]
    assert one["dest_airport_key"] == dims["airport"]["LAX"]
    assert one["weather_key"] == dims["weather"][pd.Timestamp("2013-01-01T14:00:00Z")]
    assert one["weather_key"] != UNKNOWN_KEY
    assert one["plane_key"] != UNKNOWN_KEY
    assert frame.loc[2, "plane_key"] == UNKNOWN_KEY


def test_plane_key_matches_the_inferred_plane_member() -> None:
    flights = accepted("flights", [FLIGHT])
    frame = fact_flight(flights, airports(), weather([]), "run-1", LOADED_AT)
    no_planes = pd.DataFrame(
        columns=[
            "tailnum",
            "year",
            "type",
            "manufacturer",
            "model",
            "engines",
            "seats",
            "speed",
            "engine",
            "_corrections",
        ]
    )
    planes = transform.dim_plane(no_planes, flights["tailnum"], "run-1", LOADED_AT)
    inferred = planes[planes["is_inferred"]]

    assert inferred["tailnum_pseudonym"].tolist() == ["N1"]
    assert frame["plane_key"].tolist() == inferred["plane_key"].tolist()


def test_a_flight_with_no_weather_observation_gets_the_unknown_weather_member() -> None:
    frame = facts([FLIGHT], observed=[("EWR", "2013-01-01T14:00:00Z")])

    assert frame.loc[1, "weather_key"] == UNKNOWN_KEY


def test_corrections_are_carried_onto_the_fact() -> None:
    frame = facts([FLIGHT, FLIGHT | {"flight": "2", "carrier": "aa"}])

    assert not frame.loc[1, "is_corrected"]
    assert frame.loc[2, "is_corrected"]
    assert frame.loc[2, "corrections"] == "normalized_code:carrier"
    assert frame.loc[2, "carrier_code"] == "AA"
    assert (frame["run_id"] == "run-1").all()
