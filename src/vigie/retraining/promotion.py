"""Promotion of a candidate to production, with live checks and automatic rollback.

``candidate`` → gates → ``staging`` → smoke test of the staging version (its own route) →
bounded load through the canary path → ``production`` → wait for the service to serve it →
smoke test of production; a failure after the move to production rolls back
(:meth:`Registry.rollback`). Each step is kept in a :class:`PromotionReport` and audited as
``promotion.<step>``. Without a live checker (``--skip-live-checks``) the service steps are
reported as skipped, never as passed.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

import pandas as pd
import yaml

from vigie.config import Settings
from vigie.errors import EXIT_CODES, ErrorCode, VigieError
from vigie.governance.audit import AuditLog, Outcome
from vigie.registry import Alias, GateReport, Registry
from vigie.retraining.lifecycle import assess, promote
from vigie.retraining.live_checks import CheckResult, LiveChecker, LoadLimits

StepOutcome = Literal["pass", "fail", "skipped"]
#: Output range of a regression model in minutes: from a day early to two days late.
REGRESSION_BOUNDS = (-1440.0, 2880.0)
_AUDIT_OUTCOME = {"pass": Outcome.SUCCESS, "fail": Outcome.FAILURE, "skipped": Outcome.PARTIAL}


@dataclass(frozen=True)
class PromotionOptions:
    """How a promotion is checked.

    Attributes:
        smoke_requests: Requests of the smoke tests (each a slice of real flights).
        load: Bounds of the load test through the canary path.
        reload_timeout_s: How long the service may take to serve the new production version.
        reason: Why (alias history and audit log).
    """

    smoke_requests: int = 5
    load: LoadLimits = field(default_factory=LoadLimits)
    reload_timeout_s: float = 60.0
    reason: str = "vigie promote"


@dataclass
class Step:
    """One reported step: its name, outcome, a sentence and measurements."""

    name: str
    outcome: StepOutcome
    detail: str
    data: dict[str, Any] = field(default_factory=dict)


@dataclass
class PromotionReport:
    """Everything a promotion did, for the table, the JSON report and the job summary."""

    model: str
    version: str
    live_checks: bool
    url: str | None
    status: str = "running"
    steps: list[Step] = field(default_factory=list)
    gates: GateReport | None = None
    error: VigieError | None = None
    started_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat())

    @property
    def exit_code(self) -> int:
        """The process exit status this promotion ends with."""
        return 0 if self.error is None else EXIT_CODES[self.error.code]

    def to_dict(self) -> dict[str, Any]:
        """The report as a JSON-ready mapping."""
        return {
            "model": self.model,
            "version": self.version,
            "status": self.status,
            "exit_code": self.exit_code,
            "live_checks": self.live_checks,
            "url": self.url,
            "started_at": self.started_at,
            "steps": [asdict(s) for s in self.steps],
            "gates": None if self.gates is None else self.gates.model_dump(mode="json"),
            "error": None if self.error is None else self.error.to_dict(),
        }

    def to_json(self) -> str:
        """The report as indented JSON."""
        return json.dumps(self.to_dict(), indent=2, default=str) + "\n"

    def markdown(self) -> str:
        """A Markdown summary: the outcome, the gate table and the step table."""
        icon = {"pass": "✅ pass", "fail": "❌ FAIL", "skipped": "⏭️ skipped"}
        lines = [f"## Promotion of {self.model} version {self.version}: {self.status}", ""]
        if not self.live_checks:
            lines += ["Live checks were **skipped** (`--skip-live-checks`): no service.", ""]
        if self.error is not None:
            lines += [f"**Error** `{self.error.code.value}`: {self.error.message}", ""]
        if self.gates is not None:
            lines += ["| gate | result | observed | threshold | detail |", "|---|---|---|---|---|"]
            for r in self.gates.results:
                result = icon["pass"] if r.passed else icon["fail"]
                lines.append(
                    f"| {r.gate} | {result} | {r.observed} | {r.threshold} | {_cell(r.message)} |"
                )
            lines.append("")
        lines += ["| step | result | detail |", "|---|---|---|"]
        lines += [f"| {s.name} | {icon[s.outcome]} | {_cell(s.detail)} |" for s in self.steps]
        return "\n".join(lines) + "\n"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


class _Run:
    """One promotion in progress: records and audits each step."""

    def __init__(self, settings: Settings, report: PromotionReport, reason: str) -> None:
        self.settings = settings
        self.report = report
        self.reason = reason
        self.registry = Registry(settings)
        self._audit = AuditLog(settings.audit_log_path)

    def step(self, name: str, outcome: StepOutcome, detail: str, **data: Any) -> Step:
        recorded = Step(name, outcome, detail, data)
        self.report.steps.append(recorded)
        self._audit.append(
            self.settings.actor,
            f"promotion.{name}",
            f"{self.report.model}/{self.report.version}",
            _AUDIT_OUTCOME[outcome],
            details={"detail": detail, "reason": self.reason, **_plain(data)},
        )
        return recorded

    def check(self, name: str, result: CheckResult) -> bool:
        self.step(name, "pass" if result.passed else "fail", result.detail, **result.data)
        return result.passed


def promote_version(
    settings: Settings,
    model: str,
    version: str,
    *,
    checker: LiveChecker | None,
    options: PromotionOptions | None = None,
) -> PromotionReport:
    """Promote ``version`` of ``model`` from candidate to production (see the module doc).

    Never raises for an expected failure: the report's ``error`` holds it (NOT_FOUND or
    MODEL_NOT_FOUND unknown model/version, INVALID_INPUT bad version id, PROMOTION_REJECTED
    not the candidate or failed gates, CONFLICT already production, UNAVAILABLE service
    unreachable, QUALITY_GATE failed live check), and ``status`` names the outcome.
    """
    options = options or PromotionOptions()
    url = None if checker is None else checker.url
    report = PromotionReport(model, version, live_checks=checker is not None, url=url)
    run = _Run(settings, report, options.reason)
    try:
        _promote(run, checker, options)
    except VigieError as err:
        report.error = err
        if report.status == "running":
            report.status = "failed"
    return report


def _promote(run: _Run, checker: LiveChecker | None, options: PromotionOptions) -> None:
    report = run.report
    report.version = _validate(run)
    if checker is not None and (reason := checker.unreachable()) is not None:
        run.step("service", "fail", f"{reason}; pass --skip-live-checks to promote without it")
        report.status = "refused_service_unreachable"
        raise VigieError(ErrorCode.UNAVAILABLE, reason, url=checker.url)
    report.gates = assess(run.settings, report.model, report.version)
    failed = [r.gate for r in report.gates.failed]
    run.step(
        "gates",
        "fail" if failed else "pass",
        f"failed: {', '.join(failed)}" if failed else f"{len(report.gates.results)} gate(s) pass",
        failed=failed,
    )
    if failed:
        report.status = "gates_failed"
        raise VigieError(
            ErrorCode.PROMOTION_REJECTED,
            f"{report.model} version {report.version} failed {len(failed)} gate(s): "
            + "; ".join(r.message for r in report.gates.failed),
            failed_gates=failed,
        )
    _to_staging(run, report.gates, options)
    if checker is None:
        for name in ("smoke-staging", "load-canary", "reload", "smoke-production"):
            run.step(name, "skipped", "skipped: --skip-live-checks (no service checked)")
        _to_production(run, report.gates, options)
        report.status = "promoted_without_live_checks"
        return
    sample, bounds = _sample(run), _bounds(run)
    if not _pre_production_checks(run, checker, options, sample, bounds):
        report.status = "live_check_failed_before_production"
        raise VigieError(
            ErrorCode.QUALITY_GATE,
            f"{report.model} version {report.version} failed a live check in staging; "
            "production was not touched",
        )
    _to_production(run, report.gates, options)
    if _post_production_checks(run, checker, options, sample, bounds):
        report.status = "promoted"
        return
    _roll_back(run, checker, options, sample)


def _validate(run: _Run) -> str:
    """The version id, once known to be the candidate and not production."""
    report, registry = run.report, run.registry
    try:
        try:
            registry.versions(report.model)
        except VigieError as err:
            if err.code != ErrorCode.NOT_FOUND:
                raise
            raise VigieError(ErrorCode.MODEL_NOT_FOUND, err.message, model=report.model) from err
        resolved = registry.resolve(report.model, report.version)
        aliases = registry.aliases(report.model)
        if aliases.get(Alias.PRODUCTION.value) == resolved:
            report.status = "refused_already_production"
            raise VigieError(
                ErrorCode.CONFLICT,
                f"{report.model} version {resolved} is already production: nothing to promote",
                model=report.model,
                version=resolved,
            )
        candidate = aliases.get(Alias.CANDIDATE.value)
        if candidate != resolved:
            report.status = "refused_not_candidate"
            raise VigieError(
                ErrorCode.PROMOTION_REJECTED,
                f"{report.model} version {resolved} is not the candidate "
                f"(the candidate is {candidate or 'unset'}): only the candidate is promoted",
                model=report.model,
                version=resolved,
                candidate=candidate,
            )
    except VigieError as err:
        if report.status == "running":
            invalid = err.code == ErrorCode.INVALID_INPUT
            report.status = "refused_invalid_input" if invalid else "refused_unknown"
        run.step("validate", "fail", err.message, code=err.code.value)
        raise
    run.step("validate", "pass", f"version {resolved} is the candidate", aliases=aliases)
    return resolved


def _to_staging(run: _Run, gates: GateReport, options: PromotionOptions) -> None:
    report = run.report
    if run.registry.aliases(report.model).get(Alias.STAGING.value) == report.version:
        run.step("staging", "pass", f"version {report.version} is already staging")
        return
    try:
        change = promote(run.settings, report.model, gates, to="staging", reason=options.reason)
    except VigieError as err:
        run.step("staging", "fail", err.message, code=err.code.value)
        raise
    run.step("staging", "pass", f"staging {change.from_version or '-'} -> {change.to_version}")


def _to_production(run: _Run, gates: GateReport, options: PromotionOptions) -> None:
    report = run.report
    try:
        change = promote(run.settings, report.model, gates, to="production", reason=options.reason)
    except VigieError as err:
        run.step("production", "fail", err.message, code=err.code.value)
        raise
    run.step(
        "production",
        "pass",
        f"production {change.from_version or '-'} -> {change.to_version}",
        previous=change.from_version,
    )


def _pre_production_checks(
    run: _Run,
    checker: LiveChecker,
    options: PromotionOptions,
    sample: pd.DataFrame,
    bounds: tuple[float, float],
) -> bool:
    model, version = run.report.model, run.report.version
    smoke = checker.smoke(
        model,
        version,
        sample,
        requests=options.smoke_requests,
        expect_version=version,
        bounds=bounds,
    )
    if not run.check("smoke-staging", smoke):
        return False
    load = checker.load(model, sample, limits=options.load, staging_version=version)
    return run.check("load-canary", load)


def _post_production_checks(
    run: _Run,
    checker: LiveChecker,
    options: PromotionOptions,
    sample: pd.DataFrame,
    bounds: tuple[float, float],
) -> bool:
    model, version = run.report.model, run.report.version
    reload = checker.wait_for(model, version, sample, timeout_s=options.reload_timeout_s)
    if not run.check("reload", reload):
        return False
    smoke = checker.smoke(
        model,
        None,
        sample,
        requests=options.smoke_requests,
        expect_version=version,
        bounds=bounds,
    )
    return run.check("smoke-production", smoke)


def _roll_back(
    run: _Run, checker: LiveChecker, options: PromotionOptions, sample: pd.DataFrame
) -> None:
    report = run.report
    reason = f"automatic rollback: a post-promotion check of version {report.version} failed"
    try:
        change = run.registry.rollback(report.model, reason=f"{reason} ({options.reason})")
    except VigieError as err:
        run.step("rollback", "fail", f"rollback impossible: {err.message}", code=err.code.value)
        report.status = "live_check_failed_rollback_impossible"
        raise VigieError(ErrorCode.QUALITY_GATE, f"{reason}; {err.message}") from err
    run.step("rollback", "pass", f"production {change.from_version} -> {change.to_version}")
    run.check(
        "reload-after-rollback",
        checker.wait_for(
            report.model, change.to_version, sample, timeout_s=options.reload_timeout_s
        ),
    )
    report.status = "rolled_back"
    raise VigieError(
        ErrorCode.QUALITY_GATE,
        f"{reason}; production is back on version {change.to_version}",
        rolled_back_to=change.to_version,
    )


def _sample(run: _Run) -> pd.DataFrame:
    """Real flights for the live checks: the version's reference sample (training rows)."""
    path = run.registry.open_artifact(
        run.report.model, run.report.version, "reference_sample.parquet"
    )
    return pd.read_parquet(path)


def _bounds(run: _Run) -> tuple[float, float]:
    spec = run.registry.open_artifact(run.report.model, run.report.version, "spec.yaml")
    task = (yaml.safe_load(spec.read_text()) or {}).get("task")
    return (0.0, 1.0) if task == "classification" else REGRESSION_BOUNDS


def _plain(data: dict[str, Any]) -> dict[str, Any]:
    return dict(json.loads(json.dumps(data, default=str)))
