"""Feast online-retrieval latency versus a direct redis-py read, side by side.

Run with the Python of a *separate* virtual environment that holds ``feast[redis]``
(never vigie's own ``.venv``)::

    python3.11 -m venv /tmp/feast-venv
    /tmp/feast-venv/bin/pip install 'feast[redis]'
    /tmp/feast-venv/bin/python loadtests/feast_eval/feast_latency.py --rounds 3

The script is self-contained: it writes a Feast repo into a temporary folder, with
three FileSources over Parquet files it generates (origin stats, 16 floats, keyed
by ``origin``; weather, 9 floats, keyed by ``origin``; aircraft stats, 4 floats,
keyed by ``tailnum``, 4,000 entities), runs ``feast apply`` and ``feast
materialize`` through the CLI (timed), then measures:

* ``get_online_features(...).to_dict()`` for 1 and for 64 entity rows per call;
* the same 29 values read with plain redis-py, one pipelined round trip of
  HGETALLs (3 hashes per row), decoded to floats: the "direct implementation" floor;
* 32 threads calling each path (single row) for a fixed time: throughput, p50, p99.

Each round interleaves Feast and direct so that noise from other processes hits
both.  It uses Redis logical database 9 only and flushes it before and after.
Nothing is fetched from the network.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import redis

ORIGINS = ("JFK", "LGA", "EWR")
TAILNUMS = tuple(f"N{i}" for i in range(100, 4100))  # 4,000 entities, N123 among them
ORIGIN_FEATURES = (
    "origin_dep_delay_1h",
    "origin_dep_delay_3h",
    "origin_dep_delay_24h",
    "origin_arr_delay_1h",
    "origin_arr_delay_3h",
    "origin_arr_delay_24h",
    "origin_backlog_1h",
    "origin_backlog_3h",
    "origin_cancel_rate_1h",
    "origin_cancel_rate_24h",
    "origin_taxi_out_1h",
    "origin_taxi_out_24h",
    "origin_departures_1h",
    "origin_departures_24h",
    "origin_diverted_24h",
    "origin_late_aircraft_1h",
)
WEATHER_FEATURES = (
    "temp",
    "dewp",
    "humid",
    "wind_dir",
    "wind_speed",
    "wind_gust",
    "precip",
    "pressure",
    "visib",
)
TAIL_FEATURES = ("tail_dep_delay_7d", "tail_arr_delay_7d", "tail_flights_7d", "tail_age_years")
VIEWS = {
    "origin_stats": ("origin", ORIGIN_FEATURES),
    "origin_weather": ("origin", WEATHER_FEATURES),
    "tail_stats": ("tailnum", TAIL_FEATURES),
}
FEATURE_REFS = [f"{view}:{f}" for view, (_, feats) in VIEWS.items() for f in feats]
DIRECT_PREFIX = "direct"

FEATURE_REPO = """
from datetime import timedelta
from feast import Entity, FeatureView, Field, FileSource, ValueType
from feast.types import Float64

origin = Entity(name="origin", join_keys=["origin"], value_type=ValueType.STRING)
tailnum = Entity(name="tailnum", join_keys=["tailnum"], value_type=ValueType.STRING)
VIEWS = {views!r}
DATA = {data_dir!r}
ENTITIES = {{"origin": origin, "tailnum": tailnum}}

for _name, (_key, _features) in VIEWS.items():
    globals()[_name] = FeatureView(
        name=_name,
        entities=[ENTITIES[_key]],
        ttl=timedelta(days=7),
        schema=[Field(name=f, dtype=Float64) for f in _features],
        source=FileSource(
            name=_name + "_source",
            path=f"{{DATA}}/{{_name}}.parquet",
            timestamp_field="event_timestamp",
        ),
        online=True,
    )
"""

FEATURE_STORE_YAML = """project: feast_eval
registry: {repo}/data/registry.db
provider: local
online_store:
  type: redis
  connection_string: "{host}:{port},db={db}"
offline_store:
  type: file
