"""The drift sidecar's engine: Evidently's default data-drift decisions, from value counts.

Every default stattest of Evidently 0.7's ``DataDriftPreset`` depends on the two samples
only through their empirical distributions, so the distinct values of a column and their
counts are a sufficient statistic. The reference is counted once per model version
(:class:`ReferenceProfile`); a window is counted incrementally as payload entries arrive
(:class:`WindowStats`, memory in the number of distinct values, not of rows); and
:func:`detect_drift` applies Evidently's own selection rules, thresholds and scipy
functions to the counts. Nothing is sampled: decisions are those of the full computation,
and scores agree with it up to floating-point summation order (see the comparison test).

:func:`evidently_drift` runs the full Evidently computation (``Report`` +
``DataDriftPreset``) and parses it into the same :class:`DriftResult`: the reference
implementation for tests and benchmarks. Evidently is imported only when it is called.

The rules mirrored, from Evidently 0.7's legacy drift calculation:

* missing values: NaN, None and +/-inf are dropped from both samples before anything else;
  a reference column left empty is refused (Evidently raises on it too);
* "small" means at most 1,000 non-missing reference values; the number of distinct
  values is counted over reference and current together, missing values excluded;
* selection: small reference: numeric with <= 5 distinct values uses chi-square (3-5
  values) or the Z-test (<= 2), numeric otherwise Kolmogorov-Smirnov; categorical uses
  chi-square (> 2 values) or the Z-test. Larger reference: numeric with <= 5 distinct
  values and every categorical use Jensen-Shannon, numeric otherwise the normed
  Wasserstein distance;
* thresholds and directions: Wasserstein and Jensen-Shannon drift when the distance is
  >= 0.1; K-S when the p-value is <= 0.05; chi-square and Z when the p-value is < 0.05;
* dataset drift: the share of drifted columns is >= ``drift_share`` (0.5 by default).
"""

from __future__ import annotations

import enum
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
from scipy import stats  # type: ignore[import-untyped, unused-ignore]
from scipy.spatial import distance  # type: ignore[import-untyped, unused-ignore]

from vigie.errors import ErrorCode, VigieError
from vigie.features.catalogue import FeatureKind, resolve_features


class ColumnKind(enum.StrEnum):
    """How a column is compared (Evidently's numerical and categorical column types)."""

    NUMERIC = "numeric"
    CATEGORICAL = "categorical"


#: Display name Evidently gives each default stattest (its results carry this name).
STATTEST_DISPLAY_NAMES: dict[str, str] = {
    "wasserstein": "Wasserstein distance (normed)",
    "jensenshannon": "Jensen-Shannon distance",
    "ks": "K-S p_value",
    "chisquare": "chi-square p_value",
    "z": "Z-test p_value",
}

#: Stattest name of a column with no value at all in the window (Evidently refuses such a
#: window, so there is no decision to mirror: the column is reported as drifted).
NO_VALUE_STATTEST = "no_value"

#: Evidently's largest "small" reference (non-missing values): p-value tests up to here.
SMALL_REFERENCE = 1000
#: Evidently treats a numeric column with this many distinct values or fewer as discrete.
FEW_VALUES = 5
#: Evidently picks the Z-test over chi-square up to this many distinct values.
TWO_VALUES = 2
#: scipy's ks_2samp ("auto") computes the exact p-value when both samples are this small.
KS_EXACT_MAX = 10000
#: Evidently's floor of the reference standard deviation that norms Wasserstein.
WASSERSTEIN_MIN_NORM = 0.001
#: Raw values a window column buffers before counting them.
COMPACT_ROWS = 1 << 18
#: A batch column this long is counted at once rather than buffered.
BIG_BATCH = 1 << 12

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


