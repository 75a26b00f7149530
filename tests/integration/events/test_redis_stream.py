"""The Redis event stream on a real server: groups, claims, quarantine, bounds, lag."""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import textwrap
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
import redis

from vigie.events.consume import IdempotentConsumer
from vigie.events.flight_events import Event, FlightDeparted, event_id_for
from vigie.events.redis_stream import RedisEventStream

pytestmark = pytest.mark.integration

REDIS_ENV = "VIGIE_TEST_REDIS_URL"
T0 = datetime(2013, 1, 1, 5, tzinfo=UTC)
CLAIM_MS = 300


def departed(key: int) -> FlightDeparted:
    sched = T0 + timedelta(minutes=key)
    return FlightDeparted(
        event_id_for("flight.departed", key), sched, key, "B6", "JFK", "BOS", sched, 0.0
    )


class Store:
    """An idempotent handler: upsert by event id; counts how often each id was applied."""

    def __init__(self) -> None:
        self.rows: dict[str, Event] = {}
        self.applied: Counter[str] = Counter()

    def apply(self, events: list[Event]) -> None:
        for event in events:
            self.rows[event.event_id] = event
            self.applied[event.event_id] += 1


@pytest.fixture
def redis_url() -> str:
    url = os.environ.get(REDIS_ENV)
    if not url:
        pytest.skip(f"{REDIS_ENV} is not set: no Redis server to test against")
    return url


