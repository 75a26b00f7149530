"""Model specs: what a model is (features, target, window, hyper-parameters, gates).

A spec is ``models/<name>/spec.yaml`` read into the pydantic models below; the training
code is pure functions over it. Loading a spec checks its features against the feature
catalogue (no leakage) and the data policy (training use allowed).
"""

from __future__ import annotations

import enum
from pathlib import Path
from typing import Literal

import numpy as np
import numpy.typing as npt
import pandas as pd
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from vigie.errors import ErrorCode, VigieError
from vigie.features.catalogue import (
    TARGET_COLUMN,
    Feature,
    FeatureKind,
    check_policy,
    resolve_features,
)
from vigie.governance.policy import DataPolicy, load_policy


class Task(enum.StrEnum):
    """What the model predicts."""

    CLASSIFICATION = "classification"
    REGRESSION = "regression"


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Target(_Frozen):
    """The label: ``arr_delay`` minutes, thresholded for a classifier."""

    column: Literal["arr_delay"] = "arr_delay"
    threshold_minutes: float | None = None
    output: Literal["probability", "delay_minutes"]


class IgnoredFeature(_Frozen):
    """A feature kept in the input contract that the net does not read, and why."""

    name: str
    reason: str


class Window(_Frozen):
    """Which history a (re)training reads."""

    policy: Literal["sliding", "expanding"]
    months: int | None = Field(default=None, ge=1)
    #: Days a retraining holds out to score challenger and champion (None: one month).
    evaluation_days: int | None = Field(default=None, ge=1)
    why: str = Field(min_length=10)

    @model_validator(mode="after")
    def _months_for_sliding(self) -> Window:
        if (self.policy == "sliding") != (self.months is not None):
            raise ValueError("a sliding window needs months; an expanding one takes none")
        return self


class HyperParameters(_Frozen):
    """Training hyper-parameters of the tabular net."""

    max_epochs: int = Field(default=30, ge=1)
    batch_size: int = Field(default=1024, ge=1)
    learning_rate: float = Field(default=5e-4, gt=0)
    weight_decay: float = Field(default=1e-3, ge=0)
    dropout: float = Field(default=0.3, ge=0, lt=1)
    hidden: tuple[int, ...] = (128, 64)
    max_embedding_dim: int = Field(default=16, ge=1)
    patience: int = Field(default=4, ge=1)
    validation_fraction: float = Field(default=0.15, gt=0, lt=0.5)
    huber_delta: float = Field(default=1.0, gt=0)
    reference_sample_rows: int = Field(default=5000, ge=1)


class LatencyBudget(_Frozen):
    """ONNX Runtime latency budgets (CPU, one thread pool) a candidate must meet."""

    p50_single_row_ms: float = Field(gt=0)
    batch_256_ms: float = Field(gt=0)


class BeatProduction(_Frozen):
    """The candidate must beat production on ``metric`` by at least ``margin``."""

    metric: str
    margin: float = Field(default=0.0, ge=0)
    higher_is_better: bool = True


class Gates(_Frozen):
    """Promotion gates, evaluated by the registry on a candidate's metrics."""

    min: dict[str, float] = Field(default_factory=dict)
    max: dict[str, float] = Field(default_factory=dict)
    max_parity_error: float = Field(gt=0)
    #: None (``null`` in the spec): no comparison with production, e.g. while the
    #: production version is known to be broken.
    must_beat_production: BeatProduction | None
    latency: LatencyBudget
    behaviour_must_pass: bool = True
    #: A bound production misses on the same window becomes production's value
    #: (:class:`vigie.registry.gates.GateSpec`).
    floors_follow_production: bool = False


class ModelSpec(_Frozen):
    """One model's spec, as read from ``models/<name>/spec.yaml``."""

    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    description: str
    task: Task
    target: Target
    features: tuple[str, ...] = Field(min_length=1)
    ignored_by_net: tuple[IgnoredFeature, ...] = ()
    window: Window
    hyperparameters: HyperParameters = HyperParameters()
    gates: Gates

    @model_validator(mode="after")
    def _coherent(self) -> ModelSpec:
        classifier = self.task is Task.CLASSIFICATION
        if classifier != (self.target.threshold_minutes is not None):
            raise ValueError("target.threshold_minutes is required for, and only for, a classifier")
        if classifier != (self.target.output == "probability"):
            raise ValueError("a classifier outputs probability; a regressor delay_minutes")
        stray = [i.name for i in self.ignored_by_net if i.name not in self.features]
        if stray:
            raise ValueError(f"ignored_by_net names features not in features: {stray}")
        return self

    def feature_defs(self) -> list[Feature]:
        """The catalogue entries of the spec's features, in spec order."""
        return resolve_features(self.features)

    def net_features(self, kind: FeatureKind) -> list[str]:
        """Features of ``kind`` that the net reads (spec order, ignored ones left out)."""
        ignored = {i.name for i in self.ignored_by_net}
        return [f.name for f in self.feature_defs() if f.kind is kind and f.name not in ignored]


def spec_path(models_dir: Path, name: str) -> Path:
    """Where the spec of model ``name`` lives."""
    return models_dir / name / "spec.yaml"


def load_spec(models_dir: Path, name: str, *, policy: DataPolicy | None = None) -> ModelSpec:
    """Read, validate and policy-check ``models/<name>/spec.yaml``.

    Args:
        models_dir: The folder of model specs (``Settings.models_dir``).
        name: The model name (``flight_delay``, ``arrival_delay``).
        policy: The data policy; default: the policy shipped with vigie.

    Raises:
        VigieError: MODEL_NOT_FOUND when there is no spec; CONFIGURATION when it is
            invalid; POLICY_VIOLATION for a leaking or policy-refused feature.
    """
    path = spec_path(models_dir, name)
    if not path.is_file():
        raise VigieError(
            ErrorCode.MODEL_NOT_FOUND, f"no model spec at {path}", model=name, path=str(path)
        )
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
        spec = ModelSpec.model_validate(raw)
    except (OSError, yaml.YAMLError) as err:
        raise VigieError(ErrorCode.CONFIGURATION, f"cannot read {path}: {err}") from err
    except ValidationError as err:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in err.errors()
        )
        raise VigieError(
            ErrorCode.CONFIGURATION, f"model spec {path} is invalid: {problems}", path=str(path)
        ) from err
    if spec.name != name:
        raise VigieError(
            ErrorCode.CONFIGURATION, f"model spec {path} is named {spec.name!r}, expected {name!r}"
        )
    check_policy(spec.feature_defs(), policy if policy is not None else load_policy())
    return spec


def labels(spec: ModelSpec, frame: pd.DataFrame) -> npt.NDArray[np.float32]:
    """The label of each row: 1/0 late for a classifier, minutes for a regressor."""
    delay = frame[TARGET_COLUMN].to_numpy(dtype=np.float64)
    if spec.task is Task.CLASSIFICATION:
        assert spec.target.threshold_minutes is not None  # checked by the spec
        return (delay > spec.target.threshold_minutes).astype(np.float32)
    return delay.astype(np.float32)
