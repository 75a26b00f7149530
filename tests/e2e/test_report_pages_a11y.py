"""The drift sidecar's report pages, opened in headless Chromium and checked with axe-core.

The pages are rendered from realistic window results (two models, drifting with the
seasons, quality passing then failing its gate, labels not yet arrived, retraining
requested), served by a stdlib HTTP server on a free local port, and checked by
``browser/a11y.mjs``: a full-page screenshot of each, then axe-core with the WCAG 2.0 and
2.1 A and AA rules (and axe's best practices). No violation may be serious or critical.
The page of ``vigie audit report`` (the compliance audit, with its gaps and risk register)
is checked the same way.
"""

from __future__ import annotations

import json
import random
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from tests.unit.governance.audit_home import conforming_home, evidence_of, version

from vigie.governance.audit import AuditLog
from vigie.governance.compliance import run_audit
from vigie.governance.compliance_facts import PayloadFacts
from vigie.monitoring.pages import render_index, render_not_found, render_window

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

NUMERIC = [
    "sched_dep_hour", "distance", "temp", "dewp", "humid", "wind_dir", "wind_speed",
    "wind_gust", "precip", "pressure", "visib", "plane_year", "seats", "engines",
]  # fmt: skip
CATEGORICAL = ["month", "day_of_week", "carrier", "origin", "dest", "manufacturer", "engine"]
#: Features that follow the seasons, and so drift as the year goes on.
SEASONAL = {
    "month", "temp", "dewp", "humid", "precip", "visib", "wind_speed", "wind_gust",
    "pressure", "wind_dir", "sched_dep_hour",
}  # fmt: skip


def _feature(rng: random.Random, name: str, pressure: float, rows: int) -> dict[str, Any]:
    numeric = name in NUMERIC
    pressure *= 1.0 if name in SEASONAL else 0.2
    if rows >= 1000:
        stattest = "wasserstein" if numeric else "jensenshannon"
        score = max(0.0, rng.gauss(0.03 + pressure * 0.16, 0.025))
        return {
            "name": name, "kind": "numeric" if numeric else "categorical",
            "stattest": stattest, "score": round(score, 4), "threshold": 0.1,
            "drifted": score >= 0.1, "missing": rng.choice([0, 0, 0, 3, 12]),
        }  # fmt: skip
    # Evidently tests small windows with p-values: drift when below the threshold.
    p_value = min(1.0, max(0.0, rng.betavariate(2, 2) * (1.05 - pressure)))
    return {
        "name": name, "kind": "numeric" if numeric else "categorical",
        "stattest": "ks" if numeric else "chisquare", "score": round(p_value, 4),
        "threshold": 0.05, "drifted": p_value < 0.05, "missing": 0,
    }  # fmt: skip


def window_result(
    model: str, version: str, index: int, *, rows: int, pressure: float, quality: Any
) -> dict[str, Any]:
    """One realistic window result, as the sidecar stores it."""
    rng = random.Random(f"{model}/{version}/{index}")
    features = [_feature(rng, n, pressure, rows) for n in NUMERIC + CATEGORICAL]
    drifted = sum(f["drifted"] for f in features)
    start = datetime(2013, 3, 1, tzinfo=UTC) + timedelta(days=9 * index)
    # flight_delay predicts a probability, arrival_delay a delay in minutes.
    scale = 1.0 if model == "flight_delay" else 40.0
    mean = (0.18 + pressure * 0.12) * scale
    return {
        "model": model, "version": version, "window_id": f"{index:06d}", "kind": "count",
        "start": start.isoformat(), "end": (start + timedelta(days=8, hours=20)).isoformat(),
        "analysed_at": (start + timedelta(days=9, minutes=3)).isoformat(),
        "rows": rows, "reference_rows": rows,
        "drift": {
            "share_drifted": round(drifted / len(features), 4), "drifted_count": drifted,
            "columns_count": len(features), "dataset_drift": drifted / len(features) >= 0.5,
            "features": features,
        },
        "prediction": {
            "mean": round(mean, 4),
            "quantiles": {"0.5": round(mean * 0.85, 4), "0.9": round(mean * 2, 4),
                          "0.99": round(min(mean * 3.4, 0.99 * scale), 4)},
            "drift": {"stattest": "wasserstein", "score": round(pressure * 0.21, 4),
                      "threshold": 0.1, "drifted": pressure * 0.21 >= 0.1},
        },
        "quality": quality,
        "bad_input": {"missing_feature": rng.choice([0, 0, 2]), "corrupt_entry": 0,
                      "unknown_model": rng.choice([0, 1])},
        "consecutive_drift": 0, "retraining_requested": False,
        "report_html": "report.html", "report_json": "snapshot.json",
    }  # fmt: skip


