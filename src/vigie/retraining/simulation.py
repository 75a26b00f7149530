"""The closed loop over a year, month by month, against a model that is never retrained.

:func:`run_simulation` starts from the production version (or trains and promotes one on the
months before the first simulated month), then for each month: replays it through the
running service, lets the drift sidecar analyse it, runs the retraining job as of the
month's last day (drift requests when the sidecar emitted any, else the monthly schedule),
and promotes the candidate through its gates and live checks. The transport-side steps
(replay, sidecar, reading what was served) are a :class:`LoopHooks` given by the caller:
this layer imports neither serving nor monitoring.

Each month is scored twice: the *static* model (the starting version, never retrained) on
the month's labelled flights from its ONNX (:func:`metrics_on_window`), and the *closed
loop* from the predictions the service actually served that month joined with their
delayed labels (:func:`served_roc_auc`). :class:`SimulationReport` renders the table and the
plot of ``docs/closed-loop.md``.
"""

from __future__ import annotations

import calendar
import json
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from sklearn.metrics import roc_auc_score

from vigie.config import Settings
from vigie.errors import ErrorCode, VigieError
from vigie.registry import Alias, Registry
from vigie.retraining.job import RetrainOptions, RunStatus, retrain
from vigie.retraining.lifecycle import assess, metrics_on_window, promote, train_and_register
from vigie.retraining.live_checks import LiveChecker, LoadLimits
from vigie.retraining.promotion import PromotionOptions, promote_version
from vigie.training.spec import Window, load_spec

#: The goal: mean ROC AUC of the closed loop over the simulated months, with requests that
#: carry only what an application knows (the service fills the rest; docs/features.md).
GOAL_ROC_AUC = 0.76
#: Arrival delay (minutes) above which a flight counts as late (the model's label).
LATE_MINUTES = 15.0

Say = Callable[[str], None]


@dataclass(frozen=True)
class ServedMonth:
    """What the service answered during one month's replay, joined with the labels.

    Attributes:
        scores: Served probability of each labelled row.
        labels: 1.0 when the flight arrived more than 15 minutes late, else 0.0.
        rows: Rows served (labelled or not).
        versions: Rows served by each model version.
    """

    scores: Sequence[float]
    labels: Sequence[float]
    rows: int
    versions: Mapping[str, int]


@dataclass(frozen=True)
class DriftMonth:
    """What the drift sidecar found in one month's windows.

    Attributes:
        windows: Windows analysed.
        drifted: Windows with dataset drift.
        share: Mean share of drifted features over those windows (None: no window).
        requests: Retraining requests the sidecar emitted.
        errors: Sidecar steps that failed after writing their window's result.
    """

    windows: int
    drifted: int
    share: float | None
    requests: int
    errors: int = 0


class LoopHooks(Protocol):
    """The transport-side steps of the loop (given by the command)."""

    def replay(self, first: date, last: date) -> None:
        """Replay the flights departing ``first``..``last`` through the running service."""

    def served(self) -> ServedMonth:
        """What the service answered during the last replay, with the labels."""

    def analyse(self) -> DriftMonth:
        """Let the sidecar analyse what is new (closing the open windows)."""

    def checker(self) -> LiveChecker | None:
        """The live checker of promotions (None: gates only)."""


@dataclass(frozen=True)
class SimulationOptions:
    """What to simulate.

    Attributes:
        model: The classifier (ROC AUC is its metric).
        year: The year of the data.
        from_month: First month replayed (the start model trains on the months before).
        to_month: Last month replayed.
        days: Replay only the first ``days`` days of each month (a short check).
        seed: Training seed of the start model (None: settings).
        client_fields: What the replayed requests carry: ``schedule`` (what an application
            knows; the service fills the rest) or ``full`` (every model input).
    """

    model: str = "flight_delay"
    year: int = 2013
    from_month: int = 3
    to_month: int = 12
    days: int | None = None
    seed: int | None = None
    client_fields: str = "schedule"

    def months(self) -> list[tuple[date, date]]:
        """First and last replayed day of each month.

        Raises:
            VigieError: INVALID_INPUT for months out of order or without training months.
        """
        if not 2 <= self.from_month <= self.to_month <= 12:
            raise VigieError(
                ErrorCode.INVALID_INPUT,
                f"months {self.from_month}..{self.to_month}: expected 2 <= from <= to <= 12 "
                "(the start model trains on the months before the first one)",
                field="from_month",
            )
        if self.days is not None and self.days < 1:
            raise VigieError(ErrorCode.INVALID_INPUT, "--days must be at least 1", field="days")
        return [
            month_window(self.year, m, self.days) for m in range(self.from_month, self.to_month + 1)
        ]


