"""Replay a warehouse window as live traffic: predictions at departure, labels at arrival.

A simulated clock runs over the window. It starts at the first scheduled departure and
advances ``speed`` simulated seconds per real second. On each tick, every flight whose
scheduled departure has come is sent for prediction, up to ``max_rows`` flights per
request and one request per served model, with the flights' keys in the request
parameter ``row_ids``; then every flight whose actual arrival has come gets its outcome
event in the outcome log (:mod:`vigie.events.outcomes`), never before its own
prediction was sent. Cancelled and diverted flights are predicted but never labelled.

``speed`` 0 is as fast as the service answers: nothing waits, and each tick jumps to the
departure of the flight that fills the next request (``max_rows`` flights on), or to the
next label when one is due before any departure. So with ``max_rows`` 1 every departure
instant is a tick, and with more, requests are full and the labels that fall inside a
burst come right after its requests.

The transport is not here: the caller injects ``send`` (``vigie.serving.client`` over
OIP REST or gRPC in the command line), so this module holds the schedule only and tests
drive it with a fake sender and a fake clock. A request that fails is counted, never
raised; ``UNAVAILABLE`` is retried a few times with backoff first.

``stop`` (set by Ctrl-C in the command line) ends the replay between two ticks: requests
in flight are finished (what was sent stays sent), pending outcome events are written,
and the statistics say how far the simulated clock got.
"""

from __future__ import annotations

import collections
import logging
import secrets
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import numpy as np
import numpy.typing as npt

from vigie.config import Settings
from vigie.errors import ErrorCode, VigieError
from vigie.events.outcomes import OutcomeEvent, OutcomeLog, new_event_id
from vigie.governance.audit import AuditLog, Outcome
from vigie.replay.events import EventFeed, open_feed
from vigie.replay.plan import (
    SCHEDULE_FIELDS,
    Clock,
    OutcomeWriter,
    ReplayPlan,
    ReplayRequest,
    ReplayStats,
    Send,
    SystemClock,
)
from vigie.replay.source import FlightWindow, feature_defs, load_window

__all__ = [
    "Clock",
    "OutcomeWriter",
    "Replay",
    "ReplayPlan",
    "ReplayRequest",
    "ReplayStats",
    "Send",
    "SystemClock",
    "new_run_id",
    "run_replay",
]

#: Longest real sleep between two looks at the clock and at ``stop`` (seconds).
MAX_SLEEP_S = 0.25
#: Outcome events written at once at most this long after they were emitted (real s)...
FLUSH_INTERVAL_S = 0.5
#: ...or as soon as this many are pending.
FLUSH_EVENTS = 512
#: Least real time between two progress reports (seconds).
PROGRESS_INTERVAL_S = 0.1

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Answer:
    rows: int
    retries: int
    code: str | None  # None: answered