@pytest.fixture
def admin(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


@pytest.fixture
def name(admin: redis.Redis) -> Iterator[str]:
    """A stream name of this test only; its keys are deleted after it."""
    value = f"test-{secrets.token_hex(6)}"
    yield value
    admin.delete(f"vigie:events:{value}", f"vigie:events:{value}:quarantine")


@pytest.fixture
def stream(redis_url: str, name: str) -> Iterator[RedisEventStream]:
    opened = RedisEventStream(redis_url, name=name, claim_min_idle_ms=CLAIM_MS)
    yield opened
    opened.close()


def drain(consumer: IdempotentConsumer) -> None:
    while consumer.run_once(7):
        pass


def test_publish_poll_ack(stream: RedisEventStream, admin: redis.Redis) -> None:
    events = [departed(k) for k in range(5)]
    stream.publish(events)
    consumer = stream.consumer("features", "c1")
    deliveries = consumer.poll(10)
    assert [d.event for d in deliveries] == events
    assert all(d.id.count("-") == 1 for d in deliveries)
    assert consumer.lag() == 5  # all delivered, none acked
    consumer.ack(deliveries[:3])
    assert consumer.lag() == 2
    assert admin.xpending(stream.key, "features")["pending"] == 2
    consumer.ack(deliveries[3:])
    assert consumer.lag() == 0
    assert consumer.poll(10, block_ms=50) == []
    other_group = stream.consumer("facts", "c1")
    assert [d.event for d in other_group.poll(10)] == events
    consumer.close()
    other_group.close()


def test_lag_counts_undelivered_and_pending(stream: RedisEventStream) -> None:
    stream.publish([departed(k) for k in range(10)])
    consumer = stream.consumer("g", "c")
    assert consumer.lag() == 10  # the group is made at id 0: everything is still to come
    consumer.ack(consumer.poll(4)[:1])
    assert consumer.lag() == 9  # 6 undelivered + 3 pending
    consumer.close()


def test_poison_entries_are_quarantined_and_acked(
    stream: RedisEventStream, admin: redis.Redis
) -> None:
    stream.publish([departed(1)])
    admin.xadd(stream.key, {b"event": b'{"schema_version": 1, "kind": "flight.teleported"}'})
    admin.xadd(stream.key, {b"other": b"x"})
    stream.publish([departed(2)])
    consumer = stream.consumer("g", "c")
    assert [d.event.flight_key for d in consumer.poll(10)] == [1, 2]  # type: ignore[union-attr]
    assert consumer.quarantined == 2
    entries = stream.read_quarantine()
    assert [e.reason for e in entries] == [
        "unknown kind 'flight.teleported'; known: " + entries[0].reason.split("known: ")[1],
        "no 'event' field",
    ]
    assert entries[0].raw == b'{"schema_version": 1, "kind": "flight.teleported"}'
    assert entries[0].group == "g" and entries[0].consumer == "c"
    assert admin.xpending(stream.key, "g")["pending"] == 2  # only the two real events
    consumer.close()


def test_duplicate_publishes_are_applied_once(stream: RedisEventStream) -> None:
    stream.publish([departed(1), departed(2)])
    stream.publish([departed(1)])  # a replayed range
    store = Store()
    consumer = IdempotentConsumer(stream.consumer("g", "c"), store.apply)
    drain(consumer)
    assert dict(store.applied) == {"flight.departed:1": 1, "flight.departed:2": 1}
    assert (consumer.applied, consumer.duplicates) == (2, 1)
    assert consumer.lag() == 0


def test_the_maxlen_bound_is_kept(redis_url: str, name: str, admin: redis.Redis) -> None:
    bounded = RedisEventStream(redis_url, name=name, maxlen=100)
    for start in range(0, 1000, 50):
        bounded.publish([departed(k) for k in range(start, start + 50)])
    length = admin.xlen(bounded.key)
    # MAXLEN ~ trims whole macro-nodes (100 entries by default): never below the bound
    assert 100 <= length <= 250
    last = admin.xrevrange(bounded.key, count=1)[0][1][b"event"]
    assert json.loads(last)["flight_key"] == 999
    bounded.close()


def test_a_lost_group_is_recreated(stream: RedisEventStream, admin: redis.Redis) -> None:
    stream.publish([departed(1), departed(2)])
    consumer = stream.consumer("g", "c")
    consumer.ack(consumer.poll(10))
    admin.xgroup_destroy(stream.key, "g")  # what a server that lost its data did
    redelivered = consumer.poll(10)  # NOGROUP: made again at id 0, at least once
    assert [d.event.flight_key for d in redelivered] == [1, 2]  # type: ignore[union-attr]
    consumer.close()


DOOMED = textwrap.dedent(
    """
    import json, sys, time
    from vigie.events.redis_stream import RedisEventStream
    url, name = sys.argv[1], sys.argv[2]
    consumer = RedisEventStream(url, name=name).consumer("g", "doomed")
    batch = consumer.poll(8)
    print(json.dumps([d.id for d in batch]), flush=True)
    time.sleep(600)  # killed here, before any ack
    """
)


def test_a_consumer_killed_mid_batch_is_taken_over(
    stream: RedisEventStream, redis_url: str, name: str, admin: redis.Redis
) -> None:
    events = [departed(k) for k in range(20)]
    stream.publish(events)
    doomed = subprocess.Popen(
        [sys.executable, "-c", DOOMED, redis_url, name], stdout=subprocess.PIPE, text=True
    )
    try:
        assert doomed.stdout is not None
        taken = json.loads(doomed.stdout.readline())
    finally:
        os.kill(doomed.pid, signal.SIGKILL)
        doomed.wait(timeout=10)
    assert len(taken) == 8
    assert admin.xpending(stream.key, "g")["pending"] == 8
    time.sleep(CLAIM_MS / 1000 * 2)
    survivor = stream.consumer("g", "survivor")
    first = survivor.poll(8)
    assert [d.id for d in first] == taken  # claimed (XAUTOCLAIM), not new ones
    store = Store()
    consumer = IdempotentConsumer(survivor, store.apply)
    store.apply([d.event for d in first])
    survivor.ack(first)
    drain(consumer)
    assert set(store.rows) == {e.event_id for e in events}
    assert set(store.applied.values()) == {1}  # none missing, none twice
    assert admin.xpending(stream.key, "g")["pending"] == 0
    assert consumer.lag() == 0
    survivor.close()
