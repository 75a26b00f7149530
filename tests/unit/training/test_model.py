"""Training, ONNX export and runtime on a synthetic snapshot (fast, CPU)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from vigie.config import Settings
from vigie.errors import ErrorCode, VigieError
from vigie.runtime import OnnxModel
from vigie.training.behaviour import run_behaviour
from vigie.training.evaluate import calibration_table, classification_metrics, evaluate, route_mean
from vigie.training.export import export_onnx
from vigie.training.preprocess import OOV_INDEX, Preprocessor
from vigie.training.snapshot import Snapshot
from vigie.training.spec import ModelSpec
from vigie.training.train import TrainedModel, time_split, train_model

from .conftest import synthetic_frame


@pytest.fixture
def trained(
    settings: Settings, classifier_spec: ModelSpec, synthetic_snapshot: Snapshot
) -> TrainedModel:
    return train_model(settings, classifier_spec, synthetic_snapshot, seed=3)


def test_the_validation_split_is_the_latest_part_of_the_window() -> None:
    frame = synthetic_frame(1000).sample(frac=1.0, random_state=1)
    fit, held = time_split(frame, 0.2)
    assert len(held) == 200
    assert fit["sched_dep_utc"].max() <= held["sched_dep_utc"].min()


def test_preprocessing_sends_unknown_and_missing_to_oov_and_flags_missing_numbers() -> None:
    frame = synthetic_frame(200)
    pre = Preprocessor.fit(frame, categorical=["carrier"], numeric=["temp"])
    cats, nums = pre.encode({"carrier": ["AA", "ZZ", None], "temp": [float(pre.means[0]), None, 3]})
    assert cats[:, 0].tolist()[1:] == [OOV_INDEX, OOV_INDEX] and cats[0, 0] != OOV_INDEX
    assert nums[:, 1].tolist() == [0.0, 1.0, 0.0]  # missing indicator
    assert nums[0, 0] == 0.0 and nums[1, 0] == 0.0  # the mean, and an imputed mean


def test_training_learns_and_is_reproducible(
    settings: Settings,
    classifier_spec: ModelSpec,
    synthetic_snapshot: Snapshot,
    trained: TrainedModel,
) -> None:
    again = train_model(settings, classifier_spec, synthetic_snapshot, seed=3)
    rows = synthetic_frame(1500, seed=9)
    assert np.array_equal(trained.predict(rows), again.predict(rows))
    metrics = classification_metrics((rows["arr_delay"] > 15).to_numpy(), trained.predict(rows))
    assert metrics["roc_auc"] > 0.7
    assert len(trained.reference_sample) == min(3000 * 0.85, 5000)
    assert trained.device == "cpu" and 1 <= trained.best_epoch <= len(trained.history)


def test_onnx_takes_raw_features_and_matches_torch(trained: TrainedModel, tmp_path: Path) -> None:
    model = OnnxModel(export_onnx(trained, tmp_path / "m.onnx"), "cpu")
    assert model.output_name == "probability"
    assert model.inputs["carrier"] == "tensor(string)" and model.inputs["temp"] == "tensor(float)"
    assert set(model.inputs) == set(trained.spec.features)
    rows = synthetic_frame(2000, seed=5)
    rows.loc[:50, "carrier"] = "NEW"  # out of vocabulary
    rows.loc[50:100, ["temp", "visib"]] = np.nan
    difference = np.abs(model.predict(rows) - trained.predict(rows))
    # float32 end to end: sigmoid outputs agree to a few ulps (~1e-7); 1e-5 leaves margin.
    assert difference.max() < 1e-5
    assert model.options["graph_optimization_level"] == "ORT_ENABLE_ALL"
    assert model.options["providers"] == ["CPUExecutionProvider"]


def test_the_runtime_accepts_a_dict_and_names_a_missing_feature(
    trained: TrainedModel, tmp_path: Path
) -> None:
    model = OnnxModel(export_onnx(trained, tmp_path / "m.onnx"), "cpu")
    row = synthetic_frame(1).iloc[0].to_dict()
    single = {name: [row[name]] for name in trained.spec.features}
    assert model.predict(single).shape == (1,)
    del single["visib"]
    with pytest.raises(VigieError) as caught:
        model.predict(single)
    assert caught.value.code is ErrorCode.INVALID_INPUT and caught.value.details["field"] == "visib"
    single["visib"] = ["ten"]
    with pytest.raises(VigieError, match="'visib' must be numbers"):
        model.predict(single)


def test_the_regressor_exports_delay_minutes(
    settings: Settings, regressor_spec: ModelSpec, synthetic_snapshot: Snapshot, tmp_path: Path
) -> None:
    trained = train_model(settings, regressor_spec, synthetic_snapshot, seed=1)
    model = OnnxModel(export_onnx(trained, tmp_path / "r.onnx"), "cpu")
    rows = synthetic_frame(500, seed=2)
    assert model.output_name == "delay_minutes"
    assert np.abs(model.predict(rows) - trained.predict(rows)).max() < 1e-3


def test_evaluation_and_behaviour_report_numbers(trained: TrainedModel) -> None:
    test = synthetic_frame(1500, seed=7)
    report = evaluate(trained.spec, trained.predict, train=synthetic_frame(3000), test=test, seed=0)
    assert set(report["baselines"]) == {"base_rate", "hist_gradient_boosting"}
    assert report["baselines"]["base_rate"]["roc_auc"] == 0.5
    assert report["metrics"]["roc_auc"] > report["baselines"]["base_rate"]["roc_auc"]
    assert {r["value"] for r in report["slices"]["carrier"]} == {"AA", "BAD", "UA", "DL"}
    assert sum(c["rows"] for c in report["calibration"]) == len(test)
    behaviour = run_behaviour(trained.spec, trained.predict, test, seed=0).to_dict()
    invariance = behaviour["checks"][0]
    assert invariance["kind"] == "invariance" and invariance["passed"]
    assert invariance["numbers"]["max_abs_difference"] == 0.0


def test_calibration_deciles_and_route_mean_fallback() -> None:
    p = np.linspace(0, 1, 100)
    y = (p > 0.5).astype(float)
    table = calibration_table(y, p)
    assert len(table) == 10 and table[0]["observed_rate"] == 0 and table[-1]["observed_rate"] == 1
    train = synthetic_frame(50)[["origin", "dest"]].assign(origin="EWR", dest="ATL")
    test = train.iloc[:2].assign(dest=["ATL", "XXX"])
    means = route_mean(train, np.arange(50, dtype=float), test)
    assert means.tolist() == [24.5, 24.5]
