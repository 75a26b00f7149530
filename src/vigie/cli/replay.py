"""``vigie replay`` (traffic with delayed labels) and ``vigie ingest`` (its consumer).

The replay's schedule is :mod:`vigie.replay.player`; this module wires it to the
transport (:mod:`vigie.serving.client`, which monitoring may not import), draws the
progress bar and turns the first Ctrl-C into a clean stop (a second one aborts).
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Annotated, Any, Literal

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from vigie.cli.common import authorized, err_console, guarded, out, parse_date
from vigie.cli.common import settings as build_settings
from vigie.config import Settings
from vigie.errors import ErrorCode, VigieError
from vigie.features.online import REQUEST_INPUTS
from vigie.monitoring.consumer import DEFAULT_CONSUMER, IngestReport
from vigie.monitoring.consumer import ingest as run_ingest
from vigie.replay.player import ReplayPlan, ReplayRequest, ReplayStats, new_run_id, run_replay
from vigie.replay.source import production_models
from vigie.serving.client import InferClient, local_predict_key, open_client
from vigie.serving.dataplane import ROW_IDS_PARAMETER

#: Exit status of a replay or ingest stopped by Ctrl-C (128 + SIGINT).
INTERRUPTED_EXIT = 130


@guarded
def replay(
    date_from: Annotated[str, typer.Option("--from", help="First departure day (YYYY-MM-DD).")],
    date_to: Annotated[str, typer.Option("--to", help="Last departure day (YYYY-MM-DD).")],
    speed: Annotated[
        float, typer.Option(help="Simulated seconds per real second; 0: as fast as possible.")
    ] = 0.0,
    protocol: Annotated[str, typer.Option(help="rest (OIP v2 JSON) or grpc.")] = "rest",
    model: Annotated[
        list[str] | None,
        typer.Option("--model", help="A model to ask (repeat); default: every production one."),
    ] = None,
    max_rows: Annotated[int, typer.Option(help="Most flights per request.")] = 1,
    limit: Annotated[int | None, typer.Option(help="Most flights replayed.")] = None,
    url: Annotated[str | None, typer.Option(help="REST base URL; default from settings.")] = None,
    grpc_target: Annotated[
        str | None, typer.Option(help="gRPC host:port; default from settings.")
    ] = None,
    concurrency: Annotated[int, typer.Option(help="Requests in flight at once.")] = 4,
    api_key: Annotated[
        str | None,
        typer.Option(
            envvar="VIGIE_PREDICT_KEY",
            help="A predict key; default: VIGIE_HOME/secrets/api_keys.local.",
        ),
    ] = None,
    timeout: Annotated[float, typer.Option(help="Seconds per request.")] = 10.0,
    client_fields: Annotated[
        str,
        typer.Option(
            help="full: every model input, computed from the warehouse; schedule: only what "
            "an application knows (carrier, origin, dest, sched_dep), the service fills the "
            "rest from its online store."
        ),
    ] = "full",
    events: Annotated[
        bool,
        typer.Option(
            help="Publish the window's flight and weather events at their instants (the "
            "feature processor turns them into the online store)."
        ),
    ] = True,
) -> None:
    """Replay a window of flights to the running service: a prediction at each scheduled
    departure, the true outcome into the outcome log at each arrival."""
    settings = build_settings()
    start, end = parse_date(date_from, "--from"), parse_date(date_to, "--to")
    assert start is not None and end is not None  # required options
    if protocol not in {"rest", "grpc"}:
        raise VigieError(ErrorCode.INVALID_INPUT, f"--protocol {protocol!r}: rest or grpc")
    key = api_key or local_predict_key(settings)
    if not key:
        raise VigieError(
            ErrorCode.CONFIGURATION,
            "no API key: set VIGIE_PREDICT_KEY or --api-key "
            f"(none in {settings.secrets_dir / 'api_keys.local'})",
        )
    rest_url = url or f"http://{settings.host}:{settings.rest_port}"
    target = grpc_target or f"{settings.host}:{settings.grpc_port}"
    transport: Literal["rest", "grpc"] = "grpc" if protocol == "grpc" else "rest"
    client = open_client(
        transport,
        url=rest_url,
        grpc_target=target,
        key=key,
        timeout_s=timeout,
        connections=concurrency,
    )
    try:
        plan = ReplayPlan(
            models=_served_inputs(client, model or production_models(settings)),
            speed=speed,
            max_rows=max_rows,
            limit=limit,
            concurrency=concurrency,
            run_id=new_run_id(),
            client_fields=client_fields,
            events=events,
        )
        address = {"protocol": protocol, "address": target if protocol == "grpc" else rest_url}
        stats = _run_with_progress(settings, (start, end), plan, _sender(client), address)
    finally:
        client.close()
    _replay_summary(plan, stats)
    if stats.interrupted:
        raise typer.Exit(INTERRUPTED_EXIT)


def _served_inputs(client: InferClient, models: list[str]) -> dict[str, tuple[str, ...]]:
    """Each model's inputs as the service advertises them (also checks key and service)."""
    if not models:
        raise VigieError(
            ErrorCode.MODEL_NOT_FOUND,
            "no model to replay: no production alias is set in the registry; pass --model",
        )
    return {
        name: tuple(i for i in client.model_inputs(name) if i not in REQUEST_INPUTS)
        for name in dict.fromkeys(models)
    }


