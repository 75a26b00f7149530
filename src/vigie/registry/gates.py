"""Promotion gates: what a candidate must show (:class:`GateSpec`), what it showed
(:class:`GateEvidence`), and the verdict (:class:`GateReport`), by a pure function.

The spec is small and serialisable (it lives in each model's ``spec.yaml`` under
``gates:``); the evidence is gathered elsewhere (evaluation, parity check, behavioural
tests, latency benchmark); :func:`evaluate_gates` only compares. Every gate result says
whether it passed, the value observed, the threshold and by how much it missed, e.g.
``roc_auc 0.655 < 0.68 (short by 0.025)``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from vigie.errors import ErrorCode, VigieError

#: Relative tolerance of comparisons, so that ``0.7 + 0.01`` still accepts ``0.71``.
_TOLERANCE = 1e-9


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Threshold(_Frozen):
    """Bounds on one metric; at least one of them."""

    min: float | None = None
    max: float | None = None

    @model_validator(mode="after")
    def _one_bound(self) -> Threshold:
        if self.min is None and self.max is None:
            raise ValueError("a metric threshold needs 'min' or 'max'")
        return self


class ProductionMargin(_Frozen):
    """The candidate must beat the production version on ``metric`` by ``margin``.

    Attributes:
        metric: The metric compared, computed on the same evaluation window for both.
        margin: How much better the candidate must be (0: at least as good).
        better: ``higher`` when a higher value is better (roc_auc), ``lower`` otherwise (mae).
    """

    metric: str
    margin: float = Field(default=0.0, ge=0.0)
    better: Literal["higher", "lower"]


class Latency(_Frozen):
    """Latencies in milliseconds: median of single-row calls, median of 256-row batches."""

    single_row_p50_ms: float | None = Field(default=None, ge=0.0)
    batch_256_p50_ms: float | None = Field(default=None, ge=0.0)


class GateSpec(_Frozen):
    """What a candidate must show to be promoted; gates left unset are not checked.

    Attributes:
        metrics: Bounds per metric, e.g. ``{"roc_auc": {"min": 0.68}}``.
        max_parity_error: Largest difference allowed between torch and ONNX Runtime outputs.
        require_behaviour_pass: The behavioural tests must have passed.
        must_beat_production_by: Margin over the production version on one metric.
        latency_budget_ms: Upper bounds on the measured latencies.
        floors_follow_production: When the production version itself misses a metric
            bound on the candidate's evaluation window, hold the candidate to production's
            value there instead (never looser than what serves now): a week of storms can
            put every model under the floor, and refusing a better candidate then keeps the
            worse one serving.
    """

    metrics: dict[str, Threshold] = Field(default_factory=dict)
    max_parity_error: float | None = Field(default=None, ge=0.0)
    require_behaviour_pass: bool = False
    must_beat_production_by: ProductionMargin | None = None
    latency_budget_ms: Latency | None = None
    floors_follow_production: bool = False

    @classmethod
    def from_model_spec(cls, gates: Mapping[str, Any]) -> GateSpec:
        """The gates as spelt in the ``gates:`` section of ``models/<name>/spec.yaml``.

        That file writes ``min``/``max`` (metric to bound), ``max_parity_error``,
        ``must_beat_production`` (``metric``, ``margin``, ``higher_is_better``), ``latency``
        (``p50_single_row_ms``, ``batch_256_ms``), ``behaviour_must_pass`` and
        ``floors_follow_production``.

        Raises:
            VigieError: INVALID_INPUT naming an unknown key or a bad value.
        """
        unknown = sorted(set(gates) - _MODEL_SPEC_KEYS)
        if unknown:
            raise VigieError(
                ErrorCode.INVALID_INPUT,
                f"unknown gate(s) {', '.join(unknown)} in the model spec "
                f"(known: {', '.join(sorted(_MODEL_SPEC_KEYS))})",
                field="gates",
            )
        try:
            return cls.model_validate(_from_model_spec(gates))
        except (ValidationError, TypeError, AttributeError) as err:
            raise VigieError(
                ErrorCode.INVALID_INPUT, f"invalid gates in the model spec: {err}", field="gates"
            ) from err


#: Keys of the ``gates:`` section of a model spec.
_MODEL_SPEC_KEYS = frozenset(
    {
        "min",
        "max",
        "max_parity_error",
        "must_beat_production",
        "latency",
        "behaviour_must_pass",
        "floors_follow_production",
    }
)


def _from_model_spec(gates: Mapping[str, Any]) -> dict[str, Any]:
    metrics: dict[str, dict[str, float]] = {}
    for bound in ("min", "max"):
        for name, value in (gates.get(bound) or {}).items():
            metrics.setdefault(name, {})[bound] = value
    spec: dict[str, Any] = {
        "metrics": metrics,
        "max_parity_error": gates.get("max_parity_error"),
        "require_behaviour_pass": gates.get("behaviour_must_pass", False),
        "floors_follow_production": gates.get("floors_follow_production", False),
    }
    beat = gates.get("must_beat_production")
    if beat is not None:
        spec["must_beat_production_by"] = {
            "metric": beat["metric"],
            "margin": beat.get("margin", 0.0),
            "better": "higher" if beat.get("higher_is_better", True) else "lower",
        }
    latency = gates.get("latency")
    if latency is not None:
        spec["latency_budget_ms"] = {
            "single_row_p50_ms": latency.get("p50_single_row_ms"),
            "batch_256_p50_ms": latency.get("batch_256_ms"),
        }
    return spec


class GateEvidence(_Frozen):
    """What the candidate showed.

    Attributes:
        model: The candidate's model, checked against the promotion when given.
        version: The candidate's version, checked against the promotion when given.
        metrics: The candidate's metrics on the evaluation window.
        evaluation_window: Names the evaluation window (e.g. a snapshot hash).
        parity_error: Largest torch vs ONNX Runtime difference measured.
        behaviour_passed: Whether the behavioural tests passed; None if not run.
        production_version: The version in production, None when there is none.
        production_metrics: The production version's metrics on the same window.
        production_evaluation_window: The window those were computed on.
        latency_ms: Latencies measured on the candidate.
    """

    model: str | None = None
    version: str | None = None
    metrics: dict[str, float] = Field(default_factory=dict)
    evaluation_window: str | None = None
    parity_error: float | None = None
    behaviour_passed: bool | None = None
    production_version: str | None = None
    production_metrics: dict[str, float] | None = None
    production_evaluation_window: str | None = None
    latency_ms: Latency | None = None


class GateResult(_Frozen):
    """The verdict of one gate.

    Attributes:
        gate: Which gate, e.g. ``metric:roc_auc``, ``parity``, ``beat_production:mae``.
        passed: Whether it passed.
        observed: The value observed (None when missing).
        threshold: The value it was held to.
        shortfall: By how much it missed (0 when it passed, None when not measurable).
        message: One line for a person.
    """

    gate: str
    passed: bool
    observed: float | bool | None
    threshold: float | bool | None
    shortfall: float | None
    message: str


class GateReport(_Frozen):
    """The verdict of every gate of a spec on one candidate."""

    model: str | None
    version: str | None
    results: tuple[GateResult, ...]

    @property
    def passed(self) -> bool:
        """True when every gate passed."""
        return all(r.passed for r in self.results)

    @property
    def failed(self) -> list[GateResult]:
        """The gates that failed."""
        return [r for r in self.results if not r.passed]

    def summary(self) -> str:
        """One line per gate, ``PASS`` or ``FAIL`` first."""
        return "\n".join(f"{'PASS' if r.passed else 'FAIL'} {r.message}" for r in self.results)


def evaluate_gates(spec: GateSpec, evidence: GateEvidence) -> GateReport:
    """Hold the evidence to the spec; pure, so CI and tests get the same verdict.

    Args:
        spec: The gates.
        evidence: What the candidate (and the production version) showed.

    Returns:
        One result per configured gate, in the spec's order.
    """
    production = evidence.production_metrics if spec.floors_follow_production else None
    results = [
        _bounded(
            f"metric:{name}",
            name,
            evidence.metrics.get(name),
            threshold,
            None if production is None else production.get(name),
        )
        for name, threshold in spec.metrics.items()
    ]
    if spec.max_parity_error is not None:
        results.append(
            _compare(
                "parity", "parity error", evidence.parity_error, spec.max_parity_error, upper=True
            )
        )
    if spec.require_behaviour_pass:
        results.append(_behaviour(evidence.behaviour_passed))
    if spec.must_beat_production_by is not None:
        results.append(_beat_production(spec.must_beat_production_by, evidence))
    if spec.latency_budget_ms is not None:
        results.extend(_latency(spec.latency_budget_ms, evidence.latency_ms or Latency()))
    return GateReport(model=evidence.model, version=evidence.version, results=tuple(results))


def _compare(
    gate: str,
    label: str,
    observed: float | None,
    limit: float,
    *,
    upper: bool,
    limit_text: str = "",
) -> GateResult:
    """Hold ``observed`` to ``limit`` (an upper bound when ``upper``, else a lower one)."""
    shown = limit_text or _fmt(limit)
    if observed is None or math.isnan(observed):
        return GateResult(
            gate=gate,
            passed=False,
            observed=None,
            threshold=limit,
            shortfall=None,
            message=f"{label}: no value measured (needs {'<=' if upper else '>='} {shown})",
        )
    slack = _TOLERANCE * max(1.0, abs(limit))
    passed = observed <= limit + slack if upper else observed >= limit - slack
    gap = abs(observed - limit)
    if passed:
        message = f"{label} {_fmt(observed)} {'<=' if upper else '>='} {shown}"
    else:
        word = "over" if upper else "short"
        sign = ">" if upper else "<"
        message = f"{label} {_fmt(observed)} {sign} {shown} ({word} by {_fmt(gap)})"
    return GateResult(
        gate=gate,
        passed=passed,
        observed=observed,
        threshold=limit,
        shortfall=0.0 if passed else gap,
        message=message,
    )


def _bounded(
    gate: str,
    name: str,
    observed: float | None,
    threshold: Threshold,
    production: float | None = None,
) -> GateResult:
    """``observed`` within ``threshold``; when ``production`` (its value on the same window)
    misses a bound too, that bound becomes production's value."""
    checks = []
    known = production is not None and not math.isnan(production)
    if threshold.min is not None:
        floor, text = threshold.min, ""
        if known and production is not None and production < threshold.min:
            floor = production
            text = f"production's {_fmt(production)} (floor {_fmt(threshold.min)} missed by it too)"
        checks.append(_compare(gate, name, observed, floor, upper=False, limit_text=text))
    if threshold.max is not None:
        ceiling, text = threshold.max, ""
        if known and production is not None and production > threshold.max:
            ceiling = production
            text = f"production's {_fmt(production)} (bound {_fmt(threshold.max)} missed by it too)"
        checks.append(_compare(gate, name, observed, ceiling, upper=True, limit_text=text))
    failed = [c for c in checks if not c.passed]
    return failed[0] if failed else checks[0]


