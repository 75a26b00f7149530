"""The drift sidecar's core on synthetic traffic: windows, drift, labels, requests, bad input."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from vigie.config import Settings, load_settings
from vigie.errors import ErrorCode, VigieError
from vigie.events.outcomes import OutcomeEvent
from vigie.events.segments import OnSkip, SegmentSink
from vigie.governance.audit import verify
from vigie.monitoring.drift import ColumnKind, ReferenceProfile
from vigie.monitoring.reference import PREDICTION, TARGET, GateBound, VersionReference
from vigie.monitoring.sidecar import Monitor, read_requests
from vigie.training.spec import Task

KINDS = {"temp": ColumnKind.NUMERIC, "carrier": ColumnKind.CATEGORICAL}
CARRIERS = ["AA", "B6", "DL", "UA"]
START = datetime.now(UTC) - timedelta(minutes=30)  # recent: time windows stay open


def _reference(settings: Settings, model: str, version: str) -> VersionReference:
    if version == "9":
        raise VigieError(ErrorCode.NOT_FOUND, "no version 9")
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(
        {
            "temp": rng.normal(40.0, 5.0, 3000),
            "carrier": rng.choice(CARRIERS, 3000),
            PREDICTION: rng.uniform(0.0, 0.5, 3000),
        }
    )
    frame[TARGET] = (rng.uniform(0, 1, 3000) < frame[PREDICTION]).astype(float)
    return VersionReference(
        model=model,
        version=version,
        task=Task.CLASSIFICATION,
        output="probability",
        kinds=dict(KINDS),
        profile=ReferenceProfile.from_frame(frame, KINDS),
        prediction_profile=ReferenceProfile.from_frame(frame, {PREDICTION: ColumnKind.NUMERIC}),
        sample=frame,
        gates=[GateBound("roc_auc", "min", 0.7), GateBound("brier", "max", 0.2)],
        label_threshold=15.0,
    )


class Traffic:
    """Writes payload entries the way the serving data plane does, and outcome events."""

    def __init__(self, settings: Settings) -> None:
        self.sink = SegmentSink(settings.payload_dir)
        self.seq = 0
        self.next_key = 1
        self.rng = np.random.default_rng(1)
        self.outcomes: list[OutcomeEvent] = []
        self.minutes = 0

    def send(
        self, rows: int, *, shift: float = 0.0, version: str = "1", drop: str | None = None
    ) -> list[int]:
        keys = list(range(self.next_key, self.next_key + rows))
        self.next_key += rows
        inputs: dict[str, Any] = {
            "temp": (self.rng.normal(40.0 + shift, 5.0, rows)).tolist(),
            "carrier": self.rng.choice(CARRIERS, rows).tolist(),
        }
        if drop:
            del inputs[drop]
        self.minutes += 1
        entry = {
            "request_id": f"r{self.seq}",
            "time": (START + timedelta(minutes=self.minutes)).isoformat(),
            "protocol": "v2-rest",
            "model": "flight_delay",
            "version": version,
            "route": "production",
            "rows": rows,
            "inputs": inputs,
            "outputs": {"probability": self.rng.uniform(0.0, 0.5, rows).tolist()},
            "row_ids": [str(k) for k in keys],
            "seq": self.seq,
            "writer": "test",
            "logged_at": datetime.now(UTC).isoformat(),
        }
        self.seq += 1
        self.sink.write([entry])
        return keys

    def land(self, keys: Sequence[int], delay: float) -> None:
        for key in keys:
            self.outcomes.append(
                OutcomeEvent(
                    event_id=f"e{key}-{len(self.outcomes)}",
                    flight_key=key,
                    observed_at=START,
                    arr_delay_min=int(delay),
                    is_delayed_15=delay > 15,
                    source="test",
                    offset=f"{len(self.outcomes) + 1:06d}",
                )
            )

    def reader(
        self, _settings: Settings, after: str | None, limit: int, _on_skip: OnSkip
    ) -> list[OutcomeEvent]:
        start = int(after) if after else 0
        return self.outcomes[start : start + limit]


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return load_settings(
        home=tmp_path / "home",
        mode="local",
        actor="sidecar-test",
        monitor_window_rows=500,
        monitor_drift_persist_windows=2,
        monitor_reports=False,
    )


def _monitor(settings: Settings, traffic: Traffic) -> Monitor:
    return Monitor(
        settings, outcome_reader=traffic.reader, reference_loader=_reference, reports=False
    )


def test_count_windows_are_exact_even_when_entries_straddle_them(settings: Settings) -> None:
    traffic = Traffic(settings)
    for _ in range(43):
        traffic.send(35)  # 1,505 rows: three full windows, five rows left open
    monitor = _monitor(settings, traffic)
    monitor.drain()
    results = monitor.results()
    assert [r["window_id"] for r in results] == ["000001", "000002", "000003"]
    assert all(r["rows"] == 500 for r in results)
    assert monitor.health()["open_windows"] == {"flight_delay/1": 5}
    assert not any(r["drift"]["dataset_drift"] for r in results)


def test_persistent_drift_requests_retraining_once_with_evidence(settings: Settings) -> None:
    traffic = Traffic(settings)
    traffic.send(500)
    for _ in range(3):
        traffic.send(500, shift=25.0)  # temperature far above the reference
    monitor = _monitor(settings, traffic)
    monitor.drain()
    results = monitor.results()
    assert [r["drift"]["dataset_drift"] for r in results] == [False, True, True, True]
    assert [r["consecutive_drift"] for r in results] == [0, 1, 2, 3]
    requests = [e.data for e in read_requests(settings)]
    assert len(requests) == 1  # the streak is requested once, not once per window
    request = requests[0]
    assert request["model"] == "flight_delay" and request["version"] == "1"
    assert request["windows"] == ["000002", "000003"]
    assert request["features"][0]["name"] == "temp"
    assert results[2]["retraining_requested"]
    audit = [json.loads(line) for line in settings.audit_log_path.read_text().splitlines()]
    assert [e["action"] for e in audit] == ["monitoring.retraining_request"]
    assert verify(settings.audit_log_path).ok
    text = monitor.metrics.render().decode()
    assert 'vigie_retraining_requests_total{model="flight_delay"} 1.0' in text
    assert 'vigie_drift_consecutive_windows{model="flight_delay",version="1"} 3.0' in text


def test_delayed_labels_update_the_quality_of_closed_windows(settings: Settings) -> None:
    traffic = Traffic(settings)
    keys = traffic.send(500)
    monitor = _monitor(settings, traffic)
    monitor.drain()
    assert monitor.results()[0]["quality"] is None  # no label yet
    traffic.land(keys[:300], delay=30.0)
    traffic.land(keys[300:400], delay=0.0)
    monitor.drain()
    quality = monitor.results()[0]["quality"]
    assert quality["labelled_rows"] == 400
    assert quality["label_coverage"] == pytest.approx(0.8)
    assert quality["metrics"]["positive_rate"] == pytest.approx(300 / 400)
    assert "roc_auc" in quality["metrics"] and quality["gates"]["roc_auc"] == {"min": 0.7}
    text = monitor.metrics.render().decode()
    assert "vigie_label_coverage{" not in text  # the window is younger than the label delay
    monitor.poll(now=time.time() + settings.monitor_label_delay_s)
    text = monitor.metrics.render().decode()
    assert 'vigie_label_coverage{model="flight_delay",version="1"} 0.8' in text
    assert 'vigie_model_quality_gate{bound="min",metric="roc_auc",model="flight_delay"} 0.7' in text


def test_bad_input_is_counted_and_skipped_and_analysis_goes_on(settings: Settings) -> None:
    traffic = Traffic(settings)
    keys = traffic.send(250)
    traffic.send(50, drop="temp")  # a feature missing from the payload
    traffic.send(5, version="9")  # a version whose reference does not load
    with (settings.payload_dir / "segment-000001.jsonl").open("ab") as handle:
        handle.write(b'{"truncated": \n')  # a corrupted line
    traffic.sink.write([{"seq": 99, "writer": "test", "logged_at": "x", "model": 3}])
    traffic.send(200)
    traffic.land(keys[:5], 20.0)
    traffic.land(keys[:1], 20.0)  # duplicate outcome
    traffic.land([10**9], 5.0)  # an outcome for a flight nobody asked about
    monitor = _monitor(settings, traffic)
    monitor.drain()
    bad = monitor.health()["bad_input"]
    assert bad["corrupt_entry"] == 2
    assert bad["missing_feature"] == 1
    assert bad["reference_mismatch"] == 1
    assert bad["duplicate_outcome"] == 1
    assert bad["unknown_flight"] == 1
    results = monitor.results()
    assert len(results) == 1 and results[0]["rows"] == 500
    assert results[0]["missing_features"] == {"temp": 50}
    assert 'vigie_sidecar_bad_input_total{kind="corrupt_entry"} 2.0' in (
        monitor.metrics.render().decode()
    )


def test_restart_resumes_the_open_window_without_losing_or_doubling_rows(
    settings: Settings,
) -> None:
    traffic = Traffic(settings)
    for _ in range(13):
        traffic.send(50)  # 650 rows: window 1 closed, 150 rows open
    first = _monitor(settings, traffic)
    first.drain()
    first.stop()
    for _ in range(7):
        traffic.send(50)  # 350 more: window 2 closes at 1,000
    second = _monitor(settings, traffic)
    second.drain()
    results = second.results()
    assert [(r["window_id"], r["rows"]) for r in results] == [("000001", 500), ("000002", 500)]
    assert second.health()["open_windows"] == {}


def test_close_open_windows_analyses_the_partial_window(settings: Settings) -> None:
    traffic = Traffic(settings)
    traffic.send(42)
    monitor = _monitor(settings, traffic)
    monitor.drain()
    assert monitor.results() == []
    monitor.close_open_windows()
    (result,) = monitor.results()
    assert result["rows"] == 42 and result["closed_by"] == "flush"
    stored = json.loads(
        (settings.monitoring_dir / "results" / "flight_delay" / "1" / "000001.json").read_text()
    )
    assert stored["drift"]["features"][0]["name"] in KINDS


def test_a_feature_missing_from_every_row_is_reported_not_fatal(settings: Settings) -> None:
    traffic = Traffic(settings)
    for _ in range(10):
        traffic.send(50, drop="temp")  # temp absent from the whole window
    monitor = _monitor(settings, traffic)
    monitor.drain()
    (result,) = monitor.results()
    temp = next(f for f in result["drift"]["features"] if f["name"] == "temp")
    assert temp["score"] is None and temp["drifted"]
    assert result["missing_features"] == {"temp": 500}
    assert "vigie_drift_feature_score" in monitor.metrics.render().decode()


def test_a_feature_with_no_value_in_the_window_leads_the_retraining_evidence() -> None:
    from vigie.monitoring.sidecar import _top_features  # noqa: PLC0415

    def feature(name: str, score: float | None, threshold: float | None) -> dict[str, object]:
        return {"name": name, "stattest": "wasserstein", "score": score, "threshold": threshold,
                "drifted": True}  # fmt: skip

    result = {
        "drift": {
            "features": [
                feature("temp", 0.3, 0.1),
                feature("seats", None, None),  # no value at all: scored NaN, shown as None
                feature("dewp", 0.15, 0.1),
            ]
        }
    }
    assert [f["name"] for f in _top_features(result)] == ["seats", "temp", "dewp"]


def test_windows_count_the_rows_the_service_enriched_and_how_fresh() -> None:
    from vigie.monitoring.page_views import freshness_view  # noqa: PLC0415
    from vigie.monitoring.windows import Window  # noqa: PLC0415

    window = Window.__new__(Window)  # only the enrichment counters are exercised
    window.enriched_rows, window.max_age_s = 0, {}
    window.stale_rows = __import__("collections").Counter()
    window.note_enrichment(None, 5)  # a full request: not enriched
    window.note_enrichment({"filled": ["temp"], "stale": {}, "age_s": {"weather": 600}}, 10)
    window.note_enrichment(
        {"filled": ["temp"], "stale": {"stream": 3}, "age_s": {"stream": 9000, "weather": 300}}, 4
    )
    assert window.freshness() == {
        "enriched_rows": 14,
        "stale_rows": {"stream": 3},
        "max_age_s": {"weather": 600, "stream": 9000},
    }
    view = freshness_view(window.freshness(), 19)
    assert view is not None
    assert view["stale_rows"] == 3
    assert {f["name"]: f["max_age_min"] for f in view["families"]} == {
        "stream": "150",
        "weather": "10",
    }
    assert freshness_view({"enriched_rows": 0}, 10) is None
