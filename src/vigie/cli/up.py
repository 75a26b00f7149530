"""``vigie up``: the live loop on one machine — serve, replay, monitor, retrain, promote.

Starts the prediction service (``vigie serve``) and the drift sidecar (``vigie monitor
serve``) as child processes, waits until both are ready, starts the warehouse consumer
(``vigie ingest --follow``), replays a window of 2013 through the service (``vigie
replay``; outcomes arrive late, at each flight's arrival). Meanwhile each retraining request
of the sidecar starts the retraining job and the promotion of its candidate against the
running service, which hot-reloads it (:mod:`vigie.cli.up_loop`). Once the replay is over
and the sidecar caught up, it prints what happened and keeps everything running until Ctrl-C
or SIGTERM (or stops at once with ``--exit``). Children are stopped by their PIDs; their
output goes to ``<home>/logs/``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from datetime import date
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer
from prometheus_client.parser import text_string_to_metric_families

from vigie.cli.children import START_TIMEOUT_S, replay_command, start_logged, vigie_command
from vigie.cli.common import guarded, out
from vigie.cli.common import settings as build_settings
from vigie.cli.up_loop import RetrainingLoop
from vigie.config import Settings
from vigie.errors import ErrorCode, VigieError
from vigie.features.processor import load_reference, open_store
from vigie.serving.client import operator_key
from vigie.serving.harness import READY_PATH, wait_ready

#: The sidecar counts as caught up when its counters stay put this long.
SETTLE_S = 4.0


@guarded
def up(
    replay_from: Annotated[
        str, typer.Option("--replay-from", help="First day to replay (YYYY-MM-DD).")
    ] = "2013-03-01",
    replay_to: Annotated[
        str, typer.Option("--replay-to", help="Last day to replay (YYYY-MM-DD).")
    ] = "2013-08-31",
    speed: Annotated[
        float, typer.Option(help="Simulated seconds per real second (0: as fast as possible).")
    ] = 86_400.0,
    max_rows: Annotated[
        int, typer.Option("--max-rows", help="Flights per prediction request, at most.")
    ] = 64,
    replay: Annotated[bool, typer.Option(help="Replay traffic (else only serve).")] = True,
    client_fields: Annotated[
        str,
        typer.Option(
            help="What replayed requests carry: schedule (what an application knows; the "
            "service fills the rest from its online store) or full (every model input)."
        ),
    ] = "schedule",
    retrain: Annotated[
        bool,
        typer.Option(help="Retrain and promote on the sidecar's drift requests (vigie retrain)."),
    ] = True,
    ingest: Annotated[
        bool,
        typer.Option(help="Also load predictions and outcomes into the warehouse (vigie ingest)."),
    ] = True,
    exit_after: Annotated[
        bool, typer.Option("--exit", help="Stop everything once the replay is analysed.")
    ] = False,
    audit_report: Annotated[
        bool,
        typer.Option(help="Write the compliance audit report once the replay is analysed."),
    ] = True,
    working_dir: Annotated[
        Path, typer.Option(help="Working folder of the servers (relative settings start there).")
    ] = Path(),
) -> None:
    """Serve, monitor, replay 2013, retrain and promote on drift: the live loop."""
    settings = build_settings()
    first, last = _day(replay_from, "--replay-from"), _day(replay_to, "--replay-to")
    live = _Live(settings, working_dir)
    signal.signal(signal.SIGTERM, live.stop_all)
    try:
        live.start(ingest=ingest, retrain=retrain)
        if replay and not live.stopping.is_set():
            live.replay(first, last, speed, max_rows, client_fields)
            live.finish_loop()
            _summary(settings, live.sidecar)
            enrichment_summary(live.rest)
            if retrain:
                _loop_summary(settings, live.loop)
            if audit_report:
                _audit_report(live.env)
        if exit_after:
            return
        out.print(f"Browse {live.sidecar}/ — Ctrl-C stops the service and the sidecar.")
        live.wait()
    except KeyboardInterrupt:
        pass
    finally:
        live.stop_all()
        live.join()


class _Live:
    """The children of ``vigie up`` and the retraining loop's thread."""

    def __init__(self, settings: Settings, working_dir: Path) -> None:
        self.settings, self.working_dir = settings, working_dir
        self.env = {**os.environ, "DO_NOT_TRACK": "1", "BENTOML_DO_NOT_TRACK": "True"}
        self.children: list[subprocess.Popen[bytes]] = []
        self.consumers: list[subprocess.Popen[bytes]] = []
        self.stopping = threading.Event()
        self.rest = f"http://{settings.host}:{settings.rest_port}"
        self.sidecar = f"http://{settings.host}:{settings.monitor_port}"
        self.loop = RetrainingLoop(
            settings, self.rest, self.env, say=lambda text: out.print(text, highlight=False)
        )
        self.loop_stop = threading.Event()
        self.loop_thread = threading.Thread(
            target=self.loop.run,
            args=(self.loop_stop, self.stopping),
            name="retraining",
            daemon=True,
        )

    def start(self, *, ingest: bool, retrain: bool) -> None:
        """Service and sidecar (waited for), then the consumer and the retraining loop."""
        logs = self.settings.home / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        store = open_store(self.settings)
        try:
            planes, routes = load_reference(self.settings, store)
        finally:
            store.close()
        processor = start_logged(
            vigie_command("features", "process"), self.env, logs / "features.log"
        )
        self.consumers.append(processor)
        out.print(
            f"feature processor started ({planes:,} aircraft and {routes:,} routes in the "
            "online store)",
            highlight=False,
        )
        for command, log in (
            (["serve", "--working-dir", str(self.working_dir)], "serve.log"),
            (["monitor", "serve", "--working-dir", str(self.working_dir)], "monitor.log"),
        ):
            self.children.append(start_logged(vigie_command(*command), self.env, logs / log))
        out.print(
            f"service and sidecar starting; logs: {logs}/ (serve, monitor, ingest, retrain, "
            "promote)"
        )
        service, sidecar = self.children
        self.children.append(processor)
        wait_ready(
            f"{self.rest}{READY_PATH}",
            service,
            "the prediction service",
            log=logs / "serve.log",
            timeout=START_TIMEOUT_S,
        )
        wait_ready(
            f"{self.sidecar}/health/ready",
            sidecar,
            "the drift sidecar",
            log=logs / "monitor.log",
            timeout=START_TIMEOUT_S,
        )
        out.print(f"[bold]service ready[/] {self.rest}   [bold]sidecar ready[/] {self.sidecar}/")
        out.print("  the sidecar's pages ask for a key: any user name, and the admin key of")
        out.print(f"  {self.settings.secrets_dir / 'api_keys.local'} as the password")
        if ingest:
            self.consumers.append(
                start_logged(vigie_command("ingest", "--follow"), self.env, logs / "ingest.log")
            )
            self.children.append(self.consumers[-1])
        if retrain:
            self.loop_thread.start()

    def replay(
        self, first: date, last: date, speed: float, max_rows: int, client_fields: str
    ) -> None:
        """Replay the window in the foreground, then wait for the sidecar to catch up."""
        command = replay_command(first, last, speed, max_rows, "--client-fields", client_fields)
        code = subprocess.call(command, env=self.env)
        if code != 0:
            out.print(f"[yellow]the replay ended with status {code}[/]")
        _settle(self.sidecar, self.stopping, sidecar_headers(self.settings))

    def finish_loop(self) -> None:
        """Let the loop end its run, then serve the requests of the replay's last windows."""
        if not self.loop_thread.is_alive():
            return
        self.loop_stop.set()
        self.loop_thread.join()
        if not self.stopping.is_set() and self.loop.step(self.stopping):
            _settle(self.sidecar, self.stopping, sidecar_headers(self.settings))

    def wait(self) -> None:
        """Until a signal or a child's exit."""
        while not self.stopping.is_set() and all(c.poll() is None for c in self.children):
            self.stopping.wait(1.0)

    def stop_all(self, *_: Any) -> None:
        """Stop the loop's command and every child (by PID)."""
        self.stopping.set()
        self.loop_stop.set()
        self.loop.stop()
        for child in self.children:
            if child.poll() is None:
                # the consumer finishes its transaction on SIGINT; the servers stop on SIGTERM
                child.send_signal(signal.SIGINT if child in self.consumers else signal.SIGTERM)

    def join(self) -> None:
        """Wait for the loop's thread and the children (killed after a minute)."""
        if self.loop_thread.is_alive():
            self.loop_thread.join(timeout=60)
        for child in self.children:
            try:
                child.wait(timeout=60)
            except subprocess.TimeoutExpired:
                child.kill()


