"""The drift engine against Evidently's full computation, on real 2013 flights.

The reference is a seeded 5,000-row sample of January-February (as training keeps it),
or a smaller one to take Evidently's small-sample tests (K-S, chi-square); the windows are
later months, whole or cut small, fed to the engine as payload entries are (lists with
None, 64 rows at a time). Every per-column stattest and decision, every missing count and
the dataset decision must be Evidently's. Scores must agree within ``REL``/``ABS``: the
engine sums the same terms over distinct values instead of rows, so only the order of
floating-point additions differs (observed differences are ~1e-15 relative).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from typing import Any

import pandas as pd
import pytest

from vigie.config import Settings
from vigie.governance.policy import load_policy
from vigie.monitoring.drift import (
    DriftResult,
    ReferenceProfile,
    WindowStats,
    detect_drift,
    evidently_drift,
    kinds_for,
)
from vigie.pipelines.run import run_pipeline
from vigie.training.snapshot import build_snapshot
from vigie.training.spec import load_spec

pytestmark = [pytest.mark.integration, pytest.mark.slow]

#: Relative and absolute tolerance on scores (distances and p-values).
REL, ABS = 1e-9, 1e-12
#: Rows per simulated payload entry.
ENTRY_ROWS = 64

#: (reference rows, month of the window, window rows or None for the whole month).
CASES = [
    (5000, 3, None),
    (5000, 7, None),
    (5000, 5, 40),  # a window smaller than some columns' number of distinct values
    (3000, 5, 2000),  # wind_gust has under 1,001 reference values: K-S beside Wasserstein
    (800, 3, 500),  # small reference: K-S (exact p-value) and chi-square
    (800, 7, None),  # and a window large enough for scipy's asymptotic K-S
]


@pytest.fixture(scope="module")
def flights_2013(
    tmp_path_factory: pytest.TempPathFactory, make_settings: Callable[..., Settings]
) -> pd.DataFrame:
    """Model features of the real flights of January to July 2013 (pipeline + snapshot)."""
    settings = make_settings(tmp_path_factory.mktemp("drift-home"), None, pseudonym_key="d" * 40)
    assert run_pipeline(settings, date(2013, 1, 1), date(2013, 7, 31)).record.status == "success"
    spec = load_spec(settings.models_dir, "flight_delay", policy=load_policy(None))
    return build_snapshot(settings, spec, date(2013, 1, 1), date(2013, 7, 31)).read()


@pytest.fixture(scope="module")
def features(flights_2013: pd.DataFrame) -> list[str]:
    spec_columns = {"flight_key", "sched_dep_utc", "arr_delay"}
    return [c for c in flights_2013.columns if c not in spec_columns]


def engine_drift(
    reference: pd.DataFrame, current: pd.DataFrame, features: list[str]
) -> DriftResult:
    """The engine as the sidecar runs it: reference counted once, entries added as lists."""
    kinds = kinds_for(features)
    profile = ReferenceProfile.from_frame(reference, kinds)
    window = WindowStats(profile.kinds)
    lists: dict[str, list[Any]] = {}
    for column in features:
        values = current[column].to_numpy(dtype=object)
        values[pd.isna(values)] = None
        lists[column] = values.tolist()
    for start in range(0, len(current), ENTRY_ROWS):
        window.add({c: values[start : start + ENTRY_ROWS] for c, values in lists.items()})
    return detect_drift(profile, window)


def differences(ours: DriftResult, theirs: DriftResult) -> list[str]:
    """Every way the engine's result differs from Evidently's (empty when identical)."""
    found: list[str] = []
    for mine, evidently in zip(ours.features, theirs.features, strict=True):
        for field in ("name", "kind", "stattest", "threshold", "drifted", "missing"):
            if getattr(mine, field) != getattr(evidently, field):
                found.append(
                    f"{mine.name}.{field}: {getattr(mine, field)} != {getattr(evidently, field)}"
                )
        if mine.score != pytest.approx(evidently.score, rel=REL, abs=ABS):
            found.append(f"{mine.name}.score: {mine.score!r} != {evidently.score!r}")
    for field in ("drifted_count", "share_drifted", "dataset_drift", "rows", "reference_rows"):
        if getattr(ours, field) != getattr(theirs, field):
            found.append(f"{field}: {getattr(ours, field)} != {getattr(theirs, field)}")
    return found


def test_every_decision_is_evidentlys_on_replayed_2013_flights(
    flights_2013: pd.DataFrame, features: list[str]
) -> None:
    months = flights_2013["month"]
    pool = flights_2013[months <= 2]
    kinds = kinds_for(features)
    seen_tests: set[str] = set()
    seen_decisions: set[bool] = set()
    mismatches: dict[str, list[str]] = {}

    for reference_rows, month, window_rows in CASES:
        reference = pool.sample(n=reference_rows, random_state=0)[features]
        current = flights_2013[months == month][features]
        if window_rows is not None:
            current = current.sample(n=window_rows, random_state=month)
        ours = engine_drift(reference, current, features)
        theirs = evidently_drift(reference, current, kinds)
        if found := differences(ours, theirs):
            mismatches[f"ref {reference_rows}, month {month}, rows {len(current)}"] = found
        seen_tests |= {f.stattest for f in ours.features}
        seen_decisions |= {f.drifted for f in ours.features}

    assert mismatches == {}
    assert {"wasserstein", "jensenshannon", "ks", "chisquare"} <= seen_tests
    assert seen_decisions == {True, False}
