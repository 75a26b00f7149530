"""Evaluation of a model on held-out rows: metrics, calibration, slices and baselines."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
from sklearn.ensemble import (
    HistGradientBoostingClassifier,
    HistGradientBoostingRegressor,
)
from sklearn.metrics import (
    average_precision_score,
    brier_score_loss,
    log_loss,
    mean_absolute_error,
    mean_squared_error,
    roc_auc_score,
)

from vigie.features.catalogue import FeatureKind
from vigie.training.spec import ModelSpec, Task, labels

Predict = Callable[[pd.DataFrame], npt.NDArray[np.float32]]

#: Slices reported by default, and the fewest rows a slice needs to be reported.
SLICES = ("carrier", "origin", "month")
MIN_SLICE_ROWS = 200
_EPS = 1e-7


def classification_metrics(y: npt.NDArray[Any], p: npt.NDArray[Any]) -> dict[str, float]:
    """ROC AUC, PR AUC, log loss, Brier score, base rate and rows."""
    p = np.clip(np.asarray(p, dtype=np.float64), _EPS, 1 - _EPS)
    both = len(np.unique(y)) == 2
    return {
        "roc_auc": float(roc_auc_score(y, p)) if both else float("nan"),
        "pr_auc": float(average_precision_score(y, p)) if both else float("nan"),
        "log_loss": float(log_loss(y, p, labels=[0, 1])),
        "brier": float(brier_score_loss(y, p)),
        "base_rate": float(np.mean(y)),
        "mean_prediction": float(np.mean(p)),
        "rows": int(len(y)),
    }


def regression_metrics(y: npt.NDArray[Any], p: npt.NDArray[Any]) -> dict[str, float]:
    """MAE, RMSE, bias (mean of prediction - truth) and rows, in minutes."""
    return {
        "mae": float(mean_absolute_error(y, p)),
        "rmse": float(np.sqrt(mean_squared_error(y, p))),
        "bias": float(np.mean(np.asarray(p) - np.asarray(y))),
        "rows": int(len(y)),
    }


def metrics(spec: ModelSpec, y: npt.NDArray[Any], p: npt.NDArray[Any]) -> dict[str, float]:
    """The task's metrics."""
    if spec.task is Task.CLASSIFICATION:
        return classification_metrics(y, p)
    return regression_metrics(y, p)


def calibration_table(
    y: npt.NDArray[Any], p: npt.NDArray[Any], bins: int = 10
) -> list[dict[str, float]]:
    """Predicted vs observed rate per decile of the predicted probability."""
    order = np.argsort(p, kind="stable")
    table = []
    for index, part in enumerate(np.array_split(order, bins)):
        if len(part):
            table.append(
                {
                    "bin": index + 1,
                    "rows": int(len(part)),
                    "mean_predicted": float(np.mean(p[part])),
                    "observed_rate": float(np.mean(y[part])),
                }
            )
    return table


def slice_metrics(
    spec: ModelSpec,
    frame: pd.DataFrame,
    y: npt.NDArray[Any],
    p: npt.NDArray[Any],
    by: Sequence[str] = SLICES,
) -> dict[str, list[dict[str, Any]]]:
    """The task's metrics per value of each slicing column (slices of few rows left out)."""
    result: dict[str, list[dict[str, Any]]] = {}
    for column in by:
        if column not in frame:
            continue
        keys = frame[column].astype("string").fillna("(missing)").to_numpy()
        rows = []
        for value in sorted(set(keys)):
            mask = keys == value
            if mask.sum() >= MIN_SLICE_ROWS:
                rows.append({"value": value, **metrics(spec, y[mask], p[mask])})
        result[column] = rows
    return result


def baselines(
    spec: ModelSpec, train: pd.DataFrame, test: pd.DataFrame, *, seed: int
) -> dict[str, dict[str, float]]:
    """Naive baseline (base rate / historical route mean) and HistGradientBoosting."""
    y_train, y_test = labels(spec, train), labels(spec, test)
    if spec.task is Task.CLASSIFICATION:
        naive = np.full(len(test), float(np.mean(y_train)))
        name = "base_rate"
    else:
        naive = route_mean(train, y_train, test)
        name = "route_mean"
    return {
        name: metrics(spec, y_test, naive),
        "hist_gradient_boosting": metrics(
            spec, y_test, _hgb(spec, train, y_train, test, seed=seed)
        ),
    }


def route_mean(
    train: pd.DataFrame, y_train: npt.NDArray[Any], test: pd.DataFrame
) -> npt.NDArray[np.float64]:
    """Mean delay of the (origin, dest) route in training; the overall mean if unseen."""
    history = pd.DataFrame({"origin": train["origin"], "dest": train["dest"], "y": y_train})
    means = history.groupby(["origin", "dest"])["y"].mean()
    keys = pd.MultiIndex.from_frame(test[["origin", "dest"]].astype(object))
    found = means.reindex(keys).to_numpy(dtype=np.float64)
    return np.where(np.isnan(found), float(np.mean(y_train)), found)


def _hgb(
    spec: ModelSpec, train: pd.DataFrame, y: npt.NDArray[Any], test: pd.DataFrame, *, seed: int
) -> npt.NDArray[np.float64]:
    categorical = spec.net_features(FeatureKind.CATEGORICAL)
    columns = categorical + spec.net_features(FeatureKind.NUMERIC)

    def design(frame: pd.DataFrame) -> pd.DataFrame:
        out = frame[columns].copy()
        for name in categorical:
            known = sorted(str(v) for v in train[name].dropna().unique())
            out[name] = pd.Categorical(out[name].astype(object), categories=known)
        return out

    if spec.task is Task.CLASSIFICATION:
        clf = HistGradientBoostingClassifier(categorical_features="from_dtype", random_state=seed)
        return np.asarray(clf.fit(design(train), y).predict_proba(design(test))[:, 1])
    reg = HistGradientBoostingRegressor(
        loss="absolute_error", categorical_features="from_dtype", random_state=seed
    )
    return np.asarray(reg.fit(design(train), y).predict(design(test)))


def evaluate(
    spec: ModelSpec,
    predict: Predict,
    *,
    train: pd.DataFrame,
    test: pd.DataFrame,
    seed: int,
) -> dict[str, Any]:
    """Metrics, calibration (classifier), slices and baselines of ``predict`` on ``test``.

    Args:
        spec: The model spec.
        predict: The model under evaluation (ONNX Runtime or torch), frame -> predictions.
        train: The rows the model was fitted on (for the baselines).
        test: The held-out rows.
        seed: Seed of the baselines.
    """
    y = labels(spec, test)
    p = np.asarray(predict(test), dtype=np.float64)
    report: dict[str, Any] = {
        "metrics": metrics(spec, y, p),
        "slices": slice_metrics(spec, test, y, p),
        "baselines": baselines(spec, train, test, seed=seed),
    }
    if spec.task is Task.CLASSIFICATION:
        report["calibration"] = calibration_table(y, p)
    return report
