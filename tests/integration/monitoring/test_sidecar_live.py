"""The drift sidecar over a real registry: real references, Evidently reports, HTTP shell.

Payload entries are built from real flights of the trained window (no drift expected)
and from the same flights with the weather of a hot summer day (drift expected), written
to the payload log the way the serving data plane writes them; outcomes come from the
warehouse through the outcome log. The sidecar process (``monitoring/sidecar.py``) is then
started on a free port and read back over HTTP.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest

from vigie.config import Settings, load_settings
from vigie.events.outcomes import OutcomeEvent, OutcomeLog
from vigie.events.segments import SegmentSink
from vigie.governance.audit import AuditLog
from vigie.monitoring.sidecar import Monitor, read_requests
from vigie.registry import Registry
from vigie.serving.auth import create_key
from vigie.serving.harness import wait_ready
from vigie.training.snapshot import build_snapshot
from vigie.training.spec import load_spec

from ..serving.running import ROOT, WINDOW, free_port
from .conftest import StartPrometheus
from .prometheus_server import ScrapeTarget

ROWS = 400  # window size
# A stormy July afternoon: the weather, the month, the calendar and the origin's recent
# delays all move (18 of the 29 features).
HOT = {
    "temp": 88.0,
    "dewp": 70.0,
    "humid": 60.0,
    "pressure": 1008.0,
    "wind_speed": 16.0,
    "wind_gust": 20.0,
    "wind_dir": 200.0,
    "visib": 6.0,
    "precip": 0.2,
    "month": 7,
    "day": 15,
    "day_of_week": 1,
    "origin_arr_delay_3h": 45.0,
    "origin_late_share_3h": 0.6,
    "origin_arr_delay_6h": 40.0,
    "origin_late_share_6h": 0.55,
    "carrier_arr_delay_6h": 50.0,
    "carrier_late_share_6h": 0.6,
}


@pytest.fixture(scope="module")
def home(trained_home: Settings, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """A home of its own holding a copy of the trained registry and warehouse."""
    root = tmp_path_factory.mktemp("sidecar-home")
    for name in ("registry", "secrets", "warehouse.duckdb"):
        source = trained_home.home / name
        if source.is_dir():
            shutil.copytree(source, root / name)
        elif source.exists():
            shutil.copy2(source, root / name)
    return load_settings(
        home=root,
        models_dir=trained_home.models_dir,
        mode="local",
        device="cpu",
        actor="sidecar-test",
        monitor_window_rows=ROWS,
        monitor_drift_persist_windows=2,
        monitor_report_rows=ROWS,
    )


def _flights(settings: Settings) -> pd.DataFrame:
    spec = load_spec(settings.models_dir, "flight_delay")
    frame = build_snapshot(settings, spec, *WINDOW).read()
    return frame.sample(frac=1.0, random_state=3).reset_index(drop=True)


def _entries(
    flights: pd.DataFrame, features: list[str], version: str, *, hot: bool, seq: int
) -> list[dict[str, Any]]:
    entries = []
    start = datetime.now(UTC) - timedelta(minutes=20)
    for i, first in enumerate(range(0, len(flights), 20)):
        chunk = flights.iloc[first : first + 20]
        inputs = {
            name: [None if pd.isna(v) else v for v in chunk[name].tolist()] for name in features
        }
        if hot:
            for name, value in HOT.items():
                inputs[name] = [value] * len(chunk)
        entries.append(
            {
                "request_id": f"t{seq + i}",
                "time": (start + timedelta(seconds=i)).isoformat(),
                "protocol": "v2-rest",
                "model": "flight_delay",
                "version": version,
                "route": "production",
                "rows": len(chunk),
                "inputs": inputs,
                "outputs": {"probability": np.linspace(0.1, 0.4, len(chunk)).tolist()},
                "row_ids": [str(k) for k in chunk["flight_key"].tolist()],
                "seq": seq + i,
                "writer": "sidecar-test",
                "logged_at": datetime.now(UTC).isoformat(),
            }
        )
    return entries


@pytest.fixture(scope="module")
def analysed(home: Settings) -> Monitor:
    flights = _flights(home)
    version = Registry(home).resolve("flight_delay", "production")
    features = list(load_spec(home.models_dir, "flight_delay").features)
    calm, hot = flights.iloc[: 2 * ROWS], flights.iloc[2 * ROWS : 5 * ROWS]
    sink = SegmentSink(home.payload_dir)
    sink.write(_entries(calm, features, version, hot=False, seq=0))
    sink.write(_entries(hot, features, version, hot=True, seq=10_000))
    outcomes = OutcomeLog(home)
    observed = datetime(2013, 1, 11, tzinfo=UTC)
    outcomes.emit(
        [
            OutcomeEvent(f"o{k}", int(k), observed, int(d), bool(d > 15), "test")
            for k, d in zip(calm["flight_key"], calm["arr_delay"], strict=True)
        ]
    )
    assert outcomes.flush()
    outcomes.close()
    monitor = Monitor(home)
    monitor.start()
    monitor.drain()
    deadline = time.monotonic() + 240
    while not monitor.reports_idle() and time.monotonic() < deadline:
        time.sleep(0.5)
    monitor.stop()
    return monitor


def test_real_windows_drift_only_when_the_weather_changes(analysed: Monitor) -> None:
    results = analysed.results()
    assert [r["rows"] for r in results] == [ROWS] * 5
    drifted = [r["drift"]["dataset_drift"] for r in results]
    assert drifted[:2] == [False, False]
    assert drifted[2:] == [True, True, True]
    hot = {f["name"]: f for f in results[-1]["drift"]["features"]}
    assert all(hot[name]["drifted"] for name in HOT)
    for calm in results[:2]:
        assert calm["drift"]["share_drifted"] < 0.5


def test_labels_give_quality_against_the_spec_gates(analysed: Monitor) -> None:
    first = analysed.results()[0]
    quality = first["quality"]
    assert quality["label_coverage"] == pytest.approx(1.0)
    assert 0.0 <= quality["metrics"]["roc_auc"] <= 1.0
    assert analysed.results()[-1]["quality"] is None  # no label for the hot flights


def test_persistent_drift_requests_retraining(home: Settings, analysed: Monitor) -> None:
    (request,) = [e.data for e in read_requests(home)]
    assert request["windows"] == ["000003", "000004"]
    assert {f["name"] for f in request["features"]} >= set(HOT)


def test_evidently_reports_and_workspace(home: Settings, analysed: Monitor) -> None:
    for result in analysed.results():
        folder = analysed.report_folder(result["model"], result["version"], result["window_id"])
        assert (folder / "report.html").stat().st_size > 10_000
        assert (folder / "snapshot.json").stat().st_size > 1_000
        assert result["report_html"] == "report.html"
    from evidently.ui.workspace import Workspace  # noqa: PLC0415

    workspace = Workspace.create(str(home.monitoring_dir / "workspace"))
    (project,) = [p for p in workspace.list_projects() if p.name == "flight_delay"]
    assert len(workspace.list_runs(project.id)) >= 5


def test_reports_left_waiting_are_published_after_a_restart(
    home: Settings, analysed: Monitor
) -> None:
    window = analysed.results()[-1]
    path = home.monitoring_dir / "results" / "flight_delay" / window["version"] / "000005.json"
    folder = analysed.report_folder("flight_delay", window["version"], "000005")
    (folder / "report.html").unlink()
    path.write_text(json.dumps({**window, "report_html": None, "report_json": None}))
    restarted = Monitor(home)
    restarted.start()
    deadline = time.monotonic() + 240
    while not restarted.reports_idle() and time.monotonic() < deadline:
        time.sleep(0.5)
    restarted.stop()
    assert (folder / "report.html").stat().st_size > 10_000
    assert json.loads(path.read_text())["report_html"] == "report.html"


@pytest.fixture(scope="module")
def keys(home: Settings) -> dict[str, str]:
    """An auditor's key (the sidecar's pages and JSON need ``monitor.read``) and a predict
    key (which lacks it), made before the sidecar starts."""
    return {r: create_key(home, r, actor="sidecar tests")[1] for r in ("auditor", "predict")}


@pytest.fixture(scope="module")
def auditor_key(keys: dict[str, str]) -> str:
    return keys["auditor"]


@pytest.fixture(scope="module")
def sidecar(home: Settings, analysed: Monitor, keys: dict[str, str]) -> Iterator[str]:
    """The sidecar process (the ``monitoring/sidecar.py`` shell) over the analysed home."""
    port = free_port()
    env = {
        **os.environ,
        "DO_NOT_TRACK": "1",
        "VIGIE_HOME": str(home.home),
        "VIGIE_MODELS_DIR": str(home.models_dir),
        "VIGIE_MODE": "local",
        "VIGIE_MONITOR_PORT": str(port),
        "VIGIE_MONITOR_WINDOW_ROWS": str(ROWS),
        "VIGIE_MONITOR_REPORTS": "false",
        "VIGIE_LOG_FORMAT": "json",
    }
    log = home.home / "sidecar.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "monitoring/sidecar.py"],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(f"{url}/health/ready", process, "the drift sidecar", log=log, timeout=120)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=60)


def test_http_pages_api_and_metrics(sidecar: str, analysed: Monitor, auditor_key: str) -> None:
    client = httpx.Client(base_url=sidecar, headers={"Authorization": f"Bearer {auditor_key}"})
    index = client.get("/")
    assert index.status_code == 200 and "flight_delay" in index.text
    window = analysed.results()[-1]
    page = f"/models/flight_delay/versions/{window['version']}/windows/000005"
    assert "000005" in client.get(page).text
    report = client.get(page + "/report.html")
    assert report.status_code == 200 and report.headers["content-type"].startswith("text/html")
    assert client.get(page + "/snapshot.json").status_code == 200
    assert client.get(page + "/../../../../../etc/passwd").status_code == 404
    assert client.get("/models/flight_delay/versions/1/windows/999999").status_code == 404
    windows = client.get("/api/windows", params={"model": "flight_delay"}).json()
    assert len(windows) == 5
    health = client.get("/api/health").json()
    assert health["status"] == "ok"
    assert len(client.get("/api/retraining-requests").json()) == 1
    metrics = httpx.get(f"{sidecar}/metrics").text  # Prometheus scrapes without a key
    assert "vigie_drift_share_drifted_features" in metrics
    assert "vigie_sidecar_last_poll_timestamp_seconds" in metrics
    assert httpx.get(f"{sidecar}/health/live").status_code == 200


def test_pages_and_json_need_a_key_whose_role_may_read_them(
    sidecar: str, home: Settings, keys: dict[str, str]
) -> None:
    before = AuditLog(home.audit_log_path).head()[0]
    anonymous = httpx.get(f"{sidecar}/api/windows")
    assert anonymous.status_code == 401
    assert anonymous.headers["www-authenticate"].startswith("Basic ")
    assert "API key" in anonymous.json()["error"]
    forbidden = httpx.get(f"{sidecar}/", headers={"X-API-Key": keys["predict"]})
    assert forbidden.status_code == 403 and "monitor.read" in forbidden.json()["error"]
    basic = httpx.get(f"{sidecar}/", auth=("anyone", keys["auditor"]))  # what a browser sends
    assert basic.status_code == 200
    assert httpx.get(f"{sidecar}/health/ready").status_code == 200
    refused = [e for e in _audit_entries(home) if e["seq"] > before and e["action"] == "auth.check"]
    assert {(e["target"], e["details"]["reason"]) for e in refused} == {
        ("sidecar", "missing"),
        ("sidecar", "forbidden"),
    }


def _audit_entries(home: Settings) -> list[dict[str, Any]]:
    lines = home.audit_log_path.read_text().splitlines()
    return [json.loads(line) for line in lines]


def test_prometheus_scrapes_the_sidecar(sidecar: str, prometheus: StartPrometheus) -> None:
    prom = prometheus([ScrapeTarget("vigie-drift-sidecar", sidecar.removeprefix("http://"))])

    def scraped() -> bool:
        return bool(prom.query('vigie_drift_detected{model="flight_delay"}'))

    prom.wait_for("the sidecar's drift gauges", scraped)
    (detected,) = prom.query('vigie_drift_detected{model="flight_delay"}')
    assert detected["value"][1] == "1"  # the last window is the hot one
    (consecutive,) = prom.query("vigie_drift_consecutive_windows")
    assert consecutive["value"][1] == "3"
    (share,) = prom.query('vigie_drift_share_drifted_features{model="flight_delay"}')
    assert float(share["value"][1]) >= 0.5
    assert prom.query('up{job="vigie-drift-sidecar"} == 1')


def test_live_pages_meet_wcag_aa_in_chromium(
    sidecar: str, node: str, a11y_script: Path, tmp_path: Path, auditor_key: str
) -> None:
    pages = [
        f"{sidecar}/",
        f"{sidecar}/models/flight_delay/versions/1/windows/000004",
        f"{sidecar}/models/flight_delay/versions/1/windows/000001",
    ]
    run = subprocess.run(
        [node, str(a11y_script), str(tmp_path / "shots"), *pages],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env={**os.environ, "A11Y_HTTP_PASSWORD": auditor_key},  # the browser's Basic login
    )
    assert run.returncode == 0, f"{run.stdout[-4000:]}\n{run.stderr[-2000:]}"
    report = json.loads(run.stdout)
    assert [p["url"] for p in report["pages"]] == pages
    for page in report["pages"]:
        assert not [v for v in page["violations"] if v["impact"] in {"serious", "critical"}]
        assert Path(page["screenshot"]).stat().st_size > 1000
