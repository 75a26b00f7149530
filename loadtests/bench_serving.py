"""Benchmark: vigie's serving front ends against ONNX Runtime in process and a plain server.

In one run, on the same machine and the same rows: ONNX Runtime in this process (the
floor), vigie over OIP gRPC, vigie over OIP REST, vigie's ``/predict``, and the plain
FastAPI + ONNX Runtime server of ``loadtests/peer_server.py`` (one session, no batching,
the same OIP JSON), at each concurrency and batch size asked (default: 1 and 32
concurrent clients, 1 and 64 rows per request). Each cell runs closed-loop clients for a
warm-up, then a measured window, and reports throughput (requests/s and rows/s), p50 and
p99 latency, errors, and the CPU each side spent per request. The networked targets are
measured in ``--rounds`` rounds (default 3), the targets of one cell back to back in each,
so that a ratio compares windows seconds apart; a cell's figures pool its rounds.

A temporary home gets a small trained registry (the pipeline on ten days, ``flight_delay``
trained for two epochs: the production architecture, so the cost of a row is
representative), the rows come from its snapshot, and vigie (``bentoml serve``) and the
peer (uvicorn) run as subprocesses on free loopback ports, stopped by their PIDs at the end.
Clients: ``aiohttp`` with keep-alive for REST (``--http-client httpx`` for
``httpx.AsyncClient``, which costs ten times more CPU per request), ``grpc.aio`` with
vigie's own stubs for gRPC (each of up to ``--channels`` channels its own connection).
Results are printed and written to ``VIGIE_HOME/bench/serving.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import math
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import aiohttp
import grpc
import httpx
import numpy as np
import pandas as pd
import psutil  # type: ignore[import-untyped]
import yaml

from vigie.config import Settings, load_settings
from vigie.governance.policy import load_policy
from vigie.pipelines.run import run_pipeline
from vigie.registry import Registry
from vigie.retraining.lifecycle import assess, promote, train_and_register
from vigie.runtime import OnnxModel
from vigie.serving.harness import (
    ServiceProcess,
    free_port,
    local_service_env,
    start_logged,
    stop_process,
    wait_listening,
    wait_ready,
)
from vigie.serving.proto import grpc_predict_v2_pb2 as pb
from vigie.serving.proto import grpc_predict_v2_pb2_grpc as pb_grpc
from vigie.training.snapshot import build_snapshot
from vigie.training.spec import load_spec

ROOT = Path(__file__).resolve().parents[1]
MODEL = "flight_delay"
WINDOW = (date(2013, 1, 1), date(2013, 1, 10))
TARGETS = (
    "onnxruntime",
    "vigie-grpc",
    "vigie-rest",
    "vigie-predict",
    "peer-fastapi",
    "grpc-echo",
)
POOL = 16  # distinct payloads per batch size, cycled
START_TIMEOUT_S = 180.0

#: One request: the index of a prepared payload in; raises on any failure.
Call = Callable[[int], Awaitable[None]]


@dataclass
class Cell:
    """One measured cell of the table."""

    target: str
    concurrency: int
    batch: int
    requests: int = 0
    errors: int = 0
    seconds: float = 0.0
    rps: float = 0.0
    rows_per_s: float = 0.0
    p50_ms: float = math.nan
    p99_ms: float = math.nan
    server_cpu_ms: float = math.nan  # per request, every process of the server
    client_cpu_ms: float = math.nan  # per request, this process
    other_cpu_pct: float = math.nan  # of all cores, by processes that are neither side
    first_error: str = ""


@dataclass
class Window:
    """Latencies and CPU times of one cell's measured window, filled while it runs."""

    start: float
    end: float
    latencies: list[float] = field(default_factory=list)
    errors: int = 0
    first_error: str = ""
    cpu: dict[str, float] = field(default_factory=dict)

    def record(self, began: float, ended: float, error: BaseException | None) -> None:
        if not self.start <= ended <= self.end:
            return
        if error is None:
            self.latencies.append(ended - began)
            return
        self.errors += 1
        self.first_error = self.first_error or f"{type(error).__name__}: {error}"[:300]


# --- the registry, the rows and the payloads --------------------------------------------


