"""Model commands: ``vigie train`` and ``vigie registry list|show|promote|rollback``."""

from __future__ import annotations

import json
from datetime import date
from typing import TYPE_CHECKING, Annotated

import typer
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from vigie.cli.common import authorized, err_console, guarded, out, parse_date
from vigie.cli.common import settings as build_settings
from vigie.errors import ErrorCode, VigieError
from vigie.registry import GateReport, Registry

if TYPE_CHECKING:
    from vigie.training.train import EpochReport

registry_app = typer.Typer(help="The model registry.", no_args_is_help=True)
#: Metrics shown in the registry listing.
HEADLINE_METRICS = ("roc_auc", "pr_auc", "brier", "mae", "rmse")


def _month_after(day: date) -> tuple[date, date]:
    first = date(day.year + (day.month == 12), day.month % 12 + 1, 1)
    following = date(first.year + (first.month == 12), first.month % 12 + 1, 1)
    return first, date.fromordinal(following.toordinal() - 1)


@guarded
def train(
    model: Annotated[str, typer.Option("--model", help="flight_delay or arrival_delay.")],
    date_from: Annotated[str, typer.Option("--from", help="First training day.")] = "2013-01-01",
    date_to: Annotated[str, typer.Option("--to", help="Last training day.")] = "2013-02-28",
    evaluate_on: Annotated[
        str, typer.Option(help="forward: the month after --to; holdout: the window's tail.")
    ] = "forward",
    seed: Annotated[int | None, typer.Option(help="Training seed (default VIGIE_SEED).")] = None,
    reason: Annotated[str, typer.Option(help="Why, for the audit log.")] = "manual",
) -> None:
    """Train a model on a warehouse window, export it to ONNX and register a candidate."""
    from vigie.retraining.lifecycle import require_model, train_and_register  # noqa: PLC0415 (the train extra, imported when used)

    settings = authorized("model.train")
    require_model(settings, model)
    start, end = parse_date(date_from, "--from"), parse_date(date_to, "--to")
    if start is None or end is None or start > end:
        raise VigieError(ErrorCode.INVALID_INPUT, f"--from {date_from} must not be after --to")
    if evaluate_on not in {"forward", "holdout"}:
        raise VigieError(ErrorCode.INVALID_INPUT, "--evaluate-on must be forward or holdout")
    forward = _month_after(end) if evaluate_on == "forward" else None
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TimeElapsedColumn(),
        console=err_console,
        transient=True,
    ) as bar:
        task = bar.add_task(f"training {model}", total=None)

        def on_epoch(report: EpochReport) -> None:
            bar.update(
                task,
                total=report.max_epochs,
                completed=report.epoch,
                description=f"training {model}: epoch {report.epoch} "
                f"val loss {report.validation_loss:.4f} (best {report.best_epoch})",
            )

        done = train_and_register(
            settings,
            model,
            (start, end),
            evaluation_window=forward,
            seed=settings.seed if seed is None else seed,
            reason=reason,
            progress=on_epoch,
        )
    metrics = ", ".join(f"{k} {v:.4f}" for k, v in sorted(done.version.metrics.items()))
    out.print(f"registered {model} version {done.version.version} as candidate: {metrics}")
    out.print(f"model card: {done.bundle.files['model_card_md']}")


@registry_app.command("list")
@guarded
def registry_list() -> None:
    """Every model, its versions, aliases and headline metrics."""
    registry = Registry(build_settings())
    table = Table(title="model registry")
    for column in ("model", "version", "aliases", "created", "snapshot", "metrics"):
        table.add_column(column)
    for model in registry.models():
        by_version: dict[str, list[str]] = {}
        for alias, version in registry.aliases(model).items():
            by_version.setdefault(version, []).append(alias)
        for v in registry.versions(model):
            metrics = ", ".join(
                f"{k}={v.metrics[k]:.3f}" for k in HEADLINE_METRICS if k in v.metrics
            )
            table.add_row(
                model,
                v.version,
                ", ".join(sorted(by_version.get(v.version, []))),
                v.created_at.strftime("%Y-%m-%d %H:%M"),
                v.snapshot_hash[:12],
                metrics,
            )
    out.print(table)


@registry_app.command("show")
@guarded
def registry_show(
    model: Annotated[str, typer.Argument(help="Model name.")],
    ref: Annotated[str, typer.Argument(help="Version id or alias.")] = "production",
) -> None:
    """One version's manifest (files with sha256, metrics, lineage), verified."""
    version = Registry(build_settings()).verify(model, ref)
    out.print_json(json.dumps(version.model_dump(mode="json")))


@registry_app.command("promote")
@guarded
def registry_promote(
    model: Annotated[str, typer.Argument(help="Model name.")],
    version: Annotated[str, typer.Argument(help="Version id or alias (e.g. candidate).")],
    to: Annotated[str, typer.Option(help="staging or production.")] = "production",
    reason: Annotated[str, typer.Option(help="Why, for the audit log.")] = "manual",
) -> None:
    """Run the version's gates and move the alias when they all pass."""
    from vigie.retraining.lifecycle import assess, promote  # noqa: PLC0415 (the train extra, imported when used)

    settings = authorized("registry.promote")
    report = assess(settings, model, version)
    _print_gates(report)
    change = promote(settings, model, report, to=to, reason=reason)
    out.print(f"{model}: {to} {change.from_version or '-'} -> {change.to_version}")


def _fmt(value: float | bool | None) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _print_gates(report: GateReport) -> None:
    table = Table(title=f"gates of {report.model} version {report.version}")
    for column in ("gate", "result", "observed", "threshold", "detail"):
        table.add_column(column)
    for r in report.results:
        table.add_row(
            r.gate,
            "[green]pass[/]" if r.passed else "[red]FAIL[/]",
            _fmt(r.observed),
            _fmt(r.threshold),
            r.message,
        )
    out.print(table)


@registry_app.command("rollback")
@guarded
def registry_rollback(
    model: Annotated[str, typer.Argument(help="Model name.")],
    reason: Annotated[str, typer.Option(help="Why, for the audit log.")] = "manual",
) -> None:
    """Return production to the previous production version."""
    change = Registry(authorized("registry.promote")).rollback(model, reason=reason)
    out.print(f"{model}: production {change.from_version} -> {change.to_version}")