def _behaviour(passed: bool | None) -> GateResult:
    if passed is None:
        message = "behavioural tests: no result (they must run and pass)"
    else:
        message = f"behavioural tests {'passed' if passed else 'failed'}"
    return GateResult(
        gate="behaviour",
        passed=passed is True,
        observed=passed,
        threshold=True,
        shortfall=None,
        message=message,
    )


def _beat_production(rule: ProductionMargin, evidence: GateEvidence) -> GateResult:
    gate = f"beat_production:{rule.metric}"
    note = _production_gap(rule.metric, evidence)
    if note is not None:
        passed, message = note
        return GateResult(
            gate=gate,
            passed=passed,
            observed=evidence.metrics.get(rule.metric),
            threshold=None,
            shortfall=None,
            message=message,
        )
    production = (evidence.production_metrics or {})[rule.metric]
    higher = rule.better == "higher"
    limit = production + rule.margin if higher else production - rule.margin
    text = (
        f"production {evidence.production_version} {_fmt(production)} "
        f"{'+' if higher else '-'} margin {_fmt(rule.margin)} = {_fmt(limit)}"
    )
    observed = evidence.metrics.get(rule.metric)
    return _compare(gate, rule.metric, observed, limit, upper=not higher, limit_text=text)


def _production_gap(metric: str, evidence: GateEvidence) -> tuple[bool, str] | None:
    """(passed, message) when the comparison cannot be made; None when it can."""
    if evidence.production_version is None:
        return True, f"{metric}: no production version yet, nothing to beat"
    if metric not in (evidence.production_metrics or {}):
        return False, (
            f"{metric}: no metric of production version {evidence.production_version} "
            "on the candidate's evaluation window"
        )
    windows = (evidence.evaluation_window, evidence.production_evaluation_window)
    if None not in windows and windows[0] != windows[1]:
        return False, (
            f"{metric}: production was evaluated on window {windows[1]}, the candidate on "
            f"{windows[0]}; the comparison needs the same window"
        )
    return None


def _latency(budget: Latency, measured: Latency) -> list[GateResult]:
    results = []
    if budget.single_row_p50_ms is not None:
        results.append(
            _compare(
                "latency:single_row_p50",
                "single-row p50 latency (ms)",
                measured.single_row_p50_ms,
                budget.single_row_p50_ms,
                upper=True,
            )
        )
    if budget.batch_256_p50_ms is not None:
        results.append(
            _compare(
                "latency:batch_256_p50",
                "256-row batch p50 latency (ms)",
                measured.batch_256_p50_ms,
                budget.batch_256_p50_ms,
                upper=True,
            )
        )
    return results


def _fmt(value: float) -> str:
    return f"{value:.6g}"
