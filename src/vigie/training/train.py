"""Training of a tabular net on a snapshot: time-based validation, early stopping, seeds."""

from __future__ import annotations

import copy
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
import torch
from torch import nn

from vigie.config import Settings
from vigie.errors import ErrorCode, VigieError
from vigie.features.catalogue import FeatureKind
from vigie.training.net import OutputHead, TabularNet
from vigie.training.preprocess import Frame, Preprocessor
from vigie.training.snapshot import Snapshot
from vigie.training.spec import ModelSpec, Task, labels

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EpochReport:
    """Progress of one epoch, given to the progress callback."""

    epoch: int
    max_epochs: int
    train_loss: float
    validation_loss: float
    best_epoch: int
    seconds: float


Progress = Callable[[EpochReport], None]


@dataclass
class TrainedModel:
    """A trained net with everything needed to predict, export and describe it.

    Attributes:
        spec: The model spec.
        head: The net with its output transform (CPU, eval mode).
        preprocessor: The fitted preprocessing.
        snapshot: The training snapshot's lineage.
        seed: The seed used.
        device: The device trained on (``cpu`` or ``cuda``).
        history: One dict per epoch (losses).
        best_epoch: The epoch whose weights were kept.
        train_rows: Rows fitted on.
        validation: The held-out rows (the latest part of the window), raw features.
        reference_sample: A seeded sample of the training rows, for drift monitoring.
        train_seconds: Wall-clock training time.
    """

    spec: ModelSpec
    head: OutputHead
    preprocessor: Preprocessor
    snapshot: dict[str, Any]
    seed: int
    device: str
    history: list[dict[str, float]]
    best_epoch: int
    train_rows: int
    validation: pd.DataFrame
    reference_sample: pd.DataFrame
    train_seconds: float
    extra: dict[str, Any] = field(default_factory=dict)

    def predict(self, frame: Frame) -> npt.NDArray[np.float32]:
        """The torch eager pipeline: preprocess (numpy, float32) then the net, on CPU."""
        cats, nums = self.preprocessor.encode(frame)
        with torch.no_grad():
            out = self.head(torch.from_numpy(cats), torch.from_numpy(nums))
        result: npt.NDArray[np.float32] = out.numpy().astype(np.float32)
        return result


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch; ask torch for deterministic algorithms."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    # warn_only: some CUDA kernels have no deterministic variant; CPU ones all do.
    torch.use_deterministic_algorithms(True, warn_only=True)


def pick_device(settings: Settings) -> torch.device:
    """CUDA when the settings allow it and it is present, else CPU.

    Raises:
        VigieError: CONFIGURATION when ``device=cuda`` is asked and CUDA is absent.
    """
    if settings.device == "cuda" and not torch.cuda.is_available():
        raise VigieError(
            ErrorCode.CONFIGURATION, "VIGIE_DEVICE=cuda but no CUDA device is available"
        )
    use_cuda = settings.device != "cpu" and torch.cuda.is_available()
    return torch.device("cuda" if use_cuda else "cpu")


