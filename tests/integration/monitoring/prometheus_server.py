"""A real Prometheus server for the monitoring integration tests, run as a subprocess."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import yaml

from vigie.serving.harness import start_logged, stop_process, wait_ready

START_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class ScrapeTarget:
    """One ``host:port`` Prometheus scrapes, under a job name (the rules select by job)."""

    job: str
    address: str
    metrics_path: str = "/metrics"


@dataclass(frozen=True)
class Prometheus:
    """A running Prometheus: its URL, process and log, and a client for its HTTP API."""

    url: str
    process: subprocess.Popen[bytes]
    log: Path

    def api(self, path: str, **params: str) -> Any:
        """``GET /api/v1/<path>`` and its ``data``; fails the test on an API error."""
        answer = httpx.get(f"{self.url}/api/v1/{path}", params=params, timeout=10)
        body = answer.json()
        assert answer.status_code == 200 and body["status"] == "success", body
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        """The instant vector of ``expr`` now (``/api/v1/query``)."""
        data = self.api("query", query=expr)
        assert data["resultType"] == "vector", data
        result: list[dict[str, Any]] = data["result"]
        return result

    def wait_for(self, what: str, check: Callable[[], bool], timeout_s: float = 60.0) -> None:
        """Poll ``check`` until it holds (a guard against hanging, not a timing assertion)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if check():
                return
            time.sleep(0.5)
        raise AssertionError(f"gave up waiting for {what}; log:\n{self.log.read_text()[-3000:]}")


def write_config(path: Path, targets: Sequence[ScrapeTarget], rule_files: Sequence[Path]) -> None:
    """A Prometheus configuration scraping ``targets`` every second and loading ``rule_files``."""
    jobs: dict[str, list[ScrapeTarget]] = {}
    for target in targets:
        jobs.setdefault(target.job, []).append(target)
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(rule_file) for rule_file in rule_files],
        "scrape_configs": [
            {
                "job_name": job,
                "metrics_path": members[0].metrics_path,
                "static_configs": [{"targets": [member.address for member in members]}],
            }
            for job, members in jobs.items()
        ],
    }
    path.write_text(yaml.safe_dump(config, sort_keys=False))


def start(binary: str, port: int, workdir: Path) -> Prometheus:
    """Start ``prometheus`` on ``127.0.0.1:port`` over ``workdir/prometheus.yml``, and wait
    until it is ready."""
    log = workdir / "prometheus.log"
    command = [
        binary,
        f"--config.file={workdir / 'prometheus.yml'}",
        f"--storage.tsdb.path={workdir / 'data'}",
        f"--web.listen-address=127.0.0.1:{port}",
    ]
    process = start_logged(command, None, log, cwd=workdir)
    server = Prometheus(f"http://127.0.0.1:{port}", process, log)
    try:
        wait_ready(
            f"{server.url}/-/ready",
            process,
            "prometheus",
            log=log,
            pause_s=0.2,
            timeout=START_TIMEOUT_S,
        )
    except BaseException:
        stop(server)
        raise
    return server


def stop(server: Prometheus) -> None:
    """Stop the server by its PID: SIGTERM, then SIGKILL of its own process group."""
    stop_process(server.process)
