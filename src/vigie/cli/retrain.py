"""``vigie retrain``: the retraining job (schedule, drift requests or a person)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated

import typer

from vigie.cli.common import authorized, err_console, guarded, out, parse_date
from vigie.retraining.quality import DEFAULT_MIN_ROWS
from vigie.retraining.triggers import DEFAULT_MAX_AGE_DAYS, AlreadyRunning

if TYPE_CHECKING:
    from vigie.training.train import EpochReport

#: Exit status when another retraining of the model holds its lock (sysexits EX_TEMPFAIL:
#: nothing went wrong, the run that holds it does the work).
BUSY_EXIT_CODE = 75


@guarded
def retrain_command(
    model: Annotated[str, typer.Option("--model", help="flight_delay or arrival_delay.")],
    reason: Annotated[
        str | None,
        typer.Option(help="schedule, drift or manual (default from the trigger flags)."),
    ] = None,
    as_of: Annotated[
        str | None, typer.Option("--as-of", help="Last labelled day to use (default: latest).")
    ] = None,
    if_due: Annotated[
        bool, typer.Option("--if-due", help="Run only when the champion's data is too old.")
    ] = False,
    from_requests: Annotated[
        bool,
        typer.Option("--from-requests", help="Run only for pending drift requests (consumed)."),
    ] = False,
    max_age_days: Annotated[
        int, typer.Option(help="--if-due: age of the champion's data that makes a run due.")
    ] = DEFAULT_MAX_AGE_DAYS,
    evaluation_days: Annotated[
        int | None, typer.Option(help="Evaluation window in days (default: one month).")
    ] = None,
    min_rows: Annotated[
        int, typer.Option(help="Fewest rows of the training snapshot.")
    ] = DEFAULT_MIN_ROWS,
    seed: Annotated[int | None, typer.Option(help="Training seed (default VIGIE_SEED).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the run as JSON.")] = False,
) -> None:
    """Retrain a model on a fresh window and register the challenger as candidate."""
    from vigie.retraining.job import RetrainOptions, RunStatus, retrain  # noqa: PLC0415 (the train extra, imported when used)

    settings = authorized("model.train")
    options = RetrainOptions(
        model=model,
        reason=reason,
        as_of=parse_date(as_of, "--as-of"),
        if_due=if_due,
        from_requests=from_requests,
        max_age_days=max_age_days,
        evaluation_days=evaluation_days,
        min_rows=min_rows,
        seed=seed,
    )

    def on_epoch(report: EpochReport) -> None:
        err_console.print(
            f"training {model}: epoch {report.epoch}/{report.max_epochs} "
            f"val loss {report.validation_loss:.4f} (best {report.best_epoch})",
            highlight=False,
        )

    try:
        result = retrain(settings, options, progress=on_epoch)
    except AlreadyRunning as busy:
        err_console.print(busy.message, highlight=False)
        raise typer.Exit(BUSY_EXIT_CODE) from None
    if as_json:
        out.print_json(json.dumps(result.to_json()))
        return
    out.print(f"{model}: {result.status.value}: {result.message}", highlight=False)
    if result.windows is not None and result.status is RunStatus.TRAINED:
        w = result.windows
        out.print(
            f"trained on {w.training[0]}..{w.training[1]} ({w.policy}); "
            f"evaluated on {w.evaluation[0]}..{w.evaluation[1]}",
            highlight=False,
        )
        champion = result.lineage.get("evaluation", {}).get("champion", {})
        challenger = result.lineage.get("challenger", {})
        for role, found in (("champion", champion), ("challenger", challenger)):
            metrics = found.get("metrics") or {}
            shown = ", ".join(f"{k} {v:.4f}" for k, v in sorted(metrics.items()))
            out.print(f"  {role} {found.get('version') or '-'}: {shown or '-'}", highlight=False)
