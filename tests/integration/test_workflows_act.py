"""The GitHub workflows run locally with act (``-P ubuntu-latest=-self-hosted``, no Docker).

``model-promotion.yml`` runs end to end against a copy of the trained integration home
holding a fresh candidate, and the registry and the audit log are checked afterwards; bad
inputs must fail the workflow with a clear message. ``retrain.yml`` skips a model whose
retraining is already running and refuses an unknown reason. Skipped when act is absent,
except under CI where everything the tests need is provided.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from vigie.config import Settings, load_settings
from vigie.registry import Registry
from vigie.retraining.lifecycle import metrics_on_window
from vigie.retraining.triggers import exclusive_run

from .serving.running import WINDOW

pytestmark = [pytest.mark.integration, pytest.mark.slow]

MODEL = "flight_delay"
WORKFLOW = ".github/workflows/model-promotion.yml"
RETRAIN_WORKFLOW = ".github/workflows/retrain.yml"
ACT_TIMEOUT_S = 300
Workflow = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def run_workflow(act_dispatch: Workflow) -> Workflow:
    """``act workflow_dispatch`` of ``workflow`` (default: the promotion) with ``inputs``."""

    def run(
        tmp_path: Path, inputs: dict[str, str], workflow: str = WORKFLOW
    ) -> subprocess.CompletedProcess[str]:
        return act_dispatch(
            workflow, inputs, tmp_path, env=["VIGIE_DEVICE=cpu"], timeout=ACT_TIMEOUT_S
        )

    return run


@pytest.fixture
def candidate_home(trained_home: Settings, tmp_path: Path) -> Settings:
    """A copy of the trained home with a new flight_delay candidate that passes its gates.

    Gates are not under test here, and a two-epoch model cannot be relied on to beat
    another one: the candidate is a rebuild of the production version (the same files),
    evaluated on a warehouse window where production is measured too, so it ties, which
    "beat production by a margin of 0" accepts. Every gate is still evaluated for real.
    """
    home = tmp_path / "home"
    shutil.copytree(trained_home.home, home)
    settings = load_settings(
        home=home, models_dir=home / "models", device="cpu", mode="local", actor="vigie-tests"
    )
    registry = Registry(settings)
    production = registry.get(MODEL, "production")
    files = {
        role: registry.open_artifact(MODEL, production.version, role) for role in production.files
    }
    metrics = metrics_on_window(settings, registry, MODEL, production.version, WINDOW)
    extra = production.extra
    registry.register(
        MODEL,
        files,
        metadata={
            "snapshot_hash": production.snapshot_hash,
            "code_version": production.code_version,
            "metrics": metrics,
            "parent_version": production.version,
            "evaluation": {"window_from": str(WINDOW[0]), "window_to": str(WINDOW[1])},
            **{k: extra[k] for k in ("parity_max_abs_error", "behaviour_passed", "latency")},
        },
        reason="act promotion test: rebuild of production",
    )
    return settings


def test_promotion_workflow_promotes_the_candidate(
    candidate_home: Settings, tmp_path: Path, run_workflow: Workflow
) -> None:
    registry = Registry(candidate_home)
    candidate = registry.resolve(MODEL, "candidate")
    before = registry.resolve(MODEL, "production")
    assert candidate != before
    done = run_workflow(
        tmp_path,
        {"model": MODEL, "version": candidate, "vigie_home": str(candidate_home.home)},
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-6000:]
    assert "Job succeeded" in output
    assert "promoted_without_live_checks" in output
    assert "beat_production:roc_auc" in output  # the gate table reached the job summary
    assert registry.resolve(MODEL, "production") == candidate
    assert registry.resolve(MODEL, "staging") == candidate
    assert registry.resolve(MODEL, "archived") == before
    lines = candidate_home.audit_log_path.read_text().splitlines()
    entries = [json.loads(line) for line in lines]
    mine = [e for e in entries if e["target"] == f"{MODEL}/{candidate}"]
    actions = {e["action"]: e["outcome"] for e in mine}
    assert actions["registry.promote"] == "success"
    assert actions["promotion.gates"] == actions["promotion.production"] == "success"
    assert actions["promotion.smoke-staging"] == "partial"  # skipped, never "passed"
    assert "model-promotion run" in next(
        e["details"]["reason"] for e in mine if e["action"] == "promotion.production"
    )


@pytest.mark.parametrize(
    ("inputs", "message"),
    [
        ({"model": "no_such_model", "version": "2"}, "unknown model 'no_such_model'"),
        ({"model": MODEL, "version": "two"}, "version 'two' is not a registry version id"),
        ({"model": "Bad-Name", "version": "2"}, "model 'Bad-Name' is not a model name"),
        ({"model": MODEL, "version": ""}, "input 'version' is required"),
    ],
)
def test_bad_inputs_fail_the_workflow_with_a_clear_message(
    tmp_path: Path, inputs: dict[str, str], message: str, run_workflow: Workflow
) -> None:
    done = run_workflow(tmp_path, {**inputs, "vigie_home": str(tmp_path / "no-home")})
    output = done.stdout + done.stderr
    assert done.returncode != 0, output[-4000:]
    assert message in output, output[-4000:]
    assert "Job failed" in output
    assert not (tmp_path / "no-home").exists()  # nothing ran past the validation


def test_retrain_workflow_skips_a_model_whose_retraining_is_running(
    trained_home: Settings, tmp_path: Path, run_workflow: Workflow
) -> None:
    home = tmp_path / "home"
    shutil.copytree(trained_home.home, home)
    settings = load_settings(home=home, models_dir=home / "models", mode="local")
    versions = [v.version for v in Registry(settings).versions(MODEL)]
    with exclusive_run(settings, MODEL):  # another run holds the model's lock
        done = run_workflow(
            tmp_path,
            {"model": MODEL, "reason": "manual", "vigie_home": str(home)},
            RETRAIN_WORKFLOW,
        )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-6000:]
    assert f"{MODEL}: another retraining of it holds the lock; skipped" in output
    assert "Job succeeded" in output
    assert [v.version for v in Registry(settings).versions(MODEL)] == versions


def test_retrain_workflow_refuses_an_unknown_reason(tmp_path: Path, run_workflow: Workflow) -> None:
    done = run_workflow(
        tmp_path,
        {"model": MODEL, "reason": "hunch", "vigie_home": str(tmp_path / "no-home")},
        RETRAIN_WORKFLOW,
    )
    output = done.stdout + done.stderr
    assert done.returncode != 0, output[-4000:]
    assert "unknown reason 'hunch' (schedule, drift or manual)" in output
    assert "Job failed" in output
