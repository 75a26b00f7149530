"""The drift engine: counts built incrementally, and Evidently's rules applied to them.

Scores are checked against scipy run on the raw samples the way Evidently runs it (the
comparison with Evidently itself, on real flights, is an integration test).
"""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from scipy.spatial import distance

from vigie.errors import ErrorCode, VigieError
from vigie.monitoring.drift import (
    NO_VALUE_STATTEST,
    ColumnKind,
    DriftResult,
    FeatureDrift,
    ReferenceProfile,
    WindowStats,
    detect_drift,
    kinds_for,
)

NUM, CAT = ColumnKind.NUMERIC, ColumnKind.CATEGORICAL
KINDS = {"x": NUM, "level": NUM, "flag": NUM, "city": CAT, "side": CAT}


def flights(rows: int, seed: int, shift: float = 0.0) -> pd.DataFrame:
    """Synthetic rows: a continuous column with gaps, two discrete ones, two categories."""
    rng = np.random.default_rng(seed)
    x = rng.normal(10 + shift, 2, rows).round(2)
    x[rng.random(rows) < 0.1] = np.nan
    cities: list[str | None] = ["PAR", "LYS", "NCE", "BOD", None]
    weights = np.array([0.4, 0.25, 0.15, 0.1, 0.1]) + np.array([-1, 0, 0, 1, 0]) * shift / 10
    return pd.DataFrame(
        {
            "x": x,
            "level": rng.integers(0, 4, rows).astype(float) + (shift > 0),
            "flag": (rng.random(rows) < 0.3 + shift / 10).astype(float),
            "city": rng.choice(np.array(cities, dtype=object), rows, p=weights),
            "side": rng.choice(["L", "R"], rows),
        }
    )


def as_lists(frame: pd.DataFrame) -> dict[str, list[Any]]:
    """Columns as a payload entry holds them: lists, None for a missing value."""
    return {c: [None if pd.isna(v) else v for v in frame[c].tolist()] for c in frame.columns}


def window_of(frame: pd.DataFrame, kinds: dict[str, ColumnKind] = KINDS) -> WindowStats:
    window = WindowStats(kinds)
    window.add(as_lists(frame))
    return window


def drift(reference: pd.DataFrame, current: pd.DataFrame, **options: Any) -> DriftResult:
    kinds = {c: KINDS[c] for c in reference.columns}
    profile = ReferenceProfile.from_frame(reference, kinds)
    return detect_drift(profile, window_of(current, kinds), **options)


def by_name(result: DriftResult) -> dict[str, FeatureDrift]:
    return {f.name: f for f in result.features}


def clean(series: pd.Series[Any]) -> pd.Series[Any]:
    return series.replace([-np.inf, np.inf], np.nan).dropna()


# -- counting ------------------------------------------------------------------------


def test_many_small_batches_count_the_same_as_one_batch() -> None:
    reference, current = flights(3000, 1), flights(2500, 2, shift=0.4)
    profile = ReferenceProfile.from_frame(reference, KINDS)
    whole = detect_drift(profile, window_of(current))
    window = WindowStats(KINDS)
    lists = as_lists(current)
    for start in range(0, len(current), 7):
        window.add({c: v[start : start + 7] for c, v in lists.items()})

    assert detect_drift(profile, window).to_dict() == whole.to_dict()


def test_arrays_lists_and_long_lists_count_alike() -> None:
    current = flights(6000, 3)
    as_arrays = WindowStats(KINDS)
    as_arrays.add({c: current[c].to_numpy() for c in current.columns})
    profile = ReferenceProfile.from_frame(flights(2000, 4), KINDS)

    assert (
        detect_drift(profile, as_arrays).to_dict()
        == detect_drift(profile, window_of(current)).to_dict()
    )


