"""The capacity model (loadtests/capacity.py and its capacity_*.py modules): the HPA controller
against cases computed by hand, the traffic of a day of the 2013 schedule, and the M/M/c
formulas at known values.

``loadtests/`` is a folder of scripts, not a package. The script imports its sibling modules
by their plain names (its folder is on ``sys.path`` when it runs), so the folder is put on
``sys.path`` here too; the script itself is loaded from its file, under a name of its own.
This folder has no ``__init__.py`` on purpose: with one, pytest would import it as a
package named ``loadtests`` and hide the top-level folder of that name.
"""

from __future__ import annotations

import importlib
import importlib.util
import math
import sys
from datetime import date
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[3]
LOADTESTS = ROOT / "loadtests"
CAPACITY = LOADTESTS / "capacity.py"


def _load() -> ModuleType:
    if str(LOADTESTS) not in sys.path:
        sys.path.append(str(LOADTESTS))  # after the rest: a script name shadows nothing
    spec = importlib.util.spec_from_file_location("vigie_loadtests_capacity", CAPACITY)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while being built
    spec.loader.exec_module(module)
    return module


cap = _load()
capacity_queue = importlib.import_module("capacity_queue")
capacity_hpa = importlib.import_module("capacity_hpa")
capacity_day = importlib.import_module("capacity_day")
capacity_report = importlib.import_module("capacity_report")

HPA_DOC: dict[str, Any] = yaml.safe_load("""
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata: {name: vigie-prediction}
spec:
  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: vigie-prediction}
  minReplicas: 2
  maxReplicas: 12
  metrics:
    - type: Resource
      resource: {name: cpu, target: {type: Utilization, averageUtilization: 70}}
    - type: Pods
      pods:
        metric: {name: vigie_requests_per_second}
        target: {type: AverageValue, averageValue: "800"}
    - type: External
      external: {metric: {name: queue}, target: {type: Value, value: "1"}}
  behavior:
    scaleUp:
      stabilizationWindowSeconds: 30
      selectPolicy: Max
      policies:
        - {type: Pods, value: 4, periodSeconds: 60}
        - {type: Percent, value: 50, periodSeconds: 60}
    scaleDown:
      stabilizationWindowSeconds: 300
      policies:
        - {type: Pods, value: 1, periodSeconds: 60}
""")


def spec(**changes: Any) -> Any:
    """1 to 20 replicas on CPU at 70 %, Kubernetes' default behavior, unless changed."""
    fields = {
        "name": "t",
        "min_replicas": 1,
        "max_replicas": 20,
        "metrics": (capacity_hpa.Metric("cpu", 0.7),),
        "up": capacity_hpa.DEFAULT_UP,
        "down": capacity_hpa.DEFAULT_DOWN,
    }
    return capacity_hpa.HpaSpec(**{**fields, **changes})


# --- the manifest ----------------------------------------------------------------------


def test_parse_hpa_reads_bounds_targets_and_behavior() -> None:
    parsed = capacity_hpa.parse_hpa(HPA_DOC)
    assert (parsed.name, parsed.min_replicas, parsed.max_replicas) == ("vigie-prediction", 2, 12)
    assert parsed.metrics == (
        capacity_hpa.Metric("cpu", 0.7),
        capacity_hpa.Metric("pods", 800.0, "vigie_requests_per_second"),
    )
    assert len(parsed.ignored) == 1 and "External" in parsed.ignored[0]
    assert parsed.up == capacity_hpa.Rules(
        30, (capacity_hpa.Policy("Pods", 4, 60), capacity_hpa.Policy("Percent", 50, 60)), "Max", 0.1
    )
    assert parsed.down.window_s == 300 and parsed.down.policies == (
        capacity_hpa.Policy("Pods", 1, 60),
    )


def test_parse_hpa_without_behavior_takes_kubernetes_defaults() -> None:
    doc = {**HPA_DOC, "spec": {**HPA_DOC["spec"], "behavior": None}}
    parsed = capacity_hpa.parse_hpa(doc)
    assert parsed.up.window_s == 0 and parsed.down.window_s == 300
    assert parsed.up.policies == (
        capacity_hpa.Policy("Percent", 100, 15),
        capacity_hpa.Policy("Pods", 4, 15),
    )


