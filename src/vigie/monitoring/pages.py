"""HTML report pages of the drift sidecar: the index and one page per analysed window.

The sidecar keeps each window's result as a JSON-ready mapping; these functions turn
such mappings into self-contained pages (inline CSS and SVG, nothing fetched) meant to
meet WCAG 2.1 AA. Any key of a result may be absent or null except ``model``,
``version`` and ``window_id``: a page then says what is not known rather than failing.
The HTTP shell that serves them lives elsewhere; nothing here knows about requests.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from typing import Any

import jinja2

from vigie.monitoring.charts import Bar, Guide, Series, bar_chart, compact, line_chart
from vigie.monitoring.page_views import (
    MAX_WINDOWS,
    anchor,
    as_float,
    as_mapping,
    bad_input_view,
    badge,
    count,
    decimal,
    features_view,
    gated_metrics,
    humanize,
    index_url,
    moment,
    natural_key,
    percent,
    prediction_view,
    quality_view,
    window_summary,
    window_url,
)

#: Features drawn in the drift bar chart of a window page (the table lists them all).
MAX_CHART_FEATURES = 30


@functools.cache
def _environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.PackageLoader("vigie.monitoring", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def _render(template: str, **context: Any) -> str:
    return _environment().get_template(template).render(**context)


def render_index(
    results: Sequence[Mapping[str, Any]], health: Mapping[str, Any], *, base: str = ""
) -> str:
    """The index page: every model and version, their recent windows, and sidecar health.

    Args:
        results: Window results of any models and versions, in any order.
        health: The sidecar's health mapping (status, last poll, retraining requests...).
        base: Path prefix under which the sidecar is served (no trailing slash).

    Returns:
        The page as HTML.
    """
    base = base.rstrip("/")
    grouped: dict[str, dict[str, list[Mapping[str, Any]]]] = {}
    for result in results:
        versions = grouped.setdefault(str(result["model"]), {})
        versions.setdefault(str(result["version"]), []).append(result)
    models = []
    for model in sorted(grouped, key=natural_key):
        versions = grouped[model]
        ordered = sorted(versions, key=natural_key, reverse=True)
        models.append(
            {
                "name": model,
                "anchor": anchor("model", model),
                "versions": [_version_view(model, v, versions[v], base) for v in ordered],
            }
        )
    return _render(
        "index.html.j2",
        models=models,
        health=_health_view(health, base),
        windows_total=len(results),
        index_url=index_url(base),
    )


def _health_status(status: object) -> dict[str, str]:
    if status is None:
        return badge("neutral", "dash", "Not reported")
    text = str(status)
    label = humanize(text).capitalize()
    if text.lower() == "ok":
        return badge("good", "check", "OK")
    if text.lower() == "starting":
        return badge("neutral", "clock", label)
    if text.lower() in {"stalled", "error", "failed", "down"}:
        return badge("bad", "cross", label)
    return badge("warn", "alert", label)


def _retraining_request(request: Mapping[str, Any], base: str) -> dict[str, Any]:
    model, version = request.get("model"), request.get("version")
    windows = request.get("windows")
    features = request.get("features")
    linkable = model is not None and version is not None
    return {
        "model": None if model is None else str(model),
        "version": None if version is None else str(version),
        "requested_at": moment(request.get("requested_at")),
        "windows": [
            {"id": str(w), "url": window_url(base, str(model), str(version), str(w))}
            if linkable
            else {"id": str(w), "url": None}
            for w in (windows if isinstance(windows, list) else [])
        ],
        "features": [str(f) for f in (features if isinstance(features, list) else [])],
    }


def _health_view(health: Mapping[str, Any], base: str) -> dict[str, Any]:
    """The sidecar's health as the index shows it."""
    requests = health.get("retraining_requests")
    items = [
        _retraining_request(r, base)
        for r in (requests if isinstance(requests, list) else [])
        if isinstance(r, Mapping)
    ]
    items.sort(key=lambda r: (r["requested_at"] or {}).get("iso") or "", reverse=True)
    filling = as_mapping(health.get("open_windows"))
    error = health.get("last_error")
    return {
        "status": _health_status(health.get("status")),
        "last_error": str(error) if error else None,
        "labels_known": count(health.get("labels_known")),
        "open_windows": [
            {"name": str(name), "rows": count(rows)}
            for name, rows in sorted(filling.items(), key=lambda item: natural_key(str(item[0])))
        ],
        "last_poll": moment(health.get("last_poll")),
        "last_analysis": moment(health.get("last_analysis")),
        "entries_read": count(health.get("entries_read")),
        "outcomes_read": count(health.get("outcomes_read")),
        "bad_input": bad_input_view(health.get("bad_input")),
        "requests": items,
    }


