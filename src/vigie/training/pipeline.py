"""build_candidate: snapshot -> train -> ONNX -> parity -> evaluate -> behaviour -> card.

The one call the command line and the retraining job make; it writes every file of a
candidate version into one folder and returns their paths with the numbers. Storing the
folder as an immutable registry version is the registry's job.
"""

from __future__ import annotations

import json
import logging
import shutil
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from vigie.config import Settings
from vigie.governance.policy import load_policy
from vigie.runtime import OnnxModel
from vigie.training import benchmark
from vigie.training.behaviour import BehaviourReport, run_behaviour
from vigie.training.card import write_card
from vigie.training.evaluate import evaluate
from vigie.training.export import export_onnx
from vigie.training.snapshot import Snapshot, build_snapshot
from vigie.training.spec import ModelSpec, load_spec, spec_path
from vigie.training.train import Progress, TrainedModel, time_split, train_model

log = logging.getLogger(__name__)

#: Rows compared between torch and ONNX Runtime.
PARITY_ROWS = 10_000


@dataclass
class CandidateBundle:
    """A built candidate: its files and what was measured.

    Attributes:
        name: The model name.
        folder: The folder holding every file below.
        files: ``model.onnx``, ``spec.yaml``, ``model_card.md``, ``model_card.json``,
            ``metrics.json``, ``reference_sample.parquet`` by role.
        snapshot: Lineage of the training snapshot (hash, window, rows).
        evaluation: Where the metrics come from (window, rows, snapshot hash).
        metrics: Metrics of the ONNX model on the evaluation rows.
        report: Full evaluation (metrics, slices, baselines, calibration).
        parity_max_abs_error: Largest |torch - ONNX Runtime| on the parity rows.
        parity_rows: Rows compared.
        behaviour: The behavioural report.
        latency: ONNX Runtime and torch eager latencies (ms).
        seed: The training seed.
    """

    name: str
    folder: Path
    files: dict[str, Path]
    snapshot: dict[str, Any]
    evaluation: dict[str, Any]
    metrics: dict[str, float]
    report: dict[str, Any]
    parity_max_abs_error: float
    parity_rows: int
    behaviour: BehaviourReport
    latency: dict[str, dict[str, float]]
    seed: int
    training: dict[str, Any] = field(default_factory=dict)


def build_candidate(
    settings: Settings,
    spec_name: str,
    start: date,
    end: date,
    *,
    seed: int,
    folder: Path | None = None,
    evaluation_window: tuple[date, date] | None = None,
    progress: Progress | None = None,
) -> CandidateBundle:
    """Build one candidate of model ``spec_name`` trained on ``[start, end]``.

    Args:
        settings: Settings (warehouse, models and snapshots folders, device).
        spec_name: ``flight_delay`` or ``arrival_delay``.
        start: First scheduled departure date of the training window (inclusive).
        end: Last one (inclusive).
        seed: Training seed.
        folder: Where to write the files; default ``<home>/candidates/<name>-<hash12>-s<seed>``.
        evaluation_window: Rows to evaluate on, e.g. the month after ``end`` (honest,
            forward in time); default the held-out latest part of the training window
            (it also chose the early-stopping epoch, so it is mildly optimistic).
        progress: Per-epoch training progress callback.

    Raises:
        VigieError: from the spec, the warehouse or training (see those functions).
    """
    spec = load_spec(settings.models_dir, spec_name, policy=load_policy(settings.policy_file))
    snapshot = build_snapshot(settings, spec, start, end)
    trained = train_model(settings, spec, snapshot, seed=seed, progress=progress)
    out = (
        folder or settings.home / "candidates" / f"{spec.name}-{snapshot.content_hash[:12]}-s{seed}"
    )
    out.mkdir(parents=True, exist_ok=True)
    files = {"model_onnx": export_onnx(trained, out / "model.onnx")}
    files["spec"] = Path(
        shutil.copyfile(spec_path(settings.models_dir, spec_name), out / "spec.yaml")
    )
    model = OnnxModel(files["model_onnx"], settings.device, cuda_tf32=settings.cuda_tf32)
    train_rows, test, evaluation = _evaluation_rows(
        settings, spec, snapshot, trained, evaluation_window
    )
    parity_frame = test.iloc[:PARITY_ROWS]
    parity = float(np.max(np.abs(model.predict(parity_frame) - trained.predict(parity_frame))))
    report = evaluate(spec, model.predict, train=train_rows, test=test, seed=seed)
    behaviour = run_behaviour(spec, model.predict, test, seed=seed)
    latency = _latency(model, trained, test)
    files["reference_sample"] = out / "reference_sample.parquet"
    trained.reference_sample.to_parquet(files["reference_sample"], index=False)
    bundle = CandidateBundle(
        name=spec.name,
        folder=out,
        files=files,
        snapshot=snapshot.lineage(),
        evaluation=evaluation,
        metrics=report["metrics"],
        report=report,
        parity_max_abs_error=parity,
        parity_rows=len(parity_frame),
        behaviour=behaviour,
        latency=latency,
        seed=seed,
        training=_training_summary(trained, model),
    )
    files["metrics_json"] = _write_metrics(bundle, out)
    context = card_context(spec, bundle)
    files["model_card_md"], files["model_card_json"] = write_card(
        settings.models_dir, spec.name, context, out
    )
    return bundle


