"""The local event stream: publish, poll, ack, restart at the committed offset, quarantine."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest

from vigie.config import Settings
from vigie.errors import ErrorCode, VigieError
from vigie.events.local_stream import LocalEventStream, count_after
from vigie.events.segments import segment_numbers, segment_path
from vigie.events.stream import open_event_stream, read_quarantine

from . import T0, departed, every_kind


@pytest.fixture
def settings(tmp_path: Path, make_settings: Callable[..., Settings]) -> Settings:
    return make_settings(tmp_path / "home", None)


@pytest.fixture
def stream(settings: Settings) -> LocalEventStream:
    opened = open_event_stream(settings, "flights")
    assert isinstance(opened, LocalEventStream)
    return opened


def keys(deliveries: list) -> list[int]:  # type: ignore[type-arg]
    return [d.event.flight_key for d in deliveries]


def test_the_stream_lives_under_home(settings: Settings, stream: LocalEventStream) -> None:
    stream.publish([departed(1)])
    assert stream.folder == settings.home / "events" / "flights"
    assert segment_numbers(stream.folder) == [1]


def test_publish_poll_ack(stream: LocalEventStream) -> None:
    events = every_kind()
    stream.publish(events)
    consumer = stream.consumer("features", "c1")
    assert consumer.lag() == len(events)
    first = consumer.poll(4)
    assert [d.event for d in first] == events[:4]
    assert consumer.lag() == len(events)  # delivered, not acked: still pending
    second = consumer.poll(10)
    assert [d.event for d in second] == events[4:]
    assert consumer.poll(10) == []
    consumer.ack(first + second)
    assert consumer.lag() == 0
    assert consumer.committed == second[-1].id


def test_a_restarted_consumer_resumes_at_the_committed_offset(stream: LocalEventStream) -> None:
    stream.publish([departed(k) for k in range(6)])
    consumer = stream.consumer("features", "c1")
    batch = consumer.poll(4)
    consumer.ack(batch[:2])
    consumer.close()  # dies with two deliveries unacked
    restarted = stream.consumer("features", "c2")
    assert restarted.lag() == 4
    assert keys(restarted.poll(10)) == [2, 3, 4, 5]


def test_the_commit_stops_at_the_first_unacked_delivery(stream: LocalEventStream) -> None:
    stream.publish([departed(k) for k in range(4)])
    consumer = stream.consumer("features", "c1")
    batch = consumer.poll(4)
    consumer.ack([batch[0], batch[2], batch[3]])
    assert consumer.committed == batch[0].id
    assert consumer.lag() == 3
    consumer.close()
    again = stream.consumer("features", "c1")
    assert keys(again.poll(10)) == [1, 2, 3]
    again.ack(again.poll(10))  # nothing new: acking nothing changes nothing
    assert again.committed == batch[0].id


def test_groups_are_independent_and_one_consumer_per_group(stream: LocalEventStream) -> None:
    stream.publish([departed(1), departed(2)])
    features = stream.consumer("features", "c1")
    features.ack(features.poll(10))
    facts = stream.consumer("facts", "c1")
    assert keys(facts.poll(10)) == [1, 2]
    with pytest.raises(VigieError) as caught:
        stream.consumer("features", "c2")
    assert caught.value.code is ErrorCode.CONFLICT
    features.close()
    stream.consumer("features", "c2").close()


def test_events_come_in_publish_order_not_event_time(stream: LocalEventStream) -> None:
    late = departed(1, at=T0 + timedelta(hours=5))
    early = departed(2, at=T0)
    stream.publish([late])
    stream.publish([early])
    deliveries = stream.consumer("features", "c1").poll(10)
    assert [d.event for d in deliveries] == [late, early]


def test_a_poison_line_is_quarantined_not_returned(
    settings: Settings, stream: LocalEventStream
) -> None:
    stream.publish([departed(1)])
    with segment_path(stream.folder, 1).open("ab") as handle:
        handle.write(b'{"schema_version": 1, "kind": "flight.teleported"}\n')
    stream.publish([departed(2)])
    consumer = stream.consumer("features", "c1")
    deliveries = consumer.poll(10)
    assert keys(deliveries) == [1, 2]
    assert consumer.quarantined == 1
    [entry] = read_quarantine(settings, "flights")
    assert "unknown kind 'flight.teleported'" in entry.reason
    assert entry.raw == b'{"schema_version": 1, "kind": "flight.teleported"}'
    assert entry.group == "features" and entry.consumer == "c1"
    assert deliveries[0].id < entry.id < deliveries[1].id
    consumer.ack(deliveries)
    consumer.close()
    assert stream.consumer("features", "c1").poll(10) == []  # poison not redelivered either


def test_a_batch_of_only_poison_reads_on(stream: LocalEventStream) -> None:
    stream.folder.mkdir(parents=True)
    with segment_path(stream.folder, 1).open("ab") as handle:
        handle.write(b"garbage\n\xff\n" + b"[]\n")
    stream.publish([departed(3)])
    consumer = stream.consumer("features", "c1")
    assert keys(consumer.poll(2)) == [3]
    raws = [entry.raw for entry in stream.read_quarantine()]
    assert raws == [b"garbage", b"\xff", b"[]"]
    assert consumer.committed is not None  # the poison is committed past already
    assert consumer.lag() == 1


def test_segments_rotate_and_reading_crosses_them(tmp_path: Path) -> None:
    stream = LocalEventStream(tmp_path / "s", segment_bytes=400)
    for k in range(10):
        stream.publish([departed(k)])
    assert len(segment_numbers(stream.folder)) > 2
    consumer = stream.consumer("g", "c")
    got = consumer.poll(4) + consumer.poll(100)
    assert keys(got) == list(range(10))
    consumer.ack(got[:7])
    assert count_after(stream.folder, consumer.committed) == 3 == consumer.lag()


def test_a_blocking_poll_returns_when_nothing_comes(stream: LocalEventStream) -> None:
    consumer = stream.consumer("g", "c")
    assert consumer.poll(10, block_ms=50) == []


def test_the_offset_file_is_json_and_a_corrupt_one_is_refused(stream: LocalEventStream) -> None:
    stream.publish([departed(1)])
    consumer = stream.consumer("g", "c")
    delivered = consumer.poll(1)
    consumer.ack(delivered)
    consumer.close()
    path = stream.folder / "groups" / "g.offset"
    assert json.loads(path.read_text())["offset"] == delivered[0].id
    assert not [p for p in path.parent.iterdir() if p.name.endswith(".tmp")]
    path.write_text("[]")
    with pytest.raises(VigieError) as caught:
        stream.consumer("g", "c")
    assert caught.value.code is ErrorCode.SOURCE_CORRUPT


@pytest.mark.parametrize("name", ["../escape", "", "a/b", ".hidden"])
def test_names_that_are_not_file_names_are_refused(settings: Settings, name: str) -> None:
    with pytest.raises(VigieError) as caught:
        open_event_stream(settings, name)
    assert caught.value.code is ErrorCode.INVALID_INPUT


def test_an_unsupported_stream_url_is_a_configuration_error(
    tmp_path: Path, make_settings: Callable[..., Settings]
) -> None:
    settings = make_settings(tmp_path, None, stream_url="kafka://broker:9092")
    with pytest.raises(VigieError) as caught:
        open_event_stream(settings)
    assert caught.value.code is ErrorCode.CONFIGURATION