def classification_quality(auc: float, coverage: float) -> dict[str, Any]:
    brier = round(0.12 + (0.74 - auc) * 0.9, 4)
    return {
        "labelled_rows": round(5000 * coverage), "label_coverage": coverage,
        "task": "classification", "metrics": {"roc_auc": auc, "brier": brier},
        "gates": {"roc_auc": {"min": 0.7}, "brier": {"max": 0.2}},
        "passed": auc >= 0.7 and brier <= 0.2,
    }  # fmt: skip


def realistic_results() -> list[dict[str, Any]]:
    """Windows of flight_delay v2 and v3 (drifting into summer) and arrival_delay v1."""
    results = []
    for i in range(1, 5):
        quality = classification_quality(0.73 - i * 0.004, 1.0)
        results.append(
            window_result("flight_delay", "2", i, rows=5000, pressure=0.1, quality=quality)
        )
    consecutive = 0
    for i in range(1, 13):
        pressure = min(1.0, max(0.0, (i - 3) / 8))
        quality = (
            None if i == 12 else classification_quality(round(0.745 - pressure * 0.09, 4), 0.84)
        )
        window = window_result(
            "flight_delay", "3", i, rows=5000, pressure=pressure, quality=quality
        )
        consecutive = consecutive + 1 if window["drift"]["dataset_drift"] else 0
        window["consecutive_drift"] = consecutive
        window["retraining_requested"] = consecutive == 2
        if i == 12:
            window["report_html"] = window["report_json"] = None
        results.append(window)
    for i in range(1, 7):
        mae = round(14.5 + i * 0.9, 3)
        quality = None if i > 4 else {
            "labelled_rows": 610, "label_coverage": 0.76, "task": "regression",
            "metrics": {"mae": mae, "rmse": round(mae * 1.6, 3)}, "gates": {"mae": {"max": 17.0}},
            "passed": mae <= 17.0,
        }  # fmt: skip
        results.append(
            window_result("arrival_delay", "1", i, rows=800, pressure=i / 6, quality=quality)
        )
    return results


def health(results: list[dict[str, Any]]) -> dict[str, Any]:
    requested = [r for r in results if r["retraining_requested"]]
    return {
        "status": "ok", "last_poll": "2013-07-18T10:04:05+00:00",
        "last_analysis": "2013-07-18T10:03:58+00:00", "entries_read": 69_412,
        "outcomes_read": 51_870, "labels_known": 48_002, "last_error": None,
        "open_windows": {"flight_delay/3": 1_870, "arrival_delay/1": 312},
        "bad_input": {"missing_feature": 6, "corrupt_entry": 1},
        "retraining_requests": [
            {"model": r["model"], "version": r["version"], "requested_at": r["analysed_at"],
             "windows": [f"{int(r['window_id']) - k:06d}" for k in (2, 1, 0)],
             "features": [f["name"] for f in r["drift"]["features"] if f["drifted"]][:6]}
            for r in requested
        ],
    }  # fmt: skip


def write_site(root: Path, results: list[dict[str, Any]]) -> None:
    """The pages as files where the sidecar would serve them."""
    (root / "index.html").write_text(render_index(results, health(results)))
    (root / "missing.html").write_text(render_not_found("No window 000099 for flight_delay 3."))
    for result in results:
        folder = root / "models" / result["model"] / "versions" / result["version"]
        folder = folder / "windows" / result["window_id"]
        folder.mkdir(parents=True)
        history = [r for r in results if r["model"] == result["model"]]
        (folder / "index.html").write_text(render_window(result, history=history))


class QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        """Keep the test output clean."""