@dataclass(frozen=True)
class FeatureDrift:
    """The drift decision on one column.

    Attributes:
        name: The column.
        kind: Numeric or categorical.
        stattest: Evidently's name of the test used (``wasserstein``, ``jensenshannon``,
            ``ks``, ``chisquare``, ``z``), or ``no_value``.
        score: The distance (Wasserstein, Jensen-Shannon) or p-value (the others).
        threshold: The threshold the score was compared with.
        drifted: Whether the column drifted.
        missing: Rows of the window with no value in this column.
    """

    name: str
    kind: ColumnKind
    stattest: str
    score: float
    threshold: float
    drifted: bool
    missing: int


@dataclass(frozen=True)
class DriftResult:
    """Drift of a window against a reference: per column and for the dataset.

    Attributes:
        features: One decision per column, in the reference's column order.
        drifted_count: How many columns drifted.
        share_drifted: ``drifted_count`` over the number of columns.
        dataset_drift: Whether ``share_drifted`` reached the drift share.
        rows: Rows in the window.
        reference_rows: Rows in the reference.
    """

    features: list[FeatureDrift]
    drifted_count: int
    share_drifted: float
    dataset_drift: bool
    rows: int
    reference_rows: int

    def to_dict(self) -> dict[str, Any]:
        """The result as a JSON-ready mapping (non-finite numbers become None)."""
        features = [
            asdict(f)
            | {"kind": f.kind.value, "score": _finite(f.score), "threshold": _finite(f.threshold)}
            for f in self.features
        ]
        return {
            "features": features,
            "drifted_count": self.drifted_count,
            "share_drifted": self.share_drifted,
            "dataset_drift": self.dataset_drift,
            "rows": self.rows,
            "reference_rows": self.reference_rows,
        }


def kinds_for(features: Iterable[str]) -> dict[str, ColumnKind]:
    """The column kind of each catalogue feature, in order.

    Raises:
        VigieError: INVALID_INPUT or POLICY_VIOLATION for a name the catalogue refuses.
    """
    numeric = FeatureKind.NUMERIC
    return {
        f.name: ColumnKind.NUMERIC if f.kind is numeric else ColumnKind.CATEGORICAL
        for f in resolve_features(features)
    }


@dataclass(frozen=True)
class _Counts:
    """Distinct non-missing values of a column (sorted when numeric) and their counts."""

    values: npt.NDArray[Any]
    counts: IntArray

    @property
    def total(self) -> int:
        return int(self.counts.sum())


def _empty_counts(kind: ColumnKind) -> _Counts:
    dtype = np.float64 if kind is ColumnKind.NUMERIC else object
    return _Counts(np.empty(0, dtype=dtype), np.empty(0, dtype=np.int64))


def _merge_counts(kind: ColumnKind, first: _Counts, second: _Counts) -> _Counts:
    """One table of counts from two (hashing, so categories of any type mix)."""
    if first.values.size == 0:
        return second
    if second.values.size == 0:
        return first
    codes, uniques = pd.factorize(np.concatenate((first.values, second.values)))
    counts = np.zeros(len(uniques), dtype=np.int64)
    np.add.at(counts, codes, np.concatenate((first.counts, second.counts)))
    values = np.asarray(uniques)
    if kind is ColumnKind.NUMERIC:
        order = np.argsort(values, kind="stable")
        return _Counts(values[order], counts[order])
    return _Counts(values, counts)


def _count_raw(kind: ColumnKind, raw: npt.NDArray[Any]) -> _Counts:
    """Counts of the non-missing values of ``raw`` (NaN, None and +/-inf are missing)."""
    if kind is ColumnKind.NUMERIC:
        values, counts = np.unique(raw[np.isfinite(raw)], return_counts=True)
        return _Counts(values, counts.astype(np.int64))
    # Hash counting, without the codes array that factorize would build.
    table = pd.Series(raw, dtype=object, copy=False).value_counts(dropna=True, sort=False)
    counts = np.asarray(table.to_numpy(), dtype=np.int64)
    return _Counts(table.index.to_numpy(dtype=object), counts)


