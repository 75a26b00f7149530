"""What the report pages show of a window result, already checked and formatted.

A window result may lack any key (an analysis still running, labels not yet arrived, an
older sidecar), so every value is read defensively here and reaches the templates either
formatted or as None, which they show as "not available". Statuses are badges that carry
a word and an icon as well as a colour, so no status depends on colour alone.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

#: Windows listed (and charted) per version on the index and in a window's trend charts.
MAX_WINDOWS = 50

#: Evidently tests whose score is a p-value: a feature drifts when it falls *below* the
#: threshold. Other tests score a distance that drifts when it reaches the threshold.
P_VALUE_TESTS = frozenset(
    {
        "anderson",
        "chisquare",
        "cramer_von_mises",
        "empirical_mmd",
        "epps_singleton",
        "fisher_exact",
        "g_test",
        "ks",
        "mannw",
        "t_test",
        "z",
    }
)
DISTANCE_TESTS = frozenset(
    {"ed", "energy_distance", "hellinger", "jensenshannon", "kl_div", "psi", "wasserstein"}
)

_SAFE_ID = re.compile(r"^[A-Za-z0-9_-]+$")


def natural_key(text: str) -> tuple[tuple[int, int, str], ...]:
    """Sort key that orders digit runs by value ("v2" before "v10", "9" before "10")."""
    return tuple(
        (0, int(part), "") if part.isdigit() else (1, 0, part)
        for part in re.split(r"(\d+)", text)
        if part
    )


def anchor(kind: str, *parts: str) -> str:
    """A stable HTML id for a model or version section, whatever characters its name has."""
    joined = "-".join(parts)
    if _SAFE_ID.match(joined):
        return f"{kind}-{joined}"
    slug = re.sub(r"[^A-Za-z0-9]+", "-", joined).strip("-")[:40]
    digest = hashlib.sha256("\x00".join(parts).encode()).hexdigest()[:8]
    return f"{kind}-{slug}-{digest}" if slug else f"{kind}-{digest}"


def index_url(base: str) -> str:
    """URL of the index page under ``base``."""
    return f"{base}/"


def window_url(base: str, model: str, version: str, window_id: str) -> str:
    """URL of a window's page; every name is one escaped path segment."""
    segments = (quote(str(s), safe="") for s in (model, version, window_id))
    return "{}/models/{}/versions/{}/windows/{}".format(base, *segments)


