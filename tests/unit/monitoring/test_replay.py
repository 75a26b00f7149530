"""The replay's schedule, driven by a fake sender and a fake clock (nothing sleeps for real).

Sends run inline (an executor that runs each send at once, in order), so the order of
sends and outcome events is the order the schedule chose.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import Executor, Future
from contextlib import closing
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from vigie.config import Settings
from vigie.errors import ErrorCode, VigieError
from vigie.events.outcomes import OutcomeEvent, OutcomeLog, read_outcomes
from vigie.features.catalogue import CATALOGUE, FeatureKind
from vigie.replay.player import MAX_SLEEP_S, Replay, ReplayPlan, ReplayRequest
from vigie.replay.source import (
    NO_ARRIVAL,
    FlightWindow,
    feature_defs,
    load_window,
    window_from_arrow,
)
from vigie.training.snapshot import build_snapshot
from vigie.training.spec import load_spec
from vigie.warehouse.connection import connect

T0 = datetime(2013, 1, 1, 11, 0, tzinfo=UTC)
MODELS = {"flight_delay": ("carrier", "distance"), "arrival_delay": ("distance",)}


def micros(at: datetime) -> int:
    return int((at - datetime(1970, 1, 1, tzinfo=UTC)) / timedelta(microseconds=1))


def window(flights: list[tuple[int, int, int | None]]) -> FlightWindow:
    """Flights as (key, departure minute after T0, arrival minute or None = cancelled)."""
    keys = np.array([k for k, _, _ in flights], dtype=np.int64)
    dep = np.array([micros(T0 + timedelta(minutes=d)) for _, d, _ in flights], dtype=np.int64)
    arr = np.array(
        [NO_ARRIVAL if a is None else micros(T0 + timedelta(minutes=a)) for _, _, a in flights],
        dtype=np.int64,
    )
    carriers = np.empty(len(flights), dtype=object)
    carriers[:] = [f"C{k}" for k in keys.tolist()]
    return FlightWindow(
        flight_key=keys,
        departure_us=dep,
        arrival_us=arr,
        arr_delay_min=keys * 10,
        is_delayed_15=keys * 10 > 15,
        labelled=arr != NO_ARRIVAL,
        features={"carrier": carriers, "distance": keys.astype(np.float32) * 100},
    )


class InlineExecutor(Executor):
    """Runs each submitted call at once, on the caller's thread."""

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        future: Future[Any] = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except BaseException as err:
            future.set_exception(err)
        return future


class FakeClock:
    """Real time that only passes when the replay sleeps."""

    def __init__(self) -> None:
        self.now = 100.0
        self.slept: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


class Journal:
    """The fake sender and outcome log, writing what happens, in order, to one list."""

    def __init__(self, clock: FakeClock | None = None) -> None:
        self.clock = clock
        self.events: list[tuple[str, Any]] = []
        self.requests: list[ReplayRequest] = []
        self.sent_at: list[float] = []
        self.labels: list[OutcomeEvent] = []
        self.flushed = 0
        self._pending = 0

    def send(self, request: ReplayRequest) -> object:
        self.requests.append(request)
        self.sent_at.append(self.clock.now if self.clock else 0.0)
        self.events.append(("send", (request.model, tuple(request.row_ids))))
        return request.rows

    @property
    def pending(self) -> int:
        return self._pending

    def emit(self, events: list[OutcomeEvent]) -> None:
        self.labels += events
        self._pending += len(events)
        self.events += [("label", e.flight_key) for e in events]

    def flush(self) -> bool:
        self.flushed += self._pending
        self._pending = 0
        return True


def replay(
    flights: FlightWindow,
    journal: Journal,
    *,
    send: Callable[[ReplayRequest], object] | None = None,
    clock: FakeClock | None = None,
    stop: threading.Event | None = None,
    **plan: Any,
) -> Replay:
    options: dict[str, Any] = {"models": {"flight_delay": MODELS["flight_delay"]}} | plan
    return Replay(
        flights,
        ReplayPlan(retry_wait_s=0.0, run_id="t", **options),
        send or journal.send,
        journal,
        clock=clock or FakeClock(),
        stop=stop,
        executor=InlineExecutor(),
    )