entity_key_serialization_version: 3
"""


def build_frames(now: datetime, seed: int) -> dict[str, pd.DataFrame]:
    """Generate hourly origin/weather rows (48 h) and daily tail rows (3 days)."""
    rng = np.random.default_rng(seed)
    hours = [now - timedelta(hours=h) for h in range(48, 0, -1)]
    days = [now - timedelta(days=d) for d in range(3, 0, -1)]
    frames = {}
    for view, (key, feats) in VIEWS.items():
        stamps, keys = (days, TAILNUMS) if key == "tailnum" else (hours, ORIGINS)
        idx = pd.MultiIndex.from_product([stamps, keys], names=["event_timestamp", key])
        df = idx.to_frame(index=False)
        for f in feats:
            df[f] = rng.normal(10.0, 5.0, len(df))
        df["event_timestamp"] = pd.to_datetime(df["event_timestamp"], utc=True)
        frames[view] = df
    return frames


def write_repo(
    repo: Path, frames: dict[str, pd.DataFrame], redis_url: tuple[str, int, int]
) -> None:
    """Write the Parquet files, the feature definitions and feature_store.yaml."""
    data_dir = repo / "data"
    data_dir.mkdir(parents=True)
    for view, df in frames.items():
        df.to_parquet(data_dir / f"{view}.parquet", index=False)
    views = {k: (key, list(feats)) for k, (key, feats) in VIEWS.items()}
    (repo / "features.py").write_text(FEATURE_REPO.format(views=views, data_dir=str(data_dir)))
    host, port, db = redis_url
    (repo / "feature_store.yaml").write_text(
        FEATURE_STORE_YAML.format(repo=repo, host=host, port=port, db=db)
    )


def timed_cli(repo: Path, *args: str) -> float:
    """Run the ``feast`` CLI of this interpreter's venv in ``repo``; return wall seconds."""
    feast_bin = Path(sys.executable).parent / "feast"
    start = time.perf_counter()
    proc = subprocess.run(
        [str(feast_bin), *args], cwd=repo, capture_output=True, text=True, check=False
    )
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"feast {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}")
    return elapsed


def load_direct(client: redis.Redis, frames: dict[str, pd.DataFrame]) -> None:
    """Store the latest row per entity as plain hashes ``direct:<view>:<key>``."""
    pipe = client.pipeline(transaction=False)
    for view, (key, feats) in VIEWS.items():
        latest = frames[view].sort_values("event_timestamp").groupby(key).tail(1)
        for row in latest.itertuples(index=False):
            mapping = {f: repr(float(getattr(row, f))) for f in feats}
            pipe.hset(f"{DIRECT_PREFIX}:{view}:{getattr(row, key)}", mapping=mapping)
    pipe.execute()


def direct_fetch(client: redis.Redis, rows: Sequence[dict[str, str]]) -> dict[str, list[float]]:
    """One pipelined round trip: HGETALL of the 3 hashes of each row, decoded to floats."""
    pipe = client.pipeline(transaction=False)
    for row in rows:
        for view, (key, _) in VIEWS.items():
            pipe.hgetall(f"{DIRECT_PREFIX}:{view}:{row[key]}")
    replies = pipe.execute()
    out: dict[str, list[float]] = {}
    for h in replies:
        for field, value in h.items():
            out.setdefault(field.decode(), []).append(float(value))
    return out


def entity_rows(rng: random.Random, n: int) -> list[dict[str, str]]:
    """Random (origin, tailnum) rows, drawn the same way for both paths."""
    return [{"origin": rng.choice(ORIGINS), "tailnum": rng.choice(TAILNUMS)} for _ in range(n)]


def summarize(lat_ns: Sequence[int]) -> dict[str, float]:
    """p50/p90/p99/mean/max in milliseconds."""
    a = np.asarray(lat_ns, dtype=np.float64) / 1e6
    p50, p90, p99 = np.percentile(a, [50, 90, 99])
    return {"n": int(a.size), "p50": p50, "p90": p90, "p99": p99, "mean": a.mean(), "max": a.max()}