def as_float(value: object) -> float | None:
    """``value`` as a finite float, or None (booleans and text are not numbers here)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def as_mapping(value: object) -> Mapping[str, Any]:
    """``value`` if it is a mapping, else an empty one."""
    return value if isinstance(value, Mapping) else {}


def count(value: object) -> str | None:
    """A count with thousands separators."""
    number = as_float(value)
    return None if number is None else f"{round(number):,}"


def percent(value: object) -> str | None:
    """A share (0..1) as a percentage with one decimal."""
    number = as_float(value)
    return None if number is None else f"{number * 100:.1f}%"


def decimal(value: object) -> str | None:
    """A score or metric, to three decimals (fewer for large values)."""
    number = as_float(value)
    if number is None:
        return None
    return f"{number:,.1f}" if abs(number) >= 1000 else f"{number:.3f}"


def moment(value: object) -> dict[str, str | None] | None:
    """An ISO time as ``{"iso", "text"}`` (UTC when it has a zone); other text as is."""
    if value is None or value == "":
        return None
    text = str(value)
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return {"iso": None, "text": text}
    if parsed.tzinfo is not None:
        parsed = parsed.astimezone(UTC)
    shown = f"{parsed:%Y-%m-%d %H:%M}" + (f":{parsed:%S}" if parsed.second else "")
    return {"iso": text, "text": shown + (" UTC" if parsed.tzinfo is not None else "")}


def badge(tone: str, icon: str, label: str) -> dict[str, str]:
    """A status shown as colour (tone), icon and words together."""
    return {"tone": tone, "icon": icon, "label": label}


def humanize(code: object) -> str:
    """``missing_feature`` as "missing feature"."""
    return str(code).replace("_", " ").strip() or str(code)


def drift_status(drift: Mapping[str, Any]) -> dict[str, str]:
    """Dataset drift, drift in some features, no drift, or not analysed."""
    if not drift:
        return badge("neutral", "dash", "Not analysed")
    if drift.get("dataset_drift") is True:
        return badge("bad", "alert", "Dataset drift")
    drifted, share = as_float(drift.get("drifted_count")), as_float(drift.get("share_drifted"))
    if (drifted or 0) > 0 or (share or 0) > 0:
        return badge("warn", "alert", "Partial drift")
    if drifted is None and share is None and drift.get("dataset_drift") is None:
        return badge("neutral", "dash", "Unknown")
    return badge("good", "check", "No drift")


def _flag_status(flag: object, yes: str, no: str) -> dict[str, str]:
    if flag is True:
        return badge("bad", "alert", yes)
    if flag is False:
        return badge("good", "check", no)
    return badge("neutral", "dash", "Unknown")


def _report_link(base_url: str, name: object) -> str | None:
    if not isinstance(name, str) or not name:
        return None
    return f"{base_url}/{quote(name)}"


def window_summary(result: Mapping[str, Any], base: str) -> dict[str, Any]:
    """The facts of a window shown on both the index and its own page."""
    model, version, window_id = (str(result[k]) for k in ("model", "version", "window_id"))
    url = window_url(base, model, version, window_id)
    drift = as_mapping(result.get("drift"))
    prediction_drift = as_mapping(as_mapping(result.get("prediction")).get("drift"))
    quality = quality_view(result.get("quality"))
    kind = result.get("kind")
    return {
        "model": model,
        "version": version,
        "window_id": window_id,
        "url": url,
        "kind": None if kind is None else str(kind),
        "start": moment(result.get("start")),
        "end": moment(result.get("end")),
        "analysed_at": moment(result.get("analysed_at")),
        "rows": count(result.get("rows")),
        "reference_rows": count(result.get("reference_rows")),
        "drift": drift_status(drift),
        "share": percent(drift.get("share_drifted")),
        "drifted_count": count(drift.get("drifted_count")),
        "columns_count": count(drift.get("columns_count")),
        "prediction_drift": _flag_status(prediction_drift.get("drifted"), "Drifted", "Stable"),
        "quality": quality,
        "quality_status": quality["status"] if quality else badge("neutral", "clock", "No labels"),
        "consecutive_drift": count(result.get("consecutive_drift")),
        "freshness": freshness_view(result.get("features"), result.get("rows")),
        "retraining": result.get("retraining_requested") is True,
        "report_html": _report_link(url, result.get("report_html")),
        "report_json": _report_link(url, result.get("report_json")),
    }


def freshness_view(features: object, rows: object) -> dict[str, Any] | None:
    """How many rows the service enriched from its online store, and how fresh: the oldest
    source age per family (minutes) and the rows served stale; None when none enriched."""
    found = as_mapping(features)
    enriched = found.get("enriched_rows")
    if not isinstance(enriched, int) or enriched <= 0:
        return None
    ages = as_mapping(found.get("max_age_s"))
    stale = as_mapping(found.get("stale_rows"))
    families = sorted(set(ages) | set(stale))
    return {
        "enriched": count(enriched),
        "share": percent(enriched / rows) if isinstance(rows, int) and rows > 0 else None,
        "families": [
            {
                "name": str(name),
                "max_age_min": f"{(as_float(ages.get(name)) or 0.0) / 60.0:.0f}",
                "stale": count(stale.get(name, 0)),
            }
            for name in families
        ],
        "stale_rows": sum(v for v in stale.values() if isinstance(v, int)),
    }


def _gate_text(gate: Mapping[str, float]) -> str | None:
    low, high = gate.get("min"), gate.get("max")
    if low is not None and high is not None:
        return f"between {decimal(low)} and {decimal(high)}"
    if low is not None:
        return f"at least {decimal(low)}"
    return None if high is None else f"at most {decimal(high)}"


def _metric_view(name: str, value: object, gate_spec: object) -> dict[str, Any]:
    spec = as_mapping(gate_spec)
    gate = {k: v for k in ("min", "max") if (v := as_float(spec.get(k))) is not None}
    raw = as_float(value)
    passed = None
    if gate and raw is not None:
        passed = raw >= gate.get("min", raw) and raw <= gate.get("max", raw)
    if passed is None:
        status = badge("neutral", "dash", "No gate" if not gate else "Not computed")
    else:
        status = badge("good", "check", "Passed") if passed else badge("bad", "cross", "Failed")
    return {
        "name": name,
        "raw": raw,
        "value": decimal(raw),
        "gate": gate,
        "gate_text": _gate_text(gate),
        "passed": passed,
        "status": status,
    }


def quality_view(quality: object) -> dict[str, Any] | None:
    """Quality of a window with labels (metrics checked against their gates), or None."""
    if not isinstance(quality, Mapping):
        return None
    values, gates = as_mapping(quality.get("metrics")), as_mapping(quality.get("gates"))
    names = [str(n) for n in gates] + sorted(str(n) for n in values if n not in gates)
    metrics = [_metric_view(n, values.get(n), gates.get(n)) for n in names]
    passed = quality.get("passed")
    if not isinstance(passed, bool):
        checked = [m["passed"] for m in metrics if m["passed"] is not None]
        passed = all(checked) if checked else None
    if passed is None:
        status = badge("neutral", "dash", "No gate")
    else:
        status = (
            badge("good", "check", "Gates passed")
            if passed
            else badge("bad", "cross", "Gates failed")
        )
    task = quality.get("task")
    return {
        "labelled_rows": count(quality.get("labelled_rows")),
        "label_coverage": percent(quality.get("label_coverage")),
        "task": None if task is None else str(task),
        "metrics": metrics,
        "passed": passed,
        "status": status,
        "failing": [m["name"] for m in metrics if m["passed"] is False],
    }


def gated_metrics(windows: Sequence[Mapping[str, Any]]) -> list[str]:
    """Metrics worth charting, from the newest window with quality: gated ones first."""
    for window in windows:
        quality = quality_view(window.get("quality"))
        if quality and quality["metrics"]:
            gated = [m["name"] for m in quality["metrics"] if m["gate"]]
            return gated or [quality["metrics"][0]["name"]]
    return []


def _direction(
    stattest: str | None, score: float | None, threshold: float | None, flag: object
) -> str:
    name = (stattest or "").lower()
    if name in P_VALUE_TESTS:
        return "p-value"
    if name in DISTANCE_TESTS or score is None or threshold is None or not isinstance(flag, bool):
        return "distance"
    # An unknown test: it scores a p-value if it drifted exactly when below the threshold.
    return "p-value" if flag == (score < threshold) else "distance"


def _severity(direction: str, score: float | None, threshold: float | None) -> float | None:
    """Score relative to its threshold, oriented so that 1 or more means drift."""
    if score is None:
        return None
    if direction == "distance":
        return score / threshold if threshold else score
    if not threshold:
        return 1.0 - score
    return threshold / score if score > 0 else math.inf


def _feature_row(item: Mapping[str, Any]) -> dict[str, Any]:
    score, threshold = as_float(item.get("score")), as_float(item.get("threshold"))
    stattest = None if item.get("stattest") is None else str(item.get("stattest"))
    direction = _direction(stattest, score, threshold, item.get("drifted"))
    return {
        "name": str(item["name"]),
        "kind": None if item.get("kind") is None else str(item.get("kind")),
        "stattest": stattest,
        "direction": direction,
        "score": decimal(score),
        "score_raw": score,
        "threshold": decimal(threshold),
        "threshold_raw": threshold,
        "drifted": item.get("drifted") is True,
        "status": _flag_status(item.get("drifted"), "Drifted", "Stable"),
        "missing": count(item.get("missing")),
        "severity": _severity(direction, score, threshold),
    }


def _feature_order(row: Mapping[str, Any]) -> tuple[bool, bool, float, tuple[Any, ...]]:
    severity: float | None = row["severity"]
    return (not row["drifted"], severity is None, -(severity or 0.0), natural_key(row["name"]))


def features_view(drift: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The features of a drift result, drifted first, then by how far past their threshold."""
    features = drift.get("features")
    items = features if isinstance(features, Sequence) else ()
    rows = [
        _feature_row(item)
        for item in items
        if isinstance(item, Mapping) and item.get("name") is not None
    ]
    return sorted(rows, key=_feature_order)


