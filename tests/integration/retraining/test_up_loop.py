"""The loop of ``vigie up`` on a real service: drift request -> retraining -> promotion -> reload.

A private copy of ``trained_home`` (ten labelled days of January 2013, ``flight_delay`` v1 in
production, v2 candidate) is served by its own ``bentoml serve``. A drift request and the
outcomes of flights up to January 10 (New York time) are written as the sidecar and the
replay would; one step of :class:`vigie.cli.up_loop.RetrainingLoop` must then run ``vigie
retrain`` as of January 9, promote its candidate through the live checks, and the running
service must answer with it.
"""

from __future__ import annotations

import json
import shutil
import threading
from collections.abc import Callable
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from vigie.cli.up_loop import RetrainingLoop
from vigie.config import Settings, load_settings
from vigie.events.outcomes import OutcomeEvent, OutcomeLog
from vigie.events.segments import SegmentSink
from vigie.registry import Registry

from ..conftest import running_server
from ..serving.test_rest_hot_reload import request_body

pytestmark = [pytest.mark.integration, pytest.mark.slow]

MODEL = "flight_delay"


@pytest.fixture
def home(trained_home: Settings, tmp_path: Path) -> Settings:
    """A private copy whose gates skip the comparison with production (a one-epoch
    challenger cannot reliably beat a two-epoch champion)."""
    copy = tmp_path / "home"
    shutil.copytree(trained_home.home, copy)
    settings = load_settings(
        home=copy, models_dir=copy / "models", device="cpu", mode="local", actor="vigie-tests"
    )
    path = settings.models_dir / MODEL / "spec.yaml"
    raw = yaml.safe_load(path.read_text())
    raw["hyperparameters"].update(max_epochs=1, patience=1)
    raw["gates"]["must_beat_production"] = None
    path.write_text(yaml.safe_dump(raw))
    return settings


def _request(model: str = MODEL) -> dict[str, Any]:
    return {
        "request_id": f"req-up-{model}",
        "model": model,
        "version": "1",
        "requested_at": "2013-01-11T00:00:00+00:00",
        "reason": "drift",
        "windows": ["000003", "000004", "000005"],
        "features": [{"name": "temp", "stattest": "wasserstein", "score": 0.4}],
    }


def _outcome(key: int, observed_at: datetime) -> OutcomeEvent:
    return OutcomeEvent(f"ev-{key}", key, observed_at, 20, True, "replay")


def test_a_drift_request_is_retrained_promoted_and_served(
    home: Settings, tmp_path: Path, environment: Callable[..., dict[str, str]]
) -> None:
    registry = Registry(home)
    assert registry.resolve(MODEL, "production") == "1"
    # both models asked at once: served side by side
    SegmentSink(home.monitoring_dir / "retraining").write([_request(), _request("arrival_delay")])
    outcomes = OutcomeLog(home)
    # the latest label: 22:00 on January 10 in New York, so January 9 is the last whole day
    outcomes.emit([_outcome(1, datetime(2013, 1, 11, 3, 0, tzinfo=UTC))])
    outcomes.emit([_outcome(2, datetime(2013, 1, 5, 12, 0, tzinfo=UTC))])
    outcomes.close()

    with running_server(home, tmp_path / "server.log") as server:
        env = environment(
            home=home.home, models_dir=home.models_dir, device="cpu", mode="local"
        ) | {"DO_NOT_TRACK": "1", "BENTOML_DO_NOT_TRACK": "True"}
        said: list[str] = []
        loop = RetrainingLoop(
            home, server.rest, env, said.append, retrain_args=("--evaluation-days", "3")
        )
        assert loop.labelled_through() == date(2013, 1, 9)

        assert loop.step(threading.Event()) == 2

        steps = {s.model: s for s in loop.steps}
        assert set(steps) == {MODEL, "arrival_delay"}
        assert steps["arrival_delay"].version == "2", steps["arrival_delay"].retraining
        step = steps[MODEL]
        assert step.as_of == date(2013, 1, 9)
        assert step.version == "3", step.retraining
        assert step.promoted, step.promotion
        assert Registry(home).resolve(MODEL, "production") == "3"
        lineage = Registry(home).get(MODEL, "3").extra["retraining"]
        assert lineage["trigger"]["drift"]["request_ids"] == [f"req-up-{MODEL}"]
        assert lineage["windows"]["evaluation_to"] == "2013-01-09"
        report = json.loads((home.home / "logs" / "promotion-flight_delay-3.json").read_text())
        assert report["status"] == "promoted"
        assert report["live_checks"] is True
        answer = httpx.post(
            f"{server.rest}/v2/models/{MODEL}/infer",
            json=request_body(server),
            headers=server.headers,
            timeout=30,
        )
        assert answer.status_code == 200
        assert answer.json()["model_version"] == "3"  # hot-reloaded by the running service

        # the request was read: the next look starts nothing
        assert loop.step(threading.Event()) == 0
        assert len(loop.steps) == 2
