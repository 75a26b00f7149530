"""The outcome log on local segments: events written and read back, bad lines reported."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from vigie.config import Settings
from vigie.errors import ErrorCode, VigieError
from vigie.events.outcomes import OutcomeEvent, OutcomeLog, new_event_id, read_outcomes
from vigie.events.segments import SegmentSink, read_segments, segment_path

from .conftest import BreakableSink

ARRIVAL = datetime(2013, 1, 1, 14, 30, tzinfo=UTC)


@pytest.fixture
def settings(tmp_path: Path, make_settings: Callable[..., Settings]) -> Settings:
    return make_settings(tmp_path / "home", None)


def event(key: int, delay: int = 20) -> OutcomeEvent:
    return OutcomeEvent(new_event_id(), key, ARRIVAL, delay, delay > 15, "test")


def test_events_are_written_under_home_and_read_back_in_order(settings: Settings) -> None:
    log = OutcomeLog(settings)
    log.emit([event(1), event(2, -5)])
    assert log.pending == 2
    assert log.flush() and log.pending == 0 and log.written == 2
    log.emit([event(3)])
    log.close()
    assert (settings.home / "outcomes" / "segment-000001.jsonl").is_file()
    events = read_outcomes(settings, limit=10)
    assert [(e.flight_key, e.arr_delay_min, e.is_delayed_15) for e in events] == [
        (1, 20, True),
        (2, -5, False),
        (3, 20, True),
    ]
    assert events[0].observed_at == ARRIVAL and events[0].source == "test"
    assert [e.flight_key for e in read_outcomes(settings, after=events[0].offset, limit=1)] == [2]


def test_observed_at_is_kept_in_utc(settings: Settings) -> None:
    new_york = timezone(timedelta(hours=-5))
    log = OutcomeLog(settings)
    log.emit([OutcomeEvent("e", 1, datetime(2013, 1, 1, 9, 30, tzinfo=new_york), 0, False, "t")])
    log.close()
    (read,) = read_outcomes(settings, limit=1)
    assert read.observed_at == ARRIVAL and read.observed_at.utcoffset() == timedelta(0)
    stored = (settings.outcomes_dir / "segment-000001.jsonl").read_text()
    assert '"observed_at":"2013-01-01T14:30:00+00:00"' in stored


def test_a_failed_write_keeps_the_events_for_the_next_flush(settings: Settings) -> None:
    sink = BreakableSink(settings.outcomes_dir)
    log = OutcomeLog(settings, sink=sink)
    sink.broken = True
    log.emit([event(1)])
    assert not log.flush()
    assert (log.pending, log.failures) == (1, 1)
    sink.broken = False
    assert log.flush()
    assert [e.flight_key for e in read_outcomes(settings, limit=5)] == [1]


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"flight_key": None}, "'flight_key' is missing"),
        ({"flight_key": "12"}, "'flight_key' must be an integer"),
        ({"arr_delay_min": 1.5}, "'arr_delay_min' must be an integer"),
        ({"is_delayed_15": "yes"}, "'is_delayed_15' must be true or false"),
        ({"observed_at": "2013-01-01T10:00:00"}, "'observed_at' has no time zone"),
        ({"observed_at": "soon"}, "'observed_at' is not an ISO-8601 time"),
        ({"source": ""}, "'source' must be a non-empty string"),
    ],
)
def test_invalid_events_are_reported_with_their_offset_and_the_rest_is_read(
    settings: Settings, change: dict[str, Any], reason: str
) -> None:
    good = event(1).to_json() | {"seq": 0, "writer": "w", "logged_at": "x"}
    SegmentSink(settings.outcomes_dir).write([good | change, good | {"seq": 1}])
    skipped: list[tuple[str, str]] = []
    events = read_outcomes(settings, limit=5, on_skip=lambda o, r: skipped.append((o, r)))
    assert [e.flight_key for e in events] == [1]
    assert len(skipped) == 1 and reason in skipped[0][1]
    assert skipped[0][0] < events[0].offset


def test_unreadable_and_truncated_lines_are_reported_and_can_be_resumed_after(
    tmp_path: Path,
) -> None:
    sink = SegmentSink(tmp_path, max_bytes=1)  # one batch per segment
    entry = {"seq": 0, "writer": "w", "logged_at": "x"}
    sink.write([entry])
    with segment_path(tmp_path, 1).open("ab") as handle:
        handle.write(b"not json\n" + b'{"seq": 1, "wri')  # garbage, then a torn last line
    sink.write([entry | {"seq": 2}])  # goes to segment 2: the torn line is truncated for good
    with segment_path(tmp_path, 2).open("ab") as handle:
        handle.write(b'{"seq": 3')  # being written: left for later, not reported
    skipped: list[tuple[str, str]] = []
    entries = read_segments(
        tmp_path, after=None, limit=10, on_skip=lambda o, r: skipped.append((o, r))
    )
    assert [e.seq for e in entries] == [0, 2]
    assert [reason.split(":")[0] for _, reason in skipped] == [
        "Expecting value",
        "truncated line (no end of line)",
    ]
    # a skipped line's offset is a valid place to resume from
    assert [e.seq for e in read_segments(tmp_path, after=skipped[-1][0], limit=10)] == [2]


def test_limit_must_be_positive(settings: Settings) -> None:
    with pytest.raises(VigieError) as caught:
        read_outcomes(settings, limit=0)
    assert caught.value.code is ErrorCode.INVALID_INPUT