def month_window(year: int, month: int, days: int | None = None) -> tuple[date, date]:
    """The first day of a month and its last day (or day ``days``, if earlier)."""
    last = calendar.monthrange(year, month)[1]
    return date(year, month, 1), date(year, month, min(last, days or last))


def month_end(day: date) -> date:
    """The last day of ``day``'s month."""
    return date(day.year, day.month, calendar.monthrange(day.year, day.month)[1])


def served_roc_auc(scores: Sequence[float], labels: Sequence[float]) -> float | None:
    """ROC AUC of served scores against labels; None without both classes."""
    y = np.asarray(labels, dtype=np.float64)
    p = np.asarray(scores, dtype=np.float64)
    if y.size == 0 or y.size != p.size or np.unique(y).size < 2:
        return None
    return float(roc_auc_score(y, p))


@dataclass
class MonthResult:
    """One simulated month.

    Attributes:
        month: ``YYYY-MM``.
        first: First replayed day.
        last: Last replayed day.
        static_auc: ROC AUC of the never-retrained start version on the month.
        loop_auc: ROC AUC of what the service served during the month.
        served_rows: Rows served.
        labelled_rows: Served rows whose label arrived.
        versions: Rows served by each version.
        drift: What the sidecar found.
        retraining: What the end-of-month retraining did, and why.
        promotion: What the promotion of its candidate did (refusals with their reason).
        production_after: The production version serving the next month.
    """

    month: str
    first: date
    last: date
    static_auc: float | None
    loop_auc: float | None
    served_rows: int
    labelled_rows: int
    versions: dict[str, int]
    drift: DriftMonth
    retraining: str = "-"
    promotion: str = "-"
    production_after: str | None = None


