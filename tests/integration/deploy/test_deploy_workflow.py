"""``.github/workflows/deploy.yml`` renders an overlay under act and applies nothing there.

It offers every overlay, and applies only with a cluster, never under act.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

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


@pytest.mark.parametrize(("overlay", "succeeds"), [("kserve", True), ("staging", False)])
def test_deploy_workflow_under_act_renders_and_applies_nothing(
    overlay: str, succeeds: bool, tmp_path: Path, act_dispatch: Callable[..., Any]
) -> None:
    inputs = {"overlay": overlay, "dry_run": False}
    done = act_dispatch(".github/workflows/deploy.yml", inputs, tmp_path, timeout=120)
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
