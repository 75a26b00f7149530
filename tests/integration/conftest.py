"""Shared integration fixtures: a real BentoML server over a small trained registry.

``trained_home`` runs the pipeline on ten days of January 2013, trains both models for two
epochs from a copy of ``models/`` whose gates are loosened (a two-epoch model is not meant
to pass the quality gates), promotes version 1 of each to staging and production, and
trains a version 2 of ``flight_delay`` left as candidate for the hot-reload test.
``server`` runs ``bentoml serve`` on free loopback ports over it, as a subprocess stopped by
its PID at teardown (:class:`vigie.serving.harness.ServiceProcess`); ``running_server``
does the same over another home.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import yaml

from vigie.config import Settings, load_settings
from vigie.pipelines.run import run_pipeline
from vigie.registry import Registry
from vigie.retraining.lifecycle import assess, promote, train_and_register
from vigie.serving.harness import ServiceProcess, local_service_env

from .serving.running import (
    MAX_REQUEST_ROWS,
    MODELS,
    ROOT,
    START_TIMEOUT_S,
    WINDOW,
    Server,
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


@contextmanager
def running_server(settings: Settings, log: Path) -> Iterator[Server]:
    """``bentoml serve`` over ``settings``' home on free loopback ports, stopped at exit."""
    env = {
        **os.environ,
        **local_service_env(settings),
        "VIGIE_MAX_REQUEST_ROWS": str(MAX_REQUEST_ROWS),
        "VIGIE_RELOAD_INTERVAL_S": "0.5",
    }
    with ServiceProcess.start(settings, log, env, cwd=ROOT, timeout=START_TIMEOUT_S) as service:
        yield Server(
            service.url,
            service.host_port,
            service.grpc_port,
            service.key,
            settings,
            service.process,
            log,
        )


@pytest.fixture(scope="module")
def server(trained_home: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    log = tmp_path_factory.mktemp("serving-log") / "server.log"
    with running_server(trained_home, log) as running:
        yield running