def test_parse_hpa_refuses_another_kind() -> None:
    with pytest.raises(ValueError, match="autoscaling/v2"):
        capacity_hpa.parse_hpa({**HPA_DOC, "apiVersion": "autoscaling/v1"})


def test_overlay_bounds_sum_the_pods_cpu_requests_and_read_the_probe() -> None:
    deployment = yaml.safe_load("""
kind: Deployment
metadata: {name: vigie-prediction}
spec:
  template:
    spec:
      containers:
        - name: serve
          resources: {requests: {cpu: "1"}, limits: {cpu: "2"}}
          readinessProbe: {periodSeconds: 5}
        - name: sidecar
          resources: {requests: {cpu: 250m}}
""")
    bounds = capacity_hpa.overlay_bounds([deployment, HPA_DOC], "vigie-prediction", "test")
    assert (bounds["cpu_request"], bounds["probe_s"]) == (1.25, 5)
    alone = capacity_hpa.overlay_bounds([HPA_DOC], "vigie-prediction", "test")
    assert (alone["cpu_request"], alone["probe_s"], alone["spec"].max_replicas) == (1.0, 10, 12)


@pytest.mark.parametrize(("text", "value"), [("500m", 0.5), ("2", 2.0), ("1k", 1000.0)])
def test_quantity(text: str, value: float) -> None:
    assert capacity_hpa.quantity(text) == value


# --- the controller ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ratio", "expected"),
    [(1.08, 4), (0.92, 4), (1.2, 5), (0.7, 3), (2.0, 8)],
)
def test_tolerance_band_keeps_the_count_within_ten_percent(ratio: float, expected: int) -> None:
    assert capacity_hpa.metric_proposal(ratio, 4, 0, 4, spec()) == expected


def test_pods_not_ready_count_as_idle_when_scaling_up() -> None:
    # 2 ready at 150 %: with 2 starting pods counted idle the average is 75 %: no scale
    assert capacity_hpa.metric_proposal(1.5, 2, 2, 4, spec()) == 4
    # 2 ready at 300 %: 150 % over 4 pods, so ceil(1.5 * 4) = 6
    assert capacity_hpa.metric_proposal(3.0, 2, 2, 4, spec()) == 6


def test_scale_down_stabilisation_holds_replicas_for_the_window() -> None:
    state, hpa = capacity_hpa.HpaState(10), spec()
    seen = [capacity_hpa.reconcile(state, 0.0, [1.0], 10, hpa)]
    for now in range(15, 301, 15):
        seen.append(capacity_hpa.reconcile(state, float(now), [0.2], 10, hpa))
    # ceil(0.2 * 10) = 2 is asked from 15 s on; the 10 asked at 0 s leaves the window at 300 s
    assert seen[:-1] == [10] * 20
    assert seen[-1] == 2


def test_scale_up_stabilisation_takes_the_lowest_recent_recommendation() -> None:
    up = capacity_hpa.Rules(60, capacity_hpa.DEFAULT_UP.policies)
    state, hpa = capacity_hpa.HpaState(4), spec(up=up)
    seen = [capacity_hpa.reconcile(state, 0.0, [1.0], 4, hpa)]
    for now in (15.0, 30.0, 45.0, 60.0):
        seen.append(capacity_hpa.reconcile(state, now, [2.0], 4, hpa))
    # 8 is asked from 15 s on, but the 4 asked at 0 s is the lowest until it leaves at 60 s
    assert seen == [4, 4, 4, 4, 8]


def test_the_period_starts_before_the_pods_removed_in_it() -> None:
    # 10 -> 6 a few seconds ago: the period started at 10, so 4 pods/60 s allow 14
    up = capacity_hpa.Rules(0, (capacity_hpa.Policy("Pods", 4, 60),))
    state = capacity_hpa.HpaState(6, down_events=[(0.0, 4)])
    assert capacity_hpa.reconcile(state, 15.0, [10.0], 6, spec(up=up)) == 14


