"""The serving and sidecar images, built here and run as a pod would run them.

``deploy/images.py`` builds ``vigie-serve`` and ``vigie-monitor`` (a Docker engine answers,
or one is started for this module and stopped by its PID). The serving container runs as
its non-root user with a read-only root filesystem, every capability dropped, the registry
the integration conftest trained mounted read-only and a writable home beside it; the
sidecar container shares that home, as the two containers of a pod share the payload
volume. tritonclient (HTTP in this process, gRPC in a subprocess) scores real rows, which
must equal the scores of the registry's ONNX model in this process; the sidecar then reads
what the service logged.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
import tritonclient.http as triton_http

from vigie.config import Settings, load_settings
from vigie.registry import Registry
from vigie.runtime import OnnxModel
from vigie.serving.auth import ensure_local_keys
from vigie.serving.client import local_key
from vigie.serving.harness import free_port, predict_key

from .builder import images

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[3]
DRIVER = ROOT / "tests" / "unit" / "serving" / "test_grpc_tritonclient.py"
UID = 10001
MODEL = "flight_delay"
ROWS = 64
START_TIMEOUT_S = 180.0


@dataclass(frozen=True)
class Container:
    """A running container and the loopback ports it serves on."""

    name: str
    ports: dict[str, int]

    def logs(self) -> str:
        command = ["docker", "logs", "--tail", "60", self.name]
        done = subprocess.run(command, capture_output=True, check=False)
        return (done.stdout + done.stderr).decode(errors="replace")

    def running(self) -> bool:
        done = subprocess.run(
            ["docker", "inspect", "--format", "{{.State.Running}}", self.name],
            capture_output=True,
            text=True,
            check=False,
        )
        return done.stdout.strip() == "true"

    def wait_ready(self, url: str) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            assert self.running(), f"{self.name} stopped:\n{self.logs()}"
            try:
                if httpx.get(url, timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(1)
        pytest.fail(f"{self.name} not ready at {url} in {START_TIMEOUT_S:.0f} s:\n{self.logs()}")


@pytest.fixture(scope="module")
def built() -> Iterator[dict[str, str]]:
    """The serving and sidecar images, in an engine that lives as long as this module."""
    if not images.can_build():
        reason = "a Docker engine (or root and dockerd) and debootstrap are needed"
        if os.environ.get("CI"):
            pytest.fail(f"{reason} (CI must provide them: .ci/run installs them)")
        pytest.skip(reason)
    with images.engine():
        yield {name: images.build(images.TARGETS[name]) for name in ("serve", "monitor")}


@pytest.fixture(scope="module")
def home(trained_home: Settings, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """A copy of the trained home owned by the images' user (the pod's volume)."""
    copy = tmp_path_factory.mktemp("image-home") / "home"
    shutil.copytree(trained_home.home, copy, ignore=shutil.ignore_patterns("payload", "*.log"))
    ensure_local_keys(load_settings(home=copy, mode="local"))  # before the owner changes
    for path in [copy, *copy.rglob("*")]:
        os.chown(path, UID, UID, follow_symlinks=False)
    return load_settings(home=copy, models_dir=copy / "models", mode="local", device="cpu")


def run_container(image: str, home: Path, env: dict[str, str]) -> Container:
    name = f"vigie-test-{uuid.uuid4().hex[:8]}"
    flags = ["--network", "host", "--read-only", "--tmpfs", "/tmp:rw,mode=1777,size=512m"]
    flags += ["--cap-drop", "ALL", "--security-opt", "no-new-privileges", "--user", f"{UID}"]
    flags += ["-v", f"{home}:/var/lib/vigie"]
    flags += ["-v", f"{home / 'registry'}:/var/lib/vigie/registry:ro"]
    variables = {"VIGIE_HOST": "127.0.0.1", "VIGIE_MODE": "local", **env}
    for key, value in variables.items():
        flags += ["-e", f"{key}={value}"]
    subprocess.run(["docker", "run", "-d", "--name", name, *flags, image], check=True)
    return Container(name, {k: int(v) for k, v in env.items() if k.endswith("_PORT")})


def remove(container: Container) -> None:
    subprocess.run(["docker", "rm", "-f", container.name], capture_output=True, check=False)


@pytest.fixture(scope="module")
def serving(built: dict[str, str], home: Settings) -> Iterator[Container]:
    env = {"VIGIE_REST_PORT": str(free_port()), "VIGIE_GRPC_PORT": str(free_port())}
    container = run_container(built["serve"], home.home, {**env, "VIGIE_DEVICE": "cpu"})
    try:
        container.wait_ready(f"http://127.0.0.1:{env['VIGIE_REST_PORT']}/v2/health/ready")
        yield container
    finally:
        remove(container)


@pytest.fixture(scope="module")
def sidecar(built: dict[str, str], home: Settings, serving: Container) -> Iterator[Container]:
    env = {"VIGIE_MONITOR_PORT": str(free_port()), "VIGIE_MONITOR_REPORTS": "false"}
    container = run_container(built["monitor"], home.home, env)
    try:
        container.wait_ready(f"http://127.0.0.1:{env['VIGIE_MONITOR_PORT']}/health/ready")
        yield container
    finally:
        remove(container)


@pytest.fixture(scope="module")
def rows(home: Settings) -> tuple[pd.DataFrame, np.ndarray]:
    """Real rows of the production version's reference sample and their in-process scores."""
    registry = Registry(home)
    version = registry.resolve(MODEL, "production")
    frame = pd.read_parquet(registry.open_artifact(MODEL, version, "reference_sample.parquet"))
    sample = frame.iloc[:ROWS].reset_index(drop=True)
    onnx = OnnxModel(registry.open_artifact(MODEL, version, "model.onnx"), "cpu")
    return sample, onnx.predict(sample)


