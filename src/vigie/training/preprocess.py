"""Preprocessing fitted on the training rows: vocabularies, scaling, missing indicators.

The arithmetic is float32 and in the same order as the ONNX graph built by
:mod:`vigie.training.export`, so the torch pipeline and the exported model agree to
float32 rounding.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

#: Index of the out-of-vocabulary (and missing) bucket of every categorical feature.
OOV_INDEX = 0

Frame = pd.DataFrame | Mapping[str, Any]


@dataclass(frozen=True)
class Preprocessor:
    """Fitted preprocessing of the features the net reads.

    Attributes:
        categorical: Categorical feature names, in net order.
        vocabularies: Per categorical feature, the known values; value i has index i + 1
            (index 0 is the out-of-vocabulary and missing bucket).
        numeric: Numeric feature names, in net order.
        means: Per numeric feature, the training mean (also the imputed value).
        stds: Per numeric feature, the training standard deviation (1 when constant).
    """

    categorical: tuple[str, ...]
    vocabularies: dict[str, tuple[str, ...]]
    numeric: tuple[str, ...]
    means: tuple[float, ...]
    stds: tuple[float, ...]

    @classmethod
    def fit(
        cls, frame: pd.DataFrame, *, categorical: list[str], numeric: list[str]
    ) -> Preprocessor:
        """Learn vocabularies and scaling from the training rows."""
        vocabularies = {
            name: tuple(sorted(str(v) for v in frame[name].dropna().unique() if str(v) != ""))
            for name in categorical
        }
        values = numeric_matrix(frame, numeric)
        means = np.nanmean(values, axis=0) if len(values) else np.zeros(len(numeric))
        stds = np.nanstd(values, axis=0) if len(values) else np.ones(len(numeric))
        means = np.nan_to_num(means, nan=0.0)
        stds = np.where(np.isfinite(stds) & (stds > 1e-6), stds, 1.0)
        return cls(
            categorical=tuple(categorical),
            vocabularies=vocabularies,
            numeric=tuple(numeric),
            means=tuple(float(np.float32(m)) for m in means),
            stds=tuple(float(np.float32(s)) for s in stds),
        )

    @property
    def cardinalities(self) -> list[int]:
        """Embedding table sizes (vocabulary plus the OOV bucket)."""
        return [len(self.vocabularies[name]) + 1 for name in self.categorical]

    @property
    def numeric_width(self) -> int:
        """Width of the numeric block: scaled values then missing indicators."""
        return 2 * len(self.numeric)

    def encode(self, frame: Frame) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
        """Categorical indices ``[N, k]`` (int64) and numeric block ``[N, 2m]`` (float32)."""
        columns = [self._indices(frame, name) for name in self.categorical]
        size = _length(frame)
        cats = np.stack(columns, axis=1) if columns else np.zeros((size, 0), np.int64)
        values = numeric_matrix(frame, list(self.numeric))
        missing = np.isnan(values)
        means = np.asarray(self.means, dtype=np.float32)
        stds = np.asarray(self.stds, dtype=np.float32)
        imputed = np.where(missing, means, values)
        scaled = (imputed - means) / stds
        block = np.concatenate([scaled, missing.astype(np.float32)], axis=1)
        return cats.astype(np.int64), block.astype(np.float32)

    def _indices(self, frame: Frame, name: str) -> npt.NDArray[np.int64]:
        lookup = {v: i + 1 for i, v in enumerate(self.vocabularies[name])}
        raw = string_column(frame, name)
        return np.fromiter((lookup.get(v, OOV_INDEX) for v in raw), np.int64, count=len(raw))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (for the model card and debugging)."""
        return {
            "categorical": {n: list(self.vocabularies[n]) for n in self.categorical},
            "numeric": {
                n: {"mean": m, "std": s}
                for n, m, s in zip(self.numeric, self.means, self.stds, strict=True)
            },
            "oov_index": OOV_INDEX,
        }


def _length(frame: Frame) -> int:
    if isinstance(frame, pd.DataFrame):
        return len(frame)
    first: Any = next(iter(frame.values()), [])
    return len(np.asarray(first).reshape(-1))


def numeric_matrix(frame: Frame, names: list[str]) -> npt.NDArray[np.float32]:
    """Numeric columns as float32 ``[N, m]``; missing (None, NaN, pd.NA) becomes NaN."""
    size = _length(frame)
    if not names:
        return np.zeros((size, 0), np.float32)
    columns = [
        pd.to_numeric(pd.Series(np.asarray(frame[n], dtype=object).reshape(-1)), errors="coerce")
        .astype("float64")
        .to_numpy()
        for n in names
    ]
    return np.stack(columns, axis=1).astype(np.float32)


def string_column(frame: Frame, name: str) -> list[str]:
    """A categorical column as strings; missing becomes the empty string (OOV)."""
    values = np.asarray(frame[name], dtype=object).reshape(-1)
    return ["" if v is None or (isinstance(v, float) and np.isnan(v)) else str(v) for v in values]