def _as_numeric(values: Sequence[Any] | npt.NDArray[Any]) -> FloatArray:
    """Floats, with None and anything unreadable as a number made NaN (never raises)."""
    if isinstance(values, np.ndarray) and values.dtype.kind in "biuf":
        return values.astype(np.float64, copy=False).ravel()
    try:
        return np.asarray(values, dtype=np.float64).ravel()
    except (TypeError, ValueError):
        coerced = pd.to_numeric(pd.Series(_as_objects(values)), errors="coerce")
        return coerced.to_numpy(dtype=np.float64, na_value=np.nan)


def _as_objects(values: Sequence[Any] | npt.NDArray[Any]) -> npt.NDArray[Any]:
    """A flat object array (filled element-wise, so tuples stay single values)."""
    if isinstance(values, np.ndarray):
        return np.asarray(values, dtype=object).ravel()
    out = np.empty(len(values), dtype=object)
    out[:] = values if isinstance(values, list) else list(values)
    return out


def _as_column(values: Any) -> Sequence[Any] | npt.NDArray[Any]:
    """A batch column as a sized sequence (a lone value is a column of one row)."""
    if isinstance(values, np.ndarray):
        return values.ravel()
    if isinstance(values, str | bytes) or not hasattr(values, "__len__"):
        return [values]
    return values  # type: ignore[no-any-return]


class _ColumnCounts:
    """Counts of one window column, with raw values buffered until there are many."""

    __slots__ = ("_buffer", "_chunks", "_counts", "_pending", "kind")

    def __init__(self, kind: ColumnKind) -> None:
        self.kind = kind
        self._buffer: list[Any] = []
        self._chunks: list[npt.NDArray[Any]] = []
        self._pending = 0
        self._counts = _empty_counts(kind)

    def extend(self, values: Sequence[Any] | npt.NDArray[Any], size: int) -> None:
        """Take ``size`` more raw values; nothing of the caller's is kept (it may reuse it)."""
        if size >= BIG_BATCH:  # counted now: no copy, and merging per big batch is cheap
            counted = _count_raw(self.kind, self._convert(values))
            self._counts = _merge_counts(self.kind, self._counts, counted)
            return
        if type(values) is list:
            self._buffer.extend(values)
        else:
            self._chunks.append(self._convert(values).copy())
        self._pending += size
        if self._pending >= COMPACT_ROWS:
            self.counts()

    def counts(self) -> _Counts:
        """The counts, after counting whatever is buffered."""
        if self._pending:
            parts = [self._convert(chunk) for chunk in self._chunks]
            if self._buffer:
                parts.append(self._convert(self._buffer))
            raw = parts[0] if len(parts) == 1 else np.concatenate(parts)
            self._counts = _merge_counts(self.kind, self._counts, _count_raw(self.kind, raw))
            self._buffer, self._chunks, self._pending = [], [], 0
        return self._counts

    def _convert(self, values: Sequence[Any] | npt.NDArray[Any]) -> npt.NDArray[Any]:
        return _as_numeric(values) if self.kind is ColumnKind.NUMERIC else _as_objects(values)

    def merge(self, other: _ColumnCounts) -> None:
        self._counts = _merge_counts(self.kind, self.counts(), other.counts())


def _check_kinds(kinds: Mapping[str, ColumnKind]) -> dict[str, ColumnKind]:
    if not kinds:
        raise VigieError(ErrorCode.INVALID_INPUT, "no column to monitor was given", field="kinds")
    try:
        return {str(name): ColumnKind(kind) for name, kind in kinds.items()}
    except ValueError as err:
        raise VigieError(
            ErrorCode.INVALID_INPUT,
            f"unknown column kind: {err}; expected 'numeric' or 'categorical'",
            field="kinds",
        ) from err