def test_merged_windows_equal_the_window_of_all_their_rows() -> None:
    current = flights(3000, 5, shift=0.2)
    first, second = window_of(current.iloc[:1000]), window_of(current.iloc[1000:])
    first.merge(second)
    profile = ReferenceProfile.from_frame(flights(3000, 6), KINDS)

    assert first.rows == 3000
    assert (
        detect_drift(profile, first).to_dict()
        == detect_drift(profile, window_of(current)).to_dict()
    )


def test_windows_of_other_columns_do_not_merge() -> None:
    with pytest.raises(VigieError) as caught:
        WindowStats(KINDS).merge(WindowStats({"x": NUM}))
    assert caught.value.code is ErrorCode.INVALID_INPUT


def test_missing_values_and_absent_columns_count_as_missing() -> None:
    window = WindowStats({"x": NUM, "city": CAT})
    window.add({"x": [1.0, None, float("nan"), math.inf, "n/a"], "city": ["A", None, "B"]})
    window.add({"city": ["A", "A"], "other": [1, 2]})  # no x: two rows without it
    window.add({"x": np.array([2.0, -np.inf]), "city": "C"})  # a lone value is one row

    assert window.rows == 9
    assert window.missing("x") == 9 - 2
    assert window.missing("city") == 9 - 5


def test_garbage_values_count_as_missing_or_as_categories_and_never_raise() -> None:
    window = WindowStats({"x": NUM, "city": CAT})
    window.add({"x": [[1, 2], {"a": 1}, "x", (1, 2), 2.5], "city": [[1], {"a": 1}, 3, None, "A"]})

    assert (window.rows, window.missing("x"), window.missing("city")) == (5, 4, 1)


def test_a_batch_reused_by_the_caller_after_adding_it_is_not_recounted() -> None:
    window = WindowStats({"x": NUM, "city": CAT})
    small, big = np.array([1.0, 2.0]), np.arange(10_000.0)
    cities: list[str | None] = ["A", "B"]
    window.add({"x": small, "city": cities})
    window.add({"x": big})
    small[:], big[:], cities[:] = np.nan, np.nan, [None, None]

    assert (window.missing("x"), window.missing("city")) == (0, 10_000)


# -- rules ---------------------------------------------------------------------------


def test_large_reference_uses_wasserstein_and_jensen_shannon_like_evidently() -> None:
    reference, current = flights(4000, 7), flights(3000, 8, shift=0.5)
    found = by_name(drift(reference, current))
    ref_x, cur_x = clean(reference["x"]), clean(current["x"])
    ref_city, cur_city = clean(reference["city"]), clean(current["city"])
    keys = sorted(set(ref_city) | set(cur_city))
    p = np.array([(ref_city == k).sum() / len(ref_city) for k in keys])
    q = np.array([(cur_city == k).sum() / len(cur_city) for k in keys])

    assert {n: f.stattest for n, f in found.items()} == {
        "x": "wasserstein",
        "level": "jensenshannon",  # <= 5 distinct values (reference and current together)
        "flag": "jensenshannon",
        "city": "jensenshannon",
        "side": "jensenshannon",
    }
    expected_x = stats.wasserstein_distance(ref_x, cur_x) / max(np.std(ref_x), 0.001)
    assert found["x"].score == pytest.approx(expected_x, rel=1e-12)
    assert found["city"].score == pytest.approx(distance.jensenshannon(p, q), rel=1e-12)
    assert found["x"].threshold == found["city"].threshold == 0.1
    assert found["x"].missing == current["x"].isna().sum()


def test_small_reference_uses_ks_chi_square_and_z_like_evidently() -> None:
    reference, current = flights(800, 9), flights(600, 10, shift=0.3)
    found = by_name(drift(reference, current))
    ref_x, cur_x = clean(reference["x"]), clean(current["x"])
    counts_ref = reference["level"].value_counts()
    counts_cur = current["level"].value_counts()
    keys = sorted(set(counts_ref.index) | set(counts_cur.index))
    expected = [counts_ref.get(k, 0) * len(current) / len(reference) for k in keys]
    with np.errstate(divide="ignore"):
        chi = stats.chisquare([counts_cur.get(k, 0) for k in keys], expected).pvalue

    assert {n: f.stattest for n, f in found.items()} == {
        "x": "ks",
        "level": "chisquare",  # 3 to 5 distinct values
        "flag": "z",  # 2 distinct values
        "city": "chisquare",
        "side": "z",
    }
    assert found["x"].score == pytest.approx(stats.ks_2samp(ref_x, cur_x).pvalue, rel=1e-12)
    assert found["level"].score == pytest.approx(chi, abs=1e-15)
    assert {f.threshold for f in found.values()} == {0.05}


