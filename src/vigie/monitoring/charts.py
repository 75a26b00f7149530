"""Geometry of the inline SVG charts of the report pages.

The functions here place points, bars, ticks and reference lines in a fixed view box and
return plain mappings; the templates draw them. Every chart carries its title, its
description and its numbers as a table, so a reader who cannot see it loses nothing.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

#: View box of a line chart, and the margins around its plot area (left, top, right, bottom).
WIDTH, HEIGHT = 560, 240
MARGINS = (60, 18, 20, 46)
#: At most this many window labels under the x axis; the data table has them all.
MAX_X_LABELS = 8
#: Height of one bar of a bar chart, with its gap.
BAR_ROW = 26
#: Width of a bar chart, of its bar labels, and of the value text after a bar.
BAR_WIDTH, BAR_LABEL_WIDTH, BAR_VALUE_WIDTH = 560, 140, 104
#: Characters of a label kept in the drawing (the tables show the full text).
MAX_LABEL = 18

Format = Callable[[float], str]


@dataclass(frozen=True)
class Series:
    """One line of a line chart: a name and one value per window (None where unknown)."""

    name: str
    values: Sequence[float | None]


@dataclass(frozen=True)
class Guide:
    """A horizontal reference line across a line chart, such as a quality gate."""

    label: str
    value: float


@dataclass(frozen=True)
class Bar:
    """One bar of a bar chart, with the threshold it is judged against."""

    label: str
    value: float | None
    threshold: float | None
    flagged: bool


def shorten(text: str, limit: int = MAX_LABEL) -> str:
    """``text`` cut to ``limit`` characters, with an ellipsis when cut."""
    return text if len(text) <= limit else text[: limit - 1] + "\u2026"


def compact(value: float) -> str:
    """A number with at most four significant digits and no trailing zeros ("0.7", "17")."""
    return f"{value:.4g}"


def nice_ticks(low: float, high: float, count: int = 5) -> list[float]:
    """Round tick values covering ``low``..``high``, about ``count`` of them."""
    if not math.isfinite(low) or not math.isfinite(high):
        return [0.0, 1.0]
    if high <= low:
        pad = abs(low) * 0.1 or 1.0
        low, high = low - pad, high + pad
    raw = (high - low) / max(count - 1, 1)
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 2.5, 5, 10) if m * power >= raw)
    first = math.floor(low / step) * step
    ticks = [first]
    while ticks[-1] < high - step * 1e-9:
        ticks.append(ticks[-1] + step)
    return [round(t, 12) for t in ticks]


def _scale(value: float, low: float, high: float, start: float, end: float) -> float:
    return start + (value - low) / (high - low) * (end - start)


def _y_domain(
    series: Sequence[Series], guides: Sequence[Guide], y_range: tuple[float, float] | None
) -> list[float]:
    if y_range is not None:
        return nice_ticks(*y_range)
    known = [v for s in series for v in s.values if v is not None and math.isfinite(v)]
    known += [g.value for g in guides]
    if not known:
        return [0.0, 1.0]
    low, high = min(known), max(known)
    pad = (high - low) * 0.08
    return nice_ticks(low - pad, high + pad)


def _x_positions(count: int) -> list[float]:
    left, _, right, _ = MARGINS
    band = (WIDTH - left - right) / max(count, 1)
    return [round(left + band * (i + 0.5), 2) for i in range(count)]


def _x_labels(labels: Sequence[str], xs: Sequence[float]) -> list[dict[str, Any]]:
    step = max(1, math.ceil(len(labels) / MAX_X_LABELS))
    shown = set(range(len(labels) - 1, -1, -step))
    return [
        {"x": x, "label": shorten(label, 10)}
        for i, (label, x) in enumerate(zip(labels, xs, strict=True))
        if i in shown
    ]


def _series_view(
    series: Series, style: int, xs: Sequence[float], to_y: Callable[[float], float], fmt: Format
) -> dict[str, Any]:
    segments: list[list[str]] = [[]]
    points: list[dict[str, Any]] = []
    for x, value in zip(xs, series.values, strict=True):
        if value is None or not math.isfinite(value):
            segments.append([])
            continue
        y = round(to_y(value), 2)
        segments[-1].append(f"{x},{y}")
        points.append({"x": x, "y": y, "index": len(points), "text": fmt(value)})
    return {
        "name": series.name,
        "style": style % 4,
        "segments": [" ".join(s) for s in segments if len(s) > 1],
        "points": points,
    }


def line_chart(
    chart_id: str,
    title: str,
    description: str,
    labels: Sequence[str],
    series: Sequence[Series],
    *,
    fmt: Format,
    tick_fmt: Format | None = None,
    y_range: tuple[float, float] | None = None,
    guides: Sequence[Guide] = (),
    flags: Sequence[bool] = (),
    flag_label: str = "",
    highlight: int | None = None,
) -> dict[str, Any]:
    """A line chart over windows (oldest first), ready for the ``line_chart`` macro.

    Args:
        chart_id: Unique id on the page (the SVG title and description derive from it).
        title: Short name of the chart, also its accessible name.
        description: What the chart shows and what to read in it, in words.
        labels: One label per window (the x axis).
        series: The lines, each with one value per label.
        fmt: Formats a value for the data table.
        tick_fmt: Formats the values of the y axis ticks (default: :func:`compact`).
        y_range: Fixed value range of the y axis; by default, the data and the guides.
        guides: Horizontal reference lines.
        flags: Per window, whether it is flagged (drawn with a warning marker).
        flag_label: What a flagged window means (legend and table column).
        highlight: Index of the window to mark as the current one.
    """
    left, top, right, bottom = MARGINS
    ticks = _y_domain(series, guides, y_range)
    low, high = ticks[0], ticks[-1]
    xs = _x_positions(len(labels))

    def to_y(value: float) -> float:
        clamped = min(max(value, low), high)
        return _scale(clamped, low, high, HEIGHT - bottom, top)

    views = [_series_view(s, i, xs, to_y, fmt) for i, s in enumerate(series)]
    flag_points = []
    if flags and views:
        by_x = {p["x"]: p for p in views[0]["points"]}
        flag_points = [by_x[x] for x, flag in zip(xs, flags, strict=True) if flag and x in by_x]
    return {
        "id": chart_id,
        "title": title,
        "description": description,
        "width": WIDTH,
        "height": HEIGHT,
        "plot": {"left": left, "top": top, "right": WIDTH - right, "bottom": HEIGHT - bottom},
        "y_ticks": [{"y": round(to_y(t), 2), "label": (tick_fmt or compact)(t)} for t in ticks],
        "x_labels": _x_labels(labels, xs),
        "guides": [{"y": round(to_y(g.value), 2), "label": g.label} for g in guides],
        "series": views,
        "flags": flag_points,
        "flag_label": flag_label,
        "highlight": None if highlight is None else {"x": xs[highlight], "label": "this window"},
        "table": _line_table(labels, series, fmt, flags, flag_label),
    }


def _line_table(
    labels: Sequence[str],
    series: Sequence[Series],
    fmt: Format,
    flags: Sequence[bool],
    flag_label: str,
) -> dict[str, Any]:
    columns = ["Window", *(s.name for s in series)] + ([flag_label] if flags else [])
    rows = []
    for i, label in enumerate(labels):
        values = [s.values[i] for s in series]
        cells = [None if v is None or not math.isfinite(v) else fmt(v) for v in values]
        if flags:
            cells.append("yes" if flags[i] else "no")
        rows.append({"label": label, "cells": cells})
    return {"columns": columns, "rows": rows}


def bar_chart(
    chart_id: str, title: str, description: str, bars: Sequence[Bar], *, fmt: Format
) -> dict[str, Any]:
    """A horizontal bar chart (one bar per feature) with a threshold mark on each bar."""
    top, bottom = 12, 34
    plot_left = BAR_LABEL_WIDTH
    plot_right = BAR_WIDTH - BAR_VALUE_WIDTH
    known = [v for b in bars for v in (b.value, b.threshold) if v is not None and math.isfinite(v)]
    ticks = nice_ticks(0.0, max(known, default=1.0) or 1.0)
    high = ticks[-1]

    def to_x(value: float) -> float:
        return round(_scale(min(max(value, 0.0), high), 0.0, high, plot_left, plot_right), 2)

    rows = []
    for i, bar in enumerate(bars):
        y = top + i * BAR_ROW
        value = bar.value if bar.value is not None and math.isfinite(bar.value) else None
        rows.append(
            {
                "y": y,
                "label": shorten(bar.label),
                "width": 0.0 if value is None else round(to_x(value) - plot_left, 2),
                "end": plot_left if value is None else to_x(value),
                "threshold_x": None if bar.threshold is None else to_x(bar.threshold),
                "text": ("no score" if value is None else fmt(value))
                + (" drifted" if bar.flagged else ""),
                "flagged": bar.flagged,
            }
        )
    height = top + len(bars) * BAR_ROW + bottom
    return {
        "id": chart_id,
        "title": title,
        "description": description,
        "width": BAR_WIDTH,
        "height": height,
        "plot": {"left": plot_left, "right": plot_right, "top": top, "bottom": height - bottom},
        "x_ticks": [{"x": to_x(t), "label": compact(t)} for t in ticks],
        "bars": rows,
        "bar_height": BAR_ROW - 8,
    }