class WindowStats:
    """The value counts of a window of served rows, built incrementally.

    Args:
        kinds: The monitored columns and their kinds (those of the reference).
    """

    def __init__(self, kinds: Mapping[str, ColumnKind]) -> None:
        self._kinds = _check_kinds(kinds)
        self._columns = {name: _ColumnCounts(kind) for name, kind in self._kinds.items()}
        self._rows = 0

    @property
    def rows(self) -> int:
        """Rows added so far."""
        return self._rows

    @property
    def kinds(self) -> dict[str, ColumnKind]:
        """The monitored columns and their kinds."""
        return dict(self._kinds)

    def add(self, columns: Mapping[str, Sequence[Any] | npt.NDArray[Any]]) -> None:
        """Count one batch (e.g. one payload entry's inputs); never raises on content.

        A batch has as many rows as its longest column. A monitored column absent from
        the batch, or shorter than it, counts the rows it lacks as missing; None, NaN and
        infinities are missing; a numeric value that is not a number is missing; columns
        that are not monitored are ignored.
        """
        rows = 0
        tracked = self._columns
        for name, given in columns.items():
            # Lists (decoded JSON) are the common case: keep their path short.
            values = given if type(given) is list else _as_column(given)
            size = len(values)
            rows = max(rows, size)
            column = tracked.get(name)
            if column is not None and size:
                column.extend(values, size)
        self._rows += rows

    def merge(self, other: WindowStats) -> None:
        """Add the rows and counts of ``other`` (another part of the same window).

        Raises:
            VigieError: INVALID_INPUT when the two windows monitor different columns.
        """
        if other._kinds != self._kinds:
            raise VigieError(
                ErrorCode.INVALID_INPUT,
                "cannot merge windows that monitor different columns or kinds",
                field="other",
            )
        for name, column in self._columns.items():
            column.merge(other._columns[name])
        self._rows += other._rows

    def missing(self, name: str) -> int:
        """Rows of the window with no value in column ``name``."""
        return self._rows - self._counts(name).total

    def _counts(self, name: str) -> _Counts:
        return self._columns[name].counts()


@dataclass(frozen=True)
class _ReferenceColumn:
    kind: ColumnKind
    counts: _Counts
    std: float  # population standard deviation (numeric columns), NaN otherwise


class ReferenceProfile:
    """The value counts of a model version's reference sample, computed once.

    Build it with :meth:`from_frame`.
    """

    def __init__(self, columns: Mapping[str, _ReferenceColumn], rows: int) -> None:
        self._columns = dict(columns)
        self._rows = rows

    @classmethod
    def from_frame(cls, frame: pd.DataFrame, kinds: Mapping[str, ColumnKind]) -> ReferenceProfile:
        """Count the reference sample.

        Raises:
            VigieError: INVALID_INPUT for a missing column or a numeric column that is not
                numbers; DATA_QUALITY for a column with no value at all.
        """
        checked = _check_kinds(kinds)
        absent = [name for name in checked if name not in frame.columns]
        if absent:
            raise VigieError(
                ErrorCode.INVALID_INPUT,
                f"the reference lacks column(s) {', '.join(map(repr, absent))}",
                field="reference",
                columns=absent,
            )
        columns = {
            name: _reference_column(name, frame[name], kind) for name, kind in checked.items()
        }
        return cls(columns, len(frame))

    @property
    def columns(self) -> tuple[str, ...]:
        """The monitored columns, in order."""
        return tuple(self._columns)

    @property
    def rows(self) -> int:
        """Rows of the reference sample."""
        return self._rows

    @property
    def kinds(self) -> dict[str, ColumnKind]:
        """The monitored columns and their kinds (pass them to :class:`WindowStats`)."""
        return {name: column.kind for name, column in self._columns.items()}