def test_the_z_test_matches_the_two_proportion_formula() -> None:
    reference = pd.DataFrame({"side": ["L"] * 300 + ["R"] * 500})
    current = pd.DataFrame({"side": ["L"] * 150 + ["R"] * 150})
    p1, p2 = 500 / 800, 150 / 300
    pooled = (500 + 150) / 1100
    z = (p1 - p2) / math.sqrt(pooled * (1 - pooled) * (1 / 800 + 1 / 300))

    found = by_name(drift(reference, current))["side"]

    assert found.stattest == "z"
    assert found.score == pytest.approx(2 * (1 - stats.norm.cdf(abs(z))), rel=1e-12)
    assert found.drifted


def test_a_large_window_takes_the_asymptotic_ks_path_like_scipy() -> None:
    reference, current = flights(900, 11), flights(30_000, 12, shift=0.05)
    found = by_name(drift(reference[["x"]], current[["x"]]))["x"]
    expected = stats.ks_2samp(clean(reference["x"]), clean(current["x"])).pvalue

    assert found.stattest == "ks"
    assert found.score == pytest.approx(expected, rel=1e-9)


def test_the_reference_size_that_counts_is_its_non_missing_values() -> None:
    reference = pd.DataFrame({"x": np.r_[np.arange(1000.0), [np.nan] * 500]})
    current = pd.DataFrame({"x": np.arange(0.0, 1000.0, 2)})

    assert by_name(drift(reference, current))["x"].stattest == "ks"
    bigger = pd.DataFrame({"x": np.arange(1001.0)})
    assert by_name(drift(bigger, current))["x"].stattest == "wasserstein"


def test_shifted_data_drifts_and_data_from_the_same_distribution_does_not() -> None:
    reference = flights(5000, 13)
    same = drift(reference, flights(5000, 14))
    shifted = drift(reference, flights(5000, 15, shift=1.0))

    assert same.drifted_count == 0
    assert not same.dataset_drift
    assert by_name(shifted)["x"].drifted
    assert by_name(shifted)["level"].drifted
    assert shifted.dataset_drift


def test_small_samples_of_the_same_distribution_do_not_drift() -> None:
    result = drift(flights(500, 16), flights(300, 17))

    assert not result.dataset_drift
    assert result.drifted_count <= 1  # p-value tests at 5%: one false alarm is possible


# -- edge cases ----------------------------------------------------------------------


def test_a_constant_column_that_stays_constant_does_not_drift() -> None:
    reference = pd.DataFrame({"x": np.full(3000, 4.0), "side": ["L"] * 3000})
    current = pd.DataFrame({"x": np.full(200, 4.0), "side": ["L"] * 200})
    large = by_name(drift(reference, current))
    small = by_name(drift(reference.iloc[:500], current))

    assert (large["x"].stattest, large["x"].score, large["x"].drifted) == (
        "jensenshannon",
        0.0,
        False,
    )
    assert (small["side"].stattest, small["side"].score, small["side"].drifted) == (
        "z",
        1.0,
        False,
    )


def test_a_constant_reference_norms_wasserstein_by_the_floor() -> None:
    reference = pd.DataFrame({"x": np.full(2000, 4.0)})
    current = pd.DataFrame({"x": [4.0, 4.001, 4.002, 4.003, 4.004, 4.005] * 10})
    found = by_name(drift(reference, current))["x"]

    expected = stats.wasserstein_distance(reference["x"], current["x"]) / 0.001
    assert found.stattest == "wasserstein"
    assert found.score == pytest.approx(expected, rel=1e-12)
    assert found.drifted


