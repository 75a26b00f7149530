"""A day through the HPA, and the steady sizing, of the capacity model (``capacity.py``).

Sync by sync, the ready pods serve what they can (a fluid queue whose requests give up at
the deadline), then the controller of ``capacity_hpa`` sets the replicas from the metric it
reads. Latency is the M/M/c sojourn of ``capacity_queue`` in a pod, plus the time to drain a
backlog while the pods cannot keep up.
"""

from __future__ import annotations

import argparse
import bisect
import math
from collections import deque
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import numpy.typing as npt
from capacity_hpa import HpaSpec, HpaState, reconcile
from capacity_queue import FloatArray, mmc_quantile, sojourn_survival

DAY_S = 86_400
PROTOCOLS = {"vigie-grpc": "OIP gRPC", "vigie-rest": "OIP REST", "vigie-predict": "/predict"}

# --- a day through the HPA ----------------------------------------------------------------


@dataclass(frozen=True)
class Service:
    """A pod as the simulation sees it.

    Attributes:
        mu: Requests per second one worker completes (1 / its time per request).
        workers: Workers that compute at once in a pod (the c of M/M/c).
        cpu_s: CPU seconds a request costs (what the CPU metric sees).
        cpu_request: Cores the pod requests (CPU utilisation is usage over this).
        startup_s: Seconds from the pod's creation to its first request served.
    """

    mu: float
    workers: int
    cpu_s: float
    cpu_request: float
    startup_s: float


@dataclass
class Day:
    """One simulated day, sync by sync (arrays of DAY_S / sync_s values)."""

    load: FloatArray  # requests per second
    replicas: npt.NDArray[np.int64]
    ready: npt.NDArray[np.int64]
    p99_s: FloatArray  # inf where more than 1 % of the sync's requests passed the deadline
    failed: FloatArray  # share of the sync's requests that passed the deadline
    day_p99_s: float  # over every request of the day (a failed one counts as infinite)


def _ratios(spec: HpaSpec, service: Service, served_per_pod: float) -> list[float]:
    cores = served_per_pod * service.cpu_s
    values = {"cpu": cores / service.cpu_request, "pods": served_per_pod}
    return [values[m.kind] / m.target for m in spec.metrics]


def drain(
    queued: float, load: float, capacity: float, sync_s: float, deadline_s: float
) -> tuple[float, float, float]:
    """One sync of a fluid queue: the backlog left, the requests that waited past the
    deadline (answered 504, at no further cost), and the rate the pods served."""
    total = queued + load * sync_s
    served = min(total, capacity * sync_s)
    dropped = max(0.0, total - served - deadline_s * capacity)
    return total - served - dropped, dropped, served / sync_s


