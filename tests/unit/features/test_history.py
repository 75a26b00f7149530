"""Stream features: what the flight events told strictly before the prediction instant."""

from __future__ import annotations

import math

import numpy as np
import pytest

from vigie.features import history
from vigie.features.catalogue import CATALOGUE, resolve_features
from vigie.features.history import NONE_US, FlightFacts, Targets, compute

H = 3_600_000_000  # one hour in microseconds
N = math.nan


def _facts(
    rows: list[tuple[int, str, str, str, float, float, float, float, float, bool]],
) -> FlightFacts:
    """Facts from (key, origin, dest, carrier, sched h, dep h, dep delay, arr h, arr delay,
    cancelled); NaN hours are 'no such event'."""

    def instants(i: int) -> np.ndarray:
        return np.array([NONE_US if math.isnan(r[i]) else int(r[i] * H) for r in rows], np.int64)

    return FlightFacts(
        flight_key=np.array([r[0] for r in rows], dtype=np.int64),
        origin=np.array([r[1] for r in rows], dtype=object),
        dest=np.array([r[2] for r in rows], dtype=object),
        carrier=np.array([r[3] for r in rows], dtype=object),
        sched_us=instants(4),
        dep_us=instants(5),
        dep_delay=np.array([r[6] for r in rows], dtype=np.float64),
        arr_us=instants(7),
        arr_delay=np.array([r[8] for r in rows], dtype=np.float64),
        cancelled=np.array([r[9] for r in rows], dtype=np.bool_),
    )


def _targets(rows: list[tuple[str, str, str, float]]) -> Targets:
    return Targets(
        origin=np.array([r[0] for r in rows], dtype=object),
        dest=np.array([r[1] for r in rows], dtype=object),
        carrier=np.array([r[2] for r in rows], dtype=object),
        at_us=np.array([int(r[3] * H) for r in rows], dtype=np.int64),
    )


FACTS = _facts(
    [
        # arrivals, as in the origin status's first release (departures long before)
        (1, "JFK", "BOS", "AA", -5, -5, 0, 1.0, 60.0, False),  # 9 h before: outside
        (2, "JFK", "BOS", "AA", -5, -5, 0, 5.0, 30.0, False),  # 5 h before: 6 h only
        (3, "JFK", "MIA", "B6", -5, -5, 0, 8.0, -5.0, False),  # 2 h before: both
        (4, "JFK", "BOS", "AA", -5, -5, 0, 9.5, 20.0, False),  # 0.5 h before: both
        (5, "JFK", "BOS", "AA", -5, -5, 0, 10.0, 999.0, False),  # at t: never (strict)
        (6, "LGA", "BOS", "AA", -5, -5, 0, 9.0, 100.0, False),  # another origin
        # departures and backlog at JFK around t = 10 h
        (7, "JFK", "ORD", "AA", 9.0, 9.5, 30.0, N, N, False),  # left 0.5 h before
        (8, "JFK", "ORD", "B6", 8.0, 9.8, 108.0, N, N, False),  # left 0.2 h before
        (9, "JFK", "ORD", "AA", 9.2, 10.5, 78.0, N, N, False),  # scheduled, leaves after t
        (10, "JFK", "ORD", "AA", 9.6, N, N, N, N, False),  # scheduled, not left yet
        (11, "JFK", "ORD", "AA", 9.7, N, N, N, N, True),  # cancelled: never backlog
        (12, "JFK", "ORD", "AA", 7.5, 8.0, 30.0, N, N, False),  # left 2 h before
    ]
)


def test_arrival_means_shares_and_counts_follow_the_definition() -> None:
    out = compute(FACTS, _targets([("JFK", "BOS", "AA", 10.0)]))
    assert out["origin_arr_delay_3h"][0] == pytest.approx((-5 + 20) / 2)
    assert out["origin_late_share_3h"][0] == pytest.approx(1 / 2)
    assert out["origin_arr_delay_6h"][0] == pytest.approx((30 - 5 + 20) / 3)
    assert out["origin_late_share_6h"][0] == pytest.approx(2 / 3)
    assert out["origin_arrivals_6h"][0] == 3
    assert out["carrier_arr_delay_6h"][0] == pytest.approx((30 + 20) / 2)
    assert out["carrier_late_share_6h"][0] == pytest.approx(1.0)
    # arrivals at BOS from New York in [7 h, 10 h): flight 4 only (6 is 9.0 h at BOS too)
    assert out["dest_arr_delay_3h"][0] == pytest.approx((20 + 100) / 2)
    assert out["dest_late_share_3h"][0] == pytest.approx(1.0)


