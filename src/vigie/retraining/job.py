"""The retraining job: fresh window -> expectations -> challenger vs champion -> candidate.

One run of :func:`retrain`, under the model's exclusive lock:

1. plans the windows from ``as_of`` (default: the latest labelled flight) and the spec's
   window policy (:mod:`vigie.retraining.windows`);
2. checks its trigger: ``--if-due`` (schedule) or ``--from-requests`` (drift) may find
   nothing to do (:mod:`vigie.retraining.triggers`);
3. builds the training snapshot and runs the data expectations on it
   (:mod:`vigie.retraining.quality`); a failure stops the run with DATA_QUALITY;
4. registers nothing when the snapshot's content hash is the latest version's;
5. scores the champion (alias ``production``) on the evaluation window, trains the
   challenger and registers it as ``candidate`` with its lineage under ``retraining``;
6. only then, for a drift run, appends the request log checkpoint.

Every run, whatever its end, goes to the audit log (``retraining.run``). A run killed
midway registers nothing (the registry publishes a version whole or not at all) and
leaves the checkpoint where it was, so its requests are served by the next run.
"""

from __future__ import annotations

import enum
import secrets
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

from vigie.config import Settings
from vigie.errors import ErrorCode, VigieError
from vigie.events.retraining_requests import RetrainingRequest, read_requests, requests_dir
from vigie.governance.audit import AuditLog, Outcome
from vigie.governance.policy import load_policy
from vigie.registry import Alias, ModelVersion, Registry
from vigie.retraining.lifecycle import metrics_on_window, require_model, train_and_register
from vigie.retraining.quality import DEFAULT_MIN_ROWS, check_snapshot
from vigie.retraining.triggers import (
    DEFAULT_MAX_AGE_DAYS,
    AlreadyRunning,
    coalesce,
    commit_checkpoint,
    exclusive_run,
    last_checkpoint,
    schedule_due,
)
from vigie.retraining.windows import RetrainWindows, plan_windows
from vigie.training.snapshot import build_snapshot
from vigie.training.spec import ModelSpec, load_spec
from vigie.training.train import Progress
from vigie.warehouse.connection import connect
from vigie.warehouse.migrations import migrate

#: Why a run may be started.
REASONS = ("schedule", "drift", "manual")
#: The audit action of every run.
ACTION = "retraining.run"


class RunStatus(enum.StrEnum):
    """How a run that did not fail ended."""

    TRAINED = "trained"
    UNCHANGED = "unchanged"
    NOT_DUE = "not_due"
    NO_REQUESTS = "no_requests"


@dataclass(frozen=True)
class RetrainOptions:
    """What a run is asked to do (the command's options).

    Attributes:
        model: The model to retrain.
        reason: ``schedule``, ``drift`` or ``manual``; default from the trigger flags.
        as_of: Last labelled day to use; default the latest one in the warehouse.
        if_due: Run only if the schedule says so.
        from_requests: Run only if the drift sidecar requested it (consumes the requests).
        max_age_days: Schedule: age of the champion's data that makes a run due.
        evaluation_days: Length of the evaluation window; default one month.
        min_rows: Fewest rows of the training snapshot.
        seed: Training seed; default ``Settings.seed``.
    """

    model: str
    reason: str | None = None
    as_of: date | None = None
    if_due: bool = False
    from_requests: bool = False
    max_age_days: int = DEFAULT_MAX_AGE_DAYS
    evaluation_days: int | None = None
    min_rows: int = DEFAULT_MIN_ROWS
    seed: int | None = None

    def trigger(self) -> str:
        """The run's reason, checked against its flags.

        Raises:
            VigieError: INVALID_INPUT for an unknown reason or contradicting flags.
        """
        if self.if_due and self.from_requests:
            raise VigieError(
                ErrorCode.INVALID_INPUT, "--if-due and --from-requests are separate triggers"
            )
        implied = "schedule" if self.if_due else "drift" if self.from_requests else None
        reason = self.reason or implied or "manual"
        if reason not in REASONS:
            raise VigieError(
                ErrorCode.INVALID_INPUT,
                f"--reason {reason!r}: expected one of {', '.join(REASONS)}",
                field="reason",
            )
        if implied is not None and reason != implied:
            raise VigieError(
                ErrorCode.INVALID_INPUT, f"--reason {reason} contradicts the {implied} trigger"
            )
        return reason

    def to_json(self) -> dict[str, Any]:
        """JSON-ready (audit inputs)."""
        return {
            "model": self.model,
            "reason": self.reason,
            "as_of": self.as_of.isoformat() if self.as_of else None,
            "if_due": self.if_due,
            "from_requests": self.from_requests,
            "max_age_days": self.max_age_days,
            "evaluation_days": self.evaluation_days,
            "min_rows": self.min_rows,
            "seed": self.seed,
        }


