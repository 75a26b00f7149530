"""``vigie up --exit``: service, sidecar, consumer and replay together (``make run``)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from vigie.config import Settings, load_settings
from vigie.monitoring.sidecar import Monitor

from ..serving.running import ROOT, free_port

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_up_serves_monitors_replays_and_stops(
    trained_home: Settings, tmp_path_factory: pytest.TempPathFactory
) -> None:
    home = tmp_path_factory.mktemp("up-home")
    for name in ("registry", "secrets"):
        shutil.copytree(trained_home.home / name, home / name)
    shutil.copy2(trained_home.home / "warehouse.duckdb", home / "warehouse.duckdb")
    env = {
        **os.environ,
        "VIGIE_HOME": str(home),
        "VIGIE_MODELS_DIR": str(trained_home.models_dir),
        "VIGIE_MODE": "local",
        "VIGIE_DEVICE": "cpu",
        "VIGIE_REST_PORT": str(free_port()),
        "VIGIE_GRPC_PORT": str(free_port()),
        "VIGIE_MONITOR_PORT": str(free_port()),
        "VIGIE_MONITOR_WINDOW_ROWS": "400",
        "VIGIE_MONITOR_REPORTS": "false",
        "VIGIE_LOG_FORMAT": "json",
    }
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "vigie.cli",
            "up",
            "--replay-from",
            "2013-01-06",
            "--replay-to",
            "2013-01-08",
            "--speed",
            "0",
            "--exit",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "service ready" in run.stdout and "sidecar ready" in run.stdout
    assert "flight_delay v1:" in run.stdout and "arrival_delay v1:" in run.stdout
    for log in ("serve.log", "monitor.log", "ingest.log"):
        assert (home / "logs" / log).stat().st_size > 0, log
    settings = load_settings(home=Path(home), models_dir=trained_home.models_dir, mode="local")
    results = Monitor(settings, reports=False).results()
    assert {r["model"] for r in results} == {"flight_delay", "arrival_delay"}
    assert all(r["rows"] == 400 for r in results)
