"""Table-level checks named in the expectations: calendar, clocks, time zones, consistency.

The source records local New York times (``year``, ``month``, ``day``, ``hour``, clock
columns ``hhmm``) and the scheduled hour in UTC (``time_hour``). Checks derive one from the
other through the IANA time zone, so daylight-saving changes are handled, not guessed.
"""

from __future__ import annotations

import zoneinfo

import pandas as pd

from vigie.pipelines.validate import Finding, TableCheck, finding

#: Time zone of the source's local times (all origins are New York airports).
SOURCE_TZ = "America/New_York"
MINUTES_PER_DAY = 1440


def local_dates(frame: pd.DataFrame) -> pd.Series:
    """The local calendar date from year/month/day (NaT where it is not a real date)."""
    parts = pd.DataFrame({"year": frame["year"], "month": frame["month"], "day": frame["day"]})
    return pd.to_datetime(parts.astype("float64"), errors="coerce")


def calendar_date(frame: pd.DataFrame) -> list[Finding]:
    """year/month/day must name a real calendar day."""
    date = local_dates(frame)
    parts_known = frame[["year", "month", "day"]].notna().all(axis=1)
    return [
        finding(
            "invalid_date",
            "year+month+day",
            parts_known & date.isna(),
            lambda f: (
                "year/month/day "
                + f["year"].astype("string")
                + "-"
                + f["month"].astype("string")
                + "-"
                + f["day"].astype("string")
                + " is not a calendar date"
            ),
            frame,
        )
    ]


def scheduled_clock_matches(frame: pd.DataFrame) -> list[Finding]:
    """hour and minute must be the scheduled departure clock ``sched_dep_time``."""
    bad = frame["hour"] * 100 + frame["minute"] != frame["sched_dep_time"]
    return [
        finding(
            "clock_mismatch",
            "hour+minute",
            bad,
            lambda f: (
                "hour:minute "
                + f["hour"].astype("string")
                + ":"
                + f["minute"].astype("string")
                + " differs from sched_dep_time "
                + f["sched_dep_time"].astype("string")
            ),
            frame,
        )
    ]


def time_hour_matches_local(frame: pd.DataFrame) -> list[Finding]:
    """``time_hour`` (UTC) must be the local date and hour in New York, DST included."""
    local = frame["time_hour"].dt.tz_convert(SOURCE_TZ)
    date = local_dates(frame)
    bad = (local.dt.tz_localize(None).dt.normalize() != date) | (local.dt.hour != frame["hour"])
    bad &= frame["time_hour"].notna() & date.notna() & frame["hour"].notna()
    return [
        finding(
            "time_zone_mismatch",
            "time_hour",
            bad,
            lambda f: (
                "time_hour "
                + f["time_hour"].astype("string")
                + " is not the local hour in "
                + SOURCE_TZ
            ),
            frame,
        )
    ]


def _minutes(clock: pd.Series) -> pd.Series:
    return (clock // 100) * 60 + clock % 100


def departure_consistent(frame: pd.DataFrame) -> list[Finding]:
    """Actual departure = scheduled departure + departure delay (modulo a day)."""
    has_time, has_delay = frame["dep_time"].notna(), frame["dep_delay"].notna()
    expected = (_minutes(frame["sched_dep_time"]) + frame["dep_delay"]) % MINUTES_PER_DAY
    wrong = has_time & has_delay & (expected != _minutes(frame["dep_time"]) % MINUTES_PER_DAY)
    return [
        finding(
            "delay_mismatch",
            "dep_delay",
            wrong,
            lambda f: (
                "dep_time "
                + f["dep_time"].astype("string")
                + " is not sched_dep_time + dep_delay ("
                + f["dep_delay"].astype("string")
                + " min)"
            ),
            frame,
        ),
        finding(
            "incomplete_departure",
            "dep_time",
            has_time != has_delay,
            lambda f: "dep_time and dep_delay must be both present or both absent",
            frame,
        ),
    ]


def arrival_consistent(frame: pd.DataFrame) -> list[Finding]:
    """Arrival delay agrees with the arrival clocks, and never exists without a departure."""
    has_delay = frame["arr_delay"].notna()
    expected = (_minutes(frame["sched_arr_time"]) + frame["arr_delay"]) % MINUTES_PER_DAY
    wrong = (
        has_delay
        & frame["arr_time"].notna()
        & (expected != _minutes(frame["arr_time"]) % MINUTES_PER_DAY)
    )
    orphan = (has_delay | frame["arr_time"].notna()) & frame["dep_time"].isna()
    return [
        finding(
            "delay_mismatch",
            "arr_delay",
            wrong,
            lambda f: (
                "arr_time "
                + f["arr_time"].astype("string")
                + " is not sched_arr_time + arr_delay ("
                + f["arr_delay"].astype("string")
                + " min)"
            ),
            frame,
        ),
        finding(
            "arrival_without_departure",
            "arr_time",
            orphan,
            lambda f: "an arrival is recorded for a flight that never departed",
            frame,
        ),
    ]


def known_time_zone(frame: pd.DataFrame) -> list[Finding]:
    """``tzone``, when given, must be an IANA time zone name."""
    known = zoneinfo.available_timezones()
    bad = frame["tzone"].notna() & ~frame["tzone"].isin(known)
    return [
        finding(
            "unknown_time_zone",
            "tzone",
            bad,
            lambda f: (
                "tzone " + f["tzone"].astype("string").map(repr) + " is not an IANA time zone"
            ),
            frame,
        )
    ]


#: The finding names each table-level check can report (what the quality report lists).
FINDINGS: dict[str, tuple[str, ...]] = {
    "calendar_date": ("invalid_date",),
    "scheduled_clock_matches": ("clock_mismatch",),
    "time_hour_matches_local": ("time_zone_mismatch",),
    "departure_consistent": ("delay_mismatch", "incomplete_departure"),
    "arrival_consistent": ("delay_mismatch", "arrival_without_departure"),
    "known_time_zone": ("unknown_time_zone",),
}

CHECKS: dict[str, TableCheck] = {
    "calendar_date": calendar_date,
    "scheduled_clock_matches": scheduled_clock_matches,
    "time_hour_matches_local": time_hour_matches_local,
    "departure_consistent": departure_consistent,
    "arrival_consistent": arrival_consistent,
    "known_time_zone": known_time_zone,
}