def prepare_home(home: Path) -> Settings:
    """A home with ``flight_delay`` trained for two epochs on ten days and in production."""
    shutil.copytree(ROOT / "models", home / "models")
    spec_path = home / "models" / MODEL / "spec.yaml"
    raw = yaml.safe_load(spec_path.read_text())
    raw["hyperparameters"]["max_epochs"] = 2
    raw["gates"].update(min={}, max={}, behaviour_must_pass=False)
    raw["gates"]["latency"] = {"p50_single_row_ms": 1000.0, "batch_256_ms": 10000.0}
    spec_path.write_text(yaml.safe_dump(raw))
    settings = load_settings(
        home=home, models_dir=home / "models", device="cpu", mode="local", actor="vigie-bench"
    )
    run_pipeline(settings, *WINDOW)
    version = train_and_register(
        settings, MODEL, WINDOW, evaluation_window=None, seed=1, reason="bench"
    ).version.version
    Registry(settings).promote(MODEL, version, to="staging", report=None, reason="bench")
    promote(settings, MODEL, assess(settings, MODEL, version), to="production", reason="bench")
    return settings


def sample_rows(settings: Settings, onnx: OnnxModel, count: int) -> pd.DataFrame:
    """``count`` real flights of the snapshot, the model's inputs only."""
    spec = load_spec(settings.models_dir, MODEL, policy=load_policy(settings.policy_file))
    frame = build_snapshot(settings, spec, *WINDOW).read()
    frame = frame.sample(n=count, replace=len(frame) < count, random_state=7)
    return frame[list(onnx.inputs)].reset_index(drop=True)


def _values(series: pd.Series, is_string: bool) -> list[Any]:
    if is_string:
        return [None if pd.isna(v) else str(v) for v in series]
    return [None if pd.isna(v) else float(v) for v in series]


def oip_json(rows: pd.DataFrame, strings: set[str]) -> bytes:
    """An OIP v2 JSON infer body (null for missing values)."""
    inputs = [
        {
            "name": name,
            "datatype": "BYTES" if name in strings else "FP32",
            "shape": [len(rows)],
            "data": _values(rows[name], name in strings),
        }
        for name in rows.columns
    ]
    return json.dumps({"inputs": inputs}, separators=(",", ":")).encode()


def predict_json(rows: pd.DataFrame, strings: set[str]) -> bytes:
    """A ``/predict`` body: the model name and one object per flight."""
    columns = {name: _values(rows[name], name in strings) for name in rows.columns}
    flights = [
        dict(zip(columns, values, strict=True)) for values in zip(*columns.values(), strict=True)
    ]
    return json.dumps({"model": MODEL, "flights": flights}, separators=(",", ":")).encode()


def grpc_request(rows: pd.DataFrame, strings: set[str]) -> pb.ModelInferRequest:
    """A ``ModelInferRequest`` with ``raw_input_contents``, as tritonclient sends it."""
    request = pb.ModelInferRequest(model_name=MODEL)
    for name in rows.columns:
        is_string = name in strings
        request.inputs.add(name=name, datatype="BYTES" if is_string else "FP32", shape=[len(rows)])
        if is_string:
            texts = [(v or "").encode() for v in _values(rows[name], True)]
            raw = b"".join(struct.pack("<I", len(t)) + t for t in texts)
        else:
            raw = rows[name].to_numpy(dtype=np.float32).astype("<f4").tobytes()
        request.raw_input_contents.append(raw)
    return request


def session_feed(rows: pd.DataFrame, onnx: OnnxModel) -> dict[str, Any]:
    """The ONNX Runtime inputs of ``rows``, as vigie's batcher hands them to the session."""
    return onnx.feed(rows)


# --- processes -------------------------------------------------------------------------


def tree_cpu(pid: int) -> float:
    """CPU seconds (user + system) of a process and all its descendants."""
    total = 0.0
    with suppress(psutil.NoSuchProcess):
        root = psutil.Process(pid)
        for proc in (root, *root.children(recursive=True)):
            with suppress(psutil.NoSuchProcess):
                times = proc.cpu_times()
                total += times.user + times.system
    return total


def busy_cpu() -> float:
    """CPU seconds the whole machine spent busy (all cores, since boot)."""
    times = psutil.cpu_times()
    return float(sum(times) - times.idle - getattr(times, "iowait", 0.0))


