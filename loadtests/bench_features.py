"""What enrichment adds to a request: schedule-only against fully populated requests.

The load-test home of ``serve_for_load.py`` (ten days of January 2013, both models in
production) gets its online store filled with the window's flight and weather events, as
the feature processor would have written them. The same flights are then sent to the live
service over OIP REST in two forms, interleaved round by round so the machine's drift hits
both: every model input (``full``), and only what an application knows, carrier, origin,
destination and scheduled departure (``schedule``), which the service fills from its
store. The difference of the latency percentiles is what the feature lookup adds; the
service's own ``vigie_feature_lookup_seconds`` says how long the lookup itself took.

    python loadtests/bench_features.py [--clients 32] [--seconds 5] [--rounds 3]

Results go to ``$VIGIE_HOME/bench/features.json`` and are printed as a Markdown table.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from prometheus_client.parser import text_string_to_metric_families

sys.path.insert(0, str(Path(__file__).resolve().parent))

from serve_for_load import WINDOW, prepare_home, start_service  # noqa: E402

from vigie.config import Settings, load_settings  # noqa: E402
from vigie.features.processor import load_reference, open_store  # noqa: E402
from vigie.features.redis_store import RedisStore  # noqa: E402
from vigie.registry import Registry  # noqa: E402
from vigie.replay.events import load_schedule  # noqa: E402
from vigie.replay.source import FlightWindow, feature_defs, load_window  # noqa: E402
from vigie.runtime import OnnxModel  # noqa: E402

MODEL = "flight_delay"
DAYS = (date(2013, 1, 6), date(2013, 1, 9))


def fill_store(settings: Settings) -> int:
    """The window's events applied to the online store ``settings`` names; how many."""
    store = open_store(settings)
    try:
        load_reference(settings, store)
        schedule = load_schedule(settings, *WINDOW)
        for start in range(0, len(schedule), 5000):
            store.apply([schedule.event(i) for i in range(start, min(start + 5000, len(schedule)))])
        return len(schedule)
    finally:
        store.close()


def bodies(settings: Settings, count: int) -> dict[str, list[bytes]]:
    """One-row OIP JSON bodies of ``count`` flights, fully populated and schedule-only."""
    registry = Registry(settings)
    version = registry.resolve(MODEL, "production")
    onnx = OnnxModel(registry.open_artifact(MODEL, version, "model.onnx"), "cpu")
    window: FlightWindow = load_window(settings, *DAYS, feature_defs({MODEL: tuple(onnx.inputs)}))
    picks = np.linspace(0, len(window) - 1, count).astype(int)
    full, schedule = [], []
    for j in picks.tolist():
        tensors = []
        for name, kind in onnx.inputs.items():
            value = window.features[name][j]
            strings = kind == "tensor(string)"
            data = [value if strings else (None if np.isnan(value) else float(value))]
            tensors.append(
                {"name": name, "datatype": "BYTES" if strings else "FP32", "shape": [1],
                 "data": data}
            )  # fmt: skip
        full.append(json.dumps({"inputs": tensors}).encode())
        when = datetime.fromtimestamp(int(window.departure_us[j]) / 1e6, UTC).isoformat()
        keys = [t for t in tensors if t["name"] in ("carrier", "origin", "dest")]
        keys.append({"name": "sched_dep", "datatype": "BYTES", "shape": [1], "data": [when]})
        schedule.append(json.dumps({"inputs": keys}).encode())
    return {"full": full, "schedule": schedule}


async def run_cell(
    url: str, key: str, payloads: list[bytes], clients: int, seconds: float
) -> list[float]:
    """``clients`` concurrent callers for ``seconds``; every latency, in ms."""
    latencies: list[float] = []
    deadline = time.perf_counter() + seconds
    headers = {"content-type": "application/json", "authorization": f"Bearer {key}"}
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(timeout=30.0, limits=limits) as client:

        async def caller(offset: int) -> None:
            index = offset
            while time.perf_counter() < deadline:
                began = time.perf_counter()
                response = await client.post(url, content=payloads[index % len(payloads)],
                                             headers=headers)  # fmt: skip
                if response.status_code != 200:  # noqa: PLR2004
                    raise RuntimeError(f"HTTP {response.status_code}: {response.text[:200]}")
                latencies.append((time.perf_counter() - began) * 1000)
                index += clients

        await asyncio.gather(*(caller(i) for i in range(clients)))
    return latencies