def tensors(metadata: dict[str, Any], frame: pd.DataFrame) -> list[dict[str, Any]]:
    """One OIP tensor per model input (strings for BYTES, floats with NaN for the missing)."""
    out = []
    for spec in metadata["inputs"]:
        column = frame[spec["name"]]
        if spec["datatype"] == "BYTES":
            data: list[Any] = ["" if pd.isna(v) else str(v) for v in column]
        else:
            data = column.to_numpy(dtype=np.float64, na_value=np.nan).tolist()
        out.append({"name": spec["name"], "datatype": spec["datatype"], "data": data})
    return out


def test_the_images_run_as_their_own_user_without_a_shell_login(built: dict[str, str]) -> None:
    for image in built.values():
        done = subprocess.run(
            ["docker", "image", "inspect", "--format", "{{.Config.User}}", image],
            capture_output=True,
            text=True,
            check=True,
        )
        assert done.stdout.strip() == f"{UID}:{UID}"


def test_tritonclient_http_scores_equal_onnx_runtime_in_process(
    serving: Container, home: Settings, rows: tuple[pd.DataFrame, np.ndarray]
) -> None:
    frame, expected = rows
    headers = {"Authorization": f"Bearer {predict_key(home)}"}
    client = triton_http.InferenceServerClient(f"127.0.0.1:{serving.ports['VIGIE_REST_PORT']}")
    assert client.is_server_ready(headers=headers)
    metadata = client.get_model_metadata(MODEL, headers=headers)
    inputs = []
    for tensor in tensors(metadata, frame):
        dtype = object if tensor["datatype"] == "BYTES" else np.float32
        values = np.asarray(tensor["data"], dtype=dtype).reshape(-1, 1)
        if dtype is object:
            values = np.asarray([v.encode() for v in tensor["data"]], dtype=object).reshape(-1, 1)
        item = triton_http.InferInput(tensor["name"], list(values.shape), tensor["datatype"])
        item.set_data_from_numpy(values, binary_data=True)
        inputs.append(item)
    result = client.infer(MODEL, inputs, headers=headers)
    scores = result.as_numpy(result.get_response()["outputs"][0]["name"]).reshape(-1)
    np.testing.assert_allclose(scores, expected, atol=1e-5)


def test_tritonclient_grpc_scores_equal_onnx_runtime_in_process(
    serving: Container, home: Settings, rows: tuple[pd.DataFrame, np.ndarray]
) -> None:
    frame, expected = rows
    key = predict_key(home)
    metadata = httpx.get(
        f"http://127.0.0.1:{serving.ports['VIGIE_REST_PORT']}/v2/models/{MODEL}",
        headers={"Authorization": f"Bearer {key}"},
    ).json()
    call = {
        "op": "infer",
        "model": MODEL,
        "id": "image-grpc",
        "headers": {"authorization": f"Bearer {key}"},
        "inputs": [{**t, "shape": [len(frame), 1]} for t in tensors(metadata, frame)],
    }
    spec = {"url": f"127.0.0.1:{serving.ports['VIGIE_GRPC_PORT']}", "calls": [call]}
    done = subprocess.run(
        [sys.executable, str(DRIVER)],
        input=json.dumps(spec).encode(),
        capture_output=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr.decode()
    (answer,) = json.loads(done.stdout)
    assert answer["ok"], answer
    (scores,) = answer["value"]["outputs"].values()
    np.testing.assert_allclose(np.asarray(scores).reshape(-1), expected, atol=1e-5)


def test_the_sidecar_reads_what_the_serving_container_logged(
    serving: Container, sidecar: Container, home: Settings
) -> None:
    url = f"http://127.0.0.1:{sidecar.ports['VIGIE_MONITOR_PORT']}/api/health"
    assert httpx.get(url, timeout=5).status_code == 401  # its JSON needs a key
    headers = {"Authorization": f"Bearer {local_key(home, 'admin')}"}
    deadline = time.monotonic() + 60
    health: dict[str, Any] = {}
    while time.monotonic() < deadline:
        health = httpx.get(url, headers=headers, timeout=5).json()
        if health.get("entries_read", 0) >= 2:
            break
        time.sleep(1)
    assert health.get("entries_read", 0) >= 2, (health, sidecar.logs())  # one per request