def test_flights_leave_in_order_grouped_by_tick_one_request_per_model() -> None:
    flights = window([(1, 0, 60), (2, 0, 60), (3, 5, 60), (4, 5, 60), (5, 5, 60), (6, 9, 60)])
    journal = Journal()
    stats = replay(flights, journal, models=MODELS, max_rows=2).run()
    sent = [(r.model, r.row_ids) for r in journal.requests]
    assert sent == [
        ("flight_delay", ["1", "2"]),
        ("arrival_delay", ["1", "2"]),
        ("flight_delay", ["3", "4"]),
        ("arrival_delay", ["3", "4"]),
        ("flight_delay", ["5"]),  # the tick's last flight: a request is never filled from
        ("arrival_delay", ["5"]),  # the next tick, which is not due yet
        ("flight_delay", ["6"]),
        ("arrival_delay", ["6"]),
    ]
    first = journal.requests[0]
    assert set(first.columns) == {"carrier", "distance"}
    assert first.columns["carrier"].tolist() == ["C1", "C2"]
    assert first.columns["distance"].tolist() == [100.0, 200.0]
    assert set(journal.requests[1].columns) == {"distance"}
    assert len({r.request_id for r in journal.requests}) == 8
    assert (stats.requests, stats.rows, stats.flights_sent, stats.failures) == (8, 12, 6, 0)


def test_a_label_comes_at_arrival_after_its_own_prediction_and_never_for_cancellations() -> None:
    # key, departure minute, arrival minute (None: cancelled or diverted)
    flights = window([(1, 0, 60), (2, 30, 50), (3, 45, None), (4, 90, 120), (5, 100, 95)])
    journal = Journal()
    stats = replay(flights, journal).run()
    assert journal.events == [
        ("send", ("flight_delay", ("1",))),
        ("send", ("flight_delay", ("2",))),
        ("send", ("flight_delay", ("3",))),
        ("label", 2),  # arrived at +50
        ("label", 1),  # +60
        ("send", ("flight_delay", ("4",))),
        ("send", ("flight_delay", ("5",))),
        ("label", 5),  # "arrived" at +95, before its departure: labelled right after sending
        ("label", 4),  # +120
    ]
    label = next(e for e in journal.labels if e.flight_key == 4)
    assert label.observed_at == T0 + timedelta(minutes=120)
    assert (label.arr_delay_min, label.is_delayed_15, label.source) == (40, True, "replay")
    assert stats.outcomes == journal.flushed == 4
    assert stats.simulated_start == T0
    assert stats.simulated_until == T0 + timedelta(minutes=120)
    assert not stats.interrupted


def test_as_fast_as_possible_fills_requests_across_departure_instants() -> None:
    # one flight a minute; flight 2 lands at +2, within the first burst of three (0..2)
    flights = window([(1, 0, 30), (2, 1, 2), (3, 2, 30), (4, 3, 30), (5, 4, 30)])
    journal = Journal()
    replay(flights, journal, max_rows=3).run()
    assert journal.events[:3] == [
        ("send", ("flight_delay", ("1", "2", "3"))),
        ("label", 2),  # after the burst's request, before the next burst
        ("send", ("flight_delay", ("4", "5"))),
    ]


def test_speed_is_simulated_seconds_per_real_second() -> None:
    flights = window([(1, 0, 3), (2, 1, 4), (3, 2, 5)])
    clock = FakeClock()
    journal = Journal(clock)
    stats = replay(flights, journal, clock=clock, speed=60.0).run()
    # one simulated minute between departures is one real second at 60x
    assert [round(t - 100.0, 6) for t in journal.sent_at] == [0.0, 1.0, 2.0]
    assert max(clock.slept) <= MAX_SLEEP_S  # short sleeps: Ctrl-C is seen quickly
    assert stats.simulated_until is not None
    assert stats.simulated_until >= T0 + timedelta(minutes=5)
    assert stats.elapsed_s == pytest.approx(5.0, abs=MAX_SLEEP_S)


def test_speed_zero_never_sleeps() -> None:
    clock = FakeClock()
    stats = replay(window([(1, 0, 600), (2, 300, 900)]), Journal(), clock=clock).run()
    assert clock.slept == []
    assert stats.simulated_until == T0 + timedelta(minutes=900)