@contextmanager
def servers(
    settings: Settings, model_path: Path, vigie_env: dict[str, str]
) -> Iterator[dict[str, Any]]:
    """vigie and the peer, running on free loopback ports; both stopped by PID on exit."""
    peer, echo_port = free_port(), free_port()
    logs = settings.home / "bench"
    peer_command = [sys.executable, str(ROOT / "loadtests" / "peer_server.py")]
    peer_command += ["--model", str(model_path), "--name", MODEL, "--port", str(peer)]
    echo_command = [sys.executable, str(ROOT / "loadtests" / "grpc_echo_server.py")]
    echo_command += ["--port", str(echo_port)]
    # The peer and the echo server start while vigie does; all three are waited for.
    plain = start_logged(peer_command, dict(os.environ), logs / "peer.log", cwd=ROOT)
    echo = start_logged(echo_command, dict(os.environ), logs / "echo.log", cwd=ROOT)
    env = {**os.environ, **local_service_env(settings), **vigie_env}
    try:
        with ServiceProcess.start(
            settings, logs / "vigie.log", env, cwd=ROOT, timeout=START_TIMEOUT_S
        ) as vigie:
            wait_ready(
                f"http://127.0.0.1:{peer}/v2/health/ready",
                plain,
                "the peer server",
                log=logs / "peer.log",
                timeout=START_TIMEOUT_S,
            )
            wait_listening(
                echo_port,
                echo,
                "the gRPC echo server",
                log=logs / "echo.log",
                timeout=START_TIMEOUT_S,
            )
            yield {
                "rest": vigie.url,
                "grpc": vigie.grpc_target,
                "peer": f"http://127.0.0.1:{peer}",
                "key": vigie.key,
                "echo": f"127.0.0.1:{echo_port}",
                "pids": {"vigie": vigie.process.pid, "peer": plain.pid, "echo": echo.pid},
            }
    finally:
        stop_process(plain)
        stop_process(echo)


# --- measuring -------------------------------------------------------------------------


def summarise(cell: Cell, window: Window, rows: int) -> Cell:
    """Fill a cell from its window."""
    seconds = window.end - window.start
    done = len(window.latencies)
    cell.requests, cell.errors, cell.seconds = done, window.errors, round(seconds, 2)
    cell.rps = round(done / seconds, 1)
    cell.rows_per_s = round(done * rows / seconds, 1)
    if done:
        latencies = np.asarray(window.latencies) * 1000.0
        cell.p50_ms = round(float(np.percentile(latencies, 50)), 3)
        cell.p99_ms = round(float(np.percentile(latencies, 99)), 3)
        for side in ("server", "client"):
            if f"{side}_end" in window.cpu:
                spent = window.cpu[f"{side}_end"] - window.cpu[f"{side}_start"]
                setattr(cell, f"{side}_cpu_ms", round(spent * 1000.0 / done, 3))
    if "busy_end" in window.cpu:
        ours = sum(
            window.cpu.get(f"{side}_end", 0.0) - window.cpu.get(f"{side}_start", 0.0)
            for side in ("server", "client")
        )
        busy = window.cpu["busy_end"] - window.cpu["busy_start"]
        cores = psutil.cpu_count() or 1
        cell.other_cpu_pct = round(max(0.0, busy - ours) * 100.0 / (seconds * cores), 1)
    cell.first_error = window.first_error
    return cell


def cpu_snapshot(window: Window, moment: str, pid: int | None) -> None:
    """Note the CPU time of this process and of the server at ``moment`` (start/end)."""
    window.cpu[f"client_{moment}"] = time.process_time()
    window.cpu[f"busy_{moment}"] = busy_cpu()
    if pid is not None:
        window.cpu[f"server_{moment}"] = tree_cpu(pid)


async def measure_async(
    call: Call, concurrency: int, warmup_s: float, duration_s: float, pid: int | None
) -> Window:
    """``concurrency`` closed-loop clients for a warm-up, then the measured window."""
    now = time.perf_counter()
    window = Window(now + warmup_s, now + warmup_s + duration_s)

    async def client(index: int) -> None:
        while (began := time.perf_counter()) < window.end:
            error: BaseException | None = None
            try:
                await call(index % POOL)
            except Exception as err:  # counted, never fatal: the error column shows it
                error = err
            window.record(began, time.perf_counter(), error)
            index += concurrency

    async def clock() -> None:
        await asyncio.sleep(max(0.0, window.start - time.perf_counter()))
        cpu_snapshot(window, "start", pid)
        await asyncio.sleep(max(0.0, window.end - time.perf_counter()))
        cpu_snapshot(window, "end", pid)

    await asyncio.gather(clock(), *(client(i) for i in range(concurrency)))
    return window