def test_departures_and_backlog_follow_the_definition() -> None:
    out = compute(FACTS, _targets([("JFK", "ORD", "AA", 10.0)]))
    assert out["origin_dep_delay_1h"][0] == pytest.approx((30 + 108) / 2)
    assert out["origin_departures_1h"][0] == 2
    assert out["origin_dep_delay_3h"][0] == pytest.approx((30 + 108 + 30) / 3)
    assert out["carrier_dep_delay_3h"][0] == pytest.approx((30 + 30) / 2)
    # scheduled in [9 h, 10 h), not gone by 10 h: 9 (leaves later) and 10 (unknown)
    assert out["origin_backlog_1h"][0] == 2
    # [7 h, 10 h) adds 8 (gone at 9.8 h) and 12 (gone at 8 h): still 2
    assert out["origin_backlog_3h"][0] == 2
    assert (
        out["origin_backlog_1h"][0]
        == compute(FACTS, _targets([("JFK", "X", "UA", 10.0)]))["origin_backlog_1h"][0]
    )


def test_an_entity_with_no_recent_event_is_missing_not_zero() -> None:
    out = compute(FACTS, _targets([("EWR", "SFO", "UA", 10.0), ("LGA", "BOS", "DL", 10.0)]))
    assert math.isnan(out["origin_arr_delay_6h"][0])
    assert math.isnan(out["origin_dep_delay_1h"][0])
    assert math.isnan(out["dest_arr_delay_3h"][0])
    assert out["origin_arrivals_6h"][0] == 0
    assert out["origin_backlog_3h"][0] == 0
    assert out["origin_arr_delay_6h"][1] == pytest.approx(100.0)
    assert math.isnan(out["carrier_arr_delay_6h"][1])  # no DL arrival at LGA


def test_no_facts_give_every_feature() -> None:
    out = compute(history.empty_facts(), _targets([("JFK", "BOS", "AA", 10.0)]))
    assert set(out) == set(history.NAMES)
    for name in history.NAMES:
        assert (out[name][0] == 0) if name in history.COUNTS else math.isnan(out[name][0])


def _random_facts(rng: np.random.Generator, n: int) -> FlightFacts:
    origin = rng.choice(np.array(["JFK", "LGA", "EWR"], dtype=object), n)
    sched = rng.integers(0, 48 * H, n)
    dep_delay = rng.normal(10, 40, n).round()
    dep = sched + (dep_delay * 60_000_000).astype(np.int64)
    cancelled = rng.random(n) < 0.05
    arr = dep + rng.integers(1 * H, 5 * H, n)
    arr_delay = dep_delay + rng.normal(0, 10, n).round()
    return FlightFacts(
        flight_key=np.arange(n, dtype=np.int64),
        origin=origin,
        dest=rng.choice(np.array(["BOS", "ORD", "MIA"], dtype=object), n),
        carrier=rng.choice(np.array(["AA", "B6", "UA"], dtype=object), n),
        sched_us=sched,
        dep_us=np.where(cancelled, NONE_US, dep),
        dep_delay=np.where(cancelled, np.nan, dep_delay),
        arr_us=np.where(cancelled, NONE_US, arr),
        arr_delay=np.where(cancelled, np.nan, arr_delay),
        cancelled=cancelled,
    )


def _random_targets(rng: np.random.Generator, n: int) -> Targets:
    return Targets(
        origin=rng.choice(np.array(["JFK", "LGA", "EWR"], dtype=object), n),
        dest=rng.choice(np.array(["BOS", "ORD", "MIA"], dtype=object), n),
        carrier=rng.choice(np.array(["AA", "B6", "UA"], dtype=object), n),
        at_us=rng.integers(6 * H, 42 * H, n),
    )