def _reference_column(name: str, series: pd.Series[Any], kind: ColumnKind) -> _ReferenceColumn:
    if kind is ColumnKind.NUMERIC and not pd.api.types.is_numeric_dtype(series):
        try:
            series = pd.to_numeric(series)
        except (TypeError, ValueError) as err:
            raise VigieError(
                ErrorCode.INVALID_INPUT,
                f"reference column {name!r} is numeric but holds values that are not numbers",
                field=name,
            ) from err
    # Evidently makes infinities missing, then drops every missing value of the reference.
    clean = series.replace([-np.inf, np.inf], np.nan).dropna()
    if clean.empty:
        raise VigieError(
            ErrorCode.DATA_QUALITY,
            f"reference column {name!r} has no value; drift cannot be measured against it",
            field=name,
        )
    raw = clean.to_numpy(dtype=np.float64 if kind is ColumnKind.NUMERIC else object)
    # Evidently norms Wasserstein by numpy's std of the cleaned reference (ddof 0).
    std = float(np.std(clean)) if kind is ColumnKind.NUMERIC else math.nan
    return _ReferenceColumn(kind, _count_raw(kind, raw), std)


def detect_drift(
    reference: ReferenceProfile, window: WindowStats, *, drift_share: float = 0.5
) -> DriftResult:
    """Evidently's default data-drift decisions for ``window`` against ``reference``.

    Args:
        reference: The reference counts of the model version.
        window: The window's counts; it must monitor the reference's columns and kinds.
        drift_share: Share of drifted columns from which the dataset has drifted.

    Raises:
        VigieError: INVALID_INPUT for an empty window, other columns or a share outside
            [0, 1].
    """
    if not 0.0 <= drift_share <= 1.0:
        raise VigieError(
            ErrorCode.INVALID_INPUT,
            f"drift_share must be between 0 and 1, got {drift_share}",
            field="drift_share",
        )
    if window.kinds != reference.kinds:
        raise VigieError(
            ErrorCode.INVALID_INPUT,
            "the window does not monitor the reference's columns and kinds; "
            "build it with WindowStats(reference.kinds)",
            field="window",
        )
    if window.rows == 0:
        raise VigieError(ErrorCode.INVALID_INPUT, "the window holds no rows yet", field="window")
    features = [
        _column_drift(name, column, window._counts(name), window.rows)
        for name, column in reference._columns.items()
    ]
    return _result(features, drift_share, window.rows, reference.rows)


def _result(
    features: list[FeatureDrift], drift_share: float, rows: int, reference_rows: int
) -> DriftResult:
    drifted = sum(f.drifted for f in features)
    share = drifted / len(features)
    return DriftResult(features, drifted, share, share >= drift_share, rows, reference_rows)


def _column_drift(name: str, ref: _ReferenceColumn, cur: _Counts, rows: int) -> FeatureDrift:
    missing = rows - cur.total
    if cur.total == 0:
        return FeatureDrift(name, ref.kind, NO_VALUE_STATTEST, math.nan, math.nan, True, missing)
    keys, ref_counts, cur_counts = _aligned(ref.kind, ref.counts, cur)
    test = _select(ref.kind, ref.counts.total, keys.size)
    score = _SCORES[test](ref, cur, keys, ref_counts, cur_counts)
    threshold, drifted = _decide(test, score)
    return FeatureDrift(name, ref.kind, test, score, threshold, drifted, missing)


def _aligned(
    kind: ColumnKind, ref: _Counts, cur: _Counts
) -> tuple[npt.NDArray[Any], IntArray, IntArray]:
    """The union of both samples' values (sorted when numeric) and each side's counts."""
    codes, uniques = pd.factorize(np.concatenate((ref.values, cur.values)))
    keys = np.asarray(uniques)
    ref_counts = np.zeros(keys.size, dtype=np.int64)
    cur_counts = np.zeros(keys.size, dtype=np.int64)
    ref_counts[codes[: ref.values.size]] = ref.counts
    cur_counts[codes[ref.values.size :]] = cur.counts
    if kind is ColumnKind.NUMERIC:
        order = np.argsort(keys, kind="stable")
        return keys[order], ref_counts[order], cur_counts[order]
    return keys, ref_counts, cur_counts


def _select(kind: ColumnKind, reference_values: int, distinct: int) -> str:
    """Evidently's default stattest for a column (its ``_get_default_stattest``)."""
    if reference_values <= SMALL_REFERENCE:
        if kind is ColumnKind.NUMERIC and distinct > FEW_VALUES:
            return "ks"
        return "chisquare" if distinct > TWO_VALUES else "z"
    if kind is ColumnKind.NUMERIC and distinct > FEW_VALUES:
        return "wasserstein"
    return "jensenshannon"


