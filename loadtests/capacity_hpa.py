"""The HorizontalPodAutoscaler of the capacity model (``capacity.py``): read from the
rendered manifests, and its controller.

The HPA is simulated as the autoscaling/v2 controller computes it: per metric
``ceil(ratio * pods)`` with the tolerance, pods that are not ready yet taken as idle on a
scale-up, both stabilisation windows (scale-up: the lowest recent recommendation,
scale-down: the highest), the rate policies over their periods, and the bounds.
"""

from __future__ import annotations

import json
import math
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

# --- the HPA, as written in the manifests ----------------------------------------------


@dataclass(frozen=True)
class Policy:
    """One scaling policy: ``kind`` Pods or Percent, ``value`` per ``period_s``."""

    kind: str
    value: int
    period_s: int


@dataclass(frozen=True)
class Rules:
    """One direction of ``behavior``: stabilisation window, policies, selectPolicy."""

    window_s: int
    policies: tuple[Policy, ...]
    select: str = "Max"
    tolerance: float = 0.1


@dataclass(frozen=True)
class Metric:
    """A metric the HPA scales on: ``cpu`` (target utilisation, 0.7 for 70 %) or ``pods``
    (a per-pod average, here requests per second)."""

    kind: str
    target: float
    name: str = "cpu"


@dataclass(frozen=True)
class HpaSpec:
    """What the simulation needs of a HorizontalPodAutoscaler."""

    name: str
    min_replicas: int
    max_replicas: int
    metrics: tuple[Metric, ...]
    up: Rules
    down: Rules
    ignored: tuple[str, ...] = ()


#: Kubernetes' defaults when ``behavior`` (or one of its fields) is absent.
DEFAULT_UP = Rules(0, (Policy("Percent", 100, 15), Policy("Pods", 4, 15)))
DEFAULT_DOWN = Rules(300, (Policy("Percent", 100, 15),))


def quantity(value: Any) -> float:
    """A Kubernetes quantity as a number ("500m" is 0.5, "2" is 2, "1k" is 1000)."""
    text = str(value)
    for suffix, factor in (("m", 1e-3), ("k", 1e3), ("M", 1e6)):
        if text.endswith(suffix):
            return float(text[: -len(suffix)]) * factor
    return float(text)


def _rules(raw: dict[str, Any] | None, default: Rules) -> Rules:
    raw = raw or {}
    policies = tuple(
        Policy(p["type"], int(p["value"]), int(p["periodSeconds"])) for p in raw.get("policies", [])
    )
    return Rules(
        int(raw.get("stabilizationWindowSeconds", default.window_s)),
        policies or default.policies,
        str(raw.get("selectPolicy", default.select)),
        quantity(raw.get("tolerance", default.tolerance)),
    )


def _metric(raw: dict[str, Any]) -> Metric | None:
    if raw.get("type") == "Resource" and raw["resource"]["name"] == "cpu":
        return Metric("cpu", float(raw["resource"]["target"]["averageUtilization"]) / 100.0)
    if raw.get("type") == "Pods" and raw["pods"]["target"].get("type") == "AverageValue":
        target = quantity(raw["pods"]["target"]["averageValue"])
        return Metric("pods", target, str(raw["pods"]["metric"]["name"]))
    return None


def parse_hpa(doc: dict[str, Any]) -> HpaSpec:
    """An autoscaling/v2 HorizontalPodAutoscaler document as an :class:`HpaSpec`; metrics
    other than CPU utilisation and per-pod averages are listed in ``ignored``."""
    if doc.get("kind") != "HorizontalPodAutoscaler" or doc.get("apiVersion") != "autoscaling/v2":
        raise ValueError(f"not an autoscaling/v2 HorizontalPodAutoscaler: {doc.get('kind')}")
    spec, behavior = doc["spec"], doc["spec"].get("behavior") or {}
    parsed = [(_metric(m), m) for m in spec.get("metrics") or []]
    metrics = tuple(m for m, _ in parsed if m is not None) or (Metric("cpu", 0.8),)
    return HpaSpec(
        name=str(doc["metadata"]["name"]),
        min_replicas=int(spec.get("minReplicas", 1)),
        max_replicas=int(spec["maxReplicas"]),
        metrics=metrics,
        up=_rules(behavior.get("scaleUp"), DEFAULT_UP),
        down=_rules(behavior.get("scaleDown"), DEFAULT_DOWN),
        ignored=tuple(json.dumps(raw, sort_keys=True) for m, raw in parsed if m is None),
    )


def rendered_documents(overlay: Path) -> list[dict[str, Any]]:
    """The documents ``kubectl kustomize`` renders from ``overlay``."""
    text = subprocess.run(
        ["kubectl", "kustomize", str(overlay)], check=True, capture_output=True, text=True
    ).stdout
    return [d for d in yaml.safe_load_all(text) if isinstance(d, dict)]