def _day(text: str, option: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError as err:
        raise VigieError(
            ErrorCode.INVALID_INPUT, f"{option} {text!r} is not a date (YYYY-MM-DD)"
        ) from err


def sidecar_headers(settings: Settings) -> dict[str, str]:
    """The key a command presents to the sidecar (``VIGIE_API_KEY`` or local mode's admin
    key): its pages and JSON need ``monitor.read``."""
    key = operator_key(settings)
    return {"Authorization": f"Bearer {key}"} if key else {}


def _audit_report(env: dict[str, str]) -> None:
    """``vigie audit report`` over what the run left, and where the report is."""
    done = subprocess.run(
        vigie_command("audit", "report"), env=env, capture_output=True, text=True, check=False
    )
    lines = [line for line in done.stdout.splitlines() if ":" in line and "/" in line]
    if done.returncode != 0:
        out.print(f"[yellow]the audit report failed:[/] {done.stderr.strip()[-500:]}")
        return
    out.print("[bold]compliance audit[/] (vigie audit report)\n  " + "\n  ".join(lines[-4:]))


def _settle(sidecar: str, stopping: threading.Event, headers: dict[str, str]) -> None:
    """Wait until the sidecar has read everything (its counters stop moving)."""
    previous: tuple[int, int] | None = None
    stable_since = time.monotonic()
    while not stopping.is_set():
        try:
            health = httpx.get(f"{sidecar}/api/health", headers=headers, timeout=5.0).json()
        except (httpx.HTTPError, ValueError):
            return
        counts = (int(health["entries_read"]), int(health["outcomes_read"]))
        if counts != previous:
            previous, stable_since = counts, time.monotonic()
        elif time.monotonic() - stable_since >= SETTLE_S:
            return
        stopping.wait(1.0)


def _rising(first: dict[str, Any], last: dict[str, Any], count: int = 4) -> str:
    """The features whose distance-type drift score grew most from the first window."""
    before = {f["name"]: f for f in first["drift"]["features"]}
    grown = []
    for feature in last["drift"]["features"]:
        old = before.get(feature["name"])
        distance = feature["stattest"] in {"wasserstein", "jensenshannon"}
        if old and distance and feature["score"] is not None and old["score"] is not None:
            grown.append((feature["score"] - old["score"], feature["name"], old, feature))
    grown.sort(reverse=True)
    return ", ".join(
        f"{name} {old['score']:.2f} -> {new['score']:.2f}"
        for delta, name, old, new in grown[:count]
        if delta > 0
    )


def _summary(settings: Settings, sidecar: str) -> None:
    headers = sidecar_headers(settings)
    try:
        windows = httpx.get(f"{sidecar}/api/windows", headers=headers, timeout=10.0).json()
        requests = httpx.get(
            f"{sidecar}/api/retraining-requests", headers=headers, timeout=10.0
        ).json()
    except (httpx.HTTPError, ValueError) as err:
        out.print(f"[yellow]cannot read the sidecar's results: {err}[/]")
        return
    by_version: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for window in windows:
        by_version.setdefault((window["model"], window["version"]), []).append(window)
    for (model, version), found in sorted(by_version.items()):
        drifted = sum(1 for w in found if w["drift"]["dataset_drift"])
        first, last = found[0], found[-1]
        line = (
            f"{model} v{version}: {len(found)} windows, {drifted} with dataset drift; "
            f"drifted share {first['drift']['share_drifted']:.2f} -> "
            f"{last['drift']['share_drifted']:.2f}"
        )
        metric = "roc_auc" if model == "flight_delay" else "mae"
        values = [(w.get("quality") or {}).get("metrics", {}).get(metric) for w in found]
        series = " ".join("-" if v is None else f"{v:.2f}" for v in values)
        line += f"\n  {metric} by window: {series}"
        out.print(line, highlight=False)
        rising = _rising(first, last)
        if rising:
            out.print(f"  rising drift: {rising}", highlight=False)
    for request in requests:
        out.print(
            f"[bold]retraining requested[/] for {request['model']} v{request['version']} "
            f"after windows {', '.join(request['windows'])} "
            f"(top features: {', '.join(f['name'] for f in request['features'][:5])})",
            highlight=False,
        )
    out.print(
        f"Evidently UI: evidently ui --workspace {settings.monitoring_dir / 'workspace'}",
        highlight=False,
    )


def _loop_summary(settings: Settings, loop: RetrainingLoop) -> None:
    """The retrainings and promotions of the run, and what serves now."""
    from vigie.registry import Alias, Registry  # noqa: PLC0415 (only at the end of a run)

    if not loop.steps:
        out.print("no retraining was requested during the replay", highlight=False)
    for step in loop.steps:
        out.print(f"[bold]loop[/] {step.line()}", highlight=False)
    registry = Registry(settings)
    serving = ", ".join(
        f"{model} v{registry.aliases(model).get(Alias.PRODUCTION.value, '-')}"
        for model in registry.models()
    )
    out.print(f"production now: {serving}", highlight=False)


def enrichment_summary(rest: str) -> None:
    """What the service filled from the online store and how fresh it was, from its own
    metrics (every worker's, as ``/metrics`` aggregates them)."""
    try:
        text = httpx.get(f"{rest}/metrics", timeout=10.0).text
    except httpx.HTTPError as err:
        out.print(f"[yellow]cannot read the service's metrics: {err}[/]")
        return
    sums: dict[tuple[str, str], float] = {}
    for metric in text_string_to_metric_families(text):
        for sample in metric.samples:
            if sample.name.startswith("vigie_feature_"):
                key = (sample.name, sample.labels.get("family", ""))
                sums[key] = sums.get(key, 0.0) + sample.value
    rows = sums.get(("vigie_feature_enriched_rows_total", ""), 0.0)
    lookups = sums.get(("vigie_feature_lookup_seconds_count", ""), 0.0)
    mean_ms = 1000 * sums.get(("vigie_feature_lookup_seconds_sum", ""), 0.0) / max(lookups, 1)
    ages = []
    for family in ("stream", "weather"):
        count = sums.get(("vigie_feature_age_seconds_count", family), 0.0)
        if count:
            mean = sums.get(("vigie_feature_age_seconds_sum", family), 0.0) / count / 60
            stale = sums.get(("vigie_feature_stale_rows_total", family), 0.0)
            ages.append(f"{family} {mean:.0f} min, {stale:,.0f} rows stale")
    out.print(
        f"enrichment: {rows:,.0f} rows filled from the online store in {lookups:,.0f} lookups "
        f"(mean {mean_ms:.2f} ms); freshness (mean age of the newest event): "
        + ("; ".join(ages) or "no enriched request"),
        highlight=False,
    )
