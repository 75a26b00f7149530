"""Triggers of the retraining job: schedule, drift request log, checkpoint, lock."""

from __future__ import annotations

import threading
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from vigie.config import Settings, load_settings
from vigie.errors import ErrorCode, VigieError
from vigie.events.retraining_requests import read_requests
from vigie.events.segments import SegmentSink
from vigie.retraining.triggers import (
    AlreadyRunning,
    coalesce,
    commit_checkpoint,
    exclusive_run,
    last_checkpoint,
    schedule_due,
)
from vigie.warehouse.connection import connect
from vigie.warehouse.migrations import migrate


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return load_settings(home=tmp_path, mode="local", actor="tests")


def _request(n: int, model: str = "flight_delay") -> dict[str, Any]:
    """A request as the drift sidecar writes it (vigie.monitoring.sidecar)."""
    return {
        "request_id": f"r{n}",
        "model": model,
        "version": "1",
        "requested_at": f"2013-02-0{n}T00:00:00+00:00",
        "reason": "drift",
        "rule": {"consecutive_windows": 3, "drift_share": 0.5},
        "windows": [f"w{n}", "shared"],
        "evidence": [{"window_id": f"w{n}"}],
        "features": [{"name": "temp", "stattest": "psi", "score": 0.3, "threshold": 0.1}],
        "seq": n,
        "writer": "test",
        "logged_at": "2013-02-01T00:00:00+00:00",
    }


def test_schedule_due_by_age_of_the_champion_data() -> None:
    assert not schedule_due(date(2013, 1, 31), date(2013, 2, 20), 30).due
    due = schedule_due(date(2013, 1, 31), date(2013, 3, 2), 30)
    assert due.due and due.age_days == 30
    assert schedule_due(None, date(2013, 3, 2), 30).due  # nothing in production
    with pytest.raises(VigieError):
        schedule_due(None, date(2013, 3, 2), -1)


def test_requests_read_after_an_offset_and_coalesced(tmp_path: Path) -> None:
    folder = tmp_path / "retraining"
    sink = SegmentSink(folder, max_bytes=700)  # small segments: reading spans several
    for n in (1, 2):
        sink.write([_request(n)])
    sink.write([_request(3, "arrival_delay")])
    found, position = read_requests(folder, None)
    assert [r.request_id for r in found] == ["r1", "r2", "r3"]
    assert position == found[-1].offset
    mine = [r for r in found if r.model == "flight_delay"]
    evidence = coalesce(mine)
    assert evidence["request_ids"] == ["r1", "r2"]
    assert evidence["windows"] == ["w1", "shared", "w2"]
    assert evidence["features"] == ["temp"]
    again, same = read_requests(folder, position)
    assert again == [] and same == position
    sink.write([_request(4)])
    later, _ = read_requests(folder, position)
    assert [r.request_id for r in later] == ["r4"]


def test_unreadable_and_partial_lines(tmp_path: Path) -> None:
    folder = tmp_path / "retraining"
    SegmentSink(folder).write([_request(1)])
    segment = folder / "segment-000001.jsonl"
    with segment.open("ab") as handle:
        handle.write(b'not json\n{"request_id": "half')
    found, position = read_requests(folder, None)
    assert [r.request_id for r in found] == ["r1"]
    assert position is not None and position != found[0].offset  # the bad line is read


def test_checkpoint_is_append_only_per_model(settings: Settings) -> None:
    warehouse = connect(settings.resolved_warehouse_url)
    try:
        migrate(warehouse)
        assert last_checkpoint(warehouse, "flight_delay") is None
        commit_checkpoint(warehouse, "flight_delay", "000001:000000000000", 2, "run-1")
        commit_checkpoint(warehouse, "flight_delay", "000001:000000000420", 1, "run-2")
        commit_checkpoint(warehouse, "arrival_delay", "000001:000000000100", 1, "run-3")
        assert last_checkpoint(warehouse, "flight_delay") == "000001:000000000420"
        assert last_checkpoint(warehouse, "arrival_delay") == "000001:000000000100"
        rows = warehouse.query(
            "SELECT count(*) FROM consumer_checkpoint WHERE consumer = 'retrain-flight_delay'"
        )
        assert rows[0][0] == 2
    finally:
        warehouse.close()


def test_lock_refuses_a_second_holder_until_released(settings: Settings) -> None:
    held, release = threading.Event(), threading.Event()

    def holder() -> None:
        with exclusive_run(settings, "flight_delay"):
            held.set()
            release.wait(30)

    thread = threading.Thread(target=holder)
    thread.start()
    try:
        assert held.wait(30)
        with pytest.raises(AlreadyRunning) as caught, exclusive_run(settings, "flight_delay"):
            pass
        assert caught.value.code is ErrorCode.CONFLICT
        assert "already running" in caught.value.message
        with exclusive_run(settings, "arrival_delay"):  # another model is independent
            pass
    finally:
        release.set()
        thread.join()
    with exclusive_run(settings, "flight_delay"):
        pass
