"""Origin status: recent arrival outcomes at the origin, strictly before departure."""

from __future__ import annotations

import math

import numpy as np
import pytest

from vigie.features.catalogue import CATALOGUE, resolve_features
from vigie.training import origin_status
from vigie.training.origin_status import Events, Targets, compute

H = 3_600_000_000  # one hour in microseconds


def _events(rows: list[tuple[int, str, str, float, float]]) -> Events:
    """Events from (key, origin, carrier, arrival hour, delay minutes)."""
    return Events(
        flight_key=np.array([r[0] for r in rows], dtype=np.int64),
        origin=np.array([r[1] for r in rows], dtype=object),
        carrier=np.array([r[2] for r in rows], dtype=object),
        arrival_us=np.array([int(r[3] * H) for r in rows], dtype=np.int64),
        delay_min=np.array([r[4] for r in rows], dtype=np.float64),
    )


def _targets(rows: list[tuple[int, str, str, float]]) -> Targets:
    return Targets(
        flight_key=np.array([r[0] for r in rows], dtype=np.int64),
        origin=np.array([r[1] for r in rows], dtype=object),
        carrier=np.array([r[2] for r in rows], dtype=object),
        departure_us=np.array([int(r[3] * H) for r in rows], dtype=np.int64),
    )


EVENTS = _events(
    [
        (1, "JFK", "AA", 1.0, 60.0),  # 9 h before the target: outside both windows
        (2, "JFK", "AA", 5.0, 30.0),  # 5 h before: 6 h window only
        (3, "JFK", "B6", 8.0, -5.0),  # 2 h before: both windows
        (4, "JFK", "AA", 9.5, 20.0),  # 0.5 h before: both windows
        (5, "JFK", "AA", 10.0, 999.0),  # exactly at departure: never (strict cutoff)
        (6, "LGA", "AA", 9.0, 100.0),  # another origin
    ]
)


def test_means_shares_and_counts_follow_the_definition() -> None:
    out = compute(EVENTS, _targets([(100, "JFK", "AA", 10.0)]))
    assert out["origin_arr_delay_3h"][0] == pytest.approx((-5 + 20) / 2)
    assert out["origin_late_share_3h"][0] == pytest.approx(1 / 2)
    assert out["origin_arr_delay_6h"][0] == pytest.approx((30 - 5 + 20) / 3)
    assert out["origin_late_share_6h"][0] == pytest.approx(2 / 3)
    assert out["origin_arrivals_6h"][0] == 3
    assert out["carrier_arr_delay_6h"][0] == pytest.approx((30 + 20) / 2)
    assert out["carrier_late_share_6h"][0] == pytest.approx(1.0)


def test_an_origin_with_no_recent_arrival_is_missing_not_zero() -> None:
    out = compute(EVENTS, _targets([(100, "EWR", "UA", 10.0), (101, "LGA", "DL", 10.0)]))
    assert math.isnan(out["origin_arr_delay_6h"][0])
    assert out["origin_arrivals_6h"][0] == 0
    assert out["origin_arr_delay_6h"][1] == pytest.approx(100.0)
    assert math.isnan(out["carrier_arr_delay_6h"][1])  # no DL arrival at LGA


def test_the_flight_itself_never_counts() -> None:
    # Flight 4 asked at 10.0 h: its own arrival (9.5 h) is before the cutoff in this
    # contrived case and must still be left out.
    out = compute(EVENTS, _targets([(4, "JFK", "AA", 10.0)]))
    assert out["origin_arrivals_6h"][0] == 2
    assert out["origin_arr_delay_6h"][0] == pytest.approx((30 - 5) / 2)
    assert out["carrier_arr_delay_6h"][0] == pytest.approx(30.0)