def lookup_seconds(base: str) -> tuple[float, float]:
    """The service's feature lookups so far: count and total seconds."""
    text = httpx.get(f"{base}/metrics", timeout=10.0).text
    count = total = 0.0
    for metric in text_string_to_metric_families(text):
        for sample in metric.samples:
            if sample.name == "vigie_feature_lookup_seconds_count":
                count += sample.value
            elif sample.name == "vigie_feature_lookup_seconds_sum":
                total += sample.value
    return count, total


def summary(values: list[float]) -> dict[str, float]:
    array = np.asarray(values)
    return {
        "requests": float(array.size),
        "p50_ms": float(np.percentile(array, 50)),
        "p99_ms": float(np.percentile(array, 99)),
        "mean_ms": float(array.mean()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--home", type=Path, default=None)
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 32])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--flights", type=int, default=400)
    parser.add_argument(
        "--features-url",
        default=None,
        help="redis://... to measure the Redis online store (its keys are deleted after); "
        "default: the embedded SQLite store",
    )
    args = parser.parse_args()
    home = args.home or load_settings().home / "loadtest"
    settings = prepare_home(home)
    if args.features_url:
        os.environ["VIGIE_FEATURES_URL"] = args.features_url  # the service child reads it
        settings = settings.model_copy(update={"features_url": args.features_url})
    try:
        run(args, settings)
    finally:
        if args.features_url:
            store = open_store(settings)
            if isinstance(store, RedisStore):
                store.clear()
            store.close()


def run(args: argparse.Namespace, settings: Settings) -> None:
    """Fill the store, serve, measure every cell, write and print the results."""
    events = fill_store(settings)
    payloads = bodies(settings, args.flights)
    log = settings.home / "logs" / "bench-features-serve.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {
        "events": events,
        "store": "redis" if settings.features_url else "sqlite",
        "cells": [],
    }
    with start_service(settings, log) as service:
        url = f"{service.url}/v2/models/{MODEL}/infer"
        for clients in args.clients:
            pooled: dict[str, list[float]] = {"full": [], "schedule": []}
            before = lookup_seconds(service.url)
            for _ in range(args.rounds):
                for kind in ("full", "schedule"):
                    pooled[kind] += asyncio.run(
                        run_cell(url, service.key, payloads[kind], clients, args.seconds)
                    )
            after = lookup_seconds(service.url)
            lookups = after[0] - before[0]
            cell = {
                "clients": clients,
                "full": summary(pooled["full"]),
                "schedule": summary(pooled["schedule"]),
                "lookup_mean_ms": 1000 * (after[1] - before[1]) / max(lookups, 1.0),
            }
            results["cells"].append(cell)
    out = load_settings().home / "bench" / f"features-{results['store']}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    print(f"online store: {results['store']}")
    print("| clients | full p50 / p99 ms | schedule-only p50 / p99 ms | added p99 ms | "
          "lookup in the service, mean ms |")  # fmt: skip
    print("|---|---|---|---|---|")
    for cell in results["cells"]:
        full, sched = cell["full"], cell["schedule"]
        print(
            f"| {cell['clients']} | {full['p50_ms']:.2f} / {full['p99_ms']:.2f} | "
            f"{sched['p50_ms']:.2f} / {sched['p99_ms']:.2f} | "
            f"{sched['p99_ms'] - full['p99_ms']:+.2f} | {cell['lookup_mean_ms']:.3f} |"
        )
    print(f"written to {out}")


if __name__ == "__main__":
    main()
