"""loadtests/locustfile.py against the real service: both users make requests, and the
thresholds fail the run when crossed.

Locust runs headless as a subprocess, bounded in users and time, against the ``server``
fixture of this folder's conftest; its flights come from the snapshots under the trained
home (``VIGIE_HOME``), as after ``make run``. The passing run gets a generous p99 limit:
this test checks the load test's machinery, not the service's speed (that is
``make loadtest``'s job); the threshold itself is checked by a run with an impossible one.
"""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest

from .running import ROOT, Server

pytestmark = [pytest.mark.integration, pytest.mark.slow]

LOCUSTFILE = ROOT / "loadtests" / "locustfile.py"


def locust(
    server: Server, tmp_path: Path, *extra: str, seconds: int, key: str | None = None
) -> tuple[int, str, dict[tuple[str, str], int]]:
    """Run Locust headless; its exit code, output and request count by (type, name)."""
    prefix = tmp_path / "run"
    command = [
        str(Path(sys.executable).parent / "locust"),
        "-f",
        str(LOCUSTFILE),
        "--headless",
        "--only-summary",
        "-u",
        "4",
        "-r",
        "4",
        "-t",
        f"{seconds}s",
        "--stop-timeout",
        "5",
        "--host",
        server.rest,
        "--grpc-target",
        f"127.0.0.1:{server.grpc_port}",
        "--api-key",
        key or server.key,
        "--csv",
        str(prefix),
        *extra,
    ]
    env = {**os.environ, "VIGIE_HOME": str(server.settings.home)}
    env.pop("VIGIE_PREDICT_KEY", None)
    done = subprocess.run(
        command,
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=seconds + 90,
        check=False,
    )
    with (tmp_path / "run_stats.csv").open() as handle:
        counts = {
            (row["Type"], row["Name"]): int(row["Request Count"]) for row in csv.DictReader(handle)
        }
    return done.returncode, done.stdout + done.stderr, counts


def test_rest_and_grpc_users_load_the_service_without_failures(
    server: Server, tmp_path: Path
) -> None:
    code, output, counts = locust(server, tmp_path, "--max-p99-ms", "5000", seconds=10)
    assert code == 0, output[-4000:]
    assert "loadtest passed" in output
    assert counts[("POST", "/v2/models/[model]/infer")] > 0, counts
    assert counts[("POST", "/predict")] > 0, counts
    assert counts[("grpc", "ModelInfer")] > 0, counts
    assert counts[("grpc", "ModelMetadata")] > 0, counts
    assert server.process.poll() is None


@pytest.mark.parametrize(
    ("extra", "key", "reason"),
    [
        (("--max-p99-ms", "0.5"), None, "p99"),
        ((), "vk_not_a_key", "failure ratio"),
    ],
    ids=["p99", "failures"],
)
def test_a_crossed_threshold_fails_the_run(
    server: Server, tmp_path: Path, extra: tuple[str, ...], key: str | None, reason: str
) -> None:
    code, output, _ = locust(server, tmp_path, *extra, seconds=3, key=key)
    assert code == 1, output[-4000:]
    assert "loadtest FAILED" in output
    assert reason in output