def measure_floor(
    onnx: OnnxModel, feeds: list[dict[str, Any]], concurrency: int, warmup_s: float, dur_s: float
) -> Window:
    """ONNX Runtime in this process: ``concurrency`` threads calling ``session.run``."""
    now = time.perf_counter()
    window = Window(now + warmup_s, now + warmup_s + dur_s)
    lock = threading.Lock()
    session, output = onnx.session, [onnx.output_name]

    def client(index: int) -> None:
        while (began := time.perf_counter()) < window.end:
            session.run(output, feeds[index % POOL])
            with lock:
                window.record(began, time.perf_counter(), None)
            index += concurrency

    threads = [threading.Thread(target=client, args=(i,)) for i in range(concurrency)]
    for thread in threads:
        thread.start()
    time.sleep(max(0.0, window.start - time.perf_counter()))
    window.cpu["server_start"], window.cpu["busy_start"] = time.process_time(), busy_cpu()
    time.sleep(max(0.0, window.end - time.perf_counter()))
    window.cpu["server_end"], window.cpu["busy_end"] = time.process_time(), busy_cpu()
    for thread in threads:
        thread.join()
    return window


# --- the clients of each target ----------------------------------------------------------


def rest_call(client: httpx.AsyncClient, url: str, bodies: list[bytes], key: str | None) -> Call:
    """POST a prepared JSON body; anything but 200 is an error."""
    headers = {"content-type": "application/json"}
    if key is not None:
        headers["authorization"] = f"Bearer {key}"

    async def call(index: int) -> None:
        response = await client.post(url, content=bodies[index], headers=headers)
        if response.status_code != 200:  # noqa: PLR2004
            raise RuntimeError(f"HTTP {response.status_code}: {response.text[:200]}")

    return call


def aiohttp_call(
    session: aiohttp.ClientSession, url: str, bodies: list[bytes], key: str | None
) -> Call:
    """The same POST as :func:`rest_call`, through aiohttp (a lighter client)."""
    headers = {"content-type": "application/json"}
    if key is not None:
        headers["authorization"] = f"Bearer {key}"

    async def call(index: int) -> None:
        async with session.post(url, data=bodies[index], headers=headers) as response:
            body = await response.read()
            if response.status != 200:  # noqa: PLR2004
                raise RuntimeError(f"HTTP {response.status}: {body[:200]!r}")

    return call


def grpc_call(stubs: list[Any], requests: list[pb.ModelInferRequest], key: str) -> Call:
    """``ModelInfer`` over one of several channels (each its own HTTP/2 connection)."""
    metadata = (("authorization", f"Bearer {key}"),)
    turn = [0]

    async def call(index: int) -> None:
        turn[0] += 1
        await stubs[turn[0] % len(stubs)].ModelInfer(requests[index], metadata=metadata)

    return call


@dataclass
class Plan:
    """What to measure, and the prepared payloads of each batch size."""

    concurrencies: list[int]
    batches: list[int]
    warmup_s: float
    duration_s: float
    channels: int
    http_client: str
    rounds: int
    oip: dict[int, list[bytes]]
    predict: dict[int, list[bytes]]
    grpc: dict[int, list[pb.ModelInferRequest]]
    feeds: dict[int, list[dict[str, Any]]]


async def measure_servers(targets: list[str], plan: Plan, where: dict[str, Any]) -> list[Cell]:
    """Every (concurrency, batch) cell of the networked targets, interleaved.

    Each of ``plan.rounds`` rounds measures every cell of every target, the targets of one
    cell one after the other: a ratio compares windows seconds apart, not minutes, on a
    machine whose speed drifts. A cell's result pools its rounds' windows.
    """
    windows: dict[tuple[str, int, int], list[Window]] = {}
    for round_ in range(plan.rounds):
        for concurrency in plan.concurrencies:
            for batch in plan.batches:
                for target in targets:
                    window = await _run_cell(target, plan, where, concurrency, batch)
                    windows.setdefault((target, concurrency, batch), []).append(window)
                    cell = summarise(Cell(target, concurrency, batch), window, batch)
                    print(f"{_row(cell)}  (round {round_ + 1}/{plan.rounds})", flush=True)
    return [
        summarise(Cell(target, concurrency, batch), pooled(found), batch)
        for (target, concurrency, batch), found in sorted(
            windows.items(), key=lambda item: targets.index(item[0][0])
        )
    ]


