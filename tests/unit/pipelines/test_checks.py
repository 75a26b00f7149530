"""Table-level checks of the shipped expectations: calendar, time zones (DST), consistency."""

from __future__ import annotations

import pandas as pd
import pytest

from vigie.pipelines.checks import CHECKS, calendar_date, time_hour_matches_local
from vigie.pipelines.expectations import load_expectations
from vigie.pipelines.validate import PARTITION, ROW, Outcome, validate

EXPECTATIONS = load_expectations()

WEATHER = {
    "origin": "EWR",
    "year": "2013",
    "month": "1",
    "day": "1",
    "hour": "1",
    "temp": "39.02",
    "dewp": "26.06",
    "humid": "59.37",
    "wind_dir": "270",
    "wind_speed": "10.35702",
    "wind_gust": "NA",
    "precip": "0",
    "pressure": "1012",
    "visib": "10",
    "time_hour": "2013-01-01T06:00:00Z",
}

#: UA 1545 EWR-IAH, the first flight of 2013, as the source writes it.
FLIGHT = {
    "year": "2013",
    "month": "1",
    "day": "1",
    "dep_time": "517",
    "sched_dep_time": "515",
    "dep_delay": "2",
    "arr_time": "830",
    "sched_arr_time": "819",
    "arr_delay": "11",
    "carrier": "UA",
    "flight": "1545",
    "tailnum": "N14228",
    "origin": "EWR",
    "dest": "IAH",
    "air_time": "227",
    "distance": "1400",
    "hour": "5",
    "minute": "15",
    "time_hour": "2013-01-01T10:00:00Z",
}


def run(table: str, rows: list[dict[str, str]]) -> Outcome:
    raw = pd.DataFrame(rows, dtype="string").replace("NA", pd.NA)
    raw[ROW] = range(1, len(rows) + 1)
    raw[PARTITION] = f"{table}/month=2013-01/part.parquet"
    return validate(table, raw, EXPECTATIONS.tables[table], CHECKS)


def failed(outcome: Outcome) -> dict[int, set[tuple[str, str]]]:
    """Source row -> {(check, column)} of every quarantined row."""
    return {
        int(row[ROW]): {(r["check"], r["column"]) for r in row["reasons"]}
        for row in outcome.quarantined.to_dict("records")
    }


def test_the_real_template_rows_pass_every_check() -> None:
    assert run("weather", [WEATHER]).quarantined.empty
    assert run("flights", [FLIGHT]).quarantined.empty


@pytest.mark.parametrize(("month", "day"), [("2", "30"), ("2", "29"), ("4", "31"), ("13", "1")])
def test_calendar_date_refuses_days_that_do_not_exist(month: str, day: str) -> None:
    outcome = run("weather", [WEATHER | {"month": month, "day": day}])

    assert outcome.accepted.empty
    reasons = failed(outcome)[1]
    if month == "13":  # the month itself is out of range before it is a date
        assert ("out_of_range", "month") in reasons
    else:
        assert reasons == {("invalid_date", "year+month+day")}


def test_calendar_date_accepts_a_leap_day() -> None:
    typed = pd.DataFrame({"year": [2012, 2013], "month": [2, 2], "day": [29, 28]}, dtype="Int64")

    (finding,) = calendar_date(typed)
    assert not finding.mask.any()


def test_calendar_date_message_names_the_date() -> None:
    outcome = run("flights", [FLIGHT | {"month": "2", "day": "30"}])

    (reason,) = outcome.quarantined.iloc[0]["reasons"]
    assert "2013-2-30" in reason["message"]


def test_time_hour_in_winter_is_five_hours_after_new_york() -> None:
    outcome = run(
        "weather",
        [
            WEATHER,
            WEATHER | {"origin": "JFK", "time_hour": "2013-01-01T05:00:00Z"},
            WEATHER | {"origin": "LGA", "time_hour": "2013-01-01T07:00:00Z"},
        ],
    )

    assert failed(outcome) == {
        2: {("time_zone_mismatch", "time_hour")},
        3: {("time_zone_mismatch", "time_hour")},
    }


def test_time_hour_in_summer_is_four_hours_after_new_york() -> None:
    summer = WEATHER | {"month": "7", "day": "4", "hour": "12"}
    outcome = run(
        "weather",
        [
            summer | {"time_hour": "2013-07-04T16:00:00Z"},
            summer | {"origin": "JFK", "time_hour": "2013-07-04T17:00:00Z"},
        ],
    )

    assert failed(outcome) == {2: {("time_zone_mismatch", "time_hour")}}


def test_the_repeated_local_hour_of_the_dst_change_passes_both_times() -> None:
    """2013-11-03 01:00-01:59 happens twice in New York: first EDT (05Z), then EST (06Z)."""
    dst = WEATHER | {"month": "11", "day": "3", "hour": "1"}
    outcome = run(
        "weather",
        [
            dst | {"time_hour": "2013-11-03T05:00:00Z"},
            dst | {"time_hour": "2013-11-03T06:00:00Z"},
        ],
    )

    assert outcome.quarantined.empty
    assert len(outcome.accepted) == 2, "the two 01:00 readings are distinct hours"


