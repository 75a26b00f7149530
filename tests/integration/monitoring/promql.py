"""What the monitoring tests know about PromQL: metric names in an expression, and the names
that exist (documented in ``docs/metrics.md`` or recorded by ``rules.yml``)."""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[3]
PROMETHEUS_DIR = ROOT / "monitoring" / "prometheus"
RULES = PROMETHEUS_DIR / "rules.yml"
RULE_TESTS = sorted((PROMETHEUS_DIR / "tests").glob("*.yml"))
SCRAPE_CONFIG = PROMETHEUS_DIR / "prometheus.yml"
DASHBOARDS = sorted((ROOT / "monitoring" / "grafana").glob("*.json"))
METRICS_DOC = ROOT / "docs" / "metrics.md"
RUNBOOK = ROOT / "docs" / "runbooks" / "drift.md"

#: Series Prometheus makes itself.
BUILTIN_SERIES = frozenset({"up", "ALERTS", "ALERTS_FOR_STATE"})

_STRINGS = re.compile(r'"(?:\\.|[^"\\])*"|\'(?:\\.|[^\'\\])*\'|`[^`]*`')
_MATCHERS = re.compile(r"\{[^{}]*\}")
_RANGES = re.compile(r"\[[^\[\]]*\]")
_LABEL_LISTS = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)")
# An identifier not glued to a number or another name (so neither `e3` of `1e3` nor the `m`
# of `5m`), with what follows it: a `(` makes it a function or an aggregation.
_IDENTIFIERS = re.compile(r"(?<![\w:.$])([A-Za-z_:][\w:]*)(\s*\()?")
_KEYWORDS = frozenset(
    {
        "and",
        "or",
        "unless",
        "bool",
        "offset",
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
        "inf",
        "nan",
        "atan2",
    }
)
_DOC_TABLE_ROW = re.compile(r"^\|\s*`([A-Za-z_:][\w:]*)`\s*\|\s*([a-z]+)")


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects (functions, keywords and labels left out).

    Args:
        expr: A PromQL expression; Grafana variables inside label matchers or ranges are fine.

    Returns:
        Every bare selector name, e.g. ``{"vigie_requests_total", "up"}``.
    """
    text = _STRINGS.sub('""', expr)
    text = _MATCHERS.sub("", text)
    text = _RANGES.sub("", text)
    text = _LABEL_LISTS.sub("", text)
    names = set()
    for match in _IDENTIFIERS.finditer(text):
        name, call = match.groups()
        if call is None and name.lower() not in _KEYWORDS:
            names.add(name)
    return names


def documented_metrics(doc: Path = METRICS_DOC) -> set[str]:
    """Series names of the ``| metric | type | ...`` tables of ``docs/metrics.md``.

    A histogram documented as ``x`` gives ``x_bucket``, ``x_sum`` and ``x_count``.
    """
    names: set[str] = set()
    in_metric_table = False
    for line in doc.read_text().splitlines():
        if line.startswith("| metric | type |"):
            in_metric_table = True
            continue
        if not line.startswith("|"):
            in_metric_table = False
            continue
        row = _DOC_TABLE_ROW.match(line)
        if in_metric_table and row:
            name, kind = row.groups()
            if kind == "histogram":
                names.update(f"{name}_{suffix}" for suffix in ("bucket", "sum", "count"))
            else:
                names.add(name)
    return names


def rule_groups(path: Path = RULES) -> list[dict[str, Any]]:
    """The rule groups of a Prometheus rules file."""
    groups: list[dict[str, Any]] = yaml.safe_load(path.read_text())["groups"]
    return groups


def rules(path: Path = RULES) -> Iterable[dict[str, Any]]:
    """Every rule (recording and alerting) of a rules file, in file order."""
    for group in rule_groups(path):
        yield from group["rules"]


def alerts(path: Path = RULES) -> list[dict[str, Any]]:
    """The alerting rules of a rules file."""
    return [rule for rule in rules(path) if "alert" in rule]


def recorded_metrics(path: Path = RULES) -> set[str]:
    """Names the recording rules of a rules file write."""
    return {rule["record"] for rule in rules(path) if "record" in rule}


def known_metrics() -> set[str]:
    """Every series name an expression of the rules or dashboards may select."""
    return documented_metrics() | recorded_metrics() | BUILTIN_SERIES


def markdown_anchors(doc: Path) -> set[str]:
    """GitHub-style anchors of a Markdown file's headings (lower case, spaces to dashes)."""
    anchors = set()
    for line in doc.read_text().splitlines():
        if line.startswith("#"):
            title = line.lstrip("#").strip().lower()
            slug = re.sub(r"[^\w\- ]", "", title).replace(" ", "-")
            anchors.add(slug)
    return anchors
