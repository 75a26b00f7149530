"""Model specs: validation of their shape and coherence."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from vigie.errors import ErrorCode, VigieError
from vigie.features.catalogue import FeatureKind
from vigie.training.spec import Task, load_spec


def _edit(models_dir: Path, name: str, **changes: object) -> None:
    path = models_dir / name / "spec.yaml"
    raw = yaml.safe_load(path.read_text())
    raw.update(changes)
    path.write_text(yaml.safe_dump(raw))


def test_the_classifier_spec_reads_its_gates_and_window(models_dir: Path) -> None:
    spec = load_spec(models_dir, "flight_delay")
    assert spec.task is Task.CLASSIFICATION
    assert spec.target.threshold_minutes == 15
    assert spec.gates.min["roc_auc"] == 0.70
    assert spec.gates.latency.p50_single_row_ms > 0
    assert spec.window.policy == "expanding" and spec.window.evaluation_days == 7
    assert "month" not in spec.net_features(FeatureKind.NUMERIC)
    assert "carrier" in spec.net_features(FeatureKind.CATEGORICAL)


def test_a_missing_spec_is_model_not_found(models_dir: Path) -> None:
    with pytest.raises(VigieError) as caught:
        load_spec(models_dir, "nope")
    assert caught.value.code is ErrorCode.MODEL_NOT_FOUND


def test_a_sliding_window_without_months_is_refused(models_dir: Path) -> None:
    _edit(models_dir, "flight_delay", window={"policy": "sliding", "why": "because of drift"})
    with pytest.raises(VigieError) as caught:
        load_spec(models_dir, "flight_delay")
    assert caught.value.code is ErrorCode.CONFIGURATION
    assert "window" in caught.value.message


def test_a_regressor_with_a_threshold_is_refused(models_dir: Path) -> None:
    _edit(
        models_dir,
        "arrival_delay",
        target={"column": "arr_delay", "threshold_minutes": 15, "output": "delay_minutes"},
    )
    with pytest.raises(VigieError, match="threshold_minutes"):
        load_spec(models_dir, "arrival_delay")


def test_an_ignored_feature_must_be_a_feature(models_dir: Path) -> None:
    _edit(models_dir, "flight_delay", ignored_by_net=[{"name": "tailnum", "reason": "x"}])
    with pytest.raises(VigieError, match="ignored_by_net"):
        load_spec(models_dir, "flight_delay")


def test_the_comparison_with_production_may_be_switched_off_but_not_reversed(
    models_dir: Path,
) -> None:
    gates = yaml.safe_load((models_dir / "flight_delay" / "spec.yaml").read_text())["gates"]
    _edit(models_dir, "flight_delay", gates={**gates, "must_beat_production": None})
    assert load_spec(models_dir, "flight_delay").gates.must_beat_production is None

    worse = {"metric": "roc_auc", "margin": -0.05}
    _edit(models_dir, "flight_delay", gates={**gates, "must_beat_production": worse})
    with pytest.raises(VigieError) as caught:
        load_spec(models_dir, "flight_delay")
    assert "margin" in caught.value.message