@pytest.mark.parametrize("time_hour", ["2013-11-03T04:00:00Z", "2013-11-03T07:00:00Z"])
def test_a_time_hour_shifted_by_one_hour_at_the_dst_change_fails(time_hour: str) -> None:
    outcome = run(
        "weather", [WEATHER | {"month": "11", "day": "3", "hour": "1"} | {"time_hour": time_hour}]
    )

    assert failed(outcome) == {1: {("time_zone_mismatch", "time_hour")}}


def test_a_flight_in_the_repeated_hour_passes_with_either_time_hour() -> None:
    flight = FLIGHT | {
        "month": "11",
        "day": "3",
        "dep_time": "135",
        "sched_dep_time": "130",
        "dep_delay": "5",
        "hour": "1",
        "minute": "30",
    }
    outcome = run(
        "flights",
        [
            flight | {"time_hour": "2013-11-03T05:00:00Z"},
            flight | {"flight": "1546", "time_hour": "2013-11-03T06:00:00Z"},
            flight | {"flight": "1547", "time_hour": "2013-11-03T07:00:00Z"},
        ],
    )

    assert failed(outcome) == {3: {("time_zone_mismatch", "time_hour")}}


def test_time_hour_check_skips_rows_without_a_date() -> None:
    typed = pd.DataFrame(
        {
            "year": pd.array([2013, 2013], dtype="Int64"),
            "month": pd.array([2, 1], dtype="Int64"),
            "day": pd.array([30, 1], dtype="Int64"),
            "hour": pd.array([1, 1], dtype="Int64"),
            "time_hour": pd.to_datetime(["2013-01-01T00:00:00Z"] * 2, utc=True),
        }
    )

    (finding,) = time_hour_matches_local(typed)
    assert finding.mask.tolist() == [False, True]


def test_scheduled_clock_must_match_hour_and_minute() -> None:
    outcome = run("flights", [FLIGHT | {"minute": "16"}])

    assert failed(outcome) == {1: {("clock_mismatch", "hour+minute")}}


def test_departure_delay_must_match_the_clocks() -> None:
    outcome = run(
        "flights",
        [
            FLIGHT | {"dep_delay": "3"},
            FLIGHT | {"flight": "2", "dep_time": "NA"},
            FLIGHT | {"flight": "3", "dep_delay": "NA"},
        ],
    )

    assert failed(outcome) == {
        1: {("delay_mismatch", "dep_delay")},
        2: {("incomplete_departure", "dep_time"), ("arrival_without_departure", "arr_time")},
        3: {("incomplete_departure", "dep_time")},
    }


def test_departure_delay_past_midnight_is_consistent() -> None:
    late = FLIGHT | {
        "dep_time": "5",
        "sched_dep_time": "2355",
        "dep_delay": "10",
        "hour": "23",
        "minute": "55",
        "time_hour": "2013-01-02T04:00:00Z",
        "arr_time": "250",
        "sched_arr_time": "239",
    }
    early = FLIGHT | {"flight": "7", "dep_time": "2350", "sched_dep_time": "5", "dep_delay": "-15"}
    early |= {"hour": "0", "minute": "5", "time_hour": "2013-01-01T05:00:00Z"}
    early |= {"arr_time": "300", "sched_arr_time": "249"}

    outcome = run("flights", [late, early])

    assert outcome.quarantined.empty, failed(outcome)


def test_arrival_delay_must_match_the_clocks() -> None:
    outcome = run("flights", [FLIGHT | {"arr_delay": "12"}, FLIGHT | {"flight": "2"}])

    assert failed(outcome) == {1: {("delay_mismatch", "arr_delay")}}


def test_an_arrival_without_a_departure_is_refused() -> None:
    no_departure = {"dep_time": "NA", "dep_delay": "NA", "air_time": "NA"}
    cancelled = FLIGHT | no_departure | {"arr_time": "NA", "arr_delay": "NA"}
    ghost = FLIGHT | no_departure | {"flight": "2"}

    outcome = run("flights", [cancelled, ghost])

    assert failed(outcome) == {2: {("arrival_without_departure", "arr_time")}}


def test_a_diverted_flight_without_arrival_is_consistent() -> None:
    diverted = FLIGHT | {"arr_time": "NA", "arr_delay": "NA", "air_time": "NA"}

    assert run("flights", [diverted]).quarantined.empty


def test_unknown_time_zone_of_an_airport_is_refused() -> None:
    airport = {
        "faa": "LAX",
        "name": "Los Angeles Intl",
        "lat": "33.942536",
        "lon": "-118.408075",
        "alt": "126",
        "tz": "-8",
        "dst": "A",
        "tzone": "America/Los_Angeles",
    }
    outcome = run("airports", [airport, airport | {"faa": "ZZZ", "tzone": "Mars/Olympus_Mons"}])

    assert failed(outcome) == {2: {("unknown_time_zone", "tzone")}}