def find(documents: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    """The document of ``kind`` named ``name``."""
    for doc in documents:
        if doc.get("kind") == kind and doc.get("metadata", {}).get("name") == name:
            return doc
    raise LookupError(f"no {kind} named {name}")


def overlay_bounds(documents: list[dict[str, Any]], name: str, source: str) -> dict[str, Any]:
    """The HPA ``name`` of rendered ``documents``, the CPU its target pod requests (all
    containers: the CPU metric sums them) and its readiness probe period."""
    hpa = find(documents, "HorizontalPodAutoscaler", name)
    try:
        target = find(documents, "Deployment", hpa["spec"]["scaleTargetRef"]["name"])
        containers = target["spec"]["template"]["spec"]["containers"]
    except LookupError:
        containers = []  # an HPA document alone: 1 CPU, Kubernetes' default probe period
    requests = [
        quantity(c.get("resources", {}).get("requests", {}).get("cpu", 0)) for c in containers
    ]
    periods = [
        int(c["readinessProbe"].get("periodSeconds", 10))
        for c in containers
        if "readinessProbe" in c
    ]
    return {
        "spec": parse_hpa(hpa),
        "cpu_request": sum(requests) or 1.0,
        "probe_s": max(periods, default=10),
        "source": source,
    }


# --- the controller ---------------------------------------------------------------------


@dataclass
class HpaState:
    """What the controller remembers between two syncs."""

    replicas: int
    recommendations: list[tuple[float, int]] = field(default_factory=list)
    up_events: list[tuple[float, int]] = field(default_factory=list)
    down_events: list[tuple[float, int]] = field(default_factory=list)


def _within(ratio: float, rules_up: Rules, rules_down: Rules) -> bool:
    if ratio >= 1.0:
        return ratio - 1.0 <= rules_up.tolerance
    return 1.0 - ratio <= rules_down.tolerance


def metric_proposal(ratio: float, ready: int, unready: int, current: int, spec: HpaSpec) -> int:
    """Replicas one metric asks for: ``ratio`` is the ready pods' average over the target;
    pods not ready yet count as idle when scaling up, and are left out otherwise."""
    if ready == 0:
        return current
    if not (unready and ratio > 1.0):
        return current if _within(ratio, spec.up, spec.down) else math.ceil(ratio * ready)
    diluted = ratio * ready / (ready + unready)
    if diluted <= 1.0 or _within(diluted, spec.up, spec.down):
        return current
    return max(current, math.ceil(diluted * (ready + unready)))


def stabilise(state: HpaState, now: float, proposal: int, spec: HpaSpec) -> int:
    """The recommendation kept within both windows' extremes, then remembered."""
    up = down = proposal
    for at, replicas in state.recommendations:
        if at > now - spec.up.window_s:
            up = min(up, replicas)
        if at > now - spec.down.window_s:
            down = max(down, replicas)
    oldest = now - max(spec.up.window_s, spec.down.window_s)
    state.recommendations = [r for r in state.recommendations if r[0] > oldest]
    state.recommendations.append((now, proposal))
    return min(max(state.replicas, up), down)


def _changed(events: list[tuple[float, int]], now: float, period_s: int) -> int:
    return sum(change for at, change in events if at > now - period_s)


def policy_limit(state: HpaState, now: float, rules: Rules, upward: bool) -> int:
    """The most (upward) or fewest replicas the policies allow now."""
    current = state.replicas
    if rules.select == "Disabled":
        return current
    proposals = []
    for policy in rules.policies:
        start = current - _changed(state.up_events, now, policy.period_s)
        start += _changed(state.down_events, now, policy.period_s)
        step = policy.value if policy.kind == "Pods" else start * policy.value / 100.0
        proposals.append(math.ceil(start + step) if upward else int(start - step))
    widest = max if (rules.select == "Max") == upward else min
    return widest(proposals)


def rate_limit(state: HpaState, now: float, desired: int, spec: HpaSpec) -> int:
    """``desired`` within the scaling policies and the replica bounds."""
    current = state.replicas
    if desired > current:
        allowed = min(spec.max_replicas, max(current, policy_limit(state, now, spec.up, True)))
        return min(desired, allowed)
    if desired < current:
        allowed = max(spec.min_replicas, min(current, policy_limit(state, now, spec.down, False)))
        return max(desired, allowed)
    return desired


def reconcile(state: HpaState, now: float, ratios: list[float], ready: int, spec: HpaSpec) -> int:
    """One sync of the controller: the new replica count (``state`` updated)."""
    current = state.replicas
    if current > spec.max_replicas:
        desired = spec.max_replicas
    elif current < spec.min_replicas:
        desired = spec.min_replicas
    else:
        unready = current - ready
        proposal = max(metric_proposal(r, ready, unready, current, spec) for r in ratios)
        desired = rate_limit(state, now, stabilise(state, now, proposal, spec), spec)
    keep = now - max(p.period_s for p in spec.up.policies + spec.down.policies)
    state.up_events = [e for e in state.up_events if e[0] > keep]
    state.down_events = [e for e in state.down_events if e[0] > keep]
    if desired > current:
        state.up_events.append((now, desired - current))
    elif desired < current:
        state.down_events.append((now, current - desired))
    state.replicas = desired
    return desired
