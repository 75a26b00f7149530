"""The payload log on local segments: order, governance, never blocking, drops, recovery."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from vigie.config import Settings
from vigie.errors import ErrorCode, VigieError
from vigie.events.payload_log import PayloadLog, read_entries
from vigie.events.segments import SegmentSink, segment_numbers
from vigie.governance.pseudonymize import Pseudonymizer

from .conftest import BreakableSink, wait_until


def prediction(i: int, **extra: Any) -> dict[str, Any]:
    return {"request_id": f"r{i}", "model": "flight_delay", "version": "v1", "i": i} | extra


def fast(settings: Settings, **options: Any) -> PayloadLog:
    return PayloadLog(settings, retry_initial_s=0.01, retry_max_s=0.05, **options)


def test_entries_are_written_and_read_back_in_order(payload_settings: Settings) -> None:
    async def scenario() -> None:
        log = fast(payload_settings)
        await log.start()
        for i in range(30):
            log.log(prediction(i))
        await wait_until(lambda: log.written == 30, "30 entries written")
        await log.stop()

    asyncio.run(scenario())
    entries = read_entries(payload_settings, limit=100)
    assert [e.data["i"] for e in entries] == list(range(30))
    assert [e.seq for e in entries] == list(range(30))
    assert len({e.writer for e in entries}) == 1 and all(e.logged_at for e in entries)
    resumed = read_entries(payload_settings, after=entries[9].offset, limit=5)
    assert [e.data["i"] for e in resumed] == [10, 11, 12, 13, 14]
    assert read_entries(payload_settings, after=entries[-1].offset, limit=5) == []


def test_segments_rotate_by_size_and_are_never_rewritten(payload_settings: Settings) -> None:
    folder = payload_settings.payload_dir
    sink = SegmentSink(folder, max_bytes=400)

    async def scenario() -> None:
        log = fast(payload_settings, sink=sink, batch_size=2)
        await log.start()
        for i in range(4):
            log.log(prediction(i))
        await wait_until(lambda: log.written == 4, "first entries")
        first = (folder / "segment-000001.jsonl").read_bytes()
        for i in range(4, 40):
            log.log(prediction(i))
        await wait_until(lambda: log.written == 40, "all entries")
        await log.stop()
        assert (folder / "segment-000001.jsonl").read_bytes().startswith(first)

    asyncio.run(scenario())
    assert len(segment_numbers(folder)) > 3
    assert all(p.stat().st_size <= 400 for p in folder.glob("segment-*.jsonl"))
    entries = read_entries(payload_settings, limit=1000)
    assert [e.data["i"] for e in entries] == list(range(40))
    offsets = [e.offset for e in entries]
    assert offsets == sorted(offsets) and len(set(offsets)) == 40
    across = read_entries(payload_settings, after=entries[2].offset, limit=30)
    assert [e.data["i"] for e in across] == list(range(3, 33))


def test_caller_is_pseudonymised_and_api_key_dropped(payload_settings: Settings) -> None:
    async def scenario() -> None:
        log = fast(payload_settings)
        await log.start()
        log.log(prediction(0, caller="key_0123456789abcdef", api_key="vk_secret_value"))
        log.log(prediction(1, caller=None))
        await wait_until(lambda: log.written == 2, "entries written")
        await log.stop()

    asyncio.run(scenario())
    first, second = read_entries(payload_settings, limit=10)
    expected = Pseudonymizer.from_settings(payload_settings).pseudonymize("key_0123456789abcdef")
    assert first.data["caller"] == expected and "api_key" not in first.data
    assert second.data["caller"] is None
    stored = b"".join(p.read_bytes() for p in payload_settings.payload_dir.glob("segment-*"))
    assert b"key_0123456789abcdef" not in stored and b"vk_secret_value" not in stored


def test_arrays_and_missing_values_are_stored_as_json(payload_settings: Settings) -> None:
    async def scenario() -> None:
        log = fast(payload_settings)
        await log.start()
        inputs = {"distance": np.array([1.5, np.nan], dtype=np.float32), "carrier": ["UA", None]}
        log.log(prediction(0, inputs=inputs, latency_ms=np.float32(1.25), score=float("inf")))
        await wait_until(lambda: log.written == 1, "entry written")
        await log.stop()

    asyncio.run(scenario())
    (entry,) = read_entries(payload_settings, limit=10)
    assert entry.data["inputs"] == {"distance": [1.5, None], "carrier": ["UA", None]}
    assert entry.data["latency_ms"] == 1.25 and entry.data["score"] is None


def test_log_returns_while_the_sink_is_stalled(
    payload_settings: Settings, breakable: BreakableSink
) -> None:
    async def scenario() -> None:
        breakable.released.clear()
        log = fast(payload_settings, sink=breakable)
        await log.start()
        log.log(prediction(0))
        await wait_until(lambda: breakable.attempts == 1, "the writer to be stuck")
        for i in range(1, 10):
            log.log(prediction(i))
        assert log.buffered == 10 and log.written == 0
        breakable.released.set()
        await wait_until(lambda: log.written == 10, "entries written")
        await log.stop()

    asyncio.run(scenario())
    assert [e.data["i"] for e in read_entries(payload_settings, limit=20)] == list(range(10))


def test_failing_sink_keeps_entries_and_writes_them_in_order_once_back(
    payload_settings: Settings, breakable: BreakableSink
) -> None:
    async def scenario() -> None:
        breakable.broken = True
        log = fast(payload_settings, sink=breakable, batch_size=4)
        await log.start()
        for i in range(10):
            log.log(prediction(i))
        await wait_until(lambda: log.failures >= 3, "several failed tries")
        assert log.buffered == 10 and log.written == 0 and log.dropped == 0
        breakable.broken = False
        for i in range(10, 15):
            log.log(prediction(i))
        await wait_until(lambda: log.written == 15, "recovery")
        await log.stop()
        assert log.buffered == 0 and log.dropped == 0

    asyncio.run(scenario())
    assert [e.data["i"] for e in read_entries(payload_settings, limit=50)] == list(range(15))


def test_full_buffer_drops_and_counts(
    tmp_path: Path, make_settings: Callable[..., Settings]
) -> None:
    settings = make_settings(tmp_path / "home", None, payload_buffer=5)
    sink = BreakableSink(settings.payload_dir)
    sink.broken = True
    counted = {"written": 0, "dropped": 0}
    sizes: list[int] = []

    def on(name: str) -> Callable[[int], None]:
        return lambda n: counted.__setitem__(name, counted[name] + n)

    async def scenario() -> None:
        log = fast(
            settings,
            sink=sink,
            on_written=on("written"),
            on_dropped=on("dropped"),
            on_buffered=sizes.append,
        )
        await log.start()
        for i in range(8):
            log.log(prediction(i))
        assert (log.buffered, log.dropped) == (5, 3)
        await wait_until(lambda: 5 in sizes, "the buffered gauge to see 5 entries")
        sink.broken = False
        await wait_until(lambda: log.written == 5, "buffered entries written")
        log.log(prediction(8))
        await wait_until(lambda: log.written == 6, "a new entry written")
        await log.stop()

    asyncio.run(scenario())
    assert counted == {"written": 6, "dropped": 3}
    assert sizes[-1] == 0
    entries = read_entries(settings, limit=10)
    assert [e.data["i"] for e in entries] == [0, 1, 2, 3, 4, 8]
    assert [e.seq for e in entries] == [0, 1, 2, 3, 4, 8]  # the gap shows the drops


def test_stop_counts_what_it_could_not_write_and_later_entries_as_dropped(
    payload_settings: Settings, breakable: BreakableSink
) -> None:
    async def scenario() -> PayloadLog:
        breakable.broken = True
        log = fast(payload_settings, sink=breakable)
        await log.start()
        for i in range(4):
            log.log(prediction(i))
        await log.stop(timeout=0.1)
        log.log(prediction(4))
        return log

    log = asyncio.run(scenario())
    assert (log.written, log.buffered, log.dropped) == (0, 0, 5)


def test_entries_logged_from_other_threads_are_written(payload_settings: Settings) -> None:
    async def scenario() -> None:
        log = fast(payload_settings)
        await log.start()

        def produce(base: int) -> None:
            for i in range(25):
                log.log(prediction(base + i))

        threads = [threading.Thread(target=produce, args=(t * 100,)) for t in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        await wait_until(lambda: log.written == 100, "entries from threads")
        await log.stop()

    asyncio.run(scenario())
    entries = read_entries(payload_settings, limit=200)
    assert sorted(e.seq for e in entries) == list(range(100))
    assert [e.seq for e in entries] == sorted(e.seq for e in entries)


def test_a_failing_metrics_hook_does_not_reach_the_caller(payload_settings: Settings) -> None:
    def broken_hook(_: int) -> None:
        raise RuntimeError("metrics are down")

    async def scenario() -> None:
        log = fast(payload_settings, on_written=broken_hook, on_dropped=broken_hook)
        await log.start()
        log.log(prediction(0))
        await wait_until(lambda: log.written == 1, "entry written")
        await log.stop()
        log.log(prediction(1))
        assert log.dropped == 1

    asyncio.run(scenario())


def test_unsupported_stream_url_is_a_configuration_error(
    tmp_path: Path, make_settings: Callable[..., Settings]
) -> None:
    settings = make_settings(tmp_path, None, stream_url="kafka://broker:9092")
    with pytest.raises(VigieError) as caught:
        PayloadLog(settings)
    assert caught.value.code is ErrorCode.CONFIGURATION


@pytest.mark.parametrize(("after", "limit"), [(None, 0), ("nonsense", 5)])
def test_reader_refuses_bad_arguments(
    payload_settings: Settings, after: str | None, limit: int
) -> None:
    with pytest.raises(VigieError) as caught:
        read_entries(payload_settings, after=after, limit=limit)
    assert caught.value.code is ErrorCode.INVALID_INPUT


def test_a_built_entry_is_built_in_the_writer_governed_and_a_failing_one_dropped(
    payload_settings: Settings,
) -> None:
    """The serving path hands a builder over; building and governing happen off its path."""
    built_in: list[str] = []

    def builder(i: int) -> Callable[[], dict[str, Any]]:
        def build() -> dict[str, Any]:
            built_in.append(threading.current_thread().name)
            if i == 2:
                raise ValueError("cannot build")
            columns = {"distance": np.asarray([1.5, np.nan], dtype=np.float32)}
            return prediction(i, caller="key_0123456789abcdef", inputs=columns)

        return build

    async def scenario() -> PayloadLog:
        log = fast(payload_settings, linger_s=0.001)
        await log.start()
        for i in range(4):
            log.log(builder(i))
        await wait_until(lambda: log.written == 3 and log.dropped == 1, "3 written, 1 dropped")
        await log.stop()
        return log

    log = asyncio.run(scenario())
    assert log.written == 3 and log.dropped == 1
    assert threading.main_thread().name not in built_in  # never on the loop's thread
    entries = read_entries(payload_settings, limit=10)
    assert [e.data["i"] for e in entries] == [0, 1, 3]
    assert [e.seq for e in entries] == [0, 1, 3]  # the gap says one entry was lost
    assert entries[0].data["inputs"] == {"distance": [1.5, None]}  # NaN is null
    expected = Pseudonymizer.from_settings(payload_settings).pseudonymize("key_0123456789abcdef")
    assert {e.data["caller"] for e in entries} == {expected}


def test_the_writer_lingers_so_a_trickle_is_written_in_few_batches(
    payload_settings: Settings,
) -> None:
    sink = BreakableSink(payload_settings.payload_dir)

    async def scenario() -> None:
        log = fast(payload_settings, sink=sink, linger_s=0.2)
        await log.start()
        for i in range(10):
            log.log(prediction(i))
            await asyncio.sleep(0.005)
        await wait_until(lambda: log.written == 10, "10 entries written")
        await log.stop()

    asyncio.run(scenario())
    assert [e.data["i"] for e in read_entries(payload_settings, limit=20)] == list(range(10))
    assert sink.attempts <= 2  # 10 entries 5 ms apart, written within one 200 ms linger