#: Evidently's default threshold of each stattest.
_THRESHOLDS: dict[str, float] = {
    "wasserstein": 0.1,
    "jensenshannon": 0.1,
    "ks": 0.05,
    "chisquare": 0.05,
    "z": 0.05,
}


def _decide(test: str, score: float) -> tuple[float, bool]:
    threshold = _THRESHOLDS[test]
    if test in {"wasserstein", "jensenshannon"}:  # distances: drift from the threshold up
        return threshold, score >= threshold
    if test == "ks":  # Evidently's K-S test is the only one that drifts at equality
        return threshold, score <= threshold
    return threshold, score < threshold


Score = Callable[[_ReferenceColumn, _Counts, npt.NDArray[Any], IntArray, IntArray], float]


def _wasserstein(ref: _ReferenceColumn, cur: _Counts, *_: Any) -> float:
    # The counts are the weights of the distinct values: the same two CDFs scipy builds.
    raw = stats.wasserstein_distance(ref.counts.values, cur.values, ref.counts.counts, cur.counts)
    return float(raw) / max(ref.std, WASSERSTEIN_MIN_NORM)


def _jensenshannon(
    _ref: _ReferenceColumn, _cur: _Counts, _keys: Any, ref: IntArray, cur: IntArray
) -> float:
    # Evidently's frequencies: counts over non-missing rows, no smoothing, natural log.
    return float(distance.jensenshannon(ref / ref.sum(), cur / cur.sum()))


def _ks(
    _ref: _ReferenceColumn, _cur: _Counts, keys: FloatArray, ref: IntArray, cur: IntArray
) -> float:
    n1, n2 = int(ref.sum()), int(cur.sum())
    if max(n1, n2) <= KS_EXACT_MAX:  # scipy's exact path: rebuild the samples, call it
        return float(stats.ks_2samp(np.repeat(keys, ref), np.repeat(keys, cur)).pvalue)
    # scipy's asymptotic path on the same statistic (its CDFs are these cumulative counts)
    diffs = np.cumsum(ref) / n1 - np.cumsum(cur) / n2
    statistic = max(float(diffs.max()), float(np.clip(-diffs.min(), 0, 1)))
    m, n = sorted([float(n1), float(n2)], reverse=True)
    prob = stats.kstwo.sf(statistic, np.round(m * n / (m + n)))
    return float(np.clip(prob, 0, 1))


def _chisquare(
    _ref: _ReferenceColumn, _cur: _Counts, _keys: Any, ref: IntArray, cur: IntArray
) -> float:
    # Expected counts: the reference's, scaled to the current sample's size.
    expected = ref * (int(cur.sum()) / int(ref.sum()))
    with np.errstate(divide="ignore", invalid="ignore"):
        return float(stats.chisquare(cur, expected).pvalue)


def _z(
    _ref: _ReferenceColumn, _cur: _Counts, keys: npt.NDArray[Any], ref: IntArray, cur: IntArray
) -> float:
    if keys.size == 1:  # one and the same value on both sides
        return 1.0
    first = _smallest(keys)
    n1, n2 = int(ref.sum()), int(cur.sum())
    # Proportions of rows that are NOT the smallest value, as Evidently codes them.
    p1 = float(n1 - int(ref[first])) / n1
    p2 = float(n2 - int(cur[first])) / n2
    pooled = float(p1 * n1 + p2 * n2) / (n1 + n2)
    z = (p1 - p2) / np.sqrt(pooled * (1 - pooled) * (1.0 / n1 + 1.0 / n2))
    return float(2 * (1 - stats.norm.cdf(np.abs(z))))