def pooled(windows: list[Window]) -> Window:
    """One window made of several: latencies pooled, durations and CPU times added."""
    merged = Window(0.0, sum(w.end - w.start for w in windows))
    for window in windows:
        merged.latencies += window.latencies
        merged.errors += window.errors
        merged.first_error = merged.first_error or window.first_error
        for key in {k.rsplit("_", 1)[0] for k in window.cpu}:
            if f"{key}_start" in window.cpu and f"{key}_end" in window.cpu:
                spent = window.cpu[f"{key}_end"] - window.cpu[f"{key}_start"]
                merged.cpu[f"{key}_start"] = 0.0
                merged.cpu[f"{key}_end"] = merged.cpu.get(f"{key}_end", 0.0) + spent
    return merged


async def _run_cell(
    target: str, plan: Plan, where: dict[str, Any], concurrency: int, batch: int
) -> Window:
    timing = (concurrency, plan.warmup_s, plan.duration_s)
    if target in ("vigie-grpc", "grpc-echo"):
        address, pid = (
            (where["grpc"], where["pids"]["vigie"])
            if target == "vigie-grpc"
            else (where["echo"], where["pids"]["echo"])
        )
        options = [("grpc.use_local_subchannel_pool", 1)]
        channels = [
            grpc.aio.insecure_channel(address, options=options)
            for _ in range(min(plan.channels, concurrency))
        ]
        try:
            stubs = [pb_grpc.GRPCInferenceServiceStub(c) for c in channels]  # type: ignore[no-untyped-call]
            call = grpc_call(stubs, plan.grpc[batch], where["key"])
            return await measure_async(call, *timing, pid)
        finally:
            await asyncio.gather(*(c.close() for c in channels))
    if target == "peer-fastapi":
        url, bodies, key = f"{where['peer']}/v2/models/{MODEL}/infer", plan.oip[batch], None
    elif target == "vigie-rest":
        url, bodies, key = f"{where['rest']}/v2/models/{MODEL}/infer", plan.oip[batch], where["key"]
    else:
        url, bodies, key = f"{where['rest']}/predict", plan.predict[batch], where["key"]
    pid = where["pids"]["peer" if target == "peer-fastapi" else "vigie"]
    if plan.http_client == "aiohttp":
        connector = aiohttp.TCPConnector(limit=concurrency)
        async with aiohttp.ClientSession(connector=connector) as session:
            call = aiohttp_call(session, url, bodies, key)
            return await measure_async(call, *timing, pid)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(limits=limits, timeout=30.0) as client:
        return await measure_async(rest_call(client, url, bodies, key), *timing, pid)


async def agreement(plan: Plan, where: dict[str, Any], onnx: OnnxModel) -> dict[str, float]:
    """Largest difference from ONNX Runtime in process, per target, on one 64-row payload."""
    batch = max(plan.batches)
    floor = onnx.session.run([onnx.output_name], plan.feeds[batch][0])[0].reshape(-1)
    auth = {"authorization": f"Bearer {where['key']}", "content-type": "application/json"}
    async with httpx.AsyncClient(timeout=30.0) as client:
        rest = await client.post(
            f"{where['rest']}/v2/models/{MODEL}/infer", content=plan.oip[batch][0], headers=auth
        )
        peer = await client.post(
            f"{where['peer']}/v2/models/{MODEL}/infer",
            content=plan.oip[batch][0],
            headers={"content-type": "application/json"},
        )
        predict = await client.post(
            f"{where['rest']}/predict", content=plan.predict[batch][0], headers=auth
        )
    async with grpc.aio.insecure_channel(where["grpc"]) as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)  # type: ignore[no-untyped-call]
        reply = await stub.ModelInfer(
            plan.grpc[batch][0], metadata=(("authorization", f"Bearer {where['key']}"),)
        )
    answers = {
        "vigie-grpc": np.frombuffer(reply.raw_output_contents[0], dtype="<f4"),
        "vigie-rest": np.asarray(rest.json()["outputs"][0]["data"], dtype=np.float32),
        "vigie-predict": np.asarray(predict.json()["predictions"], dtype=np.float32),
        "peer-fastapi": np.asarray(peer.json()["outputs"][0]["data"], dtype=np.float32),
    }
    return {name: float(np.max(np.abs(values - floor))) for name, values in answers.items()}