@dataclass
class RunResult:
    """What a run did."""

    status: RunStatus
    model: str
    run_id: str
    message: str
    trigger: dict[str, Any]
    windows: RetrainWindows | None = None
    snapshot_hash: str | None = None
    version: str | None = None
    lineage: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """JSON-ready (audit details, ``--json``)."""
        return {
            "status": self.status.value,
            "model": self.model,
            "run_id": self.run_id,
            "message": self.message,
            "trigger": self.trigger,
            "windows": self.windows.to_json() if self.windows else None,
            "snapshot_hash": self.snapshot_hash,
            "version": self.version,
            "lineage": self.lineage,
        }


def retrain(
    settings: Settings, options: RetrainOptions, *, progress: Progress | None = None
) -> RunResult:
    """Run the retraining job once for ``options.model`` (see the module docstring).

    Raises:
        AlreadyRunning: Another run of the model holds its lock (audited as refused).
        VigieError: DATA_QUALITY when the snapshot fails its expectations (refused);
            any error of the warehouse, training or registry (failure). All audited.
    """
    require_model(settings, options.model)
    reason = options.trigger()
    run_id = f"retrain-{datetime.now(UTC):%Y%m%dT%H%M%S}-{secrets.token_hex(3)}"
    audit = AuditLog(settings.audit_log_path)
    inputs = {**options.to_json(), "reason": reason, "run_id": run_id}

    def record(outcome: Outcome, details: dict[str, Any]) -> None:
        audit.append(settings.actor, ACTION, options.model, outcome, inputs=inputs, details=details)

    try:
        with exclusive_run(settings, options.model):
            record(Outcome.STARTED, {})
            try:
                result = _run(settings, options, reason, run_id, progress)
            except VigieError as err:
                refused = err.code is ErrorCode.DATA_QUALITY
                record(
                    Outcome.REFUSED if refused else Outcome.FAILURE,
                    {"status": "data_quality" if refused else "failed", "error": err.to_dict()},
                )
                raise
            record(Outcome.SUCCESS, result.to_json())
            return result
    except AlreadyRunning as err:
        record(Outcome.REFUSED, {"status": "busy", "error": err.to_dict()})
        raise


def labelled_range(settings: Settings) -> tuple[date, date]:
    """First and last day with a labelled (arrived) flight in the warehouse.

    Raises:
        VigieError: DATA_QUALITY when there is none.
    """
    warehouse = connect(settings.resolved_warehouse_url, read_only=True)
    try:
        rows = warehouse.query(
            "SELECT min(flight_date), max(flight_date) FROM fact_flight "
            "WHERE flight_status = 'arrived' AND arr_delay_min IS NOT NULL"
        )
    finally:
        warehouse.close()
    if not rows or rows[0][0] is None:
        raise VigieError(
            ErrorCode.DATA_QUALITY, "the warehouse holds no labelled flight; run the pipeline"
        )
    return _day(rows[0][0]), _day(rows[0][1])


def _day(value: Any) -> date:
    return value.date() if isinstance(value, datetime) else date.fromisoformat(str(value)[:10])


@dataclass
class _Context:
    settings: Settings
    options: RetrainOptions
    spec: ModelSpec
    registry: Registry
    windows: RetrainWindows
    champion: str | None
    run_id: str
    trigger: dict[str, Any]
    requests: list[RetrainingRequest] | None = None
    position: str | None = None

    def result(self, status: RunStatus, message: str, **kwargs: Any) -> RunResult:
        return RunResult(
            status,
            self.options.model,
            self.run_id,
            message,
            self.trigger,
            windows=self.windows,
            **kwargs,
        )


def _run(
    settings: Settings,
    options: RetrainOptions,
    reason: str,
    run_id: str,
    progress: Progress | None,
) -> RunResult:
    model = options.model
    spec = load_spec(settings.models_dir, model, policy=load_policy(settings.policy_file))
    earliest, latest = labelled_range(settings)
    as_of = options.as_of or latest
    windows = plan_windows(
        spec.window, as_of, earliest=earliest, evaluation_days=options.evaluation_days
    )
    registry = Registry(settings)
    champion = registry.aliases(model).get(Alias.PRODUCTION.value)
    ctx = _Context(settings, options, spec, registry, windows, champion, run_id, {"reason": reason})
    skipped = _check_trigger(ctx)
    if skipped is not None:
        return skipped
    return _train(ctx, progress)


