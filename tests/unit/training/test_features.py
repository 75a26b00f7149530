"""No leakage can reach training; every feature derives from policy-allowed columns."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from vigie.errors import ErrorCode, VigieError
from vigie.features.catalogue import (
    CATALOGUE,
    LEAKAGE,
    Feature,
    FeatureKind,
    check_policy,
    resolve_features,
)
from vigie.governance.policy import load_policy
from vigie.training.snapshot import snapshot_sql
from vigie.training.spec import load_spec


def _write_spec(models_dir: Path, name: str, features: list[str]) -> None:
    path = models_dir / name / "spec.yaml"
    raw = yaml.safe_load(path.read_text())
    raw["features"] = features
    path.write_text(yaml.safe_dump(raw))


@pytest.mark.parametrize("leak", ["dep_delay", "dep_time", "arr_time", "air_time", "arr_delay"])
def test_a_spec_listing_a_post_departure_column_is_refused(models_dir: Path, leak: str) -> None:
    spec = yaml.safe_load((models_dir / "flight_delay" / "spec.yaml").read_text())
    _write_spec(models_dir, "flight_delay", [*spec["features"], leak])
    with pytest.raises(VigieError) as caught:
        load_spec(models_dir, "flight_delay")
    assert caught.value.code is ErrorCode.POLICY_VIOLATION
    assert leak in caught.value.message and "leakage" in caught.value.message


def test_an_unknown_feature_is_refused_with_the_catalogue(models_dir: Path) -> None:
    _write_spec(models_dir, "flight_delay", ["carrier", "tailnum", "month", "day"])
    with pytest.raises(VigieError) as caught:
        load_spec(models_dir, "flight_delay")
    assert caught.value.code is ErrorCode.INVALID_INPUT
    assert "'tailnum'" in caught.value.message and "carrier" in caught.value.message


def test_every_catalogue_feature_maps_to_sources_the_policy_allows_for_training() -> None:
    policy = load_policy()
    for feature in CATALOGUE.values():
        for source in feature.sources:
            table, column = source.split(".", 1)
            allowed = (
                policy.history_sources(table)
                if feature.history
                else policy.training_features(table)
            )
            assert column in allowed, f"{feature.name} <- {source}"
    check_policy(CATALOGUE.values(), policy)


def test_a_feature_from_a_column_the_policy_refuses_is_refused() -> None:
    tail = Feature("tail", FeatureKind.CATEGORICAL, "p.tailnum_pseudonym", ("flights.tailnum",), "")
    with pytest.raises(VigieError) as caught:
        check_policy([CATALOGUE["carrier"], tail], load_policy())
    assert caught.value.code is ErrorCode.POLICY_VIOLATION
    assert "tail <- flights.tailnum" in caught.value.message


def test_no_leakage_column_is_a_feature_name_or_read_by_the_snapshot_features() -> None:
    assert not LEAKAGE & set(CATALOGUE)
    feature_sql = snapshot_sql(resolve_features(CATALOGUE)).split("f.arr_delay_min AS")[0]
    for column in ("dep_delay_min", "dep_utc", "arr_utc", "air_time_min", "is_delayed_15"):
        assert not re.search(rf"\b{column}\b", feature_sql), column
    # the target is selected once, as the label, and only as the label
    assert snapshot_sql(resolve_features(["carrier"])).count("arr_delay_min AS") == 1


def test_the_shipped_specs_load_and_use_only_catalogue_features() -> None:
    models = Path(__file__).resolve().parents[3] / "models"
    for name in ("flight_delay", "arrival_delay"):
        spec = load_spec(models, name)
        assert set(spec.features) <= set(CATALOGUE)
        assert {i.name for i in spec.ignored_by_net} == {"month", "day"}