def sequential(
    fn: Callable[[list[dict[str, str]]], Any], batch: int, calls: int, warmup: int, seed: int
) -> dict[str, float]:
    """Time ``calls`` sequential calls of ``fn`` after ``warmup`` untimed ones."""
    rng = random.Random(seed)
    work = [entity_rows(rng, batch) for _ in range(calls + warmup)]
    for rows in work[:warmup]:
        fn(rows)
    lat = []
    clock = time.perf_counter_ns
    for rows in work[warmup:]:
        t0 = clock()
        fn(rows)
        lat.append(clock() - t0)
    return summarize(lat)


def concurrent(
    fn: Callable[[list[dict[str, str]]], Any], threads: int, seconds: float, seed: int
) -> dict[str, float]:
    """``threads`` threads call ``fn`` (single row) in a loop for ``seconds``."""
    results: list[list[int]] = [[] for _ in range(threads)]
    errors: list[BaseException] = []
    barrier = threading.Barrier(threads + 1)
    stop = threading.Event()

    def worker(i: int) -> None:
        rng = random.Random(seed + i)
        work = [entity_rows(rng, 1) for _ in range(512)]
        for rows in work[:20]:
            fn(rows)
        barrier.wait()
        clock, out, k = time.perf_counter_ns, results[i], 0
        try:
            while not stop.is_set():
                t0 = clock()
                fn(work[k % 512])
                out.append(clock() - t0)
                k += 1
        except BaseException as err:  # noqa: BLE001 - reported, not swallowed
            errors.append(err)

    pool = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(threads)]
    for t in pool:
        t.start()
    barrier.wait()
    start = time.perf_counter()
    time.sleep(seconds)
    stop.set()
    for t in pool:
        t.join()
    elapsed = time.perf_counter() - start
    if errors:
        raise RuntimeError(f"{len(errors)} worker errors, first: {errors[0]!r}")
    flat = [x for r in results for x in r]
    stats = summarize(flat)
    stats["throughput_rps"] = len(flat) / elapsed
    return stats


def ping_floor(client: redis.Redis, calls: int = 2000) -> dict[str, float]:
    """Bare PING round trip through redis-py: the network+client floor."""
    for _ in range(200):
        client.ping()
    lat = []
    for _ in range(calls):
        t0 = time.perf_counter_ns()
        client.ping()
        lat.append(time.perf_counter_ns() - t0)
    return summarize(lat)


def check_same_values(store: Any, client: redis.Redis) -> None:
    """Both paths must return the same 29 numbers, else the comparison is void."""
    rows = [{"origin": "JFK", "tailnum": "N123"}]
    feast_out = store.get_online_features(features=FEATURE_REFS, entity_rows=rows).to_dict()
    direct_out = direct_fetch(client, rows)
    names = [r.split(":")[1] for r in FEATURE_REFS]
    mismatched = [n for n in names if abs(feast_out[n][0] - direct_out[n][0]) > 1e-9]
    if mismatched or len(direct_out) != len(names):
        raise RuntimeError(f"Feast and direct values differ: {mismatched}")


def run_round(store: Any, client: redis.Redis, args: argparse.Namespace, r: int) -> dict:
    """One interleaved round of every measurement."""

    def feast_fn(rows: list[dict[str, str]]) -> dict:
        return store.get_online_features(features=FEATURE_REFS, entity_rows=rows).to_dict()

    def direct_fn(rows: list[dict[str, str]]) -> dict:
        return direct_fetch(client, rows)

    out: dict[str, Any] = {"loadavg_start": os.getloadavg()}
    seed = 1000 * r
    for label, batch, calls, warm in (
        ("single", 1, args.calls, args.warmup),
        ("batch64", 64, args.batch_calls, args.batch_warmup),
    ):
        out[f"feast_{label}"] = sequential(feast_fn, batch, calls, warm, seed)
        out[f"direct_{label}"] = sequential(direct_fn, batch, calls, warm, seed)
    out["ping"] = ping_floor(client)
    out["feast_conc32"] = concurrent(feast_fn, args.threads, args.seconds, seed)
    out["direct_conc32"] = concurrent(direct_fn, args.threads, args.seconds, seed)
    out["loadavg_end"] = os.getloadavg()
    return out


