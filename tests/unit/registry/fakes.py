"""Small fakes shared by the registry tests: metadata, a passing gate report."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from vigie.registry import GateEvidence, GateReport, GateSpec, evaluate_gates

MODEL = "flight_delay"


def metadata(**extra: Any) -> dict[str, Any]:
    """Registration metadata with the required fields."""
    return {
        "snapshot_hash": "a" * 64,
        "code_version": "0.1.0+test",
        "metrics": {"roc_auc": 0.71, "brier": 0.18},
    } | extra


def passing_report(version: str, model: str = MODEL) -> GateReport:
    """A gate report that passes, about ``model`` ``version``."""
    spec = GateSpec.model_validate({"metrics": {"roc_auc": {"min": 0.68}}})
    evidence = GateEvidence(model=model, version=version, metrics={"roc_auc": 0.7})
    return evaluate_gates(spec, evidence)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()