class Replay:
    """One replay of a window.

    Args:
        window: The flights, in departure order.
        plan: Models, speed, batching, bounds.
        send: The transport (see :data:`Send`).
        outcomes: The outcome log.
        clock: Real time; default the system clock.
        stop: Set to end the replay cleanly (Ctrl-C).
        on_progress: Called with the statistics at most every 0.1 s real, and at the end.
        executor: Runs the sends; default: a pool of ``plan.concurrency`` threads.
        feed: Publishes the window's flight and weather events as the clock passes them.
    """

    def __init__(
        self,
        window: FlightWindow,
        plan: ReplayPlan,
        send: Send,
        outcomes: OutcomeWriter,
        *,
        clock: Clock | None = None,
        stop: threading.Event | None = None,
        on_progress: Callable[[ReplayStats], object] | None = None,
        executor: Executor | None = None,
        feed: EventFeed | None = None,
    ) -> None:
        plan.check()
        self._feed = feed
        self._window = window
        self._plan = plan
        self._send = send
        self._outcomes = outcomes
        self._clock = clock or SystemClock()
        self._stop = stop or threading.Event()
        self._on_progress = on_progress
        self._executor = executor
        self.stats = ReplayStats(flights=min(len(window), plan.limit or len(window)))
        self._inflight: collections.deque[Future[_Answer]] = collections.deque()
        self._requests = 0
        self._last_flush = self._last_progress = 0.0

    def run(self) -> ReplayStats:
        """Replay until every flight is sent and labelled, or ``stop`` is set."""
        began = self._clock.monotonic()
        self._last_flush = began
        executor = self._executor or ThreadPoolExecutor(
            self._plan.concurrency, thread_name_prefix="vigie-replay"
        )
        try:
            self._loop(executor)
        except KeyboardInterrupt:  # a stop without the command line's handler
            self._stop.set()
        finally:
            self._drain()
            if self._executor is None:
                executor.shutdown(wait=True)
            self._flush(force=True)
            self.stats.interrupted = self._stop.is_set()
            self.stats.elapsed_s = self._clock.monotonic() - began
            self._progress(force=True)
        return self.stats

    def _loop(self, executor: Executor) -> None:
        n = self.stats.flights
        departures = self._window.departure_us[:n]
        labelled = np.flatnonzero(self._window.labelled[:n])
        # a label is never observed before its prediction was asked
        due = np.maximum(self._window.arrival_us[labelled], departures[labelled])
        order = np.argsort(due, kind="stable")
        label_rows, label_due = labelled[order], due[order]
        sent = labelled_done = 0
        if n == 0:
            return
        origin_us, origin_real = int(departures[0]), self._clock.monotonic()
        self.stats.simulated_start = _instant(origin_us)
        self._publish(origin_us - 1)  # everything before the first departure: a warm-up
        while (sent < n or labelled_done < len(label_rows)) and not self._stop.is_set():
            next_label = (
                int(label_due[labelled_done]) if labelled_done < len(label_rows) else _NEVER
            )
            now_us: int | None
            if self._plan.speed == 0:
                now_us = _next_burst(departures, sent, self._plan.max_rows, next_label)
            else:
                upcoming = min(int(departures[sent]) if sent < n else _NEVER, next_label)
                now_us = self._simulated(origin_us, origin_real, upcoming)
                if now_us is None:
                    continue
            reached = int(np.searchsorted(departures, now_us, side="right"))
            self._publish(now_us)
            self._send_flights(executor, sent, reached)
            if self._stop.is_set():  # stopped mid-tick: label only complete ticks
                return
            labelled_now = int(np.searchsorted(label_due, now_us, side="right"))
            self._emit(label_rows[labelled_done:labelled_now])
            if self._plan.speed == 0:  # the clock is where the last event happened
                events = [departures[reached - 1]] if reached > sent else []
                events += [label_due[labelled_now - 1]] if labelled_now > labelled_done else []
                now_us = int(max(events))
            sent, labelled_done = reached, labelled_now
            self.stats.simulated_until = _instant(now_us)
            self._flush()
            self._progress()

    def _simulated(self, origin_us: int, origin_real: float, upcoming: int) -> int | None:
        """The simulated time of this tick, or None after sleeping towards ``upcoming``."""
        elapsed = self._clock.monotonic() - origin_real
        now_us = origin_us + int(elapsed * self._plan.speed * 1_000_000)
        if now_us >= upcoming:
            return now_us
        wait = (upcoming - now_us) / 1_000_000 / self._plan.speed
        self._flush()
        self._clock.sleep(min(wait, MAX_SLEEP_S))
        return None

    def _publish(self, now_us: int) -> None:
        """Events up to ``now_us``, before the requests of that instant (a request at ``t``
        only reads what happened before ``t``: later ones published with it never count)."""
        if self._feed is not None:
            self._feed.advance(now_us)
            self.stats.events_published = self._feed.stats.published
            self.stats.feature_waits_timed_out = self._feed.stats.waits_timed_out

    def _columns(self, inputs: tuple[str, ...], start: int, stop: int) -> dict[str, Any]:
        window = self._window
        if self._plan.client_fields == "full":
            return {name: window.features[name][start:stop] for name in inputs}
        columns: dict[str, Any] = {
            name: window.features[name][start:stop] for name in SCHEDULE_FIELDS[:3]
        }
        stamps = window.departure_us[start:stop].astype("datetime64[us]")
        text = np.datetime_as_string(stamps, unit="m")
        columns["sched_dep"] = np.asarray([f"{t}+00:00" for t in text.tolist()], dtype=object)
        if window.flight_number is not None:
            columns["flight"] = window.flight_number[start:stop].astype(np.float32)
        return columns

    def _send_flights(self, executor: Executor, first: int, end: int) -> None:
        window, step = self._window, self._plan.max_rows
        for start in range(first, end, step):
            if self._stop.is_set():
                return
            stop = min(start + step, end)
            ids = [str(k) for k in window.flight_key[start:stop].tolist()]
            for model, inputs in self._plan.models.items():
                self._requests += 1
                request = ReplayRequest(
                    model,
                    f"{self._plan.run_id}-{self._requests}",
                    self._columns(inputs, start, stop),
                    ids,
                )
                self._submit(executor, request)
            self.stats.flights_sent += stop - start

    def _submit(self, executor: Executor, request: ReplayRequest) -> None:
        while len(self._inflight) >= self._plan.concurrency:
            self._collect(self._inflight.popleft())
        self._inflight.append(executor.submit(self._answer, request))

    def _answer(self, request: ReplayRequest) -> _Answer:
        """Send with retries; runs in a worker thread and never raises."""
        wait = self._plan.retry_wait_s
        for attempt in range(self._plan.retries + 1):
            try:
                self._send(request)
            except VigieError as err:
                last = attempt == self._plan.retries or self._stop.is_set()
                if err.code is not ErrorCode.UNAVAILABLE or last:
                    _log.warning("replay request %s failed: %s", request.request_id, err)
                    return _Answer(request.rows, attempt, err.code.value)
                if self._stop.wait(wait):
                    return _Answer(request.rows, attempt, err.code.value)
                wait *= 2
                continue
            except Exception as err:  # a transport bug must not end the replay
                _log.warning("replay request %s failed: %r", request.request_id, err)
                return _Answer(request.rows, attempt, ErrorCode.INTERNAL.value)
            return _Answer(request.rows, attempt, None)
        raise AssertionError("unreachable")  # pragma: no cover

    def _collect(self, future: Future[_Answer]) -> None:
        answer = future.result()
        stats = self.stats
        stats.retries += answer.retries
        if answer.code is None:
            stats.requests += 1
            stats.rows += answer.rows
        else:
            stats.failures += 1
            stats.failed_rows += answer.rows
            stats.failure_codes[answer.code] = stats.failure_codes.get(answer.code, 0) + 1

    def _drain(self) -> None:
        while self._inflight:
            self._collect(self._inflight.popleft())

    def _emit(self, rows: npt.NDArray[np.intp]) -> None:
        if rows.size == 0:
            return
        window, source = self._window, self._plan.source
        events = [
            OutcomeEvent(
                new_event_id(),
                int(window.flight_key[i]),
                _instant(int(window.arrival_us[i])),
                int(window.arr_delay_min[i]),
                bool(window.is_delayed_15[i]),
                source,
            )
            for i in rows.tolist()
        ]
        self._outcomes.emit(events)
        self.stats.outcomes += len(events)

    def _flush(self, *, force: bool = False) -> None:
        pending = self._outcomes.pending
        now = self._clock.monotonic()
        if pending and (
            force or pending >= FLUSH_EVENTS or now - self._last_flush >= FLUSH_INTERVAL_S
        ):
            self._outcomes.flush()
            self._last_flush = now
        self.stats.outcomes_unwritten = self._outcomes.pending

    def _progress(self, *, force: bool = False) -> None:
        now = self._clock.monotonic()
        if self._on_progress is not None and (
            force or now - self._last_progress >= PROGRESS_INTERVAL_S
        ):
            self._last_progress = now
            self._on_progress(self.stats)


