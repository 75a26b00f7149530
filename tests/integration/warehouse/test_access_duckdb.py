"""Access control on embedded DuckDB: per-role views of the readable columns, and refusals."""

from __future__ import annotations

import json
from collections.abc import Callable
from contextlib import closing
from datetime import date
from pathlib import Path
from typing import Any

import duckdb
import pytest
import yaml
from click.testing import Result

from vigie.config import Settings
from vigie.errors import EXIT_CODES, ErrorCode, VigieError
from vigie.governance.audit import verify
from vigie.governance.policy import DataPolicy, default_policy_path, load_policy
from vigie.pipelines.run import run_pipeline
from vigie.warehouse.access import apply, current_plan, select_as
from vigie.warehouse.connection import connect
from vigie.warehouse.views import existing_views, view_schema

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def loaded(
    tmp_path_factory: pytest.TempPathFactory,
    small_source: Path,
    make_settings: Callable[..., Settings],
) -> Settings:
    """Two days of the small source set loaded into a fresh DuckDB warehouse."""
    settings = make_settings(tmp_path_factory.mktemp("access-duck"), small_source)
    run = run_pipeline(settings, date(2013, 1, 1), date(2013, 1, 2))
    assert run.record.status == "success"
    return settings


def views(url: str, policy: DataPolicy) -> dict[str, dict[str, tuple[str, ...]]]:
    with closing(connect(url)) as warehouse:
        found = existing_views(warehouse, [view_schema(r) for r in policy.roles])
    return {role: found.get(view_schema(role), {}) for role in policy.roles}


def narrower_policy(tmp_path: Path) -> DataPolicy:
    """The shipped policy, with flights.distance no longer readable by the service."""
    document = yaml.safe_load(default_policy_path().read_text())
    distance = document["tables"]["flights"]["columns"]["distance"]
    distance["readers"] = [r for r in distance["readers"] if r != "service"]  # not the anchor's
    path = tmp_path / "narrower.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return load_policy(path)


def test_each_role_gets_views_of_exactly_its_columns(loaded: Settings) -> None:
    url, policy = loaded.resolved_warehouse_url, load_policy()

    result = apply(url, policy)

    assert result.dialect == "duckdb" and result.changes
    assert views(url, policy) == {r: result.plan.readable(r) for r in policy.roles}
    with closing(connect(url)) as warehouse:
        rows = warehouse.query(
            "SELECT count(*), count(arr_delay_min) FROM access_service.fact_flight"
        )
    assert rows[0][0] > 1000 and rows[0][1] > 0


def test_the_engine_itself_has_no_hidden_column_in_a_view(loaded: Settings) -> None:
    url = loaded.resolved_warehouse_url
    apply(url, load_policy())
    path = url.removeprefix("duckdb:///")
    with closing(duckdb.connect("/" + path.lstrip("/"), read_only=True)) as con:
        for statement in (
            "SELECT dep_delay_min FROM access_service.fact_flight",
            "SELECT tailnum_pseudonym FROM access_sre.dim_plane",
            "SELECT * FROM access_ml_engineer.quarantine",
        ):
            with pytest.raises((duckdb.CatalogException, duckdb.BinderException)):
                con.execute(statement)


def test_a_second_apply_changes_nothing(loaded: Settings) -> None:
    url, policy = loaded.resolved_warehouse_url, load_policy()
    apply(url, policy)
    before = views(url, policy)

    again = apply(url, policy)

    assert again.changes == ()
    assert views(url, policy) == before


def test_a_reader_removed_from_the_policy_loses_the_column(
    loaded: Settings, tmp_path: Path
) -> None:
    url = loaded.resolved_warehouse_url
    apply(url, load_policy())
    try:
        narrower = apply(url, narrower_policy(tmp_path))
        (change,) = narrower.changes  # the one view that holds distance_mi
        assert change.role == "service"
        assert 'VIEW "access_service"."fact_flight"' in change.statement
        service = views(url, load_policy())["service"]
        assert "distance_mi" not in service["fact_flight"]
        assert "distance_mi" in views(url, load_policy())["sre"]["fact_flight"]
    finally:
        apply(url, load_policy())
    assert "distance_mi" in views(url, load_policy())["service"]["fact_flight"]


def test_a_role_reads_its_columns_and_is_refused_the_others(loaded: Settings) -> None:
    url, policy = loaded.resolved_warehouse_url, load_policy()
    apply(url, policy)
    with closing(connect(url)) as warehouse:
        plan = current_plan(warehouse, policy)
        rows = select_as(
            warehouse, plan, "service", "fact_flight", columns=["flight_key", "arr_delay_min"]
        )
        assert len(rows) == 20 and all(isinstance(r[0], int) for r in rows)
        with pytest.raises(VigieError) as refused:
            select_as(warehouse, plan, "service", "fact_flight", columns=["dep_delay_min"])
    assert refused.value.code is ErrorCode.FORBIDDEN
    assert "role 'service' may not read column dep_delay_min of fact_flight" in str(refused.value)


def test_the_cli_applies_audits_and_refuses(loaded: Settings, cli: Callable[..., Result]) -> None:
    settings: dict[str, Any] = {"home": loaded.home, "source_dir": loaded.source_dir}

    dry = cli(["warehouse-access", "apply", "--dry-run"], **settings)
    applied = cli(["warehouse-access", "apply"], **settings)
    shown = cli(["warehouse-access", "show", "--role", "service"], **settings)
    why = cli(["warehouse-access", "show", "--table", "dim_plane"], **settings)
    refused = cli(
        ["warehouse-access", "select", "--role", "service", "dim_plane", "tailnum_pseudonym"],
        **settings,
    )
    allowed = cli(
        ["warehouse-access", "select", "--role", "sre", "dim_carrier", "--limit", "3"], **settings
    )

    assert dry.exit_code == 0 and "would execute" in dry.output, dry.output
    assert applied.exit_code == 0 and "executed" in applied.output, applied.output
    assert "access_service" in shown.output and "access_sre" not in shown.output
    assert "indirect_identifier" in " ".join(why.output.split())
    assert refused.exit_code == EXIT_CODES[ErrorCode.FORBIDDEN]
    assert "tailnum_pseudonym" in refused.stderr and "[FORBIDDEN]" in refused.stderr
    assert allowed.exit_code == 0 and "carrier_name" in allowed.output, allowed.output
    log = loaded.audit_log_path
    assert verify(log).ok
    entries = [json.loads(line) for line in log.read_text().splitlines()]
    applies = [e for e in entries if e["action"] == "warehouse.access.apply"]
    assert applies, "an apply is audited (a dry run is not)"
    last = applies[-1]
    assert last["outcome"] == "success"
    assert last["inputs"]["policy_sha256"] == load_policy().content_hash()
    assert last["details"]["policy_version"] == load_policy().version
    assert last["details"]["dialect"] == "duckdb"