def time_split(frame: pd.DataFrame, fraction: float) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Fit rows and validation rows: the validation part is the LATEST part of the window."""
    ordered = frame.sort_values(["sched_dep_utc", "flight_key"], kind="stable")
    cut = int(round(len(ordered) * (1 - fraction)))
    if cut < 1 or cut >= len(ordered):
        raise VigieError(
            ErrorCode.DATA_QUALITY,
            f"a window of {len(ordered)} rows is too small to hold out {fraction:.0%}",
        )
    return ordered.iloc[:cut].reset_index(drop=True), ordered.iloc[cut:].reset_index(drop=True)


def train_model(
    settings: Settings,
    spec: ModelSpec,
    snapshot: Snapshot,
    *,
    seed: int,
    progress: Progress | None = None,
) -> TrainedModel:
    """Train the spec's net on a snapshot.

    Args:
        settings: Settings (device).
        spec: The model spec (features, hyper-parameters).
        snapshot: The training snapshot.
        seed: Seed of every random generator involved.
        progress: Called after each epoch with an :class:`EpochReport`.

    Raises:
        VigieError: DATA_QUALITY when the snapshot is too small to split.
    """
    started = time.perf_counter()
    seed_everything(seed)
    frame = snapshot.read()
    fit, validation = time_split(frame, spec.hyperparameters.validation_fraction)
    pre = Preprocessor.fit(
        fit,
        categorical=spec.net_features(FeatureKind.CATEGORICAL),
        numeric=spec.net_features(FeatureKind.NUMERIC),
    )
    y_fit, y_val = labels(spec, fit), labels(spec, validation)
    classifier = spec.task is Task.CLASSIFICATION
    mean = 0.0 if classifier else float(y_fit.mean())
    std = 1.0 if classifier else float(y_fit.std() or 1.0)
    device = pick_device(settings)
    hp = spec.hyperparameters
    net = TabularNet(
        cardinalities=pre.cardinalities,
        numeric_width=pre.numeric_width,
        hidden=hp.hidden,
        dropout=hp.dropout,
        max_embedding_dim=hp.max_embedding_dim,
    )
    data = _Tensors.build(pre, fit, (y_fit - mean) / std, device)
    held = _Tensors.build(pre, validation, (y_val - mean) / std, device)
    history, best = _fit(net, data, held, spec=spec, seed=seed, progress=progress, device=device)
    net.load_state_dict(best[1])
    net.to("cpu").eval()
    sample_rows = min(hp.reference_sample_rows, len(fit))
    reference = fit.sample(n=sample_rows, random_state=seed).sort_values("flight_key")
    return TrainedModel(
        spec=spec,
        head=OutputHead(net, classifier=classifier, mean=mean, std=std).eval(),
        preprocessor=pre,
        snapshot=snapshot.lineage(),
        seed=seed,
        device=device.type,
        history=history,
        best_epoch=best[0],
        train_rows=len(fit),
        validation=validation,
        reference_sample=reference.reset_index(drop=True),
        train_seconds=time.perf_counter() - started,
    )


@dataclass(frozen=True)
class _Tensors:
    cats: torch.Tensor
    nums: torch.Tensor
    target: torch.Tensor

    @classmethod
    def build(
        cls, pre: Preprocessor, frame: pd.DataFrame, y: npt.NDArray[Any], device: torch.device
    ) -> _Tensors:
        cats, nums = pre.encode(frame)
        return cls(
            torch.from_numpy(cats).to(device),
            torch.from_numpy(nums).to(device),
            torch.from_numpy(np.asarray(y, dtype=np.float32)).to(device),
        )


def _loss(spec: ModelSpec) -> nn.Module:
    if spec.task is Task.CLASSIFICATION:
        return nn.BCEWithLogitsLoss()
    return nn.HuberLoss(delta=spec.hyperparameters.huber_delta)


def _fit(
    net: TabularNet,
    data: _Tensors,
    held: _Tensors,
    *,
    spec: ModelSpec,
    seed: int,
    progress: Progress | None,
    device: torch.device,
) -> tuple[list[dict[str, float]], tuple[int, dict[str, torch.Tensor]]]:
    hp = spec.hyperparameters
    net.to(device)
    loss_fn = _loss(spec)
    optimiser = torch.optim.AdamW(
        net.parameters(), lr=hp.learning_rate, weight_decay=hp.weight_decay
    )
    order = np.random.default_rng(seed)
    history: list[dict[str, float]] = []
    best: tuple[int, float, dict[str, torch.Tensor]] = (0, float("inf"), {})
    for epoch in range(1, hp.max_epochs + 1):
        tick = time.perf_counter()
        train_loss = _epoch(
            net, data, loss_fn=loss_fn, optimiser=optimiser, order=order, batch_size=hp.batch_size
        )
        net.eval()
        with torch.no_grad():
            val_loss = float(loss_fn(net(held.cats, held.nums), held.target))
        if val_loss < best[1]:
            state = {k: v.detach().to("cpu").clone() for k, v in net.state_dict().items()}
            best = (epoch, val_loss, copy.deepcopy(state))
        history.append({"epoch": epoch, "train_loss": train_loss, "validation_loss": val_loss})
        if progress is not None:
            took = time.perf_counter() - tick
            progress(EpochReport(epoch, hp.max_epochs, train_loss, val_loss, best[0], took))
        if epoch - best[0] >= hp.patience:
            break
    log.info("training stopped", extra={"epochs": len(history), "best_epoch": best[0]})
    return history, (best[0], best[2])


def _epoch(
    net: TabularNet,
    data: _Tensors,
    *,
    loss_fn: nn.Module,
    optimiser: torch.optim.Optimizer,
    order: np.random.Generator,
    batch_size: int,
) -> float:
    net.train()
    permutation = torch.from_numpy(order.permutation(len(data.target))).to(data.target.device)
    total, count = 0.0, 0
    for start in range(0, len(permutation), batch_size):
        index = permutation[start : start + batch_size]
        optimiser.zero_grad()
        loss = loss_fn(net(data.cats[index], data.nums[index]), data.target[index])
        loss.backward()
        optimiser.step()
        total += float(loss.detach()) * len(index)
        count += len(index)
    return total / max(count, 1)