@dataclass
class SimulationReport:
    """The whole run: months, start version, wall time."""

    model: str
    year: int
    start_version: str
    start_note: str
    months: list[MonthResult] = field(default_factory=list)
    wall_s: float = 0.0
    days: int | None = None
    window_note: str = ""
    client_fields: str = "full"  # reports written before the option carried every input

    def mean(self, attribute: str) -> float | None:
        """Mean of ``static_auc`` or ``loop_auc`` over the months that have it."""
        values = [getattr(m, attribute) for m in self.months]
        found = [v for v in values if v is not None and not math.isnan(v)]
        return float(np.mean(found)) if found else None

    def to_json(self) -> dict[str, Any]:
        """JSON-ready."""
        return json.loads(json.dumps(asdict(self), default=str))  # type: ignore[no-any-return]

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> SimulationReport:
        """The report :meth:`to_json` wrote (to render the page again)."""
        months = [
            MonthResult(
                **{
                    **m,
                    "first": date.fromisoformat(m["first"]),
                    "last": date.fromisoformat(m["last"]),
                    "drift": DriftMonth(**m["drift"]),
                }
            )
            for m in data["months"]
        ]
        fields = {k: v for k, v in data.items() if k != "months"}
        return cls(**fields, months=months)

    def markdown(self, plot_name: str = "closed-loop.png") -> str:
        """The report page: setting, per-month table, means, goal, wall time."""
        static, loop = self.mean("static_auc"), self.mean("loop_auc")
        span = f"{self.months[0].month} to {self.months[-1].month}" if self.months else "-"
        short = f" (first {self.days} days of each month only)" if self.days else ""
        lines = [
            f"# Closed loop over {self.year}: `{self.model}`",
            "",
            "Written by `vigie simulate`. Each month is replayed through the running service "
            "(`vigie serve`, payload log and delayed outcomes), analysed by the drift sidecar, "
            "then the retraining job runs as of the month's last day (drift requests when the "
            "sidecar emitted any, else the monthly schedule) and its candidate goes through the "
            "promotion gates and live checks; the service hot-reloads before the next month.",
            "",
            f"- months: {span}{short}",
            f"- start version: {self.start_version} ({self.start_note})",
            "- static: the start version, never retrained, scored offline from its ONNX on the "
            "month's labelled flights",
            "- closed loop: the predictions the service served during the month, joined with "
            "their labels",
            f"- wall time: {self.wall_s / 60:.1f} min ({self.wall_s:.0f} s), from the start of "
            "the command (service start-up, replays, sidecar, retraining, promotions)",
            f"- retraining windows (`docs/retraining.md`): {self.window_note or '-'}",
            "- requests: "
            + (
                "schedule-only (carrier, flight number, origin, dest, scheduled departure; "
                "the service filled every other input from its online store, fed by the "
                "feature processor from the replayed flight and weather events)"
                if self.client_fields == "schedule"
                else "every model input, computed from the warehouse by the snapshots' code"
            ),
            "",
            "| month | ROC AUC static | ROC AUC closed loop | served (labelled) | "
            "drift share (drifted windows) | served by | retraining | promotion |",
            "|---|---|---|---|---|---|---|---|",
        ]
        lines += [_row(m) for m in self.months]
        lines += [
            "",
            f"**Mean ROC AUC**: static {_fmt(static)}, closed loop {_fmt(loop)} "
            f"(goal of the closed loop: >= {GOAL_ROC_AUC:.2f}; "
            f"{_verdict(loop)}).",
            "",
            f"![ROC AUC per month]({plot_name})",
            "",
        ]
        return "\n".join(lines)

    def plot(self, path: Path) -> None:
        """Both ROC AUC curves per month, as a PNG (matplotlib, Agg backend)."""
        import matplotlib  # noqa: PLC0415 (heavy; only when a report is written)

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt  # noqa: PLC0415

        names = [m.month for m in self.months]
        figure, axes = plt.subplots(figsize=(8, 4.5))
        for attribute, label, marker in (
            ("static_auc", "static (start version)", "o"),
            ("loop_auc", "closed loop (served)", "s"),
        ):
            values = [
                np.nan if getattr(m, attribute) is None else getattr(m, attribute)
                for m in self.months
            ]
            axes.plot(names, values, marker=marker, label=label)
        axes.axhline(GOAL_ROC_AUC, color="grey", linestyle="--", linewidth=1, label="goal")
        axes.set_ylabel("ROC AUC")
        axes.set_title(f"{self.model}: ROC AUC per month, {self.year}")
        axes.grid(alpha=0.3)
        axes.legend()
        figure.autofmt_xdate()
        figure.tight_layout()
        path.parent.mkdir(parents=True, exist_ok=True)
        figure.savefig(path, dpi=100)
        plt.close(figure)


def _fmt(value: float | None) -> str:
    return "-" if value is None or math.isnan(value) else f"{value:.3f}"


def _verdict(loop: float | None) -> str:
    if loop is None:
        return "not measured"
    return "reached" if loop >= GOAL_ROC_AUC else "not reached"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _row(m: MonthResult) -> str:
    drift = (
        "-"
        if m.drift.share is None
        else f"{m.drift.share:.2f} ({m.drift.drifted}/{m.drift.windows})"
    )
    if m.drift.requests:
        drift += f", {m.drift.requests} request(s)"
    if m.drift.errors:
        drift += f", {m.drift.errors} sidecar error(s)"
    served_by = ", ".join(f"v{v} ({n})" for v, n in sorted(m.versions.items())) or "-"
    return (
        f"| {m.month} | {_fmt(m.static_auc)} | {_fmt(m.loop_auc)} | "
        f"{m.served_rows} ({m.labelled_rows}) | {drift} | {served_by} | "
        f"{_cell(m.retraining)} | {_cell(m.promotion)} |"
    )