def _evaluation_rows(
    settings: Settings,
    spec: ModelSpec,
    snapshot: Snapshot,
    trained: TrainedModel,
    window: tuple[date, date] | None,
) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, Any]]:
    fit, held_out = time_split(snapshot.read(), spec.hyperparameters.validation_fraction)
    if window is None:
        return (
            fit,
            held_out,
            {
                "source": "held-out latest part of the training window (early-stopping set)",
                "rows": len(held_out),
                "from": str(held_out["sched_dep_utc"].min()),
                "to": str(held_out["sched_dep_utc"].max()),
            },
        )
    test_snapshot = build_snapshot(settings, spec, window[0], window[1])
    test = test_snapshot.read().sort_values(["sched_dep_utc", "flight_key"], kind="stable")
    return (
        pd.concat([fit, held_out], ignore_index=True),
        test.reset_index(drop=True),
        {
            "source": "forward window after training",
            **test_snapshot.lineage(),
        },
    )


def _latency(
    model: OnnxModel, trained: TrainedModel, rows: pd.DataFrame
) -> dict[str, dict[str, float]]:
    sample = rows.iloc[: benchmark.BATCH_ROWS]
    threads = torch.get_num_threads()
    return {
        "onnxruntime": {
            **benchmark.measure(model.predict, sample),
            "threads": float(model.options["intra_op_num_threads"]),
        },
        "torch_eager": {**benchmark.measure(trained.predict, sample), "threads": float(threads)},
    }


def _training_summary(trained: TrainedModel, model: OnnxModel) -> dict[str, Any]:
    return {
        "device": trained.device,
        "best_epoch": trained.best_epoch,
        "epochs_run": len(trained.history),
        "train_rows": trained.train_rows,
        "validation_rows": len(trained.validation),
        "train_seconds": round(trained.train_seconds, 2),
        "history": trained.history,
        "onnxruntime_options": model.options,
        "torch": torch.__version__,
        "preprocessing": trained.preprocessor.to_dict(),
    }


def _write_metrics(bundle: CandidateBundle, folder: Path) -> Path:
    path = folder / "metrics.json"
    payload = {
        "model": bundle.name,
        "seed": bundle.seed,
        "snapshot": bundle.snapshot,
        "evaluation": bundle.evaluation,
        **bundle.report,
        "parity": {"max_abs_error": bundle.parity_max_abs_error, "rows": bundle.parity_rows},
        "behaviour": bundle.behaviour.to_dict(),
        "latency": bundle.latency,
    }
    path.write_text(json.dumps(payload, indent=2, sort_keys=True, default=str), encoding="utf-8")
    return path


def card_context(spec: ModelSpec, bundle: CandidateBundle) -> dict[str, Any]:
    """Everything the model card shows, JSON-ready (also written as model_card.json)."""
    return {
        "name": spec.name,
        "description": spec.description,
        "task": spec.task.value,
        "output": spec.target.output,
        "threshold_minutes": spec.target.threshold_minutes,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "seed": bundle.seed,
        "snapshot": bundle.snapshot,
        "evaluation": bundle.evaluation,
        "window": spec.window.model_dump(),
        "features": [
            {
                "name": f.name,
                "kind": f.kind.value,
                "sources": list(f.sources),
                "description": f.description,
            }
            for f in spec.feature_defs()
        ],
        "ignored_by_net": [i.model_dump() for i in spec.ignored_by_net],
        "metrics": bundle.metrics,
        "slices": bundle.report["slices"],
        "baselines": bundle.report["baselines"],
        "calibration": bundle.report.get("calibration", []),
        "parity": {
            "max_abs_error": bundle.parity_max_abs_error,
            "rows": bundle.parity_rows,
            "tolerance": spec.gates.max_parity_error,
        },
        "behaviour": bundle.behaviour.to_dict(),
        "latency": bundle.latency,
        "training": {
            k: v for k, v in bundle.training.items() if k not in {"history", "preprocessing"}
        },
        "gates": spec.gates.model_dump(),
    }
