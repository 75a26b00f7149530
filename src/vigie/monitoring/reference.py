"""What the drift sidecar knows about one served model version: its reference and gates.

Everything comes from the version's own files in the registry (integrity-checked): the
spec it was trained with (features, task, gates), its reference sample (a seeded sample of
its training rows) and its ONNX model, run once on the reference sample so that
prediction drift compares served outputs with the outputs on the training distribution.
The reference statistics are computed once per version and kept.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import yaml

from vigie.config import Settings
from vigie.errors import ErrorCode, VigieError
from vigie.features.catalogue import TARGET_COLUMN, FeatureKind
from vigie.monitoring.drift import ColumnKind, ReferenceProfile
from vigie.registry.registry import Registry
from vigie.runtime import OnnxModel
from vigie.training.spec import ModelSpec, Task, labels

#: The column of the drift reference and windows that holds the model's output.
PREDICTION = "prediction"

#: The column that holds the label (1/0 late, or minutes), once known.
TARGET = "target"

_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class GateBound:
    """One quality gate of the spec: ``metric`` must stay at least ``min`` or at most ``max``."""

    metric: str
    bound: str  # "min" | "max"
    value: float

    def passed(self, observed: float) -> bool:
        """Whether ``observed`` satisfies the gate."""
        return observed >= self.value if self.bound == "min" else observed <= self.value


@dataclass
class VersionReference:
    """The reference side of every analysis of one model version.

    Attributes:
        model: Model name.
        version: Registry version id.
        task: Classification or regression.
        output: The name of the model's output (``probability``, ``delay_minutes``).
        kinds: Each monitored feature and how drift treats it.
        profile: Reference statistics of the features (computed once).
        prediction_profile: Reference statistics of the model's output.
        sample: The reference sample (features, predictions, label), for Evidently reports.
        gates: The spec's quality gates.
        label_threshold: Minutes of delay above which a flight counts as late (classifier).
    """

    model: str
    version: str
    task: Task
    output: str
    kinds: dict[str, ColumnKind]
    profile: ReferenceProfile
    prediction_profile: ReferenceProfile
    sample: pd.DataFrame
    gates: list[GateBound] = field(default_factory=list)
    label_threshold: float = 0.0

    @property
    def features(self) -> list[str]:
        """The monitored features, in spec order."""
        return list(self.kinds)


def load_reference(settings: Settings, model: str, version: str) -> VersionReference:
    """Build the reference of ``model`` version ``version`` from its registry files.

    Raises:
        VigieError: NOT_FOUND for an unknown version; ARTIFACT_CORRUPT for a file that
            fails its integrity check; INVALID_INPUT (a reference mismatch) when the
            reference sample lacks a feature of the version's spec or holds no row.
    """
    registry = Registry(settings)
    spec_file = registry.open_artifact(model, version, "spec.yaml")
    spec = ModelSpec.model_validate(yaml.safe_load(spec_file.read_text(encoding="utf-8")))
    sample = pd.read_parquet(registry.open_artifact(model, version, "reference_sample.parquet"))
    features = spec.feature_defs()
    missing = [f.name for f in features if f.name not in sample.columns]
    if missing or sample.empty:
        raise VigieError(
            ErrorCode.INVALID_INPUT,
            f"the reference sample of {model} version {version} does not match its spec "
            f"({'missing ' + ', '.join(missing) if missing else 'no rows'})",
            model=model,
            version=version,
        )
    kinds = {
        f.name: ColumnKind.CATEGORICAL if f.kind is FeatureKind.CATEGORICAL else ColumnKind.NUMERIC
        for f in features
    }
    onnx = OnnxModel(registry.open_artifact(model, version, "model.onnx"), device="cpu")
    predictions = onnx.predict(sample[list(kinds)])
    frame = sample[list(kinds)].copy()
    frame[PREDICTION] = predictions.astype(np.float64)
    if TARGET_COLUMN in sample.columns:
        frame[TARGET] = labels(spec, sample).astype(np.float64)
    gates = [GateBound(m, "min", v) for m, v in spec.gates.min.items()]
    gates += [GateBound(m, "max", v) for m, v in spec.gates.max.items()]
    _log.info("reference of %s version %s: %d rows", model, version, len(frame))
    return VersionReference(
        model=model,
        version=version,
        task=spec.task,
        output=spec.target.output,
        kinds=kinds,
        profile=ReferenceProfile.from_frame(frame, kinds),
        prediction_profile=ReferenceProfile.from_frame(frame, {PREDICTION: ColumnKind.NUMERIC}),
        sample=frame,
        gates=gates,
        label_threshold=spec.target.threshold_minutes or 0.0,
    )