def _sender(client: InferClient) -> Callable[[ReplayRequest], object]:
    def send(request: ReplayRequest) -> object:
        parameters = {ROW_IDS_PARAMETER: ",".join(request.row_ids)}
        return client.infer(request.model, request.request_id, request.columns, parameters)

    return send


def _run_with_progress(
    settings: Settings,
    window: tuple[Any, Any],
    plan: ReplayPlan,
    send: Callable[[ReplayRequest], object],
    address: dict[str, Any],
) -> ReplayStats:
    stop = threading.Event()
    with (
        _stop_on_interrupt(stop, "stopping: finishing the requests in flight"),
        Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=err_console,
            transient=True,
        ) as progress,
    ):
        task = progress.add_task("loading the window", total=None)

        def started(stats: ReplayStats) -> None:
            progress.update(task, total=stats.flights, description="replaying")

        def advanced(stats: ReplayStats) -> None:
            clock = f"{stats.simulated_until:%Y-%m-%d %H:%M}" if stats.simulated_until else "-"
            progress.update(
                task,
                completed=stats.flights_sent,
                description=f"{clock} UTC  {stats.requests:,} req  {stats.failures:,} failed  "
                f"{stats.outcomes:,} labels",
            )

        return run_replay(
            settings,
            window[0],
            window[1],
            plan,
            send,
            target=address,
            stop=stop,
            on_start=started,
            on_progress=advanced,
        )


@contextmanager
def _stop_on_interrupt(stop: threading.Event, message: str) -> Iterator[None]:
    """First Ctrl-C sets ``stop`` (a clean end); a second one raises KeyboardInterrupt."""

    def handler(signum: int, frame: object) -> None:
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()
        err_console.print(f"{message} (Ctrl-C again to abort)")

    try:
        previous = signal.signal(signal.SIGINT, handler)
    except ValueError:  # not the main thread: no handler, KeyboardInterrupt is still caught
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _replay_summary(plan: ReplayPlan, stats: ReplayStats) -> None:
    elapsed = max(stats.elapsed_s, 1e-9)
    state = "interrupted" if stats.interrupted else "complete"
    table = Table(title=f"replay {plan.run_id} ({state}, {stats.elapsed_s:.1f} s)")
    table.add_column("what")
    table.add_column("value", justify="right")
    codes = ", ".join(f"{c} {n:,}" for c, n in sorted(stats.failure_codes.items()))
    rows = [
        ("flights sent", f"{stats.flights_sent:,} of {stats.flights:,}"),
        ("requests answered", f"{stats.requests:,} ({stats.requests / elapsed:,.1f}/s)"),
        ("rows answered", f"{stats.rows:,} ({stats.rows / elapsed:,.1f}/s)"),
        ("requests failed", f"{stats.failures:,}" + (f" ({codes})" if codes else "")),
        ("retries", f"{stats.retries:,}"),
        ("outcome events", f"{stats.outcomes:,}"),
        ("outcome events unwritten", f"{stats.outcomes_unwritten:,}"),
        ("request fields", plan.client_fields),
        ("flight and weather events published", f"{stats.events_published:,}"),
        ("waits for the feature processor timed out", f"{stats.feature_waits_timed_out:,}"),
        ("simulated from", f"{stats.simulated_start or '-'}"),
        ("simulated time reached", f"{stats.simulated_until or '-'}"),
    ]
    for name, value in rows:
        table.add_row(name, value)
    out.print(table)


@guarded
def ingest(
    follow: Annotated[bool, typer.Option(help="Keep reading new entries until Ctrl-C.")] = False,
    batch: Annotated[int, typer.Option(help="Most log entries per transaction.")] = 1000,
    from_start: Annotated[
        bool, typer.Option(help="Read both logs from their start (adds nothing already there).")
    ] = False,
    consumer: Annotated[str, typer.Option(help="Consumer name (its checkpoints).")] = (
        DEFAULT_CONSUMER
    ),
    poll: Annotated[float, typer.Option(help="Seconds between polls with --follow.")] = 1.0,
) -> None:
    """Load the payload log into fact_prediction and the outcome log into fact_outcome."""
    settings = authorized("data.load")
    stop = threading.Event()
    with _stop_on_interrupt(stop, "stopping after the current batch"):
        if follow:
            err_console.print("ingesting; Ctrl-C to stop")
        report = run_ingest(
            settings,
            batch=batch,
            name=consumer,
            from_start=from_start,
            follow=follow,
            stop=stop,
            poll_s=poll,
        )
    _ingest_summary(report)


def _ingest_summary(report: IngestReport) -> None:
    table = Table(title=f"ingest {report.run_id} ({report.batches} batches)")
    table.add_column("what")
    table.add_column("count", justify="right")
    rows = [
        ("payload entries read", report.payload_entries),
        ("predictions inserted", report.predictions_inserted),
        ("predictions already there", report.predictions_duplicate),
        ("outcome events read", report.outcome_events),
        ("outcomes inserted", report.outcomes_inserted),
        ("outcomes repeated (first kept)", report.outcomes_duplicate),
        ("outcomes for unknown flights (quarantined)", report.unknown_flight),
        ("unreadable lines", report.unreadable),
    ]
    rows += [(f"invalid: {reason}", count) for reason, count in sorted(report.invalid.items())]
    for name, count in rows:
        table.add_row(name, f"{count:,}")
    out.print(table)
    if report.unregistered_versions:
        err_console.print(
            "versions without a dim_model_version row (the label join skips them): "
            + ", ".join(sorted(report.unregistered_versions))
        )
