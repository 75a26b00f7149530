"""Write vigie's Prometheus rules and Grafana dashboards as Kubernetes objects.

The alert rules (``monitoring/prometheus/rules.yml``) and the dashboards
(``monitoring/grafana/*.json``) have one source each, beside the Prometheus that runs them
on a laptop. Kustomize reads no file outside its root, so this script copies them into the
``k8s/base/observability`` component:

- ``prometheusrule.yaml``: a PrometheusRule (Prometheus Operator) whose ``spec.groups``
  are the rules file's groups, unchanged;
- ``dashboards.yaml``: one ConfigMap per dashboard, labelled ``grafana_dashboard: "1"``
  (the label Grafana's dashboard sidecar looks for), holding the JSON file as it is.

Run it after changing a rule or a dashboard (``--check`` only says whether the files are
up to date; ``tests/integration/deploy/test_references.py`` fails when they are not)::

    .venv/bin/python k8s/render_observability.py
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
RULES = ROOT / "monitoring" / "prometheus" / "rules.yml"
DASHBOARDS = ROOT / "monitoring" / "grafana"
TARGET = ROOT / "k8s" / "base" / "observability"
PROMETHEUS_RULE = TARGET / "prometheusrule.yaml"
DASHBOARD_CONFIGMAPS = TARGET / "dashboards.yaml"

#: Label that Grafana's dashboard sidecar selects ConfigMaps by.
DASHBOARD_LABEL = "grafana_dashboard"


def _header(source: str) -> str:
    return (
        f"# GENERATED from {source} by k8s/render_observability.py: do not edit here.\n"
        "# Change the source, then run: .venv/bin/python k8s/render_observability.py\n"
    )


class _Dumper(yaml.SafeDumper):
    """Multi-line strings (PromQL expressions, descriptions) as literal blocks."""


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _represent_str)


def _dump(document: dict[str, Any]) -> str:
    return yaml.dump(
        document, Dumper=_Dumper, sort_keys=False, width=100, allow_unicode=True, indent=2
    )


def prometheus_rule(rules_file: Path = RULES) -> dict[str, Any]:
    """The PrometheusRule holding every group of ``rules_file``."""
    groups = yaml.safe_load(rules_file.read_text(encoding="utf-8"))["groups"]
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {
            "name": "vigie",
            "labels": {"app.kubernetes.io/name": "vigie", "app.kubernetes.io/component": "alerts"},
        },
        "spec": {"groups": groups},
    }


def dashboard_configmap(path: Path) -> dict[str, Any]:
    """The ConfigMap of one dashboard file, its text kept byte for byte."""
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": f"vigie-dashboard-{path.stem}",
            "labels": {
                DASHBOARD_LABEL: "1",
                "app.kubernetes.io/name": "vigie",
                "app.kubernetes.io/component": "dashboards",
            },
        },
        "data": {path.name: path.read_text(encoding="utf-8")},
    }


def dashboard_files(folder: Path = DASHBOARDS) -> list[Path]:
    """Every dashboard, in name order."""
    return sorted(folder.glob("*.json"))


def render() -> dict[Path, str]:
    """The text of each generated file, by path."""
    rule = _header(RULES.relative_to(ROOT).as_posix()) + _dump(prometheus_rule())
    maps = [_dump(dashboard_configmap(path)) for path in dashboard_files()]
    source = (DASHBOARDS.relative_to(ROOT) / "*.json").as_posix()
    return {
        PROMETHEUS_RULE: rule,
        DASHBOARD_CONFIGMAPS: _header(source) + "---\n".join(maps),
    }


def stale(rendered: dict[Path, str]) -> list[Path]:
    """The generated files whose committed text differs from ``rendered``."""
    return [
        path
        for path, text in rendered.items()
        if not path.is_file() or path.read_text(encoding="utf-8") != text
    ]


def main(argv: list[str] | None = None) -> int:
    """Write the files (or, with ``--check``, report the stale ones); the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="write nothing; 1 when stale")
    args = parser.parse_args(argv)
    rendered = render()
    outdated = stale(rendered)
    if args.check:
        for path in outdated:
            print(f"stale: {path.relative_to(ROOT)}", file=sys.stderr)
        return 1 if outdated else 0
    for path in outdated:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(rendered[path], encoding="utf-8")
        print(f"wrote {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
