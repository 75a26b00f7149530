"""Promotion gates: each verdict with its observed value, threshold and margin."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from vigie.errors import ErrorCode, VigieError
from vigie.registry import GateEvidence, GateSpec, Latency, evaluate_gates

SPEC = GateSpec.model_validate(
    {
        "metrics": {"roc_auc": {"min": 0.68}, "brier": {"max": 0.2}},
        "max_parity_error": 1e-4,
        "require_behaviour_pass": True,
        "must_beat_production_by": {"metric": "roc_auc", "margin": 0.01, "better": "higher"},
        "latency_budget_ms": {"single_row_p50_ms": 5, "batch_256_p50_ms": 40},
    }
)

GOOD = GateEvidence(
    model="flight_delay",
    version="3",
    metrics={"roc_auc": 0.72, "brier": 0.18},
    evaluation_window="w1",
    parity_error=2e-5,
    behaviour_passed=True,
    production_version="2",
    production_metrics={"roc_auc": 0.70},
    production_evaluation_window="w1",
    latency_ms=Latency(single_row_p50_ms=1.5, batch_256_p50_ms=12.0),
)


def _messages(evidence: GateEvidence, spec: GateSpec = SPEC) -> dict[str, tuple[bool, str]]:
    return {r.gate: (r.passed, r.message) for r in evaluate_gates(spec, evidence).results}


def test_all_gates_pass_with_their_values() -> None:
    report = evaluate_gates(SPEC, GOOD)
    assert report.passed
    assert report.failed == []
    assert (report.model, report.version) == ("flight_delay", "3")
    assert [r.gate for r in report.results] == [
        "metric:roc_auc",
        "metric:brier",
        "parity",
        "behaviour",
        "beat_production:roc_auc",
        "latency:single_row_p50",
        "latency:batch_256_p50",
    ]
    messages = _messages(GOOD)
    assert messages["metric:roc_auc"] == (True, "roc_auc 0.72 >= 0.68")
    assert messages["beat_production:roc_auc"] == (
        True,
        "roc_auc 0.72 >= production 2 0.7 + margin 0.01 = 0.71",
    )
    assert "PASS roc_auc 0.72 >= 0.68" in report.summary()


def test_failed_gates_say_by_how_much() -> None:
    bad = GOOD.model_copy(
        update={
            "metrics": {"roc_auc": 0.655, "brier": 0.215},
            "parity_error": 3e-3,
            "behaviour_passed": False,
            "latency_ms": Latency(single_row_p50_ms=1.5, batch_256_p50_ms=55.5),
        }
    )
    report = evaluate_gates(SPEC, bad)
    assert not report.passed
    messages = _messages(bad)
    assert messages["metric:roc_auc"] == (False, "roc_auc 0.655 < 0.68 (short by 0.025)")
    assert messages["metric:brier"] == (False, "brier 0.215 > 0.2 (over by 0.015)")
    assert messages["parity"] == (False, "parity error 0.003 > 0.0001 (over by 0.0029)")
    assert messages["behaviour"] == (False, "behavioural tests failed")
    assert messages["beat_production:roc_auc"] == (
        False,
        "roc_auc 0.655 < production 2 0.7 + margin 0.01 = 0.71 (short by 0.055)",
    )
    assert messages["latency:single_row_p50"][0]
    assert messages["latency:batch_256_p50"] == (
        False,
        "256-row batch p50 latency (ms) 55.5 > 40 (over by 15.5)",
    )
    failed = {r.gate: r for r in report.failed}
    assert failed["metric:roc_auc"].observed == 0.655
    assert failed["metric:roc_auc"].threshold == 0.68
    assert failed["metric:roc_auc"].shortfall == pytest.approx(0.025)
    assert "FAIL roc_auc 0.655 < 0.68 (short by 0.025)" in report.summary()


def test_lower_is_better_margin_is_direction_aware() -> None:
    spec = GateSpec.model_validate(
        {"must_beat_production_by": {"metric": "mae", "margin": 0.5, "better": "lower"}}
    )
    evidence = GateEvidence(
        metrics={"mae": 18.8}, production_version="4", production_metrics={"mae": 19.0}
    )
    assert _messages(evidence, spec)["beat_production:mae"] == (
        False,
        "mae 18.8 > production 4 19 - margin 0.5 = 18.5 (over by 0.3)",
    )
    better = evidence.model_copy(update={"metrics": {"mae": 18.2}})
    assert evaluate_gates(spec, better).passed


def test_boundary_passes_despite_float_rounding() -> None:
    spec = GateSpec.model_validate(
        {"must_beat_production_by": {"metric": "roc_auc", "margin": 0.01, "better": "higher"}}
    )
    evidence = GateEvidence(
        metrics={"roc_auc": 0.71}, production_version="1", production_metrics={"roc_auc": 0.7}
    )
    assert evaluate_gates(spec, evidence).passed


def test_no_production_passes_with_a_note() -> None:
    evidence = GOOD.model_copy(update={"production_version": None, "production_metrics": None})
    assert _messages(evidence)["beat_production:roc_auc"] == (
        True,
        "roc_auc: no production version yet, nothing to beat",
    )


def test_production_metrics_missing_or_from_another_window_fail() -> None:
    missing = GOOD.model_copy(update={"production_metrics": None})
    passed, message = _messages(missing)["beat_production:roc_auc"]
    assert not passed
    assert "no metric of production version 2" in message
    other = GOOD.model_copy(update={"production_evaluation_window": "w0"})
    passed, message = _messages(other)["beat_production:roc_auc"]
    assert not passed
    assert "same window" in message


def test_missing_evidence_fails_the_gate() -> None:
    report = evaluate_gates(SPEC, GateEvidence())
    assert not report.passed
    messages = _messages(GateEvidence())
    assert messages["metric:roc_auc"] == (False, "roc_auc: no value measured (needs >= 0.68)")
    assert messages["behaviour"][1] == "behavioural tests: no result (they must run and pass)"
    assert not messages["latency:single_row_p50"][0]
    nan = GateEvidence(metrics={"roc_auc": float("nan")})
    assert not _messages(nan)["metric:roc_auc"][0]


def test_empty_spec_passes_and_bad_specs_are_refused() -> None:
    assert evaluate_gates(GateSpec(), GateEvidence()).passed
    bad: dict[str, Any]
    for bad in (
        {"metrics": {"roc_auc": {}}},
        {"metrics": {"roc_auc": {"minimum": 0.6}}},
        {"must_beat_production_by": {"metric": "mae", "margin": -1, "better": "lower"}},
        {"max_parity": 0.1},
    ):
        with pytest.raises(ValidationError):
            GateSpec.model_validate(bad)


@pytest.mark.parametrize("model", ["flight_delay", "arrival_delay"])
def test_gates_of_the_shipped_model_specs_are_read(model: str) -> None:
    path = Path(__file__).parents[3] / "models" / model / "spec.yaml"
    if not path.is_file():
        pytest.skip(f"{path} is not there yet")
    gates = yaml.safe_load(path.read_text())["gates"]
    spec = GateSpec.from_model_spec(gates)
    assert spec.require_behaviour_pass == gates["behaviour_must_pass"]
    assert spec.max_parity_error == gates["max_parity_error"]
    assert spec.latency_budget_ms is not None
    assert spec.latency_budget_ms.batch_256_p50_ms == gates["latency"]["batch_256_ms"]
    assert spec.must_beat_production_by is not None
    assert spec.must_beat_production_by.metric == gates["must_beat_production"]["metric"]
    for bound in ("min", "max"):
        for name, value in gates.get(bound, {}).items():
            assert getattr(spec.metrics[name], bound) == value


def test_model_spec_gates_translate_direction_and_refuse_unknown_keys() -> None:
    spec = GateSpec.from_model_spec(
        {
            "min": {"roc_auc": 0.7},
            "max": {"roc_auc": 0.99, "brier": 0.2},
            "must_beat_production": {"metric": "mae", "higher_is_better": False},
            "latency": {"p50_single_row_ms": 5.0, "batch_256_ms": 25.0},
        }
    )
    assert spec == GateSpec.model_validate(
        {
            "metrics": {"roc_auc": {"min": 0.7, "max": 0.99}, "brier": {"max": 0.2}},
            "must_beat_production_by": {"metric": "mae", "margin": 0.0, "better": "lower"},
            "latency_budget_ms": {"single_row_p50_ms": 5.0, "batch_256_p50_ms": 25.0},
        }
    )
    for bad in ({"minimum": {"roc_auc": 0.7}}, {"min": {"roc_auc": "high"}}, {"latency": 3}):
        with pytest.raises(VigieError) as err:
            GateSpec.from_model_spec(bad)
        assert err.value.code == ErrorCode.INVALID_INPUT


def test_floors_follow_production_only_where_production_misses_them() -> None:
    following = SPEC.model_copy(update={"floors_follow_production": True})
    stormy = GOOD.model_copy(
        update={
            "metrics": {"roc_auc": 0.66, "brier": 0.215},
            "production_metrics": {"roc_auc": 0.64, "brier": 0.23},
        }
    )
    messages = _messages(stormy, following)
    assert messages["metric:roc_auc"] == (
        True,
        "roc_auc 0.66 >= production's 0.64 (floor 0.68 missed by it too)",
    )
    assert messages["metric:brier"] == (
        True,
        "brier 0.215 <= production's 0.23 (bound 0.2 missed by it too)",
    )
    # never looser than production: worse than it on the same window still fails
    worse = stormy.model_copy(update={"metrics": {"roc_auc": 0.63, "brier": 0.24}})
    assert not _messages(worse, following)["metric:roc_auc"][0]
    assert not _messages(worse, following)["metric:brier"][0]
    # production within the floor: the floor holds as written
    calm = stormy.model_copy(update={"production_metrics": {"roc_auc": 0.70, "brier": 0.19}})
    assert _messages(calm, following)["metric:roc_auc"] == (
        False,
        "roc_auc 0.66 < 0.68 (short by 0.02)",
    )
    # without the option, or without production, the floors are absolute
    assert not _messages(stormy)["metric:roc_auc"][0]
    alone = stormy.model_copy(update={"production_metrics": None})
    assert not _messages(alone, following)["metric:roc_auc"][0]


def test_the_model_spec_spells_floors_follow_production() -> None:
    spec = GateSpec.from_model_spec({"min": {"roc_auc": 0.7}, "floors_follow_production": True})
    assert spec.floors_follow_production
    assert not GateSpec.from_model_spec({"min": {"roc_auc": 0.7}}).floors_follow_production