def goals(cells: list[Cell]) -> list[dict[str, Any]]:
    """The issue's goals, cell by cell: met or not, and by how much."""
    table = {(c.target, c.concurrency, c.batch): c for c in cells}
    verdicts: list[dict[str, Any]] = []
    for batch in sorted({c.batch for c in cells}):
        peer = table.get(("peer-fastapi", 32, batch))
        for target, factor in (("vigie-grpc", 1.5), ("vigie-rest", 0.8)):
            mine = table.get((target, 32, batch))
            if peer is None or mine is None or not peer.rps:
                continue
            ratio = mine.rps / peer.rps
            verdicts.append(
                {
                    "goal": f"{target} >= {factor}x peer req/s at c=32, p99 no worse",
                    "batch": batch,
                    "ratio": round(ratio, 2),
                    "p99_ms": mine.p99_ms,
                    "peer_p99_ms": peer.p99_ms,
                    "met": ratio >= factor and mine.p99_ms <= peer.p99_ms and not mine.errors,
                }
            )
        echo = table.get(("grpc-echo", 32, batch))
        if peer is not None and echo is not None and peer.rps:
            verdicts.append(
                {
                    "reference": "grpc-echo (a gRPC server doing no work) / peer req/s at c=32",
                    "batch": batch,
                    "ratio": round(echo.rps / peer.rps, 2),
                }
            )
        floor, mine = table.get(("onnxruntime", 1, batch)), table.get(("vigie-grpc", 1, batch))
        if floor is not None and mine is not None:
            gap = mine.p50_ms - floor.p50_ms
            verdicts.append(
                {
                    "goal": "vigie-grpc p50 within 2 ms of the floor at c=1",
                    "batch": batch,
                    "gap_ms": round(gap, 3),
                    "met": gap <= 2.0 and not mine.errors,  # noqa: PLR2004
                }
            )
    return verdicts


HEADER = (
    f"{'target':<14} {'conc':>4} {'batch':>5} {'req/s':>9} {'rows/s':>10} {'p50 ms':>8} "
    f"{'p99 ms':>8} {'errors':>6} {'srv cpu':>8} {'cli cpu':>8} {'other%':>6}"
)


def _row(c: Cell) -> str:
    return (
        f"{c.target:<14} {c.concurrency:>4} {c.batch:>5} {c.rps:>9.1f} {c.rows_per_s:>10.0f} "
        f"{c.p50_ms:>8.2f} {c.p99_ms:>8.2f} {c.errors:>6} {c.server_cpu_ms:>8.2f} "
        f"{c.client_cpu_ms:>8.2f} {c.other_cpu_pct:>6.1f}"
    )


def build_plan(args: argparse.Namespace, rows: pd.DataFrame, onnx: OnnxModel) -> Plan:
    """Prepare every payload once, from the same rows for every target."""
    strings = {name for name, kind in onnx.inputs.items() if kind == "tensor(string)"}
    slices = {b: [rows.iloc[i * b : (i + 1) * b] for i in range(POOL)] for b in args.batch}
    return Plan(
        concurrencies=args.concurrency,
        batches=args.batch,
        warmup_s=args.warmup,
        duration_s=args.duration,
        channels=args.channels,
        http_client=args.http_client,
        rounds=args.rounds,
        oip={b: [oip_json(s, strings) for s in parts] for b, parts in slices.items()},
        predict={b: [predict_json(s, strings) for s in parts] for b, parts in slices.items()},
        grpc={b: [grpc_request(s, strings) for s in parts] for b, parts in slices.items()},
        feeds={b: [session_feed(s, onnx) for s in parts] for b, parts in slices.items()},
    )


async def run_servers(
    plan: Plan, targets: list[str], where: dict[str, Any], onnx: OnnxModel
) -> tuple[list[Cell], dict[str, float]]:
    """Check the answers agree, then measure every networked target."""
    agreed = await agreement(plan, where, onnx)
    networked = [target for target in targets if target != "onnxruntime"]
    return await measure_servers(networked, plan, where), agreed


