"""Shared integration fixtures: a real BentoML server over a small trained registry.

``trained_home`` runs the pipeline on ten days of January 2013, trains both models for two
epochs from a copy of ``models/`` whose gates are loosened (a two-epoch model is not meant
to pass the quality gates), promotes version 1 of each to staging and production, and
trains a version 2 of ``flight_delay`` left as candidate for the hot-reload test.
``server`` runs ``bentoml serve`` on free loopback ports over it, as a subprocess killed by
its PID at teardown; ``running_server`` does the same over another home.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
import yaml

from vigie.config import Settings, load_settings
from vigie.pipelines.run import run_pipeline
from vigie.registry import Registry
from vigie.retraining.lifecycle import assess, promote, train_and_register

from .serving.running import (
    MAX_REQUEST_ROWS,
    MODELS,
    ROOT,
    START_TIMEOUT_S,
    WINDOW,
    Server,
    free_port,
)


def _loose_specs(models: Path) -> None:
    for name in MODELS:
        path = models / name / "spec.yaml"
        raw = yaml.safe_load(path.read_text())
        raw["hyperparameters"]["max_epochs"] = 2
        gates = raw["gates"]
        gates.update(min={}, max={}, behaviour_must_pass=False)
        gates["latency"] = {"p50_single_row_ms": 1000.0, "batch_256_ms": 10000.0}
        path.write_text(yaml.safe_dump(raw))


@pytest.fixture(scope="session")
def trained_home(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    home = tmp_path_factory.mktemp("serving-home")
    shutil.copytree(ROOT / "models", home / "models")
    _loose_specs(home / "models")
    settings = load_settings(
        home=home, models_dir=home / "models", device="cpu", mode="local", actor="vigie-tests"
    )
    assert run_pipeline(settings, *WINDOW).record.status == "success"
    registry = Registry(settings)
    for model in MODELS:
        version = train_and_register(
            settings, model, WINDOW, evaluation_window=None, seed=1, reason="serving test"
        ).version.version
        registry.promote(model, version, to="staging", report=None, reason="serving test")
        promote(settings, model, assess(settings, model, version), to="production", reason="test")
    train_and_register(
        settings, "flight_delay", WINDOW, evaluation_window=None, seed=2, reason="next version"
    )
    return settings


def _wait_ready(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the service exited ({process.returncode}):\n{log.read_text()}")
        try:
            if httpx.get(f"{url}/v2/health/ready", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise TimeoutError(f"not ready after {START_TIMEOUT_S} s:\n{log.read_text()[-4000:]}")


def _predict_key(settings: Settings) -> str:
    for line in (settings.secrets_dir / "api_keys.local").read_text().splitlines():
        if line.startswith("VIGIE_PREDICT_KEY="):
            return line.split("=", 1)[1].strip()
    raise AssertionError("no predict key was generated")


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)  # its own session: only its workers
            process.wait(10)


@contextmanager
def running_server(settings: Settings, log: Path) -> Iterator[Server]:
    """``bentoml serve`` over ``settings``' home on free loopback ports, stopped at exit."""
    rest_port, grpc_port = free_port(), free_port()
    env = {
        **os.environ,
        "DO_NOT_TRACK": "1",
        "BENTOML_DO_NOT_TRACK": "True",
        "VIGIE_HOME": str(settings.home),
        "VIGIE_MODELS_DIR": str(settings.models_dir),
        "VIGIE_MODE": "local",
        "VIGIE_DEVICE": "cpu",
        "VIGIE_REST_PORT": str(rest_port),
        "VIGIE_GRPC_PORT": str(grpc_port),
        "VIGIE_MAX_REQUEST_ROWS": str(MAX_REQUEST_ROWS),
        "VIGIE_RELOAD_INTERVAL_S": "0.5",
        "VIGIE_LOG_FORMAT": "json",
    }
    command = [
        str(Path(sys.executable).parent / "bentoml"),
        "serve",
        "services.prediction.service:VigiePrediction",
        "--host",
        "127.0.0.1",
        "--port",
        str(rest_port),
    ]
    with log.open("wb") as out:
        process = subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    url = f"http://127.0.0.1:{rest_port}"
    try:
        _wait_ready(url, process, log)
        yield Server(
            url,
            f"127.0.0.1:{rest_port}",
            grpc_port,
            _predict_key(settings),
            settings,
            process,
            log,
        )
    finally:
        _stop(process)


@pytest.fixture(scope="module")
def server(trained_home: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    log = tmp_path_factory.mktemp("serving-log") / "server.log"
    with running_server(trained_home, log) as running:
        yield running