def report_stem(client_fields: str) -> str:
    """The file name (no suffix) of a run's report: ``closed-loop`` for schedule-only
    requests (what applications send), ``closed-loop-full`` for fully populated ones."""
    return "closed-loop" if client_fields == "schedule" else "closed-loop-full"


def write_report(report: SimulationReport, folder: Path) -> tuple[Path, Path]:
    """Write the page, plot and JSON of ``report`` under ``folder`` (named by
    :func:`report_stem`), the page linking to the run of the other request kind."""
    folder.mkdir(parents=True, exist_ok=True)
    stem = report_stem(report.client_fields)
    page, image = folder / f"{stem}.md", folder / f"{stem}.png"
    report.plot(image)
    other = report_stem("full" if report.client_fields == "schedule" else "schedule")
    text = report.markdown(image.name)
    if (folder / f"{other}.json").exists():
        other_report = SimulationReport.from_json(
            json.loads((folder / f"{other}.json").read_text())
        )
        text += _comparison(report, other_report, f"{other}.md")
    page.write_text(text)
    (folder / f"{stem}.json").write_text(json.dumps(report.to_json(), indent=2) + "\n")
    return page, image


def _comparison(report: SimulationReport, other: SimulationReport, link: str) -> str:
    """A table of both request kinds' means, month by month."""
    kinds = {r.client_fields: r for r in (report, other)}
    if set(kinds) != {"schedule", "full"}:
        return ""
    schedule, full = kinds["schedule"], kinds["full"]
    full_by_month = {m.month: m for m in full.months}
    lines = [
        "",
        f"## Both request kinds (the other run: [{link}]({link}))",
        "",
        "| month | closed loop, schedule-only requests | closed loop, full requests |",
        "|---|---|---|",
    ]
    for month in schedule.months:
        twin = full_by_month.get(month.month)
        lines.append(
            f"| {month.month} | {_fmt(month.loop_auc)} | {_fmt(twin.loop_auc if twin else None)} |"
        )
    lines.append(f"| mean | {_fmt(schedule.mean('loop_auc'))} | {_fmt(full.mean('loop_auc'))} |")
    return "\n".join(lines) + "\n"


def start_version(settings: Settings, options: SimulationOptions, say: Say) -> tuple[str, str]:
    """The production version, or a version trained on the months before and promoted.

    Raises:
        VigieError: PROMOTION_REJECTED when a freshly trained start version fails its gates.
    """
    registry = Registry(settings)
    aliases = registry.aliases(options.model) if options.model in registry.models() else {}
    production = aliases.get(Alias.PRODUCTION.value)
    if production is not None:
        return production, "the production version at start"
    window = (date(options.year, 1, 1), date(options.year, options.from_month, 1) - timedelta(1))
    say(f"no production version: training {options.model} on {window[0]}..{window[1]}")
    forward = month_window(options.year, options.from_month)
    done = train_and_register(
        settings,
        options.model,
        window,
        evaluation_window=forward,
        seed=settings.seed if options.seed is None else options.seed,
        reason="vigie simulate: start version",
    )
    version = done.version.version
    report = assess(settings, options.model, version)
    promote(settings, options.model, report, to="production", reason="vigie simulate: start")
    return version, f"trained on {window[0]}..{window[1]} and promoted through its gates"


