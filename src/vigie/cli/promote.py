"""``vigie promote MODEL VERSION``: candidate to production, checked live, rolled back on failure.

The logic is :func:`vigie.retraining.promotion.promote_version`; this module builds the live
checker, prints each step as a table and writes the JSON report and the CI job summary.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from vigie.cli.common import authorized, guarded, out
from vigie.retraining.live_checks import HttpLiveChecker, LoadLimits
from vigie.serving.client import local_predict_key

if TYPE_CHECKING:
    from vigie.retraining.promotion import PromotionReport

_STYLE = {"pass": "[green]pass[/]", "fail": "[red]FAIL[/]", "skipped": "[yellow]skipped[/]"}


@guarded
def promote(
    model: Annotated[str, typer.Argument(help="Model name, e.g. flight_delay.")],
    version: Annotated[str, typer.Argument(help="The candidate's version id (or 'candidate').")],
    url: Annotated[str, typer.Option(help="The running service (REST).")] = (
        "http://127.0.0.1:3000"
    ),
    key: Annotated[
        str | None,
        typer.Option(
            envvar="VIGIE_PREDICT_KEY",
            help="API key with the predict role (default: the local generated one).",
        ),
    ] = None,
    smoke_requests: Annotated[int, typer.Option(min=1, help="Requests per smoke test.")] = 5,
    load_seconds: Annotated[float, typer.Option(min=0.5, max=120, help="Load test length.")] = 5.0,
    concurrency: Annotated[int, typer.Option(min=1, max=64, help="Load test threads.")] = 4,
    max_error_ratio: Annotated[float, typer.Option(min=0, max=1)] = 0.01,
    max_p99_ms: Annotated[float, typer.Option(min=1, help="Load test p99 bound (ms).")] = 1000.0,
    reload_timeout: Annotated[
        float, typer.Option(min=1, help="Seconds the service may take to serve the new version.")
    ] = 60.0,
    skip_live_checks: Annotated[
        bool, typer.Option(help="No service to check (CI): promote on the gates alone.")
    ] = False,
    report: Annotated[Path | None, typer.Option(help="Write the JSON report here.")] = None,
    summary: Annotated[
        Path | None,
        typer.Option(envvar="GITHUB_STEP_SUMMARY", help="Append a Markdown summary here."),
    ] = None,
    reason: Annotated[str, typer.Option(help="Why, for the audit log.")] = "vigie promote",
) -> None:
    """Promote a candidate: gates, staging, live smoke and load checks, production, rollback."""
    from vigie.retraining.promotion import PromotionOptions, promote_version  # noqa: PLC0415 (the train extra, imported when used)

    settings = authorized("registry.promote")
    checker = None
    if not skip_live_checks:
        checker = HttpLiveChecker(url, key or local_predict_key(settings))
    options = PromotionOptions(
        smoke_requests=smoke_requests,
        load=LoadLimits(
            seconds=load_seconds,
            concurrency=concurrency,
            max_error_ratio=max_error_ratio,
            max_p99_ms=max_p99_ms,
        ),
        reload_timeout_s=reload_timeout,
        reason=reason,
    )
    result = promote_version(settings, model, version, checker=checker, options=options)
    _print(result)
    if report is not None:
        report.parent.mkdir(parents=True, exist_ok=True)
        report.write_text(result.to_json())
    if summary is not None:
        with summary.open("a") as handle:
            handle.write(result.markdown())
    if result.error is not None:
        raise result.error


def _print(result: PromotionReport) -> None:
    if result.gates is not None:
        gates = Table(title=f"gates of {result.model} version {result.version}")
        for column in ("gate", "result", "detail"):
            gates.add_column(column)
        for r in result.gates.results:
            gates.add_row(r.gate, _STYLE["pass" if r.passed else "fail"], r.message)
        out.print(gates)
    live = "live checks against " + str(result.url) if result.live_checks else "NO live checks"
    table = Table(title=f"promotion of {result.model} version {result.version} ({live})")
    for column in ("step", "result", "detail"):
        table.add_column(column)
    for step in result.steps:
        table.add_row(step.name, _STYLE[step.outcome], step.detail)
    out.print(table)
    out.print(f"status: {result.status}")
