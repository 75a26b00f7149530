"""Model lifecycle: train a candidate and register it; gather gate evidence and promote.

This module composes training and the registry (which know nothing of each other): a
candidate is built from a warehouse window, registered as an immutable version with its
lineage, then promoted through the gates of its own spec. "Beat production" compares both
versions on the candidate's evaluation window, recomputing the production version's metrics
there from its verified ONNX artifact.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date
from typing import Any

import numpy as np
import yaml

from vigie.config import Settings
from vigie.errors import ErrorCode, VigieError
from vigie.governance.audit import AuditLog
from vigie.governance.policy import load_policy
from vigie.pipelines.lineage import current_code_version
from vigie.registry import (
    Alias,
    AliasChange,
    GateEvidence,
    GateReport,
    GateSpec,
    Latency,
    ModelVersion,
    Registry,
    evaluate_gates,
)
from vigie.runtime import OnnxModel
from vigie.training.evaluate import metrics as score
from vigie.training.pipeline import CandidateBundle, build_candidate
from vigie.training.snapshot import build_snapshot
from vigie.training.spec import labels, load_spec
from vigie.training.train import Progress


@dataclass(frozen=True)
class Registered:
    """A trained candidate and the version it became."""

    bundle: CandidateBundle
    version: ModelVersion


def train_and_register(
    settings: Settings,
    model: str,
    window: tuple[date, date],
    *,
    evaluation_window: tuple[date, date] | None,
    seed: int,
    reason: str,
    progress: Progress | None = None,
    lineage: dict[str, Any] | None = None,
) -> Registered:
    """Build a candidate on ``window`` and register it (alias ``candidate``).

    ``lineage`` (JSON values) is added to the version's metadata, e.g. the retraining
    job's trigger and evaluation under ``retraining``.

    Raises:
        VigieError: from training or the registry; the failure is audited.
    """
    audit = AuditLog(settings.audit_log_path)
    target = f"{model}:{window[0]}..{window[1]}"
    try:
        bundle = build_candidate(
            settings,
            model,
            window[0],
            window[1],
            seed=seed,
            evaluation_window=evaluation_window,
            progress=progress,
        )
    except VigieError as err:
        audit.append(
            settings.actor,
            "training.train",
            target,
            "failure",
            details={"error": str(err), "seed": seed},
        )
        raise
    audit.append(
        settings.actor,
        "training.train",
        target,
        "success",
        inputs={"snapshot_sha256": bundle.snapshot["snapshot_hash"]},
        details={"seed": seed, "metrics": bundle.metrics, "evaluation": _plain(bundle.evaluation)},
    )
    registry = Registry(settings)
    version = registry.register(
        model,
        {p.name: p for p in bundle.files.values()},
        metadata={**_metadata(registry, bundle), **_plain(lineage or {})},
        reason=reason,
    )
    return Registered(bundle, version)


def _metadata(registry: Registry, bundle: CandidateBundle) -> dict[str, Any]:
    production = registry.aliases(bundle.name).get(Alias.PRODUCTION.value)
    return {
        "snapshot_hash": bundle.snapshot["snapshot_hash"],
        "code_version": current_code_version(),
        "metrics": {k: float(v) for k, v in bundle.metrics.items()},
        "parent_version": production,
        "seed": bundle.seed,
        "snapshot": _plain(bundle.snapshot),
        "evaluation": _plain(bundle.evaluation),
        "parity_max_abs_error": bundle.parity_max_abs_error,
        "behaviour_passed": bundle.behaviour.passed,
        "latency": _plain(bundle.latency),
    }


def _plain(value: Any) -> Any:
    """JSON-ready copy (dates and numpy scalars as plain values)."""
    return json.loads(json.dumps(value, default=str))


def gate_evidence(settings: Settings, registry: Registry, model: str, version: str) -> GateEvidence:
    """Everything the gates judge, for ``version`` against the current production version."""
    candidate = registry.verify(model, version)
    extra = candidate.extra
    evaluation = extra.get("evaluation", {})
    window = _window(evaluation)
    production = registry.aliases(model).get(Alias.PRODUCTION.value)
    production_metrics = None
    if production is not None and production != candidate.version and window is not None:
        production_metrics = metrics_on_window(settings, registry, model, production, window)
    latency = extra.get("latency", {}).get("onnxruntime", {})
    return GateEvidence(
        model=model,
        version=candidate.version,
        metrics=candidate.metrics,
        evaluation_window=_window_name(window),
        parity_error=extra.get("parity_max_abs_error"),
        behaviour_passed=extra.get("behaviour_passed"),
        production_version=production,
        production_metrics=production_metrics,
        production_evaluation_window=_window_name(window) if production_metrics else None,
        latency_ms=Latency(
            single_row_p50_ms=latency["single_row_p50_ms"],
            batch_256_p50_ms=latency["batch_256_p50_ms"],
        )
        if latency
        else None,
    )


def _window(evaluation: dict[str, Any]) -> tuple[date, date] | None:
    if "window_from" not in evaluation:
        return None  # evaluated on its own training hold-out: no common window exists
    return (
        date.fromisoformat(evaluation["window_from"]),
        date.fromisoformat(evaluation["window_to"]),
    )


def _window_name(window: tuple[date, date] | None) -> str | None:
    return f"{window[0]}..{window[1]}" if window else None


def metrics_on_window(
    settings: Settings, registry: Registry, model: str, version: str, window: tuple[date, date]
) -> dict[str, float]:
    """The metrics of a registered version on a warehouse window (its ONNX, verified)."""
    spec = load_spec(settings.models_dir, model, policy=load_policy(settings.policy_file))
    frame = build_snapshot(settings, spec, window[0], window[1]).read()
    onnx = OnnxModel(
        registry.open_artifact(model, version, "model.onnx"),
        settings.device,
        cuda_tf32=settings.cuda_tf32,
    )
    predictions = np.asarray(onnx.predict(frame), dtype=np.float64)
    return score(spec, labels(spec, frame), predictions)


def gate_spec(registry: Registry, model: str, version: str) -> GateSpec:
    """The gates written in the version's own (immutable) spec file."""
    raw = yaml.safe_load(registry.open_artifact(model, version, "spec.yaml").read_text())
    return GateSpec.from_model_spec(raw.get("gates", {}))


def assess(settings: Settings, model: str, version: str) -> GateReport:
    """Run the gates of ``version`` (an id or an alias) without moving anything."""
    registry = Registry(settings)
    resolved = registry.resolve(model, version)
    return evaluate_gates(
        gate_spec(registry, model, resolved), gate_evidence(settings, registry, model, resolved)
    )


def promote(
    settings: Settings, model: str, report: GateReport, *, to: str, reason: str
) -> AliasChange:
    """Move alias ``to`` to the version ``report`` assessed, if every gate passed.

    Raises:
        VigieError: PROMOTION_REJECTED naming the failed gates (nothing moves), NOT_FOUND,
            CONFLICT for a version already there.
    """
    if report.version is None:
        raise VigieError(ErrorCode.INVALID_INPUT, "the gate report names no version")
    return Registry(settings).promote(model, report.version, to=to, report=report, reason=reason)


def require_model(settings: Settings, model: str) -> None:
    """Refuse a model name with no spec, naming the known ones."""
    known = sorted(p.parent.name for p in settings.models_dir.glob("*/spec.yaml"))
    if model not in known:
        raise VigieError(
            ErrorCode.MODEL_NOT_FOUND,
            f"no model {model!r}; known models: {', '.join(known) or 'none'}",
        )