_NEVER = np.iinfo(np.int64).max


def _next_burst(
    departures: npt.NDArray[np.int64], sent: int, max_rows: int, next_label: int
) -> int:
    """Where the next tick ends at speed 0: just before the first departure that does not
    fit in a request of ``max_rows`` flights (all of an instant's flights when more than
    ``max_rows`` leave together), or at the next label when it is due before any flight."""
    if sent >= len(departures) or next_label < departures[sent]:
        return next_label
    if sent + max_rows >= len(departures):
        return int(departures[-1])
    first_left_out = int(departures[sent + max_rows])
    return first_left_out - 1 if first_left_out > departures[sent] else first_left_out


def _instant(micros: int) -> datetime:
    return _EPOCH + timedelta(microseconds=micros)


def new_run_id() -> str:
    """``replay-<UTC yyyymmddThhmmss>-<6 hex>``: prefixes the request ids of one run."""
    return f"replay-{datetime.now(UTC):%Y%m%dT%H%M%S}-{secrets.token_hex(3)}"


def run_replay(
    settings: Settings,
    start: date,
    end: date,
    plan: ReplayPlan,
    send: Send,
    *,
    target: Mapping[str, Any],
    stop: threading.Event | None = None,
    on_start: Callable[[ReplayStats], object] | None = None,
    on_progress: Callable[[ReplayStats], object] | None = None,
) -> ReplayStats:
    """Load the window, replay it into the outcome log of ``settings``, audit the run.

    Args:
        settings: Warehouse, outcome log, audit log, actor.
        start: First scheduled departure date (local, inclusive).
        end: Last scheduled departure date (local, inclusive).
        plan: Models, speed, batching, bounds.
        send: The transport.
        target: Where the requests go (protocol, address), for the audit log.
        stop: Set to end the replay cleanly.
        on_start: Called once the window is loaded (``flights`` known), before any send.
        on_progress: See :class:`Replay`.

    Raises:
        VigieError: from reading the warehouse or opening the outcome log (audited as a
            failure); a failed request is counted, never raised.
    """
    plan.check()
    audit = AuditLog(settings.audit_log_path)
    inputs = {
        "window_from": start.isoformat(),
        "window_to": end.isoformat(),
        "models": {m: list(i) for m, i in plan.models.items()},
        "speed": plan.speed,
        "max_rows": plan.max_rows,
        "limit": plan.limit,
        "run_id": plan.run_id,
        **target,
    }
    try:
        # a schedule-only request carries carrier, origin and dest whatever the models take
        keys = {"": SCHEDULE_FIELDS[:3]} if plan.client_fields == "schedule" else {}
        window = load_window(settings, start, end, feature_defs({**plan.models, **keys}))
        outcomes = OutcomeLog(settings)
    except VigieError as err:
        audit.append(
            settings.actor,
            "monitoring.replay",
            plan.run_id,
            Outcome.FAILURE,
            inputs=inputs,
            details={"error": err.to_dict()},
        )
        raise
    feed, closers = open_feed(settings, start, end) if plan.events else (None, [])
    replay = Replay(window, plan, send, outcomes, stop=stop, on_progress=on_progress, feed=feed)
    if on_start is not None:
        on_start(replay.stats)
    try:
        stats = replay.run()
    finally:
        outcomes.close()
        for close in closers:
            close()
        replay.stats.outcomes_unwritten = outcomes.pending
    complete = not stats.interrupted and not stats.failures and not stats.outcomes_unwritten
    audit.append(
        settings.actor,
        "monitoring.replay",
        plan.run_id,
        Outcome.SUCCESS if complete else Outcome.PARTIAL,
        inputs=inputs,
        details=stats.to_json(),
    )
    return stats