def _check_trigger(ctx: _Context) -> RunResult | None:
    """A result when the trigger finds nothing to do, else None."""
    if ctx.options.if_due:
        end = _data_end(ctx.registry, ctx.options.model, ctx.champion)
        decision = schedule_due(end, ctx.windows.as_of, ctx.options.max_age_days)
        ctx.trigger["schedule"] = decision.to_json()
        if not decision.due:
            return ctx.result(RunStatus.NOT_DUE, f"not due: {decision.reason}")
    if ctx.options.from_requests:
        ctx.requests, ctx.position = _pending(ctx.settings, ctx.options.model)
        ctx.trigger["drift"] = coalesce(ctx.requests)
        if not ctx.requests:
            return ctx.result(
                RunStatus.NO_REQUESTS, f"no pending retraining request for {ctx.options.model}"
            )
    return None


def _data_end(registry: Registry, model: str, champion: str | None) -> date | None:
    if champion is None:
        return None
    window_to = registry.get(model, champion).extra.get("snapshot", {}).get("window_to")
    return date.fromisoformat(window_to) if window_to else None


def _pending(settings: Settings, model: str) -> tuple[list[RetrainingRequest], str | None]:
    warehouse = connect(settings.resolved_warehouse_url)
    try:
        migrate(warehouse)
        after = last_checkpoint(warehouse, model)
    finally:
        warehouse.close()
    found, position = read_requests(requests_dir(settings), after)
    return [r for r in found if r.model == model], position


def _latest(registry: Registry, model: str) -> ModelVersion | None:
    if model not in registry.models():
        return None
    return max(registry.versions(model), key=lambda v: int(v.version))


def _train(ctx: _Context, progress: Progress | None) -> RunResult:
    settings, model, windows = ctx.settings, ctx.options.model, ctx.windows
    snapshot = build_snapshot(settings, ctx.spec, *windows.training)
    quality = check_snapshot(snapshot.read(), ctx.spec, min_rows=ctx.options.min_rows)
    if not quality.passed:
        raise VigieError(
            ErrorCode.DATA_QUALITY,
            f"the training snapshot of {model} ({windows.training[0]}..{windows.training[1]}) "
            f"fails its expectations: {'; '.join(quality.problems)}",
            quality=quality.to_json(),
            snapshot_hash=snapshot.content_hash,
        )
    latest = _latest(ctx.registry, model)
    if latest is not None and latest.snapshot_hash == snapshot.content_hash:
        _consume(ctx)
        return ctx.result(
            RunStatus.UNCHANGED,
            f"data unchanged since version {latest.version} (snapshot "
            f"{snapshot.content_hash[:12]}): nothing registered",
            snapshot_hash=snapshot.content_hash,
            version=None,
        )
    lineage = _lineage(ctx, snapshot.content_hash, quality.to_json())
    done = train_and_register(
        settings,
        model,
        windows.training,
        evaluation_window=windows.evaluation,
        seed=settings.seed if ctx.options.seed is None else ctx.options.seed,
        reason=f"retraining ({ctx.trigger['reason']}) run {ctx.run_id}",
        progress=progress,
        lineage={"retraining": lineage},
    )
    _consume(ctx)
    lineage["challenger"] = {"version": done.version.version, "metrics": done.version.metrics}
    return ctx.result(
        RunStatus.TRAINED,
        f"registered {model} version {done.version.version} as candidate",
        snapshot_hash=snapshot.content_hash,
        version=done.version.version,
        lineage=lineage,
    )


def _lineage(ctx: _Context, snapshot_hash: str, quality: dict[str, Any]) -> dict[str, Any]:
    """The ``retraining`` metadata of the challenger: trigger, windows, both evaluations."""
    champion_metrics = (
        metrics_on_window(
            ctx.settings, ctx.registry, ctx.options.model, ctx.champion, ctx.windows.evaluation
        )
        if ctx.champion is not None
        else None
    )
    return {
        "run_id": ctx.run_id,
        "trigger": ctx.trigger,
        "windows": ctx.windows.to_json(),
        "snapshot_hash": snapshot_hash,
        "parent_version": ctx.champion,
        "quality": quality,
        "evaluation": {
            "window_from": ctx.windows.evaluation[0].isoformat(),
            "window_to": ctx.windows.evaluation[1].isoformat(),
            "champion": {"version": ctx.champion, "metrics": champion_metrics},
            "challenger": "the version's metrics (same window)",
        },
    }


def _consume(ctx: _Context) -> None:
    """Append the request log checkpoint of a drift run that succeeded."""
    if not ctx.requests or ctx.position is None:
        return
    warehouse = connect(ctx.settings.resolved_warehouse_url)
    try:
        migrate(warehouse)
        commit_checkpoint(warehouse, ctx.options.model, ctx.position, len(ctx.requests), ctx.run_id)
    finally:
        warehouse.close()