def _smallest(keys: npt.NDArray[Any]) -> int:
    """Index of the smallest key, as Evidently sorts them (by text if they do not compare)."""
    values: list[Any] = keys.tolist()
    try:
        return values.index(min(values))
    except TypeError:
        texts = [str(v) for v in values]
        return texts.index(min(texts))


_SCORES: dict[str, Score] = {
    "wasserstein": _wasserstein,
    "jensenshannon": _jensenshannon,
    "ks": _ks,
    "chisquare": _chisquare,
    "z": _z,
}


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


def evidently_drift(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    kinds: Mapping[str, ColumnKind],
    *,
    drift_share: float = 0.5,
) -> DriftResult:
    """The full Evidently computation (``Report`` + ``DataDriftPreset``) as a DriftResult.

    The reference implementation of :func:`detect_drift`, for tests and benchmarks: it
    imports Evidently (seconds) and holds both samples in memory.

    Raises:
        VigieError: INVALID_INPUT for a missing column; DATA_QUALITY when Evidently refuses
            the data (a column with no value).
    """
    from evidently import (  # type: ignore[import-untyped, unused-ignore]  # noqa: PLC0415 (slow import)
        DataDefinition,
        Dataset,
        Report,
    )
    from evidently.presets import (  # type: ignore[import-untyped, unused-ignore]  # noqa: PLC0415
        DataDriftPreset,
    )

    checked = _check_kinds(kinds)
    names = list(checked)
    for label, frame in (("reference", reference), ("current", current)):
        absent = [name for name in names if name not in frame.columns]
        if absent:
            raise VigieError(
                ErrorCode.INVALID_INPUT,
                f"the {label} data lacks column(s) {', '.join(map(repr, absent))}",
                field=label,
            )
    definition = DataDefinition(
        numerical_columns=[n for n in names if checked[n] is ColumnKind.NUMERIC],
        categorical_columns=[n for n in names if checked[n] is ColumnKind.CATEGORICAL],
        text_columns=[],
        datetime_columns=[],
        unknown_columns=[],
        list_columns=[],
    )
    report = Report([DataDriftPreset(drift_share=drift_share)], include_tests=True)
    try:
        snapshot = report.run(
            Dataset.from_pandas(current[names], data_definition=definition),
            Dataset.from_pandas(reference[names], data_definition=definition),
        )
    except ValueError as err:
        raise VigieError(ErrorCode.DATA_QUALITY, f"Evidently refused the data: {err}") from err
    return _parse_evidently(snapshot.dict(), checked, current, len(reference), drift_share)


def _parse_evidently(
    raw: Mapping[str, Any],
    kinds: Mapping[str, ColumnKind],
    current: pd.DataFrame,
    reference_rows: int,
    drift_share: float,
) -> DriftResult:
    """Evidently's per-column ValueDrift metrics and tests, and its drifted-columns count."""
    failed = {t["metric_config"]["metric_id"] for t in raw["tests"] if t["status"] == "FAIL"}
    names = {display: name for name, display in STATTEST_DISPLAY_NAMES.items()}
    features: dict[str, FeatureDrift] = {}
    dataset_drift: bool | None = None
    for metric in raw["metrics"]:
        config = metric["config"]
        if config["type"].endswith(":DriftedColumnsCount"):
            dataset_drift = metric["id"] in failed
        elif config["type"].endswith(":ValueDrift"):
            column = config["column"]
            values = current[column]
            missing = int(values.isna().sum())
            if kinds[column] is ColumnKind.NUMERIC:
                missing += int(np.isinf(values.to_numpy(dtype=np.float64)).sum())
            features[column] = FeatureDrift(
                column,
                kinds[column],
                names.get(config["method"], config["method"]),
                float(metric["value"]),
                float(config["threshold"]),
                metric["id"] in failed,
                missing,
            )
    result = _result([features[name] for name in kinds], drift_share, len(current), reference_rows)
    if dataset_drift is not None and dataset_drift != result.dataset_drift:
        raise VigieError(
            ErrorCode.INTERNAL,
            "Evidently's dataset drift disagrees with its own per-column decisions",
        )
    return result
