"""Adaptive batching: rows not requests, mixed requests in one call, draining, failures."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from vigie.errors import ErrorCode, VigieError
from vigie.serving.batcher import Batcher, BatcherClosed

from .tiny import sync


class SlowModel:
    """Doubles ``x``; each call blocks until the test releases it, and is recorded."""

    def __init__(self, *, gate: bool = True) -> None:
        self.calls: list[int] = []
        self.release = threading.Event()
        if not gate:
            self.release.set()

    def __call__(self, columns: dict[str, npt.NDArray[Any]]) -> npt.NDArray[np.float32]:
        self.calls.append(len(columns["x"]))
        self.release.wait(5)
        return (columns["x"] * 2).astype(np.float32)


def rows(*values: float) -> dict[str, npt.NDArray[Any]]:
    return {"x": np.asarray(values, dtype=np.float32)}


def batcher(model: SlowModel, *, max_rows: int = 4, wait_s: float = 0.5, slots: int = 1) -> Batcher:
    return Batcher(
        model, model="m", version="1", max_rows=max_rows, max_wait_s=wait_s, concurrency=slots
    )


async def until(condition: Any) -> None:
    for _ in range(500):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition never became true")


@sync
async def test_an_idle_batcher_sends_a_request_at_once_and_answers_its_rows() -> None:
    model = SlowModel(gate=False)
    queue = batcher(model, wait_s=10.0)  # a wait would hang the test: there must be none
    queue.start()
    result = await asyncio.wait_for(queue.submit(rows(1, 2), 2), 2)
    assert result.tolist() == [2.0, 4.0] and model.calls == [2]
    await queue.stop()


@sync
async def test_requests_queued_during_a_batch_are_joined_up_to_max_rows_in_rows() -> None:
    model = SlowModel()
    queue = batcher(model, max_rows=4)
    queue.start()
    first = queue.submit(rows(0), 1)
    await until(lambda: model.calls == [1])  # computing; the next ones queue
    second = queue.submit(rows(1, 2), 2)
    third = queue.submit(rows(3), 1)
    fourth = queue.submit(rows(4, 5, 6), 3)  # 2 + 1 + 3 rows > 4: waits for the next batch
    model.release.set()
    answers = await asyncio.gather(first, second, third, fourth)
    assert model.calls == [1, 3, 3]
    assert [a.tolist() for a in answers] == [[0.0], [2.0, 4.0], [6.0], [8.0, 10.0, 12.0]]
    await queue.stop()


@sync
async def test_a_request_larger_than_max_rows_is_one_batch_of_its_own() -> None:
    model = SlowModel(gate=False)
    queue = batcher(model, max_rows=4)
    queue.start()
    result = await queue.submit(rows(*range(10)), 10)
    assert model.calls == [10] and result.shape == (10,)
    await queue.stop()


@sync
async def test_while_a_batch_computes_the_next_one_waits_for_rows() -> None:
    model = SlowModel()
    queue = batcher(model, max_rows=8, wait_s=0.3, slots=2)
    queue.start()
    first = queue.submit(rows(0), 1)
    await until(lambda: model.calls == [1])
    second = queue.submit(rows(1), 1)  # a slot is free, but a batch computes: collect
    await asyncio.sleep(0.05)
    third = queue.submit(rows(2, 3), 2)
    model.release.set()
    await asyncio.gather(first, second, third)
    assert model.calls == [1, 3]
    await queue.stop()


@sync
async def test_stop_drains_queued_requests_then_refuses_new_ones() -> None:
    model = SlowModel()
    queue = batcher(model, max_rows=2)
    queue.start()
    pending = [queue.submit(rows(i), 1) for i in range(5)]
    stopping = asyncio.ensure_future(queue.stop())
    await asyncio.sleep(0.05)
    with pytest.raises(BatcherClosed):
        queue.submit(rows(9), 1)
    model.release.set()
    await stopping
    assert [p.result().tolist() for p in pending] == [[0.0], [2.0], [4.0], [6.0], [8.0]]
    assert sum(model.calls) == 5


@sync
async def test_a_failing_model_fails_its_batch_only() -> None:
    calls = []

    def flaky(columns: dict[str, npt.NDArray[Any]]) -> npt.NDArray[np.float32]:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("boom")
        return columns["x"].astype(np.float32)

    queue = Batcher(flaky, model="m", version="1", max_rows=4, max_wait_s=0.0)
    queue.start()
    with pytest.raises(VigieError) as caught:
        await queue.submit(rows(1), 1)
    assert caught.value.code is ErrorCode.INTERNAL
    assert (await queue.submit(rows(2), 1)).tolist() == [2.0]
    await queue.stop()


@sync
async def test_a_cancelled_request_does_not_disturb_the_others() -> None:
    model = SlowModel()
    queue = batcher(model)
    queue.start()
    first = queue.submit(rows(0), 1)
    await until(lambda: model.calls == [1])
    gone = queue.submit(rows(1), 1)
    kept = queue.submit(rows(2), 1)
    gone.cancel()
    model.release.set()
    assert (await kept).tolist() == [4.0] and (await first).tolist() == [0.0]
    await queue.stop()


@sync
async def test_compute_now_runs_on_the_loop_only_when_idle_and_small_enough() -> None:
    model = SlowModel(gate=False)
    queue = Batcher(
        model, model="m", version="1", max_rows=4, max_wait_s=0.5, concurrency=1, inline_rows=2
    )
    queue.start()
    now = queue.compute_now(rows(1, 2), 2)
    assert now is not None and now.tolist() == [2.0, 4.0] and model.calls == [2]
    assert queue.compute_now(rows(1, 2, 3), 3) is None  # above inline_rows: queue it
    pending = queue.submit(rows(5), 1)
    assert queue.compute_now(rows(1), 1) is None  # something is queued: join the batch
    assert (await asyncio.wait_for(pending, 2)).tolist() == [10.0]
    await queue.stop()
    assert queue.compute_now(rows(1), 1) is None  # closed


@sync
async def test_batches_up_to_inline_rows_run_on_the_loop_and_larger_ones_in_a_thread() -> None:
    threads: list[str] = []

    def model(columns: dict[str, npt.NDArray[Any]]) -> npt.NDArray[np.float32]:
        threads.append(threading.current_thread().name)
        return (columns["x"] * 2).astype(np.float32)

    queue = Batcher(model, model="m", version="1", max_rows=8, max_wait_s=0.0, inline_rows=2)
    queue.start()
    assert (await asyncio.wait_for(queue.submit(rows(1, 2), 2), 2)).tolist() == [2.0, 4.0]
    assert (await asyncio.wait_for(queue.submit(rows(1, 2, 3), 3), 2)).tolist() == [2.0, 4.0, 6.0]
    await queue.stop()
    assert threads[0] == threading.current_thread().name != threads[1]


@sync
async def test_a_failing_model_fails_compute_now_with_a_named_error() -> None:
    def broken(columns: dict[str, npt.NDArray[Any]]) -> npt.NDArray[np.float32]:
        raise RuntimeError("boom")

    queue = Batcher(broken, model="m", version="1", max_rows=4, max_wait_s=0.0, inline_rows=4)
    with pytest.raises(VigieError) as caught:
        queue.compute_now(rows(1), 1)
    assert caught.value.code is ErrorCode.INTERNAL and "m version 1" in caught.value.message


class PoisonedModel:
    """Doubles ``x`` but fails any call whose rows hold a negative value (as ONNX Runtime
    fails a whole call for one bad row); records each call's rows."""

    def __init__(self) -> None:
        self.calls: list[list[float]] = []
        self.release = threading.Event()

    def __call__(self, columns: dict[str, npt.NDArray[Any]]) -> npt.NDArray[np.float32]:
        self.calls.append(columns["x"].tolist())
        self.release.wait(5)
        if (columns["x"] < 0).any():
            raise RuntimeError("the model cannot take a negative x")
        return (columns["x"] * 2).astype(np.float32)