def test_unseen_categories_drift() -> None:
    reference = pd.DataFrame({"city": ["PAR", "LYS", "NCE"] * 300})
    current = pd.DataFrame({"city": ["PAR", "LYS", "NCE", "XXX"] * 50})
    small = by_name(drift(reference, current))["city"]
    large = by_name(drift(pd.concat([reference] * 2), current))["city"]

    assert (small.stattest, small.score, small.drifted) == ("chisquare", 0.0, True)
    assert large.stattest == "jensenshannon"
    assert large.drifted


def test_a_column_without_any_value_in_the_window_is_reported_not_raised() -> None:
    profile = ReferenceProfile.from_frame(flights(2000, 18), KINDS)
    window = WindowStats(KINDS)
    window.add({"x": [1.0, 2.0], "level": [1.0, 2.0], "flag": [0.0, 1.0], "side": ["L", "R"]})

    result = detect_drift(profile, window)
    city = by_name(result)["city"]

    assert (city.stattest, city.drifted, city.missing) == (NO_VALUE_STATTEST, True, 2)
    assert json.dumps(result.to_dict(), allow_nan=False)
    assert result.to_dict()["features"][3]["score"] is None


def test_dataset_drift_counts_a_share_equal_to_the_threshold() -> None:
    reference = pd.DataFrame({"x": np.arange(2000.0), "side": ["L", "R"] * 1000})
    current = pd.DataFrame({"x": np.arange(0.0, 2000.0, 10) + 1500, "side": ["L", "R"] * 100})
    result = drift(reference, current)

    assert (result.drifted_count, result.share_drifted) == (1, 0.5)
    assert result.dataset_drift
    assert not drift(reference, current, drift_share=0.6).dataset_drift


def test_to_dict_is_json_ready() -> None:
    result = drift(flights(2000, 19), flights(300, 20))
    data = json.loads(json.dumps(result.to_dict(), allow_nan=False))

    assert data["rows"] == 300
    assert data["reference_rows"] == 2000
    assert data["features"][0] == {
        "name": "x",
        "kind": "numeric",
        "stattest": "wasserstein",
        "score": result.features[0].score,
        "threshold": 0.1,
        "drifted": result.features[0].drifted,
        "missing": result.features[0].missing,
    }


# -- refusals ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        (pd.DataFrame({"x": [1.0, 2.0]}), ErrorCode.INVALID_INPUT),  # no city column
        (pd.DataFrame({"x": ["a", "b"], "city": ["A", "B"]}), ErrorCode.INVALID_INPUT),
        (pd.DataFrame({"x": [np.nan, np.inf], "city": ["A", "B"]}), ErrorCode.DATA_QUALITY),
    ],
)
def test_a_bad_reference_is_refused_with_a_clear_code(frame: pd.DataFrame, code: ErrorCode) -> None:
    with pytest.raises(VigieError) as caught:
        ReferenceProfile.from_frame(frame, {"x": NUM, "city": CAT})
    assert caught.value.code is code


def test_an_empty_or_mismatched_window_or_a_bad_share_is_refused() -> None:
    profile = ReferenceProfile.from_frame(flights(100, 21), KINDS)
    full = window_of(flights(10, 22))
    for window, share in ((WindowStats(KINDS), 0.5), (WindowStats({"x": NUM}), 0.5), (full, 1.5)):
        with pytest.raises(VigieError) as caught:
            detect_drift(profile, window, drift_share=share)
        assert caught.value.code is ErrorCode.INVALID_INPUT


def test_kinds_follow_the_feature_catalogue() -> None:
    assert kinds_for(["carrier", "distance", "engine", "visib"]) == {
        "carrier": CAT,
        "distance": NUM,
        "engine": CAT,
        "visib": NUM,
    }
    with pytest.raises(VigieError):
        kinds_for(["dep_delay"])
