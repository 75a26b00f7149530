"""Fixtures of the monitoring integration tests: the Prometheus tools and a real server.

``trained_home`` and ``server`` (a real BentoML prediction service over a small trained
registry) come from ``tests/integration/conftest.py``, shared with the serving tests (one
trained home per test session).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest

from ..serving.running import free_port
from . import prometheus_server
from .prometheus_server import Prometheus, ScrapeTarget
from .promql import RULES

__all__ = ["prometheus", "promtool"]

StartPrometheus = Callable[..., Prometheus]


def require_binary(name: str) -> str:
    """The path of a Prometheus tool; a test without it fails under CI and skips elsewhere."""
    path = shutil.which(name)
    if path:
        return path
    reason = f"`{name}` is not on PATH (Debian/Ubuntu: apt-get install prometheus)"
    if os.environ.get("CI"):
        pytest.fail(f"{reason}; CI is set, and CI must provide it")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def promtool() -> str:
    """Path of ``promtool``."""
    return require_binary("promtool")


@pytest.fixture
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StartPrometheus]:
    """Start real Prometheus servers: ``prometheus(targets, rule_files=(RULES,))``.

    Each call starts one server on a free loopback port with its own storage folder,
    scraping ``targets`` (a sequence of ``ScrapeTarget``) every second and evaluating the
    rules every second, and waits until it is ready. Every server started is stopped by
    its PID after the test.
    """
    binary = require_binary("prometheus")
    started: list[Prometheus] = []

    def start(targets: Sequence[ScrapeTarget], rule_files: Sequence[Path] = (RULES,)) -> Prometheus:
        workdir = tmp_path_factory.mktemp("prometheus")
        prometheus_server.write_config(workdir / "prometheus.yml", targets, rule_files)
        server = prometheus_server.start(binary, free_port(), workdir)
        started.append(server)
        return server

    yield start
    for running in started:
        prometheus_server.stop(running)
