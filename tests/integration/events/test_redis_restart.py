"""A Redis restart under a consumer: unavailable while down, nothing lost once back.

The test runs its own ``redis-server`` (append-only file in the test's folder) on a free
loopback port and stops it by its PID, so the shared server is never touched.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import redis

from vigie.errors import ErrorCode, VigieError
from vigie.events.consume import IdempotentConsumer
from vigie.events.flight_events import Event, WeatherObserved, event_id_for
from vigie.events.redis_stream import RedisEventStream

pytestmark = pytest.mark.integration

REDIS_ENV = "VIGIE_TEST_REDIS_URL"
START_TIMEOUT_S = 10.0
CLAIM_MS = 200
T0 = datetime(2013, 1, 1, 5, tzinfo=UTC)


def observed(hour: int) -> WeatherObserved:
    at = T0 + timedelta(hours=hour)
    return WeatherObserved(
        event_id_for("weather.observed", ("LGA", at)), at, "LGA", at,
        *([float(hour)] * 9),
    )  # fmt: skip


class RedisServer:
    """A ``redis-server`` of this test, append-only, in ``folder``, on ``port``."""

    def __init__(self, folder: Path, port: int) -> None:
        self.folder = folder
        self.port = port
        self.url = f"redis://127.0.0.1:{port}/0"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        command = [
            "redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
            "--appendonly", "yes", "--dir", str(self.folder), "--save", "",
        ]  # fmt: skip
        with (self.folder / "redis.log").open("ab") as log:
            self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + START_TIMEOUT_S
        client = redis.Redis.from_url(self.url, socket_connect_timeout=0.5)
        try:
            while True:
                try:
                    if client.ping():
                        return
                except redis.ConnectionError:
                    if time.monotonic() > deadline or self.process.poll() is not None:
                        raise
                    time.sleep(0.05)
        finally:
            client.close()

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        os.kill(self.process.pid, 15)
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.kill(self.process.pid, 9)
            self.process.wait(timeout=10)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def server(tmp_path: Path) -> Iterator[RedisServer]:
    if not os.environ.get(REDIS_ENV):
        pytest.skip(f"{REDIS_ENV} is not set: no Redis server to test against")
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed: cannot run a Redis of this test")
    own = RedisServer(tmp_path, free_port())
    own.start()
    try:
        yield own
    finally:
        own.stop()


def test_a_consumer_survives_a_redis_restart(server: RedisServer) -> None:
    stream = RedisEventStream(server.url, name="flights", claim_min_idle_ms=CLAIM_MS)
    rows: dict[str, Event] = {}
    applied: Counter[str] = Counter()

    def apply(events: list[Event]) -> None:
        for event in events:
            rows[event.event_id] = event
            applied[event.event_id] += 1

    before = [observed(h) for h in range(6)]
    stream.publish(before)
    consumer = stream.consumer("features", "c1")
    idempotent = IdempotentConsumer(consumer, apply)
    assert idempotent.run_once(3) == 3
    in_flight = consumer.poll(2)  # taken, never acked: pending across the restart
    server.stop()

    with pytest.raises(VigieError) as caught:
        consumer.poll(10)
    assert caught.value.code is ErrorCode.UNAVAILABLE
    assert "vigie:events:flights" in caught.value.message

    server.start()
    after = [observed(h) for h in range(6, 9)]
    stream.publish(after)
    time.sleep(CLAIM_MS / 1000 * 2)
    while idempotent.run_once(4):
        pass
    assert set(rows) == {e.event_id for e in before + after}
    assert set(applied.values()) == {1}
    assert {d.event.event_id for d in in_flight} <= set(rows)
    assert idempotent.lag() == 0
    consumer.close()
    stream.close()
