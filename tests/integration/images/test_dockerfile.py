"""The Dockerfile passes hadolint and checkov's Dockerfile checks, and keeps its promises.

The checkers come from ``make deploy-tools`` (``VIGIE_DEPLOY_TOOLS``, by default
``<repo>/.venv-deploy/bin``); without them the tests fail, they do not skip.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest

from .builder import images

pytestmark = [pytest.mark.integration]

ROOT = Path(__file__).resolve().parents[3]
DOCKERFILE = ROOT / "deploy" / "Dockerfile"


def tool(name: str) -> str:
    folder = Path(os.environ.get("VIGIE_DEPLOY_TOOLS") or ROOT / ".venv-deploy" / "bin")
    path = folder / name
    if not os.access(path, os.X_OK):
        pytest.fail(f"{name} missing from {folder} (VIGIE_DEPLOY_TOOLS): run `make deploy-tools`")
    return str(path)


def test_hadolint_finds_nothing() -> None:
    done = subprocess.run(
        [tool("hadolint"), "--no-color", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_checkov_passes_and_every_skip_has_a_reason() -> None:
    done = subprocess.run(
        [tool("checkov"), "--file", str(DOCKERFILE), "--framework", "dockerfile"]
        + ["--output", "json", "--skip-download"],
        capture_output=True,
        text=True,
        check=False,
    )
    report = json.loads(done.stdout)
    results = report["results"]
    assert report["summary"]["passed"] > 50  # the Dockerfile checks ran
    assert results["failed_checks"] == [], [c["check_id"] for c in results["failed_checks"]]
    skips = re.findall(r"checkov:skip=(CKV_\w+):\s*(.*)", DOCKERFILE.read_text())
    assert {c["check_id"] for c in results["skipped_checks"]} == {check for check, _ in skips}
    assert all(len(reason) > 20 for _, reason in skips)


def test_every_target_the_builder_knows_is_in_the_dockerfile_and_runs_as_10001() -> None:
    text = DOCKERFILE.read_text()
    stages = re.findall(r"^FROM \S+ AS (\S+)$", text, flags=re.MULTILINE)
    assert set(images.TARGETS) <= set(stages)
    for target in images.TARGETS:
        section = text.split(f"AS {target}\n", 1)[1].split("\nFROM ", 1)[0]
        assert "USER 10001:10001" in section, target
        assert re.search(r"^(HEALTHCHECK|ENTRYPOINT)", section, flags=re.MULTILINE), target
