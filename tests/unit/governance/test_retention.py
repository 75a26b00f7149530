"""Retention decisions: each store's period from the policy, and ages against a clock."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from vigie.errors import ErrorCode, VigieError
from vigie.governance.policy import DataPolicy, default_policy_path, load_policy
from vigie.governance.retention import (
    RetentionReport,
    month_after,
    parse_instant,
    store_retention,
)

AS_OF = date(2026, 12, 7)


@pytest.fixture(scope="module")
def policy() -> DataPolicy:
    return load_policy()


def with_stores(tmp_path: Path, stores: dict[str, Any]) -> Path:
    document = yaml.safe_load(default_policy_path().read_text())
    document["stores"] = stores
    path = tmp_path / "policy.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


def test_a_platform_store_keeps_its_declared_retention(policy: DataPolicy) -> None:
    retention = store_retention(policy, "payload_log")

    assert (retention.duration, retention.days, retention.basis) == ("P1Y", 365, "declared")


def test_a_store_keeps_a_record_as_long_as_its_longest_lived_column(policy: DataPolicy) -> None:
    # a snapshot row holds flights (P7Y), weather (P7Y) and aircraft (planes, P10Y) columns
    snapshots = store_retention(policy, "snapshots")
    outcomes = store_retention(policy, "fact_outcome")

    assert (snapshots.duration, snapshots.days) == ("P10Y", 3650)
    assert snapshots.basis.startswith("planes.")
    assert (outcomes.duration, outcomes.basis) == ("P7Y", "flights.arr_time")


def test_records_of_several_tables_are_held_to_their_own_table(policy: DataPolicy) -> None:
    by_table = {
        table: store_retention(policy, "quarantine", table).duration
        for table in ("flights", "weather", "planes", "airlines", "outcome_events")
    }

    # a table the store does not name keeps the store's longest retention, never less
    assert by_table == {
        "flights": "P7Y",
        "weather": "P7Y",
        "planes": "P10Y",
        "airlines": "P10Y",
        "outcome_events": "P10Y",
    }


def test_the_cutoff_is_midnight_utc_retention_days_before_as_of(policy: DataPolicy) -> None:
    retention = store_retention(policy, "payload_log")
    cutoff = retention.cutoff(AS_OF)

    assert cutoff == datetime(2025, 12, 7, tzinfo=UTC)
    assert retention.expired(cutoff - timedelta(microseconds=1), AS_OF)
    assert not retention.expired(cutoff, AS_OF)
    # a naive instant is UTC, as the warehouse stores it
    assert retention.expired(datetime(2025, 12, 6, 23, 59), AS_OF)
    # the same record is kept a day earlier: the clock decides, nothing else
    assert not retention.expired(datetime(2025, 12, 6, 23, 59), AS_OF - timedelta(days=1))


def test_the_2013_flights_have_outlived_seven_years_but_not_their_aircraft(
    policy: DataPolicy,
) -> None:
    flight_day = datetime(2013, 1, 1, 5, 15, tzinfo=UTC)

    assert store_retention(policy, "fact_outcome").expired(flight_day, date(2020, 1, 2))
    assert not store_retention(policy, "fact_outcome").expired(flight_day, date(2019, 12, 30))
    assert not store_retention(policy, "quarantine", "planes").expired(flight_day, date(2022, 1, 1))


def test_a_store_the_policy_does_not_declare_is_refused(policy: DataPolicy) -> None:
    with pytest.raises(VigieError) as refused:
        store_retention(policy, "fact_flight")

    assert refused.value.code is ErrorCode.POLICY_VIOLATION
    assert "'fact_flight'" in str(refused.value) and "stores section" in str(refused.value)


@pytest.mark.parametrize(
    ("store", "expected"),
    [
        (
            {"description": "x", "holds": ["flights.year"], "retention": "P1Y"},
            "either the source columns it holds (holds) or a retention",
        ),
        ({"description": "x"}, "either the source columns it holds"),
        ({"description": "x", "holds": ["flights.nope"]}, "'flights.nope' is not a classified"),
        ({"description": "x", "holds": ["trains.*"]}, "'trains.*' is not a classified"),
        ({"description": "x", "retention": "1 year"}, "stores.bad.retention: '1 year'"),
    ],
)
def test_a_bad_store_is_refused_when_the_policy_is_read(
    tmp_path: Path, store: dict[str, Any], expected: str
) -> None:
    with pytest.raises(VigieError) as refused:
        load_policy(with_stores(tmp_path, {"bad": store}))

    assert refused.value.code is ErrorCode.CONFIGURATION
    assert expected in str(refused.value)


def test_month_after_and_instants() -> None:
    assert month_after("2013-12") == datetime(2014, 1, 1, tzinfo=UTC)
    assert month_after("2013-01") == datetime(2013, 2, 1, tzinfo=UTC)
    assert month_after("unknown") is None
    assert parse_instant("2013-01-01T05:00:00-05:00") == datetime(2013, 1, 1, 10, tzinfo=UTC)
    assert parse_instant("2013-01-01T05:00:00") == datetime(2013, 1, 1, 5, tzinfo=UTC)
    assert parse_instant("yesterday") is None
    assert parse_instant(None) is None


def test_the_report_counts_per_store_period_and_month(policy: DataPolicy) -> None:
    report = RetentionReport(AS_OF, dry_run=True)
    flights = report.start(policy, "quarantine", "row", table="flights")
    planes = report.start(policy, "quarantine", "row", table="planes")
    flights.count(datetime(2013, 1, 1, tzinfo=UTC), 3)
    flights.count_month("2013-11", 2)
    planes.kept.append({"what": "x", "why": "y"})

    document = report.to_json()

    assert document["as_of"] == "2026-12-07" and document["dry_run"] is True
    assert document["deleted"] == 5 == report.deleted
    quarantine = document["stores"]["quarantine"]
    assert quarantine["deleted"] == 5
    assert [p["table"] for p in quarantine["periods"]] == ["flights", "planes"]
    assert quarantine["periods"][0]["by_month"] == {"2013-01": 3, "2013-11": 2}
    assert quarantine["periods"][0]["cutoff"] == "2019-12-09T00:00:00+00:00"
    assert quarantine["periods"][1]["kept"] == [{"what": "x", "why": "y"}]