def test_nothing_at_or_after_departure_can_change_the_features() -> None:
    """Rewriting every arrival at or after the cutoff leaves the features as they were."""
    rng = np.random.default_rng(3)
    n = 2_000
    events = Events(
        flight_key=np.arange(n, dtype=np.int64),
        origin=rng.choice(np.array(["JFK", "LGA", "EWR"], dtype=object), n),
        carrier=rng.choice(np.array(["AA", "B6", "UA"], dtype=object), n),
        arrival_us=rng.integers(0, 48 * H, n),
        delay_min=rng.normal(10, 40, n),
    )
    targets = Targets(
        flight_key=np.arange(n, n + 50, dtype=np.int64),
        origin=rng.choice(np.array(["JFK", "LGA", "EWR"], dtype=object), 50),
        carrier=rng.choice(np.array(["AA", "B6", "UA"], dtype=object), 50),
        departure_us=rng.integers(6 * H, 42 * H, 50),
    )
    before = compute(events, targets)
    for i in range(50):
        cutoff = targets.departure_us[i]
        later = events.arrival_us >= cutoff
        changed = Events(
            events.flight_key,
            events.origin,
            events.carrier,
            events.arrival_us,
            np.where(later, 500.0, events.delay_min),
        )
        after = compute(changed, targets)
        for name in origin_status.NAMES:
            assert after[name][i] == pytest.approx(before[name][i], nan_ok=True), name


def test_vectorised_windows_match_a_plain_loop() -> None:
    rng = np.random.default_rng(11)
    n = 500
    events = Events(
        flight_key=np.arange(n, dtype=np.int64),
        origin=rng.choice(np.array(["JFK", "LGA"], dtype=object), n),
        carrier=rng.choice(np.array(["AA", "B6"], dtype=object), n),
        arrival_us=rng.integers(0, 24 * H, n),
        delay_min=rng.normal(5, 30, n).round(),
    )
    targets = Targets(
        flight_key=rng.integers(0, n, 40).astype(np.int64),  # some are events themselves
        origin=rng.choice(np.array(["JFK", "LGA"], dtype=object), 40),
        carrier=rng.choice(np.array(["AA", "B6"], dtype=object), 40),
        departure_us=rng.integers(0, 24 * H, 40),
    )
    out = compute(events, targets)
    for i in range(40):
        t = targets.departure_us[i]
        for hours in (3, 6):
            sel = (
                (events.origin == targets.origin[i])
                & (events.arrival_us >= t - hours * H)
                & (events.arrival_us < t)
                & (events.flight_key != targets.flight_key[i])
            )
            delays = events.delay_min[sel]
            expected = delays.mean() if delays.size else math.nan
            assert out[f"origin_arr_delay_{hours}h"][i] == pytest.approx(expected, nan_ok=True)
        sel6 = (
            (events.origin == targets.origin[i])
            & (events.carrier == targets.carrier[i])
            & (events.arrival_us >= t - 6 * H)
            & (events.arrival_us < t)
            & (events.flight_key != targets.flight_key[i])
        )
        share = (events.delay_min[sel6] > 15).mean() if sel6.any() else math.nan
        assert out["carrier_late_share_6h"][i] == pytest.approx(share, nan_ok=True)


def test_the_catalogue_holds_every_origin_status_feature_as_history() -> None:
    features = resolve_features(origin_status.NAMES)
    assert [f.name for f in features] == list(origin_status.NAMES)
    assert all(f.history for f in features)
    assert not any(f.history for f in CATALOGUE.values() if f.name not in origin_status.NAMES)


def test_history_features_need_the_policy_to_allow_their_sources_as_history() -> None:
    from vigie.errors import VigieError
    from vigie.features.catalogue import check_policy
    from vigie.governance.policy import load_policy

    policy = load_policy()
    check_policy(resolve_features(origin_status.NAMES), policy)
    assert "arr_delay" not in policy.training_features("flights")  # never a plain input
    data = policy.model_dump()
    data["tables"]["flights"]["columns"]["arr_delay"]["history"] = False
    stricter = type(policy).model_validate(data)
    with pytest.raises(VigieError, match="origin_arr_delay_3h <- flights.arr_delay"):
        check_policy(resolve_features(["origin_arr_delay_3h"]), stricter)
