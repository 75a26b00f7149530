"""Adaptive batching of one model version's requests, whatever protocol they came by.

Requests queue with their rows; the batcher joins queued requests into one ONNX Runtime
call of at most ``max_rows`` rows (a 256-row request takes 256 of them, not one slot). It
is adaptive: while no batch is computing, whatever is queued goes at once (an idle server
adds no wait); while one computes, the next batch collects rows for at most
``max_wait_s`` or until it is full. A request larger than ``max_rows`` forms a batch of its
own and is never split. A caller alone on an idle batcher may skip the queue altogether
(:meth:`Batcher.compute_now`).

Where a batch runs: up to ``inline_rows`` rows on the event loop itself (for a small model
a call takes tens of microseconds, less than handing it to a thread and back, which also
costs a GIL hand-over each way), larger batches in ``executor``.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from vigie.errors import ErrorCode, VigieError
from vigie.serving import metrics

logger = logging.getLogger(__name__)

#: A model call: feature columns of N rows in, N predictions out.
Compute = Callable[[dict[str, npt.NDArray[Any]]], npt.NDArray[np.float32]]


class BatcherClosed(VigieError):
    """The batcher is draining or stopped and takes no new request."""

    def __init__(self, name: str) -> None:
        super().__init__(ErrorCode.UNAVAILABLE, f"{name} is being unloaded; retry")


@dataclass
class _Item:
    columns: dict[str, npt.NDArray[Any]]
    rows: int
    future: asyncio.Future[npt.NDArray[np.float32]]
    queued_at: float = field(default_factory=time.perf_counter)


class Batcher:
    """The batching queue of one model version.

    Args:
        compute: The model call, run in ``executor``.
        model: Model name (a metric label).
        version: Version id (a metric label).
        max_rows: Most rows in one batch.
        max_wait_s: Longest the next batch collects rows while another one computes.
        executor: Where batches above ``inline_rows`` run (a thread pool shared by the
            data plane).
        concurrency: Batches computing at the same time.
        inline_rows: Batches up to this many rows run on the event loop (0: none).
    """

    def __init__(
        self,
        compute: Compute,
        *,
        model: str,
        version: str,
        max_rows: int,
        max_wait_s: float,
        executor: Executor | None = None,
        concurrency: int = 2,
        inline_rows: int = 0,
    ) -> None:
        self._compute = compute
        self._inline_rows = inline_rows
        self.name = f"{model} version {version}"
        self._max_rows = max_rows
        self._max_wait_s = max_wait_s
        self._executor = executor
        self._slots = asyncio.Semaphore(concurrency)
        self._queue: collections.deque[_Item] = collections.deque()
        self._arrived = asyncio.Event()
        self._computing: set[asyncio.Task[None]] = set()
        self._closing = False
        self._task: asyncio.Task[None] | None = None
        self._wait = metrics.QUEUE_WAIT.labels(model, version)
        self._compute_time = metrics.COMPUTE.labels(model, version)
        self._batch_rows = metrics.BATCH_ROWS.labels(model, version)
        self._splits = metrics.BATCH_SPLITS.labels(model, version)

    @property
    def closed(self) -> bool:
        """True once :meth:`stop` was called: new requests are refused."""
        return self._closing

    def start(self) -> None:
        """Start collecting batches (in the running event loop)."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name=self.name)

    def submit(
        self, columns: dict[str, npt.NDArray[Any]], rows: int
    ) -> asyncio.Future[npt.NDArray[np.float32]]:
        """Queue a request; the future gets its N predictions (or the batch's error).

        This is synchronous on purpose: a caller that picked this batcher queues in the
        same step, so a swap between the two cannot strand the request.

        Raises:
            BatcherClosed: the batcher is draining.
        """
        if self._closing:
            raise BatcherClosed(self.name)
        future: asyncio.Future[npt.NDArray[np.float32]] = asyncio.get_running_loop().create_future()
        self._queue.append(_Item(columns, rows, future))
        self._arrived.set()
        return future

    def compute_now(
        self, columns: dict[str, npt.NDArray[Any]], rows: int
    ) -> npt.NDArray[np.float32] | None:
        """Predict at once, on the event loop, when nothing is queued or computing.

        For a caller that knows it is alone (no other request in flight): waiting for a
        batch to form would only add latency. Returns None when the batcher is busy or
        closed, or the request is above ``inline_rows``; then :meth:`submit` it.

        Raises:
            VigieError: INTERNAL when the model fails (the error is logged).
        """
        if self._queue or self._computing or self._closing or rows > self._inline_rows:
            return None
        self._wait.observe(0.0)
        self._batch_rows.observe(rows)
        try:
            outputs = self._timed(columns)
        except Exception as err:
            raise _failure(err, self.name) from err
        if outputs.shape[0] != rows:
            raise _failure(RuntimeError(f"{outputs.shape[0]} outputs for {rows} rows"), self.name)
        return outputs

    async def stop(self) -> None:
        """Refuse new requests, finish every queued and computing one, then stop."""
        self._closing = True
        self._arrived.set()
        if self._task is not None:
            await self._task
        if self._computing:
            await asyncio.gather(*self._computing, return_exceptions=True)

    async def _run(self) -> None:
        while True:
            if not self._queue:
                if self._closing:
                    return
                self._arrived.clear()
                await self._arrived.wait()
                continue
            await self._slots.acquire()
            batch = await self._collect()
            task = asyncio.get_running_loop().create_task(self._dispatch(batch))
            self._computing.add(task)
            task.add_done_callback(self._computing.discard)

    async def _collect(self) -> list[_Item]:
        """Take queued requests up to ``max_rows`` rows, waiting a little if that pays."""
        first = self._queue.popleft()
        batch, rows = [first], first.rows
        deadline = time.perf_counter() + self._max_wait_s
        while rows < self._max_rows:
            if not self._queue:
                remaining = deadline - time.perf_counter()
                if not self._computing or self._closing or remaining <= 0:
                    break  # nothing computes: waiting would only add latency
                self._arrived.clear()
                try:
                    await asyncio.wait_for(self._arrived.wait(), remaining)
                except TimeoutError:
                    break
                continue
            if rows + self._queue[0].rows > self._max_rows:
                break
            item = self._queue.popleft()
            batch.append(item)
            rows += item.rows
        return batch

    async def _dispatch(self, batch: list[_Item]) -> None:
        try:
            live = [item for item in batch if not item.future.done()]  # drop cancelled ones
            if not live:
                return
            now = time.perf_counter()
            for item in live:
                self._wait.observe(now - item.queued_at)
            rows = sum(item.rows for item in live)
            self._batch_rows.observe(rows)
            await self._isolated(live, rows)
        finally:
            self._slots.release()

    async def _isolated(self, items: list[_Item], rows: int) -> None:
        """Compute ``items`` together; if the model call fails, split them in two and try each
        half, down to single requests, so that a request that fails alone is the only one to
        get the error and every other one gets its predictions.

        A request reaches the batcher validated, so a failure is rare; splitting costs
        ``O(f log n)`` more calls for ``f`` failing requests out of ``n``.
        """
        try:
            outputs = await self._call(_concatenate([item.columns for item in items]), rows)
        except Exception as err:
            if len(items) == 1:
                _fail(items, err, self.name)
                return
            self._splits.inc()
            half = len(items) // 2
            for part in (items[:half], items[half:]):
                await self._isolated(part, sum(item.rows for item in part))
            return
        offset = 0
        for item in items:
            if not item.future.done():
                item.future.set_result(outputs[offset : offset + item.rows])
            offset += item.rows

    async def _call(
        self, columns: dict[str, npt.NDArray[Any]], rows: int
    ) -> npt.NDArray[np.float32]:
        """One model call, on the loop up to ``inline_rows`` rows, else in the executor; an
        answer with another number of rows than asked is a failure too."""
        if rows <= self._inline_rows:
            outputs = self._timed(columns)
        else:
            loop = asyncio.get_running_loop()
            outputs = await loop.run_in_executor(self._executor, self._timed, columns)
        if outputs.shape[0] != rows:
            raise RuntimeError(f"{outputs.shape[0]} outputs for {rows} rows")
        return outputs

    def _timed(self, columns: dict[str, npt.NDArray[Any]]) -> npt.NDArray[np.float32]:
        start = time.perf_counter()
        try:
            return self._compute(columns)
        finally:
            self._compute_time.observe(time.perf_counter() - start)


def _concatenate(parts: list[dict[str, npt.NDArray[Any]]]) -> dict[str, npt.NDArray[Any]]:
    if len(parts) == 1:
        return parts[0]
    return {name: np.concatenate([part[name] for part in parts]) for name in parts[0]}


def _failure(err: Exception, name: str) -> VigieError:
    """Log a failed batch; the error its requests get."""
    logger.error("batch of %s failed: %s", name, err, exc_info=err)
    if isinstance(err, VigieError):
        return err
    return VigieError(ErrorCode.INTERNAL, f"{name} failed to predict: {type(err).__name__}")


def _fail(items: list[_Item], err: Exception, name: str) -> None:
    error = _failure(err, name)
    for item in items:
        if not item.future.done():
            item.future.set_exception(error)