def _newest_first(windows: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    by_id = {str(w["window_id"]): w for w in windows}
    return [by_id[k] for k in sorted(by_id, key=natural_key, reverse=True)]


def _version_view(
    model: str, version: str, windows: Sequence[Mapping[str, Any]], base: str
) -> dict[str, Any]:
    newest = _newest_first(windows)
    shown = newest[:MAX_WINDOWS]
    prefix = anchor("version", model, version)
    trend = list(reversed(shown))
    charts = [_drift_chart(f"{prefix}-drift", model, version, trend, None)]
    metrics = gated_metrics(shown)
    if metrics:
        charts.append(_quality_chart(f"{prefix}-q0", metrics[0], trend, None))
    return {
        "name": version,
        "anchor": prefix,
        "count": len(newest),
        "windows": [window_summary(w, base) for w in shown],
        "latest": window_summary(shown[0], base),
        "charts": charts,
    }


def render_window(
    result: Mapping[str, Any], *, history: Sequence[Mapping[str, Any]] = (), base: str = ""
) -> str:
    """The page of one window: summary, feature drift, predictions, quality, bad input.

    Args:
        result: The window's result.
        history: Earlier windows of the same model and version, for the trend charts.
        base: Path prefix under which the sidecar is served (no trailing slash).

    Returns:
        The page as HTML.
    """
    base = base.rstrip("/")
    model, version = str(result["model"]), str(result["version"])
    current = str(result["window_id"])
    same = [
        w
        for w in history
        if str(w["model"]) == model
        and str(w["version"]) == version
        and natural_key(str(w["window_id"])) < natural_key(current)
    ]
    trend = list(reversed(_newest_first([*same, result])[:MAX_WINDOWS]))
    here = len(trend) - 1
    drift = as_mapping(result.get("drift"))
    features = features_view(drift)
    quality = quality_view(result.get("quality"))
    metrics = [m["name"] for m in quality["metrics"]] if quality else []
    return _render(
        "window.html.j2",
        window=window_summary(result, base),
        model_anchor=anchor("model", model),
        version_anchor=anchor("version", model, version),
        index_url=index_url(base),
        features=features,
        feature_charts=_feature_charts(features),
        prediction=prediction_view(result.get("prediction")),
        quantile_chart=_quantile_chart(trend, here),
        quality=quality,
        quality_charts=[
            _quality_chart(f"quality-{i}", m, trend, here) for i, m in enumerate(metrics)
        ],
        drift_chart=_drift_chart("drift-trend", model, version, trend, here),
        bad_input=bad_input_view(result.get("bad_input")),
    )


def render_not_found(message: str, *, base: str = "") -> str:
    """A friendly "not found" page that says what was missing and links to the index."""
    return _render("not_found.html.j2", message=message, index_url=index_url(base.rstrip("/")))


def _span(labels: Sequence[str]) -> str:
    if not labels:
        return "no window"
    if len(labels) == 1:
        return f"window {labels[0]}"
    return f"the {len(labels)} windows from {labels[0]} to {labels[-1]}"


def _windows(number: int) -> str:
    return f"{number} window" if number == 1 else f"{number} windows"


def _listing(labels: Sequence[str], limit: int = 6) -> str:
    more = f" and {len(labels) - limit} more" if len(labels) > limit else ""
    return ", ".join(labels[:limit]) + more


def _drift_chart(
    chart_id: str,
    model: str,
    version: str,
    trend: Sequence[Mapping[str, Any]],
    here: int | None,
) -> dict[str, Any]:
    labels = [str(w["window_id"]) for w in trend]
    drifts = [as_mapping(w.get("drift")) for w in trend]
    shares = [as_float(d.get("share_drifted")) for d in drifts]
    flags = [d.get("dataset_drift") is True for d in drifts]
    known = [s for s in shares if s is not None]
    flagged = [label for label, flag in zip(labels, flags, strict=True) if flag]
    words = f"Share of drifted features in {_span(labels)} of {model} version {version}."
    if known:
        words += f" It ranges from {percent(min(known))} to {percent(max(known))}."
    words += (
        f" Dataset drift in {_windows(len(flagged))}: {_listing(flagged)}."
        if flagged
        else " No window shows dataset drift."
    )
    return line_chart(
        chart_id,
        "Share of drifted features per window",
        words,
        labels,
        [Series("Share drifted", shares)],
        fmt=lambda v: percent(v) or "",
        tick_fmt=lambda v: f"{v * 100:.0f}%",
        y_range=(0.0, 1.0),
        flags=flags,
        flag_label="Dataset drift",
        highlight=here,
    )


def _quality_chart(
    chart_id: str, metric: str, trend: Sequence[Mapping[str, Any]], here: int | None
) -> dict[str, Any]:
    labels = [str(w["window_id"]) for w in trend]
    views = [quality_view(w.get("quality")) for w in trend]
    by_name = [{m["name"]: m for m in v["metrics"]} if v else {} for v in views]
    values = [as_float(m[metric]["raw"]) if metric in m else None for m in by_name]
    flags = [metric in m and m[metric]["passed"] is False for m in by_name]
    gate: dict[str, float] = next((m[metric]["gate"] for m in reversed(by_name) if metric in m), {})
    guides = [Guide(f"gate: {k} {compact(v)}", v) for k, v in gate.items()]
    failing = [label for label, flag in zip(labels, flags, strict=True) if flag]
    gate_words = " and ".join(f"{k} {decimal(v)}" for k, v in gate.items()) or "no gate"
    words = (
        f"{metric} of each labelled window among {_span(labels)}, against its gate "
        f"({gate_words}). "
        + (f"Failing the gate: {_listing(failing)}." if failing else "No window fails the gate.")
    )
    return line_chart(
        chart_id,
        f"{metric} per window",
        words,
        labels,
        [Series(metric, values)],
        fmt=lambda v: decimal(v) or "",
        guides=guides,
        flags=flags,
        flag_label="Fails gate",
        highlight=here,
    )


def _quantile_chart(trend: Sequence[Mapping[str, Any]], here: int) -> dict[str, Any]:
    labels = [str(w["window_id"]) for w in trend]
    views = [prediction_view(w.get("prediction")) for w in trend]
    names: list[str] = []
    for view in views:
        names += [q["name"] for q in view["quantiles"] if q["name"] not in names] if view else []
    series = [Series("mean", [as_float(v["mean_raw"]) if v else None for v in views])]
    for name in names:
        values = [
            next((q["raw"] for q in v["quantiles"] if q["name"] == name), None) if v else None
            for v in views
        ]
        series.append(Series(name, values))
    words = (
        f"Mean and quantiles ({', '.join(names) or 'none known'}) of the predictions "
        f"in {_span(labels)}; window {labels[here]} is marked."
    )
    return line_chart(
        "prediction-trend",
        "Prediction mean and quantiles per window",
        words,
        labels,
        series,
        fmt=lambda v: decimal(v) or "",
        highlight=here,
    )


def _feature_charts(features: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    charts = []
    for direction, rule in (
        ("distance", "a feature drifts when its score reaches the threshold"),
        ("p-value", "a feature drifts when its p-value falls below the threshold"),
    ):
        group = [f for f in features if f["direction"] == direction]
        if not group:
            continue
        drawn = group[:MAX_CHART_FEATURES]
        drifted = [f["name"] for f in group if f["drifted"]]
        words = (
            f"Drift score of {len(drawn)} of {len(group)} features tested by a {direction} "
            f"test, highest drift first, each with a mark at its threshold; {rule}. "
            + (f"Drifted: {_listing(drifted)}." if drifted else "No feature drifted.")
            + " Every score is listed in the table of features below."
        )
        bars = [Bar(f["name"], f["score_raw"], f["threshold_raw"], f["drifted"]) for f in drawn]
        charts.append(
            bar_chart(
                f"features-{direction}",
                f"Feature drift scores ({direction} tests)",
                words,
                bars,
                fmt=lambda v: decimal(v) or "",
            )
            | {"shown": len(drawn), "total": len(group), "direction": direction}
        )
    return charts


__all__ = ["render_index", "render_not_found", "render_window"]
