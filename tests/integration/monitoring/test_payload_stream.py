"""The payload log on a real Redis: stream round trip, resuming, and a Redis that is down."""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from vigie.config import Settings
from vigie.errors import ErrorCode, VigieError
from vigie.events.payload_log import PayloadLog, read_entries
from vigie.governance.pseudonymize import Pseudonymizer

pytestmark = pytest.mark.integration

REDIS_ENV = "VIGIE_TEST_REDIS_URL"
CLOSED_PORT_URL = "redis://127.0.0.1:1/0"


@pytest.fixture
def redis_url() -> str:
    url = os.environ.get(REDIS_ENV)
    if not url:
        pytest.skip(f"{REDIS_ENV} is not set: no Redis server to test against")
    return url


@pytest.fixture
def stream(redis_url: str) -> Iterator[str]:
    """A stream key of this test only, deleted after it."""
    name = f"vigie:test:{secrets.token_hex(6)}:payload"
    yield name
    client = redis.Redis.from_url(redis_url)
    try:
        client.delete(name)
    finally:
        client.close()


async def wait_until(condition: Callable[[], bool], what: str) -> None:
    """Wait for ``condition`` (a guard against hanging, not a timing assertion)."""
    for _ in range(2000):
        if condition():
            return
        await asyncio.sleep(0.005)
    raise AssertionError(f"gave up waiting for {what}")


def prediction(i: int, **extra: Any) -> dict[str, Any]:
    return {"request_id": f"r{i}", "model": "arrival_delay", "version": "v2", "i": i} | extra


def test_round_trip_through_a_redis_stream(
    tmp_path: Path, make_settings: Callable[..., Settings], redis_url: str, stream: str
) -> None:
    settings = make_settings(tmp_path / "home", None, stream_url=redis_url)

    async def scenario() -> None:
        log = PayloadLog(settings, stream=stream, batch_size=7)
        await log.start()
        for i in range(50):
            log.log(prediction(i, caller="key_00ff00ff00ff00ff", api_key="vk_plain"))
        await wait_until(lambda: log.written == 50, "50 entries in the stream")
        await log.stop()

    asyncio.run(scenario())
    client = redis.Redis.from_url(redis_url)
    try:
        assert client.xlen(stream) == 50
    finally:
        client.close()
    entries = read_entries(settings, limit=100, stream=stream)
    assert [e.data["i"] for e in entries] == list(range(50))
    token = Pseudonymizer.from_settings(settings).pseudonymize("key_00ff00ff00ff00ff")
    assert all(e.data["caller"] == token and "api_key" not in e.data for e in entries)
    resumed = read_entries(settings, after=entries[19].offset, limit=10, stream=stream)
    assert [e.data["i"] for e in resumed] == list(range(20, 30))
    assert read_entries(settings, after=entries[-1].offset, limit=10, stream=stream) == []
    assert not (settings.payload_dir).exists()  # nothing went to local segments


def test_redis_down_never_raises_and_counts_drops(
    tmp_path: Path, make_settings: Callable[..., Settings]
) -> None:
    settings = make_settings(tmp_path / "home", None, stream_url=CLOSED_PORT_URL, payload_buffer=5)

    async def scenario() -> PayloadLog:
        log = PayloadLog(settings, retry_initial_s=0.01, retry_max_s=0.05)
        await log.start()
        for i in range(8):
            log.log(prediction(i))
        assert (log.buffered, log.dropped, log.written) == (5, 3, 0)
        await wait_until(lambda: log.failures >= 2, "failed tries against the closed port")
        assert (log.buffered, log.dropped) == (5, 3)
        await log.stop(timeout=0.2)
        return log

    log = asyncio.run(scenario())
    assert (log.buffered, log.dropped, log.written) == (0, 8, 0)


def test_reading_from_a_redis_that_is_down_is_unavailable(
    tmp_path: Path, make_settings: Callable[..., Settings]
) -> None:
    settings = make_settings(tmp_path / "home", None, stream_url=CLOSED_PORT_URL)
    with pytest.raises(VigieError) as caught:
        read_entries(settings, limit=5)
    assert caught.value.code is ErrorCode.UNAVAILABLE


def test_reader_refuses_an_offset_that_is_not_a_stream_id(
    tmp_path: Path, make_settings: Callable[..., Settings], redis_url: str, stream: str
) -> None:
    settings = make_settings(tmp_path / "home", None, stream_url=redis_url)
    with pytest.raises(VigieError) as caught:
        read_entries(settings, after="000001:000000000000", limit=5, stream=stream)
    assert caught.value.code is ErrorCode.INVALID_INPUT