def test_limit_replays_the_first_flights_and_only_their_labels() -> None:
    journal = Journal()
    stats = replay(window([(1, 0, 9), (2, 1, 2), (3, 2, 3), (4, 3, 4)]), journal, limit=2).run()
    assert [r.row_ids for r in journal.requests] == [["1"], ["2"]]
    assert sorted(e.flight_key for e in journal.labels) == [1, 2]
    assert (stats.flights, stats.flights_sent) == (2, 2)


def test_stop_ends_after_what_was_sent_and_flushes_the_labels(
    tmp_path: Path, make_settings: Callable[..., Settings]
) -> None:
    settings = make_settings(tmp_path / "home", None)
    outcomes = OutcomeLog(settings)
    stop = threading.Event()
    sent: list[list[str]] = []

    def send(request: ReplayRequest) -> object:
        sent.append(request.row_ids)
        if len(sent) == 3:
            stop.set()  # Ctrl-C while the third request is in flight
        return request.rows

    flights = window([(1, 0, 1), (2, 2, 3), (3, 4, 5), (4, 6, 7), (5, 8, 9)])
    stats = Replay(
        flights,
        ReplayPlan(models={"arrival_delay": ("distance",)}, run_id="t"),
        send,
        outcomes,
        clock=FakeClock(),
        stop=stop,
        executor=InlineExecutor(),
    ).run()
    assert sent == [["1"], ["2"], ["3"]]
    assert stats.interrupted
    assert (stats.requests, stats.flights_sent) == (3, 3)
    # flights 1 and 2 arrived before the tick that was interrupted; flight 3's tick is
    # left unfinished, so its label is not emitted
    written = read_outcomes(settings, limit=10)
    assert [e.flight_key for e in written] == [1, 2] and outcomes.pending == 0
    assert stats.outcomes == 2 and stats.outcomes_unwritten == 0
    assert stats.simulated_until == T0 + timedelta(minutes=3)


def test_a_keyboard_interrupt_while_waiting_stops_cleanly() -> None:
    class InterruptedClock(FakeClock):
        def sleep(self, seconds: float) -> None:
            raise KeyboardInterrupt

    journal = Journal()
    stats = replay(
        window([(1, 0, 1), (2, 10, 11)]), journal, clock=InterruptedClock(), speed=60.0
    ).run()
    assert stats.interrupted and stats.flights_sent == 1 and journal.pending == 0


def test_failed_requests_are_counted_and_only_unavailable_is_retried() -> None:
    attempts: dict[str, int] = {}

    def send(request: ReplayRequest) -> object:
        flight = request.row_ids[0]
        attempts[flight] = attempts.get(flight, 0) + 1
        if flight == "1":
            raise VigieError(ErrorCode.INVALID_INPUT, "bad")
        if flight == "2" and attempts[flight] < 3:
            raise VigieError(ErrorCode.UNAVAILABLE, "busy")
        if flight == "3":
            raise VigieError(ErrorCode.UNAVAILABLE, "down")
        if flight == "4":
            raise RuntimeError("a transport bug")
        return request.rows

    journal = Journal()
    flights = window([(1, 0, 9), (2, 1, 9), (3, 2, 9), (4, 3, 9), (5, 4, 9)])
    stats = replay(flights, journal, send=send, retries=3).run()
    assert attempts == {"1": 1, "2": 3, "3": 4, "4": 1, "5": 1}
    assert (stats.requests, stats.rows, stats.failures, stats.failed_rows) == (2, 2, 3, 3)
    assert stats.failure_codes == {"INVALID_INPUT": 1, "UNAVAILABLE": 1, "INTERNAL": 1}
    assert stats.retries == 2 + 3
    assert len(journal.labels) == 5  # a flight is labelled whether or not its request failed


