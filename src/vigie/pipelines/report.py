"""The data-quality report of a run, as JSON (for machines) and HTML (for data engineers)."""

from __future__ import annotations

import json
import os
from importlib import resources
from pathlib import Path
from typing import Any

import jinja2

from vigie.pipelines.lineage import RunRecord

#: Why each correction is safe, as the report explains it.
CORRECTION_REASONS = {
    "normalized_code": "Code trimmed and upper-cased to its reference form; same member.",
    "clock_2400": "Midnight written as 2400 rewritten as 0000; dates come from the delays, "
    "not from this clock, so nothing else changes.",
    "out_of_range_set_null": "Physically impossible sensor reading (for example a 1,048 mph "
    "wind) set to null; the rest of the observation is sound and kept.",
}


def build_report(
    record: RunRecord,
    samples: dict[str, list[dict[str, Any]]],
    declared: dict[str, list[str]],
    gaps: list[dict[str, Any]],
) -> dict[str, Any]:
    """The report as a JSON-ready mapping.

    Args:
        record: The run.
        samples: Up to a few quarantined records per table (key and reasons).
        declared: Every check declared per table, so passed checks are listed too.
        gaps: Missing dimension members and how they were loaded.
    """
    checks = []
    for stats in record.tables:
        names = sorted(set(declared.get(stats.table, [])) | set(stats.failures))
        checks += [
            {"table": stats.table, "check": n, "failed": stats.failures.get(n, 0)} for n in names
        ]
    corrections = [
        {
            "table": s.table,
            "correction": name,
            "rows": rows,
            "why": CORRECTION_REASONS.get(name, ""),
        }
        for s in record.tables
        for name, rows in sorted(s.corrections.items())
    ]
    return {
        "run": record.to_dict(),
        "checks": checks,
        "corrections": corrections,
        "gaps": gaps,
        "samples": samples,
        "balanced": all(t.balanced for t in record.tables),
    }


def write_report(folder: Path, report: dict[str, Any]) -> tuple[Path, Path]:
    """Write ``quality.json`` and ``quality.html`` for the run, and refresh ``latest``."""
    run_dir = folder / "pipeline" / report["run"]["run_id"]
    run_dir.mkdir(parents=True, exist_ok=True)
    json_path, html_path = run_dir / "quality.json", run_dir / "quality.html"
    json_path.write_text(json.dumps(report, indent=2, default=str))
    template = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined).from_string(
        (resources.files("vigie.pipelines") / "templates" / "quality.html.j2").read_text()
    )
    html_path.write_text(template.render(**report))
    latest = folder / "pipeline" / "latest"
    tmp = folder / "pipeline" / ".latest.tmp"
    if tmp.is_symlink() or tmp.exists():
        tmp.unlink()
    tmp.symlink_to(run_dir.name)
    os.replace(tmp, latest)
    return json_path, html_path