def simulate_day(
    spec: HpaSpec,
    service: Service,
    rates: FloatArray,
    *,
    sync_s: int = 15,
    window_s: int = 60,
    deadline_s: float = 10.0,
) -> Day:
    """Replay ``rates`` (requests per second, one per minute) through the controller; the
    metric it reads is the average over the last ``window_s`` seconds."""
    steps = DAY_S // sync_s
    state, ready_at = HpaState(spec.min_replicas), [-math.inf] * spec.min_replicas
    seen: deque[list[float]] = deque(maxlen=max(1, window_s // sync_s))
    load, backlog, dropped = np.zeros(steps), np.zeros(steps), np.zeros(steps)
    replicas, ready = np.zeros(steps, dtype=np.int64), np.zeros(steps, dtype=np.int64)
    queued = 0.0
    for i in range(steps):
        now = i * sync_s
        load[i], replicas[i] = rates[now // 60], state.replicas
        ready[i] = bisect.bisect_right(ready_at, now)
        capacity = ready[i] * service.workers * service.mu
        queued, dropped[i], served = drain(queued, load[i], capacity, sync_s, deadline_s)
        backlog[i] = queued
        seen.append(_ratios(spec, service, served / max(1, ready[i])))
        ratios = [float(np.mean(column)) for column in zip(*seen, strict=True)]
        new = reconcile(state, now, ratios, int(ready[i]), spec)
        ready_at = ready_at[:new] + [now + service.startup_s] * max(0, new - len(ready_at))
    failed = np.divide(dropped, load * sync_s, out=np.zeros(steps), where=load > 0)
    return _latencies(service, Day(load, replicas, ready, np.zeros(steps), failed, 0.0), backlog)


def _latencies(service: Service, day: Day, backlog: FloatArray) -> Day:
    """``day`` with the p99 of each sync and of the day filled in."""
    c, mu = service.workers, service.mu
    capacity = np.maximum(day.ready, 1) * c * mu
    per_pod = np.minimum(day.load / np.maximum(day.ready, 1), 0.99 * c * mu)  # saturated
    wait = backlog / capacity  # the backlog ahead of a request, served at full speed
    p99 = mmc_quantile(per_pod, mu, c, shift=wait)
    p99[day.failed > 0.01] = math.inf
    weights = day.load / day.load.sum()
    low, high = 0.0, float(np.max(np.where(np.isfinite(p99), p99, 0.0))) * 2 + 1.0
    for _ in range(60):  # the day's p99 over every request: a mixture of the syncs
        mid = (low + high) / 2.0
        tail = sojourn_survival(np.maximum(mid - wait, 0.0), per_pod, mu, c)
        tail = day.failed + (1.0 - day.failed) * np.where(mid < wait, 1.0, tail)
        low, high = (mid, high) if float(weights @ tail) > 0.01 else (low, mid)
    share = float(weights @ day.failed)
    day.p99_s, day.day_p99_s = p99, math.inf if share > 0.01 else high
    return day


# --- sizing and the GPU ---------------------------------------------------------------------

#: Measured on an NVIDIA H200 node (docs/serving.md), ms per call: rows -> (CPU, CUDA).
GPU_CALL_MS = {1: (0.055, 0.25), 256: (0.27, 0.37), 65_536: (65_536 / 1.4e3, 65_536 / 2.9e3)}


def gpu_extra_s(rows: int) -> float:
    """Seconds a call of ``rows`` rows takes longer on CUDA than on the CPU (measured
    points, linear between them)."""
    sizes = sorted(GPU_CALL_MS)
    cpu = np.interp(rows, sizes, [GPU_CALL_MS[s][0] for s in sizes])
    gpu = np.interp(rows, sizes, [GPU_CALL_MS[s][1] for s in sizes])
    return float(gpu - cpu) / 1000.0


def pods_for_p99(rate: float, service: Service, target_s: float) -> int | None:
    """Fewest pods that hold ``rate`` requests/s at a p99 of ``target_s`` (steady load);
    None when even an idle pod's p99 is above it."""
    if mmc_quantile(0.0, service.mu, service.workers)[0] > target_s:
        return None
    pods = max(1, math.floor(rate / (service.workers * service.mu)) + 1)
    while mmc_quantile(rate / pods, service.mu, service.workers)[0] > target_s:
        pods += 1
    return pods


def pods_at_target(rate: float, service: Service, spec: HpaSpec) -> int:
    """Pods the HPA settles at under a steady ``rate``: each metric at its target."""
    wanted = {"cpu": rate * service.cpu_s / service.cpu_request, "pods": rate}
    pods = max(math.ceil(wanted[m.kind] / m.target - 1e-9) for m in spec.metrics)
    return max(spec.min_replicas, pods)


# --- the scenarios: every protocol and peak, on CPU nodes and GPU nodes -----------------------


@dataclass(frozen=True)
class Scenario:
    """One simulated day: a protocol, a peak, the nodes and bounds it ran on."""

    protocol: str
    peak: float
    label: str
    day: Day = field(compare=False, repr=False)


def _runs(
    peak: float, service: Service, bounds: dict[str, Any], nodes: str
) -> list[tuple[str, Service, HpaSpec]]:
    """The overlay's bounds, and maxReplicas raised to the steady need when it is higher."""
    spec = bounds["spec"]
    runs = [(f"{nodes}, max {spec.max_replicas}", service, spec)]
    need = pods_at_target(peak, service, spec)
    if need > spec.max_replicas:
        runs.append((f"{nodes}, max raised to {need}", service, replace(spec, max_replicas=need)))
    return runs


def run_scenarios(args: argparse.Namespace, inputs: dict[str, Any]) -> list[Scenario]:
    """Every protocol at 1 row per request and every peak on the prod overlay's CPU nodes;
    gRPC also on the gpu overlay's nodes (VIGIE_DEVICE=cuda)."""
    out = []
    for protocol, peak in ((p, k) for p in PROTOCOLS for k in args.peaks):
        cpu_s = inputs["cells"][(protocol, 1)]["server_cpu_ms"] / 1000.0
        cpu_request = inputs["prod"]["cpu_request"]
        cpu = Service(1.0 / cpu_s, args.workers, cpu_s, cpu_request, inputs["startup_s"])
        runs = _runs(peak, cpu, inputs["prod"], "cpu")
        if protocol == "vigie-grpc" and inputs["gpu"]:
            # gRPC calls are never batched: each pays one model call, longer on CUDA; the
            # waiting thread spins (CUDA's default with fewer contexts than cores), so the
            # CPU metric sees the wait
            slow = cpu_s + gpu_extra_s(1)
            gpu = replace(cpu, mu=1.0 / slow, cpu_s=slow, cpu_request=inputs["gpu"]["cpu_request"])
            runs += _runs(peak, gpu, inputs["gpu"], "gpu")
        for label, service, bounds in runs:
            rates = inputs["rates"][peak]
            kwargs = {"window_s": args.metric_window, "deadline_s": args.deadline_s}
            out.append(
                Scenario(protocol, peak, label, simulate_day(bounds, service, rates, **kwargs))
            )
    return out