def _quantile_name(key: object) -> str:
    level = as_float(key) if not isinstance(key, str) else _parse_float(key)
    return str(key) if level is None else f"p{level * 100:g}"


def _parse_float(text: str) -> float | None:
    try:
        return as_float(float(text))
    except ValueError:
        return None


def prediction_view(prediction: object) -> dict[str, Any] | None:
    """Mean, quantiles and drift of a window's predictions, or None."""
    if not isinstance(prediction, Mapping):
        return None
    quantiles = as_mapping(prediction.get("quantiles"))
    levels = sorted(quantiles, key=lambda k: (_parse_float(str(k)) is None, _parse_float(str(k))))
    drift = as_mapping(prediction.get("drift"))
    stattest = drift.get("stattest")
    return {
        "mean": decimal(prediction.get("mean")),
        "mean_raw": as_float(prediction.get("mean")),
        "quantiles": [
            {
                "name": _quantile_name(k),
                "raw": as_float(quantiles[k]),
                "value": decimal(quantiles[k]),
            }
            for k in levels
        ],
        "drift": {
            "stattest": None if stattest is None else str(stattest),
            "score": decimal(drift.get("score")),
            "threshold": decimal(drift.get("threshold")),
            "status": _flag_status(drift.get("drifted"), "Drifted", "Stable"),
        }
        if drift
        else None,
    }


def bad_input_view(bad_input: object) -> dict[str, Any]:
    """Bad input counts per kind (largest first) and their total."""
    counted = sorted(
        ((as_float(v) or 0.0, humanize(k)) for k, v in as_mapping(bad_input).items()),
        key=lambda item: (-item[0], item[1]),
    )
    kinds = [{"kind": kind, "count": count(number) or "0"} for number, kind in counted]
    total = sum(number for number, _ in counted)
    return {"kinds": kinds, "total": count(total), "any": total > 0, "known": bad_input is not None}
