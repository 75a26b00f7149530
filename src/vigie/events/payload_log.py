"""The payload log: every prediction, written asynchronously, never in a request's way.

:meth:`PayloadLog.log` only numbers and times the entry and appends it to a bounded
in-memory buffer; when the buffer is full the entry is dropped and counted. The entry may
be a function that builds it: the serving path hands over its request and answer that way,
so building, governing (the caller pseudonymised, the API key dropped, as the data
policy's ``services`` table says) and encoding happen in the writer, off the request's
path. A background asyncio task drains the buffer in batches into the sink, in a worker
thread, waiting up to ``linger_s`` for a batch to fill so that a quiet server does not pay
one write and one fsync per prediction:
local segment files (:mod:`vigie.events.segments`) when ``VIGIE_STREAM_URL`` is unset,
a Redis stream (:mod:`vigie.events.payload_stream`) when it is ``redis://...``. A
failed batch stays at the head of the buffer and is retried with exponential backoff, so
entries are written in order once the sink is back.

Metrics: monitoring must not import serving, so the log takes two plain callbacks,
``on_written(n)`` and ``on_dropped(n)`` (e.g. ``Counter.inc``) and ``on_buffered(size)``
(e.g. ``Gauge.set``); :attr:`PayloadLog.buffered` and the other counters are readable too.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import secrets
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from vigie.config import Settings
from vigie.errors import ErrorCode, VigieError
from vigie.events.payload_entry import PayloadEntry, PayloadSink
from vigie.events.payload_stream import DEFAULT_STREAM, RedisStreamSink, read_stream
from vigie.events.segments import OnSkip, SegmentSink, read_segments
from vigie.governance.policy import Handling, load_policy
from vigie.governance.pseudonymize import Pseudonymizer

__all__ = [
    "DEFAULT_STREAM",
    "PayloadEntry",
    "PayloadLog",
    "PayloadSink",
    "open_sink",
    "read_entries",
]

#: Entry field -> column of the policy's ``services`` table that governs it.
GOVERNED_FIELDS = {"caller": "client_id", "api_key": "api_key", "request_id": "request_id"}

#: How the governed fields are handled when the policy has no ``services`` table.
_FALLBACK = {"caller": Handling.PSEUDONYMIZE, "api_key": Handling.DROP}

_REDIS_SCHEMES = frozenset({"redis", "rediss", "unix"})
_IDLE_POLL_S = 0.05
_log = logging.getLogger(__name__)

Hook = Callable[[int], object]

#: What :meth:`PayloadLog.log` takes: an entry, or a function that builds it.
Loggable = Mapping[str, Any] | Callable[[], Mapping[str, Any]]


class _Governance:
    """Applies the policy's handling of the governed fields to one entry."""

    def __init__(self, settings: Settings) -> None:
        policy = load_policy(settings.policy_file)
        handling = dict(_FALLBACK)
        if "services" in policy.tables:
            columns = policy.tables["services"].columns
            handling |= {f: columns[c].handling for f, c in GOVERNED_FIELDS.items() if c in columns}
        self._drop = [f for f, h in handling.items() if h is Handling.DROP]
        self._pseudonymize = [f for f, h in handling.items() if h is Handling.PSEUDONYMIZE]
        self._pseudonymizer = Pseudonymizer.from_settings(settings)

    def apply(self, entry: Mapping[str, Any]) -> dict[str, Any]:
        record = dict(entry)
        for name in self._drop:
            record.pop(name, None)
        for name in self._pseudonymize:
            value = record.get(name)
            if value is not None:
                record[name] = self._pseudonymizer.pseudonymize(str(value))
        return record