def test_requests_in_flight_never_exceed_the_concurrency() -> None:
    lock = threading.Lock()
    active, peak, answered = [0], [0], []

    def send(request: ReplayRequest) -> object:
        with lock:
            active[0] += 1
            peak[0] = max(peak[0], active[0])
        time.sleep(0.002)  # hold the request so that others overlap it
        with lock:
            active[0] -= 1
            answered.append(request.row_ids[0])
        return request.rows

    flights = window([(k, k // 4, 100) for k in range(1, 41)])
    stats = Replay(
        flights,
        ReplayPlan(models=MODELS, concurrency=3, run_id="t"),
        send,
        Journal(),
        clock=FakeClock(),
    ).run()
    assert 1 < peak[0] <= 3
    assert stats.requests == len(answered) == 80


@pytest.mark.parametrize(
    ("option", "value"),
    [("speed", -1.0), ("max_rows", 0), ("limit", 0), ("concurrency", 0), ("models", {})],
)
def test_options_out_of_range_are_refused_naming_them(option: str, value: Any) -> None:
    with pytest.raises(VigieError) as caught:
        ReplayPlan(**({"models": MODELS} | {option: value})).check()
    assert caught.value.code is ErrorCode.INVALID_INPUT and option in caught.value.message


def test_window_columns_from_the_warehouse_rows() -> None:
    utc = pa.timestamp("us", tz="UTC")
    table = pa.table(
        {
            "flight_key": pa.array([7, 8, 9], pa.int64()),
            "sched_dep_utc": pa.array([T0, T0, T0 + timedelta(hours=1)], utc),
            "arr_utc": pa.array([T0 + timedelta(hours=2), None, T0 + timedelta(hours=3)], utc),
            "flight_status": ["arrived", "cancelled", "arrived"],
            "arr_delay_min": pa.array([20, None, None], pa.int32()),
            "is_delayed_15": [True, None, None],
            "carrier": ["UA", None, "AA"],
            "distance": pa.array([719, None, 1000], pa.int32()),
        }
    )
    flights = window_from_arrow(table, [CATALOGUE["carrier"], CATALOGUE["distance"]])
    assert flights.flight_key.tolist() == [7, 8, 9]
    assert flights.departure_us[0] == micros(T0)
    assert flights.arrival_us[1] == NO_ARRIVAL
    # the third arrived but its delay is unknown: it cannot be labelled
    assert flights.labelled.tolist() == [True, False, False]
    assert flights.features["carrier"].tolist() == ["UA", None, "AA"]
    distance = flights.features["distance"]
    assert distance.dtype == np.float32 and np.isnan(distance[1]) and distance[0] == 719.0


def test_a_window_has_every_flight_in_departure_order_with_training_features(
    small_warehouse: Settings,
) -> None:
    spec = load_spec(Path("models"), "flight_delay")
    features = feature_defs({"flight_delay": spec.features})
    start, end = date(2013, 1, 1), date(2013, 1, 2)
    flights = load_window(small_warehouse, start, end, features)
    with closing(connect(small_warehouse.resolved_warehouse_url, read_only=True)) as warehouse:
        statuses = dict(
            warehouse.query(
                "SELECT flight_status, count(*) FROM fact_flight "
                "WHERE flight_date BETWEEN ? AND ? GROUP BY 1",
                (start, end),
            )
        )
    assert len(flights) == sum(statuses.values()) and statuses.get("cancelled", 0) > 0
    assert (np.diff(flights.departure_us) >= 0).all()
    assert int(flights.labelled.sum()) <= statuses["arrived"]
    # the arrived flights carry exactly what the training snapshot of the window holds
    snapshot = build_snapshot(small_warehouse, spec, start, end).read().set_index("flight_key")
    rows = np.flatnonzero(np.isin(flights.flight_key, snapshot.index.to_numpy()))
    assert len(rows) == len(snapshot)
    for feature in features:
        replayed = flights.features[feature.name][rows]
        trained = snapshot.loc[flights.flight_key[rows], feature.name].to_numpy()
        if feature.kind is FeatureKind.NUMERIC:
            np.testing.assert_allclose(replayed, trained.astype(np.float32), equal_nan=True)
        else:
            assert [None if pd.isna(v) else v for v in trained] == replayed.tolist()


def test_a_reversed_window_is_refused(small_warehouse: Settings) -> None:
    with pytest.raises(VigieError) as caught:
        load_window(small_warehouse, date(2013, 1, 2), date(2013, 1, 1), [CATALOGUE["carrier"]])
    assert caught.value.code is ErrorCode.INVALID_INPUT