def test_scale_up_is_limited_by_the_pods_policy_per_period() -> None:
    up = capacity_hpa.Rules(0, (capacity_hpa.Policy("Pods", 4, 60),))
    state, hpa = capacity_hpa.HpaState(2), spec(up=up)
    assert capacity_hpa.reconcile(state, 0.0, [10.0], 2, hpa) == 6  # asked 20, at most 2 + 4
    assert (
        capacity_hpa.reconcile(state, 15.0, [10.0], 2, hpa) == 6
    )  # 4 already added in this period
    assert capacity_hpa.reconcile(state, 60.0, [10.0], 6, hpa) == 10  # the period moved on


def test_default_scale_up_takes_the_larger_policy() -> None:
    # from 1 pod: 100 % gives 2, 4 pods gives 5; selectPolicy Max takes 5
    assert capacity_hpa.reconcile(capacity_hpa.HpaState(1), 0.0, [10.0], 1, spec()) == 5


@pytest.mark.parametrize(("select", "expected"), [("Max", 5), ("Min", 9)])
def test_scale_down_select_policy(select: str, expected: int) -> None:
    down = capacity_hpa.Rules(
        0, (capacity_hpa.Policy("Percent", 50, 60), capacity_hpa.Policy("Pods", 1, 60)), select
    )
    assert (
        capacity_hpa.reconcile(capacity_hpa.HpaState(10), 0.0, [0.1], 10, spec(down=down))
        == expected
    )


def test_min_and_max_replicas_clamp() -> None:
    hpa = spec(min_replicas=5, max_replicas=20)
    assert capacity_hpa.reconcile(capacity_hpa.HpaState(3), 0.0, [0.1], 3, hpa) == 5
    assert capacity_hpa.reconcile(capacity_hpa.HpaState(30), 0.0, [5.0], 30, hpa) == 20
    wide = capacity_hpa.Rules(0, (capacity_hpa.Policy("Percent", 900, 15),))
    assert capacity_hpa.reconcile(capacity_hpa.HpaState(10), 0.0, [10.0], 10, spec(up=wide)) == 20
    assert capacity_hpa.reconcile(capacity_hpa.HpaState(6), 0.0, [0.01], 6, hpa) == 5


def test_a_step_of_load_is_followed_late_and_the_backlog_shows_in_the_p99() -> None:
    service = capacity_day.Service(mu=100.0, workers=1, cpu_s=0.01, cpu_request=1.0, startup_s=60.0)
    rates = np.zeros(1440)
    rates[600:] = 500.0  # 500 requests/s from 10:00: ceil(500 / 70) = 8 pods at 70 %
    day = capacity_day.simulate_day(spec(max_replicas=20), service, rates)
    step = 600 * 60 // 15
    assert day.replicas[step - 1] == 1 and day.replicas[-1] == 8
    first_full = int(np.argmax(day.ready >= 8))
    assert first_full > int(np.argmax(day.replicas >= 8))  # pods serve start-up seconds later
    assert day.p99_s[step + 1] > 1.0 > day.p99_s[-1]  # a backlog, then drained
    assert math.isfinite(day.day_p99_s)


# --- the traffic ---------------------------------------------------------------------------


def test_minutes_of_sched_dep_time() -> None:
    frame = pd.DataFrame(
        {"year": 2013, "month": 7, "day": 1, "sched_dep_time": [0, 59, 100, 100, 2359]}
    )
    counts = capacity_queue.flights_per_minute(frame, date(2013, 7, 1))
    assert len(counts) == 1440
    assert (counts[0], counts[59], counts[60], counts[1439], counts.sum()) == (1, 1, 2, 1, 5)


def test_a_real_day_sums_to_its_flights_and_has_two_peaks() -> None:
    flights = capacity_queue.read_flights()
    day = capacity_queue.busiest_weekday(flights, 2013, 7)
    assert day.month == 7 and day.weekday() < 5
    on_day = flights[(flights["month"] == 7) & (flights["day"] == day.day)]
    counts = capacity_queue.flights_per_minute(flights, day)
    assert counts.sum() == len(on_day)
    hourly = counts.reshape(24, 60).sum(axis=1)
    night = hourly[1:4].max()
    assert hourly[5:10].max() > 3 * max(night, 1) and hourly[15:21].max() > 3 * max(night, 1)


