"""Drift windows: the served rows of one model version, gathered entry by entry.

A window takes rows until it holds ``window_rows`` of them (a count window) or until the
prediction time of its rows spans ``window_seconds`` (a time window), whichever comes
first; an entry that would overflow a count window is split, so count windows are exact.
Statistics are kept incrementally (:class:`vigie.monitoring.drift.WindowStats`); only
the flight keys and predictions of every row (for the delayed label join) and a seeded
sample of at most ``sample_rows`` rows (for the published Evidently report) are kept.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from vigie.monitoring.drift import ColumnKind, WindowStats
from vigie.monitoring.reference import PREDICTION, TARGET, VersionReference
from vigie.training.spec import Task

#: Rows gathered before they are folded into the window's statistics.
_FLUSH_ROWS = 2048

#: Fewest labelled rows for a quality figure.
MIN_LABELLED_ROWS = 30


@dataclass
class Window:
    """One window of one model version (open while it gathers rows, then closed).

    Attributes:
        reference: The version's reference.
        number: The window's number within its version (from 1).
        sample_rows: Most rows kept for the published report.
        seed: Seed of the report sample.
    """

    reference: VersionReference
    number: int
    sample_rows: int
    seed: int
    rows: int = 0
    first_time: str | None = None
    last_time: str | None = None
    first_offset: str | None = None
    last_offset: str | None = None
    closed_by: str | None = None
    labelled_rows: int = 0
    missing_features: Counter[str] = field(default_factory=Counter)
    enriched_rows: int = 0
    stale_rows: Counter[str] = field(default_factory=Counter)
    max_age_s: dict[str, float] = field(default_factory=dict)
    stats: WindowStats = field(init=False)
    prediction_stats: WindowStats = field(init=False)
    _pending: dict[str, list[Any]] = field(init=False)
    _pending_rows: int = 0
    _keys: list[npt.NDArray[np.int64]] = field(default_factory=list)
    _predictions: list[npt.NDArray[np.float64]] = field(default_factory=list)
    _sample: pd.DataFrame | None = None
    _rng: np.random.Generator = field(init=False)

    def __post_init__(self) -> None:
        self.stats = WindowStats(self.reference.kinds)
        self.prediction_stats = WindowStats({PREDICTION: ColumnKind.NUMERIC})
        self._pending = self._empty_pending()
        self._rng = np.random.default_rng([self.seed, self.number])

    @property
    def window_id(self) -> str:
        """The window's id: its number, zero-padded (sorts in order)."""
        return f"{self.number:06d}"

    def add(
        self,
        inputs: dict[str, list[Any]],
        predictions: list[Any],
        keys: list[int | None],
        *,
        time: str,
        offset: str,
    ) -> None:
        """Add rows of one payload entry (already cut to fit the window).

        Args:
            inputs: Feature name to one value per row; a feature the entry lacks is
                counted as missing for its rows.
            predictions: The model's output, one per row (None when absent).
            keys: The flight key of each row, None when the request named none.
            time: The entry's prediction time (ISO-8601).
            offset: The entry's payload-log offset.
        """
        count = len(predictions)
        for name in self.reference.kinds:
            values = inputs.get(name)
            if values is None or len(values) != count:
                self.missing_features[name] += count
                values = [None] * count
            self._pending[name].extend(values)
        self._pending[PREDICTION].extend(predictions)
        self._pending["_key"].extend(keys)
        self._pending_rows += count
        self.rows += count
        self.first_time = self.first_time or time
        self.last_time = time
        self.first_offset = self.first_offset or offset
        self.last_offset = offset
        if self._pending_rows >= _FLUSH_ROWS:
            self.flush()

    def note_enrichment(self, record: object, rows: int) -> None:
        """Count ``rows`` of an entry whose inputs the service filled from its online store
        (the entry's ``enrichment`` record; None or malformed: not enriched)."""
        if not isinstance(record, dict) or not record.get("filled"):
            return
        self.enriched_rows += rows
        stale = record.get("stale")
        for family, count in stale.items() if isinstance(stale, dict) else ():
            if isinstance(count, int):
                self.stale_rows[str(family)] += min(count, rows)
        ages = record.get("age_s")
        for family, age in ages.items() if isinstance(ages, dict) else ():
            if isinstance(age, int | float):
                self.max_age_s[str(family)] = max(self.max_age_s.get(str(family), 0.0), age)

    def freshness(self) -> dict[str, Any]:
        """What the window's rows got from the online store, for its result."""
        return {
            "enriched_rows": self.enriched_rows,
            "stale_rows": dict(self.stale_rows),
            "max_age_s": {k: round(v, 3) for k, v in self.max_age_s.items()},
        }

    def flush(self) -> None:
        """Fold the gathered rows into the statistics, the label keys and the sample."""
        if not self._pending_rows:
            return
        pending, self._pending, self._pending_rows = self._pending, self._empty_pending(), 0
        chunk = pd.DataFrame({name: pending[name] for name in self.reference.kinds})
        self.stats.add({name: chunk[name].to_numpy() for name in self.reference.kinds})
        predictions = np.array(
            [np.nan if p is None else p for p in pending[PREDICTION]], dtype=np.float64
        )
        self.prediction_stats.add({PREDICTION: predictions})
        self._predictions.append(predictions)
        self._keys.append(
            np.array([-1 if k is None else k for k in pending["_key"]], dtype=np.int64)
        )
        chunk[PREDICTION] = predictions
        chunk["_key"] = self._keys[-1]
        chunk["_priority"] = self._rng.random(len(chunk))
        merged = chunk if self._sample is None else pd.concat([self._sample, chunk])
        if len(merged) > self.sample_rows:
            merged = merged.nlargest(self.sample_rows, "_priority")
        self._sample = merged

    def time_span_seconds(self) -> float:
        """Seconds between the first and the last row's prediction time."""
        if self.first_time is None or self.last_time is None:
            return 0.0
        return (_parse(self.last_time) - _parse(self.first_time)).total_seconds()

    def close(self, closed_by: str) -> None:
        """Stop taking rows (``closed_by``: ``count``, ``time`` or ``version-change``)."""
        self.flush()
        self.closed_by = closed_by

    @property
    def keys(self) -> npt.NDArray[np.int64]:
        """Flight key of every row (-1 when unknown)."""
        return np.concatenate(self._keys) if self._keys else np.empty(0, dtype=np.int64)

    @property
    def predictions(self) -> npt.NDArray[np.float64]:
        """The model's output for every row."""
        if not self._predictions:
            return np.empty(0, dtype=np.float64)
        return np.concatenate(self._predictions)

    def labelled(self, labels: Mapping[int, float]) -> tuple[npt.NDArray[Any], npt.NDArray[Any]]:
        """Predictions and labels of the rows whose label has arrived.

        Args:
            labels: Arrival delay in minutes by flight key.
        """
        delays = _delays(self.keys, labels)
        known = ~np.isnan(delays)
        return self.predictions[known], self._as_label(delays[known])

    def report_frame(self, labels: Mapping[int, float]) -> pd.DataFrame:
        """The sampled rows (features, prediction, label where known) for Evidently."""
        if self._sample is None:
            return pd.DataFrame(columns=[*self.reference.kinds, PREDICTION, TARGET])
        frame = self._sample.sort_values("_priority", ascending=False)
        delays = _delays(frame["_key"].to_numpy(dtype=np.int64), labels)
        frame = frame.drop(columns=["_key", "_priority"]).reset_index(drop=True)
        frame[TARGET] = self._as_label(delays)
        return frame

    def _as_label(self, delays: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        if self.reference.task is Task.CLASSIFICATION:
            threshold = self.reference.label_threshold
            return np.where(np.isnan(delays), np.nan, (delays > threshold).astype(np.float64))
        return delays

    def _empty_pending(self) -> dict[str, list[Any]]:
        return {name: [] for name in [*self.reference.kinds, PREDICTION, "_key"]}


def quality(
    task: Task, predictions: npt.NDArray[Any], labels: npt.NDArray[Any]
) -> dict[str, float] | None:
    """Quality of predictions against arrived labels; None below :data:`MIN_LABELLED_ROWS`.

    Classification: ``roc_auc`` (None-free only when both classes occur), ``brier``,
    ``accuracy`` (at 0.5) and the observed ``positive_rate``; regression: ``mae``,
    ``rmse`` and ``bias`` (mean of prediction minus label).
    """
    valid = ~np.isnan(predictions)
    predictions, labels = predictions[valid], labels[valid]
    if len(labels) < MIN_LABELLED_ROWS:
        return None
    if task is Task.CLASSIFICATION:
        result = {
            "brier": float(np.mean((predictions - labels) ** 2)),
            "accuracy": float(np.mean((predictions >= 0.5) == (labels >= 0.5))),
            "positive_rate": float(np.mean(labels)),
        }
        if 0 < labels.sum() < len(labels):
            result["roc_auc"] = _roc_auc(predictions, labels)
        return result
    error = predictions - labels
    return {
        "mae": float(np.mean(np.abs(error))),
        "rmse": float(np.sqrt(np.mean(error**2))),
        "bias": float(np.mean(error)),
    }


def _roc_auc(scores: npt.NDArray[Any], labels: npt.NDArray[Any]) -> float:
    """ROC AUC by the rank-sum (Mann-Whitney) formula, ties given their average rank."""
    ranks = pd.Series(scores).rank(method="average").to_numpy()
    positives = labels >= 0.5
    n_pos = int(positives.sum())
    n_neg = len(labels) - n_pos
    return float((ranks[positives].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def _delays(keys: npt.NDArray[np.int64], labels: Mapping[int, float]) -> npt.NDArray[np.float64]:
    """The arrival delay of each key, NaN where unknown (no key, or no label yet)."""
    nan = float("nan")
    return np.array([labels.get(k, nan) for k in keys.tolist()], dtype=np.float64)


def _parse(text: str) -> datetime:
    return datetime.fromisoformat(text)
