"""The retraining job on a small real warehouse and registry (a copy of ``trained_home``).

``trained_home`` holds ten labelled days of January 2013, ``flight_delay`` versions 1
(production) and 2 (candidate). Runs here use a three-day evaluation window (January 8 to
10) so the expanding window trains on January 1 to 7.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import Result

from vigie.config import Settings, load_settings
from vigie.errors import ErrorCode, VigieError
from vigie.events.segments import SegmentSink
from vigie.registry import Registry
from vigie.registry.store import STAGING_PREFIX
from vigie.retraining.job import RetrainOptions, RunStatus, retrain
from vigie.retraining.triggers import exclusive_run, last_checkpoint
from vigie.warehouse.connection import connect

pytestmark = [pytest.mark.integration, pytest.mark.slow]

MODEL = "flight_delay"
RUN_ARGS = ["retrain", "--model", MODEL, "--evaluation-days", "3", "--seed", "3"]
BUSY = 75


@pytest.fixture
def home(trained_home: Settings, tmp_path: Path) -> Settings:
    """A private copy of the trained home (the session fixture stays untouched)."""
    copy = tmp_path / "home"
    shutil.copytree(trained_home.home, copy)
    settings = load_settings(
        home=copy, models_dir=copy / "models", device="cpu", mode="local", actor="vigie-tests"
    )
    _set_epochs(settings, 1)
    return settings


def _options(**kwargs: Any) -> RetrainOptions:
    return RetrainOptions(model=MODEL, evaluation_days=3, seed=3, **kwargs)


def _versions(settings: Settings) -> list[str]:
    return [v.version for v in Registry(settings).versions(MODEL)]


def _runs(settings: Settings) -> list[dict[str, Any]]:
    lines = settings.audit_log_path.read_text().splitlines()
    entries = [json.loads(line) for line in lines]
    return [e for e in entries if e["action"] == "retraining.run"]


def _request(n: int, model: str = MODEL) -> dict[str, Any]:
    return {
        "request_id": f"req-{n}",
        "model": model,
        "version": "1",
        "requested_at": f"2013-01-1{n}T00:00:00+00:00",
        "reason": "drift",
        "rule": {"consecutive_windows": 3, "drift_share": 0.5},
        "windows": [f"window-{n}"],
        "evidence": [{"window_id": f"window-{n}", "share_drifted": 0.6}],
        "features": [{"name": "temp", "stattest": "psi", "score": 0.4, "threshold": 0.1}],
        "seq": n,
        "writer": "sidecar-test",
        "logged_at": f"2013-01-1{n}T00:00:00+00:00",
    }


def _write_requests(settings: Settings, *requests: dict[str, Any]) -> None:
    SegmentSink(settings.monitoring_dir / "retraining").write(list(requests))


def _checkpoint(settings: Settings) -> str | None:
    warehouse = connect(settings.resolved_warehouse_url, read_only=True)
    try:
        return last_checkpoint(warehouse, MODEL)
    finally:
        warehouse.close()


def _set_epochs(settings: Settings, epochs: int) -> None:
    path = settings.models_dir / MODEL / "spec.yaml"
    raw = yaml.safe_load(path.read_text())
    raw["hyperparameters"].update(max_epochs=epochs, patience=epochs)
    path.write_text(yaml.safe_dump(raw))


def _command(
    settings: Settings, environment: Callable[..., dict[str, str]]
) -> tuple[list[str], dict[str, str]]:
    env = environment(
        home=settings.home,
        models_dir=settings.models_dir,
        device="cpu",
        mode="local",
        actor="vigie-tests",
        log_level="WARNING",
    )
    env["DO_NOT_TRACK"] = "1"
    return [sys.executable, "-m", "vigie.cli", *RUN_ARGS], env


def test_retrain_registers_a_candidate_with_lineage_then_nothing_when_unchanged(
    home: Settings,
) -> None:
    not_due = retrain(home, _options(if_due=True))
    assert not_due.status is RunStatus.NOT_DUE  # the champion was trained on January 1-10
    assert _versions(home) == ["1", "2"]

    result = retrain(home, _options())
    assert result.status is RunStatus.TRAINED and result.version == "3"
    registry = Registry(home)
    version = registry.verify(MODEL, "candidate")
    assert version.version == "3" and version.parent_version == "1"
    assert version.snapshot_hash == result.snapshot_hash
    lineage = version.extra["retraining"]
    assert lineage["trigger"] == {"reason": "manual"}
    assert lineage["windows"]["training_from"] == "2013-01-01"
    assert lineage["windows"]["training_to"] == "2013-01-07"
    assert lineage["windows"]["policy"] == "expanding" and lineage["windows"]["why"]
    assert version.extra["evaluation"]["window_from"] == "2013-01-08"
    assert version.extra["evaluation"]["window_to"] == "2013-01-10"
    champion = lineage["evaluation"]["champion"]
    assert champion["version"] == "1" and 0.0 <= champion["metrics"]["roc_auc"] <= 1.0
    assert "roc_auc" in version.metrics  # the challenger, on the same window
    assert lineage["quality"]["passed"] and lineage["quality"]["rows"] > 1000

    again = retrain(home, _options())
    assert again.status is RunStatus.UNCHANGED and again.version is None
    assert _versions(home) == ["1", "2", "3"]
    ends = [(r["outcome"], r["details"].get("status")) for r in _runs(home)]
    assert ends == [
        ("started", None),
        ("success", "not_due"),
        ("started", None),
        ("success", "trained"),
        ("started", None),
        ("success", "unchanged"),
    ]


def test_failed_expectations_stop_the_run(home: Settings, cli: Callable[..., Result]) -> None:
    with pytest.raises(VigieError) as caught:
        retrain(home, _options(min_rows=10**7))
    assert caught.value.code is ErrorCode.DATA_QUALITY
    assert "fewer than the 10000000" in caught.value.message
    result = cli(
        [*RUN_ARGS, "--min-rows", "10000000"],
        home=home.home,
        models_dir=home.models_dir,
        device="cpu",
        mode="local",
    )
    assert result.exit_code == 5, result.output
    assert _versions(home) == ["1", "2"]
    assert [r["details"].get("status") for r in _runs(home) if r["outcome"] == "refused"] == [
        "data_quality",
        "data_quality",
    ]


def test_from_requests_consumes_pending_requests_once(home: Settings) -> None:
    assert retrain(home, _options(from_requests=True)).status is RunStatus.NO_REQUESTS
    _write_requests(home, _request(1), _request(2, "arrival_delay"), _request(3))

    result = retrain(home, _options(from_requests=True))
    assert result.status is RunStatus.TRAINED
    drift = Registry(home).get(MODEL, result.version or "").extra["retraining"]["trigger"]
    assert drift["reason"] == "drift"
    assert drift["drift"]["request_ids"] == ["req-1", "req-3"]  # coalesced into one run
    assert drift["drift"]["windows"] == ["window-1", "window-3"]
    assert drift["drift"]["features"] == ["temp"]
    consumed = _checkpoint(home)
    assert consumed is not None

    assert retrain(home, _options(from_requests=True)).status is RunStatus.NO_REQUESTS
    _write_requests(home, _request(4))
    served = retrain(home, _options(from_requests=True))
    assert served.status is RunStatus.UNCHANGED  # no new data: served without a version
    assert served.trigger["drift"]["request_ids"] == ["req-4"]
    assert _checkpoint(home) != consumed
    assert retrain(home, _options(from_requests=True)).status is RunStatus.NO_REQUESTS
    assert _versions(home) == ["1", "2", "3"]


def test_concurrent_triggers_make_one_run(
    home: Settings, environment: Callable[..., dict[str, str]], cli: Callable[..., Result]
) -> None:
    with exclusive_run(home, MODEL):  # a run in progress (another open file holds the flock)
        busy = cli(RUN_ARGS, home=home.home, models_dir=home.models_dir, mode="local")
    assert busy.exit_code == BUSY, busy.output
    assert f"a retraining of {MODEL} is already running" in busy.output
    assert _versions(home) == ["1", "2"]

    command, env = _command(home, environment)

    first = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    second = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    codes = sorted([first.wait(timeout=300), second.wait(timeout=300)])
    outputs = [p.stdout.read().decode() for p in (first, second) if p.stdout]
    assert _versions(home) == ["1", "2", "3"]  # one run registered; the other did nothing
    assert codes in ([0, 0], [0, BUSY]), outputs
    if codes == [0, 0]:  # the second started after the first was done: data unchanged
        assert any("unchanged" in o for o in outputs)
    statuses = [r["details"].get("status") for r in _runs(home) if r["outcome"] != "started"]
    assert statuses.count("trained") == 1 and statuses.count("busy") >= 1


def test_a_killed_run_leaves_nothing_registered(
    home: Settings, environment: Callable[..., dict[str, str]]
) -> None:
    _write_requests(home, _request(1))
    _set_epochs(home, 500)  # long enough to be killed while training
    command, env = _command(home, environment)
    before = Registry(home).aliases(MODEL)
    process = subprocess.Popen(
        [*command, "--from-requests"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    assert process.stderr is not None
    seen = []
    for raw in process.stderr:
        seen.append(raw.decode())
        if "epoch 1/500" in seen[-1]:
            break
    process.kill()
    process.wait(timeout=60)
    assert any("epoch 1/500" in line for line in seen), "".join(seen)

    assert _versions(home) == ["1", "2"]
    assert Registry(home).aliases(MODEL) == before
    leftovers = [p for p in home.registry_dir.rglob("*") if p.name.startswith(STAGING_PREFIX)]
    assert leftovers == []
    assert _checkpoint(home) is None  # the request is still pending
    assert [r["outcome"] for r in _runs(home)] == ["started"]

    _set_epochs(home, 1)
    served = retrain(home, _options(from_requests=True))  # the lock died with the process
    assert served.status is RunStatus.TRAINED
    assert served.trigger["drift"]["request_ids"] == ["req-1"]
    assert _versions(home) == ["1", "2", "3"]