def test_load_curve_peaks_at_the_peak_asked() -> None:
    counts = np.zeros(1440, dtype=np.int64)
    counts[[360, 361, 1080]] = [30, 10, 5]
    curve = capacity_queue.load_curve(counts, 10_000.0, 15)
    assert curve.max() == pytest.approx(10_000.0)
    assert curve[360] > curve[1080] > 0.0 and curve[0] == 0.0


# --- the queue --------------------------------------------------------------------------------


def test_erlang_c_known_values() -> None:
    assert float(capacity_queue.erlang_c(1, 0.5)) == pytest.approx(0.5)
    assert float(capacity_queue.erlang_c(2, 1.0)) == pytest.approx(1 / 3)


def test_mm1_p99_is_exponential_with_rate_mu_minus_lambda() -> None:
    assert capacity_queue.mmc_quantile(5.0, 10.0, 1)[0] == pytest.approx(
        math.log(100) / 5.0, rel=1e-6
    )


def test_mmc_p99_at_no_load_is_the_service_alone() -> None:
    assert capacity_queue.mmc_quantile(1e-9, 10.0, 4)[0] == pytest.approx(
        math.log(100) / 10.0, rel=1e-6
    )


def test_pods_for_p99() -> None:
    service = capacity_day.Service(mu=100.0, workers=1, cpu_s=0.01, cpu_request=1.0, startup_s=0.0)
    # 2 pods: 75/s each, p99 ln(100)/25 = 184 ms; 3 pods: 50/s, 92 ms
    assert capacity_day.pods_for_p99(150.0, service, 0.1) == 3
    assert capacity_day.pods_at_target(150.0, service, spec()) == 3  # 1.5 cores at 70 % of 1 core


def test_gpu_costs_more_than_the_cpu_for_one_row() -> None:
    assert capacity_day.gpu_extra_s(1) == pytest.approx(0.000195)
    assert capacity_day.gpu_extra_s(65_536) < 0.0


def test_write_doc_replaces_the_generated_block_only(tmp_path: Path) -> None:
    doc = tmp_path / "capacity.md"
    doc.write_text(f"# title\n{capacity_report.BEGIN}\nold\n{capacity_report.END}\n## after\n")
    capacity_report.write_doc(doc, "new")
    assert (
        doc.read_text()
        == f"# title\n{capacity_report.BEGIN}\nnew\n{capacity_report.END}\n## after\n"
    )


def test_a_request_waiting_past_the_deadline_is_dropped() -> None:
    # 100 queued + 300 arriving, 200 served; the deadline keeps 2 s * 20/s = 40 waiting
    left, dropped, served = capacity_day.drain(100.0, 30.0, 20.0, 10.0, 2.0)
    assert (left, dropped, served) == (40.0, 160.0, 20.0)
    assert capacity_day.drain(0.0, 5.0, 20.0, 10.0, 2.0) == (0.0, 0.0, 5.0)


def test_over_runs_names_the_minutes_over_the_target() -> None:
    over = np.zeros(1440, dtype=bool)
    over[[353, 354, 355, 383]] = True
    assert capacity_report.over_runs(over) == "05:53-05:55, 06:23"
    assert capacity_report.over_runs(np.zeros(1440, dtype=bool)) == "none"


def test_model_command_rewrites_the_docs_block_by_default() -> None:
    args = cap.parse_args(["model", "--bench", "b.json", "--startup", "s.json"])
    assert (args.command, args.bench, args.startup) == ("model", Path("b.json"), Path("s.json"))
    assert (args.doc, args.chart) == (ROOT / "docs" / "capacity.md", ROOT / "docs" / "capacity.png")
    assert args.overlay == ROOT / "k8s" / "overlays" / "prod" and args.hpa is None
    assert args.peaks == [1_000.0, 10_000.0, 100_000.0] and args.p99_ms == 50.0