@sync
async def test_a_failed_batch_is_split_so_only_the_requests_that_fail_alone_get_an_error() -> None:
    model = PoisonedModel()
    queue = Batcher(model, model="m", version="1", max_rows=64, max_wait_s=0.5, concurrency=1)
    splits = queue._splits
    before = splits._value.get()
    queue.start()
    first = queue.submit(rows(0), 1)
    await until(lambda: len(model.calls) == 1)  # computing: the next ones join one batch
    values = [float(i) for i in range(1, 15)]
    values[3], values[10] = -1.0, -2.0  # two poisoned requests among fourteen
    pending = [queue.submit(rows(v, v), 2) for v in values]
    model.release.set()
    answers = await asyncio.gather(first, *pending, return_exceptions=True)

    assert len(model.calls[1]) == 28, "the fourteen requests were batched together"
    for value, answer in zip(values, answers[1:], strict=True):
        if value < 0:
            assert isinstance(answer, VigieError) and answer.code is ErrorCode.INTERNAL
        else:
            assert not isinstance(answer, BaseException), answer
            assert answer.tolist() == [2 * value, 2 * value]
    assert splits._value.get() - before >= 2
    # each poisoned request ends in a call of its own: the others were never failed with it
    assert [c for c in model.calls if len(c) == 2 and c[0] < 0] == [[-1.0, -1.0], [-2.0, -2.0]]
    await queue.stop()


@sync
async def test_a_model_answering_the_wrong_number_of_rows_fails_only_the_request_it_fails() -> None:
    def short(columns: dict[str, npt.NDArray[Any]]) -> npt.NDArray[np.float32]:
        x = columns["x"]
        return x[:-1].astype(np.float32) if (x == 7).any() else x.astype(np.float32)

    queue = Batcher(short, model="m", version="1", max_rows=64, max_wait_s=0.0)
    queue.start()
    good, bad = queue.submit(rows(1, 2), 2), queue.submit(rows(7), 1)
    answers = await asyncio.gather(good, bad, return_exceptions=True)

    assert not isinstance(answers[0], BaseException) and answers[0].tolist() == [1.0, 2.0]
    assert isinstance(answers[1], VigieError) and answers[1].code is ErrorCode.INTERNAL
    await queue.stop()
