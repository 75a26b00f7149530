"""``vigie monitor``: the drift sidecar (port 3001), in the foreground or for one pass."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Annotated

import typer

from vigie.cli.children import run_foreground
from vigie.cli.common import authorized, guarded, out
from vigie.cli.common import settings as build_settings
from vigie.errors import ErrorCode, VigieError

monitor_app = typer.Typer(help="The drift sidecar: windows, drift, quality, reports.")

#: The sidecar's web edge, run from the installed package.
SIDECAR = "vigie.monitoring.web"


@monitor_app.command("serve")
@guarded
def serve(
    working_dir: Annotated[
        Path, typer.Option(help="Working folder of the sidecar (relative settings start there).")
    ] = Path(),
) -> None:
    """Run the drift sidecar (pages, JSON, /metrics on port 3001) until interrupted."""
    settings = build_settings()
    if not working_dir.is_dir():
        raise VigieError(ErrorCode.CONFIGURATION, f"no folder {working_dir.resolve()}")
    base = f"http://{settings.host}:{settings.monitor_port}"
    out.print(
        f"[bold]vigie drift sidecar[/]\n  pages: {base}/   metrics: {base}/metrics   "
        f"JSON: {base}/api/windows\n  Evidently UI: evidently ui --workspace "
        f"{settings.monitoring_dir / 'workspace'}",
        highlight=False,
    )
    env = {**os.environ, "DO_NOT_TRACK": "1"}
    raise typer.Exit(run_foreground([sys.executable, "-m", SIDECAR], working_dir, env))


@monitor_app.command("analyse")
@guarded
def analyse(
    close: Annotated[
        bool, typer.Option(help="Also close and analyse the last, partly filled windows.")
    ] = True,
    wait_reports: Annotated[
        float, typer.Option(help="Seconds to wait for the Evidently reports to be written.")
    ] = 600.0,
) -> None:
    """One pass over what the payload and outcome logs hold now (no server)."""
    from vigie.monitoring.sidecar import Monitor  # noqa: PLC0415 (Evidently-free start-up)

    settings = authorized("monitor.read")
    monitor = Monitor(settings)
    monitor.start()
    monitor.drain()
    if close:
        monitor.close_open_windows()
    deadline = time.monotonic() + wait_reports
    while not monitor.reports_idle() and time.monotonic() < deadline:
        time.sleep(0.2)
    monitor.stop()
    health = monitor.health()
    results = monitor.results()
    drifted = sum(1 for r in results if r["drift"]["dataset_drift"])
    out.print(
        f"read {health['entries_read']} entries and {health['outcomes_read']} outcomes; "
        f"{len(results)} windows ({drifted} with dataset drift); "
        f"{len(monitor.retraining_requests)} retraining requests; "
        f"bad input: {', '.join(f'{k} {v}' for k, v in health['bad_input'].items() if v) or 'none'}"
        f"\n  results: {settings.monitoring_dir / 'results'}",
        highlight=False,
    )
