"""Who may read which warehouse column: the rules, on the schema the migrations build."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from vigie.errors import ErrorCode, VigieError
from vigie.governance.policy import PROTECTED, DataPolicy, default_policy_path, load_policy
from vigie.warehouse.access import AccessPlan, plan_access, warehouse_schema
from vigie.warehouse.connection import connect
from vigie.warehouse.migrations import migrate
from vigie.warehouse.provenance import LINEAGE, SURROGATE_KEYS

Schema = dict[str, tuple[str, ...]]
RULES = {"source", "key", "bookkeeping", "platform"}


@pytest.fixture(scope="module")
def schema() -> Iterator[Schema]:
    """The warehouse schema exactly as the shipped migrations build it (embedded DuckDB)."""
    warehouse = connect("duckdb:///:memory:")
    try:
        migrate(warehouse)
        yield warehouse_schema(warehouse)
    finally:
        warehouse.close()


@pytest.fixture(scope="module")
def policy() -> DataPolicy:
    return load_policy()


@pytest.fixture(scope="module")
def plan(policy: DataPolicy, schema: Schema) -> AccessPlan:
    return plan_access(policy, schema)


def changed_policy(tmp_path: Path, change: Any) -> DataPolicy:
    """The shipped policy with ``change(document)`` applied, read from a file."""
    document = yaml.safe_load(default_policy_path().read_text())
    change(document)
    path = tmp_path / "policy.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return load_policy(path)


def test_every_warehouse_column_has_exactly_one_rule(plan: AccessPlan, schema: Schema) -> None:
    assert {"fact_flight", "dim_plane", "fact_prediction", "quarantine"} <= set(schema)
    assert [(a.table, a.column) for a in plan.columns] == [
        (table, column) for table in sorted(schema) for column in schema[table]
    ]
    for access in plan.columns:
        assert access.rule in RULES, access
        assert access.classifications, access
        if access.rule in {"source", "key"}:
            assert access.sources, access


def test_lineage_names_only_columns_the_warehouse_has(schema: Schema) -> None:
    for table, columns in LINEAGE.items():
        assert set(columns) <= set(schema[table]), table
    every_column = {c for columns in schema.values() for c in columns}
    assert set(SURROGATE_KEYS) <= every_column


def test_platform_section_names_only_columns_the_warehouse_has(
    policy: DataPolicy, schema: Schema
) -> None:
    assert policy.platform, "the shipped policy declares the platform tables"
    for table, declared in policy.platform.items():
        assert set(declared.columns) <= set(schema[table]), table


def test_a_column_no_rule_covers_is_refused_by_name(policy: DataPolicy, schema: Schema) -> None:
    grown = dict(schema) | {
        "fact_flight": (*schema["fact_flight"], "tailnum_raw"),
        "fact_new": ("anything",),
    }
    with pytest.raises(VigieError) as refused:
        plan_access(policy, grown)
    assert refused.value.code is ErrorCode.POLICY_VIOLATION
    assert "fact_flight.tailnum_raw: no rule covers it" in refused.value.message
    assert "fact_new.anything: no rule covers it" in refused.value.message


def test_a_column_two_rules_cover_is_refused(tmp_path: Path, schema: Schema) -> None:
    def declare_flight_key(document: dict[str, Any]) -> None:
        columns = document["platform"]["fact_prediction"]["columns"]
        columns["flight_key"] = {"classification": "internal", "readers": ["service"]}

    with pytest.raises(VigieError) as refused:
        plan_access(changed_policy(tmp_path, declare_flight_key), schema)
    assert "fact_prediction.flight_key: covered by key and platform" in refused.value.message


def test_a_source_column_missing_from_the_policy_is_refused(tmp_path: Path, schema: Schema) -> None:
    def drop_distance(document: dict[str, Any]) -> None:
        del document["tables"]["flights"]["columns"]["distance"]

    with pytest.raises(VigieError) as refused:
        plan_access(changed_policy(tmp_path, drop_distance), schema)
    assert "fact_flight.distance_mi: its source column flights.distance" in refused.value.message


@pytest.mark.parametrize("role", ["data_engineer", "auditor"])
def test_data_engineer_and_auditor_read_everything_stored(
    plan: AccessPlan, schema: Schema, role: str
) -> None:
    assert plan.readable(role) == schema


def test_service_reads_no_identifying_column(plan: AccessPlan) -> None:
    readable = [a for a in plan.columns if "service" in a.readers]
    assert readable
    for access in readable:
        assert not set(access.classifications) & PROTECTED, access
    refused = {(a.table, a.column) for a in plan.columns if "service" not in a.readers}
    assert {
        ("dim_plane", "tailnum_pseudonym"),
        ("dim_plane", "plane_key"),
        ("fact_flight", "plane_key"),
        ("fact_prediction", "client_pseudonym"),
        ("fact_prediction", "features"),
        ("quarantine", "record"),
        ("pipeline_run", "actor"),
    } <= refused


def test_a_derived_column_takes_the_readers_of_all_its_sources(plan: AccessPlan) -> None:
    service = plan.readable("service")
    assert {"sched_dep_utc", "arr_delay_min", "arr_utc", "is_delayed_15"} <= set(
        service["fact_flight"]
    )
    # observed after departure, and staff-only in the policy: never the service's
    assert not {"dep_delay_min", "dep_utc", "air_time_min", "flight_status"} & set(
        service["fact_flight"]
    )
    assert "dep_delay_min" in plan.readable("ml_engineer")["fact_flight"]
    assert "quarantine" not in plan.readable("ml_engineer")


def test_bookkeeping_is_read_by_who_reads_every_stored_column(
    plan: AccessPlan, tmp_path: Path, schema: Schema
) -> None:
    bookkeeping = [a for a in plan.columns if a.rule == "bookkeeping"]
    assert {a.column for a in bookkeeping} >= {"run_id", "loaded_at", "is_corrected"}
    assert {a.readers for a in bookkeeping} == {("data_engineer", "auditor")}

    def hide_air_time_from_auditors(document: dict[str, Any]) -> None:
        document["tables"]["flights"]["columns"]["air_time"]["readers"] = ["data_engineer"]

    narrower = plan_access(changed_policy(tmp_path, hide_air_time_from_auditors), schema)
    assert {a.readers for a in narrower.columns if a.rule == "bookkeeping"} == {("data_engineer",)}


def test_generation_is_deterministic(policy: DataPolicy, schema: Schema, plan: AccessPlan) -> None:
    shuffled = dict(reversed(list(schema.items())))
    again = plan_access(load_policy(), shuffled)
    assert again == plan
    assert again.digest() == plan.digest()
    assert [again.readable(r) for r in again.roles] == [plan.readable(r) for r in plan.roles]


def test_a_reader_removed_from_the_policy_leaves_the_plan(
    plan: AccessPlan, tmp_path: Path, schema: Schema
) -> None:
    def hide_distance_from_sre(document: dict[str, Any]) -> None:
        distance = document["tables"]["flights"]["columns"]["distance"]
        distance["readers"] = [r for r in distance["readers"] if r != "sre"]  # a copy: anchored

    narrower = plan_access(changed_policy(tmp_path, hide_distance_from_sre), schema)
    assert "distance_mi" in plan.readable_columns("sre", "fact_flight")
    assert "distance_mi" not in narrower.readable_columns("sre", "fact_flight")
    assert "sched_dep_utc" in narrower.readable_columns("sre", "fact_flight")
    assert narrower.digest() != plan.digest()


def test_require_refuses_naming_role_table_and_columns(plan: AccessPlan) -> None:
    plan.require("service", "fact_flight", ["flight_key", "arr_delay_min"])
    with pytest.raises(VigieError) as refused:
        plan.require("service", "fact_flight", ["flight_key", "dep_delay_min", "air_time_min"])
    assert refused.value.code is ErrorCode.FORBIDDEN
    message = refused.value.message
    assert "role 'service' may not read columns dep_delay_min, air_time_min of fact_flight" in (
        message
    )
    assert refused.value.details == {
        "role": "service",
        "table": "fact_flight",
        "columns": ["dep_delay_min", "air_time_min"],
    }


def test_require_names_what_does_not_exist(plan: AccessPlan) -> None:
    with pytest.raises(VigieError) as role:
        plan.require("intern", "fact_flight", ["flight_key"])
    assert role.value.code is ErrorCode.INVALID_INPUT
    assert "'intern'" in role.value.message
    with pytest.raises(VigieError) as table:
        plan.readable_columns("sre", "fact_cargo")
    assert table.value.code is ErrorCode.NOT_FOUND
    with pytest.raises(VigieError) as column:
        plan.require("sre", "fact_flight", ["flight_key", "colour"])
    assert column.value.code is ErrorCode.NOT_FOUND
    assert "'colour'" in column.value.message


def test_platform_readers_must_be_declared_roles(tmp_path: Path) -> None:
    def add_intern(document: dict[str, Any]) -> None:
        document["platform"]["fact_outcome"]["columns"]["source"]["readers"] = ["intern"]

    with pytest.raises(VigieError) as refused:
        changed_policy(tmp_path, add_intern)
    assert refused.value.code is ErrorCode.CONFIGURATION
    assert "platform.fact_outcome.columns.source.readers: role 'intern'" in refused.value.message


def test_a_role_that_cannot_name_a_database_role_is_refused(tmp_path: Path, schema: Schema) -> None:
    def odd_role(document: dict[str, Any]) -> None:
        document["roles"]['x"; DROP TABLE fact_flight; --'] = "a bad name"

    with pytest.raises(VigieError) as refused:
        plan_access(changed_policy(tmp_path, odd_role), schema)
    assert refused.value.code is ErrorCode.CONFIGURATION
    assert "cannot name a database role" in refused.value.message