@dataclass(frozen=True)
class Site:
    url: str
    root: Path


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    """The rendered pages, served on 127.0.0.1 on a free port for the length of a test."""
    root = tmp_path / "site"
    root.mkdir()
    write_site(root, realistic_results())
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(QuietHandler, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield Site(f"http://127.0.0.1:{server.server_address[1]}", root)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def test_report_pages_meet_wcag_aa_in_chromium(
    node: str, a11y_script: Path, site: Site, tmp_path: Path
) -> None:
    pages = [
        f"{site.url}/",
        f"{site.url}/models/flight_delay/versions/3/windows/000009",
        f"{site.url}/models/arrival_delay/versions/1/windows/000006",
        f"{site.url}/missing.html",
    ]
    shots = tmp_path / "screenshots"
    run = subprocess.run(
        [node, str(a11y_script), str(shots), *pages],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert run.returncode in {0, 1}, f"the check did not run:\n{run.stderr}\n{run.stdout}"
    report = json.loads(run.stdout)
    assert [p["url"] for p in report["pages"]] == pages
    blocking = [
        (p["url"], v["id"], v["impact"], v["help"], [n["target"] for n in v["nodes"]])
        for p in report["pages"]
        for v in p["violations"]
        if v["impact"] in {"serious", "critical"}
    ]
    assert not blocking, json.dumps(blocking, indent=1)
    assert report["blocking"] == 0 and run.returncode == 0
    for page in report["pages"]:
        screenshot = Path(page["screenshot"])
        assert screenshot.parent == shots and screenshot.stat().st_size > 1000, page["url"]
        assert page["externalRequests"] == [], page["externalRequests"]
        assert page["errors"] == [], page["errors"]
        assert page["passes"] > 10
    titles = [p["title"] for p in report["pages"]]
    assert titles[1].startswith("Window 000009 of flight_delay version 3")
    assert titles[3].startswith("Page not found")


@contextmanager
def served(root: Path) -> Iterator[str]:
    """``root`` served on 127.0.0.1 on a free port; yields its URL."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(QuietHandler, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def audit_report_site(home: Path, site: Path) -> None:
    """The page of ``vigie audit report`` over a home with conforming items, gaps of every
    kind (an erasure left undone, a version without its card, a damaged payload log, a raw
    copy in the landing zone: an open risk) and the risk register."""
    settings, services = conforming_home(home)
    AuditLog(settings.audit_log_path).append(
        "data-1", "governance.erase", "p_2", "failure", details={"subject": "p_2"}
    )
    (home / "landing" / "planes").mkdir(parents=True)
    damaged = PayloadFacts("payload", 9, unreadable=(("000001:000000000042", "not JSON"),))
    services = replace(
        services,
        versions=(version(), version("arrival_delay", files={"model.onnx": "a" * 64})),
        payload=damaged,
    )
    run_audit(
        evidence_of(settings, services),
        reports_dir=settings.reports_dir,
        audit_log=settings.audit_log_path,
        actor="auditor-1",
        out=site,
    )


def test_compliance_audit_report_meets_wcag_aa_in_chromium(
    node: str, a11y_script: Path, tmp_path: Path
) -> None:
    site = tmp_path / "audit"
    audit_report_site(tmp_path / "home", site)
    document = json.loads((site / "audit_report.json").read_text())
    assert document["summary"]["gap"] >= 4 and document["summary"]["conforms"] >= 4
    shots = tmp_path / "screenshots"
    with served(site) as url:
        run = subprocess.run(
            [node, str(a11y_script), str(shots), f"{url}/audit_report.html"],
            capture_output=True, text=True, timeout=300, check=False,
        )  # fmt: skip
    assert run.returncode in {0, 1}, f"the check did not run:\n{run.stderr}\n{run.stdout}"
    page = json.loads(run.stdout)["pages"][0]
    blocking = [
        (v["id"], v["impact"], v["help"], [n["target"] for n in v["nodes"]])
        for v in page["violations"]
        if v["impact"] in {"serious", "critical"}
    ]
    assert not blocking, json.dumps(blocking, indent=1)
    assert run.returncode == 0
    assert page["title"].startswith("Compliance audit report")
    assert Path(page["screenshot"]).stat().st_size > 1000
    assert page["externalRequests"] == [] and page["errors"] == []
    assert page["passes"] > 10


def test_documentation_site_meets_wcag_aa_in_chromium(
    node: str, a11y_script: Path, tmp_path: Path
) -> None:
    """Pages of the documentation site (``mkdocs.yml``: the index, a role's training, a
    specification, an architecture view and a decision record), built and checked alike."""
    import sys

    pytest.importorskip("mkdocs", reason="mkdocs is in the dev extra (make setup)")
    site = tmp_path / "docs-site"
    build = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
        cwd=Path(__file__).resolve().parents[2], capture_output=True, text=True, timeout=300,
        check=False,
    )  # fmt: skip
    assert build.returncode == 0, f"mkdocs build --strict failed:\n{build.stderr}"
    paths = [
        "/", "/training/sre/", "/training/application-developer/", "/specs/ai-solution/",
        "/architecture/containers/", "/architecture/decisions/0001-bentoml-with-in-worker-grpc/",
    ]  # fmt: skip
    with served(site) as url:
        run = subprocess.run(
            [node, str(a11y_script), str(tmp_path / "docs-screenshots")]
            + [f"{url}{path}" for path in paths],
            capture_output=True, text=True, timeout=300, check=False,
        )  # fmt: skip
    assert run.returncode in {0, 1}, f"the check did not run:\n{run.stderr}\n{run.stdout}"
    report = json.loads(run.stdout)
    blocking = [
        (p["url"], v["id"], v["impact"], v["help"], [n["target"] for n in v["nodes"]])
        for p in report["pages"]
        for v in p["violations"]
        if v["impact"] in {"serious", "critical"}
    ]
    assert not blocking, json.dumps(blocking, indent=1)
    assert run.returncode == 0
    for page in report["pages"]:
        assert Path(page["screenshot"]).stat().st_size > 1000, page["url"]
        assert page["externalRequests"] == [] and page["errors"] == [], page["url"]
        assert page["passes"] > 10, page["url"]
    titles = [p["title"] for p in report["pages"]]
    assert titles[0] == "vigie" and titles[1] == "Onboarding for SREs - vigie", titles