class PayloadLog:
    """Buffers prediction entries and writes them to the configured sink in the background.

    Args:
        settings: ``stream_url``, ``payload_dir``, ``payload_buffer``, the policy and key.
        on_written: Called with the number of entries each written batch held.
        on_dropped: Called with the number of entries dropped (buffer full, log stopped).
        on_buffered: Called by the writer with the buffer's size after every write, failed
            write and idle wait (at least every 50 ms): feeds a gauge, also in Prometheus
            multiprocess mode, where ``Gauge.set_function`` is not collected.
        sink: Where to write instead of the one ``settings`` chooses (tests, tools).
        stream: The Redis stream key when ``stream_url`` is a Redis URL.
        batch_size: Most entries per write.
        retry_initial_s: First wait after a failed write; doubles up to ``retry_max_s``.
        retry_max_s: Longest wait between two tries.
        linger_s: Longest the writer waits for a batch to fill before writing what it has.

    Raises:
        VigieError: CONFIGURATION for an unsupported ``stream_url`` scheme, an invalid
            policy or a missing pseudonymisation key.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        on_written: Hook | None = None,
        on_dropped: Hook | None = None,
        on_buffered: Hook | None = None,
        sink: PayloadSink | None = None,
        stream: str = DEFAULT_STREAM,
        batch_size: int = 256,
        retry_initial_s: float = 0.05,
        retry_max_s: float = 2.0,
        linger_s: float = 0.02,
    ) -> None:
        self._sink = sink if sink is not None else open_sink(settings, stream=stream)
        self._governance = _Governance(settings)
        self._capacity = settings.payload_buffer
        self._hooks = {"written": on_written, "dropped": on_dropped, "buffered": on_buffered}
        self._batch_size = batch_size
        self._retry = (retry_initial_s, retry_max_s)
        self._linger_s = linger_s
        #: (entry or builder, seq, time.time() when logged), oldest first.
        self._buffer: deque[tuple[Loggable, int, float]] = deque()
        self._lock = threading.Lock()
        self._seq = itertools.count()
        self._written = self._dropped = self._failures = 0
        self._writer_id = f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"
        self._closed = self._stopping = False
        self._task: asyncio.Task[None] | None = None
        self._wakeup: asyncio.Event | None = None
        self._loop_thread: int | None = None

    @property
    def written(self) -> int:
        """Entries written to the sink."""
        return self._written

    @property
    def dropped(self) -> int:
        """Entries dropped: the buffer was full, the log was stopped, or they were
        still buffered when :meth:`stop` gave up."""
        return self._dropped

    @property
    def buffered(self) -> int:
        """Entries waiting in the buffer."""
        return len(self._buffer)

    @property
    def failures(self) -> int:
        """Failed write attempts (each retried)."""
        return self._failures

    async def start(self) -> None:
        """Start the background writer on the running loop (again: no effect)."""
        if self._task is not None:
            return
        self._wakeup = asyncio.Event()
        self._loop_thread = threading.get_ident()
        self._task = asyncio.create_task(self._drain(), name="vigie-payload-log")

    def log(self, entry: Loggable) -> None:
        """Queue one entry for writing; never blocks, never raises.

        Safe from any thread. ``entry`` is the entry, or a function returning it, called
        later in the writer thread (it must only read data nobody changes afterwards). The
        written entry gets ``seq``, ``writer`` and ``logged_at`` (this call's time);
        ``caller`` is pseudonymised and ``api_key`` dropped (per the data policy). An entry
        that cannot be built is dropped, counted and logged, never written half.
        """
        stamp = time.time()
        with self._lock:
            seq = next(self._seq)
            accepted = not self._closed and len(self._buffer) < self._capacity
            if accepted:
                self._buffer.append((entry, seq, stamp))
        if not accepted:
            self._count_dropped(1)
        elif self._wakeup is not None and threading.get_ident() == self._loop_thread:
            self._wakeup.set()  # other threads are picked up by the writer's polling

    def _prepare(self, item: tuple[Loggable, int, float]) -> dict[str, Any] | None:
        """The governed, stamped record of a buffered item; None when it cannot be built."""
        entry, seq, stamp = item
        try:
            record = self._governance.apply(entry() if callable(entry) else entry)
            record["logged_at"] = datetime.fromtimestamp(stamp, UTC).isoformat(
                timespec="microseconds"
            )
            record["writer"] = self._writer_id
            record["seq"] = seq
        except Exception:  # a request must never fail for its payload log
            _log.exception("payload entry %d could not be prepared; dropping it", seq)
            return None
        return record

    def _write(self, batch: list[tuple[Loggable, int, float]]) -> int:
        """Build and write one batch (in the writer thread); the entries dropped."""
        records = [self._prepare(item) for item in batch]
        kept = [record for record in records if record is not None]
        if kept:
            self._sink.write(kept)
        return len(records) - len(kept)

    async def stop(self, timeout: float = 5.0) -> None:
        """Stop accepting entries, write what can be written within ``timeout`` seconds,
        count the rest as dropped, and close the sink."""
        with self._lock:
            self._closed = True
        if self._task is not None:
            self._stopping = True
            if self._wakeup is not None:
                self._wakeup.set()
            with contextlib.suppress(TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(self._task, timeout)
        with self._lock:
            lost = len(self._buffer)
            self._buffer.clear()
        if lost:
            _log.warning("payload log stopped with %d entries unwritten", lost)
            self._count_dropped(lost)
        try:
            self._sink.close()
        except Exception as err:  # closing must not fail a shutdown
            _log.warning("payload sink did not close cleanly: %s", err)

    async def _drain(self) -> None:
        delay = self._retry[0]
        while True:
            self._call("buffered", len(self._buffer))
            batch = self._peek()
            if not batch:
                if self._stopping:
                    return
                await self._idle()
                continue
            if len(batch) < self._batch_size and not self._stopping:
                await asyncio.sleep(self._linger_s)  # let a batch form: one write, one fsync
                batch = self._peek()
            try:
                unbuildable = await asyncio.to_thread(self._write, batch)
            except Exception as err:  # any sink failure: keep the batch, back off, retry
                self._on_failure(err, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, self._retry[1])
                continue
            if delay != self._retry[0]:
                _log.info("payload sink is writing again", extra={"buffered": self.buffered})
            delay = self._retry[0]
            self._commit(len(batch), unbuildable)

    async def _idle(self) -> None:
        assert self._wakeup is not None
        self._wakeup.clear()
        if not self._buffer:  # looked at after clearing, so no wake-up is missed
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wakeup.wait(), _IDLE_POLL_S)

    def _peek(self) -> list[tuple[Loggable, int, float]]:
        with self._lock:
            return list(itertools.islice(self._buffer, self._batch_size))

    def _commit(self, count: int, unbuildable: int = 0) -> None:
        with self._lock:
            for _ in range(count):
                self._buffer.popleft()
        self._written += count - unbuildable
        self._call("written", count - unbuildable)
        if unbuildable:
            self._count_dropped(unbuildable)

    def _on_failure(self, err: Exception, delay: float) -> None:
        self._failures += 1
        if delay == self._retry[0]:  # once per outage, not once per retry
            _log.warning(
                "payload sink failed; entries stay buffered and are retried: %s",
                err,
                extra={"buffered": self.buffered},
            )

    def _count_dropped(self, count: int) -> None:
        with self._lock:
            self._dropped += count
        self._call("dropped", count)

    def _call(self, hook: str, count: int) -> None:
        callback = self._hooks[hook]
        if callback is None:
            return
        try:
            callback(count)
        except Exception as err:  # a metrics hook must not break logging
            _log.warning("payload-log %s hook failed: %s", hook, err)


def open_sink(
    settings: Settings, *, stream: str = DEFAULT_STREAM, folder: Path | None = None
) -> PayloadSink:
    """The sink ``VIGIE_STREAM_URL`` chooses: segments under ``folder`` (default: the
    payload folder) or the Redis stream ``stream``. The outcome log uses it too.

    Raises:
        VigieError: CONFIGURATION for an unsupported URL scheme.
    """
    url = settings.stream_url
    if url is None:
        return SegmentSink(folder if folder is not None else settings.payload_dir)
    if urlparse(url).scheme in _REDIS_SCHEMES:
        return RedisStreamSink(url, stream=stream)
    raise VigieError(
        ErrorCode.CONFIGURATION,
        f"VIGIE_STREAM_URL {url!r} is not supported: use redis://... or leave it unset "
        "for local segment files",
        field="stream_url",
    )


def read_entries(
    settings: Settings,
    *,
    after: str | None = None,
    limit: int,
    stream: str = DEFAULT_STREAM,
    folder: Path | None = None,
    on_skip: OnSkip | None = None,
) -> list[PayloadEntry]:
    """Read entries back in order, from the start or after an offset.

    Args:
        settings: ``stream_url`` (Redis) or ``payload_dir`` (segments).
        after: The ``offset`` of the last entry already read; None: from the start.
        limit: Most entries returned (at least 1).
        stream: The Redis stream key.
        folder: The segment folder; default: ``settings.payload_dir``.
        on_skip: Called with the offset of each unreadable line or stream entry passed
            over, and why (a consumer counts them and may resume after that offset).

    Returns:
        Up to ``limit`` entries; fewer (or none) when the log holds no more yet.

    Raises:
        VigieError: INVALID_INPUT for a bad ``limit`` or ``after``; UNAVAILABLE when
            Redis cannot be reached; CONFIGURATION for an unsupported URL.
    """
    if limit < 1:
        raise VigieError(ErrorCode.INVALID_INPUT, "limit must be at least 1", field="limit")
    url = settings.stream_url
    if url is None:
        return read_segments(
            folder if folder is not None else settings.payload_dir,
            after=after,
            limit=limit,
            on_skip=on_skip,
        )
    if urlparse(url).scheme in _REDIS_SCHEMES:
        return read_stream(url, stream=stream, after=after, limit=limit, on_skip=on_skip)
    raise VigieError(
        ErrorCode.CONFIGURATION, f"VIGIE_STREAM_URL {url!r} is not supported", field="stream_url"
    )
