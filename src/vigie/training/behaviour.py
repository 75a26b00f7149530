"""Behavioural tests of a candidate model: invariance, direction, minimum functionality.

Each check perturbs real held-out rows and compares predictions; the report says pass or
fail with the numbers behind it. Thresholds are deliberately simple and documented.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from vigie.training.spec import ModelSpec

Predict = Callable[[pd.DataFrame], npt.NDArray[np.float32]]

#: Rows sampled from the held-out set for every check.
SAMPLE_ROWS = 2000
#: Share of rows on which the clear "bad" case must be predicted worse than the "good" one.
MIN_FUNCTIONALITY_SHARE = 0.8

#: Bad weather kept inside what a winter window holds (precip 0.03 in/h is about the 95th
#: percentile of wet hours in January-February; visibility 2 mi the 5th percentile): the
#: net is not trusted to extrapolate beyond its training range (0.3 in/h with 1 mi
#: visibility, seen a handful of times in winter, made it predict FEWER delays).
BAD_PRECIP_IN = 0.03
BAD_VISIBILITY_MI = 2.0

#: Clear cases: an early departure in calm clear weather, and an evening departure in
#: rain, low visibility and strong wind (delays build up over the day and with weather).
GOOD_CASE: dict[str, float] = {
    "hour": 6.0,
    "minute": 0.0,
    "precip": 0.0,
    "visib": 10.0,
    "wind_speed": 5.0,
    "wind_gust": float("nan"),
}
BAD_CASE: dict[str, float] = {
    "hour": 19.0,
    "minute": 0.0,
    "precip": BAD_PRECIP_IN,
    "visib": BAD_VISIBILITY_MI,
    "wind_speed": 20.0,
    "wind_gust": 30.0,
}


@dataclass
class Check:
    """One behavioural check and its numbers."""

    name: str
    kind: str
    passed: bool
    description: str
    numbers: dict[str, float] = field(default_factory=dict)


@dataclass
class BehaviourReport:
    """All checks; ``passed`` when every one passed."""

    checks: list[Check]

    @property
    def passed(self) -> bool:
        """Whether every check passed."""
        return all(c.passed for c in self.checks)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {"passed": self.passed, "checks": [asdict(c) for c in self.checks]}


def run_behaviour(
    spec: ModelSpec, predict: Predict, rows: pd.DataFrame, *, seed: int
) -> BehaviourReport:
    """Run every behavioural check on a seeded sample of held-out ``rows``."""
    sample = rows.sample(n=min(SAMPLE_ROWS, len(rows)), random_state=seed).reset_index(drop=True)
    checks = [invariance(spec, predict, sample, seed=seed)]
    if {"precip", "visib"} <= set(spec.features):
        checks.append(weather_direction(predict, sample))
    if set(GOOD_CASE) <= set(spec.features):
        checks.append(minimum_functionality(predict, sample))
    return BehaviourReport(checks)


def invariance(spec: ModelSpec, predict: Predict, rows: pd.DataFrame, *, seed: int) -> Check:
    """Features the spec declares ignored (month, day) must not change the output at all."""
    ignored = [i.name for i in spec.ignored_by_net]
    changed = rows.copy()
    rng = np.random.default_rng(seed)
    for name in ignored:
        changed[name] = rng.integers(1, 13, size=len(rows)).astype(np.float64)
    difference = float(np.max(np.abs(predict(changed) - predict(rows)))) if len(rows) else 0.0
    return Check(
        name="ignored_features_invariance",
        kind="invariance",
        passed=difference == 0.0,
        description=f"randomising {', '.join(ignored) or 'nothing'} leaves predictions identical",
        numbers={"max_abs_difference": difference, "rows": float(len(rows))},
    )


def weather_direction(predict: Predict, rows: pd.DataFrame) -> Check:
    """On average, rain and low visibility do not lower the predicted delay."""
    clear = rows.assign(precip=0.0, visib=10.0)
    bad = rows.assign(precip=BAD_PRECIP_IN, visib=BAD_VISIBILITY_MI)
    mean_clear, mean_bad = float(np.mean(predict(clear))), float(np.mean(predict(bad)))
    return Check(
        name="worse_weather_not_lower",
        kind="direction",
        passed=mean_bad >= mean_clear,
        description=f"mean prediction with precip {BAD_PRECIP_IN} in and visibility "
        f"{BAD_VISIBILITY_MI} mi is at least the mean with precip 0 and visibility 10 mi, "
        "other features unchanged",
        numbers={"mean_clear": mean_clear, "mean_bad_weather": mean_bad},
    )


def minimum_functionality(predict: Predict, rows: pd.DataFrame) -> Check:
    """An evening flight in a storm is predicted worse than a dawn flight in calm weather."""
    good = predict(rows.assign(**GOOD_CASE))
    bad = predict(rows.assign(**BAD_CASE))
    share = float(np.mean(bad > good)) if len(rows) else 0.0
    return Check(
        name="storm_evening_worse_than_calm_dawn",
        kind="minimum_functionality",
        passed=share >= MIN_FUNCTIONALITY_SHARE,
        description=f"on at least {MIN_FUNCTIONALITY_SHARE:.0%} of rows the evening-storm case "
        "is predicted worse than the calm-dawn case",
        numbers={
            "share_worse": share,
            "mean_good": float(np.mean(good)),
            "mean_bad": float(np.mean(bad)),
        },
    )