def run_simulation(
    settings: Settings,
    options: SimulationOptions,
    hooks: LoopHooks,
    say: Say,
    *,
    start: tuple[str, str],
    began: float | None = None,
) -> SimulationReport:
    """Run the closed loop (see the module docstring) and return its report.

    Args:
        settings: The settings (home, registry, warehouse).
        options: What to simulate.
        hooks: Replay, served predictions, sidecar, live checker.
        say: Prints a progress line.
        start: The start version and how it was chosen (:func:`start_version`).
        began: ``time.monotonic()`` when the run began (wall time), default now.
    """
    began = time.monotonic() if began is None else began
    months = options.months()
    static, note = start
    report = SimulationReport(
        options.model,
        options.year,
        static,
        note,
        days=options.days,
        window_note=window_note(load_spec(settings.models_dir, options.model).window),
        client_fields=options.client_fields,
    )
    for index, (first, last) in enumerate(months):
        say(f"{first:%Y-%m}: replaying {first}..{last}")
        hooks.replay(first, last)
        served = hooks.served()
        drift = hooks.analyse()
        result = MonthResult(
            month=f"{first:%Y-%m}",
            first=first,
            last=last,
            static_auc=_static_auc(settings, options.model, static, (first, last)),
            loop_auc=served_roc_auc(served.scores, served.labels),
            served_rows=served.rows,
            labelled_rows=len(served.labels),
            versions=dict(served.versions),
            drift=drift,
        )
        if index < len(months) - 1:  # after the last month, nothing is left to serve
            _retrain_and_promote(settings, options, hooks, result, say)
        else:
            result.production_after = _production(settings, options.model)
        report.months.append(result)
        say(
            f"{result.month}: static {_fmt(result.static_auc)}, loop {_fmt(result.loop_auc)}; "
            f"{result.retraining}; {result.promotion}"
        )
    report.wall_s = time.monotonic() - began
    return report


def _static_auc(
    settings: Settings, model: str, version: str, window: tuple[date, date]
) -> float | None:
    value = metrics_on_window(settings, Registry(settings), model, version, window).get("roc_auc")
    return None if value is None or math.isnan(value) else float(value)


def _retrain_and_promote(
    settings: Settings,
    options: SimulationOptions,
    hooks: LoopHooks,
    result: MonthResult,
    say: Say,
) -> None:
    """End of the month: retraining job, then promotion of its candidate."""
    as_of = month_end(result.first)
    drift = result.drift.requests > 0
    run_options = RetrainOptions(
        model=options.model, as_of=as_of, from_requests=drift, if_due=not drift
    )
    why = "drift requests" if drift else "monthly schedule"
    try:
        run = retrain(settings, run_options)
    except VigieError as err:
        result.retraining = f"{why}: failed ({err.code.value}: {err.message})"
        result.production_after = _production(settings, options.model)
        return
    trained = run.status is RunStatus.TRAINED and run.version is not None
    result.retraining = f"{why}: {run.status.value}" + (
        f" v{run.version} ({_metric(run.lineage)})" if trained else f" ({run.message})"
    )
    if trained and run.version is not None:
        say(f"{result.month}: promoting candidate v{run.version}")
        result.promotion = _promote(settings, options.model, run.version, hooks.checker())
    result.production_after = _production(settings, options.model)


def _metric(lineage: Mapping[str, Any]) -> str:
    challenger = (lineage.get("challenger") or {}).get("metrics") or {}
    champion = ((lineage.get("evaluation") or {}).get("champion") or {}).get("metrics") or {}
    mine, theirs = challenger.get("roc_auc"), champion.get("roc_auc")
    text = f"roc_auc {_fmt(mine)}"
    return text + (f" vs champion {_fmt(theirs)}" if theirs is not None else "")


def _promote(settings: Settings, model: str, version: str, checker: LiveChecker | None) -> str:
    # a short load test: its rows go to the payload log and the sidecar like real traffic
    options = PromotionOptions(
        smoke_requests=3,
        load=LoadLimits(seconds=2.0, concurrency=2),
        reload_timeout_s=120.0,
        reason="vigie simulate: monthly candidate",
    )
    report = promote_version(settings, model, version, checker=checker, options=options)
    if report.error is None:
        return f"promoted v{version} ({report.status})"
    return f"refused v{version} ({report.status}: {report.error.message})"


def _production(settings: Settings, model: str) -> str | None:
    return Registry(settings).aliases(model).get(Alias.PRODUCTION.value)


def window_note(window: Window) -> str:
    """How a monthly run's windows fall, in words, from the spec's window policy."""
    held = (
        f"the last {window.evaluation_days} days of month M"
        if window.evaluation_days
        else "month M"
    )
    if window.policy == "sliding":
        return (
            f"a run as of the last day of month M evaluates on {held} and trains on the "
            f"{window.months} months before that (sliding)"
        )
    return (
        f"a run as of the last day of month M evaluates on {held} and trains on every labelled "
        "day before that (expanding)"
    )