def print_round(r: int, res: dict) -> None:
    """Markdown tables for one round."""
    la0, la1 = res["loadavg_start"][0], res["loadavg_end"][0]
    print(f"\n### Round {r}  (1-min loadavg {la0:.2f} -> {la1:.2f})\n")
    print("| case | n | p50 ms | p90 ms | p99 ms | mean ms | max ms |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for case in ("feast_single", "direct_single", "feast_batch64", "direct_batch64", "ping"):
        s = res[case]
        print(
            f"| {case} | {s['n']} | {s['p50']:.3f} | {s['p90']:.3f} | {s['p99']:.3f} "
            f"| {s['mean']:.3f} | {s['max']:.3f} |"
        )
    print("\n| 32 threads, single row | calls | req/s | p50 ms | p99 ms | max ms |")
    print("|---|---:|---:|---:|---:|---:|")
    for case in ("feast_conc32", "direct_conc32"):
        s = res[case]
        print(
            f"| {case} | {s['n']} | {s['throughput_rps']:.0f} | {s['p50']:.3f} "
            f"| {s['p99']:.3f} | {s['max']:.3f} |"
        )


def parse_args() -> argparse.Namespace:
    """Command-line options; defaults are the brief's counts."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--redis-host", default="127.0.0.1")
    p.add_argument("--redis-port", type=int, default=6379)
    p.add_argument("--redis-db", type=int, default=9)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--calls", type=int, default=2000)
    p.add_argument("--warmup", type=int, default=200)
    p.add_argument("--batch-calls", type=int, default=2000)
    p.add_argument("--batch-warmup", type=int, default=200)
    p.add_argument("--threads", type=int, default=32)
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--json-out", type=Path, default=None)
    return p.parse_args()


def main() -> None:
    """Set up the repo, apply, materialize, measure, clean up."""
    args = parse_args()
    import feast  # noqa: PLC0415 - late, so --help works without the 2 s import

    client = redis.Redis(host=args.redis_host, port=args.redis_port, db=args.redis_db)
    client.flushdb()
    now = datetime.now(UTC).replace(microsecond=0)
    frames = build_frames(now, seed=7)
    report: dict[str, Any] = {
        "feast_version": feast.__version__,
        "redis_py": redis.__version__,
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "redis_server": client.info("server")["redis_version"],
        "rounds": [],
    }
    try:
        with tempfile.TemporaryDirectory(prefix="feast_eval_") as tmp:
            repo = Path(tmp)
            write_repo(repo, frames, (args.redis_host, args.redis_port, args.redis_db))
            report["feast_apply_s"] = timed_cli(repo, "apply")
            start = (now - timedelta(days=4)).isoformat()
            end = (now + timedelta(minutes=1)).isoformat()
            report["feast_materialize_s"] = timed_cli(repo, "materialize", start, end)
            t0 = time.perf_counter()
            store = feast.FeatureStore(repo_path=str(repo))
            report["feature_store_init_s"] = time.perf_counter() - t0
            load_direct(client, frames)
            report["redis_keys_db"] = client.dbsize()
            check_same_values(store, client)
            print(
                f"feast {report['feast_version']}, redis-py {report['redis_py']}, "
                f"redis-server {report['redis_server']}, python {report['python']}, "
                f"cpus {report['cpus']}"
            )
            print(
                f"feast apply {report['feast_apply_s']:.2f}s, feast materialize "
                f"{report['feast_materialize_s']:.2f}s (CLI wall time, incl. interpreter start)"
            )
            for r in range(1, args.rounds + 1):
                res = run_round(store, client, args, r)
                report["rounds"].append(res)
                print_round(r, res)
                sys.stdout.flush()
    finally:
        client.flushdb()
    if args.json_out:
        args.json_out.write_text(json.dumps(report, indent=2, default=float))


if __name__ == "__main__":
    main()