def measure_all(
    args: argparse.Namespace, settings: Settings, vigie_env: dict[str, str]
) -> dict[str, Any]:
    """Prepare rows and payloads, measure the floor, start the servers, measure them."""
    registry = Registry(settings)
    model_path = registry.open_artifact(MODEL, "production", "model.onnx")
    onnx = OnnxModel(model_path, "cpu")
    plan = build_plan(args, sample_rows(settings, onnx, POOL * max(args.batch)), onnx)
    print(HEADER, flush=True)
    cells: list[Cell] = []
    if "onnxruntime" in args.targets:
        for concurrency in plan.concurrencies:
            for batch in plan.batches:
                window = measure_floor(
                    onnx, plan.feeds[batch], concurrency, args.warmup, args.duration
                )
                cells.append(summarise(Cell("onnxruntime", concurrency, batch), window, batch))
                print(_row(cells[-1]), flush=True)
    # The benchmark's own heap (pandas, the registry, the payloads) stays as it is now: a
    # full collection walking it would stall the client, and show as a server's latency.
    gc.collect()
    gc.freeze()
    with servers(settings, model_path, vigie_env) as where:
        served, agreed = asyncio.run(run_servers(plan, args.targets, where, onnx))
    return {"cells": cells + served, "agreement_max_abs_diff": agreed}


def _commit() -> str:
    """The checked-out commit, with ``+dirty`` when ``src/`` or ``services/`` differ from it."""
    head = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, check=False
    )
    dirty = subprocess.run(
        ["git", "diff", "--quiet", "HEAD", "--", "src", "services"], cwd=ROOT, check=False
    )
    return head.stdout.decode().strip() + ("+dirty" if dirty.returncode else "")


def _json_ready(values: dict[str, Any]) -> dict[str, Any]:
    return {k: None if isinstance(v, float) and math.isnan(v) else v for k, v in values.items()}


def parse_args() -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 32])
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 64])
    parser.add_argument("--targets", nargs="+", choices=TARGETS, default=list(TARGETS))
    parser.add_argument("--warmup", type=float, default=1.0, help="seconds before measuring")
    parser.add_argument("--duration", type=float, default=5.0, help="measured seconds per cell")
    parser.add_argument("--channels", type=int, default=4, help="gRPC connections at most")
    parser.add_argument(
        "--rounds",
        type=int,
        default=3,
        help="times every cell is measured, targets interleaved; a cell pools its rounds",
    )
    parser.add_argument(
        "--http-client",
        choices=("aiohttp", "httpx"),
        default="aiohttp",
        help="REST client: aiohttp spends about 0.3 ms of CPU per request here, httpx 4-6 ms "
        "at 32 connections, which on a shared 2-core machine would measure the client",
    )
    parser.add_argument(
        "--vigie-env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="extra environment of the vigie service (a tuning experiment); repeatable",
    )
    parser.add_argument(
        "--home", type=Path, help="reuse (or prepare and keep) this home instead of a temp one"
    )
    parser.add_argument("--out", default="serving.json", help="file name under VIGIE_HOME/bench")
    return parser.parse_args()


def main() -> None:
    """Run the benchmark, print the table and the goals, write the JSON."""
    args = parse_args()
    vigie_env = dict(item.split("=", 1) for item in args.vigie_env)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="vigie-bench-serving-") as tmp:
        home = args.home or Path(tmp)
        home.mkdir(parents=True, exist_ok=True)
        if (home / "models").exists():
            settings = load_settings(
                home=home, models_dir=home / "models", device="cpu", mode="local"
            )
        else:
            settings = prepare_home(home)
        print(f"registry ready in {time.perf_counter() - started:.0f} s", flush=True)
        measured = measure_all(args, settings, vigie_env)
    cells: list[Cell] = measured["cells"]
    verdicts = goals(cells)
    print()
    print(HEADER)
    for cell in cells:
        print(_row(cell))
    print("\nanswers, largest |difference| from ONNX Runtime in process:")
    print(json.dumps(measured["agreement_max_abs_diff"]))
    print("\ngoals:")
    for verdict in verdicts:
        print(json.dumps(verdict))
    result = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "platform": sys.platform},
        "commit": _commit(),
        "model": MODEL,
        "vigie_env": vigie_env,
        "warmup_s": args.warmup,
        "duration_s": args.duration,
        "rounds": args.rounds,
        "grpc_channels": args.channels,
        "http_client": args.http_client,
        "cells": [_json_ready(asdict(cell)) for cell in cells],
        "agreement_max_abs_diff": measured["agreement_max_abs_diff"],
        "goals": verdicts,
        "total_s": round(time.perf_counter() - started, 1),
    }
    out = load_settings().home / "bench"
    out.mkdir(parents=True, exist_ok=True)
    (out / args.out).write_text(json.dumps(result, indent=2, allow_nan=False, default=str))
    print(f"\nwritten to {out / args.out} in {result['total_s']} s")


if __name__ == "__main__":
    main()