def test_nothing_at_or_after_the_instant_can_change_the_features() -> None:
    """Every event at or after ``t`` rewritten (later departures moved, later delays
    changed, later arrivals erased): the features at ``t`` stay as they were."""
    rng = np.random.default_rng(3)
    facts, targets = _random_facts(rng, 2_000), _random_targets(rng, 40)
    before = compute(facts, targets)
    for i in range(40):
        t = targets.at_us[i]
        dep_later, arr_later = facts.dep_us >= t, facts.arr_us >= t
        changed = FlightFacts(
            facts.flight_key, facts.origin, facts.dest, facts.carrier, facts.sched_us,
            np.where(dep_later, NONE_US, facts.dep_us),
            np.where(dep_later, np.nan, facts.dep_delay),
            np.where(arr_later, facts.arr_us + H, facts.arr_us),
            np.where(arr_later, 500.0, facts.arr_delay),
            facts.cancelled & (facts.sched_us < t),
        )  # fmt: skip
        after = compute(changed, targets)
        for name in history.NAMES:
            assert after[name][i] == pytest.approx(before[name][i], nan_ok=True), name


def _loop(facts: FlightFacts, origin: str, dest: str, carrier: str, t: int) -> dict[str, float]:
    """The definition, one flight at a time, with plain masks."""

    def mean(values: np.ndarray) -> float:
        return float(values.mean()) if values.size else math.nan

    def window(times: np.ndarray, hours: int) -> np.ndarray:
        return (times >= t - hours * H) & (times < t) & (times != NONE_US)

    at_o, at_c = facts.origin == origin, (facts.origin == origin) & (facts.carrier == carrier)
    waiting = ~facts.cancelled & ((facts.dep_us == NONE_US) | (facts.dep_us >= t))
    out = {
        "origin_arr_delay_3h": mean(facts.arr_delay[at_o & window(facts.arr_us, 3)]),
        "origin_late_share_6h": mean(facts.arr_delay[at_o & window(facts.arr_us, 6)] > 15),
        "carrier_arr_delay_6h": mean(facts.arr_delay[at_c & window(facts.arr_us, 6)]),
        "origin_dep_delay_1h": mean(facts.dep_delay[at_o & window(facts.dep_us, 1)]),
        "origin_dep_delay_6h": mean(facts.dep_delay[at_o & window(facts.dep_us, 6)]),
        "carrier_dep_delay_3h": mean(facts.dep_delay[at_c & window(facts.dep_us, 3)]),
        "origin_departures_1h": float(np.count_nonzero(at_o & window(facts.dep_us, 1))),
        "dest_arr_delay_3h": mean(facts.arr_delay[(facts.dest == dest) & window(facts.arr_us, 3)]),
    }
    for hours in (1, 3):
        scheduled = at_o & window(facts.sched_us, hours)
        out[f"origin_backlog_{hours}h"] = float(np.count_nonzero(scheduled & waiting))
    return out


def test_vectorised_windows_match_a_plain_loop() -> None:
    rng = np.random.default_rng(11)
    facts, targets = _random_facts(rng, 800), _random_targets(rng, 60)
    out = compute(facts, targets)
    for i in range(60):
        expected = _loop(
            facts, targets.origin[i], targets.dest[i], targets.carrier[i], int(targets.at_us[i])
        )
        for name, value in expected.items():
            assert out[name][i] == pytest.approx(value, nan_ok=True), name


def test_the_catalogue_holds_every_stream_feature_as_history() -> None:
    features = resolve_features(history.NAMES)
    assert [f.name for f in features] == list(history.NAMES)
    assert all(f.history for f in features)
    assert not any(f.history for f in CATALOGUE.values() if f.name not in history.NAMES)


def test_history_features_need_the_policy_to_allow_their_sources_as_history() -> None:
    from vigie.errors import VigieError
    from vigie.features.catalogue import check_policy
    from vigie.governance.policy import load_policy

    policy = load_policy()
    check_policy(resolve_features(history.NAMES), policy)
    assert "arr_delay" not in policy.training_features("flights")  # never a plain input
    assert "dep_delay" not in policy.training_features("flights")
    data = policy.model_dump()
    data["tables"]["flights"]["columns"]["dep_delay"]["history"] = False
    stricter = type(policy).model_validate(data)
    with pytest.raises(VigieError, match="origin_dep_delay_1h <- flights.dep_delay"):
        check_policy(resolve_features(["origin_dep_delay_1h"]), stricter)
