"""The idempotent consumer over a local stream: copies dropped, failures redelivered."""

from __future__ import annotations

from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from vigie.events.consume import ConsumerMetrics, IdempotentConsumer
from vigie.events.flight_events import Event
from vigie.events.local_stream import LocalEventStream
from vigie.events.segments import segment_path

from . import departed


class Store:
    """An idempotent handler: upsert by event id, every call recorded."""

    def __init__(self, fail_times: int = 0) -> None:
        self.rows: dict[str, Event] = {}
        self.calls: list[list[str]] = []
        self.fail_times = fail_times

    def apply(self, events: list[Event]) -> None:
        self.calls.append([e.event_id for e in events])
        if self.fail_times:
            self.fail_times -= 1
            raise RuntimeError("the store is down")
        for event in events:
            self.rows[event.event_id] = event


@pytest.fixture
def stream(tmp_path: Path) -> LocalEventStream:
    return LocalEventStream(tmp_path / "flights")


def drain(consumer: IdempotentConsumer) -> None:
    while consumer.run_once(3):
        pass


def test_copies_are_applied_once(stream: LocalEventStream) -> None:
    stream.publish([departed(1), departed(2), departed(1)])  # a copy within a batch
    stream.publish([departed(3), departed(2)])  # and a replayed one in a later batch
    store = Store()
    consumer = IdempotentConsumer(stream.consumer("g", "c"), store.apply)
    drain(consumer)
    assert sorted(store.rows) == ["flight.departed:1", "flight.departed:2", "flight.departed:3"]
    assert sum(len(call) for call in store.calls) == 3
    assert (consumer.applied, consumer.duplicates) == (3, 2)
    assert consumer.lag() == 0


def test_a_failed_handler_leaves_the_batch_unacked_and_retries_it(
    stream: LocalEventStream,
) -> None:
    stream.publish([departed(k) for k in range(5)])
    store = Store(fail_times=1)
    inner = stream.consumer("g", "c")
    consumer = IdempotentConsumer(inner, store.apply)
    with pytest.raises(RuntimeError):
        consumer.run_once(3)
    assert inner.committed is None and inner.lag() == 5
    assert consumer.run_once(3) == 3
    assert store.calls[0] == store.calls[1]  # the same batch, not the next one
    drain(consumer)
    assert len(store.rows) == 5 and consumer.applied == 5


def test_a_consumer_that_died_gets_its_unacked_batch_back(stream: LocalEventStream) -> None:
    stream.publish([departed(k) for k in range(4)])
    store = Store(fail_times=1)
    first = stream.consumer("g", "c")
    with pytest.raises(RuntimeError):
        IdempotentConsumer(first, store.apply).run_once(2)
    first.close()
    restarted = IdempotentConsumer(stream.consumer("g", "c"), store.apply)
    drain(restarted)
    assert store.calls[1][:2] == store.calls[0] == ["flight.departed:0", "flight.departed:1"]
    assert sorted(store.rows) == [f"flight.departed:{k}" for k in range(4)]


def test_the_seen_set_is_bounded(stream: LocalEventStream) -> None:
    stream.publish([departed(k) for k in range(5)])
    stream.publish([departed(0), departed(4)])
    store = Store()
    consumer = IdempotentConsumer(stream.consumer("g", "c"), store.apply, seen_limit=2)
    drain(consumer)
    # 0 was forgotten (the handler's own idempotence absorbs it); 4 was still remembered
    assert consumer.duplicates == 1 and consumer.applied == 6
    assert len(store.rows) == 5


def test_metrics_count_applied_duplicates_quarantined_and_lag(
    stream: LocalEventStream,
) -> None:
    stream.publish([departed(1), departed(1)])
    with segment_path(stream.folder, 1).open("ab") as handle:
        handle.write(b"not an event\n")
    stream.publish([departed(2)])
    registry = CollectorRegistry()
    metrics = ConsumerMetrics.on(registry)
    assert ConsumerMetrics.on(registry) is metrics  # a second consumer shares them
    consumer = IdempotentConsumer(stream.consumer("g", "c"), Store().apply, metrics=metrics)
    drain(consumer)
    labels = {"stream": "flights", "group": "g"}

    def value(name: str) -> float | None:
        return registry.get_sample_value(name, labels)

    assert value("vigie_events_applied_total") == 2 == consumer.applied
    assert value("vigie_events_duplicates_total") == 1 == consumer.duplicates
    assert value("vigie_events_quarantined_total") == 1 == consumer.quarantined
    stream.publish([departed(3)])
    assert consumer.lag() == 1
    assert value("vigie_events_consumer_lag") == 1


def test_separate_registries_get_separate_metrics() -> None:
    assert ConsumerMetrics.on() is not ConsumerMetrics.on()
