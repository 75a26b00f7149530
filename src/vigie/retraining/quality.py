"""Data-quality expectations on a retraining snapshot, before anything is trained on it.

The row-level checks are the pipeline's own: every feature (and the label) takes the
declared expectation of the source column it derives from (``expectations.yaml``: type,
required, range, code pattern) and the snapshot goes through
:func:`vigie.pipelines.validate.validate` like a landed table, ``flight_key`` as its natural
key. Out-of-range values are failures here, never corrected: the warehouse should only
hold corrected values, so one out of range means the data changed under the model.

Snapshot-level checks come on top: enough rows, no feature (almost) entirely missing (a
broken join), and a label that is not constant.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
import pyarrow as pa

from vigie.features.catalogue import TARGET_COLUMN, TARGET_SOURCE, Feature, FeatureKind
from vigie.pipelines.expectations import (
    ColumnExpectation,
    Expectations,
    TableExpectation,
    load_expectations,
)
from vigie.pipelines.validate import META, validate
from vigie.training.spec import ModelSpec

#: Fewest rows a training snapshot may have (a month of 2013 holds about 27,000 arrivals).
DEFAULT_MIN_ROWS = 1000
#: Largest share of missing values a feature may have (``wind_gust`` is ~77 % missing).
MAX_NULL_SHARE = 0.95
#: Expectations of features derived from several source columns.
DERIVED = {"day_of_week": ColumnExpectation(type="float", required=True, min=1, max=7)}
#: Failing rows shown as examples in a report.
EXAMPLES = 5


@dataclass
class QualityReport:
    """What the expectations found on one snapshot.

    Attributes:
        rows: Rows of the snapshot.
        min_rows: Fewest rows accepted.
        failing_rows: Rows failing at least one row-level expectation.
        failures: Failing rows by ``check:column``.
        null_shares: Share of missing values by feature.
        problems: One sentence per failed expectation; empty when the snapshot passes.
        examples: A few failure messages, for the report.
    """

    rows: int
    min_rows: int
    failing_rows: int = 0
    failures: dict[str, int] = field(default_factory=dict)
    null_shares: dict[str, float] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    examples: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        """Whether every expectation held."""
        return not self.problems

    def to_json(self) -> dict[str, Any]:
        """JSON-ready (audit log, registry lineage, error details)."""
        return {
            "passed": self.passed,
            "rows": self.rows,
            "min_rows": self.min_rows,
            "failing_rows": self.failing_rows,
            "failures": dict(self.failures),
            "null_shares": {k: round(v, 4) for k, v in self.null_shares.items()},
            "problems": list(self.problems),
            "examples": list(self.examples),
        }


def _source_expectation(
    sources: tuple[str, ...], expectations: Expectations
) -> ColumnExpectation | None:
    if len(sources) != 1:
        return None
    table, _, column = sources[0].partition(".")
    found = expectations.tables.get(table)
    return found.columns.get(column) if found else None


def _as_snapshot_column(declared: ColumnExpectation, kind: FeatureKind) -> ColumnExpectation:
    """The declared expectation as it applies to an already typed snapshot column."""
    numeric = kind is FeatureKind.NUMERIC
    return declared.model_copy(
        update={
            "type": "float" if numeric else declared.type,
            "normalize": None,
            "on_out_of_range": "quarantine",
        }
    )


def feature_expectation(feature: Feature, expectations: Expectations) -> ColumnExpectation:
    """The expectation a snapshot column of ``feature`` must meet."""
    if feature.name in DERIVED:
        return DERIVED[feature.name]
    declared = _source_expectation(feature.sources, expectations)
    if declared is None:
        numeric = feature.kind is FeatureKind.NUMERIC
        return ColumnExpectation(type="float" if numeric else "text")
    return _as_snapshot_column(declared, feature.kind)


def snapshot_expectations(spec: ModelSpec, expectations: Expectations) -> TableExpectation:
    """The table expectation of a snapshot of ``spec``: key, features and label."""
    columns = {"flight_key": ColumnExpectation(type="integer", required=True)}
    for feature in spec.feature_defs():
        columns[feature.name] = feature_expectation(feature, expectations)
    label = _source_expectation((TARGET_SOURCE,), expectations)
    base = label or ColumnExpectation(type="float")
    columns[TARGET_COLUMN] = _as_snapshot_column(base, FeatureKind.NUMERIC).model_copy(
        update={"required": True}
    )
    return TableExpectation(source="snapshot", natural_key=["flight_key"], columns=columns)


def _raw_strings(frame: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """The typed columns as the strings a landed table holds (None for missing)."""
    raw = {
        name: pa.array(frame[name], from_pandas=True).cast(pa.large_string()).to_pandas()
        for name in columns
    }
    out = pd.DataFrame(raw, index=range(len(frame)))
    out[META[0]] = range(len(frame))
    out[META[1]] = "snapshot"
    return out


def check_snapshot(
    frame: pd.DataFrame,
    spec: ModelSpec,
    *,
    min_rows: int = DEFAULT_MIN_ROWS,
    expectations: Expectations | None = None,
) -> QualityReport:
    """Run the expectations on a snapshot's rows; the report says what failed, if anything."""
    table = snapshot_expectations(spec, expectations or load_expectations())
    report = QualityReport(rows=len(frame), min_rows=min_rows)
    if len(frame) < min_rows:
        report.problems.append(f"{len(frame)} rows, fewer than the {min_rows} required")
    if len(frame):
        _row_checks(frame, table, report)
        _column_checks(frame, spec, report)
    return report


def _row_checks(frame: pd.DataFrame, table: TableExpectation, report: QualityReport) -> None:
    outcome = validate("snapshot", _raw_strings(frame, list(table.columns)), table, {})
    report.failing_rows = len(outcome.quarantined)
    counts: Counter[str] = Counter()
    for reasons in outcome.quarantined.get("reasons", pd.Series(dtype=object)):
        for reason in reasons:
            counts[f"{reason['check']}:{reason['column']}"] += 1
            if len(report.examples) < EXAMPLES:
                report.examples.append(reason["message"])
    report.failures = dict(counts)
    if report.failing_rows:
        worst = ", ".join(f"{k} ({v})" for k, v in counts.most_common(5))
        report.problems.append(f"{report.failing_rows} rows fail expectations: {worst}")


def _column_checks(frame: pd.DataFrame, spec: ModelSpec, report: QualityReport) -> None:
    for feature in spec.features:
        share = float(frame[feature].isna().mean())
        report.null_shares[feature] = share
        if share > MAX_NULL_SHARE:
            report.problems.append(
                f"feature {feature} is {share:.1%} missing (at most {MAX_NULL_SHARE:.0%})"
            )
    label = frame[TARGET_COLUMN].dropna()
    threshold = spec.target.threshold_minutes
    values = label > threshold if threshold is not None else label
    if values.nunique() < 2:  # noqa: PLR2004 - two distinct values, not a tuning constant
        report.problems.append(f"the label {TARGET_COLUMN} is constant: nothing to learn")
